//go:build !windows && !plan9 && !js && !wasip1 && !aix

package spool

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes the same lock badger takes (flock on the directory) for
// the checks that run before badger.Open, so they never read a store that
// another process is writing, and a store in use is reported as ErrLocked
// rather than judged. The lock is released before badger.Open takes it.
// ok is false when the lock could not be taken for another reason (a
// filesystem without flock, say): the caller skips its checks and leaves
// the verdict to badger.Open.
func lockDir(dir string) (unlock func(), ok bool, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, false, nil //nolint:nilerr // no lock to be had: badger.Open decides (above)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, false, nil
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, true, nil
}
