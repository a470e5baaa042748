#!/usr/bin/env bash
# dev.sh - the one script behind the README's two set-up commands.
#
#   ./dev.sh demo   build (release, build/) and run build/examples/demo
#   ./dev.sh test   the whole test suite, three times over:
#                     1. release build in build/        ctest (unit + stress)
#                     2. ThreadSanitizer in build-tsan/ ctest (unit + stress)
#                     3. AddressSanitizer in build-asan/ ctest (unit + stress)
#                   then a summary; exits non-zero if any step failed.
#
# Run as root on Debian 12, it first installs what is missing from Debian's
# packages (apt-get update runs only when something is missing).  Run as
# another user, it names the missing packages and exits 1.
#
# Safe to re-run: build directories are reused (and recreated when they were
# configured from another source directory).
#
# Options (before the command):
#   -n, --dry-run   print the commands instead of running them
# Environment:
#   JOBS                 parallel build jobs (default 2)
#   CTEST_JOBS           tests run at once (default 1: several tests measure
#                        wall time, and sharing 2 cores makes them flaky)
#   CTEST_TIMEOUT        per-test limit in seconds for tests without their
#                        own TIMEOUT property (default 600, plus twice
#                        WEFT_STRESS_SECONDS when that is set)
#   WEFT_STRESS_SECONDS  passed through: lengthens the stress programs
#                        (default: their own short durations)
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
cd "$here"

JOBS=${JOBS:-2}
CTEST_JOBS=${CTEST_JOBS:-1}
# A soak (WEFT_STRESS_SECONDS) gets room for its length on top of that.
soak=$(awk -v s="${WEFT_STRESS_SECONDS:-0}" 'BEGIN { s += 0; n = 0; if (s > 0) n = int(2 * s) + 1; print n }')
CTEST_TIMEOUT=${CTEST_TIMEOUT:-$((600 + soak))}
BUILD_TYPE=RelWithDebInfo     # the project's release configuration (-O2 -g)
PACKAGES=(cmake gcc make pkg-config libc6-dev libhwloc-dev libcmocka-dev valgrind libdw-dev)
# The test suite also uses gdb (tools/weft-gdb.py's test), runs the
# aarch64 context switch under qemu-user with Debian's cross compiler, and
# drives tools/weft-top (Python 3's curses) in tmux.
# bench/echo-floor's io_uring server uses liburing (optional: without it
# that variant is left out of the build).
PACKAGES+=(liburing-dev)
TEST_PACKAGES=(gdb gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user python3 tmux)
DRY_RUN=0

if [ -t 1 ]; then bold=$'\033[1m' red=$'\033[1;31m' green=$'\033[1;32m' off=$'\033[0m'
else bold='' red='' green='' off=''; fi
say() { printf '%s==> %s%s\n' "$bold" "$*" "$off"; }
warn() { printf 'dev.sh: %s\n' "$*" >&2; }

# Runs a command, or prints it in dry-run mode.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ %s\n' "$*"
        return 0
    fi
    "$@"
}

usage() {
    cat <<'EOF'
usage: ./dev.sh [-n|--dry-run] demo|test

  demo   install what is missing, build (release, build/), run the demo
  test   install what is missing, then build and run ctest in release (build/),
         under ThreadSanitizer (build-tsan/) and AddressSanitizer (build-asan/)
EOF
}

# ------------------------------------------------------------------ #
# Packages                                                            #
# ------------------------------------------------------------------ #

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
            printf '%s\n' "$p"
        fi
    done
}

ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "not a Debian system: make sure these (or their equivalents) are installed: ${PACKAGES[*]}"
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        warn "missing Debian packages: ${missing[*]}"
        warn "install them as root (or run this script as root):"
        warn "    apt-get update && apt-get install -y ${missing[*]}"
        exit 1
    fi
    say "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update || warn "apt-get update failed; trying the install with the current package lists"
    run apt-get install -y --no-install-recommends "${missing[@]}"
    if [ "$DRY_RUN" = 0 ]; then
        mapfile -t missing < <(missing_packages)
        if [ "${#missing[@]}" -ne 0 ]; then
            warn "still missing after apt-get install: ${missing[*]}"
            exit 1
        fi
    fi
}

