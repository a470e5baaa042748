/*
 * The poller interface: one per worker, the very wait the worker parks in.
 * CMake picks the implementation (io/poll_epoll.c on Linux); the scheduler
 * and the I/O layer see only these calls.
 */
#ifndef WEFT_POLL_H
#define WEFT_POLL_H

#include <time.h>

#include "../runtime/internal.h"

/* weft_run, before the worker starts: its poller and its wake-up channel. */
int  weft__poll_init(weft__worker *w);
void weft__poll_free(weft__worker *w);
/* Any thread: makes a poll_wait of w return (or the next one not block). */
void weft__poll_wake(weft__worker *w);
/* Owner worker, or any worker helping a blocked one.  Waits up to timeout
 * (NULL: until woken; zero: no wait) and hands each ready descriptor to
 * weft__netpoll_ready.  Returns the number of descriptor events. */
int  weft__poll_wait(weft__worker *w, const struct timespec *timeout);
/* Any thread: watches fd for readability and writability (edge-triggered)
 * in w's poller; fd is given back to weft__netpoll_ready.  0 or -errno
 * (-EPERM: fd cannot be polled, a regular file). */
int  weft__poll_add(weft__worker *w, int fd);
/* Any thread: stops watching fd in w's poller. */
int  weft__poll_del(weft__worker *w, int fd);

/* io/netpoll.c: readiness of fd.  The poller hands back the fd number, not a
 * pointer to its state: the state is found again through the fd table's
 * acquire loads, so the polling worker (maybe not the one that registered
 * the fd) is ordered after the state's allocation by C11 atomics that
 * ThreadSanitizer sees; a pointer carried through the kernel is not. */
enum { WEFT__POLL_IN = 1, WEFT__POLL_OUT = 2, WEFT__POLL_ERR = 4, WEFT__POLL_HUP = 8 };
void weft__netpoll_ready(weft__runtime *rt, int fd, int events);

#endif
