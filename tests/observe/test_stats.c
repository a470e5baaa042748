/*
 * test_stats: weft_stats_get.
 *
 *  - -EINVAL for NULL (inside and outside a runtime), -EPERM outside a
 *    runtime (before, after, from a plain thread);
 *  - workers, uptime_ns, busy_ns <= uptime, runtime sums = sums of the
 *    per-worker figures;
 *  - tasks_spawned counts spawns from coroutines and plain threads exactly;
 *    tasks_run at least one run per task; tasks_alive follows the tasks;
 *  - queue_depth, timers and inject_queue on one busy worker;
 *  - steals and steal_attempts with 2 workers and a spawn storm; parks,
 *    wakeups, polls; injected counts plain-thread spawns;
 *  - blocking_threads and blocking_queued with WEFT_BLOCKING_THREADS=1 and
 *    two blocking calls;
 *  - from a coroutine and from a plain thread.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "obs_test.h"

static weft_stats S0, S1;   /* big: not on a coroutine's stack */

static void check_sums(const weft_stats *s)
{
    uint64_t sp = 0, st = 0, sa = 0, pk = 0, wk = 0, pl = 0, in = 0;
    T_CHECK_EQ(s->workers, weft_workers() ? weft_workers() : s->workers);
    T_CHECK(s->uptime_ns > 0);
    for (unsigned i = 0; i < s->workers; i++) {
        const weft_worker_stats *w = &s->worker[i];
        sp += w->tasks_spawned;
        st += w->steals;
        sa += w->steal_attempts;
        pk += w->parks;
        wk += w->wakeups;
        pl += w->polls;
        in += w->injected;
        T_CHECK(w->busy_ns <= s->uptime_ns);
        T_CHECK(w->polls >= w->parks);          /* every park polls */
        T_CHECK(w->steal_attempts >= (w->steals ? 1 : 0));
    }
    for (unsigned i = s->workers; i < WEFT_STATS_MAX_WORKERS; i++)
        T_CHECK_EQ(s->worker[i].tasks_run, 0);
    /* tasks_spawned also counts plain-thread spawns (and main). */
    T_CHECK(s->tasks_spawned >= sp);
    T_CHECK_EQ(s->steals, st);
    T_CHECK_EQ(s->steal_attempts, sa);
    T_CHECK_EQ(s->parks, pk);
    T_CHECK_EQ(s->wakeups, wk);
    T_CHECK_EQ(s->polls, pl);
    T_CHECK_EQ(s->injected, in);
}

static uint64_t sum_runs(const weft_stats *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->workers; i++)
        n += s->worker[i].tasks_run;
    return n;
}

static void *nothing(void *arg)
{
    return arg;
}

static weft_event gate;

static void *wait_gate(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_event_wait(&gate, WEFT_FOREVER);
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

static void *stats_thread(void *arg)
{
    return (void *)(intptr_t)weft_stats_get(arg);
}

static void *errors_main(void *arg)
{
    (void)arg;
    T_CHECK_EQ(weft_stats_get(NULL), -EINVAL);
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ((intptr_t)t_in_thread(stats_thread, &S1), 0);
    T_CHECK_EQ((intptr_t)t_in_thread(stats_thread, NULL), -EINVAL);
    check_sums(&S0);
    check_sums(&S1);
    T_CHECK_EQ(S0.workers, weft_workers());
    T_CHECK(S1.uptime_ns >= S0.uptime_ns);
    return NULL;
}

static void test_stats_errors(void **state)
{
    OBS_BEGIN(20);
    weft_stats s;
    assert_int_equal(weft_stats_get(NULL), -EINVAL);
    assert_int_equal(weft_stats_get(&s), -EPERM);
    assert_int_equal(t_run_workers(3, errors_main, NULL, NULL), 0);
    assert_int_equal(weft_stats_get(&s), -EPERM);
    pthread_t th;
    void *r;
    assert_int_equal(pthread_create(&th, NULL, stats_thread, &s), 0);
    pthread_join(th, &r);
    assert_int_equal((intptr_t)r, -EPERM);
}

/* ------------------------------------------------------------------ */
/* Spawns, runs, tasks alive                                           */
/* ------------------------------------------------------------------ */

#define CO_SPAWNS 1000
#define TH_SPAWNS 100

static weft_task *th_handles[TH_SPAWNS];

static void *spawn_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < TH_SPAWNS; i++)
        th_handles[i] = weft_spawn_named("from-thread", nothing, NULL);
    return NULL;
}

