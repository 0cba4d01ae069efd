package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// proc is a running binary of the fleet test: an agent, a relay or the
// broker.
type proc struct {
	name string
	args []string
	env  []string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
	addr string // from the ready line
}

// start runs p and waits for a log line whose "msg" is ready (JSON logs)
// or, for the broker, its first stdout line.
func (p *proc) start(t *testing.T, ready string) {
	t.Helper()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd, p.logs, p.done = cmd, &syncBuffer{}, make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyc := make(chan string, 1)
	scan := func(r interface{ Read([]byte) (int, error) }) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			var m struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == ready {
				readyc <- m.Listen
			} else if ready == "" && strings.HasPrefix(line, "export AGENT_KAFKA_BROKERS=") {
				readyc <- strings.TrimPrefix(line, "export AGENT_KAFKA_BROKERS=")
			}
		}
	}
	go scan(stderr)
	go scan(stdout)
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.addr = <-readyc:
	case err := <-p.done:
		t.Fatalf("%s exited before ready: %v\n%s", p.name, err, p.logs)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s not ready after 60s\n%s", p.name, p.logs)
	}
}

func (p *proc) kill9() {
	p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err // alive() reads it: a killed process is not alive
}

func (p *proc) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

var kafkaDev struct {
	once sync.Once
	path string
	err  error
}

