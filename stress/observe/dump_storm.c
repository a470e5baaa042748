/*
 * stress_dump_storm: readable dumps (weft_dump_ex) from several threads at
 * once, racing spawns and exits, so that the symbolizer's shared session
 * (runtime/symbolize.c: one dwfl, its lock, re-read mappings each pass) is
 * used concurrently while the tasks it describes come and go.
 *
 *  - churn coroutines (one per worker) spawn batches of short tasks that
 *    wait on an event, sleep or yield through named static functions, and
 *    join them;
 *  - three plain threads and one coroutine dump in a loop to a memfd with
 *    weft_dump_ex(fd, 0); one plain thread with weft_dump (raw), so both
 *    forms interleave;
 * Invariants, for every dump: it returns 0; it starts with the header;
 * every block is a "task <id> ...]:" line followed by frame lines of the
 * documented form (module(symbol+0xoff) [0xaddr] [at file:line]
 * [(inlined ...)]...), and ends with a blank line; in readable dumps, the
 * frames of this program's static functions carry dump_storm.c:<line>.
 * Nothing crashes (ASan), no race (TSan).
 *
 * Default 4 s; WEFT_STRESS_SECONDS for longer.
 */
#include "stress.h"

#include <ctype.h>
#include <sys/mman.h>

#define BATCH STRESS_SCALE(64, 16)
#define NDUMPERS 3

static _Atomic int stop_dumpers;
static _Atomic uint64_t dumps, raw_dumps, frames, own_frames, spawned;

static void dump_state(void)
{
    fprintf(stderr, "  dumps %" PRIu64 " (raw %" PRIu64 "), frames %" PRIu64 ", spawned %" PRIu64 "\n",
            atomic_load(&dumps), atomic_load(&raw_dumps), atomic_load(&frames),
            atomic_load(&spawned));
    weft_dump(2);
}

static weft_event gate;

static __attribute__((noinline)) void *storm_wait(void *arg)
{
    (void)arg;
    void *r = (void *)(intptr_t)weft_event_wait(&gate, 50 * WEFT_MS);
    __asm__ volatile("" ::: "memory");
    return r;
}

static __attribute__((noinline)) void *storm_sleep(void *arg)
{
    (void)arg;
    void *r = (void *)(intptr_t)weft_sleep(200 * WEFT_US);
    __asm__ volatile("" ::: "memory");
    return r;
}

static __attribute__((noinline)) void *storm_yield(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        weft_yield();
    __asm__ volatile("" ::: "memory");
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    weft_fn fns[3] = {storm_wait, storm_sleep, storm_yield};
    unsigned k = 0;
    while (!stress_time_up()) {
        weft_task *t[BATCH];
        for (int i = 0; i < BATCH; i++)
            t[i] = weft_spawn_named("storm", fns[k++ % 3], NULL);
        atomic_fetch_add_explicit(&spawned, BATCH, memory_order_relaxed);
        weft_sleep(100 * WEFT_US);
        for (int i = 0; i < BATCH; i++)
            weft_join(t[i], NULL);
        stress_progress();
    }
    return NULL;
}

/* One frame line (without its newline) of the documented form. */
static bool frame_ok(const char *l, bool *own)
{
    const char *p = l;
    if (*l != '[') {  /* "[0xaddr]" alone: an address in no module */
        const char *open = strchr(l, '('), *close = open ? strchr(open, ')') : NULL;
        if (!open || open == l || !close || !memchr(open, '+', (size_t)(close - open)))
            return false;
        p = close + 1;
    }
    if (*p == ' ')
        p++;
    if (strncmp(p, "[0x", 3) != 0 || !isxdigit((unsigned char)p[3]))
        return false;
    p += 3;
    while (isxdigit((unsigned char)*p))
        p++;
    if (*p++ != ']')
        return false;
    if (strncmp(p, " at ", 4) == 0) {
        const char *end = strstr(p, " (inlined ");
        if (!end)
            end = p + strlen(p);
        const char *colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':')
                colon = q;
        if (!colon || !isdigit((unsigned char)colon[1]))
            return false;
        const char *own_at = strstr(p, "dump_storm.c:");
        if (own_at && own_at < end)
            *own = true;
        p = colon + 1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    while (strncmp(p, " (inlined ", 10) == 0) {
        const char *e = strchr(p, ')');
        if (!e)
            return false;
        p = e + 1;
    }
    return *p == '\0';
}

