// Package spool is the agent's one durable store: a FIFO queue per upstream
// on badger, with idempotent appends, leases for delivery, acknowledgement,
// failed-attempt bookkeeping and a dead-letter queue.
//
// Durability: every mutation goes through a single committer goroutine that
// gathers whatever callers are waiting into one badger transaction, writes
// the transaction's writes as one record to the journal and fdatasyncs it,
// then commits the transaction to badger (which runs unsynced; checkpoints
// sync it, and Open replays the journal after a crash: package journal, replay.go). Many
// concurrent callers share one fdatasync, and a caller is answered only
// after its data is on disk, so an acknowledged append survives kill -9 and
// power loss. Counters are written in the same transaction as the data they
// count.
//
// The journal is ours, not badger's SyncWrites, because it earns it
// (BENCHMARKS.md, release 0.4): one journal record and fdatasync instead of
// badger's two msync flushes took a decision's median down by a third and
// its CPU by a tenth, its p99 better in 10 of 11 interleaved pairs, and a
// synced 1 KiB append from 317-349 to 256-280 µs; session 11's spare
// segment halved the sync again. It also lets the agent find, and bound,
// what damage to the store's files loses (damage.go), which badger alone
// does not.
//
// Goroutines and locks. The committer goroutine (commit.go) is the only
// writer of badger and of the journal: callers hand it ops on s.ops and
// wait. Beside it run the checkpoint loop, the value-log GC loop, the
// duplicate-filter loop and the trim loop; readers (Lease, DeadLetters,
// Get, Scan, Stats) run on the callers' goroutines. The locks, and the
// only order in which one is taken while another is held:
//
//	ckptMu  (one checkpoint, or GC's sync, at a time)
//	  -> journal's own mutex (inside MarkCheckpoint; it never calls out)
//	s.mu    (queues' in-memory state, closed, lastErr)
//	dedup.mu, diskWatch.mu, damageMu (each a leaf: nothing is taken under it)
//
// s.mu is never held across a badger commit, a sync or a journal append;
// it is taken inside badger read transactions (Lease), never the other way
// round. ckptMu and s.mu are never held together. Sending on s.ops happens
// under s.mu, so that Close, which closes s.ops under it, orders after
// every op already sent.
package spool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
)

// DefaultMemTableSize is the size of each of badger's two memtables. Each
// is a Go-heap arena, and the table a flush builds from it is held whole in
// Go memory too: 4 MiB instead of 8 took a 1,000,000-action fill's peak RSS
// from about 100 to about 60 MiB, with AGENT_MEMORY_LIMIT 44 MiB instead of
// 88 (under that limit 8 MiB memtables filled at 111-119k actions/s against
// 160-167k), single actions at the same rate (BENCHMARKS.md, session 15).
const DefaultMemTableSize = 4 << 20

// levelZeroTables is how many tables badger's level 0 holds before they
// are compacted into the level below: 5, not badger's 2. Duplicate-check
// keys are random, so every such compaction rewrites all of that level;
// merging 5 tables into it at once instead of 2 took 10-29% off the CPU
// of a 1M-action fill and made requests of 100 14-19% faster
// (BENCHMARKS.md, session 8). The bigger compactions map more of their
// tables at once: trimLoop checks often enough for that.
const levelZeroTables = 5

// Errors returned by the spool. Compare with errors.Is.
var (
	// ErrFull: the store holds MaxBytes already; nothing new is taken until
	// deliveries make room. Nothing stored is ever dropped to make room.
	ErrFull = errors.New("spool full")
	// ErrClosed: the spool is closed or closing.
	ErrClosed = errors.New("spool closed")
	// ErrUnknownQueue: a queue name not given in Options.Queues.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrTooLarge: one append is bigger than a single transaction may be.
	ErrTooLarge = errors.New("append too large for one commit")
	// ErrLocked: another process holds the store's directory lock.
	ErrLocked = errors.New("store is locked by another process")
	// ErrDiskLow: the store's filesystem has too little free space to open
	// the store safely.
	ErrDiskLow = errors.New("too little free disk space")
	// ErrKeyMismatch: the store was written with another encryption key
	// (or none). The store is left untouched.
	ErrKeyMismatch = errors.New("encryption key does not match the store")
	// ErrNewerFormat: the store was written by a newer agent, in a layout
	// this one does not know. The store is left untouched.
	ErrNewerFormat = errors.New("store written in a newer format")
)

