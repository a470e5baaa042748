/*
 * stress_cancel_race: weft_cancel racing with completion, on 3 workers.
 *
 * Main spawns waves of tasks that finish at once, after a yield, after
 * yields in a loop, after a short or a 5 ms sleep, or only when cancelled
 * (an event wait with no deadline).  Two canceller coroutines and two plain
 * threads cancel random tasks of the wave at random moments; main joins the
 * wave in order, each time after a few yields (and sometimes its own
 * weft_cancel), so a cancellation can land before the task runs, while it
 * runs, while it sleeps, as it finishes, or after it finished.  (A handle is
 * used by cancellers only until main closes its slot; main joins after.)
 *
 * Invariants, per task:
 *  - its function ran exactly once, and join returned its own result;
 *  - join returned 0 or -ECANCELED, and -ECANCELED exactly when the task was
 *    cancelled before it finished: if any weft_cancel on it returned 0, join
 *    returns -ECANCELED; if every weft_cancel returned -ESRCH (already
 *    finished) or there was none, join returns 0;
 *  - weft_cancel returning -ESRCH means weft_task_done() is already true;
 *  - a task that saw weft_cancelled() or a -ECANCELED suspension point is
 *    joined with -ECANCELED, and once one of its suspension points returned
 *    -ECANCELED every later one does too (sticky); a task cancelled before
 *    it first ran still runs, and its first suspension point returns
 *    -ECANCELED;
 *  - a sleep that returned 0 lasted at least its duration;
 *  - nothing hangs (watchdog).
 * Photo finishes: tasks that return at a set moment, each cancelled by a
 * plain thread at that moment plus an offset it adapts (toward the boundary
 * between weft_cancel returning 0 and -ESRCH), so the cancel lands while the
 * task finishes on another CPU (same invariants).
 * And a scenario: a joiner task (join, or gather of 3) cancelled
 * while it waits: its join returns -ECANCELED (or 0 if the child finished
 * first) and the child has finished by then (no orphans).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define WAVE STRESS_SCALE(256, 64)
#define NCANCEL_CO 2
#define NCANCEL_TH 2
#define NKINDS 7

enum { K_NOW, K_YIELD, K_YIELDS, K_SLEEP_SHORT, K_SLEEP_5MS, K_WAIT_EVENT, K_SPIN, K_PHOTO };

typedef struct {
    stress_slot slot;
    uint32_t id;
    int kind;
    _Atomic int ran;
    _Atomic int cancel_ok;      /* weft_cancel returned 0 */
    _Atomic int cancel_srch;    /* weft_cancel returned -ESRCH */
    _Atomic int saw_cancel;     /* the task observed its cancellation */
    _Atomic int cancelled_at_start;
    int64_t at;                 /* K_PHOTO: when it returns */
} rec_t;

static _Atomic(rec_t *) recs;        /* the current wave, WAVE records */
static _Atomic int wave_live;       /* cancellers work while 1 */
static _Atomic int in_cancel;       /* cancellers between loading recs and done */
static _Atomic int stop_cancellers;
static weft_event never;            /* never set */
static _Atomic uint64_t n_photo;
static _Atomic uint64_t n_tasks, n_join_cancelled, n_join_ok, n_cancel_ok, n_cancel_srch,
    n_orphan_checks;

static void dump(void)
{
    fprintf(stderr, "  tasks %" PRIu64 ", joined ok %" PRIu64 ", joined cancelled %" PRIu64 "\n",
            atomic_load(&n_tasks), atomic_load(&n_join_ok), atomic_load(&n_join_cancelled));
}

static void *result_of(uint32_t id) { return (void *)(uintptr_t)(0x1000 + (uint64_t)id * 16); }

/* Records one suspension point's result; enforces stickiness. */
static void saw(rec_t *r, int rc, const char *what)
{
    CHECK(rc == 0 || rc == -ECANCELED, "task %u: %s returned %d", r->id, what, rc);
    if (rc == -ECANCELED) {
        atomic_store(&r->saw_cancel, 1);
    } else {
        CHECK(!atomic_load(&r->saw_cancel),
              "task %u: %s returned 0 after an earlier -ECANCELED (cancellation not sticky)",
              r->id, what);
        CHECK(!atomic_load(&r->cancelled_at_start),
              "task %u: cancelled before it ran, yet its first suspension point (%s) returned 0",
              r->id, what);
    }
}

