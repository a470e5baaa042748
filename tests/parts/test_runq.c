/*
 * test_runq: the per-worker run queue (runtime/runq.c) alone, on workers and
 * tasks made by hand (parts.h): no scheduler, no coroutines.
 *
 *  - empty queue: len 0, get and steal find nothing;
 *  - FIFO order of put/get at every fill level, many times round the ring;
 *  - head and tail wrapping past 2^32 (they are free-running uint32_t);
 *  - overflow: a put on a full ring moves its older half plus the new task
 *    to the injection queue (weft__inject_push), in order, and returns
 *    false; nothing lost or doubled over many overflows; weft__inject_pop
 *    takes them back (its fair share, the counter "injected");
 *  - runnext (via weft__ready_on, its producer): counted by len, never
 *    returned by get, displaced to the ring's tail by the next LIFO wake;
 *  - steal: half of the victim's ring (rounded up) in FIFO order, the last
 *    one returned to run and the rest at the thief's tail; truncated to the
 *    room in the thief's ring; runnext only with take_runnext and only when
 *    the ring is empty;
 *  - concurrency: one owner putting, popping and taking back its overflow
 *    while two thieves steal from it and from each other and pop their own
 *    rings (each thread the owner of its own worker, as in the runtime):
 *    every task is taken exactly once, with what the producer wrote into
 *    it before queueing it, and every queue ends empty.  Each owner takes
 *    its runnext as the scheduler does (weft__runnext_take: plain, behind
 *    the thieves' membarrier, where the kernel has it).  ThreadSanitizer
 *    checks the memory orders of the slots, head and tail (that write is a
 *    plain one: a missing release/acquire shows as a race on it).
 *
 * Built twice: test_runq against the static library (WEFT__RUNQ_SIZE 256),
 * test_runq_small against the small-queues library (stress/small,
 * WEFT__RUNQ_SIZE 4), where a third put already overflows a half-full
 * ring and every steal is truncated.  The tests are written for any size.
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

#define S WEFT__RUNQ_SIZE

/* ------------------------------------------------------------------ */
/* Looking inside (single-threaded only)                               */
/* ------------------------------------------------------------------ */

static uint32_t ring_head(weft__worker *w) { return atomic_load(&w->q.head); }
static uint32_t ring_tail(weft__worker *w) { return atomic_load(&w->q.tail); }

/* Asserts that w's ring holds exactly the tasks want[0..n-1], head first,
 * and that len counts them (plus runnext). */
static void assert_ring(p_world *pw, weft__worker *w, weft_task *const *want, uint32_t n)
{
    uint32_t h = ring_head(w), tl = ring_tail(w);
    assert_int_equal(tl - h, n);
    for (uint32_t i = 0; i < n; i++) {
        weft_task *t = atomic_load(&w->q.slots[(h + i) % S]);
        if (t != want[i])
            fail_msg("ring of worker %d, position %u: task %zu, expected %zu", w->id, i,
                     p_idx(pw, t), p_idx(pw, want[i]));
    }
    bool rn = atomic_load(&w->q.runnext) != NULL;
    assert_int_equal(weft__runq_len(w), n + rn);
    assert_int_equal(weft__runq_empty(w), n + rn == 0);
}

/* Asserts that the injection queue holds exactly want[0..n-1] in order
 * (and that its descriptors and inject_len agree: p_inject_tasks), then
 * empties it (the tasks are the test's to reuse). */
static void take_inject(p_world *pw, weft_task *const *want, size_t n)
{
    weft_task **got = calloc(n + 1, sizeof *got);
    assert_non_null(got);
    assert_int_equal(p_inject_tasks(pw, got, n + 1), n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("injection queue, position %zu: task %zu, expected %zu", i,
                     p_idx(pw, got[i]), p_idx(pw, want[i]));
    free(got);
    p_inject_clear(pw);
}

/* The owner's calls run with their worker as the calling thread's current
 * worker, as in the runtime (checked builds assert it: tail has one
 * writer); a single-threaded test plays each worker in turn. */
static bool q_put(weft__worker *w, weft_task *t)
{
    weft__set_cur_worker(w);
    return weft__runq_put(w, t);
}
static weft_task *q_get(weft__worker *w)
{
    weft__set_cur_worker(w);
    return weft__runq_get(w);
}
static unsigned q_steal(weft__worker *thief, weft__worker *victim, bool take_runnext,
                        weft_task **out)
{
    weft__set_cur_worker(thief);
    return weft__runq_steal(thief, victim, take_runnext, out);
}
static weft_task *q_inject_pop(weft__worker *w, unsigned max)
{
    weft__set_cur_worker(w);
    return weft__inject_pop(w, max);
}
static void q_ready(weft__worker *w, weft_task *t, bool lifo)
{
    weft__set_cur_worker(w);
    weft__ready_on(w, t, lifo);
}

static void put_ok(weft__worker *w, weft_task *t) { assert_true(q_put(w, t)); }

/* ------------------------------------------------------------------ */

static void test_empty(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, 4);
    weft__worker *w = pw->w[0], *th = pw->w[1];
    assert_int_equal(weft__runq_len(w), 0);
    assert_true(weft__runq_empty(w));
    assert_null(q_get(w));
    weft_task *out = NULL;
    assert_int_equal(q_steal(th, w, false, &out), 0);
    assert_int_equal(q_steal(th, w, true, &out), 0);
    assert_null(out);
    assert_true(weft__runq_empty(th));
    p_world_free(pw);
}

