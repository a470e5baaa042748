/*
 * test_timer: the per-worker timer wheel (runtime/timer.c) alone, on a
 * worker and tasks made by hand (parts.h): no scheduler, no clock (each
 * wheel is reset to tick 0 after init, and the tests pass their own now).
 *
 *  - empty wheel: next() is INT64_MAX, run fires nothing, deleting a timer
 *    that was never queued does nothing;
 *  - rounding: deadlines at, just before and just after tick and level
 *    boundaries fire at the first run with now >= when rounded up to a
 *    tick, never before when, and less than one tick after it;
 *  - cancel at every level and slot (the wrapped top level too), the head,
 *    middle and tail of a slot's list: occupancy masks and next follow;
 *  - cascade: far deadlines reached by one jump over several levels, and
 *    by exact steps (now = next()), which must always progress;
 *  - a crowded slot cascaded over several lock holds within one run;
 *  - clamp: deadlines beyond level 5 (52 days) are placed again, never fired
 *    early, in a bounded number of runs;
 *  - random: 10000 timers at every level and beyond, with a seeded RNG
 *    (WEFT_TEST_SEED replays), random adds and deletes between runs that
 *    step exactly to next() or jump by up to 2 * 64^6 ticks (a run may
 *    cascade several levels at once); each run fires
 *    exactly the live timers due by then, in order of due tick (seen in
 *    the injection queue), never early, at most a tick late on exact
 *    steps; next() is a lower bound of the earliest due time, and the
 *    wheel's lists, masks and count n agree with what the test queued;
 *  - firing wakes the task by its wake token (sched.c): a PARKED task is
 *    queued - on the firing thread's worker's ring when that thread is a
 *    worker of the task's runtime (also when it fires a blocked owner's
 *    timers), else through the injection queue - a RUNNING one (not asleep
 *    yet) becomes WOKEN (a permit), an already WOKEN one is left alone;
 *    every fired timer
 *    is marked fired and leaves the wheel; a fired timer can be queued again;
 *  - a delete racing the firer (a task resumed by something else deletes
 *    its timer while its worker fires it, outside the wheel's lock):
 *    afterwards the timer either fired - and then the task's wake is
 *    complete - or it never fires; nothing fires twice or is lost.
 *    ThreadSanitizer checks the fired flag's release/acquire pairing.
 *
 * The tasks never run: the runtime's own tests (tests/test_task.c,
 * stress/timer_storm.c) cover what a woken sleeper does next.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "parts.h"

#define TICK ((int64_t)1 << 16)  /* timer.c's tick, ns */
#define LEVELS WEFT__WHEEL_LEVELS
#define RANGE ((uint64_t)1 << 36) /* ticks the six levels span */

/* The time a deadline is due at: rounded up to a tick. */
static int64_t due_at(int64_t when)
{
    if (when <= 0)
        return 0;
    if (when > INT64_MAX - TICK)
        return INT64_MAX;
    return (int64_t)(((uint64_t)when + (uint64_t)TICK - 1) / (uint64_t)TICK * (uint64_t)TICK);
}

static bool fired(weft_task *t) { return atomic_load(&t->timer.fired); }
static int park_of(weft_task *t) { return atomic_load(&t->park); }

/* Checks the wheel's structure against n queued timers: every list is
 * well linked and each of its timers knows its place, the masks are the
 * non-empty slots, n counts the timers, each timer sits where its due tick
 * (clamped to the wheel's range) puts it relative to elapsed, and next() is
 * a lower bound of every due time, exact when the earliest is at level 0. */
