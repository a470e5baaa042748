/*
 * test_queue: weft_queue_* - every call and error code; FIFO, LIFO and
 * PRIORITY order (equal priorities in put order); bounded and unbounded
 * (growth, wrap-around, shrink); deadlines; hand-offs to waiting getters and
 * from waiting putters in arrival order; close; task_done / join;
 * cancellation exactness (nothing lost or doubled); try_put / try_get from
 * plain threads; MPMC across workers.
 */
#include "sync_test.h"

static void test_queue_no_runtime(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    void *it;
    errno = 0;
    assert_null(weft_queue_new(3, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(weft_queue_new(-1, 4));
    assert_int_equal(errno, EINVAL);

    /* NULL queue */
    assert_int_equal(weft_queue_put(NULL, NULL, WEFT_FOREVER), -EPERM);
    assert_int_equal(weft_queue_get(NULL, &it, WEFT_FOREVER), -EPERM);
    assert_int_equal(weft_queue_join(NULL), -EPERM);
    assert_int_equal(weft_queue_try_put(NULL, NULL), -EINVAL);
    assert_int_equal(weft_queue_try_put_prio(NULL, NULL, 1), -EINVAL);
    assert_int_equal(weft_queue_try_get(NULL, &it), -EINVAL);
    assert_int_equal(weft_queue_size(NULL), 0);
    assert_int_equal(weft_queue_capacity(NULL), 0);
    assert_false(weft_queue_closed(NULL));
    assert_int_equal(weft_queue_task_done_checked(NULL), -EINVAL);
    weft_queue_task_done(NULL);
    weft_queue_close(NULL);
    weft_queue_free(NULL);

    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 2);
    assert_non_null(q);
    assert_int_equal(weft_queue_capacity(q), 2);
    assert_int_equal(weft_queue_put(q, AS_PTR(1), WEFT_FOREVER), -EPERM);
    assert_int_equal(weft_queue_put_prio(q, AS_PTR(1), 0, 0), -EPERM);
    assert_int_equal(weft_queue_get(q, &it, 0), -EPERM);
    assert_int_equal(weft_queue_join(q), -EPERM);
    assert_int_equal(weft_queue_join_until(q, 0), -EPERM);
    assert_int_equal(weft_queue_size(q), 0);
    assert_int_equal(weft_queue_try_get(q, &it), -EAGAIN);
    assert_int_equal(weft_queue_try_put(q, AS_PTR(1)), 0);
    assert_int_equal(weft_queue_try_put(q, NULL), 0);  /* NULL items are items */
    assert_int_equal(weft_queue_try_put(q, AS_PTR(3)), -EAGAIN);
    assert_int_equal(weft_queue_size(q), 2);
    assert_int_equal(weft_queue_try_get(q, &it), 0);
    assert_int_equal(AS_LONG(it), 1);
    it = AS_PTR(99);
    assert_int_equal(weft_queue_try_get(q, &it), 0);
    assert_null(it);
    assert_int_equal(weft_queue_task_done_checked(q), 0);
    assert_int_equal(weft_queue_task_done_checked(q), 0);
    assert_int_equal(weft_queue_task_done_checked(q), -ERANGE);
    weft_queue_task_done(q);  /* extra: ignored */
    assert_int_equal(weft_queue_try_put(q, AS_PTR(4)), 0);
    assert_false(weft_queue_closed(q));
    weft_queue_close(q);
    weft_queue_close(q);  /* idempotent */
    assert_true(weft_queue_closed(q));
    assert_int_equal(weft_queue_try_put(q, AS_PTR(5)), -EPIPE);
    assert_int_equal(weft_queue_try_get(q, &it), 0);  /* drains */
    assert_int_equal(AS_LONG(it), 4);
    assert_int_equal(weft_queue_try_get(q, &it), -EPIPE);
    assert_int_equal(weft_queue_try_get(q, NULL), -EPIPE);
    weft_queue_free(q);

    /* free with items inside */
    q = weft_queue_new(WEFT_QUEUE_PRIORITY, 0);
    assert_int_equal(weft_queue_capacity(q), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(weft_queue_try_put_prio(q, AS_PTR(i), i % 7), 0);
    weft_queue_free(q);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */
/* Order                                                                */
/* ------------------------------------------------------------------ */

static void test_queue_order(void **state)
{
    (void)state;
    FD_GUARD_BEGIN;
    void *it;
    for (int bounded = 0; bounded < 2; bounded++) {
        size_t cap = bounded ? 1000 : 0;
        weft_queue *f = weft_queue_new(WEFT_QUEUE_FIFO, cap);
        weft_queue *l = weft_queue_new(WEFT_QUEUE_LIFO, cap);
        for (long i = 0; i < 1000; i++) {
            assert_int_equal(weft_queue_try_put(f, AS_PTR(i)), 0);
            assert_int_equal(weft_queue_try_put_prio(l, AS_PTR(i), 1000 - i), 0); /* prio ignored */
        }
        if (bounded) {
            assert_int_equal(weft_queue_try_put(f, NULL), -EAGAIN);
            assert_int_equal(weft_queue_try_put(l, NULL), -EAGAIN);
        }
        for (long i = 0; i < 1000; i++) {
            assert_int_equal(weft_queue_try_get(f, &it), 0);
            assert_int_equal(AS_LONG(it), i);
            assert_int_equal(weft_queue_try_get(l, &it), 0);
            assert_int_equal(AS_LONG(it), 999 - i);
        }
        assert_int_equal(weft_queue_try_get(f, &it), -EAGAIN);
        assert_int_equal(weft_queue_try_get(l, &it), -EAGAIN);

        /* FIFO wrap-around and growth while wrapped */
        long next_in = 0, next_out = 0;
        for (int round = 0; round < 200; round++) {
            for (int k = 0; k < 7; k++)
                assert_int_equal(weft_queue_try_put(f, AS_PTR(next_in++)), 0);
            for (int k = 0; k < 5; k++) {
                assert_int_equal(weft_queue_try_get(f, &it), 0);
                assert_int_equal(AS_LONG(it), next_out++);
            }
        }
        assert_int_equal(weft_queue_size(f), (size_t)(next_in - next_out));
        while (next_out < next_in) {
            assert_int_equal(weft_queue_try_get(f, &it), 0);
            assert_int_equal(AS_LONG(it), next_out++);
        }
        weft_queue_free(f);
        weft_queue_free(l);
    }

    /* PRIORITY: lowest first, equal priorities in put order */
    weft_queue *p = weft_queue_new(WEFT_QUEUE_PRIORITY, 0);
    uint64_t rng = 12345;
    enum { N = 5000 };
    for (long i = 0; i < N; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t prio = (int64_t)(rng >> 59) - 16;  /* -16..15: many equal */
        assert_int_equal(weft_queue_try_put_prio(p, AS_PTR(i * 64 + (prio + 16)), prio), 0);
    }
    assert_int_equal(weft_queue_try_put(p, AS_PTR(-1)), 0);  /* priority 0 */
    int64_t last_prio = INT64_MIN;
    long last_seq = -1;
    bool seen_zero_plain = false;
    for (long i = 0; i <= N; i++) {
        assert_int_equal(weft_queue_try_get(p, &it), 0);
        long v = AS_LONG(it);
        if (v == -1) {
            assert_int_equal(last_prio, 0);  /* after every earlier prio-0 item */
            seen_zero_plain = true;
            continue;
        }
        int64_t prio = (v & 63) - 16;
        long seq = v / 64;
        if (prio == 0 && seen_zero_plain)
            fail_msg("a prio-0 item put earlier came after the later weft_queue_try_put");
        assert_true(prio >= last_prio);
        if (prio == last_prio)
            assert_true(seq > last_seq);
        last_prio = prio;
        last_seq = seq;
    }
    assert_true(seen_zero_plain);
    assert_int_equal(weft_queue_try_get(p, &it), -EAGAIN);
    /* extreme priorities */
    assert_int_equal(weft_queue_try_put_prio(p, AS_PTR(1), INT64_MAX), 0);
    assert_int_equal(weft_queue_try_put_prio(p, AS_PTR(2), INT64_MIN), 0);
    assert_int_equal(weft_queue_try_get(p, &it), 0);
    assert_int_equal(AS_LONG(it), 2);
    assert_int_equal(weft_queue_try_get(p, &it), 0);
    assert_int_equal(AS_LONG(it), 1);
    weft_queue_free(p);

    /* unbounded growth and shrink back */
    weft_queue *g = weft_queue_new(WEFT_QUEUE_FIFO, 0);
    for (long i = 0; i < 200000; i++)
        assert_int_equal(weft_queue_try_put(g, AS_PTR(i)), 0);
    assert_int_equal(weft_queue_size(g), 200000);
    for (long i = 0; i < 200000; i++) {
        assert_int_equal(weft_queue_try_get(g, &it), 0);
        assert_int_equal(AS_LONG(it), i);
    }
    assert_int_equal(weft_queue_size(g), 0);
    weft_queue_free(g);
    FD_GUARD_END;
}

/* ------------------------------------------------------------------ */
/* Errors and deadlines in coroutines                                   */
/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    void *it;
    T_CHECK_EQ(weft_queue_put(NULL, NULL, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_queue_put_prio(NULL, NULL, 0, 0), -EINVAL);
    T_CHECK_EQ(weft_queue_get(NULL, &it, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_queue_join(NULL), -EINVAL);
    T_CHECK_EQ(weft_queue_join_until(NULL, 0), -EINVAL);

    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 1);
    /* past deadlines still let what can complete at once succeed */
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(1), 0), 0);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(2), 0), -ETIMEDOUT);
    T_CHECK_EQ(weft_queue_put_prio(q, AS_PTR(2), 5, weft_now() - 1), -ETIMEDOUT);
    T_CHECK_EQ(weft_queue_size(q), 1);
    int64_t dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(2), dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    T_CHECK_EQ(weft_queue_size(q), 1);
    T_CHECK_EQ(weft_queue_get(q, &it, 0), 0);
    T_CHECK_EQ(AS_LONG(it), 1);
    T_CHECK_EQ(weft_queue_get(q, &it, 0), -ETIMEDOUT);
    dl = weft_now() + 20 * WEFT_MS;
    T_CHECK_EQ(weft_queue_get(q, &it, dl), -ETIMEDOUT);
    T_CHECK(weft_now() >= dl);
    /* get with item NULL discards */
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(3), WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_queue_get(q, NULL, WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_queue_size(q), 0);

    /* join */
    T_CHECK_EQ(weft_queue_join_until(q, 0), -ETIMEDOUT);  /* 2 unfinished (1, 3) */
    weft_queue_task_done(q);
    T_CHECK_EQ(weft_queue_join_until(q, weft_now() + 10 * WEFT_MS), -ETIMEDOUT);
    weft_queue_task_done(q);
    T_CHECK_EQ(weft_queue_join(q), 0);
    T_CHECK_EQ(weft_queue_join_until(q, 0), 0);  /* past deadline, nothing to wait */
    T_CHECK_EQ(weft_queue_task_done_checked(q), -ERANGE);

    /* closed */
    weft_queue_close(q);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(4), WEFT_FOREVER), -EPIPE);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(4), 0), -EPIPE);
    T_CHECK_EQ(weft_queue_get(q, &it, WEFT_FOREVER), -EPIPE);
    T_CHECK_EQ(weft_queue_get(q, &it, 0), -EPIPE);
    T_CHECK_EQ(weft_queue_join(q), 0);
    weft_queue_free(q);
    return NULL;
}

