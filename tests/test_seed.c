/*
 * test_seed: seeded schedules (WEFT_SEED, WEFT_CHAOS; runtime/seed.c).
 * One worker and the virtual clock replay a run exactly: the same output
 * and the same WEFT_TRACE, run after run in separate processes; other
 * seeds give other interleavings; more workers shake the schedule (chaos
 * mode) without breaking anything; a failing run names its replay.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* The workload: yields, sleeps, a mutex, a queue, the blocking pool    */
/* ------------------------------------------------------------------ */

#define NT 6
static char out[1 << 16];
static size_t outn;
static weft_mutex mu;
static weft_queue *q;
static long counter;

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Any thread (several workers in chaos mode). */
static void say(const char *fmt, ...)
{
    pthread_mutex_lock(&out_mu);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + outn, sizeof out - outn, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof out - outn)
        outn += (size_t)n;
    pthread_mutex_unlock(&out_mu);
}

static void *doubled(void *arg)
{
    /* Real time varies from run to run; the result does not. */
    t_nap_ms(1 + (long)(intptr_t)arg % 3);
    return (void *)((intptr_t)arg * 2);
}

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (int i = 0; i < 4; i++) {
        weft_mutex_lock(&mu);
        long c = counter;
        weft_yield();  /* inside the lock: nobody else updates meanwhile */
        counter = c + 1;
        say("%ld.%d@%lld ", id, i, (long long)(weft_now() % 1000000000));
        weft_mutex_unlock(&mu);
        weft_yield();
        if (i == 1) {
            void *r;
            weft_to_thread(doubled, (void *)(intptr_t)id, &r);
            say("p%ld=%ld ", id, (long)(intptr_t)r);
        }
        weft_sleep((id % 3) * WEFT_MS);
        weft_queue_put(q, (void *)(intptr_t)(id * 10 + i), WEFT_FOREVER);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (int i = 0; i < NT * 4; i++) {
        void *x;
        weft_queue_get(q, &x, WEFT_FOREVER);
        say("q%ld ", (long)(intptr_t)x);
        if (i % 5 == 0)
            weft_yield();
    }
    return NULL;
}

static void *workload(void *arg)
{
    (void)arg;
    weft_mutex_init(&mu);
    q = weft_queue_new(WEFT_QUEUE_FIFO, 3);
    weft_task *c = weft_spawn(consumer, NULL);
    weft_task *t[NT];
    for (long i = 0; i < NT; i++)
        t[i] = weft_spawn(worker, (void *)(intptr_t)i);
    for (int i = 0; i < NT; i++)
        weft_join(t[i], NULL);
    weft_join(c, NULL);
    weft_queue_free(q);
    say("counter=%ld", counter);
    return NULL;
}

/* Runs the workload in a child with the given environment; its output
 * (and, when trace is set, the trace file's content) in *res (malloc'd). */
typedef struct {
    char *out;
    char *trace;
    int status;
} child_res;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

static child_res run_child(const char *seed, const char *workers, const char *clock,
                           const char *chaos, bool trace)
{
    char tpath[] = "/tmp/weft-seed-trace-XXXXXX";
    int tfd = mkstemp(tpath);
    assert_true(tfd >= 0);
    close(tfd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        t_env_reset();
        if (seed)
            setenv("WEFT_SEED", seed, 1);
        setenv("WEFT_WORKERS", workers, 1);
        if (clock)
            setenv("WEFT_CLOCK", clock, 1);
        if (chaos)
            setenv("WEFT_CHAOS", chaos, 1);
        if (trace)
            setenv("WEFT_TRACE", tpath, 1);
        int rc = weft_run(workload, NULL, NULL);
        ssize_t w = write(p[1], out, outn);
        (void)w;
        _exit(rc == 0 ? 0 : 3);
    }
    close(p[1]);
    size_t cap = 1 << 17, n = 0;
    char *b = malloc(cap);
    ssize_t r;
    while ((r = read(p[0], b + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    b[n] = 0;
    close(p[0]);
    child_res res = {.out = b};
    assert_int_equal(waitpid(pid, &res.status, 0), pid);
    res.trace = slurp(tpath);
    unlink(tpath);
    return res;
}

static void free_res(child_res *r)
{
    free(r->out);
    free(r->trace);
}

static void test_seed_replays(void **state)
{
    (void)state;
    child_res first = run_child("7", "1", "virtual", NULL, true);
    assert_int_equal(first.status, 0);
    assert_non_null(strstr(first.out, "counter=24"));
    assert_true(strlen(first.trace) > 100);
    for (int i = 0; i < 9; i++) {
        child_res r = run_child("7", "1", "virtual", NULL, true);
        assert_int_equal(r.status, 0);
        assert_string_equal(r.out, first.out);
        assert_string_equal(r.trace, first.trace);
        free_res(&r);
    }
    free_res(&first);
    /* With chaos yields too. */
    first = run_child("12345", "1", "virtual", "3", false);
    assert_int_equal(first.status, 0);
    for (int i = 0; i < 2; i++) {
        child_res r = run_child("12345", "1", "virtual", "3", false);
        assert_string_equal(r.out, first.out);
        free_res(&r);
    }
    free_res(&first);
}

static void test_seed_varies(void **state)
{
    (void)state;
    char *seen[10];
    int distinct = 0;
    for (int s = 0; s < 10; s++) {
        char b[16];
        snprintf(b, sizeof b, "%d", 1000 + s);
        child_res r = run_child(b, "1", "virtual", NULL, false);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "counter=24"));
        bool dup = false;
        for (int k = 0; k < distinct; k++)
            dup |= strcmp(seen[k], r.out) == 0;
        if (!dup)
            seen[distinct++] = strdup(r.out);
        free_res(&r);
    }
    assert_true(distinct >= 3);
    /* The unseeded order is one more, fixed, schedule. */
    for (int k = 0; k < distinct; k++)
        free(seen[k]);
}

/* Chaos mode: several workers, the real clock, yields injected at every
 * suspension point with chance 1/2: the invariants hold. */
static void test_seed_chaos_workers(void **state)
{
    (void)state;
    for (int s = 0; s < 4; s++) {
        char b[16];
        snprintf(b, sizeof b, "%d", 77 + s);
        child_res r = run_child(b, "2", NULL, "3", false);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "counter=24"));
        free_res(&r);
    }
}

