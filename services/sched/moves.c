/* moves.c - balancing and memory ushering: when the policy is asked, and
 * the migration it decides, through the node's ghostd (sched-private.h).
 *
 * Design. Each time follow.c has fresh vectors and jobs, and no migration
 * of this node runs (one at a time), the policy is asked: first whether a
 * job must leave before memory runs out (every time: memory can fill
 * within a period), then, once per balance period, whether one should
 * move for the load. A move is a Decision (outcome "" while it runs) and
 * a Request{migrate} {gpid, to, mode "auto"} to the local ghostd as this
 * daemon (root), exactly what `cairn migrate` asks. Its answer sets the
 * outcome. A move that succeeded lets the next check run at once rather
 * than a period later -- the commitments (follow.c) stand for the moved
 * load until the vectors show it, so sixteen jobs forced onto one node
 * leave it as fast as ghostd moves them, one after the other. A check
 * that found nothing to do, or a failed move, waits a period.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "sched-private.h"
#include "util/cleanup.h"
#include "util/clock.h"

/* A migration's own deadline: a large job's pre-copy takes a while. */
#define S_MIGRATE_TIMEOUT_MS 120000

static void s_on_migrate(void *userdata, uint32_t node, int code,
                         const char *message, ProtobufCMessage *msg)
{
    sched_t *s = userdata;
    Cairn__Ghostd__Reply *reply = (void *)msg;
    sched_move_t *m = &s->move;
    uint32_t self = cairn_service_node(s->svc)->id;
    char outcome[256];

    m->busy = false;
    if (code == CAIRN_OK && reply->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_REPLY) {
        const Cairn__Ghostd__MigrateReply *mr = reply->migrate_reply;
        snprintf(outcome, sizeof(outcome), "ok: moved in %llu ms, frozen %llu ms (%s)",
                 (unsigned long long)(mr->total_us / 1000),
                 (unsigned long long)(mr->freeze_us / 1000), mr->mode ? mr->mode : "");
        sched_follow_commit(s, m->to, m->cpu, (int64_t)m->rss);
        sched_follow_commit(s, self, -m->cpu, -(int64_t)m->rss);
        s->migrations++;
        if (m->usher)
            s->usherings++;
        else
            s->next_balance = cairn_now_ms();
    } else {
        if (code == CAIRN_TIMEOUT)
            /* ghostd may still have moved it (a node at full load answered
             * a move after our deadline): say so rather than "failed" */
            snprintf(outcome, sizeof(outcome), "unknown: ghostd did not answer "
                     "in time (%s); the job may have moved, cairn ps says where "
                     "it runs", message);
        else
            snprintf(outcome, sizeof(outcome), "failed: %s",
                     code != CAIRN_OK ? message : "ghostd answered no migrate reply");
        s->migrations_failed++;
        s->next_balance = cairn_now_ms() + sched_balance_period(&s->params);
    }
    sched_follow_hold(s, m->gpid);
    sched_decided(s, m->seq, outcome);
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
    sched_follow_refresh(s);
}

static const sched_job_t *s_job(const sched_input_t *in, const char *gpid)
{
    for (size_t i = 0; i < in->n_jobs; i++)
        if (strcmp(in->jobs[i].gpid, gpid) == 0)
            return &in->jobs[i];
    return NULL;
}

static void s_start_move(sched_t *s, const sched_input_t *in,
                         const sched_verdict_t *v, bool usher)
{
    _cleanup_free_ char *ep = sched_follow_endpoint(s, "ghostd");
    Cairn__Ghostd__MigrateRequest mr = CAIRN__GHOSTD__MIGRATE_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    const sched_job_t *j = s_job(in, v->gpid);
    const sched_entry_t *e = NULL;
    sched_move_t *m = &s->move;
    char why[128];
    int r;

    sched_entry_t d = { .from = in->self.node, .to = v->node };
    snprintf(d.kind, sizeof(d.kind), "%s", usher ? "usher" : "balance");
    snprintf(d.gpid, sizeof(d.gpid), "%s", v->gpid);
    snprintf(d.reason, sizeof(d.reason), "%s", v->reason);
    sched_decide(s, &d, &e);
    *m = (sched_move_t){ .busy = true, .seq = e->seq, .to = v->node, .usher = usher,
                         .cpu = j ? sched_job_demand(&in->self, j) : 0,
                         .rss = j ? j->rss_bytes : 0, .started_ms = cairn_now_ms() };
    snprintf(m->gpid, sizeof(m->gpid), "%s", v->gpid);
    sched_follow_hold(s, v->gpid);
    mr.gpid = m->gpid;
    mr.to = v->node;
    mr.mode = "auto";
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE;
    req.migrate = &mr;
    r = ep ? cairn_peers_call(s->ghostd, in->self.node, ep, &req.base,
                              S_MIGRATE_TIMEOUT_MS, s_on_migrate, s)
           : -ENOENT;
    if (r == 0)
        return;
    m->busy = false;
    s->migrations_failed++;
    snprintf(why, sizeof(why), "failed: cannot ask ghostd: %s", strerror(-r));
    sched_decided(s, m->seq, why);
}

void sched_moves_check(sched_t *s)
{
    sched_node_t peers[CAIRN_VIEW_MAX_NODES];
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    sched_input_t in;
    sched_verdict_t v;
    uint64_t now = cairn_now_ms();

    if (s->move.busy || !s->load)
        return;
    sched_follow_input(s, &in, peers, members);
    if (s->policy->ushers && sched_usher(&in, &v) == 1) {
        s_start_move(s, &in, &v, true);
        return;
    }
    if (!s->policy->balance || now < s->next_balance)
        return;
    s->next_balance = now + sched_balance_period(&s->params);
    if (s->policy->balance(&in, &v) == 1) {
        s_start_move(s, &in, &v, false);
        return;
    }
    if (strcmp(s->no_move, v.reason) != 0)
        cairn_log_debug("balance", "msg=\"no move: %s\"", v.reason);
    snprintf(s->no_move, sizeof(s->no_move), "%s", v.reason);
}
