/* probe-cpu.c - the "cpu" probe: the node's capacity (cpus) and the CPUs
 * it kept busy over the last period (cpu_load).
 *
 * Capacity: the node cgroup's quota (v2 cpu.max "QUOTA PERIOD", v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), else the host's CPUs (the cpuN
 * lines of /proc/stat). Busy: the cgroup's CPU time between two samples
 * over the time between them -- v2 cpu.stat usage_usec, v1 cpuacct.usage,
 * or its processes' times (nodecg.h says when) -- else the host's non-idle
 * share of /proc/stat times its CPUs. The first sample has nothing to
 * compare with and says 0.
 *
 * Processes' times are summed as deltas, each process against its own
 * last time (one new since then counts whole): a sum of totals fell by
 * the time of every job that left -- migrated away or ended -- and a node
 * busy with fourteen jobs read 0 CPU (where cpuacct is not mounted with
 * cpu, as here); sched-mosix then sent it jobs back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "util/array.h"
#include "util/cleanup.h"

typedef struct s_proc_ticks {
    long pid;
    uint64_t ticks;     /* utime + stime at the last sample */
} s_proc_ticks_t;

typedef struct s_cpu {
    bool have;          /* a previous sample */
    uint64_t busy;      /* ns of CPU (cgroup), or busy jiffies (host) */
    uint64_t total;     /* host: all jiffies; cgroup: unused */
    uint64_t at_ns;     /* when */
    s_proc_ticks_t *procs;  /* processes' times: the last sample's, by pid */
    size_t n_procs;
} s_cpu_t;

static int s_host_cpus(const probe_env_t *env, double *ret)
{
    _cleanup_free_ char *text = NULL;
    int r = nodecg_read(env->root, "/proc", "stat", &text), n = 0;

    if (r < 0)
        return r;
    for (const char *l = text; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, "cpu", 3) == 0 && l[3] >= '0' && l[3] <= '9')
            n++;
    if (!n)
        return -EINVAL;
    *ret = n;
    return 0;
}

static int s_quota(const probe_env_t *env, double *ret)
{
    const nodecg_t *cg = env->cg;

    if (cg->version == NODECG_V2) {
        _cleanup_free_ char *t = NULL;
        unsigned long long q, p;
        int r = nodecg_read(env->root, cg->cpu, "cpu.max", &t);
        if (r < 0)
            return r;
        if (sscanf(t, "%llu %llu", &q, &p) != 2 || !p)
            return -EINVAL;
        *ret = (double)q / (double)p;
        return 0;
    }
    uint64_t q, p;
    int r = nodecg_read_u64(env->root, cg->cpu, "cpu.cfs_quota_us", &q);
    if (r == 0)
        r = nodecg_read_u64(env->root, cg->cpu, "cpu.cfs_period_us", &p);
    if (r == 0 && !p)
        r = -EINVAL;
    if (r == 0)
        *ret = (double)q / (double)p;
    return r;
}

/* ---- busy time ------------------------------------------------------------ */

typedef struct s_sum {
    const s_cpu_t *last;     /* the previous sample's times */
    s_proc_ticks_t *now;     /* this sample's, grown here */
    size_t n_now, cap_now;
    uint64_t delta;          /* ticks since the previous sample */
    int error;               /* -ENOMEM */
} s_sum_t;

static int s_cmp_pid(const void *a, const void *b)
{
    long x = ((const s_proc_ticks_t *)a)->pid, y = ((const s_proc_ticks_t *)b)->pid;
    return x < y ? -1 : x > y;
}

static const s_proc_ticks_t *s_last_of(const s_cpu_t *last, long pid)
{
    s_proc_ticks_t key = { .pid = pid };
    return last->n_procs ? bsearch(&key, last->procs, last->n_procs, sizeof(key), s_cmp_pid)
                         : NULL;
}

