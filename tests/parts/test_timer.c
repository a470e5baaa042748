/*
 * test_timer: the per-worker timer heap (runtime/timer.c) alone, on a
 * worker and tasks made by hand (parts.h): no scheduler, no clock.
 *
 *  - empty heap: next() is INT64_MAX, run fires nothing, deleting a timer
 *    that was never queued does nothing;
 *  - order: next() is always the earliest deadline; run(now) fires exactly
 *    the timers due at now (deadline == now included), earliest first;
 *  - removal at every position of the heap (root, last, a middle whose
 *    replacement must move up rather than down), twice in a row;
 *  - random: 10000 timers, many duplicate deadlines, random adds, deletes
 *    and runs; after every operation next() is the heap's root, after
 *    every 8th (and every one while few are queued) the true minimum (a
 *    scan of what the test knows is queued), and every 64th the whole heap
 *    is checked: each timer's idx is its position, its heap is the worker,
 *    every parent is due no later than its children; a run fires exactly
 *    the queued timers due by then;
 *  - firing wakes the task by its wake token (sched.c): a PARKED task is
 *    queued - on the firing thread's worker's ring when that thread is a
 *    worker of the task's runtime (also when it fires a blocked owner's
 *    timers), else through the injection queue - an ARMING one becomes
 *    WOKEN, a RUNNING or already WOKEN one is left alone; every fired timer
 *    is marked fired and leaves the heap; a fired timer can be queued again;
 *  - a delete racing the firer (a task resumed by something else deletes
 *    its timer while its worker fires it): afterwards the timer either
 *    fired - and then the task's wake is complete - or it never fires.
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

/* Asserts the heap's invariants and that next() publishes its root. */
static void assert_heap(weft__worker *w, int n)
{
    weft__timers *ts = &w->timers;
    assert_int_equal(ts->n, n);
    assert_true(ts->n <= ts->cap);
    for (int i = 0; i < ts->n; i++) {
        weft__timer *tm = ts->heap[i];
        if (tm->idx != i)
            fail_msg("heap[%d] says it is at %d", i, tm->idx);
        assert_ptr_equal(tm->heap, w);
        if (i > 0 && ts->heap[(i - 1) / 2]->when > tm->when)
            fail_msg("heap[%d] (when %lld) is due before its parent heap[%d] (when %lld)", i,
                     (long long)tm->when, (i - 1) / 2, (long long)ts->heap[(i - 1) / 2]->when);
    }
    assert_int_equal(weft__timers_next(ts), n ? ts->heap[0]->when : INT64_MAX);
}

static bool fired(weft_task *t) { return atomic_load(&t->timer.fired); }
static int park_of(weft_task *t) { return atomic_load(&t->park); }

static p_world *timer_world(unsigned nworkers, size_t ntasks)
{
    p_world *pw = p_world_new(nworkers, ntasks);
    for (unsigned i = 0; i < nworkers; i++)
        assert_int_equal(weft__timers_init(&pw->w[i]->timers), 0);
    return pw;
}

static void timer_world_free(p_world *pw)
{
    for (unsigned i = 0; i < pw->nworkers; i++)
        weft__timers_free(&pw->w[i]->timers);
    p_world_free(pw);
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
    assert_heap(w, 0);
    timer_world_free(pw);
}

