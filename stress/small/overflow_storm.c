/*
 * stress_small_overflow_storm: bursts of spawns from coroutines on 3
 * workers, built only against the small-queues library (weft_small,
 * WEFT__RUNQ_SIZE 4, WEFT__LIFO_MAX 2, WEFT__INJECT_EVERY 7): a spawn goes
 * to the spawner's LIFO slot and pushes the previous one to its ring, so a
 * burst of more than 5 overflows the ring into the injection queue every
 * few spawns (half the ring plus the new task each time); idle workers
 * steal at most 2 at a time, and the tasks' own yields and child bursts
 * overflow the rings they run on in turn.
 *
 * Each round: NSP spawner coroutines each spawn BURSTS bursts of 5-40
 * tasks and gather them; 1 task in 8 spawns a burst of children and
 * gathers those, 1 in 4 yields 1-3 times.  Every 16th burst is preceded by
 * steal bait: 4 tasks (no overflow) left in the spawner's queues while it
 * runs 0.5 ms without a suspension point, for the idle workers to steal.
 * Invariants: every task's function runs exactly once (a per-task counter
 * catches a task lost in, or doubled by, the overflow and steal paths);
 * every gather returns 0 with each task's own result; per round, tasks
 * finished == tasks spawned and the sum of the ids the tasks saw equals
 * the sum of the ids spawned.
 *
 * Then, that the overflow and the steals really happen: weft_stats_get at
 * the end (every task joined, so each task that went through the
 * injection queue has been taken out of it and counted) must show steals,
 * and injected tasks well beyond the one main task that weft_run injects:
 * nothing here is spawned or woken from a plain thread, so every other
 * injected task came from a full ring.  With the default 256-slot rings
 * these bursts never overflow (injected stays at 1).
 *
 * Default 3 s; WEFT_STRESS_SECONDS for longer.
 */
#include "../stress.h"

#if !defined(WEFT__RUNQ_SIZE) || WEFT__RUNQ_SIZE > 8
#error "overflow_storm links weft_small (stress/small/CMakeLists.txt): WEFT__RUNQ_SIZE 4"
#endif

#define NSP 3                        /* spawner coroutines, one per worker */
#define BURSTS STRESS_SCALE(40, 8)   /* bursts per spawner per round */
#define BURST_MIN 5
#define BURST_MAX 40
#define CHILDREN 6                   /* a child burst */
#define CHILD_BIT ((uintptr_t)1 << 62)
#define BAIT 4                       /* runnext + 3 in the ring: no overflow */
#define BAIT_NS (500 * WEFT_US)

typedef struct {
    size_t cap;
    _Atomic uint32_t *ran;           /* per task id: runs */
    _Atomic uint64_t next_id, finished, id_sum_seen, id_sum_spawned;
} round_t;

static round_t *R;
static _Atomic uint64_t total_spawned, rounds_done, total_yields;
static _Atomic int phase;

static void dump(void)
{
    round_t *r = R;
    fprintf(stderr, "  phase %d, rounds %" PRIu64 ", spawned %" PRIu64 "\n", atomic_load(&phase),
            atomic_load(&rounds_done), atomic_load(&total_spawned));
    if (r) {
        uint64_t n = atomic_load(&r->next_id);
        fprintf(stderr, "  this round: %" PRIu64 " spawned, %" PRIu64 " finished;", n,
                atomic_load(&r->finished));
        stress_list_never_ran(r->ran, n, r->cap);
    }
}

static inline void *expect_of(uint64_t id) { return (void *)(uintptr_t)(id * 2 + 1); }

static uint64_t alloc_id(void)
{
    uint64_t id = atomic_fetch_add(&R->next_id, 1);
    if (id >= R->cap) {
        FAIL("id space exhausted (%" PRIu64 " >= %zu): test bug", id, R->cap);
        abort();
    }
    atomic_fetch_add_explicit(&R->id_sum_spawned, id, memory_order_relaxed);
    atomic_fetch_add_explicit(&total_spawned, 1, memory_order_relaxed);
    return id;
}

static void *task_fn(void *arg);

/* Spawns n tasks (ids allocated here; CHILD_BIT in flags for children),
 * spins spin_ns without a suspension point, then gathers them and checks
 * their results. */
static void spawn_gather(size_t n, uintptr_t flags, int64_t spin_ns, const char *what)
{
    weft_task *ts[BURST_MAX];
    uint64_t ids[BURST_MAX];
    void *res[BURST_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = alloc_id();
        weft_task *t = weft_spawn(task_fn, (void *)(uintptr_t)(id | flags));
        CHECK(t, "weft_spawn from a coroutine failed: errno %d", errno);
        if (!t) {
            /* Never ran: keep the round's books straight. */
            atomic_fetch_add(&R->ran[id], 1);
            atomic_fetch_add(&R->finished, 1);
            atomic_fetch_add(&R->id_sum_seen, id);
            continue;
        }
        ts[k] = t;
        ids[k++] = id;
    }
    if (spin_ns)
        stress_spin_ns(spin_ns);
    int rc = weft_gather(ts, k, res);
    CHECK(rc == 0, "weft_gather of %s of %zu returned %d", what, k, rc);
    for (size_t i = 0; i < k; i++)
        CHECK(res[i] == expect_of(ids[i]), "%s task %" PRIu64 ": result %p, expected %p", what,
              ids[i], res[i], expect_of(ids[i]));
}

static void burst(size_t n, bool children)
{
    spawn_gather(n, children ? CHILD_BIT : 0, 0, "a burst");
}

/* Steal bait: BAIT tasks fit the spawner's runnext and ring without
 * overflowing, and the spawner then runs BAIT_NS without a suspension
 * point, so an idle worker finds nothing in the injection queue and must
 * steal them (bursts alone mostly feed the others through the injection
 * queue: a slow run, under a sanitizer, might see no steal at all). */
