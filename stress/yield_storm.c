/*
 * stress_yield_storm: many tasks yielding many times on 2 workers, all
 * spawned from one coroutine so the other worker has to steal (and the
 * tasks migrate back and forth as the rings drain and refill).
 *
 * Invariants:
 *  - every weft_yield returns 0, and each task counts exactly its Y yields
 *    (checked when joined; the total equals tasks * Y);
 *  - each task observed progress: a sampler coroutine checks every 250 ms
 *    that no unfinished task stood still for 5 s while others advanced
 *    (starvation; generous, since the OS itself may stall a worker for
 *    hundreds of milliseconds on a loaded machine);
 *  - both workers ran tasks (weft_worker_id() seen by the tasks covers at
 *    least two workers), and tasks resumed on another worker than the one
 *    they yielded on (migration through stealing) - reported, and required
 *    to have happened at least once over the run;
 *  - weft_self() is stable across yields and weft_worker_id() is always a
 *    valid id.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define NTASKS STRESS_SCALE(256, 48)
#define NYIELDS STRESS_SCALE(2000, 150)
#define MAXW 64

typedef struct {
    _Atomic uint64_t count;     /* yields done (written by the task) */
    _Atomic int done;
    uint64_t seen_at_sample;    /* sampler's bookkeeping */
    int stalled_samples;
} tstate;

static tstate *st;
static _Atomic int round_live;
static _Atomic uint64_t worker_mask, migrations, total_yields, n_rounds, n_tasks_total;

static void dump(void)
{
    fprintf(stderr, "  rounds %" PRIu64 ", yields %" PRIu64 ", worker mask %#" PRIx64 "\n",
            atomic_load(&n_rounds), atomic_load(&total_yields), atomic_load(&worker_mask));
    if (st && atomic_load(&round_live)) {
        fprintf(stderr, "  unfinished tasks (index:count):");
        int shown = 0;
        for (int i = 0; i < NTASKS && shown < 20; i++)
            if (!atomic_load(&st[i].done)) {
                fprintf(stderr, " %d:%" PRIu64, i, atomic_load(&st[i].count));
                shown++;
            }
        fprintf(stderr, "\n");
    }
}

static void *yielder(void *arg)
{
    tstate *s = arg;
    weft_task *self = weft_self();
    unsigned nw = weft_workers();
    uint64_t mask = 0, migr = 0;
    int w = weft_worker_id();
    for (int i = 0; i < NYIELDS; i++) {
        CHECK(w >= 0 && (unsigned)w < nw, "weft_worker_id() = %d with %u workers", w, nw);
        if (w >= 0 && w < MAXW)
            mask |= (uint64_t)1 << w;
        int rc = weft_yield();
        CHECK(rc == 0, "weft_yield returned %d", rc);
        CHECK(weft_self() == self, "weft_self changed across a yield");
        int w2 = weft_worker_id();
        migr += w2 != w;
        w = w2;
        atomic_store_explicit(&s->count, (uint64_t)i + 1, memory_order_relaxed);
        if ((i & 63) == 0)
            stress_progress();
    }
    atomic_fetch_or(&worker_mask, mask);
    atomic_fetch_add(&migrations, migr);
    atomic_store(&s->done, 1);
    return (void *)s;
}

/* Every 250 ms: a task that stood still for 20 samples (5 s) while the
 * others advanced is starved. */
static void *sampler(void *arg)
{
    (void)arg;
    while (atomic_load(&round_live)) {
        weft_sleep(250 * WEFT_MS);
        if (!atomic_load(&round_live))
            break;
        uint64_t advanced = 0;
        for (int i = 0; i < NTASKS; i++) {
            uint64_t c = atomic_load_explicit(&st[i].count, memory_order_relaxed);
            advanced += c - st[i].seen_at_sample;
        }
        for (int i = 0; i < NTASKS; i++) {
            uint64_t c = atomic_load_explicit(&st[i].count, memory_order_relaxed);
            if (atomic_load(&st[i].done) || c != st[i].seen_at_sample || advanced == 0)
                st[i].stalled_samples = 0;
            else if (++st[i].stalled_samples == 20)
                FAIL("task %d made no progress for 5 s (stuck at %" PRIu64 " of %d yields) while "
                     "the others yielded %" PRIu64 " times in the last 250 ms: starved",
                     i, c, NYIELDS, advanced);
            st[i].seen_at_sample = c;
        }
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    CHECK(weft_workers() >= 2, "want at least 2 workers, have %u", weft_workers());
    st = calloc(NTASKS, sizeof *st);
    weft_task **ts = calloc(NTASKS, sizeof *ts);
    do {
        memset(st, 0, sizeof *st * NTASKS);
        atomic_store(&round_live, 1);
        weft_task *smp = weft_spawn(sampler, NULL);
        for (int i = 0; i < NTASKS; i++) {
            ts[i] = weft_spawn(yielder, &st[i]);
            CHECK(ts[i], "spawn failed");
        }
        uint64_t sum = 0;
        for (int i = 0; i < NTASKS; i++) {
            void *r = NULL;
            int rc = weft_join(ts[i], &r);
            CHECK(rc == 0 && r == &st[i], "join of yielder %d: rc %d", i, rc);
            uint64_t c = atomic_load(&st[i].count);
            CHECK(c == NYIELDS, "yielder %d counted %" PRIu64 " yields, expected %d", i, c, NYIELDS);
            sum += c;
        }
        CHECK(sum == (uint64_t)NTASKS * NYIELDS, "total yields %" PRIu64 ", expected %" PRIu64, sum,
              (uint64_t)NTASKS * NYIELDS);
        atomic_fetch_add(&total_yields, sum);
        atomic_fetch_add(&n_tasks_total, NTASKS);
        atomic_store(&round_live, 0);
        weft_cancel(smp);  /* cut its sleep short */
        int rc = weft_join(smp, NULL);
        CHECK(rc == 0 || rc == -ECANCELED, "sampler join returned %d", rc);
        atomic_fetch_add(&n_rounds, 1);
    } while (!stress_time_up() && !stress_failed());
    uint64_t mask = atomic_load(&worker_mask);
    CHECK(__builtin_popcountll(mask) >= 2,
          "tasks ran on only one worker (mask %#" PRIx64 "): no stealing happened", mask);
    CHECK(atomic_load(&migrations) > 0, "no task ever resumed on another worker");
    free(ts);
    return NULL;
}

int main(void)
{
    stress_init("stress_yield_storm", 4.0, dump);
    stress_run(2, main_task, NULL);
    free(st);
    return stress_finish("%" PRIu64 " rounds of %d tasks x %d yields: %" PRIu64
                         " yields, workers seen %#" PRIx64 ", %" PRIu64 " migrations",
                         atomic_load(&n_rounds), NTASKS, NYIELDS, atomic_load(&total_yields),
                         atomic_load(&worker_mask), atomic_load(&migrations));
}
