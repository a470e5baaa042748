/*
 * The cgroup CPU quota parser (runtime/cgroup.c) against fixture trees in
 * tests/parts/cgroup/<case>/: each holds proc/self/cgroup,
 * proc/self/mountinfo and the limit files under the mount points they name,
 * read through the parser's root prefix.  Both cgroup versions: "max" and
 * -1 (no limit), quotas rounding up (0.5 CPU is 1), nested groups (the
 * tightest level wins, the hierarchy's root without a file), a container's
 * mount of its own group, an escaped mount point, missing files and groups
 * (no quota, no message), junk (-EINVAL and one line naming the file and
 * what it holds).  The runtime's use of it: tests/test_quota.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cgroup.h"
#include "parts.h"

#define FIXTURES WEFT_CGROUP_FIXTURES

typedef struct {
    int rc;
    unsigned cpus;
    char err[512];
} result;

static result quota(const char *name)
{
    char root[512];
    snprintf(root, sizeof root, "%s/%s", FIXTURES, name);
    result r;
    r.err[0] = '\0';
    r.rc = weft__cgroup_quota(root, &r.cpus, r.err, sizeof r.err);
    return r;
}

static void expect(const char *name, unsigned cpus)
{
    result r = quota(name);
    if (r.rc != 0 || r.cpus != cpus)
        fail_msg("%s: rc %d cpus %u (want 0, %u): %s", name, r.rc, r.cpus, cpus, r.err);
    assert_string_equal(r.err, "");
}

/* A junk file: the error code, and one line naming the file and content. */
static void expect_error(const char *name, int rc, const char *file, const char *shows)
{
    result r = quota(name);
    assert_int_equal(r.rc, rc);
    assert_int_equal(r.cpus, 0);
    assert_non_null(strstr(r.err, "weft: "));
    assert_null(strchr(r.err, '\n'));
    if (!strstr(r.err, file) || !strstr(r.err, shows))
        fail_msg("%s: message \"%s\" lacks \"%s\" or \"%s\"", name, r.err, file, shows);
    assert_non_null(strstr(r.err, "CPU quota ignored"));
}

static void test_v2(void **state)
{
    (void)state;
    expect("v2-max", 0);
    expect("v2-150", 2);
    expect("v2-half", 1);  /* 0.5 CPU rounds up to 1 */
    expect("v2-escaped", 2);
}

static void test_v2_nested(void **state)
{
    (void)state;
    expect("v2-nested", 1);        /* parent 1 CPU, child 3: the parent binds */
    expect("v2-nested-inner", 3);  /* 4, max, 2.5: the innermost binds */
    expect("v2-container", 2);     /* the mount shows the container's own group */
}

static void test_v1(void **state)
{
    (void)state;
    expect("v1-none", 0);  /* -1 */
    expect("v1-150", 2);
    expect("v1-nested", 1);  /* root -1, parent 0.5, child 3 */
}

static void test_missing(void **state)
{
    (void)state;
    expect("no-such-root", 0);  /* no /proc at all */
    expect("v2-missing", 0);    /* the group's directory is not there */
    expect("v2-unmounted", 0);  /* no cgroup2 mount */
    expect("junk-proc", 0);     /* lines that are not what the kernel writes: skipped */
}

static void test_junk(void **state)
{
    (void)state;
    expect_error("v2-junk", -EINVAL, "/sys/fs/cgroup/app/cpu.max", "\"banana\"");
    expect_error("v2-junk-period", -EINVAL, "cpu.max", "\"100000 0\"");
    expect_error("v2-zero", -EINVAL, "cpu.max", "\"0 100000\"");
    expect_error("v1-junk", -EINVAL, "cpu,cpuacct/app/cpu.cfs_quota_us", "\"12x\"");
    expect_error("v1-no-period", -ENOENT, "cpu.cfs_period_us", "No such file");
}

/* Re-reading the kept descriptors sees a rewritten file, as sysmon does. */
static void test_reread(void **state)
{
    (void)state;
    char dir[] = "/tmp/weft-cgroup-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600], cmd[1400];
    snprintf(cmd, sizeof cmd, "cp -r %s/v2-150/. %s", FIXTURES, dir);
    assert_int_equal(system(cmd), 0);
    weft__cgroup cg;
    assert_int_equal(weft__cgroup_open(&cg, dir), 0);
    assert_int_equal(cg.version, 2);
    assert_int_equal(cg.n, 1);
    unsigned cpus;
    char err[512] = "";
    assert_int_equal(weft__cgroup_limit(&cg, &cpus, err, sizeof err), 0);
    assert_int_equal(cpus, 2);
    snprintf(path, sizeof path, "%s/sys/fs/cgroup/app/cpu.max", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("max 100000\n", f);
    fclose(f);
    assert_int_equal(weft__cgroup_limit(&cg, &cpus, err, sizeof err), 0);
    assert_int_equal(cpus, 0);
    f = fopen(path, "w");
    fputs("junk\n", f);
    fclose(f);
    assert_int_equal(weft__cgroup_limit(&cg, &cpus, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "\"junk\""));
    weft__cgroup_close(&cg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2),   cmocka_unit_test(test_v2_nested),
        cmocka_unit_test(test_v1),   cmocka_unit_test(test_missing),
        cmocka_unit_test(test_junk), cmocka_unit_test(test_reread),
    };
    return cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
}
