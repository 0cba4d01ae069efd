package fleet

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
)

var velocityTopic = Topic("outpost", KindVelocity)

// clock is a settable clock for the view (bucketing, expiry, age).
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, Queues: []string{VelocityQueue}})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// fleetAgent is one agent's velocity side: its store, its view and a
// sender of its increments (what cmd/agent wires).
type fleetAgent struct {
	id   string
	sp   *spool.Spool
	view *Velocity
	send *Sender
	seq  uint64
}

func newFleetAgent(t *testing.T, c *kfake.Cluster, id, dir string, clk *clock, mod ...func(*VelocityConfig)) *fleetAgent {
	t.Helper()
	a := &fleetAgent{id: id, sp: openSpool(t, dir)}
	t.Cleanup(func() { a.sp.Close(context.Background()) })
	a.view = openView(t, c, id, a.sp, clk, mod...)
	p, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, AgentID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	a.send = p.Sender(SenderConfig{Queue: VelocityQueue, Topic: velocityTopic, Kind: KindVelocity, Key: VelocityKey})
	return a
}

func openView(t *testing.T, c *kfake.Cluster, id string, st VelocityStore, clk *clock, mod ...func(*VelocityConfig)) *Velocity {
	t.Helper()
	cfg := VelocityConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: velocityTopic, AgentID: id, Secret: testSecret,
		Store: st, ProbeInterval: 50 * time.Millisecond, Now: clk.now}
	for _, f := range mod {
		f(&cfg)
	}
	v, err := OpenVelocity(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	return v
}

// count publishes n events of loan_apps_1h for phone at at, as the engine
// and the agent's velocity queue would: the increment the view makes,
// sent with the next spool sequence numbers.
func (a *fleetAgent) count(t *testing.T, phone string, at time.Time, n int) []upstream.Item {
	t.Helper()
	items := a.increments(phone, at, n)
	a.deliver(t, items)
	return items
}

// twoAgents: a cluster whose velocity topic has the given partitions, a
// clock, and agents A and B on it (mod applies to B's view).
func twoAgents(t *testing.T, partitions int32, mod ...func(*VelocityConfig)) (*kfake.Cluster, *clock, *fleetAgent, *fleetAgent) {
	t.Helper()
	c := newCluster(t, kfake.SeedTopics(partitions, velocityTopic))
	clk := newClock()
	dir := t.TempDir()
	a := newFleetAgent(t, c, "agent-a", filepath.Join(dir, "a"), clk)
	b := newFleetAgent(t, c, "agent-b", filepath.Join(dir, "b"), clk, mod...)
	return c, clk, a, b
}

// increments are n increments of loan_apps_1h for phone, not sent yet.
func (a *fleetAgent) increments(phone string, at time.Time, n int) []upstream.Item {
	var items []upstream.Item
	for range n {
		a.seq++
		r := a.view.Increment("loan_apps_1h", "phone", time.Hour, a.view.Subject("phone", phone), at, fmt.Sprintf("d-%s-%d", a.id, a.seq))
		items = append(items, upstream.Item{ID: r.ID, Payload: r.Payload, Seq: a.seq, EnqueuedAt: at})
	}
	return items
}

func (a *fleetAgent) deliver(t *testing.T, items []upstream.Item) {
	t.Helper()
	if err := a.tryDeliver(items); err != nil {
		t.Fatal(err)
	}
}

// tryDeliver sends items to the broker; an item not delivered is an error.
func (a *fleetAgent) tryDeliver(items []upstream.Item) error {
	for i, r := range a.send.Send(context.Background(), items) {
		if r.Verdict.Outcome != upstream.Delivered {
			return fmt.Errorf("item %d: %+v", i, r.Verdict)
		}
	}
	return nil
}

func (a *fleetAgent) others(phone string, now time.Time) int64 {
	return a.view.Others("loan_apps_1h", time.Hour, a.view.Subject("phone", phone), now)
}

// waitView waits until cond holds of the view's status.
func waitView(t *testing.T, v *Velocity, what string, cond func(VelocityStatus) bool) VelocityStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := v.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func inStep(st VelocityStatus) bool {
	if st.State != ViewLive {
		return false
	}
	for _, p := range st.Partitions {
		if p.Lag != 0 {
			return false
		}
	}
	return len(st.Partitions) > 0
}

