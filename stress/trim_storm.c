/*
 * stress_trim_storm: the memory trimmer (runtime/trim.c) giving stacks and
 * task slabs back while tasks are spawned, stolen and finished, and while
 * other threads walk the registry, dump every task and read the memory
 * figures.
 *
 * The trimmer's window is 8 ms here (WEFT_TRIM_MS, unless set), so it runs
 * between most rounds.  Each round, on 2 workers:
 *  - main spawns a burst of B tasks (in two halves, from main and from a
 *    helper coroutine, so the second worker steals); each task fills 6 KiB
 *    of its own stack with a pattern made from its number, yields or sleeps
 *    0-2 ms (when the trimmer may run, and when it may move), then checks
 *    the pattern and counts its run;
 *  - main joins them all, then pauses 0-30 ms (a pause longer than the
 *    window lets the trimmer give back what the burst took; until one
 *    pause has seen the workers' caches given back, every second one is
 *    five windows long);
 *  - two plain threads and a coroutine loop over weft_tasks_foreach,
 *    weft_dump (to /dev/null) and weft_memory_stats_get.
 * A worker that parks gives back what its own caches of stacks and slots
 * did not use over the window (trim.c, weft__trim_caches): mid-burst when
 * one worker runs dry before the other, during the pauses, and while the
 * other worker spawns, steals and finishes tasks.
 * Task slots freed on the second worker come back to main's spawns through
 * the spare stack (registry.c), which the trimmer drains into the slabs
 * whenever it sits still for a quarter window (the pauses).
 * Invariants:
 *  - every task ran exactly once (a slot handed out twice loses a task),
 *    and found its stack pattern intact (a
 *    stack trimmed or handed out while in use would read zeros or another
 *    task's pattern);
 *  - every entry a walk visits has a nonzero id, a state READY, RUNNING,
 *    WAITING or BLOCKING and a worker -1, 0 or 1 (a trimmed slot must read
 *    as free, never as a task); every call returns 0;
 *  - the memory figures hold together (idle stacks never more than the
 *    reserved ones, idle and clean slabs never more than the slabs, the
 *    workers' caches never above their bound of 64 stacks and 64 slots
 *    each);
 *  - by the end the trimmer gave back stacks and slabs (else this program
 *    tested nothing), and a burst ran on stacks it had given back (it
 *    needed more than the warm ones, and none was reserved anew), and the
 *    workers' caches gave back what a burst had left in them during a
 *    pause (their figures fell to zero).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define WEFT_SLAB_BYTES (128 * 1024)  /* runtime/internal.h: WEFT__SLAB_BYTES */

#include <fcntl.h>

#define BURST STRESS_SCALE(4000, 2000)
#define PATTERN_WORDS (6 * 1024 / 8)
#define NWALKERS 2

static _Atomic uint32_t *ran;     /* per task of the current round */
static _Atomic uint64_t round_no, tasks_done, walks, entries, dumps, bad_pattern, caches_emptied;
static _Atomic int stop;
static int devnull = -1;
static int trim_window_ms;        /* WEFT_TRIM_MS as the run has it */

static void dump(void)
{
    fprintf(stderr, "  round %" PRIu64 ", tasks %" PRIu64 ", walks %" PRIu64 "\n",
            atomic_load(&round_no), atomic_load(&tasks_done), atomic_load(&walks));
}

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return x;
}

static void *task_fn(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    uint64_t seed = mix(i ^ (atomic_load(&round_no) << 32)) | 1;
    volatile uint64_t buf[PATTERN_WORDS];
    for (size_t k = 0; k < PATTERN_WORDS; k++)
        buf[k] = seed + k;
    switch (seed % 4) {
    case 0: weft_yield(); break;
    case 1: weft_sleep((int64_t)(seed % 2000) * WEFT_US); break;
    case 2: weft_sleep(0); break;
    default: break;
    }
    for (size_t k = 0; k < PATTERN_WORDS; k++)
        if (buf[k] != seed + k) {
            atomic_fetch_add(&bad_pattern, 1);
            break;
        }
    atomic_fetch_add(&ran[i], 1);
    atomic_fetch_add(&tasks_done, 1);
    stress_progress();
    return NULL;
}

