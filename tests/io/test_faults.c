/*
 * Faults a line server must survive (issue 5), each a test against the
 * tests' echo server (io_echo_handler in io_test.h) while a "witness"
 * client does a round trip every 10 ms on its own connection:
 *
 *   - peer reset mid-line (SO_LINGER 0 close), also with echoes pending;
 *   - half-close: the client shuts down its writing side after a last line
 *     without '\n'; the server gets that line, then EOF, and still writes;
 *   - a client sending one byte per 100 ms, ended by the handler's
 *     per-line deadline;
 *   - 10,000 connections at once (fewer when RLIMIT_NOFILE's hard limit
 *     cannot hold two descriptors per connection: the test says so);
 *   - EMFILE at accept (RLIMIT_NOFILE lowered in the test): the server
 *     backs off without spinning (CPU time measured) and resumes accepting
 *     once descriptors are freed;
 *   - lines longer than the stream's 64 KiB buffer;
 *   - binary garbage (random bytes, NULs included).
 *
 * After each fault: the witness never failed and kept making round trips
 * (the server served the other client throughout); every handler of the
 * faulty clients has returned; the descriptor count is back to what it was
 * before the fault while the server still runs; and (t_run) the count after
 * weft_run equals the count before it.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>

#include "io_test.h"

typedef struct fault_env fault_env;
typedef void (*fault_fn)(fault_env *e);

typedef struct {
    fault_fn fn;
    size_t cap;        /* handler's readline capacity (0: 1024) */
    int64_t line_ms;   /* handler's per-line deadline (0: none) */
    const char *name;
} fault_case;

struct fault_env {
    io_srv h;
    weft_server *srv;
    char port[16];
    int base_fds;
    int base_active;
    /* witness */
    _Atomic int stop;
    _Atomic long rounds;
    _Atomic int wfail;
    _Atomic int64_t max_rtt;
};

/* ------------------------------------------------------------------ */
/* The witness                                                         */
/* ------------------------------------------------------------------ */

