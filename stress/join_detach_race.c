/*
 * stress_join_detach_race: join and detach racing with the task's finish,
 * on 4 workers.  Meant for ASan as much as TSan: a handle used after the
 * task freed itself, or a joiner woken after it left, shows up there.
 *
 * Scenarios, mixed in every round:
 *  - join race: a spawner starts a quick task (returns at once, after a
 *    yield, or after a few microseconds of spinning) and hands its handle to
 *    a joiner coroutine spawned right after it, which waits a random moment
 *    and joins, so the joiner registers as the task finishes on another
 *    worker;
 *  - polled join: weft_task_done() polled, then join (the finished path);
 *  - detach race: a quick task detached by its spawner a random moment
 *    after the spawn, from a coroutine or from a plain thread (some handles
 *    cross threads: spawned by a coroutine, detached by a plain thread);
 *  - chains: each task spawns the next and joins it (join while the joiner
 *    is itself being joined), results summed up the chain;
 *  - gather of a batch of quick tasks, some already finished;
 *  - wait_for with a generous deadline (finishes first: 0).
 * Each task owns a malloc'ed argument that it frees (detached tasks) or
 * that the joiner frees after checking it (joined tasks), so a doubled run
 * or a stale handle is a double free / use after free under ASan.
 * Invariants: every task's function ran exactly once (per-task counters);
 * every join, gather and wait_for returned 0 and the task's own result; all
 * detached tasks finish; ran == spawned at the end of each round.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define PAIRS STRESS_SCALE(400, 40)
#define DETACHES STRESS_SCALE(400, 40)
#define CHAINS 4
#define CHAIN_LEN STRESS_SCALE(200, 20)
#define GATHER_N 32
#define NTH 2
#define MAXID (1u << 22)

typedef struct {
    uint32_t id;
    uint32_t delay;   /* what the task does before returning */
    uint64_t magic;
} arg_t;

static _Atomic uint32_t *ran;            /* MAXID counters, reused each round */
static _Atomic uint32_t next_id;
static _Atomic uint64_t finished_round;  /* tasks finished this round */
static _Atomic uint64_t n_joined, n_detached, n_chained, n_gathered, n_waited, n_rounds;

/* Plain-thread detach queue. */
static pthread_mutex_t dq_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_task *dq[4096];
static size_t dq_n;
static _Atomic int stop_threads;

static void dump(void)
{
    fprintf(stderr, "  round %" PRIu64 ": %u spawned, %" PRIu64 " finished; joined %" PRIu64
                    ", detached %" PRIu64 "\n",
            atomic_load(&n_rounds), atomic_load(&next_id), atomic_load(&finished_round),
            atomic_load(&n_joined), atomic_load(&n_detached));
    uint32_t n = atomic_load(&next_id);
    int shown = 0;
    fprintf(stderr, "  never ran:");
    for (uint32_t i = 0; i < n && i < MAXID && shown < 20; i++)
        if (atomic_load(&ran[i]) == 0) {
            fprintf(stderr, " %u", i);
            shown++;
        }
    fprintf(stderr, "\n");
}

static void *result_of(uint32_t id) { return (void *)(uintptr_t)(((uint64_t)id << 4) | 0xB); }

static arg_t *new_arg(uint64_t *seed)
{
    arg_t *a = malloc(sizeof *a);
    a->id = atomic_fetch_add(&next_id, 1);
    if (a->id >= MAXID) {
        FAIL("id space exhausted: test bug");
        abort();
    }
    a->delay = (uint32_t)rng_below(seed, 6);
    a->magic = 0x5EED0000ULL + a->id;
    return a;
}

