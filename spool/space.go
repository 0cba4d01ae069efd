package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/journal"
)

// Free space. Badger writes its memtable logs, value logs and tables
// through memory maps, and a page written where the disk has no block left
// is a SIGBUS, not an error. So the spool keeps clear of a full disk, at
// two levels:
//
//   - Below Options.MinFreeBytes new data (Append, Write) is refused with
//     ErrFull: the spool is drain-only. Acks, failures and dead letters go
//     on, so what is queued is still delivered and its space freed; when
//     the disk is above the minimum again, new data is taken again. Open
//     opens a store below the minimum in this state.
//   - Below openNeed Open refuses with ErrDiskLow: there is not room for
//     what opening the store and draining it write.
//
// openNeed is the drain reserve plus the replay:
//
//   - The drain reserve: a drain's acks and dead letters go to the journal,
//     whose next segment is allocated whole (journal.SegmentSize), and to
//     badger's memtable log, which fills up to MemTableSize and is then
//     flushed into a table of about that size. With the defaults, 16 + 2*4
//     = 24 MiB. Measured on a tmpfs: opening and draining 1M actions (700
//     MB of store) grew the disk's use by at most 15.7 MiB after a clean
//     stop and 8.7 MiB after a kill (value-log GC then gave back 15-28 MiB).
//   - The replay, after an unclean stop: badger flushes the memtable logs
//     it finds into tables (at most their bytes), and Open applies the
//     journal's records again (into the value log or a memtable log, and
//     from there into tables: at most twice their bytes). After a clean
//     stop there is nothing to replay.
//
// What this does not bound: compactions and value-log GC write new files
// before they delete the old ones. Both run at any fill; in a drain they
// mostly drop what was acknowledged, and GC rewrites little of a FIFO's
// value log (the oldest files are all garbage by then).

// drainReserve is the room a drain-only store needs (see above).
func drainReserve(memTableSize int64) int64 { return journal.SegmentSize + 2*memTableSize }

// openNeed is the free space Open needs for the store in o.Dir: the drain
// reserve and what replaying its unclean stop writes.
func openNeed(o Options) (need, replay int64) {
	for _, name := range dirNames(o.Dir) {
		if strings.HasSuffix(name, ".mem") {
			replay += fileBytes(filepath.Join(o.Dir, name))
		}
	}
	jdir := filepath.Join(o.Dir, journalDirName)
	for _, name := range dirNames(jdir) {
		if journal.IsSpare(name) || strings.HasPrefix(name, journal.CheckpointName) {
			continue
		}
		replay += 2 * usedLength(filepath.Join(jdir, name))
	}
	return drainReserve(o.MemTableSize) + replay, replay
}

// checkOpenSpace refuses to open a store without room to open and drain
// it (ErrDiskLow). It reports whether the store opens drain-only.
func checkOpenSpace(o Options) (drainOnly bool, err error) {
	if o.MinFreeBytes <= 0 {
		return false, nil
	}
	if r := drainReserve(o.MemTableSize); o.MinFreeBytes < r {
		return false, fmt.Errorf("a free-space minimum of %s is below the %s the store needs to open and deliver on a full disk: set at least that, or none",
			mib(o.MinFreeBytes), mib(r))
	}
	free := o.FreeBytes(o.Dir)
	if free < 0 {
		return false, nil
	}
	if need, replay := openNeed(o); free < need {
		why := "to deliver what it holds"
		if replay > 0 {
			why = fmt.Sprintf("(%s to deliver what it holds, %s to replay what an unclean stop left)", mib(need-replay), mib(replay))
		}
		return false, fmt.Errorf("%w on %s: %s free; opening the store needs %s %s", ErrDiskLow, o.Dir, mib(free), mib(need), why)
	}
	return free < o.MinFreeBytes, nil
}

