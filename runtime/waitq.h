/*
 * Wait queues: the one mechanism every waiting primitive waits with (sync/,
 * task groups, descriptors in netpoll.c).  Internal.
 *
 * A waitq is a FIFO of waiter records, each on the waiting coroutine's
 * stack, guarded by the owning primitive's spinlock.  The protocol, on top of
 * the scheduler's park/wake (runtime/sched.c, essay section 5):
 *
 *  waiter (holding the lock):  waitq_push(q, &w); unlock; weft__park_ex(...
 *      commit = weft__waiter_commit, &w ...); lock; if (!w.granted)
 *      waitq_remove(q, &w) (timed out / cancelled / spurious); ...
 *  waker (holding the lock):   w = waitq_pop(q); w->granted = true (plus the
 *      value it hands over: a permit, an item, the mutex); weft__waiter_grant(w)
 *      BEFORE unlocking.
 *
 * granted is written and read under the lock, so a waiter cancelled at the
 * moment it is granted sees that it was granted and keeps (or passes on) what
 * it was handed: a hand-off is never lost.  Waking under the lock keeps the
 * waiter's record (on its stack) and the task alive while the waker uses
 * them: the waiter cannot leave before it re-takes the lock.
 * One variant (queues only): the waker wakes first and grants last
 * (weft__waiter_grant_last), and a waiter that sees its grant leaves
 * without the lock (weft__waitq_wait with locked non-NULL); the functions
 * below say why that is safe and what it costs the primitive's destroy.
 * A grant that lands between unlock and park leaves the task a permit (its
 * token is still RUNNING), so its park returns at once (protocol 5); the
 * commit's look at `granted` only saves that round trip.
 *
 * Operations: all under the primitive's lock, from any thread; waiters are
 * coroutines.
 */
#ifndef WEFT_WAITQ_H
#define WEFT_WAITQ_H

#include "internal.h"

typedef struct weft__waiter {
    struct weft__waiter *prev, *next;
    weft_task *task;
    _Atomic bool granted;   /* written under the lock; read by commit without it (a hint) */
    void *value;            /* what a grant hands over (queue item, ...) */
    int64_t prio;           /* free for the primitive's use */
    int kind;               /* free for the primitive's use (reader/writer ...) */
#if WEFT_CHECKS
    struct weft__waitq *on; /* the queue it is in, NULL when in none */
#endif
} weft__waiter;

typedef struct weft__waitq {
    weft__waiter *head, *tail;
    size_t n;
} weft__waitq;

/* Membership: a waiter is in at most one queue, once (checked builds). */
static inline void weft__waitq_enter_check(weft__waitq *q, weft__waiter *w)
{
    WEFT__ASSERT(w->task);
#if WEFT_CHECKS
    WEFT__ASSERT(w->on == NULL);  /* queued twice */
    w->on = q;
#endif
    (void)q;
}

static inline void weft__waitq_push(weft__waitq *q, weft__waiter *w)
{
    weft__waitq_enter_check(q, w);
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

/* Puts w at the head of q (a waiter that lost a race and waits again ahead
 * of newer waiters: the mutex's normal mode). */
static inline void weft__waitq_push_front(weft__waitq *q, weft__waiter *w)
{
    weft__waitq_enter_check(q, w);
    w->prev = NULL;
    w->next = q->head;
    if (q->head)
        q->head->prev = w;
    else
        q->tail = w;
    q->head = w;
    q->n++;
}

static inline void weft__waitq_remove(weft__waitq *q, weft__waiter *w)
{
#if WEFT_CHECKS
    WEFT__ASSERT(w->on == q);  /* removed from a queue it is not in */
    w->on = NULL;
#endif
    WEFT__ASSERT(q->n > 0);
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    q->n--;
}

static inline weft__waiter *weft__waitq_pop(weft__waitq *q)
{
    weft__waiter *w = q->head;
    if (w)
        weft__waitq_remove(q, w);
    return w;
}

/* Under the lock: hands w its grant and wakes it (into the waker's LIFO slot
 * when the waker is a coroutine on a worker, so a ping-pong stays on one
 * core). */
static inline void weft__waiter_grant(weft__waiter *w)
{
    /* relaxed: read under the lock; weft__waiter_commit's look without it
     * is a hint (the wake below leaves a permit if the waiter is not
     * asleep yet). */
    atomic_store_explicit(&w->granted, true, memory_order_relaxed);
    weft__wake_lifo(w->task);
}

/* Under the lock: as weft__waiter_grant, for a waiter that waits with
 * weft__waitq_wait (locked non-NULL) and may leave without re-taking the
 * lock once it sees its grant.  So the wake comes first and the grant last
 * (release: pairs with the acquire in weft__waitq_wait, and publishes what
 * the grant hands over): after the store the waker touches neither the
 * record nor the task.  A waiter that runs between the two sees no grant and
 * re-takes the lock, which the waker still holds.  The waker's last touch
 * of the primitive is its unlock, so the primitive's destroy takes the lock
 * once before it frees (a waiter may free it on the strength of a grant). */
static inline void weft__waiter_grant_last(weft__waiter *w)
{
    weft__wake_lifo(w->task);
    atomic_store_explicit(&w->granted, true, memory_order_release);
}

/* Scheduler stack (park commit): sleep unless already granted. */
bool weft__waiter_commit(weft_task *t, void *arg);

/* May suspend.  Called with *lock held and w pushed on a queue: unlocks,
 * parks until granted, the deadline or (cancellable) cancellation, and
 * re-locks.  Returns 0 when granted (whatever else happened), else
 * -ETIMEDOUT / -ECANCELED with w removed from q.  locked is NULL for
 * every primitive but the queue.
 *
 * With locked non-NULL, for a waiter that every waker grants with
 * weft__waiter_grant_last: returns 0 WITHOUT the lock once it sees its
 * grant (acquire: pairs with the release there; the waker is done with w
 * and the task), else as above, with the lock held; *locked says which.  A
 * queue's getters and putters wait this way: one lock round trip fewer a
 * message in a ping-pong (docs/scheduler.md, section 13).
 *
 * Inline: a waiting coroutine's stack at its park is what it must bring
 * back into the cache when it resumes, and one frame fewer is a cache line
 * or two fewer per wake-up (docs/scheduler.md, section 13); and locked is
 * a constant at each call site, so each caller gets only its own path.  (One
 * function, not a wrapper: an inline frame in an inline frame would be one
 * more level for debuggers to show.) */
static inline __attribute__((always_inline)) int
weft__waitq_wait(weft__spin *lock, weft__waitq *q, weft__waiter *w, const char *what,
                 int64_t deadline, bool cancellable, bool *locked)
{
    for (;;) {
        weft__spin_unlock(lock);
        int rc = weft__park_ex(what, weft__waiter_commit, w, deadline, cancellable);
        if (locked && atomic_load_explicit(&w->granted, memory_order_acquire)) {
            *locked = false;
            return 0;
        }
        weft__spin_lock(lock);
        if (locked)
            *locked = true;
        if (atomic_load_explicit(&w->granted, memory_order_relaxed))
            return 0;
        if (rc != 0) {
            weft__waitq_remove(q, w);
            return rc;
        }
        /* spurious: wait on */
    }
}

#endif