static void *task_fn(void *arg)
{
    rec_t *r = arg;
    int old = atomic_fetch_add(&r->ran, 1);
    CHECK(old == 0, "task %u ran %d times", r->id, old + 1);
    if (weft_cancelled()) {
        atomic_store(&r->saw_cancel, 1);
        atomic_store(&r->cancelled_at_start, 1);
    }
    uint64_t seed = rng_seed();
    switch (r->kind) {
    case K_NOW:
        break;
    case K_YIELD:
        saw(r, weft_yield(), "yield");
        break;
    case K_YIELDS: {
        int n = 1 + (int)rng_below(&seed, 10);
        for (int i = 0; i < n; i++) {
            saw(r, weft_yield(), "yield");
            atomic_store(&r->cancelled_at_start, 0);
        }
        break;
    }
    case K_SLEEP_SHORT:
    case K_SLEEP_5MS: {
        int64_t d = r->kind == K_SLEEP_5MS ? 5 * WEFT_MS : (int64_t)rng_below(&seed, 100) * WEFT_US;
        int64_t t0 = weft_now();
        int rc = weft_sleep(d);
        int64_t el = weft_now() - t0;
        saw(r, rc, "sleep");
        CHECK(rc != 0 || el >= d, "task %u: sleep(%" PRId64 " ns) returned 0 after %" PRId64 " ns",
              r->id, d, el);
        atomic_store(&r->cancelled_at_start, 0);
        /* One more: must be -ECANCELED at once if the first one was. */
        if (rc == -ECANCELED)
            saw(r, weft_sleep(WEFT_MS), "second sleep");
        break;
    }
    case K_WAIT_EVENT: {
        int rc = weft_event_wait(&never, WEFT_FOREVER);
        CHECK(rc == -ECANCELED, "task %u: wait on a never-set event returned %d", r->id, rc);
        saw(r, rc, "event wait");
        break;
    }
    case K_SPIN:
        stress_spin_ns((int64_t)rng_below(&seed, 20) * WEFT_US);
        break;
    case K_PHOTO:
        while (weft_now() < r->at)
            ;
        break;
    }
    if (weft_cancelled())
        atomic_store(&r->saw_cancel, 1);
    return result_of(r->id);
}

/* One cancellation attempt on a random task of the wave. */
static void cancel_one(uint64_t *seed)
{
    atomic_fetch_add(&in_cancel, 1);
    rec_t *wave = atomic_load(&recs);
    if (!wave) {
        atomic_fetch_sub(&in_cancel, 1);
        return;
    }
    rec_t *r = &wave[rng_below(seed, WAVE)];
    weft_task *t = slot_enter(&r->slot);
    if (!t) {
        atomic_fetch_sub(&in_cancel, 1);
        return;
    }
    int rc = weft_cancel(t);
    if (rc == 0) {
        atomic_fetch_add(&r->cancel_ok, 1);
        atomic_fetch_add_explicit(&n_cancel_ok, 1, memory_order_relaxed);
    } else if (rc == -ESRCH) {
        atomic_fetch_add(&r->cancel_srch, 1);
        atomic_fetch_add_explicit(&n_cancel_srch, 1, memory_order_relaxed);
        CHECK(weft_task_done(t), "task %u: weft_cancel returned -ESRCH but weft_task_done is false",
              r->id);
    } else {
        FAIL("task %u: weft_cancel returned %d", r->id, rc);
    }
    slot_leave(&r->slot);
    atomic_fetch_sub(&in_cancel, 1);
}