static void *witness_main(void *p)
{
    fault_env *e = p;
    weft_stream *s = weft_open_connection("127.0.0.1", e->port, io_in_ms(5000));
    if (!s) {
        fprintf(stderr, "witness: open_connection: %s\n", strerror(io_errno()));
        atomic_store(&e->wfail, 1);
        return NULL;
    }
    for (long i = 0; !atomic_load(&e->stop); i++) {
        char line[64], back[64];
        int n = snprintf(line, sizeof line, "witness %ld\n", i);
        int64_t t0 = weft_now();
        int rc = weft_stream_write(s, line, (size_t)n);
        if (rc == 0)
            rc = weft_stream_drain(s, io_in_ms(10000 * T_SLACK));
        ssize_t r = rc < 0 ? rc : weft_stream_readline(s, back, sizeof back, io_in_ms(10000 * T_SLACK));
        if (r != n || strcmp(back, line) != 0) {
            fprintf(stderr, "witness: round %ld failed: %zd (%s)\n", i, r,
                    r < 0 ? strerror((int)-r) : "wrong line");
            atomic_store(&e->wfail, 1);
            break;
        }
        int64_t rtt = weft_now() - t0;
        if (rtt > atomic_load(&e->max_rtt))
            atomic_store(&e->max_rtt, rtt);
        atomic_fetch_add(&e->rounds, 1);
        weft_sleep(10 * WEFT_MS);
    }
    weft_stream_close(s);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The harness                                                         */
/* ------------------------------------------------------------------ */

static void *fault_main(void *arg)
{
    fault_case *fc = arg;
    fault_env *e = calloc(1, sizeof *e);
    e->h.cap = fc->cap;
    e->h.line_ms = fc->line_ms;
    e->h.eof_report = true;
    e->srv = weft_start_server("127.0.0.1", "0", io_echo_handler, &e->h);
    T_CHECK(e->srv != NULL);
    if (!e->srv) {
        free(e);
        return NULL;
    }
    io_port_str(weft_server_port(e->srv), e->port);
    io_serve sv = {.srv = e->srv};
    weft_task *st = weft_spawn(io_serve_main, &sv);
    weft_task *wt = weft_spawn(witness_main, e);
    int64_t end = weft_now() + 5 * WEFT_SEC * T_SLACK;
    while (atomic_load(&e->rounds) < 3 && !atomic_load(&e->wfail) && weft_now() < end)
        weft_sleep(2 * WEFT_MS);
    T_CHECK(atomic_load(&e->rounds) >= 3);
    e->base_fds = leak_count_fds();
    e->base_active = atomic_load(&e->h.active);
    T_CHECK_EQ(e->base_active, 1);  /* the witness's handler */
    long r0 = atomic_load(&e->rounds);
    int64_t t0 = weft_now();

    fc->fn(e);

    int64_t fault_ns = weft_now() - t0;
    /* Every faulty client's handler has returned ... */
    end = weft_now() + 10 * WEFT_SEC * T_SLACK;
    while (atomic_load(&e->h.active) != e->base_active && weft_now() < end)
        weft_sleep(2 * WEFT_MS);
    T_CHECK_EQ(atomic_load(&e->h.active), e->base_active);
    /* ... and closed its descriptor, while the server runs on. */
    T_CHECK_EQ(io_await_fds(e->base_fds, 10000), e->base_fds);
    /* The witness was served throughout. */
    weft_sleep(30 * WEFT_MS);
    long rounds = atomic_load(&e->rounds) - r0;
    T_CHECK(rounds >= 3);
    T_CHECK_EQ(atomic_load(&e->wfail), 0);
    fprintf(stderr, "  [%s: fault took %.2f s; witness %ld round trips meanwhile, max %.1f ms]\n",
            fc->name, (double)fault_ns / 1e9, rounds, (double)atomic_load(&e->max_rtt) / 1e6);

    atomic_store(&e->stop, 1);
    weft_join(wt, NULL);
    T_CHECK_EQ(weft_server_close(e->srv), 0);
    T_CHECK_EQ(weft_join(st, NULL), 0);
    T_CHECK_EQ(sv.rc, 0);
    T_CHECK_EQ(atomic_load(&e->h.started), atomic_load(&e->h.finished));
    T_CHECK_EQ(atomic_load(&e->h.active), 0);
    free(e);
    return NULL;
}

static void run_fault(fault_case *fc, unsigned workers)
{
    assert_int_equal(t_run_workers(workers, fault_main, fc, NULL), 0);
}

/* Coroutine: waits until h->field reaches want (bounded). */
static bool await_counter(_Atomic int *v, int want)
{
    return io_await_int(v, want, 5000);
}

/* ------------------------------------------------------------------ */
/* Peer reset mid-line                                                 */
/* ------------------------------------------------------------------ */

static void fault_reset(fault_env *e)
{
    /* 1. Half a line, then a reset. */
    int s0 = atomic_load(&e->h.started), f0 = atomic_load(&e->h.finished);
    int c = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
    T_CHECK(c >= 0);
    const char *half = "this line never ends";
    T_CHECK_EQ(weft_write(c, half, strlen(half), io_in_ms(1000)), (ssize_t)strlen(half));
    T_CHECK(await_counter(&e->h.started, s0 + 1));
    weft_sleep(20 * WEFT_MS);  /* the handler waits in readline with half a line */
    io_linger0(c);
    T_CHECK_EQ(weft_close(c), 0);  /* RST */
    T_CHECK(await_counter(&e->h.finished, f0 + 1));
    T_CHECK_EQ(atomic_load(&e->h.last_error), -ECONNRESET);

    /* 2. Many lines sent without reading the echoes, then a reset: the
     * handler is in readline or in a drain when it comes. */
    int e0 = atomic_load(&e->h.n_error);
    s0 = atomic_load(&e->h.started);
    f0 = atomic_load(&e->h.finished);
    c = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
    T_CHECK(c >= 0);
    char *lines = malloc(1 << 20);
    for (int i = 0; i < (1 << 20); i++)
        lines[i] = (i % 64 == 63) ? '\n' : 'r';
    /* (may stop with -ETIMEDOUT once both directions' buffers are full) */
    weft_write(c, lines, 1 << 20, io_in_ms(200));
    free(lines);
    T_CHECK(await_counter(&e->h.started, s0 + 1));
    io_linger0(c);
    T_CHECK_EQ(weft_close(c), 0);
    T_CHECK(await_counter(&e->h.finished, f0 + 1));
    T_CHECK(atomic_load(&e->h.n_error) == e0 + 1);
    int le = atomic_load(&e->h.last_error);
    T_CHECK(le == -ECONNRESET || le == -EPIPE);

    /* 3. Ten resets at once, mid-line. */
    s0 = atomic_load(&e->h.started);
    f0 = atomic_load(&e->h.finished);
    int cs[10];
    for (int i = 0; i < 10; i++) {
        cs[i] = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
        T_CHECK(cs[i] >= 0);
        T_CHECK_EQ(weft_write(cs[i], "abc", 3, io_in_ms(1000)), 3);
    }
    T_CHECK(await_counter(&e->h.started, s0 + 10));
    weft_sleep(10 * WEFT_MS);
    for (int i = 0; i < 10; i++) {
        io_linger0(cs[i]);
        weft_close(cs[i]);
    }
    T_CHECK(await_counter(&e->h.finished, f0 + 10));
}

static void test_fault_peer_reset(void **state)
{
    (void)state;
    IO_BEGIN(60);
    fault_case fc = {.fn = fault_reset, .name = "peer reset"};
    run_fault(&fc, 2);
    run_fault(&fc, 4);
}

/* ------------------------------------------------------------------ */
/* Half-close                                                          */
/* ------------------------------------------------------------------ */

static void fault_half_close(fault_env *e)
{
    int eof0 = atomic_load(&e->h.n_eof);
    for (int round = 0; round < 5; round++) {
        int c = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
        T_CHECK(c >= 0);
        const char *msg = "first\nsecond line\nlast-no-newline";
        T_CHECK_EQ(weft_write(c, msg, strlen(msg), io_in_ms(1000)), (ssize_t)strlen(msg));
        if (round % 2)
            weft_sleep(10 * WEFT_MS);  /* sometimes the FIN comes separately */
        T_CHECK(shutdown(c, SHUT_WR) == 0);
        char *all;
        ssize_t r = io_read_all(c, &all, io_in_ms(5000));
        const char *want = "first\nsecond line\nlast-no-newlineEOF 3\n";
        T_CHECK_EQ(r, (ssize_t)strlen(want));
        if (r >= 0 && strcmp(all, want) != 0) {
            fprintf(stderr, "half-close: got '%s'\n", all);
            T_CHECK(!"half-close reply");
        }
        free(all);
        weft_close(c);
    }
    T_CHECK(await_counter(&e->h.n_eof, eof0 + 5));
}

static void test_fault_half_close(void **state)
{
    (void)state;
    IO_BEGIN(30);
    fault_case fc = {.fn = fault_half_close, .name = "half-close"};
    run_fault(&fc, 2);
}

/* ------------------------------------------------------------------ */
/* One byte per 100 ms: the per-line deadline ends it                   */
/* ------------------------------------------------------------------ */

#define SLOW_LINE_MS 500

typedef struct {
    int fd;
    int sent;
    ssize_t rc;
} slow_arg;

static void *slow_writer(void *p)
{
    slow_arg *a = p;
    const char *line = "abcdefghijklmnopqrstuvwxyz\n";  /* 2.7 s at this pace */
    for (a->sent = 0; line[a->sent]; a->sent++) {
        ssize_t r = weft_write(a->fd, line + a->sent, 1, io_in_ms(2000));
        if (r != 1) {
            a->rc = r;
            return NULL;
        }
        weft_sleep(100 * WEFT_MS);
    }
    a->rc = 0;
    return NULL;
}

static void fault_slow(fault_env *e)
{
    enum { N = 3 };
    int t0n = atomic_load(&e->h.n_timeout);
    slow_arg a[N];
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        a[i].fd = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
        T_CHECK(a[i].fd >= 0);
        t[i] = weft_spawn(slow_writer, &a[i]);
    }
    int64_t t0 = weft_now();
    for (int i = 0; i < N; i++) {
        char *all;
        ssize_t r = io_read_all(a[i].fd, &all, io_in_ms(10000));
        int64_t el = weft_now() - t0;
        /* The server ended it at its deadline, long before the line could
         * complete: "TIMEOUT\n" then end of stream (or a reset, when a byte
         * arrived after the server's close). */
        T_CHECK(r == 8 || r == -ECONNRESET);
        if (r == 8)
            T_CHECK(strcmp(all, "TIMEOUT\n") == 0);
        T_CHECK(el >= (SLOW_LINE_MS - 50) * WEFT_MS);
        T_CHECK(el < 2500 * WEFT_MS);
        free(all);
    }
    for (int i = 0; i < N; i++) {
        weft_join(t[i], NULL);
        /* The writer was stopped by the closed connection, never done. */
        T_CHECK(a[i].sent < 26);
        T_CHECK(a[i].rc == -EPIPE || a[i].rc == -ECONNRESET);
        weft_close(a[i].fd);
    }
    T_CHECK(await_counter(&e->h.n_timeout, t0n + N));
}

