package vfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

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

// openDirect opens with O_DIRECT; a file system that refuses it (EINVAL)
// answers ErrNoDirect.
func openDirect(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|unix.O_DIRECT, perm)
	return f, DirectErr(err)
}

// DirectErr marks EINVAL, the answer of a file system without direct I/O
// (or with larger blocks than the writes'), as ErrNoDirect.
func DirectErr(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %w", ErrNoDirect, err)
	}
	return err
}
