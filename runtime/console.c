/*
 * The live console: WEFT_CONSOLE=path serves snapshots of the runtime as
 * JSON lines on a Unix socket (mode 0600), for tools/weft-top and anyone
 * with socat.  The protocol is in docs/debugging.md ("The live console").
 *
 * One thread of its own, started by weft_run before the workers and joined
 * before weft_run frees anything: a runtime whose workers are all stuck
 * still answers, and a shutdown that hangs can still be looked at.  The
 * thread sleeps in poll(2) on the listening socket, an eventfd (stop) and
 * its clients; with nobody connected it never wakes, and no hot path knows
 * it exists (docs/debugging.md, "Overhead", measures it).
 *
 * It reads the runtime as weft_stats_get and weft_tasks_foreach do
 * (observe.c: lock-free walks of the task slabs, per-worker counters), with
 * its own runtime pointer, valid until weft__console_stop.
 *
 * Clients are bounded (CONSOLE_CLIENTS), sockets non-blocking: a client
 * that stops reading gets no more watch snapshots until its backlog is
 * sent, and is dropped past CONSOLE_BACKLOG bytes; every send has
 * MSG_NOSIGNAL, so a client gone mid-snapshot is a closed descriptor, never
 * a SIGPIPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "textbuf.h"

#define CONSOLE_CLIENTS 8                  /* at once; more are told so and closed */
#define CONSOLE_LINE 256                   /* longest command line */
#define CONSOLE_BACKLOG ((size_t)64 << 20) /* unsent bytes before a client is dropped */
#define CONSOLE_TASKS 10000                /* tasks listed in one snapshot at most */
#define CONSOLE_WATCH_MIN 10               /* ms */
#define CONSOLE_WATCH_MAX 60000
#define CONSOLE_FRAMES 32

typedef struct {
    int fd;                 /* -1: free slot */
    char in[CONSOLE_LINE];
    size_t in_len;
    weft__tb out;           /* replies not yet sent */
    size_t sent;            /* bytes of out already sent */
    int64_t watch_ns;       /* 0: not watching */
    int64_t next_at;        /* next watch snapshot */
    bool closing;           /* close once out is sent */
} client;

struct weft__console {
    weft__runtime *rt;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;              /* of the socket file we created */
    ino_t ino;
    int lfd, efd;
    pthread_t thread;
    client c[CONSOLE_CLIENTS];
    weft_stats stats;       /* the snapshot's (6 KiB) */
};

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

static void reply_error(client *c, const char *what, const char *line)
{
    weft__tb_puts(&c->out, "{\"type\":\"error\",\"error\":");
    weft__tb_json_str(&c->out, what);
    if (line) {
        weft__tb_puts(&c->out, ",\"line\":");
        weft__tb_json_str(&c->out, line);
    }
    weft__tb_puts(&c->out, "}\n");
}

typedef struct {
    weft__tb *t;
    int64_t now;
    uint64_t n;
} task_list;

static int task_one(const weft_task_info *i, void *arg)
{
    task_list *l = arg;
    if (l->n++ >= CONSOLE_TASKS)
        return 0;  /* counted, not listed */
    int64_t in_state = i->since && l->now > i->since ? l->now - i->since : 0;
    weft__tb_printf(l->t, "%s{\"id\":%llu,\"name\":", l->n > 1 ? "," : "",
                    (unsigned long long)i->id);
    weft__tb_json_str(l->t, i->name);
    weft__tb_printf(l->t, ",\"state\":\"%s\",\"wait\":", weft__state_name(i->state));
    weft__tb_json_str(l->t, i->wait);
    weft__tb_printf(l->t, ",\"worker\":%d,\"in_state_ns\":%lld}", i->worker, (long long)in_state);
    return 0;
}

/* Console thread: one snapshot line (docs/debugging.md, "snapshot"). */
static void reply_snapshot(struct weft__console *k, client *c)
{
    weft_stats *s = &k->stats;
    weft__memory_figures m;
    weft__tb *t = &c->out;
    int64_t now = weft_now();
    weft__stats_of(k->rt, s);
    weft__memory_stats_of(k->rt, &m);
    weft__tb_printf(t, "{\"type\":\"snapshot\",\"now_ns\":%lld,\"stats\":", (long long)now);
    weft__stats_json(t, s, &m);
    weft__tb_puts(t, ",\"tasks\":[");
    task_list l = {t, now, 0};
    weft__tasks_walk(k->rt, task_one, &l);
    weft__tb_printf(t, "],\"tasks_listed\":%llu,\"tasks_total\":%llu}\n",
                    (unsigned long long)(l.n < CONSOLE_TASKS ? l.n : CONSOLE_TASKS),
                    (unsigned long long)l.n);
}

