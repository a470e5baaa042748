/*
 * Task groups (Python's TaskGroup and asyncio.as_completed, Tokio's JoinSet,
 * Trio's nurseries): a set of tasks that the group owns and reports in
 * completion order.
 *
 * A group keeps two lists under its spinlock: tasks still running, and tasks
 * finished but not yet reported (FIFO, completion order).  A member's finish
 * (weft__task_done, on whatever thread) moves it from the first list to the
 * second and wakes the group's waiters while holding the lock.  The group
 * holds each member's handle; weft_group_next releases it when it reports
 * the task, weft_group_free releases whatever is left.
 *
 * No orphans: weft_group_free cancels what still runs and waits for it; a
 * cancelled owner waiting in next or wait cancels the members and waits for
 * them before returning -ECANCELED.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "waitq.h"
#include "internal.h"

struct weft_group {
    weft__spin lock;
    weft_task *running;            /* unfinished members (gprev/gnext) */
    weft_task *done_head, *done_tail; /* finished, unreported (gnext) */
    size_t nrunning, ndone;
    bool cancelled;                /* weft_group_cancel was called */
    bool autoreap;                 /* release members as they finish */
    weft__waitq waiters;
};

weft_group *weft_group_new(void)
{
    weft_group *g = calloc(1, sizeof *g);
    if (!g)
        errno = ENOMEM;
    else
        weft__spin_init(&g->lock, WEFT__RANK_GROUP);
    return g;
}

/* Any thread, before t can run: makes t a member of g. */
void weft__group_adopt(weft_group *g, weft_task *t)
{
    t->group = g;
    t->rare = true;  /* the free scrubs the group fields */
    weft__spin_lock(&g->lock);
    t->gprev = NULL;
    t->gnext = g->running;
    if (g->running)
        g->running->gprev = t;
    g->running = t;
    g->nrunning++;
    if (g->cancelled)
        atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
    weft__spin_unlock(&g->lock);
}

/* Internal (servers): members are released as they finish, never reported. */
void weft__group_autoreap(weft_group *g)
{
    g->autoreap = true;
}

/* Any thread: member t has finished (called by weft__task_done). */
void weft__group_task_done(weft_task *t)
{
    weft_group *g = t->group;
    weft__spin_lock(&g->lock);
    if (t->gprev)
        t->gprev->gnext = t->gnext;
    else
        g->running = t->gnext;
    if (t->gnext)
        t->gnext->gprev = t->gprev;
    g->nrunning--;
    t->gprev = NULL;
    t->gnext = NULL;
    if (g->autoreap) {
        weft__waiter *w;
        while ((w = weft__waitq_pop(&g->waiters)))
            weft__waiter_grant(w);
        weft__spin_unlock(&g->lock);
        /* The group's handle; the finisher still holds the run reference,
         * so this never frees t. */
        atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
        return;
    }
    if (g->done_tail)
        g->done_tail->gnext = t;
    else
        g->done_head = t;
    g->done_tail = t;
    g->ndone++;
    weft__waiter *w;
    while ((w = weft__waitq_pop(&g->waiters)))
        weft__waiter_grant(w);
    weft__spin_unlock(&g->lock);
}

weft_task *weft_group_spawn(weft_group *g, weft_fn fn, void *arg)
{
    if (!g || !fn) {
        errno = EINVAL;
        return NULL;
    }
    weft__worker *w = weft__cur_worker();
    weft__runtime *rt = w ? w->rt : weft__rt_get();
    if (!rt) {
        errno = EPERM;
        return NULL;
    }
    weft_task *t = weft__fault(WEFT__FAULT_ENOMEM) ? NULL  /* WEFT_FAULTS (faults.c) */
                                                   : weft__task_new(rt, w, NULL, fn, arg);
    if (t) {
        weft__group_adopt(g, t);
        if (w)
            weft__ready_on(w, t, true);
        else
            weft__inject_push(rt, t, t, 1);
    } else {
        errno = ENOMEM;
    }
    if (!w)
        weft__rt_put();
    return t;
}

weft_task *weft_group_spawn_blocking(weft_group *g, weft_fn fn, void *arg)
{
    if (!g) {
        errno = EINVAL;
        return NULL;
    }
    return weft__spawn_blocking(g, fn, arg);
}

/* Any thread: cancels every running member; members spawned later are
 * cancelled at birth. */
