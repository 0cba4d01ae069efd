//go:build linux

package powerfs

import (
	"context"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// handle is an open regular file: a read-write descriptor of the backing
// file and the inode's overlay. It deliberately does not offer a
// passthrough descriptor, so the kernel sends every read and write here.
type handle struct {
	pfs  *FS
	st   *fileState
	fd   int
	name string // path in the mount at open

	closeOnce sync.Once
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
)

// newHandleLocked wraps fd. fresh: the file was just created, so any state
// kept under its inode number belongs to a deleted file.
func (f *FS) newHandleLocked(fd int, fresh bool, name string) (*handle, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, fs.ToErrno(err)
	}
	if fresh {
		delete(f.files, st.Ino)
	}
	return &handle{pfs: f, fd: fd, st: f.stateLocked(&st, name), name: name}, 0
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	if h.pfs.frozen {
		return nil, syscall.EIO
	}
	n, err := h.st.read(h.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	// During the cut (before the freeze) writes still land in the overlay:
	// that is the kernel handing over its dirty pages, to be counted and
	// discarded with the rest.
	h.pfs.writeReqs++
	if h.pfs.frozen {
		h.pfs.stats.RefusedWrites++
		return 0, syscall.EIO
	}
	if err := h.st.write(h.fd, data, off); err != nil {
		return 0, fs.ToErrno(err)
	}
	h.pfs.stats.BytesWritten += int64(len(data))
	h.pfs.armedWriteLocked(h.name)
	return uint32(len(data)), 0
}

// Fsync makes the file's overlay durable. fdatasync and msync(MS_SYNC)
// arrive here too (flags has FUSE_FSYNC_FDATASYNC for them); both apply
// data and size, which is what fdatasync must do for a size change.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	if h.pfs.cutting {
		h.pfs.stats.FsyncsRefused++
		return syscall.EIO
	}
	n, err := h.st.sync(h.fd, h.pfs.opts.SyncBacking)
	h.pfs.stats.BytesSynced += n
	if err != nil {
		return h.pfs.backingErrLocked(err)
	}
	h.pfs.stats.Fsyncs++
	return 0
}

// Flush (every close of a descriptor) makes nothing durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Release (the last close) makes nothing durable either; the overlay stays
// with the inode.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.closeOnce.Do(func() { syscall.Close(h.fd) })
	return 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	h.pfs.mu.Lock()
	out.Size = uint64(h.st.size)
	h.pfs.mu.Unlock()
	return 0
}

// Allocate supports plain fallocate (mode 0), which only ever grows the
// size; the space reservation itself is not simulated.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	if errno := h.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	if end := int64(off + size); end > h.st.size {
		h.st.truncate(end)
	}
	return 0
}

// setMeta applies mode, owner and times through the descriptor.
func (h *handle) setMeta(in *fuse.SetAttrIn) syscall.Errno {
	if m, ok := in.GetMode(); ok {
		if err := syscall.Fchmod(h.fd, m); err != nil {
			return fs.ToErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := syscall.Fchown(h.fd, su, sg); err != nil {
			return fs.ToErrno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		var err error
		if aok {
			if ts[0], err = unix.TimeToTimespec(atime); err != nil {
				return fs.ToErrno(err)
			}
		}
		if mok {
			if ts[1], err = unix.TimeToTimespec(mtime); err != nil {
				return fs.ToErrno(err)
			}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(h.fd), ts, 0); err != nil {
			return fs.ToErrno(err)
		}
	}
	return 0
}
