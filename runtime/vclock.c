/*
 * The virtual clock (WEFT_CLOCK=virtual, weft_config.clock; docs/testing.md).
 *
 * weft_now() reads weft__vnow, which starts at WEFT__VCLOCK_START and moves
 * only when the runtime is quiescent: every worker is parked, no task is
 * queued anywhere, nothing holds the clock, and the poller has nothing to
 * deliver.  Then the clock jumps to the earliest deadline of all the
 * wheels, exactly (not to a wheel tick), and the timers due at that instant
 * fire.  A task that runs sees time stand still: a computation, however
 * long, takes no virtual time.
 *
 *  1. Who advances.  A worker about to park (park.c) that finds no work
 *     calls weft__vclock_idle after it has joined the idle list.  Under
 *     vclock_mu it checks, in this order: every worker is idle (on the idle
 *     list, or asleep beyond the CPU quota's limit, active.c: the others are
 *     parked or about to be, and the last of them to arrive makes this
 *     check again, or kicks an idle one to); no pool job holds the clock
 *     (vholds == 0); no task is queued (weft__work_anywhere); the poller has
 *     no event ready (a zero-timeout poll; if another worker holds the
 *     driver token, it is woken to come back and check for itself).  Then
 *     it looks once more that no worker has been through its scheduler
 *     loop since it took the lock (the ticks, below), moves the clock and
 *     fires every wheel's due timers onto its own queue, and does not
 *     sleep.  The last look is needed because the checks are not one
 *     instant: a worker that was driving when they began may have queued
 *     a task from the edge it took, left the idle list and be running that
 *     task by the time the poll comes back empty.  All seq_cst: a pool thread's completion
 *     queues its task (inject_len, seq_cst) before it drops its hold
 *     (seq_cst), so a checker that sees no hold sees the task.
 *  2. What holds the clock.  A job on the blocking pools, from submission
 *     until its task has been queued again (Tokio's rule for spawn_blocking,
 *     after tokio#4614: a blocking call takes real time that the clock must
 *     not skip); a file operation in flight on a worker's io_uring, the
 *     same way (aio_uring.c).  A descriptor with an event to deliver (the zero-timeout
 *     poll above).  A task that waits on a descriptor with nothing ready
 *     does not: timers may fire first.  Plain threads do not: whatever they
 *     do to the runtime (spawn, set an event) lands whenever it lands.
 *  3. The last hold dropped wakes one idle worker, which checks again.
 *  4. Deadlock.  Quiescent with no timer armed anywhere, no hold, no
 *     socket watched (the workers' rings are no sockets), and main not returned (after it returns, the
 *     shutdown's cancellations are on their way): only a plain thread can
 *     still wake a task.  The checker gives them a grace of 100 ms of real
 *     time in which no task runs (a plain thread holding a mutex for a
 *     moment, a test's helper thread setting an event); then nothing will
 *     ever wake a task again.  The checker writes
 *     the report (weft_dump's form) to stderr, marks the runtime deadlocked
 *     and wakes the thread in weft_run, which stops the workers without
 *     waiting for the blocked tasks and returns -EDEADLK.  With descriptors
 *     watched it waits for them in real time instead (a peer outside the
 *     process may still write).
 * Rejected: a clock per worker (tasks migrate, and a woken task would see
 * time go backwards); advancing as soon as one worker idles (Tokio's
 * auto-advance is for its current-thread runtime only, and on several
 * workers it would skip time that a busy worker's tasks are still using).
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "poller.h"

/* The virtual clock's first reading: one hour, a round figure that no
 * real monotonic clock of a just-booted test machine is mistaken for. */
#define WEFT__VCLOCK_START ((int64_t)3600 * WEFT_SEC)
/* Point 4's grace, real time. */
#define WEFT__DEADLOCK_GRACE_NS (100 * WEFT_MS)

/* relaxed loads in weft_now(): a task that was woken by an advance reached
 * its worker through the run queues (release / acquire), which orders the
 * store before it. */
_Atomic int64_t weft__vnow;

