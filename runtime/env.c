/*
 * Settings: weft_config fields, else environment variables, else defaults.
 * A malformed or out-of-range value is an error (-EINVAL) with one line on
 * stderr naming the variable; it is never silently ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "internal.h"

/* Parses a whole unsigned decimal; suffixes K/M/G when sizes is true. */
static int parse_u64(const char *s, bool sizes, unsigned long long *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (sizes && *end) {
        unsigned long long m = 1;
        switch (*end) {
        case 'k': case 'K': m = 1ull << 10; break;
        case 'm': case 'M': m = 1ull << 20; break;
        case 'g': case 'G': m = 1ull << 30; break;
        default: return -1;
        }
        if (v > ULLONG_MAX / m)
            return -1;
        v *= m;
        end++;
    }
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int bad(const char *var, const char *val, const char *want)
{
    weft__log("weft: %s=%s is invalid: expected %s", var, val, want);
    return -EINVAL;
}

static int env_uint(const char *var, unsigned lo, unsigned hi, unsigned *out, bool *set)
{
    const char *v = getenv(var);
    *set = false;
    if (!v)
        return 0;
    unsigned long long x;
    if (parse_u64(v, false, &x) < 0 || x < lo || x > hi) {
        char want[96];
        snprintf(want, sizeof want, "an integer from %u to %u", lo, hi);
        return bad(var, v, want);
    }
    *out = (unsigned)x;
    *set = true;
    return 0;
}

static int env_bool(const char *var, bool *out)
{
    const char *v = getenv(var);
    if (!v)
        return 0;
    if (strcmp(v, "0") == 0)
        *out = false;
    else if (strcmp(v, "1") == 0)
        *out = true;
    else
        return bad(var, v, "0 or 1");
    return 0;
}

/* A variable that takes one of a few words (words[0] is the default, also
 * for an empty value): *out is the index of the one given. */
static int env_word(const char *var, const char *const *words, int n, const char *want,
                    int *out)
{
    const char *v = getenv(var);
    *out = 0;
    if (!v || !*v)
        return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(v, words[i]) == 0) {
            *out = i;
            return 0;
        }
    return bad(var, v, want);
}

static size_t round_page(size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return (n + ps - 1) & ~(ps - 1);
}

/* The deterministic-testing settings (docs/testing.md): WEFT_CLOCK,
 * WEFT_SEED, WEFT_CHAOS, WEFT_FAULTS (the last is checked by faults.c). */
static int resolve_testing(const weft_config *c, weft__settings *out)
{
    if (c->clock < WEFT_CLOCK_ENV || c->clock > WEFT_CLOCK_VIRTUAL) {
        weft__log("weft: weft_config.clock=%d is invalid: expected 0 (WEFT_CLOCK), "
                  "WEFT_CLOCK_REAL or WEFT_CLOCK_VIRTUAL", c->clock);
        return -EINVAL;
    }
    out->vclock = c->clock == WEFT_CLOCK_VIRTUAL;
    if (c->clock == WEFT_CLOCK_ENV) {
        const char *v = getenv("WEFT_CLOCK");
        if (v) {  /* set but empty is malformed, as for every variable */
            if (strcmp(v, "virtual") == 0)
                out->vclock = true;
            else if (strcmp(v, "real") != 0)
                return bad("WEFT_CLOCK", v, "real or virtual");
        }
    }

    bool set;
    int rc;
    unsigned chaos = 0;
    if ((rc = env_uint("WEFT_CHAOS", 0, 3, &chaos, &set)) < 0)
        return rc;
    out->chaos = chaos;

    const char *sd = getenv("WEFT_SEED");
    if (sd) {
        unsigned long long x;
        if (strcmp(sd, "random") == 0) {
            out->seed = weft__seed_random();
            weft__log("weft: WEFT_SEED=%llu (chosen at random)", (unsigned long long)out->seed);
        } else if (parse_u64(sd, false, &x) == 0) {
            out->seed = x;
        } else {
            return bad("WEFT_SEED", sd, "an unsigned 64-bit decimal integer or random");
        }
        out->seeded = true;
    }
    /* Set but empty is malformed, as for the other variables. */
    out->faults = getenv("WEFT_FAULTS");
    if (out->faults && (rc = weft__faults_parse(out->faults, out->fault_thr)) < 0)
        return rc;
    /* Chaos and faults draw from the seed: without one, one is chosen. */
    if (!out->seeded && (out->chaos || out->faults)) {
        out->seed = weft__seed_random();
        out->seeded = true;
        weft__log("weft: WEFT_SEED=%llu (chosen at random for %s)",
                  (unsigned long long)out->seed, out->chaos ? "WEFT_CHAOS" : "WEFT_FAULTS");
    }
    return 0;
}

