//go:build linux

package powerfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// ErrUnavailable matches the error Mount returns when FUSE cannot be used
// here: no /dev/fuse, or opening it or mount(2) failed with EPERM (no
// CAP_SYS_ADMIN) or ENODEV (no fuse support in the kernel). Any other
// mount failure is returned as is.
var ErrUnavailable = errors.New("powerfs: FUSE is not available")

// Options tune a mount. The zero value is what the tests use.
type Options struct {
	// SyncBacking makes each FSYNC also fdatasync the backing file. The
	// simulated cut happens above the backing file system, which itself
	// never loses power, so this only costs time; it is there for runs
	// that want the backing directory durable too.
	SyncBacking bool
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
}

// Stats are the mount's counters since Mount.
type Stats struct {
	Fsyncs         int64 // FSYNC requests that succeeded
	FsyncsRefused  int64 // FSYNC requests answered EIO because of the cut
	BytesWritten   int64 // bytes accepted into overlays by WRITE
	BytesSynced    int64 // overlay bytes written to backing files by FSYNC
	PendingBytes   int64 // overlay bytes not yet fsynced, now
	PendingFiles   int   // files with pending changes (data or size), now
	Cut            bool  // Cut has been called
	DroppedAtCut   int64 // overlay bytes discarded by Cut
	FilesAtCut     int   // files whose pending changes Cut discarded
	SizesAtCut     int   // of those, files whose pending size change was discarded
	DrainedAtCut   int64 // of DroppedAtCut, bytes the kernel's page cache handed over during Cut
	RefusedWrites  int64 // WRITE requests answered EIO after the cut
	RefusedOthers  int64 // other requests (setattr, create, rename, ...) answered EIO after the cut
	BackingErrors  int64 // errors from the backing file system while applying an fsync
	LastBackingErr string
}

// CutReport is what one Cut discarded.
type CutReport struct {
	DroppedBytes int64      // overlay bytes that never reached the backing directory
	Files        int        // files with pending changes at the cut
	SizeChanges  int        // files whose pending size change was discarded
	Drained      int64      // bytes written back from the kernel's page cache during the cut (part of DroppedBytes)
	Lost         []LostFile // what each of those files lost, by name
	Armed        bool       // the cut happened inside a WRITE, as armed by ArmCut
	DrainErr     error      // syncfs on the mount failed or timed out (the drain is best effort)
	Took         time.Duration
}

// LostFile is what the cut took from one file.
type LostFile struct {
	Name        string // path in the mount when last opened
	Bytes       int64  // overlay bytes dropped
	SizePending bool   // a size change was dropped too
	Size        int64  // the size the writer saw
	DurableSize int64  // the size that survives (the backing file's)
}

// FS is one mount of a backing directory.
type FS struct {
	backing    string
	mountpoint string
	opts       Options
	server     *fuse.Server
	connID     uint64 // the FUSE connection's number (minor of the mount's st_dev)

	// mu guards everything below and every fileState: one lock for the
	// whole file system. Data operations are memcpy and pread/pwrite on the
	// backing files, so it is not a bottleneck at test loads, and it makes
	// Cut trivially atomic.
	mu       sync.Mutex
	cutting  bool // fsync refused, nothing reaches the backing directory
	frozen   bool // every write answers EIO too
	cutDone  bool // Cut has run to the end
	armed    bool // cut at the next matching WRITE
	armedCut bool // the cut was the armed one
	armMatch func(name string) bool
	armCh    chan struct{}
	cutBase  int64 // stats.BytesWritten at the instant of the cut
	files    map[uint64]*fileState
	stats    Stats
	// writeReqs counts WRITE requests, accepted or refused.
	writeReqs int64

	unmountOnce sync.Once
	unmountErr  error
}

