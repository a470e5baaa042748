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
