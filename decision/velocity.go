package decision

import (
	"sort"
	"sync"
	"time"
)

// velocity fronts the stored velocity events (Store.VelocityEvents: one
// per event, kept for its window: exact and restart-safe) with an
// in-memory window per (counter, subject), loaded from the store on first
// use. A decision then costs a lock and an append, not a scan of every
// event in the window, which would grow with exactly the accounts a fraud
// counter is about.
type velocity struct {
	mu   sync.Mutex
	max  int
	subs map[string]*window
}

type window struct {
	mu     sync.Mutex
	loaded bool
	times  []int64 // unix nanos, ascending
}

func newVelocity(maxSubjects int) *velocity {
	return &velocity{max: maxSubjects, subs: map[string]*window{}}
}

// add counts an event at now in the window of key and returns the count
// including it. load reads the stored events (once per key while it stays
// in memory).
func (v *velocity) add(key string, now time.Time, win time.Duration, load func() ([]int64, error)) (int64, error) {
	v.mu.Lock()
	w, ok := v.subs[key]
	if !ok {
		if len(v.subs) >= v.max {
			for k := range v.subs { // drop an arbitrary subject; it reloads from the store
				delete(v.subs, k)
				break
			}
		}
		w = &window{}
		v.subs[key] = w
	}
	v.mu.Unlock()

	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.loaded {
		ts, err := load()
		if err != nil {
			return 0, err
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		w.times, w.loaded = ts, true
	}
	cut := now.Add(-win).UnixNano()
	i := sort.Search(len(w.times), func(i int) bool { return w.times[i] >= cut })
	if i > 0 { // drop what left the window; nothing to move otherwise
		w.times = append(w.times[:0], w.times[i:]...)
	}
	n := now.UnixNano()
	// Keep order even if the clock steps back.
	j := sort.Search(len(w.times), func(i int) bool { return w.times[i] > n })
	w.times = append(w.times, 0)
	copy(w.times[j+1:], w.times[j:])
	w.times[j] = n
	return int64(len(w.times)), nil
}
