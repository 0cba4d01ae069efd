package policy

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
)

var (
	reasonAllowList = Reason{ID: ReasonAllowList, Reason: "on the allow list"}
	blockReasons    = [4]Reason{
		{ID: ReasonBlockListAccount, Reason: "account is on the block list"},
		{ID: ReasonBlockListDevice, Reason: "device is on the block list"},
		{ID: ReasonBlockListIP, Reason: "IP address is on the block list"},
		{ID: ReasonBlockListCard, Reason: "card is on the block list"},
	}
)

// hits reports which of account, device, ip and card are on the list.
func (il *idList) hits(in *Input) (h [4]bool) {
	if in.AccountID != "" {
		_, h[0] = il.accounts[in.AccountID]
	}
	if in.Device != "" {
		_, h[1] = il.devices[in.Device]
	}
	if in.IP != "" && len(il.ips) > 0 {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			a = a.Unmap().WithZone("")
			for _, pfx := range il.ips {
				if pfx.Contains(a) {
					h[2] = true
					break
				}
			}
		}
	}
	if in.CardHash != "" && len(il.cards) > 0 {
		_, h[3] = il.cards[in.CardHash]
		if !h[3] && strings.ToLower(in.CardHash) != in.CardHash {
			_, h[3] = il.cards[strings.ToLower(in.CardHash)]
		}
	}
	return h
}

// invalidInput names the first non-finite number or over-long string of the input, or returns "".
// Refusing them keeps every condition within the cost the estimator allowed at load.
func invalidInput(in *Input) string {
	bad := func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }
	long := func(s string) bool { return len(s) > maxStringSize }
	switch {
	case long(in.Event) || long(in.AccountID) || long(in.Device) || long(in.IP) || long(in.CardHash):
		return "a string longer than " + strconv.Itoa(maxStringSize) + " bytes"
	case in.Credit != nil && long(in.Credit.Mode), in.Transaction != nil && long(in.Transaction.Date):
		return "a string longer than " + strconv.Itoa(maxStringSize) + " bytes"
	case longSignal(&in.Signals.TongDun) || longSignal(&in.Signals.UnionPayModel) || longSignal(&in.Signals.UnionPayTransaction):
		return "a signal string longer than " + strconv.Itoa(maxStringSize) + " bytes"
	case bad(in.Amount):
		return "a non-finite amount"
	case in.Credit != nil && (bad(in.Credit.Line) || bad(in.Credit.Outstanding) || bad(in.Credit.APR)):
		return "a non-finite credit amount or rate"
	case in.Transaction != nil && bad(in.Transaction.Amount):
		return "a non-finite transaction amount"
	case bad(in.Signals.TongDun.AgeSeconds) || bad(in.Signals.UnionPayModel.AgeSeconds) ||
		bad(in.Signals.UnionPayTransaction.AgeSeconds):
		return "a non-finite signal age"
	case bad(in.FleetAgeSeconds):
		return "a non-finite fleet age"
	}
	return ""
}

func longSignal(s *Signal) bool {
	if len(s.Status) > maxStringSize || len(s.Result) > maxStringSize {
		return true
	}
	for i, r := range s.Reasons {
		if i == maxReasonIDs {
			break
		}
		if len(r.ID) > maxStringSize {
			return true
		}
	}
	return false
}

