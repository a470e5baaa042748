/*
 * Idle workers and the searching token (the scheduler essay, sched.c,
 * sections 3 and 4): who is woken when work appears.
 *
 * A producer calls weft__notify: when some worker is idle and none is
 * searching, it claims the single searching token, pops one idle worker
 * and wakes it (weft__wake_worker picks the channel: the shared poller when
 * that worker drives it, else its own sleep; park.c).  A searcher that finds
 * work drops the token and, if it was the last, passes it on
 * (weft__drop_searching), so a burst of work wakes workers one at a time.
 * The idle list and n_idle are the other half of the parker's re-check
 * (park.c, weft__park_worker; essay 4c).
 *
 * Lock order: idle_lock has rank IDLE (internal.h), below INJECT (notify
 * may run under any lock above it, after inject_lock is released); nothing
 * is taken while it is held.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "poller.h"

/* Any thread.  Protocol 4a of the essay (sched.c): weft__notify's slow
 * path (internal.h), once it saw an idle worker. */
void weft__notify_slow(weft__runtime *rt)
{
    unsigned z = 0;
    /* seq_cst: pairs with the decrement in drop_searching. */
    if (!atomic_compare_exchange_strong_explicit(&rt->n_searching, &z, 1,
                                                 memory_order_seq_cst,
                                                 memory_order_relaxed))
        return;  /* a searcher exists; it will find the work */
    weft__spin_lock(&rt->idle_lock);
    weft__worker *w = rt->idle;
    if (w) {
        rt->idle = w->idle_next;
        w->in_idle = false;
        atomic_fetch_sub_explicit(&rt->n_idle, 1, memory_order_seq_cst);
    }
    weft__spin_unlock(&rt->idle_lock);
    if (!w) {
        atomic_fetch_sub_explicit(&rt->n_searching, 1, memory_order_seq_cst);
        return;
    }
    weft__wake_worker(w);
}

/* Any thread.  Makes parked worker w return from its wait (or its next one
 * not block): in the shared poller when it drives, else in its own sleep. */
void weft__wake_worker(weft__worker *w)
{
    /* seq_cst, the flag before the load: with park_wait's driver CAS and
     * flag load (Dekker), either we see w driving or w sees the flag. */
    atomic_store_explicit(&w->wake_pending, true, memory_order_seq_cst);
    if (atomic_load_explicit(&w->rt->driver, memory_order_seq_cst) == w)
        weft__poll_wake_driver(w->rt);
    else
        weft__poll_wake_worker(w);
}

/* Owner worker only.  weft__drop_searching's slow path (internal.h), w
 * searching: ends its search; the last searcher passes it on. */
void weft__drop_searching_slow(weft__worker *w, bool found)
{
    w->searching = false;
    if (atomic_fetch_sub_explicit(&w->rt->n_searching, 1, memory_order_seq_cst) == 1 && found)
        weft__notify(w->rt);
}

/* Owner worker only.  A poll made coroutines ready (spread_due set): once
 * the last of them has waited WEFT_SPREAD_US in w's ring, wake a helper. */
void weft__spread_check(weft__worker *w)
{
    /* relaxed: a hint (head moves by w's pops and thieves' CAS); at worst
     * one helper too many or one check too late. */
    uint32_t head = atomic_load_explicit(&w->q.head, memory_order_relaxed);
    if ((int32_t)(head - w->spread_mark) >= 0) {
        w->spread_due = 0;  /* all taken in time, by w or by thieves */
        return;
    }
    if (weft__real_now() < w->spread_due)
        return;
    w->spread_due = 0;
    weft__notify(w->rt);
}

/* Owner worker only.  Is there work anywhere? (pre-park re-check)  The
 * queues of excess workers are not looked at: they hand them off
 * themselves, or help_blocked takes them (the essay, sched.c, 11). */
bool weft__work_anywhere(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->inject_len, memory_order_seq_cst))
        return true;
    /* relaxed: see weft__excess. */
    unsigned active = atomic_load_explicit(&rt->active, memory_order_relaxed);
    for (unsigned i = 0; i < rt->nworkers && i < active; i++)
        if (!weft__runq_empty(rt->workers[i]))
            return true;
    return false;
}

