package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/outpost-agent/outpost/vfs"
)

// A spare segment is prepared once the current one is a quarter full, the
// next segment is the spare written in whole blocks (with direct I/O, or
// Buffered through the page cache, half the records unsynced), and every
// record appended either way reads back in order, whatever its size
// against the 4 KiB blocks. With and without encryption.
func TestSpareSegment(t *testing.T) {
	for _, tc := range []struct {
		key      []byte
		buffered bool
	}{{nil, false}, {bytes.Repeat([]byte{7}, 32), false}, {nil, true}, {bytes.Repeat([]byte{7}, 32), true}} {
		key := tc.key
		t.Run(fmt.Sprintf("encrypted=%v,buffered=%v", key != nil, tc.buffered), func(t *testing.T) {
			dir := t.TempDir()
			j, err := New(Options{Dir: dir, Key: key, Buffered: tc.buffered}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			add := func(n int) {
				t.Helper()
				v := bytes.Repeat([]byte{byte('a' + len(want)%26)}, n)
				copy(v, fmt.Sprint(len(want)))
				appendRec := j.Append
				if tc.buffered && len(want)%2 == 1 {
					appendRec = j.AppendUnsynced
				}
				if _, err := appendRec(append(j.NewRecord(), v...)); err != nil {
					t.Fatal(err)
				}
				want = append(want, string(v))
			}
			for j.off < SegmentSize/4 {
				add(64 << 10)
			}
			if j.spare.pending == nil {
				t.Fatal("no spare is being prepared with the segment a quarter full")
			}
			j.collectSpare(true)
			if j.spare.off {
				t.Skip("this file system refuses O_DIRECT: segments stay preallocated")
			}
			if !j.spare.ready {
				t.Fatal("the spare's preparation failed")
			}
			first := SegmentName(1)
			if err := j.startSegment(j.lastSeq + 1); err != nil {
				t.Fatal(err)
			}
			if !j.direct {
				t.Fatal("the new segment is not the spare written in whole blocks")
			}
			if _, err := os.Stat(filepath.Join(dir, SpareName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the spare is still there after its use: %v", err)
			}
			second := SegmentName(j.lastSeq + 1)
			// Records ending inside a block, on a block's end, and spanning
			// several blocks.
			for _, n := range []int{1, 100, 4096 - 64 - 16 - 9, 4000, 4096, 10000, 3, 70000, 5} {
				add(n)
			}
			j.Close(false)

			var got []string
			for _, name := range []string{first, second} {
				sc, err := ReadSegment(vfs.Default, filepath.Join(dir, name), key)
				if err != nil || len(sc.Damaged) > 0 || sc.Tail != nil {
					t.Fatalf("%s: %v, damaged %v, tail %v", name, err, sc.Damaged, sc.Tail)
				}
				got = append(got, recordValues(sc.Recs)...)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("read back %d records, want %d (or they differ)", len(got), len(want))
			}
			raw, err := os.ReadFile(filepath.Join(dir, second))
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) != SegmentSize {
				t.Errorf("the direct segment is %d bytes, want %d", len(raw), SegmentSize)
			}
			if !AllZero(raw[j.off:]) {
				t.Error("the direct segment is not zero after its last record")
			}
		})
	}
}

// Open keeps a complete spare left by the last run and removes anything
// else going by that name.
func TestAdoptSpare(t *testing.T) {
	cases := []struct {
		name      string
		spareSize int64 // -1: no spare
		tmp       bool
		ready     bool
	}{
		{"complete spare", SegmentSize, false, true},
		{"complete spare and an unfinished one", SegmentSize, true, true},
		{"unfinished only", -1, true, false},
		{"short spare", 1 << 20, false, false},
		{"none", -1, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mk := func(name string, size int64) {
				f, err := os.Create(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				f.Truncate(size)
				f.Close()
			}
			if tc.spareSize >= 0 {
				mk(SpareName, tc.spareSize)
			}
			if tc.tmp {
				mk(spareTmpName, 1<<20)
			}
			j, err := New(Options{Dir: dir}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if j.spare.ready != tc.ready {
				t.Errorf("ready = %v, want %v", j.spare.ready, tc.ready)
			}
			if _, err := os.Stat(filepath.Join(dir, spareTmpName)); !errors.Is(err, os.ErrNotExist) {
				t.Error("the unfinished spare is still there")
			}
			_, err = os.Stat(filepath.Join(dir, SpareName))
			if kept := err == nil; kept != tc.ready {
				t.Errorf("spare kept = %v, want %v", kept, tc.ready)
			}
		})
	}
}

// BenchmarkAppend: one 8 KB record appended and synced, into a
// preallocated segment through the page cache, and into a spare with
// direct I/O. Run it beside a CPU load to see what a loaded agent sees.
func BenchmarkAppend(b *testing.B) {
	for _, spare := range []bool{false, true} {
		name := "preallocated"
		if spare {
			name = "spare"
		}
		b.Run(name, func(b *testing.B) {
			j, err := New(Options{Dir: b.TempDir()}, 0)
			if err != nil {
				b.Fatal(err)
			}
			j.spare.off = true // no preparations behind the benchmark's back
			defer j.Close(false)
			val := bytes.Repeat([]byte{1}, 8<<10)
			segment := func() {
				if spare {
					if err := prepareSpare(j.fs, j.dir, j.segmentSize, nil); err != nil {
						b.Skip("no spare here:", err)
					}
					j.spare.ready = true
				}
				if err := j.startSegment(j.lastSeq + 1); err != nil {
					b.Fatal(err)
				}
			}
			segment()
			b.SetBytes(int64(len(val)))
			b.ResetTimer()
			for range b.N {
				if j.off+2*int64(len(val)) > SegmentSize {
					b.StopTimer()
					segment()
					b.StartTimer()
				}
				if _, err := j.Append(append(j.NewRecord(), val...)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
