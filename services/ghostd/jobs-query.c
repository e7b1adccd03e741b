/* jobs-query.c - ps, signal and wait (jobs.h, jobs-private.h), and the
 * queries to other ghostds they and a forwarded run make.
 *
 * Design. Requests about other nodes' jobs go out as queries: one request
 * per ghostd asked (cairn_peers_call_as: the caller's user, vouched for by
 * this node), each with the deadline left, and the query answers when it
 * can -- ps when every node answered or timed out (each one listed with
 * reachable and why), signal and wait at the first decisive answer (the
 * job was found: its reply or its refusal), else when all said not-found.
 * A query lives until its last callback ran. One whose every answer was
 * known at once (nobody to ask) is answered from a 0 ms timer: a
 * deferred request must not be answered inside its own handler.
 *
 * A job nobody runs is judged from its directory alone (whether it ever
 * ran, how it ended). A wait on a job of this node is deferred on the job
 * until it ends or the request's deadline.
 *
 * Following. A job is in no table while it moves (the source released
 * it, the target has not committed it), and a busy node may not answer
 * in time. A signal or wait that found nobody while the job's record
 * says it has not ended -- and it is moving or a node did not answer --
 * searches again every S_FOLLOW_MS until its deadline, here first; a
 * client's wait on a job that leaves this node does the same
 * (jobs_waits_follow). Without it `cairn wait` of a job a scheduler
 * balances failed with "moved to another node" (seen in test-sched).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/wire.h"
#include "jobs-private.h"
#include "log.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_DEFAULT_DEADLINE_MS 3000 /* a request without Header.deadline_ms */
#define S_FOLLOW_MS 250            /* between two searches for a moving job */

/* ---- queries to other ghostds ---------------------------------------------- */

/* Frees a PsReply s_local_ps made. NULL-safe. */
static void s_ps_reply_free(Cairn__Ghostd__PsReply *ps)
{
    if (ps)
        protobuf_c_message_free_unpacked(&ps->base, NULL);
}

void jobs_query_free(jobs_query_t *q)
{
    if (q->settle > 0)
        cairn_loop_cancel_timer(cairn_service_loop(q->jobs->svc), q->settle);
    if (q->retry > 0)
        cairn_loop_cancel_timer(cairn_service_loop(q->jobs->svc), q->retry);
    for (size_t i = 0; i < q->asked; i++) {
        if (q->replies[i])
            protobuf_c_message_free_unpacked(&q->replies[i]->base, NULL);
        free(q->errors[i]);
    }
    s_ps_reply_free(q->local);
    free(q);
}

/* Unlinks q from the table and frees it once every callback ran. */
static void s_query_maybe_free(jobs_query_t *q)
{
    if (q->heard < q->asked || q->d || q->settle || q->retry)
        return;
    for (jobs_query_t **p = &q->jobs->queries; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            break;
        }
    jobs_query_free(q);
}

static void s_query_reply(jobs_query_t *q, ProtobufCMessage *reply)
{
    if (q->d)
        cairn_deferred_reply(q->jobs->svc, q->d, reply);
    q->d = NULL;
}

static void s_query_fail(jobs_query_t *q, int code, const char *msg)
{
    if (q->d) {
        cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(code), msg);
        cairn_deferred_fail(q->jobs->svc, q->d, code, msg);
    }
    q->d = NULL;
}

static void s_query_done(jobs_query_t *q);
static void s_query_heard(jobs_query_t *q, size_t i);
static bool s_follow(jobs_query_t *q, bool worth_it);

