/*
 * The task registry and task memory, one mechanism (as Go's allgs + gFree).
 *
 * Task structs live in slabs of WEFT__SLAB_BYTES, aligned to their size and
 * carved from extents of WEFT__SLAB_EXTENT slabs (one mmap each, no lock
 * held): the first page of a slab is its header, the rest its slots.  The
 * registry is the list of slabs: a slot that holds a task is one whose seq
 * is non-zero and whose state is not WEFT__TASK_FREE.  Spawning and freeing
 * touch no shared list and no lock: a freed slot goes to its worker's
 * cache, and caches trade batches of WEFT__TASK_BATCH, which keeps a
 * spawner on one worker fed by slots freed on another.
 *
 * The spare stack (rt->task_spare).  A worker whose cache overflows pushes
 * a full batch there (a CAS), and a worker whose cache ran dry takes the
 * whole stack (an exchange: no ABA, as only pushes are single), keeps the
 * first batch and pushes the rest back as one chain.  Batches link through
 * their first slot's gnext, their slots through next.  Only when the stack
 * holds WEFT__TASK_SPARE_MAX batches, or is empty for a spawner, does a
 * batch go through the slab pool under task_lock.  Why not the lock every
 * time: a spawner and a finisher on two workers took it once per batch
 * each, and on a machine whose CPUs other processes share, one of them
 * preempted while holding it left the other spinning and yielding for the
 * rest of a time slice (docs/scheduler.md, section 13, "Oversubscription").
 * The trimmer's look at the pool (weft__slabs_lowwater) drains a stack
 * that has not moved for a quarter window into the slabs, so that slots
 * left there after a burst count as free; a stack in use is left alone.
 *
 * The pool sorts slabs by what they hold (a slab finds its header from a
 * slot's address): partial (some slots free), empty (every slot free),
 * trimmed (every slot free and its pages given back), or on no list (every
 * slot taken, or being trimmed).  Slots are handed out from partial slabs
 * first, so that the others empty out; a slab's never-used slots are handed
 * out by a bump index, so a fresh or trimmed slab's pages are touched only
 * as its slots are used.
 *
 * Trimming (trim.c decides how many): weft__slabs_trim takes the coldest
 * empty slabs off the list and gives their slot pages back with
 * MADV_DONTNEED, no lock held.  A given-back page reads as zeros, and a
 * zero slot reads as free (seq 0: every slot that ever held a task has a
 * non-zero seq), so the lock-free readers below (and weft_dump, the gdb
 * helper) never see a task there.  A slot first used after a trim starts
 * from its slab's seq_base, above every seq the slab's slots had before, so
 * a reader that began before the trim sees seq move and skips the slot.
 *
 * Readers of the registry (shutdown cancellation, the task walk, the dump)
 * walk the slabs without stopping anyone: a slot may be freed and reused
 * under them; they touch only its atomics, and a wake that lands on a
 * reused slot is a spurious wake-up, which every waiter tolerates.  The one
 * reader that writes (reg_cancel_all wakes what it finds) holds trim_mu,
 * so no slab is trimmed under its wake.
 *
 * Operations and the threads they run on:
 *   task_alloc        any thread (a worker's cache, else the pool)
 *   task_dealloc      any thread (the caller's cache when it is a worker)
 *   reg_cancel_all, reg_live   any thread, concurrently with the above
 *   slabs_lowwater, slabs_trim sysmon, concurrently with the above
 *   slabs_init, reg_free_all   weft_run only, before / after the workers
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"

#define WEFT__TASK_SPARE_MAX 64  /* batches on the spare stack: 2048 slots */
#define WEFT__SLAB_EXTENT 32    /* slabs per mmap: 4 MiB */

enum { SLAB_NONE, SLAB_PARTIAL, SLAB_EMPTY, SLAB_TRIMMED };

struct slab_extent {
    struct slab_extent *next;
    char *map;          /* as mapped (unaligned) */
    size_t len;
    unsigned used;      /* slabs handed out of it */
};

