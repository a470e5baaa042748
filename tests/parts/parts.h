/*
 * Scaffolding of the tests of the runtime's parts alone (tests/parts): a
 * runtime, workers and tasks made by hand, with no threads, stacks, poller
 * or sysmon behind them, so that a test drives one structure (the run queue,
 * the timer wheel) directly and sees every field it touches.
 *
 * What the fakes satisfy, and why that is enough:
 *  - runtime: zeroed, nworkers, active (= nworkers) and workers[] set, locks ranked as
 *    runtime.c ranks them, no poller.  n_idle is 0, so
 *    weft__notify (called by weft__inject_push and weft__ready_on) returns
 *    at once: no worker to wake, hence no poller or eventfd needed.  The
 *    injection queue (inject_lock, its descriptors, inject_len) starts
 *    empty as in a fresh runtime; p_inject_tasks lists it.
 *  - workers: zeroed, rt and wake_rt set, id.  The ring (q) starts at
 *    head == tail == 0, runnext NULL; polling false.  A thread that acts
 *    as a worker's owner makes it its current worker first
 *    (weft__set_cur_worker), as the worker threads do: checked builds
 *    assert it.
 *  - tasks: zeroed (park == WEFT__PARK_RUNNING), rt set.  The run queue only
 *    stores their pointers and links them through next when it spills; the
 *    timer wheel only uses the embedded timer and, when firing, the wake
 *    token (park) and rt.
 * Everything is allocated with 64-byte alignment (the structures carry
 * WEFT__ALIGNED members) and freed by parts_free_all(), so that
 * LeakSanitizer (ASan build) would report a part that kept a pointer.
 *
 * Include after <cmocka.h> (and its prerequisites).  These tests link the
 * static library, which keeps the internal weft__ names reachable.
 */
#ifndef WEFT_TEST_PARTS_H
#define WEFT_TEST_PARTS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "os.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define P_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define P_SANITIZED 1
#endif
#endif
#ifndef P_SANITIZED
#define P_SANITIZED 0
#endif

/* Release value, or a smaller one under a sanitizer (same work, fewer
 * repetitions: a sanitizer finds a race in the first thousands). */
#define P_SCALE(release, sanitized) (P_SANITIZED ? (sanitized) : (release))

