package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/outpost-agent/outpost/vfs"
)

// Spare segments. A record appended into blocks that the file system has
// already written is cheaper to make durable than one into fresh or
// preallocated blocks: no extent changes to commit with the data, and, with
// direct I/O, no page cache to write back. BenchmarkJournalAppend (8 KB
// records): 115-130 µs into a spare against 226-235 µs into a preallocated
// segment; beside two busy loops (the CPU contention of a loaded agent)
// 156-245 µs against 386-440 µs (BENCHMARKS.md, session 11).
//
// So once the current segment is a quarter full, a goroutine writes the
// next one ahead of need: a file named spare, 16 MiB of zeros written with
// direct I/O and fsynced, then renamed into place and the directory
// synced. The next segment is that file, renamed to its sequence name,
// and written with direct I/O: each append rewrites the block it starts in
// from the block's start (what the segment already holds there, kept in
// memory), adds the record, and pads it with zeros to a whole block, then
// fdatasyncs as before. The zeros after the last record end the segment for readers, as
// in a preallocated one. Without a spare ready (the first segment after
// Open, a preparation that failed or lagged, a file system refusing
// O_DIRECT) a segment is preallocated and written through the page cache
// as before. A spare left at a stop is used by the next Open.
//
// The price: every segment's 16 MiB is written twice (zeros, then records),
// and a spare takes 16 MiB of disk while it waits.

const (
	// SpareName is a spare segment ready to be used.
	SpareName    = "spare"
	spareTmpName = "spare.tmp"
	// directAlign is the offset, length and memory alignment of direct
	// writes: the page size, a multiple of any disk's logical block.
	directAlign = 4096
)

// spareState is the committer's view of the next segment being prepared.
type spareState struct {
	ready   bool          // a complete spare is on disk
	pending chan error    // the preparation under way reports here, or nil
	stop    chan struct{} // closed to abandon the preparation
	off     bool          // direct I/O refused here: no more preparations
}

// collectSpare takes the result of a finished preparation, if any.
func (j *Journal) collectSpare(wait bool) {
	if j.spare.pending == nil {
		return
	}
	var err error
	if wait {
		err = <-j.spare.pending
	} else {
		select {
		case err = <-j.spare.pending:
		default:
			return
		}
	}
	j.spare.pending, j.spare.stop = nil, nil
	switch {
	case err == nil:
		j.spare.ready = true
	case errors.Is(err, vfs.ErrNoDirect):
		j.spare.off = true
	}
	// Any other failure (a full disk, say) is tried again for the next
	// segment; until then segments are preallocated.
}

// maybePrepareSpare starts preparing the next segment once the current one
// is a quarter full. An idle agent, and a short test, never writes one.
func (j *Journal) maybePrepareSpare() {
	j.collectSpare(false)
	if j.spare.off || j.spare.ready || j.spare.pending != nil || j.off < j.segmentSize/4 {
		return
	}
	j.spare.pending = make(chan error, 1)
	j.spare.stop = make(chan struct{})
	go func(done chan<- error, stop <-chan struct{}) {
		done <- prepareSpare(j.fs, j.dir, j.segmentSize, stop)
	}(j.spare.pending, j.spare.stop)
}

// stopSpare abandons a preparation under way and waits for it to end.
func (j *Journal) stopSpare() {
	if j.spare.pending != nil {
		close(j.spare.stop)
		j.collectSpare(true)
	}
}

// prepareSpare writes dir's spare segment: zeros in written blocks, durable
// under its final name.
func prepareSpare(fs vfs.FS, dir string, size int64, stop <-chan struct{}) (err error) {
	tmp := filepath.Join(dir, spareTmpName)
	f, err := fs.OpenDirect(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			fs.Remove(tmp)
		}
	}()
	zeros := alignedBytes(int(min(1<<20, size)))
	for off := int64(0); off < size; off += int64(len(zeros)) {
		select {
		case <-stop:
			return errors.New("spare segment abandoned")
		default:
		}
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return vfs.DirectErr(err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	if err := fs.Rename(tmp, filepath.Join(dir, SpareName)); err != nil {
		return err
	}
	return fs.SyncDir(dir)
}

// adoptSpare, at Open, keeps a complete spare left by an earlier run and
// removes an unfinished one.
func (j *Journal) adoptSpare() error {
	if err := j.fs.Remove(filepath.Join(j.dir, spareTmpName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	path := filepath.Join(j.dir, SpareName)
	fi, err := j.fs.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Size() == j.segmentSize:
		j.spare.ready = true
		return nil
	}
	return j.fs.Remove(path)
}

// openSpareSegment renames the spare to path and opens it for direct
// writes. ok is false when there is no spare to take, or taking it failed
// (the spare is then gone, and the caller makes a segment the other way).
func (j *Journal) openSpareSegment(path string) (f vfs.File, ok bool) {
	j.collectSpare(false)
	if !j.spare.ready {
		return nil, false
	}
	j.spare.ready = false
	spare := filepath.Join(j.dir, SpareName)
	// The committer is the journal directory's only writer, so nothing can
	// create path between this check and the rename (which would replace
	// it).
	if _, err := j.fs.Stat(path); !errors.Is(err, os.ErrNotExist) {
		j.fs.Remove(spare)
		return nil, false
	}
	if err := j.fs.Rename(spare, path); err != nil {
		j.fs.Remove(spare)
		return nil, false
	}
	open := j.fs.OpenDirect
	if j.buffered {
		open = j.fs.OpenFile
	}
	f, err := open(path, os.O_RDWR, 0o600)
	if err != nil {
		j.fs.Remove(path)
		return nil, false
	}
	return f, true
}

// writeDirect writes out at j.off of a direct segment: from the start of
// the block that holds j.off (j.tail is what the segment holds there)
// through out, zero-padded to a whole block.
func (j *Journal) writeDirect(out []byte) error {
	start := j.off &^ (directAlign - 1)
	end := j.off + int64(len(out))
	n := int((end - start + directAlign - 1) &^ (directAlign - 1))
	buf := j.dbuf
	if cap(buf) < n {
		buf = alignedBytes(max(n, 2*cap(buf)))
		if n <= maxDirectBuf {
			j.dbuf = buf
		}
	}
	buf = buf[:n]
	c := copy(buf, j.tail)
	c += copy(buf[c:], out)
	clear(buf[c:])
	if _, err := j.f.WriteAt(buf, start); err != nil {
		return fmt.Errorf("journal: write: %w", err)
	}
	j.tail = append(j.tail[:0], buf[end&^(directAlign-1)-start:end-start]...)
	return nil
}

// maxDirectBuf bounds the direct-write buffer kept between records, as
// newRecord bounds the record buffer.
const maxDirectBuf = 16 << 20

// alignedBytes returns n bytes whose first one is directAlign-aligned.
func alignedBytes(n int) []byte {
	b := make([]byte, n+directAlign)
	off := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[off : off+n : off+n]
}

// IsSpare reports whether name is a spare segment being prepared or ready:
// a file that holds no record.
func IsSpare(name string) bool { return name == SpareName || name == spareTmpName }
