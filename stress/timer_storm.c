/*
 * stress_timer_storm: timers under load on 3 workers.
 *
 *  - Sleepers: many tasks sleep random short durations in a loop (0, a few
 *    microseconds, up to 3 ms; weft_sleep and weft_sleep_until alternately,
 *    some with a deadline already past).
 *  - Long sleepers: tasks that sleep an hour, cancelled at a random moment
 *    by a canceller coroutine or a plain thread.  Racing sleepers: batches
 *    of 0.5-1.5 ms sleeps, 3 in 4 cancelled by their driver within 150 us
 *    of the moment the sleep ends.
 *  - wait_for races: a child sleeps d1 while its parent waits for it with a
 *    deadline d2 close to d1, so the deadline and the finish race.
 *  - A few tasks spin for 3 ms without suspending, so their worker is
 *    flagged blocked and other workers fire its due timers.
 *
 * Invariants:
 *  - a sleep that returned 0 lasted at least its duration (weft_now), and
 *    weft_sleep_until returned 0 only at or after its deadline;
 *  - every long sleep returns -ECANCELED (never 0 before its hour), and the
 *    next suspension point of the cancelled task returns -ECANCELED at once;
 *  - a racing sleep returns 0 (after its duration) or -ECANCELED, and its
 *    task's join agrees: -ECANCELED exactly when it was cancelled before it
 *    finished (weft_cancel returned 0);
 *  - wait_for returns 0 (the child's own result; the child slept its whole
 *    duration) or -ETIMEDOUT (at or after the deadline; the child ran once
 *    and has finished, cancelled or not);
 *  - counts add up: sleeps started == sleeps returned, long sleepers spawned
 *    == long sleepers cancelled == joined with -ECANCELED;
 *  - nothing hangs: a lost timer shows as a task that never returns, and
 *    the watchdog aborts after 60 s without progress.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#define NSLEEPERS STRESS_SCALE(400, 80)
#define NLONG STRESS_SCALE(64, 16)
#define NRACE STRESS_SCALE(4, 2)     /* racing-sleeper drivers */
#define NWAITERS STRESS_SCALE(8, 3)

static _Atomic int stop;
static _Atomic uint64_t sleeps_started, sleeps_done, sleeps_zero_deadline, max_late_ns;
static _Atomic uint64_t long_spawned, long_cancelled, long_joined_cancelled;
static _Atomic uint64_t race_zero, race_cancelled;
static _Atomic uint64_t wf_ok, wf_timedout;
static _Atomic uint64_t hogs;

static void dump(void)
{
    fprintf(stderr,
            "  sleeps started %" PRIu64 ", done %" PRIu64 "; long sleepers %" PRIu64
            " spawned, %" PRIu64 " cancelled; wait_for ok %" PRIu64 ", timed out %" PRIu64 "\n",
            atomic_load(&sleeps_started), atomic_load(&sleeps_done), atomic_load(&long_spawned),
            atomic_load(&long_cancelled), atomic_load(&wf_ok), atomic_load(&wf_timedout));
}

static void note_late(int64_t late)
{
    uint64_t cur = atomic_load(&max_late_ns);
    while (late > 0 && (uint64_t)late > cur &&
           !atomic_compare_exchange_weak(&max_late_ns, &cur, (uint64_t)late))
        ;
}

/* ---- short sleepers ---- */

static void *sleeper(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    int i = 0;
    while (!atomic_load(&stop)) {
        int64_t d;
        uint64_t k = rng_below(&seed, 8);
        if (k == 0)
            d = 0;
        else if (k < 3)
            d = (int64_t)rng_below(&seed, 50) * WEFT_US;
        else if (k < 7)
            d = (int64_t)rng_below(&seed, 1000) * WEFT_US;
        else
            d = (int64_t)rng_below(&seed, 3000) * WEFT_US;
        atomic_fetch_add_explicit(&sleeps_started, 1, memory_order_relaxed);
        int64_t t0 = weft_now();
        int rc;
        int64_t deadline = t0 + d;
        if (k == 0 && rng_below(&seed, 2)) {
            deadline = t0 - (int64_t)rng_below(&seed, 1000);  /* already past */
            atomic_fetch_add_explicit(&sleeps_zero_deadline, 1, memory_order_relaxed);
        }
        bool use_sleep = i++ & 1;
        if (use_sleep)
            rc = weft_sleep(d);
        else
            rc = weft_sleep_until(deadline);
        int64_t t1 = weft_now();
        CHECK(rc == 0, "sleep of %" PRId64 " ns returned %d (not cancelled)", d, rc);
        if (use_sleep)
            CHECK(t1 - t0 >= d, "weft_sleep(%" PRId64 " ns) returned 0 after only %" PRId64 " ns",
                  d, t1 - t0);
        else
            CHECK(t1 >= deadline, "weft_sleep_until returned 0 %" PRId64 " ns before its deadline",
                  deadline - t1);
        note_late(t1 - t0 - d);
        atomic_fetch_add_explicit(&sleeps_done, 1, memory_order_relaxed);
        stress_progress();
        if (rng_below(&seed, 5000) == 0) {
            atomic_fetch_add_explicit(&hogs, 1, memory_order_relaxed);
            stress_spin_ns(3 * WEFT_MS);  /* block this worker: others fire its timers */
        }
    }
    return NULL;
}

