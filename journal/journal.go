// Package journal is the spool's write-ahead log: records appended to
// segment files and made durable with one fdatasync each, read back after
// a crash up to the last synced record, past damage (read.go), with spare
// segments written ahead of need and appended into with direct I/O
// (spare.go). It writes through a vfs.FS, so that power cuts and failing
// disks are proven on a file system in memory (journal_test.go). What a
// record holds is its writer's business (the spool's group commits,
// spool/mutations.go); the design notes below say how the spool uses it.
package journal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-agent/outpost/vfs"
)

// The journal is what makes a commit durable. Badger runs without
// SyncWrites: a synced badger commit is two flushes (the value log, then the
// memtable's write-ahead log, both through msync on mmaps: 0.3-0.35 ms here),
// while one write and fdatasync into a preallocated file takes about 0.12 ms.
// So the committer appends each group's writes (keys, values, deletes,
// expiry times) as one record to the journal and fdatasyncs it, then applies
// the group to badger unsynced, and only then answers the callers.
//
// The order is the write-ahead rule: badger is never ahead of the journal,
// not even in the page cache. Were it the other way round, a kill between
// the apply and the journal write would leave badger holding a commit that
// replay knows nothing of, and replaying the records before it would roll
// back the queue's counters under that commit's entries (a test of the real
// binary killed mid-load caught exactly that).
//
// A spool may answer some commits before their sync (AppendUnsynced:
// spool.Options.PutSyncWithin, for decision records): their records are
// written through the page cache and applied to badger at once (the spool
// answers them between the two), and a later Sync, Append or sync behind
// (SyncBehind: an fdatasync on a goroutine of its own while records go on
// being written, its result taken by FinishBehind) makes them durable
// with everything written before it. A power cut can then leave badger
// holding writes of records the journal lost; the spool allows that only
// for commits of plain keys (never queue entries or their counters), whose
// presence without the journal is true to what was answered. A checkpoint
// covers only synced records (Covered).
//
// A checkpoint makes badger's own files durable (fsync of every file badger
// writes through an mmap: value logs, memtable logs, MANIFEST) and records
// the last journal sequence number it covers in CHECKPOINT; segments wholly
// covered are deleted. Tables (.sst) are synced by badger when it writes
// them, whatever SyncWrites says.
//
// After a crash, Open replays the records after the checkpoint into badger,
// in order. Replaying is idempotent: every record is a list of plain sets
// and deletes, and badger's state after a crash holds everything up to the
// checkpoint and nothing beyond the journal's last record, so applying the
// records after the checkpoint again yields the state of the last record.
//
// One thing badger does writes outside the committer: value-log GC moves
// live values to the current value log and then deletes the old file. The
// GC loop holds the deletion back (badger defers it while an iterator is
// open) until a checkpoint has made the moved values durable; see gc.go.
//
// Segment file: a 64-byte header (magic, version, flags, first sequence
// number, a random 16-byte salt, CRC), then records: length (4 bytes), CRC-32C
// of sequence number and body (4), sequence number (8), body, and (version
// 2) an end: the CRC again (4) and a CRC-32C of the record's first 16 bytes
// (4). The end is what tells a record written whole and damaged since from
// one a crash cut (read.go); version 1 segments, without it, are still read.
// A segment is
// either a spare, zero-filled ahead of need and written with direct I/O
// (spare.go), or, when no spare is ready, preallocated so an append
// changes no file size and written through the page cache. Records are
// followed by zeros; how a segment is read back, torn tails and damage
// told apart, is in read.go. With an encryption key each body is sealed
// with AES-256-GCM under a key derived from the spool's key and the segment's salt, the
// sequence number as nonce.