static void assert_wheel(weft__worker *w, int n)
{
    weft__timers *ts = &w->timers;
    uint64_t e = ts->elapsed;
    int count = 0;
    int64_t min_due = INT64_MAX;
    int min_level = -1;
    for (unsigned k = 0; k < LEVELS; k++) {
        for (unsigned s = 0; s < WEFT__WHEEL_SLOTS; s++) {
            weft__timer *tm = ts->slots[k][s];
            bool occ = (ts->occ[k] >> s) & 1;
            if (occ != (tm != NULL))
                fail_msg("level %u slot %u: mask bit %d, list %p", k, s, occ, (void *)tm);
            weft__timer *prev = NULL;
            for (; tm; prev = tm, tm = tm->next) {
                count++;
                assert_ptr_equal(tm->prev, prev);
                assert_ptr_equal(tm->wheel, w);
                assert_int_equal(tm->state, WEFT__TIMER_QUEUED);
                if (tm->level != k || tm->slot != s)
                    fail_msg("timer at level %u slot %u says %u/%u", k, s, tm->level, tm->slot);
                /* The slot's ticks [lo, hi] relative to elapsed: after
                 * elapsed (E's own slot at level 0), and not after the
                 * due tick (a clamped timer sits earlier than its due
                 * tick, a late one at E). */
                unsigned shift = 6 * k, cur = (unsigned)(e >> shift) & 63;
                uint64_t lo = (e >> (shift + 6) << (shift + 6)) + ((uint64_t)s << shift);
                if (k == 0 ? s < cur : s <= cur) {
                    if (k < LEVELS - 1 || s == cur)
                        fail_msg("level %u slot %u is behind elapsed %llu", k, s,
                                 (unsigned long long)e);
                    lo += RANGE;  /* the top level's next rotation */
                }
                uint64_t due = (uint64_t)due_at(tm->when) / (uint64_t)TICK;
                if (due < e)
                    due = e;
                if (lo < e || lo > due)
                    fail_msg("level %u slot %u starts at tick %llu: elapsed %llu, due %llu", k, s,
                             (unsigned long long)lo, (unsigned long long)e,
                             (unsigned long long)due);
                int64_t d = due_at(tm->when);
                if (d < min_due) {
                    min_due = d;
                    min_level = (int)k;
                }
            }
        }
    }
    assert_int_equal(count, n);
    assert_int_equal(ts->n, n);
    int64_t next = weft__timers_next(ts);
    if (!n) {
        assert_int_equal(next, INT64_MAX);
        return;
    }
    if (next > min_due && !(min_due < (int64_t)e * TICK && next == (int64_t)e * TICK))
        fail_msg("next %lld after the earliest due time %lld", (long long)next,
                 (long long)min_due);
    if (min_level == 0 && next != (min_due < (int64_t)e * TICK ? (int64_t)e * TICK : min_due))
        fail_msg("next %lld, earliest due %lld at level 0", (long long)next, (long long)min_due);
}

static p_world *timer_world(unsigned nworkers, size_t ntasks)
{
    p_world *pw = p_world_new(nworkers, ntasks);
    for (unsigned i = 0; i < nworkers; i++) {
        assert_int_equal(weft__timers_init(&pw->w[i]->timers), 0);
        pw->w[i]->timers.elapsed = 0;  /* the tests' clock starts at 0 */
    }
    return pw;
}

static void timer_world_free(p_world *pw)
{
    for (unsigned i = 0; i < pw->nworkers; i++)
        weft__timers_free(&pw->w[i]->timers);
    p_world_free(pw);
}

/* Takes the injection queue's tasks off (as a worker would), in order. */
static size_t take_injected(weft__runtime *rt, weft_task **out, size_t max)
{
    p_world view = {.rt = rt};
    size_t n = p_inject_tasks(&view, out, max);
    p_inject_clear(&view);
    return n;
}

/* ------------------------------------------------------------------ */

static void test_empty(void **state)
{
    (void)state;
    p_world *pw = timer_world(1, 1);
    weft__worker *w = pw->w[0];
    assert_int_equal(weft__timers_next(&w->timers), INT64_MAX);
    assert_int_equal(weft__timers_run(w, w, INT64_MAX), 0);
    weft__timer_del(&pw->tasks[0].timer);  /* never queued: nothing */
    assert_wheel(w, 0);
    timer_world_free(pw);
}

/* Ticks at the edges of every level (and beyond the wheel). */
static const int64_t edge_ticks[] = {
    0, 1, 2, 62, 63, 64, 65, 127, 128, 4095, 4096, 4097, 8191, 262143, 262144, 262145,
    16777215, 16777216, 16777217, 1073741823, 1073741824, 1073741825,
    68719476735, 68719476736, 68719476737, 3 * 68719476736LL + 5,
};
enum { NEDGE = sizeof edge_ticks / sizeof edge_ticks[0] };

/* Deadlines a nanosecond before, at and after each edge tick, each alone in
 * a fresh wheel, run at due - 1, then at due, or once past it by a jump. */
