//go:build linux

package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	if _, err := trimMappings(os.TempDir(), nil); err == errNoPageout {
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
	if _, err := trimMappings(os.TempDir(), nil); err == errNoPageout {
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
	if all := rssByExt(dir)[".sst"] << 10; all < sizes/2 {
		t.Fatalf("only %d of %d bytes resident after reading every page", all, sizes)
	}
	keep := tableIndexes{}
	if _, err := trimMappings(abs, keep); err != nil {
		t.Fatal(err)
	}
	kept := rssByExt(dir)[".sst"] << 10
	page := int64(os.Getpagesize())
	if kept == 0 || kept > tails+2*page*int64(len(tables)) {
		t.Fatalf("tables hold %d bytes resident after the trim; their indexes are %d bytes (tables %d bytes)", kept, tails, sizes)
	}
	if len(keep) != len(tables) {
		t.Fatalf("%d table indexes remembered, want %d", len(keep), len(tables))
	}
	touch()
	if _, err := trimMappings(abs, nil); err != nil {
		t.Fatal(err)
	}
	all := rssByExt(dir)[".sst"] << 10
	t.Logf("%d tables, %d bytes; indexes %d bytes; resident after a trim that keeps them %d, after one that does not %d", len(tables), sizes, tails, kept, all)
	if all >= kept {
		t.Fatalf("whole tables paged out: %d bytes resident, with the indexes kept %d", all, kept)
	}
}