/* Under task_lock, all of it. */
struct weft__slab_pool {
    struct weft__task_slab *partial;              /* doubly linked (pnext, pprev) */
    struct weft__task_slab *empty, *empty_tail;   /* doubly linked; head: most recent */
    weft__lowwater nempty;                        /* how many; fewest since lowwater() */
    struct weft__task_slab *trimmed;              /* singly linked (pnext) */
    struct slab_extent *extents;                  /* newest first */
    weft_task *spare_seen;  /* sysmon only: the spare stack's top at its last look */
};

static struct weft__task_slab *slab_of(const weft_task *t)
{
    return (struct weft__task_slab *)((uintptr_t)t & ~(uintptr_t)(WEFT__SLAB_BYTES - 1));
}

static unsigned avail(const struct weft__task_slab *s)
{
    return (unsigned)(WEFT__SLAB_TASKS - s->nbump) + s->nfree;
}

/* weft_run, before any task exists. */
int weft__slabs_init(weft__runtime *rt)
{
    rt->slab_pool = calloc(1, sizeof *rt->slab_pool);
    return rt->slab_pool ? 0 : -ENOMEM;
}

/* Under task_lock: the list manipulations. */
static void list_del(struct weft__slab_pool *p, struct weft__task_slab *s)
{
    if (s->list == SLAB_PARTIAL || s->list == SLAB_EMPTY) {
        struct weft__task_slab **head = s->list == SLAB_PARTIAL ? &p->partial : &p->empty;
        if (s->pprev)
            s->pprev->pnext = s->pnext;
        else
            *head = s->pnext;
        if (s->pnext)
            s->pnext->pprev = s->pprev;
        else if (s->list == SLAB_EMPTY)
            p->empty_tail = s->pprev;
        if (s->list == SLAB_EMPTY)
            weft__lw_sub(&p->nempty, 1);
    } else if (s->list == SLAB_TRIMMED) {
        WEFT__ASSERT(p->trimmed == s);  /* taken from the head only */
        p->trimmed = s->pnext;
    }
    s->list = SLAB_NONE;
    s->pnext = s->pprev = NULL;
}

static void list_add(struct weft__slab_pool *p, struct weft__task_slab *s, int list)
{
    WEFT__ASSERT(s->list == SLAB_NONE);
    s->list = list;
    s->pprev = NULL;
    if (list == SLAB_TRIMMED) {
        s->pnext = p->trimmed;
        p->trimmed = s;
        return;
    }
    struct weft__task_slab **head = list == SLAB_PARTIAL ? &p->partial : &p->empty;
    s->pnext = *head;
    if (*head)
        (*head)->pprev = s;
    else if (list == SLAB_EMPTY)
        p->empty_tail = s;
    *head = s;
    if (list == SLAB_EMPTY)
        p->nempty.n++;
}

/* Under task_lock.  A slab with a slot to give, or NULL when a new extent
 * must be mapped first. */
static struct weft__task_slab *slab_with_room(weft__runtime *rt)
{
    struct weft__slab_pool *p = rt->slab_pool;
    if (p->partial)
        return p->partial;
    if (p->empty)
        return p->empty;
    if (p->trimmed) {
        struct weft__task_slab *s = p->trimmed;
        list_del(p, s);
        list_add(p, s, SLAB_PARTIAL);
        return s;
    }
    for (struct slab_extent *e = p->extents; e; e = e->next) {
        char *base = (char *)(((uintptr_t)e->map + WEFT__SLAB_BYTES - 1) &
                              ~(uintptr_t)(WEFT__SLAB_BYTES - 1));
        if (e->used == WEFT__SLAB_EXTENT)
            continue;
        struct weft__task_slab *s = (struct weft__task_slab *)(base + (size_t)e->used++ * WEFT__SLAB_BYTES);
        /* Fresh zero pages: every slot reads as free (seq 0). */
        s->list = SLAB_NONE;
        list_add(p, s, SLAB_PARTIAL);
        s->next = atomic_load_explicit(&rt->slabs, memory_order_relaxed);
        /* release: pairs with the acquire in the walkers. */
        atomic_store_explicit(&rt->slabs, s, memory_order_release);
        return s;
    }
    return NULL;
}

