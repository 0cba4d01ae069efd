package localapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/redact"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The HTTP server's fixed limits; the others are settings (Config).
const (
	writeTimeout = 30 * time.Second
	idleTimeout  = 120 * time.Second
	// MaxHeaderBytes caps a request's line and headers (431 past it), as
	// nginx's default does. It is also the size of each connection's read
	// buffer, which a connection keeps while it is open (fasthttp's
	// ReduceMemoryUsage would pool it between requests, but not with
	// streamed bodies, where the buffer may hold the next request's
	// bytes). With 64 callers in requests of 100, 16 KiB buffers (and
	// pooled body buffers) left the garbage collector a third less room
	// under the 88 MiB Go limit: 695 collections against 542 in the same
	// run length, and a tenth of the rate.
	MaxHeaderBytes = 8 << 10
	// prefetchBytes is the most of a body fasthttp reads with the headers,
	// before the handler runs (it streams the rest): 8 KiB, or less when
	// MaxBodyBytes is smaller. A connection holds it whatever the budget.
	prefetchBytes = 8 << 10
)

// Routes served without net/http, as the metrics name them.
const (
	routeActions   = "POST /v1/actions"
	routeDecisions = "POST /v1/decisions"
)

// newHTTPServer is the server the agent listens with. It is fasthttp:
// single actions are bound by CPU, and with net/http (a goroutine and a
// read per request to watch for the client going away, header maps, a
// context) an acknowledged action cost the agent about 52 µs of CPU,
// against 40 µs with fasthttp (BENCHMARKS.md, session 7). The two hot
// endpoints, POST /v1/actions and POST /v1/decisions, are served
// natively; everything else goes through the mux by fasthttp's adaptor.
//
// Memory stays bounded whatever callers do (BENCHMARKS.md, session 12).
// fasthttp would read each whole body before the handler runs; here it
// streams them (StreamRequestBody), and every request goes through handle,
// which reads a body only once the request is admitted and its bytes fit
// in the process's budget (BodyBytesInFlight). The token and the other
// defences are checked on the headers (headerReceived), before a body
// byte is read; connections are capped (MaxConnections, see capListener);
// a caller has HeaderTimeout to send its headers and BodyTimeout more for
// its body.
func (s *Server) newHTTPServer() *fasthttp.Server {
	s.slow = fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The adaptor gives the handler fasthttp's RequestCtx as its
		// context, and fasthttp resets and reuses that once the request is
		// answered. A context derived from it with a deadline (readyz's
		// probe) watches it from a goroutine that may still read it then:
		// the race detector caught one at a Shutdown right after /readyz.
		// Its cancellation only says the server is shutting down, which a
		// request in flight is meant to finish through, so the handlers
		// get its values without it.
		s.route(w, r.WithContext(context.WithoutCancel(r.Context())))
	}))
	return &fasthttp.Server{
		Handler:                      s.handle,
		HeaderReceived:               s.headerReceived,
		StreamRequestBody:            true,
		ErrorHandler:                 s.connError,
		Logger:                       connLogger{s.log},
		ReadTimeout:                  s.cfg.HeaderTimeout,
		WriteTimeout:                 writeTimeout,
		IdleTimeout:                  idleTimeout,
		ReadBufferSize:               MaxHeaderBytes,
		MaxRequestBodySize:           int(s.cfg.MaxBodyBytes),
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
	}
}

// headerReceived runs once a request's headers are read, before any of
// its body is: it gives a body longer than what fasthttp reads with the
// headers its deadline (BodyTimeout from now), and when the request will be refused on its headers (guard: browser,
// Host, token) it makes fasthttp read none of the body. The request is
// then taken as having none (Content-Length 0, no Expect: 100-continue,
// so the caller is not invited to send it), handle refuses it on the same
// headers, and the connection closes after the answer: the body's bytes
// are never read as a request. Only a plain origin-form path (plainPath)
// is judged here, so that the path is the one handle will see; any other
// is left to handle, which then holds at most the prefetched 8 KiB.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if p, ok := plainPath(h.RequestURI()); ok {
		if _, refused := s.guard(string(h.Peek("Origin")), string(h.Peek("Sec-Fetch-Site")), string(h.Host()),
			string(h.Peek("Authorization")), string(p)); refused {
			h.Del("Expect")
			h.SetContentLength(0)
			h.SetConnectionClose()
		}
	}
	if cl := h.ContentLength(); cl == -1 || cl > s.prefetch() {
		return fasthttp.RequestConfig{ReadTimeout: s.cfg.BodyTimeout}
	}
	// A body fasthttp reads whole with the headers is read under their
	// deadline (HeaderTimeout), which saves resetting the connection's
	// deadline on every small request.
	return fasthttp.RequestConfig{}
}

