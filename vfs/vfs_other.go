//go:build !linux

package vfs

import "os"

func datasync(f *os.File) error { return f.Sync() }

func preallocate(f *os.File, size int64) error { return f.Truncate(size) }

func openDirect(string, int, os.FileMode) (*os.File, error) { return nil, ErrNoDirect }

// DirectErr: no direct I/O here to refuse.
func DirectErr(err error) error { return err }
