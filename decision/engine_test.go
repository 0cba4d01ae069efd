package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

type fixedPolicy struct{ p *policy.Policy }

func (f fixedPolicy) Current() *policy.Policy { return f.p }

type flag struct{ ok atomic.Bool }

func (f *flag) Healthy() bool { return f.ok.Load() }

type rig struct {
	sp    *spool.Spool
	dir   string
	td    *tdsim.Server
	up    *upsim.Server
	eng   *Engine
	tdOK  *flag
	cfg   Config
	clock *atomic.Int64 // unix nanos
}

func newRig(t testing.TB, mod ...func(*Config)) *rig {
	t.Helper()
	r := &rig{dir: filepath.Join(t.TempDir(), "spool"), tdOK: &flag{}, clock: &atomic.Int64{}}
	r.tdOK.ok.Store(true)
	r.clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, r.clock.Load()) }
	r.openSpool(t)
	r.td = tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk-0123456789", Channel: "bank"})
	tdsrv := httptest.NewServer(r.td)
	t.Cleanup(tdsrv.Close)
	td, err := tongdun.New(tongdun.Config{URL: tdsrv.URL + "/risk", PartnerCode: "pc", PartnerKey: "pk-0123456789", Channel: "bank", RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.up = upsim.New(upsim.Options{ID: "bank", AppKey: "ak-0123456789"})
	upsrv := httptest.NewServer(r.up)
	t.Cleanup(upsrv.Close)
	up, err := unionpay.New(unionpay.Config{URL: upsrv.URL + "/fireeye/creditScore", ID: "bank", AppKey: "ak-0123456789", RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = Config{Store: NewSpoolStore(r.sp), Policies: fixedPolicy{policy.Default()}, TongDun: td, UnionPay: up, TongDunHealth: r.tdOK,
		Timeout: 200 * time.Millisecond, HashKey: []byte("test-hash-key"), Clock: now}
	for _, f := range mod {
		f(&r.cfg)
	}
	r.eng = New(r.cfg)
	t.Cleanup(r.eng.Close)
	return r
}

func (r *rig) openSpool(t testing.TB) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: r.dir, Queues: []string{"tencent", "tongdun", "unionpay"}})
	if err != nil {
		t.Fatal(err)
	}
	r.sp = sp
	t.Cleanup(func() { sp.Close(context.Background()) })
}

func (r *rig) advance(d time.Duration) { r.clock.Add(int64(d)) }

func withdraw(id, account string, amount float64) *Request {
	req := &Request{ID: id, Amount: &amount}
	req.Channel, req.SessionID, req.DecisionEvent = "bank", "sess-"+id, "withdraw"
	req.EventTime = tongdun.FormatEventTime(time.Now())
	req.AccountID = account
	req.Terminal = &tongdun.Terminal{IP: "210.20.10.33"}
	req.EventDetail = map[string]map[string]any{"withdraw": {}}
	return req
}

