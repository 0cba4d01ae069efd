package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// KV is what the de-duplication store needs of a spool.
type KV interface {
	Get(key string) ([]byte, bool, error)
	Write(ctx context.Context, kvs []spool.KV, recs []spool.Record) (spool.AppendResult, error)
}

var _ KV = (*spool.Spool)(nil)

// SpoolDedupe keeps delivered event ids in a spool (the relay's own, in
// its data directory): written through the spool's group commit and
// journal, so an id is on disk before the offset past it is committed,
// and expired by badger after TTL.
type SpoolDedupe struct {
	Store KV
	TTL   time.Duration
}

const dedupePrefix = "relay/delivered/"

var _ Dedupe = SpoolDedupe{}

// Delivered implements Dedupe.
func (d SpoolDedupe) Delivered(eventID string) (string, bool, error) {
	v, ok, err := d.Store.Get(dedupePrefix + eventID)
	if err != nil {
		return "", false, fmt.Errorf("dedupe: %w", err)
	}
	return string(v), ok, nil
}

// Remember implements Dedupe.
func (d SpoolDedupe) Remember(ctx context.Context, ds []Delivery) error {
	kvs := make([]spool.KV, len(ds))
	for i, x := range ds {
		kvs[i] = spool.KV{Key: dedupePrefix + x.EventID, Value: []byte(x.ID), TTL: d.TTL}
	}
	if _, err := d.Store.Write(ctx, kvs, nil); err != nil {
		return fmt.Errorf("dedupe: %w", err)
	}
	return nil
}