static void s_on_peer(void *userdata, uint32_t node, int code, const char *message,
                      ProtobufCMessage *reply)
{
    jobs_query_t *q = userdata;
    size_t i = 0;

    while (i < q->asked && (q->nodes[i] != node || q->codes[i] != -1))
        i++;
    if (i == q->asked) {   /* cannot be: one request per node */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    q->codes[i] = code;
    q->replies[i] = (Cairn__Ghostd__Reply *)reply;
    q->errors[i] = strdup(message ? message : "");
    q->heard++;
    s_query_heard(q, i);
    if (q->heard == q->asked)
        s_query_done(q);
    s_query_maybe_free(q);
}

/* Sends req to node on behalf of q's caller; its answer comes to
 * s_on_peer. A request that cannot be sent counts as heard, with why. */
void jobs_query_ask(jobs_query_t *q, uint32_t node, const ProtobufCMessage *req,
                        uint64_t timeout_ms)
{
    size_t i = q->asked++;
    const char *ep = cairn_view_endpoint(q->jobs->view, node);
    int r = ep ? 0 : -ENOENT;

    q->nodes[i] = node;
    q->codes[i] = -1;
    if (r == 0)
        r = cairn_peers_call_as(q->jobs->peers, node, ep, req,
                                (uint32_t)(timeout_ms ? timeout_ms : 1),
                                &q->caller, s_on_peer, q);
    if (r == 0)
        return;
    q->codes[i] = CAIRN_UNAVAILABLE;
    q->errors[i] = strdup(ep ? strerror(-r) : "no ghostd endpoint for it");
    q->heard++;
}

/* A new query in the table, answering nothing yet (q->d NULL). */
static jobs_query_t *s_query_alloc(ghostd_jobs_t *jobs, jobs_qkind_t kind,
                                   const cairn_caller_t *caller)
{
    jobs_query_t *q = calloc(1, sizeof *q);

    if (!q)
        return NULL;
    q->jobs = jobs;
    q->kind = kind;
    q->caller = *caller;
    q->next = jobs->queries;
    jobs->queries = q;
    return q;
}

jobs_query_t *jobs_query_new(ghostd_jobs_t *jobs, jobs_qkind_t kind,
                              cairn_request_t *req)
{
    jobs_query_t *q = s_query_alloc(jobs, kind, cairn_request_caller(req));

    if (!q)
        return NULL;
    q->d = cairn_request_defer(req);
    if (!q->d) {
        jobs->queries = q->next;   /* s_query_alloc put it first */
        free(q);
        return NULL;
    }
    return q;
}

static int s_on_settle(cairn_loop_t *loop, int64_t id, void *userdata)
{
    jobs_query_t *q = userdata;

    q->settle = 0;
    s_query_done(q);
    s_query_maybe_free(q);
    return 0;
}

/* After the asks: a query that heard everything already is answered from
 * the loop, after its handler returned. */
int jobs_query_sent(jobs_query_t *q)
{
    if (q->heard == q->asked && q->d) {
        q->settle = cairn_loop_add_timer(cairn_service_loop(q->jobs->svc), 0, 0,
                                         s_on_settle, q);
        if (q->settle < 0) {
            q->settle = 0;
            s_query_done(q);   /* cannot wait: answer now, as a last resort */
        }
    }
    s_query_maybe_free(q);
    return CAIRN_REPLY_DEFERRED;
}

/* The other alive ghostds (every ghostd of the description while the
 * view is not known), in id order, into out; their number. */
static size_t s_others(ghostd_jobs_t *jobs, uint32_t out[CAIRN_VIEW_MAX_NODES])
{
    const cairn_description_t *d = cairn_service_description(jobs->svc);
    size_t n = 0;

    if (cairn_view_known(jobs->view)) {
        uint32_t alive[CAIRN_VIEW_MAX_NODES];
        size_t k = cairn_view_members(jobs->view, alive);
        for (size_t i = 0; i < k; i++)
            if (alive[i] != jobs->self)
                out[n++] = alive[i];
        return n;
    }
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *nd = cairn_description_node(d, i);
        if (nd->id != jobs->self && cairn_description_node_runs(d, nd, "ghostd"))
            out[n++] = nd->id;
    }
    return n;
}

/* ---- ps -------------------------------------------------------------------- */

/* Whether the caller sees job: users their own, root all (or uid's). */
static bool s_visible(const cairn_caller_t *c, const ghostd_job_t *job,
                      const Cairn__Ghostd__PsRequest *pr)
{
    if (job->launching || !cairn_caller_may_act_on(c, job->rec.uid))
        return false;
    return !pr->has_uid || pr->uid == job->rec.uid;
}

/* This node's visible jobs as a PsReply the caller frees (s_ps_reply_free):
 * a deep copy (packed and unpacked again), since a ps that asks other
 * nodes is answered from the loop later, when a job listed now may have
 * left the table (moved, superseded, dropped) and its strings with it.
 * 0, or -ENOMEM / -EMSGSIZE (too many jobs for a frame). */
static int s_local_ps(ghostd_jobs_t *jobs, const cairn_caller_t *c,
                      const Cairn__Ghostd__PsRequest *pr,
                      Cairn__Ghostd__PsReply **ret)
{
    Cairn__Ghostd__PsReply view = CAIRN__GHOSTD__PS_REPLY__INIT;
    _cleanup_free_ Cairn__Ghostd__Job *msgs = calloc(jobs->n_jobs + 1, sizeof *msgs);
    _cleanup_free_ Cairn__Ghostd__Job **ptrs = calloc(jobs->n_jobs + 1, sizeof *ptrs);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;

    if (!msgs || !ptrs)
        return -ENOMEM;
    for (size_t i = 0; i < jobs->n_jobs; i++) {
        if (!s_visible(c, jobs->jobs[i], pr))
            continue;
        jobs_job_msg(jobs->jobs[i], &msgs[view.n_jobs]);
        ptrs[view.n_jobs] = &msgs[view.n_jobs];
        view.n_jobs++;
    }
    view.jobs = ptrs;
    int r = cairn_wire_pack(&view.base, &buf, &len);
    if (r < 0)
        return r;
    *ret = cairn__ghostd__ps_reply__unpack(NULL, len, buf);
    return *ret ? 0 : -ENOMEM;
}

