package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var testNow = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// Input builders, so that each case reads as what it changes.

func fresh(score int, result string) Signal {
	return Signal{Status: StatusFresh, Score: score, Result: result}
}

func withdraw(amount float64, c *Credit) *Input {
	return &Input{Event: "withdraw", AccountID: "acc-1", Amount: amount, Now: testNow, Credit: c}
}

func revolving(line, outstanding float64) *Credit {
	return &Credit{Mode: CreditRevolving, Line: line, Outstanding: outstanding, APR: 0.18}
}

func single(line float64, validUntil time.Time) *Credit {
	return &Credit{Mode: CreditSingle, Line: line, APR: 0.18, ValidUntil: validUntil}
}

func reasonIDs(d Decision) []string {
	out := []string{}
	for _, r := range d.Reasons {
		out = append(out, r.ID)
	}
	return out
}

func ids(fs []Fired) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

// policyFrom loads the default policy after edit has changed its YAML tree. The default's own
// test vectors are dropped, since the edits change what they expect.
func policyFrom(t testing.TB, edit func(root *yaml.Node)) *Policy {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(defaultYAML, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i < len(root.Content); i += 2 {
		if root.Content[i].Value == "tests" {
			root.Content = slices.Delete(root.Content, i, i+2)
			break
		}
	}
	edit(root)
	src, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(src, "edited-default.yaml")
	if err != nil {
		t.Fatalf("edited default does not load:\n%v", err)
	}
	return p
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setRuleMode sets the mode of rule id.
func setRuleMode(id, mode string) func(*yaml.Node) {
	return func(root *yaml.Node) {
		for _, r := range mapValue(root, "rules").Content {
			if mapValue(r, "id").Value == id {
				mapValue(r, "mode").Value = mode
				return
			}
		}
		panic("no rule " + id)
	}
}

// addRule appends a rule given as YAML.
func addRule(ruleYAML string) func(*yaml.Node) {
	return func(root *yaml.Node) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(ruleYAML), &n); err != nil {
			panic(err)
		}
		rules := mapValue(root, "rules")
		rules.Content = append(rules.Content, n.Content[0])
	}
}

// setLists replaces the allow and block lists.
func setLists(listsYAML string) func(*yaml.Node) {
	return func(root *yaml.Node) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(listsYAML), &n); err != nil {
			panic(err)
		}
		*mapValue(root, "lists") = *n.Content[0]
	}
}

func TestDefaultLoads(t *testing.T) {
	p := Default()
	if p.Version() != "2026-11-20.1" {
		t.Errorf("version %q", p.Version())
	}
	sum := sha256.Sum256(defaultYAML)
	if p.SHA256() != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 %s is not the hash of the file", p.SHA256())
	}
	if p.OfflineLimit() != 2000 {
		t.Errorf("offline limit %v", p.OfflineLimit())
	}
	if ra, da := p.Thresholds(); ra != 50 || da != 80 {
		t.Errorf("thresholds %v %v", ra, da)
	}
	v := p.Velocity()
	if len(v) != 1 || v[0].Name != "withdrawals_1h" || v[0].Key != "account" || v[0].Window != time.Hour ||
		!slices.Equal(v[0].Events, []string{"withdraw"}) {
		t.Errorf("velocity %+v", v)
	}
	want := []string{"TD_DECLINE", "TD_REVIEW", "TD_SCORE", "UP_SCORE_LOW", "UP_SCORE_MEDIUM", "UP_SCORE_FAIR",
		"UP_TXN_NOT_FOUND", "APR_OVER_36", "LINE_EXCEEDED", "OVERDUE", "LINE_EXPIRED", "SINGLE_DRAWDOWN_PARTIAL",
		"SINGLE_DRAWDOWN_USED", "SINGLE_DRAWDOWN_EXPIRED", "OFFLINE_LIMIT", "WITHDRAW_VELOCITY", "TD_STALE_DEGRADED"}
	var got []string
	for _, r := range p.Rules() {
		got = append(got, r.ID)
		if len(r.Doc) < 40 {
			t.Errorf("rule %s: doc %q does not say why the rule exists", r.ID, r.Doc)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules\n got %v\nwant %v", got, want)
	}
	if !strings.Contains(string(DefaultYAML()), "tests:") {
		t.Error("the default policy carries no test vectors")
	}
}