/* Under task_lock.  One slot from s, which has room. */
static weft_task *slab_take(struct weft__slab_pool *p, struct weft__task_slab *s)
{
    weft_task *t;
    bool was_empty = s->list == SLAB_EMPTY;
    if (s->free) {
        t = s->free;
        s->free = t->next;
        s->nfree--;
    } else {
        t = &s->t[s->nbump++];
        if (s->seq_base) {
            /* First use since a trim: free, with a seq above every seq
             * this slot had (release: a walker that reads seq_base reads
             * FREE, not the zero page's state). */
            atomic_store_explicit(&t->state, WEFT__TASK_FREE, memory_order_relaxed);
            atomic_store_explicit(&t->seq, s->seq_base, memory_order_release);
        }
    }
    if (was_empty || avail(s) == 0) {
        list_del(p, s);
        if (avail(s))
            list_add(p, s, SLAB_PARTIAL);
    }
    return t;
}

/* Under task_lock.  Gives t back to its slab. */
static void slab_put(struct weft__slab_pool *p, weft_task *t)
{
    struct weft__task_slab *s = slab_of(t);
    t->next = s->free;
    s->free = t;
    s->nfree++;
    if (avail(s) == WEFT__SLAB_TASKS) {
        list_del(p, s);
        list_add(p, s, SLAB_EMPTY);
    } else if (s->list == SLAB_NONE) {
        list_add(p, s, SLAB_PARTIAL);
    }
}

/* Any thread, no lock held (may block the thread: mmap).  Adds an extent of
 * slabs to the pool; false when the kernel refuses. */
static bool grow(weft__runtime *rt)
{
    struct slab_extent *e = malloc(sizeof *e);
    if (!e)
        return false;
    e->len = (size_t)(WEFT__SLAB_EXTENT + 1) * WEFT__SLAB_BYTES;  /* room to align */
    e->map = mmap(NULL, e->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                  -1, 0);
    if (e->map == MAP_FAILED) {
        free(e);
        return false;
    }
    e->used = 0;
    weft__spin_lock(&rt->task_lock);
    e->next = rt->slab_pool->extents;
    rt->slab_pool->extents = e;
    weft__spin_unlock(&rt->task_lock);
    return true;
}

/* Any thread.  Links the chain of batches first..last (linked through
 * gnext) onto the spare stack; the caller keeps task_spare_n. */
static void spare_link(weft__runtime *rt, weft_task *first, weft_task *last)
{
    weft_task *old = atomic_load_explicit(&rt->task_spare, memory_order_relaxed);
    do
        last->gnext = old;
    /* release: the links of the batches' slots, written before, are seen
     * by the taker (pairs with the acquire exchange in spare_take_all). */
    while (!atomic_compare_exchange_weak_explicit(&rt->task_spare, &old, first,
                                                  memory_order_release, memory_order_relaxed));
}

/* Any thread.  Pushes one batch (linked through next) on the spare stack. */
static void spare_push(weft__runtime *rt, weft_task *batch)
{
    /* relaxed: a bound only; the batch is published by spare_link's CAS. */
    atomic_fetch_add_explicit(&rt->task_spare_n, 1, memory_order_relaxed);
    spare_link(rt, batch, batch);
}

/* Any thread.  The whole spare stack, or NULL. */
static weft_task *spare_take_all(weft__runtime *rt)
{
    /* The plain load first: an empty stack's line stays shared. */
    if (!atomic_load_explicit(&rt->task_spare, memory_order_relaxed))
        return NULL;
    /* acquire: pairs with the release CAS of spare_link. */
    return atomic_exchange_explicit(&rt->task_spare, NULL, memory_order_acquire);
}