static int s_job_order(const void *a, const void *b)
{
    const Cairn__Ghostd__Job *x = *(Cairn__Ghostd__Job *const *)a;
    const Cairn__Ghostd__Job *y = *(Cairn__Ghostd__Job *const *)b;
    uint32_t nx = 0, ny = 0;
    uint64_t sx = 0, sy = 0;

    ghostd_gpid_parse(x->gpid, &nx, &sx);
    ghostd_gpid_parse(y->gpid, &ny, &sy);
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return sx < sy ? -1 : sx > sy;
}

static int s_answer_order(const void *a, const void *b)
{
    const Cairn__Ghostd__NodeAnswer *x = *(Cairn__Ghostd__NodeAnswer *const *)a;
    const Cairn__Ghostd__NodeAnswer *y = *(Cairn__Ghostd__NodeAnswer *const *)b;

    return x->node < y->node ? -1 : x->node > y->node;
}

/* Every job heard and every node asked (or known dead), merged. */
static void s_ps_done(jobs_query_t *q)
{
    ghostd_jobs_t *jobs = q->jobs;
    size_t n_jobs = q->local ? q->local->n_jobs : 0, n_nodes = 0;
    Cairn__Ghostd__NodeAnswer answers[CAIRN_VIEW_MAX_NODES + 1];
    Cairn__Ghostd__NodeAnswer *ap[CAIRN_VIEW_MAX_NODES + 1];
    char why[CAIRN_VIEW_MAX_NODES + 1][160];

    for (size_t i = 0; i < q->asked; i++)
        if (q->codes[i] == CAIRN_OK && q->replies[i] &&
            q->replies[i]->msg_case == CAIRN__GHOSTD__REPLY__MSG_PS_REPLY)
            n_jobs += q->replies[i]->ps_reply->n_jobs;
    _cleanup_free_ Cairn__Ghostd__Job **all = calloc(n_jobs + 1, sizeof *all);
    if (!all)
        return s_query_fail(q, CAIRN_INTERNAL, "out of memory");
    n_jobs = 0;
    for (size_t i = 0; q->local && i < q->local->n_jobs; i++)
        all[n_jobs++] = q->local->jobs[i];
    if (q->local) {   /* this node answered itself */
        cairn__ghostd__node_answer__init(&answers[n_nodes]);
        answers[n_nodes].node = jobs->self;
        answers[n_nodes].reachable = true;
        answers[n_nodes].error = "";
        ap[n_nodes] = &answers[n_nodes];
        n_nodes++;
    }
    for (size_t i = 0; i < q->asked; i++) {
        Cairn__Ghostd__NodeAnswer *a = &answers[n_nodes];
        cairn__ghostd__node_answer__init(a);
        a->node = q->nodes[i];
        bool ok = q->codes[i] == CAIRN_OK && q->replies[i] &&
                  q->replies[i]->msg_case == CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;
        a->reachable = ok;
        if (ok) {
            Cairn__Ghostd__PsReply *r = q->replies[i]->ps_reply;
            for (size_t k = 0; k < r->n_jobs; k++)
                all[n_jobs++] = r->jobs[k];
            a->error = "";
        } else {
            snprintf(why[n_nodes], sizeof why[0], "%s: %s",
                     q->codes[i] >= 0 ? cairn_code_name(q->codes[i]) : "internal",
                     q->errors[i] ? q->errors[i] : "");
            a->error = why[n_nodes];
        }
        ap[n_nodes++] = a;
    }
    /* members clusterd holds dead (or not heard from): listed, not asked */
    for (uint32_t id = 1; !q->only_node && id <= CAIRN_VIEW_MAX_NODES; id++) {
        const char *state = cairn_view_state(jobs->view, id);
        if (!state || id == jobs->self || strcmp(state, "alive") == 0 ||
            strcmp(state, "left") == 0)
            continue;
        Cairn__Ghostd__NodeAnswer *a = &answers[n_nodes];
        cairn__ghostd__node_answer__init(a);
        a->node = id;
        snprintf(why[n_nodes], sizeof why[0], "unavailable: clusterd says node %u "
                 "is %s", id, state);
        a->error = why[n_nodes];
        ap[n_nodes++] = a;
    }
    qsort(all, n_jobs, sizeof *all, s_job_order);
    qsort(ap, n_nodes, sizeof *ap, s_answer_order);
    Cairn__Ghostd__PsReply pr = CAIRN__GHOSTD__PS_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    pr.jobs = all;
    pr.n_jobs = n_jobs;
    pr.nodes = ap;
    pr.n_nodes = n_nodes;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;
    reply.ps_reply = &pr;
    s_query_reply(q, &reply.base);
}

