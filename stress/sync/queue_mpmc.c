/*
 * stress_queue_mpmc: MPMC queues under random cancellation and timeouts.
 *
 * Rounds until the time budget runs out; each round picks a kind (FIFO,
 * LIFO, PRIORITY) and a capacity (unbounded, 1, 2, 8, 64), and runs
 * producer and consumer coroutines plus one plain-thread producer
 * (try_put) and one plain-thread consumer (try_get).  Every item is a
 * unique id.  Puts and gets use random deadlines (FOREVER or up to 200 us);
 * a driver cancels producers and consumers at random and respawns them
 * (a producer resumes with the id it had not yet put; a put that timed out
 * is retried with the same id, so a "failed" put that had moved its item
 * would show up as a doubled item).  When every id has been put the driver
 * closes the queue; consumers drain it and stop on -EPIPE.
 *
 * Invariant (nothing lost or doubled): each id was returned by exactly one
 * successful get if and only if a put of it returned 0; sums and counts of
 * items put and got are equal; the closed queue is empty.
 */
#include "sync_stress.h"

#define PRODUCERS SS_SCALE(6, 3)
#define CONSUMERS SS_SCALE(6, 3)
#define PER_PRODUCER SS_SCALE(3000, 300)
#define MAXSLOTS 16

typedef struct round round_t;

typedef struct {
    round_t *r;
    long next, end;        /* producer: ids next..end-1 still to put */
    weft_task *task;       /* driver only */
    int last_rc;           /* consumer: its task's last code */
    bool consumer;
    bool finished;         /* producer: all put; consumer: saw -EPIPE */
} slot_t;

struct round {
    weft_queue *q;
    int kind;
    size_t cap;
    long nids;
    _Atomic uint8_t *put_ok, *got;
    _Atomic long sum_put, sum_got, n_put, n_got;
    _Atomic long timeouts, cancels_seen;
    slot_t slots[MAXSLOTS];
    int nslots;
    long plain_lo, plain_hi;  /* ids of the plain producer */
    _Atomic bool plain_put_done;
};

static _Atomic long total_items, total_cancels, total_timeouts, rounds_done;

static void record_put(round_t *r, long id)
{
    atomic_store(&r->put_ok[id], 1);
    atomic_fetch_add(&r->sum_put, id);
    atomic_fetch_add(&r->n_put, 1);
    ss_progress();
}

static void record_got(round_t *r, void *it)
{
    long id = (long)(intptr_t)it;
    if (id < 0 || id >= r->nids) {
        CHECK(0, "got a foreign item %ld", id);
        return;
    }
    uint8_t prev = atomic_fetch_add(&r->got[id], 1);
    CHECK(prev == 0, "item %ld got twice (kind %d cap %zu)", id, r->kind, r->cap);
    atomic_fetch_add(&r->sum_got, id);
    atomic_fetch_add(&r->n_got, 1);
    ss_progress();
}

