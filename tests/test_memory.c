/*
 * test_memory: coroutine memory and its trimming (runtime/stack.c,
 * runtime/registry.c, runtime/trim.c; docs/scheduler.md, section 8).
 *  - weft_memory_stats_get: arguments, and figures that follow a burst;
 *  - after a burst and a pause longer than WEFT_TRIM_MS, the stacks and
 *    slabs the burst took are given back (counted; and, outside sanitizers,
 *    the resident set falls), the workers' own caches too, and a new burst
 *    reuses them;
 *  - bursts that come closer together than the window are not trimmed,
 *    however many; the same process trims once they stop;
 *  - WEFT_TRIM_MS=0 never trims; a bad WEFT_TRIM_MS is refused;
 *  - the guard fallback (WEFT_GUARD=mprotect) trims alike;
 *  - address space refused (RLIMIT_AS, as vm.overcommit_memory=2 would):
 *    one clear line, tasks wait for a stack and all finish (forked child);
 *  - the same refusal faked (WEFT_FAULTS=stacks:1, so under sanitizers
 *    too): tasks without a stack wait without the workers spinning, and
 *    start as stacks are freed; one line for repeated refusals.
 * Each test ends with the leak check (descriptors, mappings).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "leak.h"
#include "testutil.h"

/* Stack bytes each burst task touches: enough that the pages show. */
#define TOUCH (32 * 1024)
#define BURST (T_SANITIZED ? 2500 : 3000)

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    weft_event go;
    _Atomic int ready;
} burst_ctx;

static void *toucher(void *arg)
{
    burst_ctx *b = arg;
    volatile char buf[TOUCH];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = (char)i;
    atomic_fetch_add(&b->ready, 1);
    T_CHECK(weft_event_wait(&b->go, WEFT_FOREVER) == 0);
    T_CHECK(buf[512] == (char)512);
    return NULL;
}

/* From a coroutine: n tasks alive at once, each touching TOUCH bytes of
 * its stack, then all finished. */
static void burst(int n)
{
    burst_ctx b;
    weft_event_init(&b.go);
    atomic_init(&b.ready, 0);
    weft_task **t = calloc((size_t)n, sizeof *t);
    T_CHECK(t != NULL);
    for (int i = 0; i < n; i++)
        T_CHECK((t[i] = weft_spawn(toucher, &b)) != NULL);
    /* Let them all run to their wait. */
    while (atomic_load(&b.ready) < n)
        weft_sleep(WEFT_MS);
    weft_event_set(&b.go);
    for (int i = 0; i < n; i++)
        T_CHECK(weft_join(t[i], NULL) == 0);
    free(t);
    weft_event_destroy(&b.go);
}

/* weft_memory_stats and the workers' caches (weft_memory_cached_get). */
typedef struct {
    weft_memory_stats s;
    uint64_t stacks_cached, task_slots_cached;
} memsnap;

static memsnap mem(void)
{
    memsnap m;
    T_CHECK(weft_memory_stats_get(&m.s) == 0);
    T_CHECK(weft_memory_cached_get(&m.stacks_cached, &m.task_slots_cached) == 0);
    return m;
}

