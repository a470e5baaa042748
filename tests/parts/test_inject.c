/*
 * test_inject: the injection queue (runtime/inject.c) alone, on a runtime,
 * workers and tasks made by hand (parts.h): a ring of segment descriptors
 * under a spinlock; pushes append a descriptor, pops take whole ones and
 * split one that is larger than their share outside the lock.
 *
 *  - FIFO across segments of different sizes, one worker taking it all;
 *  - a big segment split across many pops on 3 workers: each pop takes
 *    exactly its share (inject_len / nworkers + 1, capped at max), the rest
 *    goes back to the front as one descriptor, order kept, nothing lost or
 *    doubled, the counter "injected" right;
 *  - a model: random pushes and pops against a model of the descriptors
 *    (sizes, WEFT__INJECT_TAKE, concatenation when full, the split);
 *  - the descriptors full: a push concatenates onto the last one; a
 *    split's rest put back while they are full is prepended to the first;
 *  - concurrency: plain threads pushing runs (single spawns and batches)
 *    while workers pop, drain their rings and steal from each other: every
 *    task taken exactly once, with what its pusher wrote into it, and the
 *    queue ends empty.  ThreadSanitizer checks the lock, the walk outside
 *    it (a task's link is read before the task is put where a thief may
 *    take it: takers here overwrite next) and inject_len.
 *
 * Built twice, like test_runq: test_inject against the static library
 * (WEFT__RUNQ_SIZE 256, WEFT__INJECT_SEGS 64), test_inject_small against
 * weft_small (4 and 4: the descriptors are full most of the time).
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
#define SEGS WEFT__INJECT_SEGS

/* Any thread: links tasks[from .. from+n-1] in order and pushes them as
 * one run (as an overflow or a plain-thread spawn does). */
static void push_run(p_world *pw, size_t from, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        pw->tasks[from + i].next = &pw->tasks[from + i + 1];
    weft__inject_push(pw->rt, &pw->tasks[from], &pw->tasks[from + n - 1], n);
}

static weft_task *pop(weft__worker *w, unsigned max)
{
    weft__set_cur_worker(w);
    return weft__inject_pop(w, max);
}

/* Single-threaded: w pops with max; asserts that it took exactly the
 * tasks *lo, *lo+1, ... *lo+want-1 (the one returned, then its ring in
 * order), and advances *lo.  The ring must be empty before. */
static void pop_expect(p_world *pw, weft__worker *w, unsigned max, size_t *lo, size_t want)
{
    assert_true(weft__runq_empty(w));
    size_t len = atomic_load(&pw->rt->inject_len);
    weft_task *t = pop(w, max);
    if (!want) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_int_equal(p_idx(pw, t), *lo);
    for (size_t i = 1; i < want; i++) {
        weft_task *x = weft__runq_get(w);
        assert_non_null(x);
        if (p_idx(pw, x) != *lo + i)
            fail_msg("pop of %zu: position %zu holds task %zu, expected %zu", want, i,
                     p_idx(pw, x), *lo + i);
    }
    assert_null(weft__runq_get(w));
    assert_int_equal(atomic_load(&pw->rt->inject_len), len - want);
    *lo += want;
}

static size_t share_of(p_world *pw, unsigned max)
{
    size_t len = atomic_load(&pw->rt->inject_len);
    size_t s = len / pw->nworkers + 1;
    if (s > max) s = max;
    if (s > len) s = len;
    return s;
}

/* ------------------------------------------------------------------ */

static void test_empty(void **state)
{
    (void)state;
    p_world *pw = p_world_new(2, 1);
    assert_null(pop(pw->w[0], 1));
    assert_null(pop(pw->w[0], S / 2));
    assert_int_equal(pw->rt->inject_nseg, 0);
    /* inject_len > 0 with no descriptor: a split's rest in flight on
     * another worker.  The popper takes nothing and touches nothing. */
    atomic_store(&pw->rt->inject_len, 5);
    assert_null(pop(pw->w[0], S / 2));
    assert_int_equal(atomic_load(&pw->rt->inject_len), 5);
    assert_int_equal(pw->rt->inject_nseg, 0);
    p_world_free(pw);
}