func decide(t *testing.T, r *rig, req *Request) *Result {
	t.Helper()
	if ps := req.Validate(); len(ps) > 0 {
		t.Fatalf("test request invalid: %+v", ps)
	}
	res, err := r.eng.Decide(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestLiveThenCacheHit(t *testing.T) {
	r := newRig(t)
	r.td.SetVerdict("acct-1", 72, "review", []tongdun.Reason{{ID: "IDRBVBBY", Reason: "frequency"}})
	res := decide(t, r, withdraw("d1", "acct-1", 100))
	td := res.Signals["tongdun"]
	if td.Source != "live" || td.Status != "fresh" || *td.Score != 72 || res.Degraded {
		t.Fatalf("first decision tongdun signal %+v degraded=%v", td, res.Degraded)
	}
	if res.Result != "review" || !hasReason(res, "TD_REVIEW") {
		t.Fatalf("result %s reasons %+v, want review with TD_REVIEW", res.Result, res.Reasons)
	}
	reqs := r.td.Requests()
	r.advance(time.Minute)
	res = decide(t, r, withdraw("d2", "acct-1", 100))
	td = res.Signals["tongdun"]
	if td.Source != "cache" || td.Status != "fresh" || td.AgeSeconds < 59 || r.td.Requests() != reqs {
		t.Fatalf("second decision: %+v, td requests %d -> %d", td, reqs, r.td.Requests())
	}
	if res.PolicyVersion == "" || res.PolicySHA256 == "" {
		t.Fatal("decision not stamped with the policy")
	}
}

// decideWithoutTongDun decides req while TongDun never answers: the
// decision returning at all shows it did not wait for TongDun. The bound
// is only there to fail with a message instead of the test's time-out.
func decideWithoutTongDun(t *testing.T, r *rig, req *Request) *Result {
	t.Helper()
	r.td.SetFaults(tdsim.Faults{Latency: time.Hour})
	done := make(chan *Result, 1)
	go func() {
		res, err := r.eng.Decide(context.Background(), req)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case res := <-done:
		return res
	case <-time.After(30 * time.Second):
		t.Fatalf("decision %s still waiting after 30s for a TongDun that never answers (budget %s)", req.ID, r.cfg.Timeout)
		return nil
	}
}

// A TongDun that does not answer within the budget: the decision is made
// degraded without it (no answer ever comes: it cannot have waited for
// one), the check is queued, and the failure remembered.
func TestSlowUpstreamDecidesDegradedWithinBudgetAndQueues(t *testing.T) {
	r := newRig(t)
	res := decideWithoutTongDun(t, r, withdraw("slow", "acct-2", 100))
	td := res.Signals["tongdun"]
	if !res.Degraded || td.Status != "error" || !td.Queued {
		t.Fatalf("degraded=%v tongdun %+v", res.Degraded, td)
	}
	if n := r.td.Requests(); n != 1 {
		t.Fatalf("%d requests to TongDun, want the one live call", n)
	}
	if d := r.sp.Stats()["tongdun"].Depth; d != 1 {
		t.Fatalf("tongdun queue depth %d, want the check queued", d)
	}
	// The failure is remembered (negative TTL): the next decision does not
	// ask TongDun again.
	res = decideWithoutTongDun(t, r, withdraw("slow2", "acct-2", 100))
	if n := r.td.Requests(); n != 1 || res.Signals["tongdun"].Source != "none" {
		t.Fatalf("second decision asked again (%d requests): %+v", n, res.Signals["tongdun"])
	}
}

// A paused upstream is not asked: the decision does not wait for it.
func TestPausedUpstreamDecidesWithoutWaiting(t *testing.T) {
	r := newRig(t)
	r.tdOK.ok.Store(false)
	res := decideWithoutTongDun(t, r, withdraw("p1", "acct-3", 100))
	if n := r.td.Requests(); n != 0 {
		t.Fatalf("%d requests to a paused upstream", n)
	}
	if !res.Degraded || res.Signals["tongdun"].Status != "missing" || !res.Signals["tongdun"].Queued {
		t.Fatalf("%+v", res)
	}
}

func TestOfflineLimitInDegradedMode(t *testing.T) {
	r := newRig(t)
	r.tdOK.ok.Store(false)
	limit := policy.Default().OfflineLimit()
	small := decide(t, r, withdraw("o1", "acct-4", limit))
	big := decide(t, r, withdraw("o2", "acct-4b", limit+1))
	if small.Result != "accept" || big.Result != "review" || !hasReason(big, "OFFLINE_LIMIT") {
		t.Fatalf("at the limit: %s %+v; above: %s %+v", small.Result, small.Reasons, big.Result, big.Reasons)
	}
}

func TestLateVerdictAttachedAndCacheRefreshed(t *testing.T) {
	r := newRig(t)
	r.tdOK.ok.Store(false)
	res := decide(t, r, withdraw("late1", "acct-5", 100))
	if res.Result != "accept" || !res.Degraded {
		t.Fatalf("offline decision %s degraded=%v", res.Result, res.Degraded)
	}
	// The forwarder delivers the queued check later; TongDun says decline.
	es, _ := r.sp.Lease(context.Background(), "tongdun", 10, 1<<20)
	if len(es) != 1 || es[0].ID != "late1#tongdun" {
		t.Fatalf("queued checks %+v", es)
	}
	answer, _ := json.Marshal(tongdun.Response{Code: 200, SequenceID: "seq-1", Score: 95, Result: "decline", Reasons: []tongdun.Reason{{ID: "X", Reason: "mule"}}})
	r.eng.Delivered("tongdun", es[0], upstream.Result{ID: es[0].ID, Verdict: upstream.Verdict{Outcome: upstream.Delivered}, Answer: answer})
	got, ok, err := r.eng.Get("late1")
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if got.Result != "accept" || !strings.Contains(string(got.Late["tongdun"].Answer), `"decline"`) {
		t.Fatalf("stored decision %s with late verdicts %+v", got.Result, got.Late)
	}
	// The late answer refreshed the cache: the next decision uses it.
	res = decide(t, r, withdraw("late2", "acct-5", 100))
	if res.Signals["tongdun"].Source != "cache" || res.Result != "decline" {
		t.Fatalf("after the late verdict: %s %+v", res.Result, res.Signals["tongdun"])
	}
}

func TestStaleServedWhileRefreshing(t *testing.T) {
	r := newRig(t)
	r.td.SetVerdict("acct-6", 10, "accept", nil)
	decide(t, r, withdraw("s1", "acct-6", 10))
	r.td.SetVerdict("acct-6", 90, "decline", nil)
	r.advance(r.eng.cfg.TongDunCache.TTL + time.Second)
	res := decide(t, r, withdraw("s2", "acct-6", 10))
	if res.Signals["tongdun"].Status != "stale" || res.Result != "accept" {
		t.Fatalf("stale served? %+v %s", res.Signals["tongdun"], res.Result)
	}
	// The refresh runs in the background: wait until its answer is served,
	// then check it was also stored, with a new engine (an empty memory).
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		res = decide(t, r, withdraw(fmt.Sprint("s2-", i), "acct-6", 10))
		if *res.Signals["tongdun"].Score == 90 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background refresh never landed: %+v", res.Signals["tongdun"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.eng.Close()
	r.eng = New(r.cfg)
	res = decide(t, r, withdraw("s3", "acct-6", 10))
	if *res.Signals["tongdun"].Score != 90 || res.Result != "decline" {
		t.Fatalf("refreshed entry not used: %+v %s", res.Signals["tongdun"], res.Result)
	}
}

func TestVelocitySurvivesRestart(t *testing.T) {
	pol := policy.Default()
	var vd policy.VelocityDef
	for _, v := range pol.Velocity() {
		if v.Key == "account" && (len(v.Events) == 0 || contains(v.Events, "withdraw")) {
			vd = v
		}
	}
	if vd.Name == "" {
		t.Fatal("the default policy declares no account velocity counter for withdrawals")
	}
	r := newRig(t)
	for i := 0; i < 3; i++ {
		res := decide(t, r, withdraw("v"+string(rune('a'+i)), "acct-7", 10))
		if got := res.Velocity[vd.Name]; got != int64(i) { // earlier events only
			t.Fatalf("decision %d: %s = %d", i, vd.Name, got)
		}
	}
	r.eng.Close()
	r.sp.Close(context.Background())
	r.openSpool(t)
	r.cfg.Store = NewSpoolStore(r.sp)
	r.eng = New(r.cfg)
	res := decide(t, r, withdraw("vd", "acct-7", 10))
	if got := res.Velocity[vd.Name]; got != 3 {
		t.Fatalf("after restart %s = %d, want 3", vd.Name, got)
	}
	// Outside the window the old events no longer count.
	r.advance(vd.Window + time.Second)
	res = decide(t, r, withdraw("ve", "acct-7", 10))
	if got := res.Velocity[vd.Name]; got != 0 {
		t.Fatalf("after the window %s = %d, want 0", vd.Name, got)
	}
}

func TestUnionPayChecksQueuedOnlyWhenEncrypted(t *testing.T) {
	card := &Card{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"}
	for _, encrypted := range []bool{false, true} {
		r := newRig(t, func(c *Config) { c.QueueUnionPay = encrypted; c.UnionPayHealth = &flag{} }) // unhealthy
		req := withdraw("u1", "acct-8", 10)
		req.Card = card
		res := decide(t, r, req)
		m := res.Signals["unionpay_model"]
		if m.Queued != encrypted || (encrypted == false && !strings.Contains(m.Note, "not encrypted")) {
			t.Fatalf("encrypted=%v: unionpay_model %+v", encrypted, m)
		}
		if d := r.sp.Stats()["unionpay"].Depth; d != map[bool]int64{false: 0, true: 1}[encrypted] {
			t.Fatalf("encrypted=%v: unionpay queue depth %d", encrypted, d)
		}
		rec, _, _ := r.sp.Get("dec/u1")
		for _, raw := range []string{card.CardNo, card.CertID, card.Mobile} {
			if strings.Contains(string(rec), raw) {
				t.Fatalf("raw %s in the decision record", raw)
			}
		}
	}
}

// TestSixthWithdrawalInAnHourGoesToReview drives the default policy's
// velocity rule through the engine.
func TestSixthWithdrawalInAnHourGoesToReview(t *testing.T) {
	r := newRig(t)
	r.td.SetVerdict("acct-11", 5, "accept", nil)
	for i := 1; i <= 6; i++ {
		res := decide(t, r, withdraw(fmt.Sprint("vel-", i), "acct-11", 10))
		want := "accept"
		if i == 6 {
			want = "review"
		}
		if res.Result != want {
			t.Fatalf("withdrawal %d: %s %+v", i, res.Result, res.Reasons)
		}
		r.advance(time.Minute)
	}
}

func TestSameIDSameDecision(t *testing.T) {
	r := newRig(t)
	a := decide(t, r, withdraw("same", "acct-9", 10))
	r.td.SetVerdict("acct-9", 99, "decline", nil)
	b := decide(t, r, withdraw("same", "acct-9", 10))
	if a.Result != b.Result || a.DecisionID != b.DecisionID || b.Result != "accept" && a.Result == "accept" {
		t.Fatalf("%+v vs %+v", a, b)
	}
}

func TestUnionPayLiveSignals(t *testing.T) {
	r := newRig(t)
	card := &Card{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"}
	r.up.SetScore(card.CardNo, 420)
	req := withdraw("u2", "acct-10", 10)
	req.Card = card
	req.Transaction = &Transaction{Date: "20261120", Amount: 212}
	res := decide(t, r, req)
	if m := res.Signals["unionpay_model"]; m.Source != "live" || *m.Score != 420 {
		t.Fatalf("model %+v", m)
	}
	if tx := res.Signals["unionpay_transaction"]; tx.Status != "fresh" || *tx.Match {
		t.Fatalf("transaction %+v (unknown to the simulator: no match)", tx)
	}
	if res.Result != "decline" || !hasReason(res, "UP_TXN_NOT_FOUND") || !hasReason(res, "UP_SCORE_LOW") {
		t.Fatalf("%s %+v", res.Result, res.Reasons)
	}
}

func hasReason(r *Result, id string) bool {
	for _, x := range r.Reasons {
		if x.ID == id {
			return true
		}
	}
	return false
}

// A transaction without a card is refused by ParseRequest; a direct caller
// gets the same refusal instead of a crash in the live call.
func TestDecideTransactionWithoutCard(t *testing.T) {
	r := newRig(t)
	req := withdraw("", "acct-1", 100)
	req.Transaction = &Transaction{Date: "20261123", Amount: 100}
	_, err := r.eng.Decide(context.Background(), req)
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != "transaction" {
		t.Fatalf("got %v, want an InvalidError on transaction", err)
	}
}
