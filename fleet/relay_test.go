package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/upstream"
)

var deadTopic = Topic("outpost", KindDeadLetters)

// memDedupe is an in-memory Dedupe shared by relays in a test (the
// binary uses SpoolDedupe).
type memDedupe struct {
	mu sync.Mutex
	m  map[string]string
}

func newMemDedupe() *memDedupe { return &memDedupe{m: map[string]string{}} }

func (d *memDedupe) Delivered(eid string) (string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.m[eid]
	return id, ok, nil
}

func (d *memDedupe) Remember(_ context.Context, ds []Delivery) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range ds {
		d.m[x.EventID] = x.ID
	}
	return nil
}

// tencentFake records what it is sent; verdict decides each item's answer.
type tencentFake struct {
	mu        sync.Mutex
	got       map[string]int
	order     []string
	verdict   func(id string) upstream.Verdict
	delivered chan struct{}
}

func newTencentFake() *tencentFake {
	return &tencentFake{got: map[string]int{}, delivered: make(chan struct{}, 1)}
}

func (f *tencentFake) Send(_ context.Context, items []upstream.Item) []upstream.Result {
	out := make([]upstream.Result, len(items))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, it := range items {
		v := upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}
		if f.verdict != nil {
			v = f.verdict(it.ID)
		}
		if v.Outcome == upstream.Delivered {
			f.got[it.ID]++
			f.order = append(f.order, it.ID)
		}
		out[i] = upstream.Result{ID: it.ID, Verdict: v}
	}
	select {
	case f.delivered <- struct{}{}:
	default:
	}
	return out
}

func (f *tencentFake) count() (distinct, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.got {
		distinct++
		total += n
	}
	return
}

type relayRig struct {
	relay  *Relay
	worker *forwarder.Worker
}

