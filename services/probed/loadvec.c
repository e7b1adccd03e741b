/* loadvec.c - the load vector in C and on the wire (loadvec.h).
 *
 * Design. The conversion out borrows: strings point into the vector and
 * the probe table, arrays come from the caller's allocator, so a reply
 * built in a request's arena costs no copy and nothing to free. The
 * conversion in copies and checks every figure a policy will compare:
 * finite, not negative, within what a node can have; a peer that sends
 * NaN or a free memory above its limit is refused, not believed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadvec.h"
#include "probe.h"

#define S_MAX_CPUS 65536.0        /* a node's capacity, generously */
#define S_MAX_JOBS 1000000u

void loadvec_clear(loadvec_t *v)
{
    free(v->job);
    *v = (loadvec_t){ 0 };
}

int loadvec_copy(loadvec_t *dst, const loadvec_t *src, bool with_jobs)
{
    loadvec_job_t *jobs = NULL;

    if (with_jobs && src->n_job) {
        jobs = malloc(src->n_job * sizeof(*jobs));
        if (!jobs) {
            loadvec_clear(dst);
            return -ENOMEM;
        }
        memcpy(jobs, src->job, src->n_job * sizeof(*jobs));
    }
    loadvec_clear(dst);
    *dst = *src;
    dst->job = jobs;
    dst->n_job = jobs ? src->n_job : 0;
    return 0;
}

static int s_missing_to_pb(const loadvec_t *v, Cairn__Probed__LoadVector *out,
                           loadvec_alloc_fn alloc, void *ud)
{
    size_t n = 0;

    for (size_t i = 0; i < probe_table_size; i++)
        n += (v->missing >> i) & 1;
    if (!n)
        return 0;
    out->missing = alloc(ud, n * sizeof(char *));
    if (!out->missing)
        return -ENOMEM;
    for (size_t i = 0; i < probe_table_size; i++)
        if ((v->missing >> i) & 1)
            out->missing[out->n_missing++] = (char *)probe_table[i]->name;
    return 0;
}

static int s_jobs_to_pb(const loadvec_t *v, Cairn__Probed__LoadVector *out,
                        loadvec_alloc_fn alloc, void *ud)
{
    if (!v->n_job)
        return 0;
    Cairn__Probed__JobLoad *jl = alloc(ud, v->n_job * sizeof(*jl));
    out->job = alloc(ud, v->n_job * sizeof(*out->job));
    if (!jl || !out->job)
        return -ENOMEM;
    for (size_t i = 0; i < v->n_job; i++) {
        const loadvec_job_t *j = &v->job[i];
        cairn__probed__job_load__init(&jl[i]);
        jl[i].gpid = (char *)j->gpid;
        jl[i].uid = j->uid;
        jl[i].cpu = j->cpu;
        jl[i].rss_bytes = j->rss_bytes;
        jl[i].rss_growth_bytes_s = j->rss_growth_bytes_s;
        jl[i].migration_cost_ms = j->migration_cost_ms;
        jl[i].age_ms = j->age_ms;
        out->job[i] = &jl[i];
    }
    out->n_job = v->n_job;
    return 0;
}

int loadvec_to_pb(const loadvec_t *v, bool with_jobs,
                  Cairn__Probed__LoadVector *out, loadvec_alloc_fn alloc,
                  void *userdata)
{
    out->node = v->node;
    out->seq = v->seq;
    out->sampled_ms = v->sampled_ms;
    out->cpus = v->cpus;
    out->cpu_load = v->cpu_load;
    out->runnable = v->runnable;
    out->mem_limit_bytes = v->mem_limit_bytes;
    out->mem_used_bytes = v->mem_used_bytes;
    out->mem_free_bytes = v->mem_free_bytes;
    out->jobs = v->jobs;
    int r = s_missing_to_pb(v, out, alloc, userdata);
    if (r == 0 && with_jobs)
        r = s_jobs_to_pb(v, out, alloc, userdata);
    return r;
}

static bool s_figure_ok(double x, double max)
{
    return isfinite(x) && x >= 0 && x <= max;
}

/* The first thing wrong with m, or NULL. */
static const char *s_check(const Cairn__Probed__LoadVector *m, char *buf,
                           size_t size)
{
    if (m->node < 1 || m->node > 255)
        return snprintf(buf, size, "node %u is not 1..255", m->node), buf;
    if (m->seq == 0)
        return "seq 0 (a node's first vector is 1 or more)";
    if (!s_figure_ok(m->cpus, S_MAX_CPUS))
        return snprintf(buf, size, "cpus %g is not 0..%g", m->cpus, S_MAX_CPUS), buf;
    if (!s_figure_ok(m->cpu_load, S_MAX_CPUS))
        return snprintf(buf, size, "cpu_load %g is not 0..%g", m->cpu_load,
                        S_MAX_CPUS), buf;
    if (m->mem_free_bytes > m->mem_limit_bytes)
        return snprintf(buf, size, "mem_free_bytes %llu exceeds mem_limit_bytes %llu",
                        (unsigned long long)m->mem_free_bytes,
                        (unsigned long long)m->mem_limit_bytes), buf;
    if (m->jobs > S_MAX_JOBS)
        return snprintf(buf, size, "jobs %u is more than %u", m->jobs, S_MAX_JOBS), buf;
    if (m->n_job)
        return "it carries a job list (a gossiped vector never does)";
    return NULL;
}

int loadvec_from_pb(const Cairn__Probed__LoadVector *m, loadvec_t *out,
                    char *why, size_t why_size)
{
    char buf[160];
    const char *bad = m ? s_check(m, buf, sizeof(buf)) : "no vector";

    if (bad) {
        snprintf(why, why_size, "%s", bad);
        return -EINVAL;
    }
    loadvec_clear(out);
    out->node = m->node;
    out->seq = m->seq;
    out->sampled_ms = m->sampled_ms;
    out->cpus = m->cpus;
    out->cpu_load = m->cpu_load;
    out->runnable = m->runnable;
    out->mem_limit_bytes = m->mem_limit_bytes;
    out->mem_used_bytes = m->mem_used_bytes;
    out->mem_free_bytes = m->mem_free_bytes;
    out->jobs = m->jobs;
    for (size_t i = 0; i < m->n_missing; i++) {
        int k = m->missing[i] ? probe_index(m->missing[i]) : -1;
        if (k >= 0)
            out->missing |= 1u << k;   /* a probe we do not know: ignored */
    }
    return 0;
}

void *loadvec_arena_alloc(void *arena, size_t size)
{
    loadvec_arena_t *a = arena;

    if (a->n == LOADVEC_ARENA_BLOCKS)
        return NULL;
    void *p = calloc(1, size ? size : 1);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

void loadvec_arena_clear(loadvec_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    a->n = 0;
}