static void test_fault_slow_client(void **state)
{
    (void)state;
    IO_BEGIN(40);
    fault_case fc = {.fn = fault_slow, .line_ms = SLOW_LINE_MS, .name = "slow client"};
    run_fault(&fc, 2);
}

/* ------------------------------------------------------------------ */
/* 10,000 connections at once                                          */
/* ------------------------------------------------------------------ */

/* TSan counts every coroutine (fiber) as a thread, with a limit of 8128
 * alive at once and heavy state for each: under TSan the test makes 1,500
 * connections (3,000 coroutines with the handlers), and says so. */
#if defined(__SANITIZE_THREAD__)
#define IO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IO_TSAN 1
#endif
#endif
#ifndef IO_TSAN
#define IO_TSAN 0
#endif
#define TENK_WANT (IO_TSAN ? 1500 : 10000)

static int tenk_n;  /* connections this run makes */

typedef struct {
    fault_env *e;
    int id;
    weft_sem *gate;
    weft_event *all_up;
    _Atomic int *up;
    _Atomic int *failed;
} tenk_arg;

static void *tenk_client(void *p)
{
    tenk_arg *a = p;
    /* At most a few hundred connects in flight: the accept queue (somaxconn)
     * never overflows, so no SYN waits for a retransmission. */
    if (weft_sem_acquire(a->gate) != 0) {
        atomic_fetch_add(a->failed, 1);
        return NULL;
    }
    int fd = weft_tcp_connect("127.0.0.1", a->e->port, io_in_ms(30000));
    weft_sem_release(a->gate);
    if (fd < 0) {
        if (atomic_fetch_add(a->failed, 1) < 5)
            fprintf(stderr, "10k: connect %d: %s\n", a->id, strerror(-fd));
        weft_event_set(a->all_up);  /* do not keep the others waiting */
        return NULL;
    }
    char line[32], back[32];
    int n = snprintf(line, sizeof line, "conn %d\n", a->id);
    ssize_t r = weft_write(fd, line, (size_t)n, io_in_ms(30000));
    if (r == n)
        r = io_read_full(fd, back, (size_t)n, io_in_ms(30000 * T_SLACK));
    if (r != n || memcmp(back, line, (size_t)n) != 0) {
        if (atomic_fetch_add(a->failed, 1) < 5)
            fprintf(stderr, "10k: echo %d: %zd\n", a->id, r);
        weft_event_set(a->all_up);
        weft_close(fd);
        return NULL;
    }
    atomic_fetch_add(a->up, 1);
    /* Everyone stays connected until all are. */
    weft_event_wait(a->all_up, io_in_ms(120000));
    /* One more round trip with all connections open. */
    r = weft_write(fd, line, (size_t)n, io_in_ms(30000));
    if (r == n)
        r = io_read_full(fd, back, (size_t)n, io_in_ms(30000 * T_SLACK));
    if (r != n)
        atomic_fetch_add(a->failed, 1);
    weft_close(fd);
    return NULL;
}

