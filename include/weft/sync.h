/*
 * weft sync primitives and queues (included by <weft.h>).
 *
 * Types of sync objects are complete types with reserved, aligned storage
 * (as pthread_mutex_t), so they can live in structs and on the stack while
 * their layout stays private: use the _init / _destroy calls.  Queues are
 * opaque pointers (weft_queue_new / weft_queue_free).
 *
 * Rules common to every call below:
 *  - A waiting coroutine suspends; its worker runs others.  Calls marked
 *    SUSPENSION POINT return -EPERM at once outside a coroutine (no runtime,
 *    a plain thread), and -ECANCELED at once when the caller has been
 *    cancelled, even where they could have completed at once.
 *  - Calls on a NULL, never-initialised or destroyed object return -EINVAL
 *    (bool / size_t calls return false / 0); outside a coroutine a
 *    suspension point's -EPERM comes first.
 *  - Deadlines are absolute on the weft_now() clock; WEFT_FOREVER (-1) means
 *    none.  A deadline already past still lets a call that can complete at
 *    once succeed; otherwise it returns -ETIMEDOUT without waiting.
 *  - Non-suspending calls (unlock, release, set, clear, signal, broadcast,
 *    add/done, try_*, close, size) may also come from plain threads while a
 *    runtime runs (and from anywhere when no runtime runs and nobody waits).
 *  - Waiters are served in arrival order (FIFO) unless said otherwise.
 *  - Cancellation is exact.  A waiter is woken by a grant that hands it what
 *    it waited for (a permit, an item, the mutex, a signal).  A waiter that
 *    is cancelled or times out at the moment it is granted keeps the grant
 *    and returns 0 (its caller's next suspension point reports the
 *    cancellation); a call that returns an error took and moved nothing.
 *    So no permit, item, hand-off or signal is ever lost or doubled.
 *  - A woken coroutine goes to the waker's LIFO slot (it runs next on the
 *    waker's worker, as in Go and Tokio), so a ping-pong stays on one core;
 *    the scheduler bounds such runs so the other ready tasks are not starved.
 *  - Destroying (or freeing) an object that still has waiters, or using it
 *    after, is undefined.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#ifndef WEFT_H
#error "include <weft.h>"
#endif

#ifdef __cplusplus
#define WEFT__ALIGNAS(n) alignas(n)
#else
#define WEFT__ALIGNAS(n) _Alignas(n)
#endif
#define WEFT__SYNC_STORAGE(name, words) \
    typedef struct name { WEFT__ALIGNAS(16) unsigned char opaque[(words) * 8]; } name

WEFT__SYNC_STORAGE(weft_event, 8);
WEFT__SYNC_STORAGE(weft_mutex, 8);
WEFT__SYNC_STORAGE(weft_sem, 8);
WEFT__SYNC_STORAGE(weft_cond, 8);
WEFT__SYNC_STORAGE(weft_rwlock, 8);
WEFT__SYNC_STORAGE(weft_waitgroup, 8);

/* ------------------------------------------------------------------ */
/* Mutex: asyncio.Lock / Go's sync.Mutex                               */
/* ------------------------------------------------------------------ */
/*
 * Not recursive, and without an owner (as Go's sync.Mutex): any coroutine or
 * plain thread may unlock a mutex another one locked.  Fairness follows Go:
 * a coroutine arriving while the mutex is free takes it even if a woken
 * waiter is on its way (cheap hand-overs on a hot mutex), but a waiter that
 * has waited 1 ms switches the mutex to hand-off mode, where unlock gives it
 * straight to the first waiter; so no waiter starves.
 *
 * init: 0, -EINVAL (m NULL).  Any thread.
 * lock: SUSPENSION POINT.  0 (acquired), -ECANCELED (not acquired), -EPERM,
 *       -EINVAL.  Waits as long as it takes.
 * lock_until (extension): lock with a deadline; also -ETIMEDOUT (not acquired).
 * trylock: 0, -EBUSY when held, -EINVAL.  Never suspends.  Any thread.
 * unlock: 0, -EPERM when the mutex is not locked, -EINVAL.  Any thread.
 * is_locked (extension): a snapshot; false for an invalid mutex.  Any thread.
 * destroy: the mutex must be unlocked and without waiters.
 */
