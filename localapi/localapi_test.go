package localapi

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

const phone = "13800138000"

func newSpool(t *testing.T, maxBytes int64) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), Queues: []string{"tencent", "tongdun", "unionpay"}, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	return sp
}

type harness struct {
	url  string
	sp   *spool.Spool
	logs *logBuffer
	api  *Server
}

func newHarness(t *testing.T, mod ...func(*Config)) *harness {
	t.Helper()
	h := &harness{sp: newSpool(t, 0), logs: &logBuffer{}}
	cfg := Config{Store: h.sp, Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range mod {
		f(&cfg)
	}
	if cfg.Store == nil {
		cfg.Store = h.sp
	}
	h.api = New(cfg)
	h.url = serve(t, h.api)
	return h
}

// logBuffer is the API's log in a test. fasthttp logs a connection it
// could not serve after it has answered, so the log is written while the
// test reads it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve serves api as the agent does, on a loopback port, until the test
// ends; it returns the base URL.
func serve(t *testing.T, api *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := api.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func (h *harness) do(t *testing.T, method, path, ctype string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func act(id string, extra string) string {
	return fmt.Sprintf(`{"id":%q,"track":"personal_loan","action_type":"CREDIT","action_time":%d,"user_id":{"phone":%q}%s}`,
		id, time.Now().Unix(), phone, extra)
}

func body(acts ...string) []byte {
	return []byte(`{"actions":[` + strings.Join(acts, ",") + `]}`)
}

func TestPostActions(t *testing.T) {
	h := newHarness(t)
	resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("a", ""), act("b", `,"action_param":{"credit_level":2}`)))
	if resp.StatusCode != 202 || strings.TrimSpace(string(b)) != `{"accepted":2,"duplicates":0}` {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	resp, b = h.do(t, "POST", "/v1/actions", "application/json; charset=utf-8", body(act("b", ""), act("c", "")))
	if resp.StatusCode != 202 || strings.TrimSpace(string(b)) != `{"accepted":1,"duplicates":1}` {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	es, _ := h.sp.Lease(context.Background(), "tencent", 10, 1<<20)
	if len(es) != 3 {
		t.Fatalf("stored %d, want 3", len(es))
	}
	sum := md5.Sum([]byte(phone))
	var stored map[string]any
	json.Unmarshal(es[0].Payload, &stored)
	if uid := stored["user_id"].(map[string]any); uid["hash_phone"] != hex.EncodeToString(sum[:]) || uid["phone"] != nil {
		t.Fatalf("stored user_id = %v", uid)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no request id echoed")
	}
}

func TestRefusalsStoreNothing(t *testing.T) {
	big := bytes.Repeat([]byte(" "), 1<<20+1)
	tests := []struct {
		name   string
		ctype  string
		body   []byte
		status int
		code   string
		field  string
		hdr    []string
	}{
		{"invalid param", "application/json", body(act("a", ""), act("b", `,"action_param":{"credit_level":9}`)), 400, "invalid_request", "actions[1].action_param.credit_level", nil},
		{"malformed json", "application/json", []byte(`{"actions":[{"id":`), 400, "invalid_json", "body", nil},
		{"too large", "application/json", big, 413, "body_too_large", "", nil},
		{"form content type", "application/x-www-form-urlencoded", body(act("a", "")), 415, "unsupported_media_type", "", nil},
		{"no content type", "", body(act("a", "")), 415, "unsupported_media_type", "", nil},
		{"browser origin", "application/json", body(act("a", "")), 403, "forbidden", "", []string{"Origin", "https://evil.example"}},
		{"rebinding host", "application/json", body(act("a", "")), 403, "forbidden", "", []string{"Host", "evil.example:8470"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			resp, b := h.do(t, "POST", "/v1/actions", tt.ctype, tt.body, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			var eb ErrorBody
			if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code != tt.code || eb.Error.Message == "" {
				t.Fatalf("body %s, want code %s", b, tt.code)
			}
			if tt.field != "" && (len(eb.Error.Details) == 0 || eb.Error.Details[0].Field != tt.field) {
				t.Fatalf("details %+v, want field %s", eb.Error.Details, tt.field)
			}
			if d := h.sp.Stats()["tencent"].Depth; d != 0 {
				t.Fatalf("a refused request stored %d entries", d)
			}
			if strings.Contains(string(b), phone) || strings.Contains(h.logs.String(), phone) {
				t.Fatalf("phone number leaked: %s\n%s", b, h.logs)
			}
		})
	}
}

func TestMalformedJSONGivesOffset(t *testing.T) {
	h := newHarness(t)
	_, b := h.do(t, "POST", "/v1/actions", "application/json", []byte(`{"actions":[}`))
	if !strings.Contains(string(b), "byte offset 13") {
		t.Fatalf("no byte offset in %s", b)
	}
}

func TestSpoolFullIs503WithRetryAfter(t *testing.T) {
	sp := newSpool(t, 1500)
	h := newHarness(t, func(c *Config) { c.Store = sp })
	h.sp = sp
	var resp *http.Response
	var b []byte
	for i := 0; i < 50; i++ {
		resp, b = h.do(t, "POST", "/v1/actions", "application/json", body(act(fmt.Sprint("id", i), "")))
		if resp.StatusCode != 202 {
			break
		}
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "spool_full") {
		t.Fatalf("got %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
}

func TestAuthToken(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthToken = "0123456789abcdef-token" })
	if resp, _ := h.do(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz needs no token, got %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/v1/status", "", nil); resp.StatusCode != 401 {
		t.Fatalf("status without token: %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/v1/status", "", nil, "Authorization", "Bearer wrong"); resp.StatusCode != 401 {
		t.Fatalf("status with wrong token: %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/v1/status", "", nil, "Authorization", "Bearer 0123456789abcdef-token"); resp.StatusCode != 200 {
		t.Fatalf("status with token: %d", resp.StatusCode)
	}
}

func TestStatusAndReadiness(t *testing.T) {
	h := newHarness(t)
	h.do(t, "POST", "/v1/actions", "application/json", body(act("a", "")))
	resp, b := h.do(t, "GET", "/v1/status", "", nil)
	var st struct {
		Queues map[string]map[string]float64 `json:"queues"`
		Store  map[string]any                `json:"store"`
	}
	if err := json.Unmarshal(b, &st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	for _, q := range []string{"tencent", "tongdun", "unionpay"} {
		for _, k := range []string{"depth", "bytes", "oldest_age_seconds", "dead_letters"} {
			if _, ok := st.Queues[q][k]; !ok {
				t.Fatalf("status lacks queues.%s.%s: %s", q, k, b)
			}
		}
	}
	if st.Queues["tencent"]["depth"] != 1 || st.Queues["tencent"]["bytes"] <= 0 {
		t.Fatalf("tencent queue %v", st.Queues["tencent"])
	}
	if _, ok := st.Store["bytes"]; !ok {
		t.Fatalf("status lacks store.bytes: %s", b)
	}
	if resp, _ := h.do(t, "GET", "/readyz", "", nil); resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	h.sp.Close(context.Background())
	if resp, b := h.do(t, "GET", "/readyz", "", nil); resp.StatusCode != 503 {
		t.Fatalf("readyz on a closed store: %d %s", resp.StatusCode, b)
	}
	if resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("z", ""))); resp.StatusCode != 503 {
		t.Fatalf("post on a closed store: %d %s", resp.StatusCode, b)
	}
}

func TestConcurrencyCap(t *testing.T) {
	block := make(chan struct{})
	st := &slowStore{Store: newSpool(t, 0), block: block}
	h := newHarness(t, func(c *Config) { c.Store = st; c.MaxConcurrent = 1 })
	go func() {
		resp, err := http.Post(h.url+"/v1/actions", "application/json", bytes.NewReader(body(act("a", ""))))
		if err == nil {
			resp.Body.Close()
		}
	}()
	for st.waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	resp, b := h.do(t, "GET", "/v1/status", "", nil)
	close(block)
	if resp.StatusCode != 503 || !strings.Contains(string(b), "overloaded") {
		t.Fatalf("second request while one is served with cap 1: %d %s", resp.StatusCode, b)
	}
}

// TestWrongMethodIs405: a known path asked with a method it does not take
// is 405 with Allow, on the hot routes (fasthttp) and the others (the mux)
// alike; an unknown path is still 404. Both in the API's JSON shape.
func TestWrongMethodIs405(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Decider = fixedDecider{} })
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/actions", 405, "POST"},
		{"PUT", "/v1/actions", 405, "POST"},
		{"GET", "/v1/decisions", 405, "POST"},
		{"DELETE", "/v1/decisions/d-1", 405, "GET, HEAD"},
		{"POST", "/v1/status", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"GET", "/v1/deadletters/replay", 405, "POST"},
		{"POST", "/v1/deadletters", 405, "GET, HEAD"},
		{"GET", "/v2/nothing", 404, ""},
		{"POST", "/v1/nothing", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, b := h.do(t, tt.method, tt.path, "", nil)
			var eb ErrorBody
			if resp.StatusCode != tt.status || json.Unmarshal(b, &eb) != nil {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.status)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
			want := map[int]string{405: "method_not_allowed", 404: "not_found"}[tt.status]
			if eb.Error.Code != want || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("code %q (%s), want %q", eb.Error.Code, resp.Header.Get("Content-Type"), want)
			}
		})
	}
}

