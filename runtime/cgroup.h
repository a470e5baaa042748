/*
 * The process's cgroup CPU quota (runtime/cgroup.c): found once, re-read
 * cheaply by sysmon (runtime/active.c follows it).
 */
#ifndef WEFT_CGROUP_H
#define WEFT_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

/* Levels of nesting looked at, from the hierarchy's root down (deeper
 * levels are not opened: 16 is well beyond any container runtime's). */
#define WEFT__CGROUP_LEVELS 16

typedef struct weft__cgroup_level {
    int fd;           /* v2 cpu.max; v1 cpu.cfs_quota_us */
    int fd_period;    /* v1 cpu.cfs_period_us (or -errno when it could not be opened); -1 on v2 */
    char *path;       /* of fd, for messages */
    char *path_period; /* of fd_period (v1), for messages */
} weft__cgroup_level;

typedef struct weft__cgroup {
    int version;      /* 1 or 2; 0: no quota file found (nothing to follow) */
    unsigned n;       /* levels with a limit file */
    weft__cgroup_level level[WEFT__CGROUP_LEVELS];
} weft__cgroup;

/* Finds and opens the limit files of the process's cgroup, reading every
 * path under root ("" or NULL: the real system).  0 (cg->n may be 0: no
 * quota to follow) or -ENOMEM; anything missing means no quota. */
int weft__cgroup_open(weft__cgroup *cg, const char *root);
void weft__cgroup_close(weft__cgroup *cg);
/* Re-reads the files: *cpus = the tightest quota along the path in CPUs,
 * rounded up (0: no limit).  0, or -EINVAL for junk / -errno for a file
 * that cannot be read, with one line (no newline) in err. */
int weft__cgroup_limit(const weft__cgroup *cg, unsigned *cpus, char *err, size_t errlen);
/* open + limit + close, for tests. */
int weft__cgroup_quota(const char *root, unsigned *cpus, char *err, size_t errlen);

#endif
