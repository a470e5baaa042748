/*
 * test_compose: weft_gather and weft_wait_for - results in index order, the
 * first nonzero code, -EINVAL without releasing handles, timeouts that cancel
 * and await, past deadlines, and no orphans when the caller is cancelled.
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

/* Sleeps arg milliseconds, returns arg * 10. */
static void *nap_then_ret(void *arg)
{
    intptr_t ms = (intptr_t)arg;
    weft_sleep(ms * WEFT_MS);
    return (void *)(ms * 10);
}

/* A task that waits until cancelled, then cleans up for a while (without
 * suspending, as it cannot) and returns a value. */
typedef struct victim {
    _Atomic int started;
    _Atomic int done;
    int wait_rc;
    intptr_t value;
} victim;

static void *victim_task(void *arg)
{
    victim *v = arg;
    atomic_store(&v->started, 1);
    v->wait_rc = weft_sleep_until(WEFT_FOREVER);
    t_spin_ms(15);
    atomic_store(&v->done, 1);
    return (void *)v->value;
}

static void wait_started(victim *v)
{
    while (!atomic_load(&v->started))
        weft_sleep(WEFT_MS);
}

/* ------------------------------------------------------------------ */
/* gather                                                              */
/* ------------------------------------------------------------------ */

static void *gather_order_main(void *arg)
{
    (void)arg;
    enum { N = 12 };
    weft_task *t[N];
    void *res[N];
    /* finish in the reverse of index order */
    for (intptr_t i = 0; i < N; i++)
        t[i] = weft_spawn(nap_then_ret, (void *)(2 * (N - i)));
    memset(res, 0, sizeof res);
    T_CHECK_EQ(weft_gather(t, N, res), 0);
    for (intptr_t i = 0; i < N; i++)
        T_CHECK_EQ((intptr_t)res[i], 20 * (N - i));

    /* results NULL */
    for (intptr_t i = 0; i < N; i++)
        t[i] = weft_spawn(nap_then_ret, (void *)(i % 3));
    T_CHECK_EQ(weft_gather(t, N, NULL), 0);

    /* some already finished */
    for (intptr_t i = 0; i < N; i++)
        t[i] = weft_spawn(ret_arg, (void *)i);
    while (!weft_task_done(t[0]) || !weft_task_done(t[N - 1]))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_gather(t, N, res), 0);
    for (intptr_t i = 0; i < N; i++)
        T_CHECK_EQ((intptr_t)res[i], i);

    /* one task */
    t[0] = weft_spawn(ret_arg, (void *)5);
    T_CHECK_EQ(weft_gather(t, 1, res), 0);
    T_CHECK_EQ((intptr_t)res[0], 5);

    /* many */
    enum { M = 2000 };
    weft_task **many = malloc(sizeof *many * M);
    void **mres = malloc(sizeof *mres * M);
    for (intptr_t i = 0; i < M; i++)
        many[i] = weft_spawn(ret_arg, (void *)i);
    T_CHECK_EQ(weft_gather(many, M, mres), 0);
    for (intptr_t i = 0; i < M; i++)
        T_CHECK_EQ((intptr_t)mres[i], i);
    free(many);
    free(mres);
    return NULL;
}

