/*
 * test_dump: weft_dump and WEFT_DUMP_SIGNAL.
 *
 *  - weft_dump to a temp file (memfd) and to a pipe (drained by a plain
 *    thread), from a coroutine and from a plain thread: a header naming the
 *    worker count, then for every unfinished task one line with its id,
 *    name, state, wait string, time in that state and worker, and for each
 *    suspended coroutine a backtrace through the waiting call (weft_sleep,
 *    weft_event_wait, weft_join...); finished tasks are absent;
 *  - WEFT_DUMP_SIGNAL=USR1: raise(SIGUSR1) in a coroutine and kill() from a
 *    plain thread write the dump to stderr and the program goes on; the
 *    handler that was installed before weft_run is back after it;
 *  - WEFT_DUMP_SIGNAL=bogus (and KILL, 9, 0): weft_run returns -EINVAL with
 *    one stderr line naming the variable; names with or without SIG and
 *    numbers are accepted;
 *  - weft_dump_ex without WEFT_DUMP_RAW (libdw builds): a coroutine
 *    suspended in a static function of this test (-g, no -rdynamic) shows
 *    that function's name and its file:line, from a coroutine and from a
 *    plain thread, where weft_dump shows module(+offset); a frame of a
 *    module without debug information or symbols (nodebug.c, stripped)
 *    reads raw, module(+offset) [address]; every frame line parses;
 *    WEFT_DUMP_SIGNAL's dumps (written by sysmon) are symbolized too;
 *  - -EBADF for a negative fd, -EPERM outside a runtime, -EINVAL for an
 *    unknown flag.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>

#include "obs_test.h"

static weft_event gate;

static void *wait_gate(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_event_wait(&gate, WEFT_FOREVER);
}

static void *long_sleep(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_sleep(3600 * WEFT_SEC);
}

static void *joiner(void *arg)
{
    weft_task *t = weft_spawn_named("d-join-target", wait_gate, arg);
    return (void *)(intptr_t)weft_join(t, NULL);
}

static void *quick(void *arg)
{
    return arg;
}

/* nodebug.c: calls fn(arg) through a static function of a stripped module. */
void *nodebug_call(void *(*fn)(void *), void *arg);

static int sym_wait_line;

/* A static function (not in .dynsym: no -rdynamic) where a coroutine
 * waits; the line of its call is kept for the check. */
static __attribute__((noinline)) void *sym_static_waiter(void *arg)
{
    (void)arg;
    sym_wait_line = __LINE__; intptr_t r = weft_event_wait(&gate, WEFT_FOREVER);
    __asm__ volatile("" ::: "memory");
    return (void *)r;
}

static void *via_nodebug(void *arg)
{
    void *r = nodebug_call(wait_gate, arg);
    __asm__ volatile("" ::: "memory");
    return r;
}

/* One frame line of a dump, as weft_dump or weft_dump_ex write it:
 *     module(symbol+0xoff)[0xaddr]            (raw, backtrace_symbols_fd)
 *     module(+0xoff) [0xaddr]                 (raw in a readable dump)
 *     module(function+0xoff) [0xaddr] at file:line (inlined f from file:line)...
 *     [0xaddr]                                (an address in no module)
 * true when l (without its newline) is one of these. */
static bool frame_line_ok(const char *l)
{
    const char *p = l;
    if (*l != '[') {  /* "[0xaddr]" alone: an address in no module */
        const char *open = strchr(l, '(');
        const char *close = open ? strchr(open, ')') : NULL;
        if (!open || open == l || !close)
            return false;
        const char *plus = memchr(open, '+', (size_t)(close - open));
        if (!plus || strncmp(plus, "+0x", 3) != 0)
            return false;
        p = close + 1;
    }
    if (*p == ' ')
        p++;
    if (strncmp(p, "[0x", 3) != 0)
        return false;
    p += 3;
    if (!isxdigit((unsigned char)*p))
        return false;
    while (isxdigit((unsigned char)*p))
        p++;
    if (*p++ != ']')
        return false;
    if (strncmp(p, " at ", 4) == 0) {
        const char *colon = strchr(p + 4, ':');
        if (!colon || !isdigit((unsigned char)colon[1]))
            return false;
        p = colon + 1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    while (strncmp(p, " (inlined ", 10) == 0) {
        const char *e = strchr(p, ')');
        if (!e)
            return false;
        p = e + 1;
    }
    return *p == '\0';
}

/* Some line of b holds a and ends with z (z ends with a newline). */
static __attribute__((unused)) bool line_has(const char *b, const char *a, const char *z)
{
    for (const char *l = b; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) + 1 : strlen(l);
        char *line = strndup(l, n);
        size_t zn = strlen(z);
        bool ok = strstr(line, a) && n >= zn && strcmp(line + n - zn, z) == 0;
        free(line);
        if (ok)
            return true;
        l += n;
    }
    return false;
}

