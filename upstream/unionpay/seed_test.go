package unionpay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

// seedRequest reads one of the seed's sample requests from testdata/seed:
// "METHOD URL", then for a POST a blank line and the body.
func seedRequest(t *testing.T, name string) (method string, u *url.URL, body string) {
	t.Helper()
	b, err := os.ReadFile("testdata/seed/" + name)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(b), "\n\n")
	method, rawURL, ok := strings.Cut(head, " ")
	if u, err = url.Parse(rawURL); !ok || err != nil {
		t.Fatalf("%s: %q: %v", name, head, err)
	}
	return method, u, body
}

// seen is one request as it reached the server.
type seen struct {
	method, target, ctype, body string
}

// seedAnswers puts a simulator behind the seed's sample answers: each
// request goes to the simulator, which checks it and answers; when the
// path has a seed answer, the simulator's answer must mean the same, and
// the client gets the seed's bytes instead, so what the client parses is
// exactly what the seed prints.
type seedAnswers struct {
	t       *testing.T
	sim     http.Handler
	answers map[string][]byte // by path suffix

	mu   sync.Mutex
	seen []seen
}

func (s *seedAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.seen = append(s.seen, seen{r.Method, r.RequestURI, r.Header.Get("Content-Type"), string(body)})
	s.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	s.sim.ServeHTTP(rec, r)
	for suffix, answer := range s.answers {
		if !strings.HasSuffix(r.URL.Path, suffix) {
			continue
		}
		var got, want map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil || json.Unmarshal(answer, &want) != nil || !reflect.DeepEqual(got, want) {
			s.t.Errorf("%s: the simulator answered HTTP %d %s, the seed %s", suffix, rec.Code, rec.Body, answer)
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Write(answer)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSeedSampleReplay replays the seed's sample code through the client in
// the sample shape against the sample-shape simulator: the sample's values
// (card 6262320120123210, date 20161201, amount 21200, ID number
// 411524198810280019, mobile 13888888888, id/appKey username/password)
// give the sample's requests byte for byte, and the sample's two answers,
// {"respCd":"0000","data":1,...} and {"resp":"0000",...,"data":888}, read
// as "the transaction exists" and a score of 888.
func TestSeedSampleReplay(t *testing.T) {
	am, au, _ := seedRequest(t, "transaction-request.txt")
	sm, su, sbody := seedRequest(t, "score-request.txt")
	sim := upsim.New(upsim.Options{ID: "username", AppKey: "password", Shape: unionpay.ShapeSample})
	sim.AddTransaction(unionpay.TransactionQuery{CardNo: card, TransDate: "20161201", TransAmount: 21200, CertID: certID})
	sim.SetScore(card, 888)
	h := &seedAnswers{t: t, sim: sim, answers: map[string][]byte{
		"/" + unionpay.PathTransactionAuth:  readFile(t, "testdata/answers/seed-transaction-sample.json"),
		"/" + unionpay.PathSampleModelScore: readFile(t, "testdata/answers/seed-score-sample.json"),
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := unionpay.New(unionpay.Config{
		Shape:    unionpay.ShapeSample,
		URL:      srv.URL + strings.TrimSuffix(au.Path, "/"+unionpay.PathTransactionAuth),
		ScoreURL: srv.URL + su.Path,
		ID:       "username", AppKey: "password",
		Timeout: time.Second, RetryMax: -1,
	})
	if err != nil {
		t.Fatal(err)
	}

	amount := 21200.0 // the sample's "21200"
	match, v := c.TransactionAuth(context.Background(), unionpay.TransactionQuery{CardNo: "6262320120123210", TransDate: "20161201", TransAmount: amount, CertID: "411524198810280019"})
	if !match || v.Outcome != upstream.Delivered || v.Code != unionpay.CodeOK {
		t.Errorf("transaction: match %v, %s %s %s; want a match (data 1)", match, v.Outcome, v.Code, v.Message)
	}
	score, v := c.ModelScore(context.Background(), unionpay.ScoreQuery{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"})
	if score != 888 || v.Outcome != upstream.Delivered || v.Code != unionpay.CodeOK {
		t.Errorf("score: %d, %s %s %s; want 888", score, v.Outcome, v.Code, v.Message)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	want := []seen{
		{am, au.RequestURI(), "application/x-www-form-urlencoded", ""},
		{sm, su.Path, "application/json", sbody},
	}
	if !reflect.DeepEqual(h.seen, want) {
		t.Errorf("requests:\n got %q\nwant %q", h.seen, want)
	}
	if calls := sim.Received(); len(calls) != 2 || calls[0].Auth == nil || calls[0].Data != 1 || calls[1].Score == nil || calls[1].Data != 888 {
		t.Errorf("the simulator accepted %+v", calls)
	}
}

// TestShapeRequests: where and how each shape sends each call, with the
// default URLs (the table's production address; the sample's ESB address
// for its model score) and an explicit ScoreURL.
func TestShapeRequests(t *testing.T) {
	tests := []struct {
		name     string
		shape    unionpay.Shape
		scoreURL string
		auth     string // method and URL without the query
		score    string
	}{
		{"table", unionpay.ShapeTable, "", "POST " + unionpay.DefaultURL + "/transationAuthentication", "POST " + unionpay.DefaultURL + "/UnionPayModelScore"},
		{"table with ScoreURL", unionpay.ShapeTable, "https://fireeye.example/score", "POST " + unionpay.DefaultURL + "/transationAuthentication", "POST https://fireeye.example/score"},
		{"sample", unionpay.ShapeSample, "", "GET " + unionpay.DefaultURL + "/transationAuthentication",
			"POST https://esb.unionpay.com/ares/ARESVerificationService/ARESVerificationServiceProxy/modelScore/modelScoreDataQuery"},
		{"sample with ScoreURL", unionpay.ShapeSample, "https://fireeye.example/score", "GET " + unionpay.DefaultURL + "/transationAuthentication", "POST https://fireeye.example/score"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				u := *r.URL
				u.RawQuery = ""
				got = append(got, r.Method+" "+u.String())
				return &http.Response{StatusCode: 200, Request: r, Header: http.Header{},
					Body: io.NopCloser(strings.NewReader(`{"respCd":"0000","msg":"Success","data":1}`))}, nil
			})
			c, err := unionpay.New(unionpay.Config{Shape: tt.shape, ScoreURL: tt.scoreURL, ID: instID, AppKey: appKey,
				RetryMax: -1, HTTPClient: &http.Client{Transport: rt}})
			if err != nil {
				t.Fatal(err)
			}
			if c.Shape() != tt.shape {
				t.Errorf("Shape() = %q", c.Shape())
			}
			c.TransactionAuth(context.Background(), txQuery())
			c.ModelScore(context.Background(), scoreQuery())
			if want := []string{tt.auth, tt.score}; !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
