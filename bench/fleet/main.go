// Command fleet simulates a bank's fleet of agents sharing one upstream
// quota, each agent its own forwarder worker, circuit breaker and client,
// configured as deployed (each believes it has the quota to itself).
//
// -scenario tencent (the default): N agents share one Tencent access token
// and drain their backlogs into one tencentsim that enforces the token's
// per-minute quota, optionally after an outage. It samples, every second,
// the requests the simulator saw, how many it refused, and the actions
// delivered, and reports per-agent completion times (starvation), the
// requests during and after the outage (retry storm) and what the fleet
// got of each minute's quota.
//
// -scenario tongdun: N agents share one TongDun daily quota (tdsim's
// DailyCap, per Asia/Shanghai day). The simulated clock runs at real speed
// and jumps over the night once every agent is paused, so a day boundary
// passes in seconds. It reports the 305 answers (one per agent, or a
// storm), what each agent got of the quota (fairness), how the fleet comes
// back at midnight (herd), and that every queued check is delivered.
//
// The agents' queues are an in-memory model of the spool (forwarder.Queue):
// hundreds of badger stores on one disk would measure the disk, not the
// fleet's behaviour. Loopback only; bounded by -max.
//
//	go run ./bench/fleet -agents 300 -backlog 300 -quota 600 -outage 20s -json tencent.json
//	go run ./bench/fleet -scenario tongdun -agents 300 -backlog 100 -cap 20000 -json tongdun.json
//	go run ./bench/fleet -chart-from tongdun.json -chart tongdun.svg -title "..."
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run() error {
	scenario := flag.String("scenario", "tencent", "tencent (shared per-minute token quota) or tongdun (shared daily quota)")
	agents := flag.Int("agents", 100, "agents in the fleet")
	backlog := flag.Int("backlog", 300, "actions (tencent) or checks (tongdun) queued at each agent")
	quota := flag.Int("quota", 200, "tencent: the shared token's requests per minute")
	outage := flag.Duration("outage", 0, "tencent: Tencent unreachable for this long at the start")
	dailyCap := flag.Int("cap", 20000, "tongdun: the fleet's daily quota (tdsim DailyCap, per Asia/Shanghai day)")
	skew := flag.Duration("skew", 0, "tongdun: each agent's clock is off TongDun's by up to ± this much")
	latency := flag.Duration("latency", 0, "tongdun: tdsim answers each request after this long")
	startAt := flag.String("start", "2026-11-23T20:00:00+08:00", "tongdun: simulated time at the start (RFC 3339)")
	seed := flag.Uint64("seed", 1, "tongdun: seed of the agents' clock offsets")
	reprobe := flag.Duration("reprobe", 0, "tongdun: the forwarder's ClockSkew: 0 keeps its default (1m); negative believes every 305 as answered (the forwarder before 2026-11-23)")
	maxRun := flag.Duration("max", 6*time.Minute, "stop after this long (real time) whatever happened")
	out := flag.String("json", "", "write the samples and results here")
	chartIn := flag.String("chart-from", "", "draw the chart of an earlier -json result (with -chart) and exit")
	chartOut := flag.String("chart", "", "SVG file for -chart-from")
	title := flag.String("title", "Fleet", "chart title")
	flag.Parse()
	if *chartIn != "" {
		return chartFromJSON(*chartIn, *chartOut, *title)
	}
	if *agents <= 0 || *backlog <= 0 {
		return fmt.Errorf("-agents and -backlog must be positive")
	}

	var res any
	switch *scenario {
	case "tencent":
		r, err := runTencent(tencentOptions{agents: *agents, backlog: *backlog, quota: *quota, outage: *outage,
			maxRun: *maxRun, progress: os.Stderr})
		if err != nil {
			return err
		}
		res = r
	case "tongdun":
		start, err := time.Parse(time.RFC3339, *startAt)
		if err != nil {
			return fmt.Errorf("-start: %w", err)
		}
		r, err := runTongDun(tongdunOptions{agents: *agents, backlog: *backlog, dailyCap: *dailyCap, skew: *skew,
			latency: *latency, start: start, seed: *seed, reprobe: *reprobe, maxRun: *maxRun, progress: os.Stderr})
		if err != nil {
			return err
		}
		res = r
	default:
		return fmt.Errorf("-scenario %q: want tencent or tongdun", *scenario)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return err
		}
	}
	// The summary without the time series.
	var summary map[string]any
	if err := json.Unmarshal(b, &summary); err != nil {
		return err
	}
	for _, k := range []string{"samples", "timeline", "per_agent"} {
		delete(summary, k)
	}
	b, _ = json.MarshalIndent(summary, "", "  ")
	fmt.Println(string(b))
	return nil
}
