#!/bin/sh
# Builds test_switch.c for aarch64 with Debian's cross compiler and runs it
# under qemu-user.  Exit 77 (skipped) when the cross tools are not installed
# (dev.sh test installs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user).
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp}
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || { echo "no aarch64-linux-gnu-gcc: skipped"; exit 77; }
command -v qemu-aarch64 >/dev/null 2>&1 || { echo "no qemu-aarch64: skipped"; exit 77; }
aarch64-linux-gnu-gcc -O2 -static -pthread -I"$src/runtime" -I"$src/runtime/arch/aarch64" \
    "$src/tests/arch/test_switch.c" "$src/runtime/arch/aarch64/switch.S" \
    "$src/runtime/arch/aarch64/context.c" -o "$out/test_switch_aarch64" -lm
exec qemu-aarch64 "$out/test_switch_aarch64"
