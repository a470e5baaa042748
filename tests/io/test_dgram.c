/*
 * cmocka tests of reads that return one message at a time (include/weft/io.h,
 * io/net.c, runtime/netpoll.c): weft_read and weft_recvfrom on UDP sockets
 * (connected and not), Unix datagram and seqpacket socket pairs and
 * packet-mode pipes, with plain pipes and TCP as controls.
 *
 * Why: weft_read keeps a hint per descriptor (rdrained in runtime/netpoll.h,
 * Tokio's rule for edge-triggered epoll): a read that came back shorter
 * than its buffer is taken to have drained the file, so the next weft_read
 * skips its recv and waits for the next readable edge.  That is true of a
 * TCP stream, where one read takes everything queued up to its size.  It is
 * false wherever one read returns one message: for a datagram socket a
 * short read means "that was one datagram", not "the socket is empty".
 * With the hint applied to them, the second weft_read of two queued
 * datagrams waited out its whole deadline (-ETIMEDOUT) although
 * recv(MSG_DONTWAIT) would have returned the datagram at once, and a reader
 * already waiting when three datagrams arrived got one or two of them.  The
 * hint is now kept for TCP sockets only (io/net.c, short_read_drains).  A
 * pipe is not trusted either: its writer may make it a packet pipe (O_DIRECT
 * is set on the write end only, by pipe2 or a later F_SETFL, and cannot be
 * seen from the read end), and then each read returns one packet.
 *
 * So every read here that should complete at once has a deadline 2 s ahead
 * (DG_DEADLINE_MS) and must return well inside 1 s (DG_PROMPT_MS; both times
 * T_SLACK under a sanitizer): a regression fails by name, with the message
 * number and what the read returned, instead of hanging.  The old hint was
 * wrong for certain when the readable edge of the queued messages had been
 * counted before the first read, so the tests make that so: the receiving
 * descriptor is put in the poller first (weft_wait_fd with a deadline
 * already past, dg_prime) and the senders pause (dg_settle) between sending
 * and reading.  A waiting reader is watched through weft_tasks_foreach until
 * it is parked on "read fd", then the messages are sent back to back.
 *
 * The tests:
 *  - test_udp_queued: a connected UDP pair; 2, then 5, then many rounds of
 *    1-6 datagrams of different sizes, all smaller than the buffer, queued
 *    before the reads; each weft_read returns exactly one datagram, at once;
 *    also on a pair never waited on (no priming, no pause).
 *  - test_udp_unconnected: a bound, unconnected socket with datagrams from
 *    two senders queued: weft_recvfrom (contents, lengths, senders),
 *    weft_read, and the two mixed (a short weft_read, then weft_recvfrom,
 *    then weft_read again).
 *  - test_udp_waiting_reader: a coroutine parked in weft_read (or
 *    weft_recvfrom) on an empty socket; 3 datagrams sent back to back; it
 *    gets all 3, each once, in order, within DG_PROMPT_MS.  10 rounds.
 *  - test_udp_truncation: a datagram larger than the buffer: weft_read
 *    returns the buffer's size (the rest of that datagram is discarded, as
 *    recv does) and the next read returns the NEXT datagram whole, not the
 *    tail of the first.
 *  - test_udp_many: 2000 numbered datagrams (8-1207 bytes) from a sender
 *    coroutine to a receiver coroutine in acknowledged batches of 1-40 (so
 *    that the receive buffer never overflows: loopback UDP drops what does
 *    not fit); every number seen exactly once, none missing, in order.
 *  - test_unix_dgram, test_unix_seqpacket, test_pipe_packet: the same
 *    queued and waiting-reader cases (and truncation) on
 *    socketpair(AF_UNIX, SOCK_DGRAM / SOCK_SEQPACKET) and on a packet-mode
 *    pipe (pipe2 O_DIRECT); skipped where the kernel refuses them.
 *  - test_pipe_control, test_tcp_control: byte streams, where a short read
 *    does mean drained (TCP keeps the hint; a plain pipe once had it).  Two
 *    writes queued, then one read with a large buffer takes both; a second
 *    read on the now empty file waits and returns data written later (by
 *    another coroutine, 50 ms on) as soon as it comes; end of file (0) at
 *    once after the writer's close.  They passed before the fix too: they
 *    guard against a fix that breaks the case where the hint is right.
 *
 * Every case runs with WEFT_WORKERS=1 and 2 (the old hint failed every run
 * with either), between two /proc/self/fd snapshots (tests/leak.h): every
 * descriptor is closed with weft_close and every task joined.  A failed
 * check ends the run's remaining cases (dg_ok) so that a regression costs
 * one deadline per run, not one per message.
 *
 *   WEFT_TEST_FILTER='test_udp*' build/tests/io/test_dgram   (some tests)
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "io_test.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* A read's deadline; a read that should complete at once must return
 * within DG_PROMPT_MS (both times T_SLACK). */
