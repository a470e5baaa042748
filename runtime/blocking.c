/*
 * The blocking pool: weft_spawn_blocking / weft_to_thread (asyncio's
 * to_thread and run_in_executor, Tokio's spawn_blocking).
 *
 * A blocking task is a task like any other (joinable, gatherable, groupable,
 * cancellable, named, in the registry) whose function runs on a pool thread
 * instead of a coroutine stack; it never gets a stack.  Pool threads never
 * run coroutine code: when the function returns, the pool thread reports the
 * task done (weft__task_done), which wakes the joiner through the same
 * cross-thread path as any wake from a plain thread (the injection queue).
 *
 * Threads start on demand, one per submission that finds no idle thread, up
 * to the pool's maximum (WEFT_BLOCKING_THREADS, default 512 as Tokio's);
 * beyond it submissions wait in line, first in first out.  A thread idle for
 * WEFT__POOL_IDLE_NS (10 s, Tokio's keep-alive) exits.
 *
 * Two pools per runtime, so that the runtime's own blocking work (name
 * resolution, files: the networking layer) never starves behind a flood of
 * slow user calls - libuv's single four-thread pool, filled by slow DNS
 * lookups, is its users' long-standing complaint.  Users' calls go to
 * rt->pool; the runtime's to rt->sys_pool (at most 16 threads), which users
 * cannot reach.
 *
 * Cancellation: a task still in line is dropped (its function never runs;
 * its join returns -ECANCELED at once); a running function cannot be
 * stopped, so its join waits for it and stores its result.
 *
 * Shutdown: weft_run cancels every task; queued blocking tasks are dropped;
 * a function still running is waited for (weft_run does not return before
 * it does), then every pool thread is joined.
 *
 * Hand-off: idle threads wait on a futex word of their own (a mailbox) and
 * sit on a stack, most recently idle first (its cache is warm).  A
 * submission pops one and writes the task into its mailbox: no shared
 * condition variable, so 512 threads do not herd on one lock.  A thread that
 * finishes a call takes the head of the line, if any, before going idle.
 *
 * Operations and threads: pool_submit and pool_cancel from any thread;
 * pool threads take work; pool_free from weft_run after every task finished.
 * The line, the idle stack and the thread lists are under the pool's
 * spinlock (a few instructions each time).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "internal.h"
#include "os.h"

#define WEFT__POOL_IDLE_NS (10 * WEFT_SEC)

enum { MB_WAIT = 0, MB_JOB = 1, MB_STOP = 2 };

typedef struct pool_thread {
    struct pool_thread *next;       /* in live / dead lists */
    struct pool_thread *idle_next;  /* in the idle stack */
    pthread_t th;
    weft__pool *pool;
    bool in_idle;                   /* under pool lock */
    weft_task *job;                 /* handed over with mbox = MB_JOB */
    _Atomic uint32_t mbox;          /* futex word: MB_* */
} pool_thread;

struct weft__pool {
    weft__runtime *rt;
    weft__spin lock;
    weft_task *head, *tail;     /* tasks in line (t->next), FIFO */
    size_t queued;
    unsigned threads;           /* started and not retired */
    unsigned max;
    bool stop;
    pool_thread *idle;          /* idle threads, most recent first (warm) */
    pool_thread *live;          /* every thread not retired */
    pool_thread *_Atomic dead;  /* retired, to be joined (written under lock) */
    const char *name;
};

weft__pool *weft__pool_new(weft__runtime *rt, unsigned max, const char *name)
{
    weft__pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    weft__spin_init(&p->lock, WEFT__RANK_POOL);
    p->rt = rt;
    p->max = max;
    p->name = name;
    return p;
}

/* Under p->lock: unlinks t from the line. */
static void unlink_queued(weft__pool *p, weft_task *t)
{
    weft_task **pp = &p->head, *prev = NULL;
    while (*pp && *pp != t) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = t->next;
    if (p->tail == t)
        p->tail = prev;
    t->next = NULL;
    t->queued = false;
    p->queued--;
}

