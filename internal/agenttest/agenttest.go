// Package agenttest is what the end-to-end and chaos suites share to run
// the real agent binary: building it once per test run (with the race
// detector when the tests run with it) and a log buffer safe for the
// goroutine that copies the agent's stderr.
package agenttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/agent once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-agent-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "agent")
		args := []string{"build", "-o", binPath}
		if RaceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/outpost-agent/outpost/cmd/agent")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
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
