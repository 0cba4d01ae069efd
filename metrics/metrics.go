// Package metrics exposes the agent on GET /metrics with the Prometheus
// client: request and outcome counters fed by the API, and collectors that
// read the spool, the forwarders and the policy at scrape time (so the
// figures are never stale and cost nothing between scrapes). Label values
// are route patterns, queue and upstream names, results and states: never
// an id, a number or anything personal.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// QueueStats is one queue's figures.
type QueueStats struct {
	Depth, Bytes, DeadLetters int64
	OldestAgeSeconds          float64
}

// UpstreamStats is one upstream's figures.
type UpstreamStats struct {
	State                                 string
	Delivered, Failed, DeadLettered, Sent int64
}

// PolicyStats is the policy in force.
type PolicyStats struct {
	Version, SHA256   string
	Reloads, Refusals int64
}

// JournalStats are the spool journal's figures.
type JournalStats struct {
	Replayed, Pending             int64
	Checkpoints, CheckpointErrors int64
}

// DamageStats sum the store's damage reports (spool.DamageReport).
type DamageStats struct {
	Reports int64
	// Lost: queue entries the reports count as lost, by queue.
	Lost map[string]int64
}

// SpoolSize is what counts against the spool's cap, and the cap.
type SpoolSize struct {
	// StoredBytes: entries queued and set aside (spool.TotalBytes).
	StoredBytes int64
	// MaxBytes: AGENT_SPOOL_MAX_BYTES; past it intake is refused.
	MaxBytes int64
}

// Sources are read at scrape time.
type Sources struct {
	Spool       func() SpoolSize
	Damage      func() DamageStats
	Queues      func() map[string]QueueStats
	StoreBytes  func() int64
	Quarantined func() bool
	Upstreams   func() map[string]UpstreamStats
	Policy      func() PolicyStats
	Journal     func() JournalStats
}

// States an upstream can be in (one series each, the current one is 1).
var States = []string{"ok", "retrying", "paused", "circuit_open", "not_configured"}

// ActionOutcomes and DecisionResults are the label values the API reports.
// Their series exist from the start at 0, so rate() and increase() see the
// first burst rather than a series that appears with it.
var (
	ActionOutcomes  = []string{"accepted", "duplicate", "invalid", "spool_full", "unavailable"}
	DecisionResults = []string{"accept", "review", "decline"}
)

// Metrics is the registry and the instruments the API feeds.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	routes    sync.Map // routeCodeKey -> *routeCounters (routes are the mux's patterns: bounded)
	outcomes  sync.Map // outcome -> prometheus.Counter
	latency   *prometheus.HistogramVec
	actions   *prometheus.CounterVec
	decisions *prometheus.CounterVec
	commits   prometheus.Histogram
	commitOps prometheus.Histogram
	commitErr prometheus.Counter
}

