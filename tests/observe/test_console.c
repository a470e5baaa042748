/*
 * test_console: WEFT_CONSOLE, the live console (runtime/console.c).
 *
 *  - snapshot: the socket is mode 0600; one valid JSON line with every
 *    worker's figures, the blocking pool, and the tasks this test made with
 *    their names, states and waits; watch sends snapshots at its period and
 *    watch 0 stops them; backtrace of a waiting task has frames, of an
 *    unknown id an error;
 *  - a stuck runtime (its only worker in a coroutine that never suspends)
 *    still answers, and shows that coroutine running;
 *  - garbage: unknown commands, bad arguments, a NUL byte, binary junk get
 *    an error line and the connection stays; a line too long gets an error
 *    line and the connection is closed;
 *  - clients that disconnect mid-snapshot (big snapshots, never read): no
 *    SIGPIPE, the console still answers;
 *  - more clients than the bound: the extra one gets an error line and
 *    EOF; the others are still served;
 *  - a path that exists: a regular file or a live socket is refused with
 *    one line on stderr and left alone, the run goes on without a console;
 *    a stale socket is replaced;
 *  - a path that cannot be created (too long, missing directory): one line,
 *    the run goes on;
 *  - out of descriptors (RLIMIT_NOFILE): the console's accept fails with
 *    EMFILE and it does not spin on the queued connection; once
 *    descriptors are back it serves it;
 *  - after every run the socket file is gone and no descriptor is left
 *    (t_run's leak check).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "json_check.h"
#include "obs_test.h"

static char sock_path[108];

static void set_console(void)
{
    snprintf(sock_path, sizeof sock_path, "/tmp/weft-console-test-%d.sock", (int)getpid());
    unlink(sock_path);
    setenv("WEFT_CONSOLE", sock_path, 1);
}

/* ------------------------------------------------------------------ */
/* A client                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} con;

static bool con_open(con *c)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "connect %s: %s\n", sock_path, strerror(errno));
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static void con_close(con *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static bool con_send(con *c, const char *s, size_t n)
{
    return send(c->fd, s, n, MSG_NOSIGNAL) == (ssize_t)n;
}

static bool con_cmd(con *c, const char *line)
{
    return con_send(c, line, strlen(line)) && con_send(c, "\n", 1);
}

/* The next line (malloc'd, without its newline), NULL at EOF or after
 * timeout_ms without one. */
static char *con_line(con *c, int timeout_ms)
{
    int64_t end = weft_now() + (int64_t)timeout_ms * T_SLACK * WEFT_MS;
    for (;;) {
        char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = malloc(n + 1);
            memcpy(line, c->buf, n);
            line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        int64_t left = end - weft_now();
        if (left <= 0)
            return NULL;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left / WEFT_MS) + 1) <= 0)
            continue;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 1 << 20;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r <= 0)
            return NULL;
        c->len += (size_t)r;
    }
}

/* Sends a command and returns the reply line, checked to be valid JSON. */
static char *con_ask(con *c, const char *cmd)
{
    if (!T_CHECK(con_cmd(c, cmd)))
        return NULL;
    char *l = con_line(c, 5000);
    if (!T_CHECK(l != NULL)) {
        fprintf(stderr, "no reply to '%s'\n", cmd);
        return NULL;
    }
    if (!T_CHECK(json_valid(l)))
        fprintf(stderr, "not JSON: %.300s\n", l);
    return l;
}

static bool has(const char *line, const char *needle)
{
    return line && strstr(line, needle) != NULL;
}

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */
/* ------------------------------------------------------------------ */

static weft_event gate;

static void *wait_gate(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_event_wait(&gate, WEFT_FOREVER);
}

static void *sleep_long(void *arg)
{
    (void)arg;
    weft_sleep(60 * WEFT_SEC);  /* cancelled */
    return NULL;
}

static _Atomic bool release_blocking;

static void *blocking_fn(void *arg)
{
    (void)arg;
    while (!atomic_load(&release_blocking))
        t_nap_ms(1);
    return NULL;
}

static uint64_t waiter_id;

