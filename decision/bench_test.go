package decision

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkDecideCacheHit: the hot path with a warm score cache, 64
// concurrent callers: policy evaluation, velocity count, durable record.
func BenchmarkDecideCacheHit(b *testing.B) {
	r := newRig(b) // its spool and servers are closed and removed with the benchmark
	for i := 0; i < 100; i++ {
		r.eng.Decide(context.Background(), withdraw("", fmt.Sprint("acct-", i), 100))
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			res, err := r.eng.Decide(context.Background(), withdraw("", fmt.Sprint("acct-", i%100), 100))
			if err != nil || res.Signals["tongdun"].Source != "cache" {
				b.Fatalf("%v %+v", err, res.Signals["tongdun"])
			}
		}
	})
}
