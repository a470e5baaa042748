/*
 * Per-worker timers: a hierarchical timing wheel (Tokio's time/wheel,
 * Varghese and Lauck's scheme 7).
 *
 * Time is counted in ticks of 2^16 ns (65.536 us).  A deadline is rounded
 * UP to a tick: a timer whose `when` lies in tick p's interval ((p-1)*2^16,
 * p*2^16] is due at p*2^16, so it never fires before `when` (weft_now() >=
 * when at firing) and fires at most one tick (65.536 us) after it when the
 * wheel is run at that moment.  The tick is of the order of a parked
 * worker's wake-up latency (tens of us): a finer one would buy little
 * precision for more cascades, a coarser one would show in short sleeps.
 *
 * Six levels of 64 slots: a slot of level k spans 64^k ticks, so level 0
 * covers 4.2 ms, level 5 about 52 days.  Each slot is a doubly linked list
 * through the timers themselves (no allocation), and a 64-bit mask per level
 * says which slots are occupied: insert and cancel are O(1).
 *
 * elapsed (E) is the wheel's tick: every timer due before it has fired.  A
 * timer due at tick p >= E sits at the level of the highest 6-bit group in
 * which p and E differ, in slot (p >> 6k) & 63 there.  So level 0 holds the
 * timers due in E's 64-tick block, one tick per slot, and a slot of level
 * k > 0 holds the timers due in one later 64^k-tick block: all of its
 * timers are due after anything of the levels below.  The earliest occupied
 * slot is thus the lowest set bit of the lowest non-empty level (rotated
 * from E's slot).  When E reaches the start of a level k > 0 slot, the
 * slot is cascaded: its timers are placed again relative to the new E, at
 * lower levels.  A level-0 slot fires once its tick has passed.
 *
 * Level 5's slots wrap: a slot before E's holds the next rotation (Tokio
 * does the same).  Deadlines past the end of the slot before E's own in
 * that next rotation (51 to 52 days ahead) are clamped there, so E's own
 * level-5 slot stays empty; each cascade places a timer from its real
 * deadline again, clamped anew from the new E, which lands in level 5
 * again: a clamped timer comes down the levels only once its deadline is
 * within reach, and never fires early.
 *
 * next is a lower bound of the earliest moment the wheel needs a run: the
 * exact due time of the earliest level-0 slot, or the start of the earliest
 * level k > 0 slot (a run then cascades and publishes a later next).
 *
 * Each wheel has a spinlock.  The owner adds timers for the coroutines that
 * park on it and fires its own due timers; other workers fire a blocked
 * worker's due timers (sched.c, help_blocked; essay section 6); a task
 * resumed anywhere deletes its timer from whichever wheel holds it.
 *
 * Timers fire outside the lock: under it, a run unlinks up to BATCH due
 * timers (and moves at most BUDGET timers in all, so a cascade of a crowded
 * slot spans several holds) and marks them FIRING; after it, it wakes each
 * task and then sets
 * its fired flag (release).  A task resumed meanwhile (by another waker)
 * that deletes its timer finds it FIRING and waits, briefly, for fired: the
 * task must not finish, and be freed or reused, while a firer may still
 * touch it.  So the lock is held for list operations only, and a wake (which
 * may take the injection and idle locks and write an eventfd) never holds
 * up the owner's adds or other tasks' deletes.
 */
#include <sched.h>

#include "internal.h"

#define TASK_OF(tm) ((weft_task *)((char *)(tm) - offsetof(weft_task, timer)))

#define TICK_SHIFT 16
#define LEVEL_BITS 6
#define SLOT_MASK ((uint64_t)WEFT__WHEEL_SLOTS - 1)
/* Ticks the six levels span (one rotation of level 5) and one level-5 slot. */
#define RANGE ((uint64_t)1 << (LEVEL_BITS * WEFT__WHEEL_LEVELS))
#define TOP_SLOT ((uint64_t)1 << (LEVEL_BITS * (WEFT__WHEEL_LEVELS - 1)))
/* Timers fired per lock hold (the batch is on the scheduler stack, 512
 * bytes), and timers moved (fired or cascaded) per hold: bound the hold. */
