/*
 * Observability: the task walk (weft_tasks_foreach), the dump (weft_dump,
 * WEFT_DUMP_SIGNAL) and counters (weft_stats_get).
 *
 * The walk reads the task slabs (registry.c) without a lock: every field it
 * reads is an atomic, and each slot carries a sequence number that is odd
 * while the slot is filled or freed; a slot whose sequence moved during the
 * read is skipped, so no entry is ever torn.  Names are stored in the slot,
 * never freed under a reader.  This is the RCU reader's discipline without
 * liburcu: slabs are never unmapped while the runtime runs, so there is no
 * grace period to wait for (and TSan sees every access, which liburcu's
 * inline-assembly atomics would hide).  The trimmer may give a free slab's
 * pages back; they then read as zeros, and a slot whose seq is 0 is free
 * (registry.c).
 *
 * The raw dump (weft_dump, weft_dump_ex with WEFT_DUMP_RAW) is
 * async-signal-safe: no lock, no allocation, output assembled in a stack
 * buffer and written with write(2); frames by backtrace_symbols_fd.  The
 * readable dump (weft_dump_ex without it) is the same walk with each
 * backtrace handed to the symbolizer (symbolize.c), which allocates and
 * locks: never in a signal handler.  Backtraces of suspended coroutines
 * walk frame pointers from the saved context; every frame is bounds-checked
 * against the coroutine's stack, so a coroutine that resumes meanwhile
 * yields a short or odd trace, never a crash.
 *
 * WEFT_DUMP_SIGNAL: with a symbolizer built in, the handler only counts the
 * request (dump_requests) and sysmon, which looks at it every round (1-5
 * ms), writes a readable dump; weft_run writes those still asked for when
 * sysmon has stopped.  Without one, the handler writes the raw dump itself,
 * as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static _Atomic int dump_busy;   /* weft_dump calls under way (any thread) */

typedef struct {
    weft_task_info info;
    char name[WEFT__NAME_MAX];
    char wait[48];
    uintptr_t sp;
    weft__stack *stack;
} snap;

/* Any thread: a task state's name (the dump's, the console's). */
const char *weft__state_name(int st)
{
    switch (st) {
    case WEFT_TASK_READY: return "ready";
    case WEFT_TASK_RUNNING: return "running";
    case WEFT_TASK_WAITING: return "waiting";
    case WEFT_TASK_BLOCKING: return "blocking";
    case WEFT_TASK_DONE: return "done";
    default: return "?";
    }
}

/* Small async-signal-safe formatting. */
static size_t put_s(char *b, size_t at, size_t cap, const char *s)
{
    while (s && *s && at + 1 < cap)
        b[at++] = *s++;
    b[at] = '\0';
    return at;
}

static size_t put_u(char *b, size_t at, size_t cap, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && at + 1 < cap)
        b[at++] = tmp[--n];
    b[at] = '\0';
    return at;
}

static __thread weft__runtime *rt_of_walk;

/* Any thread.  A consistent copy of slot t, or false (free, finished, or
 * changing under us). */
