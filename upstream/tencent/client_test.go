package tencent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/internal/fakeclock"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

const (
	// The token has characters that URL encoding changes, so both of its
	// forms must be masked.
	testToken = "s3cr3t+TOKEN/with=chars"
	account   = 7001
	set       = 8002
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder counts what reaches the handler behind it and the size of each
// body; it is a pass-through, not a mock.
type recorder struct {
	next     http.Handler
	mu       sync.Mutex
	sizes    []int
	actions  []int
	bodies   []string
	requests atomic.Int64
	before   func(n int64) // called with the request number, before next
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	n := r.requests.Add(1)
	b, _ := io.ReadAll(req.Body)
	var env struct {
		Actions []json.RawMessage `json:"actions"`
	}
	_ = json.Unmarshal(b, &env)
	r.mu.Lock()
	r.sizes = append(r.sizes, len(b))
	r.actions = append(r.actions, len(env.Actions))
	r.bodies = append(r.bodies, string(b))
	r.mu.Unlock()
	if r.before != nil {
		r.before(n)
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	r.next.ServeHTTP(w, req)
}

type env struct {
	sim  *tencentsim.Server
	rec  *recorder
	ts   *httptest.Server
	logs *syncBuffer
}

func newSim(t *testing.T) *env {
	t.Helper()
	sim := tencentsim.New(tencentsim.Options{AccessToken: testToken, AccountID: account, UserActionSetID: set})
	rec := &recorder{next: sim}
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	return &env{sim: sim, rec: rec, ts: ts, logs: &syncBuffer{}}
}

// newClient builds a fast client: a high rate and millisecond retry waits.
func newClient(t *testing.T, baseURL string, logs *syncBuffer, mod func(*Config)) *Client {
	t.Helper()
	if logs == nil {
		logs = &syncBuffer{}
	}
	cfg := Config{
		BaseURL: baseURL, AccountID: account, UserActionSetID: set, AccessToken: testToken,
		RequestsPerMinute: 6_000_000, Timeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.rc.RetryWaitMin = time.Millisecond
	c.rc.RetryWaitMax = 10 * time.Millisecond
	return c
}

func mkAction(id string) action.Action {
	return action.Action{
		ID: id, Track: action.TrackPersonalLoan, ActionType: action.TypeRegister,
		ActionTime: time.Now().Add(-time.Minute).Unix(),
		UserID:     &action.UserID{HashPhone: "hp-" + id + "-0123456789abcdef"},
	}
}

func mkItems(t *testing.T, acts ...action.Action) []upstream.Item {
	t.Helper()
	out := make([]upstream.Item, len(acts))
	for i, a := range acts {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = upstream.Item{ID: a.ID, Payload: b}
	}
	return out
}

func nActions(n int) []action.Action {
	out := make([]action.Action, n)
	for i := range out {
		out[i] = mkAction(fmt.Sprintf("act-%03d", i))
	}
	return out
}

func outcomes(rs []upstream.Result) map[upstream.Outcome]int {
	m := map[upstream.Outcome]int{}
	for _, r := range rs {
		m[r.Verdict.Outcome]++
	}
	return m
}

// fixed is a tiny upstream answering one fixed status, header and body,
// for the codes the simulator has no fault for.
func fixed(t *testing.T, status int, hdr map[string]string, body string) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func codeBody(code int, msg string) string {
	return fmt.Sprintf(`{"code":%d,"message":%q,"message_cn":"","data":{}}`, code, msg)
}

func TestClassification(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		hdr        map[string]string
		body       string
		outcome    upstream.Outcome
		code       string
		throttled  bool
		retryAfter time.Duration
	}{
		{name: "ok", status: 200, body: codeBody(0, ""), outcome: upstream.Delivered, code: "0"},
		{name: "system error", status: 200, body: codeBody(10000, "busy"), outcome: upstream.RetryLater, code: "10000"},
		{name: "maintenance", status: 200, body: codeBody(10001, "maintenance"), outcome: upstream.RetryLater, code: "10001"},
		{name: "11000 expired", status: 200, body: codeBody(11000, "Access token is expired."), outcome: upstream.Pause, code: "11000"},
		{name: "11001", status: 200, body: codeBody(11001, "x"), outcome: upstream.Pause, code: "11001"},
		{name: "11002 invalid", status: 200, body: codeBody(11002, "Access token is invalid."), outcome: upstream.Pause, code: "11002"},
		{name: "11003", status: 200, body: codeBody(11003, "x"), outcome: upstream.Pause, code: "11003"},
		{name: "11004 malformed", status: 200, body: codeBody(11004, "x"), outcome: upstream.Pause, code: "11004"},
		{name: "11005 empty", status: 200, body: codeBody(11005, "x"), outcome: upstream.Pause, code: "11005"},
		{name: "11014 out of scope", status: 200, body: codeBody(11014, "x"), outcome: upstream.Pause, code: "11014"},
		{name: "11008 throttled", status: 200, body: codeBody(11008, "limit"), outcome: upstream.RetryLater, code: "11008", throttled: true},
		{name: "11008 with Retry-After", status: 200, hdr: map[string]string{"Retry-After": "17"}, body: codeBody(11008, "limit"), outcome: upstream.RetryLater, code: "11008", throttled: true, retryAfter: 17 * time.Second},
		{name: "11016 per second with Retry-After", status: 200, hdr: map[string]string{"Retry-After": "2"}, body: codeBody(11016, "x"), outcome: upstream.RetryLater, code: "11016", throttled: true, retryAfter: 2 * time.Second},
		{name: "11017 per minute with Retry-After", status: 200, hdr: map[string]string{"Retry-After": "5"}, body: codeBody(11017, "x"), outcome: upstream.RetryLater, code: "11017", throttled: true, retryAfter: 5 * time.Second},
		{name: "11019 too frequent", status: 200, body: codeBody(11019, "x"), outcome: upstream.RetryLater, code: "11019", throttled: true},
		{name: "11022 real-name token limit", status: 200, body: codeBody(11022, "x"), outcome: upstream.RetryLater, code: "11022", throttled: true},
		{name: "12000 missing auth", status: 200, body: codeBody(12000, "x"), outcome: upstream.Pause, code: "12000"},
		{name: "param error", status: 200, body: codeBody(31001, "actions[0].action_type: bad"), outcome: upstream.Permanent, code: "31001"},
		{name: "503 Retry-After", status: 503, hdr: map[string]string{"Retry-After": "7"}, body: "busy", outcome: upstream.RetryLater, code: "http_503", retryAfter: 7 * time.Second},
		{name: "500", status: 500, body: "oops", outcome: upstream.RetryLater, code: "http_500"},
		{name: "502 with a code body", status: 502, body: codeBody(31001, "x"), outcome: upstream.RetryLater, code: "http_502"},
		{name: "429", status: 429, hdr: map[string]string{"Retry-After": "3"}, outcome: upstream.RetryLater, code: "http_429", throttled: true, retryAfter: 3 * time.Second},
		{name: "429 no header", status: 429, outcome: upstream.RetryLater, code: "http_429", throttled: true},
		{name: "404 no code", status: 404, body: "not found", outcome: upstream.Pause, code: "http_404"},
		{name: "401 no code", status: 401, body: "", outcome: upstream.Pause, code: "http_401"},
		{name: "302 not followed", status: 302, hdr: map[string]string{"Location": "http://127.0.0.1:1/elsewhere"}, outcome: upstream.Pause, code: "http_302"},
		{name: "400 with token code", status: 400, body: codeBody(11002, "x"), outcome: upstream.Pause, code: "11002"},
		{name: "malformed", status: 200, body: "<html>gateway</html>", outcome: upstream.RetryLater, code: "bad_answer"},
		{name: "no code", status: 200, body: `{"message":"ok"}`, outcome: upstream.RetryLater, code: "bad_answer"},
		{name: "cut short", status: 200, body: `{"code":0,"mess`, outcome: upstream.RetryLater, code: "bad_answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := fixed(t, tc.status, tc.hdr, tc.body)
			c := newClient(t, ts.URL, nil, nil)
			rs := c.Send(context.Background(), mkItems(t, mkAction("a1")))
			if len(rs) != 1 || rs[0].ID != "a1" {
				t.Fatalf("results %+v", rs)
			}
			v := rs[0].Verdict
			if v.Outcome != tc.outcome || v.Code != tc.code || v.Throttled != tc.throttled || v.RetryAfter != tc.retryAfter {
				t.Fatalf("verdict %+v; want %v %s throttled=%v after=%v", v, tc.outcome, tc.code, tc.throttled, tc.retryAfter)
			}
			if v.Outcome != upstream.Delivered && v.Message == "" {
				t.Fatal("no message")
			}
			if v.Outcome == upstream.Pause && !v.PauseUntil.IsZero() {
				t.Fatalf("PauseUntil %v, want zero (until an operator acts)", v.PauseUntil)
			}
		})
	}
}

// TestThrottleWindowPerCode: each throttling code, as the simulator
// answers it, is waited out for the window Tencent's error table names:
// 11016 the rest of the second, 11017 the rest of the minute, 11018 until
// midnight in Beijing; 11008 and 11019 name none (RetryAfter zero: the
// forwarder backs off from about a second). A Retry-After wins over all.
func TestThrottleWindowPerCode(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 15, 42, 300_000_000, time.UTC) // 22:15:42.3 in Beijing
	tests := []struct {
		code       int
		retryAfter time.Duration // the simulator's Retry-After header, if any
		want       time.Duration
	}{
		{code: tencentsim.CodeSecondQuota, want: 700 * time.Millisecond},
		{code: tencentsim.CodeMinuteQuota, want: 17700 * time.Millisecond},
		{code: tencentsim.CodeDayQuota, want: time.Hour + 44*time.Minute + 17700*time.Millisecond},
		{code: tencentsim.CodeTooFrequent, want: 0},
		{code: tencentsim.CodeThrottled, want: 0},
		{code: tencentsim.CodeSecondQuota, retryAfter: 3 * time.Second, want: 3 * time.Second},
		{code: tencentsim.CodeTooFrequent, retryAfter: 9 * time.Second, want: 9 * time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d retry-after %s", tc.code, tc.retryAfter), func(t *testing.T) {
			sim := tencentsim.New(tencentsim.Options{AccessToken: testToken, AccountID: account, UserActionSetID: set,
				Clock: func() time.Time { return now }})
			sim.SetFaults(tencentsim.Faults{ThrottleCode: tc.code, RetryAfter: tc.retryAfter})
			ts := httptest.NewServer(sim)
			defer ts.Close()
			c := newClient(t, ts.URL, nil, func(c *Config) { c.Clock = func() time.Time { return now } })
			acts := nActions(2)
			for i := range acts {
				acts[i].ActionTime = now.Add(-time.Minute).Unix()
			}
			for _, r := range c.Send(context.Background(), mkItems(t, acts...)) {
				v := r.Verdict
				if v.Outcome != upstream.RetryLater || !v.Throttled || v.Code != strconv.Itoa(tc.code) || v.RetryAfter != tc.want {
					t.Fatalf("%s: verdict %+v; want throttled, code %d, wait %s", r.ID, v, tc.code, tc.want)
				}
			}
			if n := sim.Requests(); n != 1 {
				t.Fatalf("%d requests; a throttled Send stops at the first", n)
			}
		})
	}
	// On a second's boundary the wait is the whole next second.
	if d := untilNextSecond(now.Truncate(time.Second)); d != time.Second {
		t.Fatalf("untilNextSecond on a boundary = %s", d)
	}
}

