package unionpay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

const (
	instID = "outpost_bank"
	appKey = "Pa55w0rd-FireEye"
	card   = "6262320120123210"
	certID = "411524198810280019"
	mobile = "13888888888"
)

// syncBuffer collects log output from concurrent writers.
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

type env struct {
	sim    *upsim.Server
	srv    *httptest.Server
	client *unionpay.Client
	logs   *syncBuffer
}

// shapes are both request shapes, for tests that hold in each.
var shapes = []unionpay.Shape{unionpay.ShapeTable, unionpay.ShapeSample}

// newEnv starts a simulator of opts.Shape and a client of the same shape
// pointed at it.
func newEnv(t *testing.T, opts upsim.Options, mod func(*unionpay.Config)) *env {
	t.Helper()
	opts.ID, opts.AppKey = instID, appKey
	sim := upsim.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	logs := &syncBuffer{}
	cfg := unionpay.Config{
		URL:       srv.URL + "/fireeye/creditScore",
		Shape:     opts.Shape,
		ID:        instID,
		AppKey:    appKey,
		Timeout:   time.Second,
		RetryWait: 5 * time.Millisecond,
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opts.Shape == unionpay.ShapeSample {
		cfg.ScoreURL = srv.URL + "/ares/ARESVerificationService/" + unionpay.PathSampleModelScore
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := unionpay.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sim.AddTransaction(unionpay.TransactionQuery{CardNo: card, TransDate: "20161201", TransAmount: 21200, CertID: certID})
	return &env{sim: sim, srv: srv, client: c, logs: logs}
}

func txQuery() unionpay.TransactionQuery {
	return unionpay.TransactionQuery{CardNo: card, TransDate: "20161201", TransAmount: 21200, CertID: certID, Mobile: mobile}
}

func scoreQuery() unionpay.ScoreQuery {
	return unionpay.ScoreQuery{CardNo: card, CertID: certID, Mobile: mobile}
}

// assertClean fails when a credential or personal field shows up in s.
func assertClean(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{appKey, card, certID, mobile} {
		if strings.Contains(s, secret) {
			t.Errorf("%s leaks %q: %s", what, secret, s)
		}
	}
}

func intp(n int) *int { return &n }

func TestClassification(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		faults   upsim.Faults
		tx       func(*unionpay.TransactionQuery)
		cfg      func(*unionpay.Config)
		closed   bool
		outcome  upstream.Outcome
		code     string
		match    bool
		score    int // -1: Predict
		retry    time.Duration
		requests int
		// tableOnly: the sample shape's transaction authentication sends
		// no credentials, so nothing can be wrong with them.
		tableOnly bool
	}{
		{name: "0000 match", kind: unionpay.KindTransactionAuth, outcome: upstream.Delivered, code: "0000", match: true, requests: 1},
		{name: "0000 data 0 (certid disagrees)", kind: unionpay.KindTransactionAuth, tx: func(q *unionpay.TransactionQuery) { q.CertID = "110101199001011234" },
			outcome: upstream.Delivered, code: "0000", match: false},
		{name: "0003 no such transaction is an answer", kind: unionpay.KindTransactionAuth, tx: func(q *unionpay.TransactionQuery) { q.TransAmount = 1 },
			outcome: upstream.Delivered, code: "0003", match: false},
		{name: "0000 score", kind: unionpay.KindModelScore, outcome: upstream.Delivered, code: "0000", score: -1, requests: 1},
		{name: "0003 for a score", kind: unionpay.KindModelScore, faults: upsim.Faults{Code: 3}, outcome: upstream.Permanent, code: "0003"},

		{name: "0001 not enabled", kind: unionpay.KindModelScore, faults: upsim.Faults{Code: 1}, outcome: upstream.Pause, code: "0001"},
		{name: "0001 unknown id", kind: unionpay.KindTransactionAuth, cfg: func(c *unionpay.Config) { c.ID = "someone" }, outcome: upstream.Pause, code: "0001", tableOnly: true},
		{name: "0001 unknown id (score)", kind: unionpay.KindModelScore, cfg: func(c *unionpay.Config) { c.ID = "someone" }, outcome: upstream.Pause, code: "0001"},
		{name: "0002 wrong password", kind: unionpay.KindTransactionAuth, faults: upsim.Faults{Code: 2}, outcome: upstream.Pause, code: "0002"},
		{name: "0002 wrong appKey", kind: unionpay.KindModelScore, cfg: func(c *unionpay.Config) { c.AppKey = "nope" }, outcome: upstream.Pause, code: "0002"},
		{name: "0004 processing error", kind: unionpay.KindModelScore, faults: upsim.Faults{Code: 4}, outcome: upstream.RetryLater, code: "0004", requests: 1},
		{name: "error rate 1 default 0004", kind: unionpay.KindTransactionAuth, faults: upsim.Faults{ErrorRate: 1}, outcome: upstream.RetryLater, code: "0004"},
		{name: "undocumented code", kind: unionpay.KindModelScore, faults: upsim.Faults{Code: 99}, outcome: upstream.RetryLater, code: "0099"},

		{name: "score above 1000", kind: unionpay.KindModelScore, faults: upsim.Faults{Data: intp(1200)}, outcome: upstream.RetryLater, code: "bad_answer"},
		{name: "score below 300", kind: unionpay.KindModelScore, faults: upsim.Faults{Data: intp(299)}, outcome: upstream.RetryLater, code: "bad_answer"},
		{name: "match data 2", kind: unionpay.KindTransactionAuth, faults: upsim.Faults{Data: intp(2)}, outcome: upstream.RetryLater, code: "bad_answer"},
		{name: "truncated", kind: unionpay.KindModelScore, faults: upsim.Faults{Truncate: true}, outcome: upstream.RetryLater, code: "bad_answer"},

		{name: "http 500 retried once", kind: unionpay.KindModelScore, faults: upsim.Faults{HTTPStatus: 500}, outcome: upstream.RetryLater, code: "http_500", requests: 2},
		{name: "http 503 Retry-After", kind: unionpay.KindTransactionAuth, faults: upsim.Faults{HTTPStatus: 503, RetryAfter: 5 * time.Second}, outcome: upstream.RetryLater, code: "http_503", retry: 5 * time.Second, requests: 1},
		{name: "http 429", kind: unionpay.KindModelScore, faults: upsim.Faults{HTTPStatus: 429, RetryAfter: 2 * time.Second}, outcome: upstream.RetryLater, code: "http_429", retry: 2 * time.Second},
		{name: "http 404", kind: unionpay.KindModelScore, faults: upsim.Faults{HTTPStatus: 404}, outcome: upstream.Pause, code: "http_404"},
		{name: "reset", kind: unionpay.KindTransactionAuth, faults: upsim.Faults{Outage: true}, outcome: upstream.RetryLater, code: "network", requests: 2},
		{name: "time-out", kind: unionpay.KindModelScore, faults: upsim.Faults{Latency: 300 * time.Millisecond},
			cfg: func(c *unionpay.Config) { c.Timeout = 50 * time.Millisecond; c.RetryMax = -1 }, outcome: upstream.RetryLater, code: "timeout", requests: 1},
		{name: "server down", kind: unionpay.KindTransactionAuth, closed: true, outcome: upstream.RetryLater, code: "network"},

		{name: "invalid query not sent", kind: unionpay.KindTransactionAuth, tx: func(q *unionpay.TransactionQuery) { q.TransDate = "2016-12-01" },
			outcome: upstream.Permanent, code: "invalid_query", requests: -1},
	}
	for _, shape := range shapes {
		for _, tt := range tests {
			if tt.tableOnly && shape != unionpay.ShapeTable {
				continue
			}
			t.Run(string(shape)+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, upsim.Options{Shape: shape}, tt.cfg)
				e.sim.SetFaults(tt.faults)
				if tt.closed {
					e.srv.Close()
				}
				var v upstream.Verdict
				if tt.kind == unionpay.KindTransactionAuth {
					q := txQuery()
					if tt.tx != nil {
						tt.tx(&q)
					}
					var match bool
					match, v = e.client.TransactionAuth(context.Background(), q)
					if match != tt.match {
						t.Errorf("match = %v, want %v", match, tt.match)
					}
				} else {
					var score int
					score, v = e.client.ModelScore(context.Background(), scoreQuery())
					want := 0
					if tt.score == -1 {
						want = upsim.Predict(card, certID, mobile)
					}
					if score != want {
						t.Errorf("score = %d, want %d", score, want)
					}
				}
				t.Logf("%s %s: %s", v.Outcome, v.Code, v.Message)
				if v.Outcome != tt.outcome || v.Code != tt.code {
					t.Fatalf("verdict = %s %q (%s), want %s %q", v.Outcome, v.Code, v.Message, tt.outcome, tt.code)
				}
				if v.RetryAfter != tt.retry || !v.PauseUntil.IsZero() {
					t.Errorf("RetryAfter %s PauseUntil %s", v.RetryAfter, v.PauseUntil)
				}
				if v.Message == "" {
					t.Errorf("empty message")
				}
				switch {
				case tt.requests > 0 && e.sim.Requests() != tt.requests:
					t.Errorf("sim saw %d requests, want %d", e.sim.Requests(), tt.requests)
				case tt.requests < 0 && e.sim.Requests() != 0:
					t.Errorf("sim saw %d requests, want none", e.sim.Requests())
				}
				assertClean(t, "verdict", v.Message)
				assertClean(t, "logs", e.logs.String())
			})
		}
	}
}

