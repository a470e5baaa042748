/*
 * stress_active_storm: the active worker limit (runtime/active.c) flipped
 * rapidly between 1 and 4 by a plain thread while coroutines spawn trees of
 * tasks that yield, steal and sleep (their timers sit in the wheels of
 * workers that may be made excess at any moment).  White-box: it calls
 * weft__active_set, the call sysmon makes when the cgroup quota changes,
 * and reads the workers' excess flags and ticks (runtime/internal.h; linked
 * against the static library).  4 workers given explicitly, so sysmon
 * follows no quota and the flipper is the only setter.
 *
 * Invariants:
 *  - every task runs exactly once, whatever the limit did while it was
 *    queued, sleeping or running (counted per task, checked every round);
 *  - every so often the flipper holds a limit k: within 10 s every worker
 *    at or above k sleeps as excess, and then runs no task for 5 ms (its
 *    tick does not move); raised again, every worker is awake within 10 s;
 *  - the limit reads back as set (weft_workers_active, weft_stats).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "internal.h"
#include "stress.h"
#include "rng.h"

#define NWORKERS 4
#define ROUND_TASKS STRESS_SCALE(3000, 400)
#define CAP (ROUND_TASKS * 4)

static _Atomic uint32_t *ran;
static _Atomic uint32_t next_id;
static _Atomic uint64_t flips, holds, tasks_total, rounds;
static _Atomic bool flipper_stop, flipper_done;
static weft__runtime *the_rt;

static void dump(void)
{
    fprintf(stderr,
            "  rounds %" PRIu64 ", tasks %" PRIu64 ", flips %" PRIu64 ", holds %" PRIu64
            ", limit %u\n",
            atomic_load(&rounds), atomic_load(&tasks_total), atomic_load(&flips),
            atomic_load(&holds), the_rt ? atomic_load(&the_rt->active) : 0);
    if (ran)
        stress_list_never_ran(ran, atomic_load(&next_id), CAP);
}

static void *task(void *arg);

/* Spawns a child if there is room left in this round's ids. */
static weft_task *spawn_child(uint64_t seed)
{
    uint32_t id = atomic_fetch_add(&next_id, 1);
    if (id >= CAP)
        return NULL;
    weft_task *h = weft_spawn(task, (void *)(uintptr_t)((seed << 24) | id));
    CHECK(h != NULL, "spawn failed");
    return h;
}

static void *task(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    uint32_t id = (uint32_t)(v & 0xffffff);
    uint64_t r = ((uint64_t)(v >> 24) ^ id) | 1;
    int yields = (int)rng_below(&r, 6);
    for (int i = 0; i < yields; i++)
        CHECK(weft_yield() == 0, "yield failed");
    if (rng_below(&r, 8) == 0)
        weft_sleep((int64_t)rng_below(&r, 300) * 1000);  /* a timer in this worker's wheel */
    weft_task *kids[2] = {NULL, NULL};
    if (rng_below(&r, 4) == 0)
        for (int k = 0; k < 2; k++)
            kids[k] = spawn_child(rng_next(&r));
    for (int k = 0; k < 2; k++)
        if (kids[k])
            CHECK(weft_join(kids[k], NULL) == 0, "join failed");
    uint32_t was = atomic_fetch_add(&ran[id], 1);
    CHECK(was == 0, "task %u ran %u times", id, was + 1);
    atomic_fetch_add(&tasks_total, 1);
    stress_progress();
    return NULL;
}

/* Plain thread: waits for every worker's excess flag to say whether it is
 * at or above k (true) or below (false: awake), for up to 10 s of time this
 * process was running: each 100 us nap counts at most 50 ms, so a stall of
 * the whole machine (a loaded VM) is not taken for a hang. */
static bool await_excess(unsigned k, bool check_above_only)
{
    int64_t waited = 0, last = weft_now();
    for (;;) {
        bool ok = true;
        for (unsigned i = 0; i < NWORKERS; i++) {
            bool ex = atomic_load(&the_rt->workers[i]->excess);
            if (i >= k ? !ex : (!check_above_only && ex))
                ok = false;
        }
        if (ok)
            return true;
        int64_t now = weft_now();
        waited += now - last < 50 * WEFT_MS ? now - last : 50 * WEFT_MS;
        last = now;
        if (waited > 10 * WEFT_SEC)
            return false;
        stress_os_sleep_ns(100000);
    }
}

