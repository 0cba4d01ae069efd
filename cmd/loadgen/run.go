package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// newClient returns the HTTP client every run uses (the agent's and the
// loopback ceiling's alike): one transport, keep-alive, an idle connection
// per worker, no proxy, no compression, no redirects.
func newClient(concurrency int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // never: the target is loopback
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      4 << 10,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// seqCounter hands out id sequence numbers; the runs against one target
// share one so that no id repeats.
type seqCounter = atomic.Uint64

// runSpec is one load run against one endpoint.
type runSpec struct {
	name        string
	url         *url.URL // the POST target
	client      *http.Client
	token       string
	gen         *generator
	seq         *seqCounter
	concurrency int
	rate        float64       // requests/s, open loop; 0 = flat out, closed loop
	warmup      time.Duration // sent, not measured
	duration    time.Duration // measured window (fill: a time cap)
	requests    int64         // stop after this many measured requests (0 = no limit)
	fill        int64         // fill mode: send exactly this many actions, then stop
	seed        uint64
	// atMeasure is called when the measured window opens (after warmup).
	atMeasure func()
}

// latencySummary is in microseconds.
type latencySummary struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p99_9"`
	Max   int64   `json:"max"`
}

type totals struct {
	Requests int64 `json:"requests"`
	Actions  int64 `json:"actions"`
	Accepted int64 `json:"accepted"`
}

// loadResult is what one run measured.
type loadResult struct {
	Name        string  `json:"name"`
	Loop        string  `json:"loop"`                // "closed" (flat out) or "open" (fixed rate)
	OfferedRate float64 `json:"offered_req_per_sec"` // 0 = flat out
	Concurrency int     `json:"concurrency"`
	Batch       int     `json:"batch"`
	AvgBodySize float64 `json:"avg_body_bytes"`
	WarmupSec   float64 `json:"warmup_sec"`
	ElapsedSec  float64 `json:"elapsed_sec"` // the measured window, to the last measured answer
	// Measured requests (intended send time after warmup) and their actions.
	Requests      int64            `json:"requests"`
	Actions       int64            `json:"actions"`
	ReqPerSec     float64          `json:"req_per_sec"`
	ActionsPerSec float64          `json:"actions_per_sec"`
	Status        map[string]int64 `json:"status"`                // HTTP status -> count
	ErrorCodes    map[string]int64 `json:"error_codes,omitempty"` // "503 overloaded" -> count
	Errors        int64            `json:"transport_errors"`
	FirstError    string           `json:"first_error,omitempty"`
	FirstRefusal  string           `json:"first_refusal,omitempty"` // the first non-202 answer
	Accepted      int64            `json:"accepted"`                // from the 202 answers
	Duplicates    int64            `json:"duplicates"`              // from the 202 answers
	Unsent        int64            `json:"unsent,omitempty"`
	Latency       latencySummary   `json:"latency_us"`
	// PacingLag (open loop): how late the workers' timers woke them for
	// the requests they sent on schedule; not part of Latency.
	PacingLag *latencySummary `json:"pacing_lag_us,omitempty"`
	Total     totals          `json:"total_incl_warmup"`
}

func (r *loadResult) count(code int) int64 { return r.Status[strconv.Itoa(code)] }

// runner is the shared state of one run.
type runner struct {
	spec         runSpec
	start        time.Time
	measureStart time.Time
	end          time.Time
	drainBy      time.Time
	interval     float64 // open loop: nanoseconds between intended sends

	ticket     atomic.Int64 // open loop: next schedule slot
	issued     atomic.Int64 // measured requests taken (for -requests)
	fillIssued atomic.Int64 // fill: actions taken

	mu    sync.Mutex
	hist  *histogram
	lag   *histogram // open loop: how late the workers' timers woke them
	tally tally
}

// tally is one worker's counts, merged at the end.
type tally struct {
	requests, actions    int64
	bodyBytes            int64
	codes                map[int]int64
	errCodes             map[string]int64
	errs                 int64
	firstErr             string
	firstRefusal         string // the first non-202 answer, cut short
	accepted, duplicates int64
	lastDone             time.Time
	total                totals
}

func (t *tally) merge(o *tally) {
	t.requests += o.requests
	t.actions += o.actions
	t.bodyBytes += o.bodyBytes
	if t.codes == nil {
		t.codes = map[int]int64{}
	}
	for k, v := range o.codes {
		t.codes[k] += v
	}
	for k, v := range o.errCodes {
		if t.errCodes == nil {
			t.errCodes = map[string]int64{}
		}
		t.errCodes[k] += v
	}
	t.errs += o.errs
	if t.firstErr == "" {
		t.firstErr = o.firstErr
	}
	if t.firstRefusal == "" {
		t.firstRefusal = o.firstRefusal
	}
	t.accepted += o.accepted
	t.duplicates += o.duplicates
	if o.lastDone.After(t.lastDone) {
		t.lastDone = o.lastDone
	}
	t.total.Requests += o.total.Requests
	t.total.Actions += o.total.Actions
	t.total.Accepted += o.total.Accepted
}

