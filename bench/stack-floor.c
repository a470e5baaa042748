/*
 * stack-floor: the floor under "weft-bench sleepers N MS" on this machine
 * for any runtime whose coroutines have stacks of their own.
 *
 *   stack-floor N MS [T]    T threads (default 2) each make N/T pages
 *                           present, one per stack-sized span (128 KiB + a
 *                           guard page, as weft's default stacks), then
 *                           sleep MS; prints wall time and peak RSS in
 *                           weft-bench's format
 *   POPULATE=1 stack-floor  the same, the pages made present in batches of
 *                           1024 with process_madvise(MADV_POPULATE_WRITE)
 *   RECORD=B stack-floor    each coroutine also writes a B-byte record, the
 *                           records packed side by side in a mapping of
 *                           their own (as weft's task slabs: B=384), so
 *                           that the pair of runs measures what a record
 *                           beside the stack costs
 *
 * No runtime, no task, no timer: a million coroutines alive at once need
 * at least a million touched pages, and here that is all that is done.  On
 * a VM each first touch of memory the host has not backed yet costs a few
 * microseconds, which is what weft's sleepers time is made of
 * (docs/scheduler.md, section 8).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static size_t per, record;
static int populate;
#define SPAN ((size_t)(128 + 4) * 1024)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *toucher(void *arg)
{
    (void)arg;
    char *p = mmap(NULL, SPAN * per, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    if (populate) {
        int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        struct iovec iov[1024];
        for (size_t i = 0; i < per; i += 1024) {
            size_t k = per - i < 1024 ? per - i : 1024;
            for (size_t j = 0; j < k; j++)
                iov[j] = (struct iovec){p + (i + j + 1) * SPAN - 4096, 4096};
            if (syscall(SYS_process_madvise, pfd, iov, k, MADV_POPULATE_WRITE, 0) < 0) {
                perror("process_madvise");
                exit(1);
            }
        }
        close(pfd);
    }
    char *r = NULL;
    if (record) {
        r = mmap(NULL, record * per, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
    }
    for (size_t i = 0; i < per; i++) {
        p[(i + 1) * SPAN - 64] = 1;
        if (r)
            r[i * record] = 1;  /* a record's first line: its page's first touch */
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stack-floor N MS [THREADS]\n");
        return 2;
    }
    size_t n = strtoull(argv[1], NULL, 10);
    long ms = atol(argv[2]);
    int t = argc > 3 ? atoi(argv[3]) : 2;
    if (t < 1 || t > 64 || n < (size_t)t)
        return 2;
    populate = getenv("POPULATE") && atoi(getenv("POPULATE"));
    record = getenv("RECORD") ? strtoull(getenv("RECORD"), NULL, 10) : 0;
    per = n / (size_t)t;
    double t0 = now();
    pthread_t th[64];
    for (int i = 0; i < t; i++)
        pthread_create(&th[i], NULL, toucher, NULL);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    double touched = now();
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("floor %.1f ms-wall %zu pages %ld ms-sleep %ld KiB-maxrss (%.1f ms touching)\n",
           (now() - t0) * 1e3, per * (size_t)t, ms, ru.ru_maxrss, (touched - t0) * 1e3);
    return 0;
}
