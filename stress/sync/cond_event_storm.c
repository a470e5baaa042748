/*
 * stress_cond_event_storm: wake-up storms on conditions and events, with
 * random cancellation and timeouts.
 *
 * Condition: tokens protected by a mutex.  Producers (coroutines and a
 * plain thread) add tokens and signal or broadcast; consumers wait for a
 * token (FOREVER or a short deadline) and take one; a driver cancels
 * consumers at random and respawns them.  Invariants: every wait returns
 * with the mutex held by the caller (checked by an atomic holder flag);
 * tokens never go negative; when the producers stop, the consumers take
 * every token left (a lost signal would strand a token while consumers
 * sleep: the drain would hang, caught by the watchdog); tokens added ==
 * tokens taken.
 *
 * Event: generations.  Waiters wait on the event of the current generation
 * (some with short deadlines, some cancelled); the setter sets it, and
 * every waiter that was queued before the set must return 0 (or -ECANCELED
 * if cancelled first, -ETIMEDOUT if its deadline came first).  Waiters
 * count their wake-ups; a waiter that never wakes hangs the generation.
 */
#include "sync_stress.h"

#define CONSUMERS SS_SCALE(12, 5)
#define PRODUCERS SS_SCALE(3, 2)
#define EV_WAITERS SS_SCALE(24, 8)

typedef struct {
    weft_mutex m;
    weft_cond c;
    long tokens;               /* under m */
    _Atomic int holder;        /* 1 while someone is inside m */
    _Atomic long added, taken;
    _Atomic bool stop_producing;
    _Atomic long cancels, timeouts, waits;
} cond_t;

static void enter(cond_t *s)
{
    CHECK(atomic_exchange(&s->holder, 1) == 0, "two holders of the mutex");
}
static void leave(cond_t *s)
{
    atomic_store(&s->holder, 0);
}

static void *cond_consumer(void *arg)
{
    cond_t *s = arg;
    uint64_t rng = rng_seed();
    for (;;) {
        if (weft_mutex_lock(&s->m) != 0)
            return NULL;  /* cancelled: not acquired */
        enter(s);
        int rc = 0;
        while (s->tokens == 0) {
            leave(s);
            int64_t dl = rng_below(&rng, 4) ? WEFT_FOREVER : weft_now() + (int64_t)rng_below(&rng, 100) * WEFT_US;
            rc = weft_cond_wait(&s->c, &s->m, dl);
            enter(s);  /* the mutex is ours again, whatever rc */
            atomic_fetch_add(&s->waits, 1);
            if (rc == -ETIMEDOUT) {
                atomic_fetch_add(&s->timeouts, 1);
                rc = 0;
                continue;
            }
            if (rc != 0)
                break;
        }
        if (rc == 0) {
            CHECK(s->tokens > 0, "no token");
            s->tokens--;
            atomic_fetch_add(&s->taken, 1);
            ss_progress();
        } else {
            CHECK(rc == -ECANCELED, "cond_wait: unexpected %d", rc);
            atomic_fetch_add(&s->cancels, 1);
        }
        leave(s);
        weft_mutex_unlock(&s->m);
        if (rc)
            return NULL;
    }
}

static void add_tokens(cond_t *s, int n, bool broadcast)
{
    s->tokens += n;
    atomic_fetch_add(&s->added, n);
    if (broadcast)
        weft_cond_broadcast(&s->c);
    else
        for (int i = 0; i < n; i++)
            weft_cond_signal(&s->c);
}

static void *cond_producer(void *arg)
{
    cond_t *s = arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&s->stop_producing)) {
        weft_mutex_lock(&s->m);
        enter(s);
        add_tokens(s, 1 + (int)rng_below(&rng, 3), rng_below(&rng, 4) == 0);
        leave(s);
        weft_mutex_unlock(&s->m);
        if (rng_below(&rng, 2))
            weft_sleep((int64_t)rng_below(&rng, 20) * WEFT_US);
        else
            weft_yield();
    }
    return NULL;
}

/* A plain thread: signals are allowed from anywhere; it changes the
 * predicate under the mutex, taken with trylock (it cannot wait). */
static void *cond_plain_producer(void *arg)
{
    cond_t *s = arg;
    while (!atomic_load(&s->stop_producing)) {
        if (weft_mutex_trylock(&s->m) == 0) {
            enter(s);
            add_tokens(s, 1, false);
            leave(s);
            weft_mutex_unlock(&s->m);
        }
        ss_os_sleep_ns(20 * WEFT_US);
    }
    return NULL;
}