static void test_rounding(void **state)
{
    (void)state;
    p_world *pw = timer_world(1, 1);
    weft__worker *w = pw->w[0];
    weft_task *t = &pw->tasks[0];
    for (int i = 0; i < NEDGE; i++) {
        for (int64_t off = -1; off <= 1; off++) {
            for (int jump = 0; jump < 2; jump++) {
                int64_t when = edge_ticks[i] * TICK + off;
                int64_t due = due_at(when);
                w->timers.elapsed = 0;
                assert_int_equal(weft__timer_add(w, &t->timer, when), 0);
                assert_wheel(w, 1);
                assert_true(due >= when && due - when < TICK);
                assert_true(weft__timers_next(&w->timers) <= due);
                if (!jump) {
                    /* Not before its due time: also not at when - 1 ... */
                    if (when > 0)
                        assert_int_equal(weft__timers_run(w, w, when - 1), 0);
                    if (due > 0) {
                        assert_int_equal(weft__timers_run(w, w, due - 1), 0);
                        assert_wheel(w, 1);
                        assert_false(fired(t));
                        /* ... now at level 0: next is exact. */
                        assert_int_equal(weft__timers_next(&w->timers), due);
                    }
                    assert_int_equal(weft__timers_run(w, w, due), 1);
                } else {
                    assert_int_equal(weft__timers_run(w, w, due + 70000 * TICK), 1);
                }
                assert_true(fired(t));
                assert_int_equal(t->timer.state, WEFT__TIMER_FIRING);
                assert_wheel(w, 0);
                weft__timer_del(&t->timer);  /* resumed: the fired fast path */
                assert_null(t->timer.wheel);
            }
        }
    }
    timer_world_free(pw);
}

/* Every level and slot: three timers in it, deleted middle, head, tail;
 * the wheel standing at an odd tick so that level 5 wraps. */
static void test_cancel_every_slot(void **state)
{
    (void)state;
    p_world *pw = timer_world(1, 4);
    weft__worker *w = pw->w[0];
    weft__timers *ts = &w->timers;
    const uint64_t e = 37 * ((uint64_t)1 << 30) + 11 * ((uint64_t)1 << 24) + 12345;
    unsigned tested = 0, expected = 0;
    for (unsigned k = 0; k < LEVELS; k++) {
        unsigned shift = 6 * k;
        unsigned cur = (unsigned)(e >> shift) & 63;
        /* Level 0 from E's slot on, levels 1-4 after it, level 5 all
         * but E's (which place keeps empty). */
        expected += k == 0 ? 64 - cur : k < LEVELS - 1 ? 63 - cur : 63;
        for (unsigned s = 0; s < 64; s++) {
            uint64_t base = (e >> (shift + 6)) << (shift + 6);
            uint64_t p = base + ((uint64_t)s << shift);
            if (k == 0 ? s < cur : s <= cur) {
                if (k < LEVELS - 1 || s == cur)
                    continue;  /* in the past, or E's own slot */
                p += RANGE;    /* level 5: the next rotation */
            }
            ts->elapsed = e;
            /* The 3rd timer: the (last) tick of the slot, or a clamped
             * deadline far beyond when the slot is the wheel's last. */
            int64_t whens[3] = {(int64_t)p * TICK, (int64_t)p * TICK - TICK / 2,
                                (int64_t)(p + ((uint64_t)1 << shift) - 1) * TICK};
            if (k == LEVELS - 1 && s == (cur + 63) % 64)
                whens[2] = (int64_t)(e + 5 * RANGE) * TICK;
            for (int i = 0; i < 3; i++) {
                assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, whens[i]), 0);
                if (pw->tasks[i].timer.level != k || pw->tasks[i].timer.slot != s)
                    fail_msg("tick %llu with elapsed %llu: level %u slot %u, want %u/%u",
                             (unsigned long long)p, (unsigned long long)e,
                             pw->tasks[i].timer.level, pw->tasks[i].timer.slot, k, s);
            }
            assert_wheel(w, 3);
            assert_int_equal(weft__timers_next(ts), (int64_t)p * TICK);
            static const int order[3] = {1, 2, 0};  /* middle, head, tail */
            for (int i = 0; i < 3; i++) {
                weft__timer_del(&pw->tasks[order[i]].timer);
                assert_null(pw->tasks[order[i]].timer.wheel);
                assert_int_equal(pw->tasks[order[i]].timer.state, WEFT__TIMER_IDLE);
                weft__timer_del(&pw->tasks[order[i]].timer);  /* twice: nothing */
                assert_wheel(w, 2 - i);
            }
            assert_int_equal(ts->occ[k], 0);
            assert_int_equal(weft__timers_next(ts), INT64_MAX);
            tested++;
        }
    }
    for (int i = 0; i < 3; i++)
        assert_false(fired(&pw->tasks[i]));  /* deleted, never fired */
    assert_int_equal(tested, expected);
    timer_world_free(pw);
}

/* Far timers: reached by one jump over several levels, and by exact steps
 * (now = next), which always move on. */
