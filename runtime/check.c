/*
 * Checked invariants: the failure report of WEFT__ASSERT and the lock-rank
 * bookkeeping (the ranks and their order: runtime/internal.h, above
 * weft__spin).  Both exist in every build so that objects built with and
 * without WEFT_CHECKS link together; only checked builds call them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

static const char *const rank_names[WEFT__RANK_COUNT] = {
    "none", "GROUP", "COND", "PRIM", "POOL", "FD", "TIMERS", "INJECT", "IDLE", "LEAF",
};

void weft__assert_fail(const char *what, const char *file, int line, const char *func)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "weft: broken invariant: %s (%s:%d, %s)\n", what, file,
                     line, func);
    if (n > 0)
        (void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    abort();
}

/* Per thread: how many locks of each rank it holds, and the ranks held as
 * a mask (bit r).  Owner thread only. */
static __thread uint16_t held_count[WEFT__RANK_COUNT];
static __thread uint32_t held_mask;

void weft__rank_acquire(int r)
{
    if (r <= 0 || r >= WEFT__RANK_COUNT)
        weft__assert_fail("lock rank in range", __FILE__, __LINE__, __func__);
    uint32_t above = held_mask >> r;  /* rank r or higher already held */
    if (above) {
        int q = r + __builtin_ctz(above);
        char what[160];
        snprintf(what, sizeof what, "lock order: rank %s taken while rank %s is held",
                 rank_names[r], rank_names[q]);
        weft__assert_fail(what, __FILE__, __LINE__, __func__);
    }
    held_count[r]++;
    held_mask |= 1u << r;
}

void weft__rank_release(int r)
{
    if (r <= 0 || r >= WEFT__RANK_COUNT || held_count[r] == 0)
        weft__assert_fail("lock released by the thread that holds it", __FILE__, __LINE__,
                          __func__);
    if (--held_count[r] == 0)
        held_mask &= ~(1u << r);
}
