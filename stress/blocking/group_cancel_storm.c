/*
 * stress_group_cancel_storm: task groups spawned into while they are being
 * cancelled, then freed.
 *
 * Rounds of 1-15 ms.  Each round makes a group; three spawner coroutines and
 * a plain thread spawn members into it (coroutines that return at once,
 * yield, sleep, or wait until cancelled; blocking members that spin or
 * sleep on a pool of 4 threads, so some wait in line); a consumer coroutine
 * takes them with weft_group_next (random deadlines) in completion order; a
 * canceller coroutine and the plain thread call weft_group_cancel at random
 * moments (or never), and sometimes the consumer itself is cancelled while
 * it waits in next.  Then spawning stops, the consumer takes what has
 * finished, and the round's driver calls weft_group_free.
 *
 * Invariants:
 *  - every member's function ran at most once; a coroutine member exactly
 *    once (even when cancelled at birth); a blocking member at most once
 *    (never when dropped from the line);
 *  - a report comes only after the member finished, and no member is
 *    reported twice; a dropped blocking member is reported with -ECANCELED
 *    and no value;
 *  - a member reported 0 never saw -ECANCELED;
 *  - when weft_group_free returns, no member is still running (no orphans);
 *  - counts add up: next() reports + members discarded by free (group_size
 *    just before free) == members spawned; the members never reported by
 *    identity are exactly the discarded plus the dropped ones;
 *  - nothing hangs (watchdog).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.  WEFT_BLOCKING_THREADS, when
 * set, replaces the pool size of 4.
 */
#include "../stress.h"

#define MAXM STRESS_SCALE(600, 160)
#define NSPAWNERS 3

typedef struct mrec {
    uint32_t id;
    bool blocking;
    int kind;
    _Atomic int spawned;
    _Atomic int ran;
    _Atomic int finished;
    _Atomic int saw_cancel;
    _Atomic int reported;
} mrec;

/* The current round. */
static weft_group *_Atomic cur_group;
static mrec *_Atomic cur_recs;
static _Atomic int cur_next;          /* next record index */
static _Atomic int spawning;          /* spawners and cancellers may use the group */
static _Atomic int inflight;          /* users of the group between guard enter/leave */
static _Atomic int consumer_stop;
static _Atomic int thread_stop;

static _Atomic uint64_t n_rounds, n_spawned, n_reports, n_null_reports, n_discarded,
    n_group_cancels, n_owner_cancels, n_dropped, n_timeouts, n_full;

static void dump(void)
{
    fprintf(stderr,
            "  rounds %" PRIu64 ", members %" PRIu64 ", reports %" PRIu64 " (dropped %" PRIu64
            "), discarded by free %" PRIu64 ", group cancels %" PRIu64 "\n",
            atomic_load(&n_rounds), atomic_load(&n_spawned), atomic_load(&n_reports),
            atomic_load(&n_null_reports), atomic_load(&n_discarded),
            atomic_load(&n_group_cancels));
}

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e50)

static void saw(mrec *m, int rc)
{
    if (rc == -ECANCELED)
        atomic_store(&m->saw_cancel, 1);
    else
        CHECK(rc == 0, "member %u: suspension point returned %d", m->id, rc);
}

static void *co_member(void *arg)
{
    mrec *m = arg;
    int old = atomic_fetch_add(&m->ran, 1);
    CHECK(old == 0, "member %u ran %d times", m->id, old + 1);
    uint64_t seed = rng_seed();
    switch (m->kind) {
    case 0:
        break;
    case 1:
        saw(m, weft_yield());
        break;
    case 2:
        saw(m, weft_sleep((int64_t)rng_below(&seed, 2000) * WEFT_US));
        break;
    default: {
        int rc = weft_sleep_until(WEFT_FOREVER);
        CHECK(rc == -ECANCELED, "member %u: endless sleep returned %d", m->id, rc);
        saw(m, rc);
        break;
    }
    }
    if (weft_cancelled())
        atomic_store(&m->saw_cancel, 1);
    atomic_store(&m->finished, 1);
    return m;
}

static void *blk_member(void *arg)
{
    mrec *m = arg;
    int old = atomic_fetch_add(&m->ran, 1);
    CHECK(old == 0, "blocking member %u ran %d times", m->id, old + 1);
    uint64_t seed = rng_seed();
    if (rng_below(&seed, 2))
        stress_spin_ns((int64_t)rng_below(&seed, 20) * WEFT_US);
    else
        stress_os_sleep_ns((int64_t)rng_below(&seed, 500) * WEFT_US);
    atomic_store(&m->finished, 1);
    return m;
}

/* Guard: the group may be used between enter (true) and leave. */
static bool guard_enter(void)
{
    atomic_fetch_add(&inflight, 1);
    if (!atomic_load(&spawning)) {
        atomic_fetch_sub(&inflight, 1);
        return false;
    }
    return true;
}
static void guard_leave(void) { atomic_fetch_sub(&inflight, 1); }

