package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// Request is POST /v1/decisions: TongDun's risk-verification request (the
// core, validated by TD's own rules) plus optional blocks that ask
// UnionPay's model score (card), UnionPay's transaction authentication
// (transaction), and describe a credit line (credit).
type Request struct {
	ID string `json:"id,omitempty"`
	tongdun.Request
	Amount      *float64     `json:"amount,omitempty"`
	Card        *Card        `json:"card,omitempty"`
	Transaction *Transaction `json:"transaction,omitempty"`
	Credit      *Credit      `json:"credit,omitempty"`
}

// Card identifies a card holder for UnionPay's model score. Personal data:
// never logged, stored only masked or hashed (or encrypted in a queued
// check).
type Card struct {
	CardNo string `json:"card_no"`
	CertID string `json:"cert_id"`
	Mobile string `json:"mobile"`
}

// Transaction asks UnionPay whether this card transaction exists.
type Transaction struct {
	Date     string  `json:"date"` // YYYYMMDD
	Amount   float64 `json:"amount"`
	Location string  `json:"location,omitempty"`
}

// Credit describes the customer's credit line (consumer-credit flow:
// revolving line or single drawdown).
type Credit struct {
	Mode        string  `json:"mode"` // revolving | single
	Line        float64 `json:"line"`
	Outstanding float64 `json:"outstanding"`
	OverdueDays int     `json:"overdue_days"`
	APR         float64 `json:"apr"`                   // 0.18 = 18%
	ValidUntil  string  `json:"valid_until,omitempty"` // YYYY-MM-DD
}

// Problem is one invalid field.
type Problem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// InvalidError lists every problem of a request.
type InvalidError struct{ Problems []Problem }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid decision request: %d problem(s)", len(e.Problems))
}

// ParseOptions are the settings a decision request is read by.
type ParseOptions struct {
	// DefaultChannel fills an absent channel (AGENT_TONGDUN_CHANNEL).
	DefaultChannel string
	// NoTongDun says TongDun is not configured: no request is sent to it,
	// live or queued, so TD's rule that channel is present protects
	// nothing and is not applied (a newcomer's first request, with the
	// embedded defaults, needs no channel). Once TongDun is configured,
	// AGENT_TONGDUN_CHANNEL (required with it) fills an absent channel.
	NoTongDun bool
	// TongDunVersion is the TD API the core is validated for
	// (AGENT_TONGDUN_API_VERSION; zero is v2): v3 also takes the lookup
	// event and an account object in event_detail.
	TongDunVersion tongdun.APIVersion
}

// ParseRequest is Parse by TD's v2 rules.
func ParseRequest(body []byte, defaultChannel string) (*Request, error) {
	return Parse(body, ParseOptions{DefaultChannel: defaultChannel})
}

// Parse decodes strictly (unknown fields refused) and validates.
func Parse(body []byte, o ParseOptions) (*Request, error) {
	r, ok := parseFast(body)
	if !ok {
		var err error
		if r, err = decodeRequest(body); err != nil {
			return nil, err
		}
	}
	if r.Channel == "" {
		r.Channel = o.DefaultChannel
	}
	ps := r.ValidateFor(o.TongDunVersion)
	if o.NoTongDun && r.Channel == "" {
		ps = slices.DeleteFunc(ps, func(p Problem) bool { return p.Field == "channel" })
	}
	if len(ps) > 0 {
		return nil, &InvalidError{ps}
	}
	return r, nil
}

// decodeRequest decodes with encoding/json: unknown fields refused, one
// JSON object, then nothing but white space.
func decodeRequest(body []byte) (*Request, error) {
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
	// Decoder.More alone lets a stray ] or } through.
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, &InvalidError{[]Problem{{Field: "body", Reason: "trailing data after the JSON object"}}}
	}
	return &r, nil
}

// Validate is ValidateFor TD's v2 API.
func (r *Request) Validate() []Problem { return r.ValidateFor(tongdun.V2) }

