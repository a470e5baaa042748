/*
 * stress_event_storm: weft_event set/clear/wait storms on 4 workers.
 *
 * Four events.  Setter coroutines and plain threads set and clear them at
 * random; waiter tasks wait on random events with no deadline, a deadline a
 * few microseconds to milliseconds away, or one already past; canceller
 * coroutines and plain threads cancel random waiter tasks, often just as
 * they are being woken.  Main runs waves of waiters and joins them.
 *
 * Every set and clear goes through a mutex that also keeps a shadow of the
 * event's state and counts its sets and clears, so a waiter can tell what
 * the event did while it waited:
 *  - rc is 0, -ETIMEDOUT or -ECANCELED, nothing else;
 *  - 0: the event was set at some moment after the waiter began: it was set
 *    when the waiter read the shadow before waiting, or a set happened
 *    between that read and the return;
 *  - -ETIMEDOUT: the wait had a deadline, now >= deadline, and the event was
 *    not set all along (set when the wait began and no clear since would
 *    have returned 0);
 *  - -ECANCELED: the waiter's task was cancelled (weft_cancelled());
 *  - waits with no deadline return once the event is set: setters keep
 *    setting, and the final set of every event at the end must release
 *    every waiter (the watchdog aborts a hang);
 *  - at the end weft_event_is_set agrees with the shadow.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define NEV 4
#define WAVE STRESS_SCALE(128, 32)
#define NSET_CO 2
#define NSET_TH 2
#define NCANCEL_CO 1
#define NCANCEL_TH 1

typedef struct {
    weft_event ev;
    pthread_mutex_t mu;   /* orders set/clear with the shadow */
    bool shadow;          /* under mu: the event's state */
    uint64_t sets, clears; /* under mu */
} sev;

static sev evs[NEV];
static _Atomic int stop_all, ending;
static _Atomic uint64_t n_ok, n_timedout, n_cancelled, n_forever, n_sets, n_clears, n_waiters;

static void dump(void)
{
    fprintf(stderr, "  waits: %" PRIu64 " ok, %" PRIu64 " timed out, %" PRIu64 " cancelled; sets %" PRIu64
                    ", clears %" PRIu64 "; ending %d\n",
            atomic_load(&n_ok), atomic_load(&n_timedout), atomic_load(&n_cancelled),
            atomic_load(&n_sets), atomic_load(&n_clears), atomic_load(&ending));
    for (int i = 0; i < NEV; i++)
        fprintf(stderr, "  event %d: is_set %d\n", i, weft_event_is_set(&evs[i].ev));
}

static void do_set(sev *e)
{
    pthread_mutex_lock(&e->mu);
    int rc = weft_event_set(&e->ev);
    CHECK(rc == 0, "weft_event_set returned %d", rc);
    e->shadow = true;
    e->sets++;
    pthread_mutex_unlock(&e->mu);
    atomic_fetch_add_explicit(&n_sets, 1, memory_order_relaxed);
}

static void do_clear(sev *e)
{
    pthread_mutex_lock(&e->mu);
    if (atomic_load(&ending)) {  /* at the end the events stay set */
        pthread_mutex_unlock(&e->mu);
        return;
    }
    int rc = weft_event_clear(&e->ev);
    CHECK(rc == 0, "weft_event_clear returned %d", rc);
    e->shadow = false;
    e->clears++;
    pthread_mutex_unlock(&e->mu);
    atomic_fetch_add_explicit(&n_clears, 1, memory_order_relaxed);
}

/* Mostly pulses (set, then clear a moment later), so that most waits
 * really park and are woken by a set rather than finding the event set. */
static void setter_step(uint64_t *seed)
{
    sev *e = &evs[rng_below(seed, NEV)];
    uint64_t k = rng_below(seed, 8);
    if (k == 0) {
        do_set(e);
    } else if (k < 3) {
        do_clear(e);
    } else {
        do_set(e);
        if (k == 3)
            stress_spin_ns((int64_t)rng_below(seed, 5) * WEFT_US);
        do_clear(e);
    }
}

static void *setter_co(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_all)) {
        setter_step(&seed);
        uint64_t d = rng_below(&seed, 8);
        if (d < 3)
            weft_yield();
        else if (d < 7)
            weft_sleep((int64_t)rng_below(&seed, 200) * WEFT_US);
        else
            stress_spin_ns((int64_t)rng_below(&seed, 10) * WEFT_US);
    }
    return NULL;
}

