// Package forwarder delivers the spool to the upstreams: one worker per
// upstream queue, so a stuck upstream never delays the others.
//
// A worker leases a batch from its queue, hands it to the upstream's Sender,
// and settles each item by the verdict: delivered items are acknowledged
// (deleted), permanent failures go to the dead letters with their code, a
// retryable failure counts an attempt and backs off (exponential, jittered,
// Retry-After honoured), and a pause (token expired, daily cap, service not
// bought) releases the batch untouched and waits until the pause ends, or,
// for pauses only an operator can lift, probes with one item every few
// minutes. Network-level failures trip a circuit breaker that stops sending
// and probes before resuming. Nothing leaves the spool unless its upstream
// confirmed it or it was moved to the dead letters with a reason.
//
// In the agent the forwarder is one half of a loop with package decision,
// which it does not import (cmd/agent wires the two):
//
//	decision --(check queued on tongdun/unionpay)--> spool --> Worker --> upstream
//	Worker --(ResultSink.Delivered: late verdict, score cache)--> decision
//	decision --(decision.Health: Worker.Healthy)--> call live, or queue the check
//
// A decision whose upstream is unhealthy (Worker.Healthy false: paused,
// circuit open, retrying) is decided degraded and its check queued; the
// worker delivers it when the upstream is back and hands the answer to
// its ResultSink, the engine, which attaches it to the stored decision.
// The ResultSink interface is declared here, by its caller; the engine
// declares Health, which *Worker satisfies.
//
// The circuit breaker is ours (breaker.go), not sony/gobreaker, because it
// earns it in a fleet (docs/fleet.md, BENCHMARKS.md "Fleet"): its open time
// doubles and is jittered ±25%, so agents whose circuits opened in the
// same outage do not probe together (with the jitter, the worst second of
// refused probes in a fleet of 100 fell from 142 to 91);
// gobreaker's open time is fixed, not jittered, and read from the wall
// clock, where ours is on the injected Clock the tests move by hand.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"golang.org/x/time/rate"
)

// Sender delivers items to one upstream. The upstream clients implement it.
type Sender interface {
	Send(ctx context.Context, items []upstream.Item) []upstream.Result
}

// ResultSink sees each delivered item's result, with the queue it came
// from. In the agent the decision engine is the sink of the tongdun and
// unionpay queues (late verdicts and the score cache: the loop in the
// package doc), and the status page's history that of the actions'.
// It is called from the worker's goroutine, once per delivered item.
type ResultSink interface {
	Delivered(queue string, e spool.Entry, r upstream.Result)
}

// ResultFunc is a function as a ResultSink.
type ResultFunc func(queue string, e spool.Entry, r upstream.Result)

// Delivered calls f.
func (f ResultFunc) Delivered(queue string, e spool.Entry, r upstream.Result) { f(queue, e, r) }

// Queue is what a worker needs of the spool.
type Queue interface {
	Lease(ctx context.Context, queue string, max int, maxBytes int) ([]spool.Entry, error)
	Ack(ctx context.Context, queue string, seqs []uint64) error
	Fail(ctx context.Context, queue string, seqs []uint64, msg string) error
	Release(queue string, seqs []uint64)
	DeadLetter(ctx context.Context, queue string, seqs []uint64, reason string) error
}

var _ Queue = (*spool.Spool)(nil)

