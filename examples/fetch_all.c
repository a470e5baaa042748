/*
 * fetch_all: several "fetches", a file read and a CPU-heavy computation, all
 * at once in one task group, printed in the order they complete.
 *
 * The asyncio program it mirrors:
 *
 *     async def main():
 *         jobs = [fetch(url) for url in URLS]
 *         jobs.append(asyncio.to_thread(read_file, path))
 *         jobs.append(asyncio.to_thread(count_primes, 1_000_000))
 *         for job in asyncio.as_completed(jobs, timeout=5):
 *             print(await job)
 *
 * The fetches are coroutines that sleep as long as a slow server would take
 * (so that the example runs without network access; with real servers they
 * would use weft_tcp_connect and the stream calls).  read_file and
 * count_primes are ordinary blocking C functions, handed to the blocking
 * pool with weft_to_thread so that the workers go on running the fetches
 * meanwhile.  (For plain file contents weft_file_read does the same job in
 * one call; read_file stands for any blocking library function.)
 * weft_group_next returns the members in completion order (as_completed),
 * and weft_group_free at the end cancels and awaits anything left (the
 * group never leaves a task behind).
 *
 * Build: cmake -S . -B build && cmake --build build; run
 *   build/examples/fetch_all [FILE]        (default FILE: /proc/version)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

static int64_t t0;

static double ms_since_start(void)
{
    return (double)(weft_now() - t0) / (double)WEFT_MS;
}

/* What each member of the group returns (malloc'd; main frees it). */
typedef struct outcome {
    char text[160];
} outcome;

static outcome *outcome_new(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static outcome *outcome_new(const char *fmt, ...)
{
    outcome *o = malloc(sizeof *o);
    if (!o)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->text, sizeof o->text, fmt, ap);
    va_end(ap);
    return o;
}

/* ------------------------------------------------------------------ */
/* Coroutines: the "network"                                           */
/* ------------------------------------------------------------------ */

typedef struct site {
    const char *url;
    int latency_ms;   /* how long the pretend server takes */
} site;

static const site SITES[] = {
    {"https://example.org/", 120},
    {"https://example.com/slow", 450},
    {"https://example.net/fast", 40},
    {"https://example.edu/api", 260},
};
#define NSITES (sizeof SITES / sizeof SITES[0])

/* Coroutine: "downloads" a page.  weft_sleep stands for the connection and
 * the socket reads; while it waits, its worker runs the other coroutines. */
static void *fetch(void *arg)
{
    const site *s = arg;
    int rc = weft_sleep(s->latency_ms * WEFT_MS);
    if (rc == -ECANCELED)
        return outcome_new("fetch %-26s cancelled", s->url);
    return outcome_new("fetch %-26s %5d bytes in %d ms", s->url, 1000 + 37 * s->latency_ms,
                       s->latency_ms);
}

/* ------------------------------------------------------------------ */
/* Blocking functions: run on the blocking pool                        */
/* ------------------------------------------------------------------ */

typedef struct file_info {
    long bytes, lines;
    int err;
} file_info;

/* An ordinary blocking function: plain stdio, no weft calls.  It runs on a
 * pool thread, never on a worker. */
static void *read_file_blocking(void *arg)
{
    const char *path = arg;
    file_info *fi = calloc(1, sizeof *fi);
    if (!fi)
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        fi->err = errno;
        return fi;
    }
    int c;
    while ((c = getc(f)) != EOF) {
        fi->bytes++;
        fi->lines += c == '\n';
    }
    fclose(f);
    return fi;
}

/* CPU-heavy and blocking in its own way: it never reaches a suspension
 * point.  On a worker it would hold that worker for its whole run. */
static void *count_primes_blocking(void *arg)
{
    long n = (long)(intptr_t)arg, count = 0;
    for (long i = 2; i < n; i++) {
        bool prime = true;
        for (long d = 2; d * d <= i; d++) {
            if (i % d == 0) {
                prime = false;
                break;
            }
        }
        count += prime;
    }
    return (void *)(intptr_t)count;
}

/* Coroutine members that hand their blocking work to the pool. */
static void *read_file(void *arg)
{
    const char *path = arg;
    void *res = NULL;
    int rc = weft_to_thread(read_file_blocking, (void *)path, &res);
    file_info *fi = res;
    outcome *o;
    if (rc == -ECANCELED)
        o = outcome_new("read %-27s cancelled", path);  /* res is still set if it ran */
    else if (rc < 0)
        o = outcome_new("read %-27s failed: %s", path, strerror(-rc));
    else if (!fi)
        o = outcome_new("read %-27s out of memory", path);
    else if (fi->err)
        o = outcome_new("read %-27s %s", path, strerror(fi->err));
    else
        o = outcome_new("read %-27s %5ld bytes, %ld lines", path, fi->bytes, fi->lines);
    free(fi);
    return o;
}

static void *count_primes(void *arg)
{
    long n = (long)(intptr_t)arg;
    void *res = NULL;
    int rc = weft_to_thread(count_primes_blocking, arg, &res);
    if (rc < 0)
        return outcome_new("primes below %ld: %s", n, strerror(-rc));
    return outcome_new("primes below %-19ld %5ld (on a pool thread)", n, (long)(intptr_t)res);
}

/* ------------------------------------------------------------------ */

typedef struct args {
    const char *path;
} args;

static void *main_task(void *arg)
{
    args *a = arg;
    t0 = weft_now();
    weft_group *g = weft_group_new();
    if (!g) {
        perror("weft_group_new");
        return (void *)1;
    }
    size_t spawned = 0;
    for (size_t i = 0; i < NSITES; i++)
        spawned += weft_group_spawn(g, fetch, (void *)&SITES[i]) != NULL;
    spawned += weft_group_spawn(g, read_file, (void *)a->path) != NULL;
    spawned += weft_group_spawn(g, count_primes, (void *)(intptr_t)1000000) != NULL;
    printf("%zu jobs started on %u worker%s\n", spawned, weft_workers(),
           weft_workers() == 1 ? "" : "s");

    /* as_completed, with an overall deadline of 5 s. */
    int64_t deadline = weft_now() + 5 * WEFT_SEC;
    for (;;) {
        void *res = NULL;
        int rc = weft_group_next(g, &res, deadline);
        if (rc == -ENOENT)
            break;  /* all reported */
        if (rc == -ETIMEDOUT) {
            printf("%8.1f ms  deadline passed: cancelling the %zu left\n", ms_since_start(),
                   weft_group_size(g));
            break;
        }
        outcome *o = res;
        printf("%8.1f ms  %s%s\n", ms_since_start(), o ? o->text : "(out of memory)",
               rc == -ECANCELED ? " [cancelled]" : "");
        free(o);
    }
    /* Cancels and awaits anything still running; releases the rest (here,
     * after -ENOENT, there is nothing left). */
    weft_group_free(g);
    printf("%8.1f ms  done (the slowest fetch took 450 ms; everything ran at once)\n",
           ms_since_start());
    return NULL;
}

int main(int argc, char **argv)
{
    args a = {.path = argc > 1 ? argv[1] : "/proc/version"};
    void *res = NULL;
    int rc = weft_run(main_task, &a, &res);
    if (rc < 0) {
        fprintf(stderr, "weft_run: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