/* ---- long and racing sleepers, cancelled ---- */

typedef struct {
    stress_slot slot;
    bool racing;                /* ~1 ms sleep cancelled near its end */
    int64_t d;
    _Atomic int ran;
    _Atomic int sleep_rc;       /* 1 until it returns */
    _Atomic int cancel_ok;
    _Atomic int64_t started;
} lrec;

static void *long_sleeper(void *arg)
{
    lrec *r = arg;
    CHECK(atomic_fetch_add(&r->ran, 1) == 0, "cancelled sleeper ran twice");
    int64_t t0 = weft_now();
    atomic_store(&r->started, t0);
    int rc = weft_sleep(r->d);
    int64_t el = weft_now() - t0;
    atomic_store(&r->sleep_rc, rc);
    if (r->racing) {
        CHECK(rc == 0 || rc == -ECANCELED, "racing sleep returned %d", rc);
        CHECK(rc != 0 || el >= r->d, "racing sleep returned 0 after %" PRId64 " of %" PRId64 " ns",
              el, r->d);
    } else {
        CHECK(rc == -ECANCELED, "hour-long sleep returned %d after %" PRId64 " ns", rc, el);
    }
    if (rc == -ECANCELED) {
        int rc2 = weft_sleep(WEFT_MS);
        CHECK(rc2 == -ECANCELED, "sleep after a cancelled sleep returned %d", rc2);
        int rc3 = weft_sleep_until(0);
        CHECK(rc3 == -ECANCELED, "sleep_until(past) after cancellation returned %d", rc3);
    }
    stress_progress();
    return r;
}

static lrec *_Atomic cur_recs;
static _Atomic int in_cancel;

static void cancel_some(uint64_t *seed)
{
    atomic_fetch_add(&in_cancel, 1);
    lrec *recs = atomic_load(&cur_recs);
    if (recs) {
        lrec *r = &recs[rng_below(seed, NLONG)];
        weft_task *t = slot_enter(&r->slot);
        if (t) {
            int rc = weft_cancel(t);
            CHECK(rc == 0 || rc == -ESRCH, "weft_cancel returned %d", rc);
            if (rc == 0)
                atomic_fetch_add(&r->cancel_ok, 1);
            slot_leave(&r->slot);
        }
    }
    atomic_fetch_sub(&in_cancel, 1);
}

static void *canceller_co(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop)) {
        cancel_some(&seed);
        weft_sleep((int64_t)rng_below(&seed, 300) * WEFT_US);
    }
    return NULL;
}

static void *canceller_thread(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop)) {
        cancel_some(&seed);
        stress_os_sleep_ns((int64_t)rng_below(&seed, 300) * WEFT_US);
    }
    return NULL;
}

