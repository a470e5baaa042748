/*
 * The injection queue: the runtime's one global queue.  It takes what a
 * worker's full ring spills (half of it plus the new task, runq.c), spawns
 * and wake-ups from plain threads and from other runtimes' workers, and
 * tasks handed back when no stack could be had.  Workers take a fair share
 * of it (one to run, the rest into their ring) every WEFT__INJECT_EVERY
 * schedules and when they run out of local work, so injected tasks are
 * never starved by a busy ring (the scheduler essay, sched.c, sections 2
 * and 4c).
 *
 * Segments, not tasks (issue 13).  The queue is a ring of WEFT__INJECT_SEGS
 * descriptors inside the runtime (rt->inject_seg), each a linked run of
 * tasks {head, tail, n} as one push brought it: an overflow's 129, a plain
 * thread's 1.  Under inject_lock only the descriptors are read and written,
 * never a task (with the two exceptions below), so the lock holder touches
 * the lock's line and a descriptor or two, not the cold first lines of the
 * tasks it hands out; the walk that puts the taken tasks into the popper's
 * ring is done after the lock is dropped.  (The list it replaces walked
 * the share's links under the lock: ~3% of the samples of 1M sleepers.)
 *
 *  - push appends one descriptor.  When all are in use it concatenates the
 *    run onto the last descriptor instead: one task touched under the lock,
 *    the previous tail, which the last pusher wrote (often this very thread:
 *    a plain thread's burst).  No allocation ever.
 *  - pop takes whole descriptors from the front while they fit its share
 *    (inject_len / active workers + 1, capped at max; at most WEFT__INJECT_TAKE
 *    of them, copied to the popper's stack).  When the next one does not
 *    fit, it takes that one whole too, unlocks, walks it keeping what its
 *    share still allows, and puts the rest back as a descriptor at the
 *    FRONT (push_back_front), so order stays FIFO but for what other
 *    workers took meanwhile.  If the ring of descriptors filled up in
 *    between, the rest is prepended to the first descriptor: the rest's
 *    tail is written under the lock (rare: 64 pushes during one walk of at
 *    most 128 tasks).
 *  The walk still loads each taken task's link, a cache miss per task
 *  (perf: nearly all of inject_pop_slow's samples, before and after); it
 *  brings in the line the task's switch-in needs anyway, and it is no
 *  longer done while every other pusher and popper waits.  It prefetches
 *  the slab neighbour PREFETCH_AHEAD slots on: a burst's records were
 *  allocated in the order they were linked, so that is usually the task as
 *  many links on, and the misses overlap instead of following each other
 *  (the distance was measured: docs/scheduler.md, section 13).
 *
 * inject_len and the wake-up protocol (essay 4c).  inject_len counts the
 * tasks owed to the queue: those in its descriptors and the rest of a split
 * that its popper has not put back yet.  Pushes add to it (seq_cst RMW,
 * under the lock) before they notify; pops subtract only what they took for
 * themselves, when they take it (a relaxed store under the lock; the lock
 * orders it with every push's RMW, so no update is lost, and a parker's
 * seq_cst load after a push's RMW in the seq_cst order cannot read it).
 * So inject_len is never below the tasks owed, and a parker that re-checks
 * it after publishing itself idle never reads 0 while a task is owed:
 *  - a task pushed before the parker's re-check: the parker sees it, or
 *    the pusher's notify sees the parker in n_idle (4c, unchanged);
 *  - the rest of a split: still counted while it is off the queue, so a
 *    parker that re-checks meanwhile sees it and does not sleep (it goes
 *    round its search again, finding the queue empty for the few
 *    microseconds of the walk); putting it back therefore adds nothing and
 *    notifies nobody: it was announced when it was pushed, and the splitter
 *    is awake and puts it back before it returns, with nothing in between
 *    that can block.  (A popper that finds len > 0 and no descriptor takes
 *    nothing and returns NULL: its caller searches on or re-checks.)
 *
 * Which operations may run at the same time (after liburcu's wfcqueue.h):
 *
 *   operation             | run by                | concurrent with
 *   ----------------------+-----------------------+----------------------------
 *   inject_push           | any thread            | everything; serialised with
 *                         |                       | pushes, pops and put-backs by
 *                         |                       | inject_lock
 *   inject_pop (fast path)| owner worker          | everything (a relaxed hint)
 *   inject_pop_slow: take | owner worker          | serialised (inject_lock)
 *   inject_pop_slow: walk | owner worker, unlocked| everything: the tasks it walks
 *                         |                       | are off the queue, its own
 *   push_back_front       | the splitting worker  | as inject_push
 *   inject_len loads      | any thread (parkers   | everything (observe.c: an
 *                         | seq_cst, else relaxed)| approximate answer)
 *
 * Lock order: inject_lock has rank INJECT (internal.h), below the group,
 * primitive, fd and timer locks (a wake-up under those may overflow a ring
 * into it); nothing is taken while it is held.
 */
#define _GNU_SOURCE
#include "internal.h"

#define SEG_MASK (WEFT__INJECT_SEGS - 1)
#define PREFETCH_AHEAD 32  /* slots: the walk's prefetch (the comment above) */

