/*
 * sysmon: the runtime's monitor thread (after Go's sysmon).
 *
 * Every millisecond it samples each worker's tick (bumped at every schedule
 * and task switch).  A worker that is running (not parked) and whose tick has
 * not moved for WEFT__BLOCKED_NS is stuck in one coroutine: a blocking system
 * call or a long computation.  sysmon then
 *   - flags it blocked, which makes its runnext and its due timers fair game
 *     for the other workers (sched.c, help_blocked);
 *   - wakes an idle worker when the blocked one has ready tasks or due
 *     timers, or when descriptors are watched and nobody drives the poller,
 *     so they run elsewhere within a few milliseconds;
 *   - in debug mode, once the coroutine has run WEFT_SLOW_MS without
 *     reaching a suspension point, names it on stderr, with its backtrace:
 *     SIGURG makes the worker's thread capture the addresses, sysmon's
 *     next round symbolizes and writes them (symbolize.c).
 * Each round it also writes the dumps WEFT_DUMP_SIGNAL asked for
 * (observe.c).
 * When every worker is parked, sysmon backs off to 5 ms naps.  Each round
 * it also refreshes rt->clock, the timestamp of observability fields (since)
 * so that no hot path reads the clock, runs the memory trimmer
 * (trim.c), which gives back what the stack and slot pools did not need,
 * and, once a second, re-reads the cgroup's CPU quota (active.c), which
 * moves the active worker limit when the quota changed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define WEFT__BLOCKED_NS (2 * WEFT_MS)
/* Debug mode: sysmon sends this to a worker stuck in one coroutine, whose
 * handler writes the coroutine's backtrace (SIGURG: ignored by default, so a
 * stray one harms nothing). */
#define WEFT__BT_SIGNAL SIGURG

/* The stuck worker's thread: captures the running coroutine's return
 * addresses (backtrace is safe here once loaded: sysmon_start) and hands
 * them to sysmon, which symbolizes and writes them (write_stuck_bt). */
static void on_bt_signal(int sig)
{
    (void)sig;
    int e = errno;
    weft__worker *w = weft__cur_worker();
    /* acquire on bt_n: pairs with write_stuck_bt's release of 0, after its
     * last read of bt_pcs (a buffer not yet written is left alone). */
    if (w && atomic_exchange_explicit(&w->want_bt, false, memory_order_acq_rel) &&
        !atomic_load_explicit(&w->bt_n, memory_order_acquire)) {
        int n = backtrace(w->bt_pcs, 32);
        /* release: publishes bt_pcs; pairs with the acquire in
         * write_stuck_bt. */
        atomic_store_explicit(&w->bt_n, n > 0 ? n : 0, memory_order_release);
    }
    errno = e;
}

/* sysmon (and weft__sysmon_stop once it stopped): the backtrace a stuck
 * worker's handler captured, if any, to stderr. */
static void write_stuck_bt(weft__worker *w)
{
    /* acquire: pairs with the release in on_bt_signal.  The buffer is
     * claimed (-1) while it is read, so the handler, which fills it only
     * at 0, never writes under a reader, and a second reader (a test)
     * takes it only by the same claim. */
    int n = atomic_load_explicit(&w->bt_n, memory_order_acquire);
    if (n <= 0 || !atomic_compare_exchange_strong_explicit(&w->bt_n, &n, -1,
                                                           memory_order_acquire,
                                                           memory_order_relaxed))
        return;
    static const char hdr[] = "weft: backtrace of the stuck coroutine:\n";
    ssize_t r = write(2, hdr, sizeof hdr - 1);
    (void)r;
    weft__sym_pass pass = {0};
    weft__sym_write(&pass, 2, w->bt_pcs, n);
    /* release: pairs with the handler's acquire load of bt_n. */
    atomic_store_explicit(&w->bt_n, 0, memory_order_release);
}

typedef struct {
    uint64_t tick;
    int64_t since;   /* when the tick last moved */
} sample;

static void warn_slow(weft__worker *w, int64_t ran)
{
    weft__spin_lock(&w->dbg_lock);
    if (w->dbg_id && !w->dbg_warned) {
        w->dbg_warned = true;
        weft__log("weft: task '%s' (id %llu) has run %lld ms on worker %d without reaching a "
                  "suspension point (WEFT_SLOW_MS=%lld); its worker's other tasks and timers "
                  "move to other workers",
                  w->dbg_name[0] ? w->dbg_name : "?", (unsigned long long)w->dbg_id,
                  (long long)(ran / WEFT_MS), w->id, (long long)(w->rt->cfg.slow_ns / WEFT_MS));
        /* Its backtrace, taken on its own thread by the signal handler. */
        atomic_store_explicit(&w->want_bt, true, memory_order_release);
        pthread_kill(w->thread, WEFT__BT_SIGNAL);
    }
    weft__spin_unlock(&w->dbg_lock);
}

