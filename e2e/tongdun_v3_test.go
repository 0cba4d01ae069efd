package e2e

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

// TestTongDunV3EndToEnd: the agent set with AGENT_TONGDUN_API_VERSION=v3
// takes v3's lookup event and account object, asks a v3 TongDun live (TD's
// public answer: decline, IDRBVBBY) and, with TongDun down, queues the v3
// check and delivers it when TongDun is back.
func TestTongDunV3EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "upstream", "tongdun", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	answer := read("answers/seed-sample.json")
	// The testdata requests are channel "test"'s.
	sim := tdsim.New(tdsim.Options{PartnerCode: "bank", PartnerKey: tdKey, Channel: "test", APIVersion: tongdun.V3})
	for _, acct := range []string{"123456789", "acct-2"} {
		if err := sim.SetAnswer(acct, answer); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	env := []string{
		"AGENT_TONGDUN_URL=" + srv.URL + "/fraud/promo/v3", "AGENT_TONGDUN_PARTNER_CODE=bank",
		"AGENT_TONGDUN_PARTNER_KEY=" + tdKey, "AGENT_TONGDUN_CHANNEL=test", "AGENT_TONGDUN_API_VERSION=v3",
		"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms",
		"AGENT_FORWARD_PROBE_INTERVAL=300ms", "AGENT_DECISION_TIMEOUT=150ms",
	}
	a := startAgent(t, t.TempDir(), env...)

	d, raw := postDecision(t, a, read("requests/v3-lookup-account.json"))
	if d.Result != "decline" || d.Degraded || len(d.Reasons) == 0 || d.Reasons[0].ID != "TD_DECLINE" ||
		d.Signals["tongdun"].Source != "live" || !strings.Contains(raw, `"IDRBVBBY"`) {
		t.Fatalf("live v3 decision: %s", raw)
	}

	sim.SetFaults(tdsim.Faults{Outage: true})
	body := strings.Replace(string(read("requests/v3-withdraw-account.json")), `{"channel"`, `{"id":"v3-off-1","channel"`, 1)
	d, raw = postDecision(t, a, []byte(body))
	if !d.Degraded || !d.Signals["tongdun"].Queued {
		t.Fatalf("degraded v3 decision: %s", raw)
	}
	sim.SetFaults(tdsim.Faults{})
	waitFor(t, "late verdict", 20*time.Second, func() bool {
		d, _ := getDecision(t, a, "v3-off-1")
		return d.Late["tongdun"] != nil
	})
	if d, raw := getDecision(t, a, "v3-off-1"); !strings.Contains(string(d.Late["tongdun"]), "IDRBVBBY") ||
		strings.Contains(raw, "acct-2") {
		t.Fatalf("stored v3 decision with late verdict: %s", raw)
	}
	if st := sim.Stats(); st.ByCode["9002"] != 0 || st.Accepted != 2 {
		t.Fatalf("simulator: %+v", st)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
}