// prefetch is the most of a body fasthttp reads with the headers.
func (s *Server) prefetch() int { return min(prefetchBytes, int(s.cfg.MaxBodyBytes)) }

// plainPath is the path of an origin-form request target when fasthttp's
// normalisation leaves it as it is: it starts with "/" and has no
// percent-escape, no empty segment, no segment starting with a dot and no
// backslash.
func plainPath(uri []byte) ([]byte, bool) {
	if len(uri) == 0 || uri[0] != '/' {
		return nil, false
	}
	if i := bytes.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if bytes.IndexByte(uri, '%') >= 0 || bytes.IndexByte(uri, '\\') >= 0 ||
		bytes.Contains(uri, []byte("//")) || bytes.Contains(uri, []byte("/.")) {
		return nil, false
	}
	return uri, true
}

// handle is every request's way in. In order: the framing (both
// Content-Length and Transfer-Encoding is refused), the defences (guard,
// the authoritative check, on the normalised path), for a route that
// takes a body its type and size from the headers, then the body read
// under the budget, then one of MaxConcurrent places, then the route.
// Every refusal before the body is read closes the connection when body
// bytes are still on their way (refuse).
func (s *Server) handle(c *fasthttp.RequestCtx) {
	hd := &c.Request.Header
	route := hotRoute(c)
	label, path := route, ""
	if route != "" {
		path = route[len("POST "):]
	} else {
		label, path = "other", string(c.Path())
	}
	if conflictingFraming(hd) {
		c.SetConnectionClose() // whatever follows is not to be read as a request
		s.refuse(c, label, smuggling)
		return
	}
	if rep, refused := s.guard(string(hd.Peek("Origin")), string(hd.Peek("Sec-Fetch-Site")), string(c.Host()),
		string(hd.Peek("Authorization")), path); refused {
		s.refuse(c, "", rep)
		return
	}
	var body []byte
	refuse := s.refuse
	if route != "" || (c.IsPost() && path == "/v1/deadletters/replay") {
		if route == routeDecisions && s.cfg.Decider == nil {
			s.refuse(c, label, noDecider)
			return
		}
		if !isJSON(string(hd.ContentType())) {
			s.refuse(c, label, notJSON)
			return
		}
		var held int64
		var rep reply
		var ok bool
		body, held, rep, ok = s.readFastBody(c)
		defer s.budget.give(held)
		if !ok {
			s.refuse(c, label, rep)
			return
		}
		refuse = s.answer // the body is read: the connection can serve the next request
	}
	if !s.enter() {
		s.cfg.Observer.Request("overloaded", http.StatusServiceUnavailable, 0)
		refuse(c, "", overloaded)
		return
	}
	defer s.leave()
	switch route {
	case routeActions:
		s.serveFast(c, route, body, s.fastActions)
	case routeDecisions:
		s.serveFast(c, route, body, s.fastDecision)
	default:
		// The adaptor hands net/http the request's body, which must not be
		// the stream: it would read all of it, unbounded.
		c.Request.SetBodyRaw(body)
		s.slow(c)
	}
}

// refuse answers a request that is not served, and closes the connection
// after the answer when the request's body is still on its way (chunked,
// or longer than what fasthttp read with the headers): reading it only to
// throw it away would hold the connection for a caller that was refused.
// label, when set, is the route the metrics count the refusal under.
// As on net/http, a request refused before its handler (guard, the cap)
// gets no X-Request-Id; one its handler refuses does.
func (s *Server) refuse(c *fasthttp.RequestCtx, label string, rep reply) {
	s.closeIfPending(c)
	s.answer(c, label, rep)
}

// closeIfPending closes the connection after the answer when the body is
// still on its way.
func (s *Server) closeIfPending(c *fasthttp.RequestCtx) {
	if cl := c.Request.Header.ContentLength(); cl == -1 || cl > s.prefetch() {
		c.SetConnectionClose()
	}
}

