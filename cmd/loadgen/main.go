// Command loadgen is the Outpost project's load tool: it drives the agent's
// local API (POST /v1/actions) with a realistic mix of Tencent Ads banking
// actions, and reports what the agent achieved beside the machine's own
// ceilings measured in the same run (a single-thread fsync loop, and an
// in-process no-op Go HTTP server driven with the same client and bodies),
// as ratios. Absolute numbers drift on shared machines; the ratios travel.
//
// It either starts the agent binary itself on a fresh temporary data dir
// (-agent-bin), sampling its memory and CPU from /proc, or loads an agent
// already running on loopback (-url, with -pid for /proc sampling). It
// only ever targets 127.0.0.1, localhost or [::1], and always stops by
// itself.
//
// Examples:
//
//	go build -o /tmp/agent ./cmd/agent
//	go run ./cmd/loadgen -agent-bin /tmp/agent                          # flat out, batch 1, 64 workers, 10s
//	go run ./cmd/loadgen -agent-bin /tmp/agent -batch 100 -duration 5s
//	go run ./cmd/loadgen -agent-bin /tmp/agent -rate 5000               # open loop at 5000 req/s
//	go run ./cmd/loadgen -agent-bin /tmp/agent -sweep 1000,2000,5000 -chart latency.svg -json sweep.json
//	go run ./cmd/loadgen -agent-bin /tmp/agent -fill 1000000            # 1M queued: memory
//	go run ./cmd/loadgen -url http://127.0.0.1:8470 -pid $(pgrep -n agent) -duration 5s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-agent/outpost/action"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == serveNoopFlag {
		if err := serveNoop(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	case len(rep.FailedChecks) > 0:
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// config is the parsed command line.
type config struct {
	agentBin    string
	url         string
	pid         int
	extraEnv    []string
	token       string
	keepData    bool
	mode        string
	accounts    int
	batch       int
	batchSet    bool
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	requests    int64
	dupRate     float64
	timeout     time.Duration
	noCeilings  bool
	ceilingDur  time.Duration
	fsyncDir    string
	diskProbe   time.Duration
	sweep       []float64
	chart       string
	fill        int64
	fillSettle  time.Duration
	fillTimeout time.Duration
	jsonOut     string
	seed        uint64
	pool        int
	cpuprofile  string
	quiet       bool
}

type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }
func (e *envList) Set(v string) error {
	k, _, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

const usageHead = `loadgen: load the Outpost agent's local API and report it against this
machine's own ceilings, measured in the same run.

usage:
  loadgen -agent-bin PATH [flags]    start the agent on a fresh temp data dir, load it, stop it
  loadgen -url http://127.0.0.1:PORT [-pid PID] [flags]    load a running agent

Runs (one of):
  flat out (default)   closed loop: -concurrency workers send back to back
  -rate R              open loop at R requests/s: sends are scheduled by time and
                       latency is measured from the intended send time, so a slow
                       agent is not hidden by a waiting client (coordinated omission);
                       a worker that was idle, asleep on a timer, measures from its
                       wake-up instead (Go timers wake up to 1 ms late, the
                       generator's own delay, reported apart as "pacing")
  -sweep R1,R2,...     one open-loop step per rate, same agent; -chart draws p50/p99
  -fill N              send N actions as fast as possible (batches of -batch,
                       default 500 here) and report memory during and after, and
                       the agent's queue depth at the end

Ceilings (before the load, ~2 s each; -no-ceilings skips them):
  fsync      256-byte write + fdatasync in a loop, one thread, on the agent's
             data dir's filesystem (or -fsync-dir): fsyncs/s
  loopback   an in-process no-op net/http server on 127.0.0.1 (reads the body,
             answers 202 {}) driven with the same client, concurrency and
             bodies: req/s and latency; at the same rate too for -rate/-sweep
  loopback-proc  the same no-op server in a process of its own (loadgen run
             as "loadgen -serve-noop"), as the agent is: each request
             crosses between two Go runtimes competing for the cores; at
             the same rate too for -rate/-sweep
  Ratios: achieved req/s / loopback req/s (and / loopback-proc req/s); achieved actions/s / fsyncs/s
  (actions carried per fsync); p99 / loopback p99.

Only 127.0.0.1, localhost and [::1] are ever targeted. The started agent
gets the caller's environment minus AGENT_* variables, plus AGENT_DATA_DIR,
AGENT_LISTEN_ADDR=127.0.0.1:0, AGENT_LOG_FORMAT=json and -extra-env. Exit
status: 0 ok, 1 error or a failed check (agent did not exit 0 on SIGTERM,
fill depth mismatch), 2 bad usage.

flags:
`

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	var env envList
	var sweep string
	var seed int64
	fs.StringVar(&c.agentBin, "agent-bin", "", "start this agent binary on a fresh temp data dir and load it")
	fs.StringVar(&c.url, "url", "", "load the agent running at this loopback base URL (e.g. http://127.0.0.1:8470)")
	fs.IntVar(&c.pid, "pid", 0, "with -url: the agent's process id, to sample its RSS and CPU")
	fs.Var(&env, "extra-env", "K=V passed to the started agent (repeatable)")
	fs.StringVar(&c.token, "token", "", "bearer token to send (default: AGENT_AUTH_TOKEN from -extra-env)")
	fs.BoolVar(&c.keepData, "keep-data", false, "keep the started agent's data dir (printed) instead of removing it")
	fs.StringVar(&c.mode, "mode", "actions", "what to load: actions (POST /v1/actions) or decisions (POST /v1/decisions, one per request)")
	fs.IntVar(&c.accounts, "accounts", 200, "decisions: distinct accounts (few = a warm score cache after the warm-up)")
	fs.IntVar(&c.batch, "batch", 1, "actions per request (1-"+strconv.Itoa(action.MaxActions)+"); -fill defaults to 500")
	fs.IntVar(&c.concurrency, "concurrency", 64, "workers, each with at most one request in flight")
	fs.Float64Var(&c.rate, "rate", 0, "requests/s, open loop (0 = flat out, closed loop)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured length of a run (of each -sweep step)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "sent before each run and not measured")
	fs.Int64Var(&c.requests, "requests", 0, "stop after this many measured requests (0 = no limit; -duration still applies)")
	fs.Float64Var(&c.dupRate, "dup-rate", 0, "fraction of actions that reuse an id sent earlier in the run (0-0.99)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.BoolVar(&c.noCeilings, "no-ceilings", false, "skip the fsync and loopback ceilings (no ratios)")
	fs.DurationVar(&c.ceilingDur, "ceiling-duration", 2*time.Second, "length of each ceiling measurement")
	fs.DurationVar(&c.diskProbe, "disk-probe", 0, "during each load step, one 256 B write + fdatasync per this interval beside the agent's data (e.g. 10ms), to show the disk's own stalls (0 = off)")
	fs.StringVar(&c.fsyncDir, "fsync-dir", "", "directory for the fsync ceiling (default: the started agent's data dir; with -url the temp dir)")
	fs.StringVar(&sweep, "sweep", "", "comma-separated rates (req/s): one open-loop step each, e.g. 1000,2000,5000,10000")
	fs.StringVar(&c.chart, "chart", "", "with -sweep: write p50/p99 latency against offered load to this SVG file")
	fs.Int64Var(&c.fill, "fill", 0, "send this many actions as fast as possible, then report memory and queue depth")
	fs.DurationVar(&c.fillSettle, "fill-settle", 5*time.Second, "with -fill: how long to keep sampling memory after the fill")
	fs.DurationVar(&c.fillTimeout, "fill-timeout", 10*time.Minute, "with -fill: stop sending after this long")
	fs.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.Int64Var(&seed, "seed", 0, "seed for the bodies' contents (0 = random); ids are always unique per run")
	fs.IntVar(&c.pool, "pool", 0, "distinct pre-built bodies (0 = about 8 MiB worth, 16-1024)")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.BoolVar(&c.quiet, "q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, usageErr(fs, "unexpected arguments: %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "batch" {
			c.batchSet = true
		}
	})
	c.extraEnv = env
	c.seed = uint64(seed)
	if c.token == "" {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "AGENT_AUTH_TOKEN="); ok {
				c.token = v
			}
		}
	}
	if sweep != "" {
		for _, f := range strings.Split(sweep, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || r <= 0 {
				return nil, usageErr(fs, "-sweep: %q is not a positive rate", f)
			}
			c.sweep = append(c.sweep, r)
		}
	}
	if c.fill > 0 && !c.batchSet {
		c.batch = 500
	}
	return c, c.validate(fs)
}

