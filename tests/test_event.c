/*
 * test_event: weft_event_init / set / clear / is_set / wait / destroy - from
 * coroutines and plain threads, with and without a runtime, deadlines,
 * cancellation, -EINVAL and -EPERM.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Without a runtime                                                    */
/* ------------------------------------------------------------------ */

struct holder {
    char c;
    weft_event ev;   /* usable as a struct member */
};

static void test_event_no_runtime(void **state)
{
    (void)state;
    weft_event e;
    assert_int_equal(weft_event_init(NULL), -EINVAL);
    assert_int_equal(weft_event_set(NULL), -EINVAL);
    assert_int_equal(weft_event_clear(NULL), -EINVAL);
    assert_false(weft_event_is_set(NULL));
    weft_event_destroy(NULL);

    assert_int_equal(weft_event_init(&e), 0);
    assert_false(weft_event_is_set(&e));
    assert_int_equal(weft_event_wait(&e, WEFT_FOREVER), -EPERM);
    assert_int_equal(weft_event_wait(&e, 0), -EPERM);
    assert_int_equal(weft_event_set(&e), 0);
    assert_true(weft_event_is_set(&e));
    assert_int_equal(weft_event_set(&e), 0);  /* stays set */
    assert_true(weft_event_is_set(&e));
    assert_int_equal(weft_event_wait(&e, WEFT_FOREVER), -EPERM);
    assert_int_equal(weft_event_clear(&e), 0);
    assert_false(weft_event_is_set(&e));
    assert_int_equal(weft_event_clear(&e), 0);
    assert_false(weft_event_is_set(&e));
    assert_int_equal(weft_event_wait(NULL, WEFT_FOREVER), -EPERM);
    weft_event_destroy(&e);

    /* destroyed: -EINVAL */
    assert_int_equal(weft_event_set(&e), -EINVAL);
    assert_int_equal(weft_event_clear(&e), -EINVAL);
    assert_false(weft_event_is_set(&e));

    /* and it can be initialised again */
    assert_int_equal(weft_event_init(&e), 0);
    assert_int_equal(weft_event_set(&e), 0);
    assert_true(weft_event_is_set(&e));
    weft_event_destroy(&e);

    struct holder *h = malloc(sizeof *h);
    assert_int_equal(((uintptr_t)&h->ev) % _Alignof(weft_event), 0);
    assert_int_equal(weft_event_init(&h->ev), 0);
    assert_int_equal(weft_event_set(&h->ev), 0);
    weft_event_destroy(&h->ev);
    free(h);
}

/* Never initialised: whatever bytes the storage holds (stack garbage, a
 * freed object's pattern), every call says -EINVAL / false, as sync.h
 * promises, and never spins on what it takes for a lock.  The calls run on
 * a thread the test waits for with a time limit, so a spin fails the test
 * instead of hanging it. */
static const unsigned char garbage_patterns[] = {0xA5, 0xFF, 0x01, 0x80};

static void *garbage_calls(void *arg)
{
    int *bad = arg;
    for (size_t i = 0; i < sizeof garbage_patterns; i++) {
        weft_event e;
        memset(&e, garbage_patterns[i], sizeof e);
        if (weft_event_set(&e) != -EINVAL)
            (*bad)++;
        if (weft_event_clear(&e) != -EINVAL)
            (*bad)++;
        if (weft_event_is_set(&e))
            (*bad)++;
        if (weft_event_wait(&e, 0) != -EPERM)  /* plain thread: -EPERM first */
            (*bad)++;
        weft_event_destroy(&e);  /* a no-op on garbage */
        if (weft_event_set(&e) != -EINVAL)
            (*bad)++;
    }
    return NULL;
}

static void run_garbage_calls_timed(int *bad)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, garbage_calls, bad), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int rc = pthread_timedjoin_np(th, NULL, &ts);
    if (rc != 0)
        fail_msg("weft_event_* on a never-initialised event did not return (spins?)");
}

static void test_event_never_initialised(void **state)
{
    (void)state;
    int bad = 0;
    run_garbage_calls_timed(&bad);
    assert_int_equal(bad, 0);
}

static void *garbage_main(void *arg)
{
    int *bad = arg;
    for (size_t i = 0; i < sizeof garbage_patterns; i++) {
        weft_event e;
        memset(&e, garbage_patterns[i], sizeof e);
        T_CHECK_EQ(weft_event_wait(&e, WEFT_FOREVER), -EINVAL);
        T_CHECK_EQ(weft_event_wait(&e, 0), -EINVAL);
    }
    /* and from a plain thread while the runtime runs */
    T_CHECK_EQ(weft_to_thread(garbage_calls, bad, NULL), 0);
    return NULL;
}