static void test_gather_results_in_order(void **state)
{
    (void)state;
    assert_int_equal(t_run(gather_order_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(1, gather_order_main, NULL, NULL), 0);
}

static void *gather_empty_main(void *arg)
{
    (void)arg;
    void *res[1] = {(void *)3};
    weft_task *t[1] = {NULL};
    T_CHECK_EQ(weft_gather(NULL, 0, NULL), 0);
    T_CHECK_EQ(weft_gather(t, 0, res), 0);
    T_CHECK(res[0] == (void *)3);
    /* Sticky cancellation even with nothing to gather. */
    weft_cancel(weft_self());
    T_CHECK_EQ(weft_gather(NULL, 0, NULL), -ECANCELED);
    T_CHECK_EQ(weft_gather(t, 0, res), -ECANCELED);
    T_CHECK(res[0] == (void *)3);
    return NULL;
}

static void test_gather_empty(void **state)
{
    (void)state;
    assert_int_equal(t_run(gather_empty_main, NULL, NULL), 0);
}

static void *gather_einval_main(void *arg)
{
    (void)arg;
    void *res[4] = {(void *)1, (void *)1, (void *)1, (void *)1};
    T_CHECK_EQ(weft_gather(NULL, 3, res), -EINVAL);
    T_CHECK_EQ(weft_gather(NULL, 1, NULL), -EINVAL);

    weft_task *t[4];
    t[0] = weft_spawn(ret_arg, (void *)10);
    t[1] = weft_spawn(ret_arg, (void *)11);
    t[2] = NULL;
    t[3] = weft_spawn(ret_arg, (void *)13);
    T_CHECK_EQ(weft_gather(t, 4, res), -EINVAL);
    /* nothing joined, no handle released, no result stored */
    for (int i = 0; i < 4; i++)
        T_CHECK(res[i] == (void *)1);
    t[2] = t[3];
    t[3] = NULL;
    T_CHECK_EQ(weft_gather(t, 4, res), -EINVAL);  /* NULL last */
    t[3] = t[0];
    t[0] = NULL;
    T_CHECK_EQ(weft_gather(t, 4, res), -EINVAL);  /* NULL first */
    /* each handle is still ours */
    void *r = NULL;
    T_CHECK_EQ(weft_join(t[1], &r), 0);
    T_CHECK_EQ((intptr_t)r, 11);
    T_CHECK_EQ(weft_join(t[2], &r), 0);
    T_CHECK_EQ((intptr_t)r, 13);
    T_CHECK_EQ(weft_join(t[3], &r), 0);
    T_CHECK_EQ((intptr_t)r, 10);
    return NULL;
}

static void test_gather_einval(void **state)
{
    (void)state;
    assert_int_equal(t_run(gather_einval_main, NULL, NULL), 0);
}

/* First nonzero code in index order; every result is still stored. */
static void *gather_code_main(void *arg)
{
    (void)arg;
    victim v1 = {.value = 101}, v3 = {.value = 103};
    weft_task *t[5];
    t[0] = weft_spawn(nap_then_ret, (void *)1);
    t[1] = weft_spawn(victim_task, &v1);
    t[2] = weft_spawn(nap_then_ret, (void *)3);
    t[3] = weft_spawn(victim_task, &v3);
    t[4] = weft_spawn(ret_arg, (void *)4);
    wait_started(&v1);
    wait_started(&v3);
    T_CHECK_EQ(weft_cancel(t[3]), 0);
    T_CHECK_EQ(weft_cancel(t[1]), 0);
    void *res[5] = {0};
    T_CHECK_EQ(weft_gather(t, 5, res), -ECANCELED);
    T_CHECK_EQ((intptr_t)res[0], 10);
    T_CHECK_EQ((intptr_t)res[1], 101);
    T_CHECK_EQ((intptr_t)res[2], 30);
    T_CHECK_EQ((intptr_t)res[3], 103);
    T_CHECK_EQ((intptr_t)res[4], 4);
    T_CHECK(atomic_load(&v1.done) && atomic_load(&v3.done));

    /* only the last one cancelled */
    victim v = {.value = 7};
    t[0] = weft_spawn(ret_arg, (void *)1);
    t[1] = weft_spawn(victim_task, &v);
    wait_started(&v);
    weft_cancel(t[1]);
    T_CHECK_EQ(weft_gather(t, 2, res), -ECANCELED);
    T_CHECK_EQ((intptr_t)res[1], 7);
    return NULL;
}

static void test_gather_first_nonzero(void **state)
{
    (void)state;
    assert_int_equal(t_run(gather_code_main, NULL, NULL), 0);
}

/* No orphans: a cancelled caller's gather cancels and awaits every task. */
typedef struct gorph_ctx {
    victim v[3];
    _Atomic int quick_done;
    int rc;
    bool all_done_at_return;
    void *res[4];
    int mode;   /* 0: cancelled while gathering; 1: already cancelled */
    _Atomic int gathering;
} gorph_ctx;

static void *quick_task(void *arg)
{
    gorph_ctx *c = arg;
    atomic_store(&c->quick_done, 1);
    return (void *)44;
}

static void *gorph_parent(void *arg)
{
    gorph_ctx *c = arg;
    weft_task *t[4];
    t[0] = weft_spawn(victim_task, &c->v[0]);
    t[1] = weft_spawn(quick_task, c);
    t[2] = weft_spawn(victim_task, &c->v[1]);
    t[3] = weft_spawn(victim_task, &c->v[2]);
    for (int i = 0; i < 3; i++)
        wait_started(&c->v[i]);
    if (c->mode == 1) {
        while (weft_sleep(WEFT_MS) == 0)
            ;
    }
    atomic_store(&c->gathering, 1);
    c->rc = weft_gather(t, 4, c->res);
    c->all_done_at_return = atomic_load(&c->v[0].done) && atomic_load(&c->v[1].done) &&
                            atomic_load(&c->v[2].done) && atomic_load(&c->quick_done);
    return NULL;
}

static void *gorph_main(void *arg)
{
    gorph_ctx *c = arg;
    weft_task *p = weft_spawn(gorph_parent, c);
    for (int i = 0; i < 3; i++)
        wait_started(&c->v[i]);
    if (c->mode == 0) {
        while (!atomic_load(&c->gathering))
            weft_sleep(WEFT_MS);
        weft_sleep(2 * WEFT_MS);
    }
    weft_cancel(p);
    T_CHECK_EQ(weft_join(p, NULL), -ECANCELED);
    return NULL;
}

static void test_gather_no_orphans(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        for (unsigned w = 1; w <= 2; w++) {
            gorph_ctx c;
            memset(&c, 0, sizeof c);
            c.mode = mode;
            for (int i = 0; i < 3; i++)
                c.v[i].value = 200 + i;
            assert_int_equal(t_run_workers(w, gorph_main, &c, NULL), 0);
            assert_int_equal(c.rc, -ECANCELED);
            assert_true(c.all_done_at_return);
            for (int i = 0; i < 3; i++)
                assert_int_equal(c.v[i].wait_rc, -ECANCELED);
            assert_ptr_equal(c.res[0], (void *)200);
            assert_ptr_equal(c.res[1], (void *)44);
            assert_ptr_equal(c.res[2], (void *)201);
            assert_ptr_equal(c.res[3], (void *)202);
        }
    }
}

