// Command growth measures how the agent's costs grow with its backlog:
// for each size it fills a fresh store with that many queued actions
// (loadgen -fill), then on that store measures the time from start to
// ready and the memory once ready, the single-action ingest rate beside
// the same run's ceilings (loadgen), and the drain rate into the Tencent
// simulator. Loopback only; every step is bounded in time.
//
//	go run ./bench/growth                      # 10k, 100k and 1M queued
//	go run ./bench/growth -sizes 10000,100000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "growth:", err)
		os.Exit(1)
	}
}

type row struct {
	Size                               int
	FillRate                           float64
	StartToReady                       time.Duration
	RSSReady, AnonReady                int64
	IngestRate, IngestRatio, IngestP99 float64
	DrainRate                          float64
	DrainPeakRSS                       int64
	StoreBytes                         int64
}

func run() error {
	sizes := flag.String("sizes", "10000,100000,1000000", "backlog sizes")
	ingest := flag.Duration("ingest", 5*time.Second, "how long to measure ingest at each size")
	flag.Parse()
	bin, err := os.MkdirTemp("", "growth-bin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	for _, b := range []string{"agent", "loadgen", "upstream-sim"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, b), "./cmd/"+b).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b, err, out)
		}
	}
	var rows []row
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		r, err := measure(bin, n, *ingest)
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "size %d done: %+v\n", n, r)
	}
	fmt.Println("| queued | fill actions/s | start to ready | RSS when ready (anon) | ingest req/s (÷ loopback, p99) | drain actions/s | drain peak RSS | store on disk |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %d | %.0f | %s | %.0f MiB (%.0f MiB) | %.0f (%.2f, %.1f ms) | %.0f | %.0f MiB | %.0f MiB |\n",
			r.Size, r.FillRate, r.StartToReady.Round(time.Millisecond), mib(r.RSSReady), mib(r.AnonReady),
			r.IngestRate, r.IngestRatio, r.IngestP99, r.DrainRate, mib(r.DrainPeakRSS), mib(r.StoreBytes))
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func measure(bin string, n int, ingest time.Duration) (row, error) {
	r := row{Size: n}
	data, err := os.MkdirTemp("", "growth-data")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(data)
	lg := filepath.Join(bin, "loadgen")
	// 1. Fill.
	jf := filepath.Join(data, "fill.json")
	if out, err := exec.Command(lg, "-agent-bin", filepath.Join(bin, "agent"), "-extra-env", "AGENT_DATA_DIR="+filepath.Join(data, "agent"),
		"-fill", strconv.Itoa(n), "-concurrency", "16", "-no-ceilings", "-q", "-json", jf).CombinedOutput(); err != nil {
		return r, fmt.Errorf("fill: %v\n%s", err, out)
	}
	var rep report
	b, _ := os.ReadFile(jf)
	if err := json.Unmarshal(b, &rep); err != nil {
		return r, fmt.Errorf("fill report %s: %w", jf, err)
	}
	if len(rep.Steps) > 0 {
		r.FillRate = rep.Steps[0].Load.ActionsPerSec
	}

	// 2. Start to ready on the backlog, memory once ready.
	a, err := start(filepath.Join(bin, "agent"), filepath.Join(data, "agent"), nil)
	if err != nil {
		return r, err
	}
	r.StartToReady = a.ready
	time.Sleep(2 * time.Second) // let the page-out trim run once
	r.RSSReady, r.AnonReady = rss(a.cmd.Process.Pid)
	// 3. Ingest at this backlog, beside the same run's ceilings.
	jf2 := filepath.Join(data, "ingest.json")
	if out, err := exec.Command(lg, "-url", "http://"+a.addr, "-pid", strconv.Itoa(a.cmd.Process.Pid), "-batch", "1",
		"-duration", ingest.String(), "-warmup", "1s", "-q", "-json", jf2, "-fsync-dir", data).CombinedOutput(); err != nil {
		a.stop()
		return r, fmt.Errorf("ingest: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(jf2)
	rep = report{}
	if err := json.Unmarshal(b, &rep); err != nil {
		return r, fmt.Errorf("drain report %s: %w", jf2, err)
	}
	if len(rep.Steps) > 0 {
		st := rep.Steps[0]
		r.IngestRate, r.IngestRatio, r.IngestP99 = st.Load.ReqPerSec, st.Ratios.ReqOverLoopback, float64(st.Load.Latency.P99)/1000
	}
	a.stop()

	// 4. Drain into the Tencent simulator.
	sim := exec.Command(filepath.Join(bin, "upstream-sim"), "-tencent", freeAddr(), "-tongdun", freeAddr(), "-unionpay", freeAddr())
	simOut, _ := sim.StdoutPipe()
	if err := sim.Start(); err != nil {
		return r, err
	}
	defer func() { sim.Process.Kill(); sim.Wait() }()
	var env []string
	sc := bufio.NewScanner(simOut)
	for len(env) < 11 && sc.Scan() {
		if f := strings.Fields(strings.TrimPrefix(sc.Text(), "export ")); strings.HasPrefix(sc.Text(), "export ") {
			env = append(env, f...)
		}
	}
	env = append(env, "AGENT_TENCENT_REQUESTS_PER_MINUTE=1000000000", "AGENT_FORWARD_FLUSH_INTERVAL=100ms")
	a, err = start(filepath.Join(bin, "agent"), filepath.Join(data, "agent"), env)
	if err != nil {
		return r, err
	}
	defer a.stop()
	depth0 := -1
	t0 := time.Now()
	deadline := t0.Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := depth(a.addr)
		if err != nil {
			return r, err
		}
		if depth0 < 0 {
			depth0 = d
		}
		if d == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.DrainRate = float64(depth0) / time.Since(t0).Seconds()
	r.DrainPeakRSS, _ = hwm(a.cmd.Process.Pid)
	r.StoreBytes = dirSize(filepath.Join(data, "agent", "spool"))
	return r, nil
}

type agent struct {
	cmd   *exec.Cmd
	addr  string
	ready time.Duration
}

func start(bin, data string, env []string) (*agent, error) {
	addr := freeAddr()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "AGENT_DATA_DIR="+data, "AGENT_LISTEN_ADDR="+addr, "AGENT_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &agent{cmd: cmd, addr: addr}
	for time.Since(t0) < 2*time.Minute {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				a.ready = time.Since(t0)
				return a, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, fmt.Errorf("agent not ready after 2 minutes")
}

func (a *agent) stop() {
	a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		a.cmd.Process.Kill()
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func depth(addr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Queues map[string]struct{ Depth int } `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	return st.Queues["tencent"].Depth, nil
}

var statusLine = regexp.MustCompile(`(?m)^(VmRSS|RssAnon|VmHWM):\s+(\d+) kB`)

func procStatus(pid int) map[string]int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	out := map[string]int64{}
	for _, m := range statusLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = v << 10
	}
	return out
}

func rss(pid int) (int64, int64) { s := procStatus(pid); return s["VmRSS"], s["RssAnon"] }
func hwm(pid int) (int64, int64) { s := procStatus(pid); return s["VmHWM"], 0 }

// dirSize is the disk space the files take (allocated blocks: badger
// preallocates its logs as sparse files, so their sizes overstate it).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil //nolint:nilerr // a file gone or unreadable is not counted; the walk goes on
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// report is the part of loadgen's -json output read here.
type report struct {
	Steps []struct {
		Load struct {
			ReqPerSec     float64 `json:"req_per_sec"`
			ActionsPerSec float64 `json:"actions_per_sec"`
			Latency       struct {
				P99 int64 `json:"p99"`
			} `json:"latency_us"`
		} `json:"load"`
		Ratios struct {
			ReqOverLoopback float64 `json:"req_per_sec_over_loopback_ceiling"`
		} `json:"ratios"`
	} `json:"steps"`
}
