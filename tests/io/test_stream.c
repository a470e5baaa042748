/*
 * cmocka tests of streams (asyncio StreamReader / StreamWriter): weft_stream_new,
 * weft_open_connection, weft_stream_readline / _read / _readexactly,
 * weft_stream_write / _drain / _fd / _close, with their error codes
 * (-EINVAL, -EPERM, -ETIMEDOUT, -ECANCELED, -EPIPE, -EMSGSIZE; NULL with
 * errno EBADF, ECONNREFUSED, ETIMEDOUT, ENOENT).
 *
 * A stream is tested against a raw descriptor on the other end of a
 * loopback TCP (or Unix) connection, so that what crosses the wire is seen
 * byte for byte.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "io_test.h"

/* A stream on one end of a loopback TCP pair; the raw other end in *peer. */
static weft_stream *stream_pair(int *peer)
{
    int a, b;
    if (io_tcp_pair(&a, &b) != 0)
        return NULL;
    weft_stream *s = weft_stream_new(a);
    T_CHECK(s != NULL);
    T_CHECK_EQ(weft_stream_fd(s), a);
    *peer = b;
    return s;
}

/* A coroutine that writes pieces to a descriptor with pauses between them,
 * then optionally shuts its writing side down. */
typedef struct {
    int fd;
    const char *const *pieces;
    const size_t *lens;  /* NULL: strlen */
    int n;
    int64_t pause_ms;
    bool shut;
    ssize_t rc;
} feeder;

static void *feeder_main(void *p)
{
    feeder *f = p;
    f->rc = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->pause_ms && i > 0)
            weft_sleep(f->pause_ms * WEFT_MS);
        size_t len = f->lens ? f->lens[i] : strlen(f->pieces[i]);
        ssize_t r = weft_write(f->fd, f->pieces[i], len, io_in_ms(10000));
        if (r != (ssize_t)len) {
            f->rc = r < 0 ? r : -EIO;
            return NULL;
        }
        f->rc += r;
    }
    if (f->shut)
        shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void put(int fd, const char *s)
{
    T_CHECK_EQ(weft_write(fd, s, strlen(s), io_in_ms(5000)), (ssize_t)strlen(s));
}

/* readline into buf (cap), checking the result against want (NULL: expect
 * the code rc). */
#define EXPECT_LINE(s, cap, want)                                                  \
    do {                                                                           \
        char buf_[256];                                                            \
        ssize_t r_ = weft_stream_readline((s), buf_, (cap), io_in_ms(5000));       \
        T_CHECK_EQ(r_, (ssize_t)strlen(want));                                     \
        if (r_ == (ssize_t)strlen(want))                                           \
            T_CHECK(strcmp(buf_, (want)) == 0);                                    \
    } while (0)
#define EXPECT_CODE(s, cap, rc)                                                    \
    do {                                                                           \
        char buf_[256];                                                            \
        T_CHECK_EQ(weft_stream_readline((s), buf_, (cap), io_in_ms(5000)), (rc));  \
    } while (0)

/* ------------------------------------------------------------------ */
/* Arguments                                                           */
/* ------------------------------------------------------------------ */