/* FIFO at every fill level 1..S, repeated so that head and tail go round
 * the ring many times (slot index = counter % S). */
static void test_fifo(void **state)
{
    (void)state;
    p_world *pw = p_world_new(1, S);
    weft__worker *w = pw->w[0];
    weft_task *want[S];
    for (uint32_t k = 1; k <= S; k++) {
        for (int rep = 0; rep < 3; rep++) {
            for (uint32_t i = 0; i < k; i++) {
                want[i] = &pw->tasks[(i * 7 + k + (uint32_t)rep) % S];
                put_ok(w, want[i]);
            }
            assert_ring(pw, w, want, k);
            for (uint32_t i = 0; i < k; i++)
                assert_ptr_equal(q_get(w), want[i]);
            assert_null(q_get(w));
            assert_true(weft__runq_empty(w));
        }
    }
    /* Interleaved: put two, get one, until full; then drain in order. */
    uint32_t n = 0, got = 0;
    weft_task *order[2 * S];
    size_t seq = 0;
    for (;;) {
        for (int j = 0; j < 2 && n - got < S; j++) {
            order[n % (2 * S)] = &pw->tasks[seq++ % S];
            put_ok(w, order[n % (2 * S)]);
            n++;
        }
        if (n - got == S)
            break;
        assert_ptr_equal(q_get(w), order[got % (2 * S)]);
        got++;
    }
    assert_int_equal(weft__runq_len(w), S);
    while (got < n) {
        assert_ptr_equal(q_get(w), order[got % (2 * S)]);
        got++;
    }
    assert_null(q_get(w));
    assert_int_equal(atomic_load(&pw->rt->inject_len), 0);  /* never overflowed */
    p_world_free(pw);
}

/* head and tail are free-running counters: a long-lived worker passes
 * 2^32 puts.  Start just below the wrap and do everything across it. */
static void test_wrap(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, S + 1);
    weft__worker *w = pw->w[0], *th = pw->w[1];
    uint32_t start = UINT32_MAX - S / 2 + 1;  /* S/2 puts before the wrap */
    atomic_store(&w->q.head, start);
    atomic_store(&w->q.tail, start);
    weft_task *want[S + 1];
    for (uint32_t i = 0; i < S; i++) {
        want[i] = &pw->tasks[i];
        put_ok(w, want[i]);
    }
    assert_true(ring_tail(w) < start);  /* wrapped */
    assert_ring(pw, w, want, S);
    /* Full across the wrap: the next put overflows the older half. */
    assert_false(q_put(w, &pw->tasks[S]));
    weft_task *inj[S / 2 + 1];
    for (uint32_t i = 0; i < S / 2; i++)
        inj[i] = &pw->tasks[i];
    inj[S / 2] = &pw->tasks[S];
    take_inject(pw, inj, S / 2 + 1);
    assert_ring(pw, w, want + S / 2, S / 2);
    /* A steal across the wrap takes half, in order. */
    weft_task *out = NULL;
    uint32_t half = S / 2 - S / 4;
    assert_int_equal(q_steal(th, w, false, &out), half);
    assert_ptr_equal(out, want[S / 2 + half - 1]);
    assert_ring(pw, th, want + S / 2, half - 1);
    assert_ring(pw, w, want + S / 2 + half, S / 2 - half);
    for (uint32_t i = S / 2 + half; i < S; i++)
        assert_ptr_equal(q_get(w), want[i]);
    assert_null(q_get(w));
    for (uint32_t i = S / 2; i + 1 < S / 2 + half; i++)
        assert_ptr_equal(q_get(th), want[i]);
    assert_null(q_get(th));
    p_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* Overflow into the injection queue                                   */
