/*
 * The task registry and task memory, one mechanism (as Go's allgs + gFree).
 *
 * Task structs live in slabs of WEFT__SLAB_TASKS slots, allocated as needed
 * and freed only when weft_run returns.  The registry is the set of slabs: a
 * slot whose state is not WEFT__TASK_FREE is a task.  So spawning and
 * freeing touch no shared list and no lock: a freed slot goes to its
 * worker's cache, and caches trade batches of WEFT__TASK_BATCH with the
 * runtime's pool (one spinlock per batch), which keeps a spawner on one
 * worker fed by slots freed on another.
 *
 * Readers of the registry (shutdown cancellation, the debug report) walk the
 * slabs without stopping anyone: a slot may be freed and reused under them;
 * they touch only its atomics, and a wake that lands on a reused slot is a
 * spurious wake-up, which every waiter tolerates.
 *
 * Operations and the threads they run on:
 *   task_alloc        any thread (a worker's cache, else the pool)
 *   task_dealloc      any thread (the caller's cache when it is a worker)
 *   reg_cancel_all, reg_live   any thread, concurrently with the above
 *   reg_free_all      weft_run only, after the workers stopped
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define WEFT__TASK_BATCH 32

/* Under rt->task_lock. */
static int new_slab(weft__runtime *rt)
{
    struct weft__task_slab *s = aligned_alloc(64, sizeof *s);
    if (!s)
        return -1;
    memset(s, 0, sizeof *s);
    for (int i = 0; i < WEFT__SLAB_TASKS; i++) {
        atomic_init(&s->t[i].state, WEFT__TASK_FREE);
        s->t[i].next = rt->task_free;
        rt->task_free = &s->t[i];
        rt->task_free_n++;
    }
    s->next = atomic_load_explicit(&rt->slabs, memory_order_relaxed);
    /* release: pairs with the acquire in the walkers. */
    atomic_store_explicit(&rt->slabs, s, memory_order_release);
    return 0;
}

/* Any thread (w: the calling worker, or NULL).  A slot in state FREE, or
 * NULL when out of memory. */
weft_task *weft__task_alloc(weft__runtime *rt, weft__worker *w)
{
    if (w && w->rt == rt) {
        weft_task *t = w->tasks.free;
        if (WEFT__LIKELY(t)) {
            w->tasks.free = t->next;
            w->tasks.n--;
            return t;
        }
    } else {
        w = NULL;
    }
    weft__spin_lock(&rt->task_lock);
    if (!rt->task_free && new_slab(rt) < 0) {
        weft__spin_unlock(&rt->task_lock);
        return NULL;
    }
    weft_task *t = rt->task_free;
    rt->task_free = t->next;
    rt->task_free_n--;
    /* Refill the worker's cache with a batch. */
    for (int i = 0; w && i < WEFT__TASK_BATCH && rt->task_free; i++) {
        weft_task *x = rt->task_free;
        rt->task_free = x->next;
        rt->task_free_n--;
        x->next = w->tasks.free;
        w->tasks.free = x;
        w->tasks.n++;
    }
    weft__spin_unlock(&rt->task_lock);
    return t;
}

/* Any thread.  Returns a slot whose last reference was dropped. */
/* The fields of a slot that weft__task_new resets with plain stores and
 * registry walkers never read: [result, id) and [tsan_fiber, end_) (fn and
 * arg are the caller's, any bytes, and stored on every spawn).  In checked
 * builds a freed slot's are filled with POISON, and a reset that leaves an
 * aligned 8-byte word of POISON behind names a field it forgot (a field
 * added to the task and not to weft__task_new; a forgotten field smaller
 * than a word, sharing its word with reset ones, goes unseen). */
#define POISON 0xa5a5a5a5a5a5a5a5ull
static const struct {
    size_t lo, hi;
} poison_ranges[] = {
    {offsetof(weft_task, result), offsetof(weft_task, id)},
    {offsetof(weft_task, tsan_fiber), offsetof(weft_task, end_)},
};

