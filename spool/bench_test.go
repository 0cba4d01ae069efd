package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkFsync is the disk's ceiling that the spool is compared with: one
// 256-byte write plus fdatasync per op, on the same filesystem.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel: synced single-record appends from many
// goroutines (-cpu sets GOMAXPROCS; SetParallelism(32) on 2 procs = 64).
func BenchmarkAppendParallel(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("records=%d", batch), func(b *testing.B) {
			s := openT(b, filepath.Join(b.TempDir(), "spool"))
			defer closeT(b, s)
			payload := make([]byte, 256)
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rs := make([]Record, batch)
				for pb.Next() {
					for i := range rs {
						rs[i] = Record{Queue: "tencent", ID: fmt.Sprint(n.Add(1)), Payload: payload}
					}
					if _, err := s.Append(context.Background(), rs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
