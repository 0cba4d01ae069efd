package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux ABI Go supports.
const clockTicks = 100

// procSample is one reading of a process's memory (bytes) and CPU time.
type procSample struct {
	VmRSS, VmHWM, RssAnon, RssFile int64
	CPU                            time.Duration // utime + stime
}

// readProc reads /proc/PID/status and /proc/PID/stat.
func readProc(pid int) (procSample, error) {
	var s procSample
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &s.VmRSS
		case "VmHWM":
			dst = &s.VmHWM
		case "RssAnon":
			dst = &s.RssAnon
		case "RssFile":
			dst = &s.RssFile
		default:
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) >= 1 {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				*dst = kb << 10
			}
		}
	}
	cpu, err := readCPU(pid)
	s.CPU = cpu
	return s, err
}

// readCPU returns utime+stime of pid from /proc/PID/stat.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(b []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold anything;
	// the fields after its last ')' start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// peaks are the highest memory readings seen.
type peaks struct {
	VmRSS, RssAnon, RssFile int64
	samples                 int
}

func (p *peaks) add(s procSample) {
	p.VmRSS = max(p.VmRSS, s.VmRSS)
	p.RssAnon = max(p.RssAnon, s.RssAnon)
	p.RssFile = max(p.RssFile, s.RssFile)
	p.samples++
}

// sampler reads a process's memory every interval, keeping the peaks over
// its whole life and over the current window.
type sampler struct {
	pid  int
	mu   sync.Mutex
	all  peaks
	win  peaks
	last procSample
	err  error
	stop chan struct{}
	done chan struct{}
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.sample()
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	ps, err := readProc(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || ps.VmHWM == 0 {
		// Gone, or exiting (a zombie's status has no Vm* lines).
		s.err = err
		return
	}
	s.last = ps
	s.all.add(ps)
	s.win.add(ps)
}

// window starts a new window and returns the previous one's peaks.
func (s *sampler) window() peaks {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.win
	s.win = peaks{}
	return w
}

// snapshot returns the latest reading and the lifetime peaks.
func (s *sampler) snapshot() (procSample, peaks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.all
}

func (s *sampler) close() {
	close(s.stop)
	<-s.done
}
