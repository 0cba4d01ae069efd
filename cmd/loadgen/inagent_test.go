package main

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

// A scrape as the agent serves it (abridged): two routes, the one asked
// for picked out, cumulative counts kept.
const scrape = `# HELP outpost_http_request_duration_seconds Local API request latency by route.
# TYPE outpost_http_request_duration_seconds histogram
outpost_http_request_duration_seconds_bucket{route="POST /v1/actions",le="0.0001"} 1
outpost_http_request_duration_seconds_bucket{route="POST /v1/actions",le="0.00025"} 2
outpost_http_request_duration_seconds_bucket{route="POST /v1/actions",le="+Inf"} 3
outpost_http_request_duration_seconds_sum{route="POST /v1/actions"} 0.1
outpost_http_request_duration_seconds_count{route="POST /v1/actions"} 3
outpost_http_request_duration_seconds_bucket{route="POST /v1/decisions",le="0.0001"} 10
outpost_http_request_duration_seconds_bucket{route="POST /v1/decisions",le="0.00025"} 950
outpost_http_request_duration_seconds_bucket{route="POST /v1/decisions",le="0.0005"} 995
outpost_http_request_duration_seconds_bucket{route="POST /v1/decisions",le="0.001"} 999
outpost_http_request_duration_seconds_bucket{route="POST /v1/decisions",le="+Inf"} 1000
outpost_http_request_duration_seconds_sum{route="POST /v1/decisions"} 0.2
outpost_http_request_duration_seconds_count{route="POST /v1/decisions"} 1000
# HELP outpost_decisions_total Decisions.
# TYPE outpost_decisions_total counter
outpost_decisions_total{result="accept",degraded="false"} 1000
`

func TestParseHandlerHist(t *testing.T) {
	got, err := parseHandlerHist(strings.NewReader(scrape), "POST /v1/decisions")
	if err != nil {
		t.Fatal(err)
	}
	inf := bound(math.Inf(1))
	want := []hBucket{{0.0001, 10}, {0.00025, 950}, {0.0005, 995}, {0.001, 999}, {inf, 1000}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := parseHandlerHist(strings.NewReader(scrape), "GET /v1/status"); err != nil || got != nil {
		t.Errorf("a route not served yet: %v %v", got, err)
	}
	if _, err := parseHandlerHist(strings.NewReader("# nothing\n"), "POST /v1/decisions"); err == nil {
		t.Error("no such histogram: no error")
	}
	if _, err := parseHandlerHist(strings.NewReader("garbage{"), "POST /v1/decisions"); err == nil {
		t.Error("not the text format: no error")
	}
}

func TestWindowHist(t *testing.T) {
	inf := bound(math.Inf(1))
	before := []hBucket{{0.0001, 10}, {0.00025, 950}, {0.0005, 995}, {0.001, 999}, {inf, 1000}}
	for _, c := range []struct {
		name                string
		before, after       []hBucket
		count               uint64
		p50, p90, p99, p999 bound
		err, line           string
	}{
		{name: "the window only", before: before,
			after: []hBucket{{0.0001, 10 + 100}, {0.00025, 950 + 800}, {0.0005, 995 + 990}, {0.001, 999 + 999}, {inf, 1000 + 1000}},
			count: 1000, p50: 0.00025, p90: 0.0005, p99: 0.0005, p999: 0.001,
			line: "p50 <= 250µs  p90 <= 500µs  p99 <= 500µs  p99.9 <= 1ms  (1.00% over 500µs, 0.10% over 1ms; n=1000"},
		{name: "beyond the last bound", before: nil,
			after: []hBucket{{0.0001, 0}, {0.001, 998}, {inf, 1000}},
			count: 1000, p50: 0.001, p90: 0.001, p99: 0.001, p999: bound(math.Inf(1)),
			line: "p99.9 > 1ms"},
		{name: "nothing counted", after: nil, err: "the agent counted no POST /v1/decisions"},
		{name: "buckets changed", before: before, after: before[:2], err: "the agent's buckets changed between two reads"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ia := windowHist("POST /v1/decisions", c.before, c.after)
			if ia.Error != c.err {
				t.Fatalf("error %q, want %q", ia.Error, c.err)
			}
			if c.err != "" {
				return
			}
			if ia.Count != c.count || ia.P50 != c.p50 || ia.P90 != c.p90 || ia.P99 != c.p99 || ia.P999 != c.p999 {
				t.Errorf("got n=%d p50 %g p90 %g p99 %g p99.9 %g", ia.Count, ia.P50, ia.P90, ia.P99, ia.P999)
			}
			if l := ia.line(); !strings.Contains(l, c.line) {
				t.Errorf("line %q lacks %q", l, c.line)
			}
		})
	}
}

// The JSON report carries +Inf as Prometheus writes it, and reads it back.
func TestInAgentJSON(t *testing.T) {
	ia := windowHist("POST /v1/decisions", nil, []hBucket{{0.0001, 1}, {bound(math.Inf(1)), 1000}})
	b, err := json.Marshal(ia)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"le":"+Inf","count":1000}`) || !strings.Contains(string(b), `"p50_le_sec":"+Inf"`) {
		t.Errorf("JSON %s", b)
	}
	var back inAgent
	if err := json.Unmarshal(b, &back); err != nil || !math.IsInf(float64(back.P50), 1) || back.Buckets[0].LE != 0.0001 || back.Count != 1000 {
		t.Errorf("read back %+v: %v", back, err)
	}
}
