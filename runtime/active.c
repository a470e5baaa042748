/*
 * The active worker limit (the scheduler essay, sched.c, section 11): how
 * many of the runtime's worker threads take work, following the cgroup's
 * CPU quota (runtime/cgroup.c) as it changes.
 *
 * weft_run starts one thread per CPU of the cpuset (or WEFT_WORKERS); the
 * first rt->active of them (ids 0..active-1) take work, the others are
 * excess: they run no task, are not stolen from, are not on the idle list
 * (so notify never wakes them) and sleep on their own wake-up channel,
 * waking only for their own timers (whose tasks they hand to the injection
 * queue) and for a change of the limit.  Keeping the threads lets a raised
 * quota be followed up to the cpuset without creating threads; an excess
 * thread costs its stack, its wake-up channel and nothing per schedule.
 *
 * Following (sysmon, every WEFT__QUOTA_PERIOD_NS, 1 s): one pread of each
 * limit file found at start; when the quota read differs from the last
 * read, the limit becomes the quota rounded up, within the thread count.
 * A quota file that turns to junk is reported once and the limit goes back
 * to every thread until it reads well again.  WEFT_WORKERS (or
 * weft_config.workers) turns following off: an explicit count wins.
 *
 * A worker leaves (weft__excess_park) at its next schedule: local_next
 * gives it nothing once its id is at or above the limit, so the scheduler
 * loop reaches this file, which moves its runnext and ring to the injection
 * queue (inject_push notifies an active worker) and passes on a searching
 * token a notifier handed it.  A worker stuck in one task meanwhile is
 * flagged blocked by sysmon after 2 ms as always, and the active workers
 * take its queue through help_blocked; so no queued task waits for an
 * excess worker (the essay, 11, has the argument).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"
#include "internal.h"
#include "poller.h"

const char *weft__cgroup_root;                  /* tests: fixture root; NULL: "" */
int64_t weft__quota_period_ns = WEFT__QUOTA_PERIOD_NS;  /* tests may shorten it */

struct weft__quota {
    pthread_mutex_t mu;      /* serialises weft__active_set */
    weft__cgroup cg;         /* the files followed; cg.n 0: nothing to follow */
    bool follow;             /* no explicit worker count, and a file to read */
    unsigned last;           /* the quota as last read (0: none), sysmon only */
    bool last_bad;           /* the last read failed (reported once), sysmon only */
    int64_t next;            /* when sysmon reads next, sysmon only */
};

/* The limit for a quota of q CPUs (0: none) on n threads. */
static unsigned limit_for(unsigned q, unsigned n)
{
    return q && q < n ? q : n;
}

/* weft_run, before the workers are made: finds the quota; returns it in
 * CPUs (0: none or unreadable), having set rt->active (the quota within
 * nworkers when following, else nworkers).  explicit: the worker count was
 * given (WEFT_WORKERS, weft_config.workers): the quota is read (pinning
 * asks for it) but not followed.  0 or -ENOMEM. */
int weft__active_init(weft__runtime *rt, bool explicit, unsigned *quota)
{
    *quota = 0;
    struct weft__quota *qs = calloc(1, sizeof *qs);
    if (!qs)
        return -ENOMEM;
    pthread_mutex_init(&qs->mu, NULL);
    rt->quota = qs;
    int rc = weft__cgroup_open(&qs->cg, weft__cgroup_root);
    if (rc < 0)
        return rc;
    char err[512];
    if (qs->cg.n && weft__cgroup_limit(&qs->cg, quota, err, sizeof err) < 0) {
        weft__log("%s", err);
        *quota = 0;
        qs->last_bad = true;
    }
    qs->last = *quota;
    qs->follow = !explicit && qs->cg.n;
    qs->next = weft__real_now() + weft__quota_period_ns;  /* sysmon's clock */
    atomic_init(&rt->active, qs->follow ? limit_for(*quota, rt->nworkers) : rt->nworkers);
    return 0;
}

void weft__active_free(weft__runtime *rt)
{
    if (!rt->quota)
        return;
    weft__cgroup_close(&rt->quota->cg);
    pthread_mutex_destroy(&rt->quota->mu);
    free(rt->quota);
    rt->quota = NULL;
}

/* Any thread.  Sets the limit to n (clamped to 1..nworkers) and wakes the
 * workers whose side it moved: leaving ones go to their excess park (from
 * the idle list or the poller they sleep in), returning ones come back to
 * the scheduler loop.  Concurrent callers are serialised. */
