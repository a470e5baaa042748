/*
 * stress_spawn_storm: spawn storms from coroutines and from plain threads at
 * once, on 4 workers.
 *
 * Each round:
 *  - 4 spawner coroutines spawn S tasks each and release them: joined in
 *    spawn order, in reverse order, or gathered in batches, with some
 *    detached at once;
 *  - 3 plain threads spawn S tasks each while the runtime runs; a quarter
 *    are detached by the thread, the rest handed to a collector coroutine
 *    that joins them;
 *  - some tasks spawn a child and join it, some yield once, a few spin 3 ms
 *    without suspending (so sysmon flags their worker blocked and the
 *    help-blocked paths run while the run queues are full).
 * Invariants: every spawn succeeds; every task's function runs exactly once
 * (a per-task counter catches a lost or doubled run); every join/gather
 * returns 0 with the task's own result; when the round is over the number
 * of tasks that ran equals the number spawned.
 *
 * Then an idle-injection probe: with every worker idle (main waits on an
 * event with no deadline, so no timer wakes anyone), a plain thread spawns
 * one task at a time at random moments (often just as the workers park) and
 * waits for it to run; finally it sets main's event from the plain thread.
 * Invariant: each injected task runs and the event wakes main within 10 s (a
 * lost wake-up of the parking protocol would leave them queued forever).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include <semaphore.h>

#include "stress.h"

#define NCO 4                       /* spawner coroutines */
#define NTH 3                       /* spawner plain threads */
#define PER_SPAWNER STRESS_SCALE(3000, 150)
#define HOG_EVERY 1500              /* 1 task in HOG_EVERY spins 3 ms */
#define CHILD_BIT ((uintptr_t)1 << 62)

typedef struct {
    size_t cap;
    _Atomic uint32_t *ran;
    _Atomic uint64_t next_id;
    _Atomic uint64_t finished;
    pthread_mutex_t mu;             /* collector queue */
    weft_task **q;
    uint64_t *qid;
    size_t qn, qhead, qcap;
    _Atomic int threads_done;
} round_t;

static round_t *R;                  /* the current round (set before spawning) */
static _Atomic uint64_t total_spawned, total_joined, total_detached, rounds_done;
static _Atomic uint64_t probes_done, probe_max_ns;
static int64_t slowest_round_ns;
static _Atomic int phase;           /* for the watchdog's dump */

static void dump(void)
{
    round_t *r = R;
    fprintf(stderr, "  phase %d, rounds %" PRIu64 ", spawned %" PRIu64 ", probes %" PRIu64 "\n",
            atomic_load(&phase), atomic_load(&rounds_done), atomic_load(&total_spawned),
            atomic_load(&probes_done));
    if (r && atomic_load(&phase) == 1) {
        uint64_t n = atomic_load(&r->next_id), fin = atomic_load(&r->finished);
        fprintf(stderr, "  this round: %" PRIu64 " spawned, %" PRIu64 " finished;", n, fin);
        stress_list_never_ran(r->ran, n, r->cap);
    }
}

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return x;
}

static inline void *expect_of(uint64_t id) { return (void *)(uintptr_t)(mix(id) | 1); }

static uint64_t alloc_id(void)
{
    uint64_t id = atomic_fetch_add(&R->next_id, 1);
    if (id >= R->cap) {
        FAIL("id space exhausted (%" PRIu64 " >= %zu): test bug", id, R->cap);
        abort();
    }
    atomic_fetch_add_explicit(&total_spawned, 1, memory_order_relaxed);
    return id;
}

