/* Descriptor readiness (runtime/netpoll.c).  Internal. */
#ifndef WEFT_NETPOLL_H
#define WEFT_NETPOLL_H

#include <errno.h>
#include <sys/types.h>

#include "waitq.h"

typedef struct weft__fdstate {
    weft__spin lock;
    int fd;
    bool polled;              /* in the shared poller */
    bool unpollable;          /* epoll refused it (regular file): always ready */
    _Atomic uint32_t gen;     /* bumped by weft_close: waiters get -EBADF */
    _Atomic int users;        /* coroutines inside a system call on the fd */
    _Atomic uint32_t rseq;    /* bumped at each readable edge */
    _Atomic uint32_t wseq;    /* bumped at each writable edge */
    /* rseq + 1 as it was before a read that came back short, 0 for none:
     * the read drained the socket, so until the next readable edge (which
     * moves rseq) another read would only say EAGAIN.  Tokio's rule (mio,
     * epoll); weft_read skips that system call. */
    _Atomic uint32_t rdrained;
    /* The poller reported the peer's close or an error: reads end in EOF or
     * an error, never EAGAIN, so a short read proves nothing (the FIN may
     * have come with the data, in the edge already counted). */
    _Atomic bool hup;
    /* recv / send said ENOTSOCK once (a pipe, a tty): read and write it
     * with read(2) / write(2) from now on.  Sockets use recv / send, which
     * skip the VFS layer's work (docs/networking.md, "Reads that come back
     * short", has the profile). */
    _Atomic bool notsock;
    /* Whether a short read proves the file drained (WEFT__RD_*), learnt at
     * the first short read (net.c, short_read_drains): true of TCP sockets
     * only, where a read takes everything queued up to its size. */
    _Atomic uint8_t rdkind;
    weft__waitq rq, wq;       /* coroutines waiting to read / write */
} weft__fdstate;

enum { WEFT__RD_UNKNOWN, WEFT__RD_DRAINS, WEFT__RD_MESSAGES };

weft__fdstate *weft__fd_state(weft__runtime *rt, int fd, bool create);
/* A descriptor weft just created: forget what an earlier file of the same
 * number left (closed without weft_close). */
void weft__fd_fresh(int fd);
/*
 * One operation on a descriptor (read, write, accept, ...), Go's fdMutex in
 * small: op_begin snapshots the fd's generation; op_enter/op_exit bracket
 * each non-blocking system call (and refuse with -EBADF once weft_close has
 * begun); weft_close waits for the calls in flight before it closes the
 * number, so a call never runs on a closed or reused descriptor and
 * ThreadSanitizer sees the order.  op_wait waits for readiness past seq.
 */
typedef struct weft__fdop {
    weft__fdstate *st;
    uint32_t gen;
    int fd;
} weft__fdop;

int weft__op_begin(weft__fdop *op, int fd);
int weft__op_wait(weft__fdop *op, int dir, uint32_t seq, int64_t deadline);

static inline int weft__op_enter(weft__fdop *op, int dir, uint32_t *seq)
{
    /* seq_cst: pairs with weft_close's gen bump and users load. */
    atomic_fetch_add_explicit(&op->st->users, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&op->st->gen, memory_order_seq_cst) != op->gen) {
        atomic_fetch_sub_explicit(&op->st->users, 1, memory_order_release);
        return -EBADF;
    }
    *seq = atomic_load_explicit(dir == 1 ? &op->st->rseq : &op->st->wseq, memory_order_acquire);
    return 0;
}

static inline void weft__op_exit(weft__fdop *op)
{
    /* release: pairs with weft_close's acquire wait for users == 0. */
    atomic_fetch_sub_explicit(&op->st->users, 1, memory_order_release);
}

/*
 * The one retry loop of every descriptor call (Go's FD.Read, Tokio's
 * Registration::async_io): load the direction's sequence and enter, try the
 * system call, exit; -EINTR retries at once, -EAGAIN waits for the sequence
 * to move (op_wait), any other error is returned.  try_ makes one attempt
 * between op_enter and op_exit and returns >= 0 or -errno, read right after
 * its system call: errno itself is never carried across op_wait, where the
 * coroutine may move to another thread (weft.h, "Thread-locals and
 * migration").  It sees the sequence it runs under (c->seq) and whether a
 * wait came before it (c->waited).  Always inlined: each call site's try_
 * is a constant, so the indirect call becomes a direct one.  May suspend.
 */
typedef struct weft__fdcall {
    weft__fdop op;
    uint32_t seq;
    bool waited;
    bool eintr_done;  /* an EINTR was injected in this call (faults.c) */
} weft__fdcall;

typedef ssize_t (*weft__try_fn)(weft__fdcall *c, void *arg);

static inline __attribute__((always_inline)) ssize_t
weft__fd_call(weft__fdcall *c, int dir, int64_t deadline, weft__try_fn try_, void *arg)
{
    for (;;) {
        int rc = weft__op_enter(&c->op, dir, &c->seq);
        if (rc < 0)
            return rc;
        ssize_t r = try_(c, arg);
        weft__op_exit(&c->op);
        if (r >= 0)
            return r;
        if (r == -EINTR)
            continue;
        if (r != -EAGAIN)
            return r;
        if ((rc = weft__op_wait(&c->op, dir, c->seq, deadline)) < 0)
            return rc;
        c->waited = true;
    }
}

/*
 * Fault injection (WEFT_FAULTS; runtime/faults.c) for one try of a
 * descriptor call, before its system call: -EINTR (once per call), or for
 * a stream read or write (short_kind WEFT__FAULT_SHORT_READ or _WRITE; -1
 * for a datagram: eintr only) -ECONNRESET, or 0 with *n cut to a drawn
 * 1..*n-1.  0 and *n untouched when nothing fires; one relaxed load when
 * no fault is armed.  A coroutine, between op_enter and op_exit.
 */
ssize_t weft__fault_io_slow(weft__fdcall *c, int short_kind, size_t *n);
static inline ssize_t weft__fault_io(weft__fdcall *c, int short_kind, size_t *n)
{
    /* relaxed: see weft__fault (internal.h) */
    if (__builtin_expect(!atomic_load_explicit(&weft__faults_armed, memory_order_relaxed), 1))
        return 0;
    return weft__fault_io_slow(c, short_kind, n);
}

#endif