// TestOnlyApplicationJSON: every endpoint that takes a JSON body takes
// application/json (with parameters) and nothing else, +json types
// included.
func TestOnlyApplicationJSON(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Decider = fixedDecider{} })
	bodies := map[string]string{
		"/v1/actions":            string(body(act("ct-1", ""))),
		"/v1/decisions":          decisionBody,
		"/v1/deadletters/replay": `{"upstream":"tencent","all":true}`,
	}
	for path, b := range bodies {
		for _, ct := range []string{"application/evil+json", "application/vnd.api+json", "text/json", "application/jsonx"} {
			resp, got := h.do(t, "POST", path, ct, []byte(b))
			if resp.StatusCode != 415 || !strings.Contains(string(got), `"unsupported_media_type"`) {
				t.Errorf("%s as %q: %d %s", path, ct, resp.StatusCode, got)
			}
		}
		for _, ct := range []string{"application/json", "Application/JSON; charset=UTF-8"} {
			if resp, got := h.do(t, "POST", path, ct, []byte(b)); resp.StatusCode == 415 {
				t.Errorf("%s as %q: %d %s", path, ct, resp.StatusCode, got)
			}
		}
	}
	if d := h.sp.Stats()["tencent"].Depth; d != 1 {
		t.Fatalf("queued %d, want 1 (the application/json post only)", d)
	}
}

