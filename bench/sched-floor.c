/*
 * sched-floor: the floor under weft-bench's per-core workloads (spawn,
 * chain, pingpong) on this machine, for any runtime whose coroutines have
 * stacks of their own.  No weft: a context switch of a dozen instructions
 * (callee-saved registers and the stack pointer, no floating-point control
 * state), task records and stacks on LIFO free lists, a run queue that is
 * an array, and nothing else (no registry, ids, names, cancellation, join,
 * timers, observability, sanitizer hooks).  Output in weft-bench's format.
 *
 *   sched-floor switch N        N round trips between two contexts
 *                               (ns per switch, one direction)
 *   sched-floor chain D I       D*I steps, each spawning the next task and
 *                               exiting: a record and a warm stack taken
 *                               and given back, a frame built, one switch
 *   sched-floor pingpong P R    P pairs, R rounds each, over channels of
 *                               capacity 1, one thread; a woken task goes to
 *                               the runnext slot, the older one to the
 *                               ring, and a parking task switches straight
 *                               to the next (weft's shape)
 *   ATOMIC=1 ... pingpong       the same with the atomics a runtime needs
 *                               when any thread may use a channel and
 *                               other workers may steal: a spinlock per
 *                               channel operation (three a message: the
 *                               put, the get, the get's re-lock after its
 *                               wake-up), a park/wake handshake of one CAS
 *                               on each side (a wake that comes first
 *                               leaves a permit) and runnext taken by
 *                               exchange: 6 read-modify-writes a message,
 *                               none contended
 *   ATOMIC=2 ... pingpong       the four weft pays since 2026-12-04: no
 *                               re-lock after a wake-up (the waker hands
 *                               the item over and grants last) and
 *                               runnext taken with a plain load and store
 *                               (thieves fence for the owner)
 *   sched-floor spawn N         one thread spawns N no-op tasks (record
 *                               from a free list, two fields written,
 *                               pushed on a ring), a second runs them
 *                               (frame built on its warm stack, switch in,
 *                               switch out) and hands the records back on
 *                               a second ring; the spawner runs a task
 *                               itself when the ring is full
 *
 * x86-64 only (the switch below); elsewhere it says so and exits 77.
 * docs/scheduler.md, section 13, sets these beside weft, Tokio and Go.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)

/* fl_switch(save, load): saves rbp, rbx, r12-r15 on the current stack and
 * the stack pointer in *save, loads load and restores the same from there.
 * fl_entry: a new context's first code; r12 the function, r13 its arg. */
void fl_switch(void **save, void *load);
void fl_entry(void);
__asm__(".text\n"
        ".globl fl_switch\n.type fl_switch,@function\n"
        "fl_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size fl_switch, .-fl_switch\n"
        ".globl fl_entry\n.type fl_entry,@function\n"
        "fl_entry:\n"
        "  movq %r13, %rdi\n  andq $-16, %rsp\n  callq *%r12\n  ud2\n"
        ".size fl_entry, .-fl_entry\n");

static void *fl_make(char *top, void (*fn)(void *), void *arg)
{
    uint64_t *sp = (uint64_t *)((uintptr_t)top & ~(uintptr_t)15);
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)fl_entry;
    *--sp = 0;                        /* rbp */
    *--sp = 0;                        /* rbx */
    *--sp = (uint64_t)(uintptr_t)fn;  /* r12 */
    *--sp = (uint64_t)(uintptr_t)arg; /* r13 */
    *--sp = 0;                        /* r14 */
    *--sp = 0;                        /* r15 */
    return sp;
}

#define STACK (64 * 1024)

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void report(const char *what, double t0, long ops, int threads)
{
    printf("%s %.1f ns/op %ld ops %d workers\n", what, (now_ns() - t0) / (double)ops, ops,
           threads);
}

static char *new_stack(void)
{
    char *s = malloc(STACK);
    if (!s) {
        perror("sched-floor");
        exit(1);
    }
    memset(s, 0, STACK);  /* warm: the floor counts no page faults */
    return s;
}

/* ------------------------------------------------------------------ */
/* switch                                                              */

static void *sw_main, *sw_co;

static void sw_body(void *arg)
{
    (void)arg;
    for (;;)
        fl_switch(&sw_co, sw_main);
}

