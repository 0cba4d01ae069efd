package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// defaultTestNow is the decision time of a test vector or case that gives no `now`.
var defaultTestNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// CaseResult is the outcome of one case run by RunCases.
type CaseResult struct {
	Name     string
	Line     int      // line of the case in the cases file
	Pass     bool     // the decision matched every expectation
	Problems []string // what did not match
	Decision Decision // what the policy decided
}

// RunCases runs the cases in casesYAML against p (for `agent policy test FILE CASES.yaml`). The
// file is either a list of cases or a mapping with a `cases:` list; a case has the shape of a
// policy's own test vectors:
//
//	cases:
//	  - name: overdue customer withdraws
//	    input: {event: withdraw, amount: 500, credit: {mode: revolving, line: 10000, overdue_days: 3}}
//	    expect: {result: decline, reasons: [OVERDUE]}
//
// err is an ErrorList when the file cannot be read as cases; failing cases are not errors, they
// come back with Pass false.
func RunCases(p *Policy, casesYAML []byte) (results []CaseResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			results, err = nil, ErrorList{{File: "cases", Msg: fmt.Sprintf("internal error: %v", r)}}
		}
	}()
	l := &loader{file: "cases", src: casesYAML}
	root := l.document(casesYAML)
	if root == nil {
		return nil, l.err()
	}
	list := root
	if root.Kind == yaml.MappingNode {
		m := l.fields(root, "cases file", "cases")
		n, ok := m["cases"]
		if !ok {
			if len(l.errs) == 0 {
				l.errf(root, "cases file: cases is required")
			}
			return nil, l.err()
		}
		list = n
	}
	cases := l.cases(list, p, "cases")
	if err := l.err(); err != nil {
		return nil, err
	}
	for _, tc := range cases {
		d := p.Decide(tc.in)
		problems := tc.want.mismatches(d)
		results = append(results, CaseResult{Name: tc.name, Line: tc.line, Pass: len(problems) == 0, Problems: problems, Decision: d})
	}
	return results, nil
}

type testCase struct {
	name      string
	line, col int
	in        *Input
	want      expectation
}

func (tc *testCase) check(p *Policy) []string { return tc.want.mismatches(p.Decide(tc.in)) }

type expectation struct {
	result                                   string
	reasons, fired, shadow, errs             []string
	hasReasons, hasFired, hasShadow, hasErrs bool
	score                                    *float64
}

func firedIDs(fs []Fired) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func (e *expectation) mismatches(d Decision) []string {
	var out []string
	if d.Result != e.result {
		out = append(out, fmt.Sprintf("result is %s, want %s", d.Result, e.result))
	}
	list := func(what string, got, want []string) {
		if !slices.Equal(got, want) {
			out = append(out, fmt.Sprintf("%s are [%s], want [%s]", what, strings.Join(got, ", "), strings.Join(want, ", ")))
		}
	}
	if e.hasReasons {
		ids := make([]string, len(d.Reasons))
		for i, r := range d.Reasons {
			ids[i] = r.ID
		}
		list("reasons", ids, e.reasons)
	}
	if e.hasFired {
		list("fired rules", firedIDs(d.Fired), e.fired)
	}
	if e.hasShadow {
		list("shadow rules fired", firedIDs(d.Shadow), e.shadow)
	}
	if e.hasErrs {
		list("rule errors", firedIDs(d.Errors), e.errs)
	} else {
		for _, f := range d.Errors {
			out = append(out, fmt.Sprintf("rule %s could not be evaluated: %s", f.ID, f.Error))
		}
	}
	if e.score != nil && !closeEnough(d.Score, *e.score) {
		out = append(out, fmt.Sprintf("score is %g, want %g", d.Score, *e.score))
	}
	return out
}

func closeEnough(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}