/* Waves of hour-long sleepers, each joined once a canceller got it. */
static void *long_driver(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        int n = NLONG;
        lrec *recs = calloc((size_t)n, sizeof *recs);
        for (int i = 0; i < n; i++) {
            recs[i].d = 3600 * WEFT_SEC;
            atomic_store(&recs[i].sleep_rc, 1);
            atomic_store(&recs[i].slot.guard, SLOT_CLOSED);
        }
        atomic_store(&cur_recs, recs);
        for (int i = 0; i < n; i++) {
            weft_task *t = weft_spawn(long_sleeper, &recs[i]);
            CHECK(t, "spawn failed");
            slot_open(&recs[i].slot, t);
            atomic_fetch_add(&long_spawned, 1);
        }
        for (int i = 0; i < n; i++) {
            lrec *r = &recs[i];
            /* Long sleepers: wait until some canceller got it (bounded by
             * the watchdog), or cancel it ourselves when stopping. */
            while (atomic_load(&r->sleep_rc) == 1) {
                if (atomic_load(&stop)) {
                    weft_task *t = slot_enter(&r->slot);
                    if (t) {
                        if (weft_cancel(t) == 0)
                            atomic_fetch_add(&r->cancel_ok, 1);
                        slot_leave(&r->slot);
                    }
                }
                weft_sleep(200 * WEFT_US);
            }
            weft_task *t = slot_close(&r->slot);
            void *res = NULL;
            int rc = weft_join(t, &res);
            CHECK(res == r, "sleeper join: wrong result");
            CHECK(atomic_load(&r->ran) == 1, "sleeper ran %d times", atomic_load(&r->ran));
            int src = atomic_load(&r->sleep_rc);
            CHECK(rc == -ECANCELED, "cancelled long sleeper joined with %d", rc);
            CHECK(atomic_load(&r->cancel_ok) > 0, "long sleeper ended but no cancel returned 0");
            atomic_fetch_add(&long_cancelled, src == -ECANCELED);
            atomic_fetch_add(&long_joined_cancelled, rc == -ECANCELED);
        }
        atomic_store(&cur_recs, NULL);
        while (atomic_load(&in_cancel))
            weft_yield();
        free(recs);
    }
    return NULL;
}

/* Racing sleepers: batches of 8 sleeping 0.5-1.5 ms, each cancelled (3 in
 * 4) within 150 us of the end of its sleep, in order of their ends. */
static void *race_driver(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    enum { B = 8 };
    while (!atomic_load(&stop)) {
        lrec *r = calloc(B, sizeof *r);
        weft_task *t[B];
        int64_t at[B];
        int order[B];
        for (int i = 0; i < B; i++) {
            r[i].racing = true;
            r[i].d = (int64_t)(500 + rng_below(&seed, 1000)) * WEFT_US;
            atomic_store(&r[i].sleep_rc, 1);
            t[i] = weft_spawn(long_sleeper, &r[i]);
            CHECK(t[i], "spawn failed");
        }
        for (int i = 0; i < B; i++) {
            int64_t st;
            while (!(st = atomic_load(&r[i].started)))
                weft_yield();
            at[i] = st + r[i].d + ((int64_t)rng_below(&seed, 300) - 150) * WEFT_US;
            order[i] = i;
        }
        for (int i = 1; i < B; i++)
            for (int k = i; k > 0 && at[order[k]] < at[order[k - 1]]; k--) {
                int x = order[k];
                order[k] = order[k - 1];
                order[k - 1] = x;
            }
        for (int k = 0; k < B; k++) {
            int i = order[k];
            if (rng_below(&seed, 4)) {
                int64_t left = at[i] - weft_now();
                if (left > 300 * WEFT_US)
                    weft_sleep(left - 300 * WEFT_US);
                while (weft_now() < at[i])
                    weft_yield();
                int rc = weft_cancel(t[i]);
                CHECK(rc == 0 || rc == -ESRCH, "weft_cancel returned %d", rc);
                if (rc == 0)
                    atomic_fetch_add(&r[i].cancel_ok, 1);
            }
        }
        for (int i = 0; i < B; i++) {
            void *res = NULL;
            int rc = weft_join(t[i], &res);
            CHECK(res == &r[i], "racing sleeper join: wrong result");
            int src = atomic_load(&r[i].sleep_rc);
            if (src == -ECANCELED)
                CHECK(rc == -ECANCELED, "racing sleeper saw -ECANCELED but joined with %d", rc);
            if (atomic_load(&r[i].cancel_ok) > 0)
                CHECK(rc == -ECANCELED,
                      "racing sleeper: weft_cancel returned 0 but join returned %d (its sleep "
                      "returned %d)",
                      rc, src);
            else
                CHECK(rc == 0, "racing sleeper never cancelled, yet join returned %d", rc);
            atomic_fetch_add(src == 0 ? &race_zero : &race_cancelled, 1);
        }
        free(r);
        stress_progress();
    }
    return NULL;
}

/* ---- wait_for racing the child's finish ---- */

typedef struct {
    int64_t d;
    _Atomic int ran, finished;
    _Atomic int sleep_rc;
} wrec;

static void *wf_child(void *arg)
{
    wrec *w = arg;
    CHECK(atomic_fetch_add(&w->ran, 1) == 0, "wait_for child ran twice");
    int64_t t0 = weft_now();
    int rc = weft_sleep(w->d);
    CHECK(rc == 0 || rc == -ECANCELED, "wait_for child: sleep returned %d", rc);
    CHECK(rc != 0 || weft_now() - t0 >= w->d, "wait_for child: short sleep");
    atomic_store(&w->sleep_rc, rc);
    atomic_store(&w->finished, 1);
    return w;
}