static void *task_fn(void *arg)
{
    uintptr_t a = (uintptr_t)arg;
    uint64_t id = a & ~CHILD_BIT;
    uint32_t old = atomic_fetch_add(&R->ran[id], 1);
    CHECK(old == 0, "task %" PRIu64 " ran %u times", id, old + 1);
    uint64_t h = mix(id * 7 + 3);
    if (!(a & CHILD_BIT) && h % 16 == 0) {
        uint64_t cid = alloc_id();
        weft_task *c = weft_spawn(task_fn, (void *)(uintptr_t)(cid | CHILD_BIT));
        CHECK(c, "nested weft_spawn failed: errno %d", errno);
        if (c) {
            void *res = NULL;
            int rc = weft_join(c, &res);
            CHECK(rc == 0, "nested join of %" PRIu64 " returned %d", cid, rc);
            CHECK(res == expect_of(cid), "nested join of %" PRIu64 ": wrong result", cid);
            atomic_fetch_add_explicit(&total_joined, 1, memory_order_relaxed);
        }
    } else if (h % 4 == 1) {
        int rc = weft_yield();
        CHECK(rc == 0, "weft_yield returned %d", rc);
    } else if (h % HOG_EVERY == 2) {
        stress_spin_ns(3 * WEFT_MS);
    }
    atomic_fetch_add(&R->finished, 1);
    stress_progress();
    return expect_of(id);
}

static void check_join(int rc, void *res, uint64_t id, const char *how)
{
    CHECK(rc == 0, "%s of task %" PRIu64 " returned %d", how, id, rc);
    CHECK(res == expect_of(id), "%s of task %" PRIu64 ": result %p, expected %p", how, id, res,
          expect_of(id));
    atomic_fetch_add_explicit(&total_joined, 1, memory_order_relaxed);
}

/* A spawner coroutine: mode 0 joins in order, 1 in reverse, 2 gathers. */
static void *spawner_co(void *arg)
{
    int mode = (int)(uintptr_t)arg % 3;
    uint64_t seed = rng_seed();
    size_t n = PER_SPAWNER;
    weft_task **ts = calloc(n, sizeof *ts);
    uint64_t *ids = calloc(n, sizeof *ids);
    void **res = calloc(n, sizeof *res);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = alloc_id();
        weft_task *t = weft_spawn(task_fn, (void *)(uintptr_t)id);
        CHECK(t, "weft_spawn from a coroutine failed: errno %d", errno);
        if (!t)
            continue;
        if (rng_below(&seed, 8) == 0) {
            weft_detach(t);
            atomic_fetch_add_explicit(&total_detached, 1, memory_order_relaxed);
            continue;
        }
        ts[k] = t;
        ids[k++] = id;
        if (rng_below(&seed, 64) == 0)
            weft_yield();  /* let some run while the storm goes on */
    }
    if (mode == 0) {
        for (size_t i = 0; i < k; i++) {
            void *r = NULL;
            int rc = weft_join(ts[i], &r);
            check_join(rc, r, ids[i], "join");
        }
    } else if (mode == 1) {
        for (size_t i = k; i-- > 0;) {
            void *r = NULL;
            int rc = weft_join(ts[i], &r);
            check_join(rc, r, ids[i], "reverse join");
        }
    } else {
        for (size_t i = 0; i < k; i += 64) {
            size_t m = k - i < 64 ? k - i : 64;
            int rc = weft_gather(ts + i, m, res + i);
            CHECK(rc == 0, "weft_gather returned %d", rc);
            for (size_t j = i; j < i + m; j++)
                check_join(0, res[j], ids[j], "gather");
        }
    }
    free(ts);
    free(ids);
    free(res);
    return NULL;
}

static void *spawner_thread(void *arg)
{
    uint64_t seed = rng_seed() ^ (uintptr_t)arg;
    for (size_t i = 0; i < PER_SPAWNER; i++) {
        uint64_t id = alloc_id();
        weft_task *t = weft_spawn(task_fn, (void *)(uintptr_t)id);
        CHECK(t, "weft_spawn from a plain thread failed: errno %d", errno);
        if (!t)
            continue;
        if (rng_below(&seed, 4) == 0) {
            weft_detach(t);
            atomic_fetch_add_explicit(&total_detached, 1, memory_order_relaxed);
        } else {
            pthread_mutex_lock(&R->mu);
            if (R->qn == R->qcap) {
                FAIL("collector queue overflow: test bug");
                abort();
            }
            R->q[R->qn] = t;
            R->qid[R->qn++] = id;
            pthread_mutex_unlock(&R->mu);
        }
        if (rng_below(&seed, 128) == 0)
            sched_yield();
    }
    atomic_fetch_add(&R->threads_done, 1);
    return NULL;
}

