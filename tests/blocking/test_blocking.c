/*
 * test_blocking: the blocking pool - weft_spawn_blocking and weft_to_thread.
 *
 *  - error codes: -EPERM / EPERM outside a runtime and from a plain thread,
 *    -EINVAL / EINVAL for a NULL function;
 *  - values, the caller's worker going on meanwhile, pool threads never
 *    running coroutine code, spawning from a plain thread;
 *  - cancellation: a cancelled caller (fn not started; fn running: the join
 *    waits for it and stores its result), a blocking task cancelled while in
 *    line (dropped at once, fn never runs), while running, after finishing;
 *  - the pool: FIFO beyond the limit, never more threads than
 *    blocking_threads / WEFT_BLOCKING_THREADS, threads started on demand,
 *    idle threads exiting after 10 s;
 *  - composition: weft_gather and weft_wait_for of blocking tasks;
 *  - shutdown: weft_run waits for a running fn, drops the queued ones.
 *
 * Every test runs its runtime between two leak snapshots (t_run*): no
 * descriptor may be left behind.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "blk_test.h"

/* ------------------------------------------------------------------ */
/* Functions that run on pool threads                                  */
/* ------------------------------------------------------------------ */

static void *ret_arg(void *arg)
{
    return arg;
}

static void *double_it(void *arg)
{
    return (void *)((intptr_t)arg * 2);
}

/* Sleeps arg milliseconds (OS sleep), returns arg. */
static void *os_sleep_ret(void *arg)
{
    t_nap_ms((long)(intptr_t)arg);
    return arg;
}

/* A blocking function with observable progress: started, then waits for its
 * gate (or sleeps ms when there is no gate), records the finish time, and
 * returns value. */
typedef struct probe {
    _Atomic int started;
    _Atomic int finished;
    _Atomic int runs;
    _Atomic int gate;          /* used when use_gate */
    bool use_gate;
    long ms;
    intptr_t value;
    _Atomic int64_t t_finished;
} probe;

static void *probe_fn(void *arg)
{
    probe *p = arg;
    intptr_t v = p->value;  /* p may be gone once finished is set */
    atomic_fetch_add(&p->runs, 1);
    atomic_store(&p->started, 1);
    if (p->use_gate)
        blk_os_wait_flag(&p->gate);
    else if (p->ms)
        t_nap_ms(p->ms);
    atomic_store(&p->t_finished, weft_now());
    atomic_store(&p->finished, 1);
    return (void *)v;
}

static weft_config cfg_threads(unsigned n)
{
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.blocking_threads = n;
    return c;
}

/* ------------------------------------------------------------------ */
/* Error codes                                                         */
/* ------------------------------------------------------------------ */

static void *plain_thread_calls(void *arg)
{
    int *out = arg;
    void *res = (void *)1;
    out[0] = weft_to_thread(ret_arg, NULL, &res);
    out[1] = res == (void *)1;  /* untouched */
    out[2] = weft_to_thread(NULL, NULL, NULL);
    errno = 0;
    weft_task *t = weft_spawn_blocking(NULL, NULL);
    out[3] = t == NULL && errno == EINVAL;
    return NULL;
}

static void *eperm_main(void *arg)
{
    (void)arg;
    int out[4] = {0};
    t_in_thread(plain_thread_calls, out);
    T_CHECK_EQ(out[0], -EPERM);
    T_CHECK(out[1]);
    T_CHECK_EQ(out[2], -EPERM);  /* EPERM is looked at before the function */
    T_CHECK(out[3]);
    return NULL;
}

static void test_eperm(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    /* No runtime at all. */
    void *res = (void *)1;
    assert_int_equal(weft_to_thread(ret_arg, NULL, &res), -EPERM);
    assert_ptr_equal(res, (void *)1);
    assert_int_equal(weft_to_thread(NULL, NULL, NULL), -EPERM);
    errno = 0;
    assert_null(weft_spawn_blocking(ret_arg, NULL));
    assert_int_equal(errno, EPERM);
    /* A plain thread while a runtime runs. */
    assert_int_equal(t_run(eperm_main, NULL, NULL), 0);
    /* And no runtime again afterwards. */
    errno = 0;
    assert_null(weft_spawn_blocking(ret_arg, NULL));
    assert_int_equal(errno, EPERM);
}

static void *einval_main(void *arg)
{
    (void)arg;
    void *res = (void *)1;
    T_CHECK_EQ(weft_to_thread(NULL, NULL, &res), -EINVAL);
    T_CHECK(res == (void *)1);
    errno = 0;
    T_CHECK(weft_spawn_blocking(NULL, NULL) == NULL);
    T_CHECK_EQ(errno, EINVAL);
    /* join/gather/wait_for with NULL handles: -EINVAL (as for any task). */
    T_CHECK_EQ(weft_join(NULL, NULL), -EINVAL);
    T_CHECK_EQ(weft_wait_for(NULL, WEFT_FOREVER, NULL), -EINVAL);
    T_CHECK_EQ(weft_cancel(NULL), -EINVAL);
    return NULL;
}