static void *canceller_co(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_cancellers)) {
        if (atomic_load(&wave_live))
            cancel_one(&seed);
        uint64_t d = rng_below(&seed, 8);
        if (d < 5)
            weft_yield();
        else if (d < 7)
            weft_sleep((int64_t)rng_below(&seed, 50) * WEFT_US);
        else
            stress_spin_ns((int64_t)rng_below(&seed, 5) * WEFT_US);
    }
    return NULL;
}

static void *canceller_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_cancellers)) {
        if (atomic_load(&wave_live))
            cancel_one(&seed);
        else
            stress_os_sleep_ns(20 * WEFT_US);
        uint64_t d = rng_below(&seed, 8);
        if (d < 4)
            stress_spin_ns((int64_t)rng_below(&seed, 10) * WEFT_US);
        else if (d < 6)
            sched_yield();
        else if (d == 7)
            stress_os_sleep_ns((int64_t)rng_below(&seed, 30) * WEFT_US);
    }
    return NULL;
}

static void check_joined(rec_t *r, int rc, void *res)
{
    CHECK(rc == 0 || rc == -ECANCELED, "task %u (kind %d): join returned %d", r->id, r->kind, rc);
    CHECK(atomic_load(&r->ran) == 1, "task %u (kind %d): ran %d times by the time join returned",
          r->id, r->kind, atomic_load(&r->ran));
    CHECK(res == result_of(r->id), "task %u (kind %d): join gave result %p, expected %p", r->id,
          r->kind, res, result_of(r->id));
    int ok = atomic_load(&r->cancel_ok), srch = atomic_load(&r->cancel_srch);
    if (ok > 0)
        CHECK(rc == -ECANCELED,
              "task %u (kind %d): weft_cancel returned 0 (%d time(s); %d -ESRCH) - it was cancelled "
              "before it finished - yet weft_join returned %d",
              r->id, r->kind, ok, srch, rc);
    if (rc == -ECANCELED)
        CHECK(ok > 0,
              "task %u (kind %d): weft_join returned -ECANCELED but no weft_cancel on it returned 0 "
              "(%d returned -ESRCH)",
              r->id, r->kind, srch);
    if (atomic_load(&r->saw_cancel))
        CHECK(rc == -ECANCELED, "task %u (kind %d): observed its cancellation, but join returned %d",
              r->id, r->kind, rc);
    if (rc == -ECANCELED)
        atomic_fetch_add_explicit(&n_join_cancelled, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&n_join_ok, 1, memory_order_relaxed);
    stress_progress();
}

static void run_wave(uint64_t *seed, uint32_t *next_id)
{
    rec_t *wave = calloc(WAVE, sizeof *wave);
    for (int i = 0; i < WAVE; i++) {
        rec_t *r = &wave[i];
        r->id = (*next_id)++;
        r->kind = (int)rng_below(seed, NKINDS);
        atomic_store(&r->slot.guard, SLOT_CLOSED);
    }
    atomic_store(&recs, wave);
    atomic_store(&wave_live, 1);
    for (int i = 0; i < WAVE; i++) {
        rec_t *r = &wave[i];
        weft_task *t = weft_spawn(task_fn, r);
        CHECK(t, "weft_spawn failed: errno %d", errno);
        if (!t)
            abort();
        slot_open(&r->slot, t);
        atomic_fetch_add_explicit(&n_tasks, 1, memory_order_relaxed);
        if (rng_below(seed, 16) == 0)
            weft_yield();
    }
    for (int i = 0; i < WAVE; i++) {
        rec_t *r = &wave[i];
        int y = (int)rng_below(seed, 4);
        for (int k = 0; k < y; k++)
            weft_yield();
        weft_task *t = slot_close(&r->slot);
        /* Main's own cancel: always for the tasks that wait to be cancelled. */
        if (r->kind == K_WAIT_EVENT || rng_below(seed, 6) == 0) {
            int rc = weft_cancel(t);
            if (rc == 0)
                atomic_fetch_add(&r->cancel_ok, 1);
            else if (rc == -ESRCH) {
                atomic_fetch_add(&r->cancel_srch, 1);
                CHECK(weft_task_done(t), "task %u: -ESRCH but not done", r->id);
            } else
                FAIL("task %u: weft_cancel returned %d", r->id, rc);
        }
        void *res = NULL;
        int rc = weft_join(t, &res);
        check_joined(r, rc, res);
    }
    atomic_store(&wave_live, 0);
    atomic_store(&recs, NULL);
    /* Cancellers may still hold the old wave pointer (every slot is closed,
     * so they touch no handle): wait for them before freeing it. */
    while (atomic_load(&in_cancel) != 0)
        weft_yield();
    free(wave);
}

