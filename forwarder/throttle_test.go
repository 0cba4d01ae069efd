package forwarder

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/fakeclock"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// throttledVerdict is what the real client makes of the simulator
// answering code at now.
func throttledVerdict(t *testing.T, code int, now time.Time) upstream.Verdict {
	t.Helper()
	clock := func() time.Time { return now }
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2, Clock: clock})
	sim.SetFaults(tencentsim.Faults{ThrottleCode: code})
	hs := httptest.NewServer(sim)
	defer hs.Close()
	c, err := tencent.New(tencent.Config{BaseURL: hs.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"id":"t1","track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"hash_phone":"9d2a2b1c3f3e4d5c6b7a8990a1b2c3d4"}}`, now.Unix())
	v := c.Send(context.Background(), []upstream.Item{{ID: "t1", Payload: []byte(payload)}})[0].Verdict
	if !v.Throttled || v.Code != fmt.Sprint(code) {
		t.Fatalf("verdict %+v, want throttled with code %d", v, code)
	}
	return v
}

// TestThrottleWaitPerCode: the wait after each Tencent throttling code, as
// the real client classifies the simulator's answer, is the window the
// code names (plus jitter), or for codes naming none an exponential
// back-off from a second to a minute, jittered.
func TestThrottleWaitPerCode(t *testing.T) {
	// 22:15:42.3 in Beijing.
	now := time.Date(2026, 11, 23, 14, 15, 42, 300_000_000, time.UTC)
	windows := []struct {
		code     int
		min, max time.Duration
	}{
		// The rest of the second, then up to a quarter second more.
		{tencentsim.CodeSecondQuota, 700 * time.Millisecond, 950 * time.Millisecond},
		// The rest of the minute, then up to a quarter of it more.
		{tencentsim.CodeMinuteQuota, 17700 * time.Millisecond, 17700*time.Millisecond*5/4 + time.Nanosecond},
		// Midnight in Beijing, then up to a minute more.
		{tencentsim.CodeDayQuota, 104*time.Minute + 17700*time.Millisecond, 105*time.Minute + 17700*time.Millisecond},
	}
	for _, tc := range windows {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			v := throttledVerdict(t, tc.code, now)
			w := New(Config{Name: "tencent"})
			for range 200 { // whatever came before, the same window
				if d := w.retryDelay(&v); d < tc.min || d > tc.max {
					t.Fatalf("wait %s after %d, want %s-%s", d, tc.code, tc.min, tc.max)
				}
			}
		})
	}
	for _, code := range []int{tencentsim.CodeThrottled, tencentsim.CodeTooFrequent} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			v := throttledVerdict(t, code, now)
			w := New(Config{Name: "tencent", Queue: newSpool(t)})
			for i := range 10 {
				// 1s, 2s, 4s, ... 32s, then a minute: each between half and all.
				want := min(time.Second<<i, time.Minute)
				if d := w.retryDelay(&v); d < want/2 || d > want {
					t.Fatalf("throttle %d in a row: wait %s, want %s-%s", i+1, d, want/2, want)
				}
			}
			// Delivery (or any other answer) starts the back-off again.
			w.settle(context.Background(), nil, nil)
			if d := w.retryDelay(&v); d > time.Second {
				t.Fatalf("after a success the first wait is %s, want at most a second", d)
			}
		})
	}
	// A jitter of its own for every wait: a fleet told "next second" spreads.
	v := throttledVerdict(t, tencentsim.CodeSecondQuota, now)
	w := New(Config{Name: "tencent"})
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[w.retryDelay(&v)] = true
	}
	if len(seen) < 50 {
		t.Fatalf("%d distinct waits in 100 after 11016: not jittered", len(seen))
	}
}

// TestPerSecondLimitCostsASecond: a backlog drained through Tencent's
// per-second limit (the simulator's QuotaPerSecond answers 11016) loses
// about a second each time it touches the limit, not a minute.
func TestPerSecondLimitCostsASecond(t *testing.T) {
	clk := fakeclock.New(time.Now().Truncate(time.Second).Add(100 * time.Millisecond))
	sp := newSpool(t, clk.Now)
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2, Clock: clk.Now})
	sim.SetFaults(tencentsim.Faults{QuotaPerSecond: 1})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	c, err := tencent.New(tencent.Config{BaseURL: hs.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(sp, c)
	cfg.Clock, cfg.BatchSize, cfg.BackoffBase, cfg.BackoffMax = clk, 1, time.Second, 5*time.Minute
	ids := appendActions(t, sp, 0, 3)
	begin := clk.Now()
	start(t, cfg)
	advanceUntil(t, clk, "all delivered", func() bool { return sp.Stats()["tencent"].Depth == 0 })
	took := clk.Now().Sub(begin)
	if n := len(sim.Delivered()); n != len(ids) {
		t.Fatalf("delivered %d, want %d", n, len(ids))
	}
	if sim.Requests() <= len(ids) {
		t.Fatalf("%d requests for %d actions: the limit was never touched, the test proves nothing", sim.Requests(), len(ids))
	}
	// Three actions at one a second: about two seconds, three at most.
	if took > 4*time.Second {
		t.Fatalf("3 actions through a limit of 1 a second took %s of the clock", took)
	}
	t.Logf("3 actions, %d requests, %s", sim.Requests(), took)
}
