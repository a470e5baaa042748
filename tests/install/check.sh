#!/bin/sh
# Installs the build tree into a scratch prefix, then builds and runs a
# consumer twice: with pkg-config (weft.pc) and with find_package(weft).
# Also checks that the shared library exports nothing but weft_* names.
set -eu
build=$1; src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
lib=$(ls "$work"/prefix/lib*/libweft.so.0 2>/dev/null || ls "$work"/prefix/lib/*/libweft.so.0)
libdir=$(dirname "$lib")
test -f "$libdir/libweft.a"
test -f "$work/prefix/include/weft.h"
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^weft_[^_]' | grep -v '^WEFT_' || true)
if [ -n "$bad" ]; then echo "exported non-weft symbols: $bad"; exit 1; fi
readelf -d "$lib" | grep -q 'SONAME.*libweft.so.0' || { echo "no SONAME"; exit 1; }
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -o "$work/c1" "$src/consumer.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs weft) -Wl,-rpath,"$libdir"
"$work/c1"
mkdir -p "$work/cm"
cp "$src/consumer.c" "$work/cm/"
cp "$src/CMakeLists.txt.in" "$work/cm/CMakeLists.txt"
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$work/cm/build" >/dev/null
"$work/cm/build/consumer"
echo "install: pkg-config and find_package consumers ok"