/* Under p->lock: the head of the line, or NULL. */
static weft_task *pop_queued(weft__pool *p)
{
    weft_task *t = p->head;
    if (t) {
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        t->next = NULL;
        t->queued = false;
    }
    return t;
}

/* Any thread, with no lock held: a task dropped from the line. */
static void drop(weft_task *t)
{
    t->result = NULL;
    weft__task_done(t);
}

/* Pool thread.  Waits for a job in its mailbox; NULL when told to stop or
 * idle for too long (then it has retired). */
static weft_task *wait_job(pool_thread *self)
{
    weft__pool *p = self->pool;
    struct timespec ts = {WEFT__POOL_IDLE_NS / WEFT_SEC, 0};
    bool timed = true;
    for (;;) {
        /* acquire: pairs with the release store of the handing thread. */
        uint32_t m = atomic_load_explicit(&self->mbox, memory_order_acquire);
        if (m == MB_JOB) {
            atomic_store_explicit(&self->mbox, MB_WAIT, memory_order_relaxed);
            return self->job;
        }
        if (m == MB_STOP)
            return NULL;
        long r = weft__os_wait(&self->mbox, MB_WAIT, timed ? &ts : NULL);
        if (r == -1 && errno == ETIMEDOUT) {
            weft__spin_lock(&p->lock);
            if (self->in_idle) {
                /* Nobody picked us: retire. */
                pool_thread **pp = &p->idle;
                while (*pp != self)
                    pp = &(*pp)->idle_next;
                *pp = self->idle_next;
                self->in_idle = false;
                p->threads--;
                for (pool_thread **lp = &p->live; *lp; lp = &(*lp)->next) {
                    if (*lp == self) {
                        *lp = self->next;
                        break;
                    }
                }
                self->next = atomic_load_explicit(&p->dead, memory_order_relaxed);
                atomic_store_explicit(&p->dead, self, memory_order_release);
                weft__spin_unlock(&p->lock);
                return NULL;
            }
            weft__spin_unlock(&p->lock);
            timed = false;  /* picked meanwhile: the job is on its way */
        }
    }
}

static void *pool_main(void *arg)
{
    pool_thread *self = arg;
    weft__pool *p = self->pool;
    /* The pool's threads sleep precisely: a user's 1 ms nanosleep should
     * take 1 ms, not the default 50 us of slack on top. */
    weft__os_thread_precise_timers();
    weft_task *t = self->job;  /* the job it was started for, or NULL */
    for (;;) {
        if (!t) {
            weft__spin_lock(&p->lock);
            t = pop_queued(p);
            if (!t) {
                if (p->stop) {
                    weft__spin_unlock(&p->lock);
                    return NULL;  /* pool_free joins us through p->live */
                }
                self->in_idle = true;
                self->idle_next = p->idle;
                p->idle = self;
            }
            weft__spin_unlock(&p->lock);
            if (!t && !(t = wait_job(self)))
                return NULL;
        }
        if (atomic_load_explicit(&t->cancelled, memory_order_seq_cst)) {
            drop(t);  /* cancelled while in line: its fn never starts */
            weft__vclock_release(p->rt);
            t = NULL;
            continue;
        }
        atomic_store_explicit(&t->state, WEFT_TASK_BLOCKING, memory_order_relaxed);
        int64_t start = p->rt->pool_trace ? weft_now() : 0;
        t->result = t->fn(t->arg);
        if (WEFT__UNLIKELY(p->rt->pool_trace))
            weft__trace_blocking(p->rt, t, start);
        /* A replayable run reports it done where its seed says (seed.c). */
        if (WEFT__UNLIKELY(p->rt->det))
            weft__seed_finished(p->rt, t);
        else
            weft__task_done(t);
        /* After the task's joiner is queued (vclock.c, point 1). */
        weft__vclock_release(p->rt);
        t = NULL;
    }
}

/* Joins threads that retired.  No lock held. */
static void reap_dead(weft__pool *p)
{
    weft__spin_lock(&p->lock);
    pool_thread *d = atomic_load_explicit(&p->dead, memory_order_relaxed);
    atomic_store_explicit(&p->dead, NULL, memory_order_relaxed);
    weft__spin_unlock(&p->lock);
    while (d) {
        pool_thread *n = d->next;
        pthread_join(d->th, NULL);
        free(d);
        d = n;
    }
}

