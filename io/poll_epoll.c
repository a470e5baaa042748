/*
 * The poller on Linux: an epoll instance per worker, edge-triggered, with an
 * eventfd for wake-ups.  data.u64 holds fd + 1 for a watched descriptor and
 * 0 for the eventfd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "poll.h"

int weft__poll_init(weft__worker *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->epfd < 0 || w->evfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) < 0)
        return -errno;
    return 0;
}

void weft__poll_free(weft__worker *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->evfd >= 0)
        close(w->evfd);
    w->epfd = w->evfd = -1;
}

void weft__poll_wake(weft__worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->evfd, &one, sizeof one);
    (void)r;  /* EAGAIN: the counter is already non-zero, it will wake */
}

int weft__poll_wait(weft__worker *w, const struct timespec *timeout)
{
    struct epoll_event ev[64];
    int n = epoll_pwait2(w->epfd, ev, 64, timeout, NULL);
    int fds = 0;
    /* Only the owner consumes its wake-up: a worker helping a blocked one
     * must not eat the eventfd count meant to wake it (it would sleep on). */
    bool owner = weft__cur_worker() == w;
    for (int i = 0; i < n; i++) {
        if (!ev[i].data.u64) {
            if (owner) {
                uint64_t v;
                ssize_t r = read(w->evfd, &v, sizeof v);
                (void)r;
            }
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
        weft__netpoll_ready(w->rt, (int)(ev[i].data.u64 - 1), e);
        fds++;
    }
    return fds;
}

int weft__poll_add(weft__worker *w, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)fd + 1};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int weft__poll_del(weft__worker *w, int fd)
{
    if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        return -errno;
    return 0;
}
