/*
 * test_membarrier: the owner's plain take of runnext and what happens when
 * membarrier(2) is refused (runtime/runq.c, "Taking runnext";
 * docs/environment.md, WEFT_MEMBARRIER).
 *
 * Each test runs in a forked child, because a seccomp filter cannot be
 * taken off.  The probe is a task in a blocked worker's runnext: a coroutine
 * spawns one (it goes to its own worker's LIFO slot, and nobody is woken
 * for it) and then blocks its thread.  Sysmon flags the worker blocked and
 * wakes the other, which steals the task from the slot (sched.c essay, 6):
 *  - control: membarrier allowed; the task is rescued;
 *  - refused before the runtime starts: the runtime falls back to the
 *    exchange, and the task is still rescued;
 *  - refused while the runtime runs (a filter added on all threads): the
 *    thieves' fences fail, so they give up runnext steals; the task waits
 *    for its own worker, and runs once when the block ends.
 * Each also runs a spawn, yield and queue ping-pong workload and counts
 * that nothing is lost or run twice.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "testutil.h"

#if defined(__x86_64__)
#define T_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define T_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

enum { ALLOW, REFUSE_ALL, REFUSE_FENCE };

/* Installs a filter that makes membarrier fail with EPERM: every command
 * (REFUSE_ALL) or only the fence (REFUSE_FENCE: registration still
 * works).  all_threads: on every thread of the process (TSYNC), else on
 * the caller and the threads it creates later.  0, or -1 where seccomp
 * cannot be used here. */
static int refuse_membarrier(int what, bool all_threads)
{
#ifdef T_AUDIT_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* The command's low 32 bits (little-endian). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, what == REFUSE_ALL ? SECCOMP_RET_ERRNO | EPERM
                                                     : SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                   all_threads ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog) == 0 ? 0 : -1;
#else
    (void)what;
    (void)all_threads;
    return -1;
#endif
}

/* ------------------------------------------------------------------ */
/* The probe: a task in a blocked worker's runnext                      */
/* ------------------------------------------------------------------ */

static _Atomic int b_runs;
static _Atomic int b_worker;

static void *probe_task(void *arg)
{
    (void)arg;
    atomic_store(&b_worker, weft_worker_id());
    atomic_fetch_add(&b_runs, 1);
    return NULL;
}

/* Steal attempts made by workers other than worker me (or -1 where the
 * counters are compiled out). */
static long long others_attempts(int me)
{
    static weft_stats st;
    if (weft_stats_get(&st) != 0)
        return -1;
    long long n = 0;
    for (unsigned i = 0; i < st.workers; i++)
        if ((int)i != me)
            n += (long long)st.worker[i].steal_attempts;
    return n;
}

/* From a coroutine: spawns the probe into this worker's runnext, then
 * blocks the thread (never suspends) until the probe has run or limit_ms
 * have passed, and, with until_tried, for as long after (up to 10 s) as no
 * other worker has tried a steal.  Returns whether it ran meanwhile; it has
 * run exactly once when this returns either way. */
static bool block_for_probe(long limit_ms, bool until_tried, long long *attempts)
{
    atomic_store(&b_runs, 0);
    atomic_store(&b_worker, -1);
    int me = weft_worker_id();  /* the join below may resume elsewhere */
    long long a0 = others_attempts(me), a1 = a0;
    weft_task *b = weft_spawn(probe_task, NULL);
    T_CHECK(b != NULL);
    int64_t start = t_mono_ns(), end = start + limit_ms * WEFT_MS;
    int64_t end_tried = start + 10 * WEFT_SEC;
    for (;;) {
        a1 = others_attempts(me);
        int64_t now = t_mono_ns();
        if (atomic_load(&b_runs) ||
            (now >= end && (!until_tried || a0 < 0 || a1 > a0 || now >= end_tried)))
            break;
        t_nap_ms(1);
    }
    bool ran = atomic_load(&b_runs) > 0;
    *attempts = a0 < 0 || a1 < 0 ? -1 : a1 - a0;
    T_CHECK_EQ(weft_join(b, NULL), 0);
    T_CHECK_EQ(atomic_load(&b_runs), 1);
    if (ran)
        T_CHECK(atomic_load(&b_worker) != me);
    return ran;
}

/* ------------------------------------------------------------------ */
/* The workload: nothing lost, nothing run twice                        */
/* ------------------------------------------------------------------ */

#define SPAWNS 2000
#define YIELDS 10
#define MESSAGES 20000
static _Atomic long steps;
static _Atomic int ran_once[SPAWNS];

static void *yielder(void *arg)
{
    for (int i = 0; i < YIELDS; i++) {
        atomic_fetch_add(&steps, 1);
        weft_yield();
    }
    atomic_fetch_add(&ran_once[(intptr_t)arg], 1);
    return arg;
}

