package forwarder

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/internal/fakeclock"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

const token = "tok-0123456789abcdef"

func newSpool(t *testing.T, clock ...func() time.Time) *spool.Spool {
	t.Helper()
	o := spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), Queues: []string{"tencent", "tongdun", "unionpay"}}
	if len(clock) > 0 {
		o.Clock = clock[0]
	}
	sp, err := spool.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	return sp
}

// tencentRetries is tencentPair's client's RetryMax: a Send to an upstream
// that resets every connection costs 1+tencentRetries requests.
const tencentRetries = 2

func tencentPair(t *testing.T) (*tencentsim.Server, *tencent.Client) {
	t.Helper()
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	c, err := tencent.New(tencent.Config{BaseURL: hs.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Timeout: 2 * time.Second,
		RetryMax: tencentRetries, RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

func appendActions(t *testing.T, sp *spool.Spool, from, n int) []string {
	t.Helper()
	var recs []spool.Record
	var ids []string
	now := time.Now().Unix()
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("act-%05d", i)
		ids = append(ids, id)
		recs = append(recs, spool.Record{Queue: "tencent", ID: id, Payload: []byte(fmt.Sprintf(
			`{"id":%q,"track":"personal_loan","action_type":"CREDIT","action_time":%d,"user_id":{"hash_phone":"9d2a2b1c3f3e4d5c6b7a8990a1b2c3d4"}}`, id, now))})
	}
	if _, err := sp.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	return ids
}

func fastConfig(sp *spool.Spool, s Sender) Config {
	return Config{Name: "tencent", Sender: s, Queue: sp, FlushInterval: 20 * time.Millisecond, IdlePoll: 10 * time.Millisecond,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, ProbeInterval: 50 * time.Millisecond,
		BreakerOpen: 50 * time.Millisecond, BreakerMaxOpen: 100 * time.Millisecond}
}

func start(t *testing.T, cfg Config) *Worker {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith starts a worker whose delivered results go to results.
func startWith(t *testing.T, cfg Config, results ResultSink) *Worker {
	t.Helper()
	w := New(cfg)
	w.Start(results)
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliversEverythingOnceInBatches(t *testing.T) {
	sp := newSpool(t)
	sim, c := tencentPair(t)
	ids := appendActions(t, sp, 0, 230)
	w := start(t, fastConfig(sp, c))
	eventually(t, "all delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	got := sim.Delivered()
	if len(got) != len(ids) {
		t.Fatalf("delivered %d, want %d", len(got), len(ids))
	}
	for i, a := range got {
		if a.OuterActionID != action.OuterActionID(ids[i]) {
			t.Fatalf("delivery %d is %s, want %s (order per queue)", i, a.OuterActionID, ids[i])
		}
	}
	if r := sim.Requests(); r != 5 {
		t.Fatalf("%d requests for 230 actions, want 5 (batches of 50)", r)
	}
	// The status is updated just after the spool's ack: wait for it.
	eventually(t, "status settled", func() bool { return w.Status().DeliveredTotal == 230 })
	st := w.Status()
	if st.State != StateOK || st.LastSuccessAt == nil {
		t.Fatalf("status %+v", st)
	}
}

func TestBadActionIsolatedAndReplayed(t *testing.T) {
	sp := newSpool(t)
	sim, c := tencentPair(t)
	ids := appendActions(t, sp, 0, 50)
	sim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID(ids[17])}})
	w := start(t, fastConfig(sp, c))
	eventually(t, "batch settled", func() bool { st := sp.Stats()["tencent"]; return st.Depth == 0 && st.DeadLetters == 1 })
	if n := len(sim.Delivered()); n != 49 {
		t.Fatalf("delivered %d, want 49", n)
	}
	dl, _ := sp.DeadLetters("tencent", 0, 10)
	if len(dl) != 1 || dl[0].ID != ids[17] || !strings.Contains(dl[0].Reason, "31001") {
		t.Fatalf("dead letters %+v", dl)
	}
	eventually(t, "status settled", func() bool { st := w.Status(); return st.DeadLettered == 1 && st.DeliveredTotal == 49 })
	// The operator fixes the cause and replays.
	sim.SetFaults(tencentsim.Faults{})
	if n, err := sp.Replay(context.Background(), "tencent", nil, true); err != nil || n != 1 {
		t.Fatalf("replay %d %v", n, err)
	}
	eventually(t, "replayed delivered", func() bool { return sim.DeliveryCount(action.OuterActionID(ids[17])) == 1 })
}

func TestOutageOpensCircuitThenRecovers(t *testing.T) {
	clk := fakeclock.New(time.Now())
	sp := newSpool(t, clk.Now)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{Outage: true})
	cfg := fastConfig(sp, c)
	cfg.Clock = clk
	cfg.BreakerOpen, cfg.BreakerMaxOpen = 200*time.Millisecond, 200*time.Millisecond
	w := start(t, cfg)
	appendActions(t, sp, 0, 60)
	advanceUntil(t, clk, "circuit open", func() bool { return w.Status().State == StateCircuitOpen })
	if w.Healthy() {
		t.Fatal("an upstream with an open circuit reports healthy")
	}
	// While open it does not hammer: nothing within the shortest open time
	// (0.75 × 200 ms, jittered), then one probe (one Send: a request and
	// its client's quick retries) each time the circuit's time is over.
	sleeping(t, clk)
	before := sim.Requests()
	clk.Advance(150*time.Millisecond - time.Nanosecond)
	sleeping(t, clk)
	if n := sim.Requests() - before; n != 0 {
		t.Fatalf("%d requests while the circuit was open", n)
	}
	for range 3 {
		before := sim.Requests()
		clk.AdvanceToNext()
		sleeping(t, clk)
		if n := sim.Requests() - before; n != 1+tencentRetries {
			t.Fatalf("%d requests for one probe, want %d", n, 1+tencentRetries)
		}
		if st := w.Status().State; st != StateCircuitOpen {
			t.Fatalf("state after a failed probe %s", st)
		}
	}
	appendActions(t, sp, 60, 40) // the app keeps posting during the outage
	sim.SetFaults(tencentsim.Faults{})
	advanceUntil(t, clk, "recovered and drained", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if n := len(sim.Delivered()); n != 100 {
		t.Fatalf("delivered %d, want 100", n)
	}
	eventually(t, "state ok", func() bool { return w.Status().State == StateOK })
}

func TestTokenExpiredPausesThenProbes(t *testing.T) {
	sp := newSpool(t)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{TokenExpired: true})
	w := start(t, fastConfig(sp, c))
	appendActions(t, sp, 0, 10)
	eventually(t, "paused", func() bool { return w.Status().State == StatePaused })
	st := w.Status()
	if st.PausedUntil == nil || !strings.Contains(st.Reason, "operator") || strings.Contains(st.LastError+st.Reason, token) {
		t.Fatalf("paused status %+v", st)
	}
	// Paused items are not charged an attempt.
	es, _ := sp.DeadLetters("tencent", 0, 1)
	if len(es) != 0 {
		t.Fatal("a pause dead-lettered items")
	}
	sim.SetFaults(tencentsim.Faults{})
	eventually(t, "probe succeeded and drained", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if w.Status().State != StateOK {
		t.Fatalf("state %s", w.Status().State)
	}
}

func TestThrottledSlowsDown(t *testing.T) {
	clk := fakeclock.New(time.Now())
	sp := newSpool(t, clk.Now)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{Throttle: true, RetryAfter: time.Second})
	cfg := fastConfig(sp, c)
	cfg.Clock = clk
	w := start(t, cfg)
	appendActions(t, sp, 0, 5)
	advanceUntil(t, clk, "throttled", func() bool { return strings.Contains(w.Status().Reason, "throttled") })
	sleeping(t, clk)
	before := sim.Requests()
	clk.Advance(time.Second - time.Nanosecond)
	sleeping(t, clk)
	if n := sim.Requests() - before; n != 0 {
		t.Fatalf("%d requests within Retry-After", n)
	}
	sim.SetFaults(tencentsim.Faults{})
	advanceUntil(t, clk, "drained", func() bool { return sp.Stats()["tencent"].Depth == 0 })
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	sp := newSpool(t)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{ErrorRate: 1, ErrorCode: 10000})
	cfg := fastConfig(sp, c)
	cfg.MaxAttempts = 3
	cfg.BreakerThreshold = 100
	start(t, cfg)
	appendActions(t, sp, 0, 2)
	eventually(t, "dead-lettered", func() bool { return sp.Stats()["tencent"].DeadLetters == 2 })
	dl, _ := sp.DeadLetters("tencent", 0, 10)
	if !strings.Contains(dl[0].Reason, "gave up after 3 attempts") || !strings.Contains(dl[0].Reason, "10000") {
		t.Fatalf("reason %q", dl[0].Reason)
	}
}