static void hold(unsigned k)
{
    weft__active_set(the_rt, k);
    CHECK(weft_workers_active() == k, "limit reads %u, set %u", weft_workers_active(), k);
    if (!await_excess(k, true)) {
        for (unsigned i = k; i < NWORKERS; i++) {
            weft__worker *w = the_rt->workers[i];
            CHECK(atomic_load(&w->excess),
                  "limit %u: worker %u not asleep as excess after 10 s (running %d, tick %#" PRIx64
                  ", blocked %d, queue %u, timers next in %" PRId64 " us)",
                  k, i, atomic_load(&w->running), (uint64_t)atomic_load(&w->tick),
                  (int)atomic_load(&w->blocked), weft__runq_len(w),
                  (weft__timers_next(&w->timers) - weft_now()) / 1000);
        }
        return;
    }
    uint64_t before[NWORKERS];
    for (unsigned i = k; i < NWORKERS; i++)
        before[i] = atomic_load(&the_rt->workers[i]->tick) >> 16;
    stress_os_sleep_ns(5 * 1000000);
    for (unsigned i = k; i < NWORKERS; i++) {
        uint64_t now = atomic_load(&the_rt->workers[i]->tick) >> 16;
        CHECK(now == before[i], "excess worker %u ran %" PRIu64 " tasks under limit %u", i,
              now - before[i], k);
    }
    weft_stats st;
    if (weft_stats_get(&st) == 0)
        CHECK(st.active_workers == k, "weft_stats: %u active, limit %u", st.active_workers, k);
    weft__active_set(the_rt, NWORKERS);
    CHECK(await_excess(NWORKERS, false), "raised to %u: not every worker awake after 10 s",
          NWORKERS);
    atomic_fetch_add(&holds, 1);
}

static void *flipper(void *arg)
{
    (void)arg;
    uint64_t r = rng_seed();
    while (!atomic_load(&flipper_stop)) {
        uint64_t n = atomic_fetch_add(&flips, 1);
        if (n % 200 == 199) {
            hold(1 + (unsigned)rng_below(&r, NWORKERS - 1));
            continue;
        }
        weft__active_set(the_rt, 1 + (unsigned)rng_below(&r, NWORKERS));
        stress_os_sleep_ns((int64_t)rng_below(&r, 300) * 1000);
    }
    weft__active_set(the_rt, NWORKERS);
    atomic_store(&flipper_done, true);
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    the_rt = weft__cur_worker()->rt;
    CHECK(weft_workers() == NWORKERS || getenv("WEFT_WORKERS"), "want %d workers", NWORKERS);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, flipper, NULL) == 0, "pthread_create");
    weft_task **h = malloc(sizeof *h * ROUND_TASKS);
    do {  /* at least one round, however late main starts on a loaded machine */
        atomic_store(&next_id, 0);
        for (uint32_t i = 0; i < CAP; i++)
            atomic_store(&ran[i], 0);
        int n = 0;
        for (; n < ROUND_TASKS; n++)
            if (!(h[n] = spawn_child(atomic_load(&rounds) * 7919 + (uint64_t)n)))
                break;
        for (int i = 0; i < n; i++)
            CHECK(weft_join(h[i], NULL) == 0, "join failed");
        uint32_t used = atomic_load(&next_id);
        if (used > CAP)
            used = CAP;
        for (uint32_t i = 0; i < used; i++)
            CHECK(atomic_load(&ran[i]) == 1, "round %" PRIu64 ": task %u ran %u times",
                  atomic_load(&rounds), i, atomic_load(&ran[i]));
        atomic_fetch_add(&rounds, 1);
    } while (!stress_time_up() && !stress_failed());
    free(h);
    atomic_store(&flipper_stop, true);
    /* Not pthread_join at once: that would block this worker, and a hold
     * under way waits for this very worker to sleep as excess (it did:
     * "worker 2 not asleep as excess after 10 s", main's backtrace in
     * pthread_join).  Sleep as a coroutine until the flipper is done. */
    while (!atomic_load(&flipper_done))
        weft_sleep(WEFT_MS);
    pthread_join(th, NULL);
    return NULL;
}

int main(void)
{
    stress_init("stress_active_storm", 4, dump);
    ran = calloc(CAP, sizeof *ran);
    stress_run(NWORKERS, main_task, NULL);
    CHECK(atomic_load(&rounds) > 0, "no round completed");
    CHECK(atomic_load(&holds) > 0 || atomic_load(&flips) < 200, "no hold checked");
    int rc = stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks each run once, %" PRIu64
                           " limit flips, %" PRIu64 " held limits checked",
                           atomic_load(&rounds), atomic_load(&tasks_total), atomic_load(&flips),
                           atomic_load(&holds));
    free(ran);
    return rc;
}
