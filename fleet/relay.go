package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
)

// Dedupe remembers which event ids were delivered, across restarts.
type Dedupe interface {
	// Delivered reports whether eventID was delivered, and as which
	// caller id (an event id is an agent's spool sequence: a store the
	// agent rebuilt from nothing could give one again to another action,
	// so a match needs the same id too).
	Delivered(eventID string) (id string, ok bool, err error)
	// Remember records deliveries durably.
	Remember(ctx context.Context, ds []Delivery) error
}

// Delivery is one delivered event.
type Delivery struct{ EventID, ID string }

// RelayConfig configures a relay: a member of the consumer group on the
// actions topic, and the forwarder.Queue its Tencent worker leases from.
type RelayConfig struct {
	Conn  Conn
	Group string
	// Topic is <prefix>.actions.v1; DeadLetterTopic <prefix>.deadletters.v1.
	Topic, DeadLetterTopic string
	// RelayID names this relay in dead letters' headers and its status.
	RelayID string
	Dedupe  Dedupe
	// MaxBuffered records fetched and not yet final (default 2,000):
	// fetching waits while the buffer is full.
	MaxBuffered int
	// SettleWait: when partitions are revoked, how long to wait for their
	// records in flight to Tencent to get a verdict before committing and
	// letting them go (default 5s; with the 5s commit, well within the
	// group's rebalance time-out of 20s).
	SettleWait time.Duration
	Options    []kgo.Opt
	Logger     *slog.Logger
}

// Relay consumes the actions topic in the consumer group and is the
// forwarder's Queue over the fetched records: Lease hands them out in
// partition order; Ack and DeadLetter are final verdicts; Fail and
// Release give them back. Offsets are never committed automatically: a
// partition's offset is committed only up to the contiguous prefix of
// records with a final verdict, so a relay killed at any moment loses
// nothing, and its partitions resume from there in another relay.
type Relay struct {
	cfg    RelayConfig
	cl     *kgo.Client
	log    *slog.Logger
	wake   chan struct{}
	commit chan struct{} // asks the committer to commit what is ready
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	settled  chan struct{} // closed and replaced at each verdict
	parts    map[int32]*partState
	bySeq    map[uint64]*entry
	nextSeq  uint64
	buffered int // entries not final
	st       relayCounters
}

type partState struct {
	entries   []*entry // by offset, from the first not committed
	committed int64    // next offset to consume, as committed (-1: none yet)
	// ready is the offset after the contiguous prefix of final records:
	// what the next commit commits.
	ready kgo.EpochOffset
	hw    int64 // high watermark, from the last fetch
	// next is the offset the next fetched record must have (-1: not
	// known): the group's committed offset at assignment, then the last
	// record's plus one. A record past it means records the broker no
	// longer holds (expired or deleted) that no relay delivered.
	next int64
}

type entryState int

const (
	free entryState = iota
	leased
	final
)

type entry struct {
	seq      uint64
	rec      *kgo.Record
	ev       Record
	state    entryState
	attempts int
	lastErr  string
}

type relayCounters struct {
	delivered, duplicates, deadLetters, malformed, commits, commitErrors int64
	lastCommitErr                                                        string
	lastFetchErr                                                         string
	rebalances                                                           int64
	expired                                                              int64
}

var _ forwarder.Queue = (*Relay)(nil)

// NewRelay joins the group (in the background) and starts fetching.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = 2000
	}
	if cfg.SettleWait <= 0 {
		cfg.SettleWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dedupe == nil {
		return nil, errors.New("relay: no de-duplication store")
	}
	r := &Relay{cfg: cfg, log: cfg.Logger.With("component", "relay"), wake: make(chan struct{}, 1), commit: make(chan struct{}, 1),
		settled: make(chan struct{}), parts: map[int32]*partState{}, bySeq: map[uint64]*entry{}}
	opts, err := cfg.Conn.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, fetchOptions()...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		// A new group starts at the beginning: records produced before
		// any relay existed are the backlog, not history.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until a poll's records are in the buffer, so a
		// revoke never races one.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(r.assigned),
		kgo.AdjustFetchOffsetsFn(r.adjust),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		// A relay that dies hands its partitions over within 10 s
		// (Kafka's default is 45 s).
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		// How long a rebalance waits for every member to rejoin: a member
		// killed mid-rebalance holds the others for this long at most
		// (franz-go's default is 60 s; a revoke here takes at most 10 s).
		kgo.RebalanceTimeout(20*time.Second),
		// Dead letters: the same guarantee as the agents' records.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordRetries(int(^uint(0)>>1)),
		kgo.RecordDeliveryTimeout(0),
	)
	opts = append(opts, cfg.Options...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	r.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.poll(ctx)
	}()
	go func() {
		defer r.wg.Done()
		r.committer(ctx)
	}()
	return r, nil
}

