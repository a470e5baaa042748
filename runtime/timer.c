/*
 * Per-worker timers: a binary min-heap of weft__timer pointers, each timer
 * knowing its index so that a cancelled or finished wait removes its timer at
 * once (O(log n)); timers never pile up.
 *
 * Each heap has a spinlock.  The owner adds timers for the coroutines that
 * park on it and fires its own due timers; other workers fire a blocked
 * worker's due timers (sched.c, help_blocked; essay section 6); a
 * task resumed anywhere deletes its timer from whichever heap holds it.
 * Firing wakes the task while the heap lock is held: a task deletes its timer
 * under the same lock before it can finish, so a firer never touches a task
 * that has been freed.
 *
 * A heap rather than a wheel: a heap is exact, needs no tick, and costs
 * O(log n) per operation; a wheel's O(1) matters only past what the
 * sleepers benchmark needs (docs/scheduler.md, section 7).
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define TASK_OF(tm) ((weft_task *)((char *)(tm) - offsetof(weft_task, timer)))

int weft__timers_init(weft__timers *ts)
{
    weft__spin_init(&ts->lock, WEFT__RANK_TIMERS);
    ts->n = 0;
    ts->cap = 64;
    ts->heap = malloc(sizeof(*ts->heap) * (size_t)ts->cap);
    atomic_store_explicit(&ts->next, INT64_MAX, memory_order_relaxed);
    return ts->heap ? 0 : -ENOMEM;
}

void weft__timers_free(weft__timers *ts)
{
    free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
}

static void place(weft__timers *ts, int i, weft__timer *tm)
{
    ts->heap[i] = tm;
    tm->idx = i;
}

static void sift_up(weft__timers *ts, int i)
{
    weft__timer *tm = ts->heap[i];
    while (i > 0) {
        int p = (i - 1) / 2;
        if (ts->heap[p]->when <= tm->when)
            break;
        place(ts, i, ts->heap[p]);
        i = p;
    }
    place(ts, i, tm);
}

static void sift_down(weft__timers *ts, int i)
{
    weft__timer *tm = ts->heap[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= ts->n)
            break;
        if (c + 1 < ts->n && ts->heap[c + 1]->when < ts->heap[c]->when)
            c++;
        if (tm->when <= ts->heap[c]->when)
            break;
        place(ts, i, ts->heap[c]);
        i = c;
    }
    place(ts, i, tm);
}

/* Under the heap lock. */
static void publish_next(weft__timers *ts)
{
    atomic_store_explicit(&ts->next, ts->n ? ts->heap[0]->when : INT64_MAX,
                          memory_order_relaxed);
}

/* Under the heap lock. */
static void remove_at(weft__timers *ts, int i)
{
    weft__timer *tm = ts->heap[i];
    ts->n--;
    if (i != ts->n) {
        weft__timer *m = ts->heap[ts->n];
        place(ts, i, m);
        sift_down(ts, i);
        if (m->idx == i)
            sift_up(ts, i);
    }
    tm->idx = -1;
}

/* Owner worker only (w runs the caller's scheduler).  Queues tm in w's heap.
 * -ENOMEM when the heap cannot grow. */
int weft__timer_add(weft__worker *w, weft__timer *tm, int64_t when)
{
    weft__timers *ts = &w->timers;
    weft__spin_lock(&ts->lock);
    if (ts->n == ts->cap) {
        int cap = ts->cap * 2;
        weft__timer **h = realloc(ts->heap, sizeof(*h) * (size_t)cap);
        if (!h) {
            weft__spin_unlock(&ts->lock);
            return -ENOMEM;
        }
        ts->heap = h;
        ts->cap = cap;
    }
    tm->when = when;
    tm->heap = w;
    atomic_store_explicit(&tm->fired, false, memory_order_relaxed);
    ts->heap[ts->n] = tm;
    tm->idx = ts->n++;
    sift_up(ts, tm->idx);
    publish_next(ts);
    weft__spin_unlock(&ts->lock);
    return 0;
}

/* Any thread (the task that owns tm, after it resumed).  Removes tm from its
 * heap if it is still queued.  Taking the lock also waits out a firer that
 * popped tm and is waking its task. */
void weft__timer_del(weft__timer *tm)
{
    weft__worker *w = tm->heap;
    if (!w)
        return;
    /* acquire: pairs with the release store in timers_run, made after the
     * firer's last use of the task: no lock needed to wait it out. */
    if (atomic_load_explicit(&tm->fired, memory_order_acquire)) {
        tm->heap = NULL;
        return;
    }
    weft__spin_lock(&w->timers.lock);
    if (tm->idx >= 0) {
        remove_at(&w->timers, tm->idx);
        publish_next(&w->timers);
    }
    weft__spin_unlock(&w->timers.lock);
    tm->heap = NULL;
}

/* Scheduler stack of worker w.  Fires owner's timers due at now, waking their
 * tasks onto w's run queue (owner == w normally; a blocked owner's timers are
 * fired by another worker).  Returns how many fired. */
unsigned weft__timers_run(weft__worker *w, weft__worker *owner, int64_t now)
{
    (void)w;
    weft__timers *ts = &owner->timers;
    unsigned fired = 0;
    weft__spin_lock(&ts->lock);
    while (ts->n > 0 && ts->heap[0]->when <= now) {
        weft__timer *tm = ts->heap[0];
        remove_at(ts, 0);
        /* Wake under the lock: see the comment at the top of the file. */
        weft__wake(TASK_OF(tm));
        /* release: the firer is done with the task (pairs with timer_del). */
        atomic_store_explicit(&tm->fired, true, memory_order_release);
        fired++;
    }
    publish_next(ts);
    weft__spin_unlock(&ts->lock);
    return fired;
}