static void test_cascade(void **state)
{
    (void)state;
    enum { N = 12 };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    int64_t whens[N];
    uint64_t seed = p_seed("test_cascade");
    for (int i = 0; i < N; i++) {
        /* One per level and two beyond, with random lower digits. */
        int k = i % 8;
        uint64_t ticks = k < LEVELS ? ((uint64_t)1 << (6 * k)) + rng_below(&seed, (uint64_t)63 << (6 * k))
                                    : RANGE * (uint64_t)(k - 5) + rng_below(&seed, RANGE);
        whens[i] = (int64_t)ticks * TICK + (int64_t)rng_below(&seed, (uint64_t)TICK);
    }
    /* 1. Exact steps. */
    for (int i = 0; i < N; i++)
        assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, whens[i]), 0);
    int left = N, steps = 0;
    int64_t now = 0;
    while (left) {
        int64_t next = weft__timers_next(&w->timers);
        assert_true(next > now || (now == 0 && next == 0));
        now = next;
        int got = (int)weft__timers_run(w, w, now);
        for (int i = 0; i < N; i++) {
            weft_task *t = &pw->tasks[i];
            if (!t->timer.wheel)
                continue;  /* fired earlier */
            bool due = due_at(whens[i]) <= now;
            if (fired(t) != due)
                fail_msg("timer %d (when %lld): fired %d at %lld", i, (long long)whens[i],
                         fired(t), (long long)now);
            if (due) {
                assert_true(now >= whens[i] && now - whens[i] < TICK);
                weft__timer_del(&t->timer);
                got--;
                left--;
            }
        }
        assert_int_equal(got, 0);
        assert_wheel(w, left);
        assert_true(++steps < 2000);
    }
    fprintf(stderr, "test_cascade: %d timers in %d exact steps\n", N, steps);
    /* 2. Jumps: from 0 to just before each deadline (nothing fires, the
     * timer is at level 0 after the cascades), then past it. */
    for (int i = 0; i < N; i++) {
        w->timers.elapsed = 0;
        weft_task *t = &pw->tasks[i];
        assert_int_equal(weft__timer_add(w, &t->timer, whens[i]), 0);
        assert_int_equal(weft__timers_run(w, w, due_at(whens[i]) - 1), 0);
        assert_int_equal(weft__timers_next(&w->timers), due_at(whens[i]));
        assert_int_equal(weft__timers_run(w, w, due_at(whens[i]) + 5 * TICK), 1);
        weft__timer_del(&t->timer);
        /* And in one jump from 0 over everything. */
        w->timers.elapsed = 0;
        assert_int_equal(weft__timer_add(w, &t->timer, whens[i]), 0);
        assert_int_equal(weft__timers_run(w, w, whens[i] - 1), 0);
        assert_false(fired(t));
        weft__timer_del(&t->timer);
        w->timers.elapsed = 0;
        assert_int_equal(weft__timer_add(w, &t->timer, whens[i]), 0);
        assert_int_equal(weft__timers_run(w, w, whens[i] + (int64_t)RANGE * TICK), 1);
        weft__timer_del(&t->timer);
        assert_wheel(w, 0);
    }
    timer_world_free(pw);
}

/* A crowded slot: more timers than one lock hold moves (timer.c's
 * BUDGET), cascaded over several holds within one run, then fired in due
 * order; a second run finds the rest. */
static void test_crowded(void **state)
{
    (void)state;
    enum { N = 3000 };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    weft_task **out = calloc(N, sizeof *out);
    assert_non_null(out);
    uint64_t seed = p_seed("test_crowded");
    weft__set_cur_worker(NULL);  /* woken tasks go to the injection queue */
    for (int i = 0; i < N; i++) {
        /* All in level 2's slot 3 (ticks 12288-16383). */
        int64_t when = (12288 + (int64_t)rng_below(&seed, 4096)) * TICK - (int64_t)rng_below(&seed, 100);
        atomic_store(&pw->tasks[i].park, WEFT__PARK_PARKED);
        assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when), 0);
        assert_int_equal(pw->tasks[i].timer.level, 2);
    }
    assert_int_equal(weft__timers_next(&w->timers), 12288 * TICK);
    const int64_t mid = 14000 * TICK;
    int due = 0;
    for (int i = 0; i < N; i++)
        due += due_at(pw->tasks[i].timer.when) <= mid;
    assert_int_equal(weft__timers_run(w, w, mid), due);
    assert_int_equal(take_injected(pw->rt, out, N), due);
    for (int j = 1; j < due; j++)
        assert_true(due_at(out[j - 1]->timer.when) <= due_at(out[j]->timer.when));
    assert_wheel(w, N - due);
    assert_int_equal(weft__timers_run(w, w, 16384 * TICK), N - due);
    assert_int_equal(take_injected(pw->rt, out, N), N - due);
    assert_wheel(w, 0);
    for (int i = 0; i < N; i++)
        weft__timer_del(&pw->tasks[i].timer);
    free(out);
    timer_world_free(pw);
}

