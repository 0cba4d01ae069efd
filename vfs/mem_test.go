package vfs

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func mustWrite(t *testing.T, f File, p string, off int64) {
	t.Helper()
	if _, err := f.WriteAt([]byte(p), off); err != nil {
		t.Fatal(err)
	}
}

func TestMemCrashKeepsOnlyWhatWasSynced(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFile("/d/a", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, "synced", 0)
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, "-lost", 6)
	// Created and synced, but its directory entry never synced: gone.
	g, _ := m.OpenFile("/d/b", os.O_CREATE|os.O_RDWR, 0o600)
	mustWrite(t, g, "x", 0)
	g.Sync()
	m.Crash()
	if _, err := m.ReadFile("/d/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file whose directory was never synced survived: %v", err)
	}

	f, _ = m.OpenFile("/d/a", os.O_CREATE|os.O_RDWR, 0o600)
	mustWrite(t, f, "synced", 0)
	f.Datasync()
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, "-lost", 6)
	if b, _ := m.ReadFile("/d/a"); string(b) != "synced-lost" {
		t.Fatalf("before the crash: %q", b)
	}
	m.Crash()
	if b, err := m.ReadFile("/d/a"); err != nil || string(b) != "synced" {
		t.Fatalf("after the crash: %q %v, want what was synced", b, err)
	}
	// A rename not made durable is undone.
	if err := m.Rename("/d/a", "/d/c"); err != nil {
		t.Fatal(err)
	}
	m.Crash()
	if names, _ := m.ReadDir("/d"); !slices.Equal(names, []string{"a"}) {
		t.Fatalf("after an unsynced rename and a crash: %v", names)
	}
}

// memWithSyncedFile is a file system holding /d/a, empty, created and
// made durable with its directory: what is written to it next is unsynced.
func memWithSyncedFile() (*MemFS, File) {
	m := NewMem()
	m.MkdirAll("/d", 0o700)
	f, _ := m.OpenFile("/d/a", os.O_CREATE|os.O_RDWR, 0o600)
	f.Sync()
	m.SyncDir("/d")
	return m, f
}

func TestMemTornCrashKeepsAPrefixOfWrites(t *testing.T) {
	for seed := range uint64(50) {
		m, f := memWithSyncedFile()
		mustWrite(t, f, "aaaa", 0)
		mustWrite(t, f, "bbbb", 4)
		mustWrite(t, f, "cccc", 8)
		m.CrashTorn(rand.New(rand.NewPCG(seed, 1)))
		b, _ := m.ReadFile("/d/a")
		want := "aaaabbbbcccc"
		if len(b) > len(want) || string(b) != want[:len(b)] {
			t.Fatalf("seed %d: %q is not a prefix of the writes", seed, b)
		}
	}
}

func TestMemSectorCrashKeepsWholeSectors(t *testing.T) {
	holes := 0
	for seed := range uint64(50) {
		m, f := memWithSyncedFile()
		mustWrite(t, f, strings.Repeat("x", 3*512-100), 100) // 3 sectors, the first in part
		m.CrashSectors(rand.New(rand.NewPCG(seed, 1)))
		b, _ := m.ReadFile("/d/a")
		kept := ""
		for s := 0; s < 3; s++ {
			piece := b[min(len(b), max(100, s*512)):min(len(b), (s+1)*512)]
			switch strings.Trim(string(piece), "x") {
			case "":
				if len(piece) > 0 {
					kept += "x"
					continue
				}
			case strings.Repeat("\x00", len(piece)):
			default:
				t.Fatalf("seed %d: sector %d holds part of a write: %q", seed, s, piece)
			}
			kept += "."
		}
		if kept == "x.x" {
			holes++
		}
	}
	if holes == 0 {
		t.Fatal("no crash in 50 kept a later sector and dropped an earlier one")
	}
}

func TestMemFaults(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o700)
	f, _ := m.OpenFile("/d/a", os.O_CREATE|os.O_RDWR, 0o600)
	m.Inject(Fault{Op: OpWrite, Err: syscall.ENOSPC, Short: 2, Times: 1})
	n, err := f.WriteAt([]byte("abcd"), 0)
	if n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("short write: %d %v", n, err)
	}
	if _, err := f.WriteAt([]byte("abcd"), 0); err != nil {
		t.Fatalf("the fault fired once only: %v", err)
	}
	m.Inject(Fault{Op: OpSync, Name: "/d/a", After: 1, Err: syscall.EIO})
	if err := f.Datasync(); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if err := f.Datasync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second sync: %v, want EIO", err)
	}
	m.ClearFaults()
	m.Inject(Fault{Op: OpAny, Err: ErrCrashed})
	if err := m.SyncDir("/d"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("after the crash point: %v", err)
	}
}