/* Any thread.  Appends a linked batch head..tail of n tasks and notifies. */
void weft__inject_push(weft__runtime *rt, weft_task *head, weft_task *tail, size_t n)
{
    WEFT__ASSERT(n >= 1);
    tail->next = NULL;
    weft__spin_lock(&rt->inject_lock);
    if (WEFT__UNLIKELY(rt->inject_nseg == WEFT__INJECT_SEGS)) {
        /* Every descriptor in use: onto the last one (its tail is the task
         * the last push wrote). */
        weft__inject_seg *s = &rt->inject_seg[(rt->inject_first + rt->inject_nseg - 1) & SEG_MASK];
        s->tail->next = head;
        s->tail = tail;
        s->n += n;
    } else {
        rt->inject_seg[(rt->inject_first + rt->inject_nseg) & SEG_MASK] =
            (weft__inject_seg){head, tail, n};
        rt->inject_nseg++;
    }
    /* seq_cst read-modify-write: with the seq_cst load of n_idle in notify
     * it pairs with a parker's increment of n_idle and its seq_cst re-check
     * of inject_len (protocol 4c): one of the two sees the other. */
    atomic_fetch_add_explicit(&rt->inject_len, n, memory_order_seq_cst);
    weft__spin_unlock(&rt->inject_lock);
    weft__notify(rt);
}

/* Owner worker only (the splitter).  Puts the rest of a split segment back
 * at the front.  Its tasks were never subtracted from inject_len, so
 * nothing is added and nobody notified (the argument is at the top). */
static void push_back_front(weft__runtime *rt, weft_task *head, weft_task *tail, size_t n)
{
    weft__spin_lock(&rt->inject_lock);
    if (WEFT__UNLIKELY(rt->inject_nseg == WEFT__INJECT_SEGS)) {
        /* Filled up during the walk: before the first descriptor's run.
         * The one task written under the lock, on this rare path. */
        weft__inject_seg *s = &rt->inject_seg[rt->inject_first];
        tail->next = s->head;
        s->head = head;
        s->n += n;
    } else {
        rt->inject_first = (rt->inject_first - 1) & SEG_MASK;
        rt->inject_seg[rt->inject_first] = (weft__inject_seg){head, tail, n};
        rt->inject_nseg++;
    }
    weft__spin_unlock(&rt->inject_lock);
}

/* Owner worker only.  weft__inject_pop's slow path (internal.h), the queue
 * not empty at a glance.  Takes a fair share of the injection queue: one
 * task to run now, the rest (at most max-1) into w's ring.  NULL when no
 * descriptor is there (empty, or all of it is a split's rest in flight). */
weft_task *weft__inject_pop_slow(weft__worker *w, unsigned max)
{
    WEFT__ASSERT(max >= 1);
    weft__runtime *rt = w->rt;
    weft__inject_seg got[WEFT__INJECT_TAKE];
    unsigned k = 0;
    size_t taken = 0;
    size_t keep_last = 0;  /* got[k-1] is split: keep this many of it; 0: whole */

    weft__spin_lock(&rt->inject_lock);
    /* relaxed: every write of inject_len is under the lock we hold. */
    size_t len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
    /* relaxed: the active limit as a hint for the share (active.c). */
    size_t share = len / atomic_load_explicit(&rt->active, memory_order_relaxed) + 1;
    if (share > max)
        share = max;
    while (rt->inject_nseg && k < WEFT__INJECT_TAKE && taken < share) {
        weft__inject_seg s = rt->inject_seg[rt->inject_first];
        rt->inject_first = (rt->inject_first + 1) & SEG_MASK;
        rt->inject_nseg--;
        got[k++] = s;
        if (s.n > share - taken) {
            keep_last = share - taken;  /* the rest goes back after the walk */
            taken = share;
            break;
        }
        taken += s.n;
    }
    /* relaxed: ordered with pushes by the lock (see the top: a split's
     * rest stays counted until it is back). */
    if (taken)
        atomic_store_explicit(&rt->inject_len, len - taken, memory_order_relaxed);
    weft__spin_unlock(&rt->inject_lock);
    if (!k)
        return NULL;
    WEFT__COUNT(w, injected, taken);

    /* Outside the lock: the tasks are ours.  Each link is read before its
     * task is put in the ring, where a thief may take it and run it. */
    weft_task *first = got[0].head;
    for (unsigned i = 0; i < k; i++) {
        bool split = i + 1 == k && keep_last;
        size_t n = split ? keep_last : got[i].n;
        weft_task *t = got[i].head;
        for (size_t j = 0; j < n; j++) {
            /* The slab neighbour (the comment at the top): a wrong guess
             * costs one useless line, and a prefetch never faults. */
            __builtin_prefetch((const char *)t + PREFETCH_AHEAD * sizeof(weft_task));
            weft_task *nx = t->next;
            if (t != first)
                weft__runq_put(w, t);
            t = nx;
        }
        if (split)
            push_back_front(rt, t, got[i].tail, got[i].n - keep_last);
    }
    return first;
}