static void run_switch(long n)
{
    char *s = new_stack();
    sw_co = fl_make(s + STACK, sw_body, NULL);
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        fl_switch(&sw_main, sw_co);
    report("switch", t0, 2 * n, 1);
    free(s);
}

/* ------------------------------------------------------------------ */
/* chain                                                               */

typedef struct task {
    void *sp;
    struct task *next;   /* free list, run queue */
    char *stack;
    void (*fn)(void *);
    void *arg;
    _Atomic int park;    /* pingpong (ATOMIC=1): 0 running, 2 parked, 3 woken (a permit) */
} task;

static task *free_tasks;
static char *free_stack;   /* one-deep LIFO cache: chain needs no more */
static task *cur, *prev_exited, *runnext;
static void *sched_sp;
static long chain_left;

static task *task_get(void)
{
    task *t = free_tasks;
    if (t)
        free_tasks = t->next;
    else if (!(t = calloc(1, sizeof *t)))
        exit(1);
    return t;
}

/* What a task does first after any switch: give back the exited one. */
static void after_switch(void)
{
    task *p = prev_exited;
    if (p) {
        prev_exited = NULL;
        *(char **)p->stack = free_stack;
        free_stack = p->stack;
        p->next = free_tasks;
        free_tasks = p;
    }
}

static void chain_exit(void);

static void chain_step(void *arg)
{
    (void)arg;
    after_switch();
    if (chain_left-- > 0) {
        task *t = task_get();  /* spawn: a record, into runnext */
        t->fn = chain_step;
        t->arg = NULL;
        t->stack = NULL;
        runnext = t;
    }
    chain_exit();
}

static void chain_exit(void)
{
    task *self = cur, *next = runnext;
    runnext = NULL;
    prev_exited = self;
    if (!next) {
        fl_switch(&self->sp, sched_sp);
        abort();
    }
    char *s = free_stack;
    if (s)
        free_stack = *(char **)s;
    else
        s = new_stack();
    next->stack = s;
    next->sp = fl_make(s + STACK, next->fn, next->arg);
    cur = next;
    fl_switch(&self->sp, next->sp);
    abort();
}

static void run_chain(long depth, long iters)
{
    long n = depth * iters;
    chain_left = n - 1;
    task *t = task_get();
    t->stack = new_stack();
    t->sp = fl_make(t->stack + STACK, chain_step, NULL);
    cur = t;
    double t0 = now_ns();
    fl_switch(&sched_sp, t->sp);
    after_switch();
    report("chain", t0, n, 1);
}

/* ------------------------------------------------------------------ */
/* pingpong                                                            */

static int atomic_mode;

typedef struct {
    _Atomic int lock;
    bool full;
    long item;
    task *getter;
} chan;

static task **ring;
static size_t ring_mask, ring_head, ring_tail;
static _Atomic(task *) rnext;

static void lock(chan *c)
{
    if (atomic_mode)
        while (atomic_exchange_explicit(&c->lock, 1, memory_order_acquire))
            ;
}

static void unlock(chan *c)
{
    if (atomic_mode)
        atomic_store_explicit(&c->lock, 0, memory_order_release);
}

static void ready(task *t)
{
    task *old = atomic_load_explicit(&rnext, memory_order_relaxed);
    atomic_store_explicit(&rnext, t, memory_order_release);
    if (old)
        ring[ring_tail++ & ring_mask] = old;
}

static void wake(task *t)
{
    if (atomic_mode) {
        /* A permit: a wake that finds the task running (between its
         * unlock and its park) marks it woken, and the park then returns
         * at once. */
        int v = atomic_load_explicit(&t->park, memory_order_relaxed);
        for (;;) {
            if (v == 2) {
                if (atomic_compare_exchange_weak_explicit(&t->park, &v, 0, memory_order_acq_rel,
                                                          memory_order_relaxed)) {
                    ready(t);
                    return;
                }
            } else if (v == 0) {
                if (atomic_compare_exchange_weak_explicit(&t->park, &v, 3, memory_order_acq_rel,
                                                          memory_order_relaxed))
                    return;
            } else {
                return;
            }
        }
    }
    ready(t);
}