/* Beyond level 5: clamped, placed again, never fired early. */
static void test_clamp(void **state)
{
    (void)state;
    p_world *pw = timer_world(1, 3);
    weft__worker *w = pw->w[0];
    const int64_t whens[3] = {((int64_t)RANGE + 1000) * TICK + 1, 5 * (int64_t)RANGE * TICK,
                              INT64_MAX};
    for (int i = 0; i < 3; i++) {
        weft_task *t = &pw->tasks[i];
        w->timers.elapsed = 0;
        assert_int_equal(weft__timer_add(w, &t->timer, whens[i]), 0);
        assert_int_equal(t->timer.level, LEVELS - 1);
        int steps = 0;
        int64_t now = 0;
        for (;;) {
            int64_t next = weft__timers_next(&w->timers);
            assert_true(next > now);
            assert_true(next <= due_at(whens[i]));
            now = next;
            if (weft__timers_run(w, w, now))
                break;
            assert_false(fired(t));
            assert_wheel(w, 1);
            assert_true(++steps < 1000);
            if (i == 2 && steps > 100)
                break;  /* INT64_MAX: never due; enough */
        }
        if (i < 2) {
            assert_true(fired(t));
            assert_true(now >= whens[i] && now - whens[i] < TICK);
        } else {
            assert_false(fired(t));
        }
        fprintf(stderr, "test_clamp: deadline %lld reached in %d steps\n", (long long)whens[i],
                steps);
        weft__timer_del(&t->timer);
        assert_wheel(w, 0);
    }
    /* Jumps just short of a clamped deadline, from far behind. */
    weft_task *t = &pw->tasks[0];
    w->timers.elapsed = 0;
    assert_int_equal(weft__timer_add(w, &t->timer, whens[1]), 0);
    for (int64_t now = TICK; now < whens[1] - TICK; now = now * 3 + 7)
        assert_int_equal(weft__timers_run(w, w, now), 0);
    assert_int_equal(weft__timers_run(w, w, whens[1] - 1), 0);
    assert_int_equal(weft__timers_run(w, w, whens[1]), 1);
    weft__timer_del(&t->timer);
    timer_world_free(pw);
}

/* A random deadline from now: at any level, beyond, past, or at edges. */
static int64_t random_when(uint64_t *seed, int64_t now)
{
    uint64_t r = rng_below(seed, 10);
    if (r < LEVELS) {
        uint64_t span = (uint64_t)1 << (6 * (r + 1));
        return now + (int64_t)rng_below(seed, span) * TICK + (int64_t)rng_below(seed, (uint64_t)TICK);
    }
    if (r == 6)  /* beyond the wheel */
        return now + (int64_t)(RANGE + rng_below(seed, 3 * RANGE)) * TICK;
    if (r == 7)  /* past or about now */
        return now - 3 * TICK + (int64_t)rng_below(seed, 6 * (uint64_t)TICK);
    /* An edge of a level, +-1 ns, from the tick now is in. */
    int64_t edge = (int64_t)1 << (6 * rng_below(seed, LEVELS + 1));
    return now / TICK * TICK + edge * TICK + (int64_t)rng_below(seed, 3) - 1;
}

