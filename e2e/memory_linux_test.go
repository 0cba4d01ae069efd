//go:build linux

package e2e

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exeResidency sums Size and Rss over the read-only mappings of the
// process's executable, read from outside through /proc/PID/smaps.
func exeResidency(t *testing.T, pid int, exe string) (size, rss int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	kB := func(v string) int {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		if err != nil {
			t.Fatalf("smaps value %q: %v", v, err)
		}
		return n
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && f[5] == exe && !strings.Contains(f[1], "w")
			continue
		}
		if !in {
			continue
		}
		if v, ok := strings.CutPrefix(line, "Size:"); ok {
			size += kB(v)
		} else if v, ok := strings.CutPrefix(line, "Rss:"); ok {
			rss += kB(v)
		}
	}
	if size == 0 {
		t.Fatalf("no read-only mapping of %s in the agent's smaps", exe)
	}
	return size, rss
}

// TestAgentReleasesStartupPages: start-up touches most of the binary's
// code and read-only data (85% of it stayed resident before codepages);
// the running agent lets what it does not use leave its resident set,
// and goes on serving (what it uses faults back in).
func TestAgentReleasesStartupPages(t *testing.T) {
	t.Parallel() // see agent_test.go
	a := startAgent(t, t.TempDir())
	pid := a.Cmd.Process.Pid
	var size, rss int
	waitFor(t, "the executable's pages to be released", 10*time.Second, func() bool {
		size, rss = exeResidency(t, pid, agentBinary(t))
		return rss*100 < size*40
	})
	t.Logf("executable: %d kB mapped read-only, %d kB resident", size, rss)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		code, body, err := postJSON(ctx, http.DefaultClient, a.URL("/v1/actions"), batchJSON([]string{"pages-" + strconv.Itoa(i)}, time.Now()))
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("POST after the release: %d %s %v", code, body, err)
		}
		time.Sleep(1100 * time.Millisecond) // past the next release
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, a.Logs)
	}
}
