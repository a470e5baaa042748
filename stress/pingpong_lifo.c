/*
 * stress_pingpong_lifo: the LIFO slot (runnext) must not starve the run
 * queue, nor strand a task behind a busy worker.
 *
 * Pairs of tasks wake each other through two weft_events (set the other's,
 * wait on one's own, clear it): each wake puts the partner in the waker's
 * LIFO slot, so without the bound on consecutive LIFO runs two tasks could
 * hold a worker forever.  Background tasks that only yield must keep
 * running meanwhile.
 *
 *  Phase A, 1 worker (no stealing to hide starvation): between two steps of
 *  a background task, the pairs may complete at most BOUND_A rounds (the
 *  LIFO bound of a few runs per ring task gives a few dozen; rounds, not
 *  time, so a loaded machine cannot fail it).
 *  Phase B, 2 workers: the same with stealing, counting the rounds done on
 *  the background task's own worker while it waited (a worker the OS does
 *  not run does no rounds).  The bound is loose (BOUND_B: a good fraction
 *  of a second of that worker's time; a handful is typical), because when
 *  the OS stalls one worker and sysmon, a task the stalled worker stole
 *  waits with it while the other runs.
 *  Phase C, 2 workers: a task wakes another (into its own LIFO slot) and
 *  then runs 100 ms without a suspension point; the woken task must run on
 *  the other worker before that ends (the runnext of a blocked worker is
 *  stealable - the stall of tokio#4941 must not happen), with the other
 *  worker idle or busy with a yield loop.  The OS may starve a worker (or
 *  sysmon) for hundreds of milliseconds on a loaded machine, so one miss is
 *  not a failure: the run fails when 3 in 4 trials of a kind miss (at least
 *  8 trials), a busy-worker miss counting only when the other worker
 *  demonstrably ran meanwhile (5000+ yields while the wakee waited).
 * Also: each pair's rounds are counted on both sides and must agree.
 *
 * Default 4 s (A 40%, B 40%, C the rest); WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define NPAIRS 4
#define NBG 3
#define BOUND_A 256
#define BOUND_B STRESS_SCALE(200000, 50000)

typedef struct {
    weft_event ea, eb;
    _Atomic uint64_t a_rounds, b_rounds;
} pair_t;

typedef struct {
    _Atomic uint64_t steps;
    uint64_t max_gap_rounds;
    int64_t max_gap_ns;
} bg_t;

static _Atomic uint64_t rounds_total;
static _Atomic uint64_t rounds_w[2];  /* rounds done on each worker */
static _Atomic int stop;
static _Atomic int phase;
static bool strict;             /* phase A: the bound on rounds alone */
static uint64_t phase_max_gap[2];
static double phase_max_gap_ms[2];
static _Atomic uint64_t c_trials, c_ok;
static double c_max_ms;

static void dump(void)
{
    fprintf(stderr, "  phase %c, rounds %" PRIu64 "\n", "ABC"[atomic_load(&phase)],
            atomic_load(&rounds_total));
}

static void *ping(void *arg)
{
    pair_t *p = arg;
    weft_event_set(&p->eb);
    for (;;) {
        int rc = weft_event_wait(&p->ea, WEFT_FOREVER);
        CHECK(rc == 0, "ping: wait returned %d", rc);
        weft_event_clear(&p->ea);
        if (atomic_load_explicit(&stop, memory_order_relaxed))
            break;
        atomic_fetch_add_explicit(&p->a_rounds, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&rounds_total, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&rounds_w[weft_worker_id()], 1, memory_order_relaxed);
        weft_event_set(&p->eb);
    }
    weft_event_set(&p->eb);
    return NULL;
}

static void *pong(void *arg)
{
    pair_t *p = arg;
    for (;;) {
        int rc = weft_event_wait(&p->eb, WEFT_FOREVER);
        CHECK(rc == 0, "pong: wait returned %d", rc);
        weft_event_clear(&p->eb);
        if (atomic_load_explicit(&stop, memory_order_relaxed))
            break;
        atomic_fetch_add_explicit(&p->b_rounds, 1, memory_order_relaxed);
        weft_event_set(&p->ea);
    }
    weft_event_set(&p->ea);
    return NULL;
}

