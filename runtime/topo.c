/*
 * Topology with hwloc: which CPUs the process may use (its affinity mask,
 * intersected with the cpuset its cgroup allows), pinning, and each worker's
 * steal order by distance.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>

#include "internal.h"

static hwloc_topology_t load(void)
{
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) < 0)
        return NULL;
    /* CPUs and caches are all we need: skip I/O discovery (slow). */
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    if (hwloc_topology_load(topo) < 0) {
        hwloc_topology_destroy(topo);
        return NULL;
    }
    return topo;
}

/* weft_run.  Fills *cpus_out with the OS indexes of the CPUs this process
 * may run on (at least one entry). */
int weft__topo_cpus(weft__runtime *rt, int **cpus_out, unsigned *n_out)
{
    hwloc_topology_t topo = load();
    rt->topo = topo;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return -ENOMEM;
    if (!topo || hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) < 0) {
        cpu_set_t cs;
        hwloc_bitmap_zero(set);
        if (sched_getaffinity(0, sizeof cs, &cs) == 0) {
            for (int i = 0; i < CPU_SETSIZE; i++)
                if (CPU_ISSET(i, &cs))
                    hwloc_bitmap_set(set, (unsigned)i);
        }
    }
    if (topo)
        hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(topo));
    int w = hwloc_bitmap_weight(set);
    if (w <= 0) {
        hwloc_bitmap_only(set, 0);
        w = 1;
    }
    int *cpus = malloc(sizeof(int) * (size_t)w);
    if (!cpus) {
        hwloc_bitmap_free(set);
        return -ENOMEM;
    }
    unsigned n = 0;
    int i;
    hwloc_bitmap_foreach_begin(i, set) { cpus[n++] = i; }
    hwloc_bitmap_foreach_end();
    hwloc_bitmap_free(set);
    *cpus_out = cpus;
    *n_out = n;
    return 0;
}

/* How close two CPUs are: the depth of their nearest common ancestor. */
static int closeness(hwloc_topology_t topo, int a, int b)
{
    if (!topo || a < 0 || b < 0)
        return 0;
    hwloc_obj_t pa = hwloc_get_pu_obj_by_os_index(topo, (unsigned)a);
    hwloc_obj_t pb = hwloc_get_pu_obj_by_os_index(topo, (unsigned)b);
    if (!pa || !pb)
        return 0;
    hwloc_obj_t c = hwloc_get_common_ancestor_obj(topo, pa, pb);
    return c ? c->depth : 0;
}

static const weft__runtime *sort_rt;
static int sort_self;
static int cmp_victims(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    hwloc_topology_t topo = sort_rt->topo;
    int ca = closeness(topo, sort_rt->workers[sort_self]->cpu, sort_rt->workers[a]->cpu);
    int cb = closeness(topo, sort_rt->workers[sort_self]->cpu, sort_rt->workers[b]->cpu);
    if (ca != cb)
        return cb - ca;  /* closer first */
    unsigned n = sort_rt->nworkers;
    unsigned da = ((unsigned)a + n - (unsigned)sort_self) % n;
    unsigned db = ((unsigned)b + n - (unsigned)sort_self) % n;
    return (int)da - (int)db;  /* then round-robin from the next worker */
}

/* weft_run, single-threaded: each worker's victims, nearest first. */
int weft__topo_victims(weft__runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *w = rt->workers[i];
        w->victims = malloc(sizeof(int) * (rt->nworkers ? rt->nworkers : 1));
        if (!w->victims)
            return -ENOMEM;
        unsigned k = 0;
        for (unsigned j = 0; j < rt->nworkers; j++)
            if (j != i)
                w->victims[k++] = (int)j;
        sort_rt = rt;
        sort_self = (int)i;
        qsort(w->victims, k, sizeof(int), cmp_victims);
    }
    return 0;
}

/* The worker thread at start.  Pins the calling thread to one CPU. */
void weft__topo_pin(int cpu)
{
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(cpu, &cs);
    pthread_setaffinity_np(pthread_self(), sizeof cs, &cs);
}

void weft__topo_free(weft__runtime *rt)
{
    if (rt->topo)
        hwloc_topology_destroy(rt->topo);
    rt->topo = NULL;
}
