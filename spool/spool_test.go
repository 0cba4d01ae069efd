package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

var queues = []string{"tencent", "tongdun", "unionpay"}

func openT(t testing.TB, dir string, mod ...func(*Options)) *Spool {
	t.Helper()
	o := Options{Dir: dir, Queues: queues}
	for _, f := range mod {
		f(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func closeT(t testing.TB, s *Spool) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func recs(queue string, ids ...string) []Record {
	out := make([]Record, len(ids))
	for i, id := range ids {
		out[i] = Record{Queue: queue, ID: id, Payload: []byte(`{"id":"` + id + `","pad":"` + fmt.Sprintf("%080d", i) + `"}`)}
	}
	return out
}

// storedValue reads a key of the store as badger holds it (nil: none).
func storedValue(t *testing.T, s *Spool, key []byte) []byte {
	t.Helper()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err == nil {
			v, err = it.ValueCopy(nil)
		}
		return err
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return v
}

func ids(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func TestAppendLeaseAckReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	res, err := s.Append(ctx, recs("tencent", "a", "b", "c", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || res.Duplicates != 1 || !res.Duplicate[3] {
		t.Fatalf("append result = %+v, want 3 accepted, 1 duplicate (the 4th)", res)
	}
	res, err = s.Append(ctx, recs("tencent", "b", "d"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("second append = %+v, want 1 accepted, 1 duplicate", res)
	}
	// The same id in another queue is another item.
	if res, err = s.Append(ctx, recs("tongdun", "a")); err != nil || res.Accepted != 1 {
		t.Fatalf("append to tongdun = %+v, %v", res, err)
	}
	got, err := s.Lease(ctx, "tencent", 2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b"}; fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("lease = %v, want %v", ids(got), want)
	}
	// A second lease skips what is in flight.
	got2, _ := s.Lease(ctx, "tencent", 10, 1<<20)
	if want := []string{"c", "d"}; fmt.Sprint(ids(got2)) != fmt.Sprint(want) {
		t.Fatalf("second lease = %v, want %v", ids(got2), want)
	}
	if err := s.Ack(ctx, "tencent", seqs(got)); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, "tencent", seqs(got2[:1]), "upstream said 10000"); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()["tencent"]
	if st.Depth != 2 || st.InFlight != 1 {
		t.Fatalf("stats = %+v, want depth 2, in flight 1", st)
	}
	closeT(t, s)

	s = openT(t, dir)
	defer closeT(t, s)
	if st := s.Stats()["tencent"]; st.Depth != 2 || st.InFlight != 0 || st.Bytes <= 0 {
		t.Fatalf("stats after reopen = %+v", st)
	}
	got, _ = s.Lease(ctx, "tencent", 10, 1<<20)
	if want := []string{"c", "d"}; fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("lease after reopen = %v, want %v", ids(got), want)
	}
	if got[0].Attempts != 1 || got[0].LastError != "upstream said 10000" {
		t.Fatalf("failed attempt not kept: %+v", got[0])
	}
	// Acknowledged ids stay known: no re-store within the dedupe window.
	if res, _ := s.Append(ctx, recs("tencent", "a")); res.Duplicates != 1 {
		t.Fatalf("acked id stored again: %+v", res)
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"))
	defer closeT(t, s)
	if _, err := s.Append(ctx, recs("tencent", "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Lease(ctx, "tencent", 3, 1<<20)
	if err := s.DeadLetter(ctx, "tencent", seqs(got[1:2]), "code 31001: bad action_type"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, "tencent", []uint64{got[0].Seq, got[2].Seq}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()["tencent"]
	if st.Depth != 0 || st.DeadLetters != 1 || st.Bytes != 0 {
		t.Fatalf("stats = %+v", st)
	}
	dl, err := s.DeadLetters("tencent", 0, 10)
	if err != nil || len(dl) != 1 || dl[0].ID != "b" || dl[0].Reason != "code 31001: bad action_type" || dl[0].DeadAt.IsZero() {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	n, err := s.Replay(ctx, "tencent", []string{"b", "zz"}, false)
	if err != nil || n != 1 {
		t.Fatalf("replay = %d, %v", n, err)
	}
	got, _ = s.Lease(ctx, "tencent", 10, 1<<20)
	if len(got) != 1 || got[0].ID != "b" || got[0].Attempts != 0 {
		t.Fatalf("after replay lease = %+v", got)
	}
	if st := s.Stats()["tencent"]; st.DeadLetters != 0 || st.Depth != 1 {
		t.Fatalf("stats after replay = %+v", st)
	}
}

func TestFullRefusesAndKeepsStored(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"), func(o *Options) { o.MaxBytes = 2000 })
	defer closeT(t, s)
	n := 0
	var err error
	for err == nil {
		_, err = s.Append(ctx, recs("tencent", fmt.Sprint("id", n)))
		n++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	before := s.Stats()["tencent"].Depth
	if before != int64(n-1) {
		t.Fatalf("depth %d, want %d", before, n-1)
	}
	// A refused multi-record append stores none of its records.
	if _, err := s.Append(ctx, recs("tencent", "x1", "x2")); !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v", err)
	}
	if d := s.Stats()["tencent"].Depth; d != before {
		t.Fatalf("depth changed to %d", d)
	}
	// Delivery makes room again.
	got, _ := s.Lease(ctx, "tencent", 5, 1<<20)
	if err := s.Ack(ctx, "tencent", seqs(got)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, recs("tencent", "after")); err != nil {
		t.Fatalf("append after room was made: %v", err)
	}
}

func TestConcurrentAppendsShareCommits(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	var wg sync.WaitGroup
	const workers, per = 32, 50
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.Append(ctx, recs("tencent", fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	closeT(t, s)
	s = openT(t, dir)
	defer closeT(t, s)
	seen := map[string]bool{}
	for {
		got, err := s.Lease(ctx, "tencent", 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		for _, e := range got {
			if seen[e.ID] {
				t.Fatalf("%s handed out twice", e.ID)
			}
			seen[e.ID] = true
		}
		if err := s.Ack(ctx, "tencent", seqs(got)); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != workers*per {
		t.Fatalf("got %d entries back, want %d", len(seen), workers*per)
	}
}

func TestClosedSpoolRefuses(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool"))
	closeT(t, s)
	if _, err := s.Append(context.Background(), recs("tencent", "a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestUnknownQueue(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool"))
	defer closeT(t, s)
	if _, err := s.Append(context.Background(), recs("nope", "a")); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("err = %v", err)
	}
}

func TestSecondOpenIsRefusedNotQuarantined(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	defer closeT(t, s)
	_, err := Open(Options{Dir: dir, Queues: queues})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "quarantine")); !os.IsNotExist(err) {
		t.Fatalf("a locked store must never be quarantined")
	}
}

func TestDedupeWindowExpires(t *testing.T) {
	t.Parallel() // two seconds asleep: beside the long ones
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"), func(o *Options) { o.DedupeWindow = time.Second })
	defer closeT(t, s)
	if _, err := s.Append(ctx, recs("tencent", "a")); err != nil {
		t.Fatal(err)
	}
	// badger TTLs have one-second resolution.
	time.Sleep(2100 * time.Millisecond)
	res, err := s.Append(ctx, recs("tencent", "a"))
	if err != nil || res.Accepted != 1 {
		t.Fatalf("after the window: %+v %v", res, err)
	}
}

// TestLargestRequestFitsOneCommit: the API takes up to 1000 actions with
// ids of up to 128 characters in one request, and the spool stores a
// request in one transaction. With the default memtable (whose size
// bounds badger's transactions) the largest such request must fit, and
// so must acknowledging all of it at once.
func TestLargestRequestFitsOneCommit(t *testing.T) {
	s := openT(t, t.TempDir())
	defer closeT(t, s)
	in := make([]Record, 1000)
	for i := range in {
		id := fmt.Sprintf("%0128d", i)
		in[i] = Record{Queue: "tencent", ID: id, Payload: bytes.Repeat([]byte("x"), 2048)}
	}
	res, err := s.Append(context.Background(), in)
	if err != nil || res.Accepted != 1000 {
		t.Fatalf("append of 1000 actions with 128-character ids: %+v, %v", res, err)
	}
	es, err := s.Lease(context.Background(), "tencent", 1000, 1<<30)
	if err != nil || len(es) != 1000 {
		t.Fatalf("lease: %d, %v", len(es), err)
	}
	if err := s.Ack(context.Background(), "tencent", seqs(es)); err != nil {
		t.Fatalf("ack of 1000 at once: %v", err)
	}
	if d := s.Stats()["tencent"].Depth; d != 0 {
		t.Fatalf("depth %d after the ack", d)
	}
}

// TestChunks: an append bigger than a chunk is stored as several, and
// leases, acks, failures and dead letters address single entries inside
// them, across a reopen.
func TestChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	var want []string
	for i := range 2*maxChunk + 44 {
		want = append(want, fmt.Sprintf("c%03d", i))
	}
	res, err := s.Append(ctx, recs("tencent", want...))
	if err != nil || res.Accepted != len(want) {
		t.Fatalf("append: %+v, %v", res, err)
	}
	// Leases cut chunks anywhere.
	var got []Entry
	for _, max := range []int{3, 200, 1000} {
		es, err := s.Lease(ctx, "tencent", max, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, es...)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("leased %d entries out of order or missing", len(got))
	}
	seq := func(i int) uint64 { return got[i].Seq }
	// Ack every third entry, dead-letter two, fail one with release:
	// it comes back first.
	var acks []uint64
	left := map[string]bool{}
	for i := range got {
		if i%3 == 0 {
			acks = append(acks, seq(i))
		} else if i != 5 && i != 200 && i != 130 {
			left[got[i].ID] = true
		}
	}
	if err := s.Ack(ctx, "tencent", acks); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "tencent", []uint64{seq(5), seq(200)}, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, "tencent", []uint64{seq(130)}, "timeout"); err != nil {
		t.Fatal(err)
	}
	s.Release("tencent", []uint64{seq(130)})
	closeT(t, s)

	s = openT(t, dir)
	defer closeT(t, s)
	st := s.Stats()["tencent"]
	if st.Depth != int64(len(left)+1) || st.DeadLetters != 2 {
		t.Fatalf("after reopen: %+v, want depth %d and 2 dead letters", st, len(left)+1)
	}
	es, err := s.Lease(ctx, "tencent", 1000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		switch {
		case e.ID == got[130].ID:
			if e.Attempts != 1 || e.LastError != "timeout" {
				t.Errorf("failed entry: %+v", e)
			}
		case !left[e.ID]:
			t.Errorf("entry %s should be gone", e.ID)
		default:
			n++
		}
	}
	if n != len(left) || len(es) != len(left)+1 {
		t.Fatalf("leased %d entries, want %d", len(es), len(left)+1)
	}
	dl, err := s.DeadLetters("tencent", 0, 10)
	if err != nil || fmt.Sprint(ids(dl)) != fmt.Sprint([]string{got[5].ID, got[200].ID}) {
		t.Fatalf("dead letters %v, %v", ids(dl), err)
	}
	// Everything acked: the queue is empty and its counters are zero.
	var all []uint64
	for _, e := range es {
		all = append(all, e.Seq)
	}
	if err := s.Ack(ctx, "tencent", all); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats()["tencent"]; st.Depth != 0 || st.Bytes != 0 || st.OldestAgeSeconds != 0 {
		t.Fatalf("after acking all: %+v", st)
	}
}

// TestAckInOrderMovesTheHead: acknowledging the first entries of the
// queue in order, across two chunks, deletes the first chunk, leaves the
// second as it is and moves the head past them; they stay gone across a
// reopen, acking them again changes nothing, and an ack out of order
// rewrites the chunk.
func TestAckInOrderMovesTheHead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("h%d", i))
	}
	// Two appends, one after the other: two chunks of five.
	for _, part := range [][]string{want[:5], want[5:]} {
		if _, err := s.Append(ctx, recs("tencent", part...)); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Lease(ctx, "tencent", 10, 1<<20)
	if err != nil || len(es) != 10 {
		t.Fatalf("lease: %d, %v", len(es), err)
	}
	chunk := func(s *Spool, last Entry) []byte {
		return storedValue(t, s, seqKey(kindEntry, "tencent", last.Seq))
	}
	before := chunk(s, es[9])
	if err := s.Ack(ctx, "tencent", seqs(es[:7])); err != nil {
		t.Fatal(err)
	}
	if chunk(s, es[4]) != nil {
		t.Error("the first chunk, all acknowledged, is still there")
	}
	if !bytes.Equal(chunk(s, es[9]), before) {
		t.Error("acknowledging the first entries in order rewrote the second chunk")
	}
	if st := s.Stats()["tencent"]; st.Depth != 3 {
		t.Fatalf("depth %d after acking 7 of 10", st.Depth)
	}
	closeT(t, s)

	s = openT(t, dir)
	defer closeT(t, s)
	again := func(what string, want int64) {
		t.Helper()
		if err := s.Ack(ctx, "tencent", seqs(es[:7])); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats()["tencent"]; st.Depth != want {
			t.Fatalf("%s: depth %d, want %d", what, st.Depth, want)
		}
	}
	again("acking the gone entries again", 3)
	got, err := s.Lease(ctx, "tencent", 10, 1<<20)
	if err != nil || fmt.Sprint(ids(got)) != fmt.Sprint(want[7:]) {
		t.Fatalf("after reopen: %v, %v", ids(got), err)
	}
	if err := s.Ack(ctx, "tencent", []uint64{es[8].Seq}); err != nil {
		t.Fatal(err)
	}
	after := chunk(s, es[9])
	rest, err := decodeEntries(es[9].Seq, after)
	if err != nil || len(rest) != 2 || rest[0].seq != es[7].Seq || rest[1].seq != es[9].Seq {
		t.Fatalf("rewritten chunk: %+v, %v; want seqs %d and %d", rest, err, es[7].Seq, es[9].Seq)
	}
	again("and once the chunk was rewritten", 2)
}

// OnAppend hears, after each commit, which queues got new entries: a
// delivery worker waiting on an empty queue is woken, not left to poll.
func TestOnAppendNamesTheQueuesThatGotEntries(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var heard []string
	s := openT(t, t.TempDir(), func(o *Options) {
		o.OnAppend = func(q string) { mu.Lock(); heard = append(heard, q); mu.Unlock() }
	})
	defer closeT(t, s)
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(heard)
		heard = nil
		return out
	}
	if _, err := s.Append(ctx, append(recs("tencent", "a", "b"), recs("tongdun", "c")...)); err != nil {
		t.Fatal(err)
	}
	if h := got(); !slices.Equal(h, []string{"tencent", "tongdun"}) {
		t.Fatalf("after appending to two queues: %v", h)
	}
	if _, err := s.Append(ctx, recs("tencent", "a")); err != nil {
		t.Fatal(err)
	}
	if h := got(); len(h) != 0 {
		t.Fatalf("after a duplicate only: %v, want nothing", h)
	}
	es, err := s.Lease(ctx, "tencent", 10, 1<<20)
	if err != nil || len(es) != 2 {
		t.Fatalf("lease: %v %v", es, err)
	}
	if err := s.DeadLetter(ctx, "tencent", seqs(es), "refused"); err != nil {
		t.Fatal(err)
	}
	if h := got(); len(h) != 0 {
		t.Fatalf("after dead-lettering: %v, want nothing", h)
	}
	if n, err := s.Replay(ctx, "tencent", nil, true); err != nil || n != 2 {
		t.Fatalf("replay: %d %v", n, err)
	}
	if h := got(); !slices.Equal(h, []string{"tencent"}) {
		t.Fatalf("after a replay: %v", h)
	}
}
