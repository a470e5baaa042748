/*
 * Queues (asyncio.Queue, LifoQueue, PriorityQueue; a Go channel with a
 * buffer, plus close).
 *
 * One spinlock guards the store and three wait queues: getters (waiting for
 * an item), putters (waiting for room; each carries its item and priority
 * in its waiter record) and joiners (waiting for unfinished == 0).
 * Invariants, under the lock: getters wait only while the store is empty,
 * putters only while it is full, so never both at once.
 *
 * Hand-offs follow the wait-queue protocol (waitq.h):
 *  - put with a getter waiting gives the item straight to the first getter
 *    (in its waiter record) and wakes it, into the waker's LIFO slot: a
 *    ping-pong through two queues stays on one core;
 *  - get from a full store with putters waiting moves the first putter's
 *    item into the store and grants that putter;
 *  - close grants every getter and putter with -EPIPE (kind field).
 * Getters and putters are granted last, after their wake-up
 * (weft__waiter_grant_last), and one that sees its grant returns without
 * re-taking the lock (weft__waitq_wait with a locked flag): a message
 * through a queue costs one lock round trip fewer.  So weft_queue_free
 * takes the lock once before freeing: the put, get or close that granted a
 * waiter which then frees the queue may not have unlocked yet.
 * A waiter granted at the moment it is cancelled or times out keeps the
 * grant: its item was moved, so it returns 0 (nothing lost or doubled); a
 * waiter not granted leaves the line having moved nothing.
 *
 * The store: FIFO and LIFO queues use a ring (a stack for LIFO) that grows
 * by doubling up to the capacity and shrinks when mostly empty; priority
 * queues a binary min-heap on (prio, sequence number), so equal priorities
 * leave in put order.
 */
#include <stdlib.h>
#include <string.h>

#include "sync_internal.h"

#define MIN_SLOTS 8u
#define SHRINK_ABOVE 1024u

typedef struct {
    int64_t prio;
    uint64_t seq;
    void *item;
} pq_ent;

/* Layout, 64-byte aligned: line 0 holds what every put and get touches -
 * the lock, the counts and the waiting getters - so a hand-off from a put
 * to a waiting getter (a ping-pong) touches one line of the queue; line 1
 * the store of FIFO/LIFO queues with room for INLINE_SLOTS items (a small
 * bounded queue needs no other memory) and the waiting putters; line 2 what
 * priority queues and join need. */
#define INLINE_SLOTS 2u

struct weft_queue {
    weft__spin lock;
    uint32_t magic;
    int kind;
    bool closed;
    size_t n;            /* items stored */
    size_t cap;          /* 0: unbounded */
    size_t unfinished;   /* put and not yet task_done */
    weft__waitq getters;
    _Alignas(64) weft__waitq putters;
    size_t slots;        /* entries of ring / heap: a power of two */
    size_t head;         /* FIFO: index of the oldest item */
    void **ring;         /* FIFO / LIFO: inline_ring or malloc'ed */
    void *inline_ring[INLINE_SLOTS];
    _Alignas(64) pq_ent *heap;  /* PRIORITY */
    uint64_t seq;        /* PRIORITY: next sequence number */
    weft__waitq joiners;
};

_Static_assert(offsetof(struct weft_queue, getters) + sizeof(weft__waitq) <= 64, "queue layout");
_Static_assert(offsetof(struct weft_queue, inline_ring) + sizeof(void *) * INLINE_SLOTS <= 128,
               "queue layout");

static bool live(weft_queue *q) { return q && q->magic == WEFT__QUEUE_MAGIC; }
static bool full(weft_queue *q) { return q->cap && q->n >= q->cap; }

