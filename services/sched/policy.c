/* policy.c - what the three policies share: parameters, the load of a node
 * and of a job, which peers and jobs count, and memory ushering
 * (policy.h).
 *
 * Ushering, openMosix's "memory ushering": when this node's used memory
 * has passed the high-water mark and still grows, the job growing fastest
 * moves to the known node with the most free memory that can take it and
 * stay below its own high-water mark -- before the limit is hit, so
 * nothing is killed by the OOM killer or swapped. A job moved or tried
 * within the last balance period is left alone (a failing move is not
 * retried in a loop); the longer hold of balancing does not apply, since
 * running out of memory is worse than a second move.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "policy.h"

#define MIB (1024.0 * 1024.0)
/* A node using this share of its CPUs is busy: its run queue is demand
 * (not the 90 % of a quota one would expect: on a shared host the node
 * gets less than its quota while its queue is long). */
#define S_BUSY 0.25

const sched_policy_t *const sched_policies[] = {
    &sched_policy_rr, &sched_policy_mosix, &sched_policy_mem, NULL,
};

const sched_policy_t *sched_policy_find(const char *name)
{
    for (size_t i = 0; name && sched_policies[i]; i++)
        if (strcmp(sched_policies[i]->name, name) == 0)
            return sched_policies[i];
    return NULL;
}

void sched_params_default(sched_params_t *p)
{
    *p = (sched_params_t){
        .gossip_period_ms = 1000,
        .balance_period_ms = 0,
        .margin_cpu = 0.25,
        .hold_periods = 4,
        .stale_periods = 3,
        .high_water = 0.85,
        .mem_margin = 0.10,
        .job_mem_bytes = 32ull << 20,
    };
}

uint64_t sched_balance_period(const sched_params_t *p)
{
    return p->balance_period_ms ? p->balance_period_ms : p->gossip_period_ms;
}

void sched_reason(sched_verdict_t *out, const char *fmt, ...)
{
    size_t len = strnlen(out->reason, sizeof(out->reason));
    va_list ap;

    if (len + 1 >= sizeof(out->reason))
        return;
    va_start(ap, fmt);
    vsnprintf(out->reason + len, sizeof(out->reason) - len, fmt, ap);
    va_end(ap);
}

/* The demand a vector shows: what the node uses, or -- when it is busy
 * -- its run queue if longer, counting at most one task a job. */
static double s_shown_demand(const sched_node_t *n)
{
    bool busy = n->cpus <= 0 || n->cpu_load >= S_BUSY * n->cpus;
    double queue = n->jobs && n->runnable > n->jobs ? n->jobs : n->runnable;

    return busy && queue > n->cpu_load ? queue : n->cpu_load;
}

double sched_node_demand(const sched_node_t *n)
{
    double d = s_shown_demand(n) + n->pending_cpu;

    return d > 0 ? d : 0;
}

double sched_node_load(const sched_node_t *n)
{
    return n->cpus > 0 ? sched_node_demand(n) / n->cpus : 0;
}

uint64_t sched_node_free(const sched_node_t *n)
{
    int64_t f = (int64_t)n->mem_free - n->pending_mem;

    return f > 0 ? (uint64_t)f : 0;
}

bool sched_peer_usable(const sched_input_t *in, const sched_node_t *n)
{
    uint64_t stale = (uint64_t)in->params->stale_periods *
                     in->params->gossip_period_ms;

    if (n->node == in->self.node || n->age_ms > stale)
        return false;
    if (in->n_members == 0)
        return true;
    for (size_t i = 0; i < in->n_members; i++)
        if (in->members[i] == n->node)
            return true;
    return false;
}

const sched_node_t *sched_best_peer(const sched_input_t *in, bool mem,
                                    const sched_node_t *start,
                                    bool (*before)(const sched_node_t *a,
                                                   const sched_node_t *b,
                                                   const void *arg),
                                    const void *arg, size_t *ret_known)
{
    const sched_node_t *best = start;
    size_t known = start ? 1 : 0;

    for (size_t i = 0; i < in->n_peers; i++) {
        const sched_node_t *n = &in->peers[i];
        if (!sched_peer_usable(in, n) || (mem ? n->mem_limit == 0 : n->cpus <= 0))
            continue;
        known++;
        if (!best || before(n, best, arg))
            best = n;
    }
    if (ret_known)
        *ret_known = known;
    return best;
}