// TestDefaultRules walks each seed rule of the default policy from both sides of its edge.
func TestDefaultRules(t *testing.T) {
	p := Default()
	validUntil := testNow.Add(72 * time.Hour)
	cases := []struct {
		name    string
		in      *Input
		result  string
		reasons []string
	}{
		// TongDun: its decline and review are carried over; its score adds 0.6 per point.
		{"TongDun decline, fresh", &Input{Event: "withdraw", Signals: Signals{TongDun: fresh(90, Decline)}}, Decline, []string{"TD_DECLINE"}},
		{"TongDun decline, stale", &Input{Event: "withdraw", Signals: Signals{TongDun: Signal{Status: StatusStale, Score: 90, Result: Decline}}}, Decline, []string{"TD_DECLINE"}},
		{"TongDun decline, but the answer is missing", &Input{Event: "withdraw", Signals: Signals{TongDun: Signal{Status: StatusMissing, Result: Decline}}}, Accept, []string{}},
		{"TongDun decline, but the call errored", &Input{Event: "withdraw", Signals: Signals{TongDun: Signal{Status: StatusError, Score: 90, Result: Decline}}}, Accept, []string{}},
		{"TongDun review", &Input{Event: "get_coupon", Signals: Signals{TongDun: fresh(30, Review)}}, Review, []string{"TD_REVIEW"}},
		{"TongDun accept, score 83 (49.8 points)", &Input{Event: "marketing", Signals: Signals{TongDun: fresh(83, Accept)}}, Accept, []string{}},
		{"TongDun accept, score 84 (50.4 points)", &Input{Event: "marketing", Signals: Signals{TongDun: fresh(84, Accept)}}, Review, []string{"TD_SCORE"}},
		{"TongDun 92 + UnionPay 650 (55.2 + 25 points)", &Input{Event: "marketing", Signals: Signals{TongDun: fresh(92, Accept), UnionPayModel: fresh(650, "")}}, Decline, []string{"TD_SCORE", "UP_SCORE_FAIR"}},

		// UnionPay FireEye model score bands (bank's choice): <500 decline, 500-599 review, 600-699 +25.
		{"UnionPay score 300", &Input{Signals: Signals{UnionPayModel: fresh(300, "")}}, Decline, []string{"UP_SCORE_LOW"}},
		{"UnionPay score 499", &Input{Signals: Signals{UnionPayModel: fresh(499, "")}}, Decline, []string{"UP_SCORE_LOW"}},
		{"UnionPay score 500", &Input{Signals: Signals{UnionPayModel: fresh(500, "")}}, Review, []string{"UP_SCORE_MEDIUM"}},
		{"UnionPay score 599", &Input{Signals: Signals{UnionPayModel: fresh(599, "")}}, Review, []string{"UP_SCORE_MEDIUM"}},
		{"UnionPay score 600", &Input{Signals: Signals{UnionPayModel: fresh(600, "")}}, Accept, []string{}},
		{"UnionPay score 1000", &Input{Signals: Signals{UnionPayModel: fresh(1000, "")}}, Accept, []string{}},
		{"UnionPay score 450 but missing", &Input{Signals: Signals{UnionPayModel: Signal{Status: StatusMissing, Score: 450}}}, Accept, []string{}},

		// UnionPay transaction authentication.
		{"transaction not found", &Input{Transaction: &Transaction{Amount: 212, Date: "20261120"}, Signals: Signals{UnionPayTransaction: Signal{Status: StatusFresh, Match: false}}}, Decline, []string{"UP_TXN_NOT_FOUND"}},
		{"transaction found", &Input{Transaction: &Transaction{Amount: 212, Date: "20261120"}, Signals: Signals{UnionPayTransaction: Signal{Status: StatusFresh, Match: true}}}, Accept, []string{}},
		{"transaction not found, stale answer", &Input{Signals: Signals{UnionPayTransaction: Signal{Status: StatusStale, Match: false}}}, Accept, []string{}},
		{"transaction never asked", &Input{Signals: Signals{UnionPayTransaction: Signal{Status: StatusMissing}}}, Accept, []string{}},

		// The 36% APR ceiling.
		{"APR 18%", withdraw(100, revolving(1000, 0)), Accept, []string{}},
		{"APR exactly 36%", withdraw(100, &Credit{Mode: CreditRevolving, Line: 1000, APR: 0.36}), Accept, []string{}},
		{"APR 36.01%", withdraw(100, &Credit{Mode: CreditRevolving, Line: 1000, APR: 0.3601}), Decline, []string{"APR_OVER_36"}},
		{"APR 36.01% on a marketing event", &Input{Event: "marketing", Credit: &Credit{Mode: CreditRevolving, Line: 1000, APR: 0.3601}}, Decline, []string{"APR_OVER_36"}},

		// Revolving line: the remaining amount (line - outstanding) covers the withdrawal.
		{"withdrawal below the remaining line", withdraw(8000, revolving(10000, 1000.10)), Accept, []string{}},
		{"withdrawal of exactly the remaining line", withdraw(8999.90, revolving(10000, 1000.10)), Accept, []string{}},
		{"withdrawal a cent above the remaining line", withdraw(8999.91, revolving(10000, 1000.10)), Decline, []string{"LINE_EXCEEDED"}},
		{"whole line with nothing outstanding", withdraw(0.3, revolving(0.1+0.2, 0)), Accept, []string{}},
		{"amount above the line on a non-withdrawal event", &Input{Event: "marketing", Amount: 50000, Now: testNow, Credit: revolving(10000, 0)}, Accept, []string{}},
		{"revolving line with no overdue", withdraw(100, &Credit{Mode: CreditRevolving, Line: 10000, APR: 0.2, OverdueDays: 0}), Accept, []string{}},
		{"revolving line one day overdue", withdraw(100, &Credit{Mode: CreditRevolving, Line: 10000, APR: 0.2, OverdueDays: 1}), Decline, []string{"OVERDUE"}},
		{"revolving line at valid_until", &Input{Event: "withdraw", Amount: 100, Now: validUntil, Credit: &Credit{Mode: CreditRevolving, Line: 1000, APR: 0.2, ValidUntil: validUntil}}, Accept, []string{}},
		{"revolving line a second after valid_until", &Input{Event: "withdraw", Amount: 100, Now: validUntil.Add(time.Second), Credit: &Credit{Mode: CreditRevolving, Line: 1000, APR: 0.2, ValidUntil: validUntil}}, Decline, []string{"LINE_EXPIRED"}},

		// Single drawdown: the whole line or nothing, before valid_until, once.
		{"single drawdown of exactly the line", withdraw(10000, single(10000, validUntil)), Accept, []string{}},
		{"single drawdown a cent short", withdraw(9999.99, single(10000, validUntil)), Decline, []string{"SINGLE_DRAWDOWN_PARTIAL"}},
		{"single drawdown above the line", withdraw(10000.01, single(10000, validUntil)), Decline, []string{"SINGLE_DRAWDOWN_PARTIAL"}},
		{"single drawdown with no end date", withdraw(10000, single(10000, time.Time{})), Accept, []string{}},
		{"single drawdown exactly at valid_until", &Input{Event: "withdraw", Amount: 10000, Now: validUntil, Credit: single(10000, validUntil)}, Accept, []string{}},
		{"single drawdown a nanosecond after valid_until", &Input{Event: "withdraw", Amount: 10000, Now: validUntil.Add(time.Nanosecond), Credit: single(10000, validUntil)}, Decline, []string{"SINGLE_DRAWDOWN_EXPIRED"}},
		{"single drawdown already taken", withdraw(10000, &Credit{Mode: CreditSingle, Line: 10000, Outstanding: 10000, APR: 0.2}), Decline, []string{"SINGLE_DRAWDOWN_USED"}},
		{"single grant, marketing event, partial amount", &Input{Event: "marketing", Amount: 10, Now: testNow, Credit: single(10000, validUntil)}, Accept, []string{}},

		// Degraded mode.
		{"degraded, exactly the offline limit", &Input{Event: "withdraw", Amount: 2000, Degraded: true}, Accept, []string{}},
		{"degraded, a cent above the offline limit", &Input{Event: "withdraw", Amount: 2000.01, Degraded: true}, Review, []string{"OFFLINE_LIMIT"}},
		{"not degraded, above the offline limit", &Input{Event: "withdraw", Amount: 5000}, Accept, []string{}},

		// Velocity: withdrawals_1h counts the earlier withdrawals in the hour.
		{"5th withdrawal in the hour", &Input{Event: "withdraw", Amount: 10, Velocity: map[string]int64{"withdrawals_1h": 4}}, Accept, []string{}},
		{"6th withdrawal in the hour", &Input{Event: "withdraw", Amount: 10, Velocity: map[string]int64{"withdrawals_1h": 5}}, Review, []string{"WITHDRAW_VELOCITY"}},
		{"counter not passed counts as 0", &Input{Event: "withdraw", Amount: 10}, Accept, []string{}},
		{"many withdrawals but this is a coupon", &Input{Event: "get_coupon", Velocity: map[string]int64{"withdrawals_1h": 50}}, Accept, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.in)
			if d.Result != tc.result || !slices.Equal(reasonIDs(d), tc.reasons) {
				t.Errorf("got %s %v, want %s %v (fired %v, score %g)", d.Result, reasonIDs(d), tc.result, tc.reasons, ids(d.Fired), d.Score)
			}
			if len(d.Errors) > 0 {
				t.Errorf("rule errors: %+v", d.Errors)
			}
			if d.PolicyVersion != p.Version() || d.PolicySHA256 != p.SHA256() {
				t.Errorf("decision does not name its policy: %q %q", d.PolicyVersion, d.PolicySHA256)
			}
		})
	}
}

