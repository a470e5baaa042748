/*
 * Scaffolding of the sync stress programs (header only; each program is one
 * C file that includes it).
 *
 *  - Duration: WEFT_STRESS_SECONDS (a positive number, fractions allowed),
 *    else the program's default (a few seconds).
 *  - Workers: WEFT_WORKERS when set, else the program's choice.
 *  - Failures: CHECK(cond, fmt, ...) prints one line and marks the run
 *    failed (exit status 1); the run goes on.  The first 20 are printed.
 *  - Watchdog: a plain thread aborts the process when the progress counter
 *    has not moved for 60 s (after printing the program's own state): a
 *    lost wake-up shows up as a hang, and a hang is a failure.
 *  - Coroutine code keeps its random state in its own frame (never in a
 *    thread-local: a coroutine migrates between threads).
 */
#ifndef WEFT_SYNC_STRESS_H
#define WEFT_SYNC_STRESS_H

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SS_SANITIZED 1
#endif
#endif
#ifndef SS_SANITIZED
#define SS_SANITIZED 0
#endif
/* Release value, or a smaller one under a sanitizer (a TSan fiber is heavy). */
#define SS_SCALE(release, sanitized) (SS_SANITIZED ? (sanitized) : (release))

#define SS_STALL_SECONDS 60
#define SS_MAX_REPORTS 20

static const char *ss_name = "stress";
static _Atomic int ss_failures;
static _Atomic uint64_t ss_progress_ctr;
static int64_t ss_t_start, ss_t_end;
static void (*ss_dump_fn)(void);

static void ss_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ss_fail_at(const char *file, int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&ss_failures, 1) >= SS_MAX_REPORTS)
        return;
    char buf[600];
    int k = snprintf(buf, sizeof buf, "%s: FAIL (%s:%d): ", ss_name, file, line);
    if (k < 0 || k >= (int)sizeof buf)
        k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, sizeof buf - (size_t)k, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", buf);
}

#define CHECK(cond, ...)                                    \
    do {                                                    \
        if (__builtin_expect(!(cond), 0))                   \
            ss_fail_at(__FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)

static inline void ss_progress(void)
{
    atomic_fetch_add_explicit(&ss_progress_ctr, 1, memory_order_relaxed);
}

static inline bool ss_time_up(void) { return weft_now() >= ss_t_end; }

#include "../rng.h"
static _Atomic uint64_t ss_seed_ctr = 0x9E3779B97F4A7C15ULL;
static inline uint64_t rng_seed(void)
{
    uint64_t v = atomic_fetch_add(&ss_seed_ctr, 0x9E3779B97F4A7C15ULL) ^ (uint64_t)weft_now();
    return v ? v : 1;
}

/* A random deadline: FOREVER half the time, else now + 0..max_ns. */
static inline int64_t rng_deadline(uint64_t *s, int64_t max_ns)
{
    if (rng_below(s, 2))
        return WEFT_FOREVER;
    return weft_now() + (int64_t)rng_below(s, (uint64_t)max_ns + 1);
}

static void ss_os_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / WEFT_SEC), (long)(ns % WEFT_SEC)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------- */
/* Watchdog                                                          */
/* ---------------------------------------------------------------- */

static pthread_t ss_wd_thread;
static _Atomic bool ss_wd_stop;

static void *ss_wd_main(void *arg)
{
    (void)arg;
    uint64_t last = atomic_load(&ss_progress_ctr);
    int64_t last_move = weft_now();
    while (!atomic_load(&ss_wd_stop)) {
        ss_os_sleep_ns(100 * WEFT_MS);
        uint64_t p = atomic_load(&ss_progress_ctr);
        int64_t now = weft_now();
        if (p != last) {
            last = p;
            last_move = now;
        } else if (now - last_move >= (int64_t)SS_STALL_SECONDS * WEFT_SEC) {
            fprintf(stderr, "%s: FAIL: watchdog: no progress for %d s; something hangs.\n",
                    ss_name, SS_STALL_SECONDS);
            if (ss_dump_fn)
                ss_dump_fn();
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

/* First thing in main(): name, time budget, watchdog. */
static void ss_begin(const char *name, double default_seconds)
{
    ss_name = name;
    double secs = default_seconds;
    const char *s = getenv("WEFT_STRESS_SECONDS");
    if (s && *s) {
        char *end;
        double v = strtod(s, &end);
        if (*end == '\0' && v > 0)
            secs = v;
        else
            fprintf(stderr, "%s: WEFT_STRESS_SECONDS=%s is not a positive number; using %g\n",
                    name, s, secs);
    }
    ss_t_start = weft_now();
    ss_t_end = ss_t_start + (int64_t)(secs * 1e9);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pthread_create(&ss_wd_thread, NULL, ss_wd_main, NULL) != 0) {
        fprintf(stderr, "%s: cannot start the watchdog\n", name);
        exit(2);
    }
}

/* Runs fn(arg) as main of a runtime: `workers` unless WEFT_WORKERS is set. */
static void ss_run(weft_fn fn, void *arg, unsigned workers)
{
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    const char *w = getenv("WEFT_WORKERS");
    cfg.workers = (w && *w) ? 0 : workers;
    int rc = weft_run_config(&cfg, fn, arg, NULL);
    if (rc != 0) {
        fprintf(stderr, "%s: weft_run: %s\n", ss_name, strerror(-rc));
        exit(2);
    }
}

/* Last thing in main(): stops the watchdog; the exit status. */
static int ss_end(void)
{
    atomic_store(&ss_wd_stop, true);
    pthread_join(ss_wd_thread, NULL);
    int f = atomic_load(&ss_failures);
    if (f)
        printf("%s: FAILED (%d failures) after %.1f s\n", ss_name, f,
               (double)(weft_now() - ss_t_start) / 1e9);
    else
        printf("%s: ok (%.1f s)\n", ss_name, (double)(weft_now() - ss_t_start) / 1e9);
    return f ? 1 : 0;
}

#endif
