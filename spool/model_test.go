package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The model-based test drives a real spool (badger on disk) and a plain
// in-memory model with the same random operations, and compares them after
// every step.
//
// The model, per queue:
//   - live: the entries waiting for delivery, in FIFO (seq) order, with
//     their attempt count and last error;
//   - dead: the dead letters, in seq order;
//   - leased: the seqs handed out by Lease and not yet settled;
//   - accepted: every id ever accepted (dedupe lasts the whole window, even
//     after an ack);
//   - tail: the next seq (seqs are assigned in order from 1; a replay gets
//     a new one).
//
// Lease must return the oldest live entries that are not leased, in order,
// up to max and (after the first) maxBytes of payload. Stats, TotalBytes
// and DeadLetters must match the model after every step. A "crash" forgets
// the leases; nothing acknowledged as stored is lost.
//
// Bugs it found: DeadLetters could never list seq 0 (it lists seq > after,
// and after=0 is the first page), so a queue's first entry, once dead,
// was invisible to the operator (seqs now start at 1); with a MemTableSize
// under about 2 MiB every Replay failed with ErrTooLarge (its batch is now
// sized to badger's transaction limits).

type mEntry struct {
	seq      uint64
	id       string
	payload  []byte
	attempts int
	lastErr  string
	reason   string
}

func (e *mEntry) size() int64 { return int64(len(e.payload) + 2*len(e.id) + 64) }

type mQueue struct {
	live     []*mEntry
	dead     []*mEntry
	leased   map[uint64]bool
	accepted map[string]bool
	acked    []uint64
	tail     uint64 // next seq; a new queue starts at 1
}

func (q *mQueue) bytes() (live, dead int64) {
	for _, e := range q.live {
		live += e.size()
	}
	for _, e := range q.dead {
		dead += e.size()
	}
	return
}

func (q *mQueue) liveIndex(seq uint64) int {
	for i, e := range q.live {
		if e.seq == seq {
			return i
		}
	}
	return -1
}

type modelCfg struct {
	maxBytes func(*rapid.T) int64 // 0: no cap
	kill9    bool                 // crash by snapshotting the open store
}

// ids: a small pool of varied lengths, so duplicates are common and ids
// weigh differently in the byte counts.
var modelIDs = []string{"a", "b", "c", "id-4", "id-5", "order-000000006", "order-000000007", "x8", "evt:9:" + string(bytes.Repeat([]byte("z"), 40))}

var modelActions = weighted(map[string]int{
	"append":  8,
	"lease":   6,
	"ack":     4,
	"fail":    2,
	"release": 1,
	"dead":    2,
	"replay":  2,
	"stats":   1,
	"crash":   1,
})

