// Package localapi is the agent's HTTP API for apps on the same host:
// intake of user actions (POST /v1/actions); decisions (POST /v1/decisions,
// and their records at GET /v1/decisions/{id}); health (/healthz, /readyz);
// status (/v1/status, and the page at /); the dead letters
// (/v1/deadletters, POST /v1/deadletters/replay); /metrics; Go's profiler
// under /debug/pprof/ when AGENT_PPROF is on; and the description of all
// of them, openapi.json, served at GET /openapi.json. TestRoutesAreDescribed
// holds the server's routes to openapi.json and this list to it.
//
// It defends itself like a local daemon should: it refuses browser requests
// (an Origin header) and unexpected Host values (DNS rebinding), caps body
// size and concurrent requests, and, when tokens are configured, requires
// them: the app token on everything but /healthz, the admin token on the
// routes that show or move other callers' records (see authorize).
package localapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/valyala/fasthttp"
)

// Store is what the API needs of the spool.
type Store interface {
	Append(ctx context.Context, recs []spool.Record) (spool.AppendResult, error)
	Stats() map[string]spool.QueueStats
	StoreBytes() int64
	Probe(ctx context.Context) error
	Quarantine() *spool.QuarantineInfo
	Damage() []spool.DamageReport
	Intake() spool.Intake
	DeadLetters(queue string, after uint64, limit int) ([]spool.Entry, error)
	Replay(ctx context.Context, queue string, ids []string, all bool) (int, error)
}

// UpstreamStatus is one upstream's delivery state as /v1/status shows it.
// Queued and DeadLetters are filled in from the spool.
type UpstreamStatus struct {
	State          string     `json:"state"`
	PausedUntil    *time.Time `json:"paused_until"`
	Reason         string     `json:"reason"`
	Queued         int64      `json:"queued"`
	InFlight       int        `json:"in_flight"`
	DeliveredTotal int64      `json:"delivered_total"`
	FailedTotal    int64      `json:"failed_total"`
	DeadLetters    int64      `json:"dead_letters"`
	LastSuccessAt  *time.Time `json:"last_success_at"`
	LastError      string     `json:"last_error"`
}

// Config configures the API.
type Config struct {
	Store  Store
	Logger *slog.Logger
	Clock  func() time.Time
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxConcurrent caps requests served at once; beyond it the API answers
	// 503 at once rather than queueing without bound (default
	// DefaultMaxConcurrent).
	MaxConcurrent int
	// MaxConnections caps the connections open at once, over all
	// listeners; one past it is answered 503 and closed (default
	// DefaultMaxConnections).
	MaxConnections int
	// BodyBytesInFlight caps the bytes of request bodies held at once by
	// the whole process; a body that does not fit is answered 503 with
	// Retry-After (default DefaultBodyBytesInFlight, at least MaxBodyBytes).
	BodyBytesInFlight int64
	// HeaderTimeout is how long a caller has to send a request's line and
	// headers, from its first byte (from the connection's opening for its
	// first request); BodyTimeout how long more for the body. Past either
	// the request is answered 408 and the connection closed (defaults
	// DefaultHeaderTimeout, DefaultBodyTimeout).
	HeaderTimeout, BodyTimeout time.Duration
	// AuthToken, when set, is required as "Authorization: Bearer <token>"
	// on every endpoint but /healthz and the admin routes.
	AuthToken string
	// AdminToken, when set, is required on the admin routes (dead letters,
	// decision records, pprof) and accepted on every other; the app token
	// never opens an admin route. See authorize.
	AdminToken string
	// AllowedHosts are extra Host header values accepted besides loopback
	// names (for a non-loopback listen address).
	AllowedHosts []string
	// Decider answers /v1/decisions; nil disables them.
	Decider Decider
	// DefaultChannel fills a decision request's absent TongDun channel.
	DefaultChannel string
	// NoTongDun says TongDun is not configured: a decision request may
	// then leave out its channel (decision.ParseOptions.NoTongDun).
	NoTongDun bool
	// TongDunAPIVersion is the TD API decision requests are validated for
	// (v2 when empty; v3 also takes lookup and an account object).
	TongDunAPIVersion tongdun.APIVersion
	// Actions are the intake rules of POST /v1/actions that depend on the
	// deployment: the Tencent data source type (WEB requires url).
	Actions action.Options
	// Policy reports the policy in force (version, hash, reloads, last
	// refusal).
	Policy func() any
	// Upstreams reports the forwarder's view of each upstream.
	Upstreams func() map[string]UpstreamStatus
	// Observer, when set, counts requests and outcomes (the metrics).
	Observer Observer
	// Pprof serves Go's profiler under /debug/pprof/ (off by default).
	Pprof bool
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// Notes are start-up facts shown in /v1/status (e.g. "no upstream
	// configured: queueing only").
	Notes []string
	// Version of the agent, shown in /v1/status and on the status page.
	Version string
	// History counts outcomes minute by minute for the status page's
	// charts; the wiring also feeds it deliveries. New makes one if nil.
	History *History
	// Kafka, when set, reports fleet mode's Kafka side (fleet.ProducerStatus).
	Kafka func() any
	// FleetVelocity, when set, reports the fleet's velocity view
	// (fleet.VelocityStatus).
	FleetVelocity func() any
}

