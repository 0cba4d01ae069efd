package vfs

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemFS is a file system in memory that keeps apart what was written and
// what was made durable, so a test can cut the power (Crash) and see what
// a disk would still hold, and that answers chosen calls with errors
// (Inject), as a failing or full disk does.
//
// What is durable: a file's bytes as of its last Sync or Datasync (size
// changes included, as with a preallocated file), and a directory's
// entries (files created, renamed, removed) as of its last SyncDir.
// Directories themselves are durable once made. A crash keeps nothing
// else, or, with a torn crash, also a prefix of each file's unsynced writes
// in the order they were made (the last of them cut part-way), as a disk
// that wrote some of its cache before the power went, or some sectors of
// them, as one that wrote its cache out of order.
type MemFS struct {
	mu     sync.Mutex
	dirs   map[string]*memDir
	faults []*Fault
}

type memDir struct {
	cur, synced map[string]*memNode
}

type memNode struct {
	data    []byte // as written
	durable []byte // as synced
	pending []memWrite
}

// memWrite is an unsynced change: bytes at an offset, or (data nil) a new
// size.
type memWrite struct {
	off  int64
	data []byte
	size int64
}

// NewMem returns an empty file system with only its root, "/".
func NewMem() *MemFS {
	return &MemFS{dirs: map[string]*memDir{"/": newMemDir()}}
}

func newMemDir() *memDir {
	return &memDir{cur: map[string]*memNode{}, synced: map[string]*memNode{}}
}

var _ FS = (*MemFS)(nil)

// Op names a kind of call, for faults.
type Op int

// The calls a Fault can answer.
const (
	OpAny Op = iota
	OpOpen
	OpWrite
	OpSync // Sync and Datasync
	OpPreallocate
	OpRemove
	OpRename
	OpSyncDir
	OpRead
)

// Fault answers matching calls with Err.
type Fault struct {
	Op Op
	// Name: the call's path must contain it ("" matches any).
	Name string
	// After: this many matching calls go through first.
	After int
	// Times: how many calls it answers (0: every one after After).
	Times int
	// Err is what the call returns (syscall.EIO, syscall.ENOSPC, ...).
	Err error
	// Short, for writes: this many bytes are written before Err (a short
	// write).
	Short int

	seen, fired int
}

// ErrCrashed is what a call gets after a fault made of it: use it with
// OpAny to stop the world at a chosen call, then Crash.
var ErrCrashed = errors.New("vfs: the machine has crashed")

// Inject adds a fault. Faults are checked in the order they were added.
func (m *MemFS) Inject(f Fault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = append(m.faults, &f)
}

// ClearFaults removes every fault.
func (m *MemFS) ClearFaults() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = nil
}

// fault reports the fault that answers this call, if any (m.mu held).
func (m *MemFS) fault(op Op, name string) *Fault {
	for _, f := range m.faults {
		if (f.Op != OpAny && f.Op != op) || (f.Name != "" && !strings.Contains(name, f.Name)) {
			continue
		}
		f.seen++
		if f.seen <= f.After || (f.Times > 0 && f.fired >= f.Times) {
			continue
		}
		f.fired++
		return f
	}
	return nil
}

func (m *MemFS) err(op Op, name string) error {
	if f := m.fault(op, name); f != nil {
		return &fs.PathError{Op: opName(op), Path: name, Err: f.Err}
	}
	return nil
}

func opName(op Op) string {
	return [...]string{"any", "open", "write", "sync", "preallocate", "remove", "rename", "syncdir", "read"}[op]
}

// Crash is a power cut: every file and directory goes back to what was
// durable. Open files must not be used afterwards.
func (m *MemFS) Crash() { m.crash(nil, false) }

// CrashTorn is a power cut after which each file also keeps a prefix of
// its unsynced writes, in order, the last of them cut at a random byte
// (rng chooses).
func (m *MemFS) CrashTorn(rng *rand.Rand) { m.crash(rng, false) }

// CrashSectors is a power cut after which each file also keeps some of
// the 512-byte sectors of a prefix of its unsynced writes, at random (rng
// chooses), as a disk that wrote its cache out of order.
func (m *MemFS) CrashSectors(rng *rand.Rand) { m.crash(rng, true) }

// sector is the unit CrashSectors keeps or drops.
const sector = 512