// Options configure Open.
type Options struct {
	// Dir holds the badger store. Created if missing.
	Dir string
	// QuarantineDir receives a store that will not open. Default: a
	// "quarantine" directory beside Dir.
	QuarantineDir string
	// Queues are the queue names (one per upstream).
	Queues []string
	// MaxBytes caps the bytes of stored entries (live and dead letters,
	// payload and bookkeeping); past it Append returns ErrFull. 0 = no cap.
	MaxBytes int64
	// EncryptionKey, when set (32 bytes), turns on badger's AES-256
	// encryption at rest.
	EncryptionKey []byte
	// DedupeWindow is how long an id is remembered (default
	// DefaultDedupeWindow).
	DedupeWindow time.Duration
	// GCInterval is how often the value log is garbage-collected
	// (default DefaultGCInterval).
	GCInterval time.Duration
	// MemTableSize (default DefaultMemTableSize) bounds badger's memory;
	// see memory notes in BENCHMARKS.md.
	MemTableSize int64
	// TrimInterval is how often the pages of the store's memory-mapped
	// files are handed back to the kernel (Linux; see trim_linux.go).
	// Default 1 s; negative: never. Between those trims the mapped pages
	// are checked every 25 ms and trimmed early once the process's
	// resident file-backed memory has grown TrimAboveBytes (default 4 MiB)
	// since the last trim, so a burst of writes (or a compaction reading
	// its tables) does not grow the RSS by a second's worth of mapped
	// pages.
	TrimInterval   time.Duration
	TrimAboveBytes int64
	Logger         *slog.Logger
	Clock          func() time.Time
	// PutSyncWithin, when positive, lets a Write that queues no record
	// (keys only: decision records, velocity events, cached scores) return
	// once its commit is written to the journal, before the journal's
	// sync (such a Write always returns before badger applies it: a Get or
	// Scan begun after the return waits for the apply). The committer syncs
	// within this long of the first unsynced commit (behind it, while later
	// commits go on: syncDue), or sooner when a commit that must be synced
	// comes (appends, acks, every Write with records). A kill of the process
	// loses nothing; a power cut can lose the key-only writes of the last
	// PutSyncWithin (plus one sync), and nothing else: a synced commit
	// covers every commit before it. 0: every commit is synced before it
	// returns (the default). The journal then writes through the page
	// cache, without direct I/O.
	PutSyncWithin time.Duration
	// MinFreeBytes: below this much free space on the store's filesystem
	// new data is refused with ErrFull (drain-only: acks, failures and dead
	// letters, which free space, still go through); Open opens a store
	// below it drain-only, and refuses (ErrDiskLow) only without room to
	// open and drain it (space.go). Badger writes through mmaps: running
	// out of disk under one is a SIGBUS, not an error. 0 or negative: no
	// minimum and no check (the agent's default is in its config).
	MinFreeBytes int64
	// FreeBytes reports the space left on dir's filesystem, -1 when it
	// cannot be told. Default: statfs; tests give a full disk with it.
	FreeBytes func(dir string) int64
	// OnAppend, when set, hears after a commit which queues it gave new
	// entries to (a delivery worker waiting on an empty queue wakes), before
	// the commit's writers are answered. It is called on the committer's
	// goroutine: it must not block.
	OnAppend func(queue string)
	// OnCommit, when set, hears of each commit: how long the synced
	// commit took, how many writes shared it, and its error.
	OnCommit func(d time.Duration, writes int, err error)

	// dedupFilterKeys sizes the first duplicate filter (dedup.go); 0 is
	// dedupFilterMinKeys. Tests set it tiny to rebuild the filter often.
	dedupFilterKeys int
	// rewrites hears which value log badger's GC rewrites (gc_rescue.go).
	rewrites *rewriteWatch
	// journalSegmentSize is the journal's segment size; 0 is
	// journal.SegmentSize. valueLogFileSize is badger's value-log file
	// size; 0 is 32 MiB (openDB). Tests set them small to cross files
	// often and to map less at each start.
	journalSegmentSize int64
	valueLogFileSize   int64
	// journalFS is the file system the journal's segments are written
	// through; nil is the operating system's. Tests hold its syncs.
	journalFS vfs.FS
}