// Observer sees each request (route pattern, status, duration) and the
// outcome of actions and decisions.
type Observer interface {
	Request(route string, code int, d time.Duration)
	Actions(outcome string, n int)
	Decision(result string, degraded bool)
}

type nopObserver struct{}

func (nopObserver) Request(string, int, time.Duration) {}
func (nopObserver) Actions(string, int)                {}
func (nopObserver) Decision(string, bool)              {}

// statusWriter remembers the status code for the observer. It also holds
// the X-Request-Id header's value slice (see requestID), saving an
// allocation per request; a statusWriter is never reused, so the header
// map may keep pointing into it.
type statusWriter struct {
	http.ResponseWriter
	code int
	rid  [1]string
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Server is the local API. Serve listens with it; it is also an
// http.Handler, which serves every endpoint the same way.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	mux   *http.ServeMux
	sem   chan struct{}
	hist  *History
	hosts map[string]bool
	hs    *fasthttp.Server
	slow  fasthttp.RequestHandler // the mux (route) by fasthttp's adaptor

	budget   budget       // BodyBytesInFlight
	conns    atomic.Int64 // connections open, under MaxConnections
	tooLarge reply        // the 413 answer
}

// Defaults of the limits the agent's configuration also has (AGENT_MAX_*,
// AGENT_HEADER_TIMEOUT, AGENT_BODY_TIMEOUT): one definition each, which
// cmd/agent's TestDefaultsHaveOneValue holds config's to.
const (
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxConcurrent     = 256
	DefaultMaxConnections    = 512
	DefaultBodyBytesInFlight = 16 << 20
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultBodyTimeout       = 10 * time.Second
)

// New returns a ready Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.BodyBytesInFlight <= 0 {
		cfg.BodyBytesInFlight = DefaultBodyBytesInFlight
	}
	cfg.BodyBytesInFlight = max(cfg.BodyBytesInFlight, cfg.MaxBodyBytes)
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.History == nil {
		cfg.History = NewHistory(cfg.Clock)
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "localapi"),
		now:    cfg.Clock,
		mux:    http.NewServeMux(),
		sem:    make(chan struct{}, cfg.MaxConcurrent),
		hosts:  map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true},
		budget: budget{max: cfg.BodyBytesInFlight},
		hist:   cfg.History,
		tooLarge: errorReply(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("body exceeds %d bytes", cfg.MaxBodyBytes), nil),
	}
	for _, h := range cfg.AllowedHosts {
		s.hosts[strings.ToLower(h)] = true
	}
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Pprof {
		s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /v1/status", s.status)
	// The two hot routes have one implementation, on fasthttp (Serve,
	// httpserver.go); the mux only knows them, so that a wrong method on
	// their paths gets its 405 and Allow like any other.
	s.mux.HandleFunc("POST /v1/actions", servedNatively)
	s.mux.HandleFunc("POST /v1/decisions", servedNatively)
	s.mux.HandleFunc("GET /v1/decisions/{id}", s.getDecision)
	s.mux.HandleFunc("GET /v1/deadletters", s.listDeadLetters)
	s.mux.HandleFunc("POST /v1/deadletters/replay", s.replayDeadLetters)
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("GET /openapi.json", s.openapi)
	s.hs = s.newHTTPServer()
	return s
}

// ServeHTTP applies the API's defences, then routes: every route but the
// two hot ones, which Serve answers natively (httpserver.go) before a
// request reaches here. The body budget holds here too, a body taking its
// Content-Length of it (or MaxBodyBytes when the length is not known)
// before a handler reads it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rep, ok := s.admit(header(r.Header, "Origin"), header(r.Header, "Sec-Fetch-Site"), r.Host,
		header(r.Header, "Authorization"), r.URL.Path); !ok {
		writeReply(w, rep)
		return
	}
	defer s.leave()
	if n := r.ContentLength; n != 0 && r.Body != nil && r.Body != http.NoBody {
		if n < 0 || n > s.cfg.MaxBodyBytes {
			n = s.cfg.MaxBodyBytes
		}
		if !s.budget.take(n) {
			s.cfg.Observer.Request("overloaded", http.StatusServiceUnavailable, 0)
			writeReply(w, overloadedBody)
			return
		}
		defer s.budget.give(n)
	}
	s.route(w, r)
}

