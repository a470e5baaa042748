#!/bin/bash
# console-cost.sh - what an idle console (WEFT_CONSOLE set, nobody
# connected) costs: nothing measurable, says docs/debugging.md.
#
#   bench/console-cost.sh [BENCH]      (default build/bench/weft-bench)
#
# Runs spawn and pingpong with and without WEFT_CONSOLE, in pairs whose
# order alternates (off-on, on-off, ...) so that drift on a shared machine
# hits both alike, and prints per workload the medians and the median of
# the per-pair ratios on/off (1.000: no difference; above: slower with the
# console), and the best (lowest) of each side: on a machine loaded by
# others the best runs are the ones nobody disturbed.
# Workers: WORKERS (default 2).  Pairs: PAIRS (default 15).  AA=1 runs
# both sides without the console: the noise floor of the same comparison.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/bench/weft-bench}
W=${WORKERS:-2}
P=${PAIRS:-15}
sock=$(mktemp -u "${TMPDIR:-/tmp}/weft-console-cost.XXXXXX.sock")
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
one() { # on|off workload args... -> ns/op
    local mode=$1; shift
    if [ "$mode" = on ] && [ "${AA:-0}" != 1 ]; then
        WEFT_WORKERS=$W WEFT_CONSOLE=$sock "$bin" "$@" | tail -1 | awk '{print $2}'
        [ ! -e "$sock" ] || { echo "console-cost: $sock left behind" >&2; exit 1; }
    else
        WEFT_WORKERS=$W "$bin" "$@" | tail -1 | awk '{print $2}'
    fi
}
printf '%-22s %12s %12s %14s %10s %10s %9s\n' workload "off ns/op" "on ns/op" "paired on/off" \
    "best off" "best on" "best on/off"
for wl in "spawn 1000000" "pingpong 200 1000"; do
    offs='' ons='' ratios=''
    for p in $(seq "$P"); do
        if [ $((p % 2)) = 1 ]; then a=$(one off $wl); b=$(one on $wl)
        else b=$(one on $wl); a=$(one off $wl); fi
        offs+="$a"$'\n'; ons+="$b"$'\n'
        ratios+=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.4f", b/a}')$'\n'
    done
    bo=$(printf '%s' "$offs" | sort -g | head -1)
    bn=$(printf '%s' "$ons" | sort -g | head -1)
    printf '%-22s %12s %12s %14s %10s %10s %9s\n' "$wl" "$(printf '%s' "$offs" | median)" \
        "$(printf '%s' "$ons" | median)" "$(printf '%s' "$ratios" | median)" "$bo" "$bn" \
        "$(awk -v a="$bo" -v b="$bn" 'BEGIN{printf "%.3f", b/a}')"
    printf '  per-pair ratios: %s\n' "$(printf '%s' "$ratios" | sort -g | tr '\n' ' ')"
done