static void test_einval(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(einval_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Values, worker not held, pool threads are plain threads             */
/* ------------------------------------------------------------------ */

static void *basic_main(void *arg)
{
    (void)arg;
    void *res = NULL;
    T_CHECK_EQ(weft_to_thread(double_it, (void *)21, &res), 0);
    T_CHECK_EQ((intptr_t)res, 42);
    T_CHECK_EQ(weft_to_thread(double_it, (void *)5, NULL), 0);  /* result may be NULL */

    weft_task *t = weft_spawn_blocking(double_it, (void *)100);
    T_CHECK(t != NULL);
    T_CHECK(weft_task_name(t) == NULL);
    T_CHECK(weft_task_id(t) != 0);
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK_EQ((intptr_t)res, 200);

    /* Done and cancel on a finished, unjoined blocking task. */
    t = weft_spawn_blocking(ret_arg, (void *)7);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_cancel(t), -ESRCH);
    T_CHECK_EQ(weft_join(t, &res), 0);  /* -ESRCH cancelled nothing */
    T_CHECK_EQ((intptr_t)res, 7);

    /* Detached: runs on, frees itself. */
    probe p = {.ms = 5, .value = 1};
    weft_detach(weft_spawn_blocking(probe_fn, &p));
    T_CHECK(blk_co_wait_flag(&p.finished, 5000));
    return NULL;
}

static void test_basic(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(basic_main, NULL, NULL), 0);
}

/* What a pool thread sees: no coroutine, no worker; suspension points
 * return -EPERM; it may spawn (a plain thread while the runtime runs). */
typedef struct inside {
    weft_task *self;
    int worker;
    int sleep_rc, to_thread_rc, yield_rc;
    bool cancelled;
    weft_task *spawned;
    pid_t tid;
} inside;

static void *look_around(void *arg)
{
    inside *in = arg;
    in->self = weft_self();
    in->worker = weft_worker_id();
    in->sleep_rc = weft_sleep(WEFT_MS);
    in->yield_rc = weft_yield();
    in->to_thread_rc = weft_to_thread(ret_arg, NULL, NULL);
    in->cancelled = weft_cancelled();
    in->spawned = weft_spawn(double_it, (void *)8);
    in->tid = blk_gettid();
    return NULL;
}

static void *plain_main(void *arg)
{
    (void)arg;
    inside in = {.worker = 99};
    T_CHECK_EQ(weft_to_thread(look_around, &in, NULL), 0);
    T_CHECK(in.self == NULL);
    T_CHECK_EQ(in.worker, -1);
    T_CHECK_EQ(in.sleep_rc, -EPERM);
    T_CHECK_EQ(in.yield_rc, -EPERM);
    T_CHECK_EQ(in.to_thread_rc, -EPERM);
    T_CHECK(!in.cancelled);
    T_CHECK(in.tid != blk_gettid());
    T_CHECK(in.spawned != NULL);
    void *res = NULL;
    if (in.spawned) {
        T_CHECK_EQ(weft_join(in.spawned, &res), 0);
        T_CHECK_EQ((intptr_t)res, 16);
    }
    return NULL;
}

static void test_pool_thread_is_plain(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(plain_main, NULL, NULL), 0);
}

/* With one worker, a coroutine keeps ticking while another waits 150 ms in
 * weft_to_thread: the worker is not held. */
static _Atomic int ticks;
static _Atomic int stop_ticking;

static void *ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_ticking)) {
        if (weft_sleep(WEFT_MS) != 0)
            break;
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static void *not_held_main(void *arg)
{
    (void)arg;
    atomic_store(&ticks, 0);
    atomic_store(&stop_ticking, 0);
    weft_task *tk = weft_spawn(ticker, NULL);
    weft_yield();
    int64_t t0 = weft_now();
    void *res = NULL;
    T_CHECK_EQ(weft_to_thread(os_sleep_ret, (void *)150, &res), 0);
    int64_t el = weft_now() - t0;
    int n = atomic_load(&ticks);
    atomic_store(&stop_ticking, 1);
    weft_join(tk, NULL);
    T_CHECK_EQ((intptr_t)res, 150);
    T_CHECK(el >= 150 * WEFT_MS);
    /* ~150 ticks of 1 ms; a held worker would give 0. */
    if (n < 20)
        fprintf(stderr, "only %d ticks in %lld ms\n", n, (long long)(el / WEFT_MS));
    T_CHECK(n >= 20);
    return NULL;
}

static void test_worker_not_held(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run_workers(1, not_held_main, NULL, NULL), 0);
}

/* Many coroutines, many calls. */
#define MANY_CO 100
#define MANY_CALLS 20

