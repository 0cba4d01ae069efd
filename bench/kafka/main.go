// Command kafka measures fleet mode side by side in one run (BENCHMARKS.md,
// "Fleet mode on Kafka"): a 100,000-action backlog drained to the broker
// and to the Tencent simulator directly; the ingest rate with Kafka
// forwarding on and off; a relay's delivery rate and requests per action;
// and the time from an action's 202 to its record on the broker at 1,000
// actions/s (the broker stamps records with LogAppendTime).
//
//	go build -o /tmp/agent ./cmd/agent
//	go run ./bench/kafka -agent-bin /tmp/agent
//
// The broker (kfake, in this process, in memory) and the Tencent
// simulator run here; the agents and the relay are the real binary. It
// only uses loopback and stops by itself.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outpost-agent/outpost/bench/internal/agentproc"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kafka:", err)
		os.Exit(1)
	}
}

const simToken = "bench-token"

type bench struct {
	bin, dir string
	brokers  string
	log      io.Writer
}

func run(args []string) error {
	fs := flag.NewFlagSet("kafka", flag.ContinueOnError)
	bin := fs.String("agent-bin", "", "the agent binary (go build -o /tmp/agent ./cmd/agent)")
	backlog := fs.Int("backlog", 100_000, "actions in the drained backlog")
	ingestFor := fs.Duration("ingest", 10*time.Second, "length of each ingest run")
	latencyFor := fs.Duration("latency", 20*time.Second, "length of the 1,000 actions/s run")
	partitions := fs.Int("partitions", 6, "partitions of the actions and decisions topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" {
		return errors.New("-agent-bin is required")
	}
	dir, err := os.MkdirTemp("", "bench-kafka")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	for _, k := range []string{fleet.KindActions, fleet.KindDecisions} {
		if err := c.CreateTopic(fleet.Topic("outpost", k), int32(*partitions), map[string]string{"message.timestamp.type": "LogAppendTime"}); err != nil {
			return err
		}
	}
	if err := c.CreateTopic(fleet.Topic("outpost", fleet.KindDeadLetters), 1, nil); err != nil {
		return err
	}
	if err := c.CreateTopic(fleet.Topic("outpost", fleet.KindAgents), 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return err
	}
	b := &bench{bin: *bin, dir: dir, brokers: strings.Join(c.ListenAddrs(), ","), log: os.Stderr}
	key := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(key, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		return err
	}
	kafkaEnv := []string{"AGENT_KAFKA_BROKERS=" + b.brokers, "AGENT_FORWARD_VIA=kafka", "AGENT_KAFKA_KEY_FILE=" + key}

	// 1. The backlog: filled with nowhere to forward, stopped, copied.
	fmt.Fprintf(b.log, "filling a backlog of %d actions\n", *backlog)
	full := filepath.Join(dir, "full")
	a, err := b.start(full, nil)
	if err != nil {
		return err
	}
	if _, err := b.post(a, *backlog, 100, 8, 0); err != nil {
		return err
	}
	a.stop()
	var out strings.Builder
	fmt.Fprintf(&out, "| drain of %d queued actions | time | actions/s |\n|---|---|---|\n", *backlog)
	drains := 0
	drain := func(name string, env []string) (time.Duration, error) {
		drains++
		d := filepath.Join(dir, fmt.Sprintf("drain-%d", drains))
		if err := exec.Command("cp", "-a", full, d).Run(); err != nil {
			return 0, err
		}
		a, err := b.start(d, env)
		if err != nil {
			return 0, err
		}
		defer a.stop()
		t0 := time.Now()
		for a.depth("tencent") > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		el := time.Since(t0)
		fmt.Fprintf(&out, "| %s | %.1f s | **%.0f** |\n", name, el.Seconds(), float64(*backlog)/el.Seconds())
		fmt.Fprintf(b.log, "drain %s: %s\n", name, el)
		return el, nil
	}
	if _, err := drain("to the broker (AGENT_FORWARD_VIA=kafka)", kafkaEnv); err != nil {
		return err
	}
	sim1, simEnv1 := newSim()
	if _, err := drain("to the Tencent simulator directly, as deployed (4,000 requests/min)", simEnv1); err != nil {
		return err
	}
	sim2, simEnv2 := newSim()
	if _, err := drain("to the Tencent simulator directly, request limit lifted", append(simEnv2, "AGENT_TENCENT_REQUESTS_PER_MINUTE=1000000")); err != nil {
		return err
	}
	_, _ = sim1, sim2

	// 2. A relay drains the backlog now on the broker.
	sim3, simEnv3 := newSim()
	r, err := b.startRelay(filepath.Join(dir, "relay"), append(simEnv3, "AGENT_KAFKA_BROKERS="+b.brokers, "AGENT_TENCENT_REQUESTS_PER_MINUTE=1000000", "AGENT_FORWARD_FLUSH_INTERVAL=50ms"))
	if err != nil {
		return err
	}
	t0 := time.Now()
	for sim3.Stats().Delivered < *backlog {
		time.Sleep(50 * time.Millisecond)
	}
	el := time.Since(t0)
	hwm := r.Memory("VmHWM")
	r.stop()
	st := sim3.Stats()
	fmt.Fprintf(&out, "\n| a relay, %d records in %d partitions on the broker to the Tencent simulator (limit lifted) | time | actions/s | requests | requests per action | peak RSS (VmHWM) |\n|---|---|---|---|---|---|\n", *backlog, *partitions)
	fmt.Fprintf(&out, "| one relay | %.1f s | **%.0f** | %d | %.3f | %.1f MiB |\n", el.Seconds(), float64(*backlog)/el.Seconds(), st.Requests, float64(st.Requests)/float64(*backlog), float64(hwm)/(1<<20))

	// 3. Ingest with Kafka forwarding on and off (single actions, 32
	// clients, the forwarder draining meanwhile).
	fmt.Fprintf(&out, "\n| ingest, single actions, 32 clients, %s | 202/s |\n|---|---|\n", *ingestFor)
	sim4, simEnv4 := newSim()
	_ = sim4
	for _, v := range []struct {
		name string
		env  []string
	}{
		{"Kafka forwarding off (direct to the Tencent simulator)", simEnv4},
		{"Kafka forwarding on (AGENT_FORWARD_VIA=kafka)", kafkaEnv},
	} {
		a, err := b.start(filepath.Join(dir, "ingest-"+strings.Fields(v.name)[2]), v.env)
		if err != nil {
			return err
		}
		n, err := b.postFor(a, *ingestFor, 32)
		a.stop()
		if err != nil {
			return err
		}
		fmt.Fprintf(&out, "| %s | **%.0f** |\n", v.name, float64(n)/ingestFor.Seconds())
	}

	// 4. 202 to on the broker at 1,000 actions/s.
	lat, err := b.latency(filepath.Join(dir, "latency"), kafkaEnv, *latencyFor)
	if err != nil {
		return err
	}
	fmt.Fprintf(&out, "\n| 1,000 actions/s for %s, single actions | p50 | p99 | max | actions |\n|---|---|---|---|---|\n", *latencyFor)
	fmt.Fprintf(&out, "| the agent's 202 to the record on the broker (LogAppendTime) | %s | **%s** | %s | %d |\n",
		pct(lat, 50), pct(lat, 99), lat[len(lat)-1].Round(100*time.Microsecond), len(lat))
	fmt.Print(out.String())
	return nil
}

func pct(s []time.Duration, p int) time.Duration {
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}

func newSim() (*tencentsim.Server, []string) {
	sim := tencentsim.New(tencentsim.Options{AccessToken: simToken, AccountID: 11, UserActionSetID: 22})
	hs := httptest.NewServer(sim)
	return sim, []string{"AGENT_TENCENT_URL=" + hs.URL, "AGENT_TENCENT_ACCOUNT_ID=11", "AGENT_TENCENT_USER_ACTION_SET_ID=22", "AGENT_TENCENT_ACCESS_TOKEN=" + simToken}
}

// proc is an agent or relay process of the bench.
type proc struct{ *agentproc.Proc }

func (b *bench) spawn(dataDir string, ready string, env []string, args ...string) (*proc, error) {
	// Warnings only, but "ready" is logged at info: read at info (last wins).
	env = append(append([]string{"AGENT_LOG_LEVEL=warn"}, env...), "AGENT_LOG_LEVEL=info")
	p, err := agentproc.Start(filepath.Base(dataDir), b.bin, dataDir, ready, 60*time.Second, env, args...)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

func (b *bench) start(dataDir string, env []string) (*proc, error) {
	return b.spawn(dataDir, "agent ready", env)
}

func (b *bench) startRelay(dataDir string, env []string) (*proc, error) {
	return b.spawn(dataDir, "relay ready", env, "relay")
}

// stop stops p; how it exited is in its log.
func (p *proc) stop() { _ = p.Stop(30 * time.Second) }

func (p *proc) depth(queue string) int64 {
	resp, err := http.Get("http://" + p.Addr + "/v1/status")
	if err != nil {
		return 1
	}
	defer resp.Body.Close()
	var st struct {
		Queues map[string]struct{ Depth int64 } `json:"queues"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 1
	}
	return st.Queues[queue].Depth
}

var nextID atomic.Int64

func body(n int) ([]byte, []string) {
	ids := make([]string, n)
	parts := make([]string, n)
	now := time.Now().Unix()
	for i := range ids {
		k := nextID.Add(1)
		ids[i] = fmt.Sprintf("b-%d", k)
		parts[i] = fmt.Sprintf(`{"id":%q,"track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"1380013%04d"}}`, ids[i], now, k%9973)
	}
	return []byte(`{"actions":[` + strings.Join(parts, ",") + `]}`), ids
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

func postOne(addr string, b []byte) error {
	resp, err := client.Post("http://"+addr+"/v1/actions", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// post sends total actions in batches from workers clients.
func (b *bench) post(p *proc, total, batch, workers int, _ time.Duration) (int, error) {
	var sent atomic.Int64
	var wg sync.WaitGroup
	var ferr error
	var once sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(int64(batch)) <= int64(total) {
				bd, _ := body(batch)
				if err := postOne(p.Addr, bd); err != nil {
					once.Do(func() { ferr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return total, ferr
}

// postFor sends single actions from workers clients for d; it returns the
// 202s.
func (b *bench) postFor(p *proc, d time.Duration, workers int) (int64, error) {
	var ok atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				bd, _ := body(1)
				if postOne(p.Addr, bd) == nil {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return ok.Load(), nil
}

// latency posts single actions at 1,000/s (open loop) and matches each
// 202 with its record's broker timestamp.
func (b *bench) latency(dataDir string, env []string, d time.Duration) ([]time.Duration, error) {
	a, err := b.start(dataDir, env)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.ConsumeTopics(fleet.Topic("outpost", fleet.KindActions)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var mu sync.Mutex
	acked := map[string]time.Time{}
	onBroker := map[string]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				if ev, err := fleet.Decode(r.Value); err == nil {
					mu.Lock()
					onBroker[ev.ID] = r.Timestamp
					mu.Unlock()
				}
			})
		}
	}()
	// Warm-up, not measured: the agent's first records pay for the
	// client's connection and metadata.
	for range 10 {
		bd, _ := body(10)
		if err := postOne(a.Addr, bd); err != nil {
			return nil, err
		}
	}
	time.Sleep(2 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for now := range tick.C {
		if now.After(end) {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			bd, ids := body(1)
			if postOne(a.Addr, bd) == nil {
				t := time.Now()
				mu.Lock()
				acked[ids[0]] = t
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := 0
		for id := range acked {
			if _, ok := onBroker[id]; ok {
				n++
			}
		}
		all := n == len(acked)
		mu.Unlock()
		if all {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var out []time.Duration
	for id, t := range acked {
		if tb, ok := onBroker[id]; ok {
			out = append(out, max(tb.Sub(t), 0))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no record matched")
	}
	slices.Sort(out)
	fmt.Fprintf(b.log, "latency: %d acknowledged, %d matched\n", len(acked), len(out))
	return out, nil
}
