/*
 * stress_inject_storm: the injection queue's segments (runtime/inject.c,
 * issue 13) under fire, on 3 workers.  Plain threads spawn bursts (each
 * spawn one push of one task: many small segments, the descriptors full
 * and concatenating) while coroutines spawn bursts larger than a ring (each
 * overflow one push of half a ring plus one: big segments, split across
 * the workers' pops); the workers pop them, split them and steal from each
 * other's rings at once.  Against weft_small (stress_small_inject_storm: a
 * 4-slot ring, 4 descriptors) every few spawns overflow and the
 * descriptors are full nearly always.
 *
 * Each round:
 *  - NTH plain threads spawn PER_THREAD tasks each in bursts of 1-64,
 *    detaching them, with pauses between bursts: none, a yield, a spin, or
 *    a sleep long enough for the workers to go idle, so that bursts also
 *    land on parked workers (protocol 4c through inject_len);
 *  - NCO coroutines spawn BURSTS bursts of 300-600 tasks each (a 256-slot
 *    ring overflows), detaching them, and yield between bursts;
 *  - 1 task in 8 yields once; 1 in 64 spawns a burst of 20 children.
 * The round ends when every spawner is done and every task has finished:
 * the last to finish sets an event that main waits on with a 10 s
 * deadline and nothing else to do (main's worker is idle meanwhile, so a
 * task stranded in the injection queue with every worker asleep shows as
 * a timeout, not as a slow round).
 * Invariants: every spawn succeeds; every task's function runs exactly once
 * (a per-task counter); per round the sum of the ids the tasks saw equals
 * the sum spawned; at the end weft_stats' injected is at least the number
 * of plain-thread spawns (each went through the queue).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#include <weft/sync.h>

#define NTH 2                              /* spawner plain threads */
#define NCO 2                              /* spawner coroutines */
#define PER_THREAD STRESS_SCALE(6000, 600)
#define BURSTS STRESS_SCALE(6, 1)          /* per coroutine per round */
#define CO_MIN 300
#define CO_MAX 600
#define TH_BURST_MAX 64
#define CHILDREN 20
#define CHILD_EVERY 64
#define CAP_PER_ROUND                                                                 \
    ((size_t)(NTH * PER_THREAD + NCO * BURSTS * CO_MAX) * (1 + CHILDREN / CHILD_EVERY + 1))

/* One round's books.  Static and reused (ran is cleared, done cleared):
 * the last task out may still be returning from weft_event_set when main
 * moves on. */
typedef struct {
    _Atomic uint32_t *ran;
    _Atomic uint64_t next_id, finished, id_sum_spawned, id_sum_seen;
    _Atomic int64_t live;            /* spawners and tasks not yet out */
    _Atomic int spawners_left;
    weft_event done;
} round_t;

static round_t round_books;
static round_t *R = &round_books;
static _Atomic uint64_t rounds_done, total_spawned, plain_spawned, total_yields;
static _Atomic int phase;

static void dump(void)
{
    round_t *r = atomic_load(&phase) ? R : NULL;
    fprintf(stderr, "  phase %d, rounds %" PRIu64 ", spawned %" PRIu64 "\n", atomic_load(&phase),
            atomic_load(&rounds_done), atomic_load(&total_spawned));
    if (r) {
        uint64_t n = atomic_load(&r->next_id);
        fprintf(stderr, "  this round: %" PRIu64 " spawned, %" PRIu64 " finished, %d spawners left;",
                n, atomic_load(&r->finished), atomic_load(&r->spawners_left));
        stress_list_never_ran(r->ran, n, CAP_PER_ROUND);
    }
}

/* Any thread: a spawner or a task is out of the round; the last one out
 * ends it (a task's children are counted live before it leaves, so live
 * cannot reach 0 early). */
static void leave(round_t *r)
{
    if (atomic_fetch_sub(&r->live, 1) == 1)
        weft_event_set(&r->done);
}

