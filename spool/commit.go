package spool

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/journal"
)

const (
	// valueThreshold: values this big or bigger go to the value log.
	valueThreshold = 64
	// maxReplay bounds the dead letters moved back by one commit.
	maxReplay = 1000
)

type opKind int

const (
	opAppend opKind = iota
	opAck
	opFail
	opDead
	opReplay
	opProbe
	opPut
	opDamaged
	opRescue
)

// op is one caller's request to the committer. The committer applies many
// ops in one transaction and answers each on done after the commit.
type op struct {
	kind    opKind
	recs    []Record
	kvs     []KV
	damaged []damagedEntry
	queue   string
	seqs    []uint64
	msg     string   // failure message or dead-letter reason
	ids     []string // replay: these ids (nil with all)
	all     bool
	limit   int  // replay: most dead letters to move in this commit
	release bool // fail: attempts are counted; the lease is released
	// unsynced: answered before the journal's sync (Options.PutSyncWithin)
	unsynced bool
	report   *DamageReport // damaged, rescue: what was found and what it cost
	rescue   []rescued     // rescue: values to write again (gc_rescue.go)

	// results
	res  AppendResult
	n    int
	err  error
	done chan struct{}
}

func (s *Spool) submit(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	// Sending under the lock orders it before Close's close(s.ops).
	select {
	case s.ops <- o:
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		// The buffer is full: wait, but without holding the lock. Close may
		// not close the channel while we might send, so re-check.
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Microsecond):
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return ErrClosed
			}
			select {
			case s.ops <- o:
				s.mu.Unlock()
				goto sent
			default:
				s.mu.Unlock()
			}
		}
	}
sent:
	// Once handed over, the op is committed or failed by the committer even
	// if ctx ends: the caller's answer must match what is on disk, so wait.
	<-o.done
	return o.err
}