func usageErr(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(fs.Output(), "loadgen: "+format+"\n", a...)
	fmt.Fprintln(fs.Output(), "run loadgen -h for the flags")
	return errUsage
}

func (c *config) validate(fs *flag.FlagSet) error {
	switch {
	case c.mode == "decisions" && (c.batch != 1 || c.fill > 0):
		return usageErr(fs, "-mode decisions takes one decision per request (no -batch, no -fill)")
	case c.mode != "actions" && c.mode != "decisions":
		return usageErr(fs, "-mode %q: unknown (actions or decisions)", c.mode)
	case (c.agentBin == "") == (c.url == ""):
		return usageErr(fs, "give exactly one of -agent-bin PATH or -url http://127.0.0.1:PORT")
	case c.pid != 0 && c.url == "":
		return usageErr(fs, "-pid goes with -url (a started agent is sampled anyway)")
	case c.batch < 1 || c.batch > action.MaxActions:
		return usageErr(fs, "-batch must be 1-%d", action.MaxActions)
	case c.concurrency < 1 || c.concurrency > 10000:
		return usageErr(fs, "-concurrency must be 1-10000")
	case c.rate < 0:
		return usageErr(fs, "-rate must be >= 0")
	case c.duration <= 0:
		return usageErr(fs, "-duration must be > 0")
	case c.warmup < 0:
		return usageErr(fs, "-warmup must be >= 0")
	case c.requests < 0 || c.fill < 0:
		return usageErr(fs, "-requests and -fill must be >= 0")
	case c.dupRate < 0 || c.dupRate > 0.99:
		return usageErr(fs, "-dup-rate must be 0-0.99")
	case c.diskProbe < 0 || (c.diskProbe > 0 && c.diskProbe < time.Millisecond):
		return usageErr(fs, "-disk-probe must be 0 (off) or at least 1ms")
	case c.timeout <= 0 || c.ceilingDur <= 0:
		return usageErr(fs, "-timeout and -ceiling-duration must be > 0")
	case len(c.sweep) > 0 && c.rate > 0:
		return usageErr(fs, "-sweep and -rate are exclusive (a sweep is fixed-rate steps)")
	case c.fill > 0 && (c.rate > 0 || len(c.sweep) > 0):
		return usageErr(fs, "-fill is a flat-out run: not with -rate or -sweep")
	case c.chart != "" && len(c.sweep) == 0:
		return usageErr(fs, "-chart needs -sweep")
	}
	if c.url != "" {
		if _, err := loopbackURL(c.url); err != nil {
			return usageErr(fs, "%v", err)
		}
	}
	return nil
}

