/*
 * test_rwlock: weft_rwlock_* - errors, readers share / writers exclude,
 * FIFO between readers and writers (no writer starvation), reader batches,
 * deadlines (a writer timing out lets the readers behind it in),
 * cancellation exactness, unlocks from plain threads, consistency across
 * workers.
 */
#include "sync_test.h"

static void test_rwlock_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    weft_rwlock rw;
    assert_int_equal(weft_rwlock_init(NULL), -EINVAL);
    assert_int_equal(weft_rwlock_rdlock(NULL), -EPERM);
    assert_int_equal(weft_rwlock_wrlock(NULL), -EPERM);
    assert_int_equal(weft_rwlock_tryrdlock(NULL), -EINVAL);
    assert_int_equal(weft_rwlock_trywrlock(NULL), -EINVAL);
    assert_int_equal(weft_rwlock_rdunlock(NULL), -EINVAL);
    assert_int_equal(weft_rwlock_wrunlock(NULL), -EINVAL);
    weft_rwlock_destroy(NULL);

    assert_int_equal(weft_rwlock_init(&rw), 0);
    assert_int_equal(weft_rwlock_rdlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_wrlock_until(&rw, 0), -EPERM);
    assert_int_equal(weft_rwlock_rdunlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_wrunlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_tryrdlock(&rw), 0);
    assert_int_equal(weft_rwlock_tryrdlock(&rw), 0);
    assert_int_equal(weft_rwlock_trywrlock(&rw), -EBUSY);
    assert_int_equal(weft_rwlock_wrunlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_rdunlock(&rw), 0);
    assert_int_equal(weft_rwlock_trywrlock(&rw), -EBUSY);
    assert_int_equal(weft_rwlock_rdunlock(&rw), 0);
    assert_int_equal(weft_rwlock_rdunlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_trywrlock(&rw), 0);
    assert_int_equal(weft_rwlock_tryrdlock(&rw), -EBUSY);
    assert_int_equal(weft_rwlock_trywrlock(&rw), -EBUSY);
    assert_int_equal(weft_rwlock_rdunlock(&rw), -EPERM);
    assert_int_equal(weft_rwlock_wrunlock(&rw), 0);
    assert_int_equal(weft_rwlock_wrunlock(&rw), -EPERM);
    weft_rwlock_destroy(&rw);
    assert_int_equal(weft_rwlock_tryrdlock(&rw), -EINVAL);
    assert_int_equal(weft_rwlock_trywrlock(&rw), -EINVAL);
    assert_int_equal(weft_rwlock_rdunlock(&rw), -EINVAL);
    assert_int_equal(weft_rwlock_wrunlock(&rw), -EINVAL);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_rwlock rw;
    _Atomic int readers_in, writers_in;
    _Atomic int order[16];
    _Atomic int n;
} shared_t;

typedef struct {
    shared_t *s;
    int id;
    bool writer;
    int64_t deadline;   /* 0: none */
    weft_event *release; /* hold until set (NULL: release at once) */
} lock_arg;

static void *locker(void *arg)
{
    lock_arg *a = arg;
    shared_t *s = a->s;
    int64_t dl = a->deadline ? a->deadline : WEFT_FOREVER;
    int rc = a->writer ? weft_rwlock_wrlock_until(&s->rw, dl) : weft_rwlock_rdlock_until(&s->rw, dl);
    if (rc)
        return AS_PTR(rc);
    s->order[atomic_fetch_add(&s->n, 1)] = a->id;
    if (a->writer)
        atomic_fetch_add(&s->writers_in, 1);
    else
        atomic_fetch_add(&s->readers_in, 1);
    if (a->release)
        weft_event_wait(a->release, WEFT_FOREVER);
    if (a->writer) {
        atomic_fetch_sub(&s->writers_in, 1);
        weft_rwlock_wrunlock(&s->rw);
    } else {
        atomic_fetch_sub(&s->readers_in, 1);
        weft_rwlock_rdunlock(&s->rw);
    }
    return NULL;
}

