/*
 * Internal types of the runtime.  Not installed; "weft__" names are internal
 * and hidden from the shared library by -fvisibility=hidden and weft.map.
 *
 * Context rules used in comments throughout (after Go's runtime/proc.go):
 *   owner worker only   - only the worker thread that owns the object
 *   any thread          - workers, plain threads, sysmon, signal-free context
 *   may suspend         - may suspend the calling coroutine (coroutine only)
 *   may block thread    - may block the calling OS thread
 *   scheduler stack     - runs on a worker's own stack, between coroutines
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "weft.h"
#include "os.h"
#include "tls.h"
#include "rng.h"

#define WEFT__CACHELINE 64
#define WEFT__ALIGNED __attribute__((aligned(WEFT__CACHELINE)))
#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Names are copied into the task, up to this many bytes with the NUL. */
#define WEFT__NAME_MAX 64
/* Task slots come in slabs of WEFT__SLAB_BYTES (registry.c), aligned to
 * their size; slabs are never unmapped before weft_run returns, so walkers
 * may read them without a lock (the trimmer may zero a free slab's slots:
 * a zero slot reads as free). */
#define WEFT__SLAB_BYTES (128 * 1024)

typedef struct weft__worker weft__worker;
typedef struct weft__pool weft__pool;
typedef struct weft__runtime weft__runtime;
typedef struct weft__stack weft__stack;

/* ------------------------------------------------------------------ */
/* Checked invariants (Go's throw, libuv's asserts)                    */
/* ------------------------------------------------------------------ */
/* WEFT__ASSERT(cond): compiled into Debug and sanitizer builds
 * (WEFT_CHECKS, CMakeLists.txt), out of release builds, where cond is not
 * evaluated.  A broken invariant prints one line naming the check and
 * aborts: a runtime whose state is broken must not go on. */
#ifndef WEFT_CHECKS
#define WEFT_CHECKS 0
#endif
void weft__assert_fail(const char *what, const char *file, int line, const char *func)
    __attribute__((noreturn, cold));