static _Atomic long many_sum;

static void *many_caller(void *arg)
{
    intptr_t id = (intptr_t)arg;
    for (int i = 0; i < MANY_CALLS; i++) {
        void *res = NULL;
        int rc = weft_to_thread(double_it, (void *)(id * 1000 + i), &res);
        T_CHECK_EQ(rc, 0);
        T_CHECK_EQ((intptr_t)res, (id * 1000 + i) * 2);
        atomic_fetch_add(&many_sum, (long)(intptr_t)res);
    }
    return NULL;
}

static void *many_main(void *arg)
{
    (void)arg;
    atomic_store(&many_sum, 0);
    weft_task *t[MANY_CO];
    for (intptr_t i = 0; i < MANY_CO; i++)
        t[i] = weft_spawn(many_caller, (void *)i);
    T_CHECK_EQ(weft_gather(t, MANY_CO, NULL), 0);
    long want = 0;
    for (long id = 0; id < MANY_CO; id++)
        for (long i = 0; i < MANY_CALLS; i++)
            want += (id * 1000 + i) * 2;
    T_CHECK_EQ(atomic_load(&many_sum), want);
    return NULL;
}

static void test_many_callers(void **state)
{
    (void)state;
    BLK_BEGIN(60);
    weft_config c = cfg_threads(8);
    assert_int_equal(t_run_config(&c, many_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Plain threads                                                       */
/* ------------------------------------------------------------------ */

static void *plain_spawner(void *arg)
{
    probe *p = arg;
    return weft_spawn_blocking(probe_fn, p);
}

static void *from_plain_main(void *arg)
{
    (void)arg;
    probe p = {.ms = 10, .value = 0x51};
    weft_task *t = t_in_thread(plain_spawner, &p);
    T_CHECK(t != NULL);
    void *res = NULL;
    if (t) {
        T_CHECK_EQ(weft_join(t, &res), 0);
        T_CHECK_EQ((intptr_t)res, 0x51);
    }
    T_CHECK_EQ(atomic_load(&p.runs), 1);
    return NULL;
}

static void test_spawn_blocking_plain_thread(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(from_plain_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                        */
/* ------------------------------------------------------------------ */

/* A caller cancelled before it calls weft_to_thread: fn never starts. */
static void *self_cancelled_caller(void *arg)
{
    probe *p = arg;
    weft_cancel(weft_self());
    void *res = (void *)1;
    int rc = weft_to_thread(probe_fn, p, &res);
    T_CHECK_EQ(rc, -ECANCELED);
    return (void *)(intptr_t)rc;
}

static void *cancel_before_main(void *arg)
{
    (void)arg;
    probe p = {.value = 3};
    weft_task *c = weft_spawn(self_cancelled_caller, &p);
    void *res = NULL;
    T_CHECK_EQ(weft_join(c, &res), -ECANCELED);
    T_CHECK_EQ((intptr_t)res, -ECANCELED);
    /* Give a (wrongly) started fn every chance to show up. */
    weft_sleep(20 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&p.runs), 0);
    return NULL;
}

static void test_cancel_caller_before(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(cancel_before_main, NULL, NULL), 0);
}

/* A caller cancelled while fn runs: weft_to_thread waits for fn, stores its
 * result, returns -ECANCELED. */
typedef struct caller_rec {
    probe *p;
    int rc;
    void *res;
    int finished_at_return;
    int64_t t_return;
} caller_rec;

static void *to_thread_caller(void *arg)
{
    caller_rec *c = arg;
    c->res = (void *)1;
    c->rc = weft_to_thread(probe_fn, c->p, &c->res);
    c->finished_at_return = atomic_load(&c->p->finished);
    c->t_return = weft_now();
    return NULL;
}

static void *cancel_running_main(void *arg)
{
    (void)arg;
    probe p = {.ms = 150, .value = 0x77};
    caller_rec c = {.p = &p};
    weft_task *t = weft_spawn(to_thread_caller, &c);
    T_CHECK(blk_co_wait_flag(&p.started, 5000));
    int64_t t_cancel = weft_now();
    T_CHECK_EQ(weft_cancel(t), 0);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    T_CHECK_EQ(c.rc, -ECANCELED);
    T_CHECK_EQ(c.finished_at_return, 1);
    T_CHECK_EQ((intptr_t)c.res, 0x77);
    T_CHECK(c.t_return >= atomic_load(&p.t_finished));
    T_CHECK(c.t_return > t_cancel);
    T_CHECK_EQ(atomic_load(&p.runs), 1);
    return NULL;
}

static void test_cancel_caller_running(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(cancel_running_main, NULL, NULL), 0);
}

/* One pool thread, occupied; a caller waiting in line is cancelled: its
 * weft_to_thread returns -ECANCELED while the occupant still runs, and its
 * fn never runs. */
static void *cancel_queued_caller_main(void *arg)
{
    (void)arg;
    probe occ = {.use_gate = true, .value = 1};
    weft_task *o = weft_spawn_blocking(probe_fn, &occ);
    T_CHECK(blk_co_wait_flag(&occ.started, 5000));

    probe q = {.value = 2};
    caller_rec c = {.p = &q};
    weft_task *t = weft_spawn(to_thread_caller, &c);
    weft_sleep(20 * WEFT_MS);  /* the caller is in line by now */
    T_CHECK_EQ(weft_cancel(t), 0);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    T_CHECK_EQ(c.rc, -ECANCELED);
    T_CHECK(c.res == NULL || c.res == (void *)1);
    T_CHECK_EQ(atomic_load(&occ.finished), 0);  /* returned at once */

    atomic_store(&occ.gate, 1);
    T_CHECK_EQ(weft_join(o, NULL), 0);
    weft_sleep(20 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&q.runs), 0);
    return NULL;
}

static void test_cancel_caller_queued(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, cancel_queued_caller_main, NULL, NULL), 0);
}