/* ------------------------------------------------------------------ */
/* wait_for                                                            */
/* ------------------------------------------------------------------ */

static void *wait_for_ok_main(void *arg)
{
    (void)arg;
    void *res = NULL;
    weft_task *t = weft_spawn(nap_then_ret, (void *)2);
    T_CHECK_EQ(weft_wait_for(t, weft_now() + 30 * WEFT_SEC, &res), 0);
    T_CHECK_EQ((intptr_t)res, 20);
    t = weft_spawn(nap_then_ret, (void *)1);
    T_CHECK_EQ(weft_wait_for(t, WEFT_FOREVER, &res), 0);
    T_CHECK_EQ((intptr_t)res, 10);
    t = weft_spawn(nap_then_ret, (void *)1);
    T_CHECK_EQ(weft_wait_for(t, weft_now() + 30 * WEFT_SEC, NULL), 0);

    /* already finished, deadline already past: completes at once */
    t = weft_spawn(ret_arg, (void *)6);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_wait_for(t, weft_now() - WEFT_MS, &res), 0);
    T_CHECK_EQ((intptr_t)res, 6);
    t = weft_spawn(ret_arg, (void *)8);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_wait_for(t, 0, &res), 0);
    T_CHECK_EQ((intptr_t)res, 8);
    return NULL;
}