static void *producer(void *arg)
{
    slot_t *s = arg;
    round_t *r = s->r;
    uint64_t rng = rng_seed();
    while (s->next < s->end) {
        long id = s->next;
        int64_t dl = rng_deadline(&rng, 200 * WEFT_US);
        int rc = r->kind == WEFT_QUEUE_PRIORITY
                     ? weft_queue_put_prio(r->q, (void *)(intptr_t)id, (int64_t)rng_below(&rng, 8), dl)
                     : weft_queue_put(r->q, (void *)(intptr_t)id, dl);
        if (rc == 0) {
            record_put(r, id);
            s->next++;
        } else if (rc == -ETIMEDOUT) {
            atomic_fetch_add(&r->timeouts, 1);
        } else if (rc == -ECANCELED) {
            atomic_fetch_add(&r->cancels_seen, 1);
            return NULL;
        } else {
            CHECK(0, "put: unexpected %d", rc);
            return NULL;
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    slot_t *s = arg;
    round_t *r = s->r;
    uint64_t rng = rng_seed();
    for (;;) {
        void *it;
        int rc = weft_queue_get(r->q, &it, rng_deadline(&rng, 200 * WEFT_US));
        if (rc == 0) {
            record_got(r, it);
            if (rng_below(&rng, 16) == 0)
                weft_yield();
        } else if (rc == -ETIMEDOUT) {
            atomic_fetch_add(&r->timeouts, 1);
        } else {
            if (rc == -ECANCELED)
                atomic_fetch_add(&r->cancels_seen, 1);
            else
                CHECK(rc == -EPIPE, "get: unexpected %d", rc);
            s->last_rc = rc;
            return NULL;
        }
    }
}

static void *plain_producer(void *arg)
{
    round_t *r = arg;
    for (long id = r->plain_lo; id < r->plain_hi;) {
        int rc = weft_queue_try_put(r->q, (void *)(intptr_t)id);
        if (rc == 0) {
            record_put(r, id);
            id++;
        } else if (rc == -EAGAIN) {
            ss_os_sleep_ns(20 * WEFT_US);  /* full: let the consumers run */
        } else {
            CHECK(0, "try_put: unexpected %d", rc);
            break;
        }
    }
    atomic_store(&r->plain_put_done, true);
    return NULL;
}

static void *plain_consumer(void *arg)
{
    round_t *r = arg;
    for (;;) {
        void *it;
        int rc = weft_queue_try_get(r->q, &it);
        if (rc == 0) {
            record_got(r, it);
        } else if (rc == -EAGAIN) {
            ss_os_sleep_ns(20 * WEFT_US);  /* empty: let the producers run */
        } else {
            CHECK(rc == -EPIPE, "try_get: unexpected %d", rc);
            return NULL;
        }
    }
}

static void spawn_slot(slot_t *s)
{
    s->task = weft_spawn(s->consumer ? consumer : producer, s);
    if (!s->task) {
        fprintf(stderr, "weft_spawn failed\n");
        abort();
    }
}

static void run_round(uint64_t *rng)
{
    static const size_t caps[] = {0, 1, 2, 8, 64};
    round_t *r = calloc(1, sizeof *r);
    r->kind = (int)rng_below(rng, 3);
    r->cap = caps[rng_below(rng, 5)];
    r->q = weft_queue_new(r->kind, r->cap);
    long per = PER_PRODUCER;
    r->nids = per * (PRODUCERS + 1);
    r->put_ok = calloc((size_t)r->nids, 1);
    r->got = calloc((size_t)r->nids, 1);
    r->nslots = PRODUCERS + CONSUMERS;
    for (int i = 0; i < PRODUCERS; i++)
        r->slots[i] = (slot_t){.r = r, .next = i * per, .end = (i + 1) * per};
    for (int i = PRODUCERS; i < r->nslots; i++)
        r->slots[i] = (slot_t){.r = r, .consumer = true};
    r->plain_lo = PRODUCERS * per;
    r->plain_hi = r->nids;
    for (int i = 0; i < r->nslots; i++)
        spawn_slot(&r->slots[i]);
    pthread_t pp, pc;
    pthread_create(&pp, NULL, plain_producer, r);
    pthread_create(&pc, NULL, plain_consumer, r);

    bool closed = false;
    long cancels = 0;
    for (;;) {
        weft_sleep((int64_t)rng_below(rng, 300) * WEFT_US);
        /* Reap and respawn. */
        int live = 0, producers_left = 0;
        for (int i = 0; i < r->nslots; i++) {
            slot_t *s = &r->slots[i];
            if (s->task && weft_task_done(s->task)) {
                weft_join(s->task, NULL);
                s->task = NULL;
                if (s->consumer ? s->last_rc == -EPIPE : s->next == s->end)
                    s->finished = true;
                else
                    spawn_slot(s);  /* cancelled: a new task goes on */
            }
            if (s->task)
                live++;
            if (!s->consumer && !s->finished)
                producers_left++;
        }
        if (!closed && producers_left == 0 && atomic_load(&r->plain_put_done)) {
            pthread_join(pp, NULL);
            weft_queue_close(r->q);
            closed = true;
        }
        if (closed && live == 0)
            break;
        /* Cancel someone now and then. */
        if (rng_below(rng, 3) == 0) {
            slot_t *s = &r->slots[rng_below(rng, (uint64_t)r->nslots)];
            if (s->task) {
                weft_cancel(s->task);
                cancels++;
            }
        }
    }
    pthread_join(pc, NULL);

    /* Nothing lost or doubled. */
    long lost = 0, doubled = 0, phantom = 0;
    for (long id = 0; id < r->nids; id++) {
        uint8_t p = atomic_load(&r->put_ok[id]), g = atomic_load(&r->got[id]);
        if (g > 1)
            doubled++;
        else if (p && !g)
            lost++;
        else if (!p && g)
            phantom++;
    }
    CHECK(lost == 0 && doubled == 0 && phantom == 0,
          "kind %d cap %zu: %ld lost, %ld doubled, %ld got but never put", r->kind, r->cap,
          lost, doubled, phantom);
    CHECK(atomic_load(&r->n_put) == atomic_load(&r->n_got) &&
              atomic_load(&r->sum_put) == atomic_load(&r->sum_got),
          "kind %d cap %zu: put %ld items (sum %ld), got %ld (sum %ld)", r->kind, r->cap,
          atomic_load(&r->n_put), atomic_load(&r->sum_put), atomic_load(&r->n_got),
          atomic_load(&r->sum_got));
    CHECK(weft_queue_size(r->q) == 0, "closed queue not empty");
    CHECK(weft_queue_try_get(r->q, NULL) == -EPIPE, "drained queue: try_get not -EPIPE");
    atomic_fetch_add(&total_items, atomic_load(&r->n_got));
    atomic_fetch_add(&total_cancels, cancels);
    atomic_fetch_add(&total_timeouts, atomic_load(&r->timeouts));
    atomic_fetch_add(&rounds_done, 1);
    weft_queue_free(r->q);
    free(r->put_ok);
    free(r->got);
    free(r);
}

static void *stress_main(void *arg)
{
    (void)arg;
    uint64_t rng = rng_seed();
    do
        run_round(&rng);
    while (!ss_time_up());
    return NULL;
}

int main(void)
{
    ss_begin("stress_queue_mpmc", 4.0);
    ss_run(stress_main, NULL, 4);
    printf("stress_queue_mpmc: %ld rounds, %ld items, %ld cancels, %ld timeouts\n",
           atomic_load(&rounds_done), atomic_load(&total_items), atomic_load(&total_cancels),
           atomic_load(&total_timeouts));
    return ss_end();
}