static int s_sum_procs(const char *root, const char *dir, void *ud)
{
    s_sum_t *s = ud;
    _cleanup_free_ char *procs = NULL;

    if (nodecg_read(root, dir, "cgroup.procs", &procs) < 0)
        return 0;   /* removed meanwhile */
    for (char *p = procs, *end; *p && !s->error; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        char state;
        uint64_t ticks;
        if (nodecg_pid_stat(root, pid, &state, &ticks) < 0)
            continue;   /* gone meanwhile: its last times are not ours to count */
        const s_proc_ticks_t *was = s_last_of(s->last, pid);
        s->delta += !was ? ticks : ticks > was->ticks ? ticks - was->ticks : 0;
        if (CAIRN_GROW(s->now, s->cap_now, s->n_now + 1, 64) < 0) {
            s->error = -ENOMEM;
            break;
        }
        s->now[s->n_now++] = (s_proc_ticks_t){ .pid = pid, .ticks = ticks };
    }
    return 0;
}

/* The node's processes' CPU time since the previous sample, in ns, added
 * to s->busy as the running count; s->procs becomes this sample's. */
static int s_procs_ns(const probe_env_t *env, s_cpu_t *st, uint64_t *ret)
{
    s_sum_t s = { .last = st };

    nodecg_walk(env->root, env->cg->cpu, s_sum_procs, &s);
    if (s.error) {
        free(s.now);
        return s.error;
    }
    if (s.n_now)
        qsort(s.now, s.n_now, sizeof(*s.now), s_cmp_pid);
    free(st->procs);
    st->procs = s.now;
    st->n_procs = s.n_now;
    *ret = st->busy + s.delta * (1000000000ull / (uint64_t)(env->clk_tck > 0 ? env->clk_tck : 100));
    return 0;
}

/* The cgroup's CPU time in ns. */
static int s_cgroup_ns(const probe_env_t *env, s_cpu_t *st, uint64_t *ret)
{
    const nodecg_t *cg = env->cg;

    if (cg->version == NODECG_V2) {
        _cleanup_free_ char *t = NULL;
        uint64_t us;
        int r = nodecg_read(env->root, cg->cpu, "cpu.stat", &t);
        if (r == 0)
            r = nodecg_key_u64(t, "usage_usec", &us);
        if (r == 0)
            *ret = us * 1000;
        return r;
    }
    if (*cg->cpuacct)
        return nodecg_read_u64(env->root, cg->cpuacct, "cpuacct.usage", ret);
    return s_procs_ns(env, st, ret);
}

/* Host: busy and total jiffies of /proc/stat's "cpu " line. */
static int s_host_jiffies(const probe_env_t *env, uint64_t *busy, uint64_t *total)
{
    _cleanup_free_ char *t = NULL;
    unsigned long long f[8] = { 0 };
    int r = nodecg_read(env->root, "/proc", "stat", &t);

    if (r < 0)
        return r;
    if (strncmp(t, "cpu ", 4) != 0 ||
        sscanf(t + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1],
               &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]) < 4)
        return -EINVAL;
    /* user nice system idle iowait irq softirq steal */
    *busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    *total = *busy + f[3] + f[4];
    return 0;
}

static int s_sample(void *state, const probe_env_t *env, loadvec_t *v,
                    cairn_error_t *err)
{
    s_cpu_t *s = state;
    bool cg = *env->cg->cpu != '\0';
    double cpus = 0, load = 0;
    uint64_t busy = 0, total = 0;
    int r = cg ? s_quota(env, &cpus) : s_host_cpus(env, &cpus);

    if (r == 0)
        r = cg ? s_cgroup_ns(env, s, &busy) : s_host_jiffies(env, &busy, &total);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot read the %s's CPU "
                               "figures under %s: %s", cg ? "node cgroup" : "host",
                               cg ? env->cg->cpu : "/proc", strerror(-r));
    if (s->have && cg && env->now_ns > s->at_ns)
        load = busy > s->busy ? (double)(busy - s->busy) / (double)(env->now_ns - s->at_ns)
                              : 0;   /* a process left with its time */
    else if (s->have && !cg && total > s->total)
        load = busy > s->busy ? (double)(busy - s->busy) / (double)(total - s->total) * cpus
                              : 0;
    s->have = true;
    s->busy = busy;
    s->total = total;
    s->at_ns = env->now_ns;
    v->cpus = cpus;
    v->cpu_load = load;
    return 0;
}

static void s_fini(void *state)
{
    s_cpu_t *s = state;

    free(s->procs);
    s->procs = NULL;
    s->n_procs = 0;
}

const probe_ops_t probe_cpu = {
    .name = "cpu",
    .state_size = sizeof(s_cpu_t),
    .sample = s_sample,
    .fini = s_fini,
};