static void test_wait_for_completes(void **state)
{
    (void)state;
    assert_int_equal(t_run(wait_for_ok_main, NULL, NULL), 0);
}

typedef struct wf_ctx {
    victim v;
    int rc;
    int64_t elapsed;
    bool done_at_return;
    void *res;
} wf_ctx;

static void *wait_for_timeout_main(void *arg)
{
    wf_ctx *c = arg;
    weft_task *t = weft_spawn(victim_task, &c->v);
    wait_started(&c->v);
    int64_t t0 = weft_now();
    c->res = (void *)1;
    c->rc = weft_wait_for(t, t0 + 20 * WEFT_MS, &c->res);
    c->elapsed = weft_now() - t0;
    c->done_at_return = atomic_load(&c->v.done);
    return NULL;
}

static void test_wait_for_timeout(void **state)
{
    (void)state;
    for (unsigned w = 1; w <= 2; w++) {
        wf_ctx c;
        memset(&c, 0, sizeof c);
        c.v.value = 31;
        assert_int_equal(t_run_workers(w, wait_for_timeout_main, &c, NULL), 0);
        assert_int_equal(c.rc, -ETIMEDOUT);
        assert_true(c.elapsed >= 20 * WEFT_MS);
        assert_true(c.elapsed < 10 * WEFT_SEC);
        /* the task was cancelled and awaited before the return */
        assert_int_equal(c.v.wait_rc, -ECANCELED);
        assert_true(c.done_at_return);
    }
}

/* A deadline already past, task not finished: -ETIMEDOUT at once, still
 * cancelled and awaited. */
static void *wait_for_past_main(void *arg)
{
    wf_ctx *c = arg;
    weft_task *t = weft_spawn(victim_task, &c->v);
    wait_started(&c->v);
    int64_t t0 = weft_now();
    c->rc = weft_wait_for(t, t0 - WEFT_MS, NULL);
    c->elapsed = weft_now() - t0;
    c->done_at_return = atomic_load(&c->v.done);

    /* deadline 0, task not yet started */
    victim v2 = {0};
    t = weft_spawn(victim_task, &v2);
    T_CHECK_EQ(weft_wait_for(t, 0, NULL), -ETIMEDOUT);
    return NULL;
}

static void test_wait_for_past_deadline(void **state)
{
    (void)state;
    wf_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(t_run(wait_for_past_main, &c, NULL), 0);
    assert_int_equal(c.rc, -ETIMEDOUT);
    assert_true(c.done_at_return);
    assert_int_equal(c.v.wait_rc, -ECANCELED);
    assert_true(c.elapsed < 10 * WEFT_SEC);
}

static void *wait_for_errors_main(void *arg)
{
    (void)arg;
    void *res = (void *)2;
    T_CHECK_EQ(weft_wait_for(NULL, WEFT_FOREVER, &res), -EINVAL);
    T_CHECK_EQ(weft_wait_for(NULL, weft_now() + WEFT_SEC, NULL), -EINVAL);
    T_CHECK_EQ(weft_wait_for(weft_self(), WEFT_FOREVER, &res), -EDEADLK);
    T_CHECK_EQ(weft_wait_for(weft_self(), weft_now() + WEFT_MS, &res), -EDEADLK);
    T_CHECK(res == (void *)2);
    return NULL;
}

static void test_wait_for_errors(void **state)
{
    (void)state;
    assert_int_equal(t_run(wait_for_errors_main, NULL, NULL), 0);
    /* outside a coroutine */
    assert_int_equal(weft_wait_for(NULL, WEFT_FOREVER, NULL), -EPERM);
    assert_int_equal(weft_gather(NULL, 0, NULL), -EPERM);
}

