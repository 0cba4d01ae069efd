package policy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestRunCases(t *testing.T) {
	p, err := LoadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunCases(p, src)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name     string
		line     int
		pass     bool
		result   string
		problems []string
	}{
		{"allow-listed account is accepted whatever TongDun says", 3, true, Accept, nil},
		{"block-listed IP in the prefix declines", 6, true, Decline, nil},
		{"busy device with a middling TongDun score reviews", 9, true, Review, nil},
		{"this one is expected to fail", 16, false, Accept, []string{"result is accept, want decline"}},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results: %+v", len(results), results)
	}
	for i, w := range want {
		r := results[i]
		if r.Name != w.name || r.Line != w.line || r.Pass != w.pass || r.Decision.Result != w.result || !slices.Equal(r.Problems, w.problems) {
			t.Errorf("case %d: got %+v\nwant %+v", i, r, w)
		}
	}
}

func TestRunCasesShapes(t *testing.T) {
	p := Default()
	cases := []struct {
		name   string
		src    string
		pass   []bool
		errors []wantErr
	}{
		{"a bare list", "- {name: a, input: {event: withdraw, amount: 1}, expect: {result: accept, reasons: []}}\n", []bool{true}, nil},
		{"every expectation",
			"cases:\n  - name: all\n    input: {event: marketing, signals: {tongdun: {status: fresh, score: 90, result: accept}}}\n" +
				"    expect: {result: review, reasons: [TD_SCORE], fired: [TD_SCORE], shadow: [], errors: [], score: 54}\n", []bool{true}, nil},
		{"wrong reasons, fired and score",
			"cases:\n  - name: wrong\n    input: {event: marketing, signals: {tongdun: {status: fresh, score: 90, result: accept}}}\n" +
				"    expect: {result: review, reasons: [TD_REVIEW], fired: [], score: 50}\n", []bool{false}, nil},
		{"unknown key", "cases:\n  - name: x\n    input: {amont: 1}\n    expect: {result: accept}\n", nil, []wantErr{{3, 13, `unknown key "amont"`}}},
		{"bad values", "cases:\n  - name: x\n    input: {now: yesterday, credit: {mode: fixed, overdue_days: 1.5}}\n    expect: {result: accept}\n",
			nil, []wantErr{{3, 18, "must be an RFC 3339 time"}, {3, 44, `"fixed" is not one of revolving, single`}, {3, 65, "must be an integer"}}},
		{"missing parts", "cases:\n  - input: {}\n  - name: y\n    expect: {}\n", nil, []wantErr{
			{2, 5, "name is required"}, {2, 5, "expect is required"}, {3, 5, "input is required"}, {4, 13, "result is required"},
		}},
		{"no cases key", "tests: []\n", nil, []wantErr{{1, 1, `unknown key "tests"`}}},
		{"not YAML", "cases: [\n", nil, []wantErr{{1, 0, "invalid YAML"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			results, err := RunCases(p, []byte(tc.src))
			if tc.errors != nil {
				checkErrors(t, err, "cases", tc.errors)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var pass []bool
			for _, r := range results {
				pass = append(pass, r.Pass)
			}
			if !slices.Equal(pass, tc.pass) {
				t.Errorf("pass %v, want %v: %+v", pass, tc.pass, results)
			}
			if tc.name == "wrong reasons, fired and score" {
				got := strings.Join(results[0].Problems, "\n")
				for _, w := range []string{"reasons are [TD_SCORE], want [TD_REVIEW]", "fired rules are [TD_SCORE], want []", "score is 54, want 50"} {
					if !strings.Contains(got, w) {
						t.Errorf("problems %q lack %q", got, w)
					}
				}
			}
		})
	}
}
