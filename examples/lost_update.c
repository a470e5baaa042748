/*
 * A lost update that plain runs never show, found by a seed search and
 * replayed exactly (docs/testing.md, "Finding a seed"):
 *
 *   ./lost_update                       # passes, run after run
 *   tools/weft-seeds -n 500 -- ./lost_update
 *   WEFT_SEED=<k> WEFT_WORKERS=1 WEFT_CLOCK=virtual ./lost_update   # fails, every time
 *
 * TASKS coroutines each add one to a shared counter, once, by reading it,
 * yielding (standing in for an await on a database or a socket between
 * the read and the write) and writing what they read plus one.  Each does
 * its update at its own turn of a loop that yields every turn, SPACING
 * turns after the previous task's.  In weft's default order (first in,
 * first out on one worker) the tasks move in lockstep, one turn each per
 * round, so an update's read and write fall in two rounds where no other
 * task touches the counter: the program is always right.  Any order in
 * which one task runs a few turns ahead of another lets two updates
 * overlap: both read the same value, one write is lost, and the final
 * count is short.
 *
 * One worker on purpose: the race is between coroutines at a yield, not
 * between threads (no data race for a sanitizer to see).  On a lost update
 * the program prints what each update read and wrote and aborts; under
 * WEFT_SEED weft then prints the line that replays the run.
 *
 * Usage: lost_update [TASKS [SPACING]]   (defaults 6 and 20: about one seed
 * in 40 loses an update; docs/testing.md has the figures)
 */
#include <stdio.h>
#include <stdlib.h>

#include <weft.h>

enum { MAX_TASKS = 64 };

static int counter;        /* the shared state: one worker, no lock */
static int tasks = 6, spacing = 20;
static char events[MAX_TASKS * 2][48];  /* what the updates did, in order */
static int nevents;

static void note(const char *fmt, long task, int value)
{
    if (nevents < MAX_TASKS * 2)
        snprintf(events[nevents++], sizeof events[0], fmt, task, value);
}

static void *updater(void *arg)
{
    long id = (long)arg;
    int turns = tasks * spacing + 2;
    for (int turn = 0; turn < turns; turn++) {
        if (turn == id * spacing) {
            int v = counter;            /* read */
            note("task %ld read %d", id, v);
            weft_yield();               /* ... an await ... */
            counter = v + 1;            /* write: lost if another wrote meanwhile */
            note("task %ld wrote %d", id, v + 1);
        } else {
            weft_yield();               /* other work, one turn of it */
        }
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_task *t[MAX_TASKS];
    for (long i = 0; i < tasks; i++) {
        t[i] = weft_spawn(updater, (void *)i);
        if (!t[i]) {
            perror("weft_spawn");
            exit(2);
        }
    }
    weft_gather(t, (size_t)tasks, NULL);
    if (counter != tasks) {
        fprintf(stderr, "lost update: counter = %d, expected %d\n", counter, tasks);
        for (int i = 0; i < nevents; i++)
            fprintf(stderr, "  %s\n", events[i]);
        fflush(stderr);
        abort();
    }
    printf("counter = %d, as expected\n", counter);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        tasks = atoi(argv[1]);
    if (argc > 2)
        spacing = atoi(argv[2]);
    if (tasks < 1 || tasks > MAX_TASKS || spacing < 2) {
        fprintf(stderr, "usage: lost_update [TASKS (1..%d) [SPACING (>= 2)]]\n", MAX_TASKS);
        return 2;
    }
    weft_config c = WEFT_CONFIG_DEFAULT;
    c.workers = 1;
    int rc = weft_run_config(&c, main_task, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "lost_update: weft_run: %d\n", rc);
        return 1;
    }
    return 0;
}