/* ------------------------------------------------------------------ */

static void test_overflow_once(void **state)
{
    (void)state;
    p_world *pw = p_world_new(1, S + 1);
    weft__worker *w = pw->w[0];
    weft_task *all[S + 1];
    for (uint32_t i = 0; i <= S; i++)
        all[i] = &pw->tasks[i];
    for (uint32_t i = 0; i < S; i++)
        put_ok(w, all[i]);
    assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
    /* Full: the older half (0..S/2-1) and the new task go, in that order. */
    assert_false(q_put(w, all[S]));
    weft_task *inj[S / 2 + 1];
    memcpy(inj, all, sizeof(weft_task *) * (S / 2));
    inj[S / 2] = all[S];
    assert_null(all[S]->next);
    take_inject(pw, inj, S / 2 + 1);
    /* The newer half stays, still in order, and there is room again. */
    assert_ring(pw, w, all + S / 2, S / 2);
    for (uint32_t i = S / 2; i < S; i++)
        assert_ptr_equal(q_get(w), all[i]);
    assert_null(q_get(w));
    p_world_free(pw);
}

/* Many overflows in a row (nothing popped): a put fails exactly when the
 * ring was full, the injection queue grows by S/2 + 1 each time, in batch
 * order; then everything is taken back through weft__inject_pop and get,
 * each task exactly once. */