int ghostd_jobs_handle_ps(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = jobs_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__PsRequest *pr = body->ps;
    const cairn_caller_t *c = cairn_request_caller(req);
    uint32_t others[CAIRN_VIEW_MAX_NODES];
    size_t n = 0;

    if (!pr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "ps: request body is empty");
    if (pr->node > 255)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "ps: node %u is not "
                                  "a node id (1..255)", pr->node);
    bool here = pr->local_only || pr->node == 0 || pr->node == jobs->self;
    if (!pr->local_only && pr->node != jobs->self)
        n = pr->node ? (others[0] = pr->node, 1) : s_others(jobs, others);
    Cairn__Ghostd__PsReply *local = NULL;
    int r = here ? s_local_ps(jobs, c, pr, &local) : 0;
    if (r == -EMSGSIZE)
        return cairn_request_fail(req, CAIRN_TOO_LARGE, "ps: node %u's %zu jobs do "
                                  "not fit in one reply", jobs->self,
                                  jobs->n_jobs);
    if (r < 0)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    /* before the query defers req, which takes its header */
    uint64_t budget = jobs_budget_ms(req, S_DEFAULT_DEADLINE_MS);
    jobs_query_t *q = jobs_query_new(jobs, Q_PS, req);
    if (!q) {
        s_ps_reply_free(local);
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    q->only_node = pr->node;
    q->local = local;
    Cairn__Ghostd__PsRequest sub = *pr;
    Cairn__Ghostd__Request fwd = CAIRN__GHOSTD__REQUEST__INIT;
    sub.local_only = true;
    sub.node = 0;
    fwd.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
    fwd.ps = &sub;
    for (size_t i = 0; q->d && i < n; i++)
        jobs_query_ask(q, others[i], &fwd.base, budget);
    return jobs_query_sent(q);
}

/* ---- signal and wait: finding the job ----------------------------------- */

/* The job of gpid from its directory alone (no ghostd has it in its
 * table): 0 and *ret filled (ret->exited when an exit record is there),
 * -ENOENT when there is no such job. */
static int s_job_from_dir(ghostd_jobs_t *jobs, const char *gpid, ghostd_job_t *ret)
{
    memset(ret, 0, sizeof *ret);
    ret->pidfd = -1;
    snprintf(ret->dir, sizeof ret->dir, "%s/%s", jobs->dir, gpid);
    int r = ghostd_jobrec_read(ret->dir, &ret->rec);
    if (r < 0)
        return r == -EBADMSG ? -ENOENT : r;
    ret->exited = ghostd_exitrec_read(ret->dir, &ret->exit) == 0;
    return 0;
}

/* Replies to a signal or wait with job. */
static void s_reply_job(cairn_service_t *svc, cairn_deferred_t *d, jobs_qkind_t kind,
                        const ghostd_job_t *job)
{
    Cairn__Ghostd__SignalReply sr = CAIRN__GHOSTD__SIGNAL_REPLY__INIT;
    Cairn__Ghostd__WaitReply wr = CAIRN__GHOSTD__WAIT_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    Cairn__Ghostd__Job m;

    jobs_job_msg(job, &m);
    if (kind == Q_SIGNAL) {
        sr.job = &m;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_SIGNAL_REPLY;
        reply.signal_reply = &sr;
    } else {
        wr.job = &m;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_WAIT_REPLY;
        reply.wait_reply = &wr;
    }
    cairn_deferred_reply(svc, d, &reply.base);
}

/* Fills req's own reply (signal or wait) with job, answered when the
 * handler returns: the messages live in the request's arena, their
 * strings in the table. */
static int s_reply_now(cairn_request_t *req, jobs_qkind_t kind, const ghostd_job_t *job)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__Job *m = cairn_request_alloc(req, sizeof *m);
    Cairn__Ghostd__SignalReply *sr = cairn_request_alloc(req, sizeof *sr);
    Cairn__Ghostd__WaitReply *wr = cairn_request_alloc(req, sizeof *wr);

    if (!m || !sr || !wr)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    jobs_job_msg(job, m);
    if (kind == Q_SIGNAL) {
        cairn__ghostd__signal_reply__init(sr);
        sr->job = m;
        reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_SIGNAL_REPLY;
        reply->signal_reply = sr;
    } else {
        cairn__ghostd__wait_reply__init(wr);
        wr->job = m;
        reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_WAIT_REPLY;
        reply->wait_reply = wr;
    }
    return CAIRN_REPLY_NOW;
}

