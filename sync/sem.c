/*
 * Counting semaphore (asyncio.Semaphore; a Go buffered channel used as one;
 * golang.org/x/sync/semaphore with weight 1).
 *
 * Fair: release hands its permit straight to the first waiter (the count
 * stays the same), so a permit is never taken by a late arrival while
 * others wait; the count is positive only when nobody waits.  A waiter
 * cancelled or timed out at the moment it is handed a permit keeps it and
 * returns 0: no permit is ever lost.
 */
#include <limits.h>
#include <string.h>

#include "sync_internal.h"

typedef struct {
    weft__spin lock;
    uint32_t magic;
    unsigned value;   /* permits; > 0 only when q is empty */
    weft__waitq q;
} sem_impl;

_Static_assert(sizeof(sem_impl) <= sizeof(weft_sem), "weft_sem storage too small");
_Static_assert(_Alignof(sem_impl) <= _Alignof(weft_sem), "weft_sem alignment too small");

static sem_impl *S(weft_sem *s) { return (sem_impl *)(void *)s; }
static bool live(weft_sem *s) { return s && S(s)->magic == WEFT__SEM_MAGIC; }

int weft_sem_init(weft_sem *s, unsigned value)
{
    if (!s || value > INT_MAX)
        return -EINVAL;
    memset(s, 0, sizeof *s);
    S(s)->value = value;
    weft__spin_init(&S(s)->lock, WEFT__RANK_PRIM);
    S(s)->magic = WEFT__SEM_MAGIC;
    return 0;
}

void weft_sem_destroy(weft_sem *s)
{
    if (s)
        S(s)->magic = 0;
}

int weft_sem_acquire_until(weft_sem *s, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(s), true);
    if (rc)
        return rc;
    sem_impl *x = S(s);
    weft__spin_lock(&x->lock);
    if (x->value > 0) {
        x->value--;
        weft__spin_unlock(&x->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&x->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq_push(&x->q, &w);
    rc = weft__waitq_wait(&x->lock, &x->q, &w, "semaphore", deadline, true, NULL);
    weft__spin_unlock(&x->lock);
    return rc;  /* 0: granted a permit, whatever else happened */
}

int weft_sem_acquire(weft_sem *s)
{
    return weft_sem_acquire_until(s, WEFT_FOREVER);
}

/* Any thread. */
int weft_sem_tryacquire(weft_sem *s)
{
    if (!live(s))
        return -EINVAL;
    sem_impl *x = S(s);
    weft__spin_lock(&x->lock);
    int rc = -EAGAIN;
    if (x->value > 0) {
        x->value--;
        rc = 0;
    }
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
int weft_sem_release(weft_sem *s)
{
    if (!live(s))
        return -EINVAL;
    sem_impl *x = S(s);
    int rc = 0;
    weft__spin_lock(&x->lock);
    weft__waiter *w = weft__waitq_pop(&x->q);
    if (w)
        weft__waiter_grant(w);  /* the permit goes straight to w */
    else if (x->value < INT_MAX)
        x->value++;
    else
        rc = -EOVERFLOW;
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
int weft_sem_value(weft_sem *s)
{
    if (!live(s))
        return -EINVAL;
    sem_impl *x = S(s);
    weft__spin_lock(&x->lock);
    int v = (int)x->value;
    weft__spin_unlock(&x->lock);
    return v;
}
