//go:build !linux

package spool

// trimLoop: paging out mapped store files is Linux-only.
func (s *Spool) trimLoop() { s.trimWG.Done() }

// releasePages: elsewhere mapped pages stay until the mapping is closed.
func releasePages(string) {}