// Decide applies the policy to one input. It is safe for concurrent use; see the package
// documentation for the order in which lists and rules decide.
func (p *Policy) Decide(in *Input) Decision {
	d := Decision{PolicyVersion: p.version, PolicySHA256: p.sha}
	if in == nil {
		in = &Input{}
	}
	if what := invalidInput(in); what != "" {
		d.Result = Review
		d.Reasons = []Reason{{ID: ReasonInvalidInput, Reason: "input has " + what}}
		return d
	}
	if h := p.allow.hits(in); h[0] || h[1] || h[2] || h[3] {
		d.Result = Accept
		d.Reasons = []Reason{reasonAllowList}
		return d
	}
	blockHits := p.block.hits(in)

	var nBlock, nAllow, nReview int
	var errBlock, errReviewOrScore bool
	ctx := p.pool.Get().(*evalCtx)
	ctx.reset(in)
	for _, r := range p.rules {
		fired, score, err := r.eval(ctx)
		if err != nil {
			d.Errors = append(d.Errors, Fired{ID: r.ID, Class: r.Class, Mode: r.Mode, Reason: r.Reason, Error: err.Error()})
			if r.Mode == ModeActive {
				switch r.Class {
				case ClassBlock:
					errBlock = true
				case ClassReview, ClassScore:
					errReviewOrScore = true
				}
			}
			continue
		}
		if !fired {
			continue
		}
		f := Fired{ID: r.ID, Class: r.Class, Mode: r.Mode, Reason: r.Reason, Score: score}
		if r.Mode == ModeShadow {
			d.Shadow = append(d.Shadow, f)
			continue
		}
		if d.Fired == nil {
			d.Fired = make([]Fired, 0, 4)
		}
		d.Fired = append(d.Fired, f)
		switch r.Class {
		case ClassBlock:
			nBlock++
		case ClassAllow:
			nAllow++
		case ClassReview:
			nReview++
		case ClassScore:
			d.Score += score
		}
	}
	ctx.release()
	p.pool.Put(ctx)
	d.Score = roundScore(d.Score)

	addReasons := func(class string) {
		for _, f := range d.Fired {
			if f.Class == class {
				d.Reasons = append(d.Reasons, Reason{ID: f.ID, Reason: f.Reason})
			}
		}
	}
	fromScore := false
	switch {
	case blockHits[0] || blockHits[1] || blockHits[2] || blockHits[3] || nBlock > 0:
		d.Result = Decline
		for i, hit := range blockHits {
			if hit {
				d.Reasons = append(d.Reasons, blockReasons[i])
			}
		}
		addReasons(ClassBlock)
	case nAllow > 0:
		d.Result = Accept
		addReasons(ClassAllow)
	case nReview > 0:
		d.Result = Review
		addReasons(ClassReview)
	default:
		fromScore = true
		switch {
		case d.Score >= p.declineAt:
			d.Result = Decline
		case d.Score >= p.reviewAt:
			d.Result = Review
		default:
			d.Result = Accept
		}
		if d.Result != Accept {
			addReasons(ClassScore)
		}
	}
	// A rule that could not be evaluated might have changed the outcome: never accept on it.
	if d.Result != Decline && (errBlock || errReviewOrScore && fromScore) {
		ids := make([]string, 0, len(d.Errors))
		for _, f := range d.Errors {
			if f.Mode == ModeActive && f.Class != ClassAllow {
				ids = append(ids, f.ID)
			}
		}
		if d.Result == Accept {
			d.Result = Review
			d.Reasons = nil
		}
		d.Reasons = append(d.Reasons, Reason{ID: ReasonRuleError, Reason: "could not evaluate " + strings.Join(ids, ", ")})
	}
	return d
}

// eval runs the rule's condition and, for a score rule that fired, its contribution.
func (r *rule) eval(ctx *evalCtx) (fired bool, score float64, err error) {
	out, _, err := r.when.Eval(ctx)
	if err != nil {
		return false, 0, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, 0, fmt.Errorf("condition gave %v, not a bool", out.Type())
	}
	if !b || r.Class != ClassScore {
		return bool(b), 0, nil
	}
	if r.scoreExpr == nil {
		return true, r.score, nil
	}
	out, _, err = r.scoreExpr.Eval(ctx)
	if err != nil {
		return false, 0, err
	}
	switch v := out.(type) {
	case types.Double:
		score = float64(v)
	case types.Int:
		score = float64(v)
	default:
		return false, 0, fmt.Errorf("score gave %v, not a number", out.Type())
	}
	if math.IsNaN(score) || math.IsInf(score, 0) {
		return false, 0, fmt.Errorf("score is not finite")
	}
	return true, roundScore(score), nil
}

// roundScore rounds a score to 2 decimals. A weight times a signal's score
// is seldom a whole binary fraction (0.6 × 24 is 14.399999999999999 in
// float64), and callers read the noise as a number the policy meant; a
// rule's contribution and their sum are both rounded, and the sum is what
// the thresholds see, so the score an answer shows is the one that decided.
func roundScore(s float64) float64 {
	if math.Abs(s) >= 1e12 {
		return s // already far past any threshold; ×100 must not overflow
	}
	return math.Round(s*100) / 100
}
