/*
 * Shared scaffolding of the sync tests (header only).
 *
 *  - cmocka's assert_* may only be used on the thread that runs the cmocka
 *    test (they longjmp); inside coroutines use T_CHECK / T_CHECK_EQ, which
 *    count failures (printing each), and run_weft() asserts afterwards that
 *    there were none.
 *  - run_weft() also checks that the run leaked no file descriptor (counts
 *    /proc/self/fd before weft_run and after).
 *  - White-box: waiting_for() looks at the task's state (runtime/internal.h)
 *    to know that a helper task has queued itself on a primitive, so the
 *    tests can fix the order of waiters without sleeping.
 */
#ifndef WEFT_SYNC_TEST_H
#define WEFT_SYNC_TEST_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <weft.h>

#include "../../runtime/internal.h"

static _Atomic int t_failures;

static void t_fail(const char *file, int line, const char *what, long long a, long long b,
                   bool values)
{
    atomic_fetch_add(&t_failures, 1);
    if (values)
        fprintf(stderr, "FAIL %s:%d: %s (%lld vs %lld)\n", file, line, what, a, b);
    else
        fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
}

#define T_CHECK(c)                                              \
    do {                                                        \
        if (!(c))                                               \
            t_fail(__FILE__, __LINE__, #c, 0, 0, false);        \
    } while (0)
#define T_CHECK_EQ(a, b)                                                    \
    do {                                                                    \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);             \
        if (t_a_ != t_b_)                                                   \
            t_fail(__FILE__, __LINE__, #a " == " #b, t_a_, t_b_, true);     \
    } while (0)

/* Open descriptors of the process. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;  /* the directory's own descriptor */
}

/* Runs fn(arg) as main of a runtime with `workers` workers (0: WEFT_WORKERS
 * or one per CPU); asserts it ran, no T_CHECK failed, no fd leaked. */
static void run_weft_result(weft_fn fn, void *arg, unsigned workers, void **result)
{
    int before = count_fds();
    atomic_store(&t_failures, 0);
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = workers;
    assert_int_equal(weft_run_config(&cfg, fn, arg, result), 0);
    assert_int_equal(atomic_load(&t_failures), 0);
    assert_int_equal(count_fds(), before);
}

static void run_weft(weft_fn fn, void *arg, unsigned workers)
{
    run_weft_result(fn, arg, workers, NULL);
}

/* A test without a runtime ends with this: no descriptor leaked. */
#define FD_GUARD_BEGIN int fd_guard_ = count_fds()
#define FD_GUARD_END assert_int_equal(count_fds(), fd_guard_)

/* Coroutine only.  Yields until t has suspended (queued on whatever it waits
 * for).  A waiter pushes itself on the primitive's list before it parks, so
 * once WAITING it is in line. */
static inline void waiting_for(weft_task *t)
{
    while (atomic_load_explicit(&t->state, memory_order_acquire) != WEFT_TASK_WAITING)
        weft_yield();
}

/* Coroutine only.  Yields until *v == want. */
static inline void await_int(_Atomic int *v, int want)
{
    while (atomic_load(v) != want)
        weft_yield();
}

static inline weft_task *spawn_ok(weft_fn fn, void *arg)
{
    weft_task *t = weft_spawn(fn, arg);
    if (!t) {
        fprintf(stderr, "weft_spawn: %s\n", strerror(errno));
        abort();
    }
    return t;
}

/* Coroutine only.  Joins t; returns its value as a long (its join code in
 * *code when code is not NULL). */
static inline long join_long(weft_task *t, int *code)
{
    void *r = NULL;
    int rc = weft_join(t, &r);
    if (code)
        *code = rc;
    else
        T_CHECK_EQ(rc, 0);
    return (long)(intptr_t)r;
}

#define AS_PTR(x) ((void *)(intptr_t)(x))
#define AS_LONG(p) ((long)(intptr_t)(p))

/* ------------------------------------------------------------------ */
/* Plain threads                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    pthread_t th;
    weft_event done;
    void (*fn)(void *);
    void *arg;
} plain_thread;

static void *plain_main(void *p)
{
    plain_thread *pt = p;
    pt->fn(pt->arg);
    weft_event_set(&pt->done);
    return NULL;
}

/* Coroutine only: runs fn(arg) on a new plain thread and waits for it
 * without blocking the worker. */
static inline void plain_run(void (*fn)(void *), void *arg)
{
    plain_thread pt = {.fn = fn, .arg = arg};
    weft_event_init(&pt.done);
    if (pthread_create(&pt.th, NULL, plain_main, &pt) != 0)
        abort();
    T_CHECK_EQ(weft_event_wait(&pt.done, WEFT_FOREVER), 0);
    pthread_join(pt.th, NULL);
    weft_event_destroy(&pt.done);
}

/* Any thread: sleeps ns of OS time (blocks a worker when called on one). */
static inline void os_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / WEFT_SEC), (long)(ns % WEFT_SEC)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#endif
