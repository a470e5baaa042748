/*
 * The platform interface, Linux's side.  CMake puts runtime/os/<platform>/
 * on the library's include path (WEFT_OS), so that `#include "os.h"` finds
 * the platform's version of these few calls and the portable files carry no
 * #ifdef of their own.  A port to another system writes its own os.h with
 * the same names, a poller backend (poller.h; poll_epoll.c here), and adds
 * its WEFT_OS / WEFT_POLLER lines to CMakeLists.txt (CONTRIBUTING.md).
 *
 * Also here: os.c (what needs _GNU_SOURCE, out of line), and the other
 * backend of the platform, aio_uring.c: pread and pwrite on io_uring
 * (runtime/aio.h; runtime/aio_none.c elsewhere).
 */
#ifndef WEFT_OS_H
#define WEFT_OS_H

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* os.c.  A socket that is non-blocking and close-on-exec from birth; -1
 * and errno as socket(2).  Any thread. */
int weft__os_socket(int domain, int type);
/* os.c.  accept(2), the connection non-blocking and close-on-exec from
 * birth.  Any thread. */
int weft__os_accept(int fd);

/* os.c.  madvise(2) over n ranges, in as few system calls as the kernel
 * allows (process_madvise on our own pidfd, 1024 ranges a call, where the
 * kernel takes the advice there: Linux 6.15+ for any advice; else one
 * madvise per range).  0, or -errno of the first range that failed.  Any
 * thread; holds no lock. */
struct iovec;
int weft__os_madvise_ranges(const struct iovec *iov, size_t n, int advice);

/* Flags for send / sendto: a closed peer is EPIPE, not SIGPIPE.  (BSDs
 * have no such flag; their os.h sets SO_NOSIGPIPE on each socket.) */
#define WEFT__OS_MSG_NOSIGNAL MSG_NOSIGNAL

/* Sleeps while *addr == val, until woken or ts (relative; NULL: none);
 * 0, or -1 with errno (EAGAIN: *addr != val; ETIMEDOUT; EINTR). */
static inline long weft__os_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, ts, NULL, 0);
}

/* Wakes up to n threads sleeping in weft__os_wait on addr. */
static inline void weft__os_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* The heavy side of an asymmetric fence (membarrier(2), Linux 4.14+).
 * weft__os_membarrier: 0 or -errno; when it returns 0, every thread of the
 * process that was running has passed a full memory barrier, and every
 * other one a context switch (which is one), and the caller's own earlier
 * accesses come before those barriers (the kernel puts a full barrier on
 * entry); so a thread whose side of a Dekker pair is only a compiler
 * barrier (the light side) is ordered against the caller, whose side may
 * then be relaxed.  Costs an interprocessor interrupt to each CPU
 * running one of our threads: for rare paths only.  Any thread; may block
 * the thread (microseconds). */
static inline int weft__os_membarrier(void)
{
    /* Fails only unregistered (EPERM), or where a seccomp filter lets the
     * registration through and refuses this. */
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -errno;
}

/* Registers the process for weft__os_membarrier (idempotent) and tries one
 * fence: true when both work; false when the kernel lacks the call or a
 * seccomp filter refuses either, and then the caller keeps the
 * read-modify-write the fence would have replaced.  Any thread. */
static inline bool weft__os_membarrier_usable(void)
{
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
           weft__os_membarrier() == 0;
}

/* A pool thread's timers fire on time (no 50 us slack): its sleeps are
 * the callers' deadlines. */
static inline void weft__os_thread_precise_timers(void)
{
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

#endif
