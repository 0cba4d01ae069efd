package spool

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
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

// Value-log GC moves live values with unsynced writes and then deletes the
// old file. The spool holds that deletion back until the moved values are
// synced (gc.go); this pins the badger behaviour it relies on: while an
// iterator is open, a rewritten file stays on disk.
func TestGCKeepsRewrittenLogUntilReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70 MiB")
	}
	ctx := context.Background()
	dir := t.TempDir()
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
	// Drain all but a few, so the first value log is mostly garbage.
	for {
		es, err := s.Lease(ctx, "tencent", 1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var ack []uint64
		for _, e := range es {
			if e.Seq%500 != 7 {
				ack = append(ack, e.Seq)
			}
		}
		if len(es) == 0 {
			break
		}
		if err := s.Ack(ctx, "tencent", ack); err != nil {
			t.Fatal(err)
		}
	}
	// Closing flushes the deletes into a table; a second table starts a
	// compaction of both, which drops the acked values and counts them as
	// garbage in their value log.
	for round := 0; ; round++ {
		closeT(t, s)
		s = openT(t, dir, opt)
		deeper := false
		for wait := 0; wait < 20 && !deeper; wait++ {
			time.Sleep(50 * time.Millisecond)
			for _, ti := range s.db.Tables() {
				deeper = deeper || ti.Level > 0
			}
		}
		if deeper {
			break
		}
		if round == 20 {
			t.Fatal("no compaction ran")
		}
		if _, err := s.Append(ctx, recs("tongdun", fmt.Sprintf("filler-%d", round))); err != nil {
			t.Fatal(err)
		}
	}
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
