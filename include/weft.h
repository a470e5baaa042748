/*
 * weft — stackful coroutines on an N:M work-stealing scheduler.
 *
 * One umbrella header.  This header, with the headers it includes and the
 * pages of docs/, is the contract: the names, signatures and meanings below
 * do not change without a note.  Calls beyond the first version of the
 * contract (modelled on asyncio's API) are marked "(extension)".
 *
 * Conventions
 *  - Calls returning int / ssize_t return >= 0 on success and a negative errno
 *    value on failure.  Calls returning a pointer return NULL and set errno.
 *  - Time is int64_t nanoseconds on the weft_now() clock (CLOCK_MONOTONIC).
 *    Deadlines are absolute; WEFT_FOREVER (-1) means none.
 *  - SUSPENSION POINT marks a call that may suspend the calling coroutine
 *    (never its worker thread).  Outside a coroutine such calls return -EPERM.
 *    A cancelled caller's suspension point returns -ECANCELED at once, even
 *    when it could complete without waiting (buffered data, a finished task,
 *    a free lock, a set event): -EPERM is checked first, and -ECANCELED
 *    before any success, data or wait (argument errors such as -EINVAL may
 *    come before -ECANCELED).
 *    The two closing calls, weft_group_free and weft_server_close, are the
 *    exception: cancellation does not skip them (a refusal would leak what
 *    they own, and an error return would say nothing was freed, against the
 *    rule that a failed call changed nothing); they close everything and
 *    return 0, and the caller hears of its cancellation at its next
 *    suspension point.  tests/test_suspend.c holds every suspension point
 *    to these rules.
 *
 * Thread-locals and migration (read this once)
 *  A coroutine may resume on a different worker thread after any suspension
 *  point.  Compilers cache the address of thread-local variables (errno's
 *  __errno_location() among them) inside a function, so an address taken
 *  before a suspension point may name ANOTHER thread's variable after it.
 *  Rules for code running in a weft coroutine:
 *   1. Do not keep a pointer to a thread-local (or errno) across a suspension
 *      point; re-read thread-locals after it, in a separate non-inlined
 *      function if the compiler could cache the address.
 *   2. weft's own calls report errors by return value, never only by errno.
 *   3. Per-coroutine state belongs in task-local storage
 *      (weft_task_local_get / weft_task_local_set), which follows the task.
 *  The runtime itself never carries a thread-local address across a switch.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

#define WEFT_US ((int64_t)1000)
#define WEFT_MS ((int64_t)1000000)
#define WEFT_SEC ((int64_t)1000000000)
#define WEFT_FOREVER ((int64_t)-1)

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

typedef void *(*weft_fn)(void *arg);

/*
 * Starts the runtime configured from the environment, runs main(arg) as the
 * first task and returns when it has returned.  Tasks still running then are
 * cancelled and awaited; every resource is released.  Returns 0 (main's value
 * in *result when result is not NULL); -EINVAL for a malformed environment
 * variable (after one line on stderr naming it) or a NULL main; -EBUSY when a
 * runtime already runs in this process; -ENOMEM / -errno when the runtime
 * cannot be set up.  May be called again after it returns.
 *
 * A task that never reaches a suspension point after cancellation keeps
 * weft_run from returning: shutdown cancels and then waits, it never kills.
 */
WEFT_API int weft_run(weft_fn main, void *arg, void **result);

typedef struct weft_config {
    unsigned workers;          /* 0: WEFT_WORKERS, else one per CPU the process may use */
    size_t   stack_size;       /* 0: WEFT_STACK_SIZE, else WEFT_DEFAULT_STACK_SIZE */
    unsigned blocking_threads; /* 0: WEFT_BLOCKING_THREADS, else the default */
    int      pin;              /* -1: WEFT_PIN, else default on; 0 off; 1 on */
    int      debug;            /* -1: WEFT_DEBUG, else off; 0 off; 1 on */
    int      clock;            /* WEFT_CLOCK_ENV (0): WEFT_CLOCK, else real; or one below */
} weft_config;
#define WEFT_CONFIG_DEFAULT ((weft_config){0, 0, 0, -1, -1, 0})
/* weft_config.clock.  The virtual clock (testing; docs/testing.md) starts at
 * a fixed instant and moves only when every task of the runtime is blocked:
 * then it jumps to the earliest deadline.  With it, weft_run returns
 * -EDEADLK (after a report of every blocked task on stderr) when every task
 * is blocked and nothing can ever wake one. */
enum { WEFT_CLOCK_ENV = 0, WEFT_CLOCK_REAL = 1, WEFT_CLOCK_VIRTUAL = 2 };

/* Default coroutine stack: 128 KiB of address space (plus a guard page);
 * only the pages a coroutine touches use memory. */
