/*
 * stress_registry_walk: the task registry read from other threads while
 * tasks are spawned, finished, stolen and their slots reused at full speed.
 *
 * Runs three times, on 2, 3 and 4 workers (WEFT_WORKERS, when set, fixes
 * the count for all three), a third of the budget each:
 *  - per worker a churn coroutine spawns batches of short tasks and joins,
 *    gathers or detaches them; the tasks yield, sleep a few microseconds,
 *    wait on events set by their siblings, lock a mutex, join a child, run a
 *    function on the blocking pool, or spin 3 ms (so sysmon flags their
 *    worker and the help-blocked paths run); a plain thread spawns and
 *    detaches more through the injection queue;
 *  - two plain threads walk the registry in a loop: weft_tasks_foreach,
 *    weft_stats_get and weft_dump to /dev/null; a coroutine does the same.
 * Invariants, for every entry a walk visits:
 *  - id nonzero, and no id twice in one walk;
 *  - name NULL or exactly one of the names this program gives (they differ
 *    in length and letter, so a name torn between two tasks is caught);
 *  - state READY, RUNNING, WAITING or BLOCKING (never DONE, never garbage);
 *  - wait NULL unless WAITING, and then one of the wait strings of the
 *    calls the tasks make; worker -1 or a worker index;
 * and every call returns 0; weft_stats_get's sums match its per-worker
 * figures; nothing crashes (ASan: no use after free; TSan: no race).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#include <fcntl.h>

#define BATCH STRESS_SCALE(256, 48)
#define NWALKERS 2

static const char *const NAMES[] = {
    "a",
    "bb",
    "cccc",
    "dddddddd",
    "eeeeeeeeeeeeeeee",
    "ffffffffffffffffffffffffffffffff",
    /* 63 bytes: the longest name kept whole */
    "ggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg",
    "churn",
    "main",
};
#define NNAMES (sizeof NAMES / sizeof NAMES[0])

static const char *const WAITS[] = {"sleep", "join",      "gather",     "event",
                                    "mutex", "to_thread", "group next", "group drain"};
#define NWAITS (sizeof WAITS / sizeof WAITS[0])

static _Atomic int stop_walkers;
static _Atomic uint64_t walks, entries, dumps, stats_calls, spawned, batches, max_seen_alive;
static _Atomic uint64_t by_state[4];
static unsigned cur_workers;
static char run_workers[32];     /* worker counts of the runs, for the summary */

static void dump_state(void)
{
    fprintf(stderr, "  workers %u, walks %" PRIu64 ", entries %" PRIu64 ", dumps %" PRIu64
                    ", spawned %" PRIu64 "\n",
            cur_workers, atomic_load(&walks), atomic_load(&entries), atomic_load(&dumps),
            atomic_load(&spawned));
    weft_dump(2);
}