#define DG_DEADLINE_MS 2000
#define DG_PROMPT_MS 1000

static int64_t dg_deadline(void) { return io_in_ms(DG_DEADLINE_MS * T_SLACK); }
static const int64_t dg_prompt = (int64_t)DG_PROMPT_MS * WEFT_MS * T_SLACK;

/* No check has failed yet in this run: the cases go on. */
static bool dg_ok(void) { return atomic_load(&t_failures) == 0; }

/* The content of message `tag`, byte i: differs between messages, so that a
 * read of the tail of one message instead of the next one is seen. */
static inline uint8_t dg_byte(unsigned tag, size_t i)
{
    return (uint8_t)(tag * 131u + i * 7u + (i >> 8) + 1u);
}

static void dg_fill(void *buf, size_t len, unsigned tag)
{
    uint8_t *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = dg_byte(tag, i);
}

static bool dg_same(const void *buf, size_t len, unsigned tag)
{
    const uint8_t *b = buf;
    for (size_t i = 0; i < len; i++)
        if (b[i] != dg_byte(tag, i))
            return false;
    return true;
}

/* Checks one read: r (after took ns) must be want bytes of message tag,
 * received within DG_PROMPT_MS.  Says which read of which case on failure. */
static bool dg_check_read(const char *what, int i, ssize_t r, const void *buf, size_t want,
                          unsigned tag, int64_t took)
{
    bool ok = r == (ssize_t)want && dg_same(buf, want, tag) && took < dg_prompt;
    if (!ok)
        fprintf(stderr,
                "%s: message %d (tag %u): read returned %zd after %.3f s; want %zu bytes "
                "within %.1f s%s\n",
                what, i, tag, r, (double)took / 1e9, want, (double)dg_prompt / 1e9,
                r == (ssize_t)want ? " (content differs or too slow)" : "");
    T_CHECK_EQ(r, (ssize_t)want);
    T_CHECK(r != (ssize_t)want || dg_same(buf, want, tag));
    T_CHECK(took < dg_prompt);
    return ok;
}

/* Coroutine: sends message tag (len bytes) with weft_write. */
static bool dg_send(int fd, size_t len, unsigned tag)
{
    uint8_t buf[4096];
    T_CHECK(len <= sizeof buf);
    if (len > sizeof buf)
        return false;
    dg_fill(buf, len, tag);
    ssize_t w = weft_write(fd, buf, len, dg_deadline());
    T_CHECK_EQ(w, (ssize_t)len);
    return w == (ssize_t)len;
}

/* Coroutine: sends message tag to `to` with weft_sendto. */
static bool dg_sendto(int fd, const struct sockaddr_storage *to, socklen_t tl, size_t len,
                      unsigned tag)
{
    uint8_t buf[4096];
    T_CHECK(len <= sizeof buf);
    if (len > sizeof buf)
        return false;
    dg_fill(buf, len, tag);
    ssize_t w = weft_sendto(fd, buf, len, (const struct sockaddr *)to, tl, dg_deadline());
    T_CHECK_EQ(w, (ssize_t)len);
    return w == (ssize_t)len;
}

/* Coroutine: one weft_read of up to cap bytes, expected to return message
 * tag at once (its first min(len, cap) bytes). */
static bool dg_read_expect(const char *what, int i, int fd, size_t cap, size_t len, unsigned tag)
{
    uint8_t *buf = malloc(cap);
    T_CHECK(buf != NULL);
    if (!buf)
        return false;
    int64_t t0 = weft_now();
    ssize_t r = weft_read(fd, buf, cap, dg_deadline());
    int64_t took = weft_now() - t0;
    bool ok = dg_check_read(what, i, r, buf, len < cap ? len : cap, tag, took);
    free(buf);
    return ok;
}

/* Puts fd in the runtime's poller (the first wait registers it) without
 * waiting: its readable edges are counted from now on, as they are for any
 * descriptor that has been waited on once. */
static void dg_prime(int fd)
{
    T_CHECK_EQ(weft_wait_fd(fd, WEFT_READABLE, weft_now()), -ETIMEDOUT);
}

/* A pause after sending, so that the poller has counted the readable edge
 * of what was sent before the reads start. */
static void dg_settle(void) { weft_sleep(30 * WEFT_MS); }

/* Coroutine: sends n messages (lens[i] bytes, tags tag0 + i) on sfd, then
 * (after a pause when settle) reads them one weft_read each on rfd with a
 * cap-byte buffer. */
