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
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
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
	if names, _ := listSegments(filepath.Join(crashed, journalDirName)); len(names) != 0 {
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
	if names, _ := listSegments(jdir); len(names) != 1 {
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
	if names, _ := listSegments(jdir); len(names) != 0 {
		t.Errorf("segments after a clean close: %v", names)
	}
	ckpt, _, err := readCheckpoint(jdir)
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
	if got := s.jnl.covered(); got != ckpt+1 {
		t.Errorf("first record after reopen is %d, want %d", got, ckpt+1)
	}
}

// newTestJournal writes a segment with n records "r1".."rn" and returns
// its path.
func newTestJournal(t testing.TB, key []byte, n int) (string, *journal) {
	t.Helper()
	dir := t.TempDir()
	j := &journal{dir: dir, key: key}
	for i := 1; i <= n; i++ {
		if _, err := j.appendRecord(appendMutation(j.newRecord(), mutSet, []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("r%d", i)), 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.close(false); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, segmentName(1)), j
}

func recordValues(t *testing.T, recs []journalRecord) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		if err := decodeMutations(r.body, func(_ byte, _, v []byte, _ uint64) error {
			out = append(out, string(v))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The end of a segment and damage inside it: bytes that do not read as a
// record are a torn tail only when nothing readable follows them; with
// records after them they are damage, and those records are kept.
func TestJournalSegmentEnd(t *testing.T) {
	path, _ := newTestJournal(t, nil, 5)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := []int{journalHeaderSize} // where record i+1 starts
	for i := range 5 {
		at = append(at, at[i]+journalRecordHead+int(binary.BigEndian.Uint32(data[at[i]:])))
	}
	cases := []struct {
		name    string
		mangle  func(b []byte)
		want    []string
		damaged []string // spanWhat of each damaged span
		tail    bool
	}{
		{"intact", func([]byte) {}, []string{"r1", "r2", "r3", "r4", "r5"}, nil, false},
		{"torn last record", func(b []byte) { b[at[4]+journalRecordHead+2] ^= 0xff }, []string{"r1", "r2", "r3", "r4"}, nil, true},
		{"last record never written", func(b []byte) { clear(b[at[4]:]) }, []string{"r1", "r2", "r3", "r4"}, nil, false},
		{"last length beyond the file", func(b []byte) { binary.BigEndian.PutUint32(b[at[4]:], 1<<30) }, []string{"r1", "r2", "r3", "r4"}, nil, true},
		{"a flipped bit in a middle record", func(b []byte) { b[at[1]+journalRecordHead+3] ^= 0x10 },
			[]string{"r1", "r3", "r4", "r5"}, []string{"unreadable records: record 2"}, false},
		{"a middle length field zeroed", func(b []byte) { clear(b[at[2] : at[2]+4]) },
			[]string{"r1", "r2", "r4", "r5"}, []string{"unreadable records: record 3"}, false},
		{"two records overwritten", func(b []byte) { copy(b[at[1]+3:at[3]-1], bytes.Repeat([]byte{0xa5}, at[3]-at[1]-4)) },
			[]string{"r1", "r4", "r5"}, []string{"unreadable records: records 2 to 3"}, false},
		{"a middle record out of sequence", func(b []byte) {
			binary.BigEndian.PutUint64(b[at[2]+8:], 9)
			binary.BigEndian.PutUint32(b[at[2]+4:], crc32.Checksum(b[at[2]+8:at[3]], castagnoli))
		}, []string{"r1", "r2", "r4", "r5"}, []string{"unreadable records: record 3"}, false},
		{"damaged header", func(b []byte) { b[9] ^= 1 },
			[]string{"r1", "r2", "r3", "r4", "r5"}, []string{"segment header damaged"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Clone(data)
			tc.mangle(b)
			p := filepath.Join(t.TempDir(), segmentName(1))
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			sc, err := readSegment(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := recordValues(t, sc.recs); !slices.Equal(got, tc.want) {
				t.Errorf("records: got %v, want %v", got, tc.want)
			}
			var damaged []string
			for _, d := range sc.damaged {
				damaged = append(damaged, spanWhat(d))
			}
			if !slices.Equal(damaged, tc.damaged) {
				t.Errorf("damaged spans: got %q, want %q", damaged, tc.damaged)
			}
			if (sc.tail != nil) != tc.tail {
				t.Errorf("torn tail: got %+v, want %v", sc.tail, tc.tail)
			}
		})
	}
}

func TestJournalEncrypted(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	dir := t.TempDir()
	j := &journal{dir: dir, key: key}
	secret := []byte("card 6262320120123210")
	if _, err := j.appendRecord(appendMutation(j.newRecord(), mutSet, []byte("q"), secret, 0)); err != nil {
		t.Fatal(err)
	}
	j.close(false)
	path := filepath.Join(dir, segmentName(1))
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, secret) || bytes.Contains(raw, []byte("6262320120123210")) {
		t.Fatal("the segment holds the value in clear")
	}
	sc, err := readSegment(path, key)
	if err != nil || !slices.Equal(recordValues(t, sc.recs), []string{string(secret)}) {
		t.Fatalf("read back with the key: %v %v", sc.recs, err)
	}
	// Intact records that do not authenticate are another key, not
	// damage: the store is left alone.
	if _, err := readSegment(path, bytes.Repeat([]byte{8}, 32)); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong key: %v, want ErrKeyMismatch", err)
	}
	if _, err := readSegment(path, nil); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("no key: %v, want ErrKeyMismatch", err)
	}
	// A spool with a key journals only ciphertext.
	sdir := t.TempDir()
	s := openT(t, sdir, func(o *Options) { o.EncryptionKey = key })
	if _, err := s.Append(context.Background(), []Record{{Queue: "unionpay", ID: "u1", Payload: secret}}); err != nil {
		t.Fatal(err)
	}
	names, _ := listSegments(filepath.Join(sdir, journalDirName))
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
	path, _ := newTestJournal(t, nil, 3)
	store := t.TempDir()
	jdir := filepath.Join(store, journalDirName)
	os.MkdirAll(jdir, 0o700)
	b, _ := os.ReadFile(path)
	// The segment claims to start at 5; the checkpoint covers 1..2.
	binary.BigEndian.PutUint64(b[8:16], 5)
	binary.BigEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], castagnoli))
	off := journalHeaderSize
	for i := uint64(5); off+journalRecordHead < len(b); i++ {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n == 0 {
			break
		}
		binary.BigEndian.PutUint64(b[off+8:], i)
		binary.BigEndian.PutUint32(b[off+4:], crc32.Checksum(b[off+8:off+journalRecordHead+n], castagnoli))
		off += journalRecordHead + n
	}
	os.WriteFile(filepath.Join(jdir, segmentName(5)), b, 0o600)
	if err := writeCheckpoint(jdir, 2, 0); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(store).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, rec, err := recoverJournal(db, Options{Dir: store, QuarantineDir: t.TempDir()}, time.Now(), false)
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