static void *errors_main(void *arg)
{
    (void)arg;
    weft_rwlock rw;
    T_CHECK_EQ(weft_rwlock_rdlock(NULL), -EINVAL);
    T_CHECK_EQ(weft_rwlock_wrlock(NULL), -EINVAL);
    T_CHECK_EQ(weft_rwlock_rdlock_until(NULL, 0), -EINVAL);
    T_CHECK_EQ(weft_rwlock_wrlock_until(NULL, 0), -EINVAL);
    weft_rwlock_init(&rw);
    T_CHECK_EQ(weft_rwlock_rdlock(&rw), 0);
    T_CHECK_EQ(weft_rwlock_rdlock_until(&rw, 0), 0);  /* shared, past deadline ok */
    T_CHECK_EQ(weft_rwlock_wrlock_until(&rw, 0), -ETIMEDOUT);
    int64_t dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_rwlock_wrlock_until(&rw, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK_EQ(weft_rwlock_rdunlock(&rw), 0);
    T_CHECK_EQ(weft_rwlock_rdunlock(&rw), 0);
    T_CHECK_EQ(weft_rwlock_wrlock(&rw), 0);
    T_CHECK_EQ(weft_rwlock_rdlock_until(&rw, 0), -ETIMEDOUT);
    dl = weft_now() + 10 * WEFT_MS;
    T_CHECK_EQ(weft_rwlock_rdlock_until(&rw, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK_EQ(weft_rwlock_wrunlock(&rw), 0);
    weft_rwlock_destroy(&rw);
    T_CHECK_EQ(weft_rwlock_rdlock(&rw), -EINVAL);
    T_CHECK_EQ(weft_rwlock_wrlock(&rw), -EINVAL);
    return NULL;
}

static void test_rwlock_errors_deadlines(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* FIFO between readers and writers                                      */
/* ------------------------------------------------------------------ */

static void *fifo_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_rwlock_init(&s.rw);
    weft_event hold;
    weft_event_init(&hold);
    /* main reads; then W1 waits; then R2, R3 must queue behind W1 (no
     * writer starvation), W4 behind them, R5 behind W4. */
    T_CHECK_EQ(weft_rwlock_rdlock(&s.rw), 0);
    lock_arg a[6];
    weft_task *t[6];
    bool writer[6] = {false, true, false, false, true, false};
    for (int i = 1; i < 6; i++) {
        a[i] = (lock_arg){&s, i, writer[i], 0, NULL};
        t[i] = spawn_ok(locker, &a[i]);
        waiting_for(t[i]);
    }
    T_CHECK_EQ(weft_rwlock_tryrdlock(&s.rw), -EBUSY);  /* a writer waits */
    T_CHECK_EQ(weft_rwlock_trywrlock(&s.rw), -EBUSY);
    T_CHECK_EQ(weft_rwlock_rdunlock(&s.rw), 0);
    for (int i = 1; i < 6; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK_EQ(s.n, 5);
    T_CHECK_EQ(s.order[0], 1);
    T_CHECK((s.order[1] == 2 && s.order[2] == 3) || (s.order[1] == 3 && s.order[2] == 2));
    T_CHECK_EQ(s.order[3], 4);
    T_CHECK_EQ(s.order[4], 5);

    /* A batch of readers enters together: all hold it at once. */
    s.n = 0;
    T_CHECK_EQ(weft_rwlock_wrlock(&s.rw), 0);
    for (int i = 1; i <= 3; i++) {
        a[i] = (lock_arg){&s, i, false, 0, &hold};
        t[i] = spawn_ok(locker, &a[i]);
        waiting_for(t[i]);
    }
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    await_int(&s.readers_in, 3);
    T_CHECK_EQ(weft_rwlock_trywrlock(&s.rw), -EBUSY);
    T_CHECK_EQ(weft_rwlock_tryrdlock(&s.rw), 0);  /* nobody waits: may join */
    T_CHECK_EQ(weft_rwlock_rdunlock(&s.rw), 0);
    weft_event_set(&hold);
    for (int i = 1; i <= 3; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK_EQ(weft_rwlock_trywrlock(&s.rw), 0);
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    weft_event_destroy(&hold);
    weft_rwlock_destroy(&s.rw);
    return NULL;
}

static void test_rwlock_fifo(void **state)
{
    (void)state;
    run_weft(fifo_main, NULL, 1);
    run_weft(fifo_main, NULL, 3);
}

/* ------------------------------------------------------------------ */
/* A writer giving up lets the readers behind it in                      */
/* ------------------------------------------------------------------ */

static void *giveup_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_rwlock_init(&s.rw);
    int code;
    for (int how = 0; how < 2; how++) {  /* 0: timeout, 1: cancel */
        s.n = 0;
        T_CHECK_EQ(weft_rwlock_rdlock(&s.rw), 0);
        lock_arg w = {&s, 1, true, how == 0 ? weft_now() + 20 * WEFT_MS : 0, NULL};
        weft_task *tw = spawn_ok(locker, &w);
        waiting_for(tw);
        lock_arg r = {&s, 2, false, 0, NULL};
        weft_task *tr = spawn_ok(locker, &r);
        waiting_for(tr);  /* behind the writer */
        if (how == 1)
            weft_cancel(tw);
        T_CHECK_EQ(join_long(tw, &code), how == 0 ? -ETIMEDOUT : -ECANCELED);
        T_CHECK_EQ(join_long(tr, NULL), 0);  /* let in while we still read */
        T_CHECK_EQ(s.n, 1);
        T_CHECK_EQ(s.order[0], 2);
        T_CHECK_EQ(weft_rwlock_rdunlock(&s.rw), 0);
    }
    T_CHECK_EQ(weft_rwlock_trywrlock(&s.rw), 0);
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    weft_rwlock_destroy(&s.rw);
    return NULL;
}

static void test_rwlock_giveup(void **state)
{
    (void)state;
    run_weft(giveup_main, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* Cancellation exactness                                               */
/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_rwlock_init(&s.rw);
    int code;
    /* granted, then cancelled before it runs: it holds the lock (0) */
    T_CHECK_EQ(weft_rwlock_wrlock(&s.rw), 0);
    lock_arg w = {&s, 1, true, 0, NULL};
    weft_task *tw = spawn_ok(locker, &w);
    waiting_for(tw);
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    weft_cancel(tw);
    T_CHECK_EQ(join_long(tw, &code), 0);
    T_CHECK_EQ(s.n, 1);
    /* a cancelled caller: -ECANCELED at once, nothing taken */
    weft_cancel(weft_self());
    T_CHECK_EQ(weft_rwlock_rdlock(&s.rw), -ECANCELED);
    T_CHECK_EQ(weft_rwlock_wrlock(&s.rw), -ECANCELED);
    T_CHECK_EQ(weft_rwlock_trywrlock(&s.rw), 0);
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    weft_rwlock_destroy(&s.rw);
    return NULL;
}

static void test_rwlock_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
}

/* ------------------------------------------------------------------ */

static void plain_rdunlock(void *arg)
{
    if (weft_rwlock_rdunlock(arg) != 0 || weft_rwlock_rdlock(arg) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_trywr(void *arg)
{
    if (weft_rwlock_trywrlock(arg) != 0)
        atomic_fetch_add(&t_failures, 1);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_rwlock_init(&s.rw);
    T_CHECK_EQ(weft_rwlock_rdlock(&s.rw), 0);
    lock_arg w = {&s, 1, true, 0, NULL};
    weft_task *tw = spawn_ok(locker, &w);
    waiting_for(tw);
    plain_run(plain_rdunlock, &s.rw);  /* a plain thread releases our read lock */
    T_CHECK_EQ(join_long(tw, NULL), 0);
    plain_run(plain_trywr, &s.rw);
    T_CHECK_EQ(weft_rwlock_tryrdlock(&s.rw), -EBUSY);
    T_CHECK_EQ(weft_rwlock_wrunlock(&s.rw), 0);
    weft_rwlock_destroy(&s.rw);
    return NULL;
}

static void test_rwlock_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* Consistency across workers: writers keep two fields equal              */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_rwlock rw;
    long a, b;
    _Atomic int bad;
} pair_t;

static void *rw_worker(void *arg)
{
    pair_t *p = arg;
    for (int i = 0; i < 3000; i++) {
        if (i % 10 == 0) {
            weft_rwlock_wrlock(&p->rw);
            p->a++;
            if (i % 20 == 0)
                weft_yield();
            p->b++;
            weft_rwlock_wrunlock(&p->rw);
        } else {
            weft_rwlock_rdlock(&p->rw);
            long a = p->a;
            if (i % 7 == 0)
                weft_yield();
            if (p->b != a)
                atomic_fetch_add(&p->bad, 1);
            weft_rwlock_rdunlock(&p->rw);
        }
    }
    return NULL;
}

static void *consistency_main(void *arg)
{
    (void)arg;
    pair_t p = {0};
    weft_rwlock_init(&p.rw);
    weft_task *t[12];
    for (int i = 0; i < 12; i++)
        t[i] = spawn_ok(rw_worker, &p);
    T_CHECK_EQ(weft_gather(t, 12, NULL), 0);
    T_CHECK_EQ(p.bad, 0);
    T_CHECK_EQ(p.a, 12 * 300);
    T_CHECK_EQ(p.b, 12 * 300);
    weft_rwlock_destroy(&p.rw);
    return NULL;
}

static void test_rwlock_consistency(void **state)
{
    (void)state;
    run_weft(consistency_main, NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rwlock_no_runtime),
        cmocka_unit_test(test_rwlock_errors_deadlines),
        cmocka_unit_test(test_rwlock_fifo),
        cmocka_unit_test(test_rwlock_giveup),
        cmocka_unit_test(test_rwlock_cancel),
        cmocka_unit_test(test_rwlock_plain_threads),
        cmocka_unit_test(test_rwlock_consistency),
    };
    return cmocka_run_group_tests_name("rwlock", tests, NULL, NULL);
}