/* Zeroed, 64-byte aligned (aligned_alloc wants a multiple of it). */
static inline void *p_zalloc(size_t size)
{
    size = (size + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE;
    void *p = aligned_alloc(WEFT__CACHELINE, size);
    assert_non_null(p);
    memset(p, 0, size);
    return p;
}

typedef struct p_world {
    weft__runtime *rt;
    weft__worker **w;      /* rt->workers */
    unsigned nworkers;
    weft_task *tasks;      /* ntasks zeroed tasks of rt */
    size_t ntasks;
} p_world;

/* A runtime with nworkers hand-made workers and ntasks tasks. */
static inline p_world *p_world_new(unsigned nworkers, size_t ntasks)
{
    p_world *pw = calloc(1, sizeof *pw);
    assert_non_null(pw);
    pw->rt = p_zalloc(sizeof *pw->rt);
    pw->nworkers = nworkers;
    pw->w = calloc(nworkers, sizeof *pw->w);
    assert_non_null(pw->w);
    /* The owner's take of runnext as the runtime makes it here (runq.c,
     * "Taking runnext"). */
    bool plain = weft__os_membarrier_usable();
    for (unsigned i = 0; i < nworkers; i++) {
        weft__worker *w = p_zalloc(sizeof *w);
        w->rt = pw->rt;
        w->wake_rt = pw->rt;  /* untraced: a wake-up on w queues on w */
        w->id = (int)i;
        w->cpu = -1;
        w->runnext_plain = plain;
        pw->w[i] = w;
    }
    pw->rt->nworkers = nworkers;
    atomic_init(&pw->rt->active, nworkers);  /* every worker active (runtime/active.c) */
    pw->rt->workers = pw->w;
    /* Ranked as runtime.c does, so that a checked build (WEFT_CHECKS: the
     * sanitizer builds) checks the lock order of what the tests drive:
     * a timer firing (after its wheel lock) into the injection queue. */
    weft__spin_init(&pw->rt->inject_lock, WEFT__RANK_INJECT);
    weft__spin_init(&pw->rt->idle_lock, WEFT__RANK_IDLE);
    weft__spin_init(&pw->rt->task_lock, WEFT__RANK_LEAF);
    weft__spin_init(&pw->rt->stack_lock, WEFT__RANK_LEAF);
    pw->ntasks = ntasks;
    if (ntasks) {
        pw->tasks = p_zalloc(ntasks * sizeof *pw->tasks);
        for (size_t i = 0; i < ntasks; i++) {
            pw->tasks[i].rt = pw->rt;
            pw->tasks[i].timer.state = WEFT__TIMER_IDLE;
            atomic_store_explicit(&pw->tasks[i].last_worker, -1, memory_order_relaxed);
        }
    }
    return pw;
}

static inline void p_world_free(p_world *pw)
{
    weft__set_cur_worker(NULL);  /* the thread plays no worker any more */
    for (unsigned i = 0; i < pw->nworkers; i++)
        free(pw->w[i]);
    free(pw->w);
    free(pw->rt);
    free(pw->tasks);
    free(pw);
}

/* The index of t in the world's task array (asserts that it is one). */
static inline size_t p_idx(const p_world *pw, const weft_task *t)
{
    assert_non_null(t);
    assert_true(t >= pw->tasks && t < pw->tasks + pw->ntasks);
    return (size_t)(t - pw->tasks);
}

/* Single-threaded only.  The tasks of the injection queue, front first,
 * into out[0..cap-1] (cap at least what it holds); returns how many.
 * Checks the descriptors (runtime/inject.c): each run of n tasks ends at
 * its tail, whose next is NULL; no descriptor is empty; inject_len is
 * their sum. */
static inline size_t p_inject_tasks(p_world *pw, weft_task **out, size_t cap)
{
    weft__runtime *rt = pw->rt;
    size_t k = 0;
    assert_true(rt->inject_nseg <= WEFT__INJECT_SEGS);
    for (uint32_t i = 0; i < rt->inject_nseg; i++) {
        const weft__inject_seg *s = &rt->inject_seg[(rt->inject_first + i) % WEFT__INJECT_SEGS];
        assert_true(s->n >= 1);
        weft_task *t = s->head;
        for (size_t j = 0; j < s->n; j++) {
            assert_non_null(t);
            assert_true(k < cap);
            out[k++] = t;
            if (j + 1 == s->n)
                assert_ptr_equal(t, s->tail);
            t = t->next;
        }
        assert_null(t);
    }
    assert_int_equal(atomic_load(&rt->inject_len), k);
    return k;
}

/* Single-threaded only.  Empties the injection queue without taking its
 * tasks (they are the test's to reuse). */
static inline void p_inject_clear(p_world *pw)
{
    pw->rt->inject_first = pw->rt->inject_nseg = 0;
    atomic_store(&pw->rt->inject_len, 0);
}

/* xorshift64* (stress/rng.h): deterministic per seed, so a failure can be
 * replayed (the seed is printed by the tests that use it). */
#include "../../stress/rng.h"

/* WEFT_TEST_SEED=N replays a run; else a fresh seed, printed. */
static inline uint64_t p_seed(const char *what)
{
    const char *env = getenv("WEFT_TEST_SEED");
    uint64_t s;
    if (env && *env) {
        s = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec;
    }
    if (!s)
        s = 1;
    fprintf(stderr, "%s: seed %llu (WEFT_TEST_SEED to replay)\n", what, (unsigned long long)s);
    return s;
}

#endif
