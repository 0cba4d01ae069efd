package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRelayReportsRecordsGoneBeforeDelivery: the group committed offset 3
// of ten actions, then the broker dropped the records before offset 7
// (retention shorter than the relays' outage, or a deletion). franz-go
// resumes such a partition at the log start without a word; the relay
// delivers what is left and counts the four it never saw, in its status
// and its metric. A relay resuming where records continue counts none.
func TestRelayReportsRecordsGoneBeforeDelivery(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, actionsTopic), kfake.SeedTopics(1, deadTopic))
	addrs := c.ListenAddrs()
	produce(t, addrs, actionItems(1, 10, 1))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	at := func(o int64) kadm.Offsets {
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: actionsTopic, Partition: 0, At: o, LeaderEpoch: -1})
		return os
	}
	if err := adm.CommitAllOffsets(ctx, "outpost-relay", at(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(ctx, at(7)); err != nil {
		t.Fatal(err)
	}

	tc := newTencentFake()
	rr := startRelay(t, addrs, newMemDedupe(), tc)
	waitFor(t, "the three left delivered", 20*time.Second, func() bool { d, _ := tc.count(); return d == 3 })
	if got := rr.relay.Status().Expired; got != 4 {
		t.Errorf("expired %d, want 4 (offsets 3 to 6)", got)
	}
	waitFor(t, "offset 10 committed", 10*time.Second, func() bool { return committed(t, addrs)[0] == 10 })
	rr.stop(t)

	// The next relay resumes at 10, where the records continue.
	produce(t, addrs, actionItems(11, 5, 1))
	tc2 := newTencentFake()
	rr2 := startRelay(t, addrs, newMemDedupe(), tc2)
	defer rr2.stop(t)
	waitFor(t, "the five new delivered", 20*time.Second, func() bool { d, _ := tc2.count(); return d == 5 })
	if got := rr2.relay.Status().Expired; got != 0 {
		t.Errorf("a relay resuming where the records continue counts %d expired", got)
	}
}

// TestVelocityReportsIncrementsGoneBeforeRead: B read A's first three
// increments and stopped; A added five more, and the broker dropped the
// records before offset 6 before B came back. B resumes from its stored
// offset 3, reads the two left and counts the three it never saw.
func TestVelocityReportsIncrementsGoneBeforeRead(t *testing.T) {
	r, _ := newViewThatStops(t, 1)
	r.stop()
	r.a.count(t, phoneA, r.clk.now(), 5)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var before kadm.Offsets
	before.Add(kadm.Offset{Topic: velocityTopic, Partition: 0, At: 6, LeaderEpoch: -1})
	if _, err := kadm.NewClient(cl).DeleteRecords(context.Background(), before); err != nil {
		t.Fatal(err)
	}

	r.reopen(t)
	r.view.Start()
	st := waitView(t, r.view, "B read the two left", func(st VelocityStatus) bool { return st.Read == 2 && inStep(st) })
	if st.Expired != 3 {
		t.Errorf("expired %d, want 3 (offsets 3 to 5)", st.Expired)
	}
	if got := r.view.Others("loan_apps_1h", time.Hour, r.view.Subject("phone", phoneA), r.clk.now()); got != 5 {
		t.Errorf("B counts %d of A's increments, want 5 (3 stored, 2 read)", got)
	}
}