static void run_main(weft_fn fn)
{
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = 2;
    assert_int_equal(t_run_config(&cfg, fn, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */

static void *stats_main(void *arg)
{
    (void)arg;
    T_CHECK(weft_memory_stats_get(NULL) == -EINVAL);
    uint64_t n;
    T_CHECK(weft_memory_cached_get(NULL, &n) == -EINVAL);
    T_CHECK(weft_memory_cached_get(&n, NULL) == -EINVAL);
    memsnap a = mem();
    T_CHECK(a.s.stack_size == WEFT_DEFAULT_STACK_SIZE);
    T_CHECK(a.s.task_slot_size >= 64 && a.s.task_slot_size <= 1024);
    T_CHECK(a.s.stacks_reserved >= 1);   /* main's */
    T_CHECK(a.s.slabs >= 1);
    burst(BURST);
    memsnap b = mem();
    T_CHECK(b.s.stacks_reserved >= (uint64_t)BURST);
    T_CHECK(b.s.slabs * ((128 - 4) * 1024 / b.s.task_slot_size) >= (uint64_t)BURST);
    /* Every stack the burst used is idle again: in the pool or a cache.
     * Warm or clean: a burst slowed past the trim window (1 s; seen under
     * ThreadSanitizer on a loaded machine, 30 s for the burst) has had its
     * first stacks given back before the last were joined. */
    uint64_t idle = b.s.stacks_idle_warm + b.s.stacks_idle_clean;
    if (idle + 2 * 64 + 1 < (uint64_t)BURST)
        fprintf(stderr, "stacks: reserved %llu, idle warm %llu, idle clean %llu, trimmed %llu\n",
                (unsigned long long)b.s.stacks_reserved, (unsigned long long)b.s.stacks_idle_warm,
                (unsigned long long)b.s.stacks_idle_clean, (unsigned long long)b.s.stacks_trimmed);
    T_CHECK(idle + 2 * 64 + 1 >= (uint64_t)BURST);
    T_CHECK(idle <= b.s.stacks_reserved);
    return NULL;
}

static void test_stats(void **state)
{
    (void)state;
    weft_memory_stats m;
    assert_int_equal(weft_memory_stats_get(&m), -EPERM);  /* no runtime */
    uint64_t x, y;
    assert_int_equal(weft_memory_cached_get(&x, &y), -EPERM);
    run_main(stats_main);
}

/* A burst, a pause longer than the window (200 ms), given back; again. */
static void *idle_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        memsnap m0 = mem();
        long rss0 = rss_kib();
        burst(BURST);
        long rss1 = rss_kib();
        memsnap m1 = mem();
        /* 200 ms window: trimmed within a quarter window after it (a slow
         * burst, under a sanitizer, may see its first stacks trimmed while
         * the last ones are joined: counted from before the burst). */
        int64_t deadline = weft_now() + 3 * WEFT_SEC * T_SLACK;
        memsnap m2 = m1;
        for (;;) {
            m2 = mem();
            bool done = m2.s.stacks_trimmed >= m0.s.stacks_trimmed + (uint64_t)BURST / 2 &&
                        m2.s.stacks_idle_clean >= (uint64_t)BURST / 2 &&
                        m2.s.stacks_idle_warm <= 64 && m2.s.slabs_trimmed > m0.s.slabs_trimmed &&
                        m2.s.slabs_idle <= 1 && m2.stacks_cached == 0 && m2.task_slots_cached == 0;
            if (done || weft_now() >= deadline)
                break;
            weft_sleep(20 * WEFT_MS);
        }
        T_CHECK(m2.s.stacks_trimmed >= m0.s.stacks_trimmed + (uint64_t)BURST / 2);
        T_CHECK(m2.s.stacks_idle_clean >= (uint64_t)BURST / 2);
        T_CHECK(m2.s.stacks_idle_warm <= 64);          /* the floor */
        T_CHECK(m2.s.slabs_trimmed > m0.s.slabs_trimmed);
        T_CHECK(m2.s.slabs_idle <= 1);
        /* The workers' caches gave back what the burst left in them. */
        T_CHECK(m1.stacks_cached > 0 && m1.task_slots_cached > 0);
        T_CHECK_EQ(m2.stacks_cached, 0);
        T_CHECK_EQ(m2.task_slots_cached, 0);
        /* The second round reuses what the first gave back: no new stacks. */
        if (round == 1)
            T_CHECK_EQ(m1.s.stacks_reserved, m0.s.stacks_reserved);
        if (!T_SANITIZED) {
            /* The sanitizers keep shadow memory for what they saw. */
            long rss2 = rss_kib();
            T_CHECK(rss1 - rss0 > (long)BURST * TOUCH / 1024 / 2);
            T_CHECK(rss1 - rss2 > (long)BURST * TOUCH / 1024 / 2);
        }
    }
    return NULL;
}

static void test_trim_after_idle(void **state)
{
    (void)state;
    setenv("WEFT_TRIM_MS", "200", 1);
    run_main(idle_main);
}

static void test_trim_after_idle_mprotect(void **state)
{
    (void)state;
    setenv("WEFT_TRIM_MS", "200", 1);
    setenv("WEFT_GUARD", "mprotect", 1);
    run_main(idle_main);
}

/* Bursts every 50 ms with a 400 ms window (x4 under a sanitizer): none is
 * trimmed away. */
static void *regular_main(void *arg)
{
    (void)arg;
    memsnap m0 = mem();
    int64_t end = weft_now() + 1500 * WEFT_MS * T_SLACK;
    int rounds = 0;
    while (weft_now() < end) {
        burst(BURST / 3);
        weft_sleep(50 * WEFT_MS);
        rounds++;
    }
    memsnap m1 = mem();
    T_CHECK(rounds >= 3);
    T_CHECK_EQ(m1.s.stacks_trimmed, m0.s.stacks_trimmed);
    /* Once they stop, the same process trims (the check above can fail). */
    int64_t deadline = weft_now() + 4 * WEFT_SEC * T_SLACK;
    while (weft_now() < deadline && mem().s.stacks_trimmed == m1.s.stacks_trimmed)
        weft_sleep(20 * WEFT_MS);
    T_CHECK(mem().s.stacks_trimmed > m1.s.stacks_trimmed);
    return NULL;
}

static void test_regular_bursts_kept(void **state)
{
    (void)state;
    /* The window must outlast a burst, which a sanitizer slows down. */
    char window[16];
    snprintf(window, sizeof window, "%d", 400 * T_SLACK);
    setenv("WEFT_TRIM_MS", window, 1);
    run_main(regular_main);
}

static void *off_main(void *arg)
{
    (void)arg;
    burst(BURST);
    weft_sleep(300 * WEFT_MS);
    memsnap m = mem();
    T_CHECK_EQ(m.s.stacks_trimmed, 0);
    T_CHECK_EQ(m.s.slabs_trimmed, 0);
    T_CHECK_EQ(m.s.stacks_idle_clean, 0);
    return NULL;
}

static void test_trim_off(void **state)
{
    (void)state;
    setenv("WEFT_TRIM_MS", "0", 1);
    run_main(off_main);
}

static void *nothing(void *arg) { return arg; }

static void test_trim_env_bad(void **state)
{
    (void)state;
    const char *bad[] = {"-1", "abc", "3600001", "1.5", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("WEFT_TRIM_MS", bad[i], 1);
        t_capture c;
        t_capture_begin(&c);
        int rc = weft_run(nothing, NULL, NULL);
        char *err = t_capture_end(&c);
        assert_int_equal(rc, -EINVAL);
        assert_int_equal(t_lines_with(err, "WEFT_TRIM_MS", NULL), 1);
        free(err);
    }
}

/* ------------------------------------------------------------------ */
/* Address space refused                                               */
/* ------------------------------------------------------------------ */

static void *touch_and_go(void *arg)
{
    volatile char buf[TOUCH];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = (char)i;
    return arg;
}

/* More tasks than stacks fit in what the limit leaves: they start one by
 * one as stacks are freed, and all finish. */
static void *refused_main(void *arg)
{
    (void)arg;
    weft_task *t[8];
    for (int i = 0; i < 8; i++)
        T_CHECK((t[i] = weft_spawn(touch_and_go, (void *)(intptr_t)i)) != NULL);
    for (int i = 0; i < 8; i++) {
        void *r = NULL;
        T_CHECK(weft_join(t[i], &r) == 0);
        T_CHECK(r == (void *)(intptr_t)i);
    }
    return NULL;
}

static int refused_child(void)
{
    /* 1 GiB stacks: the first extent (64 GiB) is refused, then halved
     * down to what fits in the limit: about two stacks. */
    setenv("WEFT_STACK_SIZE", "1G", 1);
    struct rlimit rl;
    long vm = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &vm) != 1)
        return 10;
    fclose(f);
    rlim_t cur = (rlim_t)vm * (rlim_t)sysconf(_SC_PAGESIZE);
    rl.rlim_cur = rl.rlim_max = cur + ((rlim_t)2560 << 20);  /* + 2.5 GiB */
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 11;
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = 1;
    int rc = weft_run_config(&cfg, refused_main, NULL, NULL);
    return rc == 0 ? (atomic_load(&t_failures) ? 12 : 0) : 13;
}