const phoneA = "86:13800138000"

func TestVelocityMergesTheOthersNotItsOwn(t *testing.T) {
	_, clk, a, b := twoAgents(t, 3)
	b.view.Start()
	a.count(t, phoneA, clk.now(), 3)
	b.count(t, phoneA, clk.now(), 2)
	a.count(t, "86:13900139000", clk.now(), 1)
	st := waitView(t, b.view, "B reads A's four and its own two", func(st VelocityStatus) bool { return st.Read == 6 && inStep(st) })
	if got := b.others(phoneA, clk.now()); got != 3 {
		t.Errorf("B sees %d of the other agents' events for the phone, want 3 (its own two are the engine's to add)", got)
	}
	if st.Merged != 4 || st.Own != 2 || st.Duplicates != 0 || st.Entries != 2 || st.AgeSeconds == nil {
		t.Errorf("status %+v", st)
	}
	// Every merged increment's delay is observed (the fake clock stands
	// still: all of them 0 s).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.view.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_fleet_velocity_merge_delay_seconds" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 4 || h.GetSampleSum() != 0 {
				t.Errorf("merge delay: %d samples, sum %g", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	// Subjects are the fleet's: another secret is another subject.
	if SubjectHash([]byte("another secret, 32 bytes long..."), "phone", phoneA) == b.view.Subject("phone", phoneA) {
		t.Error("the subject does not depend on the fleet secret")
	}
	// A counter of another window is another series.
	if n := b.view.Others("loan_apps_1h", 2*time.Hour, b.view.Subject("phone", phoneA), clk.now()); n != 0 {
		t.Errorf("a 2h counter of the same name sees %d", n)
	}
}

// viewThatStops is agent A and agent B's view on a spool of its own, which
// a test stops (the spool too, as at a kill: what was merged is on disk
// with the offsets it covers) and reopens on the same store.
type viewThatStops struct {
	c    *kfake.Cluster
	clk  *clock
	a    *fleetAgent
	dirB string
	sp   *spool.Spool
	view *Velocity
}

// newViewThatStops starts B's view and has it merge three of A's
// increments; the status is B's then.
func newViewThatStops(t *testing.T, partitions int32) (*viewThatStops, VelocityStatus) {
	t.Helper()
	dir := t.TempDir()
	r := &viewThatStops{c: newCluster(t, kfake.SeedTopics(partitions, velocityTopic)), clk: newClock(), dirB: filepath.Join(dir, "b")}
	r.a = newFleetAgent(t, r.c, "agent-a", filepath.Join(dir, "a"), r.clk)
	r.reopen(t)
	r.view.Start()
	r.a.count(t, phoneA, r.clk.now(), 3)
	return r, waitView(t, r.view, "B merged A's three", func(st VelocityStatus) bool { return st.Merged == 3 && inStep(st) })
}

func (r *viewThatStops) stop() {
	r.view.Close(context.Background())
	r.sp.Close(context.Background())
}

// reopen opens B's spool and view again (not started).
func (r *viewThatStops) reopen(t *testing.T) {
	t.Helper()
	sp := openSpool(t, r.dirB)
	t.Cleanup(func() { sp.Close(context.Background()) })
	r.sp, r.view = sp, openView(t, r.c, "agent-b", sp, r.clk)
}

func TestVelocityResumesFromStoredOffsets(t *testing.T) {
	r, before := newViewThatStops(t, 3)
	r.stop()
	r.reopen(t)
	a, clk, vb := r.a, r.clk, r.view
	if got := vb.Others("loan_apps_1h", time.Hour, vb.Subject("phone", phoneA), clk.now()); got != 3 {
		t.Fatalf("reopened, before reading anything: %d, want the stored 3", got)
	}
	loaded := vb.Status()
	if loaded.LoadedEntries != 1 || loaded.State != ViewNone && loaded.State != ViewLive {
		t.Errorf("loaded %+v", loaded)
	}
	for p, bp := range before.Partitions {
		if loaded.Partitions[p].Offset != bp.Offset {
			t.Errorf("partition %s: stored offset %d, was %d", p, loaded.Partitions[p].Offset, bp.Offset)
		}
	}
	vb.Start()
	after := waitView(t, vb, "B in step again", inStep)
	if after.Read != 0 || after.Merged != 0 {
		t.Errorf("B read %d records again (merged %d): it did not resume from its offsets", after.Read, after.Merged)
	}
	a.count(t, phoneA, clk.now(), 1)
	waitView(t, vb, "B merged the fourth", func(st VelocityStatus) bool { return st.Merged == 1 })
	if got := vb.Others("loan_apps_1h", time.Hour, vb.Subject("phone", phoneA), clk.now()); got != 4 {
		t.Errorf("after one more: %d, want 4", got)
	}
}

func TestVelocityDuplicatesCountOnce(t *testing.T) {
	c, clk, a, b := twoAgents(t, 2)
	b.view.Start()
	items := a.count(t, phoneA, clk.now(), 3)
	// A is killed after the broker acknowledged the first two records but
	// before its spool heard of it: its next session sends them again
	// (a new producer, so the broker cannot tell), then the third.
	p2, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs()}, AgentID: "agent-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	a.send = p2.Sender(SenderConfig{Queue: VelocityQueue, Topic: velocityTopic, Kind: KindVelocity, Key: VelocityKey})
	a.deliver(t, items)
	st := waitView(t, b.view, "B read all six", func(st VelocityStatus) bool { return st.Read == 6 })
	if got := b.others(phoneA, clk.now()); got != 3 || st.Duplicates != 3 {
		t.Errorf("count %d, duplicates %d; want 3 and 3", got, st.Duplicates)
	}
	// A's store rebuilt from nothing numbers its events from 1 again, under
	// a new epoch: they count.
	a.sp.Close(context.Background())
	a.view.Close(context.Background())
	clk.advance(time.Second) // the new store's epoch
	a2 := newFleetAgent(t, c, "agent-a", filepath.Join(t.TempDir(), "a-rebuilt"), clk)
	a2.count(t, phoneA, clk.now(), 2)
	st = waitView(t, b.view, "B read the rebuilt A", func(st VelocityStatus) bool { return st.Read == 8 })
	if got := b.others(phoneA, clk.now()); got != 5 || st.Duplicates != 3 {
		t.Errorf("after the new epoch: count %d, duplicates %d; want 5 and 3", got, st.Duplicates)
	}
}