static void *args_main(void *arg)
{
    (void)arg;
    io_errno_clear();
    T_CHECK(weft_stream_new(-1) == NULL);
    T_CHECK_EQ(io_errno(), EBADF);
    T_CHECK_EQ(weft_stream_fd(NULL), -EINVAL);
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[16];
    T_CHECK_EQ(weft_stream_readline(NULL, buf, sizeof buf, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_readline(s, NULL, sizeof buf, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_readline(s, buf, 0, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_read(NULL, buf, sizeof buf, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_read(s, NULL, 5, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_read(s, buf, 0, WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_stream_readexactly(NULL, buf, 5, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_readexactly(s, NULL, 5, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 0, WEFT_FOREVER), 0);
    T_CHECK_EQ(weft_stream_write(NULL, "x", 1), -EINVAL);
    T_CHECK_EQ(weft_stream_write(s, NULL, 1), -EINVAL);
    T_CHECK_EQ(weft_stream_write(s, NULL, 0), 0);
    T_CHECK_EQ(weft_stream_drain(NULL, WEFT_FOREVER), -EINVAL);
    T_CHECK_EQ(weft_stream_drain(s, WEFT_FOREVER), 0);  /* nothing buffered */
    T_CHECK_EQ(weft_stream_close(NULL), -EINVAL);
    T_CHECK_EQ(weft_stream_close(s), 0);
    weft_close(peer);
    return NULL;
}

static void test_stream_args(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, args_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* -EPERM outside a coroutine                                          */
/* ------------------------------------------------------------------ */

static void *eperm_calls(void *arg)
{
    int sv[2];
    T_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    weft_stream *s = weft_stream_new(sv[0]);
    T_CHECK(s != NULL);
    char buf[16];
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_stream_read(s, buf, sizeof buf, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 4, WEFT_FOREVER), -EPERM);
    T_CHECK_EQ(weft_stream_drain(s, WEFT_FOREVER), -EPERM);  /* nothing buffered */
    /* write only buffers: not a suspension point, so it works */
    T_CHECK_EQ(weft_stream_write(s, "bye\n", 4), 0);
    T_CHECK_EQ(weft_stream_drain(s, WEFT_FOREVER), -EPERM);  /* buffered */
    io_errno_clear();
    T_CHECK(weft_open_connection("127.0.0.1", "1", WEFT_FOREVER) == NULL);
    T_CHECK_EQ(io_errno(), EPERM);
    /* close flushes what it can without waiting: the peer gets it */
    T_CHECK_EQ(weft_stream_close(s), 0);
    ssize_t n = read(sv[1], buf, sizeof buf);
    T_CHECK_EQ(n, 4);
    T_CHECK(n == 4 && memcmp(buf, "bye\n", 4) == 0);
    T_CHECK_EQ(read(sv[1], buf, sizeof buf), 0);
    close(sv[1]);
    return arg;
}

static void *eperm_main(void *arg)
{
    (void)arg;
    T_CHECK(t_in_thread(eperm_calls, (void *)1) == (void *)1);
    return NULL;
}

static void test_stream_eperm(void **state)
{
    (void)state;
    IO_BEGIN(20);
    eperm_calls(NULL);
    t_assert_checks();
    assert_int_equal(t_run(eperm_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* readline                                                            */
/* ------------------------------------------------------------------ */

static void *readline_basic_main(void *arg)
{
    (void)arg;
    int peer;
    /* Last line without '\n' at EOF. */
    weft_stream *s = stream_pair(&peer);
    put(peer, "a\nbb\n\nccc");
    shutdown(peer, SHUT_WR);
    EXPECT_LINE(s, 64, "a\n");
    EXPECT_LINE(s, 64, "bb\n");
    EXPECT_LINE(s, 64, "\n");
    EXPECT_LINE(s, 64, "ccc");
    EXPECT_CODE(s, 64, 0);
    EXPECT_CODE(s, 64, 0);  /* and again */
    char b[8];
    T_CHECK_EQ(weft_stream_read(s, b, sizeof b, io_in_ms(1000)), 0);
    T_CHECK_EQ(weft_stream_readexactly(s, b, 1, io_in_ms(1000)), -EPIPE);
    weft_stream_close(s);
    weft_close(peer);

    /* Last line with '\n' at EOF; and an empty stream. */
    s = stream_pair(&peer);
    put(peer, "x\n");
    shutdown(peer, SHUT_WR);
    EXPECT_LINE(s, 64, "x\n");
    EXPECT_CODE(s, 64, 0);
    weft_stream_close(s);
    weft_close(peer);
    s = stream_pair(&peer);
    shutdown(peer, SHUT_WR);
    EXPECT_CODE(s, 64, 0);
    weft_stream_close(s);
    weft_close(peer);

    /* A line that arrives one byte at a time from another coroutine. */
    s = stream_pair(&peer);
    static const char *const bytes[] = {"s", "l", "o", "w", "\n", "n", "e", "x", "t", "\n"};
    feeder f = {.fd = peer, .pieces = bytes, .n = 10, .pause_ms = 2};
    weft_task *t = weft_spawn(feeder_main, &f);
    EXPECT_LINE(s, 64, "slow\n");
    EXPECT_LINE(s, 64, "next\n");
    weft_join(t, NULL);

    /* Embedded NULs: the length, not strlen, tells the line. */
    T_CHECK_EQ(weft_write(peer, "a\0b\n", 4, io_in_ms(1000)), 4);
    char buf[16];
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, io_in_ms(1000)), 4);
    T_CHECK(memcmp(buf, "a\0b\n", 5) == 0);

    /* Many lines in one write (they all sit in the buffer). */
    char *many = malloc(20000);
    size_t off = 0;
    for (int i = 0; i < 2000; i++)
        off += (size_t)sprintf(many + off, "%d\n", i);
    T_CHECK_EQ(weft_write(peer, many, off, io_in_ms(5000)), (ssize_t)off);
    for (int i = 0; i < 2000; i++) {
        char want[16];
        sprintf(want, "%d\n", i);
        ssize_t r = weft_stream_readline(s, buf, sizeof buf, io_in_ms(5000));
        if (r != (ssize_t)strlen(want) || strcmp(buf, want) != 0) {
            T_CHECK(!"line mismatch");
            break;
        }
    }
    free(many);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readline_basic(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(1, readline_basic_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(4, readline_basic_main, NULL, NULL), 0);
}

/* -EMSGSIZE: a line that does not fit in cap - 1 bytes is discarded
 * through its '\n'; the next line reads fine. */
static void *emsgsize_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    put(peer, "123456\n"                 /* 7 bytes: fits cap 8 exactly */
              "1234567\n"                /* 8: one too many */
              "ok\n"
              "0123456789abcdefghij\n"
              "fine\n"
              "zzzzzzzzzzzzzzzzzz");     /* too long, at EOF, no '\n' */
    shutdown(peer, SHUT_WR);
    EXPECT_LINE(s, 8, "123456\n");
    EXPECT_CODE(s, 8, -EMSGSIZE);
    EXPECT_LINE(s, 8, "ok\n");
    EXPECT_CODE(s, 8, -EMSGSIZE);
    EXPECT_LINE(s, 8, "fine\n");
    EXPECT_CODE(s, 8, -EMSGSIZE);
    EXPECT_CODE(s, 8, 0);
    weft_stream_close(s);
    weft_close(peer);

    /* cap 1 leaves no room even for "\n"; cap 2 takes it. */
    s = stream_pair(&peer);
    put(peer, "\n\nab\n");
    EXPECT_CODE(s, 1, -EMSGSIZE);
    EXPECT_LINE(s, 2, "\n");
    EXPECT_CODE(s, 3, -EMSGSIZE);
    weft_stream_close(s);
    weft_close(peer);

    /* A long line arriving in pieces, past cap - 1 before its '\n' came. */
    s = stream_pair(&peer);
    static const char *const pieces[] = {"0123456789", "0123456789", "0123456789",
                                         "0123456789\nnext", " line\n"};
    feeder f = {.fd = peer, .pieces = pieces, .n = 5, .pause_ms = 5};
    weft_task *t = weft_spawn(feeder_main, &f);
    EXPECT_CODE(s, 16, -EMSGSIZE);
    EXPECT_LINE(s, 16, "next line\n");
    weft_join(t, NULL);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readline_emsgsize(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, emsgsize_main, NULL, NULL), 0);
}

/* Lines longer than the stream's own 64 KiB buffer: -EMSGSIZE whatever cap
 * is, and the stream resynchronises on the next line. */
#define SBUF (64 * 1024)

static void *long_lines_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    size_t lens[] = {SBUF, SBUF + 1, 200000, 1000000, 10};
    enum { N = sizeof lens / sizeof lens[0] };
    char *pieces[N];
    for (int i = 0; i < N; i++) {
        pieces[i] = malloc(lens[i]);
        memset(pieces[i], 'a' + i, lens[i]);
        pieces[i][lens[i] - 1] = '\n';
    }
    feeder f = {.fd = peer, .pieces = (const char *const *)pieces, .lens = lens, .n = N};
    weft_task *t = weft_spawn(feeder_main, &f);
    size_t cap = 2 << 20;
    char *buf = malloc(cap);
    /* SBUF bytes with its '\n': exactly fills the buffer, fits. */
    ssize_t r = weft_stream_readline(s, buf, cap, io_in_ms(10000));
    T_CHECK_EQ(r, SBUF);
    T_CHECK(r == SBUF && buf[0] == 'a' && buf[SBUF - 1] == '\n' && buf[SBUF] == 0);
    T_CHECK_EQ(weft_stream_readline(s, buf, cap, io_in_ms(10000)), -EMSGSIZE);
    T_CHECK_EQ(weft_stream_readline(s, buf, cap, io_in_ms(10000)), -EMSGSIZE);
    T_CHECK_EQ(weft_stream_readline(s, buf, cap, io_in_ms(10000)), -EMSGSIZE);
    r = weft_stream_readline(s, buf, cap, io_in_ms(10000));
    T_CHECK_EQ(r, 10);
    T_CHECK(r == 10 && memcmp(buf, "eeeeeeeee\n", 10) == 0);
    T_CHECK_EQ(weft_join(t, NULL), 0);
    T_CHECK_EQ(f.rc, (ssize_t)(lens[0] + lens[1] + lens[2] + lens[3] + lens[4]));
    for (int i = 0; i < N; i++)
        free(pieces[i]);
    free(buf);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readline_longer_than_buffer(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(2, long_lines_main, NULL, NULL), 0);
}

/* Deadlines: -ETIMEDOUT keeps a partial line; it is returned whole later. */
static void *readline_deadline_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[64];
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, t0 + 40 * WEFT_MS), -ETIMEDOUT);
    T_CHECK(weft_now() - t0 >= 40 * WEFT_MS);
    T_CHECK(weft_now() - t0 < 2 * WEFT_SEC * T_SLACK);
    put(peer, "par");
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, io_in_ms(40)), -ETIMEDOUT);
    put(peer, "tial\n");
    EXPECT_LINE(s, 64, "partial\n");
    /* A past deadline with a whole line buffered succeeds. */
    put(peer, "one\ntwo\n");
    weft_sleep(5 * WEFT_MS);
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, weft_now() - 1), 4);
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, 0), 4);
    T_CHECK(strcmp(buf, "two\n") == 0);
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, 0), -ETIMEDOUT);
    /* The deadline is one for the whole line: a trickle does not extend it. */
    static const char *const drip[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                                       "k", "l", "m", "n", "o", "p", "q", "r", "s", "\n"};
    feeder f = {.fd = peer, .pieces = drip, .n = 20, .pause_ms = 10};
    weft_task *t = weft_spawn(feeder_main, &f);
    t0 = weft_now();
    T_CHECK_EQ(weft_stream_readline(s, buf, sizeof buf, t0 + 60 * WEFT_MS), -ETIMEDOUT);
    int64_t el = weft_now() - t0;
    T_CHECK(el >= 60 * WEFT_MS);
    /* (-ETIMEDOUT is the proof: a deadline extended per byte would have let
     * the line complete at ~190 ms; this bound only says it did not hang) */
    T_CHECK(el < 2 * WEFT_SEC * T_SLACK);
    weft_join(t, NULL);
    EXPECT_LINE(s, 64, "abcdefghijklmnopqrs\n");  /* nothing lost */
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readline_deadline(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, readline_deadline_main, NULL, NULL), 0);
}

