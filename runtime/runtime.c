/*
 * weft_run: setting up the runtime, running main, and the shutdown steps
 * listed in the scheduler's essay (sched.c, section 9).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"
#include "os.h"
#include "poller.h"
#include "internal.h"

/* The runtime of this process.  acquire/release: pairs between weft_run's
 * publication and plain threads that spawn. */
static _Atomic(weft__runtime *) g_rt;
static _Atomic bool g_running;   /* a weft_run is under way (EBUSY) */
/* Plain threads reach the runtime through g_rt; they hold this lock (read)
 * while they use it, and weft_run takes it (write) to withdraw the runtime,
 * so a plain-thread spawn never touches a runtime being torn down. */
static pthread_rwlock_t g_rt_lock = PTHREAD_RWLOCK_INITIALIZER;

weft__runtime *weft__cur_rt(void)
{
    /* seq_cst: weft_dump's load must not pass its dump_busy increment. */
    return atomic_load_explicit(&g_rt, memory_order_seq_cst);
}

/* Plain threads: the running runtime, held until weft__rt_put; NULL (and
 * nothing held) when none runs or it is shutting down. */
weft__runtime *weft__rt_get(void)
{
    pthread_rwlock_rdlock(&g_rt_lock);
    weft__runtime *rt = atomic_load_explicit(&g_rt, memory_order_acquire);
    if (!rt)
        pthread_rwlock_unlock(&g_rt_lock);
    return rt;
}

void weft__rt_put(void)
{
    pthread_rwlock_unlock(&g_rt_lock);
}

/* weft_run: no plain thread may reach rt from now on. */
static void withdraw(weft__runtime *rt)
{
    pthread_rwlock_wrlock(&g_rt_lock);
    weft__runtime *cur = rt;
    /* seq_cst: pairs with weft_dump's dump_busy increment (observe.c). */
    atomic_compare_exchange_strong_explicit(&g_rt, &cur, NULL, memory_order_seq_cst,
                                            memory_order_seq_cst);
    pthread_rwlock_unlock(&g_rt_lock);
}

int64_t weft__real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