/* Owner worker only, its cache empty.  One batch from the spare stack into
 * w's cache; false when the stack is empty. */
static bool spare_refill(weft__runtime *rt, weft__worker *w)
{
    weft_task *b = spare_take_all(rt);
    if (!b)
        return false;
    weft_task *rest = b->gnext;
    if (rest) {
        /* Walks the heads only (one line per batch); usually there is none. */
        weft_task *last = rest;
        while (last->gnext)
            last = last->gnext;
        spare_link(rt, rest, last);  /* still counted in task_spare_n */
    }
    /* relaxed: a bound (see spare_push). */
    atomic_fetch_sub_explicit(&rt->task_spare_n, 1, memory_order_relaxed);
    b->gnext = NULL;
    w->tasks.free = b;
    weft__cache_set(&w->tasks.n, &w->tasks.low, WEFT__TASK_BATCH);
    return true;
}

/* Any thread (w: the calling worker, or NULL).  weft__task_alloc
 * (internal.h) when w is not a worker of rt or its cache is empty: a free
 * slot, or NULL when out of memory. */
weft_task *weft__task_alloc_slow(weft__runtime *rt, weft__worker *w)
{
    if (w && w->rt == rt) {
        /* The inline fast path found the cache empty: refill it from the
         * spare batches and let that path pop. */
        if (spare_refill(rt, w))
            return weft__task_alloc(rt, w);
    } else {
        w = NULL;
    }
    struct weft__slab_pool *p = rt->slab_pool;
    for (;;) {
        weft__spin_lock(&rt->task_lock);
        struct weft__task_slab *s = slab_with_room(rt);
        if (!s) {
            weft__spin_unlock(&rt->task_lock);
            if (!grow(rt))
                return NULL;
            continue;
        }
        weft_task *t = slab_take(p, s);
        /* Refill the worker's cache with a batch. */
        for (int i = 0; w && i < WEFT__TASK_BATCH && (s = slab_with_room(rt)); i++) {
            weft_task *x = slab_take(p, s);
            x->next = w->tasks.free;
            w->tasks.free = x;
            atomic_store_explicit(&w->tasks.n, weft__cache_n(&w->tasks.n) + 1,
                                  memory_order_relaxed);  /* a statistic */
        }
        weft__spin_unlock(&rt->task_lock);
        return t;
    }
}

/* The fields of a slot that weft__task_new resets with plain stores and
 * registry walkers never read: [result, timer) (fn and arg are the
 * caller's, any bytes, and stored on every spawn).  In checked builds a
 * freed slot's are filled with POISON, and a reset that leaves an aligned
 * 8-byte word of POISON behind names a field it forgot (a forgotten field
 * smaller than a word, sharing its word with reset ones, goes unseen).
 * The clean-on-free fields (internal.h, struct weft_task) are checked
 * for their reset values instead. */
#define POISON 0xa5a5a5a5a5a5a5a5ull
static const struct {
    size_t lo, hi;
} poison_ranges[] = {
    {offsetof(weft_task, result), offsetof(weft_task, timer)},
};

void weft__task_poison(weft_task *t)
{
    for (size_t r = 0; r < sizeof poison_ranges / sizeof poison_ranges[0]; r++)
        memset((char *)t + poison_ranges[r].lo, 0xa5, poison_ranges[r].hi - poison_ranges[r].lo);
}

