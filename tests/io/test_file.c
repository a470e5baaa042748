/*
 * cmocka tests of the file calls (include/weft/io.h "Files", io/file.c,
 * runtime/os/linux/aio_uring.c): weft_pread, weft_pwrite, weft_file_read,
 * weft_file_write, under each WEFT_IO_URING mode: `auto` (the worker's
 * io_uring, cached data copied inside the submitting system call), `async`
 * (every operation done by the kernel's threads, so every completion comes
 * back through the shared poller, possibly to another worker) and `off` (the
 * runtime's blocking pool).  Every error code the calls can return, data
 * written and read back from many coroutines at once, short reads at the end
 * of a file, cancellation (sticky, and while an operation is in the
 * kernel), more operations in flight than a ring holds (the rest go to the
 * pool), and that `auto` really does without pool threads.
 *
 * Each test runs the runtime between two /proc/self/fd snapshots
 * (tests/leak.h): a descriptor or ring left open fails the test.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/syscall.h>

#include "io_test.h"

static const char *const modes[] = {"auto", "async", "off"};
#define NMODES 3

/* ------------------------------------------------------------------ */
/* A scratch file whose 4 KiB block i holds a pattern derived from i    */
/* ------------------------------------------------------------------ */

#define BLK 4096
static char scratch_dir[64];

static void scratch_init(void)
{
    if (scratch_dir[0])
        return;
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/weft-file-XXXXXX");
    assert_non_null(mkdtemp(scratch_dir));
}

static void scratch_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", scratch_dir, name);
}

static unsigned char pat(uint64_t block, size_t i)
{
    uint64_t x = (block + 1) * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (unsigned char)(x ^ (x >> 8));
}

static void fill_block(unsigned char *b, uint64_t block)
{
    for (size_t i = 0; i < BLK; i++)
        b[i] = pat(block, i);
}

static bool block_ok(const unsigned char *b, uint64_t block, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(block, i))
            return false;
    return true;
}

/* A file of nblocks pattern blocks, written with plain system calls. */
static void make_pattern_file(const char *path, unsigned nblocks)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    unsigned char b[BLK];
    for (unsigned i = 0; i < nblocks; i++) {
        fill_block(b, i);
        assert_int_equal(write(fd, b, BLK), BLK);
    }
    close(fd);
}

/* ------------------------------------------------------------------ */
/* -EPERM outside a coroutine                                          */
/* ------------------------------------------------------------------ */

static void *eperm_calls(void *arg)
{
    char b[8];
    void *data = (void *)1;
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    T_CHECK(fd >= 0);
    T_CHECK_EQ(weft_pread(fd, b, sizeof b, 0), -EPERM);
    T_CHECK_EQ(weft_pwrite(fd, b, sizeof b, 0), -EPERM);
    /* Bad arguments too: a plain thread hears -EPERM first, as from the
     * socket calls. */
    T_CHECK_EQ(weft_pread(-1, NULL, 8, 0), -EPERM);
    T_CHECK_EQ(weft_file_read("/etc/hostname", &data), -EPERM);
    T_CHECK_EQ(weft_file_write("/nonexistent/x", "x", 1, 0600), -EPERM);
    T_CHECK(data == (void *)1);
    close(fd);
    return arg;
}

static void *eperm_main(void *arg)
{
    return t_in_thread(eperm_calls, arg);
}

static void test_file_eperm(void **state)
{
    (void)state;
    IO_BEGIN(30);
    t_in_thread(eperm_calls, NULL);  /* no runtime at all */
    assert_int_equal(t_run(eperm_main, NULL, NULL), 0);  /* a plain thread beside one */
}

/* ------------------------------------------------------------------ */
/* Every error code                                                    */
/* ------------------------------------------------------------------ */