/* Between two runs of a background task, the rounds done on the worker it
 * ran on before (counted only when it resumes on that same worker, i.e. it
 * waited in that worker's queues - or was stolen and brought back). */
static void *background(void *arg)
{
    bg_t *b = arg;
    int w0 = weft_worker_id();
    uint64_t r0 = atomic_load_explicit(&rounds_w[w0], memory_order_relaxed);
    int64_t t0 = weft_now();
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int rc = weft_yield();
        CHECK(rc == 0, "background: yield returned %d", rc);
        int w = weft_worker_id();
        int64_t t = weft_now();
        if (w == w0) {
            uint64_t gap = atomic_load_explicit(&rounds_w[w], memory_order_relaxed) - r0;
            int64_t gap_ns = t - t0;
            if (gap > b->max_gap_rounds) {
                b->max_gap_rounds = gap;
                b->max_gap_ns = gap_ns;
            }
            if (strict)
                CHECK(gap <= BOUND_A,
                      "1 worker: a background task waited %" PRIu64 " ping-pong rounds (%.2f ms) "
                      "between two runs (bound %d): the LIFO slot starves the run queue",
                      gap, (double)gap_ns / 1e6, BOUND_A);
            else
                CHECK(gap <= BOUND_B,
                      "2 workers: a background task waited while its worker did %" PRIu64
                      " ping-pong rounds (%.2f ms; bound %d): starved",
                      gap, (double)gap_ns / 1e6, BOUND_B);
        }
        w0 = w;
        r0 = atomic_load_explicit(&rounds_w[w], memory_order_relaxed);
        t0 = t;
        atomic_fetch_add_explicit(&b->steps, 1, memory_order_relaxed);
        stress_progress();
    }
    return NULL;
}

static void *pingpong_main(void *arg)
{
    double frac = *(double *)arg;
    int64_t end = weft_now() + (int64_t)((double)(stress_t_end - stress_t_start) * frac);
    atomic_store(&stop, 0);
    atomic_store(&rounds_total, 0);
    atomic_store(&rounds_w[0], 0);
    atomic_store(&rounds_w[1], 0);
    pair_t *pairs = calloc(NPAIRS, sizeof *pairs);
    bg_t *bgs = calloc(NBG, sizeof *bgs);
    weft_task *tp[NPAIRS][2], *tb[NBG];
    for (int i = 0; i < NPAIRS; i++) {
        weft_event_init(&pairs[i].ea);
        weft_event_init(&pairs[i].eb);
    }
    for (int i = 0; i < NBG; i++)
        tb[i] = weft_spawn(background, &bgs[i]);
    for (int i = 0; i < NPAIRS; i++) {
        tp[i][1] = weft_spawn(pong, &pairs[i]);
        tp[i][0] = weft_spawn(ping, &pairs[i]);
    }
    while (weft_now() < end && !stress_failed()) {
        weft_sleep(10 * WEFT_MS);
        stress_progress();
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NPAIRS; i++) {
        weft_event_set(&pairs[i].ea);
        weft_event_set(&pairs[i].eb);
    }
    uint64_t max_gap = 0;
    for (int i = 0; i < NBG; i++) {
        CHECK(weft_join(tb[i], NULL) == 0, "background join failed");
        CHECK(atomic_load(&bgs[i].steps) > 0, "background task %d never ran", i);
        if (bgs[i].max_gap_rounds >= max_gap) {
            max_gap = bgs[i].max_gap_rounds;
            phase_max_gap_ms[strict ? 0 : 1] = (double)bgs[i].max_gap_ns / 1e6;
        }
    }
    for (int i = 0; i < NPAIRS; i++) {
        CHECK(weft_join(tp[i][0], NULL) == 0 && weft_join(tp[i][1], NULL) == 0,
              "pair join failed");
        uint64_t a = atomic_load(&pairs[i].a_rounds), b = atomic_load(&pairs[i].b_rounds);
        /* pong counts before it wakes ping, ping after it woke: at the stop
         * pong may be one ahead. */
        CHECK(b == a || b == a + 1, "pair %d: ping counted %" PRIu64 " rounds, pong %" PRIu64, i, a,
              b);
        CHECK(a > 0, "pair %d never ping-ponged", i);
        weft_event_destroy(&pairs[i].ea);
        weft_event_destroy(&pairs[i].eb);
    }
    phase_max_gap[strict ? 0 : 1] = max_gap;
    free(pairs);
    free(bgs);
    return NULL;
}

