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

// The HTTP server's limits.
const (
	readTimeout  = 30 * time.Second
	writeTimeout = 30 * time.Second
	idleTimeout  = 120 * time.Second
	// MaxHeaderBytes caps a request's line and headers (431 past it), as
	// nginx's default does. It is also the size of the read buffers, which
	// are pooled (ReduceMemoryUsage): a connection holds one only while it
	// reads a request, not while its commit is on the way. With 64 callers
	// in requests of 100, per-connection 16 KiB buffers (and pooled body
	// buffers) left the garbage collector a third less room under the 88
	// MiB Go limit: 695 collections against 542 in the same run length,
	// and a tenth of the rate.
	MaxHeaderBytes = 8 << 10
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
// natively; everything else goes through ServeHTTP by fasthttp's adaptor.
// Both paths admit requests the same way (admit) and build the same
// answers (reply).
func (s *Server) newHTTPServer() *fasthttp.Server {
	slow := fasthttpadaptor.NewFastHTTPHandler(s)
	return &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			if conflictingFraming(&c.Request.Header) {
				c.SetConnectionClose()
				writeFast(c, smuggling)
				s.cfg.Observer.Request("other", smuggling.status, 0)
				return
			}
			switch route := hotRoute(c); route {
			case routeActions:
				s.serveFast(c, route, s.fastActions)
			case routeDecisions:
				s.serveFast(c, route, s.fastDecision)
			default:
				slow(c)
			}
		},
		ErrorHandler:                 s.connError,
		Logger:                       connLogger{s.log},
		ReadTimeout:                  readTimeout,
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
// than one listener (TCP and a unix socket) at once.
func (s *Server) Serve(ln net.Listener) error {
	return s.hs.Serve(lingerListener{ln})
}

// lingerListener's connections close gently. fasthttp closes a connection
// as soon as it has answered, and when it refuses a body by its
// Content-Length (413) the body is still on its way: closing a socket with
// unread data sends a reset, which makes the caller's kernel drop the 413
// before the caller reads it. So a close shuts the writing side (the
// caller sees the answer, then end of stream), and reads and discards
// what the caller still sends, up to lingerBytes or lingerTime, before it
// closes. net/http does the same (its closeWriteAndWait).
type lingerListener struct{ net.Listener }

const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 4 << 20
)

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if hc, ok := c.(halfCloser); ok {
		return &lingerConn{halfCloser: hc}, nil
	}
	return c, nil
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

type lingerConn struct {
	halfCloser
	once sync.Once
}

func (c *lingerConn) Close() error {
	c.once.Do(func() {
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

// Shutdown closes the listeners, then waits until every request in flight
// is answered or ctx ends; idle connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hs.ShutdownWithContext(ctx)
}

// serveFast is ServeHTTP for a hot route: the same defences, cap and
// metrics, then h.
func (s *Server) serveFast(c *fasthttp.RequestCtx, route string, h func(*fasthttp.RequestCtx, string) reply) {
	hd := &c.Request.Header
	if rep, ok := s.admit(string(hd.Peek("Origin")), string(hd.Peek("Sec-Fetch-Site")), string(c.Host()),
		string(hd.Peek("Authorization")), route[len("POST "):]); !ok {
		writeFast(c, rep)
		return
	}
	defer s.leave()
	start := time.Now()
	rid := newRequestID(string(hd.Peek("X-Request-Id")))
	c.Response.Header.Set("X-Request-Id", rid)
	rep := h(c, rid)
	writeFast(c, rep)
	s.cfg.Observer.Request(route, rep.status, time.Since(start))
}

// fastActions is postActions. The body is fasthttp's; decodeActions keeps
// nothing of it.
func (s *Server) fastActions(c *fasthttp.RequestCtx, rid string) reply {
	if !isJSON(string(c.Request.Header.ContentType())) {
		return notJSON
	}
	body := c.PostBody()
	acts, rep, ok := s.decodeActions(rid, body)
	nbody := len(body)
	// The body is let go now, not after the commit, and not to fasthttp's
	// pool either: fasthttp sizes a body buffer to the next power of two,
	// so 64 callers of 100 actions (17.6 KB) kept 2 MiB of 32 KiB buffers
	// live in the pool, and under load the Go heap sits at its limit,
	// where each MB of live heap is a MB less room between collections.
	// A fresh buffer per request is cheaper than that.
	c.Request.SwapBody(nil)
	c.Request.ResetBody()
	if !ok {
		return rep
	}
	// Not c: fasthttp's context ends when the server shuts down, and a
	// request in flight is finished, not dropped, then. The commit it
	// waits for is bounded by the spool.
	rep, _ = s.storeActions(context.Background(), rid, acts, nbody)
	return rep
}

// fastDecision is postDecision. The parsed request may point into the
// body, and fasthttp reuses its buffer, so it is copied.
func (s *Server) fastDecision(c *fasthttp.RequestCtx, rid string) reply {
	if s.cfg.Decider == nil {
		return noDecider
	}
	if !isJSON(string(c.Request.Header.ContentType())) {
		return notJSON
	}
	body := append([]byte(nil), c.PostBody()...)
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
	return redact.Digits(b.String())
}
