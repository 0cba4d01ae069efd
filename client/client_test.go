package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// script is a server that gives the answers it is told, in order, and
// records what it was sent.
type script struct {
	mu      sync.Mutex
	answers []answer
	got     []*http.Request
	bodies  []string
}

type answer struct {
	status     int
	retryAfter string
	body       string
	hangUp     bool // close the connection without answering
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got = append(s.got, r)
	s.bodies = append(s.bodies, string(b))
	a := s.answers[min(len(s.got), len(s.answers))-1]
	s.mu.Unlock()
	if a.hangUp {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "rid-1")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (s *script) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// newScripted is a Client of a scripted server whose waits are recorded,
// not slept; jitter is its maximum.
func newScripted(t *testing.T, cfg Config, answers ...answer) (*Client, *script, *[]time.Duration) {
	t.Helper()
	s := &script{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cfg.Addr = srv.URL
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }
	c.jitter = func(n int64) int64 { return n - 1 }
	return c, s, &waits
}

const (
	accepted  = `{"accepted":1,"duplicates":0}`
	spoolFull = `{"error":{"code":"spool_full","message":"the spool is full; nothing was stored; retry later"}}`
	overload  = `{"error":{"code":"overloaded","message":"too many concurrent requests"}}`
	invalid   = `{"error":{"code":"invalid_request","message":"1 problem(s)","details":[{"field":"actions[0].action_param.credit_level","reason":"must be 1, 2 or 3"}]}}`
	decided   = `{"decision_id":"d-1","result":"accept","score":0,"reasons":[],"policy_version":"p1","degraded":false,"signals":{}}`
)

var oneAction = []Action{{ID: "a-1", Track: "payment", ActionType: "REGISTER", ActionTime: time.Unix(1_800_000_000, 0), UserID: &UserID{HashPhone: "x"}}}

// TestRetryAfterHonoured: a 503 spool_full is tried again after its
// Retry-After (and at most a tenth more), with the same body.
func TestRetryAfterHonoured(t *testing.T) {
	c, s, waits := newScripted(t, Config{Token: "tok-0123456789abcdef"}, answer{status: 503, retryAfter: "30", body: spoolFull}, answer{status: 202, body: accepted})
	res, err := c.PostActions(context.Background(), oneAction)
	if err != nil || res.Accepted != 1 {
		t.Fatalf("PostActions: %+v %v", res, err)
	}
	if s.calls() != 2 || s.bodies[0] != s.bodies[1] {
		t.Fatalf("calls %d, bodies %q", s.calls(), s.bodies)
	}
	if len(*waits) != 1 || (*waits)[0] < 30*time.Second || (*waits)[0] > 33*time.Second {
		t.Errorf("waits %v, want one of 30-33s", *waits)
	}
	r := s.got[0]
	if r.Header.Get("Authorization") != "Bearer tok-0123456789abcdef" || r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/v1/actions" {
		t.Errorf("request: %s %s %v", r.Method, r.URL, r.Header)
	}
	var sent struct {
		Actions []struct {
			ActionTime string `json:"action_time"`
		}
	}
	json.Unmarshal([]byte(s.bodies[0]), &sent)
	if len(sent.Actions) != 1 {
		t.Fatalf("sent %s", s.bodies[0])
	}
	if at, err := time.Parse(time.RFC3339, sent.Actions[0].ActionTime); err != nil || at.Unix() != 1_800_000_000 {
		t.Errorf("action_time sent as %q (%v): the agent takes RFC 3339", sent.Actions[0].ActionTime, err)
	}
}

// TestBackoffCappedAndJittered: without Retry-After the waits double from
// 100 ms up to MaxBackoff, each a random part of its ceiling; after
// MaxAttempts the last error is returned.
func TestBackoffCappedAndJittered(t *testing.T) {
	c, s, waits := newScripted(t, Config{MaxAttempts: 6, MaxBackoff: 500 * time.Millisecond}, answer{status: 503, body: overload})
	_, err := c.PostActions(context.Background(), oneAction)
	var e *Error
	if !errors.As(err, &e) || e.Code != "overloaded" || !e.Retryable() || e.RequestID != "rid-1" {
		t.Fatalf("err %v", err)
	}
	if s.calls() != 6 {
		t.Errorf("calls %d, want 6", s.calls())
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}
	if len(*waits) != len(want) {
		t.Fatalf("waits %v, want %v", *waits, want)
	}
	for i, w := range want {
		if (*waits)[i] != w { // jitter is at its maximum here
			t.Errorf("wait %d: %v, want %v", i, (*waits)[i], w)
		}
	}
	c.jitter = func(int64) int64 { return 0 }
	*waits = nil
	c.PostActions(context.Background(), oneAction)
	for _, w := range *waits {
		if w <= 0 || w > time.Millisecond {
			t.Errorf("a wait with no jitter left: %v", w)
		}
	}
}

