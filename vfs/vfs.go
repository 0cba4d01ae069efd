// Package vfs is the file system the journal writes through: the
// operating system's (Default), or a file system in memory that can lose
// its unsynced writes the way a power cut does and answer any call with an
// error (NewMem), so that power cuts and faulty disks are proven in plain
// go test, on any machine (pebble's vfs is the model).
//
// The interface is what a write-ahead log needs and no more: files written
// at offsets and synced, directories whose entries are made durable by
// syncing them, direct I/O where the system has it.
package vfs

import (
	"errors"
	"io"
	"os"
)

// FS is a file system.
type FS interface {
	// OpenFile opens name as os.OpenFile does (O_CREATE, O_EXCL, O_TRUNC,
	// O_RDWR, O_WRONLY are honoured).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// OpenDirect opens name for direct I/O (no page cache; writes of whole
	// aligned blocks). ErrNoDirect where the system or file system does
	// not offer it.
	OpenDirect(name string, flag int, perm os.FileMode) (File, error)
	ReadFile(name string) ([]byte, error)
	Remove(name string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir lists the regular files of dir, by name, sorted.
	ReadDir(dir string) ([]string, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes dir's entries durable: files created, renamed or
	// removed in it survive a power cut once it returns.
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Writer
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// Datasync makes its data durable (fdatasync): enough when its size
	// does not change.
	Datasync() error
	// Preallocate sets the file's size to size and reserves its blocks, so
	// that writes within it change no metadata.
	Preallocate(size int64) error
	Close() error
}

// ErrNoDirect: direct I/O is not offered here.
var ErrNoDirect = errors.New("direct I/O not supported")

// Default is the operating system's file system.
var Default FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenDirect(name string, flag int, perm os.FileMode) (File, error) {
	f, err := openDirect(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) ReadFile(name string) ([]byte, error)        { return os.ReadFile(name) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(o, n string) error                    { return os.Rename(o, n) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (f osFile) Datasync() error              { return datasync(f.File) }
func (f osFile) Preallocate(size int64) error { return preallocate(f.File, size) }

// Fd is the file's descriptor (tests look at its flags).
func (f osFile) Fd() uintptr { return f.File.Fd() }
