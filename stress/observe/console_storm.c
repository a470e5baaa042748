/*
 * stress_console_storm: the live console (WEFT_CONSOLE, runtime/console.c)
 * under clients that come and go while tasks spawn and exit at full speed.
 *
 *  - per worker a churn coroutine spawns batches of short named tasks
 *    (yield, sleep a few microseconds, wait on an event, spin) and joins
 *    them; a live counter follows every task from spawn to exit;
 *  - CLIENTS plain threads (one more than the console's bound, so the
 *    refusal path runs too) connect, ask for snapshot, watch 10, backtrace
 *    of an id seen in a snapshot or a random one, send garbage, and hang up
 *    at random: after the reply, mid-reply, or without reading at all.
 * Invariants:
 *  - every line received is one valid JSON object of a known type (a
 *    snapshot, a backtrace, a help or an error reply);
 *  - in every snapshot, tasks_listed equals the task entries in the line,
 *    tasks_total equals tasks_listed (fewer than 10000), no id appears
 *    twice, every name is one this program gives or null, every state one
 *    of the four; and tasks_total never exceeds what can be alive: a batch
 *    per churn coroutine, the churn coroutines and main;
 *  - at the end every spawned task ran and exited once (the live counter
 *    is back at zero and tasks_alive is 1: main), and the socket file is
 *    gone after weft_run.
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "../../tests/observe/json_check.h"
#include "../rng.h"

#define BATCH STRESS_SCALE(128, 24)
#define CLIENTS 9
#define NWORKERS 3

static char sock_path[108];
static _Atomic int64_t live;        /* tasks spawned and not yet exited */
static _Atomic uint64_t spawned, exited, lines_ok, snapshots, backtraces, errors, refused, hangups,
    connects;
static _Atomic bool clients_stop;
static _Atomic uint64_t seen_id;    /* an id from a recent snapshot */
static _Atomic uint64_t main_id;    /* main's: always there to backtrace */
static weft_event never;

static const char *const NAMES[] = {"churn", "main", "yielder", "sleeper", "waiter", "spinner"};

static void dump_state(void)
{
    fprintf(stderr,
            "  live %lld, spawned %llu, exited %llu, lines %llu, snapshots %llu, connects %llu\n",
            (long long)atomic_load(&live), (unsigned long long)atomic_load(&spawned),
            (unsigned long long)atomic_load(&exited), (unsigned long long)atomic_load(&lines_ok),
            (unsigned long long)atomic_load(&snapshots),
            (unsigned long long)atomic_load(&connects));
    weft_dump(2);
}

/* ------------------------------------------------------------------ */
/* Tasks                                                               */
/* ------------------------------------------------------------------ */

static void *short_task(void *arg)
{
    uintptr_t kind = (uintptr_t)arg;
    if (kind == 0)
        weft_yield();
    else if (kind == 1)
        weft_sleep(20 * WEFT_US);
    else if (kind == 2)
        weft_event_wait(&never, weft_now() + 50 * WEFT_US);
    else
        stress_spin_ns(20 * WEFT_US);
    atomic_fetch_sub(&live, 1);
    atomic_fetch_add(&exited, 1);
    return NULL;
}

