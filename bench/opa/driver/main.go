// Command driver is the HTTP load driver of the Outpost-vs-OPA benchmark (bench/opa/run.sh). It
// posts one fixed body to one URL, on loopback only, either at a fixed rate (open loop: requests
// are due on a fixed schedule whatever the server does, and a request's latency runs from the
// moment it was due, so a stalled server cannot hide its queue; coordinated omission corrected)
// or flat out with C workers each sending its next request as soon as the last one answered. It
// runs for D, then prints requests per second and the latency percentiles as one JSON line on
// stdout and one line for people on stderr.
//
// With -ceiling it first measures a do-nothing Go HTTP handler, in process on 127.0.0.1:0, with
// the same body, client and settings: the loopback ceiling, which the target's figures are set
// beside (the JSON then carries it under "ceiling"). With -report it reads such JSON files and
// prints the comparison table.
//
//	go run ./bench/opa/driver -url http://127.0.0.1:8181/v1/data/outpost/decision -body bench/opa/input.json -rate 2000 -d 10s -ceiling
//	go run ./bench/opa/driver -url http://127.0.0.1:8470/v1/decisions -body req.json -c 64 -d 10s -ceiling -label agent
//	go run ./bench/opa/driver -report out/*.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config is one run.
type Config struct {
	Label       string
	URL         string
	Body        []byte
	ContentType string
	Rate        float64       // requests per second, open loop; 0 = flat out
	Concurrency int           // workers (and at most as many connections)
	Duration    time.Duration // how long requests are sent
	Timeout     time.Duration // per request
	Grace       time.Duration // after Duration, how long due requests may still be sent and answered
	Warm        int           // requests sent one by one before measuring, not counted (at least 1: the target must answer 2xx)
}

// Latency is a latency summary in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p99_9"`
	Max   int64   `json:"max"`
}

// Result is what a run measured.
type Result struct {
	Label       string  `json:"label"`
	URL         string  `json:"url"`
	Mode        string  `json:"mode"` // rate | flat
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency"`
	DurationSec float64 `json:"duration_sec"`
	BodyBytes   int     `json:"body_bytes"`
	// Requests answered 2xx; Errors are transport errors and other statuses; Unsent are
	// requests that were due (rate mode) but never sent before the grace period ran out.
	Requests  int64          `json:"requests"`
	Errors    int64          `json:"errors"`
	Statuses  map[string]int `json:"statuses,omitempty"`
	Unsent    int64          `json:"unsent,omitempty"`
	ElapsedS  float64        `json:"elapsed_sec"`
	ReqPerSec float64        `json:"req_per_sec"`
	// Latency of the 2xx answers: from when each request was due (rate) or sent (flat).
	Latency Latency `json:"latency_us"`
	// Service is the latency from the actual send, in rate mode (equal to Latency when flat).
	Service   *Latency `json:"service_us,omitempty"`
	FirstBody string   `json:"first_body,omitempty"`
	Ceiling   *Result  `json:"ceiling,omitempty"`
	StartedAt string   `json:"started_at"`
}

const (
	histLowest  = 1
	histHighest = 10 * 60 * 1000 * 1000 // 10 min in µs
	histDigits  = 3
)

type hist struct {
	mu  sync.Mutex
	h   *hdrhistogram.Histogram
	max int64
	sum float64
}

func newHist() *hist { return &hist{h: hdrhistogram.New(histLowest, histHighest, histDigits)} }

func (h *hist) record(d time.Duration) {
	us := min(max(d.Microseconds(), histLowest), histHighest)
	h.mu.Lock()
	h.h.RecordValue(us)
	h.max = max(h.max, us)
	h.sum += float64(us)
	h.mu.Unlock()
}

func (h *hist) summary() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.h.TotalCount()
	if n == 0 {
		return Latency{}
	}
	q := func(p float64) int64 { return min(h.h.ValueAtQuantile(p), h.max) }
	return Latency{Count: n, Mean: h.sum / float64(n), P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: h.max}
}

// CheckLoopback refuses any URL that is not plain http to 127.0.0.0/8, ::1 or localhost.
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("url %q: only http:// to a loopback address is allowed", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("url %q: %q is not a loopback address (127.0.0.0/8, ::1, localhost); refusing to send load there", raw, host)
	}
	return nil
}

