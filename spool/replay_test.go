package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
)

// copyStore copies badger's files of dir to dst as they are now (a running
// store copied file by file: what a crash would leave), without the journal.
func copyStore(t *testing.T, dir, dst string) {
	t.Helper()
	copyFiles(t, dir, dst, func(name string) bool { return name != "LOCK" })
}

func copyFiles(t *testing.T, dir, dst string, keep func(string) bool) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !keep(e.Name()) {
			continue
		}
		// In the kernel: reading each file into memory was most of the
		// damage sweeps' time under -race. A file of a live store deleted
		// since it was listed (a segment a checkpoint dropped, a value log
		// GC removed) is one a crash at this moment would not leave.
		err := agenttest.CopyFile(filepath.Join(dir, e.Name()), filepath.Join(dst, e.Name()))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

func leaseAll(t *testing.T, s *Spool, queue string) []Entry {
	t.Helper()
	es, err := s.Lease(context.Background(), queue, 100000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	s.Release(queue, seqs(es))
	return es
}

// The journal is what makes a commit durable: badger's own files may lose
// everything written after the last checkpoint (a power cut), and the
// replay brings back exactly what the callers were told, acks included.
func TestJournalReplayRestoresWritesBadgerLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.TrimInterval = -1 })
	defer closeT(t, s)
	var a []string
	for i := range 300 {
		a = append(a, fmt.Sprintf("a-%03d", i))
	}
	if _, err := s.Append(ctx, recs("tencent", a...)); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	// Badger as a power cut right after the checkpoint would leave it.
	crashed := t.TempDir()
	copyStore(t, dir, crashed)

	// After the checkpoint: new entries, acks, a dead letter, a put.
	var b []string
	for i := range 200 {
		b = append(b, fmt.Sprintf("b-%03d", i))
	}
	if _, err := s.Append(ctx, recs("tencent", b...)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, recs("tongdun", "t-1", "t-2")); err != nil {
		t.Fatal(err)
	}
	es, err := s.Lease(ctx, "tencent", 120, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, "tencent", seqs(es[:100])); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "tencent", seqs(es[100:110]), "refused"); err != nil {
		t.Fatal(err)
	}
	s.Release("tencent", seqs(es[110:]))
	if _, err := s.Write(ctx, []KV{{Key: "score/x", Value: []byte("42")}}, nil); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, filepath.Join(dir, journalDirName), filepath.Join(crashed, journalDirName), func(string) bool { return true })

	var logs bytes.Buffer
	r := openT(t, crashed, func(o *Options) {
		o.TrimInterval = -1
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer closeT(t, r)
	if !strings.Contains(logs.String(), "replayed the journal") {
		t.Errorf("no replay logged: %s", logs.String())
	}
	if js := r.JournalStats(); js.Replayed == 0 || js.Pending != 0 {
		t.Errorf("journal stats after replay: %+v, want records replayed and none pending", js)
	}
	for q, want := range s.Stats() {
		got := r.Stats()[q]
		got.OldestAgeSeconds, want.OldestAgeSeconds = 0, 0
		if got != want {
			t.Errorf("%s after replay: got %+v, want %+v", q, got, want)
		}
	}
	for _, q := range []string{"tencent", "tongdun"} {
		got, want := leaseAll(t, r, q), leaseAll(t, s, q)
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries after replay, want %d", q, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || !bytes.Equal(got[i].Payload, want[i].Payload) || got[i].Seq != want[i].Seq {
				t.Fatalf("%s entry %d: got %s/%d, want %s/%d", q, i, got[i].ID, got[i].Seq, want[i].ID, want[i].Seq)
			}
		}
	}
	dl, err := r.DeadLetters("tencent", 0, 100)
	if err != nil || len(dl) != 10 || dl[0].Reason != "refused" {
		t.Errorf("dead letters after replay: %d, %v", len(dl), err)
	}
	if v, ok, err := r.Get("score/x"); err != nil || !ok || string(v) != "42" {
		t.Errorf("put after replay: %q %v %v", v, ok, err)
	}
	// Acked ids stay known: appending one again is a duplicate.
	res, err := r.Append(ctx, recs("tencent", es[0].ID))
	if err != nil || res.Duplicates != 1 {
		t.Errorf("re-append of an acked id: %+v %v", res, err)
	}
	// What was replayed is checkpointed: nothing is replayed twice.
	if names, _ := journal.ListSegments(vfs.Default, filepath.Join(crashed, journalDirName)); len(names) != 0 {
		t.Errorf("segments left after replay: %v", names)
	}
}

