#!/bin/bash
# salvage.sh BIN: fill 1M actions, SIGTERM, overwrite 16 bytes in the middle of the MANIFEST,
# start again: time to ready, VmHWM, depth, damage report.
BIN=$1
D=$(mktemp -d /tmp/outpost-bench.XXXX)
PORT=$((20000 + RANDOM % 20000))
AGENT_DATA_DIR=$D AGENT_LISTEN_ADDR=127.0.0.1:$PORT AGENT_LOG_FORMAT=json $BIN 2>$D.log1 &
P=$!
for i in $(seq 1 100); do curl -sf localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done
${LOADGEN:-/tmp/bin/loadgen} -url http://127.0.0.1:$PORT -pid $P -fill 1000000 -concurrency 16 -no-ceilings -q -fill-settle 1s > $D.fill 2>&1
kill -TERM $P; wait $P 2>/dev/null
python3 - $D/spool/MANIFEST <<'PY'
import sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read()); o=len(b)//2
for i in range(o,o+16): b[i]^=0xff
open(p,'wb').write(b)
PY
T0=$(date +%s%N)
AGENT_DATA_DIR=$D AGENT_LISTEN_ADDR=127.0.0.1:$PORT AGENT_LOG_FORMAT=json $BIN 2>$D.log2 &
P=$!
for i in $(seq 1 6000); do curl -sf localhost:$PORT/readyz >/dev/null && break; sleep 0.01; done
T1=$(date +%s%N)
sleep 2
HWM=$(grep VmHWM /proc/$P/status | awk '{print $2}')
curl -s localhost:$PORT/v1/status | python3 -c 'import sys,json; d=json.load(sys.stdin); print("depth", d["queues"]["tencent"]["depth"]); [print("report:", r["message"][:200]) for r in d["store"].get("damage",[])]'
kill -TERM $P; wait $P 2>/dev/null
echo "$(basename $BIN) salvage ready_ms=$(( (T1-T0)/1000000 )) vmhwm_kib=$HWM"
rm -rf $D $D.*
