/*
 * echo-floor: the machine's floor under "weft-bench echo", measured with no
 * runtime: plain-C echo servers on 127.0.0.1, one thread per worker.
 *
 *   echo-floor epoll PORT    THREADS threads (default 2, env THREADS), each
 *                            with its own SO_REUSEPORT listener and its own
 *                            epoll, level-triggered: one recv and one send
 *                            per message, never a recv that finds nothing
 *   echo-floor uring PORT    the same threads, each with its own io_uring
 *                            (liburing; SINGLE_ISSUER | DEFER_TASKRUN where
 *                            the kernel has them): multishot accept,
 *                            multishot recv into a provided buffer ring,
 *                            send from the buffer received into
 *   echo-floor uring1 PORT   what weft's calls could do on io_uring: a
 *                            ring per thread without SINGLE_ISSUER or
 *                            DEFER_TASKRUN (a work-stealing runtime's
 *                            coroutines move between threads, and any
 *                            worker reaps: so the completions' task work
 *                            interrupts the submitting thread), a
 *                            single-shot recv into the connection's own
 *                            buffer (weft_read fills the caller's buffer),
 *                            the reply by send(2) (weft_write returns
 *                            when written), recvs submitted in one batch a
 *                            loop (URING1_FLAGS=coop: COOP_TASKRUN |
 *                            TASKRUN_FLAG; =defer: the uring variant's
 *                            flags, for comparison)
 *
 * Runs until killed.  Same protocol as weft-bench's echo for echo_load
 * (64-byte lines, each echoed before the next is sent): the bytes are echoed
 * as they arrive, without looking for the line's end, which is the least a
 * server can do for that load.  Sends that come back short are finished
 * before the next read of that connection (epoll: EPOLLOUT; io_uring: one
 * send in flight per connection, the rest queued in order).  bench/echo-floor.sh
 * runs these against weft, Tokio and Go; docs/networking.md, section 9, has
 * the figures.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef ECHO_FLOOR_URING
#include <liburing.h>
#endif

static int port;
static int maxfd; /* RLIMIT_NOFILE: per-connection arrays are indexed by fd */

