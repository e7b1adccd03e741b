/* cgroup.c - a node's capacity: one cgroup with a CPU quota and a memory
 * limit, on cgroup v2 or v1.
 *
 * v2 (/sys/fs/cgroup/cgroup.controllers exists and lists cpu and memory):
 * node k of cluster x is /sys/fs/cgroup/cairn/x/k with cpu.max and
 * memory.max, +cpu +memory enabled in the subtree_control of every level
 * above. v1 (cpu and memory hierarchies mounted): the same path under
 * cpu/ and memory/, with cpu.cfs_quota_us and memory.limit_in_bytes.
 * Finding is by name (every directory under .../cairn/x, and the jobs'
 * sub-cgroups under each node's), so down needs no state; removal goes
 * leaves first and retries a cgroup whose last
 * processes are still leaving, then takes the shared "cairn" parents when
 * no other cluster uses them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness-private.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

/* The cluster-level cgroup directories that may exist (any version). */
static const char *const s_cg_bases[] = {
    HX_CG_ROOT "/cpu/cairn",
    HX_CG_ROOT "/memory/cairn",
    HX_CG_ROOT "/cairn",
};
#define S_N_CG_BASES (sizeof(s_cg_bases) / sizeof(s_cg_bases[0]))

/* ---- which hierarchy --------------------------------------------------- */

int hx_cg_detect(hx_cg_t *ret, cairn_error_t *err)
{
    _cleanup_free_ char *ctl = NULL;
    if (cairn_read_file(HX_CG_ROOT "/cgroup.controllers", 0, &ctl, NULL) == 0) {
        if (!strstr(ctl, "cpu") || !strstr(ctl, "memory"))
            return cairn_error_set(
                err, -ENOTSUP, CAIRN_UNSUPPORTED,
                "cgroup v2 at " HX_CG_ROOT " lacks the cpu or memory "
                "controller (cgroup.controllers: '%.200s'); use --loopback",
                strtok(ctl, "\n"));
        *ret = HX_CG_V2;
        return 0;
    }
    if (hx_exists(HX_CG_ROOT "/cpu/cpu.cfs_quota_us") &&
        hx_exists(HX_CG_ROOT "/memory/memory.limit_in_bytes")) {
        *ret = HX_CG_V1;
        return 0;
    }
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "no usable cgroup hierarchy: neither " HX_CG_ROOT
                           "/cgroup.controllers (v2) nor " HX_CG_ROOT
                           "/cpu and " HX_CG_ROOT
                           "/memory (v1); use --loopback");
}

hx_cg_t hx_cg_of(const json_t *st)
{
    const char *v = hx_jstr(st, "cgroup");
    return !v ? HX_CG_NONE : strcmp(v, "v2") == 0 ? HX_CG_V2 : HX_CG_V1;
}

size_t hx_cg_dirs(hx_cg_t cg, const char *name, unsigned k,
                  char dirs[2][PATH_MAX])
{
    if (cg == HX_CG_V2) {
        snprintf(dirs[0], PATH_MAX, HX_CG_ROOT "/cairn/%s/%u", name, k);
        return 1;
    }
    if (cg == HX_CG_V1) {
        snprintf(dirs[0], PATH_MAX, HX_CG_ROOT "/cpu/cairn/%s/%u", name, k);
        snprintf(dirs[1], PATH_MAX, HX_CG_ROOT "/memory/cairn/%s/%u", name, k);
        return 2;
    }
    return 0;
}

/* ---- creating ---------------------------------------------------------- */

/* Writes the knob dir/file = the printf of fmt. */
__attribute__((format(printf, 4, 5))) static int s_knob(const char *dir,
                                                        const char *file,
                                                        cairn_error_t *err,
                                                        const char *fmt, ...)
{
    char path[PATH_MAX + 32], val[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return hx_write_knob(path, val, err);
}

/* v2: mkdir cairn/<name> and turn on +cpu +memory on the way down. */
static int s_cg2_parents(const char *name, cairn_error_t *err)
{
    char dir[PATH_MAX];
    const char *levels[] = { HX_CG_ROOT, HX_CG_ROOT "/cairn", dir };
    snprintf(dir, sizeof(dir), HX_CG_ROOT "/cairn/%s", name);
    for (size_t i = 0; i < 3; i++) {
        if (mkdir(levels[i], 0755) < 0 && errno != EEXIST)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %m",
                                   levels[i]);
        int r = s_knob(levels[i], "cgroup.subtree_control", err, "%s",
                       "+cpu +memory");
        if (r < 0)
            return r;
    }
    return 0;
}

static int s_cg2_limits(const char *dir, long quota, uint64_t mem,
                        cairn_error_t *err)
{
    int r = s_knob(dir, "cpu.max", err, "%ld %d", quota, HX_CPU_PERIOD_US);
    return r < 0 ? r
                 : s_knob(dir, "memory.max", err, "%llu",
                          (unsigned long long)mem);
}

