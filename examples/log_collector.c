/*
 * log_collector: a TCP log collector.  Clients send log lines; each
 * connection's handler puts the lines into one bounded weft_queue, and two
 * consumer tasks take them out and store them, appending to a file through
 * weft_pwrite (the write goes to the worker's io_uring where the kernel
 * allows it, else to the runtime's blocking pool: either way only the
 * consumer coroutine waits, and the workers go on serving connections).
 *
 *   queue = asyncio.Queue(maxsize=1024)
 *   async def handle(reader, writer):
 *       while line := await reader.readline():
 *           await queue.put(line)              # waits while the queue is full
 *   async def consumer():
 *       while True:
 *           line = await queue.get()
 *           await store(line)
 *           queue.task_done()
 *
 * Usage:
 *   log_collector PORT OUTFILE [SECONDS]   serve (until killed, or SECONDS)
 *   log_collector demo [OUTFILE]           start on a free port, send 8 x 2000
 *                                          lines from 8 client tasks, shut
 *                                          down, check that every line was
 *                                          stored once
 *
 * Shutting down: close the server (handlers are cancelled and awaited),
 * close the queue (consumers drain what is left, then get -EPIPE), join the
 * consumers.  A full queue slows the producers down (back-pressure goes
 * all the way to the clients' TCP windows) instead of growing memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>

#define QUEUE_CAP 1024
#define LINE_MAX 8192

static weft_queue *queue;
static int out_fd = -1;
static _Atomic long long out_off;   /* next free offset in the file */
static _Atomic long lines_in, lines_stored, lines_too_long;

typedef struct {
    size_t len;
    char text[];
} logline;

static void handle(weft_stream *s, void *ctx)
{
    (void)ctx;
    char *buf = malloc(LINE_MAX);
    for (;;) {
        ssize_t n = weft_stream_readline(s, buf, LINE_MAX, WEFT_FOREVER);
        if (n == -EMSGSIZE) {
            atomic_fetch_add(&lines_too_long, 1);  /* skipped through its '\n' */
            continue;
        }
        if (n <= 0)
            break;
        if (buf[n - 1] != '\n')  /* a last line without '\n' */
            buf[n++] = '\n';
        logline *l = malloc(sizeof *l + (size_t)n);
        l->len = (size_t)n;
        memcpy(l->text, buf, (size_t)n);
        if (weft_queue_put(queue, l, WEFT_FOREVER) != 0) {  /* -ECANCELED or -EPIPE */
            free(l);
            break;
        }
        atomic_fetch_add(&lines_in, 1);
    }
    free(buf);
}

static void *consumer(void *arg)
{
    (void)arg;
    void *item;
    while (weft_queue_get(queue, &item, WEFT_FOREVER) == 0) {
        logline *l = item;
        /* Reserve a range of the file, then write it there: the two
         * consumers' lines never overlap, whatever the order they finish. */
        off_t off = (off_t)atomic_fetch_add(&out_off, (long long)l->len);
        ssize_t w = weft_pwrite(out_fd, l->text, l->len, off);
        if (w < 0)
            fprintf(stderr, "log_collector: pwrite: %s\n", strerror((int)-w));
        else
            atomic_fetch_add(&lines_stored, 1);
        free(l);
        weft_queue_task_done(queue);
    }
    return NULL;   /* the queue was closed and is empty */
}

/* ------------------------------------------------------------------ */

typedef struct {
    const char *port;
    int id, lines;
} demo_client;

static void *demo_client_main(void *p)
{
    demo_client *c = p;
    weft_stream *s = weft_open_connection("127.0.0.1", c->port, weft_now() + 5 * WEFT_SEC);
    if (!s) {
        fprintf(stderr, "demo client %d: %s\n", c->id, strerror(errno));
        return NULL;
    }
    for (int i = 0; i < c->lines; i++) {
        char line[96];
        int n = snprintf(line, sizeof line, "client %d: log line %d\n", c->id, i);
        if (weft_stream_write(s, line, (size_t)n) < 0)
            break;
    }
    weft_stream_drain(s, WEFT_FOREVER);
    weft_stream_close(s);
    return NULL;
}

typedef struct {
    int argc;
    char **argv;
} args;

static void *main_task(void *arg)
{
    args *a = arg;
    bool demo = a->argc >= 2 && strcmp(a->argv[1], "demo") == 0;
    const char *port = demo ? "0" : a->argv[1];
    const char *path = demo ? (a->argc >= 3 ? a->argv[2] : "log_collector-demo.log") : a->argv[2];
    double seconds = !demo && a->argc >= 4 ? atof(a->argv[3]) : 0;

    out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        fprintf(stderr, "log_collector: %s: %s\n", path, strerror(errno));
        return (void *)1;
    }
    queue = weft_queue_new(WEFT_QUEUE_FIFO, QUEUE_CAP);
    weft_task *consumers[2] = {weft_spawn(consumer, NULL), weft_spawn(consumer, NULL)};
    weft_server *srv = weft_start_server("127.0.0.1", port, handle, NULL);
    if (!srv) {
        fprintf(stderr, "log_collector: port %s: %s\n", port, strerror(errno));
        weft_queue_close(queue);
        weft_gather(consumers, 2, NULL);
        weft_queue_free(queue);
        close(out_fd);
        return (void *)1;
    }
    printf("log_collector: listening on 127.0.0.1:%d, storing into %s\n", weft_server_port(srv),
           path);
    fflush(stdout);

    enum { DEMO_CLIENTS = 8, DEMO_LINES = 2000 };
    if (demo) {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", weft_server_port(srv));
        demo_client c[DEMO_CLIENTS];
        weft_task *t[DEMO_CLIENTS];
        for (int i = 0; i < DEMO_CLIENTS; i++) {
            c[i] = (demo_client){ps, i, DEMO_LINES};
            t[i] = weft_spawn(demo_client_main, &c[i]);
        }
        weft_gather(t, DEMO_CLIENTS, NULL);
        /* The clients are done; wait until their handlers queued it all. */
        int64_t end = weft_now() + 10 * WEFT_SEC;
        while (atomic_load(&lines_in) < DEMO_CLIENTS * DEMO_LINES && weft_now() < end)
            weft_sleep(WEFT_MS);
    } else if (seconds > 0) {
        weft_sleep((int64_t)(seconds * 1e9));
    } else {
        weft_serve_forever(srv);  /* until killed */
    }

    weft_server_close(srv);    /* no more lines come in */
    weft_queue_join(queue);    /* every queued line stored */
    weft_queue_close(queue);   /* the consumers' get returns -EPIPE */
    weft_gather(consumers, 2, NULL);
    weft_queue_free(queue);
    close(out_fd);
    printf("log_collector: %ld lines received, %ld stored, %ld too long\n",
           atomic_load(&lines_in), atomic_load(&lines_stored), atomic_load(&lines_too_long));
    if (demo && atomic_load(&lines_stored) != DEMO_CLIENTS * DEMO_LINES) {
        fprintf(stderr, "log_collector: demo: expected %d lines\n", DEMO_CLIENTS * DEMO_LINES);
        return (void *)1;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "demo") != 0 && argc < 3)) {
        fprintf(stderr, "usage: log_collector PORT OUTFILE [SECONDS] | log_collector demo [OUTFILE]\n");
        return 2;
    }
    args a = {argc, argv};
    void *res = NULL;
    int rc = weft_run(main_task, &a, &res);
    if (rc < 0) {
        fprintf(stderr, "log_collector: weft_run: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