// New registers the instruments the API and the store feed. version is
// the agent's build version. The figures read at scrape time are added by
// Read once their parts exist (the store, built after the metrics it
// reports commits to, is one of them).
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_http_requests_total", Help: "Local API requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "outpost_http_request_duration_seconds", Help: "Local API request latency by route: the time in the handler, from the request read to its answer (the sockets' time is not in it).",
			// From 100 µs: a decision or an action takes 50-400 µs in
			// the handler here, which a first bucket of 0.5 ms hid.
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_actions_total", Help: "User actions by outcome (accepted, duplicate, invalid, spool_full, unavailable).",
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_decisions_total", Help: "Decisions by result and whether they were decided degraded.",
		}, []string{"result", "degraded"}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_spool_commit_duration_seconds", Help: "Synced spool commits (one fsync shared by a group of writes).",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25},
		}),
		commitOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_spool_commit_group_size", Help: "Writes sharing one synced commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_spool_commit_errors_total", Help: "Spool commits that failed (nothing of them was acknowledged).",
		}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "outpost_build_info", Help: "Build of the running agent.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	for _, o := range ActionOutcomes {
		m.outcomes.Store(o, m.actions.WithLabelValues(o))
	}
	for _, r := range DecisionResults {
		for _, degraded := range []string{"false", "true"} {
			m.decisions.WithLabelValues(r, degraded)
		}
	}
	reg.MustRegister(m.requests, m.latency, m.actions, m.decisions, m.commits, m.commitOps, m.commitErr, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Read adds the figures read from src at scrape time. Call it once.
func (m *Metrics) Read(src Sources) { m.reg.MustRegister(&scrape{src: src}) }

// Register adds collectors of other packages (fleet mode's Kafka side) to
// the same registry.
func (m *Metrics) Register(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request records one API request.
func (m *Metrics) Request(route string, code int, d time.Duration) {
	c := m.routeCode(route, code)
	c.count.Inc()
	c.latency.Observe(d.Seconds())
}

// Actions records n actions with an outcome.
func (m *Metrics) Actions(outcome string, n int) {
	c, ok := m.outcomes.Load(outcome)
	if !ok {
		c, _ = m.outcomes.LoadOrStore(outcome, m.actions.WithLabelValues(outcome))
	}
	c.(prometheus.Counter).Add(float64(n))
}

// routeCounters are one route and code's series, looked up once: a label
// lookup hashes the values and takes a lock, on every request otherwise.
type routeCounters struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

type routeCodeKey struct {
	route string
	code  int
}

func (m *Metrics) routeCode(route string, code int) *routeCounters {
	k := routeCodeKey{route, code}
	if c, ok := m.routes.Load(k); ok {
		return c.(*routeCounters)
	}
	c := &routeCounters{
		count:   m.requests.WithLabelValues(route, strconv.Itoa(code)),
		latency: m.latency.WithLabelValues(route),
	}
	v, _ := m.routes.LoadOrStore(k, c)
	return v.(*routeCounters)
}

// Decision records one decision.
func (m *Metrics) Decision(result string, degraded bool) {
	m.decisions.WithLabelValues(result, strconv.FormatBool(degraded)).Inc()
}

// Commit records one spool commit.
func (m *Metrics) Commit(d time.Duration, writes int, err error) {
	if err != nil {
		m.commitErr.Inc()
		return
	}
	m.commits.Observe(d.Seconds())
	m.commitOps.Observe(float64(writes))
}

var (
	descDepth    = prometheus.NewDesc("outpost_spool_queue_depth", "Entries waiting for delivery.", []string{"queue"}, nil)
	descQBytes   = prometheus.NewDesc("outpost_spool_queue_bytes", "Bytes of entries waiting for delivery.", []string{"queue"}, nil)
	descAge      = prometheus.NewDesc("outpost_spool_oldest_age_seconds", "Age of the oldest waiting entry.", []string{"queue"}, nil)
	descDead     = prometheus.NewDesc("outpost_spool_dead_letters", "Entries set aside in the dead letters.", []string{"queue"}, nil)
	descStore    = prometheus.NewDesc("outpost_store_bytes", "Size of the store on disk.", nil, nil)
	descStored   = prometheus.NewDesc("outpost_spool_stored_bytes", "Bytes of entries (queued and dead letters) that count against AGENT_SPOOL_MAX_BYTES.", nil, nil)
	descMax      = prometheus.NewDesc("outpost_spool_max_bytes", "AGENT_SPOOL_MAX_BYTES: past it new events get 503 spool_full.", nil, nil)
	descQuar     = prometheus.NewDesc("outpost_store_quarantined", "1 when the store would not open at start-up and was moved aside.", nil, nil)
	descDamage   = prometheus.NewDesc("outpost_store_damage_reports", "Reports of damage found in the store's files (kept in the store, the newest 50; /v1/status lists them).", nil, nil)
	descDmgLost  = prometheus.NewDesc("outpost_store_damage_lost_entries", "Queue entries the damage reports count as lost (an upper bound).", []string{"queue"}, nil)
	descReplayed = prometheus.NewDesc("outpost_spool_journal_replayed_records", "Journal records replayed into the store at start-up (0 after a clean stop).", nil, nil)
	descPending  = prometheus.NewDesc("outpost_spool_journal_pending_records", "Journal records no checkpoint covers yet; growing, checkpoints are failing.", nil, nil)
	descCkpts    = prometheus.NewDesc("outpost_spool_checkpoints_total", "Checkpoints of the store (its files synced, the journal behind them freed).", nil, nil)
	descCkptErr  = prometheus.NewDesc("outpost_spool_checkpoint_errors_total", "Checkpoints that failed (the journal keeps the writes).", nil, nil)
	descState    = prometheus.NewDesc("outpost_upstream_state", "Current state of each upstream (1 for the current state).", []string{"upstream", "state"}, nil)
	descDeliv    = prometheus.NewDesc("outpost_upstream_delivered_total", "Items an upstream confirmed.", []string{"upstream"}, nil)
	descFailed   = prometheus.NewDesc("outpost_upstream_failed_total", "Failed delivery attempts (items).", []string{"upstream"}, nil)
	descDeadTot  = prometheus.NewDesc("outpost_upstream_dead_lettered_total", "Items moved to the dead letters.", []string{"upstream"}, nil)
	descSends    = prometheus.NewDesc("outpost_upstream_send_calls_total", "Batches handed to an upstream client.", []string{"upstream"}, nil)
	descPolicy   = prometheus.NewDesc("outpost_policy_info", "The policy in force.", []string{"version", "sha256"}, nil)
	descReloads  = prometheus.NewDesc("outpost_policy_reloads_total", "Policy reloads that took effect.", nil, nil)
	descRefusals = prometheus.NewDesc("outpost_policy_refusals_total", "Policy files refused (the old policy kept running).", nil, nil)
)

// scrape reads the sources at scrape time.
type scrape struct{ src Sources }

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDepth, descQBytes, descAge, descDead, descStore, descStored, descMax, descQuar, descDamage, descDmgLost, descState,
		descDeliv, descFailed, descDeadTot, descSends, descPolicy, descReloads, descRefusals,
		descReplayed, descPending, descCkpts, descCkptErr} {
		ch <- d
	}
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	c := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if s.src.Queues != nil {
		for q, st := range s.src.Queues() {
			g(descDepth, float64(st.Depth), q)
			g(descQBytes, float64(st.Bytes), q)
			g(descAge, st.OldestAgeSeconds, q)
			g(descDead, float64(st.DeadLetters), q)
		}
	}
	if s.src.StoreBytes != nil {
		g(descStore, float64(s.src.StoreBytes()))
	}
	if s.src.Spool != nil {
		sz := s.src.Spool()
		g(descStored, float64(sz.StoredBytes))
		g(descMax, float64(sz.MaxBytes))
	}
	if s.src.Journal != nil {
		j := s.src.Journal()
		g(descReplayed, float64(j.Replayed))
		g(descPending, float64(j.Pending))
		c(descCkpts, float64(j.Checkpoints))
		c(descCkptErr, float64(j.CheckpointErrors))
	}
	if s.src.Damage != nil {
		d := s.src.Damage()
		g(descDamage, float64(d.Reports))
		for q, n := range d.Lost {
			g(descDmgLost, float64(n), q)
		}
	}
	if s.src.Quarantined != nil {
		v := 0.0
		if s.src.Quarantined() {
			v = 1
		}
		g(descQuar, v)
	}
	if s.src.Upstreams != nil {
		for u, st := range s.src.Upstreams() {
			for _, state := range States {
				v := 0.0
				if st.State == state {
					v = 1
				}
				g(descState, v, u, state)
			}
			c(descDeliv, float64(st.Delivered), u)
			c(descFailed, float64(st.Failed), u)
			c(descDeadTot, float64(st.DeadLettered), u)
			c(descSends, float64(st.Sent), u)
		}
	}
	if s.src.Policy != nil {
		p := s.src.Policy()
		g(descPolicy, 1, p.Version, p.SHA256)
		c(descReloads, float64(p.Reloads))
		c(descRefusals, float64(p.Refusals))
	}
}