static void *wf_racer(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    while (!atomic_load(&stop)) {
        wrec *w = calloc(1, sizeof *w);
        w->d = (int64_t)rng_below(&seed, 2000) * WEFT_US;
        int64_t d2 = w->d + ((int64_t)rng_below(&seed, 400) - 200) * WEFT_US;
        atomic_store(&w->sleep_rc, 1);
        weft_task *c = weft_spawn(wf_child, w);
        CHECK(c, "spawn failed");
        int64_t deadline = weft_now() + d2;
        void *res = NULL;
        int rc = weft_wait_for(c, deadline, &res);
        int64_t now = weft_now();
        CHECK(atomic_load(&w->ran) == 1 && atomic_load(&w->finished) == 1,
              "wait_for returned %d but the child has not finished (ran %d)", rc,
              atomic_load(&w->ran));
        if (rc == 0) {
            CHECK(res == w, "wait_for: wrong result");
            CHECK(atomic_load(&w->sleep_rc) == 0, "wait_for returned 0 but the child's sleep "
                  "returned %d", atomic_load(&w->sleep_rc));
            atomic_fetch_add(&wf_ok, 1);
        } else if (rc == -ETIMEDOUT) {
            CHECK(now >= deadline, "wait_for returned -ETIMEDOUT %" PRId64 " ns before its deadline",
                  deadline - now);
            atomic_fetch_add(&wf_timedout, 1);
        } else {
            FAIL("wait_for returned %d", rc);
        }
        free(w);
        stress_progress();
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_task *sl[NSLEEPERS], *wf[NWAITERS], *cc, *ld;
    for (int i = 0; i < NSLEEPERS; i++)
        sl[i] = weft_spawn(sleeper, NULL);
    for (int i = 0; i < NWAITERS; i++)
        wf[i] = weft_spawn(wf_racer, NULL);
    cc = weft_spawn(canceller_co, NULL);
    weft_task *rd[NRACE];
    for (int i = 0; i < NRACE; i++)
        rd[i] = weft_spawn(race_driver, NULL);
    ld = weft_spawn(long_driver, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, canceller_thread, NULL) != 0)
        abort();
    while (!stress_time_up() && !stress_failed())
        weft_sleep(10 * WEFT_MS);
    atomic_store(&stop, 1);
    for (int i = 0; i < NSLEEPERS; i++)
        CHECK(weft_join(sl[i], NULL) == 0, "sleeper join failed");
    for (int i = 0; i < NWAITERS; i++)
        CHECK(weft_join(wf[i], NULL) == 0, "wait_for racer join failed");
    CHECK(weft_join(cc, NULL) == 0, "canceller join failed");
    for (int i = 0; i < NRACE; i++)
        CHECK(weft_join(rd[i], NULL) == 0, "race driver join failed");
    CHECK(weft_join(ld, NULL) == 0, "long driver join failed");
    pthread_join(th, NULL);
    CHECK(atomic_load(&sleeps_started) == atomic_load(&sleeps_done),
          "sleeps started %" PRIu64 " != returned %" PRIu64, atomic_load(&sleeps_started),
          atomic_load(&sleeps_done));
    CHECK(atomic_load(&long_spawned) == atomic_load(&long_cancelled) &&
              atomic_load(&long_cancelled) == atomic_load(&long_joined_cancelled),
          "long sleepers: %" PRIu64 " spawned, %" PRIu64 " cancelled, %" PRIu64 " joined -ECANCELED",
          atomic_load(&long_spawned), atomic_load(&long_cancelled),
          atomic_load(&long_joined_cancelled));
    return NULL;
}

int main(void)
{
    stress_init("stress_timer_storm", 4.0, dump);
    stress_run(3, main_task, NULL);
    return stress_finish("%" PRIu64 " short sleeps (%" PRIu64 " past deadlines, max lateness %.2f ms, "
                         "%" PRIu64 " worker-blocking hogs); %" PRIu64 " hour sleeps cancelled; "
                         "racing sleeps: %" PRIu64 " ended, %" PRIu64 " cancelled; wait_for: %" PRIu64
                         " ok, %" PRIu64 " timed out",
                         atomic_load(&sleeps_done), atomic_load(&sleeps_zero_deadline),
                         (double)atomic_load(&max_late_ns) / 1e6, atomic_load(&hogs),
                         atomic_load(&long_cancelled), atomic_load(&race_zero),
                         atomic_load(&race_cancelled), atomic_load(&wf_ok),
                         atomic_load(&wf_timedout));
}
