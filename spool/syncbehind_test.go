package spool

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/vfs"
)

// gatedFS is the operating system's file system whose journal segments'
// syncs wait while its gate is shut: a disk that stalls.
type gatedFS struct {
	vfs.FS
	mu      sync.Mutex
	shut    bool
	opened  chan struct{} // closed when the gate opens
	waiting atomic.Int32  // syncs waiting at the gate
}

func (g *gatedFS) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut, g.opened = true, make(chan struct{})
}

func (g *gatedFS) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		g.shut = false
		close(g.opened)
	}
}

func (g *gatedFS) wait() {
	g.mu.Lock()
	shut, opened := g.shut, g.opened
	g.mu.Unlock()
	if shut {
		g.waiting.Add(1)
		<-opened
		g.waiting.Add(-1)
	}
}

func (g *gatedFS) gate(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".jnl") {
		return f, err
	}
	return gatedFile{f, g}, nil
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	return g.gate(f, name, err)
}

func (g *gatedFS) OpenDirect(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenDirect(name, flag, perm)
	return g.gate(f, name, err)
}

type gatedFile struct {
	vfs.File
	g *gatedFS
}

func (f gatedFile) Sync() error     { f.g.wait(); return f.File.Sync() }
func (f gatedFile) Datasync() error { f.g.wait(); return f.File.Datasync() }

// A stalled disk under PutSyncWithin. The sync that falls due runs behind
// the committer, which goes on answering key-only writes meanwhile; when
// the next falls due with that one still stalled, the committer syncs
// itself and waits, and nothing more is answered until the disk is back:
// a power cut loses at most what was answered in the last PutSyncWithin
// plus the sync under way.
func TestSyncBehindAStalledDisk(t *testing.T) {
	g := &gatedFS{FS: vfs.Default}
	s := openT(t, t.TempDir(), func(o *Options) { o.PutSyncWithin = 20 * time.Millisecond; o.journalFS = g })
	defer closeT(t, s)
	defer g.open()
	ctx := context.Background()
	write := func(k string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.Write(ctx, []KV{{Key: k, Value: []byte(k)}}, nil)
			done <- err
		}()
		return done
	}
	waiting := func(n int32, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); g.waiting.Load() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d syncs wait at the stalled disk, want %d", what, g.waiting.Load(), n)
			}
		}
	}

	answered := func(done <-chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not answered in 5 s", what)
		}
	}
	// The journal's first segment is made (and synced) by the first commit.
	answered(write("first"), "the first write")
	for deadline := time.Now().Add(10 * time.Second); s.jnl.Unsynced(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first write was not synced within 10 s")
		}
	}

	g.close()
	answered(write("a"), "a write with the disk stalled and nothing due")
	waiting(1, "a fell due")
	answered(write("b"), "a write while a sync runs behind the committer")
	waiting(2, "b fell due while a's sync stalled")
	c := write("c")
	select {
	case err := <-c:
		t.Fatalf("a write was answered (err %v) while an overdue sync stalled: what a power cut can lose is no longer bounded", err)
	case <-time.After(200 * time.Millisecond):
	}
	g.open()
	answered(c, "a write once the disk is back")
	for _, k := range []string{"first", "a", "b", "c"} {
		if v, ok, err := s.Get(k); err != nil || !ok || string(v) != k {
			t.Errorf("Get(%s) after the stall: %q %v %v", k, v, ok, err)
		}
	}
	// Once the disk is back every sync finishes: nothing is left unsynced.
	for deadline := time.Now().Add(10 * time.Second); s.jnl.Unsynced(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			applied, synced := s.jnl.Positions()
			t.Fatalf("the journal stayed unsynced after the stall (applied %d, synced %d)", applied, synced)
		}
	}
}