/* Every line of a task block after its first is a frame line. */
static bool block_frames_ok(const char *b)
{
    const char *nl = strchr(b, '\n');
    int frames = 0;
    while (nl && nl[1]) {
        const char *l = nl + 1;
        nl = strchr(l, '\n');
        char *line = strndup(l, nl ? (size_t)(nl - l) : strlen(l));
        bool ok = frame_line_ok(line);
        if (!ok)
            fprintf(stderr, "not a frame line: '%s'\n", line);
        free(line);
        if (!ok)
            return false;
        frames++;
    }
    return frames > 0;
}

typedef struct scene {
    weft_task *h[4];
    uint64_t id[4];
    uint64_t main_id;
    uint64_t quick_id;
} scene;

static const char *scene_names[4] = {"d-sleeper", "d-event", "d-join", NULL};

/* Coroutine: named waiters plus one unnamed, all suspended; a finished
 * task that must not show. */
static void scene_start(scene *s)
{
    weft_event_init(&gate);
    s->main_id = weft_task_id(weft_self());
    s->h[0] = weft_spawn_named("d-sleeper", long_sleep, NULL);
    s->h[1] = weft_spawn_named("d-event", wait_gate, NULL);
    s->h[2] = weft_spawn_named("d-join", joiner, NULL);
    s->h[3] = weft_spawn(wait_gate, NULL);
    for (int i = 0; i < 4; i++)
        s->id[i] = weft_task_id(s->h[i]);
    weft_task *q = weft_spawn_named("d-finished", quick, NULL);
    s->quick_id = weft_task_id(q);
    T_CHECK_EQ(weft_join(q, NULL), 0);
    T_CHECK(obs_await("d-sleeper", WEFT_TASK_WAITING, "sleep", NULL));
    T_CHECK(obs_await("d-event", WEFT_TASK_WAITING, "event", NULL));
    T_CHECK(obs_await("d-join", WEFT_TASK_WAITING, "join", NULL));
    T_CHECK(obs_await("d-join-target", WEFT_TASK_WAITING, "event", NULL));
    /* Let "for how long" grow past a resolution of milliseconds. */
    weft_sleep(60 * WEFT_MS);
}

static void scene_end(scene *s)
{
    weft_event_set(&gate);
    weft_cancel(s->h[0]);
    T_CHECK_EQ(weft_join(s->h[0], NULL), -ECANCELED);
    for (int i = 1; i < 4; i++)
        T_CHECK_EQ(weft_join(s->h[i], NULL), 0);
    weft_event_destroy(&gate);
}

/* The block of lines of the task with this id ("task <id> ..." up to the
 * blank line), or NULL; malloc'd. */
static char *task_block(const char *dump, uint64_t id)
{
    char head[48];
    snprintf(head, sizeof head, "task %llu ", (unsigned long long)id);
    const char *p = dump;
    while ((p = strstr(p, head))) {
        if (p == dump || p[-1] == '\n')
            break;
        p++;
    }
    if (!p)
        return NULL;
    const char *e = strstr(p, "\n\n");
    size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
    return strndup(p, n);
}