static void *setter_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_all)) {
        setter_step(&seed);
        uint64_t d = rng_below(&seed, 4);
        if (d == 0)
            stress_os_sleep_ns((int64_t)rng_below(&seed, 300) * WEFT_US);
        else if (d == 1)
            sched_yield();
        else
            stress_spin_ns((int64_t)rng_below(&seed, 20) * WEFT_US);
    }
    return NULL;
}

/* ---- waiters ---- */

typedef struct {
    stress_slot slot;
    int nwaits;
    _Atomic int ran;
    _Atomic int got_cancel;
} wrec;

static void *waiter(void *arg)
{
    wrec *w = arg;
    CHECK(atomic_fetch_add(&w->ran, 1) == 0, "waiter ran twice");
    uint64_t seed = rng_seed();
    for (int i = 0; i < w->nwaits; i++) {
        int k = (int)rng_below(&seed, NEV);
        sev *e = &evs[k];
        int64_t deadline;
        uint64_t kind = rng_below(&seed, 10);
        if (kind < 3)
            deadline = WEFT_FOREVER;
        else if (kind < 6)
            deadline = weft_now() + (int64_t)rng_below(&seed, 100) * WEFT_US;
        else if (kind < 9)
            deadline = weft_now() + (int64_t)rng_below(&seed, 3000) * WEFT_US;
        else
            deadline = weft_now() - 1;
        pthread_mutex_lock(&e->mu);
        bool set0 = e->shadow;
        uint64_t s0 = e->sets, c0 = e->clears;
        pthread_mutex_unlock(&e->mu);

        int rc = weft_event_wait(&e->ev, deadline);
        int64_t now = weft_now();

        pthread_mutex_lock(&e->mu);
        uint64_t s1 = e->sets, c1 = e->clears;
        pthread_mutex_unlock(&e->mu);

        if (rc == 0) {
            CHECK(set0 || s1 > s0,
                  "event %d: wait returned 0, but the event was clear when the wait began and "
                  "was not set since (sets %" PRIu64 " -> %" PRIu64 ")",
                  k, s0, s1);
            atomic_fetch_add_explicit(&n_ok, 1, memory_order_relaxed);
            if (deadline == WEFT_FOREVER)
                atomic_fetch_add_explicit(&n_forever, 1, memory_order_relaxed);
        } else if (rc == -ETIMEDOUT) {
            CHECK(deadline != WEFT_FOREVER, "event %d: wait with no deadline returned -ETIMEDOUT", k);
            CHECK(now >= deadline, "event %d: -ETIMEDOUT %" PRId64 " ns before the deadline", k,
                  deadline - now);
            CHECK(!(set0 && c1 == c0),
                  "event %d: wait timed out although the event was set when it began and never "
                  "cleared since (clears %" PRIu64 ")",
                  k, c0);
            atomic_fetch_add_explicit(&n_timedout, 1, memory_order_relaxed);
        } else if (rc == -ECANCELED) {
            CHECK(weft_cancelled(), "event %d: wait returned -ECANCELED but the task was not "
                  "cancelled", k);
            atomic_fetch_add_explicit(&n_cancelled, 1, memory_order_relaxed);
            atomic_store(&w->got_cancel, 1);
            break;  /* sticky: every further wait would return at once */
        } else {
            FAIL("event %d: weft_event_wait returned %d", k, rc);
        }
        stress_progress();
        if (rng_below(&seed, 4) == 0)
            weft_yield();
    }
    return w;
}

/* ---- cancellers ---- */

static _Atomic(wrec *) cur_wave;
static _Atomic int in_cancel;

static void cancel_one(uint64_t *seed)
{
    atomic_fetch_add(&in_cancel, 1);
    wrec *wave = atomic_load(&cur_wave);
    if (wave) {
        wrec *w = &wave[rng_below(seed, WAVE)];
        weft_task *t = slot_enter(&w->slot);
        if (t) {
            int rc = weft_cancel(t);
            CHECK(rc == 0 || rc == -ESRCH, "weft_cancel returned %d", rc);
            slot_leave(&w->slot);
        }
    }
    atomic_fetch_sub(&in_cancel, 1);
}

