/*
 * echo_server: the asyncio echo server, with weft streams.
 *
 *   async def handle_echo(reader, writer):
 *       while line := await reader.readline():
 *           writer.write(line)
 *           await writer.drain()
 *       writer.close()
 *
 *   async def main():
 *       server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888)
 *       async with server:
 *           await server.serve_forever()
 *
 * Usage: echo_server [PORT [SECONDS]]   (default 8888; PORT 0 picks a free
 * port; with SECONDS the server closes itself after that long)
 *   $ ./echo_server 8888 &
 *   $ printf 'hello\nworld\n' | nc -q1 127.0.0.1 8888
 *
 * Each connection runs in a coroutine of its own on the workers (one per
 * CPU, WEFT_WORKERS).  The runtime has one poller, which the first worker to
 * run out of work waits in; a connection's coroutine is queued on the worker
 * that saw its socket become readable, and runs there or on whichever idle
 * worker steals it (docs/scheduler.md, section 11).  A line longer than the
 * buffer given to readline is answered with an error and skipped; a client
 * idle for 5 minutes is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

#define LINE_MAX 4096
#define IDLE (300 * WEFT_SEC)

static void handle_echo(weft_stream *s, void *ctx)
{
    (void)ctx;
    char line[LINE_MAX];
    for (;;) {
        ssize_t n = weft_stream_readline(s, line, sizeof line, weft_now() + IDLE);
        if (n == -EMSGSIZE) {
            /* The line did not fit: it was skipped through its '\n'. */
            static const char err[] = "error: line too long\n";
            weft_stream_write(s, err, sizeof err - 1);
            if (weft_stream_drain(s, weft_now() + IDLE) < 0)
                break;
            continue;
        }
        if (n <= 0)  /* 0: end of stream; else -ETIMEDOUT, -ECONNRESET, -ECANCELED... */
            break;
        if (weft_stream_write(s, line, (size_t)n) < 0 || weft_stream_drain(s, weft_now() + IDLE) < 0)
            break;
    }
    /* The server closes the stream when the handler returns. */
}

typedef struct {
    weft_server *srv;
    double seconds;
} closer_arg;

static void *closer(void *p)
{
    closer_arg *c = p;
    if (weft_sleep((int64_t)(c->seconds * 1e9)) == 0)
        weft_server_close(c->srv);  /* serve_forever then returns 0 */
    return NULL;
}

static void *main_task(void *arg)
{
    char **argv = arg;
    const char *port = argv[1] ? argv[1] : "8888";
    weft_server *srv = weft_start_server("127.0.0.1", port, handle_echo, NULL);
    if (!srv) {
        fprintf(stderr, "echo_server: port %s: %s\n", port, strerror(errno));
        return (void *)1;
    }
    printf("echo_server: serving on 127.0.0.1:%d with %u workers\n", weft_server_port(srv),
           weft_workers());
    fflush(stdout);
    closer_arg c = {srv, argv[1] && argv[2] ? atof(argv[2]) : 0};
    weft_task *t = c.seconds > 0 ? weft_spawn(closer, &c) : NULL;
    int rc = weft_serve_forever(srv);
    if (t)
        weft_join(t, NULL);  /* it closed the server */
    else
        weft_server_close(srv);
    printf("echo_server: done (%d)\n", rc);
    return NULL;
}

int main(int argc, char **argv)
{
    (void)argc;
    void *res = NULL;
    int rc = weft_run(main_task, argv, &res);
    if (rc < 0) {
        fprintf(stderr, "echo_server: weft_run: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
