package spool

import (
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// gcLoop reclaims value-log space. As a FIFO drains, whole value-log files
// become garbage; RunValueLogGC rewrites what little is still live in one
// file and deletes it. It runs until it finds nothing worth rewriting.
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
			err := s.db.RunValueLogGC(0.5)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log gc failed", "err", err)
				}
				break
			}
		}
	}
}
