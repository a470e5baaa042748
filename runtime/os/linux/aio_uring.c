/*
 * File reads and writes on io_uring (runtime/aio.h), raw system calls.
 *
 * Why: a pread on the blocking pool costs a hand-off to a pool thread and
 * a wake-up back, many times the read itself when the data is in the page
 * cache.  io_uring does that
 * read inside the submitting system call and posts its completion before
 * the call returns, so the coroutine does not even park; a read that must
 * wait for the disk goes to the kernel's own threads and completes later.
 * docs/networking.md, "Files", has the figures.
 *
 * Design:
 *  1. One ring per worker, made when a coroutine on that worker first reads
 *     or writes a file (runtimes that never touch a file never make one).
 *     Only its worker submits to it (owner worker only: no lock on the
 *     submission queue; a coroutine cannot move between filling the entry
 *     and the io_uring_enter, as neither suspends).
 *  2. Completions are reaped by whoever looks first, under the ring's
 *     reap lock: the submitter itself right after io_uring_enter (the
 *     common case: the read was done inline), or any worker that polls the
 *     shared poller, where each ring's descriptor sits.  So a completion
 *     made later by the kernel's threads reaches its coroutine like a
 *     socket's readiness does, whichever worker drives the poller.
 *     The descriptor is one-shot and armed only while an operation is
 *     known to be outstanding: by the submitter when its own operation was
 *     not done inline, and by a reaper that leaves operations in flight.
 *     Arming is level-triggered (a completion that came before it is
 *     reported at once), so none is missed; and the inline completions,
 *     nearly all of them, wake no parked driver (each did, armed for good:
 *     docs/networking.md, "Files", item 3).
 *  3. A completion's request lives on the waiting coroutine's stack.  The
 *     reaper writes res, then done (release), then wakes the task, all
 *     under the reap lock; the coroutine re-checks done in its park commit
 *     (a hint: a wake that comes before the coroutine is asleep leaves it a
 *     permit, sched.c protocol 5, so its park returns at once), and, if it
 *     saw done without being woken, takes the reap lock once before it returns,
 *     so the reaper's wake has finished with the task before the request's
 *     stack frame and the task can go away.  ThreadSanitizer sees all of it
 *     (the lock and C11 atomics); the ring memory the kernel writes it does
 *     not see, and need not: every user-space access to it is under the
 *     lock or by the owner.
 *  4. At most cq_entries operations are in flight on a ring (the kernel
 *     would otherwise hold completions in an overflow list and refuse
 *     submissions); past that, and whenever the ring cannot be made, the
 *     call says -ENOSYS and io/file.c uses the pool.
 *  5. A cancelled caller's operation is not cancelled in the kernel: it is
 *     waited for, as the pool's system calls are (a page-cache read takes
 *     microseconds; the request lives on the caller's stack).
 *  6. Only regular files and block devices go to the ring: on a pipe or a
 *     socket io_uring would ignore the offset and wait for data, where
 *     pread says -ESPIPE at once.  That costs an fstat per call.  Not
 *     caught: the rare regular files opened non-seekable (FUSE's
 *     FOPEN_STREAM, debugfs trace_pipe), where io_uring reads the stream
 *     and pread would say -ESPIPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aio.h"
#include "poller.h"

#define RING_ENTRIES 128u
#define MAX_IO (1u << 30) /* bytes per operation; pread may return fewer */

typedef struct aio_req {
    weft_task *task;
    int32_t res;
    _Atomic int done;   /* set before the wake-up (protocol 5: a permit if not asleep yet) */
} aio_req;

struct weft__aio {
    int fd;
    unsigned worker;            /* its worker's index (the poller's tag) */
    bool failed;                /* io_uring_setup refused: pool from now on */
    unsigned sq_mask, cq_mask, cq_entries;
    _Atomic unsigned *sq_tail;  /* written by the owner only */
    unsigned *sq_array;
    struct io_uring_sqe *sqes;
    _Atomic unsigned *cq_head;  /* written under mu only */
    _Atomic unsigned *cq_tail;  /* written by the kernel */
    struct io_uring_cqe *cqes;
    _Atomic unsigned inflight;  /* + by the owner at submit (release), - by
                                   reapers; its release sequence carries
                                   the requests to the reapers */
    pthread_mutex_t mu;         /* the reap lock */
    void *sq_map, *cq_map;
    size_t sq_len, cq_len, sqes_len;
};