typedef struct {
    uintptr_t lo, hi;
    weft_task **t;
} half_t;

static void *spawn_half(void *arg)
{
    half_t *h = arg;
    for (uintptr_t i = h->lo; i < h->hi; i++) {
        h->t[i] = weft_spawn(task_fn, (void *)i);
        CHECK(h->t[i] != NULL, "spawn failed: %s", strerror(errno));
    }
    return NULL;
}

static int visit(const weft_task_info *info, void *ctx)
{
    (void)ctx;
    atomic_fetch_add_explicit(&entries, 1, memory_order_relaxed);
    CHECK(info->id != 0, "a walk visited a task with id 0 (a trimmed slot read as a task?)");
    CHECK(info->state >= WEFT_TASK_READY && info->state <= WEFT_TASK_BLOCKING,
          "a walk visited task %" PRIu64 " in state %d", info->id, info->state);
    CHECK(info->worker >= -1 && info->worker <= 1, "task %" PRIu64 " on worker %d", info->id,
          info->worker);
    return 0;
}

static void walk_once(void)
{
    CHECK(weft_tasks_foreach(visit, NULL) == 0, "weft_tasks_foreach failed");
    weft_memory_stats m;
    CHECK(weft_memory_stats_get(&m) == 0, "weft_memory_stats_get failed");
    CHECK(m.stacks_idle_warm + m.stacks_idle_clean <= m.stacks_reserved,
          "idle stacks %" PRIu64 " + %" PRIu64 " > reserved %" PRIu64, m.stacks_idle_warm,
          m.stacks_idle_clean, m.stacks_reserved);
    CHECK(m.slabs_idle + m.slabs_clean <= m.slabs, "idle slabs %" PRIu64 " + %" PRIu64
          " > slabs %" PRIu64, m.slabs_idle, m.slabs_clean, m.slabs);
    uint64_t cs = 0, ct = 0;
    CHECK(weft_memory_cached_get(&cs, &ct) == 0, "weft_memory_cached_get failed");
    /* A stack cache holds 64 at most (65 for the moment between a free's
     * count and its give-back, stack.c).  A slot cache has no such bound: a
     * worker whose give-back finds the spare stack full and task_lock
     * taken keeps its slots and tries again at its next free (registry.c),
     * so only a count that reads as more slots than the slabs have (an
     * underflow, a slot counted twice) is wrong. */
    uint64_t capacity = m.slabs * ((WEFT_SLAB_BYTES - 4096) / m.task_slot_size);
    CHECK(cs <= 2 * 65 && ct <= capacity,
          "the workers' caches hold %" PRIu64 " stacks (65 each at most) and %" PRIu64
          " slots (%" PRIu64 " in the slabs)", cs, ct, capacity);
    if (atomic_fetch_add(&walks, 1) % 8 == 0) {
        CHECK(weft_dump(devnull) == 0, "weft_dump failed");
        atomic_fetch_add(&dumps, 1);
    }
}

static void *walker_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        walk_once();
        stress_os_sleep_ns(200 * WEFT_US);
    }
    return NULL;
}

