package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outpost-agent/outpost/spool"
)

// Velocity is an agent's view of the fleet's velocity counters, and the
// maker of its own increments.
//
// Publishing: the decision engine writes each counted event's increment
// (Increment, a spool record on VelocityQueue) in the same commit as its
// local count; the queue is forwarded to <prefix>.velocity.v1 by a Sender,
// keyed by subject. So an increment is published once it is counted and
// only then: the spool's and the producer's guarantees (docs/fleet-kafka.md).
//
// Reading: one goroutine consumes every partition of the topic directly
// (no consumer group: every agent needs all of it, as a Kafka Streams
// GlobalKTable does) and merges the other agents' increments into counts
// keyed by (counter, window, bucket, subject). Its own increments are
// skipped: the engine adds its exact local count instead. Each batch's
// counts, the next offset of every partition it read and the
// de-duplication marks are written in one spool commit, then applied in
// memory: a restart (kill -9 included) loads the counts and resumes at
// the stored offsets, exactly where the counts stop.
//
// De-duplication: an agent killed after the broker acknowledged a record
// but before its spool heard it sends the record again. Within a partition
// one agent's records arrive in its spool order (one queue, one batch at a
// time, the idempotent producer), so a mark per (partition, agent) of the
// highest sequence merged, with the agent's epoch, recognises every
// re-sent record whatever its age, in memory bounded by partitions ×
// agents. A store rebuilt from nothing numbers from 1 again under a new
// epoch, and its old records all came before in the partition: a new
// epoch starts a new mark. A record whose partial batch failed and was re-sent after later
// ones in the same partition would be taken for a duplicate: the count
// errs low by it, never high.
//
// Late data: an increment is bucketed by its event time, not by when it
// arrives, so a branch that was offline for hours adds its events where
// they happened; one older than its counter's window counts for nothing
// and is dropped. Buckets are 1/60 of the window; a count covers the
// window rounded out to whole buckets (up to 1/60 more than it).
//
// Bounds: buckets past their window are dropped from memory (the store's
// copies expire by TTL); MaxEntries caps the (subject, bucket) counts
// held, past which new ones are counted (over_capacity_total) and not
// kept.
//
// Freshness: every ProbeInterval the brokers' end offsets are read; the
// view is "in step as of t" once every partition is read past the end
// offsets seen at t. Its age is the time since; past MaxAge it is stale.
// Decisions read the view from memory only and never wait for Kafka.
type Velocity struct {
	cfg   VelocityConfig
	log   *slog.Logger
	now   func() time.Time
	cl    *kgo.Client
	adm   *kadm.Client
	epoch int64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	series   map[seriesKey]*series
	entries  int
	offsets  map[int32]int64 // next offset to read, as stored
	assigned map[int32]bool
	marks    map[markKey]mark
	hw       map[int32]int64 // end offsets at the last probe
	probes   []probe         // not yet caught up with, oldest first
	inStepAt time.Time       // the view holds everything the broker had then
	lastErr  string
	loaded   int
	st       velocityCounters

	notQueued atomic.Int64
	errLog    rateLimit
	closed    atomic.Bool
	// delay is how long increments took from their event at the other
	// agent to being counted here (clocks of two hosts: skew shows).
	delay prometheus.Histogram
}

// VelocityConfig configures the fleet view.
type VelocityConfig struct {
	Conn Conn
	// Topic is <prefix>.velocity.v1.
	Topic   string
	AgentID string
	// Secret is the fleet secret (AGENT_KAFKA_KEY_FILE): subjects are
	// keyed with it, so the same phone is the same subject on every agent.
	Secret []byte
	// Store keeps the counts, offsets and marks: the agent's spool.
	Store VelocityStore
	// MaxEntries caps the (subject, bucket) counts held (default
	// DefaultVelocityMaxEntries).
	MaxEntries int
	// MaxAge: an older view is stale (default DefaultVelocityMaxAge).
	MaxAge time.Duration
	// Lookback: where a partition with no stored offset is first read
	// from, back from now (default DefaultVelocityLookback): a new agent needs the longest
	// window's worth, not the topic's whole retention.
	Lookback time.Duration
	// ProbeInterval: how often the end offsets are read (default 1 s).
	ProbeInterval time.Duration
	Options       []kgo.Opt
	Logger        *slog.Logger
	Now           func() time.Time
}