// committer commits, off the delivery path, whatever became final: a
// coordinator that is slow or away delays the commits, never the
// deliveries (and the commits, being cumulative, catch up).
func (r *Relay) committer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.commit:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.commitAll(cctx)
		cancel()
	}
}

// askCommit wakes the committer.
func (r *Relay) askCommit() {
	select {
	case r.commit <- struct{}{}:
	default:
	}
}

// Wake is signalled when records arrive (the forwarder's Config.Wake).
func (r *Relay) Wake() <-chan struct{} { return r.wake }

// Client is the relay's client (its status publisher produces with it).
func (r *Relay) Client() *kgo.Client { return r.cl }

func (r *Relay) poll(ctx context.Context) {
	var lastErr string
	for ctx.Err() == nil {
		r.mu.Lock()
		room := r.cfg.MaxBuffered - r.buffered
		settled := r.settled
		r.mu.Unlock()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-settled:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		fs := r.cl.PollRecords(ctx, room)
		if fs.IsClientClosed() {
			return
		}
		for _, e := range fs.Errors() {
			if errors.Is(e.Err, context.Canceled) {
				continue
			}
			msg := fmt.Sprintf("fetch %s[%d]: %v", e.Topic, e.Partition, e.Err)
			if msg != lastErr {
				r.log.Warn("fetch failed", "topic", e.Topic, "partition", e.Partition, "err", e.Err)
				lastErr = msg
			}
			r.mu.Lock()
			r.st.lastFetchErr = msg
			r.mu.Unlock()
		}
		var bad []*entry
		n := 0
		r.mu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			ps := r.parts[p.Partition]
			if ps == nil {
				return // not ours (revoked while fetched): never happens with BlockRebalanceOnPoll
			}
			ps.hw = p.HighWatermark
			for _, rec := range p.Records {
				if ps.next >= 0 && rec.Offset > ps.next {
					// franz-go resets a fetch offset the broker no
					// longer holds to the log start, without a word.
					gap := rec.Offset - ps.next
					r.st.expired += gap
					r.log.Error("actions gone from Kafka before a relay delivered them: the topic's retention is shorter than the relays' outage, or they were deleted",
						"topic", p.Topic, "partition", p.Partition, "first_offset", ps.next, "last_offset", rec.Offset-1, "records", gap)
				}
				ps.next = rec.Offset + 1
				e := &entry{seq: r.nextSeq, rec: rec}
				r.nextSeq++
				ev, err := Decode(rec.Value)
				if err == nil && ev.Queue != "tencent" {
					err = fmt.Errorf("%w: queue %q on the actions topic", ErrMalformed, ev.Queue)
				}
				e.ev = ev
				ps.entries = append(ps.entries, e)
				r.bySeq[e.seq] = e
				r.buffered++
				if err != nil {
					e.state, e.lastErr = leased, err.Error()
					bad = append(bad, e)
					continue
				}
				n++
			}
		})
		r.mu.Unlock()
		r.cl.AllowRebalance()
		if len(bad) > 0 {
			// A record no relay can read will never be delivered: set
			// aside, with why.
			r.mu.Lock()
			r.st.malformed += int64(len(bad))
			r.mu.Unlock()
			for _, e := range bad {
				if err := r.deadLetter(ctx, []*entry{e}, "malformed record: "+e.lastErr); err != nil {
					r.log.Error("dead-lettering a malformed record failed", "partition", e.rec.Partition, "offset", e.rec.Offset, "err", err)
				}
			}
			r.askCommit()
		}
		if n > 0 {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (r *Relay) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.rebalances++
	for _, p := range m[r.cfg.Topic] {
		r.part(p)
	}
	r.log.Info("partitions assigned", "partitions", fmt.Sprint(m[r.cfg.Topic]))
}

