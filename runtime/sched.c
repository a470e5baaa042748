/*
 * The scheduler: switching and stealing (this file), with the injection
 * queue (inject.c), idle workers and the searching token (idle.c), the
 * driver and parking (park.c), the per-worker ring (runq.c), timers
 * (timer.c) and the poller behind runtime/poller.h.  This essay is the
 * protocol for all of them; docs/scheduler.md tells the story around it.
 *
 * 1. Concepts
 *
 *  task     A coroutine with its own stack (weft_task).  It runs until it
 *           reaches a suspension point: yield, park (waiting for something)
 *           or exit.  A spawned task holds no stack until it first runs.
 *  worker   One OS thread per CPU (WEFT_WORKERS), optionally pinned; of
 *           them, the first rt->active take work (section 11).  Each is
 *           an event loop: a run queue, a timer wheel and a wake-up channel
 *           of its own to sleep on; one parked worker at a time waits in the
 *           runtime's shared poller instead (section 9).
 *           A task that switches out goes straight to the worker's next
 *           local task when there is one (one switch, not two); otherwise
 *           to the worker's scheduler context (the thread's own stack),
 *           which steals, polls and parks.  What the switched-out task asked
 *           for (requeue, park, exit) is done by whichever context runs
 *           next (weft__after_switch), once its registers are saved: only
 *           then may another worker resume it, or its stack be freed.
 *  runtime  The workers, the global injection queue, the idle list, the task
 *           registry and the monitor thread (sysmon).
 *
 * 2. Queues
 *
 *  Each worker has a 256-slot ring (runq.c) and a LIFO slot, runnext.  A task
 *  woken or spawned by a coroutine goes to its worker's runnext, pushing the
 *  previous occupant to the ring's tail: the wakee runs next, on a warm cache,
 *  so a ping-pong between two tasks stays on one core.  At most
 *  WEFT__LIFO_MAX (16) runnext runs in a row; then runnext goes to the ring's
 *  tail so two tasks ping-ponging cannot starve the ring.  (Tokio uses 3;
 *  why 16: docs/scheduler.md, section 13.)  A full ring moves half
 *  of itself to the global injection queue, which also takes spawns from
 *  plain threads: a spinlocked FIFO of segments (one per push, inject.c),
 *  so that its lock holder moves batches and never walks a task.  Every
 *  WEFT__INJECT_EVERY schedules a worker looks at the injection queue
 *  before its own ring, so injected tasks are never starved by a busy
 *  ring.  While it holds tasks, a busy worker's poll puts what it wakes at
 *  its tail, not in the ring ahead of it (park.c, weft__poll_now; Go's
 *  netpoll feeds its global queue the same way): with thousands of
 *  connections, the coroutines in the injection queue used to wait for
 *  seconds behind rings that each poll refilled (docs/networking.md,
 *  section 8).
 *
 * 3. Stealing and searching
 *
 *  A worker out of work becomes a searcher and tries, four rounds over the
 *  other workers in order of hwloc distance (topo.c: shared core, shared
 *  cache, NUMA node, the rest): steal half of a ring in one CAS.  In the last
 *  round it may take a victim's runnext too, after a short back-off while the
 *  victim runs (Go's rule: a wakee parked in runnext of a busy worker would
 *  otherwise be stuck there - the Tokio stall of tokio#4941 - yet an
 *  immediate steal would break the ping-pong locality).  Such a steal is
 *  rare and the owner's take of its runnext is at nearly every schedule, so
 *  the thief pays for both: a membarrier lets the owner take with plain
 *  loads and stores (runq.c, "Taking runnext").  At most half of the
 *  busy workers search at once, so one new task does not stir every worker.
 *
 * 4. Parking and the wake-up protocol for workers
 *
 *  Waking a parked thread costs microseconds, a steal tens of nanoseconds, so
 *  wake-ups are cut first.  Invariant: while there is queued work and an idle
 *  worker, some worker is awake and searching, or the work's own worker is
 *  running and will reach it.
 *   a. A producer (ready, spawn, overflow, inject) calls notify() (except
 *      for a task put in an empty runnext: its own worker runs it next, so
 *      waking another would only invite a steal; Tokio's rule; and for the
 *      coroutines a poll made ready, section 9c: the polling worker runs
 *      them): when n_idle > 0 and n_searching == 0, it claims the single
 *      searching token (CAS n_searching 0 -> 1), pops one idle worker and
 *      wakes it (weft__wake_worker, section 9a).
 *   b. A searcher that finds work drops its searching state; if it was the
 *      last searcher it calls notify() in turn (Go's resetspinning), so a
 *      burst of work wakes workers one at a time, only as needed.
 *   c. A worker about to park pushes itself on the idle list, increments
 *      n_idle (seq_cst) and checks every queue once more (seq_cst loads);
 *      inject_push adds to inject_len (seq_cst) before notify loads n_idle
 *      (seq_cst): in the single order of seq_cst operations one of the two
 *      comes first, so either the producer sees n_idle > 0 or the parker
 *      sees the work.  (No bare fence: ThreadSanitizer cannot follow one.)
 *      inject_len never drops below the tasks owed to the queue, even
 *      while a popper splits a segment outside the lock (inject.c).
 *      A push to a worker's own ring pays no seq_cst operation: that worker
 *      is awake and will run what it pushed (or hand it off, section 11);
 *      sysmon covers it if it blocks.
 *   d. It then waits until its earliest timer, in the shared poller or on
 *      its own wake-up channel (section 9).  On waking it
 *      removes itself from the idle list, or finds it was popped by a
 *      notifier, which handed it the searching token.
 *
 * 5. The wake-up protocol for tasks (park / wake)
 *
 *  A task that waits registers itself where a waker will find it, then
 *  calls weft__park_ex(): it switches out, and on the next context
 *  park_commit queues its deadline timer, runs the caller's commit function
 *  (a last look at the condition, to skip a needless sleep) and moves the
 *  token RUNNING -> PARKED with a CAS.  A waker moves PARKED -> RUNNING and
 *  enqueues the task; one that finds RUNNING (the task has not gone to
 *  sleep yet, or is not waiting at all) moves it to WOKEN, a permit: the
 *  parker's CAS then fails, and it consumes the permit and resumes the task
 *  itself.  Exactly one party enqueues a parked task; nobody runs it before
 *  its context is saved.  Every transition is a read-modify-write of the
 *  one token, so a waker and a parker cannot miss each other whatever order
 *  their other memory operations take, and neither side needs a fence: one
 *  CAS each.  A permit may outlive its wait (a
 *  canceller's, a timer's or a late granter's wake landing after the task
 *  resumed): the next park then returns at once, so wake-ups may be
 *  spurious and every caller of park loops on its own condition; park
 *  clears a permit when it returns, which leaves only wakes that land
 *  after that.
 *  Whoever finds a task on a wait list must wake it while holding the lock
 *  that the task takes to leave the list (or hold a reference to it), since
 *  a woken task may run, finish and be freed at once.
 *
 * 6. Fairness and blocked workers
 *
 *  A coroutine that blocks its worker (a blocking system call, a long loop)
 *  holds up only itself: sysmon (sysmon.c) samples each worker's tick every
 *  millisecond; a worker whose tick has not moved for 2 ms while running is
 *  flagged blocked.  Its ring is stealable as always; its runnext and its due
 *  timers become stealable at once; sysmon wakes an idle worker to take them,
 *  and busy workers look at blocked workers every WEFT__INJECT_EVERY
 *  schedules.  In debug mode the blocking task is named on stderr, with its
 *  backtrace.
 *
 * 7. Timers
 *
 *  Per-worker hierarchical timing wheels (timer.c: 6 levels x 64 slots,
 *  tick 2^16 ns; docs/scheduler.md, section 7).  Deadlines round up to a
 *  tick: never early, at most a tick late.  The owner fires due timers at
 *  every schedule where the wheel's published next (a lower bound) has
 *  passed, and parks (section 9) until it.  Due timers are unlinked under
 *  the wheel's lock and woken after it; a task's wait removes its timer as
 *  soon as it resumes, waiting out a firer that has taken it (timer.c).
 *
 * 8. Rejected alternatives
 *
 *  - One global queue (simple, but every operation contends on one line).
 *  - Chase-Lev deques (runq.c says why the ring won).
 *  - Every switch through the scheduler context (Go's g0): simpler, but a
 *    second switch per hand-off; the deferred after-action (section 1) gives
 *    the same safety with one.
 *  - liburcu's wfcqueue for injection: wait-free, but its uatomic is inline
 *    assembly that ThreadSanitizer cannot see, and injection is rare enough
 *    that a spinlock costs nothing measurable.
 *  - Waking a worker per new task (every spawn would pay a syscall).
 *  - A park in two steps (RUNNING -> ARMING, then ARMING -> PARKED), with a
 *    wake that finds RUNNING doing nothing, so that the waker's flag (a
 *    grant, cancellation) and the token formed a Dekker pair, each side a
 *    seq_cst store: weft's protocol until 2026-12, two read-modify-writes
 *    more per wake-up than the permit of section 5.
 *
 * 9. I/O (runtime/netpoll.c, runtime/os/linux/poll_epoll.c)
 *
 *  One poller per runtime (an epoll instance on Linux, behind
 *  runtime/poller.h) holds every descriptor a
 *  coroutine has waited on (edge-triggered).  It has no thread of its own:
 *  a worker about to park takes the driver token (CAS rt->driver NULL -> w)
 *  and parks IN the poller, until its earliest timer; the other parked
 *  workers sleep on their own wake-up channel (Tokio's driver).  A busy worker polls
 *  without waiting every WEFT__INJECT_EVERY schedules if nobody drives.
 *  Socket events thus wake at most one thread, and a worker out of work
 *  needs no separate poll (the drive returns at once with what is ready).
 *   a. Waking a parked worker (weft__wake_worker): set w->wake_pending
 *      (seq_cst), then load rt->driver (seq_cst): w drives -> write the
 *      poller's eventfd, else w's own.  The parker does CAS driver (seq_cst),
 *      then loads wake_pending (seq_cst) and does not block if it is set:
 *      either the waker sees w driving or w sees the flag (Dekker).  Stale
 *      counts left in an eventfd only cause one spurious return.
 *   b. A readiness edge bumps the fd's sequence and wakes its waiters onto
 *      the polling worker's ring, from where any worker may steal them:
 *      readiness reaches a coroutine through the fd's state and the run
 *      queues, whichever worker it last ran on.  Nothing is missed because a
 *      coroutine reads the sequence before its non-blocking syscall and
 *      waits only if it has not moved (runtime/netpoll.c has the argument).
 *   c. The coroutines one poll makes ready do not notify() as they are
 *      queued.  If the last of them is still in the ring WEFT_SPREAD_US
 *      (0.5 ms) later, the poller's worker notifies once (spread_check); if
 *      it took them all in time, nobody is woken.  An echo server whose
 *      handlers one worker keeps up with then runs on one warm worker, and
 *      handlers that burn CPU still spread (test_server_burst_spreads; the
 *      figures: docs/scheduler.md, section 13).  Except behind a backlog:
 *      a busy worker's poll while the injection queue holds tasks queues
 *      its coroutines at that queue's tail, one segment, notifying as any
 *      injection does (section 2; park.c, weft__poll_now).
 *  Rejected: a poller per worker (the first design: each worker's socket
 *  events woke that worker, so two workers took turns sleeping and waking;
 *  docs/scheduler.md, section 13, has the counts); a poller thread (an extra wake-up per event).
 *  When nobody drives (the last driver went back to work) while the others
 *  sleep on their own wake-up channels, events wait for a busy worker's periodic
 *  poll or its next park; a worker blocked in one coroutine is covered by
 *  sysmon, which wakes a sleeper when nobody drives (it parks and drives).
 *  Blocking work (name resolution, whole files) runs on the runtime's own
 *  pool.  pread / pwrite go to the worker's io_uring (runtime/os/linux/aio_uring.c):
 *  cached data is copied inside the submission; a later completion comes
 *  back through this same poller, where each ring's descriptor is one-shot
 *  and armed only while one of its operations is outstanding.
 *
 * 10. Shutdown (runtime.c, weft_run)
 *
 *  1. main returns; its worker signals the thread waiting in weft_run.
 *  2. The runtime is withdrawn from plain threads (their spawns fail with
 *     EPERM) and marked shutting down: tasks spawned by coroutines from now
 *     on are cancelled at birth.
 *  3. Every unfinished task is cancelled (registry walk) and woken; calls
 *     queued on the blocking pools are dropped.
 *  4. weft_run waits until no task is unfinished.
 *  5. The blocking pools' threads are joined; workers are told to stop,
 *     woken, and joined; sysmon is stopped; the signal handlers are
 *     restored.
 *  6. Tasks never joined nor detached are reported (debug mode) and freed;
 *     stacks, timers, queues and descriptors are released.
 *
 * 11. The active worker limit (active.c)
 *
 *  Workers 0..rt->active-1 take work; the others are excess (a cgroup CPU
 *  quota below the thread count, followed by sysmon: active.c, cgroup.c).
 *   a. Leaving.  local_next gives an excess worker nothing, so at its next
 *      schedule it reaches the scheduler loop (weft__excess_park), which
 *      passes on a searching token a notifier gave it (drop_searching with
 *      found: the last searcher notifies, 3b), fires its due timers, hands
 *      its runnext and ring to the injection queue (inject_push notifies,
 *      4a) and sleeps on its own channel until its earliest timer.  It is
 *      not on the idle list (notify never picks it), never drives the
 *      poller, and is skipped as a victim by steal_work and by the
 *      parker's re-check (work_anywhere).
 *   b. Why skipping it in the re-check loses nothing (4c): a task queued on
 *      an excess worker was pushed by that worker itself (rings are owner-
 *      only), and either (i) the worker is awake and hands it off at its
 *      next schedule, a seq_cst inject push plus notify, after which 4c
 *      holds as for any push; or (ii) it is stuck in one task: sysmon flags
 *      it blocked within 2 ms and, its queue not being empty, wakes an idle
 *      worker, whose help_blocked looks at every blocked worker, excess or
 *      not (section 6); or (iii) it sleeps as excess, having emptied its
 *      queues first; its timers it fires itself at their deadlines, and
 *      hands their tasks off as in (i).
 *   c. Returning.  weft__active_set stores the new limit (seq_cst) and then
 *      wakes every worker whose side changed (weft__wake_worker: the flag,
 *      then the channel; an excess worker never drives, so its own channel,
 *      whose count stays until its sleep reads it).  The excess worker
 *      clears wake_pending and then loads the limit (seq_cst both) before
 *      it sleeps: it sees the new limit, or its sleep returns at once.
 *      Workers made excess are woken the same way, so that one parked on
 *      the idle list or in the poller leaves it and goes to (a).
 *   d. A notifier may pop from the idle list a worker that is becoming
 *      excess: that worker passes the token on (a), so the wake-up still
 *      reaches an active worker if one is idle.
 *  The limit is read relaxed on the hot path (local_next, steal_work): a
 *  stale value costs one schedule on the wrong side, never a task.
 *
 * 12. Testing modes (docs/testing.md)
 *
 *  Under WEFT_CLOCK=virtual a worker about to park may move the clock
 *  instead (park.c calls vclock.c, whose head comment is that protocol):
 *  only when every worker is idle, nothing holds the clock and the poller
 *  has nothing ready.  Under WEFT_SEED the choices of sections 2, 3 and 7
 *  are drawn (local_next hands over to seed.c; steal_work draws its first
 *  victim; timer.c shuffles each due batch); on one worker with the
 *  virtual clock the injection queue is taken only where the seed says,
 *  which is what makes such a run replayable (seed.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "fiber.h"
#include "internal.h"


/* The worker running this thread, or NULL.  initial-exec: a load at a fixed
 * offset from the thread pointer, no __tls_get_addr call.  Read only through
 * weft__cur_worker (internal.h), which reads the thread pointer afresh.
 * used, externally_visible: the reads name it in assembly, which link-time
 * optimisation cannot see; without these an LTO build localises it and the
 * reads do not link. */