func TestDailyQuotaWaitsForBeijingMidnight(t *testing.T) {
	ts := fixed(t, 200, nil, codeBody(11018, "per day"))
	now := time.Date(2025, 3, 1, 15, 0, 0, 0, time.UTC) // 23:00 in Beijing
	c := newClient(t, ts.URL, nil, func(c *Config) { c.Clock = func() time.Time { return now } })
	v := c.Send(context.Background(), mkItems(t, mkAction("a")))[0].Verdict
	if v.Outcome != upstream.RetryLater || !v.Throttled || v.RetryAfter != time.Hour {
		t.Fatalf("verdict %+v, want throttled for 1h", v)
	}
}

func TestSimulatorFaults(t *testing.T) {
	tests := []struct {
		name      string
		faults    tencentsim.Faults
		cfg       func(*Config)
		outcome   upstream.Outcome
		code      string
		throttled bool
		after     time.Duration
		delivered int // actions the simulator holds afterwards
	}{
		{name: "none", outcome: upstream.Delivered, code: "0", delivered: 2},
		{name: "token expired", faults: tencentsim.Faults{TokenExpired: true}, outcome: upstream.Pause, code: "11000"},
		{name: "throttle", faults: tencentsim.Faults{Throttle: true, RetryAfter: 30 * time.Second}, outcome: upstream.RetryLater, code: "11008", throttled: true, after: 30 * time.Second},
		{name: "system error", faults: tencentsim.Faults{ErrorRate: 1}, outcome: upstream.RetryLater, code: "10000"},
		{name: "503", faults: tencentsim.Faults{HTTPStatus: 503}, outcome: upstream.RetryLater, code: "http_503"},
		{name: "outage", faults: tencentsim.Faults{Outage: true}, outcome: upstream.RetryLater, code: "network"},
		{name: "truncated answer", faults: tencentsim.Faults{Truncate: true}, outcome: upstream.RetryLater, code: "bad_answer", delivered: 2},
		{name: "slow", faults: tencentsim.Faults{Latency: 300 * time.Millisecond}, cfg: func(c *Config) { c.Timeout = 40 * time.Millisecond }, outcome: upstream.RetryLater, code: "timeout"},
		{name: "wrong token", cfg: func(c *Config) { c.AccessToken = "other-token" }, outcome: upstream.Pause, code: "11002"},
		{name: "wrong account", cfg: func(c *Config) { c.AccountID = 1 }, outcome: upstream.Pause, code: "11014"},
		{name: "clock skew", cfg: func(c *Config) { c.Clock = func() time.Time { return time.Now().Add(time.Hour) } }, outcome: upstream.Pause, code: "12001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSim(t)
			e.sim.SetFaults(tc.faults)
			c := newClient(t, e.ts.URL, e.logs, tc.cfg)
			rs := c.Send(context.Background(), mkItems(t, mkAction("a1"), mkAction("a2")))
			for _, r := range rs {
				v := r.Verdict
				if v.Outcome != tc.outcome || v.Code != tc.code || v.Throttled != tc.throttled || v.RetryAfter != tc.after {
					t.Fatalf("%s: verdict %+v; want %v %s", r.ID, v, tc.outcome, tc.code)
				}
				assertNoToken(t, v.Message)
			}
			if n := len(e.sim.Delivered()); n != tc.delivered {
				t.Fatalf("simulator holds %d actions, want %d", n, tc.delivered)
			}
			assertNoToken(t, e.logs.String())
		})
	}
}