static void test_overflow_many(void **state)
{
    (void)state;
    enum { N = 8 * S + 3 };
    p_world *pw = p_world_new(2, N);
    weft__worker *w = pw->w[0];
    weft__runtime *rt = pw->rt;
    size_t overflows = 0;
    for (size_t i = 0; i < N; i++) {
        uint32_t before = weft__runq_len(w);
        size_t inj_before = atomic_load(&rt->inject_len);
        bool ok = q_put(w, &pw->tasks[i]);
        assert_int_equal(ok, before < S);
        if (ok) {
            assert_int_equal(weft__runq_len(w), before + 1);
            assert_int_equal(atomic_load(&rt->inject_len), inj_before);
        } else {
            overflows++;
            assert_int_equal(weft__runq_len(w), S / 2);
            assert_int_equal(atomic_load(&rt->inject_len), inj_before + S / 2 + 1);
            /* One descriptor per overflow, ending at task i; once they
             * are all in use, onto the last one (inject.c). */
            weft__inject_seg *last =
                &rt->inject_seg[(rt->inject_first + rt->inject_nseg - 1) % WEFT__INJECT_SEGS];
            size_t segs = overflows < WEFT__INJECT_SEGS ? overflows : WEFT__INJECT_SEGS;
            assert_int_equal(rt->inject_nseg, segs);
            assert_int_equal(last->n, (overflows - segs + 1) * (S / 2 + 1));
            assert_ptr_equal(last->tail, &pw->tasks[i]);
        }
        assert_int_equal(weft__runq_len(w) + atomic_load(&rt->inject_len), i + 1);
    }
    /* First overflow at put S+1, then one every S/2 + 1 puts. */
    assert_int_equal(overflows, (N - S - 1) / (S / 2 + 1) + 1);

    /* The injection queue, batch by batch: an overflow at put i moved the
     * ring's S/2 oldest (in FIFO order) and then task i. */
    size_t inj_n = atomic_load(&rt->inject_len);
    weft_task **inj = calloc(inj_n, sizeof *inj);
    assert_non_null(inj);
    assert_int_equal(p_inject_tasks(pw, inj, inj_n), inj_n);
    size_t prev = 0;  /* a batch: consecutive tasks, then its (newer) put */
    for (size_t i = 0; i < inj_n; i++) {
        size_t k = p_idx(pw, inj[i]), pos = i % (S / 2 + 1);
        if (pos > 0 && pos < S / 2)
            assert_int_equal(k, prev + 1);
        else if (pos == S / 2)
            assert_true(k > prev);
        prev = k;
    }
    free(inj);

    /* Take it all back: the ring first (so that inject_pop's puts never
     * overflow again), then the queue's fair share, as a worker does. */
    unsigned char *seen = calloc(N, 1);
    assert_non_null(seen);
    size_t taken = 0, from_inject = 0;
    for (;;) {
        weft_task *x;
        while ((x = q_get(w))) {
            assert_int_equal(seen[p_idx(pw, x)]++, 0);
            taken++;
        }
        size_t len = atomic_load(&rt->inject_len);
        if (!len)
            break;
        x = q_inject_pop(w, S / 2);
        assert_non_null(x);
        size_t share = len / rt->nworkers + 1;
        if (share > S / 2)
            share = S / 2;
        if (share > len)
            share = len;
        assert_int_equal(atomic_load(&rt->inject_len), len - share);
        assert_int_equal(weft__runq_len(w), share - 1);
        from_inject += share;
        assert_int_equal(seen[p_idx(pw, x)]++, 0);
        taken++;
    }
    assert_int_equal(taken, N);
    assert_int_equal(from_inject, inj_n);
    assert_int_equal(rt->inject_nseg, 0);
#if WEFT_OBSERVE
    assert_int_equal(atomic_load(&w->c.injected), inj_n);
#endif
    free(seen);
    p_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* runnext                                                             */
/* ------------------------------------------------------------------ */

static void test_runnext(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, 4);
    weft__worker *w = pw->w[0];
    weft_task *a = &pw->tasks[0], *b = &pw->tasks[1], *c = &pw->tasks[2];

    q_ready(w, a, true);
    assert_ptr_equal(atomic_load(&w->q.runnext), a);
    assert_int_equal(atomic_load(&a->state), WEFT_TASK_READY);
    assert_int_equal(weft__runq_len(w), 1);  /* counted */
    assert_false(weft__runq_empty(w));
    assert_null(q_get(w));          /* but get is the ring's only */

    /* The next LIFO wake takes the slot; the old occupant to the tail. */
    q_ready(w, b, true);
    assert_ptr_equal(atomic_load(&w->q.runnext), b);
    weft_task *r1[] = {a};
    assert_ring(pw, w, r1, 1);
    q_ready(w, c, false);
    weft_task *r2[] = {a, c};
    assert_ring(pw, w, r2, 2);
    assert_ptr_equal(q_get(w), a);
    assert_ptr_equal(q_get(w), c);
    assert_null(q_get(w));
    assert_ptr_equal(atomic_load(&w->q.runnext), b);
    atomic_store(&w->q.runnext, NULL);
    assert_true(weft__runq_empty(w));
    assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
    p_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* Steal                                                               */
/* ------------------------------------------------------------------ */

/* A victim holding k = 1..S: the thief takes ceil(k/2), the oldest; the
 * last of them is returned to run, the others wait at its tail. */
static void test_steal_half(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, S);
    weft__worker *v = pw->w[0], *th = pw->w[1];
    weft_task *all[S];
    for (uint32_t i = 0; i < S; i++)
        all[i] = &pw->tasks[i];
    for (uint32_t k = 1; k <= S; k++) {
        for (uint32_t i = 0; i < k; i++)
            put_ok(v, all[i]);
        uint32_t want = k - k / 2;
        weft_task *out = NULL;
        assert_int_equal(q_steal(th, v, false, &out), want);
        assert_ptr_equal(out, all[want - 1]);
        assert_ring(pw, th, all, want - 1);
        assert_ring(pw, v, all + want, k - want);
        while (q_get(v))
            ;
        while (q_get(th))
            ;
    }
    p_world_free(pw);
}

/* The thief's own ring holds f tasks: it takes at most its room, S - f
 * (a busy worker helping a blocked one), and nothing when full. */
static void test_steal_room(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, 2 * S);
    weft__worker *v = pw->w[0], *th = pw->w[1];
    weft_task *vt[S], *own[S], *want_th[2 * S];
    for (uint32_t i = 0; i < S; i++) {
        vt[i] = &pw->tasks[i];
        own[i] = &pw->tasks[S + i];
    }
    for (uint32_t f = 0; f <= S; f++) {
        for (uint32_t i = 0; i < S; i++)
            put_ok(v, vt[i]);
        for (uint32_t i = 0; i < f; i++)
            put_ok(th, own[i]);
        uint32_t want = S / 2 < S - f ? S / 2 : S - f;
        weft_task *out = NULL;
        assert_int_equal(q_steal(th, v, true, &out), want);
        if (want) {
            assert_ptr_equal(out, vt[want - 1]);
        } else {
            assert_null(out);
        }
        memcpy(want_th, own, sizeof(weft_task *) * f);
        if (want)
            memcpy(want_th + f, vt, sizeof(weft_task *) * (want - 1));
        assert_ring(pw, th, want_th, f + (want ? want - 1 : 0));
        assert_ring(pw, v, vt + want, S - want);
        assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
        while (q_get(v))
            ;
        while (q_get(th))
            ;
    }
    p_world_free(pw);
}