// TestNotRetried: invalid requests, decisions without an id, a
// Retry-After past the context's deadline or past MaxRetryAfter, and
// not_available are answered at once.
func TestNotRetried(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer answer
		call   func(context.Context, *Client) error
		code   string
	}{
		{"invalid", answer{status: 400, body: invalid}, func(ctx context.Context, c *Client) error { _, err := c.PostActions(ctx, oneAction); return err }, "invalid_request"},
		{"decision without id", answer{status: 503, retryAfter: "1", body: overload}, func(ctx context.Context, c *Client) error {
			_, err := c.Decide(ctx, &DecisionRequest{SessionID: "s"})
			return err
		}, "overloaded"},
		{"past the deadline", answer{status: 503, retryAfter: "30", body: spoolFull}, func(ctx context.Context, c *Client) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := c.PostActions(ctx, oneAction)
			return err
		}, "spool_full"},
		{"past MaxRetryAfter", answer{status: 503, retryAfter: "3600", body: spoolFull}, func(ctx context.Context, c *Client) error { _, err := c.PostActions(ctx, oneAction); return err }, "spool_full"},
		{"not available", answer{status: 503, body: `{"error":{"code":"not_available","message":"decisions are not enabled"}}`}, func(ctx context.Context, c *Client) error {
			_, err := c.Decide(ctx, &DecisionRequest{ID: "d-1"})
			return err
		}, "not_available"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s, waits := newScripted(t, Config{}, tt.answer, answer{status: 200, body: decided})
			err := tt.call(context.Background(), c)
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || s.calls() != 1 || len(*waits) != 0 {
				t.Fatalf("err %v, calls %d, waits %v", err, s.calls(), *waits)
			}
			if tt.code == "spool_full" && e.RetryAfter < 30*time.Second {
				t.Errorf("RetryAfter %v", e.RetryAfter)
			}
		})
	}
}

// TestDecisionWithIDRetried: a decision with an id is safe to repeat, so a
// dropped connection or a 503 is tried again.
func TestDecisionWithIDRetried(t *testing.T) {
	c, s, _ := newScripted(t, Config{}, answer{hangUp: true}, answer{status: 503, retryAfter: "1", body: overload}, answer{status: 200, body: decided})
	d, err := c.Decide(context.Background(), &DecisionRequest{ID: "d-1", SessionID: "s"})
	if err != nil || d.DecisionID != "d-1" || s.calls() != 3 {
		t.Fatalf("Decide: %+v %v after %d calls", d, err, s.calls())
	}
	c, s, _ = newScripted(t, Config{}, answer{hangUp: true}, answer{status: 200, body: decided})
	if _, err := c.Decide(context.Background(), &DecisionRequest{SessionID: "s"}); err == nil || s.calls() != 1 {
		t.Fatalf("a decision without an id after a dropped connection: %v after %d calls", err, s.calls())
	}
}

// TestContextEndsTheWait: a cancelled context stops the waiting at once.
func TestContextEndsTheWait(t *testing.T) {
	c, s, _ := newScripted(t, Config{}, answer{status: 503, retryAfter: "1", body: overload})
	c.sleep = sleepCtx
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.PostActions(ctx, oneAction)
	if err == nil || time.Since(start) > 900*time.Millisecond || s.calls() != 1 {
		t.Fatalf("err %v after %v and %d calls", err, time.Since(start), s.calls())
	}
}

// TestErrorMessage: the error names the call, the status, the code and the
// fields.
func TestErrorMessage(t *testing.T) {
	c, _, _ := newScripted(t, Config{}, answer{status: 400, body: invalid})
	_, err := c.PostActions(context.Background(), oneAction)
	want := "outpost: POST /v1/actions: 400 invalid_request: 1 problem(s) (actions[0].action_param.credit_level: must be 1, 2 or 3)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c, _, _ = newScripted(t, Config{}, answer{status: 502, body: "<html>bad gateway</html>"})
	_, err = c.Status(context.Background())
	if want := "outpost: GET /v1/status: 502 Bad Gateway"; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestAddrs: host:port, a URL and a unix socket.
func TestAddrs(t *testing.T) {
	for addr, want := range map[string]string{"": "http://127.0.0.1:8470", "localhost:9000": "http://localhost:9000", "http://127.0.0.1:8470/": "http://127.0.0.1:8470"} {
		c, err := New(Config{Addr: addr})
		if err != nil || c.Addr() != want {
			t.Errorf("Addr %q: %v %v, want %s", addr, c, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "no-port", "unix://"} {
		if _, err := New(Config{Addr: bad}); err == nil {
			t.Errorf("Addr %q accepted", bad)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets here: %v", err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"ok"}`)
	})}}
	srv.Start()
	defer srv.Close()
	c, err := New(Config{Addr: "unix://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Errorf("health over the unix socket: %v", err)
	}
}

// TestReadyNotReady: an agent that is up but refuses new work answers
// /readyz 503 with its reason, which Ready returns as a Readiness, not an
// error; an overloaded agent's 503 is an error.
func TestReadyNotReady(t *testing.T) {
	c, _, _ := newScripted(t, Config{MaxAttempts: 1}, answer{status: 503, body: `{"status":"not_ready","reason":"disk_low","error":"new actions get 503"}`})
	rd, err := c.Ready(context.Background())
	if err != nil || rd.Status != "not_ready" || rd.Reason != "disk_low" {
		t.Errorf("Ready: %+v %v", rd, err)
	}
	c, _, _ = newScripted(t, Config{MaxAttempts: 1}, answer{status: 503, retryAfter: "1", body: overload})
	if rd, err := c.Ready(context.Background()); err == nil {
		t.Errorf("Ready of an overloaded agent: %+v", rd)
	}
}