WEFT_API int  weft_mutex_init(weft_mutex *m);
WEFT_API int  weft_mutex_lock(weft_mutex *m);
WEFT_API int  weft_mutex_lock_until(weft_mutex *m, int64_t deadline);
WEFT_API int  weft_mutex_trylock(weft_mutex *m);
WEFT_API int  weft_mutex_unlock(weft_mutex *m);
WEFT_API bool weft_mutex_is_locked(weft_mutex *m);
WEFT_API void weft_mutex_destroy(weft_mutex *m);

/* ------------------------------------------------------------------ */
/* Semaphore: asyncio.Semaphore / a Go buffered channel of tokens      */
/* ------------------------------------------------------------------ */
/*
 * Counting, fair: release hands its permit straight to the first waiter, so
 * a late arrival never takes a permit while others wait.
 *
 * init: value 0..INT_MAX permits; 0, -EINVAL (s NULL, value > INT_MAX).
 * acquire: SUSPENSION POINT.  0 (a permit taken), -ECANCELED (none taken),
 *       -EPERM, -EINVAL.
 * acquire_until (extension): acquire with a deadline; also -ETIMEDOUT.
 * tryacquire: 0, -EAGAIN when no permit is free, -EINVAL.  Any thread.
 * release: 0, -EOVERFLOW (the count would pass INT_MAX; nothing released),
 *       -EINVAL.  Any thread.  Releasing more than was acquired raises the
 *       count (asyncio.Semaphore, not BoundedSemaphore).
 * value (extension): free permits (>= 0) or -EINVAL.  Any thread.
 */
WEFT_API int  weft_sem_init(weft_sem *s, unsigned value);
WEFT_API int  weft_sem_acquire(weft_sem *s);
WEFT_API int  weft_sem_acquire_until(weft_sem *s, int64_t deadline);
WEFT_API int  weft_sem_tryacquire(weft_sem *s);
WEFT_API int  weft_sem_release(weft_sem *s);
WEFT_API int  weft_sem_value(weft_sem *s);
WEFT_API void weft_sem_destroy(weft_sem *s);

/* ------------------------------------------------------------------ */
/* Event: asyncio.Event / a Go channel closed to broadcast             */
/* ------------------------------------------------------------------ */
/*
 * init: 0, -EINVAL.  set: wakes every waiter, stays set until clear; 0,
 * -EINVAL.  clear: 0, -EINVAL.  is_set: false for an invalid event.  set,
 * clear and is_set: any thread.
 * wait: SUSPENSION POINT.  0 once set (at once when already set, even with
 *       a past deadline), -ETIMEDOUT at the deadline, -ECANCELED, -EPERM,
 *       -EINVAL.
 */
WEFT_API int  weft_event_init(weft_event *e);
WEFT_API int  weft_event_set(weft_event *e);      /* wakes every waiter; stays set */
WEFT_API int  weft_event_clear(weft_event *e);
WEFT_API bool weft_event_is_set(weft_event *e);
WEFT_API int  weft_event_wait(weft_event *e, int64_t deadline);
WEFT_API void weft_event_destroy(weft_event *e);

/* ------------------------------------------------------------------ */
/* Condition variable: asyncio.Condition / Go's sync.Cond              */
/* ------------------------------------------------------------------ */
/*
 * Used with a weft_mutex that the waiter holds.  As everywhere, wake-ups
 * may come when the predicate no longer holds: wait in a loop.
 *
 * init: 0, -EINVAL.
 * wait: SUSPENSION POINT.  Atomically releases m and waits for a signal;
 *       m is held again on return, whatever the code:
 *         0           signalled (also when cancelled or timed out at the
 *                     moment of the signal: the signal is not lost)
 *         -ETIMEDOUT  the deadline passed (at once, without releasing m,
 *                     when it is already past)
 *         -ECANCELED  the caller was cancelled (at once, without releasing
 *                     m, when cancelled before the call)
 *         -EPERM      outside a coroutine; or m was not locked (nothing
 *                     released, nothing acquired)
 *         -EINVAL     c or m invalid (m untouched)
 *       Re-acquiring m ignores cancellation and deadline (as
 *       pthread_cond_wait): a cancelled waiter still waits for m.
 * signal: wakes the first waiter, if any; 0, -EINVAL.  Any thread; the
 *       caller need not hold m (but see the lost-wake-up rule: change the
 *       predicate under m).
 * broadcast: wakes every waiter; 0, -EINVAL.  Any thread.
 */