func (c *config) logf(stderr io.Writer, format string, a ...any) {
	if !c.quiet {
		fmt.Fprintf(stderr, "[loadgen %s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
}

// run is the whole tool: it parses args, runs, prints the report to
// stdout and returns it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*Report, error) {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return nil, err
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	rep := newReport(c)
	err = execute(ctx, c, rep, stderr)
	if rep.Steps != nil || rep.Fill != nil {
		printReport(stdout, rep)
	}
	if c.jsonOut != "" && (rep.Steps != nil || rep.Fill != nil) {
		if werr := writeJSON(c.jsonOut, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return rep, err
}

// execute runs the target, ceilings and load, filling rep.
func execute(ctx context.Context, c *config, rep *Report, stderr io.Writer) error {
	// The target.
	var (
		agent *agentProc
		base  = new(targetBase)
		pid   = c.pid
	)
	if c.agentBin != "" {
		dir, err := os.MkdirTemp("", "loadgen-agent-")
		if err != nil {
			return err
		}
		if !c.keepData {
			defer os.RemoveAll(dir)
		}
		c.logf(stderr, "starting %s on %s", c.agentBin, dir)
		agent, err = startAgent(c.agentBin, dir, c.extraEnv)
		if err != nil {
			return err
		}
		defer func() { // in case of an early return; a normal end stops it below
			if agent != nil {
				agent.stop(30 * time.Second)
			}
		}()
		u, err := loopbackURL("http://" + agent.addr)
		if err != nil {
			return fmt.Errorf("the agent's listen address: %w", err)
		}
		base.u = u
		pid = agent.pid()
		rep.Target = targetInfo{Kind: "agent-bin", Bin: c.agentBin, URL: u.String(), PID: pid, DataDir: dir, ExtraEnv: redactEnv(c.extraEnv)}
		if c.fsyncDir == "" {
			c.fsyncDir = dir
		}
	} else {
		u, _ := loopbackURL(c.url)
		base.u = u
		rep.Target = targetInfo{Kind: "url", URL: u.String(), PID: pid}
		if c.fsyncDir == "" {
			c.fsyncDir = os.TempDir()
			rep.Notes = append(rep.Notes, "fsync ceiling measured in "+c.fsyncDir+", which may not be the agent's filesystem (use -fsync-dir)")
		}
	}
	var smp *sampler
	if pid > 0 {
		if _, err := readProc(pid); err != nil {
			return fmt.Errorf("cannot sample process %d: %w", pid, err)
		}
		smp = startSampler(pid, 100*time.Millisecond)
		defer smp.close()
	}

	client := newClient(c.concurrency, c.timeout)
	defer client.CloseIdleConnections()
	depth0, derr := queueDepth(ctx, client, base.u, c.token)
	if derr != nil {
		return fmt.Errorf("the agent does not answer: %w", derr)
	}
	rep.Target.DepthBefore = depth0

	c.logf(stderr, "building %s bodies of %d action(s)", poolSizeString(c), c.batch)
	poolSize := c.pool
	if poolSize <= 0 {
		poolSize = defaultPoolSize(c.batch)
	}
	gen := newGenerator(rep.RunID, c.batch, poolSize, c.dupRate, c.seed, c.mode == "decisions", c.accounts)
	proto := runSpec{
		url: endpoint(base.u, "/v1/"+c.mode), client: client, token: c.token, gen: gen,
		seq: new(seqCounter), concurrency: c.concurrency, seed: c.seed,
	}

	// Ceilings, before the load.
	rates := c.sweep
	if c.rate > 0 {
		rates = []float64{c.rate}
	}
	loopAtRate := map[float64]*loadResult{}
	procAtRate := map[float64]*loadResult{}
	if !c.noCeilings {
		rep.Ceilings = &ceilingsReport{}
		c.logf(stderr, "fsync ceiling in %s (%v)", c.fsyncDir, c.ceilingDur)
		if fr, err := measureFsync(c.fsyncDir, c.ceilingDur); err != nil {
			rep.Ceilings.FsyncError = err.Error()
		} else {
			rep.Ceilings.Fsync = fr
		}
		if ctx.Err() == nil {
			c.logf(stderr, "loopback HTTP ceiling, flat out (%v)", c.ceilingDur)
			lr, err := loopbackRun(ctx, proto, 0, c.ceilingDur)
			if err != nil {
				rep.Ceilings.LoopbackError = err.Error()
			} else {
				rep.Ceilings.Loopback = lr
			}
		}
		if ctx.Err() == nil {
			c.logf(stderr, "loopback HTTP ceiling, no-op server in its own process, flat out (%v)", c.ceilingDur)
			pr, err := loopbackProcRun(ctx, proto, 0, c.ceilingDur)
			if err != nil {
				rep.Ceilings.LoopbackProcError = err.Error()
			} else {
				rep.Ceilings.LoopbackProc = pr
			}
		}
		for _, r := range rates {
			if ctx.Err() != nil {
				break
			}
			c.logf(stderr, "loopback HTTP at %g req/s (%v)", r, c.ceilingDur)
			if lr, err := loopbackRun(ctx, proto, r, c.ceilingDur); err == nil {
				loopAtRate[r] = lr
			}
			if ctx.Err() != nil {
				break
			}
			c.logf(stderr, "loopback HTTP at %g req/s, no-op server in its own process (%v)", r, c.ceilingDur)
			if pr, err := loopbackProcRun(ctx, proto, r, c.ceilingDur); err == nil {
				procAtRate[r] = pr.Load
			}
		}
	}

	// The load. begin runs as the measured window opens: on a timer's
	// goroutine after a warm-up, so what it reads is kept under a lock for
	// finish, which runs on this one once the step is over.
	route := "POST /v1/" + c.mode
	var open struct {
		sync.Mutex
		t0          time.Time
		cpu0, self0 time.Duration
		hist        []hBucket
		histErr     error
	}
	begin := func() {
		t0 := time.Now()
		self0, _ := readCPU(os.Getpid())
		var cpu0 time.Duration
		if pid > 0 {
			cpu0, _ = readCPU(pid)
			smp.window()
		}
		b, err := handlerHist(ctx, client, base.u, c.token, route)
		open.Lock()
		open.t0, open.self0, open.cpu0, open.hist, open.histErr = t0, self0, cpu0, b, err
		open.Unlock()
	}
	finish := func(st *step) {
		open.Lock()
		t0, self0, cpu0, hist0, histErr := open.t0, open.self0, open.cpu0, open.hist, open.histErr
		open.Unlock()
		el := time.Since(t0)
		if b, err := handlerHist(ctx, client, base.u, c.token, route); err != nil {
			st.InAgent = &inAgent{Route: route, Error: err.Error()}
		} else if histErr != nil {
			st.InAgent = &inAgent{Route: route, Error: histErr.Error()}
		} else {
			st.InAgent = windowHist(route, hist0, b)
		}
		st.Loadgen = &usage{}
		if self1, err := readCPU(os.Getpid()); err == nil {
			st.Loadgen.CPUSeconds = (self1 - self0).Seconds()
			st.Loadgen.AvgCores = (self1 - self0).Seconds() / el.Seconds()
		}
		if pid > 0 {
			w := smp.window()
			cur, _ := smp.snapshot()
			cpu1, _ := readCPU(pid)
			st.Agent = &usage{
				CPUSeconds: (cpu1 - cpu0).Seconds(), AvgCores: (cpu1 - cpu0).Seconds() / el.Seconds(),
				PeakRSS: w.VmRSS, PeakRssAnon: w.RssAnon, PeakRssFile: w.RssFile, VmHWM: cur.VmHWM, RSSAtEnd: cur.VmRSS,
			}
		}
	}

	switch {
	case c.fill > 0:
		spec := proto
		spec.name = "fill"
		spec.duration = c.fillTimeout
		spec.fill = c.fill
		spec.atMeasure = begin
		c.logf(stderr, "fill: %d actions in batches of %d, %d workers", c.fill, c.batch, c.concurrency)
		progress := time.NewTicker(5 * time.Second)
		filled := make(chan struct{})
		go func() {
			for {
				select {
				case <-progress.C:
					c.logf(stderr, "fill: %d of %d actions sent", min(spec.seq.Load(), uint64(c.fill)), c.fill)
				case <-filled:
					return
				}
			}
		}()
		res := runLoad(ctx, spec)
		progress.Stop()
		close(filled)
		st := &step{Load: res}
		finish(st)
		fr := &fillReport{Target: c.fill, Step: st, SettleSec: c.fillSettle.Seconds()}
		if smp != nil && ctx.Err() == nil {
			c.logf(stderr, "fill done; sampling memory for %v", c.fillSettle)
			smp.window()
			select {
			case <-time.After(c.fillSettle):
			case <-ctx.Done():
			}
			after := smp.window()
			cur, _ := smp.snapshot()
			fr.After = &usage{PeakRSS: after.VmRSS, PeakRssAnon: after.RssAnon, PeakRssFile: after.RssFile, VmHWM: cur.VmHWM, RSSAtEnd: cur.VmRSS}
		}
		if d, err := queueDepth(ctx, client, base.u, c.token); err == nil {
			fr.DepthAfter = d
			fr.DepthAdded = d - depth0
			switch {
			case fr.DepthAdded != res.Total.Accepted:
				rep.FailedChecks = append(rep.FailedChecks, fmt.Sprintf("fill: queue depth grew by %d but the agent accepted %d", fr.DepthAdded, res.Total.Accepted))
			case c.dupRate == 0 && fr.DepthAdded != c.fill:
				rep.FailedChecks = append(rep.FailedChecks, fmt.Sprintf("fill: queue depth grew by %d, want %d (non-202 answers: see status)", fr.DepthAdded, c.fill))
			}
		} else {
			fr.DepthError = err.Error()
		}
		rep.Fill = fr
		rep.Steps = []*step{st}
	default:
		runRates := rates
		if len(runRates) == 0 {
			runRates = []float64{0}
		}
		for i, r := range runRates {
			if ctx.Err() != nil {
				break
			}
			spec := proto
			spec.name = "agent"
			spec.rate = r
			spec.duration = c.duration
			spec.warmup = c.warmup
			spec.requests = c.requests
			spec.atMeasure = begin
			if r > 0 {
				spec.name = fmt.Sprintf("agent@%g", r)
				c.logf(stderr, "step %d/%d: %g req/s open loop, batch %d, %d workers, %v + %v warmup", i+1, len(runRates), r, c.batch, c.concurrency, c.duration, c.warmup)
			} else {
				c.logf(stderr, "load: flat out, batch %d, %d workers, %v + %v warmup", c.batch, c.concurrency, c.duration, c.warmup)
			}
			var probe *diskProbe
			if c.diskProbe > 0 {
				probe = startDiskProbe(c.fsyncDir, c.diskProbe)
			}
			res := runLoad(ctx, spec)
			st := &step{Load: res, LoopbackAtRate: loopAtRate[r], LoopbackProcAtRate: procAtRate[r]}
			finish(st)
			if probe != nil {
				st.DiskProbe = probe.finish()
			}
			rep.Steps = append(rep.Steps, st)
		}
	}
	for _, st := range rep.Steps {
		st.Ratios = ratiosFor(st, rep.Ceilings)
	}
	if d, err := queueDepth(ctx, client, base.u, c.token); err == nil {
		rep.Target.DepthAfter = d
	}

	if agent != nil {
		// Idle keep-alive connections first: net/http's Shutdown waits up to
		// 5 s for a connection that never carried a request, and the
		// transport may have dialled spares.
		client.CloseIdleConnections()
		if smp != nil {
			smp.sample() // the last reading of a live process
		}
		c.logf(stderr, "stopping the agent (SIGTERM)")
		exit, took, clean := agent.stop(30 * time.Second)
		a := &agentExit{Exit: exit, ShutdownSec: took.Seconds(), LogWarnings: agent.warns, LogErrors: agent.errors, ErrorLines: agent.errLines}
		if smp != nil {
			last, all := smp.snapshot()
			a.VmHWM, a.PeakRSS, a.PeakRssAnon, a.PeakRssFile = last.VmHWM, all.VmRSS, all.RssAnon, all.RssFile
		}
		rep.Agent = a
		if !clean {
			rep.FailedChecks = append(rep.FailedChecks, "agent: "+exit)
		}
		if c.keepData {
			rep.Notes = append(rep.Notes, "agent data kept in "+agent.dataDir)
		}
		agent = nil
	}
	if c.chart != "" {
		if err := writeChartFile(c.chart, rep); err != nil {
			return err
		}
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	return ctx.Err()
}

type targetBase struct{ u *url.URL }

func poolSizeString(c *config) string {
	if c.pool > 0 {
		return strconv.Itoa(c.pool)
	}
	return strconv.Itoa(defaultPoolSize(c.batch))
}

func redactEnv(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.Contains(k, "TOKEN") || strings.Contains(k, "KEY") || strings.Contains(k, "SECRET") {
			v = "<redacted>"
		}
		out[i] = k + "=" + v
	}
	return out
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func hostInfo() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(), LoadAvgStart: loadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Hostname, _ = os.Hostname()
	return m
}
