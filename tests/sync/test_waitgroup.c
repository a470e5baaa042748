/*
 * test_waitgroup: weft_waitgroup_* - errors, limits, deadlines, every
 * waiter woken at zero, reuse, cancellation, add/done from plain threads,
 * a fan-out across workers.
 */
#include "sync_test.h"

static void test_waitgroup_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    weft_waitgroup wg;
    assert_int_equal(weft_waitgroup_init(NULL), -EINVAL);
    assert_int_equal(weft_waitgroup_add(NULL, 1), -EINVAL);
    assert_int_equal(weft_waitgroup_done(NULL), -EINVAL);
    assert_int_equal(weft_waitgroup_count(NULL), -EINVAL);
    assert_int_equal(weft_waitgroup_wait(NULL, WEFT_FOREVER), -EPERM);
    weft_waitgroup_destroy(NULL);

    assert_int_equal(weft_waitgroup_init(&wg), 0);
    assert_int_equal(weft_waitgroup_count(&wg), 0);
    assert_int_equal(weft_waitgroup_wait(&wg, 0), -EPERM);
    assert_int_equal(weft_waitgroup_done(&wg), -EINVAL);   /* below zero */
    assert_int_equal(weft_waitgroup_count(&wg), 0);
    assert_int_equal(weft_waitgroup_add(&wg, 3), 0);
    assert_int_equal(weft_waitgroup_add(&wg, -4), -EINVAL);
    assert_int_equal(weft_waitgroup_count(&wg), 3);
    assert_int_equal(weft_waitgroup_add(&wg, INT64_MAX), -EOVERFLOW);
    assert_int_equal(weft_waitgroup_count(&wg), 3);
    assert_int_equal(weft_waitgroup_add(&wg, 0), 0);
    assert_int_equal(weft_waitgroup_done(&wg), 0);
    assert_int_equal(weft_waitgroup_add(&wg, -2), 0);
    assert_int_equal(weft_waitgroup_count(&wg), 0);
    assert_int_equal(weft_waitgroup_add(&wg, INT64_MAX), 0);
    assert_int_equal(weft_waitgroup_add(&wg, 1), -EOVERFLOW);
    assert_int_equal(weft_waitgroup_add(&wg, -INT64_MAX), 0);
    weft_waitgroup_destroy(&wg);
    assert_int_equal(weft_waitgroup_add(&wg, 1), -EINVAL);
    assert_int_equal(weft_waitgroup_done(&wg), -EINVAL);
    assert_int_equal(weft_waitgroup_count(&wg), -EINVAL);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    weft_waitgroup wg;
    T_CHECK_EQ(weft_waitgroup_wait(NULL, WEFT_FOREVER), -EINVAL);
    weft_waitgroup_init(&wg);
    T_CHECK_EQ(weft_waitgroup_wait(&wg, WEFT_FOREVER), 0);  /* zero: at once */
    T_CHECK_EQ(weft_waitgroup_wait(&wg, 0), 0);             /* even past deadline */
    weft_waitgroup_add(&wg, 1);
    T_CHECK_EQ(weft_waitgroup_wait(&wg, 0), -ETIMEDOUT);
    int64_t dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_waitgroup_wait(&wg, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    weft_waitgroup_done(&wg);
    T_CHECK_EQ(weft_waitgroup_wait(&wg, 0), 0);
    weft_waitgroup_destroy(&wg);
    T_CHECK_EQ(weft_waitgroup_wait(&wg, WEFT_FOREVER), -EINVAL);
    return NULL;
}

static void test_waitgroup_errors_deadlines(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_waitgroup wg;
    _Atomic int woken;
} shared_t;

static void *waiter(void *arg)
{
    shared_t *s = arg;
    int rc = weft_waitgroup_wait(&s->wg, WEFT_FOREVER);
    if (rc == 0)
        atomic_fetch_add(&s->woken, 1);
    return AS_PTR(rc);
}

