package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

var shanghai = time.FixedZone("CST", 8*3600)

type tongdunOptions struct {
	agents, backlog, dailyCap int
	// skew: each agent's clock is off TongDun's by a uniform draw in
	// [-skew, +skew] (seeded by seed).
	skew, latency time.Duration
	start         time.Time // simulated time at the start
	seed          uint64
	reprobe       time.Duration // forwarder.Config.ClockSkew
	maxRun        time.Duration // real time
	// quiet is how long (real time) every agent with checks left must have
	// been paused before the night is skipped; lead is the simulated time
	// then left before the first pause ends, watched at real speed.
	quiet, lead time.Duration
	bucket      time.Duration // timeline resolution
	progress    io.Writer
}

// tdResult is what the TongDun scenario shows.
type tdResult struct {
	Scenario     string    `json:"scenario"`
	Agents       int       `json:"agents"`
	Backlog      int       `json:"backlog"`
	Checks       int       `json:"checks"`
	DailyCap     int       `json:"daily_cap"`
	SkewMS       float64   `json:"skew_ms"`
	LatencyMS    float64   `json:"latency_ms"`
	ReprobeS     float64   `json:"reprobe_s"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	ElapsedRealS float64   `json:"elapsed_real_s"`
	// Nothing lost: every check delivered exactly once (TD accepted each
	// session once), none dead-lettered, none left.
	Delivered     int `json:"delivered"`
	DeadLettered  int `json:"dead_lettered"`
	Left          int `json:"left"`
	AcceptedByTD  int `json:"accepted_by_td"`
	AcceptedTwice int `json:"accepted_twice"`
	Requests      int `json:"requests"`
	// Refused305 counts daily-cap answers; per agent, the most any agent got.
	Refused305 int `json:"refused_305"`
	// AcceptedByStretch: checks accepted before the first skipped night,
	// after it, after a second one (a day late).
	AcceptedByStretch     []int                     `json:"accepted_by_stretch"`
	Refused305MaxPerAgent int                       `json:"refused_305_max_per_agent"`
	ByDay                 map[string]tdsim.DayStats `json:"by_day"`
	Days                  []tdDay                   `json:"days"`
	Nights                []tdNight                 `json:"nights"`
	PerAgent              []tdAgent                 `json:"per_agent"`
	Timeline              []tdBucket                `json:"timeline"`
}

// tdDay is one Shanghai day as TongDun saw it.
type tdDay struct {
	Day            string `json:"day"`
	Requests       int    `json:"requests"`
	Accepted       int    `json:"accepted"`
	Refused305     int    `json:"refused_305"`
	AgentsServed   int    `json:"agents_served"` // agents with at least one check accepted
	AgentsAccepted [3]int `json:"agent_accepted_min_median_max"`
	// CapReachedS: seconds from the day's first answer to its first 305.
	CapReachedS float64 `json:"cap_reached_s,omitempty"`
	// LastAcceptedS: seconds from the day's first answer to its last
	// accepted check (the drain, on the day the backlog ends).
	LastAcceptedS float64 `json:"last_accepted_s"`
	// PeakPerBucket: most requests in one timeline bucket.
	PeakPerBucket int `json:"peak_requests_per_bucket"`
}

// tdNight is a night skipped while every agent with checks left was
// paused, and the midnight that ended it.
type tdNight struct {
	AllPausedAt  time.Time `json:"all_paused_at"`
	JumpFrom     time.Time `json:"jump_from"`
	JumpTo       time.Time `json:"jump_to"`
	Midnight     time.Time `json:"midnight"`
	AgentsPaused int       `json:"agents_paused"`
	// RequestsWhilePaused: requests from AllPausedAt to the first agent's
	// pause end (the paused fleet's silence).
	RequestsWhilePaused int `json:"requests_while_paused"`
	// Before midnight: requests by agents whose clocks are ahead of TD's,
	// and the 305s they got (in the lead before midnight).
	RequestsBeforeMidnight int `json:"requests_before_midnight"`
	Refused305Before       int `json:"refused_305_before_midnight"`
	// The herd: requests in the first 10 ms, 100 ms, 1 s after midnight,
	// and when each agent made its first request after the jump, from
	// midnight (ms): min, median, max.
	RequestsFirst10ms  int        `json:"requests_first_10ms"`
	RequestsFirst100ms int        `json:"requests_first_100ms"`
	RequestsFirst1s    int        `json:"requests_first_1s"`
	FirstRequestMS     [3]float64 `json:"agent_first_request_ms_min_median_max"`
	AgentsBackWithin   [3]int     `json:"agents_back_within_10ms_100ms_1s"`
	// AgentsEarly: agents whose first request came before TD's midnight
	// (their clocks are ahead).
	AgentsEarly int `json:"agents_early"`
}

type tdAgent struct {
	OffsetMS   float64        `json:"offset_ms"`
	AcceptedBy map[string]int `json:"accepted_by_day"`
	// AcceptedIn: accepted in each stretch of time that ran (before the
	// first skipped night, after it, ...).
	AcceptedIn  []int     `json:"accepted_by_stretch"`
	Refused305  int       `json:"refused_305"`
	DoneAt      time.Time `json:"done_at"`
	FirstResume []float64 `json:"first_request_after_midnight_ms,omitempty"`
}

type tdBucket struct {
	T        time.Time `json:"t"`
	Seg      int       `json:"seg"` // stretch of time between skipped nights
	Requests int       `json:"requests"`
	Accepted int       `json:"accepted"`
	Capped   int       `json:"capped"`
}

// tdRequest is one request as TongDun received it.
type tdRequest struct {
	at    time.Time // shared (TongDun's) clock, on arrival
	done  time.Time // and when answered (after -latency): the day it counts in
	agent int
	code  int
}

// tap records every request the simulator answers: when, whose, which code.
type tap struct {
	h   http.Handler
	now func() time.Time
	mu  sync.Mutex
	log []tdRequest
}

func (t *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := t.now()
	raw, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(raw))
	agent := -1
	if i := bytes.Index(raw, []byte(`"session_id":"a`)); i >= 0 {
		rest := raw[i+len(`"session_id":"a`):]
		if j := bytes.IndexByte(rest, '-'); j > 0 {
			agent, _ = strconv.Atoi(string(rest[:j]))
		}
	}
	rec := &bodyTap{ResponseWriter: w}
	t.h.ServeHTTP(rec, r)
	var a struct {
		Code int `json:"code"`
	}
	_ = json.Unmarshal(rec.body.Bytes(), &a)
	t.mu.Lock()
	t.log = append(t.log, tdRequest{at: at, done: t.now(), agent: agent, code: a.Code})
	t.mu.Unlock()
}

