/*
 * Tasks: spawn, join, detach, cancel, sleep, yield, gather, wait_for and
 * task-local storage.
 *
 * Lifetime.  A task has two references: the handle (released by join,
 * detach, gather or wait_for) and the run (released when it finishes).  A
 * joiner lends the finisher one more reference to itself while it is
 * registered in join_state, so the finisher can wake it even if the joiner
 * was woken by something else meanwhile and went on.  Whoever drops the last
 * reference frees the task.
 *
 * join_state is 0 (no joiner), WEFT__JOIN_DONE (finished), or the joiner.
 * The finisher exchanges it to DONE and wakes whoever was there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fiber.h"
#include "internal.h"

static weft_task *self_or_null(void)
{
    return weft__cur_task();
}

/* Task ids are unique for the process's lifetime, across weft_run calls:
 * workers take blocks of 1024 from one process-wide counter. */
static _Atomic uint64_t g_next_id = 1;

/* Any thread; w is the calling worker or NULL. */
static uint64_t new_id(weft__worker *w)
{
    /* relaxed: ids need only be unique, not ordered. */
    if (w) {
        if (w->next_id == w->id_end) {
            w->next_id = atomic_fetch_add_explicit(&g_next_id, 1024, memory_order_relaxed);
            w->id_end = w->next_id + 1024;
        }
        return w->next_id++;
    }
    return atomic_fetch_add_explicit(&g_next_id, 1, memory_order_relaxed);
}

/* Any thread.  A new task holding two references (handle and run). */
weft_task *weft__task_new(weft__runtime *rt, weft__worker *w, const char *name, weft_fn fn,
                          void *arg)
{
    weft_task *t = weft__task_alloc(rt, w);
    if (!t)
        return NULL;
    /* seq odd while the slot is filled: registry walkers skip or retry. */
    uint32_t seq = weft__slot_open(t);
    /* Field by field, not memset: registry walkers may read this slot's
     * atomics concurrently (registry.c, observe.c).  Only what every task
     * dirties: the rest is clean on free (struct weft_task, internal.h). */
    t->next = NULL;
    __atomic_store_n(&t->sp, NULL, __ATOMIC_RELAXED);       /* read by weft_dump */
    __atomic_store_n(&t->stack, NULL, __ATOMIC_RELAXED);
    t->fn = fn;
    t->arg = arg;
    t->result = NULL;
    t->after = WEFT__AFTER_NONE;
    t->rt = rt;
    t->finished_cancelled = false;
    t->is_main = false;
    atomic_store_explicit(&t->wait, NULL, memory_order_relaxed);
    atomic_store_explicit(&t->wait_fd, -1, memory_order_relaxed);
    /* since: sysmon's clock (1-5 ms), no clock read on the spawn path. */
    WEFT__OBS(atomic_store_explicit(&t->since, weft__rt_clock(rt), memory_order_relaxed));
    atomic_store_explicit(&t->id, new_id(w), memory_order_relaxed);
    if (w)
        WEFT__COUNT(w, spawned, 1);
    else
        atomic_fetch_add_explicit(&rt->spawned_plain, 1, memory_order_relaxed);
    size_t i = 0;
    if (name)
        for (; name[i] && i + 1 < WEFT__NAME_MAX; i++)
            __atomic_store_n(&t->name[i], name[i], __ATOMIC_RELAXED);
    /* An unnamed task in an unnamed slot writes nothing: the name's line
     * stays clean (and shared). */
    if (i || __atomic_load_n(&t->name[0], __ATOMIC_RELAXED))
        __atomic_store_n(&t->name[i], '\0', __ATOMIC_RELAXED);
    atomic_store_explicit(&t->park, WEFT__PARK_RUNNING, memory_order_relaxed);
    atomic_store_explicit(&t->join_state, 0, memory_order_relaxed);
    atomic_store_explicit(&t->cflags, 0, memory_order_relaxed);
    atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
    atomic_store_explicit(&t->last_worker, -1, memory_order_relaxed);
    atomic_store_explicit(&t->cancelled,
                          atomic_load_explicit(&rt->shutdown, memory_order_acquire),
                          memory_order_relaxed);
    if (WEFT_CHECKS)
        weft__task_check_reset(t);
    /* release: the slot is a task from here on (pairs with the walkers). */
    atomic_store_explicit(&t->state, WEFT_TASK_READY, memory_order_release);
    weft__slot_close(t, seq);
    return t;
}

