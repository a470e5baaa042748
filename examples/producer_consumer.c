/*
 * producer_consumer: asyncio's Queue example in weft.
 *
 * A producer puts 20 jobs (how long each takes, in ms) in a bounded queue;
 * three consumers take them, "work" (sleep) and mark them done.  main waits
 * until every job is done (weft_queue_join, asyncio's queue.join()), then
 * closes the queue: the consumers see -EPIPE and return (where asyncio
 * cancels them).
 *
 *   asyncio                      weft
 *   asyncio.Queue(maxsize=5)     weft_queue_new(WEFT_QUEUE_FIFO, 5)
 *   await queue.put(x)           weft_queue_put(q, x, WEFT_FOREVER)
 *   await queue.get()            weft_queue_get(q, &x, WEFT_FOREVER)
 *   queue.task_done()            weft_queue_task_done(q)
 *   await queue.join()           weft_queue_join(q)
 *   queue.shutdown()             weft_queue_close(q)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft.h>

typedef struct {
    weft_queue *q;
    int id;
    long worked_ms;
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    void *item;
    /* get returns -EPIPE once the queue is closed and empty */
    while (weft_queue_get(c->q, &item, WEFT_FOREVER) == 0) {
        long ms = (long)(intptr_t)item;
        weft_sleep(ms * WEFT_MS);
        c->worked_ms += ms;
        printf("consumer %d: job of %ld ms done\n", c->id, ms);
        weft_queue_task_done(c->q);
    }
    return NULL;
}

static void *run(void *arg)
{
    (void)arg;
    weft_queue *q = weft_queue_new(WEFT_QUEUE_FIFO, 5);
    if (!q) {
        perror("weft_queue_new");
        return NULL;
    }
    consumer cs[3];
    weft_task *ts[3];
    for (int i = 0; i < 3; i++) {
        cs[i] = (consumer){q, i, 0};
        ts[i] = weft_spawn(consume, &cs[i]);
    }

    int64_t start = weft_now();
    long total = 0;
    unsigned seed = 42;
    for (int i = 0; i < 20; i++) {
        long ms = 5 + rand_r(&seed) % 46;  /* 5..50 ms */
        total += ms;
        /* waits while 5 jobs are queued: the producer cannot run ahead */
        weft_queue_put(q, (void *)(intptr_t)ms, WEFT_FOREVER);
    }
    weft_queue_join(q);  /* every job taken and marked done */
    double wall = (double)(weft_now() - start) / WEFT_MS;

    weft_queue_close(q);
    weft_gather(ts, 3, NULL);
    for (int i = 0; i < 3; i++)
        printf("consumer %d worked %ld ms\n", i, cs[i].worked_ms);
    printf("3 consumers did %ld ms of work in %.0f ms\n", total, wall);
    weft_queue_free(q);
    return NULL;
}

int main(void)
{
    return weft_run(run, NULL, NULL) == 0 ? 0 : 1;
}
