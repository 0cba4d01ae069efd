package forwarder

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
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

func tencentPair(t *testing.T) (*tencentsim.Server, *tencent.Client) {
	t.Helper()
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	c, err := tencent.New(tencent.Config{BaseURL: hs.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Timeout: 2 * time.Second})
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
	w := New(cfg)
	w.Start()
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
	sp := newSpool(t)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{Outage: true})
	cfg := fastConfig(sp, c)
	cfg.BreakerOpen, cfg.BreakerMaxOpen = 200*time.Millisecond, 200*time.Millisecond
	w := start(t, cfg)
	appendActions(t, sp, 0, 60)
	eventually(t, "circuit open", func() bool { return w.Status().State == StateCircuitOpen })
	if w.Healthy() {
		t.Fatal("an upstream with an open circuit reports healthy")
	}
	// While open it does not hammer: over 0.6s (3 open periods) it sends
	// about one probe per period (each client Send may retry internally).
	before := sim.Requests()
	time.Sleep(600 * time.Millisecond)
	if n := sim.Requests() - before; n > 12 {
		t.Fatalf("%d requests during 0.6s of open circuit", n)
	}
	appendActions(t, sp, 60, 40) // the app keeps posting during the outage
	sim.SetFaults(tencentsim.Faults{})
	eventually(t, "recovered and drained", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if n := len(sim.Delivered()); n != 100 {
		t.Fatalf("delivered %d, want 100", n)
	}
	if st := w.Status(); st.State != StateOK {
		t.Fatalf("state after recovery %s", st.State)
	}
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
	sp := newSpool(t)
	sim, c := tencentPair(t)
	sim.SetFaults(tencentsim.Faults{Throttle: true, RetryAfter: 300 * time.Millisecond})
	w := start(t, fastConfig(sp, c))
	appendActions(t, sp, 0, 5)
	eventually(t, "throttled", func() bool { return strings.Contains(w.Status().Reason, "throttled") })
	before := sim.Requests()
	time.Sleep(250 * time.Millisecond)
	if n := sim.Requests() - before; n > 1 {
		t.Fatalf("%d requests within Retry-After", n)
	}
	sim.SetFaults(tencentsim.Faults{})
	eventually(t, "drained", func() bool { return sp.Stats()["tencent"].Depth == 0 })
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
	w := start(t, Config{Name: "tencent", Queue: sp})
	time.Sleep(50 * time.Millisecond)
	if st := w.Status(); st.State != StateNotConfigured || w.Healthy() {
		t.Fatalf("status %+v", st)
	}
	if d := sp.Stats()["tencent"].Depth; d != 3 {
		t.Fatalf("depth %d", d)
	}
}

// fakeClock is a Clock a test moves by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) Set(t time.Time) { c.Advance(t.Sub(c.Now())) }

// Jump steps the wall clock, as an NTP correction does, without time
// passing: pending timers keep their remaining durations (Go's timers run
// on the monotonic clock).
func (c *fakeClock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for i := range c.waiters {
		c.waiters[i].at = c.waiters[i].at.Add(d)
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
	clk := &fakeClock{now: time.Date(2026, 11, 23, 15, 0, 0, 0, time.FixedZone("CST", 8*3600))}
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
	// Let fake time run (polls, flush interval) until the pause is hit.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				if w.Status().State != StatePaused {
					clk.Advance(20 * time.Millisecond)
				}
			}
		}
	}()
	eventually(t, "paused", func() bool { return w.Status().State == StatePaused })
	close(stop)
	if pu := w.Status().PausedUntil; pu == nil || !pu.Equal(midnight) {
		t.Fatalf("paused until %v, want %v", pu, midnight)
	}
	calls := s.calls.Load()
	clk.Set(midnight.Add(-time.Minute))
	time.Sleep(50 * time.Millisecond)
	if s.calls.Load() != calls {
		t.Fatal("sent while paused")
	}
	capped.Store(false)
	clk.Set(midnight.Add(time.Second))
	eventually(t, "resumed after midnight", func() bool { return sp.Stats()["tencent"].Depth == 0 })
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
	startW.Start()
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
	clk := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
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
	stop := make(chan struct{})
	defer close(stop)
	go func() { // fake time runs (polls, back-off) in small steps
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				clk.Advance(20 * time.Millisecond)
			}
		}
	}()
	eventually(t, "a failed attempt", func() bool { return w.Status().FailedTotal > 0 })

	// Forward past MaxAge: the next failure dead-letters them as too old.
	clk.Jump(2 * time.Hour)
	eventually(t, "dead-lettered as too old", func() bool { return sp.Stats()["tencent"].DeadLetters == 3 })
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
	eventually(t, "delivered after the clock went back", func() bool {
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
	sp := newSpool(t)
	sim, c := tencentPair(t)
	cfg := fastConfig(sp, c)
	cfg.FlushInterval = time.Hour
	ids := appendActions(t, sp, 0, 30)
	w := start(t, cfg)
	time.Sleep(200 * time.Millisecond)
	if n := sim.Requests(); n != 0 {
		t.Fatalf("%d requests before the flush interval and before the drain", n)
	}
	w.Drain()
	w.Drain() // twice is fine
	eventually(t, "the partial batch delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	ids = append(ids, appendActions(t, sp, 30, 7)...)
	eventually(t, "what came after delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if got := len(sim.Delivered()); got != len(ids) {
		t.Fatalf("delivered %d, want %d", got, len(ids))
	}
}