/* Any thread.  Hands the blocking task t to an idle thread (the most
 * recently idle: its cache is warm), or a new thread, or puts it in line.
 * -EAGAIN when no thread can be started and none exists. */
int weft__pool_submit(weft__pool *p, weft_task *t)
{
    /* t->blocking and t->pool are set by the caller before t is visible. */
    if (WEFT__UNLIKELY(atomic_load_explicit(&p->dead, memory_order_relaxed)))
        reap_dead(p);
    /* The job holds the virtual clock until its task is queued again
     * (vclock.c); a replayable run delivers it where its seed says. */
    weft__vclock_hold(p->rt);
    weft__seed_submitted(p->rt);
    weft__spin_lock(&p->lock);
    pool_thread *th = p->idle;
    if (th) {
        p->idle = th->idle_next;
        th->in_idle = false;
        weft__spin_unlock(&p->lock);
        th->job = t;
        /* release: pairs with the acquire in wait_job. */
        atomic_store_explicit(&th->mbox, MB_JOB, memory_order_release);
        weft__os_wake(&th->mbox, 1);
        return 0;
    }
    bool start = p->threads < p->max;
    if (start) {
        p->threads++;
    } else {
        t->next = NULL;
        t->queued = true;
        if (p->tail)
            p->tail->next = t;
        else
            p->head = t;
        p->tail = t;
        p->queued++;
    }
    weft__spin_unlock(&p->lock);
    if (!start)
        return 0;

    pool_thread *pt = calloc(1, sizeof *pt);
    int e = pt ? 0 : ENOMEM;
    if (pt) {
        pt->pool = p;
        pt->job = t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 256 * 1024);
        /* The live list is written under the lock by both sides. */
        weft__spin_lock(&p->lock);
        pt->next = p->live;
        p->live = pt;
        weft__spin_unlock(&p->lock);
        e = pthread_create(&pt->th, &a, pool_main, pt);
        pthread_attr_destroy(&a);
        if (e) {
            weft__spin_lock(&p->lock);
            for (pool_thread **lp = &p->live; *lp; lp = &(*lp)->next) {
                if (*lp == pt) {
                    *lp = pt->next;
                    break;
                }
            }
            weft__spin_unlock(&p->lock);
        }
    }
    if (!e)
        return 0;
    free(pt);
    weft__spin_lock(&p->lock);
    p->threads--;
    bool alone = p->threads == 0;
    if (!alone) {
        /* Others will get to it. */
        t->next = NULL;
        t->queued = true;
        if (p->tail)
            p->tail->next = t;
        else
            p->head = t;
        p->tail = t;
        p->queued++;
    }
    weft__spin_unlock(&p->lock);
    if (alone) {
        weft__log("weft: cannot start a blocking-pool thread: %s", strerror(e));
        weft__vclock_release(p->rt);
        return -EAGAIN;  /* the caller drops t */
    }
    return 0;
}

/* Any thread.  Drops a cancelled blocking task that is still in line;
 * returns whether it did. */
bool weft__pool_cancel(weft_task *t)
{
    weft__pool *p = t->pool;
    if (!p)
        return false;
    weft__spin_lock(&p->lock);
    bool found = t->queued;
    if (found)
        unlink_queued(p, t);
    weft__spin_unlock(&p->lock);
    if (found) {
        drop(t);
        weft__vclock_release(p->rt);
    }
    return found;
}

/* weft_run at shutdown: drops everything still in line. */
void weft__pool_drop_all(weft__pool *p)
{
    if (!p)
        return;
    weft__spin_lock(&p->lock);
    weft_task *t = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    for (weft_task *x = t; x; x = x->next)
        x->queued = false;
    weft__spin_unlock(&p->lock);
    while (t) {
        weft_task *n = t->next;
        t->next = NULL;
        drop(t);
        weft__vclock_release(p->rt);
        t = n;
    }
}

