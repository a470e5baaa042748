/*
 * weft-bench: the workloads of shared/peers, with the same arguments and the
 * same one-line output, so that shared/peers/compare.sh can run it side by
 * side with Go, Tokio and libuv.  Workers come from WEFT_WORKERS.
 *
 *   spawn N          main spawns N no-op tasks, waits for all
 *   yield T Y        T tasks each yield Y times
 *   pingpong P R     P pairs bounce a message R times through two bounded
 *                    queues of capacity 1 per pair (ops = P*R round trips)
 *   chain D I        each task spawns the next, D deep, I times
 *   sleepers N MS    N tasks sleep MS ms at once (wall time and peak RSS)
 *   timeouts P R     pingpong where every get waits with a deadline 10 s
 *                    ahead (a timer armed and cancelled per receive)
 *   burst N R IDLE   R rounds of N tasks that each sleep 100 ms, IDLE ms of
 *                    idle after each; prints the resident set after the
 *                    last idle pause (is memory given back?) and the peak
 *   echo PORT [SECS] line echo server on 127.0.0.1:PORT (streams), until killed,
 *                    or for SECS seconds, then closed (so that WEFT_TRACE is
 *                    written: bench/echo-affinity.sh)
 *   blocking N C     N blocking 1 ms sleeps offloaded with weft_to_thread,
 *                    C in flight (C driver coroutines share the N calls)
 *   file PATH N C    N weft_pread calls of 4 KiB at pseudo-random aligned
 *                    offsets of PATH (in the page cache), C coroutines
 *                    (WEFT_IO_URING=off|auto|async picks the path);
 *                    bench/file-uring runs the same reads on a bare ring
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

static long args[4];
static const char *workload;

static void report(const char *name, int64_t start, long ops)
{
    double ns = (double)(weft_now() - start) / (double)ops;
    printf("%s %.1f ns/op %ld ops %u workers\n", name, ns, ops, weft_workers());
}

/* A field of /proc/self/status in KiB ("VmHWM:", "VmRSS:"). */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            kb = strtol(line + n, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static long maxrss_kib(void) { return status_kib("VmHWM:"); }

/* A countdown that wakes one waiter at zero (the Go WaitGroup the peers use).
 * Cache-line aligned: it lives on the waiter's stack, and every worker
 * writes it; sharing a line with the spawning loop's own stack slots made
 * spawn's figure depend on how the compiler laid out bench_main's frame
 * (10-15% between builds of the same library). */
typedef struct {
    _Alignas(64) atomic_long left;
    _Alignas(64) weft_event done;
} countdown;

static void count_one(countdown *c)
{
    if (atomic_fetch_sub_explicit(&c->left, 1, memory_order_acq_rel) == 1)
        weft_event_set(&c->done);
}

static void *noop(void *arg)
{
    count_one(arg);
    return NULL;
}

static void bench_spawn(long n)
{
    countdown c;
    atomic_init(&c.left, n);
    weft_event_init(&c.done);
    int64_t start = weft_now();
    for (long i = 0; i < n; i++) {
        weft_task *t = weft_spawn(noop, &c);
        if (!t) {
            perror("weft_spawn");
            exit(1);
        }
        weft_detach(t);
    }
    weft_event_wait(&c.done, WEFT_FOREVER);
    report("spawn", start, n);
    weft_event_destroy(&c.done);
}

static long yields_per_task;
static void *yielder(void *arg)
{
    for (long i = 0; i < yields_per_task; i++)
        weft_yield();
    return arg;
}

static void bench_yield(long tasks, long yields)
{
    yields_per_task = yields;
    weft_task **ts = malloc(sizeof *ts * (size_t)tasks);
    int64_t start = weft_now();
    for (long i = 0; i < tasks; i++)
        ts[i] = weft_spawn(yielder, NULL);
    weft_gather(ts, (size_t)tasks, NULL);
    report("yield", start, tasks * yields);
    free(ts);
}

/* pingpong: the pinger puts r into a and waits for r+1 from b; the ponger
 * answers until a is closed, then closes b. */
typedef struct {
    weft_queue *a, *b;
    long rounds;
} pp_pair;

/* timeouts: every get waits with a deadline 10 s ahead (a timer armed and
 * cancelled per receive, as a server's per-read deadline).  timed is a
 * constant in each caller below, so pingpong's copies have no clock read
 * and no test of it. */
static inline __attribute__((always_inline)) int64_t pp_deadline(bool timed)
{
    return timed ? weft_now() + 10 * WEFT_SEC : WEFT_FOREVER;
}

static inline __attribute__((always_inline)) void *ping_body(pp_pair *p, bool timed)
{
    for (long r = 0; r < p->rounds; r++) {
        void *v;
        if (weft_queue_put(p->a, (void *)(intptr_t)r, WEFT_FOREVER) != 0 ||
            weft_queue_get(p->b, &v, pp_deadline(timed)) != 0 || (intptr_t)v != r + 1) {
            fprintf(stderr, "weft-bench: %s: bad round %ld\n", workload, r);
            exit(1);
        }
    }
    weft_queue_close(p->a);
    return NULL;
}

static inline __attribute__((always_inline)) void *pong_body(pp_pair *p, bool timed)
{
    void *v;
    int rc;
    while ((rc = weft_queue_get(p->a, &v, pp_deadline(timed))) == 0)
        if (weft_queue_put(p->b, (void *)((intptr_t)v + 1), WEFT_FOREVER) != 0)
            break;
    if (rc == -ETIMEDOUT) {
        fprintf(stderr, "weft-bench: %s: a get timed out\n", workload);
        exit(1);
    }
    weft_queue_close(p->b);
    return NULL;
}

static void *pp_ping(void *arg) { return ping_body(arg, false); }
static void *pp_pong(void *arg) { return pong_body(arg, false); }
static void *to_ping(void *arg) { return ping_body(arg, true); }
static void *to_pong(void *arg) { return pong_body(arg, true); }

/* pingpong (pp_ping, pp_pong) and timeouts (to_ping, to_pong). */
static void bench_pingpong(long pairs, long rounds, weft_fn ping, weft_fn pong)
{
    pp_pair *ps = calloc((size_t)pairs, sizeof *ps);
    weft_task **ts = malloc(sizeof *ts * 2 * (size_t)pairs);
    if (!ps || !ts) {
        perror("weft-bench");
        exit(1);
    }
    int64_t start = weft_now();
    for (long i = 0; i < pairs; i++) {
        ps[i].a = weft_queue_new(WEFT_QUEUE_FIFO, 1);
        ps[i].b = weft_queue_new(WEFT_QUEUE_FIFO, 1);
        ps[i].rounds = rounds;
        if (!ps[i].a || !ps[i].b) {
            perror("weft_queue_new");
            exit(1);
        }
        ts[2 * i] = weft_spawn(pong, &ps[i]);
        ts[2 * i + 1] = weft_spawn(ping, &ps[i]);
        if (!ts[2 * i] || !ts[2 * i + 1]) {
            perror("weft_spawn");
            exit(1);
        }
    }
    weft_gather(ts, 2 * (size_t)pairs, NULL);
    report(workload, start, pairs * rounds);
    for (long i = 0; i < pairs; i++) {
        weft_queue_free(ps[i].a);
        weft_queue_free(ps[i].b);
    }
    free(ts);
    free(ps);
}

typedef struct {
    long left;
    weft_event *done;
} chain_arg;

static void *chain_step(void *arg)
{
    chain_arg *c = arg;
    if (c->left == 0) {
        weft_event_set(c->done);
        return NULL;
    }
    c->left--;
    weft_detach(weft_spawn(chain_step, c));
    return NULL;
}

static void bench_chain(long depth, long iters)
{
    int64_t start = weft_now();
    for (long i = 0; i < iters; i++) {
        weft_event done;
        weft_event_init(&done);
        chain_arg c = {depth, &done};
        weft_detach(weft_spawn(chain_step, &c));
        weft_event_wait(&done, WEFT_FOREVER);
        weft_event_destroy(&done);
    }
    report("chain", start, depth * iters);
}

static int64_t sleep_ns;
static void *sleeper(void *arg)
{
    weft_sleep(sleep_ns);
    count_one(arg);
    return NULL;
}

static void bench_sleepers(long n, long ms)
{
    countdown c;
    atomic_init(&c.left, n);
    weft_event_init(&c.done);
    sleep_ns = ms * WEFT_MS;
    int64_t start = weft_now();
    for (long i = 0; i < n; i++)
        weft_detach(weft_spawn(sleeper, &c));
    weft_event_wait(&c.done, WEFT_FOREVER);
    double wall = (double)(weft_now() - start) / 1e6;
    printf("sleepers %.1f ms-wall %ld tasks %ld ms-sleep %ld KiB-maxrss\n", wall, n, ms,
           maxrss_kib());
    weft_event_destroy(&c.done);
}

/* burst: R rounds of N tasks that sleep 100 ms, IDLE ms of idle after
 * each; the resident set after the last pause says what the runtime kept. */
static void *burst_sleeper(void *arg)
{
    countdown *c = arg;
    weft_sleep(100 * WEFT_MS);
    if (atomic_fetch_sub_explicit(&c->left, 1, memory_order_acq_rel) == 1)
        weft_event_set(&c->done);
    return NULL;
}

static void bench_burst(long n, long rounds, long idle_ms)
{
    for (long r = 0; r < rounds; r++) {
        countdown c;
        atomic_init(&c.left, n);
        weft_event_init(&c.done);
        for (long i = 0; i < n; i++) {
            weft_task *t = weft_spawn(burst_sleeper, &c);
            if (!t) {
                perror("weft_spawn");
                exit(1);
            }
            weft_detach(t);
        }
        weft_event_wait(&c.done, WEFT_FOREVER);
        weft_event_destroy(&c.done);
        weft_sleep(idle_ms * WEFT_MS);
    }
    printf("burst %ld KiB-rss-after-idle %ld tasks %ld rounds %ld KiB-maxrss\n",
           status_kib("VmRSS:"), n, rounds, maxrss_kib());
}

static void *sleep_1ms(void *arg)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    return arg;
}