void weft__task_check_reset(const weft_task *t)
{
    /* The clean-on-free fields (internal.h): what a finished task left
     * must be what a new one starts from. */
    const char *dirty = t->timer.wheel ? "timer.wheel"
                        : atomic_load_explicit(&t->timer.fired, memory_order_relaxed)
                            ? "timer.fired"
                        : t->locals || t->nlocals || t->caplocals ? "locals"
                        : t->tsan_fiber                             ? "tsan_fiber"
                        : t->blocking || t->queued || t->pool       ? "blocking"
                        : t->group || t->gprev || t->gnext          ? "group"
                        : t->trace_flow                             ? "trace_flow"
                        : t->rare                                   ? "rare"
                                                                    : NULL;
    if (dirty) {
        char what[96];
        snprintf(what, sizeof what, "task slot clean on free (%s left set)", dirty);
        weft__assert_fail(what, __FILE__, __LINE__, __func__);
    }
    for (size_t r = 0; r < sizeof poison_ranges / sizeof poison_ranges[0]; r++)
        for (size_t off = (poison_ranges[r].lo + 7) & ~(size_t)7; off + 8 <= poison_ranges[r].hi;
             off += 8) {
            uint64_t word;
            memcpy(&word, (const char *)t + off, sizeof word);
            if (word == POISON) {
                char what[96];
                snprintf(what, sizeof what, "task slot reset in full (offset %zu left over)", off);
                weft__assert_fail(what, __FILE__, __LINE__, __func__);
            }
        }
}

/* Any thread, the slot's last reference dropped, t->rare set.  Puts the
 * rare fields back to their reset values (struct weft_task: clean on
 * free) and frees the task-locals array. */
void weft__task_scrub(weft_task *t)
{
    free(t->locals);
    t->locals = NULL;
    t->nlocals = t->caplocals = 0;
    t->blocking = t->queued = false;
    t->pool = NULL;
    t->group = NULL;
    t->gprev = t->gnext = NULL;
    t->trace_flow = 0;
    t->rare = false;
}

/* Owner worker only (w's cache is over 2 * WEFT__TASK_BATCH; n its count).
 * The rest of weft__task_dealloc (internal.h): gives a batch back for
 * other workers' spawns, on the spare stack, or when it is full to the
 * pool, but never by waiting for the lock (its holder may be preempted):
 * the slots stay in the cache and the next free tries again. */
void weft__task_cache_spill(weft__worker *w, unsigned n)
{
    weft__runtime *rt = w->rt;
    /* relaxed: a bound; a few batches over it are harmless. */
    bool spare = atomic_load_explicit(&rt->task_spare_n, memory_order_relaxed) <
                 WEFT__TASK_SPARE_MAX;
    if (!spare && !weft__spin_trylock(&rt->task_lock))
        return;
    weft_task *give = w->tasks.free;
    weft_task *last = give;
    for (int i = 1; i < WEFT__TASK_BATCH; i++)
        last = last->next;
    w->tasks.free = last->next;
    weft__cache_set(&w->tasks.n, &w->tasks.low, n - WEFT__TASK_BATCH);
    last->next = NULL;
    if (spare) {
        spare_push(rt, give);
        return;
    }
    while (give) {
        weft_task *nx = give->next;
        slab_put(rt->slab_pool, give);
        give = nx;
    }
    weft__spin_unlock(&rt->task_lock);
}

/* Any thread but a worker of t's runtime: the rest of weft__task_dealloc
 * (internal.h), the slot straight back to its slab. */
void weft__task_dealloc_remote(weft_task *t)
{
    weft__runtime *rt = t->rt;
    weft__spin_lock(&rt->task_lock);
    slab_put(rt->slab_pool, t);
    weft__spin_unlock(&rt->task_lock);
}

/* Owner worker only, at exit. */
void weft__task_cache_flush(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    weft__spin_lock(&rt->task_lock);
    while (w->tasks.free) {
        weft_task *x = w->tasks.free;
        w->tasks.free = x->next;
        slab_put(rt->slab_pool, x);
    }
    weft__cache_set(&w->tasks.n, &w->tasks.low, 0);
    weft__spin_unlock(&rt->task_lock);
}

/* Owner worker only (no system call).  The k coldest slots of w's cache,
 * its bottom ones, go back to their slabs: unused for a trim window, they
 * would keep those slabs from emptying (trim.c). */