static bool snapshot(weft_task *t, snap *out)
{
    uint32_t s1 = atomic_load_explicit(&t->seq, memory_order_acquire);
    if (s1 == 0 || (s1 & 1))  /* never used (or trimmed: registry.c), or changing */
        return false;
    int st = atomic_load_explicit(&t->state, memory_order_acquire);
    if (st == WEFT__TASK_FREE || st == WEFT_TASK_DONE)
        return false;
    out->info.id = atomic_load_explicit(&t->id, memory_order_relaxed);
    out->info.state = st;
    out->info.since = atomic_load_explicit(&t->since, memory_order_relaxed);
    out->info.worker = atomic_load_explicit(&t->last_worker, memory_order_relaxed);
    if (WEFT_OBSERVE && st == WEFT_TASK_RUNNING && out->info.worker >= 0 && rt_of_walk &&
        (unsigned)out->info.worker < rt_of_walk->nworkers) {
        /* A running task's since is its worker's last switch, which sysmon
         * samples each millisecond: no clock read on the switch path. */
        int64_t rs = atomic_load_explicit(&rt_of_walk->workers[out->info.worker]->run_since,
                                          memory_order_relaxed);
        if (rs > out->info.since)
            out->info.since = rs;
    }
    size_t i = 0;
    for (; i + 1 < WEFT__NAME_MAX; i++) {
        char c = __atomic_load_n(&t->name[i], __ATOMIC_RELAXED);
        out->name[i] = c;
        if (!c)
            break;
    }
    out->name[i] = '\0';
    const char *w = atomic_load_explicit(&t->wait, memory_order_relaxed);
    int fd = atomic_load_explicit(&t->wait_fd, memory_order_relaxed);
    out->sp = (uintptr_t)__atomic_load_n(&t->sp, __ATOMIC_RELAXED);
    /* acquire: pairs with the release store in prepare (sched.c). */
    out->stack = __atomic_load_n(&t->stack, __ATOMIC_ACQUIRE);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&t->seq, memory_order_relaxed) != s1)
        return false;
    out->info.name = out->name[0] ? out->name : NULL;
    if (st == WEFT_TASK_WAITING && w) {
        size_t n = put_s(out->wait, 0, sizeof out->wait, w);
        if (strcmp(w, "read fd") == 0 || strcmp(w, "write fd") == 0 || strcmp(w, "poll fd") == 0) {
            n = put_s(out->wait, n, sizeof out->wait, " ");
            put_u(out->wait, n, sizeof out->wait, (unsigned long long)(fd < 0 ? 0 : fd));
        }
        out->info.wait = out->wait;
    } else {
        out->info.wait = NULL;
    }
    return true;
}

static int walk(weft__runtime *rt, int (*visit)(snap *s, void *ctx), void *ctx)
{
    rt_of_walk = rt;
    /* acquire: pairs with the release that publishes a slab (registry.c). */
    for (struct weft__task_slab *s = atomic_load_explicit(&rt->slabs, memory_order_acquire);
         s; s = s->next) {
        for (size_t i = 0; i < WEFT__SLAB_TASKS; i++) {
            snap sn;
            if (!snapshot(&s->t[i], &sn))
                continue;
            int rc = visit(&sn, ctx);
            if (rc)
                return rc;
        }
    }
    return 0;
}

typedef struct {
    int (*visit)(const weft_task_info *info, void *ctx);
    void *ctx;
} foreach_ctx;

static int foreach_one(snap *s, void *arg)
{
    foreach_ctx *f = arg;
    return f->visit(&s->info, f->ctx);
}

/* Any thread, with rt kept alive by the caller: weft_tasks_foreach's walk. */
int weft__tasks_walk(weft__runtime *rt, int (*visit)(const weft_task_info *info, void *ctx),
                     void *ctx)
{
    foreach_ctx f = {visit, ctx};
    return walk(rt, foreach_one, &f);
}

int weft_tasks_foreach(int (*visit)(const weft_task_info *info, void *ctx), void *ctx)
{
    if (!visit)
        return -EINVAL;
    weft__worker *w = weft__cur_worker();
    weft__runtime *rt = w ? w->rt : weft__rt_get();
    if (!rt)
        return -EPERM;
    foreach_ctx f = {visit, ctx};
    int rc = walk(rt, foreach_one, &f);
    if (!w)
        weft__rt_put();
    return rc;
}

/* ------------------------------------------------------------------ */
/* Dump                                                                */
/* ------------------------------------------------------------------ */

typedef struct {
    int fd;
    int64_t now;
    int err;
    bool raw;               /* async-signal-safe frames (WEFT_DUMP_RAW) */
    weft__sym_pass pass;    /* else: the symbolizer's pass */
} dump_ctx;

static void out(dump_ctx *d, const char *b, size_t n)
{
    while (n) {
        ssize_t r = write(d->fd, b, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            d->err = -errno;
            return;
        }
        b += r;
        n -= (size_t)r;
    }
}

/* A suspended coroutine's return addresses, walking frame pointers inside
 * its stack only.  It reads another coroutine's stack, which that coroutine
 * may be using right now (the values are checked, never trusted): not for
 * the sanitizers' eyes. */
