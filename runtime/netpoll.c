/*
 * Descriptor readiness: how an fd's readiness reaches a coroutine.
 *
 * Every descriptor a coroutine waits on has a weft__fdstate in the runtime's
 * fd table (indexed by fd number, in chunks never freed before weft_run
 * returns).  The first wait on an fd registers it, edge-triggered, in the
 * runtime's shared poller; it stays there until weft_close.  Each state
 * keeps a readiness sequence per direction (rseq, wseq) and a wait queue per
 * direction.
 *
 * The path of one readiness edge:
 *  1. The poller reports the fd to the worker that drives it: a parked
 *     worker woke in it, or a busy one polled it without waiting (every
 *     WEFT__INJECT_EVERY schedules, when nobody drives).
 *  2. weft__netpoll_ready bumps the direction's sequence and grants every
 *     waiter of that direction under the fd's lock (wait-queue protocol,
 *     runtime/waitq.h): each is woken onto the polling worker's run queue.
 *  3. Like any ready task, a woken coroutine may be stolen by an idle
 *     worker; it resumes wherever it runs next, and retries its syscall.
 * So the coroutine may have last run on a different worker from the one
 * that polled the fd: readiness travels through the fd state and the
 * run queues, never through the worker the coroutine last ran on.
 *
 * Why nothing is missed: a coroutine reads the direction's sequence BEFORE
 * its non-blocking syscall; when the syscall says EAGAIN, it waits only if
 * the sequence is still the same under the fd lock.  An edge after the
 * syscall bumps the sequence (then the coroutine retries at once) or finds
 * the coroutine queued (then it is granted and woken).  Edge-triggered
 * epoll reports every new edge, so no readiness is lost between the two.
 *
 * weft_close wakes every waiter with -EBADF (a generation number changes),
 * removes the fd from its poller and closes it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "waitq.h"
#include "netpoll.h"
#include "poller.h"

#define CHUNK 1024
#define MAX_CHUNKS 4096  /* fds up to 4M */

struct weft__fdtable {
    weft__spin lock;              /* chunk allocation */
    weft__fdstate *_Atomic chunks[MAX_CHUNKS];
};

/* Under st->lock: forgets what weft_read learnt of the file behind st
 * (a drained socket, the peer's close), when the number gets a new file. */
static void forget_hints(weft__fdstate *st)
{
    atomic_store_explicit(&st->rdrained, 0, memory_order_relaxed);
    atomic_store_explicit(&st->hup, false, memory_order_relaxed);
    atomic_store_explicit(&st->notsock, false, memory_order_relaxed);
    atomic_store_explicit(&st->rdkind, WEFT__RD_UNKNOWN, memory_order_relaxed);
}

/* Any thread.  The state of fd, allocated on first use; NULL for a
 * negative or huge fd, or out of memory. */
weft__fdstate *weft__fd_state(weft__runtime *rt, int fd, bool create)
{
    if (fd < 0 || fd >= CHUNK * MAX_CHUNKS)
        return NULL;
    struct weft__fdtable *ft = atomic_load_explicit((struct weft__fdtable *_Atomic *)&rt->fds,
                                                    memory_order_acquire);
    if (!ft) {
        if (!create)
            return NULL;
        /* The runtime's first descriptor: made here and published by CAS;
         * a loser of the race frees its copy.  (It used to borrow
         * inject_lock, holding the injection queue across a calloc.) */
        struct weft__fdtable *mine = calloc(1, sizeof *mine);
        if (!mine)
            return NULL;
        weft__spin_init(&mine->lock, WEFT__RANK_LEAF);
        /* acq_rel: the release publishes mine's initialisation (pairs with
         * the acquire load above); acquire on failure: the winner's. */
        if (atomic_compare_exchange_strong_explicit((struct weft__fdtable *_Atomic *)&rt->fds,
                                                    &ft, mine, memory_order_acq_rel,
                                                    memory_order_acquire))
            ft = mine;
        else
            free(mine);
    }
    /* acquire: pairs with the release when a chunk is published. */
    weft__fdstate *c = atomic_load_explicit(&ft->chunks[fd / CHUNK], memory_order_acquire);
    if (!c) {
        if (!create)
            return NULL;
        weft__spin_lock(&ft->lock);
        c = atomic_load_explicit(&ft->chunks[fd / CHUNK], memory_order_relaxed);
        if (!c) {
            c = calloc(CHUNK, sizeof *c);
            if (c) {
                for (int i = 0; i < CHUNK; i++) {
                    c[i].fd = (fd / CHUNK) * CHUNK + i;
                    weft__spin_init(&c[i].lock, WEFT__RANK_FD);
                }
                atomic_store_explicit(&ft->chunks[fd / CHUNK], c, memory_order_release);
            }
        }
        weft__spin_unlock(&ft->lock);
        if (!c)
            return NULL;
    }
    return &c[fd % CHUNK];
}

