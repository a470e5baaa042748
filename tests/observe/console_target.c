/*
 * console_target: a small weft program for tools/weft-top's test and the
 * screenshot in docs/debugging.md.  Named tasks in every state: connections
 * waiting on an event, queries sleeping, a cruncher that yields, a worker
 * pool's blocking call, a mutex everyone queues on.  It runs until the
 * file STOPFILE exists (checked every 20 ms), then cancels everything and
 * returns, so weft_run removes the console socket.
 *
 *   WEFT_CONSOLE=/tmp/c.sock console_target /tmp/c.stop &
 *   tools/weft-top /tmp/c.sock
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <weft.h>

static weft_event never;
static weft_mutex lock;

static void *conn(void *arg)
{
    (void)arg;
    weft_event_wait(&never, WEFT_FOREVER);
    return NULL;
}

static void *query(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    while (weft_sleep(ms * WEFT_MS) == 0)
        ;
    return NULL;
}

static void *cruncher(void *arg)
{
    (void)arg;
    volatile unsigned x = 0;
    for (;;) {
        for (int i = 0; i < 100000; i++)
            x += (unsigned)i;
        if (weft_sleep(2 * WEFT_MS) != 0)
            return NULL;
    }
}

static void *holder(void *arg)
{
    (void)arg;
    if (weft_mutex_lock(&lock) == 0) {
        weft_event_wait(&never, WEFT_FOREVER);
        weft_mutex_unlock(&lock);
    }
    return NULL;
}

static void *slow_call(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    return NULL;
}

static void *pool_user(void *arg)
{
    (void)arg;
    while (weft_to_thread(slow_call, NULL, NULL) == 0)
        ;
    return NULL;
}

static void *main_task(void *arg)
{
    const char *stop = arg;
    weft_event_init(&never);
    weft_mutex_init(&lock);
    char name[32];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "http-conn-%d", i);
        weft_detach(weft_spawn_named(name, conn, NULL));
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "db-query-%d", i);
        weft_detach(weft_spawn_named(name, query, (void *)(intptr_t)(50 + 100 * i)));
    }
    weft_detach(weft_spawn_named("cruncher", cruncher, NULL));
    weft_detach(weft_spawn_named("lock-holder", holder, NULL));
    for (int i = 0; i < 2; i++)
        weft_detach(weft_spawn_named("lock-waiter", holder, NULL));
    weft_detach(weft_spawn_named("pool-user", pool_user, NULL));
    while (access(stop, F_OK) != 0)
        weft_sleep(20 * WEFT_MS);
    return NULL;  /* weft_run cancels the rest */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: console_target STOPFILE\n");
        return 2;
    }
    int rc = weft_run(main_task, argv[1], NULL);
    if (rc)
        fprintf(stderr, "console_target: weft_run: %d\n", rc);
    return rc ? 1 : 0;
}