/* weft_cancel of a blocking task still in line: dropped; its join returns
 * -ECANCELED at once (the occupant still runs) and its fn never runs. */
static void *cancel_queued_task_main(void *arg)
{
    (void)arg;
    probe occ = {.use_gate = true, .value = 1};
    weft_task *o = weft_spawn_blocking(probe_fn, &occ);
    T_CHECK(blk_co_wait_flag(&occ.started, 5000));

    probe q = {.value = 2};
    weft_task *t = weft_spawn_blocking(probe_fn, &q);
    T_CHECK(!weft_task_done(t));
    T_CHECK_EQ(weft_cancel(t), 0);
    void *res = (void *)1;
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_join(t, &res), -ECANCELED);
    T_CHECK(weft_now() - t0 < 100 * WEFT_MS * T_SLACK);
    T_CHECK(res == NULL);
    T_CHECK_EQ(atomic_load(&occ.finished), 0);

    atomic_store(&occ.gate, 1);
    T_CHECK_EQ(weft_join(o, &res), 0);
    T_CHECK_EQ((intptr_t)res, 1);
    weft_sleep(20 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&q.runs), 0);
    return NULL;
}

static void test_cancel_queued_task(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, cancel_queued_task_main, NULL, NULL), 0);
}

/* weft_cancel of a running blocking task: fn runs to its end; the join
 * waits for it, stores its result, returns -ECANCELED. */
static void *cancel_running_task_main(void *arg)
{
    (void)arg;
    probe p = {.ms = 100, .value = 0x99};
    weft_task *t = weft_spawn_blocking(probe_fn, &p);
    T_CHECK(blk_co_wait_flag(&p.started, 5000));
    T_CHECK_EQ(weft_cancel(t), 0);
    T_CHECK_EQ(weft_cancel(t), 0);  /* idempotent */
    void *res = NULL;
    T_CHECK_EQ(weft_join(t, &res), -ECANCELED);
    T_CHECK_EQ(atomic_load(&p.finished), 1);
    T_CHECK_EQ((intptr_t)res, 0x99);
    T_CHECK_EQ(atomic_load(&p.runs), 1);
    return NULL;
}

static void test_cancel_running_task(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(cancel_running_task_main, NULL, NULL), 0);
}

/* A joiner of a blocking task, cancelled: the join cancels the task (which
 * cannot stop a running fn), waits for it, returns -ECANCELED. */
typedef struct joiner_rec {
    weft_task *t;
    int rc;
    void *res;
    probe *p;
    int finished_at_return;
} joiner_rec;

static void *joiner(void *arg)
{
    joiner_rec *j = arg;
    j->rc = weft_join(j->t, &j->res);
    j->finished_at_return = atomic_load(&j->p->finished);
    return NULL;
}

static void *cancel_joiner_main(void *arg)
{
    (void)arg;
    probe p = {.ms = 100, .value = 0x55};
    joiner_rec j = {.p = &p};
    j.t = weft_spawn_blocking(probe_fn, &p);
    weft_task *jt = weft_spawn(joiner, &j);
    T_CHECK(blk_co_wait_flag(&p.started, 5000));
    weft_sleep(5 * WEFT_MS);
    weft_cancel(jt);
    weft_join(jt, NULL);
    T_CHECK_EQ(j.rc, -ECANCELED);
    T_CHECK_EQ(j.finished_at_return, 1);
    T_CHECK_EQ((intptr_t)j.res, 0x55);
    return NULL;
}