#define BATCH 64
#define BUDGET (4 * BATCH)

_Static_assert(WEFT__WHEEL_SLOTS == 1 << LEVEL_BITS, "a level's mask is one uint64_t");

/* Any thread (pure).  The tick at which a deadline is due: rounded up. */
static inline uint64_t due_tick(int64_t when)
{
    if (when <= 0)
        return 0;
    return ((uint64_t)when + ((1u << TICK_SHIFT) - 1)) >> TICK_SHIFT;
}

/* Any thread (pure).  m rotated right by n bits. */
static inline uint64_t rotr(uint64_t m, unsigned n)
{
    n &= 63;
    return n ? (m >> n) | (m << (64 - n)) : m;
}

/* Any thread (pure).  The level for a timer due at tick p >= elapsed. */
static inline unsigned level_for(uint64_t elapsed, uint64_t p)
{
    uint64_t x = (elapsed ^ p) | SLOT_MASK;
    if (x >> (LEVEL_BITS * WEFT__WHEEL_LEVELS))
        return WEFT__WHEEL_LEVELS - 1;  /* next rotation of the top level */
    return (unsigned)(63 - __builtin_clzll(x)) / LEVEL_BITS;
}

/* Any thread, before any other use. */
int weft__timers_init(weft__timers *ts)
{
    weft__spin_init(&ts->lock, WEFT__RANK_TIMERS);
    ts->n = 0;
    ts->cascading = 0;
    /* Start at the clock, so that the first timers need no cascade to
     * catch up with it (the parts tests reset it to 0). */
    ts->elapsed = (uint64_t)weft_now() >> TICK_SHIFT;  /* the tick now is in */
    for (int k = 0; k < WEFT__WHEEL_LEVELS; k++) {
        ts->occ[k] = 0;
        for (int s = 0; s < WEFT__WHEEL_SLOTS; s++)
            ts->slots[k][s] = NULL;
    }
    atomic_store_explicit(&ts->next, INT64_MAX, memory_order_relaxed);
    return 0;
}

/* Any thread, once no worker uses ts.  The timers are the tasks': nothing
 * to free. */
void weft__timers_free(weft__timers *ts)
{
    ts->n = 0;
}

/* Under the wheel lock.  Queues tm at tick p (elapsed <= p <= the clamp
 * bound of place). */
static void wheel_link(weft__timers *ts, weft__timer *tm, uint64_t p)
{
    unsigned k = level_for(ts->elapsed, p);
    unsigned s = (unsigned)(p >> (LEVEL_BITS * k)) & SLOT_MASK;
    weft__timer *head = ts->slots[k][s];
    tm->prev = NULL;
    tm->next = head;
    if (head)
        head->prev = tm;
    ts->slots[k][s] = tm;
    ts->occ[k] |= (uint64_t)1 << s;
    tm->level = (uint8_t)k;
    tm->slot = (uint8_t)s;
}

/* Under the wheel lock.  Takes tm out of its slot. */
static void wheel_unlink(weft__timers *ts, weft__timer *tm)
{
    if (tm->prev)
        tm->prev->next = tm->next;
    else if (!(ts->slots[tm->level][tm->slot] = tm->next))
        ts->occ[tm->level] &= ~((uint64_t)1 << tm->slot);
    if (tm->next)
        tm->next->prev = tm->prev;
}

/* Under the wheel lock.  Places tm relative to elapsed: at its due tick,
 * clamped into the wheel's range. */
