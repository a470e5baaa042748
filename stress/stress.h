/*
 * Shared scaffolding of the stress programs (header only; each program is
 * one C file that includes it).
 *
 *  - Duration: stress_init(name, default_seconds, dump) reads WEFT_STRESS_SECONDS (a positive
 *    number, fractions allowed) for soaks, else the program's default.
 *  - Workers: the program's default count unless WEFT_WORKERS is set.
 *  - Failures: CHECK(cond, fmt, ...) prints one line naming the program and
 *    marks the run failed (exit status 1); the run goes on so one report can
 *    show several symptoms.  The first STRESS_MAX_REPORTS are printed.
 *  - Watchdog: a plain thread that aborts the process, after printing the
 *    program's own state dump, when the progress counter has not moved for
 *    STRESS_STALL_SECONDS (60) - a hang is a failure, never a CTest timeout.
 *    Programs call stress_progress() whenever something completes.
 *  - Sanitizers: STRESS_TSAN / STRESS_ASAN are 1 in those builds, so the
 *    programs can scale their populations (a TSan fiber is heavy).
 */
#ifndef WEFT_STRESS_H
#define WEFT_STRESS_H

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <dirent.h>
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

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif
#ifndef STRESS_TSAN
#define STRESS_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif
#ifndef STRESS_ASAN
#define STRESS_ASAN 0
#endif

/* Release value, or a smaller one under a sanitizer. */
#define STRESS_SCALE(release, sanitized) ((STRESS_TSAN || STRESS_ASAN) ? (sanitized) : (release))

#define STRESS_STALL_SECONDS 60
#define STRESS_MAX_REPORTS 20

static const char *stress_name = "stress";
static _Atomic int stress_failures;
static _Atomic uint64_t stress_progress_ctr;
static int64_t stress_t_start, stress_t_end;
static void (*stress_dump_fn)(void);

static void stress_failv(const char *file, int line, const char *fmt, va_list ap)
{
    int n = atomic_fetch_add(&stress_failures, 1);
    if (n >= STRESS_MAX_REPORTS)
        return;
    char buf[600];
    int k = snprintf(buf, sizeof buf, "%s: FAIL (%s:%d): ", stress_name, file, line);
    if (k < 0 || k >= (int)sizeof buf)
        k = 0;
    vsnprintf(buf + k, sizeof buf - (size_t)k, fmt, ap);
    fprintf(stderr, "%s\n", buf);
    fflush(stderr);
}

static void stress_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stress_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stress_failv(file, line, fmt, ap);
    va_end(ap);
}

#define FAIL(...) stress_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...)              \
    do {                              \
        if (__builtin_expect(!(cond), 0)) \
            FAIL(__VA_ARGS__);        \
    } while (0)

static inline bool stress_failed(void) { return atomic_load(&stress_failures) > 0; }

static inline void stress_progress(void)
{
    atomic_fetch_add_explicit(&stress_progress_ctr, 1, memory_order_relaxed);
}

/* Real time, whatever the runtime's clock: budgets, the watchdog and
 * spins are the machine's time even under WEFT_CLOCK=virtual. */
static inline int64_t stress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Has the program's time budget run out? (Any thread.) */
static inline bool stress_time_up(void) { return stress_now() >= stress_t_end; }

