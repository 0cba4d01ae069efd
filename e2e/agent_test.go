// Package e2e holds end-to-end tests that build and run the real agent
// binary, talk to it over HTTP, kill it, and inspect the store it left.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

// agentBinary is the real binary, built once per test run.
func agentBinary(t testing.TB) string { return agenttest.Binary(t) }

// agent is one running agent process.
type agent struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

// syncBuffer holds the agent's log lines.
type syncBuffer = agenttest.SyncBuffer

// startAgent runs the binary on dataDir with extra AGENT_ variables and
// waits for its "agent ready" log line, which carries the listen address.
func startAgent(t testing.TB, dataDir string, env ...string) *agent {
	t.Helper()
	cmd := exec.Command(agentBinary(t))
	cmd.Env = append(os.Environ(),
		"AGENT_DATA_DIR="+dataDir,
		"AGENT_LISTEN_ADDR=127.0.0.1:0",
		"AGENT_LOG_FORMAT=json",
		"AGENT_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, env...)
	return runAgent(t, cmd)
}

// runAgent starts cmd, an agent whose log is JSON lines on stderr, and
// waits for its "agent ready" line, which carries the listen address.
func runAgent(t testing.TB, cmd *exec.Cmd) *agent {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
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
	go func() { a.done <- cmd.Wait() }()
	select {
	case a.addr = <-ready:
	case err := <-a.done:
		t.Fatalf("agent exited before ready: %v\n%s", err, a.logs)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("agent not ready after 30s\n%s", a.logs)
	}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	return a
}

func (a *agent) url(path string) string { return "http://" + a.addr + path }

// kill9 kills the process with SIGKILL and waits for it.
func (a *agent) kill9() {
	a.cmd.Process.Kill()
	<-a.done
}

// stop sends SIGTERM and returns the exit error (nil = exit 0).
func (a *agent) stop() error {
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-a.done:
		return err
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		return fmt.Errorf("agent did not stop within 30s")
	}
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func actionJSON(id string, now time.Time) string {
	return fmt.Sprintf(`{"id":%q,"track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":%d,`+
		`"user_id":{"phone":"13800138000"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}}`, id, now.Unix())
}

func batchJSON(ids []string, now time.Time) []byte {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = actionJSON(id, now)
	}
	return []byte(`{"actions":[` + strings.Join(parts, ",") + `]}`)
}