// part is partition p's state, new if the relay has none. Called with mu
// held.
func (r *Relay) part(p int32) *partState {
	ps := r.parts[p]
	if ps == nil {
		ps = &partState{committed: -1, hw: -1, ready: kgo.EpochOffset{Epoch: -1, Offset: -1}, next: -1}
		r.parts[p] = ps
	}
	return ps
}

// adjust hears the offsets the group resumes from, before the first
// fetch: each partition's committed offset is where its records must
// continue (a partition never committed starts at the log start, and
// what expired before this group read it is not known here).
func (r *Relay) adjust(_ context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, o := range m[r.cfg.Topic] {
		if eo := o.EpochOffset(); eo.Offset >= 0 {
			r.part(p).next = eo.Offset
		}
	}
	return m, nil
}

// revoked: records in flight to Tencent get up to SettleWait for their
// verdict, what is final is committed, and the rest is dropped: the next
// owner reads it again from the committed offset.
func (r *Relay) revoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	ps := m[r.cfg.Topic]
	if len(ps) == 0 {
		return
	}
	deadline := time.After(r.cfg.SettleWait)
	for {
		r.mu.Lock()
		busy := false
		for _, p := range ps {
			if st := r.parts[p]; st != nil {
				for _, e := range st.entries {
					busy = busy || e.state == leased
				}
			}
		}
		settled := r.settled
		r.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-settled:
			continue
		case <-deadline:
		case <-ctx.Done():
		}
		break
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	r.commitPartitions(cctx, ps)
	cancel()
	r.drop(ps, "revoked")
}

// lost: the group is gone (session expired): commits would be refused;
// drop everything of those partitions.
func (r *Relay) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	r.drop(m[r.cfg.Topic], "lost")
}

func (r *Relay) drop(ps []int32, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := 0
	for _, p := range ps {
		st := r.parts[p]
		if st == nil {
			continue
		}
		for _, e := range st.entries {
			delete(r.bySeq, e.seq)
			if e.state != final {
				r.buffered--
				dropped++
			}
		}
		delete(r.parts, p)
	}
	r.signal()
	if dropped > 0 {
		r.log.Info("partitions "+why+": records without a verdict left to the next owner", "partitions", fmt.Sprint(ps), "records", dropped)
	}
}

// signal wakes whoever waits for a verdict. Called with r.mu held.
func (r *Relay) signal() {
	close(r.settled)
	r.settled = make(chan struct{})
}

// Lease hands out records without a verdict, oldest first in each
// partition, partitions in turn.
func (r *Relay) Lease(ctx context.Context, _ string, max int, maxBytes int) ([]spool.Entry, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out, dups, err := r.lease(max, maxBytes)
	if dups > 0 {
		r.askCommit() // skipped duplicates are final: their offsets may move
	}
	return out, err
}

func (r *Relay) lease(max int, maxBytes int) (out []spool.Entry, dups int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ids = append(ids, p)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	bytes := 0
	// Round-robin from a moving start, so that no partition waits behind
	// a busy one.
	start := 0
	if len(ids) > 0 {
		start = int(r.nextSeq) % len(ids)
	}
	for k := range ids {
		st := r.parts[ids[(start+k)%len(ids)]]
		for _, e := range st.entries {
			if len(out) == max {
				return out, dups, nil
			}
			if e.state != free {
				continue
			}
			if len(out) > 0 && bytes+len(e.ev.Payload) > maxBytes {
				return out, dups, nil
			}
			// Delivered before (by this relay, before a restart): final at
			// once.
			if id, ok, err := r.cfg.Dedupe.Delivered(e.ev.EventID); err != nil {
				return out, dups, fmt.Errorf("relay lease: %w", err)
			} else if ok && id == e.ev.ID {
				e.state = final
				r.buffered--
				r.st.duplicates++
				dups++
				continue
			}
			e.state = leased
			bytes += len(e.ev.Payload)
			out = append(out, spool.Entry{Queue: "tencent", Seq: e.seq, ID: e.ev.ID, Payload: e.ev.Payload,
				EnqueuedAt: e.ev.EnqueuedAt, Attempts: e.attempts, LastError: e.lastErr})
		}
	}
	return out, dups, nil
}

