package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
)

type deadLetter struct {
	Upstream string `json:"upstream"`
	Seq      uint64 `json:"seq"`
	ID       string `json:"id"`
	// OuterActionID is the key a Tencent action was sent under: its id
	// mapped to Tencent's alphabet (action.OuterActionID), to find it in
	// Tencent's reports. Tencent dead letters only.
	OuterActionID string          `json:"outer_action_id,omitempty"`
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
		if name == QueueTencent {
			out[i].OuterActionID = redact.ID(action.OuterActionID(e.ID))
		}
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
	if !isJSON(header(r.Header, "Content-Type")) {
		writeReply(w, notJSON)
		return
	}
	b, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req replayRequest
	if f := decodeStrict(b, &req); f != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "body must be {\"upstream\":..., \"ids\":[...]} or {\"upstream\":..., \"all\":true}", []Field{*f})
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

// decodeStrict decodes one JSON object into v: no unknown field, nothing
// after it but white space. When it refuses the body, the problem names
// the field at fault ("body" when it is the syntax) and the byte offset.
func decodeStrict(b []byte, v any) *Field {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return &Field{Field: "body", Reason: "malformed JSON at byte offset " + strconv.FormatInt(se.Offset, 10)}
		case errors.As(err, &te) && te.Field != "":
			return &Field{Field: te.Field, Reason: "must be " + jsonKind(te.Type.Kind()) + ", not " + te.Value}
		case errors.As(err, &te):
			return &Field{Field: "body", Reason: "must be a JSON object, not " + te.Value}
		case errors.Is(err, io.EOF):
			return &Field{Field: "body", Reason: "empty body"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return &Field{Field: "body", Reason: "JSON ends early at byte offset " + strconv.Itoa(len(b))}
		}
		// The decoder's only other refusal here is an unknown field; its
		// message quotes the name, which is the caller's own key.
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if n, err := strconv.Unquote(name); err == nil {
				name = n
			}
			return &Field{Field: name, Reason: "unknown field"}
		}
		return &Field{Field: "body", Reason: "not valid JSON"}
	}
	off := dec.InputOffset()
	for off < int64(len(b)) && isJSONSpace(b[off]) {
		off++
	}
	if off < int64(len(b)) {
		return &Field{Field: "body", Reason: "unexpected data after the JSON object at byte offset " + strconv.FormatInt(off, 10)}
	}
	return nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// jsonKind names a Go kind as the JSON type a caller must send.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "a number"
	}
}
