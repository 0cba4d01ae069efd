package spool

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
)

// The sweeps below damage a store the way a disk does (three bytes
// inverted), at offsets 4 KiB apart in every file, one case each, and
// check after each restart that every entry the damage did not touch comes
// out intact, that what it touched is gone, and that the loss is reported
// with its count.
//
// With -soak (or OUTPOST_SOAK=1) a sweep takes every 4 KiB of every file:
//
//	OUTPOST_SOAK=1 go test -run 'DamageSweep' ./spool/
//
// The default run takes half of those offsets: always the first and the
// last 4 KiB of every file (so every file, of every kind, crashed and
// cleanly closed) and, in the journal, every offset whose damage hits the
// ack record or two records at once; the rest drawn at random. The seed
// is logged; OUTPOST_SWEEP_SEED=N draws the same offsets again.

// sweepStep is the distance between two damaged offsets.
const sweepStep = 4096

var soakFlag = flag.Bool("soak", false, "damage every 4 KiB of every file in the damage sweeps, not a sample")

// soak reports whether the sweeps take every offset (-soak or
// OUTPOST_SOAK=1, as in chaos).
func soak() bool { return *soakFlag || os.Getenv("OUTPOST_SOAK") == "1" }

// sweepCase is one damaged offset of one file.
type sweepCase struct {
	file string // base name
	off  int64
	must bool // taken in every run
}

// sampleSweep returns the cases a run takes, in their order: all of them
// with -soak; otherwise those marked must (mustWhat says which they are)
// and, drawn at random, enough of the others to take half the cases
// (rounded up).
func sampleSweep(t *testing.T, cases []sweepCase, mustWhat string) []sweepCase {
	t.Helper()
	if soak() {
		t.Logf("soak: all %d offsets, one every 4 KiB", len(cases))
		return cases
	}
	seed := rand.Uint64()
	if v := os.Getenv("OUTPOST_SWEEP_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("OUTPOST_SWEEP_SEED=%q: %v", v, err)
		}
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	take := make([]bool, len(cases))
	n := 0
	var rest []int
	for i, c := range cases {
		if c.must {
			take[i] = true
			n++
		} else {
			rest = append(rest, i)
		}
	}
	must := n
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	for _, i := range rest {
		if n >= (len(cases)+1)/2 {
			break
		}
		take[i] = true
		n++
	}
	var out []sweepCase
	for i, c := range cases {
		if take[i] {
			out = append(out, c)
		}
	}
	t.Logf("%d of %d offsets: %d always (%s), %d drawn with seed %d "+
		"(OUTPOST_SWEEP_SEED=%d draws them again; OUTPOST_SOAK=1 takes every offset)", n, len(cases), must, mustWhat, n-must, seed, seed)
	return out
}

// flip3 inverts three bytes of path at off.
func flip3(t *testing.T, path string, off int64) { invertBytes(t, path, off, 3) }

// invertBytes inverts n bytes of path at off (fewer at its end), in place.
func invertBytes(t *testing.T, path string, off int64, n int) {
	t.Helper()
	if _, err := agenttest.InvertBytes(path, off, n); err != nil {
		t.Fatal(err)
	}
}

// drainIDs leases and acks everything in queue tencent and returns the ids
// handed out, with their payloads checked against want.
func drainIDs(t *testing.T, s *Spool, want map[string][]byte) map[string]bool {
	t.Helper()
	ctx := context.Background()
	got := map[string]bool{}
	for {
		es, err := s.Lease(ctx, "tencent", 500, 1<<30)
		if err != nil {
			t.Fatalf("lease: %v", err)
		}
		if len(es) == 0 {
			return got
		}
		for _, e := range es {
			if p, ok := want[e.ID]; !ok || string(p) != string(e.Payload) {
				t.Fatalf("entry %s handed out with a payload that was never written: %q", e.ID, e.Payload)
			}
			got[e.ID] = true
		}
		if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
			t.Fatal(err)
		}
	}
}