/* Checks the dump of a scene (any thread). */
static void check_dump(const char *d, const scene *s, int workers)
{
    char hdr[80];
    snprintf(hdr, sizeof hdr, "weft: dump of all tasks (%d %s)\n", workers,
             workers == 1 ? "worker" : "workers");
    T_CHECK(strncmp(d, hdr, strlen(hdr)) == 0);
    /* The exported waiting call each frame chain goes through (backtrace
     * symbols name exported functions only; weft_join tail-calls a hidden
     * one, so its frame is not on the stack: NULL). */
    static const char *fn_of[4] = {"weft_sleep", "weft_event_wait", NULL, "weft_event_wait"};
    static const char *wait_of[4] = {"sleep", "event", "join", "event"};
    for (int i = 0; i < 4; i++) {
        char *b = task_block(d, s->id[i]);
        T_CHECK(b != NULL);
        if (!b)
            continue;
        /* First line: task <id> 'name' [waiting, <wait>, <n> ms, worker <k>]: */
        char want[96];
        if (scene_names[i])
            snprintf(want, sizeof want, "task %llu '%s' [waiting, %s, ",
                     (unsigned long long)s->id[i], scene_names[i], wait_of[i]);
        else
            snprintf(want, sizeof want, "task %llu [waiting, %s, ", (unsigned long long)s->id[i],
                     wait_of[i]);
        if (strncmp(b, want, strlen(want)) != 0) {
            fprintf(stderr, "dump block:\n%s\nexpected to start with: %s\n", b, want);
            T_CHECK(false);
        }
        long ms = -1;
        int wk = -1;
        const char *q = b + strlen(want);
        T_CHECK_EQ(sscanf(q, "%ld ms, worker %d]:", &ms, &wk), 2);
        T_CHECK(ms >= 40);     /* they have waited 60 ms at least */
        T_CHECK(ms < 60000);
        T_CHECK(wk >= 0 && wk < workers);
        /* A backtrace: at least two lines of addresses, through the
         * waiting call. */
        T_CHECK(t_count_lines(b) >= 3);
        T_CHECK(obs_count(b, "[0x") >= 2);
        T_CHECK(block_frames_ok(b));
        /* Through the test's own task function. */
        T_CHECK(strstr(b, "test_dump(") != NULL);
        if (fn_of[i] && !strstr(b, fn_of[i])) {
            fprintf(stderr, "dump block of task %d has no %s:\n%s\n", i, fn_of[i], b);
            T_CHECK(false);
        }
        free(b);
    }
    /* The inner target, by name. */
    T_CHECK(strstr(d, "'d-join-target' [waiting, event, ") != NULL);
    /* main runs (or, from a plain thread, waits in its sleep). */
    char *m = task_block(d, s->main_id);
    T_CHECK(m != NULL);
    if (m)
        T_CHECK(strstr(m, "'main' [") != NULL);
    free(m);
    /* The finished task is gone. */
    char *q = task_block(d, s->quick_id);
    T_CHECK(q == NULL);
    free(q);
    T_CHECK(strstr(d, "d-finished") == NULL);
    /* One "task " line per unfinished task: main + 4 + the join target. */
    T_CHECK_EQ(t_lines_with(d, "task ", " ms"), 6);
}

/* ------------------------------------------------------------------ */
/* weft_dump to a file and a pipe                                      */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    char *text;
} drain_arg;

static void *drain_thread(void *arg)
{
    drain_arg *a = arg;
    size_t cap = 1 << 16, n = 0;
    a->text = malloc(cap);
    for (;;) {
        if (n + 4096 + 1 > cap)
            a->text = realloc(a->text, cap *= 2);
        ssize_t r = read(a->fd, a->text + n, 4096);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    a->text[n] = '\0';
    return NULL;
}

typedef struct {
    scene *s;
    int workers;
} dump_thread_arg;

/* A plain thread: dumps to a memfd and checks it. */
static void *dump_from_thread(void *arg)
{
    dump_thread_arg *a = arg;
    int fd = memfd_create("dump", MFD_CLOEXEC);
    T_CHECK(fd >= 0);
    T_CHECK_EQ(weft_dump(fd), 0);
    char *d = obs_read_fd(fd);
    check_dump(d, a->s, a->workers);
    free(d);
    close(fd);
    return NULL;
}

static void *dump_main(void *arg)
{
    (void)arg;
    int workers = (int)weft_workers();
    scene s;
    scene_start(&s);

    /* From the coroutine, to a temp file. */
    char path[] = "/tmp/weft-dump-XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    unlink(path);
    T_CHECK_EQ(weft_dump(fd), 0);
    char *d = obs_read_fd(fd);
    check_dump(d, &s, workers);
    free(d);
    close(fd);

    /* From the coroutine, to a pipe drained by a plain thread. */
    int p[2];
    T_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    drain_arg da = {p[0], NULL};
    t_thread th;
    t_thread_start(&th, drain_thread, &da);
    T_CHECK_EQ(weft_dump(p[1]), 0);
    close(p[1]);
    t_thread_await(&th);
    close(p[0]);
    check_dump(da.text, &s, workers);
    /* Show one in the test log. */
    fprintf(stderr, "---- sample dump ----\n%s---- end of dump ----\n", da.text);
    free(da.text);

    /* From a plain thread. */
    dump_thread_arg ta = {&s, workers};
    obs_in_thread(dump_from_thread, &ta);

    /* The readable form holds the same (a superset of each frame line). */
    fd = memfd_create("dump", MFD_CLOEXEC);
    T_CHECK(fd >= 0);
    T_CHECK_EQ(weft_dump_ex(fd, 0), 0);
    d = obs_read_fd(fd);
    check_dump(d, &s, workers);
    free(d);
    close(fd);

    T_CHECK_EQ(weft_dump(-1), -EBADF);
    T_CHECK_EQ(weft_dump_ex(-1, 0), -EBADF);
    T_CHECK_EQ(weft_dump_ex(2, 0x80), -EINVAL);
    scene_end(&s);
    return NULL;
}

static void test_dump_file_and_pipe(void **state)
{
    OBS_BEGIN(30);
    assert_int_equal(t_run_workers(2, dump_main, NULL, NULL), 0);
}

static void test_dump_one_worker(void **state)
{
    OBS_BEGIN(30);
    assert_int_equal(t_run_workers(1, dump_main, NULL, NULL), 0);
}

static void *dump_outside_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_dump(2);
}

