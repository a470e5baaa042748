/*
 * stress_stack_wait_storm: tasks waiting in the stack pool's line (stack.c,
 * weft__stack_get) while stacks are freed, offered and handed on.
 *
 * WEFT_FAULTS=stacks:1 holds the runtime to its first extent: 64 stacks
 * for main, a walker coroutine and the burst tasks.  Each round, on 2
 * workers:
 *  - main and a plain thread spawn a burst of B tasks (several times the
 *    stacks there are), so most of them wait for a stack; each task counts
 *    itself among those holding a stack, fills 2 KiB of its stack with a
 *    pattern, yields or sleeps 0-1 ms (the other worker steals; sysmon's
 *    back-off sends the first in line to ask for more stacks, refused
 *    again), checks the pattern and counts its run;
 *  - finished tasks' stacks go to their worker's cache, and from there to
 *    whoever waits (weft__stack_offer, from stack_put and from a parking
 *    worker); main joins them all;
 *  - a coroutine and a plain thread dump every task (to /dev/null) and
 *    read the memory figures meanwhile.
 * Invariants:
 *  - every task ran exactly once with its stack pattern intact;
 *  - never more tasks held a stack at once than the 64 there are (less
 *    main's and the walker's), and no further stack was ever reserved;
 *  - the line was used (some round had more tasks than stacks at once);
 *  - nothing hangs: the watchdog aborts after 60 s without progress, so a
 *    lost wake-up of a waiting task is a failure.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#include <fcntl.h>

#define BURST STRESS_SCALE(600, 300)
#define PATTERN_WORDS (2 * 1024 / 8)
#define STACKS 64

static _Atomic uint32_t *ran;
static _Atomic uint64_t round_no, tasks_done, dumps, bad_pattern;
static _Atomic int holding, most_holding, stop;
static int devnull = -1;

static void dump(void)
{
    fprintf(stderr, "  round %" PRIu64 ", tasks %" PRIu64 ", holding %d\n",
            atomic_load(&round_no), atomic_load(&tasks_done), atomic_load(&holding));
}

static void *task_fn(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    int h = atomic_fetch_add(&holding, 1) + 1;
    int m = atomic_load(&most_holding);
    while (h > m && !atomic_compare_exchange_weak(&most_holding, &m, h))
        ;
    uint64_t seed = (i * 0x9E3779B97F4A7C15ULL) ^ (atomic_load(&round_no) << 40) ^ 1;
    volatile uint64_t buf[PATTERN_WORDS];
    for (size_t k = 0; k < PATTERN_WORDS; k++)
        buf[k] = seed + k;
    switch ((seed >> 7) % 3) {
    case 0: weft_yield(); break;
    case 1: weft_sleep((int64_t)((seed >> 9) % 1000) * WEFT_US); break;
    default: break;
    }
    for (size_t k = 0; k < PATTERN_WORDS; k++)
        if (buf[k] != seed + k) {
            atomic_fetch_add(&bad_pattern, 1);
            break;
        }
    atomic_fetch_sub(&holding, 1);
    atomic_fetch_add(&ran[i], 1);
    atomic_fetch_add(&tasks_done, 1);
    stress_progress();
    return NULL;
}

typedef struct {
    uintptr_t lo, hi;
    weft_task **t;
} half_t;

static void spawn_range(half_t *h)
{
    for (uintptr_t i = h->lo; i < h->hi; i++) {
        h->t[i] = weft_spawn(task_fn, (void *)i);
        CHECK(h->t[i] != NULL, "spawn failed: %s", strerror(errno));
    }
}

static void *spawn_thread(void *arg)
{
    spawn_range(arg);
    return NULL;
}

static void look_once(void)
{
    weft_memory_stats m;
    CHECK(weft_memory_stats_get(&m) == 0, "weft_memory_stats_get failed");
    CHECK(m.stacks_reserved == STACKS, "%" PRIu64 " stacks reserved (stacks:1 allows %d)",
          m.stacks_reserved, STACKS);
    CHECK(weft_dump(devnull) == 0, "weft_dump failed");
    atomic_fetch_add(&dumps, 1);
}

static void *walker_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        look_once();
        stress_os_sleep_ns(2 * WEFT_MS);
    }
    return NULL;
}

static _Atomic bool walker_started;

static void *walker_co(void *arg)
{
    (void)arg;
    atomic_store(&walker_started, true);  /* it holds its stack from here */
    while (!atomic_load(&stop)) {
        look_once();
        weft_sleep(3 * WEFT_MS);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    pthread_t th;
    if (pthread_create(&th, NULL, walker_thread, NULL) != 0)
        abort();
    weft_task *wc = weft_spawn(walker_co, NULL);
    /* The walker's stack first, so that the bound below (64 less main's
     * and the walker's) holds from the first burst: before this, a burst
     * could take 63 while the walker still waited in the line. */
    while (!atomic_load(&walker_started))
        weft_yield();
    weft_task **t = calloc(BURST, sizeof *t);
    ran = calloc(BURST, sizeof *ran);
    while (!stress_time_up() && !stress_failed()) {
        for (size_t i = 0; i < BURST; i++)
            atomic_store(&ran[i], 0);
        half_t h1 = {0, BURST / 2, t}, h2 = {BURST / 2, BURST, t};
        pthread_t sp;
        if (pthread_create(&sp, NULL, spawn_thread, &h2) != 0)
            abort();
        spawn_range(&h1);
        pthread_join(sp, NULL);
        for (size_t i = 0; i < BURST; i++)
            if (t[i])
                CHECK(weft_join(t[i], NULL) == 0, "join failed");
        for (size_t i = 0; i < BURST; i++)
            CHECK(atomic_load(&ran[i]) == 1, "round %" PRIu64 ": task %zu ran %u times",
                  atomic_load(&round_no), i, atomic_load(&ran[i]));
        atomic_fetch_add(&round_no, 1);
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    CHECK(weft_join(wc, NULL) == 0, "walker join failed");
    CHECK(atomic_load(&bad_pattern) == 0, "%" PRIu64 " tasks found their stack pattern changed",
          atomic_load(&bad_pattern));
    int most = atomic_load(&most_holding);
    CHECK(most <= STACKS - 2, "%d tasks held a stack at once (%d stacks, 2 for main and walker)",
          most, STACKS);
    CHECK(most >= STACKS / 2, "at most %d tasks held a stack at once: the line was not used",
          most);
    fprintf(stderr, "stress_stack_wait_storm: at most %d tasks held a stack at once\n", most);
    free(t);
    free(ran);
    return NULL;
}

int main(void)
{
    setenv("WEFT_FAULTS", "stacks:1", 1);
    setenv("WEFT_SEED", "1", 0);
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    stress_init("stress_stack_wait_storm", 4.0, dump);
    stress_run(2, main_task, NULL);
    close(devnull);
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks, %" PRIu64 " dumps",
                         atomic_load(&round_no), atomic_load(&tasks_done), atomic_load(&dumps));
}
