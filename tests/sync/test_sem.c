/*
 * test_sem: weft_sem_* - errors, limits, deadlines, FIFO hand-off (no
 * barging past waiters), cancellation exactness (no permit lost), calls
 * from plain threads, a concurrency limit across workers.
 */
#include "sync_test.h"

static void test_sem_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    weft_sem s;
    assert_int_equal(weft_sem_init(NULL, 1), -EINVAL);
    assert_int_equal(weft_sem_init(&s, (unsigned)INT_MAX + 1u), -EINVAL);
    assert_int_equal(weft_sem_acquire(NULL), -EPERM);
    assert_int_equal(weft_sem_tryacquire(NULL), -EINVAL);
    assert_int_equal(weft_sem_release(NULL), -EINVAL);
    assert_int_equal(weft_sem_value(NULL), -EINVAL);
    weft_sem_destroy(NULL);

    assert_int_equal(weft_sem_init(&s, 2), 0);
    assert_int_equal(weft_sem_value(&s), 2);
    assert_int_equal(weft_sem_acquire(&s), -EPERM);
    assert_int_equal(weft_sem_acquire_until(&s, 0), -EPERM);
    assert_int_equal(weft_sem_value(&s), 2);
    assert_int_equal(weft_sem_tryacquire(&s), 0);
    assert_int_equal(weft_sem_tryacquire(&s), 0);
    assert_int_equal(weft_sem_tryacquire(&s), -EAGAIN);
    assert_int_equal(weft_sem_value(&s), 0);
    assert_int_equal(weft_sem_release(&s), 0);
    assert_int_equal(weft_sem_release(&s), 0);
    assert_int_equal(weft_sem_release(&s), 0);  /* beyond the start: allowed */
    assert_int_equal(weft_sem_value(&s), 3);
    weft_sem_destroy(&s);
    assert_int_equal(weft_sem_tryacquire(&s), -EINVAL);
    assert_int_equal(weft_sem_release(&s), -EINVAL);
    assert_int_equal(weft_sem_value(&s), -EINVAL);

    assert_int_equal(weft_sem_init(&s, INT_MAX), 0);
    assert_int_equal(weft_sem_release(&s), -EOVERFLOW);
    assert_int_equal(weft_sem_value(&s), INT_MAX);
    assert_int_equal(weft_sem_tryacquire(&s), 0);
    assert_int_equal(weft_sem_release(&s), 0);
    weft_sem_destroy(&s);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    weft_sem s;
    T_CHECK_EQ(weft_sem_acquire(NULL), -EINVAL);
    T_CHECK_EQ(weft_sem_acquire_until(NULL, 0), -EINVAL);
    T_CHECK_EQ(weft_sem_init(&s, 1), 0);
    T_CHECK_EQ(weft_sem_acquire(&s), 0);
    T_CHECK_EQ(weft_sem_value(&s), 0);
    T_CHECK_EQ(weft_sem_release(&s), 0);
    weft_sem_destroy(&s);
    T_CHECK_EQ(weft_sem_acquire(&s), -EINVAL);
    return NULL;
}