void weft__active_set(weft__runtime *rt, unsigned n)
{
    if (n < 1)
        n = 1;
    if (n > rt->nworkers)
        n = rt->nworkers;
    pthread_mutex_lock(&rt->quota->mu);
    /* relaxed: written only under quota->mu, which we hold. */
    unsigned old = atomic_load_explicit(&rt->active, memory_order_relaxed);
    if (n != old) {
        /* seq_cst: pairs with the seq_cst load in weft__excess_park after
         * it clears wake_pending (the essay, 11): a returning worker either
         * sees the new limit there or is woken by the write below. */
        atomic_store_explicit(&rt->active, n, memory_order_seq_cst);
        unsigned lo = n < old ? n : old, hi = n < old ? old : n;
        for (unsigned i = lo; i < hi; i++)
            weft__wake_worker(rt->workers[i]);
    }
    pthread_mutex_unlock(&rt->quota->mu);
}

/* sysmon only.  Re-reads the quota every weft__quota_period_ns when it is
 * followed, and moves the limit when the quota read has changed. */
void weft__active_tick(weft__runtime *rt, int64_t now)
{
    struct weft__quota *qs = rt->quota;
    if (!qs->follow || now < qs->next)
        return;
    qs->next = now + weft__quota_period_ns;
    unsigned q;
    char err[512];
    if (weft__cgroup_limit(&qs->cg, &q, err, sizeof err) < 0) {
        if (!qs->last_bad)
            weft__log("%s", err);  /* once, until it reads well again */
        qs->last_bad = true;
        q = 0;
    } else {
        qs->last_bad = false;
    }
    if (q == qs->last)
        return;  /* unchanged: a limit set by hand (tests) stays */
    qs->last = q;
    weft__active_set(rt, limit_for(q, rt->nworkers));
}

/* Owner worker only.  Moves w's runnext and ring to the injection queue in
 * one batch (inject_push notifies an active worker). */
static void hand_off(weft__worker *w)
{
    weft_task *head = NULL, *tail = NULL;
    size_t n = 0;
    weft_task *t = weft__runnext_take(w);  /* runq.c, "Taking runnext" */
    for (; t || (t = weft__runq_get(w)); t = NULL) {
        if (tail)
            tail->next = t;
        else
            head = t;
        tail = t;
        n++;
    }
    if (n)
        weft__inject_push(w->rt, head, tail, n);
}

/* Owner worker only, from the scheduler loop when w is excess.  Hands w's
 * queued work to the active workers and sleeps until its earliest timer or
 * a wake-up (a change of the limit, the runtime stopping); due timers are
 * fired and their tasks handed off the same way.  Returns to the loop,
 * which looks again. */
void weft__excess_park(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    /* A notifier may have popped us (while we were still active) and given
     * us its searching token for work we will not do: pass it on. */
    weft__drop_searching(w, true);
    w->spread_due = 0;
    int64_t now = weft_now();
    if (weft__timers_next(&w->timers) <= now)
        weft__timers_run(w, w, now);  /* their tasks come to our queues */
    hand_off(w);
    /* seq_cst: ordered before the load of active below, so a waker's
     * wake_pending store and channel write that follow its store of active
     * cannot both be missed (wake_worker: the essay, 9a and 11). */
    atomic_store_explicit(&w->wake_pending, false, memory_order_seq_cst);
    /* seq_cst: pairs with the store in weft__active_set. */
    if ((unsigned)w->id < atomic_load_explicit(&rt->active, memory_order_seq_cst) ||
        atomic_load_explicit(&rt->stop, memory_order_seq_cst))
        return;
    int64_t next = weft__timers_next(&w->timers);
    /* Its caches' unused part goes back as in any park (trim.c). */
    int64_t r0 = weft__real_now();
    int64_t trim_at = weft__trim_caches(w, r0);
    struct timespec ts, *tsp = NULL;
    /* Virtual clock: its due timers are fired by whoever advances it
     * (vclock.c), and a deadline is no real time to sleep until. */
    bool virtual = rt->cfg.vclock;
    if (!virtual)
        tsp = weft__park_timeout(&ts, next, trim_at, r0);
    /* relaxed: observability and tests (weft_stats' busy time, sysmon's
     * "not running", the stress program's "parked as excess"). */
    atomic_store_explicit(&w->running, 0, memory_order_relaxed);
    /* seq_cst: the virtual clock counts the excess workers (vclock.c);
     * with it on, an idle worker is told to look again. */
    atomic_store_explicit(&w->excess, true, memory_order_seq_cst);
    if (virtual)
        weft__vclock_kick(rt);
    int64_t t0 = weft__real_now();  /* busy time is real (vclock.c) */
    atomic_store_explicit(&w->park_since, t0, memory_order_relaxed);
    weft__poll_sleep(w, tsp);
    WEFT__COUNT(w, parked_ns, (uint64_t)(weft__real_now() - t0));
    atomic_store_explicit(&w->park_since, 0, memory_order_relaxed);
    atomic_store_explicit(&w->excess, false, memory_order_seq_cst);
    atomic_store_explicit(&w->running, 1, memory_order_relaxed);
}
