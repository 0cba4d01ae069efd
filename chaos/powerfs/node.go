//go:build linux

package powerfs

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node whose file data goes through the overlay.
// Namespace operations are the loopback's, refused after the cut.
type node struct {
	fs.LoopbackNode
	pfs *FS
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
)

// path is the node's backing path.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		n.pfs.mu.Lock()
		n.pfs.fixSizeLocked(out.Attr.Ino, &out.Attr.Size)
		n.pfs.mu.Unlock()
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	if errno := n.LoopbackNode.Getattr(ctx, nil, out); errno != 0 {
		return errno
	}
	n.pfs.mu.Lock()
	n.pfs.fixSizeLocked(out.Ino, &out.Size)
	n.pfs.mu.Unlock()
	return 0
}

func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		var st unix.Statx_t
		if err := unix.Statx(h.fd, "", unix.AT_EMPTY_PATH, int(mask), &st); err != nil {
			return fs.ToErrno(err)
		}
		out.FromStatx(&st)
		n.pfs.mu.Lock()
		out.Size = uint64(h.st.size)
		n.pfs.mu.Unlock()
		return 0
	}
	if errno := n.LoopbackNode.Statx(ctx, nil, flags, mask, out); errno != 0 {
		return errno
	}
	n.pfs.mu.Lock()
	n.pfs.fixSizeLocked(out.Ino, &out.Size)
	n.pfs.mu.Unlock()
	return 0
}

// Setattr: a size change goes to the overlay; mode, owner and times apply
// to the backing file at once (metadata).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*handle)
	n.pfs.mu.Lock()
	if n.pfs.cutting {
		n.pfs.stats.RefusedOthers++
		n.pfs.mu.Unlock()
		return syscall.EIO
	}
	n.pfs.mu.Unlock()

	meta := *in
	meta.Valid &^= fuse.FATTR_SIZE | fuse.FATTR_FH | fuse.FATTR_LOCKOWNER | fuse.FATTR_KILL_SUIDGID
	if meta.Valid != 0 {
		var errno syscall.Errno
		if h != nil {
			errno = h.setMeta(&meta)
		} else {
			errno = n.LoopbackNode.Setattr(ctx, nil, &meta, out)
		}
		if errno != 0 {
			return errno
		}
	}
	if size, ok := in.GetSize(); ok {
		n.pfs.mu.Lock()
		if errno := n.pfs.refuseLocked(); errno != 0 {
			n.pfs.mu.Unlock()
			return errno
		}
		var st *fileState
		if h != nil {
			st = h.st
		} else {
			var bst syscall.Stat_t
			if err := syscall.Lstat(n.path(), &bst); err != nil {
				n.pfs.mu.Unlock()
				return fs.ToErrno(err)
			}
			if bst.Mode&syscall.S_IFMT != syscall.S_IFREG {
				n.pfs.mu.Unlock()
				return syscall.EINVAL
			}
			st = n.pfs.stateLocked(&bst, n.Path(nil))
		}
		st.truncate(int64(size))
		n.pfs.mu.Unlock()
	}
	if h != nil {
		return h.Getattr(ctx, out)
	}
	return n.Getattr(ctx, nil, out)
}

// openFlags are the flags the backing file is opened with: always
// read-write (an fsync may come through a read-only descriptor, and the
// overlay is applied through it), never truncating or appending (the
// overlay does that), never O_DIRECT (the overlay reads unaligned).
func openFlags(flags uint32) int {
	f := int(flags) &^ (syscall.O_ACCMODE | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_DIRECT |
		syscall.O_CREAT | syscall.O_EXCL | fuse.FMODE_EXEC)
	return f | syscall.O_RDWR | syscall.O_CLOEXEC | syscall.O_NOFOLLOW
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if n.pfs.cutting {
		n.pfs.stats.RefusedOthers++
		return nil, 0, syscall.EIO
	}
	fd, err := syscall.Open(n.path(), openFlags(flags), 0)
	if err == syscall.EACCES || err == syscall.EROFS || err == syscall.ETXTBSY {
		fd, err = syscall.Open(n.path(), openFlags(flags)&^syscall.O_RDWR|syscall.O_RDONLY, 0)
	}
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	h, errno := n.pfs.newHandleLocked(fd, false, n.Path(nil))
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		h.st.truncate(0)
	}
	return h, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if n.pfs.cutting {
		n.pfs.stats.RefusedOthers++
		return nil, nil, 0, syscall.EIO
	}
	p := filepath.Join(n.path(), name)
	var before syscall.Stat_t
	existed := syscall.Lstat(p, &before) == nil
	// The loopback creates the file (a durable name, metadata) and the
	// inode; its descriptor is replaced by ours.
	ch, lf, _, errno := n.LoopbackNode.Create(ctx, name, flags&^syscall.O_TRUNC, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if r, ok := lf.(fs.FileReleaser); ok {
		_ = r.Release(ctx) // the loopback file was only opened to be replaced
	}
	fd, err := syscall.Open(p, openFlags(flags), 0)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	h, errno := n.pfs.newHandleLocked(fd, !existed, filepath.Join(n.Path(nil), name))
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if existed && flags&syscall.O_TRUNC != 0 {
		h.st.truncate(0)
	}
	out.Attr.Size = uint64(h.st.size)
	return ch, h, 0, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return nil, errno
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 {
		delete(n.pfs.files, out.Attr.Ino) // a new inode: forget any state of a deleted one
	}
	return ch, errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

// lastLinkLocked returns the inode number of the regular file at p if
// removing p removes the file (its last link).
func lastLink(p string) (uint64, bool) {
	var st syscall.Stat_t
	if syscall.Lstat(p, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
		return 0, false
	}
	return st.Ino, true
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	ino, last := lastLink(filepath.Join(n.path(), name))
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && last {
		// Open handles keep their state; the inode number may be reused.
		delete(n.pfs.files, ino)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	var ino uint64
	var last bool
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		ino, last = lastLink(filepath.Join(np.path(), newName))
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 && last {
		delete(n.pfs.files, ino) // the file renamed over is gone
	}
	return errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return nil, errno
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 {
		n.pfs.fixSizeLocked(out.Attr.Ino, &out.Attr.Size)
	}
	return ch, errno
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if errno := n.pfs.refuseLocked(); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Removexattr(ctx, attr)
}

// Tmpfile is not supported: an O_TMPFILE file has no name the loopback
// could reopen it by.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange is refused so the kernel copies through READ and WRITE,
// and the copy lands in the overlay.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle,
	offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, errno := fs.NewLoopbackDirStream(n.path())
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{ds: ds, pfs: n.pfs}, 0, 0
}

// dirHandle is the loopback's directory stream with an fsyncdir that
// fails after the cut (directory entries are applied at once, so before
// the cut there is nothing to make durable).
type dirHandle struct {
	ds  fs.DirStream
	pfs *FS
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.ds.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
		return
	}
	d.ds.Close()
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	d.pfs.mu.Lock()
	defer d.pfs.mu.Unlock()
	if d.pfs.cutting {
		d.pfs.stats.FsyncsRefused++
		return syscall.EIO
	}
	return 0
}