func TestQuotaShared(t *testing.T) {
	e := newSim(t)
	e.sim.SetFaults(tencentsim.Faults{QuotaPerMinute: 1})
	c := newClient(t, e.ts.URL, nil, nil)
	if v := c.Send(context.Background(), mkItems(t, mkAction("a")))[0].Verdict; v.Outcome != upstream.Delivered {
		t.Fatalf("first: %+v", v)
	}
	v := c.Send(context.Background(), mkItems(t, mkAction("b")))[0].Verdict
	if v.Outcome != upstream.RetryLater || !v.Throttled || v.Code != "11017" {
		t.Fatalf("over quota: %+v", v)
	}
}

func TestSplitsAt50Actions(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	rs := c.Send(context.Background(), mkItems(t, nActions(120)...))
	if o := outcomes(rs); o[upstream.Delivered] != 120 {
		t.Fatalf("outcomes %v", o)
	}
	if fmt.Sprint(e.rec.actions) != "[50 50 20]" {
		t.Fatalf("actions per request %v, want [50 50 20]", e.rec.actions)
	}
	if len(e.sim.Delivered()) != 120 {
		t.Fatalf("simulator holds %d", len(e.sim.Delivered()))
	}
}

func TestSplitsAt50KiB(t *testing.T) {
	// Packing is the client's business: a server that takes any body
	// (the simulator refuses an openid this long; it checks the 50 KiB
	// limit on its own).
	e := &env{rec: &recorder{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, codeBody(0, ""))
	})}}
	e.ts = httptest.NewServer(e.rec)
	t.Cleanup(e.ts.Close)
	c := newClient(t, e.ts.URL, nil, nil)
	acts := nActions(40)
	for i := range acts {
		acts[i].UserID.WechatOpenID = strings.Repeat("o", 3000) // ~3.1 KB per action
	}
	rs := c.Send(context.Background(), mkItems(t, acts...))
	if o := outcomes(rs); o[upstream.Delivered] != 40 {
		t.Fatalf("outcomes %v: %+v", o, rs[0].Verdict)
	}
	total := 0
	for i, s := range e.rec.sizes {
		if s > MaxBodyBytes {
			t.Fatalf("request %d is %d bytes", i, s)
		}
		total += e.rec.actions[i]
	}
	if len(e.rec.sizes) != 3 || total != 40 || e.rec.actions[0] != 16 {
		t.Fatalf("sizes %v actions %v", e.rec.sizes, e.rec.actions)
	}
	// A body exactly at the limit is fine; the next action would cross it.
	if e.rec.sizes[0]+3100 <= MaxBodyBytes {
		t.Fatalf("first request (%d bytes) could have held one more", e.rec.sizes[0])
	}
}

