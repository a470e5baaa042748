/*
 * The CPU quota of the process's cgroup (cgroup v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), read as Go 1.25 sizes GOMAXPROCS
 * and Rust's available_parallelism do: the quota divided by the period,
 * rounded up, the smallest along the path from the hierarchy's root to the
 * process's own group (a parent's limit binds its children).
 *
 * Finding the files (weft__cgroup_open, once at start): /proc/self/cgroup
 * names the process's group in each hierarchy ("0::/a/b" on v2,
 * "4:cpu,cpuacct:/a/b" on v1; a v1 line naming the cpu controller wins, as
 * on a hybrid system the controller is bound there); /proc/self/mountinfo
 * says where that hierarchy is mounted and which of its groups the mount
 * shows (its root field: a container without a cgroup namespace sees
 * "/docker/<id>" mounted at /sys/fs/cgroup).  Each level from the mount down
 * to the group whose limit file exists is opened and kept open.
 *
 * Following it (weft__cgroup_limit, sysmon every WEFT__QUOTA_PERIOD_NS): one
 * pread of each file kept open, a few microseconds in all; nothing is
 * looked up again, so a process moved to another group keeps following the
 * groups it started in (Go does the same).
 *
 * Everything is read under a root prefix ("" on a real system): the tests
 * point it at fixture trees (tests/parts/cgroup/).
 *
 * A missing /proc file, an unmounted controller or a missing limit file
 * means no quota, silently; a limit file with junk in it is an error with
 * one line saying which file holds what, and the caller falls back to the
 * CPU count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup.h"

/* Reads a whole small file under root into buf (NUL-terminated); -errno. */
static int slurp(const char *root, const char *path, char **out)
{
    char full[PATH_MAX];
    if (snprintf(full, sizeof full, "%s%s", root, path) >= (int)sizeof full)
        return -ENAMETOOLONG;
    FILE *f = fopen(full, "re");
    if (!f)
        return -errno;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (len + 1 < cap)
            break;
        char *b = realloc(buf, cap * 2);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        cap *= 2;
    }
    fclose(f);
    if (!buf)
        return -ENOMEM;
    buf[len] = '\0';
    *out = buf;
    return 0;
}

/* Does the comma-separated list contain the word? */
static bool has_word(const char *list, size_t len, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list, *end = list + len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
        if (n == wl && memcmp(p, word, wl) == 0)
            return true;
        p += n + 1;
    }
    return false;
}

/* The process's group in the hierarchy holding the cpu controller: v1's
 * cpu line if there is one, else v2's "0::" line.  *version 0: none. */
static void find_group(const char *text, int *version, char *path, size_t cap)
{
    *version = 0;
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        const char *c1 = memchr(l, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - l)) : NULL;
        if (c2) {
            size_t plen = len - (size_t)(c2 + 1 - l);
            bool v1 = has_word(c1 + 1, (size_t)(c2 - c1 - 1), "cpu");
            bool v2 = c1 - l == 1 && l[0] == '0' && c2 == c1 + 1;
            if ((v1 || (v2 && *version == 0)) && plen < cap && c2[1] == '/') {
                memcpy(path, c2 + 1, plen);
                path[plen] = '\0';
                *version = v1 ? 1 : 2;
                if (v1)
                    return;
            }
        }
        l += len + (nl ? 1 : 0);
    }
}

/* Copies one space-separated field of mountinfo, undoing its octal escapes
 * (\040 for a space); false when it does not fit. */
