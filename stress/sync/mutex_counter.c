/*
 * stress_mutex_counter: mutex- and rwlock-protected state across workers.
 *
 * For WEFT_WORKERS = 2, 3 and 4 in turn (or only the count WEFT_WORKERS
 * names), tasks take a weft_mutex by lock, lock_until with short random
 * deadlines, or trylock; a plain thread takes it by trylock; the holder
 * checks it is alone (an atomic flag), increments two plain counters,
 * sometimes yields while holding it, and unlocks.  A driver cancels
 * lockers at random and respawns them.  Invariants: never two holders; the
 * counters equal the number of successful acquisitions (a lock that
 * returned an error did not acquire); at the end the mutex is free.
 * Alongside, readers and writers on a weft_rwlock: writers keep two fields
 * equal, readers check them; never a writer with anyone else inside.
 */
#include "sync_stress.h"

#define LOCKERS SS_SCALE(16, 6)
#define RW_TASKS SS_SCALE(8, 4)

typedef struct {
    weft_mutex m;
    _Atomic int inside;
    long a, b;                 /* protected by m */
    _Atomic long acquired;     /* successful acquisitions */
    weft_rwlock rw;
    long x, y;                 /* protected by rw */
    _Atomic int readers, writers;
    _Atomic long rw_ops;
    _Atomic bool stop;
    _Atomic long cancels, timeouts;
} shared_t;

static void critical(shared_t *s, uint64_t *rng, bool may_yield)
{
    CHECK(atomic_exchange(&s->inside, 1) == 0, "two holders of the mutex");
    long a = s->a;
    if (may_yield && rng_below(rng, 8) == 0)
        weft_yield();
    s->a = a + 1;
    s->b++;
    atomic_store(&s->inside, 0);
    atomic_fetch_add(&s->acquired, 1);
    ss_progress();
}

static void *locker(void *arg)
{
    shared_t *s = arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&s->stop)) {
        int rc;
        switch (rng_below(&rng, 3)) {
        case 0: rc = weft_mutex_lock(&s->m); break;
        case 1: rc = weft_mutex_lock_until(&s->m, weft_now() + (int64_t)rng_below(&rng, 50) * WEFT_US); break;
        default: rc = weft_mutex_trylock(&s->m); break;
        }
        if (rc == -ECANCELED) {
            atomic_fetch_add(&s->cancels, 1);
            return NULL;
        }
        if (rc == -ETIMEDOUT || rc == -EBUSY) {
            atomic_fetch_add(&s->timeouts, 1);
            if (rc == -EBUSY && weft_yield() == -ECANCELED)
                return NULL;
            continue;
        }
        CHECK(rc == 0, "lock: unexpected %d", rc);
        critical(s, &rng, true);
        CHECK(weft_mutex_unlock(&s->m) == 0, "unlock failed");
    }
    return NULL;
}

static void *plain_locker(void *arg)
{
    shared_t *s = arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&s->stop)) {
        if (weft_mutex_trylock(&s->m) == 0) {
            critical(s, &rng, false);
            CHECK(weft_mutex_unlock(&s->m) == 0, "plain unlock failed");
        }
        sched_yield();
    }
    return NULL;
}

static void *rw_task(void *arg)
{
    shared_t *s = arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&s->stop)) {
        bool writer = rng_below(&rng, 4) == 0;
        int64_t dl = rng_deadline(&rng, 100 * WEFT_US);
        int rc = writer ? weft_rwlock_wrlock_until(&s->rw, dl) : weft_rwlock_rdlock_until(&s->rw, dl);
        if (rc == -ECANCELED)
            return NULL;
        if (rc == -ETIMEDOUT)
            continue;
        CHECK(rc == 0, "rwlock: unexpected %d", rc);
        if (writer) {
            CHECK(atomic_fetch_add(&s->writers, 1) == 0 && atomic_load(&s->readers) == 0,
                  "writer not alone");
            s->x++;
            if (rng_below(&rng, 4) == 0)
                weft_yield();
            s->y++;
            atomic_fetch_sub(&s->writers, 1);
            CHECK(weft_rwlock_wrunlock(&s->rw) == 0, "wrunlock failed");
        } else {
            atomic_fetch_add(&s->readers, 1);
            CHECK(atomic_load(&s->writers) == 0, "reader with a writer");
            long x = s->x;
            if (rng_below(&rng, 4) == 0)
                weft_yield();
            CHECK(s->y == x, "torn rwlock state");
            atomic_fetch_sub(&s->readers, 1);
            CHECK(weft_rwlock_rdunlock(&s->rw) == 0, "rdunlock failed");
        }
        atomic_fetch_add(&s->rw_ops, 1);
        ss_progress();
    }
    return NULL;
}

static int64_t phase_end;

static void *stress_main(void *arg)
{
    (void)arg;
    shared_t s = {0};
    weft_mutex_init(&s.m);
    weft_rwlock_init(&s.rw);
    uint64_t rng = rng_seed();
    enum { N = LOCKERS + RW_TASKS };
    weft_task *t[N];
    for (int i = 0; i < N; i++)
        t[i] = weft_spawn(i < LOCKERS ? locker : rw_task, &s);
    pthread_t plain;
    pthread_create(&plain, NULL, plain_locker, &s);
    while (weft_now() < phase_end) {
        weft_sleep((int64_t)rng_below(&rng, 500) * WEFT_US);
        int i = (int)rng_below(&rng, N);
        if (weft_task_done(t[i])) {
            weft_join(t[i], NULL);
            t[i] = weft_spawn(i < LOCKERS ? locker : rw_task, &s);
        } else if (rng_below(&rng, 2)) {
            weft_cancel(t[i]);
        }
    }
    atomic_store(&s.stop, true);
    weft_gather(t, N, NULL);
    pthread_join(plain, NULL);
    CHECK(s.a == atomic_load(&s.acquired) && s.b == s.a,
          "counters %ld/%ld, acquisitions %ld", s.a, s.b, atomic_load(&s.acquired));
    CHECK(!weft_mutex_is_locked(&s.m), "mutex left locked");
    CHECK(weft_mutex_trylock(&s.m) == 0 && weft_mutex_unlock(&s.m) == 0, "mutex unusable");
    CHECK(s.x == s.y, "rwlock fields differ");
    CHECK(weft_rwlock_trywrlock(&s.rw) == 0 && weft_rwlock_wrunlock(&s.rw) == 0,
          "rwlock left held");
    printf("stress_mutex_counter: %u workers: %ld acquisitions, %ld rwlock ops, %ld cancelled, "
           "%ld timeouts/busy\n", weft_workers(), atomic_load(&s.acquired),
           atomic_load(&s.rw_ops), atomic_load(&s.cancels), atomic_load(&s.timeouts));
    weft_mutex_destroy(&s.m);
    weft_rwlock_destroy(&s.rw);
    return NULL;
}

int main(void)
{
    ss_begin("stress_mutex_counter", 4.0);
    const char *w = getenv("WEFT_WORKERS");
    int phases = (w && *w) ? 1 : 3;
    int64_t len = (ss_t_end - weft_now()) / phases;
    for (int p = 0; p < phases; p++) {
        phase_end = weft_now() + len;
        ss_run(stress_main, NULL, (unsigned)(2 + p));
    }
    return ss_end();
}