/* Random adds, deletes and runs against a model: queued[i] and when[i]. */
static void test_random(void **state)
{
    (void)state;
    enum { N = 10000 };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    weft__runtime *rt = pw->rt;
    uint64_t seed = p_seed("test_random");
    bool *queued = calloc(N, sizeof *queued);
    int64_t *when = calloc(N, sizeof *when);
    weft_task **out = calloc(N, sizeof *out);
    assert_non_null(queued);
    assert_non_null(when);
    assert_non_null(out);
    int n = 0;
    int64_t now = 0;
    unsigned long runs = 0, exact_runs = 0, fired_total = 0, deleted = 0, added = 0;
    weft__set_cur_worker(NULL);  /* woken tasks go to the injection queue */

    for (int i = 0; i < N; i++) {
        when[i] = random_when(&seed, now);
        atomic_store(&pw->tasks[i].park, WEFT__PARK_PARKED);
        assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when[i]), 0);
        queued[i] = true;
        n++;
        added++;
    }
    assert_wheel(w, n);
    for (int round = 0; round < 3000 && n; round++) {
        /* Cancels and new timers, from the current time. */
        int churn = (int)rng_below(&seed, 64);
        for (int c = 0; c < churn; c++) {
            int i = (int)rng_below(&seed, N);
            weft_task *t = &pw->tasks[i];
            if (queued[i]) {
                weft__timer_del(&t->timer);
                assert_null(t->timer.wheel);
                assert_false(fired(t));
                queued[i] = false;
                n--;
                deleted++;
            } else if (rng_below(&seed, 4)) {
                when[i] = random_when(&seed, now);
                atomic_store(&t->park, WEFT__PARK_PARKED);
                assert_int_equal(weft__timer_add(w, &t->timer, when[i]), 0);
                queued[i] = true;
                n++;
                added++;
            }
        }
        /* Run: exactly at next (half the time), or a step or jump. */
        int64_t next = weft__timers_next(&w->timers);
        bool exact = false;
        int64_t prev = now;
        if (rng_below(&seed, 2) && next != INT64_MAX && next > now) {
            now = next;
            exact = true;
            exact_runs++;
        } else {
            /* A step within a few levels, or (1 in 16) a jump over up
             * to all six. */
            uint64_t k = rng_below(&seed, 16) ? rng_below(&seed, 4) : 4 + rng_below(&seed, 3);
            now += (int64_t)rng_below(&seed, ((uint64_t)2 << (6 * k)) * (uint64_t)TICK);
        }
        unsigned got = weft__timers_run(w, w, now);
        runs++;
        assert_true(weft__timers_next(&w->timers) > now);
        size_t m = take_injected(rt, out, N);
        assert_int_equal(m, got);
        /* In order of due tick (a timer added after its deadline is due at
         * the wheel's tick, the previous run's), each due, each once. */
        int64_t last = INT64_MIN;
        for (size_t j = 0; j < m; j++) {
            size_t i = p_idx(pw, out[j]);
            int64_t d = due_at(when[i]);
            if (!queued[i] || d > now)
                fail_msg("task %zu (when %lld, queued %d) fired at %lld", i, (long long)when[i],
                         queued[i], (long long)now);
            int64_t at = d > prev / TICK * TICK ? d : prev / TICK * TICK;
            if (at < last)
                fail_msg("due %lld fired after due %lld", (long long)at, (long long)last);
            last = at;
            /* At most a tick late when the run came at next (exactly). */
            if (exact && d > prev && now - when[i] >= TICK)
                fail_msg("when %lld fired at %lld: late", (long long)when[i], (long long)now);
            assert_true(fired(out[j]));
            assert_int_equal(park_of(out[j]), WEFT__PARK_RUNNING);
            weft__timer_del(&out[j]->timer);  /* resumed */
            queued[i] = false;
            n--;
        }
        fired_total += m;
        /* Nothing due left behind, nothing undue fired. */
        int64_t min_due = INT64_MAX;
        for (int i = 0; i < N; i++) {
            if (!queued[i])
                continue;
            int64_t d = due_at(when[i]);
            if (d <= now || fired(&pw->tasks[i]))
                fail_msg("task %d (when %lld) due by %lld did not fire, or fired unseen", i,
                         (long long)when[i], (long long)now);
            if (d < min_due)
                min_due = d;
        }
        assert_int_equal(w->timers.n, n);
        assert_true(weft__timers_next(&w->timers) <= min_due);
        if (round % 64 == 0)
            assert_wheel(w, n);
    }
    /* Drain: everything fires by the end of time. */
    unsigned got = weft__timers_run(w, w, INT64_MAX);
    assert_int_equal(take_injected(rt, out, N), got);
    fired_total += got;
    for (size_t j = 0; j < got; j++) {
        weft__timer_del(&out[j]->timer);
        queued[p_idx(pw, out[j])] = false;
    }
    assert_wheel(w, 0);
    fprintf(stderr,
            "test_random: %lu runs (%lu exact) fired %lu timers; %lu added, %lu deleted\n", runs,
            exact_runs, fired_total, added, deleted);
    assert_int_equal(fired_total + deleted, added);
    free(queued);
    free(when);
    free(out);
    timer_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* Firing wakes the task                                               */
/* ------------------------------------------------------------------ */

