/*
 * blocking-floor: the floor under "weft-bench blocking N C" on this machine.
 *
 *   blocking-floor N C            C plain threads started now, each sleeping
 *                                 1 ms N/C times; ns per sleep (wall)
 *   PRESTART=1 blocking-floor N C the same with the threads started before the
 *                                 clock starts (no thread creation measured)
 *
 * No runtime, no hand-off, no queue: each thread just sleeps.  Whatever a
 * blocking pool does, it cannot do better than this, since each of its calls
 * is at least this one thread sleeping and waking (two context switches).
 * The ideal of the benchmark, N / C x 1 ms, assumes context switches are
 * free; on a 2-CPU VM they are not (docs/blocking.md, "Performance").
 * Output in weft-bench's format: "floor X ns/op N ops".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static long per;
static int prestart;
static pthread_barrier_t bar;

static void *sleeper(void *arg)
{
    (void)arg;
    /* As weft's pool threads: a 1 ms sleep takes 1 ms, not 1.05. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (prestart)
        pthread_barrier_wait(&bar);
    struct timespec ts = {0, 1000000};
    for (long i = 0; i < per; i++)
        nanosleep(&ts, NULL);
    return NULL;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3 || atol(argv[1]) <= 0 || atol(argv[2]) <= 0) {
        fprintf(stderr, "usage: blocking-floor N C\n");
        return 2;
    }
    long n = atol(argv[1]), c = atol(argv[2]);
    per = n / c > 0 ? n / c : 1;
    prestart = getenv("PRESTART") != NULL;
    pthread_t *t = malloc(sizeof *t * (size_t)c);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);  /* as weft's pool threads */
    pthread_barrier_init(&bar, NULL, (unsigned)c + 1);
    double t0 = now_ns();
    for (long i = 0; i < c; i++)
        if (pthread_create(&t[i], &a, sleeper, NULL)) {
            perror("pthread_create");
            return 1;
        }
    if (prestart) {
        t0 = now_ns();
        pthread_barrier_wait(&bar);
    }
    for (long i = 0; i < c; i++)
        pthread_join(t[i], NULL);
    double ns = now_ns() - t0;
    printf("floor %.1f ns/op %ld ops (ideal %.1f ns/op)\n", ns / (double)(per * c), per * c,
           1e6 / (double)c);
    free(t);
    return 0;
}
