/*
 * The driver and parking (the scheduler essay, sched.c, sections 4c-d and 9):
 * what a worker out of work does until there is work again.
 *
 * One shared poller per runtime has no thread of its own: the first worker
 * to park takes the driver token (rt->driver) and waits IN the poller until
 * its earliest timer; the other parked workers sleep on their own wake-up
 * channel.  A busy worker polls without waiting every WEFT__INJECT_EVERY
 * schedules when nobody drives (weft__poll_now).  The Dekker pair that lets
 * a waker pick the right channel (w->wake_pending, rt->driver) is argued in
 * the essay, 9a; the platform's poller is behind runtime/poller.h.
 */
#define _GNU_SOURCE
#include <time.h>

#include "internal.h"
#include "poller.h"

/* Owner worker only, holding rt->driver.  One wait in the shared poller,
 * then the driver is released.  The coroutines it makes ready go to w's
 * ring without waking a helper (w->polling): a helper is woken only if
 * they are still queued WEFT_SPREAD_US later (weft__spread_check, idle.c). */
static void drive(weft__worker *w, const struct timespec *tsp)
{
    w->polling = true;
    int n = weft__poll_drive(w->rt, tsp);
    w->polling = false;
    /* release: pairs with the next driver's CAS. */
    atomic_store_explicit(&w->rt->driver, NULL, memory_order_release);
    if (n && !w->spread_due && !weft__runq_empty(w)) {
        /* relaxed: tail is written by w only. */
        w->spread_mark = atomic_load_explicit(&w->q.tail, memory_order_relaxed);
        w->spread_due = weft__real_now() + w->rt->cfg.spread_ns;
    }
}

/* Owner worker only.  Takes the driver token if nobody holds it (then the
 * caller must drive()).  seq_cst: the parker's side of the Dekker pair with
 * weft__wake_worker (park_wait); also the acquire that pairs with the
 * release ending the previous drive.  The plain load first keeps a held
 * token's line shared. */
static bool take_driver(weft__worker *w)
{
    weft__worker *none = NULL;
    return !atomic_load_explicit(&w->rt->driver, memory_order_relaxed) &&
           atomic_compare_exchange_strong_explicit(&w->rt->driver, &none, w,
                                                   memory_order_seq_cst, memory_order_relaxed);
}

/* Owner worker only (busy).  Polls the shared poller without waiting,
 * waking ready coroutines onto w's queues; skipped when it watches nothing
 * or another worker drives it (that one sees the events).  While the
 * injection queue holds tasks, what the poll wakes goes to that queue's
 * tail in one segment instead (Go's netpoll hands its list to the global
 * queue the same way): put in w's ring it would run ahead of a backlog that
 * waits there, and with thousands of connections the backlog waited for
 * seconds (docs/networking.md, section 8).  wake_rt NULL sends each wake-up
 * through wake_slow (sched.c), which collects it. */
void weft__poll_now(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    if (!atomic_load_explicit(&rt->nfds, memory_order_relaxed) || !take_driver(w))
        return;
    static const struct timespec zero = {0, 0};
    /* relaxed: a hint; a backlog missed or just gone changes only the order. */
    bool defer = atomic_load_explicit(&rt->inject_len, memory_order_relaxed) != 0;
    weft__runtime *wake_rt = w->wake_rt;  /* rt, or NULL while w traces */
    if (defer) {
        w->deferring = true;
        w->wake_rt = NULL;
    }
    drive(w, &zero);
    if (defer) {
        w->deferring = false;
        w->wake_rt = wake_rt;
        if (w->defer_n) {
            weft__inject_push(rt, w->defer_head, w->defer_tail, w->defer_n);
            w->defer_head = w->defer_tail = NULL;
            w->defer_n = 0;
        }
    }
    WEFT__COUNT(w, polls, 1);
}

/* Owner worker only, idle, under the virtual clock's lock (vclock.c): a
 * zero-timeout poll.  1 when work is queued after it, 0 when none is, -1
 * when another worker holds the driver token (it may be about to wait in
 * the poller with events pending: it must look, not us).  The whole
 * runtime is looked at, not only w's queue: the previous driver may have
 * taken the events this poll would have seen, and queued their tasks on its
 * own worker, which still counts as parked until it leaves the idle list.
 * Taking the token (seq_cst CAS, an acquire) after that driver released it
 * makes those tasks visible here. */
int weft__poll_ready(weft__worker *w)
{
    if (!take_driver(w))
        return -1;
    static const struct timespec zero = {0, 0};
    drive(w, &zero);
    return weft__work_anywhere(w);
}

/* Owner worker only.  w's wait when it parks: it drives the shared poller
 * when nobody does, else it sleeps on its own channel (essay, 9). */
