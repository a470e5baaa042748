/*
 * The memory trimmer: gives back what the stack pool and the task slabs did
 * not need over the last window (WEFT_TRIM_MS, default 1000 ms; 0: never).
 *
 * The anchors are jemalloc's decay and Go's scavenger: memory a burst took
 * is kept while it may be needed again, and given back once it has not
 * been needed for a while.  Here "needed" is measured, not guessed: each
 * pool counts the fewest items it held since the trimmer last asked (its
 * low-water mark: stack.c warm stacks, registry.c empty slabs).  sysmon
 * asks every quarter window and keeps the last four answers; what the pool
 * held at every moment of the window, less a floor, was not needed, and is
 * trimmed:
 *
 *     release = min(low-water marks of the last 4 quarters) - floor
 *
 * So a server whose bursts come closer together than the window keeps their
 * memory (the low-water mark of a window with a burst in it is near zero),
 * and a pause longer than the window gives it back within a quarter window
 * of its end.  The floors (WEFT__TRIM_KEEP_*) are small.
 *
 * Each worker's own caches (up to 64 stacks and 64 task slots) follow the
 * same rule, applied by the owner, the only thread that may touch them
 * (weft__trim_caches, called as it is about to park): it keeps each
 * cache's low-water mark, records it per quarter (all the quarters that
 * passed since its last record get the same mark: conservative), and gives
 * back what the cache held through the window, its bottom part.  Stacks go
 * to the cold end of the pool's warm list counted as idle for the window
 * (weft__stack_cache_trim: this quarter's mark and a credit for the
 * earlier ones, which trim_tick adds to its ring), so sysmon gives their
 * pages back at its next quarter; slots go back to their slabs, which the
 * slabs' rule trims a window later.  A worker parked with anything cached
 * sets its park's deadline to when its marks would cover a window, so an
 * idle process keeps only the pools' floors.  No shared flag is needed: a
 * parked worker could not see one without being woken anyway.
 *
 * Giving back is MADV_DONTNEED, not MADV_FREE: MADV_FREE leaves the pages
 * counted in the resident set until the kernel is short of memory, which
 * is what operators watch (Go went back to DONTNEED for that reason).  The
 * system calls run in sysmon with no spinlock held (stack.c, registry.c).
 *
 * trim_tick is executed by sysmon only, and the state below is sysmon's;
 * weft__trim_caches by each worker on its own caches and its ctrim.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include "internal.h"

#define QUARTERS 4
#define WEFT__TRIM_KEEP_STACKS 64  /* in the pool, beyond the workers' caches */
#define WEFT__TRIM_KEEP_SLABS 1

_Static_assert(sizeof ((weft__cache_trim *)0)->stacks / sizeof(size_t) == QUARTERS,
               "a worker's cache rings hold one mark per quarter");

struct weft__trim {
    int64_t next_at;               /* end of the current quarter */
    unsigned filled;               /* quarters recorded, up to QUARTERS */
    unsigned at;                   /* next entry of the rings */
    size_t stacks[QUARTERS], slabs[QUARTERS];  /* low-water marks */
};

/* weft_run, before sysmon starts. */
int weft__trim_init(weft__runtime *rt)
{
    pthread_mutex_init(&rt->trim_mu, NULL);
    rt->trim = calloc(1, sizeof *rt->trim);
    return rt->trim ? 0 : -1;
}

/* weft_run, after sysmon stopped. */
void weft__trim_free(weft__runtime *rt)
{
    if (!rt->trim)
        return;
    free(rt->trim);
    rt->trim = NULL;
    pthread_mutex_destroy(&rt->trim_mu);
}

static size_t ring_min(const size_t *r)
{
    size_t m = r[0];
    for (unsigned i = 1; i < QUARTERS; i++)
        if (r[i] < m)
            m = r[i];
    return m;
}

/* After release items left the pool (or a worker's cache), no quarter held
 * more than it has. */
static void ring_sub(size_t *r, size_t released)
{
    for (unsigned i = 0; i < QUARTERS; i++)
        r[i] = r[i] > released ? r[i] - released : 0;
}