static void test_sem_errors(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

static void *deadline_main(void *arg)
{
    (void)arg;
    weft_sem s;
    weft_sem_init(&s, 1);
    T_CHECK_EQ(weft_sem_acquire_until(&s, 0), 0);  /* past, but a permit is free */
    T_CHECK_EQ(weft_sem_acquire_until(&s, 0), -ETIMEDOUT);
    int64_t dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_sem_acquire_until(&s, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK_EQ(weft_sem_value(&s), 0);
    T_CHECK_EQ(weft_sem_release(&s), 0);
    T_CHECK_EQ(weft_sem_acquire_until(&s, weft_now() + WEFT_SEC), 0);
    weft_sem_destroy(&s);
    return NULL;
}

static void test_sem_deadline(void **state)
{
    (void)state;
    run_weft(deadline_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_sem s;
    _Atomic int order[8];
    _Atomic int n;
} shared_t;

typedef struct {
    shared_t *s;
    int id;
} waiter_arg;

static void *acquirer(void *arg)
{
    waiter_arg *a = arg;
    int rc = weft_sem_acquire(&a->s->s);
    if (rc == 0)
        a->s->order[atomic_fetch_add(&a->s->n, 1)] = a->id;
    return AS_PTR(rc);
}

static void *fifo_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_sem_init(&s.s, 0);
    weft_task *t[4];
    waiter_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (waiter_arg){&s, i};
        t[i] = spawn_ok(acquirer, &wa[i]);
        waiting_for(t[i]);
    }
    /* Each release goes straight to the first waiter: no barging. */
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    T_CHECK_EQ(weft_sem_tryacquire(&s.s), -EAGAIN);
    T_CHECK_EQ(weft_sem_value(&s.s), 0);
    T_CHECK_EQ(join_long(t[0], NULL), 0);
    for (int i = 1; i < 4; i++) {
        T_CHECK_EQ(weft_sem_release(&s.s), 0);
        await_int(&s.n, i + 1);
        T_CHECK_EQ(s.order[i], i);  /* the first in line got it */
    }
    for (int i = 1; i < 4; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    for (int i = 0; i < 4; i++)
        T_CHECK_EQ(s.order[i], i);
    T_CHECK_EQ(weft_sem_value(&s.s), 0);
    weft_sem_destroy(&s.s);
    return NULL;
}

static void test_sem_fifo(void **state)
{
    (void)state;
    run_weft(fifo_main, NULL, 1);
    run_weft(fifo_main, NULL, 3);
}

/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_sem_init(&s.s, 0);
    int code;

    /* Cancelled while waiting: -ECANCELED, no permit taken. */
    waiter_arg a0 = {&s, 0};
    weft_task *t0 = spawn_ok(acquirer, &a0);
    waiting_for(t0);
    weft_cancel(t0);
    T_CHECK_EQ(join_long(t0, &code), -ECANCELED);
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    T_CHECK_EQ(weft_sem_value(&s.s), 1);  /* nobody else took it */
    T_CHECK_EQ(weft_sem_tryacquire(&s.s), 0);

    /* Granted, then cancelled before it runs: keeps the permit (0). */
    waiter_arg a1 = {&s, 1}, a2 = {&s, 2};
    weft_task *t1 = spawn_ok(acquirer, &a1);
    waiting_for(t1);
    weft_task *t2 = spawn_ok(acquirer, &a2);
    waiting_for(t2);
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    weft_cancel(t1);
    T_CHECK_EQ(join_long(t1, &code), 0);
    /* its acquire succeeded; the task counts as cancelled unless it had
     * finished before weft_cancel (possible with 2 workers) */
    T_CHECK(code == -ECANCELED || code == 0);
    T_CHECK_EQ(s.n, 1);
    /* Cancelled, then released before it runs: the cancelled waiter is
     * still first in line and is granted; it keeps that permit. */
    waiter_arg a3 = {&s, 3};
    weft_task *t3 = spawn_ok(acquirer, &a3);
    waiting_for(t3);
    weft_cancel(t2);
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    long r2 = join_long(t2, &code);
    if (r2 == -ECANCELED) {
        /* t2 left the line before the release: the permit went to t3. */
        T_CHECK_EQ(join_long(t3, NULL), 0);
    } else {
        T_CHECK_EQ(r2, 0);
        T_CHECK_EQ(weft_sem_release(&s.s), 0);
        T_CHECK_EQ(join_long(t3, NULL), 0);
    }
    T_CHECK_EQ(weft_sem_value(&s.s), 0);

    /* A cancelled caller: -ECANCELED at once even with a permit free. */
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    weft_task *self = weft_self();
    weft_cancel(self);
    T_CHECK_EQ(weft_sem_acquire(&s.s), -ECANCELED);
    T_CHECK_EQ(weft_sem_acquire_until(&s.s, 0), -ECANCELED);
    T_CHECK_EQ(weft_sem_value(&s.s), 1);
    T_CHECK_EQ(weft_sem_tryacquire(&s.s), 0);  /* try_* ignores cancellation */
    weft_sem_destroy(&s.s);
    return NULL;
}

static void test_sem_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
}

/* ------------------------------------------------------------------ */

static void plain_release(void *arg)
{
    weft_sem *s = arg;
    if (weft_sem_release(s) != 0 || weft_sem_acquire(s) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_try(void *arg)
{
    weft_sem *s = arg;
    if (weft_sem_tryacquire(s) != 0 || weft_sem_tryacquire(s) != -EAGAIN)
        atomic_fetch_add(&t_failures, 1);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_sem_init(&s.s, 0);
    waiter_arg a = {&s, 0};
    weft_task *t = spawn_ok(acquirer, &a);
    waiting_for(t);
    plain_run(plain_release, &s.s);
    T_CHECK_EQ(join_long(t, NULL), 0);
    T_CHECK_EQ(weft_sem_release(&s.s), 0);
    plain_run(plain_try, &s.s);
    T_CHECK_EQ(weft_sem_value(&s.s), 0);
    weft_sem_destroy(&s.s);
    return NULL;
}

static void test_sem_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* A concurrency limit across workers                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_sem s;
    _Atomic int inside, max_inside;
} limit_t;

static void *limited(void *arg)
{
    limit_t *l = arg;
    for (int i = 0; i < 50; i++) {
        if (weft_sem_acquire(&l->s) != 0)
            return AS_PTR(-1);
        int n = atomic_fetch_add(&l->inside, 1) + 1;
        int m = atomic_load(&l->max_inside);
        while (n > m && !atomic_compare_exchange_weak(&l->max_inside, &m, n))
            ;
        weft_yield();
        atomic_fetch_sub(&l->inside, 1);
        weft_sem_release(&l->s);
    }
    return NULL;
}

static void *limit_main(void *arg)
{
    (void)arg;
    limit_t l = {0};
    weft_sem_init(&l.s, 3);
    weft_task *t[20];
    for (int i = 0; i < 20; i++)
        t[i] = spawn_ok(limited, &l);
    for (int i = 0; i < 20; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK(atomic_load(&l.max_inside) <= 3);
    T_CHECK(atomic_load(&l.max_inside) >= 1);
    T_CHECK_EQ(weft_sem_value(&l.s), 3);
    weft_sem_destroy(&l.s);
    return NULL;
}

static void test_sem_limit(void **state)
{
    (void)state;
    run_weft(limit_main, NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem_no_runtime),
        cmocka_unit_test(test_sem_errors),
        cmocka_unit_test(test_sem_deadline),
        cmocka_unit_test(test_sem_fifo),
        cmocka_unit_test(test_sem_cancel),
        cmocka_unit_test(test_sem_plain_threads),
        cmocka_unit_test(test_sem_limit),
    };
    return cmocka_run_group_tests_name("sem", tests, NULL, NULL);
}