// route serves an admitted request with the mux, and answers what no
// route takes in the API's JSON shape: 405 with Allow when the path is
// known but the method is not (the mux's own answer, whose Allow header
// it computes from the patterns), 404 otherwise.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(sw, r)
	} else {
		s.noRoute(sw, r)
	}
	route := r.Pattern // set by the mux: a bounded label, never a raw path
	if route == "" {
		route = "other"
	}
	s.cfg.Observer.Request(route, sw.code, time.Since(start))
}

// noRoute asks the mux why it has no route (its answer is plain text) and
// gives that answer as JSON.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	probe := &probeWriter{h: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		allow := probe.h.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+allow, nil)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
}

// probeWriter keeps the status and headers a handler writes, and drops its
// body.
type probeWriter struct {
	h    http.Header
	code int
}

func (p *probeWriter) Header() http.Header { return p.h }
func (p *probeWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// guard is the API's defences, whichever server carries the request: no
// browser requests, no Host but a loopback name, an IP or an allowed host
// (DNS rebinding), and the tokens (authorize). It reads headers only.
func (s *Server) guard(origin, fetchSite, host, authz, path string) (reply, bool) {
	if origin != "" || fetchSite == "cross-site" {
		return errorReply(http.StatusForbidden, "forbidden", "browser requests are not accepted", nil), true
	}
	host = strings.ToLower(hostName(host))
	// The clone keeps host from escaping (ParseIP's result may point into
	// its argument), so the caller's conversion to a string can stay on
	// the stack; it is paid only for a host that is not a loopback name.
	if !s.hosts[host] && net.ParseIP(strings.Clone(host)) == nil {
		// A name we don't know is how DNS rebinding reaches a local API.
		return errorReply(http.StatusForbidden, "forbidden", "unexpected Host header", nil), true
	}
	return s.authorize(authz, path)
}

// hostName is a Host header's host, without port or IPv6 brackets. It is
// net.SplitHostPort's answer where that has one, but keeps its argument on
// the stack (SplitHostPort's errors hold it): guard runs twice a request,
// on the headers and in the handler.
func hostName(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return strings.Trim(host, "[]")
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}

// Answers of authorize.
var (
	unauthorized  = errorReply(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token", nil)
	adminRequired = errorReply(http.StatusForbidden, "admin_required",
		"this endpoint needs the admin token (AGENT_ADMIN_TOKEN), not the app token", nil)
	adminUnset = errorReply(http.StatusForbidden, "admin_required",
		"this endpoint needs the admin token, and AGENT_ADMIN_TOKEN is not set: admin endpoints are off", nil)
)

// authorize checks the bearer token against the route. The app token
// (AuthToken) is what apps hold; the admin token (AdminToken) is what
// operators hold, and it alone opens the admin routes (isAdminPath), which
// show and move other callers' records. The admin token is accepted
// wherever the app token is.
//
//   - No token set: every route is open (the API listens on loopback only;
//     config refuses another address without AGENT_AUTH_TOKEN).
//   - App token only: app routes need it; admin routes are closed (403),
//     so that the credential given to apps cannot read records.
//   - Admin token only: app routes are open as with no token; admin routes
//     need the admin token.
//   - Both: app routes need either; admin routes the admin token.
//
// /healthz and /openapi.json need nothing. A missing or unknown token is 401; the app token
// on an admin route is 403 admin_required.
func (s *Server) authorize(authz, path string) (reply, bool) {
	app, admin := s.cfg.AuthToken, s.cfg.AdminToken
	if (app == "" && admin == "") || path == "/healthz" || path == "/openapi.json" {
		return reply{}, false
	}
	got, bearer := strings.CutPrefix(authz, "Bearer ")
	isAdmin := bearer && admin != "" && subtle.ConstantTimeCompare([]byte(got), []byte(admin)) == 1
	isApp := bearer && app != "" && subtle.ConstantTimeCompare([]byte(got), []byte(app)) == 1
	switch {
	case isAdmin:
		return reply{}, false
	case !isAdminPath(path):
		if app == "" || isApp {
			return reply{}, false
		}
		return unauthorized, true
	case isApp && admin == "":
		return adminUnset, true
	case isApp:
		return adminRequired, true
	}
	return unauthorized, true
}

// isAdminPath reports whether a request path is an admin route: dead
// letters (listing and replay), stored decision records, and the
// profiler. They show or move records of every caller of the agent, not
// only the app asking.
func isAdminPath(p string) bool {
	// Clean allocates only for a path that is not clean already; the mux
	// would redirect such a path, but its class must not depend on that.
	p = path.Clean(p)
	return p == "/v1/deadletters" || strings.HasPrefix(p, "/v1/deadletters/") ||
		strings.HasPrefix(p, "/v1/decisions/") || p == "/debug" || strings.HasPrefix(p, "/debug/")
}

// admit is what every request passes, whichever server carries it: the
// defences (guard), then one of MaxConcurrent places, which the caller
// gives back with leave. When it refuses, the reply says why.
func (s *Server) admit(origin, fetchSite, host, authz, path string) (reply, bool) {
	if rep, refused := s.guard(origin, fetchSite, host, authz, path); refused {
		return rep, false
	}
	if !s.enter() {
		s.cfg.Observer.Request("overloaded", http.StatusServiceUnavailable, 0)
		return overloaded, false
	}
	return reply{}, true
}

// overloaded is the answer past MaxConcurrent requests at once.
var overloaded = func() reply {
	r := errorReply(http.StatusServiceUnavailable, "overloaded", "too many concurrent requests", nil)
	r.retryAfter = "1"
	return r
}()

// enter takes one of MaxConcurrent places, or reports that none is free:
// the API answers 503 at once rather than queueing without bound.
func (s *Server) enter() bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) leave() { <-s.sem }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type readiness struct {
	Status     string                `json:"status"`
	Reason     string                `json:"reason,omitempty"`
	Error      string                `json:"error,omitempty"`
	Quarantine *spool.QuarantineInfo `json:"quarantine,omitempty"`
	Warnings   []string              `json:"warnings,omitempty"`
}

// readyz proves the store is open and writable with a small synced write,
// and that intake takes new work: while it refuses (the disk below its
// minimum, the spool full) readyz answers 503 with the reason, so an
// orchestrator stops routing work here; queued items are still delivered.
// A quarantined store still serves (it is empty and writable), so readyz
// stays 200 but says so loudly: an operator must look.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rd := readiness{Status: "ready", Quarantine: s.cfg.Store.Quarantine()}
	if rd.Quarantine != nil {
		rd.Warnings = append(rd.Warnings, "store was quarantined at start-up: "+rd.Quarantine.Path)
	}
	if d := s.cfg.Store.Damage(); len(d) > 0 {
		rd.Warnings = append(rd.Warnings, fmt.Sprintf("damage found in the store (%d reports, see /v1/status); the latest: %s", len(d), d[len(d)-1].Message))
	}
	if err := s.cfg.Store.Probe(ctx); err != nil {
		rd.Status, rd.Reason, rd.Error = "not_ready", "store_unavailable", "store is not writable: "+err.Error()
		writeJSON(w, http.StatusServiceUnavailable, rd)
		return
	}
	if in := s.cfg.Store.Intake(); in.Refusing {
		rd.Status, rd.Reason, rd.Error = "not_ready", in.Reason, intakeMessage(in)
		writeJSON(w, http.StatusServiceUnavailable, rd)
		return
	}
	writeJSON(w, http.StatusOK, rd)
}

