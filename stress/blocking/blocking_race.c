/*
 * stress_blocking_race: thousands of blocking calls from many coroutines,
 * with cancellation racing their completion.
 *
 * Waves of operations; each operation is a short-lived coroutine (the op
 * task) that makes one blocking call in one of four ways:
 *   TO_THREAD  weft_to_thread(fn)
 *   JOIN       weft_spawn_blocking + (sometimes weft_cancel of it) + weft_join
 *   WAIT_FOR   weft_spawn_blocking + weft_wait_for with a 0-1.5 ms deadline
 *   GATHER     weft_spawn_blocking + a coroutine, weft_gather of both
 * fn runs 0, a few us (spinning) or 50 us - 1 ms (nanosleep) on a pool
 * thread.  Two canceller coroutines and one plain thread cancel, at random
 * moments, the op tasks (a cancelled caller) and the blocking tasks (through
 * guarded slots) of the operations in flight.  The pool is small in the
 * first half of the run (3 threads: long lines, so cancellations land on
 * queued tasks) and larger in the second (32).
 *
 * Invariants, per operation:
 *  - fn ran at most once;
 *  - when the join (to_thread / join / wait_for / gather) returns, fn is not
 *    running: it either never started or has finished (no orphans);
 *  - the code is 0 or -ECANCELED (wait_for: or -ETIMEDOUT; gather: the first
 *    nonzero code);
 *  - 0 => fn ran and its result was delivered;
 *  - -ECANCELED => some weft_cancel was attempted on the op task or on the
 *    blocking task; if fn ran, its result was still delivered (stored), if
 *    it never ran nothing was;
 *  - a blocking task that was dropped (fn not run when the join returned)
 *    never runs later (checked at the end of its wave and after weft_run);
 *  - every result is delivered exactly once (one join per operation), and
 *    the counts add up: operations = ok + cancelled + timed out; fn runs =
 *    fn finishes;
 *  - nothing hangs (watchdog).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.  WEFT_BLOCKING_THREADS, when
 * set, replaces the two pool sizes.
 */
#include "../stress.h"

#define WAVE STRESS_SCALE(2048, 384)
#define NDRIVERS STRESS_SCALE(48, 12)
#define NCANCEL_CO 2

enum { K_TO_THREAD, K_JOIN, K_WAIT_FOR, K_GATHER, NKINDS };
static const char *kind_name[NKINDS] = {"to_thread", "join", "wait_for", "gather"};

typedef struct op {
    uint32_t id;
    int kind;
    stress_slot op_slot;        /* the op task, for cancellers */
    stress_slot blk_slot;       /* the blocking task, for cancellers */
    _Atomic int ran;            /* fn entered */
    _Atomic int finished;       /* fn returned */
    _Atomic int cancel_tries;   /* weft_cancel attempts on the op or blocking task */
    _Atomic int joined;         /* joins of this operation (must end at 1) */
    int rc;
    void *res;
    int ran_at_return, finished_at_return;
} op_t;

static op_t *_Atomic wave_ops;
static op_t *_Atomic active[NDRIVERS];
static _Atomic int next_op;
static _Atomic int in_cancel;
static _Atomic int stop_cancellers;

static _Atomic uint64_t n_ops, n_ok, n_cancelled, n_timedout, n_ran, n_finished, n_dropped,
    n_cancel_calls, n_kind[NKINDS];

static void dump(void)
{
    fprintf(stderr,
            "  ops %" PRIu64 " (ok %" PRIu64 ", cancelled %" PRIu64 ", timed out %" PRIu64
            "), fn ran %" PRIu64 ", finished %" PRIu64 ", dropped %" PRIu64 "\n",
            atomic_load(&n_ops), atomic_load(&n_ok), atomic_load(&n_cancelled),
            atomic_load(&n_timedout), atomic_load(&n_ran), atomic_load(&n_finished),
            atomic_load(&n_dropped));
}

static void *result_of(uint32_t id) { return (void *)(uintptr_t)(0x10000 + (uint64_t)id * 16); }
#define SENTINEL ((void *)(uintptr_t)0x5e5e5e50)

