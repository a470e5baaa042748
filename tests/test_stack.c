/*
 * test_stack: coroutine stacks.
 *  - A stack overflow hits the guard page and is reported: the process dies
 *    by SIGABRT after one stderr line naming the task, its stack size and
 *    WEFT_STACK_SIZE (guard by MADV_GUARD_INSTALL where the kernel has it,
 *    and with WEFT_GUARD=mprotect).  Run in a forked child.
 *  - Other faults are not mistaken for overflows: they reach the handler
 *    installed before weft's, or the default action.
 *  - 100,000 coroutines alive at once (all waiting on one event) with the
 *    default vm.max_map_count.
 * Skipped (exit code 77) under sanitizers, which own the fault handling and
 * cannot afford 100,000 fibers.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Running a scenario in a child process                                */
/* ------------------------------------------------------------------ */

typedef struct child_result {
    int status;
    char *err;   /* the child's stderr */
} child_result;

/* Forks; the child runs fn with stderr on a pipe and exits with its value. */
static child_result run_child(int (*fn)(void *), void *arg)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);  /* no core dump for the expected abort */
        signal(SIGSEGV, SIG_DFL);     /* not cmocka's handlers */
        signal(SIGBUS, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        _exit(fn(arg));
    }
    close(p[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = read(p[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    close(p[0]);
    child_result r = {0, buf};
    while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR)
        ;
    if (len)
        fprintf(stderr, "[child stderr]\n%s[end of child stderr]\n", buf);
    return r;
}

/* ------------------------------------------------------------------ */
/* Stack overflow                                                       */
/* ------------------------------------------------------------------ */

static volatile int sink;

static __attribute__((noinline)) int recurse(int depth)
{
    volatile char frame[256];
    frame[0] = (char)depth;
    frame[255] = (char)depth;
    if (depth > 100000000)
        return frame[0];
    return recurse(depth + 1) + frame[255];
}

static void *deep_task(void *arg)
{
    (void)arg;
    sink = recurse(0);
    return NULL;
}

static void *noop(void *arg)
{
    return arg;
}

static void *overflow_main(void *arg)
{
    (void)arg;
    /* a task that ran and finished first, so the stack may be a reused one */
    weft_join(weft_spawn(noop, NULL), NULL);
    weft_task *t = weft_spawn_named("deep-recursion", deep_task, NULL);
    weft_join(t, NULL);
    return NULL;
}

typedef struct overflow_args {
    const char *stack_size;
    const char *guard;   /* WEFT_GUARD or NULL */
} overflow_args;

static int overflow_child(void *p)
{
    overflow_args *a = p;
    t_env_reset();
    setenv("WEFT_STACK_SIZE", a->stack_size, 1);
    setenv("WEFT_WORKERS", "2", 1);
    if (a->guard)
        setenv("WEFT_GUARD", a->guard, 1);
    int rc = weft_run(overflow_main, NULL, NULL);
    fprintf(stderr, "child: weft_run returned %d after the recursion\n", rc);
    return 3;
}

static void expect_overflow(const char *stack_size, const char *bytes, const char *guard)
{
    overflow_args a = {stack_size, guard};
    child_result r = run_child(overflow_child, &a);
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGABRT)
        print_error("child status %#x: expected death by SIGABRT\n", r.status);
    assert_true(WIFSIGNALED(r.status));
    assert_int_equal(WTERMSIG(r.status), SIGABRT);
    assert_int_equal(t_count_lines(r.err), 1);
    assert_int_equal(t_lines_with(r.err, "stack overflow", "WEFT_STACK_SIZE"), 1);
    assert_int_equal(t_lines_with(r.err, "stack overflow", "deep-recursion"), 1);
    assert_int_equal(t_lines_with(r.err, "stack overflow", bytes), 1);
    free(r.err);
}

static void test_stack_overflow(void **state)
{
    (void)state;
    expect_overflow("64K", "65536", NULL);
    expect_overflow("16K", "16384", NULL);
}

static void test_stack_overflow_mprotect(void **state)
{
    (void)state;
    expect_overflow("64K", "65536", "mprotect");
    expect_overflow("32K", "32768", "mprotect");
}

/* ------------------------------------------------------------------ */
/* Other faults are not overflows                                        */
/* ------------------------------------------------------------------ */

static void *bad_deref(void *arg)
{
    (void)arg;
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 1;
    return NULL;
}

static void *fault_main(void *arg)
{
    (void)arg;
    weft_join(weft_spawn_named("faulty", bad_deref, NULL), NULL);
    return NULL;
}

static int fault_default_child(void *p)
{
    (void)p;
    t_env_reset();
    weft_run(fault_main, NULL, NULL);
    return 3;
}

static void on_segv(int sig)
{
    (void)sig;
    static const char msg[] = "previous handler ran\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(42);
}

static int fault_handler_child(void *p)
{
    (void)p;
    t_env_reset();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    weft_run(fault_main, NULL, NULL);
    return 3;
}

static void test_other_faults_pass_through(void **state)
{
    (void)state;
    child_result r = run_child(fault_default_child, NULL);
    assert_true(WIFSIGNALED(r.status));
    assert_int_equal(WTERMSIG(r.status), SIGSEGV);
    assert_null(strstr(r.err, "stack overflow"));
    free(r.err);

    r = run_child(fault_handler_child, NULL);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 42);
    assert_int_equal(t_lines_with(r.err, "previous handler ran", NULL), 1);
    assert_null(strstr(r.err, "stack overflow"));
    free(r.err);
}

