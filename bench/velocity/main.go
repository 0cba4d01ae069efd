// Command velocity measures fleet velocity (BENCHMARKS.md, "Fleet
// velocity"), side by side in one run:
//
//  1. 2,000 decisions/s across the fleet: agents A and B (fleet velocity
//     on) take 1,000/s each, of accounts drawn from a million; the time from
//     an increment's decision at A to its count in B's view (B's
//     outpost_fleet_velocity_merge_delay_seconds), and B's decision latency
//     against agent C's (fleet velocity off, Kafka on) at the same rate in
//     alternating segments of the same run;
//
//  2. the memory of an agent's fleet view holding 1,000,000 distinct
//     subjects (fed to the topic by this program as another agent);
//
//  3. catch-up: an agent stopped while an hour of fleet traffic at 2,000
//     decisions/s (7.2 million increments, event times over that hour) goes
//     to the topic, then started: the time until its view is in step.
//
//     go build -o /tmp/agent ./cmd/agent
//     go run ./bench/velocity -agent-bin /tmp/agent
//
// The broker (kfake, in this process, in memory) runs here; the agents are
// the real binary. It only uses loopback and stops by itself.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outpost-agent/outpost/bench/internal/agentproc"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/upstream"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/velocity:", err)
		os.Exit(1)
	}
}

const policyYAML = `version: "bench-velocity"
thresholds: {review_at: 50, decline_at: 80}
offline_limit: 1000000
velocity:
  - {name: apps_1h, key: account, window: 1h, fleet: true}
rules:
  - id: FLEET_APPS
    class: block
    when: 'velocity.fleet("apps_1h") >= 50'
    reason: 50 applications across the fleet in an hour (fleet counter apps_1h)
`

type bench struct {
	bin, dir, brokers string
	common            []string
	log               io.Writer
}

