// Package decision answers fraud questions locally: accept, review or
// decline, with reasons, from the policy, cached upstream scores, live
// calls within a fixed budget, velocity counters and lists. When an
// upstream is unhealthy or too slow it decides degraded, by the policy's
// offline rules, and queues the check for the forwarder; the upstream's
// late verdict is attached to the stored decision when it arrives.
//
// The loop with package forwarder, which neither package imports (each
// declares what it needs of the other; cmd/agent wires them):
//
//	Engine.Decide --(check queued on tongdun/unionpay, in the decision's commit)--> spool
//	spool --> forwarder.Worker --> upstream
//	forwarder.Worker --(forwarder.ResultSink: Engine.Delivered)--> late verdict + score cache
//	Engine --(Health: forwarder.Worker.Healthy)--> call live, or decide degraded and queue
//
// Written by hand where it earns it (BENCHMARKS.md, session 12): a request
// is parsed in one pass (parseFast: 1.45 µs and 9 allocations for
// cmd/loadgen's body against encoding/json's 5.4 µs and 31; 5.7 against
// 12.5 µs with a card block) and its masked copy for the record written in
// one (appendMasked: 1.0 against 4.7 µs for json.Marshal then redact.JSON),
// about a quarter of a cached decision's 14 µs of CPU; each falls back to
// encoding/json for what it does not expect, and tests compare the two.
// The score cache in front of the store is golang-lru's (cache.go).
//
// What the engine keeps it keeps through Store (store.go), an interface
// in its own terms: Commit writes what one decision records (its record,
// its velocity events, the scores its live calls brought, the checks and
// fleet increments it queues) in one atomic, durable commit, or a late
// verdict or a refreshed score; Decision, LateVerdicts, VelocityEvents
// and Score read them back. The agent's Store is SpoolStore
// (spoolstore.go), on the spool: it alone knows the keys, dec/, late/,
// vel/ and sc/, that data directories hold. MemStore (memstore.go) keeps
// the same contract in memory; TestStoreContract runs one suite against
// both.
package decision

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/redact"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/unionpay"
)

// TongDun is the live risk verification call.
type TongDun interface {
	Verify(ctx context.Context, req *tongdun.Request) (*tongdun.Response, upstream.Verdict)
}

// UnionPay is the two live FireEye calls.
type UnionPay interface {
	ModelScore(ctx context.Context, q unionpay.ScoreQuery) (int, upstream.Verdict)
	TransactionAuth(ctx context.Context, q unionpay.TransactionQuery) (bool, upstream.Verdict)
}

// Health says whether an upstream is worth calling live right now (the
// forwarder's view: configured, not paused, circuit closed).
type Health interface{ Healthy() bool }

// Fleet is the fleet's side of the velocity counters declared fleet: true
// (fleet mode on Kafka; fleet.Velocity). Every method answers from memory:
// a decision never waits on Kafka.
type Fleet interface {
	// Subject is the fleet-wide keyed hash of a counter's subject (kind
	// is the counter's key: account, phone...; value its raw value).
	Subject(kind, value string) string
	// Others counts the other agents' increments of the counter (name,
	// window) for subject in the window ending at now.
	Others(name string, window time.Duration, subject string, now time.Time) int64
	// Increment is the spool record that publishes one counted event of
	// the counter (name, its key kind, window); it is written in the
	// decision's commit.
	Increment(name, kind string, window time.Duration, subject string, at time.Time, decisionID string) spool.Record
	// View says how the fleet view stands: live, stale or none, and its
	// age (unset for none).
	View(now time.Time) (state string, age time.Duration)
	// NotQueued counts increments that could not be queued (a full spool:
	// the decision is still recorded, its increments are not published).
	NotQueued(n int)
}

// Fleet view states (FleetView.State).
const (
	FleetLive  = "live"  // the view is at most AGENT_FLEET_VELOCITY_MAX_AGE old
	FleetStale = "stale" // older: Kafka unreachable or behind
	FleetNone  = "none"  // no view yet (never in step with the broker)
	FleetOff   = "off"   // fleet velocity is off in this agent
)

// FleetView is how the fleet's counts stood for a decision (recorded with
// it). Anything but live means the decision went on with the local view:
// this agent's own events, plus what reached it from the fleet before.
type FleetView struct {
	State      string   `json:"state"`
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
}

// Policies gives the policy in force (it is swapped on reload).
type Policies interface{ Current() *policy.Policy }

// Queue names the checks are queued on.
const (
	QueueTongDun  = upstream.TongDun
	QueueUnionPay = upstream.UnionPay
)