// Config of one worker.
type Config struct {
	// Name of the upstream, which is also its queue's name.
	Name string
	// Sender is nil when the upstream is not configured: the worker then
	// only reports not_configured and the queue keeps growing.
	Sender Sender
	Queue  Queue
	// BatchSize items per Send (default DefaultBatchSize) and about MaxBatchBytes of
	// payload (default 256 KiB).
	BatchSize     int
	MaxBatchBytes int
	// FlushInterval: a batch smaller than BatchSize waits until its oldest
	// item is this old, so a trickle still goes out in batches (default
	// DefaultFlushInterval).
	// IdlePoll is how often an empty queue is looked at (default 250ms).
	FlushInterval time.Duration
	IdlePoll      time.Duration
	// MaxAttempts and MaxAge: an item past either is dead-lettered with its
	// last error (defaults DefaultMaxAttempts, DefaultMaxAge). 0 keeps the default.
	MaxAttempts int
	MaxAge      time.Duration
	// Back-off after a retryable failure: BackoffBase doubling to
	// BackoffMax, with full jitter (defaults 1s, DefaultBackoffMax).
	BackoffBase, BackoffMax time.Duration
	// ThrottleBackoffMax caps the back-off after an upstream throttled
	// without naming a window (Tencent 11008, 11019, an HTTP 429 without
	// Retry-After): BackoffBase doubling per consecutive throttle, jittered
	// between half and all of it, to at most this (default 1m, and never
	// past BackoffMax). A throttle that names its window (Tencent 11016:
	// the next second; 11017: the next minute; 11018: midnight in Beijing;
	// a Retry-After) is waited out for that window plus jitter instead.
	ThrottleBackoffMax time.Duration
	// ProbeInterval: how often an upstream paused until an operator acts
	// is probed with one item (default DefaultProbeInterval).
	ProbeInterval time.Duration
	// ClockSkew is how far behind ours the upstream's clock may be (default
	// 1m). A pause until a set time (TongDun's daily cap: until midnight in
	// Shanghai, by our clock) that the upstream answers again to the probe
	// at its end may only mean that its day has not turned yet: for this
	// long after the pause ended, the worker probes again with a short,
	// doubling, jittered wait instead of believing a whole new pause.
	// Negative: believe every pause as answered.
	ClockSkew time.Duration
	// BreakerThreshold consecutive network-level failures open the circuit
	// for BreakerOpen, doubling to BreakerMaxOpen (defaults 3,
	// DefaultBreakerOpen, DefaultBackoffMax).
	BreakerThreshold            int
	BreakerOpen, BreakerMaxOpen time.Duration
	// Concurrency is how many batches are in flight at once (default
	// DefaultConcurrency, 1,
	// which also keeps delivery in queue order; more trades order for
	// throughput on a slow upstream).
	Concurrency int
	// ItemsPerSecond caps the items handed to the upstream (one request
	// each for TongDun and UnionPay); 0 = no cap here (Tencent's client
	// has its own requests-a-minute limit).
	ItemsPerSecond float64
	Clock          Clock
	Logger         *slog.Logger
	// Wake, when set, is signalled when new items are queued, so an idle
	// worker need not wait for the next poll.
	Wake <-chan struct{}
}

// State of an upstream as the status reports it.
type State string

const (
	StateOK            State = "ok"
	StateRetrying      State = "retrying"
	StatePaused        State = "paused"
	StateCircuitOpen   State = "circuit_open"
	StateNotConfigured State = "not_configured"
)

// Status is a snapshot of a worker.
type Status struct {
	State          State      `json:"state"`
	PausedUntil    *time.Time `json:"paused_until"`
	Reason         string     `json:"reason"`
	InFlight       int        `json:"in_flight"`
	DeliveredTotal int64      `json:"delivered_total"`
	FailedTotal    int64      `json:"failed_total"`
	DeadLettered   int64      `json:"dead_lettered_total"`
	Requests       int64      `json:"send_calls_total"`
	LastSuccessAt  *time.Time `json:"last_success_at"`
	LastError      string     `json:"last_error"`
}