// runLoad drives one run and returns what it measured. It always stops by
// itself: at the end of warmup+duration, after -requests measured
// requests, or (fill) when all actions are sent; an open-loop run that fell
// behind drains its backlog for at most one more duration.
func runLoad(ctx context.Context, s runSpec) *loadResult {
	r := &runner{spec: s, hist: newHistogram(), lag: newHistogram()}
	r.start = time.Now()
	r.measureStart = r.start.Add(s.warmup)
	r.end = r.measureStart.Add(s.duration)
	r.drainBy = r.end.Add(s.duration)
	if s.rate > 0 {
		r.interval = 1e9 / s.rate
	}
	if s.atMeasure != nil {
		if s.warmup > 0 {
			t := time.AfterFunc(s.warmup, s.atMeasure)
			defer t.Stop()
		} else {
			s.atMeasure()
		}
	}
	var wg sync.WaitGroup
	for i := range s.concurrency {
		w := r.newWorker(i)
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
	return r.result()
}

// slotAt is the first open-loop slot whose intended send time is at or
// after start+d (the workers' own arithmetic).
func (r *runner) slotAt(d time.Duration) int64 {
	i := max(int64(float64(d)/r.interval)-2, 0)
	for time.Duration(float64(i)*r.interval) < d {
		i++
	}
	return i
}

func (r *runner) result() *loadResult {
	s := r.spec
	t := &r.tally
	res := &loadResult{
		Name: s.name, Loop: "closed", OfferedRate: s.rate, Concurrency: s.concurrency, Batch: s.gen.batch,
		WarmupSec: s.warmup.Seconds(),
		Requests:  t.requests, Actions: t.actions,
		Status: map[string]int64{}, ErrorCodes: t.errCodes, Errors: t.errs, FirstError: t.firstErr, FirstRefusal: t.firstRefusal,
		Accepted: t.accepted, Duplicates: t.duplicates, Total: t.total,
		Latency: r.hist.summary(),
	}
	if s.rate > 0 {
		res.Loop = "open"
		if lag := r.lag.summary(); lag.Count > 0 {
			res.PacingLag = &lag
		}
		// Slots scheduled inside the measured window that were never sent
		// (the drain limit or -requests cut them off).
		scheduled := r.slotAt(s.warmup+s.duration) - r.slotAt(s.warmup)
		if s.requests > 0 {
			scheduled = min(scheduled, s.requests)
		}
		res.Unsent = max(scheduled-t.requests, 0)
	}
	for code, n := range t.codes {
		res.Status[strconv.Itoa(code)] = n
	}
	if t.requests > 0 {
		res.AvgBodySize = float64(t.bodyBytes) / float64(t.requests)
		el := t.lastDone.Sub(r.measureStart)
		if el <= 0 {
			el = time.Microsecond
		}
		res.ElapsedSec = el.Seconds()
		res.ReqPerSec = float64(t.requests) / el.Seconds()
		res.ActionsPerSec = float64(t.actions) / el.Seconds()
	}
	return res
}

// worker sends requests one at a time.
type worker struct {
	r       *runner
	rng     *rand.Rand
	hdr     http.Header
	scratch []uint64
	resp    [512]byte
	lat     []int64 // latencies (µs) not yet in the shared histogram
	lags    []int64 // timer lateness (µs) not yet in the shared histogram
	timer   *time.Timer
	t       tally
}

func (r *runner) newWorker(i int) *worker {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "outpost-loadgen")
	if r.spec.token != "" {
		h.Set("Authorization", "Bearer "+r.spec.token)
	}
	return &worker{
		r:    r,
		rng:  rand.New(rand.NewPCG(r.spec.seed, uint64(i)+1)),
		hdr:  h,
		lat:  make([]int64, 0, 256),
		lags: make([]int64, 0, 256),
		t:    tally{codes: map[int]int64{}},
	}
}

func (w *worker) run(ctx context.Context) {
	r := w.r
	s := &r.spec
	defer w.flush()
	defer func() {
		r.mu.Lock()
		r.tally.merge(&w.t)
		r.mu.Unlock()
	}()
	for ctx.Err() == nil {
		// from is where a request's latency is measured from: its intended
		// send time, so a slow agent that makes the workers fall behind
		// is not hidden (coordinated omission), except when the worker was
		// idle and asleep on a timer until then. Go's timers wake a
		// process that sleeps in the netpoller up to a millisecond late
		// (epoll waits whole milliseconds); that delay is the generator's
		// own and no caller of the agent sees it, so it is measured from
		// the wake-up and the lateness is reported on its own (pacing).
		var intended, from time.Time
		slept := false
		if s.rate > 0 {
			i := r.ticket.Add(1) - 1
			intended = r.start.Add(time.Duration(float64(i) * r.interval))
			if !intended.Before(r.end) {
				return
			}
			now := time.Now()
			if now.After(r.drainBy) {
				return
			}
			if d := intended.Sub(now); d > 0 {
				if w.timer == nil {
					w.timer = time.NewTimer(d)
				} else {
					w.timer.Reset(d)
				}
				select {
				case <-w.timer.C:
				case <-ctx.Done():
					return
				}
				slept = true
			}
		} else {
			intended = time.Now()
			if !intended.Before(r.end) {
				return
			}
		}
		from = intended
		measured := !intended.Before(r.measureStart)
		if slept {
			from = time.Now()
			if measured {
				w.lags = append(w.lags, max(from.Sub(intended).Microseconds(), 0))
			}
		}
		if measured && s.requests > 0 && r.issued.Add(1) > s.requests {
			return
		}
		t := &s.gen.pool[w.rng.IntN(len(s.gen.pool))]
		if s.fill > 0 {
			k := r.fillIssued.Add(int64(s.gen.batch)) - int64(s.gen.batch)
			if k >= s.fill {
				return
			}
			if n := s.fill - k; n < int64(t.actions) {
				last := s.gen.build(int(n), w.rng)
				t = &last
			}
		}
		w.send(ctx, t, from, measured)
	}
}