void weft__task_cache_trim(weft__worker *w, unsigned k)
{
    if (!k || k > weft__cache_n(&w->tasks.n))
        return;
    weft__runtime *rt = w->rt;
    unsigned keep = weft__cache_n(&w->tasks.n) - k;
    weft_task **link = &w->tasks.free;
    for (unsigned i = 0; i < keep; i++)
        link = &(*link)->next;
    weft_task *give = *link;
    *link = NULL;
    weft__cache_set(&w->tasks.n, &w->tasks.low, keep);
    weft__spin_lock(&rt->task_lock);
    while (give) {
        weft_task *nx = give->next;
        slab_put(rt->slab_pool, give);
        give = nx;
    }
    weft__spin_unlock(&rt->task_lock);
}

/* Any thread.  Does slot t hold a task that has not finished?  (seq 0: a
 * slot never used, or zeroed by a trim, whatever its state reads.) */
static bool unfinished(weft_task *t)
{
    if (atomic_load_explicit(&t->seq, memory_order_acquire) == 0)
        return false;
    int st = atomic_load_explicit(&t->state, memory_order_acquire);
    return st != WEFT__TASK_FREE && st != WEFT_TASK_DONE;
}

/* Any thread (weft_run at shutdown): cancels and wakes every unfinished task
 * (blocking tasks still in line are dropped by weft__pool_drop_all).  Holds
 * trim_mu: a slot it saw as a task is not zeroed before its wake. */
void weft__reg_cancel_all(weft__runtime *rt)
{
    pthread_mutex_lock(&rt->trim_mu);
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire); s;
         s = s->next) {
        for (size_t i = 0; i < WEFT__SLAB_TASKS; i++) {
            weft_task *t = &s->t[i];
            if (!unfinished(t))
                continue;
            /* seq_cst, before the wake-up: as in weft__cancel_task (task.c). */
            atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
            weft__wake(t);
        }
    }
    pthread_mutex_unlock(&rt->trim_mu);
}

/* Any thread.  Unfinished tasks right now (approximate while they change). */
size_t weft__reg_live(weft__runtime *rt)
{
    size_t n = 0;
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire); s;
         s = s->next)
        for (size_t i = 0; i < WEFT__SLAB_TASKS; i++)
            n += unfinished(&s->t[i]);
    return n;
}

/* sysmon only.  Drains the spare stack into the slabs first when it has
 * not moved since the last look (a quarter window), so that slots resting
 * there after a burst count as free and their slabs may empty; a stack in
 * use is left alone (its lock-free hand-over is the point; a top that
 * moved and came back only drains it early). */
void weft__slabs_lowwater(weft__runtime *rt, size_t *low, size_t *now)
{
    struct weft__slab_pool *p = rt->slab_pool;
    /* relaxed: a hint; the exchange below is what takes the batches. */
    weft_task *top = atomic_load_explicit(&rt->task_spare, memory_order_relaxed);
    weft_task *b = top && top == p->spare_seen ? spare_take_all(rt) : NULL;
    p->spare_seen = b ? NULL : top;
    unsigned n = 0;
    for (; b; n++) {
        /* One batch per hold, as a worker's give-back. */
        weft_task *nb = b->gnext;
        b->gnext = NULL;  /* clean on free (struct weft_task) */
        weft__spin_lock(&rt->task_lock);
        for (weft_task *t = b; t;) {
            weft_task *nx = t->next;
            slab_put(p, t);
            t = nx;
        }
        weft__spin_unlock(&rt->task_lock);
        b = nb;
    }
    weft__spin_lock(&rt->task_lock);
    weft__lw_take(&p->nempty, low, now);
    weft__spin_unlock(&rt->task_lock);
    /* relaxed: a bound (see spare_push). */
    if (n)
        atomic_fetch_sub_explicit(&rt->task_spare_n, n, memory_order_relaxed);
}