// TestCodeField runs both calls against every spelling of the code field.
func TestCodeField(t *testing.T) {
	for _, shape := range shapes {
		for _, field := range []string{upsim.FieldRespCd, upsim.FieldResp, upsim.FieldBoth} {
			t.Run(string(shape)+"/"+field, func(t *testing.T) {
				e := newEnv(t, upsim.Options{AuthCodeField: field, ScoreCodeField: field, Shape: shape}, nil)
				match, v := e.client.TransactionAuth(context.Background(), txQuery())
				if !match || v.Outcome != upstream.Delivered || v.Code != "0000" {
					t.Errorf("auth: %v %+v", match, v)
				}
				score, v := e.client.ModelScore(context.Background(), scoreQuery())
				if score != upsim.Predict(card, certID, mobile) || v.Outcome != upstream.Delivered {
					t.Errorf("score: %d %+v", score, v)
				}
				e.sim.SetFaults(upsim.Faults{Code: 2})
				if _, v := e.client.ModelScore(context.Background(), scoreQuery()); v.Code != "0002" {
					t.Errorf("error code under %s: %+v", field, v)
				}
			})
		}
	}
}

func TestSetScore(t *testing.T) {
	e := newEnv(t, upsim.Options{}, nil)
	e.sim.SetScore(card, 421)
	if score, v := e.client.ModelScore(context.Background(), scoreQuery()); score != 421 || v.Outcome != upstream.Delivered {
		t.Fatalf("%d %+v", score, v)
	}
	calls := e.sim.Received()
	if len(calls) != 1 || calls[0].Score == nil || calls[0].Score.CertID != certID || calls[0].Data != 421 || e.sim.Count(card) != 1 {
		t.Fatalf("received %+v", calls)
	}
}

