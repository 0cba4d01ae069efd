package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/journal"
)

// What each kind of damage does to a store that holds data (badger
// v4.9.6; the spool's part is noted). "Salvaged" means rebuilt into a
// fresh store from what still reads (salvage.go), the damaged store kept
// in the quarantine folder, the loss counted and reported (damage.go):
//
//   - MANIFEST overwritten with garbage: badger refuses it. Salvaged: the
//     tables are found without it; nothing is lost.
//   - MANIFEST cut in half: badger takes it for a torn append, keeps the
//     complete records and DELETES the tables no remaining record
//     mentions, silently. The spool sees tables the MANIFEST does not list
//     holding writes newer than everything it lists (orphanVersion), which
//     no crash leaves: salvaged, nothing lost.
//   - the newest value log cut short: badger truncates it at open, as
//     after a crash. The values past the cut are gone; Lease sets each
//     unreadable chunk aside as a dead letter saying so, with a report.
//   - the newest value log with a flipped bit: badger would truncate it at
//     the damaged entry, losing every value after it. The spool sees
//     unreadable bytes followed by entries a checkpoint had synced
//     (inspectLogs): salvaged, only the damaged value's chunk is lost.
//   - an older value log with a flipped bit: badger does not look at it
//     at open; with VerifyValueChecksum the damaged value reads as
//     missing, and Lease sets its chunk aside (only that chunk is lost).
//   - a table (.sst) overwritten, cut or with a flipped bit: badger
//     panicked in its own goroutines (a crash loop), or lost entries and
//     miscounted. Every table is checked before badger opens them
//     (verify.go); a damaged one is salvaged: its readable blocks are
//     kept, and values whose pointers were in a lost block are found again
//     in the value log under their key and version.
//   - KEYREGISTRY overwritten or emptied: a store in clear does not need
//     it: salvaged, nothing lost. An encrypted store loses what the lost
//     data keys encrypted.
//
// An encrypted store opened with the wrong key, or without one, or a plain
// store opened with a key, is ErrKeyMismatch and is never moved.

// fillChunk is how many entries each of fillStore's appends stores.
const fillChunk = 4

// fillStore writes n entries to queue "tencent" (ids e000..., payloads of
// 100-160 bytes that name their id), fillChunk per append, and closes the
// store. It returns the payloads in order.
func fillStore(t *testing.T, dir string, n int, mod ...func(*Options)) [][]byte {
	t.Helper()
	ctx := context.Background()
	s := openT(t, dir, mod...)
	var out [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i += fillChunk {
		var rs []Record
		for j := i; j < min(i+fillChunk, n); j++ {
			p := []byte(fmt.Sprintf(`{"id":"e%03d","pad":"%s"}`, j, strings.Repeat("x", 80+rng.IntN(60))))
			rs = append(rs, Record{Queue: "tencent", ID: fmt.Sprintf("e%03d", j), Payload: p})
			out = append(out, p)
		}
		if _, err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, s)
	return out
}

// leaseOneByOne leases and acks entries one at a time until the queue is
// empty or a lease fails; it returns the payloads handed out, and the error.
func leaseOneByOne(t *testing.T, s *Spool) ([][]byte, error) {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	for {
		es, err := s.Lease(ctx, "tencent", 1, 1<<20)
		if err != nil || len(es) == 0 {
			return out, err
		}
		out = append(out, es[0].Payload)
		if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
			t.Fatal(err)
		}
	}
}