static void die(const char *what)
{
    fprintf(stderr, "echo-floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0)
        die("bind/listen");
    return fd;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------------------ */
/* epoll                                                               */
/* ------------------------------------------------------------------ */

#define BUF 4096

struct pending { /* bytes a short send left behind, per connection */
    char *buf;
    size_t off, len;
};

static void ep_close(int ep, struct pending *pend, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(pend[fd].buf);
    pend[fd] = (struct pending){0};
}

/* Sends what is left; returns 1 when all is sent, 0 when the socket is
 * full (the connection then waits for EPOLLOUT), -1 on error. */
static int ep_flush(struct pending *p, int fd)
{
    while (p->off < p->len) {
        ssize_t w = send(fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        p->off += (size_t)w;
    }
    p->off = p->len = 0;
    return 1;
}

static void *ep_thread(void *arg)
{
    (void)arg;
    int lfd = listener(), ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct pending *pend = calloc((size_t)maxfd, sizeof *pend);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[1024];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= maxfd) {
                        close(c);
                        continue;
                    }
                    nodelay(c);
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            struct pending *p = &pend[fd];
            if (p->len) { /* EPOLLOUT: finish the short send, then read again */
                int f = ep_flush(p, fd);
                if (f < 0)
                    ep_close(ep, pend, fd);
                else if (f > 0) {
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
                }
                continue;
            }
            /* Level-triggered: one recv per event; whatever it leaves is
             * reported again by the next wait. */
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                ep_close(ep, pend, fd);
                continue;
            }
            ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (w == r)
                continue;
            if (w < 0 && errno != EAGAIN) {
                ep_close(ep, pend, fd);
                continue;
            }
            if (w < 0)
                w = 0;
            if (!p->buf && !(p->buf = malloc(BUF)))
                die("malloc");
            memcpy(p->buf, buf + w, (size_t)(r - w));
            p->off = 0;
            p->len = (size_t)(r - w);
            struct epoll_event ce = {.events = EPOLLOUT | EPOLLRDHUP, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* io_uring                                                            */
/* ------------------------------------------------------------------ */

#ifdef ECHO_FLOOR_URING

#define NBUFS 8192 /* provided buffers per thread (a power of two) */
#define UBUF 2048
#define BGID 1

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

/* user_data: op in bits 0-1, buffer id in bits 2-17, fd from bit 32. */
static uint64_t ud(int op, int bid, int fd)
{
    return (uint64_t)op | (uint64_t)bid << 2 | (uint64_t)(uint32_t)fd << 32;
}

struct uconn {
    int sending;    /* a send is in flight (at most one, for order) */
    int head, tail; /* queued buffers, linked through uring_state.next */
    int closing;    /* recv ended: close once the sends are done */
};

struct uring_state {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    int lfd;
    int nextbid[NBUFS]; /* queue links of buffers waiting to be sent */
    uint32_t len[NBUFS], off[NBUFS];
    struct uconn *conns;
    int recv_starved; /* fds whose multishot recv ended on -ENOBUFS */
    int *starved;
};

static struct io_uring_sqe *sqe_get(struct io_uring *ring)
{
    struct io_uring_sqe *s = io_uring_get_sqe(ring);
    if (!s) {
        io_uring_submit(ring);
        s = io_uring_get_sqe(ring);
    }
    if (!s)
        die("io_uring_get_sqe");
    return s;
}

/* A multishot accept's completion: the new connection ready to read from,
 * or -1 (an error, or a descriptor past the per-connection arrays). */
static int u_accepted(int res)
{
    if (res < 0)
        return -1;
    if (res >= maxfd) {
        close(res);
        return -1;
    }
    nodelay(res);
    return res;
}

static void u_prep_accept(struct io_uring *ring, int lfd)
{
    struct io_uring_sqe *s = sqe_get(ring);
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, ud(OP_ACCEPT, 0, lfd));
}

static void u_arm_recv(struct uring_state *u, int fd)
{
    struct io_uring_sqe *s = sqe_get(&u->ring);
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    io_uring_sqe_set_data64(s, ud(OP_RECV, 0, fd));
}

static void u_send(struct uring_state *u, int fd, int bid)
{
    struct io_uring_sqe *s = sqe_get(&u->ring);
    io_uring_prep_send(s, fd, u->bufs + (size_t)bid * UBUF + u->off[bid], u->len[bid] - u->off[bid],
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, ud(OP_SEND, bid, fd));
    u->conns[fd].sending = 1;
}

static void u_give_back(struct uring_state *u, int bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * UBUF, UBUF, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static void u_close(struct uring_state *u, int fd)
{
    struct uconn *c = &u->conns[fd];
    for (int b = c->head; b >= 0;) {
        int nb = u->nextbid[b];
        u_give_back(u, b);
        b = nb;
    }
    *c = (struct uconn){.head = -1, .tail = -1};
    close(fd);
}

static void *uring_thread(void *arg)
{
    (void)arg;
    struct uring_state *u = calloc(1, sizeof *u);
    if (!u)
        die("calloc");
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                                         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                .cq_entries = 32768};
    int rc = io_uring_queue_init_params(4096, &u->ring, &p);
    if (rc == -EINVAL) { /* an older kernel: without the 6.1 flags */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = 32768};
        rc = io_uring_queue_init_params(4096, &u->ring, &p);
    }
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init_params");
    }
    if (posix_memalign((void **)&u->br, 4096, NBUFS * sizeof(struct io_uring_buf)))
        die("posix_memalign");
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)u->br, .ring_entries = NBUFS, .bgid = BGID};
    if ((rc = io_uring_register_buf_ring(&u->ring, &reg, 0)) < 0) {
        errno = -rc;
        die("io_uring_register_buf_ring");
    }
    if (!(u->bufs = malloc((size_t)NBUFS * UBUF)))
        die("malloc");
    for (int b = 0; b < NBUFS; b++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)b * UBUF, UBUF, (unsigned short)b,
                              io_uring_buf_ring_mask(NBUFS), b);
    io_uring_buf_ring_advance(u->br, NBUFS);
    u->conns = malloc((size_t)maxfd * sizeof *u->conns);
    u->starved = malloc((size_t)maxfd * sizeof *u->starved);
    if (!u->conns || !u->starved)
        die("malloc");
    for (int i = 0; i < maxfd; i++)
        u->conns[i] = (struct uconn){.head = -1, .tail = -1};
    u->lfd = listener();
    u_prep_accept(&u->ring, u->lfd);

    for (;;) {
        rc = io_uring_submit_and_wait(&u->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            errno = -rc;
            die("io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0, returned = 0;
        io_uring_for_each_cqe(&u->ring, head, cqe)
        {
            seen++;
            uint64_t d = cqe->user_data;
            int op = (int)(d & 3), bid = (int)(d >> 2 & 0xffff), fd = (int)(d >> 32);
            int res = cqe->res;
            if (op == OP_ACCEPT) {
                int c = u_accepted(res);
                if (c >= 0)
                    u_arm_recv(u, c);
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    u_prep_accept(&u->ring, u->lfd);
            } else if (op == OP_RECV) {
                struct uconn *c = &u->conns[fd];
                if (res > 0) {
                    int b = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                    u->len[b] = (uint32_t)res;
                    u->off[b] = 0;
                    if (!c->sending)
                        u_send(u, fd, b);
                    else { /* queue behind the send in flight */
                        u->nextbid[b] = -1;
                        if (c->tail >= 0)
                            u->nextbid[c->tail] = b;
                        else
                            c->head = b;
                        c->tail = b;
                    }
                    if (!(cqe->flags & IORING_CQE_F_MORE))
                        u_arm_recv(u, fd);
                } else if (res == -ENOBUFS) {
                    u->starved[u->recv_starved++] = fd; /* re-armed once buffers return */
                } else if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    if (c->sending)
                        c->closing = 1;
                    else
                        u_close(u, fd);
                }
            } else { /* OP_SEND */
                struct uconn *c = &u->conns[fd];
                c->sending = 0;
                if (res > 0 && u->off[bid] + (uint32_t)res < u->len[bid]) {
                    u->off[bid] += (uint32_t)res; /* short: the rest first */
                    u_send(u, fd, bid);
                    continue;
                }
                u_give_back(u, bid);
                returned++;
                if (res < 0) {
                    if (!c->closing)
                        shutdown(fd, SHUT_RDWR); /* ends the recv, which closes */
                    else
                        u_close(u, fd);
                    continue;
                }
                if (c->head >= 0) {
                    int b = c->head;
                    c->head = u->nextbid[b];
                    if (c->head < 0)
                        c->tail = -1;
                    u_send(u, fd, b);
                } else if (c->closing)
                    u_close(u, fd);
            }
        }
        io_uring_cq_advance(&u->ring, seen);
        if (returned && u->recv_starved) {
            for (int i = 0; i < u->recv_starved; i++)
                u_arm_recv(u, u->starved[i]);
            u->recv_starved = 0;
        }
    }
    return NULL;
}