/* Fraction of the budget that has passed, 0..1. */
static inline double stress_elapsed_fraction(void)
{
    double f = (double)(stress_now() - stress_t_start) / (double)(stress_t_end - stress_t_start);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

static double stress_seconds(double dflt)
{
    const char *s = getenv("WEFT_STRESS_SECONDS");
    if (s && *s) {
        char *end;
        double v = strtod(s, &end);
        if (*end == '\0' && v > 0)
            return v;
        fprintf(stderr, "%s: WEFT_STRESS_SECONDS=%s is not a positive number; using %g\n",
                stress_name, s, dflt);
    }
    return dflt;
}

#include "rng.h"
static _Atomic uint64_t stress_seed_ctr = 0x9E3779B97F4A7C15ULL;
static inline uint64_t rng_seed(void)
{
    uint64_t v = atomic_fetch_add(&stress_seed_ctr, 0x9E3779B97F4A7C15ULL);
    v ^= (uint64_t)stress_now();
    return v ? v : 1;
}

/* Busy-waits ns without suspending (on a worker: blocks it; that is the point
 * where it is used). */
/* For a dump: the first ids (up to 20) of [0, n) whose run count is still
 * zero, on one line after "never ran:". */
static inline void stress_list_never_ran(_Atomic uint32_t *ran, uint64_t n, uint64_t cap)
{
    fprintf(stderr, " never ran:");
    int shown = 0;
    for (uint64_t i = 0; i < n && i < cap && shown < 20; i++)
        if (atomic_load(&ran[i]) == 0) {
            fprintf(stderr, " %" PRIu64, i);
            shown++;
        }
    fprintf(stderr, "\n");
}

static inline void stress_spin_ns(int64_t ns)
{
    int64_t end = stress_now() + ns;
    while (stress_now() < end)
        ;
}

/* Plain threads only: sleeps ns of OS time. */
static inline void stress_os_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / WEFT_SEC), (long)(ns % WEFT_SEC)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Coroutine only: waits (polling, 100 us naps) until *flag reaches want. */
static inline void stress_await_u64(_Atomic uint64_t *v, uint64_t want)
{
    while (atomic_load(v) < want)
        weft_sleep(100 * WEFT_US);
}

/* ---------------------------------------------------------------- */
/* Watchdog                                                          */
/* ---------------------------------------------------------------- */

static pthread_t stress_wd_thread;
static pthread_mutex_t stress_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stress_wd_cv;
static bool stress_wd_stop;

static void *stress_wd_main(void *arg)
{
    (void)arg;
    uint64_t last = atomic_load(&stress_progress_ctr);
    int64_t last_move = stress_now();
    pthread_mutex_lock(&stress_wd_mu);
    while (!stress_wd_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&stress_wd_cv, &stress_wd_mu, &ts);
        if (stress_wd_stop)
            break;
        uint64_t p = atomic_load(&stress_progress_ctr);
        int64_t now = stress_now();
        if (p != last) {
            last = p;
            last_move = now;
            continue;
        }
        if (now - last_move >= (int64_t)STRESS_STALL_SECONDS * WEFT_SEC) {
            fprintf(stderr,
                    "%s: FAIL: watchdog: no progress for %d s (%.1f s into the run; progress "
                    "counter %" PRIu64 "); something hangs.  State:\n",
                    stress_name, STRESS_STALL_SECONDS,
                    (double)(now - stress_t_start) / 1e9, p);
            if (stress_dump_fn)
                stress_dump_fn();
            fflush(stderr);
            abort();
        }
    }
    pthread_mutex_unlock(&stress_wd_mu);
    return NULL;
}

static void stress_watchdog_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&stress_wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&stress_wd_thread, NULL, stress_wd_main, NULL) != 0) {
        fprintf(stderr, "%s: cannot start the watchdog\n", stress_name);
        exit(2);
    }
}

static void stress_watchdog_stop(void)
{
    pthread_mutex_lock(&stress_wd_mu);
    stress_wd_stop = true;
    pthread_cond_signal(&stress_wd_cv);
    pthread_mutex_unlock(&stress_wd_mu);
    pthread_join(stress_wd_thread, NULL);
}

/* ---------------------------------------------------------------- */
/* Running                                                           */
/* ---------------------------------------------------------------- */

/* Sets up the name, the budget and the watchdog.  Call first in main(). */
static void stress_init(const char *name, double default_seconds, void (*dump)(void))
{
    stress_name = name;
    stress_dump_fn = dump;
    double secs = stress_seconds(default_seconds);
    stress_t_start = stress_now();
    stress_t_end = stress_t_start + (int64_t)(secs * 1e9);
    setvbuf(stderr, NULL, _IOLBF, 0);
    stress_watchdog_start();
}