func TestAllFiredRulesAreReported(t *testing.T) {
	in := withdraw(20000, &Credit{Mode: CreditRevolving, Line: 10000, OverdueDays: 30, APR: 0.40})
	in.Degraded = true
	in.Signals.TongDun = fresh(70, Review)
	in.Velocity = map[string]int64{"withdrawals_1h": 9}
	d := Default().Decide(in)
	if d.Result != Decline {
		t.Fatalf("result %s", d.Result)
	}
	// Block rules first, then review and score rules, each in file order.
	wantFired := []string{"APR_OVER_36", "LINE_EXCEEDED", "OVERDUE", "TD_REVIEW", "OFFLINE_LIMIT", "WITHDRAW_VELOCITY", "TD_SCORE"}
	if !slices.Equal(ids(d.Fired), wantFired) {
		t.Errorf("fired %v, want %v", ids(d.Fired), wantFired)
	}
	// Only the rules that produced the decline are its reasons.
	if want := []string{"APR_OVER_36", "LINE_EXCEEDED", "OVERDUE"}; !slices.Equal(reasonIDs(d), want) {
		t.Errorf("reasons %v, want %v", reasonIDs(d), want)
	}
	if d.Reasons[0].Reason != "Annualised rate above 36% is not compliant" {
		t.Errorf("reason text %q", d.Reasons[0].Reason)
	}
	if d.Score != 42 || d.Fired[6].Score != 42 || d.Fired[6].Class != ClassScore || d.Fired[6].Mode != ModeActive {
		t.Errorf("score %v, TD_SCORE %+v", d.Score, d.Fired[6])
	}
}

