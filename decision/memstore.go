package decision

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// MemStore is a Store in memory: nothing survives the process. It keeps
// to Store's contract as SpoolStore does, TTLs included (on its own
// clock), and holds the records a commit queues; for tests, and for
// tools that decide without a data directory. Safe for concurrent use.
type MemStore struct {
	now func() time.Time

	mu        sync.Mutex
	maxQueued int // records held before Commit refuses with spool.ErrFull; 0: no cap
	closed    bool
	records   map[string]memValue
	late      map[string]map[string]memValue       // decision id -> kind ->
	scores    map[string]memValue                  // cache key ->
	velocity  map[[2]string]map[memEvent]time.Time // (counter, subject) -> event -> expiry (zero: never)
	queued    map[string][]spool.Record
	queuedIDs map[[2]string]bool // (queue, id): a record queued again is a duplicate, as in the spool
}

type memValue struct {
	v       []byte
	expires time.Time // zero: never
}

type memEvent struct {
	at int64 // unix nanos
	id string
}

// MemStoreOptions configure a MemStore.
type MemStoreOptions struct {
	// Clock tells the time TTLs run on (default time.Now).
	Clock func() time.Time
	// MaxQueued caps the records held on all queues together: past it a
	// commit that queues records fails with spool.ErrFull, as a full
	// spool does. 0: no cap.
	MaxQueued int
}

// NewMemStore returns an empty MemStore.
func NewMemStore(o MemStoreOptions) *MemStore {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &MemStore{now: o.Clock, maxQueued: o.MaxQueued,
		records: map[string]memValue{}, late: map[string]map[string]memValue{}, scores: map[string]memValue{},
		velocity: map[[2]string]map[memEvent]time.Time{}, queued: map[string][]spool.Record{}, queuedIDs: map[[2]string]bool{}}
}

var _ Store = (*MemStore)(nil)

func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

func live(expires, now time.Time) bool { return expires.IsZero() || now.Before(expires) }

// copyBytes keeps what a commit wrote safe from its caller's later edits.
func copyBytes(b []byte) []byte { return append([]byte(nil), b...) }

// Commit stores c, all of it or (with an error) none of it.
func (m *MemStore) Commit(ctx context.Context, c *Commit) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("write: %w", spool.ErrClosed)
	}
	// Checked before anything is written: all or nothing.
	var fresh []spool.Record
	for _, r := range c.Queue {
		k := [2]string{r.Queue, r.ID}
		if !m.queuedIDs[k] && !slices.ContainsFunc(fresh, func(f spool.Record) bool { return f.Queue == r.Queue && f.ID == r.ID }) {
			fresh = append(fresh, r)
		}
	}
	if m.maxQueued > 0 && len(fresh) > 0 && m.queuedLen()+len(fresh) > m.maxQueued {
		return fmt.Errorf("write: %w", spool.ErrFull)
	}
	now := m.now()
	for _, r := range fresh {
		m.queuedIDs[[2]string{r.Queue, r.ID}] = true
		m.queued[r.Queue] = append(m.queued[r.Queue], spool.Record{Queue: r.Queue, ID: r.ID, Payload: copyBytes(r.Payload)})
	}
	for _, e := range c.Scores {
		m.scores[e.Key] = memValue{copyBytes(e.Entry), expiry(now, e.TTL)}
	}
	for _, v := range c.Velocity {
		k := [2]string{v.Counter, v.Subject}
		evs := m.velocity[k]
		if evs == nil {
			evs = map[memEvent]time.Time{}
			m.velocity[k] = evs
		}
		for ev, exp := range evs { // what has expired goes, so memory follows the windows
			if !live(exp, now) {
				delete(evs, ev)
			}
		}
		evs[memEvent{v.At.UnixNano(), v.DecisionID}] = expiry(now, v.TTL)
	}
	for _, l := range c.Late {
		kinds := m.late[l.DecisionID]
		if kinds == nil {
			kinds = map[string]memValue{}
			m.late[l.DecisionID] = kinds
		}
		kinds[l.Kind] = memValue{copyBytes(l.Verdict), expiry(now, l.TTL)}
	}
	if c.Record.ID != "" {
		m.records[c.Record.ID] = memValue{copyBytes(c.Record.Record), expiry(now, c.Record.TTL)}
	}
	return nil
}

func (m *MemStore) queuedLen() int {
	n := 0
	for _, rs := range m.queued {
		n += len(rs)
	}
	return n
}

// Decision returns the record of decision id.
func (m *MemStore) Decision(id string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.records[id]
	if !ok || !live(v.expires, m.now()) {
		return nil, false, nil
	}
	return copyBytes(v.v), true, nil
}

// LateVerdicts calls fn with decision id's late verdicts, in order of
// kind.
func (m *MemStore) LateVerdicts(id string, fn func(kind string, verdict []byte) bool) error {
	m.mu.Lock()
	now := m.now()
	kinds := make([]string, 0, len(m.late[id]))
	vs := map[string][]byte{}
	for k, v := range m.late[id] {
		if live(v.expires, now) {
			kinds = append(kinds, k)
			vs[k] = copyBytes(v.v)
		}
	}
	m.mu.Unlock()
	slices.Sort(kinds)
	for _, k := range kinds { // fn runs unlocked: it may read the store
		if !fn(k, vs[k]) {
			break
		}
	}
	return nil
}

// VelocityEvents returns the times of counter's live events for subject
// at or after since.
func (m *MemStore) VelocityEvents(counter, subject string, since time.Time) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, from := m.now(), since.UnixNano()
	var ts []int64
	for ev, exp := range m.velocity[[2]string{counter, subject}] {
		if ev.at >= from && live(exp, now) {
			ts = append(ts, ev.at)
		}
	}
	return ts, nil
}

// Score returns the score-cache entry under key.
func (m *MemStore) Score(key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.scores[key]
	if !ok || !live(v.expires, m.now()) {
		return nil, false, nil
	}
	return copyBytes(v.v), true, nil
}

// Queued returns a copy of the records committed on queue, in order.
func (m *MemStore) Queued(queue string) []spool.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.queued[queue])
}

// Close makes later commits fail with spool.ErrClosed, as a closed spool
// does; what is stored can still be read.
func (m *MemStore) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}