__attribute__((no_sanitize("thread", "address")))
static int backtrace_of(snap *s, void **pcs, int max)
{
    if (!s->sp || !s->stack)
        return 0;
    uintptr_t lo = (uintptr_t)s->stack->lo, hi = lo + s->stack->size;
    if (s->sp < lo || s->sp >= hi)
        return 0;
    uintptr_t pc, fp;
    weft__ctx_frame((void *)s->sp, &pc, &fp);
    int n = 0;
    while (pc && n < max) {
        pcs[n++] = (void *)pc;
        if (fp < lo || fp + 2 * sizeof(uintptr_t) > hi || (fp & (sizeof(uintptr_t) - 1)))
            break;
        /* volatile, not __atomic: see weft__ctx_frame. */
        const volatile uintptr_t *f = (const volatile uintptr_t *)fp;
        uintptr_t next = f[0];
        pc = f[1];
        if (next <= fp)
            break;  /* frames go up the stack; anything else is garbage */
        fp = next;
    }
    return n;
}

typedef struct {
    uint64_t id;
    weft_task_info *info;
    char *name, *wait;
    void **pcs;
    int max, n;
} bt_ctx;

static int bt_one(snap *s, void *arg)
{
    bt_ctx *c = arg;
    if (s->info.id != c->id)
        return 0;
    *c->info = s->info;
    c->info->name = s->info.name ? strcpy(c->name, s->info.name) : NULL;
    c->info->wait = s->info.wait ? strcpy(c->wait, s->info.wait) : NULL;
    if (s->info.state == WEFT_TASK_WAITING || s->info.state == WEFT_TASK_READY)
        c->n = backtrace_of(s, c->pcs, c->max);
    return 1;
}

/* Any thread, with rt kept alive by the caller: task id's entry (its
 * strings copied to name[WEFT__NAME_MAX] and wait[48]) and the return
 * addresses of its coroutine when it is suspended (none when it runs or
 * is in the blocking pool).  The count of addresses, or -ESRCH when no
 * unfinished task has that id. */
int weft__task_backtrace(weft__runtime *rt, uint64_t id, weft_task_info *info, char *name,
                         char *wait, void **pcs, int max)
{
    bt_ctx c = {id, info, name, wait, pcs, max, 0};
    return walk(rt, bt_one, &c) ? c.n : -ESRCH;
}

static int dump_one(snap *s, void *arg)
{
    dump_ctx *d = arg;
    char b[512];
    size_t n = 0;
    n = put_s(b, n, sizeof b, "task ");
    n = put_u(b, n, sizeof b, s->info.id);
    if (s->info.name) {
        n = put_s(b, n, sizeof b, " '");
        n = put_s(b, n, sizeof b, s->info.name);
        n = put_s(b, n, sizeof b, "'");
    }
    n = put_s(b, n, sizeof b, " [");
    n = put_s(b, n, sizeof b, weft__state_name(s->info.state));
    if (s->info.wait) {
        n = put_s(b, n, sizeof b, ", ");
        n = put_s(b, n, sizeof b, s->info.wait);
    }
    if (s->info.since) {  /* 0: built with WEFT_OBSERVE=OFF */
        int64_t ms = (d->now - s->info.since) / WEFT_MS;
        n = put_s(b, n, sizeof b, ", ");
        n = put_u(b, n, sizeof b, (unsigned long long)(ms < 0 ? 0 : ms));
        n = put_s(b, n, sizeof b, " ms");
    }
    if (s->info.worker >= 0) {
        n = put_s(b, n, sizeof b, ", worker ");
        n = put_u(b, n, sizeof b, (unsigned long long)s->info.worker);
    }
    n = put_s(b, n, sizeof b, "]:\n");
    out(d, b, n);
    if (s->info.state == WEFT_TASK_WAITING || s->info.state == WEFT_TASK_READY) {
        void *pcs[32];
        int k = backtrace_of(s, pcs, 32);
        if (k > 0 && d->raw) {
            backtrace_symbols_fd(pcs, k, d->fd);
        } else if (k > 0) {
            int e = weft__sym_write(&d->pass, d->fd, pcs, k);
            if (e)
                d->err = e;
        }
    }
    out(d, "\n", 1);
    return d->err;
}