static void test_cancel_joiner(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(cancel_joiner_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* The pool: FIFO, limits, on-demand threads, idle exit                 */
/* ------------------------------------------------------------------ */

#define FIFO_N 24
static _Atomic int fifo_pos;
static int fifo_order[FIFO_N];

static void *fifo_fn(void *arg)
{
    int i = atomic_fetch_add(&fifo_pos, 1);
    if (i < FIFO_N)
        fifo_order[i] = (int)(intptr_t)arg;
    return arg;
}

static void *fifo_main(void *arg)
{
    (void)arg;
    atomic_store(&fifo_pos, 0);
    memset(fifo_order, -1, sizeof fifo_order);
    probe occ = {.use_gate = true};
    weft_task *o = weft_spawn_blocking(probe_fn, &occ);
    T_CHECK(blk_co_wait_flag(&occ.started, 5000));
    weft_task *t[FIFO_N];
    for (intptr_t i = 0; i < FIFO_N; i++)
        t[i] = weft_spawn_blocking(fifo_fn, (void *)i);
    weft_sleep(10 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&fifo_pos), 0);  /* all in line behind the occupant */
    atomic_store(&occ.gate, 1);
    void *res[FIFO_N];
    T_CHECK_EQ(weft_gather(t, FIFO_N, res), 0);
    weft_join(o, NULL);
    T_CHECK_EQ(atomic_load(&fifo_pos), FIFO_N);
    for (int i = 0; i < FIFO_N; i++) {
        T_CHECK_EQ(fifo_order[i], i);
        T_CHECK_EQ((intptr_t)res[i], i);
    }
    return NULL;
}

static void test_fifo_beyond_limit(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, fifo_main, NULL, NULL), 0);
}

/* Never more than the limit in flight, the limit reached, and never more
 * distinct threads than the limit. */
#define LIMIT_CALLS 48
static blk_meter meter;
static _Atomic int ntids;
static _Atomic pid_t tids[LIMIT_CALLS];

static void *metered_fn(void *arg)
{
    blk_meter_enter(&meter);
    pid_t me = blk_gettid();
    int n = atomic_load(&ntids);
    bool seen = false;
    for (int i = 0; i < n && i < LIMIT_CALLS; i++)
        seen |= tids[i] == me;
    if (!seen) {
        int k = atomic_fetch_add(&ntids, 1);
        if (k < LIMIT_CALLS)
            tids[k] = me;
    }
    t_nap_ms((long)(intptr_t)arg);
    blk_meter_leave(&meter);
    return NULL;
}

typedef struct limit_arg {
    int calls;
    long ms;
    int expect_max;
} limit_arg;

static void *limit_main(void *arg)
{
    limit_arg *la = arg;
    atomic_store(&meter.cur, 0);
    atomic_store(&meter.max, 0);
    atomic_store(&ntids, 0);
    weft_task *t[LIMIT_CALLS];
    int64_t t0 = weft_now();
    for (int i = 0; i < la->calls; i++)
        t[i] = weft_spawn_blocking(metered_fn, (void *)(intptr_t)la->ms);
    T_CHECK_EQ(weft_gather(t, (size_t)la->calls, NULL), 0);
    int64_t el = weft_now() - t0;
    int mx = atomic_load(&meter.max);
    if (mx != la->expect_max)
        fprintf(stderr, "max in flight %d, expected %d\n", mx, la->expect_max);
    T_CHECK(mx <= la->expect_max);
    T_CHECK(mx == la->expect_max);
    /* Pool threads of a thread that fn ran on: never more than the limit
     * (ntids counts distinct thread ids; with waiting in line, fewer
     * threads serve more calls). */
    T_CHECK(atomic_load(&ntids) <= la->expect_max);
    /* Waves: calls / limit of ms each, at least. */
    int waves = (la->calls + la->expect_max - 1) / la->expect_max;
    T_CHECK(el >= (int64_t)waves * la->ms * WEFT_MS);
    return NULL;
}

static void test_limit_config(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    limit_arg la = {.calls = 40, .ms = 20, .expect_max = 4};
    weft_config c = cfg_threads(4);
    assert_int_equal(t_run_config(&c, limit_main, &la, NULL), 0);
}

static void test_limit_env(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    limit_arg la = {.calls = 12, .ms = 20, .expect_max = 3};
    setenv("WEFT_BLOCKING_THREADS", "3", 1);
    assert_int_equal(t_run(limit_main, &la, NULL), 0);
    unsetenv("WEFT_BLOCKING_THREADS");
}

/* The config field wins over the environment. */
static void test_limit_config_over_env(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    limit_arg la = {.calls = 12, .ms = 20, .expect_max = 2};
    setenv("WEFT_BLOCKING_THREADS", "6", 1);
    weft_config c = cfg_threads(2);
    assert_int_equal(t_run_config(&c, limit_main, &la, NULL), 0);
    unsetenv("WEFT_BLOCKING_THREADS");
}

/* The default (512): 48 calls of 300 ms all run at once, whatever the
 * number of workers - threads start on demand. */
static void test_limit_default_on_demand(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    limit_arg la = {.calls = LIMIT_CALLS, .ms = 300, .expect_max = LIMIT_CALLS};
    assert_int_equal(t_run_workers(1, limit_main, &la, NULL), 0);
}

