/*
 * The active worker limit and the CPU quota it follows (runtime/active.c),
 * driven through the runtime's hooks (white-box: the static library and
 * runtime/internal.h): weft__cgroup_root points the quota's files at a
 * fixture tree that the test rewrites while the runtime runs, and
 * weft__quota_period_ns makes sysmon re-read it every 10 ms instead of every
 * second.
 *
 *   test_default_count      the quota rounded up sets the active workers;
 *                           the threads stay one per CPU; pinning off by
 *                           default, WEFT_PIN=1 still pins
 *   test_explicit_wins      WEFT_WORKERS and weft_config.workers: every
 *                           worker active, the quota not followed
 *   test_junk_falls_back    junk in cpu.max: one line, every worker active
 *   test_follows_changes    the quota drops: tasks run only on the active
 *                           worker; rises: the other works again; turns to
 *                           junk: one line, every worker; reads well again
 *   test_drop_with_queued   the limit drops under a worker with 200 tasks
 *                           queued: each runs exactly once, on the active one
 *   test_drop_while_stuck   the same while the leaving worker stays in its
 *                           task: the active one takes the queue (sysmon's
 *                           blocked flag, help_blocked) before it returns
 * The real cgroup: tests/test_quota_real.c; the parser: tests/parts/test_cgroup.c.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

static char root[64];
static unsigned ncpus;  /* weft_workers() without a quota */

/* A fixture tree: the process in /app of a cgroup2 mount whose cpu.max holds
 * text (14 bytes, so that a rewrite in place is never read short). */