static void *errors_main(void *arg)
{
    (void)arg;
    char path[128], missing[128], b[64];
    scratch_path(path, sizeof path, "errors");
    scratch_path(missing, sizeof missing, "no/such/dir/file");
    T_CHECK_EQ(weft_file_write(path, "hello", 5, 0600), 5);

    int ro = open(path, O_RDONLY | O_CLOEXEC);
    int wo = open(path, O_WRONLY | O_CLOEXEC);
    int dir = open(scratch_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int pfd[2];
    T_CHECK(ro >= 0 && wo >= 0 && dir >= 0 && pipe2(pfd, O_CLOEXEC) == 0);

    T_CHECK_EQ(weft_pread(-1, b, sizeof b, 0), -EBADF);
    T_CHECK_EQ(weft_pwrite(-5, b, sizeof b, 0), -EBADF);
    T_CHECK_EQ(weft_pread(4000, b, sizeof b, 0), -EBADF);  /* not open */
    T_CHECK_EQ(weft_pread(ro, NULL, sizeof b, 0), -EINVAL);
    T_CHECK_EQ(weft_pwrite(wo, NULL, 1, 0), -EINVAL);
    T_CHECK_EQ(weft_pread(wo, b, sizeof b, 0), -EBADF);    /* opened for writing */
    T_CHECK_EQ(weft_pwrite(ro, "x", 1, 0), -EBADF);        /* opened for reading */
    T_CHECK_EQ(weft_pread(ro, b, sizeof b, -1), -EINVAL);  /* negative offset */
    T_CHECK_EQ(weft_pwrite(wo, "x", 1, -4096), -EINVAL);
    T_CHECK_EQ(weft_pread(dir, b, sizeof b, 0), -EISDIR);
    /* A pipe has no offsets: pread says so at once (it must not wait for
     * data, as an io_uring read of a pipe would). */
    T_CHECK_EQ(weft_pread(pfd[0], b, sizeof b, 0), -ESPIPE);
    T_CHECK_EQ(weft_pwrite(pfd[1], "x", 1, 0), -ESPIPE);

    void *data = (void *)1;
    T_CHECK_EQ(weft_file_read(NULL, &data), -EINVAL);
    T_CHECK_EQ(weft_file_read(path, NULL), -EINVAL);
    T_CHECK_EQ(weft_file_read(missing, &data), -ENOENT);
    T_CHECK_EQ(weft_file_read(scratch_dir, &data), -EISDIR);
    T_CHECK(data == (void *)1);  /* untouched on every error */
    T_CHECK_EQ(weft_file_write(NULL, "x", 1, 0600), -EINVAL);
    T_CHECK_EQ(weft_file_write(path, NULL, 1, 0600), -EINVAL);
    T_CHECK_EQ(weft_file_write(missing, "x", 1, 0600), -ENOENT);
    T_CHECK_EQ(weft_file_write(scratch_dir, "x", 1, 0600), -EISDIR);

    /* Zero bytes are fine, even with a NULL buffer. */
    T_CHECK_EQ(weft_pread(ro, NULL, 0, 0), 0);
    T_CHECK_EQ(weft_pwrite(wo, NULL, 0, 0), 0);
    /* The file is intact after all that. */
    T_CHECK_EQ(weft_pread(ro, b, sizeof b, 0), 5);
    T_CHECK(memcmp(b, "hello", 5) == 0);

    close(ro);
    close(wo);
    close(dir);
    close(pfd[0]);
    close(pfd[1]);
    unlink(path);
    return NULL;
}

static void test_file_errors(void **state)
{
    (void)state;
    IO_BEGIN(60);
    scratch_init();
    for (int m = 0; m < NMODES; m++) {
        setenv("WEFT_IO_URING", modes[m], 1);
        assert_int_equal(t_run_workers(2, errors_main, NULL, NULL), 0);
    }
}

/* ------------------------------------------------------------------ */
/* Data written and read back                                          */
/* ------------------------------------------------------------------ */

#define RT_BLOCKS 256  /* 1 MiB */
#define RT_WRITERS 8

typedef struct rt_ctx {
    int fd;
    int who;
} rt_ctx;

/* Writer `who` writes blocks who, who + RT_WRITERS, ... out of order. */
static void *rt_writer(void *arg)
{
    rt_ctx *c = arg;
    unsigned char b[BLK];
    for (int i = RT_BLOCKS - RT_WRITERS + c->who; i >= 0; i -= RT_WRITERS) {
        fill_block(b, (uint64_t)i);
        if (weft_pwrite(c->fd, b, BLK, (off_t)i * BLK) != BLK)
            return (void *)1;
    }
    return NULL;
}

static void *rt_reader(void *arg)
{
    rt_ctx *c = arg;
    unsigned char b[BLK];
    for (int i = c->who; i < RT_BLOCKS; i += RT_WRITERS) {
        if (weft_pread(c->fd, b, BLK, (off_t)i * BLK) != BLK || !block_ok(b, (uint64_t)i, BLK))
            return (void *)1;
    }
    return NULL;
}

static void *roundtrip_main(void *arg)
{
    (void)arg;
    char path[128], whole[128];
    scratch_path(path, sizeof path, "roundtrip");
    scratch_path(whole, sizeof whole, "whole");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    T_CHECK(fd >= 0);

    rt_ctx c[RT_WRITERS];
    weft_task *t[RT_WRITERS];
    void *res[RT_WRITERS];
    for (int i = 0; i < RT_WRITERS; i++) {
        c[i] = (rt_ctx){.fd = fd, .who = i};
        t[i] = weft_spawn(rt_writer, &c[i]);
    }
    T_CHECK_EQ(weft_gather(t, RT_WRITERS, res), 0);
    for (int i = 0; i < RT_WRITERS; i++)
        T_CHECK(res[i] == NULL);
    for (int i = 0; i < RT_WRITERS; i++)
        t[i] = weft_spawn(rt_reader, &c[i]);
    T_CHECK_EQ(weft_gather(t, RT_WRITERS, res), 0);
    for (int i = 0; i < RT_WRITERS; i++)
        T_CHECK(res[i] == NULL);

    /* One large write and read (several MiB in one call). */
    size_t big = 3u << 20;
    unsigned char *src = malloc(big), *dst = malloc(big);
    T_CHECK(src && dst);
    for (size_t i = 0; i < big; i += BLK)
        fill_block(src + i, 1000 + i / BLK);
    T_CHECK_EQ(weft_pwrite(fd, src, big, 12345), (ssize_t)big);
    T_CHECK_EQ(weft_pread(fd, dst, big, 12345), (ssize_t)big);
    T_CHECK(memcmp(src, dst, big) == 0);

    /* Short read at the end of the file, then nothing past it. */
    off_t size = 12345 + (off_t)big;
    T_CHECK_EQ(weft_pread(fd, dst, BLK, size - 100), 100);
    T_CHECK(memcmp(dst, src + big - 100, 100) == 0);
    T_CHECK_EQ(weft_pread(fd, dst, BLK, size), 0);
    T_CHECK_EQ(weft_pread(fd, dst, BLK, size + 1000000), 0);
    close(fd);

    /* Whole files: empty, small, several MiB; rewritten shorter. */
    void *data = NULL;
    T_CHECK_EQ(weft_file_write(whole, "", 0, 0600), 0);
    T_CHECK_EQ(weft_file_read(whole, &data), 0);
    T_CHECK(data != NULL);
    free(data);
    T_CHECK_EQ(weft_file_write(whole, src, big, 0600), (ssize_t)big);
    data = NULL;
    T_CHECK_EQ(weft_file_read(whole, &data), (ssize_t)big);
    T_CHECK(data && memcmp(data, src, big) == 0);
    free(data);
    T_CHECK_EQ(weft_file_write(whole, "abc", 3, 0600), 3);
    data = NULL;
    T_CHECK_EQ(weft_file_read(whole, &data), 3);
    T_CHECK(data && memcmp(data, "abc", 3) == 0);
    free(data);
    struct stat st;
    T_CHECK(stat(whole, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* A descriptor opened O_NONBLOCK reads as any other. */
    int nb = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    T_CHECK(nb >= 0);
    T_CHECK_EQ(weft_pread(nb, dst, BLK, 1 * BLK), BLK);  /* below the big write */
    T_CHECK(block_ok(dst, 1, BLK));
    close(nb);

    free(src);
    free(dst);
    unlink(path);
    unlink(whole);
    return NULL;
}

static void test_file_roundtrip(void **state)
{
    (void)state;
    IO_BEGIN(120);
    scratch_init();
    for (int m = 0; m < NMODES; m++) {
        setenv("WEFT_IO_URING", modes[m], 1);
        for (unsigned w = 1; w <= 2; w++)
            assert_int_equal(t_run_workers(w, roundtrip_main, NULL, NULL), 0);
    }
}

/* ------------------------------------------------------------------ */
/* Many coroutines, more reads in flight than a ring holds             */
/* ------------------------------------------------------------------ */

#define MANY_BLOCKS 512
#define MANY_TASKS 400   /* a ring holds at most 256 in flight */
#define MANY_READS 20

typedef struct many_ctx {
    int fd;
    _Atomic int bad, done;
} many_ctx;

static void *many_reader(void *arg)
{
    many_ctx *c = arg;
    unsigned char b[BLK];
    uint64_t x = (uint64_t)(uintptr_t)&b;
    for (int i = 0; i < MANY_READS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t blk = x % MANY_BLOCKS;
        if (weft_pread(c->fd, b, BLK, (off_t)blk * BLK) != BLK || !block_ok(b, blk, BLK))
            atomic_fetch_add(&c->bad, 1);
        else
            atomic_fetch_add(&c->done, 1);
    }
    return NULL;
}

static void *many_main(void *arg)
{
    many_ctx *c = arg;
    weft_group *g = weft_group_new();
    for (int i = 0; i < MANY_TASKS; i++)
        T_CHECK(weft_group_spawn(g, many_reader, c) != NULL);
    T_CHECK_EQ(weft_group_wait(g), 0);
    weft_group_free(g);
    return NULL;
}

static void test_file_many_in_flight(void **state)
{
    (void)state;
    IO_BEGIN(120);
    scratch_init();
    char path[128];
    scratch_path(path, sizeof path, "many");
    make_pattern_file(path, MANY_BLOCKS);
    for (int m = 0; m < NMODES; m++) {
        setenv("WEFT_IO_URING", modes[m], 1);
        for (unsigned w = 1; w <= 3; w += 2) {
            many_ctx c = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
            assert_true(c.fd >= 0);
            assert_int_equal(t_run_workers(w, many_main, &c, NULL), 0);
            close(c.fd);
            assert_int_equal(c.bad, 0);
            assert_int_equal(c.done, MANY_TASKS * MANY_READS);
        }
    }
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                        */
/* ------------------------------------------------------------------ */

typedef struct cancel_ctx {
    int fd;
    size_t n;
    unsigned char *buf;
    _Atomic int started;
    ssize_t rc;
} cancel_ctx;

static void *sticky_victim(void *arg)
{
    cancel_ctx *c = arg;
    weft_cancel(weft_self());
    void *data = (void *)1;
    ssize_t a = weft_pread(c->fd, c->buf, BLK, 0);
    ssize_t b = weft_pwrite(c->fd, c->buf, BLK, 0);
    ssize_t d = weft_file_read("/etc/hostname", &data);
    c->rc = (a == -ECANCELED && b == -ECANCELED && d == -ECANCELED && data == (void *)1);
    return NULL;
}

/* One large read, in the kernel when the cancel comes (WEFT_IO_URING=async
 * hands it to the kernel's threads; the pool to a pool thread). */
static void *big_victim(void *arg)
{
    cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->rc = weft_pread(c->fd, c->buf, c->n, 0);
    return NULL;
}

static void *cancel_main(void *arg)
{
    cancel_ctx *c = arg;
    weft_task *t = weft_spawn(sticky_victim, c);
    T_CHECK_EQ(weft_join(t, NULL), -ECANCELED);  /* it was cancelled */
    T_CHECK_EQ(c->rc, 1);

    memset(c->buf, 0, c->n);
    atomic_store(&c->started, 0);
    t = weft_spawn(big_victim, c);
    while (!atomic_load(&c->started))
        weft_yield();
    weft_yield();
    /* -ESRCH: the read was done before the cancel came (a 32 MiB read
     * from the page cache completes inside io_uring_enter, on its worker,
     * in a few milliseconds; under load this task may not run again
     * before that).  Then the join has nothing to cancel either. */
    int crc = weft_cancel(t);
    T_CHECK(crc == 0 || crc == -ESRCH);
    int jrc = weft_join(t, NULL);
    T_CHECK(jrc == -ECANCELED || jrc == 0);  /* 0: it had finished */
    if (crc == -ESRCH)
        T_CHECK(jrc == 0 && c->rc == (ssize_t)c->n);
    /* Either the cancel came first (nothing read) or the read was waited
     * for all the way: never a buffer still being written after the call
     * returned. */
    T_CHECK(c->rc == -ECANCELED || c->rc == (ssize_t)c->n);
    if (c->rc == -ECANCELED && c->buf[0]) {
        /* the read ran: it must have run to the end before the return */
        T_CHECK(block_ok(c->buf + c->n - BLK, c->n / BLK - 1, BLK));
    }
    return NULL;
}

static void test_file_cancel(void **state)
{
    (void)state;
    IO_BEGIN(120);
    scratch_init();
    char path[128];
    scratch_path(path, sizeof path, "cancel");
    unsigned blocks = 8192;  /* 32 MiB */
    make_pattern_file(path, blocks);
    cancel_ctx c = {.n = (size_t)blocks * BLK};
    c.buf = malloc(c.n);
    assert_non_null(c.buf);
    for (int m = 0; m < NMODES; m++) {
        setenv("WEFT_IO_URING", modes[m], 1);
        c.fd = open(path, O_RDWR | O_CLOEXEC);
        assert_true(c.fd >= 0);
        assert_int_equal(t_run_workers(2, cancel_main, &c, NULL), 0);
        close(c.fd);
    }
    free(c.buf);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* `auto` does without pool threads                                    */
/* ------------------------------------------------------------------ */

/* Threads of this process that are not the kernel's io_uring workers
 * (which are listed as our threads too). A worker is known by the
 * PF_IO_WORKER bit in its flags (field 9 of stat), not by its name: the
 * kernel names it iou-wrk-* only once it runs, so a worker just made
 * still carries its creator's name, and a thread that exits between
 * readdir and open has no name at all; neither is counted. A thread
 * that has been joined may stay listed for a moment, marked PF_EXITING
 * (a wake of pthread_join comes before the kernel reaps it): not
 * counted either. */
#define T_PF_EXITING 0x4u
#define T_PF_IO_WORKER 0x10u
static int user_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[300], line[512];
        snprintf(p, sizeof p, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;                   /* exited since readdir */
        size_t len = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[len] = 0;
        /* fields after "(comm)": state ppid pgrp session tty_nr tpgid flags */
        char *r = strrchr(line, ')');
        unsigned long flags = 0;
        if (!r || sscanf(r + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
            continue;                   /* exited mid-read */
        if (!(flags & (T_PF_IO_WORKER | T_PF_EXITING)))
            n++;
    }
    closedir(d);
    return n;
}

typedef struct threads_ctx {
    int fd;
    int before, after;
} threads_ctx;

static void *threads_main(void *arg)
{
    threads_ctx *c = arg;
    unsigned char b[BLK];
    c->before = user_threads();
    for (int i = 0; i < 200; i++)
        T_CHECK_EQ(weft_pread(c->fd, b, BLK, (off_t)(i % 16) * BLK), BLK);
    c->after = user_threads();
    return NULL;
}

static void test_file_uring_needs_no_pool(void **state)
{
    (void)state;
    IO_BEGIN(60);
    scratch_init();
    char path[128];
    scratch_path(path, sizeof path, "threads");
    make_pattern_file(path, 16);
    /* Does this kernel let us make a ring at all? (containers may not) */
    long probe = syscall(SYS_io_uring_setup, 0, NULL);
    if (probe < 0 && (errno == ENOSYS || errno == EPERM)) {
        unlink(path);
        skip();
    }
    threads_ctx c = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    assert_true(c.fd >= 0);
    assert_int_equal(t_run_workers(1, threads_main, &c, NULL), 0);
    assert_int_equal(c.after, c.before);  /* no pool thread was started */
    setenv("WEFT_IO_URING", "off", 1);
    assert_int_equal(t_run_workers(1, threads_main, &c, NULL), 0);
    assert_true(c.after > c.before);      /* the pool started one */
    close(c.fd);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Wait strings: "file read", "file write" (on a ring)                 */
/* ------------------------------------------------------------------ */

typedef struct ws_ctx {
    int fd;
    size_t n;
    unsigned char *buf;
    _Atomic int seen_read, seen_write, done;
} ws_ctx;

static int ws_visit(const weft_task_info *i, void *arg)
{
    ws_ctx *c = arg;
    if (i->name && strcmp(i->name, "t-file") == 0 && i->state == WEFT_TASK_WAITING && i->wait) {
        if (strcmp(i->wait, "file read") == 0)
            atomic_store(&c->seen_read, 1);
        if (strcmp(i->wait, "file write") == 0)
            atomic_store(&c->seen_write, 1);
    }
    return 0;
}

/* A plain thread, watching the registry while the task reads and writes. */
static void *ws_watch(void *arg)
{
    ws_ctx *c = arg;
    while (!atomic_load(&c->done)) {
        weft_tasks_foreach(ws_visit, c);
        usleep(50);
    }
    return NULL;
}

static void *ws_task(void *arg)
{
    ws_ctx *c = arg;
    /* Each call takes milliseconds on the kernel's threads; repeat until
     * the watcher saw it (a bound, for a machine that starves it). */
    for (int k = 0; k < 200 && !atomic_load(&c->seen_write); k++)
        if (weft_pwrite(c->fd, c->buf, c->n, 0) != (ssize_t)c->n)
            return (void *)1;
    for (int k = 0; k < 200 && !atomic_load(&c->seen_read); k++)
        if (weft_pread(c->fd, c->buf, c->n, 0) != (ssize_t)c->n)
            return (void *)1;
    return NULL;
}

static void *ws_main(void *arg)
{
    ws_ctx *c = arg;
    t_thread th;
    t_thread_start(&th, ws_watch, c);
    weft_task *t = weft_spawn_named("t-file", ws_task, c);
    void *res = (void *)2;
    T_CHECK_EQ(weft_join(t, &res), 0);
    T_CHECK(res == NULL);
    atomic_store(&c->done, 1);
    t_thread_await(&th);
    return NULL;
}

static void test_file_wait_strings(void **state)
{
    (void)state;
    IO_BEGIN(120);
    scratch_init();
    char path[128];
    scratch_path(path, sizeof path, "wait");
    ws_ctx c = {.n = 16u << 20};
    c.buf = calloc(1, c.n);
    assert_non_null(c.buf);
    c.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(c.fd >= 0);
    setenv("WEFT_IO_URING", "async", 1);
    assert_int_equal(t_run_workers(2, ws_main, &c, NULL), 0);
    close(c.fd);
    unlink(path);
    free(c.buf);
    long probe = syscall(SYS_io_uring_setup, 0, NULL);
    if (probe < 0 && (errno == ENOSYS || errno == EPERM))
        skip();  /* no ring: the pool's "to_thread" was seen instead */
    assert_int_equal(c.seen_write, 1);
    assert_int_equal(c.seen_read, 1);
}

static int group_teardown(void **state)
{
    (void)state;
    if (scratch_dir[0])
        rmdir(scratch_dir);
    return 0;
}

/* Before the tests, outside their leak checks: the runtime's pool at its
 * full 16 threads, once, so that glibc's cache of thread stacks holds
 * them (tests/leak.h says why that cache is not a leak). */
static void warm_pool(void)
{
    scratch_init();
    char path[128];
    scratch_path(path, sizeof path, "warm");
    make_pattern_file(path, MANY_BLOCKS);
    setenv("WEFT_IO_URING", "off", 1);
    many_ctx c = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    assert_true(c.fd >= 0);
    assert_int_equal(weft_run(many_main, &c, NULL), 0);
    close(c.fd);
    unsetenv("WEFT_IO_URING");
    unlink(path);
}

int main(void)
{
    io_init();
    warm_pool();
    const struct CMUnitTest tests[] = {
        IO_TEST(test_file_eperm),
        IO_TEST(test_file_errors),
        IO_TEST(test_file_roundtrip),
        IO_TEST(test_file_many_in_flight),
        IO_TEST(test_file_cancel),
        IO_TEST(test_file_uring_needs_no_pool),
        IO_TEST(test_file_wait_strings),
    };
    return cmocka_run_group_tests_name("file", tests, NULL, group_teardown);
}
