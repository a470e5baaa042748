#!/bin/sh
# gdb_check.sh: tests tools/weft-gdb.py on gdb_target (tests/observe/gdb_target.c).
#
#   gdb_check.sh <gdb_target> <weft-gdb.py> [<WEFT_SANITIZE value>]
#
# 1. Live: runs gdb_target under gdb until it aborts (from a coroutine, once
#    its named tasks all wait), then `info weft-tasks` must list each task
#    with its state, wait string (with the descriptor for "read fd") and
#    worker, and `weft-bt` must show each suspended coroutine's frames
#    through the waiting call down to its task function.  `weft-bt ID` of
#    the running main shows its worker thread's stack (abort, main_task).
# 2. Core file: the same program, stopped the same way, saved with gcore
#    (WEFT_GUARD=mprotect: gdb's gcore cannot read stacks guarded with
#    MADV_GUARD_INSTALL); gdb on the core must show the same tasks and the
#    backtrace of one by id.
# Exit 77 (skipped) without gdb, or in a sanitizer build (the sanitizers'
# shadow memory and their own SIGABRT handling make the run meaningless).
set -u
target=$1
script=$2
sanitize=${3:-}

if [ -n "$sanitize" ]; then
    echo "gdb_check: skipped in a sanitizer build (WEFT_SANITIZE=$sanitize)"
    exit 77
fi
if ! command -v gdb >/dev/null 2>&1; then
    echo "gdb_check: skipped: gdb is not installed"
    exit 77
fi
if ! gdb -batch -nx -ex 'python import gdb' >/dev/null 2>&1; then
    echo "gdb_check: skipped: this gdb has no Python"
    exit 77
fi