// FuzzJournalSegment: whatever bytes a segment file holds (a torn write, a
// flipped bit, another file renamed), reading it returns records and
// damaged spans or an error, never a panic; records come in increasing
// order and spans in order within the file.
func FuzzJournalSegment(f *testing.F) {
	path, _ := newTestJournal(f, nil, 3)
	good, _ := os.ReadFile(path)
	f.Add(good[:journalHeaderSize+200], false)
	f.Add(good[:journalHeaderSize], false)
	f.Add([]byte("OPJ1"), true)
	f.Fuzz(func(t *testing.T, data []byte, encrypted bool) {
		var key []byte
		if encrypted {
			key = bytes.Repeat([]byte{3}, 32)
		}
		sc, err := parseSegment(segmentName(1), data, key)
		if err != nil {
			return
		}
		recs := sc.recs
		for i := 1; i < len(recs); i++ {
			if recs[i].seq <= recs[i-1].seq {
				t.Fatalf("records out of order: %d after %d", recs[i].seq, recs[i-1].seq)
			}
		}
		end := int64(0)
		for _, d := range sc.damaged {
			if d.off < end || d.end < d.off || d.end > int64(len(data)) {
				t.Fatalf("damaged span [%d,%d) overlaps, or lies outside %d bytes", d.off, d.end, len(data))
			}
			end = d.end
		}
	})
}