int64_t weft_now(void)
{
    /* relaxed: vclock.c says why. */
    int64_t v = atomic_load_explicit(&weft__vnow, memory_order_relaxed);
    if (v)
        return v;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

unsigned weft_workers(void)
{
    weft__worker *w = weft__cur_worker();
    if (w)
        return w->rt->nworkers;
    weft__runtime *rt = weft__rt_get();
    unsigned n = rt ? rt->nworkers : 0;
    if (rt)
        weft__rt_put();
    return n;
}

int weft_worker_id(void)
{
    weft__worker *w = weft__cur_worker();
    return w ? w->id : -1;
}

/* Any thread: one line on stderr. */
void weft__log(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t r = write(2, buf, (size_t)n);
    (void)r;
}

static void worker_free(weft__worker *w)
{
    if (!w)
        return;
    weft__aio_worker_free(w);
    weft__poll_worker_free(w);
    weft__timers_free(&w->timers);
    free(w->victims);
    free(w);
}

static weft__worker *worker_new(weft__runtime *rt, int id, int cpu)
{
    weft__worker *w;
    if (posix_memalign((void **)&w, WEFT__CACHELINE, sizeof *w))
        return NULL;
    memset(w, 0, sizeof *w);
    w->rt = rt;
    w->wake_rt = rt;
    w->id = id;
    weft__seed_worker(w);
    w->hooks = rt->cfg.debug ? WEFT__HOOK_DEBUG : 0;
    w->cpu = cpu;
    weft__spin_init(&w->dbg_lock, WEFT__RANK_LEAF);
    if (weft__timers_init(&w->timers) < 0)
        goto fail;
    if (weft__poll_worker_init(w) < 0)
        goto fail;
    return w;
fail:
    worker_free(w);
    return NULL;
}

static void runtime_free(weft__runtime *rt)
{
    if (rt->workers)
        for (unsigned i = 0; i < rt->nworkers; i++)
            worker_free(rt->workers[i]);
    free(rt->workers);
    weft__active_free(rt);
    weft__trim_free(rt);
    weft__stacks_free(rt);
    weft__topo_free(rt);
    weft__netpoll_free(rt);
    weft__poll_free(rt);
    weft__pool_free(rt->pool);
    weft__pool_free(rt->sys_pool);
    pthread_mutex_destroy(&rt->done_mu);
    pthread_cond_destroy(&rt->done_cv);
    free(rt);
}

/* The thread in weft_run: waits until main has returned. */
static void wait_main(weft__runtime *rt)
{
    pthread_mutex_lock(&rt->done_mu);
    while (!rt->main_done)
        pthread_cond_wait(&rt->done_cv, &rt->done_mu);
    pthread_mutex_unlock(&rt->done_mu);
}

/* The thread in weft_run, at shutdown: cancels, and waits until no task is
 * unfinished, or (limit_ns > 0) that long of real time has passed.  The
 * check runs without done_mu (finishing tasks take it to signal us); a 10 ms
 * timed wait covers a signal sent between the two. */
static void wait_none_live(weft__runtime *rt, int64_t limit_ns)
{
    int64_t end = limit_ns ? weft__real_now() + limit_ns : 0;
    for (;;) {
        /* Cancel again on every look: a task whose spawn raced with the
         * first walk may have missed both it and the cancel-at-birth flag. */
        weft__reg_cancel_all(rt);
        weft__pool_drop_all(rt->pool);
        weft__pool_drop_all(rt->sys_pool);
        if (weft__reg_live(rt) == 0 || (end && weft__real_now() > end))
            return;
        pthread_mutex_lock(&rt->done_mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&rt->done_cv, &rt->done_mu, &ts);
        pthread_mutex_unlock(&rt->done_mu);
    }
}

int weft_run_config(const weft_config *cfg, weft_fn main_fn, void *arg, void **result)
{
    if (!main_fn)
        return -EINVAL;
    weft__settings set;
    int rc = weft__settings_resolve(cfg, &set);
    if (rc < 0)
        return rc;

    weft__runtime *rt;
    if (posix_memalign((void **)&rt, WEFT__CACHELINE, sizeof *rt))
        return -ENOMEM;
    memset(rt, 0, sizeof *rt);
    rt->cfg = set;
    weft__spin_init(&rt->inject_lock, WEFT__RANK_INJECT);
    weft__spin_init(&rt->idle_lock, WEFT__RANK_IDLE);
    weft__spin_init(&rt->task_lock, WEFT__RANK_LEAF);
    weft__spin_init(&rt->stack_lock, WEFT__RANK_LEAF);
    atomic_init(&rt->clock, weft_now());
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rt->done_mu, NULL);

    bool idle = false;
    /* acq_rel: one weft_run at a time (-EBUSY); the runtime is published in
     * g_rt only once it is set up (plain threads then reach it). */
    if (!atomic_compare_exchange_strong_explicit(&g_running, &idle, true, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        runtime_free(rt);
        return -EBUSY;
    }
    /* The clock first: the wheels start at its reading (timer.c). */
    weft__vclock_start(rt);
    /* Not visible to spawners until fully set up: publish NULL-safe fields
     * first (weft_spawn from a plain thread meanwhile finds no workers yet,
     * which is fine: the injection queue exists). */

    int *cpus = NULL;
    unsigned ncpus = 0;
    if ((rc = weft__topo_cpus(rt, &cpus, &ncpus)) < 0)
        goto fail_early;
    /* Threads: one per CPU of the cpuset, or as many as asked for; of
     * them, as many as the CPU quota allows take work (active.c). */
    rt->nworkers = set.workers ? set.workers : ncpus;
    rt->workers = calloc(rt->nworkers, sizeof *rt->workers);
    if (!rt->workers) {
        rc = -ENOMEM;
        goto fail_early;
    }
    unsigned quota;
    if ((rc = weft__active_init(rt, set.workers != 0, &quota)) < 0)
        goto fail_early;
    /* Under a quota below the cpuset, pinning by default is off: the quota
     * is time on every CPU of the cpuset, and pins would crowd every such
     * process onto the same first CPUs (docs/scheduler.md, section 1). */
    if (set.pin_auto && quota && quota < ncpus)
        set.pin = rt->cfg.pin = false;
    if ((rc = weft__poll_init(rt)) < 0)
        goto fail_early;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rt->workers[i] = worker_new(rt, (int)i, set.pin ? cpus[i % ncpus] : -1);
        if (!rt->workers[i]) {
            rc = errno ? -errno : -ENOMEM;
            goto fail_early;
        }
    }
    free(cpus);
    cpus = NULL;
    /* Owners take runnext without a read-modify-write where thieves can
     * fence for them (runq.c, "Taking runnext"); set before any worker
     * starts, read-only after. */
    bool plain = set.membarrier && weft__os_membarrier_usable();
    for (unsigned i = 0; i < rt->nworkers; i++)
        rt->workers[i]->runnext_plain = plain;
    if ((rc = weft__topo_victims(rt)) < 0 || (rc = weft__stacks_init(rt)) < 0 ||
        (rc = weft__slabs_init(rt)) < 0)
        goto fail_early;
    if (weft__trim_init(rt) < 0) {
        rc = -ENOMEM;
        goto fail_early;
    }
    rt->pool = weft__pool_new(rt, set.blocking_threads, "blocking");
    rt->sys_pool = weft__pool_new(rt, 16, "system");
    if (!rt->pool || !rt->sys_pool) {
        rc = -ENOMEM;
        goto fail_early;
    }

    weft_task *m = weft__task_new(rt, NULL, "main", main_fn, arg);
    if (!m) {
        rc = -ENOMEM;
        goto fail_early;
    }
    m->is_main = true;
    rt->main = m;
    weft__inject_push(rt, m, m, 1);
    /* seq_cst: set up; plain threads (spawn, dump, stats) may use it now. */
    atomic_store_explicit(&g_rt, rt, memory_order_seq_cst);

    if ((rc = weft__trace_init(rt)) < 0)
        goto fail_early;
    /* Before signal_install: its fault handler forwards to seed.c's. */
    weft__seed_start(rt);
    weft__signal_install();
    if ((rc = weft__observe_start(rt)) < 0) {
        weft__signal_uninstall();
        weft__seed_stop(rt);
        goto fail_early;
    }
    weft__console_start(rt);  /* never fails the run: docs/debugging.md */
    unsigned started = 0;
    for (; started < rt->nworkers; started++) {
        int e = pthread_create(&rt->workers[started]->thread, NULL, weft__worker_main,
                               rt->workers[started]);
        if (e) {
            rc = -e;
            break;
        }
    }
    if (started == rt->nworkers && (rc = weft__sysmon_start(rt)) == 0) {
        /* 1. main runs until it returns. */
        wait_main(rt);
    } else {
        weft__log("weft: cannot start the runtime's threads: %s", strerror(-rc));
    }

    /* 2-4. Cancel what is left and wait for it.  Plain threads can no
     * longer spawn (EPERM); coroutines still can, cancelled at birth. */
    withdraw(rt);
    atomic_store_explicit(&rt->shutdown, true, memory_order_seq_cst);
    /* After a deadlock (vclock.c) the blocked tasks are cancelled like any
     * others, so that those in cancellable waits leave the wait lists of
     * the objects they waited on; those that cannot finish (an
     * uncancellable wait, another deadlock) are given up after a second
     * and freed with the rest (step 6). */
    bool deadlocked = atomic_load_explicit(&rt->deadlocked, memory_order_seq_cst);
    if (started == rt->nworkers)
        wait_none_live(rt, deadlocked ? WEFT_SEC : 0);
    /* The console answers until here (a shutdown that hangs can be looked
     * at); it reads the pools, so it stops before they go. */
    weft__console_stop(rt);
    /* Every task finished, so the pools are idle: join their threads. */
    weft__pool_free(rt->pool);
    weft__pool_free(rt->sys_pool);
    rt->pool = rt->sys_pool = NULL;
    /* 5. Stop the workers and sysmon. */
    atomic_store_explicit(&rt->stop, true, memory_order_seq_cst);
    for (unsigned i = 0; i < started; i++)
        weft__wake_worker(rt->workers[i]);
    for (unsigned i = 0; i < started; i++)
        pthread_join(rt->workers[i]->thread, NULL);
    weft__sysmon_stop(rt);
    weft__observe_stop(rt);
    weft__signal_uninstall();
    weft__seed_stop(rt);
    weft__vclock_stop(rt);

    weft__trace_finish(rt);
    bool ok = started == rt->nworkers && rc == 0;
    if (ok && deadlocked) {
        ok = false;
        rc = -EDEADLK;
    }
    if (ok && result)
        *result = m->result;
    /* 6. Free what was never released. */
    weft__reg_free_all(rt);
    runtime_free(rt);
    atomic_store_explicit(&g_running, false, memory_order_release);
    return ok ? 0 : rc;

fail_early:
    free(cpus);
    weft__vclock_stop(rt);
    weft__trace_finish(rt);
    withdraw(rt);
    weft__reg_free_all(rt);
    runtime_free(rt);
    atomic_store_explicit(&g_running, false, memory_order_release);
    return rc;
}

int weft_run(weft_fn main_fn, void *arg, void **result)
{
    return weft_run_config(NULL, main_fn, arg, result);
}

unsigned weft_workers_active(void)
{
    weft__worker *w = weft__cur_worker();
    weft__runtime *rt = w ? w->rt : weft__rt_get();
    /* relaxed: a snapshot of a limit that may change at any time. */
    unsigned n = rt ? atomic_load_explicit(&rt->active, memory_order_relaxed) : 0;
    if (rt && !w)
        weft__rt_put();
    return n;
}