func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func garbage(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x04
	writeFile(t, path, b)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

var quarantineClock = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestDamagedStores(t *testing.T) {
	t.Parallel() // on its own files (no test hook): beside the long ones
	const n = 40
	type tc struct {
		name string
		// reopen: open and close the filled store once more before the
		// damage, so its value log is no longer the newest one.
		reopen  bool
		corrupt func(t *testing.T, dir string)
		// salvaged: the store is rebuilt; wantEntries come out, and the
		// report counts wantLost entries lost.
		salvaged    bool
		wantEntries int
		wantLost    int64
		// check: what a store kept in place holds.
		check func(t *testing.T, s *Spool, dir string, want [][]byte, vlogBefore int64)
	}
	cases := []tc{
		{
			name: "MANIFEST garbage",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "MANIFEST")
				writeFile(t, p, garbage(int(fileSize(t, p)), 1))
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "MANIFEST cut in half",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "MANIFEST")
				if err := os.Truncate(p, fileSize(t, p)/2); err != nil {
					t.Fatal(err)
				}
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "newest value log cut in half",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "000001.vlog")
				if err := os.Truncate(p, fileSize(t, p)/2); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *Spool, dir string, want [][]byte, vlogBefore int64) {
				damagedSetAside(t, s, want, 1)
			},
		},
		{
			name: "newest value log with a flipped bit",
			corrupt: func(t *testing.T, dir string) {
				flipPayloadOf(t, filepath.Join(dir, "000001.vlog"), "e020")
			},
			// e020's chunk (fillChunk entries) and nothing else.
			salvaged: true, wantEntries: n - fillChunk, wantLost: fillChunk,
		},
		{
			name:   "older value log with a flipped bit",
			reopen: true,
			corrupt: func(t *testing.T, dir string) {
				flipPayloadOf(t, filepath.Join(dir, "000001.vlog"), "e020")
			},
			check: func(t *testing.T, s *Spool, dir string, want [][]byte, vlogBefore int64) {
				if sz := fileSize(t, filepath.Join(dir, "000001.vlog")); sz != vlogBefore {
					t.Fatalf("value log is %d bytes, was %d", sz, vlogBefore)
				}
				damagedSetAside(t, s, want, n-fillChunk)
			},
		},
		{
			name: "table garbage",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "000001.sst")
				writeFile(t, p, garbage(int(fileSize(t, p)), 2))
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "table cut in half",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "000001.sst")
				if err := os.Truncate(p, fileSize(t, p)/2); err != nil {
					t.Fatal(err)
				}
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "table with a flipped bit",
			corrupt: func(t *testing.T, dir string) {
				// Offset 100 is in the first data block (keys and value
				// pointers of the first entries).
				flipByte(t, filepath.Join(dir, "000001.sst"), 100)
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "KEYREGISTRY garbage",
			corrupt: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "KEYREGISTRY")
				writeFile(t, p, garbage(int(fileSize(t, p)), 3))
			},
			salvaged: true, wantEntries: n,
		},
		{
			name: "KEYREGISTRY emptied",
			corrupt: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "KEYREGISTRY"), nil)
			},
			salvaged: true, wantEntries: n,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "spool")
			want := fillStore(t, dir, n)
			if c.reopen {
				closeT(t, openT(t, dir))
			}
			if _, err := os.Stat(filepath.Join(dir, "000001.sst")); err != nil {
				t.Fatalf("the filled store has no table: %v", err)
			}
			vlogBefore := fileSize(t, filepath.Join(dir, "000001.vlog"))
			c.corrupt(t, dir)
			damaged := readFiles(t, dir)

			s, err := Open(Options{Dir: dir, Queues: queues, Clock: func() time.Time { return quarantineClock }})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer closeT(t, s)
			if q := s.Quarantine(); q != nil {
				t.Fatalf("quarantined whole (%s): damage must be salvaged or absorbed", q.Reason)
			}
			if !c.salvaged {
				for _, r := range s.Damage() {
					if r.Found == "store salvage at start-up" {
						t.Fatalf("salvaged (%s); this damage used to be absorbed in place: update the notes above", r.Message)
					}
				}
				c.check(t, s, dir, want, vlogBefore)
				return
			}
			reps := s.Damage()
			if len(reps) != 1 || reps[0].Found != "store salvage at start-up" {
				t.Fatalf("damage reports %+v, want one salvage", reps)
			}
			r := reps[0]
			t.Logf("report: %s", r.Message)
			if r.Lost() != c.wantLost {
				t.Errorf("report counts %d entries lost (%v), want %d", r.Lost(), r.EntriesLost, c.wantLost)
			}
			wantPath := filepath.Join(parent, "quarantine", "spool-20260304T050607Z")
			if r.SetAside != wantPath || !r.At.Equal(quarantineClock) {
				t.Fatalf("report set aside %q at %v, want %s at %v", r.SetAside, r.At, wantPath, quarantineClock)
			}
			// The damaged store is kept as it was, for an operator.
			kept := readFiles(t, r.SetAside)
			for name, b := range damaged {
				if name != "LOCK" && !bytes.Equal(kept[name], b) {
					t.Errorf("kept %s: %d bytes, differs from the %d bytes that were there", name, len(kept[name]), len(b))
				}
			}
			// What was not lost comes out, intact and in order.
			if st := s.Stats()["tencent"]; st.Depth != int64(c.wantEntries) {
				t.Errorf("depth %d after salvage, want %d", st.Depth, c.wantEntries)
			}
			got, err := leaseOneByOne(t, s)
			if err != nil || len(got) != c.wantEntries {
				t.Fatalf("%d entries came out (%v), want %d", len(got), err, c.wantEntries)
			}
			inOrder(t, got, want)
			// The rebuilt store works, and the report outlives a restart.
			ctx := context.Background()
			if res, err := s.Append(ctx, recs("tencent", "after")); err != nil || res.Accepted != 1 {
				t.Fatalf("append to the rebuilt store: %+v, %v", res, err)
			}
			closeT(t, s)
			s = openT(t, dir)
			if reps := s.Damage(); len(reps) != 1 || reps[0].Message != r.Message {
				t.Errorf("reports after a restart: %+v", reps)
			}
			es, err := s.Lease(ctx, "tencent", 10, 1<<20)
			if err != nil || fmt.Sprint(ids(es)) != "[after]" {
				t.Fatalf("lease after the restart: %v, %v", ids(es), err)
			}
		})
	}
}