const (
	magic      = "OPJ1"
	HeaderSize = 64
	RecordHead = 16
	// RecordEnd is what follows a record's body in a version 2 segment.
	RecordEnd = 8
	// Version is the segment version written; versions up to it are read.
	Version        = 2
	SegmentSize    = 16 << 20
	CheckpointName = "CHECKPOINT"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrJournal marks a journal that cannot be read back in a way that is not
// damage to what it holds: a segment in a newer version, or one whose
// intact records do not authenticate (another key). Damaged records and
// segments are not errors: they are skipped and reported (read.go).
var ErrJournal = errors.New("journal unreadable")

// Journal appends records to a directory of segments. Append and the
// methods it calls belong to one goroutine (the spool's committer); the
// others are safe to call from any.
type Journal struct {
	fs  vfs.FS
	dir string
	key []byte // nil: records in clear

	// Owned by the appending goroutine.
	f       vfs.File
	off     int64
	aead    cipher.AEAD
	failed  error
	lastSeq uint64 // last sequence number appended
	rec     []byte // reused record buffer (newRecord)
	buf     []byte // reused buffer for sealed records
	// direct: f is a spare segment, written in whole blocks (with direct
	// I/O unless Options.Buffered), and tail holds its bytes from the
	// start of off's block to off (spare.go).
	direct bool
	tail   []byte
	dbuf   []byte // reused aligned buffer for direct writes
	spare  spareState

	// unsynced: records appended by AppendUnsynced that no sync covers yet
	// (atomic: tests drive a group commit beside the spool's committer).
	unsynced atomic.Bool
	// buffered: never direct I/O (Options.Buffered).
	buffered bool
	// behind: a sync begun by SyncBehind that FinishBehind has not taken
	// the result of yet (the appending goroutine's, like every field here
	// but mu's).
	behind *behindSync

	mu      sync.Mutex
	applied uint64   // last sequence number applied to badger
	synced  uint64   // last sequence number known durable
	sealed  []string // segments no longer written, oldest first
	current string
	ckpt    uint64 // covered by the last checkpoint

	onSeal func() // called when a segment is sealed (a checkpoint can free it)

	segmentSize int64
}

// Options configure a journal.
type Options struct {
	// FS is the file system (default vfs.Default).
	FS vfs.FS
	// Dir holds the segments and CHECKPOINT.
	Dir string
	// Key (32 bytes) seals every record with AES-256-GCM; nil: in clear.
	Key []byte
	// OnSeal, when set, hears that a segment was sealed: a checkpoint can
	// free it.
	OnSeal func()
	// Buffered writes every segment through the page cache, spares too
	// (no direct I/O): a record appended by AppendUnsynced is then a copy
	// into memory, not a device write. For spools that answer some commits
	// before their sync.
	Buffered bool

	// SegmentSize is the size of each segment, a multiple of 4 KiB:
	// SegmentSize (16 MiB) when 0. Smaller ones are for tests, which then
	// cross segments within a few records, and read less at each start.
	SegmentSize int64
}

// New returns a journal that appends after record last (the last one read
// back, or checkpointed), and keeps a complete spare segment left by an
// earlier run.
func New(o Options, last uint64) (*Journal, error) {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = SegmentSize
	}
	if o.SegmentSize < 4<<10 || o.SegmentSize%(4<<10) != 0 {
		return nil, fmt.Errorf("journal: segment size %d is not a positive multiple of 4 KiB", o.SegmentSize)
	}
	j := &Journal{fs: o.FS, dir: o.Dir, key: bytes.Clone(o.Key), lastSeq: last, applied: last, synced: last, ckpt: last, onSeal: o.OnSeal,
		segmentSize: o.SegmentSize, buffered: o.Buffered}
	if err := j.adoptSpare(); err != nil {
		return nil, err
	}
	return j, nil
}

// Failed is the error that stopped appends for good, or nil.
func (j *Journal) Failed() error { return j.failed }

// SegmentName is the file name of the segment whose first record is first.
func SegmentName(first uint64) string { return fmt.Sprintf("%016x.jnl", first) }

// newRecord returns a buffer for the next record: room for its head, then
// the caller appends the body. The buffer is reused from record to record
// (a group's writes can be megabytes: growing a fresh one each time showed
// in profiles).
func (j *Journal) NewRecord() []byte {
	if cap(j.rec) < RecordHead || cap(j.rec) > 16<<20 {
		j.rec = make([]byte, RecordHead, 64<<10)
	}
	return j.rec[:RecordHead]
}

// behindSync is a sync running on a goroutine of its own: it covers the
// records up to seq.
type behindSync struct {
	seq  uint64
	done chan error
}

