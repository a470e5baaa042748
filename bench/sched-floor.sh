#!/bin/bash
# sched-floor.sh - the machine's floor under weft-bench's per-core workloads
# beside weft, Tokio and Go (docs/scheduler.md, section 13, "The floor").
#
#   bench/sched-floor.sh WORKLOAD ARGS...     spawn N | chain D I | pingpong P R
#                                             | sleepers N MS
#
# Runs, ROUNDS times (default 5), each of: bench/sched-floor (no runtime;
# for pingpong its plain, ATOMIC=1 and ATOMIC=2 forms), weft-bench, and
# ../shared/peers' Tokio and Go programs, with WORKERS workers (default 2)
# for the three runtimes; each round starts one further along the list, so
# that drift on a shared machine hits all alike.  One line per run, then
# the medians in ns/op and each runtime's ratio to the best peer and to the
# floor.  For sleepers the floor is bench/stack-floor (one page made
# present per coroutine stack, then the sleep: docs/scheduler.md, section
# 8), the figures are wall milliseconds, the medians of peak RSS follow,
# and the last ratio says whether the best peer is faster than the floor
# (then no runtime whose coroutines have stacks can match it here).
# BUILD (default build) is the build directory; PEERS_OUT (default
# /tmp/weft-peers) holds the peers (../shared/peers/build.sh).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$here/build}
out=${PEERS_OUT:-/tmp/weft-peers}
[ $# -ge 2 ] || { echo "usage: sched-floor.sh spawn N | chain D I | pingpong P R | sleepers N MS" >&2; exit 2; }
wl=$1; shift
W=${WORKERS:-2} R=${ROUNDS:-5}
for f in "$build/bench/sched-floor" "$build/bench/stack-floor" "$build/bench/weft-bench" "$out/peer-tokio" "$out/peer-go"; do
    [ -x "$f" ] || { echo "sched-floor.sh: $f missing (build it, or ../shared/peers/build.sh)" >&2; exit 1; }
done
"$build/bench/sched-floor" switch 1 >/dev/null 2>&1
[ $? = 77 ] && { echo "sched-floor.sh: no floor on this CPU (x86-64 only)" >&2; exit 77; }
names=(floor weft tokio go)
[ "$wl" = pingpong ] && names=(floor atomic-floor atomic4-floor weft tokio go)
run() { # name ARGS... -> ns/op of one run (sleepers: ms/peak KiB)
    local name=$1; shift
    case $name in
    floor) if [ "$wl" = sleepers ]; then "$build/bench/stack-floor" "$@"
           else "$build/bench/sched-floor" "$wl" "$@"; fi ;;
    atomic-floor) ATOMIC=1 "$build/bench/sched-floor" "$wl" "$@" ;;
    atomic4-floor) ATOMIC=2 "$build/bench/sched-floor" "$wl" "$@" ;;
    weft) WEFT_WORKERS=$W "$build/bench/weft-bench" "$wl" "$@" ;;
    tokio) TOKIO_WORKER_THREADS=$W "$out/peer-tokio" "$wl" "$@" ;;
    go) GOMAXPROCS=$W "$out/peer-go" "$wl" "$@" ;;
    esac | tail -1 | if [ "$wl" = sleepers ]; then awk '{print $2 "/" $8}'; else awk '{print $2}'; fi
}
declare -A vals rss
n=${#names[@]}
for r in $(seq 0 $((R - 1))); do
    for i in $(seq 0 $((n - 1))); do
        name=${names[$(((i + r) % n))]}
        v=$(run "$name" "$@")
        if [ "$wl" = sleepers ]; then
            echo "$name $wl $* ${v%/*} ms ${v#*/} KiB-maxrss"
            rss[$name]+="${v#*/} "
            v=${v%/*}
        else
            echo "$name $wl $* $v ns/op"
        fi
        vals[$name]+="$v "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A med
line="median $wl:"
for k in "${names[@]}"; do med[$k]=$(median <<<"${vals[$k]}"); line="$line $k=${med[$k]}"; done
best=$(printf '%s\n' "${med[tokio]}" "${med[go]}" | sort -g | head -1)
line="$line weft/best-peer=$(awk -v b="$best" -v w="${med[weft]}" 'BEGIN{printf "%.2fx", b/w}')(speedup)"
line="$line weft/floor=$(awk -v f="${med[floor]}" -v w="${med[weft]}" 'BEGIN{printf "%.2fx", w/f}')(time)"
if [ "$wl" = sleepers ]; then
    for k in "${names[@]}"; do line="$line $k.rss_kib=$(median <<<"${rss[$k]}")"; done
    line="$line best-peer/floor=$(awk -v f="${med[floor]}" -v b="$best" 'BEGIN{printf "%.2fx", b/f}')(time)"
fi
echo "$line"
