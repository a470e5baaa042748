/*
 * Servers (asyncio.start_server): a listening socket, an acceptor task, and
 * one handler task per connection, all owned by the server.
 *
 * The acceptor runs from weft_start_server on; weft_serve_forever only waits
 * until the server is closed.  Handlers live in a task group that releases
 * each one as it finishes, so a long-running server does not accumulate
 * finished tasks.  Running out of descriptors (EMFILE, ENFILE) or memory
 * makes the acceptor back off (5 ms doubling to 1 s) and retry: it never
 * stops accepting for good and never spins.
 *
 * weft_server_close is synchronous: when it returns the acceptor has ended,
 * the listening socket is closed, and every handler has been cancelled and
 * has returned (its stream closed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "stream.h"

struct weft_server {
    int lfd;
    int port;
    weft_handler handler;
    void *ctx;
    weft_group *handlers;
    weft_task *acceptor;
    weft_event closed;
    _Atomic int serving;
};

typedef struct {
    weft_server *srv;
    weft_stream *stream;
} conn;

static void *handler_main(void *arg)
{
    conn *c = arg;
    c->srv->handler(c->stream, c->srv->ctx);
    weft_stream_close(c->stream);
    free(c);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    weft_server *srv = arg;
    int64_t backoff = 0;
    for (;;) {
        int fd = weft_accept(srv->lfd, WEFT_FOREVER);
        if (fd == -ECANCELED || fd == -EBADF || fd == -EINVAL)
            break;
        if (fd == -ECONNABORTED)
            continue;  /* that client is gone (WEFT_FAULTS=accept): the next one */
        if (fd < 0) {
            /* Out of descriptors or memory, or a transient error: wait and
             * retry.  Other connections keep being served meanwhile. */
            backoff = backoff ? backoff * 2 : 5 * WEFT_MS;
            if (backoff > WEFT_SEC)
                backoff = WEFT_SEC;
            if (weft_sleep(backoff) == -ECANCELED)
                break;
            continue;
        }
        backoff = 0;
        conn *c = malloc(sizeof *c);
        weft_stream *s = c ? weft_stream_new(fd) : NULL;
        if (!s) {
            free(c);
            weft_close(fd);
            continue;
        }
        c->srv = srv;
        c->stream = s;
        if (!weft_group_spawn(srv->handlers, handler_main, c)) {
            weft_stream_close(s);
            free(c);
        }
    }
    return NULL;
}

weft_server *weft_start_server(const char *host, const char *port, weft_handler handler,
                               void *ctx)
{
    if (!handler || !port) {
        errno = EINVAL;
        return NULL;
    }
    if (!weft__cur_rt()) {
        errno = EPERM;
        return NULL;
    }
    int lfd = weft_tcp_listen(host, port, 0);
    if (lfd < 0) {
        errno = -lfd;
        return NULL;
    }
    weft_server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->handlers = weft_group_new())) {
        free(srv);
        weft_close(lfd);
        errno = ENOMEM;
        return NULL;
    }
    weft__group_autoreap(srv->handlers);
    srv->lfd = lfd;
    srv->port = weft_local_port(lfd);
    srv->handler = handler;
    srv->ctx = ctx;
    weft_event_init(&srv->closed);
    srv->acceptor = weft_spawn_named("weft server accept", acceptor_main, srv);
    if (!srv->acceptor) {
        int e = errno;
        weft_close(lfd);
        free(srv->handlers);
        free(srv);
        errno = e;
        return NULL;
    }
    return srv;
}

int weft_server_port(weft_server *srv)
{
    return srv ? srv->port : -EINVAL;
}

int weft_serve_forever(weft_server *srv)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (!srv)
        return -EINVAL;
    atomic_fetch_add_explicit(&srv->serving, 1, memory_order_acq_rel);
    rc = weft_event_wait(&srv->closed, WEFT_FOREVER);
    atomic_fetch_sub_explicit(&srv->serving, 1, memory_order_acq_rel);
    return rc;
}

int weft_server_close(weft_server *srv)
{
    if (!weft__cur_task())
        return -EPERM;
    if (!srv)
        return -EINVAL;
    /* A closing call: cancellation does not skip it (as weft_group_free). */
    weft_cancel(srv->acceptor);
    weft_join(srv->acceptor, NULL);
    weft_close(srv->lfd);
    weft_group_free(srv->handlers);
    weft_event_set(&srv->closed);
    /* serve_forever callers are leaving the event: wait until they have. */
    while (atomic_load_explicit(&srv->serving, memory_order_acquire))
        weft__yield_now();
    weft_event_destroy(&srv->closed);
    free(srv);
    return 0;
}
