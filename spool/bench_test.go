package spool

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// BenchmarkAppendSerial: one synced 1 KiB append at a time, the way a
// lone decision record is stored; ns/op is the latency of a commit, to set
// beside BenchmarkFsync's (badger syncs its value log and its write-ahead
// log: two flushes per commit).
func BenchmarkAppendSerial(b *testing.B) {
	s := openT(b, filepath.Join(b.TempDir(), "spool"))
	defer closeT(b, s)
	payload := make([]byte, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Append(context.Background(), []Record{{Queue: "tencent", ID: strconv.Itoa(i), Payload: payload}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteUnsynced: one key-only Write at a time with PutSyncWithin,
// the shape of a decision's commit with AGENT_DECISION_SYNC_WITHIN (a 2 KiB
// record and two velocity keys); ns/op is the time until the caller is
// answered, the journal's deferred syncs included. The Get after each Write
// (a read of what was just answered) runs outside the timer.
func BenchmarkWriteUnsynced(b *testing.B) {
	s := openT(b, filepath.Join(b.TempDir(), "spool"), func(o *Options) { o.PutSyncWithin = 10 * time.Millisecond })
	defer closeT(b, s)
	rec := make([]byte, 2048)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := strconv.Itoa(i)
		kvs := []KV{
			{Key: "vel/a/" + id, Value: []byte{1}, TTL: time.Hour},
			{Key: "vel/b/" + id, Value: []byte{1}, TTL: time.Hour},
			{Key: "dec/" + id, Value: rec, TTL: time.Hour},
		}
		if _, err := s.Write(ctx, kvs, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, ok, err := s.Get("dec/" + id); err != nil || !ok {
			b.Fatalf("Get(dec/%s) after its Write: %v %v", id, ok, err)
		}
		b.StartTimer()
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

// BenchmarkFill1M appends 1,000,000 records of 256 random bytes, in groups
// of 100 from 64 goroutines, and reports the process's memory: peaks of
// RSS (VmHWM), anonymous and file-backed resident memory (RssAnon,
// RssFile: badger's value log and memtable files are MAP_SHARED mmaps, and
// the pages written through them count as RssFile), sampled every 100 ms
// and read once more at the end, and the Go heap in use. It then reopens
// the store and reports how long Open took (it checks every table).
//
// It is slow and writes about 400 MB; it runs only when -bench names it:
//
//	go test -run=NONE -bench=Fill1M -benchtime=1x ./spool/
func BenchmarkFill1M(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Fill1M") {
		b.Skip("slow: run with -bench=Fill1M")
	}
	const total, group, workers, size = 1_000_000, 100, 64, 256
	for range b.N {
		dir := filepath.Join(b.TempDir(), "spool")
		s := openT(b, dir, fillOptions)
		ctx := context.Background()

		var peak memPeaks
		peak.sample()
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					peak.sample()
				}
			}
		}()

		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				rs := make([]Record, group)
				for {
					first := next.Add(group) - group
					if first >= total {
						return
					}
					for i := range rs {
						p := make([]byte, size)
						for j := 0; j < size; j += 8 {
							binary.LittleEndian.PutUint64(p[j:], rng.Uint64())
						}
						rs[i] = Record{Queue: "tencent", ID: fmt.Sprint("r", first+int64(i)), Payload: p}
					}
					if _, err := s.Append(ctx, rs); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(stop)
		<-sampled
		peak.sample()
		end := readProcStatus()
		mapped := rssByExt(dir) // resident pages of the store's mapped files
		if p := os.Getenv("FILL_HEAPPROFILE"); p != "" {
			writeHeapProfile(b, p)
		}
		closeT(b, s)
		disk := sizeByExt(b, dir)

		// Open again: how long it takes, and how much of it is the check
		// of every table (verifyTables).
		t0 := time.Now()
		if _, err := verifyTables(Options{Dir: dir}); err != nil {
			b.Fatal(err)
		}
		verify := time.Since(t0)
		t0 = time.Now()
		s = openT(b, dir, fillOptions)
		reopen := time.Since(t0)
		if d := s.Stats()["tencent"].Depth; d != total {
			b.Fatalf("depth after reopen %d, want %d", d, total)
		}
		closeT(b, s)

		mb := func(kb int64) float64 { return float64(kb) / 1024 }
		b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
		b.ReportMetric(mb(end["VmHWM"]), "VmHWM-MB")
		b.ReportMetric(mb(peak.anonFile), "peak-RssAnon+RssFile-MB")
		b.ReportMetric(mb(peak.max["RssAnon"]), "peak-RssAnon-MB")
		b.ReportMetric(mb(peak.max["RssFile"]), "peak-RssFile-MB")
		b.ReportMetric(float64(peak.heapInuse)/(1<<20), "peak-HeapInuse-MB")
		b.ReportMetric(mb(end["VmRSS"]), "end-VmRSS-MB")
		b.ReportMetric(mb(end["RssAnon"]), "end-RssAnon-MB")
		b.ReportMetric(mb(end["RssFile"]), "end-RssFile-MB")
		for _, ext := range []string{".vlog", ".sst", ".mem"} {
			b.ReportMetric(mb(mapped[ext]), "end-Rss"+ext+"-MB")
			b.ReportMetric(float64(disk[ext])/(1<<20), "disk"+ext+"-MB")
		}
		b.ReportMetric(float64(verify.Milliseconds()), "verify-ms")
		b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
	}
}

// fillOptions applies the knobs of BenchmarkFill1M, to compare settings
// without editing code: FILL_TRIM (a duration, or "off"), FILL_MEMTABLE_MB.
// (GOMEMLIMIT and GOGC are read by the Go runtime itself.) FILL_HEAPPROFILE
// names a file for a heap profile taken at the end of the fill.
func fillOptions(o *Options) {
	switch v := os.Getenv("FILL_TRIM"); v {
	case "":
	case "off":
		o.TrimInterval = -1
	default:
		d, err := time.ParseDuration(v)
		if err != nil {
			panic("FILL_TRIM: " + err.Error())
		}
		o.TrimInterval = d
	}
	if v := os.Getenv("FILL_MEMTABLE_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic("FILL_MEMTABLE_MB: " + err.Error())
		}
		o.MemTableSize = int64(n) << 20
	}
}

// rssByExt sums the resident memory (kB) of this process's mappings of the
// files in dir, by file extension, from /proc/self/smaps.
func rssByExt(dir string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return out
	}
	abs, _ := filepath.Abs(dir)
	ext := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			ext = ""
			if len(f) >= 6 && strings.HasPrefix(f[5], abs+"/") {
				ext = filepath.Ext(f[5])
			}
		case ext != "" && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[ext] += n
		}
	}
	return out
}

// sizeByExt sums the sizes of the files in dir by extension.
func sizeByExt(b *testing.B, dir string) map[string]int64 {
	out := map[string]int64{}
	es, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			out[filepath.Ext(e.Name())] += fi.Size()
		}
	}
	return out
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// memPeaks keeps the largest values seen of /proc/self/status fields (kB),
// of RssAnon+RssFile, and of the Go heap in use (bytes).
type memPeaks struct {
	mu        sync.Mutex
	max       map[string]int64
	anonFile  int64
	heapInuse uint64
}

func (p *memPeaks) sample() {
	st := readProcStatus()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max == nil {
		p.max = map[string]int64{}
	}
	for k, v := range st {
		p.max[k] = max(p.max[k], v)
	}
	p.anonFile = max(p.anonFile, st["RssAnon"]+st["RssFile"])
	p.heapInuse = max(p.heapInuse, ms.HeapInuse)
}

// readProcStatus returns the memory fields of /proc/self/status, in kB.
func readProcStatus() map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem":
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				out[k] = n
			}
		}
	}
	return out
}
