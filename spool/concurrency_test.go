package spool

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// Several workers lease from one queue at once and give batches back (Fail
// or Release) or acknowledge them. Whatever the interleaving, an entry that
// is given back must be handed out again: when nothing is leased and the
// queue is not empty, Lease returns something.
func TestConcurrentLeaseAndGiveBack(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "spool"))
	defer closeT(t, s)
	const n = 600
	for i := 0; i < n; i += 50 {
		var rs []Record
		for j := i; j < i+50; j++ {
			rs = append(rs, Record{Queue: "tencent", ID: fmt.Sprint("c", j), Payload: []byte("p")})
		}
		if _, err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	var acked atomic.Int64
	var round atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; acked.Load() < n && i < 20000; i++ {
				es, err := s.Lease(ctx, "tencent", 3, 1<<20)
				if err != nil {
					t.Error(err)
					return
				}
				if len(es) == 0 {
					continue
				}
				switch round.Add(1) % 3 {
				case 0:
					if err := s.Ack(ctx, "tencent", seqs(es)); err != nil {
						t.Error(err)
						return
					}
					acked.Add(int64(len(es)))
				case 1:
					if err := s.Fail(ctx, "tencent", seqs(es), fmt.Sprint("worker ", w)); err != nil {
						t.Error(err)
						return
					}
				default:
					s.Release("tencent", seqs(es))
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()["tencent"]
	if st.InFlight != 0 {
		t.Fatalf("in flight after the workers stopped: %+v", st)
	}
	if st.Depth > 0 {
		es, err := s.Lease(ctx, "tencent", n, 1<<30)
		t.Fatalf("%d entries left and none leased, yet the workers gave up; a lease now returns %d (%v): given-back entries were stranded",
			st.Depth, len(es), err)
	}
	if acked.Load() != n {
		t.Fatalf("acked %d, want %d", acked.Load(), n)
	}
}
