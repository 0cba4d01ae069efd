package upstream_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/simctl"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

// The contract every upstream client keeps, as litestream runs one suite
// over every replica client: the same transport behaviour of its real
// simulator gives the same verdict, whatever the protocol. Each client's
// own tests cover its protocol (codes, throttle windows, bisection...).

// now is a whole second, so that a Retry-After date names an exact wait;
// 15:00 in Shanghai, 7:00 UTC.
var now = time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// harness is one client on its simulator: Send one valid item, set the
// simulator's faults, count the requests it saw.
type harness struct {
	send      func(ctx context.Context) upstream.Verdict
	setFaults func(simctl.Faults)
	requests  func() int
	// retries is the client's RetryMax: how many more requests a fault
	// worth retrying at once costs.
	retries int
}

// The three clients, each with a per-attempt timeout of timeout.
var clients = map[string]func(t *testing.T, timeout time.Duration) harness{
	"tencent": func(t *testing.T, timeout time.Duration) harness {
		const token, account, set = "tok-contract", 1001, 2002
		sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: account, UserActionSetID: set, Clock: clock})
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		c, err := tencent.New(tencent.Config{BaseURL: srv.URL, AccessToken: token, AccountID: account, UserActionSetID: set,
			RequestsPerMinute: 6_000_000, Timeout: timeout, RetryMax: 2, RetryWait: time.Millisecond, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		a := action.Action{ID: "contract-1", Track: action.TrackPersonalLoan, ActionType: action.TypeRegister,
			ActionTime: now.Add(-time.Minute).Unix(), UserID: &action.UserID{HashPhone: "0123456789abcdef0123456789abcdef"}}
		item := upstream.Item{ID: a.ID, Payload: mustJSON(t, a)}
		return harness{
			send:      func(ctx context.Context) upstream.Verdict { return c.Send(ctx, []upstream.Item{item})[0].Verdict },
			setFaults: sim.SetFaults, requests: sim.Requests, retries: 2,
		}
	},
	"tongdun": func(t *testing.T, timeout time.Duration) harness {
		sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk-contract", Channel: "bank", Clock: clock})
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		c, err := tongdun.New(tongdun.Config{URL: srv.URL + "/riskService", PartnerCode: "pc", PartnerKey: "pk-contract",
			Channel: "bank", Timeout: timeout, RetryMax: 1, RetryWait: time.Millisecond, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		req := tongdun.Request{Channel: "bank", SessionID: "s-1", DecisionEvent: tongdun.EventGetCoupon,
			EventTime: "2026-11-23T15:00:00.000+08:00", AccountID: "acct-1",
			Terminal:    &tongdun.Terminal{BlackBox: "aGPH1658920283672ropYaFxT7", IP: "210.20.10.33"},
			EventDetail: map[string]map[string]any{tongdun.EventGetCoupon: {"coupon_id": "C1", "amount": 50}}}
		item := upstream.Item{ID: "td-1", Payload: mustJSON(t, req)}
		return harness{
			send:      func(ctx context.Context) upstream.Verdict { return c.Send(ctx, []upstream.Item{item})[0].Verdict },
			setFaults: sim.SetFaults, requests: sim.Requests, retries: 1,
		}
	},
	"unionpay": func(t *testing.T, timeout time.Duration) harness {
		sim := upsim.New(upsim.Options{ID: "inst", AppKey: "key-contract", Clock: clock})
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		c, err := unionpay.New(unionpay.Config{URL: srv.URL + "/fireeye/creditScore", ID: "inst", AppKey: "key-contract",
			Timeout: timeout, RetryMax: 1, RetryWait: time.Millisecond, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		q := unionpay.ScoreQuery{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"}
		item := upstream.Item{ID: "up-1", Payload: mustJSON(t, unionpay.Check{Kind: unionpay.KindModelScore, Query: mustJSON(t, q)})}
		return harness{
			send:      func(ctx context.Context) upstream.Verdict { return c.Send(ctx, []upstream.Item{item})[0].Verdict },
			setFaults: sim.SetFaults, requests: sim.Requests, retries: 1,
		}
	},
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// contract is the table: a transport behaviour and the verdict's shape.
// retried says the fault is worth retrying at once (the client's RetryMax
// more requests); otherwise the client sends exactly one request. code ""
// is the upstream's own success code.
var contract = []struct {
	name       string
	faults     simctl.Faults
	timeout    time.Duration // per attempt; default 5s
	outcome    upstream.Outcome
	code       string
	throttled  bool
	retryAfter time.Duration
	retried    bool
}{
	{name: "answered", outcome: upstream.Delivered},
	// The simulator waits until the client gives up: no sleep here.
	{name: "no answer within the timeout", faults: simctl.Faults{Latency: time.Hour}, timeout: 50 * time.Millisecond,
		outcome: upstream.RetryLater, code: "timeout"},
	{name: "5xx", faults: simctl.Faults{HTTPStatus: 503}, outcome: upstream.RetryLater, code: "http_503", retried: true},
	{name: "5xx with Retry-After seconds", faults: simctl.Faults{HTTPStatus: 503, RetryAfter: 7 * time.Second},
		outcome: upstream.RetryLater, code: "http_503", retryAfter: 7 * time.Second},
	{name: "5xx with Retry-After date", faults: simctl.Faults{HTTPStatus: 502, RetryAfter: 90 * time.Second, RetryAfterDate: true},
		outcome: upstream.RetryLater, code: "http_502", retryAfter: 90 * time.Second},
	{name: "Retry-After past a day", faults: simctl.Faults{HTTPStatus: 503, RetryAfter: 1000 * time.Hour},
		outcome: upstream.RetryLater, code: "http_503", retryAfter: upstream.MaxRetryAfter},
	{name: "501 is not retried", faults: simctl.Faults{HTTPStatus: 501}, outcome: upstream.RetryLater, code: "http_501"},
	{name: "429", faults: simctl.Faults{HTTPStatus: 429}, outcome: upstream.RetryLater, code: "http_429", throttled: true},
	{name: "429 with Retry-After date", faults: simctl.Faults{HTTPStatus: 429, RetryAfter: 2 * time.Minute, RetryAfterDate: true},
		outcome: upstream.RetryLater, code: "http_429", throttled: true, retryAfter: 2 * time.Minute},
	{name: "connection reset before the answer", faults: simctl.Faults{Outage: true}, outcome: upstream.RetryLater, code: "network", retried: true},
	{name: "connection cut mid-answer", faults: simctl.Faults{Cut: true}, outcome: upstream.RetryLater, code: "network"},
	{name: "malformed answer", faults: simctl.Faults{Truncate: true}, outcome: upstream.RetryLater, code: "bad_answer"},
	{name: "oversized answer", faults: simctl.Faults{Oversize: 4 << 20}, outcome: upstream.RetryLater, code: "bad_answer"},
	{name: "a page that is not the upstream", faults: simctl.Faults{HTTPStatus: 404}, outcome: upstream.Pause, code: "http_404"},
}

func TestContract(t *testing.T) {
	for name, start := range clients {
		t.Run(name, func(t *testing.T) {
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					timeout := tc.timeout
					if timeout == 0 {
						timeout = 5 * time.Second
					}
					h := start(t, timeout)
					h.setFaults(tc.faults)
					v := h.send(context.Background())
					t.Logf("%s %s: %s", v.Outcome, v.Code, v.Message)
					if v.Outcome != tc.outcome || tc.code != "" && v.Code != tc.code {
						t.Errorf("verdict %s %q, want %s %q", v.Outcome, v.Code, tc.outcome, tc.code)
					}
					if v.Throttled != tc.throttled || v.RetryAfter != tc.retryAfter || !v.PauseUntil.IsZero() {
						t.Errorf("throttled %v, retry after %s, pause until %v; want %v, %s and none",
							v.Throttled, v.RetryAfter, v.PauseUntil, tc.throttled, tc.retryAfter)
					}
					if v.Outcome != upstream.Delivered && v.Message == "" {
						t.Error("no message")
					}
					want := 1
					if tc.retried {
						want += h.retries
					}
					if got := h.requests(); got != want {
						t.Errorf("the simulator saw %d requests, want %d", got, want)
					}
				})
			}
		})
	}
}

// A caller's deadline ends a call at once, retries included, in the same
// verdict everywhere.
func TestContractDeadline(t *testing.T) {
	for name, start := range clients {
		t.Run(name, func(t *testing.T) {
			h := start(t, time.Hour)
			h.setFaults(simctl.Faults{Latency: time.Hour})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			v := h.send(ctx)
			if v.Outcome != upstream.RetryLater || v.Code != "timeout" {
				t.Fatalf("verdict %s %q (%s), want retry_later timeout", v.Outcome, v.Code, v.Message)
			}
			if got := h.requests(); got != 1 {
				t.Errorf("the simulator saw %d requests, want 1", got)
			}
		})
	}
}