// ValidateFor applies TongDun's rules of API version v to the core and
// ours to the blocks. What only a later version takes (v3's lookup event
// and account object, under v2) says which setting would take it.
func (r *Request) ValidateFor(v tongdun.APIVersion) []Problem {
	var ps []Problem
	add := func(f, why string) { ps = append(ps, Problem{Field: f, Reason: why}) }
	if r.ID != "" {
		if !validID(r.ID) {
			add("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
		} else if kind := redact.Personal(r.ID); kind != "" {
			add("id", "looks like "+kind+"; use an opaque id, such as a UUID")
		}
	}
	for _, p := range tongdun.ValidateRequest(&r.Request, v) {
		if p.Since != "" {
			add(p.Field, fmt.Sprintf("%s (TongDun code %d): it needs AGENT_TONGDUN_API_VERSION=%s, for TD's %s endpoint; the agent is set for %s",
				p.Reason, p.Code, p.Since, p.Since, ver(v)))
			continue
		}
		add(p.Field, fmt.Sprintf("%s (TongDun code %d)", p.Reason, p.Code))
	}
	if r.Amount != nil && !(*r.Amount >= 0 && *r.Amount <= MaxAmount) {
		add("amount", "must be a number from 0 to "+maxAmountText)
	}
	if c := r.Card; c != nil {
		if !digits(c.CardNo, 12, 19) {
			add("card.card_no", "must be 12-19 digits")
		}
		if !certID(c.CertID) {
			add("card.cert_id", "must be a 15 or 18 character ID number")
		}
		if !digits(c.Mobile, 11, 11) || c.Mobile[0] != '1' {
			add("card.mobile", "must be an 11-digit mobile number")
		}
	}
	if t := r.Transaction; t != nil {
		if r.Card == nil {
			add("transaction", "needs card.card_no (UnionPay authenticates a card transaction)")
		}
		if _, err := time.Parse("20060102", t.Date); err != nil || len(t.Date) != 8 {
			add("transaction.date", "must be YYYYMMDD")
		}
		if !(t.Amount > 0 && t.Amount <= MaxAmount) {
			add("transaction.amount", "must be > 0 and at most "+maxAmountText)
		}
		if len(t.Location) > 128 {
			add("transaction.location", "must be at most 128 characters")
		}
	}
	if c := r.Credit; c != nil {
		if c.Mode != "revolving" && c.Mode != "single" {
			add("credit.mode", "must be revolving or single")
		}
		if !(c.Line > 0 && c.Line <= MaxAmount) {
			add("credit.line", "must be > 0 and at most "+maxAmountText)
		}
		if !(c.Outstanding >= 0 && c.Outstanding <= MaxAmount) {
			add("credit.outstanding", "must be a number from 0 to "+maxAmountText)
		}
		if c.OverdueDays < 0 {
			add("credit.overdue_days", "must be >= 0")
		}
		if c.APR < 0 || c.APR > 10 || math.IsNaN(c.APR) {
			add("credit.apr", "must be a yearly rate between 0 and 10 (0.18 = 18%)")
		}
		if c.ValidUntil != "" {
			if _, err := time.Parse(time.DateOnly, c.ValidUntil); err != nil {
				add("credit.valid_until", "must be YYYY-MM-DD")
			}
		}
	}
	ps = append(ps, r.characterProblems()...)
	return ps
}

// ver names a version for a message (the zero version is v2).
func ver(v tongdun.APIVersion) tongdun.APIVersion {
	if v == "" {
		return tongdun.V2
	}
	return v
}

// MaxAmount is the largest money amount a decision takes (amount,
// transaction.amount, credit.line, credit.outstanding): ten billion, in
// the caller's unit. It is far above any consumer-credit amount, keeps
// amounts exact to the cent (the policy rounds them so) with room for
// sums, and keeps them clear of what redact takes for a mobile number
// (1.3e10 and up), so a stored decision never shows an amount masked.
const MaxAmount = 1e10

const maxAmountText = "10000000000"

// maxCharProblems bounds the control-character problems listed for one
// request.
const maxCharProblems = 10

// characterProblems refuses control characters (C0, DEL, C1) and Unicode
// bidirectional formatting characters in the request's strings: they
// hide or reorder what an operator reads in a stored decision, a log or a
// terminal, and TongDun gets session_id and ext as they are. The free
// text of ext and event_detail values may hold tab, line feed and
// carriage return (a comment's lines); nothing else may.
func (r *Request) characterProblems() []Problem {
	if !r.hasBadChars() {
		return nil
	}
	var ps []Problem
	check := func(field, v string, text bool) {
		if c, bad := badChar(v, text); bad && len(ps) < maxCharProblems {
			ps = append(ps, Problem{Field: field, Reason: charReason(c)})
		}
	}
	check("channel", r.Channel, false)
	check("session_id", r.SessionID, false)
	check("decision_event", r.DecisionEvent, false)
	check("event_time", r.EventTime, false)
	check("account_id", r.AccountID, false)
	if t := r.Terminal; t != nil {
		check("terminal.black_box", t.BlackBox, false)
		check("terminal.ip", t.IP, false)
	}
	if t := r.Transaction; t != nil {
		check("transaction.location", t.Location, false)
	}
	if r.Ext != nil {
		walkChars("ext", r.Ext, check)
	}
	if r.EventDetail != nil {
		m := make(map[string]any, len(r.EventDetail))
		for k, v := range r.EventDetail {
			m[k] = v
		}
		walkChars("event_detail", m, check)
	}
	return ps
}

// walkChars checks every key and string under v, in a stable order. A key
// that holds a refused character is reported on its object (the path does
// not echo it) and not walked into.
func walkChars(path string, v any, check func(field, v string, text bool)) {
	switch x := v.(type) {
	case string:
		check(path, x, true)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if _, bad := badChar(k, false); bad {
				check(path, k, false)
				continue
			}
			walkChars(path+"."+k, x[k], check)
		}
	case []any:
		for i, e := range x {
			walkChars(path+"["+strconv.Itoa(i)+"]", e, check)
		}
	}
}

