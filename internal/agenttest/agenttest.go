// Package agenttest is what the end-to-end and chaos suites share to run
// the real agent binary: building it once per test run (with the race
// detector when the tests run with it) and a log buffer safe for the
// goroutine that copies the agent's stderr.
package agenttest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// build is one build of cmd/agent, made once per test binary.
type build struct {
	once sync.Once
	path string
	err  error
}

var raceBuild, plainBuild build

// A race-built program sleeps a second when it exits, so that goroutines
// still running can report a race before the process is gone (the race
// detector's atexit_sleep_ms, 1000 by default). Every agent these suites
// stop cleanly has stopped its goroutines first, and races are reported
// as they happen, not at exit: the processes the tests start (they
// inherit this environment) skip that second unless GORACE says otherwise.
// It was 0.9 s of every race-built agent a test stopped with SIGTERM.
// The test binary itself read GORACE when it started: unchanged.
func init() {
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
}

// Binary builds cmd/agent once per test binary and returns its path. It
// has the race detector when the tests do.
func Binary(t testing.TB) string {
	t.Helper()
	if RaceEnabled {
		return raceBuild.get(t, "-race")
	}
	return plainBuild.get(t)
}

// PlainBinary is Binary without the race detector even under -race: the
// binary as it ships, for the chaos suite, and for tests that measure the
// agent's memory, which the detector's shadow memory would multiply (5 to
// 10 times, as the Go documentation says).
func PlainBinary(t testing.TB) string {
	t.Helper()
	return plainBuild.get(t)
}

func (b *build) get(t testing.TB, flags ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-agent-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "agent")
		args := append([]string{"build", "-o", b.path}, flags...)
		out, err := exec.Command("go", append(args, "github.com/outpost-agent/outpost/cmd/agent")...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// SyncBuffer collects a process's output from one goroutine while tests
// read it from another.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CopyFile copies src to dst (created or truncated, mode 0600) in the
// kernel: io.Copy between two files is copy_file_range on Linux, so the
// damage tests copy stores of 32 MiB value logs and journal segments
// without reading them into the test's memory.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// InvertBytes inverts n bytes of path at off (fewer at its end) in place,
// syncs the file, and says how many: the damage tests' bit rot. Inverting
// nothing (off at or past the end) is an error.
func InvertBytes(path string, off int64, n int) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := f.ReadAt(b, off)
	if m == 0 {
		return 0, fmt.Errorf("invert %s at %d: nothing to invert: %v", path, off, err)
	}
	for i := range b[:m] {
		b[i] ^= 0xff
	}
	if _, err := f.WriteAt(b[:m], off); err != nil {
		return 0, err
	}
	return m, f.Sync()
}
