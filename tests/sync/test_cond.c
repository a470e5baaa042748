/*
 * test_cond: weft_cond_* - errors, the mutex held on every return code,
 * deadlines, signal order, broadcast, cancellation exactness (a signal is
 * never lost), signal/broadcast from plain threads, a predicate loop across
 * workers.
 */
#include "sync_test.h"

static void test_cond_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    weft_cond c;
    weft_mutex m;
    assert_int_equal(weft_cond_init(NULL), -EINVAL);
    assert_int_equal(weft_cond_signal(NULL), -EINVAL);
    assert_int_equal(weft_cond_broadcast(NULL), -EINVAL);
    assert_int_equal(weft_cond_wait(NULL, NULL, WEFT_FOREVER), -EPERM);
    weft_cond_destroy(NULL);
    assert_int_equal(weft_cond_init(&c), 0);
    assert_int_equal(weft_mutex_init(&m), 0);
    assert_int_equal(weft_cond_signal(&c), 0);      /* nobody waits: no-op */
    assert_int_equal(weft_cond_broadcast(&c), 0);
    assert_int_equal(weft_mutex_trylock(&m), 0);
    assert_int_equal(weft_cond_wait(&c, &m, WEFT_FOREVER), -EPERM);
    assert_true(weft_mutex_is_locked(&m));
    assert_int_equal(weft_mutex_unlock(&m), 0);
    weft_cond_destroy(&c);
    assert_int_equal(weft_cond_signal(&c), -EINVAL);
    assert_int_equal(weft_cond_broadcast(&c), -EINVAL);
    weft_mutex_destroy(&m);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    weft_cond c;
    weft_mutex m;
    weft_cond_init(&c);
    weft_mutex_init(&m);
    T_CHECK_EQ(weft_cond_wait(NULL, &m, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_cond_wait(&c, NULL, WEFT_FOREVER), -EINVAL);
    /* m not locked: -EPERM, nothing released or taken */
    T_CHECK_EQ(weft_cond_wait(&c, &m, WEFT_FOREVER), -EPERM);
    T_CHECK(!weft_mutex_is_locked(&m));
    T_CHECK_EQ(weft_mutex_lock(&m), 0);
    weft_mutex_destroy(&m);
    T_CHECK_EQ(weft_cond_wait(&c, &m, WEFT_FOREVER), -EINVAL);
    weft_mutex_init(&m);
    weft_cond_destroy(&c);
    T_CHECK_EQ(weft_mutex_lock(&m), 0);
    T_CHECK_EQ(weft_cond_wait(&c, &m, WEFT_FOREVER), -EINVAL);
    T_CHECK(weft_mutex_is_locked(&m));
    T_CHECK_EQ(weft_mutex_unlock(&m), 0);
    weft_mutex_destroy(&m);
    return NULL;
}