#define WEFT_DEFAULT_STACK_SIZE ((size_t)128 * 1024)
/* Limits accepted for stack_size / WEFT_STACK_SIZE. */
#define WEFT_MIN_STACK_SIZE ((size_t)16 * 1024)
#define WEFT_MAX_STACK_SIZE ((size_t)1024 * 1024 * 1024)
/* Limit accepted for workers / WEFT_WORKERS. */
#define WEFT_MAX_WORKERS 1024u

/* As weft_run, with explicit settings; cfg NULL means WEFT_CONFIG_DEFAULT.
 * Out-of-range fields return -EINVAL with one line on stderr. */
WEFT_API int      weft_run_config(const weft_config *cfg, weft_fn main, void *arg, void **result);
WEFT_API unsigned weft_workers(void);   /* worker threads of the running runtime; 0 outside */
/* Any thread.  The workers taking work now, ids 0..n-1 (0 outside a
 * runtime): weft_workers() unless the default count follows a cgroup CPU
 * quota, then the quota rounded up, changing when the quota does (Go's
 * GOMAXPROCS(0)).  Size CPU-bound parallelism by this; arrays indexed by
 * weft_worker_id() by weft_workers(). */
WEFT_API unsigned weft_workers_active(void);
WEFT_API int      weft_worker_id(void); /* 0..workers-1 on a worker thread; -1 elsewhere */
WEFT_API int64_t  weft_now(void);       /* monotonic clock, ns (the virtual one under WEFT_CLOCK=virtual) */

/* ------------------------------------------------------------------ */
/* Tasks                                                               */
/* ------------------------------------------------------------------ */

typedef struct weft_task weft_task;

/* Task states (the Observability section of the contract; a task is READY
 * when queued to run, RUNNING on a worker, WAITING at a suspension point,
 * BLOCKING in the blocking pool, DONE when finished). */
enum { WEFT_TASK_READY, WEFT_TASK_RUNNING, WEFT_TASK_WAITING, WEFT_TASK_BLOCKING, WEFT_TASK_DONE };

/*
 * Spawning: from a coroutine or from a plain thread while a runtime runs.
 * Outside a runtime: NULL with errno EPERM; out of memory: NULL, ENOMEM.
 * A spawned task holds no stack until it first runs.
 * Every handle is released exactly once: by weft_join, weft_detach,
 * weft_gather or weft_wait_for.
 */
WEFT_API weft_task  *weft_spawn(weft_fn fn, void *arg);
/* name is copied (up to 63 bytes; longer names are truncated) */
WEFT_API weft_task  *weft_spawn_named(const char *name, weft_fn fn, void *arg);

/* SUSPENSION POINT.  Waits for t and releases the handle.  0: t ran to the
 * end uncancelled; -ECANCELED: t was cancelled before it finished (its value
 * is still stored), or the caller was cancelled (then t is cancelled too and
 * awaited before the return: no orphans); -EDEADLK: t is the caller (handle
 * not released); -EINVAL: t is NULL; -EPERM: not in a coroutine. */
WEFT_API int         weft_join(weft_task *t, void **result);
/* Releases the handle; the task runs on and frees itself.  Any thread. */
WEFT_API void        weft_detach(weft_task *t);
/* Requests cancellation: the task's suspension points return -ECANCELED from
 * now on (sticky).  A task cancelled before it first runs still runs its
 * function (so it can release what its argument owns); its first suspension
 * point returns -ECANCELED.  0, -ESRCH when t already finished, -EINVAL for
 * NULL.  Idempotent.  Any thread. */
WEFT_API int         weft_cancel(weft_task *t);
WEFT_API weft_task  *weft_self(void);                /* NULL outside a coroutine */
WEFT_API const char *weft_task_name(const weft_task *t); /* NULL when unnamed */
WEFT_API bool        weft_task_done(const weft_task *t);
WEFT_API bool        weft_cancelled(void);           /* has the caller been cancelled? */
/* SUSPENSION POINT: lets the other ready tasks run; 0 or -ECANCELED. */
WEFT_API int         weft_yield(void);
/* SUSPENSION POINT: 0 after the time passed, -ECANCELED when cancelled.
 * ns <= 0 (or a deadline already past) yields once, as asyncio.sleep(0). */
WEFT_API int         weft_sleep(int64_t ns);
WEFT_API int         weft_sleep_until(int64_t deadline);

/* (extension) A number unique for the process's lifetime, never reused. */
WEFT_API uint64_t    weft_task_id(const weft_task *t);

/*
 * (extension) Task-local storage: the safe replacement for thread-locals in
 * coroutine code (see "Thread-locals and migration" above).  A key is any
 * address the caller owns (a static variable's, typically).  set stores a
 * value for the calling task, replacing any previous one (whose destructor is
 * NOT run); dtor (may be NULL) runs with the value when the task finishes.
 * set returns 0, -EPERM outside a coroutine, -EINVAL for a NULL key, -ENOMEM.
 * get returns the value, or NULL when unset or outside a coroutine.
 */
