package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

const simToken = "e2e-access-token-0123456789"

func tencentSim(t *testing.T, mod ...func(*tencentsim.Options)) (*tencentsim.Server, []string) {
	t.Helper()
	o := tencentsim.Options{AccessToken: simToken, AccountID: 11, UserActionSetID: 22}
	for _, f := range mod {
		f(&o)
	}
	sim := tencentsim.New(o)
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	return sim, []string{
		"AGENT_TENCENT_URL=" + hs.URL, "AGENT_TENCENT_ACCOUNT_ID=11", "AGENT_TENCENT_USER_ACTION_SET_ID=22",
		"AGENT_TENCENT_ACCESS_TOKEN=" + simToken,
		"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms",
		"AGENT_FORWARD_PROBE_INTERVAL=300ms",
	}
}

// sendActions posts n actions in batches of batch from 8 goroutines and
// returns the ids that got a 202.
func sendActions(t *testing.T, a *agent, prefix string, n, batch int) []string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	next := make(chan int)
	go func() {
		for i := 0; i < n; i += batch {
			next <- i
		}
		close(next)
	}()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var ids []string
				for j := i; j < min(i+batch, n); j++ {
					ids = append(ids, fmt.Sprintf("%s-%06d", prefix, j))
				}
				code, body, err := postJSON(context.Background(), client, a.URL("/v1/actions"), batchJSON(ids, time.Now()))
				if err != nil || code != http.StatusAccepted {
					t.Errorf("post: %d %s %v", code, body, err)
					continue
				}
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked
}

type statusDoc struct {
	Queues map[string]struct {
		Depth       int64 `json:"depth"`
		DeadLetters int64 `json:"dead_letters"`
	} `json:"queues"`
	Upstreams map[string]struct {
		State     string `json:"state"`
		Reason    string `json:"reason"`
		LastError string `json:"last_error"`
		Delivered int64  `json:"delivered_total"`
		Failed    int64  `json:"failed_total"`
	} `json:"upstreams"`
}

func getStatus(t *testing.T, a *agent) (statusDoc, string) {
	t.Helper()
	resp, err := http.Get(a.URL("/v1/status"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st statusDoc
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status: %v: %s", err, b)
	}
	return st, string(b)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkAllDelivered(t *testing.T, sim *tencentsim.Server, acked []string) {
	t.Helper()
	got := map[string]bool{}
	for _, a := range sim.Delivered() {
		got[a.OuterActionID] = true
	}
	missing := 0
	for _, id := range acked {
		if !got[action.OuterActionID(id)] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged actions never reached Tencent", missing, len(acked))
	}
}

// TestOutageThenRecoveryDeliversEverything: Tencent goes away (connections
// reset) while the app keeps posting; the agent keeps acknowledging,
// reports the circuit open, and when Tencent is back every acknowledged
// action arrives.
func TestOutageThenRecoveryDeliversEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	sim, env := tencentSim(t)
	a := startAgent(t, t.TempDir(), env...)
	acked := sendActions(t, a, "before", 500, 25)
	waitFor(t, "first batch delivered", 20*time.Second, func() bool { return len(sim.Delivered()) == 500 })

	sim.SetFaults(tencentsim.Faults{Outage: true})
	acked = append(acked, sendActions(t, a, "during", 1500, 25)...)
	waitFor(t, "circuit open", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Upstreams["tencent"].State == "circuit_open"
	})
	st, raw := getStatus(t, a)
	if st.Queues["tencent"].Depth == 0 {
		t.Fatalf("nothing queued during the outage: %s", raw)
	}
	if strings.Contains(raw, simToken) {
		t.Fatal("access token in /v1/status")
	}
	// While the circuit is open the agent only probes, one item at a time:
	// the simulator sees no more requests than the failed probes the agent
	// counts, each a request and its client's quick retries (RetryMax 2),
	// plus one probe in flight. Counted over probes, not over a second of
	// wall time, which a slow machine fills with fewer requests. How often
	// it probes is held on a fake clock (forwarder's
	// TestOutageOpensCircuitThenRecovers).
	const perProbe = 3
	reqs, failed := sim.Requests(), st.Upstreams["tencent"].Failed
	var probes int64
	waitFor(t, "three probes of the open circuit", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		probes = st.Upstreams["tencent"].Failed - failed
		return probes >= 3
	})
	if n := sim.Requests() - reqs; n > perProbe*int(probes+1) {
		t.Fatalf("%d requests for %d probes of an open circuit: hammering", n, probes)
	}

	sim.SetFaults(tencentsim.Faults{})
	acked = append(acked, sendActions(t, a, "after", 500, 25)...)
	waitFor(t, "backlog drained", 30*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].Depth == 0
	})
	checkAllDelivered(t, sim, acked)
	st, _ = getStatus(t, a)
	if st.Upstreams["tencent"].State != "ok" {
		t.Fatalf("state after recovery: %+v", st.Upstreams["tencent"])
	}
	if strings.Contains(a.Logs.String(), simToken) {
		t.Fatal("access token in the agent's logs")
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestKill9DuringForwardingLosesNothing: a backlog is being forwarded (the
// upstream is slow, so batches are in flight) when the agent is killed;
// after a restart everything arrives, re-sends carry the same
// outer_action_id, so Tencent holds each action once.
func TestKill9DuringForwardingLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	sim, env := tencentSim(t)
	sim.SetFaults(tencentsim.Faults{Latency: 30 * time.Millisecond})
	data := t.TempDir()
	a := startAgent(t, data, env...)
	acked := sendActions(t, a, "k", 4000, 100)
	waitFor(t, "forwarding under way", 20*time.Second, func() bool { return len(sim.Delivered()) >= 500 })
	a.Kill9()
	before := len(sim.Delivered())
	if before >= 4000 {
		t.Fatalf("everything delivered before the kill; the test proves nothing")
	}
	a = startAgent(t, data, env...)
	waitFor(t, "drained after restart", 60*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].Depth == 0
	})
	checkAllDelivered(t, sim, acked)
	dups := 0
	for _, id := range acked {
		if n := sim.DeliveryCount(action.OuterActionID(id)); n > 1 {
			dups += n - 1
		}
	}
	if len(sim.Delivered()) != len(acked) {
		t.Fatalf("Tencent holds %d distinct actions, want %d", len(sim.Delivered()), len(acked))
	}
	t.Logf("acknowledged %d; delivered before the kill %d; re-sent after restart (same outer_action_id) %d", len(acked), before, dups)
	a.Stop()
}

