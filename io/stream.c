/*
 * Streams: a descriptor with a read buffer and a write buffer (asyncio's
 * StreamReader and StreamWriter in one object).
 *
 * The read buffer is a window [rpos, rend) of WEFT__STREAM_BUF bytes that
 * readline, read and readexactly consume; the write buffer collects
 * weft_stream_write's bytes until weft_stream_drain (or a full buffer) sends
 * them.  A stream is used by one coroutine at a time (as asyncio's): two
 * coroutines reading the same stream at once is a usage error, not a race the
 * stream resolves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../runtime/poller.h"
#include "stream.h"

#define WEFT__STREAM_BUF (64 * 1024)

weft_stream *weft_stream_new(int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    weft_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->rbuf = malloc(WEFT__STREAM_BUF)) || !(s->wbuf = malloc(WEFT__STREAM_BUF))) {
        if (s) {
            free(s->rbuf);
            free(s);
        }
        errno = ENOMEM;
        return NULL;
    }
    s->fd = fd;
    s->rcap = s->wcap = WEFT__STREAM_BUF;
    return s;
}

weft_stream *weft_open_connection(const char *host, const char *port, int64_t deadline)
{
    int fd = weft_tcp_connect(host, port, deadline);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    weft_stream *s = weft_stream_new(fd);
    if (!s)
        weft_close(fd);
    return s;
}

int weft_stream_fd(weft_stream *s)
{
    return s ? s->fd : -EINVAL;
}

/* May suspend.  Reads more into the buffer (compacting it first).  >0 bytes
 * added, 0 at end of stream, or -errno. */
static ssize_t fill(weft_stream *s, int64_t deadline)
{
    if (s->eof)
        return 0;
    if (s->rpos > 0) {
        memmove(s->rbuf, s->rbuf + s->rpos, s->rend - s->rpos);
        s->rend -= s->rpos;
        s->rpos = 0;
    }
    if (s->rend == s->rcap)
        return -ENOBUFS;
    ssize_t n = weft_read(s->fd, s->rbuf + s->rend, s->rcap - s->rend, deadline);
    if (n > 0)
        s->rend += (size_t)n;
    else if (n == 0)
        s->eof = true;
    return n;
}

ssize_t weft_stream_readline(weft_stream *s, char *buf, size_t cap, int64_t deadline)
{
    /* Sticky: a cancelled caller gets -ECANCELED even with data buffered. */
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (!s || !buf || cap == 0)
        return -EINVAL;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    /* A line too long is skipped through its '\n', even across calls that
     * time out meanwhile (s->discarding). */
    bool discarding = s->discarding;
    for (;;) {
        char *start = s->rbuf + s->rpos;
        size_t avail = s->rend - s->rpos;
        char *nl = memchr(start, '\n', avail);
        if (nl) {
            size_t len = (size_t)(nl - start) + 1;
            s->rpos += len;
            s->discarding = false;
            if (discarding || len > cap - 1)
                return -EMSGSIZE;
            memcpy(buf, start, len);
            buf[len] = '\0';
            return (ssize_t)len;
        }
        if (discarding || avail > cap - 1) {
            discarding = true;  /* cannot fit: drop what is buffered of it */
            s->rpos = s->rend;
            avail = 0;
        }
        if (s->eof) {
            s->discarding = false;
            if (discarding)
                return -EMSGSIZE;
            if (avail == 0)
                return 0;
            memcpy(buf, start, avail);  /* the last line, without '\n' */
            buf[avail] = '\0';
            s->rpos = s->rend;
            return (ssize_t)avail;
        }
        s->discarding = discarding;
        ssize_t n = fill(s, deadline);
        if (n == -ENOBUFS) {
            discarding = true;  /* longer than the stream's own buffer */
            s->rpos = s->rend;
            continue;
        }
        if (n < 0)
            return n;
    }
}

