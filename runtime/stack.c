/*
 * Coroutine stacks.
 *
 * Address space is reserved in extents: one mmap of MAP_NORESERVE memory
 * for many stacks (64 at first, doubling to 8192 per extent), each stack
 * with a guard page below it.  A stack costs address space at once and
 * memory only for the pages its coroutine touches.  Extents are few (128
 * for a million stacks of 128 KiB), so the process-wide mmap lock, which
 * the other workers' page faults can wait on, is rarely taken.
 *
 * Where stacks come from, fastest first:
 *   1. the worker's cache: LIFO, so the stack just freed, whose pages are
 *      warm in cache and present in memory, is the next one used; no lock;
 *   2. the pool (stack_lock), in batches of WEFT__CACHE_MAX/2: warm stacks
 *      given back by caches, then clean ones (trimmed), then never-used
 *      ones handed out in contiguous runs from the newest extent;
 *   3. a new extent, mapped and guarded with no lock held.
 * No system call runs under stack_lock.
 *
 * Guard pages and vm.max_map_count.  An mprotect'ed guard page splits its
 * mapping in two, so with the default vm.max_map_count (65530) a process
 * could hold only about 32,700 guarded stacks.  Where the kernel has
 * MADV_GUARD_INSTALL (Linux 6.13+), guards are installed in place, no
 * mapping is split, and an extent's guards go in a few system calls
 * (weft__os_madvise_ranges).  Where it does not, guards fall back to
 * mprotect for as long as the map count allows (half of what
 * vm.max_map_count leaves above a reserve of 8192 for the rest of the
 * process); stacks past that have no guard page, and weft prints one line
 * saying so, once.  WEFT_GUARD=mprotect forces the fallback (tests).
 *
 * Trimming.  The pool keeps its warm stacks in a list, most recently given
 * back first, and counts the fewest it held since sysmon last asked (its
 * low-water mark).  The trimmer (trim.c) decides how many were not needed;
 * weft__stacks_trim takes that many off the cold end, gives their pages
 * back with MADV_DONTNEED outside the lock (adjacent stacks in one range:
 * DONTNEED keeps guard pages of either kind), and returns them to the pool
 * as clean.  A stack is trimmed only while it is in the pool, so no
 * coroutine runs on it; weft_dump reads only the stacks of live tasks.
 *
 * Refusal.  When the kernel refuses even one stack, a task about to run
 * first waits in the pool's line (wait_head, under stack_lock; its count
 * rt->stack_waiting readable without the lock).  Freeing a stack while
 * some wait (stack_put), or parking with stacks cached, gives the worker's
 * cache to the pool and queues as many of them (weft__stack_offer); sysmon
 * (weft__stacks_tick) queues as many as the pool has stacks for, and, once
 * the back-off after the last refusal has passed (10 ms, doubling to 1 s
 * while refusals go on), the first in line, whose stack_get asks the
 * kernel again.  A stack that reaches a busy worker's cache just as a task
 * begins to wait is seen at that worker's next free or park, or by sysmon:
 * a delay, never a task left waiting with stacks free in the pool.
 *
 * Operations and the threads they run on:
 *   stack_get, stack_put, stack_cache_flush,   owner worker (its cache;
 *   stack_offer, stack_cache_trim              the pool under stack_lock)
 *   stacks_lowwater, stacks_trim, stacks_tick  sysmon, concurrently with
 *                                              the above
 *   stacks_init, stacks_free                   weft_run, workers stopped
 * Address space is unmapped only by stacks_free.
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

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define EXTENT_FIRST 64u
#define EXTENT_MAX 8192u

struct weft__stack_extent {
    struct weft__stack_extent *next;
    char *base;
    size_t len;
    unsigned n;         /* stacks in it */
    unsigned used;      /* st[0, used) have been handed out (under stack_lock) */
    weft__stack st[];
};