weft_queue *weft_queue_new(int kind, size_t capacity)
{
    if (kind != WEFT_QUEUE_FIFO && kind != WEFT_QUEUE_LIFO && kind != WEFT_QUEUE_PRIORITY) {
        errno = EINVAL;
        return NULL;
    }
    weft_queue *q;
    if (posix_memalign((void **)&q, 64, sizeof *q)) {
        errno = ENOMEM;
        return NULL;
    }
    memset(q, 0, sizeof *q);
    if (kind != WEFT_QUEUE_PRIORITY) {
        q->ring = q->inline_ring;
        q->slots = INLINE_SLOTS;
    }
    q->kind = kind;
    q->cap = capacity;
    weft__spin_init(&q->lock, WEFT__RANK_PRIM);
    q->magic = WEFT__QUEUE_MAGIC;
    return q;
}

/* Any thread.  No waiter may remain. */
void weft_queue_free(weft_queue *q)
{
    if (!live(q))
        return;
    /* A getter that saw its grant may free the queue while the put or
     * close that granted it has yet to unlock (waitq.h,
     * weft__waiter_grant_last): wait for that unlock. */
    weft__spin_lock(&q->lock);
    weft__spin_unlock(&q->lock);
    q->magic = 0;
    if (q->ring != q->inline_ring)
        free(q->ring);
    free(q->heap);
    free(q);
}

/* ------------------------------------------------------------------ */
/* The store (under the lock)                                          */
/* ------------------------------------------------------------------ */

static bool pq_less(const pq_ent *a, const pq_ent *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

/* Resizes the store to `slots` entries (>= n). */
static int resize(weft_queue *q, size_t slots)
{
    if (q->kind == WEFT_QUEUE_PRIORITY) {
        if (slots > SIZE_MAX / sizeof(pq_ent))
            return -ENOMEM;
        pq_ent *h = realloc(q->heap, slots * sizeof *h);
        if (!h)
            return -ENOMEM;
        q->heap = h;
    } else {
        if (slots < INLINE_SLOTS)
            slots = INLINE_SLOTS;
        if (slots > SIZE_MAX / sizeof(void *))
            return -ENOMEM;
        void **r = slots == INLINE_SLOTS ? q->inline_ring : malloc(slots * sizeof *r);
        if (!r)
            return -ENOMEM;
        if (r != q->ring) {
            /* Unwrap (FIFO); a LIFO stack never wraps (head stays 0).  The
             * inline ring is a target only when shrinking, from a malloc'ed
             * ring. */
            for (size_t i = 0; i < q->n; i++)
                r[i] = q->ring[(q->head + i) & (q->slots - 1)];
            if (q->ring != q->inline_ring)
                free(q->ring);
        }
        q->ring = r;
        q->head = 0;
    }
    q->slots = slots;
    return 0;
}

/* Stores item; the caller checked !full(q).  0 or -ENOMEM (nothing moved). */
static int store_put(weft_queue *q, void *item, int64_t prio)
{
    if (q->n == q->slots) {
        /* Powers of two (ring indices are masked), not clamped to the
         * capacity: full() keeps n within it. */
        size_t want = q->slots ? q->slots * 2 : MIN_SLOTS;
        if (want < q->slots)
            return -ENOMEM;
        int rc = resize(q, want);
        if (rc)
            return rc;
    }
    switch (q->kind) {
    case WEFT_QUEUE_FIFO:
        q->ring[(q->head + q->n) & (q->slots - 1)] = item;
        break;
    case WEFT_QUEUE_LIFO:
        q->ring[q->n] = item;
        break;
    default: {
        pq_ent e = {prio, q->seq++, item};
        size_t i = q->n;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!pq_less(&e, &q->heap[p]))
                break;
            q->heap[i] = q->heap[p];
            i = p;
        }
        q->heap[i] = e;
        break;
    }
    }
    q->n++;
    q->unfinished++;
    return 0;
}

