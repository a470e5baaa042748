/*
 * File reads and writes without a pool thread (runtime/aio.h), where the system
 * headers have no io_uring: never available, so io/file.c always uses the
 * runtime's blocking pool.
 */
#include <errno.h>

#include "aio.h"

ssize_t weft__aio_rw(bool write, int fd, void *buf, size_t n, off_t off)
{
    (void)write, (void)fd, (void)buf, (void)n, (void)off;
    return -ENOSYS;
}

void weft__aio_ready(weft__runtime *rt, unsigned worker) { (void)rt, (void)worker; }
void weft__aio_worker_free(weft__worker *w) { (void)w; }