static void *walker_co(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        walk_once();
        weft_sleep(300 * WEFT_US);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    pthread_t th[NWALKERS];
    for (int i = 0; i < NWALKERS; i++)
        if (pthread_create(&th[i], NULL, walker_thread, NULL) != 0)
            abort();
    weft_task *wc = weft_spawn(walker_co, NULL);
    weft_task **t = calloc(BURST, sizeof *t);
    ran = calloc(BURST, sizeof *ran);
    uint64_t rng = rng_seed();
    bool reused_after_trim = false;
    while (!stress_time_up() && !stress_failed()) {
        weft_memory_stats before;
        weft_memory_stats_get(&before);
        for (size_t i = 0; i < BURST; i++)
            atomic_store(&ran[i], 0);
        half_t h1 = {0, BURST / 2, t}, h2 = {BURST / 2, BURST, t};
        weft_task *helper = weft_spawn(spawn_half, &h2);
        spawn_half(&h1);
        CHECK(weft_join(helper, NULL) == 0, "helper join failed");
        for (size_t i = 0; i < BURST; i++)
            if (t[i])
                CHECK(weft_join(t[i], NULL) == 0, "join failed");
        for (size_t i = 0; i < BURST; i++)
            CHECK(atomic_load(&ran[i]) == 1, "round %" PRIu64 ": task %zu ran %u times",
                  atomic_load(&round_no), i, atomic_load(&ran[i]));
        weft_memory_stats after;
        weft_memory_stats_get(&after);
        uint64_t after_s = 0, after_t = 0;
        weft_memory_cached_get(&after_s, &after_t);
        /* The burst needed more stacks than the pool's warm ones and the
         * workers' caches (64 each) could give, and no new one was
         * reserved: it ran on stacks the trimmer had given back. */
        if (before.stacks_idle_clean > 0 && after.stacks_reserved == before.stacks_reserved &&
            BURST > before.stacks_idle_warm + 2 * 64 + 2)
            reused_after_trim = true;
        atomic_fetch_add(&round_no, 1);
        uint64_t pause = rng_below(&rng, 31);
        /* Until a pause has seen the caches given back, every second one
         * is five windows long: under a sanitizer a round takes about a
         * second, and four drawn pauses all shorter than the window plus
         * the parks it needs failed the run once (CI, TSan). */
        if (atomic_load(&caches_emptied) == 0 && atomic_load(&round_no) % 2 == 1)
            pause = 5 * (uint64_t)trim_window_ms;
        weft_sleep((int64_t)pause * WEFT_MS);
        uint64_t later_s = 0, later_t = 0;
        weft_memory_cached_get(&later_s, &later_t);
        if (after_s + after_t > 0 && later_s == 0 && later_t == 0)
            atomic_fetch_add(&caches_emptied, 1);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NWALKERS; i++)
        pthread_join(th[i], NULL);
    CHECK(weft_join(wc, NULL) == 0, "walker join failed");
    weft_memory_stats m;
    CHECK(weft_memory_stats_get(&m) == 0, "weft_memory_stats_get failed");
    CHECK(atomic_load(&bad_pattern) == 0, "%" PRIu64 " tasks found their stack pattern changed",
          atomic_load(&bad_pattern));
    CHECK(m.stacks_trimmed > 0, "the trimmer gave back no stack");
    CHECK(m.slabs_trimmed > 0, "the trimmer gave back no slab");
    CHECK(reused_after_trim, "no burst ran on stacks given back by the trimmer");
    CHECK(atomic_load(&caches_emptied) > 0,
          "no pause saw the workers' caches give back what a burst left in them");
    fprintf(stderr,
            "stress_trim_storm: %" PRIu64 " stacks and %" PRIu64 " slabs trimmed, caches "
            "emptied in %" PRIu64 " pauses\n",
            m.stacks_trimmed, m.slabs_trimmed, atomic_load(&caches_emptied));
    free(t);
    free(ran);
    return NULL;
}

int main(void)
{
    setenv("WEFT_TRIM_MS", "8", 0);
    trim_window_ms = atoi(getenv("WEFT_TRIM_MS"));
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    stress_init("stress_trim_storm", 4.0, dump);
    stress_run(2, main_task, NULL);
    close(devnull);
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks, %" PRIu64 " walks (%" PRIu64
                         " entries), %" PRIu64 " dumps",
                         atomic_load(&round_no), atomic_load(&tasks_done), atomic_load(&walks),
                         atomic_load(&entries), atomic_load(&dumps));
}