// TestReplayRefusesBadJSON: the replay body is one JSON object and nothing
// after it; every refusal is invalid_json naming the field at fault, and
// nothing is replayed.
func TestReplayRefusesBadJSON(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, body, field, reason string
	}{
		{"trailing object", `{"upstream":"tencent","all":true}{"upstream":"tongdun","all":true}`, "body", "byte offset 33"},
		{"trailing garbage", `{"upstream":"tencent","all":true} x`, "body", "byte offset 34"},
		{"syntax", `{"upstream":"tencent",}`, "body", "byte offset"},
		{"cut short", `{"upstream":"tencent"`, "body", "ends early"},
		{"empty", ``, "body", "empty"},
		{"unknown field", `{"upstream":"tencent","al":true}`, "al", "unknown field"},
		{"wrong type", `{"upstream":"tencent","ids":[1]}`, "ids", "must be a string"},
		{"not an object", `["tencent"]`, "body", "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := h.do(t, "POST", "/v1/deadletters/replay", "application/json", []byte(tt.body))
			var eb ErrorBody
			if resp.StatusCode != 400 || json.Unmarshal(b, &eb) != nil || eb.Error.Code != "invalid_json" {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			if len(eb.Error.Details) != 1 || eb.Error.Details[0].Field != tt.field || !strings.Contains(eb.Error.Details[0].Reason, tt.reason) {
				t.Fatalf("details %+v, want field %q, reason with %q", eb.Error.Details, tt.field, tt.reason)
			}
		})
	}
	// White space after the object is not trailing data.
	resp, b := h.do(t, "POST", "/v1/deadletters/replay", "application/json", []byte("{\"upstream\":\"tencent\",\"all\":true}\r\n\t "))
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"replayed":0}` {
		t.Fatalf("with trailing white space: %d %s", resp.StatusCode, b)
	}
}

// TestAdminToken: the admin routes (dead letters, decision records, pprof)
// open to the admin token only, never to the app token, under every
// combination of the two settings; the other routes take the app token or
// the admin token.
func TestAdminToken(t *testing.T) {
	const app, admin = "app-token-0123456789", "admin-token-0123456789"
	type route struct{ method, path, body string }
	adminRoutes := []route{
		{"GET", "/v1/deadletters?upstream=tencent", ""},
		{"POST", "/v1/deadletters/replay", `{"upstream":"tencent","all":true}`},
		{"GET", "/v1/decisions/d-1", ""},
		{"GET", "/debug/pprof/", ""},
		{"GET", "/v1/./deadletters?upstream=tencent", ""},
	}
	appRoutes := []route{
		{"POST", "/v1/actions", string(body(act("adm-1", "")))},
		{"POST", "/v1/decisions", decisionBody},
		{"GET", "/v1/status", ""},
		{"GET", "/readyz", ""},
	}
	type want struct{ none, wrong, app, admin int }
	open, needApp := want{200, 200, 200, 200}, want{401, 401, 200, 200}
	tests := []struct {
		name             string
		appTok, adminTok string
		adminW, appW     want
	}{
		{"no tokens", "", "", open, open},
		{"app token only", app, "", want{401, 401, 403, 401}, want{401, 401, 200, 401}},
		{"admin token only", "", admin, want{401, 401, 401, 200}, open},
		{"both", app, admin, want{401, 401, 403, 200}, needApp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.AuthToken, c.AdminToken, c.Decider, c.Pprof = tt.appTok, tt.adminTok, fixedDecider{}, true
				c.DefaultChannel = "app-channel"
			})
			check := func(r route, w want) {
				for _, c := range []struct {
					who  string
					hdr  []string
					code int
				}{
					{"no token", nil, w.none},
					{"wrong token", []string{"Authorization", "Bearer not-a-token-at-all"}, w.wrong},
					{"app token", []string{"Authorization", "Bearer " + app}, w.app},
					{"admin token", []string{"Authorization", "Bearer " + admin}, w.admin},
				} {
					resp, b := h.do(t, r.method, r.path, "application/json", []byte(r.body), c.hdr...)
					got := resp.StatusCode
					if got == 202 || got == 404 { // the route itself answered: admitted
						got = 200
					}
					if got != c.code {
						t.Errorf("%s %s with %s: %d %s, want %d", r.method, r.path, c.who, resp.StatusCode, b, c.code)
					}
					if got == 403 && !strings.Contains(string(b), `"admin_required"`) || got == 401 && !strings.Contains(string(b), `"unauthorized"`) {
						t.Errorf("%s %s with %s: %s", r.method, r.path, c.who, b)
					}
					if strings.Contains(string(b), app) || strings.Contains(string(b), admin) {
						t.Errorf("a token in the answer: %s", b)
					}
				}
			}
			for _, r := range adminRoutes {
				check(r, tt.adminW)
			}
			for _, r := range appRoutes {
				check(r, tt.appW)
			}
			if resp, _ := h.do(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
				t.Errorf("healthz: %d", resp.StatusCode)
			}
		})
	}
}

func TestHostName(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "127.0.0.1:8470", "localhost", "LocalHost:80", "[::1]:8470", "[::1]", "::1",
		"evil.example:8470", "evil.example", "host:", "", ":8470", "[fe80::1%25eth0]:80", "a:b:c", "[::1"} {
		want := h
		if hh, _, err := net.SplitHostPort(h); err == nil {
			want = hh
		}
		want = strings.Trim(want, "[]")
		if got := hostName(h); got != want {
			t.Errorf("hostName(%q) = %q, want %q (net.SplitHostPort's)", h, got, want)
		}
	}
}