func (r *Relay) take(seqs []uint64) []*entry {
	var out []*entry
	for _, s := range seqs {
		if e := r.bySeq[s]; e != nil && e.state == leased {
			out = append(out, e)
		}
	}
	return out
}

// Ack: delivered. Remembered (durably) for de-duplication, then final,
// then the offsets move.
func (r *Relay) Ack(ctx context.Context, _ string, seqs []uint64) error {
	r.mu.Lock()
	es := r.take(seqs)
	ds := make([]Delivery, len(es))
	for i, e := range es {
		ds[i] = Delivery{EventID: e.ev.EventID, ID: e.ev.ID}
	}
	r.mu.Unlock()
	if len(es) == 0 {
		return nil
	}
	// Remembered before the offset is committed: a relay restarted after
	// the commit does not need it, one restarted before it skips these.
	err := r.cfg.Dedupe.Remember(ctx, ds)
	if err != nil {
		r.log.Error("remembering deliveries failed (a restart may deliver them again; Tencent de-duplicates by outer_action_id)", "err", err)
	}
	r.mu.Lock()
	r.st.delivered += r.finalLocked(es)
	r.mu.Unlock()
	r.askCommit()
	return nil
}

// Fail: a retryable failure; the record is handed out again.
func (r *Relay) Fail(_ context.Context, _ string, seqs []uint64, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.take(seqs) {
		e.state, e.attempts, e.lastErr = free, e.attempts+1, msg
	}
	r.signal()
	return nil
}

// Release gives records back untouched.
func (r *Relay) Release(_ string, seqs []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.take(seqs) {
		e.state = free
	}
	r.signal()
}

// DeadLetter produces the records to the dead-letter topic (acks from all
// in-sync replicas) before they count as final.
func (r *Relay) DeadLetter(ctx context.Context, _ string, seqs []uint64, reason string) error {
	r.mu.Lock()
	es := r.take(seqs)
	r.mu.Unlock()
	if len(es) == 0 {
		return nil
	}
	if err := r.deadLetter(ctx, es, reason); err != nil {
		r.Release("", seqs)
		return err
	}
	r.askCommit()
	return nil
}

func (r *Relay) deadLetter(ctx context.Context, es []*entry, reason string) error {
	recs := make([]*kgo.Record, len(es))
	for i, e := range es {
		hs := append([]kgo.RecordHeader{}, e.rec.Headers...)
		hs = append(hs,
			kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
			kgo.RecordHeader{Key: "source", Value: []byte(e.rec.Topic + "/" + strconv.Itoa(int(e.rec.Partition)) + "/" + strconv.FormatInt(e.rec.Offset, 10))},
			kgo.RecordHeader{Key: "relay-id", Value: []byte(r.cfg.RelayID)},
		)
		recs[i] = &kgo.Record{Topic: r.cfg.DeadLetterTopic, Key: e.rec.Key, Value: e.rec.Value, Headers: hs}
	}
	if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce dead letters to %s: %w", r.cfg.DeadLetterTopic, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.deadLetters += r.finalLocked(es)
	return nil
}

// finalLocked gives the entries still leased their final verdict (their
// offsets may now be committed), wakes whoever waits for room, and
// returns how many it made final. r.mu is held.
func (r *Relay) finalLocked(es []*entry) int64 {
	var n int64
	for _, e := range es {
		if e.state == leased {
			e.state = final
			r.buffered--
			n++
		}
	}
	r.signal()
	return n
}

