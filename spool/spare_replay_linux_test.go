//go:build linux

package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
	"golang.org/x/sys/unix"
)

// A power cut while the journal appends into a spare with direct I/O:
// badger as the last checkpoint left it, the journal as synced, and the
// replay brings back every entry, in order, with its payload.
func TestJournalSpareSurvivesBadgerLost(t *testing.T) {
	t.Parallel() // on its own files, waiting for the spare: beside the long ones
	ctx := context.Background()
	dir := t.TempDir()
	jdir := filepath.Join(dir, journalDirName)
	s := openT(t, dir, func(o *Options) { o.TrimInterval = -1 })
	defer closeT(t, s)
	n := 0
	appendBig := func(count int) {
		t.Helper()
		var rs []Record
		for range count {
			id := fmt.Sprintf("e-%05d", n)
			rs = append(rs, Record{Queue: "tencent", ID: id, Payload: bytes.Repeat([]byte(id), 32<<10/len(id))})
			n++
		}
		if _, err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	// A quarter of a segment, then the spare being written.
	for range 16 {
		appendBig(10)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(jdir, journal.SpareName)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare segment after a quarter of a segment")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Past the first segment's end: the next one is the spare.
	for range 40 {
		appendBig(10)
	}
	names, err := journal.ListSegments(vfs.Default, jdir)
	if err != nil || len(names) == 0 {
		t.Fatalf("segments: %v %v", names, err)
	}
	if last := names[len(names)-1]; !openedDirect(t, filepath.Join(jdir, last)) {
		t.Fatalf("segment %s is not written with O_DIRECT", last)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	copyStore(t, dir, crashed)
	// After the checkpoint, only the direct segment holds these.
	appendBig(25)
	if _, err := s.Append(ctx, recs("tencent", "small-1", "small-2", "small-3")); err != nil {
		t.Fatal(err)
	}
	es, err := s.Lease(ctx, "tencent", 30, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, jdir, filepath.Join(crashed, journalDirName), func(string) bool { return true })

	r := openT(t, crashed, func(o *Options) { o.TrimInterval = -1 })
	defer closeT(t, r)
	if js := r.JournalStats(); js.Replayed == 0 {
		t.Errorf("nothing replayed: %+v", js)
	}
	got, want := leaseAll(t, r, "tencent"), leaseAll(t, s, "tencent")
	if len(got) != len(want) || len(want) != n+3-30 {
		t.Fatalf("%d entries after replay, want %d (%d before the cut)", len(got), n+3-30, len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("entry %d: got %s/%d, want %s/%d", i, got[i].ID, got[i].Seq, want[i].ID, want[i].Seq)
		}
	}
}

// openedDirect reports whether this process holds path open with O_DIRECT.
func openedDirect(t *testing.T, path string) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err != nil || target != path {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + fd.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				if err == nil && flags&unix.O_DIRECT != 0 {
					return true
				}
			}
		}
	}
	return false
}
