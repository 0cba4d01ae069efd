#!/usr/bin/env bash
# The tail of a fixed rate of single actions, beside what the agent itself
# saw: its commit durations and the time requests spent in its handler,
# from its own histograms read before and after the load (BENCHMARKS.md,
# session 14, "Tail latency under disk stalls").
#
#   go build -o /tmp/s14/agent ./cmd/agent && go build -o /tmp/s14/loadgen ./cmd/loadgen
#   BIN=/tmp/s14/agent LOADGEN=/tmp/s14/loadgen bench/stalls/run.sh
#
# Injected stalls need the throwaway build of branch stall26-instr (never
# merged), whose first journal sync after each OUTPOST_STALL_EVERY sleeps
# OUTPOST_STALL: OUTPOST_STALL=50ms OUTPOST_STALL_EVERY=1s BIN=<that build> bench/stalls/run.sh
# The agent inherits the environment. Loopback only; stops by itself.
set -euo pipefail
BIN=${BIN:?the agent binary}
LOADGEN=${LOADGEN:?the loadgen binary}
RATE=${RATE:-5000}
DURATION=${DURATION:-10s}
work=$(mktemp -d /tmp/outpost-stalls.XXXXXX)
port=${PORT:-18471}
AGENT_DATA_DIR="$work/data" AGENT_LISTEN_ADDR=127.0.0.1:$port AGENT_LOG_FORMAT=json "$BIN" >"$work/agent.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "localhost:$port/metrics" >"$work/m0"
timeout 120 "$LOADGEN" -url "http://127.0.0.1:$port" -mode actions -batch 1 -rate "$RATE" -duration "$DURATION" \
	-warmup 0s -no-ceilings >"$work/load" 2>&1
curl -sf "localhost:$port/metrics" >"$work/m1"
grep -E '^  latency ' "$work/load"
# Histogram deltas: how many commits, and how many requests in the handler,
# took longer than each bound.
awk '
	/^#/ { next }
	{ key = $0; sub(/ [^ ]+$/, "", key); v[FILENAME, key] = $NF } # labels may hold spaces
	END {
		split("0.001 0.002 0.005 0.01 0.025 0.05 0.1", le, " ")
		c = "outpost_spool_commit_duration_seconds"
		h = "outpost_http_request_duration_seconds"
		r = "route=\"POST /v1/actions\""
		nc = v[ARGV[2], c "_count"] - v[ARGV[1], c "_count"]
		nh = v[ARGV[2], h "_count{" r "}"] - v[ARGV[1], h "_count{" r "}"]
		line = sprintf("  commits %d; over", nc)
		for (i = 1; i <= 7; i++) {
			k = c "_bucket{le=\"" le[i] "\"}"
			line = line sprintf(" %gms:%d", le[i] * 1000, nc - (v[ARGV[2], k] - v[ARGV[1], k]))
		}
		print line
		line = sprintf("  requests in the handler %d; over", nh)
		for (i = 1; i <= 7; i++) {
			k = h "_bucket{" r ",le=\"" le[i] "\"}"
			line = line sprintf(" %gms:%d", le[i] * 1000, nh - (v[ARGV[2], k] - v[ARGV[1], k]))
		}
		print line
		printf "  gc pause max %.2f ms\n", v[ARGV[2], "go_gc_duration_seconds{quantile=\"1\"}"] * 1000
	}' "$work/m0" "$work/m1"