static void *canceller_co(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_all)) {
        cancel_one(&seed);
        weft_sleep((int64_t)rng_below(&seed, 400) * WEFT_US);
    }
    return NULL;
}

static void *canceller_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop_all)) {
        cancel_one(&seed);
        stress_os_sleep_ns((int64_t)rng_below(&seed, 400) * WEFT_US);
    }
    return NULL;
}

static void run_wave(uint64_t *seed)
{
    wrec *wave = calloc(WAVE, sizeof *wave);
    for (int i = 0; i < WAVE; i++) {
        wave[i].nwaits = 1 + (int)rng_below(seed, 40);
        atomic_store(&wave[i].slot.guard, SLOT_CLOSED);
    }
    atomic_store(&cur_wave, wave);
    for (int i = 0; i < WAVE; i++) {
        weft_task *t = weft_spawn(waiter, &wave[i]);
        CHECK(t, "spawn failed");
        slot_open(&wave[i].slot, t);
        atomic_fetch_add_explicit(&n_waiters, 1, memory_order_relaxed);
    }
    for (int i = 0; i < WAVE; i++) {
        weft_task *t = slot_close(&wave[i].slot);
        void *res = NULL;
        int rc = weft_join(t, &res);
        CHECK(res == &wave[i], "waiter join: wrong result");
        CHECK(rc == 0 || rc == -ECANCELED, "waiter join returned %d", rc);
        if (atomic_load(&wave[i].got_cancel))
            CHECK(rc == -ECANCELED, "waiter saw -ECANCELED but joined with %d", rc);
        CHECK(atomic_load(&wave[i].ran) == 1, "waiter ran %d times", atomic_load(&wave[i].ran));
    }
    atomic_store(&cur_wave, NULL);
    while (atomic_load(&in_cancel))
        weft_yield();
    free(wave);
}

static void *main_task(void *arg)
{
    (void)arg;
    for (int i = 0; i < NEV; i++) {
        CHECK(weft_event_init(&evs[i].ev) == 0, "weft_event_init failed");
        pthread_mutex_init(&evs[i].mu, NULL);
    }
    pthread_t th[NSET_TH + NCANCEL_TH];
    for (int i = 0; i < NSET_TH + NCANCEL_TH; i++)
        if (pthread_create(&th[i], NULL, i < NSET_TH ? setter_thread : canceller_thread, NULL) != 0)
            abort();
    weft_task *co[NSET_CO + NCANCEL_CO];
    for (int i = 0; i < NSET_CO + NCANCEL_CO; i++)
        co[i] = weft_spawn(i < NSET_CO ? setter_co : canceller_co, NULL);
    uint64_t seed = rng_seed();
    while (!stress_time_up() && !stress_failed())
        run_wave(&seed);
    /* The end: every event set for good; one last wave must all return. */
    atomic_store(&ending, 1);
    for (int i = 0; i < NEV; i++)
        do_set(&evs[i]);
    run_wave(&seed);
    atomic_store(&stop_all, 1);
    for (int i = 0; i < NSET_CO + NCANCEL_CO; i++)
        CHECK(weft_join(co[i], NULL) == 0, "helper join failed");
    for (int i = 0; i < NSET_TH + NCANCEL_TH; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NEV; i++) {
        pthread_mutex_lock(&evs[i].mu);
        bool sh = evs[i].shadow;
        pthread_mutex_unlock(&evs[i].mu);
        CHECK(weft_event_is_set(&evs[i].ev) == sh, "event %d: is_set %d, shadow %d", i,
              weft_event_is_set(&evs[i].ev), sh);
        weft_event_destroy(&evs[i].ev);
        pthread_mutex_destroy(&evs[i].mu);
    }
    return NULL;
}

int main(void)
{
    stress_init("stress_event_storm", 4.0, dump);
    stress_run(4, main_task, NULL);
    return stress_finish("%" PRIu64 " waiters: waits %" PRIu64 " ok (%" PRIu64 " without deadline), %" PRIu64
                         " timed out, %" PRIu64 " cancelled; %" PRIu64 " sets, %" PRIu64 " clears",
                         atomic_load(&n_waiters), atomic_load(&n_ok), atomic_load(&n_forever),
                         atomic_load(&n_timedout), atomic_load(&n_cancelled), atomic_load(&n_sets),
                         atomic_load(&n_clears));
}
