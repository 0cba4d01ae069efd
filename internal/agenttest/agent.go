package agenttest

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
	"syscall"
	"testing"
	"time"
)

// StartTimeout is how long Start waits for "agent ready".
const StartTimeout = 30 * time.Second

// Agent is one running agent process, its log JSON lines on stderr.
type Agent struct {
	Cmd *exec.Cmd
	// Addr is the listen address its "agent ready" line gave.
	Addr string
	Logs *SyncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's answer, once done is closed
}

// Command is the agent binary bin on dataDir, listening on a free loopback
// port, logging JSON at info level, with the test's environment and env
// (later entries win).
func Command(bin, dataDir string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"AGENT_DATA_DIR="+dataDir,
		"AGENT_LISTEN_ADDR=127.0.0.1:0",
		"AGENT_LOG_FORMAT=json",
		"AGENT_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// Start starts cmd (see Command) and waits for its "agent ready" line;
// the test fails if it exits first or is not ready in StartTimeout.
func Start(t testing.TB, cmd *exec.Cmd) *Agent {
	t.Helper()
	a, err := TryStart(t, cmd, StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TryStart is Start that returns a start-up failure (exit before ready,
// or not ready within wait) instead of failing the test.
func TryStart(t testing.TB, cmd *exec.Cmd, wait time.Duration) (*Agent, error) {
	t.Helper()
	a, ready, err := Spawn(t, cmd)
	if err != nil {
		return nil, err
	}
	select {
	case a.Addr = <-ready:
		return a, nil
	case <-a.done:
		return nil, fmt.Errorf("agent exited before ready: %v\n%s", a.err, a.Crash(30))
	case <-time.After(wait):
		_ = a.Cmd.Process.Kill()
		<-a.done
		return nil, fmt.Errorf("agent not ready after %s\n%s", wait, a.Tail(30))
	}
}

// Spawn starts cmd and returns at once; ready receives the listen address
// when the agent says it is ready (set a.Addr from it). The process is
// killed when the test ends, if it still runs.
func Spawn(t testing.TB, cmd *exec.Cmd) (a *Agent, ready <-chan string, err error) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	a = &Agent{Cmd: cmd, Logs: &SyncBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	readyc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = a.Logs.Write([]byte(line + "\n"))
			var m struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "agent ready" {
				select {
				case readyc <- m.Listen:
				default:
				}
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		a.err = cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		if !a.Exited() {
			a.Kill9()
		}
	})
	return a, readyc, nil
}

// URL is http://Addr/path.
func (a *Agent) URL(path string) string { return "http://" + a.Addr + path }

// Done is closed when the process has exited; Err then says how.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is the process's exit error (nil for exit 0), once Done is closed.
func (a *Agent) Err() error {
	<-a.done
	return a.err
}

// Exited reports whether the process has exited.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Kill9 kills the process with SIGKILL and waits for it.
func (a *Agent) Kill9() {
	_ = a.Cmd.Process.Kill()
	<-a.done
}

// Sigterm sends SIGTERM and returns the exit error (nil = exit 0), killing
// the process if it has not stopped within 30 s.
func (a *Agent) Sigterm() error {
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	return a.Wait(30 * time.Second)
}

// Stop is Sigterm with SIGINT, as a terminal's ^C.
func (a *Agent) Stop() error {
	_ = a.Cmd.Process.Signal(os.Interrupt)
	return a.Wait(30 * time.Second)
}

// Wait waits d for the process to exit on its own, then kills it.
func (a *Agent) Wait(d time.Duration) error {
	select {
	case <-a.done:
		return a.err
	case <-time.After(d):
		a.Kill9()
		return fmt.Errorf("agent did not stop within %s", d)
	}
}

// Tail is the last n lines of the agent's log, after the race detector's
// reports if it printed any (a race-built agent exits 66 after them, and
// the tail alone would not say where the race was).
func (a *Agent) Tail(n int) string {
	log := a.Logs.String()
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return raceReports(log) + strings.Join(lines, "\n")
}

// raceReports is every "WARNING: DATA RACE" report in log, each to the
// line of "=" that ends it, or "".
func raceReports(log string) string {
	var b strings.Builder
	for {
		i := strings.Index(log, "WARNING: DATA RACE")
		if i < 0 {
			return b.String()
		}
		log = log[i:]
		end := strings.Index(log, "\n==================")
		if end < 0 {
			end = len(log)
		}
		b.WriteString(log[:end])
		b.WriteString("\n==================\n")
		log = log[end:]
		if len(log) > 0 {
			log = log[1:]
		}
	}
}

// Crash is the start of what the runtime printed when the process died
// (the first lines that are not JSON log records), or the log's tail.
func (a *Agent) Crash(n int) string {
	lines := strings.Split(a.Logs.String(), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "{") && strings.TrimSpace(l) != "" {
			return strings.Join(lines[i:min(len(lines), i+n)], "\n")
		}
	}
	return a.Tail(n)
}

// GetJSON fetches path and decodes it into v when v is not nil.
func (a *Agent) GetJSON(path string, v any) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(a.URL(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, string(b), fmt.Errorf("%s: %w: %s", path, err, b)
		}
	}
	return resp.StatusCode, string(b), nil
}

// PostJSON posts body as application/json and reads the whole answer.
func PostJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, http.Header, []byte, error) {
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
