/*
 * Shared internals of sync/: helpers every primitive uses, and the mutex
 * calls the condition variable needs.  Internal.
 */
#ifndef WEFT_SYNC_INTERNAL_H
#define WEFT_SYNC_INTERNAL_H

#include <errno.h>

#include "../runtime/waitq.h"

/* Magic numbers of live objects: a destroyed or never-initialised object
 * is rejected with -EINVAL. */
#define WEFT__MUTEX_MAGIC 0x6d757478u   /* "mutx" */
#define WEFT__SEM_MAGIC 0x73656d61u     /* "sema" */
#define WEFT__COND_MAGIC 0x636f6e64u    /* "cond" */
#define WEFT__RWLOCK_MAGIC 0x72776c6bu  /* "rwlk" */
#define WEFT__WG_MAGIC 0x77677270u      /* "wgrp" */
#define WEFT__QUEUE_MAGIC 0x71756575u   /* "queu" */
#define WEFT__EVENT_MAGIC 0x65766e74u   /* "evnt" */

/* Is the (absolute) deadline already past? */
static inline bool weft__deadline_past(int64_t deadline)
{
    return deadline != WEFT_FOREVER && deadline <= weft_now();
}

/* Common prologue of a suspension point on a sync object: 0 to go on, else
 * the code to return (-EPERM outside a coroutine, -EINVAL for a NULL or dead
 * object, -ECANCELED for a cancelled caller when cancellable). */
static inline int weft__sync_enter(weft_task **self, bool live, bool cancellable)
{
    weft_task *t = weft__cur_task();
    if (!t)
        return -EPERM;
    if (!live)
        return -EINVAL;
    if (cancellable && weft__is_cancelled(t))
        return -ECANCELED;
    *self = t;
    return 0;
}

/* mutex.c, for cond.c.  weft__mutex_lock: weft_mutex_lock with a deadline,
 * optionally deaf to cancellation (re-acquiring the mutex at the end of a
 * condition wait).  weft__mutex_live: is m an initialised, live mutex? */
int weft__mutex_lock(weft_mutex *m, int64_t deadline, bool cancellable);
bool weft__mutex_live(weft_mutex *m);

#endif
