package decision

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// storeRig is a Store under test with what the contract needs of its
// implementation.
type storeRig struct {
	st Store
	// wait lets d pass on the clock the store's TTLs run on.
	wait func(d time.Duration)
	// close closes the store: later commits fail.
	close func()
	// restart closes the store and opens it again on the same data.
	restart func(t *testing.T) Store
}

// openStore opens an empty Store; full: one with no room left for queued
// records.
type openStore func(t *testing.T, full bool) *storeRig

var contractQueues = []string{"tongdun", "unionpay", "velocity"}

func openSpoolStore(t *testing.T, full bool) *storeRig {
	dir := filepath.Join(t.TempDir(), "spool")
	var max int64
	if full {
		max = 1 // no record fits
	}
	var sp *spool.Spool
	open := func(t *testing.T) Store {
		t.Helper()
		var err error
		sp, err = spool.Open(spool.Options{Dir: dir, Queues: contractQueues, MaxBytes: max})
		if err != nil {
			t.Fatal(err)
		}
		s := sp
		t.Cleanup(func() { s.Close(context.Background()) })
		return NewSpoolStore(sp)
	}
	r := &storeRig{st: open(t), wait: time.Sleep}
	r.close = func() { sp.Close(context.Background()) }
	r.restart = func(t *testing.T) Store { r.close(); return open(t) }
	return r
}