/* Console thread (8 MiB of stack: libdw needs a deep one).  The frames
 * pcs[0..n) symbolized, one line each (malloc'd), or NULL: no libdw, or
 * not one line per frame. */
static char *symbolized(void *const *pcs, int n)
{
    if (!weft__sym_available())
        return NULL;
    int fd = memfd_create("weft-console-bt", MFD_CLOEXEC);
    if (fd < 0)
        return NULL;
    weft__sym_pass pass = {0};
    char *buf = NULL;
    off_t len;
    if (weft__sym_write(&pass, fd, pcs, n) == 0 && (len = lseek(fd, 0, SEEK_END)) > 0 &&
        (buf = malloc((size_t)len + 1))) {
        ssize_t got = pread(fd, buf, (size_t)len, 0);
        buf[got > 0 ? got : 0] = '\0';
        int lines = 0;
        for (char *p = buf; (p = strchr(p, '\n')); p++)
            lines++;
        if (got != len || lines != n) {
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    return buf;
}

/* Console thread: a task's backtrace (docs/debugging.md, "backtrace"). */
static void reply_backtrace(struct weft__console *k, client *c, uint64_t id)
{
    weft_task_info info;
    char name[WEFT__NAME_MAX], wait[48];
    void *pcs[CONSOLE_FRAMES];
    int n = weft__task_backtrace(k->rt, id, &info, name, wait, pcs, CONSOLE_FRAMES);
    if (n < 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "no unfinished task with id %llu", (unsigned long long)id);
        reply_error(c, msg, NULL);
        return;
    }
    weft__tb *t = &c->out;
    weft__tb_printf(t, "{\"type\":\"backtrace\",\"id\":%llu,\"name\":", (unsigned long long)id);
    weft__tb_json_str(t, info.name);
    weft__tb_printf(t, ",\"state\":\"%s\",\"wait\":", weft__state_name(info.state));
    weft__tb_json_str(t, info.wait);
    weft__tb_puts(t, ",\"frames\":[");
    /* Function, file and line where libdw can tell (symbolize.c), else
     * backtrace_symbols' form. */
    char *lines = n > 0 ? symbolized(pcs, n) : NULL;
    char **sym = n > 0 && !lines ? backtrace_symbols(pcs, n) : NULL;
    char *next = lines;
    for (int i = 0; i < n; i++) {
        char raw[32];
        snprintf(raw, sizeof raw, "%p", pcs[i]);
        weft__tb_puts(t, i ? "," : "");
        if (next) {
            char *nl = strchr(next, '\n');
            *nl = '\0';
            weft__tb_json_str(t, next);
            next = nl + 1;
        } else {
            weft__tb_json_str(t, sym ? sym[i] : raw);
        }
    }
    free(lines);
    free(sym);
    /* Why there are no frames, for a person reading the reply. */
    const char *note = NULL;
    if (n == 0 && info.state == WEFT_TASK_RUNNING)
        note = "running: no backtrace of a running coroutine";
    else if (n == 0 && info.state == WEFT_TASK_BLOCKING)
        note = "in the blocking pool: its thread's stack, not a coroutine's";
    else if (n == 0)
        note = "not started yet, or its frames were not readable";
    weft__tb_puts(t, "],\"note\":");
    weft__tb_json_str(t, note);
    weft__tb_puts(t, "}\n");
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

/* Console thread: one command line (NUL-terminated, newline removed). */
static void command(struct weft__console *k, client *c, char *line)
{
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
        line[--n] = '\0';
    char word[16];
    int used = 0;
    if (sscanf(line, " %15s%n", word, &used) != 1)
        return;  /* an empty line: nothing */
    const char *rest = line + used;
    char *end;
    if (strcmp(word, "snapshot") == 0) {
        if (blank(rest))
            reply_snapshot(k, c);
        else
            reply_error(c, "usage: snapshot", line);
    } else if (strcmp(word, "watch") == 0) {
        long ms = strtol(rest, &end, 10);
        if (end == rest || !blank(end) ||
            (ms != 0 && (ms < CONSOLE_WATCH_MIN || ms > CONSOLE_WATCH_MAX))) {
            reply_error(c, "usage: watch MS (10 to 60000; 0 stops)", line);
            return;
        }
        c->watch_ns = (int64_t)ms * WEFT_MS;
        if (ms) {
            reply_snapshot(k, c);
            c->next_at = weft__real_now() + c->watch_ns;
        }
    } else if (strcmp(word, "backtrace") == 0) {
        errno = 0;
        unsigned long long id = strtoull(rest, &end, 10);
        if (end == rest || errno || !blank(end) || strchr(rest, '-')) {
            reply_error(c, "usage: backtrace TASK_ID", line);
            return;
        }
        reply_backtrace(k, c, id);
    } else if (strcmp(word, "help") == 0) {
        weft__tb_puts(&c->out, "{\"type\":\"help\",\"commands\":[\"snapshot\",\"watch MS\","
                               "\"backtrace TASK_ID\",\"help\",\"quit\"]}\n");
    } else if (strcmp(word, "quit") == 0) {
        c->closing = true;
    } else {
        reply_error(c, "unknown command (try help)", line);
    }
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

static void drop(client *c)
{
    close(c->fd);
    c->fd = -1;
    weft__tb_free(&c->out);
}

/* Console thread: sends what it can of c's backlog; false when c is gone. */
static bool flush(client *c)
{
    while (c->sent < c->out.len) {
        if (c->out.oom) {
            drop(c);  /* a reply that could not be built whole */
            return false;
        }
        /* MSG_NOSIGNAL: a client gone mid-reply is EPIPE, not SIGPIPE. */
        ssize_t r = send(c->fd, c->out.b + c->sent, c->out.len - c->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->out.len - c->sent > CONSOLE_BACKLOG) {
                drop(c);  /* it has stopped reading */
                return false;
            }
            return true;
        }
        if (r < 0) {
            drop(c);
            return false;
        }
        c->sent += (size_t)r;
    }
    c->out.len = c->sent = 0;  /* all sent: reuse the buffer */
    if (c->closing) {
        drop(c);
        return false;
    }
    return true;
}

/* Console thread: reads what c sent and answers each whole line. */
static void readable(struct weft__console *k, client *c)
{
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r <= 0) {
            drop(c);  /* closed or reset: whatever was pending is moot */
            return;
        }
        c->in_len += (size_t)r;
        char *nl;
        while (!c->closing && (nl = memchr(c->in, '\n', c->in_len))) {
            *nl = '\0';
            size_t len = (size_t)(nl - c->in);
            char line[CONSOLE_LINE];
            memcpy(line, c->in, len + 1);
            size_t rest = c->in_len - len - 1;
            memmove(c->in, nl + 1, rest);
            c->in_len = rest;
            if (strlen(line) != len)
                reply_error(c, "a NUL byte in the command line", NULL);
            else
                command(k, c, line);
        }
        if (c->in_len == sizeof c->in) {
            reply_error(c, "line too long: closing", NULL);
            c->closing = true;
        }
        if (c->closing)
            break;
    }
    flush(c);
}

