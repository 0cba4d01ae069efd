package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"sort"
	"time"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// sample is one second of the Tencent scenario, as the simulator saw it.
type sample struct {
	T         int `json:"t"`
	Requests  int `json:"requests"`
	Throttled int `json:"throttled"`
	Delivered int `json:"delivered"`
	// Unix is the wall-clock second the sample starts at: the simulator's
	// quota windows are clock minutes.
	Unix int64 `json:"unix,omitempty"`
}

// quotaWindow is one clock minute of the shared token's quota.
type quotaWindow struct {
	From     int `json:"from_t"` // first sample of the minute in this run
	Seconds  int `json:"seconds"`
	Accepted int `json:"accepted"`
	Refused  int `json:"refused"`
}

type tencentOptions struct {
	agents, backlog, quota int
	outage, maxRun         time.Duration
	progress               io.Writer
}

// runTencent drains the agents' backlogs into one tencentsim enforcing the
// token's shared per-minute quota, after an outage if any.
func runTencent(o tencentOptions) (map[string]any, error) {
	const token = "fleet-token-0123456789"
	sim := tencentsim.New(tencentsim.Options{AccessToken: token, AccountID: 1, UserActionSetID: 2})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	if o.outage > 0 {
		sim.SetFaults(tencentsim.Faults{Outage: true})
	} else {
		sim.SetFaults(tencentsim.Faults{QuotaPerMinute: o.quota})
	}
	// Start on a whole second, so that each one-second sample lies in one
	// clock minute: the simulator's quota windows.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	start := time.Now()
	queues := make([]*memQueue, o.agents)
	var workers []*forwarder.Worker
	now := start.Unix()
	for a := range o.agents {
		q := newMemQueue()
		for i := range o.backlog {
			id := fmt.Sprintf("a%03d-%05d", a, i)
			q.entries = append(q.entries, spool.Entry{Seq: uint64(i + 1), ID: id, EnqueuedAt: start, Payload: []byte(fmt.Sprintf(
				`{"id":%q,"track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"hash_phone":"9d2a2b1c3f3e4d5c6b7a8990a1b2c3d4"}}`, id, now))})
		}
		queues[a] = q
		// Each agent has its own client (its own connections and its own
		// 4,000-a-minute limiter: each believes it has the whole token).
		c, err := tencent.New(tencent.Config{BaseURL: srv.URL, AccessToken: token, AccountID: 1, UserActionSetID: 2, Timeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		// Deployed defaults, except the first circuit-breaker open time and
		// back-off ceiling, shortened so that a run takes minutes.
		w := forwarder.New(forwarder.Config{Name: "tencent", Sender: c, Queue: q,
			FlushInterval: 100 * time.Millisecond, BackoffMax: 30 * time.Second, BreakerOpen: 5 * time.Second})
		workers = append(workers, w)
		w.Start(nil)
	}
	defer func() {
		for _, w := range workers {
			w.Close(context.Background())
		}
	}()

	var samples []sample
	var lastReq, lastThr, lastDel int
	total := o.agents * o.backlog
	outageEnded := time.Time{}
	var afterOutage []int
	reqDuringOutage, refusedAfterOutage := 0, 0
	var lastDeliveryAt time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for t := 1; ; t++ {
		<-tick.C
		st := sim.Stats()
		del, dead := 0, 0
		for _, q := range queues {
			a, d, _ := q.state()
			del += a
			dead += d
		}
		s := sample{T: t, Requests: st.Requests - lastReq, Throttled: throttled(st) - lastThr, Delivered: del - lastDel,
			Unix: start.Unix() + int64(t-1)}
		lastReq, lastThr, lastDel = st.Requests, throttled(st), del
		samples = append(samples, s)
		if s.Delivered > 0 {
			lastDeliveryAt = time.Now()
		}
		if o.outage > 0 && outageEnded.IsZero() {
			reqDuringOutage += s.Requests
		} else if o.outage > 0 {
			refusedAfterOutage += s.Throttled
			if len(afterOutage) < 10 {
				afterOutage = append(afterOutage, s.Requests)
			}
		}
		if o.outage > 0 && outageEnded.IsZero() && time.Since(start) >= o.outage-time.Second/2 {
			sim.SetFaults(tencentsim.Faults{QuotaPerMinute: o.quota})
			outageEnded = time.Now()
		}
		if o.progress != nil {
			fmt.Fprintf(o.progress, "t=%3ds requests %4d throttled %4d delivered %5d (total %d/%d)\n", t, s.Requests, s.Throttled, s.Delivered, del, total)
		}
		if del+dead == total || time.Since(start) > o.maxRun {
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
	dead := 0
	for _, q := range queues {
		_, d, _ := q.state()
		dead += d
	}
	res := map[string]any{
		"scenario": "tencent",
		"agents":   o.agents, "backlog": o.backlog, "quota_per_minute": o.quota, "outage_s": o.outage.Seconds(),
		"elapsed_s": elapsed.Seconds(), "delivered": lastDel, "dead_lettered": dead, "requests": st.Requests, "throttled": throttled(st),
		"accepted_requests": st.Requests - throttled(st),
		"ideal_s":           float64(total/50) / float64(o.quota) * 60, "agents_done": len(done),
		"quota_windows": windows(samples), "samples": samples,
	}
	if o.outage > 0 {
		res["requests_during_outage"] = reqDuringOutage
		res["refused_after_outage"] = refusedAfterOutage
		res["requests_first_10s_after_outage"] = afterOutage
		if !outageEnded.IsZero() && !lastDeliveryAt.IsZero() {
			res["drain_after_outage_s"] = lastDeliveryAt.Sub(outageEnded).Seconds()
		}
	}
	if len(done) > 0 {
		res["agent_done_s_min"], res["agent_done_s_median"], res["agent_done_s_max"] = done[0], done[len(done)/2], done[len(done)-1]
	}
	return res, nil
}

// windows sums the samples by clock minute: what the fleet got of each
// minute's quota.
func windows(samples []sample) []quotaWindow {
	var out []quotaWindow
	for _, s := range samples {
		if s.Unix == 0 {
			continue
		}
		if len(out) == 0 || s.Unix%60 == 0 {
			out = append(out, quotaWindow{From: s.T})
		}
		w := &out[len(out)-1]
		w.Seconds++
		w.Accepted += s.Requests - s.Throttled
		w.Refused += s.Throttled
	}
	return out
}

// throttled counts refused requests (over the quota; resets during an outage).
func throttled(st tencentsim.Stats) int { return st.Requests - st.AcceptedRequests }