// VelocityStore is what the view needs of the agent's spool.
type VelocityStore interface {
	Get(key string) ([]byte, bool, error)
	Scan(prefix, start string, fn func(key string, value []byte) bool) error
	Write(ctx context.Context, kvs []spool.KV, recs []spool.Record) (spool.AppendResult, error)
}

var _ VelocityStore = (*spool.Spool)(nil)

// DelayBuckets are the merge delay histogram's bounds, in seconds: fine
// where the fleet normally is (milliseconds), coarse for catch-ups.
var DelayBuckets = []float64{.001, .002, .003, .004, .005, .006, .008, .01, .012, .015, .02, .025, .03, .04, .05, .075,
	.1, .15, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60, 300, 3600}

// Buckets is how many buckets a counter's window is cut into.
const Buckets = 60

// BytesPerEntry is what one (subject, bucket) count costs in memory, as
// measured (BENCHMARKS.md, session 13: 1,000,000 subjects fed to an agent
// raised its Go heap in use by 93 bytes a count): the 16-byte subject and
// 4-byte count in their bucket's map, the map's growth, and the store's
// copy on its way to disk.
const BytesPerEntry = 100

// View states.
const (
	ViewLive  = "live"
	ViewStale = "stale"
	ViewNone  = "none"
)

type seriesKey struct {
	name   string
	window time.Duration
}

type series struct {
	width   int64 // bucket width, ns
	window  int64 // ns
	buckets map[int64]map[subject]uint32
}

func newSeries(window time.Duration) *series {
	return &series{width: max(int64(window)/Buckets, 1), window: int64(window), buckets: map[int64]map[subject]uint32{}}
}

