package spool

import (
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// gcLoop reclaims value-log space. As a FIFO drains, whole value-log files
// become garbage; RunValueLogGC rewrites what little is still live in one
// file and deletes it. It runs until it finds nothing worth rewriting.
//
// The rewrite goes through badger's write path, unsynced (the journal does
// not see it), so the old file must outlive the moved values' sync: badger
// defers deleting a rewritten file while any iterator is open, and the loop
// holds one open across the GC and a checkpoint. Should the checkpoint
// fail, the guard stays open (the files stay) until one succeeds.
func (s *Spool) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for i := 0; i < 16 && s.ctx.Err() == nil; i++ {
			if !s.collectOne() {
				break
			}
		}
	}
}

// collectOne rewrites one value-log file, if one is worth it, and lets
// badger delete it once the moved values are synced. It reports whether a
// file was rewritten.
func (s *Spool) collectOne() bool {
	guard := s.holdLogDeletes()
	defer guard()
	s.opts.rewrites.fid.Store(-1)
	err := s.db.RunValueLogGC(0.5)
	if err != nil {
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("value log gc failed", "err", err)
		}
		return false
	}
	// The rewritten file is still on disk (the guard): values its damage
	// hid from badger's rewrite are written again before it goes.
	if fid := s.opts.rewrites.fid.Load(); fid >= 0 {
		n, err := s.rescueAfterDamage(uint32(fid))
		if err != nil {
			s.log.Error("spool: reading a value log that GC rewrote, past damage, failed; values after the damage may be lost with it", "file", fmt.Sprintf("%06d.vlog", fid), "err", err)
		} else if n > 0 {
			s.log.Warn("spool: values after damage in a value log written again before GC deleted it", "file", fmt.Sprintf("%06d.vlog", fid), "values", n)
		}
	}
	for {
		err := s.syncForGC()
		if err == nil {
			return true
		}
		s.log.Error("spool: sync after value log gc failed; the rewritten file is kept until a sync succeeds", "err", err)
		select {
		case <-s.ctx.Done():
			// Closing: badger deletes the file when the guard closes,
			// before Close syncs the store. A disk that fails every sync
			// has lost more than this.
			return false
		case <-time.After(time.Second):
		}
	}
}

func (s *Spool) syncForGC() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	return syncStore(s.opts.Dir)
}

// holdLogDeletes opens an iterator (on a prefix that holds no keys): while
// it is open badger defers deleting value-log files that GC rewrote. The
// returned func closes it; the deferred deletions happen then.
func (s *Spool) holdLogDeletes() func() {
	txn := s.db.NewTransaction(false)
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = []byte("g\x00guard")
	it := txn.NewIterator(opt)
	return func() {
		it.Close()
		txn.Discard()
	}
}