// SyncBehind begins a sync of every record written so far on a goroutine
// of its own and returns at once: the journal goes on taking records while
// the disk works. The result comes on Behind's channel and is given to
// FinishBehind, which marks those records durable. One runs at a time:
// false (nothing begun) while one runs, when nothing is unsynced, or when
// the journal failed. Sync, Append and the start of a segment may run
// while one does (a sync covers what was written before it); a segment is
// closed only after its sync behind has finished.
func (j *Journal) SyncBehind() bool {
	if j.behind != nil || !j.unsynced.Load() || j.failed != nil || j.f == nil {
		return false
	}
	b := &behindSync{seq: j.lastSeq, done: make(chan error, 1)}
	f := j.f
	go func() { b.done <- f.Datasync() }()
	j.behind = b
	return true
}

// Behind is the channel the running sync behind reports on, nil when none
// runs.
func (j *Journal) Behind() <-chan error {
	if j.behind == nil {
		return nil
	}
	return j.behind.done
}

// FinishBehind takes the result of the sync behind (received from Behind):
// a failed sync fails the journal, as Sync's does, and is returned.
func (j *Journal) FinishBehind(err error) error {
	b := j.behind
	j.behind = nil
	if b == nil {
		return nil
	}
	if err != nil {
		if j.failed == nil {
			j.failed = fmt.Errorf("journal: sync: %w", err)
		}
		return j.failed
	}
	j.mu.Lock()
	j.synced = max(j.synced, b.seq)
	j.mu.Unlock()
	if j.lastSeq == b.seq {
		j.unsynced.Store(false)
	}
	j.maybePrepareSpare()
	return nil
}

// waitBehind waits for the running sync behind, if any, and takes its
// result.
func (j *Journal) waitBehind() error {
	if j.behind == nil {
		return nil
	}
	return j.FinishBehind(<-j.behind.done)
}

// Append makes rec (from NewRecord, body appended) durable as the
// next record and returns its sequence number when it is on disk, with
// every record appended before it. A failed write or sync fails the
// journal for good: whether the record reached the disk is unknown, and a
// later success must not be taken as covering it.
func (j *Journal) Append(rec []byte) (uint64, error) {
	seq, err := j.write(rec)
	if err != nil {
		return 0, err
	}
	if err := j.Sync(); err != nil {
		return 0, err
	}
	return seq, nil
}

// AppendUnsynced writes rec as the next record without waiting for the
// disk: it is in the file (a kill of the process cannot lose it) but a
// power cut can, until the next Sync or Append. Records are durable in
// order: a sync covers every record written before it.
func (j *Journal) AppendUnsynced(rec []byte) (uint64, error) {
	seq, err := j.write(rec)
	if err != nil {
		return 0, err
	}
	j.unsynced.Store(true)
	j.maybePrepareSpare()
	return seq, nil
}

// Positions reports the last record applied to the store and the last
// one known durable (for tests and monitoring; safe from any goroutine).
func (j *Journal) Positions() (applied, synced uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.applied, j.synced
}

// Unsynced reports whether records were appended that no sync covers.
func (j *Journal) Unsynced() bool { return j.unsynced.Load() }

// Sync makes every record appended so far durable (fdatasync of the
// current segment: a segment is synced before the next one starts).
func (j *Journal) Sync() error {
	if j.failed != nil {
		return j.failed
	}
	if j.f != nil {
		if err := j.f.Datasync(); err != nil {
			j.failed = fmt.Errorf("journal: sync: %w", err)
			return j.failed
		}
	}
	j.unsynced.Store(false)
	j.mu.Lock()
	j.synced = j.lastSeq
	j.mu.Unlock()
	j.maybePrepareSpare()
	return nil
}

// write writes rec as the next record, in a new segment if it does not fit.
func (j *Journal) write(rec []byte) (uint64, error) {
	if j.failed != nil {
		return 0, j.failed
	}
	j.rec = rec[:0]
	body := rec[RecordHead:]
	seq := j.lastSeq + 1
	need := int64(RecordHead + len(body) + RecordEnd + 32)
	if j.f == nil || (j.off+need > j.segmentSize && j.off > HeaderSize) {
		if err := j.startSegment(seq); err != nil {
			// Nothing was written (the current segment stays current):
			// this commit fails, the next one tries again.
			return 0, fmt.Errorf("journal: start segment: %w", err)
		}
	}
	out := rec
	if j.aead != nil {
		j.buf = append(j.buf[:0], rec[:RecordHead]...)
		binary.BigEndian.PutUint64(j.buf[8:16], seq)
		j.buf = j.aead.Seal(j.buf, nonce(seq), body, j.buf[8:16])
		out = j.buf
	}
	binary.BigEndian.PutUint64(out[8:16], seq)
	binary.BigEndian.PutUint32(out[0:4], uint32(len(out)-RecordHead))
	binary.BigEndian.PutUint32(out[4:8], crc32.Checksum(out[8:], castagnoli))
	out = appendEnd(out, out[:RecordHead])
	if j.aead != nil {
		j.buf = out
	} else {
		j.rec = out[:0]
	}
	if j.direct {
		if err := j.writeDirect(out); err != nil {
			j.failed = err
			return 0, err
		}
	} else if _, err := j.f.WriteAt(out, j.off); err != nil {
		j.failed = fmt.Errorf("journal: write: %w", err)
		return 0, j.failed
	}
	j.off += int64(len(out))
	j.lastSeq = seq
	return seq, nil
}

