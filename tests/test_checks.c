/*
 * test_checks: the checked invariants of debug and sanitizer builds
 * (WEFT__ASSERT and the lock ranks, runtime/internal.h) catch what they are
 * there to catch.  Each broken invariant is provoked in a forked child,
 * which must die of SIGABRT with the one-line report naming it; the right
 * order and a clean state must pass.  White-box: links the static library
 * and reaches the internal headers.  Skips (77) in builds without checks.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../runtime/waitq.h"

/* Runs fn in a child with stderr on a pipe; returns what it wrote, and
 * whether it died of SIGABRT. */
static void run_child(void (*fn)(void), char *out, size_t cap, bool *aborted)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    *aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void expect_abort(void (*fn)(void), const char *needle)
{
    char out[4096];
    bool aborted;
    run_child(fn, out, sizeof out, &aborted);
    if (!aborted || !strstr(out, "weft: broken invariant:") || !strstr(out, needle))
        fail_msg("want an abort naming \"%s\"; got %s with: %s", needle,
                 aborted ? "SIGABRT" : "no abort", out);
}

static void expect_clean(void (*fn)(void))
{
    char out[4096];
    bool aborted;
    run_child(fn, out, sizeof out, &aborted);
    if (aborted || strstr(out, "broken invariant"))
        fail_msg("want no report; got: %s", out);
}

/* ---- lock ranks ---- */

static weft__spin la, lb;

static void inner_then_outer(void)
{
    weft__spin_init(&la, WEFT__RANK_IDLE);
    weft__spin_init(&lb, WEFT__RANK_INJECT);
    weft__spin_lock(&la);
    weft__spin_lock(&lb);  /* INJECT under IDLE: out of order */
}

static void outer_then_inner(void)
{
    weft__spin_init(&la, WEFT__RANK_FD);
    weft__spin_init(&lb, WEFT__RANK_INJECT);
    weft__spin_lock(&la);
    weft__spin_lock(&lb);
    weft__spin_unlock(&lb);
    weft__spin_unlock(&la);
    weft__spin_lock(&lb);  /* again, alone: nothing held */
    weft__spin_unlock(&lb);
}

static void same_rank_nested(void)
{
    weft__spin_init(&la, WEFT__RANK_PRIM);
    weft__spin_init(&lb, WEFT__RANK_PRIM);
    weft__spin_lock(&la);
    weft__spin_lock(&lb);  /* two primitives at once: no order between them */
}

static void unlock_unheld(void)
{
    weft__spin_init(&la, WEFT__RANK_PRIM);
    weft__spin_unlock(&la);
}

static void test_lock_ranks(void **state)
{
    (void)state;
    expect_abort(inner_then_outer, "rank INJECT taken while rank IDLE is held");
    expect_abort(same_rank_nested, "rank PRIM taken while rank PRIM is held");
    expect_abort(unlock_unheld, "weft__spin_unlock");  /* the held check */
    expect_clean(outer_then_inner);
}

/* ---- wait-queue membership ---- */

static void waiter_queued_twice(void)
{
    weft__waitq q = {0};
    weft__waiter w = {.task = (weft_task *)&q};  /* any non-NULL task */
    weft__waitq_push(&q, &w);
    weft__waitq_push(&q, &w);
}

static void waiter_removed_from_other_queue(void)
{
    weft__waitq q1 = {0}, q2 = {0};
    weft__waiter w = {.task = (weft_task *)&q1};
    weft__waitq_push(&q1, &w);
    weft__waitq_remove(&q2, &w);
}

static void waiter_in_and_out(void)
{
    weft__waitq q = {0};
    weft__waiter w = {.task = (weft_task *)&q};
    for (int i = 0; i < 3; i++) {
        weft__waitq_push(&q, &w);
        weft__waitq_remove(&q, &w);
    }
    weft__waitq_push_front(&q, &w);
    if (weft__waitq_pop(&q) != &w)
        abort();
}

static void test_waitq_membership(void **state)
{
    (void)state;
    expect_abort(waiter_queued_twice, "w->on == NULL");
    expect_abort(waiter_removed_from_other_queue, "w->on == q");
    expect_clean(waiter_in_and_out);
}

/* ---- owner-only ring operations ---- */

static void ring_put_from_plain_thread(void)
{
    static weft__runtime rt;
    static weft__worker w;
    static weft_task t;
    w.rt = &rt;
    t.rt = &rt;
    weft__runq_put(&w, &t);  /* no worker runs this thread */
}

static void test_ring_owner(void **state)
{
    (void)state;
    expect_abort(ring_put_from_plain_thread, "weft__cur_worker() == w");
}

/* ---- a task slot reset in full, and clean on free ---- */

static void slot_reset_forgets_a_field(void)
{
    static weft_task t;
    weft__task_poison(&t);
    /* a reset that sets every field but one (result, the last it resets) */
    memset(&t, 0, offsetof(weft_task, result));
    weft__task_check_reset(&t);
}

/* A finished task's free that left a clean-on-free field set: a group
 * member's link (the spare stack once left one so: registry.c). */
static void slot_left_dirty(void)
{
    static weft_task t;
    static weft_task other;
    memset(&t, 0, sizeof t);
    t.gnext = &other;
    weft__task_check_reset(&t);
}

static void slot_left_timer(void)
{
    static weft__worker w;
    static weft_task t;
    memset(&t, 0, sizeof t);
    t.timer.wheel = &w;
    weft__task_check_reset(&t);
}

static void slot_reset_in_full(void)
{
    static weft_task t;
    weft__task_poison(&t);
    memset(&t, 0, sizeof t);
    weft__task_check_reset(&t);
}

static void test_task_reset(void **state)
{
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "offset %zu left over", offsetof(weft_task, result));
    expect_abort(slot_reset_forgets_a_field, want);
    expect_abort(slot_left_dirty, "clean on free (group left set)");
    expect_abort(slot_left_timer, "clean on free (timer.wheel left set)");
    expect_clean(slot_reset_in_full);
}

int main(void)
{
    if (!WEFT_CHECKS) {
        printf("test_checks: skipped: built without WEFT_CHECKS (release)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_ranks),
        cmocka_unit_test(test_waitq_membership),
        cmocka_unit_test(test_ring_owner),
        cmocka_unit_test(test_task_reset),
    };
    return cmocka_run_group_tests_name("checks", tests, NULL, NULL);
}