void weft__task_poison(weft_task *t)
{
    for (size_t r = 0; r < sizeof poison_ranges / sizeof poison_ranges[0]; r++)
        memset((char *)t + poison_ranges[r].lo, 0xa5, poison_ranges[r].hi - poison_ranges[r].lo);
}

void weft__task_check_reset(const weft_task *t)
{
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

void weft__task_dealloc(weft_task *t)
{
    weft__runtime *rt = t->rt;
    if (WEFT__UNLIKELY(t->locals)) {
        free(t->locals);
        t->locals = NULL;
    }
    /* seq odd around the change: walkers never report a torn slot. */
    uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
    atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    /* release: a walker that reads FREE sees nothing of the old task. */
    atomic_store_explicit(&t->state, WEFT__TASK_FREE, memory_order_release);
    if (WEFT_CHECKS)
        weft__task_poison(t);
    atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
    weft__worker *w = weft__cur_worker();
    if (w && w->rt == rt) {
        t->next = w->tasks.free;
        w->tasks.free = t;
        if (++w->tasks.n <= 2 * WEFT__TASK_BATCH)
            return;
        /* Give a batch back to the pool for other workers' spawns. */
        weft_task *head = NULL, *tail = NULL;
        for (int i = 0; i < WEFT__TASK_BATCH; i++) {
            weft_task *x = w->tasks.free;
            w->tasks.free = x->next;
            w->tasks.n--;
            x->next = head;
            head = x;
            if (!tail)
                tail = x;
        }
        weft__spin_lock(&rt->task_lock);
        tail->next = rt->task_free;
        rt->task_free = head;
        rt->task_free_n += WEFT__TASK_BATCH;
        weft__spin_unlock(&rt->task_lock);
        return;
    }
    weft__spin_lock(&rt->task_lock);
    t->next = rt->task_free;
    rt->task_free = t;
    rt->task_free_n++;
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
        x->next = rt->task_free;
        rt->task_free = x;
        rt->task_free_n++;
    }
    w->tasks.n = 0;
    weft__spin_unlock(&rt->task_lock);
}

static bool unfinished(int st)
{
    return st != WEFT__TASK_FREE && st != WEFT_TASK_DONE;
}

/* Any thread (weft_run at shutdown): cancels and wakes every unfinished task
 * (blocking tasks still in line are dropped by weft__pool_drop_all). */
void weft__reg_cancel_all(weft__runtime *rt)
{
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire); s;
         s = s->next) {
        for (int i = 0; i < WEFT__SLAB_TASKS; i++) {
            weft_task *t = &s->t[i];
            if (!unfinished(atomic_load_explicit(&t->state, memory_order_acquire)))
                continue;
            /* seq_cst: as in weft_cancel (pairs with park_commit). */
            atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
            weft__wake(t);
        }
    }
}

/* Any thread.  Unfinished tasks right now (approximate while they change). */
size_t weft__reg_live(weft__runtime *rt)
{
    size_t n = 0;
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire); s;
         s = s->next)
        for (int i = 0; i < WEFT__SLAB_TASKS; i++)
            n += unfinished(atomic_load_explicit(&s->t[i].state, memory_order_acquire));
    return n;
}

/* weft_run, after the workers stopped: reports (debug mode) the tasks whose
 * handles were never released, and frees every slab. */
void weft__reg_free_all(weft__runtime *rt)
{
    struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire);
    while (s) {
        for (int i = 0; i < WEFT__SLAB_TASKS; i++) {
            weft_task *t = &s->t[i];
            if (atomic_load_explicit(&t->state, memory_order_relaxed) == WEFT__TASK_FREE)
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
        struct weft__task_slab *n = s->next;
        free(s);
        s = n;
    }
    atomic_store_explicit(&rt->slabs, NULL, memory_order_relaxed);
    rt->task_free = NULL;
    rt->task_free_n = 0;
}