/* Takes the next item; the caller checked n > 0. */
static void *store_get(weft_queue *q)
{
    void *item;
    switch (q->kind) {
    case WEFT_QUEUE_FIFO:
        item = q->ring[q->head];
        q->head = (q->head + 1) & (q->slots - 1);
        q->n--;
        break;
    case WEFT_QUEUE_LIFO:
        item = q->ring[--q->n];
        break;
    default: {
        item = q->heap[0].item;
        pq_ent last = q->heap[--q->n];
        size_t i = 0;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= q->n)
                break;
            if (c + 1 < q->n && pq_less(&q->heap[c + 1], &q->heap[c]))
                c++;
            if (!pq_less(&q->heap[c], &last))
                break;
            q->heap[i] = q->heap[c];
            i = c;
        }
        if (q->n)
            q->heap[i] = last;
        break;
    }
    }
    if (q->n == 0)
        q->head = 0;
    /* Give memory back after a burst (failure to shrink is harmless). */
    if (q->slots > SHRINK_ABOVE && q->n < q->slots / 4)
        (void)resize(q, q->slots / 2);
    return item;
}

/* After an item left the store: move the first waiting putter's item in. */
static void refill_from_putter(weft_queue *q)
{
    weft__waiter *w;
    while (!full(q) && (w = q->putters.head)) {
        if (store_put(q, w->value, w->prio) != 0)
            return;  /* no memory: the putter waits on (cannot happen: the slot was free) */
        weft__waitq_remove(&q->putters, w);
        w->kind = 0;
        weft__waiter_grant_last(w);  /* putters wait with a locked flag (waitq.h) */
    }
}

/* ------------------------------------------------------------------ */
/* Put                                                                 */
/* ------------------------------------------------------------------ */

/* Under the lock.  Completes a put at once if it can: 0, -EPIPE, -ENOMEM,
 * or 1 when full. */
static inline __attribute__((always_inline)) int put_now(weft_queue *q, void *item,
                                                        int64_t prio)
{
    if (q->closed)
        return -EPIPE;
    weft__waiter *g = weft__waitq_pop(&q->getters);
    if (g) {
        /* The store is empty: hand the item straight to the first getter. */
        q->unfinished++;
        g->value = item;
        g->kind = 0;
        weft__waiter_grant_last(g);  /* getters wait with a locked flag (waitq.h) */
        return 0;
    }
    if (full(q))
        return 1;
    return store_put(q, item, prio);
}

int weft_queue_put_prio(weft_queue *q, void *item, int64_t prio, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(q), true);
    if (rc)
        return rc;
    weft__spin_lock(&q->lock);
    rc = put_now(q, item, prio);
    if (rc <= 0) {
        weft__spin_unlock(&q->lock);
        return rc;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&q->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self, .value = item, .prio = prio};
    weft__waitq_push(&q->putters, &w);
    bool locked;
    rc = weft__waitq_wait(&q->lock, &q->putters, &w, "queue put", deadline, true, &locked);
    if (rc == 0)
        rc = w.kind;  /* 0: the item went in; -EPIPE: closed, it did not */
    if (locked)
        weft__spin_unlock(&q->lock);
    return rc;
}

int weft_queue_put(weft_queue *q, void *item, int64_t deadline)
{
    return weft_queue_put_prio(q, item, 0, deadline);
}

/* Any thread. */
int weft_queue_try_put_prio(weft_queue *q, void *item, int64_t prio)
{
    if (!live(q))
        return -EINVAL;
    weft__spin_lock(&q->lock);
    int rc = put_now(q, item, prio);
    weft__spin_unlock(&q->lock);
    return rc == 1 ? -EAGAIN : rc;
}

/* Any thread. */
int weft_queue_try_put(weft_queue *q, void *item)
{
    return weft_queue_try_put_prio(q, item, 0);
}

/* ------------------------------------------------------------------ */
/* Get                                                                 */
/* ------------------------------------------------------------------ */

/* Under the lock.  0 with *item, -EPIPE (closed and drained), or 1 when
 * empty. */
static inline __attribute__((always_inline)) int get_now(weft_queue *q, void **item)
{
    if (q->n) {
        void *it = store_get(q);
        refill_from_putter(q);
        if (item)
            *item = it;
        return 0;
    }
    return q->closed ? -EPIPE : 1;
}

