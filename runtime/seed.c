/*
 * Seeded runs (WEFT_SEED, WEFT_CHAOS; docs/testing.md): the scheduler's
 * choices drawn from a seed instead of taken in a fixed order.
 *
 * What the seed decides, each from the worker's own stream (rng.h; worker
 * i draws stream i + 1, threads that are no worker share stream 0 under
 * seed_lock):
 *   1. which ready task runs next: weft__seed_next takes the runnext slot
 *      into the ring and rotates the ring by a drawn count, so any ready
 *      task may run next (rotation uses only the owner's put and get, so
 *      thieves stay safe: no slot is rewritten under them);
 *   2. the order in which timers due at the same moment are woken
 *      (weft__seed_shuffle over each batch a wheel run takes; timer.c);
 *   3. the order in which a searcher visits its victims (sched.c);
 *   4. under WEFT_CHAOS=1..3, a yield at the API's suspension points with
 *      chance 1/8, 1/4, 1/2 (weft__chaos_point);
 *   5. the fault injector's draws (faults.c) and, on one worker with the
 *      virtual clock, the order in which blocking-pool completions are
 *      delivered (blocking.c), which happens when the worker runs out of
 *      other work.
 * With one worker and the virtual clock nothing else varies, so a seed
 * replays a run exactly; with more workers the OS interleaves the threads
 * and a seed only shakes the schedule (chaos mode; not replayable).
 *
 * A seeded run that dies of a fatal signal (an abort, a fault) prints the
 * line that replays it (rerun_line) before the signal's previous action.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* relaxed loads (weft__chaos_point): written before the workers start and
 * after they stop. */
_Atomic int weft__chaos_level;

static char rerun_line[256];
static size_t rerun_len;
static const int fatal[] = {SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV};
#define NFATAL (sizeof fatal / sizeof fatal[0])
static struct sigaction fatal_old[NFATAL];
static bool fatal_installed;

/* Any thread (weft_run's, while settings are resolved).  A seed for
 * WEFT_SEED=random: from the kernel, else from the clock and the pid. */
uint64_t weft__seed_random(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
        return s;
    uint64_t x = (uint64_t)weft__real_now() ^ ((uint64_t)getpid() << 32);
    return weft__splitmix64(&x);
}

/* Signal handler: writes the rerun line, then leaves the signal to the
 * action that was there before.  A fault (si_code > 0: the instruction
 * faulted) repeats on return and meets that action with its own siginfo;
 * a sent signal (abort's, kill's) is raised again, delivered on return as
 * it is blocked while this handler runs. */
static void on_fatal(int sig, siginfo_t *info, void *uc)
{
    (void)uc;
    int e = errno;
    ssize_t r = write(2, rerun_line, rerun_len);
    (void)r;
    for (size_t i = 0; i < NFATAL; i++)
        if (fatal[i] == sig)
            sigaction(sig, &fatal_old[i], NULL);
    if (!info || info->si_code <= 0)
        raise(sig);
    errno = e;
}

/* The thread in weft_run, before the workers start. */
int weft__seed_start(weft__runtime *rt)
{
    weft__spin_init(&rt->seed_lock, WEFT__RANK_LEAF);
    if (!rt->cfg.seeded)
        return 0;
    weft__rng_seed(&rt->seed_rng, rt->cfg.seed, 0);
    rt->det = rt->cfg.vclock && rt->nworkers == 1;
    int n = snprintf(rerun_line, sizeof rerun_line,
                     "weft: rerun with WEFT_SEED=%llu WEFT_WORKERS=1 WEFT_CLOCK=virtual%s%s%s%s\n",
                     (unsigned long long)rt->cfg.seed, rt->cfg.chaos ? " WEFT_CHAOS=" : "",
                     rt->cfg.chaos ? (const char[]){(char)('0' + rt->cfg.chaos), 0} : "",
                     rt->cfg.faults ? " WEFT_FAULTS=" : "", rt->cfg.faults ? rt->cfg.faults : "");
    rerun_len = n < 0 ? 0 : (size_t)n < sizeof rerun_line ? (size_t)n : sizeof rerun_line - 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_ONSTACK | SA_SIGINFO;
    for (size_t i = 0; i < NFATAL; i++)
        sigaction(fatal[i], &sa, &fatal_old[i]);
    fatal_installed = true;
    atomic_store_explicit(&weft__chaos_level, (int)rt->cfg.chaos, memory_order_relaxed);
    weft__faults_start(rt);
    return 0;
}