static void test_reservation_refused(void **state)
{
    (void)state;
    if (T_SANITIZED)
        skip();  /* the sanitizers reserve terabytes of shadow: RLIMIT_AS cannot apply */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        alarm(60);  /* a hang is a failure, not a stuck test */
        _exit(refused_child());
    }
    close(p[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t r;
    while ((r = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = 0;
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fprintf(stderr, "[child stderr]\n%s[end]\n", buf);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(t_lines_with(buf, "refused address space for coroutine stacks",
                             "vm.overcommit_memory") >= 1);
}

/* ------------------------------------------------------------------ */
/* Waiting for a stack (WEFT_FAULTS=stacks:1: the first 64 stacks only) */
/* ------------------------------------------------------------------ */

#define HOLDERS 100

typedef struct {
    weft_event go;
    _Atomic int started, finished;
} hold_ctx;

static void *holder(void *arg)
{
    hold_ctx *h = arg;
    atomic_fetch_add(&h->started, 1);
    T_CHECK(weft_event_wait(&h->go, WEFT_FOREVER) == 0);
    atomic_fetch_add(&h->finished, 1);
    return NULL;
}

static uint64_t injected(void)
{
    weft_stats st;
    T_CHECK(weft_stats_get(&st) == 0);
    return st.injected;
}

/* More tasks than stacks: the ones without a stack wait for one, without
 * the workers taking them round and round meanwhile, and start as the
 * others finish. */
static void *stack_wait_main(void *arg)
{
    (void)arg;
    hold_ctx h;
    weft_event_init(&h.go);
    atomic_init(&h.started, 0);
    atomic_init(&h.finished, 0);
    weft_task *t[HOLDERS];
    for (int i = 0; i < HOLDERS; i++)
        T_CHECK((t[i] = weft_spawn(holder, &h)) != NULL);
    /* main has one of the 64 stacks: 63 holders start, the rest wait. */
    int64_t deadline = weft_now() + 2 * WEFT_SEC * T_SLACK;
    while (atomic_load(&h.started) < 63 && weft_now() < deadline)
        weft_sleep(WEFT_MS);
    T_CHECK_EQ(atomic_load(&h.started), 63);
    uint64_t i0 = injected();
    weft_sleep(300 * WEFT_MS);
    uint64_t i1 = injected();
    T_CHECK_EQ(atomic_load(&h.started), 63);
    memsnap m = mem();
    T_CHECK_EQ(m.s.stacks_reserved, 64);
    /* They wait in line: sent back to run only by sysmon's back-off (10,
     * 20, 40, ... ms: a handful), not re-queued through the injection
     * queue each time a worker finds no stack for them. */
    fprintf(stderr, "tasks taken from the injection queue while %d waited 300 ms: %llu\n",
            HOLDERS - 63, (unsigned long long)(i1 - i0));
    T_CHECK(i1 - i0 < 20);
    weft_event_set(&h.go);
    for (int i = 0; i < HOLDERS; i++)
        T_CHECK(weft_join(t[i], NULL) == 0);
    T_CHECK_EQ(atomic_load(&h.finished), HOLDERS);
    weft_event_destroy(&h.go);
    return NULL;
}

static void test_stack_wait(void **state)
{
    (void)state;
    setenv("WEFT_FAULTS", "stacks:1", 1);
    setenv("WEFT_SEED", "1", 1);
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = 2;
    leak_snap snap = leak_snapshot();
    t_capture c;
    t_capture_begin(&c);
    int rc = weft_run_config(&cfg, stack_wait_main, NULL, NULL);
    char *err = t_capture_end(&c);
    unsetenv("WEFT_FAULTS");
    unsetenv("WEFT_SEED");
    assert_int_equal(rc, 0);
    t_assert_checks();
    leak_check(&snap);
    /* Refused again at each back-off (10 ms, doubling): said once a second. */
    assert_int_equal(t_lines_with(err, "refused address space for coroutine stacks", NULL), 1);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_TEST(test_stats),
        T_TEST(test_trim_after_idle),
        T_TEST(test_trim_after_idle_mprotect),
        T_TEST(test_regular_bursts_kept),
        T_TEST(test_trim_off),
        T_TEST(test_trim_env_bad),
        T_TEST(test_reservation_refused),
        T_TEST(test_stack_wait),
    };
    t_warm_up();
    return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