// Mount mounts a powerfs view of backingDir on mountpoint (both must
// exist) and serves it until Unmount.
func Mount(backingDir, mountpoint string, opts *Options) (*FS, error) {
	if opts == nil {
		opts = &Options{}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("%w: /dev/fuse: %v", ErrUnavailable, err)
	}
	backingDir, err := filepath.Abs(backingDir)
	if err != nil {
		return nil, err
	}
	mountpoint, err = filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backingDir, &st); err != nil {
		return nil, fmt.Errorf("powerfs: backing directory: %w", err)
	}
	pfs := &FS{backing: backingDir, mountpoint: mountpoint, opts: *opts, files: map[uint64]*fileState{}}
	root := &fs.LoopbackRoot{Path: backingDir, Dev: uint64(st.Dev)} //nolint:unconvert // Dev is not uint64 on every platform
	// NewNode is deprecated in go-fuse for NodeWrapChilder; the power-cut
	// suite's loopback is proven with it, and moving is left for a go-fuse
	// upgrade of its own.
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder { //nolint:staticcheck
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, pfs: pfs}
	}
	root.RootNode = root.NewNode(root, nil, "", &st) //nolint:staticcheck

	zero := time.Duration(0)
	fopts := &fs.Options{
		// No kernel caching of entries and attributes: every stat and
		// lookup asks the overlay, so sizes are right.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: "powerfs",
			Name:   "powerfs",
			// We are root and there is no fusermount: mount(2) directly,
			// and report its error rather than falling back.
			DirectMount:       true,
			DirectMountStrict: true,
			// mtime changes when an fsync reaches the backing file; that
			// must not throw away the kernel's page cache (and with it the
			// pages a process has mapped).
			ExplicitDataCacheControl: true,
			// go-fuse's xattr pass-through is fine, but security labels
			// would cost a GETXATTR per write.
			IgnoreSecurityLabels: true,
			Debug:                opts.Debug,
		},
	}
	server, err := fs.Mount(mountpoint, root.RootNode, fopts)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("%w: mount %s: %v", ErrUnavailable, mountpoint, err)
		}
		return nil, fmt.Errorf("powerfs: mount %s: %w", mountpoint, err)
	}
	pfs.server = server
	var mst syscall.Stat_t
	if err := syscall.Stat(mountpoint, &mst); err == nil {
		// fusectl names a connection by the kernel's dev_t of the
		// superblock (MAJOR<<20 | MINOR; FUSE mounts have major 0).
		pfs.connID = uint64(unix.Major(mst.Dev))<<20 | uint64(unix.Minor(mst.Dev))
	}
	return pfs, nil
}

// Mountpoint is where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Backing is the backing directory.
func (f *FS) Backing() string { return f.backing }

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	for _, st := range f.files {
		if b := st.pendingBytes(); b > 0 || st.sizePending() {
			s.PendingBytes += b
			s.PendingFiles++
		}
	}
	return s
}

// Cut simulates a power cut. At once, no FSYNC succeeds any more and
// nothing more reaches the backing directory. Then the kernel's dirty
// pages for the mount are written back into the overlays (syncfs, best
// effort, at most drainTimeout), so that what the page cache held is
// counted as lost too; then every overlay is discarded and the file
// system freezes: every write, fsync, setattr, read and namespace change
// answers EIO until Unmount. Calling Cut again does nothing and returns
// a zero report.
func (f *FS) Cut() CutReport { return f.CutThen(nil) }

// CutThen is Cut that calls then right after the instant of the cut,
// before the page cache is drained and the overlays are discarded: the
// place to kill -9 the processes using the file system, so that they die
// with the power (and the dirty pages their exit writes back are counted
// with the rest). then must not touch the file system's mapped memory
// from this process. If a cut armed with ArmCut has already happened,
// CutThen finishes that one.
func (f *FS) CutThen(then func()) CutReport {
	start := time.Now()
	f.mu.Lock()
	if f.cutDone {
		f.mu.Unlock()
		return CutReport{}
	}
	f.startCutLocked()
	rep := CutReport{Armed: f.armedCut}
	f.mu.Unlock()

	if then != nil {
		then()
	}
	rep.DrainErr = f.drainPageCache(drainTimeout)

	f.mu.Lock()
	f.frozen = true
	f.cutDone = true
	rep.Drained = f.stats.BytesWritten - f.cutBase
	for ino, st := range f.files {
		b := st.pendingBytes()
		if b > 0 || st.sizePending() {
			rep.Files++
			rep.DroppedBytes += b
			if st.sizePending() {
				rep.SizeChanges++
			}
			rep.Lost = append(rep.Lost, LostFile{Name: st.name, Bytes: b, SizePending: st.sizePending(), Size: st.size, DurableSize: st.durable})
		}
		st.pages = nil
		delete(f.files, ino)
	}
	sort.Slice(rep.Lost, func(i, j int) bool { return rep.Lost[i].Name < rep.Lost[j].Name })
	f.stats.DroppedAtCut += rep.DroppedBytes
	f.stats.FilesAtCut += rep.Files
	f.stats.SizesAtCut += rep.SizeChanges
	f.stats.DrainedAtCut += min(rep.Drained, rep.DroppedBytes)
	f.mu.Unlock()
	rep.Took = time.Since(start)
	return rep
}

// ArmCut arms the power cut to happen inside the next WRITE request to a
// file whose path in the mount match accepts (nil: any file), right after
// that write reached the overlay and before it could be fsynced: a cut in
// the middle of an I/O burst, the worst instant for the writer. The
// returned channel is closed at the instant of the cut; finish the cut
// with CutThen (or Cut) then. Until it fires, the file system works
// normally. match runs inside the file system's lock: it must be a plain
// function of the name.
func (f *FS) ArmCut(match func(name string) bool) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	if f.cutting {
		close(ch)
		return ch
	}
	if f.armed {
		close(f.armCh)
	}
	f.armed, f.armMatch, f.armCh = true, match, ch
	return ch
}