__thread weft__worker *weft__tls_worker
    __attribute__((tls_model("initial-exec"), used, externally_visible));

/* The thread itself (a worker sets it as it starts and clears it at exit). */
void weft__set_cur_worker(weft__worker *w)
{
    weft__tls_worker = w;
}

/* ------------------------------------------------------------------ */
/* Ready / wake / park                                                 */
/* ------------------------------------------------------------------ */

/* Any thread (w: the caller's worker, or NULL).  t to w's queues when w
 * belongs to t's runtime, else to the injection queue.  Always inlined:
 * left to itself GCC kept it out of line in wake() once the trace hook was
 * there, and the call cost each wake-up more than the observability stores
 * themselves (docs/debugging.md, "Overhead", has the count). */
static inline __attribute__((always_inline)) void ready_from(weft__worker *w, weft_task *t,
                                                             bool lifo)
{
    if (w && w->rt == t->rt)
        weft__ready_on(w, t, lifo);
    else
        weft__inject_push(t->rt, t, t, 1);
}

/* Any thread.  Makes t runnable: on the calling worker's queue (runnext when
 * lifo), or through the injection queue from other threads. */
void weft__ready(weft_task *t, bool lifo)
{
    ready_from(weft__cur_worker(), t, lifo);
}

/* Owner worker only (w is the caller's worker, of t's runtime). */
void weft__ready_on(weft__worker *w, weft_task *t, bool lifo)
{
    atomic_store_explicit(&t->state, WEFT_TASK_READY, memory_order_relaxed);
    {
        if (lifo) {
            /* Only the owner fills runnext; thieves only empty it (CAS to
             * NULL).  So an empty slot seen here stays empty until this
             * store: no read-modify-write needed (one fewer per ping-pong
             * message).  release: pairs with a thief's acquire load and
             * CAS on runnext, which then see t's fields. */
            weft_task *old = atomic_load_explicit(&w->q.runnext, memory_order_relaxed);
            if (!old) {
                atomic_store_explicit(&w->q.runnext, t, memory_order_release);
                return;  /* only runnext: this worker runs it next, no one to wake */
            }
            /* acq_rel: pairs with a thief's CAS on runnext. */
            old = atomic_exchange_explicit(&w->q.runnext, t, memory_order_acq_rel);
            if (!old)
                return;  /* a thief took the old one meanwhile */
            weft__runq_put(w, old);
        } else {
            weft__runq_put(w, t);
        }
        if (!w->polling)
            weft__notify(w->rt);
    }
}

