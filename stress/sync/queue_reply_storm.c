/*
 * stress_queue_reply_storm: one-shot reply queues, freed by their getter
 * the moment its get returns.
 *
 * A queue's getter that sees its grant returns without re-taking the
 * queue's lock (sync/queue.c, runtime/waitq.h: weft__waiter_grant_last,
 * weft__waitq_wait with a locked flag), so the put that granted it may not have unlocked
 * yet when the getter frees the queue; weft_queue_free waits for that
 * unlock.  This program makes that race as often as it can:
 *
 *  - CLIENTS coroutines each loop: make a FIFO queue of capacity 1 (or
 *    unbounded), send {queue, id} to the responders over a shared request
 *    queue, get the reply with a random deadline (FOREVER or up to 50 us;
 *    a get that times out is retried without one: the reply is on its
 *    way), and free the queue at once;
 *  - RESPONDERS coroutines, and one plain thread (try_get / try_put, so its
 *    grant and unlock run on a thread that is not a worker), take requests
 *    and put the id into the request's queue, after a random yield or
 *    none; one request in eight asks instead to be answered by
 *    weft_queue_close, whose grant (-EPIPE) lets the getter free the queue
 *    while close still holds the lock;
 *  - the other way round for putters: the client puts two items into a
 *    queue of one, so that the second waits as a putter until the
 *    responder's get grants it (the putter's side of the same path); the
 *    responder then takes the second and answers on a reply queue, whose
 *    getter frees both queues at once.  (A putter may not free the queue
 *    when its put returns: the get that granted it may still be running,
 *    and nothing tells the putter when it is done.)
 *
 * Invariant: every request is answered exactly once, with its own id or,
 * when it asked for it, by close (nothing lost, doubled or crossed); counts
 * and sums agree.  A free that
 * did not wait for the granter's unlock is a use after free, which
 * ThreadSanitizer and AddressSanitizer report.
 */
#include "sync_stress.h"

#define CLIENTS SS_SCALE(64, 16)
#define RESPONDERS 3

typedef struct {
    weft_queue *q;
    long id;
    bool reverse;  /* the responder gets two items from q, then puts id into ack */
    weft_queue *ack;
    bool by_close; /* the responder closes q instead of putting into it */
} request;

static weft_queue *requests;
static _Atomic long sent, answered, sum_sent, sum_answered, timeouts, putter_waits, closes;
static _Atomic bool stopping;

/* A responder's half of one request.  Coroutine (may_wait) or plain thread. */
static void answer(request *req, bool may_wait, uint64_t *rng)
{
    /* A copy: the request lives in the client's frame, which moves on to
     * its next request once this answer has reached it. */
    request copy = *req, *r = &copy;
    if (r->reverse) {
        /* The client put first (into a full queue, so it waits as a
         * putter) or will: take the first item, then the second. */
        void *it;
        for (int k = 0; k < 2; k++) {
            int rc;
            while ((rc = may_wait ? weft_queue_get(r->q, &it, WEFT_FOREVER)
                                  : weft_queue_try_get(r->q, &it)) == -EAGAIN)
                sched_yield();
            CHECK(rc == 0, "reverse get: %d", rc);
            CHECK((long)(intptr_t)it == r->id + k, "reverse item %ld, want %ld",
                  (long)(intptr_t)it, r->id + k);
        }
        int rc = may_wait ? weft_queue_put(r->ack, (void *)(intptr_t)r->id, WEFT_FOREVER)
                          : weft_queue_try_put(r->ack, (void *)(intptr_t)r->id);
        CHECK(rc == 0, "ack put: %d", rc);
        return;
    }
    if (may_wait && rng_below(rng, 4) == 0)
        weft_yield();
    if (r->by_close) {
        weft_queue_close(r->q);
        return;
    }
    int rc = may_wait ? weft_queue_put(r->q, (void *)(intptr_t)r->id, WEFT_FOREVER)
                      : weft_queue_try_put(r->q, (void *)(intptr_t)r->id);
    CHECK(rc == 0, "reply put: %d", rc);
}

static void *responder(void *arg)
{
    (void)arg;
    uint64_t rng = rng_seed();
    for (;;) {
        void *it;
        int rc = weft_queue_get(requests, &it, WEFT_FOREVER);
        if (rc == -EPIPE)
            return NULL;
        CHECK(rc == 0, "request get: %d", rc);
        request *r = it;
        answer(r, true, &rng);
    }
}

static void *plain_responder(void *arg)
{
    (void)arg;
    uint64_t rng = rng_seed();
    for (;;) {
        void *it;
        int rc = weft_queue_try_get(requests, &it);
        if (rc == -EPIPE)
            return NULL;
        if (rc == -EAGAIN) {
            sched_yield();
            continue;
        }
        CHECK(rc == 0, "plain request get: %d", rc);
        answer(it, false, &rng);
    }
}

