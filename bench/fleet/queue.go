package main

import (
	"context"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// memQueue is the spool as the forwarder sees it, in memory.
type memQueue struct {
	mu       sync.Mutex
	entries  []spool.Entry // FIFO, by seq
	inflight map[uint64]bool
	acked    int
	dead     int // dead-lettered: taken out of the queue undelivered
	doneAt   time.Time
	now      func() time.Time // for doneAt (default time.Now)
}

func newMemQueue() *memQueue { return &memQueue{inflight: map[uint64]bool{}, now: time.Now} }

func (q *memQueue) Lease(ctx context.Context, _ string, max, _ int) ([]spool.Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []spool.Entry
	for _, e := range q.entries {
		if len(out) == max {
			break
		}
		if !q.inflight[e.Seq] {
			q.inflight[e.Seq] = true
			out = append(out, e)
		}
	}
	return out, nil
}

func (q *memQueue) remove(seqs []uint64) {
	drop := map[uint64]bool{}
	for _, s := range seqs {
		drop[s] = true
		delete(q.inflight, s)
	}
	kept := q.entries[:0]
	for _, e := range q.entries {
		if !drop[e.Seq] {
			kept = append(kept, e)
		}
	}
	q.entries = kept
}

func (q *memQueue) Ack(_ context.Context, _ string, seqs []uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(seqs)
	q.acked += len(seqs)
	q.settled()
	return nil
}

func (q *memQueue) DeadLetter(_ context.Context, _ string, seqs []uint64, _ string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(seqs)
	q.dead += len(seqs)
	q.settled()
	return nil
}

func (q *memQueue) settled() {
	if len(q.entries) == 0 && q.doneAt.IsZero() {
		q.doneAt = q.now()
	}
}

func (q *memQueue) Fail(_ context.Context, _ string, seqs []uint64, _ string) error {
	q.Release("", seqs)
	return nil
}

func (q *memQueue) Release(_ string, seqs []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range seqs {
		delete(q.inflight, s)
	}
}

// state is what the fleet's sampler reads: items delivered, dead-lettered,
// and left.
func (q *memQueue) state() (acked, dead, left int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked, q.dead, len(q.entries)
}
