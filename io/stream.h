/* Streams (io/stream.c).  Internal layout. */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include "../runtime/internal.h"

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

#endif
