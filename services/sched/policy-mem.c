/* policy-mem.c - sched-mem: placement and balancing by free memory, and
 * memory ushering (policy.h).
 *
 * Placement: the known node with the most free memory once the new job's
 * memory (the request's hint, else job_mem_bytes) is counted there; ties
 * go to the lower load, then the lower id.
 *
 * Balancing: the usable peer with the most free memory is the target; a
 * job moves there when the target has more free memory than this node by
 * more than the job's own size plus mem_margin of the larger limit. As
 * with sched-mosix, that bound keeps the reverse move from passing the
 * same test right after. Among the jobs that pass, the one that moves the
 * most memory per second of migration.
 */
#include <stdio.h>
#include <string.h>

#include "policy.h"

#define MIB (1024.0 * 1024.0)

/* a before b: more free memory, then lower load, then lower id. */
static bool s_better(uint64_t fa, const sched_node_t *a, uint64_t fb,
                     const sched_node_t *b)
{
    if (fa != fb)
        return fa > fb;
    if (sched_node_load(a) != sched_node_load(b))
        return sched_node_load(a) < sched_node_load(b);
    return a->node < b->node;
}

static uint64_t s_free_after(const sched_node_t *n, uint64_t job)
{
    uint64_t f = sched_node_free(n);

    return f > job ? f - job : 0;
}

/* For a new job of *arg bytes: more free memory with it there. */
static bool s_place_before(const sched_node_t *a, const sched_node_t *b,
                           const void *arg)
{
    uint64_t job = *(const uint64_t *)arg;

    return s_better(s_free_after(a, job), a, s_free_after(b, job), b);
}

/* For a moved job: more free memory now. */
static bool s_free_before(const sched_node_t *a, const sched_node_t *b,
                          const void *arg)
{
    return s_better(sched_node_free(a), a, sched_node_free(b), b);
}

static int s_place(const sched_input_t *in, sched_verdict_t *out)
{
    uint64_t job = in->memory_hint ? in->memory_hint : in->params->job_mem_bytes;
    size_t known = 0;

    const sched_node_t *best = sched_best_peer(
        in, true, in->self.mem_limit ? &in->self : NULL, s_place_before, &job, &known);
    memset(out, 0, sizeof(*out));
    if (!best) {
        out->node = in->self.node;
        sched_reason(out, "no memory figures known yet (probed not "
                     "answering): placed on this node");
        return 0;
    }
    out->node = best->node;
    sched_reason(out, "most free memory of %zu known nodes: node %u, %.1f MiB "
                 "of %.1f free with the job's %.1f MiB%s", known, best->node,
                 (double)s_free_after(best, job) / MIB,
                 (double)best->mem_limit / MIB, (double)job / MIB,
                 in->memory_hint ? "" : " (assumed)");
    return 0;
}

static int s_balance(const sched_input_t *in, sched_verdict_t *out)
{
    const sched_params_t *p = in->params;
    uint64_t hold = p->hold_periods * sched_balance_period(p);
    const sched_job_t *pick = NULL;
    double pick_score = 0;

    memset(out, 0, sizeof(*out));
    if (in->self.mem_limit == 0)
        return sched_reason(out, "no memory figures for this node yet"), 0;
    const sched_node_t *t = sched_best_peer(in, true, NULL, s_free_before, NULL, NULL);
    if (!t)
        return sched_reason(out, "no other node known"), 0;
    double fs = (double)sched_node_free(&in->self), ft = (double)sched_node_free(t);
    double limit = (double)(t->mem_limit > in->self.mem_limit ? t->mem_limit
                                                              : in->self.mem_limit);
    double margin = p->mem_margin * limit, gap = ft - fs;
    for (size_t i = 0; i < in->n_jobs; i++) {
        const sched_job_t *j = &in->jobs[i];
        if (!sched_job_movable(in, j, hold) || j->rss_bytes == 0 ||
            gap <= margin + (double)j->rss_bytes)
            continue;
        double score = (double)j->rss_bytes / (1.0 + (double)j->cost_ms / 1000.0);
        if (!pick || score > pick_score) {
            pick = j;
            pick_score = score;
        }
    }
    if (!pick)
        return sched_reason(out, "%.1f MiB free here, %.1f at node %u: no job "
                            "whose move beats the margin (its size + %.1f MiB)",
                            fs / MIB, ft / MIB, t->node, margin / MIB), 0;
    out->node = t->node;
    snprintf(out->gpid, sizeof(out->gpid), "%s", pick->gpid);
    sched_reason(out, "node %u has %.1f MiB free, %.1f more than here (%.1f) "
                 "> margin %.1f (%s's %.1f MiB + %.0f%% of %.1f MiB)", t->node,
                 ft / MIB, gap / MIB, fs / MIB,
                 (margin + (double)pick->rss_bytes) / MIB, pick->gpid,
                 (double)pick->rss_bytes / MIB, 100.0 * p->mem_margin, limit / MIB);
    return 1;
}

const sched_policy_t sched_policy_mem = {
    .name = "mem",
    .place = s_place,
    .balance = s_balance,
    .ushers = true,
};
