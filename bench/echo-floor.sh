#!/bin/bash
# echo-floor.sh - the machine's floor under the echo benchmark beside weft,
# Tokio and Go (docs/networking.md, section 9).
#
#   bench/echo-floor.sh CONNS SECONDS [SERVER...]
#
# SERVERS (default: epoll uring weft tokio go) are run in turn against
# ../shared/peers' echo_load (CONNS connections, 64-byte lines, LOAD_THREADS
# threads, default 1), ROUNDS rounds (default 3); each round starts one
# server further along the list, so that drift on a shared machine hits all
# alike.  epoll, uring and uring1 are bench/echo-floor.c (plain C, no runtime;
# the uring ones are skipped when built without liburing).  Every server gets WORKERS
# threads (default 2).  One line per run: round trips per second, p50 and
# p99 in microseconds, the server's CPU time per round trip (user+system,
# from /proc, after the connections are made), echo_load's CPU time per
# round trip (the same, up to just before it ends) and the load average
# when it started;
# then the medians, and each median's ratio to Tokio's.
# PERF=1 also counts the server's system calls and context switches per
# round trip (perf stat; the counting slows every system call, so rt/s
# drops: take throughput from runs without it).
# BUILD (default build) is the build directory; PEERS_OUT (default
# /tmp/weft-peers) holds echo_load and the peers (../shared/peers/build.sh).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$here/build}
out=${PEERS_OUT:-/tmp/weft-peers}
[ $# -ge 2 ] || { echo "usage: echo-floor.sh CONNS SECONDS [epoll|uring|uring1|weft|tokio|go...]" >&2; exit 2; }
conns=$1 secs=$2; shift 2
servers=("$@"); [ ${#servers[@]} -gt 0 ] || servers=(epoll uring weft tokio go)
W=${WORKERS:-2} R=${ROUNDS:-3} LT=${LOAD_THREADS:-1}
for f in "$out/echo_load" "$out/peer-go" "$out/peer-tokio" "$build/bench/echo-floor" "$build/bench/weft-bench"; do
    [ -x "$f" ] || { echo "echo-floor.sh: $f missing (build it, or ../shared/peers/build.sh)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
"$build/bench/echo-floor" uring 0 2>/dev/null # exits 77 when built without liburing, else 2
[ $? = 77 ] && { echo "echo-floor.sh: built without liburing: uring skipped" >&2
    servers=($(printf '%s\n' "${servers[@]}" | grep -vx -e uring -e uring1)); }

median() { sort -g | awk '{a[NR]=$1} END{if (NR) print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo -1; }
declare -A rts p50s p99s cpus sysc sws gens
run_one() { # server -> "rt/s p50 p99 cpu_us_per_rt"
    local s=$1 port pid=
    # A port nobody listens on (the machine is shared), and a server that
    # is still alive once it answers; else another port.
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && continue
        case $s in
        epoll | uring | uring1) THREADS=$W "$build/bench/echo-floor" "$s" $port >/dev/null 2>&1 & pid=$! ;;
        weft) WEFT_WORKERS=$W "$build/bench/weft-bench" echo $port >/dev/null 2>&1 & pid=$! ;;
        tokio) TOKIO_WORKER_THREADS=$W "$out/peer-tokio" echo $port >/dev/null 2>&1 & pid=$! ;;
        go) GOMAXPROCS=$W "$out/peer-go" echo $port >/dev/null 2>&1 & pid=$! ;;
        *) echo "echo-floor.sh: unknown server $s" >&2; exit 2 ;;
        esac
        for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
        kill -0 $pid 2>/dev/null && break
        wait $pid 2>/dev/null; pid=
    done
    if [ -z "$pid" ]; then # left out of the medians (negative)
        echo "$s would not start" >&2; echo "-1 -1 -1 -1 -1 -1 -1"; return
    fi
    local load c0 c1 g0 g1 t0 t1 tg line lpid
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$out/echo_load" 127.0.0.1 $port "$conns" "$secs" 64 "$LT" >"$tmp" & lpid=$!
    # The server's CPU time is sampled from the end of the connecting phase
    # (a second, plus one per 10,000 connections) to the end of the load.
    sleep "$(awk -v c="$conns" 'BEGIN{print 1 + c / 10000}')"
    c0=$(cpu_ticks $pid); g0=$(cpu_ticks $lpid); t0=$(date +%s.%N)
    local pw=0 sys=0 cs=0
    if [ "${PERF:-0}" = 1 ]; then # system calls and context switches, counted (slows the server)
        pw=$(awk -v s="$secs" -v c="$conns" 'BEGIN{print s - 1.5 - c / 10000}')
        perf stat -x, -e context-switches,raw_syscalls:sys_enter -p $pid -o "$tmp.perf" -- sleep "$pw" 2>/dev/null
        cs=$(awk -F, '$3 == "context-switches" {print $1}' "$tmp.perf")
        sys=$(awk -F, '$3 == "raw_syscalls:sys_enter" {print $1}' "$tmp.perf")
    fi
    # echo_load's own CPU, up to just before it ends (it is gone after).
    sleep "$(awk -v s="$secs" -v c="$conns" -v p="$pw" 'BEGIN{w = s - 1.8 - c / 10000 - p; print (w > 0 ? w : 0)}')"
    g1=$(cpu_ticks $lpid); tg=$(date +%s.%N)
    wait $lpid
    c1=$(cpu_ticks $pid); t1=$(date +%s.%N)
    line=$(cat "$tmp")
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    # echo_load: "echo_load RT rt/s CONNS conns ERR errors p50 X us p99 Y us"
    # cpu: server CPU microseconds (user + system, 100 ticks a second) per
    # round trip over the sampled window, at the run's mean rate.
    # With PERF=1, system calls and context switches per round trip too.
    awk -v s="$s" -v l="$load" -v c=$((c1 - c0)) -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" \
        -v g=$( ((g0 >= 0 && g1 >= 0)) && echo $((g1 - g0)) || echo -1) -v wg="$(awk -v a="$t0" -v b="$tg" 'BEGIN{print b - a}')" \
        -v pw="$pw" -v sys="${sys:-0}" -v cs="${cs:-0}" '{
        cpu = ($2 > 0 && w > 0) ? c * 10000 / ($2 * w) : 0
        gen = ($2 > 0 && wg > 0 && g >= 0) ? g * 10000 / ($2 * wg) : -1  # -1: ended before sampled
        k = ($2 > 0 && pw > 0) ? 1 / ($2 * pw) : 0
        extra = pw > 0 ? sprintf("  syscalls %.3f/rt  switches %.3f/rt", sys * k, cs * k) : ""
        printf "%-6s %8d rt/s  p50 %7d us  p99 %8d us  cpu %5.2f us/rt  load gen %5.2f us/rt%s  errors %d  load %s\n", s, $2, $9, $12, cpu, gen, extra, $6, l > "/dev/stderr"
        printf "%d %d %d %.3f %.3f %.3f %.3f\n", $2, $9, $12, cpu, sys * k, cs * k, gen
    }' <<<"$line"
}
tmp=$(mktemp); trap 'rm -f "$tmp" "$tmp.perf"' EXIT
n=${#servers[@]}
echo "echo-floor.sh: $conns conns, $secs s, $LT load thread(s), $W workers, $R rounds" >&2
for r in $(seq 0 $((R - 1))); do
    for i in $(seq 0 $((n - 1))); do
        s=${servers[$(((i + r) % n))]}
        read -r a b c d e f g < <(run_one "$s")
        rts[$s]+="$a "; p50s[$s]+="$b "; p99s[$s]+="$c "; cpus[$s]+="$d "; sysc[$s]+="$e "; sws[$s]+="$f "; gens[$s]+="$g "
    done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | grep -v '^-' | median; }
tok=$(med "${rts[tokio]:-}")
printf 'median %d conns, %d load thread(s):\n' "$conns" "$LT"
for s in "${servers[@]}"; do
    m=$(med "${rts[$s]}")
    ratio=$([ -n "$tok" ] && awk -v a="$m" -v b="$tok" 'BEGIN{printf " %.2fx Tokio", a/b}')
    extra=$([ "${PERF:-0}" = 1 ] && echo "  syscalls $(med "${sysc[$s]}")/rt  switches $(med "${sws[$s]}")/rt")
    printf '  %-6s %8s rt/s%s  p50 %s us  p99 %s us  cpu %s us/rt  load gen %s us/rt%s\n' "$s" "$m" "$ratio" \
        "$(med "${p50s[$s]}")" "$(med "${p99s[$s]}")" "$(med "${cpus[$s]}")" "$(med "${gens[$s]}")" "$extra"
done
