package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// parseRequestReference is ParseRequest as it was before parseFast: the
// behaviour the fast path must not change. (One change since, on purpose:
// a stray ] or } after the object is refused, as any other trailing data.)
func parseRequestReference(body []byte, defaultChannel string) (*Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, &InvalidError{[]Problem{{Field: "body", Reason: fmt.Sprintf("malformed JSON at byte offset %d", se.Offset)}}}
		case errors.As(err, &te):
			return nil, &InvalidError{[]Problem{{Field: te.Field, Reason: "must be " + te.Type.String()}}}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, &InvalidError{[]Problem{{Field: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Reason: "unknown field"}}}
		}
		return nil, &InvalidError{[]Problem{{Field: "body", Reason: "not a JSON object"}}}
	}
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, &InvalidError{[]Problem{{Field: "body", Reason: "trailing data after the JSON object"}}}
	}
	if r.Channel == "" {
		r.Channel = defaultChannel
	}
	if ps := r.Validate(); len(ps) > 0 {
		return nil, &InvalidError{ps}
	}
	return &r, nil
}

// maskedInputReference is maskedInput as it was: marshal, then redact.
func maskedInputReference(req *Request) json.RawMessage {
	b, err := json.Marshal(req)
	if err != nil {
		return nil
	}
	return redact.JSON(b)
}