static bool unescape(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\\' && i + 3 < len + 1 && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            ch = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

/* The mount of the hierarchy (v1: a "cgroup" mount whose options name cpu;
 * v2: a "cgroup2" mount) that shows group: its mount point and the part of
 * group below the mount's root.  false when there is none. */
static bool find_mount(const char *text, int version, const char *group, char *mnt, size_t mcap,
                       const char **rel)
{
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
        const char *f[6];
        size_t fl[6];
        int nf = 0;
        const char *p = l, *end = l + len;
        while (nf < 6 && p < end) {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            f[nf] = p;
            fl[nf] = sp ? (size_t)(sp - p) : (size_t)(end - p);
            nf++;
            p += fl[nf - 1] + 1;
        }
        const char *dash = nf == 6 ? strstr(l, " - ") : NULL;
        if (dash && dash < end) {
            const char *ft = dash + 3;
            const char *ftend = memchr(ft, ' ', (size_t)(end - ft));
            const char *src = ftend ? ftend + 1 : end;
            const char *srcend = src < end ? memchr(src, ' ', (size_t)(end - src)) : NULL;
            const char *opts = srcend ? srcend + 1 : end;
            size_t ftl = ftend ? (size_t)(ftend - ft) : (size_t)(end - ft);
            bool ok = version == 2 ? ftl == 7 && memcmp(ft, "cgroup2", 7) == 0
                                   : ftl == 6 && memcmp(ft, "cgroup", 6) == 0 &&
                                         has_word(opts, (size_t)(end - opts), "cpu");
            char root[PATH_MAX];
            if (ok && unescape(f[3], fl[3], root, sizeof root) &&
                unescape(f[4], fl[4], mnt, mcap)) {
                size_t rl = strlen(root);
                if (strcmp(root, "/") == 0) {
                    *rel = group;
                    return true;
                }
                if (strncmp(group, root, rl) == 0 && (group[rl] == '/' || group[rl] == '\0')) {
                    *rel = group + rl;
                    return true;
                }
            }
        }
        l += len + (nl ? 1 : 0);
    }
    return false;
}

/* Opens root/dir/name: the descriptor or -errno; *path_out (malloc'd) is
 * its path, also when it could not be opened (NULL without memory). */
static int open_under(const char *root, const char *dir, const char *name, char **path_out)
{
    char full[PATH_MAX];
    *path_out = NULL;
    if (snprintf(full, sizeof full, "%s%s/%s", root, dir, name) >= (int)sizeof full)
        return -ENAMETOOLONG;
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 ? fd : -errno;
    *path_out = strdup(full);
    return rc;
}

/* weft_run, before the workers start (or a test). */
int weft__cgroup_open(weft__cgroup *cg, const char *root)
{
    memset(cg, 0, sizeof *cg);
    if (!root)
        root = "";
    char *groups = NULL, *mounts = NULL;
    char group[PATH_MAX], mnt[PATH_MAX];
    const char *rel = NULL;
    int rc = slurp(root, "/proc/self/cgroup", &groups);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return 0; /* no /proc, or no cgroups: no quota */
    find_group(groups, &cg->version, group, sizeof group);
    free(groups);
    if (!cg->version)
        return 0;
    if ((rc = slurp(root, "/proc/self/mountinfo", &mounts)) < 0) {
        cg->version = 0;
        return rc == -ENOMEM ? rc : 0;
    }
    bool found = find_mount(mounts, cg->version, group, mnt, sizeof mnt, &rel);
    free(mounts);
    if (!found) {
        cg->version = 0;
        return 0;
    }
    /* Each level from the mount point down: mnt, mnt/a, mnt/a/b. */
    char dir[PATH_MAX];
    size_t dl = strlen(mnt);
    if (dl >= sizeof dir)
        return 0;
    memcpy(dir, mnt, dl + 1);
    const char *p = rel;
    for (;;) {
        if (cg->n < WEFT__CGROUP_LEVELS) {
            weft__cgroup_level *lv = &cg->level[cg->n];
            char *path = NULL;
            int fd = open_under(root, dir, cg->version == 2 ? "cpu.max" : "cpu.cfs_quota_us",
                                &path);
            if (fd >= 0) {
                lv->fd = fd;
                lv->path = path;
                lv->fd_period = -1;
                cg->n++;
                if (cg->version == 1)
                    lv->fd_period = open_under(root, dir, "cpu.cfs_period_us", &lv->path_period);
                if (!lv->path || (cg->version == 1 && !lv->path_period)) {
                    weft__cgroup_close(cg);
                    return -ENOMEM;
                }
            } else {
                free(path);
            }
        }
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (dl + 1 + n >= sizeof dir)
            break;
        dir[dl++] = '/';
        memcpy(dir + dl, p, n);
        dl += n;
        dir[dl] = '\0';
        p += n;
    }
    if (!cg->n)
        cg->version = 0;
    return 0;
}

