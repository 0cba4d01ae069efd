package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one invocation measured; -json writes it as is.
type Report struct {
	Tool         string          `json:"tool"`
	Schema       int             `json:"schema"`
	RunID        string          `json:"run_id"`
	Started      time.Time       `json:"started"`
	Machine      machineInfo     `json:"machine"`
	Config       configInfo      `json:"config"`
	Target       targetInfo      `json:"target"`
	Ceilings     *ceilingsReport `json:"ceilings,omitempty"`
	Steps        []*step         `json:"steps"`
	Fill         *fillReport     `json:"fill,omitempty"`
	Agent        *agentExit      `json:"agent,omitempty"`
	Notes        []string        `json:"notes,omitempty"`
	FailedChecks []string        `json:"failed_checks,omitempty"`
}

type machineInfo struct {
	Hostname     string `json:"hostname"`
	CPUs         int    `json:"cpus"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	Kernel       string `json:"kernel,omitempty"`
	Go           string `json:"go"`
	LoadAvgStart string `json:"loadavg_start,omitempty"`
	LoadAvgEnd   string `json:"loadavg_end,omitempty"`
}

type configInfo struct {
	Mode        string    `json:"mode"`
	Batch       int       `json:"batch"`
	Concurrency int       `json:"concurrency"`
	Rate        float64   `json:"rate"`
	Sweep       []float64 `json:"sweep,omitempty"`
	DurationSec float64   `json:"duration_sec"`
	WarmupSec   float64   `json:"warmup_sec"`
	Requests    int64     `json:"requests,omitempty"`
	Fill        int64     `json:"fill,omitempty"`
	DupRate     float64   `json:"dup_rate"`
	TimeoutSec  float64   `json:"timeout_sec"`
	CeilingSec  float64   `json:"ceiling_sec"`
	Seed        uint64    `json:"seed"`
}

type targetInfo struct {
	Kind        string   `json:"kind"` // agent-bin or url
	Bin         string   `json:"bin,omitempty"`
	URL         string   `json:"url"`
	PID         int      `json:"pid,omitempty"`
	DataDir     string   `json:"data_dir,omitempty"`
	ExtraEnv    []string `json:"extra_env,omitempty"`
	DepthBefore int64    `json:"queue_depth_before"`
	DepthAfter  int64    `json:"queue_depth_after"`
}

type ceilingsReport struct {
	Fsync         *fsyncResult `json:"fsync,omitempty"`
	FsyncError    string       `json:"fsync_error,omitempty"`
	Loopback      *loadResult  `json:"loopback,omitempty"` // flat out
	LoopbackError string       `json:"loopback_error,omitempty"`
	// LoopbackProc: the no-op server in a process of its own, flat out.
	LoopbackProc      *procCeiling `json:"loopback_proc,omitempty"`
	LoopbackProcError string       `json:"loopback_proc_error,omitempty"`
}

// usage is a process's CPU and memory over a window; bytes.
type usage struct {
	CPUSeconds  float64 `json:"cpu_sec"`
	AvgCores    float64 `json:"avg_cores"`
	PeakRSS     int64   `json:"peak_rss,omitempty"`
	PeakRssAnon int64   `json:"peak_rss_anon,omitempty"`
	PeakRssFile int64   `json:"peak_rss_file,omitempty"`
	VmHWM       int64   `json:"vm_hwm,omitempty"`
	RSSAtEnd    int64   `json:"rss_at_end,omitempty"`
}

type ratios struct {
	// achieved req/s ÷ the loopback ceiling's req/s (flat out)
	ReqVsLoopback *float64 `json:"req_per_sec_over_loopback_ceiling,omitempty"`
	// achieved req/s ÷ the own-process loopback ceiling's req/s
	ReqVsLoopbackProc *float64 `json:"req_per_sec_over_loopback_proc_ceiling,omitempty"`
	// achieved actions/s ÷ fsyncs/s: actions each fsync carried
	ActionsPerFsync *float64 `json:"actions_per_sec_over_fsyncs_per_sec,omitempty"`
	// p99 ÷ the loopback p99 (at the same rate for open-loop steps)
	P99VsLoopback *float64 `json:"p99_over_loopback_p99,omitempty"`
}

type step struct {
	Load           *loadResult `json:"load"`
	LoopbackAtRate *loadResult `json:"loopback_at_rate,omitempty"`
	// the no-op in a process of its own at the same rate
	LoopbackProcAtRate *loadResult  `json:"loopback_proc_at_rate,omitempty"`
	Agent              *usage       `json:"agent,omitempty"`
	InAgent            *inAgent     `json:"in_agent,omitempty"` // the agent's own handler histogram over the window
	Loadgen            *usage       `json:"loadgen,omitempty"`
	DiskProbe          *probeResult `json:"disk_probe,omitempty"`
	Ratios             ratios       `json:"ratios"`
}

type fillReport struct {
	Target     int64   `json:"target_actions"`
	SettleSec  float64 `json:"settle_sec"`
	Step       *step   `json:"-"`
	After      *usage  `json:"agent_after,omitempty"` // memory in the settle period after the fill
	DepthAfter int64   `json:"queue_depth_after"`
	DepthAdded int64   `json:"queue_depth_added"`
	DepthError string  `json:"queue_depth_error,omitempty"`
}

type agentExit struct {
	Exit        string   `json:"exit"`
	ShutdownSec float64  `json:"shutdown_sec"`
	LogWarnings int      `json:"log_warnings"`
	LogErrors   int      `json:"log_errors"`
	ErrorLines  []string `json:"error_lines,omitempty"`
	PeakRSS     int64    `json:"peak_rss,omitempty"` // whole run, sampled
	PeakRssAnon int64    `json:"peak_rss_anon,omitempty"`
	PeakRssFile int64    `json:"peak_rss_file,omitempty"`
	VmHWM       int64    `json:"vm_hwm,omitempty"`
}

func newReport(c *config) *Report {
	return &Report{
		Tool: "outpost-loadgen", Schema: 1, RunID: newRunID(), Started: time.Now().UTC(),
		Machine: hostInfo(),
		Config: configInfo{
			Mode: c.mode, Batch: c.batch, Concurrency: c.concurrency, Rate: c.rate, Sweep: c.sweep,
			DurationSec: c.duration.Seconds(), WarmupSec: c.warmup.Seconds(), Requests: c.requests, Fill: c.fill,
			DupRate: c.dupRate, TimeoutSec: c.timeout.Seconds(), CeilingSec: c.ceilingDur.Seconds(), Seed: c.seed,
		},
	}
}

func ratio(a, b float64) *float64 {
	if a <= 0 || b <= 0 {
		return nil
	}
	r := a / b
	return &r
}

func ratiosFor(st *step, c *ceilingsReport) ratios {
	var r ratios
	if c == nil || st.Load.Requests == 0 {
		return r
	}
	if c.Loopback != nil {
		r.ReqVsLoopback = ratio(st.Load.ReqPerSec, c.Loopback.ReqPerSec)
	}
	if c.LoopbackProc != nil {
		r.ReqVsLoopbackProc = ratio(st.Load.ReqPerSec, c.LoopbackProc.Load.ReqPerSec)
	}
	if c.Fsync != nil {
		r.ActionsPerFsync = ratio(st.Load.ActionsPerSec, c.Fsync.PerSec)
	}
	base := c.Loopback
	if st.LoopbackAtRate != nil {
		base = st.LoopbackAtRate
	}
	if base != nil {
		r.P99VsLoopback = ratio(float64(st.Load.Latency.P99), float64(base.Latency.P99))
	}
	return r
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

func fmtRatio(r *float64, digits int) string {
	if r == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*r, 'f', digits, 64)
}

func fmtRate(r float64) string {
	if r == 0 {
		return "flat out"
	}
	return strconv.FormatFloat(r, 'g', 6, 64) + " req/s"
}

// statusLine groups the answers: 202, other 2xx, 4xx, 503, other 5xx,
// transport errors.
func statusLine(r *loadResult) string {
	var ok2, other2, c4, c503, c5, other int64
	for k, n := range r.Status {
		code, _ := strconv.Atoi(k)
		switch {
		case code == 202:
			ok2 += n
		case code >= 200 && code < 300:
			other2 += n
		case code >= 400 && code < 500:
			c4 += n
		case code == 503:
			c503 += n
		case code >= 500:
			c5 += n
		default:
			other += n
		}
	}
	s := fmt.Sprintf("202: %d   4xx: %d   503: %d   errors: %d", ok2, c4, c503, r.Errors)
	if other2+c5+other > 0 {
		s += fmt.Sprintf("   other 2xx: %d   other 5xx: %d   other: %d", other2, c5, other)
	}
	return s
}

func errCodesLine(r *loadResult) string {
	keys := make([]string, 0, len(r.ErrorCodes))
	for k := range r.ErrorCodes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, r.ErrorCodes[k]))
	}
	return strings.Join(parts, ", ")
}

func latencyLine(l latencySummary) string {
	if l.Count == 0 {
		return "no answers"
	}
	return fmt.Sprintf("p50 %s   p90 %s   p99 %s   p99.9 %s   max %s   (n=%d)",
		fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99), fmtMicros(l.P999), fmtMicros(l.Max), l.Count)
}

func loopName(r *loadResult) string {
	if r.Loop == "open" {
		return fmt.Sprintf("%s open loop", fmtRate(r.OfferedRate))
	}
	return "flat out, closed loop"
}

func printReport(out io.Writer, rep *Report) {
	w := &errWriter{w: out}
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	m := rep.Machine
	p("outpost loadgen   run %s   %s   mode %s", rep.RunID, rep.Started.Format(time.RFC3339), rep.Config.Mode)
	p("machine   %d CPUs (GOMAXPROCS %d), %s/%s, kernel %s, %s; load avg %s -> %s",
		m.CPUs, m.GOMAXPROCS, m.OS, m.Arch, m.Kernel, m.Go, m.LoadAvgStart, m.LoadAvgEnd)
	t := rep.Target
	if t.Kind == "agent-bin" {
		p("target    agent %s, pid %d, %s, data %s", t.Bin, t.PID, t.URL, t.DataDir)
	} else {
		pid := "no pid: no RSS/CPU"
		if t.PID > 0 {
			pid = "pid " + strconv.Itoa(t.PID)
		}
		p("target    running agent at %s (%s)", t.URL, pid)
	}
	if len(t.ExtraEnv) > 0 {
		p("          env %s", strings.Join(t.ExtraEnv, " "))
	}
	cfg := rep.Config
	p("shape     batch %d, concurrency %d, %v measured + %v warmup per run, dup-rate %g, seed %d",
		cfg.Batch, cfg.Concurrency, secs(cfg.DurationSec), secs(cfg.WarmupSec), cfg.DupRate, cfg.Seed)

	if c := rep.Ceilings; c != nil {
		p("")
		p("ceilings (this run, before the load)")
		if c.Fsync != nil {
			p("  fsync      %8.0f fsyncs/s   256 B write + fdatasync, 1 thread; p50 %s p99 %s; in %s",
				c.Fsync.PerSec, fmtMicros(c.Fsync.Latency.P50), fmtMicros(c.Fsync.Latency.P99), c.Fsync.Dir)
		} else {
			p("  fsync      failed: %s", c.FsyncError)
		}
		if l := c.Loopback; l != nil {
			p("  loopback   %8.0f req/s      %s; no-op net/http, same client, c=%d, %.0f B bodies",
				l.ReqPerSec, shortLatency(l.Latency), l.Concurrency, l.AvgBodySize)
		} else {
			p("  loopback   failed: %s", c.LoopbackError)
		}
		if l := c.LoopbackProc; l != nil {
			p("  loopback-proc %5.0f req/s   %s; the same no-op server in its own process (server %.2f cores)",
				l.Load.ReqPerSec, shortLatency(l.Load.Latency), l.ServerCores)
		} else if c.LoopbackProcError != "" {
			p("  loopback-proc failed: %s", c.LoopbackProcError)
		}
	}

	for _, st := range rep.Steps {
		r := st.Load
		p("")
		if rep.Fill != nil {
			p("fill: %d actions in batches of %d, %d workers", rep.Fill.Target, r.Batch, r.Concurrency)
		} else {
			p("load: %s, %d workers", loopName(r), r.Concurrency)
		}
		p("  requests   %d in %.2f s -> %.0f req/s, %.0f actions/s   (accepted %d, duplicates %d; %.0f B/body)",
			r.Requests, r.ElapsedSec, r.ReqPerSec, r.ActionsPerSec, r.Accepted, r.Duplicates, r.AvgBodySize)
		if r.Unsent > 0 {
			p("  unsent     %d scheduled requests never sent (fell behind; drain limit)", r.Unsent)
		}
		p("  status     %s", statusLine(r))
		if len(r.ErrorCodes) > 0 {
			p("  non-202    %s", errCodesLine(r))
		}
		if r.FirstRefusal != "" {
			p("  1st non-202 %s", r.FirstRefusal)
		}
		if r.FirstError != "" {
			p("  1st error  %s", r.FirstError)
		}
		p("  latency    %s", latencyLine(r.Latency))
		if ia := st.InAgent; ia != nil {
			p("  in agent   %s", ia.line())
		}
		if lb := st.LoopbackAtRate; lb != nil {
			p("  loopback   at the same rate: %.0f req/s, %s", lb.ReqPerSec, shortLatency(lb.Latency))
		}
		if lb := st.LoopbackProcAtRate; lb != nil {
			p("  loopback-proc at the same rate: %.0f req/s, %s", lb.ReqPerSec, shortLatency(lb.Latency))
		}
		if l := r.PacingLag; l != nil {
			p("  pacing     timers woke workers late by p50 %s, p99 %s on %d sends (the generator's delay: not in the latency above)",
				fmtMicros(l.P50), fmtMicros(l.P99), l.Count)
		}
		if a := st.Agent; a != nil {
			p("  agent      CPU %.2f s = %.2f cores; RSS peak %s (anon %s, file %s); VmHWM %s",
				a.CPUSeconds, a.AvgCores, mib(a.PeakRSS), mib(a.PeakRssAnon), mib(a.PeakRssFile), mib(a.VmHWM))
		}
		if d := st.DiskProbe; d != nil {
			if d.Error != "" {
				p("  disk probe failed: %s", d.Error)
			} else {
				p("  disk       probe during the step (warm-up included), one fdatasync per %v: p50 %s p99 %s p99.9 %s max %s; %d of %d over 2 ms",
					secs(d.IntervalSec), fmtMicros(d.Latency.P50), fmtMicros(d.Latency.P99), fmtMicros(d.Latency.P999), fmtMicros(d.Latency.Max), d.Over2ms, d.Latency.Count)
			}
		}
		if g := st.Loadgen; g != nil {
			p("  loadgen    CPU %.2f s = %.2f cores (shares the machine with the agent)", g.CPUSeconds, g.AvgCores)
		}
		if rep.Ceilings != nil {
			p("  ratios     req/s / loopback ceiling %s (/ loopback-proc %s)   actions/s / fsyncs/s %s   p99 / loopback p99 %s",
				fmtRatio(st.Ratios.ReqVsLoopback, 3), fmtRatio(st.Ratios.ReqVsLoopbackProc, 3), fmtRatio(st.Ratios.ActionsPerFsync, 2), fmtRatio(st.Ratios.P99VsLoopback, 1))
		}
	}

	if f := rep.Fill; f != nil {
		if f.After != nil {
			p("  after      %v idle: RSS peak %s (anon %s, file %s), at end %s; VmHWM %s",
				secs(f.SettleSec), mib(f.After.PeakRSS), mib(f.After.PeakRssAnon), mib(f.After.PeakRssFile), mib(f.After.RSSAtEnd), mib(f.After.VmHWM))
		}
		if f.DepthError != "" {
			p("  depth      %s", f.DepthError)
		} else {
			mark := "ok"
			if f.DepthAdded != f.Step.Load.Total.Accepted {
				mark = "MISMATCH"
			}
			p("  depth      %d queued after the fill (+%d; the agent accepted %d of %d sent): %s",
				f.DepthAfter, f.DepthAdded, f.Step.Load.Total.Accepted, f.Step.Load.Total.Actions, mark)
		}
	}

	if len(rep.Steps) > 1 {
		p("")
		p("sweep")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "offered req/s\tachieved req/s\tactions/s\tp50\tp99\tp99.9\tloopback p99\tp99 ratio\tagent cores\tnon-202\tunsent\t")
		for _, st := range rep.Steps {
			r := st.Load
			lb, cores := "-", "-"
			if st.LoopbackAtRate != nil {
				lb = fmtMicros(st.LoopbackAtRate.Latency.P99)
			}
			if st.Agent != nil {
				cores = strconv.FormatFloat(st.Agent.AvgCores, 'f', 2, 64)
			}
			fmt.Fprintf(tw, "%g\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n",
				r.OfferedRate, r.ReqPerSec, r.ActionsPerSec, fmtMicros(r.Latency.P50), fmtMicros(r.Latency.P99),
				fmtMicros(r.Latency.P999), lb, fmtRatio(st.Ratios.P99VsLoopback, 1), cores,
				r.Requests-r.count(202), r.Unsent)
		}
		tw.Flush()
	}

	p("")
	if a := rep.Agent; a != nil {
		p("agent     %s after SIGTERM in %.2f s; log: %d warnings, %d errors; whole run: RSS peak %s (anon %s, file %s), VmHWM %s",
			a.Exit, a.ShutdownSec, a.LogWarnings, a.LogErrors, mib(a.PeakRSS), mib(a.PeakRssAnon), mib(a.PeakRssFile), mib(a.VmHWM))
		for _, l := range a.ErrorLines {
			p("          %s", l)
		}
	}
	var accepted int64
	for _, st := range rep.Steps {
		accepted += st.Load.Total.Accepted
	}
	p("queue     tencent depth %d before, %d after (+%d; the agent accepted %d actions, warmup included)",
		t.DepthBefore, t.DepthAfter, t.DepthAfter-t.DepthBefore, accepted)
	for _, n := range rep.Notes {
		p("note      %s", n)
	}
	for _, f := range rep.FailedChecks {
		p("FAILED    %s", f)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func shortLatency(l latencySummary) string {
	return fmt.Sprintf("p50 %s p99 %s", fmtMicros(l.P50), fmtMicros(l.P99))
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

// writeChartFile draws the sweep: p50 and p99 against offered load, with
// the loopback p99 at each rate for reference.
func writeChartFile(path string, rep *Report) error {
	var p50, p99, lb chartSeries
	p50 = chartSeries{Name: "agent p50", Color: "#1f77b4", Labels: true}
	p99 = chartSeries{Name: "agent p99", Color: "#d62728", Labels: true}
	lb = chartSeries{Name: "loopback p99 (no-op)", Color: "#7f7f7f", Dashed: true}
	steps := slices.Clone(rep.Steps)
	slices.SortFunc(steps, func(a, b *step) int {
		switch {
		case a.Load.OfferedRate < b.Load.OfferedRate:
			return -1
		case a.Load.OfferedRate > b.Load.OfferedRate:
			return 1
		}
		return 0
	})
	for _, st := range steps {
		r := st.Load
		if r.Latency.Count == 0 {
			continue
		}
		hollow := r.ReqPerSec < 0.95*r.OfferedRate || r.count(202) < r.Requests
		p50.Points = append(p50.Points, chartPoint{X: r.OfferedRate, Y: float64(r.Latency.P50) / 1e3, Hollow: hollow})
		p99.Points = append(p99.Points, chartPoint{X: r.OfferedRate, Y: float64(r.Latency.P99) / 1e3, Hollow: hollow})
		if l := st.LoopbackAtRate; l != nil && l.Latency.Count > 0 {
			lb.Points = append(lb.Points, chartPoint{X: r.OfferedRate, Y: float64(l.Latency.P99) / 1e3})
		}
	}
	c := chart{
		Title: "Outpost agent: latency against offered load (POST /v1/actions)",
		Subtitle: fmt.Sprintf("batch %d, %d workers, open loop, %v per step; latency from the intended send time (from the wake-up for idle workers); run %s, %s",
			rep.Config.Batch, rep.Config.Concurrency, secs(rep.Config.DurationSec), rep.RunID, rep.Started.Format("2006-01-02 15:04 MST")),
		XLabel: "offered load (requests/s)",
		YLabel: "latency (log scale)",
		Series: []chartSeries{p50, p99},
	}
	if len(lb.Points) > 0 {
		c.Series = append(c.Series, lb)
	}
	m := rep.Machine
	c.Notes = append(c.Notes, fmt.Sprintf("%d CPUs shared by the agent and the load generator; %s/%s, kernel %s, %s",
		m.CPUs, m.OS, m.Arch, m.Kernel, m.Go))
	if rep.Ceilings != nil && rep.Ceilings.Fsync != nil && rep.Ceilings.Loopback != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("ceilings this run: fsync %.0f/s, loopback no-op HTTP %.0f req/s flat out",
			rep.Ceilings.Fsync.PerSec, rep.Ceilings.Loopback.ReqPerSec))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeSVG(f, c); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