func dirNames(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// usedLength is path's length up to its last byte that is not zero: the
// records of a journal segment (it is preallocated or written with zeros
// ahead of need, so its size says nothing). A file that cannot be read
// counts whole.
func usedLength(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	buf := make([]byte, 64<<10)
	for end := fi.Size(); end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return fi.Size()
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				return start + int64(i) + 1
			}
		}
		end = start
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// diskWatch says whether the store's disk is below MinFreeBytes, and logs
// each change. The committer asks before each commit; Intake asks too, so
// the state (and the log) follows the disk while nothing is written.
type diskWatch struct {
	dir  string
	min  int64 // 0: no minimum
	free func(dir string) int64
	log  *slog.Logger
	// statfs: free is the file system's own figure (not a test's), so a
	// recent one far above the minimum can be reused (check).
	statfs bool

	mu  sync.Mutex
	low bool
	// last real reading and when it was taken
	lastFree int64
	lastAt   time.Time
}

// Reusing a free-space reading: a statfs before every commit was 5% of
// the agent's CPU at one connection (issue #26). A reading is reused for
// up to freeReuseFor while it is more than freeReuseAbove over the
// minimum: in that time the agent writes a few MiB at most (its whole
// ingest is under 200 MB/s here), and nearer the minimum every commit
// reads it again.
const (
	freeReuseFor   = 10 * time.Millisecond
	freeReuseAbove = 256 << 20
)

// check reports whether the disk is below the minimum, and the free bytes
// (-1: unknown, or no minimum).
func (d *diskWatch) check() (low bool, free int64) {
	if d.min <= 0 {
		return false, -1
	}
	if d.statfs {
		d.mu.Lock()
		if !d.low && d.lastFree-d.min > freeReuseAbove && time.Since(d.lastAt) < freeReuseFor {
			free = d.lastFree
			d.mu.Unlock()
			return false, free
		}
		d.mu.Unlock()
	}
	now := time.Now()
	free = d.free(d.dir)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastFree, d.lastAt = free, now
	switch {
	case free < 0:
	case free < d.min && !d.low:
		d.low = true
		d.log.Error("the store's disk is nearly full: new data is refused (drain-only) until space is freed; queued items are still delivered",
			"free_bytes", free, "min_free_bytes", d.min)
	case free >= d.min && d.low:
		d.low = false
		d.log.Info("disk space is back: new data is accepted again", "free_bytes", free, "min_free_bytes", d.min)
	}
	return d.low, free
}

// Intake says whether the spool takes new data now and, when it does not,
// why.
type Intake struct {
	// Refusing: Append and Write answer ErrFull. Queued items are still
	// delivered (acks, failures and dead letters go on).
	Refusing bool
	// Reason while refusing: "disk_low" (the disk is below MinFreeBytes)
	// or "spool_full" (the entries fill MaxBytes, to within 1%).
	Reason string
	// FreeBytes is the disk's free space (-1: unknown or not watched);
	// MinFreeBytes the minimum (0: none).
	FreeBytes, MinFreeBytes int64
	// StoredBytes count against MaxBytes (0: no cap).
	StoredBytes, MaxBytes int64
}

// Intake reports whether new data is taken now. The spool is reported
// full a little before an append is refused (1% of MaxBytes): a request
// needs room for all of its records.
func (s *Spool) Intake() Intake {
	low, free := s.disk.check()
	in := Intake{FreeBytes: free, MinFreeBytes: max(s.opts.MinFreeBytes, 0), StoredBytes: s.TotalBytes(), MaxBytes: s.opts.MaxBytes}
	switch {
	case low:
		in.Refusing, in.Reason = true, "disk_low"
	case in.MaxBytes > 0 && in.StoredBytes >= in.MaxBytes-in.MaxBytes/100:
		in.Refusing, in.Reason = true, "spool_full"
	}
	return in
}

// logDrainOnly says, at Open, that the store opened below the minimum.
func (s *Spool) logDrainOnly() {
	var queued int64
	for _, q := range s.queues {
		queued += q.meta.Count
	}
	s.disk.mu.Lock()
	s.disk.low = true
	s.disk.mu.Unlock()
	s.log.Error("starting drain-only: the store's disk is nearly full; new data is refused until space is freed, queued items are still delivered",
		"free_bytes", s.opts.FreeBytes(s.opts.Dir), "min_free_bytes", s.opts.MinFreeBytes, "queued", queued)
}