static void test_queue_errors_deadlines(void **state)
{
    (void)state;
    run_weft(errors_main, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* Hand-offs and waiter order                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_queue *q;
    long item;
    int64_t prio;
    int64_t deadline;
} op_arg;

static void *getter(void *arg)
{
    op_arg *a = arg;
    void *it = AS_PTR(-777);
    int rc = weft_queue_get(a->q, &it, a->deadline ? a->deadline : WEFT_FOREVER);
    a->item = rc == 0 ? AS_LONG(it) : -777;
    return AS_PTR(rc);
}

static void *putter(void *arg)
{
    op_arg *a = arg;
    int rc = weft_queue_put_prio(a->q, AS_PTR(a->item), a->prio,
                                 a->deadline ? a->deadline : WEFT_FOREVER);
    return AS_PTR(rc);
}

static void *handoff_main(void *arg)
{
    int kind = (int)(intptr_t)arg;
    void *it;
    weft_queue *q = weft_queue_new(kind, 2);

    /* Waiting getters are served in arrival order, straight from put. */
    op_arg g[3];
    weft_task *tg[3];
    for (int i = 0; i < 3; i++) {
        g[i] = (op_arg){q, 0, 0, 0};
        tg[i] = spawn_ok(getter, &g[i]);
        waiting_for(tg[i]);
    }
    for (long i = 0; i < 3; i++)
        T_CHECK_EQ(weft_queue_put(q, AS_PTR(100 + i), WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_queue_size(q), 0);  /* handed over, never stored */
    for (int i = 0; i < 3; i++) {
        T_CHECK_EQ(join_long(tg[i], NULL), 0);
        T_CHECK_EQ(g[i].item, 100 + i);
    }

    /* Waiting putters move in, in arrival order, as room appears. */
    T_CHECK_EQ(weft_queue_put_prio(q, AS_PTR(1), 1, WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_queue_put_prio(q, AS_PTR(2), 2, WEFT_FOREVER), 0);
    op_arg p[3];
    weft_task *tp[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (op_arg){q, 10 + i, 10 + i, 0};
        tp[i] = spawn_ok(putter, &p[i]);
        waiting_for(tp[i]);
    }
    T_CHECK_EQ(weft_queue_try_put(q, AS_PTR(99)), -EAGAIN);  /* full; no barging */
    long got[5];
    for (int i = 0; i < 5; i++) {
        T_CHECK_EQ(weft_queue_get(q, &it, WEFT_FOREVER), 0);
        got[i] = AS_LONG(it);
        T_CHECK(weft_queue_size(q) <= 2);
    }
    for (int i = 0; i < 3; i++)
        T_CHECK_EQ(join_long(tp[i], NULL), 0);
    if (kind == WEFT_QUEUE_FIFO || kind == WEFT_QUEUE_PRIORITY) {
        /* FIFO: put order; PRIORITY: 1,2 then 10,11,12 (prios rise too) */
        long want[5] = {1, 2, 10, 11, 12};
        for (int i = 0; i < 5; i++)
            T_CHECK_EQ(got[i], want[i]);
    } else {
        /* LIFO: 2 out, 10 in; 10 out, 11 in; 11 out, 12 in; 12; 1 */
        long want[5] = {2, 10, 11, 12, 1};
        for (int i = 0; i < 5; i++)
            T_CHECK_EQ(got[i], want[i]);
    }
    T_CHECK_EQ(weft_queue_size(q), 0);
    weft_queue_free(q);
    return NULL;
}

static void test_queue_handoff(void **state)
{
    (void)state;
    for (int kind = WEFT_QUEUE_FIFO; kind <= WEFT_QUEUE_PRIORITY; kind++) {
        run_weft(handoff_main, AS_PTR(kind), 1);
        run_weft(handoff_main, AS_PTR(kind), 3);
    }
}

/* ------------------------------------------------------------------ */
/* Close                                                                */
/* ------------------------------------------------------------------ */

static void *close_main(void *arg)
{
    (void)arg;
    void *it;
    /* waiting getters wake with -EPIPE */
    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 1);
    op_arg g[2] = {{q, 0, 0, 0}, {q, 0, 0, 0}};
    weft_task *tg[2];
    for (int i = 0; i < 2; i++) {
        tg[i] = spawn_ok(getter, &g[i]);
        waiting_for(tg[i]);
    }
    weft_queue_close(q);
    for (int i = 0; i < 2; i++) {
        T_CHECK_EQ(join_long(tg[i], NULL), -EPIPE);
        T_CHECK_EQ(g[i].item, -777);
    }
    weft_queue_free(q);

    /* waiting putters wake with -EPIPE, their items not put; gets drain */
    q = weft_queue_new(WEFT_QUEUE_FIFO, 1);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(1), WEFT_FOREVER), 0);
    op_arg p[2] = {{q, 2, 0, 0}, {q, 3, 0, 0}};
    weft_task *tp[2];
    for (int i = 0; i < 2; i++) {
        tp[i] = spawn_ok(putter, &p[i]);
        waiting_for(tp[i]);
    }
    weft_queue_close(q);
    for (int i = 0; i < 2; i++)
        T_CHECK_EQ(join_long(tp[i], NULL), -EPIPE);
    T_CHECK_EQ(weft_queue_size(q), 1);
    T_CHECK_EQ(weft_queue_get(q, &it, WEFT_FOREVER), 0);
    T_CHECK_EQ(AS_LONG(it), 1);
    T_CHECK_EQ(weft_queue_get(q, &it, WEFT_FOREVER), -EPIPE);
    /* join is not woken by close: it waits for unfinished items */
    T_CHECK_EQ(weft_queue_join_until(q, weft_now() + 5 * WEFT_MS), -ETIMEDOUT);
    weft_queue_task_done(q);
    T_CHECK_EQ(weft_queue_join(q), 0);
    weft_queue_free(q);
    return NULL;
}

