/*
 * Helpers shared by the cmocka tests of the core runtime: a clean environment
 * per test, stderr capture, plain threads, leak-checked runs, warm-up.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <weft.h>

#include "leak.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif

/* Upper time bounds are correctness bounds ("it did not hang"), never
 * performance assertions; sanitizers get more room. */
#define T_SLACK (T_SANITIZED ? 4 : 1)

extern char **environ;

/* Unsets every WEFT_* variable but the tests' own WEFT_TEST_*, so each test
 * starts from the defaults; then sets what WEFT_TEST_ENV lists
 * ("NAME=VALUE NAME=VALUE ...": a CTest entry that reruns a group under
 * WEFT_FAULTS, for one). */
static inline void t_env_reset(void)
{
    for (;;) {
        char name[256] = {0};
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "WEFT_", 5) == 0 && strncmp(*e, "WEFT_TEST_", 10) != 0) {
                const char *eq = strchr(*e, '=');
                size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
                if (n >= sizeof name)
                    n = sizeof name - 1;
                memcpy(name, *e, n);
                break;
            }
        }
        if (!name[0])
            break;
        unsetenv(name);
    }
    const char *keep = getenv("WEFT_TEST_ENV");
    char buf[512];
    snprintf(buf, sizeof buf, "%s", keep ? keep : "");
    char *save = NULL;
    for (char *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
    }
}

/* cmocka setup/teardown for every test.  A test that takes unusually long
 * says so (for diagnosis; it is not a failure). */
static int64_t t_test_started;

static inline int64_t t_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int t_setup(void **state)
{
    (void)state;
    t_env_reset();
    t_test_started = t_mono_ns();
    return 0;
}

static inline int t_teardown(void **state)
{
    (void)state;
    t_env_reset();
    int64_t took = t_mono_ns() - t_test_started;
    if (took > (int64_t)5 * 1000000000)
        fprintf(stderr, "(this test took %.1f s)\n", (double)took / 1e9);
    return 0;
}

#define T_TEST(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)

/* ------------------------------------------------------------------ */
/* Checks inside coroutines and plain threads                          */
/* ------------------------------------------------------------------ */

/* cmocka's assert_* longjmp to the test's frame: never use them on a
 * coroutine's stack or another thread.  There, T_CHECK records the first
 * failure; t_assert_checks() (main thread, after weft_run) reports it. */
static _Atomic int t_failures;
static char t_failure[512];
static pthread_mutex_t t_failure_mu = PTHREAD_MUTEX_INITIALIZER;

static inline bool t_check_(bool ok, const char *what, const char *file, int line,
                            long long a, long long b, bool values)
{
    if (ok)
        return true;
    pthread_mutex_lock(&t_failure_mu);
    if (atomic_fetch_add(&t_failures, 1) == 0) {
        if (values)
            snprintf(t_failure, sizeof t_failure, "%s:%d: %s (%lld vs %lld)", file, line, what,
                     a, b);
        else
            snprintf(t_failure, sizeof t_failure, "%s:%d: %s", file, line, what);
    }
    pthread_mutex_unlock(&t_failure_mu);
    fprintf(stderr, "CHECK FAILED %s:%d: %s\n", file, line, what);
    return false;
}

#define T_CHECK(c) t_check_(!!(c), #c, __FILE__, __LINE__, 0, 0, false)
#define T_CHECK_EQ(a, b)                                                                 \
    do {                                                                                 \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                          \
        t_check_(t_a_ == t_b_, #a " == " #b, __FILE__, __LINE__, t_a_, t_b_, true);      \
    } while (0)

static inline void t_assert_checks(void)
{
    int n = atomic_exchange(&t_failures, 0);
    if (n)
        fail_msg("%d check(s) failed in coroutines/threads; first: %s", n, t_failure);
}

/* ------------------------------------------------------------------ */
/* stderr capture                                                      */
/* ------------------------------------------------------------------ */

typedef struct t_capture {
    int saved;   /* the real stderr */
    int fd;      /* memfd that stands in for it */
} t_capture;

static inline void t_capture_begin(t_capture *c)
{
    fflush(stderr);
    c->fd = memfd_create("weft-test-stderr", MFD_CLOEXEC);
    assert_true(c->fd >= 0);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, 2), 2);
}

/* Restores stderr and returns what was written meanwhile (malloc'd, NUL
 * terminated); it is echoed to the real stderr, marked, for diagnosis. */
static inline char *t_capture_end(t_capture *c)
{
    fflush(stderr);
    assert_int_equal(dup2(c->saved, 2), 2);
    close(c->saved);
    off_t len = lseek(c->fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    ssize_t got = pread(c->fd, buf, (size_t)len, 0);
    assert_int_equal(got, len);
    buf[len] = 0;
    close(c->fd);
    if (len) {
        fprintf(stderr, "[captured stderr]\n%s[end of captured stderr]\n", buf);
        fflush(stderr);
    }
    return buf;
}

static inline int t_count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* The number of lines of s that contain every one of the needles. */
static inline int t_lines_with(const char *s, const char *n1, const char *n2)
{
    int hits = 0;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char *line = strndup(s, len);
        if (strstr(line, n1) && (!n2 || strstr(line, n2)))
            hits++;
        free(line);
        s += len + (e ? 1 : 0);
    }
    return hits;
}

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