static void *task_fn(void *arg);

/* Any thread: spawns one task of round r and detaches it. */
static void spawn_one(round_t *r, bool plain)
{
    uint64_t id = atomic_fetch_add(&r->next_id, 1);
    if (id >= CAP_PER_ROUND) {
        FAIL("id space exhausted (%" PRIu64 "): test bug", id);
        abort();
    }
    atomic_fetch_add(&r->live, 1);
    atomic_fetch_add_explicit(&r->id_sum_spawned, id, memory_order_relaxed);
    weft_task *t = weft_spawn(task_fn, (void *)(uintptr_t)id);
    CHECK(t, "weft_spawn from a %s failed: errno %d", plain ? "plain thread" : "coroutine", errno);
    if (!t) {
        atomic_fetch_add(&r->ran[id], 1);  /* keep the books straight */
        atomic_fetch_add(&r->id_sum_seen, id);
        atomic_fetch_add(&r->finished, 1);
        atomic_fetch_sub(&r->live, 1);  /* never 0 here: the spawner is live */
        return;
    }
    atomic_fetch_add_explicit(&total_spawned, 1, memory_order_relaxed);
    if (plain)
        atomic_fetch_add_explicit(&plain_spawned, 1, memory_order_relaxed);
    weft_detach(t);
}

static void *task_fn(void *arg)
{
    round_t *r = R;
    uint64_t id = (uintptr_t)arg;
    uint32_t old = atomic_fetch_add(&r->ran[id], 1);
    CHECK(old == 0, "task %" PRIu64 " ran %u times", id, old + 1);
    atomic_fetch_add_explicit(&r->id_sum_seen, id, memory_order_relaxed);
    uint64_t h = id * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    if (h % CHILD_EVERY == 0) {
        for (int i = 0; i < CHILDREN; i++)
            spawn_one(r, false);
    } else if (h % 8 == 1) {
        int rc = weft_yield();
        CHECK(rc == 0, "weft_yield returned %d", rc);
        atomic_fetch_add_explicit(&total_yields, 1, memory_order_relaxed);
    }
    atomic_fetch_add(&r->finished, 1);
    stress_progress();
    leave(r);
    return NULL;
}

static void *spawner_thread(void *arg)
{
    round_t *r = arg;
    uint64_t seed = rng_seed();
    for (size_t done = 0; done < PER_THREAD;) {
        size_t n = 1 + rng_below(&seed, TH_BURST_MAX);
        if (n > PER_THREAD - done)
            n = PER_THREAD - done;
        for (size_t i = 0; i < n; i++)
            spawn_one(r, true);
        done += n;
        switch (rng_below(&seed, 8)) {
        case 0: sched_yield(); break;
        case 1: stress_spin_ns((int64_t)rng_below(&seed, 50) * WEFT_US); break;
        case 2: stress_os_sleep_ns((int64_t)(100 + rng_below(&seed, 400)) * WEFT_US); break;
        default: break;  /* the next burst at once */
        }
    }
    atomic_fetch_sub(&r->spawners_left, 1);
    leave(r);
    return NULL;
}

static void *spawner_co(void *arg)
{
    round_t *r = arg;
    uint64_t seed = rng_seed();
    for (int b = 0; b < BURSTS; b++) {
        size_t n = CO_MIN + rng_below(&seed, CO_MAX - CO_MIN + 1);
        for (size_t i = 0; i < n; i++)
            spawn_one(r, false);
        weft_yield();
    }
    atomic_fetch_sub(&r->spawners_left, 1);
    leave(r);
    return NULL;
}