/* The blocking function. */
static void *blk_fn(void *arg)
{
    op_t *o = arg;
    int old = atomic_fetch_add(&o->ran, 1);
    CHECK(old == 0, "op %u (%s): fn ran %d times", o->id, kind_name[o->kind], old + 1);
    atomic_fetch_add_explicit(&n_ran, 1, memory_order_relaxed);
    uint64_t seed = rng_seed();
    uint64_t d = rng_below(&seed, 4);
    if (d == 1)
        stress_spin_ns((int64_t)rng_below(&seed, 30) * WEFT_US);
    else if (d >= 2)
        stress_os_sleep_ns((50 + (int64_t)rng_below(&seed, 950)) * WEFT_US);
    void *r = result_of(o->id);
    atomic_fetch_add_explicit(&n_finished, 1, memory_order_relaxed);
    atomic_store(&o->finished, 1);
    return r;
}

static void *quick_co(void *arg)
{
    (void)arg;
    weft_yield();
    return (void *)1;
}

/* Random short pause of a coroutine (ignores cancellation). */
static void co_pause(uint64_t *seed)
{
    uint64_t d = rng_below(seed, 6);
    if (d < 2)
        return;
    if (d < 4)
        weft_yield();
    else
        weft_sleep((int64_t)rng_below(seed, 300) * WEFT_US);
}

static void *op_task(void *arg)
{
    op_t *o = arg;
    uint64_t seed = rng_seed();
    o->res = SENTINEL;
    switch (o->kind) {
    case K_TO_THREAD:
        o->rc = weft_to_thread(blk_fn, o, &o->res);
        break;
    case K_JOIN:
    case K_WAIT_FOR: {
        weft_task *t = weft_spawn_blocking(blk_fn, o);
        if (!t) {
            FAIL("op %u: weft_spawn_blocking: %s", o->id, strerror(errno));
            o->rc = -errno;
            break;
        }
        /* Publish the handle only: the guard may be held by a canceller
         * that found no handle yet (slot_open would reset it). */
        atomic_store(&o->blk_slot.h, t);
        co_pause(&seed);
        if (rng_below(&seed, 8) == 0) {
            atomic_fetch_add(&o->cancel_tries, 1);
            weft_cancel(t);
        }
        co_pause(&seed);
        slot_close(&o->blk_slot);
        if (o->kind == K_JOIN)
            o->rc = weft_join(t, &o->res);
        else
            o->rc = weft_wait_for(t, weft_now() + (int64_t)rng_below(&seed, 1500) * WEFT_US,
                                  &o->res);
        break;
    }
    case K_GATHER: {
        weft_task *t[2];
        t[0] = weft_spawn_blocking(blk_fn, o);
        t[1] = weft_spawn(quick_co, NULL);
        if (!t[0] || !t[1]) {
            FAIL("op %u: spawn failed: %s", o->id, strerror(errno));
            abort();
        }
        void *res[2] = {SENTINEL, SENTINEL};
        o->rc = weft_gather(t, 2, res);
        o->res = res[0];
        break;
    }
    }
    o->ran_at_return = atomic_load(&o->ran);
    o->finished_at_return = atomic_load(&o->finished);
    atomic_fetch_add(&o->joined, 1);
    return NULL;
}