/* Nobody runs gpid: its directory says whether it ever ran and how it
 * ended; `unreached` names the nodes that did not answer. */
static void s_not_running(jobs_query_t *q, const char *unreached)
{
    char who[128], msg[640];
    ghostd_job_t job;
    int r = s_job_from_dir(q->jobs, q->gpid, &job);

    if (r < 0) {
        snprintf(msg, sizeof msg, "no job %s in the cluster%s%s", q->gpid,
                 *unreached ? " (no answer from: " : "", unreached);
        if (*unreached)
            strncat(msg, ")", sizeof msg - strlen(msg) - 1);
        return s_query_fail(q, CAIRN_NOT_FOUND, msg);
    }
    if (!cairn_caller_may_act_on(&q->caller, job.rec.uid)) {
        snprintf(msg, sizeof msg, "job %s is uid %u's; %s may act only on its own "
                 "jobs", q->gpid, job.rec.uid,
                 cairn_caller_describe(&q->caller, who, sizeof who));
        s_query_fail(q, CAIRN_PERMISSION_DENIED, msg);
    } else if (job.exited && q->kind == Q_WAIT) {
        s_reply_job(q->jobs->svc, q->d, Q_WAIT, &job);
        q->d = NULL;
    } else if (job.exited) {
        snprintf(msg, sizeof msg, "job %s has exited (exit_code %d, exit_signal %d)",
                 q->gpid, job.exit.exit_code, job.exit.exit_signal);
        s_query_fail(q, CAIRN_FAILED_PRECONDITION, msg);
    } else if (!s_follow(q, job.rec.migrating_to != 0 || *unreached)) {
        snprintf(msg, sizeof msg, "job %s is not running on any node that "
                 "answered; its node %u %s", q->gpid, job.rec.node,
                 *unreached ? "did not answer" : "does not have it");
        s_query_fail(q, *unreached ? CAIRN_UNAVAILABLE : CAIRN_NOT_FOUND, msg);
    }
    ghostd_jobrec_clear(&job.rec);
}

/* A signal or wait answer from node i: decisive unless not-found or the
 * node could not be reached. */
static void s_query_heard(jobs_query_t *q, size_t i)
{
    int code = q->codes[i];

    if (q->kind == Q_PS || q->kind == Q_RUN || !q->d)
        return;
    if (code == CAIRN_OK && q->replies[i]) {
        s_query_reply(q, &q->replies[i]->base);
        return;
    }
    /* found, and refused (not the caller's, exited, ...); a wait's
     * "still runs" TIMEOUT is told from an unanswered node's once all
     * answered (s_query_done) */
    if (code != CAIRN_NOT_FOUND && code != CAIRN_UNAVAILABLE &&
        code != CAIRN_TIMEOUT && code >= 0)
        s_query_fail(q, code, q->errors[i] ? q->errors[i] : "");
}

/* Every node answered (or not): the query's last word. */
static void s_query_done(jobs_query_t *q)
{
    char unreached[512] = "";

    if (!q->d)
        return;
    if (q->kind == Q_PS)
        return s_ps_done(q);
    if (q->kind == Q_RUN) {
        if (q->codes[0] == CAIRN_OK && q->replies[0])
            return s_query_reply(q, &q->replies[0]->base);
        return s_query_fail(q, q->codes[0] >= 0 ? q->codes[0] : CAIRN_INTERNAL,
                            q->errors[0] ? q->errors[0] : "");
    }
    for (size_t i = 0; i < q->asked; i++) {
        if (q->kind == Q_WAIT && q->codes[i] == CAIRN_TIMEOUT &&
            q->errors[i] && strstr(q->errors[i], "still runs"))
            return s_query_fail(q, CAIRN_TIMEOUT, q->errors[i]);
        if (q->codes[i] != CAIRN_NOT_FOUND) {
            size_t len = strlen(unreached);
            snprintf(unreached + len, sizeof unreached - len, "%snode %u",
                     len ? ", " : "", q->nodes[i]);
        }
    }
    s_not_running(q, unreached);
}