WEFT_API void *weft_task_local_get(const void *key);
WEFT_API int   weft_task_local_set(const void *key, void *value, void (*dtor)(void *));

/* ------------------------------------------------------------------ */
/* Composition                                                         */
/* ------------------------------------------------------------------ */

/* SUSPENSION POINT.  Joins every task (releasing all handles); results may be
 * NULL, else results[i] gets task i's value.  0 when every join returned 0,
 * else the first nonzero join code in index order.  When the caller is
 * cancelled, every task not yet finished is cancelled and awaited.
 * -EINVAL (nothing joined, no handle released) when tasks is NULL with n > 0
 * or an entry is NULL. */
WEFT_API int weft_gather(weft_task **tasks, size_t n, void **results);
/* SUSPENSION POINT.  weft_join with a deadline: when it passes first, t is
 * cancelled, awaited, released, and -ETIMEDOUT is returned. */
WEFT_API int weft_wait_for(weft_task *t, int64_t deadline, void **result);

/* Task groups (TaskGroup / JoinSet / as_completed).  Tasks spawned into a
 * group belong to it: the caller never joins or detaches them.
 *  weft_group_new      NULL with errno ENOMEM.
 *  weft_group_spawn    from a coroutine or a plain thread; NULL with errno
 *                      EINVAL (NULL group or fn), EPERM (no runtime), ENOMEM.
 *                      A task spawned into a cancelled group is cancelled at
 *                      birth.
 *  weft_group_next     SUSPENSION POINT.  Waits for the next member to finish
 *                      (completion order), stores its value, releases it and
 *                      returns its join code (0 or -ECANCELED); -ENOENT when
 *                      the group holds no unfinished or unreported task;
 *                      -ETIMEDOUT at the deadline.  A cancelled caller
 *                      cancels every member and waits for them, then gets
 *                      -ECANCELED (the finished ones stay for group_free).
 *  weft_group_wait     SUSPENSION POINT.  next until -ENOENT; 0 or the first
 *                      nonzero code; -ECANCELED (after draining) when the
 *                      caller is cancelled.
 *  weft_group_cancel   any thread: cancels every member.
 *  weft_group_free     SUSPENSION POINT.  Cancels what still runs, waits for
 *                      it, releases every member, frees the group; returns 0
 *                      (the members' codes are discarded), also for a
 *                      cancelled caller: a closing call is not skipped by
 *                      cancellation.  -EPERM outside a coroutine (nothing
 *                      freed), -EINVAL for NULL. */
typedef struct weft_group weft_group;

WEFT_API weft_group *weft_group_new(void);
WEFT_API weft_task  *weft_group_spawn(weft_group *g, weft_fn fn, void *arg);
WEFT_API int         weft_group_next(weft_group *g, void **result, int64_t deadline);
WEFT_API int         weft_group_wait(weft_group *g);
WEFT_API void        weft_group_cancel(weft_group *g);
WEFT_API int         weft_group_free(weft_group *g);
/* (extension) A blocking task (see below) owned by the group. */
WEFT_API weft_task  *weft_group_spawn_blocking(weft_group *g, weft_fn fn, void *arg);
/* (extension) Members not yet reported by next (running or finished). */
WEFT_API size_t      weft_group_size(weft_group *g);

/* ------------------------------------------------------------------ */
/* Blocking offload (to_thread)                                        */
/* ------------------------------------------------------------------ */

/*
 * fn runs on a thread of the runtime's blocking pool while the calling
 * coroutine's worker goes on with other coroutines.  Threads start on demand
 * up to WEFT_BLOCKING_THREADS (default 512), further calls wait in line
 * (FIFO), and a thread idle for 10 s exits.  The runtime's own blocking work
 * (name resolution, files) has a separate pool, so a flood of slow user
 * calls never starves it.
 *
 * weft_spawn_blocking returns a task like any other (joinable, gatherable,
 * cancellable, named by nobody: its name is NULL), from a coroutine or a
 * plain thread; NULL with errno EINVAL (fn NULL), EPERM (no runtime), ENOMEM,
 * or EAGAIN (no pool thread could be started).  Cancelling a blocking task
 * still in line drops it (fn never runs; its join returns -ECANCELED at
 * once); a running fn cannot be stopped: the join waits for it, stores its
 * result and returns -ECANCELED.  At shutdown, weft_run waits for every fn
 * still running and drops those in line.
 */
WEFT_API weft_task *weft_spawn_blocking(weft_fn fn, void *arg);
/* SUSPENSION POINT: weft_spawn_blocking + weft_join.  -EPERM outside a
 * coroutine, -EINVAL for NULL fn, -ECANCELED (a cancelled caller: fn does not
 * start, or, when it already runs, its result is stored once it returns),
 * -EAGAIN / -ENOMEM when it cannot be started. */
WEFT_API int        weft_to_thread(weft_fn fn, void *arg, void **result);

#include <weft/sync.h>
#include <weft/io.h>
#include <weft/observe.h>

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
