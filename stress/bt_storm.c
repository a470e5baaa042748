/*
 * stress_bt_storm: debug mode's stuck-coroutine backtrace (runtime/sysmon.c:
 * sysmon sends WEFT__BT_SIGNAL to a worker stuck in one coroutine and its
 * handler unwinds the interrupted context) taken at every moment a worker
 * can be in, not only while a coroutine spins: a plain thread asks for a
 * backtrace every few microseconds, as warn_slow does, while the workers
 * switch between coroutines (yield, sleep, join, exit), park, steal and run
 * the scheduler loop.  The signal thus lands inside the context switch, in
 * a coroutine's first instructions, on the scheduler's stack and in the
 * kernel.  White-box (runtime/internal.h, the static library), 2 workers.
 *
 * Invariants:
 *  - nothing crashes: the handler unwinds only a context it can walk, and
 *    every captured frame is a non-NULL address;
 *  - every task runs exactly once (counted per round);
 *  - backtraces were captured (the handler was not just refusing).
 *
 * Default 3 s; WEFT_STRESS_SECONDS for longer.
 */
#include "internal.h"
#include "stress.h"
#include "rng.h"

#include <fcntl.h>
#include <signal.h>

#define NWORKERS 2
#define ROUND_TASKS STRESS_SCALE(2000, 300)

static _Atomic uint32_t *ran;
static _Atomic bool asker_stop;
static _Atomic uint64_t asked, captured, frames, rounds, tasks_total;
static weft__runtime *the_rt;
/* Each worker's thread, recorded by the first task that runs there: the
 * asker signals only those (a worker's pthread_t is written by weft_run's
 * thread while main may already run; reading it here was a race, and a
 * signal to thread 0 crashed in pthread_kill). */
static pthread_t tids[NWORKERS];
static _Atomic int tid_claim[NWORKERS];
static _Atomic bool tid_known[NWORKERS];

static void note_thread(void)
{
    int id = weft__cur_worker()->id;
    if (id < NWORKERS && !atomic_load_explicit(&tid_known[id], memory_order_acquire) &&
        atomic_exchange(&tid_claim[id], 1) == 0) {
        tids[id] = pthread_self();
        /* release: pairs with the asker's acquire load. */
        atomic_store_explicit(&tid_known[id], true, memory_order_release);
    }
}

static void dump(void)
{
    fprintf(stderr, "  rounds %" PRIu64 ", tasks %" PRIu64 ", asked %" PRIu64 ", captured %" PRIu64
            "\n", atomic_load(&rounds), atomic_load(&tasks_total), atomic_load(&asked),
            atomic_load(&captured));
}

static __attribute__((noinline)) void *child(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg | 1;
    uint32_t id = (uint32_t)((uintptr_t)arg & 0xffffff);
    note_thread();
    int n = (int)rng_below(&r, 8);
    for (int i = 0; i < n; i++)
        CHECK(weft_yield() == 0, "yield failed");
    if (rng_below(&r, 8) == 0)
        weft_sleep((int64_t)rng_below(&r, 100) * 1000);
    uint32_t was = atomic_fetch_add(&ran[id], 1);
    CHECK(was == 0, "task %u ran %u times", id, was + 1);
    atomic_fetch_add(&tasks_total, 1);
    stress_progress();
    return NULL;
}

/* Plain thread: sysmon's side of the protocol (warn_slow, write_stuck_bt)
 * at a far higher rate, aimed at whatever the worker is doing. */
static void *asker(void *arg)
{
    (void)arg;
    uint64_t r = rng_seed();
    while (!atomic_load(&asker_stop)) {
        unsigned i = (unsigned)rng_below(&r, NWORKERS);
        /* acquire: pairs with the release in note_thread. */
        if (!atomic_load_explicit(&tid_known[i], memory_order_acquire)) {
            stress_os_sleep_ns(10000);
            continue;
        }
        weft__worker *w = the_rt->workers[i];
        /* acquire: pairs with the handler's release of bt_n; claimed as
         * sysmon's write_stuck_bt claims it (-1 while read). */
        int n = atomic_load_explicit(&w->bt_n, memory_order_acquire);
        if (n > 0 && atomic_compare_exchange_strong_explicit(&w->bt_n, &n, -1,
                                                             memory_order_acquire,
                                                             memory_order_relaxed)) {
            for (int i = 0; i < n; i++)
                CHECK(w->bt_pcs[i] != NULL, "worker %d: frame %d of %d is NULL", w->id, i, n);
            atomic_fetch_add(&captured, 1);
            atomic_fetch_add(&frames, (uint64_t)n);
            /* release: the buffer is free again (write_stuck_bt's store). */
            atomic_store_explicit(&w->bt_n, 0, memory_order_release);
        }
        atomic_store_explicit(&w->want_bt, true, memory_order_release);
        pthread_kill(tids[i], SIGURG);
        atomic_fetch_add(&asked, 1);
        stress_os_sleep_ns((int64_t)rng_below(&r, 30) * 1000);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    the_rt = weft__cur_worker()->rt;
    CHECK(the_rt->cfg.debug, "debug mode is off: WEFT_DEBUG=1 must be set");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, asker, NULL) == 0, "pthread_create");
    weft_task **h = malloc(sizeof *h * ROUND_TASKS);
    do {
        for (uint32_t i = 0; i < ROUND_TASKS; i++)
            atomic_store(&ran[i], 0);
        for (uint32_t i = 0; i < ROUND_TASKS; i++) {
            uint64_t v = ((atomic_load(&rounds) * 7919 + i) << 24) | i;
            CHECK((h[i] = weft_spawn(child, (void *)(uintptr_t)v)) != NULL, "spawn failed");
        }
        for (uint32_t i = 0; i < ROUND_TASKS; i++)
            CHECK(weft_join(h[i], NULL) == 0, "join failed");
        for (uint32_t i = 0; i < ROUND_TASKS; i++)
            CHECK(atomic_load(&ran[i]) == 1, "task %u ran %u times", i, atomic_load(&ran[i]));
        atomic_fetch_add(&rounds, 1);
    } while (!stress_time_up() && !stress_failed());
    free(h);
    atomic_store(&asker_stop, true);
    pthread_join(th, NULL);
    return NULL;
}

int main(void)
{
    setenv("WEFT_DEBUG", "1", 1);
    /* sysmon writes every backtrace it takes over from the handler to fd 2
     * (hundreds a second here): that goes to /dev/null, this program's own
     * lines to the original stderr. */
    int keep = dup(2), null = open("/dev/null", O_WRONLY);
    FILE *err = keep >= 0 ? fdopen(keep, "w") : NULL;
    if (err && null >= 0 && dup2(null, 2) == 2) {
        setvbuf(err, NULL, _IONBF, 0);
        stderr = err;
    }
    if (null >= 0)
        close(null);
    stress_init("stress_bt_storm", 3, dump);
    ran = calloc(ROUND_TASKS, sizeof *ran);
    stress_run(NWORKERS, main_task, NULL);
    CHECK(atomic_load(&rounds) > 0, "no round completed");
    CHECK(atomic_load(&captured) > 0, "no backtrace captured in %" PRIu64 " requests",
          atomic_load(&asked));
    int rc = stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks each run once, %" PRIu64
                           " backtrace requests, %" PRIu64 " captured (%" PRIu64 " frames)",
                           atomic_load(&rounds), atomic_load(&tasks_total), atomic_load(&asked),
                           atomic_load(&captured), atomic_load(&frames));
    free(ran);
    return rc;
}