/* A line already found too long, whose '\n' has not come when the deadline
 * passes: its tail must still be discarded (the contract: "that line is then
 * discarded up to its '\n'"), never returned as a line of its own. */
static void *discard_timeout_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[8];
    put(peer, "0123456789ABCDEF");  /* too long for cap 8, no '\n' yet */
    weft_sleep(5 * WEFT_MS);
    ssize_t r = weft_stream_readline(s, buf, sizeof buf, io_in_ms(30));
    T_CHECK(r == -ETIMEDOUT || r == -EMSGSIZE);
    put(peer, "tail\nnext\n");
    /* What follows: (-EMSGSIZE for the rest of the long line, if the first
     * call did not report it) then "next\n"; never "tail\n". */
    ssize_t r2 = weft_stream_readline(s, buf, sizeof buf, io_in_ms(2000));
    if (r2 == -EMSGSIZE)
        r2 = weft_stream_readline(s, buf, sizeof buf, io_in_ms(2000));
    if (r2 == 5 && strcmp(buf, "tail\n") == 0)
        fprintf(stderr, "readline returned the tail of a discarded line as a line\n");
    T_CHECK_EQ(r2, 5);
    T_CHECK(r2 == 5 && strcmp(buf, "next\n") == 0);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readline_discard_survives_timeout(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, discard_timeout_main, NULL, NULL), 0);
}