const okBody = `{"session_id":"s-1","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
	`"account_id":"acct-1","terminal":{"black_box":"bb-1","ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":1234}`

// withField replaces the closing brace of okBody with more members.
func withField(s string) string { return okBody[:len(okBody)-1] + s + "}" }

// requestBodies: valid requests of every shape, and malformed ones of
// every kind the fast path has to leave to encoding/json.
var requestBodies = []string{
	okBody,
	string(benchBody(3)),
	string(benchCardBody()),
	`{}`, ` {} `, "\t\n{ }\r\n",
	withField(`,"id":"req-1","channel":"app"`),
	withField(`,"credit":{"mode":"single","line":5e3,"outstanding":0,"overdue_days":12,"apr":0.2,"valid_until":"2026-12-31"}`),
	withField(`,"card":{"card_no":"6262320120123210","cert_id":"41152419881028001X","mobile":"13888888888"},"transaction":{"date":"20261120","amount":212.5,"location":"上海 <b>&"}`),
	withField(`,"ext":{"a":{"b":[1,2.5e-7,"c",true,false,null,{}]},"mobile":"13888888888","Phone":"13900139000"}`),
	withField(`,"ext":{}`),
	// unknown fields, at every level, and names in another case
	withField(`,"extra":1`),
	withField(`,"terminal2":{}`),
	withField(`,"credit":{"mode":"single","line":1,"colour":"red"}`),
	withField(`,"card":{"card_no":"6262320120123210","pin":"1234"}`),
	withField(`,"Amount":5`),
	withField(`,"ID":"x"`),
	`{"SESSION_ID":"s","decision_event":"withdraw"}`,
	`{"\u0073ession_id":"s-1"}`,
	// wrong types
	withField(`,"id":5`),
	`{"amount":"5"}`, `{"amount":true}`, `{"amount":[]}`, `{"amount":{}}`,
	`{"terminal":"x"}`, `{"terminal":[]}`, `{"event_detail":[]}`, `{"event_detail":{"withdraw":[]}}`,
	`{"event_detail":{"withdraw":"x"}}`, `{"ext":[1]}`, `{"ext":"x"}`,
	withField(`,"credit":{"overdue_days":1.5}`), withField(`,"credit":{"overdue_days":1e2}`),
	withField(`,"credit":{"overdue_days":99999999999999999999}`), withField(`,"credit":{"overdue_days":-0}`),
	withField(`,"credit":{"line":"10000"}`),
	`[]`, `[1]`, `"x"`, `5`, `true`, `null`,
	// numbers at the edges
	`{"amount":1e400}`, `{"amount":-1e400}`, `{"amount":-0}`, `{"amount":0.000001}`, `{"amount":1e21}`, `{"amount":1E+2}`,
	`{"amount":01}`, `{"amount":1.}`, `{"amount":.5}`, `{"amount":-}`, `{"amount":+1}`, `{"amount":1e}`, `{"amount":0x10}`,
	`{"amount":NaN}`, `{"amount":Infinity}`, `{"amount":1_000}`,
	withField(`,"ext":{"big":1e400}`),
	// null
	`{"terminal":null}`, `{"session_id":null}`, `{"amount":null}`, `{"event_detail":null}`, `{"event_detail":{"withdraw":null}}`,
	`{"ext":null}`, withField(`,"card":null`),
	// duplicate keys
	withField(`,"amount":7`),
	withField(`,"session_id":"s-2"`),
	withField(`,"terminal":{"ip":"1.2.3.4"}`),
	withField(`,"card":{"card_no":"6262320120123210"},"card":{"mobile":"13888888888","cert_id":"411524198810280019"}`),
	withField(`,"credit":{"mode":"single","mode":"revolving","line":1}`),
	`{"event_detail":{"withdraw":{"a":1},"withdraw":{}}}`,
	withField(`,"ext":{"a":1,"a":2}`),
	// trailing data, and what the decoder lets pass after the object
	okBody + `x`, okBody + ` {}`, okBody + `}`, okBody + `]`, okBody + ` ] `, okBody + `,`, okBody + "\n", okBody + okBody,
	// malformed
	``, ` `, `{`, `{"session_id"`, `{"session_id":`, `{"session_id":"s"`, `{"session_id":"s",}`, `{,}`, `{"a" 1}`,
	`{'a':1}`, `{a:1}`, okBody[:len(okBody)-1], `{"terminal":{"ip":"1.2.3.4"}`, `{"terminal":{"ip":"1.2.3.4",}}`,
	`{"ext":{"a":]}`, `{"ext":{"a":"}"}}`, `{"ext":{"a":"\"}"}}`, `{"ext":{"a":[}]}}`, `{"ext":{"a":1}]}`,
	"\xef\xbb\xbf" + okBody,
	// strings: escapes, control characters, UTF-8
	`{"session_id":"a\"b"}`, `{"session_id":"a\\b"}`, `{"session_id":"\u00e9"}`, `{"session_id":"é"}`,
	"{\"session_id\":\"a\tb\"}", "{\"session_id\":\"\xff\"}", "{\"session_id\":\"\xed\xa0\x80\"}", `{"session_id":"\ud800"}`,
	withField(`,"transaction":{"date":"20261120","amount":1,"location":"` + "\xef\xbf\xbd" + `"}`),
	withField(`,"account_id":"<script>&"`),
	"{\"event_detail\":{\"withdraw\":{\"\xff\":1}}}",
	// oversize values
	withField(`,"id":"` + strings.Repeat("a", 129) + `"`),
	`{"session_id":"` + strings.Repeat("s", 1025) + `"}`,
	withField(`,"ext":{"k":"` + strings.Repeat("界", 1025) + `"}`),
	`{"event_detail":{"withdraw":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}}`,
	`{"ext":` + strings.Repeat(`[`, 10001) + strings.Repeat(`]`, 10001) + `}`,
	`{"ext":{"a":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}}`,
	`{"ext":{"a":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}}`,
	`{"event_detail":{"withdraw":{"a":` + strings.Repeat(`[`, 9998) + strings.Repeat(`]`, 9998) + `}}}`,
}

// TestParseRequestSameAsBefore: every body gets the request, or the
// problems, the encoding/json decoder gave.
func TestParseRequestSameAsBefore(t *testing.T) {
	fast := 0
	for _, body := range requestBodies {
		checkParse(t, []byte(body))
		if _, ok := parseFast([]byte(body)); ok {
			fast++
		}
	}
	if fast < 15 {
		t.Fatalf("only %d bodies took the fast path", fast)
	}
}

// TestParseRequestErrors: the problems of malformed bodies, spelt out.
func TestParseRequestErrors(t *testing.T) {
	for _, c := range []struct {
		body  string
		field string
		why   string
	}{
		{withField(`,"extra":1`), "extra", "unknown field"},
		{withField(`,"credit":{"mode":"single","line":1,"colour":"red"}`), "colour", "unknown field"},
		{withField(`,"Amount":"5"`), "amount", "must be float64"},
		{`{"amount":"5"}`, "amount", "must be float64"},
		{withField(`,"credit":{"overdue_days":1.5}`), "credit.overdue_days", "must be int"},
		{`{"terminal":"x"}`, "Request.terminal", "must be tongdun.Terminal"}, // sic: the embedded struct's name
		{`{"session_id":1}`, "Request.session_id", "must be string"},
		{`{"amount":1e400}`, "amount", "must be float64"},
		{okBody + `x`, "body", "trailing data after the JSON object"},
		{`{"session_id":"s",}`, "body", "malformed JSON at byte offset 19"},
		{`{"session_id":"s"`, "body", "not a JSON object"},
		{``, "body", "not a JSON object"},
		{withField(`,"id":"` + strings.Repeat("a", 129) + `"`), "id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"},
		{`{"session_id":"` + strings.Repeat("s", 1025) + `"}`, "session_id", "longer than 1024 characters (TongDun code 9003)"},
	} {
		_, err := ParseRequest([]byte(c.body), "bank")
		var ie *InvalidError
		if !errors.As(err, &ie) || !hasProblem(ie.Problems, c.field, c.why) {
			t.Errorf("%.60s: %v, want %s: %s", c.body, err, c.field, c.why)
		}
	}
}

func hasProblem(ps []Problem, field, why string) bool {
	for _, p := range ps {
		if p.Field == field && p.Reason == why {
			return true
		}
	}
	return false
}

func checkParse(t *testing.T, body []byte) *Request {
	t.Helper()
	got, gerr := ParseRequest(body, "bank")
	want, werr := parseRequestReference(body, "bank")
	if !reflect.DeepEqual(gerr, werr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("body %q:\ngot  %+v %v\nwant %+v %v", body, got, gerr, want, werr)
	}
	// What the fast path accepts, the decoder accepts and decodes alike
	// (before validation too).
	if r, ok := parseFast(body); ok {
		var ref Request
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil || dec.More() || !reflect.DeepEqual(r, &ref) {
			t.Fatalf("body %q: fast %+v, decoder %+v %v", body, r, &ref, err)
		}
	}
	return got
}

// maskRequests: requests the API cannot produce too (no validation), for
// the encoder's fallbacks.
func maskRequests() []*Request {
	amount := 12.5
	nan := math.NaN()
	tiny, huge, neg := 1e-7, 1e21, math.Copysign(0, -1) // -0.0 in Go source is +0
	base := func() *Request { return withdraw("id-1", "acct-1", 100) }
	var rs []*Request
	add := func(f func(r *Request)) { r := base(); f(r); rs = append(rs, r) }
	add(func(r *Request) {})
	add(func(r *Request) { r.ID, r.AccountID, r.Terminal = "", "", nil })
	add(func(r *Request) { r.Terminal = &tongdun.Terminal{} })
	add(func(r *Request) { r.Terminal = &tongdun.Terminal{BlackBox: "bb"} })
	add(func(r *Request) { r.Terminal = &tongdun.Terminal{BlackBox: "bb", IP: "1.2.3.4"} })
	add(func(r *Request) { r.SessionID = "session 13912345678 and 6262320120123210" })
	add(func(r *Request) { r.SessionID = "<b>&amp;</b>" })
	add(func(r *Request) { r.SessionID = "caf\u00e9 \u2028 \"q\" \\ \t" })
	add(func(r *Request) { r.AccountID = "<acct>\u00e9" })
	add(func(r *Request) { r.AccountID = "\xff\xfe" })
	add(func(r *Request) { r.SessionID = "\xff 1234567" })
	add(func(r *Request) { r.Amount = &amount })
	add(func(r *Request) { r.Amount = &nan })
	add(func(r *Request) { r.Amount = &tiny })
	add(func(r *Request) { r.Amount = &huge })
	add(func(r *Request) { r.Amount = &neg })
	add(func(r *Request) { r.Amount = nil })
	add(func(r *Request) {
		r.Card = &Card{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"}
		r.Transaction = &Transaction{Date: "20261120", Amount: 212, Location: "Shanghai 021-12345678"}
		r.Credit = &Credit{Mode: "revolving", Line: 1e4, Outstanding: 2000.5, OverdueDays: -3, APR: 0.18, ValidUntil: "2026-12-01"}
	})
	add(func(r *Request) { r.Card = &Card{} })
	add(func(r *Request) { r.Transaction = &Transaction{Amount: math.Inf(1)} })
	add(func(r *Request) { r.Credit = &Credit{} })
	add(func(r *Request) { r.Credit = &Credit{APR: math.NaN()} })
	add(func(r *Request) { r.EventDetail = nil })
	add(func(r *Request) { r.EventDetail = map[string]map[string]any{"withdraw": nil} })
	add(func(r *Request) { r.EventDetail = map[string]map[string]any{"ip": {"x": "1.2.3.4"}} })
	add(func(r *Request) {
		r.EventDetail = map[string]map[string]any{"withdraw": {"to": "6262320120123210"}, "a<b": {}, "mobile": {}}
	})
	add(func(r *Request) { r.EventDetail = map[string]map[string]any{"<x>": {}} })
	add(func(r *Request) { r.EventDetail = map[string]map[string]any{"w": {"f": math.Inf(-1)}} })
	add(func(r *Request) {
		r.Ext = map[string]any{"mobile": 13888888888.0, "n": map[string]any{"card_no": []any{"1", 2.0}}, "t": "13912345678"}
	})
	add(func(r *Request) { r.Ext = map[string]any{"ch": make(chan int)} })
	return rs
}

func TestMaskedInputSameAsBefore(t *testing.T) {
	if !maskedFast {
		t.Log("redact masks a field appendMasked does not expect: every request takes the slow path")
	}
	for i, r := range maskRequests() {
		got, want := maskedInput(r), maskedInputReference(r)
		if !bytes.Equal(got, want) {
			t.Errorf("request %d:\ngot  %s\nwant %s", i, got, want)
		}
	}
	for _, body := range requestBodies {
		if r, err := parseRequestReference([]byte(body), "bank"); err == nil {
			if got, want := maskedInput(r), maskedInputReference(r); !bytes.Equal(got, want) {
				t.Errorf("body %s:\ngot  %s\nwant %s", body, got, want)
			}
		}
	}
}

// TestEncodeRecordSameAsMarshal: the stored record is json.Marshal of the
// result, byte for byte.
func TestEncodeRecordSameAsMarshal(t *testing.T) {
	r := newRig(t)
	r.tdOK.ok.Store(false)
	score := 7
	match := true
	for i, req := range maskRequests() {
		req.ID = fmt.Sprint("rec-", i)
		if req.Transaction != nil && req.Card == nil {
			req.Card = &Card{CardNo: "6262320120123210"} // Decide needs it (ParseRequest sees to it)
		}
		res, err := r.eng.Decide(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		variants := []*Result{res}
		v := *res
		v.Signals = map[string]SignalView{"tongdun": {Status: "fresh", Score: &score, Match: &match, Reasons: []policy.Reason{{ID: "<x>", Reason: "é"}}, Note: "13912345678"}}
		v.Velocity, v.Fired, v.Reasons = nil, nil, nil
		variants = append(variants, &v)
		w := *res
		w.Late = map[string]Late{"tongdun": {At: time.Unix(5, 0), Answer: json.RawMessage(`{"a":1}`)}}
		variants = append(variants, &w)
		x := *res
		x.Score = math.NaN()
		variants = append(variants, &x)
		y := *res
		y.Input = json.RawMessage(`"<unparseable payload withheld>"`)
		variants = append(variants, &y)
		for j, res := range variants {
			want, _ := json.Marshal(res)
			if got := encodeRecord(res); !bytes.Equal(got, want) {
				t.Fatalf("request %d variant %d:\ngot  %s\nwant %s", i, j, got, want)
			}
		}
		stored, _, _ := r.sp.Get("dec/" + req.ID)
		want, _ := json.Marshal(res)
		if !bytes.Equal(stored, want) {
			t.Fatalf("request %d stored:\n%s\nwant %s", i, stored, want)
		}
	}
}

// FuzzRequestPaths: for any body, ParseRequest answers as the decoder did,
// and the masked input is what marshal-then-redact makes of the request.
func FuzzRequestPaths(f *testing.F) {
	for _, b := range requestBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := checkParse(t, body)
		if r == nil {
			if r, ok := parseFast(body); ok {
				r.Channel = "bank"
				if got, want := maskedInput(r), maskedInputReference(r); !bytes.Equal(got, want) {
					t.Fatalf("masked (invalid request):\ngot  %s\nwant %s", got, want)
				}
			}
			return
		}
		if got, want := maskedInput(r), maskedInputReference(r); !bytes.Equal(got, want) {
			t.Fatalf("masked:\ngot  %s\nwant %s", got, want)
		}
	})
}

// Anything but white space after the object is refused, a stray ] or }
// included (json.Decoder.More lets those two through).
func TestTrailingDataRefused(t *testing.T) {
	const req = `{"session_id":"s-1","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}}}`
	if _, err := ParseRequest([]byte(req+" \n\t"), "bank"); err != nil {
		t.Fatalf("white space after the object: %v", err)
	}
	for _, tail := range []string{"}", "]", " ] ", "{}", `"x"`, "1", "null"} {
		_, err := ParseRequest([]byte(req+tail), "bank")
		var ie *InvalidError
		if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != "body" ||
			ie.Problems[0].Reason != "trailing data after the JSON object" {
			t.Errorf("tail %q: %v", tail, err)
		}
	}
}
