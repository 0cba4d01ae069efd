package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

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

// ParseRequest decodes strictly (unknown fields refused) and validates.
// defaultChannel fills an absent channel.
func ParseRequest(body []byte, defaultChannel string) (*Request, error) {
	r, ok := parseFast(body)
	if !ok {
		var err error
		if r, err = decodeRequest(body); err != nil {
			return nil, err
		}
	}
	if r.Channel == "" {
		r.Channel = defaultChannel
	}
	if ps := r.Validate(); len(ps) > 0 {
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

// Validate applies TongDun's rules to the core and ours to the blocks.
func (r *Request) Validate() []Problem {
	var ps []Problem
	add := func(f, why string) { ps = append(ps, Problem{Field: f, Reason: why}) }
	if r.ID != "" && !validID(r.ID) {
		add("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	for _, p := range tongdun.ValidateRequest(&r.Request) {
		add(p.Field, fmt.Sprintf("%s (TongDun code %d)", p.Reason, p.Code))
	}
	if r.Amount != nil && (*r.Amount < 0 || math.IsNaN(*r.Amount) || math.IsInf(*r.Amount, 0)) {
		add("amount", "must be a number >= 0")
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
		if !(t.Amount > 0) || math.IsInf(t.Amount, 0) {
			add("transaction.amount", "must be > 0")
		}
		if len(t.Location) > 128 {
			add("transaction.location", "must be at most 128 characters")
		}
	}
	if c := r.Credit; c != nil {
		if c.Mode != "revolving" && c.Mode != "single" {
			add("credit.mode", "must be revolving or single")
		}
		if !(c.Line > 0) || math.IsInf(c.Line, 0) {
			add("credit.line", "must be > 0")
		}
		if c.Outstanding < 0 || math.IsNaN(c.Outstanding) || math.IsInf(c.Outstanding, 0) {
			add("credit.outstanding", "must be >= 0")
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
	return ps
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