// commitLoop is the single writer. It takes the first waiting op, then every
// op already waiting (up to the transaction's limits), applies them all in
// one transaction and commits it with one sync. While a commit is on disk,
// new ops pile up and go into the next one: batching grows with load and
// costs no latency when idle.
func (s *Spool) commitLoop() {
	defer s.wg.Done()
	maxCount := s.db.MaxBatchCount() * 8 / 10
	maxSize := s.db.MaxBatchSize() * 8 / 10
	var (
		carry *op
		wave  waveTracker
		timer = time.NewTimer(time.Hour)
		// syncDue fires when the oldest commit answered before its sync
		// must be synced (Options.PutSyncWithin); nil when none waits.
		syncDue <-chan time.Time
		syncBy  time.Time
		syncT   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	syncT.Stop()
	for {
		first := carry
		carry = nil
		for first == nil {
			select {
			case o, ok := <-s.ops:
				if !ok {
					s.syncJournal() // a clean stop leaves nothing unsynced
					return
				}
				first = o
			case <-syncDue:
				syncDue = nil
				s.syncDue()
			case err := <-s.jnl.Behind():
				s.finishBehind(err)
			}
		}
		select {
		case err := <-s.jnl.Behind():
			s.finishBehind(err)
		default:
		}
		s.beginDedupFilter()
		g := s.newGroup()
		g.add(first, maxCount, maxSize) // a single op always fits (or fails alone)
		// admit takes o into the group; false ends the gathering: the ops
		// channel closed, or o is carried to the next group.
		admit := func(o *op, ok bool) bool {
			switch {
			case !ok:
				return false
			case !g.fits(o, maxCount, maxSize):
				carry = o
				return false
			}
			g.add(o, maxCount, maxSize)
			return true
		}
	gather:
		for g.count < maxCount && g.size < maxSize {
			select {
			case o, ok := <-s.ops:
				if !admit(o, ok) {
					break gather
				}
			default:
				break gather
			}
		}
		// A closed loop of callers comes back in waves: the first caller
		// answered is often the first to return, and would take a sync of
		// its own while the rest of its wave is still on the way. Under such
		// load, a group that caught only the head of a wave waits a moment
		// for the rest: fewer, fuller syncs for the same callers.
		if want := wave.want(); carry == nil && len(g.ops) < want {
			timer.Reset(lingerMax)
		linger:
			for len(g.ops) < want && g.count < maxCount && g.size < maxSize {
				select {
				case o, ok := <-s.ops:
					if !admit(o, ok) {
						break linger
					}
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
		}
		wave.observe(len(g.ops))
		s.commitGroup(g)
		switch unsynced := s.jnl.Unsynced(); {
		case unsynced && syncDue == nil:
			syncBy = time.Now().Add(s.opts.PutSyncWithin)
			syncT.Reset(s.opts.PutSyncWithin)
			syncDue = syncT.C
		case unsynced && !time.Now().Before(syncBy):
			// Due while the committer is never idle: now, between groups.
			syncT.Stop()
			syncDue = nil
			s.syncDue()
		case !unsynced && syncDue != nil:
			// A synced commit covered the ones before it.
			syncT.Stop()
			syncDue = nil
		}
	}
}

// syncDue makes the commits answered before their sync durable, when the
// oldest is due (Options.PutSyncWithin). The sync runs behind the
// committer (journal.SyncBehind): commits go on being written and answered
// while the disk works, instead of waiting behind a sync they do not need.
// If the last sync behind is still running when the next is due (a slow or
// stalled disk), the committer syncs itself and waits: no commit is then
// answered unsynced until the disk has caught up, which is what keeps a
// power cut's loss to the last PutSyncWithin plus the sync under way.
func (s *Spool) syncDue() {
	if !s.jnl.SyncBehind() {
		s.syncJournal()
	}
}

// finishBehind takes the result of a sync behind.
func (s *Spool) finishBehind(err error) {
	if err = s.jnl.FinishBehind(err); err != nil {
		s.syncFailed(err)
	}
}

// syncJournal syncs the commits answered before their sync. A failure
// fails the journal: every later commit fails, and the agent says so.
func (s *Spool) syncJournal() {
	if !s.jnl.Unsynced() || s.jnl.Failed() != nil {
		return // a failed journal was reported when it failed
	}
	if err := s.jnl.Sync(); err != nil {
		s.syncFailed(err)
	}
}

// syncFailed reports a failed sync of commits answered before it: the
// journal has failed, and every later commit fails.
func (s *Spool) syncFailed(err error) {
	s.log.Error("spool: journal sync failed; the commits answered before it may not survive a power cut, and nothing more is written", "err", err)
	s.mu.Lock()
	s.lastErr = fmt.Errorf("commit: %w", err)
	s.mu.Unlock()
}

// lingerMax bounds how long a group waits for the rest of a wave: about
// one sync of this machine's disk, so a caller waits at most what the
// sync it would otherwise have queued behind costs.
const lingerMax = 200 * time.Microsecond

// waveTracker follows the size of recent groups (a moving average). When
// groups have been large, callers arrive in waves and a small group is the
// head of one; when they have been small (light load, one caller at a
// time), nobody waits.
type waveTracker struct{ avg float64 }

func (w *waveTracker) observe(n int) { w.avg += (float64(n) - w.avg) / 8 }

// want is how many ops a group should gather before it commits without
// waiting: half the recent average under load, none otherwise.
func (w *waveTracker) want() int {
	if w.avg < 8 {
		return 0
	}
	return int(w.avg / 2)
}

// group is one transaction being built, with the queue state it would
// produce if it commits.
type group struct {
	s     *Spool
	txn   *badger.Txn
	ops   []*op
	metas map[string]meta // staged metadata per touched queue
	count int64
	size  int64
	now   time.Time
	dirty map[string]bool
	// removed: queues some of whose entries this group deletes, the only
	// ones whose head can move.
	removed map[string]bool
	broken  bool
	// diskLow: the filesystem is below MinFreeBytes (free bytes left);
	// new data is refused.
	diskLow bool
	free    int64
	// jb is the journal record of this transaction: every write staged in
	// txn, in order, after the record's head (see package journal).
	jb []byte
	// chunks gather the appended entries of the group's ops, per queue.
	chunks []*chunkWriter
}

// set, setTTL and del stage a write in the transaction and in the journal
// record; nothing else may write to txn.
func (g *group) set(key, val []byte) error { return g.stage(mutSet, key, val, 0) }

func (g *group) setTTL(key, val []byte, ttl time.Duration) error {
	// What badger's Entry.WithTTL sets.
	return g.stage(mutSet, key, val, uint64(time.Now().Add(ttl).Unix()))
}

func (g *group) del(key []byte) error { return g.stage(mutDel, key, nil, 0) }

// stage writes the mutation into the journal record, then gives badger
// the record's copies of its key and value: what badger applies is byte
// for byte what the journal holds, and a writer answered before the apply
// (commitGroup) may reuse its buffers at once. The record's buffer is not
// written again until the group is applied (journal.NewRecord).
func (g *group) stage(kind byte, key, val []byte, expiresAt uint64) error {
	n := len(g.jb)
	var ka, va int
	g.jb, ka, va = appendMutationAt(g.jb, kind, key, val, expiresAt)
	k := g.jb[ka : ka+len(key) : ka+len(key)]
	var err error
	if kind == mutDel {
		err = g.txn.Delete(k)
	} else {
		e := badger.NewEntry(k, g.jb[va:va+len(val):va+len(val)])
		e.ExpiresAt = expiresAt
		err = g.txn.SetEntry(e)
	}
	if err != nil {
		g.jb = g.jb[:n]
	}
	return err
}

// writeError marks a failure after an op has started writing into the
// transaction.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func werr(format string, err error) error {
	return &writeError{fmt.Errorf(format, err)}
}

func (s *Spool) newGroup() *group {
	g := &group{s: s, txn: s.db.NewTransaction(true), metas: map[string]meta{}, now: s.now(), dirty: map[string]bool{}, removed: map[string]bool{},
		jb: s.jnl.NewRecord()}
	g.diskLow, g.free = s.disk.check()
	s.mu.Lock()
	for name, q := range s.queues {
		g.metas[name] = q.meta
	}
	s.mu.Unlock()
	return g
}

// estimate bounds what an op adds to a transaction, the way badger counts
// it: key and inline value, or key and a value pointer for values that go to
// the value log.
func estimate(o *op) (count, size int64) {
	val := func(n int) int64 {
		if n < valueThreshold {
			return int64(n) + 2
		}
		return 14
	}
	switch o.kind {
	case opAppend:
		for _, r := range o.recs {
			count += 2
			size += 2*int64(len(r.Queue)+len(r.ID)) + val(len(r.Payload)+64) + 64
		}
	case opAck, opFail, opDead:
		count = int64(len(o.seqs)) * 2
		size = int64(len(o.seqs)) * 128
	case opReplay:
		n := int64(max(o.limit, 1))
		count, size = 2*n+2, n*256
	case opDamaged:
		count = int64(len(o.damaged)) * 2
		size = int64(len(o.damaged)) * 256
	case opRescue:
		count = int64(len(o.rescue)) + 1
		for _, r := range o.rescue {
			size += int64(len(r.key)) + val(len(r.value)) + 16
		}
		if o.report != nil {
			size += 4096
		}
	case opPut:
		for _, r := range o.recs {
			count += 2
			size += 2*int64(len(r.Queue)+len(r.ID)) + val(len(r.Payload)+64) + 64
		}
		for _, kv := range o.kvs {
			count++
			size += int64(len(kv.Key)) + val(len(kv.Value)) + 32
		}
	}
	return count + 4, size + 256
}

// unsynced: every op of the group may be answered before the journal's
// sync.
func (g *group) unsynced() bool {
	for _, o := range g.ops {
		if !o.unsynced {
			return false
		}
	}
	return true
}

// keysOnly: every op of the group is a Write of keys that queues no
// record (a decision's record, velocity events, scores). Nothing the spool
// keeps in memory about its queues changes with such a group.
func (g *group) keysOnly() bool {
	for _, o := range g.ops {
		if o.kind != opPut || len(o.recs) > 0 {
			return false
		}
	}
	return true
}

// diskFull is the refusal of new data on a nearly full disk.
func (g *group) diskFull() error {
	return fmt.Errorf("%w: the data disk has %s free, under the minimum of %s", ErrFull, mib(g.free), mib(g.s.opts.MinFreeBytes))
}

func (g *group) fits(o *op, maxCount, maxSize int64) bool {
	c, sz := estimate(o)
	return g.count+c <= maxCount && g.size+sz <= maxSize
}

func (g *group) add(o *op, maxCount, maxSize int64) {
	c, sz := estimate(o)
	if c > maxCount || sz > maxSize {
		o.err = ErrTooLarge
		close(o.done)
		return
	}
	g.count += c
	g.size += sz
	// Ops validate everything before they write anything, so a refused op
	// (full, unknown queue) leaves nothing in the transaction. An error
	// after writing has begun (a read or staging failure) poisons the
	// transaction: it is rebuilt without that op before commit.
	err := g.apply(o)
	var we *writeError
	switch {
	case err == nil:
		g.ops = append(g.ops, o)
	case errors.As(err, &we):
		g.broken = true
		o.err = we.err
		close(o.done)
	default:
		o.err = err
		close(o.done)
	}
}

func (g *group) apply(o *op) error {
	switch o.kind {
	case opAppend, opPut, opProbe:
	default:
		if err := g.flushChunks(); err != nil {
			return err
		}
	}
	switch o.kind {
	case opAppend:
		return g.applyAppend(o)
	case opAck:
		return g.applyAck(o)
	case opFail:
		return g.applyFail(o)
	case opDead:
		return g.applyDead(o)
	case opReplay:
		return g.applyReplay(o)
	case opPut:
		return g.applyPut(o)
	case opDamaged:
		return g.applyDamaged(o)
	case opRescue:
		return g.applyRescue(o)
	case opProbe:
		return g.set([]byte("m\x00probe"), []byte(g.now.UTC().Format(time.RFC3339Nano)))
	}
	return fmt.Errorf("unknown op %d", o.kind)
}

func (g *group) total() int64 {
	var t int64
	for _, m := range g.metas {
		t += m.Bytes + m.DeadBytes
	}
	return t
}

// refuseForDisk reports whether new data is refused for a low disk. A
// refused op is answered at once while the group goes on gathering, so the
// reading taken when the group began is taken again before each refusal:
// a write sent after an earlier refusal was answered, once space is back,
// is not refused on the older reading.
func (g *group) refuseForDisk() bool {
	if g.diskLow {
		g.diskLow, g.free = g.s.disk.check()
	}
	return g.diskLow
}

func (g *group) applyAppend(o *op) error {
	if g.refuseForDisk() {
		return g.diskFull()
	}
	// Validate first: queues, duplicates, room. Nothing is written until all
	// records of this op are known to fit.
	o.res.Duplicate = make([]bool, len(o.recs))
	var seen map[string]struct{} // repeats within the op; none with one record
	if len(o.recs) > 1 {
		seen = make(map[string]struct{}, len(o.recs))
	}
	// Each record's dedup key and its hash, built once for the check and
	// the write.
	dks := make([]dedupRef, len(o.recs))
	var add int64
	for i, r := range o.recs {
		if _, ok := g.metas[r.Queue]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownQueue, r.Queue)
		}
		if seen != nil {
			k := r.Queue + "\x00" + r.ID
			if _, dup := seen[k]; dup {
				o.res.Duplicate[i] = true
				continue
			}
			seen[k] = struct{}{}
		}
		dk := newDedupRef(r.Queue, r.ID)
		dks[i] = dk
		if g.s.dedup.mayContain(dk.hash) {
			_, err := g.txn.Get(dk.key)
			switch {
			case err == nil:
				o.res.Duplicate[i] = true
				continue
			case !errors.Is(err, badger.ErrKeyNotFound):
				return fmt.Errorf("check duplicate: %w", err)
			}
		}
		add += storedSize(r.ID, len(r.Payload))
	}
	if max := g.s.opts.MaxBytes; max > 0 && add > 0 && g.total()+add > max {
		return ErrFull
	}
	now := unixNano(g.now)
	for i, r := range o.recs {
		if o.res.Duplicate[i] {
			o.res.Duplicates++
			continue
		}
		m := g.metas[r.Queue]
		seq := m.Tail
		rec := record{EnqueuedAt: now, ID: r.ID, Payload: r.Payload}
		var cw *chunkWriter
		for _, c := range g.chunks {
			if c.queue == r.Queue {
				cw = c
				break
			}
		}
		if cw == nil {
			cw = &chunkWriter{queue: r.Queue}
			g.chunks = append(g.chunks, cw)
		}
		cw.add(seq, &rec, len(o.recs)-i)
		if cw.n == maxChunk {
			if err := cw.flush(g); err != nil {
				return err
			}
		}
		var sv [8]byte
		putSeq(sv[:], seq)
		// Into the filter before the next op looks (it may repeat this id).
		if g.s.dedup.add(dks[i].hash) {
			g.s.dedupWant.CompareAndSwap(0, int64(2*g.s.dedup.size()))
		}
		if err := g.setTTL(dks[i].key, sv[:], g.s.opts.DedupeWindow); err != nil {
			return werr("stage append: %w", err)
		}
		m.Tail++
		m.Count++
		m.Bytes += storedSize(r.ID, len(r.Payload))
		g.metas[r.Queue] = m
		g.dirty[r.Queue] = true
		o.res.Accepted++
	}
	return nil
}