// Worker forwards one queue to one upstream.
type Worker struct {
	cfg Config
	log *slog.Logger
	clk Clock
	rng *rand.Rand

	mu        sync.Mutex
	st        Status
	br        breaker
	retries   int           // consecutive retryable failures, for back-off
	throttles int           // consecutive throttles that named no window
	paused    time.Time     // paused until (zero: not paused)
	manual    bool          // paused until an operator acts: probe periodically
	lastPause string        // code of the current pause, to log it once
	pauseEnd  time.Time     // end of the current timed pause, as the upstream set it
	reprobes  int           // probes since pauseEnd answered with the same pause
	limit     *rate.Limiter // ItemsPerSecond

	// draining: the agent is stopping; partial batches go out at once.
	// drainNow is closed when it starts, to end a partial batch's wait.
	draining  atomic.Bool
	drainOnce sync.Once
	drainNow  chan struct{}

	sink   ResultSink // set by Start
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Defaults of the settings the agent's configuration also has (the
// AGENT_FORWARD_* variables): one definition each, which cmd/agent's
// TestDefaultsHaveOneValue holds config's documented defaults to.
const (
	DefaultBatchSize     = 50
	DefaultConcurrency   = 1
	DefaultFlushInterval = time.Second
	DefaultMaxAttempts   = 1000
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultBackoffMax    = 5 * time.Minute
	DefaultProbeInterval = 5 * time.Minute
	DefaultBreakerOpen   = 10 * time.Second
)

// New returns a worker; Start runs it.
func New(cfg Config) *Worker {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 256 << 10
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.IdlePoll <= 0 {
		cfg.IdlePoll = 250 * time.Millisecond
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.ThrottleBackoffMax <= 0 {
		cfg.ThrottleBackoffMax = time.Minute
	}
	cfg.ThrottleBackoffMax = min(cfg.ThrottleBackoffMax, cfg.BackoffMax)
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = time.Minute
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = 3
	}
	if cfg.BreakerOpen <= 0 {
		cfg.BreakerOpen = DefaultBreakerOpen
	}
	if cfg.BreakerMaxOpen <= 0 {
		cfg.BreakerMaxOpen = DefaultBackoffMax
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg: cfg,
		log: cfg.Logger.With("component", "forwarder", "upstream", cfg.Name),
		clk: cfg.Clock,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)),
		br:  breaker{threshold: cfg.BreakerThreshold, base: cfg.BreakerOpen, max: cfg.BreakerMaxOpen},

		drainNow: make(chan struct{}),
	}
	w.br.jitter = func(d time.Duration) time.Duration { // 0.75× to 1.25×
		return d*3/4 + time.Duration(w.rng.Int64N(int64(d)/2+1))
	}
	if cfg.ItemsPerSecond > 0 {
		w.limit = rate.NewLimiter(rate.Limit(cfg.ItemsPerSecond), max(cfg.BatchSize, 1))
	}
	w.st.State = StateOK
	if cfg.Sender == nil {
		w.st.State = StateNotConfigured
		w.st.Reason = "no credentials configured for this upstream: its queue is kept, nothing is sent"
	}
	return w
}

// Start runs the worker until Close, handing each delivered item's result
// to results (nil: to nobody). results is given here rather than in Config
// because the agent's sink, the decision engine, is built after the workers
// it asks Healthy: the loop is closed when the workers start.
func (w *Worker) Start(results ResultSink) {
	if w.cfg.Sender == nil {
		return
	}
	w.sink = results
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for range w.cfg.Concurrency {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(ctx)
		}()
	}
}

// Drain tells the worker the agent is stopping and forwards what it holds:
// from now on a partial batch is sent at once instead of waiting up to
// FlushInterval for company. Pauses, back-off and the breaker still apply.
// The caller watches the queue and calls Close when it is empty or its
// time is up.
func (w *Worker) Drain() {
	w.drainOnce.Do(func() {
		w.draining.Store(true)
		close(w.drainNow)
	})
}

// Close stops the worker: the batch in flight is finished or abandoned
// (abandoned items are simply leased again after a restart), then it
// returns, within ctx.
func (w *Worker) Close(ctx context.Context) error {
	if w.cancel == nil {
		return nil
	}
	w.cancel()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close forwarder %s: %w", w.cfg.Name, ctx.Err())
	}
}

// Status is a snapshot for /v1/status.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.st
	if !w.paused.IsZero() {
		t := w.paused
		st.PausedUntil = &t
	}
	return st
}

// Healthy reports whether a live call to this upstream is worth making now
// (configured, not paused, circuit closed): the decision path asks.
func (w *Worker) Healthy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Sender != nil && w.st.State == StateOK
}

func (w *Worker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.clk.After(d):
		return true
	}
}

func (w *Worker) idle(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.clk.After(d):
		return true
	case <-w.cfg.Wake:
		return true
	}
}

// flushWait is idle for a partial batch: it also ends when a drain starts.
func (w *Worker) flushWait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.clk.After(d):
		return true
	case <-w.cfg.Wake:
		return true
	case <-w.drainNow:
		return true
	}
}

