// Package chaos is a conservation suite for the real agent binary: it
// kills, floods, starves and damages the agent while a Tencent simulator
// stands in for the upstream, and checks one oracle (see oracle_test.go)
// after every scenario: every action that got a 202 reaches Tencent intact,
// nothing refused ever does, and once the faults stop a fresh action is
// delivered promptly. memory_test.go holds the memory budgets against
// hostile local clients (big, slow and token-less bodies).
//
// The default run is short; -soak (or OUTPOST_SOAK=1) runs the long one:
//
//	go test ./chaos/ -v -soak
//
// Clock jumps (the TongDun quota pause until midnight, item age limits) are
// covered with an injected clock in forwarder/tongdun_test.go and the other
// forwarder tests, not here: a binary cannot be given a fake clock.
package chaos

// The helpers in this file are copied from e2e/agent_test.go (they are
// unexported there), with two changes: tryStartAgent reports a start-up
// failure instead of failing the test, and sigterm sends SIGTERM (e2e's
// stop sends SIGINT).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

var soakFlag = flag.Bool("soak", false, "run the long version of each chaos scenario")

// soak reports whether the long version runs (-soak or OUTPOST_SOAK=1).
func soak() bool { return *soakFlag || os.Getenv("OUTPOST_SOAK") == "1" }

// agentBinary is the real binary, built once per test run.
func agentBinary(t testing.TB) string { return agenttest.Binary(t) }

type agent struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's answer, once done is closed
}

// syncBuffer holds the agent's log lines.
type syncBuffer = agenttest.SyncBuffer

// tail is the last n lines of the agent's log.
func (a *agent) tail(n int) string {
	lines := strings.Split(strings.TrimRight(a.logs.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crash is the start of what the runtime printed when the process died
// (the first lines that are not JSON log records), or the log tail.
func (a *agent) crash(n int) string {
	lines := strings.Split(a.logs.String(), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "{") && strings.TrimSpace(l) != "" {
			return strings.Join(lines[i:min(len(lines), i+n)], "\n")
		}
	}
	return a.tail(n)
}

// startAgent runs the binary on dataDir and waits for "agent ready".
func startAgent(t testing.TB, dataDir string, env ...string) *agent {
	t.Helper()
	a, err := tryStartAgent(t, dataDir, 30*time.Second, env...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tryStartAgent is startAgent that returns a start-up failure (exit before
// ready, or not ready within wait) instead of failing the test.
func tryStartAgent(t testing.TB, dataDir string, wait time.Duration, env ...string) (*agent, error) {
	t.Helper()
	a, ready, err := spawnAgent(t, dataDir, env...)
	if err != nil {
		return nil, err
	}
	select {
	case a.addr = <-ready:
		return a, nil
	case <-a.done:
		return nil, fmt.Errorf("agent exited before ready: %v\n%s", a.err, a.crash(30))
	case <-time.After(wait):
		a.cmd.Process.Kill()
		<-a.done
		return nil, fmt.Errorf("agent not ready after %s\n%s", wait, a.tail(30))
	}
}

// spawnAgent starts the agent and returns at once; ready receives its
// listen address when it says it is ready (set a.addr from it).
func spawnAgent(t testing.TB, dataDir string, env ...string) (*agent, <-chan string, error) {
	t.Helper()
	return spawnAgentBin(t, agentBinary(t), dataDir, env...)
}

// spawnAgentBin is spawnAgent with the binary to run.
func spawnAgentBin(t testing.TB, bin, dataDir string, env ...string) (*agent, <-chan string, error) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"AGENT_DATA_DIR="+dataDir,
		"AGENT_LISTEN_ADDR=127.0.0.1:0",
		"AGENT_LOG_FORMAT=json",
		"AGENT_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	a := &agent{t: t, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	ready := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			a.logs.Write([]byte(line + "\n"))
			var m struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "agent ready" {
				ready <- m.Listen
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		a.err = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	return a, ready, nil
}

func (a *agent) url(path string) string { return "http://" + a.addr + path }

func (a *agent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (a *agent) kill9() {
	a.cmd.Process.Kill()
	<-a.done
}

// sigterm sends SIGTERM and returns the exit error (nil = exit 0).
func (a *agent) sigterm() error {
	a.cmd.Process.Signal(syscall.SIGTERM)
	return a.wait(30 * time.Second)
}

// wait waits for the process to exit on its own.
func (a *agent) wait(d time.Duration) error {
	select {
	case <-a.done:
		return a.err
	case <-time.After(d):
		a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("agent did not stop within %s", d)
	}
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// getJSON fetches path and decodes it into v when v is not nil.
func (a *agent) getJSON(path string, v any) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(a.url(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, string(b), fmt.Errorf("%s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode, string(b), nil
}

type statusDoc struct {
	Queues map[string]struct {
		Depth       int64 `json:"depth"`
		DeadLetters int64 `json:"dead_letters"`
	} `json:"queues"`
	Upstreams map[string]struct {
		State     string `json:"state"`
		Reason    string `json:"reason"`
		LastError string `json:"last_error"`
		Delivered int64  `json:"delivered_total"`
	} `json:"upstreams"`
	Store struct {
		Damage []struct {
			Found       string           `json:"found"`
			Message     string           `json:"message"`
			EntriesLost map[string]int64 `json:"entries_lost"`
			SetAside    string           `json:"set_aside"`
		} `json:"damage"`
	} `json:"store"`
}

func (a *agent) status() (statusDoc, error) {
	var st statusDoc
	code, body, err := a.getJSON("/v1/status", &st)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/v1/status: %d %s", code, body)
	}
	return st, err
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