/* Joins what the plain threads spawned. */
static void *collector_co(void *arg)
{
    (void)arg;
    for (;;) {
        weft_task *t = NULL;
        uint64_t id = 0;
        bool all_done = atomic_load(&R->threads_done) == NTH;
        pthread_mutex_lock(&R->mu);
        if (R->qhead < R->qn) {
            t = R->q[R->qhead];
            id = R->qid[R->qhead++];
        }
        pthread_mutex_unlock(&R->mu);
        if (t) {
            void *r = NULL;
            int rc = weft_join(t, &r);
            check_join(rc, r, id, "collector join");
        } else if (all_done) {
            return NULL;
        } else {
            weft_sleep(50 * WEFT_US);
        }
    }
}

static void run_round(void)
{
    int64_t t0 = weft_now();
    round_t *r = calloc(1, sizeof *r);
    size_t base = (size_t)(NCO + NTH) * PER_SPAWNER;
    r->cap = base + base / 4 + 1024;  /* nested children: ~1/16 of the tasks */
    r->ran = calloc(r->cap, sizeof *r->ran);
    r->qcap = (size_t)NTH * PER_SPAWNER;
    r->q = calloc(r->qcap, sizeof *r->q);
    r->qid = calloc(r->qcap, sizeof *r->qid);
    pthread_mutex_init(&r->mu, NULL);
    R = r;
    atomic_store(&phase, 1);

    pthread_t th[NTH];
    for (int i = 0; i < NTH; i++)
        if (pthread_create(&th[i], NULL, spawner_thread, (void *)(uintptr_t)(i + 1)) != 0) {
            FAIL("pthread_create failed");
            abort();
        }
    weft_task *co[NCO + 1];
    for (int i = 0; i < NCO; i++) {
        co[i] = weft_spawn(spawner_co, (void *)(uintptr_t)i);
        CHECK(co[i], "weft_spawn of a spawner failed");
    }
    co[NCO] = weft_spawn(collector_co, NULL);
    CHECK(co[NCO], "weft_spawn of the collector failed");
    for (int i = 0; i <= NCO; i++)
        if (co[i]) {
            int rc = weft_join(co[i], NULL);
            CHECK(rc == 0, "join of spawner %d returned %d", i, rc);
        }
    for (int i = 0; i < NTH; i++)
        pthread_join(th[i], NULL);

    /* Detached tasks: wait until every spawned task has finished. */
    for (;;) {
        uint64_t n = atomic_load(&r->next_id), f = atomic_load(&r->finished);
        if (f == n)
            break;
        CHECK(f < n, "more tasks finished (%" PRIu64 ") than were spawned (%" PRIu64 ")", f, n);
        if (f > n)
            break;
        weft_sleep(100 * WEFT_US);
    }
    uint64_t n = atomic_load(&r->next_id);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = atomic_load(&r->ran[i]);
        CHECK(v == 1, "round %" PRIu64 ": task %" PRIu64 " ran %u times", atomic_load(&rounds_done),
              i, v);
    }
    CHECK(r->qhead == r->qn, "collector left %zu handles", r->qn - r->qhead);
    atomic_fetch_add(&rounds_done, 1);
    stress_progress();
    atomic_store(&phase, 0);
    if (weft_now() - t0 > slowest_round_ns)
        slowest_round_ns = weft_now() - t0;
    R = NULL;
    pthread_mutex_destroy(&r->mu);
    free(r->ran);
    free(r->q);
    free(r->qid);
    free(r);
}

/* ---------------- idle-injection probe ---------------- */

typedef struct {
    weft_event ev;
    _Atomic int main_woke;
    int iters;
    sem_t sem;
    _Atomic int64_t spawned_at;
} probe_t;

static void *probe_task(void *arg)
{
    probe_t *p = arg;
    int64_t lat = weft_now() - atomic_load(&p->spawned_at);
    uint64_t cur = atomic_load(&probe_max_ns);
    while ((uint64_t)lat > cur && !atomic_compare_exchange_weak(&probe_max_ns, &cur, (uint64_t)lat))
        ;
    sem_post(&p->sem);
    return NULL;
}

