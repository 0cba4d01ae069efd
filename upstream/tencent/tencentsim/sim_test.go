package tencentsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	token   = "tok-ABC123"
	account = 1001
	set     = 2002
)

// t0 is the simulator's time in most tests.
var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

type harness struct {
	srv   *Server
	ts    *httptest.Server
	nonce atomic.Int64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{srv: New(Options{AccessToken: token, AccountID: account, UserActionSetID: set,
		Clock: func() time.Time { return t0 }})}
	h.ts = httptest.NewServer(h.srv)
	t.Cleanup(h.ts.Close)
	return h
}

// query returns a valid query with a fresh nonce.
func (h *harness) query() url.Values {
	return url.Values{
		"access_token": {token},
		"timestamp":    {strconv.FormatInt(t0.Unix(), 10)},
		"nonce":        {fmt.Sprintf("n%d", h.nonce.Add(1))},
	}
}

type answer struct {
	Status  int
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (h *harness) post(t *testing.T, method, path string, q url.Values, ctype, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, h.ts.URL+path+"?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Code: -1}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer %q: %v", raw, err)
		}
	}
	return a
}

func act(id, typ string) map[string]any {
	return map[string]any{
		"outer_action_id": id, "action_time": t0.Add(-time.Hour).Unix(), "action_type": typ,
		"user_id": map[string]string{"hash_phone": "abcdef0123456789"},
	}
}

// withUser adds user_id members (key, value pairs) to a.
func withUser(a map[string]any, kv ...string) map[string]any {
	u := map[string]string{}
	for k, v := range a["user_id"].(map[string]string) {
		u[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		u[kv[i]] = kv[i+1]
	}
	a["user_id"] = u
	return a
}

// set1 sets one member of a.
func set1(a map[string]any, k string, v any) map[string]any {
	a[k] = v
	return a
}

func withClick(a map[string]any, click string) map[string]any {
	a["trace"] = map[string]string{"click_id": click}
	return a
}

func body(acc, st int64, actions ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"account_id": acc, "user_action_set_id": st, "actions": actions})
	return string(b)
}

func many(n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = act(fmt.Sprintf("a%d", i), "REGISTER")
	}
	return out
}