/* ---- photo finish: a plain thread cancels each task within a few
 * microseconds of the moment it returns ---- */

#define NPHOTO 16

static int64_t photo_offset;    /* ns after `at` where finishes happen (photo threads only, one at a time) */

typedef struct {
    rec_t *recs;
    uint64_t seed;
    _Atomic int done;
} photo_t;

static void *photo_thread(void *arg)
{
    photo_t *ph = arg;
    for (int i = 0; i < NPHOTO; i++) {
        rec_t *r = &ph->recs[i];
        weft_task *t;
        while (!(t = slot_enter(&r->slot)))
            ;  /* opened right after the spawn */
        /* Aim at the boundary between "cancelled before it finished" (0)
         * and "already finished" (-ESRCH), learnt from the previous shots:
         * that is where a cancel and the finish overlap. */
        int64_t at = r->at + photo_offset + (int64_t)rng_below(&ph->seed, 400) - 200;
        while (weft_now() < at)
            ;
        int rc = weft_cancel(t);
        photo_offset += rc == 0 ? 25 : -25;
        if (photo_offset < -5000 || photo_offset > 50000)
            photo_offset = 0;
        if (rc == 0) {
            atomic_fetch_add(&r->cancel_ok, 1);
            atomic_fetch_add_explicit(&n_cancel_ok, 1, memory_order_relaxed);
        } else if (rc == -ESRCH) {
            atomic_fetch_add(&r->cancel_srch, 1);
            atomic_fetch_add_explicit(&n_cancel_srch, 1, memory_order_relaxed);
        } else {
            FAIL("task %u: weft_cancel returned %d", r->id, rc);
        }
        slot_leave(&r->slot);
    }
    atomic_store(&ph->done, 1);
    return NULL;
}

static void run_photo(uint64_t *seed, uint32_t *next_id)
{
    photo_t ph = {.recs = calloc(NPHOTO, sizeof(rec_t)), .seed = rng_next(seed) | 1};
    int64_t base = weft_now() + 300 * WEFT_US;
    for (int i = 0; i < NPHOTO; i++) {
        rec_t *r = &ph.recs[i];
        r->id = (*next_id)++;
        r->kind = K_PHOTO;
        r->at = base + (int64_t)i * 40 * WEFT_US;
        atomic_store(&r->slot.guard, SLOT_CLOSED);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, photo_thread, &ph) != 0)
        abort();
    for (int i = 0; i < NPHOTO; i++) {
        weft_task *t = weft_spawn(task_fn, &ph.recs[i]);
        CHECK(t, "weft_spawn failed");
        if (!t)
            abort();
        slot_open(&ph.recs[i].slot, t);
        atomic_fetch_add_explicit(&n_tasks, 1, memory_order_relaxed);
    }
    for (int i = 0; i < NPHOTO; i++) {
        rec_t *r = &ph.recs[i];
        /* The photo thread holds the slot until it cancelled. */
        while (atomic_load(&r->cancel_ok) + atomic_load(&r->cancel_srch) == 0)
            weft_yield();
        weft_task *t = slot_close(&r->slot);
        void *res = NULL;
        int rc = weft_join(t, &res);
        check_joined(r, rc, res);
        atomic_fetch_add_explicit(&n_photo, 1, memory_order_relaxed);
    }
    while (!atomic_load(&ph.done))
        weft_yield();
    pthread_join(th, NULL);
    free(ph.recs);
}

/* ---- joiner cancelled while joining ---- */

typedef struct {
    _Atomic int finished[3];
    int n;        /* 1: join; 3: gather */
    _Atomic int join_rc;
} orphan_t;