/* Cancellation of a waiting readline, and sticky cancellation. */
typedef struct {
    weft_stream *s;
    _Atomic int started;
    ssize_t rc[4];
} rl_victim;

static void *rl_victim_main(void *p)
{
    rl_victim *v = p;
    char buf[32];
    atomic_store(&v->started, 1);
    v->rc[0] = weft_stream_readline(v->s, buf, sizeof buf, WEFT_FOREVER);
    v->rc[1] = weft_stream_read(v->s, buf, sizeof buf, WEFT_FOREVER);
    v->rc[2] = weft_stream_readexactly(v->s, buf, 4, WEFT_FOREVER);
    weft_stream_write(v->s, "x", 1);
    v->rc[3] = weft_stream_drain(v->s, WEFT_FOREVER);
    return NULL;
}

static void *stream_cancel_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    rl_victim v = {.s = s};
    weft_task *t = weft_spawn(rl_victim_main, &v);
    io_await_int(&v.started, 1, 1000);
    weft_sleep(20 * WEFT_MS);
    T_CHECK(!weft_task_done(t));
    weft_cancel(t);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);
    for (int i = 0; i < 4; i++)
        T_CHECK_EQ(v.rc[i], -ECANCELED);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_stream_cancel(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, stream_cancel_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* read, readexactly                                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    size_t n;
    ssize_t rc;
} bulk;

static char pat(size_t i) { return (char)((i * 131 + (i >> 9)) & 0xff); }

