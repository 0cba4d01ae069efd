// Package agentproc runs the agent binary for the benchmark programs
// (bench/kafka, bench/velocity): started on a data directory and a free
// loopback port, ready once its JSON log says so, stopped with SIGINT.
// The tests have their own harness (internal/agenttest), built on
// testing.TB; a benchmark is a program, so this one returns errors.
package agentproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Proc is one running agent (or relay) process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Addr is the listen address its ready line gave.
	Addr string
	done chan error
}

// Start runs bin with args on dataDir, listening on a free loopback port
// and logging JSON at info level, with the environment and env (later
// entries win), and waits up to wait for the log line ready ("agent
// ready", "relay ready").
func Start(name, bin, dataDir, ready string, wait time.Duration, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "AGENT_DATA_DIR="+dataDir, "AGENT_LISTEN_ADDR=127.0.0.1:0",
		"AGENT_LOG_FORMAT=json", "AGENT_LOG_LEVEL=info")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Name: name, Cmd: cmd, done: make(chan error, 1)}
	readyc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Msg == ready {
				select {
				case readyc <- m.Listen:
				default:
				}
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.Addr = <-readyc:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("%s exited before %q: %v", name, ready, err)
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-p.done //nolint:errcheck // killed: the exit error is the kill
		return nil, fmt.Errorf("%s: no %q after %s", name, ready, wait)
	}
}

// Stop sends SIGINT and waits up to grace for the process to exit, then
// kills it; it returns how the process exited.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(os.Interrupt) // gone already: done says so
	select {
	case err := <-p.done:
		return err
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		return <-p.done
	}
}

// Get reads http://Addr/path.
func (p *Proc) Get(path string) ([]byte, error) {
	resp, err := http.Get("http://" + p.Addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Memory is a size field of the process's /proc status, in bytes
// ("VmRSS", "VmHWM"); 0 when it cannot be read.
func (p *Proc) Memory(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
