/*
 * The per-worker run queue: a bounded ring of WEFT__RUNQ_SIZE task pointers
 * plus one LIFO slot (runnext), after Go's runq / Tokio's local queue.
 *
 * Which operations may run at the same time on one worker's queue:
 *
 *   operation            | run by        | concurrent with
 *   ---------------------+---------------+------------------------------------
 *   runq_put (tail push) | owner only    | runq_steal (any number of thieves)
 *   runq_get (head pop)  | owner only    | runq_steal
 *   runq_steal           | any worker    | runq_put, runq_get, other steals
 *   runnext fill (store  | owner only    | runnext CAS by a thief
 *   when empty, else     |               |
 *   exchange)            |               |
 *   runnext CAS to NULL  | other workers | owner exchange and take, other
 *                        |               | thieves
 *   runnext take         | owner only    | runnext CAS by a thief (below)
 *   runq_len / _empty    | any thread    | everything (an approximate answer)
 *
 * The owner is the only writer of tail; head moves by CAS from the owner's
 * pop and from thieves.  Slots are atomics (relaxed) because a thief may read
 * a slot the owner is rewriting after another consumer advanced head: the
 * thief's CAS on head then fails and it discards what it read.
 *
 * Why a ring and not a Chase-Lev deque: both were considered.  The ring's
 * owner pop costs one CAS, the deque's pop a fence plus a rare CAS; but the
 * ring needs no resizing (bounded, overflow goes to the injection queue in
 * batches of half, which also feeds idle workers), steals a half in one CAS,
 * and keeps FIFO order for fairness, which a deque's LIFO owner pop loses.
 * The ring is not the bottleneck (docs/scheduler.md, section 13).
 *
 * Taking runnext.  The owner empties runnext at nearly every schedule and a
 * thief almost never (the last steal round, after a back-off, or a blocked
 * worker's: sched.c essay, 3 and 6).  A locked instruction a take was a
 * good share of a ping-pong's time (docs/scheduler.md, section 13, has the
 * measurements), so the owner takes it
 * with plain loads and stores, and the rare thief pays for both sides
 * with membarrier(2) (os.h), the asymmetric Dekker pair that liburcu's
 * urcu-memb flavour uses:
 *
 *   owner (weft__runnext_take)          thief (steal_runnext)
 *   1. taking = 1                        1. steal_req += 1
 *   2. compiler barrier                  2. membarrier(): every running
 *   3. steal_req == 0 ?                     thread passes a full barrier
 *        t = runnext; runnext = NULL     3. wait while taking == 1 (give
 *      else                                 up after a bounded spin)
 *        t = exchange(runnext, NULL)     4. CAS(runnext, t, NULL)
 *   4. taking = 0 (release)              5. steal_req -= 1 (release)
 *
 * The membarrier falls somewhere in the owner's program: if before the
 * owner's step 1, the owner's step 3 sees steal_req and exchanges; if
 * after, the thief's step 3 sees taking = 1 until the plain take is done
 * (and then sees runnext emptied: release/acquire on taking).  Either way
 * a plain take never overlaps the thief's CAS, so a task is taken once.
 * A thief that spins out gives up the steal (the owner, preempted inside
 * its take, will run the task itself), as does one whose membarrier
 * fails.  Where membarrier is missing or refused (os.h,
 * weft__os_membarrier_usable), or WEFT_MEMBARRIER=off, the owner exchanges
 * and thieves skip steps 1-3 and 5 (weft__worker.runnext_plain, set before
 * the workers start).  ThreadSanitizer cannot see the membarrier: it sees atomics on
 * both sides and reports no race; stress_runnext_steal checks the count.
 */
#include "internal.h"
#include "os.h"

/* Owner worker only.  Appends t at the tail; when the ring is full, moves
 * half of it plus t to the injection queue.  Returns false when it
 * overflowed (the caller may want to notify idle workers). */
