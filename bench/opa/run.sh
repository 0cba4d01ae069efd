#!/usr/bin/env bash
# Outpost decisions vs Open Policy Agent, on this machine, loopback only.
#
#   bench/opa/run.sh                       # 2,000/s open loop and flat out, 64 clients, 10 s each
#   DURATION=5s RATE=1000 bench/opa/run.sh
#
# 1. OPA serves bench/opa/policy.rego (the default policy in Rego) on 127.0.0.1; the driver posts
#    bench/opa/input.json to POST /v1/data/outpost/decision at RATE/s and then flat out.
# 2. The upstream simulators and the agent (fresh temporary AGENT_DATA_DIR) start; one decision
#    body with a fixed account_id and no id is sent a few hundred times, so that TongDun's answer
#    is in the score cache, then POST /v1/decisions is driven the same way.
# 3. Each run is preceded by the loopback ceiling: a do-nothing Go handler in the driver's own
#    process, driven with the same body, clients and rate. The table sets each system beside it.
#
# Needs: go, curl, and an opa binary (OPA=path, or on PATH, or /tmp/opabin/opa):
#   GOBIN=/tmp/opabin go install github.com/open-policy-agent/opa@v1.22.2
# Every step is bounded by a timeout and every process it starts is stopped on exit. The JSON
# results are kept in OUT (default: a new /tmp/outpost-opa-bench-results.* directory).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-2000}
CONC=${CONC:-64}
DURATION=${DURATION:-10s}
WARM=${WARM:-300}
OPA=${OPA:-$(command -v opa || echo /tmp/opabin/opa)}
if [[ ! -x $OPA ]]; then
	echo "run.sh: no opa binary (set OPA=path); install one with:" >&2
	echo "  GOBIN=/tmp/opabin go install github.com/open-policy-agent/opa@v1.22.2" >&2
	exit 2
fi

work=$(mktemp -d /tmp/outpost-opa-bench.XXXXXX)
OUT=${OUT:-$(mktemp -d /tmp/outpost-opa-bench-results.XXXXXX)}
mkdir -p "$OUT"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.5
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -sf -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	echo "run.sh: $1 did not come up" >&2
	return 1
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "== building (driver, agent, upstream-sim)"
timeout 600 go build -o "$work/driver" ./bench/opa/driver
timeout 600 go build -o "$work/agent" ./cmd/agent
timeout 600 go build -o "$work/upstream-sim" ./cmd/upstream-sim
mapfile -t ports < <("$work/driver" -free-ports 5)

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $("$OPA" version | head -1), $(go version | cut -d' ' -f3)"

# drive LABEL MODE URL BODY: one measured run with its ceiling, JSON into $OUT/LABEL-MODE.json.
drive() {
	local rate=0
	[[ $2 == rate ]] && rate=$RATE
	# In the background and waited for, so that a signal to this script stops it at once.
	timeout 120 "$work/driver" -label "$1" -url "$3" -body "$4" -rate "$rate" -c "$CONC" -d "$DURATION" \
		-warm "$WARM" -ceiling >"$OUT/$1-$2.json" &
	pids+=("$!")
	wait "$!"
}

# ---------------------------------------------------------------- OPA
opa_port=8181
listening $opa_port && opa_port=${ports[0]}
echo "== OPA on 127.0.0.1:$opa_port"
"$OPA" run --server --addr "127.0.0.1:$opa_port" --log-level error --skip-version-check \
	bench/opa/policy.rego >"$work/opa.log" 2>&1 &
opa_pid=$!
pids+=("$opa_pid")
wait_http "http://127.0.0.1:$opa_port/health" 30
opa_url="http://127.0.0.1:$opa_port/v1/data/outpost/decision"
answer=$(curl -sf --max-time 5 -H 'Content-Type: application/json' --data-binary @bench/opa/input.json "$opa_url")
echo "   OPA answers: $answer"
[[ $answer == *'"result":"accept"'* ]] || {
	echo "run.sh: OPA did not accept the benchmark input" >&2
	exit 1
}
drive opa rate "$opa_url" bench/opa/input.json
drive opa flat "$opa_url" bench/opa/input.json
kill -TERM "$opa_pid"
wait "$opa_pid" 2>/dev/null || true