// flushChunks stages the chunks being gathered.
func (g *group) flushChunks() error {
	for _, cw := range g.chunks {
		if err := cw.flush(g); err != nil {
			return err
		}
	}
	return nil
}

// chunkWriter gathers the entries a group appends to one queue.
type chunkWriter struct {
	queue string
	buf   []byte
	n     int
	last  uint64
	first int // where the first entry's record starts in buf
}

// add appends the entry; left is how many records its op has left, this
// one included (to size the buffer once).
func (c *chunkWriter) add(seq uint64, r *record, left int) {
	if c.buf == nil {
		c.buf = make([]byte, 1, 1+min(left, maxChunk)*(r.size()+8+binary.MaxVarintLen32))
		c.buf[0] = chunkVersion
	}
	var at int
	c.buf, at = appendChunkEntry(c.buf, seq, r)
	if c.n == 0 {
		c.first = at
	}
	c.n++
	c.last = seq
}

// flush stages the chunk under its last seq: a single entry as a plain
// record, keyed by its own seq. The buffer goes to the transaction, so
// the next chunk gets a new one.
func (c *chunkWriter) flush(g *group) error {
	if c.n == 0 {
		return nil
	}
	v := c.buf
	if c.n == 1 {
		v = c.buf[c.first:]
	}
	if err := g.set(seqKey(kindEntry, c.queue, c.last), v); err != nil {
		return werr("stage append: %w", err)
	}
	c.buf, c.n = nil, 0
	return nil
}