bool sched_job_movable(const sched_input_t *in, const sched_job_t *j,
                       uint64_t hold_ms)
{
    return j->since_move_ms == SCHED_NEVER || j->since_move_ms >= hold_ms;
}

double sched_job_demand(const sched_node_t *self, const sched_job_t *j)
{
    double node = s_shown_demand(self);
    double d = j->cpu;

    /* Oversubscribed: each job got cpu_load/node of what it wants. */
    if (self->cpu_load > 0.01 && node > self->cpu_load)
        d = j->cpu * node / self->cpu_load;
    return d > node ? node : d;
}

/* The fastest-growing movable job (the largest on a tie), or -1. */
static ssize_t s_usher_job(const sched_input_t *in, uint64_t hold_ms)
{
    ssize_t best = -1;

    for (size_t i = 0; i < in->n_jobs; i++) {
        const sched_job_t *j = &in->jobs[i];
        if (!sched_job_movable(in, j, hold_ms) || j->rss_bytes == 0)
            continue;
        if (best < 0 || j->rss_growth > in->jobs[best].rss_growth ||
            (j->rss_growth == in->jobs[best].rss_growth &&
             j->rss_bytes > in->jobs[best].rss_bytes))
            best = (ssize_t)i;
    }
    return best;
}

/* The usable peer with the most free memory that stays below its high
 * water with rss more, or NULL. */
static const sched_node_t *s_usher_target(const sched_input_t *in,
                                          uint64_t rss)
{
    const sched_node_t *best = NULL;

    for (size_t i = 0; i < in->n_peers; i++) {
        const sched_node_t *n = &in->peers[i];
        if (!sched_peer_usable(in, n) || n->mem_limit == 0)
            continue;
        double after = (double)(n->mem_limit - sched_node_free(n)) + (double)rss;
        if (after >= in->params->high_water * (double)n->mem_limit)
            continue;
        if (!best || sched_node_free(n) > sched_node_free(best))
            best = n;
    }
    return best;
}

int sched_usher(const sched_input_t *in, sched_verdict_t *out)
{
    const sched_node_t *s = &in->self;
    double limit = (double)s->mem_limit;
    int64_t used = (int64_t)s->mem_used + s->pending_mem;
    uint64_t hold = sched_balance_period(in->params);

    memset(out, 0, sizeof(*out));
    if (s->mem_limit == 0)
        return sched_reason(out, "no memory figures for this node"), 0;
    if ((double)used < in->params->high_water * limit)
        return sched_reason(out, "memory %.0f%% of the limit, below %.0f%%",
                            100.0 * (double)used / limit,
                            100.0 * in->params->high_water), 0;
    ssize_t j = s_usher_job(in, hold);
    bool grows = (uint64_t)used > in->mem_used_before ||
                 (j >= 0 && in->jobs[j].rss_growth > 0);
    if (!grows)
        return sched_reason(out, "memory %.0f%% of the limit but not growing",
                            100.0 * (double)used / limit), 0;
    if (j < 0)
        return sched_reason(out, "memory %.0f%% of the limit and growing, "
                            "but no job may move", 100.0 * (double)used / limit), 0;
    const sched_job_t *job = &in->jobs[j];
    const sched_node_t *t = s_usher_target(in, job->rss_bytes);
    if (!t)
        return sched_reason(out, "memory %.0f%% of the limit and growing, "
                            "but no known node has room for %s (%.1f MiB)",
                            100.0 * (double)used / limit, job->gpid,
                            (double)job->rss_bytes / MIB), 0;
    out->node = t->node;
    snprintf(out->gpid, sizeof(out->gpid), "%s", job->gpid);
    sched_reason(out, "memory %.1f of %.1f MiB (%.0f%% >= %.0f%%) and growing: "
                 "%s grows fastest (%+.1f MiB/s, %.1f MiB) -> node %u, "
                 "%.1f MiB free of %.1f",
                 (double)used / MIB, limit / MIB, 100.0 * (double)used / limit,
                 100.0 * in->params->high_water, job->gpid,
                 (double)job->rss_growth / MIB, (double)job->rss_bytes / MIB,
                 t->node, (double)sched_node_free(t) / MIB,
                 (double)t->mem_limit / MIB);
    return 1;
}