func run(args []string) error {
	fs := flag.NewFlagSet("velocity", flag.ContinueOnError)
	bin := fs.String("agent-bin", "", "the agent binary (go build -o /tmp/agent ./cmd/agent)")
	rate := fs.Int("rate", 2000, "decisions/s across the fleet (half at each agent)")
	segment := fs.Duration("segment", 15*time.Second, "length of each measured segment")
	rounds := fs.Int("rounds", 2, "rounds of (fleet velocity on, off)")
	accounts := fs.Int("accounts", 1_000_000, "distinct accounts the decisions are drawn from")
	subjects := fs.Int("subjects", 1_000_000, "distinct subjects fed for the memory figure (0: skip)")
	offline := fs.Duration("offline", time.Hour, "fleet traffic the catch-up agent misses, at -rate (0: skip)")
	catchUpLimit := fs.Duration("catch-up-limit", 30*time.Minute, "give up on the catch-up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" {
		return errors.New("-agent-bin is required")
	}
	dir, err := os.MkdirTemp("", "bench-velocity")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	for _, k := range []string{fleet.KindActions, fleet.KindDecisions, fleet.KindVelocity} {
		if err := c.CreateTopic(fleet.Topic("outpost", k), 6, nil); err != nil {
			return err
		}
	}
	if err := c.CreateTopic(fleet.Topic("outpost", fleet.KindAgents), 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return err
	}
	b := &bench{bin: *bin, dir: dir, brokers: strings.Join(c.ListenAddrs(), ","), log: os.Stderr}
	key := filepath.Join(dir, "fleet.key")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(key, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(pol, []byte(policyYAML), 0o600); err != nil {
		return err
	}
	b.common = []string{"AGENT_KAFKA_BROKERS=" + b.brokers, "AGENT_KAFKA_KEY_FILE=" + key, "AGENT_POLICY_FILE=" + pol}
	secret := bytes.Repeat([]byte("k"), 32)
	var out strings.Builder

	// 1. Propagation and the decisions' latency, fleet velocity on and off.
	on := []string{"AGENT_FLEET_VELOCITY=true"}
	a, err := b.start("branch-a", on)
	if err != nil {
		return err
	}
	bb, err := b.start("branch-b", on)
	if err != nil {
		return err
	}
	cc, err := b.start("branch-c", nil)
	if err != nil {
		return err
	}
	per := float64(*rate) / 2
	fmt.Fprintf(b.log, "warming up\n")
	b.drive([]*proc{a, bb, cc}, per, 3*time.Second, *accounts)
	lat := map[string][]time.Duration{}
	var delay histDelta
	for r := range *rounds {
		fmt.Fprintf(b.log, "round %d: A and B (fleet velocity on) at %.0f/s each\n", r+1, per)
		h0, err := bb.delayHist()
		if err != nil {
			return err
		}
		got := b.drive([]*proc{a, bb}, per, *segment, *accounts)
		time.Sleep(500 * time.Millisecond) // the last increments reach B
		h1, err := bb.delayHist()
		if err != nil {
			return err
		}
		delay.add(h0, h1)
		lat["on"] = append(lat["on"], got[1]...)
		fmt.Fprintf(b.log, "round %d: A (on) and C (fleet velocity off) at %.0f/s each\n", r+1, per)
		got = b.drive([]*proc{a, cc}, per, *segment, *accounts)
		lat["off"] = append(lat["off"], got[1]...)
	}
	stB := bb.velocity()
	fmt.Fprintf(&out, "| %d decisions/s across the fleet (%.0f/s at each of two agents), %d × %s | p50 | p99 | max | count |\n|---|---|---|---|---|\n",
		*rate, per, *rounds, *segment)
	fmt.Fprintf(&out, "| increment at A to its count in B's view (B's merge delay histogram) | %s | **%s** | ≤ %s | %d |\n",
		delay.quantile(.5), delay.quantile(.99), delay.maxBound(), int64(delay.count))
	for _, k := range []string{"on", "off"} {
		s := lat[k]
		slices.Sort(s)
		name := "B's decisions, fleet velocity **on** (A's increments merging meanwhile)"
		if k == "off" {
			name = "C's decisions, fleet velocity **off** (Kafka on), same rate, alternating segments"
		}
		fmt.Fprintf(&out, "| %s | %s | **%s** | %s | %d |\n", name, pct(s, 50), pct(s, 99), s[len(s)-1].Round(10*time.Microsecond), len(s))
	}
	fmt.Fprintf(&out, "\nB's view after the run: %d counts held, %d merged, %d duplicates, lag %d records, state %s.\n",
		stB.Entries, stB.Merged, stB.Duplicates, lagOf(stB), stB.State)
	fmt.Print(out.String())
	out.Reset()
	cc.stop()

	// 2. Memory with 1M distinct subjects in the fleet view.
	feed, err := newFeeder(b.brokers, secret)
	if err != nil {
		return err
	}
	defer feed.close()
	if *subjects > 0 {
		m, err := b.start("memory", append(on, "AGENT_FLEET_VELOCITY_MAX_ENTRIES="+strconv.Itoa(*subjects*11/10+100_000), "AGENT_MEMORY_LIMIT=256MiB"))
		if err != nil {
			return err
		}
		if err := m.waitLive(); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		rss0, heap0 := m.rss(), m.heapInuse()
		st0 := m.velocity()
		fmt.Fprintf(b.log, "feeding %d distinct subjects\n", *subjects)
		now := time.Now()
		t0 := time.Now()
		if err := feed.send(*subjects, func(i int) (string, time.Time) { return fmt.Sprintf("mem-%d", i), now }); err != nil {
			return err
		}
		fed := time.Since(t0)
		if err := m.waitMerged(st0.Merged + int64(*subjects)); err != nil {
			return err
		}
		merged := time.Since(t0)
		time.Sleep(5 * time.Second)
		rss1, heap1 := m.rss(), m.heapInuse()
		st1 := m.velocity()
		fmt.Fprintf(&out, "| fleet view, %d distinct subjects fed (one increment each) | before | after | per count |\n|---|---|---|---|\n", *subjects)
		fmt.Fprintf(&out, "| counts held | %d | %d | |\n", st0.Entries, st1.Entries)
		fmt.Fprintf(&out, "| Go heap in use (`go_memstats_heap_inuse_bytes`) | %.1f MiB | %.1f MiB | **%.0f B** |\n",
			mib(heap0), mib(heap1), float64(heap1-heap0)/float64(max(st1.Entries-st0.Entries, 1)))
		fmt.Fprintf(&out, "| agent RSS (VmRSS) | %.1f MiB | %.1f MiB | %.0f B |\n", mib(rss0), mib(rss1), float64(rss1-rss0)/float64(max(st1.Entries-st0.Entries, 1)))
		fmt.Fprintf(&out, "\nFed in %.1f s by this program; merged by the agent %.1f s after the first was sent (%.0f increments/s).\n",
			fed.Seconds(), merged.Seconds(), float64(*subjects)/merged.Seconds())
		fmt.Print(out.String())
		out.Reset()
		m.stop()
	}

	// 3. Catch-up after an hour offline.
	if *offline > 0 {
		n := int(offline.Seconds() * float64(*rate))
		x, err := b.start("catch-up", append(on, "AGENT_FLEET_VELOCITY_MAX_ENTRIES="+strconv.Itoa(n+n/10+100_000), "AGENT_MEMORY_LIMIT=0"))
		if err != nil {
			return err
		}
		if err := x.waitLive(); err != nil {
			return err
		}
		x.stop()
		fmt.Fprintf(b.log, "the catch-up agent is stopped; %d increments of %s of fleet traffic go to the topic\n", n, *offline)
		start := time.Now().Add(-*offline)
		step := *offline / time.Duration(n)
		rng := rand.New(rand.NewPCG(7, 7))
		if err := feed.send(n, func(i int) (string, time.Time) {
			return fmt.Sprintf("acct-%d", rng.IntN(*accounts)), start.Add(time.Duration(i) * step)
		}); err != nil {
			return err
		}
		t0 := time.Now()
		x, err = b.start("catch-up", append(on, "AGENT_FLEET_VELOCITY_MAX_ENTRIES="+strconv.Itoa(n+n/10+100_000), "AGENT_MEMORY_LIMIT=0"))
		if err != nil {
			return err
		}
		ready := time.Since(t0)
		var st fleet.VelocityStatus
		peak := int64(0)
		for {
			st = x.velocity()
			peak = max(peak, x.rss())
			if st.State == fleet.ViewLive && lagOf(st) == 0 && st.Merged > 0 {
				break
			}
			if time.Since(t0) > *catchUpLimit {
				return fmt.Errorf("catch-up: not in step after %s (state %s, lag %d records)", *catchUpLimit, st.State, lagOf(st))
			}
			time.Sleep(100 * time.Millisecond)
		}
		caught := time.Since(t0)
		fmt.Fprintf(&out, "| catch-up: stopped while %s of fleet traffic at %d decisions/s (%d increments) went by | |\n|---|---|\n", *offline, *rate, n)
		fmt.Fprintf(&out, "| start to ready (counts loaded from the store) | %.1f s |\n", ready.Seconds())
		fmt.Fprintf(&out, "| start to in step (live, lag 0) | **%.1f s** (%.0f increments/s) |\n", caught.Seconds(), float64(st.Read)/caught.Seconds())
		fmt.Fprintf(&out, "| counts held after | %d (about %.0f MiB at %d B) |\n", st.Entries, float64(st.ApproxBytes)/(1<<20), fleet.BytesPerEntry)
		fmt.Fprintf(&out, "| peak RSS while catching up (sampled every 100 ms) | %.0f MiB |\n", mib(peak))
		fmt.Print(out.String())
		x.stop()
	}
	a.stop()
	bb.stop()
	return nil
}

// proc is an agent process of the bench.
type proc struct{ *agentproc.Proc }

func (b *bench) start(name string, env []string) (*proc, error) {
	env = append(append([]string{"AGENT_ID=" + name, "AGENT_MAX_CONCURRENT_REQUESTS=1024"}, b.common...), env...)
	p, err := agentproc.Start(name, b.bin, filepath.Join(b.dir, name), "agent ready", 10*time.Minute, env)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

// stop stops p, saying so when it did not exit cleanly.
func (p *proc) stop() {
	if err := p.Stop(60 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "%s exited: %v\n", p.Name, err)
	}
}

func (p *proc) velocity() fleet.VelocityStatus {
	var st struct {
		FleetVelocity fleet.VelocityStatus `json:"fleet_velocity"`
	}
	b, err := p.Get("/v1/status")
	if err != nil || json.Unmarshal(b, &st) != nil {
		return fleet.VelocityStatus{State: "unreadable"} // the callers wait on, and time out
	}
	return st.FleetVelocity
}

func lagOf(st fleet.VelocityStatus) int64 {
	var n int64
	for _, p := range st.Partitions {
		n += p.Lag
	}
	return n
}

// waitFor polls the agent's fleet view until ok, for 10 minutes at most.
func (p *proc) waitFor(what string, ok func(fleet.VelocityStatus) bool) error {
	deadline := time.Now().Add(10 * time.Minute)
	for st := p.velocity(); !ok(st); st = p.velocity() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not %s after 10 minutes (state %s, merged %d)", p.Name, what, st.State, st.Merged)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (p *proc) waitLive() error {
	return p.waitFor("live", func(st fleet.VelocityStatus) bool { return st.State == fleet.ViewLive })
}

func (p *proc) waitMerged(n int64) error {
	return p.waitFor(fmt.Sprintf("%d merged", n), func(st fleet.VelocityStatus) bool { return st.Merged >= n })
}

func (p *proc) rss() int64 { return p.Memory("VmRSS") }

// metric reads one unlabelled sample from /metrics.
func (p *proc) metric(name string) float64 {
	b, _ := p.Get("/metrics")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

func (p *proc) heapInuse() int64 { return int64(p.metric("go_memstats_heap_inuse_bytes")) }

// delayHist is the merge delay histogram's cumulative buckets.
func (p *proc) delayHist() (map[float64]float64, error) {
	b, err := p.Get("/metrics")
	if err != nil {
		return nil, err
	}
	out := map[float64]float64{}
	const pre = `outpost_fleet_velocity_merge_delay_seconds_bucket{le="`
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, pre)
		if !ok {
			continue
		}
		le, val, _ := strings.Cut(rest, `"} `)
		bound := math.Inf(1)
		if le != "+Inf" {
			bound, _ = strconv.ParseFloat(le, 64)
		}
		out[bound], _ = strconv.ParseFloat(strings.TrimSpace(val), 64)
	}
	if len(out) == 0 {
		return nil, errors.New("no merge delay histogram in /metrics")
	}
	return out, nil
}

// histDelta sums the differences of cumulative histograms.
type histDelta struct {
	cum   map[float64]float64
	count float64
}

func (h *histDelta) add(before, after map[float64]float64) {
	if h.cum == nil {
		h.cum = map[float64]float64{}
	}
	for b, v := range after {
		h.cum[b] += v - before[b]
	}
	h.count = h.cum[math.Inf(1)]
}

// quantile interpolates linearly within the bucket holding it.
func (h *histDelta) quantile(q float64) string {
	bounds := make([]float64, 0, len(h.cum))
	for b := range h.cum {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	want := q * h.count
	lo, below := 0.0, 0.0
	for _, b := range bounds {
		if c := h.cum[b]; c >= want {
			if math.IsInf(b, 1) {
				return "> " + secs(lo)
			}
			f := 0.0
			if c > below {
				f = (want - below) / (c - below)
			}
			return secs(lo + f*(b-lo))
		} else {
			lo, below = b, c
		}
	}
	return "?"
}

func (h *histDelta) maxBound() string {
	bounds := make([]float64, 0, len(h.cum))
	for b := range h.cum {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	for _, b := range bounds {
		if h.cum[b] >= h.count {
			return secs(b)
		}
	}
	return "?"
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
}

func pct(s []time.Duration, p int) time.Duration {
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// drive sends decisions to each target at rate/s, open loop, for d, and
// returns each target's latencies, measured from the intended send time.
func (b *bench) drive(targets []*proc, rate float64, d time.Duration, accounts int) [][]time.Duration {
	out := make([][]time.Duration, len(targets))
	var wg sync.WaitGroup
	start := time.Now().Add(50 * time.Millisecond)
	n := int64(rate * d.Seconds())
	for ti, t := range targets {
		var next atomic.Int64
		var mu sync.Mutex
		for w := range 48 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ti), uint64(w)))
				for {
					i := next.Add(1) - 1
					if i >= n {
						return
					}
					at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if w := time.Until(at); w > 0 {
						time.Sleep(w)
					}
					body := fmt.Sprintf(`{"session_id":"s-%d","decision_event":"withdraw","event_time":"2026-12-04T10:00:00.000+08:00","account_id":"acct-%d",`+
						`"terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":100}`, i, rng.IntN(accounts))
					resp, err := client.Post("http://"+t.Addr+"/v1/decisions", "application/json", strings.NewReader(body))
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						continue
					}
					l := time.Since(at)
					mu.Lock()
					out[ti] = append(out[ti], l)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return out
}

// feeder is another agent of the fleet, as far as the topic can tell: it
// produces increments with the fleet's sender.
type feeder struct {
	p      *fleet.Producer
	s      *fleet.Sender
	secret []byte
	seq    uint64
	epoch  int64
}

func newFeeder(brokers string, secret []byte) (*feeder, error) {
	p, err := fleet.NewProducer(fleet.ProducerConfig{Conn: fleet.Conn{Brokers: strings.Split(brokers, ",")}, AgentID: "bench-feed"})
	if err != nil {
		return nil, err
	}
	s := p.Sender(fleet.SenderConfig{Queue: fleet.VelocityQueue, Topic: fleet.Topic("outpost", fleet.KindVelocity), Kind: fleet.KindVelocity, Key: fleet.VelocityKey})
	return &feeder{p: p, s: s, secret: secret, epoch: time.Now().UnixNano()}, nil
}

func (f *feeder) close() { f.p.Close() }

// send produces n increments of apps_1h; each(i) gives the account and
// the event time of the i-th.
func (f *feeder) send(n int, each func(i int) (string, time.Time)) error {
	const batch = 10_000
	for i := 0; i < n; i += batch {
		items := make([]upstream.Item, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			acct, at := each(j)
			f.seq++
			p, err := fleet.EncodeIncrement(fleet.Increment{Counter: "apps_1h", WindowMS: 3600_000, Key: "account",
				Subject: fleet.SubjectHash(f.secret, "account", acct), Count: 1, EventTime: at.UTC(), Epoch: f.epoch})
			if err != nil {
				return err
			}
			items = append(items, upstream.Item{ID: fmt.Sprintf("feed-%d/apps_1h", f.seq), Payload: p, Seq: f.seq, EnqueuedAt: at})
		}
		for _, r := range f.s.Send(context.Background(), items) {
			if r.Verdict.Outcome != upstream.Delivered {
				return fmt.Errorf("feed: %s %s", r.Verdict.Code, r.Verdict.Message)
			}
		}
		if (i/batch)%50 == 0 {
			fmt.Fprintf(os.Stderr, "fed %d of %d\n", min(n, i+batch), n)
		}
	}
	return nil
}