static atomic_long blocking_left;
static void *blocking_driver(void *arg)
{
    (void)arg;
    while (atomic_fetch_sub_explicit(&blocking_left, 1, memory_order_relaxed) > 0) {
        int rc = weft_to_thread(sleep_1ms, NULL, NULL);
        if (rc < 0) {
            fprintf(stderr, "weft-bench: weft_to_thread: %s\n", strerror(-rc));
            exit(1);
        }
    }
    return NULL;
}

/* conc driver coroutines sharing n operations (driver gets its index + 1);
 * reports name's ns per operation once all are done. */
static void run_drivers(const char *name, weft_fn driver, long n, long conc)
{
    weft_task **ts = malloc(sizeof *ts * (size_t)conc);
    int64_t start = weft_now();
    for (long i = 0; i < conc; i++)
        ts[i] = weft_spawn(driver, (void *)(uintptr_t)(i + 1));
    weft_gather(ts, (size_t)conc, NULL);
    report(name, start, n);
    free(ts);
}

static void bench_blocking(long n, long conc)
{
    atomic_init(&blocking_left, n);
    run_drivers("blocking", blocking_driver, n, conc);
}

static const char *file_path;
static int file_fd;
static long file_blocks;
static atomic_long file_left;
static void *file_driver(void *arg)
{
    uint64_t x = 88172645463325252ull ^ (uint64_t)(uintptr_t)arg;
    char *buf = aligned_alloc(4096, 4096);
    while (atomic_fetch_sub_explicit(&file_left, 1, memory_order_relaxed) > 0) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ssize_t r = weft_pread(file_fd, buf, 4096, (off_t)(x % (uint64_t)file_blocks) * 4096);
        if (r != 4096) {
            fprintf(stderr, "weft-bench: weft_pread: %zd\n", r);
            exit(1);
        }
    }
    free(buf);
    return NULL;
}

