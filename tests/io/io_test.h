/*
 * Helpers shared by the cmocka tests of networking, streams and servers
 * (test_net.c, test_stream.c, test_server.c, test_faults.c), on top of
 * tests/testutil.h (leak-checked runs: the /proc/self/fd count after
 * weft_run must equal the count before it):
 *
 *  - a per-test watchdog: a plain thread that names a test which has run
 *    longer than it announced (IO_BEGIN(seconds), times T_SLACK under a
 *    sanitizer) and exits the program with status 1, so that a lost wake-up
 *    is reported by name at once rather than as a CTest timeout;
 *  - loopback helpers for coroutines: a listener on an ephemeral port, a
 *    connected TCP pair, a port that is known to be closed, a listener whose
 *    accept queue is full (so that connects to it hang until their
 *    deadline), a temporary directory for Unix sockets;
 *  - waiting helpers (flags, counters) with bounded time.
 *
 * Everything is loopback only (127.0.0.1, ::1 when the host has it, Unix
 * sockets in a mkdtemp directory).  Include after <cmocka.h>.
 */
#ifndef WEFT_IO_TEST_H
#define WEFT_IO_TEST_H

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Watchdog                                                            */
/* ------------------------------------------------------------------ */

static pthread_mutex_t io_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *io_wd_test;   /* running test, NULL when none */
static int64_t io_wd_deadline;
static int io_wd_secs;
static bool io_wd_started;

static void *io_wd_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&io_wd_mu);
        if (io_wd_test && weft_now() > io_wd_deadline) {
            fprintf(stderr,
                    "WATCHDOG: %s has not finished after %d s: it hangs (lost wake-up or "
                    "deadlock); exiting\n",
                    io_wd_test, io_wd_secs);
            fflush(stderr);
            _exit(1);
        }
        pthread_mutex_unlock(&io_wd_mu);
        t_nap_ms(100);
    }
    return NULL;
}

static inline void io_wd_arm(const char *test, int secs)
{
    pthread_mutex_lock(&io_wd_mu);
    if (!io_wd_started) {
        pthread_t th;
        if (pthread_create(&th, NULL, io_wd_main, NULL) == 0) {
            pthread_detach(th);
            io_wd_started = true;
        }
    }
    io_wd_secs = secs * T_SLACK;
    io_wd_deadline = weft_now() + (int64_t)io_wd_secs * WEFT_SEC;
    io_wd_test = test;
    pthread_mutex_unlock(&io_wd_mu);
}

static inline void io_wd_disarm(void)
{
    pthread_mutex_lock(&io_wd_mu);
    io_wd_test = NULL;
    pthread_mutex_unlock(&io_wd_mu);
}

#define IO_BEGIN(secs) io_wd_arm(__func__, (secs))

static inline int io_setup(void **state) { return t_setup(state); }

static inline int io_teardown(void **state)
{
    io_wd_disarm();
    return t_teardown(state);
}

#define IO_TEST(f) cmocka_unit_test_setup_teardown(f, io_setup, io_teardown)

/* Warm-up (leak checks measure weft alone; see tests/leak.h) and the
 * default SIGPIPE disposition: a send to a closed peer that raised SIGPIPE
 * would kill the test program, which is the point. */
static inline void io_init(void)
{
    signal(SIGPIPE, SIG_DFL);
    t_warm_up();
}

/* ------------------------------------------------------------------ */
/* errno in coroutines                                                 */
/* ------------------------------------------------------------------ */

/* In a coroutine, the compiler may compute errno's address once and reuse
 * it after a suspension point, when the coroutine may run on another
 * thread (docs/migration-rules.md): weft calls that return NULL and set
 * errno (weft_open_connection, weft_start_server, weft_stream_new) are
 * checked through these, which cannot be inlined. */
__attribute__((noinline, unused)) static int io_errno(void) { return errno; }
__attribute__((noinline, unused)) static void io_errno_clear(void) { errno = 0; }

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

/* A deadline ms milliseconds from now. */
static inline int64_t io_in_ms(int64_t ms) { return weft_now() + ms * WEFT_MS; }

/* Coroutine: waits (1 ms naps) until *v >= want, at most ms (times
 * T_SLACK); returns whether it got there. */
static inline bool io_await_int(_Atomic int *v, int want, int64_t ms)
{
    int64_t end = weft_now() + ms * WEFT_MS * T_SLACK;
    while (atomic_load(v) < want) {
        if (weft_now() > end)
            return false;
        if (weft_sleep(WEFT_MS) != 0)
            t_nap_ms(1);
    }
    return true;
}

/* Coroutine: waits until the number of open descriptors is `want`, at most
 * ms (times T_SLACK); returns the last count seen. */