/* weft_run, after every task finished: stops and joins every thread. */
void weft__pool_free(weft__pool *p)
{
    if (!p)
        return;
    weft__spin_lock(&p->lock);
    p->stop = true;
    pool_thread *live = p->live;
    p->live = NULL;
    for (pool_thread *i = p->idle; i; i = i->idle_next) {
        i->in_idle = false;
        atomic_store_explicit(&i->mbox, MB_STOP, memory_order_release);
        weft__os_wake(&i->mbox, 1);
    }
    p->idle = NULL;
    weft__spin_unlock(&p->lock);
    while (live) {
        pool_thread *n = live->next;
        pthread_join(live->th, NULL);
        free(live);
        live = n;
    }
    reap_dead(p);
    free(p);
}

size_t weft__pool_queued(weft__pool *p)
{
    weft__spin_lock(&p->lock);
    size_t n = p->queued;
    weft__spin_unlock(&p->lock);
    return n;
}

unsigned weft__pool_threads(weft__pool *p)
{
    weft__spin_lock(&p->lock);
    unsigned n = p->threads;
    weft__spin_unlock(&p->lock);
    return n;
}

/* ------------------------------------------------------------------ */
/* Public calls                                                        */
/* ------------------------------------------------------------------ */

static weft_task *spawn_blocking_in(weft__runtime *rt, weft__worker *w, weft_fn fn, void *arg,
                                    weft_group *g)
{
    weft_task *t = weft__task_new(rt, w, NULL, fn, arg);
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    t->blocking = true;
    t->rare = true;  /* the free scrubs blocking and pool */
    t->pool = rt->pool;
    if (g)
        weft__group_adopt(g, t);
    /* A task cancelled at birth (shutdown, a cancelled group) never runs.
     * seq_cst: pairs with the store in weft_group_cancel. */
    if (atomic_load_explicit(&t->cancelled, memory_order_seq_cst)) {
        drop(t);
        return t;
    }
    if (weft__pool_submit(rt->pool, t) < 0) {
        atomic_store_explicit(&t->cancelled, true, memory_order_relaxed);
        drop(t);
        if (!g) {
            weft__task_release(t);
            errno = EAGAIN;
            return NULL;
        }
    }
    return t;
}

weft_task *weft__spawn_blocking(weft_group *g, weft_fn fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    weft__worker *w = weft__cur_worker();
    if (w)
        return spawn_blocking_in(w->rt, w, fn, arg, g);
    weft__runtime *rt = weft__rt_get();
    if (!rt) {
        errno = EPERM;
        return NULL;
    }
    weft_task *t = spawn_blocking_in(rt, NULL, fn, arg, g);
    weft__rt_put();
    return t;
}

weft_task *weft_spawn_blocking(weft_fn fn, void *arg)
{
    return weft__spawn_blocking(NULL, fn, arg);
}

/* May suspend.  fn on the runtime's own pool (name resolution, files):
 * users' calls cannot starve it.  Like weft_to_thread otherwise. */
int weft__sys_to_thread(weft_fn fn, void *arg, void **result)
{
    weft__worker *w = weft__cur_worker();
    weft_task *self = w ? w->current : NULL;
    if (!self)
        return -EPERM;
    if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst))
        return -ECANCELED;
    weft_task *t = weft__task_new(w->rt, w, NULL, fn, arg);
    if (!t)
        return -ENOMEM;
    t->blocking = true;
    t->rare = true;  /* the free scrubs blocking and pool */
    t->pool = w->rt->sys_pool;
    if (weft__pool_submit(w->rt->sys_pool, t) < 0) {
        atomic_store_explicit(&t->cancelled, true, memory_order_relaxed);
        drop(t);
        weft__task_release(t);
        return -EAGAIN;
    }
    return weft__join_wait_code(t, WEFT_FOREVER, result, "to_thread");
}

int weft_to_thread(weft_fn fn, void *arg, void **result)
{
    weft_task *self = weft__cur_task();
    if (!self)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    if (atomic_load_explicit(&self->cancelled, memory_order_seq_cst))
        return -ECANCELED;
    weft_task *t = weft__spawn_blocking(NULL, fn, arg);
    if (!t)
        return -errno;
    return weft__join_wait_code(t, WEFT_FOREVER, result, "to_thread");
}
