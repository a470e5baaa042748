/*
 * Sockets: TCP (listen, accept, connect), UDP, Unix domain sockets, and the
 * read / write / wait primitives every stream call is made of.
 *
 * Every call tries its non-blocking syscall first and waits for readiness
 * only on EAGAIN (runtime/netpoll.c explains why no edge is lost).  Descriptors
 * weft returns are non-blocking and close-on-exec; accepted and connected
 * TCP sockets have TCP_NODELAY set (as Go does), since a line protocol that
 * writes then waits would otherwise stall on Nagle's algorithm.
 *
 * Name resolution never blocks a worker: numeric hosts and ports are parsed
 * in place; anything else is resolved by getaddrinfo on the runtime's own
 * blocking pool (not the users' one: see runtime/blocking.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../runtime/netpoll.h"
#include "../runtime/poller.h"
#include "stream.h"

/* ------------------------------------------------------------------ */
/* Name resolution                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *host, *port;
    struct addrinfo hints;
    struct addrinfo *res;
    int rc;
} resolve_req;

static void *resolve_fn(void *arg)
{
    resolve_req *r = arg;
    r->rc = getaddrinfo(r->host, r->port, &r->hints, &r->res);
    return NULL;
}

static int gai_errno(int rc)
{
    switch (rc) {
    case 0: return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_SERVICE: return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return errno ? -errno : -EIO;
    case EAI_FAMILY: return -EAFNOSUPPORT;
    default: return -EINVAL;
    }
}

/* May suspend.  Resolves host:port (host NULL: the wildcard when passive, the
 * loopback otherwise) for sockets of the given type.  0 with *res set, or
 * -ENOENT (no such name), -EINVAL, -EAGAIN, -ECANCELED, -ENOMEM. */
int weft__resolve(const char *host, const char *port, int socktype, bool passive,
                  struct addrinfo **res)
{
    if (!port)
        return -EINVAL;
    resolve_req r = {.host = host, .port = port};
    r.hints.ai_family = AF_UNSPEC;
    r.hints.ai_socktype = socktype;
    r.hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_NUMERICHOST | AI_NUMERICSERV;
    r.rc = getaddrinfo(host, port, &r.hints, &r.res);
    if (r.rc == 0) {
        *res = r.res;
        return 0;
    }
    if (r.rc != EAI_NONAME)
        return gai_errno(r.rc);
    /* Not numeric: a real lookup, off the workers. */
    r.hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_ADDRCONFIG;
    if (weft__cur_task()) {
        int rc = weft__sys_to_thread(resolve_fn, &r, NULL);
        if (rc < 0) {
            if (r.res)
                freeaddrinfo(r.res);
            return rc;
        }
    } else {
        resolve_fn(&r);
    }
    if (r.rc != 0)
        return gai_errno(r.rc);
    *res = r.res;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */
/* ------------------------------------------------------------------ */

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_on(const struct sockaddr *sa, socklen_t len, int type, int backlog)
{
    int fd = weft__os_socket(sa->sa_family, type);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, sa, len) < 0 || (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
        int e = -errno;
        close(fd);
        return e;
    }
    weft__fd_fresh(fd);
    return fd;
}

/* A socket bound (and, for streams, listening) on the first address of
 * host:port that works, IPv4 first for a wildcard host, as most servers. */
static int bind_addrs(const char *host, const char *port, int type, int backlog)
{
    struct addrinfo *res;
    int rc = weft__resolve(host, port, type, true, &res);
    if (rc < 0)
        return rc;
    int fd = -EADDRNOTAVAIL;
    for (int pass = 0; pass < 2 && fd < 0; pass++)
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
            if ((pass == 0) == (a->ai_family == AF_INET))
                fd = listen_on(a->ai_addr, a->ai_addrlen, type, backlog);
    freeaddrinfo(res);
    return fd;
}

int weft_tcp_listen(const char *host, const char *port, int backlog)
{
    return bind_addrs(host, port, SOCK_STREAM, backlog <= 0 ? SOMAXCONN : backlog);
}

