/*
 * Seeded fault injection (WEFT_FAULTS=NAME:RATE,...; docs/testing.md,
 * "Fault injection"): FoundationDB's BUGGIFY for a server's I/O.  Each
 * armed kind fires at a call site with probability RATE, drawn from the
 * seed's streams (seed.c: the worker's own stream on a worker, the shared
 * one elsewhere), so that on one worker with the virtual clock a run with
 * faults replays exactly, faults included.
 *
 *   short_read   weft_read (and the streams that read through it) moves
 *                fewer bytes than it could, at least one: the size asked of
 *                the kernel is cut to a drawn 1..n-1 before the system call.
 *   short_write  the same for one send of weft_write and weft_stream_drain;
 *                both loop until every byte is out, so the caller sees only
 *                the peer receiving the bytes in more pieces.
 *   eintr        a try of weft_read, weft_write, a drain, weft_recvfrom,
 *                weft_sendto or weft_accept reports EINTR once per call before
 *                its system call is made for real: the retry loop
 *                (weft__fd_call) runs and the caller never sees it.
 *   reset        weft_read, weft_write or a drain fails with -ECONNRESET
 *                without touching the socket (a later call works as
 *                before: a program that handles the error closes it).
 *   accept       weft_accept closes a connection it really accepted (with
 *                SO_LINGER 0: the client sees a reset, as after a real
 *                abort) and returns -ECONNABORTED.  Nothing leaks; weft's
 *                own acceptor (io/server.c) retries at once.
 *   enomem       weft_spawn, weft_spawn_named and weft_group_spawn return
 *                NULL with errno ENOMEM before allocating anything.
 *   stacks       a new extent of coroutine stacks, beyond the first, is
 *                refused as the kernel refuses one it cannot reserve
 *                (stack.c): tasks wait for a stack to be freed, and the
 *                once-a-second line is printed.  stacks:1 holds the runtime
 *                to its first 64 stacks.
 *
 * Datagram calls (weft_recvfrom, weft_sendto, and weft_read / weft_write on
 * a datagram or seqpacket socket) get eintr only: a short datagram is
 * another message, not a short transfer.  File calls (io/file.c) get none: they run on
 * io_uring or the blocking pool, not through weft__fd_call.
 *
 * Free when off: weft__fault() is one relaxed load of faults_armed and a
 * predicted branch (internal.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "netpoll.h"

/* Written by weft_run's thread before the workers start and after they
 * stop (pthread_create / pthread_join order them for the workers), like
 * weft__chaos_level; weft__fault's inline check loads it relaxed, the slow
 * path again with acquire for plain threads, which the runtime publishes
 * (g_rt) before weft__faults_start runs. */
_Atomic bool weft__faults_armed;
static uint64_t fault_thr[WEFT__NFAULTS];  /* fires when a draw's top 32 bits < thr */
static weft__runtime *fault_rt;

static const char *const fault_names[WEFT__NFAULTS] = {
    [WEFT__FAULT_SHORT_READ] = "short_read", [WEFT__FAULT_SHORT_WRITE] = "short_write",
    [WEFT__FAULT_EINTR] = "eintr",           [WEFT__FAULT_RESET] = "reset",
    [WEFT__FAULT_ACCEPT] = "accept",         [WEFT__FAULT_ENOMEM] = "enomem",
    [WEFT__FAULT_STACKS] = "stacks",
};

/* A rate, "0", "1", "0.25", ".5", "1.000", as a threshold out of 2^32;
 * parsed by hand: strtod follows the program's LC_NUMERIC. */
static int parse_rate(const char *s, size_t len, uint64_t *thr)
{
    size_t i = 0;
    unsigned whole = 0;
    bool digits = false;
    if (i < len && (s[i] == '0' || s[i] == '1')) {
        whole = (unsigned)(s[i++] - '0');
        digits = true;
    }
    unsigned __int128 num = 0, den = 1;
    if (i < len && s[i] == '.') {
        i++;
        for (unsigned k = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++, k++) {
            if (k >= 18)
                return -1;
            num = num * 10 + (unsigned)(s[i] - '0');
            den *= 10;
            digits = true;
        }
    }
    if (!digits || i != len || (whole == 1 && num != 0))
        return -1;
    *thr = whole ? UINT64_C(1) << 32 : (uint64_t)((num << 32) / den);
    return 0;
}