static void check_op(op_t *o)
{
    const char *k = kind_name[o->kind];
    int ran = o->ran_at_return, fin = o->finished_at_return;
    CHECK(atomic_load(&o->joined) == 1, "op %u (%s): joined %d times", o->id, k,
          atomic_load(&o->joined));
    CHECK(ran <= 1, "op %u (%s): fn ran %d times", o->id, k, ran);
    CHECK(ran == fin,
          "op %u (%s): the join returned %d while fn was still running (ran %d, finished %d): "
          "an orphan",
          o->id, k, o->rc, ran, fin);
    bool ok_code = o->rc == 0 || o->rc == -ECANCELED || (o->kind == K_WAIT_FOR && o->rc == -ETIMEDOUT);
    CHECK(ok_code, "op %u (%s): join code %d", o->id, k, o->rc);
    if (o->rc == 0) {
        atomic_fetch_add_explicit(&n_ok, 1, memory_order_relaxed);
        CHECK(ran == 1, "op %u (%s): join returned 0 but fn never ran", o->id, k);
        CHECK(o->res == result_of(o->id), "op %u (%s): join returned 0 with result %p, not %p",
              o->id, k, o->res, result_of(o->id));
    } else if (o->rc == -ECANCELED || o->rc == -ETIMEDOUT) {
        if (o->rc == -ECANCELED) {
            atomic_fetch_add_explicit(&n_cancelled, 1, memory_order_relaxed);
            CHECK(atomic_load(&o->cancel_tries) > 0,
                  "op %u (%s): -ECANCELED though nobody cancelled the op or its task", o->id, k);
        } else {
            atomic_fetch_add_explicit(&n_timedout, 1, memory_order_relaxed);
        }
        if (ran) {
            CHECK(o->res == result_of(o->id),
                  "op %u (%s): code %d after fn ran, but result %p, not %p (not stored)", o->id,
                  k, o->rc, o->res, result_of(o->id));
        } else {
            atomic_fetch_add_explicit(&n_dropped, 1, memory_order_relaxed);
            CHECK(o->res == NULL || o->res == SENTINEL,
                  "op %u (%s): code %d, fn never ran, yet result %p", o->id, k, o->rc, o->res);
        }
    }
    atomic_fetch_add_explicit(&n_ops, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_kind[o->kind], 1, memory_order_relaxed);
}

static void *driver(void *arg)
{
    int d = (int)(intptr_t)arg;
    uint64_t seed = rng_seed();
    op_t *ops = atomic_load(&wave_ops);
    for (;;) {
        int i = atomic_fetch_add(&next_op, 1);
        if (i >= WAVE)
            break;
        op_t *o = &ops[i];
        o->id = (uint32_t)i;
        o->kind = (int)rng_below(&seed, NKINDS);
        slot_open(&o->blk_slot, NULL);
        weft_task *t = weft_spawn(op_task, o);
        if (!t) {
            FAIL("weft_spawn: %s", strerror(errno));
            abort();
        }
        slot_open(&o->op_slot, t);
        atomic_store(&active[d], o);
        /* Let cancellers at it for a while, sometimes cancel it here. */
        uint64_t p = rng_below(&seed, 10);
        if (p < 3)
            weft_yield();
        else if (p < 8)
            weft_sleep((int64_t)rng_below(&seed, 1200) * WEFT_US);
        else if (p == 8) {
            atomic_fetch_add(&o->cancel_tries, 1);
            weft_cancel(t);
        }
        slot_close(&o->op_slot);
        weft_join(t, NULL);
        atomic_store(&active[d], NULL);
        check_op(o);
        stress_progress();
    }
    return NULL;
}

/* One cancellation attempt on a random operation in flight. */
static void cancel_one(uint64_t *seed)
{
    atomic_fetch_add(&in_cancel, 1);
    op_t *o = atomic_load(&active[rng_below(seed, NDRIVERS)]);
    if (o) {
        stress_slot *s = rng_below(seed, 2) ? &o->op_slot : &o->blk_slot;
        weft_task *t = slot_enter(s);
        if (t) {
            atomic_fetch_add(&o->cancel_tries, 1);
            int rc = weft_cancel(t);
            CHECK(rc == 0 || rc == -ESRCH, "weft_cancel returned %d", rc);
            CHECK(rc != -ESRCH || weft_task_done(t),
                  "weft_cancel returned -ESRCH but the task is not done");
            atomic_fetch_add_explicit(&n_cancel_calls, 1, memory_order_relaxed);
            slot_leave(s);
        }
    }
    atomic_fetch_sub(&in_cancel, 1);
}

static void *canceller_co(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_cancellers)) {
        cancel_one(&seed);
        if (rng_below(&seed, 2))
            weft_yield();
        else
            weft_sleep((int64_t)rng_below(&seed, 200) * WEFT_US);
    }
    return NULL;
}