// cases decodes a list of test vectors (a policy's tests, or a cases file).
func (l *loader) cases(n *yaml.Node, p *Policy, what string) []*testCase {
	var out []*testCase
	names := map[string]int{}
	for i, it := range l.seq(n, what) {
		w := fmt.Sprintf("%s[%d]", what, i)
		m := l.fields(it, w, "name", "input", "expect", "doc")
		if m == nil {
			continue
		}
		tc := &testCase{line: it.Line, col: it.Column}
		if nn, ok := m["name"]; !ok {
			l.errf(it, "%s: name is required", w)
		} else if s, ok := l.nonEmpty(nn, w+".name"); ok {
			if first, dup := names[s]; dup {
				l.errf(nn, "%s: duplicate name %q (first at line %d)", w, s, first)
			}
			names[s] = nn.Line
			tc.name = s
			w = fmt.Sprintf("%s %q", strings.TrimSuffix(what, "s"), s)
		}
		if dn, ok := m["doc"]; ok {
			l.str(dn, w+".doc")
		}
		if in, ok := m["input"]; !ok {
			l.errf(it, "%s: input is required", w)
		} else {
			tc.in = l.input(in, p, w+": input")
		}
		if ex, ok := m["expect"]; !ok {
			l.errf(it, "%s: expect is required", w)
		} else {
			tc.want = l.expect(ex, w+": expect")
		}
		out = append(out, tc)
	}
	return out
}

func (l *loader) expect(n *yaml.Node, what string) expectation {
	var e expectation
	m := l.fields(n, what, "result", "reasons", "fired", "shadow", "errors", "score")
	if m == nil {
		return e
	}
	if rn, ok := m["result"]; !ok {
		l.errf(n, "%s: result is required", what)
	} else if s, ok := l.str(rn, what+".result"); ok {
		if s != Accept && s != Review && s != Decline {
			l.errf(rn, "%s: result %q must be accept, review or decline", what, s)
		}
		e.result = s
	}
	ids := func(key string) ([]string, bool) {
		kn, ok := m[key]
		if !ok {
			return nil, false
		}
		return l.strList(kn, what+"."+key), true
	}
	e.reasons, e.hasReasons = ids("reasons")
	e.fired, e.hasFired = ids("fired")
	e.shadow, e.hasShadow = ids("shadow")
	e.errs, e.hasErrs = ids("errors")
	if sn, ok := m["score"]; ok {
		if v, ok := l.num(sn, what+".score"); ok {
			e.score = &v
		}
	}
	return e
}

func (l *loader) time(n *yaml.Node, what string) (time.Time, bool) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
			if t, err := time.Parse(layout, n.Value); err == nil {
				return t, true
			}
		}
	}
	l.errf(n, "%s must be an RFC 3339 time such as 2026-11-20T10:00:00Z", what)
	return time.Time{}, false
}

func (l *loader) oneOf(n *yaml.Node, what string, allowed ...string) string {
	s, ok := l.str(n, what)
	if ok && !slices.Contains(allowed, s) {
		l.errf(n, "%s: %q is not one of %s", what, s, strings.Join(allowed, ", "))
	}
	return s
}

func (l *loader) input(n *yaml.Node, p *Policy, what string) *Input {
	in := &Input{Now: defaultTestNow}
	m := l.fields(n, what, "event", "account_id", "device", "ip", "card_hash", "amount", "now",
		"credit", "transaction", "signals", "velocity", "degraded", "fleet_velocity", "fleet_age_seconds")
	for k, v := range m {
		w := what + "." + k
		switch k {
		case "event":
			in.Event = l.oneOf(v, w, tongdunEvents...)
		case "account_id":
			in.AccountID, _ = l.str(v, w)
		case "device":
			in.Device, _ = l.str(v, w)
		case "ip":
			in.IP, _ = l.str(v, w)
		case "card_hash":
			in.CardHash, _ = l.str(v, w)
		case "amount":
			in.Amount, _ = l.num(v, w)
		case "now":
			in.Now, _ = l.time(v, w)
		case "degraded":
			in.Degraded, _ = l.boolean(v, w)
		case "credit":
			in.Credit = l.credit(v, w)
		case "transaction":
			in.Transaction = &Transaction{}
			for tk, tv := range l.fields(v, w, "amount", "date") {
				if tk == "amount" {
					in.Transaction.Amount, _ = l.num(tv, w+".amount")
				} else {
					in.Transaction.Date, _ = l.str(tv, w+".date")
				}
			}
		case "signals":
			for sk, sv := range l.fields(v, w, "tongdun", "unionpay_model", "unionpay_transaction") {
				s := l.signal(sv, w+"."+sk)
				switch sk {
				case "tongdun":
					in.Signals.TongDun = s
				case "unionpay_model":
					in.Signals.UnionPayModel = s
				default:
					in.Signals.UnionPayTransaction = s
				}
			}
		case "velocity":
			in.Velocity = l.counts(v, p, w, false)
		case "fleet_velocity":
			in.FleetVelocity = l.counts(v, p, w, true)
		case "fleet_age_seconds":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value == "none" {
				in.FleetAgeSeconds = NoFleetView // no fleet view at all
			} else {
				in.FleetAgeSeconds, _ = l.num(v, w)
			}
		}
	}
	return in
}

