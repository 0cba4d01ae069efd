package spool

import (
	"context"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// dedupFilter lets an append skip the store lookup for an id that was
// certainly never stored. Nearly every id an app sends is new, and that
// lookup (memtables, then a bloom filter and a table index per level) was
// the costliest single step of staging an append: 12% of the agent's CPU
// under requests of 100 actions.
//
// It is a bloom filter of every dedup key in the store: false positives
// cost the lookup it replaces, a false negative would store a duplicate.
// So until it holds every key it is not used at all:
//   - it is created, and from then on every key the committer stages is
//     added (before the transaction commits: a staged key that then fails
//     to commit is only a false positive);
//   - then a scan of the store, on a snapshot taken after that point, adds
//     every key already there (journal replay included: Open replays before
//     the scan starts). A key is either in the snapshot or staged after the
//     filter existed.
//
// Expired keys stay in the filter (false positives) until it is rebuilt,
// which happens the same way when more keys were added than it was sized
// for. The old filter serves until the new one is complete.
type dedupFilter struct {
	mu       sync.Mutex
	cur      *z.Bloom // complete: answers; nil until the first build ends
	curKeys  int      // keys added to cur, expired ones included
	capacity int      // keys cur was sized for
	next     *z.Bloom // being built: takes every add, answers nothing
	nextKeys int
	nextCap  int
	building bool
}

const (
	// dedupFilterMinKeys fills 2 MiB of bits (16M, a power of two, as the
	// filter rounds up) at a 1% false-positive rate: the 1M-entry fill of
	// the memory benchmark fits without a rebuild.
	dedupFilterMinKeys = 1_700_000
	dedupFilterFPRate  = 0.01
)

// dedupRef is a dedup key and its hash in the filter.
type dedupRef struct {
	key  []byte
	hash uint64
}

func newDedupRef(queue, id string) dedupRef {
	k := dedupKey(queue, id)
	return dedupRef{k, z.MemHash(k)}
}

// mayContain is false only for a key certainly not in the store; h is
// the key's z.MemHash.
func (f *dedupFilter) mayContain(h uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur == nil || f.cur.Has(h)
}

// add records a key staged for the store, by its z.MemHash. It reports
// whether the filter now holds more keys than it was sized for and should
// be rebuilt.
func (f *dedupFilter) add(h uint64) (full bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next != nil {
		f.next.Add(h)
		f.nextKeys++
	}
	if f.cur == nil {
		return false
	}
	f.cur.Add(h)
	f.curKeys++
	return !f.building && f.curKeys > f.capacity
}

// begin starts a build sized for keys; false if one is running.
func (f *dedupFilter) begin(keys int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.building {
		return false
	}
	f.building = true
	f.next = z.NewBloomFilter(float64(keys), dedupFilterFPRate)
	f.nextKeys, f.nextCap = 0, keys
	return true
}

func (f *dedupFilter) addScanned(hs []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range hs {
		f.next.Add(h)
	}
	f.nextKeys += len(hs)
}

// finish swaps the built filter in (ok) or drops it (the scan failed). It
// returns how many keys the filter in use holds and whether that is more
// than it was sized for.
func (f *dedupFilter) finish(ok bool) (keys int, full bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok {
		f.cur, f.curKeys, f.capacity = f.next, f.nextKeys, f.nextCap
	}
	f.next, f.building = nil, false
	return f.curKeys, f.cur != nil && f.curKeys > f.capacity
}

func (f *dedupFilter) ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur != nil
}

func (f *dedupFilter) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.curKeys
}

// scanDedupKeys fills the filter begun by the committer with the store's
// dedup keys and swaps it in. A filter that turns out smaller than what it
// holds asks the committer for another, twice the size.
func (s *Spool) scanDedupKeys(ctx context.Context) {
	start := time.Now()
	scanned := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		opt.Prefix = []byte{kindDedup, '/'}
		it := txn.NewIterator(opt)
		defer it.Close()
		batch := make([]uint64, 0, 1024)
		for it.Rewind(); it.Valid(); it.Next() {
			batch = append(batch, z.MemHash(it.Item().Key()))
			scanned++
			if len(batch) == cap(batch) {
				if err := ctx.Err(); err != nil {
					return err
				}
				s.dedup.addScanned(batch)
				batch = batch[:0]
			}
		}
		s.dedup.addScanned(batch)
		return nil
	})
	n, full := s.dedup.finish(err == nil)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("spool: could not build the duplicate filter; appends look every id up in the store", "err", err)
		}
		return
	}
	s.log.Debug("spool: duplicate filter built", "ids_in_store", scanned, "ids", n,
		"took", time.Since(start).Round(time.Millisecond))
	if full {
		s.dedupWant.Store(int64(2 * n))
	}
}

// dedupLoop scans for each filter the committer begins.
func (s *Spool) dedupLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.dedupScan:
			s.scanDedupKeys(s.ctx)
		}
	}
}

// beginDedupFilter starts a new filter if one was asked for. Only the
// committer calls it, between groups, so no key staged before the filter
// exists is still uncommitted when the scan takes its snapshot: each key
// is in the snapshot or was added to the new filter as it was staged.
func (s *Spool) beginDedupFilter() {
	if keys := s.dedupWant.Swap(0); keys > 0 && s.dedup.begin(max(int(keys), s.dedupMinKeys())) {
		select {
		case s.dedupScan <- struct{}{}:
		default:
		}
	}
}

func (s *Spool) dedupMinKeys() int {
	if s.opts.dedupFilterKeys > 0 {
		return s.opts.dedupFilterKeys
	}
	return dedupFilterMinKeys
}
