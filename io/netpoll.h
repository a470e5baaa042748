/* Descriptor readiness (io/netpoll.c).  Internal. */
#ifndef WEFT_NETPOLL_H
#define WEFT_NETPOLL_H

#include "../sync/waitq.h"

typedef struct weft__fdstate {
    weft__spin lock;
    int fd;
    weft__worker *poller;     /* whose poller watches it; NULL: none */
    bool unpollable;          /* epoll refused it (regular file): always ready */
    uint32_t gen;             /* bumped by weft_close: waiters get -EBADF */
    _Atomic uint32_t rseq;    /* bumped at each readable edge */
    _Atomic uint32_t wseq;    /* bumped at each writable edge */
    weft__waitq rq, wq;       /* coroutines waiting to read / write */
} weft__fdstate;

weft__fdstate *weft__fd_state(weft__runtime *rt, int fd, bool create);
/* A descriptor weft just created: forget what an earlier file of the same
 * number left (closed without weft_close). */
void weft__fd_fresh(int fd);
uint32_t weft__io_seq(int fd, int dir);
int weft__io_wait(int fd, int dir, uint32_t seq, int64_t deadline);

#endif
