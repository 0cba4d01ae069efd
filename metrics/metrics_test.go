package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func fake() Sources {
	return Sources{
		Queues: func() map[string]QueueStats {
			return map[string]QueueStats{"tencent": {Depth: 7, Bytes: 700, DeadLetters: 1, OldestAgeSeconds: 12.5}}
		},
		StoreBytes:  func() int64 { return 4096 },
		Spool:       func() SpoolSize { return SpoolSize{StoredBytes: 900 << 20, MaxBytes: 1 << 30} },
		Quarantined: func() bool { return true },
		Upstreams: func() map[string]UpstreamStats {
			return map[string]UpstreamStats{"tongdun": {State: "paused", Delivered: 3, Failed: 2, DeadLettered: 1, Sent: 4}}
		},
		Policy: func() PolicyStats { return PolicyStats{Version: "v1", SHA256: "abc", Reloads: 2, Refusals: 1} },
		Journal: func() JournalStats {
			return JournalStats{Replayed: 40, Pending: 3, Checkpoints: 9, CheckpointErrors: 2}
		},
	}
}

func TestMetricsFollowConventions(t *testing.T) {
	m := New("test")
	m.Read(fake())
	m.Request("POST /v1/actions", 202, 3*time.Millisecond)
	m.Actions("accepted", 5)
	m.Decision("review", true)
	m.Commit(time.Millisecond, 12, nil)
	m.Commit(0, 1, errors.New("disk full"))
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestScrapeReadsSources(t *testing.T) {
	m := New("test")
	m.Read(fake())
	m.Actions("accepted", 5)
	m.Commit(0, 1, errors.New("disk full"))
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`outpost_spool_queue_depth{queue="tencent"} 7`,
		`outpost_spool_oldest_age_seconds{queue="tencent"} 12.5`,
		`outpost_spool_dead_letters{queue="tencent"} 1`,
		`outpost_store_quarantined 1`,
		`outpost_upstream_state{state="paused",upstream="tongdun"} 1`,
		`outpost_upstream_state{state="ok",upstream="tongdun"} 0`,
		`outpost_upstream_delivered_total{upstream="tongdun"} 3`,
		`outpost_policy_info{sha256="abc",version="v1"} 1`,
		`outpost_policy_refusals_total 1`,
		`outpost_actions_total{outcome="accepted"} 5`,
		`outpost_spool_commit_errors_total 1`,
		`outpost_spool_journal_replayed_records 40`,
		`outpost_spool_journal_pending_records 3`,
		`outpost_spool_checkpoints_total 9`,
		`outpost_spool_checkpoint_errors_total 2`,
		`outpost_spool_stored_bytes 9.437184e+08`,
		`outpost_spool_max_bytes 1.073741824e+09`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// TestOutcomesStartAtZero: every action outcome and decision result has a
// series from the start, so rate() sees the first burst of refusals (a
// series born with its first increment has no earlier sample to rate).
func TestOutcomesStartAtZero(t *testing.T) {
	m := New("test")
	m.Read(fake())
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, o := range ActionOutcomes {
		if want := `outpost_actions_total{outcome="` + o + `"} 0`; !strings.Contains(string(b), want) {
			t.Errorf("scrape at start lacks %s", want)
		}
	}
	for _, r := range DecisionResults {
		for _, d := range []string{"false", "true"} {
			if want := `outpost_decisions_total{degraded="` + d + `",result="` + r + `"} 0`; !strings.Contains(string(b), want) {
				t.Errorf("scrape at start lacks %s", want)
			}
		}
	}
	m.Actions("spool_full", 3)
	if got := testutil.ToFloat64(m.actions.WithLabelValues("spool_full")); got != 3 {
		t.Errorf("spool_full %v after 3", got)
	}
}

// Each route and code counts apart, and repeated calls add to the same series.
func TestRequestSeries(t *testing.T) {
	m := New("test")
	m.Read(fake())
	for range 3 {
		m.Request("POST /v1/actions", 202, time.Millisecond)
	}
	m.Request("POST /v1/actions", 400, time.Millisecond)
	m.Request("GET /v1/status", 202, time.Millisecond)
	m.Actions("accepted", 5)
	m.Actions("accepted", 2)
	m.Actions("invalid", 1)
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("POST /v1/actions", "202")), 3, "actions 202"},
		{testutil.ToFloat64(m.requests.WithLabelValues("POST /v1/actions", "400")), 1, "actions 400"},
		{testutil.ToFloat64(m.requests.WithLabelValues("GET /v1/status", "202")), 1, "status 202"},
		{testutil.ToFloat64(m.actions.WithLabelValues("accepted")), 7, "accepted actions"},
		{testutil.ToFloat64(m.actions.WithLabelValues("invalid")), 1, "invalid actions"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.latency); n != 2 {
		t.Errorf("%d latency series, want 2 (one per route)", n)
	}
}

func BenchmarkRequest(b *testing.B) {
	m := New("test")
	m.Read(fake())
	b.ReportAllocs()
	for b.Loop() {
		m.Request("POST /v1/actions", 202, time.Millisecond)
		m.Actions("accepted", 1)
	}
}
