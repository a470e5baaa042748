/*
 * The platform interface, Linux's side: the calls of os.h that need
 * _GNU_SOURCE (which the portable files do not define).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "os.h"

int weft__os_socket(int domain, int type)
{
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int weft__os_accept(int fd)
{
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* The advice process_madvise refused (EINVAL: older kernels take only a few
 * kinds there), so later calls go straight to madvise.  relaxed: a hint. */
static _Atomic int pm_refused[128];

int weft__os_madvise_ranges(const struct iovec *iov, size_t n, int advice)
{
    size_t done = 0;
    bool try_pm = advice >= 0 && advice < 128 &&
                  !atomic_load_explicit(&pm_refused[advice], memory_order_relaxed);
    /* A pidfd per call, not one kept open: a kept one would be inherited by
     * a fork and name the parent. */
    int pidfd = try_pm ? (int)syscall(SYS_pidfd_open, getpid(), 0) : -1;
    while (pidfd >= 0 && done < n) {
        size_t k = n - done > 1024 ? 1024 : n - done;
        size_t want = 0;
        for (size_t i = 0; i < k; i++)
            want += iov[done + i].iov_len;
        long r = syscall(SYS_process_madvise, pidfd, iov + done, k, advice, 0);
        if (r < 0 || (size_t)r != want) {
            if (r < 0 && (errno == EINVAL || errno == ENOSYS || errno == EPERM))
                atomic_store_explicit(&pm_refused[advice], 1, memory_order_relaxed);
            break;  /* the rest one by one, which names the failing range */
        }
        done += k;
    }
    if (pidfd >= 0)
        close(pidfd);
    for (; done < n; done++)
        if (madvise(iov[done].iov_base, iov[done].iov_len, advice) != 0)
            return -errno;
    return 0;
}