func (t *tap) since(i int) []tdRequest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]tdRequest(nil), t.log[i:]...)
}

type bodyTap struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (b *bodyTap) Write(p []byte) (int, error) {
	if b.body.Len() < 4096 {
		b.body.Write(p)
	}
	return b.ResponseWriter.Write(p)
}

func dayOf(t time.Time) string { return t.In(shanghai).Format("2006-01-02") }

// runTongDun: agents forward their queued checks to one tdsim whose daily
// cap the whole fleet shares, across one or more Shanghai midnights.
func runTongDun(o tongdunOptions) (*tdResult, error) {
	if o.quiet <= 0 {
		o.quiet = time.Second
	}
	if o.lead <= 0 {
		o.lead = 2 * time.Second
	}
	if o.bucket <= 0 {
		o.bucket = 100 * time.Millisecond
	}
	if o.skew >= o.lead {
		return nil, fmt.Errorf("skew %s must be shorter than the lead %s watched before midnight", o.skew, o.lead)
	}
	const partner, key, channel = "bank", "pk-fleet-secret", "bank-app"
	clk := newSimClock(o.start)
	sim := tdsim.New(tdsim.Options{PartnerCode: partner, PartnerKey: key, Channel: channel, Clock: clk.Now})
	sim.SetFaults(tdsim.Faults{DailyCap: o.dailyCap, Latency: o.latency})
	tp := &tap{h: sim, now: clk.Now}
	srv := httptest.NewServer(tp)
	defer srv.Close()

	rng := rand.New(rand.NewPCG(o.seed, 0x7d))
	queues := make([]*memQueue, o.agents)
	offsets := make([]time.Duration, o.agents)
	workers := make([]*forwarder.Worker, o.agents)
	defer func() {
		for _, w := range workers {
			if w != nil {
				w.Close(context.Background())
			}
		}
	}()
	queuedAt := o.start.Add(-time.Minute)
	for a := range o.agents {
		if o.skew > 0 {
			offsets[a] = time.Duration(rng.Int64N(int64(2*o.skew)+1)) - o.skew
		}
		ac := agentClock{c: clk, off: offsets[a]}
		q := newMemQueue()
		q.now = clk.Now
		for i := range o.backlog {
			req := tongdun.Request{Channel: channel, SessionID: fmt.Sprintf("a%03d-%05d", a, i), DecisionEvent: "withdraw",
				EventTime: tongdun.FormatEventTime(queuedAt), AccountID: fmt.Sprintf("acct-%03d-%05d", a, i),
				Terminal: &tongdun.Terminal{IP: "210.20.10.33"}, EventDetail: map[string]map[string]any{"withdraw": {}}}
			b, err := json.Marshal(req)
			if err != nil {
				return nil, err
			}
			q.entries = append(q.entries, spool.Entry{Seq: uint64(i + 1), ID: req.SessionID, EnqueuedAt: queuedAt, Payload: b})
		}
		queues[a] = q
		// As deployed: the client's own transport, 3 s per attempt, one
		// quick retry; the worker's defaults with TongDun's batch of 10.
		c, err := tongdun.New(tongdun.Config{URL: srv.URL + "/riskService", PartnerCode: partner, PartnerKey: key,
			Channel: channel, Clock: ac.Now})
		if err != nil {
			return nil, err
		}
		workers[a] = forwarder.New(forwarder.Config{Name: "tongdun", Sender: c, Queue: q, BatchSize: 10, Clock: ac, ClockSkew: o.reprobe})
	}
	realStart := time.Now()
	for _, w := range workers {
		w.Start(nil)
	}

	res := &tdResult{Scenario: "tongdun", Agents: o.agents, Backlog: o.backlog, Checks: o.agents * o.backlog,
		DailyCap: o.dailyCap, SkewMS: ms(o.skew), LatencyMS: ms(o.latency), ReprobeS: o.reprobe.Seconds(), Start: o.start}
	type jump struct {
		allPaused, from, to, earliest time.Time
		paused                        int
	}
	var jumps []jump
	var allPausedAt time.Time
	var allPausedReal time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		<-tick.C
		now := clk.Now()
		del, dead, left, paused := 0, 0, 0, 0
		earliest := time.Time{}
		all := true
		for a, q := range queues {
			d, x, l := q.state()
			del, dead, left = del+d, dead+x, left+l
			if l == 0 {
				continue
			}
			st := workers[a].Status()
			if st.State != forwarder.StatePaused || st.PausedUntil == nil || st.InFlight > 0 {
				all = false
				continue
			}
			paused++
			resume := st.PausedUntil.Add(-offsets[a]) // on TongDun's clock
			if earliest.IsZero() || resume.Before(earliest) {
				earliest = resume
			}
		}
		if o.progress != nil && n%10 == 0 {
			st := sim.Stats()
			fmt.Fprintf(o.progress, "%s  requests %6d (305: %5d)  delivered %6d/%d  paused %d\n",
				now.In(shanghai).Format("2006-01-02 15:04:05.0"), st.Requests, st.ByCode["305"], del, res.Checks, paused)
		}
		if del+dead == res.Checks || time.Since(realStart) > o.maxRun {
			res.End = now
			break
		}
		// Skip the night once every agent with checks left has been paused
		// for a while (nothing in flight): to the lead before the first
		// pause ends.
		if !all || paused == 0 || earliest.Sub(now) <= o.lead {
			allPausedAt = time.Time{}
			continue
		}
		if allPausedAt.IsZero() {
			allPausedAt, allPausedReal = now, time.Now()
			continue
		}
		if time.Since(allPausedReal) < o.quiet {
			continue
		}
		to := earliest.Add(-o.lead)
		// The night closes the agents' idle connections.
		srv.CloseClientConnections()
		clk.Jump(to.Sub(now))
		jumps = append(jumps, jump{allPaused: allPausedAt, from: now, to: to, earliest: earliest, paused: paused})
		if o.progress != nil {
			fmt.Fprintf(o.progress, "all %d agents with checks left paused since %s: skipping to %s\n", paused,
				allPausedAt.In(shanghai).Format("15:04:05.0"), to.In(shanghai).Format("2006-01-02 15:04:05.0"))
		}
		allPausedAt = time.Time{}
	}
	res.ElapsedRealS = time.Since(realStart).Seconds()

	// What happened.
	st := sim.Stats()
	res.AcceptedByTD, res.Requests, res.Refused305, res.ByDay = st.Accepted, st.Requests, st.ByCode["305"], st.ByDay
	for _, n := range st.BySession {
		if n > 1 {
			res.AcceptedTwice++
		}
	}
	for _, q := range queues {
		d, x, l := q.state()
		res.Delivered, res.DeadLettered, res.Left = res.Delivered+d, res.DeadLettered+x, res.Left+l
	}
	reqs := tp.since(0)
	res.PerAgent = make([]tdAgent, o.agents)
	for a := range res.PerAgent {
		res.PerAgent[a] = tdAgent{OffsetMS: ms(offsets[a]), AcceptedBy: map[string]int{}, DoneAt: queues[a].doneAt,
			AcceptedIn: make([]int, len(jumps)+1)}
	}
	for _, r := range reqs {
		if r.agent < 0 || r.agent >= o.agents {
			continue
		}
		pa := &res.PerAgent[r.agent]
		switch r.code {
		case tongdun.CodeOK:
			pa.AcceptedBy[dayOf(r.done)]++
			seg := 0
			for seg < len(jumps) && !r.done.Before(jumps[seg].to) {
				seg++
			}
			pa.AcceptedIn[seg]++
		case tongdun.CodeDailyCap:
			pa.Refused305++
		}
	}
	res.AcceptedByStretch = make([]int, len(jumps)+1)
	for _, pa := range res.PerAgent {
		res.Refused305MaxPerAgent = max(res.Refused305MaxPerAgent, pa.Refused305)
		for i, n := range pa.AcceptedIn {
			res.AcceptedByStretch[i] += n
		}
	}

	// Stretches of time that ran (between skipped nights), and the timeline.
	type seg struct{ from, to time.Time }
	segs := []seg{{from: o.start}}
	for _, j := range jumps {
		segs[len(segs)-1].to = j.from
		segs = append(segs, seg{from: j.to})
	}
	segs[len(segs)-1].to = res.End
	for i, s := range segs {
		from := s.from.Truncate(o.bucket)
		nb := int(s.to.Sub(from)/o.bucket) + 1
		bs := make([]tdBucket, nb)
		for k := range bs {
			bs[k] = tdBucket{T: from.Add(time.Duration(k) * o.bucket), Seg: i}
		}
		in := func(t time.Time) (int, bool) {
			if t.Before(from) || !t.Before(s.to.Add(o.bucket)) {
				return 0, false
			}
			return min(int(t.Sub(from)/o.bucket), nb-1), true
		}
		for _, r := range reqs {
			if k, ok := in(r.at); ok {
				bs[k].Requests++
			}
			if k, ok := in(r.done); ok {
				switch r.code {
				case tongdun.CodeOK:
					bs[k].Accepted++
				case tongdun.CodeDailyCap:
					bs[k].Capped++
				}
			}
		}
		res.Timeline = append(res.Timeline, bs...)
	}

	// Per day.
	days := map[string]*tdDay{}
	var order []string
	perAgentDay := map[string][]int{}
	first, firstCap, lastOK := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	for _, r := range reqs {
		d := dayOf(r.done)
		if days[d] == nil {
			days[d] = &tdDay{Day: d}
			order = append(order, d)
			perAgentDay[d] = make([]int, o.agents)
			first[d] = r.done
		}
		dd := days[d]
		dd.Requests++
		switch r.code {
		case tongdun.CodeOK:
			dd.Accepted++
			if r.agent >= 0 && r.agent < o.agents {
				perAgentDay[d][r.agent]++
			}
			if r.done.After(lastOK[d]) {
				lastOK[d] = r.done
			}
		case tongdun.CodeDailyCap:
			dd.Refused305++
			if firstCap[d].IsZero() || r.done.Before(firstCap[d]) {
				firstCap[d] = r.done
			}
		}
		if r.done.Before(first[d]) {
			first[d] = r.done
		}
	}
	for _, d := range order {
		dd := days[d]
		var served []int
		for _, n := range perAgentDay[d] {
			if n > 0 {
				served = append(served, n)
			}
		}
		sort.Ints(served)
		dd.AgentsServed = len(served)
		if len(served) > 0 {
			dd.AgentsAccepted = [3]int{served[0], served[len(served)/2], served[len(served)-1]}
		}
		if !firstCap[d].IsZero() {
			dd.CapReachedS = firstCap[d].Sub(first[d]).Seconds()
		}
		if !lastOK[d].IsZero() {
			dd.LastAcceptedS = lastOK[d].Sub(first[d]).Seconds()
		}
		for _, b := range res.Timeline {
			if dayOf(b.T) == d {
				dd.PeakPerBucket = max(dd.PeakPerBucket, b.Requests)
			}
		}
		res.Days = append(res.Days, *dd)
	}

	// Each night, and the midnight that ended it.
	for _, j := range jumps {
		m := tongdun.NextShanghaiDay(j.from)
		nt := tdNight{AllPausedAt: j.allPaused, JumpFrom: j.from, JumpTo: j.to, Midnight: m, AgentsPaused: j.paused}
		firstBack := map[int]time.Time{}
		for _, r := range reqs {
			if !r.at.Before(j.allPaused) && r.at.Before(j.earliest) {
				nt.RequestsWhilePaused++
			}
			if r.at.Before(j.to) {
				continue
			}
			if r.at.Before(m) {
				nt.RequestsBeforeMidnight++
				if r.code == tongdun.CodeDailyCap {
					nt.Refused305Before++
				}
			}
			if d := r.at.Sub(m); d >= 0 {
				if d < 10*time.Millisecond {
					nt.RequestsFirst10ms++
				}
				if d < 100*time.Millisecond {
					nt.RequestsFirst100ms++
				}
				if d < time.Second {
					nt.RequestsFirst1s++
				}
			}
			if t, ok := firstBack[r.agent]; r.agent >= 0 && (!ok || r.at.Before(t)) {
				firstBack[r.agent] = r.at
			}
		}
		var back []float64
		for a, t := range firstBack {
			d := ms(t.Sub(m))
			back = append(back, d)
			res.PerAgent[a].FirstResume = append(res.PerAgent[a].FirstResume, d)
			switch {
			case d < 0:
				nt.AgentsEarly++
			case d < 10:
				nt.AgentsBackWithin[0]++
				fallthrough
			case d < 100:
				nt.AgentsBackWithin[1]++
				fallthrough
			case d < 1000:
				nt.AgentsBackWithin[2]++
			}
		}
		sort.Float64s(back)
		if len(back) > 0 {
			nt.FirstRequestMS = [3]float64{back[0], back[len(back)/2], back[len(back)-1]}
		}
		res.Nights = append(res.Nights, nt)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
