package e2e

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

// TestDecisionsUnionPaySampleShape: with AGENT_UNIONPAY_API_SHAPE=sample the
// agent asks a FireEye that speaks only the seed's sample shape, live, for
// the model score and the transaction (the sample's values), and both
// answers reach the decision. Spoken to in the table shape, the same
// FireEye would answer the score 404 and the transaction 0001.
func TestDecisionsUnionPaySampleShape(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const card = "6262320120123210"
	td, _, env := decisionSims(t)
	up := upsim.New(upsim.Options{ID: "bank", AppKey: upKey, Shape: unionpay.ShapeSample})
	up.AddTransaction(unionpay.TransactionQuery{CardNo: card, TransDate: "20161201", TransAmount: 21200, CertID: "411524198810280019"})
	up.SetScore(card, 888)
	ups := httptest.NewServer(up)
	t.Cleanup(ups.Close)
	// Later values win over decisionSims' table-shape FireEye.
	a := startAgent(t, t.TempDir(), append(env,
		"AGENT_UNIONPAY_URL="+ups.URL+"/creditScore", "AGENT_UNIONPAY_API_SHAPE=sample",
		"AGENT_UNIONPAY_SCORE_URL="+ups.URL+"/ares/ARESVerificationService/"+unionpay.PathSampleModelScore)...)

	td.SetVerdict("acct-sample", 10, "accept", nil)
	body := decisionBody("sample-1", "acct-sample", 500, true)
	body = append(body[:len(body)-1], `,"transaction":{"date":"20161201","amount":21200}}`...)
	_, raw := postDecision(t, a, body)
	var d struct {
		Signals map[string]struct {
			Source string `json:"source"`
			Score  *int   `json:"score"`
			Match  *bool  `json:"match"`
		} `json:"signals"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	m, tx := d.Signals["unionpay_model"], d.Signals["unionpay_transaction"]
	if m.Source != "live" || m.Score == nil || *m.Score != 888 || tx.Source != "live" || tx.Match == nil || !*tx.Match {
		t.Fatalf("decision: %s", raw)
	}
	calls := up.Received()
	if len(calls) != 2 || up.Requests() != 2 {
		t.Fatalf("FireEye accepted %d of %d requests: %+v", len(calls), up.Requests(), calls)
	}
	for _, c := range calls {
		if c.Auth != nil && (c.Auth.TransAmount != 21200 || c.Auth.TransDate != "20161201") {
			t.Errorf("transaction as received: %v", c.Auth)
		}
	}
	if strings.Contains(a.Logs.String(), card) {
		t.Errorf("the card number is in the agent's log")
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
}