/* The thread in weft_run, after the workers stopped. */
void weft__seed_stop(weft__runtime *rt)
{
    (void)rt;
    atomic_store_explicit(&weft__chaos_level, 0, memory_order_relaxed);
    weft__faults_stop();
    if (fatal_installed) {
        for (size_t i = 0; i < NFATAL; i++)
            sigaction(fatal[i], &fatal_old[i], NULL);
        fatal_installed = false;
    }
}

/* The thread in weft_run: a run that ends in a deadlock prints the rerun
 * line too. */
void weft__seed_report(weft__runtime *rt)
{
    if (rt->cfg.seeded && rerun_len) {
        ssize_t r = write(2, rerun_line, rerun_len);
        (void)r;
    }
}

/* Before worker w starts (rt->nworkers is known). */
void weft__seed_worker(weft__worker *w)
{
    w->seeded = w->rt->cfg.seeded;
    w->det = w->seeded && w->rt->cfg.vclock && w->rt->nworkers == 1;
    if (w->seeded)
        weft__rng_seed(&w->rng, w->rt->cfg.seed, (uint64_t)w->id + 1);
}

/* Any thread.  One draw from the caller's stream: its worker's, else the
 * runtime's shared one. */
uint64_t weft__seed_draw(weft__runtime *rt)
{
    weft__worker *w = weft__cur_worker();
    if (w && w->rt == rt)
        return weft__rng_next(&w->rng);
    weft__spin_lock(&rt->seed_lock);
    uint64_t x = weft__rng_next(&rt->seed_rng);
    weft__spin_unlock(&rt->seed_lock);
    return x;
}

/* Any thread.  A blocking-pool job was submitted (blocking.c): in a
 * replayable run its completion is delivered where the seed says. */
void weft__seed_submitted(weft__runtime *rt)
{
    if (rt->cfg.seeded)
        atomic_fetch_add_explicit(&rt->det_pending, 1, memory_order_relaxed);
}

/* A pool thread, replayable run: t's function returned.  Its joiner
 * learns it only when det_deliver says so: reported done then, by the
 * worker, so that whether the joiner had parked yet (a race with the pool
 * thread) changes nothing. */
void weft__seed_finished(weft__runtime *rt, weft_task *t)
{
    weft__spin_lock(&rt->seed_lock);
    t->next = rt->det_done;
    rt->det_done = t;
    weft__spin_unlock(&rt->seed_lock);
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = atomic_load_explicit(&(*(weft_task *const *)a)->id, memory_order_relaxed);
    uint64_t y = atomic_load_explicit(&(*(weft_task *const *)b)->id, memory_order_relaxed);
    return x < y ? -1 : x > y;
}

/* Tasks det_deliver orders at a time: half of the run queue's ring as it
 * was when replays were first recorded (256), fixed so that a seed replays
 * the same schedule whatever the ring's size. */
#define DET_BATCH 128u

/* Owner worker only, replayable run.  Delivers what other threads queued
 * (the pool's completions, above all) in an order and at a point that do
 * not depend on when the threads ran: first every job submitted so far is
 * waited for (vholds: they all complete, whatever their real order), then
 * the injection queue is taken whole, sorted by task id (ids are handed out
 * in the run's own order) and shuffled with the seed. */
