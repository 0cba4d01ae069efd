package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
)

func vlogFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			out[e.Name()] = true
		}
	}
	return out
}

// gcReadyStore fills a store with 18,000 entries of 4 KB across several
// value logs, acknowledges those ack says, and compacts until the first
// value log is mostly garbage: a value-log GC then has a file to rewrite.
func gcReadyStore(t *testing.T, dir string, ack func(seq uint64) bool) *Spool {
	t.Helper()
	ctx := context.Background()
	opt := func(o *Options) { o.GCInterval = time.Hour; o.TrimInterval = -1 }
	s := openT(t, dir, opt)
	pad := strings.Repeat("x", 4000)
	var ids []string
	for i := range 18000 {
		ids = append(ids, fmt.Sprintf("gc-%05d", i))
	}
	for i := 0; i < len(ids); i += 500 {
		rs := recs("tencent", ids[i:i+500]...)
		for j := range rs {
			rs[j].Payload = append(rs[j].Payload, pad...)
		}
		if _, err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledge what ack says, so the first value log is mostly garbage.
	for {
		es, err := s.Lease(ctx, "tencent", 1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var acks []uint64
		for _, e := range es {
			if ack(e.Seq) {
				acks = append(acks, e.Seq)
			} else {
				s.Release("tencent", []uint64{e.Seq})
			}
		}
		if len(es) == 0 || len(acks) == 0 {
			break
		}
		if err := s.Ack(ctx, "tencent", acks); err != nil {
			t.Fatal(err)
		}
	}
	// Closing flushes the deletes into a table; a second table starts a
	// compaction of both, which drops the acked values and counts them as
	// garbage in their value log.
	for round := 0; ; round++ {
		closeT(t, s)
		s = openT(t, dir, opt)
		// Level 0 is compacted once it holds levelZeroTables tables:
		// until then a round only adds one, and waiting is in vain.
		levels := func() (deeper bool, l0 int) {
			for _, ti := range s.db.Tables() {
				if ti.Level > 0 {
					deeper = true
				} else {
					l0++
				}
			}
			return deeper, l0
		}
		deeper, l0 := levels()
		for wait := 0; wait < 40 && !deeper && l0 >= levelZeroTables; wait++ {
			time.Sleep(50 * time.Millisecond)
			deeper, _ = levels()
		}
		if deeper {
			return s
		}
		if round == 20 {
			t.Fatal("no compaction ran")
		}
		if _, err := s.Append(ctx, recs("tongdun", fmt.Sprintf("filler-%d", round))); err != nil {
			t.Fatal(err)
		}
	}
}

// Value-log GC moves live values with unsynced writes and then deletes the
// old file. The spool holds that deletion back until the moved values are
// synced (gc.go); this pins the badger behaviour it relies on: while an
// iterator is open, a rewritten file stays on disk.
func TestGCKeepsRewrittenLogUntilReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70 MiB")
	}
	t.Parallel() // CPU-bound and on its own files: beside the other long ones
	ctx := context.Background()
	dir := t.TempDir()
	// All but a few (every 500th, from the 7th).
	s := gcReadyStore(t, dir, func(seq uint64) bool { return seq%500 != 7 })
	defer closeT(t, s)
	before := vlogFiles(t, dir)
	if len(before) < 2 {
		t.Fatalf("value logs: %v", before)
	}
	release := s.holdLogDeletes()
	if err := s.db.RunValueLogGC(0.5); err != nil {
		release()
		t.Fatalf("no value log was rewritten (%v): the test did not exercise GC", err)
	}
	held := vlogFiles(t, dir)
	for name := range before {
		if !held[name] {
			t.Errorf("%s deleted while the guard was held", name)
		}
	}
	release()
	after := vlogFiles(t, dir)
	gone := 0
	for name := range before {
		if !after[name] {
			gone++
		}
	}
	if gone != 1 {
		t.Errorf("%d value logs deleted after release, want 1 (before %v, after %v)", gone, before, after)
	}
	// What survived the move reads back.
	if st := s.Stats()["tencent"]; st.Depth != 36 {
		t.Errorf("depth %d, want 36", st.Depth)
	}
	es, err := s.Lease(ctx, "tencent", 100, 1<<30)
	if err != nil || len(es) != 36 {
		t.Fatalf("lease after gc: %d %v", len(es), err)
	}
}

// Badger's GC reads a value log from its start and stops at damaged bytes,
// as at a torn tail: the live values after them would go with the file.
// The spool reads the rewritten file again past the damage and writes
// those values again before the file is deleted (gc_rescue.go).
func TestGCKeepsValuesAfterDamage(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70 MiB")
	}
	t.Parallel() // CPU-bound and on its own files: beside the other long ones
	dir := t.TempDir()
	// The first 6,000 in order: whole chunks deleted, at the start of the
	// first value log, the 12,000 after them live.
	s := gcReadyStore(t, dir, func(seq uint64) bool { return seq <= 6000 })
	defer closeT(t, s)
	// In every value log but the newest, damage the first value that has
	// live ones after it (a live one loses its own entries, no more).
	names := vlogFiles(t, dir)
	var sealed []string
	for n := range names {
		sealed = append(sealed, n)
	}
	slices.Sort(sealed)
	sealed = sealed[:len(sealed)-1]
	damaged, lost := 0, 0
	for _, name := range sealed {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		type ent struct {
			off, size int64
			live      bool
			entries   int
		}
		var es []ent
		lastLive := -1
		logFileBytes(name, b).scan(func(e logEntry) {
			live := false
			_ = s.db.View(func(txn *badger.Txn) error {
				it, err := txn.Get(y.ParseKey(e.key))
				live = err == nil && it.Version() == y.ParseTs(e.key)
				return nil
			})
			n := 0
			if chunk, err := decodeEntries(seqFromKey(y.ParseKey(e.key)), e.value); err == nil && bytes.HasPrefix(e.key, []byte("q/tencent/")) {
				n = len(chunk)
			}
			if live {
				lastLive = len(es)
			}
			es = append(es, ent{e.off, e.size, live, n})
		}, nil)
		if lastLive < 1 {
			continue
		}
		i := slices.IndexFunc(es[:lastLive], func(x ent) bool { return !x.live })
		if i < 0 {
			i = 0
		}
		invertBytes(t, path, es[i].off+es[i].size/2, 1)
		damaged++
		if es[i].live {
			lost += es[i].entries
		}
	}
	if damaged == 0 {
		t.Fatal("no value log with a value before live ones: the test damages nothing")
	}
	fid := s.opts.rewrites
	if !s.collectOne() {
		t.Fatal("no value log was rewritten: the test did not exercise GC")
	}
	t.Logf("damaged %d of %v; GC rewrote fid %d", damaged, sealed, fid.fid.Load())
	var rescuedReport bool
	for _, r := range s.Damage() {
		rescuedReport = rescuedReport || r.Found == "value-log GC"
	}
	if !rescuedReport {
		t.Errorf("no damage report from the GC: %+v", s.Damage())
	}
	// Every entry but those in the damaged values comes out.
	ctx := context.Background()
	got := 0
	for {
		es, err := s.Lease(ctx, "tencent", 1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		got += len(es)
		if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
			t.Fatal(err)
		}
	}
	if got != 12000-lost {
		t.Fatalf("after gc: %d entries, want %d (12,000, less %d in damaged values); stats %+v", got, 12000-lost, lost, s.Stats()["tencent"])
	}
}