static void test_cond_errors(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

static void *deadline_main(void *arg)
{
    (void)arg;
    weft_cond c;
    weft_mutex m;
    weft_cond_init(&c);
    weft_mutex_init(&m);
    T_CHECK_EQ(weft_mutex_lock(&m), 0);
    T_CHECK_EQ(weft_cond_wait(&c, &m, 0), -ETIMEDOUT);
    T_CHECK(weft_mutex_is_locked(&m));
    int64_t dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_cond_wait(&c, &m, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK(weft_mutex_is_locked(&m));
    T_CHECK_EQ(weft_mutex_unlock(&m), 0);
    T_CHECK_EQ(weft_mutex_unlock(&m), -EPERM);  /* held exactly once */
    weft_cond_destroy(&c);
    weft_mutex_destroy(&m);
    return NULL;
}

static void test_cond_deadline(void **state)
{
    (void)state;
    run_weft(deadline_main, NULL, 2);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_cond c;
    weft_mutex m;
    _Atomic int order[8];
    _Atomic int n;
    _Atomic int held_after;   /* waiters that found m held by themselves on return */
} shared_t;

typedef struct {
    shared_t *s;
    int id;
} waiter_arg;

/* Waits once; records its id when signalled; checks m is held on return. */
static void *waiter(void *arg)
{
    waiter_arg *a = arg;
    shared_t *s = a->s;
    if (weft_mutex_lock(&s->m) != 0)
        return AS_PTR(-1000);
    int rc = weft_cond_wait(&s->c, &s->m, WEFT_FOREVER);
    if (rc == 0)
        s->order[atomic_fetch_add(&s->n, 1)] = a->id;
    /* m is ours: trylock fails, unlock succeeds */
    if (weft_mutex_trylock(&s->m) == -EBUSY && weft_mutex_unlock(&s->m) == 0)
        atomic_fetch_add(&s->held_after, 1);
    return AS_PTR(rc);
}

static void *signal_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_cond_init(&s.c);
    weft_mutex_init(&s.m);
    weft_task *t[4];
    waiter_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (waiter_arg){&s, i};
        t[i] = spawn_ok(waiter, &wa[i]);
        waiting_for(t[i]);
    }
    /* signal: one at a time, in order */
    T_CHECK_EQ(weft_cond_signal(&s.c), 0);
    await_int(&s.n, 1);
    T_CHECK_EQ(s.order[0], 0);
    T_CHECK_EQ(weft_cond_signal(&s.c), 0);
    await_int(&s.n, 2);
    T_CHECK_EQ(s.order[1], 1);
    /* broadcast: the rest */
    T_CHECK_EQ(weft_cond_broadcast(&s.c), 0);
    for (int i = 0; i < 4; i++)
        T_CHECK_EQ(join_long(t[i], NULL), 0);
    T_CHECK_EQ(s.n, 4);
    T_CHECK_EQ(s.held_after, 4);
    weft_cond_destroy(&s.c);
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_cond_signal_broadcast(void **state)
{
    (void)state;
    run_weft(signal_main, NULL, 1);
    run_weft(signal_main, NULL, 3);
}

/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_cond_init(&s.c);
    weft_mutex_init(&s.m);
    int code;

    /* Cancelled while waiting, with m held by someone else at that moment:
     * -ECANCELED only once m is held again. */
    waiter_arg a0 = {&s, 0};
    weft_task *t0 = spawn_ok(waiter, &a0);
    waiting_for(t0);
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    weft_cancel(t0);
    weft_sleep(2 * WEFT_MS);
    T_CHECK(!weft_task_done(t0));  /* waits for m */
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    T_CHECK_EQ(join_long(t0, &code), -ECANCELED);
    T_CHECK_EQ(s.held_after, 1);
    T_CHECK_EQ(s.n, 0);

    /* Signalled, then cancelled before it runs: keeps the signal (0); the
     * next waiter was not signalled. */
    waiter_arg a1 = {&s, 1}, a2 = {&s, 2};
    weft_task *t1 = spawn_ok(waiter, &a1);
    waiting_for(t1);
    weft_task *t2 = spawn_ok(waiter, &a2);
    waiting_for(t2);
    T_CHECK_EQ(weft_cond_signal(&s.c), 0);
    weft_cancel(t1);
    T_CHECK_EQ(join_long(t1, &code), 0);
    T_CHECK_EQ(s.n, 1);
    T_CHECK(!weft_task_done(t2));
    /* Cancelled, then signalled before it runs: the signal reaches the
     * first waiter still in line; whoever it is, one waiter returns 0. */
    waiter_arg a3 = {&s, 3};
    weft_task *t3 = spawn_ok(waiter, &a3);
    waiting_for(t3);
    weft_cancel(t2);
    T_CHECK_EQ(weft_cond_signal(&s.c), 0);
    long r2 = join_long(t2, &code);
    if (r2 == 0) {
        T_CHECK(!weft_task_done(t3));
        T_CHECK_EQ(weft_cond_signal(&s.c), 0);
    }
    T_CHECK_EQ(join_long(t3, NULL), 0);
    T_CHECK_EQ(s.n, r2 == 0 ? 3 : 2);
    T_CHECK_EQ(s.held_after, 4);

    /* A cancelled caller: -ECANCELED at once, m still held. */
    T_CHECK_EQ(weft_mutex_lock(&s.m), 0);
    weft_cancel(weft_self());
    T_CHECK_EQ(weft_cond_wait(&s.c, &s.m, WEFT_FOREVER), -ECANCELED);
    T_CHECK_EQ(weft_mutex_trylock(&s.m), -EBUSY);
    T_CHECK_EQ(weft_mutex_unlock(&s.m), 0);
    weft_cond_destroy(&s.c);
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_cond_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
}

