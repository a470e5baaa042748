/*
 * Condition variable (asyncio.Condition, Go's sync.Cond), used with a
 * weft_mutex.
 *
 * wait queues the caller under the condition's lock BEFORE releasing the
 * mutex, so a signal sent by whoever takes the mutex next is never missed.
 * signal grants the first waiter, broadcast every waiter (wait-queue
 * protocol, waitq.h).  A waiter cancelled or timed out at the moment it is
 * signalled keeps the signal and returns 0 (the signal is consumed by a
 * waiter that will re-check its predicate, never lost).  Whatever wait
 * returns, the mutex is held again on return; re-acquiring it ignores
 * cancellation (as pthread_cond_wait does), so a cancelled waiter may still
 * wait for the mutex.  Lock order: condition, then mutex.
 */
#include <string.h>

#include "sync_internal.h"

typedef struct {
    weft__spin lock;
    uint32_t magic;
    weft__waitq q;
} cond_impl;

_Static_assert(sizeof(cond_impl) <= sizeof(weft_cond), "weft_cond storage too small");
_Static_assert(_Alignof(cond_impl) <= _Alignof(weft_cond), "weft_cond alignment too small");

static cond_impl *C(weft_cond *c) { return (cond_impl *)(void *)c; }
static bool live(weft_cond *c) { return c && C(c)->magic == WEFT__COND_MAGIC; }

int weft_cond_init(weft_cond *c)
{
    if (!c)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    weft__spin_init(&C(c)->lock, WEFT__RANK_COND);
    C(c)->magic = WEFT__COND_MAGIC;
    return 0;
}

void weft_cond_destroy(weft_cond *c)
{
    if (c)
        C(c)->magic = 0;
}

int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(c) && weft__mutex_live(m), true);
    if (rc)
        return rc;
    if (weft__deadline_past(deadline))
        return -ETIMEDOUT;  /* never released m */
    cond_impl *x = C(c);
    weft__waiter w = {.task = self};
    weft__spin_lock(&x->lock);
    weft__waitq_push(&x->q, &w);
    /* Release m while queued (lock order: condition, then mutex). */
    rc = weft_mutex_unlock(m);
    if (rc) {
        /* m was not locked: nothing was released, nothing is re-taken.  No
         * signal can have reached w: we held the condition's lock. */
        weft__waitq_remove(&x->q, &w);
        weft__spin_unlock(&x->lock);
        return rc;
    }
    rc = weft__waitq_wait(&x->lock, &x->q, &w, "cond", deadline, true, NULL);
    weft__spin_unlock(&x->lock);
    /* Re-acquire m whatever happened: deaf to cancellation, no deadline. */
    (void)weft__mutex_lock(m, WEFT_FOREVER, false);
    return rc;
}

/* Any thread. */
int weft_cond_signal(weft_cond *c)
{
    if (!live(c))
        return -EINVAL;
    cond_impl *x = C(c);
    weft__spin_lock(&x->lock);
    weft__waiter *w = weft__waitq_pop(&x->q);
    if (w)
        weft__waiter_grant(w);
    weft__spin_unlock(&x->lock);
    return 0;
}

/* Any thread. */
int weft_cond_broadcast(weft_cond *c)
{
    if (!live(c))
        return -EINVAL;
    cond_impl *x = C(c);
    weft__spin_lock(&x->lock);
    weft__waiter *w;
    while ((w = weft__waitq_pop(&x->q)))
        weft__waiter_grant(w);
    weft__spin_unlock(&x->lock);
    return 0;
}
