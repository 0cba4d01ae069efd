package decision

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMemCache: the score cache in front of the store, as the
// decision path uses it from many goroutines: hits on a warm set of
// accounts, and a churn of new accounts at capacity (each put evicts).
func BenchmarkMemCache(b *testing.B) {
	const capacity = 100_000
	keys := make([]string, 2*capacity)
	for i := range keys {
		keys[i] = "td|acct-" + strconv.Itoa(i) + "|withdraw"
	}
	c := cached{At: time.Unix(1e9, 0), Score: 20, Result: "accept", SequenceID: "seq"}
	b.Run("hit", func(b *testing.B) {
		m := newMemCache(capacity)
		for _, k := range keys[:10_000] {
			m.put(k, c)
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok := m.get(keys[n.Add(1)%10_000]); !ok {
					b.Fatal("miss")
				}
			}
		})
	})
	b.Run("churn", func(b *testing.B) {
		m := newMemCache(capacity)
		for _, k := range keys[:capacity] {
			m.put(k, c)
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.put(keys[n.Add(1)%int64(len(keys))], c)
			}
		})
	})
	b.Run("negative", func(b *testing.B) {
		m := newMemCache(capacity)
		now := time.Unix(1e9, 0)
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[n.Add(1)%int64(len(keys))]
				if !m.negative(k, now) {
					m.failed(k, now.Add(time.Second))
				}
			}
		})
	})
}