static void *counts_main(void *arg)
{
    (void)arg;
    static weft_task *h[CO_SPAWNS];
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ(S0.tasks_alive, 1);          /* main */
    T_CHECK(S0.tasks_spawned >= 1);         /* main itself */
    for (int i = 0; i < CO_SPAWNS; i++)
        h[i] = weft_spawn(nothing, NULL);
    t_in_thread(spawn_thread, NULL);
    T_CHECK_EQ(weft_gather(h, CO_SPAWNS, NULL), 0);
    T_CHECK_EQ(weft_gather(th_handles, TH_SPAWNS, NULL), 0);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    check_sums(&S1);
    T_CHECK_EQ(S1.tasks_spawned - S0.tasks_spawned, CO_SPAWNS + TH_SPAWNS);
    T_CHECK(sum_runs(&S1) - sum_runs(&S0) >= CO_SPAWNS + TH_SPAWNS);
    /* Plain-thread spawns go through the injection queue. */
    T_CHECK(S1.injected - S0.injected >= TH_SPAWNS);
    T_CHECK_EQ(S1.tasks_alive, 1);
    T_CHECK_EQ(S1.inject_queue, 0);

    /* tasks_alive follows waiting tasks. */
    weft_event_init(&gate);
    weft_task *w[50];
    for (int i = 0; i < 50; i++)
        w[i] = weft_spawn_named("alive", wait_gate, NULL);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.tasks_alive, 51);
    weft_sleep(5 * WEFT_MS);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.tasks_alive, 51);
    weft_event_set(&gate);
    T_CHECK_EQ(weft_gather(w, 50, NULL), 0);
    weft_event_destroy(&gate);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.tasks_alive, 1);
    return NULL;
}

