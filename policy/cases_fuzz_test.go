package policy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Messages of the problems found before any case is read: the file as a
// whole (size, encoding, YAML, anchors, nesting) and its top level.
var fileLevel = []string{"file is ", "invalid YAML", "only one YAML document", "expected one YAML document",
	"nesting deeper than", "YAML anchors and aliases", "cases file", "cases must be a list"}

// FuzzRunCases: no cases file makes RunCases panic (it turns a panic into
// an "internal error", which the target looks for); every problem is an
// *Error of the file "cases" at a line inside it, and names the case it is
// in (`cases[2]`, or `case "its name"`) unless it is about the file as a
// whole; a file that is read gives one result per case, with a name, a
// line, and Pass exactly when nothing failed; running it twice gives the
// same results.
func FuzzRunCases(f *testing.F) {
	p, err := LoadFile("testdata/good.yaml")
	if err != nil {
		f.Fatal(err)
	}
	src, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(src)
	for _, s := range []string{
		"- {name: a, input: {event: withdraw, amount: 1}, expect: {result: accept, reasons: []}}\n",
		"cases:\n  - name: all\n    input: {event: marketing, signals: {tongdun: {status: fresh, score: 90, result: accept}}}\n" +
			"    expect: {result: review, reasons: [TD_SCORE], fired: [TD_SCORE], shadow: [], errors: [], score: 54}\n",
		"cases:\n  - name: x\n    input: {now: yesterday, credit: {mode: fixed, overdue_days: 1.5}}\n    expect: {result: accept}\n",
		"cases:\n  - input: {}\n  - name: y\n    expect: {}\n",
		"cases:\n  - name: v\n    input: {velocity: {logins_10m: 9999999999999999999, nope: 1}, transaction: {amount: 1e400}}\n    expect: {result: decline}\n",
		"cases:\n  - name: c\n    input: {credit: {mode: single, line: 1e308, outstanding: -1e308, apr: 0.36, valid_until: 2026-02-30}}\n    expect: {result: review, score: .nan}\n",
		"cases:\n  - name: s\n    input: {signals: {unionpay_model: {status: stale, score: 300, age_seconds: 86400, reasons: [{id: R, reason: r}]}, unionpay_transaction: {match: true}}}\n    expect: {result: accept}\n",
		"cases:\n  - &a {name: d, input: {}, expect: {result: accept}}\n  - *a\n",
		"tests: []\n", "cases: [\n", "cases:\n", "[]\n", "", "--- 1\n--- 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		results, err := RunCases(p, src)
		if err != nil {
			if results != nil {
				t.Fatalf("results with an error: %+v", results)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			// YAML breaks lines at \n, \r\n and a lone \r.
			lines := strings.Count(string(src), "\n") + strings.Count(string(src), "\r") + 1
			for _, e := range list {
				if strings.Contains(e.Msg, "internal error") {
					t.Fatalf("RunCases panicked: %v", e)
				}
				if e.File != "cases" || e.Line < 0 || e.Line > lines {
					t.Fatalf("error outside the file (%d lines): %v", lines, e)
				}
				if !strings.HasPrefix(e.Msg, "cases[") && !strings.HasPrefix(e.Msg, `case "`) && !hasAnyPrefix(e.Msg, fileLevel) {
					t.Fatalf("error names no case: %v", e)
				}
			}
			return
		}
		for _, r := range results {
			if r.Name == "" || r.Line < 1 || r.Pass != (len(r.Problems) == 0) {
				t.Fatalf("result %+v", r)
			}
		}
		again, err := RunCases(p, src)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(results) {
			t.Fatalf("ran twice differently:\n%+v\n%+v, %v", results, again, err)
		}
	})
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
