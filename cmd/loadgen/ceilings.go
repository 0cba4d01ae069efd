package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fsyncResult is the disk's ceiling for synced writes, single thread.
type fsyncResult struct {
	Dir        string         `json:"dir"`
	Fsyncs     int64          `json:"fsyncs"`
	ElapsedSec float64        `json:"elapsed_sec"`
	PerSec     float64        `json:"fsyncs_per_sec"`
	Latency    latencySummary `json:"latency_us"`
}

// measureFsync writes 256 bytes and fdatasyncs, in a loop, for d, on a file
// in dir. The file is written out and synced first so the loop measures a
// data flush, not block allocation: the cheapest durable write the disk
// offers, which no group commit can beat per sync.
func measureFsync(dir string, d time.Duration) (*fsyncResult, error) {
	f, err := os.CreateTemp(dir, ".loadgen-fsync-*")
	if err != nil {
		return nil, fmt.Errorf("fsync ceiling: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const region = 1 << 20
	if _, err := f.Write(make([]byte, region)); err != nil {
		return nil, fmt.Errorf("fsync ceiling: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("fsync ceiling: %w", err)
	}
	rec := bytes.Repeat([]byte("outpost-loadgen-fsync-ceiling-\n"), 9)[:256]
	h := newHistogram()
	var n int64
	off := int64(0)
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		if _, err := f.WriteAt(rec, off); err != nil {
			return nil, fmt.Errorf("fsync ceiling: %w", err)
		}
		if err := datasync(f); err != nil {
			return nil, fmt.Errorf("fsync ceiling: %w", err)
		}
		h.record(max(time.Since(t0).Microseconds(), 1))
		n++
		off = (off + int64(len(rec))) % region
	}
	el := time.Since(start)
	return &fsyncResult{Dir: dir, Fsyncs: n, ElapsedSec: el.Seconds(), PerSec: float64(n) / el.Seconds(), Latency: h.summary()}, nil
}

// noopServer is the loopback HTTP ceiling's server: Go net/http on
// 127.0.0.1:0 that reads the body and answers 202 {}. Whatever the agent
// does beyond that costs throughput relative to it.
type noopServer struct {
	srv  *http.Server
	base *url.URL
	done chan struct{}
}

func startNoopServer() (*noopServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var pool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	answer := []byte("{}\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := pool.Get().(*bytes.Buffer)
		buf.Reset()
		_, err := buf.ReadFrom(io.LimitReader(r.Body, 8<<20))
		pool.Put(buf)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		w.Write(answer)
	})
	s := &noopServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
		base: &url.URL{Scheme: "http", Host: ln.Addr().String()},
		done: make(chan struct{}),
	}
	go func() { defer close(s.done); s.srv.Serve(ln) }()
	return s, nil
}

func (s *noopServer) close() {
	s.srv.Close()
	<-s.done
}

// loopbackRun drives the no-op server with the same client settings,
// concurrency and bodies as the real run. rate 0 = flat out (the
// throughput ceiling); otherwise open loop at rate (the latency baseline
// for a fixed-rate step).
func loopbackRun(ctx context.Context, base runSpec, rate float64, d time.Duration) (*loadResult, error) {
	srv, err := startNoopServer()
	if err != nil {
		return nil, fmt.Errorf("loopback ceiling: %w", err)
	}
	defer srv.close()
	s := base
	s.url = endpoint(srv.base, "/v1/actions")
	s.client = newClient(base.concurrency, 30*time.Second)
	defer s.client.CloseIdleConnections()
	s.rate = rate
	s.warmup = min(d/4, 500*time.Millisecond)
	s.duration = d
	s.requests = 0
	s.fill = 0
	s.atMeasure = nil
	s.seq = new(seqCounter) // its own ids: none of them reaches the agent
	s.name = "loopback"
	if rate > 0 {
		s.name = fmt.Sprintf("loopback@%g", rate)
	}
	return runLoad(ctx, s), nil
}

// serveNoopFlag runs loadgen as the own-process loopback ceiling's server.
const serveNoopFlag = "-serve-noop"

