package spool

import (
	"time"
)

// checkpointLoop checkpoints when the committer starts a new journal
// segment (kicked) and at least every checkpointInterval while there is
// something to cover, so the journal stays short and replay at start quick.
func (s *Spool) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		if err := s.checkpoint(); err != nil {
			s.log.Error("spool: checkpoint failed; the journal keeps the writes and grows until one succeeds", "err", err)
		}
	}
}

const checkpointInterval = 5 * time.Second

// checkpoint syncs badger's files and marks the journal covered up to the
// last record applied to badger before the sync began.
func (s *Spool) checkpoint() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	upTo := s.jnl.Covered()
	if upTo <= s.jnl.Checkpointed() {
		return nil
	}
	// Every badger version up to this one is in the files' mappings now
	// (a write reaches the log files before its version is counted), so
	// the sync below makes it durable.
	version := s.appliedVersion()
	err := syncStore(s.opts.Dir)
	if err == nil {
		err = s.jnl.MarkCheckpoint(upTo, version)
	}
	if err != nil {
		s.ckptErrors.Add(1)
		return err
	}
	s.ckpts.Add(1)
	return nil
}

// JournalStats are the journal's figures for monitoring.
type JournalStats struct {
	// Replayed: records replayed into the store at start (0 after a
	// clean stop).
	Replayed int
	// Pending: records on disk in the journal that no checkpoint covers
	// yet. It stays small while checkpoints succeed; growing, it says they
	// fail (the log says why) and the journal is taking the disk.
	Pending uint64
	// Checkpoints and CheckpointErrors count since start.
	Checkpoints, CheckpointErrors int64
}

// JournalStats reports the journal's figures.
func (s *Spool) JournalStats() JournalStats {
	applied, ckpt := s.jnl.Covered(), s.jnl.Checkpointed()
	var pending uint64
	if applied > ckpt {
		pending = applied - ckpt
	}
	return JournalStats{Replayed: s.replayed, Pending: pending,
		Checkpoints: s.ckpts.Load(), CheckpointErrors: s.ckptErrors.Load()}
}

// kickCheckpoint asks for a checkpoint soon, without waiting.
func (s *Spool) kickCheckpoint() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// appliedVersion is the newest version badger has applied: the read
// timestamp of a fresh read transaction, which badger hands out only once
// every commit up to it is in the memtables. Not db.MaxVersion() beside
// running commits: it reads the memtable's counter, which badger's writer
// updates without the lock MaxVersion takes (badger v4.9.6; the race
// detector caught it in a race-built agent, TestCheckpointBesideCommits).
func (s *Spool) appliedVersion() uint64 {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs()
}