static void test_limit_env_malformed(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    const char *bad[] = {"0", "abc", "-1", "65537", "", "4x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("WEFT_BLOCKING_THREADS", bad[i], 1);
        t_capture cap;
        t_capture_begin(&cap);
        leak_snap snap = leak_snapshot();
        int rc = weft_run(ret_arg, NULL, NULL);
        leak_check(&snap);
        char *err = t_capture_end(&cap);
        assert_int_equal(rc, -EINVAL);
        assert_int_equal(t_lines_with(err, "WEFT_BLOCKING_THREADS", NULL), 1);
        free(err);
    }
    unsetenv("WEFT_BLOCKING_THREADS");
}

/* Idle pool threads exit after 10 s; the pool then starts threads again. */
static void *idle_main(void *arg)
{
    (void)arg;
    /* weft_run may still be starting its last threads (sysmon) when main
     * runs: count once they are all up. */
    weft_sleep(100 * WEFT_MS);
    int base = blk_count_threads();
    weft_task *t[6];
    for (int i = 0; i < 6; i++)
        t[i] = weft_spawn_blocking(os_sleep_ret, (void *)50);
    T_CHECK_EQ(weft_gather(t, 6, NULL), 0);
    int busy = blk_count_threads();
    T_CHECK(busy >= base + 6);  /* they stay for a while after the work */
    /* 10 s of idleness, then they go (allow a few seconds more). */
    weft_sleep(9 * WEFT_SEC);
    int before_deadline = blk_count_threads();
    T_CHECK(before_deadline >= base + 6);
    int64_t end = weft_now() + 6 * WEFT_SEC * T_SLACK;
    int now;
    while ((now = blk_count_threads()) > base && weft_now() < end)
        weft_sleep(50 * WEFT_MS);
    if (now != base)
        fprintf(stderr, "threads: %d before, %d busy, %d after idling\n", base, busy, now);
    T_CHECK_EQ(now, base);
    /* And the pool works on. */
    void *res = NULL;
    T_CHECK_EQ(weft_to_thread(double_it, (void *)4, &res), 0);
    T_CHECK_EQ((intptr_t)res, 8);
    T_CHECK_EQ(blk_count_threads(), base + 1);
    return NULL;
}

static void test_idle_threads_exit(void **state)
{
    (void)state;
    BLK_BEGIN(40);
    assert_int_equal(t_run(idle_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Composition: gather and wait_for                                    */
/* ------------------------------------------------------------------ */

static void *co_double(void *arg)
{
    weft_sleep(WEFT_MS);
    return (void *)((intptr_t)arg * 2);
}

static void *gather_main(void *arg)
{
    (void)arg;
    weft_task *t[8];
    for (intptr_t i = 0; i < 8; i++)
        t[i] = i % 2 ? weft_spawn_blocking(double_it, (void *)i) : weft_spawn(co_double, (void *)i);
    void *res[8];
    T_CHECK_EQ(weft_gather(t, 8, res), 0);
    for (intptr_t i = 0; i < 8; i++)
        T_CHECK_EQ((intptr_t)res[i], 2 * i);

    /* A cancelled (running) blocking task: first nonzero code, its value
     * still stored; the others still joined. */
    probe p = {.ms = 30, .value = 0x31};
    weft_task *u[3];
    u[0] = weft_spawn_blocking(double_it, (void *)1);
    u[1] = weft_spawn_blocking(probe_fn, &p);
    u[2] = weft_spawn_blocking(os_sleep_ret, (void *)10);
    T_CHECK(blk_co_wait_flag(&p.started, 5000));
    weft_cancel(u[1]);
    void *r3[3] = {0};
    T_CHECK_EQ(weft_gather(u, 3, r3), -ECANCELED);
    T_CHECK_EQ((intptr_t)r3[0], 2);
    T_CHECK_EQ((intptr_t)r3[1], 0x31);
    T_CHECK_EQ((intptr_t)r3[2], 10);
    T_CHECK_EQ(atomic_load(&p.finished), 1);
    return NULL;
}

static void test_gather(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(gather_main, NULL, NULL), 0);
}

/* A gatherer cancelled while blocking tasks run: each fn finishes before
 * weft_gather returns -ECANCELED. */
typedef struct gatherer_rec {
    probe *p;
    int n;
    int rc;
    int finished_at_return;
} gatherer_rec;

static void *gatherer(void *arg)
{
    gatherer_rec *g = arg;
    weft_task *t[4];
    for (int i = 0; i < g->n; i++)
        t[i] = weft_spawn_blocking(probe_fn, &g->p[i]);
    g->rc = weft_gather(t, (size_t)g->n, NULL);
    for (int i = 0; i < g->n; i++)
        g->finished_at_return += atomic_load(&g->p[i].finished);
    return NULL;
}

static void *gather_cancel_main(void *arg)
{
    (void)arg;
    probe p[4] = {{.ms = 60}, {.ms = 80}, {.ms = 100}, {.ms = 40}};
    gatherer_rec g = {.p = p, .n = 4};
    weft_task *t = weft_spawn(gatherer, &g);
    for (int i = 0; i < 4; i++)
        T_CHECK(blk_co_wait_flag(&p[i].started, 5000));
    weft_cancel(t);
    weft_join(t, NULL);
    T_CHECK_EQ(g.rc, -ECANCELED);
    T_CHECK_EQ(g.finished_at_return, 4);
    return NULL;
}

static void test_gather_cancelled(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(gather_cancel_main, NULL, NULL), 0);
}

static void *wait_for_main(void *arg)
{
    (void)arg;
    /* In time. */
    void *res = NULL;
    weft_task *t = weft_spawn_blocking(os_sleep_ret, (void *)10);
    T_CHECK_EQ(weft_wait_for(t, weft_now() + 5 * WEFT_SEC, &res), 0);
    T_CHECK_EQ((intptr_t)res, 10);

    /* Too late: -ETIMEDOUT, and the running fn has finished by then. */
    probe p = {.ms = 150, .value = 0x15};
    t = weft_spawn_blocking(probe_fn, &p);
    int64_t t0 = weft_now();
    res = NULL;
    int rc = weft_wait_for(t, t0 + 20 * WEFT_MS, &res);
    int64_t el = weft_now() - t0;
    T_CHECK_EQ(rc, -ETIMEDOUT);
    T_CHECK_EQ(atomic_load(&p.finished), 1);
    T_CHECK_EQ(atomic_load(&p.runs), 1);
    T_CHECK(el >= 140 * WEFT_MS);  /* waited for fn (150 ms of OS sleep) */
    T_CHECK_EQ((intptr_t)res, 0x15);

    /* A deadline already past, the task finished: 0. */
    t = weft_spawn_blocking(ret_arg, (void *)9);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(weft_wait_for(t, 0, &res), 0);
    T_CHECK_EQ((intptr_t)res, 9);
    return NULL;
}

static void test_wait_for(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(wait_for_main, NULL, NULL), 0);
}

