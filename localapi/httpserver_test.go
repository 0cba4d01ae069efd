package localapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/decision"
)

// fixedDecider decides everything "review" and records nothing: the
// transports are under test here, not the engine.
type fixedDecider struct{}

func (fixedDecider) Decide(_ context.Context, req *decision.Request) (*decision.Result, error) {
	return &decision.Result{DecisionID: "d-" + req.AccountID, Result: "review", Score: 42, PolicyVersion: "t1"}, nil
}

func (fixedDecider) Get(string) (*decision.Result, bool, error) { return nil, false, nil }

const decisionBody = `{"session_id":"s-1","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
	`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":12}`

// TestHotRoutes: the two routes served natively, through the defences, as
// the agent serves them (each has one implementation: there is no other
// server to compare with).
func TestHotRoutes(t *testing.T) {
	const token = "0123456789abcdef-token"
	auth := []string{"Authorization", "Bearer " + token}
	tests := []struct {
		name, method, path, ctype, body string
		hdr                             []string
		status                          int
		code                            string // the error's code, "" for an answer
	}{
		{"actions accepted", "POST", "/v1/actions", "application/json", string(body(act("a", ""), act("b", ""))), auth, 202, ""},
		{"actions duplicates", "POST", "/v1/actions", "application/json", string(body(act("b", ""), act("c", ""))), auth, 202, ""},
		{"actions invalid", "POST", "/v1/actions", "application/json", string(body(act("x", `,"action_param":{"credit_level":9}`))), auth, 400, "invalid_request"},
		{"actions malformed", "POST", "/v1/actions", "application/json", `{"actions":[}`, auth, 400, "invalid_json"},
		{"actions not json", "POST", "/v1/actions", "text/plain", string(body(act("y", ""))), auth, 415, "unsupported_media_type"},
		{"actions too large", "POST", "/v1/actions", "application/json", strings.Repeat(" ", 1<<20+1), auth, 413, "body_too_large"},
		{"actions no token", "POST", "/v1/actions", "application/json", string(body(act("z", ""))), nil, 401, "unauthorized"},
		{"actions wrong token", "POST", "/v1/actions", "application/json", string(body(act("z", ""))), []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"actions browser", "POST", "/v1/actions", "application/json", string(body(act("z", ""))), append([]string{"Origin", "https://evil.example"}, auth...), 403, "forbidden"},
		{"actions cross-site", "POST", "/v1/actions", "application/json", string(body(act("z", ""))), append([]string{"Sec-Fetch-Site", "cross-site"}, auth...), 403, "forbidden"},
		{"actions rebinding", "POST", "/v1/actions", "application/json", string(body(act("z", ""))), append([]string{"Host", "evil.example:8470"}, auth...), 403, "forbidden"},
		{"actions allowed host", "POST", "/v1/actions", "application/json", string(body(act("h", ""))), append([]string{"Host", "agent.internal:8470"}, auth...), 202, ""},
		{"actions request id", "POST", "/v1/actions", "application/json", string(body(act("d", ""))), append([]string{"X-Request-Id", "app-req-17"}, auth...), 202, ""},
		{"actions wrong method", "GET", "/v1/actions", "", "", auth, 405, "method_not_allowed"},
		{"decision", "POST", "/v1/decisions", "application/json", decisionBody, auth, 200, ""},
		{"decision invalid", "POST", "/v1/decisions", "application/json", `{"decision_event":"withdraw"}`, auth, 400, "invalid_request"},
		{"decision malformed", "POST", "/v1/decisions", "application/json", `{"account_id":`, auth, 400, "invalid_json"},
		{"decision not json", "POST", "/v1/decisions", "application/xml", decisionBody, auth, 415, "unsupported_media_type"},
		{"decision no token", "POST", "/v1/decisions", "application/json", decisionBody, nil, 401, "unauthorized"},
		{"decision wrong method", "PUT", "/v1/decisions", "application/json", decisionBody, auth, 405, "method_not_allowed"},
		{"healthz", "GET", "/healthz", "", "", nil, 200, ""},
		{"not found", "GET", "/v2/nothing", "", "", auth, 404, "not_found"},
	}
	h := newHarness(t, func(c *Config) {
		c.AuthToken = token
		c.AllowedHosts = []string{"agent.internal"}
		c.Decider = fixedDecider{}
		c.DefaultChannel = "app"
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, b := h.do(t, tt.method, tt.path, tt.ctype, []byte(tt.body), tt.hdr...)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.status, b)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			var e ErrorBody
			_ = json.Unmarshal(b, &e)
			if e.Error.Code != tt.code {
				t.Errorf("error code %q, want %q: %s", e.Error.Code, tt.code, b)
			}
			if tt.status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			if hot := tt.method == "POST" && (tt.path == "/v1/actions" || tt.path == "/v1/decisions"); hot && r.Header.Get("X-Request-Id") == "" &&
				tt.status != http.StatusUnauthorized && tt.status != http.StatusForbidden {
				t.Errorf("no X-Request-Id")
			}
			if rid := headerOf(tt.hdr, "X-Request-Id"); rid != "" && r.Header.Get("X-Request-Id") != rid {
				t.Errorf("X-Request-Id %q not echoed: %q", rid, r.Header.Get("X-Request-Id"))
			}
			if r.Header.Get("Server") != "" {
				t.Errorf("Server header %q: the agent does not name its HTTP library", r.Header.Get("Server"))
			}
		})
	}
	if d := h.sp.Stats()["tencent"].Depth; d != 5 {
		t.Fatalf("queued %d, want 5 (a, b, c, h, d)", d)
	}
}

