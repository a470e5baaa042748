/*
 * gdb_target: the program gdb_check.sh debugs with tools/weft-gdb.py.
 *
 * Spawns named tasks that wait in known places (a sleep, an event, a read
 * on a pipe, a join, a mutex), waits until the registry shows every one of
 * them waiting, prints "gdb_target: ready" and then aborts from a coroutine
 * (SIGABRT stops it under gdb; gdb_check.sh then lists the tasks, prints
 * their backtraces and writes a core file with gcore).
 *
 * Built -O0 with frame pointers so that the task functions show by name.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>

static weft_event gate;
static weft_mutex mu;
static int pipefd[2];

__attribute__((noinline)) void *gdb_sleeper_fn(void *arg)
{
    (void)arg;
    weft_sleep(3600 * WEFT_SEC);
    return NULL;
}

__attribute__((noinline)) void *gdb_waiter_fn(void *arg)
{
    (void)arg;
    weft_event_wait(&gate, WEFT_FOREVER);
    return NULL;
}

__attribute__((noinline)) void *gdb_reader_fn(void *arg)
{
    (void)arg;
    char c;
    weft_read(pipefd[0], &c, 1, WEFT_FOREVER);
    return NULL;
}

__attribute__((noinline)) void *gdb_joiner_fn(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn_named("g-join-target", gdb_waiter_fn, NULL);
    weft_join(t, NULL);
    return NULL;
}

__attribute__((noinline)) void *gdb_locker_fn(void *arg)
{
    (void)arg;
    weft_mutex_lock(&mu);
    weft_mutex_unlock(&mu);
    return NULL;
}

static const char *names[] = {"g-sleeper", "g-waiter", "g-reader", "g-joiner", "g-join-target",
                              "g-locker"};
#define NNAMES (sizeof names / sizeof names[0])

static int count_waiting(const weft_task_info *i, void *arg)
{
    for (size_t k = 0; k < NNAMES; k++)
        if (i->name && strcmp(i->name, names[k]) == 0 && i->state == WEFT_TASK_WAITING)
            (*(int *)arg)++;
    return 0;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_event_init(&gate);
    weft_mutex_init(&mu);
    if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) < 0)
        return NULL;
    weft_mutex_lock(&mu);
    weft_task *t[5] = {
        weft_spawn_named("g-sleeper", gdb_sleeper_fn, NULL),
        weft_spawn_named("g-waiter", gdb_waiter_fn, NULL),
        weft_spawn_named("g-reader", gdb_reader_fn, NULL),
        weft_spawn_named("g-joiner", gdb_joiner_fn, NULL),
        weft_spawn_named("g-locker", gdb_locker_fn, NULL),
    };
    (void)t;
    for (int tries = 0; tries < 5000; tries++) {
        int n = 0;
        weft_tasks_foreach(count_waiting, &n);
        if (n == (int)NNAMES)
            break;
        weft_sleep(WEFT_MS);
    }
    printf("gdb_target: pipe fd %d\n", pipefd[0]);
    printf("gdb_target: ready\n");
    fflush(stdout);
    abort();
}

int main(void)
{
    return weft_run(main_task, NULL, NULL);
}