static void place(weft__timers *ts, weft__timer *tm)
{
    uint64_t p = due_tick(tm->when);
    /* The last tick of the slot before elapsed's own in level 5's next
     * rotation. */
    uint64_t far = (ts->elapsed & ~(TOP_SLOT - 1)) + RANGE - 1;
    if (p < ts->elapsed)
        p = ts->elapsed;  /* already due: fires at the next run */
    else if (p > far)
        p = far;
    wheel_link(ts, tm, p);
}

/* Under the wheel lock.  The earliest occupied slot: its level, slot and
 * start tick (its due tick at level 0).  False when the wheel is empty. */
static bool earliest(const weft__timers *ts, unsigned *level, unsigned *slot, uint64_t *start)
{
    uint64_t e = ts->elapsed;
    for (unsigned k = 0; k < WEFT__WHEEL_LEVELS; k++) {
        uint64_t m = ts->occ[k];
        if (!m)
            continue;
        unsigned shift = LEVEL_BITS * k;
        unsigned cur = (unsigned)(e >> shift) & SLOT_MASK;
        /* Level 0 may hold E's own slot (timers due at E); above, E's slot
         * has been cascaded (or is being: collect sees to it), and level
         * 5's never holds the next rotation (place): the search starts
         * after it, and at level 5 wraps to the next rotation. */
        unsigned first = k ? cur + 1 : cur;
        unsigned j = (unsigned)__builtin_ctzll(rotr(m, first));
        *level = k;
        *slot = (first + j) & SLOT_MASK;
        *start = k ? (e & ~(((uint64_t)1 << shift) - 1)) + ((uint64_t)(j + 1) << shift) : e + j;
        return true;
    }
    return false;
}

/* Under the wheel lock.  Publishes the lower bound of the next due time.
 * relaxed: a hint; every reader re-checks under the lock (timers_run), and
 * a stale value only costs a run or a wake-up (docs/scheduler.md, 7). */
static void publish_next(weft__timers *ts)
{
    unsigned k, s;
    uint64_t start;
    int64_t next = INT64_MAX;
    if (ts->cascading)
        next = (int64_t)(ts->elapsed << TICK_SHIFT);  /* a run is under way */
    else if (earliest(ts, &k, &s, &start))
        next = start >= ((uint64_t)INT64_MAX >> TICK_SHIFT) ? INT64_MAX - 1
                                                            : (int64_t)(start << TICK_SHIFT);
    atomic_store_explicit(&ts->next, next, memory_order_relaxed);
}

/* Owner worker only (w runs the caller's scheduler).  Queues tm in w's
 * wheel.  Always 0 (no allocation). */
int weft__timer_add(weft__worker *w, weft__timer *tm, int64_t when)
{
    weft__timers *ts = &w->timers;
    tm->when = when;
    tm->wheel = w;
    /* relaxed: tm is the caller's task's, not queued anywhere: no reader
     * until the wheel's lock publishes it. */
    atomic_store_explicit(&tm->fired, false, memory_order_relaxed);
    weft__spin_lock(&ts->lock);
    place(ts, tm);
    tm->state = WEFT__TIMER_QUEUED;
    ts->n++;
    publish_next(ts);
    weft__spin_unlock(&ts->lock);
    return 0;
}

/* Any thread (the task that owns tm, after it resumed).  Removes tm from its
 * wheel if it is still queued; if a firer has taken it, waits until the
 * firer is done with the task (see the top of the file). */