/* Restarts the budget (programs that run weft_run several times). */
__attribute__((unused)) static void stress_rebudget(double fraction_of_default, double default_seconds)
{
    double secs = stress_seconds(default_seconds) * fraction_of_default;
    stress_t_start = stress_now();
    stress_t_end = stress_t_start + (int64_t)(secs * 1e9);
}

/* The configuration of the stress runs: `workers` workers unless
 * WEFT_WORKERS is set, and workers not pinned unless WEFT_PIN is set.  (On a
 * shared machine a pinned thread can wait hundreds of milliseconds for its
 * CPU while the others run; unpinned, the OS moves it.  Pinning changes
 * nothing in the runtime's logic, only where the OS runs the threads.) */
static inline weft_config stress_config(unsigned workers)
{
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    const char *env = getenv("WEFT_WORKERS");
    if (!env || !*env)
        cfg.workers = workers;
    env = getenv("WEFT_PIN");
    if (!env || !*env)
        cfg.pin = 0;
    return cfg;
}

/* Runs fn as the main task of a runtime configured by stress_config. */
__attribute__((unused)) static void stress_run(unsigned workers, weft_fn fn, void *arg)
{
    weft_config cfg = stress_config(workers);
    void *res = NULL;
    int rc = weft_run_config(&cfg, fn, arg, &res);
    CHECK(rc == 0, "weft_run_config returned %d (%s)", rc, strerror(-rc));
}

/* Open descriptors of the process (not counting the one that reads the
 * list): the I/O programs compare it before and after weft_run. */
__attribute__((unused)) static int stress_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Stops the watchdog and reports; returns main()'s exit status. */
static int stress_finish(const char *summary_fmt, ...)
{
    stress_watchdog_stop();
    double secs = (double)(stress_now() - stress_t_start) / 1e9;
    char buf[512] = "";
    if (summary_fmt) {
        va_list ap;
        va_start(ap, summary_fmt);
        vsnprintf(buf, sizeof buf, summary_fmt, ap);
        va_end(ap);
    }
    int f = atomic_load(&stress_failures);
    fprintf(stderr, "%s: %s after %.2f s: %s\n", stress_name, f ? "FAILED" : "ok", secs, buf);
    if (f)
        fprintf(stderr, "%s: %d invariant violation(s)\n", stress_name, f);
    return f ? 1 : 0;
}

/* ---------------------------------------------------------------- */
/* Guarded handle slots: lets cancellers on any thread use a handle   */
/* that its owner is about to release.  A canceller enters (count+1)  */
/* unless the slot is closed; the owner closes the slot, waits for    */
/* the count to drain, and only then joins (which frees the handle).  */
/* ---------------------------------------------------------------- */

#define SLOT_CLOSED 0x80000000u

typedef struct {
    _Atomic(weft_task *) h;
    _Atomic unsigned guard;
} stress_slot;

static inline void slot_open(stress_slot *s, weft_task *t)
{
    atomic_store(&s->h, t);
    atomic_store(&s->guard, 0);
}

/* Any thread: returns the handle (to be used until slot_leave) or NULL. */
static inline weft_task *slot_enter(stress_slot *s)
{
    unsigned g = atomic_load(&s->guard);
    for (;;) {
        if (g & SLOT_CLOSED)
            return NULL;
        if (atomic_compare_exchange_weak(&s->guard, &g, g + 1))
            break;
    }
    weft_task *t = atomic_load(&s->h);
    if (!t)
        atomic_fetch_sub(&s->guard, 1);
    return t;
}

static inline void slot_leave(stress_slot *s) { atomic_fetch_sub(&s->guard, 1); }

/* Coroutine only: closes the slot and waits until no canceller uses it. */
static inline weft_task *slot_close(stress_slot *s)
{
    atomic_fetch_or(&s->guard, SLOT_CLOSED);
    while (atomic_load(&s->guard) != SLOT_CLOSED)
        weft_yield();
    weft_task *t = atomic_load(&s->h);
    atomic_store(&s->h, NULL);
    return t;
}

#endif