static void ring_close(struct weft__aio *a)
{
    if (a->sqes && a->sqes != MAP_FAILED)
        munmap(a->sqes, a->sqes_len);
    if (a->cq_map && a->cq_map != MAP_FAILED && a->cq_map != a->sq_map)
        munmap(a->cq_map, a->cq_len);
    if (a->sq_map && a->sq_map != MAP_FAILED)
        munmap(a->sq_map, a->sq_len);
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
}

/* Owner worker only.  Makes w's ring and puts it in the shared poller;
 * false (and a->failed) when the kernel refuses. */
static bool ring_open(weft__worker *w, struct weft__aio *a)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CLAMP;
    a->fd = (int)syscall(SYS_io_uring_setup, RING_ENTRIES, &p);
    if (a->fd < 0)
        goto fail;
    if (!(p.features & IORING_FEAT_NODROP))
        goto fail;  /* pre-5.5 kernels could drop completions */
    a->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    a->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (a->cq_len > a->sq_len)
            a->sq_len = a->cq_len;
        a->cq_len = a->sq_len;
    }
    a->sq_map = mmap(NULL, a->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd,
                     IORING_OFF_SQ_RING);
    if (a->sq_map == MAP_FAILED)
        goto fail;
    a->cq_map = (p.features & IORING_FEAT_SINGLE_MMAP)
                    ? a->sq_map
                    : mmap(NULL, a->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                           a->fd, IORING_OFF_CQ_RING);
    a->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    a->sqes = mmap(NULL, a->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd,
                   IORING_OFF_SQES);
    if (a->cq_map == MAP_FAILED || a->sqes == MAP_FAILED)
        goto fail;
    char *sq = a->sq_map, *cq = a->cq_map;
    a->sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
    a->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    a->sq_array = (unsigned *)(sq + p.sq_off.array);
    a->cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
    a->cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
    a->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    a->cq_entries = p.cq_entries;
    a->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    if (weft__poll_add_ring(w->rt, a->fd, (unsigned)w->id) < 0)
        goto fail;
    return true;
fail:
    ring_close(a);
    a->failed = true;
    return false;
}

/* Owner worker only: w's ring, made on first use; NULL when it cannot be. */
static struct weft__aio *ring_get(weft__worker *w)
{
    struct weft__aio *a = atomic_load_explicit(&w->aio, memory_order_relaxed);
    if (a)
        return a->failed ? NULL : a;
    a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->fd = -1;
    a->worker = (unsigned)w->id;
    pthread_mutex_init(&a->mu, NULL);
    ring_open(w, a);
    /* release: pairs with the acquire in weft__aio_ready, which reads the
     * ring's fields once the poller reports its descriptor. */
    atomic_store_explicit(&w->aio, a, memory_order_release);
    return a->failed ? NULL : a;
}

/* Any thread, under a->mu.  Hands every completion to its coroutine;
 * returns true when `mine` (a request of the caller, or NULL) completed. */