static int bad_faults(const char *spec, const char *item, size_t len)
{
    weft__log("weft: WEFT_FAULTS=%s is invalid: expected NAME:RATE,... with NAME one of "
              "short_read, short_write, eintr, reset, accept, enomem, stacks (each once) and RATE a "
              "decimal in [0, 1]; \"%.*s\" is not",
              spec, (int)len, item);
    return -EINVAL;
}

/* weft_run's thread (env.c, resolve_testing).  Parses WEFT_FAULTS into
 * thr (zero for a kind not named); -EINVAL with the one-line message. */
int weft__faults_parse(const char *spec, uint64_t thr[WEFT__NFAULTS])
{
    bool seen[WEFT__NFAULTS] = {0};
    memset(thr, 0, WEFT__NFAULTS * sizeof thr[0]);
    const char *p = spec;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (!colon)
            return bad_faults(spec, p, len);
        size_t nlen = (size_t)(colon - p);
        int kind = -1;
        for (int k = 0; k < WEFT__NFAULTS; k++)
            if (strlen(fault_names[k]) == nlen && memcmp(fault_names[k], p, nlen) == 0)
                kind = k;
        if (kind < 0 || seen[kind] ||
            parse_rate(colon + 1, len - nlen - 1, &thr[kind]) < 0)
            return bad_faults(spec, p, len);
        seen[kind] = true;
        if (!end)
            return 0;
        p = end + 1;
    }
}

/* weft_run's thread, from weft__seed_start (workers not started yet). */
void weft__faults_start(weft__runtime *rt)
{
    bool any = false;
    for (int k = 0; k < WEFT__NFAULTS; k++) {
        fault_thr[k] = rt->cfg.fault_thr[k];
        any |= fault_thr[k] != 0;
    }
    fault_rt = rt;
    /* release: pairs with weft__fault_slow's acquire (fault_thr, fault_rt). */
    atomic_store_explicit(&weft__faults_armed, any, memory_order_release);
}

/* weft_run's thread, from weft__seed_stop (workers joined). */
void weft__faults_stop(void)
{
    atomic_store_explicit(&weft__faults_armed, false, memory_order_relaxed);
    fault_rt = NULL;
}

/* Any thread of the running runtime (plain threads only while they hold
 * it: weft__rt_get).  One draw from the caller's seeded stream. */
static uint64_t fault_draw(void)
{
    return weft__seed_draw(fault_rt);
}

/* Any thread of the running runtime.  Armed: whether a fault of kind fires
 * now (a draw only when its rate is not zero, so a kind left at 0 does not
 * move the streams). */
bool weft__fault_slow(int kind)
{
    /* acquire: pairs with weft__faults_start's release. */
    if (!atomic_load_explicit(&weft__faults_armed, memory_order_acquire))
        return false;
    uint64_t thr = fault_thr[kind];
    if (thr == 0)
        return false;
    return (fault_draw() >> 32) < thr;
}

/* Whether fd keeps message boundaries (a datagram or seqpacket socket),
 * where a short transfer would be another message and a reset means
 * nothing.  Asked only when a fault has fired, so an unarmed kind costs no
 * system call. */
static bool keeps_messages(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type != SOCK_STREAM;
}

/* A coroutine, between op_enter and op_exit (netpoll.h, weft__fault_io).
 * The draws are made whatever the descriptor, so that the streams move
 * the same way in a replay. */
ssize_t weft__fault_io_slow(weft__fdcall *c, int short_kind, size_t *n)
{
    if (!c->eintr_done && weft__fault_slow(WEFT__FAULT_EINTR)) {
        c->eintr_done = true;  /* once: the retry makes the call for real */
        return -EINTR;
    }
    if (short_kind < 0)
        return 0;
    if (weft__fault_slow(WEFT__FAULT_RESET))
        return keeps_messages(c->op.fd) ? 0 : -ECONNRESET;
    if (*n > 1 && weft__fault_slow(short_kind)) {
        size_t cut = 1 + (size_t)(fault_draw() % (*n - 1));
        if (!keeps_messages(c->op.fd))
            *n = cut;
    }
    return 0;
}