/* The thread in weft_run, before the workers start. */
int weft__vclock_start(weft__runtime *rt)
{
    pthread_mutex_init(&rt->vclock_mu, NULL);
    if (rt->cfg.vclock)
        atomic_store_explicit(&weft__vnow, WEFT__VCLOCK_START, memory_order_relaxed);
    return 0;
}

/* The thread in weft_run, after the workers stopped. */
void weft__vclock_stop(weft__runtime *rt)
{
    atomic_store_explicit(&weft__vnow, 0, memory_order_relaxed);
    pthread_mutex_destroy(&rt->vclock_mu);
}

/* Any thread.  A pool job was submitted: the clock waits for it. */
void weft__vclock_hold(weft__runtime *rt)
{
    if (rt->cfg.vclock)
        atomic_fetch_add_explicit(&rt->vholds, 1, memory_order_seq_cst);
}

/* Any thread.  A pool job's task is queued again (or the job dropped).
 * seq_cst: after the queueing (point 1). */
void weft__vclock_release(weft__runtime *rt)
{
    if (!rt->cfg.vclock)
        return;
    if (atomic_fetch_sub_explicit(&rt->vholds, 1, memory_order_seq_cst) != 1)
        return;
    weft__vclock_kick(rt);  /* point 3: the last hold */
}

/* Any thread.  Something that kept the clock still is gone (the last hold,
 * a worker that went to sleep as excess): an idle worker checks again. */
void weft__vclock_kick(weft__runtime *rt)
{
    weft__spin_lock(&rt->idle_lock);
    weft__worker *w = rt->idle;
    weft__spin_unlock(&rt->idle_lock);
    if (w)
        weft__wake_worker(w);
}

/* Under vclock_mu.  Workers parked: on the idle list, or asleep beyond the
 * active limit (active.c), which are off that list. */
static unsigned parked(weft__runtime *rt)
{
    /* seq_cst: the other halves are park.c (n_idle) and weft__excess_park. */
    unsigned n = atomic_load_explicit(&rt->n_idle, memory_order_seq_cst);
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += atomic_load_explicit(&rt->workers[i]->excess, memory_order_seq_cst);
    return n;
}

/* Under vclock_mu, the runtime quiescent.  The earliest deadline of any
 * wheel, INT64_MAX when none is armed. */
static int64_t earliest_deadline(weft__runtime *rt)
{
    int64_t best = INT64_MAX;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        int64_t d = weft__timers_min_when(&rt->workers[i]->timers);
        if (d < best)
            best = d;
    }
    return best;
}

/* Point 4: the report, then the thread in weft_run is told. */
static void deadlock(weft__runtime *rt)
{
    static const char hdr[] =
        "weft: deadlock: every task is blocked, no timer is armed and nothing holds the "
        "virtual clock; the blocked tasks:\n";
    ssize_t r = write(2, hdr, sizeof hdr - 1);
    (void)r;
    weft_dump(2);
    weft__seed_report(rt);
    atomic_store_explicit(&rt->deadlocked, true, memory_order_seq_cst);
    pthread_mutex_lock(&rt->done_mu);
    rt->main_done = true;
    pthread_cond_broadcast(&rt->done_cv);
    pthread_mutex_unlock(&rt->done_mu);
}

/* Under vclock_mu.  Every worker's tick (sched.c) shifted right by shift,
 * summed.  Shift 16: the tasks run so far (the deadlock grace).  Shift 0,
 * the low bits too: a worker moves its tick at the top of its scheduler
 * loop, before it takes a task from anywhere, and again when it runs one,
 * so an unchanged sum over a check means nobody left a park in it (point
 * 1's last look; a wrap of the sum back to the same value needs 2^16 loops
 * in a few microseconds).  relaxed: there, ordered by the caller's acquire
 * fence after the queues' loads. */
static uint64_t tick_sum(weft__runtime *rt, unsigned shift)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += atomic_load_explicit(&rt->workers[i]->tick, memory_order_relaxed) >> shift;
    return n;
}

/* Under vclock_mu, quiescent with nothing armed (point 4).  The grace: no
 * task has run for WEFT__DEADLOCK_GRACE_NS of real time while the runtime
 * looked dead (a plain thread that was about to wake a task has had its
 * chance), or the report.  The real time left to sleep, 0 once reported. */