func TestAcceptsAndDeduplicates(t *testing.T) {
	h := newHarness(t)
	b := body(account, set, act("x1", "REGISTER"), act("x2", "CREDIT"))
	for i := 0; i < 2; i++ {
		if a := h.post(t, "POST", Path, h.query(), "application/json", b); a.Code != 0 {
			t.Fatalf("send %d: code %d %s", i, a.Code, a.Message)
		}
	}
	d := h.srv.Delivered()
	if len(d) != 2 || d[0].OuterActionID != "x1" || d[1].OuterActionID != "x2" {
		t.Fatalf("delivered %+v", d)
	}
	if n := h.srv.DeliveryCount("x1"); n != 2 {
		t.Fatalf("DeliveryCount(x1) = %d, want 2", n)
	}
	if st := h.srv.Stats(); st.Requests != 2 || st.Duplicates != 2 || st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejects(t *testing.T) {
	ok := body(account, set, act("x1", "REGISTER"))
	big := act("big", "REGISTER")
	big["user_id"] = map[string]string{"wechat_openid": strings.Repeat("o", MaxBodyBytes)}
	noTime := act("t", "APPLY")
	delete(noTime, "action_time")
	future := act("f", "APPLY")
	future["action_time"] = t0.Add(time.Hour).Unix()
	noUser := act("u", "APPLY")
	delete(noUser, "user_id")
	clickOnly := act("c", "APPLY")
	delete(clickOnly, "user_id")
	clickOnly["trace"] = map[string]string{"click_id": "clk"}
	tracked := act("tr", "APPLY")
	tracked["track"] = "personal_loan"

	without := func(h *harness, p string) url.Values { q := h.query(); q.Del(p); return q }
	with := func(h *harness, p, v string) url.Values { q := h.query(); q.Set(p, v); return q }

	tests := []struct {
		name     string
		method   string
		path     string
		query    func(h *harness) url.Values
		ctype    string
		body     string
		status   int
		code     int
		contains string
	}{
		{name: "valid", body: ok, code: 0},
		{name: "click id instead of user id", body: body(account, set, clickOnly), code: 0},
		{name: "wrong path", path: "/v3.0/user_actions/ad", body: ok, status: 404},
		{name: "wrong method", method: "PUT", body: ok, status: 405},
		{name: "wrong token", query: func(h *harness) url.Values { return with(h, "access_token", "nope") }, body: ok, code: CodeTokenInvalid},
		{name: "empty token", query: func(h *harness) url.Values { return with(h, "access_token", "") }, body: ok, code: CodeTokenEmpty},
		{name: "no token", query: func(h *harness) url.Values { return without(h, "access_token") }, body: ok, code: CodeMissingAuth, contains: "access_token"},
		{name: "no timestamp", query: func(h *harness) url.Values { return without(h, "timestamp") }, body: ok, code: CodeMissingAuth, contains: "timestamp"},
		{name: "no nonce", query: func(h *harness) url.Values { return without(h, "nonce") }, body: ok, code: CodeMissingAuth, contains: "nonce"},
		{name: "stale timestamp", query: func(h *harness) url.Values {
			return with(h, "timestamp", strconv.FormatInt(t0.Add(-301*time.Second).Unix(), 10))
		}, body: ok, code: CodeBadTimestamp},
		{name: "future timestamp", query: func(h *harness) url.Values {
			return with(h, "timestamp", strconv.FormatInt(t0.Add(301*time.Second).Unix(), 10))
		}, body: ok, code: CodeBadTimestamp},
		{name: "timestamp at edge", query: func(h *harness) url.Values {
			return with(h, "timestamp", strconv.FormatInt(t0.Add(-300*time.Second).Unix(), 10))
		}, body: ok, code: 0},
		{name: "timestamp not a number", query: func(h *harness) url.Values { return with(h, "timestamp", "soon") }, body: ok, code: CodeBadTimestamp},
		{name: "long nonce", query: func(h *harness) url.Values { return with(h, "nonce", strings.Repeat("n", 33)) }, body: ok, code: CodeBadNonce},
		{name: "empty nonce", query: func(h *harness) url.Values { return with(h, "nonce", "") }, body: ok, code: CodeBadNonce},
		{name: "text content type", ctype: "text/plain", body: ok, code: CodeInvalidParam, contains: "Content-Type"},
		{name: "json with charset", ctype: "application/json; charset=utf-8", body: ok, code: 0},
		{name: "not json", body: "{", code: CodeInvalidParam},
		{name: "unknown top-level field", body: `{"account_id":1001,"user_action_set_id":2002,"actions":[],"x":1}`, code: CodeInvalidParam},
		{name: "wrong account", body: body(account+1, set, act("x", "APPLY")), code: CodeOutOfAuthority, contains: "account_id"},
		{name: "wrong set", body: body(account, set+1, act("x", "APPLY")), code: CodeOutOfAuthority, contains: "user_action_set_id"},
		{name: "no account", body: `{"user_action_set_id":2002,"actions":[]}`, code: CodeInvalidParam, contains: "account_id"},
		{name: "no actions", body: body(account, set), code: CodeInvalidParam, contains: "actions"},
		{name: "50 actions", body: body(account, set, many(50)...), code: 0},
		{name: "51 actions", body: body(account, set, many(51)...), code: CodeInvalidParam, contains: "at most 50"},
		{name: "over 50 KiB", body: body(account, set, big), code: CodeBodyTooLarge},
		{name: "unknown action_type", body: body(account, set, act("a", "APPLY"), act("b", "PURCHASE")), code: CodeInvalidParam, contains: "actions[1].action_type"},
		{name: "missing action_time", body: body(account, set, noTime), code: CodeInvalidParam, contains: "actions[0].action_time"},
		{name: "future action_time", body: body(account, set, future), code: CodeInvalidParam, contains: "actions[0].action_time"},
		{name: "no user", body: body(account, set, act("a", "APPLY"), noUser), code: CodeInvalidParam, contains: "actions[1].user_id"},
		{name: "internal track field", body: body(account, set, tracked), code: CodeInvalidParam, contains: "actions[0].track"},
		{name: "outer_action_id with a hyphen", body: body(account, set, act("ok_1", "APPLY"), act("loan-app-000123", "APPLY")), code: CodeInvalidParam, contains: "actions[1].outer_action_id"},
		{name: "outer_action_id with a dot", body: body(account, set, act("a.b", "APPLY")), code: CodeInvalidParam, contains: "actions[0].outer_action_id"},
		{name: "outer_action_id empty", body: body(account, set, act("", "APPLY")), code: CodeInvalidParam, contains: "actions[0].outer_action_id"},
		{name: "outer_action_id 256", body: body(account, set, act(strings.Repeat("a", 256), "APPLY")), code: CodeInvalidParam, contains: "actions[0].outer_action_id"},
		{name: "outer_action_id 255", body: body(account, set, act(strings.Repeat("a", 255), "APPLY")), code: 0},
		{name: "openid with app id", body: body(account, set, withUser(act("w", "APPLY"), "wechat_openid", "o1", "wechat_app_id", "wx1")), code: 0},
		{name: "openid without app id", body: body(account, set, withUser(act("w", "APPLY"), "wechat_openid", "o1")), code: CodeInvalidParam, contains: "actions[0].user_id.wechat_app_id"},
		{name: "unionid without app id", body: body(account, set, withUser(act("w", "APPLY"), "wechat_unionid", "u1")), code: 0},
		{name: "openid 64", body: body(account, set, withUser(act("w", "APPLY"), "wechat_openid", strings.Repeat("o", 64), "wechat_app_id", "wx1")), code: 0},
		{name: "openid 65", body: body(account, set, withUser(act("w", "APPLY"), "wechat_openid", strings.Repeat("o", 65), "wechat_app_id", "wx1")), code: CodeInvalidParam, contains: "actions[0].user_id.wechat_openid"},
		{name: "unionid 65", body: body(account, set, withUser(act("w", "APPLY"), "wechat_unionid", strings.Repeat("u", 65))), code: CodeInvalidParam, contains: "actions[0].user_id.wechat_unionid"},
		{name: "unionid empty", body: body(account, set, withUser(act("w", "APPLY"), "wechat_unionid", "")), code: CodeInvalidParam, contains: "actions[0].user_id.wechat_unionid"},
		{name: "click_id 64", body: body(account, set, withClick(act("c", "APPLY"), strings.Repeat("c", 64))), code: 0},
		{name: "click_id 65", body: body(account, set, withClick(act("c", "APPLY"), strings.Repeat("c", 65))), code: CodeInvalidParam, contains: "actions[0].trace.click_id"},
		{name: "every v3 user_id form", body: body(account, set, set1(act("v", "APPLY"), "user_id", map[string]any{
			"hash_imei": "a", "md5_sha256_imei": "b", "hash_idfa": "c", "md5_sha256_idfa": "d", "hash_phone": "e",
			"sha256_phone": "f", "hash_android_id": "g", "hash_oaid": "h", "md5_sha256_oaid": "i", "wechat_openid": "j",
			"wechat_unionid": "k", "wechat_app_id": "l", "caid": "m", "caid_version": 20230330})), code: 0},
		{name: "unknown user_id key", body: body(account, set, set1(act("v", "APPLY"), "user_id", map[string]any{"hash_phone": "e", "imei": "x"})), code: CodeInvalidParam, contains: "actions[0].user_id.imei"},
		{name: "caid_version a string", body: body(account, set, set1(act("v", "APPLY"), "user_id", map[string]any{"caid": "m", "caid_version": "2023"})), code: CodeInvalidParam, contains: "actions[0].user_id.caid_version"},
		{name: "hash_android_id a number", body: body(account, set, set1(act("v", "APPLY"), "user_id", map[string]any{"hash_android_id": 5})), code: CodeInvalidParam, contains: "actions[0].user_id.hash_android_id"},
		{name: "app id is no user", body: body(account, set, set1(act("v", "APPLY"), "user_id", map[string]any{"wechat_app_id": "wx1"})), code: CodeInvalidParam, contains: "actions[0].user_id"},
		{name: "optional fields", body: body(account, set, set1(set1(set1(act("o", "APPLY"), "channel", "TENCENT"), "custom_action", "Speak_frequently"),
			"product_inform", map[string]any{"content_type": "LOAN", "product_catalog_id": "c", "product_id": []string{"p"}, "category_path": []string{"a", "b"}})), code: 0},
		{name: "unknown channel", body: body(account, set, set1(act("o", "APPLY"), "channel", "WEIBO")), code: CodeInvalidParam, contains: "actions[0].channel"},
		{name: "unknown content_type", body: body(account, set, set1(act("o", "APPLY"), "product_inform", map[string]any{"content_type": "MORTGAGE"})), code: CodeInvalidParam, contains: "actions[0].product_inform.content_type"},
		{name: "unknown product_inform key", body: body(account, set, set1(act("o", "APPLY"), "product_inform", map[string]any{"price": 1})), code: CodeInvalidParam, contains: "actions[0].product_inform"},
		{name: "ext_info", body: body(account, set, set1(act("o", "APPLY"), "ext_info", map[string]any{"ip": "1.2.3.4"})), code: CodeInvalidParam, contains: "actions[0].ext_info"},
		{name: "wrong type", body: body(account, set, map[string]any{"action_time": "now", "action_type": "APPLY"}), code: CodeInvalidParam, contains: "actions[0].action_time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			q := h.query()
			if tc.query != nil {
				q = tc.query(h)
			}
			method, path, ctype := "POST", Path, "application/json"
			if tc.method != "" {
				method = tc.method
			}
			if tc.path != "" {
				path = tc.path
			}
			if tc.ctype != "" {
				ctype = tc.ctype
			}
			a := h.post(t, method, path, q, ctype, tc.body)
			wantStatus := tc.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			if a.Status != wantStatus {
				t.Fatalf("status %d, want %d", a.Status, wantStatus)
			}
			if wantStatus != http.StatusOK {
				if n := len(h.srv.Delivered()); n != 0 {
					t.Fatalf("recorded %d actions on a rejected request", n)
				}
				return
			}
			if a.Code != tc.code {
				t.Fatalf("code %d (%s), want %d", a.Code, a.Message, tc.code)
			}
			if !strings.Contains(a.Message, tc.contains) {
				t.Fatalf("message %q does not name %q", a.Message, tc.contains)
			}
			if tc.code != 0 {
				if !strings.Contains(a.Message, "trace_id: ") {
					t.Fatalf("message %q has no trace_id", a.Message)
				}
				if n := len(h.srv.Delivered()); n != 0 {
					t.Fatalf("recorded %d actions on a rejected request", n)
				}
			}
		})
	}
}

