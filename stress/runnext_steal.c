/*
 * stress_runnext_steal: the owner's take of runnext without a
 * read-modify-write, against thieves that pay for both sides with
 * membarrier (runtime/runq.c, "Taking runnext").  White-box: hand-made
 * workers (no scheduler, no coroutines), weft__runnext_take on the owner's
 * side and weft__runq_steal (take_runnext) on the thieves'.
 *
 * The owner (worker 0, this program's main thread) fills its runnext with
 * task i, as weft__ready_on does when the slot is empty (a release store),
 * leaves it there for a drawn 0-2 us, and takes it back; the thieves
 * (one or two plain threads, each the owner of a worker of its own) watch
 * the slot and steal whatever they see in it, so most steals race a take:
 * a thief is in its membarrier, or waiting out the owner's `taking`, while
 * the owner takes.  Each round runs twice: with the plain take (when the
 * kernel has membarrier) and with the exchange (WEFT_MEMBARRIER=off's
 * path), so the fallback is stressed too.
 *
 * Invariants: every task is taken exactly once, by the owner or by one
 * thief (a per-task count: a task taken by both is the bug a broken fence
 * lets through, one taken by neither is a task lost); the slot is empty at
 * the end of a round and no thief's request is left standing (steal_req
 * back to 0); and both sides took some (the thieves' steals must really
 * race the owner).  Without the membarrier in steal_runnext this fails
 * with doubles within a second on a 2-CPU machine.
 *
 * Default 4 s (half with each take); WEFT_STRESS_SECONDS for longer.
 */
#include "internal.h"
#include "os.h"
#include "stress.h"
#include "rng.h"

#include <sched.h>

/* Thieves: one (with the owner, a thread per CPU on the 2-CPU target) in
 * odd rounds, two in even ones (several requests at once). */
#define THIEVES 2
#define ROUND_TASKS STRESS_SCALE(20000, 4000)

static weft__runtime *rt;
static weft__worker *ws[1 + THIEVES];
static weft_task *tasks;
static _Atomic uint32_t *seen;
static _Atomic uint64_t taken_owner, taken_thief, doubles, strays;
static _Atomic bool round_over;
static _Atomic int thieves_ready;