static void test_dump_errors(void **state)
{
    OBS_BEGIN(10);
    assert_int_equal(weft_dump(2), -EPERM);
    assert_int_equal(weft_dump(-1), -EBADF);
    assert_int_equal(weft_dump_ex(2, 0), -EPERM);
    assert_int_equal(weft_dump_ex(2, WEFT_DUMP_RAW), -EPERM);
    assert_int_equal(weft_dump_ex(-1, 0), -EBADF);
    assert_int_equal(weft_dump_ex(2, 0x2), -EINVAL);
    assert_int_equal(weft_dump_ex(2, ~0u), -EINVAL);
    pthread_t th;
    void *r;
    assert_int_equal(pthread_create(&th, NULL, dump_outside_thread, NULL), 0);
    pthread_join(th, &r);
    assert_int_equal((intptr_t)r, -EPERM);
}

/* ------------------------------------------------------------------ */
/* weft_dump_ex: function, file and line                               */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t sym_id, nodebug_id;
    char *raw, *readable, *from_thread;
} sym_scene;

static void *dump_ex_to_string(void *arg)
{
    char **out = arg;
    int fd = memfd_create("dump", MFD_CLOEXEC);
    T_CHECK(fd >= 0);
    T_CHECK_EQ(weft_dump_ex(fd, 0), 0);
    *out = obs_read_fd(fd);
    close(fd);
    return NULL;
}

static void *sym_main(void *arg)
{
    sym_scene *sc = arg;
    weft_event_init(&gate);
    weft_task *a = weft_spawn_named("d-sym", sym_static_waiter, NULL);
    weft_task *b = weft_spawn_named("d-nodebug", via_nodebug, NULL);
    sc->sym_id = weft_task_id(a);
    sc->nodebug_id = weft_task_id(b);
    T_CHECK(obs_await("d-sym", WEFT_TASK_WAITING, "event", NULL));
    T_CHECK(obs_await("d-nodebug", WEFT_TASK_WAITING, "event", NULL));
    int fd = memfd_create("dump", MFD_CLOEXEC);
    T_CHECK(fd >= 0);
    T_CHECK_EQ(weft_dump(fd), 0);
    sc->raw = obs_read_fd(fd);
    close(fd);
    dump_ex_to_string(&sc->readable);            /* from a coroutine */
    obs_in_thread(dump_ex_to_string, &sc->from_thread);  /* from a plain thread */
    weft_event_set(&gate);
    T_CHECK_EQ(weft_join(a, NULL), 0);
    T_CHECK_EQ(weft_join(b, NULL), 0);
    weft_event_destroy(&gate);
    return NULL;
}