/* One spawn into the current group (any thread, inside the guard). */
static void spawn_one(uint64_t *seed)
{
    weft_group *g = atomic_load(&cur_group);
    mrec *recs = atomic_load(&cur_recs);
    int i = atomic_fetch_add(&cur_next, 1);
    if (i >= MAXM) {
        atomic_fetch_add_explicit(&n_full, 1, memory_order_relaxed);
        return;
    }
    mrec *m = &recs[i];
    m->id = (uint32_t)i;
    m->blocking = rng_below(seed, 3) == 0;
    m->kind = (int)rng_below(seed, 4);
    weft_task *t = m->blocking ? weft_group_spawn_blocking(g, blk_member, m)
                               : weft_group_spawn(g, co_member, m);
    if (!t) {
        FAIL("group spawn (%s) failed: %s", m->blocking ? "blocking" : "coroutine",
             strerror(errno));
        return;
    }
    atomic_store(&m->spawned, 1);
    atomic_fetch_add_explicit(&n_spawned, 1, memory_order_relaxed);
}

static void *spawner(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (guard_enter()) {
        spawn_one(&seed);
        guard_leave();
        uint64_t d = rng_below(&seed, 4);
        if (d == 1)
            weft_yield();
        else if (d == 2)
            weft_sleep((int64_t)rng_below(&seed, 200) * WEFT_US);
    }
    return NULL;
}

/* Cancels the group once at a random moment, or the consumer, or nothing. */
typedef struct canceller_arg {
    weft_task *consumer;
} canceller_arg;

static void *canceller(void *arg)
{
    canceller_arg *ca = arg;
    uint64_t seed = rng_seed();
    uint64_t what = rng_below(&seed, 8);
    weft_sleep((int64_t)rng_below(&seed, 8000) * WEFT_US);
    if (what < 4) {
        if (guard_enter()) {
            weft_group_cancel(atomic_load(&cur_group));
            atomic_fetch_add_explicit(&n_group_cancels, 1, memory_order_relaxed);
            guard_leave();
        }
    } else if (what < 6) {
        weft_cancel(ca->consumer);  /* the consumer is joined after us */
        atomic_fetch_add_explicit(&n_owner_cancels, 1, memory_order_relaxed);
    }
    return NULL;
}

/* The plain thread: spawns into each round's group, sometimes cancels it. */
static void *plain_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&thread_stop)) {
        if (guard_enter()) {
            if (rng_below(&seed, 64) == 0) {
                weft_group_cancel(atomic_load(&cur_group));
                atomic_fetch_add_explicit(&n_group_cancels, 1, memory_order_relaxed);
            } else {
                spawn_one(&seed);
            }
            guard_leave();
        }
        if (rng_below(&seed, 2))
            stress_os_sleep_ns((int64_t)rng_below(&seed, 100) * WEFT_US);
    }
    return NULL;
}

typedef struct consumer_out {
    uint64_t reports, null_reports;
} consumer_out;

/* Records one report of next. */
static void take(consumer_out *co, int rc, void *res)
{
    CHECK(rc == 0 || rc == -ECANCELED, "group_next returned %d", rc);
    if (res == NULL) {
        co->null_reports++;
        CHECK(rc == -ECANCELED, "a member reported with no value and code %d", rc);
        return;
    }
    mrec *m = res;
    co->reports++;
    int old = atomic_fetch_add(&m->reported, 1);
    CHECK(old == 0, "member %u reported %d times", m->id, old + 1);
    CHECK(atomic_load(&m->finished), "member %u reported before it finished", m->id);
    CHECK(rc != 0 || !atomic_load(&m->saw_cancel),
          "member %u saw -ECANCELED, yet next reported it with 0", m->id);
}

static void *consumer(void *arg)
{
    consumer_out *co = arg;
    weft_group *g = atomic_load(&cur_group);
    uint64_t seed = rng_seed();
    while (!atomic_load(&consumer_stop)) {
        void *res = SENTINEL;
        /* Never WEFT_FOREVER: members that wait until cancelled may be all
         * that is left when the round stops, uncancelled until group_free. */
        int64_t dl = weft_now() + (rng_below(&seed, 4) == 0 ? 20 * WEFT_MS
                                                              : (int64_t)rng_below(&seed, 2000) * WEFT_US);
        int rc = weft_group_next(g, &res, dl);
        if (rc == -ETIMEDOUT) {
            atomic_fetch_add_explicit(&n_timeouts, 1, memory_order_relaxed);
            continue;
        }
        if (rc == -ENOENT) {
            weft_sleep(100 * WEFT_US);
            continue;
        }
        if (res == SENTINEL) {
            /* Not a report: the consumer itself was cancelled (next
             * cancelled the members and waited for them). */
            CHECK(rc == -ECANCELED && weft_cancelled(),
                  "group_next returned %d without a report", rc);
            break;
        }
        take(co, rc, res);
        stress_progress();
    }
    if (!weft_cancelled()) {
        /* Take what has finished; the rest is group_free's. */
        for (;;) {
            void *res = SENTINEL;
            int rc = weft_group_next(g, &res, 0);
            if (rc == -ETIMEDOUT || rc == -ENOENT)
                break;
            if (res == SENTINEL)
                break;
            take(co, rc, res);
        }
    }
    return NULL;
}