// TestBadActionDeadLetteredListedMaskedAndReplayed: Tencent rejects one
// action in a batch; the other 49 arrive, the bad one is listed (masked)
// under /v1/deadletters, and a replay through the API delivers it once the
// cause is fixed.
func TestBadActionDeadLetteredListedMaskedAndReplayed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	sim, env := tencentSim(t)
	sim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID("bad-000017")}})
	a := startAgent(t, t.TempDir(), env...)
	acked := sendActions(t, a, "bad", 50, 50)
	waitFor(t, "batch settled", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].Depth == 0 && st.Queues["tencent"].DeadLetters == 1
	})
	if n := len(sim.Delivered()); n != 49 {
		t.Fatalf("delivered %d, want 49", n)
	}
	resp, err := http.Get(a.URL("/v1/deadletters?upstream=tencent"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"id":"bad-000017"`) || !strings.Contains(string(b), "31001") ||
		!strings.Contains(string(b), `"outer_action_id":"`+action.OuterActionID("bad-000017")+`"`) {
		t.Fatalf("dead letters: %s", b)
	}
	if strings.Contains(string(b), "hash_phone\":\"") && !strings.Contains(string(b), `"hash_phone":"***`) {
		t.Fatalf("dead letter listing shows a phone hash: %s", b)
	}
	sim.SetFaults(tencentsim.Faults{})
	code, body, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/deadletters/replay"), []byte(`{"upstream":"tencent","ids":["bad-000017"]}`))
	if err != nil || code != 200 || !strings.Contains(string(body), `"replayed":1`) {
		t.Fatalf("replay: %d %s %v", code, body, err)
	}
	waitFor(t, "replayed action delivered", 20*time.Second, func() bool { return sim.DeliveryCount(action.OuterActionID("bad-000017")) == 1 })
	checkAllDelivered(t, sim, acked)
	a.Stop()
}

// TestWebDataSourceURL: an agent told its Tencent data source is WEB
// (AGENT_TENCENT_DATA_SOURCE_TYPE) refuses an action without its page
// url at intake, and delivers one with it to a simulator that, like
// Tencent, takes nothing else from a web data source.
func TestWebDataSourceURL(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	sim, env := tencentSim(t, func(o *tencentsim.Options) { o.DataSourceType = "WEB" })
	a := startAgent(t, t.TempDir(), append(env, "AGENT_TENCENT_DATA_SOURCE_TYPE=WEB")...)
	now := time.Now()
	without := actionJSON("web-000001", now)
	with := strings.TrimSuffix(actionJSON("web-000002", now), "}") + `,"url":"https://bank.example/loan/apply?gdt_vid=wx0abc"}`
	code, b, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"), []byte(`{"actions":[`+with+`,`+without+`]}`))
	if err != nil || code != http.StatusBadRequest || !strings.Contains(string(b), `"field":"actions[1].url"`) {
		t.Fatalf("without url: %d %s %v", code, b, err)
	}
	code, b, err = postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"), []byte(`{"actions":[`+with+`]}`))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("with url: %d %s %v", code, b, err)
	}
	waitFor(t, "delivered", 20*time.Second, func() bool { return len(sim.Delivered()) == 1 })
	if d := sim.Delivered()[0]; d.URL != "https://bank.example/loan/apply?gdt_vid=wx0abc" || d.OuterActionID != action.OuterActionID("web-000002") {
		t.Fatalf("delivered %+v", d)
	}
	a.Stop()
}