func TestLocalRejections(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	huge := mkAction("huge")
	huge.UserID.WechatOpenID = strings.Repeat("x", MaxBodyBytes)
	items := mkItems(t, mkAction("ok"), huge)
	items = append(items, upstream.Item{ID: "junk", Payload: json.RawMessage(`{"id":`)})
	rs := c.Send(context.Background(), items)
	want := []struct {
		id   string
		out  upstream.Outcome
		code string
	}{{"ok", upstream.Delivered, "0"}, {"huge", upstream.Permanent, "too_large"}, {"junk", upstream.Permanent, "bad_payload"}}
	for i, w := range want {
		if rs[i].ID != w.id || rs[i].Verdict.Outcome != w.out || rs[i].Verdict.Code != w.code {
			t.Fatalf("result %d: %+v, want %+v", i, rs[i], w)
		}
	}
	if e.rec.requests.Load() != 1 {
		t.Fatalf("%d requests, want 1", e.rec.requests.Load())
	}
}

func TestNotConfigured(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, func(c *Config) { c.AccessToken = "" })
	if c.Configured() {
		t.Fatal("configured without a token")
	}
	v := c.Send(context.Background(), mkItems(t, mkAction("a")))[0].Verdict
	if v.Outcome != upstream.Pause || e.rec.requests.Load() != 0 {
		t.Fatalf("verdict %+v after %d requests", v, e.rec.requests.Load())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{BaseURL: "ftp://x"},
		{BaseURL: "http://"},
		{BaseURL: "http://h?access_token=x"},
		{MaxBatch: 51},
		{MaxBytes: MaxBodyBytes + 1},
		{Timeout: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	c, err := New(Config{})
	if err != nil || c.cfg.BaseURL != DefaultBaseURL || c.cfg.MaxBatch != 50 || c.cfg.RequestsPerMinute != 4000 {
		t.Fatalf("defaults: %v %+v", err, c.cfg)
	}
}

func TestBisection(t *testing.T) {
	tests := []struct {
		name string
		bad  []int
	}{
		{"one bad", []int{17}},
		{"three bad", []int{0, 24, 49}},
		{"two adjacent", []int{30, 31}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSim(t)
			acts := nActions(50)
			var badIDs []string
			isBad := map[string]bool{}
			for _, i := range tc.bad {
				badIDs = append(badIDs, action.OuterActionID(acts[i].ID))
				isBad[acts[i].ID] = true
			}
			e.sim.SetFaults(tencentsim.Faults{BadActionIDs: badIDs})
			c := newClient(t, e.ts.URL, nil, nil)
			rs := c.Send(context.Background(), mkItems(t, acts...))
			for _, r := range rs {
				v := r.Verdict
				if isBad[r.ID] {
					if v.Outcome != upstream.Permanent || v.Code != "31001" || !strings.Contains(v.Message, "rejected") {
						t.Fatalf("bad %s: %+v", r.ID, v)
					}
				} else if v.Outcome != upstream.Delivered {
					t.Fatalf("good %s: %+v", r.ID, v)
				}
			}
			d := e.sim.Delivered()
			if len(d) != 50-len(tc.bad) {
				t.Fatalf("simulator holds %d, want %d", len(d), 50-len(tc.bad))
			}
			outer := map[string]string{}
			for _, a := range acts {
				outer[action.OuterActionID(a.ID)] = a.ID
			}
			for _, a := range d {
				if isBad[outer[a.OuterActionID]] || e.sim.DeliveryCount(a.OuterActionID) != 1 {
					t.Fatalf("simulator holds %s %d times", a.OuterActionID, e.sim.DeliveryCount(a.OuterActionID))
				}
			}
			reqs := int(e.rec.requests.Load())
			bound := 1 + len(tc.bad)*2*int(math.Ceil(math.Log2(50)))
			t.Logf("%d bad of 50: %d requests (bound %d)", len(tc.bad), reqs, bound)
			if reqs > bound {
				t.Fatalf("%d requests, bound %d", reqs, bound)
			}
		})
	}
}