void weft__timer_del(weft__timer *tm)
{
    weft__worker *w = tm->wheel;
    if (!w)
        return;
    /* acquire: pairs with the release store in timers_run, made after the
     * firer's last use of the task. */
    if (!atomic_load_explicit(&tm->fired, memory_order_acquire)) {
        weft__timers *ts = &w->timers;
        weft__spin_lock(&ts->lock);
        bool firing = tm->state == WEFT__TIMER_FIRING;
        if (tm->state == WEFT__TIMER_QUEUED) {
            wheel_unlink(ts, tm);
            tm->state = WEFT__TIMER_IDLE;
            ts->n--;
            publish_next(ts);
        }
        weft__spin_unlock(&ts->lock);
        /* A firer took it and is waking the task: a few hundred ns unless
         * its thread was preempted.  acquire: as above. */
        for (unsigned i = 0; firing && !atomic_load_explicit(&tm->fired, memory_order_acquire);
             i++) {
            if (i < WEFT__SPIN_PAUSES) {
                weft__cpu_relax();
                continue;
            }
            weft__spin_wait();
            /* The virtual clock's exact run (weft__timers_run_exact) takes
             * a tick's timers and puts back those not due yet: QUEUED
             * again, never fired. */
            weft__spin_lock(&ts->lock);
            if (tm->state == WEFT__TIMER_QUEUED) {
                wheel_unlink(ts, tm);
                tm->state = WEFT__TIMER_IDLE;
                ts->n--;
                publish_next(ts);
                firing = false;
            }
            weft__spin_unlock(&ts->lock);
        }
    }
    tm->wheel = NULL;
}

/* Under the wheel lock.  Advances the wheel towards tick t, cascading on
 * the way, and moves up to BATCH timers due by t into batch (state FIRING),
 * *nb of them; BUDGET timers moved in all.  True when it stopped on either
 * bound with work left. */
static bool collect(weft__timers *ts, uint64_t t, weft__timer **batch, unsigned *nb)
{
    unsigned work = 0;
    *nb = 0;
    for (;;) {
        if (ts->cascading) {
            /* Elapsed's own slot at that level: its timers are placed
             * again, lower (nothing is placed into it meanwhile: a timer
             * in elapsed's slot of a level belongs below it, and place
             * keeps level 5's empty). */
            unsigned k = ts->cascading - 1;
            unsigned s = (unsigned)(ts->elapsed >> (LEVEL_BITS * k)) & SLOT_MASK;
            weft__timer *tm;
            while ((tm = ts->slots[k][s])) {
                if (work == BUDGET)
                    return true;
                wheel_unlink(ts, tm);
                place(ts, tm);
                work++;
            }
            ts->cascading = 0;
        }
        unsigned k, s;
        uint64_t start;
        if (!earliest(ts, &k, &s, &start) || start > t)
            break;
        /* start >= elapsed, and no occupied slot begins before it, so the
         * wheel may stand there. */
        ts->elapsed = start;
        if (k > 0) {
            ts->cascading = k + 1;
            continue;
        }
        weft__timer *tm;
        while ((tm = ts->slots[0][s])) {
            if (*nb == BATCH || work == BUDGET)
                return true;
            /* Never early: a level-0 slot holds its own tick's timers
             * (and late-added ones at elapsed); a clamped deadline is
             * re-clamped at every cascade, so it stays at level 5 until
             * it is within reach. */
            WEFT__ASSERT(due_tick(tm->when) <= start);
            wheel_unlink(ts, tm);
            tm->state = WEFT__TIMER_FIRING;
            ts->n--;
            batch[(*nb)++] = tm;
            work++;
        }
    }
    /* Nothing occupied starts by t: the wheel may stand at t. */
    if (t > ts->elapsed)
        ts->elapsed = t;
    return false;
}

/* Scheduler stack of worker w.  Fires owner's timers due at now, waking their
 * tasks onto w's run queue (owner == w normally; a blocked owner's timers are
 * fired by another worker).  Returns how many fired. */