static int s_check_gpid(const char *what, const char *gpid, cairn_error_t *err)
{
    uint32_t node;
    uint64_t seq;

    if (!gpid || !*gpid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: gpid is missing", what);
    if (ghostd_gpid_parse(gpid, &node, &seq) < 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: '%.64s' is not a gpid (NODE.SEQ, e.g. 1.7)",
                               what, gpid);
    return 0;
}

/* Asks every other alive ghostd for q's job (signal or wait, local_only),
 * with the time left to q's deadline. */
static void s_ask_others(jobs_query_t *q)
{
    Cairn__Ghostd__SignalRequest sr = CAIRN__GHOSTD__SIGNAL_REQUEST__INIT;
    Cairn__Ghostd__WaitRequest wr = CAIRN__GHOSTD__WAIT_REQUEST__INIT;
    Cairn__Ghostd__Request fwd = CAIRN__GHOSTD__REQUEST__INIT;
    uint32_t others[CAIRN_VIEW_MAX_NODES];
    size_t n = s_others(q->jobs, others);
    uint64_t now = cairn_now_ms();
    uint64_t budget = q->deadline > now ? q->deadline - now : 1;

    if (q->kind == Q_SIGNAL) {
        sr.gpid = q->gpid;
        sr.signal = q->signal;
        sr.local_only = true;
        fwd.msg_case = CAIRN__GHOSTD__REQUEST__MSG_SIGNAL;
        fwd.signal = &sr;
    } else {
        wr.gpid = q->gpid;
        wr.local_only = true;
        fwd.msg_case = CAIRN__GHOSTD__REQUEST__MSG_WAIT;
        fwd.wait = &wr;
    }
    for (size_t i = 0; i < n && q->d; i++)
        jobs_query_ask(q, others[i], &fwd.base, budget);
}

/* Looks for gpid (kind signal or wait) at every other alive ghostd, for
 * req; sig is the signal's number. */
static int s_find_elsewhere(ghostd_jobs_t *jobs, cairn_request_t *req, jobs_qkind_t kind,
                            const char *gpid, uint32_t sig, uint64_t budget)
{
    jobs_query_t *q = jobs_query_new(jobs, kind, req);

    if (!q)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    snprintf(q->gpid, sizeof q->gpid, "%s", gpid);
    q->signal = sig;
    q->deadline = cairn_now_ms() + budget;
    s_ask_others(q);
    return jobs_query_sent(q);
}

/* The caller may act on job, else PERMISSION_DENIED in err. */
static int s_check_owner(const cairn_caller_t *c, const ghostd_job_t *job,
                         const char *what, cairn_error_t *err)
{
    char who[128];

    if (cairn_caller_may_act_on(c, job->rec.uid))
        return 0;
    return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                           "%s: job %s is uid %u's; %s may act only on its own "
                           "jobs (root may act on any)", what, job->rec.gpid,
                           job->rec.uid, cairn_caller_describe(c, who, sizeof who));
}

/* ---- signal ------------------------------------------------------------------ */

static bool s_forwarded_by_reaper(int sig)
{
    static const int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
                               SIGCONT, SIGWINCH, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU };

    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        if (fwd[i] == sig)
            return true;
    return false;
}

/* Sends sig to job: SIGKILL to the reaper (the namespace dies with it);
 * the signals ghost-init forwards to the reaper; any other (SIGSTOP, a
 * signal the reaper ignores as the namespace's init) straight to the
 * program, found through the reaper's children and held by a pidfd. */
static int s_send(ghostd_job_t *job, int sig, cairn_error_t *err)
{
    ghostd_jobsample_t s;
    int r;

    if (sig == SIGKILL || s_forwarded_by_reaper(sig)) {
        r = jobs_pidfd_signal(job->pidfd, sig) < 0 ? -errno : 0;
        if (r == 0 && sig == SIGKILL)
            job->killed = true;
    } else if (ghostd_job_sample(job->rec.host_pid, &s) < 0 || !s.program) {
        r = -ESRCH;
    } else {
        int fd = jobs_pidfd_open(s.program);
        r = fd < 0 ? -errno : jobs_pidfd_signal(fd, sig) < 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
    }
    if (r == -ESRCH)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               "signal: job %s is ending", job->rec.gpid);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_INTERNAL, "signal %d to job %s: %s",
                               sig, job->rec.gpid, strerror(-r));
    return 0;
}

/* Signals job, in this node's table, for caller c: its owner or root,
 * and not ended; logged. 0, or -errno with err. */
static int s_signal_here(const cairn_caller_t *c, ghostd_job_t *job, uint32_t sig,
                         cairn_error_t *err)
{
    int r = s_check_owner(c, job, "signal", err);

    if (r == 0 && job->exited)
        r = cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION, "signal: job "
                            "%s has exited (exit_code %d, exit_signal %d)",
                            job->rec.gpid, job->exit.exit_code, job->exit.exit_signal);
    if (r == 0)
        r = s_send(job, (int)sig, err);
    if (r == 0)
        cairn_log_info("job-signal", "gpid=%s signal=%u", job->rec.gpid, sig);
    return r;
}

