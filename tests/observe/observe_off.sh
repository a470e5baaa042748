#!/bin/sh
# Builds libweft from this source tree with -DWEFT_OBSERVE=OFF (the
# configuration bench/obs-cost.sh compares against) and runs observe_off.c
# on it: that build must keep working and say -ENOTSUP where it must.
#   observe_off.sh SOURCE_DIR
set -eu
src=$1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake -S "$src" -B "$work/b" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_OBSERVE=OFF \
    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_BENCH=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$work/b" -j2 --target weft_static >/dev/null
lib=$(find "$work/b" -name libweft.a | head -1)
# The static library's own dependencies (hwloc; libdw when it was found), as
# weft.pc lists them for static links.
deps=$(sed -n 's/^Libs.private: //p' "$work/b/weft.pc")
cc -std=gnu11 -O1 -o "$work/observe_off" "$src/tests/observe/observe_off.c" \
    -I"$src/include" "$lib" $deps
"$work/observe_off" "$work/trace.json"
