package journal

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/outpost-agent/outpost/vfs"
)

// newTestJournal writes a segment with n records "r1".."rn" and returns
// its path.
func newTestJournal(t testing.TB, key []byte, n int) (string, *Journal) {
	t.Helper()
	dir := t.TempDir()
	j, err := New(Options{Dir: dir, Key: key}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		// Padded: the tests damage bytes inside a record's body.
		if _, err := j.Append(append(j.NewRecord(), fmt.Sprintf("r%d%s", i, strings.Repeat(".", 30))...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(false); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, SegmentName(1)), j
}

func recordValues(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, strings.TrimRight(string(r.Body), "."))
	}
	return out
}

// what describes a damaged span as the tests expect it.
func what(d Span) string {
	switch {
	case d.To < d.From:
		return d.Why
	case d.To == d.From:
		return fmt.Sprintf("%s: record %d", d.Why, d.From)
	}
	return fmt.Sprintf("%s: records %d to %d", d.Why, d.From, d.To)
}

// The end of a segment and damage inside it: bytes that do not read as a
// record are a torn tail only when nothing readable follows them; with
// records after them they are damage, and those records are kept.
func TestSegmentEnd(t *testing.T) {
	path, _ := newTestJournal(t, nil, 5)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := []int{HeaderSize} // where record i+1 starts
	for i := range 5 {
		at = append(at, at[i]+RecordSize(Version, int(binary.BigEndian.Uint32(data[at[i]:]))))
	}
	const lastDamaged = "the last record is damaged (its end shows it was written whole): record 5"

	cases := []struct {
		name    string
		mangle  func(b []byte)
		want    []string
		damaged []string // spanWhat of each damaged span
		tail    bool
	}{
		{"intact", func([]byte) {}, []string{"r1", "r2", "r3", "r4", "r5"}, nil, false},
		{"torn last record", func(b []byte) { clear(b[at[4]+RecordHead+6:]) }, []string{"r1", "r2", "r3", "r4"}, nil, true},
		{"last record torn in its end", func(b []byte) { clear(b[at[5]-3:]) }, []string{"r1", "r2", "r3", "r4", "r5"}, nil, false},
		{"last record never written", func(b []byte) { clear(b[at[4]:]) }, []string{"r1", "r2", "r3", "r4"}, nil, false},
		// The last record written whole, then damaged: found by its end.
		{"a flipped byte in the last record", func(b []byte) { b[at[4]+RecordHead+2] ^= 0xff },
			[]string{"r1", "r2", "r3", "r4"}, []string{lastDamaged}, false},
		{"last length beyond the file", func(b []byte) { binary.BigEndian.PutUint32(b[at[4]:], 1<<30) },
			[]string{"r1", "r2", "r3", "r4"}, []string{lastDamaged}, false},
		{"last record's body and end damaged", func(b []byte) { b[at[4]+RecordHead+2] ^= 0xff; b[at[5]-2] ^= 0x0f },
			[]string{"r1", "r2", "r3", "r4"}, []string{lastDamaged}, false},
		{"last record's end damaged, its body intact", func(b []byte) { b[at[5]-6] ^= 0xff },
			[]string{"r1", "r2", "r3", "r4", "r5"}, nil, false},
		// Blind: nothing tells this from a cut write.
		{"last record's head and end damaged", func(b []byte) { b[at[4]+9] ^= 0xff; b[at[5]-2] ^= 0x0f },
			[]string{"r1", "r2", "r3", "r4"}, nil, true},
		{"junk after the last record", func(b []byte) { b[at[5]+100] = 7 }, []string{"r1", "r2", "r3", "r4", "r5"}, nil, true},
		{"a flipped bit in a middle record", func(b []byte) { b[at[1]+RecordHead+3] ^= 0x10 },
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
			p := filepath.Join(t.TempDir(), SegmentName(1))
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			sc, err := ReadSegment(vfs.Default, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := recordValues(sc.Recs); !slices.Equal(got, tc.want) {
				t.Errorf("records: got %v, want %v", got, tc.want)
			}
			var damaged []string
			for _, d := range sc.Damaged {
				damaged = append(damaged, what(d))
			}
			if !slices.Equal(damaged, tc.damaged) {
				t.Errorf("damaged spans: got %q, want %q", damaged, tc.damaged)
			}
			if (sc.Tail != nil) != tc.tail {
				t.Errorf("torn tail: got %+v, want %v", sc.Tail, tc.tail)
			}
		})
	}
}