static void test_queue_close(void **state)
{
    (void)state;
    run_weft(close_main, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* task_done / join                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_queue *q;
    _Atomic long done;
} worker_arg;

static void *tdworker(void *arg)
{
    worker_arg *w = arg;
    void *it;
    while (weft_queue_get(w->q, &it, WEFT_FOREVER) == 0) {
        weft_yield();
        atomic_fetch_add(&w->done, AS_LONG(it));
        weft_queue_task_done(w->q);
    }
    return NULL;
}

static void *joiner(void *arg)
{
    return AS_PTR(weft_queue_join(arg));
}

static void *join_main(void *arg)
{
    (void)arg;
    worker_arg w = {weft_queue_new(WEFT_QUEUE_FIFO, 3), 0};
    weft_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn_ok(tdworker, &w);
    long sum = 0;
    for (long i = 1; i <= 500; i++) {
        T_CHECK_EQ(weft_queue_put(w.q, AS_PTR(i), WEFT_FOREVER), 0);
        sum += i;
    }
    T_CHECK_EQ(weft_queue_join(w.q), 0);
    T_CHECK_EQ(atomic_load(&w.done), sum);  /* every item processed */
    weft_queue_close(w.q);
    T_CHECK_EQ(weft_gather(t, 4, NULL), 0);
    T_CHECK_EQ(weft_queue_task_done_checked(w.q), -ERANGE);

    /* several joiners are all woken; a cancelled joiner returns -ECANCELED */
    weft_queue *q = weft_queue_new(WEFT_QUEUE_LIFO, 0);
    T_CHECK_EQ(weft_queue_try_put(q, NULL), 0);
    weft_task *j[3];
    for (int i = 0; i < 3; i++) {
        j[i] = spawn_ok(joiner, q);
        waiting_for(j[i]);
    }
    weft_cancel(j[2]);
    int code;
    T_CHECK_EQ(join_long(j[2], &code), -ECANCELED);
    T_CHECK_EQ(weft_queue_try_get(q, NULL), 0);
    T_CHECK_EQ(weft_queue_task_done_checked(q), 0);
    T_CHECK_EQ(join_long(j[0], NULL), 0);
    T_CHECK_EQ(join_long(j[1], NULL), 0);
    weft_queue_free(q);
    weft_queue_free(w.q);
    return NULL;
}

static void test_queue_join(void **state)
{
    (void)state;
    run_weft(join_main, NULL, 3);
}

/* ------------------------------------------------------------------ */
/* Cancellation exactness                                               */
/* ------------------------------------------------------------------ */

static void *cancel_main(void *arg)
{
    (void)arg;
    void *it;
    int code;
    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 1);

    /* A getter cancelled while waiting takes nothing. */
    op_arg g0 = {q, 0, 0, 0};
    weft_task *t = spawn_ok(getter, &g0);
    waiting_for(t);
    weft_cancel(t);
    T_CHECK_EQ(join_long(t, &code), -ECANCELED);
    T_CHECK_EQ(weft_queue_try_put(q, AS_PTR(5)), 0);
    T_CHECK_EQ(weft_queue_size(q), 1);  /* nobody took it */

    /* A putter cancelled while waiting put nothing. */
    op_arg p0 = {q, 6, 0, 0};
    t = spawn_ok(putter, &p0);
    waiting_for(t);
    weft_cancel(t);
    T_CHECK_EQ(join_long(t, &code), -ECANCELED);
    T_CHECK_EQ(weft_queue_try_get(q, &it), 0);
    T_CHECK_EQ(AS_LONG(it), 5);
    T_CHECK_EQ(weft_queue_try_get(q, &it), -EAGAIN);  /* 6 never went in */

    /* A getter handed an item, then cancelled before it runs: keeps it. */
    op_arg g1 = {q, 0, 0, 0}, g2 = {q, 0, 0, 0};
    weft_task *t1 = spawn_ok(getter, &g1);
    waiting_for(t1);
    weft_task *t2 = spawn_ok(getter, &g2);
    waiting_for(t2);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(7), WEFT_FOREVER), 0);
    weft_cancel(t1);
    T_CHECK_EQ(join_long(t1, &code), 0);
    T_CHECK_EQ(g1.item, 7);
    /* A getter cancelled, then handed an item before it runs: keeps it
     * (or, if it left first, the item goes to the next getter). */
    op_arg g3 = {q, 0, 0, 0};
    weft_task *t3 = spawn_ok(getter, &g3);
    waiting_for(t3);
    weft_cancel(t2);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(8), WEFT_FOREVER), 0);
    long r2 = join_long(t2, &code);
    if (r2 == 0) {
        T_CHECK_EQ(g2.item, 8);
        T_CHECK_EQ(weft_queue_put(q, AS_PTR(9), WEFT_FOREVER), 0);
        T_CHECK_EQ(join_long(t3, NULL), 0);
        T_CHECK_EQ(g3.item, 9);
    } else {
        T_CHECK_EQ(r2, -ECANCELED);
        T_CHECK_EQ(join_long(t3, NULL), 0);
        T_CHECK_EQ(g3.item, 8);
    }
    T_CHECK_EQ(weft_queue_size(q), 0);

    /* A putter whose item was moved in, then cancelled: 0, item in. */
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(10), WEFT_FOREVER), 0);
    op_arg p1 = {q, 11, 0, 0};
    t = spawn_ok(putter, &p1);
    waiting_for(t);
    T_CHECK_EQ(weft_queue_get(q, &it, WEFT_FOREVER), 0);
    T_CHECK_EQ(AS_LONG(it), 10);
    weft_cancel(t);
    T_CHECK_EQ(join_long(t, &code), 0);
    T_CHECK_EQ(weft_queue_try_get(q, &it), 0);
    T_CHECK_EQ(AS_LONG(it), 11);

    /* A cancelled caller: -ECANCELED at once even when it could complete;
     * nothing moved.  try_* do not look at cancellation. */
    T_CHECK_EQ(weft_queue_try_put(q, AS_PTR(12)), 0);
    weft_cancel(weft_self());
    T_CHECK_EQ(weft_queue_get(q, &it, 0), -ECANCELED);
    T_CHECK_EQ(weft_queue_put(q, AS_PTR(13), WEFT_FOREVER), -ECANCELED);
    T_CHECK_EQ(weft_queue_join(q), -ECANCELED);
    T_CHECK_EQ(weft_queue_size(q), 1);
    T_CHECK_EQ(weft_queue_try_get(q, &it), 0);
    T_CHECK_EQ(AS_LONG(it), 12);
    T_CHECK_EQ(weft_queue_try_put(q, AS_PTR(14)), 0);
    weft_queue_free(q);
    return NULL;
}

