package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// wantErr is one expected load error: its line, its column (0 = not checked) and a part of its
// message.
type wantErr struct {
	line, col int
	msg       string
}

func checkErrors(t *testing.T, err error, file string, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatal("loaded, want an error")
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, not an ErrorList: %v", err, err)
	}
	var one *Error
	if !errors.As(err, &one) || one != list[0] {
		t.Errorf("errors.As does not reach the first *Error")
	}
	if len(list) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(list), len(want), err)
	}
	for _, w := range want {
		found := false
		for _, e := range list {
			if e.File == file && e.Line == w.line && (w.col == 0 || e.Column == w.col) && strings.Contains(e.Msg, w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error at %s:%d:%d containing %q; got:\n%v", file, w.line, w.col, w.msg, err)
		}
	}
}

// TestParseErrorFixtures loads each broken policy in testdata and checks every error and its
// position. Open the fixture next to the line numbers to read a case.
func TestParseErrorFixtures(t *testing.T) {
	cases := []struct {
		file string
		want []wantErr
	}{
		// The checker knows the fields of signals.tongdun; CEL points at the selection.
		{"typo_field.yaml", []wantErr{{7, 27, "rule TD_HIGH: when: undefined field 'scroe'"}}},
		{"non_bool_when.yaml", []wantErr{{8, 11, "rule ADD: when must be of type bool, not int"}}},
		// The error is on the second line of a literal block, at the second '>'.
		{"syntax_error.yaml", []wantErr{{13, 18, "rule BROKEN: when: Syntax error: extraneous input '>'"}}},
		{"bad_class.yaml", []wantErr{
			{6, 12, `rule R1: unknown class "blok"`},
			{11, 11, `rule R2: unknown mode "sometimes"`},
		}},
		{"duplicate_id.yaml", []wantErr{{9, 9, `duplicate rule id "SAME" (first at line 5)`}}},
		{"thresholds_order.yaml", []wantErr{{3, 14, "review_at (90) must not be above decline_at (80)"}}},
		{"failing_test.yaml", []wantErr{{13, 5, `test "big amount declined" fails: result is review, want decline`}}},
		{"too_expensive.yaml", []wantErr{{11, 11, "rule SLOW: when is too expensive: its cost can reach"}}},
		{"unknown_keys.yaml", []wantErr{
			{4, 1, `policy: unknown key "owner"`},
			{6, 5, "rule R1: when is required"},
			{8, 5, `unknown key "wen"`},
		}},
		{"velocity_errors.yaml", []wantErr{
			{6, 27, `velocity[1]: unknown key "email"`},
			{7, 58, `velocity[2]: unknown event "get_coupons"`},
			{11, 50, `velocity counter "withdrawals_1h" is not declared`},
		}},
		{"missing_fields.yaml", []wantErr{
			{5, 5, "rule NO_WHEN: when is required"},
			{8, 5, "rule NO_REASON: reason is required"},
			{11, 5, "rule NO_SCORE: a score rule needs score"},
		}},
		{"enum_typo.yaml", []wantErr{
			{7, 21, `event is never "withdrawl"`},
			{11, 48, `signals.tongdun.status is never "stael"`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			p, err := LoadFile(filepath.Join("testdata", tc.file))
			if p != nil {
				t.Error("a policy came back with the error")
			}
			checkErrors(t, err, filepath.Join("testdata", tc.file), tc.want)
		})
	}
}

// A minimal valid head for the inline cases below (4 lines).
const head = "version: \"t\"\nthresholds: {review_at: 50, decline_at: 80}\noffline_limit: 100\nrules:\n"

func TestParseErrorsInline(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"empty file", "", []wantErr{{0, 0, "file is empty"}}},
		{"not YAML", "version: [\n", []wantErr{{1, 0, "invalid YAML: line 1: did not find expected node content"}}},
		{"tab indentation", "version: t\n\tthresholds: {}\n", []wantErr{{2, 0, "invalid YAML"}}},
		{"not a mapping", "- a\n- b\n", []wantErr{{1, 1, "policy must be a mapping"}}},
		{"two documents", head + "---\nversion: again\n", []wantErr{{5, 1, "only one YAML document"}}},
		{"anchors", head + "  - &r {id: A, class: block, when: 'true', reason: r}\n  - *r\n", []wantErr{{5, 5, "anchors and aliases"}, {6, 5, "anchors and aliases"}}},
		{"duplicate key", "version: a\nversion: b\n" + head[12:], []wantErr{{2, 1, `duplicate key "version"`}}},
		{"no version or rules", "thresholds: {review_at: 1, decline_at: 2}\noffline_limit: 1\n", []wantErr{
			{1, 1, "version is required"}, {1, 1, "rules is required"},
		}},
		{"threshold not a number", "version: t\nthresholds: {review_at: high, decline_at: .nan}\noffline_limit: -5\nrules: []\n", []wantErr{
			{2, 25, "thresholds.review_at must be a finite number"},
			{2, 43, "thresholds.decline_at must be a finite number"},
			{3, 16, "offline_limit must not be negative"},
		}},
		{"folded expression: the column is found on its line", head + "  - id: F\n    class: review\n    reason: r\n    when: >-\n      amount > 1.0 &&\n      signals.tongdun.scroe > 2\n", []wantErr{
			{10, 22, "undefined field 'scroe'"},
		}},
		{"double-quoted expression", head + "  - {id: Q, class: review, reason: r, when: \"degraded && credit.mod == \\\"single\\\"\"}\n", []wantErr{
			{5, 64, "undefined field 'mod'"},
		}},
		{"int compared with double", head + "  - {id: I, class: review, reason: r, when: 'credit.overdue_days > 0.5'}\n", []wantErr{
			{5, 66, "found no matching overload for '_>_' applied to '(int, double)'"},
		}},
		{"undeclared variable", head + "  - {id: U, class: review, reason: r, when: 'phone == \"1\"'}\n", []wantErr{
			{5, 46, "undeclared reference to 'phone'"},
		}},
		{"a broken disabled rule is still an error", head + "  - {id: D, class: block, mode: disabled, reason: r, when: 'amount >'}\n", []wantErr{
			{5, 0, "rule D: when: Syntax error"},
		}},
		{"score on a block rule, bad score expression", head +
			"  - {id: S1, class: block, reason: r, when: 'true', score: 5}\n" +
			"  - {id: S2, class: score, reason: r, when: 'true', score: 'event'}\n", []wantErr{
			{5, 60, "rule S1: score is only for class score"},
			{6, 60, "rule S2: score must be of type int or double, not string"},
		}},
		{"bad and reserved ids", head +
			"  - {id: ALLOW_LIST, class: block, reason: r, when: 'true'}\n" +
			"  - {id: 'has space', class: block, reason: r, when: 'true'}\n", []wantErr{
			{5, 10, `id "ALLOW_LIST" is reserved`},
			{6, 10, `id "has space" must be a letter`},
		}},
		{"bad lists", "version: t\nthresholds: {review_at: 1, decline_at: 2}\noffline_limit: 1\nrules: []\nlists:\n" +
			"  block: {ips: [300.1.1.1], card_hashes: [\"6262320120123210\"], phones: [x]}\n", []wantErr{
			{6, 17, `"300.1.1.1" is not an IP address`},
			{6, 43, "is not a hex HMAC"},
			{6, 64, `unknown key "phones"`},
		}},
		{"test vector with unknown fields and undeclared counter", head + "  []\ntests:\n" +
			"  - name: t\n    input: {event: withdraw, velocity: {nope: 1}, colour: red}\n    expect: {result: maybe}\n", []wantErr{
			{8, 41, `counter "nope" is not declared`},
			{8, 51, `unknown key "colour"`},
			{9, 22, `result "maybe" must be accept, review or decline`},
		}},
		{"too many characters in an expression", head + "  - {id: L, class: review, reason: r, when: '" + strings.Repeat("amount > 1.0 || ", 300) + "true'}\n", []wantErr{
			{5, 45, "expression code point size exceeds limit: size: 4804, limit 4096"},
		}},
		{"deep nesting", head + "  - {id: N, class: review, reason: r, when: '" + strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100) + "'}\n", []wantErr{
			{5, 45, "expression recursion limit exceeded: 64"},
		}},
		{"construct a schema object", head + "  - {id: O, class: review, reason: r, when: 'outpost.Credit{} == credit'}\n" + "tests:\n  - {name: t, input: {}, expect: {result: accept}}\n", []wantErr{
			{7, 5, `rule O could not be evaluated: outpost.Credit values cannot be constructed`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "inline.yaml")
			checkErrors(t, err, "inline.yaml", tc.want)
		})
	}
}