static void *bulk_writer(void *p)
{
    bulk *b = p;
    char *buf = malloc(b->n);
    for (size_t i = 0; i < b->n; i++)
        buf[i] = pat(i);
    size_t off = 0;
    while (off < b->n) {
        size_t k = b->n - off < 7919 ? b->n - off : 7919;
        ssize_t r = weft_write(b->fd, buf + off, k, io_in_ms(10000));
        if (r < 0) {
            b->rc = r;
            free(buf);
            return NULL;
        }
        off += k;
    }
    b->rc = (ssize_t)off;
    free(buf);
    return NULL;
}

static void *read_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[256];
    put(peer, "hello world");
    weft_sleep(5 * WEFT_MS);
    T_CHECK_EQ(weft_stream_read(s, buf, 5, io_in_ms(1000)), 5);
    T_CHECK(memcmp(buf, "hello", 5) == 0);
    T_CHECK_EQ(weft_stream_read(s, buf, sizeof buf, io_in_ms(1000)), 6);  /* the rest */
    T_CHECK(memcmp(buf, " world", 6) == 0);
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_stream_read(s, buf, sizeof buf, t0 + 30 * WEFT_MS), -ETIMEDOUT);
    T_CHECK(weft_now() - t0 >= 30 * WEFT_MS);
    /* After readline left bytes in the buffer, read returns them first. */
    put(peer, "line\nrest");
    EXPECT_LINE(s, 64, "line\n");
    T_CHECK_EQ(weft_stream_read(s, buf, sizeof buf, io_in_ms(1000)), 4);
    T_CHECK(memcmp(buf, "rest", 4) == 0);

    /* Bulk, with reads both smaller and larger than the 64 KiB buffer. */
    bulk b = {.fd = peer, .n = 3 << 20};
    weft_task *t = weft_spawn(bulk_writer, &b);
    size_t got = 0, sizes[] = {1, 100, 4096, 70000, 1 << 20, 65536, 3};
    char *big = malloc(1 << 20);
    bool ok = true;
    for (int i = 0; got < b.n && ok; i++) {
        size_t want = sizes[i % 7];
        if (want > b.n - got)
            want = b.n - got;
        ssize_t r = weft_stream_read(s, big, want, io_in_ms(10000));
        if (r <= 0 || (size_t)r > want) {
            T_CHECK(!"bad stream_read result");
            break;
        }
        for (ssize_t j = 0; j < r; j++)
            if (big[j] != pat(got + (size_t)j)) {
                T_CHECK(!"stream_read: wrong byte");
                ok = false;
                break;
            }
        got += (size_t)r;
    }
    T_CHECK_EQ(got, b.n);
    weft_join(t, NULL);
    T_CHECK_EQ(b.rc, (ssize_t)b.n);
    shutdown(peer, SHUT_WR);
    T_CHECK_EQ(weft_stream_read(s, big, 1 << 20, io_in_ms(1000)), 0);
    T_CHECK_EQ(weft_stream_read(s, buf, 10, io_in_ms(1000)), 0);
    free(big);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_stream_read(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(2, read_main, NULL, NULL), 0);
}

static void *readexactly_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[64];
    /* Across several writes with pauses. */
    static const char *const pieces[] = {"abc", "defg", "hij"};
    feeder f = {.fd = peer, .pieces = pieces, .n = 3, .pause_ms = 5};
    weft_task *t = weft_spawn(feeder_main, &f);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 10, io_in_ms(5000)), 10);
    T_CHECK(memcmp(buf, "abcdefghij", 10) == 0);
    weft_join(t, NULL);
    /* A header line, then a body of the length it gives, then more. */
    put(peer, "LEN 5\nhellotail\n");
    EXPECT_LINE(s, 64, "LEN 5\n");
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 5, io_in_ms(1000)), 5);
    T_CHECK(memcmp(buf, "hello", 5) == 0);
    EXPECT_LINE(s, 64, "tail\n");
    /* Larger than the buffer. */
    bulk b = {.fd = peer, .n = 1 << 20};
    t = weft_spawn(bulk_writer, &b);
    char *big = malloc(b.n);
    ssize_t r = weft_stream_readexactly(s, big, b.n, io_in_ms(10000));
    T_CHECK_EQ(r, (ssize_t)b.n);
    bool same = r == (ssize_t)b.n;
    for (size_t i = 0; same && i < b.n; i++)
        same = big[i] == pat(i);
    T_CHECK(same);
    weft_join(t, NULL);
    /* Deadline. */
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 5, t0 + 30 * WEFT_MS), -ETIMEDOUT);
    T_CHECK(weft_now() - t0 >= 30 * WEFT_MS);
    /* EOF before n bytes: -EPIPE. */
    put(peer, "abc");
    shutdown(peer, SHUT_WR);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 5, io_in_ms(1000)), -EPIPE);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 1, io_in_ms(1000)), -EPIPE);
    free(big);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_stream_readexactly(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(2, readexactly_main, NULL, NULL), 0);
}

