#!/bin/bash
# http-wrk.sh - wrk against examples/http_hello beside Go's net/http
# (../shared/peers' peer-go http), in alternating rounds
# (docs/networking.md, section 9).
#
#   bench/http-wrk.sh CONNS SECONDS
#
# ROUNDS rounds (default 3), each running weft then Go, or Go then weft
# (alternating), with wrk -tWRK_THREADS (default 2) -cCONNS --latency on the
# same CPUs.  WORKERS (default 2) for both servers.  One line per run:
# requests per second, latency p50 and p99, wrk's socket errors and non-2xx
# responses, the load average when it started; then the medians.  Exits 1
# if weft's runs saw any error or non-2xx response.
# BUILD (default build) is the build directory; PEERS_OUT (default
# /tmp/weft-peers) holds peer-go.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$here/build}
out=${PEERS_OUT:-/tmp/weft-peers}
[ $# -ge 2 ] || { echo "usage: http-wrk.sh CONNS SECONDS" >&2; exit 2; }
conns=$1 secs=$2
W=${WORKERS:-2} R=${ROUNDS:-3} T=${WRK_THREADS:-2}
for f in "$build/examples/http_hello" "$out/peer-go"; do
    [ -x "$f" ] || { echo "http-wrk.sh: $f missing" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "http-wrk.sh: wrk missing (apt-get install wrk)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
median() { sort -g | awk '{a[NR]=$1} END{if (NR) print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
us() { # wrk's latency (850.00us, 1.20ms, 2.00s) -> microseconds
    awk '{v=$1; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
          m = (u=="us") ? 1 : (u=="ms") ? 1000 : (u=="s") ? 1000000 : (u=="m") ? 60000000 : 1
          printf "%d\n", v * m}' <<<"$1"
}
declare -A rps p50s p99s
weft_errors=0
run_one() { # weft|go
    local s=$1 port=$((20000 + RANDOM % 20000)) pid
    if [ "$s" = weft ]; then WEFT_WORKERS=$W "$build/examples/http_hello" $port >/dev/null 2>&1 & pid=$!
    else GOMAXPROCS=$W "$out/peer-go" http $port >/dev/null 2>&1 & pid=$!; fi
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    local load txt r p50 p99 errs non2xx
    load=$(cut -d' ' -f1 /proc/loadavg)
    txt=$(wrk -t"$T" -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/" 2>&1)
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    r=$(awk '/^Requests\/sec:/ {printf "%d", $2}' <<<"$txt")
    p50=$(us "$(awk '$1 == "50%" {print $2}' <<<"$txt")")
    p99=$(us "$(awk '$1 == "99%" {print $2}' <<<"$txt")")
    # "Socket errors: connect 0, read 0, write 0, timeout 0"
    errs=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$txt")
    errs=${errs:-0} non2xx=${non2xx:-0}
    printf '%-4s %8s req/s  p50 %7s us  p99 %8s us  errors %s  non-2xx %s  load %s\n' \
        "$s" "${r:-0}" "$p50" "$p99" "$errs" "$non2xx" "$load" >&2
    [ -n "$r" ] || { echo "$txt" >&2; r=0; }
    echo "${r:-0} $p50 $p99 $((errs + non2xx))"
}
echo "http-wrk.sh: $conns conns, $secs s, wrk -t$T, $W workers, $R rounds" >&2
for r in $(seq "$R"); do
    if [ $((r % 2)) = 1 ]; then order="weft go"; else order="go weft"; fi
    for s in $order; do
        read -r a b c e < <(run_one $s)
        rps[$s]+="$a "; p50s[$s]+="$b "; p99s[$s]+="$c "
        [ "$s" = weft ] && weft_errors=$((weft_errors + e))
    done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
printf 'median %d conns:\n' "$conns"
for s in weft go; do
    printf '  %-4s %8s req/s  p50 %s us  p99 %s us\n' "$s" "$(med "${rps[$s]}")" "$(med "${p50s[$s]}")" \
        "$(med "${p99s[$s]}")"
done
awk -v a="$(med "${rps[weft]}")" -v b="$(med "${rps[go]}")" 'BEGIN{printf "  weft/go %.2fx\n", a/b}'
[ "$weft_errors" = 0 ] || { echo "http-wrk.sh: weft: $weft_errors errors or non-2xx responses" >&2; exit 1; }