static bool dg_queued(const char *what, int rfd, int sfd, const size_t *lens, int n, size_t cap,
                      unsigned tag0, bool settle)
{
    for (int i = 0; i < n; i++)
        if (!dg_send(sfd, lens[i], tag0 + (unsigned)i))
            return false;
    if (settle)
        dg_settle();
    for (int i = 0; i < n; i++)
        if (!dg_read_expect(what, i, rfd, cap, lens[i], tag0 + (unsigned)i))
            return false;
    return true;
}

/* Pseudo-random numbers (deterministic per test). */
static unsigned dg_rand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

/* Coroutine: a connected UDP pair on 127.0.0.1: *r bound by weft_udp_bind
 * and connected back to *s, which comes from weft_udp_connect.  0 or
 * -errno. */
static int dg_udp_pair(int *r, int *s)
{
    *r = *s = -1;
    int rfd = weft_udp_bind("127.0.0.1", "0");
    if (rfd < 0)
        return rfd;
    char ps[16];
    io_port_str(weft_local_port(rfd), ps);
    int sfd = weft_udp_connect("127.0.0.1", ps, dg_deadline());
    if (sfd < 0) {
        weft_close(rfd);
        return sfd;
    }
    struct sockaddr_storage a;
    socklen_t al = sizeof a;
    if (getsockname(sfd, (struct sockaddr *)&a, &al) < 0 ||
        connect(rfd, (struct sockaddr *)&a, al) < 0) {
        int e = io_errno();
        weft_close(rfd);
        weft_close(sfd);
        return -e;
    }
    *r = rfd;
    *s = sfd;
    return 0;
}

/* The local address of fd. */
static socklen_t dg_addr(int fd, struct sockaddr_storage *a)
{
    socklen_t al = sizeof *a;
    T_CHECK(getsockname(fd, (struct sockaddr *)a, &al) == 0);
    return al;
}

/* ------------------------------------------------------------------ */
/* A reader parked before the messages come                            */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    int n;               /* messages expected */
    const size_t *lens;  /* their lengths */
    unsigned tag0;       /* their tags: tag0, tag0 + 1, ... */
    size_t cap;          /* read buffer */
    bool recvfrom;       /* weft_recvfrom instead of weft_read */
    const char *what;
    int got;             /* messages received intact, in order */
    int64_t last;        /* weft_now() when the last one came */
} dg_reader;

static void *dg_reader_main(void *p)
{
    dg_reader *rd = p;
    uint8_t *buf = malloc(rd->cap);
    T_CHECK(buf != NULL);
    for (int i = 0; buf && i < rd->n; i++) {
        unsigned tag = rd->tag0 + (unsigned)i;
        int64_t t0 = weft_now();
        ssize_t r = rd->recvfrom
                        ? weft_recvfrom(rd->fd, buf, rd->cap, NULL, NULL, dg_deadline())
                        : weft_read(rd->fd, buf, rd->cap, dg_deadline());
        int64_t took = weft_now() - t0;
        size_t want = rd->lens[i] < rd->cap ? rd->lens[i] : rd->cap;
        /* The first read waits for the sender, the reader's own
         * business; from the second on, each must come at once. */
        if (!dg_check_read(rd->what, i, r, buf, want, tag, i == 0 ? 0 : took))
            break;
        rd->got++;
        rd->last = weft_now();
    }
    free(buf);
    return NULL;
}

typedef struct {
    uint64_t id;
    int state;
    bool reading;
} dg_probe;

static int dg_probe_visit(const weft_task_info *info, void *ctx)
{
    dg_probe *p = ctx;
    if (info->id != p->id)
        return 0;
    p->state = info->state;
    /* wait is NULL in a libweft built with -DWEFT_OBSERVE=OFF. */
    p->reading = !info->wait || strncmp(info->wait, "read fd", 7) == 0;
    return 1;
}

/* Coroutine: waits until task t is parked waiting to read (at most 2 s). */
static bool dg_await_parked_reader(weft_task *t)
{
    int64_t end = io_in_ms(2000 * T_SLACK);
    for (;;) {
        dg_probe p = {.id = weft_task_id(t), .state = -1};
        weft_tasks_foreach(dg_probe_visit, &p);
        if (p.state == WEFT_TASK_WAITING && p.reading)
            return true;
        if (weft_now() > end) {
            T_CHECK(!"the reader never parked in its read");
            return false;
        }
        weft_sleep(WEFT_MS);
    }
}

/* Coroutine: a reader parked on rfd gets n messages sent back to back on
 * sfd (to `to` with weft_sendto when `to` is given, else weft_write): all of
 * them, each once, in order, the last within DG_PROMPT_MS of the first
 * send. */