int weft_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static ssize_t try_accept(weft__fdcall *c, void *arg)
{
    (void)arg;
    ssize_t f = weft__fault_io(c, -1, NULL);  /* WEFT_FAULTS=eintr */
    if (f < 0)
        return f;
    int fd = weft__os_accept(c->op.fd);
    if (fd >= 0) {
        if (weft__fault(WEFT__FAULT_ACCEPT)) {
            /* WEFT_FAULTS=accept: the connection aborted, as a client's reset
             * before the accept would (runtime/faults.c). */
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            close(fd);
            return -ECONNABORTED;
        }
        return fd;
    }
    /* ECONNABORTED: that connection is gone; try the next at once. */
    return errno == ECONNABORTED ? -EINTR : -errno;
}

int weft_accept(int listen_fd, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    weft__fdcall c = {0};
    if ((rc = weft__op_begin(&c.op, listen_fd)) < 0)
        return rc;
    ssize_t fd = weft__fd_call(&c, WEFT__POLL_IN, deadline, try_accept, NULL);
    if (fd >= 0) {
        weft__fd_fresh((int)fd);
        nodelay((int)fd);
    }
    return (int)fd;
}

typedef struct {
    const struct sockaddr *sa;
    socklen_t len;
    bool backlog_full;  /* a Unix listener's queue was full: not connecting */
} connect_req;

/* The first try connects; a later one (after a writable edge) asks whether
 * that connect has finished: SO_ERROR says how it failed, getpeername
 * whether it succeeded; neither yet means wait again. */
static ssize_t try_connect(weft__fdcall *c, void *arg)
{
    connect_req *r = arg;
    if (!r->sa) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->op.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            return -errno;
        if (err)
            return -err;
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (getpeername(c->op.fd, (struct sockaddr *)&peer, &pl) == 0)
            return 0;
        return -EAGAIN;  /* not yet */
    }
    const struct sockaddr *sa = r->sa;
    r->sa = NULL;  /* from now on, only ask */
    if (connect(c->op.fd, sa, r->len) == 0)
        return 0;
    int e = errno;
    if (e == EINPROGRESS)
        return -EAGAIN;  /* wait for writability, then ask */
    if (e == EAGAIN) {
        /* A Unix socket whose listener's queue is full: nothing is in
         * progress, no edge will come.  -EAGAIN to the caller (as Go). */
        r->backlog_full = true;
        return -ECONNREFUSED;
    }
    return -e;
}

/* May suspend.  Connects a fresh non-blocking socket to one address. */
static int connect_one(const struct sockaddr *sa, socklen_t len, int type, int64_t deadline)
{
    int fd = weft__os_socket(sa->sa_family, type);
    if (fd < 0)
        return -errno;
    weft__fd_fresh(fd);
    weft__fdcall c = {0};
    connect_req r = {sa, len, false};
    int rc = weft__op_begin(&c.op, fd);
    if (rc == 0)
        rc = (int)weft__fd_call(&c, WEFT__POLL_OUT, deadline, try_connect, &r);
    if (r.backlog_full)
        rc = -EAGAIN;
    if (rc < 0) {
        weft_close(fd);
        return rc;
    }
    if (sa->sa_family != AF_UNIX && type == SOCK_STREAM)
        nodelay(fd);
    return fd;
}

/* May suspend.  A socket connected to the first address of host:port that
 * accepts; a timeout or cancellation ends the search. */
static int connect_addrs(const char *host, const char *port, int type, int64_t deadline,
                         int none)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    struct addrinfo *res;
    if ((rc = weft__resolve(host, port, type, false, &res)) < 0)
        return rc;
    int fd = none;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = connect_one(a->ai_addr, a->ai_addrlen, type, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT || fd == -ECANCELED)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

int weft_tcp_connect(const char *host, const char *port, int64_t deadline)
{
    return connect_addrs(host, port, SOCK_STREAM, deadline, -ECONNREFUSED);
}

/* Does a read shorter than asked prove the descriptor drained?  Only on a
 * TCP socket, where a read takes everything queued up to its size.  A
 * datagram or seqpacket read takes one message (more may be queued behind
 * it, with no new edge to come), a tty one line, and a Unix stream read
 * stops at a message that carries descriptors.  A pipe cannot tell: its
 * writer may have made it a packet pipe (O_DIRECT on the write end only),
 * and then each read returns one packet.  Learnt once per file (two
 * system calls at most), kept in the fd state until the number gets a new
 * file.  Called between op_enter and op_exit (the descriptor cannot be
 * closed meanwhile). */
