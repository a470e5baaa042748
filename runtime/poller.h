/*
 * The poller interface.  One shared poller per runtime watches every
 * descriptor; the worker that parks first "drives" it (waits in it), the
 * other parked workers sleep on their own wake-up channel (sched.c essay,
 * section 9, says why and how the driver is handed over).  CMake picks the
 * implementation (runtime/os/linux/poll_epoll.c on Linux); the scheduler and the I/O
 * layer see only these calls.
 */
#ifndef WEFT_POLL_H
#define WEFT_POLL_H

#include <time.h>

#include "internal.h"

/* weft_run, before the workers start: the shared poller and the driver's
 * wake-up channel (rt->poller, the backend's own struct; on failure
 * weft__poll_free releases what was made). */
int  weft__poll_init(weft__runtime *rt);
void weft__poll_free(weft__runtime *rt);
/* worker_new: w's own wake-up channel, where it sleeps while another
 * worker drives (w->sleeper, the backend's own struct). */
int  weft__poll_worker_init(weft__worker *w);
void weft__poll_worker_free(weft__worker *w);
/* Any thread: makes the driver's wait return (or its next one not block). */
void weft__poll_wake_driver(weft__runtime *rt);
/* Any thread: makes w's sleep return (or its next one not block). */
void weft__poll_wake_worker(weft__worker *w);
/* The driver only (the worker that holds rt->driver).  Waits up to timeout
 * (NULL: until woken; zero: no wait) and hands each ready descriptor to
 * weft__netpoll_ready.  Returns the number of descriptor events. */
int  weft__poll_drive(weft__runtime *rt, const struct timespec *timeout);
/* Owner worker only: sleeps until weft__poll_wake_worker(w) or timeout. */
void weft__poll_sleep(weft__worker *w, const struct timespec *timeout);
/* Any thread: watches fd for readability and writability (edge-triggered);
 * fd is given back to weft__netpoll_ready.  0 or -errno (-EPERM: fd cannot
 * be polled, a regular file). */
int  weft__poll_add(weft__runtime *rt, int fd);
/* Any thread: stops watching fd. */
int  weft__poll_del(weft__runtime *rt, int fd);
/* Owner worker only: adds the io_uring descriptor of worker `worker`
 * (runtime/os/linux/aio_uring.c), disarmed.  0 or -errno. */
int  weft__poll_add_ring(weft__runtime *rt, int fd, unsigned worker);
/* Any thread: arms that descriptor for one report, level-triggered: the
 * next poll that finds completions on the ring (at once if some wait
 * already) calls weft__aio_ready(rt, worker) once, and the descriptor is
 * disarmed again.  So completions done inside io_uring_enter, which the
 * submitter reaps itself, wake no parked driver. */
void weft__poll_arm_ring(weft__runtime *rt, int fd, unsigned worker);

/* runtime/netpoll.c: readiness of fd.  The poller hands back the fd number, not a
 * pointer to its state: the state is found again through the fd table's
 * acquire loads, so the polling worker (maybe not the one that registered
 * the fd) is ordered after the state's allocation by C11 atomics that
 * ThreadSanitizer sees; a pointer carried through the kernel is not. */
enum { WEFT__POLL_IN = 1, WEFT__POLL_OUT = 2, WEFT__POLL_ERR = 4, WEFT__POLL_HUP = 8 };
void weft__netpoll_ready(weft__runtime *rt, int fd, int events);

#endif