func TestNotConfiguredKeepsQueue(t *testing.T) {
	sp := newSpool(t)
	appendActions(t, sp, 0, 3)
	// Without a sender no worker goroutine starts: nothing can change
	// later, so there is nothing to wait for.
	w := start(t, Config{Name: "tencent", Queue: sp})
	if st := w.Status(); st.State != StateNotConfigured || w.Healthy() {
		t.Fatalf("status %+v", st)
	}
	if d := sp.Stats()["tencent"].Depth; d != 3 {
		t.Fatalf("depth %d", d)
	}
}

// fakeClock is a Clock a test moves by hand (internal/fakeclock).
type fakeClock = fakeclock.Clock

// sleeping returns once the worker on clk sleeps: it has done all it can
// at the clock's current instant. What it did not do by then it will not
// do until the clock moves.
func sleeping(t *testing.T, clk *fakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := clk.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("the worker never slept (fake time %v)", clk.Now())
	}
}

// advanceUntil runs fake time until cond holds: each time the worker
// sleeps it moves clk to the earliest pending wait. Fake time runs as fast
// as the worker and no faster, whatever the machine's speed.
func advanceUntil(t *testing.T, clk *fakeClock, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for !cond() {
		if err := clk.BlockUntil(ctx, 1); err != nil {
			t.Fatalf("timed out waiting for %s (fake time %v)", what, clk.Now())
		}
		if cond() {
			return
		}
		clk.AdvanceToNext()
	}
}

