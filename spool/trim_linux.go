//go:build linux

package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
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
// mappings of the store's files, found in /proc/self/maps. The data is on
// disk (SyncWrites); the next read of a page faults it back in. PAGEOUT is
// used rather than MADV_DONTNEED because it is harmless on any memory: if a
// mapping listed in /proc/self/maps is unmapped and its addresses reused by
// other memory before the madvise call, DONTNEED would zero that memory,
// PAGEOUT only pages it out (and, without swap, leaves anonymous memory
// alone). Linux 5.4 or later; on older kernels the loop stops quietly.
func (s *Spool) trimLoop() {
	defer s.wg.Done()
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
	// too, and are not worth measuring one by one).
	check := min(s.opts.TrimInterval, 100*time.Millisecond)
	t := time.NewTicker(check)
	defer t.Stop()
	// The baseline is what stays resident right after a trim (the
	// binary's own code pages, mostly): growth past it is the store's.
	last := time.Now()
	base, _ := residentFileBytes()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) < s.opts.TrimInterval {
			if n, err := residentFileBytes(); err != nil || n-base < s.opts.TrimAboveBytes {
				continue
			}
		}
		last = time.Now()
		if _, err := trimMappings(dir); err != nil {
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

// trimMappings pages out the mappings of dir's value logs, memtable logs
// and tables. It returns the bytes of address space advised.
func trimMappings(dir string) (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	prefix := []byte(dir + "/")
	var total int64
	for line := range bytes.Lines(maps) {
		// start-end perms offset dev inode path
		i := bytes.Index(line, prefix)
		if i < 0 {
			continue
		}
		path := bytes.TrimSpace(line[i:])
		switch filepath.Ext(string(bytes.TrimSuffix(path, []byte(" (deleted)")))) {
		case ".vlog", ".mem", ".sst":
		default:
			continue
		}
		rng, _, _ := bytes.Cut(line, []byte(" "))
		a, b, ok := bytes.Cut(rng, []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(a), 16, 64)
		end, err2 := strconv.ParseUint(string(b), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
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
