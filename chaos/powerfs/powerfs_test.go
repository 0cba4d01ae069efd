//go:build linux

package powerfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

// mount mounts backing on a fresh mountpoint and unmounts it at the end
// of the test. It skips only when FUSE is not available here.
func mount(t *testing.T, backing string) *FS {
	t.Helper()
	mnt := t.TempDir()
	f, err := Mount(backing, mnt, &Options{Debug: os.Getenv("POWERFS_DEBUG") == "1"})
	if errors.Is(err, ErrUnavailable) {
		agenttest.Unavailable(t, "FUSE is not available here (/dev/fuse and CAP_SYS_ADMIN to mount it): %v", err)
	}
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return f
}

// powerCycle cuts, unmounts and mounts the backing directory again.
func powerCycle(t *testing.T, f *FS) (*FS, CutReport) {
	t.Helper()
	rep := f.Cut()
	if err := f.Unmount(); err != nil {
		t.Fatalf("unmount after cut: %v", err)
	}
	return mount(t, f.Backing()), rep
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got := readFile(t, p)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes %q, want %d bytes %q", p, len(got), clip(got), len(want), clip(want))
	}
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func create(t *testing.T, p string) *os.File {
	t.Helper()
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return fh
}

func write(t *testing.T, fh *os.File, s string) {
	t.Helper()
	if _, err := fh.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func fsync(t *testing.T, fh *os.File) {
	t.Helper()
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestFsyncedWriteSurvivesCutUnsyncedIsGone(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	m := f.Mountpoint()

	a := create(t, filepath.Join(m, "a"))
	write(t, a, "durable")
	fsync(t, a)
	write(t, a, " volatile")
	b := create(t, filepath.Join(m, "b"))
	write(t, b, "never synced")

	// Before the cut, readers see everything written...
	wantFile(t, filepath.Join(m, "a"), []byte("durable volatile"))
	wantFile(t, filepath.Join(m, "b"), []byte("never synced"))
	if fi, err := os.Stat(filepath.Join(m, "a")); err != nil || fi.Size() != 16 {
		t.Errorf("stat a through the mount: %v %v, want size 16", fi, err)
	}
	// ...and the backing files hold only what was fsynced.
	wantFile(t, filepath.Join(backing, "a"), []byte("durable"))
	wantFile(t, filepath.Join(backing, "b"), nil)
	st := f.Stats()
	if st.Fsyncs != 1 || st.BytesSynced != 7 || st.PendingBytes != 16+12 || st.PendingFiles != 2 {
		t.Errorf("stats before the cut: %+v", st)
	}

	f2, rep := powerCycle(t, f)
	a.Close()
	b.Close()
	if rep.DroppedBytes != 16+12 || rep.Files != 2 {
		t.Errorf("cut report %+v, want 28 bytes of 2 files dropped", rep)
	}
	wantFile(t, filepath.Join(f2.Mountpoint(), "a"), []byte("durable"))
	// The name was durable (metadata applies at once), the data was not.
	wantFile(t, filepath.Join(f2.Mountpoint(), "b"), nil)
}

func TestAfterCutEverythingFailsAndUnmountWorksWithOpenFiles(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	m := f.Mountpoint()
	fh := create(t, filepath.Join(m, "f"))
	write(t, fh, "synced")
	fsync(t, fh)
	write(t, fh, "+lost")

	rep := f.Cut()
	if rep.DroppedBytes == 0 {
		t.Errorf("cut dropped nothing: %+v", rep)
	}
	if _, err := fh.WriteString("after"); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after the cut: %v, want EIO", err)
	}
	if err := fh.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the cut: %v, want EIO", err)
	}
	if err := fh.Truncate(0); !errors.Is(err, syscall.EIO) {
		t.Errorf("ftruncate after the cut: %v, want EIO", err)
	}
	if err := os.WriteFile(filepath.Join(m, "new"), []byte("x"), 0o600); !errors.Is(err, syscall.EIO) {
		t.Errorf("create after the cut: %v, want EIO", err)
	}
	if err := os.Mkdir(filepath.Join(m, "dir"), 0o700); !errors.Is(err, syscall.EIO) {
		t.Errorf("mkdir after the cut: %v, want EIO", err)
	}
	if err := os.Rename(filepath.Join(m, "f"), filepath.Join(m, "g")); !errors.Is(err, syscall.EIO) {
		t.Errorf("rename after the cut: %v, want EIO", err)
	}
	if err := os.Remove(filepath.Join(m, "f")); !errors.Is(err, syscall.EIO) {
		t.Errorf("unlink after the cut: %v, want EIO", err)
	}
	// fh is still open: the plain unmount fails with EBUSY, Unmount must
	// still get the file system off.
	if err := f.Unmount(); err != nil {
		t.Fatalf("unmount with an open file after the cut: %v", err)
	}
	fh.Close()
	names, _ := filepath.Glob(filepath.Join(backing, "*"))
	if len(names) != 1 || filepath.Base(names[0]) != "f" {
		t.Errorf("backing directory after the cut: %v, want only f", names)
	}
	wantFile(t, filepath.Join(backing, "f"), []byte("synced"))
}