static void *sysmon_main(void *arg)
{
    weft__runtime *rt = arg;
    sample *s = calloc(rt->nworkers, sizeof *s);
    int64_t nap = WEFT_MS;
    pthread_mutex_lock(&rt->sysmon_mu);
    while (!rt->sysmon_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t t = ts.tv_sec * WEFT_SEC + ts.tv_nsec + nap;
        ts.tv_sec = t / WEFT_SEC;
        ts.tv_nsec = t % WEFT_SEC;
        pthread_cond_timedwait(&rt->sysmon_cv, &rt->sysmon_mu, &ts);
        if (rt->sysmon_stop || !s)
            break;
        pthread_mutex_unlock(&rt->sysmon_mu);

        /* Real time: a worker stuck in one coroutine is stuck whatever the
         * clock of the tasks (vclock.c). */
        int64_t now = weft__real_now();
        /* relaxed: the clock of observability timestamps (weft__rt_clock). */
        int64_t vnow = weft_now();
        atomic_store_explicit(&rt->clock, vnow, memory_order_relaxed);
        bool any_running = false, any_blocked = false, want_help = false;
        for (unsigned i = 0; i < rt->nworkers; i++) {
            weft__worker *w = rt->workers[i];
            uint64_t tick = atomic_load_explicit(&w->tick, memory_order_relaxed);
            bool running = atomic_load_explicit(&w->running, memory_order_relaxed);
            if (!running || tick != s[i].tick) {
                s[i].tick = tick;
                s[i].since = now;
                /* relaxed: observability (the since of a running task). */
                atomic_store_explicit(&w->run_since, vnow, memory_order_relaxed);
                if (atomic_load_explicit(&w->blocked, memory_order_relaxed))
                    atomic_store_explicit(&w->blocked, false, memory_order_release);
                any_running |= running;
                continue;
            }
            any_running = true;
            int64_t stuck = now - s[i].since;
            if (stuck < WEFT__BLOCKED_NS)
                continue;
            any_blocked = true;
            /* release: pairs with the acquire in help_blocked. */
            atomic_store_explicit(&w->blocked, true, memory_order_release);
            if (!weft__runq_empty(w) || weft__timers_next(&w->timers) <= vnow ||
                (atomic_load_explicit(&rt->nfds, memory_order_relaxed) &&
                 !atomic_load_explicit(&rt->driver, memory_order_relaxed)))
                want_help = true;  /* ready tasks, due timers, or nobody polls */
            if (rt->cfg.debug && stuck >= rt->cfg.slow_ns)
                warn_slow(w, stuck);
        }
        atomic_store_explicit(&rt->any_blocked, any_blocked, memory_order_relaxed);
        if (rt->cfg.debug)
            for (unsigned i = 0; i < rt->nworkers; i++)
                write_stuck_bt(rt->workers[i]);
        weft__observe_serve(rt);  /* WEFT_DUMP_SIGNAL's dumps */
        if (want_help)
            weft__notify(rt);
        weft__trim_tick(rt, now);
        weft__stacks_tick(rt, now);
        weft__active_tick(rt, now);
        nap = any_running ? WEFT_MS : 5 * WEFT_MS;
        pthread_mutex_lock(&rt->sysmon_mu);
    }
    pthread_mutex_unlock(&rt->sysmon_mu);
    free(s);
    return NULL;
}

int weft__sysmon_start(weft__runtime *rt)
{
    if (rt->cfg.debug) {
        void *pcs[2];
        backtrace(pcs, 2);  /* loads the unwinder now, not in a signal handler */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_bt_signal;
        sa.sa_flags = SA_RESTART | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(WEFT__BT_SIGNAL, &sa, NULL);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->sysmon_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rt->sysmon_mu, NULL);
    rt->sysmon_stop = false;
    /* 8 MiB of stack (address space): it runs the symbolizer, which needs
     * much (observe.c, dump_off_stack), whatever the process's default. */
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 8u << 20);
    int rc = pthread_create(&rt->sysmon, &a, sysmon_main, rt);
    pthread_attr_destroy(&a);
    if (rc)
        return -rc;
    rt->sysmon_started = true;
    return 0;
}

void weft__sysmon_stop(weft__runtime *rt)
{
    if (!rt->sysmon_started)
        return;
    pthread_mutex_lock(&rt->sysmon_mu);
    rt->sysmon_stop = true;
    pthread_cond_signal(&rt->sysmon_cv);
    pthread_mutex_unlock(&rt->sysmon_mu);
    pthread_join(rt->sysmon, NULL);
    rt->sysmon_started = false;
    /* A backtrace captured after sysmon's last round (workers are joined:
     * none comes any more). */
    if (rt->cfg.debug)
        for (unsigned i = 0; i < rt->nworkers; i++)
            write_stuck_bt(rt->workers[i]);
    pthread_cond_destroy(&rt->sysmon_cv);
    pthread_mutex_destroy(&rt->sysmon_mu);
}
