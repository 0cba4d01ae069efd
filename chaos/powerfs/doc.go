// Package powerfs is a FUSE file system for power-loss tests: a loopback
// over a real backing directory that keeps every change to a file's
// contents and size in memory until that file is fsynced, and forgets all
// of it at a simulated power cut.
//
// What reaches the backing directory, and when:
//
//   - Data written to a file (write(2), or dirty pages of a MAP_SHARED
//     mapping that the kernel writes back) goes to a per-file overlay of
//     4 KiB pages held in memory. Reads see the overlay merged over the
//     backing file, so the process that wrote sees its writes, as on a
//     real file system.
//   - Size changes (ftruncate, setattr size, open with O_TRUNC,
//     fallocate that extends the file, a write past the end) are pending
//     in the same overlay.
//   - FSYNC on any open handle of a file (fsync, fdatasync, and
//     msync(MS_SYNC) on a shared mapping all arrive as FSYNC; the kernel
//     writes the dirty mapped pages back first) applies that file's pending
//     size and pages to the backing file. Only then is the data durable.
//   - FLUSH (close) and RELEASE make nothing durable.
//   - Metadata operations (create, mkdir, mknod, symlink, link, rename,
//     unlink, rmdir, chmod, chown, utimes, xattrs) apply to the backing
//     directory at once. That is a simplification: a real file system may
//     lose a directory entry that was not made durable by an fsync of its
//     directory. Badger fsyncs the directory after creating or renaming
//     its files, so the simplification does not hide a missing fsync in
//     badger; it could hide one in code that creates a file, fsyncs the
//     file and never fsyncs the directory. A file created and never
//     fsynced survives a cut as an empty file (its name is durable, its
//     contents are not).
//
// Cut simulates the power cut: from the instant it starts no fsync
// succeeds and nothing more reaches the backing directory; the kernel's
// dirty page cache for the mount is then pulled into the overlays (so the
// bytes lost are counted, not only the ones that had reached this
// process), every overlay is discarded, and from then on every write,
// fsync, setattr, read and namespace change answers EIO. After Unmount
// (which works even while a killed process's files were still open: it
// falls back to a lazy unmount and aborts the FUSE connection) the backing
// directory holds exactly what was fsynced, and a fresh Mount of it is
// the machine after the power came back. (Unmount without Cut forgets
// unsynced changes the same way: there is no clean shutdown.)
//
// ArmCut makes the cut happen inside the next WRITE to a chosen file, for
// a cut in the middle of a commit rather than at an instant where
// everything happens to be synced.
//
// Not simulated: a real disk may also keep part of what was not fsynced
// (pages written back before the cut, torn writes); powerfs always drops
// all of it, one extreme of what a power cut may do.
//
// The process that serves the file system must not touch memory mapped
// from it: a page fault there waits for the server, the faulting thread
// cannot be stopped for the garbage collector, and the server's goroutines
// wait for the collector. Map files in another process (the agent is one;
// the unit tests use a child process).
//
// The kernel is never told to bypass its page cache (no direct_io), so
// mmap with MAP_SHARED works as badger needs it. Attribute and entry
// caching in the kernel are off, so sizes always come from the overlay.
// The backing directory must be on one file system: overlays are keyed by
// the backing inode number.
//
// Mounting needs /dev/fuse and CAP_SYS_ADMIN (the mount is done with
// mount(2) directly; no fusermount binary is needed). Mount returns an
// error that matches ErrUnavailable when either is missing, so tests can
// skip.
package powerfs