/* A plain thread: the task goes through the injection queue.  The runtime
 * is held (weft__rt_get) so that it cannot be torn down meanwhile. */
static weft_task *spawn_from_plain_thread(const char *name, weft_fn fn, void *arg)
{
    weft__runtime *rt = weft__rt_get();
    if (!rt) {
        errno = EPERM;
        return NULL;
    }
    weft_task *t = NULL;
    if (!fn)
        errno = EINVAL;
    else if (weft__fault(WEFT__FAULT_ENOMEM))  /* WEFT_FAULTS (faults.c) */
        errno = ENOMEM;
    else if (!(t = weft__task_new(rt, NULL, name, fn, arg)))
        errno = ENOMEM;
    else
        weft__inject_push(rt, t, t, 1);
    weft__rt_put();
    return t;
}

weft_task *weft_spawn_named(const char *name, weft_fn fn, void *arg)
{
    weft__worker *w = weft__cur_worker();
    if (!w)
        return spawn_from_plain_thread(name, fn, arg);
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    weft_task *t = weft__fault(WEFT__FAULT_ENOMEM) ? NULL  /* WEFT_FAULTS (faults.c) */
                                                   : weft__task_new(w->rt, w, name, fn, arg);
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    weft__ready_on(w, t, true);
    return t;
}

weft_task *weft_spawn(weft_fn fn, void *arg)
{
    return weft_spawn_named(NULL, fn, arg);
}

/* Any thread. */
void weft__task_free(weft_task *t)
{
    weft__task_dealloc(t);
}

/* Any thread.  Drops one reference. */
void weft__task_release(weft_task *t)
{
    /* acq_rel: the last dropper sees every write of the others. */
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        weft__task_free(t);
}

/* First function of every coroutine (runs on its own stack). */
void weft__task_entry(void *arg)
{
    weft_task *t = arg;
    weft__worker *w = weft__cur_worker();
    weft__fiber_landed(w, t);
    weft__after_switch(w);  /* the previous task's after-action */
    t->result = t->fn(t->arg);
    /* Task-local destructors run in the task, before it is reported done. */
    for (unsigned i = 0; i < t->nlocals; i++)
        if (t->locals[i].dtor && t->locals[i].value)
            t->locals[i].dtor(t->locals[i].value);
    weft__task_exit();
}

/* ------------------------------------------------------------------ */

void weft_detach(weft_task *t)
{
    if (t)
        weft__task_release(t);
}

/* Any thread.  Cancellation of any task: sets the sticky flag, wakes it from
 * a cancellable wait, and drops a blocking task still waiting in line. */
int weft__cancel_task(weft_task *t)
{
    /* seq_cst, as every store of cancelled (weft__is_cancelled and the pool's
     * loads, blocking.c, are seq_cst); the wake-up after it also publishes it
     * to a waiting task (sched.c, protocol 5: queued if asleep, a permit if
     * not). */
    atomic_store_explicit(&t->cancelled, true, memory_order_seq_cst);
    if (t->blocking)
        weft__pool_cancel(t);
    else
        weft__wake(t);
    return 0;
}

int weft_cancel(weft_task *t)
{
    if (!t)
        return -EINVAL;
    /* acq_rel: pairs with the fetch_or in weft__task_done; whichever comes
     * second sees the other's bit. */
    if (atomic_fetch_or_explicit(&t->cflags, WEFT__CF_CANCEL, memory_order_acq_rel) &
        WEFT__CF_DONE)
        return -ESRCH;
    return weft__cancel_task(t);
}

weft_task *weft_self(void)
{
    return self_or_null();
}

const char *weft_task_name(const weft_task *t)
{
    return t && t->name[0] ? t->name : NULL;
}

uint64_t weft_task_id(const weft_task *t)
{
    return t ? atomic_load_explicit(&((weft_task *)t)->id, memory_order_relaxed) : 0;
}

bool weft_task_done(const weft_task *t)
{
    return t && atomic_load_explicit(&t->state, memory_order_acquire) == WEFT_TASK_DONE;
}

