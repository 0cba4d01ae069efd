#!/bin/bash
# restart.sh BIN STOP: fill a fresh data dir with 1M actions using BIN, stop it (kill|term),
# then start BIN again on the same dir and report time to ready and VmHWM once ready and idle 3 s.
BIN=$1; STOP=$2
D=$(mktemp -d /tmp/outpost-bench.XXXX)
PORT=$((20000 + RANDOM % 20000))
AGENT_DATA_DIR=$D AGENT_LISTEN_ADDR=127.0.0.1:$PORT AGENT_LOG_FORMAT=json $BIN 2>$D.log1 &
P=$!
for i in $(seq 1 100); do curl -sf localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done
${LOADGEN:-/tmp/bin/loadgen} -url http://127.0.0.1:$PORT -pid $P -fill 1000000 -concurrency 16 -no-ceilings -q -fill-settle 1s > $D.fill 2>&1
if [ "$STOP" = kill ]; then kill -9 $P; else kill -TERM $P; fi
wait $P 2>/dev/null
du -sm $D/spool | cut -f1 > $D.du
T0=$(date +%s%N)
AGENT_DATA_DIR=$D AGENT_LISTEN_ADDR=127.0.0.1:$PORT AGENT_LOG_FORMAT=json $BIN 2>$D.log2 &
P=$!
for i in $(seq 1 600); do curl -sf localhost:$PORT/readyz >/dev/null && break; sleep 0.01; done
T1=$(date +%s%N)
sleep 3
HWM=$(grep VmHWM /proc/$P/status | awk '{print $2}')
DEPTH=$(curl -s localhost:$PORT/v1/status | python3 -c 'import sys,json; print(json.load(sys.stdin)["queues"]["tencent"]["depth"])')
kill -TERM $P; wait $P 2>/dev/null
echo "$(basename $BIN) stop=$STOP store_mb=$(cat $D.du) ready_ms=$(( (T1-T0)/1000000 )) vmhwm_kib=$HWM depth=$DEPTH"
rm -rf $D $D.*