static void round_once(uint64_t *seed)
{
    weft_group *g = weft_group_new();
    mrec *recs = calloc(MAXM, sizeof *recs);
    if (!g || !recs)
        abort();
    atomic_store(&cur_next, 0);
    atomic_store(&cur_recs, recs);
    atomic_store(&cur_group, g);
    atomic_store(&consumer_stop, 0);
    atomic_store(&spawning, 1);

    consumer_out co = {0, 0};
    weft_task *ct = weft_spawn(consumer, &co);
    weft_task *sp[NSPAWNERS];
    for (int i = 0; i < NSPAWNERS; i++)
        sp[i] = weft_spawn(spawner, NULL);
    canceller_arg ca = {.consumer = ct};
    weft_task *cx = weft_spawn(canceller, &ca);

    weft_sleep((1 + (int64_t)rng_below(seed, 15)) * WEFT_MS);

    /* Stop spawning and cancelling; wait until nobody uses the group. */
    atomic_store(&spawning, 0);
    weft_gather(sp, NSPAWNERS, NULL);
    weft_join(cx, NULL);
    while (atomic_load(&inflight))
        weft_yield();
    atomic_store(&consumer_stop, 1);
    weft_join(ct, NULL);

    size_t left = weft_group_size(g);
    int rc = weft_group_free(g);
    CHECK(rc == 0, "group_free returned %d", rc);

    /* After free: nothing runs, and the counts add up. */
    int n = atomic_load(&cur_next);
    if (n > MAXM)
        n = MAXM;
    uint64_t spawned = 0, unreported = 0, dropped = 0;
    for (int i = 0; i < n; i++) {
        mrec *m = &recs[i];
        if (!atomic_load(&m->spawned))
            continue;
        spawned++;
        int ran = atomic_load(&m->ran), fin = atomic_load(&m->finished);
        CHECK(ran <= 1, "member %u ran %d times", m->id, ran);
        CHECK(ran == fin, "member %u still running after group_free returned (an orphan)",
              m->id);
        if (!m->blocking)
            CHECK(ran == 1, "coroutine member %u never ran its function", m->id);
        if (!atomic_load(&m->reported))
            unreported++;
        if (m->blocking && !ran)
            dropped++;
    }
    CHECK(co.reports + co.null_reports + left == spawned,
          "round: %" PRIu64 " spawned, but %" PRIu64 " reports + %" PRIu64 " dropped reports + %zu "
          "discarded by free",
          spawned, co.reports, co.null_reports, left);
    CHECK(unreported == left + co.null_reports,
          "round: %" PRIu64 " members never reported by value, expected %zu discarded + %" PRIu64
          " dropped",
          unreported, left, co.null_reports);
    CHECK(co.null_reports <= dropped, "round: %" PRIu64 " dropped reports but %" PRIu64
          " blocking members did not run", co.null_reports, dropped);
    atomic_fetch_add(&n_reports, co.reports);
    atomic_fetch_add(&n_null_reports, co.null_reports);
    atomic_fetch_add(&n_discarded, left);
    atomic_fetch_add(&n_dropped, dropped);
    atomic_fetch_add(&n_rounds, 1);

    atomic_store(&cur_group, NULL);
    atomic_store(&cur_recs, NULL);
    free(recs);
    stress_progress();
}

static void *storm_main(void *arg)
{
    (void)arg;
    atomic_store(&thread_stop, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, plain_thread, NULL) != 0)
        abort();
    uint64_t seed = rng_seed();
    while (!stress_time_up() && !stress_failed())
        round_once(&seed);
    atomic_store(&thread_stop, 1);
    pthread_join(th, NULL);
    return NULL;
}

int main(void)
{
    stress_init("stress_group_cancel_storm", 4.0, dump);
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    const char *w = getenv("WEFT_WORKERS");
    if (!w || !*w)
        cfg.workers = 2;
    const char *b = getenv("WEFT_BLOCKING_THREADS");
    if (!b || !*b)
        cfg.blocking_threads = 4;
    int rc = weft_run_config(&cfg, storm_main, NULL, NULL);
    CHECK(rc == 0, "weft_run_config returned %d", rc);
    CHECK(atomic_load(&n_rounds) > 0, "no round completed");
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " members: %" PRIu64
                         " reported by value, %" PRIu64 " dropped from the line and reported, %" PRIu64
                         " discarded by group_free; %" PRIu64 " group cancels, %" PRIu64
                         " consumer cancels, %" PRIu64 " next timeouts",
                         atomic_load(&n_rounds), atomic_load(&n_spawned), atomic_load(&n_reports),
                         atomic_load(&n_null_reports), atomic_load(&n_discarded),
                         atomic_load(&n_group_cancels), atomic_load(&n_owner_cancels),
                         atomic_load(&n_timeouts));
}