/* weft_run: resolves cfg and the environment into out. */
int weft__settings_resolve(const weft_config *cfg, weft__settings *out)
{
    weft_config c = cfg ? *cfg : WEFT_CONFIG_DEFAULT;
    bool set;
    int rc;
    memset(out, 0, sizeof *out);

    if (c.workers > WEFT_MAX_WORKERS) {
        weft__log("weft: weft_config.workers=%u is invalid: expected at most %u", c.workers,
                  WEFT_MAX_WORKERS);
        return -EINVAL;
    }
    out->workers = c.workers;
    if (!out->workers) {
        unsigned v = 0;
        if ((rc = env_uint("WEFT_WORKERS", 1, WEFT_MAX_WORKERS, &v, &set)) < 0)
            return rc;
        out->workers = set ? v : 0; /* 0: one per CPU, decided by topo.c */
    }

    if (c.stack_size) {
        if (c.stack_size < WEFT_MIN_STACK_SIZE || c.stack_size > WEFT_MAX_STACK_SIZE) {
            weft__log("weft: weft_config.stack_size=%zu is invalid: expected %zu to %zu bytes",
                      c.stack_size, WEFT_MIN_STACK_SIZE, WEFT_MAX_STACK_SIZE);
            return -EINVAL;
        }
        out->stack_size = c.stack_size;
    } else {
        const char *v = getenv("WEFT_STACK_SIZE");
        unsigned long long x;
        if (v) {
            if (parse_u64(v, true, &x) < 0 || x < WEFT_MIN_STACK_SIZE || x > WEFT_MAX_STACK_SIZE)
                return bad("WEFT_STACK_SIZE", v, "a size from 16K to 1G (bytes, suffix K/M/G)");
            out->stack_size = (size_t)x;
        } else {
            out->stack_size = WEFT_DEFAULT_STACK_SIZE;
        }
    }
    out->stack_size = round_page(out->stack_size);

    if (c.blocking_threads > 65536) {
        weft__log("weft: weft_config.blocking_threads=%u is invalid: expected at most 65536",
                  c.blocking_threads);
        return -EINVAL;
    }
    out->blocking_threads = c.blocking_threads;
    if (!out->blocking_threads) {
        unsigned v = 0;
        if ((rc = env_uint("WEFT_BLOCKING_THREADS", 1, 65536, &v, &set)) < 0)
            return rc;
        out->blocking_threads = set ? v : 512;
    }

    if (c.pin < -1 || c.pin > 1) {
        weft__log("weft: weft_config.pin=%d is invalid: expected -1, 0 or 1", c.pin);
        return -EINVAL;
    }
    out->pin = true;
    out->pin_auto = false;
    if (c.pin == -1) {
        out->pin_auto = !getenv("WEFT_PIN");
        if ((rc = env_bool("WEFT_PIN", &out->pin)) < 0)
            return rc;
    } else {
        out->pin = c.pin;
    }

    if (c.debug < -1 || c.debug > 1) {
        weft__log("weft: weft_config.debug=%d is invalid: expected -1, 0 or 1", c.debug);
        return -EINVAL;
    }
    out->debug = false;
    if (c.debug == -1) {
        if ((rc = env_bool("WEFT_DEBUG", &out->debug)) < 0)
            return rc;
    } else {
        out->debug = c.debug;
    }

    unsigned slow = 100;
    if ((rc = env_uint("WEFT_SLOW_MS", 1, 3600000, &slow, &set)) < 0)
        return rc;
    out->slow_ns = (int64_t)slow * WEFT_MS;

    unsigned spread = 500;  /* Linux's sched_migration_cost_ns default */
    if ((rc = env_uint("WEFT_SPREAD_US", 0, 1000000, &spread, &set)) < 0)
        return rc;
    out->spread_ns = (int64_t)spread * 1000;

    unsigned trim = 1000;  /* docs/scheduler.md, section 8: the trim policy */
    if ((rc = env_uint("WEFT_TRIM_MS", 0, 3600000, &trim, &set)) < 0)
        return rc;
    out->trim_ns = (int64_t)trim * WEFT_MS;

    const char *ds = getenv("WEFT_DUMP_SIGNAL");
    out->dump_signal = 0;
    if (ds && *ds) {
        out->dump_signal = weft__signal_number(ds);
        if (out->dump_signal < 0)
            return bad("WEFT_DUMP_SIGNAL", ds, "a signal name such as USR1 or QUIT, or its number");
    }
    const char *tr = getenv("WEFT_TRACE");
    out->trace_path = tr && *tr ? tr : NULL;
    const char *con = getenv("WEFT_CONSOLE");
    out->console_path = con && *con ? con : NULL;

    /* In the order of WEFT__AIO_* (runtime/aio.h). */
    static const char *const aio_words[] = {"auto", "async", "off"};
    if ((rc = env_word("WEFT_IO_URING", aio_words, 3, "auto, async or off", &out->aio)) < 0)
        return rc;
    static const char *const mb_words[] = {"auto", "off"};
    int mb;
    if ((rc = env_word("WEFT_MEMBARRIER", mb_words, 2, "auto or off", &mb)) < 0)
        return rc;
    out->membarrier = mb == 0;

    if ((rc = resolve_testing(&c, out)) < 0)
        return rc;

    const char *g = getenv("WEFT_GUARD");
    if (g && strcmp(g, "mprotect") != 0 && strcmp(g, "auto") != 0)
        return bad("WEFT_GUARD", g, "auto or mprotect");
    return 0;
}
