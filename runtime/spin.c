/*
 * What a spinning waiter does once its spins are spent (weft__spin_lock,
 * and the timer wait for a firer in timer.c): it takes the holder to be
 * preempted and sleeps a microsecond (plus the kernel's timer slack), so
 * that its CPU goes to whoever is runnable there, and looks again.
 *
 * Not sched_yield, which it used to be.  On a CPU that another runnable
 * process shares (a busy build, a second service, a benchmark's hogs),
 * today's kernels (EEVDF, and CFS before it) put the yielder behind that
 * process for its whole slice: one sched_yield measured 12-17 ms on the
 * development machine under load, against about 0.1 ms for the sleep.  A
 * waiter that yielded after 64 pauses, while the holder on the other CPU
 * was simply halfway through a 33-slot refill, lost milliseconds each
 * time; the figures are in docs/scheduler.md, section 13,
 * "Oversubscription".  On an idle CPU the sleep costs tens of
 * microseconds where a yield cost one, but a holder still running after
 * WEFT__SPIN_PAUSES pauses is rare when nothing else competes.
 */
#define _GNU_SOURCE
#include <time.h>

#include "internal.h"

/* Any thread (workers, sysmon, pool threads, plain threads); may block
 * the thread for about 0.1 ms. */
void weft__spin_wait(void)
{
    struct timespec ts = {0, 1000};
    nanosleep(&ts, NULL);
}