/* wait_for of a blocking task still in line: at the deadline it is dropped
 * (fn never runs) and -ETIMEDOUT comes at once, while the occupant runs. */
static void *wait_for_queued_main(void *arg)
{
    (void)arg;
    probe occ = {.use_gate = true};
    weft_task *o = weft_spawn_blocking(probe_fn, &occ);
    T_CHECK(blk_co_wait_flag(&occ.started, 5000));
    probe q = {.value = 4};
    weft_task *t = weft_spawn_blocking(probe_fn, &q);
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_wait_for(t, t0 + 30 * WEFT_MS, NULL), -ETIMEDOUT);
    int64_t el = weft_now() - t0;
    T_CHECK(el >= 30 * WEFT_MS);
    T_CHECK(el < 500 * WEFT_MS * T_SLACK);
    T_CHECK_EQ(atomic_load(&occ.finished), 0);
    atomic_store(&occ.gate, 1);
    weft_join(o, NULL);
    weft_sleep(20 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&q.runs), 0);
    return NULL;
}

static void test_wait_for_queued(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = cfg_threads(1);
    assert_int_equal(t_run_config(&c, wait_for_queued_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                            */
/* ------------------------------------------------------------------ */

static probe sd_running, sd_queued, sd_queued2;
static int64_t sd_main_returned;

/* main returns while one fn sleeps 200 ms and two wait in line (one
 * detached, one never released): weft_run returns only after the running fn
 * finished; the queued ones never run. */
static void *shutdown_main(void *arg)
{
    (void)arg;
    memset(&sd_running, 0, sizeof sd_running);
    memset(&sd_queued, 0, sizeof sd_queued);
    memset(&sd_queued2, 0, sizeof sd_queued2);
    sd_running.ms = 200;
    weft_task *r = weft_spawn_blocking(probe_fn, &sd_running);
    T_CHECK(blk_co_wait_flag(&sd_running.started, 5000));
    weft_detach(r);
    weft_detach(weft_spawn_blocking(probe_fn, &sd_queued));
    (void)weft_spawn_blocking(probe_fn, &sd_queued2);  /* handle never released */
    sd_main_returned = weft_now();
    return (void *)0x600d;
}

static void test_shutdown_waits_running_fn(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = cfg_threads(1);
    void *res = NULL;
    assert_int_equal(t_run_config(&c, shutdown_main, NULL, &res), 0);
    int64_t returned = weft_now();
    assert_ptr_equal(res, (void *)0x600d);
    assert_int_equal(atomic_load(&sd_running.finished), 1);
    assert_true(returned >= atomic_load(&sd_running.t_finished));
    assert_true(atomic_load(&sd_running.t_finished) > sd_main_returned);
    assert_int_equal(atomic_load(&sd_queued.runs), 0);
    assert_int_equal(atomic_load(&sd_queued2.runs), 0);
}

/* main returns while a coroutine waits in weft_to_thread: that coroutine is
 * cancelled; its call returns -ECANCELED after fn finished, with fn's
 * result; weft_run returns after both. */
static caller_rec sd_caller;
static probe sd_probe;

static void *shutdown_to_thread_main(void *arg)
{
    (void)arg;
    memset(&sd_probe, 0, sizeof sd_probe);
    memset(&sd_caller, 0, sizeof sd_caller);
    sd_probe.ms = 150;
    sd_probe.value = 0x5d;
    sd_caller.p = &sd_probe;
    sd_caller.rc = 1;
    weft_detach(weft_spawn(to_thread_caller, &sd_caller));
    T_CHECK(blk_co_wait_flag(&sd_probe.started, 5000));
    return NULL;
}

static void test_shutdown_to_thread_caller(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    assert_int_equal(t_run(shutdown_to_thread_main, NULL, NULL), 0);
    assert_int_equal(sd_caller.rc, -ECANCELED);
    assert_int_equal(sd_caller.finished_at_return, 1);
    assert_ptr_equal(sd_caller.res, (void *)0x5d);
    assert_int_equal(atomic_load(&sd_probe.runs), 1);
}

/* Debug mode reports a blocking task never joined nor detached, as for any
 * task (by id: a blocking task has no name). */
static uint64_t unjoined_id;

static void *unjoined_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn_blocking(ret_arg, NULL);
    unjoined_id = weft_task_id(t);
    while (!weft_task_done(t))
        weft_sleep(WEFT_MS);
    return NULL;  /* t never released */
}

static void test_debug_reports_unjoined(void **state)
{
    (void)state;
    BLK_BEGIN(30);
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.debug = 1;
    t_capture cap;
    t_capture_begin(&cap);
    int rc = t_run_config(&c, unjoined_main, NULL, NULL);
    char *err = t_capture_end(&cap);
    assert_int_equal(rc, 0);
    char id[32];
    snprintf(id, sizeof id, "id %llu", (unsigned long long)unjoined_id);
    assert_int_equal(t_lines_with(err, "never joined or detached", id), 1);
    free(err);
}

/* Back-to-back runtimes, each with its own pool. */
static void *tiny_main(void *arg)
{
    void *res = NULL;
    T_CHECK_EQ(weft_to_thread(double_it, arg, &res), 0);
    T_CHECK_EQ((intptr_t)res, 2 * (intptr_t)arg);
    return res;
}

static void test_runs_back_to_back(void **state)
{
    (void)state;
    BLK_BEGIN(60);
    for (intptr_t i = 0; i < 20; i++) {
        void *res = NULL;
        weft_config c = cfg_threads((unsigned)(1 + i % 3));
        assert_int_equal(t_run_config(&c, tiny_main, (void *)i, &res), 0);
        assert_int_equal((intptr_t)res, 2 * i);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    blk_no_stack_cache(argv);
    blk_warm_up();
    blk_filter_from_env();
    const struct CMUnitTest tests[] = {
        BLK_TEST(test_eperm),
        BLK_TEST(test_einval),
        BLK_TEST(test_basic),
        BLK_TEST(test_pool_thread_is_plain),
        BLK_TEST(test_worker_not_held),
        BLK_TEST(test_many_callers),
        BLK_TEST(test_spawn_blocking_plain_thread),
        BLK_TEST(test_cancel_caller_before),
        BLK_TEST(test_cancel_caller_running),
        BLK_TEST(test_cancel_caller_queued),
        BLK_TEST(test_cancel_queued_task),
        BLK_TEST(test_cancel_running_task),
        BLK_TEST(test_cancel_joiner),
        BLK_TEST(test_fifo_beyond_limit),
        BLK_TEST(test_limit_config),
        BLK_TEST(test_limit_env),
        BLK_TEST(test_limit_config_over_env),
        BLK_TEST(test_limit_default_on_demand),
        BLK_TEST(test_limit_env_malformed),
        BLK_TEST(test_gather),
        BLK_TEST(test_gather_cancelled),
        BLK_TEST(test_wait_for),
        BLK_TEST(test_wait_for_queued),
        BLK_TEST(test_shutdown_to_thread_caller),
        BLK_TEST(test_runs_back_to_back),
        BLK_TEST(test_debug_reports_unjoined),
        BLK_TEST(test_idle_threads_exit),
        /* Last: a hang here is reported by the watchdog, which ends the
         * program (a deadlocked runtime cannot be recovered from). */
        BLK_TEST(test_shutdown_waits_running_fn),
    };
    return cmocka_run_group_tests_name("blocking", tests, NULL, NULL);
}