void weft__netpoll_free(weft__runtime *rt)
{
    struct weft__fdtable *ft = rt->fds;
    if (!ft)
        return;
    for (int i = 0; i < MAX_CHUNKS; i++)
        free(atomic_load_explicit(&ft->chunks[i], memory_order_relaxed));
    free(ft);
    rt->fds = NULL;
}

void weft__fd_fresh(int fd)
{
    weft__worker *wk = weft__cur_worker();
    weft__runtime *rt = wk ? wk->rt : weft__cur_rt();
    weft__fdstate *st = rt ? weft__fd_state(rt, fd, false) : NULL;
    if (!st)
        return;
    weft__spin_lock(&st->lock);
    if (st->polled) {
        /* The old file was closed behind weft's back; the kernel dropped
         * it from the poller then. */
        atomic_fetch_sub_explicit(&rt->nfds, 1, memory_order_relaxed);
        st->polled = false;
    }
    st->unpollable = false;
    forget_hints(st);
    weft__spin_unlock(&st->lock);
}

/* Any worker (the poller's dispatch).  An edge for fd. */
void weft__netpoll_ready(weft__runtime *rt, int fd, int events)
{
    weft__fdstate *st = weft__fd_state(rt, fd, false);
    if (!st)
        return;  /* cannot happen: registered fds have a state */
    weft__spin_lock(&st->lock);
    weft__waiter *w;
    if (events & WEFT__POLL_HUP)  /* before the rseq release below */
        atomic_store_explicit(&st->hup, true, memory_order_relaxed);
    if (events & WEFT__POLL_IN) {
        /* release: pairs with the acquire load before the syscall. */
        atomic_fetch_add_explicit(&st->rseq, 1, memory_order_release);
        while ((w = weft__waitq_pop(&st->rq)))
            weft__waiter_grant(w);
    }
    if (events & WEFT__POLL_OUT) {
        atomic_fetch_add_explicit(&st->wseq, 1, memory_order_release);
        while ((w = weft__waitq_pop(&st->wq)))
            weft__waiter_grant(w);
    }
    weft__spin_unlock(&st->lock);
}

/* Under st->lock, a coroutine of rt: makes sure the shared poller watches st. */
static int ensure_registered(weft__fdstate *st, weft__runtime *rt)
{
    if (st->polled || st->unpollable)
        return 0;
    int rc = weft__poll_add(rt, st->fd);
    if (rc == -EPERM) {
        st->unpollable = true;  /* a regular file: always ready */
        return 0;
    }
    if (rc == -EEXIST)
        rc = 0;  /* still there: a file that outlived its number (dup) */
    if (rc < 0)
        return rc;
    st->polled = true;
    atomic_fetch_add_explicit(&rt->nfds, 1, memory_order_relaxed);
    return 0;
}

/* Any thread with a runtime.  Starts an operation on fd (see netpoll.h). */
int weft__op_begin(weft__fdop *op, int fd)
{
    weft__worker *wk = weft__cur_worker();
    if (!wk || !wk->current)
        return -EPERM;
    if (fd < 0)
        return -EBADF;
    op->fd = fd;
    op->st = weft__fd_state(wk->rt, fd, true);
    if (!op->st)
        return -ENOMEM;
    /* Under the lock: a weft_close that already ran (it closes under this
     * lock) is then ordered before our system calls, which see a closed or
     * new descriptor, never a half-closed one. */
    weft__spin_lock(&op->st->lock);
    op->gen = atomic_load_explicit(&op->st->gen, memory_order_relaxed);
    weft__spin_unlock(&op->st->lock);
    return 0;
}

