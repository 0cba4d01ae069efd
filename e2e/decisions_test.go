package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

const tdKey, upKey = "td-partner-key-e2e", "up-app-key-e2e"

func decisionSims(t *testing.T) (*tdsim.Server, *upsim.Server, []string) {
	t.Helper()
	td := tdsim.New(tdsim.Options{PartnerCode: "bank", PartnerKey: tdKey, Channel: "bank"})
	tds := httptest.NewServer(td)
	t.Cleanup(tds.Close)
	up := upsim.New(upsim.Options{ID: "bank", AppKey: upKey})
	ups := httptest.NewServer(up)
	t.Cleanup(ups.Close)
	return td, up, []string{
		"AGENT_TONGDUN_URL=" + tds.URL + "/riskService", "AGENT_TONGDUN_PARTNER_CODE=bank",
		"AGENT_TONGDUN_PARTNER_KEY=" + tdKey, "AGENT_TONGDUN_CHANNEL=bank",
		"AGENT_UNIONPAY_URL=" + ups.URL + "/fireeye/creditScore", "AGENT_UNIONPAY_ID=bank", "AGENT_UNIONPAY_APP_KEY=" + upKey,
		"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms",
		"AGENT_FORWARD_PROBE_INTERVAL=300ms", "AGENT_DECISION_TIMEOUT=150ms", "AGENT_POLICY_POLL_INTERVAL=100ms",
	}
}

func decisionBody(id, account string, amount float64, card bool) []byte {
	s := fmt.Sprintf(`{"id":%q,"session_id":"s-%s","decision_event":"withdraw","event_time":%q,"account_id":%q,`+
		`"terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":%g`,
		id, id, tongdun.FormatEventTime(time.Now()), account, amount)
	if card {
		s += `,"card":{"card_no":"6262320120123210","cert_id":"411524198810280019","mobile":"13888888888"}`
	}
	return []byte(s + "}")
}

type decisionDoc struct {
	DecisionID string  `json:"decision_id"`
	Result     string  `json:"result"`
	Degraded   bool    `json:"degraded"`
	Score      float64 `json:"score"`
	Reasons    []struct {
		ID string `json:"id"`
	} `json:"reasons"`
	Signals map[string]struct {
		Status string `json:"status"`
		Source string `json:"source"`
		Queued bool   `json:"queued"`
	} `json:"signals"`
	Late map[string]json.RawMessage `json:"late_verdicts"`
}

func postDecision(t *testing.T, a *agent, body []byte) (decisionDoc, string) {
	t.Helper()
	code, b, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/decisions"), body)
	if err != nil || code != 200 {
		t.Fatalf("decision: %d %s %v", code, b, err)
	}
	var d decisionDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d, string(b)
}

