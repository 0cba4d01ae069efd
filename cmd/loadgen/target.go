package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// loopbackURL parses a target base URL and refuses anything that is not
// plain http on 127.0.0.1, localhost or [::1]: this tool only ever loads
// the agent on its own host.
func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("target %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("target %q: only http:// URLs are supported (the agent's local API is plain HTTP on loopback)", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("target %q: user info is not allowed in the URL", raw)
	}
	switch strings.ToLower(u.Hostname()) {
	case "127.0.0.1", "localhost", "::1":
	default:
		return nil, fmt.Errorf("refusing target %q: host %q is not loopback (only 127.0.0.1, localhost or [::1] are allowed)", raw, u.Hostname())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target %q: give the agent's base URL, e.g. http://127.0.0.1:8470", raw)
	}
	return &url.URL{Scheme: "http", Host: u.Host}, nil
}

// endpoint is base (scheme and host) with path.
func endpoint(base *url.URL, path string) *url.URL {
	return &url.URL{Scheme: base.Scheme, Host: base.Host, Path: path}
}

// agentProc is an agent binary started by the load generator.
type agentProc struct {
	cmd     *exec.Cmd
	addr    string
	dataDir string
	exited  chan struct{} // closed when the process has exited
	waitErr error

	mu       sync.Mutex
	tail     []string // last log lines
	warns    int
	errors   int
	errLines []string // the first error-level lines
}

const tailLines = 40

// startAgent runs bin on dataDir, listening on 127.0.0.1:0 with JSON logs,
// and waits for its "agent ready" line for the address. AGENT_* variables
// of the caller's environment are not passed on (a run's configuration is
// the defaults plus extraEnv, nothing else).
func startAgent(bin, dataDir string, extraEnv []string) (*agentProc, error) {
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"AGENT_DATA_DIR="+dataDir,
		"AGENT_LISTEN_ADDR=127.0.0.1:0",
		"AGENT_LOG_FORMAT=json",
		"AGENT_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, extraEnv...) // later values win
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	a := &agentProc{cmd: cmd, dataDir: dataDir, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.logLine(sc.Text(), ready)
		}
		io.Copy(io.Discard, stderr)
		a.waitErr = cmd.Wait() // only after every read from the pipe
		close(a.exited)
	}()
	select {
	case addr := <-ready:
		a.addr = addr
		return a, nil
	case <-a.exited:
		return nil, fmt.Errorf("the agent exited before it was ready (%v):\n%s", a.waitErr, a.logTail())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-a.exited
		return nil, fmt.Errorf("the agent was not ready after 30s:\n%s", a.logTail())
	}
}

func (a *agentProc) logLine(line string, ready chan<- string) {
	var m struct {
		Level  string `json:"level"`
		Msg    string `json:"msg"`
		Listen string `json:"listen"`
	}
	parsed := json.Unmarshal([]byte(line), &m) == nil
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tail) == tailLines {
		copy(a.tail, a.tail[1:])
		a.tail = a.tail[:tailLines-1]
	}
	a.tail = append(a.tail, line)
	switch m.Level {
	case "WARN":
		a.warns++
	case "ERROR":
		a.errors++
		if len(a.errLines) < 5 {
			a.errLines = append(a.errLines, line)
		}
	}
	if parsed && m.Msg == "agent ready" && m.Listen != "" {
		select {
		case ready <- m.Listen:
		default:
		}
	}
}

func (a *agentProc) logTail() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.tail, "\n")
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit (SIGKILL after timeout).
func (a *agentProc) stop(timeout time.Duration) (exit string, took time.Duration, clean bool) {
	select {
	case <-a.exited:
		return "exited during the run: " + exitString(a.waitErr), 0, false
	default:
	}
	t0 := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(timeout):
		a.cmd.Process.Kill()
		<-a.exited
		return fmt.Sprintf("did not stop within %v of SIGTERM; killed", timeout), time.Since(t0), false
	}
	return exitString(a.waitErr), time.Since(t0), a.waitErr == nil
}

func exitString(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String() // "exit status 1", "signal: killed"
	default:
		return err.Error()
	}
}

// agentGet GETs path from the agent (with the bearer token, when set) and
// hands the body of a 200 answer to read; any other status is an error.
func agentGet(ctx context.Context, c *http.Client, base *url.URL, token, path string, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint(base, path).String(), nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	defer io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return read(resp.Body)
}

// queueDepth reads the tencent queue's depth from GET /v1/status.
func queueDepth(ctx context.Context, c *http.Client, base *url.URL, token string) (int64, error) {
	var st struct {
		Queues map[string]struct {
			Depth int64 `json:"depth"`
		} `json:"queues"`
	}
	err := agentGet(ctx, c, base, token, "/v1/status", func(r io.Reader) error {
		if err := json.NewDecoder(r).Decode(&st); err != nil {
			return fmt.Errorf("GET /v1/status: %v", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	q, ok := st.Queues["tencent"]
	if !ok {
		return 0, errors.New("GET /v1/status: no tencent queue")
	}
	return q.Depth, nil
}