/* ------------------------------------------------------------------ */
/* Walkers                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t ids[1 << 14];
    size_t n;
    bool overflow;
} walk_ctx;

static bool known_name(const char *n)
{
    for (size_t i = 0; i < NNAMES; i++)
        if (strcmp(n, NAMES[i]) == 0)
            return true;
    return false;
}

static bool known_wait(const char *w)
{
    for (size_t i = 0; i < NWAITS; i++)
        if (strcmp(w, WAITS[i]) == 0)
            return true;
    return false;
}

static int visit(const weft_task_info *i, void *arg)
{
    walk_ctx *c = arg;
    CHECK(i->id != 0, "an entry with id 0");
    if (i->name) {
        size_t len = strnlen(i->name, 80);
        CHECK(len < 64 && known_name(i->name), "task %" PRIu64 ": torn or unknown name '%.*s'",
              i->id, (int)len, i->name);
    }
    CHECK(i->state >= WEFT_TASK_READY && i->state <= WEFT_TASK_BLOCKING,
          "task %" PRIu64 ": state %d", i->id, i->state);
    if (i->state >= WEFT_TASK_READY && i->state <= WEFT_TASK_BLOCKING)
        atomic_fetch_add_explicit(&by_state[i->state], 1, memory_order_relaxed);
    if (i->wait) {
        CHECK(i->state == WEFT_TASK_WAITING, "task %" PRIu64 ": wait '%s' in state %d", i->id,
              i->wait, i->state);
        CHECK(known_wait(i->wait), "task %" PRIu64 ": unknown wait '%.60s'", i->id, i->wait);
    }
    CHECK(i->worker >= -1 && i->worker < (int)cur_workers, "task %" PRIu64 ": worker %d",
          i->id, i->worker);
    CHECK(i->since > 0, "task %" PRIu64 ": since %" PRId64, i->id, i->since);
    if (c->n < sizeof c->ids / sizeof c->ids[0])
        c->ids[c->n++] = i->id;
    else
        c->overflow = true;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static weft_stats *stats_buf(void)
{
    weft_stats *s = malloc(sizeof *s);
    if (!s) {
        FAIL("out of memory");
        exit(1);
    }
    return s;
}

/* One round of observation; any thread.  devnull: an fd for weft_dump. */
static void observe_once(walk_ctx *c, weft_stats *s, int devnull, uint64_t round)
{
    c->n = 0;
    c->overflow = false;
    int rc = weft_tasks_foreach(visit, c);
    CHECK(rc == 0, "weft_tasks_foreach returned %d", rc);
    atomic_fetch_add_explicit(&walks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&entries, c->n, memory_order_relaxed);
    if (!c->overflow) {
        qsort(c->ids, c->n, sizeof c->ids[0], cmp_u64);
        for (size_t k = 1; k < c->n; k++)
            CHECK(c->ids[k] != c->ids[k - 1], "id %" PRIu64 " twice in one walk", c->ids[k]);
    }
    rc = weft_stats_get(s);
    CHECK(rc == 0, "weft_stats_get returned %d", rc);
    if (rc == 0) {
        atomic_fetch_add_explicit(&stats_calls, 1, memory_order_relaxed);
        CHECK(s->workers == cur_workers, "stats: %u workers, not %u", s->workers, cur_workers);
        uint64_t st = 0, pk = 0, sa = 0;
        for (unsigned i = 0; i < s->workers; i++) {
            st += s->worker[i].steals;
            pk += s->worker[i].parks;
            sa += s->worker[i].steal_attempts;
            CHECK(s->worker[i].busy_ns <= s->uptime_ns, "stats: busy %" PRIu64 " > uptime %" PRIu64,
                  s->worker[i].busy_ns, s->uptime_ns);
        }
        CHECK(st == s->steals && pk == s->parks && sa == s->steal_attempts,
              "stats: sums differ from the per-worker figures");
        uint64_t m = atomic_load_explicit(&max_seen_alive, memory_order_relaxed);
        if (s->tasks_alive > m)
            atomic_store_explicit(&max_seen_alive, s->tasks_alive, memory_order_relaxed);
    }
    if (round % 4 == 0) {
        rc = weft_dump(devnull);
        CHECK(rc == 0, "weft_dump returned %d", rc);
        atomic_fetch_add_explicit(&dumps, 1, memory_order_relaxed);
    }
    stress_progress();
}

static void *walker_thread(void *arg)
{
    (void)arg;
    walk_ctx *c = malloc(sizeof *c);
    weft_stats *s = stats_buf();
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(c && devnull >= 0, "walker set-up");
    for (uint64_t r = 0; !atomic_load(&stop_walkers); r++) {
        observe_once(c, s, devnull, r);
        /* Sanitized walks are slow: leave the workers some CPU. */
        if (STRESS_TSAN || STRESS_ASAN)
            stress_os_sleep_ns(500 * WEFT_US);
    }
    close(devnull);
    free(s);
    free(c);
    return NULL;
}