/* Segments of sizes 1, 2, 3, ... as pushed; one worker whose share is
 * everything, up to max and to WEFT__INJECT_TAKE descriptors: it takes
 * them front first, and the queue hands them out in push order. */
static void test_fifo_segments(void **state)
{
    (void)state;
    enum { K = 12 };  /* segments: 78 tasks */
    p_world *pw = p_world_new(1, K * (K + 1) / 2);
    weft__worker *w = pw->w[0];
    size_t n = 0;
    for (size_t k = 1; k <= K; k++) {
        push_run(pw, n, k);
        n += k;
    }
    assert_int_equal(pw->rt->inject_nseg, SEGS < K ? SEGS : K);
    weft_task **all = calloc(n, sizeof *all);
    assert_non_null(all);
    assert_int_equal(p_inject_tasks(pw, all, n), n);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(all[i], &pw->tasks[i]);
    free(all);
    size_t lo = 0;
    while (lo < n) {
        /* Whole descriptors (at most WEFT__INJECT_TAKE) while they fit the
         * share, then part of the next one: the share, unless the
         * descriptors ran out first. */
        size_t share = share_of(pw, S / 2), want = 0;
        unsigned d = 0;
        for (uint32_t i = 0; i < pw->rt->inject_nseg && d < WEFT__INJECT_TAKE && want < share;
             i++, d++) {
            size_t sn = pw->rt->inject_seg[(pw->rt->inject_first + i) % SEGS].n;
            want += sn < share - want ? sn : share - want;
        }
        pop_expect(pw, w, S / 2, &lo, want);
    }
    assert_int_equal(pw->rt->inject_nseg, 0);
#if WEFT_OBSERVE
    assert_int_equal(atomic_load(&w->c.injected), n);
#endif
    p_world_free(pw);
}

/* One segment of 1000 (a plain thread's burst concatenated, or several
 * overflows'): three workers take it in turns, each exactly its share,
 * the rest back at the front as one descriptor, in front of a newcomer
 * pushed meanwhile. */
static void test_split(void **state)
{
    (void)state;
    enum { N = 1000 };
    p_world *pw = p_world_new(3, N + 1);
    weft__runtime *rt = pw->rt;
    push_run(pw, 0, N);
    assert_int_equal(rt->inject_nseg, 1);
    size_t lo = 0, total = N;
    uint64_t injected[3] = {0};
    for (unsigned i = 0; lo < total; i++) {
        weft__worker *w = pw->w[i % 3];
        unsigned max = 1 + (i * 37) % (S / 2);  /* 1 (the periodic look) .. S/2 */
        size_t share = share_of(pw, max);
        assert_true(share >= 1 && share <= max);
        pop_expect(pw, w, max, &lo, share);  /* the newcomer follows task N-1 */
        injected[i % 3] += share;
        if (lo < N) {
            const weft__inject_seg *f = &rt->inject_seg[rt->inject_first];
            assert_int_equal(rt->inject_nseg, 1 + (total > N));
            assert_int_equal(f->n, N - lo);
            assert_ptr_equal(f->head, &pw->tasks[lo]);
            assert_ptr_equal(f->tail, &pw->tasks[N - 1]);
        }
        if (i == 5) {
            push_run(pw, N, 1);
            total++;
        }
    }
    assert_int_equal(lo, N + 1);
    assert_int_equal(rt->inject_nseg, 0);
#if WEFT_OBSERVE
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&pw->w[i]->c.injected), injected[i]);
#endif
    p_world_free(pw);
}

/* The descriptors full: the next pushes concatenate onto the last one
 * (nothing lost, order kept); pops then free descriptors again. */