static void fault_10k(fault_env *e)
{
    int n = tenk_n;
    weft_sem gate;
    weft_sem_init(&gate, 256);
    weft_event all_up;
    weft_event_init(&all_up);
    _Atomic int up = 0, failed = 0;
    tenk_arg *a = calloc((size_t)n, sizeof *a);
    weft_task **t = calloc((size_t)n, sizeof *t);
    int s0 = atomic_load(&e->h.started);
    for (int i = 0; i < n; i++) {
        a[i] = (tenk_arg){e, i, &gate, &all_up, &up, &failed};
        t[i] = weft_spawn(tenk_client, &a[i]);
        T_CHECK(t[i] != NULL);
    }
    int64_t t0 = weft_now();
    int64_t end = t0 + 120 * WEFT_SEC;
    while (atomic_load(&up) + atomic_load(&failed) < n && weft_now() < end)
        weft_sleep(10 * WEFT_MS);
    int64_t el = weft_now() - t0;
    T_CHECK_EQ(atomic_load(&up), n);
    T_CHECK_EQ(atomic_load(&failed), 0);
    /* All n connections are open at once, each with its handler running. */
    T_CHECK_EQ(atomic_load(&e->h.active), e->base_active + n);
    T_CHECK_EQ(atomic_load(&e->h.started), s0 + n);
    T_CHECK(leak_count_fds() >= e->base_fds + 2 * n);
    fprintf(stderr, "  [10k: %d connections open at once after %.2f s; %d descriptors]\n", n,
            (double)el / 1e9, leak_count_fds());
    weft_event_set(&all_up);
    T_CHECK_EQ(weft_gather(t, (size_t)n, NULL), 0);
    T_CHECK_EQ(atomic_load(&failed), 0);
    free(a);
    free(t);
    weft_event_destroy(&all_up);
    weft_sem_destroy(&gate);
}