static void *client(void *arg)
{
    (void)arg;
    uint64_t rng = rng_seed();
    while (!atomic_load(&stopping)) {
        bool reverse = rng_below(&rng, 4) == 0;
        weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, reverse || rng_below(&rng, 2) ? 1 : 0);
        CHECK(q != NULL, "weft_queue_new");
        if (!q)
            return NULL;
        weft_queue *ack = reverse ? weft_queue_new(WEFT_QUEUE_FIFO, 1) : NULL;
        CHECK(!reverse || ack, "weft_queue_new");
        if (reverse && !ack)
            return NULL;
        long id = atomic_fetch_add(&sent, 2) * 2 + 1;  /* odd, unique; id + 1 for reverse */
        bool by_close = !reverse && rng_below(&rng, 8) == 0;
        request r = {q, id, reverse, ack, by_close};
        atomic_fetch_add(&sum_sent, id);
        int rc = weft_queue_put(requests, &r, WEFT_FOREVER);
        CHECK(rc == 0, "request put: %d", rc);
        if (reverse) {
            /* Two puts into a queue of one: the second waits as a putter
             * until the responder's get grants it. */
            CHECK(weft_queue_put(q, (void *)(intptr_t)id, WEFT_FOREVER) == 0, "reverse put 1");
            int64_t dl = rng_deadline(&rng, 50 * WEFT_US);
            rc = weft_queue_put(q, (void *)(intptr_t)(id + 1), dl);
            if (rc == -ETIMEDOUT) {
                atomic_fetch_add(&timeouts, 1);
                rc = weft_queue_put(q, (void *)(intptr_t)(id + 1), WEFT_FOREVER);
            }
            CHECK(rc == 0, "reverse put 2: %d", rc);
            atomic_fetch_add(&putter_waits, 1);
            void *it = NULL;
            rc = weft_queue_get(ack, &it, WEFT_FOREVER);
            CHECK(rc == 0, "ack get: %d", rc);
            CHECK((long)(intptr_t)it == id, "ack %ld, want %ld", (long)(intptr_t)it, id);
            weft_queue_free(ack);  /* at once: the ack's put may not have unlocked */
        } else {
            void *it = NULL;
            int64_t dl = rng_deadline(&rng, 50 * WEFT_US);
            rc = weft_queue_get(q, &it, dl);
            if (rc == -ETIMEDOUT) {
                atomic_fetch_add(&timeouts, 1);
                rc = weft_queue_get(q, &it, WEFT_FOREVER);
            }
            if (by_close) {
                CHECK(rc == -EPIPE, "reply get from a closed queue: %d", rc);
                atomic_fetch_add(&closes, 1);
            } else {
                CHECK(rc == 0, "reply get: %d", rc);
                CHECK((long)(intptr_t)it == id, "reply %ld, want %ld", (long)(intptr_t)it, id);
            }
        }
        weft_queue_free(q);  /* at once: the granter may not have unlocked */
        atomic_fetch_add(&answered, 1);
        atomic_fetch_add(&sum_answered, id);
        ss_progress();
    }
    return NULL;
}

static void *stress_main(void *arg)
{
    (void)arg;
    requests = weft_queue_new(WEFT_QUEUE_FIFO, 0);
    CHECK(requests != NULL, "requests queue");
    weft_task *resp[RESPONDERS], *cl[CLIENTS];
    for (int i = 0; i < RESPONDERS; i++)
        resp[i] = weft_spawn(responder, NULL);
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, plain_responder, NULL) == 0, "pthread_create");
    for (int i = 0; i < CLIENTS; i++)
        cl[i] = weft_spawn(client, NULL);
    while (!ss_time_up())
        weft_sleep(10 * WEFT_MS);
    atomic_store(&stopping, true);
    for (int i = 0; i < CLIENTS; i++)
        CHECK(weft_join(cl[i], NULL) == 0, "client join");
    weft_queue_close(requests);
    for (int i = 0; i < RESPONDERS; i++)
        CHECK(weft_join(resp[i], NULL) == 0, "responder join");
    pthread_join(pt, NULL);
    weft_queue_free(requests);
    CHECK(atomic_load(&answered) == atomic_load(&sent) / 2 &&
              atomic_load(&sum_answered) == atomic_load(&sum_sent),
          "sent %ld requests (sum %ld), answered %ld (sum %ld)", atomic_load(&sent) / 2,
          atomic_load(&sum_sent), atomic_load(&answered), atomic_load(&sum_answered));
    CHECK(atomic_load(&answered) > 0, "no request answered");
    CHECK(atomic_load(&closes) > 0, "no request answered by close");
    return NULL;
}

int main(void)
{
    ss_begin("stress_queue_reply_storm", 4.0);
    ss_run(stress_main, NULL, 2);
    printf("stress_queue_reply_storm: %ld requests, %ld through waiting putters, %ld answered "
           "by close, %ld timeouts\n",
           atomic_load(&answered), atomic_load(&putter_waits), atomic_load(&closes),
           atomic_load(&timeouts));
    return ss_end();
}