func TestSend(t *testing.T) {
	e := newEnv(t, upsim.Options{}, nil)
	sp, err := scoreQuery().Payload()
	if err != nil {
		t.Fatal(err)
	}
	tp, err := txQuery().Payload()
	if err != nil {
		t.Fatal(err)
	}
	missing := txQuery()
	missing.TransAmount = 5
	mp, _ := missing.Payload()
	bad := unionpay.ScoreQuery{CardNo: card}
	bp, _ := bad.Payload()
	items := []upstream.Item{
		{ID: "score", Payload: sp},
		{ID: "auth", Payload: tp},
		{ID: "no-such-tx", Payload: mp},
		{ID: "incomplete", Payload: bp},
		{ID: "unknown-kind", Payload: json.RawMessage(`{"kind":"blacklist","query":{}}`)},
		{ID: "not-json", Payload: json.RawMessage(`{`)},
	}
	res := e.client.Send(context.Background(), items)
	want := []struct {
		outcome upstream.Outcome
		code    string
		answer  string
	}{
		{upstream.Delivered, "0000", `{"score":` + itoa(upsim.Predict(card, certID, mobile)) + `}`},
		{upstream.Delivered, "0000", `{"match":true}`},
		{upstream.Delivered, "0003", `{"match":false}`},
		{upstream.Permanent, "invalid_query", ``},
		{upstream.Permanent, "bad_payload", ``},
		{upstream.Permanent, "bad_payload", ``},
	}
	for i, w := range want {
		r := res[i]
		if r.ID != items[i].ID || r.Verdict.Outcome != w.outcome || r.Verdict.Code != w.code || string(r.Answer) != w.answer {
			t.Errorf("%s: %s %s %s, want %s %s %s", r.ID, r.Verdict.Outcome, r.Verdict.Code, r.Answer, w.outcome, w.code, w.answer)
		}
		assertClean(t, "verdict", r.Verdict.Message)
	}
	if e.sim.Requests() != 3 {
		t.Errorf("sim saw %d requests, want 3", e.sim.Requests())
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSendStopsEarlyOnPause(t *testing.T) {
	e := newEnv(t, upsim.Options{}, nil)
	e.sim.SetFaults(upsim.Faults{Code: 2})
	sp, _ := scoreQuery().Payload()
	tp, _ := txQuery().Payload()
	items := []upstream.Item{{ID: "a", Payload: sp}, {ID: "b", Payload: tp}, {ID: "c", Payload: sp}}
	res := e.client.Send(context.Background(), items)
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	first := res[0].Verdict
	if first.Outcome != upstream.Pause || first.Code != "0002" {
		t.Fatalf("first: %+v", first)
	}
	for _, r := range res[1:] {
		if r.Verdict != first || r.Answer != nil {
			t.Errorf("%s: %+v, want the first verdict", r.ID, r.Verdict)
		}
	}
	if e.sim.Requests() != 1 {
		t.Errorf("sim saw %d requests, want 1", e.sim.Requests())
	}
}

func TestSendStopsEarlyWhenDown(t *testing.T) {
	e := newEnv(t, upsim.Options{}, nil)
	e.srv.Close()
	sp, _ := scoreQuery().Payload()
	res := e.client.Send(context.Background(), []upstream.Item{{ID: "a", Payload: sp}, {ID: "b", Payload: sp}})
	for _, r := range res {
		if r.Verdict.Outcome != upstream.RetryLater || r.Verdict.Code != "network" {
			t.Errorf("%s: %+v", r.ID, r.Verdict)
		}
	}
}

// TestNoPersonalDataLeaks drives every path with debug logging and checks
// appKey, card, ID number and mobile are never in a verdict or a log line.
func TestNoPersonalDataLeaks(t *testing.T) {
	scenarios := []struct {
		name   string
		faults upsim.Faults
		closed bool
		cfg    func(*unionpay.Config)
	}{
		{name: "ok"},
		{name: "wrong appKey", cfg: func(c *unionpay.Config) { c.AppKey = appKey + "x" }},
		{name: "0004", faults: upsim.Faults{Code: 4}},
		{name: "bad answer", faults: upsim.Faults{Data: intp(5000)}},
		{name: "503", faults: upsim.Faults{HTTPStatus: 503}},
		{name: "truncated", faults: upsim.Faults{Truncate: true}},
		{name: "reset", faults: upsim.Faults{Outage: true}},
		{name: "timeout", faults: upsim.Faults{Latency: 200 * time.Millisecond}, cfg: func(c *unionpay.Config) { c.Timeout = 30 * time.Millisecond }},
		{name: "server down", closed: true},
	}
	for _, shape := range shapes {
		for _, sc := range scenarios {
			t.Run(string(shape)+"/"+sc.name, func(t *testing.T) {
				e := newEnv(t, upsim.Options{Shape: shape}, sc.cfg)
				e.sim.SetFaults(sc.faults)
				if sc.closed {
					e.srv.Close()
				}
				_, v1 := e.client.TransactionAuth(context.Background(), txQuery())
				_, v2 := e.client.ModelScore(context.Background(), scoreQuery())
				sp, _ := scoreQuery().Payload()
				res := e.client.Send(context.Background(), []upstream.Item{{ID: "x", Payload: sp}})
				for _, s := range []string{v1.Message, v2.Message, res[0].Verdict.Message, string(res[0].Answer), e.logs.String()} {
					assertClean(t, sc.name, s)
				}
				if !strings.Contains(e.logs.String(), unionpay.MaskCard(card)) {
					t.Errorf("logs should name the card masked")
				}
			})
		}
	}
}

func TestNewConfig(t *testing.T) {
	c, err := unionpay.New(unionpay.Config{})
	if err != nil || c.Configured() {
		t.Fatalf("empty config: %v %v", err, c.Configured())
	}
	if _, v := c.ModelScore(context.Background(), scoreQuery()); v.Code != "not_configured" || v.Outcome != upstream.Pause {
		t.Errorf("unconfigured: %+v", v)
	}
	for _, cfg := range []unionpay.Config{
		{URL: "::", ID: instID, AppKey: appKey},
		{URL: "https://x/y?z=1", ID: instID, AppKey: appKey},
		{ScoreURL: "https://x/y?z=1", ID: instID, AppKey: appKey},
		{ScoreURL: "/relative", ID: instID, AppKey: appKey, Shape: unionpay.ShapeSample},
		{Shape: "Sample", ID: instID, AppKey: appKey},
		{ID: instID},
		{AppKey: appKey},
	} {
		_, err := unionpay.New(cfg)
		if err == nil {
			t.Errorf("accepted URL %q ScoreURL %q shape %q", cfg.URL, cfg.ScoreURL, cfg.Shape)
			continue
		}
		assertClean(t, "New error", err.Error())
	}
}