// scriptedSender answers from a function, counting calls.
type scriptedSender struct {
	calls atomic.Int64
	fn    func(items []upstream.Item) []upstream.Result
}

func (s *scriptedSender) Send(ctx context.Context, items []upstream.Item) []upstream.Result {
	s.calls.Add(1)
	return s.fn(items)
}

func TestPauseUntilHonoursInjectedClock(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 23, 15, 0, 0, 0, time.FixedZone("CST", 8*3600)))
	sp := newSpool(t, clk.Now)
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
	var capped atomic.Bool
	capped.Store(true)
	s := &scriptedSender{fn: func(items []upstream.Item) []upstream.Result {
		out := make([]upstream.Result, len(items))
		for i, it := range items {
			v := upstream.Verdict{Outcome: upstream.Delivered}
			if capped.Load() {
				v = upstream.Verdict{Outcome: upstream.Pause, Code: "305", Message: "daily cap reached", PauseUntil: midnight}
			}
			out[i] = upstream.Result{ID: it.ID, Verdict: v}
		}
		return out
	}}
	cfg := fastConfig(sp, s)
	cfg.Clock = clk
	w := start(t, cfg)
	appendActions(t, sp, 0, 3)
	advanceUntil(t, clk, "paused", func() bool { return w.Status().State == StatePaused })
	if pu := w.Status().PausedUntil; pu == nil || !pu.Equal(midnight) {
		t.Fatalf("paused until %v, want %v", pu, midnight)
	}
	calls := s.calls.Load()
	clk.Set(midnight.Add(-time.Minute))
	sleeping(t, clk)
	if s.calls.Load() != calls {
		t.Fatal("sent while paused")
	}
	capped.Store(false)
	clk.Set(midnight.Add(time.Second))
	advanceUntil(t, clk, "resumed after midnight", func() bool { return sp.Stats()["tencent"].Depth == 0 })
}

func TestConcurrentWorkersDeliverEverythingOnce(t *testing.T) {
	sp := newSpool(t)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{Latency: 20 * time.Millisecond})
	ids := appendActions(t, sp, 0, 400)
	cfg := fastConfig(sp, c)
	cfg.Concurrency = 4
	w := start(t, cfg)
	eventually(t, "all delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if n := len(sim.Delivered()); n != len(ids) {
		t.Fatalf("delivered %d, want %d", n, len(ids))
	}
	for _, id := range ids {
		if n := sim.DeliveryCount(action.OuterActionID(id)); n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
	// The status is updated just after the spool's ack: wait for it.
	eventually(t, "status settled", func() bool { st := w.Status(); return st.DeliveredTotal == 400 && st.InFlight == 0 })
}