// first is the oldest bucket the window ending at now covers.
func (s *series) first(now time.Time) int64 { return floorDiv(now.UnixNano()-s.window, s.width) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

type markKey struct {
	partition int32
	agent     string
}

type mark struct {
	epoch int64
	seq   uint64
}

type probe struct {
	at time.Time
	hw map[int32]int64
}

type velocityCounters struct {
	read, merged, own, duplicates, outside, malformed, overCapacity, writeErrors int64
	// expired: records gone from the broker (retention, deletion) between
	// the offset the view had reached and the next one still there.
	expired int64
}

// Store keys, under the spool's small state.
const (
	keyPrefix  = "fv/"
	keyCounts  = "fv/c/" // fv/c/<counter>/<window ms>/<bucket>/<subject hex> -> count
	keyOffsets = "fv/o/" // fv/o/<partition> -> next offset
	keyMarks   = "fv/m/" // fv/m/<partition>/<agent> -> <epoch>:<seq>
	keyInStep  = "fv/t"  // unix nanos the view was last in step
	keyEpoch   = "fv/epoch"
)

// Defaults of the settings the agent's configuration also has
// (AGENT_FLEET_VELOCITY_MAX_ENTRIES, _MAX_AGE, _LOOKBACK): one definition
// each, which cmd/agent's TestDefaultsHaveOneValue holds config's to.
const (
	DefaultVelocityMaxEntries = 1_000_000
	DefaultVelocityMaxAge     = 30 * time.Second
	DefaultVelocityLookback   = 24 * time.Hour
)

// OpenVelocity loads the stored view (counts in their windows, offsets,
// marks) and this agent's epoch, and makes the Kafka client; Start starts
// reading.
func OpenVelocity(cfg VelocityConfig) (*Velocity, error) {
	if err := ValidAgentID(cfg.AgentID); err != nil {
		return nil, err
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("fleet velocity: no fleet secret")
	}
	if cfg.Store == nil {
		return nil, errors.New("fleet velocity: no store")
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultVelocityMaxEntries
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultVelocityMaxAge
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = DefaultVelocityLookback
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Velocity{cfg: cfg, log: cfg.Logger.With("component", "fleet-velocity"), now: cfg.Now,
		series: map[seriesKey]*series{}, offsets: map[int32]int64{}, assigned: map[int32]bool{},
		marks: map[markKey]mark{}, hw: map[int32]int64{},
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outpost_fleet_velocity_merge_delay_seconds",
			Help:    "Time from an increment's event at another agent (its clock) to its count in this agent's fleet view.",
			Buckets: DelayBuckets})}
	if err := v.load(); err != nil {
		return nil, fmt.Errorf("fleet velocity: %w", err)
	}
	opts, err := cfg.Conn.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, fetchOptions()...)
	opts = append(opts,
		// Read as the broker has it: a slow probe must not hold a fetch.
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	opts = append(opts, cfg.Options...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	v.cl, v.adm = cl, kadm.NewClient(cl)
	return v, nil
}

// load reads the stored view. Counts whose bucket left its window are
// skipped (the store expires them by their TTL).
func (v *Velocity) load() error {
	now := v.now()
	b, ok, err := v.cfg.Store.Get(keyEpoch)
	if err != nil {
		return err
	}
	if ok {
		v.epoch, _ = strconv.ParseInt(string(b), 10, 64)
	}
	if v.epoch <= 0 {
		v.epoch = now.UnixNano()
		if _, err := v.cfg.Store.Write(context.Background(), []spool.KV{{Key: keyEpoch, Value: []byte(strconv.FormatInt(v.epoch, 10))}}, nil); err != nil {
			return fmt.Errorf("store the epoch: %w", err)
		}
	}
	var bad int
	err = v.cfg.Store.Scan(keyPrefix, "", func(k string, val []byte) bool {
		switch {
		case strings.HasPrefix(k, keyCounts):
			sk, b, sub, ok := parseCountKey(k)
			n, err := strconv.ParseUint(string(val), 10, 32)
			if !ok || err != nil {
				bad++
				return true
			}
			s := v.series[sk]
			if s == nil {
				s = newSeries(sk.window)
				v.series[sk] = s
			}
			if b < s.first(now) || v.entries >= v.cfg.MaxEntries {
				return true
			}
			m := s.buckets[b]
			if m == nil {
				m = map[subject]uint32{}
				s.buckets[b] = m
			}
			if _, dup := m[sub]; !dup {
				v.entries++
			}
			m[sub] = uint32(n)
		case strings.HasPrefix(k, keyOffsets):
			p, err1 := strconv.ParseInt(k[len(keyOffsets):], 10, 32)
			o, err2 := strconv.ParseInt(string(val), 10, 64)
			if err1 != nil || err2 != nil {
				bad++
				return true
			}
			v.offsets[int32(p)] = o
		case strings.HasPrefix(k, keyMarks):
			rest := k[len(keyMarks):]
			ps, agent, ok1 := strings.Cut(rest, "/")
			es, ss, ok2 := strings.Cut(string(val), ":")
			p, err1 := strconv.ParseInt(ps, 10, 32)
			e, err2 := strconv.ParseInt(es, 10, 64)
			s, err3 := strconv.ParseUint(ss, 10, 64)
			if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil {
				bad++
				return true
			}
			v.marks[markKey{int32(p), agent}] = mark{e, s}
		case k == keyInStep:
			if n, err := strconv.ParseInt(string(val), 10, 64); err == nil {
				v.inStepAt = time.Unix(0, n)
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	v.loaded = v.entries
	if bad > 0 {
		v.log.Warn("stored fleet velocity keys that do not parse were skipped", "keys", bad)
	}
	return nil
}

func countKey(sk seriesKey, b int64, sub subject) string {
	var sb strings.Builder
	sb.Grow(len(keyCounts) + len(sk.name) + 64)
	sb.WriteString(keyCounts)
	sb.WriteString(sk.name)
	sb.WriteByte('/')
	sb.WriteString(strconv.FormatInt(sk.window.Milliseconds(), 10))
	sb.WriteByte('/')
	sb.WriteString(strconv.FormatInt(b, 10))
	sb.WriteByte('/')
	const hexd = "0123456789abcdef"
	for _, c := range sub {
		sb.WriteByte(hexd[c>>4])
		sb.WriteByte(hexd[c&15])
	}
	return sb.String()
}

func parseCountKey(k string) (sk seriesKey, b int64, sub subject, ok bool) {
	parts := strings.Split(k[len(keyCounts):], "/")
	if len(parts) != 4 {
		return sk, 0, sub, false
	}
	ms, err1 := strconv.ParseInt(parts[1], 10, 64)
	b, err2 := strconv.ParseInt(parts[2], 10, 64)
	sub, ok3 := parseSubject(parts[3])
	if err1 != nil || err2 != nil || !ok3 || ms <= 0 || parts[0] == "" {
		return sk, 0, sub, false
	}
	return seriesKey{parts[0], time.Duration(ms) * time.Millisecond}, b, sub, true
}

// Start starts the reader and the probe.
func (v *Velocity) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.wg.Add(2)
	go func() {
		defer v.wg.Done()
		v.probeLoop(ctx)
	}()
	go func() {
		defer v.wg.Done()
		v.consume(ctx)
	}()
}

// Close stops reading (a batch being merged is finished or not written at
// all: the store stays consistent) and closes the client, within ctx. A
// second Close returns at once.
func (v *Velocity) Close(ctx context.Context) error {
	if !v.closed.CompareAndSwap(false, true) {
		return nil
	}
	if v.cancel != nil {
		v.cancel()
	}
	done := make(chan struct{})
	go func() {
		v.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close fleet velocity: %w", ctx.Err())
	}
	v.cl.Close()
	return err
}

// Epoch is this agent's epoch (its increments carry it).
func (v *Velocity) Epoch() int64 { return v.epoch }

// Subject is SubjectHash under the fleet secret.
func (v *Velocity) Subject(kind, value string) string { return SubjectHash(v.cfg.Secret, kind, value) }

// Increment is the spool record publishing one counted event of the
// counter (name, window) keyed by kind, for subject (Subject's hex) at
// at; id names the decision (the record's id is <decision id>/<counter>,
// unique in the queue).
func (v *Velocity) Increment(name, kind string, window time.Duration, subjectHex string, at time.Time, id string) spool.Record {
	p, err := EncodeIncrement(Increment{Counter: name, WindowMS: window.Milliseconds(), Key: kind, Subject: subjectHex,
		Count: 1, EventTime: at.UTC(), Epoch: v.epoch})
	if err != nil {
		// The policy checked the counter and Subject made the subject:
		// this does not happen. Should it, the sender refuses the record
		// as malformed and it is dead-lettered in the spool, with why.
		p = []byte(`{"error":` + strconv.Quote(err.Error()) + `}`)
	}
	return spool.Record{Queue: VelocityQueue, ID: id + "/" + name, Payload: p}
}

// Others counts the other agents' increments of the counter (name,
// window) for subjectHex in the window ending at now, from memory.
func (v *Velocity) Others(name string, window time.Duration, subjectHex string, now time.Time) int64 {
	sub, ok := parseSubject(subjectHex)
	if !ok {
		return 0
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	s := v.series[seriesKey{name, window}]
	if s == nil {
		return 0
	}
	var n int64
	last := floorDiv(now.UnixNano(), s.width)
	for b := s.first(now); b <= last; b++ {
		if m := s.buckets[b]; m != nil {
			n += int64(m[sub])
		}
	}
	return n
}

// View is how the view stands at now: live (in step at most MaxAge ago),
// stale, or none (never in step), with its age.
func (v *Velocity) View(now time.Time) (state string, age time.Duration) {
	v.mu.RLock()
	at := v.inStepAt
	v.mu.RUnlock()
	if at.IsZero() {
		return ViewNone, 0
	}
	age = max(now.Sub(at), 0)
	if age > v.cfg.MaxAge {
		return ViewStale, age
	}
	return ViewLive, age
}

// NotQueued counts increments the engine could not queue (a full spool).
func (v *Velocity) NotQueued(n int) { v.notQueued.Add(int64(n)) }

// VelocityStatus is the fleet view in /v1/status.
type VelocityStatus struct {
	// State: live, stale (older than AGENT_FLEET_VELOCITY_MAX_AGE: Kafka
	// unreachable or behind; decisions go on with the local view), none.
	State      string   `json:"state"`
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Topic      string   `json:"topic"`
	Epoch      int64    `json:"epoch"`
	// Partitions: the next offset to read, the end offset at the last
	// probe, and the records between.
	Partitions map[string]VelocityPartition `json:"partitions"`
	// Entries are the (subject, bucket) counts held, about
	// BytesPerEntry each (ApproxBytes).
	Entries     int   `json:"entries"`
	MaxEntries  int   `json:"max_entries"`
	ApproxBytes int64 `json:"approx_bytes"`
	// LoadedEntries were read from the store at start.
	LoadedEntries int `json:"loaded_entries"`
	// Since start: records read; increments merged; this agent's own
	// (skipped); duplicates (skipped); older than their window (dropped);
	// malformed; not kept for the cap; this agent's increments that could
	// not be queued (a full spool); merges the store refused (retried).
	Read          int64 `json:"records_read_total"`
	Merged        int64 `json:"merged_total"`
	Own           int64 `json:"own_total"`
	Duplicates    int64 `json:"duplicates_total"`
	OutsideWindow int64 `json:"outside_window_total"`
	Malformed     int64 `json:"malformed_total"`
	OverCapacity  int64 `json:"over_capacity_total"`
	NotQueued     int64 `json:"not_queued_total"`
	WriteErrors   int64 `json:"write_errors_total"`
	// Expired records were gone from the broker (retention, deletion)
	// when the view came to read them: increments never counted.
	Expired   int64  `json:"expired_unread_total"`
	LastError string `json:"last_error,omitempty"`
}

// VelocityPartition is one partition's reading.
type VelocityPartition struct {
	Offset        int64 `json:"offset"`
	HighWatermark int64 `json:"high_watermark"`
	Lag           int64 `json:"lag"`
}

// Status is a snapshot.
func (v *Velocity) Status() VelocityStatus {
	now := v.now()
	state, age := v.View(now)
	v.mu.RLock()
	defer v.mu.RUnlock()
	st := VelocityStatus{State: state, Topic: v.cfg.Topic, Epoch: v.epoch, Partitions: map[string]VelocityPartition{},
		Entries: v.entries, MaxEntries: v.cfg.MaxEntries, ApproxBytes: int64(v.entries) * BytesPerEntry, LoadedEntries: v.loaded,
		Read: v.st.read, Merged: v.st.merged, Own: v.st.own, Duplicates: v.st.duplicates, OutsideWindow: v.st.outside,
		Malformed: v.st.malformed, OverCapacity: v.st.overCapacity, NotQueued: v.notQueued.Load(), WriteErrors: v.st.writeErrors,
		Expired: v.st.expired, LastError: v.lastErr}
	if state != ViewNone {
		secs := age.Seconds()
		st.AgeSeconds = &secs
	}
	parts := map[int32]bool{}
	for p := range v.offsets {
		parts[p] = true
	}
	for p := range v.hw {
		parts[p] = true
	}
	for p := range parts {
		off, ok := v.offsets[p]
		if !ok {
			off = -1
		}
		hw := v.hw[p]
		st.Partitions[strconv.Itoa(int(p))] = VelocityPartition{Offset: off, HighWatermark: hw, Lag: max(hw-max(off, 0), 0)}
	}
	switch {
	case state == ViewNone && v.lastErr != "":
		st.Reason = "never in step with the broker: " + v.lastErr
	case state == ViewNone:
		st.Reason = "not yet in step with the broker"
	case state == ViewStale && v.lastErr != "":
		st.Reason = fmt.Sprintf("the fleet view is %.0fs old: %s", age.Seconds(), v.lastErr)
	case state == ViewStale:
		st.Reason = fmt.Sprintf("the fleet view is %.0fs old: reading behind the broker", age.Seconds())
	}
	return st
}

// maxPoll is the most records merged in one commit (a count, an offset
// or a mark is about 100 bytes of the commit: 2,000 records stay well
// within badger's batch).
const maxPoll = 2000

// consume reads and merges until ctx ends.
func (v *Velocity) consume(ctx context.Context) {
	failures := 0
	for {
		fs := v.cl.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil {
			return
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) == 0 {
			if fetchErr != nil {
				v.noteErr(fetchErr)
				if !sleep(ctx, 200*time.Millisecond) {
					return
				}
			}
			continue
		}
		if err := v.merge(ctx, recs); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			v.noteErr(err)
			v.rewind()
			if !sleep(ctx, backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
	}
}

// merge folds a batch into the view: counts, offsets and marks in one
// spool commit, then in memory.
func (v *Velocity) merge(ctx context.Context, recs []*kgo.Record) error {
	now := v.now()
	type entryKey struct {
		sk  seriesKey
		b   int64
		sub subject
	}
	deltas := map[entryKey]uint32{}
	marks := map[markKey]mark{}
	var events []time.Time
	next := map[int32]int64{}
	var c velocityCounters
	v.mu.RLock()
	type gap struct {
		p        int32
		from, to int64
	}
	var gaps []gap
	for _, r := range recs {
		want, ok := next[r.Partition]
		if !ok {
			want, ok = v.offsets[r.Partition]
		}
		if ok && r.Offset > want {
			// franz-go resets an offset the broker no longer holds to
			// the log start, without a word.
			c.expired += r.Offset - want
			gaps = append(gaps, gap{r.Partition, want, r.Offset - 1})
		}
		next[r.Partition] = r.Offset + 1
		c.read++
		if headerIs(r, HeaderAgentID, v.cfg.AgentID) {
			c.own++ // counted exactly by the engine, from the local store
			continue
		}
		rec, err := Decode(r.Value)
		if err != nil {
			c.malformed++
			continue
		}
		if rec.AgentID == v.cfg.AgentID {
			c.own++ // counted exactly by the engine, from the local store
			continue
		}
		inc, err := DecodeIncrement(rec.Payload)
		if err != nil {
			c.malformed++
			continue
		}
		_, seq, _ := ParseEventID(rec.EventID) // Decode checked it
		mk := markKey{r.Partition, rec.AgentID}
		m, seen := marks[mk]
		if !seen {
			m = v.marks[mk]
		}
		// Another epoch is another store of that agent: the old one is
		// gone (it cannot send again), and its records came before.
		if inc.Epoch == m.epoch && seq <= m.seq {
			c.duplicates++
			continue
		}
		marks[mk] = mark{inc.Epoch, seq}
		sk := seriesKey{inc.Counter, time.Duration(inc.WindowMS) * time.Millisecond}
		s := v.series[sk]
		if s == nil {
			s = newSeries(sk.window)
		}
		at := inc.EventTime
		if at.After(now) {
			at = now // a producer's clock ahead of ours: counted as of now
		}
		b := floorDiv(at.UnixNano(), s.width)
		if b < s.first(now) {
			c.outside++
			continue
		}
		sub, _ := parseSubject(inc.Subject)
		deltas[entryKey{sk, b, sub}] += uint32(inc.Count)
		c.merged += inc.Count
		events = append(events, inc.EventTime)
	}
	// New absolute counts, within the cap.
	type put struct {
		k entryKey
		n uint32
	}
	puts := make([]put, 0, len(deltas))
	kvs := make([]spool.KV, 0, len(deltas)+len(next)+len(marks)+1)
	added := 0
	for k, d := range deltas {
		cur, exists := uint32(0), false
		if s := v.series[k.sk]; s != nil {
			cur, exists = s.buckets[k.b][k.sub]
		}
		if !exists {
			if v.entries+added >= v.cfg.MaxEntries {
				c.overCapacity++
				c.merged -= int64(d)
				continue
			}
			added++
		}
		n := cur + d
		puts = append(puts, put{k, n})
		end := time.Unix(0, (k.b+1)*max(int64(k.sk.window)/Buckets, 1))
		ttl := end.Add(k.sk.window).Sub(now) + time.Minute
		kvs = append(kvs, spool.KV{Key: countKey(k.sk, k.b, k.sub), Value: strconv.AppendUint(nil, uint64(n), 10), TTL: ttl})
	}
	v.mu.RUnlock()
	for p, o := range next {
		kvs = append(kvs, spool.KV{Key: keyOffsets + strconv.Itoa(int(p)), Value: strconv.AppendInt(nil, o, 10)})
	}
	for mk, m := range marks {
		kvs = append(kvs, spool.KV{Key: keyMarks + strconv.Itoa(int(mk.partition)) + "/" + mk.agent,
			Value: []byte(strconv.FormatInt(m.epoch, 10) + ":" + strconv.FormatUint(m.seq, 10))})
	}
	if _, err := v.cfg.Store.Write(ctx, kvs, nil); err != nil {
		v.mu.Lock()
		v.st.writeErrors++
		v.mu.Unlock()
		return fmt.Errorf("store merged increments: %w", err)
	}
	counted := v.now()
	for _, at := range events {
		v.delay.Observe(max(counted.Sub(at).Seconds(), 0))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range puts {
		s := v.series[p.k.sk]
		if s == nil {
			s = newSeries(p.k.sk.window)
			v.series[p.k.sk] = s
		}
		m := s.buckets[p.k.b]
		if m == nil {
			m = map[subject]uint32{}
			s.buckets[p.k.b] = m
		}
		if _, exists := m[p.k.sub]; !exists {
			v.entries++
		}
		m[p.k.sub] = p.n
	}
	for mk, m := range marks {
		v.marks[mk] = m
	}
	for p, o := range next {
		v.offsets[p] = o
	}
	v.st.read += c.read
	v.st.merged += c.merged
	v.st.own += c.own
	v.st.duplicates += c.duplicates
	v.st.outside += c.outside
	v.st.malformed += c.malformed
	v.st.overCapacity += c.overCapacity
	v.st.expired += c.expired
	for _, g := range gaps {
		v.log.Error("fleet velocity: increments gone from Kafka before this agent read them; the fleet's counts may be short: the velocity topic's retention is shorter than this agent was away, or records were deleted",
			"topic", v.cfg.Topic, "partition", g.p, "first_offset", g.from, "last_offset", g.to, "records", g.to-g.from+1)
	}
	v.catchUp()
	v.expire(now)
	return nil
}

// rewind sets every partition back to its stored offset, after a batch
// that could not be stored: it is read again.
func (v *Velocity) rewind() {
	v.mu.RLock()
	set := map[int32]kgo.EpochOffset{}
	for p := range v.assigned {
		if o, ok := v.offsets[p]; ok {
			set[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
	}
	v.mu.RUnlock()
	if len(set) > 0 {
		v.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{v.cfg.Topic: set})
	}
}

// expire drops the buckets that left their window. Called with mu held.
func (v *Velocity) expire(now time.Time) {
	for sk, s := range v.series {
		first := s.first(now)
		for b, m := range s.buckets {
			if b < first {
				v.entries -= len(m)
				delete(s.buckets, b)
			}
		}
		if len(s.buckets) == 0 {
			delete(v.series, sk)
		}
	}
}

// catchUp moves inStepAt to the newest probe whose end offsets every
// partition has been read past. Called with mu held.
func (v *Velocity) catchUp() {
	for len(v.probes) > 0 {
		p := v.probes[0]
		for part, hw := range p.hw {
			if hw > 0 && v.offsets[part] < hw {
				return
			}
		}
		v.inStepAt = p.at
		v.probes = v.probes[1:]
	}
}

// maxProbes bounds the probes waiting to be caught up with (the oldest go
// first: the age is then overstated, never understated).
const maxProbes = 64

// probeLoop reads the end offsets every ProbeInterval: it finds the
// partitions (and any added later), measures the lag and the view's age,
// expires buckets and stores when the view was last in step.
func (v *Velocity) probeLoop(ctx context.Context) {
	t := time.NewTicker(v.cfg.ProbeInterval)
	defer t.Stop()
	var stored time.Time
	for {
		v.probe(ctx)
		v.mu.Lock()
		v.expire(v.now())
		at := v.inStepAt
		v.mu.Unlock()
		if at.Sub(stored) >= 10*time.Second {
			// Kept so that a restart knows how old its view is; a
			// failure here only overstates that age.
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := v.cfg.Store.Write(wctx, []spool.KV{{Key: keyInStep, Value: strconv.AppendInt(nil, at.UnixNano(), 10)}}, nil); err == nil {
				stored = at
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *Velocity) probe(ctx context.Context) {
	at := v.now() // before asking: the end offsets hold at least what was acknowledged by then
	pctx, cancel := context.WithTimeout(ctx, max(3*v.cfg.ProbeInterval, 5*time.Second))
	defer cancel()
	offs, err := v.adm.ListEndOffsets(pctx, v.cfg.Topic)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = offs.Error()
	}
	if err == nil && len(offs[v.cfg.Topic]) == 0 {
		err = fmt.Errorf("topic %s not found", v.cfg.Topic)
	}
	if err != nil {
		v.noteErr(fmt.Errorf("list end offsets: %w", err))
		return
	}
	// Partitions not read yet: from the stored offset, or (none stored:
	// a new agent, a new partition) from Lookback ago, resolved here so
	// that the view knows where it stands even if nothing newer comes.
	var fresh []int32
	add := map[int32]kgo.Offset{}
	v.mu.RLock()
	for p := range offs[v.cfg.Topic] {
		if v.assigned[p] {
			continue
		}
		if stored, ok := v.offsets[p]; ok {
			add[p] = kgo.NewOffset().At(stored)
		} else {
			fresh = append(fresh, p)
		}
	}
	v.mu.RUnlock()
	start := map[int32]int64{}
	if len(fresh) > 0 {
		lo, err := v.adm.ListOffsetsAfterMilli(pctx, at.Add(-v.cfg.Lookback).UnixMilli(), v.cfg.Topic)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			if ctx.Err() == nil {
				v.noteErr(fmt.Errorf("list offsets %s back: %w", v.cfg.Lookback, err))
			}
			return
		}
		for _, p := range fresh {
			o, ok := lo.Lookup(v.cfg.Topic, p)
			// A partition with no record at or after the time: kadm
			// answers with its end offset, listed in a second request,
			// so increments appended between the two would be skipped
			// (they were, with a busy CPU: TestVelocityStartRace). No
			// record was at or after the time at the first, so the end
			// offset listed before both (offs) skips nothing: what lies
			// from it is older than the lookback, or newer and read.
			// kadm's end offsets carry no timestamp (-1).
			if !ok || o.Offset < 0 || o.Timestamp < 0 {
				o.Offset = offs[v.cfg.Topic][p].Offset
			}
			start[p] = o.Offset
			add[p] = kgo.NewOffset().At(o.Offset)
		}
	}
	v.mu.Lock()
	hw := map[int32]int64{}
	for p, o := range offs[v.cfg.Topic] {
		hw[p] = o.Offset
	}
	for p := range add {
		v.assigned[p] = true
	}
	for p, o := range start {
		v.offsets[p] = o
	}
	v.hw = hw
	v.probes = append(v.probes, probe{at: at, hw: hw})
	if len(v.probes) > maxProbes {
		v.probes = v.probes[len(v.probes)-maxProbes:]
	}
	v.catchUp()
	v.lastErr = ""
	v.mu.Unlock()
	if len(add) > 0 {
		v.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{v.cfg.Topic: add})
	}
}

// noteErr keeps the last error for the status and logs it, once a minute
// at most while it stays the same.
func (v *Velocity) noteErr(err error) {
	msg := err.Error()
	v.mu.Lock()
	v.lastErr = msg
	v.mu.Unlock()
	if v.errLog.allow(msg, v.now()) {
		v.log.Warn("fleet velocity: Kafka", "err", msg)
	}
}

// rateLimit lets a message through once a minute, or when it changes.
type rateLimit struct {
	mu   sync.Mutex
	last string
	at   time.Time
}

func (r *rateLimit) allow(msg string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg == r.last && now.Sub(r.at) < time.Minute {
		return false
	}
	r.last, r.at = msg, now
	return true
}

// backoff is capped (30 s), jittered exponential back-off.
func backoff(failures int) time.Duration {
	d := 200 * time.Millisecond << min(failures, 8)
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func headerIs(r *kgo.Record, key, value string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value) == value
		}
	}
	return false
}
