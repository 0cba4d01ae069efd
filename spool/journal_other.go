//go:build !linux

package spool

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

func preallocate(f *os.File, size int64) error { return f.Truncate(size) }

func openDirect(path string, flag int) (*os.File, error) { return nil, errNoDirect }

func directErr(err error) error { return err }