// answer answers a request that is not served, its body read or never
// sent.
func (s *Server) answer(c *fasthttp.RequestCtx, label string, rep reply) {
	if label != "" {
		c.Response.Header.Set("X-Request-Id", newRequestID(string(c.Request.Header.Peek("X-Request-Id"))))
	}
	writeFast(c, rep)
	if label != "" {
		s.cfg.Observer.Request(label, rep.status, 0)
	}
}

// Answers of readFastBody.
var (
	bodyTimeout = errorReply(http.StatusRequestTimeout, "timeout", "the request body was not received in time", nil)
	badBody     = errorReply(http.StatusBadRequest, "bad_request", "malformed request body", nil)
)

// bodyStep is the first reservation for a body of unknown length
// (chunked); it doubles as the body arrives.
const bodyStep = 16 << 10

// readFastBody reads the request's body within the budget and returns it
// with the bytes it holds of the budget, which the caller gives back once
// the request is answered; when it refuses, the reply says why (413 past
// MaxBodyBytes, 503 overloaded past the budget, 408 past BodyTimeout, 400
// for a broken body). A body with a Content-Length takes its whole share
// before its first byte is read, so a caller learns at once, and a body
// that got its share always completes; a chunked body takes its share as
// it grows, and is refused mid-way when the budget runs out. The body is
// a fresh slice of its own.
func (s *Server) readFastBody(c *fasthttp.RequestCtx) (body []byte, held int64, rep reply, ok bool) {
	cl := c.Request.Header.ContentLength()
	stream := c.RequestBodyStream()
	limit := s.cfg.MaxBodyBytes
	if stream == nil {
		// Nothing streamed: no body, or a request not read from a
		// connection (built in a test), whose body is in memory already.
		b := c.Request.Body()
		if int64(len(b)) > limit {
			return nil, 0, s.tooLarge, false
		}
		if len(b) == 0 {
			return nil, 0, reply{}, true
		}
		if !s.budget.take(int64(len(b))) {
			return nil, 0, overloadedBody, false
		}
		return bytes.Clone(b), int64(len(b)), reply{}, true
	}
	if cl == 0 || cl < -1 {
		return nil, 0, reply{}, true
	}
	if int64(cl) > limit {
		return nil, 0, s.tooLarge, false
	}
	if cl > 0 {
		if !s.budget.take(int64(cl)) {
			return nil, 0, overloadedBody, false
		}
		body = make([]byte, cl)
		if _, err := io.ReadFull(stream, body); err != nil {
			s.budget.give(int64(cl))
			return nil, 0, bodyError(err), false
		}
		return body, int64(cl), reply{}, true
	}
	for {
		if int64(len(body)) == limit {
			// Full: one byte more is one too many. (Not a buffer of
			// limit+1: a budget of exactly MaxBodyBytes must take the
			// largest body allowed.)
			var one [1]byte
			n, err := stream.Read(one[:])
			switch {
			case n > 0:
				s.budget.give(held)
				return nil, 0, s.tooLarge, false
			case err == io.EOF:
				return body, held, reply{}, true
			case err != nil:
				s.budget.give(held)
				return nil, 0, bodyError(err), false
			}
			continue
		}
		if len(body) == cap(body) {
			grow := min(int64(max(2*cap(body), bodyStep)), limit) - int64(cap(body))
			if !s.budget.take(grow) {
				s.budget.give(held)
				return nil, 0, overloadedBody, false
			}
			held += grow
			nb := make([]byte, len(body), int64(cap(body))+grow)
			copy(nb, body)
			body = nb
		}
		n, err := stream.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			s.budget.give(held)
			return nil, 0, bodyError(err), false
		}
	}
	return body, held, reply{}, true
}

// overloadedBody is the answer to a body that does not fit in the budget.
var overloadedBody = func() reply {
	r := errorReply(http.StatusServiceUnavailable, "overloaded", "too many request bodies in flight; retry later", nil)
	r.retryAfter = "1"
	return r
}()

func bodyError(err error) reply {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return bodyTimeout
	}
	return badBody
}

// hotRoute is the route of a request served without net/http, or "".
func hotRoute(c *fasthttp.RequestCtx) string {
	if !c.IsPost() {
		return ""
	}
	switch string(c.Path()) {
	case "/v1/actions":
		return routeActions
	case "/v1/decisions":
		return routeDecisions
	}
	return ""
}

