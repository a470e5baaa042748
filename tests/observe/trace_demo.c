/*
 * trace_demo: a small program whose WEFT_TRACE is the screenshot in
 * docs/debugging.md (docs/trace.png):
 *
 *   WEFT_WORKERS=2 WEFT_TRACE=/tmp/demo.json build/tests/observe/trace_demo
 *   tools/weft-trace-plot.py /tmp/demo.json docs/trace.png
 *
 * About 40 ms of a toy server on two workers: a producer hands requests to
 * two consumers through a queue (wake-ups between workers), a "parser"
 * computes for a while without suspending, "db-query" runs a blocking call
 * on the blocking pool, and a "ticker" sleeps 2 ms at a time (the workers
 * park in between).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <weft.h>

static weft_queue *q;

static void spin_us(int64_t us)
{
    int64_t end = weft_now() + us * WEFT_US;
    while (weft_now() < end)
        ;
}

static void *producer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 12; i++) {
        spin_us(100);
        weft_queue_put(q, (void *)(intptr_t)(i + 1), WEFT_FOREVER);
        weft_sleep(2 * WEFT_MS);
    }
    weft_queue_close(q);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    void *item;
    while (weft_queue_get(q, &item, WEFT_FOREVER) == 0)
        spin_us(300);
    return NULL;
}

static void *parser(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        spin_us(2500);   /* a long computation: no suspension point */
        weft_sleep(6 * WEFT_MS);
    }
    return NULL;
}

static void *blocking_io(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 4 * 1000 * 1000};
    nanosleep(&ts, NULL);   /* a blocking call: fine on the pool */
    return NULL;
}

static void *db_query(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        spin_us(150);
        weft_to_thread(blocking_io, NULL, NULL);
        spin_us(100);
    }
    return NULL;
}

static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 16; i++) {
        spin_us(50);
        weft_sleep(2 * WEFT_MS);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    q = weft_queue_new(WEFT_QUEUE_FIFO, 4);
    weft_task *t[6] = {
        weft_spawn_named("producer", producer, NULL),
        weft_spawn_named("consumer-1", consumer, NULL),
        weft_spawn_named("consumer-2", consumer, NULL),
        weft_spawn_named("parser", parser, NULL),
        weft_spawn_named("db-query", db_query, NULL),
        weft_spawn_named("ticker", ticker, NULL),
    };
    weft_gather(t, 6, NULL);
    weft_queue_free(q);
    return NULL;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    if (rc != 0)
        fprintf(stderr, "trace_demo: weft_run: %d\n", rc);
    return rc != 0;
}
