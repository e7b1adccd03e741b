/* policy-mosix.c - sched-mosix: openMosix's placement, balancing and
 * memory ushering (policy.h has the load model).
 *
 * Placement: the known node whose load after one more job, (demand + 1) /
 * cpus, is least -- this node's vector and the usable window; ties go to
 * the shorter run queue, then the lower id.
 *
 * Balancing, pairwise: the least loaded usable peer is the target; a job
 * moves there when this node's load exceeds the target's by more than the
 * job's own load at the target plus margin_cpu / target cpus. That bound
 * makes the move stable: right after it, the reverse move can never pass
 * the same test (see test-policy.c, no_ping_pong). Among the jobs that
 * pass, the one whose move gains the most CPU per second of migration.
 */
#include <stdio.h>
#include <string.h>

#include "policy.h"

/* a before b at la and lb: lower load, then shorter run queue, then
 * lower id. */
static bool s_less(double la, const sched_node_t *a, double lb,
                   const sched_node_t *b)
{
    if (la < lb - 1e-9 || la > lb + 1e-9)
        return la < lb;
    if (a->runnable != b->runnable)
        return a->runnable < b->runnable;
    return a->node < b->node;
}

static double s_after_one(const sched_node_t *n)
{
    return (sched_node_demand(n) + 1.0) / n->cpus;
}

/* For a new job: the lower load with it. */
static bool s_place_before(const sched_node_t *a, const sched_node_t *b,
                           const void *arg)
{
    return s_less(s_after_one(a), a, s_after_one(b), b);
}

/* For a moved job: the lower load now. */
static bool s_load_before(const sched_node_t *a, const sched_node_t *b,
                          const void *arg)
{
    return s_less(sched_node_load(a), a, sched_node_load(b), b);
}

static int s_place(const sched_input_t *in, sched_verdict_t *out)
{
    size_t known = 0;
    const sched_node_t *best = sched_best_peer(
        in, false, in->self.cpus > 0 ? &in->self : NULL, s_place_before, NULL, &known);

    memset(out, 0, sizeof(*out));
    if (!best) {
        out->node = in->self.node;
        sched_reason(out, "no load known yet (probed not answering): "
                     "placed on this node");
        return 0;
    }
    out->node = best->node;
    sched_reason(out, "least loaded of %zu known nodes: node %u at %.2f "
                 "(%.2f CPUs wanted of %.2f, %u runnable) with one more job",
                 known, best->node, s_after_one(best), sched_node_demand(best),
                 best->cpus, best->runnable);
    if (best != &in->self && in->self.cpus > 0)
        sched_reason(out, "; this node %.2f", s_after_one(&in->self));
    return 0;
}

static int s_balance(const sched_input_t *in, sched_verdict_t *out)
{
    const sched_params_t *p = in->params;
    uint64_t hold = p->hold_periods * sched_balance_period(p);
    const sched_job_t *pick = NULL;
    double pick_score = 0, pick_d = 0;
    size_t held = 0;

    memset(out, 0, sizeof(*out));
    if (in->self.cpus <= 0)
        return sched_reason(out, "no load vector of this node yet"), 0;
    const sched_node_t *t = sched_best_peer(in, false, NULL, s_load_before, NULL, NULL);
    if (!t)
        return sched_reason(out, "no other node known"), 0;
    double ls = sched_node_load(&in->self), lt = sched_node_load(t);
    double gap = ls - lt;
    for (size_t i = 0; i < in->n_jobs; i++) {
        const sched_job_t *j = &in->jobs[i];
        if (!sched_job_movable(in, j, hold)) {
            held++;
            continue;
        }
        double d = sched_job_demand(&in->self, j);
        if (d < 0.01 || gap <= (d + p->margin_cpu) / t->cpus)
            continue;
        double score = d / (1.0 + (double)j->cost_ms / 1000.0);
        if (!pick || score > pick_score) {
            pick = j;
            pick_score = score;
            pick_d = d;
        }
    }
    if (!pick)
        return sched_reason(out, "load %.2f here, %.2f at node %u: no job "
                            "whose move beats the margin (its load there + "
                            "%.2f CPU)%s", ls, lt, t->node, p->margin_cpu,
                            held ? "; some moved too recently" : ""), 0;
    out->node = t->node;
    snprintf(out->gpid, sizeof(out->gpid), "%s", pick->gpid);
    sched_reason(out, "load %.2f here (%.2f CPUs wanted of %.2f) exceeds node "
                 "%u's %.2f by %.2f > margin %.2f (the job's %.2f CPU + "
                 "%.2f at %.2f CPUs); %s gains %.2f CPU per %.2f s of migration",
                 ls, sched_node_demand(&in->self), in->self.cpus, t->node, lt,
                 gap, (pick_d + p->margin_cpu) / t->cpus, pick_d, p->margin_cpu,
                 t->cpus, pick->gpid, pick_d, 1.0 + (double)pick->cost_ms / 1000.0);
    return 1;
}

const sched_policy_t sched_policy_mosix = {
    .name = "mosix",
    .place = s_place,
    .balance = s_balance,
    .ushers = true,
};
