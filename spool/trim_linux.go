//go:build linux

package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Badger writes the value log, the memtables' write-ahead logs and new
// tables through MAP_SHARED mmaps, and reads tables through them. Every page
// it touches stays mapped into the process until the file is closed or
// deleted: the process's RSS (RssFile) grows with the backlog, about the
// size of everything spooled. Those pages are page cache, which the kernel
// can reclaim, but they count in RSS (what operators, and the OOM killer's
// score, look at).
//
// trimLoop asks the kernel to reclaim them: madvise(MADV_PAGEOUT) on the
// mappings of the store's files, found in /proc/self/maps, right after
// writing back their dirty pages; the next read of a page faults it back
// in. Badger writes unsynced behind the journal (package journal), and the
// kernel does not page out dirty pages: without the write-back, pages
// written since the last checkpoint stayed resident (a file RSS of 62 MiB
// and a VmHWM of 135.8 MiB in a run of requests of 100 flat out). PAGEOUT is
// used rather than MADV_DONTNEED because it is harmless on any memory: if a
// mapping listed in /proc/self/maps is unmapped and its addresses reused by
// other memory before the madvise call, DONTNEED would zero that memory,
// PAGEOUT only pages it out (and, without swap, leaves anonymous memory
// alone). Linux 5.4 or later; on older kernels the loop stops quietly.
//
// A table's index and bloom filter, at the end of its file, are not paged
// out: badger reads them in place through the mapping for every lookup
// (the duplicate check of every append), and paging them out made the next
// lookups fault each of them back in from disk, one after the other, in
// the committer: stalls of 30-80 ms after each trim. They are a few percent
// of a table.
func (s *Spool) trimLoop() {
	defer s.trimWG.Done()
	if s.opts.TrimInterval < 0 {
		return
	}
	dir, err := filepath.Abs(s.opts.Dir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		s.log.Warn("spool: not trimming mapped pages", "err", err)
		return
	}
	// Check often, trim when the mapped pages passed the threshold or a
	// whole interval went by (pages of deleted files and of reads count
	// too, and are not worth measuring one by one). A check is one short
	// read of /proc/self/statm; a compaction maps tens of MiB of tables
	// within a few checks.
	check := min(s.opts.TrimInterval, 25*time.Millisecond)
	t := time.NewTicker(check)
	defer t.Stop()
	// The baseline is what stays resident right after a trim (the
	// binary's own code pages, mostly): growth past it is the store's.
	last := time.Now()
	base, _ := residentFileBytes()
	keep := tableIndexes{}
	for {
		select {
		case <-s.trimCtx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) < s.opts.TrimInterval {
			if n, err := residentFileBytes(); err != nil || n-base < s.opts.TrimAboveBytes {
				continue
			}
		}
		last = time.Now()
		// Tables first: their pages are clean (badger syncs a table it
		// writes, and compactions only read), so they go at once, without
		// waiting for the logs' write-back below (12 ms at the median, up to
		// 85 ms, under requests of 100), during which a compaction goes on
		// mapping more of them.
		_, err := trimMappings(dir, keep, trimTables)
		if err == nil {
			// The logs' pages written since they were last synced are
			// dirty, and the kernel does not page those out: write them
			// back first.
			writeBack(dir)
			_, err = trimMappings(dir, keep, trimLogs)
		}
		if err != nil {
			s.log.Info("spool: not trimming mapped pages", "err", err)
			return
		}
		if n, err := residentFileBytes(); err == nil {
			base = n
		}
	}
}