/* Checks one dump of n bytes. */
static void check_dump(char *d, size_t n, bool raw)
{
    static const char hdr[] = "weft: dump of all tasks (";
    CHECK(n > sizeof hdr && strncmp(d, hdr, sizeof hdr - 1) == 0, "dump without its header");
    CHECK(n && d[n - 1] == '\n', "dump not ending with a newline");
    char *save = NULL;
    bool in_task = false;
    uint64_t nf = 0, own = 0;
    int line_no = 0;
    /* strtok_r folds blank lines: a block is "task ..." then frames. */
    for (char *l = strtok_r(d, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line_no++) {
        if (line_no == 0)
            continue;  /* the header */
        if (strncmp(l, "task ", 5) == 0) {
            size_t len = strlen(l);
            CHECK(len > 3 && strcmp(l + len - 2, "]:") == 0, "bad task line: %s", l);
            in_task = true;
            continue;
        }
        bool mine = false;
        CHECK(in_task && frame_ok(l, &mine), "bad frame line: %s", l);
        CHECK(!raw || !strstr(l, "] at "), "raw dump with a file: %s", l);
        nf++;
        own += mine;
    }
    atomic_fetch_add_explicit(&frames, nf, memory_order_relaxed);
    atomic_fetch_add_explicit(&own_frames, own, memory_order_relaxed);
}

/* Any thread: one dump to a memfd, read back and checked. */
static void dump_once(bool raw)
{
    int fd = memfd_create("dump", MFD_CLOEXEC);
    CHECK(fd >= 0, "memfd_create: %s", strerror(errno));
    if (fd < 0)
        return;
    int rc = weft_dump_ex(fd, raw ? WEFT_DUMP_RAW : 0);
    CHECK(rc == 0, "weft_dump_ex returned %d", rc);
    off_t n = lseek(fd, 0, SEEK_END);
    char *d = malloc((size_t)n + 1);
    CHECK(d && pread(fd, d, (size_t)n, 0) == n, "cannot read the dump back");
    if (d) {
        d[n] = '\0';
        check_dump(d, (size_t)n, raw);
    }
    free(d);
    close(fd);
    atomic_fetch_add_explicit(raw ? &raw_dumps : &dumps, 1, memory_order_relaxed);
    stress_progress();
}

static void *dumper(void *arg)
{
    bool raw = arg != NULL;
    while (!atomic_load(&stop_dumpers))
        dump_once(raw);
    return NULL;
}

static void *coro_dumper(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_dumpers)) {
        dump_once(false);
        weft_sleep(WEFT_MS);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    (void)arg;
    weft_event_init(&gate);
    pthread_t th[NDUMPERS + 1];
    for (int i = 0; i < NDUMPERS + 1; i++)
        pthread_create(&th[i], NULL, dumper, i == NDUMPERS ? (void *)1 : NULL);
    weft_task *cd = weft_spawn_named("coro-dumper", coro_dumper, NULL);
    unsigned nw = weft_workers();
    weft_task *c[16];
    for (unsigned i = 0; i < nw && i < 16; i++)
        c[i] = weft_spawn_named("churn", churn, NULL);
    for (unsigned i = 0; i < nw && i < 16; i++)
        weft_join(c[i], NULL);
    atomic_store(&stop_dumpers, 1);
    for (int i = 0; i < NDUMPERS + 1; i++)
        while (pthread_tryjoin_np(th[i], NULL) != 0)
            weft_sleep(WEFT_MS);
    weft_join(cd, NULL);
    weft_event_destroy(&gate);
    return NULL;
}

int main(void)
{
    stress_init("stress_dump_storm", 4.0, dump_state);
    int64_t t0 = weft_now();
    weft_config cfg = stress_config(2);
    int rc = weft_run_config(&cfg, main_task, NULL, NULL);
    CHECK(rc == 0, "weft_run_config returned %d", rc);
    CHECK(atomic_load(&dumps) > 0 && atomic_load(&raw_dumps) > 0, "no dumps");
#if WEFT_STRESS_SYMBOLIZE
    CHECK(atomic_load(&own_frames) > 0, "no frame of dump_storm.c named with its file");
#endif
    return stress_finish("%.2f s; %" PRIu64 " readable and %" PRIu64 " raw dumps, %" PRIu64
                         " frames (%" PRIu64 " at dump_storm.c), %" PRIu64 " tasks spawned",
                         (double)(weft_now() - t0) / 1e9, atomic_load(&dumps),
                         atomic_load(&raw_dumps), atomic_load(&frames), atomic_load(&own_frames),
                         atomic_load(&spawned));
}
