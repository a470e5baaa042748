/* Run by observe_off.sh against a libweft built with -DWEFT_OBSERVE=OFF
 * (the configuration bench/obs-cost.sh measures against): the runtime works,
 * the registry still answers, and what was compiled out says so instead of
 * returning zeros. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>
#include <weft/observe.h>

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "observe_off: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static weft_event ev;
static void *waiter(void *arg)
{
    (void)arg;
    return (void *)(long)weft_event_wait(&ev, WEFT_FOREVER);
}

static int count(const weft_task_info *i, void *ctx)
{
    CHECK(i->id != 0);
    CHECK(i->wait == NULL);  /* wait strings and since are compiled out */
    CHECK(i->since == 0);
    ++*(int *)ctx;
    return 0;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_stats st;
    CHECK(weft_stats_get(&st) == -ENOTSUP);
    char text[64];
    CHECK(weft_stats_format(text, sizeof text, WEFT_STATS_PROMETHEUS) == -ENOTSUP);
    CHECK(weft_stats_format(NULL, 0, WEFT_STATS_JSON) == -ENOTSUP);
    CHECK(weft_stats_get(NULL) == -EINVAL);
    weft_event_init(&ev);
    weft_task *t[8];
    for (int i = 0; i < 8; i++)
        t[i] = weft_spawn_named("waiter", waiter, NULL);
    weft_sleep(5 * WEFT_MS);
    int n = 0;
    CHECK(weft_tasks_foreach(count, &n) == 0);
    CHECK(n == 9);  /* main and the eight waiters */
    /* The dump still lists every task, with its state and no wait or age. */
    FILE *f = tmpfile();
    CHECK(f && weft_dump(fileno(f)) == 0);
    char line[512];
    int waiting = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, "'waiter' [waiting, worker ") && !strstr(line, " ms"))
            waiting++;
    fclose(f);
    CHECK(waiting == 8);
    weft_event_set(&ev);
    for (int i = 0; i < 8; i++) {
        void *r = (void *)1;
        CHECK(weft_join(t[i], &r) == 0 && r == NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);  /* a trace path that must not be written */
    setenv("WEFT_TRACE", argv[1], 1);
    setenv("WEFT_WORKERS", "2", 1);
    CHECK(weft_run(main_task, NULL, NULL) == 0);
    CHECK(access(argv[1], F_OK) != 0);
    puts("observe_off: runtime, registry and -ENOTSUP ok; WEFT_TRACE ignored");
    return 0;
}
