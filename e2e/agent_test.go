// Package e2e holds end-to-end tests that build and run the real agent
// binary, talk to it over HTTP, kill it, and inspect the store it left.
//
// Tests that mostly wait on the agents they run, and share nothing with
// another test (no fixed port another test uses, no environment, umask or
// other process-wide setting, no directory, mount or tool of the machine)
// and assert no time a busy CPU could overrun, call t.Parallel: go test
// runs them together, GOMAXPROCS at a time, once the serial ones are done.
// (The floors of TestKill9MidLoadLosesNothing and TestFleetConservation,
// 1,000 and 500 acknowledged actions, are met some 30 and 40 times
// over.) The others stay serial, each for a reason:
//   - TestFleetVelocity: a decision without Kafka within a second;
//   - TestSIGTERMForwardsTheQueue, TestSIGTERMWithUpstreamDown: a stop
//     within AGENT_SHUTDOWN_TIMEOUT;
//   - TestSystemdNotifyOrder: watchdog pings counted over two seconds;
//   - TestCLIReadsTheEnvFile: a drain that must fail within 10 s;
//   - the decision tests (decisions_test.go but TestDecisionSyncWithinIsSaid,
//     pii_test.go, tongdun_v3_test.go, unionpay_shape_test.go): a live
//     answer within AGENT_DECISION_TIMEOUT=150ms, which a busy CPU turns
//     into a degraded one;
//   - TestStatusPageInChromium: Chromium;
//   - TestDataDirFilesPrivate: sets the process's umask;
//   - TestFullDiskStartSaysWhatToDo, TestMinFreeDiskZeroIsNoMinimum: mount
//     a tmpfs.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

// agentBinary is the real binary, built once per test run.
func agentBinary(t testing.TB) string { return agenttest.Binary(t) }

// agent is one running agent process (internal/agenttest, shared with
// chaos).
type agent = agenttest.Agent

// syncBuffer holds a process's log lines.
type syncBuffer = agenttest.SyncBuffer

// startAgent runs the binary on dataDir with extra AGENT_ variables and
// waits for its "agent ready" log line, which carries the listen address.
func startAgent(t testing.TB, dataDir string, env ...string) *agent {
	t.Helper()
	return agenttest.Start(t, agenttest.Command(agentBinary(t), dataDir, env...))
}

// runAgent starts cmd, an agent whose log is JSON lines on stderr, and
// waits for its "agent ready" line.
func runAgent(t testing.TB, cmd *exec.Cmd) *agent {
	t.Helper()
	return agenttest.Start(t, cmd)
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, error) {
	code, _, b, err := agenttest.PostJSON(ctx, c, url, body)
	return code, b, err
}

func actionJSON(id string, now time.Time) string {
	return fmt.Sprintf(`{"id":%q,"track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":%d,`+
		`"user_id":{"phone":"13800138000"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}}`, id, now.Unix())
}

func batchJSON(ids []string, now time.Time) []byte {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = actionJSON(id, now)
	}
	return []byte(`{"actions":[` + strings.Join(parts, ",") + `]}`)
}