/* The dump of rt, which stays alive meanwhile (the caller sees to it). */
static int dump_rt(weft__runtime *rt, int fd, unsigned flags)
{
    dump_ctx d = {.fd = fd, .now = weft_now(), .raw = flags & WEFT_DUMP_RAW};
    char b[160];
    size_t n = put_s(b, 0, sizeof b, "weft: dump of all tasks (");
    n = put_u(b, n, sizeof b, rt->nworkers);
    n = put_s(b, n, sizeof b, rt->nworkers == 1 ? " worker)\n\n" : " workers)\n\n");
    out(&d, b, n);
    walk(rt, dump_one, &d);
    return d.err;
}

typedef struct {
    weft__runtime *rt;
    int fd;
    unsigned flags;
    int rc;
} dump_job;

static void *dump_thread(void *arg)
{
    dump_job *j = arg;
    j->rc = dump_rt(j->rt, j->fd, j->flags);
    return NULL;
}

/* The readable dump, on a plain thread of its own while the caller waits
 * (a worker blocks, as it does on a slow fd).  libdw needs more stack than
 * a coroutine has (it overran a 128 KiB one), and it is not built to probe
 * a guard page: it would write past it, into whatever lies below.  So it
 * runs on a stack of 8 MiB (address space; pages as touched), whatever the
 * caller's: a coroutine, a blocking-pool thread (256 KiB), a user's thread.
 * Raw when no thread can be started. */
#define DUMP_STACK (8u << 20)

static int dump_off_stack(weft__runtime *rt, int fd, unsigned flags)
{
    dump_job j = {rt, fd, flags, 0};
    pthread_t th;
    pthread_attr_t a;
    int e = pthread_attr_init(&a);
    if (!e) {
        pthread_attr_setstacksize(&a, DUMP_STACK);
        e = pthread_create(&th, &a, dump_thread, &j);
        pthread_attr_destroy(&a);
    }
    if (e)
        return dump_rt(rt, fd, flags | WEFT_DUMP_RAW);
    pthread_join(th, NULL);
    return j.rc;
}

int weft_dump(int fd)
{
    return weft_dump_ex(fd, WEFT_DUMP_RAW);
}

int weft_dump_ex(int fd, unsigned flags)
{
    if (flags & ~(unsigned)WEFT_DUMP_RAW)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    /* No rwlock here: this runs in signal handlers.  Instead dump_busy is
     * raised before the runtime is looked up, and weft_run, after withdrawing
     * the runtime, waits for it to fall before freeing anything
     * (observe_stop).  seq_cst: pairs with withdraw and observe_stop. */
    atomic_fetch_add_explicit(&dump_busy, 1, memory_order_seq_cst);
    weft__worker *w = weft__cur_worker();
    weft__runtime *rt = w ? w->rt : weft__cur_rt();
    if (!rt) {
        atomic_fetch_sub_explicit(&dump_busy, 1, memory_order_seq_cst);
        return -EPERM;
    }
    int rc = flags & WEFT_DUMP_RAW ? dump_rt(rt, fd, flags) : dump_off_stack(rt, fd, flags);
    atomic_fetch_sub_explicit(&dump_busy, 1, memory_order_seq_cst);
    return rc;
}

/* ------------------------------------------------------------------ */
/* WEFT_DUMP_SIGNAL                                                    */
/* ------------------------------------------------------------------ */

static int dump_sig;
static struct sigaction dump_old;

static void on_dump_signal(int sig)
{
    (void)sig;
    int e = errno;
    /* dump_busy held: weft_run frees nothing until it falls (observe_stop),
     * and observe_stop writes the requests counted before that. */
    atomic_fetch_add_explicit(&dump_busy, 1, memory_order_seq_cst);
    weft__runtime *rt = weft__cur_rt();
    /* seq_cst: pairs with the loads of weft__observe_serve (sysmon's
     * rounds, then observe_stop's, after dump_busy fell). */
    if (rt && weft__sym_available())
        atomic_fetch_add_explicit(&rt->dump_requests, 1, memory_order_seq_cst);
    else
        weft_dump(2);
    atomic_fetch_sub_explicit(&dump_busy, 1, memory_order_seq_cst);
    errno = e;
}

/* sysmon, every round; weft_run once sysmon stopped.  The readable dumps
 * the signal handler asked for, one per signal, to stderr. */
