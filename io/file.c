/*
 * Files without blocking a worker (aiofiles): whole-file read and write,
 * pread and pwrite.
 *
 * pread and pwrite go to the worker's io_uring (runtime/os/linux/aio_uring.c) where the
 * kernel allows it: no hand-off to another thread, and a read of cached
 * data is done inside the submitting system call (docs/networking.md,
 * "Files", has the figures).  Everything else, and everything when
 * io_uring is refused (containers, kernel.io_uring_disabled,
 * WEFT_IO_URING=off), runs its system calls on the runtime's own blocking
 * pool (runtime/blocking.c), so a flood of slow user to_thread calls cannot
 * starve file work.  The whole-file calls stay on the pool: each is an
 * open, a stat, reads and a close, one hand-off for all of them, where the
 * ring would take a round of the scheduler per call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/internal.h"
#include "../runtime/aio.h"

typedef struct {
    int fd;
    const char *path;
    void *buf;
    const void *cbuf;
    size_t n;
    off_t off;
    ssize_t rc;
    int mode;
} file_req;

static void *do_pread(void *arg)
{
    file_req *r = arg;
    ssize_t n;
    do
        n = pread(r->fd, r->buf, r->n, r->off);
    while (n < 0 && errno == EINTR);
    r->rc = n < 0 ? -errno : n;
    return NULL;
}

static void *do_pwrite(void *arg)
{
    file_req *r = arg;
    size_t done = 0;
    while (done < r->n) {
        ssize_t n = pwrite(r->fd, (const char *)r->cbuf + done, r->n - done, r->off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->rc = -errno;
            return NULL;
        }
        done += (size_t)n;
    }
    r->rc = (ssize_t)done;
    return NULL;
}

static void *do_read_all(void *arg)
{
    file_req *r = arg;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r->rc = -errno;
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        cap = (size_t)st.st_size + 1;
    char *data = malloc(cap);
    for (;;) {
        if (!data) {
            r->rc = -ENOMEM;
            break;
        }
        if (len == cap) {
            char *d = realloc(data, cap * 2);
            if (!d) {
                free(data);
                data = NULL;
                continue;
            }
            data = d;
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->rc = -errno;
            free(data);
            data = NULL;
            break;
        }
        if (n == 0) {
            r->rc = (ssize_t)len;
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    r->buf = data;
    return NULL;
}

static void *do_write_all(void *arg)
{
    file_req *r = arg;
    int fd = open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, r->mode);
    if (fd < 0) {
        r->rc = -errno;
        return NULL;
    }
    r->fd = fd;
    r->off = 0;
    do_pwrite(r);
    if (close(fd) < 0 && r->rc >= 0)
        r->rc = -errno;
    return NULL;
}

static ssize_t run(weft_fn fn, file_req *r)
{
    int rc = weft__sys_to_thread(fn, r, NULL);
    if (rc == -ECANCELED && r->rc >= 0 && fn == do_read_all)
        free(r->buf);  /* the caller never sees it */
    return rc < 0 ? rc : r->rc;
}

/* -EPERM and -ECANCELED before any argument is looked at, as from the
 * socket calls: a plain thread must not go on as if it had been answered,
 * and a cancelled caller hears of it first (sticky). */

ssize_t weft_pread(int fd, void *buf, size_t n, off_t off)
{
    int enter = weft__suspend_enter(NULL);
    if (enter < 0)
        return enter;
    if (fd < 0)
        return -EBADF;
    if ((!buf && n) || off < 0)
        return -EINVAL;
    ssize_t rc = weft__aio_rw(false, fd, buf, n, off);
    if (rc != -ENOSYS)
        return rc;
    file_req r = {.fd = fd, .buf = buf, .n = n, .off = off};
    return run(do_pread, &r);
}

ssize_t weft_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int enter = weft__suspend_enter(NULL);
    if (enter < 0)
        return enter;
    if (fd < 0)
        return -EBADF;
    if ((!buf && n) || off < 0)
        return -EINVAL;
    size_t done = 0;
    do {
        ssize_t rc = weft__aio_rw(true, fd, (char *)buf + done, n - done, off + (off_t)done);
        if (rc == -ENOSYS) {
            /* The rest on the pool. */
            file_req r = {.fd = fd, .cbuf = (const char *)buf + done, .n = n - done,
                          .off = off + (off_t)done};
            rc = run(do_pwrite, &r);
            return rc < 0 ? rc : (ssize_t)done + rc;
        }
        if (rc < 0)
            return rc;
        if (rc == 0 && n > done)
            return -EIO;  /* no progress: pwrite(2) would say why; it did not */
        done += (size_t)rc;
    } while (done < n);
    return (ssize_t)done;
}

ssize_t weft_file_read(const char *path, void **data)
{
    int enter = weft__suspend_enter(NULL);
    if (enter < 0)
        return enter;
    if (!path || !data)
        return -EINVAL;
    file_req r = {.path = path};
    ssize_t rc = run(do_read_all, &r);
    if (rc >= 0)
        *data = r.buf;
    return rc;
}

ssize_t weft_file_write(const char *path, const void *data, size_t n, int mode)
{
    int enter = weft__suspend_enter(NULL);
    if (enter < 0)
        return enter;
    if (!path || (!data && n))
        return -EINVAL;
    file_req r = {.path = path, .cbuf = data, .n = n, .mode = mode};
    return run(do_write_all, &r);
}