static void accept_one(struct weft__console *k)
{
    int fd = accept4(k->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        /* Out of descriptors: the connection stays queued and the socket
         * readable; a pause keeps this thread from spinning on it (the stop
         * eventfd still ends the pause at once). */
        if (errno == EMFILE || errno == ENFILE) {
            struct pollfd e = {.fd = k->efd, .events = POLLIN};
            poll(&e, 1, 10);
        }
        return;  /* otherwise gone already: nothing to do */
    }
    for (int i = 0; i < CONSOLE_CLIENTS; i++) {
        client *c = &k->c[i];
        if (c->fd < 0) {
            memset(c, 0, sizeof *c);
            c->fd = fd;
            weft__tb_heap(&c->out);
            return;
        }
    }
    static const char full[] = "{\"type\":\"error\",\"error\":\"too many clients (8): closing\"}\n";
    ssize_t r = send(fd, full, sizeof full - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)r;
    close(fd);
}

/* The console thread. */
static void *console_main(void *arg)
{
    struct weft__console *k = arg;
    struct pollfd p[2 + CONSOLE_CLIENTS];
    int who[2 + CONSOLE_CLIENTS];
    for (;;) {
        int64_t now = weft__real_now(), next = -1;  /* watches run on real time */
        int n = 0;
        p[n++] = (struct pollfd){.fd = k->efd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = k->lfd, .events = POLLIN};
        for (int i = 0; i < CONSOLE_CLIENTS; i++) {
            client *c = &k->c[i];
            if (c->fd < 0)
                continue;
            if (c->watch_ns && c->next_at <= now) {
                /* A client still busy with the last one skips this one. */
                if (c->sent == c->out.len)
                    reply_snapshot(k, c);
                c->next_at = now + c->watch_ns;
                if (!flush(c))
                    continue;
            }
            if (c->watch_ns && (next < 0 || c->next_at < next))
                next = c->next_at;
            who[n] = i;
            p[n++] =
                (struct pollfd){.fd = c->fd,
                                .events = (short)(POLLIN | (c->sent < c->out.len ? POLLOUT : 0))};
        }
        int timeout = next < 0 ? -1 : (int)((next - now + WEFT_MS - 1) / WEFT_MS);
        if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;  /* EFAULT / EINVAL: cannot happen with these arguments */
        if (p[0].revents)
            break;  /* weft__console_stop */
        if (p[1].revents & POLLIN)
            accept_one(k);
        for (int j = 2; j < n; j++) {
            client *c = &k->c[who[j]];
            if (c->fd != p[j].fd || !p[j].revents)
                continue;
            if (p[j].revents & (POLLIN | POLLHUP | POLLERR))
                readable(k, c);
            else if (p[j].revents & POLLOUT)
                flush(c);
        }
    }
    for (int i = 0; i < CONSOLE_CLIENTS; i++)
        if (k->c[i].fd >= 0)
            drop(&k->c[i]);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

/* Is a console (or anything) listening on path?  1 yes, 0 a stale socket
 * nobody listens on, -errno when it cannot tell. */
static int listening(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 1 : -errno;
    close(fd);
    if (rc == -ECONNREFUSED)
        return 0;
    if (rc == -EAGAIN)
        return 1;  /* its backlog is full: very much alive */
    return rc;
}

/* Binds and listens on path; the listening descriptor or -errno, with *why
 * set for the one-line message. */
static int open_socket(struct weft__console *k, const char **why)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = k->rt->cfg.console_path;
    *why = NULL;
    if (strlen(path) >= sizeof sa.sun_path) {
        *why = "the path is longer than a Unix socket allows (107 bytes)";
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *why = "it exists and is not a socket: remove it or choose another path";
            return -EEXIST;
        }
        int l = listening(&sa);
        if (l == 1) {
            *why = "another process listens on it";
            return -EADDRINUSE;
        }
        if (l < 0) {
            *why = "it exists and cannot be probed";
            return l;
        }
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;  /* a stale socket, left by a process that died */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* The socket inode's mode (less the umask) becomes the file's at bind:
     * 0600 from birth, never a window where others may connect. */
    if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (chmod(path, 0600) < 0 || stat(path, &st) < 0 || listen(fd, CONSOLE_CLIENTS) < 0) {
        int e = -errno;
        unlink(path);
        close(fd);
        return e;
    }
    k->dev = st.st_dev;
    k->ino = st.st_ino;
    return fd;
}