// smuggling is the answer to a request that gives both a Content-Length
// and a Transfer-Encoding.
var smuggling = errorReply(http.StatusBadRequest, "bad_request",
	"a request must not carry both Content-Length and Transfer-Encoding", nil)

// conflictingFraming reports whether a request gave both Content-Length
// and Transfer-Encoding. RFC 9112 (section 6.3) lets a server take the
// Transfer-Encoding and close the connection after the answer, which is
// what fasthttp does; but two framings are how requests are smuggled past
// a proxy that reads the other one, and no honest client sends both, so
// the agent refuses the request instead of guessing. fasthttp keeps only
// the framing it chose, and marks the connection to close when it saw
// both: that mark (also set by "Connection: close") is the cheap test,
// and the raw header block, only then, the exact one.
func conflictingFraming(h *fasthttp.RequestHeader) bool {
	if !h.ConnectionClose() {
		return false
	}
	var cl, te bool
	for raw := h.RawHeaders(); len(raw) > 0; {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		cl = cl || bytes.EqualFold(name, []byte("Content-Length"))
		te = te || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	return cl && te
}

// Serve answers requests on ln until Shutdown. It may be called for more
// than one listener (TCP and a unix socket) at once; MaxConnections is
// shared by them.
func (s *Server) Serve(ln net.Listener) error {
	return s.hs.Serve(capListener{Listener: ln, s: s})
}

// capListener caps the connections open at once (MaxConnections) and
// makes them close gently (lingerConn). A connection past the cap is
// answered 503 overloaded with Retry-After, without reading any of it,
// and closed: each open connection holds a goroutine and buffers whether
// it sends anything or not, so their number is what bounds the memory
// that idle, slow and hostile callers take.
type capListener struct {
	net.Listener
	s *Server
}

func (l capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.conns.Add(1) > int64(l.s.cfg.MaxConnections) {
			l.s.conns.Add(-1)
			l.s.cfg.Observer.Request("overloaded", http.StatusServiceUnavailable, 0)
			rejectConn(c)
			continue
		}
		release := func() { l.s.conns.Add(-1) }
		if hc, ok := c.(halfCloser); ok {
			return &lingerConn{halfCloser: hc, release: release}, nil
		}
		return &countedConn{Conn: c, release: release}, nil
	}
}

// connsFull is the whole answer on a connection past MaxConnections.
var connsFull = func() []byte {
	rep := errorReply(http.StatusServiceUnavailable, "overloaded", "too many open connections; retry later", nil)
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(rep.body)) + "\r\n\r\n" + string(rep.body))
}()

// rejectConn answers a connection past the cap and closes it. Nothing of
// the request is read: the answer is written at once (a new socket's send
// buffer takes it), the writing side is shut so the caller reads it and
// then end of stream, and the socket is closed lingerTime later without a
// goroutine waiting on it.
func rejectConn(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(connsFull)
	if hc, ok := c.(halfCloser); ok && hc.CloseWrite() == nil {
		time.AfterFunc(lingerTime, func() { c.Close() })
		return
	}
	c.Close()
}

// lingerConn's connections close gently. fasthttp closes a connection
// as soon as it has answered, and when the agent refuses a body by its
// Content-Length (413) the body is still on its way: closing a socket with
// unread data sends a reset, which makes the caller's kernel drop the 413
// before the caller reads it. So a close shuts the writing side (the
// caller sees the answer, then end of stream), and reads and discards
// what the caller still sends, up to lingerBytes or lingerTime, before it
// closes. net/http does the same (its closeWriteAndWait).
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 4 << 20
)

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

type lingerConn struct {
	halfCloser
	release func() // gives back the connection's place under the cap
	once    sync.Once
}

func (c *lingerConn) Close() error {
	c.once.Do(func() {
		c.release()
		deadline := time.Now().Add(lingerTime)
		if c.CloseWrite() != nil || c.SetReadDeadline(deadline) != nil {
			c.halfCloser.Close()
			return
		}
		go func() {
			// Past lingerBytes the caller's writes block instead, and the
			// socket stays open until the deadline all the same, so the
			// caller has time to read the answer.
			if n, _ := io.CopyN(io.Discard, c.halfCloser, lingerBytes); n == lingerBytes {
				time.Sleep(time.Until(deadline))
			}
			c.halfCloser.Close()
		}()
	})
	return nil
}