#if WEFT_CHECKS
#define WEFT__ASSERT(cond) \
    (__builtin_expect(!!(cond), 1) ? (void)0 : weft__assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define WEFT__ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* ------------------------------------------------------------------ */
/* Spinlock: short critical sections only (a few dozen instructions).  */
/* C11 atomics so ThreadSanitizer sees the synchronisation.            */
/* ------------------------------------------------------------------ */
/*
 * Lock ranks (Go's lockrank.go).  A thread holding a lock may take only
 * locks of a higher rank; in checked builds every spinlock with a rank is
 * checked against the ranks its thread holds (check.c), and a lock taken
 * out of order aborts with both ranks named.  No lock is ever held across
 * a switch (weft__waitq_wait drops the primitive's lock before it parks),
 * so a thread's held ranks are its own.  Outer to inner:
 *
 *   GROUP   a task group's lock (group.c): finishing members are listed,
 *           waiters woken under it.
 *   COND    a condition variable's lock (cond.c): taken before its mutex's.
 *   PRIM    a sync primitive's lock (sync/: mutex, sem, event, rwlock,
 *           waitgroup, queue): grants wake waiters under it.
 *   POOL    a blocking pool's lock (blocking.c).
 *   FD      a descriptor's state (netpoll.c): readiness wakes under it.
 *   TIMERS  a worker's timer wheel (timer.c): nothing is taken under it
 *           (due timers are woken after it is dropped).
 *   INJECT  the injection queue (inject.c): a wake-up under any lock above
 *           may overflow a ring into it.
 *   IDLE    the idle list (idle.c): notify, after any of the above.
 *   LEAF    the task registry, the stack pool, the fd table's chunks, a
 *           worker's debug slot: nothing is taken under them.
 *
 * Rank 0 is unranked (not checked).  A lock's rank is set where it is
 * initialised (weft__spin_init).
 */
enum {
    WEFT__RANK_NONE,
    WEFT__RANK_GROUP,
    WEFT__RANK_COND,
    WEFT__RANK_PRIM,
    WEFT__RANK_POOL,
    WEFT__RANK_FD,
    WEFT__RANK_TIMERS,
    WEFT__RANK_INJECT,
    WEFT__RANK_IDLE,
    WEFT__RANK_LEAF,
    WEFT__RANK_COUNT
};

typedef struct { _Atomic uint8_t v; uint8_t rank; } weft__spin;  /* 2 bytes: fits beside hot fields */

/* check.c (checked builds): the calling thread takes / drops a lock of
 * rank r.  Out of line, so that a coroutine never reuses the address of
 * the thread-local they keep (weft.h, "Thread-locals and migration"). */
void weft__rank_acquire(int r) __attribute__((noinline));
void weft__rank_release(int r) __attribute__((noinline));

/* Before any other use (memory already zero or not). */
static inline void weft__spin_init(weft__spin *l, int rank)
{
    atomic_store_explicit(&l->v, 0, memory_order_relaxed);
    l->rank = (uint8_t)rank;
}

static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* Pauses a spinning waiter spends before it takes its holder to be
 * preempted and sleeps (weft__spin_wait): a few to some tens of
 * microseconds, longer than any critical section that runs. */
#define WEFT__SPIN_PAUSES 1024

/* spin.c.  Any thread: one back-off of a waiter whose spins are spent. */
void weft__spin_wait(void) __attribute__((cold, noinline));

/* Any thread; may spin, then sleep (never sched_yield: spin.c says why).
 * acquire: pairs with the release in spin_unlock. */
static inline void weft__spin_lock(weft__spin *l)
{
#if WEFT_CHECKS
    if (l->rank)
        weft__rank_acquire(l->rank);
#endif
    for (unsigned n = 0;; n++) {
        if (!atomic_exchange_explicit(&l->v, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(&l->v, memory_order_relaxed)) {
            if (++n > WEFT__SPIN_PAUSES)
                weft__spin_wait();
            else
                weft__cpu_relax();
        }
    }
}
/* Any thread; never spins nor yields.  true when l was free and is now
 * held (acquire, as spin_lock); for a caller that has something better to
 * do than wait for a holder that may be preempted. */
static inline bool weft__spin_trylock(weft__spin *l)
{
    /* The plain load first: a held lock's line stays shared. */
    if (atomic_load_explicit(&l->v, memory_order_relaxed) ||
        atomic_exchange_explicit(&l->v, 1, memory_order_acquire))
        return false;
#if WEFT_CHECKS
    if (l->rank)
        weft__rank_acquire(l->rank);
#endif
    return true;
}

/* Any thread.  release: pairs with the acquire in spin_lock. */
static inline void weft__spin_unlock(weft__spin *l)
{
    WEFT__ASSERT(atomic_load_explicit(&l->v, memory_order_relaxed));  /* held */
#if WEFT_CHECKS
    /* Before the release: once it is stored, the lock's owner object may
     * be freed by whoever takes it next (a group, a server). */
    if (l->rank)
        weft__rank_release(l->rank);
#endif
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

/* ------------------------------------------------------------------ */
/* Timers (runtime/timer.c)                                            */
/* ------------------------------------------------------------------ */
enum { WEFT__TIMER_IDLE, WEFT__TIMER_QUEUED, WEFT__TIMER_FIRING };

#define WEFT__WHEEL_LEVELS 6
#define WEFT__WHEEL_SLOTS 64

typedef struct weft__timer {
    struct weft__timer *next, *prev;  /* its slot's list (under the wheel lock) */
    int64_t when;            /* deadline, weft_now() clock */
    weft__worker *wheel;     /* whose wheel took it; NULL once deleted */
    uint8_t state;           /* WEFT__TIMER_*, under the wheel lock */
    uint8_t level, slot;     /* where it is queued (state QUEUED) */
    _Atomic bool fired;      /* set once the firer is done with the task
                                (release, outside the lock; timer_del
                                acquires) */
} weft__timer;

/* A hierarchical timing wheel (timer.c): level k's slots are 64^k ticks of
 * 2^16 ns; occ[k] has bit s set when slot s of level k is non-empty. */
typedef struct weft__timers {
    weft__spin lock;
    int n;                   /* queued timers (observe.c reads it locked) */
    uint64_t elapsed;        /* the wheel's tick: all timers due at an
                                earlier tick have fired */
    unsigned cascading;      /* 1 + the level whose slot at elapsed is being
                                cascaded (over several lock holds), or 0 */
    uint64_t occ[WEFT__WHEEL_LEVELS];
    weft__timer *slots[WEFT__WHEEL_LEVELS][WEFT__WHEEL_SLOTS];
    _Atomic int64_t next;    /* lower bound of the earliest time anything in
                                the wheel needs action, INT64_MAX when
                                empty; relaxed peek for the owner, thieves
                                and sysmon; the wheel is re-read under the
                                lock */
} weft__timers;

/* ------------------------------------------------------------------ */
/* Tasks (runtime/task.c)                                              */
/* ------------------------------------------------------------------ */
enum {
    WEFT__AFTER_NONE = 0,
    WEFT__AFTER_YIELD,   /* put back at the tail of the local run queue */
    WEFT__AFTER_PARK,    /* run park_commit, then sleep until woken */
    WEFT__AFTER_EXIT,    /* finished: release the stack, wake the joiner */
};

/* Wake token values (weft_task.park).  See the wake-up protocol in sched.c. */
enum {
    WEFT__PARK_RUNNING = 0, /* not asleep (running, or switched out with park_commit to come) */
    WEFT__PARK_PARKED = 2,  /* asleep: the waker that moves it to 0 enqueues it */
    WEFT__PARK_WOKEN = 3,   /* a permit: woken while not asleep; the next park returns at once */
};

#define WEFT__JOIN_DONE ((uintptr_t)1)

/* cflags: one atomic word on which weft_cancel and the finish agree about
 * which came first (a cancel that returned 0 is always seen by the join). */
#define WEFT__CF_CANCEL 1u
#define WEFT__CF_DONE 2u

typedef struct weft__local {
    const void *key;
    void *value;
    void (*dtor)(void *);
} weft__local;

typedef bool (*weft__commit_fn)(weft_task *t, void *arg);

struct weft_task {
    /* First cache line: what every switch touches.  The plain fields belong
     * to whoever runs the task (one worker at a time; hand-over is ordered
     * by the run queues and the wake token). */
    void *sp;                   /* saved stack pointer while switched out */
    weft__stack *stack;         /* NULL until the task first runs */
    weft_task *next;            /* link in the injection queue / free list */
    weft__runtime *rt;
    int after;                  /* WEFT__AFTER_*: the after-action of a switch */
    _Atomic int park;           /* WEFT__PARK_*: the wake token */
    _Atomic int state;          /* WEFT_TASK_*, or WEFT__TASK_FREE */
    _Atomic int last_worker;    /* worker it last ran on, -1 before */
    _Atomic bool cancelled;     /* sticky cancellation request */
    _Atomic uint8_t cflags;     /* WEFT__CF_*: decides weft_cancel vs finish races */
    bool park_cancellable;
    bool finished_cancelled;    /* cancellation seen by the time it finished */
    bool is_main;
    bool rare;                  /* a rare field was set (task-locals, blocking,
                                   group, trace flow): the free scrubs them */
    _Atomic int refs;           /* 1 for the handle + 1 while not finished */
    _Atomic uintptr_t join_state; /* 0, WEFT__JOIN_DONE, or the joiner */
    /* Second cache line: what every park writes.  wait, wait_fd and since
     * are read by registry walkers on any thread (observe.c), hence atomics;
     * they share the line of park_commit so that observability costs a park
     * no extra cache line (docs/scheduler.md, section 13). */
    weft__commit_fn park_commit;
    void *park_arg;
    int64_t park_deadline;
    _Atomic(const char *) wait; /* what it waits on (a static string), or NULL */
    _Atomic int64_t since;      /* coarse weft_now() when it last parked/started */
    _Atomic int wait_fd;        /* the fd of a "read fd" / "write fd" wait */

    weft_fn fn;
    void *arg;
    void *result;
    weft__timer timer;          /* the one deadline this task may wait on */
    weft__local *locals;
    unsigned nlocals, caplocals;
    _Atomic uint64_t id;
    _Atomic uint32_t seq;       /* odd while the slot is being (re)filled or freed */
    char name[WEFT__NAME_MAX];  /* "" when unnamed; written at spawn only, with
                                   relaxed atomic byte stores (walkers read it) */
    void *tsan_fiber;           /* sanitizer fiber state (fiber.h) */
    void *asan_fake;
    bool blocking;              /* runs on the blocking pool (blocking.c) */
    bool queued;                /* blocking: waiting in the pool's line */
    struct weft__pool *pool;    /* blocking: the pool it was submitted to */
    weft_group *group;          /* member of this group (group.c), or NULL */
    weft_task *gprev, *gnext;   /* links in the group's lists */
    uint64_t trace_flow;        /* WEFT_TRACE: the wake-up arrow to end at its next run */
    /* New fields go above this line.  A field is either reset by
     * weft__task_new, or clean on free: left at its reset value by whoever
     * uses it, so that a spawn writes only what every task dirties (a
     * finished task's slot is reused at once, and a spawn that rewrote all
     * six lines of it cost a chain step some 40 stores; docs/scheduler.md,
     * section 13).  Clean on free: the park fields (set by every park before
     * it reads them), timer (park_ex leaves it off its wheel, fired clear),
     * tsan_fiber and asan_fake (set when it first runs, tsan_fiber cleared
     * when it finishes), and the rare fields (locals, nlocals, caplocals,
     * blocking, queued, pool, group, gprev, gnext, trace_flow), which
     * whoever sets them flags in rare for the free to scrub
     * (weft__task_scrub, which clears exactly these).  Checked
     * builds poison what weft__task_new resets (registry.c,
     * weft__task_poison) and check a new task's clean fields
     * (weft__task_check_reset). */
    char end_[0];
} __attribute__((aligned(64)));

/* registry.c, checked builds: poison a freed slot / check a reset one. */
void weft__task_poison(weft_task *t);
void weft__task_check_reset(const weft_task *t);

/* Slots per slab: the first 4 KiB page holds the header (never trimmed),
 * the slots fill the rest. */
#define WEFT__SLAB_TASKS ((WEFT__SLAB_BYTES - 4096) / sizeof(weft_task))

/* A slab: the registry's list (next) and its own pool bookkeeping, which
 * only task_lock's holder touches (registry.c). */
struct weft__task_slab {
    struct weft__task_slab *next;   /* registry list: immutable once published */
    struct weft__task_slab *pnext, *pprev;  /* pool list (under task_lock) */
    weft_task *free;            /* slots given back to this slab (under task_lock) */
    unsigned nfree;             /* on that list */
    unsigned nbump;             /* slots [0, nbump) were handed out since the
                                   slab was mapped or trimmed */
    int list;                   /* WEFT__SLAB_*: which pool list holds it */
    uint32_t seq_base;          /* even: seq of a slot first used after a trim */
    weft_task t[WEFT__SLAB_TASKS] __attribute__((aligned(4096)));
};
_Static_assert(sizeof(struct weft__task_slab) <= WEFT__SLAB_BYTES, "slab header and slots fit");

/* A task slot that is not in use (registry.c). */
#define WEFT__TASK_FREE (-1)

/* A worker's cache of free task slots or stacks: the owner's alone, but
 * for n, which weft_memory_stats reads from any thread (relaxed stores
 * and loads: a statistic, plain moves on x86; weft__cache_n/_set). */
typedef struct weft__task_cache {
    weft_task *free;
    _Atomic unsigned n;
    unsigned low;               /* fewest since the last quarter (trim.c) */
} weft__task_cache;

/* ------------------------------------------------------------------ */
/* Per-worker run queue (runtime/runq.c)                               */
/* ------------------------------------------------------------------ */
/* Overridable (-D) so that a stress build can shrink the ring and make
 * overflow and steal truncation constant (Tokio's loom builds do the
 * same); a power of two. */
#ifndef WEFT__RUNQ_SIZE
#define WEFT__RUNQ_SIZE 256u
#endif
_Static_assert((WEFT__RUNQ_SIZE & (WEFT__RUNQ_SIZE - 1)) == 0 && WEFT__RUNQ_SIZE >= 4,
               "WEFT__RUNQ_SIZE: a power of two, 4 or more");
/* Scheduler constants (sched.c essay, 2-3), overridable likewise: runnext
 * runs in a row before the ring's turn; schedules between looks at the
 * injection queue, the poller and blocked workers; steal rounds. */
#ifndef WEFT__LIFO_MAX
#define WEFT__LIFO_MAX 16
#endif
#ifndef WEFT__INJECT_EVERY
#define WEFT__INJECT_EVERY 61
#endif
#ifndef WEFT__STEAL_ROUNDS
#define WEFT__STEAL_ROUNDS 4
#endif

typedef struct weft__runq {
    _Atomic uint32_t head WEFT__ALIGNED;  /* consumers: owner pop, thieves */
    _Atomic uint32_t tail;                /* written by the owner only */
    _Atomic(weft_task *) runnext;         /* LIFO slot */
    /* The owner's take of runnext without a read-modify-write (runq.c,
     * "Taking runnext"): taking is written by the owner only, steal_req
     * by thieves only (a count: several may ask at once). */
    _Atomic uint32_t taking;
    _Atomic uint32_t steal_req;
    _Atomic(weft_task *) slots[WEFT__RUNQ_SIZE];
} weft__runq;

/* ------------------------------------------------------------------ */
/* Stacks (runtime/stack.c)                                            */
/* ------------------------------------------------------------------ */
struct weft__stack {
    weft__stack *next, *prev;   /* links: a worker's cache (next), the pool's lists */
    char *lo;                   /* lowest usable byte (above the guard) */
    size_t size;                /* usable bytes */
    bool guarded;
    unsigned valgrind_id;
};

typedef struct weft__stack_cache {
    weft__stack *free;
    _Atomic unsigned n;
    unsigned low;               /* fewest since the last quarter (trim.c) */
} weft__stack_cache;

static inline unsigned weft__cache_n(const _Atomic unsigned *n)
{
    return atomic_load_explicit(n, memory_order_relaxed);
}
/* Owner worker only: sets the count, and the low-water mark below it. */
static inline void weft__cache_set(_Atomic unsigned *n, unsigned *low, unsigned v)
{
    atomic_store_explicit(n, v, memory_order_relaxed);
    if (v < *low)
        *low = v;
}

/* A worker's record of its caches' low-water marks, one per quarter of the
 * trim window (trim.c, weft__trim_caches).  Owner only. */
typedef struct weft__cache_trim {
    int64_t next_at;            /* real clock: end of the current quarter, 0: none yet */
    unsigned at;                /* next entry of the rings */
    size_t stacks[4], slots[4];   /* the marks; size_t as the pools' rings (trim.c) */
} weft__cache_trim;

/* ------------------------------------------------------------------ */
/* Counters (observe.c): written by their worker only, read by anyone.  */
/* ------------------------------------------------------------------ */
typedef struct weft__counters {
    _Atomic uint64_t spawned, steals, steal_attempts, parks, wakeups, polls, injected;
    _Atomic uint64_t parked_ns;
} weft__counters;

/* WEFT_OBSERVE (CMake option, default ON).  OFF compiles out what the
 * hot paths do only to be observed: the counters, the wait strings and
 * since stamps, and the trace hooks (docs/debugging.md, "What it costs").
 * The registry stays: it is the task allocator (registry.c), and shutdown
 * walks it. */
#ifndef WEFT_OBSERVE
#define WEFT_OBSERVE 1
#endif

/* worker->hooks: what the switch path must call out for, one byte on the
 * worker's hot line (not rt->cfg, not the trace pointer: two more lines). */
enum { WEFT__HOOK_DEBUG = 1, WEFT__HOOK_TRACE = 2 };

#if WEFT_OBSERVE
/* Single writer only: a counter bump without a locked instruction
 * (relaxed load + store; readers load relaxed). */
#define WEFT__BUMP(p, n)                                                                  \
    atomic_store_explicit((p), atomic_load_explicit((p), memory_order_relaxed) + (n),     \
                          memory_order_relaxed)
/* Owner worker only: bumps one of w's counters. */
#define WEFT__COUNT(w, field, n) WEFT__BUMP(&(w)->c.field, n)
/* A statement kept only when observability is built in. */
#define WEFT__OBS(...) __VA_ARGS__
/* Whether worker w records a trace (WEFT_TRACE). */
#define WEFT__TRACING(w) WEFT__UNLIKELY((w)->hooks & WEFT__HOOK_TRACE)
#else
#define WEFT__BUMP(p, n) ((void)0)
#define WEFT__COUNT(w, field, n) ((void)0)
#define WEFT__OBS(...)
#define WEFT__TRACING(w) 0
#endif

/* ------------------------------------------------------------------ */
/* Trace events (trace.c)                                              */
/* ------------------------------------------------------------------ */
enum { WEFT__TEV_RUN, WEFT__TEV_PARK, WEFT__TEV_STEAL, WEFT__TEV_FLOW_S, WEFT__TEV_FLOW_F,
       WEFT__TEV_BLOCKING };
typedef struct weft__tev {
    int64_t ts, dur;
    uint64_t id;            /* task id, flow id, or victim worker */
    int32_t kind, arg;
    char name[16];
} weft__tev;
struct weft__trace;

/* ------------------------------------------------------------------ */
/* Worker                                                              */
/* ------------------------------------------------------------------ */
struct weft__worker {
    weft__runq q;                         /* own cache lines */

    /* Owner-only state. */
    weft__runtime *rt WEFT__ALIGNED;
    /* rt, or NULL while this worker traces (set before the workers start):
     * wake() compares it with the task's runtime, so that one compare
     * decides both "queue it here" and "no trace hook", and an untraced
     * wake-up pays nothing for tracing. */
    weft__runtime *wake_rt;
    void *sched_sp;                       /* the scheduler context */
    weft_task *current;
    weft_task *prev;                      /* switched out, after-action pending */
    int id;
    uint32_t ticks;                       /* local_next() calls (cadence) */
    unsigned lifo_streak;                 /* runnext runs in a row */
    /* Takes runnext without an RMW (runq.c, "Taking runnext"): the same in
     * every worker, set before they start; kept per worker because the
     * owner's take reads this line anyway and a thief the victim's. */
    bool runnext_plain;
    bool searching;
    bool polling;                         /* in drive(): wakes defer notify */
    int64_t spread_due;                   /* idle.c weft__spread_check, 0: none */
    uint32_t spread_mark;                 /* ring tail after that poll */
    uint8_t hooks;                        /* WEFT__HOOK_*: debug mode, tracing */
    weft__stack_cache stacks;
    uint64_t next_id, id_end;             /* block of task ids */
    int *victims;                         /* other workers, nearest first */
    struct weft__sleeper *sleeper;        /* its own sleep (the poller backend's) */
    /* Its io_uring (runtime/os/linux/aio_uring.c): made and written by the owner, read by
     * reapers once published (release / acquire). */
    struct weft__aio *_Atomic aio;
    int cpu;                              /* OS cpu it is pinned to, -1 */
    pthread_t thread;
    void *tsan_fiber;                     /* the thread's own fiber */
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
    void *altstack;
    /* Cold, away from the hot lines above.  In a busy poll while the injection queue has a backlog (park.c,
     * weft__poll_now): wake_rt is NULL, so each wake-up takes wake_slow
     * (sched.c), which links the task here instead of queueing it; the
     * list joins the injection queue's tail as one segment afterwards. */
    bool deferring;
    weft_task *defer_head, *defer_tail;
    size_t defer_n;

    /* Read by other threads. */
    /* Progress, written by the owner only: (task runs << 16) | scheduler
     * passes.  Each switch-in adds one run (and zeroes the low bits), each
     * pass of the scheduler loop bumps the low bits, so sysmon and thieves
     * see it move whenever the worker is not stuck in one task; weft_stats'
     * tasks_run is tick >> 16, one store per switch-in for both. */
    _Atomic uint64_t tick WEFT__ALIGNED;
    _Atomic int running;                  /* 1 unless parked (driving or asleep) */
    _Atomic bool blocked;                 /* sysmon: stuck in one task */
    _Atomic int64_t park_since;           /* when it parked, 0 while not parked */
    _Atomic int64_t run_since;            /* sysmon: when its tick last moved (1 ms) */
    _Atomic bool want_bt;                 /* sysmon asks its signal handler for a backtrace */
    /* The handler's backtrace of the stuck coroutine, handed to sysmon to
     * symbolize and write: bt_n frames of bt_pcs, 0 while none waits, -1
     * while a reader holds it (sysmon.c, write_stuck_bt). */
    _Atomic int bt_n;
    void *bt_pcs[32];
    _Atomic bool excess;                  /* asleep as an excess worker (active.c) */
    /* Set by weft__wake_worker before it picks the channel to write; read
     * by the worker after it takes the driver (park_wait). */
    _Atomic bool wake_pending;
    bool in_idle;                         /* under rt->idle_lock */
    weft__worker *idle_next;              /* under rt->idle_lock */

    weft__timers timers;
    weft__task_cache tasks;               /* owner only: free task slots */
    weft__cache_trim ctrim;               /* owner only: the caches' trim (trim.c) */
    weft__counters c WEFT__ALIGNED;
    struct weft__trace *trace;            /* WEFT_TRACE: owner-only ring, or NULL */
    int64_t trace_start;                  /* when the current run began */
    uint64_t trace_flows;                 /* flow ids handed out */
    bool seeded;                          /* WEFT_SEED: the choices below are drawn */
    bool det;                             /* seeded, virtual clock, one worker: replayable */
    weft__rng rng;                        /* owner only: the seeded choices (seed.c) */

    /* Debug mode: what runs now, for sysmon's slow-coroutine warning. */
    weft__spin dbg_lock;
    uint64_t dbg_id;
    char dbg_name[WEFT__NAME_MAX];
    bool dbg_warned;
    /* weft_stats readers only (observe.c): the largest busy_ns reported,
     * so that it never goes backwards.  Cold: away from the owner's lines. */
    _Atomic uint64_t busy_seen;
};

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */
typedef struct weft__settings {
    unsigned workers;
    size_t stack_size;
    unsigned blocking_threads;
    bool pin;
    bool pin_auto;              /* pin not set explicitly: off under a CPU quota (active.c) */
    bool debug;
    int64_t slow_ns;
    int64_t trim_ns;            /* WEFT_TRIM_MS: the trimmer's window (trim.c); 0: never */
    int64_t spread_ns;          /* WEFT_SPREAD_US (idle.c weft__spread_check) */
    int aio;                    /* WEFT_IO_URING: WEFT__AIO_* (runtime/aio.h) */
    bool membarrier;            /* WEFT_MEMBARRIER not off (runq.c, "Taking runnext") */
    int dump_signal;            /* WEFT_DUMP_SIGNAL, 0 for none */
    const char *trace_path;     /* WEFT_TRACE, NULL for none */
    bool vclock;                /* WEFT_CLOCK=virtual (vclock.c) */
    bool seeded;                /* WEFT_SEED set (seed.c) */
    uint64_t seed;              /* WEFT_SEED's value, or the one chosen for "random" */
    unsigned chaos;             /* WEFT_CHAOS: 0..3, injected yields (seed.c) */
    const char *faults;         /* WEFT_FAULTS, NULL for none (faults.c) */
    uint64_t fault_thr[7];      /* WEFT_FAULTS parsed: per WEFT__FAULT_*, out of 2^32 */
    const char *console_path;   /* WEFT_CONSOLE, NULL for none */
} weft__settings;

/* A segment of the injection queue (inject.c): n >= 1 tasks linked
 * head..tail through next, tail->next NULL.  The queue is a ring of
 * WEFT__INJECT_SEGS of these inside the runtime (a power of two). */
typedef struct weft__inject_seg {
    weft_task *head, *tail;
    size_t n;
} weft__inject_seg;
#ifndef WEFT__INJECT_SEGS
#define WEFT__INJECT_SEGS 64u
#endif
_Static_assert((WEFT__INJECT_SEGS & (WEFT__INJECT_SEGS - 1)) == 0 && WEFT__INJECT_SEGS >= 2,
               "WEFT__INJECT_SEGS: a power of two, 2 or more");
/* Descriptors one pop takes at most, copied to the popper's stack (8 x 24
 * bytes: the periodic look may run on a coroutine's stack).  Only a queue
 * of many small segments (plain-thread spawns, one push each) is handed
 * out in pieces smaller than the fair share because of it. */
#define WEFT__INJECT_TAKE 8

struct weft__runtime {
    weft__settings cfg;
    unsigned nworkers;
    weft__worker **workers;
    /* Workers 0..active-1 take work, the rest are excess (active.c; the
     * essay, sched.c, 11).  Written under quota->mu by weft__active_set;
     * read-mostly, beside nworkers. */
    _Atomic unsigned active;
    struct weft__quota *quota;            /* active.c: the cgroup quota followed */

    /* Global injection queue (inject.c): plain-thread spawns and run-queue
     * overflow, as segments in a ring of descriptors.  inject_first and
     * inject_nseg are under inject_lock; inject_len is written under it and
     * read by anyone (inject.c says with which orders). */
    weft__spin inject_lock WEFT__ALIGNED;
    uint32_t inject_first, inject_nseg;
    _Atomic size_t inject_len;
    weft__inject_seg inject_seg[WEFT__INJECT_SEGS];

    /* Idle workers and searchers (idle.c). */
    weft__spin idle_lock WEFT__ALIGNED;
    weft__worker *idle;
    _Atomic unsigned n_idle WEFT__ALIGNED;
    _Atomic unsigned n_searching;

    _Atomic bool shutdown WEFT__ALIGNED;  /* main finished: cancel at birth */
    _Atomic bool stop;                    /* workers exit their loops */
    _Atomic bool any_blocked;             /* some worker flagged by sysmon */

    /* Task slots (registry.c): slabs never unmapped before weft_run returns. */
    weft__spin task_lock WEFT__ALIGNED;
    struct weft__slab_pool *slab_pool;    /* under task_lock */
    struct weft__task_slab *_Atomic slabs;
    /* Full batches of freed slots on their way from the workers that free
     * them to those that spawn, without task_lock (registry.c). */
    weft_task *_Atomic task_spare WEFT__ALIGNED;
    _Atomic unsigned task_spare_n;        /* batches in it (a bound) */

    /* Stacks shared between workers (stack.c). */
    weft__spin stack_lock WEFT__ALIGNED;
    struct weft__stack_pool *stack_pool;  /* under stack_lock */
    bool madv_guard;                      /* MADV_GUARD_INSTALL works */
    size_t guard_budget;                  /* mprotect guards left (fallback) */
    bool guard_warned;
    /* Tasks waiting in the pool's line for a stack (stack.c): written under
     * stack_lock, read without it to decide whether to offer stacks. */
    _Atomic size_t stack_waiting;

    /* The trimmer (trim.c): run by sysmon only.  trim_mu: held while slabs
     * are trimmed, and by reg_cancel_all (registry.c). */
    struct weft__trim *trim;
    pthread_mutex_t trim_mu;
    _Atomic uint64_t trimmed_stacks, trimmed_slabs;  /* released so far (tests, docs) */

    /* The thread in weft_run waits here for main, then for shutdown. */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    bool main_done;
    weft_task *main;

    /* Monitor thread (sysmon.c). */
    pthread_t sysmon;
    bool sysmon_started;
    pthread_mutex_t sysmon_mu;
    pthread_cond_t sysmon_cv;
    bool sysmon_stop;
    /* WEFT_DUMP_SIGNAL with a symbolizer: dumps the signal handler asked
     * for, written by sysmon or, once it stopped, weft_run (observe.c). */
    _Atomic int dump_requests;

    void *topo;                           /* hwloc topology (topo.c) */
    int64_t started_at;                   /* weft_now() at start (trace timestamps) */
    int64_t started_real;                 /* weft__real_now() at start (uptime, busy time) */
    _Atomic int64_t clock;                /* weft_now(), refreshed by sysmon (1-5 ms) */
    struct weft__trace *pool_trace;       /* WEFT_TRACE: the pool threads' ring */
    pthread_mutex_t pool_trace_mu;
    _Atomic uint64_t spawned_plain;       /* tasks spawned from plain threads */
    weft__pool *pool;                     /* blocking pool for users' calls */
    weft__pool *sys_pool;                 /* the runtime's own (names, files) */
    struct weft__fdtable *fds;            /* runtime/netpoll.c */
    struct weft__console *console;        /* WEFT_CONSOLE (console.c), or NULL */

    /* The shared poller (runtime/poller.h; sched.c essay, 9): every descriptor,
     * driven by one parked worker at a time. */
    struct weft__poller *poller;          /* the backend's (runtime/poller.h) */
    _Atomic(weft__worker *) driver WEFT__ALIGNED; /* holds the poller, or NULL */
    _Atomic unsigned nfds;                /* descriptors in the shared poller */
    _Atomic unsigned nrings;              /* of which the workers' io_uring rings */

    /* The virtual clock (vclock.c; WEFT_CLOCK=virtual). */
    pthread_mutex_t vclock_mu;            /* one advance at a time */
    _Atomic long vholds;                  /* pool jobs in flight: they hold the clock */
    _Atomic long det_pending;             /* pool jobs whose completion is not yet delivered
                                             (seed.c, replayable runs) */
    _Atomic bool deadlocked;              /* reported; weft_run returns -EDEADLK */
    int64_t dl_since;                     /* under vclock_mu: dead-looking since (real) */
    uint64_t dl_runs;                     /* under vclock_mu: task runs then */
    bool det;                             /* seeded, virtual clock, one worker (seed.c) */
    weft_task *det_done;                  /* under seed_lock: pool jobs finished, their
                                             completion not yet delivered (seed.c) */
    weft__spin seed_lock;                 /* seed_rng, det_done */
    weft__rng seed_rng;
};

/* ------------------------------------------------------------------ */
/* Internal calls                                                      */
/* ------------------------------------------------------------------ */

/* The worker running the calling thread, or NULL.  Any thread.  A
 * coroutine may resume on another thread, so the thread-local is read
 * afresh at every call, the thread pointer included (tls.h, per CPU; see
 * "Thread-locals and migration" in weft.h). */
extern __thread weft__worker *weft__tls_worker __attribute__((tls_model("initial-exec")));
static inline weft__worker *weft__cur_worker(void)
{
    return (weft__worker *)WEFT__TLS_LOAD(weft__tls_worker);
}
void weft__set_cur_worker(weft__worker *w);
/* The runtime running in this process, or NULL.  Any thread. */
weft__runtime *weft__cur_rt(void);
/* Plain threads: hold / release the running runtime (NULL: none). */
weft__runtime *weft__rt_get(void);
void weft__rt_put(void);
/* The task running on the calling thread, or NULL.  Any thread. */
static inline weft_task *weft__cur_task(void)
{
    weft__worker *w = weft__cur_worker();
    return w ? w->current : NULL;
}

/* Any thread: has t been cancelled?  seq_cst: pairs with weft_cancel. */
static inline bool weft__is_cancelled(weft_task *t)
{
    return atomic_load_explicit(&t->cancelled, memory_order_seq_cst);
}

/* Any thread.  The first check of every SUSPENSION POINT, before it looks
 * at its arguments or at what it could complete at once: -EPERM outside a
 * coroutine, -ECANCELED for a cancelled caller (sticky), else 0 with *self
 * set (self may be NULL). */
static inline int weft__suspend_enter(weft_task **self)
{
    weft_task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    if (weft__is_cancelled(t))
        return -ECANCELED;
    if (self)
        *self = t;
    return 0;
}

/* sched.c */
void weft__ready(weft_task *t, bool lifo);
void weft__ready_on(weft__worker *w, weft_task *t, bool lifo);
bool weft__wake(weft_task *t);
bool weft__wake_lifo(weft_task *t);
void weft__park(const char *wait, weft__commit_fn commit, void *arg);
int  weft__park_ex(const char *wait, weft__commit_fn commit, void *arg, int64_t deadline,
                   bool cancellable);
void weft__yield_now(void);
void weft__task_exit(void) __attribute__((noreturn));
void *weft__worker_main(void *arg);

/* inject.c */
void weft__inject_push(weft__runtime *rt, weft_task *head, weft_task *tail, size_t n); /* any */
weft_task *weft__inject_pop_slow(weft__worker *w, unsigned max);                      /* owner */

/* Whoever owns the list (its lock, or its one thread).  Appends t to the
 * list head..tail linked through t->next: the form weft__inject_push takes
 * (the stack pool's waiting line, a busy poll's deferred wake-ups). */
static inline void weft__task_list_append(weft_task **head, weft_task **tail, weft_task *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

/* idle.c */
void weft__notify_slow(weft__runtime *rt);             /* any thread */
void weft__wake_worker(weft__worker *w);               /* any thread */
void weft__drop_searching_slow(weft__worker *w, bool found); /* owner */
void weft__spread_check(weft__worker *w);              /* owner */
bool weft__work_anywhere(weft__worker *w);             /* owner */

/* park.c */
void weft__poll_now(weft__worker *w);                  /* owner, busy */
void weft__park_worker(weft__worker *w);               /* owner */

/* The fast paths of the three above that producers and the scheduler loop
 * call on every wake-up or pass: inline, so that the common "nothing to
 * do" costs a load and a branch, not a call into another file. */

/* Any thread.  Protocol 4a of the essay (sched.c): wakes an idle worker to
 * search when some are idle.  seq_cst: pairs with a parker's increment of
 * n_idle and its re-check of the queues (4c). */
static inline void weft__notify(weft__runtime *rt)
{
    if (atomic_load_explicit(&rt->n_idle, memory_order_seq_cst) != 0)
        weft__notify_slow(rt);
}

/* Owner worker only.  Ends w's search; the last searcher passes it on. */
static inline void weft__drop_searching(weft__worker *w, bool found)
{
    if (w->searching)
        weft__drop_searching_slow(w, found);
}

/* Owner worker only.  A fair share of the injection queue: one task to run
 * now, the rest (at most max-1) into w's ring; NULL when it is empty
 * (relaxed: a hint; the slow path reads it again under the lock) or all
 * of it is another worker's split in flight (inject.c). */
static inline weft_task *weft__inject_pop(weft__worker *w, unsigned max)
{
    if (atomic_load_explicit(&w->rt->inject_len, memory_order_relaxed) == 0)
        return NULL;
    return weft__inject_pop_slow(w, max);
}

/* runq.c */
bool weft__runq_put(weft__worker *w, weft_task *t);         /* owner; false: overflowed */
/* Owner worker only.  Empties runnext and returns what it held (NULL when
 * empty): the light side of the protocol in runq.c, "Taking runnext" (no
 * read-modify-write unless a thief is asking).  Inline: one per schedule. */
static inline __attribute__((always_inline)) weft_task *weft__runnext_take(weft__worker *w)
{
    weft__runq *q = &w->q;
    if (!atomic_load_explicit(&q->runnext, memory_order_relaxed))
        return NULL;
    if (!w->runnext_plain)
        /* acq_rel: pairs with a thief's CAS on runnext. */
        return atomic_exchange_explicit(&q->runnext, NULL, memory_order_acq_rel);
    /* relaxed, then only a compiler barrier: the thief's membarrier is
     * the fence of this Dekker pair (taking here, steal_req there). */
    atomic_store_explicit(&q->taking, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    weft_task *t;
    /* acquire: pairs with the release decrement at the end of a steal, so
     * a zero seen here also shows that steal's CAS on runnext. */
    if (WEFT__LIKELY(!atomic_load_explicit(&q->steal_req, memory_order_acquire))) {
        /* Reloaded inside: a thief may have emptied it before taking was
         * set.  relaxed: only this thread writes anything but NULL here.
         * release: a take is a release, as the exchange was (vclock.c's
         * last look relies on it). */
        t = atomic_load_explicit(&q->runnext, memory_order_relaxed);
        atomic_store_explicit(&q->runnext, NULL, memory_order_release);
    } else {
        /* acq_rel: pairs with the asking thief's CAS. */
        t = atomic_exchange_explicit(&q->runnext, NULL, memory_order_acq_rel);
    }
    /* release: pairs with the thief's acquire load of taking after its
     * membarrier, which then sees runnext emptied. */
    atomic_store_explicit(&q->taking, 0, memory_order_release);
    return t;
}
weft_task *weft__runq_get(weft__worker *w);                 /* owner */
unsigned weft__runq_steal(weft__worker *thief, weft__worker *victim, bool take_runnext, weft_task **out);
uint32_t weft__runq_len(weft__worker *w);                   /* any thread, approximate */
bool weft__runq_empty(weft__worker *w);                     /* any thread, approximate */

/* timer.c */
int  weft__timers_init(weft__timers *ts);
void weft__timers_free(weft__timers *ts);
int  weft__timer_add(weft__worker *w, weft__timer *tm, int64_t when);
void weft__timer_del(weft__timer *tm);
unsigned weft__timers_run(weft__worker *w, weft__worker *owner, int64_t now);
unsigned weft__timers_run_exact(weft__worker *w, weft__worker *owner, int64_t now);
int64_t weft__timers_min_when(weft__timers *ts);
static inline int64_t weft__timers_next(weft__timers *ts)
{
    return atomic_load_explicit(&ts->next, memory_order_relaxed);
}

/* Any thread; called by a waker whose CAS won (sched.c, wake), so t is
 * parked and its saved context stays put.  Asks for the cache lines the
 * resumption of t reads first: the registers the switch saved at its stack
 * pointer and the frames just above (the switch's caller, the park, the
 * sync call), and the timer line park_ex reads.  The woken task usually
 * runs later, not at once, time enough for them to arrive; without this,
 * resuming one of many parked tasks starts with a miss per line.  (Also
 * prefetching in the ring's pop was measured slower: docs/scheduler.md,
 * section 13.)  Prefetch never faults: a task not yet run (sp NULL) asks
 * for nothing. */
static inline __attribute__((always_inline)) void weft__prefetch_context(weft_task *t)
{
    /* relaxed: a hint; whoever hands t on has acquired its saved sp. */
    const char *sp = __atomic_load_n(&t->sp, __ATOMIC_RELAXED);
    __builtin_prefetch(sp);
    __builtin_prefetch(sp + 64);
    __builtin_prefetch(sp + 128);
    __builtin_prefetch(sp + 192);
    __builtin_prefetch(sp + 256);
    __builtin_prefetch(sp + 320);
    __builtin_prefetch(&t->timer);
}
/* Any thread.  The record's lines a run reads first (the switch's, the
 * park's, fn and arg), for a task a few places ahead in a run queue. */
static inline __attribute__((always_inline)) void weft__prefetch_task(const weft_task *t)
{
    __builtin_prefetch(t);
    __builtin_prefetch((const char *)t + 64);
    __builtin_prefetch((const char *)t + 128);
}

/* stack.c */
/* A worker's stack cache holds at most this many (docs/scheduler.md, 8). */
#define WEFT__CACHE_MAX 64
int  weft__stacks_init(weft__runtime *rt);
void weft__stacks_free(weft__runtime *rt);
weft__stack *weft__stack_get_slow(weft__worker *w, weft_task *t);
void weft__stack_put_spill(weft__worker *w);
void weft__stack_offer(weft__worker *w);                 /* owner worker */
/* Owner worker only (may block the thread in the slow path).  A stack for
 * t, a task about to run first: the most recent of w's cache, else
 * weft__stack_get_slow (stack.c), which may return NULL.  Inline, as the
 * other fast paths a spawn and an exit take (the cache pop and push, the
 * slot cache): each was a call of its own (docs/scheduler.md, section 13). */
static inline weft__stack *weft__stack_get(weft__worker *w, weft_task *t)
{
    weft__stack *s = w->stacks.free;
    if (WEFT__UNLIKELY(!s))
        return weft__stack_get_slow(w, t);
    w->stacks.free = s->next;
    weft__cache_set(&w->stacks.n, &w->stacks.low, weft__cache_n(&w->stacks.n) - 1);
    return s;
}
/* Owner worker only.  Returns the stack of a finished task to w's cache;
 * beyond WEFT__CACHE_MAX the older half goes to the pool. */
static inline void weft__stack_put(weft__worker *w, weft__stack *s)
{
    s->next = w->stacks.free;
    w->stacks.free = s;
    unsigned n = weft__cache_n(&w->stacks.n) + 1;
    /* relaxed: a statistic (weft__cache_n). */
    atomic_store_explicit(&w->stacks.n, n, memory_order_relaxed);
    if (WEFT__UNLIKELY(n > WEFT__CACHE_MAX))
        weft__stack_put_spill(w);
    /* relaxed: a task that began to wait after this load finds s when w
     * parks (weft__park_worker offers its cache) or when sysmon sends it
     * back to ask the kernel (weft__stacks_tick). */
    if (WEFT__UNLIKELY(atomic_load_explicit(&w->rt->stack_waiting, memory_order_relaxed)))
        weft__stack_offer(w);
}
void weft__stacks_tick(weft__runtime *rt, int64_t now);  /* sysmon */
void weft__stack_cache_flush(weft__worker *w);
/* Owner worker only: gives the k coldest stacks of w's cache back to the
 * pool as idle for a whole trim window (trim.c). */
void weft__stack_cache_trim(weft__worker *w, unsigned k);
bool weft__stack_guard_hit(const void *addr, const weft__stack *s);
/* A pool's count of idle items and the fewest it held since the trimmer
 * last took the mark (trim.c).  Under the pool's lock. */
typedef struct weft__lowwater {
    size_t n, low;
} weft__lowwater;
static inline void weft__lw_sub(weft__lowwater *l, size_t k)
{
    l->n -= k;
    if (l->n < l->low)
        l->low = l->n;
}
static inline void weft__lw_take(weft__lowwater *l, size_t *low, size_t *now)
{
    *low = l->low;
    *now = l->n;
    l->low = l->n;
}

/* Warm pooled stacks: the fewest since the last call (then restarted), now,
 * and how many of them were given back by cache trims as idle for a whole
 * window since the last call.  Any thread (sysmon). */
void weft__stacks_lowwater(weft__runtime *rt, size_t *low, size_t *now, size_t *credit);
/* Any thread: the stack figures of weft_memory_stats (observe.c). */
void weft__stacks_stats(weft__runtime *rt, weft_memory_stats *out);
/* Releases the memory of up to n of the coldest warm pooled stacks; returns
 * how many.  Any thread (sysmon); makes system calls, holds no lock across them. */
size_t weft__stacks_trim(weft__runtime *rt, size_t n);

/* registry.c */
/* Slots a worker's cache trades with the pool at a time (registry.c). */
#define WEFT__TASK_BATCH 32
weft_task *weft__task_alloc_slow(weft__runtime *rt, weft__worker *w);
void weft__task_cache_spill(weft__worker *w, unsigned n);
void weft__task_scrub(weft_task *t);
void weft__task_dealloc_remote(weft_task *t);
/* Any thread (w: the calling worker, or NULL).  A free slot, or NULL when
 * out of memory: from the calling worker's cache when it is one of rt's,
 * else weft__task_alloc_slow (registry.c). */
static inline weft_task *weft__task_alloc(weft__runtime *rt, weft__worker *w)
{
    if (WEFT__LIKELY(w && w->rt == rt)) {
        weft_task *t = w->tasks.free;
        if (WEFT__LIKELY(t)) {
            w->tasks.free = t->next;
            weft__cache_set(&w->tasks.n, &w->tasks.low, weft__cache_n(&w->tasks.n) - 1);
            return t;
        }
    }
    return weft__task_alloc_slow(rt, w);
}
/* The slot's owner (its spawner filling it, its last holder freeing it):
 * makes seq odd before the slot's fields change, so that registry walkers
 * (registry.c, observe.c) skip or retry it, and returns the even seq it had;
 * weft__slot_close(t, seq) makes it even again after the change (release:
 * pairs with the walkers' acquire loads).  The fence orders the odd store
 * before the field stores that follow (release: the walkers' seqlock
 * read).  ThreadSanitizer does not model fences, and GCC's warning that
 * says so would repeat in every file that includes this: silenced.  The
 * walkers' reads are atomics checked against seq, so TSan reports nothing
 * either way. */
static inline uint32_t weft__slot_open(weft_task *t)
{
    uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
    atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
    atomic_thread_fence(memory_order_release);
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif
    return seq;
}

static inline void weft__slot_close(weft_task *t, uint32_t seq)
{
    atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
}

/* Any thread.  Returns a slot whose last reference was dropped (its rare
 * fields scrubbed first, when it used any): to the
 * calling worker's cache when it is one of t's runtime (beyond twice a
 * batch, one batch goes on: weft__task_cache_spill), else straight to its
 * slab (weft__task_dealloc_remote).  Inline: a detached task's exit calls
 * it once per task. */
static inline void weft__task_dealloc(weft_task *t)
{
    weft__runtime *rt = t->rt;
    if (WEFT__UNLIKELY(t->rare))
        weft__task_scrub(t);
    /* seq odd around the change: walkers never report a torn slot. */
    uint32_t seq = weft__slot_open(t);
    /* release: a walker that reads FREE sees nothing of the old task. */
    atomic_store_explicit(&t->state, WEFT__TASK_FREE, memory_order_release);
    if (WEFT_CHECKS)
        weft__task_poison(t);
    weft__slot_close(t, seq);
    weft__worker *w = weft__cur_worker();
    if (WEFT__UNLIKELY(!w || w->rt != rt)) {
        weft__task_dealloc_remote(t);
        return;
    }
    t->next = w->tasks.free;
    w->tasks.free = t;
    unsigned n = weft__cache_n(&w->tasks.n) + 1;
    /* relaxed: a statistic (weft__cache_n). */
    atomic_store_explicit(&w->tasks.n, n, memory_order_relaxed);
    if (WEFT__UNLIKELY(n > 2 * WEFT__TASK_BATCH))
        weft__task_cache_spill(w, n);
}
void weft__task_cache_flush(weft__worker *w);
/* Owner worker only: gives the k coldest slots of w's cache back to their
 * slabs (trim.c). */
void weft__task_cache_trim(weft__worker *w, unsigned k);
/* Slabs with every slot free and resident: as weft__stacks_lowwater. */
void weft__slabs_lowwater(weft__runtime *rt, size_t *low, size_t *now);
/* Any thread: the slab figures of weft_memory_stats (observe.c). */
void weft__slabs_stats(weft__runtime *rt, weft_memory_stats *out);
/* Releases the slot pages of up to n of the coldest free slabs; returns how
 * many.  Any thread (sysmon), as weft__stacks_trim. */
size_t weft__slabs_trim(weft__runtime *rt, size_t n);
int  weft__slabs_init(weft__runtime *rt);

/* trim.c: sysmon's memory trimmer. */
int  weft__trim_init(weft__runtime *rt);
void weft__trim_free(weft__runtime *rt);
void weft__trim_tick(weft__runtime *rt, int64_t now);     /* sysmon only */
/* Owner worker only, about to park: records its caches' low-water marks and
 * gives back what stayed unused for a window; returns when (real clock) it
 * wants to park no longer than, INT64_MAX for no bound. */
int64_t weft__trim_caches(weft__worker *w, int64_t now);
void weft__reg_cancel_all(weft__runtime *rt);
size_t weft__reg_live(weft__runtime *rt);
void weft__reg_free_all(weft__runtime *rt);

/* task.c */
void weft__task_free(weft_task *t);
weft_task *weft__task_new(weft__runtime *rt, weft__worker *w, const char *name, weft_fn fn,
                          void *arg);
void weft__task_release(weft_task *t);
void weft__task_entry(void *arg) __attribute__((noreturn));
void weft__after_switch(weft__worker *w);

/* fiber.c: valgrind stack registration (sanitizer hooks: fiber.h) */
unsigned weft__valgrind_stack_register(void *lo, void *hi);
void weft__valgrind_stack_deregister(unsigned id);

/* observe.c */
int weft__signal_number(const char *s);

/* env.c */
int weft__settings_resolve(const weft_config *cfg, weft__settings *out);

/* topo.c */
int  weft__topo_cpus(weft__runtime *rt, int **cpus_out, unsigned *n_out);
int  weft__topo_victims(weft__runtime *rt);
void weft__topo_pin(int cpu);
void weft__topo_free(weft__runtime *rt);

/* blocking.c */
weft__pool *weft__pool_new(weft__runtime *rt, unsigned max, const char *name);
void weft__pool_free(weft__pool *p);
int  weft__pool_submit(weft__pool *p, weft_task *t);
bool weft__pool_cancel(weft_task *t);
void weft__pool_drop_all(weft__pool *p);
size_t weft__pool_queued(weft__pool *p);
unsigned weft__pool_threads(weft__pool *p);

/* group.c */
void weft__group_task_done(weft_task *t);
void weft__group_adopt(weft_group *g, weft_task *t);
void weft__group_autoreap(weft_group *g);
weft_task *weft__spawn_blocking(weft_group *g, weft_fn fn, void *arg);
int weft__sys_to_thread(weft_fn fn, void *arg, void **result);

/* task.c */
void weft__task_done(weft_task *t);
int  weft__cancel_task(weft_task *t);
int  weft__join_wait_code(weft_task *t, int64_t deadline, void **result, const char *wait);

/* runtime/netpoll.c */
void weft__netpoll_free(weft__runtime *rt);

/* trace.c */
int  weft__trace_init(weft__runtime *rt);
void weft__trace_finish(weft__runtime *rt);
weft__tev *weft__trace_slot(struct weft__trace *tr);
void weft__trace_event(weft__worker *w, int kind, int64_t ts, int64_t dur, uint64_t id, int arg);
void weft__trace_blocking(weft__runtime *rt, weft_task *t, int64_t start);

/* observe.c */
int  weft__observe_start(weft__runtime *rt);
void weft__observe_stop(weft__runtime *rt);
void weft__observe_serve(weft__runtime *rt);   /* sysmon: dumps signals asked for */
const char *weft__state_name(int st);
void weft__stats_of(weft__runtime *rt, weft_stats *out);
/* weft_memory_stats and the workers' caches (weft_memory_cached_get), read
 * together for the metrics and the console. */
typedef struct {
    weft_memory_stats pub;
    uint64_t stacks_cached, task_slots_cached;
} weft__memory_figures;
void weft__memory_stats_of(weft__runtime *rt, weft__memory_figures *out);
int  weft__tasks_walk(weft__runtime *rt, int (*visit)(const weft_task_info *info, void *ctx),
                      void *ctx);
int  weft__task_backtrace(weft__runtime *rt, uint64_t id, weft_task_info *info, char *name,
                          char *wait, void **pcs, int max);

/* console.c: WEFT_CONSOLE (docs/debugging.md, "The live console") */
int  weft__console_start(weft__runtime *rt);
void weft__console_stop(weft__runtime *rt);

/* metrics.c */
struct weft__tb;
void weft__stats_json(struct weft__tb *t, const weft_stats *s, const weft__memory_figures *m);

/* arch/<cpu>/context.c: the resume address and frame pointer saved in a
 * switched-out context (for backtraces of suspended coroutines). */
void weft__ctx_frame(void *sp, uintptr_t *pc, uintptr_t *fp);

/* symbolize.c: a dump's frames as function, file and line (libdw), or as
 * backtrace_symbols writes them.  Never in a signal handler nor on a
 * coroutine's stack (libdw needs a deep one): sysmon (8 MiB) or observe.c's
 * dump thread (8 MiB); may block the thread (a lock, file reads). */
typedef struct weft__sym_pass {
    bool fresh;   /* the modules were re-read in this pass */
} weft__sym_pass;
bool weft__sym_available(void);          /* built with libdw */
/* Frames pcs[0..n) (return addresses) to fd, one line each; a pass is one
 * dump, zeroed before its first call.  0 or -errno of write. */
int  weft__sym_write(weft__sym_pass *pass, int fd, void *const *pcs, int n);
void weft__sym_release(void);            /* weft_run, after its last dump */
/* active.c: the active worker limit and the CPU quota it follows.  The two
 * variables are hooks for white-box tests (tests/test_quota.c): where the
 * cgroup files are read from (NULL: the real system) and how often sysmon
 * re-reads them; set them before weft_run. */
#define WEFT__QUOTA_PERIOD_NS (1000 * WEFT_MS)
extern const char *weft__cgroup_root;
extern int64_t weft__quota_period_ns;
int  weft__active_init(weft__runtime *rt, bool explicit, unsigned *quota); /* weft_run */
void weft__active_free(weft__runtime *rt);
void weft__active_set(weft__runtime *rt, unsigned n);   /* any thread */
void weft__active_tick(weft__runtime *rt, int64_t now); /* sysmon only */
void weft__excess_park(weft__worker *w);                /* owner */
struct timespec;
struct timespec *weft__park_timeout(struct timespec *ts, int64_t next, int64_t trim_at,
                                    int64_t now);            /* park.c */
/* Owner worker only (any thread for a hint): is w beyond the active limit?
 * relaxed: a stale answer costs one schedule; the hand-off and the
 * re-checks in active.c make the limit exact (the essay, 11). */
static inline bool weft__excess(weft__worker *w)
{
    return (unsigned)w->id >= atomic_load_explicit(&w->rt->active, memory_order_relaxed);
}

/* sysmon.c */
int  weft__sysmon_start(weft__runtime *rt);
void weft__sysmon_stop(weft__runtime *rt);

/* signal.c */
int  weft__signal_install(void);
void weft__signal_uninstall(void);
int  weft__altstack_setup(weft__worker *w);
void weft__altstack_teardown(weft__worker *w);

/* weft_now() as sysmon last saw it (1 ms while workers run, 5 ms idle): one
 * load of a read-mostly line.  For observability timestamps on hot paths. */
static inline int64_t weft__rt_clock(weft__runtime *rt)
{
    return atomic_load_explicit(&rt->clock, memory_order_relaxed);
}

void weft__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ */
/* Virtual clock (vclock.c) and seeded runs (seed.c)                   */
/* ------------------------------------------------------------------ */

/* The virtual clock's reading while a runtime runs on it, 0 otherwise
 * (weft_now() reads it first).  Written only under rt->vclock_mu. */
extern _Atomic int64_t weft__vnow;
/* CLOCK_MONOTONIC in ns, whatever the runtime's clock: what sysmon, the
 * trimmer, parking budgets and busy-time counters measure. */
int64_t weft__real_now(void);
int  weft__vclock_start(weft__runtime *rt);
void weft__vclock_stop(weft__runtime *rt);
bool weft__vclock_idle(weft__worker *w, int64_t *sleep_ns);
int  weft__poll_ready(weft__worker *w);
void weft__vclock_hold(weft__runtime *rt);
void weft__vclock_release(weft__runtime *rt);
void weft__vclock_kick(weft__runtime *rt);
/* Any thread.  Whether the caller's runtime runs on the virtual clock. */
static inline bool weft__vclock_on(void)
{
    return atomic_load_explicit(&weft__vnow, memory_order_relaxed) != 0;
}

/* WEFT_CHAOS's level while a seeded runtime runs, else 0: one load and one
 * branch at each chaos point when off. */
extern _Atomic int weft__chaos_level;
int  weft__seed_start(weft__runtime *rt);
void weft__seed_stop(weft__runtime *rt);
void weft__seed_report(weft__runtime *rt);
void weft__seed_worker(weft__worker *w);
uint64_t weft__seed_draw(weft__runtime *rt);
uint64_t weft__seed_random(void);
weft_task *weft__seed_next(weft__worker *w);
void weft__seed_shuffle(weft__worker *w, void **v, unsigned n);
void weft__seed_submitted(weft__runtime *rt);
void weft__seed_finished(weft__runtime *rt, weft_task *t);
void weft__chaos_point_slow(void);
/* May suspend the coroutine.  A suspension point of the API: under
 * WEFT_CHAOS, sometimes a yield here. */
static inline void weft__chaos_point(void)
{
    /* relaxed: set before the workers start (seed.c) */
    if (__builtin_expect(atomic_load_explicit(&weft__chaos_level, memory_order_relaxed) != 0, 0))
        weft__chaos_point_slow();
}

/* ------------------------------------------------------------------ */
/* Seeded fault injection (faults.c; WEFT_FAULTS)                      */
/* ------------------------------------------------------------------ */

enum {
    WEFT__FAULT_SHORT_READ,
    WEFT__FAULT_SHORT_WRITE,
    WEFT__FAULT_EINTR,
    WEFT__FAULT_RESET,
    WEFT__FAULT_ACCEPT,
    WEFT__FAULT_ENOMEM,
    WEFT__FAULT_STACKS,
    WEFT__NFAULTS
};
_Static_assert(WEFT__NFAULTS == sizeof ((weft__settings *)0)->fault_thr /
                                    sizeof ((weft__settings *)0)->fault_thr[0],
               "weft__settings.fault_thr has one rate per fault kind");

/* Whether any fault is armed while a runtime runs (faults.c). */
extern _Atomic bool weft__faults_armed;
int  weft__faults_parse(const char *spec, uint64_t thr[WEFT__NFAULTS]);
void weft__faults_start(weft__runtime *rt);
void weft__faults_stop(void);
bool weft__fault_slow(int kind);
/* Any thread of the running runtime.  Whether a fault of kind
 * (WEFT__FAULT_*) is injected now: one relaxed load when none is armed. */
static inline bool weft__fault(int kind)
{
    /* relaxed: set before the workers start, cleared after they stop */
    if (__builtin_expect(!atomic_load_explicit(&weft__faults_armed, memory_order_relaxed), 1))
        return false;
    return weft__fault_slow(kind);
}

#endif
