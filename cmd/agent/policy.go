package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/outpost-agent/outpost/policy"
)

// policyHolder keeps the policy in force and swaps it on reload. A file that
// fails to parse, type-check or pass its own tests is refused: the old
// policy keeps running and the refusal shows in the log and /v1/status.
type policyHolder struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[policy.Policy]

	mu        sync.Mutex
	lastSum   [32]byte
	lastError string
	lastLoad  time.Time
	reloads   int64
	failures  int64
}

func newPolicyHolder(path string, log *slog.Logger) (*policyHolder, error) {
	h := &policyHolder{path: path, log: log.With("component", "policy")}
	if path == "" {
		h.cur.Store(policy.Default())
		h.log.Info("using the embedded default policy", "version", policy.Default().Version())
		return h, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(b, path)
	if err != nil {
		return nil, err
	}
	h.cur.Store(p)
	h.lastSum, h.lastLoad = sha256.Sum256(b), time.Now()
	h.log.Info("policy loaded", "file", path, "version", p.Version(), "sha256", p.SHA256())
	return h, nil
}

func (h *policyHolder) Current() *policy.Policy { return h.cur.Load() }

// reload reads the file again; unchanged content is a no-op.
func (h *policyHolder) reload(reason string) {
	if h.path == "" {
		return
	}
	b, err := os.ReadFile(h.path)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.refuse(reason, err)
		return
	}
	sum := sha256.Sum256(b)
	if bytes.Equal(sum[:], h.lastSum[:]) && h.lastError == "" {
		return
	}
	p, err := policy.Parse(b, h.path)
	if err != nil {
		h.lastSum = sum // do not log the same broken file every poll
		h.refuse(reason, err)
		return
	}
	old := h.cur.Swap(p)
	h.lastSum, h.lastError, h.lastLoad = sum, "", time.Now()
	h.reloads++
	h.log.Info("policy reloaded", "trigger", reason, "version", p.Version(), "sha256", p.SHA256(), "previous_version", old.Version())
}

func (h *policyHolder) refuse(reason string, err error) {
	h.failures++
	h.lastError = err.Error()
	h.log.Error("policy refused; the previous policy keeps running", "trigger", reason, "file", h.path,
		"err", err, "running_version", h.cur.Load().Version())
}

// watch reloads the policy when its file changes. It watches the file's
// directory, not the file (fsnotify, inotify on Linux): an editor's atomic
// rename over it, and Kubernetes swapping a ConfigMap volume's ..data
// symlink, replace the file rather than write it; and, when the path is a
// symlink, the directory of the file it leads to now, for a write there.
// Events come in bursts (a write is several), so a reload waits for 100ms
// of quiet; reload itself ignores content it has already seen. Where the
// directory cannot be watched (inotify limits, some network file systems)
// it re-reads the file every `every` instead.
func (h *policyHolder) watch(ctx context.Context, every time.Duration) {
	if h.path == "" {
		return
	}
	dir := filepath.Dir(h.path)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(dir); err != nil {
			w.Close()
		}
	}
	if err != nil {
		h.log.Warn("cannot watch the policy file's directory; re-reading the file every AGENT_POLICY_POLL_INTERVAL instead",
			"dir", dir, "every", every.String(), "err", err)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.reload("file changed")
			}
		}
	}
	defer w.Close()
	// target is the directory of the file the path leads to now, watched
	// beside dir while it differs.
	target := ""
	follow := func() {
		real, err := filepath.EvalSymlinks(h.path)
		if err != nil || filepath.Dir(real) == target {
			return
		}
		if target != "" && target != dir {
			_ = w.Remove(target)
		}
		target = filepath.Dir(real)
		if target != dir {
			_ = w.Add(target)
		}
	}
	follow()
	const quiet = 100 * time.Millisecond
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			settle = time.After(quiet)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: look at the file anyway.
			h.log.Warn("watching the policy file", "dir", dir, "err", err)
			settle = time.After(quiet)
		case <-settle:
			settle = nil
			follow()
			h.reload("file changed")
		}
	}
}

type policyStatus struct {
	Version     string     `json:"version"`
	SHA256      string     `json:"sha256"`
	File        string     `json:"file"`
	LoadedAt    *time.Time `json:"loaded_at,omitempty"`
	Reloads     int64      `json:"reloads"`
	Refusals    int64      `json:"refusals"`
	LastRefusal string     `json:"last_refusal,omitempty"`
}

func (h *policyHolder) status() policyStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.cur.Load()
	st := policyStatus{Version: p.Version(), SHA256: p.SHA256(), File: h.path, Reloads: h.reloads, Refusals: h.failures, LastRefusal: h.lastError}
	if st.File == "" {
		st.File = "(embedded default)"
	}
	if !h.lastLoad.IsZero() {
		t := h.lastLoad
		st.LoadedAt = &t
	}
	return st
}
