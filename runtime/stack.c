/*
 * Coroutine stacks.
 *
 * Stacks are carved from chunks of WEFT__STACKS_PER_CHUNK, each one mmap of
 * MAP_NORESERVE memory: a stack costs address space at once and memory only
 * for the pages its coroutine touches.  Each stack has a guard page below it.
 * A task gets a stack when it first runs, from its worker's cache (no lock),
 * then from the runtime's shared pool (spinlock), then from a new chunk.
 *
 * Guard pages and vm.max_map_count.  An mprotect'ed guard page splits its
 * mapping in two, so with the default vm.max_map_count (65530) a process
 * could hold only about 32,700 guarded stacks.  Where the kernel has
 * MADV_GUARD_INSTALL (Linux 6.13+), guards are installed in place and no
 * mapping is split: a million stacks need a few hundred mappings.  Where it
 * does not, guards fall back to mprotect for as long as the map count allows
 * (half of what vm.max_map_count leaves above a reserve of 8192 for the rest
 * of the process); stacks past that have no guard page, and weft prints one
 * line saying so, once.  WEFT_GUARD=mprotect forces the fallback (tests).
 *
 * Memory is kept for reuse until weft_run returns, which unmaps every chunk.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define WEFT__STACKS_PER_CHUNK 32
#define WEFT__CACHE_MAX 64

struct weft__stack_chunk {
    struct weft__stack_chunk *next;
    char *base;
    size_t len;
    weft__stack st[WEFT__STACKS_PER_CHUNK];
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
    rt->stack_free = NULL;
    rt->stack_free_n = 0;
    rt->chunks = NULL;
    return 0;
}

/* weft_run, after the workers stopped. */
void weft__stacks_free(weft__runtime *rt)
{
    struct weft__stack_chunk *c = rt->chunks;
    while (c) {
        struct weft__stack_chunk *n = c->next;
        for (int i = 0; i < WEFT__STACKS_PER_CHUNK; i++)
            weft__valgrind_stack_deregister(c->st[i].valgrind_id);
        munmap(c->base, c->len);
        free(c);
        c = n;
    }
    rt->chunks = NULL;
    rt->stack_free = NULL;
    rt->stack_free_n = 0;
}

/* Under rt->stack_lock.  Maps a new chunk; its stacks go to the pool. */
static int new_chunk(weft__runtime *rt)
{
    size_t ps = page_size();
    size_t size = rt->cfg.stack_size;
    size_t span = size + ps;
    struct weft__stack_chunk *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->len = span * WEFT__STACKS_PER_CHUNK;
    c->base = mmap(NULL, c->len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (c->base == MAP_FAILED) {
        free(c);
        return -ENOMEM;
    }
    for (int i = 0; i < WEFT__STACKS_PER_CHUNK; i++) {
        char *g = c->base + (size_t)i * span;
        weft__stack *s = &c->st[i];
        s->lo = g + ps;
        s->size = size;
        if (rt->madv_guard) {
            s->guarded = madvise(g, ps, MADV_GUARD_INSTALL) == 0;
        } else if (rt->guard_budget > 0) {
            s->guarded = mprotect(g, ps, PROT_NONE) == 0;
            if (s->guarded)
                rt->guard_budget--;
        }
        if (!s->guarded && !rt->guard_warned) {
            rt->guard_warned = true;
            weft__log("weft: no guard pages for further coroutine stacks: this kernel lacks "
                      "MADV_GUARD_INSTALL and vm.max_map_count (%ld) is used up by guarded stacks",
                      max_map_count());
        }
        s->valgrind_id = weft__valgrind_stack_register(s->lo, s->lo + size);
        s->next = rt->stack_free;
        rt->stack_free = s;
        rt->stack_free_n++;
    }
    c->next = rt->chunks;
    rt->chunks = c;
    return 0;
}

/* Owner worker only.  A stack for a task about to run first; NULL when no
 * memory can be mapped. */
weft__stack *weft__stack_get(weft__worker *w)
{
    weft__stack *s = w->stacks.free;
    if (WEFT__LIKELY(s)) {
        w->stacks.free = s->next;
        w->stacks.n--;
        return s;
    }
    weft__runtime *rt = w->rt;
    weft__spin_lock(&rt->stack_lock);
    if (!rt->stack_free && new_chunk(rt) < 0) {
        weft__spin_unlock(&rt->stack_lock);
        return NULL;
    }
    /* Take a batch into the cache. */
    for (int i = 0; i < WEFT__CACHE_MAX / 2 && rt->stack_free; i++) {
        weft__stack *x = rt->stack_free;
        rt->stack_free = x->next;
        rt->stack_free_n--;
        x->next = w->stacks.free;
        w->stacks.free = x;
        w->stacks.n++;
    }
    weft__spin_unlock(&rt->stack_lock);
    s = w->stacks.free;
    w->stacks.free = s->next;
    w->stacks.n--;
    return s;
}

/* Owner worker only.  Returns the stack of a finished task. */
void weft__stack_put(weft__worker *w, weft__stack *s)
{
    s->next = w->stacks.free;
    w->stacks.free = s;
    if (++w->stacks.n > WEFT__CACHE_MAX) {
        weft__runtime *rt = w->rt;
        weft__spin_lock(&rt->stack_lock);
        while (w->stacks.n > WEFT__CACHE_MAX / 2) {
            weft__stack *x = w->stacks.free;
            w->stacks.free = x->next;
            w->stacks.n--;
            x->next = rt->stack_free;
            rt->stack_free = x;
            rt->stack_free_n++;
        }
        weft__spin_unlock(&rt->stack_lock);
    }
}

/* Owner worker only, at exit: gives the cache back to the pool. */
void weft__stack_cache_flush(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    weft__spin_lock(&rt->stack_lock);
    while (w->stacks.free) {
        weft__stack *x = w->stacks.free;
        w->stacks.free = x->next;
        x->next = rt->stack_free;
        rt->stack_free = x;
        rt->stack_free_n++;
    }
    w->stacks.n = 0;
    weft__spin_unlock(&rt->stack_lock);
}

/* Any context, async-signal-safe: does addr fall in s's guard page? */
bool weft__stack_guard_hit(const void *addr, const weft__stack *s)
{
    const char *a = addr;
    size_t ps = page_size();
    return s && a < s->lo && a >= s->lo - ps;
}