static bool reap_locked(struct weft__aio *a, aio_req *mine)
{
    bool got = false;
    unsigned head = atomic_load_explicit(a->cq_head, memory_order_relaxed);
    /* acquire: the kernel's completion entries before its tail store. */
    unsigned tail = atomic_load_explicit(a->cq_tail, memory_order_acquire);
    /* acquire: pairs with the release add in submit (the requests of the
     * completions below were written before their submission).  After the
     * tail load: every completion seen there was submitted before it, so
     * this load reads an add at least as late as that submission's.  Made
     * before the tail load, it could miss a request submitted and completed
     * in between (inline, in another worker's io_uring_enter), and
     * ThreadSanitizer would see this reaper's write of res race with the
     * previous user of that stack memory. */
    (void)atomic_load_explicit(&a->inflight, memory_order_acquire);
    unsigned n = 0;
    for (; head != tail; head++, n++) {
        struct io_uring_cqe *c = &a->cqes[head & a->cq_mask];
        aio_req *r = (aio_req *)(uintptr_t)c->user_data;
        r->res = c->res;
        if (r == mine) {
            got = true;
            atomic_store_explicit(&r->done, 1, memory_order_relaxed);
            continue;
        }
        weft_task *t = r->task;
        weft__runtime *rt = t->rt;
        /* Before the wake, whose CAS publishes it (release) to the task:
         * asleep, it is queued; not yet, it gets a permit (sched.c,
         * protocol 5).  aio_commit's look at it only saves a sleep. */
        atomic_store_explicit(&r->done, 1, memory_order_release);
        weft__wake(t);
        /* After the task is queued: the operation held the virtual clock
         * (vclock.c, point 2). */
        weft__vclock_release(rt);
    }
    /* release: the entries are read before the kernel may reuse them. */
    atomic_store_explicit(a->cq_head, head, memory_order_release);
    if (n)
        /* release: the cq_head store above before the owner may count the
         * freed slots (its acquire load in weft__aio_rw), so that it never
         * submits into a completion queue the kernel still sees as full
         * (x86 orders this anyway; weaker CPUs need the pair). */
        atomic_fetch_sub_explicit(&a->inflight, n, memory_order_release);
    return got;
}

void weft__aio_ready(weft__runtime *rt, unsigned worker)
{
    if (worker >= rt->nworkers)
        return;
    /* acquire: pairs with the release in ring_get. */
    struct weft__aio *a = atomic_load_explicit(&rt->workers[worker]->aio, memory_order_acquire);
    if (!a || a->failed)
        return;
    pthread_mutex_lock(&a->mu);
    reap_locked(a, NULL);
    bool more = atomic_load_explicit(&a->inflight, memory_order_relaxed) > 0;
    pthread_mutex_unlock(&a->mu);
    /* The report disarmed the descriptor; operations still out need it. */
    if (more)
        weft__poll_arm_ring(rt, a->fd, worker);
}

/* Scheduler stack, in park_commit: sleep only while the request is not done. */
static bool aio_commit(weft_task *t, void *arg)
{
    (void)t;
    aio_req *r = arg;
    /* relaxed: a hint that saves a sleep; a done stored after this look
     * comes with a wake that leaves a permit (sched.c, protocol 5). */
    return !atomic_load_explicit(&r->done, memory_order_relaxed);
}

/* Owner worker only.  Queues one entry and submits it; 0 or -errno (the
 * entry taken back). */
static int submit(struct weft__aio *a, int op, int fd, void *buf, unsigned len, off_t off,
                  aio_req *r, bool async)
{
    unsigned tail = atomic_load_explicit(a->sq_tail, memory_order_relaxed);
    unsigned slot = tail & a->sq_mask;
    struct io_uring_sqe *e = &a->sqes[slot];
    memset(e, 0, sizeof *e);
    e->opcode = (uint8_t)op;
    e->fd = fd;
    e->off = (uint64_t)off;
    e->addr = (uint64_t)(uintptr_t)buf;
    e->len = len;
    e->user_data = (uint64_t)(uintptr_t)r;
    if (async)
        e->flags = IOSQE_ASYNC;
    a->sq_array[slot] = slot;
    /* release: the request (on this coroutine's stack) before the kernel
     * has it; pairs with the acquire load in reap_locked, which a reaper
     * makes after the kernel posted the completion.  The kernel's own
     * hand-off is invisible to ThreadSanitizer; this one is not. */
    atomic_fetch_add_explicit(&a->inflight, 1, memory_order_release);
    /* release: the entry before the tail (the kernel's acquire). */
    atomic_store_explicit(a->sq_tail, tail + 1, memory_order_release);
    for (;;) {
        long rc = syscall(SYS_io_uring_enter, a->fd, 1, 0, 0, NULL, 0);
        if (rc == 1)
            return 0;
        if (rc < 0 && errno == EINTR)
            continue;
        int err = rc < 0 ? errno : EAGAIN;
        /* Not consumed (only this worker enters this ring): take it back. */
        atomic_store_explicit(a->sq_tail, tail, memory_order_release);
        atomic_fetch_sub_explicit(&a->inflight, 1, memory_order_relaxed);
        return -err;
    }
}

