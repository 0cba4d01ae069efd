package decision

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// problemsOf validates req and returns its problems by field.
func problemsOf(req *Request) map[string]string {
	m := map[string]string{}
	for _, p := range req.Validate() {
		m[p.Field] = p.Reason
	}
	return m
}

// TestIDsThatLookPersonalAreRefused: a decision id is listed back and
// stored as a key, so one that looks like a phone, ID-card or bank-card
// number is refused, naming the rule.
func TestIDsThatLookPersonalAreRefused(t *testing.T) {
	for id, kind := range map[string]string{
		"13912345678":                  "a mainland mobile number",
		"11010519491231002X":           "a mainland ID-card number (check digit valid)",
		"6222021234567890128":          "a bank-card number (Luhn valid)",
		"card:6222-0212-3456-7890-128": "a bank-card number (Luhn valid)",
	} {
		ps := problemsOf(withdraw(id, "acct-1", 100))
		if want := "looks like " + kind + "; use an opaque id, such as a UUID"; ps["id"] != want || len(ps) != 1 {
			t.Errorf("id %s: problems %v, want id: %s", id, ps, want)
		}
	}
	for _, id := range []string{"loan-app-000123", "550e8400-e29b-41d4-a716-446655440000", "20261204123453", "d18f3a2b4c5d60123456789ab"} {
		if ps := problemsOf(withdraw(id, "acct-1", 100)); len(ps) != 0 {
			t.Errorf("id %s refused: %v", id, ps)
		}
	}
}

// TestControlAndBidiCharactersRefused: session_id and every other string
// refuse control characters and bidirectional formatting characters,
// naming the field; free text in ext and event_detail may hold line
// breaks and tabs.
func TestControlAndBidiCharactersRefused(t *testing.T) {
	for _, c := range []string{"\x00", "\x1b", "\x7f", "\u0085", "\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\n"} {
		req := withdraw("c-1", "acct-1", 100)
		req.SessionID = "s" + c + "1"
		ps := problemsOf(req)
		if r := ps["session_id"]; !strings.Contains(r, "are refused") || len(ps) != 1 {
			t.Errorf("session_id with %q: %v", c, ps)
		}
	}
	set := map[string]func(*Request, string){
		"channel":            func(r *Request, s string) { r.Channel = s },
		"account_id":         func(r *Request, s string) { r.AccountID = s },
		"terminal.black_box": func(r *Request, s string) { r.Terminal.BlackBox = s },
		"transaction.location": func(r *Request, s string) {
			r.Card = &Card{"6262320120123210", "411524198810280019", "13888888888"}
			r.Transaction = &Transaction{"20261120", 1, s}
		},
		"ext.note":   func(r *Request, s string) { r.Ext = map[string]any{"note": s} },
		"ext.a.b[1]": func(r *Request, s string) { r.Ext = map[string]any{"a": map[string]any{"b": []any{"ok", s}}} },
		"ext":        func(r *Request, s string) { r.Ext = map[string]any{"k" + s: "v"} },
		"event_detail.withdraw.memo": func(r *Request, s string) {
			r.EventDetail = map[string]map[string]any{"withdraw": {"memo": s}}
		},
	}
	for field, f := range set {
		req := withdraw("c-2", "acct-1", 100)
		f(req, "a\u202eb")
		if ps := problemsOf(req); !strings.Contains(ps[field], "U+202E, a bidirectional formatting character") || len(ps) != 1 {
			t.Errorf("%s: %v", field, ps)
		}
	}
	req := withdraw("c-3", "acct-1", 100)
	req.Ext = map[string]any{"note": "line 1\nline 2\tend\r\n"}
	req.EventDetail = map[string]map[string]any{"withdraw": {"memo": "张三\n李四"}}
	if ps := problemsOf(req); len(ps) != 0 {
		t.Errorf("line breaks in free text refused: %v", ps)
	}
}

// TestAmountsFiniteAndBounded: money fields are finite and at most
// MaxAmount (1e10); 1e308 is refused.
func TestAmountsFiniteAndBounded(t *testing.T) {
	set := map[string]func(*Request, float64){
		"amount":             func(r *Request, f float64) { r.Amount = &f },
		"transaction.amount": func(r *Request, f float64) { r.Transaction.Amount = f },
		"credit.line":        func(r *Request, f float64) { r.Credit.Line = f },
		"credit.outstanding": func(r *Request, f float64) { r.Credit.Outstanding = f },
	}
	base := func() *Request {
		r := withdraw("m-1", "acct-1", 100)
		r.Card = &Card{"6262320120123210", "411524198810280019", "13888888888"}
		r.Transaction = &Transaction{Date: "20261120", Amount: 10}
		r.Credit = &Credit{Mode: "revolving", Line: 10000, Outstanding: 2000, APR: 0.18}
		return r
	}
	for field, f := range set {
		for _, v := range []float64{1e308, math.Inf(1), math.NaN(), 1e10 * 1.0000001, -1} {
			r := base()
			f(r, v)
			if ps := problemsOf(r); ps[field] == "" || len(ps) != 1 {
				t.Errorf("%s = %v: %v", field, v, ps)
			}
		}
		r := base()
		f(r, 1e10)
		if ps := problemsOf(r); len(ps) != 0 {
			t.Errorf("%s = MaxAmount refused: %v", field, ps)
		}
	}
	if _, err := ParseRequest([]byte(withField(`,"credit":{"mode":"single","line":1e308,"outstanding":0,"overdue_days":0,"apr":0.1}`)), "bank"); err == nil {
		t.Error("credit.line 1e308 accepted")
	}
	if _, err := ParseRequest([]byte(okBody[:len(okBody)-len(`1234}`)]+`1e308}`), "bank"); err == nil {
		t.Error("amount 1e308 accepted")
	}
}

