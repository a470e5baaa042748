/* Streams (io/stream.c).  Internal layout. */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include "../runtime/internal.h"
#include "../runtime/netpoll.h"

struct weft_stream {
    int fd;
    bool eof;
    char *rbuf;
    size_t rcap, rpos, rend;
    bool discarding;          /* readline is skipping a too-long line */
    char *wbuf;
    size_t wcap, wlen;
    size_t woff;              /* bytes of wbuf already sent by an interrupted drain */
};

/* net.c: send(2) on a socket, write(2) on anything else (the fd state
 * remembers an ENOTSOCK); one try for weft__fd_call, between op_enter and
 * op_exit: bytes sent or -errno.  WEFT_FAULTS's short_write, eintr and reset
 * are injected here (runtime/faults.c). */
ssize_t weft__send_or_write(weft__fdcall *c, const void *buf, size_t n);

#endif