func openMemStore(t *testing.T, full bool) *storeRig {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	o := MemStoreOptions{Clock: func() time.Time { return time.Unix(0, clock.Load()) }}
	if full {
		o.MaxQueued = 1
	}
	m := NewMemStore(o)
	if full { // fill it
		if err := m.Commit(context.Background(), &Commit{Queue: []spool.Record{{Queue: "tongdun", ID: "filler", Payload: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	return &storeRig{st: m, wait: func(d time.Duration) { clock.Add(int64(d)) }, close: m.Close,
		restart: func(*testing.T) Store { return m }} // nothing to reopen: the same memory
}

// TestStoreContract holds each Store to what Store says.
func TestStoreContract(t *testing.T) {
	for _, c := range []struct {
		name string
		open openStore
	}{{"spool", openSpoolStore}, {"memory", openMemStore}} {
		t.Run(c.name, func(t *testing.T) { t.Parallel(); testStore(t, c.open) })
	}
}

func testStore(t *testing.T, open openStore) {
	ctx := context.Background()
	commit := func(t *testing.T, st Store, c *Commit) {
		t.Helper()
		if err := st.Commit(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	record := func(t *testing.T, st Store, id string) ([]byte, bool) {
		t.Helper()
		b, ok, err := st.Decision(id)
		if err != nil {
			t.Fatal(err)
		}
		return b, ok
	}
	score := func(t *testing.T, st Store, key string) ([]byte, bool) {
		t.Helper()
		b, ok, err := st.Score(key)
		if err != nil {
			t.Fatal(err)
		}
		return b, ok
	}
	lates := func(t *testing.T, st Store, id string) []string {
		t.Helper()
		var got []string
		if err := st.LateVerdicts(id, func(kind string, v []byte) bool { got = append(got, kind+"="+string(v)); return true }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	events := func(t *testing.T, st Store, counter, subject string, since time.Time) []int64 {
		t.Helper()
		ts, err := st.VelocityEvents(counter, subject, since)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ts)
		return ts
	}
	t0 := time.Date(2026, 11, 23, 15, 0, 0, 123, time.UTC)
	ev := func(counter, subject string, at time.Duration, id string) VelocityEvent {
		return VelocityEvent{Counter: counter, Subject: subject, At: t0.Add(at), DecisionID: id, TTL: time.Hour}
	}
	ns := func(ds ...time.Duration) []int64 {
		out := []int64{}
		for _, d := range ds {
			out = append(out, t0.Add(d).UnixNano())
		}
		return out
	}

	t.Run("record round trip", func(t *testing.T) {
		r := open(t, false)
		rec := []byte(`{"decision_id":"d1","result":"accept","input":{"x":"短"}}`)
		commit(t, r.st, &Commit{Record: DecisionRecord{ID: "d1", Record: rec, TTL: time.Hour}})
		rec[2] = 'X' // the caller's buffer is the caller's
		st := r.restart(t)
		if got, ok := record(t, st, "d1"); !ok || string(got) != `{"decision_id":"d1","result":"accept","input":{"x":"短"}}` {
			t.Fatalf("after a restart: %q %v", got, ok)
		}
		commit(t, st, &Commit{Record: DecisionRecord{ID: "d1", Record: []byte(`{"v":2}`)}})
		if got, _ := record(t, st, "d1"); string(got) != `{"v":2}` {
			t.Fatalf("written over: %q", got)
		}
	})

	t.Run("missing", func(t *testing.T) {
		r := open(t, false)
		commit(t, r.st, &Commit{Record: DecisionRecord{ID: "d1", Record: []byte(`{}`)}, Scores: []ScoreEntry{{Key: "td/a/withdraw", Entry: []byte(`{}`)}}})
		for _, id := range []string{"d2", "d", "d10", ""} {
			if got, ok := record(t, r.st, id); ok || got != nil {
				t.Errorf("Decision(%q) = %q, %v", id, got, ok)
			}
		}
		if got, ok := score(t, r.st, "td/b/withdraw"); ok || got != nil {
			t.Errorf("a missing score: %q, %v", got, ok)
		}
		if got := lates(t, r.st, "d1"); len(got) != 0 {
			t.Errorf("late verdicts of a decision with none: %q", got)
		}
		if got := events(t, r.st, "c", "s", t0.Add(-time.Hour)); len(got) != 0 {
			t.Errorf("events of a counter never counted: %v", got)
		}
	})

	t.Run("velocity window and subjects", func(t *testing.T) {
		r := open(t, false)
		commit(t, r.st, &Commit{Velocity: []VelocityEvent{ev("c1", "s1", 0, "d1"), ev("c1", "s2", time.Minute, "d1"), ev("c2", "s1", time.Minute, "d1")}})
		commit(t, r.st, &Commit{Velocity: []VelocityEvent{ev("c1", "s1", time.Minute, "d2")}})
		commit(t, r.st, &Commit{Velocity: []VelocityEvent{ev("c1", "s1", 2*time.Minute, "d3"), ev("c1", "s1", 2*time.Minute, "d4")}})
		commit(t, r.st, &Commit{Velocity: []VelocityEvent{ev("c1", "s1", time.Minute, "d2")}}) // the same event again
		commit(t, r.st, &Commit{Velocity: []VelocityEvent{ev("c1", "s10", 0, "d5"), ev("c1x", "s1", 0, "d5")}})
		for _, c := range []struct {
			counter, subject string
			since            time.Duration
			want             []int64
		}{
			{"c1", "s1", -time.Hour, ns(0, time.Minute, 2*time.Minute, 2*time.Minute)},
			{"c1", "s1", 0, ns(0, time.Minute, 2*time.Minute, 2*time.Minute)}, // since is in the window
			{"c1", "s1", time.Nanosecond, ns(time.Minute, 2*time.Minute, 2*time.Minute)},
			{"c1", "s1", 90 * time.Second, ns(2*time.Minute, 2*time.Minute)},
			{"c1", "s1", 3 * time.Minute, ns()},
			{"c1", "s2", -time.Hour, ns(time.Minute)},
			{"c2", "s1", -time.Hour, ns(time.Minute)},
			{"c2", "s2", -time.Hour, ns()},
			{"c1", "s", -time.Hour, ns()},
			{"c", "1/s1", -time.Hour, ns()},
		} {
			if got := events(t, r.st, c.counter, c.subject, t0.Add(c.since)); !slices.Equal(got, c.want) {
				t.Errorf("VelocityEvents(%s, %s, t0%+v) = %v, want %v", c.counter, c.subject, c.since, got, c.want)
			}
		}
		st := r.restart(t)
		if got := events(t, st, "c1", "s1", t0); len(got) != 4 {
			t.Errorf("after a restart: %v", got)
		}
	})

	t.Run("late verdicts per decision", func(t *testing.T) {
		r := open(t, false)
		lv := func(id, kind, v string) LateVerdict {
			return LateVerdict{DecisionID: id, Kind: kind, Verdict: []byte(v), TTL: time.Hour}
		}
		commit(t, r.st, &Commit{Record: DecisionRecord{ID: "d1", Record: []byte(`{}`)}})
		commit(t, r.st, &Commit{Late: []LateVerdict{lv("d1", "unionpay_model", `{"m":1}`)}})
		commit(t, r.st, &Commit{Late: []LateVerdict{lv("d1", "tongdun", `{"t":1}`), lv("d10", "tongdun", `{"other":1}`), lv("d", "tongdun", `{"other":2}`)}})
		commit(t, r.st, &Commit{Late: []LateVerdict{lv("d1", "tongdun", `{"t":2}`)}}) // written over
		if got, want := lates(t, r.st, "d1"), []string{`tongdun={"t":2}`, `unionpay_model={"m":1}`}; !slices.Equal(got, want) {
			t.Errorf("d1: %q, want %q", got, want)
		}
		if got, want := lates(t, r.st, "d10"), []string{`tongdun={"other":1}`}; !slices.Equal(got, want) {
			t.Errorf("d10: %q, want %q", got, want)
		}
		n := 0
		r.st.LateVerdicts("d1", func(string, []byte) bool { n++; return false })
		if n != 1 {
			t.Errorf("fn returned false and was called %d times", n)
		}
		if got := lates(t, r.restart(t), "d1"); len(got) != 2 {
			t.Errorf("after a restart: %q", got)
		}
	})

	t.Run("scores", func(t *testing.T) {
		r := open(t, false)
		commit(t, r.st, &Commit{Scores: []ScoreEntry{{Key: "td/s/withdraw", Entry: []byte(`{"score":1}`), TTL: time.Hour}, {Key: "up/h", Entry: []byte(`{"score":2}`)}}})
		commit(t, r.st, &Commit{Scores: []ScoreEntry{{Key: "td/s/withdraw", Entry: []byte(`{"score":3}`), TTL: time.Hour}}})
		st := r.restart(t)
		for k, want := range map[string]string{"td/s/withdraw": `{"score":3}`, "up/h": `{"score":2}`} {
			if got, ok := score(t, st, k); !ok || string(got) != want {
				t.Errorf("Score(%s) = %q, %v; want %s", k, got, ok, want)
			}
		}
	})

	// everything is one commit of every kind, on decision id.
	everything := func(id string, ttl time.Duration) *Commit {
		return &Commit{
			Record:   DecisionRecord{ID: id, Record: []byte(`{"decision_id":"` + id + `"}`), TTL: ttl},
			Scores:   []ScoreEntry{{Key: "td/" + id + "/withdraw", Entry: []byte(`{"score":9}`), TTL: ttl}},
			Velocity: []VelocityEvent{{Counter: "c", Subject: id, At: t0, DecisionID: id, TTL: ttl}},
			Late:     []LateVerdict{{DecisionID: id, Kind: "tongdun", Verdict: []byte(`{}`), TTL: ttl}},
			Queue:    []spool.Record{{Queue: "tongdun", ID: id + "#tongdun", Payload: []byte(`{}`)}},
		}
	}
	// stored counts which parts of everything(id) are in st.
	stored := func(t *testing.T, st Store, id string) int {
		t.Helper()
		n := 0
		if _, ok := record(t, st, id); ok {
			n++
		}
		if _, ok := score(t, st, "td/"+id+"/withdraw"); ok {
			n++
		}
		n += len(events(t, st, "c", id, t0.Add(-time.Hour)))
		n += len(lates(t, st, id))
		return n
	}

	t.Run("full: all or nothing", func(t *testing.T) {
		r := open(t, true)
		err := r.st.Commit(ctx, everything("f1", time.Hour))
		if !errors.Is(err, spool.ErrFull) {
			t.Fatalf("a commit queueing on a full store: %v, want spool.ErrFull", err)
		}
		if n := stored(t, r.st, "f1"); n != 0 {
			t.Fatalf("a refused commit stored %d parts", n)
		}
		// What a decision records is not held to the queues' cap.
		c := everything("f1", time.Hour)
		c.Queue = nil
		commit(t, r.st, c)
		if n := stored(t, r.restart(t), "f1"); n != 4 {
			t.Fatalf("the commit without its records stored %d parts of 4", n)
		}
	})

	t.Run("closed: all or nothing", func(t *testing.T) {
		r := open(t, false)
		commit(t, r.st, everything("c1", time.Hour))
		r.close()
		if err := r.st.Commit(ctx, everything("c2", time.Hour)); !errors.Is(err, spool.ErrClosed) {
			t.Fatalf("a commit on a closed store: %v, want spool.ErrClosed", err)
		}
		st := r.restart(t)
		if n := stored(t, st, "c1"); n != 4 {
			t.Fatalf("the commit before closing: %d parts of 4", n)
		}
		if n := stored(t, st, "c2"); n != 0 {
			t.Fatalf("a failed commit stored %d parts", n)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel() // the spool's TTLs run on the wall clock, in seconds
		r := open(t, false)
		commit(t, r.st, everything("short", 2*time.Second))
		commit(t, r.st, everything("long", time.Hour))
		commit(t, r.st, everything("ever", 0))
		if n := stored(t, r.st, "short"); n != 4 {
			t.Fatalf("before its TTL: %d parts of 4", n)
		}
		r.wait(3 * time.Second)
		for id, want := range map[string]int{"short": 0, "long": 4, "ever": 4} {
			if n := stored(t, r.st, id); n != want {
				t.Errorf("%s, after 3s: %d parts, want %d", id, n, want)
			}
		}
	})
}

// TestFullStoreStillRecords: on a store with no room for queued records a
// degraded decision is still recorded, its checks marked not queued, on
// either store.
func TestFullStoreStillRecords(t *testing.T) {
	for _, c := range []struct {
		name string
		open openStore
	}{{"spool", openSpoolStore}, {"memory", openMemStore}} {
		t.Run(c.name, func(t *testing.T) {
			st := c.open(t, true).st
			r := newRig(t, func(cfg *Config) { cfg.Store = st })
			r.tdOK.ok.Store(false)
			res := decide(t, r, withdraw("full1", "acct-1", 10))
			if td := res.Signals["tongdun"]; td.Queued || td.Note != "not queued: the spool is full" {
				t.Fatalf("tongdun %+v", td)
			}
			got, ok, err := r.eng.Get("full1")
			if err != nil || !ok || got.Signals["tongdun"].Note != "not queued: the spool is full" {
				t.Fatalf("stored %+v %v %v", got, ok, err)
			}
		})
	}
}
