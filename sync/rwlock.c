/*
 * Reader-writer lock (Go's sync.RWMutex; asyncio has none).
 *
 * Strictly FIFO between readers and writers: a lock request that finds
 * anyone waiting queues behind them, so a stream of readers cannot starve a
 * writer, nor writers readers.  When the lock is released, the first waiter
 * is granted: a writer alone, or a reader together with every reader queued
 * right behind it (up to the next writer).  Grants follow the wait-queue
 * protocol (waitq.h); a waiter cancelled or timed out at the moment it is
 * granted keeps the lock and returns 0.  A waiter that gives up re-runs the
 * grant (readers queued behind a writer that timed out may now enter).
 *
 * No owner is recorded: an unlock may come from another coroutine or a
 * plain thread.
 */
#include <string.h>

#include "sync_internal.h"

enum { READER = 0, WRITER = 1 };

typedef struct {
    weft__spin lock;
    uint32_t magic;
    uint32_t readers;  /* active readers */
    bool writer;       /* a writer holds it */
    weft__waitq q;     /* kind: READER / WRITER */
} rwlock_impl;

_Static_assert(sizeof(rwlock_impl) <= sizeof(weft_rwlock), "weft_rwlock storage too small");
_Static_assert(_Alignof(rwlock_impl) <= _Alignof(weft_rwlock), "weft_rwlock alignment too small");

static rwlock_impl *R(weft_rwlock *rw) { return (rwlock_impl *)(void *)rw; }
static bool live(weft_rwlock *rw) { return rw && R(rw)->magic == WEFT__RWLOCK_MAGIC; }

int weft_rwlock_init(weft_rwlock *rw)
{
    if (!rw)
        return -EINVAL;
    memset(rw, 0, sizeof *rw);
    weft__spin_init(&R(rw)->lock, WEFT__RANK_PRIM);
    R(rw)->magic = WEFT__RWLOCK_MAGIC;
    return 0;
}

void weft_rwlock_destroy(weft_rwlock *rw)
{
    if (rw)
        R(rw)->magic = 0;
}

/* Under the lock: grants whoever the current state lets in, in order. */
static void grant_next(rwlock_impl *x)
{
    weft__waiter *w;
    while ((w = x->q.head) && !x->writer) {
        if (w->kind == WRITER) {
            if (x->readers)
                break;
            x->writer = true;
            weft__waitq_remove(&x->q, w);
            weft__waiter_grant(w);
            break;
        }
        if (x->readers == UINT32_MAX)
            break;
        x->readers++;
        weft__waitq_remove(&x->q, w);
        weft__waiter_grant(w);
    }
}

/* Under the lock: may a request of this kind enter now? (Only when nobody
 * waits: FIFO.) */
static bool can_enter(rwlock_impl *x, int kind)
{
    if (x->writer || x->q.head)
        return false;
    return kind == WRITER ? x->readers == 0 : x->readers < UINT32_MAX;
}

static void enter(rwlock_impl *x, int kind)
{
    if (kind == WRITER)
        x->writer = true;
    else
        x->readers++;
}

static int lock_until(weft_rwlock *rw, int kind, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(rw), true);
    if (rc)
        return rc;
    rwlock_impl *x = R(rw);
    weft__spin_lock(&x->lock);
    if (can_enter(x, kind)) {
        enter(x, kind);
        weft__spin_unlock(&x->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&x->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self, .kind = kind};
    weft__waitq_push(&x->q, &w);
    rc = weft__waitq_wait(&x->lock, &x->q, &w, kind == WRITER ? "rwlock write" : "rwlock read",
                          deadline, true, NULL);
    if (rc)
        grant_next(x);  /* w no longer blocks those behind it */
    weft__spin_unlock(&x->lock);
    return rc;
}

int weft_rwlock_rdlock(weft_rwlock *rw) { return lock_until(rw, READER, WEFT_FOREVER); }
int weft_rwlock_wrlock(weft_rwlock *rw) { return lock_until(rw, WRITER, WEFT_FOREVER); }
int weft_rwlock_rdlock_until(weft_rwlock *rw, int64_t deadline)
{
    return lock_until(rw, READER, deadline);
}
int weft_rwlock_wrlock_until(weft_rwlock *rw, int64_t deadline)
{
    return lock_until(rw, WRITER, deadline);
}

/* Any thread. */
static int trylock(weft_rwlock *rw, int kind)
{
    if (!live(rw))
        return -EINVAL;
    rwlock_impl *x = R(rw);
    weft__spin_lock(&x->lock);
    int rc = -EBUSY;
    if (can_enter(x, kind)) {
        enter(x, kind);
        rc = 0;
    }
    weft__spin_unlock(&x->lock);
    return rc;
}

int weft_rwlock_tryrdlock(weft_rwlock *rw) { return trylock(rw, READER); }
int weft_rwlock_trywrlock(weft_rwlock *rw) { return trylock(rw, WRITER); }

/* Any thread. */
int weft_rwlock_rdunlock(weft_rwlock *rw)
{
    if (!live(rw))
        return -EINVAL;
    rwlock_impl *x = R(rw);
    weft__spin_lock(&x->lock);
    int rc = 0;
    if (x->readers == 0)
        rc = -EPERM;
    else if (--x->readers == 0)
        grant_next(x);
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
int weft_rwlock_wrunlock(weft_rwlock *rw)
{
    if (!live(rw))
        return -EINVAL;
    rwlock_impl *x = R(rw);
    weft__spin_lock(&x->lock);
    int rc = 0;
    if (!x->writer) {
        rc = -EPERM;
    } else {
        x->writer = false;
        grant_next(x);
    }
    weft__spin_unlock(&x->lock);
    return rc;
}