/* ---- phase C: runnext of a blocked worker ---- */

typedef struct {
    weft_event ev;
    _Atomic int hog_spinning;
    _Atomic int woke_during_hog;
    _Atomic int hog_worker, wakee_worker;
    _Atomic int64_t set_at, woke_at;
    _Atomic int busy_stop;
    _Atomic uint64_t busy_elsewhere;  /* yields of the busy task on another
                                         worker while the hog spun */
} ctrial;

static void *wakee(void *arg)
{
    ctrial *c = arg;
    int rc = weft_event_wait(&c->ev, WEFT_FOREVER);
    CHECK(rc == 0, "wakee: wait returned %d", rc);
    /* Read the hog's flag before publishing woke_at, which ends the hog. */
    atomic_store(&c->woke_during_hog, atomic_load(&c->hog_spinning));
    atomic_store(&c->wakee_worker, weft_worker_id());
    atomic_store(&c->woke_at, weft_now());
    return NULL;
}

static void *hog(void *arg)
{
    ctrial *c = arg;
    atomic_store(&c->hog_worker, weft_worker_id());
    atomic_store(&c->hog_spinning, 1);
    atomic_store(&c->set_at, weft_now());
    weft_event_set(&c->ev);  /* the wakee goes to this worker's LIFO slot */
    int64_t end = weft_now() + 100 * WEFT_MS;
    while (weft_now() < end && !atomic_load(&c->woke_at))
        ;  /* no suspension point: this worker is blocked */
    atomic_store(&c->hog_spinning, 0);
    return NULL;
}

static void *busy(void *arg)
{
    ctrial *c = arg;
    while (!atomic_load(&c->busy_stop)) {
        weft_yield();
        if (atomic_load(&c->hog_spinning) && weft_worker_id() != atomic_load(&c->hog_worker))
            atomic_fetch_add(&c->busy_elsewhere, 1);
    }
    return NULL;
}

/* Timing on a loaded machine: the OS may starve the other worker (or
 * sysmon) for the whole 100 ms.  So a trial fails hard only with evidence
 * that the other worker was running meanwhile (the busy task yielded there
 * thousands of times while the wakee sat in the blocked worker's runnext);
 * an idle-worker trial that misses is counted, and the phase fails when
 * most of them miss. */
static _Atomic uint64_t c_idle_trials, c_idle_missed, c_busy_trials, c_busy_missed,
    c_inconclusive;