func TestBisectionBudget(t *testing.T) {
	e := newSim(t)
	acts := nActions(50)
	var bad []string
	for i := 0; i < 50; i += 2 { // 25 bad: far more than the budget isolates
		bad = append(bad, action.OuterActionID(acts[i].ID))
	}
	e.sim.SetFaults(tencentsim.Faults{BadActionIDs: bad})
	c := newClient(t, e.ts.URL, nil, nil)
	rs := c.Send(context.Background(), mkItems(t, acts...))
	o := outcomes(rs)
	if reqs := e.rec.requests.Load(); reqs > 1+bisectBudget {
		t.Fatalf("%d requests, budget %d", reqs, bisectBudget)
	}
	if o[upstream.RetryLater] == 0 || o[upstream.Delivered]+o[upstream.Permanent]+o[upstream.RetryLater] != 50 {
		t.Fatalf("outcomes %v", o)
	}
	for i, r := range rs {
		if r.Verdict.Outcome == upstream.Permanent && i%2 != 0 {
			t.Fatalf("good action %s dead-lettered", r.ID)
		}
	}
}

func TestBisectionStopsOnPause(t *testing.T) {
	e := newSim(t)
	acts := nActions(50)
	e.sim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID(acts[40].ID)}})
	// After the first (rejected) request the token expires.
	e.rec.before = func(n int64) {
		if n == 2 {
			e.sim.SetFaults(tencentsim.Faults{TokenExpired: true})
		}
	}
	c := newClient(t, e.ts.URL, nil, nil)
	rs := c.Send(context.Background(), mkItems(t, append(acts, nActions(60)[55:]...)...))
	for _, r := range rs {
		if r.Verdict.Outcome != upstream.Pause || r.Verdict.Code != "11000" {
			t.Fatalf("%s: %+v", r.ID, r.Verdict)
		}
	}
	if n := e.rec.requests.Load(); n != 2 {
		t.Fatalf("%d requests; want 2 (nothing sent after the pause)", n)
	}
}