/* The readable blocks of d-sym and d-nodebug in dump d. */
static void check_readable(const char *d, const sym_scene *sc)
{
    char *b = task_block(d, sc->sym_id);
    assert_non_null(b);
    assert_true(block_frames_ok(b));
    char want[96];
#if WEFT_TEST_SYMBOLIZE
    /* The static function, its file and the line of its waiting call. */
    snprintf(want, sizeof want, "test_dump.c:%d\n", sym_wait_line);
    if (!line_has(b, "(sym_static_waiter+0x", want)) {
        fprintf(stderr, "block of d-sym:\n%s\nwants sym_static_waiter at %s", b, want);
        fail();
    }
    /* libweft's own frames: the exported call, with its file. */
    assert_int_equal(t_lines_with(b, "(weft_event_wait+0x", "] at /"), 1);
#else
    (void)want;
    assert_null(strstr(b, " at "));   /* no symbolizer: the raw form */
#endif
    free(b);
    /* The stripped module: its static frame raw, its exported one named
     * (.dynsym), neither with a file. */
    b = task_block(d, sc->nodebug_id);
    assert_non_null(b);
    assert_true(block_frames_ok(b));
    if (t_lines_with(b, "libweft_test_nodebug.so(+0x", "[0x") != 1 ||
        t_lines_with(b, "libweft_test_nodebug.so(nodebug_call+0x", NULL) != 1 ||
        t_lines_with(b, "libweft_test_nodebug.so(", " at ") != 0) {
        fprintf(stderr, "block of d-nodebug:\n%s", b);
        fail();
    }
#if WEFT_TEST_SYMBOLIZE
    /* The frames around it (this test's) are still symbolized. */
    assert_int_equal(t_lines_with(b, "(via_nodebug+0x", "test_dump.c:"), 1);
#endif
    free(b);
}

static void test_dump_symbolized(void **state)
{
    OBS_BEGIN(30);
    sym_scene sc = {0};
    assert_int_equal(t_run_workers(2, sym_main, &sc, NULL), 0);
    assert_non_null(sc.raw);
    assert_non_null(sc.readable);
    assert_non_null(sc.from_thread);
    /* weft_dump: the raw form, no static name (no -rdynamic), no file. */
    char *b = task_block(sc.raw, sc.sym_id);
    assert_non_null(b);
    assert_true(block_frames_ok(b));
    assert_null(strstr(b, "sym_static_waiter"));
    assert_null(strstr(b, " at "));
    free(b);
    check_readable(sc.readable, &sc);
    check_readable(sc.from_thread, &sc);
    fprintf(stderr, "---- weft_dump ----\n%s---- weft_dump_ex ----\n%s---- end ----\n", sc.raw,
            sc.readable);
    free(sc.raw);
    free(sc.readable);
    free(sc.from_thread);
}

/* ------------------------------------------------------------------ */
/* WEFT_DUMP_SIGNAL                                                    */
/* ------------------------------------------------------------------ */

static _Atomic int usr1_before;

static void count_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&usr1_before, 1);
}

static _Atomic int went_on;

static void *kill_thread(void *arg)
{
    (void)arg;
    kill(getpid(), SIGUSR1);
    return NULL;
}

static void *signal_main(void *arg)
{
    scene *s = arg;
    scene_start(s);
    /* In a coroutine, on its worker thread. */
    T_CHECK_EQ(raise(SIGUSR1), 0);
    atomic_store(&went_on, 1);
    /* The program goes on: tasks still work. */
    weft_task *q = weft_spawn(quick, (void *)7);
    void *r = NULL;
    T_CHECK_EQ(weft_join(q, &r), 0);
    T_CHECK_EQ((intptr_t)r, 7);
    T_CHECK_EQ(weft_sleep(WEFT_MS), 0);
    /* From a plain thread, to the process: some thread takes it. */
    obs_in_thread(kill_thread, NULL);
    weft_sleep(100 * WEFT_MS);
    atomic_store(&went_on, 2);
    scene_end(s);
    return NULL;
}

static void test_dump_signal(void **state)
{
    OBS_BEGIN(30);
    struct sigaction sa = {0}, old;
    sa.sa_handler = count_usr1;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    atomic_store(&usr1_before, 0);
    atomic_store(&went_on, 0);

    setenv("WEFT_DUMP_SIGNAL", "USR1", 1);
    scene s;
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run_workers(2, signal_main, &s, NULL);
    char *err = t_capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&went_on), 2);
    /* Two dumps on stderr, neither reached the previous handler. */
    assert_int_equal(obs_count(err, "weft: dump of all tasks (2 workers)\n"), 2);
    assert_int_equal(atomic_load(&usr1_before), 0);
    /* Each names the waiting tasks. */
    assert_int_equal(obs_count(err, "'d-sleeper' [waiting, sleep, "), 2);
    assert_int_equal(obs_count(err, "'d-event' [waiting, event, "), 2);
    assert_int_equal(obs_count(err, "'d-join' [waiting, join, "), 2);
    assert_int_equal(obs_count(err, "'main' ["), 2);
    assert_true(obs_count(err, "weft_sleep") >= 2);
