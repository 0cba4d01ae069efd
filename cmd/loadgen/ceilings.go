package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
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
