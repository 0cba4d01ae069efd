package localapi

import (
	"sync"
	"time"
)

// historyMinutes is how far back the status page's charts reach.
const historyMinutes = 60

// decisionResults are the results a decision can have, in the order the
// status page shows them.
var decisionResults = [...]string{"accept", "review", "decline"}

// History counts, per minute over the last hour, the agent's own outcomes
// that the status page charts: actions queued (acknowledged), delivered to
// Tencent and refused, and decisions by result; and the same since start.
// The API feeds what it answers; the forwarder's wiring feeds deliveries
// (Delivered). Safe for concurrent use.
type History struct {
	now func() time.Time

	mu      sync.Mutex
	minutes [historyMinutes]minuteCounts
	total   counts
}

type counts struct {
	queued, duplicates, refused, delivered int64
	decisions                              [len(decisionResults)]int64
}

type minuteCounts struct {
	minute int64 // Unix minute this bucket counts; another: stale
	counts
}

// NewHistory returns an empty History on the clock now (time.Now if nil).
func NewHistory(now func() time.Time) *History {
	if now == nil {
		now = time.Now
	}
	return &History{now: now}
}

// add applies f to this minute's bucket and to the totals.
func (h *History) add(f func(*counts)) {
	m := h.now().Unix() / 60
	h.mu.Lock()
	defer h.mu.Unlock()
	b := &h.minutes[m%historyMinutes]
	if b.minute != m {
		*b = minuteCounts{minute: m}
	}
	f(&b.counts)
	f(&h.total)
}

// Queued counts n actions acknowledged (stored), dup of them duplicates.
func (h *History) Queued(n, dup int) {
	h.add(func(c *counts) { c.queued += int64(n); c.duplicates += int64(dup) })
}

// Refused counts n actions refused (an invalid request counts 1: its
// actions are not known).
func (h *History) Refused(n int) { h.add(func(c *counts) { c.refused += int64(n) }) }

// Delivered counts n actions an upstream confirmed.
func (h *History) Delivered(n int) { h.add(func(c *counts) { c.delivered += int64(n) }) }

// Decided counts one decision with its result.
func (h *History) Decided(result string) {
	for i, r := range decisionResults {
		if r == result {
			h.add(func(c *counts) { c.decisions[i]++ })
			return
		}
	}
}

// ActionTotals are the actions counted since the agent started.
type ActionTotals struct {
	Accepted   int64 `json:"accepted_total"`
	Duplicates int64 `json:"duplicates_total"`
	Refused    int64 `json:"refused_total"`
	Delivered  int64 `json:"delivered_total"`
}

// LastHour is one count a minute, oldest first: index 59 is the current
// minute (partly over), index 0 the minute that began 59 minutes before it.
type LastHour struct {
	// From is the start of the first minute.
	From      time.Time          `json:"from"`
	Queued    []int64            `json:"queued"`
	Delivered []int64            `json:"delivered"`
	Refused   []int64            `json:"refused"`
	Decisions map[string][]int64 `json:"decisions"`
}

// snapshot returns the totals, the last hour minute by minute, and the
// decisions of the last hour by result.
func (h *History) snapshot() (ActionTotals, LastHour, map[string]int64) {
	now := h.now().Unix() / 60
	lh := LastHour{
		From:      time.Unix((now-historyMinutes+1)*60, 0).UTC(),
		Queued:    make([]int64, historyMinutes),
		Delivered: make([]int64, historyMinutes),
		Refused:   make([]int64, historyMinutes),
		Decisions: map[string][]int64{},
	}
	sum := map[string]int64{}
	for _, r := range decisionResults {
		lh.Decisions[r] = make([]int64, historyMinutes)
		sum[r] = 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range historyMinutes {
		m := now - historyMinutes + 1 + int64(i)
		b := &h.minutes[((m%historyMinutes)+historyMinutes)%historyMinutes]
		if b.minute != m {
			continue
		}
		lh.Queued[i], lh.Delivered[i], lh.Refused[i] = b.queued, b.delivered, b.refused
		for j, r := range decisionResults {
			lh.Decisions[r][i] = b.decisions[j]
			sum[r] += b.decisions[j]
		}
	}
	t := h.total
	return ActionTotals{Accepted: t.queued, Duplicates: t.duplicates, Refused: t.refused, Delivered: t.delivered}, lh, sum
}