// storedSize is what an entry counts against MaxBytes: payload, id and a
// fixed overhead for keys and bookkeeping.
func storedSize(id string, payload int) int64 {
	return int64(payload + 2*len(id) + 64)
}

func (g *group) applyAck(o *op) error {
	m := g.metas[o.queue]
	head, err := g.editEntries(o.queue, m.Head, o.seqs, func(e *seqRecord) edit {
		m.Count--
		m.Bytes -= storedSize(e.rec.ID, len(e.rec.Payload))
		o.n++
		return editRemove
	})
	if err != nil {
		return werr("ack: %w", err)
	}
	m.Head = head
	g.metas[o.queue] = m
	g.dirty[o.queue] = true
	g.removed[o.queue] = true
	return nil
}

func (g *group) applyFail(o *op) error {
	_, err := g.editEntries(o.queue, g.metas[o.queue].Head, o.seqs, func(e *seqRecord) edit {
		e.rec.Attempts++
		e.rec.LastAttemptAt = unixNano(g.now)
		e.rec.LastError = truncate(o.msg, 512)
		o.n++
		return editChange
	})
	if err != nil {
		return werr("record failure: %w", err)
	}
	return nil
}

func (g *group) applyDead(o *op) error {
	m := g.metas[o.queue]
	var dead []seqRecord
	head, err := g.editEntries(o.queue, m.Head, o.seqs, func(e *seqRecord) edit {
		r := e.rec
		sz := storedSize(r.ID, len(r.Payload))
		r.Reason = truncate(o.msg, 512)
		r.DeadAt = unixNano(g.now)
		dead = append(dead, seqRecord{e.seq, r})
		m.Count--
		m.Bytes -= sz
		m.DeadCount++
		m.DeadBytes += sz
		o.n++
		return editRemove
	})
	if err != nil {
		return werr("dead-letter: %w", err)
	}
	for _, d := range dead {
		if err := g.set(seqKey(kindDead, o.queue, d.seq), d.rec.encode()); err != nil {
			return werr("dead-letter: %w", err)
		}
	}
	m.Head = head
	g.metas[o.queue] = m
	g.dirty[o.queue] = true
	g.removed[o.queue] = true
	return nil
}