// A version 1 segment (written by the build before records had an end,
// testdata/v1-*.jnl: five records, "r1" to "r5") is still read, and damage
// to its last record is, as it was, a torn tail: version 1 cannot tell.
func TestVersion1Segment(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "v1-0000000000000001.jnl"))
	if err != nil {
		t.Fatal(err)
	}
	if data[4] != 1 {
		t.Fatalf("testdata segment is version %d", data[4])
	}
	sc, err := ParseSegment(SegmentName(1), data, nil)
	if err != nil || !slices.Equal(recordValues(sc.Recs), []string{"r1", "r2", "r3", "r4", "r5"}) || len(sc.Damaged) > 0 || sc.Tail != nil {
		t.Fatalf("read: %v %+v, damaged %v, tail %v", err, recordValues(sc.Recs), sc.Damaged, sc.Tail)
	}
	last := LastNonZero(data)
	b := slices.Clone(data)
	b[last-3] ^= 0xff
	sc, err = ParseSegment(SegmentName(1), b, nil)
	if err != nil || len(sc.Recs) != 4 || len(sc.Damaged) > 0 || sc.Tail == nil {
		t.Fatalf("last record damaged: %v, %d records, damaged %v, tail %v", err, len(sc.Recs), sc.Damaged, sc.Tail)
	}
	// A damaged header: the framing that reads more records is version 1's.
	b = slices.Clone(data)
	b[9] ^= 1
	sc, err = ParseSegment(SegmentName(1), b, nil)
	if err != nil || !slices.Equal(recordValues(sc.Recs), []string{"r1", "r2", "r3", "r4", "r5"}) || len(sc.Damaged) != 1 {
		t.Fatalf("header damaged: %v %+v, damaged %v", err, recordValues(sc.Recs), sc.Damaged)
	}
	// A version this build does not know is refused, not read as damage.
	b = slices.Clone(data)
	b[4] = Version + 1
	binary.BigEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], castagnoli))
	if _, err := ParseSegment(SegmentName(1), b, nil); !errors.Is(err, ErrJournal) {
		t.Fatalf("version %d: %v, want ErrJournal", Version+1, err)
	}
}

func TestEncrypted(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	dir := t.TempDir()
	j, err := New(Options{Dir: dir, Key: key}, 0)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("card 6262320120123210")
	if _, err := j.Append(append(j.NewRecord(), secret...)); err != nil {
		t.Fatal(err)
	}
	j.Close(false)
	path := filepath.Join(dir, SegmentName(1))
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, secret) || bytes.Contains(raw, []byte("6262320120123210")) {
		t.Fatal("the segment holds the value in clear")
	}
	sc, err := ReadSegment(vfs.Default, path, key)
	if err != nil || !slices.Equal(recordValues(sc.Recs), []string{string(secret)}) {
		t.Fatalf("read back with the key: %v %v", sc.Recs, err)
	}
	// The last record damaged: reported with its body deciphered but
	// not authenticated (counter mode: the damaged byte alone differs).
	damaged := slices.Clone(raw)
	at := HeaderSize + RecordHead + 3 // a byte of the only record's body
	damaged[at] ^= 0x20
	sc, err = ParseSegment(path, damaged, key)
	if err != nil || len(sc.Recs) != 0 || len(sc.Damaged) != 1 || sc.Tail != nil {
		t.Fatalf("last record damaged: %v, %d records, damaged %+v, tail %v", err, len(sc.Recs), sc.Damaged, sc.Tail)
	}
	want := slices.Clone(secret)
	want[3] ^= 0x20
	if got := sc.Damaged[0].Body; !bytes.Equal(got, want) {
		t.Fatalf("damaged body reads %q, want %q", got, want)
	}
	// Intact records that do not authenticate are another key, not
	// damage: the journal is left alone.
	if _, err := ReadSegment(vfs.Default, path, bytes.Repeat([]byte{8}, 32)); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong key: %v, want ErrKeyMismatch", err)
	}
	if _, err := ReadSegment(vfs.Default, path, nil); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("no key: %v, want ErrKeyMismatch", err)
	}
}