/* 10 s: a lost wake-up leaves the task queued forever; a loaded machine
 * delays it by at most hundreds of milliseconds. */
static bool sem_wait_10s(sem_t *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while (sem_timedwait(s, &ts) != 0) {
        if (errno == ETIMEDOUT)
            return false;
    }
    return true;
}

static void *probe_thread(void *arg)
{
    probe_t *p = arg;
    uint64_t seed = rng_seed();
    for (int i = 0; i < p->iters; i++) {
        /* Spawn at a random phase of the workers going idle. */
        uint64_t d = rng_below(&seed, 4);
        if (d == 0)
            stress_os_sleep_ns((int64_t)rng_below(&seed, 300) * WEFT_US);
        else if (d == 1)
            sched_yield();
        else
            stress_spin_ns((int64_t)rng_below(&seed, 60000));
        atomic_store(&p->spawned_at, weft_now());
        weft_task *t = weft_spawn(probe_task, p);
        CHECK(t, "probe: weft_spawn from a plain thread failed: errno %d", errno);
        if (!t)
            continue;
        if (!sem_wait_10s(&p->sem)) {
            FAIL("probe %d: a task spawned from a plain thread while the workers were idle did "
                 "not run within 10 s (lost wake-up: no worker was woken for the injection queue)",
                 i);
            sem_wait(&p->sem);  /* it runs when something else wakes a worker */
        }
        weft_detach(t);
        atomic_fetch_add(&probes_done, 1);
        stress_progress();
    }
    /* Wake main from this plain thread, again into an idle runtime. */
    stress_os_sleep_ns((int64_t)rng_below(&seed, 300) * WEFT_US);
    weft_event_set(&p->ev);
    int64_t deadline = weft_now() + 10 * WEFT_SEC;
    while (!atomic_load(&p->main_woke)) {
        if (weft_now() > deadline) {
            FAIL("probe: weft_event_set from a plain thread did not wake the waiting main task "
                 "within 10 s (lost wake-up)");
            break;
        }
        stress_os_sleep_ns(100 * WEFT_US);
    }
    return NULL;
}

static void run_probe(int iters)
{
    atomic_store(&phase, 2);
    probe_t *p = calloc(1, sizeof *p);
    weft_event_init(&p->ev);
    sem_init(&p->sem, 0, 0);
    p->iters = iters;
    pthread_t th;
    if (pthread_create(&th, NULL, probe_thread, p) != 0) {
        FAIL("pthread_create failed");
        abort();
    }
    int rc = weft_event_wait(&p->ev, WEFT_FOREVER);
    CHECK(rc == 0, "probe: main's event wait returned %d", rc);
    atomic_store(&p->main_woke, 1);
    pthread_join(th, NULL);
    weft_event_destroy(&p->ev);
    sem_destroy(&p->sem);
    free(p);
    atomic_store(&phase, 0);
}

static void *main_task(void *arg)
{
    (void)arg;
    CHECK(weft_workers() >= 2, "want at least 2 workers, have %u", weft_workers());
    do {
        run_round();
        if (stress_failed())
            break;
        run_probe(STRESS_SCALE(200, 40));
    } while (!stress_time_up() && !stress_failed());
    return NULL;
}

int main(void)
{
    stress_init("stress_spawn_storm", 4.0, dump);
    stress_run(4, main_task, NULL);
    return stress_finish("%" PRIu64 " rounds (slowest %.0f ms), %" PRIu64 " tasks spawned (%" PRIu64 " joined, %" PRIu64
                         " detached), %" PRIu64 " idle-injection probes (max latency %.1f us)",
                         atomic_load(&rounds_done), (double)slowest_round_ns / 1e6,
                         atomic_load(&total_spawned),
                         atomic_load(&total_joined), atomic_load(&total_detached),
                         atomic_load(&probes_done), (double)atomic_load(&probe_max_ns) / 1e3);
}