static void *zalloc(size_t size)
{
    size = (size + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE;
    void *p = aligned_alloc(WEFT__CACHELINE, size);
    if (!p) {
        fprintf(stderr, "stress_runnext_steal: out of memory\n");
        exit(2);
    }
    memset(p, 0, size);
    return p;
}

static void took(weft_task *t, bool owner)
{
    size_t i = (size_t)(t - tasks);
    if (i >= (size_t)ROUND_TASKS) {
        atomic_fetch_add(&strays, 1);
        return;
    }
    if (atomic_fetch_add(&seen[i], 1) != 0)
        atomic_fetch_add(&doubles, 1);
    atomic_fetch_add(owner ? &taken_owner : &taken_thief, 1);
}

static void *thief_main(void *arg)
{
    weft__worker *self = arg;
    weft__set_cur_worker(self);
    atomic_fetch_add(&thieves_ready, 1);
    weft__runq *vq = &ws[0]->q;
    while (!atomic_load_explicit(&round_over, memory_order_acquire)) {
        if (!atomic_load_explicit(&vq->runnext, memory_order_relaxed)) {
            weft__cpu_relax();
            continue;
        }
        weft_task *t = NULL;
        if (weft__runq_steal(self, ws[0], true, &t)) {
            took(t, false);
            /* Stolen tasks land in the thief's hand only (one at a time,
             * the victim's ring is empty): nothing left in its own ring. */
            CHECK(weft__runq_get(self) == NULL, "a runnext steal left tasks in the thief's ring");
        }
        stress_progress();
    }
    weft__set_cur_worker(NULL);
    return NULL;
}

/* One round of ROUND_TASKS fills and takes; plain: the owner's take
 * without a read-modify-write. */
static void run_round(bool plain, int nthieves, uint64_t *seed)
{
    for (unsigned i = 0; i <= THIEVES; i++)
        ws[i]->runnext_plain = plain;  /* before the thieves start, as runtime.c */
    memset((void *)seen, 0, ROUND_TASKS * sizeof *seen);
    atomic_store(&round_over, false);
    atomic_store(&thieves_ready, 0);
    pthread_t th[THIEVES];
    for (int i = 0; i < nthieves; i++)
        if (pthread_create(&th[i], NULL, thief_main, ws[1 + i]) != 0) {
            fprintf(stderr, "stress_runnext_steal: pthread_create failed\n");
            exit(2);
        }
    while (atomic_load(&thieves_ready) < nthieves)
        sched_yield();

    weft__worker *w = ws[0];
    weft__set_cur_worker(w);
    for (int i = 0; i < ROUND_TASKS && !stress_failed(); i++) {
        /* The fill of an empty slot, as weft__ready_on (release: pairs with
         * the thief's acquire load and CAS). */
        CHECK(atomic_load_explicit(&w->q.runnext, memory_order_relaxed) == NULL,
              "runnext not empty before a fill");
        atomic_store_explicit(&w->q.runnext, &tasks[i], memory_order_release);
        stress_spin_ns((int64_t)rng_below(seed, 2000));
        weft_task *t = weft__runnext_take(w);
        if (t) {
            CHECK(t == &tasks[i], "the owner took task %zu, not %d", (size_t)(t - tasks), i);
            took(t, true);
        }
        stress_progress();
    }
    atomic_store_explicit(&round_over, true, memory_order_release);
    for (int i = 0; i < nthieves; i++)
        pthread_join(th[i], NULL);
    weft__set_cur_worker(NULL);

    CHECK(atomic_load(&w->q.runnext) == NULL, "runnext not empty at the end of a round");
    CHECK(atomic_load(&w->q.steal_req) == 0, "a thief's request left standing (%u)",
          atomic_load(&w->q.steal_req));
    CHECK(atomic_load(&w->q.taking) == 0, "the owner's taking left set");
    for (int i = 0; i < ROUND_TASKS && !stress_failed(); i++)
        CHECK(atomic_load(&seen[i]) == 1, "%s take: task %d taken %u times",
              plain ? "plain" : "exchange", i, atomic_load(&seen[i]));
}

int main(void)
{
    stress_init("stress_runnext_steal", 4, NULL);
    rt = zalloc(sizeof *rt);
    rt->nworkers = 1 + THIEVES;
    for (unsigned i = 0; i <= THIEVES; i++) {
        ws[i] = zalloc(sizeof *ws[i]);
        ws[i]->rt = rt;
        ws[i]->wake_rt = rt;
        ws[i]->id = (int)i;
        ws[i]->cpu = -1;
    }
    rt->workers = ws;
    tasks = zalloc(ROUND_TASKS * sizeof *tasks);
    for (int i = 0; i < ROUND_TASKS; i++)
        tasks[i].rt = rt;
    seen = zalloc(ROUND_TASKS * sizeof *seen);

    bool have_mb = weft__os_membarrier_usable();
    if (!have_mb)
        fprintf(stderr, "stress_runnext_steal: no membarrier here: the exchange only\n");
    uint64_t seed = rng_seed();
    uint64_t rounds[2] = {0, 0}, owner[2] = {0, 0}, thief[2] = {0, 0};
    while (!stress_failed()) {
        for (int plain = have_mb; plain >= 0 && !stress_failed(); plain--) {
            uint64_t o = atomic_load(&taken_owner), th = atomic_load(&taken_thief);
            run_round(plain, 1 + (int)(rounds[plain] % THIEVES), &seed);
            rounds[plain]++;
            owner[plain] += atomic_load(&taken_owner) - o;
            thief[plain] += atomic_load(&taken_thief) - th;
        }
        if (stress_time_up())
            break;
    }
    CHECK(atomic_load(&doubles) == 0, "%lu tasks taken twice", (unsigned long)atomic_load(&doubles));
    CHECK(atomic_load(&strays) == 0, "%lu unknown tasks taken", (unsigned long)atomic_load(&strays));
    for (int plain = 0; plain <= (int)have_mb; plain++)
        /* Both sides must have taken some, or nothing raced. */
        CHECK(!rounds[plain] || (owner[plain] > 0 && thief[plain] > 0),
              "%s take: one side took nothing",
              plain ? "plain" : "exchange");
    free(tasks);
    free((void *)seen);
    for (unsigned i = 0; i <= THIEVES; i++)
        free(ws[i]);
    free(rt);
    return stress_finish("plain take: %lu rounds, owner took %lu, thieves %lu; "
                         "exchange: %lu rounds, owner %lu, thieves %lu",
                         (unsigned long)rounds[1], (unsigned long)owner[1],
                         (unsigned long)thief[1], (unsigned long)rounds[0],
                         (unsigned long)owner[0], (unsigned long)thief[0]);
}