/* Busy-waits ms milliseconds without reaching a suspension point. */
static inline void t_spin_ms(int64_t ms)
{
    /* Real time: weft_now() stands still under WEFT_CLOCK=virtual. */
    int64_t end = t_mono_ns() + ms * WEFT_MS;
    while (t_mono_ns() < end)
        ;
}

static inline void t_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------ */
/* Plain threads                                                       */
/* ------------------------------------------------------------------ */

typedef struct t_thread {
    pthread_t th;
    void *(*fn)(void *);
    void *arg;
    void *ret;
    _Atomic int done;
} t_thread;

static void *t_thread_main(void *p)
{
    t_thread *t = p;
    t->ret = t->fn(t->arg);
    atomic_store(&t->done, 1);
    return NULL;
}

static inline void t_thread_start(t_thread *t, void *(*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    t->ret = NULL;
    atomic_store(&t->done, 0);
    assert_int_equal(pthread_create(&t->th, NULL, t_thread_main, t), 0);
}

/* From a coroutine: waits for the thread without blocking the worker for
 * long (naps in weft_sleep; a cancelled caller falls back to short OS
 * sleeps), then joins it. */
static inline void *t_thread_await(t_thread *t)
{
    while (!atomic_load(&t->done)) {
        if (weft_sleep(WEFT_MS) != 0)
            t_nap_ms(1);
    }
    pthread_join(t->th, NULL);
    return t->ret;
}

/* From a coroutine: runs fn(arg) on a new plain thread and returns its value. */
static inline void *t_in_thread(void *(*fn)(void *), void *arg)
{
    t_thread t;
    t_thread_start(&t, fn, arg);
    return t_thread_await(&t);
}

/* ------------------------------------------------------------------ */
/* Leak-checked runs                                                   */
/* ------------------------------------------------------------------ */

/* weft_run / weft_run_config between two leak snapshots. */
static inline int t_run(weft_fn fn, void *arg, void **result)
{
    leak_snap s = leak_snapshot();
    int rc = weft_run(fn, arg, result);
    t_assert_checks();
    leak_check(&s);
    assert_int_equal(weft_workers(), 0);
    return rc;
}

static inline int t_run_config(const weft_config *cfg, weft_fn fn, void *arg, void **result)
{
    leak_snap s = leak_snapshot();
    int rc = weft_run_config(cfg, fn, arg, result);
    t_assert_checks();
    leak_check(&s);
    assert_int_equal(weft_workers(), 0);
    return rc;
}

/* Runs with WEFT_WORKERS=n (and nothing else changed). */
static inline int t_run_workers(unsigned n, weft_fn fn, void *arg, void **result)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%u", n);
    setenv("WEFT_WORKERS", buf, 1);
    int rc = t_run(fn, arg, result);
    unsetenv("WEFT_WORKERS");
    return rc;
}

/* ------------------------------------------------------------------ */
/* Warm-up                                                             */
/* ------------------------------------------------------------------ */

static void *t_warm_task(void *arg)
{
    (void)arg;
    weft_yield();
    return NULL;
}

static void *t_warm_thread(void *arg)
{
    (void)arg;
    void *p = malloc(64);
    free(p);
    return NULL;
}

static void *t_warm_main(void *arg)
{
    (void)arg;
    weft_task *t[64];
    for (int i = 0; i < 64; i++)
        t[i] = weft_spawn(t_warm_task, NULL);
    weft_gather(t, 64, NULL);
    t_thread th[4];
    for (int i = 0; i < 4; i++)
        t_thread_start(&th[i], t_warm_thread, NULL);
    for (int i = 0; i < 4; i++)
        t_thread_await(&th[i]);
    return NULL;
}

/* Called once by each test program before its tests: lets glibc create the
 * malloc arenas and thread-stack cache entries that stay for the process's
 * lifetime, so that leak_check measures weft alone.  WEFT_TEST_FILTER (a
 * cmocka pattern such as "test_sleep*") runs only the matching tests,
 * WEFT_TEST_SKIP all but the matching ones. */
static inline void t_warm_up(void)
{
    static char filter[256], skip[256];
    const char *f = getenv("WEFT_TEST_FILTER");
    if (f && *f) {
        snprintf(filter, sizeof filter, "%s", f);
        cmocka_set_test_filter(filter);
    }
    const char *k = getenv("WEFT_TEST_SKIP");
    if (k && *k) {
        snprintf(skip, sizeof skip, "%s", k);
        cmocka_set_skip_filter(skip);
    }
    t_env_reset();
    for (int w = 1; w <= 4; w *= 2) {
        weft_config c = WEFT_CONFIG_DEFAULT;
        c.workers = (unsigned)w;
        int rc = weft_run_config(&c, t_warm_main, NULL, NULL);
        if (rc != 0) {
            fprintf(stderr, "warm-up: weft_run_config: %d\n", rc);
            exit(1);
        }
    }
}

#endif