// TestShadowNeverChangesOutcome adds a shadow block rule that always fires and a shadow score
// rule that adds 1000: no decision may change but for its Shadow list.
func TestShadowNeverChangesOutcome(t *testing.T) {
	base := Default()
	shadowed := policyFrom(t, func(root *yaml.Node) {
		addRule("{id: ALWAYS, class: block, mode: shadow, when: 'true', reason: always}")(root)
		addRule("{id: HUGE, class: score, mode: shadow, when: 'true', score: 1000, reason: huge}")(root)
		addRule("{id: ALLOW_ALL, class: allow, mode: shadow, when: 'true', reason: allow all}")(root)
	})
	inputs := map[string]*Input{
		"clean":           withdraw(100, revolving(1000, 0)),
		"TongDun decline": {Event: "withdraw", Signals: Signals{TongDun: fresh(95, Decline)}},
		"review":          {Event: "withdraw", Amount: 3000, Degraded: true},
		"score review":    {Event: "marketing", Signals: Signals{TongDun: fresh(90, Accept)}},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			want, got := base.Decide(in), shadowed.Decide(in)
			if got.Result != want.Result || got.Score != want.Score || !slices.Equal(reasonIDs(got), reasonIDs(want)) ||
				!slices.Equal(ids(got.Fired), ids(want.Fired)) {
				t.Errorf("shadow rules changed the decision:\n got %+v\nwant %+v", got, want)
			}
			if !slices.Equal(ids(got.Shadow), []string{"ALWAYS", "ALLOW_ALL", "HUGE"}) {
				t.Errorf("shadow %v", ids(got.Shadow))
			}
			if got.Shadow[2].Score != 1000 || got.Shadow[2].Mode != ModeShadow {
				t.Errorf("shadow score rule %+v", got.Shadow[2])
			}
		})
	}

	// A live rule turned to shadow stops deciding but is still reported.
	p := policyFrom(t, setRuleMode("TD_DECLINE", ModeShadow))
	d := p.Decide(&Input{Event: "withdraw", Signals: Signals{TongDun: fresh(10, Decline)}})
	if d.Result != Accept || !slices.Equal(ids(d.Shadow), []string{"TD_DECLINE"}) || slices.Contains(ids(d.Fired), "TD_DECLINE") {
		t.Errorf("TD_DECLINE in shadow: %+v", d)
	}
}

