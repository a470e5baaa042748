/*
 * Wait group (Go's sync.WaitGroup; asyncio's nearest is TaskGroup/gather).
 *
 * A counter: add(n) before starting n pieces of work, done() as each ends,
 * wait() until the counter is zero.  When it reaches zero every waiter is
 * granted (wait-queue protocol, waitq.h) and returns 0, even if cancelled
 * or timed out at that moment.  The group may be reused once the waiters of
 * the previous round have returned.
 */
#include <string.h>

#include "sync_internal.h"

typedef struct {
    weft__spin lock;
    uint32_t magic;
    int64_t count;
    weft__waitq q;
} wg_impl;

_Static_assert(sizeof(wg_impl) <= sizeof(weft_waitgroup), "weft_waitgroup storage too small");
_Static_assert(_Alignof(wg_impl) <= _Alignof(weft_waitgroup),
               "weft_waitgroup alignment too small");

static wg_impl *G(weft_waitgroup *g) { return (wg_impl *)(void *)g; }
static bool live(weft_waitgroup *g) { return g && G(g)->magic == WEFT__WG_MAGIC; }

int weft_waitgroup_init(weft_waitgroup *g)
{
    if (!g)
        return -EINVAL;
    memset(g, 0, sizeof *g);
    weft__spin_init(&G(g)->lock, WEFT__RANK_PRIM);
    G(g)->magic = WEFT__WG_MAGIC;
    return 0;
}

void weft_waitgroup_destroy(weft_waitgroup *g)
{
    if (g)
        G(g)->magic = 0;
}

/* Any thread. */
int weft_waitgroup_add(weft_waitgroup *g, int64_t delta)
{
    if (!live(g))
        return -EINVAL;
    wg_impl *x = G(g);
    int rc = 0;
    weft__spin_lock(&x->lock);
    if (delta < 0 && x->count + delta < 0) {
        rc = -EINVAL;  /* below zero: Go panics; weft refuses, counter unchanged */
    } else if (delta > 0 && x->count > INT64_MAX - delta) {
        rc = -EOVERFLOW;
    } else {
        x->count += delta;
        if (x->count == 0) {
            weft__waiter *w;
            while ((w = weft__waitq_pop(&x->q)))
                weft__waiter_grant(w);
        }
    }
    weft__spin_unlock(&x->lock);
    return rc;
}

/* Any thread. */
int weft_waitgroup_done(weft_waitgroup *g)
{
    return weft_waitgroup_add(g, -1);
}

/* Any thread. */
int64_t weft_waitgroup_count(weft_waitgroup *g)
{
    if (!live(g))
        return -EINVAL;
    wg_impl *x = G(g);
    weft__spin_lock(&x->lock);
    int64_t c = x->count;
    weft__spin_unlock(&x->lock);
    return c;
}

int weft_waitgroup_wait(weft_waitgroup *g, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(g), true);
    if (rc)
        return rc;
    wg_impl *x = G(g);
    weft__spin_lock(&x->lock);
    if (x->count == 0) {
        weft__spin_unlock(&x->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&x->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq_push(&x->q, &w);
    rc = weft__waitq_wait(&x->lock, &x->q, &w, "waitgroup", deadline, true, NULL);
    weft__spin_unlock(&x->lock);
    return rc;
}