// markApplied records that record seq is in badger.
func (j *Journal) MarkApplied(seq uint64) {
	j.mu.Lock()
	j.applied = seq
	j.mu.Unlock()
}

// fail stops all further appends: the store and the journal disagree.
func (j *Journal) Fail(err error) { j.failed = err }

// appendEnd appends a version 2 record's end to rec: head's CRC, and a
// CRC of head (the record's first 16 bytes).
func appendEnd(rec, head []byte) []byte {
	c := crc32.Checksum(head, castagnoli)
	rec = append(rec, head[4:8]...)
	return binary.BigEndian.AppendUint32(rec, c)
}

func nonce(seq uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

func segmentAEAD(key, salt []byte) (cipher.AEAD, error) {
	_, aead, err := segmentCipher(key, salt)
	return aead, err
}

// segmentCipher is a segment's block cipher, derived from the key and
// the segment's salt, and the GCM that seals its records with it.
func segmentCipher(key, salt []byte) (cipher.Block, cipher.AEAD, error) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("outpost spool journal v1"))
	m.Write(salt)
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	return block, aead, err
}

// unsealUnverified deciphers a sealed body (GCM: counter mode from the
// counter after the nonce's, then a 16-byte tag) without checking its tag:
// for a damaged record, to be read and never applied.
func unsealUnverified(block cipher.Block, seq uint64, sealed []byte) []byte {
	const tag = 16
	if len(sealed) < tag {
		return nil
	}
	iv := make([]byte, 16)
	copy(iv, nonce(seq))
	iv[15] = 2
	out := make([]byte, len(sealed)-tag)
	cipher.NewCTR(block, iv).XORKeyStream(out, sealed[:len(out)])
	return out
}

// startSegment closes the current segment (every record in it is synced)
// and starts a new one whose first record will be first. The new file and
// its directory entry are synced before any record goes in.
func (j *Journal) startSegment(first uint64) error {
	// The current file is closed below: a sync behind on it ends first.
	if err := j.waitBehind(); err != nil {
		return err
	}
	if j.unsynced.Load() {
		// A sync covers one file: the records still unsynced in this one
		// are made durable before any goes into the next.
		if err := j.Sync(); err != nil {
			return err
		}
	}
	name := SegmentName(first)
	path := filepath.Join(j.dir, name)
	hdr := make([]byte, HeaderSize)
	copy(hdr, magic)
	hdr[4] = Version
	var aead cipher.AEAD
	if j.key != nil {
		hdr[5] = 1 // encrypted
		if _, err := rand.Read(hdr[16:32]); err != nil {
			return err
		}
		var err error
		if aead, err = segmentAEAD(j.key, hdr[16:32]); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint64(hdr[8:16], first)
	binary.BigEndian.PutUint32(hdr[32:36], crc32.Checksum(hdr[:32], castagnoli))
	// A spare is written in whole blocks (writeDirect), with direct I/O
	// or, Buffered, through the page cache: a whole page written needs no
	// read of the spare's page from the disk first, as a part of one
	// would (one read for every few records, 13 µs a record on average
	// here).
	f, direct := j.openSpareSegment(path)
	var err error
	if direct {
		// The spare's blocks are written already: the header's block is
		// rewritten, and durable once synced.
		block := alignedBytes(directAlign)
		copy(block, hdr)
		_, err = f.WriteAt(block, 0)
	} else {
		if f, err = j.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600); err != nil {
			return err
		}
		err = f.Preallocate(j.segmentSize)
		if err == nil {
			_, err = f.WriteAt(hdr, 0)
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = j.fs.SyncDir(j.dir)
	}
	if err != nil {
		f.Close()
		j.fs.Remove(path)
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.off, j.aead, j.direct = f, HeaderSize, aead, direct
	j.tail = append(j.tail[:0], hdr...)
	j.mu.Lock()
	if j.current != "" {
		j.sealed = append(j.sealed, j.current)
	}
	sealed := len(j.sealed) > 0
	j.current = name
	j.mu.Unlock()
	if sealed && j.onSeal != nil {
		j.onSeal()
	}
	return nil
}

// Covered reports the last sequence number that a checkpoint starting now
// covers: the last record applied to badger and durable in the journal (a
// checkpoint must not claim a record a power cut can still take from the
// journal: replay would find the journal ending before it).
func (j *Journal) Covered() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return min(j.applied, j.synced)
}

// checkpointed reports the last sequence number the last checkpoint covers.
func (j *Journal) Checkpointed() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ckpt
}