/* uring1: the single-shot variant (header). */
#define U1BUF 2048

static void u1_arm_recv(struct io_uring *ring, char *bufs, int fd)
{
    struct io_uring_sqe *s = sqe_get(ring);
    io_uring_prep_recv(s, fd, bufs + (size_t)fd * U1BUF, U1BUF, 0);
    io_uring_sqe_set_data64(s, ud(OP_RECV, 0, fd));
}

static void *uring1_thread(void *arg)
{
    (void)arg;
    const char *fl = getenv("URING1_FLAGS");
    unsigned flags = IORING_SETUP_CQSIZE;
    if (fl && !strcmp(fl, "coop"))
        flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    else if (fl && !strcmp(fl, "defer"))
        flags |= IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    struct io_uring ring;
    struct io_uring_params p = {.flags = flags, .cq_entries = 32768};
    int rc = io_uring_queue_init_params(4096, &ring, &p);
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init_params");
    }
    /* One buffer per descriptor number: a connection has one recv in flight. */
    char *bufs = malloc((size_t)maxfd * U1BUF);
    if (!bufs)
        die("malloc");
    int lfd = listener();
    u_prep_accept(&ring, lfd);
    for (;;) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            errno = -rc;
            die("io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            uint64_t d = cqe->user_data;
            int op = (int)(d & 3), fd = (int)(d >> 32), res = cqe->res;
            if (op == OP_ACCEPT) {
                int c = u_accepted(res);
                if (c >= 0)
                    u1_arm_recv(&ring, bufs, c);
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    u_prep_accept(&ring, lfd);
                continue;
            }
            if (res <= 0) {
                close(fd);
                continue;
            }
            /* The reply, finished before the next read (a blocking-style
             * write, as weft_write's: the socket is non-blocking, so a
             * full send buffer waits in poll). */
            const char *b = bufs + (size_t)fd * U1BUF;
            int off = 0, bad = 0;
            while (off < res) {
                ssize_t w = send(fd, b + off, (size_t)(res - off), MSG_NOSIGNAL);
                if (w > 0)
                    off += (int)w;
                else if (w < 0 && errno == EAGAIN) {
                    struct pollfd pf = {.fd = fd, .events = POLLOUT};
                    poll(&pf, 1, -1);
                } else if (w < 0 && errno == EINTR)
                    continue;
                else {
                    bad = 1;
                    break;
                }
            }
            if (bad)
                close(fd);
            else
                u1_arm_recv(&ring, bufs, fd);
        }
        io_uring_cq_advance(&ring, seen);
    }
    return NULL;
}
#endif

int main(int argc, char **argv)
{
    if (argc < 3 ||
        (strcmp(argv[1], "epoll") && strcmp(argv[1], "uring") && strcmp(argv[1], "uring1"))) {
        fprintf(stderr, "usage: echo-floor epoll|uring|uring1 PORT   (env THREADS, default 2)\n");
        return 2;
    }
#ifndef ECHO_FLOOR_URING
    if (strcmp(argv[1], "epoll")) {
        fprintf(stderr, "echo-floor: built without liburing\n");
        return 77;
    }
#endif
    port = atoi(argv[2]);
    int threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 2;
    if (port <= 0 || port > 65535 || threads < 1) {
        fprintf(stderr, "echo-floor: bad port or THREADS\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    maxfd = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
    signal(SIGPIPE, SIG_IGN);
    void *(*fn)(void *) = ep_thread;
#ifdef ECHO_FLOOR_URING
    if (!strcmp(argv[1], "uring"))
        fn = uring_thread;
    else if (!strcmp(argv[1], "uring1"))
        fn = uring1_thread;
#endif
    pthread_t th[64];
    if (threads > 64)
        threads = 64;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, fn, NULL))
            die("pthread_create");
    pthread_join(th[0], NULL);
    return 0;
}