/* Under stack_lock, all of it. */
struct weft__stack_pool {
    weft__stack *warm_head, *warm_tail;  /* given back; head: most recent */
    weft__lowwater warm;                 /* how many; fewest since lowwater() */
    size_t credit;                       /* warm stacks given back as idle for a
                                          * window (cache trims), not yet told */
    weft__stack *clean;                  /* trimmed: no page present */
    size_t clean_n;
    struct weft__stack_extent *extents;  /* newest first */
    unsigned next_n;                     /* stacks in the next extent */
    int64_t refused_at;                  /* when the kernel last refused one */
    int64_t backoff;                     /* then, how long before asking again */
    weft_task *wait_head, *wait_tail;    /* waiting for a stack (t->next), FIFO */
};

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static long max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long v = 65530;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

/* weft_run, before the workers start. */
int weft__stacks_init(weft__runtime *rt)
{
    size_t ps = page_size();
    const char *force = getenv("WEFT_GUARD");
    rt->madv_guard = false;
    if (!force || strcmp(force, "mprotect") != 0) {
        char *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            rt->madv_guard = madvise(p, ps, MADV_GUARD_INSTALL) == 0;
            munmap(p, 2 * ps);
        }
    }
    long mmc = max_map_count();
    rt->guard_budget = mmc > 8192 ? (size_t)(mmc - 8192) / 2 : 0;
    rt->stack_pool = calloc(1, sizeof *rt->stack_pool);
    if (!rt->stack_pool)
        return -ENOMEM;
    rt->stack_pool->next_n = EXTENT_FIRST;
    return 0;
}

/* weft_run, after the workers and sysmon stopped. */
void weft__stacks_free(weft__runtime *rt)
{
    struct weft__stack_pool *p = rt->stack_pool;
    if (!p)
        return;
    struct weft__stack_extent *e = p->extents;
    while (e) {
        struct weft__stack_extent *n = e->next;
        for (unsigned i = 0; i < e->n; i++)
            weft__valgrind_stack_deregister(e->st[i].valgrind_id);
        munmap(e->base, e->len);
        free(e);
        e = n;
    }
    free(p);
    rt->stack_pool = NULL;
}

/* Any thread, no lock held: guard pages for the n stacks of e; returns how
 * many mprotect guards it used of the budget it was given. */
static size_t install_guards(weft__runtime *rt, struct weft__stack_extent *e, size_t budget)
{
    size_t ps = page_size();
    size_t used = 0;
    if (rt->madv_guard) {
        struct iovec *iov = malloc(sizeof *iov * e->n);
        int rc = -ENOMEM;
        if (iov) {
            for (unsigned i = 0; i < e->n; i++)
                iov[i] = (struct iovec){e->st[i].lo - ps, ps};
            rc = weft__os_madvise_ranges(iov, e->n, MADV_GUARD_INSTALL);
            free(iov);
        }
        if (rc == 0) {
            for (unsigned i = 0; i < e->n; i++)
                e->st[i].guarded = true;
            return 0;
        }
        /* One by one, so each stack knows whether it has its guard. */
        for (unsigned i = 0; i < e->n; i++)
            e->st[i].guarded = madvise(e->st[i].lo - ps, ps, MADV_GUARD_INSTALL) == 0;
        return 0;
    }
    for (unsigned i = 0; i < e->n && used < budget; i++) {
        e->st[i].guarded = mprotect(e->st[i].lo - ps, ps, PROT_NONE) == 0;
        used += e->st[i].guarded;
    }
    return used;
}

/* Owner worker, no lock held (may block the thread: mmap, madvise).  Maps
 * and guards an extent of up to want stacks, halving the request while the
 * kernel refuses it; NULL when even one stack cannot be had. */