func (c *Config) check() error {
	if err := CheckLoopback(c.URL); err != nil {
		return err
	}
	switch {
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return errors.New("concurrency must be 1-4096")
	case c.Duration <= 0 || c.Duration > 10*time.Minute:
		return errors.New("duration must be > 0 and at most 10m")
	case c.Rate < 0 || c.Rate > 1e6:
		return errors.New("rate must be 0 (flat out) to 1e6")
	case c.Rate > 0 && c.Rate*c.Duration.Seconds() > 20e6:
		return errors.New("rate x duration is over 20M requests")
	case c.Warm < 0 || c.Warm > 100_000:
		return errors.New("warm must be 0-100000")
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 5 * time.Second
	}
	if c.ContentType == "" {
		c.ContentType = "application/json"
	}
	return nil
}

func newClient(c *Config) *http.Client {
	return &http.Client{
		Timeout: c.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // loopback: never through a proxy
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        c.Concurrency,
			MaxIdleConnsPerHost: c.Concurrency,
			MaxConnsPerHost:     c.Concurrency,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type runner struct {
	cfg      *Config
	client   *http.Client
	lat, svc *hist
	ok, errs atomic.Int64
	mu       sync.Mutex
	statuses map[string]int
	last     atomic.Int64 // unix nanos of the last answer
}

// send posts the body once; it returns the body of a 2xx answer when keep is set.
func (r *runner) send(ctx context.Context, keep bool) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(r.cfg.Body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", r.cfg.ContentType)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b []byte
	if keep || resp.StatusCode/100 != 2 {
		b, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, b, err
}

func (r *runner) one(ctx context.Context, due time.Time) {
	sent := time.Now()
	code, _, err := r.send(ctx, false)
	done := time.Now()
	r.last.Store(done.UnixNano())
	key := fmt.Sprint(code)
	if err != nil {
		key = "transport_error"
	}
	if err != nil || code/100 != 2 {
		r.errs.Add(1)
		r.mu.Lock()
		r.statuses[key]++
		r.mu.Unlock()
		return
	}
	r.ok.Add(1)
	r.lat.record(done.Sub(due))
	if r.svc != nil {
		r.svc.record(done.Sub(sent))
	}
}

// Run measures cfg.URL. It stops by itself after Duration (+ Grace for the requests due by then).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &runner{cfg: &cfg, client: newClient(&cfg), lat: newHist(), statuses: map[string]int{}}
	defer r.client.CloseIdleConnections()
	res := &Result{Label: cfg.Label, URL: cfg.URL, Mode: "flat", Concurrency: cfg.Concurrency,
		DurationSec: cfg.Duration.Seconds(), BodyBytes: len(cfg.Body), StartedAt: time.Now().UTC().Format(time.RFC3339)}

	// Warm-up, one by one: connections, caches. The last answer is kept to show what the
	// target says.
	for range max(cfg.Warm, 1) {
		wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		code, b, err := r.send(wctx, true)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.URL, err)
		}
		if code/100 != 2 {
			return nil, fmt.Errorf("%s answered %d: %s", cfg.URL, code, strings.TrimSpace(string(b)))
		}
		res.FirstBody = strings.TrimSpace(string(b))
	}

	hard, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.Grace)
	defer cancel()
	start := time.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		res.Mode, res.Rate = "rate", cfg.Rate
		r.svc = newHist()
		total := int64(cfg.Rate * cfg.Duration.Seconds())
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		due := make(chan time.Time, min(total, 1<<20))
		var sentDue atomic.Int64
		for range cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for t := range due {
					if hard.Err() != nil {
						continue // past the grace period: drain, do not send
					}
					sentDue.Add(1)
					r.one(hard, t)
				}
			}()
		}
		// The schedule: request i is due at start + i*interval. The generator sleeps when
		// ahead and catches up at once when behind; a due time is never moved.
	gen:
		for i := int64(0); i < total; i++ {
			t := start.Add(time.Duration(i) * interval)
			if d := time.Until(t); d > 0 {
				select {
				case <-time.After(d):
				case <-hard.Done():
					break gen
				}
			}
			select {
			case due <- t:
			case <-hard.Done():
				break gen
			}
		}
		close(due)
		wg.Wait()
		res.Unsent = total - sentDue.Load()
	} else {
		for range cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) && hard.Err() == nil {
					r.one(hard, time.Now())
				}
			}()
		}
		wg.Wait()
	}
	elapsed := cfg.Duration
	if last := time.Unix(0, r.last.Load()); last.After(end) {
		elapsed = last.Sub(start)
	}
	res.Requests, res.Errors = r.ok.Load(), r.errs.Load()
	if len(r.statuses) > 0 {
		res.Statuses = r.statuses
	}
	res.ElapsedS = elapsed.Seconds()
	res.ReqPerSec = float64(res.Requests) / elapsed.Seconds()
	res.Latency = r.lat.summary()
	if r.svc != nil {
		s := r.svc.summary()
		res.Service = &s
	}
	return res, ctx.Err()
}