static void *snapshot_client(void *arg)
{
    (void)arg;
    struct stat st;
    T_CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
    T_CHECK_EQ(st.st_mode & 0777, 0600);
    con c;
    if (!T_CHECK(con_open(&c)))
        return NULL;
    char *l = con_ask(&c, "snapshot");
    T_CHECK(has(l, "{\"type\":\"snapshot\","));
    /* Our tasks, named, in their states. */
    T_CHECK(has(l, "\"name\":\"con-waiter\",\"state\":\"waiting\",\"wait\":\"event\""));
    T_CHECK(has(l, "\"name\":\"con-sleeper\",\"state\":\"waiting\",\"wait\":\"sleep\""));
    T_CHECK(has(l, "\"name\":\"main\",\"state\":\"waiting\""));
    T_CHECK(has(l, "\"state\":\"blocking\""));  /* the blocking call */
    T_CHECK_EQ(obs_count(l, "\"name\":\"con-waiter\""), 3);
    /* Per-worker figures, each worker. */
    const char *w = strstr(l ? l : "", "\"worker\":[");
    T_CHECK(w != NULL);
    T_CHECK_EQ(obs_count(w ? w : "", "\"busy_ns\":"), 2);
    T_CHECK_EQ(obs_count(w ? w : "", "\"queue_depth\":"), 2);
    T_CHECK_EQ(obs_count(w ? w : "", "\"steals\":"), 2);
    T_CHECK_EQ(obs_count(w ? w : "", "\"parks\":"), 2);
    uint64_t v;
    T_CHECK(l && json_u64(l, "workers", &v) && v == 2);
    T_CHECK(l && json_u64(l, "blocking_threads", &v) && v >= 1);
    T_CHECK(l && json_u64(l, "tasks_total", &v) && v == 6); /* main, 3 waiters, sleeper, blocking */
    T_CHECK(has(l, "\"in_state_ns\":"));
    free(l);

    /* A waiting task's backtrace; an unknown id's error. */
    char cmd[64];
    snprintf(cmd, sizeof cmd, "backtrace %llu", (unsigned long long)waiter_id);
    l = con_ask(&c, cmd);
    T_CHECK(has(l, "\"type\":\"backtrace\""));
    T_CHECK(has(l, "\"name\":\"con-waiter\""));
    T_CHECK(has(l, "\"frames\":[\"")); /* at least one frame */
    T_CHECK(has(l, "weft_event_wait"));
#if WEFT_TEST_SYMBOLIZE
    T_CHECK(has(l, "test_console.c:"));  /* the test's own frame, with its line */
#endif
    free(l);
    l = con_ask(&c, "backtrace 999999999");
    T_CHECK(has(l, "\"type\":\"error\"") && has(l, "no unfinished task with id 999999999"));
    free(l);

    /* watch: a snapshot at once, then one per period; 0 stops. */
    int64_t t0 = weft_now();
    T_CHECK(con_cmd(&c, "watch 20"));
    int got = 0;
    while (got < 5) {
        l = con_line(&c, 2000);
        if (!T_CHECK(l && json_valid(l) && has(l, "\"type\":\"snapshot\"")))
            break;
        free(l);
        got++;
    }
    T_CHECK_EQ(got, 5);
    T_CHECK(weft_now() - t0 >= 4 * 20 * WEFT_MS - 2 * WEFT_MS); /* paced, not a flood */
    T_CHECK(con_cmd(&c, "watch 0"));
    /* After watch 0 only what was already under way may come; then quiet. */
    l = con_ask(&c, "help");
    while (l && has(l, "\"type\":\"snapshot\"")) {
        free(l);
        l = con_line(&c, 2000);
    }
    T_CHECK(has(l, "\"type\":\"help\""));
    free(l);
    l = con_line(&c, 100);
    T_CHECK(l == NULL); /* no more snapshots */
    free(l);
    /* quit closes. */
    T_CHECK(con_cmd(&c, "quit"));
    T_CHECK(con_line(&c, 2000) == NULL);
    con_close(&c);
    return NULL;
}

static void *snapshot_main(void *arg)
{
    (void)arg;
    weft_event_init(&gate);
    atomic_store(&release_blocking, false);
    weft_task *h[5];
    for (int i = 0; i < 3; i++)
        h[i] = weft_spawn_named("con-waiter", wait_gate, NULL);
    h[3] = weft_spawn_named("con-sleeper", sleep_long, NULL);
    h[4] = weft_spawn_blocking(blocking_fn, NULL);
    waiter_id = weft_task_id(h[0]);
    obs_entry e;
    T_CHECK(obs_await("con-sleeper", WEFT_TASK_WAITING, "sleep", &e));
    int64_t end = weft_now() + 5 * T_SLACK * WEFT_SEC;
    for (;;) {
        obs_entry b;
        if (obs_find_id(weft_task_id(h[4]), &b) == 1 && b.state == WEFT_TASK_BLOCKING)
            break;
        if (!T_CHECK(weft_now() < end))
            break;
        weft_sleep(WEFT_MS);
    }
    weft_sleep(50 * WEFT_MS); /* every waiter waits */
    obs_in_thread(snapshot_client, NULL);
    atomic_store(&release_blocking, true);
    weft_event_set(&gate);
    weft_cancel(h[3]);
    weft_gather(h, 5, NULL);
    weft_event_destroy(&gate);
    return NULL;
}