# ------------------------------------------------------------------ #
# Building and testing                                                #
# ------------------------------------------------------------------ #

# configure DIR SANITIZER [CMAKE ARGS...]: (re)configures DIR for this
# source tree.  Returns non-zero on failure (callers test it: errexit is off
# inside an `if` condition, so every step below checks its own status).
configure() {
    local dir=$1 san=$2
    shift 2
    if [ -f "$dir/CMakeCache.txt" ] &&
        ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$here" "$dir/CMakeCache.txt"; then
        say "$dir was configured for another source directory: recreating it"
        run rm -rf -- "$dir" || return 1
    fi
    run cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DWEFT_SANITIZE="$san" "$@" ||
        return 1
}

# build DIR [TARGET]
build() {
    local dir=$1
    shift
    if [ $# -gt 0 ]; then
        run cmake --build "$dir" -j "$JOBS" --target "$@" || return 1
    else
        run cmake --build "$dir" -j "$JOBS" || return 1
    fi
}

# The ctest runner prefix for ThreadSanitizer.  gcc 12's libtsan cannot map
# its shadow memory when the kernel randomises mmap with more than 28 bits
# ("FATAL: ThreadSanitizer: unexpected memory mapping"); running without
# address-space randomisation avoids it where the kernel lets us.
tsan_prefix=()
set_tsan_prefix() {
    local bits
    bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
    if [ "$bits" -gt 28 ] && setarch "$(uname -m)" -R true 2>/dev/null; then
        tsan_prefix=(setarch "$(uname -m)" -R)
    fi
}

# run_ctest DIR [PREFIX...]
run_ctest() {
    local dir=$1
    shift
    run "$@" ctest --test-dir "$dir" --output-on-failure --no-tests=error \
        -j "$CTEST_JOBS" --timeout "$CTEST_TIMEOUT" || return 1
}

# stage NAME DIR SANITIZER: configure, build everything, run every test.
stage() {
    local name=$1 dir=$2 san=$3
    say "[$name] configure $dir${san:+ (WEFT_SANITIZE=$san)}"
    configure "$dir" "$san" -DWEFT_BUILD_TESTS=ON -DBUILD_TESTING=ON || return 1
    say "[$name] build"
    build "$dir" || return 1
    say "[$name] ctest"
    if [ "$san" = thread ]; then
        TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} \
            run_ctest "$dir" "${tsan_prefix[@]}" || return 1
    elif [ "$san" = address ]; then
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
            run_ctest "$dir" || return 1
    else
        run_ctest "$dir" || return 1
    fi
}

cmd_demo() {
    ensure_packages
    say "configure build/ ($BUILD_TYPE)"
    configure build "" || exit 1
    say "build the demo"
    build build demo || exit 1
    say "build/examples/demo"
    run ./build/examples/demo
}

cmd_test() {
    PACKAGES+=("${TEST_PACKAGES[@]}")
    ensure_packages
    set_tsan_prefix
    local names=() results=() times=() failed=0 t0 rc
    local spec name dir san
    local start=$SECONDS
    for spec in "release:build:" "tsan:build-tsan:thread" "asan:build-asan:address"; do
        IFS=: read -r name dir san <<<"$spec"
        t0=$SECONDS
        if stage "$name" "$dir" "$san"; then rc=PASS; else rc=FAIL; failed=1; fi
        names+=("$name ($dir)")
        results+=("$rc")
        times+=($((SECONDS - t0)))
    done
    echo
    say "summary"
    local i
    for i in "${!names[@]}"; do
        printf '  %-4s  %-22s %4ds\n' "${results[$i]}" "${names[$i]}" "${times[$i]}"
    done
    printf '  total %ds\n' $((SECONDS - start))
    if [ "$failed" -ne 0 ]; then
        printf '%sFAILED%s (see the output of the failing stage above)\n' "$red" "$off"
        exit 1
    fi
    printf '%sall passed%s\n' "$green" "$off"
}

main() {
    while [ $# -gt 0 ]; do
        case $1 in
        -n | --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) break ;;
        esac
    done
    case ${1:-} in
    demo) cmd_demo ;;
    test) cmd_test ;;
    *) usage >&2; exit 2 ;;
    esac
}

main "$@"