static int64_t deadlock_grace(weft__runtime *rt)
{
    int64_t now = weft__real_now();
    uint64_t n = tick_sum(rt, 16);
    if (!rt->dl_since || rt->dl_runs != n) {
        rt->dl_since = now;
        rt->dl_runs = n;
        return WEFT__DEADLOCK_GRACE_NS;
    }
    if (now - rt->dl_since < WEFT__DEADLOCK_GRACE_NS)
        return WEFT__DEADLOCK_GRACE_NS - (now - rt->dl_since);
    deadlock(rt);
    return 0;
}

/* Owner worker only, w on the idle list with no work found (park.c).  The
 * checks of point 1.  True when w must not sleep (it queued tasks, or work
 * appeared); false to sleep: without a deadline (another worker or a hold
 * will wake it), or for *sleep_ns of real time when it is nonzero (the
 * deadlock grace). */
bool weft__vclock_idle(weft__worker *w, int64_t *sleep_ns)
{
    *sleep_ns = 0;
    weft__runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->deadlocked, memory_order_relaxed))
        return false;
    pthread_mutex_lock(&rt->vclock_mu);
    bool again = false;
    if (atomic_load_explicit(&rt->deadlocked, memory_order_relaxed))
        goto out;  /* reported by another worker meanwhile */
    uint64_t t0 = tick_sum(rt, 0);
    /* seq_cst loads: the other halves are in park.c (n_idle), inject.c
     * (inject_len) and weft__vclock_release (vholds). */
    if (parked(rt) != rt->nworkers ||
        atomic_load_explicit(&rt->vholds, memory_order_seq_cst) > 0)
        goto out;
    if (weft__work_anywhere(w) || atomic_load_explicit(&rt->stop, memory_order_seq_cst)) {
        again = true;
        goto out;
    }
    if (atomic_load_explicit(&rt->nfds, memory_order_seq_cst)) {
        /* Another worker drives (or took the token just now, on its way
         * into the poller): it returns, parks, and checks itself. */
        int ready = weft__poll_ready(w);
        if (ready < 0) {
            weft__worker *d = atomic_load_explicit(&rt->driver, memory_order_seq_cst);
            if (d)
                weft__wake_worker(d);
            else
                again = true;  /* let go meanwhile: look again */
            goto out;
        }
        if (ready) {
            again = true;
            goto out;
        }
    }
    /* The last look (point 1).  work_anywhere has just come back empty,
     * above or as weft__poll_ready's result.  A worker that left its park
     * and took a task moved its tick first and then took the task with a
     * release (runnext take, head CAS, inject pop): if those loads
     * missed the task because it was taken, this acquire fence makes the
     * tick's move visible. */
    atomic_thread_fence(memory_order_acquire);
    if (tick_sum(rt, 0) != t0) {
        again = true;
        goto out;
    }
    int64_t next = earliest_deadline(rt);
    if (next == INT64_MAX) {
        /* After main returned, weft_run's thread cancels what is left: a
         * thread outside the workers that will wake them (point 2). */
        if (atomic_load_explicit(&rt->nfds, memory_order_seq_cst) ==
                atomic_load_explicit(&rt->nrings, memory_order_seq_cst) &&
            atomic_load_explicit(&rt->main->state, memory_order_acquire) != WEFT_TASK_DONE &&
            !atomic_load_explicit(&rt->shutdown, memory_order_seq_cst))
            *sleep_ns = deadlock_grace(rt);
        goto out;
    }
    rt->dl_since = 0;
    int64_t now = atomic_load_explicit(&weft__vnow, memory_order_relaxed);
    if (next > now)
        atomic_store_explicit(&weft__vnow, next, memory_order_relaxed);
    else
        next = now;
    for (unsigned i = 0; i < rt->nworkers; i++)
        weft__timers_run_exact(w, rt->workers[i], next);
    again = true;
out:
    pthread_mutex_unlock(&rt->vclock_mu);
    return again;
}