/* May suspend.  After a syscall returned EAGAIN: waits until the
 * direction's sequence moves past seq, the deadline, cancellation or
 * weft_close.  0 (retry the syscall) or -ETIMEDOUT / -ECANCELED / -EBADF. */
int weft__op_wait(weft__fdop *op, int dir, uint32_t seq, int64_t deadline)
{
    weft__worker *wk = weft__cur_worker();
    weft_task *self = wk->current;
    weft__fdstate *st = op->st;
    weft__spin_lock(&st->lock);
    if (atomic_load_explicit(&st->gen, memory_order_relaxed) != op->gen) {
        weft__spin_unlock(&st->lock);
        return -EBADF;
    }
    int rc = ensure_registered(st, wk->rt);
    if (rc < 0 || st->unpollable) {
        weft__spin_unlock(&st->lock);
        return rc;
    }
    _Atomic uint32_t *seqp = dir == WEFT__POLL_IN ? &st->rseq : &st->wseq;
    if (atomic_load_explicit(seqp, memory_order_relaxed) != seq) {
        weft__spin_unlock(&st->lock);
        return 0;
    }
    if (deadline != WEFT_FOREVER && deadline <= weft_now()) {
        weft__spin_unlock(&st->lock);
        return -ETIMEDOUT;
    }
    weft__waiter w = {.task = self};
    weft__waitq *q = dir == WEFT__POLL_IN ? &st->rq : &st->wq;
    weft__waitq_push(q, &w);
    /* "read fd" / "write fd": the fd number is kept beside it (wait_fd),
     * so no string is formatted on this path. */
    WEFT__OBS(atomic_store_explicit(&self->wait_fd, op->fd, memory_order_relaxed));
    rc = weft__waitq_wait(&st->lock, q, &w, dir == WEFT__POLL_IN ? "read fd" : "write fd",
                          deadline, true, NULL);
    if (atomic_load_explicit(&st->gen, memory_order_relaxed) != op->gen)
        rc = -EBADF;
    weft__spin_unlock(&st->lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Public calls                                                        */
/* ------------------------------------------------------------------ */

static int poll_now(int fd, int events)
{
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & WEFT_READABLE)
        p.events |= POLLIN;
    if (events & WEFT_WRITABLE)
        p.events |= POLLOUT;
    int n = poll(&p, 1, 0);
    if (n < 0)
        return -errno;
    if (p.revents & POLLNVAL)
        return -EBADF;
    int r = 0;
    if ((events & WEFT_READABLE) && (p.revents & (POLLIN | POLLHUP | POLLERR)))
        r |= WEFT_READABLE;
    if ((events & WEFT_WRITABLE) && (p.revents & (POLLOUT | POLLHUP | POLLERR)))
        r |= WEFT_WRITABLE;
    return r;
}

/* Scheduler stack: sleep unless one of the two waiters was granted. */
static bool either_commit(weft_task *t, void *arg)
{
    (void)t;
    weft__waiter *w = arg;
    /* relaxed: a hint (protocol 5: a grant after this look leaves a permit). */
    return !atomic_load_explicit(&w[0].granted, memory_order_relaxed) &&
           !atomic_load_explicit(&w[1].granted, memory_order_relaxed);
}

int weft_wait_fd(int fd, int events, int64_t deadline)
{
    weft__worker *wk = weft__cur_worker();
    weft_task *self = wk ? wk->current : NULL;
    if (!self)
        return -EPERM;
    if (fd < 0)
        return -EBADF;
    if (!(events & (WEFT_READABLE | WEFT_WRITABLE)) || (events & ~(WEFT_READABLE | WEFT_WRITABLE)))
        return -EINVAL;
    if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst))
        return -ECANCELED;
    weft__fdop op;
    int rc0 = weft__op_begin(&op, fd);
    if (rc0 < 0)
        return rc0;
    weft__fdstate *st = op.st;
    for (;;) {
        uint32_t rs, ws;
        if ((rc0 = weft__op_enter(&op, WEFT__POLL_IN, &rs)) < 0)
            return rc0;
        ws = atomic_load_explicit(&st->wseq, memory_order_acquire);
        int r = poll_now(fd, events);
        weft__op_exit(&op);
        if (r != 0)
            return r;
        weft__spin_lock(&st->lock);
        int rc = ensure_registered(st, weft__cur_worker()->rt);
        if (rc < 0 || st->unpollable) {
            weft__spin_unlock(&st->lock);
            return rc < 0 ? rc : events;
        }
        bool moved = ((events & WEFT_READABLE) && atomic_load_explicit(&st->rseq, memory_order_relaxed) != rs) ||
                     ((events & WEFT_WRITABLE) && atomic_load_explicit(&st->wseq, memory_order_relaxed) != ws);
        if (moved) {
            weft__spin_unlock(&st->lock);
            continue;
        }
        if (deadline != WEFT_FOREVER && deadline <= weft_now()) {
            weft__spin_unlock(&st->lock);
            return -ETIMEDOUT;
        }
        if (atomic_load_explicit(&st->gen, memory_order_relaxed) != op.gen) {
            weft__spin_unlock(&st->lock);
            return -EBADF;
        }
        weft__waiter w[2] = {{.task = self}, {.task = self}};
        if (events & WEFT_READABLE)
            weft__waitq_push(&st->rq, &w[0]);
        if (events & WEFT_WRITABLE)
            weft__waitq_push(&st->wq, &w[1]);
        WEFT__OBS(atomic_store_explicit(&self->wait_fd, fd, memory_order_relaxed));
        weft__spin_unlock(&st->lock);
        rc = weft__park_ex(events == WEFT_READABLE ? "read fd" : events == WEFT_WRITABLE ? "write fd"
                                                                                : "poll fd",
                           either_commit, w, deadline, true);
        weft__spin_lock(&st->lock);
        if ((events & WEFT_READABLE) && !atomic_load_explicit(&w[0].granted, memory_order_relaxed))
            weft__waitq_remove(&st->rq, &w[0]);
        if ((events & WEFT_WRITABLE) && !atomic_load_explicit(&w[1].granted, memory_order_relaxed))
            weft__waitq_remove(&st->wq, &w[1]);
        bool closed = atomic_load_explicit(&st->gen, memory_order_relaxed) != op.gen;
        weft__spin_unlock(&st->lock);
        if (closed)
            return -EBADF;
        if (rc < 0)
            return rc;
    }
}