/* The task is cancelled by someone else and finishes before the deadline:
 * the join code, -ECANCELED, with the result. */
typedef struct third_ctx {
    victim v;
    weft_task *t;
} third_ctx;

static void *canceller(void *arg)
{
    third_ctx *c = arg;
    wait_started(&c->v);
    weft_sleep(2 * WEFT_MS);
    weft_cancel(c->t);
    return NULL;
}

static void *wait_for_cancelled_main(void *arg)
{
    third_ctx *c = arg;
    c->t = weft_spawn(victim_task, &c->v);
    weft_task *k = weft_spawn(canceller, c);
    void *res = NULL;
    T_CHECK_EQ(weft_wait_for(c->t, weft_now() + 30 * WEFT_SEC, &res), -ECANCELED);
    T_CHECK_EQ((intptr_t)res, 66);
    T_CHECK_EQ(weft_join(k, NULL), 0);
    return NULL;
}

static void test_wait_for_task_cancelled(void **state)
{
    (void)state;
    third_ctx c;
    memset(&c, 0, sizeof c);
    c.v.value = 66;
    assert_int_equal(t_run(wait_for_cancelled_main, &c, NULL), 0);
}

/* No orphans: a cancelled caller's wait_for cancels and awaits the task and
 * returns -ECANCELED, not -ETIMEDOUT. */
typedef struct wforph_ctx {
    victim v;
    int rc;
    bool done_at_return;
    void *res;
    int mode;
    _Atomic int waiting;
} wforph_ctx;

static void *wforph_parent(void *arg)
{
    wforph_ctx *c = arg;
    weft_task *t = weft_spawn(victim_task, &c->v);
    wait_started(&c->v);
    if (c->mode == 1) {
        while (weft_sleep(WEFT_MS) == 0)
            ;
    }
    atomic_store(&c->waiting, 1);
    c->rc = weft_wait_for(t, weft_now() + 30 * WEFT_SEC, &c->res);
    c->done_at_return = atomic_load(&c->v.done);
    return NULL;
}

static void *wforph_main(void *arg)
{
    wforph_ctx *c = arg;
    weft_task *p = weft_spawn(wforph_parent, c);
    wait_started(&c->v);
    if (c->mode == 0) {
        while (!atomic_load(&c->waiting))
            weft_sleep(WEFT_MS);
        weft_sleep(2 * WEFT_MS);
    }
    weft_cancel(p);
    T_CHECK_EQ(weft_join(p, NULL), -ECANCELED);
    return NULL;
}

static void test_wait_for_no_orphans(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        for (unsigned w = 1; w <= 2; w++) {
            wforph_ctx c;
            memset(&c, 0, sizeof c);
            c.mode = mode;
            c.v.value = 88;
            int64_t t0 = weft_now();
            assert_int_equal(t_run_workers(w, wforph_main, &c, NULL), 0);
            assert_true(weft_now() - t0 < 20 * WEFT_SEC);
            assert_int_equal(c.rc, -ECANCELED);
            assert_true(c.done_at_return);
            assert_int_equal(c.v.wait_rc, -ECANCELED);
            assert_ptr_equal(c.res, (void *)88);
        }
    }
}

int main(void)
{
    t_warm_up();
    const struct CMUnitTest tests[] = {
        T_TEST(test_gather_results_in_order),
        T_TEST(test_gather_empty),
        T_TEST(test_gather_einval),
        T_TEST(test_gather_first_nonzero),
        T_TEST(test_gather_no_orphans),
        T_TEST(test_wait_for_completes),
        T_TEST(test_wait_for_timeout),
        T_TEST(test_wait_for_past_deadline),
        T_TEST(test_wait_for_errors),
        T_TEST(test_wait_for_task_cancelled),
        T_TEST(test_wait_for_no_orphans),
    };
    return cmocka_run_group_tests_name("compose", tests, NULL, NULL);
}
