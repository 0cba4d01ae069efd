package fleet

import (
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestVelocityStartRace: a view reading a partition for the first time
// starts from Lookback ago. The partition is empty when it asks by time,
// and another agent's three increments land before kadm's second request,
// which asks for the end offset of what had nothing at or after the time.
// Starting at that end offset skipped the three without a trace (three
// velocity tests failed so, 2 or 3 runs in 45, beside a busy e2e test);
// the view must merge them.
func TestVelocityStartRace(t *testing.T) {
	c, clk, a, b := twoAgents(t, 1)

	var byTime, injected atomic.Bool
	delivered := make(chan error, 1)
	c.ControlKey(int16(kmsg.ListOffsets), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.ListOffsetsRequest)
		ends := true
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				if rp.Timestamp >= 0 {
					ends = false
				}
			}
		}
		switch {
		case !ends:
			byTime.Store(true)
		case byTime.Load() && !injected.Swap(true):
			// kadm's second request, after a lookup by time that found
			// nothing: the increments land now, the cluster serving them.
			c.SleepControl(func() { delivered <- a.tryDeliver(a.increments(phoneA, clk.now(), 3)) })
		}
		return nil, nil, false
	})
	b.view.Start()
	st := waitView(t, b.view, "B merged A's three", func(st VelocityStatus) bool { return st.Merged == 3 && inStep(st) })
	if !injected.Load() {
		t.Fatal("the view never asked for end offsets after a lookup by time: the test did not exercise the race")
	}
	if err := <-delivered; err != nil {
		t.Fatal(err)
	}
	if got := b.others(phoneA, clk.now()); got != 3 {
		t.Errorf("B counts %d of A's increments, want 3 (status %+v)", got, st)
	}
}
