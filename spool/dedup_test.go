package spool

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func waitDedupReady(t *testing.T, s *Spool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.dedup.ready() {
		if time.Now().After(deadline) {
			t.Fatal("the duplicate filter was not built in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func appendIDs(t *testing.T, s *Spool, ids []string) AppendResult {
	t.Helper()
	recs := make([]Record, len(ids))
	for i, id := range ids {
		recs[i] = Record{Queue: "tencent", ID: id, Payload: []byte(`{"n":1}`)}
	}
	res, err := s.Append(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The filter answers "not stored" for new ids (the lookup it saves) and
// never for a stored one, before and after a restart, where it is built
// from the store.
func TestDedupFilterAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Queues: []string{"tencent"}}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for b := range 20 {
		ids := make([]string, 100)
		for i := range ids {
			ids[i] = fmt.Sprintf("stored-%d-%d", b, i)
		}
		if res := appendIDs(t, s, ids); res.Accepted != 100 {
			t.Fatalf("accepted %d", res.Accepted)
		}
		stored = append(stored, ids...)
	}
	check := func(s *Spool) {
		t.Helper()
		waitDedupReady(t, s)
		for _, id := range stored {
			if !s.dedup.mayContain(newDedupRef("tencent", id).hash) {
				t.Fatalf("the filter says %q was never stored", id)
			}
		}
		skipped := 0
		for i := range 1000 {
			if !s.dedup.mayContain(newDedupRef("tencent", fmt.Sprintf("new-%d", i)).hash) {
				skipped++
			}
		}
		if skipped < 950 {
			t.Errorf("the filter ruled out only %d of 1000 new ids", skipped)
		}
		res := appendIDs(t, s, stored[:1000])
		if res.Accepted != 0 || res.Duplicates != 1000 {
			t.Errorf("stored ids again: %+v accepted, %d duplicates", res.Accepted, res.Duplicates)
		}
	}
	check(s)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	check(s)
	res := appendIDs(t, s, stored[1000:])
	if res.Accepted != 0 || res.Duplicates != len(stored)-1000 {
		t.Errorf("after restart: %d accepted, %d duplicates", res.Accepted, res.Duplicates)
	}
}

// A filter far too small is rebuilt again and again while appends run from
// many goroutines; no id stored meanwhile is ever left out.
func TestDedupFilterRebuildsUnderLoad(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Queues: []string{"tencent"}, dedupFilterKeys: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	const workers, per = 8, 400
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < per; i += 4 {
				ids := []string{
					fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("w%d-%d", w, i+1),
					fmt.Sprintf("w%d-%d", w, i+2), fmt.Sprintf("w%d-%d", w, i+3),
				}
				appendIDs(t, s, ids)
			}
		})
	}
	wg.Wait()
	waitDedupReady(t, s)
	s.dedup.mu.Lock()
	capacity := s.dedup.capacity
	s.dedup.mu.Unlock()
	if capacity <= 64 {
		t.Errorf("the filter was never rebuilt larger: sized for %d keys", capacity)
	}
	for w := range workers {
		ids := make([]string, per)
		for i := range ids {
			ids[i] = fmt.Sprintf("w%d-%d", w, i)
		}
		if res := appendIDs(t, s, ids); res.Accepted != 0 {
			t.Errorf("worker %d's ids stored twice: %d accepted again", w, res.Accepted)
		}
	}
	if n := s.Stats()["tencent"].Depth; n != workers*per {
		t.Errorf("queue holds %d, want %d", n, workers*per)
	}
}