func weighted(w map[string]int) []string {
	var out []string
	for name, n := range w {
		for range n {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

const modelSteps = 50

type modelRun struct {
	ctx     context.Context
	base    string
	dir     string
	opts    Options
	s       *Spool
	qs      map[string]*mQueue
	cfg     modelCfg
	payload uint64 // makes every payload unique
	crashes int
}

// The three variants run in parallel: each spends most of its time waiting
// for fsync, so they overlap well even on two cores. The model itself runs
// beside the package's other long tests, not before them.
func TestModel(t *testing.T) {
	t.Parallel()
	t.Run("close-reopen", func(t *testing.T) {
		t.Parallel()
		rapid.Check(t, func(rt *rapid.T) { runModel(rt, t.TempDir(), modelCfg{}) })
	})
	t.Run("full", func(t *testing.T) {
		t.Parallel()
		// A cap of a few entries' worth, so appends are refused often.
		cfg := modelCfg{maxBytes: func(rt *rapid.T) int64 { return int64(rapid.IntRange(200, 2500).Draw(rt, "maxBytes")) }}
		rapid.Check(t, func(rt *rapid.T) { runModel(rt, t.TempDir(), cfg) })
	})
	t.Run("kill9-snapshot", func(t *testing.T) {
		t.Parallel()
		rapid.Check(t, func(rt *rapid.T) { runModel(rt, t.TempDir(), modelCfg{kill9: true}) })
	})
}

var modelRunN atomic.Int64

func runModel(t *rapid.T, base string, cfg modelCfg) {
	r := &modelRun{ctx: context.Background(), base: base, cfg: cfg, qs: map[string]*mQueue{}}
	for _, q := range queues {
		r.qs[q] = &mQueue{leased: map[uint64]bool{}, accepted: map[string]bool{}, tail: 1}
	}
	r.dir = filepath.Join(base, fmt.Sprintf("run%d", modelRunN.Add(1)))
	r.opts = Options{Dir: r.dir, Queues: queues, GCInterval: time.Hour}
	if cfg.kill9 {
		// The snapshot wants a store that does little in the background
		// (see snapshotDir): a run (at most 50 appends of 5 small
		// records) never fills a 1 MiB memtable.
		r.opts.MemTableSize = 1 << 20
	} else {
		// Small memtables flush (and compact) within a run; the default
		// is what production uses.
		r.opts.MemTableSize = rapid.SampledFrom([]int64{64 << 10, 1 << 20}).Draw(t, "memTableSize")
	}
	if cfg.maxBytes != nil {
		r.opts.MaxBytes = cfg.maxBytes(t)
	}
	// A duplicate filter of a few keys is rebuilt every few appends, while
	// appends go on: every rebuild must leave no stored id out.
	r.opts.dedupFilterKeys = rapid.SampledFrom([]int{0, 2, 16}).Draw(t, "dedupFilterKeys")
	// Journal segments of a few records' worth, so runs seal segments,
	// checkpoint them away and adopt spares; 16 MiB ones are never
	// filled by a run, and each start read them whole.
	r.opts.journalSegmentSize = rapid.SampledFrom([]int64{8 << 10, 64 << 10}).Draw(t, "journalSegmentSize")
	// Value logs of 1 MiB (badger's least): each start maps and writes
	// the newest one's header, 32 times less to map than 32 MiB.
	r.opts.valueLogFileSize = 1 << 20
	r.open(t)
	t.Cleanup(func() {
		if r.s != nil {
			_ = r.s.Close(context.Background())
		}
		_ = os.RemoveAll(r.dir)
	})
	r.check(t)
	for range modelSteps {
		switch rapid.SampledFrom(modelActions).Draw(t, "action") {
		case "append":
			r.append(t)
		case "lease":
			r.lease(t)
		case "ack":
			r.ack(t)
		case "fail":
			r.fail(t)
		case "release":
			r.release(t)
		case "dead":
			r.dead(t)
		case "replay":
			r.replay(t)
		case "stats":
			r.stats(t)
		case "crash":
			r.crash(t)
		}
		r.check(t)
	}
}

func (r *modelRun) open(t *rapid.T) {
	s, err := Open(r.opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if s.Quarantine() != nil {
		t.Fatalf("store quarantined: %+v", s.Quarantine())
	}
	r.s = s
}

func (r *modelRun) total() int64 {
	var t int64
	for _, q := range r.qs {
		l, d := q.bytes()
		t += l + d
	}
	return t
}

func (r *modelRun) append(t *rapid.T) {
	n := rapid.IntRange(1, 5).Draw(t, "records")
	recs := make([]Record, n)
	for i := range recs {
		size := rapid.IntRange(0, 200).Draw(t, "payloadSize")
		r.payload++
		p := make([]byte, size)
		rng := rand.New(rand.NewPCG(r.payload, 0x5eed))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		recs[i] = Record{
			Queue:   rapid.SampledFrom(queues).Draw(t, "queue"),
			ID:      rapid.SampledFrom(modelIDs).Draw(t, "id"),
			Payload: p,
		}
	}

	// What the model says.
	wantDup := make([]bool, n)
	seen := map[string]bool{}
	var add int64
	for i, rec := range recs {
		k := rec.Queue + "\x00" + rec.ID
		if seen[k] || r.qs[rec.Queue].accepted[rec.ID] {
			wantDup[i] = true
			continue
		}
		seen[k] = true
		add += int64(len(rec.Payload) + 2*len(rec.ID) + 64)
	}
	wantFull := r.opts.MaxBytes > 0 && add > 0 && r.total()+add > r.opts.MaxBytes

	res, err := r.s.Append(r.ctx, recs)
	if wantFull {
		if !errors.Is(err, ErrFull) {
			t.Fatalf("append %d records (+%d bytes on %d of %d): err %v, want ErrFull", n, add, r.total(), r.opts.MaxBytes, err)
		}
		if res.Accepted != 0 || res.Duplicates != 0 {
			t.Fatalf("refused append reports %+v", res)
		}
		return
	}
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	accepted := 0
	for i, rec := range recs {
		if wantDup[i] {
			continue
		}
		q := r.qs[rec.Queue]
		q.live = append(q.live, &mEntry{seq: q.tail, id: rec.ID, payload: rec.Payload})
		q.tail++
		q.accepted[rec.ID] = true
		accepted++
	}
	if res.Accepted != accepted || res.Duplicates != n-accepted || !slices.Equal(res.Duplicate, wantDup) {
		t.Fatalf("append result %+v, want accepted %d duplicates %d %v", res, accepted, n-accepted, wantDup)
	}
}

func (r *modelRun) lease(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	max := rapid.IntRange(0, 6).Draw(t, "max")
	maxBytes := rapid.IntRange(0, 500).Draw(t, "maxBytes")
	q := r.qs[name]
	var want []*mEntry
	bytes := 0
	for _, e := range q.live {
		if len(want) >= max {
			break
		}
		if q.leased[e.seq] {
			continue
		}
		if len(want) > 0 && bytes+len(e.payload) > maxBytes {
			break
		}
		bytes += len(e.payload)
		want = append(want, e)
	}
	got, err := r.s.Lease(r.ctx, name, max, maxBytes)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("lease(%s, %d, %d) = %v, want seqs %v", name, max, maxBytes, seqs(got), mSeqs(want))
	}
	for i, e := range got {
		checkEntry(t, "lease", name, e, want[i])
		if e.EnqueuedAt.IsZero() {
			t.Fatalf("leased entry without enqueue time: %+v", e)
		}
		q.leased[e.Seq] = true
	}
}

func checkEntry(t *rapid.T, what, queue string, got Entry, want *mEntry) {
	t.Helper()
	if got.Queue != queue || got.Seq != want.seq || got.ID != want.id || !bytes.Equal(got.Payload, want.payload) ||
		got.Attempts != want.attempts || got.LastError != want.lastErr || got.Reason != want.reason {
		t.Fatalf("%s: got %s/%d id %q attempts %d lastErr %q reason %q payload %d bytes; want %d id %q attempts %d lastErr %q reason %q payload %d bytes (equal: %v)",
			what, got.Queue, got.Seq, got.ID, got.Attempts, got.LastError, got.Reason, len(got.Payload),
			want.seq, want.id, want.attempts, want.lastErr, want.reason, len(want.payload), bytes.Equal(got.Payload, want.payload))
	}
}

func mSeqs(es []*mEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.seq
	}
	return out
}

func sortedKeys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pickSeqs draws 1-4 distinct seqs from a pool, or nil if it is empty.
func pickSeqs(t *rapid.T, pool []uint64) []uint64 {
	slices.Sort(pool)
	pool = slices.Compact(pool)
	if len(pool) == 0 {
		return nil
	}
	return rapid.SliceOfNDistinct(rapid.SampledFrom(pool), 1, 4, func(s uint64) uint64 { return s }).Draw(t, "seqs")
}

// pool: the leased seqs, and sometimes other seqs (live but not leased,
// already acknowledged, dead letters) that the operation must treat as the
// API says.
func (r *modelRun) pool(t *rapid.T, q *mQueue, others bool) []uint64 {
	pool := sortedKeys(q.leased)
	if others && rapid.IntRange(0, 3).Draw(t, "widen") == 0 {
		for _, e := range q.live {
			pool = append(pool, e.seq)
		}
		for _, e := range q.dead {
			pool = append(pool, e.seq)
		}
		pool = append(pool, q.acked...)
	}
	return pool
}

func (r *modelRun) ack(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	q := r.qs[name]
	pool := r.pool(t, q, false)
	if len(q.acked) > 0 && rapid.IntRange(0, 2).Draw(t, "reack") == 0 {
		pool = append(pool, q.acked...) // acks are idempotent
	}
	if rapid.IntRange(0, 5).Draw(t, "ackOthers") == 0 {
		pool = r.pool(t, q, true)
	}
	ss := pickSeqs(t, pool)
	if ss == nil {
		return
	}
	if err := r.s.Ack(r.ctx, name, ss); err != nil {
		t.Fatalf("ack %v: %v", ss, err)
	}
	for _, seq := range ss {
		if i := q.liveIndex(seq); i >= 0 {
			q.live = slices.Delete(q.live, i, i+1)
			q.acked = append(q.acked, seq)
		}
		delete(q.leased, seq)
	}
}

var failMsgs = []string{"timeout", "upstream said 10000", ""}

func (r *modelRun) fail(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	q := r.qs[name]
	ss := pickSeqs(t, r.pool(t, q, true))
	if ss == nil {
		return
	}
	msg := rapid.SampledFrom(failMsgs).Draw(t, "msg")
	if err := r.s.Fail(r.ctx, name, ss, msg); err != nil {
		t.Fatalf("fail %v: %v", ss, err)
	}
	for _, seq := range ss {
		if i := q.liveIndex(seq); i >= 0 {
			q.live[i].attempts++
			q.live[i].lastErr = msg
		}
		delete(q.leased, seq)
	}
}

func (r *modelRun) release(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	q := r.qs[name]
	ss := pickSeqs(t, r.pool(t, q, false))
	if ss == nil {
		return
	}
	r.s.Release(name, ss)
	for _, seq := range ss {
		delete(q.leased, seq)
	}
}

var deadReasons = []string{"code 31001: bad action_type", "rejected"}

func (r *modelRun) dead(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	q := r.qs[name]
	ss := pickSeqs(t, r.pool(t, q, true))
	if ss == nil {
		return
	}
	reason := rapid.SampledFrom(deadReasons).Draw(t, "reason")
	if err := r.s.DeadLetter(r.ctx, name, ss, reason); err != nil {
		t.Fatalf("dead-letter %v: %v", ss, err)
	}
	for _, seq := range ss {
		if i := q.liveIndex(seq); i >= 0 {
			e := q.live[i]
			q.live = slices.Delete(q.live, i, i+1)
			e.reason = reason
			q.dead = append(q.dead, e)
			slices.SortFunc(q.dead, func(a, b *mEntry) int { return cmpSeq(a.seq, b.seq) })
		}
		delete(q.leased, seq)
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *modelRun) replay(t *rapid.T) {
	name := rapid.SampledFrom(queues).Draw(t, "queue")
	q := r.qs[name]
	all := rapid.Bool().Draw(t, "all")
	var ids []string
	if !all {
		pool := []string{"no-such-id"}
		for _, e := range q.dead {
			pool = append(pool, e.id)
		}
		ids = rapid.SliceOfN(rapid.SampledFrom(pool), 0, 3).Draw(t, "ids")
	}
	n, err := r.s.Replay(r.ctx, name, ids, all)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	want := 0
	kept := q.dead[:0:0]
	for _, e := range q.dead {
		if all || slices.Contains(ids, e.id) {
			e.seq, e.attempts, e.lastErr, e.reason = q.tail, 0, "", ""
			q.tail++
			q.live = append(q.live, e)
			want++
			continue
		}
		kept = append(kept, e)
	}
	q.dead = kept
	if n != want {
		t.Fatalf("replay(%s, %v, all=%v) moved %d, want %d", name, ids, all, n, want)
	}
}

func (r *modelRun) stats(t *rapid.T) {
	st := r.s.Stats()
	for _, name := range queues {
		if s := st[name]; s.OldestAgeSeconds < 0 || (s.Depth == 0 && s.OldestAgeSeconds != 0) {
			t.Fatalf("%s: oldest age %v with depth %d", name, s.OldestAgeSeconds, s.Depth)
		}
	}
}

func (r *modelRun) crash(t *rapid.T) {
	r.crashes++
	if !r.cfg.kill9 {
		if err := r.s.Close(r.ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		r.s = nil
		r.open(t)
	} else {
		// kill -9 keeps what the process wrote (the page cache) and loses
		// the process: copy the files of the open store (its journal
		// included) as they are now,
		// with no clean shutdown (memtables not flushed, WAL and value log
		// not truncated), and continue on the copy. The original is closed
		// afterwards only to free it.
		dst := fmt.Sprintf("%s-k%d", r.dir, r.crashes)
		if err := snapshotDir(r.dir, dst); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		old, oldDir := r.s, r.dir
		r.s = nil
		_ = old.Close(r.ctx)
		_ = os.RemoveAll(oldDir)
		r.dir, r.opts.Dir = dst, dst
		r.open(t)
	}
	for _, q := range r.qs {
		clear(q.leased)
	}
}

// check compares the spool's counters and dead letters with the model.
func (r *modelRun) check(t *rapid.T) {
	st := r.s.Stats()
	var total int64
	for _, name := range queues {
		q := r.qs[name]
		live, dead := q.bytes()
		total += live + dead
		got := st[name]
		if got.Depth != int64(len(q.live)) || got.Bytes != live || got.InFlight != len(q.leased) ||
			got.DeadLetters != int64(len(q.dead)) || got.DeadBytes != dead {
			t.Fatalf("%s stats %+v, want depth %d bytes %d in flight %d dead %d dead bytes %d",
				name, got, len(q.live), live, len(q.leased), len(q.dead), dead)
		}
		dl, err := r.s.DeadLetters(name, 0, 1000)
		if err != nil {
			t.Fatalf("dead letters: %v", err)
		}
		if len(dl) != len(q.dead) {
			t.Fatalf("%s dead letters %v, want %v", name, seqs(dl), mSeqs(q.dead))
		}
		for i, e := range dl {
			checkEntry(t, "dead letters", name, e, q.dead[i])
			if e.DeadAt.IsZero() {
				t.Fatalf("dead letter without time: %+v", e)
			}
		}
	}
	if got := r.s.TotalBytes(); got != total {
		t.Fatalf("total bytes %d, want %d", got, total)
	}
}

// snapshotDir copies an open store's directory as a kill -9 would leave it.
// A copy is not atomic, so it is taken when badger is idle and kept only if
// the directory did not change while it was made: no commit is running
// (the model calls one thing at a time), but after an open that replayed a
// memtable badger flushes it in the background, and L0 tables get
// compacted.
func snapshotDir(src, dst string) error {
	for range 200 {
		// An error here is a file deleted while being listed: retry.
		if before, mems, err := dirFingerprint(src); err == nil && mems == 1 { // no memtable waiting for a flush
			if err := os.RemoveAll(dst); err != nil {
				return err
			}
			if err := copyDirSparse(src, dst); err == nil {
				if after, _, err := dirFingerprint(src); err == nil && after == before {
					return nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("the store never stood still")
}

// dirFingerprint: names and sizes (flushes and compactions add and remove
// files and grow the MANIFEST), and how many memtable files there are.
func dirFingerprint(dir string) (string, int, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return "", 0, err
	}
	var b bytes.Buffer
	mems := 0
	for _, e := range es {
		if e.IsDir() { // the journal
			sub, _, err := dirFingerprint(filepath.Join(dir, e.Name()))
			if err != nil {
				return "", 0, err
			}
			fmt.Fprintf(&b, "%s/\n%s", e.Name(), sub)
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return "", 0, err
		}
		fmt.Fprintf(&b, "%s %d\n", e.Name(), fi.Size())
		if filepath.Ext(e.Name()) == ".mem" {
			mems++
		}
	}
	return b.String(), mems, nil
}

// copyDirSparse copies the regular files of dir into a new directory,
// copying only the data extents (badger's value log and memtable files are
// large and mostly holes while open) and keeping each file's size.
func copyDirSparse(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	es, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.IsDir() { // the journal
			if err := copyDirSparse(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFileSparse(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

func copyFileSparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	size := fi.Size()
	for off := int64(0); off < size; {
		start, end := off, size
		if s, err := in.Seek(off, seekData); errors.Is(err, syscall.ENXIO) {
			break // only a hole is left
		} else if err == nil { // else: no SEEK_DATA here, copy it all
			start = s
			if e, err := in.Seek(start, seekHole); err == nil {
				end = e
			}
		}
		if _, err := in.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, end-start); err != nil {
			return err
		}
		off = end
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Close()
}
