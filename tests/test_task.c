/*
 * test_task: weft_spawn, weft_spawn_named, weft_join, weft_detach,
 * weft_cancel, weft_self, weft_task_name, weft_task_done, weft_cancelled,
 * weft_yield, weft_sleep, weft_sleep_until, weft_task_id and task-local
 * storage; -EPERM outside a coroutine (no runtime, plain threads), spawning
 * from plain threads, sticky cancellation and no orphans.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

static void *ret_arg(void *arg)
{
    return arg;
}

static void *twice(void *arg)
{
    weft_yield();
    return (void *)((intptr_t)arg * 2);
}

/* ------------------------------------------------------------------ */
/* Spawn and join                                                      */
/* ------------------------------------------------------------------ */

static void *spawn_join_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(twice, (void *)21);
    T_CHECK(t != NULL);
    void *res = NULL;
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK_EQ((intptr_t)res, 42);

    /* result NULL */
    t = weft_spawn(twice, (void *)1);
    T_CHECK_EQ(weft_join(t, NULL), 0);

    /* joining a task that has already finished */
    t = weft_spawn(ret_arg, (void *)5);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK_EQ((intptr_t)res, 5);

    /* many at once, joined in reverse order */
    enum { N = 200 };
    weft_task *ts[N];
    for (intptr_t i = 0; i < N; i++)
        ts[i] = weft_spawn(twice, (void *)i);
    for (intptr_t i = N - 1; i >= 0; i--) {
        T_CHECK_EQ(weft_join(ts[i], &res), 0);
        T_CHECK_EQ((intptr_t)res, 2 * i);
    }
    return (void *)1;
}

static void test_spawn_join(void **state)
{
    (void)state;
    void *res = NULL;
    assert_int_equal(t_run(spawn_join_main, NULL, &res), 0);
    assert_ptr_equal(res, (void *)1);
    assert_int_equal(t_run_workers(1, spawn_join_main, NULL, &res), 0);
    assert_int_equal(t_run_workers(4, spawn_join_main, NULL, &res), 0);
}

/* A spawn storm and a chain of tasks each spawning the next. */
static _Atomic long storm_count;

static void *storm_leaf(void *arg)
{
    (void)arg;
    atomic_fetch_add(&storm_count, 1);
    return NULL;
}

static void *chain(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    atomic_fetch_add(&storm_count, 1);
    if (depth == 0)
        return (void *)0;
    weft_task *t = weft_spawn(chain, (void *)(depth - 1));
    void *res = NULL;
    T_CHECK_EQ(weft_join(t, &res), 0);
    return (void *)((intptr_t)res + 1);
}

static void *storm_main(void *arg)
{
    (void)arg;
    /* ThreadSanitizer makes each new fiber expensive: a smaller storm there */
    enum { N = T_SANITIZED ? 4000 : 20000 };
    weft_task **ts = malloc(sizeof *ts * N);
    for (int i = 0; i < N; i++) {
        ts[i] = weft_spawn(storm_leaf, NULL);
        T_CHECK(ts[i] != NULL);
    }
    T_CHECK_EQ(weft_gather(ts, N, NULL), 0);
    free(ts);
    void *res = NULL;
    weft_task *c = weft_spawn(chain, (void *)300);
    T_CHECK_EQ(weft_join(c, &res), 0);
    T_CHECK_EQ((intptr_t)res, 300);
    return NULL;
}

static void test_spawn_storm(void **state)
{
    (void)state;
    atomic_store(&storm_count, 0);
    assert_int_equal(t_run_workers(2, storm_main, NULL, NULL), 0);
    assert_int_equal(atomic_load(&storm_count), (T_SANITIZED ? 4000 : 20000) + 301);
}

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

typedef struct name_ctx {
    char seen[300];
    bool seen_null;
} name_ctx;

static void *name_task(void *arg)
{
    name_ctx *c = arg;
    const char *n = weft_task_name(weft_self());
    c->seen_null = n == NULL;
    if (n)
        snprintf(c->seen, sizeof c->seen, "%s", n);
    return NULL;
}

static void *names_main(void *arg)
{
    (void)arg;
    char buf[64];
    name_ctx c1 = {{0}, false}, c2 = {{0}, false}, c3 = {{0}, false};
    strcpy(buf, "worker-alpha");
    weft_task *a = weft_spawn_named(buf, name_task, &c1);
    memset(buf, 'x', sizeof buf - 1);  /* the name was copied */
    buf[sizeof buf - 1] = 0;
    T_CHECK(a != NULL);
    T_CHECK(weft_task_name(a) && strcmp(weft_task_name(a), "worker-alpha") == 0);

    weft_task *b = weft_spawn(name_task, &c2);
    T_CHECK(weft_task_name(b) == NULL);
    weft_task *n = weft_spawn_named(NULL, name_task, &c3);
    T_CHECK(weft_task_name(n) == NULL);

    /* names are copied up to 63 bytes; longer ones are truncated */
    char longname[257];
    for (int i = 0; i < 256; i++)
        longname[i] = (char)('a' + i % 26);
    longname[256] = 0;
    name_ctx c4 = {{0}, false};
    weft_task *l = weft_spawn_named(longname, name_task, &c4);
    T_CHECK(weft_task_name(l) && strlen(weft_task_name(l)) == 63 &&
            strncmp(weft_task_name(l), longname, 63) == 0);
    char name63[64];
    memcpy(name63, longname, 63);
    name63[63] = 0;
    name_ctx c5 = {{0}, false};
    weft_task *l63 = weft_spawn_named(name63, name_task, &c5);
    T_CHECK(weft_task_name(l63) && strcmp(weft_task_name(l63), name63) == 0);
    name_ctx c6 = {{0}, false};
    weft_task *empty = weft_spawn_named("", name_task, &c6);

    T_CHECK_EQ(weft_join(a, NULL), 0);
    T_CHECK_EQ(weft_join(b, NULL), 0);
    T_CHECK_EQ(weft_join(n, NULL), 0);
    T_CHECK_EQ(weft_join(l, NULL), 0);
    T_CHECK_EQ(weft_join(l63, NULL), 0);
    T_CHECK_EQ(weft_join(empty, NULL), 0);
    T_CHECK(strcmp(c1.seen, "worker-alpha") == 0);
    T_CHECK(c2.seen_null);
    T_CHECK(c3.seen_null);
    T_CHECK(strncmp(c4.seen, longname, 63) == 0 && strlen(c4.seen) == 63);
    T_CHECK(strcmp(c5.seen, name63) == 0);
    T_CHECK(weft_task_name(NULL) == NULL);
    return NULL;
}

