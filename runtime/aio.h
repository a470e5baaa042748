/*
 * File reads and writes handed to the kernel without a blocking thread
 * (internal).  CMake picks the implementation: runtime/os/linux/aio_uring.c (io_uring,
 * Linux) or runtime/aio_none.c (always "not available").  io/file.c calls
 * weft__aio_rw first and falls back to the runtime's blocking pool when it
 * says -ENOSYS, so a kernel or container that refuses io_uring costs
 * nothing but speed.  The design and the figures: docs/networking.md,
 * "Files".
 */
#ifndef WEFT_AIO_H
#define WEFT_AIO_H

#include <stdbool.h>
#include <sys/types.h>

#include "internal.h"

/* WEFT_IO_URING (runtime/env.c). */
enum {
    WEFT__AIO_AUTO = 0,  /* io_uring when the kernel allows it; data in the
                            page cache is copied inline, by the worker */
    WEFT__AIO_ASYNC = 1, /* io_uring, every operation run by the kernel's
                            own threads (IOSQE_ASYNC): a worker never copies */
    WEFT__AIO_OFF = 2,   /* the blocking pool only */
};

/* May suspend the coroutine.  One pread (write false) or pwrite (write true)
 * of at most n bytes at off, submitted by the calling coroutine's worker to
 * its own ring.  Bytes moved or -errno as the system call would give them;
 * -ECANCELED when the caller was cancelled (before the submission, or while
 * the operation ran: it is waited for all the way, as the pool's are);
 * -ENOSYS when no ring can be used (WEFT_IO_URING=off, the kernel refuses,
 * too many operations in flight, fd is not a regular file or block device):
 * the caller uses the blocking pool instead. */
ssize_t weft__aio_rw(bool write, int fd, void *buf, size_t n, off_t off);

/* Any worker (the poller's driver, or a busy worker's poll): the ring of
 * worker `worker` has completions; hands them to their coroutines. */
void weft__aio_ready(weft__runtime *rt, unsigned worker);

/* weft_run's teardown, no coroutine left: closes w's ring, if it has one. */
void weft__aio_worker_free(weft__worker *w);

#endif