static int s_cg1_limits(const char *cpu_dir, const char *mem_dir, long quota,
                        uint64_t mem, cairn_error_t *err)
{
    int r = s_knob(cpu_dir, "cpu.cfs_period_us", err, "%d", HX_CPU_PERIOD_US);
    r = r ? r : s_knob(cpu_dir, "cpu.cfs_quota_us", err, "%ld", quota);
    return r ? r
             : s_knob(mem_dir, "memory.limit_in_bytes", err, "%llu",
                      (unsigned long long)mem);
}

int hx_cg_create(hx_cg_t cg, const char *name, unsigned k, double cpus,
                 uint64_t mem, cairn_error_t *err)
{
    char dirs[2][PATH_MAX];
    long quota = (long)(cpus * HX_CPU_PERIOD_US + 0.5);
    size_t n = hx_cg_dirs(cg, name, k, dirs);
    int r = cg == HX_CG_V2 ? s_cg2_parents(name, err) : 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = hx_mkdir_p(dirs[i], err);
    if (r < 0)
        return r;
    return cg == HX_CG_V2 ? s_cg2_limits(dirs[0], quota, mem, err)
                          : s_cg1_limits(dirs[0], dirs[1], quota, mem, err);
}

int hx_cg_create_all(const json_t *st, const harness_opts_t *o,
                     cairn_error_t *err)
{
    hx_cg_t cg = hx_cg_of(st);
    for (unsigned k = 1; cg != HX_CG_NONE && k <= o->nodes; k++) {
        int r = hx_cg_create(cg, hx_jstr(st, "cluster"), k, o->cpus,
                             o->mem_bytes, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- finding ----------------------------------------------------------- */

/* Adds the pids of <dir>/cgroup.procs. */
static void s_cg_procs(const char *dir, hx_pids_t *pids)
{
    char path[2 * PATH_MAX];   /* dir may be a path joined to a name */
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1)
        hx_pids_add(pids, pid);
}

/* The directories under top (sorted), their processes added. */
static json_t *s_cg_subdirs(const char *top, hx_pids_t *pids)
{
    char leaf[PATH_MAX + 300];
    DIR *d = opendir(top);
    json_t *leaves = d ? json_array() : NULL;
    for (struct dirent *e; leaves && (e = readdir(d));) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.')
            continue;
        snprintf(leaf, sizeof(leaf), "%s/%s", top, e->d_name);
        s_cg_procs(leaf, pids);
        json_array_append_new(leaves, json_string(leaf));
    }
    if (d)
        closedir(d);
    hx_sort_names(leaves);
    return leaves;
}

/* The node directories under top, each after its own sub-cgroups (the
 * job-<gpid> cgroups ghostd's jobs live in: docs/jobs.md), so removal
 * goes leaves first; every process in them added. */
static json_t *s_cg_leaves(const char *top, hx_pids_t *pids)
{
    json_t *nodes = s_cg_subdirs(top, pids), *all = nodes ? json_array() : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(nodes, i, v) {
        json_t *subs = all ? s_cg_subdirs(json_string_value(v), pids) : NULL;
        if (subs)
            json_array_extend(all, subs);
        json_decref(subs);
        if (all)
            json_array_append(all, v);
    }
    json_decref(nodes);
    return all;
}

void hx_find_cgroups(const char *name, json_t *out, hx_pids_t *pids)
{
    for (size_t b = 0; b < S_N_CG_BASES; b++) {
        char top[PATH_MAX];
        snprintf(top, sizeof(top), "%s/%s", s_cg_bases[b], name);
        json_t *leaves = s_cg_leaves(top, pids);
        if (!leaves)
            continue;
        json_array_extend(out, leaves);
        json_decref(leaves);
        s_cg_procs(top, pids);
        json_array_append_new(out, json_string(top));
    }
}

/* ---- removing ---------------------------------------------------------- */

int hx_cg_remove(const char *dir, cairn_error_t *err)
{
    uint64_t deadline = cairn_now_ms() + HX_CG_BUSY_MS;
    while (rmdir(dir) < 0 && errno != ENOENT) {
        if (errno != EBUSY || cairn_ms_left(deadline) == 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "rmdir %s: %m",
                                   dir);
        hx_sleep_ms(10);
    }
    return 0;
}

int hx_cg_sweep(const json_t *cgroups, cairn_error_t *err)
{
    size_t i;
    json_t *v;
    json_array_foreach(cgroups, i, v) {
        int r = hx_cg_remove(json_string_value(v), err);
        if (r < 0)
            return r;
    }
    for (size_t b = 0; b < S_N_CG_BASES; b++)
        rmdir(s_cg_bases[b]); /* only succeeds when no other cluster uses it */
    return 0;
}