static void fixture(const char *text)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/proc/self %s/sys/fs/cgroup/app", root, root);
    assert_int_equal(system(cmd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("0::/app\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("24 1 0:21 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/sys/fs/cgroup/app/cpu.max", root);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Any thread: rewrites cpu.max in place (same inode, same length), as the
 * runtime keeps it open. */
static void set_quota(const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/sys/fs/cgroup/app/cpu.max", root);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text))
        T_CHECK(!"rewrite cpu.max");
    if (fd >= 0)
        close(fd);
}

static int setup(void **state)
{
    t_setup(state);
    snprintf(root, sizeof root, "/tmp/weft-quota-XXXXXX");
    assert_non_null(mkdtemp(root));
    weft__cgroup_root = root;
    weft__quota_period_ns = 10 * WEFT_MS;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    weft__cgroup_root = NULL;
    weft__quota_period_ns = WEFT__QUOTA_PERIOD_NS;
    return t_teardown(state);
}

#define Q_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

typedef struct {
    unsigned workers, active, stats_active;
    bool pin;
    int cpu1;  /* worker 1's pinned CPU, or -1 */
} seen;

static void *look(void *arg)
{
    seen *s = arg;
    s->workers = weft_workers();
    s->active = weft_workers_active();
    weft_stats st;
    T_CHECK_EQ(weft_stats_get(&st), 0);
    s->stats_active = st.active_workers;
    weft__runtime *rt = weft__cur_worker()->rt;
    s->pin = rt->cfg.pin;
    s->cpu1 = rt->nworkers > 1 ? rt->workers[1]->cpu : -1;
    return NULL;
}

static void *count_cpus(void *arg)
{
    (void)arg;
    ncpus = weft_workers();
    return NULL;
}

static void test_default_count(void **state)
{
    (void)state;
    fixture("max 100000\n");
    assert_int_equal(t_run(count_cpus, NULL, NULL), 0);
    seen s;
    assert_int_equal(t_run(look, &s, NULL), 0);
    assert_int_equal(s.workers, ncpus);
    assert_int_equal(s.active, ncpus);
    assert_true(s.pin);

    set_quota("050000 100000\n");  /* half a CPU: 1 */
    assert_int_equal(t_run(look, &s, NULL), 0);
    assert_int_equal(s.workers, ncpus);  /* the threads: one per CPU still */
    assert_int_equal(s.active, 1);
    assert_int_equal(s.stats_active, 1);
    if (ncpus > 1) {
        assert_false(s.pin);  /* a quota below the cpuset: unpinned */
        assert_int_equal(s.cpu1, -1);
        setenv("WEFT_PIN", "1", 1);
        assert_int_equal(t_run(look, &s, NULL), 0);
        assert_true(s.pin);
        assert_int_equal(s.active, 1);
        unsetenv("WEFT_PIN");
    }
    set_quota("150000 100000\n");  /* 1.5 CPUs: 2, within the cpuset */
    assert_int_equal(t_run(look, &s, NULL), 0);
    assert_int_equal(s.active, ncpus < 2 ? ncpus : 2);
    assert_true(s.pin == (ncpus <= 2));
    assert_int_equal(weft_workers_active(), 0);  /* outside a runtime */
}

static void test_explicit_wins(void **state)
{
    (void)state;
    fixture("100000 100000\n");
    seen s;
    assert_int_equal(t_run_workers(3, look, &s, NULL), 0);
    assert_int_equal(s.workers, 3);
    assert_int_equal(s.active, 3);
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = 2;
    assert_int_equal(t_run_config(&cfg, look, &s, NULL), 0);
    assert_int_equal(s.active, 2);
}

static void test_junk_falls_back(void **state)
{
    (void)state;
    fixture("banana\n");
    assert_int_equal(t_run(count_cpus, NULL, NULL), 0);
    seen s;
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run(look, &s, NULL);
    char *err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(s.active, ncpus);
    assert_int_equal(t_count_lines(err), 1);
    assert_int_equal(t_lines_with(err, "/sys/fs/cgroup/app/cpu.max holds \"banana\"",
                                  "CPU quota ignored"),
                     1);
    free(err);
}

/* ------------------------------------------------------------------ */
/* Following changes                                                   */
/* ------------------------------------------------------------------ */

/* From a coroutine: waits (bounded) until the limit is n and every worker
 * beyond it sleeps as excess. */
static bool settle(unsigned n)
{
    weft__runtime *rt = weft__cur_worker()->rt;
    for (int i = 0; i < 10000 * T_SLACK; i++) {  /* 10 s: a loaded machine */
        bool ok = weft_workers_active() == n;
        for (unsigned k = n; ok && k < rt->nworkers; k++)
            ok = atomic_load(&rt->workers[k]->excess);
        if (ok)
            return true;
        weft_sleep(WEFT_MS);
    }
    return false;
}

#define TASKS 400
static _Atomic int ran[TASKS];
static _Atomic int off_worker;  /* runs seen on a worker at or above this id */
static _Atomic unsigned first_excess;

static void *yielder(void *arg)
{
    int i = (int)(intptr_t)arg;
    for (int k = 0; k < 3; k++) {
        if ((unsigned)weft_worker_id() >= atomic_load(&first_excess))
            atomic_fetch_add(&off_worker, 1);
        weft_yield();
    }
    atomic_fetch_add(&ran[i], 1);
    return NULL;
}

/* Spawns TASKS yielders, joins them; each ran once. */
static void run_batch(void)
{
    static weft_task *h[TASKS];
    for (int i = 0; i < TASKS; i++) {
        atomic_store(&ran[i], 0);
        h[i] = weft_spawn(yielder, (void *)(intptr_t)i);
        T_CHECK(h[i] != NULL);
    }
    for (int i = 0; i < TASKS; i++) {
        if (h[i])
            T_CHECK_EQ(weft_join(h[i], NULL), 0);
        T_CHECK_EQ(atomic_load(&ran[i]), 1);
    }
}

static uint64_t runs_on(unsigned w)
{
    weft_stats st;
    T_CHECK_EQ(weft_stats_get(&st), 0);
    return w < st.workers ? st.worker[w].tasks_run : 0;
}

static void *spinner(void *arg)
{
    (void)arg;
    t_spin_ms(1);
    return NULL;
}

static void *follow_main(void *arg)
{
    (void)arg;
    T_CHECK(settle(2));
    set_quota("100000 100000\n");
    T_CHECK(settle(1));
    atomic_store(&first_excess, 1);
    atomic_store(&off_worker, 0);
    uint64_t before = runs_on(1);
    run_batch();
    T_CHECK_EQ(runs_on(1), before);  /* the excess worker ran nothing */
    T_CHECK_EQ(atomic_load(&off_worker), 0);

    set_quota("200000 100000\n");
    T_CHECK(settle(2));
    atomic_store(&first_excess, 1000);
    before = runs_on(1);
    /* CPU-bound tasks spread to the returning worker (bounded wait). */
    for (int round = 0; round < 200 * T_SLACK && runs_on(1) == before; round++) {
        weft_task *h[8];
        for (int i = 0; i < 8; i++)
            h[i] = weft_spawn(spinner, NULL);
        for (int i = 0; i < 8; i++)
            weft_join(h[i], NULL);
    }
    T_CHECK(runs_on(1) > before);

    set_quota("100000 100000\n");
    T_CHECK(settle(1));
    set_quota("banana 100000\n");  /* junk: one line, every worker again */
    T_CHECK(settle(2));
    weft_sleep(50 * WEFT_MS);      /* several more reads: still one line */
    set_quota("100000 100000\n");  /* reads well again: followed again */
    T_CHECK(settle(1));
    run_batch();
    return NULL;
}

static void test_follows_changes(void **state)
{
    (void)state;
    fixture("200000 100000\n");
    assert_int_equal(t_run(count_cpus, NULL, NULL), 0);
    if (ncpus < 2)
        skip();  /* one CPU: no second worker to park and bring back */
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run(follow_main, NULL, NULL);
    char *err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(t_count_lines(err), 1);
    assert_int_equal(t_lines_with(err, "cpu.max holds \"banana 100000\"", NULL), 1);
    free(err);
}

/* ------------------------------------------------------------------ */
/* The limit drops while tasks are queued on the leaving worker        */
/* ------------------------------------------------------------------ */

#define QUEUED 200
static _Atomic int queued_ran[QUEUED];
static _Atomic int queued_where[QUEUED];
static _Atomic bool dropped;
static _Atomic int queued_done;
static bool stuck;  /* the dropper holds its worker until the queue has run elsewhere */
static weft_task *queued_h[QUEUED];

static void *queued(void *arg)
{
    int i = (int)(intptr_t)arg;
    atomic_store(&queued_where[i], weft_worker_id());
    weft_yield();
    if (weft_worker_id() != 0)
        atomic_store(&queued_where[i], weft_worker_id());
    atomic_fetch_add(&queued_ran[i], 1);
    atomic_fetch_add(&queued_done, 1);
    return NULL;
}

/* Runs on worker 1 (worker 0 is held by main's spin): queues QUEUED tasks
 * on its own worker, then makes itself excess. */
static void *dropper(void *arg)
{
    (void)arg;
    T_CHECK_EQ(weft_worker_id(), 1);
    atomic_store(&queued_done, 0);
    for (int i = 0; i < QUEUED; i++) {
        atomic_store(&queued_ran[i], 0);
        atomic_store(&queued_where[i], -1);
        queued_h[i] = weft_spawn(queued, (void *)(intptr_t)i);
    }
    T_CHECK(weft__runq_len(weft__cur_worker()) > QUEUED / 2);
    weft__active_set(weft__cur_worker()->rt, 1);
    atomic_store(&dropped, true);
    if (stuck) {
        /* No suspension point: the queue cannot be handed off by us; sysmon
         * flags us blocked and worker 0 takes it (help_blocked). */
        int64_t end = weft_now() + 10 * WEFT_SEC * T_SLACK;
        while (atomic_load(&queued_done) < QUEUED && weft_now() < end)
            ;
        T_CHECK_EQ(atomic_load(&queued_done), QUEUED);
    }
    return NULL;
}

static _Atomic bool driving;

/* On worker 0: holds it while worker 1 runs the dropper. */
static void *drive_drop(void *arg)
{
    (void)arg;
    atomic_store(&driving, true);
    T_CHECK_EQ(weft_worker_id(), 0);
    atomic_store(&dropped, false);
    weft_task *d = weft_spawn(dropper, NULL);
    /* Hold worker 0 without a suspension point: sysmon flags it blocked
     * and worker 1 takes the dropper from its runnext. */
    int64_t end = weft_now() + 5 * WEFT_SEC * T_SLACK;
    while (!atomic_load(&dropped) && weft_now() < end)
        ;
    T_CHECK(atomic_load(&dropped));
    T_CHECK_EQ(weft_join(d, NULL), 0);
    for (int i = 0; i < QUEUED; i++) {
        T_CHECK(queued_h[i] != NULL);
        if (queued_h[i])
            T_CHECK_EQ(weft_join(queued_h[i], NULL), 0);
        T_CHECK_EQ(atomic_load(&queued_ran[i]), 1);
        T_CHECK_EQ(atomic_load(&queued_where[i]), 0);
    }
    T_CHECK_EQ(weft_workers_active(), 1);
    return NULL;
}

static void *drop_main(void *arg)
{
    if (weft_worker_id() == 0)
        return drive_drop(arg);
    /* main landed on worker 1: hold it until worker 0 has taken a driver
     * from our runnext, then free it (join parks). */
    atomic_store(&driving, false);
    weft_task *h = weft_spawn(drive_drop, NULL);
    int64_t end = weft_now() + 5 * WEFT_SEC * T_SLACK;
    while (!atomic_load(&driving) && weft_now() < end)
        ;
    T_CHECK_EQ(weft_join(h, NULL), 0);
    return NULL;
}

static void test_drop_with_queued(void **state)
{
    (void)state;
    fixture("max 100000\n");
    stuck = false;
    assert_int_equal(t_run_workers(2, drop_main, NULL, NULL), 0);
}

static void test_drop_while_stuck(void **state)
{
    (void)state;
    fixture("max 100000\n");
    stuck = true;
    assert_int_equal(t_run_workers(2, drop_main, NULL, NULL), 0);
}

int main(void)
{
    t_warm_up();
    const struct CMUnitTest tests[] = {
        Q_TEST(test_default_count),   Q_TEST(test_explicit_wins),    Q_TEST(test_junk_falls_back),
        Q_TEST(test_follows_changes), Q_TEST(test_drop_with_queued),
        Q_TEST(test_drop_while_stuck),
    };
    return cmocka_run_group_tests_name("quota", tests, NULL, NULL);
}