static struct weft__stack_extent *map_extent(weft__runtime *rt, unsigned want, size_t budget,
                                             size_t *budget_used)
{
    size_t ps = page_size();
    size_t span = rt->cfg.stack_size + ps;
    for (unsigned n = want; n >= 1; n /= 2) {
        char *base = mmap(NULL, span * n, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (base == MAP_FAILED)
            continue;
        struct weft__stack_extent *e = calloc(1, sizeof *e + sizeof(weft__stack) * n);
        if (!e) {
            munmap(base, span * n);
            return NULL;
        }
        e->base = base;
        e->len = span * n;
        e->n = n;
        for (unsigned i = 0; i < n; i++) {
            weft__stack *s = &e->st[i];
            s->lo = base + (size_t)i * span + ps;
            s->size = rt->cfg.stack_size;
            s->valgrind_id = weft__valgrind_stack_register(s->lo, s->lo + s->size);
        }
        *budget_used = install_guards(rt, e, budget);
        return e;
    }
    return NULL;
}

/* Owner worker, no lock held: says, at most once a second, that the kernel
 * refused the address space of even one stack. */
static void refused(weft__runtime *rt, unsigned want)
{
    static _Atomic int64_t last_log;
    int64_t now = weft__real_now();
    /* relaxed: a rate limit for a log line, nothing more. */
    if (now - atomic_load_explicit(&last_log, memory_order_relaxed) < WEFT_SEC)
        return;
    atomic_store_explicit(&last_log, now, memory_order_relaxed);
    size_t kib = (rt->cfg.stack_size + page_size()) / 1024;
    weft__log("weft: the kernel refused address space for coroutine stacks (%u tried, then "
              "fewer, down to one of %zu KiB: %s); vm.overcommit_memory=2 or a ulimit -v is the "
              "usual cause; tasks wait to start until a stack is freed",
              want, kib, strerror(ENOMEM));
}

/* Under stack_lock.  Moves up to max stacks from the pool into w's cache:
 * warm first, then clean, then never used from the extents; returns how
 * many. */
static unsigned refill(struct weft__stack_pool *p, weft__worker *w, unsigned max)
{
    unsigned got = 0;
    while (got < max && p->warm_head) {
        weft__stack *s = p->warm_head;
        p->warm_head = s->next;
        if (p->warm_head)
            p->warm_head->prev = NULL;
        else
            p->warm_tail = NULL;
        weft__lw_sub(&p->warm, 1);
        s->next = w->stacks.free;
        w->stacks.free = s;
        got++;
    }
    while (got < max && p->clean) {
        weft__stack *s = p->clean;
        p->clean = s->next;
        p->clean_n--;
        s->next = w->stacks.free;
        w->stacks.free = s;
        got++;
    }
    for (struct weft__stack_extent *e = p->extents; e && got < max; e = e->next) {
        /* In reverse, so the cache hands the run out in address order. */
        unsigned k = e->n - e->used < max - got ? e->n - e->used : max - got;
        for (unsigned i = k; i-- > 0;) {
            weft__stack *s = &e->st[e->used + i];
            s->next = w->stacks.free;
            w->stacks.free = s;
        }
        e->used += k;
        got += k;
    }
    /* relaxed: a statistic (weft__cache_n). */
    atomic_store_explicit(&w->stacks.n, weft__cache_n(&w->stacks.n) + got, memory_order_relaxed);
    return got;
}

/* Under stack_lock.  t waits for a stack, last in line. */
static void wait_push(weft__runtime *rt, weft_task *t)
{
    struct weft__stack_pool *p = rt->stack_pool;
    weft__task_list_append(&p->wait_head, &p->wait_tail, t);
    /* relaxed: under stack_lock; the lock-free readers (stack_put,
     * weft__stack_offer) only decide whether to take it. */
    atomic_store_explicit(&rt->stack_waiting,
                          atomic_load_explicit(&rt->stack_waiting, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Under stack_lock.  Up to n waiting tasks, first in line first, as a list
 * (t->next) for weft__inject_push; *tail its last, *k how many. */
static weft_task *wait_pop(weft__runtime *rt, size_t n, weft_task **tail, size_t *k)
{
    struct weft__stack_pool *p = rt->stack_pool;
    weft_task *head = p->wait_head, *last = NULL;
    size_t got = 0;
    for (weft_task *t = head; t && got < n; t = t->next) {
        last = t;
        got++;
    }
    if (!got)
        return NULL;
    p->wait_head = last->next;
    if (!p->wait_head)
        p->wait_tail = NULL;
    last->next = NULL;
    atomic_store_explicit(&rt->stack_waiting,
                          atomic_load_explicit(&rt->stack_waiting, memory_order_relaxed) - got,
                          memory_order_relaxed);
    *tail = last;
    *k = got;
    return head;
}

/* Owner worker only (may block the thread: a new extent is mapped with no
 * lock held).  weft__stack_get (internal.h) when w's cache is empty: a
 * stack for t, a task about to run first; NULL when the
 * kernel refuses the address space: t then waits in the pool's line, until
 * a stack is given back (weft__stack_offer) or sysmon's back-off lets it
 * ask the kernel again (weft__stacks_tick), and is queued to run again. */
weft__stack *weft__stack_get_slow(weft__worker *w, weft_task *t)
{
    weft__stack *s;
    weft__runtime *rt = w->rt;
    struct weft__stack_pool *p = rt->stack_pool;
    weft__spin_lock(&rt->stack_lock);
    unsigned got = refill(p, w, WEFT__CACHE_MAX / 2);
    unsigned want = p->next_n;
    size_t budget = 0;
    /* After a refusal the kernel is asked again once the back-off has
     * passed (sysmon then sends the first task in line back to ask:
     * weft__stacks_tick); until then a task without a stack waits. */
    if (!got && p->refused_at && weft__real_now() - p->refused_at < p->backoff) {
        wait_push(rt, t);
        weft__spin_unlock(&rt->stack_lock);
        return NULL;
    }
    bool first = !p->extents;
    if (!got) {
        if (p->next_n < EXTENT_MAX)
            p->next_n *= 2;
        budget = rt->madv_guard ? 0 : (rt->guard_budget < want ? rt->guard_budget : want);
        rt->guard_budget -= budget;
    }
    weft__spin_unlock(&rt->stack_lock);
    if (!got) {
        size_t used = 0;
        /* WEFT_FAULTS=stacks (faults.c): refused, beyond the first. */
        struct weft__stack_extent *e = !first && weft__fault(WEFT__FAULT_STACKS)
                                           ? NULL
                                           : map_extent(rt, want, budget, &used);
        weft__spin_lock(&rt->stack_lock);
        rt->guard_budget += budget - used;
        bool warn = false;
        weft_task *wake = NULL, *wake_tail = NULL;
        size_t nwake = 0;
        if (e) {
            e->next = p->extents;
            p->extents = e;
            p->refused_at = 0;
            refill(p, w, WEFT__CACHE_MAX / 2);
            /* Those in line run on the rest of the new extent. */
            wake = wait_pop(rt, e->n - e->used, &wake_tail, &nwake);
            for (unsigned i = 0; i < e->n && !warn; i++)
                warn = !e->st[i].guarded && !rt->guard_warned;
            rt->guard_warned |= warn;
        } else {
            /* Ask again after 10 ms, then doubling up to a second
             * while the kernel keeps refusing. */
            int64_t now = weft__real_now();
            p->backoff = !p->refused_at ? 10 * WEFT_MS
                         : p->backoff < WEFT_SEC / 2 ? 2 * p->backoff : WEFT_SEC;
            p->refused_at = now;
            /* Another worker may have given stacks back meanwhile. */
            if (!refill(p, w, WEFT__CACHE_MAX / 2))
                wait_push(rt, t);
        }
        weft__spin_unlock(&rt->stack_lock);
        if (wake)
            weft__inject_push(rt, wake, wake_tail, nwake);
        if (!e)
            refused(rt, want);
        if (warn)
            weft__log("weft: no guard pages for further coroutine stacks: this kernel lacks "
                      "MADV_GUARD_INSTALL and vm.max_map_count (%ld) is used up by guarded "
                      "stacks",
                      max_map_count());
    }
    s = w->stacks.free;
    if (!s)
        return NULL;
    w->stacks.free = s->next;
    weft__cache_set(&w->stacks.n, &w->stacks.low, weft__cache_n(&w->stacks.n) - 1);
    return s;
}

/* Under stack_lock.  s becomes the most recent warm stack of the pool. */
static void warm_push(struct weft__stack_pool *p, weft__stack *s)
{
    s->prev = NULL;
    s->next = p->warm_head;
    if (p->warm_head)
        p->warm_head->prev = s;
    else
        p->warm_tail = s;
    p->warm_head = s;
    p->warm.n++;
}

/* Owner worker only.  Gives every stack of w's cache to the pool and
 * queues as many tasks waiting for one (weft__stack_get), first in line
 * first; called when stack_waiting says some wait: from stack_put, so that
 * a stack freed goes to whoever waits, and when w parks, for a stack that
 * reached w's cache as a task began to wait. */
void weft__stack_offer(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    weft_task *wake = NULL, *tail = NULL;
    size_t k = 0;
    weft__spin_lock(&rt->stack_lock);
    unsigned n = 0;
    while (w->stacks.free) {
        weft__stack *x = w->stacks.free;
        w->stacks.free = x->next;
        warm_push(rt->stack_pool, x);
        n++;
    }
    weft__cache_set(&w->stacks.n, &w->stacks.low, 0);
    if (n)
        wake = wait_pop(rt, n, &tail, &k);
    weft__spin_unlock(&rt->stack_lock);
    if (wake)
        weft__inject_push(rt, wake, tail, k);
}

/* Owner worker only.  weft__stack_put (internal.h) when w's cache is over
 * WEFT__CACHE_MAX: the older half goes back to the pool. */
void weft__stack_put_spill(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    /* The older half goes back: the most recent stay warm here.  Walk
     * to it before taking the lock. */
    weft__stack *keep = w->stacks.free;
    for (unsigned i = 1; i < WEFT__CACHE_MAX / 2; i++)
        keep = keep->next;
    weft__stack *give = keep->next;
    keep->next = NULL;
    weft__cache_set(&w->stacks.n, &w->stacks.low, WEFT__CACHE_MAX / 2);
    weft__spin_lock(&rt->stack_lock);
    while (give) {
        weft__stack *nx = give->next;
        warm_push(rt->stack_pool, give);
        give = nx;
    }
    weft__spin_unlock(&rt->stack_lock);
}

/* Owner worker only, at exit: gives the cache back to the pool. */
void weft__stack_cache_flush(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    weft__spin_lock(&rt->stack_lock);
    while (w->stacks.free) {
        weft__stack *x = w->stacks.free;
        w->stacks.free = x->next;
        warm_push(rt->stack_pool, x);
    }
    weft__cache_set(&w->stacks.n, &w->stacks.low, 0);
    weft__spin_unlock(&rt->stack_lock);
}

/* Owner worker only (no system call).  The k coldest stacks of w's cache,
 * its bottom ones, were not used for a whole trim window (trim.c): they go
 * to the cold end of the pool's warm list, counted as idle since the
 * window began (the low-water mark of this quarter, and a credit for the
 * trimmer's earlier quarters), so that sysmon's next trim gives their
 * pages back without waiting another window. */
void weft__stack_cache_trim(weft__worker *w, unsigned k)
{
    if (!k || k > weft__cache_n(&w->stacks.n))
        return;
    weft__runtime *rt = w->rt;
    struct weft__stack_pool *p = rt->stack_pool;
    unsigned keep = weft__cache_n(&w->stacks.n) - k;
    weft__stack **link = &w->stacks.free;
    for (unsigned i = 0; i < keep; i++)
        link = &(*link)->next;
    weft__stack *give = *link;
    *link = NULL;
    weft__cache_set(&w->stacks.n, &w->stacks.low, keep);
    weft__spin_lock(&rt->stack_lock);
    while (give) {
        weft__stack *nx = give->next;
        give->next = NULL;
        give->prev = p->warm_tail;
        if (p->warm_tail)
            p->warm_tail->next = give;
        else
            p->warm_head = give;
        p->warm_tail = give;
        give = nx;
    }
    p->warm.n += k;
    p->warm.low += k;
    p->credit += k;
    weft__spin_unlock(&rt->stack_lock);
}

/* Any thread (sysmon).  Sends tasks waiting for a stack back to run: as
 * many as the pool has stacks for (one given back to a cache as they began
 * to wait, then offered by a parking worker), and, once the back-off after
 * the kernel's last refusal has passed, the first in line, which asks it
 * again. */
void weft__stacks_tick(weft__runtime *rt, int64_t now)
{
    /* relaxed: see stack_put; a task missed now is seen at the next tick. */
    if (!atomic_load_explicit(&rt->stack_waiting, memory_order_relaxed))
        return;
    struct weft__stack_pool *p = rt->stack_pool;
    weft_task *wake, *tail = NULL;
    size_t k = 0;
    weft__spin_lock(&rt->stack_lock);
    size_t n = p->warm.n + p->clean_n;
    for (struct weft__stack_extent *e = p->extents; e; e = e->next)
        n += e->n - e->used;
    if (!n && p->wait_head && now - p->refused_at >= p->backoff)
        n = 1;
    wake = wait_pop(rt, n, &tail, &k);
    weft__spin_unlock(&rt->stack_lock);
    if (wake)
        weft__inject_push(rt, wake, tail, k);
}

/* Any thread (sysmon). */
void weft__stacks_lowwater(weft__runtime *rt, size_t *low, size_t *now, size_t *credit)
{
    struct weft__stack_pool *p = rt->stack_pool;
    weft__spin_lock(&rt->stack_lock);
    weft__lw_take(&p->warm, low, now);
    *credit = p->credit;
    p->credit = 0;
    weft__spin_unlock(&rt->stack_lock);
}

/* Any thread. */
void weft__stacks_stats(weft__runtime *rt, weft_memory_stats *out)
{
    struct weft__stack_pool *p = rt->stack_pool;
    out->stack_size = rt->cfg.stack_size;
    weft__spin_lock(&rt->stack_lock);
    out->stacks_reserved = 0;
    for (struct weft__stack_extent *e = p->extents; e; e = e->next)
        out->stacks_reserved += e->n;
    out->stacks_idle_warm = p->warm.n;
    out->stacks_idle_clean = p->clean_n;
    weft__spin_unlock(&rt->stack_lock);
    /* relaxed: a statistic. */
    out->stacks_trimmed = atomic_load_explicit(&rt->trimmed_stacks, memory_order_relaxed);
}

static int by_address(const void *a, const void *b)
{
    const weft__stack *x = *(weft__stack *const *)a, *y = *(weft__stack *const *)b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Any thread (sysmon); may block the thread (madvise), with no lock held. */
size_t weft__stacks_trim(weft__runtime *rt, size_t n)
{
    struct weft__stack_pool *p = rt->stack_pool;
    if (!n)
        return 0;
    weft__stack **v = malloc(sizeof *v * n);
    struct iovec *iov = malloc(sizeof *iov * n);
    if (!v || !iov) {
        free(v);
        free(iov);
        return 0;
    }
    size_t k = 0;
    weft__spin_lock(&rt->stack_lock);
    while (k < n && p->warm_tail) {
        weft__stack *s = p->warm_tail;
        p->warm_tail = s->prev;
        if (p->warm_tail)
            p->warm_tail->next = NULL;
        else
            p->warm_head = NULL;
        weft__lw_sub(&p->warm, 1);
        v[k++] = s;
    }
    weft__spin_unlock(&rt->stack_lock);
    /* Off every list now: nobody else can hand these out. */
    qsort(v, k, sizeof *v, by_address);
    size_t ps = page_size(), r = 0;
    for (size_t i = 0; i < k; i++) {
        char *lo = v[i]->lo, *hi = v[i]->lo + v[i]->size;
        if (r && (char *)iov[r - 1].iov_base + iov[r - 1].iov_len + ps == lo)
            iov[r - 1].iov_len = (size_t)(hi - (char *)iov[r - 1].iov_base);
        else
            iov[r++] = (struct iovec){lo, v[i]->size};
    }
    /* A failure leaves pages present: the stacks are reused all the same. */
    (void)weft__os_madvise_ranges(iov, r, MADV_DONTNEED);
    weft__spin_lock(&rt->stack_lock);
    for (size_t i = 0; i < k; i++) {
        v[i]->next = p->clean;
        p->clean = v[i];
        p->clean_n++;
    }
    weft__spin_unlock(&rt->stack_lock);
    free(v);
    free(iov);
    return k;
}

/* Any context, async-signal-safe: does addr fall in s's guard page? */
bool weft__stack_guard_hit(const void *addr, const weft__stack *s)
{
    const char *a = addr;
    size_t ps = page_size();
    return s && a < s->lo && a >= s->lo - ps;
}
