//go:build linux

package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestResidentFileBytes(t *testing.T) {
	n, err := residentFileBytes()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own code is file-backed and resident.
	if n <= 0 {
		t.Fatalf("resident file-backed bytes = %d, want > 0", n)
	}
}

// A burst of writes is trimmed long before TrimInterval when the mapped
// pages grow past TrimAboveBytes; with the threshold out of reach they stay.
func TestTrimEarlyPastThreshold(t *testing.T) {
	if _, err := trimMappings(os.TempDir(), nil, trimTables|trimLogs); err == errNoPageout {
		t.Skip("this kernel has no MADV_PAGEOUT (Linux 5.4+): nothing to test")
	}
	for _, tc := range []struct {
		name    string
		above   int64
		trimmed bool
	}{
		{"threshold reached", 1 << 20, true},
		{"threshold out of reach", 1 << 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, Queues: []string{"q"}, TrimInterval: time.Hour, TrimAboveBytes: tc.above})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			payload := make([]byte, 1024)
			for i := range 16 {
				recs := make([]Record, 500)
				for j := range recs {
					recs[j] = Record{Queue: "q", ID: fmt.Sprintf("r-%d-%d", i, j), Payload: payload}
				}
				if _, err := s.Append(context.Background(), recs); err != nil {
					t.Fatal(err)
				}
			}
			mapped := func() int64 {
				var kb int64
				for _, v := range rssByExt(dir) {
					kb += v
				}
				return kb << 10
			}
			wait := time.Second // enough for ten checks
			if tc.trimmed {
				wait = 3 * time.Second
			}
			deadline := time.Now().Add(wait)
			for mapped() >= 1<<20 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			got := mapped()
			if tc.trimmed && got >= 1<<20 {
				t.Fatalf("store mappings still hold %d bytes resident after %v", got, wait)
			}
			if !tc.trimmed && got < 4<<20 {
				t.Fatalf("store mappings hold only %d bytes resident: trimmed without reaching the threshold?", got)
			}
		})
	}
}

var touchSink byte

// Trimming pages out the tables' data blocks but keeps their indexes and
// bloom filters, which every lookup reads in place: the tables' resident
// pages after a trim are their index tails and no more. The tables are
// mapped by the test itself, after the store is closed, so no compaction
// reads them back in between the trim and the count.
func TestTrimKeepsTableIndexes(t *testing.T) {
	if _, err := trimMappings(os.TempDir(), nil, trimTables|trimLogs); err == errNoPageout {
		t.Skip("this kernel has no MADV_PAGEOUT (Linux 5.4+): nothing to test")
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Queues: []string{"q"}, TrimInterval: -1, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 32) // inline in the tables, not in the value log
	for i := range 40 {
		recs := make([]Record, 500)
		for j := range recs {
			recs[j] = Record{Queue: "q", ID: fmt.Sprintf("r-%d-%d", i, j), Payload: payload}
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) < 2 {
		t.Fatalf("%d tables after the writes, want at least 2", len(tables))
	}
	abs, _ := filepath.Abs(dir)
	var tails, sizes int64
	var maps [][]byte
	for _, f := range tables {
		fd, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := fd.Stat()
		if err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(fd.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		fd.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		maps = append(maps, m)
		idx := readIndexStart(f)
		if idx <= 0 || idx >= fi.Size() {
			t.Fatalf("%s: index at %d of %d bytes", f, idx, fi.Size())
		}
		tails += fi.Size() - idx
		sizes += fi.Size()
	}
	touch := func() {
		for _, m := range maps {
			for i := 0; i < len(m); i += os.Getpagesize() {
				touchSink += m[i]
			}
		}
	}
	touch()
	page := int64(os.Getpagesize())
	keep := tableIndexes{}
	advisedKeep, err := trimMappings(abs, keep, trimTables|trimLogs)
	if err != nil {
		t.Fatal(err)
	}
	if len(keep) != len(tables) {
		t.Fatalf("%d table indexes remembered, want %d", len(keep), len(tables))
	}
	// Every page of every index is still resident.
	var want int64 // what the kept trim leaves out of the advice
	for i, f := range tables {
		idx := keep[f]
		from := idx &^ (page - 1)
		want += int64(len(maps[i])+int(page)-1)&^(page-1) - from
		tail := maps[i][from:]
		vec := make([]byte, (len(tail)+int(page)-1)/int(page))
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&tail[0])), uintptr(len(tail)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		for p, v := range vec {
			if v&1 == 0 {
				t.Fatalf("%s: index page %d of %d paged out", f, p, len(vec))
			}
		}
	}
	advisedAll, err := trimMappings(abs, nil, trimTables|trimLogs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tables, %d bytes; indexes %d bytes; advised %d bytes keeping them, %d without; resident now %d",
		len(tables), sizes, tails, advisedKeep, advisedAll, rssByExt(dir)[".sst"]<<10)
	if advisedAll-advisedKeep != want {
		t.Fatalf("the kept trim left %d bytes out of the advice, want the index pages' %d", advisedAll-advisedKeep, want)
	}
	// The trim loop pages tables out apart from the logs (it writes the
	// logs back in between). This test maps tables only.
	if n, err := trimMappings(abs, keep, trimLogs); err != nil || n != 0 {
		t.Fatalf("logs only: advised %d bytes (%v), want none", n, err)
	}
	if len(keep) != len(tables) {
		t.Fatalf("a trim of the logs forgot table indexes: %d remembered, want %d", len(keep), len(tables))
	}
	if n, err := trimMappings(abs, nil, trimTables); err != nil || n != advisedAll {
		t.Fatalf("tables only: advised %d bytes (%v), want %d", n, err, advisedAll)
	}
}
