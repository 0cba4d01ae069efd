package forwarder

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/fakeclock"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

// TestTongDunDailyCapPausesUntilShanghaiMidnightWhileTencentFlows runs both
// workers on one spool: TongDun hits its daily cap (305) and pauses until
// the next day begins in Asia/Shanghai on its (fake) clock, while Tencent
// keeps delivering; past midnight TongDun resumes and delivers the rest,
// and each delivered answer reaches the worker's ResultSink (the score cache's feed).
func TestTongDunDailyCapPausesUntilShanghaiMidnightWhileTencentFlows(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clk := fakeclock.New(time.Date(2026, 11, 23, 16, 0, 0, 0, cst))
	sp := newSpool(t, clk.Now)

	sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk-secret-key", Channel: "bank", Clock: clk.Now})
	sim.SetFaults(tdsim.Faults{DailyCap: 2})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	td, err := tongdun.New(tongdun.Config{URL: hs.URL + "/riskService", PartnerCode: "pc", PartnerKey: "pk-secret-key", Channel: "bank", Clock: clk.Now, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var recs []spool.Record
	for i := 0; i < 4; i++ {
		req := tongdun.Request{Channel: "bank", SessionID: fmt.Sprintf("sess-%d", i), DecisionEvent: "withdraw",
			EventTime: tongdun.FormatEventTime(clk.Now()), AccountID: fmt.Sprint("acct-", i),
			Terminal: &tongdun.Terminal{IP: "210.20.10.33"}, EventDetail: map[string]map[string]any{"withdraw": {}}}
		b, _ := json.Marshal(req)
		recs = append(recs, spool.Record{Queue: "tongdun", ID: req.SessionID, Payload: b})
	}
	if _, err := sp.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	answers := make(chan upstream.Result, 10)
	tdCfg := fastConfig(sp, td)
	tdCfg.Name, tdCfg.Clock, tdCfg.BatchSize = "tongdun", clk, 10
	tdw := startWith(t, tdCfg, ResultFunc(func(q string, _ spool.Entry, r upstream.Result) {
		if q == "tongdun" {
			answers <- r
		}
	}))

	tsim, tc := tencentPair(t)
	tw := start(t, fastConfig(sp, tc)) // real clock

	advanceUntil(t, clk, "tongdun paused", func() bool { return tdw.Status().State == StatePaused })
	st := tdw.Status()
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, cst)
	if st.PausedUntil == nil || !st.PausedUntil.Equal(midnight) || !strings.Contains(st.Reason, "305") {
		t.Fatalf("tongdun status %+v, want paused until %v for 305", st, midnight)
	}
	if strings.Contains(st.Reason+st.LastError, "pk-secret-key") {
		t.Fatal("partner key in status")
	}
	if d := sp.Stats()["tongdun"].Depth; d != 2 {
		t.Fatalf("tongdun depth %d, want 2 left after the cap of 2", d)
	}
	// Tencent keeps flowing meanwhile.
	appendActions(t, sp, 0, 60)
	eventually(t, "tencent delivered during the tongdun pause", func() bool { return len(tsim.Delivered()) == 60 })
	if tw.Status().State != StateOK || tdw.Status().State != StatePaused {
		t.Fatalf("states: tencent %s, tongdun %s", tw.Status().State, tdw.Status().State)
	}
	// Just before midnight: still paused, nothing sent.
	reqs := sim.Requests()
	clk.Set(midnight.Add(-time.Second))
	sleeping(t, clk)
	if sim.Requests() != reqs {
		t.Fatal("tongdun was called before the pause ended")
	}
	clk.Set(midnight.Add(time.Second))
	advanceUntil(t, clk, "tongdun drained after midnight", func() bool { return sp.Stats()["tongdun"].Depth == 0 })
	if n := len(sim.Received()); n != 4 {
		t.Fatalf("tongdun received %d events, want 4", n)
	}
	if pu := tdw.Status().PausedUntil; pu != nil {
		t.Fatalf("still paused until %v", pu)
	}
	for i := 0; i < 4; i++ {
		r := <-answers
		var resp tongdun.Response
		if err := json.Unmarshal(r.Answer, &resp); err != nil || resp.SequenceID == "" || resp.Result == "" {
			t.Fatalf("answer for %s: %s (%v)", r.ID, r.Answer, err)
		}
	}
}