// commit commits, for every partition, the offset after the contiguous
// prefix of final records.
func (r *Relay) commitAll(ctx context.Context) {
	r.mu.Lock()
	ps := make([]int32, 0, len(r.parts))
	for p := range r.parts {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	r.commitPartitions(ctx, ps)
}

func (r *Relay) commitPartitions(ctx context.Context, ps []int32) {
	offsets := map[int32]kgo.EpochOffset{}
	r.mu.Lock()
	for _, p := range ps {
		st := r.parts[p]
		if st == nil {
			continue
		}
		i := 0
		for i < len(st.entries) && st.entries[i].state == final {
			i++
		}
		if i > 0 {
			last := st.entries[i-1].rec
			for _, e := range st.entries[:i] {
				delete(r.bySeq, e.seq)
			}
			st.entries = append(st.entries[:0:0], st.entries[i:]...)
			st.ready = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
		}
		if st.ready.Offset > st.committed {
			offsets[p] = st.ready
		}
	}
	r.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	var cerr error
	r.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{r.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, e)
					}
				}
			}
		})
	r.mu.Lock()
	defer r.mu.Unlock()
	if cerr != nil {
		// The next commit carries these offsets too (commits are
		// cumulative); a partition lost meanwhile is re-read by its next
		// owner from the last commit that took.
		r.st.commitErrors++
		r.st.lastCommitErr = cerr.Error()
		return
	}
	r.st.commits++
	for p, o := range offsets {
		if st := r.parts[p]; st != nil && o.Offset > st.committed {
			st.committed = o.Offset
		}
	}
}

// Close stops fetching, commits what is final and leaves the group (its
// partitions go to the other relays at once). Stop the forwarder first.
func (r *Relay) Close(ctx context.Context) error {
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close relay: %w", ctx.Err())
	}
	r.commitAll(ctx)
	r.cl.Close() // leaves the group: revoked runs, commits again, drops the rest
	return nil
}

// RelayStatus is a relay's side, for its /v1/status and metrics.
type RelayStatus struct {
	RelayID    string            `json:"relay_id"`
	Group      string            `json:"group"`
	Topic      string            `json:"topic"`
	Partitions []PartitionStatus `json:"partitions"`
	// Buffered records are fetched and without a final verdict.
	Buffered      int    `json:"buffered"`
	Delivered     int64  `json:"delivered_total"`
	Duplicates    int64  `json:"duplicates_skipped_total"`
	DeadLetters   int64  `json:"dead_letters_total"`
	Malformed     int64  `json:"malformed_total"`
	Commits       int64  `json:"commits_total"`
	CommitErrors  int64  `json:"commit_errors_total"`
	LastCommitErr string `json:"last_commit_error,omitempty"`
	LastFetchErr  string `json:"last_fetch_error,omitempty"`
	Rebalances    int64  `json:"rebalances_total"`
	// Expired records were gone from the broker (retention, deletion)
	// when the relay came to fetch them: never delivered.
	Expired int64 `json:"expired_undelivered_total"`
}

// PartitionStatus is one assigned partition: its committed offset, the
// high watermark seen at the last fetch, and the lag between them (-1
// while unknown).
type PartitionStatus struct {
	Partition     int32 `json:"partition"`
	Committed     int64 `json:"committed_offset"`
	HighWatermark int64 `json:"high_watermark"`
	Lag           int64 `json:"lag"`
}

// Status is a snapshot.
func (r *Relay) Status() RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RelayStatus{RelayID: r.cfg.RelayID, Group: r.cfg.Group, Topic: r.cfg.Topic, Buffered: r.buffered,
		Delivered: r.st.delivered, Duplicates: r.st.duplicates, DeadLetters: r.st.deadLetters, Malformed: r.st.malformed,
		Commits: r.st.commits, CommitErrors: r.st.commitErrors, LastCommitErr: r.st.lastCommitErr,
		LastFetchErr: r.st.lastFetchErr, Rebalances: r.st.rebalances, Expired: r.st.expired, Partitions: []PartitionStatus{}}
	for p, ps := range r.parts {
		lag := int64(-1) // unknown until the first fetch
		if ps.hw >= 0 {
			lag = max(ps.hw-max(ps.committed, 0), 0)
		}
		st.Partitions = append(st.Partitions, PartitionStatus{Partition: p, Committed: ps.committed, HighWatermark: ps.hw, Lag: lag})
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	return st
}