// residentFileBytes is the process's resident shared (file-backed and
// shmem) memory, from /proc/self/statm: one short read, cheap enough to do
// ten times a second.
func residentFileBytes() (int64, error) {
	var buf [128]byte
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil {
		return 0, err
	}
	// size resident shared text lib data dt
	fields := bytes.Fields(buf[:n])
	if len(fields) < 3 {
		return 0, errors.New("short /proc/self/statm")
	}
	pages, err := strconv.ParseInt(string(fields[2]), 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

var errNoPageout = errors.New("madvise(MADV_PAGEOUT) not supported")

// tableIndexes remembers where each table file's index begins (tables
// never change once written); 0: unknown, the whole table is paged out.
type tableIndexes map[string]int64

func (k tableIndexes) start(path string) int64 {
	if n, ok := k[path]; ok {
		return n
	}
	n := readIndexStart(path)
	if n > 0 {
		k[path] = n // a table still being written reads as 0: ask again next time
	}
	return n
}

// readIndexStart reads a table's footer. A badger table ends with
// [index][4: index length][index checksum][4: checksum length].
func readIndexStart(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	size := fi.Size()
	var b [4]byte
	if size < 8 {
		return 0
	}
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return 0
	}
	sumLen := int64(binary.BigEndian.Uint32(b[:]))
	if sumLen == 0 || sumLen > size-8 {
		return 0
	}
	if _, err := f.ReadAt(b[:], size-8-sumLen); err != nil {
		return 0
	}
	idxLen := int64(binary.BigEndian.Uint32(b[:]))
	idx := size - 8 - sumLen - idxLen
	if idxLen == 0 || idx <= 0 {
		return 0
	}
	return idx
}

// What trimMappings pages out.
const (
	trimTables = 1 << iota // .sst
	trimLogs               // .vlog and .mem
)

// trimMappings pages out the mappings of dir's tables (all of a table but
// its index, see trimLoop), value logs and memtable logs, as which says.
// It returns the bytes of address space advised. keep caches the tables'
// index sizes (nil: page out whole tables).
func trimMappings(dir string, keep tableIndexes, which int) (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	prefix := []byte(dir + "/")
	var total int64
	seen := map[string]bool{}
	defer func() {
		if which&trimTables == 0 {
			return
		}
		for name := range keep {
			if !seen[name] {
				delete(keep, name) // compacted away
			}
		}
	}()
	for line := range bytes.Lines(maps) {
		// start-end perms offset dev inode path
		i := bytes.Index(line, prefix)
		if i < 0 {
			continue
		}
		path := bytes.TrimSpace(line[i:])
		deleted := bytes.HasSuffix(path, []byte(" (deleted)"))
		name := string(bytes.TrimSuffix(path, []byte(" (deleted)")))
		ext := filepath.Ext(name)
		switch {
		case ext == ".sst" && which&trimTables != 0:
		case (ext == ".vlog" || ext == ".mem") && which&trimLogs != 0:
		default:
			continue
		}
		fields := bytes.Fields(line)
		a, b, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok || len(fields) < 3 {
			continue
		}
		start, err1 := strconv.ParseUint(string(a), 16, 64)
		end, err2 := strconv.ParseUint(string(b), 16, 64)
		off, err3 := strconv.ParseUint(string(fields[2]), 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || end <= start {
			continue
		}
		if ext == ".sst" && keep != nil && !deleted && off == 0 {
			seen[name] = true
			if idx := keep.start(name); idx > 0 {
				// Up to the page that holds the index's first byte.
				if at := (start + uint64(idx)) &^ uint64(os.Getpagesize()-1); at < end {
					end = max(at, start)
				}
			}
			if end == start {
				continue
			}
		}
		_, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
		switch e {
		case 0:
			total += int64(end - start)
		case unix.EINVAL:
			return total, errNoPageout
		default:
			// ENOMEM: unmapped meanwhile (a file deleted or shrunk).
		}
	}
	return total, nil
}

// writeBack writes the dirty pages of the files badger writes through mmaps
// to disk and waits for it (sync_file_range: no cache flush, no journal
// commit, so much lighter than the checkpoint's fsync; durability is the
// journal's and the checkpoint's business, this only makes the pages
// clean so they can be paged out).
func writeBack(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".vlog") && !strings.HasSuffix(name, ".mem") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		f.Close()
	}
}

// releasePages writes back and pages out everything of dir that is mapped
// (tables, value logs, memtable logs): for a salvage, which reads one
// store and writes another through mappings with no trim loop running.
func releasePages(dir string) {
	writeBack(dir)
	_, _ = trimMappings(dir, nil, trimTables|trimLogs)
}