static void bench_file(long n, long conc)
{
    file_fd = open(file_path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (file_fd < 0 || fstat(file_fd, &sb) < 0 || sb.st_size < 4096) {
        fprintf(stderr, "weft-bench: file: %s: unusable\n", file_path);
        exit(1);
    }
    file_blocks = sb.st_size / 4096;
    atomic_init(&file_left, n);
    run_drivers("file", file_driver, n, conc);
    close(file_fd);
}

static void echo_handler(weft_stream *s, void *ctx)
{
    (void)ctx;
    char *line = malloc(64 * 1024);
    for (;;) {
        ssize_t n = weft_stream_readline(s, line, 64 * 1024, WEFT_FOREVER);
        if (n == -EMSGSIZE)
            continue;
        if (n <= 0)
            break;
        if (weft_stream_write(s, line, (size_t)n) < 0 || weft_stream_drain(s, WEFT_FOREVER) < 0)
            break;
    }
    free(line);
}

static void bench_echo(long port, long secs)
{
    char p[16];
    snprintf(p, sizeof p, "%ld", port);
    weft_server *srv = weft_start_server("127.0.0.1", p, echo_handler, NULL);
    if (!srv) {
        fprintf(stderr, "weft-bench: echo: %s\n", strerror(errno));
        exit(1);
    }
    if (secs > 0)
        weft_sleep(secs * WEFT_SEC);
    else
        weft_serve_forever(srv);
    weft_server_close(srv);
}

static void *bench_main(void *arg)
{
    (void)arg;
    if (!strcmp(workload, "spawn"))
        bench_spawn(args[0]);
    else if (!strcmp(workload, "yield"))
        bench_yield(args[0], args[1]);
    else if (!strcmp(workload, "pingpong"))
        bench_pingpong(args[0], args[1], pp_ping, pp_pong);
    else if (!strcmp(workload, "chain"))
        bench_chain(args[0], args[1]);
    else if (!strcmp(workload, "sleepers"))
        bench_sleepers(args[0], args[1]);
    else if (!strcmp(workload, "blocking"))
        bench_blocking(args[0], args[1]);
    else if (!strcmp(workload, "timeouts"))
        bench_pingpong(args[0], args[1], to_ping, to_pong);
    else if (!strcmp(workload, "burst"))
        bench_burst(args[0], args[1], args[2]);
    else if (!strcmp(workload, "echo"))
        bench_echo(args[0], args[1]);
    else if (!strcmp(workload, "file"))
        bench_file(args[0], args[1]);
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: weft-bench spawn N | yield T Y | pingpong P R | chain D I | sleepers N MS | blocking N C | timeouts P R | burst N R IDLE_MS | echo PORT [SECS] | file PATH N C\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    workload = argv[1];
    if (!strcmp(workload, "file")) {
        if (argc < 5)
            return usage();
        file_path = argv[2];
        argv++;
        argc--;
    }
    int need = (!strcmp(workload, "spawn") || !strcmp(workload, "echo")) ? 1
             : !strcmp(workload, "burst") ? 3
             : (!strcmp(workload, "yield") || !strcmp(workload, "pingpong") ||
                !strcmp(workload, "chain") || !strcmp(workload, "timeouts") ||
                !strcmp(workload, "sleepers") || !strcmp(workload, "blocking") ||
                !strcmp(workload, "file")) ? 2 : -1;
    if (need < 0 || argc < 2 + need)
        return usage();
    for (int i = 0; i < need; i++) {
        char *end;
        args[i] = strtol(argv[2 + i], &end, 10);
        if (*end || args[i] <= 0)
            return usage();
    }
    if (!strcmp(workload, "echo") && argc > 3) {  /* optional SECS */
        char *end;
        args[1] = strtol(argv[3], &end, 10);
        if (*end || args[1] <= 0)
            return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = weft_run(bench_main, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "weft-bench: weft_run: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}