func (w *Worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		// 1. Wait out a pause or an open circuit. When it ends, send one
		// item only: a probe.
		probe := false
		w.mu.Lock()
		now := w.clk.Now()
		var wait time.Duration
		switch {
		case !w.paused.IsZero() && now.Before(w.paused):
			wait = w.paused.Sub(now)
		case !w.paused.IsZero():
			probe = true
		case w.br.state(now) == breakerOpen:
			wait = w.br.openUntil.Sub(now)
		case w.br.state(now) == breakerHalfOpen:
			probe = true
		}
		w.mu.Unlock()
		if wait > 0 {
			if !w.sleep(ctx, wait) {
				return
			}
			continue
		}

		// 2. Lease a batch.
		n := w.cfg.BatchSize
		if probe {
			n = 1
		}
		es, err := w.cfg.Queue.Lease(ctx, w.cfg.Name, n, w.cfg.MaxBatchBytes)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, spool.ErrClosed) {
				return
			}
			w.log.Error("lease failed", "err", err)
			if !w.sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if len(es) == 0 {
			if !w.idle(ctx, w.cfg.IdlePoll) {
				return
			}
			continue
		}
		if !probe && len(es) < n && !w.draining.Load() {
			// A partial batch waits for company until its oldest is
			// FlushInterval old.
			// A wall clock stepped back (an NTP correction) makes the oldest
			// item look younger than zero: then it is not waited for at all,
			// or the batch would wait for the size of the step.
			if age := w.clk.Now().Sub(es[0].EnqueuedAt); age >= 0 && age < w.cfg.FlushInterval {
				w.cfg.Queue.Release(w.cfg.Name, seqsOf(es))
				if !w.flushWait(ctx, w.cfg.FlushInterval-age) {
					return
				}
				continue
			}
		}

		// 3. Send and settle, within the upstream's rate.
		if w.limit != nil {
			if err := w.limit.WaitN(ctx, min(len(es), w.limit.Burst())); err != nil {
				w.cfg.Queue.Release(w.cfg.Name, seqsOf(es))
				if ctx.Err() != nil {
					return
				}
				continue
			}
		}
		w.mu.Lock()
		w.st.InFlight += len(es)
		w.st.Requests++
		w.mu.Unlock()
		items := make([]upstream.Item, len(es))
		for i, e := range es {
			items[i] = upstream.Item{ID: e.ID, Payload: e.Payload, Seq: e.Seq, EnqueuedAt: e.EnqueuedAt}
		}
		results := w.cfg.Sender.Send(ctx, items)
		if ctx.Err() != nil {
			// Shutting down mid-send: the outcome is unknown; leave the
			// items in the spool (the upstream de-duplicates re-sends).
			w.cfg.Queue.Release(w.cfg.Name, seqsOf(es))
			return
		}
		backoff := w.settle(ctx, es, results)
		w.mu.Lock()
		w.st.InFlight -= len(es)
		w.mu.Unlock()
		if backoff > 0 && !w.sleep(ctx, backoff) {
			return
		}
	}
}