# ---------------------------------------------------------------- the agent
echo "== upstream simulators and the agent"
"$work/upstream-sim" -tencent "127.0.0.1:${ports[1]}" -tongdun "127.0.0.1:${ports[2]}" -unionpay "127.0.0.1:${ports[3]}" \
	>"$work/sim.env" 2>"$work/sim.log" &
pids+=("$!")
for ((i = 0; i < 100; i++)); do
	grep -q AGENT_UNIONPAY_URL "$work/sim.env" 2>/dev/null && break
	sleep 0.1
done
wait_http "http://127.0.0.1:${ports[1]}/_sim/stats" 10
# shellcheck disable=SC1091
source "$work/sim.env"
agent_addr="127.0.0.1:${ports[4]}"
AGENT_LISTEN_ADDR=$agent_addr AGENT_DATA_DIR="$work/data" AGENT_LOG_LEVEL=error AGENT_LOG_FORMAT=json \
	"$work/agent" >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
wait_http "http://$agent_addr/readyz" 30

# acct-bench-85 gets TongDun score 30, accept, from the simulator for withdraw (tdsim.Predict).
cat >"$work/decision.json" <<EOF
{"session_id":"bench-session-1","decision_event":"withdraw","event_time":"$(date +%Y-%m-%dT%H:%M:%S.000%:z)",
 "account_id":"acct-bench-85","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":1000,
 "credit":{"mode":"revolving","line":10000,"outstanding":2000,"overdue_days":0,"apr":0.18,"valid_until":"$(date -u -d '+1 year' +%F)"}}
EOF
agent_url="http://$agent_addr/v1/decisions"
first=$(curl -sf --max-time 5 -H 'Content-Type: application/json' --data-binary @"$work/decision.json" "$agent_url")
echo "   first decision (live TongDun call): $first"
drive agent rate "$agent_url" "$work/decision.json"
drive agent flat "$agent_url" "$work/decision.json"
last=$(curl -sf --max-time 5 -H 'Content-Type: application/json' --data-binary @"$work/decision.json" "$agent_url")
echo "   a decision after the runs: $last"
[[ $last == *'"source":"cache"'* ]] || echo "run.sh: WARNING: the last decision did not come from the score cache" >&2
tdcalls=$(curl -sf --max-time 5 "http://127.0.0.1:${ports[2]}/_sim/stats" || true)
echo "   TongDun simulator stats: $tdcalls"

# ---------------------------------------------------------------- the engines alone
# One evaluation, in process, no HTTP: OPA's evaluator on the same input, and the agent's CEL
# policy (policy.BenchmarkDecide: a typical withdrawal with all three signals fresh).
echo "== the engines alone (one evaluation, no HTTP)"
opa_ns=$(timeout 120 "$OPA" bench --format json -d bench/opa/policy.rego -d bench/opa/input.json \
	'data.outpost.decision with input as data.input' | tr -d ' \n' | sed -E 's/.*"N":([0-9]+),"T":([0-9]+),.*/\2 \1/' | awk '{printf "%.1f", $1 / $2 / 1000}')
cel_ns=$(timeout 300 go test -run=NONE -bench='^BenchmarkDecide$' -benchtime=2s ./policy/ | awk '/^BenchmarkDecide/ {printf "%.1f", $3 / 1000}')
echo "   OPA (opa bench, data.outpost.decision):  ${opa_ns} µs/op"
echo "   CEL (go test -bench BenchmarkDecide ./policy/):  ${cel_ns} µs/op"

echo "== machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== results (JSON in $OUT)"
"$work/driver" -report "$OUT"/opa-rate.json "$OUT"/opa-flat.json "$OUT"/agent-rate.json "$OUT"/agent-flat.json