static void *walker_task(void *arg)
{
    (void)arg;
    walk_ctx *c = malloc(sizeof *c);
    weft_stats *s = stats_buf();
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    for (uint64_t r = 0; !atomic_load(&stop_walkers); r++) {
        observe_once(c, s, devnull, r);
        weft_sleep(200 * WEFT_US);
    }
    close(devnull);
    free(s);
    free(c);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Churn                                                               */
/* ------------------------------------------------------------------ */

typedef struct batch {
    weft_event ev;          /* set by the last task of the batch to start */
    weft_mutex mu;
    _Atomic int started;
    int n;
} batch;

typedef struct job {
    batch *b;
    uint64_t seed;
} job;

static void *leaf(void *arg)
{
    (void)arg;
    weft_yield();
    return NULL;
}

static void *pool_fn(void *arg)
{
    return arg;
}

static void *child_fn(void *arg)
{
    job *j = arg;
    batch *b = j->b;
    if (atomic_fetch_add(&b->started, 1) + 1 == b->n)
        weft_event_set(&b->ev);
    switch (rng_below(&j->seed, 10)) {
    case 0:
    case 1:
        weft_yield();
        weft_yield();
        break;
    case 2:
        weft_sleep((int64_t)rng_below(&j->seed, 50) * WEFT_US);
        break;
    case 3:
        weft_event_wait(&b->ev, weft_now() + 50 * WEFT_MS);
        break;
    case 4:
        if (weft_mutex_lock(&b->mu) == 0) {
            weft_yield();
            weft_mutex_unlock(&b->mu);
        }
        break;
    case 5: {
        weft_task *c = weft_spawn_named(NAMES[rng_below(&j->seed, 7)], leaf, NULL);
        if (c)
            weft_join(c, NULL);
        break;
    }
    case 6:
        if (rng_below(&j->seed, 8) == 0)
            weft_to_thread(pool_fn, NULL, NULL);
        else
            weft_yield();
        break;
    case 7: {
        weft_task *c[2] = {weft_spawn(leaf, NULL), weft_spawn(leaf, NULL)};
        if (c[0] && c[1])
            weft_gather(c, 2, NULL);
        break;
    }
    case 8:
        if (rng_below(&j->seed, 400) == 0)
            stress_spin_ns(3 * WEFT_MS);   /* sysmon flags this worker */
        break;
    default:
        break;
    }
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    batch *b = malloc(sizeof *b);
    job *jobs = malloc(sizeof *jobs * BATCH);
    weft_task **h = malloc(sizeof *h * BATCH);
    while (!stress_time_up()) {
        weft_event_init(&b->ev);
        weft_mutex_init(&b->mu);
        atomic_store(&b->started, 0);
        b->n = BATCH;
        int mode = (int)rng_below(&seed, 3);
        for (int i = 0; i < BATCH; i++) {
            jobs[i].b = b;
            jobs[i].seed = rng_next(&seed) | 1;
            const char *name = rng_below(&seed, 4) ? NAMES[rng_below(&seed, 7)] : NULL;
            h[i] = name ? weft_spawn_named(name, child_fn, &jobs[i]) : weft_spawn(child_fn, &jobs[i]);
            CHECK(h[i] != NULL, "spawn failed: %s", strerror(errno));
        }
        atomic_fetch_add_explicit(&spawned, BATCH, memory_order_relaxed);
        if (mode == 0) {
            int rc = weft_gather(h, BATCH, NULL);
            CHECK(rc == 0, "gather: %d", rc);
        } else {
            for (int i = 0; i < BATCH; i++) {
                int rc = weft_join(h[i], NULL);
                CHECK(rc == 0, "join: %d", rc);
            }
        }
        weft_event_destroy(&b->ev);
        weft_mutex_destroy(&b->mu);
        atomic_fetch_add_explicit(&batches, 1, memory_order_relaxed);
        /* A group and some detached tasks. */
        weft_group *g = weft_group_new();
        for (int i = 0; i < 8; i++)
            weft_group_spawn(g, leaf, NULL);
        while (weft_group_next(g, NULL, WEFT_FOREVER) != -ENOENT)
            ;
        weft_group_free(g);
        for (int i = 0; i < 8; i++) {
            weft_task *t = weft_spawn_named(NAMES[i % 7], leaf, NULL);
            if (t)
                weft_detach(t);
        }
        stress_progress();
    }
    free(h);
    free(jobs);
    free(b);
    return NULL;
}

/* Detached tasks from the plain spawner not yet finished: bounded, so that
 * a slow (sanitized) runtime does not pile up a backlog. */
static _Atomic int plain_outstanding;
#define PLAIN_MAX STRESS_SCALE(2000, 200)

static void *plain_leaf(void *arg)
{
    (void)arg;
    weft_yield();
    atomic_fetch_sub_explicit(&plain_outstanding, 1, memory_order_relaxed);
    return NULL;
}

static void *plain_spawner(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!stress_time_up()) {
        int n = 0;
        for (; n < 32 && atomic_load(&plain_outstanding) < PLAIN_MAX; n++) {
            atomic_fetch_add_explicit(&plain_outstanding, 1, memory_order_relaxed);
            weft_task *t = weft_spawn_named(NAMES[rng_below(&seed, 7)], plain_leaf, NULL);
            if (t) {
                weft_detach(t);
            } else {
                atomic_fetch_sub_explicit(&plain_outstanding, 1, memory_order_relaxed);
                CHECK(errno == EPERM, "plain spawn: %s", strerror(errno));
            }
        }
        atomic_fetch_add_explicit(&spawned, (uint64_t)n, memory_order_relaxed);
        stress_os_sleep_ns(200 * WEFT_US);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    cur_workers = weft_workers();
    size_t l = strlen(run_workers);
    snprintf(run_workers + l, sizeof run_workers - l, "%s%u", l ? ", " : "", cur_workers);
    atomic_store(&stop_walkers, 0);
    pthread_t w[NWALKERS], sp;
    for (int i = 0; i < NWALKERS; i++)
        if (pthread_create(&w[i], NULL, walker_thread, NULL) != 0) {
            FAIL("pthread_create");
            exit(1);
        }
    if (pthread_create(&sp, NULL, plain_spawner, NULL) != 0) {
        FAIL("pthread_create");
        exit(1);
    }
    weft_task *wt = weft_spawn_named("churn", walker_task, NULL);
    weft_task *c[8];
    unsigned nc = cur_workers < 8 ? cur_workers : 8;
    for (unsigned i = 0; i < nc; i++)
        c[i] = weft_spawn_named("churn", churn, NULL);
    for (unsigned i = 0; i < nc; i++)
        weft_join(c[i], NULL);
    /* Let the plain spawner stop (it spawns only while the budget lasts). */
    while (pthread_tryjoin_np(sp, NULL) != 0)
        weft_sleep(WEFT_MS);
    atomic_store(&stop_walkers, 1);
    for (int i = 0; i < NWALKERS; i++)
        while (pthread_tryjoin_np(w[i], NULL) != 0)
            weft_sleep(WEFT_MS);
    weft_join(wt, NULL);
    return NULL;
}

int main(void)
{
    stress_init("stress_registry_walk", 4.0, dump_state);
    int64_t t0 = weft_now();
    static const unsigned counts[] = {2, 3, 4};
    for (int i = 0; i < 3; i++) {
        stress_rebudget(1.0 / 3, 4.0);
        weft_config cfg = stress_config(counts[i]);
        void *res;
        int rc = weft_run_config(&cfg, main_task, NULL, &res);
        CHECK(rc == 0, "weft_run_config returned %d (%s)", rc, strerror(-rc));
    }
    return stress_finish("3 runs (%s workers) in %.2f s; %" PRIu64 " walks (%" PRIu64 " entries: %" PRIu64 " ready, %" PRIu64
                         " running, %" PRIu64 " waiting, %" PRIu64 " blocking), %" PRIu64
                         " stats reads, %" PRIu64 " dumps; %" PRIu64
                         " tasks spawned (%" PRIu64 " batches), at most %" PRIu64 " alive",
                         run_workers, (double)(weft_now() - t0) / 1e9, atomic_load(&walks),
                         atomic_load(&entries), atomic_load(&by_state[0]),
                         atomic_load(&by_state[1]), atomic_load(&by_state[2]),
                         atomic_load(&by_state[3]), atomic_load(&stats_calls),
                         atomic_load(&dumps), atomic_load(&spawned), atomic_load(&batches),
                         atomic_load(&max_seen_alive));
}