void weft__observe_serve(weft__runtime *rt)
{
    /* seq_cst: pairs with on_dump_signal's increment. */
    while (atomic_load_explicit(&rt->dump_requests, memory_order_seq_cst) > 0) {
        dump_off_stack(rt, 2, 0);
        atomic_fetch_sub_explicit(&rt->dump_requests, 1, memory_order_seq_cst);
    }
}

/* A signal name ("USR1", "SIGQUIT") or number; -1 when unknown. */
int weft__signal_number(const char *s)
{
    static const struct { const char *n; int v; } tab[] = {
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"QUIT", SIGQUIT}, {"HUP", SIGHUP},
        {"INT", SIGINT},   {"TERM", SIGTERM}, {"WINCH", SIGWINCH}, {"URG", SIGURG},
        {"PWR", SIGPWR},
    };
    if (!s || !*s)
        return -1;
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].n) == 0)
            return tab[i].v;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v <= 0 || v >= NSIG || v == SIGKILL || v == SIGSTOP || v == SIGSEGV || v == SIGBUS)
        return -1;
    return (int)v;
}

/* weft_run, before the workers start. */
int weft__observe_start(weft__runtime *rt)
{
    rt->started_at = weft_now();
    rt->started_real = weft__real_now();
    dump_sig = rt->cfg.dump_signal;
    if (dump_sig > 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_dump_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(dump_sig, &sa, &dump_old) < 0)
            return -errno;
    }
    return 0;
}

/* weft_run, after every task finished and before anything is freed. */
void weft__observe_stop(weft__runtime *rt)
{
    if (dump_sig > 0) {
        sigaction(dump_sig, &dump_old, NULL);
        dump_sig = 0;
    }
    while (atomic_load_explicit(&dump_busy, memory_order_acquire))
        sched_yield();  /* a dump in flight on another thread */
    /* Signals sysmon took no more (it has stopped; none comes any more). */
    weft__observe_serve(rt);
    weft__sym_release();  /* no dump of this run is left */
}

/* ------------------------------------------------------------------ */
/* Stats                                                               */
/* ------------------------------------------------------------------ */

static int count_alive(snap *s, void *arg)
{
    (void)s;
    (*(uint64_t *)arg)++;
    return 0;
}

/* active_workers sits in what was padding after workers: the fields before
 * it, the array and the struct's size are as they were (old binaries). */
_Static_assert(offsetof(weft_stats, active_workers) == offsetof(weft_stats, workers) + 4 &&
                   offsetof(weft_stats, worker) == 13 * sizeof(uint64_t),
               "weft_stats: existing fields keep their offsets");

/* Any thread, with rt kept alive by the caller: the figures of
 * weft_stats_get. */
