package localapi

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

// tdTestdata reads a file of upstream/tongdun's testdata.
func tdTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "upstream", "tongdun", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tdHarness is the API, set for TD API version agent, with a decision
// engine whose TongDun is the real client against a simulator serving API
// version v, which answers account 123456789 with TD's public answer
// example.
func tdHarness(t *testing.T, v, agent tongdun.APIVersion) (*harness, *tdsim.Server) {
	t.Helper()
	sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk-0123456789", Channel: "test", APIVersion: v})
	if err := sim.SetAnswer("123456789", tdTestdata(t, "answers/seed-sample.json")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	td, err := tongdun.New(tongdun.Config{URL: srv.URL + "/fraud/promo/" + string(v), PartnerCode: "pc", PartnerKey: "pk-0123456789", Channel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sp := newSpool(t, 0)
	eng := decision.New(decision.Config{Store: decision.NewSpoolStore(sp), Policies: onePolicy{policy.Default()}, TongDun: td, HashKey: []byte("test-hash-key")})
	t.Cleanup(eng.Close)
	return newHarness(t, func(c *Config) {
		c.Store, c.Decider, c.DefaultChannel, c.TongDunAPIVersion = sp, eng, "test", agent
	}), sim
}

// TestDecisionReplaysTheTongDunExample: TD's public request example,
// answered with TD's public answer example (score 90, decline, IDRBVBBY),
// makes POST /v1/decisions decline with TD's reason; so does v3's lookup
// with an account object when the agent is set for v3, and the stored
// record shows the account object masked.
func TestDecisionReplaysTheTongDunExample(t *testing.T) {
	for _, tt := range []struct {
		file string
		v    tongdun.APIVersion
	}{
		{"requests/v2-seed-example.json", tongdun.V2},
		{"requests/v2-seed-example.json", tongdun.V3},
		{"requests/v3-lookup-account.json", tongdun.V3},
	} {
		t.Run(filepath.Base(tt.file)+" "+string(tt.v), func(t *testing.T) {
			h, _ := tdHarness(t, tt.v, tt.v)
			resp, b := h.do(t, "POST", "/v1/decisions", "application/json", tdTestdata(t, tt.file))
			var a struct {
				DecisionID string `json:"decision_id"`
				Result     string `json:"result"`
				Reasons    []policy.Reason
				Signals    map[string]decision.SignalView
			}
			if err := json.Unmarshal(b, &a); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
			}
			td := a.Signals["tongdun"]
			if a.Result != "decline" || len(a.Reasons) == 0 || a.Reasons[0].ID != "TD_DECLINE" ||
				td.Status != "fresh" || td.Source != "live" || td.Score == nil || *td.Score != 90 || td.Result != "decline" ||
				len(td.Reasons) != 1 || td.Reasons[0].ID != "IDRBVBBY" || td.Reasons[0].Reason != "短时间内操作频率异常" {
				t.Fatalf("answer %s", b)
			}
			resp, rec := h.do(t, "GET", "/v1/decisions/"+a.DecisionID, "", nil)
			if resp.StatusCode != 200 || !strings.Contains(string(rec), `"IDRBVBBY"`) {
				t.Fatalf("record %d %s", resp.StatusCode, rec)
			}
			for _, clear := range []string{"123456789", "18700001111", "user@example.com", "aGPH1658920283672ropYaFxT7", "210.20.10.33"} {
				if strings.Contains(string(rec), clear) {
					t.Errorf("record shows %s: %s", clear, rec)
				}
			}
		})
	}
}

// TestDecisionV3ShapesNeedTheSetting: set for v2 (the default), the agent
// refuses v3's lookup and account object with 400, naming the field and the
// setting; TongDun is not asked.
func TestDecisionV3ShapesNeedTheSetting(t *testing.T) {
	lookup := tdTestdata(t, "requests/v3-lookup-account.json")
	withdraw := tdTestdata(t, "requests/v3-withdraw-account.json")
	for _, v := range []tongdun.APIVersion{"", tongdun.V2} {
		h, sim := tdHarness(t, tongdun.V2, v)
		for field, body := range map[string][]byte{"decision_event": lookup, "event_detail.account": withdraw} {
			resp, b := h.do(t, "POST", "/v1/decisions", "application/json", body)
			var eb ErrorBody
			json.Unmarshal(b, &eb)
			if resp.StatusCode != 400 || eb.Error.Code != "invalid_request" || len(eb.Error.Details) != 1 ||
				eb.Error.Details[0].Field != field || !strings.Contains(eb.Error.Details[0].Reason, "AGENT_TONGDUN_API_VERSION=v3") {
				t.Errorf("%q: %d %s, want 400 on %s naming the setting", v, resp.StatusCode, b, field)
			}
		}
		if n := sim.Requests(); n != 0 {
			t.Errorf("TongDun was asked %d times", n)
		}
	}
}
