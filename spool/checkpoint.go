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
	upTo := s.jnl.covered()
	if upTo <= s.jnl.checkpointed() {
		return nil
	}
	if err := syncStore(s.opts.Dir); err != nil {
		return err
	}
	return s.jnl.markCheckpoint(upTo)
}

// kickCheckpoint asks for a checkpoint soon, without waiting.
func (s *Spool) kickCheckpoint() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