static void test_full_concat(void **state)
{
    (void)state;
    enum { EXTRA = 10 };
    size_t n = SEGS + EXTRA + 3;
    p_world *pw = p_world_new(2, n);
    for (size_t i = 0; i < SEGS; i++)
        push_run(pw, i, 1);
    assert_int_equal(pw->rt->inject_nseg, SEGS);
    for (size_t i = 0; i < EXTRA; i++)
        push_run(pw, SEGS + i, 1);
    push_run(pw, SEGS + EXTRA, 3);
    assert_int_equal(pw->rt->inject_nseg, SEGS);
    weft__inject_seg *last = &pw->rt->inject_seg[(pw->rt->inject_first + SEGS - 1) % SEGS];
    assert_int_equal(last->n, 1 + EXTRA + 3);
    assert_ptr_equal(last->head, &pw->tasks[SEGS - 1]);
    assert_ptr_equal(last->tail, &pw->tasks[n - 1]);
    weft_task **all = calloc(n, sizeof *all);
    assert_non_null(all);
    assert_int_equal(p_inject_tasks(pw, all, n), n);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(all[i], &pw->tasks[i]);
    free(all);
    /* One pop frees a descriptor: the next push gets one of its own. */
    size_t lo = 0;
    pop_expect(pw, pw->w[0], 1, &lo, 1);
    assert_int_equal(pw->rt->inject_nseg, SEGS - 1);
    p_world_free(pw);
    (void)lo;
}

/* A split's rest put back while the descriptors are full: the popper's
 * walk overflows its own (full) ring, whose push takes the descriptor the
 * split freed; the rest is then prepended to the first descriptor. */