type queueStatus struct {
	Depth            int64   `json:"depth"`
	Bytes            int64   `json:"bytes"`
	InFlight         int     `json:"in_flight"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DeadLetters      int64   `json:"dead_letters"`
}

type storeStatus struct {
	Bytes       int64                 `json:"bytes"`
	QueuedBytes int64                 `json:"queued_bytes"`
	Quarantine  *spool.QuarantineInfo `json:"quarantine,omitempty"`
	// Damage: what was found unreadable in the store's files, and what
	// it cost (spool.DamageReport), oldest first.
	Damage []spool.DamageReport `json:"damage,omitempty"`
	Intake intakeStatus         `json:"intake"`
}

type status struct {
	Version string `json:"version,omitempty"`
	// Actions since the agent started; LastHour minute by minute (the
	// status page's charts).
	Actions   ActionTotals              `json:"actions"`
	LastHour  LastHour                  `json:"last_hour"`
	Queues    map[string]queueStatus    `json:"queues"`
	Upstreams map[string]UpstreamStatus `json:"upstreams,omitempty"`
	Policy    any                       `json:"policy,omitempty"`
	Decisions map[string]int64          `json:"decisions_last_hour"`
	Store     storeStatus               `json:"store"`
	Notes     []string                  `json:"notes,omitempty"`
	Kafka     any                       `json:"kafka,omitempty"`
	// FleetVelocity: the fleet's velocity view; its state is stale while
	// decisions go on with the local view.
	FleetVelocity any `json:"fleet_velocity,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := status{Version: s.cfg.Version, Queues: map[string]queueStatus{}, Notes: s.cfg.Notes}
	st.Actions, st.LastHour, st.Decisions = s.hist.snapshot()
	for name, q := range s.cfg.Store.Stats() {
		st.Queues[name] = queueStatus{Depth: q.Depth, Bytes: q.Bytes, InFlight: q.InFlight, OldestAgeSeconds: q.OldestAgeSeconds, DeadLetters: q.DeadLetters}
		st.Store.QueuedBytes += q.Bytes + q.DeadBytes
	}
	if s.cfg.Upstreams != nil {
		st.Upstreams = s.cfg.Upstreams()
		for name, u := range st.Upstreams {
			q := st.Queues[name]
			u.Queued, u.DeadLetters = q.Depth, q.DeadLetters
			u.Reason, u.LastError = redact.Text(u.Reason), redact.Text(u.LastError) // upstreams' words
			st.Upstreams[name] = u
		}
	}
	if s.cfg.Policy != nil {
		st.Policy = s.cfg.Policy()
	}
	if s.cfg.Kafka != nil {
		st.Kafka = s.cfg.Kafka()
	}
	if s.cfg.FleetVelocity != nil {
		st.FleetVelocity = s.cfg.FleetVelocity()
	}
	st.Store.Bytes = s.cfg.Store.StoreBytes()
	st.Store.Quarantine = s.cfg.Store.Quarantine()
	st.Store.Damage = s.cfg.Store.Damage()
	st.Store.Intake = newIntakeStatus(s.cfg.Store.Intake())
	writeJSON(w, http.StatusOK, st)
}