// StartNoop serves a do-nothing handler on 127.0.0.1:0 (reads the body, answers 200 {}) and
// returns its base URL and a stop function.
func StartNoop() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	answer := []byte("{}\n")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write(answer)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// RunCeiling measures the do-nothing handler with cfg's settings, on cfg.URL's path.
func RunCeiling(ctx context.Context, cfg Config) (*Result, error) {
	base, stop, err := StartNoop()
	if err != nil {
		return nil, err
	}
	defer stop()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	cfg.URL = base + u.RequestURI()
	cfg.Label = "loopback ceiling"
	return Run(ctx, cfg)
}

// Human is the one-line summary for people.
func Human(r *Result) string {
	mode := "flat out"
	if r.Mode == "rate" {
		mode = fmt.Sprintf("at %.0f/s", r.Rate)
	}
	s := fmt.Sprintf("%s: %s, %d clients, %.0fs: %.0f req/s, p50 %s p90 %s p99 %s p99.9 %s max %s, %d ok, %d errors",
		r.Label, mode, r.Concurrency, r.DurationSec, r.ReqPerSec, us(r.Latency.P50), us(r.Latency.P90),
		us(r.Latency.P99), us(r.Latency.P999), us(r.Latency.Max), r.Requests, r.Errors)
	if r.Unsent > 0 {
		s += fmt.Sprintf(", %d due but never sent", r.Unsent)
	}
	return s
}

func us(v int64) string {
	switch {
	case v < 1000:
		return fmt.Sprintf("%dµs", v)
	case v < 100_000:
		return fmt.Sprintf("%.2fms", float64(v)/1e3)
	default:
		return fmt.Sprintf("%.0fms", float64(v)/1e3)
	}
}

func ms(v int64) string { return fmt.Sprintf("%.3f", float64(v)/1e3) }

// Report prints the comparison table of the results (each with its ceiling) and, when both an
// "agent" and an "opa" label are present, the agent/OPA ratios. targetP99 (µs) at targetRate is
// the goal the agent's line is checked against.
func Report(w io.Writer, results []*Result, targetRate float64, targetP99 int64) {
	sort.SliceStable(results, func(i, j int) bool { return results[i].Mode > results[j].Mode }) // rate first
	fmt.Fprintf(w, "%-18s %-9s %10s %9s %9s %9s %16s\n", "system", "rate", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "p99/loopback-p99")
	row := func(r *Result, rel string) {
		rate := "flat/" + fmt.Sprint(r.Concurrency)
		if r.Mode == "rate" {
			rate = fmt.Sprintf("%.0f/s", r.Rate)
		}
		fmt.Fprintf(w, "%-18s %-9s %10.0f %9s %9s %9s %16s\n", r.Label, rate, r.ReqPerSec, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.P999), rel)
	}
	find := func(label, mode string) *Result {
		for _, r := range results {
			if r.Label == label && r.Mode == mode {
				return r
			}
		}
		return nil
	}
	for _, r := range results {
		rel := "-"
		if r.Ceiling != nil && r.Ceiling.Latency.P99 > 0 {
			rel = fmt.Sprintf("%.1fx", float64(r.Latency.P99)/float64(r.Ceiling.Latency.P99))
		}
		row(r, rel)
		if r.Ceiling != nil {
			c := *r.Ceiling
			c.Label = "  (loopback)"
			row(&c, "1.0x")
		}
		if r.Errors > 0 || r.Unsent > 0 {
			fmt.Fprintf(w, "  !! %s: %d errors %v, %d unsent\n", r.Label, r.Errors, r.Statuses, r.Unsent)
		}
	}
	af, of := find("agent", "flat"), find("opa", "flat")
	ar, or := find("agent", "rate"), find("opa", "rate")
	fmt.Fprintln(w)
	if af != nil && of != nil && of.ReqPerSec > 0 {
		fmt.Fprintf(w, "agent/OPA req/s, flat out with %d clients: %.2f (%.0f / %.0f)\n", af.Concurrency, af.ReqPerSec/of.ReqPerSec, af.ReqPerSec, of.ReqPerSec)
	}
	if ar != nil && or != nil && or.Latency.P99 > 0 {
		fmt.Fprintf(w, "agent/OPA p99 at %.0f/s: %.2f (%s ms / %s ms)\n", ar.Rate, float64(ar.Latency.P99)/float64(or.Latency.P99), ms(ar.Latency.P99), ms(or.Latency.P99))
		for _, r := range []*Result{ar, or} {
			if Saturated(r) {
				fmt.Fprintf(w, "  note: %s kept up with only %.0f of %.0f req/s: its queue grew for the whole run, so its p99 there measures the backlog, not a decision\n", r.Label, r.ReqPerSec, r.Rate)
			}
		}
	}
	if ar != nil && ar.Service != nil && ar.Service.Count > 0 {
		// The p99 above counts from each request's due time, so it includes
		// this driver's own lateness: a timer that woke a sleeping worker
		// late (up to about a millisecond on these machines), which no
		// caller of the agent ever waits for. Service time is the rest.
		fmt.Fprintf(w, "service time alone (sent to answered) p99 at %.0f/s: agent %s ms", ar.Rate, ms(ar.Service.P99))
		if or != nil && or.Service != nil && or.Service.Count > 0 {
			fmt.Fprintf(w, ", OPA %s ms", ms(or.Service.P99))
		}
		if c := ar.Ceiling; c != nil && c.Service != nil && c.Service.Count > 0 {
			fmt.Fprintf(w, ", loopback %s ms (from its due time: %s ms)", ms(c.Service.P99), ms(c.Latency.P99))
		}
		fmt.Fprintln(w)
	}
	if ar != nil && targetRate > 0 && ar.Rate == targetRate {
		verdict := "met"
		if ar.Latency.P99 >= targetP99 || ar.Errors > 0 || ar.Unsent > 0 || Saturated(ar) {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "target p99 < %s ms at %.0f decisions/s, from the due time: %s (p99 %s ms, %.0f req/s achieved)\n", ms(targetP99), targetRate, verdict, ms(ar.Latency.P99), ar.ReqPerSec)
	}
}