unsigned weft__timers_run(weft__worker *w, weft__worker *owner, int64_t now)
{
    weft__timers *ts = &owner->timers;
    /* Due at tick p means due at p << TICK_SHIFT <= now. */
    uint64_t t = now <= 0 ? 0 : (uint64_t)now >> TICK_SHIFT;
    unsigned fired = 0;
    for (;;) {
        weft__timer *batch[BATCH];
        unsigned nb;
        weft__spin_lock(&ts->lock);
        bool more = collect(ts, t, batch, &nb);
        publish_next(ts);
        weft__spin_unlock(&ts->lock);
        if (WEFT__UNLIKELY(w->seeded))
            weft__seed_shuffle(w, (void **)batch, nb);  /* seed.c, choice 2 */
        for (unsigned i = 0; i < nb; i++) {
            weft__timer *tm = batch[i];
            weft__wake(TASK_OF(tm));
            /* release: the firer is done with the task (pairs with the
             * acquires in timer_del); the last access to tm. */
            atomic_store_explicit(&tm->fired, true, memory_order_release);
        }
        fired += nb;
        if (!more)
            return fired;
    }
}

/* Under the virtual clock's quiescence (vclock.c, every worker idle): the
 * exact earliest deadline in the wheel, INT64_MAX when it is empty.  The
 * earliest occupied slot holds the earliest timer (the top of the file),
 * so one slot's list is walked. */
int64_t weft__timers_min_when(weft__timers *ts)
{
    int64_t best = INT64_MAX;
    weft__spin_lock(&ts->lock);
    unsigned k, s;
    uint64_t start;
    if (ts->cascading) {
        /* A cascade was left midway: its slot is the earliest. */
        k = ts->cascading - 1;
        s = (unsigned)(ts->elapsed >> (LEVEL_BITS * k)) & SLOT_MASK;
        for (weft__timer *tm = ts->slots[k][s]; tm; tm = tm->next)
            if (tm->when < best)
                best = tm->when;
    }
    if (earliest(ts, &k, &s, &start))
        for (weft__timer *tm = ts->slots[k][s]; tm; tm = tm->next)
            if (tm->when < best)
                best = tm->when;
    weft__spin_unlock(&ts->lock);
    return best;
}

/* Scheduler stack of worker w, under the virtual clock's quiescence
 * (vclock.c).  As weft__timers_run, but exact: fires the timers whose
 * deadline is at or before now, though now lies inside their tick; the
 * rest of that tick's timers go back on the wheel.  Seeded runs wake each
 * batch in a drawn order (seed.c, choice 2). */
unsigned weft__timers_run_exact(weft__worker *w, weft__worker *owner, int64_t now)
{
    weft__timers *ts = &owner->timers;
    uint64_t t = due_tick(now);
    weft__timer *due = NULL, *back = NULL;  /* taken off the wheel, FIRING */
    unsigned fired = 0;
    bool more;
    do {
        weft__timer *batch[BATCH];
        unsigned nb;
        weft__spin_lock(&ts->lock);
        more = collect(ts, t, batch, &nb);
        weft__spin_unlock(&ts->lock);
        for (unsigned i = 0; i < nb; i++) {
            weft__timer *tm = batch[i];
            weft__timer **list = tm->when > now ? &back : &due;
            tm->next = *list;
            *list = tm;
        }
    } while (more);
    /* The ones not due yet go back before anything is woken: a woken task
     * may run at once elsewhere and wake the owner of one of them, whose
     * timer_del must find it queued (or wait only while it is FIRING). */
    weft__spin_lock(&ts->lock);
    while (back) {
        weft__timer *tm = back;
        back = tm->next;
        place(ts, tm);  /* its tick is elapsed's: level 0 */
        tm->state = WEFT__TIMER_QUEUED;
        ts->n++;
    }
    publish_next(ts);
    weft__spin_unlock(&ts->lock);
    while (due) {
        weft__timer *batch[BATCH];
        unsigned nb = 0;
        while (due && nb < BATCH) {
            batch[nb++] = due;
            due = due->next;
        }
        if (w->seeded)
            weft__seed_shuffle(w, (void **)batch, nb);
        for (unsigned i = 0; i < nb; i++) {
            weft__timer *tm = batch[i];
            weft__wake(TASK_OF(tm));
            /* release: as in weft__timers_run. */
            atomic_store_explicit(&tm->fired, true, memory_order_release);
        }
        fired += nb;
    }
    return fired;
}