static void *quick_fn(void *p)
{
    arg_t *a = p;
    CHECK(a->magic == 0x5EED0000ULL + a->id, "task arg corrupted (freed and reused?)");
    uint32_t old = atomic_fetch_add(&ran[a->id], 1);
    CHECK(old == 0, "task %u ran %u times", a->id, old + 1);
    switch (a->delay) {
    case 0:
    case 1:
        break;
    case 2:
        weft_yield();
        break;
    case 3:
        stress_spin_ns(2 * WEFT_US);
        break;
    case 4:
        stress_spin_ns(20 * WEFT_US);
        break;
    case 5:
        weft_sleep(0);
        break;
    }
    atomic_fetch_add(&finished_round, 1);
    stress_progress();
    return result_of(a->id);
}

/* Detached tasks free their own argument. */
static void *detached_fn(void *p)
{
    arg_t *a = p;
    void *r = quick_fn(p);
    a->magic = 0xDEAD;
    free(a);
    return r;
}

static void check_result(int rc, void *res, arg_t *a, const char *how)
{
    CHECK(rc == 0, "%s of task %u returned %d", how, a->id, rc);
    CHECK(res == result_of(a->id), "%s of task %u: result %p, expected %p", how, a->id, res,
          result_of(a->id));
    CHECK(atomic_load(&ran[a->id]) == 1, "%s of task %u: returned while it ran %u times", how,
          a->id, atomic_load(&ran[a->id]));
}

/* ---- join race ---- */

typedef struct {
    weft_task *t;
    arg_t *a;
    uint32_t delay;
    bool poll;
} joiner_arg;

static void *joiner_fn(void *p)
{
    joiner_arg *j = p;
    if (j->poll) {
        while (!weft_task_done(j->t))
            weft_yield();
    } else if (j->delay == 1) {
        weft_yield();
    } else if (j->delay == 2) {
        stress_spin_ns(3 * WEFT_US);
    } else if (j->delay == 3) {
        stress_spin_ns(15 * WEFT_US);
    }
    void *res = NULL;
    int rc = weft_join(j->t, &res);
    check_result(rc, res, j->a, j->poll ? "polled join" : "racing join");
    free(j->a);
    free(j);
    atomic_fetch_add_explicit(&n_joined, 1, memory_order_relaxed);
    return NULL;
}

static void *join_race_co(void *p)
{
    (void)p;
    uint64_t seed = rng_seed();
    weft_task **js = malloc(sizeof *js * PAIRS);
    int n = 0;
    for (int i = 0; i < PAIRS && !(i >= 8 && stress_time_up()); i++, n++) {
        arg_t *a = new_arg(&seed);
        weft_task *t = weft_spawn(quick_fn, a);
        CHECK(t, "spawn failed");
        joiner_arg *j = malloc(sizeof *j);
        *j = (joiner_arg){t, a, (uint32_t)rng_below(&seed, 4), rng_below(&seed, 8) == 0};
        /* Spawned second, the joiner lands in runnext and the task in the
         * ring, where an idle worker steals it: they run in parallel. */
        js[i] = weft_spawn(joiner_fn, j);
        CHECK(js[i], "spawn failed");
        if (rng_below(&seed, 4) == 0)
            weft_yield();
    }
    for (int i = 0; i < n; i++)
        CHECK(weft_join(js[i], NULL) == 0, "joiner join failed");
    free(js);
    return NULL;
}

/* ---- detach race ---- */