static void test_full_push_back(void **state)
{
    (void)state;
    /* tasks: B (3, split), SEGS-1 singletons, S for the ring */
    size_t nb = 3, n = nb + (SEGS - 1) + S;
    p_world *pw = p_world_new(1, n);
    weft__worker *w = pw->w[0];
    push_run(pw, 0, nb);
    for (size_t i = 0; i < SEGS - 1; i++)
        push_run(pw, nb + i, 1);
    assert_int_equal(pw->rt->inject_nseg, SEGS);
    size_t r0 = nb + SEGS - 1;
    weft__set_cur_worker(w);
    for (size_t i = 0; i < S; i++)
        assert_true(weft__runq_put(w, &pw->tasks[r0 + i]));
    /* share 2: B[0] to run, B[1] into the full ring (which overflows: its
     * S/2 oldest and B[1] pushed), B[2] back to the front. */
    weft_task *t = pop(w, 2);
    assert_ptr_equal(t, &pw->tasks[0]);
    assert_int_equal(pw->rt->inject_nseg, SEGS);
    assert_int_equal(pw->rt->inject_seg[pw->rt->inject_first].n, 2);
    size_t want_n = 1 + (SEGS - 1) + S / 2 + 1;
    weft_task **want = calloc(want_n, sizeof *want), **got = calloc(want_n + 1, sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    size_t k = 0;
    want[k++] = &pw->tasks[2];
    for (size_t i = 0; i < SEGS - 1; i++)
        want[k++] = &pw->tasks[nb + i];
    for (size_t i = 0; i < S / 2; i++)
        want[k++] = &pw->tasks[r0 + i];
    want[k++] = &pw->tasks[1];
    assert_int_equal(k, want_n);
    assert_int_equal(p_inject_tasks(pw, got, want_n + 1), want_n);
    for (size_t i = 0; i < want_n; i++)
        if (got[i] != want[i])
            fail_msg("position %zu: task %zu, expected %zu", i, p_idx(pw, got[i]),
                     p_idx(pw, want[i]));
    assert_int_equal(weft__runq_len(w), S / 2);
    free(want);
    free(got);
    p_world_free(pw);
}

/* Random pushes (runs of 1 .. 2S) and pops (max 1 .. S/2, by one of three
 * workers) against a model of the descriptors' sizes.  Tasks are pushed in
 * index order, so the queue always holds [lo, hi) in order. */
static void test_model(void **state)
{
    (void)state;
    enum { N = 200000 };
    p_world *pw = p_world_new(3, N);
    uint64_t seed = p_seed("test_model");
    size_t model[SEGS];  /* sizes, front first */
    unsigned nseg = 0;
    size_t lo = 0, hi = 0, pops = 0, splits = 0, concats = 0;
    while (lo < N) {
        uint64_t r = rng_next(&seed);
        /* Pushes win while the queue is short, so that it fills up too. */
        bool push = hi < N && (r % 8 < (hi - lo < 4 * S ? 6u : 3u));
        if (push) {
            size_t n = r >> 8 & 1 ? 1 + (r >> 16) % (2 * S) : 1;
            if (n > N - hi)
                n = N - hi;
            push_run(pw, hi, n);
            hi += n;
            if (nseg == SEGS) {
                model[SEGS - 1] += n;
                concats++;
            } else {
                model[nseg++] = n;
            }
        } else {
            unsigned max = 1 + (unsigned)((r >> 8) % (S / 2));
            size_t share = share_of(pw, max), want = 0;
            unsigned d = 0;
            while (d < nseg && d < WEFT__INJECT_TAKE && want < share) {
                if (model[d] > share - want) {
                    model[d] -= share - want;  /* the rest stays in front */
                    want = share;
                    splits++;
                    break;
                }
                want += model[d++];
            }
            memmove(model, model + d, (nseg - d) * sizeof *model);
            nseg -= d;
            pop_expect(pw, pw->w[(r >> 40) % 3], max, &lo, want);
            pops++;
        }
        assert_int_equal(pw->rt->inject_nseg, nseg);
        for (unsigned i = 0; i < nseg; i++)
            assert_int_equal(pw->rt->inject_seg[(pw->rt->inject_first + i) % SEGS].n, model[i]);
        assert_int_equal(atomic_load(&pw->rt->inject_len), hi - lo);
    }
    fprintf(stderr, "test_model: %zu tasks, %zu pops, %zu splits, %zu concatenations\n",
            (size_t)N, pops, splits, concats);
    assert_true(splits > 0 && concats > 0);
    p_world_free(pw);
}

/* ------------------------------------------------------------------ */
/* Concurrency: plain threads pushing, workers popping and stealing     */
/* ------------------------------------------------------------------ */

#define C_PUSHERS 2
#define C_WORKERS 3
#define C_PER_PUSHER 20000

typedef struct conc {
    p_world *pw;
    _Atomic unsigned char *seen;
    _Atomic size_t consumed, doubles, torn, stolen;
    _Atomic int started;
    uint64_t seed;
    uintptr_t tag;
} conc;

#define C_TOTAL ((size_t)C_PUSHERS * C_PER_PUSHER)

static void c_take(conc *c, weft_task *t)
{
    size_t i = p_idx(c->pw, t);
    /* Written by the pusher before the push: the queue must publish it. */
    if ((uintptr_t)t->arg != (c->tag ^ i))
        atomic_fetch_add(&c->torn, 1);
    /* As a runtime's task may be re-queued at once: a popper that read a
     * link after handing the task out would race this (ThreadSanitizer). */
    t->next = NULL;
    if (atomic_fetch_add(&c->seen[i], 1) != 0)
        atomic_fetch_add(&c->doubles, 1);
    atomic_fetch_add_explicit(&c->consumed, 1, memory_order_release);
}

static bool c_done(conc *c)
{
    return atomic_load_explicit(&c->consumed, memory_order_acquire) >= C_TOTAL;
}

typedef struct { conc *c; unsigned id; } c_arg;

static void *c_pusher(void *arg)
{
    conc *c = ((c_arg *)arg)->c;
    unsigned id = ((c_arg *)arg)->id;
    uint64_t seed = c->seed ^ (0x51ED27ULL * (id + 1));
    atomic_fetch_add(&c->started, 1);
    size_t from = (size_t)id * C_PER_PUSHER, end = from + C_PER_PUSHER;
    while (from < end) {
        uint64_t r = rng_next(&seed);
        /* Mostly single spawns (a plain thread's burst), some batches. */
        size_t n = r % 4 ? 1 : 1 + (r >> 8) % (2 * S);
        if (n > end - from)
            n = end - from;
        for (size_t i = from; i < from + n; i++)
            c->pw->tasks[i].arg = (void *)(c->tag ^ i);
        push_run(c->pw, from, n);
        from += n;
        if ((r >> 32) % 64 == 0)
            sched_yield();
    }
    return NULL;
}

static void *c_worker(void *arg)
{
    conc *c = ((c_arg *)arg)->c;
    weft__worker *self = c->pw->w[((c_arg *)arg)->id];
    uint64_t seed = c->seed ^ (0xC0FFEEULL * (self->id + 1));
    weft__set_cur_worker(self);
    atomic_fetch_add(&c->started, 1);
    while (!c_done(c)) {
        uint64_t r = rng_next(&seed);
        weft_task *t = weft__inject_pop(self, 1 + (unsigned)(r % (S / 2)));
        if (t)
            c_take(c, t);
        /* Leave the ring to the thieves now and then. */
        if ((r >> 16) % 4)
            while ((t = weft__runq_get(self)))
                c_take(c, t);
        if ((r >> 24) % 2) {
            weft__worker *v = c->pw->w[(r >> 32) % C_WORKERS];
            if (v != self) {
                unsigned n = weft__runq_steal(self, v, false, &t);
                if (n) {
                    atomic_fetch_add(&c->stolen, n);
                    c_take(c, t);
                }
            }
        }
        if ((r >> 40) % 256 == 0)
            sched_yield();  /* let the pushers get ahead: full descriptors */
    }
    while ((weft__runq_get(self)))
        fail_msg("task left in worker %d's ring", self->id);
    weft__set_cur_worker(NULL);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    p_world *pw = p_world_new(C_WORKERS, C_TOTAL);
    uint64_t seed = p_seed("test_inject_concurrent");
    int rounds = P_SCALE(40, 8);
    size_t stolen = 0;
    for (int round = 0; round < rounds; round++) {
        conc c = {.pw = pw, .seed = rng_next(&seed)};
        c.tag = (uintptr_t)rng_next(&seed);
        c.seen = calloc(C_TOTAL, sizeof *c.seen);
        assert_non_null(c.seen);
        pthread_t th[C_PUSHERS + C_WORKERS];
        c_arg args[C_PUSHERS + C_WORKERS];
        for (unsigned i = 0; i < C_WORKERS; i++) {
            args[i] = (c_arg){&c, i};
            assert_int_equal(pthread_create(&th[i], NULL, c_worker, &args[i]), 0);
        }
        for (unsigned i = 0; i < C_PUSHERS; i++) {
            args[C_WORKERS + i] = (c_arg){&c, i};
            assert_int_equal(pthread_create(&th[C_WORKERS + i], NULL, c_pusher,
                                            &args[C_WORKERS + i]), 0);
        }
        for (unsigned i = 0; i < C_PUSHERS + C_WORKERS; i++)
            pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&c.doubles), 0);
        assert_int_equal(atomic_load(&c.torn), 0);
        assert_int_equal(atomic_load(&c.consumed), C_TOTAL);
        for (size_t i = 0; i < C_TOTAL; i++)
            if (atomic_load(&c.seen[i]) != 1)
                fail_msg("round %d: task %zu taken %u times", round, i,
                         (unsigned)atomic_load(&c.seen[i]));
        assert_int_equal(atomic_load(&pw->rt->inject_len), 0);
        assert_int_equal(pw->rt->inject_nseg, 0);
        stolen += atomic_load(&c.stolen);
        free(c.seen);
    }
    fprintf(stderr, "test_inject_concurrent: %d rounds of %zu tasks, %zu stolen\n", rounds,
            C_TOTAL, stolen);
    p_world_free(pw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_fifo_segments),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_full_concat),
        cmocka_unit_test(test_full_push_back),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_concurrent),
    };
    static char name[80];
    snprintf(name, sizeof name, "inject (WEFT__INJECT_SEGS %u, WEFT__RUNQ_SIZE %u)",
             (unsigned)SEGS, (unsigned)S);
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