void weft__stats_of(weft__runtime *rt, weft_stats *outp)
{
    memset(outp, 0, sizeof *outp);
    /* Real time, as the busy figures (the virtual clock's jumps are no
     * time the workers spent). */
    int64_t now = weft__real_now();
    outp->uptime_ns = (uint64_t)(now - rt->started_real);
    outp->tasks_spawned = atomic_load_explicit(&rt->spawned_plain, memory_order_relaxed);
    outp->workers = rt->nworkers < WEFT_STATS_MAX_WORKERS ? rt->nworkers : WEFT_STATS_MAX_WORKERS;
    /* relaxed: a snapshot of the limit (active.c). */
    outp->active_workers = atomic_load_explicit(&rt->active, memory_order_relaxed);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *w = rt->workers[i];
        weft_worker_stats ws;
#define R(f) atomic_load_explicit(&w->c.f, memory_order_relaxed)
        ws.tasks_run = atomic_load_explicit(&w->tick, memory_order_relaxed) >> 16;
        ws.tasks_spawned = R(spawned);
        ws.steals = R(steals);
        ws.steal_attempts = R(steal_attempts);
        ws.parks = R(parks);
        ws.wakeups = R(wakeups);
        ws.polls = R(polls);
        ws.injected = R(injected);
        uint64_t parked = R(parked_ns);
        int64_t ps = atomic_load_explicit(&w->park_since, memory_order_relaxed);
        if (ps && now > ps)
            parked += (uint64_t)(now - ps);  /* the park under way counts too */
#undef R
        ws.queue_depth = weft__runq_len(w);
        weft__spin_lock(&w->timers.lock);
        ws.timers = (uint64_t)w->timers.n;
        weft__spin_unlock(&w->timers.lock);
        ws.busy_ns = outp->uptime_ns > parked ? outp->uptime_ns - parked : 0;
        /* A reader racing with a wake-up may take a park's time twice or
         * miss it (the worker adds it to parked_ns and clears park_since
         * with no lock, and now was read before); the error is bounded by
         * the race, but busy_ns is documented never to go backwards, so
         * the largest value reported stands until the true one passes it
         * (capped by this reading's uptime: a concurrent reader whose now
         * came later may have reported more).
         * relaxed: a monotone maximum, ordered with nothing else. */
        uint64_t seen = atomic_load_explicit(&w->busy_seen, memory_order_relaxed);
        while (ws.busy_ns > seen &&
               !atomic_compare_exchange_weak_explicit(&w->busy_seen, &seen, ws.busy_ns,
                                                      memory_order_relaxed, memory_order_relaxed))
            ;
        if (ws.busy_ns < seen)  /* but never past this reading's uptime: a reader */
            ws.busy_ns = seen < outp->uptime_ns ? seen : outp->uptime_ns;  /* with a later now */
        outp->tasks_spawned += ws.tasks_spawned;
        outp->steals += ws.steals;
        outp->steal_attempts += ws.steal_attempts;
        outp->parks += ws.parks;
        outp->wakeups += ws.wakeups;
        outp->polls += ws.polls;
        outp->injected += ws.injected;
        if (i < WEFT_STATS_MAX_WORKERS)
            outp->worker[i] = ws;
    }
    outp->inject_queue = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
    if (rt->pool) {
        outp->blocking_threads = weft__pool_threads(rt->pool);
        outp->blocking_queued = weft__pool_queued(rt->pool);
    }
    walk(rt, count_alive, &outp->tasks_alive);
}

int weft_stats_get(weft_stats *outp)
{
    if (!outp)
        return -EINVAL;
    if (!WEFT_OBSERVE)
        return -ENOTSUP;  /* built with WEFT_OBSERVE=OFF: no counters */
    weft__worker *cw = weft__cur_worker();
    weft__runtime *rt = cw ? cw->rt : weft__rt_get();
    if (!rt)
        return -EPERM;
    weft__stats_of(rt, outp);
    if (!cw)
        weft__rt_put();
    return 0;
}

/* Any thread, with rt kept alive by the caller: weft_memory_stats_get's. */
void weft__memory_stats_of(weft__runtime *rt, weft__memory_figures *out)
{
    memset(out, 0, sizeof *out);
    weft__stacks_stats(rt, &out->pub);
    weft__slabs_stats(rt, &out->pub);
    /* relaxed loads (weft__cache_n): a statistic, each count on its own. */
    for (unsigned i = 0; i < rt->nworkers; i++) {
        out->stacks_cached += weft__cache_n(&rt->workers[i]->stacks.n);
        out->task_slots_cached += weft__cache_n(&rt->workers[i]->tasks.n);
    }
}

/* Any thread: the memory figures of the runtime the caller runs in, or of
 * the running one.  0 or -EPERM (no runtime). */
static int memory_figures(weft__memory_figures *f)
{
    weft__worker *cw = weft__cur_worker();
    weft__runtime *rt = cw ? cw->rt : weft__rt_get();
    if (!rt)
        return -EPERM;
    weft__memory_stats_of(rt, f);
    if (!cw)
        weft__rt_put();
    return 0;
}

int weft_memory_stats_get(weft_memory_stats *out)
{
    if (!out)
        return -EINVAL;
    weft__memory_figures f;
    int rc = memory_figures(&f);
    if (rc == 0)
        *out = f.pub;
    return rc;
}

int weft_memory_cached_get(uint64_t *stacks, uint64_t *task_slots)
{
    if (!stacks || !task_slots)
        return -EINVAL;
    weft__memory_figures f;
    int rc = memory_figures(&f);
    if (rc == 0) {
        *stacks = f.stacks_cached;
        *task_slots = f.task_slots_cached;
    }
    return rc;
}