/* A pool job that waits for a coroutine (it reads a pipe a task writes):
 * a replayable run delivers completions only when the worker is out of
 * other work, so the writer runs first and nothing hangs, whatever the seed. */
static int pfd[2];

static void *pipe_reader(void *arg)
{
    (void)arg;
    char c;
    return (void *)(intptr_t)read(pfd[0], &c, 1);
}

static void *pipe_writer(void *arg)
{
    (void)arg;
    ssize_t n = write(pfd[1], "x", 1);
    (void)n;
    return NULL;
}

static void *pipe_main(void *arg)
{
    (void)arg;
    T_CHECK_EQ(pipe(pfd), 0);
    for (int i = 0; i < 20; i++) {
        weft_task *j = weft_spawn_blocking(pipe_reader, NULL);
        weft_task *w = weft_spawn(pipe_writer, NULL);
        void *r = NULL;
        T_CHECK_EQ(weft_join(j, &r), 0);
        T_CHECK_EQ((intptr_t)r, 1);
        weft_join(w, NULL);
    }
    close(pfd[0]);
    close(pfd[1]);
    return NULL;
}

static void test_seed_pool_job_waits_for_task(void **state)
{
    (void)state;
    setenv("WEFT_WORKERS", "1", 1);
    setenv("WEFT_CLOCK", "virtual", 1);
    for (int s = 0; s < 20; s++) {
        char b[16];
        snprintf(b, sizeof b, "%d", s);
        setenv("WEFT_SEED", b, 1);
        /* The first run warms the C library's thread-stack cache (the
         * pool's threads), which the leak check would count. */
        if (s == 0)
            assert_int_equal(weft_run(pipe_main, NULL, NULL), 0);
        else
            assert_int_equal(t_run(pipe_main, NULL, NULL), 0);
    }
}

/* WEFT_SEED=random prints the seed it chose, and that seed replays. */
static void *quick(void *arg)
{
    (void)arg;
    return NULL;
}

static void test_seed_random_printed(void **state)
{
    (void)state;
    setenv("WEFT_SEED", "random", 1);
    t_capture c;
    t_capture_begin(&c);
    int rc = weft_run(quick, NULL, NULL);
    char *err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    const char *at = strstr(err, "weft: WEFT_SEED=");
    assert_non_null(at);
    unsigned long long seed = strtoull(at + strlen("weft: WEFT_SEED="), NULL, 10);
    assert_non_null(strstr(at, "(chosen at random)"));
    free(err);
    char b[32];
    snprintf(b, sizeof b, "%llu", seed);
    child_res x = run_child(b, "1", "virtual", NULL, false);
    child_res y = run_child(b, "1", "virtual", NULL, false);
    assert_string_equal(x.out, y.out);
    free_res(&x);
    free_res(&y);
    /* Nothing kept after a seeded run. */
    setenv("WEFT_SEED", "5", 1);
    assert_int_equal(t_run(quick, NULL, NULL), 0);
    /* WEFT_CHAOS alone chooses a seed too, and says so. */
    unsetenv("WEFT_SEED");
    setenv("WEFT_CHAOS", "1", 1);
    t_capture_begin(&c);
    rc = weft_run(quick, NULL, NULL);
    err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(t_lines_with(err, "weft: WEFT_SEED=", "WEFT_CHAOS"), 1);
    free(err);
}

/* A seeded run that aborts names the line that replays it. */
static void *aborts(void *arg)
{
    (void)arg;
    weft_yield();
    abort();
}

static void test_seed_rerun_line(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        t_env_reset();
        setenv("WEFT_SEED", "42", 1);
        setenv("WEFT_CHAOS", "2", 1);
        weft_run(aborts, NULL, NULL);
        _exit(0);
    }
    close(p[1]);
    char b[4096];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], b + n, sizeof b - 1 - n)) > 0)
        n += (size_t)r;
    b[n] = 0;
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
    assert_non_null(
        strstr(b, "weft: rerun with WEFT_SEED=42 WEFT_WORKERS=1 WEFT_CLOCK=virtual WEFT_CHAOS=2\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_TEST(test_seed_replays),
        T_TEST(test_seed_varies),
        T_TEST(test_seed_chaos_workers),
        T_TEST(test_seed_pool_job_waits_for_task),
        T_TEST(test_seed_random_printed),
        T_TEST(test_seed_rerun_line),
    };
    return cmocka_run_group_tests_name("seed", tests, NULL, NULL);
}