static void *detach_race_co(void *p)
{
    (void)p;
    uint64_t seed = rng_seed();
    for (int i = 0; i < DETACHES && !(i >= 8 && stress_time_up()); i++) {
        arg_t *a = new_arg(&seed);
        weft_task *t = weft_spawn(detached_fn, a);
        CHECK(t, "spawn failed");
        uint64_t d = rng_below(&seed, 6);
        if (d == 1)
            weft_yield();
        else if (d == 2)
            stress_spin_ns((int64_t)rng_below(&seed, 10) * WEFT_US);
        if (d == 3) {
            /* Hand it to a plain thread to detach. */
            pthread_mutex_lock(&dq_mu);
            bool full = dq_n == sizeof dq / sizeof dq[0];
            if (!full)
                dq[dq_n++] = t;
            pthread_mutex_unlock(&dq_mu);
            if (!full)
                continue;
        }
        weft_detach(t);
        atomic_fetch_add_explicit(&n_detached, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *detach_thread(void *p)
{
    uint64_t seed = rng_seed() ^ (uintptr_t)p;
    while (!atomic_load(&stop_threads)) {
        /* Keep a bounded number of our tasks in flight: a plain thread
         * spawns much faster than sanitized workers run. */
        if (atomic_load(&next_id) > MAXID / 2 ||
            atomic_load(&next_id) - atomic_load(&finished_round) > 256) {
            stress_os_sleep_ns(200 * WEFT_US);
            continue;
        }
        /* Spawn-and-detach from a plain thread too. */
        arg_t *a = new_arg(&seed);
        weft_task *t = weft_spawn(detached_fn, a);
        CHECK(t, "spawn from a plain thread failed");
        if (rng_below(&seed, 2))
            stress_spin_ns((int64_t)rng_below(&seed, 30) * WEFT_US);
        weft_detach(t);
        atomic_fetch_add_explicit(&n_detached, 1, memory_order_relaxed);
        /* And detach what the coroutines handed over. */
        weft_task *batch[64];
        size_t n = 0;
        pthread_mutex_lock(&dq_mu);
        while (dq_n > 0 && n < 64)
            batch[n++] = dq[--dq_n];
        pthread_mutex_unlock(&dq_mu);
        for (size_t i = 0; i < n; i++) {
            weft_detach(batch[i]);
            atomic_fetch_add_explicit(&n_detached, 1, memory_order_relaxed);
        }
        if (n == 0)
            stress_os_sleep_ns((int64_t)rng_below(&seed, 100) * WEFT_US);
    }
    return NULL;
}

/* ---- chains ---- */

static void *chain_fn(void *p)
{
    uintptr_t left = (uintptr_t)p;
    uint64_t seed = rng_seed();
    arg_t *a = new_arg(&seed);
    uint32_t old = atomic_fetch_add(&ran[a->id], 1);
    CHECK(old == 0, "chain task %u ran %u times", a->id, old + 1);
    uintptr_t sum = 1;
    if (left > 1) {
        weft_task *c = weft_spawn(chain_fn, (void *)(left - 1));
        CHECK(c, "chain spawn failed");
        if (rng_below(&seed, 3) == 0)
            weft_yield();
        void *r = NULL;
        int rc = weft_join(c, &r);
        CHECK(rc == 0, "chain join returned %d", rc);
        CHECK((uintptr_t)r == left - 1, "chain join: sum %zu, expected %zu", (size_t)(uintptr_t)r,
              (size_t)(left - 1));
        sum += (uintptr_t)r;
    }
    atomic_fetch_add_explicit(&n_chained, 1, memory_order_relaxed);
    atomic_fetch_add(&finished_round, 1);
    stress_progress();
    free(a);
    return (void *)sum;
}

/* ---- gather and wait_for ---- */

static void *gather_co(void *p)
{
    (void)p;
    uint64_t seed = rng_seed();
    for (int round = 0; round < STRESS_SCALE(20, 3) && !(round >= 1 && stress_time_up()); round++) {
        weft_task *ts[GATHER_N];
        arg_t *as[GATHER_N];
        void *res[GATHER_N];
        for (int i = 0; i < GATHER_N; i++) {
            as[i] = new_arg(&seed);
            ts[i] = weft_spawn(quick_fn, as[i]);
            CHECK(ts[i], "spawn failed");
        }
        if (rng_below(&seed, 2))
            weft_yield();
        int rc = weft_gather(ts, GATHER_N, res);
        for (int i = 0; i < GATHER_N; i++) {
            check_result(rc, res[i], as[i], "gather");
            free(as[i]);
        }
        atomic_fetch_add_explicit(&n_gathered, GATHER_N, memory_order_relaxed);
        /* wait_for that the task wins. */
        arg_t *a = new_arg(&seed);
        weft_task *t = weft_spawn(quick_fn, a);
        void *r = NULL;
        rc = weft_wait_for(t, weft_now() + 10 * WEFT_SEC, &r);
        check_result(rc, r, a, "wait_for");
        free(a);
        atomic_fetch_add_explicit(&n_waited, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *main_task(void *p)
{
    (void)p;
    pthread_t th[NTH];
    for (int i = 0; i < NTH; i++)
        if (pthread_create(&th[i], NULL, detach_thread, (void *)(uintptr_t)(i + 1)) != 0)
            abort();
    do {
        weft_task *ts[8];
        int n = 0;
        ts[n++] = weft_spawn(join_race_co, NULL);
        ts[n++] = weft_spawn(join_race_co, NULL);
        ts[n++] = weft_spawn(detach_race_co, NULL);
        ts[n++] = weft_spawn(detach_race_co, NULL);
        ts[n++] = weft_spawn(gather_co, NULL);
        weft_task *chains[CHAINS];
        for (int c = 0; c < CHAINS; c++)
            chains[c] = weft_spawn(chain_fn, (void *)(uintptr_t)CHAIN_LEN);
        for (int i = 0; i < n; i++)
            CHECK(weft_join(ts[i], NULL) == 0, "driver join failed");
        for (int c = 0; c < CHAINS; c++) {
            void *r = NULL;
            int rc = weft_join(chains[c], &r);
            CHECK(rc == 0 && (uintptr_t)r == CHAIN_LEN, "chain of %d: join %d, sum %zu", CHAIN_LEN,
                  rc, (size_t)(uintptr_t)r);
        }
        /* End of round: stop the threads' own spawning and drain their
         * queue, wait for every detached task, check the counters. */
        atomic_store(&stop_threads, 1);
        for (int i = 0; i < NTH; i++)
            pthread_join(th[i], NULL);
        pthread_mutex_lock(&dq_mu);
        while (dq_n > 0) {
            weft_detach(dq[--dq_n]);
            atomic_fetch_add_explicit(&n_detached, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&dq_mu);
        for (;;) {
            uint32_t spawned = atomic_load(&next_id);
            uint64_t fin = atomic_load(&finished_round);
            if (fin == spawned)
                break;
            CHECK(fin < spawned, "more finished (%" PRIu64 ") than spawned (%u)", fin, spawned);
            if (fin > spawned)
                break;
            weft_sleep(100 * WEFT_US);
        }
        uint32_t spawned = atomic_load(&next_id);
        for (uint32_t i = 0; i < spawned; i++) {
            uint32_t v = atomic_load(&ran[i]);
            CHECK(v == 1, "round %" PRIu64 ": task %u ran %u times", atomic_load(&n_rounds), i, v);
            atomic_store(&ran[i], 0);
        }
        atomic_store(&next_id, 0);
        atomic_store(&finished_round, 0);
        atomic_fetch_add(&n_rounds, 1);
        stress_progress();
        if (stress_time_up() || stress_failed())
            break;
        atomic_store(&stop_threads, 0);
        for (int i = 0; i < NTH; i++)
            if (pthread_create(&th[i], NULL, detach_thread, (void *)(uintptr_t)(i + 1)) != 0)
                abort();
    } while (1);
    return NULL;
}

int main(void)
{
    ran = calloc(MAXID, sizeof *ran);
    stress_init("stress_join_detach_race", 4.0, dump);
    stress_run(4, main_task, NULL);
    free((void *)ran);
    return stress_finish("%" PRIu64 " rounds: %" PRIu64 " racing joins, %" PRIu64 " detaches, %" PRIu64
                         " chained, %" PRIu64 " gathered, %" PRIu64 " wait_for",
                         atomic_load(&n_rounds), atomic_load(&n_joined), atomic_load(&n_detached),
                         atomic_load(&n_chained), atomic_load(&n_gathered), atomic_load(&n_waited));
}