/* runnext is taken only with take_runnext, and only when the ring is
 * empty (the owner runs it next; a thief takes it from a blocked owner). */
static void test_steal_runnext(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, 4);
    weft__worker *v = pw->w[0], *th = pw->w[1];
    weft_task *a = &pw->tasks[0], *b = &pw->tasks[1];
    weft_task *out = NULL;

    q_ready(v, a, true);
    assert_int_equal(q_steal(th, v, false, &out), 0);
    assert_null(out);
    assert_ptr_equal(atomic_load(&v->q.runnext), a);
    assert_int_equal(q_steal(th, v, true, &out), 1);
    assert_ptr_equal(out, a);
    assert_null(atomic_load(&v->q.runnext));
    assert_true(weft__runq_empty(v));
    assert_true(weft__runq_empty(th));  /* returned to run, not queued */

    /* Ring not empty: the ring is stolen, runnext stays with its owner. */
    q_ready(v, a, true);
    put_ok(v, b);
    out = NULL;
    assert_int_equal(q_steal(th, v, true, &out), 1);
    assert_ptr_equal(out, b);
    assert_ptr_equal(atomic_load(&v->q.runnext), a);
    assert_int_equal(weft__runq_len(v), 1);
    atomic_store(&v->q.runnext, NULL);
    p_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* Concurrency: one owner, two thieves                                 */
/* ------------------------------------------------------------------ */

#define C_TASKS 4096
#define C_THIEVES 2

typedef struct conc {
    p_world *pw;
    _Atomic unsigned char *seen;    /* per task: times taken */
    _Atomic size_t consumed;
    _Atomic int started;
    _Atomic size_t stolen, doubles, torn;
    _Atomic long first_double;      /* task index, -1 */
    uint64_t seed;
    uintptr_t tag;                  /* this round's: task i's arg is tag ^ i */
} conc;

static void c_take(conc *c, weft_task *t)
{
    size_t i = (size_t)(t - c->pw->tasks);
    /* A plain field the producer wrote before queueing the task, as a spawn
     * fills a task: the queue must publish it to whoever takes the task
     * (ThreadSanitizer reports the race if a release/acquire is missing). */
    if (i < C_TASKS && (uintptr_t)t->arg != (c->tag ^ i))
        atomic_fetch_add(&c->torn, 1);
    if (i >= C_TASKS || atomic_fetch_add(&c->seen[i], 1) != 0) {
        atomic_fetch_add(&c->doubles, 1);
        long none = -1;
        atomic_compare_exchange_strong(&c->first_double, &none, (long)i);
    }
    atomic_fetch_add_explicit(&c->consumed, 1, memory_order_release);
}

static bool c_done(conc *c)
{
    return atomic_load_explicit(&c->consumed, memory_order_acquire) >= C_TASKS;
}

/* A steal by self from a random other worker, with or without its runnext. */
static weft_task *c_steal(conc *c, weft__worker *self, uint64_t *seed)
{
    weft__worker *v = c->pw->w[rng_below(seed, c->pw->nworkers)];
    if (v == self)
        return NULL;
    weft_task *t = NULL;
    unsigned n = q_steal(self, v, rng_below(seed, 2), &t);
    if (!n)
        return NULL;
    atomic_fetch_add(&c->stolen, n);
    return t;
}

/* What a worker does to find work, as the scheduler would: its runnext,
 * its ring, the injection queue, then a steal; or (steal_first) a steal
 * before all that, so that the thieves race the owner's ring rather than
 * drain the injection queue (into which a small ring spills nearly all).
 * self is the calling thread's worker.  Returns true if it found one. */
static bool c_find(conc *c, weft__worker *self, uint64_t *seed, bool steal_first)
{
    weft_task *t = steal_first ? c_steal(c, self, seed) : NULL;
    if (!t)
        t = weft__runnext_take(self);  /* the owner's take (plain where membarrier is) */
    if (!t)
        t = q_get(self);
    if (!t)
        t = q_inject_pop(self, S / 2);
    if (!t && !steal_first)
        t = c_steal(c, self, seed);
    if (!t)
        return false;
    c_take(c, t);
    return true;
}