func TestVelocityLateDataAndExpiry(t *testing.T) {
	_, clk, a, b := twoAgents(t, 1)
	b.view.Start()
	now := clk.now()
	// A branch offline since yesterday sends its events now: the ones
	// within the hour count where they happened, the older ones for
	// nothing; one from a clock ahead of ours counts as of now.
	a.count(t, phoneA, now.Add(-2*time.Hour), 1)
	a.count(t, phoneA, now.Add(-50*time.Minute), 2)
	a.count(t, phoneA, now.Add(-5*time.Minute), 1)
	a.count(t, phoneA, now.Add(10*time.Minute), 1)
	st := waitView(t, b.view, "B read the five", func(st VelocityStatus) bool { return st.Read == 5 })
	if got := b.others(phoneA, now); got != 4 || st.OutsideWindow != 1 {
		t.Fatalf("count %d, outside the window %d; want 4 and 1", got, st.OutsideWindow)
	}
	// Eleven minutes on, the two from 50 minutes ago have left the hour.
	clk.advance(11 * time.Minute)
	if got := b.others(phoneA, clk.now()); got != 2 {
		t.Errorf("11 minutes later: %d, want 2", got)
	}
	// And they leave memory (the probe expires buckets).
	waitView(t, b.view, "expired from memory", func(st VelocityStatus) bool { return st.Entries == 2 })
}