static void *phase_c_main(void *arg)
{
    (void)arg;
    CHECK(weft_workers() == 2, "phase C wants 2 workers, has %u", weft_workers());
    uint64_t seed = rng_seed();
    while (!stress_time_up() && !stress_failed()) {
        ctrial *c = calloc(1, sizeof *c);
        weft_event_init(&c->ev);
        bool with_busy = rng_below(&seed, 2);
        atomic_store(&c->hog_worker, -1);
        weft_task *bz = with_busy ? weft_spawn(busy, c) : NULL;
        weft_task *k = weft_spawn(wakee, c);
        weft_sleep(2 * WEFT_MS);  /* k parks on the event; workers settle */
        weft_task *h = weft_spawn(hog, c);
        CHECK(weft_join(h, NULL) == 0, "hog join failed");
        CHECK(weft_join(k, NULL) == 0, "wakee join failed");
        atomic_store(&c->busy_stop, 1);
        if (bz)
            CHECK(weft_join(bz, NULL) == 0, "busy join failed");
        double ms = (double)(atomic_load(&c->woke_at) - atomic_load(&c->set_at)) / 1e6;
        bool ok = atomic_load(&c->woke_during_hog);
        if (ok && ms > c_max_ms)
            c_max_ms = ms;
        atomic_fetch_add(&c_trials, 1);
        atomic_fetch_add(&c_ok, ok);
        if (!with_busy) {
            atomic_fetch_add(&c_idle_trials, 1);
            atomic_fetch_add(&c_idle_missed, !ok);
        } else {
            uint64_t el = atomic_load(&c->busy_elsewhere);
            atomic_fetch_add(&c_busy_trials, 1);
            if (!ok && el >= 5000) {
                atomic_fetch_add(&c_busy_missed, 1);
                fprintf(stderr, "%s: note: a task woken into the LIFO slot of a worker then "
                        "blocked for 100 ms ran only %.1f ms later, although the other worker "
                        "ran %" PRIu64 " yields meanwhile\n", stress_name, ms, el);
            } else if (!ok) {
                atomic_fetch_add(&c_inconclusive, 1);
            }
        }
        weft_event_destroy(&c->ev);
        free(c);
        stress_progress();
    }
    uint64_t bt = atomic_load(&c_busy_trials), bm = atomic_load(&c_busy_missed);
    CHECK(bt < 8 || 4 * bm < 3 * bt,
          "%" PRIu64 " of %" PRIu64 " tasks woken into the LIFO slot of a worker that then blocked "
          "for 100 ms waited for the block to end although the other worker was running (yield "
          "loop): busy workers do not take the runnext of a blocked one",
          bm, bt);
    uint64_t it = atomic_load(&c_idle_trials), im = atomic_load(&c_idle_missed);
    CHECK(it < 8 || 4 * im < 3 * it,
          "%" PRIu64 " of %" PRIu64 " tasks woken into the LIFO slot of a worker that then blocked "
          "for 100 ms were not taken by the idle worker before the block ended: the runnext of a "
          "blocked worker is stranded",
          im, it);
    return NULL;
}

static void run_with(unsigned workers, weft_fn fn, void *arg)
{
    weft_config cfg = stress_config(workers);
    cfg.workers = workers;  /* fixed: the phases need exactly these counts */
    int rc = weft_run_config(&cfg, fn, arg, NULL);
    CHECK(rc == 0, "weft_run_config(%u workers) returned %d", workers, rc);
}

int main(void)
{
    stress_init("stress_pingpong_lifo", 4.0, dump);
    double frac = 0.4;
    atomic_store(&phase, 0);
    strict = true;
    run_with(1, pingpong_main, &frac);
    atomic_store(&phase, 1);
    strict = false;
    run_with(2, pingpong_main, &frac);
    atomic_store(&phase, 2);
    run_with(2, phase_c_main, NULL);
    return stress_finish("max wait of a background task: %" PRIu64 " rounds / %.2f ms on 1 worker "
                         "(bound %d rounds), %" PRIu64 " rounds of its worker / %.2f ms on 2 (bound %d); "
                         "stranded-runnext trials: %" PRIu64 "/%" PRIu64
                         " stolen in time (max %.1f ms; missed: %" PRIu64 "/%" PRIu64
                         " with the other worker idle, %" PRIu64 "/%" PRIu64 " with it busy, "
                         "%" PRIu64 " inconclusive)",
                         phase_max_gap[0], phase_max_gap_ms[0], BOUND_A, phase_max_gap[1],
                         phase_max_gap_ms[1], BOUND_B, atomic_load(&c_ok),
                         atomic_load(&c_trials), c_max_ms, atomic_load(&c_idle_missed),
                         atomic_load(&c_idle_trials), atomic_load(&c_busy_missed),
                         atomic_load(&c_busy_trials), atomic_load(&c_inconclusive));
}