// startCutLocked is the instant of the power cut.
func (f *FS) startCutLocked() {
	if f.cutting {
		return
	}
	f.cutting = true
	f.stats.Cut = true
	f.cutBase = f.stats.BytesWritten
	if f.armed {
		close(f.armCh)
		f.armed, f.armMatch, f.armCh = false, nil, nil
	}
}

// armedWriteLocked fires an armed cut after a write to name.
func (f *FS) armedWriteLocked(name string) {
	if f.armed && !f.cutting && (f.armMatch == nil || f.armMatch(name)) {
		f.armedCut = true
		f.startCutLocked()
	}
}

const drainTimeout = 5 * time.Second

// drainPageCache asks the kernel to write back the mount's dirty pages
// (they arrive as WRITE requests, which during the cut still go into the
// overlays) without making anything durable: FSYNC is refused by now, and
// the SYNCFS request that follows is not implemented here. It returns once
// no WRITE has arrived for 50 ms.
func (f *FS) drainPageCache(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		fd, err := unix.Open(f.mountpoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		err = unix.Syncfs(fd)
		unix.Close(fd)
		done <- err
	}()
	deadline := time.After(timeout)
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-deadline:
		return fmt.Errorf("syncfs on %s did not return within %s", f.mountpoint, timeout)
	}
	// FUSE writeback is asynchronous: syncfs can return while WRITE
	// requests it started are still queued for us. Wait until none has
	// arrived for a while.
	last := int64(-1)
	quiet := 0
	for quiet < 5 {
		select {
		case <-deadline:
			return fmt.Errorf("writes to %s did not settle within %s of the cut", f.mountpoint, timeout)
		case <-time.After(10 * time.Millisecond):
		}
		f.mu.Lock()
		n := f.writeReqs
		f.mu.Unlock()
		if n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	return nil
}

// Unmount unmounts the file system and waits for the server to stop.
// Changes not fsynced by then never reach the backing directory, Cut or
// no Cut: an unmount here is not a clean shutdown. If the plain unmount
// fails (files still open, e.g. by a process that was killed and not yet
// reaped, or a request the kernel still waits for), it detaches the mount
// lazily and aborts the FUSE connection, so that no request can reach the
// backing directory any more either way.
func (f *FS) Unmount() error {
	f.unmountOnce.Do(func() { f.unmountErr = f.unmount() })
	return f.unmountErr
}

func (f *FS) unmount() error {
	if err := f.server.Unmount(); err == nil {
		return nil
	} else if err2 := unix.Unmount(f.mountpoint, unix.MNT_DETACH); err2 != nil && !errors.Is(err2, unix.EINVAL) {
		return fmt.Errorf("powerfs: unmount %s: %v; lazy unmount: %v", f.mountpoint, err, err2)
	}
	abortErr := f.abortConnection()
	done := make(chan struct{})
	go func() { f.server.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("powerfs: %s detached but the FUSE server did not stop within 10s (abort: %v)", f.mountpoint, abortErr)
	}
}

// abortConnection writes to the connection's abort file in fusectl,
// mounting fusectl on a private directory if it is not mounted at
// /sys/fs/fuse/connections.
func (f *FS) abortConnection() error {
	id := strconv.FormatUint(f.connID, 10)
	write := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, id, "abort"), []byte("1"), 0)
	}
	if err := write("/sys/fs/fuse/connections"); err == nil {
		return nil
	}
	dir, err := os.MkdirTemp("", "powerfs-fusectl-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount("fusectl", dir, "fusectl", 0, ""); err != nil {
		return fmt.Errorf("mount fusectl: %w", err)
	}
	defer func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }() // a lazy detach of a control file system
	return write(dir)
}

// stateLocked returns the overlay of the backing inode st describes,
// creating a clean one (the backing file as it is) if there is none.
// name is the file's path in the mount, for reports.
func (f *FS) stateLocked(st *syscall.Stat_t, name string) *fileState {
	s := f.files[st.Ino]
	if s == nil {
		s = &fileState{size: st.Size, durable: st.Size, floor: st.Size}
		f.files[st.Ino] = s
	}
	if name != "" {
		s.name = name
	}
	return s
}

// fixSizeLocked replaces a backing size by the overlay's, if there is one.
func (f *FS) fixSizeLocked(ino uint64, size *uint64) {
	if s := f.files[ino]; s != nil {
		*size = uint64(s.size)
	}
}

func (f *FS) refuseLocked() syscall.Errno {
	if f.cutting {
		f.stats.RefusedOthers++
		return syscall.EIO
	}
	return 0
}

func (f *FS) backingErrLocked(err error) syscall.Errno {
	f.stats.BackingErrors++
	f.stats.LastBackingErr = err.Error()
	return fs.ToErrno(err)
}
