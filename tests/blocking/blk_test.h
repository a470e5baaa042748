/*
 * Helpers shared by the cmocka tests of the blocking pool and task groups
 * (test_blocking.c, test_group.c), on top of tests/testutil.h:
 *
 *  - a per-test watchdog: a plain thread that, when a test has run for longer
 *    than it announced (BLK_BEGIN(seconds)), names the test on stderr and
 *    exits the program with status 1.  A deadlock in weft_run cannot be
 *    recovered from (the runtime is a process-wide singleton), so a hang is
 *    reported by name at once instead of as a CTest timeout minutes later;
 *  - gates and flags that plain threads (pool threads) wait on;
 *  - a concurrency meter (current / maximum of calls in flight);
 *  - a warm-up that also starts blocking-pool threads, so that glibc's
 *    cache of thread stacks and its malloc arenas are in place before the
 *    first leak check (see tests/leak.h).
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef WEFT_BLK_TEST_H
#define WEFT_BLK_TEST_H

#include <dirent.h>
#include <sys/syscall.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Watchdog                                                            */
/* ------------------------------------------------------------------ */

static pthread_mutex_t blk_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t blk_wd_cv = PTHREAD_COND_INITIALIZER;
static const char *blk_wd_test;      /* running test, NULL when none */
static int64_t blk_wd_deadline;
static int blk_wd_secs;
static bool blk_wd_started;

static void *blk_wd_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&blk_wd_mu);
    for (;;) {
        if (blk_wd_test && weft_now() > blk_wd_deadline) {
            fprintf(stderr,
                    "WATCHDOG: %s has not finished after %d s: it hangs (deadlock or lost "
                    "wake-up); exiting\n",
                    blk_wd_test, blk_wd_secs);
            fflush(stderr);
            _exit(1);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&blk_wd_cv, &blk_wd_mu, &ts);
    }
    return NULL;
}

/* Main thread, at the start of a test: allow it `secs` seconds (times
 * T_SLACK under a sanitizer). */
static inline void blk_wd_arm(const char *test, int secs)
{
    pthread_mutex_lock(&blk_wd_mu);
    if (!blk_wd_started) {
        pthread_t th;
        if (pthread_create(&th, NULL, blk_wd_main, NULL) == 0) {
            pthread_detach(th);
            blk_wd_started = true;
        }
    }
    blk_wd_secs = secs * T_SLACK;
    blk_wd_deadline = weft_now() + (int64_t)blk_wd_secs * WEFT_SEC;
    blk_wd_test = test;
    pthread_mutex_unlock(&blk_wd_mu);
}

static inline void blk_wd_disarm(void)
{
    pthread_mutex_lock(&blk_wd_mu);
    blk_wd_test = NULL;
    pthread_mutex_unlock(&blk_wd_mu);
}

#define BLK_BEGIN(secs) blk_wd_arm(__func__, (secs))

static inline int blk_setup(void **state)
{
    return t_setup(state);
}

static inline int blk_teardown(void **state)
{
    blk_wd_disarm();
    return t_teardown(state);
}

#define BLK_TEST(f) cmocka_unit_test_setup_teardown(f, blk_setup, blk_teardown)

/* BLK_TEST_FILTER=pattern (cmocka's '*' and '?') runs only the matching
 * tests, BLK_TEST_SKIP=pattern skips the matching ones. */
static inline void blk_filter_from_env(void)
{
    const char *f = getenv("BLK_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
    f = getenv("BLK_TEST_SKIP");
    if (f && *f)
        cmocka_set_skip_filter(f);
}

/* ------------------------------------------------------------------ */
/* Gates, meters                                                       */
/* ------------------------------------------------------------------ */

/* Waits (any thread, without weft calls) until *flag is nonzero. */
static inline void blk_os_wait_flag(_Atomic int *flag)
{
    while (!atomic_load(flag))
        t_nap_ms(1);
}

/* Coroutine: waits (napping in weft_sleep) until *flag is nonzero, at most
 * `ms` milliseconds; returns whether it became nonzero. */
static inline bool blk_co_wait_flag(_Atomic int *flag, int64_t ms)
{
    int64_t end = weft_now() + ms * WEFT_MS * T_SLACK;
    while (!atomic_load(flag)) {
        if (weft_now() > end)
            return false;
        if (weft_sleep(WEFT_MS) != 0)
            t_nap_ms(1);
    }
    return true;
}

/* Concurrency meter: how many calls are inside at once, and the most ever. */
typedef struct blk_meter {
    _Atomic int cur;
    _Atomic int max;
} blk_meter;

static inline void blk_meter_enter(blk_meter *m)
{
    int c = atomic_fetch_add(&m->cur, 1) + 1;
    int old = atomic_load(&m->max);
    while (c > old && !atomic_compare_exchange_weak(&m->max, &old, c))
        ;
}

static inline void blk_meter_leave(blk_meter *m)
{
    atomic_fetch_sub(&m->cur, 1);
}

static inline pid_t blk_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Threads of the process (/proc/self/task entries). */
static inline int blk_count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* Warm-up with pool threads                                           */
/* ------------------------------------------------------------------ */

#define BLK_WARM_THREADS 64

static void *blk_warm_fn(void *arg)
{
    (void)arg;
    void *p = malloc(64);
    t_nap_ms(20);
    free(p);
    return NULL;
}

static void *blk_warm_main(void *arg)
{
    (void)arg;
    weft_task *t[BLK_WARM_THREADS];
    for (int i = 0; i < BLK_WARM_THREADS; i++)
        t[i] = weft_spawn_blocking(blk_warm_fn, NULL);
    weft_gather(t, BLK_WARM_THREADS, NULL);
    return NULL;
}

/* glibc keeps the stacks of joined threads in a cache (40 MiB) and trims it
 * by age; with tens of pool threads started and joined per runtime, the
 * number of mappings left behind then depends on which stacks the cache
 * kept and how they merged with their neighbours, not on weft.  The test
 * programs run with that cache off (GLIBC_TUNABLES
 * glibc.pthread.stack_cache_size=0, set here by re-executing the program
 * once), so that tests/leak.h's count of mappings measures weft alone. */
static inline void blk_no_stack_cache(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.pthread.stack_cache_size"))
        return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%sglibc.pthread.stack_cache_size=0", t ? t : "",
             t && *t ? ":" : "");
    setenv("GLIBC_TUNABLES", buf, 1);
    execv("/proc/self/exe", argv);
    /* If that fails, run on with the cache (the map check may be noisy). */
    fprintf(stderr, "note: cannot re-execute without glibc's stack cache: %s\n",
            strerror(errno));
}

/* t_warm_up, then a runtime that starts BLK_WARM_THREADS pool threads at
 * once (no test starts more), twice. */
static inline void blk_warm_up(void)
{
    t_warm_up();
    for (int i = 0; i < 2; i++) {
        int rc = weft_run(blk_warm_main, NULL, NULL);
        if (rc != 0) {
            fprintf(stderr, "warm-up: weft_run: %d\n", rc);
            exit(1);
        }
    }
}

#endif