static void park_wait(weft__worker *w, const struct timespec *tsp)
{
    /* seq_cst: the driver CAS, then the flag (Dekker with weft__wake_worker). */
    if (take_driver(w)) {
        static const struct timespec zero = {0, 0};
        if (atomic_load_explicit(&w->wake_pending, memory_order_seq_cst))
            tsp = &zero;
        drive(w, tsp);  /* releases the driver */
    } else {
        weft__poll_sleep(w, tsp);
    }
}

/* Owner worker only.  How long a park may last, in *ts (returned), or NULL
 * for no bound: until next (w's earliest timer, weft_now's clock) and
 * trim_at (weft__trim_caches, the real clock, read as now), INT64_MAX each
 * for none. */
struct timespec *weft__park_timeout(struct timespec *ts, int64_t next, int64_t trim_at,
                                    int64_t now)
{
    if (next == INT64_MAX && trim_at == INT64_MAX)
        return NULL;
    int64_t d = next == INT64_MAX ? INT64_MAX : next - weft_now();
    if (trim_at - now < d)
        d = trim_at - now;
    if (d < 0)
        d = 0;
    ts->tv_sec = d / WEFT_SEC;
    ts->tv_nsec = d % WEFT_SEC;
    return ts;
}

/* Owner worker only.  Parks w until notified or its earliest timer. */
void weft__park_worker(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    weft__drop_searching(w, false);
    /* seq_cst: ordered before any wake_worker aimed at this park (they pop
     * us under idle_lock first, or store rt->stop before they wake). */
    atomic_store_explicit(&w->wake_pending, false, memory_order_seq_cst);
    weft__spin_lock(&rt->idle_lock);
    w->idle_next = rt->idle;
    rt->idle = w;
    w->in_idle = true;
    /* seq_cst: pairs with inject_push's seq_cst add and notify's load. */
    atomic_fetch_add_explicit(&rt->n_idle, 1, memory_order_seq_cst);
    weft__spin_unlock(&rt->idle_lock);

    bool recheck = weft__work_anywhere(w) || atomic_load_explicit(&rt->stop, memory_order_seq_cst);
    /* Virtual clock: the last worker to idle moves the clock (vclock.c);
     * nobody sleeps on a deadline, which is not in real time. */
    bool virtual = rt->cfg.vclock;
    int64_t grace = 0;
    if (!recheck && virtual)
        recheck = weft__vclock_idle(w, &grace);
    /* relaxed: see weft__stack_put; sysmon covers a miss. */
    if (WEFT__UNLIKELY(atomic_load_explicit(&rt->stack_waiting, memory_order_relaxed)) &&
        w->stacks.free) {
        weft__stack_offer(w);
        recheck = true;  /* it may have queued work */
    }
    if (!recheck) {
        int64_t r0 = weft__real_now();
        /* Its caches' unused part goes back to the pools (trim.c); while
         * they hold anything, it parks no longer than until it would give
         * that back (in real time, so not under the virtual clock, whose
         * parks end by other means; there the next park does it). */
        int64_t trim_at = weft__trim_caches(w, r0);
        int64_t next = weft__timers_next(&w->timers);
        struct timespec ts, *tsp = NULL;
        if (grace) {
            ts.tv_sec = grace / WEFT_SEC;
            ts.tv_nsec = grace % WEFT_SEC;
            tsp = &ts;
        } else if (!virtual) {
            tsp = weft__park_timeout(&ts, next, trim_at, r0);
        }
        atomic_store_explicit(&w->running, 0, memory_order_relaxed);
        int64_t t0 = weft_now();
        atomic_store_explicit(&w->park_since, r0, memory_order_relaxed);
        park_wait(w, tsp);
        int64_t t1 = weft_now();
        WEFT__COUNT(w, parked_ns, (uint64_t)(weft__real_now() - r0));
        atomic_store_explicit(&w->park_since, 0, memory_order_relaxed);
        /* Under the virtual clock a park waits for the outside world (a
         * pool job, a descriptor), which a replayed trace cannot repeat. */
        if (WEFT__TRACING(w) && !virtual)
            weft__trace_event(w, WEFT__TEV_PARK, t0, t1 - t0, 0, 0);
        WEFT__COUNT(w, parks, 1);
        WEFT__COUNT(w, polls, 1);
        atomic_store_explicit(&w->running, 1, memory_order_relaxed);
    }
    weft__spin_lock(&rt->idle_lock);
    if (w->in_idle) {
        /* Nobody popped us: take ourselves off the idle list. */
        weft__worker **pp = &rt->idle;
        while (*pp != w)
            pp = &(*pp)->idle_next;
        *pp = w->idle_next;
        w->in_idle = false;
        atomic_fetch_sub_explicit(&rt->n_idle, 1, memory_order_seq_cst);
    } else {
        /* A notifier popped us and gave us its searching token. */
        w->searching = true;
        WEFT__COUNT(w, wakeups, 1);
    }
    weft__spin_unlock(&rt->idle_lock);
}