// markCheckpoint records that badger's files hold everything up to seq
// (and every badger version up to version, read before the sync) and
// deletes the sealed segments that it covers. The caller has synced badger.
func (j *Journal) MarkCheckpoint(seq, version uint64) error {
	j.mu.Lock()
	if seq <= j.ckpt {
		j.mu.Unlock()
		return nil
	}
	j.mu.Unlock()
	if err := WriteCheckpoint(j.fs, j.dir, seq, version); err != nil {
		return err
	}
	j.mu.Lock()
	j.ckpt = seq
	var drop []string
	// A sealed segment ends where the next one starts.
	for len(j.sealed) > 0 {
		next := j.current
		if len(j.sealed) > 1 {
			next = j.sealed[1]
		}
		first, _ := SegmentFirst(next)
		if first-1 > seq {
			break
		}
		drop = append(drop, j.sealed[0])
		j.sealed = j.sealed[1:]
	}
	j.mu.Unlock()
	return j.removeSegments(drop)
}

// close closes the current segment. With everything checkpointed (a clean
// close) the segments are deleted.
func (j *Journal) Close(checkpointed bool) error {
	err := j.waitBehind()
	if err == nil && j.unsynced.Load() && !checkpointed {
		err = j.Sync() // before stopSpare: a sync may start a spare's preparation
	}
	j.stopSpare()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	if err != nil {
		return err
	}
	if !checkpointed {
		return nil
	}
	j.mu.Lock()
	names := j.sealed
	if j.current != "" {
		names = append(names, j.current)
	}
	j.sealed, j.current = nil, ""
	j.mu.Unlock()
	return j.removeSegments(names)
}

// removeSegments deletes segment files; one already gone is fine.
func (j *Journal) removeSegments(names []string) error {
	for _, name := range names {
		if err := j.fs.Remove(filepath.Join(j.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// SegmentFirst is the first sequence number a segment's name says.
func SegmentFirst(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".jnl")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	return n, err == nil
}

// CHECKPOINT: the last journal sequence number the store's files hold
// (8 bytes), the newest badger version they hold (8; see inspectLogs), a
// CRC-32C of both (4). Stores written before the version was recorded have
// 12 bytes, without it.
func WriteCheckpoint(fs vfs.FS, dir string, seq, version uint64) error {
	var b [20]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint64(b[8:16], version)
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	tmp := filepath.Join(dir, CheckpointName+".tmp")
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, filepath.Join(dir, CheckpointName))
	}
	if err == nil {
		err = fs.SyncDir(dir)
	}
	return err
}

// ReadCheckpoint reads CHECKPOINT: 0, 0 when there is none.
func ReadCheckpoint(fs vfs.FS, dir string) (seq, version uint64, err error) {
	b, err := fs.ReadFile(filepath.Join(dir, CheckpointName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	switch {
	case len(b) == 12 && crc32.Checksum(b[:8], castagnoli) == binary.BigEndian.Uint32(b[8:]):
		return binary.BigEndian.Uint64(b[:8]), 0, nil
	case len(b) == 20 && crc32.Checksum(b[:16], castagnoli) == binary.BigEndian.Uint32(b[16:]):
		return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16]), nil
	}
	return 0, 0, fmt.Errorf("%s does not decode", CheckpointName)
}