func TestParseGood(t *testing.T) {
	p, err := LoadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version() != "test-1" || p.OfflineLimit() != 500 || len(p.SHA256()) != 64 || p.Name() != "testdata/good.yaml" {
		t.Errorf("%q %v %q %q", p.Version(), p.OfflineLimit(), p.SHA256(), p.Name())
	}
	v := p.Velocity()
	if len(v) != 1 || v[0].Name != "logins_10m" || v[0].Key != "device" || v[0].Window != 10*time.Minute || v[0].Events != nil {
		t.Errorf("velocity %+v", v)
	}
	var modes []string
	for _, r := range p.Rules() {
		modes = append(modes, r.ID+":"+r.Class+":"+r.Mode)
	}
	want := []string{"BIG_WITHDRAWAL:review:active", "TD_BAD:block:active", "TRUSTED_DEVICE:allow:active",
		"TD_POINTS:score:active", "BUSY_DEVICE:score:active", "TRIAL_NIGHT:block:shadow", "RETIRED:block:disabled"}
	if !slices.Equal(modes, want) {
		t.Errorf("rules %v", modes)
	}
	// An allow rule beats review rules and the score, but not block rules.
	d := p.Decide(&Input{Device: "bb-trusted", Event: "withdraw", Amount: 9000, Now: testNow, Signals: Signals{TongDun: fresh(99, Accept)}})
	if d.Result != Accept || !slices.Equal(reasonIDs(d), []string{"TRUSTED_DEVICE"}) || d.Score != 99 {
		t.Errorf("%+v", d)
	}
	d = p.Decide(&Input{Device: "bb-trusted", Now: testNow, Signals: Signals{TongDun: fresh(99, Decline)}})
	if d.Result != Decline || !slices.Equal(reasonIDs(d), []string{"TD_BAD"}) {
		t.Errorf("%+v", d)
	}
	// The shadow rule reads the clock; the disabled one never runs.
	d = p.Decide(&Input{Amount: 10, Now: time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)})
	if d.Result != Accept || !slices.Equal(ids(d.Shadow), []string{"TRIAL_NIGHT"}) || len(d.Fired) != 0 {
		t.Errorf("%+v", d)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{File: "p.yaml", Line: 3, Column: 7, Msg: "bad"}
	if e.Error() != "p.yaml:3:7: bad" {
		t.Error(e.Error())
	}
	l := ErrorList{e, {File: "p.yaml", Line: 4, Msg: "worse"}, {File: "p.yaml", Msg: "worst"}}
	if l.Error() != "p.yaml:3:7: bad\np.yaml:4: worse\np.yaml: worst" {
		t.Error(l.Error())
	}
	if _, err := LoadFile("testdata/does-not-exist.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParse: no input makes Parse (or Decide on what it loads) panic. Parse turns a panic into
// an "internal error" rather than crashing the agent, so the target looks for that message too.
func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(head + "  - {id: A, class: score, when: 'true', score: 'signals.tongdun.score * 2'}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse(src, "fuzz.yaml")
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("Parse panicked: %v", err)
			}
			return
		}
		d := p.Decide(typicalWithdrawal())
		if d.Result != Accept && d.Result != Review && d.Result != Decline {
			t.Fatalf("result %q", d.Result)
		}
	})
}

func BenchmarkParseDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(defaultYAML, "default.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