func TestNonceReuse(t *testing.T) {
	h := newHarness(t)
	q := h.query()
	b := body(account, set, act("x", "APPLY"))
	if a := h.post(t, "POST", Path, q, "application/json", b); a.Code != 0 {
		t.Fatalf("first: %d %s", a.Code, a.Message)
	}
	if a := h.post(t, "POST", Path, q, "application/json", b); a.Code != CodeNonceReused {
		t.Fatalf("reuse: %d %s", a.Code, a.Message)
	}
	if n := h.srv.DeliveryCount("x"); n != 1 {
		t.Fatalf("DeliveryCount = %d after a replay, want 1", n)
	}
}

func TestFaults(t *testing.T) {
	b := body(account, set, act("x", "APPLY"), act("bad", "APPLY"))
	tests := []struct {
		name      string
		faults    Faults
		status    int
		code      int
		recorded  int
		hdr       string
		truncated bool
	}{
		{name: "none", code: 0, recorded: 2},
		{name: "token expired", faults: Faults{TokenExpired: true}, code: CodeTokenExpired},
		{name: "throttle", faults: Faults{Throttle: true, RetryAfter: 30 * time.Second}, code: CodeThrottled, hdr: "30"},
		{name: "11016 per second", faults: Faults{ThrottleCode: CodeSecondQuota}, code: CodeSecondQuota},
		{name: "11017 per minute", faults: Faults{ThrottleCode: CodeMinuteQuota, RetryAfter: 7 * time.Second}, code: CodeMinuteQuota, hdr: "7"},
		{name: "11018 per day", faults: Faults{ThrottleCode: CodeDayQuota}, code: CodeDayQuota},
		{name: "11019 too frequent", faults: Faults{ThrottleCode: CodeTooFrequent, RetryAfter: time.Second}, code: CodeTooFrequent, hdr: "1"},
		{name: "11008 by code", faults: Faults{ThrottleCode: CodeThrottled}, code: CodeThrottled},
		{name: "error rate", faults: Faults{ErrorRate: 1}, code: CodeSystemError},
		{name: "error code", faults: Faults{ErrorRate: 1, ErrorCode: 10001}, code: 10001},
		{name: "http status", faults: Faults{HTTPStatus: 503, RetryAfter: 5 * time.Second}, status: 503, hdr: "5"},
		{name: "bad action", faults: Faults{BadActionIDs: []string{"bad"}}, code: CodeInvalidParam},
		{name: "truncate", faults: Faults{Truncate: true}, truncated: true, recorded: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.SetFaults(tc.faults)
			req, _ := http.NewRequest("POST", h.ts.URL+Path+"?"+h.query().Encode(), strings.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			want := tc.status
			if want == 0 {
				want = 200
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.hdr {
				t.Fatalf("Retry-After %q, want %q", got, tc.hdr)
			}
			var a answer
			err = json.Unmarshal(raw, &a)
			switch {
			case tc.truncated:
				if err == nil {
					t.Fatalf("answer %q parsed; want it cut short", raw)
				}
			case want == 200:
				if err != nil || a.Code != tc.code {
					t.Fatalf("answer %q (%v), want code %d", raw, err, tc.code)
				}
			}
			if n := len(h.srv.Delivered()); n != tc.recorded {
				t.Fatalf("recorded %d, want %d", n, tc.recorded)
			}
		})
	}
}

func TestOutageClosesConnection(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(Faults{Outage: true})
	req, _ := http.NewRequest("POST", h.ts.URL+Path+"?"+h.query().Encode(), strings.NewReader(body(account, set, act("x", "APPLY"))))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := h.ts.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %d, want a closed connection", resp.StatusCode)
	}
	if h.srv.Requests() != 1 {
		t.Fatalf("requests = %d", h.srv.Requests())
	}
}