/* Worker w traces: the wake-up arrow of t starts here and ends at t's
 * next run.  Out of line, so that wake() stays small enough to inline. */
__attribute__((noinline, cold)) static void trace_wake(weft__worker *w, weft_task *t)
{
    t->trace_flow = ((uint64_t)(w->id + 1) << 40) | ++w->trace_flows;
    t->rare = true;  /* the free clears a flow never ended (tracing stopped) */
    weft__trace_event(w, WEFT__TEV_FLOW_S, weft_now(), 0, t->trace_flow, 0);
}

/* Any thread.  The rest of a wake-up when wake()'s one compare failed: a
 * waker that is not a worker of t's runtime (injection queue), or one that
 * traces (the flow arrow starts here). */
__attribute__((noinline)) static void wake_slow(weft__worker *w, weft_task *t, bool lifo)
{
    if (w && w->rt == t->rt) {
        if (WEFT__TRACING(w))
            trace_wake(w, t);
        if (w->deferring) {
            /* A busy poll behind a backlog (park.c, weft__poll_now): in line
             * behind the injection queue, not ahead of it in w's ring. */
            atomic_store_explicit(&t->state, WEFT_TASK_READY, memory_order_relaxed);
            weft__task_list_append(&w->defer_head, &w->defer_tail, t);
            w->defer_n++;
            return;
        }
    }
    ready_from(w, t, lifo);
}

