//go:build !linux

package spool

// trimLoop: paging out mapped store files is Linux-only.
func (s *Spool) trimLoop() { s.trimWG.Done() }