static bool dg_waiting_reader(const char *what, int rfd, int sfd,
                              const struct sockaddr_storage *to, socklen_t tl, const size_t *lens,
                              int n, size_t cap, unsigned tag0, bool recvfrom)
{
    dg_reader rd = {.fd = rfd, .n = n, .lens = lens, .tag0 = tag0, .cap = cap,
                    .recvfrom = recvfrom, .what = what};
    weft_task *t = weft_spawn(dg_reader_main, &rd);
    T_CHECK(t != NULL);
    if (!t)
        return false;
    bool parked = dg_await_parked_reader(t);
    int64_t t0 = weft_now();
    for (int i = 0; parked && i < n; i++) {
        bool sent = to ? dg_sendto(sfd, to, tl, lens[i], tag0 + (unsigned)i)
                       : dg_send(sfd, lens[i], tag0 + (unsigned)i);
        if (!sent)
            break;
    }
    if (!parked)
        weft_cancel(t);
    weft_join(t, NULL);
    if (parked && rd.got != n)
        fprintf(stderr, "%s: the parked reader got %d of %d messages\n", what, rd.got, n);
    T_CHECK_EQ(rd.got, parked ? n : rd.got);
    if (parked && rd.got == n)
        T_CHECK(rd.last - t0 < dg_prompt);
    return parked && rd.got == n && dg_ok();
}

/* ------------------------------------------------------------------ */
/* UDP, connected: queued datagrams                                    */
/* ------------------------------------------------------------------ */

static void *udp_queued_main(void *arg)
{
    (void)arg;
    int r, s;
    T_CHECK_EQ(dg_udp_pair(&r, &s), 0);
    if (r < 0)
        return NULL;
    dg_prime(r);
    static const size_t two[] = {100, 37};
    static const size_t five[] = {1, 1400, 64, 511, 2};
    bool ok = dg_queued("udp: 2 queued", r, s, two, 2, 1500, 1, true) &&
              dg_queued("udp: 5 queued", r, s, five, 5, 1500, 10, true);
    /* Rounds of 1-6 datagrams, with and without the pause. */
    unsigned seed = 1;
    for (int round = 0; ok && round < 40; round++) {
        size_t lens[6];
        int n = 1 + (int)(dg_rand(&seed) % 6);
        for (int i = 0; i < n; i++)
            lens[i] = 1 + dg_rand(&seed) % 1400;
        ok = dg_queued("udp: rounds", r, s, lens, n, 1500, 100 + (unsigned)round * 8, round % 2 == 0);
    }
    /* The reverse direction: the sender's socket reads what the receiver
     * sends (weft_udp_connect's socket, never waited on before). */
    if (ok)
        ok = dg_queued("udp: 3 queued, reverse", s, r, five, 3, 1500, 500, true);
    weft_close(s);
    weft_close(r);
    /* A pair never waited on: its first wait puts it in the poller. */
    if (ok) {
        T_CHECK_EQ(dg_udp_pair(&r, &s), 0);
        if (r >= 0) {
            dg_queued("udp: 5 queued, fresh pair", r, s, five, 5, 1500, 600, false);
            weft_close(s);
            weft_close(r);
        }
    }
    return NULL;
}