static task *next_task(void)
{
    task *t;
    if (atomic_mode == 1) {
        t = atomic_load_explicit(&rnext, memory_order_relaxed);
        if (t)
            t = atomic_exchange_explicit(&rnext, NULL, memory_order_acq_rel);
    } else {
        /* relaxed: one thread; a plain access of an _Atomic would be a
         * seq_cst exchange-priced store, which the plain floor must not pay. */
        t = atomic_load_explicit(&rnext, memory_order_relaxed);
        atomic_store_explicit(&rnext, NULL, memory_order_relaxed);
    }
    if (!t && ring_head != ring_tail)
        t = ring[ring_head++ & ring_mask];
    return t;
}

/* Parks cur (its wake-up was arranged under the channel's lock, released
 * by the caller) and switches straight to the next task. */
static void park(void)
{
    task *self = cur;
    if (atomic_mode) {
        int v = 0;
        if (!atomic_compare_exchange_strong_explicit(&self->park, &v, 2, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            atomic_store_explicit(&self->park, 0, memory_order_relaxed);
            return;  /* a permit: woken before it parked */
        }
    }
    task *next = next_task();
    cur = next;
    fl_switch(&self->sp, next ? next->sp : sched_sp);
}

static void put(chan *c, long v)
{
    lock(c);
    task *g = c->getter;
    if (g) {
        c->getter = NULL;
        c->item = v;
        c->full = true;
        wake(g);
    } else {
        if (c->full)
            abort();  /* capacity 1, and pingpong never puts twice */
        c->item = v;
        c->full = true;
    }
    unlock(c);
}

static long get(chan *c)
{
    lock(c);
    while (!c->full) {
        c->getter = cur;
        unlock(c);
        park();
        if (atomic_mode == 2 && c->full) {
            /* Granted: the waker is done with the channel (one thread
             * here, so no grant flag is needed to know it). */
            c->full = false;
            return c->item;
        }
        lock(c);  /* the item was handed over under the lock */
    }
    c->full = false;
    long v = c->item;
    unlock(c);
    return v;
}

typedef struct {
    chan a, b;
    long rounds;
} pair;

static long pp_finished;

static void pinger(void *arg)
{
    pair *p = arg;
    for (long r = 0; r < p->rounds; r++) {
        put(&p->a, r);
        if (get(&p->b) != r + 1)
            abort();
    }
    put(&p->a, -1);
    pp_finished++;
    task *self = cur, *next = next_task();
    cur = next;
    fl_switch(&self->sp, next ? next->sp : sched_sp);
    abort();
}

static void ponger(void *arg)
{
    pair *p = arg;
    long v;
    while ((v = get(&p->a)) >= 0)
        put(&p->b, v + 1);
    task *self = cur, *next = next_task();
    cur = next;
    fl_switch(&self->sp, next ? next->sp : sched_sp);
    abort();
}

static void run_pingpong(long pairs, long rounds)
{
    atomic_mode = getenv("ATOMIC") ? atoi(getenv("ATOMIC")) : 0;
    size_t cap = 1;
    while (cap < 2 * (size_t)pairs + 2)
        cap *= 2;
    ring = calloc(cap, sizeof *ring);
    ring_mask = cap - 1;
    pair *ps = calloc((size_t)pairs, sizeof *ps);
    task *ts = calloc(2 * (size_t)pairs, sizeof *ts);
    if (!ring || !ps || !ts)
        exit(1);
    for (long i = 0; i < pairs; i++) {
        ps[i].rounds = rounds;
        for (int k = 0; k < 2; k++) {
            task *t = &ts[2 * i + k];
            t->stack = new_stack();
            t->sp = fl_make(t->stack + STACK, k ? pinger : ponger, &ps[i]);
            ring[ring_tail++ & ring_mask] = t;
        }
    }
    double t0 = now_ns();
    task *t;
    while ((t = next_task())) {
        cur = t;
        fl_switch(&sched_sp, t->sp);
    }
    report(atomic_mode == 2 ? "pingpong-atomic4" : atomic_mode ? "pingpong-atomic" : "pingpong",
           t0, pairs * rounds, 1);
    if (pp_finished != pairs) {
        fprintf(stderr, "sched-floor: %ld of %ld pairs finished\n", pp_finished, pairs);
        exit(1);
    }
    for (long i = 0; i < 2 * pairs; i++)
        free(ts[i].stack);
    free(ts);
    free(ps);
    free(ring);
}

/* ------------------------------------------------------------------ */
/* spawn                                                               */

#define RING 1024         /* tasks queued to the runner at most */
#define SLOTS 8192        /* more than there are records: the free ring never fills */

typedef struct {
    _Atomic size_t head, tail;  /* single producer, single consumer */
    size_t cap;
    task *slot[SLOTS];
} spsc;

static bool spsc_push(spsc *q, task *t)
{
    size_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tl - atomic_load_explicit(&q->head, memory_order_acquire) == q->cap)
        return false;
    q->slot[tl % SLOTS] = t;
    atomic_store_explicit(&q->tail, tl + 1, memory_order_release);
    return true;
}