static void test_fault_10k_connections(void **state)
{
    (void)state;
    IO_BEGIN(300);
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    long soft = io_raise_nofile();
    int open_now = leak_count_fds();
    /* Two descriptors per connection (client and server side, both in this
     * process), plus the runtime's and the test's own, plus room. */
    long fit = (soft - open_now - 300) / 2;
    tenk_n = TENK_WANT;
    if (IO_TSAN)
        fprintf(stderr, "  [10k: under TSan (8128 fibers at most): %d connections]\n", tenk_n);
    if (fit < tenk_n) {
        tenk_n = (int)fit;
        fprintf(stderr,
                "  [10k: RLIMIT_NOFILE hard limit is %ld (below ~20500): %d connections "
                "instead of %d]\n",
                soft, tenk_n, 10000);
    }
    assert_true(tenk_n >= 1000);
    fault_case fc = {.fn = fault_10k, .name = "10k connections"};
    run_fault(&fc, 2);
    setrlimit(RLIMIT_NOFILE, &old);
}

/* ------------------------------------------------------------------ */
/* EMFILE at accept                                                    */
/* ------------------------------------------------------------------ */

static int highest_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    int hi = -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && atoi(de->d_name) > hi && atoi(de->d_name) != dirfd(d))
            hi = atoi(de->d_name);
    closedir(d);
    return hi;
}

#define EMFILE_CLIENTS 4
#define BACKOFF_WATCH_MS 1500

static void fault_emfile(fault_env *e)
{
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    int s0 = atomic_load(&e->h.started);

    /* The client sockets exist before the table fills (connect needs none). */
    int cs[EMFILE_CLIENTS];
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        T_CHECK(cs[i] >= 0);
    }
    /* Lower the limit a little above the highest descriptor, and fill every
     * free number below it. */
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)highest_fd() + 1 + 32;
    T_CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int *fillers = malloc(sizeof(int) * 4096);
    int nf = 0, err = 0;
    while (nf < 4096) {
        int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (f < 0) {
            err = io_errno();
            break;
        }
        fillers[nf++] = f;
    }
    T_CHECK_EQ(err, EMFILE);

    /* Connect: the kernel completes the handshakes into the accept queue;
     * the server's accept fails with EMFILE. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(e->port)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        int rc = connect(cs[i], (struct sockaddr *)&sa, sizeof sa);
        T_CHECK(rc == 0 || io_errno() == EINPROGRESS);
        T_CHECK_EQ(weft_wait_fd(cs[i], WEFT_WRITABLE, io_in_ms(5000)), WEFT_WRITABLE);
        int so = 0;
        socklen_t sl = sizeof so;
        getsockopt(cs[i], SOL_SOCKET, SO_ERROR, &so, &sl);
        T_CHECK_EQ(so, 0);
        char line[32];
        int n = snprintf(line, sizeof line, "emfile %d\n", i);
        T_CHECK_EQ(weft_write(cs[i], line, (size_t)n, io_in_ms(1000)), n);
    }

    /* The back-off: no answer, no handler, and little CPU time (a spinning
     * acceptor would burn a whole CPU).  The witness goes on meanwhile. */
    int64_t cpu0 = io_cpu_ns(), w0 = weft_now();
    long r0 = atomic_load(&e->rounds);
    char buf[64];
    T_CHECK_EQ(weft_read(cs[0], buf, sizeof buf, io_in_ms(BACKOFF_WATCH_MS)), -ETIMEDOUT);
    int64_t cpu = io_cpu_ns() - cpu0, wall = weft_now() - w0;
    long wr = atomic_load(&e->rounds) - r0;
    fprintf(stderr, "  [EMFILE back-off: %.0f ms CPU in %.0f ms (%.1f%%); witness %ld round trips]\n",
            (double)cpu / 1e6, (double)wall / 1e6, 100.0 * (double)cpu / (double)wall, wr);
    T_CHECK(cpu < wall / 4);
    T_CHECK(wr >= 10);
    T_CHECK_EQ(atomic_load(&e->h.started), s0);

    /* Free the descriptors: the server resumes accepting (its back-off is
     * at most 1 s) and answers every waiting client. */
    for (int i = 0; i < nf; i++)
        close(fillers[i]);  /* never waited on: plain close is fine */
    free(fillers);
    T_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    int64_t f0 = weft_now();
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        char want[32];
        int n = snprintf(want, sizeof want, "emfile %d\n", i);
        ssize_t r = io_read_full(cs[i], buf, (size_t)n, io_in_ms(10000 * T_SLACK));
        T_CHECK_EQ(r, n);
        T_CHECK(r == n && memcmp(buf, want, (size_t)n) == 0);
    }
    int64_t resume = weft_now() - f0;
    fprintf(stderr, "  [EMFILE: accepting again %.0f ms after descriptors were freed]\n",
            (double)resume / 1e6);
    T_CHECK(resume < 1500 * WEFT_MS * T_SLACK);
    T_CHECK_EQ(atomic_load(&e->h.started), s0 + EMFILE_CLIENTS);
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        weft_close(cs[i]);
}

