package decision

import (
	"encoding/json"
	"sync"
	"time"
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
// full it drops an arbitrary entry (Go's map order), which costs a store
// read later, never a wrong answer.
type memCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cached
	neg     map[string]time.Time // key -> error remembered until
}

func newMemCache(max int) *memCache {
	return &memCache{max: max, entries: map[string]cached{}, neg: map[string]time.Time{}}
}

func (m *memCache) get(k string) (cached, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.entries[k]
	return c, ok
}

func (m *memCache) put(k string, c cached) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[k]; !ok && len(m.entries) >= m.max {
		for victim := range m.entries {
			delete(m.entries, victim)
			break
		}
	}
	m.entries[k] = c
	delete(m.neg, k)
}

func (m *memCache) failed(k string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.neg) > m.max {
		clear(m.neg)
	}
	m.neg[k] = until
}

func (m *memCache) negative(k string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.neg[k]
	return ok && now.Before(until)
}

func encodeCached(c cached) []byte {
	b, _ := json.Marshal(c)
	return b
}