int weft_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    weft__worker *wk = weft__cur_worker();
    weft__runtime *rt = wk ? wk->rt : weft__rt_get();
    weft__fdstate *st = rt ? weft__fd_state(rt, fd, false) : NULL;
    if (st) {
        weft__spin_lock(&st->lock);
        /* seq_cst: pairs with op_enter (netpoll.h): from here on no new
         * system call starts on fd; wait for those in flight. */
        atomic_fetch_add_explicit(&st->gen, 1, memory_order_seq_cst);
        while (atomic_load_explicit(&st->users, memory_order_seq_cst))
            weft__cpu_relax();
        weft__waiter *w;
        while ((w = weft__waitq_pop(&st->rq)))
            weft__waiter_grant(w);
        while ((w = weft__waitq_pop(&st->wq)))
            weft__waiter_grant(w);
        bool polled = st->polled;
        st->polled = false;
        st->unpollable = false;
        if (polled) {
            weft__poll_del(rt, fd);
            atomic_fetch_sub_explicit(&rt->nfds, 1, memory_order_relaxed);
        }
        /* Close under the lock: the number cannot be reused and registered
         * again before this state is reset. */
        int rc = close(fd) < 0 ? -errno : 0;
        forget_hints(st);
        atomic_fetch_add_explicit(&st->rseq, 1, memory_order_release);
        atomic_fetch_add_explicit(&st->wseq, 1, memory_order_release);
        weft__spin_unlock(&st->lock);
        if (!wk)
            weft__rt_put();
        return rc;
    }
    if (rt && !wk)
        weft__rt_put();
    return close(fd) < 0 ? -errno : 0;
}
