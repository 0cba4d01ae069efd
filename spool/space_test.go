package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeDisk is a disk whose free space the test sets.
type fakeDisk struct{ free atomic.Int64 }

func (d *fakeDisk) bytes(string) int64 { return d.free.Load() }

// syncLog collects a logger's lines; the spool logs from its goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDrainOnlyOnAFullDisk: a store holding queued items opens on a disk
// below the minimum (but with room to drain), refuses new data with
// ErrFull, still acks, fails and dead-letters, says so in its log and in
// Intake, and takes new data again by itself once space is back.
func TestDrainOnlyOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	if _, err := s.Append(ctx, recs("tencent", "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)

	var disk fakeDisk
	disk.free.Store(40 << 20) // above the 32 MiB drain reserve, under the 128 MiB minimum
	var logs syncLog
	s = openT(t, dir, func(o *Options) {
		o.MinFreeBytes, o.FreeBytes = 128<<20, disk.bytes
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	defer closeT(t, s)
	if !strings.Contains(logs.String(), "starting drain-only") || !strings.Contains(logs.String(), "queued=3") {
		t.Errorf("no drain-only line at open in the log:\n%s", logs.String())
	}
	if in := s.Intake(); !in.Refusing || in.Reason != "disk_low" || in.FreeBytes != 40<<20 || in.MinFreeBytes != 128<<20 {
		t.Errorf("intake on a full disk: %+v", in)
	}
	_, err := s.Append(ctx, recs("tencent", "d"))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "40.0 MiB free") {
		t.Fatalf("append on a full disk: %v, want ErrFull saying how much is free", err)
	}
	if _, err := s.Write(ctx, []KV{{Key: "x", Value: []byte("y")}}, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("write on a full disk: %v, want ErrFull", err)
	}
	es, err := s.Lease(ctx, "tencent", 10, 1<<20)
	if err != nil || len(es) != 3 {
		t.Fatalf("lease on a full disk: %d %v", len(es), err)
	}
	if err := s.Ack(ctx, "tencent", seqs(es[:1])); err != nil {
		t.Fatalf("ack on a full disk: %v", err)
	}
	if err := s.DeadLetter(ctx, "tencent", seqs(es[1:2]), "permanent"); err != nil {
		t.Fatalf("dead letter on a full disk: %v", err)
	}
	if err := s.Fail(ctx, "tencent", seqs(es[2:]), "timeout"); err != nil {
		t.Fatalf("fail on a full disk: %v", err)
	}
	if es, err = s.Lease(ctx, "tencent", 10, 1<<20); err != nil || len(es) != 1 {
		t.Fatalf("lease after a failure: %d %v", len(es), err)
	}
	if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats()["tencent"]; st.Depth != 0 || st.DeadLetters != 1 {
		t.Errorf("after the drain: %+v", st)
	}

	disk.free.Store(200 << 20)
	if in := s.Intake(); in.Refusing {
		t.Errorf("intake with space back: %+v", in)
	}
	if !strings.Contains(logs.String(), "disk space is back") {
		t.Errorf("no line saying space is back:\n%s", logs.String())
	}
	if res, err := s.Append(ctx, recs("tencent", "d")); err != nil || res.Accepted != 1 {
		t.Fatalf("append with space back: %+v %v", res, err)
	}
	disk.free.Store(100 << 20)
	if _, err := s.Append(ctx, recs("tencent", "e")); !errors.Is(err, ErrFull) {
		t.Fatalf("append on a disk full again: %v", err)
	}
	if n := strings.Count(logs.String(), "nearly full"); n != 2 {
		t.Errorf("%d lines saying the disk is nearly full, want 2 (at open, and once again now):\n%s", n, logs.String())
	}
}

// TestOpenNeedsRoomToReplayAndDrain: Open refuses below the drain reserve
// (32 MiB with the default memtable), plus, after an unclean stop, room
// to replay what the stop left; the error says how much is free and how
// much is needed, and the store is left as it is.
func TestOpenNeedsRoomToReplayAndDrain(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	for i := 0; i < 20; i++ {
		var ids []string
		for k := 0; k < 100; k++ {
			ids = append(ids, fmt.Sprintf("r%d-%d", i, k))
		}
		if _, err := s.Append(ctx, recs("tencent", ids...)); err != nil {
			t.Fatal(err)
		}
	}
	// What a kill would leave: the journal's records since the last
	// checkpoint, and badger's memtable log.
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := copyDirSparse(dir, crashed); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	os.Remove(filepath.Join(crashed, "LOCK"))

	var disk fakeDisk
	opts := func(d string) Options {
		return Options{Dir: d, Queues: queues, MinFreeBytes: 128 << 20, FreeBytes: disk.bytes, MemTableSize: 8 << 20}
	}
	clean, _ := openNeed(opts(dir))
	if clean != 32<<20 {
		t.Errorf("a cleanly closed store needs %d bytes to open, want the drain reserve of 32 MiB", clean)
	}
	need, replay := openNeed(opts(crashed))
	t.Logf("after an unclean stop: need %s, replay %s", mib(need), mib(replay))
	if replay <= 0 || need != clean+replay {
		t.Fatalf("after an unclean stop: need %d, replay %d", need, replay)
	}

	disk.free.Store(need - 1)
	_, err := Open(opts(crashed))
	want := fmt.Sprintf("%s free; opening the store needs %s", mib(need-1), mib(need))
	if !errors.Is(err, ErrDiskLow) || !strings.Contains(err.Error(), want) {
		t.Fatalf("open without room to replay: %v, want ErrDiskLow with %q", err, want)
	}
	disk.free.Store(need)
	s, err = Open(opts(crashed))
	if err != nil {
		t.Fatalf("open with room to replay: %v", err)
	}
	defer closeT(t, s)
	if st := s.Stats()["tencent"]; st.Depth != 2000 {
		t.Errorf("opened drain-only after a crash with %d queued, want 2000", st.Depth)
	}
	if in := s.Intake(); !in.Refusing || in.Reason != "disk_low" {
		t.Errorf("intake: %+v", in)
	}
}

// TestUsedLength: a journal segment counts up to its last record, not its
// preallocated size.
func TestUsedLength(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seg")
	b := make([]byte, 300<<10)
	b[0], b[200<<10] = 1, 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := usedLength(p); got != 200<<10+1 {
		t.Errorf("usedLength = %d, want %d", got, 200<<10+1)
	}
	if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := usedLength(p); got != 0 {
		t.Errorf("usedLength of zeros = %d", got)
	}
}

// TestNoFreeSpaceMinimum: MinFreeBytes 0 is no minimum (the agent's
// AGENT_MIN_FREE_DISK=0), not a default: nothing is refused for the disk.
func TestNoFreeSpaceMinimum(t *testing.T) {
	var disk fakeDisk // 0 bytes free
	s := openT(t, filepath.Join(t.TempDir(), "spool"), func(o *Options) { o.FreeBytes = disk.bytes })
	defer closeT(t, s)
	if res, err := s.Append(context.Background(), recs("tencent", "a")); err != nil || res.Accepted != 1 {
		t.Fatalf("append with no minimum: %+v %v", res, err)
	}
	if in := s.Intake(); in.Refusing || in.MinFreeBytes != 0 || in.FreeBytes != -1 {
		t.Errorf("intake with no minimum: %+v", in)
	}
	_, err := Open(Options{Dir: filepath.Join(t.TempDir(), "spool"), Queues: queues, MinFreeBytes: 16 << 20})
	if want := "below the " + mib(drainReserve(DefaultMemTableSize)) + " the store needs"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a minimum below the drain reserve: %v", err)
	}
}

// TestIntakeReportsAFullSpool: Intake says the spool refuses once its
// entries fill MaxBytes (to within 1%), and takes again once drained.
func TestIntakeReportsAFullSpool(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"), func(o *Options) { o.MaxBytes = 100_000 })
	defer closeT(t, s)
	for i := 0; ; i++ {
		_, err := s.Append(ctx, recs("tencent", fmt.Sprint("id", i)))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil || i > 2000 {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if in := s.Intake(); !in.Refusing || in.Reason != "spool_full" {
		t.Errorf("intake of a full spool: %+v", in)
	}
	es, _ := s.Lease(ctx, "tencent", 10, 1<<20)
	if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
		t.Fatal(err)
	}
	if in := s.Intake(); in.Refusing {
		t.Errorf("intake of a drained spool: %+v", in)
	}
}

// TestRealDiskBelowMinimum: without FreeBytes the spool asks the file
// system (statfs); a minimum above what is free makes it drain-only.
func TestRealDiskBelowMinimum(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	free := freeBytes(filepath.Dir(dir))
	if free < 64<<20 {
		t.Skipf("%d bytes free here", free)
	}
	s := openT(t, dir, func(o *Options) { o.MinFreeBytes = free + free/4 })
	defer closeT(t, s)
	if in := s.Intake(); !in.Refusing || in.Reason != "disk_low" || in.FreeBytes <= 0 {
		t.Errorf("intake: %+v", in)
	}
	if _, err := s.Append(context.Background(), recs("tencent", "a")); !errors.Is(err, ErrFull) {
		t.Errorf("append: %v, want ErrFull", err)
	}
}

// The file system's free space is read before every commit only near the
// minimum: far above it a reading is reused for a few milliseconds (a
// statfs per commit was 5% of the agent's CPU). A test's own FreeBytes is
// asked every time.
func TestFreeSpaceReadingReused(t *testing.T) {
	const min = 128 << 20
	for _, tc := range []struct {
		name   string
		statfs bool
		free   int64
		reuse  bool
	}{
		{"far above the minimum", true, min + 1<<30, true},
		{"near the minimum", true, min + 100<<20, false},
		{"below the minimum", true, min - 1, false},
		{"a test's figure", false, min + 1<<30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			d := &diskWatch{dir: t.TempDir(), min: min, statfs: tc.statfs, log: slog.New(slog.DiscardHandler),
				free: func(string) int64 { calls++; return tc.free }}
			for range 100 {
				if low, free := d.check(); low != (tc.free < min) || free != tc.free {
					t.Fatalf("check() = %v, %d; free is %d", low, free, tc.free)
				}
			}
			// 100 checks take well under 10 ms; a slow machine may take
			// two readings, never one per check.
			if reused := calls < 10; reused != tc.reuse {
				t.Fatalf("%d readings for 100 checks: reused %v, want %v", calls, reused, tc.reuse)
			}
			if tc.reuse {
				d.lastAt = d.lastAt.Add(-freeReuseFor)
				before := calls
				d.check()
				if calls != before+1 {
					t.Fatal("a reading older than freeReuseFor was reused")
				}
			}
		})
	}
}

// TestSpaceBackSeenByTheNextWrite: a write refused for a low disk is
// answered while its group is still gathering; a write sent after that
// answer, with space back, must be taken, not refused on the group's
// older reading. Each round has a small chance of meeting the gathering
// group (about 1 in 70 here without the re-reading), so it runs 300.
func TestSpaceBackSeenByTheNextWrite(t *testing.T) {
	ctx := context.Background()
	var disk fakeDisk
	disk.free.Store(200 << 20)
	s := openT(t, filepath.Join(t.TempDir(), "spool"), func(o *Options) {
		o.MinFreeBytes, o.FreeBytes = 128<<20, disk.bytes
	})
	defer closeT(t, s)
	for i := range 300 {
		disk.free.Store(40 << 20)
		if _, err := s.Write(ctx, []KV{{Key: fmt.Sprint("low-", i), Value: []byte("v")}}, nil); !errors.Is(err, ErrFull) {
			t.Fatalf("round %d, disk low: %v, want ErrFull", i, err)
		}
		disk.free.Store(200 << 20)
		if _, err := s.Write(ctx, []KV{{Key: fmt.Sprint("back-", i), Value: []byte("v")}}, nil); err != nil {
			t.Fatalf("round %d, space back: %v", i, err)
		}
	}
}
