/*
 * test_mutex: weft_mutex_* - errors, deadlines, waiter order, starvation
 * (hand-off) mode, cancellation exactness, calls from plain threads, and a
 * counter across workers.
 */
#include "sync_test.h"

struct holder {
    char c;
    weft_mutex m;
};

static void test_mutex_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    weft_mutex m;
    assert_int_equal(weft_mutex_init(NULL), -EINVAL);
    assert_int_equal(weft_mutex_lock(NULL), -EPERM);
    assert_int_equal(weft_mutex_trylock(NULL), -EINVAL);
    assert_int_equal(weft_mutex_unlock(NULL), -EINVAL);
    assert_false(weft_mutex_is_locked(NULL));
    weft_mutex_destroy(NULL);

    assert_int_equal(weft_mutex_init(&m), 0);
    assert_false(weft_mutex_is_locked(&m));
    assert_int_equal(weft_mutex_lock(&m), -EPERM);
    assert_int_equal(weft_mutex_lock_until(&m, 0), -EPERM);
    assert_false(weft_mutex_is_locked(&m));
    assert_int_equal(weft_mutex_unlock(&m), -EPERM);  /* not locked */
    assert_int_equal(weft_mutex_trylock(&m), 0);
    assert_true(weft_mutex_is_locked(&m));
    assert_int_equal(weft_mutex_trylock(&m), -EBUSY);
    assert_int_equal(weft_mutex_unlock(&m), 0);
    assert_false(weft_mutex_is_locked(&m));
    assert_int_equal(weft_mutex_unlock(&m), -EPERM);
    weft_mutex_destroy(&m);
    assert_int_equal(weft_mutex_trylock(&m), -EINVAL);
    assert_int_equal(weft_mutex_unlock(&m), -EINVAL);
    assert_false(weft_mutex_is_locked(&m));

    struct holder *h = malloc(sizeof *h);
    assert_int_equal((uintptr_t)&h->m % _Alignof(weft_mutex), 0);
    assert_int_equal(weft_mutex_init(&h->m), 0);
    assert_int_equal(weft_mutex_trylock(&h->m), 0);
    assert_int_equal(weft_mutex_unlock(&h->m), 0);
    weft_mutex_destroy(&h->m);
    free(h);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    weft_mutex m;
    T_CHECK_EQ(weft_mutex_lock(NULL), -EINVAL);
    T_CHECK_EQ(weft_mutex_lock_until(NULL, 0), -EINVAL);
    T_CHECK_EQ(weft_mutex_init(&m), 0);
    T_CHECK_EQ(weft_mutex_lock(&m), 0);
    T_CHECK(weft_mutex_is_locked(&m));
    T_CHECK_EQ(weft_mutex_trylock(&m), -EBUSY);
    T_CHECK_EQ(weft_mutex_unlock(&m), 0);
    T_CHECK_EQ(weft_mutex_unlock(&m), -EPERM);
    weft_mutex_destroy(&m);
    T_CHECK_EQ(weft_mutex_lock(&m), -EINVAL);
    T_CHECK_EQ(weft_mutex_lock_until(&m, WEFT_FOREVER), -EINVAL);
    return NULL;
}

