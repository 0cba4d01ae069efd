// Package chaos is a conservation suite for the real agent binary: it
// kills, floods, starves and damages the agent while a Tencent simulator
// stands in for the upstream, and checks one oracle (see oracle_test.go)
// after every scenario: every action that got a 202 reaches Tencent intact,
// nothing refused ever does, and once the faults stop a fresh action is
// delivered promptly. memory_test.go holds the memory budgets against
// hostile local clients (big, slow and token-less bodies).
//
// Scenarios that share nothing with another (each runs its own agents,
// simulators, directories and mounts) and assert no time a busy CPU could
// overrun call t.Parallel: go test runs them together, GOMAXPROCS at a
// time, once the serial ones are done. Serial, each for a reason: the two
// memory budgets (a peak RSS, an ordinary client answered beside a flood),
// TestSIGTERMUnderLoad (a clean exit within AGENT_SHUTDOWN_TIMEOUT) and
// TestDecisionsSyncedWithinSurvivePowerCuts (a lost decision's age at the
// cut against the sync bound).
//
// The default run is short; -soak (or OUTPOST_SOAK=1) runs the long one:
//
//	go test ./chaos/ -v -soak
//
// Clock jumps (the TongDun quota pause until midnight, item age limits) are
// covered with an injected clock in forwarder/tongdun_test.go and the other
// forwarder tests, not here: a binary cannot be given a fake clock.
package chaos

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

var soakFlag = flag.Bool("soak", false, "run the long version of each chaos scenario")

// soak reports whether the long version runs (-soak or OUTPOST_SOAK=1).
func soak() bool { return *soakFlag || os.Getenv("OUTPOST_SOAK") == "1" }

// agentBinary is the real binary, built once per test run, as it ships:
// without the race detector even when the tests have it. These scenarios
// prove what kill -9, power cuts, full disks and damage do to the binary a
// bank runs; a race-built one is several times slower, so the same minutes
// would put a fraction of the load through it and its kills would land at
// other instants. e2e starts race-built agents (agenttest.Binary) for the
// races.
func agentBinary(t testing.TB) string { return agenttest.PlainBinary(t) }

// agent is one running agent process (internal/agenttest, shared with e2e).
type agent = agenttest.Agent

// startAgent runs the binary on dataDir and waits for "agent ready".
func startAgent(t testing.TB, dataDir string, env ...string) *agent {
	t.Helper()
	return agenttest.Start(t, agenttest.Command(agentBinary(t), dataDir, env...))
}

// tryStartAgent is startAgent that returns a start-up failure (exit before
// ready, or not ready within wait) instead of failing the test: a scenario
// that restarts the agent on a damaged or full store reports it as a
// finding.
func tryStartAgent(t testing.TB, dataDir string, wait time.Duration, env ...string) (*agent, error) {
	t.Helper()
	return agenttest.TryStart(t, agenttest.Command(agentBinary(t), dataDir, env...), wait)
}

// spawnAgentBin starts the binary bin and returns at once; ready receives
// its listen address when it says it is ready (set a.Addr from it).
func spawnAgentBin(t testing.TB, bin, dataDir string, env ...string) (*agent, <-chan string, error) {
	t.Helper()
	return agenttest.Spawn(t, agenttest.Command(bin, dataDir, env...))
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, http.Header, []byte, error) {
	return agenttest.PostJSON(ctx, c, url, body)
}

type statusDoc struct {
	Queues map[string]struct {
		Depth       int64 `json:"depth"`
		InFlight    int   `json:"in_flight"`
		DeadLetters int64 `json:"dead_letters"`
	} `json:"queues"`
	Upstreams map[string]struct {
		State     string `json:"state"`
		Reason    string `json:"reason"`
		LastError string `json:"last_error"`
		Delivered int64  `json:"delivered_total"`
	} `json:"upstreams"`
	Store struct {
		Damage []struct {
			Found        string           `json:"found"`
			Message      string           `json:"message"`
			EntriesLost  map[string]int64 `json:"entries_lost"`
			CountUnknown bool             `json:"count_unknown"`
			SetAside     string           `json:"set_aside"`
		} `json:"damage"`
	} `json:"store"`
}

func agentStatus(a *agent) (statusDoc, error) {
	var st statusDoc
	code, body, err := a.GetJSON("/v1/status", &st)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/v1/status: %d %s", code, body)
	}
	return st, err
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