// Config of the engine. TongDun/UnionPay nil means not configured.
type Config struct {
	// Store keeps decision records, late verdicts, velocity events and
	// score-cache entries (SpoolStore in the agent).
	Store    Store
	Policies Policies
	TongDun  TongDun
	UnionPay UnionPay
	// TongDunHealth / UnionPayHealth gate live calls; nil = always healthy
	// when the client is set.
	TongDunHealth, UnionPayHealth Health
	// Timeout is the budget for live calls (AGENT_DECISION_TIMEOUT).
	Timeout time.Duration
	// TongDunCache and UnionPayCache are the score-cache policies.
	TongDunCache, UnionPayCache SourcePolicy
	// HashKey keys the HMAC of card, ID and mobile numbers (cache keys,
	// list and velocity keys). Must be stable across restarts.
	HashKey []byte
	// QueueUnionPay allows queueing UnionPay checks, which hold raw card,
	// ID and mobile numbers: only when the spool is encrypted.
	QueueUnionPay bool
	// Retention of decision records (DefaultRetention when zero).
	Retention time.Duration
	// Fleet shares the counters declared fleet: true; nil: fleet velocity
	// is off and velocity.fleet() is the local count.
	Fleet  Fleet
	Clock  func() time.Time
	Logger *slog.Logger
}

// Engine decides. Safe for concurrent use.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	mem  *memCache
	vel  *velocity
	bg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc
	mu   sync.Mutex
	inbg map[string]bool // background refreshes in flight

	hashers sync.Pool // of *hasher
	defs    atomic.Pointer[policyDefs]
}

// Defaults of Config's zero fields: the agent's configuration documents
// the same values (AGENT_DECISION_TIMEOUT, AGENT_DECISION_RETENTION,
// AGENT_TONGDUN_CACHE_*, AGENT_UNIONPAY_CACHE_*, AGENT_CACHE_NEGATIVE_TTL)
// and cmd/agent's TestDefaultsHaveOneValue holds the two equal.
const (
	DefaultTimeout     = 300 * time.Millisecond
	DefaultRetention   = 90 * 24 * time.Hour
	DefaultNegativeTTL = 30 * time.Second
)

// DefaultTongDunCache and DefaultUnionPayCache are the score cache's
// policies for zero fields.
var (
	DefaultTongDunCache  = SourcePolicy{TTL: 10 * time.Minute, MaxStale: time.Hour, NegativeTTL: DefaultNegativeTTL}
	DefaultUnionPayCache = SourcePolicy{TTL: 24 * time.Hour, MaxStale: 7 * 24 * time.Hour, NegativeTTL: DefaultNegativeTTL}
)

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(p *SourcePolicy, d SourcePolicy) {
		if p.TTL <= 0 {
			p.TTL = d.TTL
		}
		if p.MaxStale < p.TTL {
			p.MaxStale = max(d.MaxStale, p.TTL)
		}
		if p.NegativeTTL <= 0 {
			p.NegativeTTL = d.NegativeTTL
		}
	}
	def(&cfg.TongDunCache, DefaultTongDunCache)
	def(&cfg.UnionPayCache, DefaultUnionPayCache)
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{cfg: cfg, log: cfg.Logger.With("component", "decision"), now: cfg.Clock,
		mem: newMemCache(100_000), vel: newVelocity(100_000), ctx: ctx, stop: cancel, inbg: map[string]bool{}}
}

// Close waits for background refreshes.
func (e *Engine) Close() {
	e.stop()
	e.bg.Wait()
}

// SignalView is one signal as the answer shows it.
type SignalView struct {
	Status     string          `json:"status"`
	Source     string          `json:"source"` // live | cache | none
	Score      *int            `json:"score,omitempty"`
	Result     string          `json:"result,omitempty"`
	Match      *bool           `json:"match,omitempty"`
	AgeSeconds float64         `json:"age_seconds"`
	Reasons    []policy.Reason `json:"reasons,omitempty"`
	Queued     bool            `json:"queued,omitempty"`
	Note       string          `json:"note,omitempty"`
}

// Result is the answer of POST /v1/decisions and the stored record.
type Result struct {
	DecisionID    string                `json:"decision_id"`
	Result        string                `json:"result"`
	Score         float64               `json:"score"`
	Reasons       []policy.Reason       `json:"reasons"`
	PolicyVersion string                `json:"policy_version"`
	PolicySHA256  string                `json:"policy_sha256"`
	Degraded      bool                  `json:"degraded"`
	Signals       map[string]SignalView `json:"signals"`
	// Recorded only (not in the answer):
	DecidedAt time.Time        `json:"decided_at"`
	Fired     []policy.Fired   `json:"fired,omitempty"`
	Shadow    []policy.Fired   `json:"shadow,omitempty"`
	Errors    []policy.Fired   `json:"rule_errors,omitempty"`
	Velocity  map[string]int64 `json:"velocity,omitempty"`
	// FleetVelocity and Fleet: the counters shared with the fleet and how
	// the fleet view stood (only when the policy has such counters).
	FleetVelocity map[string]int64 `json:"fleet_velocity,omitempty"`
	Fleet         *FleetView       `json:"fleet,omitempty"`
	Input         json.RawMessage  `json:"input,omitempty"`
	Late          map[string]Late  `json:"late_verdicts,omitempty"`
}