// When even the salvage fails, the store is set aside whole and the agent
// starts empty, saying so.
func TestFailedSalvageQuarantines(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "spool")
	fillStore(t, dir, 8)
	p := filepath.Join(dir, "MANIFEST")
	writeFile(t, p, garbage(int(fileSize(t, p)), 1))
	salvageTestHook = func() error { return errors.New("injected salvage failure") }
	defer func() { salvageTestHook = nil }()
	s, err := Open(Options{Dir: dir, Queues: queues, Clock: func() time.Time { return quarantineClock }})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer closeT(t, s)
	q := s.Quarantine()
	if q == nil || !strings.Contains(q.Reason, "injected salvage failure") {
		t.Fatalf("quarantine %+v, want the store set aside whole with the salvage's failure", q)
	}
	if st := s.Stats()["tencent"]; st.Depth != 0 {
		t.Fatalf("new store not empty: %+v", st)
	}
}

// flipPayloadOf flips a bit inside the payload of the entry with that id
// (the payload is stored in clear text in a store without encryption).
func flipPayloadOf(t *testing.T, path, id string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`{"id":"`+id+`","pad":"xxx`))
	if i < 0 {
		t.Fatalf("payload of %s not found in %s", id, path)
	}
	b[i+25] ^= 0x04
	writeFile(t, path, b)
}

