#!/usr/bin/env bash
# weft_top_check.sh TARGET WEFT_TOP: drives tools/weft-top in tmux against
# console_target (tests/observe/console_target.c) and checks what the pane
# shows: the workers and the named tasks, the name filter, the sort, a
# task's backtrace on a key, and quitting; then that the target removes its
# socket when it ends.  Exit 77 (skipped) without tmux or python3's curses.
set -u
target=$1
top=$2
command -v tmux >/dev/null 2>&1 || { echo "skipped: no tmux"; exit 77; }
python3 -c 'import curses' 2>/dev/null || { echo "skipped: no python3 with curses"; exit 77; }

dir=$(mktemp -d /tmp/weft-top-check.XXXXXX)
sock=$dir/console.sock
stop=$dir/stop
session=weft-top-check-$$
fail=0
tpid=
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null
    touch "$stop"
    [ -n "$tpid" ] && wait "$tpid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

check() {   # check WHAT NEEDLE [absent]: the pane shows (or not) NEEDLE
    local what=$1 needle=$2 absent=${3:-} pane i
    for i in $(seq 1 50); do
        pane=$(tmux capture-pane -p -t "$session")
        if [ -z "$absent" ] && grep -qF -- "$needle" <<<"$pane"; then return 0; fi
        if [ -n "$absent" ] && ! grep -qF -- "$needle" <<<"$pane"; then return 0; fi
        sleep 0.1
    done
    echo "FAIL: $what: '$needle' ${absent:+still }${absent:-not }shown; the pane:"
    printf '%s\n' "$pane"
    fail=1
}

WEFT_WORKERS=2 WEFT_CONSOLE=$sock "$target" "$stop" &
tpid=$!
for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "FAIL: no console socket at $sock"; exit 1; }

tmux new-session -d -s "$session" -x 110 -y 40 "python3 $top -i 100 $sock; sleep 30"
check "header" "weft-top  up"
check "worker table" "WORKER"
check "a connection task" "http-conn-3"
check "a sleeping query" "db-query-2"
check "the mutex waiters" "lock-waiter"
check "a wait string" "mutex"
check "the blocking pool" "blocking pool: "

# Filter by name: only the queries stay.
tmux send-keys -t "$session" / d b - q Enter
check "filter shown" "filter 'db-q'"
check "filtered out" "http-conn-0" absent
check "filtered in" "db-query-1"
# Clear the filter; sort by time in state, then by name.
tmux send-keys -t "$session" / Enter
check "filter cleared" "http-conn-0"
tmux send-keys -t "$session" s
check "sort by time" "sort time"
tmux send-keys -t "$session" s s
check "sort by name" "sort name"
# By name: cruncher, db-query-0, ...: the second row sleeps.
tmux send-keys -t "$session" Home Down b
check "backtrace window" "backtrace of task"
check "backtrace frames" "weft_sleep"
bt_pane=$(tmux capture-pane -p -t "$session")
tmux send-keys -t "$session" x
check "backtrace closed" "backtrace of task" absent
pane=$(tmux capture-pane -p -t "$session")
tmux send-keys -t "$session" q
check "quit" "weft-top  up" absent

# The target ends; its socket goes with it.
touch "$stop"
wait "$tpid"
rc=$?
tpid=
[ "$rc" -eq 0 ] || { echo "FAIL: console_target exited $rc"; fail=1; }
[ -e "$sock" ] && { echo "FAIL: $sock left behind"; fail=1; }
if [ "$fail" -eq 0 ]; then
    echo "weft-top in tmux: ok; the screens:"
    printf '%s\n' "$pane" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    printf '%s\n' "$bt_pane" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
fi
exit "$fail"