int ghostd_jobs_handle_signal(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = jobs_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__SignalRequest *sr = body->signal;
    const cairn_caller_t *c = cairn_request_caller(req);
    cairn_error_t err = { 0 };

    if (!sr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "signal: request body is empty");
    int r = s_check_gpid("signal", sr->gpid, &err);
    if (r == 0 && (sr->signal < 1 || sr->signal > 64))
        r = cairn_error_set(&err, -EINVAL, CAIRN_INVALID_ARGUMENT, "signal: %u is "
                            "not a signal number (1..64)", sr->signal);
    if (r < 0)
        return jobs_fail(req, &err);
    ghostd_job_t *job = jobs_find(jobs, sr->gpid);
    if (!job || job->launching) {
        if (sr->local_only)
            return cairn_request_fail(req, CAIRN_NOT_FOUND, "signal: job %s does "
                                      "not run on node %u", sr->gpid, jobs->self);
        return s_find_elsewhere(jobs, req, Q_SIGNAL, sr->gpid, sr->signal,
                                jobs_budget_ms(req, S_DEFAULT_DEADLINE_MS));
    }
    if (s_signal_here(c, job, sr->signal, &err) < 0)
        return jobs_fail(req, &err);
    return s_reply_now(req, Q_SIGNAL, job);
}

/* ---- wait --------------------------------------------------------------------- */

/* Takes w off its job, cancels its deadline and frees it; its request,
 * unanswered, is the caller's. */
static cairn_deferred_t *s_wait_detach(jobs_wait_t *w)
{
    ghostd_job_t *owner = w->job;
    cairn_deferred_t *d = w->d;

    for (size_t i = 0; i < owner->n_waits; i++)
        if (owner->waits[i] == w) {
            memmove(&owner->waits[i], &owner->waits[i + 1],
                    (owner->n_waits - i - 1) * sizeof *owner->waits);
            owner->n_waits--;
            break;
        }
    if (w->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(owner->jobs->svc), w->timer);
    free(w);
    return d;
}

/* Answers w (job: its end, NULL: code and msg) and frees it. */
void jobs_wait_answer(jobs_wait_t *w, const ghostd_job_t *job, int code,
                          const char *msg)
{
    cairn_service_t *svc = w->job->jobs->svc;
    cairn_deferred_t *d = s_wait_detach(w);

    if (job)
        s_reply_job(svc, d, Q_WAIT, job);
    else
        cairn_deferred_fail(svc, d, code, msg);
}

static int s_on_wait_deadline(cairn_loop_t *loop, int64_t id, void *userdata)
{
    jobs_wait_t *w = userdata;
    char msg[160];

    w->timer = 0;
    snprintf(msg, sizeof msg, "wait: job %s still runs after %llu ms",
             w->job->rec.gpid, (unsigned long long)(cairn_now_ms() - w->since));
    jobs_wait_answer(w, NULL, CAIRN_TIMEOUT, msg);
    return 0;
}

/* Defers d on job until it ends or budget ms pass; d is job's then.
 * -ENOMEM (d still the caller's). */
static int s_wait_attach(ghostd_job_t *job, cairn_deferred_t *d, const cairn_caller_t *caller,
                         uint64_t budget, bool forwarded)
{
    jobs_wait_t **grown = realloc(job->waits, (job->n_waits + 1) * sizeof *grown);
    jobs_wait_t *w = grown ? calloc(1, sizeof *w) : NULL;

    if (grown)
        job->waits = grown;
    if (!w)
        return -ENOMEM;
    w->job = job;
    w->since = cairn_now_ms();
    w->deadline = w->since + budget;
    w->caller = *caller;
    w->forwarded = forwarded;
    w->timer = cairn_loop_add_timer(cairn_service_loop(job->jobs->svc), budget, 0,
                                    s_on_wait_deadline, w);
    if (w->timer <= 0) {
        free(w);
        return -ENOMEM;
    }
    w->d = d;
    job->waits[job->n_waits++] = w;
    return 0;
}

static int s_wait_defer(ghostd_job_t *job, cairn_request_t *req, bool forwarded)
{
    uint64_t budget = jobs_budget_ms(req, 120000);
    cairn_caller_t caller = *cairn_request_caller(req);
    cairn_deferred_t *d = cairn_request_defer(req);

    if (!d)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    if (s_wait_attach(job, d, &caller, budget, forwarded) < 0)
        cairn_deferred_fail(job->jobs->svc, d, CAIRN_INTERNAL, "out of memory");
    return CAIRN_REPLY_DEFERRED;
}

