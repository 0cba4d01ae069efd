package localapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/spool"

	"github.com/outpost-agent/outpost/upstream"
)

// QueueTencent is the spool queue user actions go to.
const QueueTencent = upstream.Tencent

// answerRoom is the room for a 202 answer: {"accepted":N,"duplicates":N}.
const answerRoom = 48

// notJSON is the answer to a body that does not say it is JSON.
var notJSON = errorReply(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json", nil)

// decodeActions decodes and validates a request body; when it refuses the
// body, the reply says why. The actions keep no reference to body.
func (s *Server) decodeActions(rid string, body []byte) ([]action.Action, reply, bool) {
	acts, err := action.DecodeWith(body, s.now(), s.cfg.Actions)
	if err == nil {
		return acts, reply{}, true
	}
	var rep reply
	var se *action.SyntaxError
	var ve *action.ValidationError
	switch {
	case errors.As(err, &se):
		rep = errorReply(http.StatusBadRequest, "invalid_json", err.Error(),
			[]Field{{Field: "body", Reason: "malformed JSON at byte offset " + strconv.FormatInt(se.Offset, 10)}})
	case errors.As(err, &ve):
		details := make([]Field, len(ve.Problems))
		for i, p := range ve.Problems {
			details[i] = Field{Field: p.Field, Reason: p.Reason}
		}
		rep = errorReply(http.StatusBadRequest, "invalid_request", fmt.Sprintf("%d problem(s) in the request; nothing was stored", len(ve.Problems)), details)
	default:
		rep = errorReply(http.StatusBadRequest, "invalid_request", "request refused", nil)
	}
	s.log.Info("actions refused", "request_id", rid, "reason", "invalid", "bytes", len(body))
	s.cfg.Observer.Actions("invalid", 1)
	s.hist.Refused(1)
	return nil, rep, false
}

// storeActions appends the actions to the spool and returns the answer
// once they are on disk. It returns false, and no answer, when ctx ended
// first: the caller went away before the batch was handed over.
func (s *Server) storeActions(ctx context.Context, rid string, acts []action.Action, nbody int) (reply, bool) {
	// One buffer holds every payload of the request; each record keeps a
	// capacity-capped slice of it, so no payload can grow into the next.
	recs := make([]spool.Record, len(acts))
	// The buffer also leaves room for the answer, written after the last
	// payload (which is capacity-capped, so nothing the spool holds can
	// see it).
	buf := make([]byte, 0, nbody+len(acts)*16+answerRoom)
	for i := range acts {
		start := len(buf)
		buf = acts[i].AppendJSON(buf)
		recs[i] = spool.Record{Queue: QueueTencent, ID: acts[i].ID, Payload: buf[start:len(buf):len(buf)]}
	}
	res, err := s.cfg.Store.Append(ctx, recs)
	switch {
	case err == nil:
	case errors.Is(err, spool.ErrFull):
		rep := errorReply(http.StatusServiceUnavailable, "spool_full", "the spool is full; nothing was stored; retry later", nil)
		rep.retryAfter = "30"
		s.log.Warn("actions refused", "request_id", rid, "reason", "spool_full", "actions", len(recs))
		s.cfg.Observer.Actions("spool_full", len(recs))
		s.hist.Refused(len(recs))
		return rep, true
	case errors.Is(err, spool.ErrClosed):
		rep := errorReply(http.StatusServiceUnavailable, "shutting_down", "the agent is shutting down; nothing was stored", nil)
		rep.retryAfter = "5"
		return rep, true
	case errors.Is(err, ctx.Err()) && ctx.Err() != nil:
		return reply{}, false
	default:
		rep := errorReply(http.StatusServiceUnavailable, "store_unavailable", "the store could not take the batch; nothing was stored", nil)
		rep.retryAfter = "5"
		s.log.Error("actions refused", "request_id", rid, "reason", "store_error", "err", err)
		s.cfg.Observer.Actions("unavailable", len(recs))
		s.hist.Refused(len(recs))
		return rep, true
	}
	s.cfg.Observer.Actions("accepted", res.Accepted)
	s.hist.Queued(res.Accepted, res.Duplicates)
	if res.Duplicates > 0 {
		s.cfg.Observer.Actions("duplicate", res.Duplicates)
	}
	b := buf[len(buf):]
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(res.Accepted), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(res.Duplicates), 10)
	return reply{status: http.StatusAccepted, body: append(b, "}\n"...)}, true
}

// readBody reads a capped body; on failure it has answered (413 or 400).
// The body is a fresh slice: handlers keep it past the call (the spool
// holds payloads until commit).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	bb := getBody()
	defer putBody(bb)
	var ok bool
	if bb.b, ok = s.readBodyTo(w, r, bb.b[:0]); !ok {
		return nil, false
	}
	return bytes.Clone(bb.b), true
}

// bodyBuf is a pooled body buffer, for handlers that provably keep no
// reference to the body once they return.
type bodyBuf struct{ b []byte }

var bodyPool = sync.Pool{New: func() any { return new(bodyBuf) }}

func getBody() *bodyBuf { return bodyPool.Get().(*bodyBuf) }

func putBody(bb *bodyBuf) {
	if cap(bb.b) <= 4<<20 {
		bb.b = bb.b[:0]
		bodyPool.Put(bb)
	}
}

// readBodyTo appends r's body to dst, capped at MaxBodyBytes; on failure it
// has answered (413 or 400). It reads exactly as bytes.Buffer.ReadFrom over
// http.MaxBytesReader would (at most one byte past the cap per read, so a
// body of exactly MaxBodyBytes is accepted), without allocating a reader
// per request. MaxBytesReader's only other effect, asking the server to
// close the connection, never applied here: handlers are given a
// *statusWriter, which does not have that hidden method.
func (s *Server) readBodyTo(w http.ResponseWriter, r *http.Request, dst []byte) ([]byte, bool) {
	left := s.cfg.MaxBodyBytes
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, bytes.MinRead)
		}
		p := dst[len(dst):cap(dst)]
		if int64(len(p))-1 > left {
			p = p[:left+1]
		}
		n, err := r.Body.Read(p)
		if int64(n) > left {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body exceeds %d bytes", s.cfg.MaxBodyBytes), nil)
			return dst, false
		}
		left -= int64(n)
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, true
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "malformed request body", nil)
			return dst, false
		}
	}
}

// isJSON reports whether a Content-Type is application/json, with valid
// parameters (charset=utf-8 and the like). Structured-syntax types
// (application/vnd.x+json, application/evil+json) are refused: the API takes
// one format, and a suffix match would accept any type a client cares to
// invent. The two values nearly every client sends are recognised without
// mime.ParseMediaType (which allocates a map per call); anything else goes
// through it, so the answer is the same.
func isJSON(ct string) bool {
	if asciiEqualLower(ct, "application/json") || asciiEqualLower(ct, "application/json; charset=utf-8") {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// asciiEqualLower reports whether s equals lower, a lower-case ASCII string,
// ignoring the case of ASCII letters only (strings.EqualFold would also fold
// non-ASCII letters such as U+017F into "s", which the media type syntax
// rejects).
func asciiEqualLower(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