bool weft_cancelled(void)
{
    weft_task *t = self_or_null();
    return t && atomic_load_explicit(&t->cancelled, memory_order_relaxed);
}

int weft_yield(void)
{
    weft_task *t = self_or_null();
    if (!t)
        return -EPERM;
    if (atomic_load_explicit(&t->cancelled, memory_order_relaxed))
        return -ECANCELED;
    weft__yield_now();
    return atomic_load_explicit(&t->cancelled, memory_order_relaxed) ? -ECANCELED : 0;
}

int weft_sleep_until(int64_t deadline)
{
    weft_task *t = self_or_null();
    if (!t)
        return -EPERM;
    if (weft__is_cancelled(t))
        return -ECANCELED;
    if (deadline != WEFT_FOREVER && deadline <= weft_now())
        return weft_yield();
    for (;;) {
        int rc = weft__park_ex("sleep", NULL, NULL, deadline, true);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc == -ECANCELED)
            return rc;
        /* spurious wake-up: park again */
    }
}

int weft_sleep(int64_t ns)
{
    if (ns <= 0)
        return weft_sleep_until(0);
    int64_t now = weft_now();
    /* A sleep too long to express ends never: no overflow into the past. */
    return weft_sleep_until(ns > INT64_MAX - now ? WEFT_FOREVER : now + ns);
}

/* ------------------------------------------------------------------ */
/* Join                                                                */
/* ------------------------------------------------------------------ */

/* Scheduler stack: sleep only while the target has not finished.  (The
 * seq_cst load pairs with the finisher's exchange of join_state.) */
static bool join_commit(weft_task *self, void *arg)
{
    (void)self;
    weft_task *t = arg;
    return atomic_load_explicit(&t->join_state, memory_order_seq_cst) != WEFT__JOIN_DONE;
}

/* May suspend.  Waits until t finishes, the deadline passes (-ETIMEDOUT) or,
 * when cancellable, the caller is cancelled (-ECANCELED).  -EINVAL when
 * another task is already joining t. */
static int join_wait(weft_task *self, weft_task *t, int64_t deadline, bool cancellable,
                     const char *what)
{
    if (atomic_load_explicit(&t->join_state, memory_order_acquire) == WEFT__JOIN_DONE)
        return 0;
    if (cancellable && weft__is_cancelled(self))
        return -ECANCELED;
    if (deadline != WEFT_FOREVER && deadline <= weft_now())
        return -ETIMEDOUT;
    /* Lend the finisher a reference to ourselves while registered. */
    atomic_fetch_add_explicit(&self->refs, 1, memory_order_relaxed);
    uintptr_t exp = 0;
    if (!atomic_compare_exchange_strong_explicit(&t->join_state, &exp, (uintptr_t)self,
                                                 memory_order_seq_cst, memory_order_acquire)) {
        atomic_fetch_sub_explicit(&self->refs, 1, memory_order_relaxed);
        if (exp == WEFT__JOIN_DONE)
            return 0;
        if (exp != (uintptr_t)self)
            return -EINVAL;  /* someone else joins it: a double release */
    }
    int rc = 0;
    while (atomic_load_explicit(&t->join_state, memory_order_acquire) != WEFT__JOIN_DONE) {
        rc = weft__park_ex(what, join_commit, t, deadline, cancellable);
        if (rc != 0)
            break;
    }
    /* Unregister; if the finisher already took our pointer, it releases the
     * lent reference after waking us. */
    exp = (uintptr_t)self;
    if (atomic_compare_exchange_strong_explicit(&t->join_state, &exp, 0,
                                                memory_order_seq_cst, memory_order_acquire))
        atomic_fetch_sub_explicit(&self->refs, 1, memory_order_relaxed);
    else
        rc = 0;  /* it finished: that wins over a timeout or a cancellation */
    return rc;
}

/* May suspend.  Waits for t without regard to the caller's cancellation. */
static void join_wait_all_the_way(weft_task *self, weft_task *t)
{
    while (join_wait(self, t, WEFT_FOREVER, false, "join") != 0)
        ;
}

/* Releases the handle of a finished task; returns its join code. */
static int reap(weft_task *t, void **result)
{
    if (result)
        *result = t->result;
    int code = t->finished_cancelled ? -ECANCELED : 0;
    weft__task_release(t);
    return code;
}