void weft_group_cancel(weft_group *g)
{
    if (!g)
        return;
    weft__spin_lock(&g->lock);
    g->cancelled = true;
    /* Under the lock: a member cannot finish (and be reported and freed)
     * while we cancel it.  Coroutines are flagged and woken here; blocking
     * members still in line must be dropped from the pool, which finishes
     * them (and takes this lock): that happens after the unlock, with a
     * reference held on each so none is freed meanwhile. */
    size_t nb = 0, cap = 0;
    weft_task **blk = NULL;
    for (weft_task *t = g->running; t; t = t->gnext) {
        /* seq_cst, before the wake-up: as in weft__cancel_task (task.c). */
        atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
        if (!t->blocking) {
            weft__wake(t);
            continue;
        }
        if (nb == cap) {
            size_t nc = cap ? cap * 2 : 16;
            weft_task **b = realloc(blk, nc * sizeof *b);
            if (!b)
                continue;  /* the pool drops it when it comes up: pool_main */
            blk = b;
            cap = nc;
        }
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
        blk[nb++] = t;
    }
    weft__spin_unlock(&g->lock);
    for (size_t i = 0; i < nb; i++) {
        weft__pool_cancel(blk[i]);
        weft__task_release(blk[i]);
    }
    free(blk);
}

/* May suspend.  With g->lock held: waits, ignoring cancellation, until no
 * member runs. */
static void drain_locked(weft_group *g, weft_task *self)
{
    while (g->nrunning) {
        weft__waiter w = {.task = self};
        weft__waitq_push(&g->waiters, &w);
        weft__waitq_wait(&g->lock, &g->waiters, &w, "group drain", WEFT_FOREVER, false, NULL);
    }
}

/* May suspend.  Cancels the members and waits for them (no orphans). */
static void cancel_and_drain(weft_group *g, weft_task *self)
{
    weft_group_cancel(g);
    weft__spin_lock(&g->lock);
    drain_locked(g, self);
    weft__spin_unlock(&g->lock);
}

int weft_group_next(weft_group *g, void **result, int64_t deadline)
{
    weft_task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    if (!g)
        return -EINVAL;
    if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst)) {
        cancel_and_drain(g, self);
        return -ECANCELED;
    }
    weft__spin_lock(&g->lock);
    for (;;) {
        if (g->done_head) {
            weft_task *t = g->done_head;
            g->done_head = t->gnext;
            if (!g->done_head)
                g->done_tail = NULL;
            g->ndone--;
            t->gnext = NULL;
            weft__spin_unlock(&g->lock);
            if (result)
                *result = t->result;
            int code = t->finished_cancelled ? -ECANCELED : 0;
            weft__task_release(t);  /* the handle the group held */
            return code;
        }
        if (!g->nrunning) {
            weft__spin_unlock(&g->lock);
            return -ENOENT;
        }
        if (deadline != WEFT_FOREVER && deadline <= weft_now()) {
            weft__spin_unlock(&g->lock);
            return -ETIMEDOUT;
        }
        weft__waiter w = {.task = self};
        weft__waitq_push(&g->waiters, &w);
        int rc = weft__waitq_wait(&g->lock, &g->waiters, &w, "group next", deadline, true, NULL);
        if (rc == -ETIMEDOUT) {
            weft__spin_unlock(&g->lock);
            return -ETIMEDOUT;
        }
        if (rc == -ECANCELED) {
            weft__spin_unlock(&g->lock);
            cancel_and_drain(g, self);
            return -ECANCELED;
        }
    }
}

int weft_group_wait(weft_group *g)
{
    weft_task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    if (!g)
        return -EINVAL;
    int first = 0;
    for (;;) {
        int rc = weft_group_next(g, NULL, WEFT_FOREVER);
        if (rc == -ENOENT)
            return first;
        if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst)) {
            /* Cancelled (next may have returned a member's report first):
             * no orphans. */
            cancel_and_drain(g, self);
            return -ECANCELED;
        }
        if (rc && !first)
            first = rc;
    }
}

int weft_group_free(weft_group *g)
{
    weft_task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    if (!g)
        return -EINVAL;
    /* A closing call: cancellation does not skip it (a refusal would leak
     * the group), and its 0 says everything was freed; a cancelled caller
     * hears of its cancellation at its next suspension point. */
    cancel_and_drain(g, self);
    /* Every member finished; release the unreported ones. */
    weft__spin_lock(&g->lock);
    weft_task *t = g->done_head;
    g->done_head = g->done_tail = NULL;
    g->ndone = 0;
    weft__spin_unlock(&g->lock);
    while (t) {
        weft_task *n = t->gnext;
        t->gnext = NULL;
        weft__task_release(t);
        t = n;
    }
    free(g);
    return 0;
}

size_t weft_group_size(weft_group *g)
{
    if (!g)
        return 0;
    weft__spin_lock(&g->lock);
    size_t n = g->nrunning + g->ndone;
    weft__spin_unlock(&g->lock);
    return n;
}