static void *child_fn(void *arg)
{
    _Atomic int *fin = arg;
    uint64_t seed = rng_seed();
    int d = (int)rng_below(&seed, 4);
    if (d == 1)
        weft_yield();
    else if (d == 2)
        weft_sleep((int64_t)rng_below(&seed, 200) * WEFT_US);
    else if (d == 3)
        weft_sleep(20 * WEFT_MS);
    atomic_store(fin, 1);
    return NULL;
}

static void *joiner_fn(void *arg)
{
    orphan_t *o = arg;
    weft_task *c[3];
    for (int i = 0; i < o->n; i++)
        c[i] = weft_spawn(child_fn, &o->finished[i]);
    int rc = o->n == 1 ? weft_join(c[0], NULL) : weft_gather(c, (size_t)o->n, NULL);
    for (int i = 0; i < o->n; i++)
        CHECK(atomic_load(&o->finished[i]) == 1,
              "joiner (%s) returned %d while child %d had not finished (orphan)",
              o->n == 1 ? "join" : "gather", rc, i);
    atomic_store(&o->join_rc, rc);
    return NULL;
}

static void run_orphans(uint64_t *seed)
{
    enum { N = 16 };
    orphan_t *o = calloc(N, sizeof *o);
    weft_task *j[N];
    for (int i = 0; i < N; i++) {
        o[i].n = rng_below(seed, 2) ? 3 : 1;
        atomic_store(&o[i].join_rc, 1);
        j[i] = weft_spawn(joiner_fn, &o[i]);
    }
    for (int i = 0; i < N; i++) {
        int y = (int)rng_below(seed, 3);
        for (int k = 0; k < y; k++)
            weft_yield();
        weft_cancel(j[i]);
    }
    for (int i = 0; i < N; i++) {
        int rc = weft_join(j[i], NULL);
        CHECK(rc == 0 || rc == -ECANCELED, "cancelled joiner: join returned %d", rc);
        int jr = atomic_load(&o[i].join_rc);
        CHECK(jr == 0 || jr == -ECANCELED, "cancelled joiner's own %s returned %d",
              o[i].n == 1 ? "join" : "gather", jr);
        atomic_fetch_add_explicit(&n_orphan_checks, 1, memory_order_relaxed);
    }
    free(o);
    stress_progress();
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_event_init(&never);
    pthread_t th[NCANCEL_TH];
    for (int i = 0; i < NCANCEL_TH; i++)
        if (pthread_create(&th[i], NULL, canceller_thread, NULL) != 0)
            abort();
    weft_task *co[NCANCEL_CO];
    for (int i = 0; i < NCANCEL_CO; i++)
        co[i] = weft_spawn(canceller_co, NULL);
    uint64_t seed = rng_seed();
    uint32_t next_id = 0;
    do {
        run_wave(&seed, &next_id);
        run_photo(&seed, &next_id);
        run_orphans(&seed);
    } while (!stress_time_up() && !stress_failed());
    atomic_store(&stop_cancellers, 1);
    for (int i = 0; i < NCANCEL_CO; i++)
        CHECK(weft_join(co[i], NULL) == 0, "canceller coroutine join failed");
    for (int i = 0; i < NCANCEL_TH; i++)
        pthread_join(th[i], NULL);
    weft_event_destroy(&never);
    return NULL;
}

int main(void)
{
    stress_init("stress_cancel_race", 4.0, dump);
    stress_run(3, main_task, NULL);
    return stress_finish("%" PRIu64 " tasks: %" PRIu64 " joined 0, %" PRIu64
                         " joined -ECANCELED; cancels: %" PRIu64 " -> 0, %" PRIu64
                         " -> -ESRCH; %" PRIu64 " photo finishes; %" PRIu64
                         " cancelled joiners checked for orphans",
                         atomic_load(&n_tasks), atomic_load(&n_join_ok),
                         atomic_load(&n_join_cancelled), atomic_load(&n_cancel_ok),
                         atomic_load(&n_cancel_srch), atomic_load(&n_photo),
                         atomic_load(&n_orphan_checks));
}