// What an editEntries callback did to an entry.
type edit int

const (
	editNone   edit = iota // left as it was
	editChange             // changed in place
	editRemove             // removed from the queue
)

// editEntries calls fn for each of seqs that is a live entry of queue (in
// seq order, each once), and then writes back the chunks that changed:
// rewritten, without the removed entries, or deleted when none is left
// (codec.go). Reads go through the transaction, so they see what earlier
// ops of the group staged.
//
// Entries below head are gone, whether or not their chunk still holds
// them. So when the entries removed from the first chunk at or after head
// are all of its first live ones (a FIFO acknowledged in order), the
// chunk is left as it is and the head moves past them instead: draining a
// queue rewrites nothing. It returns the queue's head, moved or not; the
// caller stores it with the change.
func (g *group) editEntries(queue string, head uint64, seqs []uint64, fn func(e *seqRecord) edit) (uint64, error) {
	sorted := slices.Compact(slices.Sorted(slices.Values(seqs)))
	type chunk struct {
		key     uint64
		es      []seqRecord
		gone    []bool
		removed bool // some entry removed
		changed bool // some entry changed in place
		next    bool // the queue's next chunk after the one before it in cs
	}
	var (
		cs  []*chunk
		cur *chunk
	)
	it := entryIterator(g.txn, queue)
	var headKey uint64
	if it.Seek(seqKey(kindEntry, queue, head)); it.Valid() {
		headKey = seqFromKey(it.Item().Key())
	}
	for _, seq := range sorted {
		if seq < head {
			continue
		}
		if cur == nil || seq > cur.key {
			next := false
			if cur != nil {
				// Is seq's chunk the one right after cur? (An ack that
				// spans chunks in order empties one and cuts the next.)
				it.Seek(seqKey(kindEntry, queue, cur.key+1))
				next = it.Valid() && seqFromKey(it.Item().Key()) >= seq
			}
			if !next {
				it.Seek(seqKey(kindEntry, queue, seq))
			}
			if !it.Valid() {
				break // no entry at or after seq
			}
			key, es, err := itemEntries(it)
			if err != nil {
				it.Close()
				return head, fmt.Errorf("read entries up to seq %d: %w", key, err)
			}
			cur = &chunk{key: key, es: es, gone: make([]bool, len(es)), next: next}
			for i, e := range es {
				cur.gone[i] = e.seq < head
			}
			cs = append(cs, cur)
		}
		i, found := slices.BinarySearchFunc(cur.es, seq, func(e seqRecord, s uint64) int { return cmp.Compare(e.seq, s) })
		if !found || cur.gone[i] {
			continue // not (or no longer) in the queue: ops are idempotent
		}
		switch fn(&cur.es[i]) {
		case editChange:
			cur.changed = true
		case editRemove:
			cur.gone[i], cur.removed = true, true
		}
	}
	it.Close()
	// atHead: every entry before this chunk is gone, counting this edit.
	atHead := false
	for _, c := range cs {
		atHead = c.key == headKey || (atHead && c.next)
		if !c.removed && !c.changed {
			atHead = false
			continue
		}
		left := make([]seqRecord, 0, len(c.es))
		for i, e := range c.es {
			if !c.gone[i] {
				left = append(left, e)
			}
		}
		k := seqKey(kindEntry, queue, c.key)
		var err error
		switch {
		case len(left) == 0:
			err = g.del(k)
		case atHead && !c.changed && left[0].seq == c.es[len(c.es)-len(left)].seq:
			// Only the first live entries of the queue went: they are
			// below the new head, and the chunk stays as it is.
			head = left[0].seq
			atHead = false
		default:
			err = g.set(k, encodeChunk(left))
			atHead = false
		}
		if err != nil {
			return head, err
		}
	}
	return head, nil
}