/* sysmon only (may block the thread: madvise). */
void weft__trim_tick(weft__runtime *rt, int64_t now)
{
    struct weft__trim *tr = rt->trim;
    int64_t quarter = rt->cfg.trim_ns / QUARTERS;
    if (!tr || quarter <= 0 || now < tr->next_at)
        return;
    tr->next_at = now + quarter;
    size_t low, cur, credit;
    weft__stacks_lowwater(rt, &low, &cur, &credit);
    /* Stacks that a worker's cache gave back as idle for a whole window
     * (weft__trim_caches) were idle in the earlier quarters too. */
    for (unsigned i = 0; i < QUARTERS; i++)
        tr->stacks[i] += credit;
    tr->stacks[tr->at] = low;
    weft__slabs_lowwater(rt, &low, &cur);
    tr->slabs[tr->at] = low;
    tr->at = (tr->at + 1) % QUARTERS;
    if (tr->filled < QUARTERS) {
        tr->filled++;
        return;
    }
    size_t idle = ring_min(tr->stacks);
    if (idle > WEFT__TRIM_KEEP_STACKS) {
        size_t k = weft__stacks_trim(rt, idle - WEFT__TRIM_KEEP_STACKS);
        ring_sub(tr->stacks, k);
        /* relaxed: a statistic (tests, docs). */
        atomic_fetch_add_explicit(&rt->trimmed_stacks, k, memory_order_relaxed);
    }
    idle = ring_min(tr->slabs);
    if (idle > WEFT__TRIM_KEEP_SLABS) {
        pthread_mutex_lock(&rt->trim_mu);
        /* At shutdown the registry is walked and woken (reg_cancel_all):
         * nothing is trimmed from then on. */
        size_t k = atomic_load_explicit(&rt->shutdown, memory_order_acquire)
                       ? 0
                       : weft__slabs_trim(rt, idle - WEFT__TRIM_KEEP_SLABS);
        pthread_mutex_unlock(&rt->trim_mu);
        ring_sub(tr->slabs, k);
        atomic_fetch_add_explicit(&rt->trimmed_slabs, k, memory_order_relaxed);
    }
}

/* Owner worker only, about to park (weft__park_worker): takes the pools'
 * spinlocks when it gives something back, makes no system call. */
int64_t weft__trim_caches(weft__worker *w, int64_t now)
{
    weft__cache_trim *ct = &w->ctrim;
    int64_t quarter = w->rt->cfg.trim_ns / QUARTERS;
    if (quarter <= 0)
        return INT64_MAX;
    if (now >= ct->next_at) {
        /* The marks cover the time since the last record, however many
         * quarters that spans: each of them gets the same (the first call,
         * with marks from the start, fills the ring). */
        int64_t k = ct->next_at ? 1 + (now - ct->next_at) / quarter : QUARTERS;
        for (k = k < QUARTERS ? k : QUARTERS; k > 0; k--) {
            ct->stacks[ct->at] = w->stacks.low;
            ct->slots[ct->at] = w->tasks.low;
            ct->at = (ct->at + 1) % QUARTERS;
        }
        w->stacks.low = weft__cache_n(&w->stacks.n);
        w->tasks.low = weft__cache_n(&w->tasks.n);
        ct->next_at = now + quarter;
        /* What the cache held at every moment of the window, its bottom
         * part (LIFO), was not used: all of it goes back. */
        size_t cold = ring_min(ct->stacks);
        if (cold) {
            weft__stack_cache_trim(w, (unsigned)cold);
            ring_sub(ct->stacks, cold);
        }
        cold = ring_min(ct->slots);
        if (cold) {
            weft__task_cache_trim(w, (unsigned)cold);
            ring_sub(ct->slots, cold);
        }
    }
    /* Parked with nothing changing, the ring holds the caches' present
     * counts three quarters after this one ends: look again then. */
    if (weft__cache_n(&w->stacks.n) || weft__cache_n(&w->tasks.n))
        return ct->next_at + (QUARTERS - 1) * quarter;
    return INT64_MAX;
}
