package e2e

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// lastLogLine is the agent's last JSON log line, decoded.
func lastLogLine(t *testing.T, a *agent) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(a.Logs.String()), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last log line %q: %v", lines[len(lines)-1], err)
	}
	return m
}

// sigterm sends SIGTERM, as the kubelet and systemd do, and waits for the
// exit (nil: exit 0).
func sigterm(t *testing.T, a *agent, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.Done():
		return time.Since(start), a.Err()
	case <-time.After(within):
		a.Kill9()
		t.Fatalf("the agent did not stop within %v\n%s", within, a.Logs)
		return 0, nil
	}
}

// TestSIGTERMForwardsTheQueue: a pod is deleted while the agent holds
// acknowledged actions (Tencent slow, partial batches waiting for company).
// On SIGTERM the agent forwards them before it exits, within
// AGENT_SHUTDOWN_TIMEOUT, and its last log line says none were left: with
// an emptyDir spool they would otherwise go with the pod.
func TestSIGTERMForwardsTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	sim, env := tencentSim(t)
	sim.SetFaults(tencentsim.Faults{Latency: 150 * time.Millisecond})
	a := startAgent(t, t.TempDir(), append(env,
		// A partial batch would wait a minute for company: only the drain
		// sends it before the exit.
		"AGENT_FORWARD_FLUSH_INTERVAL=1m",
		"AGENT_SHUTDOWN_TIMEOUT=20s")...)
	acked := sendActions(t, a, "term", 237, 10)
	if st, _ := getStatus(t, a); st.Queues["tencent"].Depth == 0 {
		t.Fatal("nothing queued at SIGTERM: the test proves nothing")
	}
	took, err := sigterm(t, a, 40*time.Second)
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, a.Logs)
	}
	checkAllDelivered(t, sim, acked) // the process is gone: what the simulator holds came before the exit
	last := lastLogLine(t, a)
	if msg, _ := last["msg"].(string); !strings.HasPrefix(msg, "stopped: 0 actions not forwarded") || last["not_forwarded"] != 0.0 {
		t.Fatalf("last log line %v, want stopped: 0 actions not forwarded", last)
	}
	if took > 20*time.Second {
		t.Fatalf("the drain took %v, over AGENT_SHUTDOWN_TIMEOUT", took)
	}
	t.Logf("%d actions forwarded on SIGTERM in %v", len(acked), took.Round(time.Millisecond))
}

// TestSIGTERMWithUpstreamDown: Tencent unreachable at SIGTERM. The drain
// does not wait for it past the breaker (nor past AGENT_SHUTDOWN_TIMEOUT),
// and the last log line counts what is left and says where it is.
func TestSIGTERMWithUpstreamDown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	sim, env := tencentSim(t)
	sim.SetFaults(tencentsim.Faults{Outage: true})
	dir := t.TempDir()
	a := startAgent(t, dir, append(env, "AGENT_SHUTDOWN_TIMEOUT=5s")...)
	acked := sendActions(t, a, "down", 40, 10)
	took, err := sigterm(t, a, 30*time.Second)
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, a.Logs)
	}
	last := lastLogLine(t, a)
	msg, _ := last["msg"].(string)
	if want := "stopped: 40 actions not forwarded (queued in " + dir + "/spool: tencent 40;"; len(acked) != 40 || !strings.HasPrefix(msg, want) || last["level"] != "WARN" {
		t.Fatalf("last log line %v, want it to start %q (%d acknowledged)", last, want, len(acked))
	}
	if took > 5*time.Second+10*time.Second {
		t.Fatalf("stopping took %v, over the stop budget", took)
	}
}