static void test_fault_emfile_at_accept(void **state)
{
    (void)state;
    IO_BEGIN(60);
    fault_case fc = {.fn = fault_emfile, .name = "EMFILE"};
    run_fault(&fc, 2);
    run_fault(&fc, 1);
}

/* ------------------------------------------------------------------ */
/* Lines longer than the buffer                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    const char *data;
    size_t n;
    uint64_t seed;  /* chunk sizes */
    ssize_t rc;
} blob_writer;

/* Writes the blob in chunks of random size, then shuts down writing. */
static void *blob_writer_main(void *p)
{
    blob_writer *w = p;
    uint64_t s = w->seed | 1;
    size_t off = 0;
    while (off < w->n) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t k = 1 + s % 20000;
        if (k > w->n - off)
            k = w->n - off;
        ssize_t r = weft_write(w->fd, w->data + off, k, io_in_ms(30000));
        if (r != (ssize_t)k) {
            w->rc = r < 0 ? r : -EIO;
            return NULL;
        }
        off += k;
    }
    shutdown(w->fd, SHUT_WR);
    w->rc = (ssize_t)off;
    return NULL;
}

/* What io_echo_handler answers to data (then EOF), with capacity cap. */
static char *expected_reply(const char *data, size_t n, size_t cap, size_t *outlen)
{
    size_t room = n + n / 2 + 64;
    char *out = malloc(room), *o = out;
    long lines = 0;
    size_t pos = 0;
    size_t fit = cap - 1 < 65536 ? cap - 1 : 65536;  /* the stream's buffer bounds it too */
    while (pos < n) {
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) + 1 : n - pos;
        if (len <= fit) {
            memcpy(o, data + pos, len);
            o += len;
            lines++;
        } else {
            memcpy(o, "ERR too long\n", 13);
            o += 13;
        }
        pos += len;
    }
    o += sprintf(o, "EOF %ld\n", lines);
    *outlen = (size_t)(o - out);
    return out;
}

/* Coroutine: sends blob over a fresh connection, reads the whole reply,
 * compares it with what the handler must answer. */
