/* Streams (io/stream.c).  Internal layout. */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include "../runtime/internal.h"

struct weft_stream {
    int fd;
    bool eof;
    char *rbuf;
    size_t rcap, rpos, rend;
    char *wbuf;
    size_t wcap, wlen;
};

#endif
