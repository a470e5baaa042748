/*
 * The poller on Linux.  The shared poller is an epoll instance holding every
 * watched descriptor (edge-triggered, data.u64 = fd + 1), the workers'
 * io_uring descriptors (one-shot, data.u64 = RING | worker) and the
 * driver's eventfd (data.u64 = 0).  A worker's own wake-up channel is an eventfd of
 * its own, slept on with ppoll (a timespec timeout, as the timers need).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "aio.h"
#include "poller.h"

#define RING (UINT64_C(1) << 63)

static void signal_fd(int evfd)
{
    uint64_t one = 1;
    ssize_t r = write(evfd, &one, sizeof one);
    (void)r;  /* EAGAIN: the counter is already non-zero, it will wake */
}

static void drain_fd(int evfd)
{
    uint64_t v;
    ssize_t r = read(evfd, &v, sizeof v);
    (void)r;
}

/* The backend's state behind the core structs' opaque pointers. */
struct weft__poller {
    int epfd;   /* every watched descriptor, the rings, evfd */
    int evfd;   /* wakes whoever drives */
};
struct weft__sleeper {
    int evfd;   /* a worker's own sleep */
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int weft__poll_init(weft__runtime *rt)
{
    struct weft__poller *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    rt->poller = p;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->epfd < 0 || p->evfd < 0)
        return -errno;  /* weft__poll_free releases what was made */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0)
        return -errno;
    return 0;
}

void weft__poll_free(weft__runtime *rt)
{
    struct weft__poller *p = rt->poller;
    if (!p)
        return;
    close_fd(&p->epfd);
    close_fd(&p->evfd);
    free(p);
    rt->poller = NULL;
}

int weft__poll_worker_init(weft__worker *w)
{
    struct weft__sleeper *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->evfd < 0) {
        int e = -errno;
        free(s);
        return e;
    }
    w->sleeper = s;
    return 0;
}

void weft__poll_worker_free(weft__worker *w)
{
    if (!w->sleeper)
        return;
    close_fd(&w->sleeper->evfd);
    free(w->sleeper);
    w->sleeper = NULL;
}

void weft__poll_wake_driver(weft__runtime *rt) { signal_fd(rt->poller->evfd); }
void weft__poll_wake_worker(weft__worker *w) { signal_fd(w->sleeper->evfd); }

int weft__poll_drive(weft__runtime *rt, const struct timespec *timeout)
{
    struct epoll_event ev[128];
    int n = epoll_pwait2(rt->poller->epfd, ev, 128, timeout, NULL);
    int fds = 0;
    for (int i = 0; i < n; i++) {
        if (!ev[i].data.u64) {
            /* Only the driver polls, so this count was meant for whoever
             * drives: us, or an earlier driver whose wait is over. */
            drain_fd(rt->poller->evfd);
            continue;
        }
        if (ev[i].data.u64 & RING) {
            weft__aio_ready(rt, (unsigned)(ev[i].data.u64 & ~RING));
            fds++;
            continue;
        }
        int e = 0;
        if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLPRI))
            e |= WEFT__POLL_IN;
        if (ev[i].events & (EPOLLOUT | EPOLLHUP))
            e |= WEFT__POLL_OUT;
        if (ev[i].events & EPOLLERR)
            e |= WEFT__POLL_ERR | WEFT__POLL_IN | WEFT__POLL_OUT;
        if (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            e |= WEFT__POLL_HUP;
        weft__netpoll_ready(rt, (int)(ev[i].data.u64 - 1), e);
        fds++;
    }
    return fds;
}

void weft__poll_sleep(weft__worker *w, const struct timespec *timeout)
{
    struct pollfd p = {.fd = w->sleeper->evfd, .events = POLLIN};
    if (ppoll(&p, 1, timeout, NULL) == 1)
        drain_fd(w->sleeper->evfd);
}

int weft__poll_add(weft__runtime *rt, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)fd + 1};
    if (epoll_ctl(rt->poller->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int weft__poll_add_ring(weft__runtime *rt, int fd, unsigned worker)
{
    /* EPOLLONESHOT without EPOLLIN: watched, reports nothing until armed. */
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = RING | worker};
    if (epoll_ctl(rt->poller->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    /* relaxed: a hint for busy workers and sysmon (a completion may come
     * while nobody drives), as netpoll's count of sockets. */
    atomic_fetch_add_explicit(&rt->nfds, 1, memory_order_relaxed);
    /* seq_cst: the virtual clock tells rings from sockets (vclock.c). */
    atomic_fetch_add_explicit(&rt->nrings, 1, memory_order_seq_cst);
    return 0;
}

void weft__poll_arm_ring(weft__runtime *rt, int fd, unsigned worker)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = RING | worker};
    int rc = epoll_ctl(rt->poller->epfd, EPOLL_CTL_MOD, fd, &ev);
    (void)rc;  /* cannot fail for a descriptor added and not yet closed */
}

int weft__poll_del(weft__runtime *rt, int fd)
{
    if (epoll_ctl(rt->poller->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        return -errno;
    return 0;
}