// FuzzSegment: whatever bytes a segment file holds (a torn write, a
// flipped bit, another file renamed), reading it returns records and
// damaged spans or an error, never a panic; records come in increasing
// order and spans in order within the file.
func FuzzSegment(f *testing.F) {
	path, _ := newTestJournal(f, nil, 3)
	good, _ := os.ReadFile(path)
	f.Add(good[:HeaderSize+200], false)
	f.Add(good[:HeaderSize], false)
	f.Add([]byte("OPJ1"), true)
	f.Fuzz(func(t *testing.T, data []byte, encrypted bool) {
		var key []byte
		if encrypted {
			key = bytes.Repeat([]byte{3}, 32)
		}
		sc, err := ParseSegment(SegmentName(1), data, key)
		if err != nil {
			return
		}
		recs := sc.Recs
		for i := 1; i < len(recs); i++ {
			if recs[i].Seq <= recs[i-1].Seq {
				t.Fatalf("records out of order: %d after %d", recs[i].Seq, recs[i-1].Seq)
			}
		}
		end := int64(0)
		for _, d := range sc.Damaged {
			if d.Off < end || d.End < d.Off || d.End > int64(len(data)) {
				t.Fatalf("damaged span [%d,%d) overlaps, or lies outside %d bytes", d.Off, d.End, len(data))
			}
			end = d.End
		}
	})
}

// crashRun appends records to a journal on m until an append fails or all
// are in, checkpointing every tenth, and returns the bodies of the records
// whose Append returned nil (by sequence number) and the checkpoint.
func crashRun(t *testing.T, m *vfs.MemFS, n int) (acked map[uint64]string) {
	t.Helper()
	if err := m.MkdirAll("/j", 0o700); err != nil {
		t.Fatal(err)
	}
	acked = map[uint64]string{}
	j, err := New(Options{FS: m, Dir: "/j", SegmentSize: 16 << 10}, 0)
	if err != nil {
		return acked // the crash point came first
	}
	defer j.Close(false)
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf("record %d %s", i, bytes.Repeat([]byte{byte('a' + i%26)}, 300+i*37%900))
		seq, err := j.Append(append(j.NewRecord(), body...))
		if err != nil {
			return acked
		}
		acked[seq] = body
		j.MarkApplied(seq)
		if i%10 == 0 && j.MarkCheckpoint(j.Covered(), 0) != nil {
			return acked
		}
	}
	j.stopSpare() // no preparation left running into the next case
	return acked
}