ssize_t weft__aio_rw(bool write, int fd, void *buf, size_t n, off_t off)
{
    weft__worker *w = weft__cur_worker();
    weft_task *self = w ? w->current : NULL;
    if (!self)
        return -EPERM;
    if (w->rt->cfg.aio == WEFT__AIO_OFF)
        return -ENOSYS;
    /* seq_cst: pairs with the store of cancelled in weft_cancel (sticky:
     * even a call that could complete at once says -ECANCELED). */
    if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst))
        return -ECANCELED;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return -ENOSYS;
    struct weft__aio *a = ring_get(w);
    /* acquire: pairs with the reapers' release subtraction. */
    if (!a || atomic_load_explicit(&a->inflight, memory_order_acquire) >= a->cq_entries)
        return -ENOSYS;
    aio_req r = {.task = self};
    /* An operation in flight holds the virtual clock, as a pool job does
     * (vclock.c, point 2); released where its completion is reaped. */
    weft__runtime *rt = w->rt;
    weft__vclock_hold(rt);
    int rc = submit(a, write ? IORING_OP_WRITE : IORING_OP_READ, fd, buf,
                    n > MAX_IO ? MAX_IO : (unsigned)n, off, &r, w->rt->cfg.aio == WEFT__AIO_ASYNC);
    if (rc < 0) {
        weft__vclock_release(rt);
        return rc == -EAGAIN || rc == -EBUSY ? -ENOSYS : rc;
    }
    /* Most often done already: the kernel did it inside io_uring_enter.
     * trylock: a busy lock is held by a reaper that a poll report sent
     * (the owner is the only other reaper, and that is us); its report
     * disarmed the descriptor, so our completion, if it missed it, needs
     * the arm below like any late one, and the worker thread does not
     * wait for a reaper that may be preempted while it wakes others. */
    bool got = false;
    if (pthread_mutex_trylock(&a->mu) == 0) {
        got = reap_locked(a, &r);
        pthread_mutex_unlock(&a->mu);
    }
    bool cancelled = false;
    if (got) {
        weft__vclock_release(rt);  /* reaped here, by us */
        /* Done inline: still a suspension point, as the header promises
         * and as the pool's hand-off is.  Without this, a coroutine that
         * reads cached data in a loop would never let its worker's other
         * coroutines run (Tokio's cooperative budget exists for the same
         * reason). */
        weft__yield_now();
    } else {
        /* Done by the kernel's threads, later: make sure a poll reports it. */
        /* acquire: pairs with the reaper's release of done (res). */
        if (!atomic_load_explicit(&r.done, memory_order_acquire))
            weft__poll_arm_ring(w->rt, a->fd, a->worker);
        while (!atomic_load_explicit(&r.done, memory_order_acquire)) {
            int prc = weft__park_ex(write ? "file write" : "file read", aio_commit, &r,
                                    WEFT_FOREVER, !cancelled);
            if (prc == -ECANCELED)
                cancelled = true;
        }
        /* Until the reaper lets go of the lock, it may still be waking us. */
        pthread_mutex_lock(&a->mu);
        pthread_mutex_unlock(&a->mu);
    }
    if (cancelled)
        return -ECANCELED;
    /* A file opened O_NONBLOCK: io_uring says EAGAIN where pread(2) would
     * wait for the disk.  The pool does that wait. */
    /* -EINTR (a network file system's read interrupted on a kernel
     * thread): the pool's system call retries, so it does the retry. */
    return r.res == -EAGAIN || r.res == -EINTR ? -ENOSYS : r.res;
}

void weft__aio_worker_free(weft__worker *w)
{
    struct weft__aio *a = atomic_load_explicit(&w->aio, memory_order_relaxed);
    if (!a)
        return;
    if (a->fd >= 0)
        weft__poll_del(w->rt, a->fd);
    ring_close(a);
    pthread_mutex_destroy(&a->mu);
    free(a);
    w->aio = NULL;
}