static void test_queue_cancel(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        run_weft(cancel_main, NULL, 1);
        run_weft(cancel_main, NULL, 2);
    }
}

/* ------------------------------------------------------------------ */
/* Plain threads                                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    weft_queue *q;
    int n;
} plain_arg;

static void plain_producer(void *arg)
{
    plain_arg *a = arg;
    for (long i = 1; i <= a->n;) {
        int rc = weft_queue_try_put(a->q, AS_PTR(i));
        if (rc == 0)
            i++;
        else if (rc == -EAGAIN)
            sched_yield();
        else
            atomic_fetch_add(&t_failures, 1);
    }
    if (weft_queue_put(a->q, NULL, 0) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_consumer(void *arg)
{
    plain_arg *a = arg;
    long want = 1;
    void *it;
    for (;;) {
        int rc = weft_queue_try_get(a->q, &it);
        if (rc == 0) {
            if (AS_LONG(it) != want++)
                atomic_fetch_add(&t_failures, 1);
        } else if (rc == -EAGAIN) {
            sched_yield();
        } else {
            if (rc != -EPIPE || want != a->n + 1)
                atomic_fetch_add(&t_failures, 1);
            break;
        }
    }
    if (weft_queue_get(a->q, &it, 0) != -EPERM)
        atomic_fetch_add(&t_failures, 1);
}

static void plain_close(void *arg)
{
    weft_queue_close(arg);
}

static void *plain_main_fn(void *arg)
{
    (void)arg;
    /* a plain thread's try_put hands the item to a waiting coroutine */
    plain_arg a = {weft_queue_new(WEFT_QUEUE_FIFO, 4), 1};
    op_arg g = {a.q, 0, 0, 0};
    weft_task *t = spawn_ok(getter, &g);
    waiting_for(t);
    plain_run(plain_producer, &a);
    T_CHECK_EQ(join_long(t, NULL), 0);
    T_CHECK_EQ(g.item, 1);
    T_CHECK_EQ(weft_queue_size(a.q), 0);
    weft_queue_free(a.q);

    void *it;
    a.n = 2000;
    /* concurrently: plain producer, coroutine consumer */
    a.q = weft_queue_new(WEFT_QUEUE_FIFO, 4);
    plain_thread pt = {.fn = plain_producer, .arg = &a};
    weft_event_init(&pt.done);
    pthread_create(&pt.th, NULL, plain_main, &pt);
    for (long i = 1; i <= a.n; i++) {
        T_CHECK_EQ(weft_queue_get(a.q, &it, WEFT_FOREVER), 0);
        T_CHECK_EQ(AS_LONG(it), i);
    }
    weft_event_wait(&pt.done, WEFT_FOREVER);
    pthread_join(pt.th, NULL);
    weft_event_destroy(&pt.done);
    weft_queue_free(a.q);

    /* coroutine producer, plain consumer; close from a plain thread */
    a.q = weft_queue_new(WEFT_QUEUE_FIFO, 4);
    pt = (plain_thread){.fn = plain_consumer, .arg = &a};
    weft_event_init(&pt.done);
    pthread_create(&pt.th, NULL, plain_main, &pt);
    for (long i = 1; i <= a.n; i++)
        T_CHECK_EQ(weft_queue_put(a.q, AS_PTR(i), WEFT_FOREVER), 0);
    plain_run(plain_close, a.q);
    weft_event_wait(&pt.done, WEFT_FOREVER);
    pthread_join(pt.th, NULL);
    weft_event_destroy(&pt.done);
    weft_queue_free(a.q);

    /* a plain thread closes: a waiting putter wakes */
    weft_queue *q = weft_queue_new(WEFT_QUEUE_LIFO, 1);
    T_CHECK_EQ(weft_queue_try_put(q, NULL), 0);
    op_arg p = {q, 1, 0, 0};
    t = spawn_ok(putter, &p);
    waiting_for(t);
    plain_run(plain_close, q);
    T_CHECK_EQ(join_long(t, NULL), -EPIPE);
    weft_queue_free(q);
    return NULL;
}

