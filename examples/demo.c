/*
 * demo: the weft runtime at work, in a few seconds.
 *
 *   1. a few thousand tasks spread over the workers (work stealing)
 *   2. 1000 coroutines sleeping 200 ms at once, finishing in ~200 ms wall
 *   3. a cancellation: a 10 s sleep cut short
 *   4. weft_wait_for: a join with a deadline
 *   5. task names
 *
 * Build: cmake -S . -B build && cmake --build build; run build/examples/demo.
 * WEFT_WORKERS=N changes the number of workers (default: one per CPU).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

static double ms_since(int64_t start)
{
    return (double)(weft_now() - start) / (double)WEFT_MS;
}

/* ------------------------------------------------------------------ */
/* 1. Tasks spread over the workers                                    */
/* ------------------------------------------------------------------ */

#define SPREAD_TASKS 4000

static atomic_long *ran_on;     /* per worker: tasks that finished there */
static atomic_long migrated;    /* tasks that resumed on another worker after a yield */

static void *spread_task(void *arg)
{
    /* A little work (~20 us), so that idle workers have something to steal. */
    volatile unsigned long x = (unsigned long)(uintptr_t)arg;
    for (int i = 0; i < 5000; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    int before = weft_worker_id();
    weft_yield();               /* a suspension point: we may resume elsewhere */
    int after = weft_worker_id();
    if (after != before)
        atomic_fetch_add(&migrated, 1);
    atomic_fetch_add(&ran_on[after], 1);
    return NULL;
}

static void demo_spread(void)
{
    unsigned n = weft_workers();
    printf("1. %d tasks on %u worker%s\n", SPREAD_TASKS, n, n == 1 ? "" : "s");
    ran_on = calloc(n, sizeof *ran_on);
    weft_task **ts = malloc(sizeof *ts * SPREAD_TASKS);
    if (!ran_on || !ts) {
        perror("demo");
        exit(1);
    }
    int64_t start = weft_now();
    for (int i = 0; i < SPREAD_TASKS; i++) {
        ts[i] = weft_spawn(spread_task, (void *)(uintptr_t)i);
        if (!ts[i]) {
            perror("weft_spawn");
            exit(1);
        }
    }
    int rc = weft_gather(ts, SPREAD_TASKS, NULL);
    double wall = ms_since(start);
    for (unsigned i = 0; i < n; i++)
        printf("   worker %u ran %5ld tasks\n", i, atomic_load(&ran_on[i]));
    printf("   %ld resumed on another worker after a yield; gather returned %d; %.1f ms\n",
           atomic_load(&migrated), rc, wall);
    free(ts);
    free(ran_on);
}

/* ------------------------------------------------------------------ */
/* 2. 1000 concurrent sleepers                                         */
/* ------------------------------------------------------------------ */

#define SLEEPERS 1000

static void *sleeper(void *arg)
{
    return (void *)(intptr_t)weft_sleep(200 * WEFT_MS);
}

static void demo_sleepers(void)
{
    static weft_task *ts[SLEEPERS];
    static void *res[SLEEPERS];
    printf("2. %d coroutines each sleep 200 ms, all at once\n", SLEEPERS);
    int64_t start = weft_now();
    for (int i = 0; i < SLEEPERS; i++)
        ts[i] = weft_spawn(sleeper, NULL);
    int rc = weft_gather(ts, SLEEPERS, res);
    double wall = ms_since(start);
    int ok = 0;
    for (int i = 0; i < SLEEPERS; i++)
        ok += res[i] == NULL;
    printf("   %d of %d slept 200 ms; wall time %.1f ms (not %d s); gather returned %d\n", ok,
           SLEEPERS, wall, SLEEPERS / 5, rc);
}

/* ------------------------------------------------------------------ */
/* 3. Cancellation                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    int rc;          /* what weft_sleep returned */
    int64_t woke;    /* when it returned */
} sleep_report;

static void *long_sleeper(void *arg)
{
    sleep_report *r = arg;
    r->rc = weft_sleep(10 * WEFT_SEC);
    r->woke = weft_now();
    return r;
}

static void demo_cancel(void)
{
    printf("3. a task sleeps 10 s; it is cancelled after 50 ms\n");
    sleep_report r = {0, 0};
    int64_t start = weft_now();
    weft_task *t = weft_spawn(long_sleeper, &r);
    weft_sleep(50 * WEFT_MS);
    int64_t cancelled_at = weft_now();
    int crc = weft_cancel(t);
    int jrc = weft_join(t, NULL);
    printf("   weft_cancel returned %d; the sleep returned %s %.3f ms after the cancel "
           "(%.1f ms after the spawn)\n",
           crc, r.rc == -ECANCELED ? "-ECANCELED" : strerror(-r.rc),
           (double)(r.woke - cancelled_at) / (double)WEFT_MS,
           (double)(r.woke - start) / (double)WEFT_MS);
    printf("   weft_join returned %s\n", jrc == -ECANCELED ? "-ECANCELED" : strerror(-jrc));
}

/* ------------------------------------------------------------------ */
/* 4. wait_for                                                         */
/* ------------------------------------------------------------------ */

static void *slow_answer(void *arg)
{
    if (weft_sleep(1 * WEFT_SEC) == -ECANCELED)
        return "cancelled";
    return "done";
}

static void demo_wait_for(void)
{
    printf("4. weft_wait_for: a 1 s task with a 100 ms deadline\n");
    int64_t start = weft_now();
    weft_task *t = weft_spawn(slow_answer, NULL);
    void *res = NULL;
    int rc = weft_wait_for(t, weft_now() + 100 * WEFT_MS, &res);
    printf("   returned %s after %.1f ms; the task saw \"%s\" (it was cancelled and awaited)\n",
           rc == -ETIMEDOUT ? "-ETIMEDOUT" : strerror(-rc), ms_since(start),
           res ? (const char *)res : "?");
}

/* ------------------------------------------------------------------ */
/* 5. Names                                                            */
/* ------------------------------------------------------------------ */

static void *named(void *arg)
{
    weft_sleep(WEFT_MS);
    printf("   task '%s' (id %llu) ran on worker %d\n", weft_task_name(weft_self()),
           (unsigned long long)weft_task_id(weft_self()), weft_worker_id());
    return NULL;
}

static void demo_names(void)
{
    printf("5. task names (the first task is '%s')\n", weft_task_name(weft_self()));
    const char *names[] = {"fetcher", "parser", "writer"};
    weft_task *ts[3];
    for (int i = 0; i < 3; i++)
        ts[i] = weft_spawn_named(names[i], named, NULL);
    weft_gather(ts, 3, NULL);
}

static void *demo_main(void *arg)
{
    demo_spread();
    demo_sleepers();
    demo_cancel();
    demo_wait_for();
    demo_names();
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t start = weft_now();
    int rc = weft_run(demo_main, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "demo: weft_run: %s\n", strerror(-rc));
        return 1;
    }
    printf("done in %.0f ms\n", ms_since(start));
    return 0;
}