static void test_udp_queued(void **state)
{
    (void)state;
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, udp_queued_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, udp_queued_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* UDP, unconnected: weft_recvfrom and weft_read                       */
/* ------------------------------------------------------------------ */

/* Coroutine: one weft_recvfrom expected to return message tag (len bytes)
 * from the socket bound to port `from_port`, at once. */
static bool dg_recvfrom_expect(const char *what, int i, int fd, size_t len, unsigned tag,
                               int from_port)
{
    uint8_t buf[1500];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    int64_t t0 = weft_now();
    ssize_t r = weft_recvfrom(fd, buf, sizeof buf, (struct sockaddr *)&from, &fl, dg_deadline());
    int64_t took = weft_now() - t0;
    if (!dg_check_read(what, i, r, buf, len, tag, took))
        return false;
    T_CHECK_EQ(from.ss_family, AF_INET);
    T_CHECK_EQ(ntohs(((struct sockaddr_in *)&from)->sin_port), from_port);
    return dg_ok();
}

static void *udp_unconnected_main(void *arg)
{
    (void)arg;
    int r = weft_udp_bind("127.0.0.1", "0");
    int a = weft_udp_bind("127.0.0.1", "0");
    int b = weft_udp_bind("127.0.0.1", "0");
    T_CHECK(r >= 0 && a >= 0 && b >= 0);
    struct sockaddr_storage to;
    socklen_t tl = dg_addr(r, &to);
    int pa = weft_local_port(a), pb = weft_local_port(b);
    dg_prime(r);
    bool ok = dg_ok();
    /* Four datagrams from two senders, then weft_recvfrom each. */
    static const size_t lens[] = {20, 700, 3, 1200, 45, 46, 47};
    for (int i = 0; ok && i < 4; i++)
        ok = dg_sendto(i % 2 ? b : a, &to, tl, lens[i], 1 + (unsigned)i);
    dg_settle();
    for (int i = 0; ok && i < 4; i++)
        ok = dg_recvfrom_expect("udp unconnected: recvfrom", i, r, lens[i], 1 + (unsigned)i,
                                i % 2 ? pb : pa);
    /* weft_read on the unconnected socket (any sender). */
    for (int i = 0; ok && i < 4; i++)
        ok = dg_sendto(i % 2 ? b : a, &to, tl, lens[i], 10 + (unsigned)i);
    dg_settle();
    for (int i = 0; ok && i < 4; i++)
        ok = dg_read_expect("udp unconnected: read", i, r, 1500, lens[i], 10 + (unsigned)i);
    /* Mixed: a short weft_read, weft_recvfrom, weft_read again (the first
     * read's verdict must not make the third one wait). */
    for (int i = 0; ok && i < 3; i++)
        ok = dg_sendto(a, &to, tl, lens[4 + i], 20 + (unsigned)i);
    dg_settle();
    if (ok)
        ok = dg_read_expect("udp unconnected: mixed", 0, r, 1500, lens[4], 20);
    if (ok)
        ok = dg_recvfrom_expect("udp unconnected: mixed", 1, r, lens[5], 21, pa);
    if (ok)
        ok = dg_read_expect("udp unconnected: mixed", 2, r, 1500, lens[6], 22);
    /* A parked weft_recvfrom and a parked weft_read, 3 datagrams each. */
    if (ok)
        ok = dg_waiting_reader("udp unconnected: parked recvfrom", r, a, &to, tl, lens, 3, 1500,
                               30, true);
    if (ok)
        dg_waiting_reader("udp unconnected: parked read", r, b, &to, tl, lens, 3, 1500, 40,
                          false);
    weft_close(b);
    weft_close(a);
    weft_close(r);
    return NULL;
}

static void test_udp_unconnected(void **state)
{
    (void)state;
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, udp_unconnected_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, udp_unconnected_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* UDP: a reader parked before the datagrams come                      */
/* ------------------------------------------------------------------ */

static void *udp_waiting_main(void *arg)
{
    (void)arg;
    int r, s;
    T_CHECK_EQ(dg_udp_pair(&r, &s), 0);
    if (r < 0)
        return NULL;
    static const size_t lens[] = {300, 17, 1024};
    bool ok = true;
    for (int round = 0; ok && round < 10; round++)
        ok = dg_waiting_reader("udp: parked read", r, s, NULL, 0, lens, 3, 1500,
                               (unsigned)round * 4, false);
    /* weft_recvfrom parked on the connected socket. */
    for (int round = 0; ok && round < 3; round++)
        ok = dg_waiting_reader("udp: parked recvfrom", r, s, NULL, 0, lens, 3, 1500,
                               100 + (unsigned)round * 4, true);
    weft_close(s);
    weft_close(r);
    return NULL;
}

static void test_udp_waiting_reader(void **state)
{
    (void)state;
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, udp_waiting_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, udp_waiting_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Truncation: a datagram larger than the buffer                       */
/* ------------------------------------------------------------------ */

/* Coroutine: on a connected pair of message sockets, datagrams larger than
 * the 64-byte buffer: each read returns 64 bytes of its own datagram (the
 * rest is discarded) and the next read the next datagram whole. */
static bool dg_truncation(const char *what, int r, int s)
{
    /* 200 (truncated), 10 (whole), 64 (exactly the buffer), 65
     * (truncated by one), 5, 1000 (truncated), 1, 2, 3 (whole). */
    static const size_t lens[] = {200, 10, 64, 65, 5, 1000, 1, 2, 3};
    enum { N = sizeof lens / sizeof lens[0] };
    dg_prime(r);
    bool ok = dg_queued(what, r, s, lens, N, 64, 1, true);
    /* Parked: a truncated datagram, then two whole ones. */
    static const size_t parked[] = {500, 20, 30};
    if (ok)
        ok = dg_waiting_reader(what, r, s, NULL, 0, parked, 3, 64, 50, false);
    return ok;
}

static void *udp_truncation_main(void *arg)
{
    (void)arg;
    int r, s;
    T_CHECK_EQ(dg_udp_pair(&r, &s), 0);
    if (r < 0)
        return NULL;
    dg_truncation("udp: truncation", r, s);
    weft_close(s);
    weft_close(r);
    return NULL;
}

static void test_udp_truncation(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(1, udp_truncation_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, udp_truncation_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Many datagrams, each delivered once                                 */
/* ------------------------------------------------------------------ */

/*
 * Datagram i carries a header (its number, the number of the last datagram
 * of its batch) and then dg_many_len(i) - 8 bytes of message i's content.
 * The sender sends a batch of 1-40 back to back, then waits for the
 * receiver's acknowledgement of that batch (the last number, 4 bytes) before
 * the next one: at most 40 datagrams of at most 1207 bytes are ever queued,
 * well inside the receive buffer (SO_RCVBUF raised too), so none is dropped
 * and every one missing is weft's.
 */
enum { MANY_N = 2000, MANY_BATCH = 40 };

static size_t dg_many_len(uint32_t i) { return 8 + (i * 37u) % 1200; }

typedef struct {
    int r, s;
    int seen[MANY_N];
    int in_order;       /* datagrams that came in sequence */
    int received;
    int batches;
    int acks;           /* acknowledgements the sender got */
} dg_many;

static void *many_sender(void *p)
{
    dg_many *m = p;
    uint8_t buf[1500];
    unsigned seed = 7;
    uint32_t next = 0;
    while (next < MANY_N && dg_ok()) {
        uint32_t last = next + dg_rand(&seed) % MANY_BATCH;
        if (last >= MANY_N)
            last = MANY_N - 1;
        for (uint32_t i = next; i <= last; i++) {
            size_t len = dg_many_len(i);
            memcpy(buf, &i, 4);
            memcpy(buf + 4, &last, 4);
            dg_fill(buf + 8, len - 8, i);
            ssize_t w = weft_write(m->s, buf, len, dg_deadline());
            T_CHECK_EQ(w, (ssize_t)len);
            if (w != (ssize_t)len)
                return NULL;
        }
        /* The receiver's acknowledgement of the batch. */
        uint32_t ack = 0;
        ssize_t r = weft_read(m->s, &ack, sizeof ack, dg_deadline());
        if (r != 4 || ack != last)
            fprintf(stderr, "udp many: ack of batch ending %u: read %zd, ack %u\n", last, r,
                    ack);
        T_CHECK_EQ(r, 4);
        T_CHECK_EQ(ack, last);
        if (r != 4 || ack != last)
            return NULL;
        m->acks++;
        next = last + 1;
    }
    return NULL;
}

static void *many_receiver(void *p)
{
    dg_many *m = p;
    uint8_t buf[2048];
    uint32_t expect = 0;
    while (m->received < MANY_N && dg_ok()) {
        ssize_t r = weft_read(m->r, buf, sizeof buf, dg_deadline());
        if (r < 8) {
            fprintf(stderr, "udp many: read returned %zd after %d datagrams\n", r, m->received);
            T_CHECK(r >= 8);
            return NULL;
        }
        uint32_t i, last;
        memcpy(&i, buf, 4);
        memcpy(&last, buf + 4, 4);
        T_CHECK(i < MANY_N);
        if (i >= MANY_N)
            return NULL;
        T_CHECK_EQ(r, (ssize_t)dg_many_len(i));
        T_CHECK(dg_same(buf + 8, (size_t)r - 8, i));
        m->seen[i]++;
        if (i == expect)
            m->in_order++;
        expect = i + 1;
        m->received++;
        if (i == last) {
            m->batches++;
            ssize_t w = weft_write(m->r, &last, sizeof last, dg_deadline());
            T_CHECK_EQ(w, 4);
            if (w != 4)
                return NULL;
        }
    }
    return NULL;
}

static void *udp_many_main(void *arg)
{
    (void)arg;
    dg_many *m = calloc(1, sizeof *m);
    T_CHECK(m != NULL);
    if (!m)
        return NULL;
    T_CHECK_EQ(dg_udp_pair(&m->r, &m->s), 0);
    if (m->r >= 0) {
        int big = 1 << 20;
        setsockopt(m->r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        setsockopt(m->s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        weft_task *rt = weft_spawn(many_receiver, m);
        weft_task *st = weft_spawn(many_sender, m);
        T_CHECK(rt && st);
        T_CHECK_EQ(weft_join(st, NULL), 0);
        T_CHECK_EQ(weft_join(rt, NULL), 0);
        int missing = 0, dup = 0;
        for (int i = 0; i < MANY_N; i++) {
            missing += m->seen[i] == 0;
            dup += m->seen[i] > 1;
        }
        if (missing || dup || m->received != MANY_N)
            fprintf(stderr, "udp many: received %d, missing %d, duplicated %d\n", m->received,
                    missing, dup);
        T_CHECK_EQ(m->received, MANY_N);
        T_CHECK_EQ(missing, 0);
        T_CHECK_EQ(dup, 0);
        T_CHECK_EQ(m->in_order, MANY_N);
        T_CHECK_EQ(m->acks, m->batches);
        weft_close(m->s);
        weft_close(m->r);
    }
    free(m);
    return NULL;
}

static void test_udp_many(void **state)
{
    (void)state;
    IO_BEGIN(60);
    assert_int_equal(t_run_workers(2, udp_many_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(1, udp_many_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Unix datagram and seqpacket sockets, packet-mode pipes              */
/* ------------------------------------------------------------------ */

/* Coroutine: queued messages read one by one, a parked reader, truncation,
 * on a pair of message descriptors made by mk (r reads, s writes). */
typedef int (*dg_maker)(int fds[2]);

static void dg_message_cases(const char *what, dg_maker mk)
{
    int fds[2];
    T_CHECK_EQ(mk(fds), 0);
    int r = fds[0], s = fds[1];
    char label[96];
    /* The queue of a Unix datagram socket holds 10 by default
     * (net.unix.max_dgram_qlen): never more than 9 queued here. */
    static const size_t two[] = {100, 37};
    static const size_t five[] = {1, 1400, 64, 511, 2};
    dg_prime(r);
    snprintf(label, sizeof label, "%s: 2 queued", what);
    bool ok = dg_queued(label, r, s, two, 2, 1500, 1, true);
    snprintf(label, sizeof label, "%s: 5 queued", what);
    if (ok)
        ok = dg_queued(label, r, s, five, 5, 1500, 10, true);
    static const size_t three[] = {300, 17, 1024};
    snprintf(label, sizeof label, "%s: parked read", what);
    for (int round = 0; ok && round < 5; round++)
        ok = dg_waiting_reader(label, r, s, NULL, 0, three, 3, 1500, 100 + (unsigned)round * 4,
                               false);
    snprintf(label, sizeof label, "%s: truncation", what);
    if (ok)
        ok = dg_truncation(label, r, s);
    weft_close(s);
    weft_close(r);
    /* A fresh pair, never waited on, 5 queued, no pause. */
    if (ok && mk(fds) == 0) {
        snprintf(label, sizeof label, "%s: 5 queued, fresh", what);
        dg_queued(label, fds[0], fds[1], five, 5, 1500, 200, false);
        weft_close(fds[1]);
        weft_close(fds[0]);
    }
}

static int mk_unix_dgram(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0
               ? 0
               : -io_errno();
}

static int mk_unix_seqpacket(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0
               ? 0
               : -io_errno();
}

/* A packet-mode pipe (O_DIRECT, Linux 3.4): each write of up to PIPE_BUF
 * bytes is one packet, each read returns one packet (and discards the rest
 * of a packet larger than its buffer).  The read end's F_GETFL does not
 * show O_DIRECT: only the write end has it. */
static int mk_pipe_packet(int fds[2])
{
    return pipe2(fds, O_DIRECT | O_NONBLOCK | O_CLOEXEC) == 0 ? 0 : -io_errno();
}

/* Can mk make a pair here (outside the runtime; closed at once)? */
static bool dg_supported(dg_maker mk)
{
    int fds[2];
    if (mk(fds) != 0)
        return false;
    close(fds[0]);
    close(fds[1]);
    return true;
}

static void *unix_dgram_main(void *arg)
{
    (void)arg;
    dg_message_cases("unix dgram", mk_unix_dgram);
    return NULL;
}

static void *unix_seqpacket_main(void *arg)
{
    (void)arg;
    dg_message_cases("unix seqpacket", mk_unix_seqpacket);
    return NULL;
}

static void *pipe_packet_main(void *arg)
{
    (void)arg;
    dg_message_cases("packet pipe", mk_pipe_packet);
    return NULL;
}

static void test_unix_dgram(void **state)
{
    (void)state;
    if (!dg_supported(mk_unix_dgram))
        skip();
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, unix_dgram_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, unix_dgram_main, NULL, NULL), 0);
}

static void test_unix_seqpacket(void **state)
{
    (void)state;
    if (!dg_supported(mk_unix_seqpacket))
        skip();
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, unix_seqpacket_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, unix_seqpacket_main, NULL, NULL), 0);
}

static void test_pipe_packet(void **state)
{
    (void)state;
    if (!dg_supported(mk_pipe_packet))
        skip();
    IO_BEGIN(40);
    assert_int_equal(t_run_workers(1, pipe_packet_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, pipe_packet_main, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Controls: a plain pipe and a TCP stream                             */
/* ------------------------------------------------------------------ */

/* A write of message tag (len bytes) on fd, ms milliseconds after it
 * starts. */
typedef struct {
    int fd;
    int64_t ms;
    size_t len;
    unsigned tag;
} dg_later;

static void *dg_later_main(void *p)
{
    dg_later *l = p;
    weft_sleep(l->ms * WEFT_MS);
    dg_send(l->fd, l->len, l->tag);
    return NULL;
}

/* Coroutine: on a byte stream (r reads, s writes): two writes queued (100
 * and 200 bytes), then reads with a 4 KiB buffer take both at once (one read
 * for a pipe; a TCP stream is only required to deliver them promptly); a
 * read on the now empty stream waits and returns the 50 bytes another
 * coroutine writes 50 ms later as soon as they come; 0 at once after the
 * writer closes.  s is closed here. */
static void dg_stream_cases(const char *what, int r, int s, bool one_read)
{
    uint8_t buf[4096];
    dg_prime(r);
    for (int round = 0; round < 5 && dg_ok(); round++) {
        unsigned tag = (unsigned)round * 4;
        /* 100 + 200 bytes: the second write continues the first's
         * content (message tag at offset 100 of one 300-byte message). */
        uint8_t msg[300];
        dg_fill(msg, sizeof msg, tag);
        T_CHECK_EQ(weft_write(s, msg, 100, dg_deadline()), 100);
        T_CHECK_EQ(weft_write(s, msg + 100, 200, dg_deadline()), 200);
        dg_settle();
        size_t got = 0;
        int reads = 0;
        int64_t t0 = weft_now();
        while (got < sizeof msg && dg_ok()) {
            ssize_t n = weft_read(r, buf + got, sizeof buf - got, dg_deadline());
            T_CHECK(n > 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            reads++;
        }
        int64_t took = weft_now() - t0;
        if (got != sizeof msg || took >= dg_prompt)
            fprintf(stderr, "%s: round %d: %zu of 300 bytes in %d reads, %.3f s\n", what, round,
                    got, reads, (double)took / 1e9);
        T_CHECK_EQ(got, sizeof msg);
        T_CHECK(dg_same(buf, got, tag));
        T_CHECK(took < dg_prompt);
        if (one_read)
            T_CHECK_EQ(reads, 1);
        /* Empty now (the last read was short): the next read waits for the
         * later write and returns it when it comes. */
        dg_later l = {.fd = s, .ms = 50, .len = 50, .tag = tag + 1};
        weft_task *t = weft_spawn(dg_later_main, &l);
        T_CHECK(t != NULL);
        t0 = weft_now();
        ssize_t n = weft_read(r, buf, sizeof buf, dg_deadline());
        took = weft_now() - t0;
        if (t)
            T_CHECK_EQ(weft_join(t, NULL), 0);
        if (n != 50 || took >= dg_prompt)
            fprintf(stderr, "%s: round %d: the later write: read %zd after %.3f s\n", what,
                    round, n, (double)took / 1e9);
        T_CHECK_EQ(n, 50);
        T_CHECK(n != 50 || dg_same(buf, 50, tag + 1));
        T_CHECK(took >= 40 * WEFT_MS);  /* it did wait for the write */
        T_CHECK(took < dg_prompt);
    }
    /* End of stream, promptly, after the writer's close. */
    T_CHECK_EQ(weft_close(s), 0);
    int64_t t0 = weft_now();
    T_CHECK_EQ(weft_read(r, buf, sizeof buf, dg_deadline()), 0);
    T_CHECK(weft_now() - t0 < dg_prompt);
}

static void *pipe_control_main(void *arg)
{
    (void)arg;
    int fds[2];
    T_CHECK(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    dg_stream_cases("pipe", fds[0], fds[1], true);
    weft_close(fds[0]);
    return NULL;
}

static void test_pipe_control(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(1, pipe_control_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, pipe_control_main, NULL, NULL), 0);
}

static void *tcp_control_main(void *arg)
{
    (void)arg;
    int a, b;
    T_CHECK_EQ(io_tcp_pair(&a, &b), 0);
    if (a < 0)
        return NULL;
    dg_stream_cases("tcp", b, a, false);
    weft_close(b);
    return NULL;
}

static void test_tcp_control(void **state)
{
    (void)state;
    IO_BEGIN(30);
    assert_int_equal(t_run_workers(1, tcp_control_main, NULL, NULL), 0);
    assert_int_equal(t_run_workers(2, tcp_control_main, NULL, NULL), 0);
}

int main(void)
{
    io_init();
    const struct CMUnitTest tests[] = {
        IO_TEST(test_udp_queued),
        IO_TEST(test_udp_unconnected),
        IO_TEST(test_udp_waiting_reader),
        IO_TEST(test_udp_truncation),
        IO_TEST(test_udp_many),
        IO_TEST(test_unix_dgram),
        IO_TEST(test_unix_seqpacket),
        IO_TEST(test_pipe_packet),
        IO_TEST(test_pipe_control),
        IO_TEST(test_tcp_control),
    };
    return cmocka_run_group_tests_name("dgram", tests, NULL, NULL);
}