// settle applies each item's verdict to the spool and the worker's state.
// It returns how long to back off before the next batch.
func (w *Worker) settle(ctx context.Context, es []spool.Entry, results []upstream.Result) time.Duration {
	now := w.clk.Now()
	var ack, release []uint64
	dead := map[string][]uint64{}
	var fail []spool.Entry
	var retry, pause *upstream.Verdict
	delivered, answered := 0, false
	for i, e := range es {
		var v upstream.Verdict
		if i < len(results) {
			v = results[i].Verdict
		} else {
			v = upstream.Verdict{Outcome: upstream.RetryLater, Code: "no_result", Message: "the client returned no result for this item"}
		}
		switch v.Outcome {
		case upstream.Delivered:
			ack = append(ack, e.Seq)
			delivered++
			answered = true
			if w.sink != nil {
				w.sink.Delivered(w.cfg.Name, e, results[i])
			}
		case upstream.Permanent:
			answered = true
			reason := fmt.Sprintf("rejected by %s: code %s: %s", w.cfg.Name, v.Code, v.Message)
			dead[reason] = append(dead[reason], e.Seq)
		case upstream.Pause:
			answered = true
			vv := v
			pause = &vv
			release = append(release, e.Seq)
		default: // RetryLater
			vv := v
			retry = &vv
			if v.Throttled {
				answered = true
			}
			msg := fmt.Sprintf("code %s: %s", v.Code, v.Message)
			switch {
			case e.Attempts+1 >= w.cfg.MaxAttempts:
				r := fmt.Sprintf("gave up after %d attempts; last error: %s", e.Attempts+1, msg)
				dead[r] = append(dead[r], e.Seq)
			case now.Sub(e.EnqueuedAt) > w.cfg.MaxAge:
				r := fmt.Sprintf("gave up: older than %s; last error: %s", w.cfg.MaxAge, msg)
				dead[r] = append(dead[r], e.Seq)
			default:
				fail = append(fail, e)
			}
		}
	}
	// Spool writes. A failure here leaves items leased until restart at
	// worst (at-least-once), so log and go on.
	if err := w.cfg.Queue.Ack(ctx, w.cfg.Name, ack); err != nil {
		w.log.Error("ack failed", "err", err)
	}
	for reason, seqs := range dead {
		if err := w.cfg.Queue.DeadLetter(ctx, w.cfg.Name, seqs, reason); err != nil {
			w.log.Error("dead-letter failed", "err", err)
		} else {
			w.log.Warn("moved to dead letters", "items", len(seqs), "reason", redact.Text(reason))
		}
	}
	if len(fail) > 0 {
		if err := w.cfg.Queue.Fail(ctx, w.cfg.Name, seqsOf(fail), fmt.Sprintf("code %s: %s", retry.Code, retry.Message)); err != nil {
			w.log.Error("recording a failed attempt failed", "err", err)
		}
	}
	w.cfg.Queue.Release(w.cfg.Name, release)

	w.mu.Lock()
	defer w.mu.Unlock()
	ndead := 0
	for _, s := range dead {
		ndead += len(s)
	}
	w.st.DeliveredTotal += int64(delivered)
	w.st.DeadLettered += int64(ndead)
	w.st.FailedTotal += int64(len(fail) + ndead)
	if delivered > 0 {
		t := now
		w.st.LastSuccessAt = &t
	}
	switch {
	case pause != nil:
		// The same pause is logged once, not at every probe.
		repeated := w.st.State == StatePaused && w.lastPause == pause.Code
		w.lastPause = pause.Code
		w.st.State, w.st.LastError = StatePaused, pause.Code+": "+pause.Message
		w.br.success() // it answered: the network is fine
		w.retries, w.throttles = 0, 0
		if pause.PauseUntil.IsZero() {
			w.manual = true
			w.paused = now.Add(w.cfg.ProbeInterval)
			w.pauseEnd, w.reprobes = time.Time{}, 0
			w.st.Reason = fmt.Sprintf("%s (code %s); needs an operator; probing every %s", pause.Message, pause.Code, w.cfg.ProbeInterval)
		} else if next, ok := w.reprobe(now, repeated, pause.PauseUntil); ok {
			w.manual = false
			w.paused = next
			w.st.Reason = fmt.Sprintf("%s (code %s) again when the pause should have ended at %s: the upstream's clock may be behind ours; probing again at %s",
				pause.Message, pause.Code, w.pauseEnd.Format(time.RFC3339), next.Format(time.RFC3339Nano))
		} else {
			w.manual = false
			w.paused = pause.PauseUntil
			w.pauseEnd, w.reprobes = pause.PauseUntil, 0
			w.st.Reason = fmt.Sprintf("%s (code %s); resumes at %s", pause.Message, pause.Code, pause.PauseUntil.Format(time.RFC3339))
		}
		if !repeated {
			w.log.Warn("upstream paused", "code", pause.Code, "reason", w.st.Reason)
		}
		return 0
	case retry != nil:
		w.paused, w.manual = time.Time{}, false
		w.pauseEnd, w.reprobes = time.Time{}, 0
		w.st.LastError = retry.Code + ": " + retry.Message
		d := w.retryDelay(retry)
		if answered || retry.Throttled {
			// The upstream answered (throttling, 5xx with a body): not a
			// network failure, no breaker, but back off.
			w.br.success()
			w.st.State, w.st.Reason = StateRetrying, "retrying after "+retry.Code
			if retry.Throttled {
				w.st.Reason = "throttled by the upstream; slowing down"
			}
			return d
		}
		if w.br.failure(now) {
			w.st.State = StateCircuitOpen
			w.st.Reason = fmt.Sprintf("%d consecutive failures (%s); not sending until %s, then one probe",
				w.br.failures, retry.Code, w.br.openUntil.Format(time.RFC3339))
			w.log.Warn("circuit open", "code", retry.Code, "until", w.br.openUntil)
			return 0 // the breaker does the waiting
		}
		w.st.State, w.st.Reason = StateRetrying, "retrying after "+retry.Code
		return d
	default:
		if w.st.State != StateOK {
			w.log.Info("upstream recovered", "previous_state", w.st.State)
		}
		w.paused, w.manual, w.retries, w.throttles = time.Time{}, false, 0, 0
		w.pauseEnd, w.reprobes = time.Time{}, 0
		w.br.success()
		w.st.State, w.st.Reason = StateOK, ""
		return 0
	}
}

