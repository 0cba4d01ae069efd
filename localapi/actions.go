package localapi

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/spool"
)

// QueueTencent is the spool queue user actions go to.
const QueueTencent = "tencent"

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// postActions validates a batch of user actions and stores it durably. It
// answers 202 only after the batch is on disk; any invalid action rejects
// the whole batch and nothing is stored.
func (s *Server) postActions(w http.ResponseWriter, r *http.Request) {
	rid := requestID(w, r)
	if !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json", nil)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	acts, err := action.Decode(body, s.now())
	if err != nil {
		var se *action.SyntaxError
		var ve *action.ValidationError
		switch {
		case errors.As(err, &se):
			writeError(w, http.StatusBadRequest, "invalid_json", err.Error(),
				[]Field{{Field: "body", Reason: "malformed JSON at byte offset " + strconv.FormatInt(se.Offset, 10)}})
		case errors.As(err, &ve):
			details := make([]Field, len(ve.Problems))
			for i, p := range ve.Problems {
				details[i] = Field{Field: p.Field, Reason: p.Reason}
			}
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("%d problem(s) in the request; nothing was stored", len(ve.Problems)), details)
		default:
			writeError(w, http.StatusBadRequest, "invalid_request", "request refused", nil)
		}
		s.log.Info("actions refused", "request_id", rid, "reason", "invalid", "bytes", len(body))
		s.cfg.Observer.Actions("invalid", 1)
		return
	}
	// One buffer holds every payload of the request; each record keeps a
	// capacity-capped slice of it, so no payload can grow into the next.
	recs := make([]spool.Record, len(acts))
	buf := make([]byte, 0, len(body)+len(acts)*16)
	for i := range acts {
		start := len(buf)
		buf = acts[i].AppendJSON(buf)
		recs[i] = spool.Record{Queue: QueueTencent, ID: acts[i].ID, Payload: buf[start:len(buf):len(buf)]}
	}
	res, err := s.cfg.Store.Append(r.Context(), recs)
	switch {
	case err == nil:
	case errors.Is(err, spool.ErrFull):
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "spool_full", "the spool is full; nothing was stored; retry later", nil)
		s.log.Warn("actions refused", "request_id", rid, "reason", "spool_full", "actions", len(recs))
		s.cfg.Observer.Actions("spool_full", len(recs))
		return
	case errors.Is(err, spool.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the agent is shutting down; nothing was stored", nil)
		return
	case errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		return // the caller went away before we handed the batch over
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the store could not take the batch; nothing was stored", nil)
		s.log.Error("actions refused", "request_id", rid, "reason", "store_error", "err", err)
		s.cfg.Observer.Actions("unavailable", len(recs))
		return
	}
	s.cfg.Observer.Actions("accepted", res.Accepted)
	if res.Duplicates > 0 {
		s.cfg.Observer.Actions("duplicate", res.Duplicates)
	}
	b := make([]byte, 0, 48)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(res.Accepted), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(res.Duplicates), 10)
	writeRaw(w, http.StatusAccepted, append(b, "}\n"...))
}

// readBody reads a capped body; on failure it has answered (413 or 400).
// The body is a fresh slice: handlers keep it past the call (the spool
// holds payloads until commit).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 {
			bufPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body exceeds %d bytes", s.cfg.MaxBodyBytes), nil)
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "bad_body", "cannot read body", nil)
		return nil, false
	}
	return bytes.Clone(buf.Bytes()), true
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || (len(mt) > 5 && mt[len(mt)-5:] == "+json"))
}