static void test_stats_counts(void **state)
{
    OBS_BEGIN(30);
    assert_int_equal(t_run_workers(2, counts_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* queue_depth, timers, inject_queue: one busy worker                  */
/* ------------------------------------------------------------------ */

static void *sleeper(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_sleep(10 * WEFT_SEC);
}

static weft_task *inj[5];

static void *inject_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        inj[i] = weft_spawn(nothing, NULL);
    /* The only worker runs main, which does not suspend: they wait. */
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.inject_queue, 5);
    T_CHECK_EQ(S1.tasks_alive, 20);   /* main, 4 sleepers, 10 queued, 5 injected */
    return NULL;
}

static void *depth_main(void *arg)
{
    (void)arg;
    weft_task *s[4], *q[10];
    for (int i = 0; i < 4; i++)
        s[i] = weft_spawn(sleeper, NULL);
    weft_sleep(2 * WEFT_MS);                 /* they run and wait */
    for (int i = 0; i < 10; i++)
        q[i] = weft_spawn(nothing, NULL);
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ(S0.workers, 1);
    T_CHECK_EQ(S0.worker[0].queue_depth, 10);
    T_CHECK_EQ(S0.worker[0].timers, 4);
    T_CHECK_EQ(S0.inject_queue, 0);
    T_CHECK_EQ(S0.tasks_alive, 15);
    /* A plain thread spawns while main keeps the worker (no suspension). */
    t_thread th;
    t_thread_start(&th, inject_thread, NULL);
    while (!atomic_load(&th.done))
        ;
    pthread_join(th.th, NULL);
    T_CHECK_EQ(weft_gather(q, 10, NULL), 0);
    T_CHECK_EQ(weft_gather(inj, 5, NULL), 0);
    for (int i = 0; i < 4; i++)
        weft_cancel(s[i]);
    T_CHECK_EQ(weft_gather(s, 4, NULL), -ECANCELED);
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ(S0.worker[0].queue_depth, 0);
    T_CHECK_EQ(S0.worker[0].timers, 0);
    T_CHECK_EQ(S0.inject_queue, 0);
    T_CHECK_EQ(S0.tasks_alive, 1);
    return NULL;
}

static void test_stats_depths(void **state)
{
    OBS_BEGIN(20);
    assert_int_equal(t_run_workers(1, depth_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* steals, parks, wakeups, busy time: 2 workers and a spawn storm      */
/* ------------------------------------------------------------------ */

static void *work(void *arg)
{
    (void)arg;
    volatile unsigned x = 0;
    for (int i = 0; i < 2000; i++)
        x += (unsigned)i;
    weft_yield();
    return NULL;
}

#define STORM 2000

static void *storm_main(void *arg)
{
    (void)arg;
    static weft_task *h[STORM];
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    int rounds = 0;
    for (; rounds < 200; rounds++) {
        /* Let the other worker park, then a burst it must steal from. */
        weft_sleep(3 * WEFT_MS);
        for (int i = 0; i < STORM; i++)
            h[i] = weft_spawn(work, NULL);
        T_CHECK_EQ(weft_gather(h, STORM, NULL), 0);
        T_CHECK_EQ(weft_stats_get(&S1), 0);
        if (S1.steals > S0.steals && S1.wakeups > S0.wakeups && S1.parks > S0.parks &&
            rounds >= 3)
            break;
    }
    check_sums(&S1);
    T_CHECK(S1.steals > S0.steals);
    T_CHECK(S1.steal_attempts > S0.steal_attempts);
    T_CHECK(S1.parks > S0.parks);
    T_CHECK(S1.wakeups > S0.wakeups);
    T_CHECK(S1.polls > S0.polls);
    T_CHECK(S1.tasks_spawned - S0.tasks_spawned == (uint64_t)(rounds + (rounds < 200)) * STORM);
    /* Both workers ran tasks, and spent time not parked. */
    T_CHECK(S1.worker[0].tasks_run > 0 && S1.worker[1].tasks_run > 0);
    T_CHECK(S1.worker[0].busy_ns > 0 && S1.worker[1].busy_ns > 0);
    /* Idle now: both park; busy time stops growing much. */
    weft_sleep(200 * WEFT_MS);
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    weft_sleep(200 * WEFT_MS);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    int64_t up = (int64_t)(S1.uptime_ns - S0.uptime_ns);
    int64_t busy = 0;
    bool backwards = false;
    for (int i = 0; i < 2; i++) {
        int64_t d = (int64_t)(S1.worker[i].busy_ns - S0.worker[i].busy_ns);
        if (d < 0) {
            backwards = true;
            fprintf(stderr, "worker %d: busy_ns went backwards: %llu -> %llu\n", i,
                    (unsigned long long)S0.worker[i].busy_ns,
                    (unsigned long long)S1.worker[i].busy_ns);
        }
        /* Never more busy time than wall time. */
        T_CHECK(d <= up);
        busy += d;
    }
    /* busy_ns never goes backwards, and a worker's current park is not
     * busy time (once it was counted only when the park ended): two workers
     * parked for 200 ms add almost no busy time. */
    T_CHECK(!backwards);
    T_CHECK(busy < 100 * WEFT_MS);
    T_CHECK(S1.uptime_ns - S0.uptime_ns >= 190 * WEFT_MS);
    return NULL;
}

static void test_stats_steals_parks(void **state)
{
    OBS_BEGIN(60);
    assert_int_equal(t_run_workers(2, storm_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Blocking pool                                                       */
/* ------------------------------------------------------------------ */

static _Atomic int release_pool;
static _Atomic int in_pool;

static void *pool_fn(void *arg)
{
    atomic_fetch_add(&in_pool, 1);
    while (!atomic_load(&release_pool))
        t_nap_ms(1);
    return arg;
}

static void *blocking_main(void *arg)
{
    (void)arg;
    atomic_store(&release_pool, 0);
    atomic_store(&in_pool, 0);
    T_CHECK_EQ(weft_stats_get(&S0), 0);
    T_CHECK_EQ(S0.blocking_threads, 0);
    T_CHECK_EQ(S0.blocking_queued, 0);
    weft_task *a = weft_spawn_blocking(pool_fn, (void *)1);
    weft_task *b = weft_spawn_blocking(pool_fn, (void *)2);
    T_CHECK(a && b);
    while (atomic_load(&in_pool) < 1)
        weft_sleep(WEFT_MS);
    weft_sleep(10 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&in_pool), 1);    /* one thread: the other waits */
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.blocking_threads, 1);
    T_CHECK_EQ(S1.blocking_queued, 1);
    T_CHECK_EQ(S1.tasks_alive, 3);
    /* The same from a plain thread. */
    T_CHECK_EQ((intptr_t)t_in_thread(stats_thread, &S1), 0);
    T_CHECK_EQ(S1.blocking_threads, 1);
    T_CHECK_EQ(S1.blocking_queued, 1);
    atomic_store(&release_pool, 1);
    T_CHECK_EQ(weft_join(a, NULL), 0);
    T_CHECK_EQ(weft_join(b, NULL), 0);
    T_CHECK_EQ(weft_stats_get(&S1), 0);
    T_CHECK_EQ(S1.blocking_queued, 0);
    T_CHECK_EQ(S1.blocking_threads, 1);      /* idle, kept for 10 s */
    T_CHECK_EQ(S1.tasks_alive, 1);
    return NULL;
}

static void test_stats_blocking(void **state)
{
    OBS_BEGIN(30);
    setenv("WEFT_BLOCKING_THREADS", "1", 1);
    assert_int_equal(t_run_workers(2, blocking_main, NULL, NULL), 0);
}

int main(void)
{
    obs_init();
    t_warm_up();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_stats_errors),
        OBS_TEST(test_stats_counts),
        OBS_TEST(test_stats_depths),
        OBS_TEST(test_stats_steals_parks),
        OBS_TEST(test_stats_blocking),
    };
    return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