func TestJournalCleanCloseLeavesNothingToReplay(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if _, err := s.Append(context.Background(), recs("tencent", "x", "y")); err != nil {
		t.Fatal(err)
	}
	jdir := filepath.Join(dir, journalDirName)
	if names, _ := journal.ListSegments(vfs.Default, jdir); len(names) != 1 {
		t.Fatalf("segments while open: %v", names)
	}
	if js := s.JournalStats(); js.Pending != 1 || js.Replayed != 0 {
		t.Errorf("journal stats after one commit: %+v, want 1 pending", js)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if js := s.JournalStats(); js.Pending != 0 || js.Checkpoints != 1 || js.CheckpointErrors != 0 {
		t.Errorf("journal stats after a checkpoint: %+v", js)
	}
	closeT(t, s)
	if names, _ := journal.ListSegments(vfs.Default, jdir); len(names) != 0 {
		t.Errorf("segments after a clean close: %v", names)
	}
	ckpt, _, err := journal.ReadCheckpoint(vfs.Default, jdir)
	if err != nil || ckpt == 0 {
		t.Errorf("checkpoint after close: %d %v", ckpt, err)
	}
	var logs bytes.Buffer
	s = openT(t, dir, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	defer closeT(t, s)
	if strings.Contains(logs.String(), "replayed") {
		t.Errorf("replay after a clean close: %s", logs.String())
	}
	if st := s.Stats()["tencent"]; st.Depth != 2 {
		t.Errorf("depth %d after reopen, want 2", st.Depth)
	}
	// Sequence numbers go on from the checkpoint.
	if _, err := s.Append(context.Background(), recs("tencent", "z")); err != nil {
		t.Fatal(err)
	}
	if got := s.jnl.Covered(); got != ckpt+1 {
		t.Errorf("first record after reopen is %d, want %d", got, ckpt+1)
	}
}

func TestJournalEncrypted(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	secret := []byte("card 6262320120123210")
	// A spool with a key journals only ciphertext.
	sdir := t.TempDir()
	s := openT(t, sdir, func(o *Options) { o.EncryptionKey = key })
	if _, err := s.Append(context.Background(), []Record{{Queue: "unionpay", ID: "u1", Payload: secret}}); err != nil {
		t.Fatal(err)
	}
	names, _ := journal.ListSegments(vfs.Default, filepath.Join(sdir, journalDirName))
	for _, n := range names {
		raw, _ := os.ReadFile(filepath.Join(sdir, journalDirName, n))
		if bytes.Contains(raw, secret) {
			t.Errorf("%s holds the payload in clear", n)
		}
	}
	closeT(t, s)
}

// Records between the checkpoint and the first segment are gone: that is
// damage, never silently skipped. The records after the gap are replayed
// and the gap is reported with its count.
func TestJournalGapIsDamage(t *testing.T) {
	store := t.TempDir()
	jdir := filepath.Join(store, journalDirName)
	os.MkdirAll(jdir, 0o700)
	// A segment that starts at 5, with 3 records; the checkpoint covers
	// 1..2.
	j, err := journal.New(journal.Options{Dir: jdir}, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := j.Append(appendMutation(j.NewRecord(), mutSet, []byte(fmt.Sprintf("k%d", i)), []byte("v"), 0)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close(false)
	if err := journal.WriteCheckpoint(vfs.Default, jdir, 2, 0); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(store).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, rec, err := recoverJournal(db, Options{Dir: store, QuarantineDir: t.TempDir()}, time.Now(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.replayed != 3 || rec.lost != 2 || rec.report == nil || rec.report.JournalRecordsLost != 2 {
		t.Fatalf("replayed %d, lost %d, report %+v; want 3 replayed and records 3 and 4 reported lost", rec.replayed, rec.lost, rec.report)
	}
	if len(rec.spans) != 1 || !strings.Contains(rec.spans[0].What, "records 3 to 4 are missing") {
		t.Errorf("spans: %+v", rec.spans)
	}
	reps, err := loadDamageReports(db)
	if err != nil || len(reps) != 1 || reps[0].JournalRecordsLost != 2 {
		t.Errorf("stored reports: %+v %v", reps, err)
	}
}

// FuzzJournalMutations: any bytes decode without panicking, and what
// encodes decodes back the same.
func FuzzJournalMutations(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), uint64(0), true)
	f.Add([]byte{}, []byte{}, uint64(1<<40), false)
	f.Fuzz(func(t *testing.T, key, val []byte, exp uint64, set bool) {
		_ = decodeMutations(append(slices.Clone(key), val...), func(byte, []byte, []byte, uint64) error { return nil })
		kind := mutDel
		if set {
			kind = mutSet
		}
		b := appendMutation(appendMutation(nil, kind, key, val, exp), mutSet, val, key, 0)
		var got [][]byte
		err := decodeMutations(b, func(k byte, kk, vv []byte, e uint64) error {
			got = append(got, []byte{k}, kk, vv, binary.AppendUvarint(nil, e))
			return nil
		})
		if err != nil || len(got) != 8 || got[0][0] != kind || !bytes.Equal(got[1], key) || !bytes.Equal(got[2], val) ||
			!bytes.Equal(got[3], binary.AppendUvarint(nil, exp)) || !bytes.Equal(got[5], val) || !bytes.Equal(got[6], key) {
			t.Fatalf("round trip: %v %q", err, got)
		}
	})
}

// noKeys: a store that holds none of a record's keys.
func noKeys([]byte) bool { return false }

// lostRecordBody is a journal record as a commit of n appends to tencent
// (after tail) writes it: duplicate markers, a chunk, the queue's
// metadata, and a decision record under k/.
func lostRecordBody(tail uint64, n int) []byte {
	var b []byte
	var es []seqRecord
	for i := range n {
		id := fmt.Sprintf("act-%d", i)
		b = appendMutation(b, mutSet, dedupKey("tencent", id), binary.BigEndian.AppendUint64(nil, 1), 0)
		es = append(es, seqRecord{tail + uint64(i), record{EnqueuedAt: 1, ID: id, Payload: []byte(`{"id":"` + id + `"}`)}})
	}
	b = appendMutation(b, mutSet, seqKey(kindEntry, "tencent", tail+uint64(n)-1), encodeChunk(es), 0)
	b = appendMutation(b, mutSet, metaKey("tencent"), meta{Head: 1, Tail: tail + uint64(n), Count: int64(n)}.encode(), 0)
	return appendMutation(b, mutSet, kvKey("dec/x"), []byte(`{"decision":"accept"}`), 0)
}

// The last record of the journal, damaged: its appends are counted
// exactly from what still reads, or reported uncountable; never a wrong
// count, whatever three bytes are inverted. Every offset of a record of 5
// and of 1 appends is tried here, and the fuzzer tries more.
func TestLostRecordCount(t *testing.T) {
	tails := map[string]uint64{"tencent": 40, "tongdun": 1, "unionpay": 1}
	for _, n := range []int{5, 1} {
		body := lostRecordBody(40, n)
		if got, others, ok := entriesAppendedBy(body, tails, noKeys); !ok || got["tencent"] != int64(n) || len(got) != 1 || others != 1 {
			t.Fatalf("intact record of %d: %v, %d other keys, %v", n, got, others, ok)
		}
		if _, others, _ := entriesAppendedBy(body, tails, func([]byte) bool { return true }); others != 0 {
			t.Fatalf("a decision record the store holds counted lost: %d", others)
		}
		var counted, unknown int
		for off := range body {
			b := slices.Clone(body)
			for i := off; i < min(off+3, len(b)); i++ {
				b[i] ^= 0xff
			}
			got, _, ok := entriesAppendedBy(b, tails, noKeys)
			switch {
			case !ok:
				unknown++
			case got["tencent"] != int64(n) || len(got) != 1:
				t.Fatalf("%d appends, damage at %d: counted %v", n, off, got)
			default:
				counted++
			}
		}
		t.Logf("record of %d appends, %d bytes: counted exactly at %d offsets, uncountable at %d", n, len(body), counted, unknown)
		if counted < len(body)*3/4 {
			t.Errorf("counted at only %d of %d offsets", counted, len(body))
		}
	}
}

func FuzzLostRecordCount(f *testing.F) {
	f.Add(uint16(10), []byte{0xff, 0xff, 0xff}, uint8(3))
	f.Add(uint16(200), []byte{0x01}, uint8(1))
	tails := map[string]uint64{"tencent": 40, "tongdun": 1, "unionpay": 1}
	f.Fuzz(func(t *testing.T, off uint16, mask []byte, n uint8) {
		n = n%20 + 1
		body := lostRecordBody(40, int(n))
		for i, m := range mask {
			if p := int(off) + i; p < len(body) {
				body[p] ^= m
			}
		}
		got, _, ok := entriesAppendedBy(body, tails, noKeys)
		if ok && (got["tencent"] != int64(n) || len(got) != 1) {
			t.Fatalf("%d appends, %x at %d: counted %v", n, mask, off, got)
		}
		_, _, _ = entriesAppendedBy(mask, tails, noKeys) // any bytes: no panic
	})
}

// appendTwenty appends one request of 20 actions to tencent, ids
// prefix-00 to prefix-19, and returns the ids.
func appendTwenty(t *testing.T, s *Spool, prefix string) []string {
	t.Helper()
	ids := make([]string, 20)
	for j := range ids {
		ids[j] = fmt.Sprintf("%s-%02d", prefix, j)
	}
	if _, err := s.Append(context.Background(), recs("tencent", ids...)); err != nil {
		t.Fatal(err)
	}
	return ids
}

// The last record of the journal damaged, in a plain and in an encrypted
// store: the request it held is lost, counted and reported; every
// request before it is there.
func TestDamagedLastRecordCounted(t *testing.T) {
	for _, c := range plainAndEncrypted {
		t.Run(c.name, func(t *testing.T) {
			withKey := func(o *Options) { o.EncryptionKey = c.key; o.TrimInterval = -1 }
			dir := t.TempDir()
			s := openT(t, dir, withKey)
			var ids []string
			appendBatch := func(k int) { ids = append(ids, appendTwenty(t, s, fmt.Sprintf("b%d", k))...) }
			for k := range 3 {
				appendBatch(k)
			}
			// The journal holding two requests more than badger.
			crashed, seg := crashAfterCheckpoint(t, s, dir, func() { appendBatch(3); appendBatch(4) })
			damageLastRecord(t, seg, 200)
			wantOneRecordLost(t, crashed, ids, 20, withKey)
		})
	}
}

// The last record of a segment that is not the newest, damaged: the
// records of the next segment follow it, so the audit counts what it held
// (exactly), and no count is left unknown.
func TestDamagedLastRecordOfAnOlderSegment(t *testing.T) {
	small := func(o *Options) { o.TrimInterval = -1; o.journalSegmentSize = 64 << 10 }
	dir := t.TempDir()
	s := openT(t, dir, small)
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	// Badger and the checkpoint as they were before the appends; every
	// segment as it was last seen (the checkpoints the appends start
	// delete sealed segments: a copy after each append keeps them).
	crashed := t.TempDir()
	copyStore(t, dir, crashed)
	jdir := filepath.Join(crashed, journalDirName)
	copyFiles(t, filepath.Join(dir, journalDirName), jdir, func(n string) bool { return n == journal.CheckpointName })
	var ids []string
	for k := range 40 {
		ids = append(ids, appendTwenty(t, s, fmt.Sprintf("o%02d", k))...)
		copyFiles(t, filepath.Join(dir, journalDirName), jdir, func(n string) bool { return strings.HasSuffix(n, ".jnl") })
	}
	closeT(t, s)
	segs, _ := filepath.Glob(filepath.Join(jdir, "*.jnl"))
	slices.Sort(segs)
	if len(segs) < 2 {
		t.Fatalf("segments: %v, want two or more", segs)
	}
	damageLastRecord(t, segs[0], 100)
	wantOneRecordLost(t, crashed, ids, 20, small)
}

// damageLastRecord inverts three bytes back bytes before the end of the
// segment's last record.
func damageLastRecord(t *testing.T, seg string, back int) {
	t.Helper()
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	flip3(t, seg, int64(journal.LastNonZero(data)-back))
}

// wantOneRecordLost opens dir and expects one damage report, of one
// journal record lost with want of ids's entries, counted exactly.
func wantOneRecordLost(t *testing.T, dir string, ids []string, want int64, mod func(*Options)) {
	t.Helper()
	r := openT(t, dir, mod)
	defer closeT(t, r)
	reps := r.Damage()
	if len(reps) != 1 || reps[0].JournalRecordsLost != 1 {
		t.Fatalf("reports: %+v, want one losing one record", reps)
	}
	got, _ := leaseOneByOne(t, r)
	lost := int64(len(ids) - len(got))
	t.Logf("report: %s; %d of %d entries read back", reps[0].Message, len(got), len(ids))
	if lost != want || reps[0].CountUnknown || reps[0].Lost() != lost {
		t.Fatalf("report: %d entries lost, count unknown %v; %d are missing, want %d", reps[0].Lost(), reps[0].CountUnknown, lost, want)
	}
}

// A lone decision's commit (its record and velocity events, no queue
// entry) as the journal's last record, damaged after badger lost its copy:
// the keys it wrote are reported lost.
func TestDamagedLastDecisionRecordCounted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	noTrim := func(o *Options) { o.TrimInterval = -1 }
	s := openT(t, dir, noTrim)
	if _, err := s.Append(ctx, recs("tencent", "a1", "a2")); err != nil {
		t.Fatal(err)
	}
	kvs := []KV{
		{Key: "dec/d-1", Value: []byte(`{"decision":"review","reasons":["velocity"]}`)},
		{Key: "vel/card/abc/00000000001764950400000/d-1", Value: []byte{1}},
		{Key: "vel/device/xyz/00000000001764950400000/d-1", Value: []byte{1}},
	}
	crashed, seg := crashAfterCheckpoint(t, s, dir, func() {
		if _, err := s.Write(ctx, kvs, nil); err != nil {
			t.Fatal(err)
		}
	})
	damageLastRecord(t, seg, 20) // in the decision record's value (the last write)

	r := openT(t, crashed, noTrim)
	defer closeT(t, r)
	reps := r.Damage()
	if len(reps) != 1 || reps[0].JournalRecordsLost != 1 || reps[0].CountUnknown || reps[0].Lost() != 0 || reps[0].OtherKeysLost != 3 {
		t.Fatalf("reports: %+v, want one record lost with 3 other keys", reps)
	}
	t.Logf("report: %s", reps[0].Message)
	if _, ok, _ := r.Get("dec/d-1"); ok {
		t.Fatal("the damaged decision record was applied")
	}
}

// A lost record in the middle of the journal that appended to a queue
// no later record appended to: the audit cannot see those entries (they
// lie beyond the queue's tail as the store holds it), so they are counted
// from the record itself; the queue later records moved is counted by the
// audit.
func TestDamagedMiddleRecordBeyondItsQueuesTail(t *testing.T) {
	ctx := context.Background()
	noTrim := func(o *Options) { o.TrimInterval = -1 }
	dir := t.TempDir()
	s := openT(t, dir, noTrim)
	crashed, seg := crashAfterCheckpoint(t, s, dir, func() {
		if _, err := s.Append(ctx, recs("tongdun", "c1", "c2", "c3", "c4", "c5")); err != nil {
			t.Fatal(err)
		}
		for k := range 3 {
			if _, err := s.Append(ctx, recs("tencent", fmt.Sprint("t", k, "a"), fmt.Sprint("t", k, "b"))); err != nil {
				t.Fatal(err)
			}
		}
	})
	sc, err := journal.ReadSegment(vfs.Default, seg, nil)
	if err != nil || len(sc.Recs) < 4 {
		t.Fatalf("segment: %d records, %v", len(sc.Recs), err)
	}
	// The tongdun record: the fourth from the end; its body's middle.
	data, _ := os.ReadFile(seg)
	off := journal.HeaderSize
	for i := range len(sc.Recs) - 4 {
		n, _ := journal.RecordAt(data, off, sc.Recs[i].Seq)
		off += journal.RecordSize(journal.Version, n)
	}
	n, ok := journal.RecordAt(data, off, sc.Recs[len(sc.Recs)-4].Seq)
	if !ok || !bytes.Contains(data[off:off+journal.RecordHead+n], []byte("tongdun")) {
		t.Fatal("the tongdun record is not where it was looked for")
	}
	flip3(t, seg, int64(off+journal.RecordHead+n/2))

	r := openT(t, crashed, noTrim)
	defer closeT(t, r)
	reps := r.Damage()
	if len(reps) != 1 {
		t.Fatalf("reports: %+v", reps)
	}
	rep := reps[0]
	t.Logf("report: %s", rep.Message)
	if rep.JournalRecordsLost != 1 || rep.CountUnknown || rep.EntriesLost["tongdun"] != 5 || rep.EntriesLost["tencent"] != 0 {
		t.Fatalf("report: %d records, entries %v, count unknown %v; want 1 record, tongdun 5", rep.JournalRecordsLost, rep.EntriesLost, rep.CountUnknown)
	}
}

// crashAfterCheckpoint checkpoints s (open on dir), copies the store as a
// crash leaves it (badger holding what the checkpoint covers), runs write,
// copies the journal that holds what write did, closes s, and returns the
// copy and its journal's only segment.
func crashAfterCheckpoint(t *testing.T, s *Spool, dir string, write func()) (crashed, seg string) {
	t.Helper()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	crashed = t.TempDir()
	copyStore(t, dir, crashed)
	write()
	jdir := filepath.Join(crashed, journalDirName)
	copyFiles(t, filepath.Join(dir, journalDirName), jdir, func(string) bool { return true })
	closeT(t, s)
	segs, _ := filepath.Glob(filepath.Join(jdir, "*.jnl"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	return crashed, segs[0]
}

// The journal's last record of an encrypted store whose CRC holds but
// which does not authenticate (tampered with, and its CRC made to match):
// a lost record, reported with count_unknown, never applied.
func TestUnauthenticatedLastRecordIsLost(t *testing.T) {
	ctx := context.Background()
	withKey := func(o *Options) { o.EncryptionKey = testKey; o.TrimInterval = -1 }
	dir := t.TempDir()
	s := openT(t, dir, withKey)
	if _, err := s.Append(ctx, recs("tencent", "u1", "u2")); err != nil {
		t.Fatal(err)
	}
	crashed, seg := crashAfterCheckpoint(t, s, dir, func() {
		if _, err := s.Append(ctx, recs("tencent", "u3", "u4")); err != nil {
			t.Fatal(err)
		}
	})
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := journal.ParseSegment(seg, data, testKey)
	if err != nil || len(sc.Recs) == 0 {
		t.Fatalf("segment: %d records, %v", len(sc.Recs), err)
	}
	off := journal.HeaderSize
	for i := range len(sc.Recs) - 1 {
		n, _ := journal.RecordAt(data, off, sc.Recs[i].Seq)
		off += journal.RecordSize(journal.Version, n)
	}
	n, ok := journal.RecordAt(data, off, sc.Recs[len(sc.Recs)-1].Seq)
	if !ok {
		t.Fatal("no last record where it was looked for")
	}
	data[off+journal.RecordHead+n/2] ^= 0x40 // the ciphertext, then its CRC made to match
	binary.BigEndian.PutUint32(data[off+4:], crc32.Checksum(data[off+8:off+journal.RecordHead+n], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := openT(t, crashed, withKey)
	defer closeT(t, r)
	reps := r.Damage()
	if len(reps) != 1 || reps[0].JournalRecordsLost != 1 || !reps[0].CountUnknown {
		t.Fatalf("reports: %+v, want one record lost, count unknown", reps)
	}
	t.Logf("report: %s", reps[0].Message)
	got, _ := leaseOneByOne(t, r)
	if len(got) != 2 {
		t.Fatalf("%d entries read back, want the 2 before the tampered record", len(got))
	}
}