// stuckAfterPrefix: the first entries come out intact and in order, then
// Lease fails with errBadRecord at the first unreadable one, and keeps
// failing there. exactly: how many must come out (0: any number short of
// all, but at least one).
// damagedSetAside checks what happens after value-log damage: the readable
// entries come out intact and in order, every unreadable one is set aside
// as a dead letter saying why (the queue is not stuck on it), and the
// counters add up.
func damagedSetAside(t *testing.T, s *Spool, want [][]byte, exactly int) {
	t.Helper()
	got, err := leaseOneByOne(t, s)
	if err != nil {
		t.Fatalf("after %d entries: lease error %v; unreadable entries must be set aside, not stop the queue", len(got), err)
	}
	if len(got) == 0 || len(got) >= len(want) || (exactly > 0 && len(got) < exactly) {
		t.Fatalf("%d entries came out of %d (at least %d expected readable)", len(got), len(want), exactly)
	}
	inOrder(t, got, want)
	// One dead letter per unreadable value: fillStore's appends are
	// chunks of fillChunk entries, lost together.
	lost := len(want) - len(got)
	st := s.Stats()["tencent"]
	if st.Depth != 0 || st.Bytes != 0 || st.DeadLetters < int64((lost+fillChunk-1)/fillChunk) || st.DeadLetters > int64(lost) {
		t.Fatalf("stats %+v: want depth 0, no bytes, and one dead letter per lost chunk (%d entries lost)", st, lost)
	}
	dl, err := s.DeadLetters("tencent", 0, 1000)
	if err != nil || int64(len(dl)) != st.DeadLetters {
		t.Fatalf("dead letters %d (%v), counted %d", len(dl), err, st.DeadLetters)
	}
	for _, d := range dl {
		if !strings.Contains(d.Reason, "unreadable") {
			t.Fatalf("dead letter %+v does not say why", d)
		}
	}
	// And the loss is reported, with its count: an upper bound, the seqs
	// between the previous value and the unreadable one, which can take in
	// a few delivered just before (the head's hint lags behind an ack
	// when the next value does not read).
	var reported int64
	for _, r := range s.Damage() {
		reported += r.Lost()
	}
	if reported < int64(lost) || reported > int64(lost+fillChunk) {
		t.Fatalf("damage reports count %d entries lost, %d were: %+v", reported, lost, s.Damage())
	}
	// The queue goes on: a new entry is handed out.
	if _, err := s.Append(context.Background(), recs("tencent", "after-damage")); err != nil {
		t.Fatal(err)
	}
	es, err := s.Lease(context.Background(), "tencent", 10, 1<<20)
	if err != nil || len(es) != 1 || es[0].ID != "after-damage" {
		t.Fatalf("lease after the damage: %v %v", es, err)
	}
	t.Logf("%d of %d entries readable, %d set aside", len(got), len(want), len(dl))
}

// inOrder: the entries that came out are intact and in the order they
// were written (a subsequence of want).
func inOrder(t *testing.T, got, want [][]byte) {
	t.Helper()
	j := 0
	for i, p := range got {
		for j < len(want) && !bytes.Equal(p, want[j]) {
			j++
		}
		if j == len(want) {
			t.Fatalf("entry %d: payload %q was never written, or is out of order", i, p)
		}
		j++
	}
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

// plainAndEncrypted: a test run over a store in clear and over one
// encrypted with testKey.
var plainAndEncrypted = []struct {
	name string
	key  []byte
}{{"plain", nil}, {"encrypted", testKey}}

func TestWrongKeyIsRefusedNotQuarantined(t *testing.T) {
	withKey := func(k []byte) func(*Options) { return func(o *Options) { o.EncryptionKey = k } }
	otherKey := bytes.ToUpper(testKey)
	for _, c := range []struct {
		name       string
		written    []byte
		openedWith []byte
	}{
		{"wrong key", testKey, otherKey},
		{"no key", testKey, nil},
		{"key for a plain store", nil, testKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "spool")
			want := fillStore(t, dir, 8, withKey(c.written))
			before := readFiles(t, dir)
			for range 2 { // and again: nothing was changed by the first try
				_, err := Open(Options{Dir: dir, Queues: queues, EncryptionKey: c.openedWith})
				if !errors.Is(err, ErrKeyMismatch) {
					t.Fatalf("open: %v, want ErrKeyMismatch", err)
				}
			}
			if _, err := os.Stat(filepath.Join(parent, "quarantine")); !os.IsNotExist(err) {
				t.Fatal("a store opened with the wrong key must never be quarantined")
			}
			after := readFiles(t, dir)
			for name, b := range before {
				if name != "LOCK" && !bytes.Equal(after[name], b) {
					t.Errorf("%s changed", name)
				}
			}
			// With the right key everything is there.
			s := openT(t, dir, withKey(c.written))
			defer closeT(t, s)
			got, err := leaseOneByOne(t, s)
			if err != nil || len(got) != len(want) {
				t.Fatalf("with the right key: %d entries, %v", len(got), err)
			}
		})
	}
}