void weft__cgroup_close(weft__cgroup *cg)
{
    for (unsigned i = 0; i < cg->n; i++) {
        close(cg->level[i].fd);
        if (cg->level[i].fd_period >= 0)
            close(cg->level[i].fd_period);
        free(cg->level[i].path);
        free(cg->level[i].path_period);
    }
    memset(cg, 0, sizeof *cg);
}

/* One pread of a kept file (cgroup files, like fixtures, re-read from 0). */
static int read_at0(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

/* A whole positive decimal (no sign), or -1. */
static long long positive(const char *s, const char **end)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (errno || v <= 0)
        return -1;
    *end = e;
    return v;
}

static unsigned ceil_div(long long q, long long p)
{
    long long c = q / p + (q % p != 0);
    return c > (long long)UINT_MAX ? UINT_MAX : (unsigned)c;
}

static int junk(char *err, size_t errlen, const char *path, const char *text, const char *want)
{
    if (err && errlen)
        snprintf(err, errlen, "weft: %s holds \"%.40s\": expected %s; CPU quota ignored", path,
                 text, want);
    return -EINVAL;
}

/* Any thread (sysmon; weft_run at start).  The quota's limit in whole CPUs,
 * rounded up: *cpus 0 for no limit.  -EINVAL (junk) or -errno (unreadable)
 * with one line in err. */
int weft__cgroup_limit(const weft__cgroup *cg, unsigned *cpus, char *err, size_t errlen)
{
    *cpus = 0;
    unsigned best = 0;
    for (unsigned i = 0; i < cg->n; i++) {
        const weft__cgroup_level *lv = &cg->level[i];
        char buf[128];
        int rc = read_at0(lv->fd, buf, sizeof buf);
        if (rc < 0) {
            if (err && errlen)
                snprintf(err, errlen, "weft: cannot read %s: %s; CPU quota ignored", lv->path,
                         strerror(-rc));
            return rc;
        }
        long long q, per;
        const char *e;
        if (cg->version == 2) {
            static const char want2[] = "\"max PERIOD\" or \"QUOTA PERIOD\" in microseconds";
            if (strncmp(buf, "max", 3) == 0) {
                e = buf + 3;
                q = -1;
            } else if ((q = positive(buf, &e)) < 0) {
                return junk(err, errlen, lv->path, buf, want2);
            }
            if (*e != ' ' || (per = positive(e + 1, &e)) < 0 || *e)
                return junk(err, errlen, lv->path, buf, want2);
        } else {
            static const char want1[] = "-1 or a positive number of microseconds";
            if (strcmp(buf, "-1") == 0) {
                q = -1;
            } else if ((q = positive(buf, &e)) < 0 || *e) {
                return junk(err, errlen, lv->path, buf, want1);
            }
            if (q < 0)
                continue;
            char pb[64];
            const char *pp = lv->path_period;
            if (lv->fd_period < 0) {
                if (err && errlen)
                    snprintf(err, errlen, "weft: cannot read %s: %s; CPU quota ignored", pp,
                             strerror(-lv->fd_period));
                return lv->fd_period;
            }
            if ((rc = read_at0(lv->fd_period, pb, sizeof pb)) < 0) {
                if (err && errlen)
                    snprintf(err, errlen, "weft: cannot read %s: %s; CPU quota ignored", pp,
                             strerror(-rc));
                return rc;
            }
            if ((per = positive(pb, &e)) < 0 || *e)
                return junk(err, errlen, pp, pb, "a positive number of microseconds");
        }
        if (q < 0)
            continue; /* no limit at this level */
        unsigned c = ceil_div(q, per);
        if (!best || c < best)
            best = c;
    }
    *cpus = best;
    return 0;
}

/* Any thread (tests): open, read once, close. */
int weft__cgroup_quota(const char *root, unsigned *cpus, char *err, size_t errlen)
{
    weft__cgroup cg;
    *cpus = 0;
    int rc = weft__cgroup_open(&cg, root);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "weft: cannot look for a CPU quota: %s", strerror(-rc));
        return rc;
    }
    rc = weft__cgroup_limit(&cg, cpus, err, errlen);
    weft__cgroup_close(&cg);
    return rc;
}