/* Inlined into weft__wake and weft__wake_lifo: as a call of its own, its
 * prologue and epilogue cost more than the observability stores.  Returns
 * true when this call woke t or left it a permit, false when a permit was
 * already there. */
static inline __attribute__((always_inline)) bool wake(weft_task *t, bool lifo)
{
    int v = atomic_load_explicit(&t->park, memory_order_relaxed);
    for (;;) {
        if (v == WEFT__PARK_PARKED) {
            /* acq_rel: acquire pairs with the parker's CAS to PARKED (its
             * saved context); release hands what the waker wrote before
             * (a grant, a flag) to whoever runs t.  Protocol 5. */
            if (atomic_compare_exchange_weak_explicit(&t->park, &v, WEFT__PARK_RUNNING,
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                /* relaxed: observability; sysmon's clock, no clock read here. */
                WEFT__OBS(atomic_store_explicit(&t->since, weft__rt_clock(t->rt),
                                                memory_order_relaxed));
                weft__prefetch_context(t);
                /* One look-up of the waker's worker, and one compare (wake_rt
                 * is NULL while w traces) serve the queueing and the trace. */
                weft__worker *w = weft__cur_worker();
                if (w && w->wake_rt == t->rt)
                    weft__ready_on(w, t, lifo);
                else
                    wake_slow(w, t, lifo);
                return true;
            }
        } else if (v == WEFT__PARK_RUNNING) {
            /* A permit.  release: pairs with the parker's acquire (its
             * failed CAS, or park_ex's look when it resumes). */
            if (atomic_compare_exchange_weak_explicit(&t->park, &v, WEFT__PARK_WOKEN,
                                                      memory_order_release,
                                                      memory_order_relaxed))
                return true;
        } else {
            return false;  /* a permit is already there */
        }
    }
}

/* Any thread.  Wakes a parked task to the tail of the local queue. */
bool weft__wake(weft_task *t) { return wake(t, false); }
/* Any thread.  Wakes a parked task into the waker's LIFO slot. */
bool weft__wake_lifo(weft_task *t) { return wake(t, true); }

static void leave(weft__worker *w, weft_task *t, int after);
static weft_task *help_blocked(weft__worker *w);

/* May suspend the coroutine.  Parks the calling task until woken, its
 * deadline (WEFT_FOREVER for none) passes, or (when cancellable) it is
 * cancelled.  commit (may be NULL) runs on the scheduler stack after the
 * task's context is saved and returns false when the task should not sleep.
 * Returns -ECANCELED (cancellable and cancelled), -ETIMEDOUT (the deadline
 * fired) or 0 (woken, possibly spuriously: re-check the condition). */
int weft__park_ex(const char *wait, weft__commit_fn commit, void *arg, int64_t deadline,
                  bool cancellable)
{
    weft__worker *w = weft__cur_worker();
    weft_task *t = w->current;
    /* Go's "double wait": a task parks only from running (a permit left by
     * a late wake-up counts as running), with no timer of an earlier wait
     * left queued. */
    WEFT__ASSERT(t && atomic_load_explicit(&t->park, memory_order_relaxed) != WEFT__PARK_PARKED);
    WEFT__ASSERT(!t->timer.wheel);
    t->after = WEFT__AFTER_PARK;
    t->park_commit = commit;
    t->park_arg = arg;
    /* relaxed: observability only (walkers in observe.c). */
    WEFT__OBS(atomic_store_explicit(&t->wait, wait, memory_order_relaxed));
    WEFT__OBS(atomic_store_explicit(&t->since, weft__rt_clock(w->rt), memory_order_relaxed));
    t->park_deadline = deadline;
    t->park_cancellable = cancellable;
    leave(w, t, WEFT__AFTER_PARK);
    if (t->timer.wheel)
        weft__timer_del(&t->timer);
    /* Awake: a permit that came meanwhile (a grant racing the timer, the
     * timer racing a grant: del has waited out its firer) has done its
     * work, and the caller re-checks its condition now.  Cleared so that
     * it does not end the next wait at once.  acquire: pairs with the
     * waker's CAS, like the failed CAS in park_commit. */
    if (atomic_load_explicit(&t->park, memory_order_acquire) == WEFT__PARK_WOKEN)
        atomic_store_explicit(&t->park, WEFT__PARK_RUNNING, memory_order_relaxed);
    /* Read and clear fired first, so it never leaks into the next wait. */
    bool fired = atomic_load_explicit(&t->timer.fired, memory_order_relaxed);
    if (fired)
        atomic_store_explicit(&t->timer.fired, false, memory_order_relaxed);
    if (cancellable && atomic_load_explicit(&t->cancelled, memory_order_seq_cst))
        return -ECANCELED;
    return fired ? -ETIMEDOUT : 0;
}

void weft__park(const char *wait, weft__commit_fn commit, void *arg)
{
    (void)weft__park_ex(wait, commit, arg, WEFT_FOREVER, false);
}

/* Scheduler stack.  Second half of a park (protocol 5).  Returns true when
 * the task must resume at once. */
static bool park_commit(weft__worker *w, weft_task *t)
{
    /* relaxed: a hint (a permit already here: no timer, no sleep); the CAS
     * below decides. */
    int v0 = atomic_load_explicit(&t->park, memory_order_relaxed);
    WEFT__ASSERT(v0 == WEFT__PARK_RUNNING || v0 == WEFT__PARK_WOKEN);
    bool sleep = v0 == WEFT__PARK_RUNNING;
    if (sleep && t->park_deadline != WEFT_FOREVER) {
        if (weft__timer_add(w, &t->timer, t->park_deadline) < 0) {
            t->timer.wheel = NULL;
            /* no memory for the timer: time out now */
            atomic_store_explicit(&t->timer.fired, true, memory_order_relaxed);
            sleep = false;
        }
    }
    /* The commit and the cancellation look only save a sleep: a wake that
     * comes after them finds RUNNING and leaves a permit, which the CAS
     * below sees. */
    if (sleep && t->park_commit)
        sleep = t->park_commit(t, t->park_arg);
    if (sleep && t->park_cancellable &&
        atomic_load_explicit(&t->cancelled, memory_order_relaxed))
        sleep = false;
    if (sleep) {
        atomic_store_explicit(&t->state, WEFT_TASK_WAITING, memory_order_relaxed);
        int v = WEFT__PARK_RUNNING;
        /* acq_rel: release publishes the saved context to the waker that
         * moves PARKED -> RUNNING and enqueues t; acquire (on failure too)
         * pairs with the waker's CAS that left the permit, so what it
         * wrote before waking is visible when t resumes. */
        if (atomic_compare_exchange_strong_explicit(&t->park, &v, WEFT__PARK_PARKED,
                                                    memory_order_acq_rel,
                                                    memory_order_acquire))
            return false;  /* asleep; a waker owns it now */
        WEFT__ASSERT(v == WEFT__PARK_WOKEN);  /* a permit arrived */
    }
    /* Not asleep: consume a permit if there is one.  No waker changes
     * WOKEN, and one that comes after this store leaves a new permit. */
    atomic_store_explicit(&t->park, WEFT__PARK_RUNNING, memory_order_relaxed);
    return true;
}

/* May suspend the coroutine.  Puts the caller at the tail of its queue. */
void weft__yield_now(void)
{
    weft__worker *w = weft__cur_worker();
    leave(w, w->current, WEFT__AFTER_YIELD);
}

/* Coroutine only.  Ends the calling task: whoever runs next frees its stack. */
void weft__task_exit(void)
{
    weft__worker *w = weft__cur_worker();
    leave(w, w->current, WEFT__AFTER_EXIT);
    __builtin_unreachable();
}

/* ------------------------------------------------------------------ */
/* Switching                                                           */
/* ------------------------------------------------------------------ */

/* Runs on the next context of w, after the previous task's switch out:
 * t finished.  Releases what it held. */
static void finish(weft__worker *w, weft_task *t)
{
    weft__fiber_destroy(t);
    weft__stack_put(w, t->stack);
    /* release/relaxed atomics: weft_dump reads these from other threads. */
    __atomic_store_n(&t->stack, NULL, __ATOMIC_RELEASE);
    weft__task_done(t);
}

/* Any thread (a worker after a coroutine's exit, or a blocking-pool thread
 * after its function returned, or whoever drops a queued blocking task):
 * reports t finished and releases the run reference. */
void weft__task_done(weft_task *t)
{
    weft__runtime *rt = t->rt;
    /* acquire: pairs with the release of weft_detach.  A detached task (only
     * our reference left, no group) has no handle, hence no joiner and no
     * weft_cancel to answer: it finishes without an atomic
     * read-modify-write. */
    bool detached = !t->group && atomic_load_explicit(&t->refs, memory_order_acquire) == 1;
    /* release: pairs with the acquire in weft_task_done.  Before CF_DONE: a
     * weft_cancel that sees CF_DONE (-ESRCH) also sees weft_task_done. */
    atomic_store_explicit(&t->state, WEFT_TASK_DONE, memory_order_release);
    if (!detached) {
        /* A weft_cancel that returned 0 set CF_CANCEL before our CF_DONE
         * (acq_rel pairs with its fetch_or); other cancels (groups,
         * shutdown) only set the flag. */
        bool cf = atomic_fetch_or_explicit(&t->cflags, WEFT__CF_DONE, memory_order_acq_rel) &
                  WEFT__CF_CANCEL;
        t->finished_cancelled = cf || atomic_load_explicit(&t->cancelled, memory_order_relaxed);
    }
    bool is_main = t->is_main;
    if (t->group)
        weft__group_task_done(t);
    if (detached) {
        weft__task_dealloc(t);
    } else {
        /* seq_cst: publishes the result to the joiner and pairs with the
         * load in join_commit (task.c). */
        uintptr_t j = atomic_exchange_explicit(&t->join_state, WEFT__JOIN_DONE,
                                               memory_order_seq_cst);
        if (j > WEFT__JOIN_DONE) {
            weft_task *joiner = (weft_task *)j;
            weft__wake_lifo(joiner);
            weft__task_release(joiner);  /* the reference the joiner lent us */
        }
        weft__task_release(t);  /* the reference of the running task */
    }
    if (is_main || atomic_load_explicit(&rt->shutdown, memory_order_acquire)) {
        pthread_mutex_lock(&rt->done_mu);
        if (is_main)
            rt->main_done = true;
        pthread_cond_broadcast(&rt->done_cv);
        pthread_mutex_unlock(&rt->done_mu);
    }
}

/* Owner worker only, on the context that follows a switch (a task's or the
 * scheduler's): carries out what the task that switched out asked for, now
 * that its context is saved.  Only from here on may another worker run it. */
void weft__after_switch(weft__worker *w)
{
    weft_task *p = w->prev;
    if (!p)
        return;
    w->prev = NULL;
    switch (p->after) {
    case WEFT__AFTER_YIELD:
        atomic_store_explicit(&p->state, WEFT_TASK_READY, memory_order_relaxed);
        weft__runq_put(w, p);
        break;
    case WEFT__AFTER_PARK:
        if (park_commit(w, p))
            weft__ready(p, true);  /* no sleep after all: run it next */
        break;
    case WEFT__AFTER_EXIT:
        finish(w, p);
        break;
    }
}

__attribute__((noinline, cold)) static void debug_publish(weft__worker *w, weft_task *t)
{
    weft__spin_lock(&w->dbg_lock);
    if (t) {
        w->dbg_id = atomic_load_explicit(&t->id, memory_order_relaxed);
        snprintf(w->dbg_name, sizeof w->dbg_name, "%s", t->name);
        w->dbg_warned = false;
    } else {
        w->dbg_id = 0;
    }
    weft__spin_unlock(&w->dbg_lock);
}

/* WEFT_TRACE hooks (trace.c); each costs one branch when tracing is off. */
__attribute__((noinline, cold)) static void trace_run_begin(weft__worker *w, weft_task *t)
{
    w->trace_start = weft_now();
    if (t->trace_flow) {
        weft__tev *e = weft__trace_slot(w->trace);
        e->kind = WEFT__TEV_FLOW_F;
        e->ts = w->trace_start;
        e->id = t->trace_flow;
        t->trace_flow = 0;
    }
}

__attribute__((noinline, cold)) static void trace_run_end(weft__worker *w, weft_task *t)
{
    weft__tev *e = weft__trace_slot(w->trace);
    e->kind = WEFT__TEV_RUN;
    e->ts = w->trace_start;
    e->dur = weft_now() - w->trace_start;
    e->id = atomic_load_explicit(&t->id, memory_order_relaxed);
    memcpy(e->name, t->name, sizeof e->name - 1);
    e->name[sizeof e->name - 1] = '\0';
}

/* Owner worker only.  Makes t the current task of w, giving it a stack on
 * its first run.  false when no stack can be had (t then waits in the
 * stack pool's line, stack.c, and is queued again when one is).  hooked: w->hooks may be set (debug mode, tracing); leave()
 * passes false when it has seen them clear, so the hot path tests them once
 * per switch, not twice. */
static inline __attribute__((always_inline)) bool prepare_as(weft__worker *w, weft_task *t,
                                                             bool hooked)
{
    if (WEFT__UNLIKELY(!t->stack)) {
        weft__stack *s = weft__stack_get(w, t);
        if (!s)
            return false;  /* stack.c said why; t waits there for a stack */
        /* release: the stack's descriptor (stack.c) is visible to weft_dump,
         * which loads t->stack with acquire on another thread. */
        __atomic_store_n(&t->stack, s, __ATOMIC_RELEASE);
        /* relaxed atomic store: weft_dump may read sp from another thread. */
        __atomic_store_n(&t->sp, weft__ctx_make(s->lo + s->size, weft__task_entry, t),
                         __ATOMIC_RELAXED);
        weft__fiber_create(t);
    }
    w->current = t;
    atomic_store_explicit(&t->state, WEFT_TASK_RUNNING, memory_order_relaxed);
    atomic_store_explicit(&t->last_worker, w->id, memory_order_relaxed);
    /* relaxed: owner-written progress (sysmon, runnext_backoff, stats);
     * one more run, scheduler passes back to zero. */
    atomic_store_explicit(&w->tick,
                          (atomic_load_explicit(&w->tick, memory_order_relaxed) | 0xffff) + 1,
                          memory_order_relaxed);
    if (hooked && WEFT__UNLIKELY(w->hooks)) {
        if (w->hooks & WEFT__HOOK_DEBUG)
            debug_publish(w, t);
        if (WEFT__TRACING(w))
            trace_run_begin(w, t);
    }
    return true;
}

/* Owner worker only.  prepare_as for the scheduler loop. */
static bool prepare(weft__worker *w, weft_task *t) { return prepare_as(w, t, true); }

/* Owner worker only.  Fires w's own due timers. */
static void run_timers(weft__worker *w)
{
    if (weft__timers_next(&w->timers) == INT64_MAX)
        return;
    int64_t now = weft_now();
    if (weft__timers_next(&w->timers) <= now)
        weft__timers_run(w, w, now);
}

/* Owner worker only.  The next task from w's own queues (timers, the
 * periodic look at the injection queue, runnext within its bound, the ring),
 * or NULL. */
static weft_task *local_next(weft__worker *w)
{
    if (WEFT__UNLIKELY(weft__excess(w)))
        return NULL;  /* to the scheduler loop, which hands our queue off */
    w->ticks++;
    run_timers(w);
    weft_task *t;
    if (WEFT__UNLIKELY(w->spread_due))
        weft__spread_check(w);
    /* A replayable run (seed.c) delivers what other threads queue where
     * its seed says, never on this cadence. */
    if (w->ticks % WEFT__INJECT_EVERY == 0 && !w->det) {
        /* Descriptors ready while this worker was busy: their coroutines
         * join the queues below (the worker sees its poller only when it
         * parks otherwise). */
        weft__poll_now(w);
        if ((t = weft__inject_pop(w, 1)))
            return t;
        if ((t = help_blocked(w)))
            return t;
    }
    if (WEFT__UNLIKELY(w->seeded))
        return weft__seed_next(w);  /* any ready task may run next */
    if ((t = weft__runnext_take(w))) {
        if (w->lifo_streak < WEFT__LIFO_MAX) {
            w->lifo_streak++;
            return t;
        }
        weft__runq_put(w, t);  /* fairness: to the back of the line */
    }
    w->lifo_streak = 0;
    return weft__runq_get(w);
}

/* May suspend the coroutine (coroutine only).  Switches t out with the
 * given after-action: straight to the next local task when there is one (one
 * switch, not two), else to the scheduler.  Returns when t is resumed,
 * possibly on another worker. */
static inline __attribute__((always_inline)) void leave_as(weft__worker *w, weft_task *t,
                                                           int after, bool hooked)
{
    if (hooked && WEFT__TRACING(w))
        trace_run_end(w, t);
    t->after = after;
    w->prev = t;
    weft_task *next = local_next(w);
    if (next && !prepare_as(w, next, hooked))
        next = NULL;
    if (!next)
        w->current = NULL;
    bool dying = after == WEFT__AFTER_EXIT;
    weft__fiber_switch(w, t, dying, next);
    weft__ctx_switch(&t->sp, next ? next->sp : w->sched_sp);
    /* Resumed: the worker may be another one now; fetch it afresh. */
    w = weft__cur_worker();
    weft__fiber_landed(w, t);
    weft__after_switch(w);
}

/* Two copies of the switch-out: the hooks (debug mode, tracing) are tested
 * once here, and the common copy has no hook test left in it. */
static void leave(weft__worker *w, weft_task *t, int after)
{
    if (WEFT__UNLIKELY(w->hooks))
        leave_as(w, t, after, true);
    else
        leave_as(w, t, after, false);
}

/* Owner worker only.  Takes work from workers that sysmon flagged blocked:
 * their due timers and their runnext.  (Their descriptors are in the shared
 * poller, which a blocked worker never holds.) */
static weft_task *help_blocked(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    if (!atomic_load_explicit(&rt->any_blocked, memory_order_relaxed))
        return NULL;
    int64_t now = weft_now();
    weft_task *t = NULL;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *v = rt->workers[i];
        if (v == w || !atomic_load_explicit(&v->blocked, memory_order_acquire))
            continue;
        if (weft__timers_next(&v->timers) <= now)
            weft__timers_run(w, v, now);
        if (!t)
            weft__runq_steal(w, v, true, &t);
    }
    return t;
}