static void test_console_snapshot(void **state)
{
    OBS_BEGIN(30);
    set_console();
    setenv("WEFT_WORKERS", "2", 1);
    assert_int_equal(t_run(snapshot_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1); /* removed */
    assert_int_equal(errno, ENOENT);
}

/* ------------------------------------------------------------------ */
/* Garbage                                                             */
/* ------------------------------------------------------------------ */

static void *garbage_client(void *arg)
{
    (void)arg;
    con c;
    if (!T_CHECK(con_open(&c)))
        return NULL;
    static const char *const bad[] = {
        "frobnicate",
        "snapshot now",
        "watch",
        "watch 5",
        "watch 60001",
        "watch -3",
        "watch ten",
        "backtrace",
        "backtrace -1",
        "backtrace x",
        "backtrace 1 2",
        "backtrace 99999999999999999999999",
        "\xff\xfe\x01\x02 \"quoted\" \\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *l = con_ask(&c, bad[i]);
        if (!T_CHECK(has(l, "{\"type\":\"error\",\"error\":\"")))
            fprintf(stderr, "reply to '%s': %s\n", bad[i], l ? l : "(none)");
        free(l);
    }
    /* A NUL byte inside a line. */
    T_CHECK(con_send(&c, "snap\0shot\n", 10));
    char *l = con_line(&c, 5000);
    T_CHECK(has(l, "NUL byte") && json_valid(l));
    free(l);
    /* Empty lines and CRLF: nothing, then an answer. */
    static const char blanks[] = "\n\r\n  \nhelp\r\n";
    T_CHECK(con_send(&c, blanks, sizeof blanks - 1));
    l = con_line(&c, 5000);
    T_CHECK(has(l, "\"type\":\"help\""));
    free(l);
    /* Still served. */
    l = con_ask(&c, "snapshot");
    T_CHECK(has(l, "\"type\":\"snapshot\""));
    free(l);
    /* A line longer than 256 bytes: an error, then EOF. */
    char junk[1000];
    memset(junk, 'x', sizeof junk);
    T_CHECK(con_send(&c, junk, sizeof junk));
    l = con_line(&c, 5000);
    T_CHECK(has(l, "line too long") && json_valid(l));
    free(l);
    T_CHECK(con_line(&c, 5000) == NULL);
    con_close(&c);
    /* Another client is served after all that. */
    if (T_CHECK(con_open(&c))) {
        l = con_ask(&c, "snapshot");
        T_CHECK(has(l, "\"type\":\"snapshot\""));
        free(l);
        con_close(&c);
    }
    return NULL;
}

static void *garbage_main(void *arg)
{
    (void)arg;
    obs_in_thread(garbage_client, NULL);
    return NULL;
}

static void test_console_garbage(void **state)
{
    OBS_BEGIN(30);
    set_console();
    assert_int_equal(t_run(garbage_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1);
}

/* ------------------------------------------------------------------ */
/* Disconnects mid-snapshot, and the bound on clients                  */
/* ------------------------------------------------------------------ */

#define CROWD 3000

static void *disconnect_client(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        con c;
        if (!T_CHECK(con_open(&c)))
            return NULL;
        /* A snapshot of thousands of tasks (hundreds of KiB), and a watch,
         * then gone without reading: the console's sends meet a closed
         * socket (EPIPE: with SIGPIPE this process would die). */
        T_CHECK(con_cmd(&c, i % 2 ? "snapshot" : "watch 10"));
        if (i % 3 == 0) {
            char b[100];
            T_CHECK(recv(c.fd, b, sizeof b, 0) > 0); /* mid-line */
        }
        con_close(&c);
    }
    /* Bounded clients: 8 served, the 9th told so and closed. */
    con cs[9];
    for (int i = 0; i < 8; i++) {
        T_CHECK(con_open(&cs[i]));
        char *l = con_ask(&cs[i], "help");
        T_CHECK(has(l, "\"type\":\"help\""));
        free(l);
    }
    T_CHECK(con_open(&cs[8])); /* the kernel accepts; the console refuses */
    char *l = con_line(&cs[8], 5000);
    T_CHECK(has(l, "too many clients") && json_valid(l));
    free(l);
    T_CHECK(con_line(&cs[8], 5000) == NULL);
    con_close(&cs[8]);
    /* One leaves; another gets in. */
    con_close(&cs[0]);
    t_nap_ms(50);
    T_CHECK(con_open(&cs[0]));
    for (int i = 0; i < 8; i++) {
        l = con_ask(&cs[i], "snapshot");
        T_CHECK(has(l, "\"type\":\"snapshot\""));
        uint64_t n;
        T_CHECK(l && json_u64(l, "tasks_total", &n) && n == CROWD + 1);
        free(l);
        con_close(&cs[i]);
    }
    return NULL;
}

static void *crowd_main(void *arg)
{
    (void)arg;
    weft_event_init(&gate);
    static weft_task *h[CROWD];
    for (int i = 0; i < CROWD; i++)
        h[i] = weft_spawn_named("a-task-with-a-rather-long-name-to-fill-the-snapshot-line",
                                wait_gate, NULL);
    weft_sleep(20 * WEFT_MS);
    obs_in_thread(disconnect_client, NULL);
    weft_event_set(&gate);
    T_CHECK_EQ(weft_gather(h, CROWD, NULL), 0);
    weft_event_destroy(&gate);
    return NULL;
}

static void test_console_disconnect(void **state)
{
    OBS_BEGIN(60);
    set_console();
    assert_int_equal(t_run(crowd_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1);
}

/* ------------------------------------------------------------------ */
/* Paths that exist or cannot be created                               */
/* ------------------------------------------------------------------ */

static void *noop_main(void *arg)
{
    *(int *)arg += 1;
    return NULL;
}

/* Runs with WEFT_CONSOLE=path; checks main ran and stderr got one line
 * with path and want; returns nothing. */
static void run_refused(const char *path, const char *want)
{
    setenv("WEFT_CONSOLE", path, 1);
    t_capture cap;
    t_capture_begin(&cap);
    int ran = 0;
    int rc = t_run(noop_main, &ran, NULL);
    char *err = t_capture_end(&cap);
    assert_int_equal(rc, 0);
    assert_int_equal(ran, 1);
    assert_int_equal(t_count_lines(err), 1);
    assert_non_null(strstr(err, "weft: WEFT_CONSOLE="));
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "running without a console"));
    free(err);
}