func TestLatencyAndClientGivingUp(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(Faults{Latency: 300 * time.Millisecond})
	c := &http.Client{Timeout: 50 * time.Millisecond}
	req, _ := http.NewRequest("POST", h.ts.URL+Path+"?"+h.query().Encode(), strings.NewReader(body(account, set, act("x", "APPLY"))))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("want a client time-out")
	}
	if n := len(h.srv.Delivered()); n != 0 {
		t.Fatalf("recorded %d after the client gave up", n)
	}
}

func TestQuotaPerMinute(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.Unix())
	srv := New(Options{AccessToken: token, AccountID: account, UserActionSetID: set,
		Clock: func() time.Time { return time.Unix(clock.Load(), 0) }})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	h := &harness{srv: srv, ts: ts}
	srv.SetFaults(Faults{QuotaPerMinute: 2})
	b := body(account, set, act("x", "APPLY"))
	send := func() int {
		q := h.query()
		q.Set("timestamp", strconv.FormatInt(clock.Load(), 10))
		return h.post(t, "POST", Path, q, "application/json", b).Code
	}
	got := []int{send(), send(), send()}
	clock.Add(60) // next minute: a fresh quota
	got = append(got, send())
	want := []int{0, 0, CodeMinuteQuota, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
}

func TestQuotaPerSecond(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	srv := New(Options{AccessToken: token, AccountID: account, UserActionSetID: set,
		Clock: func() time.Time { return time.UnixMilli(clock.Load()) }})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	h := &harness{srv: srv, ts: ts}
	srv.SetFaults(Faults{QuotaPerSecond: 2})
	b := body(account, set, act("x", "APPLY"))
	send := func() int {
		q := h.query()
		q.Set("timestamp", strconv.FormatInt(clock.Load()/1000, 10))
		return h.post(t, "POST", Path, q, "application/json", b).Code
	}
	got := []int{send(), send(), send()}
	clock.Add(999) // the same clock second still
	got = append(got, send())
	clock.Add(1) // the next second: a fresh quota
	got = append(got, send())
	want := []int{0, 0, CodeSecondQuota, CodeSecondQuota, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
}

func TestErrorRateIsDeterministic(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(Faults{ErrorRate: 0.25})
	b := body(account, set, act("x", "APPLY"))
	fails := 0
	for i := 0; i < 8; i++ {
		if h.post(t, "POST", Path, h.query(), "application/json", b).Code == CodeSystemError {
			fails++
		}
	}
	if fails != 2 {
		t.Fatalf("%d of 8 failed at rate 0.25, want 2", fails)
	}
}

func TestControlEndpoints(t *testing.T) {
	h := newHarness(t)
	resp, err := http.Post(h.ts.URL+"/_sim/faults", "application/json",
		strings.NewReader(`{"throttle":true,"latency":"5ms","bad_action_ids":["z"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /_sim/faults: %d", resp.StatusCode)
	}
	a := h.post(t, "POST", Path, h.query(), "application/json", body(account, set, act("x", "APPLY")))
	if a.Code != CodeThrottled {
		t.Fatalf("code %d after setting throttle over HTTP", a.Code)
	}
	resp, err = http.Get(h.ts.URL + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Requests != 1 || !st.Faults.Throttle || st.Faults.Latency != 5*time.Millisecond || len(st.Faults.BadActionIDs) != 1 {
		t.Fatalf("stats %+v", st)
	}
	resp2, _ := http.Post(h.ts.URL+"/_sim/faults", "application/json", strings.NewReader(`{"latency":true}`))
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad faults accepted: %d", resp2.StatusCode)
	}
}

func TestNonceForgottenAfterWindow(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.Unix())
	srv := New(Options{AccessToken: token, AccountID: account, UserActionSetID: set,
		Clock: func() time.Time { return time.Unix(clock.Load(), 0) }})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	h := &harness{srv: srv, ts: ts}
	b := body(account, set, act("x", "APPLY"))
	send := func(nonce string) int {
		q := h.query()
		q.Set("timestamp", strconv.FormatInt(clock.Load(), 10))
		q.Set("nonce", nonce)
		return h.post(t, "POST", Path, q, "application/json", b).Code
	}
	got := []int{send("same")}
	clock.Add(200)
	got = append(got, send("same")) // inside the window: a replay
	clock.Add(700)
	got = append(got, send("same")) // the old request could no longer pass the timestamp check
	if want := []int{0, CodeNonceReused, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
}

// TestWebDataSourceRequiresURL: a WEB data source takes an action only
// with its page url; any data source takes a url only as an absolute
// http(s) URL.
func TestWebDataSourceRequiresURL(t *testing.T) {
	for _, tc := range []struct {
		name, source, url string // url "" leaves it out
		code              int
	}{
		{"web with url", "WEB", "https://bank.example/loan?x=1", 0},
		{"web without url", "WEB", "", CodeInvalidParam},
		{"web with a relative url", "WEB", "/loan", CodeInvalidParam},
		{"web with ftp", "WEB", "ftp://bank.example/loan", CodeInvalidParam},
		{"android without url", "ANDROID", "", 0},
		{"unset without url", "", "", 0},
		{"unset with url", "", "http://h5.bank.example/a", 0},
		{"unset with a bad url", "", "bank.example/a", CodeInvalidParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{srv: New(Options{AccessToken: token, AccountID: account, UserActionSetID: set, DataSourceType: tc.source,
				Clock: func() time.Time { return t0 }})}
			h.ts = httptest.NewServer(h.srv)
			defer h.ts.Close()
			good := act("w0", "REGISTER")
			good["url"] = "https://bank.example/"
			a := act("w1", "REGISTER")
			if tc.url != "" {
				a["url"] = tc.url
			}
			got := h.post(t, "POST", Path, h.query(), "application/json", body(account, set, good, a))
			if got.Code != tc.code || tc.code != 0 && !strings.Contains(got.Message, "actions[1].url") {
				t.Fatalf("code %d %q, want %d naming actions[1].url", got.Code, got.Message, tc.code)
			}
		})
	}
}