func TestItemsPerSecondLimitsTheUpstream(t *testing.T) {
	sp := newSpool(t)
	var sent atomic.Int64
	s := &scriptedSender{fn: func(items []upstream.Item) []upstream.Result {
		sent.Add(int64(len(items)))
		out := make([]upstream.Result, len(items))
		for i, it := range items {
			out[i] = upstream.Result{ID: it.ID, Verdict: upstream.Verdict{Outcome: upstream.Delivered}}
		}
		return out
	}}
	appendActions(t, sp, 0, 30)
	cfg := fastConfig(sp, s)
	cfg.BatchSize, cfg.ItemsPerSecond = 5, 50
	start := time.Now()
	startW := New(cfg)
	startW.Start(nil)
	t.Cleanup(func() { startW.Close(context.Background()) })
	eventually(t, "all sent", func() bool { return sent.Load() == 30 })
	// A burst of 5, then 25 more at 50 a second: at least 0.5 s.
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("30 items at 50/s (burst 5) took only %s", took)
	}
}

// TestBreakerOpenTimeIsJittered: circuits opened by the same outage
// across a fleet must not all probe at the same instant (docs/fleet.md).
func TestBreakerOpenTimeIsJittered(t *testing.T) {
	w := New(Config{Name: "tencent", BreakerOpen: time.Second})
	seen := map[time.Duration]bool{}
	for range 200 {
		d := w.br.jitter(time.Second)
		if d < 750*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("open time %s outside 0.75-1.25 s", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct open times in 200: not jittered", len(seen))
	}
}

// TestClockJumps: a clock that jumps forward past MaxAge dead-letters the
// items that are now too old, with why; a clock that jumps back neither
// drops anything nor wedges the worker.
func TestClockJumps(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	sp := newSpool(t, clk.Now)
	var up atomic.Bool // the upstream fails until told otherwise
	s := &scriptedSender{fn: func(items []upstream.Item) []upstream.Result {
		out := make([]upstream.Result, len(items))
		for i, it := range items {
			v := upstream.Verdict{Outcome: upstream.RetryLater, Code: "http_503", Message: "unavailable"}
			if up.Load() {
				v = upstream.Verdict{Outcome: upstream.Delivered}
			}
			out[i] = upstream.Result{ID: it.ID, Verdict: v}
		}
		return out
	}}
	cfg := fastConfig(sp, s)
	cfg.Clock, cfg.MaxAge, cfg.BreakerThreshold = clk, time.Hour, 1000
	w := start(t, cfg)
	appendActions(t, sp, 0, 3)
	advanceUntil(t, clk, "a failed attempt", func() bool { return w.Status().FailedTotal > 0 })

	// Forward past MaxAge: the next failure dead-letters them as too old.
	clk.Jump(2 * time.Hour)
	advanceUntil(t, clk, "dead-lettered as too old", func() bool { return sp.Stats()["tencent"].DeadLetters == 3 })
	dl, _ := sp.DeadLetters("tencent", 0, 10)
	if !strings.Contains(dl[0].Reason, "older than 1h0m0s") {
		t.Fatalf("reason %q", dl[0].Reason)
	}

	// Back in time by a day, with items enqueued before the step (they
	// now look a day in the future): still delivered promptly, none lost.
	up.Store(true)
	appendActions(t, sp, 10, 3)
	clk.Jump(-24 * time.Hour)
	appendActions(t, sp, 20, 3)
	advanceUntil(t, clk, "delivered after the clock went back", func() bool {
		st := sp.Stats()["tencent"]
		return st.Depth == 0 && st.DeadLetters == 3
	})
	if st := w.Status(); st.DeliveredTotal != 6 {
		t.Fatalf("delivered %d, want 6", st.DeliveredTotal)
	}
}

// TestDrainSendsAPartialBatchAtOnce: a partial batch waits FlushInterval
// for company (an hour here) until the agent stops: then Drain sends it at
// once, and the worker goes on delivering what comes after.
func TestDrainSendsAPartialBatchAtOnce(t *testing.T) {
	clk := fakeclock.New(time.Now())
	sp := newSpool(t, clk.Now)
	sim, c := tencentPair(t)
	cfg := fastConfig(sp, c)
	cfg.Clock, cfg.FlushInterval = clk, time.Hour
	ids := appendActions(t, sp, 0, 30)
	w := start(t, cfg)
	eventually(t, "the partial batch waiting for company", func() bool { return clk.Pending(time.Hour) })
	if n := sim.Requests(); n != 0 {
		t.Fatalf("%d requests before the flush interval and before the drain", n)
	}
	w.Drain()
	w.Drain() // twice is fine
	eventually(t, "the partial batch delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	ids = append(ids, appendActions(t, sp, 30, 7)...)
	advanceUntil(t, clk, "what came after delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if got := len(sim.Delivered()); got != len(ids) {
		t.Fatalf("delivered %d, want %d", got, len(ids))
	}
}