/* weft_run, before the workers start.  A console that cannot be set up is
 * one line on stderr, and the runtime runs without it (as WEFT_TRACE does
 * with a path it cannot write): always 0. */
int weft__console_start(weft__runtime *rt)
{
    if (!rt->cfg.console_path)
        return 0;
    struct weft__console *k = calloc(1, sizeof *k);
    const char *why = NULL;
    int rc = -ENOMEM;
    if (k) {
        k->rt = rt;
        k->lfd = k->efd = -1;
        for (int i = 0; i < CONSOLE_CLIENTS; i++)
            k->c[i].fd = -1;
        rc = k->lfd = open_socket(k, &why);
    }
    if (rc >= 0) {
        snprintf(k->path, sizeof k->path, "%s", rt->cfg.console_path);
        k->efd = eventfd(0, EFD_CLOEXEC);
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 8u << 20);  /* symbolized backtraces (libdw) */
        rc = k->efd < 0 ? -errno : -pthread_create(&k->thread, &a, console_main, k);
        pthread_attr_destroy(&a);
        if (rc == 0)
            pthread_setname_np(k->thread, "weft-console");  /* for top -H, gdb */
        if (rc < 0) {
            unlink(k->path);
            close(k->lfd);
            if (k->efd >= 0)
                close(k->efd);
        }
    }
    if (rc < 0) {
        weft__log("weft: WEFT_CONSOLE=%s: %s%s%s; running without a console", rt->cfg.console_path,
                  strerror(-rc), why ? ": " : "", why ? why : "");
        free(k);
        return 0;
    }
    rt->console = k;
    return 0;
}

/* weft_run, after every task finished and before the pools are freed:
 * stops and joins the console thread, closes every connection and removes
 * the socket file (when it is still the one we made). */
void weft__console_stop(weft__runtime *rt)
{
    struct weft__console *k = rt->console;
    if (!k)
        return;
    uint64_t one = 1;
    ssize_t r = write(k->efd, &one, sizeof one);
    (void)r;
    pthread_join(k->thread, NULL);
    struct stat st;
    if (stat(k->path, &st) == 0 && st.st_dev == k->dev && st.st_ino == k->ino)
        unlink(k->path);
    close(k->lfd);
    close(k->efd);
    free(k);
    rt->console = NULL;
}
