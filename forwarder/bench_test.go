package forwarder

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// BenchmarkDrain100k drains a backlog of 100,000 actions from a real spool
// into the Tencent simulator over loopback HTTP and reports actions/s and
// requests per action. The client's rate limit is lifted to measure the
// agent itself; with Tencent's default of 4,000 requests a minute the
// upstream caps a drain at 4,000*50/60 = 3,333 actions/s.
func BenchmarkDrain100k(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sp, err := spool.Open(spool.Options{Dir: filepath.Join(b.TempDir(), "spool"), Queues: []string{"tencent"}})
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now().Unix()
		for j := 0; j < n; j += 1000 {
			recs := make([]spool.Record, 1000)
			for k := range recs {
				id := fmt.Sprintf("d-%07d", j+k)
				recs[k] = spool.Record{Queue: "tencent", ID: id, Payload: []byte(fmt.Sprintf(
					`{"id":%q,"track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":%d,"user_id":{"hash_phone":"9d2a2b1c3f3e4d5c6b7a8990a1b2c3d4"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}}`, id, now))}
			}
			if _, err := sp.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2})
		hs := httptest.NewServer(sim)
		c, err := tencent.New(tencent.Config{BaseURL: hs.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, RequestsPerMinute: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		w := New(Config{Name: "tencent", Sender: c, Queue: sp, IdlePoll: time.Millisecond})
		b.StartTimer()
		start := time.Now()
		w.Start(nil)
		for sp.Stats()["tencent"].Depth > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		w.Close(context.Background())
		if got := len(sim.Delivered()); got != n {
			b.Fatalf("delivered %d, want %d", got, n)
		}
		b.ReportMetric(n/elapsed.Seconds(), "actions/s")
		b.ReportMetric(float64(sim.Requests())/n, "requests/action")
		b.ReportMetric(elapsed.Seconds(), "drain-s")
		hs.Close()
		sp.Close(context.Background())
	}
}