static void cond_storm(int64_t end)
{
    cond_t s = {0};
    weft_mutex_init(&s.m);
    weft_cond_init(&s.c);
    uint64_t rng = rng_seed();
    weft_task *cons[CONSUMERS], *prod[PRODUCERS];
    for (int i = 0; i < CONSUMERS; i++)
        cons[i] = weft_spawn(cond_consumer, &s);
    for (int i = 0; i < PRODUCERS; i++)
        prod[i] = weft_spawn(cond_producer, &s);
    pthread_t plain;
    pthread_create(&plain, NULL, cond_plain_producer, &s);
    while (weft_now() < end) {
        weft_sleep((int64_t)rng_below(&rng, 300) * WEFT_US);
        int i = (int)rng_below(&rng, CONSUMERS);
        if (weft_task_done(cons[i])) {
            weft_join(cons[i], NULL);
            cons[i] = weft_spawn(cond_consumer, &s);
        } else if (rng_below(&rng, 2)) {
            weft_cancel(cons[i]);
        }
    }
    atomic_store(&s.stop_producing, true);
    weft_gather(prod, PRODUCERS, NULL);
    pthread_join(plain, NULL);
    /* No more cancellation: the consumers must drain every token (cancelled
     * ones are replaced). */
    for (;;) {
        for (int i = 0; i < CONSUMERS; i++) {
            if (weft_task_done(cons[i])) {
                weft_join(cons[i], NULL);
                cons[i] = weft_spawn(cond_consumer, &s);
            }
        }
        weft_mutex_lock(&s.m);
        long left = s.tokens;
        weft_mutex_unlock(&s.m);
        if (left == 0)
            break;
        weft_sleep(100 * WEFT_US);
    }
    CHECK(atomic_load(&s.added) == atomic_load(&s.taken), "tokens added %ld, taken %ld",
          atomic_load(&s.added), atomic_load(&s.taken));
    for (int i = 0; i < CONSUMERS; i++)
        weft_cancel(cons[i]);
    weft_gather(cons, CONSUMERS, NULL);
    CHECK(!weft_mutex_is_locked(&s.m), "mutex left locked");
    printf("stress_cond_event_storm: cond: %ld tokens, %ld waits, %ld cancelled, %ld timeouts\n",
           atomic_load(&s.taken), atomic_load(&s.waits), atomic_load(&s.cancels),
           atomic_load(&s.timeouts));
    weft_cond_destroy(&s.c);
    weft_mutex_destroy(&s.m);
}

/* ------------------------------------------------------------------ */

typedef struct {
    weft_event ev;
    _Atomic int queued;        /* waiters that are about to wait this generation */
    _Atomic long woken, cancelled, timedout;
} ev_t;

typedef struct {
    ev_t *g;
    int mode;  /* 0: FOREVER, 1: short deadline */
} ev_arg;

static void *ev_waiter(void *arg)
{
    ev_arg *a = arg;
    int64_t dl = a->mode ? weft_now() + 50 * WEFT_US : WEFT_FOREVER;
    atomic_fetch_add(&a->g->queued, 1);
    int rc = weft_event_wait(&a->g->ev, dl);
    if (rc == 0)
        atomic_fetch_add(&a->g->woken, 1);
    else if (rc == -ECANCELED)
        atomic_fetch_add(&a->g->cancelled, 1);
    else if (rc == -ETIMEDOUT) {
        CHECK(a->mode == 1, "timed out without a deadline");
        atomic_fetch_add(&a->g->timedout, 1);
    } else
        CHECK(0, "event_wait: unexpected %d", rc);
    ss_progress();
    return NULL;
}

static void plain_set(ev_t *g)
{
    weft_event_set(&g->ev);
}

static void *plain_setter(void *arg)
{
    plain_set(arg);
    return NULL;
}

static void event_storm(int64_t end)
{
    uint64_t rng = rng_seed();
    long gens = 0, woken = 0;
    ev_arg args[EV_WAITERS];
    weft_task *t[EV_WAITERS];
    while (weft_now() < end) {
        ev_t g = {0};
        weft_event_init(&g.ev);
        for (int i = 0; i < EV_WAITERS; i++) {
            args[i] = (ev_arg){&g, rng_below(&rng, 4) == 0};
            t[i] = weft_spawn(ev_waiter, &args[i]);
        }
        while (atomic_load(&g.queued) < EV_WAITERS)
            weft_yield();
        for (int i = 0; i < EV_WAITERS; i++)
            if (rng_below(&rng, 8) == 0)
                weft_cancel(t[i]);
        if (rng_below(&rng, 2)) {
            weft_event_set(&g.ev);
        } else {
            pthread_t p;
            pthread_create(&p, NULL, plain_setter, &g);
            pthread_join(p, NULL);
        }
        weft_gather(t, EV_WAITERS, NULL);
        CHECK(atomic_load(&g.woken) + atomic_load(&g.cancelled) + atomic_load(&g.timedout) ==
                  EV_WAITERS, "event generation: %ld woken + %ld cancelled + %ld timed out",
              atomic_load(&g.woken), atomic_load(&g.cancelled), atomic_load(&g.timedout));
        CHECK(weft_event_is_set(&g.ev), "event not set");
        woken += atomic_load(&g.woken);
        weft_event_destroy(&g.ev);
        gens++;
    }
    printf("stress_cond_event_storm: event: %ld generations, %ld wake-ups\n", gens, woken);
}

static void *stress_main(void *arg)
{
    (void)arg;
    int64_t mid = weft_now() + (ss_t_end - weft_now()) * 2 / 3;
    cond_storm(mid);
    event_storm(ss_t_end);
    return NULL;
}

int main(void)
{
    ss_begin("stress_cond_event_storm", 4.0);
    ss_run(stress_main, NULL, 4);
    return ss_end();
}