func TestEncryptedStoreDamageIsSalvaged(t *testing.T) {
	for _, c := range []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    int64 // entries that survive
	}{
		{"KEYREGISTRY garbage", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "KEYREGISTRY")
			if sz := fileSize(t, p); sz <= 28 {
				t.Fatalf("an encrypted store's registry is %d bytes: expected data keys after the 28-byte header", sz)
			}
			writeFile(t, p, garbage(int(fileSize(t, p)), 4))
		}, 0}, // the data keys are gone, and what they encrypted with them
		{"table with a flipped bit", func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, "000001.sst"), 100)
		}, 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			fillStore(t, dir, 8, func(o *Options) { o.EncryptionKey = testKey })
			c.corrupt(t, dir)
			s, err := Open(Options{Dir: dir, Queues: queues, EncryptionKey: testKey})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer closeT(t, s)
			reps := s.Damage()
			if len(reps) != 1 {
				t.Fatalf("damage reports: %+v, want one salvage", reps)
			}
			t.Logf("report: %s", reps[0].Message)
			if d := s.Stats()["tencent"].Depth; d != c.want {
				t.Errorf("depth %d after salvage, want %d", d, c.want)
			}
			if c.want == 0 && !reps[0].CountUnknown {
				t.Errorf("whole files unreadable, but the report claims a count: %+v", reps[0])
			}
		})
	}
}

func TestLockedStoreWithTablesIsRefused(t *testing.T) {
	// The pre-open table check takes badger's directory lock first, so a
	// store in use (here one with tables to check) is ErrLocked, never
	// judged from files another process is writing.
	dir := filepath.Join(t.TempDir(), "spool")
	fillStore(t, dir, 8)
	s := openT(t, dir)
	defer closeT(t, s)
	_, err := Open(Options{Dir: dir, Queues: queues})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "quarantine")); !os.IsNotExist(err) {
		t.Fatal("a locked store must never be quarantined")
	}
}

func TestUndecodableMetadataIsSalvaged(t *testing.T) {
	// Badger opens the store, but a queue's metadata record is not one the
	// spool wrote (written here through badger directly, checksums and
	// all): Open used to fail at every start. The store is salvaged and
	// the queue counted again from its entries.
	dir := filepath.Join(t.TempDir(), "spool")
	fillStore(t, dir, 4)
	db, err := badger.Open(badgerOptions(Options{Dir: dir, MemTableSize: 8 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey("tencent"), []byte("not metadata")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Queues: queues})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer closeT(t, s)
	if q := s.Quarantine(); q != nil {
		t.Fatalf("quarantined whole: %+v", q)
	}
	if st := s.Stats()["tencent"]; st.Depth != 4 {
		t.Fatalf("stats after salvage %+v, want the 4 entries counted again", st)
	}
	if got, err := leaseOneByOne(t, s); err != nil || len(got) != 4 {
		t.Fatalf("lease: %d entries, %v", len(got), err)
	}
}

// A power cut during a start (or a log rotation) can leave badger's new,
// not yet synced .mem and .vlog files on disk with no size. Badger refuses
// to open them; they hold nothing, so the spool removes them and opens the
// store with everything in it, instead of quarantining it.
func TestEmptyLogsFromAPowerCutAreRemoved(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"memtable", "%05d.mem"},
		{"value log", "%06d.vlog"},
		{"both", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := fillStore(t, dir, 40)
			files := []string{tc.file}
			if tc.file == "" {
				files = []string{"%05d.mem", "%06d.vlog"}
			}
			for _, f := range files {
				// Past every fid in use, as a new file at a start is.
				writeFile(t, filepath.Join(dir, fmt.Sprintf(f, 99)), nil)
			}
			s := openT(t, dir)
			defer closeT(t, s)
			if q := s.Quarantine(); q != nil {
				t.Fatalf("store quarantined: %+v", q)
			}
			got, err := leaseOneByOne(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d entries after reopening, want %d", len(got), len(want))
			}
			for _, f := range files {
				if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf(f, 99))); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still there (err %v)", fmt.Sprintf(f, 99), err)
				}
			}
		})
	}
}