/* A readexactly whose deadline passes after part of the bytes came: as
 * with asyncio's readexactly under wait_for (and weft's own readline), the
 * bytes that came stay in the stream for the next call instead of being
 * dropped. */
static void *readexactly_keep_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[16];
    put(peer, "xy");
    weft_sleep(5 * WEFT_MS);
    T_CHECK_EQ(weft_stream_readexactly(s, buf, 5, io_in_ms(30)), -ETIMEDOUT);
    put(peer, "abc");
    ssize_t r = weft_stream_readexactly(s, buf, 5, io_in_ms(50));
    if (r != 5 || memcmp(buf, "xyabc", 5) != 0)
        fprintf(stderr, "readexactly after a timed-out one: %zd, '%.*s' (want 5, 'xyabc')\n", r,
                r > 0 ? (int)r : 0, buf);
    T_CHECK_EQ(r, 5);
    T_CHECK(r == 5 && memcmp(buf, "xyabc", 5) == 0);
    weft_stream_close(s);
    weft_close(peer);
    return NULL;
}

static void test_readexactly_timeout_keeps_bytes(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, readexactly_keep_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* write, drain, close                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    size_t want;
    char *data;
    size_t got;
    ssize_t rc;
    int64_t start_after_ms;
} collector;

/* Reads until EOF or `want` bytes (then a little longer, to catch extra
 * bytes). */
static void *collector_main(void *p)
{
    collector *c = p;
    if (c->start_after_ms)
        weft_sleep(c->start_after_ms * WEFT_MS);
    c->data = malloc(c->want + 65536);
    c->got = 0;
    for (;;) {
        int64_t dl = c->got >= c->want ? io_in_ms(100) : io_in_ms(10000);
        ssize_t r = weft_read(c->fd, c->data + c->got, c->want + 65536 - c->got, dl);
        if (r == -ETIMEDOUT && c->got >= c->want)
            break;
        if (r <= 0) {
            c->rc = r;
            return NULL;
        }
        c->got += (size_t)r;
        if (c->got >= c->want + 65536)
            break;
    }
    c->rc = (ssize_t)c->got;
    return NULL;
}

static void *write_drain_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    char buf[64];
    /* Buffered: nothing goes out before drain. */
    T_CHECK_EQ(weft_stream_write(s, "abc", 3), 0);
    T_CHECK_EQ(weft_stream_write(s, "def\n", 4), 0);
    T_CHECK_EQ(weft_read(peer, buf, sizeof buf, io_in_ms(30)), -ETIMEDOUT);
    T_CHECK_EQ(weft_stream_drain(s, io_in_ms(1000)), 0);
    T_CHECK_EQ(io_read_full(peer, buf, 7, io_in_ms(1000)), 7);
    T_CHECK(memcmp(buf, "abcdef\n", 7) == 0);
    T_CHECK_EQ(weft_stream_drain(s, io_in_ms(1000)), 0);  /* empty: no-op */

    /* Many small writes past the buffer's size (flushes on its own), then
     * one write larger than the buffer; all bytes once, in order. */
    size_t total = 0;
    collector c = {.fd = peer};
    size_t nsmall = 30000, small = 7;
    c.want = nsmall * small + 300000;
    weft_task *t = weft_spawn(collector_main, &c);
    char piece[7];
    for (size_t i = 0; i < nsmall; i++) {
        for (size_t j = 0; j < small; j++)
            piece[j] = pat(total + j);
        T_CHECK_EQ(weft_stream_write(s, piece, small), 0);
        total += small;
    }
    char *big = malloc(300000);
    for (size_t j = 0; j < 300000; j++)
        big[j] = pat(total + j);
    T_CHECK_EQ(weft_stream_write(s, big, 300000), 0);
    total += 300000;
    T_CHECK_EQ(weft_stream_drain(s, io_in_ms(10000)), 0);
    weft_join(t, NULL);
    T_CHECK_EQ(c.rc, (ssize_t)total);
    bool same = c.got == total;
    for (size_t i = 0; same && i < total; i++)
        same = c.data[i] == pat(i);
    T_CHECK(same);
    free(c.data);
    free(big);

    /* Drain to a closed peer: -EPIPE in the end. */
    weft_close(peer);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) {
        weft_stream_write(s, "zzzz", 4);
        rc = weft_stream_drain(s, io_in_ms(1000));
        if (rc == 0)
            weft_sleep(2 * WEFT_MS);
    }
    T_CHECK_EQ(rc, -EPIPE);
    weft_stream_close(s);
    return NULL;
}