static void *ponger(void *arg)
{
    weft_queue **qs = arg;
    long sum = 0;
    for (int i = 0; i < MESSAGES; i++) {
        void *m = NULL;
        T_CHECK_EQ(weft_queue_get(qs[0], &m, WEFT_FOREVER), 0);
        sum += (long)(intptr_t)m;
        T_CHECK_EQ(weft_queue_put(qs[1], m, WEFT_FOREVER), 0);
    }
    return (void *)(intptr_t)sum;
}

static void workload(void)
{
    atomic_store(&steps, 0);
    for (int i = 0; i < SPAWNS; i++)
        atomic_store(&ran_once[i], 0);
    static weft_task *ts[SPAWNS];
    for (int i = 0; i < SPAWNS; i++)
        T_CHECK((ts[i] = weft_spawn(yielder, (void *)(intptr_t)i)) != NULL);
    for (int i = 0; i < SPAWNS; i++) {
        void *r = NULL;
        T_CHECK_EQ(weft_join(ts[i], &r), 0);
        T_CHECK_EQ((intptr_t)r, i);
        T_CHECK_EQ(atomic_load(&ran_once[i]), 1);
    }
    T_CHECK_EQ(atomic_load(&steps), (long)SPAWNS * YIELDS);

    weft_queue *qs[2] = {weft_queue_new(WEFT_QUEUE_FIFO, 1), weft_queue_new(WEFT_QUEUE_FIFO, 1)};
    T_CHECK(qs[0] && qs[1]);
    weft_task *p = weft_spawn(ponger, qs);
    long sum = 0;
    for (int i = 1; i <= MESSAGES; i++) {
        void *m = NULL;
        T_CHECK_EQ(weft_queue_put(qs[0], (void *)(intptr_t)i, WEFT_FOREVER), 0);
        T_CHECK_EQ(weft_queue_get(qs[1], &m, WEFT_FOREVER), 0);
        T_CHECK_EQ((intptr_t)m, i);
        sum += i;
    }
    void *r = NULL;
    T_CHECK_EQ(weft_join(p, &r), 0);
    T_CHECK_EQ((long)(intptr_t)r, sum);
    weft_queue_free(qs[0]);
    weft_queue_free(qs[1]);
}

/* ------------------------------------------------------------------ */
/* The children                                                        */
/* ------------------------------------------------------------------ */

/* Exit codes of a child: 0 passed, 77 skipped, else the failed step. */
static _Atomic int child_verdict;

static void *child_main(void *arg)
{
    int mode = (int)(intptr_t)arg;
    if (mode == REFUSE_FENCE) {
        if (refuse_membarrier(REFUSE_FENCE, true) != 0) {
            atomic_store(&child_verdict, 77);
            return NULL;
        }
        /* The filter is on every thread now: the thieves' fences fail. */
        T_CHECK_EQ(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0), -1);
        T_CHECK_EQ(errno, EPERM);
    }
    long long attempts = 0;
    if (mode == REFUSE_FENCE) {
        /* No thief may take it: it waits out the whole block. */
        T_CHECK(!block_for_probe(300, true, &attempts));
        /* ...though the other worker tried (else this proves nothing). */
        if (attempts >= 0)
            T_CHECK(attempts > 0);
    } else {
        /* Rescued, with the fence (ALLOW) or the exchange (REFUSE_ALL). */
        T_CHECK(block_for_probe(10000, false, &attempts));
    }
    workload();
    return NULL;
}

static int child(int mode)
{
    alarm(120);  /* a hang is a failure, not a stuck test */
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (mode == REFUSE_FENCE && (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED)))
        return 77;  /* the runtime takes with the exchange here: no fence to refuse */
    if (mode == REFUSE_ALL && refuse_membarrier(REFUSE_ALL, false) != 0)
        return 77;
    int fds = leak_count_fds();
    weft_config cfg = WEFT_CONFIG_DEFAULT;
    cfg.workers = 2;
    int rc = weft_run_config(&cfg, child_main, (void *)(intptr_t)mode, NULL);
    if (atomic_load(&child_verdict))
        return atomic_load(&child_verdict);
    if (rc != 0)
        return 3;
    if (atomic_load(&t_failures))
        return 4;
    if (leak_count_fds() != fds || weft_workers() != 0)
        return 5;
    return 0;
}

static void run_child(int mode)
{
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child(mode));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_membarrier_allowed(void **state)
{
    (void)state;
    run_child(ALLOW);
}

static void test_membarrier_refused_before_start(void **state)
{
    (void)state;
    run_child(REFUSE_ALL);
}

static void test_membarrier_refused_while_running(void **state)
{
    (void)state;
    run_child(REFUSE_FENCE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_TEST(test_membarrier_allowed),
        T_TEST(test_membarrier_refused_before_start),
        T_TEST(test_membarrier_refused_while_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
