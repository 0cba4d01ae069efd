package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Append stores records durably and atomically: when it returns nil, every
// record is on disk (or was already there: a duplicate id within the
// dedupe window is not stored twice); when it returns an error, none is.
func (s *Spool) Append(ctx context.Context, recs []Record) (AppendResult, error) {
	if len(recs) == 0 {
		return AppendResult{}, nil
	}
	for _, r := range recs {
		if _, ok := s.queues[r.Queue]; !ok {
			return AppendResult{}, fmt.Errorf("append: %w %q", ErrUnknownQueue, r.Queue)
		}
		if r.ID == "" {
			return AppendResult{}, errors.New("append: record without id")
		}
	}
	o := &op{kind: opAppend, recs: recs}
	if err := s.submit(ctx, o); err != nil {
		return AppendResult{}, fmt.Errorf("append: %w", err)
	}
	return o.res, nil
}

// Lease hands out up to max entries (and about maxBytes of payload, at least
// one entry) from the head of a queue that are not already leased, oldest
// first. A lease lasts until Ack, Fail or DeadLetter of its seqs, or until
// the process ends: after a restart everything unacknowledged is handed out
// again (at-least-once).
func (s *Spool) Lease(ctx context.Context, queue string, max int, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	q, err := s.queue(queue)
	if err != nil || s.closed {
		s.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return nil, fmt.Errorf("lease: %w", err)
	}
	if q.meta.Count == 0 || max <= 0 {
		s.mu.Unlock()
		return nil, nil
	}
	from := q.next
	if from < q.meta.Head {
		from = q.meta.Head
	}
	rewinds, removals := q.rewinds, q.removals
	s.mu.Unlock()

	var out []Entry
	var bytes int
	var damaged []damagedEntry
	last := from
	err = s.db.View(func(txn *badger.Txn) error {
		it := entryIterator(txn, queue)
		defer it.Close()
	scan:
		for it.Seek(seqKey(kindEntry, queue, from)); it.Valid() && len(out) < max; it.Next() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			key, es, err := itemEntries(it)
			if err != nil {
				// A value the store cannot give back (a damaged or
				// truncated value log) would stop the queue here forever:
				// it is set aside as a dead letter, with the reason, and
				// the queue goes on.
				damaged = append(damaged, damagedEntry{key, err.Error()})
				continue
			}
			s.mu.Lock()
			for _, e := range es {
				if _, busy := q.inflight[e.seq]; busy || e.seq < from {
					continue
				}
				if len(out) == max || (len(out) > 0 && bytes+len(e.rec.Payload) > maxBytes) {
					s.mu.Unlock()
					break scan
				}
				bytes += len(e.rec.Payload)
				out = append(out, toEntry(queue, e.seq, e.rec))
				last = e.seq
			}
			s.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if len(damaged) > 0 {
		o := &op{kind: opDamaged, queue: queue, damaged: damaged}
		if err := s.submit(ctx, o); err != nil {
			return nil, fmt.Errorf("lease: setting aside %d unreadable entries: %w", len(damaged), err)
		}
		if o.report != nil {
			s.noteDamage(*o.report)
			logDamage(s.log, *o.report)
		}
	}
	s.mu.Lock()
	for q.removals != removals && len(out) > 0 {
		// Entries were deleted while we read: drop any that are gone, and
		// look again if more were deleted meanwhile.
		removals = q.removals
		s.mu.Unlock()
		out = s.stillThere(queue, out)
		s.mu.Lock()
	}
	kept := out[:0]
	for _, e := range out {
		if _, busy := q.inflight[e.Seq]; busy {
			continue // leased by a concurrent caller meanwhile
		}
		q.inflight[e.Seq] = storedSize(e.ID, len(e.Payload))
		kept = append(kept, e)
	}
	if len(out) > 0 && last+1 > q.next && q.rewinds == rewinds {
		q.next = last + 1
	}
	s.mu.Unlock()
	return kept, nil
}

func toEntry(queue string, seq uint64, r record) Entry {
	return Entry{
		Queue: queue, Seq: seq, ID: r.ID, Payload: r.Payload,
		EnqueuedAt: fromNano(r.EnqueuedAt), Attempts: int(r.Attempts),
		LastAttemptAt: fromNano(r.LastAttemptAt), LastError: r.LastError,
		Reason: r.Reason, DeadAt: fromNano(r.DeadAt),
	}
}

// Ack removes delivered entries. Acknowledging an entry twice is harmless.
func (s *Spool) Ack(ctx context.Context, queue string, seqs []uint64) error {
	return s.seqOp(ctx, &op{kind: opAck, queue: queue, seqs: seqs}, "ack")
}

// Fail records a failed delivery attempt (attempt count, time and a message
// that must already be free of secrets) and releases the lease, so the
// entries are handed out again, first.
func (s *Spool) Fail(ctx context.Context, queue string, seqs []uint64, msg string) error {
	return s.seqOp(ctx, &op{kind: opFail, queue: queue, seqs: seqs, msg: msg, release: true}, "record failure")
}

// Release gives leased entries back without counting an attempt (the
// upstream is paused, the worker stops).
func (s *Spool) Release(queue string, seqs []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[queue]
	if !ok {
		return
	}
	q.rewinds++
	for _, seq := range seqs {
		delete(q.inflight, seq)
		if seq < q.next {
			q.next = seq
		}
	}
}

// DeadLetter moves entries to the queue's dead letters with a reason (free of
// secrets). They stay there until replayed.
func (s *Spool) DeadLetter(ctx context.Context, queue string, seqs []uint64, reason string) error {
	return s.seqOp(ctx, &op{kind: opDead, queue: queue, seqs: seqs, msg: reason}, "dead-letter")
}

func (s *Spool) seqOp(ctx context.Context, o *op, what string) error {
	if _, ok := s.queues[o.queue]; !ok {
		return fmt.Errorf("%s: %w %q", what, ErrUnknownQueue, o.queue)
	}
	if len(o.seqs) == 0 {
		return nil
	}
	if err := s.submit(ctx, o); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Replay moves dead letters back to the tail of their queue (with their
// attempt count reset): the ones with the given ids, or all. It returns how
// many moved.
func (s *Spool) Replay(ctx context.Context, queue string, ids []string, all bool) (int, error) {
	if _, ok := s.queues[queue]; !ok {
		return 0, fmt.Errorf("replay: %w %q", ErrUnknownQueue, queue)
	}
	total := 0
	limit := s.replayBatch()
	for {
		o := &op{kind: opReplay, queue: queue, ids: ids, all: all, limit: limit}
		if err := s.submit(ctx, o); err != nil {
			return total, fmt.Errorf("replay: %w", err)
		}
		total += o.n
		if o.n < limit {
			return total, nil
		}
	}
}

// replayBatch is how many dead letters one replay commit may move:
// maxReplay, or fewer when badger's transactions are smaller (their limits
// follow MemTableSize; with 8 MiB 1000 fit, below about 2 MiB
// they would not, and every Replay failed with ErrTooLarge).
func (s *Spool) replayBatch() int {
	maxCount := s.db.MaxBatchCount() * 8 / 10 // as the committer counts
	maxSize := s.db.MaxBatchSize() * 8 / 10
	n := min(int64(maxReplay), (maxSize-256)/256-1, (maxCount-4)/2-1)
	return int(max(n, 1))
}

// DeadLetters lists up to limit dead letters of a queue with seq > after.
func (s *Spool) DeadLetters(queue string, after uint64, limit int) ([]Entry, error) {
	if _, ok := s.queues[queue]; !ok {
		return nil, fmt.Errorf("dead letters: %w %q", ErrUnknownQueue, queue)
	}
	var out []Entry
	err := s.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		opt.Prefix = prefix(kindDead, queue)
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Seek(seqKey(kindDead, queue, after+1)); it.Valid() && len(out) < limit; it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out = append(out, toEntry(queue, seqFromKey(it.Item().Key()), r))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// Stats returns each queue's counters. The age of the oldest entry costs one
// seek from the head cursor per queue.
func (s *Spool) Stats() map[string]QueueStats {
	out := make(map[string]QueueStats, len(s.queues))
	now := s.now()
	for name, q := range s.queues {
		s.mu.Lock()
		m, inflight := q.meta, len(q.inflight)
		s.mu.Unlock()
		st := QueueStats{Depth: m.Count, Bytes: m.Bytes, InFlight: inflight, DeadLetters: m.DeadCount, DeadBytes: m.DeadBytes}
		if m.Count > 0 {
			if t, ok := s.oldest(name, m.Head); ok {
				st.OldestAgeSeconds = max(0, now.Sub(t).Seconds())
			}
		}
		out[name] = st
	}
	return out
}

func (s *Spool) oldest(queue string, head uint64) (time.Time, bool) {
	var t time.Time
	found := false
	_ = s.db.View(func(txn *badger.Txn) error {
		it := entryIterator(txn, queue)
		defer it.Close()
		it.Seek(seqKey(kindEntry, queue, head))
		if !it.Valid() {
			return nil
		}
		key := seqFromKey(it.Item().Key())
		return it.Item().Value(func(v []byte) error {
			e, ok, err := firstEntry(key, v, head)
			if err == nil && ok {
				t, found = fromNano(e.rec.EnqueuedAt), true
			}
			return nil
		})
	})
	return t, found
}

// TotalBytes is what counts against MaxBytes now.
func (s *Spool) TotalBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t int64
	for _, q := range s.queues {
		t += q.meta.Bytes + q.meta.DeadBytes
	}
	return t
}

// Probe makes a small synced write: it proves the store is open and
// writable right now (for readiness).
func (s *Spool) Probe(ctx context.Context) error {
	if err := s.submit(ctx, &op{kind: opProbe}); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// stillThere keeps the entries that are still in the queue. es are in
// seq order, as Lease hands them out.
func (s *Spool) stillThere(queue string, es []Entry) []Entry {
	kept := es[:0]
	s.mu.Lock()
	head := s.queues[queue].meta.Head // a commit that moves it meanwhile makes Lease look again
	s.mu.Unlock()
	_ = s.db.View(func(txn *badger.Txn) error {
		it := entryIterator(txn, queue)
		defer it.Close()
		var (
			key  uint64
			live map[uint64]bool
		)
		for _, e := range es {
			if live == nil || e.Seq > key {
				it.Seek(seqKey(kindEntry, queue, e.Seq))
				if !it.Valid() {
					break
				}
				key = seqFromKey(it.Item().Key())
				live = map[uint64]bool{}
				_ = it.Item().Value(func(v []byte) error {
					cs, err := decodeEntries(key, v)
					for _, c := range cs {
						live[c.seq] = true
					}
					return err
				})
			}
			if live[e.Seq] && e.Seq >= head {
				kept = append(kept, e)
			}
		}
		return nil
	})
	return kept
}
