/*
 * timer-micro: the per-worker timers (runtime/timer.c) alone, at a million
 * timers: ns per timer for insert + expire and for insert + cancel.
 *
 *   timer-micro [N] [REPS]      (default 1000000 timers, 3 repetitions)
 *
 *  - expire: N timers due at random moments within 1 s of a base time are
 *    inserted, then the wheel is run every 100 us of (simulated) time until
 *    all fired: the sleepers pattern;
 *  - cancel: N timers due at random moments 10 s +- 1 s ahead are
 *    inserted, then deleted in a random order: the timeouts pattern (a
 *    deadline that almost never fires).
 *
 * One thread, no scheduler: hand-made worker and tasks (as tests/parts
 * does), the tasks RUNNING so that a firing's wake is the token's load
 * only.  Only the internal interface (weft__timer_add, weft__timer_del,
 * weft__timers_run) is used, so the same file builds against an older
 * timer.c to compare.  Not run by ctest; figures are indicative.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "../stress/rng.h"

static void *zalloc(size_t size)
{
    size = (size + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE;
    void *p = aligned_alloc(WEFT__CACHELINE, size);
    if (!p) {
        perror("aligned_alloc");
        exit(1);
    }
    memset(p, 0, size);
    return p;
}

static double ns_since(int64_t t0) { return (double)(weft_now() - t0); }

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    if (n <= 0 || reps <= 0) {
        fprintf(stderr, "usage: timer-micro [N] [REPS]\n");
        return 2;
    }
    weft__runtime *rt = zalloc(sizeof *rt);
    weft__worker *w = zalloc(sizeof *w);
    w->rt = rt;
    w->wake_rt = rt;
    rt->nworkers = 1;
    rt->workers = &w;
    weft_task *tasks = zalloc((size_t)n * sizeof *tasks);
    int64_t *when = malloc((size_t)n * sizeof *when);
    long *perm = malloc((size_t)n * sizeof *perm);
    if (!when || !perm)
        return 1;
    for (long i = 0; i < n; i++) {
        tasks[i].rt = rt;  /* zeroed: park RUNNING */
        perm[i] = i;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)rng_below(&seed, (uint64_t)i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    printf("timer-micro: %ld timers, %zu-byte tasks\n", n, sizeof *tasks);
    for (int rep = 0; rep < reps; rep++) {
        if (weft__timers_init(&w->timers) < 0)
            return 1;
        /* expire */
        int64_t base = weft_now();
        for (long i = 0; i < n; i++)
            when[i] = base + (int64_t)rng_below(&seed, WEFT_SEC);
        int64_t t0 = weft_now();
        for (long i = 0; i < n; i++)
            weft__timer_add(w, &tasks[i].timer, when[i]);
        double ins = ns_since(t0);
        t0 = weft_now();
        long fired = 0;
        for (int64_t now = base; fired < n; now += 100 * WEFT_US)
            fired += weft__timers_run(w, w, now);
        double exp = ns_since(t0);
        for (long i = 0; i < n; i++)
            weft__timer_del(&tasks[i].timer);  /* fired: the fast path */
        /* cancel */
        base = weft_now();
        for (long i = 0; i < n; i++)
            when[i] = base + 9 * WEFT_SEC + (int64_t)rng_below(&seed, 2 * WEFT_SEC);
        t0 = weft_now();
        for (long i = 0; i < n; i++)
            weft__timer_add(w, &tasks[i].timer, when[i]);
        double ins2 = ns_since(t0);
        t0 = weft_now();
        for (long i = 0; i < n; i++)
            weft__timer_del(&tasks[perm[i]].timer);
        double del = ns_since(t0);
        if (weft__timers_next(&w->timers) != INT64_MAX) {
            fprintf(stderr, "timers left after the cancels\n");
            return 1;
        }
        weft__timers_free(&w->timers);
        printf("insert %.1f + expire %.1f = %.1f ns/timer;  insert %.1f + cancel %.1f = %.1f "
               "ns/timer\n",
               ins / n, exp / n, (ins + exp) / n, ins2 / n, del / n, (ins2 + del) / n);
    }
    free(when);
    free(perm);
    free(tasks);
    free(w);
    free(rt);
    return 0;
}
