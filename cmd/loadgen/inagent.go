package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// handlerMetric is the agent's histogram of the time a request spends in
// its handler: from the request read to the answer handed to the HTTP
// server. What the client measures beyond it is the sockets, the two
// processes' scheduling and the client itself.
const handlerMetric = "outpost_http_request_duration_seconds"

// inAgent is that histogram over a measured window: the difference of two
// reads of GET /metrics, one as the window opens and one as it closes, so
// a few requests at either edge may be counted on the wrong side. A
// quantile is known only as the bucket holding it: Pxx is that bucket's
// upper bound in seconds (+Inf when beyond the last).
type inAgent struct {
	Route   string    `json:"route"`
	Count   uint64    `json:"count"`
	Buckets []hBucket `json:"buckets"` // cumulative, as Prometheus keeps them
	P50     bound     `json:"p50_le_sec"`
	P90     bound     `json:"p90_le_sec"`
	P99     bound     `json:"p99_le_sec"`
	P999    bound     `json:"p999_le_sec"`
	Error   string    `json:"error,omitempty"`
}

type hBucket struct {
	LE    bound  `json:"le"`
	Count uint64 `json:"count"`
}

// bound is a bucket's upper bound in seconds; +Inf, which JSON has no
// number for, is written "+Inf" as Prometheus writes it.
type bound float64

func (b bound) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(b), 1) {
		return []byte(`"+Inf"`), nil
	}
	return json.Marshal(float64(b))
}

func (b *bound) UnmarshalJSON(data []byte) error {
	if string(data) == `"+Inf"` {
		*b = bound(math.Inf(1))
		return nil
	}
	return json.Unmarshal(data, (*float64)(b))
}

// handlerHist reads the agent's handler histogram for route (cumulative
// counts since the agent started; +Inf last).
func handlerHist(ctx context.Context, c *http.Client, base *url.URL, token, route string) ([]hBucket, error) {
	var out []hBucket
	err := agentGet(ctx, c, base, token, "/metrics", func(r io.Reader) (err error) {
		out, err = parseHandlerHist(r, route)
		return err
	})
	return out, err
}

func parseHandlerHist(r io.Reader, route string) ([]hBucket, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	fam := fams[handlerMetric]
	if fam == nil {
		return nil, fmt.Errorf("GET /metrics: no %s", handlerMetric)
	}
	for _, m := range fam.GetMetric() {
		if label(m, "route") != route || m.GetHistogram() == nil {
			continue
		}
		h := m.GetHistogram()
		out := make([]hBucket, 0, len(h.GetBucket())+1)
		for _, b := range h.GetBucket() {
			out = append(out, hBucket{LE: bound(b.GetUpperBound()), Count: b.GetCumulativeCount()})
		}
		if len(out) == 0 || !math.IsInf(float64(out[len(out)-1].LE), 1) {
			out = append(out, hBucket{LE: bound(math.Inf(1)), Count: h.GetSampleCount()})
		}
		return out, nil
	}
	return nil, nil // not served yet: nothing counted
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// windowHist is after - before, bucket by bucket (before may be nil: none
// counted yet), with its quantiles.
func windowHist(route string, before, after []hBucket) *inAgent {
	ia := &inAgent{Route: route}
	if len(after) == 0 {
		ia.Error = "the agent counted no " + route
		return ia
	}
	if len(before) != 0 && len(before) != len(after) {
		ia.Error = "the agent's buckets changed between two reads"
		return ia
	}
	ia.Buckets = make([]hBucket, len(after))
	for i, b := range after {
		ia.Buckets[i] = b
		if len(before) != 0 {
			ia.Buckets[i].Count -= before[i].Count
		}
	}
	ia.Count = ia.Buckets[len(ia.Buckets)-1].Count
	ia.P50, ia.P90, ia.P99, ia.P999 = ia.quantile(0.5), ia.quantile(0.9), ia.quantile(0.99), ia.quantile(0.999)
	return ia
}

// quantile is the upper bound of the first bucket holding at least q of
// the window's requests.
func (ia *inAgent) quantile(q float64) bound {
	want := uint64(math.Ceil(q * float64(ia.Count)))
	for _, b := range ia.Buckets {
		if b.Count >= want {
			return b.LE
		}
	}
	return bound(math.Inf(1))
}

// line is the report's line for it.
func (ia *inAgent) line() string {
	if ia.Error != "" {
		return "the agent's handler histogram: " + ia.Error
	}
	le := func(s bound) string {
		if math.IsInf(float64(s), 1) {
			if len(ia.Buckets) < 2 {
				return "> 0s"
			}
			return fmt.Sprintf("> %s", secs(float64(ia.Buckets[len(ia.Buckets)-2].LE)))
		}
		return "<= " + secs(float64(s)).String()
	}
	var over []string
	for _, b := range ia.Buckets {
		if b.LE >= 0.0005 && b.LE <= 0.001 {
			over = append(over, fmt.Sprintf("%.2f%% over %s", 100*float64(ia.Count-b.Count)/float64(max(ia.Count, 1)), secs(float64(b.LE))))
		}
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  (%s; n=%d, the agent's own histogram of its handler time, read before and after)",
		le(ia.P50), le(ia.P90), le(ia.P99), le(ia.P999), strings.Join(over, ", "), ia.Count)
}
