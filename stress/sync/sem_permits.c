/*
 * stress_sem_permits: semaphore permits are conserved under cancellation.
 *
 * A semaphore of K permits; coroutines acquire it (FOREVER or a short
 * deadline), hold it a little (yield or sleep), and release it; a plain
 * thread takes permits with tryacquire and releases them; a driver cancels
 * coroutines at random (waiting or not) and respawns them.  Each holder
 * counts itself in an atomic: never more than K inside.  A permit handed
 * to a waiter cancelled at that moment is kept by it (acquire returns 0)
 * and released; at the end, with everyone gone, the semaphore holds
 * exactly K permits again (none lost, none made up).
 */
#include "sync_stress.h"

#define TASKS SS_SCALE(32, 8)
#define PERMITS 3

typedef struct {
    weft_sem s;
    _Atomic int inside;
    _Atomic long acquired, cancelled, timedout;
    _Atomic bool stop;
} shared_t;

static void hold(shared_t *s)
{
    int n = atomic_fetch_add(&s->inside, 1) + 1;
    CHECK(n <= PERMITS, "%d holders of %d permits", n, PERMITS);
    atomic_fetch_add(&s->acquired, 1);
    ss_progress();
}

static void unhold(shared_t *s)
{
    atomic_fetch_sub(&s->inside, 1);
    CHECK(weft_sem_release(&s->s) == 0, "release failed");
}

static void *worker(void *arg)
{
    shared_t *s = arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&s->stop)) {
        int rc = rng_below(&rng, 2) ? weft_sem_acquire(&s->s)
                                    : weft_sem_acquire_until(&s->s, weft_now() + (int64_t)rng_below(&rng, 100) * WEFT_US);
        if (rc == -ETIMEDOUT) {
            atomic_fetch_add(&s->timedout, 1);
            continue;
        }
        if (rc == -ECANCELED) {
            atomic_fetch_add(&s->cancelled, 1);
            return NULL;
        }
        CHECK(rc == 0, "acquire: unexpected %d", rc);
        hold(s);
        /* Hold it across suspension points that may be cancelled: the
         * permit is released whatever they return. */
        if (rng_below(&rng, 2))
            weft_yield();
        else
            weft_sleep((int64_t)rng_below(&rng, 30) * WEFT_US);
        unhold(s);
    }
    return NULL;
}

static void *plain_worker(void *arg)
{
    shared_t *s = arg;
    while (!atomic_load(&s->stop)) {
        if (weft_sem_tryacquire(&s->s) == 0) {
            hold(s);
            sched_yield();
            unhold(s);
        }
        sched_yield();
    }
    return NULL;
}

static void *stress_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_sem_init(&s.s, PERMITS);
    uint64_t rng = rng_seed();
    weft_task *t[TASKS];
    for (int i = 0; i < TASKS; i++)
        t[i] = weft_spawn(worker, &s);
    pthread_t plain;
    pthread_create(&plain, NULL, plain_worker, &s);
    long cancels = 0;
    while (!ss_time_up()) {
        weft_sleep((int64_t)rng_below(&rng, 200) * WEFT_US);
        int i = (int)rng_below(&rng, TASKS);
        if (weft_task_done(t[i])) {
            weft_join(t[i], NULL);
            t[i] = weft_spawn(worker, &s);
        } else {
            weft_cancel(t[i]);
            cancels++;
        }
    }
    atomic_store(&s.stop, true);
    weft_gather(t, TASKS, NULL);
    pthread_join(plain, NULL);
    CHECK(atomic_load(&s.inside) == 0, "holders left: %d", atomic_load(&s.inside));
    CHECK(weft_sem_value(&s.s) == PERMITS, "permits at the end: %d, not %d",
          weft_sem_value(&s.s), PERMITS);
    printf("stress_sem_permits: %ld acquisitions, %ld cancels sent, %ld acquires cancelled, "
           "%ld timed out\n", atomic_load(&s.acquired), cancels, atomic_load(&s.cancelled),
           atomic_load(&s.timedout));
    weft_sem_destroy(&s.s);
    return NULL;
}

int main(void)
{
    ss_begin("stress_sem_permits", 4.0);
    ss_run(stress_main, NULL, 4);
    return ss_end();
}
