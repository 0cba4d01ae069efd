package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// counting is an httptest server that counts the POSTs carrying the expected body and sleeps
// a little, so that latencies are measurable.
func counting(t *testing.T, body []byte, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || !bytes.Equal(b, body) || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		n.Add(1)
		time.Sleep(delay)
		w.Write([]byte(`{"result":"accept"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func sane(t *testing.T, r *Result, minUS int64) {
	t.Helper()
	l := r.Latency
	if l.Count != r.Requests {
		t.Errorf("latency count %d, requests %d", l.Count, r.Requests)
	}
	if !(minUS <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("percentiles out of order or below %dµs: %+v", minUS, l)
	}
	if l.Max > 5_000_000 {
		t.Errorf("max %dµs: more than the request timeout", l.Max)
	}
}

func TestFlatOutCountsEveryRequest(t *testing.T) {
	body := []byte(`{"input":{"event":"withdraw"}}`)
	srv, n := counting(t, body, time.Millisecond)
	res, err := Run(context.Background(), Config{Label: "t", URL: srv.URL + "/v1/data/outpost/decision", Body: body,
		Concurrency: 4, Duration: 300 * time.Millisecond, Warm: 3})
	if err != nil {
		t.Fatal(err)
	}
	// The warm-up is not counted.
	if got := n.Load() - 3; res.Requests != got || res.Errors != 0 {
		t.Fatalf("driver counted %d ok, %d errors; the server saw %d measured requests", res.Requests, res.Errors, got)
	}
	// 4 workers, >= 1 ms each, 300 ms: at most ~1200, and surely more than 40.
	if res.Requests < 40 || res.Requests > 1300 {
		t.Errorf("%d requests in 300ms with 4 workers and a 1ms server", res.Requests)
	}
	if res.Mode != "flat" || res.ReqPerSec <= 0 || res.FirstBody != `{"result":"accept"}` {
		t.Errorf("result %+v", res)
	}
	sane(t, res, 1000)
}

func TestFixedRateSendsTheSchedule(t *testing.T) {
	body := []byte(`{"x":1}`)
	srv, n := counting(t, body, 0)
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: body, Rate: 400, Concurrency: 8, Duration: 500 * time.Millisecond, Warm: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || res.Unsent != 0 || res.Errors != 0 || n.Load() != 201 {
		t.Fatalf("at 400/s for 0.5s: %d ok, %d unsent, %d errors; server saw %d (1 warm-up)", res.Requests, res.Unsent, res.Errors, n.Load())
	}
	if res.ReqPerSec < 300 || res.ReqPerSec > 500 || res.Service == nil {
		t.Errorf("achieved %.0f/s, service %v", res.ReqPerSec, res.Service)
	}
	sane(t, res, 1)
}

// A server slower than the schedule: latency from the due time grows with the queue, which the
// service time alone would hide (coordinated omission).
func TestFixedRateCountsQueueing(t *testing.T) {
	body := []byte(`{}`)
	srv, _ := counting(t, body, 10*time.Millisecond)
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: body, Rate: 400, Concurrency: 1, Duration: 250 * time.Millisecond, Warm: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 {
		t.Fatalf("%d requests, want all 100 within the grace period", res.Requests)
	}
	if res.Latency.P99 < 5*res.Service.P99 {
		t.Errorf("latency from due time p99 %dµs is not well above service time p99 %dµs", res.Latency.P99, res.Service.P99)
	}
}

func TestErrorsAreCounted(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 0 {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: []byte(`{}`), Rate: 200, Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests+res.Errors != 40 || res.Errors < 19 || res.Statuses["503"] != int(res.Errors) {
		t.Fatalf("%d ok, %d errors %v", res.Requests, res.Errors, res.Statuses)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{
		"http://10.0.0.1:8181/v1/data", "http://192.168.1.5/", "http://example.com/", "http://8.8.8.8/",
		"https://127.0.0.1/", "ftp://localhost/", "http://127.0.0.1.example.com/", "http://[2001:db8::1]/", "127.0.0.1:80",
	} {
		if err := CheckLoopback(u); err == nil {
			t.Errorf("%s accepted", u)
		}
		if _, err := Run(context.Background(), Config{URL: u, Body: []byte(`{}`), Concurrency: 1, Duration: time.Second}); err == nil {
			t.Errorf("Run(%s) did not refuse", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8181/v1/data/outpost/decision", "http://localhost:8470/v1/decisions", "http://[::1]:80/", "http://127.9.9.9/"} {
		if err := CheckLoopback(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

func TestCeilingAndReport(t *testing.T) {
	body := []byte(`{"input":{}}`)
	srv, _ := counting(t, body, 0)
	dir := t.TempDir()
	bodyFile := filepath.Join(dir, "body.json")
	os.WriteFile(bodyFile, body, 0o600)
	var files []string
	for _, tc := range []struct{ label, rate string }{{"opa", "300"}, {"opa", "0"}, {"agent", "300"}, {"agent", "0"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"-url", srv.URL + "/p", "-body", bodyFile, "-label", tc.label, "-rate", tc.rate,
			"-c", "2", "-d", "200ms", "-ceiling"}, &out, &errOut)
		if err != nil {
			t.Fatal(err, errOut.String())
		}
		var r Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Ceiling == nil || r.Ceiling.Requests == 0 || r.Requests == 0 {
			t.Fatalf("%v: %s", err, out.String())
		}
		if !strings.Contains(errOut.String(), "loopback ceiling") || !strings.Contains(errOut.String(), tc.label+":") {
			t.Errorf("human lines: %s", errOut.String())
		}
		f := filepath.Join(dir, tc.label+tc.rate+".json")
		os.WriteFile(f, out.Bytes(), 0o600)
		files = append(files, f)
	}
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"-report", "-target-rate", "300"}, files...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"agent/OPA req/s, flat out with 2 clients", "agent/OPA p99 at 300/s", "target p99 < 2.000 ms at 300 decisions/s, from the due time", "service time alone (sent to answered) p99 at 300/s: agent ", "(loopback)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