static void *churn(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + rng_seed();
    weft_task *h[BATCH];
    while (!stress_time_up() && !stress_failed()) {
        for (int i = 0; i < BATCH; i++) {
            uintptr_t kind = rng_below(&rng, 4);
            atomic_fetch_add(&live, 1);
            h[i] = weft_spawn_named(NAMES[2 + kind], short_task, (void *)kind);
            CHECK(h[i] != NULL, "spawn: %s", strerror(errno));
            atomic_fetch_add(&spawned, 1);
        }
        CHECK(weft_gather(h, BATCH, NULL) == 0, "gather");
        stress_progress();
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Clients                                                             */
/* ------------------------------------------------------------------ */

static int dial(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static bool known_name(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strlen(NAMES[i]) == n && memcmp(NAMES[i], p, n) == 0)
            return true;
    return false;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks one snapshot line (already valid JSON). */
static void check_snapshot(const char *l)
{
    uint64_t listed = 0, total = 0;
    CHECK(json_u64(l, "tasks_listed", &listed) && json_u64(l, "tasks_total", &total),
          "snapshot without counts");
    CHECK(listed == total, "listed %llu of %llu", (unsigned long long)listed,
          (unsigned long long)total);
    /* Can be alive: one batch per churner (each gathers its batch before
     * the next), the churners, main. */
    int64_t bound = (int64_t)BATCH * NWORKERS + NWORKERS + 1;
    CHECK((int64_t)total <= bound, "snapshot lists %llu tasks; at most %lld can be alive",
          (unsigned long long)total, (long long)bound);
    const char *tasks = strstr(l, "\"tasks\":[");
    CHECK(tasks != NULL, "snapshot without tasks");
    if (!tasks)
        return;
    static __thread uint64_t ids[8192];
    uint64_t n = 0;
    for (const char *p = tasks; (p = strstr(p, "{\"id\":")); p++) {
        uint64_t id = strtoull(p + 6, NULL, 10);
        if (n < sizeof ids / sizeof ids[0])
            ids[n] = id;
        n++;
        const char *name = strstr(p, "\"name\":");
        if (name && name[7] == '"') {
            const char *end = strchr(name + 8, '"');
            CHECK(end && known_name(name + 8, (size_t)(end - name - 8)), "unknown name in %.80s",
                  p);
        } else {
            CHECK(name && strncmp(name + 7, "null", 4) == 0, "bad name in %.80s", p);
        }
        const char *st = strstr(p, "\"state\":\"");
        CHECK(st && (strncmp(st + 9, "ready\"", 6) == 0 || strncmp(st + 9, "running\"", 8) == 0 ||
                     strncmp(st + 9, "waiting\"", 8) == 0 || strncmp(st + 9, "blocking\"", 9) == 0),
              "bad state in %.80s", p);
        atomic_store(&seen_id, id);
    }
    CHECK(n == listed, "%llu entries, tasks_listed %llu", (unsigned long long)n,
          (unsigned long long)listed);
    if (n <= sizeof ids / sizeof ids[0]) {
        qsort(ids, n, sizeof ids[0], cmp_u64);
        for (uint64_t i = 1; i < n; i++)
            CHECK(ids[i] != ids[i - 1], "id %llu twice in one snapshot",
                  (unsigned long long)ids[i]);
    }
    atomic_fetch_add(&snapshots, 1);
}

static void check_line(const char *l)
{
    CHECK(json_valid(l), "not JSON: %.200s", l);
    if (strncmp(l, "{\"type\":\"snapshot\",", 19) == 0)
        check_snapshot(l);
    else if (strncmp(l, "{\"type\":\"backtrace\",", 20) == 0)
        atomic_fetch_add(&backtraces, 1);
    else if (strncmp(l, "{\"type\":\"error\",", 16) == 0) {
        atomic_fetch_add(&errors, 1);
        if (strstr(l, "too many clients"))
            atomic_fetch_add(&refused, 1);
    } else
        CHECK(strncmp(l, "{\"type\":\"help\",", 15) == 0, "unknown reply %.120s", l);
    atomic_fetch_add(&lines_ok, 1);
}

/* Reads and checks whole lines for up to ms; returns false at EOF. */
static bool read_lines(int fd, char **buf, size_t *len, size_t *cap, int ms, int max_lines)
{
    int64_t end = weft_now() + (int64_t)ms * WEFT_MS;
    int got = 0;
    while (got < max_lines) {
        int64_t left = end - weft_now();
        if (left <= 0)
            return true;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left / WEFT_MS) + 1) <= 0)
            continue;
        if (*cap - *len < 65536) {
            *cap = *cap ? *cap * 2 : 1 << 16;
            *buf = realloc(*buf, *cap);
        }
        ssize_t r = recv(fd, *buf + *len, *cap - *len - 1, 0);
        if (r <= 0)
            return false;
        *len += (size_t)r;
        char *nl;
        while ((nl = memchr(*buf, '\n', *len))) {
            *nl = '\0';
            check_line(*buf);
            size_t used = (size_t)(nl + 1 - *buf);
            memmove(*buf, nl + 1, *len - used);
            *len -= used;
            got++;
        }
    }
    return true;
}