// readBack reads every record the journal on m holds after the checkpoint,
// and fails the test on damage: a crash is never damage.
func readBack(t *testing.T, m *vfs.MemFS) (ckpt uint64, got map[uint64]string) {
	t.Helper()
	ckpt, _, err := ReadCheckpoint(m, "/j")
	if err != nil {
		t.Fatalf("CHECKPOINT after a crash: %v", err)
	}
	names, err := ListSegments(m, "/j")
	if err != nil {
		t.Fatal(err)
	}
	got = map[uint64]string{}
	last := ckpt
	for i, name := range names {
		sc, err := ReadSegment(m, filepath.Join("/j", name), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(sc.Damaged) > 0 {
			t.Fatalf("%s: damage after a crash: %+v", name, sc.Damaged)
		}
		if sc.Tail != nil && i < len(names)-1 {
			t.Fatalf("%s: a torn tail in a segment that is not the newest", name)
		}
		for _, r := range sc.Recs {
			if r.Seq <= ckpt {
				continue
			}
			if r.Seq != last+1 {
				t.Fatalf("%s: record %d after %d: records lost", name, r.Seq, last)
			}
			got[r.Seq], last = string(r.Body), r.Seq
		}
	}
	return ckpt, got
}

// cutAtCall runs run on a file system whose power goes at its call n,
// then cuts it, the way mode n%modes says: nothing unsynced kept; a torn
// prefix of the unsynced writes (seeded by n and seed); with modes 3,
// some sectors of them (a disk writing its cache out of order). It reads
// the journal back.
func cutAtCall(t *testing.T, n, modes int, seed uint64, run func(m *vfs.MemFS)) (torn string, ckpt uint64, got map[uint64]string) {
	t.Helper()
	m := vfs.NewMem()
	m.Inject(vfs.Fault{Op: vfs.OpAny, After: n, Err: vfs.ErrCrashed})
	run(m)
	m.ClearFaults()
	rng := rand.New(rand.NewPCG(uint64(n), seed))
	switch n % modes {
	case 0:
		torn = "clean"
		m.Crash()
	case 1:
		torn = "torn prefix"
		m.CrashTorn(rng)
	default:
		torn = "torn sectors"
		m.CrashSectors(rng)
	}
	ckpt, got = readBack(t, m)
	return torn, ckpt, got
}

// A power cut at every call the journal makes to the file system, one
// case each (the first calls, then every call of a whole run): every
// record an Append acknowledged is read back after the cut, nothing is
// read back that was not written, and nothing reads as damage.
func TestPowerCutAtEveryCall(t *testing.T) {
	const records = 60
	for n := 0; ; n++ {
		var acked map[uint64]string
		torn, ckpt, got := cutAtCall(t, n, 3, 7, func(m *vfs.MemFS) { acked = crashRun(t, m, records) })
		for seq, body := range acked {
			if seq > ckpt && got[seq] != body {
				t.Fatalf("cut at call %d (%s): acknowledged record %d lost or changed", n, torn, seq)
			}
		}
		for seq, body := range got {
			if want, ok := acked[seq]; ok && want != body {
				t.Fatalf("cut at call %d: record %d reads back changed", n, seq)
			}
			if !bytes.HasPrefix([]byte(body), fmt.Appendf(nil, "record %d ", seq)) {
				t.Fatalf("cut at call %d: record %d holds %.20q, never written", n, seq, body)
			}
		}
		if len(acked) == records {
			if n < 100 {
				t.Fatalf("a whole run made only %d calls: the cut never fell inside the work", n)
			}
			return // the cut came after everything: every call was covered
		}
	}
}

// A disk that fails: an error on a write or a sync fails the journal for
// good (whether the bytes reached the disk is unknown); a full disk when a
// segment is started fails only that append, and the next one succeeds
// once there is room; a short write is an error.
func TestFaults(t *testing.T) {
	cases := []struct {
		name      string
		fault     vfs.Fault
		permanent bool
	}{
		{"EIO on sync", vfs.Fault{Op: vfs.OpSync, Name: ".jnl", After: 2, Times: 1, Err: syscall.EIO}, true},
		{"EIO on write", vfs.Fault{Op: vfs.OpWrite, Name: ".jnl", After: 3, Times: 1, Err: syscall.EIO}, true},
		{"short write", vfs.Fault{Op: vfs.OpWrite, Name: ".jnl", After: 3, Times: 1, Err: syscall.ENOSPC, Short: 10}, true},
		{"no room for a new segment", vfs.Fault{Op: vfs.OpPreallocate, After: 1, Times: 1, Err: syscall.ENOSPC}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := vfs.NewMem()
			m.MkdirAll("/j", 0o700)
			j, err := New(Options{FS: m, Dir: "/j", SegmentSize: 8 << 10}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close(false)
			if !tc.permanent {
				// Every segment preallocated: a spare ready in time (a
				// goroutine's race with the appends) would start a
				// segment without the call the fault waits for.
				j.spare.off = true
			}
			m.Inject(tc.fault)
			var failedAt int
			acked := map[uint64]string{}
			for i := 1; i <= 40; i++ {
				body := fmt.Sprintf("record %d %s", i, bytes.Repeat([]byte("x"), 1000))
				seq, err := j.Append(append(j.NewRecord(), body...))
				if err != nil {
					if failedAt == 0 {
						failedAt = i
					}
					if !tc.permanent {
						continue
					}
					if !errors.Is(j.Failed(), tc.fault.Err) {
						t.Fatalf("append %d: %v, and Failed() = %v", i, err, j.Failed())
					}
					continue
				}
				if tc.permanent && failedAt > 0 {
					t.Fatalf("append %d succeeded after the journal failed at %d", i, failedAt)
				}
				acked[seq] = body
			}
			if failedAt == 0 {
				t.Fatal("the fault never fired")
			}
			if !tc.permanent && (j.Failed() != nil || len(acked) != 39) {
				t.Fatalf("%d acknowledged, Failed() = %v: only the one append should fail", len(acked), j.Failed())
			}
			m.Crash()
			_, got := readBack(t, m)
			for seq, body := range acked {
				if got[seq] != body {
					t.Fatalf("acknowledged record %d lost after a crash", seq)
				}
			}
		})
	}
}

// FuzzCheckpoint: CHECKPOINT reads back what was written, and any other
// bytes are an error, never a panic or a made-up sequence number.
func FuzzCheckpoint(f *testing.F) {
	f.Add(uint64(7), uint64(9), []byte{})
	f.Add(uint64(0), uint64(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, seq, version uint64, junk []byte) {
		dir := t.TempDir()
		if err := WriteCheckpoint(vfs.Default, dir, seq, version); err != nil {
			t.Fatal(err)
		}
		s, v, err := ReadCheckpoint(vfs.Default, dir)
		if err != nil || s != seq || v != version {
			t.Fatalf("round trip: %d %d %v, want %d %d", s, v, err, seq, version)
		}
		p := filepath.Join(dir, CheckpointName)
		b, _ := os.ReadFile(p)
		bad := append(b, junk...)
		if len(junk) == 0 {
			bad = b[:len(b)-1]
		}
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadCheckpoint(vfs.Default, dir); err == nil && len(bad) != 12 {
			t.Fatalf("%d bytes of CHECKPOINT read without an error", len(bad))
		}
	})
}

// crashRunUnsynced is crashRun with most records appended unsynced
// (AppendUnsynced), a synced Append every fifth and a Sync every seventh.
// It returns the records that were durable when their call returned: each
// Append's, and every record before a successful Append or Sync.
func crashRunUnsynced(t *testing.T, m *vfs.MemFS, n int) (durable map[uint64]string, written map[uint64]string) {
	t.Helper()
	if err := m.MkdirAll("/j", 0o700); err != nil {
		t.Fatal(err)
	}
	durable, written = map[uint64]string{}, map[uint64]string{}
	j, err := New(Options{FS: m, Dir: "/j", SegmentSize: 16 << 10, Buffered: true}, 0)
	if err != nil {
		return durable, written
	}
	defer j.Close(false)
	covered := func() {
		for seq, body := range written {
			durable[seq] = body
		}
	}
	// Some syncs run behind (SyncBehind) while records go on being
	// written: what one covers is durable once its result is taken.
	var (
		behindSeq uint64
		pending   bool
	)
	behindDone := func() {
		for seq, body := range written {
			if seq <= behindSeq {
				durable[seq] = body
			}
		}
		pending = false
	}
	finishBehind := func() bool {
		ch := j.Behind()
		if ch == nil {
			return true
		}
		if j.FinishBehind(<-ch) != nil {
			return false
		}
		behindDone()
		return true
	}
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf("record %d %s", i, bytes.Repeat([]byte{byte('a' + i%26)}, 300+i*37%900))
		rec := append(j.NewRecord(), body...)
		var seq uint64
		if i%5 == 0 {
			seq, err = j.Append(rec)
		} else {
			seq, err = j.AppendUnsynced(rec)
		}
		if err != nil {
			return durable, written
		}
		written[seq] = body
		if pending && j.Behind() == nil {
			// A new segment began: it waited for the sync behind, which
			// succeeded, or the write would have failed.
			behindDone()
		}
		if i%5 == 0 {
			covered()
		}
		switch {
		case i%14 == 0:
			if !finishBehind() {
				return durable, written
			}
			behindSeq = seq
			pending = j.SyncBehind()
		case i%7 == 0:
			if j.Sync() != nil {
				return durable, written
			}
			covered()
		case i%3 == 0:
			if !finishBehind() {
				return durable, written
			}
		}
		j.MarkApplied(seq)
		if c := j.Covered(); c > 0 && durable[c] == "" {
			t.Fatalf("record %d: Covered() says %d, which no sync made durable", i, c)
		}
		if i%10 == 0 && j.MarkCheckpoint(j.Covered(), 0) != nil {
			return durable, written
		}
	}
	if !finishBehind() {
		return durable, written
	}
	j.stopSpare()
	return durable, written
}