static void test_mutex_errors(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

static void *deadline_main(void *arg)
{
    (void)arg;
    weft_mutex m;
    weft_mutex_init(&m);
    /* A past deadline still lets a free mutex be taken. */
    T_CHECK_EQ(weft_mutex_lock_until(&m, 0), 0);
    T_CHECK_EQ(weft_mutex_lock_until(&m, 0), -ETIMEDOUT);  /* held: at once */
    T_CHECK_EQ(weft_mutex_lock_until(&m, weft_now() - WEFT_SEC), -ETIMEDOUT);
    int64_t t0 = weft_now(), dl = t0 + 20 * WEFT_MS;
    T_CHECK_EQ(weft_mutex_lock_until(&m, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK(weft_mutex_is_locked(&m));
    T_CHECK_EQ(weft_mutex_unlock(&m), 0);
    T_CHECK_EQ(weft_mutex_lock_until(&m, weft_now() + WEFT_SEC), 0);
    T_CHECK_EQ(weft_mutex_unlock(&m), 0);
    weft_mutex_destroy(&m);
    return NULL;
}

static void test_mutex_deadline(void **state)
{
    (void)state;
    run_weft(deadline_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_mutex m;
    _Atomic int order[8];
    _Atomic int n;
    int64_t deadline;
} shared_t;

typedef struct {
    shared_t *s;
    int id;
} waiter_arg;

static void *locker(void *arg)
{
    waiter_arg *a = arg;
    int rc = a->s->deadline ? weft_mutex_lock_until(&a->s->m, a->s->deadline)
                            : weft_mutex_lock(&a->s->m);
    if (rc == 0) {
        a->s->order[atomic_fetch_add(&a->s->n, 1)] = a->id;
        weft_mutex_unlock(&a->s->m);
    }
    return AS_PTR(rc);
}

static void *fifo_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_mutex_init(&s.m);
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    waiter_arg wa[4];
    weft_task *t[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (waiter_arg){&s, i};
        t[i] = spawn_ok(locker, &wa[i]);
        waiting_for(t[i]);
    }
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    for (int i = 0; i < 4; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK_EQ(s.n, 4);
    for (int i = 0; i < 4; i++)
        T_CHECK_EQ(s.order[i], i);
    T_CHECK(!weft_mutex_is_locked(&s.m));
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_mutex_fifo(void **state)
{
    (void)state;
    run_weft(fifo_main, NULL, 1);
    run_weft(fifo_main, NULL, 3);
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_mutex_init(&s.m);

    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);

    /* A waiter cancelled while waiting: -ECANCELED, not acquired. */
    waiter_arg a0 = {&s, 0};
    weft_task *t0 = spawn_ok(locker, &a0);
    waiting_for(t0);
    T_CHECK_EQ(weft_cancel(t0), 0);
    int code;
    T_CHECK_EQ(join_long(t0, &code), -ECANCELED);
    T_CHECK_EQ(code, -ECANCELED);
    T_CHECK_EQ(s.n, 0);
    T_CHECK(weft_mutex_is_locked(&s.m));  /* still ours */

    /* Cancelled at the moment the wake-up comes: the waiter passes it on,
     * the next waiter gets the mutex; nothing hangs. */
    waiter_arg a1 = {&s, 1}, a2 = {&s, 2};
    weft_task *t1 = spawn_ok(locker, &a1);
    waiting_for(t1);
    weft_task *t2 = spawn_ok(locker, &a2);
    waiting_for(t2);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);  /* grants t1 (still parked) */
    T_CHECK_EQ(weft_cancel(t1), 0);           /* ... and cancels it */
    long r1 = join_long(t1, &code);
    long r2 = join_long(t2, NULL);
    /* t1 either took the hand-off (0) or passed it on (-ECANCELED). */
    T_CHECK(r1 == 0 || r1 == -ECANCELED);
    T_CHECK_EQ(r2, 0);
    T_CHECK_EQ(s.n, r1 == 0 ? 2 : 1);
    T_CHECK(!weft_mutex_is_locked(&s.m));
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void *cancelled_self(void *arg)
{
    weft_mutex *m = arg;
    /* Wait until cancelled (the main task cancels us). */
    while (!weft_cancelled())
        weft_yield();
    int rc = weft_mutex_lock(m);
    int rc2 = weft_mutex_lock_until(m, 0);
    return AS_PTR(rc == -ECANCELED && rc2 == -ECANCELED && !weft_mutex_is_locked(m) &&
                  weft_mutex_trylock(m) == 0 && weft_mutex_unlock(m) == 0);
}

static void *cancel_self_main(void *arg)
{
    (void)arg;
    weft_mutex m;
    weft_mutex_init(&m);
    weft_task *t = spawn_ok(cancelled_self, &m);
    weft_cancel(t);
    int code;
    T_CHECK_EQ(join_long(t, &code), 1);
    T_CHECK_EQ(code, -ECANCELED);
    weft_mutex_destroy(&m);
    return NULL;
}

static void test_mutex_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
    run_weft(cancel_self_main, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* Starvation mode: a waiter that waited 1 ms is handed the mutex        */
/* ------------------------------------------------------------------ */

static void *starve_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_mutex_init(&s.m);
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    waiter_arg a = {&s, 7};
    weft_task *t = spawn_ok(locker, &a);
    waiting_for(t);
    weft_sleep(3 * WEFT_MS);
    /* Unlock wakes t to retry; barge in before it runs. */
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    T_CHECK_EQ(weft_mutex_trylock(&s.m), 0);
    /* t runs, loses, has waited > 1 ms: starvation mode, first in line. */
    waiting_for(t);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    /* Handed off: the mutex never became free, so no barging now. */
    T_CHECK_EQ(weft_mutex_trylock(&s.m), -EBUSY);
    T_CHECK_EQ(join_long(t, NULL), 0);
    T_CHECK_EQ(s.n, 1);
    T_CHECK(!weft_mutex_is_locked(&s.m));
    /* Back in normal mode: free again. */
    T_CHECK_EQ(weft_mutex_trylock(&s.m), 0);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);

    /* Starvation mode whose only waiter times out: the next unlock finds
     * nobody to hand to, frees the mutex and leaves starvation mode. */
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    s.deadline = weft_now() + 30 * WEFT_MS;
    t = spawn_ok(locker, &a);
    waiting_for(t);
    weft_sleep(3 * WEFT_MS);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    T_CHECK_EQ(weft_mutex_trylock(&s.m), 0);  /* barge again */
    waiting_for(t);                             /* starving now */
    T_CHECK_EQ(join_long(t, NULL), -ETIMEDOUT);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    T_CHECK(!weft_mutex_is_locked(&s.m));
    T_CHECK_EQ(weft_mutex_trylock(&s.m), 0);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    T_CHECK_EQ(s.n, 1);
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_mutex_starvation(void **state)
{
    (void)state;
    run_weft(starve_main, NULL, 1);
}

/* ------------------------------------------------------------------ */
/* Plain threads                                                        */
/* ------------------------------------------------------------------ */

static void plain_unlock(void *arg)
{
    weft_mutex *m = arg;
    if (weft_mutex_unlock(m) != 0)
        atomic_fetch_add(&t_failures, 1);
    if (weft_mutex_lock(m) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_trylock(void *arg)
{
    weft_mutex *m = arg;
    if (weft_mutex_trylock(m) != 0)
        atomic_fetch_add(&t_failures, 1);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_mutex_init(&s.m);
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    waiter_arg a = {&s, 3};
    weft_task *t = spawn_ok(locker, &a);
    waiting_for(t);
    plain_run(plain_unlock, &s.m);   /* a plain thread unlocks: t gets it */
    T_CHECK_EQ(join_long(t, NULL), 0);
    T_CHECK_EQ(s.n, 1);
    plain_run(plain_trylock, &s.m);  /* a plain thread locks ... */
    T_CHECK(weft_mutex_is_locked(&s.m));
    T_CHECK_EQ(weft_mutex_trylock(&s.m), -EBUSY);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);  /* ... a coroutine unlocks */
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_mutex_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* A counter across workers                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_mutex m;
    long counter;  /* plain: the mutex protects it */
    int iters;
} counter_t;

static void *incr(void *arg)
{
    counter_t *c = arg;
    for (int i = 0; i < c->iters; i++) {
        if (weft_mutex_lock(&c->m) != 0)
            return AS_PTR(-1);
        long v = c->counter;
        if (i % 7 == 0)
            weft_yield();  /* hold it across a suspension now and then */
        c->counter = v + 1;
        weft_mutex_unlock(&c->m);
    }
    return NULL;
}

static void *counter_main(void *arg)
{
    (void)arg;
    counter_t c = {.iters = 2000};
    weft_mutex_init(&c.m);
    weft_task *t[16];
    for (int i = 0; i < 16; i++)
        t[i] = spawn_ok(incr, &c);
    for (int i = 0; i < 16; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK_EQ(c.counter, 16L * c.iters);
    weft_mutex_destroy(&c.m);
    return NULL;
}

static void test_mutex_counter(void **state)
{
    (void)state;
    run_weft(counter_main, NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutex_no_runtime),
        cmocka_unit_test(test_mutex_errors),
        cmocka_unit_test(test_mutex_deadline),
        cmocka_unit_test(test_mutex_fifo),
        cmocka_unit_test(test_mutex_cancel),
        cmocka_unit_test(test_mutex_starvation),
        cmocka_unit_test(test_mutex_plain_threads),
        cmocka_unit_test(test_mutex_counter),
    };
    return cmocka_run_group_tests_name("mutex", tests, NULL, NULL);
}