static void run_round(void)
{
    round_t *r = R;
    for (size_t i = 0; i < CAP_PER_ROUND; i++)
        atomic_store_explicit(&r->ran[i], 0, memory_order_relaxed);
    atomic_store(&r->next_id, 0);
    atomic_store(&r->finished, 0);
    atomic_store(&r->id_sum_spawned, 0);
    atomic_store(&r->id_sum_seen, 0);
    atomic_store(&r->spawners_left, NTH + NCO);
    atomic_store(&r->live, NTH + NCO);
    weft_event_clear(&r->done);
    atomic_store(&phase, 1);
    pthread_t th[NTH];
    for (int i = 0; i < NTH; i++)
        if (pthread_create(&th[i], NULL, spawner_thread, r) != 0) {
            FAIL("pthread_create failed");
            abort();
        }
    for (int i = 0; i < NCO; i++) {
        weft_task *t = weft_spawn(spawner_co, r);
        CHECK(t, "weft_spawn of a spawner coroutine failed");
        if (!t)
            abort();
        weft_detach(t);
    }
    /* Nothing else to do on this worker: if every worker went to sleep with
     * a task owed to the injection queue, nobody would set the event. */
    int rc = weft_event_wait(&r->done, weft_now() + 10 * WEFT_SEC);
    CHECK(rc == 0, "round %" PRIu64 ": not over within 10 s (%" PRIu64 " spawned, %" PRIu64
          " finished, %d spawners left): a task stranded in the injection queue?",
          atomic_load(&rounds_done), atomic_load(&r->next_id), atomic_load(&r->finished),
          atomic_load(&r->spawners_left));
    if (rc != 0)
        weft_event_wait(&r->done, WEFT_FOREVER);  /* the watchdog reports a hang */
    atomic_store(&phase, 2);
    for (int i = 0; i < NTH; i++)
        pthread_join(th[i], NULL);
    uint64_t n = atomic_load(&r->next_id);
    CHECK(atomic_load(&r->finished) == n, "round %" PRIu64 ": %" PRIu64 " finished of %" PRIu64,
          atomic_load(&rounds_done), atomic_load(&r->finished), n);
    CHECK(atomic_load(&r->id_sum_seen) == atomic_load(&r->id_sum_spawned),
          "round %" PRIu64 ": the tasks saw ids summing to %" PRIu64 ", spawned %" PRIu64,
          atomic_load(&rounds_done), atomic_load(&r->id_sum_seen),
          atomic_load(&r->id_sum_spawned));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = atomic_load(&r->ran[i]);
        CHECK(v == 1, "round %" PRIu64 ": task %" PRIu64 " ran %u times",
              atomic_load(&rounds_done), i, v);
    }
    atomic_fetch_add(&rounds_done, 1);
    stress_progress();
    atomic_store(&phase, 0);
}

static weft_stats stats;
static int stats_rc;

static void *main_task(void *arg)
{
    (void)arg;
    do
        run_round();
    while (!stress_time_up() && !stress_failed());
    stats_rc = weft_stats_get(&stats);
    return NULL;
}

int main(void)
{
    stress_init("stress_inject_storm", 4.0, dump);
    R->ran = calloc(CAP_PER_ROUND, sizeof *R->ran);
    if (!R->ran || weft_event_init(&R->done) != 0)
        return 2;
    stress_run(3, main_task, NULL);
    uint64_t plain = atomic_load(&plain_spawned);
    if (stats_rc == -ENOTSUP) {
        fprintf(stderr, "%s: libweft built with WEFT_OBSERVE=OFF: injected not measured\n",
                stress_name);
    } else {
        CHECK(stats_rc == 0, "weft_stats_get returned %d", stats_rc);
        CHECK(stats.injected >= plain, "injected %" PRIu64 " < %" PRIu64 " spawned from plain threads",
              stats.injected, plain);
    }
    uint64_t spawned = atomic_load(&total_spawned);
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks (%" PRIu64
                         " from plain threads), %" PRIu64 " yields; %" PRIu64
                         " injected, %" PRIu64 " stolen",
                         atomic_load(&rounds_done), spawned, plain, atomic_load(&total_yields),
                         stats.injected, stats.steals);
}