func (g *group) applyReplay(o *op) error {
	m := g.metas[o.queue]
	want := map[string]bool{}
	for _, id := range o.ids {
		want[id] = true
	}
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = prefix(kindDead, o.queue)
	it := g.txn.NewIterator(opt)
	type moved struct {
		key []byte
		rec record
	}
	var ms []moved
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return werr("replay: %w", err)
		}
		r, err := decodeRecord(v)
		if err != nil {
			it.Close()
			return werr("replay: %w", err)
		}
		if o.all || want[r.ID] {
			ms = append(ms, moved{it.Item().KeyCopy(nil), r})
			if len(ms) >= o.limit {
				break // bounded per commit; the caller loops for more
			}
		}
	}
	it.Close()
	for _, mv := range ms {
		sz := storedSize(mv.rec.ID, len(mv.rec.Payload))
		mv.rec.Reason, mv.rec.DeadAt, mv.rec.Attempts, mv.rec.LastError = "", 0, 0, ""
		if err := g.del(mv.key); err != nil {
			return werr("replay: %w", err)
		}
		if err := g.set(seqKey(kindEntry, o.queue, m.Tail), mv.rec.encode()); err != nil {
			return werr("replay: %w", err)
		}
		m.Tail++
		m.Count++
		m.Bytes += sz
		m.DeadCount--
		m.DeadBytes -= sz
		o.n++
	}
	g.metas[o.queue] = m
	g.dirty[o.queue] = true
	return nil
}