// setFormat records format f in the store at dir, with badger alone.
func setFormat(t *testing.T, dir string, f byte) {
	t.Helper()
	db, err := badger.Open(badgerOptions(Options{Dir: dir, MemTableSize: 8 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte{f}) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// refusedAsNewer opens the store in dir twice: each open must be refused
// with ErrNewerFormat, and nothing may be quarantined beside it.
func refusedAsNewer(t *testing.T, dir, what string) {
	t.Helper()
	for range 2 {
		_, err := Open(Options{Dir: dir, Queues: queues})
		if !errors.Is(err, ErrNewerFormat) {
			t.Fatalf("open: %v, want ErrNewerFormat", err)
		}
		t.Logf("open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "quarantine")); !os.IsNotExist(err) {
		t.Fatalf("%s must never be quarantined", what)
	}
}

// A store recorded in a newer format than this code knows is refused and
// left as it is: never quarantined, never read (this code would take the
// newer layout's values for damage and set them aside).
func TestNewerFormatIsRefusedNotQuarantined(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "spool")
	want := fillStore(t, dir, 8)
	setFormat(t, dir, storeFormat+1)
	refusedAsNewer(t, dir, "a store in a newer format")
	// In a format this code knows again, every entry is there.
	setFormat(t, dir, storeFormat)
	s := openT(t, dir)
	defer closeT(t, s)
	got, err := leaseOneByOne(t, s)
	if err != nil || len(got) != len(want) {
		t.Fatalf("after the refusals: %d entries of %d, %v", len(got), len(want), err)
	}
}

// The first commit records the format of what it writes: in a new store,
// and in one written before the format was recorded.
func TestFirstCommitRecordsFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	for i, c := range []string{"new store", "store without a record"} {
		s := openT(t, dir)
		get := func() []byte { return storedValue(t, s, formatKey) }
		if got := get(); got != nil {
			t.Fatalf("%s: format %v recorded before any commit", c, got)
		}
		if _, err := s.Append(context.Background(), recs("tencent", fmt.Sprint("f", i))); err != nil {
			t.Fatal(err)
		}
		if got := get(); !bytes.Equal(got, []byte{storeFormat}) {
			t.Fatalf("%s: format %v after a commit, want %d", c, got, storeFormat)
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(formatKey) }); err != nil {
			t.Fatal(err)
		}
		closeT(t, s)
	}
}

// A journal written in a newer version than this code reads (left by a
// crash of a newer agent, then rolled back) is refused like a store in a
// newer format: never salvaged or quarantined, and read again by code
// that knows the version.
func TestNewerJournalIsRefusedNotQuarantined(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.TrimInterval = -1 })
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, id := range ids {
		if _, err := s.Append(ctx, recs("tencent", id)); err != nil {
			t.Fatal(err)
		}
	}
	parent := t.TempDir()
	crashed := filepath.Join(parent, "spool")
	copyStore(t, dir, crashed) // as a crash leaves it: the journal not checkpointed
	copyFiles(t, filepath.Join(dir, journalDirName), filepath.Join(crashed, journalDirName), func(string) bool { return true })
	closeT(t, s)
	segs, _ := filepath.Glob(filepath.Join(crashed, journalDirName, "*.jnl"))
	if len(segs) == 0 {
		t.Fatal("no journal segment in the crashed copy")
	}
	setVersion := func(v byte) {
		for _, seg := range segs {
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			b[4] = v
			binary.BigEndian.PutUint32(b[32:36], crc32.Checksum(b[:32], crc32.MakeTable(crc32.Castagnoli)))
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	setVersion(journal.Version + 1)
	refusedAsNewer(t, crashed, "a journal in a newer version")
	setVersion(journal.Version)
	r := openT(t, crashed)
	defer closeT(t, r)
	got, err := leaseOneByOne(t, r)
	if err != nil || len(got) != len(ids) {
		t.Fatalf("after the refusals: %d entries of %d, %v", len(got), len(ids), err)
	}
}