static void det_deliver(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    long pending = atomic_load_explicit(&rt->det_pending, memory_order_relaxed);
    /* seq_cst: pairs with weft__vclock_release, after the job's task is
     * queued. */
    for (unsigned i = 0; atomic_load_explicit(&rt->vholds, memory_order_seq_cst) > 0; i++) {
        struct timespec ts = {0, i < 100 ? 10000 : 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_fetch_sub_explicit(&rt->det_pending, pending, memory_order_relaxed);
    weft_task *got[DET_BATCH];
    unsigned n = 0;
    weft_task *t;
    /* The finished jobs first: reported done in a drawn order, which
     * queues their joiners here. */
    weft__spin_lock(&rt->seed_lock);
    weft_task *list = rt->det_done;
    rt->det_done = NULL;
    weft__spin_unlock(&rt->seed_lock);
    /* By id: the list is in the pool threads' real order. */
    weft_task *done = NULL;
    while (list) {
        weft_task *t1 = list, **pp = &done;
        list = list->next;
        uint64_t id = atomic_load_explicit(&t1->id, memory_order_relaxed);
        while (*pp && atomic_load_explicit(&(*pp)->id, memory_order_relaxed) < id)
            pp = &(*pp)->next;
        t1->next = *pp;
        *pp = t1;
    }
    while (done) {
        n = 0;
        while (done && n < DET_BATCH) {
            got[n++] = done;
            done = done->next;
        }
        qsort(got, n, sizeof got[0], by_id);
        weft__seed_shuffle(w, (void **)got, n);
        for (unsigned i = 0; i < n; i++) {
            got[i]->next = NULL;
            weft__task_done(got[i]);
        }
    }
    n = 0;
    while (n < DET_BATCH && (t = weft__inject_pop(w, 1)))
        got[n++] = t;
    qsort(got, n, sizeof got[0], by_id);
    weft__seed_shuffle(w, (void **)got, n);
    for (unsigned i = 0; i < n; i++)
        weft__runq_put(w, got[i]);
}

/* Owner worker only (seeded).  Choice 1 above: the next task from w's own
 * queues, any of them, or NULL.  In a replayable run also choice 5: where
 * what other threads queued is delivered (det_deliver). */
weft_task *weft__seed_next(weft__worker *w)
{
    if (w->det) {
        weft__runtime *rt = w->rt;
        if (atomic_load_explicit(&rt->det_pending, memory_order_relaxed) > 0 ||
            atomic_load_explicit(&rt->inject_len, memory_order_relaxed) > 0) {
            /* Only when out of other work: the worker waits for every job
             * there, and a job may be waiting for one of those tasks (a
             * pipe it reads that a task writes).  With nothing runnable,
             * waiting is what the virtual clock does anyway (vclock.c,
             * point 2: jobs hold the clock).  The seed decides the order. */
            if (weft__runq_empty(w))
                det_deliver(w);
        }
    }
    weft_task *rn = weft__runnext_take(w);  /* as local_next (runq.c, "Taking runnext") */
    if (rn)
        weft__runq_put(w, rn);
    uint32_t n = weft__runq_len(w);
    if (n > 1) {
        for (uint32_t k = weft__rng_below(&w->rng, n); k; k--) {
            weft_task *t = weft__runq_get(w);
            if (!t)
                break;
            weft__runq_put(w, t);
        }
    }
    return weft__runq_get(w);
}

/* Owner worker only (seeded).  Choice 2: v[0..n) in a drawn order. */
void weft__seed_shuffle(weft__worker *w, void **v, unsigned n)
{
    for (unsigned i = n; i > 1; i--) {
        unsigned j = weft__rng_below(&w->rng, i);
        void *x = v[i - 1];
        v[i - 1] = v[j];
        v[j] = x;
    }
}

/* May suspend the coroutine.  Choice 4: a yield at a suspension point. */
void weft__chaos_point_slow(void)
{
    weft__worker *w = weft__cur_worker();
    if (!w || !w->current || !w->seeded)
        return;
    int level = atomic_load_explicit(&weft__chaos_level, memory_order_relaxed);
    /* chance level 1: 1/8, 2: 1/4, 3: 1/2 */
    if (weft__rng_below(&w->rng, 8) < (1u << (level - 1)))
        weft__yield_now();
}