func startRelay(t *testing.T, addrs []string, d Dedupe, s forwarder.Sender, opts ...kgo.Opt) *relayRig {
	t.Helper()
	r, err := NewRelay(RelayConfig{Conn: Conn{Brokers: addrs}, Group: "outpost-relay", Topic: actionsTopic, DeadLetterTopic: deadTopic,
		RelayID: "relay-test", Dedupe: d, SettleWait: 2 * time.Second, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	w := forwarder.New(forwarder.Config{Name: "tencent", Queue: r, Sender: s, Wake: r.Wake(), IdlePoll: 20 * time.Millisecond,
		FlushInterval: time.Millisecond, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	w.Start(nil)
	return &relayRig{relay: r, worker: w}
}

func (rr *relayRig) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rr.worker.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := rr.relay.Close(ctx); err != nil {
		t.Error(err)
	}
}

// committed reads the group's committed offsets.
func committed(t *testing.T, addrs []string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = "outpost-relay"
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = actionsTopic
	for p := range int32(6) {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, tt := range resp.Topics {
		for _, p := range tt.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// ends are the topic's end offsets, from what a plain reader sees.
func ends(t *testing.T, addrs []string, n int) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for _, r := range readTopic(t, addrs, actionsTopic, n, 20*time.Second) {
		out[r.Partition] = max(out[r.Partition], r.Offset+1)
	}
	return out
}

func produce(t *testing.T, addrs []string, items []upstream.Item) {
	t.Helper()
	_, s := newTestProducer(t, addrs)
	allDelivered(t, s.Send(context.Background(), items))
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayDeliversInOrderAndCommits(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic), kfake.SeedTopics(1, deadTopic))
	items := actionItems(1, 600, 40)
	produce(t, c.ListenAddrs(), items)
	tc := newTencentFake()
	rr := startRelay(t, c.ListenAddrs(), newMemDedupe(), tc)
	waitFor(t, "600 delivered", 30*time.Second, func() bool { d, _ := tc.count(); return d == 600 })
	waitFor(t, "offsets committed to the end", 10*time.Second, func() bool {
		got, want := committed(t, c.ListenAddrs()), ends(t, c.ListenAddrs(), 600)
		for p, o := range want {
			if got[p] != o {
				return false
			}
		}
		return true
	})
	// One account's actions reached Tencent in the agent's order.
	last := map[string]string{}
	tc.mu.Lock()
	for _, id := range tc.order {
		var seq int
		fmt.Sscanf(id, "act-%d", &seq)
		acct := fmt.Sprint(seq % 40)
		if last[acct] > id {
			t.Errorf("account %s: %s after %s", acct, id, last[acct])
		}
		last[acct] = id
	}
	tc.mu.Unlock()
	st := rr.relay.Status()
	if st.Delivered != 600 || st.Buffered != 0 || len(st.Partitions) != 6 {
		t.Errorf("status %+v", st)
	}
	for _, p := range st.Partitions {
		if p.Lag != 0 {
			t.Errorf("partition %d lag %d", p.Partition, p.Lag)
		}
	}
	rr.stop(t)
	if d, total := tc.count(); d != 600 || total != 600 {
		t.Errorf("delivered %d distinct, %d in all", d, total)
	}
}

// TestRelayCommitsOnlyTheFinalPrefix: a record Tencent keeps refusing to
// take (retry) holds its partition's offset, whatever was delivered after
// it; a relay that then dies loses nothing: the next one starts there.
func TestRelayCommitsOnlyTheFinalPrefix(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic), kfake.SeedTopics(1, deadTopic))
	items := actionItems(1, 300, 30)
	produce(t, c.ListenAddrs(), items)
	recs := readTopic(t, c.ListenAddrs(), actionsTopic, 300, 20*time.Second)
	// The stuck record: offset 3 of some partition.
	var stuck *kgo.Record
	for _, r := range recs {
		if r.Offset == 3 {
			stuck = r
			break
		}
	}
	ev, _ := Decode(stuck.Value)
	tc := newTencentFake()
	var block sync.Mutex
	blocked := true
	tc.verdict = func(id string) upstream.Verdict {
		block.Lock()
		defer block.Unlock()
		if blocked && id == ev.ID {
			return upstream.Verdict{Outcome: upstream.RetryLater, Code: "http_503", Message: "busy"}
		}
		return upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}
	}
	dd := newMemDedupe()
	rr := startRelay(t, c.ListenAddrs(), dd, tc)
	waitFor(t, "all but the stuck one and its partition's followers", 30*time.Second, func() bool {
		d, _ := tc.count()
		return d >= 299-(len(recsOf(recs, stuck.Partition))-4)
	})
	time.Sleep(300 * time.Millisecond)
	got := committed(t, c.ListenAddrs())
	if got[stuck.Partition] != 3 {
		t.Errorf("partition %d committed at %d, want 3 (the stuck record)", stuck.Partition, got[stuck.Partition])
	}
	// The relay dies (its client closes without the forwarder's help);
	// a new one with the same store delivers the stuck record, and skips
	// what the first one delivered.
	block.Lock()
	blocked = false
	block.Unlock()
	rr.stop(t)
	tc2 := newTencentFake()
	rr2 := startRelay(t, c.ListenAddrs(), dd, tc2)
	waitFor(t, "the stuck record", 30*time.Second, func() bool { tc2.mu.Lock(); defer tc2.mu.Unlock(); return tc2.got[ev.ID] == 1 })
	rr2.stop(t)
	d1, _ := tc.count()
	d2, _ := tc2.count()
	if d1+d2 < 300 {
		t.Errorf("delivered %d + %d of 300", d1, d2)
	}
}

func recsOf(rs []*kgo.Record, p int32) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range rs {
		if r.Partition == p {
			out = append(out, r)
		}
	}
	return out
}

// TestRelayDeduplicatesAcrossRestarts: deliveries whose commit never
// took (the coordinator refused every commit) are skipped by the next
// relay with the same store: none reaches Tencent twice.
func TestRelayDeduplicatesAcrossRestarts(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic), kfake.SeedTopics(1, deadTopic))
	produce(t, c.ListenAddrs(), actionItems(1, 200, 20))
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorNotAvailable, Count: -1})
	dd := newMemDedupe()
	tc := newTencentFake()
	// Commits fail for as long as they are retried: franz-go retries them
	// 30 s by default, bounded here by stop's 20 s and the revoke's 5 s.
	// Retried for 500 ms, they fail the same way, 24 s sooner.
	// The other keys keep franz-go's defaults (the relay's 10 s session
	// time-out for the group's requests, 30 s for the rest).
	commitRetry := kgo.RetryTimeoutFn(func(key int16) time.Duration {
		switch kmsg.Key(key) {
		case kmsg.OffsetCommit:
			return 500 * time.Millisecond
		case kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.ConsumerGroupHeartbeat:
			return 10 * time.Second
		}
		return 30 * time.Second
	})
	rr := startRelay(t, c.ListenAddrs(), dd, tc, commitRetry)
	waitFor(t, "200 delivered", 30*time.Second, func() bool { d, _ := tc.count(); return d == 200 })
	rr.stop(t)
	if got := committed(t, c.ListenAddrs()); len(got) > 0 {
		for p, o := range got {
			if o > 0 {
				t.Fatalf("partition %d committed at %d despite the fault", p, o)
			}
		}
	}
	h.Remove()
	tc2 := newTencentFake()
	rr2 := startRelay(t, c.ListenAddrs(), dd, tc2)
	waitFor(t, "duplicates skipped", 30*time.Second, func() bool { return rr2.relay.Status().Duplicates == 200 })
	rr2.stop(t)
	if d, _ := tc2.count(); d != 0 {
		t.Errorf("%d delivered again", d)
	}
}