/* ------------------------------------------------------------------ */

static void plain_signal(void *arg)
{
    weft_cond *c = arg;
    if (weft_cond_signal(c) != 0)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_broadcast(void *arg)
{
    weft_cond *c = arg;
    if (weft_cond_broadcast(c) != 0)
        atomic_fetch_add(&t_failures, 1);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_cond_init(&s.c);
    weft_mutex_init(&s.m);
    waiter_arg wa[3] = {{&s, 0}, {&s, 1}, {&s, 2}};
    weft_task *t0 = spawn_ok(waiter, &wa[0]);
    waiting_for(t0);
    plain_run(plain_signal, &s.c);
    T_CHECK_EQ(join_long(t0, NULL), 0);
    weft_task *t1 = spawn_ok(waiter, &wa[1]);
    waiting_for(t1);
    weft_task *t2 = spawn_ok(waiter, &wa[2]);
    waiting_for(t2);
    plain_run(plain_broadcast, &s.c);
    T_CHECK_EQ(join_long(t1, NULL), 0);
    T_CHECK_EQ(join_long(t2, NULL), 0);
    T_CHECK_EQ(s.n, 3);
    weft_cond_destroy(&s.c);
    weft_mutex_destroy(&s.m);
    return NULL;
}

static void test_cond_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* A bounded buffer built from a mutex and two conditions                */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_mutex m;
    weft_cond not_empty, not_full;
    long buf[4];
    int n, head;
    long sum;
} bb_t;

#define BB_ITEMS 3000

static void *bb_producer(void *arg)
{
    bb_t *b = arg;
    for (long i = 1; i <= BB_ITEMS; i++) {
        weft_mutex_lock(&b->m);
        while (b->n == 4)
            weft_cond_wait(&b->not_full, &b->m, WEFT_FOREVER);
        b->buf[(b->head + b->n) % 4] = i;
        b->n++;
        weft_cond_signal(&b->not_empty);
        weft_mutex_unlock(&b->m);
    }
    return NULL;
}

static void *bb_consumer(void *arg)
{
    bb_t *b = arg;
    for (long i = 0; i < BB_ITEMS; i++) {
        weft_mutex_lock(&b->m);
        while (b->n == 0)
            weft_cond_wait(&b->not_empty, &b->m, WEFT_FOREVER);
        b->sum += b->buf[b->head];
        b->head = (b->head + 1) % 4;
        b->n--;
        weft_cond_signal(&b->not_full);
        weft_mutex_unlock(&b->m);
    }
    return NULL;
}

static void *bb_main(void *arg)
{
    (void)arg;
    bb_t b = {0};
    weft_mutex_init(&b.m);
    weft_cond_init(&b.not_empty);
    weft_cond_init(&b.not_full);
    weft_task *t[6];
    for (int i = 0; i < 3; i++) {
        t[2 * i] = spawn_ok(bb_producer, &b);
        t[2 * i + 1] = spawn_ok(bb_consumer, &b);
    }
    T_CHECK_EQ(weft_gather(t, 6, NULL), 0);
    T_CHECK_EQ(b.sum, 3L * BB_ITEMS * (BB_ITEMS + 1) / 2);
    T_CHECK_EQ(b.n, 0);
    weft_cond_destroy(&b.not_empty);
    weft_cond_destroy(&b.not_full);
    weft_mutex_destroy(&b.m);
    return NULL;
}

static void test_cond_bounded_buffer(void **state)
{
    (void)state;
    run_weft(bb_main, NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cond_no_runtime),
        cmocka_unit_test(test_cond_errors),
        cmocka_unit_test(test_cond_deadline),
        cmocka_unit_test(test_cond_signal_broadcast),
        cmocka_unit_test(test_cond_cancel),
        cmocka_unit_test(test_cond_plain_threads),
        cmocka_unit_test(test_cond_bounded_buffer),
    };
    return cmocka_run_group_tests_name("cond", tests, NULL, NULL);
}
