package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	agentOnce sync.Once
	agentDir  string
	agentBin  string
	agentErr  error
)

// builtAgent builds cmd/agent into a temp dir once per test binary.
// LOADGEN_TEST_AGENT_BIN names an already built agent to use instead.
func builtAgent(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real agent")
	}
	if bin := os.Getenv("LOADGEN_TEST_AGENT_BIN"); bin != "" {
		return bin
	}
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loadgen-test-agent")
		if err != nil {
			agentErr = err
			return
		}
		agentDir = dir
		agentBin = filepath.Join(dir, "agent")
		out, err := exec.Command("go", "build", "-o", agentBin, "github.com/outpost-agent/outpost/cmd/agent").CombinedOutput()
		if err != nil {
			agentErr = err
			agentBin = string(out)
		}
	})
	if agentErr != nil {
		t.Fatalf("go build ./cmd/agent: %v\n%s", agentErr, agentBin)
	}
	return agentBin
}

func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == serveNoopFlag {
		// The own-process ceiling runs the test binary as its server.
		if err := serveNoop(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if agentDir != "" {
		os.RemoveAll(agentDir)
	}
	os.Exit(code)
}

func runTool(t *testing.T, args ...string) (*Report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	rep, err := run(context.Background(), append(args, "-q"), &stdout, &stderr)
	if err != nil {
		t.Fatalf("loadgen %s: %v\n%s\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	return rep, stdout.String()
}

// 300 requests of one action each at the real agent: all 202, and the
// agent's queue holds exactly what was sent.
func TestEndToEnd(t *testing.T) {
	bin := builtAgent(t)
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	rep, out := runTool(t, "-agent-bin", bin, "-requests", "300", "-concurrency", "8", "-warmup", "0",
		"-duration", "15s", "-ceiling-duration", "300ms", "-json", jsonPath)
	t.Logf("\n%s", out)
	if len(rep.Steps) != 1 {
		t.Fatalf("%d steps", len(rep.Steps))
	}
	r := rep.Steps[0].Load
	if r.Requests != 300 || r.count(202) != 300 || r.Errors != 0 || r.Accepted != 300 || r.Total.Actions != 300 {
		t.Errorf("requests %d, 202 %d, errors %d, accepted %d, sent %d; status %v", r.Requests, r.count(202), r.Errors, r.Accepted, r.Total.Actions, r.Status)
	}
	if got := rep.Target.DepthAfter - rep.Target.DepthBefore; got != 300 {
		t.Errorf("queue depth grew by %d, want 300", got)
	}
	if rep.Agent == nil || rep.Agent.Exit != "exit 0" || len(rep.FailedChecks) > 0 {
		t.Errorf("agent %+v, failed checks %v", rep.Agent, rep.FailedChecks)
	}
	st := rep.Steps[0]
	if st.Agent == nil || st.Agent.VmHWM <= 0 || st.Agent.PeakRSS <= 0 || st.Agent.CPUSeconds <= 0 {
		t.Errorf("agent usage %+v", st.Agent)
	}
	if rep.Ceilings == nil || rep.Ceilings.Fsync == nil || rep.Ceilings.Loopback == nil || rep.Ceilings.LoopbackProc == nil ||
		st.Ratios.ReqVsLoopback == nil || st.Ratios.ReqVsLoopbackProc == nil || st.Ratios.ActionsPerFsync == nil || st.Ratios.P99VsLoopback == nil {
		t.Errorf("ceilings %+v ratios %+v", rep.Ceilings, st.Ratios)
	}
	// The agent's own count of the window: all 300 (read before the first
	// request and after the last), each in its handler for under 2.5 s.
	if ia := st.InAgent; ia == nil || ia.Error != "" || ia.Count != 300 || ia.Route != "POST /v1/actions" ||
		ia.P50 <= 0 || ia.P50 > ia.P99 || math.IsInf(float64(ia.P999), 1) {
		t.Errorf("in agent: %+v", ia)
	}
	for _, want := range []string{"ceilings", "fsyncs/s", "loopback-proc", "202: 300", "p99.9", "VmHWM", "exit 0 after SIGTERM", "in agent   p50 <= "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Steps[0].Load.Status["202"] != 300 || back.Steps[0].InAgent == nil || back.Steps[0].InAgent.Count != 300 {
		t.Errorf("JSON report: %v %s", err, b)
	}
}

// A two-step sweep with a chart, and a fill, against the real agent.
func TestEndToEndSweepAndFill(t *testing.T) {
	bin := builtAgent(t)
	svg := filepath.Join(t.TempDir(), "sweep.svg")
	rep, out := runTool(t, "-agent-bin", bin, "-sweep", "100,300", "-duration", "500ms", "-warmup", "100ms",
		"-concurrency", "4", "-batch", "3", "-ceiling-duration", "200ms", "-dup-rate", "0.2", "-chart", svg, "-disk-probe", "5ms")
	t.Logf("\n%s", out)
	if len(rep.Steps) != 2 || !strings.Contains(out, "sweep") {
		t.Fatalf("%d steps", len(rep.Steps))
	}
	var dups, accepted, sent int64
	for _, st := range rep.Steps {
		r := st.Load
		if r.Loop != "open" || r.count(202) != r.Requests || r.Requests < int64(r.OfferedRate*0.5*0.8) {
			t.Errorf("step %+v", r)
		}
		if st.LoopbackAtRate == nil {
			t.Errorf("no loopback baseline at %g", r.OfferedRate)
		}
		if lp := st.LoopbackProcAtRate; lp == nil || lp.Loop != "open" || lp.Latency.Count == 0 {
			t.Errorf("no own-process loopback baseline at %g: %+v", r.OfferedRate, lp)
		}
		// 600 ms at one sync per 5 ms: about 120 probes, however slow the disk.
		if d := st.DiskProbe; d == nil || d.Error != "" || d.Latency.Count < 20 || d.Latency.Max < d.Latency.P50 {
			t.Errorf("disk probe at %g: %+v", r.OfferedRate, d)
		}
		dups += r.Duplicates
		accepted += r.Total.Accepted
		sent += r.Total.Actions
	}
	if dups == 0 {
		t.Errorf("-dup-rate 0.2 gave no duplicates")
	}
	if got := rep.Target.DepthAfter - rep.Target.DepthBefore; got != accepted || accepted >= sent {
		t.Errorf("depth +%d, accepted %d of %d", got, accepted, sent)
	}
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart: %v", err)
		}
	}

	rep, out = runTool(t, "-agent-bin", bin, "-fill", "5000", "-batch", "250", "-concurrency", "4",
		"-no-ceilings", "-fill-settle", "300ms")
	t.Logf("\n%s", out)
	if rep.Fill == nil || rep.Fill.DepthAdded != 5000 || rep.Fill.After == nil || rep.Fill.After.RSSAtEnd <= 0 || len(rep.FailedChecks) > 0 {
		t.Errorf("fill %+v %+v, failed %v", rep.Fill, rep.Fill.After, rep.FailedChecks)
	}
	if r := rep.Steps[0].Load; r.Requests != 20 || r.Actions != 5000 {
		t.Errorf("fill sent %d requests, %d actions", r.Requests, r.Actions)
	}
}