/* Owner worker only.  Spins briefly while victim runs, so a task it has just
 * woken into runnext can run there (Go's 3 us back-off). */
static void runnext_backoff(weft__worker *victim)
{
    uint64_t tick = atomic_load_explicit(&victim->tick, memory_order_relaxed);
    for (int i = 0; i < 200; i++) {
        weft__cpu_relax();
        if (atomic_load_explicit(&victim->tick, memory_order_relaxed) != tick)
            return;
    }
}

/* Owner worker only.  Steal protocol (essay, 3). */
static weft_task *steal_work(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    if (rt->nworkers < 2)
        return NULL;
    /* relaxed: excess workers are skipped as victims (their queues go to
     * the injection queue, or to help_blocked below when they are stuck:
     * the essay, 11); a stale limit costs one look too many or too few. */
    unsigned active = atomic_load_explicit(&rt->active, memory_order_relaxed);
    if (!w->searching) {
        unsigned idle = atomic_load_explicit(&rt->n_idle, memory_order_relaxed);
        unsigned busy = active > idle ? active - idle : 0;
        if (2 * atomic_load_explicit(&rt->n_searching, memory_order_relaxed) >= busy)
            return NULL;
        w->searching = true;
        atomic_fetch_add_explicit(&rt->n_searching, 1, memory_order_seq_cst);
    }
    /* No poll of the descriptors here: if nothing is stolen, the park
     * below is that poll (the driver's epoll_wait returns at once with what
     * is ready), and a zero-timeout poll on every idle moment was most of
     * an echo server's epoll calls (docs/scheduler.md, section 13).
     * Busy workers poll every WEFT__INJECT_EVERY schedules when nobody
     * drives. */
    /* Seeded runs visit the victims from a drawn one on (seed.c, 3). */
    unsigned nv = rt->nworkers - 1;
    unsigned off = WEFT__UNLIKELY(w->seeded) ? weft__rng_below(&w->rng, nv) : 0;
    for (int round = 0; round < WEFT__STEAL_ROUNDS; round++) {
        bool last = round == WEFT__STEAL_ROUNDS - 1;
        for (unsigned k = 0; k < nv; k++) {
            unsigned kk = k + off < nv ? k + off : k + off - nv;
            weft__worker *v = rt->workers[w->victims[kk]];
            if ((unsigned)v->id >= active)
                continue;
            weft_task *t = NULL;
            bool runnext = last || atomic_load_explicit(&v->blocked, memory_order_relaxed);
            if (runnext && !atomic_load_explicit(&v->blocked, memory_order_relaxed) &&
                atomic_load_explicit(&v->running, memory_order_relaxed) &&
                atomic_load_explicit(&v->q.runnext, memory_order_relaxed))
                runnext_backoff(v);
            WEFT__COUNT(w, steal_attempts, 1);
            unsigned got = weft__runq_steal(w, v, runnext, &t);
            if (got) {
                WEFT__COUNT(w, steals, got);
                if (WEFT__TRACING(w))
                    weft__trace_event(w, WEFT__TEV_STEAL, weft_now(), 0, (uint64_t)v->id, (int)got);
                return t;
            }
        }
        weft_task *t = weft__inject_pop(w, WEFT__RUNQ_SIZE / 2);
        if (t)
            return t;
        if ((t = help_blocked(w)))
            return t;
        if ((t = weft__runq_get(w)))
            return t;  /* timers fired by help_blocked */
    }
    return NULL;
}

