package localapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
)

type deadLetter struct {
	Upstream      string          `json:"upstream"`
	Seq           uint64          `json:"seq"`
	ID            string          `json:"id"`
	Reason        string          `json:"reason"`
	DeadAt        time.Time       `json:"dead_at"`
	EnqueuedAt    time.Time       `json:"enqueued_at"`
	Attempts      int             `json:"attempts"`
	LastError     string          `json:"last_error,omitempty"`
	PayloadMasked json.RawMessage `json:"payload_masked"`
}

// listDeadLetters lists a queue's dead letters, personal fields masked.
// Paging: ?after=<seq of the last one seen>&limit=N (default 100, max 1000).
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("upstream")
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	es, err := s.cfg.Store.DeadLetters(name, after, limit)
	if errors.Is(err, spool.ErrUnknownQueue) {
		writeError(w, http.StatusBadRequest, "invalid_request", "unknown upstream", []Field{{Field: "upstream", Reason: "must be tencent, tongdun or unionpay"}})
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "cannot read dead letters", nil)
		return
	}
	out := make([]deadLetter, len(es))
	for i, e := range es {
		// Ids that look like personal data are refused at intake; one
		// stored before is shown masked (replay it with all=true).
		out[i] = deadLetter{Upstream: name, Seq: e.Seq, ID: redact.ID(e.ID), Reason: redact.Text(e.Reason), DeadAt: e.DeadAt,
			EnqueuedAt: e.EnqueuedAt, Attempts: e.Attempts, LastError: redact.Text(e.LastError), PayloadMasked: redact.JSON(e.Payload)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

type replayRequest struct {
	Upstream string   `json:"upstream"`
	IDs      []string `json:"ids"`
	All      bool     `json:"all"`
}

// replayDeadLetters puts dead letters back on their queue.
func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	rid := requestID(w, r)
	if !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json", nil)
		return
	}
	var req replayRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "body must be {\"upstream\":..., \"ids\":[...]} or {\"upstream\":..., \"all\":true}", nil)
		return
	}
	var problems []Field
	if req.All == (len(req.IDs) > 0) {
		problems = append(problems, Field{Field: "ids", Reason: "give either ids or all=true"})
	}
	n, err := 0, error(nil)
	if len(problems) == 0 {
		n, err = s.cfg.Store.Replay(r.Context(), req.Upstream, req.IDs, req.All)
		if errors.Is(err, spool.ErrUnknownQueue) {
			problems = append(problems, Field{Field: "upstream", Reason: "must be tencent, tongdun or unionpay"})
		}
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "replay refused", problems)
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "replay failed; "+strconv.Itoa(n)+" were moved back before the failure", nil)
		return
	}
	s.log.Info("dead letters replayed", "request_id", rid, "upstream", req.Upstream, "replayed", n)
	writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
}
