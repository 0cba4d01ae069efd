package spool

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes a journal segment's data. Its size never changes
// (preallocate), so the only metadata flushed with it is the written mark of
// blocks reached for the first time (see the segment format, journal.go).
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// preallocate reserves a segment's blocks and sets its size, so appends
// only overwrite.
func preallocate(f *os.File, size int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EOPNOTSUPP, unix.ENOSYS:
			return f.Truncate(size)
		}
		return err
	}
}

// openDirect opens path for direct I/O (O_DIRECT: no page cache). A file
// system that refuses it answers errNoDirect.
func openDirect(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0o600)
	return f, directErr(err)
}

// directErr marks EINVAL, the answer of a file system without direct I/O
// (or with larger blocks than directAlign), as errNoDirect.
func directErr(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %w", errNoDirect, err)
	}
	return err
}
