#!/bin/sh
# CPU hogs for benchmarks on a shared machine (docs/scheduler.md, section 13,
# "Oversubscription"): N busy-loop processes at nice 0, as the benchmark runs.
#   bench/hogs.sh start [N]   start N hogs (default: one per CPU), print their pids
#   bench/hogs.sh stop        stop the hogs this script started
#   bench/hogs.sh run N CMD.. start N hogs, run CMD, stop them (also on ^C)
# The pids go to $HOGS_PIDFILE (default /tmp/weft-hogs.$USER.pids); stop kills
# only those, never by name.
set -eu
pidfile=${HOGS_PIDFILE:-/tmp/weft-hogs.${USER:-$(id -u)}.pids}

start() {
    n=${1:-$(nproc)}
    i=0
    while [ "$i" -lt "$n" ]; do
        nice -n 0 sh -c 'while :; do :; done' &
        echo $! >>"$pidfile"
        i=$((i + 1))
    done
    cat "$pidfile"
}

stop() {
    [ -f "$pidfile" ] || return 0
    while read -r pid; do
        kill "$pid" 2>/dev/null || true
    done <"$pidfile"
    rm -f "$pidfile"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start) start "${1:-}" >/dev/null; cat "$pidfile" ;;
stop) stop ;;
run)
    n=$1; shift
    trap stop EXIT INT TERM
    start "$n" >/dev/null
    "$@"
    ;;
*) echo "usage: $0 start [N] | stop | run N CMD..." >&2; exit 2 ;;
esac
