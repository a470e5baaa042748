/*
 * stress_park_storm: the park/wake protocol itself (runtime/sched.c, essay
 * section 5): one CAS a side on the task's token, a wake that finds the task
 * not asleep leaving it a permit.  Wake-ups land on a task asleep, on one
 * between its registration and its sleep (the permit ends the park at
 * once), on one running (a permit left over, a spurious return later), and
 * come from coroutines on both workers and from a plain thread (through the
 * injection queue); some parks carry a deadline a few microseconds ahead,
 * so timers fire racing the wakes.  White-box: weft__park_ex and weft__wake
 * (runtime/internal.h, the static library), 2 workers.
 *
 * Each round, SLEEPERS tasks each consume POSTS posts: a sleeper waits with
 * "while nothing is posted: park", as every waiting primitive does; the
 * wakers hand out the posts (add one to a sleeper's count, then wake it)
 * and send as many empty wakes.
 *
 * Invariants:
 *  - no wake-up is lost: every sleeper consumes all its posts (one lost
 *    leaves its sleeper asleep with a post waiting: the round fails after
 *    STRESS_STALL_SECONDS, naming it);
 *  - nothing is consumed twice or early: a sleeper never takes more than
 *    was posted to it;
 *  - a task that runs after a park is never PARKED, and a park without a
 *    deadline never reports a timeout.
 *
 * Also: the workers take runnext as WEFT_MEMBARRIER says (the program runs
 * twice in CTest, the second time with it off).
 *
 * Default 3 s; WEFT_STRESS_SECONDS for longer.
 */
#include "internal.h"
#include "os.h"
#include "stress.h"
#include "rng.h"

#define NWORKERS 2
#define SLEEPERS 16
#define POSTS STRESS_SCALE(2000, 300)
#define WAKERS 3 /* coroutines; plus one plain thread */

typedef struct {
    weft_task *t;
    _Atomic uint32_t posted;
    uint32_t taken;              /* the sleeper's own */
    _Atomic uint32_t taken_seen; /* taken, for the report of a stall */
    uint64_t seed;
} sleeper;

static sleeper sl[SLEEPERS];
static _Atomic uint32_t next_post;   /* posts handed out this round */
static _Atomic uint32_t finished;    /* sleepers done this round */
static _Atomic uint64_t rounds, posts_total, spurious, timeouts, empty_wakes;
static weft_event round_done;
static _Atomic bool thread_done;  /* the plain waker has returned */

static void dump(void)
{
    fprintf(stderr, "  rounds %" PRIu64 ", posts %" PRIu64 ", spurious returns %" PRIu64
            ", timeouts %" PRIu64 ", empty wakes %" PRIu64 "\n",
            atomic_load(&rounds), atomic_load(&posts_total), atomic_load(&spurious),
            atomic_load(&timeouts), atomic_load(&empty_wakes));
    for (int i = 0; i < SLEEPERS; i++)
        fprintf(stderr, "  sleeper %d: posted %u, taken %u\n", i, atomic_load(&sl[i].posted),
                atomic_load(&sl[i].taken_seen));
}

/* Scheduler stack: sleep only while nothing is posted (a hint: a post
 * after this look comes with a wake that leaves a permit). */
static bool nothing_posted(weft_task *t, void *arg)
{
    (void)t;
    sleeper *s = arg;
    return atomic_load_explicit(&s->posted, memory_order_relaxed) == s->taken;
}

static void *sleeper_main(void *arg)
{
    sleeper *s = arg;
    weft_task *self = weft__cur_task();
    while (s->taken < POSTS) {
        /* acquire: pairs with the waker's release increment. */
        while (atomic_load_explicit(&s->posted, memory_order_acquire) == s->taken) {
            bool timed = rng_below(&s->seed, 4) == 0;
            int64_t dl = timed ? weft_now() + (int64_t)rng_below(&s->seed, 50) * 1000 : WEFT_FOREVER;
            int rc = weft__park_ex("park storm", nothing_posted, s, dl, false);
            CHECK(rc == 0 || (timed && rc == -ETIMEDOUT), "park returned %d (timed %d)", rc,
                  timed);
            CHECK(atomic_load_explicit(&self->park, memory_order_relaxed) != WEFT__PARK_PARKED,
                  "running with the token PARKED");
            if (rc == -ETIMEDOUT)
                atomic_fetch_add_explicit(&timeouts, 1, memory_order_relaxed);
            else if (atomic_load_explicit(&s->posted, memory_order_relaxed) == s->taken)
                atomic_fetch_add_explicit(&spurious, 1, memory_order_relaxed);
        }
        s->taken++;
        CHECK(s->taken <= atomic_load_explicit(&s->posted, memory_order_relaxed),
              "took %u of %u posted", s->taken, atomic_load(&s->posted));
        atomic_store_explicit(&s->taken_seen, s->taken, memory_order_relaxed);
        stress_progress();
    }
    atomic_fetch_add(&finished, 1);
    /* Wakes still land here (empty ones): the event's wait loops on them. */
    CHECK(weft_event_wait(&round_done, WEFT_FOREVER) == 0, "event wait failed");
    return NULL;
}