func (m *MemFS) crash(rng *rand.Rand, sectors bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[*memNode]bool{}
	for _, d := range m.dirs {
		d.cur = maps(d.synced)
		for _, n := range d.cur {
			if seen[n] {
				continue
			}
			seen[n] = true
			data := slices.Clone(n.durable)
			if rng != nil && len(n.pending) > 0 {
				k := rng.IntN(len(n.pending) + 1)
				for i, w := range n.pending[:min(k+1, len(n.pending))] {
					if w.data == nil {
						data = resize(data, w.size)
						continue
					}
					b := w.data
					if sectors {
						data = writeSectors(data, b, w.off, rng)
						continue
					}
					if i == k {
						b = b[:rng.IntN(len(b)+1)] // torn
					}
					data = writeAt(data, b, w.off)
				}
			}
			n.data, n.durable, n.pending = data, slices.Clone(data), nil
		}
	}
}

// writeSectors writes each sector's part of p at off into b, or not, at
// random.
func writeSectors(b, p []byte, off int64, rng *rand.Rand) []byte {
	for len(p) > 0 {
		n := min(int64(len(p)), (off/sector+1)*sector-off)
		if rng.IntN(2) == 0 {
			b = writeAt(b, p[:n], off)
		}
		p, off = p[n:], off+n
	}
	return b
}

func maps(in map[string]*memNode) map[string]*memNode {
	out := make(map[string]*memNode, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

func writeAt(b, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], p)
	return b
}

func split(name string) (dir, base string) {
	name = filepath.Clean(name)
	return filepath.Dir(name), filepath.Base(name)
}

func (m *MemFS) dir(name string) (*memDir, string, error) {
	dir, base := split(name)
	d, ok := m.dirs[dir]
	if !ok {
		return nil, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return d, base, nil
}

// OpenFile opens or creates a file.
func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.err(OpOpen, name); err != nil {
		return nil, err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.cur[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &memNode{}
		d.cur[base] = n
	}
	if flag&os.O_TRUNC != 0 && len(n.data) > 0 {
		n.data = n.data[:0]
		n.pending = append(n.pending, memWrite{size: 0})
	}
	return &memFile{m: m, n: n, name: name}, nil
}

// OpenDirect is OpenFile: memory has no page cache to bypass.
func (m *MemFS) OpenDirect(name string, flag int, perm os.FileMode) (File, error) {
	return m.OpenFile(name, flag, perm)
}

// ReadFile reads what a file holds now.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.err(OpRead, name); err != nil {
		return nil, err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.cur[base]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(n.data), nil
}

// Remove removes a file (durable with its directory's SyncDir).
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.err(OpRemove, name); err != nil {
		return err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return err
	}
	if _, ok := d.cur[base]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.cur, base)
	return nil
}

// Rename moves a file, replacing what is at newname.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.err(OpRename, oldname); err != nil {
		return err
	}
	od, ob, err := m.dir(oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.dir(newname)
	if err != nil {
		return err
	}
	n, ok := od.cur[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	delete(od.cur, ob)
	nd.cur[nb] = n
	return nil
}

// MkdirAll makes dir and its parents, durable at once.
func (m *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, ok := m.dirs[d]; !ok {
			m.dirs[d] = newMemDir()
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// ReadDir lists dir's files, sorted.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	names := make([]string, 0, len(d.cur))
	for name := range d.cur {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// Stat describes a file.
func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	n, ok := d.cur[base]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return memInfo{name: base, size: int64(len(n.data))}, nil
}

// SyncDir makes dir's entries durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.err(OpSyncDir, dir); err != nil {
		return err
	}
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	d.synced = maps(d.cur)
	return nil
}

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() os.FileMode  { return 0o600 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	m      *MemFS
	n      *memNode
	name   string
	off    int64
	closed bool
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.err(OpRead, f.name); err != nil {
		return 0, err
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	if flt := f.m.fault(OpWrite, f.name); flt != nil {
		n := min(flt.Short, len(p))
		if n > 0 {
			f.write(p[:n], off)
		}
		return n, &fs.PathError{Op: "write", Path: f.name, Err: flt.Err}
	}
	f.write(p, off)
	return len(p), nil
}

func (f *memFile) write(p []byte, off int64) {
	f.n.data = writeAt(f.n.data, p, off)
	f.n.pending = append(f.n.pending, memWrite{off: off, data: slices.Clone(p)})
}

func (f *memFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *memFile) Sync() error { return f.Datasync() }

func (f *memFile) Datasync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	if err := f.m.err(OpSync, f.name); err != nil {
		return err
	}
	f.n.durable, f.n.pending = slices.Clone(f.n.data), nil
	return nil
}

func (f *memFile) Preallocate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.err(OpPreallocate, f.name); err != nil {
		return err
	}
	if int64(len(f.n.data)) < size {
		f.n.data = resize(f.n.data, size)
		f.n.pending = append(f.n.pending, memWrite{size: size})
	}
	return nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	f.closed = true
	return nil
}