func TestOuterActionIDAndResend(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	a := mkAction("evt-42")
	a.ActionParam = map[string]int{"credit_level": 2}
	a.Trace = &action.Trace{ClickID: "clk-1"}
	b := mkAction("evt-43")
	b.Trace = &action.Trace{} // empty trace must be omitted
	items := mkItems(t, a, b)
	for i := 0; i < 2; i++ {
		for _, r := range c.Send(context.Background(), items) {
			if r.Verdict.Outcome != upstream.Delivered {
				t.Fatalf("send %d: %+v", i, r)
			}
		}
	}
	d := e.sim.Delivered()
	if len(d) != 2 || d[0].OuterActionID != action.OuterActionID("evt-42") || d[1].OuterActionID != action.OuterActionID("evt-43") {
		t.Fatalf("delivered %+v", d)
	}
	if d[0].UserID["hash_phone"] != a.UserID.HashPhone || d[0].ActionType != "REGISTER" ||
		d[0].ActionTime != a.ActionTime || d[0].Trace.ClickID != "clk-1" || d[0].ActionParam["credit_level"] != float64(2) {
		t.Fatalf("wire action %+v", d[0])
	}
	if d[1].Trace != nil || d[1].ActionParam != nil {
		t.Fatalf("empty trace/param sent: %+v", d[1])
	}
	if n := e.sim.DeliveryCount(action.OuterActionID("evt-42")); n != 2 {
		t.Fatalf("DeliveryCount = %d, want 2", n)
	}
	for _, body := range e.rec.bodies {
		if strings.Contains(body, "track") || strings.Contains(body, `"id"`) {
			t.Fatalf("internal fields sent: %s", body)
		}
	}
}

// TestOuterActionIDIsTencentSafe: ids the local API takes but Tencent's
// outer_action_id does not ('.', ':', '-', such as the README's own
// loan-app-000123) are sent mapped, and Tencent-safe ids unchanged; the
// simulator refuses anything else, as Tencent refuses a bad parameter.
func TestOuterActionIDIsTencentSafe(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	ids := []string{"loan-app-000123", "loan_app_000123", "evt.2026-11-23:7", "plain42"}
	var acts []action.Action
	for _, id := range ids {
		acts = append(acts, mkAction(id))
	}
	for i := 0; i < 2; i++ { // a re-send carries the same keys
		for _, r := range c.Send(context.Background(), mkItems(t, acts...)) {
			if r.Verdict.Outcome != upstream.Delivered {
				t.Fatalf("send %d: %s: %+v", i, r.ID, r.Verdict)
			}
		}
	}
	d := e.sim.Delivered()
	want := []string{"loan_app_000123_" + hash16("loan-app-000123"), "loan_app_000123",
		"evt_2026_11_23_7_" + hash16("evt.2026-11-23:7"), "plain42"}
	if len(d) != len(want) {
		t.Fatalf("simulator holds %d actions, want %d", len(d), len(want))
	}
	for i, a := range d {
		if a.OuterActionID != want[i] || e.sim.DeliveryCount(want[i]) != 2 {
			t.Fatalf("action %d: outer_action_id %q (delivered %d times), want %q twice", i, a.OuterActionID, e.sim.DeliveryCount(a.OuterActionID), want[i])
		}
	}
}

// TestPassesOnEveryUserIDFormAndOptionalField: the user_id forms of
// Tencent's v3 model beyond the first ones (hash_android_id, the
// md5_sha256_* forms, caid with its version) and the optional channel,
// custom_action and product_inform reach the simulator as given.
func TestPassesOnEveryUserIDFormAndOptionalField(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	a := mkAction("full_1")
	h32, h64 := strings.Repeat("ab", 16), strings.Repeat("cd", 32)
	a.UserID = &action.UserID{HashAndroidID: h32, MD5SHA256IMEI: h64, MD5SHA256IDFA: h64, MD5SHA256OAID: h64,
		CAID: h32, CAIDVersion: 20230330, WechatUnionID: "u1", WechatAppID: "wx1"}
	a.Channel, a.CustomAction = "TENCENT", "Speak_frequently"
	a.ProductInform = &action.ProductInform{ContentType: "LOAN", ProductCatalogID: "cat", ProductID: []string{"p1"}, CategoryPath: []string{"贷款", "个贷"}}
	if v := c.Send(context.Background(), mkItems(t, a))[0].Verdict; v.Outcome != upstream.Delivered {
		t.Fatalf("verdict %+v", v)
	}
	d := e.sim.Delivered()
	if len(d) != 1 {
		t.Fatalf("simulator holds %d", len(d))
	}
	got := d[0]
	wantUser := map[string]any{"hash_android_id": h32, "md5_sha256_imei": h64, "md5_sha256_idfa": h64, "md5_sha256_oaid": h64,
		"caid": h32, "caid_version": float64(20230330), "wechat_unionid": "u1", "wechat_app_id": "wx1"}
	if fmt.Sprint(got.UserID) != fmt.Sprint(wantUser) || got.Channel != "TENCENT" || got.CustomAction != "Speak_frequently" ||
		got.ProductInform == nil || fmt.Sprint(*got.ProductInform) != fmt.Sprint(tencentsim.ProductInform(*a.ProductInform)) {
		t.Fatalf("delivered %+v (product_inform %+v)", got, got.ProductInform)
	}
}