func headerOf(hdr []string, key string) string {
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == key {
			return hdr[i+1]
		}
	}
	return ""
}

// TestTooLargeBodyIsAnswered: fasthttp refuses a body by its
// Content-Length before reading it; the caller must still read the 413
// rather than a connection reset (see lingerConn). Bodies well past
// the cap, as a misbehaving app would send, every time.
func TestTooLargeBodyIsAnswered(t *testing.T) {
	h := newHarness(t)
	for _, n := range []int{1<<20 + 1, 2 << 20, lingerBytes, 32 << 20} {
		big := bytes.Repeat([]byte("x"), n)
		for i := range 5 {
			resp, b := h.do(t, "POST", "/v1/actions", "application/json", big)
			if resp.StatusCode != 413 || !strings.Contains(string(b), "body_too_large") {
				t.Fatalf("%d bytes, try %d: %d %s", n, i, resp.StatusCode, b)
			}
		}
	}
	if d := h.sp.Stats()["tencent"].Depth; d != 0 {
		t.Fatalf("stored %d", d)
	}
}

// TestMalformedHTTP: what fasthttp cannot read gets the API's JSON error
// shape too, and nothing reaches the log but masked text.
func TestMalformedHTTP(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, raw string
		status    int
		code      string
	}{
		{"headers too large", "POST /v1/actions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n", 431, "headers_too_large"},
		{"not http", "13800138000 " + phone + " \x00\x01\r\n\r\n", 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), `"code":"`+tt.code+`"`) {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
		})
	}
	// The line about the connection that was not HTTP comes after its
	// answer.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.logs.String(), "error when reading request headers") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "error when reading request headers") {
		t.Fatalf("no log line about the connection that was not HTTP:\n%s", logs)
	}
	if strings.Contains(logs, phone) || strings.Contains(logs, "\\x00") {
		t.Fatalf("caller's bytes in the log:\n%s", logs)
	}
}

// TestShutdownFinishesInFlight: Shutdown waits for a request whose batch
// is being committed, and the caller gets its 202.
func TestShutdownFinishesInFlight(t *testing.T) {
	block := make(chan struct{})
	st := &slowStore{Store: newSpool(t, 0), block: block}
	api := New(Config{Store: st})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go api.Serve(ln)
	got := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/actions", "application/json", bytes.NewReader(body(act("a", ""))))
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	for st.waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	down := make(chan error, 1)
	go func() { down <- api.Shutdown(context.Background()) }()
	select {
	case err := <-down:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting connections while shutting down")
	}
	close(block)
	if code := <-got; code != 202 {
		t.Fatalf("request in flight got %d, want 202", code)
	}
	if err := <-down; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := st.Stats()["tencent"].Depth; d != 1 {
		t.Fatalf("queued %d, want 1", d)
	}
}

func TestScrubQuoted(t *testing.T) {
	tests := []struct{ in, want string }{
		{`error when serving connection "127.0.0.1:8470"<->"127.0.0.1:5555": cannot find http request method in "{\"phone\":\"13800138000\"}"`,
			`error when serving connection "14 bytes"<->"14 bytes": cannot find http request method in "27 bytes"`},
		{`no quotes, card 6262320120123210`, `no quotes, card ************3210`},
		{`unterminated "Bearer secret-token`, `unterminated "…"`},
		{`escaped "a\"b" then 13800138000`, `escaped "4 bytes" then *******8000`},
	}
	for _, tt := range tests {
		if got := scrubQuoted(tt.in); got != tt.want {
			t.Errorf("scrubQuoted(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestBothFramingsRefused: a request with both Content-Length and
// Transfer-Encoding (in either order, any case, chunked or identity) is
// 400 bad_request, stores nothing, and the connection is closed: the
// bytes after it are never read as another request.
func TestBothFramingsRefused(t *testing.T) {
	h := newHarness(t)
	b := string(body(act("smuggled", "")))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(b), b)
	next := "POST /v1/actions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
		fmt.Sprint(len(body(act("hidden", "")))) + "\r\n\r\n" + string(body(act("hidden", "")))
	tests := []struct{ name, framing, body string }{
		{"length then chunked", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunked},
		{"chunked then length", "transfer-encoding: chunked\r\ncontent-length: 4\r\n", chunked},
		{"identity and length", fmt.Sprintf("Transfer-Encoding: identity\r\nContent-Length: %d\r\n", len(b)), b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			raw := "POST /v1/actions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + tt.framing + "\r\n" + tt.body + next
			if _, err := io.WriteString(c, raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || !strings.Contains(string(got), `"code":"bad_request"`) {
				t.Fatalf("got %d %s", resp.StatusCode, got)
			}
			if more, err := http.ReadResponse(br, nil); err == nil {
				t.Fatalf("a second answer on the same connection: %d", more.StatusCode)
			}
		})
	}
	if d := h.sp.Stats()["tencent"].Depth; d != 0 {
		t.Fatalf("stored %d", d)
	}
}