static void test_queue_plain_threads(void **state)
{
    (void)state;
    run_weft(plain_main_fn, NULL, 2);
}

/* ------------------------------------------------------------------ */
/* MPMC across workers: sum and count                                   */
/* ------------------------------------------------------------------ */

enum { PRODUCERS = 4, CONSUMERS = 4, PER_PRODUCER = 5000 };

typedef struct {
    weft_queue *q;
    _Atomic long sum, count;
    _Atomic int producers_left;
    int id;
} mpmc_t;

typedef struct {
    mpmc_t *m;
    long base;
} prod_arg;

static void *mpmc_producer(void *arg)
{
    prod_arg *p = arg;
    for (long i = 0; i < PER_PRODUCER; i++)
        if (weft_queue_put_prio(p->m->q, AS_PTR(p->base + i), i % 5, WEFT_FOREVER) != 0)
            return AS_PTR(-1);
    if (atomic_fetch_sub(&p->m->producers_left, 1) == 1)
        weft_queue_close(p->m->q);
    return NULL;
}

static void *mpmc_consumer(void *arg)
{
    mpmc_t *m = arg;
    void *it;
    int rc;
    while ((rc = weft_queue_get(m->q, &it, WEFT_FOREVER)) == 0) {
        atomic_fetch_add(&m->sum, AS_LONG(it));
        atomic_fetch_add(&m->count, 1);
    }
    return AS_PTR(rc == -EPIPE ? 0 : rc);
}

