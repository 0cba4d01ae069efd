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
	m := New("test", fake())
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
	m := New("test", fake())
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
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