// A power cut at every call, with records appended unsynced: what a sync
// covered (a synced Append, a Sync, and every record before either, across
// segments) is read back; unsynced records after the last sync may be lost,
// but only from the end (what is read back is a prefix of what was
// written), nothing reads as damage, and no checkpoint claims a record the
// cut took.
func TestPowerCutWithUnsyncedAppends(t *testing.T) {
	const records = 60
	for n := 0; ; n++ {
		var durable, written map[uint64]string
		torn, ckpt, got := cutAtCall(t, n, 2, 11, func(m *vfs.MemFS) { durable, written = crashRunUnsynced(t, m, records) })
		for seq, body := range durable {
			if seq > ckpt && got[seq] != body {
				t.Fatalf("cut at call %d (%s): synced record %d lost or changed", n, torn, seq)
			}
		}
		for seq, body := range got {
			if w, ok := written[seq]; (ok && w != body) || !strings.HasPrefix(body, fmt.Sprintf("record %d ", seq)) {
				t.Fatalf("cut at call %d: record %d reads back as %.20q, not as written", n, seq, body)
			}
		}
		if ckpt > 0 && durable[ckpt] == "" {
			t.Fatalf("cut at call %d: CHECKPOINT covers record %d, which was never synced", n, ckpt)
		}
		if len(written) == records {
			if n < 100 {
				t.Fatalf("a whole run made only %d calls: the cut never fell inside the work", n)
			}
			return
		}
	}
}