static void *mpmc_main(void *arg)
{
    int kind = (int)(intptr_t)arg;
    for (size_t cap = 0; cap <= 16; cap += 16) {
        mpmc_t m = {.q = weft_queue_new(kind, cap)};
        atomic_store(&m.producers_left, PRODUCERS);
        weft_task *t[PRODUCERS + CONSUMERS];
        prod_arg pa[PRODUCERS];
        for (int i = 0; i < CONSUMERS; i++)
            t[i] = spawn_ok(mpmc_consumer, &m);
        for (int i = 0; i < PRODUCERS; i++) {
            pa[i] = (prod_arg){&m, (long)i * PER_PRODUCER + 1};
            t[CONSUMERS + i] = spawn_ok(mpmc_producer, &pa[i]);
        }
        T_CHECK_EQ(weft_gather(t, PRODUCERS + CONSUMERS, NULL), 0);
        long n = (long)PRODUCERS * PER_PRODUCER;
        T_CHECK_EQ(atomic_load(&m.count), n);
        T_CHECK_EQ(atomic_load(&m.sum), n * (n + 1) / 2);
        weft_queue_free(m.q);
    }
    return NULL;
}

static void test_queue_mpmc(void **state)
{
    (void)state;
    for (int kind = WEFT_QUEUE_FIFO; kind <= WEFT_QUEUE_PRIORITY; kind++)
        run_weft(mpmc_main, AS_PTR(kind), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_no_runtime),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_queue_errors_deadlines),
        cmocka_unit_test(test_queue_handoff),
        cmocka_unit_test(test_queue_close),
        cmocka_unit_test(test_queue_join),
        cmocka_unit_test(test_queue_cancel),
        cmocka_unit_test(test_queue_plain_threads),
        cmocka_unit_test(test_queue_mpmc),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