/* Owner worker only.  The next task to run, or NULL when the runtime stops. */
static weft_task *find_runnable(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    for (;;) {
        if (WEFT__UNLIKELY(atomic_load_explicit(&rt->stop, memory_order_acquire)))
            return NULL;
        /* relaxed: progress for sysmon (a worker searching for work is not
         * stuck in a task); the low 16 bits only, runs unchanged. */
        uint64_t tk = atomic_load_explicit(&w->tick, memory_order_relaxed);
        atomic_store_explicit(&w->tick, (tk & ~UINT64_C(0xffff)) | ((tk + 1) & 0xffff),
                              memory_order_relaxed);
        weft_task *t;
        if (WEFT__UNLIKELY(weft__excess(w))) {
            weft__excess_park(w);
            continue;
        }
        if ((t = local_next(w)))
            goto found;
        if (!w->det && (t = weft__inject_pop(w, WEFT__RUNQ_SIZE / 2)))
            goto found;
        if ((t = steal_work(w)))
            goto found;
        weft__park_worker(w);
        continue;
    found:
        weft__drop_searching(w, true);
        return t;
    }
}

/* The worker thread: the scheduler loop on the thread's own stack. */
void *weft__worker_main(void *arg)
{
    weft__worker *w = arg;
    weft__runtime *rt = w->rt;
    weft__set_cur_worker(w);
    if (rt->cfg.pin && w->cpu >= 0)
        weft__topo_pin(w->cpu);
    weft__altstack_setup(w);
    weft__fiber_thread_init(w);
    atomic_store_explicit(&w->running, 1, memory_order_relaxed);
    for (;;) {
        weft_task *t = find_runnable(w);
        if (!t)
            break;
        if (!prepare(w, t))
            continue;  /* out of stacks: t waits for one (stack.c) */
        weft__fiber_switch(w, NULL, false, t);
        weft__ctx_switch(&w->sched_sp, t->sp);
        weft__fiber_landed(w, NULL);
        weft__after_switch(w);
        if (WEFT__UNLIKELY(w->hooks & WEFT__HOOK_DEBUG))
            debug_publish(w, NULL);
    }
    atomic_store_explicit(&w->running, 0, memory_order_relaxed);
    weft__stack_cache_flush(w);
    weft__task_cache_flush(w);
    weft__altstack_teardown(w);
    weft__set_cur_worker(NULL);
    return NULL;
}
