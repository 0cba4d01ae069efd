package spool

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestKVWriteGetScanReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	res, err := s.Write(ctx, []KV{{Key: "dec/1", Value: []byte("one")}, {Key: "dec/2", Value: []byte("two")}, {Key: "vel/a/1", Value: []byte("x")}},
		recs("tongdun", "1:td"))
	if err != nil || res.Accepted != 1 {
		t.Fatalf("write: %+v %v", res, err)
	}
	if d := s.Stats()["tongdun"].Depth; d != 1 {
		t.Fatalf("record not queued with the keys: depth %d", d)
	}
	closeT(t, s)
	s = openT(t, dir)
	defer closeT(t, s)
	v, ok, err := s.Get("dec/2")
	if err != nil || !ok || string(v) != "two" {
		t.Fatalf("get after reopen: %q %v %v", v, ok, err)
	}
	var keys []string
	s.Scan("dec/", "", func(k string, v []byte) bool { keys = append(keys, k); return true })
	if len(keys) != 2 || keys[0] != "dec/1" {
		t.Fatalf("scan = %v", keys)
	}
	s.Write(ctx, []KV{{Key: "dec/1", Delete: true}}, nil)
	if _, ok, _ := s.Get("dec/1"); ok {
		t.Fatal("deleted key still there")
	}
	s.Write(ctx, []KV{{Key: "ttl", Value: []byte("v"), TTL: time.Second}}, nil)
	if _, ok, _ := s.Get("ttl"); !ok {
		t.Fatal("ttl key missing at once")
	}
	// KV keys never show up in queue operations.
	if es, _ := s.Lease(ctx, "tencent", 10, 1<<20); len(es) != 0 {
		t.Fatalf("kv leaked into a queue: %v", es)
	}
}

// A read that follows a write's answer sees the write. The committer
// answers after badger has the group, not only the journal, with or
// without PutSyncWithin. Answering earlier needs a gate for readers, which
// this test catches the lack of: tried twice (BENCHMARKS.md, release 0.4,
// and issue #26, where a gate made it correct and the one-connection p50
// no faster).
func TestReadsSeeWhatWasAnswered(t *testing.T) {
	for _, within := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprintf("PutSyncWithin=%s", within), func(t *testing.T) {
			readsSeeWhatWasAnswered(t, within)
		})
	}
}

// A writer's buffers are its own again once Write returns, though badger
// may apply the commit after that (commitGroup): what is stored is what
// was written.
func TestWriteBuffersAreTheCallers(t *testing.T) {
	for _, within := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprintf("PutSyncWithin=%s", within), func(t *testing.T) {
			s := openT(t, t.TempDir(), func(o *Options) { o.PutSyncWithin = within })
			defer closeT(t, s)
			key, val := []byte("buf/0000"), []byte("value 0000")
			for i := range 500 {
				copy(key[4:], fmt.Sprintf("%04d", i))
				copy(val[6:], fmt.Sprintf("%04d", i))
				want := string(val)
				if _, err := s.Write(context.Background(), []KV{{Key: string(key), Value: val, TTL: time.Hour}}, nil); err != nil {
					t.Fatal(err)
				}
				copy(val, "XXXXXXXXXX") // the caller's again
				if v, ok, err := s.Get(string(key)); err != nil || !ok || string(v) != want {
					t.Fatalf("write %d: stored %q (%v %v), want %q", i, v, ok, err, want)
				}
			}
		})
	}
}

