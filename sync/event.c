/*
 * Events (asyncio.Event): set wakes every waiter and stays set until clear.
 * All calls but wait may come from plain threads.
 */
#include <errno.h>
#include <string.h>

#include "sync_internal.h"

typedef struct {
    weft__spin lock;
    uint32_t magic;
    bool set;
    weft__waitq q;
} event_impl;

_Static_assert(sizeof(event_impl) <= sizeof(weft_event), "weft_event storage too small");
_Static_assert(_Alignof(event_impl) <= _Alignof(weft_event), "weft_event alignment too small");

static event_impl *E(weft_event *e) { return (event_impl *)(void *)e; }
static bool live(weft_event *e) { return e && E(e)->magic == WEFT__EVENT_MAGIC; }

int weft_event_init(weft_event *e)
{
    if (!e)
        return -EINVAL;
    memset(e, 0, sizeof *e);
    weft__spin_init(&E(e)->lock, WEFT__RANK_PRIM);
    E(e)->magic = WEFT__EVENT_MAGIC;
    return 0;
}

void weft_event_destroy(weft_event *e)
{
    if (live(e))
        E(e)->magic = 0;
}

/* Any thread. */
int weft_event_set(weft_event *e)
{
    if (!live(e))
        return -EINVAL;
    event_impl *x = E(e);
    weft__spin_lock(&x->lock);
    x->set = true;
    weft__waiter *w;
    while ((w = weft__waitq_pop(&x->q)))
        weft__waiter_grant(w);
    weft__spin_unlock(&x->lock);
    return 0;
}

/* Any thread. */
int weft_event_clear(weft_event *e)
{
    if (!live(e))
        return -EINVAL;
    weft__spin_lock(&E(e)->lock);
    E(e)->set = false;
    weft__spin_unlock(&E(e)->lock);
    return 0;
}

/* Any thread. */
bool weft_event_is_set(weft_event *e)
{
    if (!live(e))
        return false;
    weft__spin_lock(&E(e)->lock);
    bool s = E(e)->set;
    weft__spin_unlock(&E(e)->lock);
    return s;
}

/* May suspend. */
int weft_event_wait(weft_event *e, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(e), true);
    if (rc < 0)
        return rc;
    event_impl *x = E(e);
    weft__spin_lock(&x->lock);
    if (x->set) {
        weft__spin_unlock(&x->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&x->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq_push(&x->q, &w);
    rc = weft__waitq_wait(&x->lock, &x->q, &w, "event", deadline, true, NULL);
    weft__spin_unlock(&x->lock);
    return rc;
}