static void *c_thief(void *arg)
{
    conc *c = ((void **)arg)[0];
    weft__worker *self = ((void **)arg)[1];
    uint64_t seed = c->seed ^ (uint64_t)(self->id * 0x9E3779B97F4A7C15ULL);
    atomic_fetch_add(&c->started, 1);
    while (!c_done(c)) {
        if (!c_find(c, self, &seed, rng_below(&seed, 2)))
            sched_yield();
        else if (rng_below(&seed, 4) == 0)
            sched_yield();  /* leave some in our ring for the others to steal */
    }
    return NULL;
}

/* One round: worker 0 (this thread) puts C_TASKS tasks, a few into its LIFO
 * slot, taking some back as it goes; the thieves run meanwhile; then all
 * drain.  Returns tasks stolen this round. */
static size_t c_round(p_world *pw, uint64_t seed)
{
    conc c = {.pw = pw, .seed = seed, .tag = (uintptr_t)rng_next(&seed)};
    c.seen = calloc(C_TASKS, sizeof *c.seen);
    assert_non_null(c.seen);
    atomic_store(&c.first_double, -1);
    pthread_t th[C_THIEVES];
    void *args[C_THIEVES][2];
    for (int i = 0; i < C_THIEVES; i++) {
        args[i][0] = &c;
        args[i][1] = pw->w[1 + i];
        assert_int_equal(pthread_create(&th[i], NULL, c_thief, args[i]), 0);
    }
    while (atomic_load(&c.started) < C_THIEVES)
        sched_yield();

    weft__worker *w = pw->w[0];
    for (size_t i = 0; i < C_TASKS; i++) {
        weft_task *t = &pw->tasks[i];
        t->arg = (void *)(c.tag ^ i);
        uint64_t r = rng_next(&seed);
        if (r % 8 == 0)
            q_ready(w, t, true);   /* runnext, displacing its occupant */
        else
            q_put(w, t);         /* may overflow into the injection queue */
        if ((r >> 8) % 4 == 0)
            c_find(&c, w, &seed, false);
        if ((r >> 16) % 7 == 0) {
            weft_task *x = q_inject_pop(w, 1);  /* the periodic look */
            if (x)
                c_take(&c, x);
        }
    }
    while (!c_done(&c))
        if (!c_find(&c, w, &seed, false))
            sched_yield();
    for (int i = 0; i < C_THIEVES; i++)
        pthread_join(th[i], NULL);

    if (atomic_load(&c.doubles))
        fail_msg("a task was taken twice (first: task %ld; %zu doubles)",
                 atomic_load(&c.first_double), atomic_load(&c.doubles));
    assert_int_equal(atomic_load(&c.consumed), C_TASKS);
    assert_int_equal(atomic_load(&c.torn), 0);
    for (size_t i = 0; i < C_TASKS; i++)
        if (atomic_load(&c.seen[i]) != 1)
            fail_msg("task %zu taken %u times", i, (unsigned)atomic_load(&c.seen[i]));
    for (unsigned i = 0; i < pw->nworkers; i++) {
        assert_true(weft__runq_empty(pw->w[i]));
        assert_int_equal(ring_tail(pw->w[i]), ring_head(pw->w[i]));
    }
    assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
    assert_int_equal(pw->rt->inject_nseg, 0);
    free(c.seen);
    return atomic_load(&c.stolen);
}

static void test_concurrent(void **state)
{
    (void)state;
    p_world *pw = p_world_new(1 + C_THIEVES, C_TASKS);
    uint64_t seed = p_seed("test_concurrent");
    int rounds = P_SCALE(500, 150);
    size_t stolen = 0;
    for (int r = 0; r < rounds; r++)
        stolen += c_round(pw, rng_next(&seed));
    fprintf(stderr, "test_concurrent: %d rounds of %d tasks, %zu stolen\n", rounds, C_TASKS,
            stolen);
    /* The point of the test is steals racing the owner: they must happen
     * (a thief is started before each round's first put). */
    assert_true(stolen > 0);
    p_world_free(pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_overflow_once),
        cmocka_unit_test(test_overflow_many),
        cmocka_unit_test(test_runnext),
        cmocka_unit_test(test_steal_half),
        cmocka_unit_test(test_steal_room),
        cmocka_unit_test(test_steal_runnext),
        cmocka_unit_test(test_concurrent),
    };
    static char name[64];
    snprintf(name, sizeof name, "runq (WEFT__RUNQ_SIZE %u)", (unsigned)S);
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