func TestDisabledRulesAreSkipped(t *testing.T) {
	p := policyFrom(t, setRuleMode("TD_DECLINE", ModeDisabled))
	d := p.Decide(&Input{Event: "withdraw", Signals: Signals{TongDun: fresh(10, Decline)}})
	if d.Result != Accept || len(d.Reasons) != 0 || slices.Contains(ids(d.Fired), "TD_DECLINE") || len(d.Shadow) != 0 {
		t.Errorf("disabled TD_DECLINE still decided: %+v", d)
	}
	var listed bool
	for _, r := range p.Rules() {
		listed = listed || r.ID == "TD_DECLINE" && r.Mode == ModeDisabled
	}
	if !listed {
		t.Error("a disabled rule is no longer listed by Rules")
	}
}

const testLists = `
allow: {accounts: [vip-1], devices: [bb-known], ips: ["198.51.100.9"], card_hashes: []}
block:
  accounts: [mule-1]
  devices: [bb-stolen]
  ips: ["203.0.113.0/24", "2001:db8::/32"]
  card_hashes: ["9F86D081884C7D659A2FEAA0C55AD015"]
`

func TestAllowListBeatsEverything(t *testing.T) {
	p := policyFrom(t, setLists(testLists))
	// Everything here would decline: block-listed device, IP and card, TongDun decline, APR over 36%.
	worst := withdraw(50000, &Credit{Mode: CreditRevolving, Line: 10, APR: 0.9, OverdueDays: 90})
	worst.Device, worst.IP, worst.CardHash = "bb-stolen", "203.0.113.5", "9f86d081884c7d659a2feaa0c55ad015"
	worst.Signals.TongDun = fresh(100, Decline)
	for _, allow := range []func(in *Input){
		func(in *Input) { in.AccountID = "vip-1" },
		func(in *Input) { in.Device = "bb-known" },
		func(in *Input) { in.IP = "198.51.100.9" },
		func(in *Input) { in.IP = "::ffff:198.51.100.9" },
	} {
		in := *worst
		allow(&in)
		d := p.Decide(&in)
		if d.Result != Accept || !slices.Equal(reasonIDs(d), []string{ReasonAllowList}) || len(d.Fired) != 0 {
			t.Errorf("%s/%s/%s: %+v", in.AccountID, in.Device, in.IP, d)
		}
	}
	if d := p.Decide(worst); d.Result != Decline {
		t.Errorf("without the allow list: %s", d.Result)
	}
}

func TestBlockListDeclines(t *testing.T) {
	p := policyFrom(t, setLists(testLists))
	cases := []struct {
		name   string
		edit   func(in *Input)
		reason []string
	}{
		{"account", func(in *Input) { in.AccountID = "mule-1" }, []string{ReasonBlockListAccount}},
		{"device", func(in *Input) { in.Device = "bb-stolen" }, []string{ReasonBlockListDevice}},
		{"IPv4 in a blocked prefix", func(in *Input) { in.IP = "203.0.113.200" }, []string{ReasonBlockListIP}},
		{"IPv6 in a blocked prefix", func(in *Input) { in.IP = "2001:db8::1" }, []string{ReasonBlockListIP}},
		{"card hash, any case", func(in *Input) { in.CardHash = "9F86d081884c7d659a2feaa0c55ad015" }, []string{ReasonBlockListCard}},
		{"account and device, with a block rule", func(in *Input) {
			in.AccountID, in.Device = "mule-1", "bb-stolen"
			in.Signals.TongDun = fresh(90, Decline)
		}, []string{ReasonBlockListAccount, ReasonBlockListDevice, "TD_DECLINE"}},
		{"IP next to the prefix", func(in *Input) { in.IP = "203.0.114.1" }, nil},
		{"unparsable IP", func(in *Input) { in.IP = "not-an-ip" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := withdraw(100, revolving(1000, 0))
			tc.edit(in)
			d := p.Decide(in)
			want := Decline
			if tc.reason == nil {
				want, tc.reason = Accept, []string{}
			}
			if d.Result != want || !slices.Equal(reasonIDs(d), tc.reason) {
				t.Errorf("got %s %v, want %s %v", d.Result, reasonIDs(d), want, tc.reason)
			}
		})
	}
}

