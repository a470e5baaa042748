/*
 * file-uring: the floor for weft's file calls on io_uring, measured.
 *
 *   file-uring FILE N C     N reads of 4 KiB at pseudo-random 4 KiB-aligned
 *                           offsets of FILE (expected in the page cache),
 *                           C in flight, submitted and reaped by ONE thread
 *                           through one io_uring (IORING_OP_READ), batched:
 *                           the best case for io_uring, no runtime around it
 *   PLAIN=1 file-uring ...  the same reads with pread(2) on one thread, one
 *                           after another (the syscall alone: no hand-off)
 *
 * Output as weft-bench's: "uring X ns/op N ops" (or "pread ...").  Compare
 * with "weft-bench file FILE N C" (weft_pread from C coroutines, on the
 * workers' rings; WEFT_IO_URING=off hands each read to the runtime's
 * blocking pool instead).  docs/networking.md has the figures.  Raw system
 * calls, no liburing, as runtime/os/linux/aio_uring.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static off_t next_off(off_t blocks)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (off_t)(rng % (uint64_t)blocks) * 4096;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: file-uring FILE N C\n");
        return 2;
    }
    long n = atol(argv[2]), c = atol(argv[3]);
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0 || sb.st_size < 4096 || n <= 0 || c <= 0 || c > 4096) {
        fprintf(stderr, "file-uring: bad file or arguments\n");
        return 2;
    }
    off_t blocks = sb.st_size / 4096;
    char *bufs = aligned_alloc(4096, (size_t)c * 4096);
    if (getenv("PLAIN")) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (pread(fd, bufs, 4096, next_off(blocks)) != 4096)
                return perror("pread"), 1;
        printf("pread %.1f ns/op %ld ops\n", (now_ns() - t0) / (double)n, n);
        return 0;
    }

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(SYS_io_uring_setup, (unsigned)c, &p);
    if (ring < 0) {
        fprintf(stderr, "file-uring: io_uring_setup: %s (kernel.io_uring_disabled?)\n",
                strerror(errno));
        return 77;
    }
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
        return perror("mmap"), 1;
    _Atomic unsigned *sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
    unsigned sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    unsigned *sq_array = (unsigned *)(sq + p.sq_off.array);
    _Atomic unsigned *cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
    _Atomic unsigned *cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
    unsigned cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

    long submitted = 0, done = 0, inflight = 0;
    unsigned tail = atomic_load_explicit(sq_tail, memory_order_relaxed);
    double t0 = now_ns();
    while (done < n) {
        unsigned batch = 0;
        while (inflight + batch < c && submitted + batch < n) {
            unsigned slot = tail & sq_mask;
            struct io_uring_sqe *e = &sqes[slot];
            memset(e, 0, sizeof *e);
            e->opcode = IORING_OP_READ;
            e->fd = fd;
            e->off = (uint64_t)next_off(blocks);
            unsigned b = (unsigned)((submitted + batch) % c);
            e->addr = (uint64_t)(uintptr_t)(bufs + (size_t)b * 4096);
            e->len = 4096;
            e->user_data = b;
            sq_array[slot] = slot;
            tail++;
            batch++;
        }
        /* release: the entries before the tail (the kernel's acquire). */
        atomic_store_explicit(sq_tail, tail, memory_order_release);
        int r = (int)syscall(SYS_io_uring_enter, ring, batch, 1, IORING_ENTER_GETEVENTS, NULL, 0);
        if (r < 0 && errno != EINTR)
            return perror("io_uring_enter"), 1;
        submitted += batch;
        inflight += batch;
        unsigned head = atomic_load_explicit(cq_head, memory_order_relaxed);
        unsigned ctail = atomic_load_explicit(cq_tail, memory_order_acquire);
        for (; head != ctail; head++) {
            struct io_uring_cqe *q = &cqes[head & cq_mask];
            if (q->res != 4096) {
                fprintf(stderr, "file-uring: read: %d\n", q->res);
                return 1;
            }
            done++;
            inflight--;
        }
        atomic_store_explicit(cq_head, head, memory_order_release);
    }
    printf("uring %.1f ns/op %ld ops\n", (now_ns() - t0) / (double)n, n);
    return 0;
}