static void *canceller_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_cancellers)) {
        cancel_one(&seed);
        if (rng_below(&seed, 2))
            stress_spin_ns((int64_t)rng_below(&seed, 20) * WEFT_US);
        else
            stress_os_sleep_ns((int64_t)rng_below(&seed, 200) * WEFT_US);
    }
    return NULL;
}

static void *race_main(void *arg)
{
    (void)arg;
    atomic_store(&stop_cancellers, 0);
    weft_task *cc[NCANCEL_CO];
    for (int i = 0; i < NCANCEL_CO; i++)
        cc[i] = weft_spawn(canceller_co, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, canceller_thread, NULL) != 0) {
        FAIL("pthread_create failed");
        abort();
    }
    while (!stress_time_up() && !stress_failed()) {
        op_t *ops = calloc(WAVE, sizeof *ops);
        if (!ops)
            abort();
        atomic_store(&next_op, 0);
        atomic_store(&wave_ops, ops);
        weft_task *dr[NDRIVERS];
        for (int d = 0; d < NDRIVERS; d++)
            dr[d] = weft_spawn(driver, (void *)(intptr_t)d);
        int rc = weft_gather(dr, NDRIVERS, NULL);
        CHECK(rc == 0, "gather of the drivers: %d", rc);
        /* No canceller holds a record of this wave any more. */
        while (atomic_load(&in_cancel))
            weft_yield();
        /* A dropped fn never runs later. */
        weft_sleep(2 * WEFT_MS);
        for (int i = 0; i < WAVE; i++) {
            op_t *o = &ops[i];
            CHECK(atomic_load(&o->ran) == o->ran_at_return,
                  "op %u (%s): fn ran after its join returned (dropped task ran later)", o->id,
                  kind_name[o->kind]);
        }
        atomic_store(&wave_ops, NULL);
        free(ops);
    }
    atomic_store(&stop_cancellers, 1);
    weft_gather(cc, NCANCEL_CO, NULL);
    pthread_join(th, NULL);
    return NULL;
}

static void run_phase(unsigned pool)
{
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    const char *w = getenv("WEFT_WORKERS");
    if (!w || !*w)
        cfg.workers = 2;
    const char *b = getenv("WEFT_BLOCKING_THREADS");
    if (!b || !*b)
        cfg.blocking_threads = pool;
    int rc = weft_run_config(&cfg, race_main, NULL, NULL);
    CHECK(rc == 0, "weft_run_config returned %d", rc);
}

int main(void)
{
    stress_init("stress_blocking_race", 4.0, dump);
    /* First half of the budget with 3 pool threads, second with 32. */
    int64_t end = stress_t_end;
    stress_t_end = stress_t_start + (end - stress_t_start) / 2;
    run_phase(3);
    stress_t_end = end;
    run_phase(32);
    CHECK(atomic_load(&n_ran) == atomic_load(&n_finished), "fn ran %" PRIu64 " times but finished %" PRIu64,
          atomic_load(&n_ran), atomic_load(&n_finished));
    uint64_t ops = atomic_load(&n_ops);
    CHECK(ops == atomic_load(&n_ok) + atomic_load(&n_cancelled) + atomic_load(&n_timedout),
          "counts do not add up: %" PRIu64 " ops", ops);
    CHECK(ops >= 1000 || STRESS_TSAN || STRESS_ASAN, "only %" PRIu64 " operations", ops);
    return stress_finish("%" PRIu64 " blocking ops (to_thread %" PRIu64 ", join %" PRIu64
                         ", wait_for %" PRIu64 ", gather %" PRIu64 "): ok %" PRIu64
                         ", cancelled %" PRIu64 " (fn dropped %" PRIu64 "), timed out %" PRIu64
                         "; %" PRIu64 " cancel calls",
                         ops, atomic_load(&n_kind[K_TO_THREAD]), atomic_load(&n_kind[K_JOIN]),
                         atomic_load(&n_kind[K_WAIT_FOR]), atomic_load(&n_kind[K_GATHER]),
                         atomic_load(&n_ok), atomic_load(&n_cancelled), atomic_load(&n_dropped),
                         atomic_load(&n_timedout), atomic_load(&n_cancel_calls));
}