// countedConn is a connection that cannot close gently (no CloseWrite),
// counted under the cap all the same.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Shutdown closes the listeners, then waits until every request in flight
// is answered or ctx ends; idle connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hs.ShutdownWithContext(ctx)
}

// serveFast serves an admitted request on a hot route, with its body,
// and counts it.
func (s *Server) serveFast(c *fasthttp.RequestCtx, route string, body []byte, h func(*fasthttp.RequestCtx, string, []byte) reply) {
	start := time.Now()
	rid := newRequestID(string(c.Request.Header.Peek("X-Request-Id")))
	c.Response.Header.Set("X-Request-Id", rid)
	rep := h(c, rid, body)
	writeFast(c, rep)
	s.cfg.Observer.Request(route, rep.status, time.Since(start))
}

// fastActions validates a batch of user actions and stores it durably,
// answering 202 only once it is on disk; any invalid action refuses the
// whole batch and nothing is stored. body is the request's own (readFastBody);
// decodeActions keeps nothing of it, and it is let go once decoded, not
// after the commit.
func (s *Server) fastActions(c *fasthttp.RequestCtx, rid string, body []byte) reply {
	acts, rep, ok := s.decodeActions(rid, body)
	if !ok {
		return rep
	}
	// Not c: fasthttp's context ends when the server shuts down, and a
	// request in flight is finished, not dropped, then. The commit it
	// waits for is bounded by the spool.
	rep, _ = s.storeActions(context.Background(), rid, acts, len(body))
	return rep
}

// fastDecision answers a decision request. The parsed request may point into body,
// which is the request's own (readFastBody) and never reused.
func (s *Server) fastDecision(c *fasthttp.RequestCtx, rid string, body []byte) reply {
	return s.decide(context.Background(), rid, body)
}

func writeFast(c *fasthttp.RequestCtx, rep reply) {
	h := &c.Response.Header
	h.SetContentType("application/json")
	h.Set("Cache-Control", "no-store")
	if rep.retryAfter != "" {
		h.Set("Retry-After", rep.retryAfter)
	}
	c.SetStatusCode(rep.status)
	c.SetBody(rep.body)
}

// connError answers a request fasthttp could not read: too big a body
// (413, as the handlers answer it), too big a header (431), too slow (408)
// or not HTTP (400). The connection is closed after it.
func (s *Server) connError(c *fasthttp.RequestCtx, err error) {
	var rep reply
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		rep = errorReply(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body exceeds %d bytes", s.cfg.MaxBodyBytes), nil)
	case errors.As(err, &small):
		rep = errorReply(http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", fmt.Sprintf("request line and headers exceed %d bytes", MaxHeaderBytes), nil)
	case errors.As(err, &ne) && ne.Timeout():
		rep = errorReply(http.StatusRequestTimeout, "timeout", "the request was not received in time", nil)
	default:
		rep = errorReply(http.StatusBadRequest, "bad_request", "malformed HTTP request", nil)
	}
	c.Response.Header.Set("X-Request-Id", newRequestID(string(c.Request.Header.Peek("X-Request-Id"))))
	writeFast(c, rep)
	route := hotRoute(c)
	if route == "" {
		route = "other"
	}
	s.cfg.Observer.Request(route, rep.status, 0)
}

// connLogger puts fasthttp's few log lines (a connection it could not
// serve) in the agent's log. fasthttp quotes what it could not parse, and
// that can be a caller's headers or body, so every quoted part is masked
// and long digit runs (card, ID and phone numbers) too.
type connLogger struct{ log *slog.Logger }

func (l connLogger) Printf(format string, args ...any) {
	l.log.Warn("http: " + scrubQuoted(fmt.Sprintf(format, args...)))
}

// scrubQuoted replaces each Go-quoted ("...", with backslash escapes)
// part of s by its length, then masks long digit runs in what is left.
func scrubQuoted(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) { // unterminated: drop the rest
			b.WriteString(`"…"`)
			break
		}
		b.WriteString(`"` + strconv.Itoa(j-i-1) + ` bytes"`)
		s = s[j+1:]
	}
	return redact.Text(b.String())
}