#if WEFT_TEST_SYMBOLIZE
    /* Written by sysmon after the hand-off: symbolized, the test's own
     * frames with file and line. */
    assert_true(t_lines_with(err, "(weft_sleep_until+0x", "] at /") >= 2);
    assert_true(t_lines_with(err, "(long_sleep+0x", "test_dump.c:") >= 2);
#else
    /* Written by the handler: the raw form. */
    assert_null(strstr(err, "] at "));
#endif
    free(err);

    /* weft_run put the previous handler back. */
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(atomic_load(&usr1_before), 1);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

static void *trivial(void *arg)
{
    return arg;
}

/* WEFT_DUMP_SIGNAL=value: weft_run's code and its stderr. */
static int run_with_signal(const char *value, char **err)
{
    setenv("WEFT_DUMP_SIGNAL", value, 1);
    t_capture c;
    t_capture_begin(&c);
    int rc = t_run(trivial, NULL, NULL);
    *err = t_capture_end(&c);
    unsetenv("WEFT_DUMP_SIGNAL");
    return rc;
}

static void test_dump_signal_bogus(void **state)
{
    OBS_BEGIN(20);
    static const char *bad[] = {"bogus", "KILL", "SIGKILL", "9", "0", "-3", "USR9", "99999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err;
        int rc = run_with_signal(bad[i], &err);
        if (rc != -EINVAL)
            fprintf(stderr, "WEFT_DUMP_SIGNAL=%s: weft_run returned %d\n", bad[i], rc);
        assert_int_equal(rc, -EINVAL);
        assert_int_equal(t_count_lines(err), 1);
        assert_int_equal(t_lines_with(err, "WEFT_DUMP_SIGNAL", bad[i]), 1);
        free(err);
    }
    /* Accepted spellings: the run works and prints nothing. */
    static const char *good[] = {"USR2", "SIGUSR2", "QUIT", "SIGQUIT", "12"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *err;
        assert_int_equal(run_with_signal(good[i], &err), 0);
        assert_string_equal(err, "");
        free(err);
    }
}

/* ------------------------------------------------------------------ */
/* weft_dump from a plain thread while weft_run returns                */
/* ------------------------------------------------------------------ */

static _Atomic int race_stop;
static _Atomic long race_dumps;

static void *race_dumper(void *arg)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    /* One thread raw, the other readable (its symbolizer session is
     * dropped at the end of each run, under a dump that may be starting). */
    unsigned flags = arg ? 0 : WEFT_DUMP_RAW;
    while (!atomic_load(&race_stop)) {
        int rc = weft_dump_ex(fd, flags);
        if (rc == 0)
            atomic_fetch_add(&race_dumps, 1);
        else if (rc != -EPERM)
            fprintf(stderr, "weft_dump: %d\n", rc);
    }
    close(fd);
    return NULL;
}

static void *race_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        weft_task *t = weft_spawn_named("racer", long_sleep, NULL);
        weft_detach(t);
    }
    weft_sleep(2 * WEFT_MS);
    return NULL;   /* weft_run cancels the sleepers and frees everything */
}

/* weft_dump and weft_dump_ex from plain threads racing the end of weft_run: the dump must
 * keep the runtime alive while it reads task slabs (once it did not, and
 * ASan reported a heap-use-after-free in snapshot under
 * weft__reg_free_all). */
static void test_dump_racing_shutdown(void **state)
{
    OBS_BEGIN(120);
    atomic_store(&race_stop, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_dumper, i ? (void *)1 : NULL), 0);
    for (int r = 0; r < 100; r++) {
        setenv("WEFT_WORKERS", "2", 1);
        assert_int_equal(weft_run(race_main, NULL, NULL), 0);
    }
    atomic_store(&race_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&race_dumps) > 0);
}

int main(void)
{
    obs_init();
    t_warm_up();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_dump_errors),
        OBS_TEST(test_dump_file_and_pipe),
        OBS_TEST(test_dump_one_worker),
        OBS_TEST(test_dump_symbolized),
        OBS_TEST(test_dump_signal),
        OBS_TEST(test_dump_signal_bogus),
        OBS_TEST(test_dump_racing_shutdown),
    };
    return cmocka_run_group_tests_name("dump", tests, NULL, NULL);
}