// ErrorBody is the shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail: a machine-readable code, a human message, and per-field
// problems where the request was invalid.
type ErrorDetail struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Details []Field `json:"details,omitempty"`
}

// Field is one problem with one field of the request.
type Field struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// reply is an answer as both servers write it: a status, a JSON body and,
// on some 503s, a Retry-After.
type reply struct {
	status     int
	retryAfter string
	body       []byte
}

func errorReply(status int, code, msg string, details []Field) reply {
	return jsonReply(status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg, Details: details}})
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"cannot encode answer"}}`)
	}
	return reply{status: status, body: append(b, '\n')}
}

func writeError(w http.ResponseWriter, status int, code, msg string, details []Field) {
	writeReply(w, errorReply(status, code, msg, details))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeReply(w, jsonReply(status, v))
}

func writeReply(w http.ResponseWriter, rep reply) {
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After", rep.retryAfter)
	}
	writeRaw(w, rep.status, rep.body)
}

var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
)

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	w.WriteHeader(status)
	w.Write(b)
}

// header is h.Get(key) for a key already in canonical form, without
// canonicalising it again on every request.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// requestID returns the caller's X-Request-Id when it is short and plain,
// else a new one (a random per-process prefix and a counter: unique, and
// far cheaper than crypto/rand per request); it is echoed back and put in
// every log line about the request.
func requestID(w http.ResponseWriter, r *http.Request) string {
	id := newRequestID(header(r.Header, "X-Request-Id"))
	if sw, ok := w.(*statusWriter); ok {
		sw.rid[0] = id
		w.Header()["X-Request-Id"] = sw.rid[:]
	} else {
		w.Header()["X-Request-Id"] = []string{id}
	}
	return id
}

// newRequestID is the caller's id when it is short and plain, else a new
// one.
func newRequestID(given string) string {
	if len(given) > 0 && len(given) <= 64 && plainID(given) {
		return given
	}
	var arr [32]byte
	b := append(arr[:0], idPrefix...)
	b = strconv.AppendUint(b, idCounter.Add(1), 36)
	return string(b)
}

// plainID reports whether id is all printable ASCII without spaces. A byte
// test is the same as a rune test here: every byte of a multi-byte UTF-8
// sequence (or of invalid UTF-8) is >= 0x80, so outside '!'..'~' either way.
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

var (
	idPrefix  = func() string { var b [4]byte; rand.Read(b[:]); return hex.EncodeToString(b[:]) + "-" }()
	idCounter atomic.Uint64
)

// servedNatively answers a hot route that reached the mux: it cannot, when
// the API is served with Serve.
func servedNatively(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusInternalServerError, "internal", r.Method+" "+r.URL.Path+" is served by Serve, not through ServeHTTP", nil)
}
