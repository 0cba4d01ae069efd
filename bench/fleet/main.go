// Command fleet simulates a bank's fleet of agents sharing one Tencent
// access token: N agents (each its own forwarder worker and Tencent client,
// configured as deployed, each believing it has the token's whole quota)
// drain their backlogs into one simulator that enforces the token's shared
// per-minute quota, optionally after an outage. It samples, every second,
// the requests the simulator saw, how many it throttled, and the actions
// delivered, and reports per-agent completion times (starvation) and the
// requests in the first seconds after an outage ends (retry storm).
//
// The agents' queues are an in-memory model of the spool (forwarder.Queue):
// a hundred badger stores on one disk would measure the disk, not the
// fleet's behaviour. Loopback only; bounded by -max.
//
//	go run ./bench/fleet -agents 100 -backlog 300 -quota 200 -outage 20s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// memQueue is the spool as the forwarder sees it, in memory.
type memQueue struct {
	mu       sync.Mutex
	entries  []spool.Entry // FIFO, by seq
	inflight map[uint64]bool
	acked    int
	doneAt   time.Time
}

func (q *memQueue) Lease(ctx context.Context, _ string, max, _ int) ([]spool.Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []spool.Entry
	for _, e := range q.entries {
		if len(out) == max {
			break
		}
		if !q.inflight[e.Seq] {
			q.inflight[e.Seq] = true
			out = append(out, e)
		}
	}
	return out, nil
}

func (q *memQueue) remove(seqs []uint64) {
	drop := map[uint64]bool{}
	for _, s := range seqs {
		drop[s] = true
		delete(q.inflight, s)
	}
	kept := q.entries[:0]
	for _, e := range q.entries {
		if !drop[e.Seq] {
			kept = append(kept, e)
		}
	}
	q.entries = kept
}

func (q *memQueue) Ack(_ context.Context, _ string, seqs []uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(seqs)
	q.acked += len(seqs)
	if len(q.entries) == 0 && q.doneAt.IsZero() {
		q.doneAt = time.Now()
	}
	return nil
}

func (q *memQueue) DeadLetter(ctx context.Context, name string, seqs []uint64, _ string) error {
	return q.Ack(ctx, name, seqs)
}

func (q *memQueue) Fail(_ context.Context, _ string, seqs []uint64, _ string) error {
	q.Release("", seqs)
	return nil
}

func (q *memQueue) Release(_ string, seqs []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range seqs {
		delete(q.inflight, s)
	}
}

// counting wraps the simulator to sample what it saw each second.
type sample struct {
	T         int `json:"t"`
	Requests  int `json:"requests"`
	Throttled int `json:"throttled"`
	Delivered int `json:"delivered"`
}

func run() error {
	agents := flag.Int("agents", 100, "agents in the fleet")
	backlog := flag.Int("backlog", 300, "actions queued at each agent")
	quota := flag.Int("quota", 200, "the shared token's requests per minute")
	outage := flag.Duration("outage", 0, "Tencent unreachable for this long at the start")
	maxRun := flag.Duration("max", 6*time.Minute, "stop after this long whatever happened")
	out := flag.String("json", "", "write the samples and results here")
	chartIn := flag.String("chart-from", "", "draw the chart of an earlier -json result (with -chart) and exit")
	chartOut := flag.String("chart", "", "SVG file for -chart-from")
	title := flag.String("title", "Fleet", "chart title")
	flag.Parse()
	if *chartIn != "" {
		return chartFromJSON(*chartIn, *chartOut, *title)
	}

	const token = "fleet-token-0123456789"
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	if *outage > 0 {
		sim.SetFaults(tencentsim.Faults{Outage: true})
	} else {
		sim.SetFaults(tencentsim.Faults{QuotaPerMinute: *quota})
	}
	start := time.Now()
	queues := make([]*memQueue, *agents)
	var workers []*forwarder.Worker
	now := time.Now().Unix()
	for a := range *agents {
		q := &memQueue{inflight: map[uint64]bool{}}
		for i := range *backlog {
			id := fmt.Sprintf("a%03d-%05d", a, i)
			q.entries = append(q.entries, spool.Entry{Seq: uint64(i + 1), ID: id, EnqueuedAt: start, Payload: []byte(fmt.Sprintf(
				`{"id":%q,"track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"hash_phone":"9d2a2b1c3f3e4d5c6b7a8990a1b2c3d4"}}`, id, now))})
		}
		queues[a] = q
		c, err := tencent.New(tencent.Config{BaseURL: srv.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Timeout: 5 * time.Second})
		if err != nil {
			return err
		}
		// Deployed defaults, except the first circuit-breaker open time and
		// back-off ceiling, shortened so that a run takes minutes.
		w := forwarder.New(forwarder.Config{Name: "tencent", Sender: c, Queue: q,
			FlushInterval: 100 * time.Millisecond, BackoffMax: 30 * time.Second, BreakerOpen: 5 * time.Second})
		workers = append(workers, w)
		w.Start()
	}
	defer func() {
		for _, w := range workers {
			w.Close(context.Background())
		}
	}()

	var samples []sample
	var lastReq, lastThr, lastDel int
	total := *agents * *backlog
	outageEnded := time.Time{}
	var afterOutage []int
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for t := 1; ; t++ {
		<-tick.C
		if *outage > 0 && outageEnded.IsZero() && time.Since(start) >= *outage {
			sim.SetFaults(tencentsim.Faults{QuotaPerMinute: *quota})
			outageEnded = time.Now()
		}
		st := sim.Stats()
		del := 0
		for _, q := range queues {
			q.mu.Lock()
			del += q.acked
			q.mu.Unlock()
		}
		s := sample{T: t, Requests: st.Requests - lastReq, Throttled: throttled(st) - lastThr, Delivered: del - lastDel}
		lastReq, lastThr, lastDel = st.Requests, throttled(st), del
		samples = append(samples, s)
		if !outageEnded.IsZero() && len(afterOutage) < 10 {
			afterOutage = append(afterOutage, s.Requests)
		}
		fmt.Fprintf(os.Stderr, "t=%3ds requests %4d throttled %4d delivered %5d (total %d/%d)\n", t, s.Requests, s.Throttled, s.Delivered, del, total)
		if del == total || time.Since(start) > *maxRun {
			break
		}
	}
	elapsed := time.Since(start)
	var done []float64
	for _, q := range queues {
		if !q.doneAt.IsZero() {
			done = append(done, q.doneAt.Sub(start).Seconds())
		}
	}
	sort.Float64s(done)
	st := sim.Stats()
	res := map[string]any{
		"agents": *agents, "backlog": *backlog, "quota_per_minute": *quota, "outage_s": outage.Seconds(),
		"elapsed_s": elapsed.Seconds(), "delivered": lastDel, "requests": st.Requests, "throttled": throttled(st),
		"accepted_requests": st.Requests - throttled(st),
		"ideal_s":           float64(total/50) / float64(*quota) * 60, "agents_done": len(done),
		"requests_first_10s_after_outage": afterOutage, "samples": samples,
	}
	if len(done) > 0 {
		res["agent_done_s_min"], res["agent_done_s_median"], res["agent_done_s_max"] = done[0], done[len(done)/2], done[len(done)-1]
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return err
		}
	}
	delete(res, "samples")
	b, _ = json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
	return nil
}

// throttled counts refused requests (over the quota; resets during an outage).
func throttled(st tencentsim.Stats) int { return st.Requests - st.AcceptedRequests }