static void test_event_never_initialised_runtime(void **state)
{
    (void)state;
    int bad = 0;
    assert_int_equal(t_run(garbage_main, &bad, NULL), 0);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------ */
/* In coroutines                                                        */
/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    weft_event e;
    T_CHECK_EQ(weft_event_wait(NULL, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_event_wait(NULL, 0), -EINVAL);
    T_CHECK_EQ(weft_event_init(&e), 0);
    weft_event_destroy(&e);
    T_CHECK_EQ(weft_event_wait(&e, WEFT_FOREVER), -EINVAL);
    return NULL;
}

static void test_event_errors(void **state)
{
    (void)state;
    assert_int_equal(t_run(errors_main, NULL, NULL), 0);
}

static void *set_wait_main(void *arg)
{
    (void)arg;
    weft_event e;
    weft_event_init(&e);
    weft_event_set(&e);
    int64_t t0 = weft_now();
    /* a set event lets every wait through at once, deadlines past or not */
    for (int i = 0; i < 100; i++)
        T_CHECK_EQ(weft_event_wait(&e, WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_event_wait(&e, 0), 0);
    T_CHECK_EQ(weft_event_wait(&e, weft_now() - WEFT_SEC), 0);
    T_CHECK(weft_now() - t0 < 5 * WEFT_SEC);
    T_CHECK(weft_event_is_set(&e));
    weft_event_destroy(&e);
    return NULL;
}

static void test_event_wait_when_set(void **state)
{
    (void)state;
    assert_int_equal(t_run(set_wait_main, NULL, NULL), 0);
}

/* set wakes every waiter */
enum { WAITERS = 200 };

typedef struct wake_ctx {
    weft_event ev;
    _Atomic int waiting;
    _Atomic int woke;
} wake_ctx;

static void *waiter(void *arg)
{
    wake_ctx *c = arg;
    atomic_fetch_add(&c->waiting, 1);
    int rc = weft_event_wait(&c->ev, WEFT_FOREVER);
    if (rc == 0)
        atomic_fetch_add(&c->woke, 1);
    return (void *)(intptr_t)rc;
}

static void *setter_thread(void *arg)
{
    wake_ctx *c = arg;
    T_CHECK(!weft_event_is_set(&c->ev));
    T_CHECK_EQ(weft_event_set(&c->ev), 0);
    T_CHECK(weft_event_is_set(&c->ev));
    return NULL;
}

static void *clearer_thread(void *arg)
{
    wake_ctx *c = arg;
    T_CHECK_EQ(weft_event_clear(&c->ev), 0);
    return NULL;
}

static void *wake_all_main(void *arg)
{
    bool from_thread = arg != NULL;
    wake_ctx c;
    memset(&c, 0, sizeof c);
    weft_event_init(&c.ev);
    weft_task **t = malloc(sizeof *t * WAITERS);
    for (int round = 0; round < 3; round++) {
        atomic_store(&c.waiting, 0);
        atomic_store(&c.woke, 0);
        for (int i = 0; i < WAITERS; i++)
            t[i] = weft_spawn(waiter, &c);
        while (atomic_load(&c.waiting) < WAITERS)
            weft_sleep(WEFT_MS);
        weft_sleep(2 * WEFT_MS);
        T_CHECK_EQ(atomic_load(&c.woke), 0);
        if (from_thread)
            t_in_thread(setter_thread, &c);
        else
            T_CHECK_EQ(weft_event_set(&c.ev), 0);
        T_CHECK_EQ(weft_gather(t, WAITERS, NULL), 0);
        T_CHECK_EQ(atomic_load(&c.woke), WAITERS);
        /* clear: waits block again */
        if (from_thread)
            t_in_thread(clearer_thread, &c);
        else
            T_CHECK_EQ(weft_event_clear(&c.ev), 0);
        T_CHECK(!weft_event_is_set(&c.ev));
        T_CHECK_EQ(weft_event_wait(&c.ev, weft_now() + 5 * WEFT_MS), -ETIMEDOUT);
    }
    free(t);
    weft_event_destroy(&c.ev);
    return NULL;
}

static void test_event_set_wakes_all(void **state)
{
    (void)state;
    assert_int_equal(t_run(wake_all_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(1, wake_all_main, NULL, NULL), 0);
}

static void test_event_set_from_plain_thread(void **state)
{
    (void)state;
    assert_int_equal(t_run(wake_all_main, (void *)1, NULL), 0);
    assert_int_equal(t_run_workers(1, wake_all_main, (void *)1, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Deadlines                                                            */
/* ------------------------------------------------------------------ */

typedef struct dl_ctx {
    weft_event *ev;
    int64_t timeout;   /* relative; -1 forever */
    int rc;
    int64_t waited;
    _Atomic int waiting;
} dl_ctx;

static void *dl_waiter(void *arg)
{
    dl_ctx *c = arg;
    int64_t t0 = weft_now();
    atomic_store(&c->waiting, 1);
    c->rc = weft_event_wait(c->ev, c->timeout < 0 ? WEFT_FOREVER : t0 + c->timeout);
    c->waited = weft_now() - t0;
    return NULL;
}

static void *deadline_main(void *arg)
{
    (void)arg;
    weft_event e;
    weft_event_init(&e);

    /* not set: -ETIMEDOUT at the deadline, not before */
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_event_wait(&e, t0 + 20 * WEFT_MS), -ETIMEDOUT);
    T_CHECK(weft_now() - t0 >= 20 * WEFT_MS);
    /* past deadlines: at once */
    t0 = weft_now();
    T_CHECK_EQ(weft_event_wait(&e, t0 - WEFT_MS), -ETIMEDOUT);
    T_CHECK_EQ(weft_event_wait(&e, 0), -ETIMEDOUT);
    T_CHECK(weft_now() - t0 < 5 * WEFT_SEC);

    /* short deadlines time out, the others are woken by set */
    enum { N = 20 };
    dl_ctx c[N];
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (dl_ctx){.ev = &e, .timeout = (i % 2) ? 5 * WEFT_MS : -1};
        if (i % 4 == 0)
            c[i].timeout = 60 * WEFT_SEC;
        t[i] = weft_spawn(dl_waiter, &c[i]);
    }
    for (int i = 0; i < N; i++)
        while (!atomic_load(&c[i].waiting))
            weft_sleep(WEFT_MS);
    weft_sleep(50 * WEFT_MS);
    weft_event_set(&e);
    T_CHECK_EQ(weft_gather(t, N, NULL), 0);
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            T_CHECK_EQ(c[i].rc, -ETIMEDOUT);
            T_CHECK(c[i].waited >= 5 * WEFT_MS);
        } else {
            T_CHECK_EQ(c[i].rc, 0);
            T_CHECK(c[i].waited >= 40 * WEFT_MS);
        }
    }

    /* timed-out waiters leave the queue: many rounds of time out, set, clear */
    weft_event_clear(&e);
    for (int i = 0; i < 30; i++) {
        T_CHECK_EQ(weft_event_wait(&e, weft_now() + 100 * WEFT_US), -ETIMEDOUT);
        weft_event_set(&e);
        weft_event_clear(&e);
    }
    weft_event_destroy(&e);
    return NULL;
}

static void test_event_deadlines(void **state)
{
    (void)state;
    assert_int_equal(t_run(deadline_main, NULL, NULL), 0);
}

/* set racing with deadlines: each waiter gets 0 or -ETIMEDOUT, none hangs */
typedef struct race_ctx {
    weft_event ev;
    _Atomic int ok, timedout, other;
} race_ctx;

static void *race_waiter(void *arg)
{
    race_ctx *c = arg;
    int rc = weft_event_wait(&c->ev, weft_now() + (int64_t)(weft_task_id(weft_self()) % 7) * 100 * WEFT_US);
    if (rc == 0)
        atomic_fetch_add(&c->ok, 1);
    else if (rc == -ETIMEDOUT)
        atomic_fetch_add(&c->timedout, 1);
    else
        atomic_fetch_add(&c->other, 1);
    return NULL;
}

static void *race_main(void *arg)
{
    (void)arg;
    race_ctx c;
    memset(&c, 0, sizeof c);
    weft_event_init(&c.ev);
    enum { N = 64 };
    weft_task *t[N];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++)
            t[i] = weft_spawn(race_waiter, &c);
        weft_sleep(300 * WEFT_US);
        weft_event_set(&c.ev);
        T_CHECK_EQ(weft_gather(t, N, NULL), 0);
        weft_event_clear(&c.ev);
    }
    T_CHECK_EQ(atomic_load(&c.ok) + atomic_load(&c.timedout), 20 * N);
    T_CHECK_EQ(atomic_load(&c.other), 0);
    weft_event_destroy(&c.ev);
    return NULL;
}