WEFT_API int  weft_cond_init(weft_cond *c);
WEFT_API int  weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline);
WEFT_API int  weft_cond_signal(weft_cond *c);
WEFT_API int  weft_cond_broadcast(weft_cond *c);
WEFT_API void weft_cond_destroy(weft_cond *c);

/* ------------------------------------------------------------------ */
/* Reader-writer lock (extension): Go's sync.RWMutex                   */
/* ------------------------------------------------------------------ */
/*
 * Many readers or one writer.  Strictly FIFO between readers and writers: a
 * request that finds anyone waiting queues behind them (so a writer is not
 * starved by a stream of readers, as in Go, where a waiting writer blocks
 * new readers); consecutive queued readers are let in together.  No owner:
 * unlocks may come from any coroutine or plain thread.
 *
 * init: 0, -EINVAL.
 * rdlock, wrlock: SUSPENSION POINTS.  0 (acquired), -ECANCELED (not
 *       acquired), -EPERM, -EINVAL.
 * rdlock_until, wrlock_until: with a deadline; also -ETIMEDOUT.
 * tryrdlock, trywrlock: 0, -EBUSY when it cannot be taken at once (for
 *       tryrdlock: a writer holds it or anyone waits), -EINVAL.  Any thread.
 * rdunlock: 0, -EPERM when no reader holds it, -EINVAL.  Any thread.
 * wrunlock: 0, -EPERM when no writer holds it, -EINVAL.  Any thread.
 */
WEFT_API int  weft_rwlock_init(weft_rwlock *rw);
WEFT_API int  weft_rwlock_rdlock(weft_rwlock *rw);
WEFT_API int  weft_rwlock_wrlock(weft_rwlock *rw);
WEFT_API int  weft_rwlock_rdlock_until(weft_rwlock *rw, int64_t deadline);
WEFT_API int  weft_rwlock_wrlock_until(weft_rwlock *rw, int64_t deadline);
WEFT_API int  weft_rwlock_tryrdlock(weft_rwlock *rw);
WEFT_API int  weft_rwlock_trywrlock(weft_rwlock *rw);
WEFT_API int  weft_rwlock_rdunlock(weft_rwlock *rw);
WEFT_API int  weft_rwlock_wrunlock(weft_rwlock *rw);
WEFT_API void weft_rwlock_destroy(weft_rwlock *rw);

/* ------------------------------------------------------------------ */
/* Wait group (extension): Go's sync.WaitGroup                         */
/* ------------------------------------------------------------------ */
/*
 * A counter: add(n) before starting n pieces of work, done() as each one
 * ends, wait() until the counter is zero.  Reusable once the waiters of the
 * previous round have returned.
 *
 * init: counter 0; 0, -EINVAL.
 * add: adds delta (may be negative); at zero every waiter is woken.  0;
 *       -EINVAL when the counter would go below zero (Go panics; here the
 *       counter is left unchanged) or wg is invalid; -EOVERFLOW past
 *       INT64_MAX.  Any thread.
 * done: add(wg, -1).  Any thread.
 * count (extension): the counter (>= 0) or -EINVAL.  Any thread.
 * wait: SUSPENSION POINT.  0 when the counter is (or becomes) zero, at once
 *       when it is zero even with a past deadline; -ETIMEDOUT; -ECANCELED;
 *       -EPERM; -EINVAL.
 */
WEFT_API int     weft_waitgroup_init(weft_waitgroup *wg);
WEFT_API int     weft_waitgroup_add(weft_waitgroup *wg, int64_t delta);
WEFT_API int     weft_waitgroup_done(weft_waitgroup *wg);
WEFT_API int64_t weft_waitgroup_count(weft_waitgroup *wg);
WEFT_API int     weft_waitgroup_wait(weft_waitgroup *wg, int64_t deadline);
WEFT_API void    weft_waitgroup_destroy(weft_waitgroup *wg);

