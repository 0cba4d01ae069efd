package spool

import (
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