static void test_event_set_races_deadline(void **state)
{
    (void)state;
    assert_int_equal(t_run_workers(2, race_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    weft_event e;
    weft_event_init(&e);
    dl_ctx a = {.ev = &e, .timeout = -1}, b = {.ev = &e, .timeout = -1},
           d = {.ev = &e, .timeout = 60 * WEFT_SEC};
    weft_task *ta = weft_spawn(dl_waiter, &a);
    weft_task *tb = weft_spawn(dl_waiter, &b);
    weft_task *td = weft_spawn(dl_waiter, &d);
    while (!atomic_load(&a.waiting) || !atomic_load(&b.waiting) || !atomic_load(&d.waiting))
        weft_sleep(WEFT_MS);
    weft_sleep(2 * WEFT_MS);
    /* cancelling one waiter wakes it alone */
    T_CHECK_EQ(weft_cancel(ta), 0);
    T_CHECK_EQ(weft_cancel(td), 0);
    T_CHECK_EQ(weft_join(ta, NULL), -ECANCELED);
    T_CHECK_EQ(weft_join(td, NULL), -ECANCELED);
    T_CHECK_EQ(a.rc, -ECANCELED);
    T_CHECK_EQ(d.rc, -ECANCELED);
    T_CHECK(d.waited < 30 * WEFT_SEC);
    weft_sleep(2 * WEFT_MS);
    T_CHECK(!weft_task_done(tb));
    weft_event_set(&e);
    T_CHECK_EQ(weft_join(tb, NULL), 0);
    T_CHECK_EQ(b.rc, 0);

    /* sticky: a cancelled task's wait returns -ECANCELED even when set */
    dl_ctx s = {.ev = &e, .timeout = -1};
    weft_task *ts = weft_spawn(dl_waiter, &s);
    weft_cancel(ts);
    T_CHECK_EQ(weft_join(ts, NULL), -ECANCELED);
    T_CHECK_EQ(s.rc, -ECANCELED);
    weft_event_destroy(&e);
    return NULL;
}

static void test_event_cancel(void **state)
{
    (void)state;
    assert_int_equal(t_run(cancel_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(1, cancel_main, NULL, NULL), 0);
}

/* Waiting from a plain thread while a runtime runs: -EPERM. */
static void *plain_wait(void *arg)
{
    weft_event *e = arg;
    T_CHECK_EQ(weft_event_wait(e, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_event_wait(e, 0), -EPERM);
    return NULL;
}

static void *plain_main(void *arg)
{
    (void)arg;
    weft_event e;
    weft_event_init(&e);
    t_in_thread(plain_wait, &e);
    weft_event_set(&e);
    t_in_thread(plain_wait, &e);
    weft_event_destroy(&e);
    return NULL;
}

static void test_event_wait_plain_thread(void **state)
{
    (void)state;
    assert_int_equal(t_run(plain_main, NULL, NULL), 0);
}

/* Ping-pong between two tasks through two events. */
typedef struct pp_ctx {
    weft_event ping, pong;
    int rounds;
    int bad;
} pp_ctx;

static void *ponger(void *arg)
{
    pp_ctx *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        if (weft_event_wait(&c->ping, WEFT_FOREVER) != 0)
            c->bad++;
        weft_event_clear(&c->ping);
        weft_event_set(&c->pong);
    }
    return NULL;
}

static void *pingpong_main(void *arg)
{
    pp_ctx *c = arg;
    weft_event_init(&c->ping);
    weft_event_init(&c->pong);
    weft_task *t = weft_spawn(ponger, c);
    for (int i = 0; i < c->rounds; i++) {
        weft_event_set(&c->ping);
        if (weft_event_wait(&c->pong, WEFT_FOREVER) != 0)
            c->bad++;
        weft_event_clear(&c->pong);
    }
    T_CHECK_EQ(weft_join(t, NULL), 0);
    weft_event_destroy(&c->ping);
    weft_event_destroy(&c->pong);
    return NULL;
}

static void test_event_pingpong(void **state)
{
    (void)state;
    pp_ctx c;
    memset(&c, 0, sizeof c);
    c.rounds = 2000;
    assert_int_equal(t_run_workers(2, pingpong_main, &c, NULL), 0);
    assert_int_equal(c.bad, 0);
}

int main(void)
{
    t_warm_up();
    const struct CMUnitTest tests[] = {
        T_TEST(test_event_no_runtime),
        T_TEST(test_event_errors),
        T_TEST(test_event_never_initialised),
        T_TEST(test_event_never_initialised_runtime),
        T_TEST(test_event_wait_when_set),
        T_TEST(test_event_set_wakes_all),
        T_TEST(test_event_set_from_plain_thread),
        T_TEST(test_event_deadlines),
        T_TEST(test_event_set_races_deadline),
        T_TEST(test_event_cancel),
        T_TEST(test_event_wait_plain_thread),
        T_TEST(test_event_pingpong),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
