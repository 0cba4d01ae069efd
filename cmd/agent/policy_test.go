package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func policyYAML(version string) []byte {
	return []byte(`version: "` + version + `"
thresholds: {review_at: 50, decline_at: 80}
offline_limit: 1000
rules:
  - id: BIG_WITHDRAWAL
    class: review
    when: 'event == "withdraw" && amount > 10000.0'
    reason: "large withdrawal"
    mode: active
    doc: a test rule
`)
}

// TestPolicyWatchSeesEveryKindOfChange: with the fallback poll an hour
// away, the watch alone reloads the policy on a write in place, an atomic
// rename over the file, and a Kubernetes ConfigMap update (the file is a
// symlink through ..data, which is swapped for a new directory).
func TestPolicyWatchSeesEveryKindOfChange(t *testing.T) {
	dir := t.TempDir()
	// The ConfigMap layout: policy.yaml -> ..data/policy.yaml, ..data -> ..v1.
	for _, v := range []string{"..v1", "..v2"} {
		if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "..v1", "policy.yaml"), policyYAML("w.1"), 0o644)
	os.Symlink("..v1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "policy.yaml")
	os.Symlink(filepath.Join("..data", "policy.yaml"), path)

	h, err := newPolicyHolder(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.watch(ctx, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond) // the watch is set up

	want := func(version string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for h.Current().Version() != version {
			if time.Now().After(deadline) {
				t.Fatalf("policy %s, want %s", h.Current().Version(), version)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Kubernetes: a new ..v2, ..data swapped to it by rename.
	os.WriteFile(filepath.Join(dir, "..v2", "policy.yaml"), policyYAML("w.2"), 0o644)
	os.Symlink("..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	want("w.2")
	// A write in place (through the symlinks).
	if err := os.WriteFile(path, policyYAML("w.3"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("w.3")
	// An editor's atomic rename over the file.
	os.Remove(path)
	os.WriteFile(path, policyYAML("w.4"), 0o644)
	tmp := filepath.Join(dir, ".policy.yaml.swp")
	os.WriteFile(tmp, policyYAML("w.5"), 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	want("w.5")
	if st := h.status(); st.Refusals != 0 {
		t.Fatalf("refusals %d: %s", st.Refusals, st.LastRefusal)
	}
}