// Late is an upstream's verdict delivered after the decision (its check
// had been queued).
type Late struct {
	At     time.Time       `json:"at"`
	Answer json.RawMessage `json:"answer"`
}

const (
	sigTD    = "tongdun"
	sigModel = "unionpay_model"
	sigTxn   = "unionpay_transaction"
)

// Decide answers one request. Errors are store failures only: upstream
// trouble makes a degraded decision, not an error.
func (e *Engine) Decide(ctx context.Context, req *Request) (*Result, error) {
	if req.Transaction != nil && req.Card == nil {
		// ParseRequest refuses this; a direct caller must not crash the
		// agent (the live call would dereference the missing card).
		return nil, &InvalidError{[]Problem{{Field: "transaction", Reason: "needs card.card_no (UnionPay authenticates a card transaction)"}}}
	}
	now := e.now()
	if req.ID != "" {
		if r, ok, err := e.Get(req.ID); err != nil {
			return nil, err
		} else if ok {
			return r, nil // the same id returns the same decision
		}
	}
	id := req.ID
	if id == "" {
		id = newID(now)
	}
	pol := e.cfg.Policies.Current()
	st := &decideState{views: map[string]SignalView{}}
	in := &st.in
	*in = policy.Input{
		Event: req.DecisionEvent, AccountID: req.AccountID, Now: now,
		Velocity: map[string]int64{},
	}
	if req.Terminal != nil {
		in.Device, in.IP = req.Terminal.BlackBox, req.Terminal.IP
	}
	if req.Amount != nil {
		in.Amount = *req.Amount
	}
	if req.Card != nil {
		in.CardHash = e.hash("card", req.Card.CardNo)
	}
	if c := req.Credit; c != nil {
		st.credit = policy.Credit{Mode: c.Mode, Line: c.Line, Outstanding: c.Outstanding, OverdueDays: c.OverdueDays, APR: c.APR}
		in.Credit = &st.credit
		if c.ValidUntil != "" {
			// The line is valid through the end of that day, in the
			// request's own offset.
			d, _ := time.Parse(time.DateOnly, c.ValidUntil)
			in.Credit.ValidUntil = d.Add(24*time.Hour - time.Nanosecond)
		}
	}
	if t := req.Transaction; t != nil {
		in.Transaction = &policy.Transaction{Amount: t.Amount, Date: t.Date}
	}

	views := st.views
	var recs []spool.Record

	// Signals: cache first; what the cache cannot answer is asked live, in
	// parallel, within the budget. A decision served from the cache starts
	// no goroutine and no timer.
	var calls []func(context.Context)
	if f := e.tongdunSignal(now, req, st); f != nil {
		calls = append(calls, f)
	}
	if req.Card != nil {
		if f := e.modelSignal(now, req, st); f != nil {
			calls = append(calls, f)
		}
	}
	if req.Transaction != nil {
		if f := e.txnSignal(req, st); f != nil {
			calls = append(calls, f)
		}
	}
	if len(calls) > 0 {
		lctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
		var wg sync.WaitGroup
		for _, f := range calls[1:] {
			wg.Go(func() { f(lctx) })
		}
		calls[0](lctx)
		wg.Wait()
		cancel()
	}

	// Checks that could not be had live are queued for the forwarder.
	for name, v := range views {
		if v.Status != "missing" && v.Status != "error" {
			continue
		}
		in.Degraded = true
		rec, note := e.queueCheck(name, id, req)
		if rec != nil {
			recs = append(recs, *rec)
			v.Queued = true
		}
		if note != "" {
			v.Note = note
		}
		views[name] = v
	}

	// Velocity: count this event in each of the policy's windows.
	var fleetView *FleetView
	increments := 0
	for _, vd := range e.velocityDefs(pol) {
		if len(vd.Events) > 0 && !contains(vd.Events, req.DecisionEvent) {
			continue
		}
		subject := e.velocitySubject(vd.Key, in, req)
		if subject == "" {
			continue
		}
		n, err := e.vel.add(vd.Name+"/"+subject, now, vd.Window, func() ([]int64, error) {
			return e.cfg.Store.VelocityEvents(vd.Name, subject, now.Add(-vd.Window))
		})
		if err != nil {
			return nil, err
		}
		// The policy's counters count earlier events in the window, not
		// this one ("the 6th withdrawal this hour" sees 5).
		in.Velocity[vd.Name] = n - 1
		st.commit.Velocity = append(st.commit.Velocity, VelocityEvent{Counter: vd.Name, Subject: subject, At: now, DecisionID: id, TTL: vd.Window + time.Minute})
		if !vd.Fleet {
			continue
		}
		// The fleet's count: this agent's own (just counted, exact) plus
		// the other agents' increments merged so far; this event is
		// published in the same commit as its local count.
		if fleetView == nil {
			fleetView = e.fleetView(now, in)
		}
		fleetN := n - 1
		if f := e.cfg.Fleet; f != nil {
			if v := fleetValue(vd.Key, in, req); v != "" {
				fs := f.Subject(vd.Key, v)
				fleetN += f.Others(vd.Name, vd.Window, fs, now)
				recs = append(recs, f.Increment(vd.Name, vd.Key, vd.Window, fs, now, id))
				increments++
			}
		}
		in.FleetVelocity[vd.Name] = fleetN
	}

	d := pol.Decide(in)
	res := &Result{
		DecisionID: id, Result: d.Result, Score: d.Score, Reasons: d.Reasons,
		PolicyVersion: d.PolicyVersion, PolicySHA256: d.PolicySHA256, Degraded: in.Degraded,
		Signals: views, DecidedAt: now, Fired: d.Fired, Shadow: d.Shadow, Errors: d.Errors, Velocity: in.Velocity,
		FleetVelocity: in.FleetVelocity, Fleet: fleetView, Input: maskedInput(req),
	}
	if res.Reasons == nil {
		res.Reasons = []policy.Reason{}
	}
	c := &st.commit
	rb := recordBufs.Get().(*recordBuf)
	defer rb.release()
	c.Record = DecisionRecord{ID: id, Record: rb.encode(res), TTL: e.cfg.Retention}
	c.Queue = recs
	err := e.cfg.Store.Commit(ctx, c)
	if errors.Is(err, spool.ErrFull) && len(recs) > 0 {
		// The spool is full: still record and answer the decision; the
		// checks and the fleet's increments just cannot be queued.
		if increments > 0 {
			e.cfg.Fleet.NotQueued(increments)
		}
		for name, v := range views {
			if v.Queued {
				v.Queued, v.Note = false, "not queued: the spool is full"
				views[name] = v
			}
		}
		c.Record.Record, c.Queue = rb.encode(res), nil
		err = e.cfg.Store.Commit(ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("record decision: %w", err)
	}
	return res, nil
}

// decideState is what one decision's signals write, from the caller's
// goroutine or the live calls', and the commit that records it (one
// allocation for all of it; 640 bytes, where arrays for the commit's
// velocity events and scores would take it to the 1152-byte size class).
type decideState struct {
	mu     sync.Mutex
	in     policy.Input
	credit policy.Credit
	views  map[string]SignalView
	commit Commit
}

// addScore adds a score-cache entry to the decision's commit.
func (st *decideState) addScore(s ScoreEntry) {
	st.mu.Lock()
	st.commit.Scores = append(st.commit.Scores, s)
	st.mu.Unlock()
}

// set records a signal: its view for the answer, its value for the policy.
func (st *decideState) set(name string, v SignalView, s policy.Signal) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.views[name] = v
	switch name {
	case sigTD:
		st.in.Signals.TongDun = s
	case sigModel:
		st.in.Signals.UnionPayModel = s
	case sigTxn:
		st.in.Signals.UnionPayTransaction = s
	}
}

