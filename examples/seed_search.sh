#!/bin/sh
# CTest example_lost_update_seeds: tools/weft-seeds finds a seed on which
# lost_update loses an update (plain runs never do), and that seed, rerun
# twice with the line weft-seeds printed, fails the same way byte for byte.
#   seed_search.sh WEFT_SEEDS LOST_UPDATE
set -u
seeds=$1
prog=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/seed-search.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

# Plain runs (weft's default order): always right.
i=0
while [ $i -lt 20 ]; do
    "$prog" >/dev/null 2>&1 || { echo "FAIL: a plain run of lost_update failed"; exit 1; }
    i=$((i + 1))
done

# The tool itself: bad usage is status 2; a program that passes every seed
# is status 0; a hang is a timeout; --faults and --chaos reach the runs (a
# malformed WEFT_FAULTS makes every run exit 1).
for bad in "-n 0" "-j x" "--chaos 4" "--timeout 0" "-s -1" "--bogus"; do
    # shellcheck disable=SC2086
    bash "$seeds" $bad -- true >/dev/null 2>&1
    rc=$?
    [ $rc -eq 2 ] || { echo "FAIL: weft-seeds $bad exited $rc, expected 2"; exit 1; }
done
bash "$seeds" -n 3 -- >/dev/null 2>&1 && { echo "FAIL: weft-seeds without a program"; exit 1; }
bash "$seeds" -n 3 -- /nonexistent/program >/dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: weft-seeds ran a missing program"; exit 1; }
bash "$seeds" -n 4 -j 2 -- true >"$dir/ok" 2>&1 || { echo "FAIL: true failed a seed"; cat "$dir/ok"; exit 1; }
grep -q "^seeds tried: 4 (1..4), failed: 0" "$dir/ok" || { echo "FAIL: summary"; cat "$dir/ok"; exit 1; }
bash "$seeds" -n 1 --timeout 1 -- sleep 30 >"$dir/hang" 2>&1
[ $? -eq 1 ] && grep -q "^seed 1: timeout; rerun with WEFT_SEED=1 " "$dir/hang" ||
    { echo "FAIL: a hang was not a timeout"; cat "$dir/hang"; exit 1; }
bash "$seeds" -n 2 -s 5 --chaos 2 --faults bogus:1 -- "$prog" >"$dir/env" 2>&1
[ $? -eq 1 ] && grep -q "^seed 6: exit 1; rerun with WEFT_SEED=6 WEFT_WORKERS=1 WEFT_CLOCK=virtual WEFT_CHAOS=2 WEFT_FAULTS=bogus:1 " "$dir/env" &&
    grep -q "WEFT_FAULTS=bogus:1 is invalid" "$dir/env" ||
    { echo "FAIL: --chaos / --faults did not reach the runs"; cat "$dir/env"; exit 1; }

# The search: at most 500 seeds, stopping at the first failure.
bash "$seeds" -j 2 -n 500 --stop --keep "$dir/kept" -- "$prog" >"$dir/search" 2>&1
rc=$?
cat "$dir/search"
[ $rc -eq 1 ] || { echo "FAIL: weft-seeds exited $rc, expected 1 (a failing seed)"; exit 1; }
seed=$(sed -n 's/^seed \([0-9]*\): .*/\1/p' "$dir/search" | head -n 1)
[ -n "$seed" ] || { echo "FAIL: no failing seed listed"; exit 1; }
grep -q "^seed $seed: signal ABRT; rerun with WEFT_SEED=$seed WEFT_WORKERS=1 WEFT_CLOCK=virtual " \
    "$dir/search" || { echo "FAIL: no rerun line for seed $seed"; exit 1; }
grep -q "lost update: counter = " "$dir/kept/seed-$seed.out" ||
    { echo "FAIL: seed $seed failed otherwise than by a lost update"; exit 1; }

# The replay: the same failure, byte for byte, twice.
for n in 1 2; do
    (WEFT_SEED=$seed WEFT_WORKERS=1 WEFT_CLOCK=virtual "$prog" >"$dir/replay$n" 2>&1) 2>/dev/null
    rc=$?
    [ $rc -ne 0 ] || { echo "FAIL: seed $seed passed on replay $n"; exit 1; }
    cmp -s "$dir/replay$n" "$dir/kept/seed-$seed.out" || {
        echo "FAIL: replay $n of seed $seed differs from the search's run:"
        diff "$dir/kept/seed-$seed.out" "$dir/replay$n"
        exit 1
    }
done
echo "seed $seed replayed twice, identical:"
sed 's/^/  | /' "$dir/replay1"