static bool short_read_drains(weft__fdop *op)
{
    /* relaxed: a cache of what the kernel says of the file; a racing
     * classification stores the same answer. */
    uint8_t k = atomic_load_explicit(&op->st->rdkind, memory_order_relaxed);
    if (k == WEFT__RD_UNKNOWN) {
        k = WEFT__RD_MESSAGES;
        int type = 0, dom = 0;
        socklen_t len = sizeof type;
        int proto = 0;
        if (getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM) {
            len = sizeof dom;
            socklen_t plen = sizeof proto;
            /* TCP (or MPTCP) itself: an SCTP stream socket keeps message
             * boundaries, one message per read. */
            if (getsockopt(op->fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
                (dom == AF_INET || dom == AF_INET6) &&
                getsockopt(op->fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) == 0 &&
                (proto == IPPROTO_TCP || proto == 262 /* IPPROTO_MPTCP */))
                k = WEFT__RD_DRAINS;
        }
        atomic_store_explicit(&op->st->rdkind, k, memory_order_relaxed);
    }
    return k == WEFT__RD_DRAINS;
}

typedef struct {
    void *buf;
    size_t n;
    const void *cbuf;
    int flags;
} io_req;

/* recv on a socket, read(2) on anything else: recv said ENOTSOCK once, and
 * the fd state remembers it (relaxed: a hint; a wrong guess costs one
 * ENOTSOCK). */
static ssize_t recv_or_read(weft__fdcall *c, void *buf, size_t n)
{
    weft__fdstate *st = c->op.st;
    ssize_t r;
    if (atomic_load_explicit(&st->notsock, memory_order_relaxed)) {
        r = read(c->op.fd, buf, n);
    } else {
        r = recv(c->op.fd, buf, n, 0);
        if (r < 0 && errno == ENOTSOCK) {
            atomic_store_explicit(&st->notsock, true, memory_order_relaxed);
            r = read(c->op.fd, buf, n);
        }
    }
    return r < 0 ? -errno : r;
}

ssize_t weft__send_or_write(weft__fdcall *c, const void *buf, size_t n)
{
    weft__fdstate *st = c->op.st;
    ssize_t r = weft__fault_io(c, WEFT__FAULT_SHORT_WRITE, &n);  /* WEFT_FAULTS */
    if (r < 0)
        return r;
    if (atomic_load_explicit(&st->notsock, memory_order_relaxed)) {
        r = write(c->op.fd, buf, n);
    } else {
        /* No SIGPIPE: a closed peer is -EPIPE. */
        r = send(c->op.fd, buf, n, WEFT__OS_MSG_NOSIGNAL);
        if (r < 0 && errno == ENOTSOCK) {
            atomic_store_explicit(&st->notsock, true, memory_order_relaxed);
            r = write(c->op.fd, buf, n);
        }
    }
    return r < 0 ? -errno : r;
}

static ssize_t try_read(weft__fdcall *c, void *arg)
{
    io_req *r = arg;
    weft__fdstate *st = c->op.st;
    /* A read known to say EAGAIN is not made, and only before the first
     * wait: after one the read is always tried (a descriptor epoll refuses
     * is "always ready", and must not loop).  relaxed: a hint; rseq, loaded
     * with acquire in op_enter, decides: an edge after the short read moved
     * it past seq, so the hint no longer matches. */
    if (!c->waited &&
        atomic_load_explicit(&st->rdrained, memory_order_relaxed) == c->seq + 1 &&
        !atomic_load_explicit(&st->hup, memory_order_relaxed))
        return -EAGAIN;
    size_t n = r->n;
    ssize_t got = weft__fault_io(c, WEFT__FAULT_SHORT_READ, &n);  /* WEFT_FAULTS */
    if (got < 0)
        return got;
    got = recv_or_read(c, r->buf, n);
    /* Short of what was asked of the kernel (n, cut by a fault or not). */
    if (got > 0 && (size_t)got < n && short_read_drains(&c->op))
        atomic_store_explicit(&st->rdrained, c->seq + 1, memory_order_relaxed);
    return got;
}

ssize_t weft_read(int fd, void *buf, size_t n, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (fd < 0)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    if (n == 0)
        return 0;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    weft__fdcall c = {0};
    if ((rc = weft__op_begin(&c.op, fd)) < 0)
        return rc;
    io_req r = {.buf = buf, .n = n};
    return weft__fd_call(&c, WEFT__POLL_IN, deadline, try_read, &r);
}

static ssize_t try_write(weft__fdcall *c, void *arg)
{
    io_req *r = arg;
    return weft__send_or_write(c, r->cbuf, r->n);
}

ssize_t weft_write(int fd, const void *buf, size_t n, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (fd < 0)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    weft__fdcall c = {0};
    if ((rc = weft__op_begin(&c.op, fd)) < 0)
        return rc;
    size_t done = 0;
    while (done < n) {
        io_req r = {.cbuf = (const char *)buf + done, .n = n - done};
        ssize_t w = weft__fd_call(&c, WEFT__POLL_OUT, deadline, try_write, &r);
        if (w < 0)
            return w;
        done += (size_t)w;
    }
    return (ssize_t)n;
}

/* ------------------------------------------------------------------ */
/* UDP and Unix domain sockets (extensions)                            */
/* ------------------------------------------------------------------ */

int weft_udp_bind(const char *host, const char *port)
{
    return bind_addrs(host, port, SOCK_DGRAM, 0);
}

int weft_udp_connect(const char *host, const char *port, int64_t deadline)
{
    return connect_addrs(host, port, SOCK_DGRAM, deadline, -EADDRNOTAVAIL);
}

typedef struct {
    void *buf;
    const void *cbuf;
    size_t n;
    struct sockaddr *from;
    socklen_t *fromlen;
    const struct sockaddr *to;
    socklen_t tolen;
} dgram_req;

static ssize_t try_recvfrom(weft__fdcall *c, void *arg)
{
    dgram_req *r = arg;
    ssize_t got = weft__fault_io(c, -1, NULL);  /* WEFT_FAULTS=eintr */
    if (got < 0)
        return got;
    got = recvfrom(c->op.fd, r->buf, r->n, 0, r->from, r->fromlen);
    return got < 0 ? -errno : got;
}

ssize_t weft_recvfrom(int fd, void *buf, size_t n, struct sockaddr *from, socklen_t *fromlen,
                      int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (fd < 0)
        return -EBADF;
    weft__fdcall c = {0};
    if ((rc = weft__op_begin(&c.op, fd)) < 0)
        return rc;
    dgram_req r = {.buf = buf, .n = n, .from = from, .fromlen = fromlen};
    return weft__fd_call(&c, WEFT__POLL_IN, deadline, try_recvfrom, &r);
}

static ssize_t try_sendto(weft__fdcall *c, void *arg)
{
    dgram_req *r = arg;
    ssize_t sent = weft__fault_io(c, -1, NULL);  /* WEFT_FAULTS=eintr */
    if (sent < 0)
        return sent;
    sent = sendto(c->op.fd, r->cbuf, r->n, WEFT__OS_MSG_NOSIGNAL, r->to, r->tolen);
    return sent < 0 ? -errno : sent;
}

ssize_t weft_sendto(int fd, const void *buf, size_t n, const struct sockaddr *to,
                    socklen_t tolen, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (fd < 0)
        return -EBADF;
    weft__fdcall c = {0};
    if ((rc = weft__op_begin(&c.op, fd)) < 0)
        return rc;
    dgram_req r = {.cbuf = buf, .n = n, .to = to, .tolen = tolen};
    return weft__fd_call(&c, WEFT__POLL_OUT, deadline, try_sendto, &r);
}

static int unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sun->sun_path)
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int weft_unix_listen(const char *path, int backlog)
{
    struct sockaddr_un sun;
    socklen_t len;
    int rc = unix_addr(path, &sun, &len);
    if (rc < 0)
        return rc;
    return listen_on((struct sockaddr *)&sun, len, SOCK_STREAM, backlog > 0 ? backlog : SOMAXCONN);
}

int weft_unix_connect(const char *path, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    struct sockaddr_un sun;
    socklen_t len;
    if ((rc = unix_addr(path, &sun, &len)) < 0)
        return rc;
    return connect_one((struct sockaddr *)&sun, len, SOCK_STREAM, deadline);
}