tmp=$(mktemp -d /tmp/weft-gdb-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
# Every WEFT_* setting of the caller out: defaults, 2 workers.
for v in $(env | sed -n 's/^\(WEFT_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export WEFT_WORKERS=2

gdbrun() {
    timeout 120 gdb -batch -nx -ex 'set debuginfod enabled off' -ex 'set pagination off' \
        -ex 'set confirm off' -ex "source $script" "$@" 2>&1
}

# want <file> <what> <extended regex>: one line of <file> must match.
want() {
    if ! grep -E -q -- "$3" "$1"; then
        echo "gdb_check: FAIL: $2: no line matching /$3/ in $(basename "$1")"
        fail=1
    fi
}

# block <file> <name>: the weft-bt block of task <name> (to the blank line).
block() {
    awk -v n="'$2'" 'index($0, "task ") == 1 && index($0, n) { p = 1 } p && /^$/ { exit } p' "$1"
}

# ---- 1. live ----
gdbrun -ex run -ex 'info weft-tasks' -ex 'weft-bt' -ex 'weft-bt 1' -ex 'weft-bt 999999999' \
    -ex kill --args "$target" > "$tmp/live.txt"
fd=$(sed -n 's/^gdb_target: pipe fd \([0-9]*\)$/\1/p' "$tmp/live.txt")
if ! grep -q '^gdb_target: ready' "$tmp/live.txt" || [ -z "$fd" ]; then
    echo "gdb_check: FAIL: gdb_target did not get ready under gdb"
    cat "$tmp/live.txt"
    exit 1
fi
L=$tmp/live.txt
want "$L" "script loads" '^weft-gdb: loaded'
want "$L" "summary" '^weft: 2 workers, 7 unfinished tasks$'
want "$L" "main running"    '^ +1 +main +running +- +[01]$'
want "$L" "sleeper"         '^ +[0-9]+ +g-sleeper +waiting +sleep +[01]$'
want "$L" "waiter"          '^ +[0-9]+ +g-waiter +waiting +event +[01]$'
want "$L" "reader with fd"  "^ +[0-9]+ +g-reader +waiting +read fd $fd +[01]\$"
want "$L" "joiner"          '^ +[0-9]+ +g-joiner +waiting +join +[01]$'
want "$L" "join target"     '^ +[0-9]+ +g-join-target +waiting +event +[01]$'
want "$L" "locker"          '^ +[0-9]+ +g-locker +waiting +mutex +[01]$'
# Backtraces: the waiting call, then the task's own function, then the entry.
check_bt() {  # <file> <task> <regex of the waiting call> <task function>
    block "$1" "$2" > "$tmp/bt.txt"
    if [ ! -s "$tmp/bt.txt" ]; then
        echo "gdb_check: FAIL: no weft-bt block for $2"
        fail=1
        return
    fi
    want "$tmp/bt.txt" "$2: frame 0 in the scheduler" '^ +#0 +0x[0-9a-f]+ in leave(_as \[inlined into leave\])? at .*sched\.c:[0-9]+$'
    want "$tmp/bt.txt" "$2: park" ' in weft__park_ex at '
    want "$tmp/bt.txt" "$2: waiting call" "$3"
    want "$tmp/bt.txt" "$2: task function" " in $4 at .*gdb_target\\.c:[0-9]+\$"
    want "$tmp/bt.txt" "$2: task entry" ' in weft__task_entry at '
}
check_bt "$L" g-sleeper ' in weft_sleep_until at ' gdb_sleeper_fn
check_bt "$L" g-waiter 'weft_event_wait' gdb_waiter_fn
check_bt "$L" g-reader '( in weft_read at |inlined into weft_read\])' gdb_reader_fn
check_bt "$L" g-joiner ' in weft__join_wait_code at ' gdb_joiner_fn
check_bt "$L" g-join-target 'weft_event_wait' gdb_waiter_fn
check_bt "$L" g-locker 'weft__mutex_lock|weft_mutex_lock' gdb_locker_fn
# The running main: its worker thread's stack.
want "$L" "running main" "^task 1 'main' \\[running, worker [01]\\]:\$"
want "$L" "running main: thread" 'running: the backtrace of its worker.s thread'
want "$L" "running main: abort" ' in main_task \(arg=0x0\) at .*gdb_target\.c:[0-9]+$'
want "$L" "unknown id" '^weft-bt: no unfinished task with id 999999999$'

# ---- 2. core file (gcore) ----
WEFT_GUARD=mprotect gdbrun -ex run -ex "gcore $tmp/core" -ex kill --args "$target" > "$tmp/gcore.txt"
if [ ! -s "$tmp/core" ]; then
    echo "gdb_check: FAIL: gcore wrote no core file"
    cat "$tmp/gcore.txt"
    fail=1
else
    C=$tmp/core.txt
    gdbrun -ex 'info weft-tasks' "$target" "$tmp/core" > "$C"
    want "$C" "core: summary" '^weft: 2 workers, 7 unfinished tasks$'
    want "$C" "core: waiter" '^ +[0-9]+ +g-waiter +waiting +event +[01]$'
    want "$C" "core: reader" '^ +[0-9]+ +g-reader +waiting +read fd [0-9]+ +[01]$'
    id=$(sed -n 's/^ *\([0-9][0-9]*\)  *g-waiter .*/\1/p' "$C")
    gdbrun -ex "weft-bt $id" -ex 'weft-bt 1' "$target" "$tmp/core" > "$tmp/core-bt.txt"
    check_bt "$tmp/core-bt.txt" g-waiter 'weft_event_wait' gdb_waiter_fn
    want "$tmp/core-bt.txt" "core: running main" ' in main_task \(arg=0x0\) at '
fi

if [ "$fail" != 0 ]; then
    echo "---- live session ----"
    cat "$tmp/live.txt"
    [ -f "$tmp/core.txt" ] && { echo "---- core session ----"; cat "$tmp/core.txt" "$tmp/core-bt.txt"; }
    exit 1
fi
echo "gdb_check: ok (live process and core file)"
exit 0