static void *client(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 104729 + rng_seed();
    char *buf = NULL;
    size_t cap = 0;
    while (!atomic_load(&clients_stop)) {
        int fd = dial();
        if (fd < 0) {
            stress_os_sleep_ns(WEFT_MS);
            continue;
        }
        atomic_fetch_add(&connects, 1);
        size_t len = 0;
        int rounds = 1 + (int)rng_below(&rng, 6);
        bool open = true;
        for (int r = 0; open && r < rounds && !atomic_load(&clients_stop); r++) {
            char cmd[64];
            switch (rng_below(&rng, 6)) {
            case 0:
            case 1: snprintf(cmd, sizeof cmd, "snapshot\n"); break;
            case 2: snprintf(cmd, sizeof cmd, "watch 10\n"); break;
            case 3:
                snprintf(cmd, sizeof cmd, "backtrace %llu\n",
                         (unsigned long long)(rng_below(&rng, 3) == 0 ? atomic_load(&seen_id)
                                              : rng_below(&rng, 2) == 0
                                                  ? atomic_load(&main_id)
                                                  : rng_below(&rng, 1u << 20)));
                break;
            case 4: snprintf(cmd, sizeof cmd, "w%cat\n", (char)(1 + rng_below(&rng, 255))); break;
            default: snprintf(cmd, sizeof cmd, "help\n"); break;
            }
            if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0)
                break;
            switch (rng_below(&rng, 4)) {
            case 0: /* hang up without reading */ open = false; break;
            case 1: { /* read a little: mid-line */
                char b[64];
                if (recv(fd, b, sizeof b, 0) <= 0)
                    open = false;
                len = 0;  /* the rest of the line is not ours to check */
                open = false;
                break;
            }
            default: open = read_lines(fd, &buf, &len, &cap, 200, 1 + (int)rng_below(&rng, 4));
            }
        }
        atomic_fetch_add(&hangups, 1);
        close(fd);
        stress_progress();
        /* A pause, so that the console's bound is met now and then, not
         * always. */
        stress_os_sleep_ns((int64_t)rng_below(&rng, 4) * WEFT_MS);
    }
    free(buf);
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_event_init(&never);
    atomic_store(&main_id, weft_task_id(weft_self()));
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        CHECK(pthread_create(&th[i], NULL, client, (void *)(uintptr_t)i) == 0, "thread");
    weft_task *c[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        c[i] = weft_spawn_named("churn", churn, (void *)(uintptr_t)i);
    CHECK(weft_gather(c, NWORKERS, NULL) == 0, "churn gather");
    atomic_store(&clients_stop, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    weft_stats s;
    CHECK(weft_stats_get(&s) == 0 && s.tasks_alive == 1, "tasks alive at the end: %llu",
          (unsigned long long)s.tasks_alive);
    weft_event_destroy(&never);
    return NULL;
}

int main(void)
{
    stress_init("stress_console_storm", 4, dump_state);
    snprintf(sock_path, sizeof sock_path, "/tmp/weft-console-storm-%d.sock", (int)getpid());
    unlink(sock_path);
    setenv("WEFT_CONSOLE", sock_path, 1);
    int fds = stress_count_fds();
    stress_run(NWORKERS, main_task, NULL);
    CHECK(access(sock_path, F_OK) != 0, "%s left behind", sock_path);
    CHECK(stress_count_fds() == fds, "descriptors: %d before, %d after", fds, stress_count_fds());
    CHECK(atomic_load(&live) == 0, "live %lld at the end", (long long)atomic_load(&live));
    CHECK(atomic_load(&spawned) == atomic_load(&exited), "spawned %llu, exited %llu",
          (unsigned long long)atomic_load(&spawned), (unsigned long long)atomic_load(&exited));
    CHECK(atomic_load(&snapshots) > 0 && atomic_load(&backtraces) > 0 && atomic_load(&errors) > 0,
          "every kind of reply seen");
    return stress_finish("%llu tasks; %llu connections, %llu lines checked (%llu snapshots, "
                         "%llu backtraces, %llu errors, %llu refused)",
                         (unsigned long long)atomic_load(&spawned),
                         (unsigned long long)atomic_load(&connects),
                         (unsigned long long)atomic_load(&lines_ok),
                         (unsigned long long)atomic_load(&snapshots),
                         (unsigned long long)atomic_load(&backtraces),
                         (unsigned long long)atomic_load(&errors),
                         (unsigned long long)atomic_load(&refused));
}
