/* probe-jobs.c - the "jobs" probe: the node's jobs, each with the CPUs it
 * used over the last period, its rss and how fast that grows, and its age
 * here.
 *
 * The list is the local ghostd's (Ps{local_only}, fetched by the sampler
 * just before: env->ps). ghostd gives a job's cpu as cpu time over its
 * age in percent, so its cpu time is cpu_percent x age; the difference
 * between two samples over the time between them is what it used in the
 * period. A job seen for the first time, or whose moves changed (its
 * times start again on the new node), has no earlier sample: its lifetime
 * average stands in for one period. Exited and lost jobs are not the
 * node's load and are left out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

typedef struct s_seen {
    char gpid[LOADVEC_GPID_MAX];
    uint64_t cpu_ms;        /* its cpu time at the last sample */
    uint64_t rss;           /* its rss then */
    uint64_t at_ms;         /* wall ms of that sample */
    uint64_t here_ms;       /* since when it runs here (launch or arrival) */
    uint32_t moves;         /* its moves then */
} s_seen_t;

typedef struct s_jobs {
    s_seen_t *seen;         /* the last sample's jobs; owned */
    size_t n;
} s_jobs_t;

static bool s_counts(const probe_psjob_t *j)
{
    return j->state && (strcmp(j->state, "running") == 0 ||
                        strcmp(j->state, "stopped") == 0 ||
                        strcmp(j->state, "migrating") == 0);
}

static const s_seen_t *s_find(const s_jobs_t *s, const char *gpid)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->seen[i].gpid, gpid) == 0)
            return &s->seen[i];
    return NULL;
}

/* One job's figures from its Ps entry and its previous sample (or none). */
static void s_job(const probe_psjob_t *p, const s_seen_t *prev, uint64_t now,
                  loadvec_job_t *out, s_seen_t *seen)
{
    uint64_t age = now > p->start_ms ? now - p->start_ms : 0;
    uint64_t cpu_ms = (uint64_t)(p->cpu_percent / 100.0 * (double)age);
    bool same = prev && prev->moves == p->moves && now > prev->at_ms;

    snprintf(out->gpid, sizeof(out->gpid), "%s", p->gpid);
    out->uid = p->uid;
    out->rss_bytes = p->rss_bytes;
    if (same && cpu_ms >= prev->cpu_ms)
        out->cpu = (double)(cpu_ms - prev->cpu_ms) / (double)(now - prev->at_ms);
    else
        out->cpu = p->cpu_percent / 100.0;
    out->rss_growth_bytes_s = same ? (int64_t)(((double)p->rss_bytes - (double)prev->rss) *
                                               1000.0 / (double)(now - prev->at_ms))
                                   : 0;
    /* here since its launch, or since it was first seen after a move */
    uint64_t here = prev && prev->moves == p->moves ? prev->here_ms
                  : p->moves == 0 ? p->start_ms : now;
    out->age_ms = now > here ? now - here : 0;
    *seen = (s_seen_t){ .cpu_ms = cpu_ms, .rss = p->rss_bytes, .at_ms = now,
                        .here_ms = here, .moves = p->moves };
    snprintf(seen->gpid, sizeof(seen->gpid), "%s", p->gpid);
}

static int s_sample(void *state, const probe_env_t *env, loadvec_t *v,
                    cairn_error_t *err)
{
    s_jobs_t *s = state;

    if (!env->ps_ok)
        return cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                               "the local ghostd's jobs: %s",
                               env->ps_error ? env->ps_error : "not asked");
    loadvec_job_t *jobs = calloc(env->n_ps ? env->n_ps : 1, sizeof(*jobs));
    s_seen_t *seen = calloc(env->n_ps ? env->n_ps : 1, sizeof(*seen));
    if (!jobs || !seen) {
        free(jobs);
        free(seen);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < env->n_ps; i++) {
        const probe_psjob_t *p = &env->ps[i];
        if (!p->gpid || !s_counts(p))
            continue;
        s_job(p, s_find(s, p->gpid), env->wall_ms, &jobs[n], &seen[n]);
        n++;
    }
    free(s->seen);
    s->seen = seen;
    s->n = n;
    free(v->job);
    v->job = jobs;
    v->n_job = n;
    v->jobs = (uint32_t)n;
    return 0;
}

static void s_fini(void *state)
{
    s_jobs_t *s = state;
    free(s->seen);
    *s = (s_jobs_t){ 0 };
}

const probe_ops_t probe_jobs = {
    .name = "jobs",
    .needs_ps = true,
    .state_size = sizeof(s_jobs_t),
    .sample = s_sample,
    .fini = s_fini,
};