func (s *Spool) commitGroup(g *group) {
	for g.broken {
		// Rebuild without the op that failed mid-way (it was answered).
		g.txn.Discard()
		ops := g.ops
		g = s.newGroup()
		for _, o := range ops {
			o.res = AppendResult{}
			o.n = 0
			g.add(o, math.MaxInt64, math.MaxInt64)
		}
	}
	defer g.txn.Discard()
	if len(g.ops) == 0 {
		return
	}
	early := false // the writers were answered before the apply
	err := g.flushChunks()
	for q := range g.dirty {
		if err == nil {
			err = g.set(metaKey(q), g.metas[q].encode())
		}
	}
	if err == nil && s.format != storeFormat {
		err = g.set(formatKey, []byte{storeFormat})
	}
	if err == nil {
		start := time.Now()
		// On disk in the journal first, then applied to badger unsynced
		// (package journal).
		var seq uint64
		if len(g.jb) > journal.RecordHead {
			if g.unsynced() {
				seq, err = s.jnl.AppendUnsynced(g.jb)
			} else {
				seq, err = s.jnl.Append(g.jb)
			}
		}
		// A group of key-only writes is answered once its journal record
		// is written (and synced, unless it may be answered before its
		// sync): the journal holds it, and a restart replays what badger
		// has not applied. Badger's apply (three goroutine hand-overs in
		// badger) then runs after the answer, and readers wait for it
		// (waitApplied): whoever was answered reads what was written.
		if err == nil && seq > 0 && g.keysOnly() {
			early = true
			s.applying.Lock()
			for _, o := range g.ops {
				close(o.done)
			}
			// Let the caller just woken run on this goroutine's processor
			// now, rather than after badger's apply; the committer goes on
			// on the other one.
			runtime.Gosched()
		}
		if err == nil {
			err = g.txn.Commit()
			switch {
			case err != nil && seq > 0:
				// The journal holds what badger refused: replay at the next
				// start applies it. Until then nothing more is written.
				err = fmt.Errorf("apply journaled commit to the store (a restart replays it): %w", err)
				s.jnl.Fail(err)
			case seq > 0:
				s.jnl.MarkApplied(seq)
			}
		}
		if early {
			s.applying.Unlock()
		}
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(time.Since(start), len(g.ops), err)
		}
	}
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
		s.log.Error("spool commit failed", "err", err, "ops", len(g.ops))
	}
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		s.format = storeFormat
		for q := range g.dirty {
			s.queues[q].meta = g.metas[q]
		}
		for _, o := range g.ops {
			q := s.queues[o.queue]
			if q == nil {
				continue
			}
			switch o.kind {
			case opAck, opDead:
				q.removals++
				for _, seq := range o.seqs {
					delete(q.inflight, seq)
				}
			case opFail:
				if o.release {
					q.rewinds++
					for _, seq := range o.seqs {
						delete(q.inflight, seq)
						if seq < q.next {
							q.next = seq // retried first, in order
						}
					}
				}
			}
		}
	}
	s.mu.Unlock()
	if err == nil {
		s.advanceHeads(g)
	}
	// Heard before the writers are answered: once Append returns, the
	// queues it gave entries have been announced (a test can count on it,
	// and a delivery worker is woken no later than the app is answered).
	if err == nil && s.opts.OnAppend != nil {
		s.notifyAppends(g)
	}
	if early {
		// Answered already. A failed apply fails the journal: the writes
		// answered are in it, a restart applies them, and no commit goes
		// through until then.
		return
	}
	for _, o := range g.ops {
		if err != nil {
			o.err = err
			o.res = AppendResult{}
		}
		close(o.done)
	}
}

// notifyAppends tells Options.OnAppend which queues this commit gave new
// entries (appends, and dead letters put back), once each.
func (s *Spool) notifyAppends(g *group) {
	var seen [4]string // a commit touches few queues
	n := 0
	note := func(q string) {
		for _, x := range seen[:n] {
			if x == q {
				return
			}
		}
		if n < len(seen) {
			seen[n] = q
			n++
		}
		s.opts.OnAppend(q)
	}
	for _, o := range g.ops {
		switch o.kind {
		case opAppend, opPut:
			if o.res.Accepted > 0 {
				for _, r := range o.recs {
					note(r.Queue)
				}
			}
		case opReplay:
			if o.n > 0 {
				note(o.queue)
			}
		}
	}
}