static void bait(void)
{
    spawn_gather(BAIT, CHILD_BIT, BAIT_NS, "the bait");
}

static void *task_fn(void *arg)
{
    uintptr_t a = (uintptr_t)arg;
    uint64_t id = a & ~CHILD_BIT;
    uint32_t old = atomic_fetch_add(&R->ran[id], 1);
    CHECK(old == 0, "task %" PRIu64 " ran %u times", id, old + 1);
    atomic_fetch_add_explicit(&R->id_sum_seen, id, memory_order_relaxed);
    uint64_t h = id * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    if (!(a & CHILD_BIT) && h % 8 == 0) {
        burst(CHILDREN, true);
    } else if (h % 4 == 1) {
        for (uint64_t y = 0; y <= (h >> 8) % 3; y++) {
            int rc = weft_yield();
            CHECK(rc == 0, "weft_yield returned %d", rc);
            atomic_fetch_add_explicit(&total_yields, 1, memory_order_relaxed);
        }
    }
    atomic_fetch_add(&R->finished, 1);
    stress_progress();
    return expect_of(id);
}

static void *spawner_co(void *arg)
{
    uint64_t seed = rng_seed() ^ (uintptr_t)arg;
    for (int b = 0; b < BURSTS; b++) {
        if (b % 16 == 0)
            bait();
        burst(BURST_MIN + rng_below(&seed, BURST_MAX - BURST_MIN + 1), false);
        if (rng_below(&seed, 4) == 0)
            weft_yield();
    }
    return NULL;
}

static void run_round(void)
{
    round_t *r = calloc(1, sizeof *r);
    /* Top-level tasks, a child burst for up to 1 in 8 of them, the bait. */
    size_t top = (size_t)NSP * BURSTS * BURST_MAX;
    r->cap = top + top / 8 * CHILDREN + (size_t)NSP * BURSTS * BAIT + 1024;
    r->ran = calloc(r->cap, sizeof *r->ran);
    R = r;
    atomic_store(&phase, 1);
    weft_task *sp[NSP];
    for (int i = 0; i < NSP; i++) {
        sp[i] = weft_spawn(spawner_co, (void *)(uintptr_t)(i + 1));
        CHECK(sp[i], "weft_spawn of a spawner failed");
    }
    for (int i = 0; i < NSP; i++)
        if (sp[i]) {
            int rc = weft_join(sp[i], NULL);
            CHECK(rc == 0, "join of spawner %d returned %d", i, rc);
        }
    /* Every task was gathered: all have finished. */
    uint64_t n = atomic_load(&r->next_id);
    CHECK(atomic_load(&r->finished) == n, "round %" PRIu64 ": %" PRIu64 " finished of %" PRIu64
          " spawned", atomic_load(&rounds_done), atomic_load(&r->finished), n);
    CHECK(atomic_load(&r->id_sum_seen) == atomic_load(&r->id_sum_spawned),
          "round %" PRIu64 ": the tasks saw ids summing to %" PRIu64 ", spawned %" PRIu64,
          atomic_load(&rounds_done), atomic_load(&r->id_sum_seen),
          atomic_load(&r->id_sum_spawned));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = atomic_load(&r->ran[i]);
        CHECK(v == 1, "round %" PRIu64 ": task %" PRIu64 " ran %u times",
              atomic_load(&rounds_done), i, v);
    }
    atomic_fetch_add(&rounds_done, 1);
    stress_progress();
    atomic_store(&phase, 0);
    R = NULL;
    free(r->ran);
    free(r);
}

static weft_stats stats;
static int stats_rc;

static void *main_task(void *arg)
{
    (void)arg;
    CHECK(weft_workers() >= 2, "want at least 2 workers, have %u", weft_workers());
    do
        run_round();
    while (!stress_time_up() && !stress_failed());
    /* Read while the runtime runs (after it, weft_stats_get says -EPERM). */
    stats_rc = weft_stats_get(&stats);
    return NULL;
}

int main(void)
{
    stress_init("stress_small_overflow_storm", 3.0, dump);
    stress_run(3, main_task, NULL);
    uint64_t spawned = atomic_load(&total_spawned);
    if (stats_rc == -ENOTSUP) {
        fprintf(stderr, "%s: libweft built with WEFT_OBSERVE=OFF: overflow not measured\n",
                stress_name);
    } else {
        CHECK(stats_rc == 0, "weft_stats_get returned %d", stats_rc);
        /* Every burst of more than 5 overflows at least once (3 tasks to
         * the injection queue); with BURST_MIN..BURST_MAX that is a good
         * part of all tasks.  1 in 16 is far below what happens, far above
         * the 1 (main) of a build whose rings never overflow. */
        CHECK(stats.injected > 1 && stats.injected >= spawned / 16,
              "only %" PRIu64 " tasks went through the injection queue for %" PRIu64
              " spawned from coroutines: the rings did not overflow (is the library "
              "built with WEFT__RUNQ_SIZE=%u, as this program is?)",
              stats.injected, spawned, (unsigned)WEFT__RUNQ_SIZE);
        CHECK(stats.steals > 0, "no steals in %" PRIu64 " tasks on %u workers", spawned,
              stats.workers);
    }
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " tasks spawned, %" PRIu64
                         " yields; %" PRIu64 " injected (%.0f%% of spawned), %" PRIu64
                         " stolen in %" PRIu64 " attempts",
                         atomic_load(&rounds_done), spawned, atomic_load(&total_yields),
                         stats.injected, spawned ? 100.0 * (double)stats.injected / (double)spawned : 0.0,
                         stats.steals, stats.steal_attempts);
}