// kafkaDevBinary builds cmd/kafka-dev once.
func kafkaDevBinary(t *testing.T) string {
	t.Helper()
	kafkaDev.once.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-kafka-dev")
		if err != nil {
			kafkaDev.err = err
			return
		}
		kafkaDev.path = filepath.Join(dir, "kafka-dev")
		out, err := exec.Command("go", "build", "-o", kafkaDev.path, "github.com/outpost-agent/outpost/cmd/kafka-dev").CombinedOutput()
		if err != nil {
			kafkaDev.err = fmt.Errorf("go build kafka-dev: %v\n%s", err, out)
		}
	})
	if kafkaDev.err != nil {
		t.Fatal(kafkaDev.err)
	}
	return kafkaDev.path
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// TestFleetConservation is fleet mode's promise with the real binaries:
// three agents forwarding via Kafka (the kafka-dev broker process), two
// relays delivering to the Tencent simulator, agents and relays killed
// with SIGKILL at random moments under load. Every action that got a 202
// must reach the simulator; duplicates are counted (Tencent de-duplicates
// them by outer_action_id). kcat, a Kafka client that is not ours, then
// reads the topics and must find well-formed records with the event-id
// header.
func TestFleetConservation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs a broker, three agents and two relays")
	}
	t.Parallel() // see agent_test.go
	// kcat is looked for first: in CI its absence fails at once.
	kcat, kcatErr := exec.LookPath("kcat")
	if kcatErr != nil && agenttest.InCI() {
		agenttest.Unavailable(t, "kcat is not installed (Debian/Ubuntu: apt-get install -y kcat; .ci/run installs it)")
	}
	dir := t.TempDir()
	bin := agenttest.Binary(t)

	// The broker, kept on disk with every write synced.
	ports := freePorts(t, 1)
	broker := &proc{name: "kafka-dev", args: []string{kafkaDevBinary(t), "-ports", strconv.Itoa(ports[0]), "-data-dir", filepath.Join(dir, "kafka")}}
	broker.start(t, "")
	t.Cleanup(func() {
		if broker.alive() {
			broker.kill9()
		}
	})
	brokers := broker.addr

	sim := tencentsim.New(tencentsim.Options{AccessToken: simToken, AccountID: 11, UserActionSetID: 22})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)

	key := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(key, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"AGENT_LISTEN_ADDR=127.0.0.1:0", "AGENT_LOG_FORMAT=json", "AGENT_KAFKA_BROKERS=" + brokers, "AGENT_KAFKA_STATUS_INTERVAL=2s"}
	agents := make([]*proc, 3)
	for i := range agents {
		agents[i] = &proc{name: fmt.Sprintf("agent-%d", i), args: []string{bin}, env: append(append([]string{}, common...),
			"AGENT_DATA_DIR="+filepath.Join(dir, fmt.Sprintf("agent-%d", i)), "AGENT_FORWARD_VIA=kafka", "AGENT_KAFKA_KEY_FILE="+key,
			"AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_PROBE_INTERVAL=1s")}
		agents[i].start(t, "agent ready")
	}
	relays := make([]*proc, 2)
	for i := range relays {
		relays[i] = &proc{name: fmt.Sprintf("relay-%d", i), args: []string{bin, "relay"}, env: append(append([]string{}, common...),
			"AGENT_DATA_DIR="+filepath.Join(dir, fmt.Sprintf("relay-%d", i)),
			"AGENT_TENCENT_URL="+hs.URL, "AGENT_TENCENT_ACCOUNT_ID=11", "AGENT_TENCENT_USER_ACTION_SET_ID=22", "AGENT_TENCENT_ACCESS_TOKEN="+simToken,
			"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms")}
		relays[i].start(t, "relay ready")
	}
	t.Cleanup(func() {
		for _, p := range append(agents, relays...) {
			if p.alive() {
				p.kill9()
			}
		}
	})

	// Load: 12 clients post batches of 1-10 actions to random agents;
	// every id that got a 202 is acknowledged.
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		nextID atomic.Int64
		// live guards the agents' and relays' procs while the chaos
		// goroutine restarts them.
		live sync.RWMutex
	)
	client := &http.Client{Timeout: 5 * time.Second}
	// 12 s: about six kills, some 20,000 actions; OUTPOST_SOAK=1: a minute.
	load := 12 * time.Second
	if os.Getenv("OUTPOST_SOAK") == "1" {
		load = time.Minute
	}
	ctx, stop := context.WithTimeout(context.Background(), load)
	defer stop()
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 22))
			for ctx.Err() == nil {
				ids := make([]string, 1+rng.IntN(10))
				for i := range ids {
					ids[i] = fmt.Sprintf("f-%d", nextID.Add(1))
				}
				live.RLock()
				a := agents[rng.IntN(len(agents))]
				url := "http://" + a.addr + "/v1/actions"
				live.RUnlock()
				code, _, err := postJSON(ctx, client, url, fleetBatchJSON(ids, time.Now()))
				if err == nil && code == http.StatusAccepted {
					mu.Lock()
					for _, id := range ids {
						acked[id] = true
					}
					mu.Unlock()
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	// Chaos: every 1-3 s, kill -9 an agent or a relay and start it again
	// on its directory.
	kills := map[string]int{}
	rng := rand.New(rand.NewPCG(99, 1))
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
		var p *proc
		ready := "agent ready"
		if rng.IntN(2) == 0 {
			p = agents[rng.IntN(len(agents))]
		} else {
			p, ready = relays[rng.IntN(len(relays))], "relay ready"
		}
		live.Lock()
		p.kill9()
		kills[p.name]++
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		p.start(t, ready)
		live.Unlock()
	}
	wg.Wait()

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want < 500 {
		t.Fatalf("only %d actions acknowledged: the load did not run", want)
	}
	// Everything acknowledged reaches the simulator.
	deadline := time.Now().Add(120 * time.Second)
	var missing []string
	for {
		missing = missing[:0]
		for id := range acked {
			if sim.DeliveryCount(action.OuterActionID(id)) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	st := sim.Stats()
	t.Logf("acknowledged %d, delivered %d distinct, duplicates %d (Tencent de-duplicates them by outer_action_id), lost %d; kills %v",
		want, st.Delivered, st.Duplicates, len(missing), kills)
	if len(missing) > 0 {
		n := min(len(missing), 10)
		t.Errorf("%d acknowledged actions never reached the simulator, e.g. %v", len(missing), missing[:n])
		for _, p := range append(agents, relays...) {
			t.Logf("--- %s\n%s", p.name, tail(p.logs.String(), 3000))
		}
	}

	// A client that is not ours reads the topics.
	if kcatErr != nil {
		agenttest.Unavailable(t, "kcat is not installed: the topics were not read by a client that is not ours (Debian/Ubuntu: apt-get install -y kcat)")
	}
	checkWithKcat(t, kcat, brokers, acked)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// fleetBatchJSON: actions of many accounts (the account decides the
// partition).
func fleetBatchJSON(ids []string, now time.Time) []byte {
	parts := make([]string, len(ids))
	for i, id := range ids {
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "f-"))
		parts[i] = fmt.Sprintf(`{"id":%q,"track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"1380013%04d"}}`, id, now.Unix(), n%997)
	}
	return []byte(`{"actions":[` + strings.Join(parts, ",") + `]}`)
}

// checkWithKcat reads outpost.actions.v1 with kcat (JSON envelope) and
// checks every record: a v1 value that decodes, an event-id header equal
// to the value's, the schema header, a 64-hex-digit key; and every
// acknowledged id is there. Then the agents' status topic.
func checkWithKcat(t *testing.T, kcat, brokers string, acked map[string]bool) {
	t.Helper()
	topic := fleet.Topic("outpost", fleet.KindActions)
	out, err := exec.Command(kcat, "-C", "-b", brokers, "-t", topic, "-e", "-q", "-J").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	seen := map[string]bool{}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m struct {
			Key       string   `json:"key"`
			Payload   string   `json:"payload"`
			Headers   []string `json:"headers"`
			Partition int      `json:"partition"`
			Offset    int64    `json:"offset"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("kcat line %q: %v", line, err)
		}
		n++
		rec, err := fleet.Decode([]byte(m.Payload))
		if err != nil {
			t.Errorf("%d/%d: %v", m.Partition, m.Offset, err)
			continue
		}
		h := map[string]string{}
		for i := 0; i+1 < len(m.Headers); i += 2 {
			h[m.Headers[i]] = m.Headers[i+1]
		}
		if h[fleet.HeaderEventID] != rec.EventID || h[fleet.HeaderSchema] != "outpost.actions.v1" || h[fleet.HeaderAgentID] != rec.AgentID {
			t.Errorf("%d/%d: headers %v for event %s", m.Partition, m.Offset, h, rec.EventID)
		}
		if len(m.Key) != 64 {
			t.Errorf("%d/%d: key %q is not an HMAC", m.Partition, m.Offset, m.Key)
		}
		seen[rec.ID] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("kcat: acknowledged %s is not on %s", id, topic)
			break
		}
	}
	t.Logf("kcat read %d records of %s, all well-formed with the event-id header", n, topic)
	out, err = exec.Command(kcat, "-C", "-b", brokers, "-t", fleet.Topic("outpost", fleet.KindAgents), "-e", "-q", "-f", "%k %s\n").Output()
	if err != nil {
		t.Fatalf("kcat agents: %v", err)
	}
	if !strings.Contains(string(out), `"role":"agent"`) || !strings.Contains(string(out), `"role":"relay"`) {
		t.Errorf("agents topic holds no status of agents and relays:\n%s", tail(string(out), 2000))
	}
}