// TestRuleErrorNeverAccepts: a rule that cannot be evaluated did not fire, is reported, and turns
// what would have been an accept into a review.
func TestRuleErrorNeverAccepts(t *testing.T) {
	p := policyFrom(t, addRule(`{id: DIV, class: block, when: '100 / signals.tongdun.score > 1', reason: divides by the score}`))
	d := p.Decide(&Input{Event: "marketing", Signals: Signals{TongDun: fresh(0, Accept)}})
	if d.Result != Review || !slices.Equal(reasonIDs(d), []string{ReasonRuleError}) || !slices.Equal(ids(d.Errors), []string{"DIV"}) {
		t.Fatalf("%+v", d)
	}
	if !strings.Contains(d.Errors[0].Error, "division by zero") || !strings.Contains(d.Reasons[0].Reason, "DIV") {
		t.Errorf("error %q, reason %q", d.Errors[0].Error, d.Reasons[0].Reason)
	}
	// A decline stands; the error is still reported.
	d = p.Decide(&Input{Event: "marketing", Signals: Signals{TongDun: fresh(0, Decline)}})
	if d.Result != Decline || !slices.Equal(reasonIDs(d), []string{"TD_DECLINE"}) || len(d.Errors) != 1 {
		t.Errorf("%+v", d)
	}
	// The same rule in shadow is reported and changes nothing.
	p = policyFrom(t, addRule(`{id: DIV, class: block, mode: shadow, when: '100 / signals.tongdun.score > 1', reason: divides}`))
	d = p.Decide(&Input{Event: "marketing", Signals: Signals{TongDun: fresh(0, Accept)}})
	if d.Result != Accept || len(d.Reasons) != 0 || len(d.Errors) != 1 || d.Errors[0].Mode != ModeShadow {
		t.Errorf("%+v", d)
	}
}

func TestInvalidInputIsReviewed(t *testing.T) {
	p := Default()
	for name, in := range map[string]*Input{
		"NaN amount":        {Event: "withdraw", Amount: math.NaN()},
		"infinite line":     withdraw(10, &Credit{Mode: CreditRevolving, Line: math.Inf(1)}),
		"huge account id":   {Event: "withdraw", AccountID: strings.Repeat("a", 5000)},
		"huge TongDun code": {Signals: Signals{TongDun: Signal{Status: StatusFresh, Reasons: []Reason{{ID: strings.Repeat("X", 2000)}}}}},
	} {
		d := p.Decide(in)
		if d.Result != Review || !slices.Equal(reasonIDs(d), []string{ReasonInvalidInput}) {
			t.Errorf("%s: %+v", name, d)
		}
	}
	if d := p.Decide(nil); d.Result != Accept {
		t.Errorf("nil input: %+v", d)
	}
}

