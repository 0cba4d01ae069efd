package localapi

import (
	"context"
	"sync/atomic"

	"github.com/outpost-agent/outpost/spool"
)

// slowStore holds appends until block is closed, to pin a request in flight.
type slowStore struct {
	Store
	block chan struct{}
	n     atomic.Int32
}

func (s *slowStore) Append(ctx context.Context, recs []spool.Record) (spool.AppendResult, error) {
	s.n.Add(1)
	<-s.block
	return s.Store.Append(ctx, recs)
}

func (s *slowStore) waiting() int32 { return s.n.Load() }