// TestFreeFormMaskedInRecordRawUpstream: the stored decision masks
// personal data in ext and event_detail by shape and by name, whatever
// the keys; the check queued for TongDun carries the request as it was.
func TestFreeFormMaskedInRecordRawUpstream(t *testing.T) {
	r := newRig(t)
	r.tdOK.ok.Store(false) // TongDun down: the check is queued
	req := withdraw("ff-1", "acct-ff", 100)
	req.Ext = map[string]any{"bank_card": "6222 0212 3456 7890 128", "tel": "+86 139 1234 5678", "payee_name": "张三",
		"mobile_no": "158-8765-4321", "contact": map[string]any{"payee_card": "6222-0212-3456-7890-128", "note": "call 159 8765 4321"}}
	req.EventDetail = map[string]map[string]any{"withdraw": {"payee": map[string]any{"name": "李四", "card": "6222021234567890128"}}}
	res := decide(t, r, req)
	stored, _, _ := r.sp.Get("dec/" + res.DecisionID)
	raw := []string{"6222 0212 3456 7890 128", "6222-0212-3456-7890-128", "6222021234567890128", "139 1234 5678", "158-8765-4321",
		"159 8765 4321", "张三", "李四"}
	for _, s := range raw {
		if strings.Contains(string(stored), s) {
			t.Errorf("stored decision shows %q: %s", s, stored)
		}
	}
	if !strings.Contains(string(stored), `"payee_name":"张*"`) {
		t.Errorf("the name is not masked to its first character: %s", stored)
	}
	es, err := r.sp.Lease(context.Background(), "tongdun", 10, 1<<20)
	if err != nil || len(es) != 1 {
		t.Fatalf("queued checks: %v %v", es, err)
	}
	var sent map[string]any
	json.Unmarshal(es[0].Payload, &sent)
	ext, _ := sent["ext"].(map[string]any)
	if ext["bank_card"] != "6222 0212 3456 7890 128" || ext["payee_name"] != "张三" || ext["mobile_no"] != "158-8765-4321" {
		t.Errorf("the queued TongDun check lost the request's ext: %s", es[0].Payload)
	}
}

// TestChannelOptionalWithoutTongDun: with no TongDun configured nothing is
// ever sent to it, so a request without a channel is taken (the README's
// first decision, against the embedded defaults); with TongDun configured
// the channel stays required unless AGENT_TONGDUN_CHANNEL fills it, and
// every other rule holds either way.
func TestChannelOptionalWithoutTongDun(t *testing.T) {
	const noChannel = `{"session_id":"abc0123456789","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}}}`
	fields := func(err error) []string {
		var ie *InvalidError
		if err == nil {
			return nil
		}
		if !errors.As(err, &ie) {
			t.Fatalf("error %v is not an *InvalidError", err)
		}
		var out []string
		for _, p := range ie.Problems {
			out = append(out, p.Field)
		}
		return out
	}
	if r, err := Parse([]byte(noChannel), ParseOptions{NoTongDun: true}); err != nil || r.Channel != "" {
		t.Errorf("no channel, no TongDun: %v, channel %q", err, r.Channel)
	}
	if got := fields(func() error { _, err := Parse([]byte(noChannel), ParseOptions{}); return err }()); !slices.Equal(got, []string{"channel"}) {
		t.Errorf("no channel, TongDun configured: problems %v, want [channel]", got)
	}
	if r, err := Parse([]byte(noChannel), ParseOptions{DefaultChannel: "bank"}); err != nil || r.Channel != "bank" {
		t.Errorf("no channel, AGENT_TONGDUN_CHANNEL=bank: %v, channel %q", err, r.Channel)
	}
	bad := strings.Replace(noChannel, `"withdraw","event_time"`, `"withdrawal","event_time"`, 1)
	if got := fields(func() error { _, err := Parse([]byte(bad), ParseOptions{NoTongDun: true}); return err }()); !slices.Contains(got, "decision_event") || slices.Contains(got, "channel") {
		t.Errorf("bad event, no TongDun: problems %v, want decision_event and not channel", got)
	}
	long := strings.Replace(noChannel, `{"session_id"`, `{"channel":"`+strings.Repeat("c", 1025)+`","session_id"`, 1)
	if got := fields(func() error { _, err := Parse([]byte(long), ParseOptions{NoTongDun: true}); return err }()); !slices.Equal(got, []string{"channel"}) {
		t.Errorf("a channel too long, no TongDun: problems %v, want [channel]", got)
	}
}
