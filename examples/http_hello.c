/*
 * http_hello: a minimal HTTP/1.1 server answering "Hello, world!" to every
 * request, with keep-alive, for load generators such as wrk:
 *
 *   $ ./http_hello 8080 &
 *   $ wrk -t2 -c100 -d10s http://127.0.0.1:8080/
 *
 * GET /metrics answers the runtime's figures in Prometheus's text format
 * (weft_stats_format; the metric names are listed in docs/debugging.md):
 *
 *   $ curl http://127.0.0.1:8080/metrics
 *
 * Usage: http_hello PORT [SECONDS]   (PORT 0 picks a free one; with SECONDS
 * the server closes itself after that long)
 *
 * One coroutine per connection reads a request head line by line
 * (weft_stream_readline), skips a body announced by Content-Length, answers,
 * and loops while the connection is kept alive (HTTP/1.1 unless
 * "Connection: close"; HTTP/1.0 only with "Connection: keep-alive").
 * A connection idle for 30 s, a head line over 8 KiB (431) or a malformed
 * request (400) ends it.  Pipelined requests are answered in order, one
 * flush per response.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <weft.h>

#define HEAD_LINE_MAX 8192
#define KEEPALIVE (30 * WEFT_SEC)

static const char body[] = "Hello, world!";

static bool header_is(const char *line, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    *value = v;
    return true;
}

static bool value_has(const char *v, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = v; *p; p++)
        if (strncasecmp(p, token, n) == 0)
            return true;
    return false;
}

static void reply_text(weft_stream *s, int status, const char *reason, const char *type,
                       const char *text, bool keep)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "\r\n",
                     status, reason, type, strlen(text), keep ? "" : "Connection: close\r\n");
    weft_stream_write(s, head, (size_t)n);
    weft_stream_write(s, text, strlen(text));
}

static void reply(weft_stream *s, int status, const char *reason, bool keep)
{
    reply_text(s, status, reason, "text/plain", status == 200 ? body : reason, keep);
}

/* GET /metrics: the text is sized by asking first (with slack: the figures
 * may grow a digit between the two calls). */
static void reply_metrics(weft_stream *s, bool keep)
{
    int need = weft_stats_format(NULL, 0, WEFT_STATS_PROMETHEUS);
    char *text = need >= 0 ? malloc((size_t)need + 256) : NULL;
    int n = text ? weft_stats_format(text, (size_t)need + 256, WEFT_STATS_PROMETHEUS) : -ENOMEM;
    if (n < 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "metrics unavailable: %s\n", strerror(-n));
        reply_text(s, 503, "Service Unavailable", "text/plain", msg, keep);
    } else {
        reply_text(s, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, keep);
    }
    free(text);
}

static void handle(weft_stream *s, void *ctx)
{
    (void)ctx;
    char line[HEAD_LINE_MAX];
    for (;;) {
        /* Request line. */
        ssize_t n = weft_stream_readline(s, line, sizeof line, weft_now() + KEEPALIVE);
        if (n == -EMSGSIZE) {
            reply(s, 414, "URI Too Long", false);
            break;
        }
        if (n <= 0)
            break;  /* closed, idle too long, reset or cancelled */
        if (n <= 2 && (line[0] == '\r' || line[0] == '\n'))
            continue;  /* stray CRLF between requests */
        char method[16], target[2048], version[16];
        if (sscanf(line, "%15s %2047s %15s", method, target, version) != 3 ||
            strncmp(version, "HTTP/1.", 7) != 0) {
            reply(s, 400, "Bad Request", false);
            break;
        }
        bool keep = strcmp(version, "HTTP/1.1") == 0;
        long long content_length = 0;
        /* Header lines, up to the empty one. */
        bool bad = false;
        for (;;) {
            n = weft_stream_readline(s, line, sizeof line, weft_now() + KEEPALIVE);
            if (n == -EMSGSIZE) {
                reply(s, 431, "Request Header Fields Too Large", false);
                bad = true;
                break;
            }
            if (n <= 0) {
                bad = true;
                break;
            }
            if (line[0] == '\r' || line[0] == '\n')
                break;
            const char *v;
            if (header_is(line, "Connection", &v)) {
                if (value_has(v, "close"))
                    keep = false;
                else if (value_has(v, "keep-alive"))
                    keep = true;
            } else if (header_is(line, "Content-Length", &v)) {
                content_length = atoll(v);
            }
        }
        if (bad)
            break;
        /* A body we do not want: skip it. */
        while (content_length > 0) {
            char junk[4096];
            size_t k = content_length < (long long)sizeof junk ? (size_t)content_length : sizeof junk;
            if (weft_stream_readexactly(s, junk, k, weft_now() + KEEPALIVE) < 0) {
                keep = false;
                break;
            }
            content_length -= (long long)k;
        }
        if (strcmp(method, "GET") == 0 && strcmp(target, "/metrics") == 0)
            reply_metrics(s, keep);
        else
            reply(s, 200, "OK", keep);
        if (weft_stream_drain(s, weft_now() + KEEPALIVE) < 0 || !keep)
            break;
    }
}

typedef struct {
    weft_server *srv;
    double seconds;
} closer_arg;

static void *closer(void *p)
{
    closer_arg *c = p;
    if (weft_sleep((int64_t)(c->seconds * 1e9)) == 0)
        weft_server_close(c->srv);
    return NULL;
}

static void *main_task(void *arg)
{
    char **argv = arg;
    weft_server *srv = weft_start_server("127.0.0.1", argv[1], handle, NULL);
    if (!srv) {
        fprintf(stderr, "http_hello: port %s: %s\n", argv[1], strerror(errno));
        return (void *)1;
    }
    printf("http_hello: http://127.0.0.1:%d/ (%u workers)\n", weft_server_port(srv), weft_workers());
    fflush(stdout);
    closer_arg c = {srv, argv[2] ? atof(argv[2]) : 0};
    weft_task *t = c.seconds > 0 ? weft_spawn(closer, &c) : NULL;
    weft_serve_forever(srv);
    if (t)
        weft_join(t, NULL);
    else
        weft_server_close(srv);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: http_hello PORT [SECONDS]\n");
        return 2;
    }
    void *res = NULL;
    int rc = weft_run(main_task, argv, &res);
    if (rc < 0) {
        fprintf(stderr, "http_hello: weft_run: %s\n", strerror(-rc));
        return 1;
    }
    return res ? 1 : 0;
}