static void *wake_all_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_waitgroup_init(&s.wg);
    for (int round = 0; round < 3; round++) {  /* reusable */
        atomic_store(&s.woken, 0);
        T_CHECK_EQ(weft_waitgroup_add(&s.wg, 2), 0);
        weft_task *t[5];
        for (int i = 0; i < 5; i++) {
            t[i] = spawn_ok(waiter, &s);
            waiting_for(t[i]);
        }
        T_CHECK_EQ(weft_waitgroup_done(&s.wg), 0);
        weft_yield();
        T_CHECK_EQ(atomic_load(&s.woken), 0);
        T_CHECK_EQ(weft_waitgroup_done(&s.wg), 0);
        for (int i = 0; i < 5; i++)
            T_CHECK_EQ(join_long(t[i], NULL), 0);
        T_CHECK_EQ(atomic_load(&s.woken), 5);
    }
    weft_waitgroup_destroy(&s.wg);
    return NULL;
}

static void test_waitgroup_wake_all(void **state)
{
    (void)state;
    run_weft(wake_all_main, NULL, 1);
    run_weft(wake_all_main, NULL, 3);
}

/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_waitgroup_init(&s.wg);
    int code;
    weft_waitgroup_add(&s.wg, 1);
    weft_task *t0 = spawn_ok(waiter, &s);
    waiting_for(t0);
    weft_cancel(t0);
    T_CHECK_EQ(join_long(t0, &code), -ECANCELED);
    /* woken at zero, then cancelled before it runs: 0 */
    weft_task *t1 = spawn_ok(waiter, &s);
    waiting_for(t1);
    weft_waitgroup_done(&s.wg);
    weft_cancel(t1);
    T_CHECK_EQ(join_long(t1, &code), 0);
    /* a cancelled caller: -ECANCELED at once even at zero */
    weft_cancel(weft_self());
    T_CHECK_EQ(weft_waitgroup_wait(&s.wg, WEFT_FOREVER), -ECANCELED);
    T_CHECK_EQ(weft_waitgroup_add(&s.wg, 1), 0);  /* non-suspending: works */
    T_CHECK_EQ(weft_waitgroup_done(&s.wg), 0);
    weft_waitgroup_destroy(&s.wg);
    return NULL;
}

static void test_waitgroup_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
}

/* ------------------------------------------------------------------ */

static void plain_done(void *arg)
{
    shared_t *s = arg;
    if (weft_waitgroup_done(&s->wg) != 0 || weft_waitgroup_wait(&s->wg, 0) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_waitgroup_init(&s.wg);
    weft_waitgroup_add(&s.wg, 1);
    weft_task *t = spawn_ok(waiter, &s);
    waiting_for(t);
    plain_run(plain_done, &s);
    T_CHECK_EQ(join_long(t, NULL), 0);
    weft_waitgroup_destroy(&s.wg);
    return NULL;
}

static void test_waitgroup_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_waitgroup *wg;
    _Atomic long *sum;
    long v;
} job_t;

static void *job(void *arg)
{
    job_t *j = arg;
    weft_yield();
    atomic_fetch_add(j->sum, j->v);
    weft_waitgroup_done(j->wg);
    return NULL;
}

static void *fanout_main(void *arg)
{
    (void)arg;
    weft_waitgroup wg;
    weft_waitgroup_init(&wg);
    _Atomic long sum = 0;
    enum { N = 1000 };
    job_t *jobs = malloc(sizeof *jobs * N);
    for (long i = 0; i < N; i++) {
        jobs[i] = (job_t){&wg, &sum, i + 1};
        T_CHECK_EQ(weft_waitgroup_add(&wg, 1), 0);
        weft_detach(spawn_ok(job, &jobs[i]));
    }
    T_CHECK_EQ(weft_waitgroup_wait(&wg, WEFT_FOREVER), 0);
    T_CHECK_EQ(atomic_load(&sum), (long)N * (N + 1) / 2);
    T_CHECK_EQ(weft_waitgroup_count(&wg), 0);
    free(jobs);
    weft_waitgroup_destroy(&wg);
    return NULL;
}

static void test_waitgroup_fanout(void **state)
{
    (void)state;
    run_weft(fanout_main, NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waitgroup_no_runtime),
        cmocka_unit_test(test_waitgroup_errors_deadlines),
        cmocka_unit_test(test_waitgroup_wake_all),
        cmocka_unit_test(test_waitgroup_cancel),
        cmocka_unit_test(test_waitgroup_plain_threads),
        cmocka_unit_test(test_waitgroup_fanout),
    };
    return cmocka_run_group_tests_name("waitgroup", tests, NULL, NULL);
}
