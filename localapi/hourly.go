package localapi

import (
	"sync"
	"time"
)

// hourly counts decisions by result over the last hour in one-minute
// buckets, for the status page and `agent status`.
type hourly struct {
	mu      sync.Mutex
	buckets [60]struct {
		minute int64
		counts map[string]int64
	}
}

func (h *hourly) add(result string, now time.Time) {
	m := now.Unix() / 60
	h.mu.Lock()
	defer h.mu.Unlock()
	b := &h.buckets[m%60]
	if b.minute != m || b.counts == nil {
		b.minute, b.counts = m, map[string]int64{}
	}
	b.counts[result]++
}

func (h *hourly) sum(now time.Time) map[string]int64 {
	m := now.Unix() / 60
	out := map[string]int64{"accept": 0, "review": 0, "decline": 0}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.buckets {
		if b.counts != nil && m-b.minute < 60 {
			for k, v := range b.counts {
				out[k] += v
			}
		}
	}
	return out
}
