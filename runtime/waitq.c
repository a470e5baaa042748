/* Wait queues: see waitq.h for the protocol (weft__waitq_wait is inline there). */
#include <errno.h>

#include "waitq.h"

bool weft__waiter_commit(weft_task *t, void *arg)
{
    (void)t;
    weft__waiter *w = arg;
    return !atomic_load_explicit(&w->granted, memory_order_seq_cst);
}
