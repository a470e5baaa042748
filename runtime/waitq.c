/* Wait queues: see waitq.h for the protocol (weft__waitq_wait is inline there). */
#include <errno.h>

#include "waitq.h"

bool weft__waiter_commit(weft_task *t, void *arg)
{
    (void)t;
    weft__waiter *w = arg;
    /* relaxed: a hint that saves a sleep (protocol 5: a grant after this
     * look leaves a permit). */
    return !atomic_load_explicit(&w->granted, memory_order_relaxed);
}