func TestVelocityMemoryIsCapped(t *testing.T) {
	_, clk, a, b := twoAgents(t, 1, func(c *VelocityConfig) { c.MaxEntries = 2 })
	b.view.Start()
	for i := range 3 {
		a.count(t, fmt.Sprintf("86:1380013800%d", i), clk.now(), 1)
	}
	a.count(t, "86:13800138000", clk.now(), 1) // an entry held: still counted
	st := waitView(t, b.view, "B read four", func(st VelocityStatus) bool { return st.Read == 4 })
	if st.Entries != 2 || st.OverCapacity != 1 || st.Merged != 3 || b.others("86:13800138000", clk.now()) != 2 {
		t.Errorf("status %+v", st)
	}
}

// failingStore refuses writes while fail is set.
type failingStore struct {
	*spool.Spool
	fail atomic.Int32
}

func (f *failingStore) Write(ctx context.Context, kvs []spool.KV, recs []spool.Record) (spool.AppendResult, error) {
	if f.fail.Load() > 0 {
		f.fail.Add(-1)
		return spool.AppendResult{}, errors.New("disk on fire")
	}
	return f.Spool.Write(ctx, kvs, recs)
}

func TestVelocityStoreFailureReadsAgain(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(2, velocityTopic))
	clk := newClock()
	dir := t.TempDir()
	a := newFleetAgent(t, c, "agent-a", filepath.Join(dir, "a"), clk)
	sp := openSpool(t, filepath.Join(dir, "b"))
	t.Cleanup(func() { sp.Close(context.Background()) })
	fs := &failingStore{Spool: sp}
	vb := openView(t, c, "agent-b", fs, clk)
	fs.fail.Store(3) // the next three merges fail (the probe's writes may take some)
	vb.Start()
	a.count(t, phoneA, clk.now(), 5)
	st := waitView(t, vb, "B merged the five once", func(st VelocityStatus) bool { return st.Merged == 5 && inStep(st) })
	if got := vb.Others("loan_apps_1h", time.Hour, vb.Subject("phone", phoneA), clk.now()); got != 5 {
		t.Errorf("count %d, want 5 (status %+v)", got, st)
	}
}

func TestVelocityStaleWithoutTheBroker(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, velocityTopic))
	sp := openSpool(t, t.TempDir())
	t.Cleanup(func() { sp.Close(context.Background()) })
	v := openView(t, c, "agent-b", sp, &clock{}, func(cfg *VelocityConfig) { cfg.Now, cfg.MaxAge = time.Now, 300*time.Millisecond })
	if st, _ := v.View(time.Now()); st != ViewNone {
		t.Fatalf("before reading: %s", st)
	}
	v.Start()
	waitView(t, v, "live", inStep)
	c.Close()
	st := waitView(t, v, "stale once the broker is gone", func(st VelocityStatus) bool { return st.State == ViewStale })
	if st.Reason == "" || st.AgeSeconds == nil || *st.AgeSeconds < 0.3 {
		t.Errorf("status %+v", st)
	}
}

func TestVelocityCloseStopsItsGoroutines(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, velocityTopic))
	sp := openSpool(t, t.TempDir())
	defer sp.Close(context.Background())
	base := runtime.NumGoroutine()
	v, err := OpenVelocity(VelocityConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Topic: velocityTopic, AgentID: "agent-b",
		Secret: testSecret, Store: sp, ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v.Start()
	waitView(t, v, "live", inStep)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after Close, %d before Open", n, base)
	}
}

func TestIncrementRoundTrip(t *testing.T) {
	inc := Increment{Counter: "loan_apps_1h", WindowMS: 3600000, Key: "phone", Subject: SubjectHash(testSecret, "phone", phoneA),
		Count: 1, EventTime: time.Date(2026, 12, 4, 10, 0, 0, 123, time.UTC), Epoch: 42}
	b, err := EncodeIncrement(inc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIncrement(b)
	if err != nil || got != inc {
		t.Fatalf("%s -> %+v %v", b, got, err)
	}
	if k, err := VelocityKey(b); err != nil || k != inc.Subject {
		t.Errorf("key %q %v", k, err)
	}
	for _, bad := range []string{`{}`, `[]`, `{"counter":"x","window_ms":1,"key":"phone","subject":"00","count":1,"event_time":"2026-01-01T00:00:00Z","epoch":1}`} {
		if _, err := DecodeIncrement([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