int weft_queue_get(weft_queue *q, void **item, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(q), true);
    if (rc)
        return rc;
    weft__spin_lock(&q->lock);
    rc = get_now(q, item);
    if (rc <= 0) {
        weft__spin_unlock(&q->lock);
        return rc;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&q->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq_push(&q->getters, &w);
    bool locked;
    rc = weft__waitq_wait(&q->lock, &q->getters, &w, "queue get", deadline, true, &locked);
    if (rc == 0) {
        rc = w.kind;  /* 0: an item was handed over; -EPIPE: closed */
        if (rc == 0 && item)
            *item = w.value;
    }
    if (locked)
        weft__spin_unlock(&q->lock);
    return rc;
}

/* Any thread. */
int weft_queue_try_get(weft_queue *q, void **item)
{
    if (!live(q))
        return -EINVAL;
    weft__spin_lock(&q->lock);
    int rc = get_now(q, item);
    weft__spin_unlock(&q->lock);
    return rc == 1 ? -EAGAIN : rc;
}

/* ------------------------------------------------------------------ */
/* Size, close, task_done, join                                        */
/* ------------------------------------------------------------------ */

/* Any thread. */
size_t weft_queue_size(weft_queue *q)
{
    if (!live(q))
        return 0;
    weft__spin_lock(&q->lock);
    size_t n = q->n;
    weft__spin_unlock(&q->lock);
    return n;
}

/* Any thread. */
size_t weft_queue_capacity(weft_queue *q)
{
    return live(q) ? q->cap : 0;
}

/* Any thread. */
bool weft_queue_closed(weft_queue *q)
{
    if (!live(q))
        return false;
    weft__spin_lock(&q->lock);
    bool c = q->closed;
    weft__spin_unlock(&q->lock);
    return c;
}

/* Any thread. */
void weft_queue_close(weft_queue *q)
{
    if (!live(q))
        return;
    weft__spin_lock(&q->lock);
    q->closed = true;
    weft__waiter *w;
    while ((w = weft__waitq_pop(&q->getters))) {
        w->kind = -EPIPE;
        weft__waiter_grant_last(w);
    }
    while ((w = weft__waitq_pop(&q->putters))) {
        w->kind = -EPIPE;
        weft__waiter_grant_last(w);
    }
    weft__spin_unlock(&q->lock);
}

/* Any thread. */
int weft_queue_task_done_checked(weft_queue *q)
{
    if (!live(q))
        return -EINVAL;
    int rc = 0;
    weft__spin_lock(&q->lock);
    if (q->unfinished == 0) {
        rc = -ERANGE;
    } else if (--q->unfinished == 0) {
        weft__waiter *w;
        while ((w = weft__waitq_pop(&q->joiners)))
            weft__waiter_grant(w);
    }
    weft__spin_unlock(&q->lock);
    return rc;
}

void weft_queue_task_done(weft_queue *q)
{
    (void)weft_queue_task_done_checked(q);
}

int weft_queue_join_until(weft_queue *q, int64_t deadline)
{
    weft__chaos_point();  /* WEFT_CHAOS (runtime/seed.c) */
    weft_task *self;
    int rc = weft__sync_enter(&self, live(q), true);
    if (rc)
        return rc;
    weft__spin_lock(&q->lock);
    if (q->unfinished == 0) {
        weft__spin_unlock(&q->lock);
        return 0;
    }
    if (weft__deadline_past(deadline)) {
        weft__spin_unlock(&q->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq_push(&q->joiners, &w);
    rc = weft__waitq_wait(&q->lock, &q->joiners, &w, "queue join", deadline, true, NULL);
    weft__spin_unlock(&q->lock);
    return rc;
}

int weft_queue_join(weft_queue *q)
{
    return weft_queue_join_until(q, WEFT_FOREVER);
}