// Record is one item to append.
type Record struct {
	Queue   string
	ID      string // idempotency key, unique per queue within DedupeWindow
	Payload []byte
}

// AppendResult says what an Append did. Duplicate[i] reports whether
// records[i] was already stored (or repeated earlier in the same call).
type AppendResult struct {
	Accepted   int
	Duplicates int
	Duplicate  []bool
}

// Entry is a stored item as handed out by Lease and DeadLetters.
type Entry struct {
	Queue         string
	Seq           uint64
	ID            string
	Payload       []byte
	EnqueuedAt    time.Time
	Attempts      int
	LastAttemptAt time.Time
	LastError     string
	// Reason and DeadAt are set on dead letters.
	Reason string
	DeadAt time.Time
}

// QueueStats are cheap counters of one queue (kept in memory, persisted
// with every change).
type QueueStats struct {
	Depth            int64
	Bytes            int64
	InFlight         int
	OldestAgeSeconds float64
	DeadLetters      int64
	DeadBytes        int64
}

// QuarantineInfo describes a store that would not open and was moved aside.
type QuarantineInfo struct {
	Path   string    `json:"path"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Spool is the durable queue store. Safe for concurrent use.
type Spool struct {
	db     *badger.DB
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	quar   *QuarantineInfo
	ops    chan *op
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// The trim loop stops after badger is closed, the rest before.
	trimCtx  context.Context
	trimStop context.CancelFunc
	trimWG   sync.WaitGroup

	mu      sync.Mutex // guards queues' runtime state and closed
	queues  map[string]*queueState
	closed  bool
	lastErr error // last commit error, cleared by a successful commit

	closeOnce sync.Once

	// applying is held by the committer from answering a group before
	// badger applied it (commitGroup) until the apply; reads of keys wait
	// for it (waitApplied).
	applying sync.RWMutex

	jnl        *journal.Journal
	ckptMu     sync.Mutex // one checkpoint at a time
	kick       chan struct{}
	replayed   int // journal records replayed at Open
	format     int // the store's recorded format (0: none); the committer's
	ckpts      atomic.Int64
	ckptErrors atomic.Int64

	disk *diskWatch // is the disk below MinFreeBytes (space.go)

	damageMu sync.Mutex
	damage   []DamageReport // stored reports and this run's (damage.go)
	salvage  *salvageResult // the store was rebuilt at Open

	dedup     dedupFilter   // see dedup.go
	dedupWant atomic.Int64  // keys a new filter should be sized for; 0: none wanted
	dedupScan chan struct{} // the committer began a filter: dedupLoop scans
}

type queueState struct {
	name     string
	meta     meta             // committed state
	inflight map[uint64]int64 // leased seq -> stored size
	next     uint64           // next seq to consider for leasing
	// rewinds counts leases given back (Fail, Release). A Lease that saw
	// it change while it read does not move next forward: it could move it
	// past an entry given back meanwhile, which would then not be handed
	// out again until a restart.
	rewinds uint64
	// removals counts commits that deleted entries (ack, dead letter). A
	// Lease whose read overlapped one re-checks that what it read still
	// exists, so it never hands out an entry just acknowledged.
	removals uint64
}

// Defaults of the options the agent's configuration also has
// (AGENT_DEDUPE_WINDOW, AGENT_STORE_GC_INTERVAL): one definition each,
// which cmd/agent's TestDefaultsHaveOneValue holds config's to.
const (
	DefaultDedupeWindow = 7 * 24 * time.Hour
	DefaultGCInterval   = time.Minute
)

// Open opens (or creates) the store. A store that fails to open for a reason
// other than a held lock or a wrong key is moved to QuarantineDir and a new
// empty store is created; Quarantine() then reports it. "Fails to open"
// includes a table whose checksums fail (every table is checked first, see
// verifyTables), a damaged key registry and queue metadata that does not
// decode. Damage badger repairs by itself at open (a value log or MANIFEST
// with a bad tail, which it cuts off as after a crash) is not detected:
// see the notes in quarantine_test.go.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("open spool: no directory")
	}
	if len(opts.Queues) == 0 {
		return nil, errors.New("open spool: no queues")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = DefaultGCInterval
	}
	realStatfs := opts.FreeBytes == nil
	if realStatfs {
		opts.FreeBytes = freeBytes
	}
	if opts.MemTableSize <= 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	if opts.TrimInterval == 0 {
		opts.TrimInterval = time.Second
	}
	if opts.TrimAboveBytes == 0 {
		opts.TrimAboveBytes = 4 << 20
	}
	if n := len(opts.EncryptionKey); n != 0 && n != 32 {
		return nil, fmt.Errorf("open spool: encryption key is %d bytes, want 32", n)
	}
	opts.rewrites = &rewriteWatch{}
	s := &Spool{opts: opts, log: opts.Logger, now: opts.Clock, queues: map[string]*queueState{}}

	s.disk = &diskWatch{dir: opts.Dir, min: opts.MinFreeBytes, free: opts.FreeBytes, log: s.log, statfs: realStatfs}

	// Opening and draining a store writes (memtable files through mmaps):
	// on a full disk badger dies of SIGBUS. Below what they need, refuse
	// with a clear error; below the minimum, open drain-only (space.go).
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	drainOnly, serr := checkOpenSpace(opts)
	if serr != nil {
		return nil, fmt.Errorf("open spool: %w", serr)
	}

	if err := finishSalvage(opts.Dir); err != nil {
		return nil, fmt.Errorf("open spool: finish an interrupted salvage: %w", err)
	}
	err := s.openAndLoad()
	if err != nil {
		if refuseToMove(err) {
			return nil, fmt.Errorf("open spool: %w", err)
		}
		// Rebuild what still reads into a fresh store (salvage.go); only
		// when that fails too is the store set aside whole.
		s.log.Error("spool: the store does not open as it is; salvaging what still reads into a fresh store", "err", err)
		res, serr := salvageStore(opts, s.now())
		if serr == nil {
			s.salvage = &res
			if err2 := s.openAndLoad(); err2 != nil {
				serr = fmt.Errorf("open the salvaged store: %w", err2)
			}
		}
		if serr != nil {
			if refuseToMove(serr) {
				return nil, fmt.Errorf("open spool: %w; salvage: %w", err, serr)
			}
			s.salvage = nil
			q, qerr := quarantine(opts, fmt.Errorf("%w; salvage failed: %v", err, serr), s.now())
			if qerr != nil {
				return nil, fmt.Errorf("open spool: %w; salvage failed: %v; and moving it aside failed: %v", err, serr, qerr)
			}
			s.quar = q
			s.log.Error("STORE QUARANTINED: the store would not open nor be salvaged and was moved aside; starting with an empty store",
				"path", q.Path, "reason", q.Reason)
			if err := s.openAndLoad(); err != nil {
				return nil, fmt.Errorf("open spool after quarantine: %w", err)
			}
		}
	}
	if drainOnly {
		s.logDrainOnly()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ops = make(chan *op, 1024)
	s.kick = make(chan struct{}, 1)
	s.dedupScan = make(chan struct{}, 1)
	s.dedupWant.Store(int64(s.dedupMinKeys()))
	s.beginDedupFilter() // before the committer runs: every key it stages is added
	// The trim loop runs until badger is closed: closing waits for the
	// compaction under way, which maps tables all the same (a 0.5 s stop
	// after requests of 100 peaked at 58 MiB of mapped pages untrimmed).
	s.trimCtx, s.trimStop = context.WithCancel(context.Background())
	s.trimWG.Add(1)
	go s.trimLoop()
	s.wg.Add(4)
	go s.commitLoop()
	go s.gcLoop()
	go s.checkpointLoop()
	go s.dedupLoop()
	return s, nil
}

// refuseToMove: errors that leave the store where it is, untouched, and
// the agent stopped (another process holds it, another key, a newer
// format, no permission).
func refuseToMove(err error) bool {
	return errors.Is(err, ErrLocked) || errors.Is(err, ErrKeyMismatch) || errors.Is(err, ErrNewerFormat) || errors.Is(err, os.ErrPermission)
}

// storeFormat is the layout of what this code writes, recorded in the
// store under formatKey by the first commit after Open (in the same
// transaction as whatever that commit writes): none or 1, one record per
// queue entry; 2, entries appended together in chunks (codec.go). A
// store recorded in a newer format is refused at Open and left as it is:
// an agent that misread a newer layout would take its values for damage
// and set them aside, and that loses them.
const storeFormat = 2

var formatKey = []byte("m\x00format")

// openAndLoad opens badger and reads the queues' metadata. Metadata that
// does not decode is damage like a table that does not open: the caller
// quarantines the store either way.
func (s *Spool) openAndLoad() error {
	db, err := openDB(s.opts)
	if err != nil {
		return err
	}
	s.db = db
	j, rec, err := recoverJournal(db, s.opts, s.now(), s.salvage != nil, func() { s.kickCheckpoint() })
	if err != nil {
		db.Close()
		s.db = nil
		return err
	}
	if rec.replayed > 0 {
		s.log.Warn("spool: replayed the journal's acknowledged writes after an unclean stop", "records", rec.replayed)
	}
	if rec.torn != nil {
		s.log.Warn("spool: the journal ends in bytes that do not read as a record: a write the crash cut, never acknowledged (damage to the last record is told apart and reported, except in a journal written before version 2 or where both its head and its end are damaged)",
			"file", rec.torn.File, "offset", rec.torn.Offset, "bytes", rec.torn.End-rec.torn.Offset)
	}
	if rec.report != nil {
		logDamage(s.log, *rec.report)
	}
	if sv := s.salvage; sv != nil {
		r := DamageReport{At: s.now().UTC(), Found: "store salvage at start-up", Spans: sv.spans,
			EntriesLost: rec.entriesLost, SetAside: sv.moved, CountUnknown: sv.unknown}
		for kind, n := range sv.lostKeys {
			if kind != "queue entries (chunks)" && kind != "dead letters" {
				r.OtherKeysLost += n
			}
		}
		r.Message = fmt.Sprintf("the store was damaged and rebuilt from what still reads (%d keys); %d queue entries and %d other keys could not be read; the damaged store is kept at %s",
			sv.keys, r.Lost(), r.OtherKeysLost, sv.moved)
		if sv.unknown {
			r.Message += "; whole files did not read, and what they held is not counted"
		}
		if len(r.Spans) > maxReportSpans {
			r.Spans = append(r.Spans[:maxReportSpans:maxReportSpans], DamagedSpan{What: fmt.Sprintf("and %d more", len(sv.spans)-maxReportSpans)})
		}
		err := db.Update(func(txn *badger.Txn) error { return putDamageReport(txn, r) })
		if err == nil {
			err = syncStore(s.opts.Dir) // the report outlives a crash now
		}
		if err != nil {
			db.Close()
			s.db = nil
			return fmt.Errorf("store damage report: %w", err)
		}
		logDamage(s.log, r)
	}
	s.replayed = rec.replayed
	if s.damage, err = loadDamageReports(db); err != nil {
		db.Close()
		s.db = nil
		return fmt.Errorf("read damage reports: %w", err)
	}
	s.jnl = j
	s.queues = map[string]*queueState{}
	if err := s.load(); err != nil {
		db.Close()
		s.db = nil
		return err
	}
	return nil
}

func badgerOptions(o Options) badger.Options {
	var logger badger.Logger // nil: badger logs nothing
	if o.rewrites != nil {
		logger = o.rewrites
	}
	bo := badger.DefaultOptions(o.Dir).
		// Durability comes from the journal (package journal): one fdatasync
		// per commit instead of badger's two msyncs.
		WithSyncWrites(false).
		// Badger logs nothing of ours but which value log a GC rewrites
		// (gc_rescue.go).
		WithLogger(logger).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		// Memory: a sidecar budget, not a database server's.
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		// Level 0 is compacted into the level below once it holds
		// levelZeroTables tables.
		WithNumLevelZeroTables(levelZeroTables).
		WithNumLevelZeroTablesStall(8).
		// Compactions hold a table builder (about twice the table size)
		// per parallel sub-compaction in Go memory: 1 MiB tables instead
		// of 2 took about 10 MiB off the peak of a 1M-action fill.
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(8 << 20).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		// Payloads go to the value log (written once, reclaimed whole files
		// at a time as a FIFO drains); the LSM keeps keys and pointers, so
		// compactions stay small.
		WithValueThreshold(valueThreshold).
		// Badger reads the newest value log whole when it opens (to find
		// where it ends), through its mapping: with 64 MiB files the first
		// start after a 1M-action fill peaked at 119-123 MiB, and a drain
		// from it at 128-132 MiB (VmHWM). With 32 MiB files both stayed
		// at 73 and 91 MiB, at the same intake rate (BENCHMARKS.md,
		// session 9).
		WithValueLogFileSize(cmp.Or(o.valueLogFileSize, 32<<20)).
		WithBlockSize(4 << 10).
		// A value-log entry whose checksum fails reads as missing (badger
		// logs the error and returns no value), which the record decoder
		// rejects. Without this a flipped bit in a payload is handed out
		// as if it were the payload.
		WithVerifyValueChecksum(true)
	if len(o.EncryptionKey) > 0 {
		// Encryption needs caches for decrypted blocks and indices.
		bo = bo.WithEncryptionKey(o.EncryptionKey).
			WithEncryptionKeyRotationDuration(30 * 24 * time.Hour).
			WithIndexCacheSize(4 << 20).
			WithBlockCacheSize(4 << 20)
	}
	return bo
}

// openDB opens badger, turning its panics into errors (a corrupt file can
// make it panic rather than return one) and its errors into our sentinels.
func openDB(o Options) (db *badger.DB, err error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if removed, err := removeEmptyLogs(o.Dir); err != nil {
		return nil, err
	} else if len(removed) > 0 {
		o.Logger.Warn("spool: removed empty log files left by a power cut during a start; they held no data",
			"files", removed)
	}
	// Damaged tables are found here, where a panic can be recovered; so
	// is damage badger would cut off the logs as if it were a torn tail.
	tv, err := verifyTables(o)
	if err != nil {
		return nil, err
	}
	if err := inspectStoreLogs(o, tv); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked while opening: %v\n%s", r, debug.Stack())
		}
	}()
	db, err = badger.Open(badgerOptions(o))
	if err != nil {
		return nil, classifyOpenError(o.Dir, err)
	}
	return db, nil
}

func classifyOpenError(dir string, err error) error {
	msg := err.Error()
	switch {
	case containsAny(msg, "Cannot acquire directory lock", "resource temporarily unavailable"):
		return fmt.Errorf("%w: %v", ErrLocked, err)
	case errors.Is(err, badger.ErrEncryptionKeyMismatch) || containsAny(msg, "Encryption key mismatch"):
		if keyRegistryDamaged(dir) {
			return fmt.Errorf("key registry is damaged (badger: %v)", err)
		}
		return fmt.Errorf("%w: %v", ErrKeyMismatch, err)
	}
	return err
}

// load reads each queue's metadata.
func (s *Spool) load() error {
	return s.db.View(func(txn *badger.Txn) error {
		s.format = 0
		switch it, err := txn.Get(formatKey); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read the store's format: %w", err)
		default:
			v, err := it.ValueCopy(nil)
			if err != nil || len(v) != 1 {
				return fmt.Errorf("read the store's format: %q, %v", v, err)
			}
			if s.format = int(v[0]); s.format > storeFormat {
				return fmt.Errorf("%w: format %d, and this agent knows formats up to %d: run the newer agent, or move the store aside to start empty",
					ErrNewerFormat, s.format, storeFormat)
			}
		}
		for _, q := range s.opts.Queues {
			st := &queueState{name: q, inflight: map[uint64]int64{}}
			it, err := txn.Get(metaKey(q))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				// A new queue numbers its entries from 1: DeadLetters pages
				// with "seq > after", so after=0 must cover every entry.
				st.meta = meta{Head: 1, Tail: 1}
			case err != nil:
				return fmt.Errorf("read metadata of %s: %w", q, err)
			default:
				v, err := it.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("read metadata of %s: %w", q, err)
				}
				if st.meta, err = decodeMeta(v); err != nil {
					return fmt.Errorf("queue %s: %w", q, err)
				}
			}
			st.next = st.meta.Head
			s.queues[q] = st
		}
		return nil
	})
}

// Quarantine reports the store moved aside at Open, or nil.
func (s *Spool) Quarantine() *QuarantineInfo { return s.quar }

// Close stops the committer after it has committed everything queued, then
// closes the store. It is safe to call more than once.
func (s *Spool) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.ops) // the committer drains what is queued, then exits
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		s.cancel()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("close spool: %w", ctx.Err())
			<-done // badger must not be closed under a running writer
		}
		version := s.db.MaxVersion() // what the checkpoint below covers
		cerr := s.db.Close()
		s.trimStop()
		s.trimWG.Wait()
		if cerr != nil && err == nil {
			err = fmt.Errorf("close spool: %w", cerr)
		}
		// A clean close leaves nothing to replay: badger's files are
		// synced and the journal is checkpointed and emptied.
		clean := cerr == nil && s.jnl.Failed() == nil
		if clean {
			if serr := syncStore(s.opts.Dir); serr != nil {
				clean = false
				s.log.Error("spool: sync at close failed; the journal is kept for the next start", "err", serr)
			} else if merr := s.jnl.MarkCheckpoint(s.jnl.Covered(), version); merr != nil {
				clean = false
				s.log.Error("spool: checkpoint at close failed; the journal is kept for the next start", "err", merr)
			}
		}
		if jerr := s.jnl.Close(clean); jerr != nil && err == nil {
			err = fmt.Errorf("close spool: %w", jerr)
		}
	})
	return err
}

// StoreBytes is the disk space the store's files take now (allocated
// blocks: badger's own size figure is refreshed only once a minute, and
// its preallocated files are sparse).
func (s *Spool) StoreBytes() int64 {
	return dirBytes(s.opts.Dir) + dirBytes(filepath.Join(s.opts.Dir, journalDirName))
}

func (s *Spool) queue(name string) (*queueState, error) {
	q, ok := s.queues[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	return q, nil
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