// hasBadChars: characterProblems has something to say. It walks the
// request without allocating (every decision pays for it).
func (r *Request) hasBadChars() bool {
	bad := func(s string, text bool) bool { _, b := badChar(s, text); return b }
	if bad(r.Channel, false) || bad(r.SessionID, false) || bad(r.DecisionEvent, false) || bad(r.EventTime, false) || bad(r.AccountID, false) {
		return true
	}
	if t := r.Terminal; t != nil && (bad(t.BlackBox, false) || bad(t.IP, false)) {
		return true
	}
	if t := r.Transaction; t != nil && bad(t.Location, false) {
		return true
	}
	if anyBadChars(r.Ext) {
		return true
	}
	for k, v := range r.EventDetail {
		if bad(k, false) || anyBadChars(v) {
			return true
		}
	}
	return false
}

func anyBadChars(v any) bool {
	switch x := v.(type) {
	case string:
		_, bad := badChar(x, true)
		return bad
	case map[string]any:
		for k, e := range x {
			if _, bad := badChar(k, false); bad || anyBadChars(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if anyBadChars(e) {
				return true
			}
		}
	}
	return false
}

// badChar returns the first character of s that a request may not hold:
// a C0 control (but tab, line feed and carriage return in text), DEL, a
// C1 control, or a bidirectional formatting character.
func badChar(s string, text bool) (rune, bool) {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++ // printable ASCII, the common case
	}
	for _, c := range s[i:] {
		switch {
		case c < 0x20:
			if !text || c != '\t' && c != '\n' && c != '\r' {
				return c, true
			}
		case c >= 0x7f && c <= 0x9f,
			c == 0x061c, c == 0x200e, c == 0x200f, c >= 0x202a && c <= 0x202e, c >= 0x2066 && c <= 0x2069:
			return c, true
		}
	}
	return 0, false
}

func charReason(c rune) string {
	what := "a control character"
	if c > 0x9f {
		what = "a bidirectional formatting character"
	}
	return fmt.Sprintf("holds U+%04X, %s: control characters (U+0000-U+001F, U+007F-U+009F) and bidirectional "+
		"formatting characters (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) are refused", c, what)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func digits(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func certID(s string) bool {
	switch len(s) {
	case 15:
		return digits(s, 15, 15)
	case 18:
		return digits(s[:17], 17, 17) && (s[17] >= '0' && s[17] <= '9' || s[17] == 'X' || s[17] == 'x')
	}
	return false
}