// counts reads a mapping of declared counter names (shared with the fleet, for fleet) to counts.
func (l *loader) counts(v *yaml.Node, p *Policy, w string, fleet bool) map[string]int64 {
	if v.Kind != yaml.MappingNode {
		l.errf(v, "%s must be a mapping of counter name to count", w)
		return nil
	}
	out := map[string]int64{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		kn, vn := v.Content[i], v.Content[i+1]
		j, declared := p.velIndex[kn.Value]
		if !declared {
			l.errf(kn, "%s: counter %q is not declared under velocity:", w, kn.Value)
			continue
		}
		if fleet && !p.velocity[j].Fleet {
			l.errf(kn, "%s: counter %q is not shared with the fleet (fleet: true)", w, kn.Value)
			continue
		}
		if _, dup := out[kn.Value]; dup {
			l.errf(kn, "%s: duplicate counter %q", w, kn.Value)
		}
		out[kn.Value], _ = l.integer(vn, w+"."+kn.Value)
	}
	return out
}

func (l *loader) credit(n *yaml.Node, what string) *Credit {
	c := &Credit{}
	for k, v := range l.fields(n, what, "mode", "line", "outstanding", "overdue_days", "apr", "valid_until") {
		w := what + "." + k
		switch k {
		case "mode":
			c.Mode = l.oneOf(v, w, CreditRevolving, CreditSingle)
		case "line":
			c.Line, _ = l.num(v, w)
		case "outstanding":
			c.Outstanding, _ = l.num(v, w)
		case "overdue_days":
			d, _ := l.integer(v, w)
			c.OverdueDays = int(d)
		case "apr":
			c.APR, _ = l.num(v, w)
		case "valid_until":
			c.ValidUntil, _ = l.time(v, w)
		}
	}
	return c
}

func (l *loader) signal(n *yaml.Node, what string) Signal {
	s := Signal{Status: StatusMissing}
	for k, v := range l.fields(n, what, "status", "score", "result", "match", "age_seconds", "reasons") {
		w := what + "." + k
		switch k {
		case "status":
			s.Status = l.oneOf(v, w, StatusFresh, StatusStale, StatusMissing, StatusError)
		case "score":
			i, _ := l.integer(v, w)
			s.Score = int(i)
		case "result":
			s.Result = l.oneOf(v, w, Accept, Review, Decline)
		case "match":
			s.Match, _ = l.boolean(v, w)
		case "age_seconds":
			s.AgeSeconds, _ = l.num(v, w)
		case "reasons":
			for i, rn := range l.seq(v, w) {
				rw := fmt.Sprintf("%s[%d]", w, i)
				var r Reason
				for rk, rv := range l.fields(rn, rw, "id", "reason") {
					if rk == "id" {
						r.ID, _ = l.str(rv, rw+".id")
					} else {
						r.Reason, _ = l.str(rv, rw+".reason")
					}
				}
				s.Reasons = append(s.Reasons, r)
			}
		}
	}
	return s
}