func readsSeeWhatWasAnswered(t *testing.T, within time.Duration) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), func(o *Options) { o.PutSyncWithin = within })
	defer closeT(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := fmt.Sprintf("rw/%d/%04d", w, i)
				if _, err := s.Write(ctx, []KV{{Key: k, Value: []byte(k)}}, nil); err != nil {
					errs <- err
					return
				}
				if v, ok, err := s.Get(k); err != nil || !ok || string(v) != k {
					errs <- fmt.Errorf("Get(%s) right after its write: %q %v %v", k, v, ok, err)
					return
				}
				seen := false
				if err := s.Scan(fmt.Sprintf("rw/%d/", w), k, func(key string, _ []byte) bool {
					seen = key == k
					return false
				}); err != nil || !seen {
					errs <- fmt.Errorf("Scan from %s right after its write: seen=%v %v", k, seen, err)
					return
				}
			}
		}()
	}
	// One appender leasing what it just appended.
	for i := range 300 {
		id := fmt.Sprintf("seen-%04d", i)
		if _, err := s.Append(ctx, recs("tongdun", id)); err != nil {
			t.Fatal(err)
		}
		es, err := s.Lease(ctx, "tongdun", 10, 1<<20)
		if err != nil || len(es) != 1 || es[0].ID != id {
			t.Fatalf("lease right after appending %s: %v %v", id, ids(es), err)
		}
		if err := s.Ack(ctx, "tongdun", seqs(es)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// PutSyncWithin: a Write of keys only returns before the journal's sync
// (the process holds it: readers see it, a clean close keeps it), a synced
// commit covers it, an idle committer syncs it within the bound, and a
// busy one syncs between groups. Writes with records are never answered
// before their sync.
func TestPutSyncWithin(t *testing.T) {
	ctx := context.Background()
	positions := func(s *Spool) (applied, synced uint64) { return s.jnl.Positions() }

	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.PutSyncWithin = time.Hour })
	if _, err := s.Write(ctx, []KV{{Key: "dec/1", Value: []byte("one")}}, nil); err != nil {
		t.Fatal(err)
	}
	if !s.jnl.Unsynced() {
		t.Fatal("a key-only write was synced before it returned: the setting does nothing")
	}
	if v, ok, _ := s.Get("dec/1"); !ok || string(v) != "one" {
		t.Fatalf("read after the answer: %q %v", v, ok)
	}
	if _, err := s.Write(ctx, []KV{{Key: "dec/2", Value: []byte("two")}}, recs("tongdun", "2:td")); err != nil {
		t.Fatal(err)
	}
	if a, sy := positions(s); a != sy {
		t.Fatalf("a write with a record returned unsynced (applied %d, synced %d)", a, sy)
	}
	if _, err := s.Append(ctx, recs("tencent", "3")); err != nil {
		t.Fatal(err)
	}
	if a, sy := positions(s); a != sy {
		t.Fatalf("an append returned unsynced (applied %d, synced %d)", a, sy)
	}
	if _, err := s.Write(ctx, []KV{{Key: "dec/3", Value: []byte("three")}}, nil); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = openT(t, dir, func(o *Options) { o.PutSyncWithin = 5 * time.Millisecond })
	for _, k := range []string{"dec/1", "dec/2", "dec/3"} {
		if _, ok, _ := s.Get(k); !ok {
			t.Fatalf("%s lost across a clean close", k)
		}
	}

	// Idle: the timer syncs.
	if _, err := s.Write(ctx, []KV{{Key: "dec/4", Value: []byte("four")}}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a, sy := positions(s); a != sy || s.jnl.Unsynced(); a, sy = positions(s) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle committer left the journal unsynced for 10 s (applied %d, synced %d)", a, sy)
		}
		time.Sleep(time.Millisecond)
	}

	// Busy: writers that never leave the committer idle still see syncs.
	stop := writeUntilStopped(t, s, func(w, i int) ([]KV, []Record) {
		return []KV{{Key: fmt.Sprintf("dec/w%d-%d", w, i), Value: []byte("x")}}, nil
	})
	seen := map[uint64]bool{}
	for len(seen) < 4 && !time.Now().After(deadline.Add(10*time.Second)) {
		_, sy := positions(s)
		seen[sy] = true
		time.Sleep(time.Millisecond)
	}
	stop()
	if len(seen) < 4 {
		t.Fatalf("under constant writes the synced position took only %d values: the committer does not sync while busy", len(seen))
	}
	closeT(t, s)
}

// A checkpoint beside running commits: it reads badger's version while
// badger's writer applies commits (under -race this failed with
// db.MaxVersion(), whose read of the memtable's counter races with the
// writer), and the version it records covers every commit answered
// before it began.
func TestCheckpointBesideCommits(t *testing.T) {
	s := openT(t, t.TempDir())
	defer closeT(t, s)
	stop := writeUntilStopped(t, s, func(w, i int) ([]KV, []Record) {
		id := fmt.Sprintf("ck-%d-%d", w, i)
		return []KV{{Key: id, Value: []byte("v")}}, recs("tencent", id)
	})
	// The version a checkpoint records is read beside commits that are
	// not yet applied (a checkpoint's own window is a few microseconds
	// long, so here it is read many times over).
	var last uint64
	for i := range 20000 {
		v := s.appliedVersion()
		if v < last {
			t.Fatalf("applied version went back: %d then %d", last, v)
		}
		last = v
		if i%1000 == 0 {
			if err := s.checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()
	if v, m := s.appliedVersion(), s.db.MaxVersion(); v != m {
		t.Fatalf("with no commit running, the applied version %d is not badger's max version %d", v, m)
	}
}

// writeUntilStopped runs four writers, each writing what next(writer, n)
// gives until the returned stop is called (which waits for them).
func writeUntilStopped(t *testing.T, s *Spool, next func(w, i int) ([]KV, []Record)) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				kvs, rs := next(w, i)
				if _, err := s.Write(context.Background(), kvs, rs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
