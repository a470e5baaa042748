#!/bin/bash
# echo-affinity.sh: which worker runs each connection of weft's echo server
# (issue 15; docs/networking.md, section 8).  Runs `weft-bench echo PORT
# SECS` with WEFT_TRACE on, loads it with echo_load, and reads the trace's
# run slices: for every connection task, how often it ran on another worker
# than the time before (a move: its record, stack and socket state go cold
# on the new CPU), and how the runs spread over the workers.
#
#   bench/echo-affinity.sh CONNS [SECONDS] [LOAD_THREADS]
# Environment: WEFT_BENCH (default build/bench/weft-bench), PEERS_OUT
# (default /tmp/weft-peers: echo_load), WORKERS (default 2).
#
# The trace keeps the newest 262,144 events of each worker; only the window
# that every worker's ring still covers is counted.  Tracing costs time per
# switch, so the rate printed is lower than an untraced run's; the moves are
# what this measures.
set -euo pipefail
conns=${1:?usage: echo-affinity.sh CONNS [SECONDS] [LOAD_THREADS]}
secs=${2:-4}
threads=${3:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${WEFT_BENCH:-$here/build/bench/weft-bench}
peers=${PEERS_OUT:-/tmp/weft-peers}
[ -x "$bench" ] || { echo "echo-affinity.sh: no $bench (build first)" >&2; exit 1; }
[ -x "$peers/echo_load" ] || { echo "echo-affinity.sh: no $peers/echo_load (../shared/peers/build.sh)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
trace=$(mktemp /tmp/echo-affinity.XXXXXX.json)
trap 'rm -f "$trace"' EXIT

for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    WEFT_WORKERS=${WORKERS:-2} WEFT_TRACE=$trace "$bench" echo "$port" $((secs + 3)) &
    pid=$!
    up=0
    for _ in $(seq 50); do
        if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then up=1; break; fi
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    [ $up = 1 ] && break
    wait $pid 2>/dev/null || true  # the port was taken: another one
done
[ $up = 1 ] || { echo "echo-affinity.sh: the server did not start" >&2; exit 1; }
"$peers/echo_load" 127.0.0.1 "$port" "$conns" "$secs" 64 "$threads"
wait $pid

python3 - "$trace" <<'EOF'
import json, sys
ev = json.load(open(sys.argv[1]))
ev = ev["traceEvents"] if isinstance(ev, dict) else ev
runs = [e for e in ev if e.get("cat") == "run"]
first = {}
for e in runs:
    first[e["tid"]] = min(first.get(e["tid"], e["ts"]), e["ts"])
start = max(first.values())            # every ring covers [start, end]
runs = sorted((e for e in runs if e["ts"] >= start), key=lambda e: e["ts"])
last, moves, counted, per_worker, tasks = {}, 0, 0, {}, set()
for e in runs:
    t = e["args"]["task"]
    tasks.add(t)
    per_worker[e["tid"]] = per_worker.get(e["tid"], 0) + 1
    if t in last:
        counted += 1
        moves += last[t] != e["tid"]
    last[t] = e["tid"]
span = (runs[-1]["ts"] - runs[0]["ts"]) / 1e6 if runs else 0
print("window %.2f s, %d runs of %d tasks, per worker %s" %
      (span, len(runs), len(tasks), " ".join("%s:%d" % kv for kv in sorted(per_worker.items()))))
print("moves: %d of %d runs after a task's first (%.1f%%) ran on another worker than before" %
      (moves, counted, 100.0 * moves / counted if counted else 0))
EOF