static void blob_round(fault_env *e, const char *data, size_t n, size_t cap, uint64_t seed)
{
    int c = weft_tcp_connect("127.0.0.1", e->port, io_in_ms(5000));
    T_CHECK(c >= 0);
    blob_writer w = {.fd = c, .data = data, .n = n, .seed = seed};
    weft_task *t = weft_spawn(blob_writer_main, &w);
    char *got;
    ssize_t r = io_read_all(c, &got, io_in_ms(30000 * T_SLACK));
    weft_join(t, NULL);
    T_CHECK_EQ(w.rc, (ssize_t)n);
    size_t wl;
    char *want = expected_reply(data, n, cap, &wl);
    T_CHECK_EQ(r, (ssize_t)wl);
    if (r == (ssize_t)wl && memcmp(got, want, wl) != 0) {
        size_t i = 0;
        while (got[i] == want[i])
            i++;
        fprintf(stderr, "reply differs at byte %zu of %zu\n", i, wl);
        T_CHECK(!"reply differs");
    }
    free(want);
    free(got);
    weft_close(c);
}

static void fault_long_lines(fault_env *e)
{
    size_t lens[] = {10, 1023, 65535, 65536, 65537, 200000, 1 << 20, 5, 70000, 7};
    size_t n = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        n += lens[i];
    char *data = malloc(n), *p = data;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memset(p, 'a' + (int)i, lens[i] - 1);
        p[lens[i] - 1] = '\n';
        p += lens[i];
    }
    int m0 = atomic_load(&e->h.n_emsgsize);
    blob_round(e, data, n, e->h.cap, 1);
    T_CHECK_EQ(atomic_load(&e->h.n_emsgsize), m0 + 4);
    /* One line of 3 MiB, never ending (no '\n' before EOF). */
    size_t big = 3 << 20;
    char *huge = malloc(big);
    memset(huge, 'h', big);
    blob_round(e, huge, big, e->h.cap, 2);
    free(huge);
    free(data);
}

static void test_fault_lines_longer_than_buffer(void **state)
{
    (void)state;
    IO_BEGIN(60);
    /* The handler's capacity is far above the stream's 64 KiB: the stream's
     * buffer is what limits the line. */
    fault_case fc = {.fn = fault_long_lines, .cap = 1 << 20, .name = "long lines"};
    run_fault(&fc, 2);
}

/* ------------------------------------------------------------------ */
/* Binary garbage                                                      */
/* ------------------------------------------------------------------ */

typedef struct {
    fault_env *e;
    uint64_t seed;
    size_t n;
    int newline_every;  /* 0: bytes as they come (1 in 256 is '\n'); -1: none */
} garbage_arg;

static void *garbage_client(void *p)
{
    garbage_arg *g = p;
    char *data = malloc(g->n);
    uint64_t s = g->seed;
    size_t nuls = 0;
    for (size_t i = 0; i < g->n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        char c = (char)(s >> 24);
        if (g->newline_every < 0 && c == '\n')
            c = 0;
        if (g->newline_every > 0 && (s >> 40) % (uint64_t)g->newline_every == 0)
            c = '\n';
        nuls += c == 0;
        data[i] = c;
    }
    if (g->n >= 10000)
        T_CHECK(nuls > 0);
    blob_round(g->e, data, g->n, 1024, g->seed);
    free(data);
    return NULL;
}

static void fault_garbage(fault_env *e)
{
    garbage_arg g[] = {
        {e, 0x1234567ULL, 256 * 1024, 0},
        {e, 0xabcdefULL, 256 * 1024, 40},
        {e, 0x5555ULL, 100 * 1024, 2000},  /* many lines too long */
        {e, 0x777ULL, 300 * 1024, -1},     /* no '\n' at all */
        {e, 0x999ULL, 1000, 3},            /* short lines, empty ones */
    };
    enum { N = sizeof g / sizeof g[0] };
    weft_task *t[N];
    for (int i = 0; i < N; i++)
        t[i] = weft_spawn(garbage_client, &g[i]);
    T_CHECK_EQ(weft_gather(t, N, NULL), 0);
}

static void test_fault_binary_garbage(void **state)
{
    (void)state;
    IO_BEGIN(60);
    fault_case fc = {.fn = fault_garbage, .name = "binary garbage"};
    run_fault(&fc, 2);
    run_fault(&fc, 4);
}

int main(void)
{
    io_init();
    const struct CMUnitTest tests[] = {
        IO_TEST(test_fault_peer_reset),
        IO_TEST(test_fault_half_close),
        IO_TEST(test_fault_slow_client),
        IO_TEST(test_fault_10k_connections),
        IO_TEST(test_fault_emfile_at_accept),
        IO_TEST(test_fault_lines_longer_than_buffer),
        IO_TEST(test_fault_binary_garbage),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