bool weft__runq_put(weft__worker *w, weft_task *t)
{
    WEFT__ASSERT(weft__cur_worker() == w);  /* the owner only: tail has one writer */
    WEFT__ASSERT(t && t->rt == w->rt);
    weft__runq *q = &w->q;
    for (;;) {
        /* acquire: pairs with the release CAS in runq_get / runq_steal, so
         * the slots they read are free to reuse. */
        uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (tl - h < WEFT__RUNQ_SIZE) {
            atomic_store_explicit(&q->slots[tl % WEFT__RUNQ_SIZE], t, memory_order_relaxed);
            /* release: pairs with the acquire loads of tail in get/steal. */
            atomic_store_explicit(&q->tail, tl + 1, memory_order_release);
            return true;
        }
        /* Full: take the older half off the head and inject it with t. */
        uint32_t n = (tl - h) / 2;
        /* acq_rel: claims the slots against thieves (pairs with their CAS). */
        if (!atomic_compare_exchange_strong_explicit(&q->head, &h, h + n,
                                                     memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;  /* a thief took some: there is room now */
        /* The claimed slots are read after the claim: only the owner (this
         * call) writes slots, and a thief that read them fails its CAS.
         * So no copy of half a ring on the caller's stack, which is
         * usually a coroutine's. */
        weft_task *first = atomic_load_explicit(&q->slots[h % WEFT__RUNQ_SIZE],
                                                memory_order_relaxed);
        weft_task *prev = first;
        for (uint32_t i = 1; i < n; i++) {
            weft_task *x = atomic_load_explicit(&q->slots[(h + i) % WEFT__RUNQ_SIZE],
                                                memory_order_relaxed);
            prev->next = x;
            prev = x;
        }
        prev->next = t;
        t->next = NULL;
        weft__inject_push(w->rt, first, t, n + 1);
        return false;
    }
}

/* Owner worker only.  Pops the head of the ring (not runnext). */
weft_task *weft__runq_get(weft__worker *w)
{
    WEFT__ASSERT(weft__cur_worker() == w);
    weft__runq *q = &w->q;
    for (;;) {
        uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (h == tl)
            return NULL;
        weft_task *t = atomic_load_explicit(&q->slots[h % WEFT__RUNQ_SIZE], memory_order_relaxed);
        /* release: pairs with the acquire of head in runq_put (slot reuse). */
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1,
                                                  memory_order_release,
                                                  memory_order_relaxed)) {
            /* A hint for the next in line, while t runs: its record.  The
             * slot may be stolen and rewritten meanwhile: a relaxed read,
             * used only to prefetch. */
            if (h + 1 != tl)
                weft__prefetch_task(atomic_load_explicit(
                    &q->slots[(h + 1) % WEFT__RUNQ_SIZE], memory_order_relaxed));
            return t;
        }
    }
}

/* Any worker but the victim's owner.  Empties vq's runnext if it holds a
 * task, and returns it (or NULL).  acq_rel: pairs with the owner's fill
 * and exchange of runnext (and, after a membarrier, its plain take). */
static weft_task *cas_runnext(weft__runq *vq)
{
    weft_task *t = atomic_load_explicit(&vq->runnext, memory_order_acquire);
    while (t && !atomic_compare_exchange_weak_explicit(&vq->runnext, &t, NULL,
                                                       memory_order_acq_rel,
                                                       memory_order_acquire))
        ;
    return t;
}

/* Spins a thief waits for an owner's take in progress (a few
 * instructions, unless the owner's thread was preempted inside it). */
#define TAKE_WAIT_SPINS 1000

/* Any worker but the victim's owner, after its membarrier.  True when the
 * owner is not inside a take (any more); false when it still was after
 * TAKE_WAIT_SPINS: then it keeps its task.  acquire: pairs with the
 * release store ending the owner's take, so runnext is seen emptied. */
static bool take_done(weft__runq *vq)
{
    for (int i = 0;; i++) {
        if (!atomic_load_explicit(&vq->taking, memory_order_acquire))
            return true;
        if (i == TAKE_WAIT_SPINS)
            return false;
        weft__cpu_relax();
    }
}

/* Any worker but the victim's owner.  The thief's side of "Taking runnext"
 * (above): 1 with *out, or 0 (empty, or the owner was inside its take).
 * May block the thread (membarrier: microseconds), only when runnext holds
 * a task. */