/* Any thread. */
void weft__slabs_stats(weft__runtime *rt, weft_memory_stats *out)
{
    struct weft__slab_pool *p = rt->slab_pool;
    out->task_slot_size = sizeof(weft_task);
    weft__spin_lock(&rt->task_lock);
    out->slabs = 0;
    for (struct slab_extent *e = p->extents; e; e = e->next)
        out->slabs += e->used;
    out->slabs_idle = p->nempty.n;
    out->slabs_clean = 0;
    for (struct weft__task_slab *s = p->trimmed; s; s = s->pnext)
        out->slabs_clean++;
    weft__spin_unlock(&rt->task_lock);
    /* relaxed: a statistic. */
    out->slabs_trimmed = atomic_load_explicit(&rt->trimmed_slabs, memory_order_relaxed);
}

/* Any thread (sysmon), with trim_mu held; may block the thread (madvise),
 * with no spinlock held. */
size_t weft__slabs_trim(weft__runtime *rt, size_t n)
{
    struct weft__slab_pool *p = rt->slab_pool;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    /* Slots must start on a page for their pages to go alone. */
    if (!n || offsetof(struct weft__task_slab, t) % ps != 0)
        return 0;
    struct weft__task_slab **v = malloc(sizeof *v * n);
    struct iovec *iov = malloc(sizeof *iov * n);
    if (!v || !iov) {
        free(v);
        free(iov);
        return 0;
    }
    size_t k = 0;
    weft__spin_lock(&rt->task_lock);
    while (k < n && p->empty_tail) {
        struct weft__task_slab *s = p->empty_tail;
        list_del(p, s);  /* on no list: nobody hands its slots out */
        v[k++] = s;
    }
    weft__spin_unlock(&rt->task_lock);
    for (size_t i = 0; i < k; i++) {
        struct weft__task_slab *s = v[i];
        /* Every slot is free and on no list but the slab's own: nobody
         * writes seq now.  The next seq_base is above all of them. */
        uint32_t top = s->seq_base;
        for (unsigned j = 0; j < s->nbump; j++) {
            uint32_t q = atomic_load_explicit(&s->t[j].seq, memory_order_relaxed);
            if (q > top)
                top = q;
        }
        s->seq_base = (top + 2) & ~1u;
        iov[i] = (struct iovec){s->t, WEFT__SLAB_BYTES - offsetof(struct weft__task_slab, t)};
    }
    (void)weft__os_madvise_ranges(iov, k, MADV_DONTNEED);
    weft__spin_lock(&rt->task_lock);
    for (size_t i = 0; i < k; i++) {
        v[i]->free = NULL;
        v[i]->nfree = 0;
        v[i]->nbump = 0;
        list_add(p, v[i], SLAB_TRIMMED);
    }
    weft__spin_unlock(&rt->task_lock);
    free(v);
    free(iov);
    return k;
}

/* weft_run, after the workers stopped: reports (debug mode) the tasks whose
 * handles were never released, and unmaps every slab. */
void weft__reg_free_all(weft__runtime *rt)
{
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire); s;
         s = s->next) {
        for (size_t i = 0; i < WEFT__SLAB_TASKS; i++) {
            weft_task *t = &s->t[i];
            if (atomic_load_explicit(&t->seq, memory_order_relaxed) == 0 ||
                atomic_load_explicit(&t->state, memory_order_relaxed) == WEFT__TASK_FREE)
                continue;
            if (rt->cfg.debug && !t->is_main) {
                unsigned long long id = atomic_load_explicit(&t->id, memory_order_relaxed);
                if (t->name[0])
                    weft__log("weft: task '%s' (id %llu) was never joined or detached",
                              t->name, id);
                else
                    weft__log("weft: task id %llu was never joined or detached", id);
            }
            free(t->locals);
        }
    }
    atomic_store_explicit(&rt->slabs, NULL, memory_order_relaxed);
    struct weft__slab_pool *p = rt->slab_pool;
    if (!p)
        return;
    for (struct slab_extent *e = p->extents, *n; e; e = n) {
        n = e->next;
        munmap(e->map, e->len);
        free(e);
    }
    free(p);
    rt->slab_pool = NULL;
}
