/*
 * Mutex (asyncio.Lock, Go's sync.Mutex), after Go's two modes.
 *
 * Normal mode: unlock frees the mutex and wakes the first waiter to retry
 * (at most one such "woken" waiter at a time); a coroutine arriving
 * meanwhile may take the free mutex first ("barging"), which keeps a hot
 * mutex on the core that uses it.  A woken waiter that loses the race waits
 * again at the head of the line.
 * Starvation mode: when a waiter that lost a race has waited 1 ms or more,
 * unlock hands the mutex directly to the first waiter (the mutex never
 * becomes free, so nobody can barge) until the line is empty or a waiter is
 * served within 1 ms of arriving.  No waiter waits behind barging for more
 * than about 1 ms plus the holders' critical sections.
 *
 * Every wake-up goes through the wait-queue protocol (waitq.h): the grant is
 * either the mutex itself (HANDOFF) or the right to retry (RETRY).  A waiter
 * cancelled when handed the mutex keeps it (the lock succeeded: 0); one
 * cancelled when told to retry passes that on to the next waiter if the
 * mutex is free.  Nothing is lost: whenever the mutex is free and waiters
 * wait, one of them is being woken.
 *
 * The mutex has no owner: unlock may come from another coroutine or a plain
 * thread (as Go's sync.Mutex, asyncio.Lock has an owner; weft follows Go).
 */
#include <string.h>

#include "sync_internal.h"

#define STARVE_NS (1 * WEFT_MS)

enum { GRANT_HANDOFF = 1, GRANT_RETRY = 2 };

typedef struct {
    weft__spin lock;
    uint32_t magic;
    bool locked;     /* held (also during a hand-off: it belongs to the wakee) */
    bool starving;   /* starvation mode: unlock hands off */
    bool woken;      /* a RETRY grant is on its way to a waiter */
    weft__waitq q;   /* waiters; prio = when each started waiting */
} mutex_impl;

_Static_assert(sizeof(mutex_impl) <= sizeof(weft_mutex), "weft_mutex storage too small");
_Static_assert(_Alignof(mutex_impl) <= _Alignof(weft_mutex), "weft_mutex alignment too small");

static mutex_impl *M(weft_mutex *m) { return (mutex_impl *)(void *)m; }

bool weft__mutex_live(weft_mutex *m)
{
    return m && M(m)->magic == WEFT__MUTEX_MAGIC;
}

int weft_mutex_init(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    memset(m, 0, sizeof *m);
    weft__spin_init(&M(m)->lock, WEFT__RANK_PRIM);
    M(m)->magic = WEFT__MUTEX_MAGIC;
    return 0;
}

void weft_mutex_destroy(weft_mutex *m)
{
    if (m)
        M(m)->magic = 0;
}

/* Under x->lock, the mutex free: tells the first waiter to retry, unless a
 * retry grant is already on its way. */
static void wake_one(mutex_impl *x)
{
    if (x->woken)
        return;
    weft__waiter *w = weft__waitq_pop(&x->q);
    if (!w)
        return;
    x->woken = true;
    w->kind = GRANT_RETRY;
    weft__waiter_grant(w);
}

/* Under x->lock, the mutex held: releases it. */
static void release(mutex_impl *x)
{
    if (x->starving) {
        weft__waiter *w = weft__waitq_pop(&x->q);
        if (w) {
            /* Go's exit rule: the last waiter, or one served promptly. */
            if (!x->q.head || weft_now() - w->prio < STARVE_NS)
                x->starving = false;
            w->kind = GRANT_HANDOFF;  /* stays locked: it is w's now */
            weft__waiter_grant(w);
            return;
        }
        x->starving = false;
    }
    x->locked = false;
    wake_one(x);
}

int weft__mutex_lock(weft_mutex *m, int64_t deadline, bool cancellable)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, weft__mutex_live(m), cancellable);
    if (rc)
        return rc;
    mutex_impl *x = M(m);
    weft__spin_lock(&x->lock);
    if (!x->locked) {
        x->locked = true;
        weft__spin_unlock(&x->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&x->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self, .prio = weft_now()};
    weft__waitq_push(&x->q, &w);
    for (;;) {
        rc = weft__waitq_wait(&x->lock, &x->q, &w, "mutex", deadline, cancellable, NULL);
        if (rc || w.kind == GRANT_HANDOFF)
            break;  /* timed out / cancelled (not queued), or handed the mutex */
        /* GRANT_RETRY */
        x->woken = false;
        if (cancellable && weft__is_cancelled(self)) {
            if (!x->locked)
                wake_one(x);  /* pass the wake-up on */
            rc = -ECANCELED;
            break;
        }
        if (!x->locked) {
            x->locked = true;
            break;
        }
        /* Lost the race to a barger: wait again, first in line. */
        int64_t now = weft_now();
        if (deadline != WEFT_FOREVER && deadline <= now) {
            rc = -ETIMEDOUT;  /* the holder's unlock wakes the next one */
            break;
        }
        if (now - w.prio >= STARVE_NS)
            x->starving = true;
        atomic_store_explicit(&w.granted, false, memory_order_relaxed);
        weft__waitq_push_front(&x->q, &w);
    }
    weft__spin_unlock(&x->lock);
    return rc;
}

int weft_mutex_lock(weft_mutex *m)
{
    return weft__mutex_lock(m, WEFT_FOREVER, true);
}

int weft_mutex_lock_until(weft_mutex *m, int64_t deadline)
{
    return weft__mutex_lock(m, deadline, true);
}

/* Any thread. */
int weft_mutex_trylock(weft_mutex *m)
{
    if (!weft__mutex_live(m))
        return -EINVAL;
    mutex_impl *x = M(m);
    weft__spin_lock(&x->lock);
    int rc = x->locked ? -EBUSY : 0;
    x->locked = true;
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
int weft_mutex_unlock(weft_mutex *m)
{
    if (!weft__mutex_live(m))
        return -EINVAL;
    mutex_impl *x = M(m);
    weft__spin_lock(&x->lock);
    int rc = 0;
    if (x->locked)
        release(x);
    else
        rc = -EPERM;
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
bool weft_mutex_is_locked(weft_mutex *m)
{
    if (!weft__mutex_live(m))
        return false;
    mutex_impl *x = M(m);
    weft__spin_lock(&x->lock);
    bool l = x->locked;
    weft__spin_unlock(&x->lock);
    return l;
}
