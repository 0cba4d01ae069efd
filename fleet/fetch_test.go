package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsumersBoundTheirFetches: a relay and an agent's fleet velocity
// view fetch at most fetchMaxBytes from a broker at once, and 1 MiB of a
// partition (franz-go's default, 50 MiB a fetch, let a relay draining a
// backlog reach 227 MiB: BENCHMARKS.md, session 16).
func TestConsumersBoundTheirFetches(t *testing.T) {
	c := newCluster(t)
	r, err := NewRelay(RelayConfig{Conn: Conn{Brokers: c.ListenAddrs()}, Group: "outpost-relay", Topic: actionsTopic,
		DeadLetterTopic: deadTopic, RelayID: "relay-test", Dedupe: newMemDedupe()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	sp := openSpool(t, t.TempDir())
	t.Cleanup(func() { sp.Close(context.Background()) })
	v := openView(t, c, "agent-a", sp, newClock())
	for name, cl := range map[string]*kgo.Client{"relay": r.Client(), "velocity view": v.cl} {
		for _, o := range []struct {
			name string
			opt  any
			want any
		}{
			{"FetchMaxBytes", kgo.FetchMaxBytes, int32(fetchMaxBytes)},
			{"FetchMaxPartitionBytes", kgo.FetchMaxPartitionBytes, int32(1 << 20)},
		} {
			if got := cl.OptValue(o.opt); got != o.want {
				t.Errorf("%s: %s = %v, want %v", name, o.name, got, o.want)
			}
		}
	}
	if fetchMaxBytes > 4<<20 {
		t.Errorf("fetchMaxBytes %d: more than the 4 MiB that already took a relay's peak to 105 MiB", fetchMaxBytes)
	}
}
