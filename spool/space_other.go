//go:build !unix

package spool

func freeBytes(dir string) int64 { return -1 }