/* Hands out posts until none is left, with an empty wake as often. */
static void wake_loop(uint64_t *r, bool plain)
{
    for (;;) {
        sleeper *e = &sl[rng_below(r, SLEEPERS)];
        if (rng_below(r, 2) == 0) {
            weft__wake(e->t);
            atomic_fetch_add_explicit(&empty_wakes, 1, memory_order_relaxed);
        }
        uint32_t k = atomic_fetch_add(&next_post, 1);
        if (k >= (uint32_t)SLEEPERS * POSTS)
            break;
        sleeper *s = &sl[k % SLEEPERS];
        /* release: what the sleeper reads after its acquire load. */
        atomic_fetch_add_explicit(&s->posted, 1, memory_order_release);
        weft__wake(s->t);
        if (rng_below(r, 16) == 0) {
            if (plain)
                stress_os_sleep_ns((int64_t)rng_below(r, 20) * 1000);
            else
                weft_yield();
        }
    }
}

static void *waker_main(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg | 1;
    wake_loop(&r, false);
    return NULL;
}

static void *thread_waker(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg | 1;
    wake_loop(&r, true);
    atomic_store(&thread_done, true);
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    uint64_t seed = rng_seed();
    /* WEFT_MEMBARRIER reaches the workers (runq.c, "Taking runnext"):
     * stress_park_storm_membarrier_off runs this program with it off. */
    const char *mb = getenv("WEFT_MEMBARRIER");
    bool plain = !(mb && strcmp(mb, "off") == 0) && weft__os_membarrier_usable();
    CHECK(weft__cur_worker()->runnext_plain == plain, "WEFT_MEMBARRIER=%s: runnext_plain %d",
          mb ? mb : "(unset)", (int)weft__cur_worker()->runnext_plain);
    CHECK(weft_event_init(&round_done) == 0, "event");
    do {
        atomic_store(&next_post, 0);
        atomic_store(&finished, 0);
        weft_event_clear(&round_done);
        atomic_store(&thread_done, false);
        for (int i = 0; i < SLEEPERS; i++) {
            atomic_store(&sl[i].posted, 0);
            atomic_store(&sl[i].taken_seen, 0);
            sl[i].taken = 0;
            sl[i].seed = rng_next(&seed) | 1;
        }
        /* Every handle is stored before any waker starts. */
        for (int i = 0; i < SLEEPERS; i++)
            CHECK((sl[i].t = weft_spawn(sleeper_main, &sl[i])) != NULL, "spawn");
        weft_task *wk[WAKERS];
        for (int i = 0; i < WAKERS; i++)
            CHECK((wk[i] = weft_spawn(waker_main, (void *)(uintptr_t)rng_next(&seed))) != NULL,
                  "spawn");
        pthread_t th;
        CHECK(pthread_create(&th, NULL, thread_waker, (void *)(uintptr_t)rng_next(&seed)) == 0,
              "pthread_create");
        for (int i = 0; i < WAKERS; i++)
            CHECK(weft_join(wk[i], NULL) == 0, "join");
        /* Joined once it has returned: pthread_join would block a worker. */
        while (!atomic_load(&thread_done))
            weft_sleep(100 * 1000);  /* 100 us */
        CHECK(pthread_join(th, NULL) == 0, "thread join");
        /* All posted: every sleeper must get to the end. */
        int64_t give_up = weft_now() + (int64_t)STRESS_STALL_SECONDS * WEFT_SEC;
        while (atomic_load(&finished) < SLEEPERS && weft_now() < give_up)
            weft_sleep(WEFT_SEC / 1000);
        if (atomic_load(&finished) < SLEEPERS) {
            for (int i = 0; i < SLEEPERS; i++)
                if (atomic_load(&sl[i].taken_seen) < POSTS)
                    FAIL("lost wake-up: sleeper %d took %u of %u posted", i,
                         atomic_load(&sl[i].taken_seen), atomic_load(&sl[i].posted));
            exit(stress_finish("stalled"));
        }
        weft_event_set(&round_done);
        for (int i = 0; i < SLEEPERS; i++)
            CHECK(weft_join(sl[i].t, NULL) == 0, "join");
        atomic_fetch_add(&posts_total, (uint64_t)SLEEPERS * POSTS);
        atomic_fetch_add(&rounds, 1);
    } while (!stress_time_up() && !stress_failed());
    weft_event_destroy(&round_done);
    return NULL;
}

int main(void)
{
    stress_init("stress_park_storm", 3, dump);
    stress_run(NWORKERS, main_task, NULL);
    CHECK(atomic_load(&rounds) > 0, "no round completed");
    return stress_finish("%" PRIu64 " rounds, %" PRIu64 " posts each taken once, %" PRIu64
                         " spurious returns, %" PRIu64 " timeouts, %" PRIu64 " empty wakes",
                         atomic_load(&rounds), atomic_load(&posts_total), atomic_load(&spurious),
                         atomic_load(&timeouts), atomic_load(&empty_wakes));
}