func getDecision(t *testing.T, a *agent, id string) (decisionDoc, string) {
	t.Helper()
	resp, err := http.Get(a.URL("/v1/decisions/" + id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var d decisionDoc
	json.Unmarshal(b, &d)
	return d, string(b)
}

// TestDecisionsLiveDegradedAndLateVerdict: with TongDun up the agent asks
// it live; with TongDun down it decides degraded within its budget and
// queues the check; when TongDun is back the forwarder delivers the check
// and TongDun's late verdict appears beside the stored decision.
func TestDecisionsLiveDegradedAndLateVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	td, up, env := decisionSims(t)
	a := startAgent(t, t.TempDir(), env...)

	td.SetVerdict("acct-live", 30, "accept", nil)
	d, raw := postDecision(t, a, decisionBody("live-1", "acct-live", 500, true))
	if d.Result != "accept" || d.Degraded || d.Signals["tongdun"].Source != "live" || d.Signals["unionpay_model"].Source != "live" {
		t.Fatalf("live decision: %s", raw)
	}
	if up.Requests() == 0 || td.Requests() == 0 {
		t.Fatal("upstreams were not asked")
	}

	td.SetFaults(tdsim.Faults{Outage: true})
	td.SetVerdict("acct-off", 95, "decline", nil)
	start := time.Now()
	d, raw = postDecision(t, a, decisionBody("off-1", "acct-off", 500, false))
	if took := time.Since(start); took > time.Second {
		t.Fatalf("degraded decision took %s", took)
	}
	if !d.Degraded || d.Result != "accept" || !d.Signals["tongdun"].Queued {
		t.Fatalf("degraded decision: %s", raw)
	}
	td.SetFaults(tdsim.Faults{})
	waitFor(t, "late verdict", 20*time.Second, func() bool {
		d, _ := getDecision(t, a, "off-1")
		return d.Late["tongdun"] != nil
	})
	d, raw = getDecision(t, a, "off-1")
	if d.Result != "accept" || !strings.Contains(string(d.Late["tongdun"]), "decline") {
		t.Fatalf("stored decision with late verdict: %s", raw)
	}
	// Nothing personal in what the agent showed or logged.
	_, status := getStatus(t, a)
	for _, secret := range []string{"6262320120123210", "411524198810280019", "13888888888", tdKey, upKey} {
		for where, text := range map[string]string{"logs": a.Logs.String(), "status": status, "record": raw} {
			if strings.Contains(text, secret) {
				t.Fatalf("%s found in the %s", secret, where)
			}
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyReloadRefusesABrokenFile: SIGHUP and file changes reload the
// policy; a file that does not type-check is refused and the old policy
// keeps deciding; `agent policy check` says the same before shipping.
func TestPolicyReloadRefusesABrokenFile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	_, _, env := decisionSims(t)
	dir := t.TempDir()
	pf := filepath.Join(dir, "policy.yaml")
	good := `version: "e2e.1"
thresholds: {review_at: 50, decline_at: 80}
offline_limit: 1000
rules:
  - id: BIG_WITHDRAWAL
    class: review
    when: 'event == "withdraw" && amount > 10000.0'
    reason: "large withdrawal"
    mode: active
    doc: a test rule
`
	if err := os.WriteFile(pf, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, t.TempDir(), append(env, "AGENT_POLICY_FILE="+pf)...)
	d, raw := postDecision(t, a, decisionBody("p-1", "acct-p", 20000, false))
	if d.Result != "review" || !strings.Contains(raw, "BIG_WITHDRAWAL") || !strings.Contains(raw, `"policy_version":"e2e.1"`) {
		t.Fatalf("decision under the file policy: %s", raw)
	}

	broken := strings.Replace(good, "amount > 10000.0", "amount > 10000.0 && amont < 1.0", 1)
	os.WriteFile(pf, []byte(broken), 0o600)
	a.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "refusal logged", 10*time.Second, func() bool { return strings.Contains(a.Logs.String(), "policy refused") })
	_, status := getStatus(t, a)
	if !strings.Contains(status, `"refusals":`) || !strings.Contains(status, "amont") {
		t.Fatalf("status does not show the refusal: %s", status)
	}
	if d, raw := postDecision(t, a, decisionBody("p-2", "acct-p", 20000, false)); d.Result != "review" || !strings.Contains(raw, "e2e.1") {
		t.Fatalf("old policy not kept: %s", raw)
	}
	out, err := exec.Command(agentBinary(t), "policy", "check", pf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "amont") || !strings.Contains(string(out), ":7") {
		t.Fatalf("policy check of the broken file: %v\n%s", err, out)
	}

	fixed := strings.Replace(good, `"e2e.1"`, `"e2e.2"`, 1)
	fixed = strings.Replace(fixed, "amount > 10000.0", "amount > 30000.0", 1)
	os.WriteFile(pf, []byte(fixed), 0o600)
	waitFor(t, "file change picked up", 10*time.Second, func() bool {
		_, raw := postDecision(t, a, decisionBody(fmt.Sprint("p-", time.Now().UnixNano()), "acct-p", 20000, false))
		return strings.Contains(raw, "e2e.2")
	})
	d, _ = postDecision(t, a, decisionBody("p-3", "acct-p", 20000, false))
	if d.Result != "accept" {
		t.Fatalf("new policy not applied: %+v", d)
	}
	a.Stop()
}

// AGENT_DECISION_SYNC_WITHIN, on the real binary: a decision that queues
// nothing is answered, readable at once, kept across a restart, and the
// setting is said once in the log and in /v1/status (a reduced durability
// an operator must be able to see).
func TestDecisionSyncWithinIsSaid(t *testing.T) {
	t.Parallel() // see agent_test.go
	dir := t.TempDir()
	a := startAgent(t, dir, "AGENT_DECISION_SYNC_WITHIN=25ms")
	d, raw := postDecision(t, a, decisionBody("sync-within-1", "acct-sw", 120, false))
	if d.Signals["tongdun"].Queued {
		t.Fatalf("the decision queued a check with no upstream configured: %s", raw)
	}
	if got, raw := getDecision(t, a, "sync-within-1"); got.Result != d.Result {
		t.Fatalf("read right after the answer: %s, answered %q", raw, d.Result)
	}
	var st struct {
		Notes []string `json:"notes"`
	}
	if _, body, err := a.GetJSON("/v1/status", &st); err != nil || !slices.ContainsFunc(st.Notes, func(n string) bool {
		return strings.Contains(n, "AGENT_DECISION_SYNC_WITHIN=25ms") && strings.Contains(n, "power cut")
	}) {
		t.Errorf("/v1/status does not say the decisions are answered before their sync: %s %v", body, err)
	}
	if n := strings.Count(a.Logs.String(), "AGENT_DECISION_SYNC_WITHIN=25ms"); n != 1 {
		t.Errorf("the log says the setting %d times, want once:\n%s", n, a.Logs)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	a = startAgent(t, dir)
	if got, raw := getDecision(t, a, "sync-within-1"); got.Result != d.Result {
		t.Fatalf("after a restart: %s, answered %q", raw, d.Result)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