// reprobe decides, when a timed pause is answered again (same code) by a
// probe made once it ended, whether to probe again soon rather than wait
// for the new end: within ClockSkew of the end, while the new end is later
// still. The end was computed on our clock (TongDun's 305 lasts until
// midnight in Shanghai); if the upstream's clock is behind ours, its day has
// not turned when ours has, and believing the new pause would stop this
// agent for a whole extra day. The waits double from BackoffBase with
// jitter (0.5× to 1×), so a cap that really is used up again costs a handful
// of probes. Called with w.mu held.
func (w *Worker) reprobe(now time.Time, repeated bool, until time.Time) (time.Time, bool) {
	if !repeated || w.cfg.ClockSkew < 0 || w.manual || w.pauseEnd.IsZero() || now.Before(w.pauseEnd) ||
		now.Sub(w.pauseEnd) >= w.cfg.ClockSkew || !until.After(w.pauseEnd) {
		return time.Time{}, false
	}
	w.reprobes++
	d := w.cfg.BackoffBase << min(w.reprobes-1, 20)
	if d <= 0 || d > w.cfg.ClockSkew {
		d = w.cfg.ClockSkew
	}
	d = d/2 + time.Duration(w.rng.Int64N(int64(d)/2+1))
	next := now.Add(d)
	if !next.Before(until) {
		return time.Time{}, false
	}
	return next, true
}

// retryDelay is how long to wait after a retryable verdict v, counting it
// as one more consecutive failure. Called with w.mu held.
//
//   - A throttle that names its window (RetryAfter: Tencent's 11016 until
//     the next second, 11017 the next minute, 11018 midnight in Beijing, or
//     a Retry-After header) waits for that window, plus jitter: not for
//     the failure back-off, which would grow to minutes while the upstream
//     asked for a second.
//   - A throttle that names none (Tencent 11008 and 11019, HTTP 429 without
//     Retry-After) backs off from BackoffBase, doubling per consecutive
//     such throttle, jittered between half and all of it, up to
//     ThrottleBackoffMax (a minute).
//   - Any other failure backs off exponentially with full jitter (backoff),
//     or longer when the upstream's Retry-After says so.
func (w *Worker) retryDelay(v *upstream.Verdict) time.Duration {
	w.retries++
	switch {
	case v.Throttled && v.RetryAfter > 0:
		w.throttles = 0
		return retryWait(v.RetryAfter, w.rng.Int64N)
	case v.Throttled:
		w.throttles++
		d := w.cfg.BackoffBase << min(w.throttles-1, 20)
		if d <= 0 || d > w.cfg.ThrottleBackoffMax {
			d = w.cfg.ThrottleBackoffMax
		}
		return d/2 + time.Duration(w.rng.Int64N(int64(d/2)+1))
	}
	w.throttles = 0
	d := w.backoff()
	if v.RetryAfter > d {
		d = retryWait(v.RetryAfter, w.rng.Int64N)
	}
	return d
}

// Bounds of what retryWait adds to an upstream's wait.
const (
	minRetryJitter = 250 * time.Millisecond
	maxRetryJitter = time.Minute
)

// retryWait is the wait after an upstream asked for after: up to a quarter
// more (at least up to minRetryJitter more), so that a fleet told to come
// back at the same moment does not all come back at it, but never more
// than maxRetryJitter more. The floor spreads a fleet refused by a
// per-second limit (Tencent's 11016, waited out until the next second, a
// few hundred milliseconds at most) over the first quarter of that second.
// Without the cap Tencent's daily quota (11018: wait until midnight in
// Beijing, up to a day) could keep an agent idle for six hours into the new
// day. int64n draws uniformly from [0, n).
func retryWait(after time.Duration, int64n func(int64) int64) time.Duration {
	jitter := min(max(after/4, minRetryJitter), maxRetryJitter)
	return after + time.Duration(int64n(int64(jitter)+1))
}

func (w *Worker) backoff() time.Duration {
	exp := w.cfg.BackoffBase << min(w.retries-1, 20)
	if exp <= 0 || exp > w.cfg.BackoffMax {
		exp = w.cfg.BackoffMax
	}
	// Full jitter: a fleet recovering from the same outage spreads out.
	return time.Duration(w.rng.Int64N(int64(exp)) + 1)
}

func seqsOf(es []spool.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}