static inline int io_await_fds(int want, int64_t ms)
{
    int64_t end = weft_now() + ms * WEFT_MS * T_SLACK;
    int n;
    while ((n = leak_count_fds()) != want && weft_now() < end)
        if (weft_sleep(2 * WEFT_MS) != 0)
            t_nap_ms(2);
    return n;
}

/* ------------------------------------------------------------------ */
/* Loopback                                                            */
/* ------------------------------------------------------------------ */

/* Small socket buffers, so that a writer fills them after a few KiB. */
static inline void io_small_buffers(int fd)
{
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

/* A listener on 127.0.0.1, ephemeral port; its port in *port. */
static inline int io_listen(int *port)
{
    if (port)
        *port = 0;
    int lfd = weft_tcp_listen("127.0.0.1", "0", 0);
    if (lfd >= 0 && port)
        *port = weft_local_port(lfd);
    return lfd;
}

static inline void io_port_str(int port, char out[16]) { snprintf(out, 16, "%d", port); }

/* Coroutine: a connected TCP pair over loopback (*a the connecting end, *b
 * the accepted one).  0 or -errno. */
static inline int io_tcp_pair(int *a, int *b)
{
    *a = *b = -1;
    int port;
    int lfd = io_listen(&port);
    if (lfd < 0)
        return lfd;
    char ps[16];
    io_port_str(port, ps);
    int c = weft_tcp_connect("127.0.0.1", ps, io_in_ms(5000));
    if (c < 0) {
        weft_close(lfd);
        return c;
    }
    int s = weft_accept(lfd, io_in_ms(5000));
    weft_close(lfd);
    if (s < 0) {
        weft_close(c);
        return s;
    }
    *a = c;
    *b = s;
    return 0;
}

/* Coroutine: like io_tcp_pair, with small socket buffers on both ends from
 * the start (set on the listener before the handshake, so that the window
 * advertised is small too): a writer blocks after some 10-20 KiB that the
 * reader has not taken. */
static inline int io_tcp_pair_small(int *a, int *b)
{
    *a = *b = -1;
    int port;
    int lfd = io_listen(&port);
    if (lfd < 0)
        return lfd;
    io_small_buffers(lfd);
    char ps[16];
    io_port_str(port, ps);
    int c = weft_tcp_connect("127.0.0.1", ps, io_in_ms(5000));
    if (c < 0) {
        weft_close(lfd);
        return c;
    }
    io_small_buffers(c);
    int s = weft_accept(lfd, io_in_ms(5000));
    weft_close(lfd);
    if (s < 0) {
        weft_close(c);
        return s;
    }
    *a = c;
    *b = s;
    return 0;
}

/* A loopback TCP port with nothing listening on it (bound, then closed;
 * another process taking it within microseconds is ignored). */
static inline int io_closed_port(void)
{
    int port;
    int lfd = io_listen(&port);
    if (lfd < 0)
        return lfd;
    weft_close(lfd);
    return port;
}

/* Coroutine: a listener (backlog 1, never accepted from) whose accept queue
 * is full: a further connect to it gets no answer (Linux drops the SYN), so
 * it waits until its deadline.  The connections that filled the queue are
 * stored in held[] (*nheld of them, at most cap) for the caller to close.
 * Returns the listener or -errno. */
static inline int io_full_listener(int *port, int *held, int cap, int *nheld)
{
    *port = 0;
    *nheld = 0;
    int lfd = weft_tcp_listen("127.0.0.1", "0", 1);
    if (lfd < 0)
        return lfd;
    *port = weft_local_port(lfd);
    char ps[16];
    io_port_str(*port, ps);
    *nheld = 0;
    /* Fill it: connects succeed (the kernel completes them into the queue)
     * until one hangs. */
    while (*nheld < cap) {
        int c = weft_tcp_connect("127.0.0.1", ps, io_in_ms(200));
        if (c < 0)
            break;
        held[(*nheld)++] = c;
    }
    return lfd;
}

/* Is ::1 usable here (a sandbox may have no IPv6)? */
static inline bool io_have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Sets SO_LINGER {1, 0}: the next close sends a reset (RST). */
static inline void io_linger0(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/* Non-blocking writes until the socket buffer is full; bytes written. */
static inline size_t io_fill_socket(int fd)
{
    static const char junk[4096];
    size_t total = 0;
    for (;;) {
        ssize_t r = send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0)
            break;
        total += (size_t)r;
    }
    return total;
}

/* Coroutine: reads exactly n bytes with weft_read; n, 0-short (EOF) as the
 * count read so far, or -errno. */
static inline ssize_t io_read_full(int fd, void *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = weft_read(fd, (char *)buf + got, n - got, deadline);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Coroutine: reads until end of stream (or error / deadline) into a growing
 * buffer; returns the bytes read (>= 0) and stores the buffer in *out
 * (malloc'd, NUL-terminated), or -errno (with *out still set). */
static inline ssize_t io_read_all(int fd, char **out, int64_t deadline)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t rc = 0;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = weft_read(fd, buf + len, cap - len, deadline);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    *out = buf;
    return rc < 0 ? rc : (ssize_t)len;
}

/* A temporary directory for Unix sockets (/tmp/weft-io-XXXXXX). */
static inline void io_tmpdir(char out[64])
{
    snprintf(out, 64, "/tmp/weft-io-XXXXXX");
    assert_non_null(mkdtemp(out));
}

/* ------------------------------------------------------------------ */
/* Resource limits                                                     */
/* ------------------------------------------------------------------ */

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
 * limit. */
static inline long io_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

/* Process CPU time (user + system), ns. */
static inline int64_t io_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * WEFT_SEC +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * WEFT_US;
}

/* ------------------------------------------------------------------ */
/* The tests' line echo handler                                        */
/* ------------------------------------------------------------------ */

/* Configuration and counters of io_echo_handler (the server's ctx).  It
 * echoes each line; a line too long for cap - 1 bytes (or the stream's
 * buffer) is answered "ERR too long\n"; with line_ms, a line not complete
 * within line_ms of starting to wait for it ends the connection after
 * "TIMEOUT\n"; with eof_report, end of stream is answered "EOF <lines>\n"
 * before the handler returns. */
typedef struct io_srv {
    size_t cap;          /* readline capacity; 0: 1024 */
    int64_t line_ms;     /* per-line deadline; 0: none */
    bool eof_report;
    _Atomic int started, finished, active, max_active;
    _Atomic int n_cancelled, n_timeout, n_emsgsize, n_eof, n_error;
    _Atomic int last_error;
    _Atomic long lines;
} io_srv;

static inline void io_echo_handler(weft_stream *s, void *ctx)
{
    io_srv *h = ctx;
    atomic_fetch_add(&h->started, 1);
    int a = atomic_fetch_add(&h->active, 1) + 1;
    int m = atomic_load(&h->max_active);
    while (a > m && !atomic_compare_exchange_weak(&h->max_active, &m, a))
        ;
    size_t cap = h->cap ? h->cap : 1024;
    char *buf = malloc(cap);
    long lines = 0;
    for (;;) {
        int64_t dl = h->line_ms ? weft_now() + h->line_ms * WEFT_MS : WEFT_FOREVER;
        ssize_t r = weft_stream_readline(s, buf, cap, dl);
        int rc = 0;
        if (r > 0) {
            lines++;
            atomic_fetch_add(&h->lines, 1);
            rc = weft_stream_write(s, buf, (size_t)r);
            if (rc == 0)
                rc = weft_stream_drain(s, weft_now() + 10 * WEFT_SEC);
        } else if (r == -EMSGSIZE) {
            atomic_fetch_add(&h->n_emsgsize, 1);
            rc = weft_stream_write(s, "ERR too long\n", 13);
            if (rc == 0)
                rc = weft_stream_drain(s, weft_now() + 10 * WEFT_SEC);
        } else if (r == 0) {
            atomic_fetch_add(&h->n_eof, 1);
            if (h->eof_report) {
                char msg[32];
                int n = snprintf(msg, sizeof msg, "EOF %ld\n", lines);
                if (weft_stream_write(s, msg, (size_t)n) == 0)
                    weft_stream_drain(s, weft_now() + 10 * WEFT_SEC);
            }
            break;
        } else if (r == -ETIMEDOUT) {
            atomic_fetch_add(&h->n_timeout, 1);
            weft_stream_write(s, "TIMEOUT\n", 8);  /* flushed by the close */
            break;
        } else if (r == -ECANCELED) {
            atomic_fetch_add(&h->n_cancelled, 1);
            break;
        } else {
            rc = (int)r;
        }
        if (rc < 0) {
            if (rc == -ECANCELED) {
                atomic_fetch_add(&h->n_cancelled, 1);
            } else {
                atomic_fetch_add(&h->n_error, 1);
                atomic_store(&h->last_error, rc);
            }
            break;
        }
    }
    free(buf);
    atomic_fetch_sub(&h->active, 1);
    atomic_fetch_add(&h->finished, 1);
}

/* A task running weft_serve_forever; its result in rc. */
typedef struct io_serve {
    weft_server *srv;
    int rc;
    _Atomic int returned;
} io_serve;

static inline void *io_serve_main(void *p)
{
    io_serve *s = p;
    s->rc = weft_serve_forever(s->srv);
    atomic_store(&s->returned, 1);
    return NULL;
}

#endif