/* ------------------------------------------------------------------ */
/* Queues: asyncio Queue, LifoQueue, PriorityQueue / Go channels        */
/* ------------------------------------------------------------------ */
/*
 * Items are void * (NULL allowed); the queue never looks at them.
 *
 * Kinds: FIFO; LIFO (last put, first out); PRIORITY (lowest prio first,
 * equal priorities in put order; weft_queue_put means priority 0; FIFO and
 * LIFO queues ignore prio).  capacity 0: unbounded, puts never wait.
 *
 * Hand-offs: a put that finds a getter waiting gives it the item directly;
 * a get that frees room moves the first waiting putter's item in.  Waiting
 * getters and putters are served in arrival order.
 *
 * Nothing is lost or doubled: each item taken by a successful put is
 * returned by exactly one successful get; a put or get that returns an
 * error (cancelled, timed out, closed, no memory) moved no item.
 *
 * Close: afterwards puts return -EPIPE, gets drain what is left and then
 * return -EPIPE, and every waiting getter and putter wakes (-EPIPE; a
 * waiting putter's item was not put).  Joiners are not woken by close: they
 * wait for the items still unfinished (close, then join, is the way to wait
 * for consumers to finish the work).  Close is idempotent.
 *
 * task_done / join (asyncio): each successful put adds one unfinished item;
 * task_done retires one; join waits until none is unfinished.
 *
 * new: NULL with errno EINVAL (unknown kind) or ENOMEM.  Any thread, with
 *       or without a runtime.
 * put, put_prio: SUSPENSION POINTS.  0 (the item is in, or handed to a
 *       getter), -ETIMEDOUT (full until the deadline), -EPIPE (closed, also
 *       while waiting), -ECANCELED, -ENOMEM (an unbounded queue could not
 *       grow), -EPERM, -EINVAL.
 * try_put, try_put_prio (extension): 0, -EAGAIN when full, -EPIPE, -ENOMEM,
 *       -EINVAL.  Any thread.
 * get: SUSPENSION POINT.  0 with *item set (item may be NULL to discard),
 *       -ETIMEDOUT (empty until the deadline), -EPIPE (closed and drained,
 *       also while waiting), -ECANCELED, -EPERM, -EINVAL.
 * try_get: 0 with *item, -EAGAIN when empty, -EPIPE when closed and empty,
 *       -EINVAL.  Any thread.
 * size: items stored (waiting putters' items not counted); 0 for an invalid
 *       queue.  Any thread.
 * capacity, closed (extensions): as given to new (0: unbounded); whether
 *       closed.  Any thread.
 * task_done: retires one unfinished item; extra calls are ignored.  Any
 *       thread.
 * task_done_checked (extension): task_done returning 0, -ERANGE when no
 *       item is unfinished (asyncio's ValueError), -EINVAL.  Any thread.
 * join: SUSPENSION POINT.  0 when no item is unfinished, -ECANCELED,
 *       -EPERM, -EINVAL.
 * join_until (extension): join with a deadline; also -ETIMEDOUT.
 * close: see above.  Any thread.
 * free: frees the queue (items still in it are dropped; the caller owns
 *       what they point to).  No call may be in progress or follow, with
 *       one allowance: a getter may free the queue as soon as its get has
 *       returned, even if the put or close that ended that get has not
 *       returned yet (a one-shot reply queue; free waits for it to let go).
 */
enum { WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO, WEFT_QUEUE_PRIORITY };
typedef struct weft_queue weft_queue;

WEFT_API weft_queue *weft_queue_new(int kind, size_t capacity);
WEFT_API int    weft_queue_put(weft_queue *q, void *item, int64_t deadline);
WEFT_API int    weft_queue_put_prio(weft_queue *q, void *item, int64_t prio, int64_t deadline);
WEFT_API int    weft_queue_try_put(weft_queue *q, void *item);
WEFT_API int    weft_queue_try_put_prio(weft_queue *q, void *item, int64_t prio);
WEFT_API int    weft_queue_get(weft_queue *q, void **item, int64_t deadline);
WEFT_API int    weft_queue_try_get(weft_queue *q, void **item);
WEFT_API size_t weft_queue_size(weft_queue *q);
WEFT_API size_t weft_queue_capacity(weft_queue *q);
WEFT_API bool   weft_queue_closed(weft_queue *q);
WEFT_API void   weft_queue_task_done(weft_queue *q);
WEFT_API int    weft_queue_task_done_checked(weft_queue *q);
WEFT_API int    weft_queue_join(weft_queue *q);
WEFT_API int    weft_queue_join_until(weft_queue *q, int64_t deadline);
WEFT_API void   weft_queue_close(weft_queue *q);
WEFT_API void   weft_queue_free(weft_queue *q);

#endif