// advanceHeads moves a queue's head cursor past entries that are gone, by
// a seek from the old head; the new head is persisted with the next commit
// that touches the queue (it is only a hint for where to start seeking).
// Only removals move a head: appends and replays add at the tail.
func (s *Spool) advanceHeads(g *group) {
	for q := range g.removed {
		s.mu.Lock()
		st := s.queues[q]
		head, tail := st.meta.Head, st.meta.Tail
		s.mu.Unlock()
		newHead := tail
		_ = s.db.View(func(txn *badger.Txn) error {
			it := entryIterator(txn, q)
			defer it.Close()
			it.Seek(seqKey(kindEntry, q, head))
			if !it.Valid() {
				return nil
			}
			// The first live entry: in the first chunk left, at or after
			// the head (a chunk whose first entries were acknowledged in
			// order still holds them, below the head).
			key := seqFromKey(it.Item().Key())
			newHead = head // unreadable: Lease sets it aside, and the head stays
			return it.Item().Value(func(v []byte) error {
				if e, ok, err := firstEntry(key, v, head); err == nil && ok {
					newHead = e.seq
				}
				return nil
			})
		})
		s.mu.Lock()
		if newHead > st.meta.Head {
			st.meta.Head = newHead
			if st.next < newHead {
				st.next = newHead
			}
		}
		s.mu.Unlock()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func putSeq(b []byte, seq uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(seq)
		seq >>= 8
	}
}

// damagedEntry is a q/ key whose value cannot be read back: one entry,
// or a chunk of them (seq is the key's).
type damagedEntry struct {
	seq uint64
	err string
}

// applyDamaged moves unreadable values to the dead letters as a record
// saying so, one per value (the ids and payloads are lost with the damage;
// a chunk's entries are lost together), and then counts the queue's live
// entries and bytes again from what is readable: the lost entries' number
// and sizes were in the damaged values. That reads the whole backlog, in
// the committer, once per damage found: damage is rare, and counters that
// add up matter more than that pause. Values found unreadable while
// counting are set aside the same way.
func (g *group) applyDamaged(o *op) (err error) {
	m := g.metas[o.queue]
	r := &DamageReport{At: g.now.UTC(), Found: "reading queue " + o.queue, EntriesLost: map[string]int64{}}
	// Bounds first: setting a value aside deletes the key the next
	// value's bound is measured from.
	bounds := map[uint64]int64{}
	for _, d := range o.damaged {
		bounds[d.seq] = g.entriesUpTo(o.queue, d.seq, m.Head)
	}
	setAside := func(seq uint64, why string) error {
		k := seqKey(kindEntry, o.queue, seq)
		lost, ok := bounds[seq]
		if !ok {
			lost = g.entriesUpTo(o.queue, seq, m.Head)
		}
		// A marker of its own, under a fresh seq: a dead letter that was
		// once in the chunk may already use the chunk's seq.
		rec := record{ID: fmt.Sprintf("unreadable-%s-%d", o.queue, seq), EnqueuedAt: 0, DeadAt: unixNano(g.now),
			Reason: truncate(fmt.Sprintf("unreadable in the store (damaged data), with every entry stored with it (at most %d entries, seqs up to %d): %s", lost, seq, why), 512)}
		if err := g.del(k); err != nil {
			return err
		}
		if err := g.set(seqKey(kindDead, o.queue, m.Tail), rec.encode()); err != nil {
			return err
		}
		m.Tail++
		m.DeadCount++
		m.DeadBytes += storedSize(rec.ID, 0)
		o.n++
		r.EntriesLost[o.queue] += lost
		r.Spans = append(r.Spans, DamagedSpan{File: fmt.Sprintf("%s queue, seqs up to %d", o.queue, seq), What: truncate(why, 200)})
		return nil
	}
	defer func() {
		if err == nil && o.n > 0 {
			r.Message = fmt.Sprintf("%d stored values of queue %s are unreadable (damaged data) and were set aside as dead letters; at most %d entries were lost with them",
				o.n, o.queue, r.Lost())
			if len(r.Spans) > maxReportSpans {
				r.Spans = r.Spans[:maxReportSpans]
			}
			_ = g.setDamageReport(*r) // best effort: the dead letters say it too
			o.report = r
		}
	}()
	for _, d := range o.damaged {
		if _, err := g.txn.Get(seqKey(kindEntry, o.queue, d.seq)); errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err := setAside(d.seq, d.err); err != nil {
			return werr("set aside damaged entries: %w", err)
		}
	}
	// Count again. The iterator sees the deletes above; values that turn
	// out unreadable now are set aside after it is closed.
	var (
		count, bytes int64
		more         []damagedEntry
	)
	it := entryIterator(g.txn, o.queue)
	for it.Seek(seqKey(kindEntry, o.queue, m.Head)); it.Valid(); it.Next() {
		key, es, err := itemEntries(it)
		if err != nil {
			more = append(more, damagedEntry{key, err.Error()})
			continue
		}
		for _, e := range es {
			if e.seq < m.Head {
				continue // gone (editEntries)
			}
			count++
			bytes += storedSize(e.rec.ID, len(e.rec.Payload))
		}
	}
	it.Close()
	for _, d := range more {
		if err := setAside(d.seq, d.err); err != nil {
			return werr("set aside damaged entries: %w", err)
		}
	}
	m.Count, m.Bytes = count, bytes
	g.metas[o.queue] = m
	g.dirty[o.queue] = true
	g.removed[o.queue] = true
	return nil
}

// entriesUpTo bounds how many entries the q/ value at key seq held: the
// seqs after the previous value's key (and from the head).
func (g *group) entriesUpTo(queue string, seq, head uint64) int64 {
	prev := head - min(head, 1)
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Reverse = true
	opt.Prefix = prefix(kindEntry, queue)
	it := g.txn.NewIterator(opt)
	defer it.Close()
	if seq > 0 {
		if it.Seek(seqKey(kindEntry, queue, seq-1)); it.Valid() {
			prev = max(prev, seqFromKey(it.Item().Key()))
		}
	}
	if seq <= prev {
		return 1
	}
	return int64(seq - prev)
}

// setDamageReport stores a damage report with the group's writes.
func (g *group) setDamageReport(r DamageReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return g.set(damageKey(r.At), b)
}