// Unsynced records are written through the page cache, and synced when
// the next segment starts: a crash right after a rotation keeps them.
func TestUnsyncedRecordsSyncedAtRotation(t *testing.T) {
	m := vfs.NewMem()
	if err := m.MkdirAll("/j", 0o700); err != nil {
		t.Fatal(err)
	}
	j, err := New(Options{FS: m, Dir: "/j", SegmentSize: 4 << 10, Buffered: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := 0; i < 20; i++ {
		if last, err = j.AppendUnsynced(append(j.NewRecord(), bytes.Repeat([]byte{'x'}, 500)...)); err != nil {
			t.Fatal(err)
		}
	}
	if !j.Unsynced() {
		t.Fatal("Unsynced() is false after unsynced appends")
	}
	m.Crash()
	_, got := readBack(t, m)
	if len(got) == 0 || len(got) >= int(last) {
		t.Fatalf("after the cut %d of %d unsynced records are back: want those of the sealed segments only", len(got), last)
	}
	for seq := uint64(1); seq <= uint64(len(got)); seq++ {
		if got[seq] == "" {
			t.Fatalf("record %d of a sealed segment lost", seq)
		}
	}
}

func TestSegmentSizeMustBeWholePages(t *testing.T) {
	for _, tc := range []struct {
		size int64
		ok   bool
	}{{0, true}, {4 << 10, true}, {64 << 10, true}, {1000, false}, {6 << 10, false}, {-4096, false}} {
		j, err := New(Options{FS: vfs.NewMem(), Dir: "/j", SegmentSize: tc.size}, 0)
		if (err == nil) != tc.ok {
			t.Errorf("SegmentSize %d: err %v, want ok=%v", tc.size, err, tc.ok)
		}
		if err == nil {
			want := cmp.Or(tc.size, SegmentSize)
			if j.segmentSize != want {
				t.Errorf("SegmentSize %d: segments of %d, want %d", tc.size, j.segmentSize, want)
			}
			_ = j.Close(false)
		}
	}
}