ssize_t weft_stream_read(weft_stream *s, void *buf, size_t n, int64_t deadline)
{
    /* Sticky: a cancelled caller gets -ECANCELED even with data buffered. */
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (!s || (!buf && n))
        return -EINVAL;
    if (n == 0)
        return 0;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    size_t avail = s->rend - s->rpos;
    if (avail == 0) {
        if (s->eof)
            return 0;
        if (n >= s->rcap)
            return weft_read(s->fd, buf, n, deadline);  /* large: no copy */
        ssize_t r = fill(s, deadline);
        if (r <= 0)
            return r;
        avail = s->rend - s->rpos;
    }
    if (n > avail)
        n = avail;
    memcpy(buf, s->rbuf + s->rpos, n);
    s->rpos += n;
    return (ssize_t)n;
}

ssize_t weft_stream_readexactly(weft_stream *s, void *buf, size_t n, int64_t deadline)
{
    /* Sticky: a cancelled caller gets -ECANCELED even with data buffered. */
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (!s || (!buf && n))
        return -EINVAL;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    if (n <= s->rcap) {
        /* Gather all n in the buffer first: on a timeout or cancellation
         * the bytes that came stay for the next call. */
        while (s->rend - s->rpos < n) {
            ssize_t r = s->eof ? 0 : fill(s, deadline);
            if (r < 0)
                return r;
            if (r == 0) {
                s->rpos = s->rend;  /* as asyncio: the partial read is consumed */
                return -EPIPE;
            }
        }
        memcpy(buf, s->rbuf + s->rpos, n);
        s->rpos += n;
        return (ssize_t)n;
    }
    /* Larger than the buffer: read straight into buf (on an error, what was
     * read so far is consumed: documented in weft/io.h). */
    size_t got = 0;
    while (got < n) {
        ssize_t r = weft_stream_read(s, (char *)buf + got, n - got, deadline);
        if (r < 0)
            return r;
        if (r == 0)
            return -EPIPE;
        got += (size_t)r;
    }
    return (ssize_t)n;
}

static ssize_t try_drain(weft__fdcall *c, void *arg)
{
    weft_stream *s = arg;
    return weft__send_or_write(c, s->wbuf + s->woff, s->wlen - s->woff);
}

int weft_stream_drain(weft_stream *s, int64_t deadline)
{
    int rc = weft__suspend_enter(NULL);
    if (rc < 0)
        return rc;
    if (!s)
        return -EINVAL;
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    /* Sends from woff, and remembers how far it got: a drain that times out
     * part-way and is retried sends every byte exactly once. */
    weft__fdcall c = {0};
    if (s->woff < s->wlen && (rc = weft__op_begin(&c.op, s->fd)) < 0)
        return rc;
    while (s->woff < s->wlen) {
        ssize_t r = weft__fd_call(&c, WEFT__POLL_OUT, deadline, try_drain, s);
        if (r < 0)
            return (int)r;
        s->woff += (size_t)r;
    }
    s->wlen = s->woff = 0;
    return 0;
}

int weft_stream_write(weft_stream *s, const void *buf, size_t n)
{
    if (!s || (!buf && n))
        return -EINVAL;
    if (s->wlen + n > s->wcap) {
        /* Full: flush (a suspension point), then buffer or send directly. */
        int rc = weft_stream_drain(s, WEFT_FOREVER);
        if (rc < 0)
            return rc;
        if (n > s->wcap) {
            ssize_t r = weft_write(s->fd, buf, n, WEFT_FOREVER);
            return r < 0 ? (int)r : 0;
        }
    }
    memcpy(s->wbuf + s->wlen, buf, n);
    s->wlen += n;
    return 0;
}

int weft_stream_close(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    /* Flush what can go without waiting: closing never blocks on a peer. */
    size_t off = s->woff;
    while (off < s->wlen) {
        ssize_t r = send(s->fd, s->wbuf + off, s->wlen - off, WEFT__OS_MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && errno == ENOTSOCK)
            r = write(s->fd, s->wbuf + off, s->wlen - off);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        off += (size_t)r;
    }
    int rc = weft_close(s->fd);
    free(s->rbuf);
    free(s->wbuf);
    free(s);
    return rc;
}
