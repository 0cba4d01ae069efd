package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The spool also keeps the agent's small state beside the queues, in the
// same store and through the same group commit: the score cache, velocity
// counters, decision records and their late verdicts (laid out by
// decision.SpoolStore, the decision engine's store on the spool). Their
// keys live under "k/", apart from the queues' ranges.

// KV is one key to write. TTL > 0 makes badger expire it; Delete removes it.
type KV struct {
	Key    string
	Value  []byte
	TTL    time.Duration
	Delete bool
}

const kvPrefix = "k/"

func kvKey(k string) []byte { return append([]byte(kvPrefix), k...) }

// Write commits kvs and recs together, durably and atomically, and answers
// like Append for the records. Records are checked against MaxBytes; small
// state is not, so a full spool still records decisions.
func (s *Spool) Write(ctx context.Context, kvs []KV, recs []Record) (AppendResult, error) {
	for _, r := range recs {
		if _, ok := s.queues[r.Queue]; !ok {
			return AppendResult{}, fmt.Errorf("write: %w %q", ErrUnknownQueue, r.Queue)
		}
	}
	o := &op{kind: opPut, kvs: kvs, recs: recs, unsynced: len(recs) == 0 && s.opts.PutSyncWithin > 0}
	if err := s.submit(ctx, o); err != nil {
		return AppendResult{}, fmt.Errorf("write: %w", err)
	}
	return o.res, nil
}

// waitApplied waits until no write that was answered is still being
// applied to badger (a group answered before its apply: commitGroup).
// Whoever was answered reads what it wrote; a read that began before an
// answer may see the write or not, as it would have without this.
func (s *Spool) waitApplied() {
	s.applying.RLock()
	s.applying.RUnlock() //nolint:staticcheck // SA2001: the empty section is the wait
}

// Get reads one key; ok is false when it is absent or expired.
func (s *Spool) Get(key string) (value []byte, ok bool, err error) {
	s.waitApplied()
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(kvKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		value, err = it.ValueCopy(nil)
		ok = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("get: %w", err)
	}
	return value, ok, nil
}

// Scan calls fn for each live key under prefix from start (inclusive), in
// key order, until fn returns false. Keys are passed without the "k/"
// namespace.
func (s *Spool) Scan(prefix, start string, fn func(key string, value []byte) bool) error {
	s.waitApplied()
	err := s.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		opt.Prefix = kvKey(prefix)
		it := txn.NewIterator(opt)
		defer it.Close()
		from := kvKey(prefix)
		if start > prefix {
			from = kvKey(start)
		}
		for it.Seek(from); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if !fn(string(it.Item().Key()[len(kvPrefix):]), v) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

func (g *group) applyPut(o *op) error {
	if g.refuseForDisk() {
		return g.diskFull()
	}
	if len(o.recs) > 0 {
		if err := g.applyAppend(o); err != nil {
			return err
		}
	}
	for _, kv := range o.kvs {
		k := kvKey(kv.Key)
		var err error
		switch {
		case kv.Delete:
			err = g.del(k)
		case kv.TTL > 0:
			err = g.setTTL(k, kv.Value, kv.TTL)
		default:
			err = g.set(k, kv.Value)
		}
		if err != nil {
			return werr("stage put: %w", err)
		}
	}
	return nil
}