func (w *worker) send(ctx context.Context, t *template, from time.Time, measured bool) {
	r := w.r
	s := &r.spec
	n := uint64(t.actions)
	first := s.seq.Add(n) - n
	// A fresh body each time (the transport may still be writing the last
	// one after Do returns), as a plain *bytes.Reader: net/http then sends
	// the headers and the body in one write, as clients of a small request
	// do. A reader of another type makes it flush the headers first, which
	// cost two writes per request here, and the server a second read.
	var buf []byte
	buf, w.scratch = s.gen.render(nil, t, first, time.Now().Unix(), w.rng, w.scratch)
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           s.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.hdr,
		Body:          io.NopCloser(bytes.NewReader(buf)),
		ContentLength: int64(len(buf)),
		Host:          s.url.Host,
	}).WithContext(ctx)

	code, errCode, acc, dup, nresp := 0, "", int64(0), int64(0), 0
	resp, err := s.client.Do(req)
	if err == nil {
		code = resp.StatusCode
		nr, rerr := io.ReadFull(resp.Body, w.resp[:])
		nresp = nr
		if errors.Is(rerr, io.ErrUnexpectedEOF) || errors.Is(rerr, io.EOF) {
			rerr = nil
		} else if rerr == nil {
			_, rerr = io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		err = rerr
		if code == http.StatusAccepted {
			acc, dup = jsonInt(w.resp[:nr], `"accepted":`), jsonInt(w.resp[:nr], `"duplicates":`)
		} else if code == http.StatusOK && s.gen.decisions {
			acc, code = 1, http.StatusAccepted // a decision answered counts as accepted
		} else {
			errCode = jsonString(w.resp[:nr], `"code":`)
		}
	}
	done := time.Now()

	w.t.total.Requests++
	w.t.total.Actions += int64(n)
	w.t.total.Accepted += acc
	if !measured || ctx.Err() != nil && err != nil {
		return
	}
	w.t.requests++
	w.t.actions += int64(n)
	w.t.bodyBytes += int64(len(buf))
	if done.After(w.t.lastDone) {
		w.t.lastDone = done
	}
	if err != nil {
		w.t.errs++
		if w.t.firstErr == "" {
			w.t.firstErr = err.Error()
		}
		// An answer cut short still counts under its status.
	}
	if code != 0 {
		w.t.codes[code]++
		if code != http.StatusAccepted {
			if w.t.errCodes == nil {
				w.t.errCodes = map[string]int64{}
			}
			w.t.errCodes[strconv.Itoa(code)+" "+orDash(errCode)]++
			if w.t.firstRefusal == "" {
				w.t.firstRefusal = strconv.Itoa(code) + " " + string(bytes.TrimSpace(w.resp[:min(nresp, 300)]))
			}
		}
	}
	w.t.accepted += acc
	w.t.duplicates += dup
	w.lat = append(w.lat, max(done.Sub(from).Microseconds(), 1))
	if len(w.lat) == cap(w.lat) || len(w.lags) == cap(w.lags) {
		w.flush()
	}
}

func (w *worker) flush() {
	if len(w.lat) == 0 && len(w.lags) == 0 {
		return
	}
	w.r.mu.Lock()
	for _, v := range w.lat {
		w.r.hist.record(v)
	}
	for _, v := range w.lags {
		w.r.lag.record(v)
	}
	w.r.mu.Unlock()
	w.lat = w.lat[:0]
	w.lags = w.lags[:0]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonInt finds key (e.g. `"accepted":`) in a small JSON answer and parses
// the integer after it; 0 if absent.
func jsonInt(b []byte, key string) int64 {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0
	}
	var v int64
	for _, c := range b[i+len(key):] {
		if c == ' ' && v == 0 {
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

// jsonString finds key in a small JSON answer and returns the plain string
// value after it (no escapes expected: error codes are [a-z_]).
func jsonString(b []byte, key string) string {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(b[i+len(key):], " ")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	rest = rest[1:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return ""
	}
	return string(rest[:j])
}
