package decision

import (
	"encoding/json"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// SourcePolicy is the cache policy of one signal source: fresh for TTL,
// served stale (with a background refresh) until MaxStale, and an error
// remembered for NegativeTTL so a failing upstream is not asked again for
// every request (in the spirit of RFC 5861's stale-while-revalidate and
// stale-if-error).
type SourcePolicy struct {
	TTL         time.Duration
	MaxStale    time.Duration
	NegativeTTL time.Duration
}

// cached is a stored score-cache entry.
type cached struct {
	At         time.Time `json:"at"`
	Score      int       `json:"score"`
	Result     string    `json:"result,omitempty"`
	Reasons    []reason  `json:"reasons,omitempty"`
	SequenceID string    `json:"sequence_id,omitempty"`
}

type reason struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// memCache fronts the store: hits never touch badger. It is bounded; when
// full it drops the least recently used entry, which costs a store read
// later, never a wrong answer. Whether an entry is fresh, stale or past use
// is decided by its At against its source's policy, on the engine's clock.
//
// absent remembers keys the store was read for and did not hold: every
// score the store gets is put here first (the engine is its only writer),
// which takes the key out of absent, so a key in absent is not in the
// store and a second decision for it does not read badger again (a read
// that misses cost 14 of a decision's 400 µs on one connection with no
// TongDun configured: BENCHMARKS.md, session 13). Bounded by absentMax.
type memCache struct {
	entries *lru.Cache[string, cached]
	neg     *lru.Cache[string, time.Time] // key -> error remembered until
	absent  *lru.Cache[string, struct{}]
}

// absentMax bounds the keys known to be absent: about 150 bytes each.
const absentMax = 20_000

func newMemCache(max int) *memCache {
	entries, err := lru.New[string, cached](max)
	if err != nil {
		panic(err) // max <= 0: a programming error
	}
	neg, _ := lru.New[string, time.Time](max)
	absent, _ := lru.New[string, struct{}](min(max, absentMax))
	return &memCache{entries: entries, neg: neg, absent: absent}
}

func (m *memCache) get(k string) (cached, bool) { return m.entries.Get(k) }

func (m *memCache) put(k string, c cached) {
	// entries first: a notStored racing with this put sees the entry, or
	// its mark is removed here after it (see notStored).
	m.entries.Add(k, c)
	m.absent.Remove(k)
	m.neg.Remove(k)
}

// isAbsent reports whether the store was found not to hold k since.
func (m *memCache) isAbsent(k string) bool { return m.absent.Contains(k) }

// notStored records that the store does not hold k. A put of k may have
// raced with the read that missed: if its entry is here, the mark is
// taken back, so k is never both put and marked absent (which, once the
// entry was evicted, would hide a stored score).
func (m *memCache) notStored(k string) {
	m.absent.Add(k, struct{}{})
	if m.entries.Contains(k) {
		m.absent.Remove(k)
	}
}

func (m *memCache) failed(k string, until time.Time) { m.neg.Add(k, until) }

func (m *memCache) negative(k string, now time.Time) bool {
	until, ok := m.neg.Get(k)
	return ok && now.Before(until)
}

func encodeCached(c cached) []byte {
	b, _ := json.Marshal(c)
	return b
}
