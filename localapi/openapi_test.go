package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/internal/openapitest"
	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// errStore is a store that fails: Append with err, every read with
// errBroken.
type errStore struct {
	Store
	err error
}

var errBroken = errors.New("disk on fire")

func (s errStore) Append(context.Context, []spool.Record) (spool.AppendResult, error) {
	return spool.AppendResult{}, s.err
}
func (s errStore) Probe(context.Context) error { return errBroken }
func (s errStore) DeadLetters(string, uint64, int) ([]spool.Entry, error) {
	return nil, errBroken
}
func (s errStore) Replay(context.Context, string, []string, bool) (int, error) { return 0, errBroken }

// failingWrites is a decision store whose writes fail.
type failingWrites struct{ decision.Store }

func (failingWrites) Commit(context.Context, *decision.Commit) error { return errBroken }

// TestOpenAPI sends real requests, valid and invalid, to real servers (the
// agent's HTTP server on a loopback port, a real spool and decision
// engine; stores made to fail where a failure is the point) and validates
// every request and answer against openapi.json; every route and error
// code the description lists must be seen. The description cannot drift
// from the code without this test failing. e2e's TestOpenAPIRealBinary
// does the same for what only the binary wires (its /metrics and policy
// status).
func TestOpenAPI(t *testing.T) {
	chk := openapitest.New(t, openAPI)
	hc := &http.Client{Timeout: 10 * time.Second}
	const ctJSON = "application/json"
	// The default policy with a counter shared with the fleet: its
	// records carry fleet_velocity and fleet (off here).
	pol, err := policy.Parse(bytes.Replace(policy.DefaultYAML(), []byte("velocity:\n"),
		[]byte("velocity:\n  - {name: accounts_1h, key: account, window: 1h, fleet: true}\n"), 1), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eng := func(st decision.Store) *decision.Engine {
		e := decision.New(decision.Config{Store: st, Policies: onePolicy{pol}, HashKey: []byte("test-hash-key")})
		t.Cleanup(e.Close)
		return e
	}
	decisionReq := func(id string) []byte {
		idField := ""
		if id != "" {
			idField = `"id":"` + id + `",`
		}
		return []byte(`{` + idField + `"session_id":"s-0123456789","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
			`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":5000,` +
			`"credit":{"mode":"revolving","line":10000,"outstanding":2000,"overdue_days":0,"apr":0.18}}`)
	}

	// The agent as it runs with no token: a real spool holding a dead
	// letter, a real decision engine, metrics and the profiler.
	sp := newSpool(t, 0)
	h := newHarness(t, func(c *Config) {
		c.Store, c.Decider, c.NoTongDun, c.Pprof, c.Metrics = sp, eng(decision.NewSpoolStore(sp)), true, true, promhttp.Handler()
		c.Policy = func() any {
			return map[string]any{"version": "t-1", "sha256": strings.Repeat("0", 64), "file": "(embedded default)", "reloads": 0, "refusals": 0}
		}
		c.Upstreams = func() map[string]UpstreamStatus {
			now := time.Now()
			return map[string]UpstreamStatus{"tencent": {State: "retrying", Reason: "5xx", LastSuccessAt: &now}, "tongdun": {State: "not_configured"}}
		}
		c.FleetVelocity = func() any {
			age := 95.5
			return fleet.VelocityStatus{State: fleet.ViewStale, AgeSeconds: &age, Reason: "the fleet view is 96s old: connection refused",
				Topic: "outpost.velocity.v1", Epoch: 1796376600000000000, Entries: 3, MaxEntries: 1000000, ApproxBytes: 120, LoadedEntries: 2,
				Partitions: map[string]fleet.VelocityPartition{"0": {Offset: 12, HighWatermark: 14, Lag: 2}, "1": {Offset: -1}},
				Read:       14, Merged: 11, Own: 3, LastError: "connection refused"}
		}
	})
	do := func(method, path string, body []byte, valid bool, hdr ...string) (int, http.Header, []byte) {
		t.Helper()
		return chk.Do(t, hc, h.url, method, path, body, valid, hdr...)
	}
	want := func(got int, b []byte, status int, code string) {
		t.Helper()
		if got != status || (code != "" && !bytes.Contains(b, []byte(`"code":"`+code+`"`))) {
			t.Errorf("got %d %s, want %d %s", got, b, status, code)
		}
	}

	// Actions.
	valid := body(act("oa-1", ""), act("oa-2", `,"action_param":{"credit_level":2},"trace":{"click_id":"c-1"}`))
	st, _, b := do("POST", "/v1/actions", valid, true, "Content-Type", ctJSON)
	want(st, b, 202, "")
	st, _, b = do("POST", "/v1/actions", valid, true, "Content-Type", ctJSON, "X-Request-Id", "req-1")
	want(st, b, 202, "")
	st, _, b = do("POST", "/v1/actions", body(act("oa-3", `,"action_param":{"credit_level":9}`)), false, "Content-Type", ctJSON)
	want(st, b, 400, "invalid_request")
	st, _, b = do("POST", "/v1/actions", []byte(`{"actions":[`), false, "Content-Type", ctJSON)
	want(st, b, 400, "invalid_json")
	st, _, b = do("POST", "/v1/actions", valid, false, "Content-Type", "text/plain")
	want(st, b, 415, "unsupported_media_type")

	// A dead letter, to list and replay.
	es, err := sp.Lease(context.Background(), QueueTencent, 1, 1<<20)
	if err != nil || len(es) != 1 {
		t.Fatalf("lease: %v %d", err, len(es))
	}
	if err := sp.DeadLetter(context.Background(), QueueTencent, []uint64{es[0].Seq}, "tencent 31002: bad action"); err != nil {
		t.Fatal(err)
	}
	st, _, b = do("GET", "/v1/deadletters?upstream=tencent&limit=10", nil, true)
	want(st, b, 200, "")
	if !bytes.Contains(b, []byte(`"oa-1"`)) {
		t.Errorf("dead letters: %s", b)
	}
	st, _, b = do("GET", "/v1/deadletters?upstream=tencent&after=1", nil, true)
	want(st, b, 200, "")
	st, _, b = do("GET", "/v1/deadletters?upstream=nowhere", nil, false)
	want(st, b, 400, "invalid_request")
	for _, c := range []struct {
		body, code string
		valid      bool
	}{
		{`{"upstream":"tencent","ids":["oa-1"]}`, "", true},
		{`{"upstream":"tencent","all":true}`, "", true},
		{`{"upstream":"tencent"}`, "invalid_request", true},
		{`{"upstream":"nowhere","all":true}`, "invalid_request", false},
		{`{"upstream":"tencent","all":true,"force":true}`, "invalid_json", false},
		{`{"upstream":`, "invalid_json", false},
	} {
		st, _, b = do("POST", "/v1/deadletters/replay", []byte(c.body), c.valid, "Content-Type", ctJSON)
		if c.code == "" {
			want(st, b, 200, "")
		} else {
			want(st, b, 400, c.code)
		}
	}
	st, _, b = do("POST", "/v1/deadletters/replay", []byte(`{}`), false)
	want(st, b, 415, "unsupported_media_type")

	// Decisions: without a channel (no TongDun), with an id, and invalid.
	st, _, b = do("POST", "/v1/decisions", decisionReq(""), true, "Content-Type", ctJSON)
	want(st, b, 200, "")
	st, _, b = do("POST", "/v1/decisions", decisionReq("dec-oa-1"), true, "Content-Type", ctJSON)
	want(st, b, 200, "")
	st, _, b = do("GET", "/v1/decisions/dec-oa-1", nil, true)
	want(st, b, 200, "")
	if !bytes.Contains(b, []byte(`"fleet_velocity":{"accounts_1h":1}`)) || !bytes.Contains(b, []byte(`"fleet":{"state":"off"}`)) {
		t.Errorf("the record does not show the fleet's counts: %s", b)
	}
	st, _, b = do("GET", "/v1/decisions/dec-none", nil, true)
	want(st, b, 404, "not_found")
	st, _, b = do("POST", "/v1/decisions", bytes.Replace(decisionReq(""), []byte(`14:20:50.521`), []byte(`14:20:50`), 1), false, "Content-Type", ctJSON)
	want(st, b, 400, "invalid_request")
	st, _, b = do("POST", "/v1/decisions", []byte(`{"session_id":`), false, "Content-Type", ctJSON)
	want(st, b, 400, "invalid_json")
	st, _, b = do("POST", "/v1/decisions", decisionReq(""), false, "Content-Type", "application/x-www-form-urlencoded")
	want(st, b, 415, "unsupported_media_type")

	// Probes, status, metrics, the page, this description, the profiler.
	for _, p := range []string{"/healthz", "/readyz", "/v1/status", "/metrics", "/", "/openapi.json", "/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/symbol"} {
		st, _, b = do("GET", p, nil, true)
		want(st, b, 200, "")
	}
	st, _, b = do("GET", "/debug/pprof/nothing", nil, true)
	want(st, b, 404, "")
	_, hdr, b := do("GET", "/openapi.json", nil, true)
	if hdr.Get("Content-Type") != ctJSON || !bytes.Equal(b, openAPI) {
		t.Errorf("/openapi.json: %s, not the document", hdr.Get("Content-Type"))
	}

	// What no route takes.
	st, _, b = do("GET", "/v2/actions", nil, false)
	want(st, b, 404, "not_found")
	st, _, b = do("GET", "/v1/actions", nil, false)
	want(st, b, 405, "method_not_allowed")
	st, _, b = do("DELETE", "/v1/status", nil, false)
	want(st, b, 405, "method_not_allowed")

	// Browser requests and rebinding.
	st, _, b = do("GET", "/v1/status", nil, false, "Origin", "https://evil.example")
	want(st, b, 403, "forbidden")
	st, _, b = do("POST", "/v1/actions", valid, false, "Content-Type", ctJSON, "Host", "evil.example:8470")
	want(st, b, 403, "forbidden")

	// Framing, header size and time limits, on raw connections.
	c := dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "\r\n0\r\n\r\n")
	raw(t, chk, c, "POST", "/v1/actions", 400, "bad_request")
	c = dialRaw(t, h)
	c.write("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n")
	raw(t, chk, c, "GET", "/v1/status", 431, "headers_too_large")

	// Tokens: an app token and an admin token.
	const app, admin = "app-token-0123456789", "admin-token-0123456789"
	ht := newHarness(t, func(c *Config) { c.AuthToken, c.AdminToken, c.Decider, c.Pprof = app, admin, fixedDecider{}, true })
	for _, x := range []struct {
		method, path string
		body         []byte
		token        string
		status       int
		code         string
	}{
		{"POST", "/v1/actions", body(act("oa-tok", "")), "", 401, "unauthorized"},
		{"POST", "/v1/actions", body(act("oa-tok", "")), app, 202, ""},
		{"GET", "/v1/status", nil, "wrong-token-0123456789", 401, "unauthorized"},
		{"GET", "/v1/status", nil, admin, 200, ""},
		{"GET", "/healthz", nil, "", 200, ""},
		{"GET", "/openapi.json", nil, "", 200, ""},
		{"GET", "/v1/deadletters?upstream=tencent", nil, app, 403, "admin_required"},
		{"GET", "/v1/deadletters?upstream=tencent", nil, "", 401, "unauthorized"},
		{"GET", "/v1/deadletters?upstream=tencent", nil, admin, 200, ""},
		{"POST", "/v1/deadletters/replay", []byte(`{"upstream":"tencent","all":true}`), app, 403, "admin_required"},
		{"GET", "/v1/decisions/d-1", nil, app, 403, "admin_required"},
		{"GET", "/debug/pprof/", nil, app, 403, "admin_required"},
	} {
		hdr := []string{"Content-Type", ctJSON}
		if x.token != "" {
			hdr = append(hdr, "Authorization", "Bearer "+x.token)
		}
		st, _, b := chk.Do(t, hc, ht.url, x.method, x.path, x.body, x.status < 300, hdr...)
		want(st, b, x.status, x.code)
	}

	// Limits: a small body cap, one connection, a short header time.
	hl := newHarness(t, func(c *Config) {
		c.MaxBodyBytes, c.MaxConnections, c.HeaderTimeout = 1024, 1, 300*time.Millisecond
	})
	once := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	st, _, b = chk.Do(t, once, hl.url, "POST", "/v1/actions", body(act("oa-big", `,"trace":{"click_id":"`+strings.Repeat("c", 1100)+`"}`)), false, "Content-Type", ctJSON)
	want(st, b, 413, "body_too_large")
	c = dialRaw(t, hl)
	c.write("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	raw(t, chk, c, "GET", "/readyz", 408, "timeout")
	// The connection answered 408 gives its place back once closed; then
	// one held open takes the only place.
	for i := 0; ; i++ {
		c = dialRaw(t, hl)
		c.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if resp, _ := c.read(); resp.StatusCode == 200 {
			break
		} else if i == 50 {
			t.Fatalf("the one connection: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Past the cap the answer comes before the request is read (an HTTP
	// client may see it as a broken connection): read it off a raw one.
	c2 := dialRaw(t, hl)
	c2.write("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	raw(t, chk, c2, "GET", "/v1/status", 503, "overloaded")
	c.c.Close()

	// A disk under its minimum: actions and decisions are refused.
	d := newFullDisk(t, 40<<20)
	fullEng := eng(decision.NewSpoolStore(d.sp))
	hf := newHarness(t, func(c *Config) { c.Store, c.Decider, c.NoTongDun = d.sp, fullEng, true })
	st, _, b = chk.Do(t, hc, hf.url, "POST", "/v1/actions", body(act("oa-full", "")), true, "Content-Type", ctJSON)
	want(st, b, 503, "spool_full")
	st, _, b = chk.Do(t, hc, hf.url, "POST", "/v1/decisions", decisionReq(""), true, "Content-Type", ctJSON)
	want(st, b, 503, "spool_full")
	st, _, b = chk.Do(t, hc, hf.url, "GET", "/readyz", nil, true)
	want(st, b, 503, "")

	// A store that is closing, and one that fails.
	hc1 := newHarness(t, func(c *Config) { c.Store = errStore{err: spool.ErrClosed} })
	st, _, b = chk.Do(t, hc, hc1.url, "POST", "/v1/actions", body(act("oa-closed", "")), true, "Content-Type", ctJSON)
	want(st, b, 503, "shutting_down")
	sp2 := newSpool(t, 0)
	broken := decideBroken{eng(failingWrites{decision.NewSpoolStore(sp2)})}
	hb := newHarness(t, func(c *Config) { c.Store, c.Decider, c.NoTongDun = errStore{Store: sp2, err: errBroken}, broken, true })
	for _, x := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/v1/actions", body(act("oa-broken", ""))},
		{"POST", "/v1/decisions", decisionReq("")},
		{"GET", "/v1/decisions/d-1", nil},
		{"GET", "/v1/deadletters?upstream=tencent", nil},
		{"POST", "/v1/deadletters/replay", []byte(`{"upstream":"tencent","all":true}`)},
	} {
		st, _, b = chk.Do(t, hc, hb.url, x.method, x.path, x.body, true, "Content-Type", ctJSON)
		want(st, b, 503, "store_unavailable")
	}
	st, _, b = chk.Do(t, hc, hb.url, "GET", "/readyz", nil, true)
	want(st, b, 503, "")

	// An agent without decisions, and without the profiler.
	hn := newHarness(t)
	st, _, b = chk.Do(t, hc, hn.url, "POST", "/v1/decisions", decisionReq(""), true, "Content-Type", ctJSON)
	want(st, b, 503, "not_available")
	st, _, b = chk.Do(t, hc, hn.url, "GET", "/v1/decisions/d-1", nil, true)
	want(st, b, 503, "not_available")
	st, _, b = chk.Do(t, hc, hn.url, "GET", "/debug/pprof/", nil, false)
	want(st, b, 404, "not_found")

	chk.Coverage(t, map[string]string{
		"internal": "the answer could not be encoded: every answer is a plain struct of this package",
	})
}

// decideBroken decides with its engine (whose writes fail) and cannot read
// records.
type decideBroken struct{ *decision.Engine }

func (decideBroken) Get(string) (*decision.Result, bool, error) { return nil, false, errBroken }

// raw reads one answer off c and checks it against the description.
func raw(t *testing.T, chk *openapitest.Checker, c *rawConn, method, path string, status int, code string) {
	t.Helper()
	resp, b := c.read()
	chk.Check(t, openapitest.Exchange{Method: method, Path: path, Status: resp.StatusCode, RespHeader: resp.Header, RespBody: []byte(b)})
	var e ErrorBody
	json.Unmarshal([]byte(b), &e)
	if resp.StatusCode != status || e.Error.Code != code {
		t.Errorf("%s %s: got %d %s, want %d %s", method, path, resp.StatusCode, b, status, code)
	}
}