static task *spsc_pop(spsc *q)
{
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (h == atomic_load_explicit(&q->tail, memory_order_acquire))
        return NULL;
    task *t = q->slot[h % SLOTS];
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return t;
}

static spsc torun, freed;
static _Atomic long spawn_done;
static _Atomic bool spawn_stop;

static void noop(void *arg)
{
    void **back = arg;
    fl_switch(&(void *){0}, *back);
    abort();
}

/* Runs t on stack s: a frame built, switched in, the no-op switches back. */
static void run_one(task *t, char *s)
{
    void *back;
    t->sp = fl_make(s + STACK, noop, &back);
    fl_switch(&back, t->sp);
}

static void *runner(void *arg)
{
    (void)arg;
    char *s = new_stack();
    for (;;) {
        task *t = spsc_pop(&torun);
        if (!t) {
            if (atomic_load_explicit(&spawn_stop, memory_order_acquire) &&
                !(t = spsc_pop(&torun)))
                break;
            if (!t)
                continue;
        }
        run_one(t, s);
        atomic_fetch_add_explicit(&spawn_done, 1, memory_order_relaxed);
        while (!spsc_push(&freed, t))
            ;
    }
    free(s);
    return NULL;
}

static void run_spawn(long n)
{
    enum { POOL = 2 * RING + 64 };
    _Static_assert(POOL < SLOTS, "the free ring holds every record");
    torun.cap = RING;
    freed.cap = SLOTS;
    task *pool = calloc(POOL, sizeof *pool);
    if (!pool)
        exit(1);
    size_t unused = 0;
    char *s = new_stack();
    pthread_t th;
    double t0 = now_ns();
    pthread_create(&th, NULL, runner, NULL);
    long ran_here = 0;
    task *mine = NULL;  /* records the spawner ran itself, free again */
    for (long i = 0; i < n; i++) {
        task *t = mine;
        if (t)
            mine = t->next;
        else if (!(t = spsc_pop(&freed))) {
            if (unused < POOL)
                t = &pool[unused++];
            else
                while (!(t = spsc_pop(&freed)))
                    ;
        }
        t->fn = noop;
        t->arg = NULL;
        if (!spsc_push(&torun, t)) {
            run_one(t, s);  /* the ring is full: run it here */
            ran_here++;
            t->next = mine;
            mine = t;
        }
    }
    atomic_store_explicit(&spawn_stop, true, memory_order_release);
    pthread_join(th, NULL);
    long done = atomic_load(&spawn_done) + ran_here;
    report("spawn", t0, n, 2);
    if (done != n) {
        fprintf(stderr, "sched-floor: spawn ran %ld of %ld\n", done, n);
        exit(1);
    }
    free(s);
    free(pool);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sched-floor switch N | chain D I | pingpong P R | spawn N\n");
        return 2;
    }
    long a = atol(argv[2]), b = argc > 3 ? atol(argv[3]) : 0;
    if (!strcmp(argv[1], "switch"))
        run_switch(a);
    else if (!strcmp(argv[1], "chain") && b > 0)
        run_chain(a, b);
    else if (!strcmp(argv[1], "pingpong") && b > 0)
        run_pingpong(a, b);
    else if (!strcmp(argv[1], "spawn"))
        run_spawn(a);
    else {
        fprintf(stderr, "sched-floor: unknown workload or missing argument\n");
        return 2;
    }
    return 0;
}

#else

int main(void)
{
    fprintf(stderr, "sched-floor: x86-64 only (its context switch)\n");
    return 77;
}

#endif