// mapper is a child process (this test binary, see TestMain) that maps
// files of the mount and writes into the mappings. Touching a FUSE-backed
// mapping from the process that serves the file system can deadlock: the
// faulting thread cannot be stopped for the garbage collector, and the
// server goroutines that would answer the fault wait for the collector.
// Like the agent in the chaos test, the mapper is killed with SIGKILL
// after the cut.
type mapper struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startMapper(t *testing.T) *mapper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POWERFS_MAPPER=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mapper{t: t, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(m.kill)
	return m
}

// do sends one command and waits for its answer.
func (m *mapper) do(cmd ...string) {
	m.t.Helper()
	if _, err := fmt.Fprintln(m.in, strings.Join(cmd, " ")); err != nil {
		m.t.Fatalf("mapper: %v", err)
	}
	if !m.out.Scan() {
		m.t.Fatalf("mapper died on %q: %v", cmd, m.out.Err())
	}
	if ans := m.out.Text(); ans != "ok" {
		m.t.Fatalf("mapper %q: %s", cmd, ans)
	}
}

func (m *mapper) kill() {
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

// runMapper is the child: "map PATH SIZE" creates the file, sets its
// size, fsyncs it and maps it MAP_SHARED; "put PATH OFF TEXT" writes TEXT
// into the mapping; "msync PATH" is msync(MS_SYNC).
func runMapper() {
	maps := map[string][]byte{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		err := func() error {
			switch f[0] {
			case "map":
				size, _ := strconv.Atoi(f[2])
				fh, err := os.OpenFile(f[1], os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				if err := fh.Truncate(int64(size)); err != nil {
					return err
				}
				if err := fh.Sync(); err != nil {
					return err
				}
				mm, err := unix.Mmap(int(fh.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
				if err != nil {
					return err
				}
				maps[f[1]] = mm // the descriptor stays open too
				return nil
			case "put":
				off, _ := strconv.Atoi(f[2])
				copy(maps[f[1]][off:], f[3])
				return nil
			case "msync":
				return unix.Msync(maps[f[1]], unix.MS_SYNC)
			}
			return fmt.Errorf("unknown command %q", f[0])
		}()
		if err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("POWERFS_MAPPER") == "1" {
		runMapper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMmapMsyncSurvivesCutWithoutMsyncIsGone(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	wal, other := filepath.Join(f.Mountpoint(), "wal"), filepath.Join(f.Mountpoint(), "other")

	mp := startMapper(t)
	mp.do("map", wal, strconv.Itoa(2*pageSize))
	mp.do("put", wal, "0", "page zero, msynced")
	mp.do("msync", wal)
	mp.do("put", wal, strconv.Itoa(pageSize), "page one, dirty in the page cache only")
	mp.do("map", other, strconv.Itoa(pageSize))
	mp.do("put", other, "0", "never msynced")

	if fsyncs := f.Stats().Fsyncs; fsyncs != 3 {
		t.Errorf("%d fsyncs, want 3 (two fsync(2) and one msync arrive as FSYNC)", fsyncs)
	}
	// Only page zero reached the backing file.
	b := readFile(t, filepath.Join(backing, "wal"))
	if !bytes.HasPrefix(b, []byte("page zero, msynced")) || !bytes.Equal(b[pageSize:], make([]byte, pageSize)) {
		t.Errorf("backing file before the cut: %q ... %q", clip(b), clip(b[pageSize:]))
	}
	// The pages still only in the page cache are counted: the cut pulls
	// them into the overlay before it discards it.
	if st := f.Stats(); st.PendingBytes != 0 {
		t.Errorf("pending bytes before the cut: %d, want 0 (the dirty pages are in the page cache)", st.PendingBytes)
	}
	rep := f.Cut()
	mp.kill()
	if rep.DroppedBytes != 2*pageSize || rep.Drained != 2*pageSize || rep.Files != 2 {
		t.Errorf("cut report %+v, want the 2 dirty pages drained from the page cache and dropped", rep)
	}
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	f2 := mount(t, backing)
	want := make([]byte, 2*pageSize)
	copy(want, "page zero, msynced")
	wantFile(t, filepath.Join(f2.Mountpoint(), "wal"), want)
	wantFile(t, filepath.Join(f2.Mountpoint(), "other"), make([]byte, pageSize))

	// And reading through read(2) sees what a mapping wrote (one page
	// cache), from the overlay once written back.
	mp = startMapper(t)
	p := filepath.Join(f2.Mountpoint(), "shared")
	mp.do("map", p, strconv.Itoa(pageSize))
	mp.do("put", p, "0", "mapped write")
	if got := readFile(t, p); !bytes.HasPrefix(got, []byte("mapped write")) {
		t.Errorf("read(2) does not see the mapped write: %q", clip(got))
	}
	mp.kill()
}

func TestTruncateIsPendingUntilFsync(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	p := filepath.Join(f.Mountpoint(), "t")
	as := bytes.Repeat([]byte("a"), 10000)
	fh := create(t, p)
	if _, err := fh.Write(as); err != nil {
		t.Fatal(err)
	}
	fsync(t, fh)

	// Shrink by path (setattr without a handle), grow by descriptor: the
	// bytes between must read as zeros, not the old a's.
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 100 {
		t.Errorf("size after truncate: %d, want 100", fi.Size())
	}
	if err := fh.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte("a"), 100), make([]byte, 4900)...)
	wantFile(t, p, want)
	wantFile(t, filepath.Join(backing, "t"), as)

	// An O_TRUNC open is a pending truncation too.
	g := create(t, filepath.Join(f.Mountpoint(), "g"))
	write(t, g, "old contents")
	fsync(t, g)
	g.Close()
	g, err := os.OpenFile(filepath.Join(f.Mountpoint(), "g"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, g, "new")
	wantFile(t, filepath.Join(f.Mountpoint(), "g"), []byte("new"))
	wantFile(t, filepath.Join(backing, "g"), []byte("old contents"))

	f2, rep := powerCycle(t, f)
	fh.Close()
	g.Close()
	if rep.SizeChanges != 2 {
		t.Errorf("cut report %+v, want 2 pending size changes dropped", rep)
	}
	wantFile(t, filepath.Join(f2.Mountpoint(), "t"), as)
	wantFile(t, filepath.Join(f2.Mountpoint(), "g"), []byte("old contents"))

	// The same shrink and grow, fsynced this time, is durable.
	p = filepath.Join(f2.Mountpoint(), "t")
	fh, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := fh.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	fsync(t, fh)
	wantFile(t, filepath.Join(backing, "t"), want)
	f3, _ := powerCycle(t, f2)
	wantFile(t, filepath.Join(f3.Mountpoint(), "t"), want)
}

func TestRename(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	m := f.Mountpoint()

	// write, fsync, rename: the classic atomic replace.
	tmp := create(t, filepath.Join(m, "final.tmp"))
	write(t, tmp, "v1")
	fsync(t, tmp)
	tmp.Close()
	if err := os.Rename(filepath.Join(m, "final.tmp"), filepath.Join(m, "final")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(backing, "final")); err != nil {
		t.Errorf("rename is metadata and applies at once: %v", err)
	}
	// Data written after the rename and never synced is lost.
	fin, err := os.OpenFile(filepath.Join(m, "final"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, fin, "+lost")
	wantFile(t, filepath.Join(m, "final"), []byte("v1+lost"))

	// The overlay follows the inode: written as c, renamed to d, fsynced
	// through the descriptor opened as c.
	c := create(t, filepath.Join(m, "c"))
	write(t, c, "c-data")
	if err := os.Rename(filepath.Join(m, "c"), filepath.Join(m, "d")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(m, "d"), []byte("c-data"))
	fsync(t, c)

	// Renamed over an existing file: the new one wins, the old overlay
	// (unsynced data of the replaced file) is gone with it.
	e := create(t, filepath.Join(m, "e"))
	write(t, e, "old-e")
	fsync(t, e)
	write(t, e, "+unsynced")
	e.Close()
	n := create(t, filepath.Join(m, "e.new"))
	write(t, n, "new-e")
	fsync(t, n)
	n.Close()
	if err := os.Rename(filepath.Join(m, "e.new"), filepath.Join(m, "e")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(m, "e"), []byte("new-e"))

	f2, _ := powerCycle(t, f)
	fin.Close()
	c.Close()
	m = f2.Mountpoint()
	wantFile(t, filepath.Join(m, "final"), []byte("v1"))
	wantFile(t, filepath.Join(m, "d"), []byte("c-data"))
	wantFile(t, filepath.Join(m, "e"), []byte("new-e"))
	for _, gone := range []string{"final.tmp", "c", "e.new"} {
		if _, err := os.Stat(filepath.Join(m, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the renames: %v, want not exist", gone, err)
		}
	}
}

// The overlay against a plain model, without FUSE: random writes,
// truncations and syncs; the logical contents must always match the
// model, and the backing file must match the model as of the last sync.
func TestOverlayMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := filepath.Join(t.TempDir(), "f")
		initial := make([]byte, rng.IntN(3*pageSize))
		for i := range initial {
			initial[i] = byte(rng.IntN(255) + 1)
		}
		if err := os.WriteFile(p, initial, 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Open(p, syscall.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := &fileState{size: int64(len(initial)), durable: int64(len(initial)), floor: int64(len(initial))}
		cur := append([]byte(nil), initial...)
		durable := append([]byte(nil), initial...)
		for op := 0; op < 300; op++ {
			switch k := rng.IntN(10); {
			case k < 5:
				off := rng.IntN(4 * pageSize)
				data := make([]byte, 1+rng.IntN(2*pageSize))
				for i := range data {
					data[i] = byte(rng.IntN(255) + 1)
				}
				if err := s.write(fd, data, int64(off)); err != nil {
					t.Fatal(err)
				}
				if end := off + len(data); end > len(cur) {
					cur = append(cur, make([]byte, end-len(cur))...)
				}
				copy(cur[off:], data)
			case k < 8:
				size := rng.IntN(5 * pageSize)
				s.truncate(int64(size))
				if size < len(cur) {
					cur = cur[:size]
				} else {
					cur = append(cur, make([]byte, size-len(cur))...)
				}
			default:
				if _, err := s.sync(fd, false); err != nil {
					t.Fatal(err)
				}
				durable = append(durable[:0], cur...)
			}
			got := make([]byte, 6*pageSize)
			n, err := s.read(fd, got, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:n], cur) {
				t.Fatalf("seed %d op %d: logical contents differ from the model (%d vs %d bytes)", seed, op, n, len(cur))
			}
			// A read at an odd offset and length too.
			off := rng.IntN(len(cur) + 1)
			part := make([]byte, rng.IntN(3*pageSize))
			n, _ = s.read(fd, part, int64(off))
			if !bytes.Equal(part[:n], cur[off:min(len(cur), off+len(part))]) {
				t.Fatalf("seed %d op %d: read at %d differs from the model", seed, op, off)
			}
			if b := readFile(t, p); !bytes.Equal(b, durable) {
				t.Fatalf("seed %d op %d: backing file differs from the last synced state", seed, op)
			}
		}
		syscall.Close(fd)
	}
}

func TestArmedCutFiresInsideTheMatchingWrite(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing)
	m := f.Mountpoint()
	fired := f.ArmCut(func(name string) bool { return filepath.Base(name) == "b" })

	a := create(t, filepath.Join(m, "a"))
	write(t, a, "a-data")
	fsync(t, a) // not a match: the file system works as usual
	select {
	case <-fired:
		t.Fatal("the cut fired on a write to a")
	default:
	}
	b := create(t, filepath.Join(m, "b"))
	write(t, b, "b-data") // the cut happens right after this write
	select {
	case <-fired:
	default:
		t.Fatal("the cut did not fire on the write to b")
	}
	if err := b.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the armed cut: %v, want EIO", err)
	}
	if err := a.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync of another file after the armed cut: %v, want EIO", err)
	}
	rep := f.Cut()
	a.Close()
	b.Close()
	if !rep.Armed || rep.Files != 1 || len(rep.Lost) != 1 || rep.Lost[0].Name != "b" || rep.Lost[0].Bytes != 6 {
		t.Errorf("cut report %+v, want an armed cut that dropped b's 6 bytes", rep)
	}
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	f2 := mount(t, backing)
	wantFile(t, filepath.Join(f2.Mountpoint(), "a"), []byte("a-data"))
	wantFile(t, filepath.Join(f2.Mountpoint(), "b"), nil)
}
