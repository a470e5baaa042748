/*
 * The worker count inside a real cgroup CPU quota, and following it: the
 * test creates a cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us where the cpu
 * controller is bound to v1), gives it a quota of 1.5 CPUs, moves a forked
 * child into it and runs a runtime there with the default worker count; the
 * child reports weft_workers_active() (2, or 1 on a 1-CPU machine); the test
 * lowers the quota to 0.5 CPU (1 worker), then lifts it (every CPU), and
 * the child reports each change as sysmon picks it up (within about 1 s).
 *
 * Exit 77 (skipped) where no group can be made: not root, no cpu
 * controller, a read-only or delegated hierarchy.  The parser alone:
 * tests/parts/test_cgroup.c; the mechanism with fixtures: tests/test_quota.c.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testutil.h"

static char group[600];    /* the group made for the test */
static int version;        /* 1 or 2 */
static pid_t child = -1;   /* the child in the group, until it is reaped */

static bool write_file(const char *dir, const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    return ok;
}

static bool exists(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The mount point of the hierarchy with the cpu controller: v1's when
 * /proc/self/cgroup names cpu on a v1 line (hybrid), else cgroup2's. */
static bool find_mount(char *mnt, size_t cap)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[1024];
    version = 2;
    while (fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        for (char *tok = strtok(c1 + 1, ","); tok; tok = strtok(NULL, ","))
            if (strcmp(tok, "cpu") == 0)
                version = 1;
    }
    fclose(f);
    if (!(f = fopen("/proc/self/mountinfo", "re")))
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char point[512], fstype[64], opts[512];
        char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %511s", point) != 1 ||
            sscanf(dash + 3, "%63s %*s %511s", fstype, opts) != 2)
            continue;
        if (version == 2 && strcmp(fstype, "cgroup2") == 0)
            found = true;
        if (version == 1 && strcmp(fstype, "cgroup") == 0) {
            for (char *tok = strtok(opts, ","); tok; tok = strtok(NULL, ","))
                if (strcmp(tok, "cpu") == 0)
                    found = true;
        }
        if (found)
            snprintf(mnt, cap, "%s", point);
    }
    fclose(f);
    return found;
}

/* Sets the group's quota to q microseconds per 100 ms (-1: none). */
static bool set_quota(long q)
{
    char text[64];
    if (version == 2) {
        if (q < 0)
            snprintf(text, sizeof text, "max 100000\n");
        else
            snprintf(text, sizeof text, "%ld 100000\n", q);
        return write_file(group, "cpu.max", text);
    }
    snprintf(text, sizeof text, "%ld\n", q);
    return write_file(group, "cpu.cfs_period_us", "100000\n") &&
           write_file(group, "cpu.cfs_quota_us", text);
}

/* Makes the test's group; false (nothing left behind) where it cannot. */
static bool make_group(void)
{
    char mnt[512];
    if (geteuid() != 0 || !find_mount(mnt, sizeof mnt))
        return false;
    snprintf(group, sizeof group, "%s/weft-test-%d", mnt, (int)getpid());
    if (mkdir(group, 0755) < 0)
        return false;
    const char *file = version == 2 ? "cpu.max" : "cpu.cfs_quota_us";
    if (version == 2 && !exists(group, file))
        write_file(mnt, "cgroup.subtree_control", "+cpu\n");  /* may be refused */
    if (!exists(group, file) || !set_quota(150000)) {
        rmdir(group);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* The child: a runtime with the default worker count                  */
/* ------------------------------------------------------------------ */

static int report_fd;
static unsigned want[3];

static void *child_main(void *arg)
{
    (void)arg;
    for (int step = 0; step < 3; step++) {
        /* Up to 5 s for sysmon's re-read (every second). */
        for (int i = 0; i < 500 && weft_workers_active() != want[step]; i++)
            weft_sleep(10 * WEFT_MS);
        unsigned got[2] = {weft_workers_active(), weft_workers()};
        if (write(report_fd, got, sizeof got) != (ssize_t)sizeof got)
            return NULL;
        char c;
        if (step < 2 && read(report_fd, &c, 1) != 1)  /* the parent changed the quota */
            return NULL;
    }
    return NULL;
}

static void test_real_quota(void **state)
{
    (void)state;
    cpu_set_t cs;
    assert_int_equal(sched_getaffinity(0, sizeof cs, &cs), 0);
    unsigned ncpus = (unsigned)CPU_COUNT(&cs);
    want[0] = ncpus < 2 ? ncpus : 2;  /* 1.5 CPUs */
    want[1] = 1;                      /* 0.5 CPU */
    want[2] = ncpus;                  /* no quota */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    child = pid;
    if (pid == 0) {
        close(sv[0]);
        report_fd = sv[1];
        char c;
        if (read(report_fd, &c, 1) != 1)  /* moved into the group */
            _exit(2);
        _exit(weft_run(child_main, NULL, NULL) == 0 ? 0 : 3);
    }
    close(sv[1]);
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%d\n", (int)pid);
    bool moved = write_file(group, "cgroup.procs", pidtext);
    assert_int_equal(write(sv[0], "g", 1), 1);
    static const long quotas[3] = {150000, 50000, -1};
    unsigned got[3][2] = {{0}};
    for (int step = 0; step < 3; step++) {
        if (read(sv[0], got[step], sizeof got[step]) != (ssize_t)sizeof got[step])
            break;
        fprintf(stderr, "cgroup v%d quota %ld/100000: %u of %u workers active (want %u)\n", version,
                quotas[step], got[step][0], got[step][1], want[step]);
        if (step < 2) {
            assert_true(set_quota(quotas[step + 1]));
            assert_int_equal(write(sv[0], "q", 1), 1);
        }
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    child = -1;
    close(sv[0]);
    assert_true(moved);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int step = 0; step < 3; step++) {
        assert_int_equal(got[step][0], want[step]);
        assert_int_equal(got[step][1], ncpus);  /* the threads: one per CPU */
    }
}

int main(void)
{
    if (!make_group()) {
        printf("skipped: cannot make a cgroup with a CPU quota here (needs root and a "
               "writable cpu controller)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {T_TEST(test_real_quota)};
    int rc = cmocka_run_group_tests_name("quota_real", tests, NULL, NULL);
    if (child > 0) {  /* a failed check left it running: the group must be empty to go */
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (rmdir(group) < 0)
        fprintf(stderr, "cannot remove %s: %s\n", group, strerror(errno));
    return rc;
}