// TestRelayDeadLetters: what Tencent refuses for good goes to the
// dead-letter topic, with the reason and the event id, before its offset
// counts as final.
func TestRelayDeadLetters(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic), kfake.SeedTopics(1, deadTopic))
	produce(t, c.ListenAddrs(), actionItems(1, 100, 10))
	tc := newTencentFake()
	tc.verdict = func(id string) upstream.Verdict {
		if id == "act-000007" || id == "act-000050" {
			return upstream.Verdict{Outcome: upstream.Permanent, Code: "51000", Message: "invalid action_time"}
		}
		return upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}
	}
	rr := startRelay(t, c.ListenAddrs(), newMemDedupe(), tc)
	waitFor(t, "98 delivered, 2 dead", 30*time.Second, func() bool {
		d, _ := tc.count()
		return d == 98 && rr.relay.Status().DeadLetters == 2
	})
	dead := readTopic(t, c.ListenAddrs(), deadTopic, 2, 10*time.Second)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters on the topic", len(dead))
	}
	for _, r := range dead {
		if header(r, HeaderEventID) == "" || header(r, HeaderReason) == "" || header(r, "source") == "" {
			t.Errorf("dead letter headers %v", r.Headers)
		}
		if _, err := Decode(r.Value); err != nil {
			t.Error(err)
		}
	}
	rr.stop(t)
	got, want := committed(t, c.ListenAddrs()), ends(t, c.ListenAddrs(), 100)
	for p, o := range want {
		if got[p] != o {
			t.Errorf("partition %d committed %d, end %d", p, got[p], o)
		}
	}
}

// TestRelayFaults: two relays share the partitions while leaders move,
// fetches and commits fail now and then, and one relay leaves mid-flow;
// every record reaches Tencent, and the offsets end at the end.
func TestRelayFaults(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic), kfake.SeedTopics(1, deadTopic))
	produce(t, c.ListenAddrs(), actionItems(1, 400, 50))
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: 5},
		kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.RequestTimedOut, Count: 5})
	dd := newMemDedupe()
	tc := newTencentFake()
	var slow sync.Mutex
	tc.verdict = func(string) upstream.Verdict {
		// Waits until the test lets deliveries go on.
		slow.Lock()
		slow.Unlock() //nolint:staticcheck // SA2001: the empty section is the wait

		return upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}
	}
	backoff := kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })
	a := startRelay(t, c.ListenAddrs(), dd, tc, backoff)
	b := startRelay(t, c.ListenAddrs(), dd, tc, backoff)
	waitFor(t, "some delivered", 30*time.Second, func() bool { d, _ := tc.count(); return d > 50 })
	c.ShufflePartitionLeaders()
	a.stop(t)
	produce(t, c.ListenAddrs(), actionItems(401, 200, 50))
	c.ShufflePartitionLeaders()
	waitFor(t, "600 delivered", 60*time.Second, func() bool { d, _ := tc.count(); return d == 600 })
	waitFor(t, "committed to the end", 20*time.Second, func() bool {
		got, want := committed(t, c.ListenAddrs()), ends(t, c.ListenAddrs(), 600)
		for p, o := range want {
			if got[p] != o {
				return false
			}
		}
		return true
	})
	b.stop(t)
	_, total := tc.count()
	t.Logf("600 delivered, %d sends in all (%d duplicates)", total, total-600)
}