// TestSchemaFields reaches every CEL variable and field once, so the activation is exercised
// beyond what the default policy reads.
func TestSchemaFields(t *testing.T) {
	p := policyFrom(t, addRule(`
id: EVERYTHING
class: review
reason: every field
when: |
  account_id == "a" && device == "d" && ip == "1.2.3.4" && card_hash == "c0ffee" &&
  now == timestamp("2026-11-20T10:00:00Z") && transaction.present && transaction.amount == 1.5 &&
  transaction.date == "20261120" && credit.present && credit.line == 10.0 && credit.remaining == 7.5 &&
  credit.apr == 0.1 && credit.valid_until == timestamp("2027-01-01T00:00:00Z") &&
  signals.unionpay_transaction.match && signals.tongdun.age_seconds == 30.0 &&
  "IDRBVBBY" in signals.tongdun.reason_ids && size(velocity) == 1 && "withdrawals_1h" in velocity &&
  velocity.withdrawals_1h == 2 && velocity.all(k, velocity[k] == 2) && has(credit.valid_until) &&
  !has(signals.unionpay_model.score) && offline_limit == 2000.0 && !degraded &&
  type(credit) == outpost.Credit && signals.tongdun == signals.tongdun
`))
	in := &Input{Event: "browse", AccountID: "a", Device: "d", IP: "1.2.3.4", CardHash: "c0ffee", Now: testNow,
		Transaction: &Transaction{Amount: 1.5, Date: "20261120"},
		Credit:      &Credit{Mode: CreditRevolving, Line: 10, Outstanding: 2.5, APR: 0.1, ValidUntil: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		Signals: Signals{
			TongDun:             Signal{Status: StatusFresh, Score: 1, Result: Accept, AgeSeconds: 30, Reasons: []Reason{{ID: "IDRBVBBY", Reason: "短时间内操作频率异常"}}},
			UnionPayTransaction: Signal{Status: StatusFresh, Match: true},
		},
		Velocity: map[string]int64{"withdrawals_1h": 2, "not_declared": 7},
	}
	d := p.Decide(in)
	if d.Result != Review || !slices.Equal(reasonIDs(d), []string{"EVERYTHING"}) || len(d.Errors) != 0 {
		t.Errorf("%+v", d)
	}
}

func TestDecideConcurrently(t *testing.T) {
	p := Default()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				amount := float64(100 * (i%3 + 1))
				in := withdraw(amount, revolving(float64(100*(g%3+1)), 0))
				d := p.Decide(in)
				want := Accept
				if amount > float64(100*(g%3+1)) {
					want = Decline
				}
				if d.Result != want {
					t.Errorf("goroutine %d: amount %v: %s", g, amount, d.Result)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// typicalWithdrawal is a clean revolving-line withdrawal with every signal fresh.
func typicalWithdrawal() *Input {
	return &Input{
		Event: "withdraw", AccountID: "acc-1029", Device: "aGPH1658920283672ropYaFxT7", IP: "210.20.10.33",
		CardHash: "5e884898da28047151d0e56f8dc62927", Amount: 1500, Now: testNow,
		Credit: &Credit{Mode: CreditRevolving, Line: 10000, Outstanding: 2500, APR: 0.18, ValidUntil: testNow.AddDate(1, 0, 0)},
		Signals: Signals{
			TongDun:             Signal{Status: StatusFresh, Score: 12, Result: Accept, AgeSeconds: 3},
			UnionPayModel:       Signal{Status: StatusFresh, Score: 720, AgeSeconds: 40},
			UnionPayTransaction: Signal{Status: StatusFresh, Match: true, AgeSeconds: 2},
		},
		Velocity: map[string]int64{"withdrawals_1h": 1},
	}
}

func BenchmarkDecide(b *testing.B) {
	p := Default()
	in := typicalWithdrawal()
	if d := p.Decide(in); d.Result != Accept || len(d.Errors) > 0 {
		b.Fatalf("%+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(in)
	}
}

func BenchmarkDecideParallel(b *testing.B) {
	p := Default()
	in := typicalWithdrawal()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Decide(in)
		}
	})
}

// TestScoresAreRounded: a weight times a signal's score is seldom a whole
// binary fraction (0.6 × 24 is 14.399999999999999 in float64); the answer
// shows, and the thresholds compare, the score rounded to 2 decimals.
func TestScoresAreRounded(t *testing.T) {
	p := Default()
	for _, tt := range []struct {
		td   int
		want float64
	}{{24, 14.4}, {7, 4.2}, {83, 49.8}, {84, 50.4}} {
		d := p.Decide(&Input{Event: "marketing", Signals: Signals{TongDun: fresh(tt.td, Accept)}})
		if d.Score != tt.want {
			t.Errorf("TongDun %d: score %v, want %v", tt.td, d.Score, tt.want)
		}
		if len(d.Fired) != 1 || d.Fired[0].Score != tt.want {
			t.Errorf("TongDun %d: fired %+v, want TD_SCORE contributing %v", tt.td, d.Fired, tt.want)
		}
	}
	if got := roundScore(0.1 + 0.2); got != 0.3 {
		t.Errorf("roundScore(0.1+0.2) = %v", got)
	}
	if got := roundScore(1e300); got != 1e300 {
		t.Errorf("roundScore(1e300) = %v", got)
	}
}