/* Distinct deadlines added in a shuffled order, then fired one by one. */
static void test_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    uint64_t seed = p_seed("test_order");
    int perm[N];
    for (int i = 0; i < N; i++)
        perm[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)rng_below(&seed, (uint64_t)i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    int64_t min = INT64_MAX;
    for (int i = 0; i < N; i++) {
        int64_t when = 1000 + 10 * (int64_t)perm[i];   /* task perm[i] due at when */
        assert_int_equal(weft__timer_add(w, &pw->tasks[perm[i]].timer, when), 0);
        if (when < min)
            min = when;
        assert_int_equal(weft__timers_next(&w->timers), min);
    }
    assert_heap(w, N);
    assert_true(w->timers.cap >= N);  /* grew from its first 64 */

    assert_int_equal(weft__timers_run(w, w, 999), 0);  /* none due yet */
    for (int i = 0; i < N; i++) {
        int64_t when = 1000 + 10 * (int64_t)i;
        /* Just before: not due.  At the deadline: exactly this one. */
        assert_int_equal(weft__timers_run(w, w, when - 1), 0);
        assert_false(fired(&pw->tasks[i]));
        assert_int_equal(weft__timers_run(w, w, when), 1);
        assert_true(fired(&pw->tasks[i]));
        assert_int_equal(pw->tasks[i].timer.idx, -1);
        /* RUNNING tasks: a wake is a no-op, nothing queued anywhere. */
        assert_int_equal(park_of(&pw->tasks[i]), WEFT__PARK_RUNNING);
        if (i % 97 == 0)
            assert_heap(w, N - 1 - i);
        /* The task resumes and deletes its timer: the fired fast path. */
        weft__timer_del(&pw->tasks[i].timer);
        assert_null(pw->tasks[i].timer.heap);
    }
    assert_heap(w, 0);
    assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
    assert_true(weft__runq_empty(w));
    timer_world_free(pw);
}

/* Removal where the last element, moved into the hole, must go up: heap
 * [0, 100, 1, 101, 102, 2, 3] (inserted in this order, already a heap, so
 * nothing moves); deleting 101 (position 3, under 100) moves 3 there, and 3
 * must rise above 100. */
static void test_delete_positions(void **state)
{
    (void)state;
    static const int64_t whens[] = {0, 100, 1, 101, 102, 2, 3};
    enum { N = sizeof whens / sizeof whens[0] };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    weft__timers *ts = &w->timers;
    for (int i = 0; i < N; i++)
        assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, whens[i]), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pw->tasks[i].timer.idx, i);  /* nothing moved */
    assert_heap(w, N);

    weft__timer_del(&pw->tasks[3].timer);             /* 101: a middle */
    assert_int_equal(pw->tasks[3].timer.idx, -1);
    assert_null(pw->tasks[3].timer.heap);
    assert_int_equal(pw->tasks[6].timer.idx, 1);      /* 3 rose ... */
    assert_int_equal(pw->tasks[1].timer.idx, 3);      /* ... above 100 */
    assert_heap(w, N - 1);
    weft__timer_del(&pw->tasks[3].timer);             /* twice: nothing */
    assert_heap(w, N - 1);

    weft__timer_del(&pw->tasks[0].timer);             /* the root */
    assert_heap(w, N - 2);
    assert_int_equal(weft__timers_next(ts), 1);
    weft__timer_del(ts->heap[ts->n - 1]);              /* the last */
    assert_heap(w, N - 3);
    while (ts->n) {
        weft__timer *tm = ts->heap[ts->n / 2];
        weft__timer_del(tm);
        assert_int_equal(tm->idx, -1);
        assert_heap(w, ts->n);
    }
    assert_int_equal(weft__timers_next(ts), INT64_MAX);
    for (int i = 0; i < N; i++)
        assert_false(fired(&pw->tasks[i]));           /* deleted, never fired */
    timer_world_free(pw);
}

