package localapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
)

// Decider is what the API needs of the decision engine.
type Decider interface {
	Decide(ctx context.Context, req *decision.Request) (*decision.Result, error)
	Get(id string) (*decision.Result, bool, error)
}

// answer is the body of POST /v1/decisions: the outcome and what it rests
// on. The full record (fired rules, counters, masked input, late verdicts)
// is at GET /v1/decisions/{id}.
type answer struct {
	DecisionID    string                         `json:"decision_id"`
	Result        string                         `json:"result"`
	Score         float64                        `json:"score"`
	Reasons       []policy.Reason                `json:"reasons"`
	PolicyVersion string                         `json:"policy_version"`
	Degraded      bool                           `json:"degraded"`
	Signals       map[string]decision.SignalView `json:"signals"`
}

var noDecider = errorReply(http.StatusServiceUnavailable, "not_available", "decisions are not enabled", nil)

// decide answers one decision request. The request it parses may keep
// references to body, which must stay untouched for good.
func (s *Server) decide(ctx context.Context, rid string, body []byte) reply {
	req, err := decision.Parse(body, decision.ParseOptions{DefaultChannel: s.cfg.DefaultChannel, NoTongDun: s.cfg.NoTongDun, TongDunVersion: s.cfg.TongDunAPIVersion})
	if err != nil {
		var ie *decision.InvalidError
		if errors.As(err, &ie) {
			details := make([]Field, len(ie.Problems))
			for i, p := range ie.Problems {
				details[i] = Field{Field: p.Field, Reason: p.Reason}
			}
			code := "invalid_request"
			if len(details) == 1 && details[0].Field == "body" {
				code = "invalid_json"
			}
			return errorReply(http.StatusBadRequest, code, fmt.Sprintf("%d problem(s) in the request", len(details)), details)
		}
		return errorReply(http.StatusBadRequest, "invalid_request", "request refused", nil)
	}
	start := time.Now()
	res, err := s.cfg.Decider.Decide(ctx, req)
	if errors.Is(err, spool.ErrFull) {
		// Only a nearly full disk refuses a decision's record (MaxBytes
		// counts queued items, not decisions).
		rep := errorReply(http.StatusServiceUnavailable, "spool_full", "the data disk is nearly full: the decision could not be recorded; retry later", nil)
		rep.retryAfter = "30"
		s.log.Warn("decision refused", "request_id", rid, "reason", "spool_full")
		return rep
	}
	if err != nil {
		rep := errorReply(http.StatusServiceUnavailable, "store_unavailable", "the decision could not be recorded; retry", nil)
		rep.retryAfter = "1"
		s.log.Error("decision failed", "request_id", rid, "err", err)
		return rep
	}
	s.cfg.Observer.Decision(res.Result, res.Degraded)
	s.hist.Decided(res.Result)
	if s.log.Enabled(ctx, slog.LevelDebug) {
		// Checked first: building the call's arguments alone costs
		// allocations on every decision.
		s.log.Debug("decided", "request_id", rid, "decision_id", res.DecisionID, "result", res.Result,
			"degraded", res.Degraded, "took", time.Since(start))
	}
	return jsonReply(http.StatusOK, answer{DecisionID: res.DecisionID, Result: res.Result, Score: res.Score, Reasons: res.Reasons,
		PolicyVersion: res.PolicyVersion, Degraded: res.Degraded, Signals: res.Signals})
}

func (s *Server) getDecision(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Decider == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "decisions are not enabled", nil)
		return
	}
	res, ok, err := s.cfg.Decider.Get(r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "cannot read the decision", nil)
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no such decision (or past its retention)", nil)
	default:
		// A record stored by an older agent may hold an id, or input,
		// that today's rules mask: mask them again as they are shown
		// (redact leaves what it masked before as it is).
		res.DecisionID = redact.ID(res.DecisionID)
		if len(res.Input) > 0 {
			res.Input = redact.JSON(res.Input)
		}
		writeJSON(w, http.StatusOK, res)
	}
}
