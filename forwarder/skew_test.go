package forwarder

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/fakeclock"
	"github.com/outpost-agent/outpost/upstream"
)

// dailyCapSender is TongDun behind a daily cap, as the client reports it:
// the upstream refuses while its own clock (ours minus lag) is before
// open, and the pause it answers lasts until the next midnight in
// Shanghai on our clock, the client's.
func dailyCapSender(clk *fakeClock, lag time.Duration, open func() time.Time) *scriptedSender {
	cst := time.FixedZone("CST", 8*3600)
	return &scriptedSender{fn: func(items []upstream.Item) []upstream.Result {
		out := make([]upstream.Result, len(items))
		ours := clk.Now()
		for i, it := range items {
			v := upstream.Verdict{Outcome: upstream.Delivered}
			if ours.Add(-lag).Before(open()) {
				y, m, d := ours.In(cst).Date()
				v = upstream.Verdict{Outcome: upstream.Pause, Code: "305", Message: "daily cap reached",
					PauseUntil: time.Date(y, m, d+1, 0, 0, 0, 0, cst)}
			}
			out[i] = upstream.Result{ID: it.ID, Verdict: v}
		}
		return out
	}}
}

// TestDailyPauseSurvivesUpstreamClockBehind: the agent's clock is 300 ms
// ahead of TongDun's. At the agent's midnight TongDun's day has not turned
// and it answers 305 again, with a pause until the next midnight: the
// worker must probe again shortly (docs/fleet.md, bench/fleet -skew), not
// stop for a whole day.
func TestDailyPauseSurvivesUpstreamClockBehind(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clk := fakeclock.New(time.Date(2026, 11, 23, 23, 0, 0, 0, cst))
	sp := newSpool(t, clk.Now)
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, cst)
	s := dailyCapSender(clk, 300*time.Millisecond, func() time.Time { return midnight })
	cfg := fastConfig(sp, s)
	cfg.Clock, cfg.BackoffBase = clk, time.Second // the deployed first wait
	w := start(t, cfg)
	appendActions(t, sp, 0, 3)
	advanceUntil(t, clk, "paused by the cap", func() bool { return w.Status().State == StatePaused })
	if pu := w.Status().PausedUntil; pu == nil || !pu.Equal(midnight) {
		t.Fatalf("paused until %v, want %v", pu, midnight)
	}

	calls := s.calls.Load()
	clk.Set(midnight) // ours; TongDun's is 23:59:59.700
	eventually(t, "the probe at midnight refused", func() bool { return s.calls.Load() == calls+1 && w.Status().PausedUntil != nil })
	st := w.Status()
	if st.PausedUntil.After(midnight.Add(time.Second)) || !strings.Contains(st.Reason, "clock may be behind") {
		t.Fatalf("after a 305 at its midnight the worker is paused until %v (%s); want a probe within a second", st.PausedUntil, st.Reason)
	}
	advanceUntil(t, clk, "delivered just after midnight", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	if late := clk.Now().Sub(midnight); late > 5*time.Second {
		t.Fatalf("delivered %s after midnight", late)
	}
	if n := s.calls.Load() - calls; n > 4 {
		t.Fatalf("%d calls after midnight for 3 items", n)
	}
}

// TestRepeatedDailyPauseIsBelievedAfterClockSkew: when the cap really is
// used up again as the day begins, the worker probes a handful of times
// within ClockSkew, then believes the pause until the next midnight.
func TestRepeatedDailyPauseIsBelievedAfterClockSkew(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clk := fakeclock.New(time.Date(2026, 11, 23, 23, 0, 0, 0, cst))
	sp := newSpool(t, clk.Now)
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, cst)
	never := time.Date(2100, 1, 1, 0, 0, 0, 0, cst)
	s := dailyCapSender(clk, 0, func() time.Time { return never })
	cfg := fastConfig(sp, s)
	cfg.Clock, cfg.BackoffBase = clk, time.Second
	w := start(t, cfg)
	appendActions(t, sp, 0, 3)
	advanceUntil(t, clk, "paused by the cap", func() bool { return w.Status().State == StatePaused })
	calls := s.calls.Load()
	clk.Set(midnight)
	nextDay := midnight.Add(24 * time.Hour)
	believed := func() bool { pu := w.Status().PausedUntil; return pu != nil && pu.Equal(nextDay) }
	advanceUntil(t, clk, "paused until the next midnight", believed)
	n := s.calls.Load() - calls
	if n < 2 || n > 10 {
		t.Fatalf("%d probes between midnight and believing the pause; want a handful", n)
	}
	if d := clk.Now().Sub(midnight); d < time.Minute || d > 3*time.Minute {
		t.Fatalf("believed the pause %s after midnight; want after ClockSkew (1m) and soon after", d)
	}
	if sp.Stats()["tencent"].Depth != 3 {
		t.Fatal("items left the queue")
	}
}

func TestRetryWaitJitterIsBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		after, most time.Duration
	}{
		{300 * time.Millisecond, 550 * time.Millisecond}, // 11016's next second: at least a quarter second more
		{10 * time.Second, 12500 * time.Millisecond},     // a quarter more
		{time.Minute, 75 * time.Second},
		{4 * time.Minute, 5 * time.Minute},
		{20 * time.Hour, 20*time.Hour + time.Minute}, // 11018 until midnight: a minute at most
	} {
		var longest time.Duration
		for range 10000 {
			d := retryWait(tc.after, rng.Int64N)
			if d < tc.after || d > tc.most {
				t.Fatalf("retryWait(%s) = %s, want within [%s, %s]", tc.after, d, tc.after, tc.most)
			}
			longest = max(longest, d)
		}
		if spread := longest - tc.after; spread < (tc.most-tc.after)*9/10 {
			t.Errorf("retryWait(%s): longest extra %s of %s: not jittered across the range", tc.after, spread, tc.most-tc.after)
		}
	}
}