// policyDefs are the velocity counters of one policy.
type policyDefs struct {
	pol  *policy.Policy
	defs []policy.VelocityDef
}

// velocityDefs is pol.Velocity(), asked once per policy rather than once
// per decision (it copies the list each time). The engine only reads it.
func (e *Engine) velocityDefs(pol *policy.Policy) []policy.VelocityDef {
	if d := e.defs.Load(); d != nil && d.pol == pol {
		return d.defs
	}
	d := &policyDefs{pol: pol, defs: pol.Velocity()}
	e.defs.Store(d)
	return d.defs
}

// Get returns a stored decision with the late verdicts that arrived since.
func (e *Engine) Get(id string) (*Result, bool, error) {
	b, ok, err := e.cfg.Store.Decision(id)
	if err != nil || !ok {
		return nil, false, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, fmt.Errorf("decision %s: %w", id, err)
	}
	err = e.cfg.Store.LateVerdicts(id, func(kind string, v []byte) bool {
		var l Late
		if json.Unmarshal(v, &l) == nil {
			if r.Late == nil {
				r.Late = map[string]Late{}
			}
			r.Late[kind] = l
		}
		return true
	})
	return &r, true, err
}

// Delivered makes the engine the forwarder's ResultSink for the tongdun
// and unionpay queues: it refreshes the score cache and attaches the late
// verdict to the decision that queued the check. Entries not queued by a
// decision (their id has no '#') are ignored.
func (e *Engine) Delivered(queue string, entry spool.Entry, r upstream.Result) {
	decID, kind, ok := strings.Cut(entry.ID, "#")
	if !ok {
		return
	}
	now := e.now()
	cm := &Commit{}
	switch kind {
	case sigTD:
		var req tongdun.Request
		var resp tongdun.Response
		if json.Unmarshal(entry.Payload, &req) == nil && json.Unmarshal(r.Answer, &resp) == nil {
			if k := e.tdKey(&req); k != "" {
				c := cached{At: now, Score: resp.Score, Result: resp.Result, SequenceID: resp.SequenceID}
				for _, rr := range resp.Reasons {
					c.Reasons = append(c.Reasons, reason{rr.ID, rr.Reason})
				}
				e.mem.put(k, c)
				cm.Scores = append(cm.Scores, ScoreEntry{Key: k, Entry: encodeCached(c), TTL: e.cfg.TongDunCache.MaxStale})
			}
		}
	case sigModel:
		var chk unionpay.Check
		var q unionpay.ScoreQuery
		var ans unionpay.Answer
		if json.Unmarshal(entry.Payload, &chk) == nil && json.Unmarshal(chk.Query, &q) == nil &&
			json.Unmarshal(r.Answer, &ans) == nil && ans.Score != nil {
			k := e.modelKey(q.CardNo, q.CertID, q.Mobile)
			c := cached{At: now, Score: *ans.Score}
			e.mem.put(k, c)
			cm.Scores = append(cm.Scores, ScoreEntry{Key: k, Entry: encodeCached(c), TTL: e.cfg.UnionPayCache.MaxStale})
		}
	}
	late, _ := json.Marshal(Late{At: now, Answer: r.Answer})
	cm.Late = []LateVerdict{{DecisionID: decID, Kind: kind, Verdict: late, TTL: e.cfg.Retention}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.cfg.Store.Commit(ctx, cm); err != nil {
		e.log.Error("recording a late verdict failed", "decision_id", decID, "err", err)
	}
}

// hasher is an HMAC keyed with HashKey, with room for its output: the
// engine keeps them in a pool rather than keying one per hash.
type hasher struct {
	mac hash.Hash
	in  []byte
	buf [sha256.Size]byte
	hex [32]byte
}

func (e *Engine) hash(kind, v string) string {
	h, _ := e.hashers.Get().(*hasher)
	if h == nil {
		h = &hasher{mac: hmac.New(sha256.New, e.cfg.HashKey)}
	} else {
		h.mac.Reset()
	}
	h.in = append(append(append(h.in[:0], kind...), 0), v...)
	h.mac.Write(h.in)
	if cap(h.in) > 4096 {
		h.in = nil // do not keep a huge input in the pool
	}
	sum := h.mac.Sum(h.buf[:0])
	hex.Encode(h.hex[:], sum[:16])
	s := string(h.hex[:])
	e.hashers.Put(h)
	return s
}

// tdKey caches TongDun results by account, or by device/IP where there is
// no account, and event type. Subjects are hashed: keys hold no personal
// data.
func (e *Engine) tdKey(r *tongdun.Request) string {
	var subject string
	switch {
	case r.AccountID != "":
		subject = e.hash("account", r.AccountID)
	case r.Terminal != nil && r.Terminal.BlackBox != "":
		subject = e.hash("device", r.Terminal.BlackBox)
	case r.Terminal != nil && r.Terminal.IP != "":
		subject = e.hash("ip", r.Terminal.IP)
	default:
		return ""
	}
	return "td/" + subject + "/" + r.DecisionEvent
}

func (e *Engine) modelKey(card, cert, mobile string) string {
	return "up/" + e.hash("model", card+"\x00"+strings.ToUpper(cert)+"\x00"+mobile)
}

func (e *Engine) velocitySubject(key string, in *policy.Input, req *Request) string {
	var v string
	switch key {
	case "account":
		v = in.AccountID
	case "device":
		v = in.Device
	case "ip":
		v = in.IP
	case "card":
		return in.CardHash
	case "phone":
		v = phone(req)
	}
	if v == "" {
		return ""
	}
	return e.hash(key, v)
}

// fleetView reads how the fleet view stands, once per decision that has a
// counter shared with the fleet, and gives the policy its age.
func (e *Engine) fleetView(now time.Time, in *policy.Input) *FleetView {
	in.FleetVelocity = map[string]int64{}
	in.FleetAgeSeconds = policy.NoFleetView
	if e.cfg.Fleet == nil {
		return &FleetView{State: FleetOff}
	}
	state, age := e.cfg.Fleet.View(now)
	v := &FleetView{State: state}
	if state != FleetNone {
		secs := max(age.Seconds(), 0)
		v.AgeSeconds, in.FleetAgeSeconds = &secs, secs
	}
	return v
}

// fleetValue is the raw value of a counter's subject; the fleet hashes it
// with the fleet's secret (Fleet.Subject), the same on every agent.
func fleetValue(key string, in *policy.Input, req *Request) string {
	switch key {
	case "account":
		return in.AccountID
	case "device":
		return in.Device
	case "ip":
		return in.IP
	case "card":
		if req.Card != nil {
			return req.Card.CardNo
		}
	case "phone":
		return phone(req)
	}
	return ""
}

// phone is the applicant's phone number as "<country code>:<number>":
// card.mobile (a mainland mobile, validated), else TongDun v3's
// event_detail.account.phone (country code 86 when it has none); "" when
// the request has neither.
func phone(req *Request) string {
	if req.Card != nil && req.Card.Mobile != "" {
		return "86:" + req.Card.Mobile
	}
	acct := req.EventDetail[tongdun.DetailAccount]
	ph, _ := acct["phone"].(map[string]any)
	num, _ := ph["phone_number"].(string)
	if num == "" {
		return ""
	}
	cc := "86"
	switch c := ph["country_code"].(type) {
	case float64:
		cc = strconv.FormatFloat(c, 'f', -1, 64)
	case json.Number:
		cc = c.String()
	}
	return cc + ":" + num
}

// lookup reads the score cache: memory, then the store.
func (e *Engine) lookup(k string) (cached, bool) {
	if c, ok := e.mem.get(k); ok {
		return c, true
	}
	if e.mem.isAbsent(k) {
		return cached{}, false
	}
	b, ok, err := e.cfg.Store.Score(k)
	if err != nil {
		return cached{}, false
	}
	if !ok {
		e.mem.notStored(k)
		return cached{}, false
	}
	var c cached
	if json.Unmarshal(b, &c) != nil {
		return cached{}, false
	}
	e.mem.put(k, c)
	return c, true
}

func status(age time.Duration, p SourcePolicy) string {
	switch {
	case age < p.TTL:
		return "fresh"
	case age < p.MaxStale:
		return "stale"
	}
	return "missing"
}

func healthy(h Health) bool { return h == nil || h.Healthy() }

// tongdunSignal sets the TongDun signal from the cache, or as missing when
// TongDun cannot be asked now; otherwise it returns the live call to make.
func (e *Engine) tongdunSignal(now time.Time, req *Request, ds *decideState) (live func(context.Context)) {
	k := e.tdKey(&req.Request)
	if c, ok := e.lookup(k); ok && k != "" {
		age := now.Sub(c.At)
		if st := status(age, e.cfg.TongDunCache); st != "missing" {
			if st == "stale" {
				e.refreshTD(k, req)
			}
			ds.set(sigTD, tdView(c, st, "cache", age), tdSignal(c, st, age))
			return nil
		}
	}
	if e.cfg.TongDun == nil || !healthy(e.cfg.TongDunHealth) || e.mem.negative(k, now) {
		ds.set(sigTD, SignalView{Status: "missing", Source: "none", Note: "TongDun not reachable now"}, policy.Signal{Status: "missing"})
		return nil
	}
	return func(ctx context.Context) {
		resp, v := e.cfg.TongDun.Verify(ctx, &req.Request)
		if v.Outcome != upstream.Delivered || resp == nil {
			if v.Outcome == upstream.Permanent {
				ds.set(sigTD, SignalView{Status: "error", Source: "live", Note: "TongDun refused the request: " + redact.Text(v.Code+" "+v.Message)}, policy.Signal{Status: "error"})
				return
			}
			e.mem.failed(k, now.Add(e.cfg.TongDunCache.NegativeTTL))
			ds.set(sigTD, SignalView{Status: "error", Source: "live", Note: "TongDun: " + v.Code}, policy.Signal{Status: "error"})
			return
		}
		c := cached{At: now, Score: resp.Score, Result: resp.Result, SequenceID: resp.SequenceID}
		for _, r := range resp.Reasons {
			c.Reasons = append(c.Reasons, reason{r.ID, r.Reason})
		}
		if k != "" {
			e.mem.put(k, c)
			ds.addScore(ScoreEntry{Key: k, Entry: encodeCached(c), TTL: e.cfg.TongDunCache.MaxStale})
		}
		ds.set(sigTD, tdView(c, "fresh", "live", 0), tdSignal(c, "fresh", 0))
	}
}

// refreshTD asks TongDun again in the background for a stale entry, once
// per key at a time, with a budget of its own.
func (e *Engine) refreshTD(k string, req *Request) {
	if e.cfg.TongDun == nil || !healthy(e.cfg.TongDunHealth) {
		return
	}
	e.mu.Lock()
	if e.inbg[k] || e.ctx.Err() != nil {
		e.mu.Unlock()
		return
	}
	e.inbg[k] = true
	e.bg.Add(1)
	e.mu.Unlock()
	r := req.Request
	go func() {
		defer e.bg.Done()
		defer func() { e.mu.Lock(); delete(e.inbg, k); e.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		resp, v := e.cfg.TongDun.Verify(ctx, &r)
		if v.Outcome != upstream.Delivered || resp == nil {
			return // keep serving stale until MaxStale
		}
		c := cached{At: e.now(), Score: resp.Score, Result: resp.Result, SequenceID: resp.SequenceID}
		for _, rr := range resp.Reasons {
			c.Reasons = append(c.Reasons, reason{rr.ID, rr.Reason})
		}
		// Stored first, then served from memory: what memory shows has
		// been written (or its write has failed and been logged).
		if err := e.cfg.Store.Commit(ctx, &Commit{Scores: []ScoreEntry{{Key: k, Entry: encodeCached(c), TTL: e.cfg.TongDunCache.MaxStale}}}); err != nil {
			e.log.Warn("storing a refreshed score failed", "err", err)
		}
		e.mem.put(k, c)
	}()
}

func tdView(c cached, st, src string, age time.Duration) SignalView {
	s := c.Score
	v := SignalView{Status: st, Source: src, Score: &s, Result: c.Result, AgeSeconds: age.Seconds()}
	for _, r := range c.Reasons {
		v.Reasons = append(v.Reasons, policy.Reason{ID: r.ID, Reason: r.Reason})
	}
	return v
}

func tdSignal(c cached, st string, age time.Duration) policy.Signal {
	s := policy.Signal{Status: st, Score: c.Score, Result: c.Result, AgeSeconds: age.Seconds()}
	for _, r := range c.Reasons {
		s.Reasons = append(s.Reasons, policy.Reason{ID: r.ID, Reason: r.Reason})
	}
	return s
}

// modelSignal sets UnionPay's model score from the cache, or as missing
// when UnionPay cannot be asked now; otherwise it returns the live call.
func (e *Engine) modelSignal(now time.Time, req *Request, ds *decideState) (live func(context.Context)) {
	k := e.modelKey(req.Card.CardNo, req.Card.CertID, req.Card.Mobile)
	if c, ok := e.lookup(k); ok {
		age := now.Sub(c.At)
		if st := status(age, e.cfg.UnionPayCache); st != "missing" {
			s := c.Score
			ds.set(sigModel, SignalView{Status: st, Source: "cache", Score: &s, AgeSeconds: age.Seconds()},
				policy.Signal{Status: st, Score: s, AgeSeconds: age.Seconds()})
			return nil
		}
	}
	if e.cfg.UnionPay == nil || !healthy(e.cfg.UnionPayHealth) || e.mem.negative(k, now) {
		ds.set(sigModel, SignalView{Status: "missing", Source: "none", Note: "UnionPay not reachable now"}, policy.Signal{Status: "missing"})
		return nil
	}
	return func(ctx context.Context) {
		score, v := e.cfg.UnionPay.ModelScore(ctx, unionpay.ScoreQuery{CardNo: req.Card.CardNo, CertID: req.Card.CertID, Mobile: req.Card.Mobile})
		if v.Outcome != upstream.Delivered {
			e.mem.failed(k, now.Add(e.cfg.UnionPayCache.NegativeTTL))
			ds.set(sigModel, SignalView{Status: "error", Source: "live", Note: "UnionPay: " + v.Code}, policy.Signal{Status: "error"})
			return
		}
		c := cached{At: now, Score: score}
		e.mem.put(k, c)
		ds.addScore(ScoreEntry{Key: k, Entry: encodeCached(c), TTL: e.cfg.UnionPayCache.MaxStale})
		ds.set(sigModel, SignalView{Status: "fresh", Source: "live", Score: &score}, policy.Signal{Status: "fresh", Score: score})
	}
}

// txnSignal returns the call to UnionPay's transaction authentication (an
// answer belongs to one transaction and is never cached), or sets the
// signal as missing when UnionPay cannot be asked now.
func (e *Engine) txnSignal(req *Request, ds *decideState) (live func(context.Context)) {
	if e.cfg.UnionPay == nil || !healthy(e.cfg.UnionPayHealth) {
		ds.set(sigTxn, SignalView{Status: "missing", Source: "none", Note: "UnionPay not reachable now"}, policy.Signal{Status: "missing"})
		return nil
	}
	return func(ctx context.Context) {
		q := unionpay.TransactionQuery{CardNo: req.Card.CardNo, TransDate: req.Transaction.Date, TransAmount: req.Transaction.Amount,
			CertID: req.Card.CertID, Mobile: req.Card.Mobile, TransLocation: req.Transaction.Location}
		match, v := e.cfg.UnionPay.TransactionAuth(ctx, q)
		if v.Outcome != upstream.Delivered {
			ds.set(sigTxn, SignalView{Status: "error", Source: "live", Note: "UnionPay: " + v.Code}, policy.Signal{Status: "error"})
			return
		}
		m := match
		ds.set(sigTxn, SignalView{Status: "fresh", Source: "live", Match: &m}, policy.Signal{Status: "fresh", Match: match})
	}
}

// queueCheck makes the spool record that asks the upstream later. UnionPay
// checks hold raw card, ID and mobile numbers, so they are queued only when
// the spool is encrypted.
func (e *Engine) queueCheck(name, id string, req *Request) (*spool.Record, string) {
	switch name {
	case sigTD:
		if e.cfg.TongDun == nil {
			return nil, "TongDun is not configured: check not queued"
		}
		b, _ := json.Marshal(&req.Request)
		return &spool.Record{Queue: QueueTongDun, ID: id + "#" + sigTD, Payload: b}, ""
	case sigModel, sigTxn:
		if e.cfg.UnionPay == nil {
			return nil, "UnionPay is not configured: check not queued"
		}
		if !e.cfg.QueueUnionPay {
			return nil, "not queued: UnionPay checks carry card and ID numbers and the spool is not encrypted (set AGENT_ENCRYPTION_KEY_FILE)"
		}
		var p json.RawMessage
		var err error
		if name == sigModel {
			p, err = unionpay.ScoreQuery{CardNo: req.Card.CardNo, CertID: req.Card.CertID, Mobile: req.Card.Mobile}.Payload()
		} else {
			p, err = unionpay.TransactionQuery{CardNo: req.Card.CardNo, TransDate: req.Transaction.Date, TransAmount: req.Transaction.Amount,
				CertID: req.Card.CertID, Mobile: req.Card.Mobile, TransLocation: req.Transaction.Location}.Payload()
		}
		if err != nil {
			return nil, "not queued: " + err.Error()
		}
		return &spool.Record{Queue: QueueUnionPay, ID: id + "#" + name, Payload: p}, ""
	}
	return nil, ""
}

// encodeRecord is json.Marshal(res) (nil when that fails), in a slice of
// its own.
func encodeRecord(res *Result) []byte {
	var rb recordBuf
	return rb.encode(res)
}

// recordBuf encodes decision records. Decide takes one from recordBufs
// and puts it back once the store has taken the record (Store.Commit: the
// commit and what it holds are the caller's again when it returns), so a
// decision's record costs no allocation of its own: about 3 KiB a decision
// less to collect (two copies of the record: json.Marshal's, and the
// record with its input appended).
type recordBuf struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var recordBufs = sync.Pool{New: func() any { return new(recordBuf) }}

// maxPooledRecord: a buffer grown past this by an unusual record is let
// go rather than kept in the pool.
const maxPooledRecord = 64 << 10

func (rb *recordBuf) release() {
	if rb.buf.Cap() <= maxPooledRecord {
		recordBufs.Put(rb)
	}
}

// encode returns res in JSON (nil when that fails), in rb's buffer: valid
// until rb's next use. It is what json.Marshal(res) makes, without having
// encoding/json check and compact the masked input again: Input is the
// last field a decision sets (late_verdicts come later) and maskedInput
// makes it compact, valid and HTML-escaped already, which is what
// encoding/json would make of it (see TestEncodeRecordSameAsMarshal).
func (rb *recordBuf) encode(res *Result) []byte {
	if rb.enc == nil {
		rb.enc = json.NewEncoder(&rb.buf) // escapes HTML, as json.Marshal does
	}
	rb.buf.Reset()
	in := res.Input
	if len(in) == 0 || in[0] != '{' || res.Late != nil {
		if rb.enc.Encode(res) != nil {
			return nil
		}
		return bytes.TrimSuffix(rb.buf.Bytes(), []byte{'\n'})
	}
	// Encoded without Input, which is put back before anyone else sees res
	// (a copy of Result for the purpose would be one more allocation).
	res.Input = nil
	err := rb.enc.Encode(res)
	res.Input = in
	if err != nil {
		return nil
	}
	rb.buf.Truncate(rb.buf.Len() - len("}\n"))
	rb.buf.WriteString(`,"input":`)
	rb.buf.Write(in)
	rb.buf.WriteByte('}')
	return rb.buf.Bytes()
}

func newID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	id := make([]byte, 0, 1+16+2*len(b))
	id = append(id, 'd')
	id = strconv.AppendInt(id, now.UnixMilli(), 16)
	return string(hex.AppendEncode(id, b[:]))
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