static void test_spawn_named(void **state)
{
    (void)state;
    assert_int_equal(t_run(names_main, NULL, NULL), 0);
    assert_null(weft_task_name(NULL));
}

/* ------------------------------------------------------------------ */
/* Outside a coroutine                                                  */
/* ------------------------------------------------------------------ */

static _Atomic int never_ran;

static void *never(void *arg)
{
    (void)arg;
    atomic_fetch_add(&never_ran, 1);
    return NULL;
}

static int key_outside;

/* Every suspension point and coroutine-only call, from a thread that is not
 * running a coroutine.  handle: a live task or NULL.  Returns failures. */
static void outside_calls(weft_task *handle)
{
    weft_event ev;
    T_CHECK_EQ(weft_event_init(&ev), 0);
    void *res = (void *)3;
    T_CHECK(weft_self() == NULL);
    T_CHECK(!weft_cancelled());
    T_CHECK_EQ(weft_worker_id(), -1);
    T_CHECK_EQ(weft_yield(), -EPERM);
    T_CHECK_EQ(weft_sleep(0), -EPERM);
    T_CHECK_EQ(weft_sleep(-5), -EPERM);
    T_CHECK_EQ(weft_sleep(WEFT_MS), -EPERM);
    T_CHECK_EQ(weft_sleep_until(0), -EPERM);
    T_CHECK_EQ(weft_sleep_until(weft_now() + WEFT_MS), -EPERM);
    T_CHECK_EQ(weft_sleep_until(WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_join(handle, &res), -EPERM);
    T_CHECK_EQ(weft_wait_for(handle, WEFT_FOREVER, &res), -EPERM);
    T_CHECK_EQ(weft_wait_for(handle, 0, &res), -EPERM);
    weft_task *arr[1] = {handle};
    T_CHECK_EQ(weft_gather(arr, 1, NULL), -EPERM);
    T_CHECK_EQ(weft_gather(NULL, 0, NULL), -EPERM);
    T_CHECK_EQ(weft_event_wait(&ev, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_event_wait(&ev, 0), -EPERM);
    weft_event_set(&ev);
    T_CHECK_EQ(weft_event_wait(&ev, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_task_local_set(&key_outside, &ev, NULL), -EPERM);
    T_CHECK(weft_task_local_get(&key_outside) == NULL);
    T_CHECK(res == (void *)3);
    weft_event_destroy(&ev);
}

static void test_outside_runtime(void **state)
{
    (void)state;
    atomic_store(&never_ran, 0);
    leak_snap s = leak_snapshot();
    errno = 0;
    assert_null(weft_spawn(never, NULL));
    assert_int_equal(errno, EPERM);
    errno = 0;
    assert_null(weft_spawn_named("x", never, NULL));
    assert_int_equal(errno, EPERM);
    outside_calls(NULL);
    t_assert_checks();
    assert_int_equal(weft_cancel(NULL), -EINVAL);
    assert_false(weft_task_done(NULL));
    assert_null(weft_task_name(NULL));
    weft_detach(NULL);
    assert_int_equal(weft_workers(), 0);
    leak_check(&s);
    /* a later runtime does not run what failed to spawn */
    assert_int_equal(t_run(ret_arg, NULL, NULL), 0);
    assert_int_equal(atomic_load(&never_ran), 0);
}

/* From a plain thread while a runtime runs. */
typedef struct plain_ctx {
    weft_task *handle;
    weft_event ev;
} plain_ctx;

static void *plain_thread_calls(void *arg)
{
    plain_ctx *c = arg;
    outside_calls(c->handle);
    T_CHECK(weft_workers() >= 1);
    /* non-suspending calls are fine here */
    T_CHECK(!weft_task_done(c->handle));
    T_CHECK(weft_task_name(c->handle) && strcmp(weft_task_name(c->handle), "waiter") == 0);
    T_CHECK_EQ(weft_event_set(&c->ev), 0);
    return NULL;
}

static void *wait_ev(void *arg)
{
    plain_ctx *c = arg;
    int rc = weft_event_wait(&c->ev, WEFT_FOREVER);
    return (void *)(intptr_t)(rc == 0 ? 77 : rc);
}

static void *plain_main(void *arg)
{
    plain_ctx *c = arg;
    weft_event_init(&c->ev);
    c->handle = weft_spawn_named("waiter", wait_ev, c);
    t_in_thread(plain_thread_calls, c);
    /* the handle was not released by the failed calls */
    void *res = NULL;
    T_CHECK_EQ(weft_join(c->handle, &res), 0);
    T_CHECK_EQ((intptr_t)res, 77);
    weft_event_destroy(&c->ev);
    return NULL;
}

static void test_outside_coroutine_plain_thread(void **state)
{
    (void)state;
    plain_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(t_run(plain_main, &c, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Spawning from plain threads                                          */
/* ------------------------------------------------------------------ */

enum { PT_THREADS = 4, PT_EACH = T_SANITIZED ? 100 : 250 };

typedef struct pt_ctx {
    weft_task *handles[PT_THREADS][PT_EACH];
    _Atomic int ran;
    _Atomic int detached_ran;
    _Atomic int in_coroutine;
} pt_ctx;

static void *pt_task(void *arg)
{
    pt_ctx *c = arg;
    if (weft_self() && weft_worker_id() >= 0)
        atomic_fetch_add(&c->in_coroutine, 1);
    weft_yield();
    atomic_fetch_add(&c->ran, 1);
    return arg;
}

static void *pt_detached(void *arg)
{
    pt_ctx *c = arg;
    weft_sleep(WEFT_MS);
    atomic_fetch_add(&c->detached_ran, 1);
    return NULL;
}

typedef struct pt_arg {
    pt_ctx *c;
    int idx;
} pt_arg;

static void *pt_spawner(void *arg)
{
    pt_arg *a = arg;
    for (int i = 0; i < PT_EACH; i++) {
        a->c->handles[a->idx][i] =
            (i % 2) ? weft_spawn(pt_task, a->c) : weft_spawn_named("from-thread", pt_task, a->c);
        T_CHECK(a->c->handles[a->idx][i] != NULL);
        weft_task *d = weft_spawn(pt_detached, a->c);
        T_CHECK(d != NULL);
        weft_detach(d);  /* detach from a plain thread */
    }
    return NULL;
}

static void *pt_main(void *arg)
{
    pt_ctx *c = arg;
    t_thread th[PT_THREADS];
    pt_arg a[PT_THREADS];
    for (int i = 0; i < PT_THREADS; i++) {
        a[i] = (pt_arg){c, i};
        t_thread_start(&th[i], pt_spawner, &a[i]);
    }
    for (int i = 0; i < PT_THREADS; i++)
        t_thread_await(&th[i]);
    void *res[PT_EACH];
    for (int i = 0; i < PT_THREADS; i++) {
        T_CHECK_EQ(weft_gather(c->handles[i], PT_EACH, res), 0);
        for (int k = 0; k < PT_EACH; k++)
            T_CHECK(res[k] == c);
    }
    while (atomic_load(&c->detached_ran) < PT_THREADS * PT_EACH)
        weft_sleep(WEFT_MS);
    return NULL;
}

static void test_spawn_from_plain_threads(void **state)
{
    (void)state;
    pt_ctx *c = calloc(1, sizeof *c);
    assert_int_equal(t_run_workers(2, pt_main, c, NULL), 0);
    assert_int_equal(atomic_load(&c->ran), PT_THREADS * PT_EACH);
    assert_int_equal(atomic_load(&c->in_coroutine), PT_THREADS * PT_EACH);
    assert_int_equal(atomic_load(&c->detached_ran), PT_THREADS * PT_EACH);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Join errors                                                          */
/* ------------------------------------------------------------------ */

static void *self_joiner(void *arg)
{
    (void)arg;
    void *res = (void *)9;
    int rc = weft_join(weft_self(), &res);
    T_CHECK_EQ(rc, -EDEADLK);
    rc = weft_wait_for(weft_self(), weft_now() + WEFT_MS, &res);
    T_CHECK_EQ(rc, -EDEADLK);
    T_CHECK(res == (void *)9);
    return (void *)11;
}

static void *join_errors_main(void *arg)
{
    (void)arg;
    void *res = (void *)3;
    T_CHECK_EQ(weft_join(NULL, &res), -EINVAL);
    T_CHECK_EQ(weft_join(NULL, NULL), -EINVAL);
    T_CHECK_EQ(weft_join(weft_self(), &res), -EDEADLK);
    T_CHECK(res == (void *)3);
    /* the self-join did not release the handle: the parent still joins */
    weft_task *t = weft_spawn(self_joiner, NULL);
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK_EQ((intptr_t)res, 11);
    errno = 0;
    weft_task *bad = weft_spawn(NULL, NULL);
    int e = errno;
    T_CHECK(bad == NULL);
    T_CHECK_EQ(e, EINVAL);
    errno = 0;
    bad = weft_spawn_named("bad", NULL, NULL);
    e = errno;
    T_CHECK(bad == NULL);
    T_CHECK_EQ(e, EINVAL);
    return NULL;
}

static void test_join_errors(void **state)
{
    (void)state;
    assert_int_equal(t_run(join_errors_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Detach                                                              */
/* ------------------------------------------------------------------ */

static _Atomic int detach_done;

static void *detached_task(void *arg)
{
    intptr_t ms = (intptr_t)arg;
    if (ms)
        weft_sleep(ms * WEFT_MS);
    atomic_fetch_add(&detach_done, 1);
    return NULL;
}

static void *detach_plain(void *arg)
{
    weft_detach(arg);
    return NULL;
}

static void *detach_main(void *arg)
{
    (void)arg;
    /* running */
    weft_detach(weft_spawn(detached_task, (void *)5));
    /* finished */
    weft_task *t = weft_spawn(detached_task, (void *)0);
    while (!weft_task_done(t))
        weft_yield();
    weft_detach(t);
    /* not yet run */
    weft_detach(weft_spawn(detached_task, (void *)0));
    /* from a plain thread */
    t_in_thread(detach_plain, weft_spawn(detached_task, (void *)2));
    weft_detach(NULL);
    while (atomic_load(&detach_done) < 4)
        weft_sleep(WEFT_MS);
    return NULL;
}

static void test_detach(void **state)
{
    (void)state;
    atomic_store(&detach_done, 0);
    assert_int_equal(t_run(detach_main, NULL, NULL), 0);
    assert_int_equal(atomic_load(&detach_done), 4);
}

/* ------------------------------------------------------------------ */
/* Cancel                                                              */
/* ------------------------------------------------------------------ */

typedef struct cancel_ctx {
    int sleep_rc;
    bool cancelled_after;
    _Atomic int sleeping;
} cancel_ctx;

static void *sleep_forever(void *arg)
{
    cancel_ctx *c = arg;
    atomic_store(&c->sleeping, 1);
    c->sleep_rc = weft_sleep_until(WEFT_FOREVER);
    c->cancelled_after = weft_cancelled();
    return (void *)99;
}

static void *cancel_main(void *arg)
{
    (void)arg;
    T_CHECK_EQ(weft_cancel(NULL), -EINVAL);

    /* a sleeping task: cancel, idempotent, join returns -ECANCELED and the
     * result. */
    cancel_ctx c = {0};
    weft_task *t = weft_spawn(sleep_forever, &c);
    while (!atomic_load(&c.sleeping))
        weft_yield();
    T_CHECK(!weft_task_done(t));
    T_CHECK_EQ(weft_cancel(t), 0);
    int again = weft_cancel(t);
    if (arg)  /* one worker: it cannot have finished in between */
        T_CHECK_EQ(again, 0);
    else
        T_CHECK(again == 0 || again == -ESRCH);
    void *res = NULL;
    T_CHECK_EQ(weft_join(t, &res), -ECANCELED);
    T_CHECK(res == (void *)99);
    T_CHECK_EQ(c.sleep_rc, -ECANCELED);
    T_CHECK(c.cancelled_after);

    /* a finished task: -ESRCH, and its join is not affected */
    t = weft_spawn(ret_arg, (void *)4);
    while (!weft_task_done(t))
        weft_yield();
    T_CHECK(weft_task_done(t));
    T_CHECK_EQ(weft_cancel(t), -ESRCH);
    T_CHECK_EQ(weft_cancel(t), -ESRCH);
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK(res == (void *)4);

    T_CHECK(!weft_cancelled());
    return NULL;
}

static void test_cancel_basic(void **state)
{
    (void)state;
    assert_int_equal(t_run_workers(1, cancel_main, (void *)1, NULL), 0);
    assert_int_equal(t_run_workers(2, cancel_main, NULL, NULL), 0);
}

static void *self_cancel(void *arg)
{
    (void)arg;
    T_CHECK(!weft_cancelled());
    T_CHECK_EQ(weft_cancel(weft_self()), 0);
    T_CHECK(weft_cancelled());
    T_CHECK_EQ(weft_yield(), -ECANCELED);
    return (void *)8;
}

static void *self_cancel_main(void *arg)
{
    (void)arg;
    void *res = NULL;
    T_CHECK_EQ(weft_join(weft_spawn(self_cancel, NULL), &res), -ECANCELED);
    T_CHECK(res == (void *)8);
    return NULL;
}

static void test_cancel_self(void **state)
{
    (void)state;
    assert_int_equal(t_run(self_cancel_main, NULL, NULL), 0);
}

/* Cancelled before it first runs: its function still runs, cancelled. */
typedef struct early_ctx {
    _Atomic int ran;
    bool cancelled_at_entry;
    int first_rc;
} early_ctx;

static void *early_task(void *arg)
{
    early_ctx *c = arg;
    c->cancelled_at_entry = weft_cancelled();
    c->first_rc = weft_sleep(WEFT_SEC);
    atomic_store(&c->ran, 1);
    return (void *)123;
}

static void *early_main(void *arg)
{
    early_ctx *c = arg;
    /* One worker and no suspension point between spawn and cancel: the
     * task cannot have run. */
    weft_task *t = weft_spawn(early_task, c);
    T_CHECK_EQ(weft_cancel(t), 0);
    T_CHECK(!weft_task_done(t));
    T_CHECK(!atomic_load(&c->ran));
    void *res = NULL;
    T_CHECK_EQ(weft_join(t, &res), -ECANCELED);
    T_CHECK(res == (void *)123);
    return NULL;
}

static void test_cancel_before_first_run(void **state)
{
    (void)state;
    early_ctx c;
    memset(&c, 0, sizeof c);
    int64_t t0 = weft_now();
    assert_int_equal(t_run_workers(1, early_main, &c, NULL), 0);
    assert_true(weft_now() - t0 < WEFT_SEC);
    assert_int_equal(atomic_load(&c.ran), 1);
    assert_true(c.cancelled_at_entry);
    assert_int_equal(c.first_rc, -ECANCELED);
}

/* Cancel from a plain thread. */
typedef struct ptc_ctx {
    weft_task *t;
    cancel_ctx c;
    int rc1, rc2;
} ptc_ctx;

static void *ptc_thread(void *arg)
{
    ptc_ctx *p = arg;
    p->rc1 = weft_cancel(p->t);
    p->rc2 = weft_cancel(p->t);
    return NULL;
}

static void *ptc_main(void *arg)
{
    ptc_ctx *p = arg;
    p->t = weft_spawn(sleep_forever, &p->c);
    while (!atomic_load(&p->c.sleeping))
        weft_sleep(WEFT_MS);
    t_in_thread(ptc_thread, p);
    void *res = NULL;
    T_CHECK_EQ(weft_join(p->t, &res), -ECANCELED);
    T_CHECK(res == (void *)99);
    return NULL;
}

static void test_cancel_from_plain_thread(void **state)
{
    (void)state;
    ptc_ctx p;
    memset(&p, 0, sizeof p);
    assert_int_equal(t_run(ptc_main, &p, NULL), 0);
    assert_int_equal(p.rc1, 0);
    assert_true(p.rc2 == 0 || p.rc2 == -ESRCH);  /* idempotent; it may have finished */
    assert_int_equal(p.c.sleep_rc, -ECANCELED);
}

/* Sticky cancellation: every suspension point returns -ECANCELED at once. */
typedef struct sticky_ctx {
    weft_event ev;
    _Atomic int waiting;
    _Atomic int child_cleanup;
    int fails;
    int64_t elapsed;
    bool done;
} sticky_ctx;

static int sticky_key;

static void *sticky_child(void *arg)
{
    sticky_ctx *c = arg;
    weft_sleep_until(WEFT_FOREVER);
    atomic_fetch_add(&c->child_cleanup, 1);
    return (void *)17;
}

#define STICKY(expr)                                                                     \
    do {                                                                                 \
        int rc_ = (expr);                                                                \
        if (rc_ != -ECANCELED) {                                                         \
            c->fails++;                                                                  \
            fprintf(stderr, "sticky: %s returned %d\n", #expr, rc_);                     \
        }                                                                                \
    } while (0)

static void *sticky_task(void *arg)
{
    sticky_ctx *c = arg;
    atomic_store(&c->waiting, 1);
    int rc = weft_sleep_until(WEFT_FOREVER);
    T_CHECK_EQ(rc, -ECANCELED);
    int64_t t0 = weft_now();
    weft_event_set(&c->ev);  /* even a set event does not let a wait through */
    for (int i = 0; i < 50; i++) {
        STICKY(weft_yield());
        STICKY(weft_sleep(0));
        STICKY(weft_sleep(-1));
        STICKY(weft_sleep(10 * WEFT_SEC));
        STICKY(weft_sleep_until(0));
        STICKY(weft_sleep_until(weft_now() + 10 * WEFT_SEC));
        STICKY(weft_sleep_until(WEFT_FOREVER));
        STICKY(weft_event_wait(&c->ev, WEFT_FOREVER));
        STICKY(weft_event_wait(&c->ev, 0));
        if (i % 10 == 0) {
            /* joining, gathering, waiting for: the child is cancelled and
             * awaited, its result stored */
            void *res = NULL;
            weft_task *ch = weft_spawn(sticky_child, c);
            STICKY(weft_join(ch, &res));
            if (res != (void *)17)
                c->fails++;
            weft_task *g[2] = {weft_spawn(sticky_child, c), weft_spawn(ret_arg, (void *)1)};
            void *rs[2] = {0, 0};
            STICKY(weft_gather(g, 2, rs));
            if (rs[0] != (void *)17 || rs[1] != (void *)1)
                c->fails++;
            STICKY(weft_wait_for(weft_spawn(sticky_child, c), weft_now() + 10 * WEFT_SEC, NULL));
            STICKY(weft_wait_for(weft_spawn(sticky_child, c), WEFT_FOREVER, NULL));
        }
        if (!weft_cancelled())
            c->fails++;
    }
    /* task-local storage still works */
    T_CHECK_EQ(weft_task_local_set(&sticky_key, c, NULL), 0);
    T_CHECK(weft_task_local_get(&sticky_key) == c);
    c->elapsed = weft_now() - t0;
    c->done = true;
    return NULL;
}

static void *sticky_main(void *arg)
{
    sticky_ctx *c = arg;
    weft_event_init(&c->ev);
    weft_task *t = weft_spawn(sticky_task, c);
    while (!atomic_load(&c->waiting))
        weft_sleep(WEFT_MS);
    weft_sleep(WEFT_MS);
    weft_cancel(t);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    weft_event_destroy(&c->ev);
    return NULL;
}

static void test_sticky_cancellation(void **state)
{
    (void)state;
    sticky_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(t_run(sticky_main, &c, NULL), 0);
    assert_true(c.done);
    assert_int_equal(c.fails, 0);
    assert_int_equal(atomic_load(&c.child_cleanup), 5 * 4);
    assert_true(c.elapsed < 5 * WEFT_SEC);
}

/* No orphans: a cancelled task that joins cancels and awaits its child. */
typedef struct orphan_ctx {
    _Atomic int child_started;
    _Atomic int child_done;
    int join_rc;
    bool child_done_at_return;
    bool child_task_done_at_return;
    void *child_result;
    int mode;  /* 0: cancelled while joining; 1: cancelled before joining */
} orphan_ctx;

static void *orphan_child(void *arg)
{
    orphan_ctx *c = arg;
    atomic_store(&c->child_started, 1);
    int rc = weft_sleep_until(WEFT_FOREVER);
    T_CHECK_EQ(rc, -ECANCELED);
    t_spin_ms(20);  /* cleanup that takes a while, without suspending */
    atomic_store(&c->child_done, 1);
    return (void *)55;
}

static void *orphan_parent(void *arg)
{
    orphan_ctx *c = arg;
    weft_task *ch = weft_spawn(orphan_child, c);
    while (!atomic_load(&c->child_started))
        weft_yield();
    if (c->mode == 1) {
        /* wait to be cancelled, then join */
        while (weft_sleep(WEFT_MS) == 0)
            ;
    }
    c->join_rc = weft_join(ch, &c->child_result);
    c->child_done_at_return = atomic_load(&c->child_done);
    return NULL;
}

static void *orphan_main(void *arg)
{
    orphan_ctx *c = arg;
    weft_task *p = weft_spawn(orphan_parent, c);
    while (!atomic_load(&c->child_started))
        weft_sleep(WEFT_MS);
    weft_sleep(2 * WEFT_MS);
    T_CHECK_EQ(weft_cancel(p), 0);
    T_CHECK_EQ(weft_join(p, NULL), -ECANCELED);
    return NULL;
}

static void test_no_orphans_join(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        for (unsigned w = 1; w <= 2; w++) {
            orphan_ctx c;
            memset(&c, 0, sizeof c);
            c.mode = mode;
            assert_int_equal(t_run_workers(w, orphan_main, &c, NULL), 0);
            assert_int_equal(c.join_rc, -ECANCELED);
            assert_true(c.child_done_at_return);
            assert_ptr_equal(c.child_result, (void *)55);
        }
    }
}

/* ------------------------------------------------------------------ */
/* weft_self, weft_task_done                                            */
/* ------------------------------------------------------------------ */

typedef struct self_ctx {
    weft_task *seen_self;
    _Atomic int release;
    bool done_inside;
} self_ctx;

static void *self_task(void *arg)
{
    self_ctx *c = arg;
    c->seen_self = weft_self();
    c->done_inside = weft_task_done(weft_self());
    while (!atomic_load(&c->release))
        weft_sleep(WEFT_MS);
    return NULL;
}

typedef struct done_probe {
    weft_task *t;
    bool done;
} done_probe;

static void *done_from_thread(void *arg)
{
    done_probe *p = arg;
    p->done = weft_task_done(p->t);
    return NULL;
}

static void *self_main(void *arg)
{
    (void)arg;
    T_CHECK(weft_self() != NULL);
    self_ctx c = {0};
    weft_task *t = weft_spawn(self_task, &c);
    T_CHECK(!weft_task_done(t));
    while (!c.seen_self)
        weft_sleep(WEFT_MS);
    T_CHECK(c.seen_self == t);
    T_CHECK(weft_self() != t);
    T_CHECK(!c.done_inside);
    done_probe p = {t, true};
    t_in_thread(done_from_thread, &p);
    T_CHECK(!p.done);
    T_CHECK(!weft_task_done(t));
    atomic_store(&c.release, 1);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    t_in_thread(done_from_thread, &p);
    T_CHECK(p.done);
    T_CHECK(!weft_task_done(NULL));
    T_CHECK_EQ(weft_join(t, NULL), 0);
    return NULL;
}

static void test_self_and_done(void **state)
{
    (void)state;
    assert_null(weft_self());
    assert_int_equal(t_run(self_main, NULL, NULL), 0);
    assert_null(weft_self());
}

/* ------------------------------------------------------------------ */
/* Yield and sleep                                                      */
/* ------------------------------------------------------------------ */

typedef struct pp_ctx {
    _Atomic int flag;
    _Atomic int started;
    long spins;
    int rc;
    int mode;   /* 0 yield, 1 sleep(0), 2 sleep(-5), 3 sleep_until(0), 4 sleep_until(past) */
} pp_ctx;

static int pp_step(int mode)
{
    switch (mode) {
    case 0: return weft_yield();
    case 1: return weft_sleep(0);
    case 2: return weft_sleep(-5 * WEFT_MS);
    case 3: return weft_sleep_until(0);
    default: return weft_sleep_until(weft_now() - WEFT_MS);
    }
}

static void *pp_waiter(void *arg)
{
    pp_ctx *c = arg;
    atomic_store(&c->started, 1);
    while (!atomic_load(&c->flag) && c->spins < 1000000) {
        int rc = pp_step(c->mode);
        if (rc != 0)
            c->rc = rc;
        c->spins++;
    }
    return NULL;
}

static void *pp_setter(void *arg)
{
    pp_ctx *c = arg;
    atomic_store(&c->flag, 1);
    return NULL;
}

static void *pp_main(void *arg)
{
    pp_ctx *c = arg;
    weft_task *a = weft_spawn(pp_waiter, c);
    /* once the waiter loops, the setter must get a turn on the one worker */
    while (!atomic_load(&c->started))
        weft_yield();
    weft_task *b = weft_spawn(pp_setter, c);
    T_CHECK_EQ(weft_join(a, NULL), 0);
    T_CHECK_EQ(weft_join(b, NULL), 0);
    return NULL;
}

/* With one worker, a task that loops on yield (or a sleep of zero or a past
 * deadline) must let the others run. */
static void test_yield_lets_others_run(void **state)
{
    (void)state;
    for (int mode = 0; mode <= 4; mode++) {
        pp_ctx c;
        memset(&c, 0, sizeof c);
        c.mode = mode;
        assert_int_equal(t_run_workers(1, pp_main, &c, NULL), 0);
        assert_int_equal(atomic_load(&c.flag), 1);
        assert_int_equal(c.rc, 0);
        assert_true(c.spins < 1000000);
    }
}

typedef struct sleep_ctx {
    int64_t ns;
    int64_t slept;
    int rc;
} sleep_ctx;

static void *sleep_task(void *arg)
{
    sleep_ctx *c = arg;
    int64_t t0 = weft_now();
    c->rc = weft_sleep(c->ns);
    c->slept = weft_now() - t0;
    return NULL;
}

static void *sleep_until_task(void *arg)
{
    sleep_ctx *c = arg;
    int64_t t0 = weft_now();
    int64_t deadline = t0 + c->ns;
    c->rc = weft_sleep_until(deadline);
    int64_t now = weft_now();
    c->slept = now >= deadline ? now - t0 : -1;
    return NULL;
}

static void *sleep_main(void *arg)
{
    (void)arg;
    enum { N = 300 };
    sleep_ctx *c = calloc(N, sizeof *c);
    weft_task **t = calloc(N, sizeof *t);
    for (int i = 0; i < N; i++) {
        c[i].ns = (int64_t)(1 + i % 30) * WEFT_MS;
        t[i] = weft_spawn(i % 2 ? sleep_task : sleep_until_task, &c[i]);
    }
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_gather(t, N, NULL), 0);
    int64_t all = weft_now() - t0;
    for (int i = 0; i < N; i++) {
        T_CHECK_EQ(c[i].rc, 0);
        T_CHECK(c[i].slept >= c[i].ns);              /* at least the time */
        T_CHECK(c[i].slept < c[i].ns + 5 * WEFT_SEC); /* and it did wake */
    }
    /* they slept concurrently, not one after another (sum: 4.6 s) */
    T_CHECK(all < 3 * WEFT_SEC);
    free(c);
    free(t);

    /* a sleep in the main task itself */
    int64_t s0 = weft_now();
    T_CHECK_EQ(weft_sleep(20 * WEFT_MS), 0);
    T_CHECK(weft_now() - s0 >= 20 * WEFT_MS);
    s0 = weft_now();
    T_CHECK_EQ(weft_sleep_until(s0 + 15 * WEFT_MS), 0);
    T_CHECK(weft_now() >= s0 + 15 * WEFT_MS);
    return NULL;
}

static void test_sleep(void **state)
{
    (void)state;
    assert_int_equal(t_run(sleep_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(1, sleep_main, NULL, NULL), 0);
}

/* A long sleep cut short by cancellation. */
static void *long_sleep_main(void *arg)
{
    sleep_ctx *c = arg;
    c->ns = 60 * WEFT_SEC;
    weft_task *t = weft_spawn(sleep_task, c);
    weft_sleep(5 * WEFT_MS);
    weft_cancel(t);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}

static void test_sleep_cancelled(void **state)
{
    (void)state;
    sleep_ctx c;
    memset(&c, 0, sizeof c);
    int64_t t0 = weft_now();
    assert_int_equal(t_run(long_sleep_main, &c, NULL), 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_true(weft_now() - t0 < 10 * WEFT_SEC);
}

/* ------------------------------------------------------------------ */
/* Task ids                                                             */
/* ------------------------------------------------------------------ */

enum { ID_N = 1000 };

typedef struct id_ctx {
    uint64_t ids[ID_N];
    uint64_t inside[ID_N];
    uint64_t from_thread[64];
} id_ctx;

static void *id_task(void *arg)
{
    uint64_t *slot = arg;
    *slot = weft_task_id(weft_self());
    return NULL;
}

static void *id_thread(void *arg)
{
    uint64_t *out = arg;
    weft_task *t[64];
    for (int i = 0; i < 64; i++) {
        t[i] = weft_spawn(ret_arg, NULL);
        out[i] = weft_task_id(t[i]);
    }
    for (int i = 0; i < 64; i++)
        weft_detach(t[i]);
    return NULL;
}

static void *id_main(void *arg)
{
    id_ctx *c = arg;
    weft_task *t[ID_N];
    for (int i = 0; i < ID_N; i++) {
        t[i] = weft_spawn(id_task, &c->inside[i]);
        c->ids[i] = weft_task_id(t[i]);
    }
    T_CHECK_EQ(weft_gather(t, ID_N, NULL), 0);
    t_in_thread(id_thread, c->from_thread);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_task_id(void **state)
{
    (void)state;
    id_ctx *c1 = calloc(1, sizeof *c1), *c2 = calloc(1, sizeof *c2);
    assert_int_equal(t_run_workers(2, id_main, c1, NULL), 0);
    assert_int_equal(t_run_workers(2, id_main, c2, NULL), 0);
    enum { ALL = 2 * (ID_N + 64) };
    uint64_t *all = malloc(sizeof *all * ALL);
    size_t n = 0;
    for (int i = 0; i < ID_N; i++) {
        assert_true(c1->ids[i] != 0);
        assert_int_equal(c1->ids[i], c1->inside[i]);
        assert_int_equal(c2->ids[i], c2->inside[i]);
        all[n++] = c1->ids[i];
        all[n++] = c2->ids[i];
    }
    for (int i = 0; i < 64; i++) {
        all[n++] = c1->from_thread[i];
        all[n++] = c2->from_thread[i];
    }
    qsort(all, n, sizeof *all, cmp_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i] != all[i - 1]);  /* never reused, across runs too */
    free(all);
    free(c1);
    free(c2);
}

/* ------------------------------------------------------------------ */
/* Task-local storage                                                   */
/* ------------------------------------------------------------------ */

static int key_a, key_b, keys_many[10];

typedef struct tl_ctx {
    _Atomic int dtor_calls;
    _Atomic long dtor_sum;
    _Atomic int mismatches;
    _Atomic int cancelled_dtor;
} tl_ctx;

static tl_ctx *tl_global;

static void tl_dtor(void *v)
{
    atomic_fetch_add(&tl_global->dtor_calls, 1);
    atomic_fetch_add(&tl_global->dtor_sum, (long)(intptr_t)v);
}

static void tl_dtor_cancelled(void *v)
{
    (void)v;
    atomic_fetch_add(&tl_global->cancelled_dtor, 1);
}

static void *tl_task(void *arg)
{
    intptr_t me = (intptr_t)arg;
    tl_ctx *c = tl_global;
    T_CHECK(weft_task_local_get(&key_a) == NULL);
    T_CHECK_EQ(weft_task_local_set(&key_a, (void *)me, tl_dtor), 0);
    T_CHECK_EQ(weft_task_local_set(&key_b, (void *)(me + 1000), NULL), 0);
    /* the value follows the task across suspension points and workers */
    for (int i = 0; i < 50; i++) {
        if (i % 3 == 0)
            weft_sleep(WEFT_US * 100);
        else
            weft_yield();
        if (weft_task_local_get(&key_a) != (void *)me ||
            weft_task_local_get(&key_b) != (void *)(me + 1000))
            atomic_fetch_add(&c->mismatches, 1);
    }
    return NULL;
}

static void *tl_many(void *arg)
{
    (void)arg;
    /* more keys than the first allocation holds */
    for (int i = 0; i < 10; i++)
        T_CHECK_EQ(weft_task_local_set(&keys_many[i], (void *)(intptr_t)(i + 1), tl_dtor), 0);
    for (int i = 0; i < 10; i++)
        T_CHECK(weft_task_local_get(&keys_many[i]) == (void *)(intptr_t)(i + 1));
    /* replacing a value does not run the old value's destructor */
    T_CHECK_EQ(weft_task_local_set(&keys_many[0], (void *)(intptr_t)100, tl_dtor), 0);
    T_CHECK_EQ(atomic_load(&tl_global->dtor_calls), 0);
    T_CHECK(weft_task_local_get(&keys_many[0]) == (void *)(intptr_t)100);
    /* replacing the destructor: the new one (none) applies */
    T_CHECK_EQ(weft_task_local_set(&keys_many[9], (void *)(intptr_t)10, NULL), 0);
    T_CHECK_EQ(weft_task_local_set(NULL, (void *)1, NULL), -EINVAL);
    T_CHECK(weft_task_local_get(NULL) == NULL);
    return NULL;
}

static void *tl_cancelled(void *arg)
{
    (void)arg;
    T_CHECK_EQ(weft_task_local_set(&key_a, (void *)1, tl_dtor_cancelled), 0);
    weft_sleep_until(WEFT_FOREVER);
    return NULL;
}

static void *tl_main(void *arg)
{
    (void)arg;
    tl_ctx *c = tl_global;
    /* main's own locals */
    T_CHECK(weft_task_local_get(&key_a) == NULL);
    T_CHECK_EQ(weft_task_local_set(&key_a, (void *)7, NULL), 0);

    weft_task *t = weft_spawn(tl_many, NULL);
    T_CHECK_EQ(weft_join(t, NULL), 0);
    /* destructors ran before the join returned: 2..9 once, key 0 with 100 */
    T_CHECK_EQ(atomic_load(&c->dtor_calls), 9);
    T_CHECK_EQ(atomic_load(&c->dtor_sum), 100 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9);

    atomic_store(&c->dtor_calls, 0);
    atomic_store(&c->dtor_sum, 0);
    enum { N = 64 };
    weft_task *ts[N];
    long want = 0;
    for (int i = 0; i < N; i++) {
        ts[i] = weft_spawn(tl_task, (void *)(intptr_t)(i + 1));
        want += i + 1;
    }
    T_CHECK_EQ(weft_gather(ts, N, NULL), 0);
    T_CHECK_EQ(atomic_load(&c->dtor_calls), N);
    T_CHECK_EQ(atomic_load(&c->dtor_sum), want);
    T_CHECK_EQ(atomic_load(&c->mismatches), 0);

    /* a cancelled task's destructors run too */
    t = weft_spawn(tl_cancelled, NULL);
    weft_sleep(2 * WEFT_MS);
    weft_cancel(t);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    T_CHECK_EQ(atomic_load(&c->cancelled_dtor), 1);
    /* and so do those of tasks cancelled at shutdown */
    weft_detach(weft_spawn(tl_cancelled, NULL));
    weft_sleep(2 * WEFT_MS);

    T_CHECK(weft_task_local_get(&key_a) == (void *)7);
    return NULL;
}

static void test_task_locals(void **state)
{
    (void)state;
    tl_ctx c;
    memset(&c, 0, sizeof c);
    tl_global = &c;
    assert_int_equal(t_run_workers(2, tl_main, NULL, NULL), 0);
    assert_int_equal(atomic_load(&c.cancelled_dtor), 2);
    tl_global = NULL;
}

int main(void)
{
    t_warm_up();
    const struct CMUnitTest tests[] = {
        T_TEST(test_spawn_join),
        T_TEST(test_spawn_storm),
        T_TEST(test_spawn_named),
        T_TEST(test_outside_runtime),
        T_TEST(test_outside_coroutine_plain_thread),
        T_TEST(test_spawn_from_plain_threads),
        T_TEST(test_join_errors),
        T_TEST(test_detach),
        T_TEST(test_cancel_basic),
        T_TEST(test_cancel_self),
        T_TEST(test_cancel_before_first_run),
        T_TEST(test_cancel_from_plain_thread),
        T_TEST(test_sticky_cancellation),
        T_TEST(test_no_orphans_join),
        T_TEST(test_self_and_done),
        T_TEST(test_yield_lets_others_run),
        T_TEST(test_sleep),
        T_TEST(test_sleep_cancelled),
        T_TEST(test_task_id),
        T_TEST(test_task_locals),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