// TestWebDataSourceGetsTheURL: a WEB data source takes actions only with
// their page url; the client sends it. An action stored without one (before
// the data source was said to be WEB) is refused alone, the rest delivered.
func TestWebDataSourceGetsTheURL(t *testing.T) {
	sim := tencentsim.New(tencentsim.Options{AccessToken: testToken, AccountID: account, UserActionSetID: set, DataSourceType: "WEB"})
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	c := newClient(t, ts.URL, nil, nil)
	acts := nActions(3)
	acts[0].URL = "https://bank.example/loan/apply?gdt_vid=wx0abc"
	acts[2].URL = "http://h5.bank.example/register"
	rs := c.Send(context.Background(), mkItems(t, acts...))
	if rs[0].Verdict.Outcome != upstream.Delivered || rs[2].Verdict.Outcome != upstream.Delivered ||
		rs[1].Verdict.Outcome != upstream.Permanent || !strings.Contains(rs[1].Verdict.Message, "url") {
		t.Fatalf("results %+v", rs)
	}
	d := sim.Delivered()
	if len(d) != 2 || d[0].URL != acts[0].URL || d[1].URL != acts[2].URL {
		t.Fatalf("delivered %+v", d)
	}
}

func hash16(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

func TestRetryUsesFreshNonce(t *testing.T) {
	e := newSim(t)
	// The first attempt reaches the simulator (which records its nonce and
	// actions) but its answer is replaced by a 503; the retry must carry a
	// new nonce or the simulator refuses it as a replay.
	var first atomic.Bool
	first.Store(true)
	wrap := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(true, false) {
			e.rec.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		e.rec.ServeHTTP(w, r)
	})
	ts := httptest.NewServer(wrap)
	defer ts.Close()
	c := newClient(t, ts.URL, nil, nil)
	v := c.Send(context.Background(), mkItems(t, mkAction("r1")))[0].Verdict
	if v.Outcome != upstream.Delivered {
		t.Fatalf("verdict %+v", v)
	}
	if n := e.sim.DeliveryCount(action.OuterActionID("r1")); n != 2 {
		t.Fatalf("DeliveryCount = %d, want 2 (lost answer, then retry)", n)
	}
}

func TestCanceledContext(t *testing.T) {
	e := newSim(t)
	c := newClient(t, e.ts.URL, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range c.Send(ctx, mkItems(t, nActions(60)...)) {
		if r.Verdict.Outcome != upstream.RetryLater || r.Verdict.Code != "canceled" {
			t.Fatalf("%+v", r)
		}
	}
	if e.rec.requests.Load() != 0 {
		t.Fatal("sent after cancellation")
	}
}

func assertNoToken(t *testing.T, s string) {
	t.Helper()
	for _, form := range []string{testToken, url.QueryEscape(testToken), url.PathEscape(testToken), "s3cr3t"} {
		if strings.Contains(s, form) {
			t.Fatalf("token (%q) leaked in %q", form, s)
		}
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	// echo puts the full request URL, token included, into its message.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"code":31001,"message":"bad request %s"}`, r.URL.String())
	}))
	defer echo.Close()
	echo503 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, r.URL.String(), http.StatusServiceUnavailable)
	}))
	defer echo503.Close()

	tests := []struct {
		name   string
		url    func(e *env) string
		faults tencentsim.Faults
		cfg    func(*Config)
		code   string
	}{
		{name: "server down", url: func(*env) string { return closedURL }, code: "network"},
		{name: "connection reset", faults: tencentsim.Faults{Outage: true}, code: "network"},
		{name: "time-out", faults: tencentsim.Faults{Latency: 300 * time.Millisecond}, cfg: func(c *Config) { c.Timeout = 30 * time.Millisecond }, code: "timeout"},
		{name: "token expired", faults: tencentsim.Faults{TokenExpired: true}, code: "11000"},
		{name: "503", faults: tencentsim.Faults{HTTPStatus: 503}, code: "http_503"},
		{name: "bad answer", faults: tencentsim.Faults{Truncate: true}, code: "bad_answer"},
		{name: "echoed in message", url: func(*env) string { return echo.URL }, code: "31001"},
		{name: "echoed in 503 body", url: func(*env) string { return echo503.URL }, code: "http_503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSim(t)
			e.sim.SetFaults(tc.faults)
			base := e.ts.URL
			if tc.url != nil {
				base = tc.url(e)
			}
			c := newClient(t, base, e.logs, tc.cfg)
			for _, r := range c.Send(context.Background(), mkItems(t, mkAction("a"))) {
				if r.Verdict.Code != tc.code {
					t.Fatalf("verdict %+v, want code %s", r.Verdict, tc.code)
				}
				assertNoToken(t, r.Verdict.Message)
				t.Logf("message: %s", r.Verdict.Message)
			}
			logs := e.logs.String()
			if logs == "" {
				t.Fatal("nothing logged: the test would prove nothing")
			}
			assertNoToken(t, logs)
		})
	}
}