// serveNoop is loadgen's child mode for the own-process ceiling: the
// no-op server on 127.0.0.1:0, its address on stdout, until stdin closes
// (so it never outlives the parent).
func serveNoop(stdin io.Reader, stdout io.Writer) error {
	s, err := startNoopServer()
	if err != nil {
		return err
	}
	defer s.close()
	if _, err := fmt.Fprintln(stdout, s.base.Host); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

// procCeiling is the no-op server measured in a process of its own.
type procCeiling struct {
	Load        *loadResult `json:"load"`
	ServerCores float64     `json:"server_avg_cores"`
}

// loopbackProcRun measures the no-op server in a process of its own
// (loadgen itself, run with -serve-noop) with the same client: flat out
// (rate 0), or open loop at rate, the latency baseline of the agent's
// shape for a fixed-rate step.
// The agent is a process of its own too: every request crosses from one
// Go runtime to another (a futex wake and an OS context switch where the
// in-process ceiling hands over between goroutines), and the two runtimes
// compete for the same cores. This ceiling has the agent's shape, minus
// everything the agent does.
func loopbackProcRun(ctx context.Context, base runSpec, rate float64, d time.Duration) (*procCeiling, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("own-process ceiling: %w", err)
	}
	cmd := exec.Command(exe, serveNoopFlag)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("own-process ceiling: %w", err)
	}
	done := make(chan error, 1)
	defer func() {
		stdin.Close()
		select {
		case err := <-done:
			_ = err // the ceiling was measured; how the helper exited does not change it
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done //nolint:errcheck // killed: the exit error is the kill
		}
	}()
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	var host string
	select {
	case host = <-addr:
	case <-time.After(10 * time.Second):
		return nil, errors.New("own-process ceiling: the no-op server did not start in 10 s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		return nil, fmt.Errorf("own-process ceiling: the no-op server said %q", host)
	}
	s := base
	s.url = endpoint(&url.URL{Scheme: "http", Host: host}, "/v1/actions")
	s.client = newClient(base.concurrency, 30*time.Second)
	defer s.client.CloseIdleConnections()
	s.rate, s.requests, s.fill, s.atMeasure = rate, 0, 0, nil
	s.warmup = min(d/4, 500*time.Millisecond)
	s.duration = d
	s.seq = new(seqCounter)
	s.name = "loopback-proc"
	if rate > 0 {
		s.name = fmt.Sprintf("loopback-proc@%g", rate)
	}
	pid := cmd.Process.Pid
	var cpu0 atomic.Int64 // set by the measured window's timer
	s.atMeasure = func() {
		c, _ := readCPU(pid)
		cpu0.Store(int64(c))
	}
	res := runLoad(ctx, s)
	pc := &procCeiling{Load: res}
	if cpu1, err := readCPU(pid); err == nil && res.ElapsedSec > 0 && cpu0.Load() > 0 {
		pc.ServerCores = (cpu1 - time.Duration(cpu0.Load())).Seconds() / res.ElapsedSec
	}
	return pc, nil
}

// probeResult is what the disk did while the load ran: the agent's syncs
// can be no faster than the disk's own at the same moment, and a shared
// disk stalls now and then for reasons no agent controls.
type probeResult struct {
	IntervalSec float64        `json:"interval_sec"`
	Latency     latencySummary `json:"latency_us"`
	Over2ms     int64          `json:"over_2ms"`
	Error       string         `json:"error,omitempty"`
}

// diskProbe writes 256 bytes and fdatasyncs once per interval on a file of
// its own, beside the agent's data, for as long as a load step runs: a
// light load (one sync per interval against the agent's thousands) that
// shows the disk's stalls during the step.
type diskProbe struct {
	stop chan struct{}
	done chan *probeResult
}

func startDiskProbe(dir string, every time.Duration) *diskProbe {
	p := &diskProbe{stop: make(chan struct{}), done: make(chan *probeResult, 1)}
	go func() {
		res := &probeResult{IntervalSec: every.Seconds()}
		defer func() { p.done <- res }()
		f, err := os.CreateTemp(dir, ".loadgen-probe-*")
		if err != nil {
			res.Error = err.Error()
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		const region = 1 << 20
		// The region is written and synced before the probe starts, so
		// the probe's syncs measure writes in place, not the file's
		// growth. A failure here used to be dropped (the Sync's error was
		// assigned to a variable nobody read) and the probe went on.
		if _, err := f.Write(make([]byte, region)); err != nil {
			res.Error = "write the probe's region: " + err.Error()
			return
		}
		if err := f.Sync(); err != nil {
			res.Error = "sync the probe's region: " + err.Error()
			return
		}
		rec := bytes.Repeat([]byte("outpost-loadgen-disk-probe-\n"), 10)[:256]
		h := newHistogram()
		tick := time.NewTicker(every)
		defer tick.Stop()
		off := int64(0)
		for {
			select {
			case <-p.stop:
				res.Latency = h.summary()
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if _, err := f.WriteAt(rec, off); err != nil {
				res.Error = err.Error()
				return
			}
			if err := datasync(f); err != nil {
				res.Error = err.Error()
				return
			}
			d := time.Since(t0)
			h.record(max(d.Microseconds(), 1))
			if d > 2*time.Millisecond {
				res.Over2ms++
			}
			off = (off + int64(len(rec))) % region
		}
	}()
	return p
}

func (p *diskProbe) finish() *probeResult {
	close(p.stop)
	return <-p.done
}