/* A run after the overflow tests (in children) leaves the handlers as they
 * were: weft's handler is installed only while a runtime runs. */
static void test_handler_restored(void **state)
{
    (void)state;
    struct sigaction before, after;
    sigaction(SIGSEGV, NULL, &before);
    assert_int_equal(t_run(noop, NULL, NULL), 0);
    sigaction(SIGSEGV, NULL, &after);
    assert_true(before.sa_handler == after.sa_handler);
}

/* ------------------------------------------------------------------ */
/* 100,000 coroutines alive at once                                      */
/* ------------------------------------------------------------------ */

enum { MANY = 100000 };

typedef struct many_ctx {
    weft_event ev;
    _Atomic int waiting;
    _Atomic int finished;
    int maps_at_peak;
    int alive_at_peak;
} many_ctx;

static void *many_waiter(void *arg)
{
    many_ctx *c = arg;
    atomic_fetch_add(&c->waiting, 1);
    int rc = weft_event_wait(&c->ev, WEFT_FOREVER);
    atomic_fetch_add(&c->finished, 1);
    return (void *)(intptr_t)rc;
}

static void *many_main(void *arg)
{
    many_ctx *c = arg;
    weft_event_init(&c->ev);
    weft_task **t = malloc(sizeof *t * MANY);
    for (int i = 0; i < MANY; i++) {
        t[i] = weft_spawn(many_waiter, c);
        T_CHECK(t[i] != NULL);
        if (!t[i])
            return NULL;
    }
    int64_t give_up = weft_now() + 120 * WEFT_SEC;
    while (atomic_load(&c->waiting) < MANY && weft_now() < give_up)
        weft_sleep(5 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&c->waiting), MANY);
    c->alive_at_peak = atomic_load(&c->waiting) - atomic_load(&c->finished);
    c->maps_at_peak = leak_count_maps();
    weft_event_set(&c->ev);
    void **res = malloc(sizeof *res * MANY);
    T_CHECK_EQ(weft_gather(t, MANY, res), 0);
    int bad = 0;
    for (int i = 0; i < MANY; i++)
        bad += res[i] != NULL;
    T_CHECK_EQ(bad, 0);
    T_CHECK_EQ(atomic_load(&c->finished), MANY);
    free(res);
    free(t);
    weft_event_destroy(&c->ev);
    return NULL;
}

static void test_100k_coroutines(void **state)
{
    (void)state;
    many_ctx *c = calloc(1, sizeof *c);
    t_capture cap;
    t_capture_begin(&cap);
    int rc = t_run_workers(2, many_main, c, NULL);
    char *err = t_capture_end(&cap);
    assert_int_equal(rc, 0);
    assert_int_equal(c->alive_at_peak, MANY);
    print_message("100000 coroutines alive: %d lines in /proc/self/maps\n", c->maps_at_peak);
    free(err);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_TEST(test_stack_overflow),
        T_TEST(test_stack_overflow_mprotect),
        T_TEST(test_other_faults_pass_through),
        T_TEST(test_handler_restored),
        T_TEST(test_100k_coroutines),
    };
    if (T_SANITIZED) {
        fprintf(stderr, "test_stack: skipped under a sanitizer\n");
        return 77;
    }
    t_warm_up();
    return cmocka_run_group_tests_name("stack", tests, NULL, NULL);
}