static void test_stream_write_drain(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(2, write_drain_main, NULL, NULL), 0);
}

/* A drain that times out part-way, retried once the peer reads: every byte
 * written must arrive exactly once ("sends everything buffered" - not the
 * part already sent a second time). */
static void *drain_retry_main(void *arg)
{
    (void)arg;
    int a, b;
    T_CHECK_EQ(io_tcp_pair_small(&a, &b), 0);
    weft_stream *s = weft_stream_new(a);
    size_t n = 60000;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = pat(i);
    T_CHECK_EQ(weft_stream_write(s, data, n), 0);  /* fits: buffered */
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_stream_drain(s, t0 + 50 * WEFT_MS), -ETIMEDOUT);  /* nobody reads */
    T_CHECK(weft_now() - t0 >= 50 * WEFT_MS);
    collector c = {.fd = b, .want = n};
    weft_task *t = weft_spawn(collector_main, &c);
    T_CHECK_EQ(weft_stream_drain(s, io_in_ms(10000)), 0);
    weft_join(t, NULL);
    if (c.got != n)
        fprintf(stderr, "drain after a timed-out drain: peer got %zu bytes, %zu written\n",
                c.got, n);
    T_CHECK_EQ(c.got, n);
    bool same = c.got >= n;
    for (size_t i = 0; same && i < n; i++)
        same = c.data[i] == pat(i);
    T_CHECK(same);
    free(c.data);
    free(data);
    weft_stream_close(s);
    weft_close(b);
    return NULL;
}

static void test_drain_after_timeout_sends_once(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(2, drain_retry_main, NULL, NULL), 0);
}

static void *close_flush_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    T_CHECK_EQ(weft_stream_write(s, "bye\n", 4), 0);
    T_CHECK_EQ(weft_stream_close(s), 0);  /* flushes what it can */
    char *all;
    ssize_t r = io_read_all(peer, &all, io_in_ms(2000));
    T_CHECK_EQ(r, 4);
    T_CHECK(r == 4 && strcmp(all, "bye\n") == 0);
    free(all);
    weft_close(peer);

    /* A stream over a Unix socket behaves the same. */
    char dir[64], path[128];
    io_tmpdir(dir);
    snprintf(path, sizeof path, "%s/s", dir);
    int lfd = weft_unix_listen(path, 0);
    int c = weft_unix_connect(path, io_in_ms(1000));
    int sfd = weft_accept(lfd, io_in_ms(1000));
    T_CHECK(lfd >= 0 && c >= 0 && sfd >= 0);
    weft_stream *us = weft_stream_new(sfd);
    put(c, "over unix\nlast");
    shutdown(c, SHUT_WR);
    EXPECT_LINE(us, 64, "over unix\n");
    EXPECT_LINE(us, 64, "last");
    EXPECT_CODE(us, 64, 0);
    T_CHECK_EQ(weft_stream_write(us, "reply\n", 6), 0);
    T_CHECK_EQ(weft_stream_drain(us, io_in_ms(1000)), 0);
    T_CHECK_EQ(weft_stream_write(us, "unflushed\n", 10), 0);
    weft_stream_close(us);
    r = io_read_all(c, &all, io_in_ms(2000));
    T_CHECK_EQ(r, 16);
    T_CHECK(r == 16 && strcmp(all, "reply\nunflushed\n") == 0);
    free(all);
    weft_close(c);
    weft_close(lfd);
    unlink(path);
    rmdir(dir);
    return NULL;
}