func TestRedact(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1", nil, nil)
	in := "Post \"http://h/v3.0/user_actions/add?access_token=" + url.QueryEscape(testToken) +
		"&nonce=1\": x; raw " + testToken + "; other access_token=zzz&y=1"
	out := c.redact(in)
	assertNoToken(t, out)
	if strings.Contains(out, "zzz") || !strings.Contains(out, "nonce=1") {
		t.Fatalf("redact: %q", out)
	}
	if got := c.redact(strings.Repeat("é", 400)); len(got) > maxMessageLen+len("…") || !utf8Valid(got) {
		t.Fatalf("long message not cut cleanly: %d bytes", len(got))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// The rate limit paces requests on the injected clock: the first goes at
// once, the next waits for its turn (100 ms at 600 a minute) and not a
// moment less, and a deadline shorter than the wait fails at once.
func TestRateLimit(t *testing.T) {
	ts := fixed(t, 200, nil, codeBody(0, ""))
	clk := fakeclock.New(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	c := newClient(t, ts.URL, nil, func(c *Config) { c.RequestsPerMinute, c.Clock, c.After = 600, clk.Now, clk.After })
	items := mkItems(t, mkAction("a"))
	send := func(ctx context.Context) <-chan upstream.Verdict {
		done := make(chan upstream.Verdict, 1)
		go func() { done <- c.Send(ctx, items)[0].Verdict }()
		return done
	}
	wait := func(what string, done <-chan upstream.Verdict) upstream.Verdict {
		t.Helper()
		select {
		case v := <-done:
			return v
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never returned", what)
			return upstream.Verdict{}
		}
	}
	if v := wait("the first send, with the clock standing still", send(context.Background())); v.Outcome != upstream.Delivered {
		t.Fatalf("first send %+v", v)
	}
	second := send(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := clk.BlockUntil(ctx, 1); err != nil {
		t.Fatal("the second send did not wait for its turn")
	}
	if !clk.Pending(100*time.Millisecond) || clk.Pending(100*time.Millisecond+time.Nanosecond) {
		next, _ := clk.Next()
		t.Fatalf("the second send waits %s, want 100ms at 600/min", next.Sub(clk.Now()))
	}
	clk.Advance(100*time.Millisecond - time.Nanosecond)
	select {
	case v := <-second:
		t.Fatalf("the second send went before its turn: %+v", v)
	default:
	}
	clk.Advance(time.Nanosecond)
	if v := wait("the second send, once its turn came", second); v.Outcome != upstream.Delivered {
		t.Fatalf("second send %+v", v)
	}
	// A deadline shorter than the wait fails fast instead of sleeping.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if v := wait("a send with a short deadline", send(short)); v.Outcome != upstream.RetryLater || v.Code != "rate_limited" {
		t.Fatalf("verdict %+v", v)
	}
}

func TestPersonalFieldsCutFromMessages(t *testing.T) {
	a := mkAction("p1")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"code":11002,"message":"token bad for user %s"}`, a.UserID.HashPhone)
	}))
	defer ts.Close()
	logs := &syncBuffer{}
	c := newClient(t, ts.URL, logs, nil)
	v := c.Send(context.Background(), mkItems(t, a))[0].Verdict
	if strings.Contains(v.Message, a.UserID.HashPhone) || !strings.Contains(v.Message, "[personal]") {
		t.Fatalf("message %q", v.Message)
	}
	if strings.Contains(logs.String(), a.UserID.HashPhone) {
		t.Fatalf("personal field logged: %s", logs.String())
	}
}

// Without a Retry-After, the per-minute quota (11017) is waited out until
// the next minute starts (at least a second), not for a whole minute from
// the refusal: refused agents of a fleet come back as the window opens.
func TestPerMinuteQuotaWaitsForTheNextMinute(t *testing.T) {
	ts := fixed(t, 200, nil, codeBody(11017, "minute quota"))
	for _, tc := range []struct {
		now  string
		want time.Duration
	}{
		{"2026-11-23T10:15:42.500Z", 17500 * time.Millisecond},
		{"2026-11-23T10:15:00Z", time.Minute},
		{"2026-11-23T10:15:59.800Z", time.Second},
	} {
		now, err := time.Parse(time.RFC3339Nano, tc.now)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, ts.URL, nil, func(c *Config) { c.Clock = func() time.Time { return now } })
		rs := c.Send(context.Background(), mkItems(t, mkAction("a1")))
		if v := rs[0].Verdict; v.Code != "11017" || !v.Throttled || v.RetryAfter != tc.want {
			t.Errorf("at %s: verdict %+v, want a wait of %s", tc.now, v, tc.want)
		}
	}
}
