#!/bin/bash
# obs-cost.sh - what the built-in observability costs on the hot paths.
#
#   bench/obs-cost.sh [ON_BENCH [OFF_BENCH]]
#
# Builds (when not given) two release weft-bench binaries from this tree:
# build-obs-on/ with the default -DWEFT_OBSERVE=ON (counters, wait strings,
# since stamps, trace hooks) and build-obs-off/ with -DWEFT_OBSERVE=OFF, then
# runs spawn, yield and pingpong on each, alternating ON OFF ON OFF so that
# machine drift hits both alike (as ../shared/peers/compare.sh does), and
# prints the medians and the cost: ON / OFF - 1 (positive: ON is slower),
# from the medians and, less sensitive to drift between rounds, as the
# median of the per-round ratios ON_i / OFF_i of adjacent runs ("paired").
# A third column runs the ON binary with WEFT_TRACE set (a file in $TMPDIR):
# the trace overhead the docs quote.
# Workers: WORKERS (default 2).  Rounds: ROUNDS (default 7).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
W=${WORKERS:-2}
R=${ROUNDS:-7}
on=${1:-}
off=${2:-}
build() { # dir option
    cmake -S "$here" -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_OBSERVE="$2" \
        -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$1" -j2 --target weft-bench >/dev/null
}
if [ -z "$on" ]; then build "$here/build-obs-on" ON; on=$here/build-obs-on/bench/weft-bench; fi
if [ -z "$off" ]; then build "$here/build-obs-off" OFF; off=$here/build-obs-off/bench/weft-bench; fi
tracefile=$(mktemp "${TMPDIR:-/tmp}/weft-obs-cost.XXXXXX.json")
trap 'rm -f "$tracefile"' EXIT

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
one() { # binary workload args... -> ns/op
    local bin=$1; shift
    WEFT_WORKERS=$W "$bin" "$@" | tail -1 | awk '{print $2}'
}
for wl in "spawn 1000000" "yield 1000 1000" "pingpong 1000 1000"; do
    a='' b='' c=''
    for r in $(seq "$R"); do
        # shellcheck disable=SC2086
        a+="$(one "$on" $wl) "
        # shellcheck disable=SC2086
        b+="$(one "$off" $wl) "
    done
    # The traced runs after the A/B pairs: each writes a trace of tens of
    # MB, whose writeback would slow whichever run came next.
    for r in $(seq "$R"); do
        # shellcheck disable=SC2086
        c+="$(WEFT_TRACE=$tracefile one "$on" $wl) "
    done
    ma=$(tr ' ' '\n' <<<"$a" | grep -v '^$' | median)
    mb=$(tr ' ' '\n' <<<"$b" | grep -v '^$' | median)
    mc=$(tr ' ' '\n' <<<"$c" | grep -v '^$' | median)
    mp=$(paste <(tr ' ' '\n' <<<"$a" | grep -v '^$') <(tr ' ' '\n' <<<"$b" | grep -v '^$') |
         awk '{print $1 / $2}' | median)
    awk -v w="$wl" -v a="$ma" -v b="$mb" -v c="$mc" -v p="$mp" 'BEGIN {
        printf "%-20s ON %8.1f ns/op  OFF %8.1f ns/op  cost %+5.1f%% (paired %+5.1f%%)   WEFT_TRACE %8.1f ns/op (%.2fx)\n",
               w, a, b, (a / b - 1) * 100, (p - 1) * 100, c, c / a }'
done