int ghostd_jobs_handle_wait(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = jobs_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__WaitRequest *wr = body->wait;
    cairn_error_t err = { 0 };

    if (!wr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "wait: request body is empty");
    if (s_check_gpid("wait", wr->gpid, &err) < 0)
        return jobs_fail(req, &err);
    ghostd_job_t *job = jobs_find(jobs, wr->gpid);
    if (!job || job->launching) {
        if (wr->local_only)
            return cairn_request_fail(req, CAIRN_NOT_FOUND, "wait: job %s does "
                                      "not run on node %u", wr->gpid, jobs->self);
        return s_find_elsewhere(jobs, req, Q_WAIT, wr->gpid, 0, jobs_budget_ms(req, 120000));
    }
    if (s_check_owner(cairn_request_caller(req), job, "wait", &err) < 0)
        return jobs_fail(req, &err);
    if (!job->exited)
        return s_wait_defer(job, req, wr->local_only);
    return s_reply_now(req, Q_WAIT, job);
}

/* ---- following a moving job ------------------------------------------------ */

static void s_search(jobs_query_t *q);

static int s_on_follow(cairn_loop_t *loop, int64_t id, void *userdata)
{
    jobs_query_t *q = userdata;

    q->retry = 0;
    s_search(q);   /* q may be gone after */
    return 0;
}

/* A new query of q's kind, caller, job and deadline answering d, which
 * searches again in S_FOLLOW_MS; NULL (d still the caller's) when it
 * cannot be made. */
static jobs_query_t *s_follow_later(ghostd_jobs_t *jobs, jobs_qkind_t kind,
                                    const cairn_caller_t *caller, const char *gpid,
                                    uint32_t sig, uint64_t deadline, cairn_deferred_t *d)
{
    jobs_query_t *q = s_query_alloc(jobs, kind, caller);

    if (!q)
        return NULL;
    snprintf(q->gpid, sizeof q->gpid, "%s", gpid);
    q->signal = sig;
    q->deadline = deadline;
    q->retry = cairn_loop_add_timer(cairn_service_loop(jobs->svc), S_FOLLOW_MS, 0,
                                    s_on_follow, q);
    if (q->retry <= 0) {
        q->retry = 0;
        s_query_maybe_free(q);
        return NULL;
    }
    q->d = d;
    return q;
}

/* q found nobody running its job, which has not ended: when worth_it
 * (the job is moving, or a node did not answer) and time is left, a new
 * query answers q's request after searching again, and true. */
static bool s_follow(jobs_query_t *q, bool worth_it)
{
    if (!worth_it || !q->d || (q->kind != Q_SIGNAL && q->kind != Q_WAIT) ||
        cairn_now_ms() + S_FOLLOW_MS >= q->deadline)
        return false;
    if (!s_follow_later(q->jobs, q->kind, &q->caller, q->gpid, q->signal, q->deadline,
                        q->d))
        return false;
    q->d = NULL;
    return true;
}

/* q's job is in this node's table: served here as its handler would. */
static void s_serve_here(jobs_query_t *q, ghostd_job_t *job)
{
    cairn_error_t err = { 0 };
    uint64_t now = cairn_now_ms();

    if (q->kind == Q_SIGNAL) {
        if (s_signal_here(&q->caller, job, q->signal, &err) < 0)
            return s_query_fail(q, err.code, err.message);
        s_reply_job(q->jobs->svc, q->d, Q_SIGNAL, job);
    } else if (s_check_owner(&q->caller, job, "wait", &err) < 0) {
        return s_query_fail(q, err.code, err.message);
    } else if (job->exited) {
        s_reply_job(q->jobs->svc, q->d, Q_WAIT, job);
    } else if (s_wait_attach(job, q->d, &q->caller,
                             q->deadline > now ? q->deadline - now : 1, false) < 0) {
        return s_query_fail(q, CAIRN_INTERNAL, "out of memory");
    }
    q->d = NULL;
}

/* q's search, again: here first, then every other alive ghostd. */
static void s_search(jobs_query_t *q)
{
    ghostd_job_t *job = jobs_find(q->jobs, q->gpid);

    if (job && !job->launching) {
        s_serve_here(q, job);
        s_query_maybe_free(q);
        return;
    }
    s_ask_others(q);
    jobs_query_sent(q);
}

void jobs_waits_follow(ghostd_job_t *job, const char *msg)
{
    while (job->n_waits) {
        jobs_wait_t *w = job->waits[0];
        if (w->forwarded || !s_follow_later(job->jobs, Q_WAIT, &w->caller, job->rec.gpid,
                                            0, w->deadline, w->d)) {
            jobs_wait_answer(w, NULL, CAIRN_UNAVAILABLE, msg);
            continue;
        }
        s_wait_detach(w);   /* its request is the new query's */
    }
}