static void test_console_existing_path(void **state)
{
    OBS_BEGIN(30);
    set_console();
    /* A regular file: refused and kept. */
    FILE *f = fopen(sock_path, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);
    run_refused(sock_path, strerror(EEXIST));
    char *s = obs_read_file(sock_path);
    assert_string_equal(s, "precious\n");
    free(s);
    unlink(sock_path);

    /* A live socket (another listener): refused and kept. */
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 4), 0);
    run_refused(sock_path, strerror(EADDRINUSE));
    assert_int_equal(access(sock_path, F_OK), 0);
    close(l);

    /* Now stale (nobody listens): replaced, served, removed. */
    setenv("WEFT_CONSOLE", sock_path, 1);
    assert_int_equal(t_run(garbage_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1);

    /* Empty: no console. */
    setenv("WEFT_CONSOLE", "", 1);
    int ran = 0;
    assert_int_equal(t_run(noop_main, &ran, NULL), 0);
    assert_int_equal(ran, 1);
}

/* ------------------------------------------------------------------ */
/* A stuck runtime still answers                                       */
/* ------------------------------------------------------------------ */

static _Atomic bool spin_release;
static uint64_t spinner_id;

/* Never reaches a suspension point until released: its worker (the only
 * one) is stuck. */
static void *spinner(void *arg)
{
    (void)arg;
    int64_t end = weft_now() + 10 * T_SLACK * WEFT_SEC;
    while (!atomic_load(&spin_release) && weft_now() < end)
        ;
    return NULL;
}

static void *stuck_client(void *arg)
{
    (void)arg;
    con c;
    if (T_CHECK(con_open(&c))) {
        char *l = NULL;
        /* Until the spinner is seen running (it may not have started). */
        for (int i = 0; i < 200; i++) {
            free(l);
            l = con_ask(&c, "snapshot");
            if (!l || has(l, "\"name\":\"spinner\",\"state\":\"running\""))
                break;
            t_nap_ms(5);
        }
        T_CHECK(has(l, "\"name\":\"spinner\",\"state\":\"running\""));
        free(l);
        /* Its backtrace: none, and why. */
        char cmd[64];
        snprintf(cmd, sizeof cmd, "backtrace %llu", (unsigned long long)spinner_id);
        l = con_ask(&c, cmd);
        T_CHECK(has(l, "\"type\":\"backtrace\"") && has(l, "\"frames\":[]") &&
                has(l, "no backtrace of a running coroutine"));
        free(l);
        con_close(&c);
    }
    atomic_store(&spin_release, true);
    return NULL;
}