func sweepPayload(id string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"pad":%q}`, id, strings.Repeat("p", 90+len(id)%40)))
}

// journalRec is one record of the journal under test and what it did.
type journalRec struct {
	off, end int64
	appended []string // ids
	acked    []string
}

// TestJournalDamageSweep: a journal holding acknowledged appends (and an
// ack) that the store does not hold yet, as a crash leaves it before a
// checkpoint. Each case inverts three bytes at one offset of the segment.
// The records the damage hits are lost and counted; every other record is
// replayed, those after the damage included.
func TestJournalDamageSweep(t *testing.T) {
	t.Parallel() // CPU-bound and on its own files: beside the other long ones
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.TrimInterval = -1 })
	want := map[string][]byte{}
	var before []string
	for i := range 10 {
		id := fmt.Sprintf("pre-%02d", i)
		before = append(before, id)
		want[id] = sweepPayload(id)
	}
	mk := func(ids []string) []Record {
		var rs []Record
		for _, id := range ids {
			rs = append(rs, Record{Queue: "tencent", ID: id, Payload: want[id]})
		}
		return rs
	}
	if _, err := s.Append(ctx, mk(before)); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	copyStore(t, dir, crashed)

	// After the checkpoint, one record per commit: 30 appends, the ack
	// of the entries stored before, 30 appends.
	var history []journalRec
	appendN := func(k int) {
		var ids []string
		for j := range 8 {
			id := fmt.Sprintf("r%02d-%d", k, j)
			ids = append(ids, id)
			want[id] = sweepPayload(id)
		}
		if _, err := s.Append(ctx, mk(ids)); err != nil {
			t.Fatal(err)
		}
		history = append(history, journalRec{appended: ids})
	}
	for k := range 30 {
		appendN(k)
	}
	es, err := s.Lease(ctx, "tencent", len(before), 1<<30)
	if err != nil || len(es) != len(before) {
		t.Fatalf("lease: %d %v", len(es), err)
	}
	if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
		t.Fatal(err)
	}
	history = append(history, journalRec{acked: before})
	for k := 30; k < 60; k++ {
		appendN(k)
	}
	jdir := filepath.Join(dir, journalDirName)
	copyFiles(t, jdir, filepath.Join(crashed, journalDirName), func(string) bool { return true })
	closeT(t, s)

	names, _ := journal.ListSegments(vfs.Default, filepath.Join(crashed, journalDirName))
	if len(names) != 1 {
		t.Fatalf("segments %v, want one", names)
	}
	segPath := filepath.Join(crashed, journalDirName, names[0])
	sc, err := journal.ReadSegment(vfs.Default, segPath, nil)
	if err != nil || len(sc.Recs) < len(history) {
		t.Fatalf("segment: %d records, %v", len(sc.Recs), err)
	}
	// The records of the history are the segment's last ones; find their
	// offsets by walking the framing.
	data, _ := os.ReadFile(segPath)
	var offs []int64
	for off := int64(journal.HeaderSize); ; {
		n, ok := journal.RecordAt(data, int(off), sc.Recs[len(offs)].Seq)
		if !ok {
			break
		}
		offs = append(offs, off)
		off += int64(journal.RecordSize(journal.Version, n))
		if len(offs) == len(sc.Recs) {
			offs = append(offs, off)
			break
		}
	}
	skip := len(sc.Recs) - len(history)
	for i := range history {
		history[i].off, history[i].end = offs[skip+i], offs[skip+i+1]
	}
	last := history[len(history)-1]

	// The records damage at off hits: their head or body (a record whose
	// end alone is damaged still reads).
	hit := func(h journalRec, off int64) bool { return off < h.end-journal.RecordEnd && off+3 > h.off }
	hits := func(off int64) (n int, ack bool) {
		for _, h := range history {
			if hit(h, off) {
				n++
				ack = ack || len(h.acked) > 0
			}
		}
		return n, ack
	}
	var all []sweepCase
	for off := int64(sweepStep); off < last.end; off += sweepStep {
		n, ack := hits(off)
		all = append(all, sweepCase{file: names[0], off: off, must: off == sweepStep || off+sweepStep >= last.off || n > 1 || ack})
	}
	// The last record, written whole and damaged since, in its head, its
	// body and its end: nothing follows it, and its end tells it from a
	// write a crash cut (journal's read.go).
	for _, off := range []int64{last.off + 2, (last.off + last.end) / 2, last.end - 5} {
		all = append(all, sweepCase{file: names[0], off: off, must: true})
	}
	if soak() {
		for off := last.off; off < last.end; off += 16 {
			all = append(all, sweepCase{file: names[0], off: off})
		}
	}
	if len(all) < 8 {
		t.Fatalf("only %d cases: the journal under test is too small", len(all))
	}
	for _, c := range sampleSweep(t, all, "the first and last 4 KiB, and where the damage hits the ack or two records") {
		off := c.off
		t.Run(fmt.Sprintf("offset_%d", off), func(t *testing.T) {
			// What the damage hits, and what must therefore be missing.
			present := map[string]bool{}
			for _, id := range before {
				present[id] = true
			}
			var hitRecords int
			var lostIDs []string
			for _, h := range history {
				hit := hit(h, off)
				if hit {
					hitRecords++
				}
				for _, id := range h.appended {
					if hit {
						lostIDs = append(lostIDs, id)
					} else {
						present[id] = true
					}
				}
				if !hit {
					for _, id := range h.acked {
						delete(present, id)
					}
				}
			}
			if hitRecords == 0 {
				t.Skip("between records") // cannot happen: records are contiguous
			}

			run := t.TempDir()
			copyFiles(t, crashed, run, func(n string) bool { return n != "LOCK" })
			copyFiles(t, filepath.Join(crashed, journalDirName), filepath.Join(run, journalDirName), func(string) bool { return true })
			flip3(t, filepath.Join(run, journalDirName, names[0]), off)
			qdir := filepath.Join(t.TempDir(), "quarantine")
			r := openT(t, run, func(o *Options) { o.QuarantineDir = qdir; o.TrimInterval = -1 })
			defer closeT(t, r)
			got := drainIDs(t, r, want)
			var missing, extra []string
			for id := range present {
				if !got[id] {
					missing = append(missing, id)
				}
			}
			for id := range got {
				if !present[id] {
					extra = append(extra, id)
				}
			}
			sort.Strings(missing)
			sort.Strings(extra)
			if len(missing) > 0 || len(extra) > 0 {
				t.Fatalf("damage at %d (hits %d records, %v): missing %v, unexpected %v", off, hitRecords, lostIDs, missing, extra)
			}
			reps := r.Damage()
			if len(reps) != 1 {
				t.Fatalf("damage reports: %+v, want one", reps)
			}
			rep := reps[0]
			// In the last record, damage to how its writes are framed can
			// leave its actions uncountable: reported so, never miscounted.
			uncounted := rep.CountUnknown && off >= last.off && rep.Lost() == 0
			if uncounted {
				t.Logf("the last record's entries reported uncounted: %s", rep.Message)
			}
			if rep.JournalRecordsLost != uint64(hitRecords) || (rep.Lost() != int64(len(lostIDs)) && !uncounted) {
				t.Fatalf("report: %d records and %d entries lost (%s), want %d and %d", rep.JournalRecordsLost, rep.Lost(), rep.Message, hitRecords, len(lostIDs))
			}
			// The damaged bytes are set aside, named by their offsets.
			set, _ := filepath.Glob(filepath.Join(rep.SetAside, "*.damaged"))
			if len(set) == 0 || !strings.Contains(set[0], fmt.Sprint(".", offsOf(history, off), "-")) {
				t.Fatalf("set aside: %v in %s", set, rep.SetAside)
			}
		})
	}
}

// offsOf is the offset of the record that holds off.
func offsOf(h []journalRec, off int64) int64 {
	for _, r := range h {
		if off >= r.off && off < r.end {
			return r.off
		}
	}
	return -1
}

// TestStoreDamageSweep: a store holding acknowledged entries in badger's
// own files (the journal checkpointed behind them), as a crash leaves it,
// and the same store closed cleanly (its memtable flushed to a table).
// Each case inverts three bytes at one offset of one file. Damage to the
// memtable log, a table, the MANIFEST or the key registry costs no entry
// (the values are found again in the value log); damage to a value costs
// the chunk it is in, and only that, counted.
func TestStoreDamageSweep(t *testing.T) {
	t.Parallel() // CPU-bound and on its own files: beside the other long ones
	for _, clean := range []bool{false, true} {
		name := "crashed"
		if clean {
			name = "closed"
		}
		t.Run(name, func(t *testing.T) { storeDamageSweep(t, clean) })
	}
}

func storeDamageSweep(t *testing.T, clean bool) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.TrimInterval = -1 })
	want := map[string][]byte{}
	for k := range 50 {
		var rs []Record
		for j := range 8 {
			id := fmt.Sprintf("s%02d-%d", k, j)
			want[id] = sweepPayload(id)
			rs = append(rs, Record{Queue: "tencent", ID: id, Payload: want[id]})
		}
		if _, err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	store := t.TempDir()
	if clean {
		closeT(t, s)
		copyFiles(t, dir, store, func(n string) bool { return n != "LOCK" })
		copyFiles(t, filepath.Join(dir, journalDirName), filepath.Join(store, journalDirName), func(string) bool { return true })
	} else {
		if err := s.checkpoint(); err != nil {
			t.Fatal(err)
		}
		copyStore(t, dir, store)
		copyFiles(t, filepath.Join(dir, journalDirName), filepath.Join(store, journalDirName), func(string) bool { return true })
		closeT(t, s)
	}

	// Where each value is in the value log, and which ids it holds.
	type value struct {
		off, end int64
		ids      []string
	}
	var values []value
	vlogs, _ := filepath.Glob(filepath.Join(store, "*.vlog"))
	for _, p := range vlogs {
		lf, err := openLogFile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		lf.scan(func(e logEntry) {
			es, err := decodeEntries(seqFromKey(e.key[:len(e.key)-8]), e.value)
			if err != nil {
				return
			}
			v := value{off: e.off, end: e.off + e.size}
			for _, x := range es {
				v.ids = append(v.ids, x.rec.ID)
			}
			values = append(values, v)
		}, nil)
		lf.close()
	}
	if len(values) == 0 {
		t.Fatal("no values found in the value log")
	}

	files, _ := filepath.Glob(filepath.Join(store, "*"))
	var all []sweepCase
	for _, f := range files {
		base := filepath.Base(f)
		fi, err := os.Stat(f)
		if err != nil || fi.IsDir() || base == "DISCARD" { // DISCARD: value-log GC's statistics, no data
			continue
		}
		used := int64(len(usedBytes(t, f)))
		// Every 4 KiB; a file smaller than that in its middle.
		first := min(int64(sweepStep), used/2)
		for off := first; off < used; off += sweepStep {
			all = append(all, sweepCase{file: base, off: off, must: off == first || off+sweepStep >= used})
		}
	}
	if len(all) < 10 {
		t.Fatalf("only %d cases", len(all))
	}
	for _, c := range sampleSweep(t, all, "the first and last 4 KiB of each file") {
		base, off := c.file, c.off
		t.Run(fmt.Sprintf("%s_%d", base, off), func(t *testing.T) {
			var lost []string
			if strings.HasSuffix(base, ".vlog") {
				for _, v := range values {
					if off < v.end && off+3 > v.off {
						lost = append(lost, v.ids...)
					}
				}
			}
			run := t.TempDir()
			copyFiles(t, store, run, func(string) bool { return true })
			copyFiles(t, filepath.Join(store, journalDirName), filepath.Join(run, journalDirName), func(string) bool { return true })
			flip3(t, filepath.Join(run, base), off)
			qdir := filepath.Join(t.TempDir(), "quarantine")
			r := openT(t, run, func(o *Options) { o.QuarantineDir = qdir; o.TrimInterval = -1 })
			defer closeT(t, r)
			if q := r.Quarantine(); q != nil {
				t.Fatalf("quarantined whole: %s", q.Reason)
			}
			got := drainIDs(t, r, want)
			var missing []string
			for id := range want {
				if !got[id] && !slices.Contains(lost, id) {
					missing = append(missing, id)
				}
			}
			sort.Strings(missing)
			if len(missing) > 0 {
				t.Fatalf("damage at %s:%d lost entries it does not touch: %v (reports %+v)", base, off, missing, r.Damage())
			}
			var reported int64
			for _, rep := range r.Damage() {
				reported += rep.Lost()
			}
			gone := int64(len(want) - len(got))
			if reported < gone {
				t.Fatalf("damage at %s:%d: %d entries gone, %d reported: %+v", base, off, gone, reported, r.Damage())
			}
			if gone > 0 {
				t.Logf("%s:%d: %d entries lost with the value they were in, %d reported", base, off, gone, reported)
			}
		})
	}
}

// usedBytes is the file up to its last byte that is not zero.
func usedBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[:journal.LastNonZero(b)+1]
}
