package decision

import (
	"testing"
	"time"
)

// TestMemCacheEvictsLeastRecentlyUsed: a full cache drops the entry used
// longest ago (a busy account stays cached), and a stored score clears a
// remembered failure.
func TestMemCacheEvictsLeastRecentlyUsed(t *testing.T) {
	m := newMemCache(3)
	for _, k := range []string{"a", "b", "c"} {
		m.put(k, cached{Score: 1})
	}
	m.get("a")
	m.put("d", cached{Score: 2})
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := m.get(k); ok != want {
			t.Errorf("%s cached: %v, want %v", k, ok, want)
		}
	}
	now := time.Unix(1e9, 0)
	m.failed("e", now.Add(time.Second))
	if !m.negative("e", now) || m.negative("e", now.Add(time.Second)) {
		t.Error("a failure is remembered until its time, not after")
	}
	m.put("e", cached{Score: 3})
	if m.negative("e", now) {
		t.Error("a stored score leaves a failure remembered")
	}
}

// countingStore counts the score reads that reach the store.
type countingStore struct {
	Store
	reads int
}

func (s *countingStore) Score(key string) ([]byte, bool, error) {
	s.reads++
	return s.Store.Score(key)
}

// TestAbsentScoresReadOnce: a key the store does not hold is read from
// it once, not for every decision; a score put afterwards (a live answer,
// a late verdict) is found, and one stored before is still read.
func TestAbsentScoresReadOnce(t *testing.T) {
	st := &countingStore{Store: NewMemStore(MemStoreOptions{})}
	if err := st.Commit(t.Context(), &Commit{Scores: []ScoreEntry{{Key: "td/stored", Entry: encodeCached(cached{Score: 7}), TTL: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	e := New(Config{Store: st, Policies: fixedPolicy{nil}})
	defer e.Close()
	for range 3 {
		if _, ok := e.lookup("td/none"); ok {
			t.Fatal("a score found for a key never stored")
		}
	}
	if st.reads != 1 {
		t.Errorf("%d store reads for a key the store does not hold, want 1", st.reads)
	}
	e.mem.put("td/none", cached{Score: 5})
	if c, ok := e.lookup("td/none"); !ok || c.Score != 5 {
		t.Errorf("a score put after the miss: %+v %v", c, ok)
	}
	if c, ok := e.lookup("td/stored"); !ok || c.Score != 7 {
		t.Errorf("a stored score: %+v %v", c, ok)
	}
}

// TestAbsentRacesWithPut: reads that miss and puts of the same keys, run
// concurrently, never leave a key both put and marked absent.
func TestAbsentRacesWithPut(t *testing.T) {
	m := newMemCache(1000)
	keys := []string{"a", "b", "c", "d"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20_000 {
			m.put(keys[i%len(keys)], cached{Score: i})
		}
	}()
	for i := range 20_000 {
		m.notStored(keys[i%len(keys)])
	}
	<-done
	for _, k := range keys {
		if _, ok := m.get(k); ok && m.isAbsent(k) {
			t.Errorf("%s is both put and marked absent", k)
		}
	}
}
