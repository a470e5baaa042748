/* Wait queues: see waitq.h for the protocol. */
#include <errno.h>

#include "waitq.h"

bool weft__waiter_commit(weft_task *t, void *arg)
{
    (void)t;
    weft__waiter *w = arg;
    return !atomic_load_explicit(&w->granted, memory_order_seq_cst);
}

int weft__waitq_wait(weft__spin *lock, weft__waitq *q, weft__waiter *w, const char *what,
                     int64_t deadline, bool cancellable)
{
    for (;;) {
        weft__spin_unlock(lock);
        int rc = weft__park_ex(what, weft__waiter_commit, w, deadline, cancellable);
        weft__spin_lock(lock);
        if (atomic_load_explicit(&w->granted, memory_order_relaxed))
            return 0;
        if (rc != 0) {
            weft__waitq_remove(q, w);
            return rc;
        }
        /* spurious: wait on */
    }
}