static void *stuck_main(void *arg)
{
    (void)arg;
    atomic_store(&spin_release, false);
    weft_task *s = weft_spawn_named("spinner", spinner, NULL);
    spinner_id = weft_task_id(s);
    /* The client's thread runs while this coroutine waits on its event and
     * the spinner holds the only worker. */
    obs_in_thread(stuck_client, NULL);
    T_CHECK_EQ(weft_join(s, NULL), 0);
    return NULL;
}

static void test_console_stuck_runtime(void **state)
{
    OBS_BEGIN(30);
    set_console();
    setenv("WEFT_WORKERS", "1", 1);
    assert_int_equal(t_run(stuck_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1);
}

/* ------------------------------------------------------------------ */
/* Out of descriptors                                                  */
/* ------------------------------------------------------------------ */

/* The console thread's /proc stat file, opened (so that it can be read
 * while the process is out of descriptors); -1 if not found. */
static int console_stat_open(void)
{
    DIR *d = opendir("/proc/self/task");
    int found = -1;
    struct dirent *e;
    while (d && found < 0 && (e = readdir(d))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        if (strstr(buf, "(weft-console)"))
            found = fd;
        else
            close(fd);
    }
    if (d)
        closedir(d);
    return found;
}

/* CPU ticks (user + system) of the thread whose stat fd is open; -1. */
static long thread_ticks(int fd)
{
    char buf[512];
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (!rp || sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

static void *emfile_client(void *arg)
{
    (void)arg;
    struct rlimit old, low;
    T_CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int stat_fd = console_stat_open();
    T_CHECK(stat_fd >= 0);
    /* Every descriptor below a lowered limit taken (by dups of stdin),
     * but one: the client's own socket. */
    low = old;
    low.rlim_cur = 256;
    T_CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int fill[256], nfill = 0;
    while (nfill < 256 && (fill[nfill] = dup(0)) >= 0)
        nfill++;
    T_CHECK(nfill > 0 && nfill < 256 && errno == EMFILE);
    if (nfill > 0)
        close(fill[--nfill]);
    con c;
    bool opened = con_open(&c); /* queued; the console's accept4 gets EMFILE */
    t_nap_ms(20); /* the console meets the connection */
    long t0 = thread_ticks(stat_fd);
    t_nap_ms(300);
    long t1 = thread_ticks(stat_fd);
    while (nfill > 0)
        close(fill[--nfill]);
    T_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    T_CHECK(opened);
    T_CHECK(t0 >= 0 && t1 >= 0);
    /* A spinning thread would use ~30 ticks of 10 ms in 300 ms. */
    if (!T_CHECK(t1 - t0 <= 8))
        fprintf(stderr, "the console used %ld ticks in 300 ms while out of descriptors\n", t1 - t0);
    if (stat_fd >= 0)
        close(stat_fd);
    if (opened) {
        /* With descriptors back, the queued connection is served. */
        char *l = con_ask(&c, "help");
        T_CHECK(has(l, "\"type\":\"help\""));
        free(l);
        con_close(&c);
    }
    return NULL;
}

static void *emfile_main(void *arg)
{
    (void)arg;
    obs_in_thread(emfile_client, NULL);
    return NULL;
}

static void test_console_out_of_fds(void **state)
{
    OBS_BEGIN(30);
    set_console();
    assert_int_equal(t_run(emfile_main, NULL, NULL), 0);
    assert_int_equal(access(sock_path, F_OK), -1);
}

static void test_console_bad_path(void **state)
{
    OBS_BEGIN(30);
    char longp[200];
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "/tmp/", 5);
    longp[sizeof longp - 1] = '\0';
    run_refused(longp, strerror(ENAMETOOLONG));
    run_refused("/nonexistent-dir-weft/console.sock", strerror(ENOENT));
    /* A directory: it exists and is not a socket. */
    run_refused("/tmp", strerror(EEXIST));
}

int main(void)
{
    obs_init();
    t_warm_up();
    const struct CMUnitTest tests[] = {
        OBS_TEST(test_console_snapshot),      OBS_TEST(test_console_garbage),
        OBS_TEST(test_console_stuck_runtime), OBS_TEST(test_console_disconnect),
        OBS_TEST(test_console_existing_path), OBS_TEST(test_console_bad_path),
        OBS_TEST(test_console_out_of_fds),
    };
    return cmocka_run_group_tests_name("console", tests, NULL, NULL);
}