/* May suspend.  join with a deadline; on timeout or cancellation of the
 * caller, t is cancelled and awaited (no orphans). */
int weft__join_wait_code(weft_task *t, int64_t deadline, void **result, const char *what)
{
    weft_task *self = self_or_null();
    if (!self)
        return -EPERM;
    if (!t)
        return -EINVAL;
    if (t == self)
        return -EDEADLK;
    int rc = weft__is_cancelled(self) ? -ECANCELED : join_wait(self, t, deadline, true, what);
    if (rc == -EINVAL)
        return rc;
    if (rc != 0) {
        if (!weft_task_done(t))
            weft__cancel_task(t);
        join_wait_all_the_way(self, t);
    }
    int code = reap(t, result);
    return rc ? rc : code;
}

int weft_join(weft_task *t, void **result)
{
    weft__chaos_point();  /* WEFT_CHAOS (seed.c) */
    return weft__join_wait_code(t, WEFT_FOREVER, result, "join");
}

int weft_wait_for(weft_task *t, int64_t deadline, void **result)
{
    return weft__join_wait_code(t, deadline, result, "join");
}

int weft_gather(weft_task **tasks, size_t n, void **results)
{
    weft_task *self = self_or_null();
    if (!self)
        return -EPERM;
    /* A cancelled caller is not answered at once here: the tasks it hands
     * over are cancelled, awaited and released below (no orphans, every
     * handle released once), and then it gets -ECANCELED. */
    if (n == 0)
        return weft__is_cancelled(self) ? -ECANCELED : 0;
    if (!tasks)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!tasks[i] || tasks[i] == self)
            return tasks[i] ? -EDEADLK : -EINVAL;
    int first = 0;
    /* A caller cancelled before the call gets -ECANCELED even when every
     * task has finished (sticky, as weft_join): nothing is waited for but
     * the tasks' own wind-down. */
    bool cancelled_all = weft__is_cancelled(self);
    if (cancelled_all)
        for (size_t k = 0; k < n; k++)
            if (!weft_task_done(tasks[k]))
                weft__cancel_task(tasks[k]);
    for (size_t i = 0; i < n; i++) {
        weft_task *t = tasks[i];
        int rc = cancelled_all ? -ECANCELED : join_wait(self, t, WEFT_FOREVER, true, "gather");
        if (rc == -EINVAL) {
            rc = -ECANCELED;  /* cannot happen for valid handles */
        }
        if (rc == -ECANCELED && !cancelled_all) {
            /* The caller was cancelled: cancel everything still running
             * first, so the tasks wind down in parallel, then await each. */
            cancelled_all = true;
            for (size_t k = i; k < n; k++)
                if (!weft_task_done(tasks[k]))
                    weft__cancel_task(tasks[k]);
        }
        if (cancelled_all)
            join_wait_all_the_way(self, t);
        int code = reap(t, results ? &results[i] : NULL);
        if (cancelled_all && rc)
            code = rc;
        if (!first && code)
            first = code;
    }
    return first;
}

/* ------------------------------------------------------------------ */
/* Task-local storage                                                  */
/* ------------------------------------------------------------------ */

void *weft_task_local_get(const void *key)
{
    weft_task *t = self_or_null();
    if (!t || !key)
        return NULL;
    for (unsigned i = 0; i < t->nlocals; i++)
        if (t->locals[i].key == key)
            return t->locals[i].value;
    return NULL;
}

int weft_task_local_set(const void *key, void *value, void (*dtor)(void *))
{
    weft_task *t = self_or_null();
    if (!t)
        return -EPERM;
    if (!key)
        return -EINVAL;
    for (unsigned i = 0; i < t->nlocals; i++) {
        if (t->locals[i].key == key) {
            t->locals[i].value = value;
            t->locals[i].dtor = dtor;
            return 0;
        }
    }
    if (t->nlocals == t->caplocals) {
        unsigned cap = t->caplocals ? t->caplocals * 2 : 4;
        weft__local *l = realloc(t->locals, sizeof(*l) * cap);
        if (!l)
            return -ENOMEM;
        t->locals = l;
        t->caplocals = cap;
        t->rare = true;  /* the free scrubs the locals */
    }
    t->locals[t->nlocals++] = (weft__local){key, value, dtor};
    return 0;
}
