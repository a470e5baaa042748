/*
 * The injection queue: the runtime's one global queue, a spinlocked list of
 * tasks.  It takes what a worker's full ring spills (half of it, runq.c),
 * spawns and wake-ups from plain threads and from other runtimes' workers,
 * and tasks handed back when no stack could be had.  Workers take a fair
 * share of it (one to run, the rest into their ring) every
 * WEFT__INJECT_EVERY schedules and when they run out of local work, so
 * injected tasks are never starved by a busy ring (the scheduler essay,
 * sched.c, sections 2 and 4c).
 *
 * Lock order: inject_lock has rank INJECT (internal.h), below the group,
 * primitive, fd and timer locks (a wake-up under those may overflow a ring
 * into it); nothing is taken while it is held.
 */
#define _GNU_SOURCE
#include "internal.h"

/* Injection queue                                                     */
/* ------------------------------------------------------------------ */

/* Any thread.  Appends a linked batch head..tail of n tasks and notifies. */
void weft__inject_push(weft__runtime *rt, weft_task *head, weft_task *tail, size_t n)
{
    tail->next = NULL;
    weft__spin_lock(&rt->inject_lock);
    if (rt->inject_tail)
        rt->inject_tail->next = head;
    else
        rt->inject_head = head;
    rt->inject_tail = tail;
    /* seq_cst read-modify-write: with the seq_cst load of n_idle in notify
     * it pairs with a parker's increment of n_idle and its seq_cst re-check
     * of inject_len (protocol 4c): one of the two sees the other. */
    atomic_fetch_add_explicit(&rt->inject_len, n, memory_order_seq_cst);
    weft__spin_unlock(&rt->inject_lock);
    weft__notify(rt);
}

/* Owner worker only.  weft__inject_pop's slow path (internal.h), the queue
 * not empty at a glance.  Takes a fair share of the injection queue: one task to
 * run now, the rest (at most max-1) into w's ring. */
weft_task *weft__inject_pop_slow(weft__worker *w, unsigned max)
{
    weft__runtime *rt = w->rt;
    weft__spin_lock(&rt->inject_lock);
    size_t len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
    size_t n = len / rt->nworkers + 1;
    if (n > len) n = len;
    if (n > max) n = max;
    weft_task *first = rt->inject_head, *t = first;
    for (size_t i = 0; i < n; i++)
        t = t->next;
    rt->inject_head = t;
    if (!t)
        rt->inject_tail = NULL;
    atomic_store_explicit(&rt->inject_len, len - n, memory_order_relaxed);
    weft__spin_unlock(&rt->inject_lock);
    WEFT__COUNT(w, injected, n);
    if (!first)
        return NULL;
    t = first->next;
    for (size_t i = 1; i < n; i++) {
        weft_task *nx = t->next;
        weft__runq_put(w, t);
        t = nx;
    }
    return first;
}