static void test_stream_close_flushes(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, close_flush_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* open_connection                                                     */
/* ------------------------------------------------------------------ */

static void *open_conn_main(void *arg)
{
    (void)arg;
    int port;
    int lfd = io_listen(&port);
    char ps[16];
    io_port_str(port, ps);
    weft_stream *c = weft_open_connection("127.0.0.1", ps, io_in_ms(5000));
    T_CHECK(c != NULL);
    int sfd = weft_accept(lfd, io_in_ms(5000));
    T_CHECK(sfd >= 0);
    weft_stream *srv = weft_stream_new(sfd);
    T_CHECK_EQ(weft_stream_write(c, "hello\n", 6), 0);
    T_CHECK_EQ(weft_stream_drain(c, io_in_ms(1000)), 0);
    EXPECT_LINE(srv, 64, "hello\n");
    T_CHECK_EQ(weft_stream_write(srv, "world\n", 6), 0);
    T_CHECK_EQ(weft_stream_drain(srv, io_in_ms(1000)), 0);
    EXPECT_LINE(c, 64, "world\n");
    weft_stream_close(srv);
    EXPECT_CODE(c, 64, 0);  /* the server side closed */
    weft_stream_close(c);

    /* By name, through the resolver. */
    c = weft_open_connection("localhost", ps, io_in_ms(10000));
    if (c) {
        /* localhost may be ::1 first, with nothing there: then it tried
         * 127.0.0.1 next. */
        sfd = weft_accept(lfd, io_in_ms(2000));
        T_CHECK(sfd >= 0);
        weft_close(sfd);
        weft_stream_close(c);
    } else {
        T_CHECK(!"open_connection(localhost) failed");
    }
    weft_close(lfd);

    /* Refused. */
    io_port_str(io_closed_port(), ps);
    io_errno_clear();
    T_CHECK(weft_open_connection("127.0.0.1", ps, io_in_ms(5000)) == NULL);
    T_CHECK_EQ(io_errno(), ECONNREFUSED);

    /* Unknown name (or no resolver: EAGAIN). */
    io_errno_clear();
    T_CHECK(weft_open_connection("no-such-host.invalid", "80", io_in_ms(10000)) == NULL);
    {
        int e_ = io_errno();
        T_CHECK(e_ == ENOENT || e_ == EAGAIN);
    }

    /* Timed out: a listener whose accept queue is full. */
    int held[16], nheld, fport;
    int flfd = io_full_listener(&fport, held, 16, &nheld);
    io_port_str(fport, ps);
    io_errno_clear();
    int64_t t0 = weft_now();
    T_CHECK(weft_open_connection("127.0.0.1", ps, t0 + 80 * WEFT_MS) == NULL);
    T_CHECK_EQ(io_errno(), ETIMEDOUT);
    T_CHECK(weft_now() - t0 >= 80 * WEFT_MS);
    for (int i = 0; i < nheld; i++)
        weft_close(held[i]);
    weft_close(flfd);
    return NULL;
}

static void test_open_connection(void **state)
{
    (void)state;
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(2, open_conn_main, NULL, NULL), 0);
}

/* weft_close on a stream's descriptor while a coroutine waits in
 * readline: it wakes with -EBADF.  (The stream is then freed without
 * closing again: weft_stream_close would close a number that may be
 * reused; here nothing else opens descriptors meanwhile, and it reports
 * -EBADF.) */
typedef struct {
    weft_stream *s;
    _Atomic int started;
    ssize_t rc;
} rl_wait;

static void *rl_wait_main(void *p)
{
    rl_wait *w = p;
    char buf[32];
    atomic_store(&w->started, 1);
    w->rc = weft_stream_readline(w->s, buf, sizeof buf, WEFT_FOREVER);
    return NULL;
}

static void *stream_ebadf_main(void *arg)
{
    (void)arg;
    int peer;
    weft_stream *s = stream_pair(&peer);
    rl_wait w = {.s = s};
    weft_task *t = weft_spawn(rl_wait_main, &w);
    io_await_int(&w.started, 1, 1000);
    weft_sleep(20 * WEFT_MS);
    T_CHECK_EQ(weft_close(weft_stream_fd(s)), 0);
    weft_join(t, NULL);
    T_CHECK_EQ(w.rc, -EBADF);
    T_CHECK_EQ(weft_stream_close(s), -EBADF);
    weft_close(peer);
    return NULL;
}

static void test_stream_close_fd_wakes_readline(void **state)
{
    (void)state;
    IO_BEGIN(20);
    assert_int_equal(t_run_workers(2, stream_ebadf_main, NULL, NULL), 0);
}

int main(void)
{
    io_init();
    const struct CMUnitTest tests[] = {
        IO_TEST(test_stream_args),
        IO_TEST(test_stream_eperm),
        IO_TEST(test_readline_basic),
        IO_TEST(test_readline_emsgsize),
        IO_TEST(test_readline_longer_than_buffer),
        IO_TEST(test_readline_deadline),
        IO_TEST(test_readline_discard_survives_timeout),
        IO_TEST(test_stream_cancel),
        IO_TEST(test_stream_read),
        IO_TEST(test_stream_readexactly),
        IO_TEST(test_readexactly_timeout_keeps_bytes),
        IO_TEST(test_stream_write_drain),
        IO_TEST(test_drain_after_timeout_sends_once),
        IO_TEST(test_stream_close_flushes),
        IO_TEST(test_open_connection),
        IO_TEST(test_stream_close_fd_wakes_readline),
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