static unsigned steal_runnext(weft__worker *victim, weft_task **out)
{
    weft__runq *vq = &victim->q;
    /* relaxed: a look; the CAS decides. */
    if (!atomic_load_explicit(&vq->runnext, memory_order_relaxed))
        return 0;
    weft_task *t = NULL;
    if (!victim->runnext_plain) {
        t = cas_runnext(vq);
    } else {
        /* relaxed: the membarrier below is the fence of this Dekker pair,
         * and the kernel orders what its caller did before it (a full
         * barrier on entry) ahead of the barriers it puts on the owner. */
        atomic_fetch_add_explicit(&vq->steal_req, 1, memory_order_relaxed);
        /* No fence, no steal (weft__os_membarrier_usable tried one). */
        if (weft__os_membarrier() == 0 && take_done(vq))
            t = cas_runnext(vq);
        /* release: pairs with the owner's acquire load of steal_req, which
         * then sees this CAS. */
        atomic_fetch_sub_explicit(&vq->steal_req, 1, memory_order_release);
    }
    if (!t)
        return 0;
    *out = t;
    return 1;
}

/* Any worker (thief != victim; thief is the calling worker).  Steals half of
 * victim's ring into thief's ring (at most what fits there: a busy worker
 * helping a blocked one may have tasks of its own) and returns one task in
 * *out.  With take_runnext, also takes the victim's LIFO slot
 * when the ring is empty (which may block the thread for microseconds:
 * steal_runnext).  Returns the number of tasks taken. */
unsigned weft__runq_steal(weft__worker *thief, weft__worker *victim, bool take_runnext,
                          weft_task **out)
{
    WEFT__ASSERT(weft__cur_worker() == thief && thief != victim);
    weft__runq *vq = &victim->q, *tq = &thief->q;
    uint32_t ttail = atomic_load_explicit(&tq->tail, memory_order_relaxed);
    uint32_t room = WEFT__RUNQ_SIZE - (ttail - atomic_load_explicit(&tq->head, memory_order_acquire));
    for (;;) {
        uint32_t h = atomic_load_explicit(&vq->head, memory_order_acquire);
        /* acquire: pairs with the release store of tail in runq_put, so the
         * slots and the tasks they point to are visible. */
        uint32_t tl = atomic_load_explicit(&vq->tail, memory_order_acquire);
        uint32_t n = tl - h;
        n -= n / 2;
        if (n == 0)
            return take_runnext ? steal_runnext(victim, out) : 0;
        if (n > WEFT__RUNQ_SIZE / 2)
            continue;  /* torn read of head and tail: retry */
        if (n > room)
            n = room;
        if (n == 0)
            return 0;
        for (uint32_t i = 0; i < n; i++) {
            weft_task *t = atomic_load_explicit(&vq->slots[(h + i) % WEFT__RUNQ_SIZE],
                                                memory_order_relaxed);
            atomic_store_explicit(&tq->slots[(ttail + i) % WEFT__RUNQ_SIZE], t,
                                  memory_order_relaxed);
        }
        /* acq_rel: claims the slots (pairs with the owner's pop and put). */
        if (atomic_compare_exchange_strong_explicit(&vq->head, &h, h + n,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            n--;
            *out = atomic_load_explicit(&tq->slots[(ttail + n) % WEFT__RUNQ_SIZE],
                                        memory_order_relaxed);
            if (n)
                /* release: publishes the copied slots to our own thieves. */
                atomic_store_explicit(&tq->tail, ttail + n, memory_order_release);
            return n + 1;
        }
    }
}

/* Any thread; approximate. */
uint32_t weft__runq_len(weft__worker *w)
{
    uint32_t h = atomic_load_explicit(&w->q.head, memory_order_acquire);
    uint32_t tl = atomic_load_explicit(&w->q.tail, memory_order_acquire);
    uint32_t n = tl - h;
    if (n > WEFT__RUNQ_SIZE)
        n = 0;
    return n + (atomic_load_explicit(&w->q.runnext, memory_order_relaxed) != NULL);
}

/* Any thread; approximate. */
bool weft__runq_empty(weft__worker *w)
{
    return weft__runq_len(w) == 0;
}