static void test_fire_wakes(void **state)
{
    (void)state;
    p_world *pw = timer_world(2, 8);
    weft__worker *w = pw->w[0], *w2 = pw->w[1];
    weft__runtime *rt = pw->rt;
    weft_task *t = pw->tasks;
    static const int tok[] = {WEFT__PARK_PARKED, WEFT__PARK_RUNNING, WEFT__PARK_WOKEN,
                              WEFT__PARK_PARKED, WEFT__PARK_RUNNING, WEFT__PARK_PARKED};

    /* 1. Fired from a thread that is not a worker (the test's own): the
     *    parked tasks go through the injection queue, in deadline order. */
    weft__set_cur_worker(NULL);
    for (int i = 0; i < 6; i++) {
        atomic_store(&t[i].park, tok[i]);
        assert_int_equal(weft__timer_add(w, &t[i].timer, i == 5 ? 50 * TICK : (6 - i) * TICK), 0);
    }
    assert_int_equal(weft__timers_run(w, w, 10 * TICK), 5);
    for (int i = 0; i < 5; i++) {
        assert_true(fired(&t[i]));
        assert_int_equal(t[i].timer.state, WEFT__TIMER_FIRING);
    }
    assert_false(fired(&t[5]));
    assert_int_equal(weft__timers_next(&w->timers), 50 * TICK);
    assert_int_equal(park_of(&t[0]), WEFT__PARK_RUNNING);  /* woken ... */
    assert_int_equal(park_of(&t[3]), WEFT__PARK_RUNNING);
    assert_int_equal(park_of(&t[1]), WEFT__PARK_WOKEN);    /* a permit: it resumes itself */
    assert_int_equal(park_of(&t[2]), WEFT__PARK_WOKEN);    /* left alone */
    assert_int_equal(park_of(&t[4]), WEFT__PARK_WOKEN);
    weft_task *inj[3];
    assert_int_equal(p_inject_tasks(pw, inj, 3), 2);
    assert_ptr_equal(inj[0], &t[3]);                       /* due at 30 ... */
    assert_ptr_equal(inj[1], &t[0]);                       /* ... before 60 */
    assert_true(weft__runq_empty(w));
    p_inject_clear(pw);
    for (int i = 0; i < 5; i++)
        weft__timer_del(&t[i].timer);

    /* 2. Fired by its worker: onto that worker's ring, at the tail. */
    weft__set_cur_worker(w);
    for (int i = 0; i < 5; i++) {
        atomic_store(&t[i].park, tok[i]);
        assert_int_equal(weft__timer_add(w, &t[i].timer, (6 - i) * TICK), 0);
        assert_false(fired(&t[i]));  /* queued again: fired cleared */
    }
    assert_int_equal(weft__timers_run(w, w, 10 * TICK), 5);
    assert_int_equal(weft__runq_len(w), 2);
    assert_ptr_equal(weft__runq_get(w), &t[3]);
    assert_ptr_equal(weft__runq_get(w), &t[0]);
    assert_int_equal(atomic_load(&t[0].state), WEFT_TASK_READY);
    assert_int_equal(atomic_load(&rt->inject_len), 0);
    for (int i = 0; i < 5; i++)
        weft__timer_del(&t[i].timer);

    /* 3. A blocked worker's timers fired by another (help_blocked): the
     *    firer's ring takes the tasks, the owner's wheel loses them. */
    weft__set_cur_worker(w2);
    for (int i = 0; i < 5; i++) {
        atomic_store(&t[i].park, tok[i]);
        assert_int_equal(weft__timer_add(w, &t[i].timer, (6 - i) * TICK), 0);
    }
    assert_int_equal(weft__timers_run(w2, w, 10 * TICK), 5);
    assert_wheel(w, 1);  /* t[5], due at tick 50 */
    assert_wheel(w2, 0);
    assert_true(weft__runq_empty(w));
    assert_int_equal(weft__runq_len(w2), 2);
    assert_ptr_equal(weft__runq_get(w2), &t[3]);
    assert_ptr_equal(weft__runq_get(w2), &t[0]);
    for (int i = 0; i < 5; i++) {
        weft__timer_del(&t[i].timer);
        assert_null(t[i].timer.wheel);
    }
    weft__set_cur_worker(NULL);

    /* The one not due is deleted before it fires: never woken. */
    weft__timer_del(&t[5].timer);
    assert_wheel(w, 0);
    assert_false(fired(&t[5]));
    assert_int_equal(park_of(&t[5]), WEFT__PARK_PARKED);
    assert_int_equal(atomic_load(&rt->inject_len), 0);
    timer_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* A delete racing the firer                                           */
/* ------------------------------------------------------------------ */

#define R_TIMERS 4096
#define R_DUE_AFTER 64    /* the owner fires what was due this many adds ago */
#define R_WINDOW R_DUE_AFTER /* and runs at most this far ahead of the deleter */

typedef struct race {
    p_world *pw;
    _Atomic int published;         /* timers added so far (release) */
    _Atomic int deleted;           /* timers the deleter is done with */
    _Atomic int bad_index;         /* first inconsistency seen by the deleter, -1 */
    bool fired_at_del[R_TIMERS];   /* deleter's: was it fired when del returned? */
    uint64_t seed;
} race;

static void *r_deleter(void *arg)
{
    race *r = arg;
    uint64_t seed = r->seed;
    for (int i = 0; i < R_TIMERS; i++) {
        /* Trail the owner by a random lag (below R_WINDOW, so the two
         * never wait for each other). */
        int lag = (int)rng_below(&seed, R_WINDOW);
        while (atomic_load_explicit(&r->published, memory_order_acquire) < i + 1 + lag &&
               atomic_load_explicit(&r->published, memory_order_acquire) < R_TIMERS)
            sched_yield();
        while (atomic_load_explicit(&r->published, memory_order_acquire) < i + 1)
            sched_yield();
        weft_task *t = &r->pw->tasks[i];
        weft__timer_del(&t->timer);
        /* del returned: a firer that popped the timer is done with the
         * task, so a fired timer's wake must be visible; one that did not
         * fire never will (checked after the round). */
        bool f = atomic_load_explicit(&t->timer.fired, memory_order_relaxed);
        r->fired_at_del[i] = f;
        int want = f ? WEFT__PARK_WOKEN : WEFT__PARK_RUNNING;
        if (atomic_load(&t->park) != want || t->timer.wheel || t->timer.state == WEFT__TIMER_QUEUED) {
            int none = -1;
            atomic_compare_exchange_strong(&r->bad_index, &none, i);
        }
        atomic_store_explicit(&r->deleted, i + 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_delete_races_fire(void **state)
{
    (void)state;
    p_world *pw = timer_world(1, R_TIMERS);
    weft__worker *w = pw->w[0];
    uint64_t seed = p_seed("test_delete_races_fire");
    int rounds = P_SCALE(40, 8);
    unsigned long fired_n = 0, unfired_n = 0;
    race *r = calloc(1, sizeof *r);
    assert_non_null(r);
    for (int round = 0; round < rounds; round++) {
        memset(r, 0, sizeof *r);
        r->pw = pw;
        r->seed = rng_next(&seed);
        atomic_store(&r->bad_index, -1);
        for (int i = 0; i < R_TIMERS; i++) {
            atomic_store(&pw->tasks[i].park, WEFT__PARK_RUNNING);
            atomic_store(&pw->tasks[i].timer.fired, false);
            pw->tasks[i].timer.wheel = NULL;
            pw->tasks[i].timer.state = WEFT__TIMER_IDLE;
        }
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, r_deleter, r), 0);
        /* The owner: queue timer i due at i +- R_DUE_AFTER, and fire
         * what is due at i - R_DUE_AFTER, as the clock moves on; never
         * more than R_WINDOW ahead of the deleter.  So while the deleter
         * is at timer i the clock is about i: the timers due well before
         * fire first, those due well after are deleted first, and those
         * due about then race. */
        unsigned long ran = 0;
        uint64_t wseed = rng_next(&seed);
        for (int i = 0; i < R_TIMERS; i++) {
            for (unsigned spin = 0;
                 atomic_load_explicit(&r->deleted, memory_order_relaxed) < i - R_WINDOW; spin++)
                if (spin > 64)
                    sched_yield();
                else
                    weft__cpu_relax();
            int64_t when = (i - R_DUE_AFTER + (int64_t)rng_below(&wseed, 2 * R_DUE_AFTER + 1)) * TICK;
            assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when), 0);
            atomic_store_explicit(&r->published, i + 1, memory_order_release);
            if (i % 4 == 3)
                ran += weft__timers_run(w, w, (i - R_DUE_AFTER) * TICK);
        }
        pthread_join(th, NULL);
        assert_int_equal(atomic_load(&r->bad_index), -1);
        assert_wheel(w, 0);  /* each timer fired or deleted, none left */
        unsigned long woken = 0;
        for (int i = 0; i < R_TIMERS; i++) {
            bool f = fired(&pw->tasks[i]);
            if (f != r->fired_at_del[i] || (park_of(&pw->tasks[i]) == WEFT__PARK_WOKEN) != f)
                fail_msg("round %d, timer %d: fired %d, fired when deleted %d, wake token %d",
                         round, i, f, r->fired_at_del[i], park_of(&pw->tasks[i]));
            woken += f;
        }
        assert_int_equal(woken, ran);  /* run counted each firing once */
        fired_n += woken;
        unfired_n += R_TIMERS - woken;
    }
    fprintf(stderr, "test_delete_races_fire: %d rounds: %lu fired, %lu deleted first\n", rounds,
            fired_n, unfired_n);
    /* Both outcomes must occur, else the race was not exercised (the last
     * timers of a round are never due, so deletes-first always do). */
    assert_true(fired_n > 0);
    assert_true(unfired_n > 0);
    free(r);
    timer_world_free(pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_cancel_every_slot),
        cmocka_unit_test(test_cascade),
        cmocka_unit_test(test_crowded),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_fire_wakes),
        cmocka_unit_test(test_delete_races_fire),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