/* Random adds, deletes and runs against a model: queued[i] and when[i]. */
static void test_random(void **state)
{
    (void)state;
    enum { N = 10000 };
    p_world *pw = timer_world(1, N);
    weft__worker *w = pw->w[0];
    uint64_t seed = p_seed("test_random");
    bool *queued = calloc(N, sizeof *queued);
    int64_t *when = calloc(N, sizeof *when);
    assert_non_null(queued);
    assert_non_null(when);
    int n = 0;
    int64_t base = 0;             /* runs advance time past base */
    unsigned long ops = 0, runs = 0, fired_total = 0;

    for (int phase = 0; phase < 2; phase++) {
        /* Phase 0 fills to N (with deletes mixed in), phase 1 churns. */
        int steps = phase == 0 ? 2 * N : 3 * N;
        for (int s = 0; s < steps; s++, ops++) {
            uint64_t r = rng_next(&seed);
            int i = (int)((r >> 8) % N);
            if (!queued[i] && (phase == 0 || r % 3 != 0)) {
                /* Narrow ranges: many equal deadlines; sometimes far. */
                int64_t d = r % 5 == 0 ? (int64_t)rng_below(&seed, 1000000)
                                       : (int64_t)rng_below(&seed, 200);
                when[i] = base + d;
                assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when[i]), 0);
                assert_false(fired(&pw->tasks[i]));
                queued[i] = true;
                n++;
            } else if (queued[i] && r % 4 != 0) {
                weft__timer_del(&pw->tasks[i].timer);
                assert_int_equal(pw->tasks[i].timer.idx, -1);
                queued[i] = false;
                n--;
            } else if (phase == 1 && r % 16 == 0) {
                /* Fire what is due a little after the earliest. */
                int64_t now = weft__timers_next(&w->timers);
                if (now == INT64_MAX)
                    now = base;
                now += (int64_t)rng_below(&seed, 50);
                int due = 0;
                for (int k = 0; k < N; k++)
                    due += queued[k] && when[k] <= now;
                assert_int_equal(weft__timers_run(w, w, now), due);
                for (int k = 0; k < N; k++) {
                    if (!queued[k])
                        continue;
                    weft__timer *tm = &pw->tasks[k].timer;
                    if (when[k] <= now) {
                        if (!fired(&pw->tasks[k]) || tm->idx != -1)
                            fail_msg("timer %d (when %lld) due at %lld did not fire", k,
                                     (long long)when[k], (long long)now);
                        weft__timer_del(tm);  /* resumed: the fired fast path */
                        assert_null(tm->heap);
                        queued[k] = false;
                        n--;
                    } else if (fired(&pw->tasks[k]) || tm->idx < 0) {
                        fail_msg("timer %d (when %lld) fired at %lld", k, (long long)when[k],
                                 (long long)now);
                    }
                }
                fired_total += (unsigned long)due;
                runs++;
                base = now;
            }
            /* next() is the true minimum after every operation. */
            int64_t min = INT64_MAX;
            if (s % 8 == 0 || n < 64) {
                for (int k = 0; k < N; k++)
                    if (queued[k] && when[k] < min)
                        min = when[k];
                assert_int_equal(weft__timers_next(&w->timers), min);
            } else {
                assert_int_equal(weft__timers_next(&w->timers),
                                 n ? w->timers.heap[0]->when : INT64_MAX);
            }
            if (s % 64 == 0)
                assert_heap(w, n);
        }
        if (phase == 0)
            for (int i = 0; i < N; i++)
                if (!queued[i]) {
                    when[i] = base + (int64_t)rng_below(&seed, 200);
                    assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when[i]), 0);
                    queued[i] = true;
                    n++;
                }
        assert_heap(w, n);
        if (phase == 0)
            assert_int_equal(n, N);  /* 10000 at once */
    }
    /* Drain: everything fires, in deadline order. */
    int64_t last = INT64_MIN;
    while (n) {
        int64_t next = weft__timers_next(&w->timers);
        assert_true(next >= last);
        last = next;
        int got = (int)weft__timers_run(w, w, next);
        assert_true(got >= 1);
        n -= got;
    }
    assert_heap(w, 0);
    fprintf(stderr, "test_random: %lu operations, %lu runs firing %lu timers\n", ops, runs,
            fired_total);
    assert_true(runs > 0 && fired_total > 0);
    free(queued);
    free(when);
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
    static const int tok[] = {WEFT__PARK_PARKED, WEFT__PARK_ARMING, WEFT__PARK_RUNNING,
                              WEFT__PARK_PARKED, WEFT__PARK_WOKEN, WEFT__PARK_PARKED};

    /* 1. Fired from a thread that is not a worker (the test's own): the
     *    parked tasks go through the injection queue, in deadline order. */
    weft__set_cur_worker(NULL);
    for (int i = 0; i < 6; i++) {
        atomic_store(&t[i].park, tok[i]);
        assert_int_equal(weft__timer_add(w, &t[i].timer, i == 5 ? 1000 : 60 - 10 * i), 0);
    }
    assert_int_equal(weft__timers_run(w, w, 100), 5);
    for (int i = 0; i < 5; i++) {
        assert_true(fired(&t[i]));
        assert_int_equal(t[i].timer.idx, -1);
    }
    assert_false(fired(&t[5]));
    assert_int_equal(weft__timers_next(&w->timers), 1000);
    assert_int_equal(park_of(&t[0]), WEFT__PARK_RUNNING);  /* woken ... */
    assert_int_equal(park_of(&t[3]), WEFT__PARK_RUNNING);
    assert_int_equal(park_of(&t[1]), WEFT__PARK_WOKEN);    /* it resumes itself */
    assert_int_equal(park_of(&t[2]), WEFT__PARK_RUNNING);  /* left alone */
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
        assert_int_equal(weft__timer_add(w, &t[i].timer, 60 - 10 * i), 0);
        assert_false(fired(&t[i]));  /* queued again: fired cleared */
    }
    assert_int_equal(weft__timers_run(w, w, 100), 5);
    assert_int_equal(weft__runq_len(w), 2);
    assert_ptr_equal(weft__runq_get(w), &t[3]);
    assert_ptr_equal(weft__runq_get(w), &t[0]);
    assert_int_equal(atomic_load(&t[0].state), WEFT_TASK_READY);
    assert_int_equal(atomic_load(&rt->inject_len), 0);
    for (int i = 0; i < 5; i++)
        weft__timer_del(&t[i].timer);

    /* 3. A blocked worker's timers fired by another (help_blocked): the
     *    firer's ring takes the tasks, the owner's heap loses them. */
    weft__set_cur_worker(w2);
    for (int i = 0; i < 5; i++) {
        atomic_store(&t[i].park, tok[i]);
        assert_int_equal(weft__timer_add(w, &t[i].timer, 60 - 10 * i), 0);
    }
    assert_int_equal(weft__timers_run(w2, w, 100), 5);
    assert_heap(w, 1);  /* t[5], due at 1000 */
    assert_heap(w2, 0);
    assert_true(weft__runq_empty(w));
    assert_int_equal(weft__runq_len(w2), 2);
    assert_ptr_equal(weft__runq_get(w2), &t[3]);
    assert_ptr_equal(weft__runq_get(w2), &t[0]);
    for (int i = 0; i < 5; i++) {
        weft__timer_del(&t[i].timer);
        assert_null(t[i].timer.heap);
    }
    weft__set_cur_worker(NULL);

    /* The one not due is deleted before it fires: never woken. */
    weft__timer_del(&t[5].timer);
    assert_heap(w, 0);
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
        int want = f ? WEFT__PARK_WOKEN : WEFT__PARK_ARMING;
        if (atomic_load(&t->park) != want || t->timer.heap || t->timer.idx != -1) {
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
            atomic_store(&pw->tasks[i].park, WEFT__PARK_ARMING);
            atomic_store(&pw->tasks[i].timer.fired, false);
            pw->tasks[i].timer.heap = NULL;
            pw->tasks[i].timer.idx = -1;
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
            int64_t when = i - R_DUE_AFTER + (int64_t)rng_below(&wseed, 2 * R_DUE_AFTER + 1);
            assert_int_equal(weft__timer_add(w, &pw->tasks[i].timer, when), 0);
            atomic_store_explicit(&r->published, i + 1, memory_order_release);
            if (i % 4 == 3)
                ran += weft__timers_run(w, w, i - R_DUE_AFTER);
        }
        pthread_join(th, NULL);
        assert_int_equal(atomic_load(&r->bad_index), -1);
        assert_heap(w, 0);  /* each timer fired or deleted, none left */
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
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_delete_positions),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_fire_wakes),
        cmocka_unit_test(test_delete_races_fire),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
