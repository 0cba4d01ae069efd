package spool

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// Groups wait for the rest of a wave only after large groups, and stop
// waiting once load falls back to one caller at a time.
func TestWaveTracker(t *testing.T) {
	var w waveTracker
	if got := w.want(); got != 0 {
		t.Fatalf("idle: want %d, expected 0", got)
	}
	for range 20 {
		w.observe(1)
	}
	if got := w.want(); got != 0 {
		t.Errorf("one caller at a time: want %d, expected 0", got)
	}
	for range 40 {
		w.observe(64)
	}
	if got := w.want(); got < 28 || got > 32 {
		t.Errorf("waves of 64: want %d, expected about 32", got)
	}
	steps := 0
	for w.want() > 0 {
		w.observe(1)
		steps++
	}
	if steps > 30 {
		t.Errorf("took %d single-caller groups to stop waiting", steps)
	}
}

// oneGroup applies ops as one group, the way the committer would had they
// arrived together, and commits it. The committer is idle meanwhile (no
// other caller), so this is the only writer.
func oneGroup(t *testing.T, s *Spool, ops ...*op) {
	t.Helper()
	g := s.newGroup()
	for _, o := range ops {
		o.done = make(chan struct{})
		g.add(o, math.MaxInt64, math.MaxInt64)
	}
	s.commitGroup(g)
	for i, o := range ops {
		<-o.done
		if o.err != nil {
			t.Fatalf("op %d (kind %d): %v", i, o.kind, o.err)
		}
	}
}

// A group gathers the entries its appends store into chunks until it
// commits; any op that reads entries or numbers them otherwise (ack,
// failure, dead letter, replay, damage) comes after those chunks are
// staged, so it finds what earlier ops of the group appended, and a
// replayed entry never sits between the seqs of one chunk.
func TestGroupChunksAndOtherOps(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"))
	defer closeT(t, s)
	// A dead letter to replay later: d1, seq 1.
	if _, err := s.Append(ctx, recs("tencent", "d1")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "tencent", []uint64{1}, "bad"); err != nil {
		t.Fatal(err)
	}
	// One group: a1 a2 (seqs 2, 3), ack 2, dead-letter 3, b1 (4), fail 4,
	// x1 (5), replay d1 (6), y1 y2 (7, 8).
	oneGroup(t, s,
		&op{kind: opAppend, recs: recs("tencent", "a1", "a2")},
		&op{kind: opAck, queue: "tencent", seqs: []uint64{2}},
		&op{kind: opDead, queue: "tencent", seqs: []uint64{3}, msg: "bad too"},
		&op{kind: opAppend, recs: recs("tencent", "b1")},
		&op{kind: opFail, queue: "tencent", seqs: []uint64{4}, msg: "timeout"},
		&op{kind: opAppend, recs: recs("tencent", "x1")},
		&op{kind: opReplay, queue: "tencent", ids: []string{"d1"}, limit: 10},
		&op{kind: opAppend, recs: recs("tencent", "y1", "y2")},
	)
	st := s.Stats()["tencent"]
	if st.Depth != 5 || st.DeadLetters != 1 {
		t.Fatalf("stats %+v: want depth 5 (b1 x1 d1 y1 y2), 1 dead letter (a2)", st)
	}
	es, err := s.Lease(ctx, "tencent", 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(es), seqs(es)); got != "[b1 x1 d1 y1 y2] [4 5 6 7 8]" {
		t.Fatalf("leased %s", got)
	}
	if es[0].Attempts != 1 || es[0].LastError != "timeout" {
		t.Errorf("b1: %+v, want one failed attempt", es[0])
	}
	// Every entry is found by its seq alone.
	for i, e := range es {
		if err := s.Ack(ctx, "tencent", []uint64{e.Seq}); err != nil {
			t.Fatal(err)
		}
		if d := s.Stats()["tencent"].Depth; d != int64(len(es)-i-1) {
			t.Fatalf("after acking %s (seq %d): depth %d", e.ID, e.Seq, d)
		}
	}
}
