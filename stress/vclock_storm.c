/*
 * stress_vclock_storm: the virtual clock (runtime/vclock.c) on several
 * workers, under TSan in CI.  Tasks sleep drawn durations, wait with
 * deadlines on events nobody sets, take a mutex, and call the blocking pool
 * (a hold), while others spawn and yield: the clock must jump only when
 * every worker is idle.
 *
 * Invariants:
 *  - a sleep wakes at exactly its deadline (weft_now() == deadline), and a
 *    timed-out wait at exactly its deadline: the clock never overshoots a
 *    timer nor fires one early;
 *  - the clock stands still across a blocking-pool call (the job holds it)
 *    and across a mutex section with a yield in it (a runnable task holds
 *    it back);
 *  - a byte in flight holds the clock: a read with a deadline whose peer
 *    writes (from another task, after a drawn number of yields) gets the
 *    byte at the instant it began, although every other task sleeps on a
 *    timer the clock could jump to (the driver that took the edge queued
 *    the reader on its own worker, still counted as parked: park.c,
 *    weft__poll_ready);
 *  - the clock never goes backwards as seen by one task;
 *  - every task runs once and the counts add up; no deadlock is reported.
 *
 * Default 4 s of real time; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define NTASKS STRESS_SCALE(200, 40)

static _Atomic uint64_t sleeps, timeouts, pool_calls, sections, flights, rounds;
static weft_mutex mu;
static long shared;

static void dump(void)
{
    fprintf(stderr, "  rounds %" PRIu64 ", sleeps %" PRIu64 ", timeouts %" PRIu64 ", pool %" PRIu64
                    ", sections %" PRIu64 ", in flight %" PRIu64 ", now %" PRId64 " ns\n",
            atomic_load(&rounds), atomic_load(&sleeps), atomic_load(&timeouts),
            atomic_load(&pool_calls), atomic_load(&sections), atomic_load(&flights), weft_now());
}

static void *pool_fn(void *arg)
{
    stress_os_sleep_ns((int64_t)(uintptr_t)arg);
    return arg;
}

/* The writer of case 4: some yields, then one byte. */
static void *flight_writer(void *arg)
{
    int fd = (int)((uintptr_t)arg & 0xffff);
    for (uintptr_t i = (uintptr_t)arg >> 16; i > 0; i--)
        weft_yield();
    CHECK(weft_write(fd, "x", 1, WEFT_FOREVER) == 1, "write failed");
    return NULL;
}

static void *task(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg | 1;
    int64_t last = weft_now();
    for (int i = 0; i < 6; i++) {
        int64_t t0 = weft_now();
        CHECK(t0 >= last, "the clock went back: %" PRId64 " after %" PRId64, t0, last);
        switch (rng_below(&r, 5)) {
        case 0: {
            int64_t d = t0 + 1 + (int64_t)rng_below(&r, 5000000);
            CHECK(weft_sleep_until(d) == 0, "sleep failed");
            CHECK(weft_now() == d, "woke at %" PRId64 ", deadline %" PRId64, weft_now(), d);
            atomic_fetch_add(&sleeps, 1);
            break;
        }
        case 1: {
            weft_event e;
            weft_event_init(&e);
            int64_t d = t0 + (int64_t)rng_below(&r, 3000000);
            CHECK(weft_event_wait(&e, d) == -ETIMEDOUT, "wait did not time out");
            CHECK(weft_now() == d, "timed out at %" PRId64 ", deadline %" PRId64, weft_now(), d);
            atomic_fetch_add(&timeouts, 1);
            break;
        }
        case 2: {
            void *res = NULL;
            uintptr_t ns = 1000 + rng_below(&r, 200000);
            CHECK(weft_to_thread(pool_fn, (void *)ns, &res) == 0 && res == (void *)ns,
                  "to_thread failed");
            CHECK(weft_now() == t0, "the clock moved across a pool call: %" PRId64 " -> %" PRId64,
                  t0, weft_now());
            atomic_fetch_add(&pool_calls, 1);
            break;
        }
        case 3: {
            int sv[2];
            CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
                  "socketpair failed");
            uintptr_t a = (uintptr_t)sv[1] | (uintptr_t)rng_below(&r, 4) << 16;
            weft_task *wr = weft_spawn(flight_writer, (void *)a);
            CHECK(wr != NULL, "spawn failed");
            char b;
            ssize_t n = weft_read(sv[0], &b, 1, t0 + WEFT_SEC);
            CHECK(n == 1, "read said %zd", n);
            CHECK(weft_now() == t0, "the clock moved with a byte in flight: %" PRId64 " -> %" PRId64,
                  t0, weft_now());
            CHECK(wr && weft_join(wr, NULL) == 0, "join failed");
            weft_close(sv[0]);
            weft_close(sv[1]);
            atomic_fetch_add(&flights, 1);
            break;
        }
        default:
            weft_mutex_lock(&mu);
            int64_t in = weft_now();
            long v = shared;
            weft_yield();  /* runnable: the clock may not move */
            shared = v + 1;
            CHECK(weft_now() == in, "the clock moved while a task was runnable");
            weft_mutex_unlock(&mu);
            atomic_fetch_add(&sections, 1);
            break;
        }
        last = weft_now();
        stress_progress();
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_mutex_init(&mu);
    uint64_t seed = rng_seed();
    weft_task **h = malloc(sizeof *h * NTASKS);
    do {
        for (int i = 0; i < NTASKS; i++)
            h[i] = weft_spawn(task, (void *)(uintptr_t)(seed + (uint64_t)i * 7919 + atomic_load(&rounds)));
        for (int i = 0; i < NTASKS; i++)
            CHECK(h[i] && weft_join(h[i], NULL) == 0, "join failed");
        atomic_fetch_add(&rounds, 1);
    } while (!stress_time_up() && !stress_failed());
    free(h);
    CHECK(shared == (long)atomic_load(&sections), "mutex sections %ld, counted %" PRIu64, shared,
          atomic_load(&sections));
    return NULL;
}

int main(void)
{
    setenv("WEFT_CLOCK", "virtual", 1);
    stress_init("stress_vclock_storm", 4.0, dump);
    stress_run(2, main_task, NULL);
    CHECK(atomic_load(&rounds) > 0, "no round completed");
    return stress_finish("%" PRIu64 " rounds: %" PRIu64 " exact sleeps, %" PRIu64
                         " exact timeouts, %" PRIu64 " pool calls and %" PRIu64
                         " mutex sections and %" PRIu64 " bytes in flight with the clock still",
                         atomic_load(&rounds), atomic_load(&sleeps), atomic_load(&timeouts),
                         atomic_load(&pool_calls), atomic_load(&sections), atomic_load(&flights));
}