// Saturated reports a fixed-rate run whose target answered less than 95% of the rate.
func Saturated(r *Result) bool { return r.Mode == "rate" && r.ReqPerSec < 0.95*r.Rate }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("driver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.URL, "url", "", "target URL (http, loopback only)")
	body := fs.String("body", "", "file holding the request body")
	fs.StringVar(&cfg.Label, "label", "target", "name of the system in the output")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second, open loop; 0 = flat out")
	fs.IntVar(&cfg.Concurrency, "c", 64, "concurrent clients (workers; at most as many connections)")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "how long to send")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.IntVar(&cfg.Warm, "warm", 10, "requests sent one by one first, not measured")
	ceiling := fs.Bool("ceiling", false, "first measure a do-nothing in-process Go handler with the same settings")
	report := fs.Bool("report", false, "print the comparison table of the JSON result files given as arguments")
	targetRate := fs.Float64("target-rate", 2000, "with -report: the rate the agent's p99 goal applies at")
	targetP99 := fs.Duration("target-p99", 2*time.Millisecond, "with -report: the agent's p99 goal")
	freePorts := fs.Int("free-ports", 0, "print N free 127.0.0.1 TCP ports and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *freePorts > 0:
		var lns []net.Listener
		defer func() {
			for _, ln := range lns {
				ln.Close()
			}
		}()
		for range min(*freePorts, 16) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			lns = append(lns, ln)
			fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
		}
		return nil
	case *report:
		var rs []*Result
		for _, f := range fs.Args() {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			var r Result
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			rs = append(rs, &r)
		}
		Report(stdout, rs, *targetRate, targetP99.Microseconds())
		return nil
	}
	if *body == "" {
		return errors.New("-body FILE is required")
	}
	b, err := os.ReadFile(*body)
	if err != nil {
		return err
	}
	cfg.Body = b
	if err := cfg.check(); err != nil {
		return err
	}
	var ceil *Result
	if *ceiling {
		if ceil, err = RunCeiling(ctx, cfg); err != nil {
			return fmt.Errorf("loopback ceiling: %w", err)
		}
		ceil.FirstBody = ""
		fmt.Fprintln(stderr, Human(ceil))
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Ceiling = ceil
	fmt.Fprintln(stderr, Human(res))
	out, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(out))
	return nil
}
