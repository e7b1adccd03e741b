/* follow.c - what a policy daemon knows of the cluster (sched-private.h).
 *
 * Design. The node's probed is the source of load: every new local vector
 * is published on its PUB socket (topic "load"), and the window of peers'
 * vectors is in its Request{load} answer. A message on the SUB socket,
 * or the tick (one gossip period, in case PUB/SUB dropped one), asks
 * probed for its whole view; the answer is followed by a Request{ps
 * local_only} to the node's ghostd, whose list is the truth about which
 * jobs run here (probed's per-job figures are merged in by gpid); with
 * both fresh, moves.c decides. At most one of each request is in flight;
 * a refresh asked meanwhile runs once they are answered.
 *
 * Commitments. A placement or a migration changes a node's load before
 * any vector can show it; until that node's vector sampled after it (by
 * SCHED_SETTLE_MS and a probe period) arrives, the demand is added to what the policy sees
 * (sched_node_t.pending_*). Without that, the sixteen placements of one
 * period all go to the node that looked idle, and balancing sends a
 * second job after the first before the target's vector says it is busy.
 *
 * Holds. A job this node moved, or failed to move, and a job that arrived
 * here from another node, are held: the policy sees how long ago
 * (since_move_ms) and leaves them alone for its hold. A job that moved
 * before this daemon started is seen as arriving now unless probed's
 * age says how long it has been here.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "sched-private.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_ASK_TIMEOUT_MS 2000
#define S_DEFAULT_COST_MS 100          /* a small job's migration */
#define S_DEFAULT_BYTES_PER_MS 65536   /* 64 MB/s when probed gives no cost */

char *sched_follow_endpoint(sched_t *s, const char *service)
{
    const cairn_description_t *d = cairn_service_description(s->svc);
    const cairn_node_desc_t *self = cairn_service_node(s->svc);

    if (cairn_service_keypair(s->svc))
        return cairn_description_tcp_endpoint(d, self, service, false);
    return cairn_description_ipc_endpoint(d, self, service);
}

/* ---- holds and commitments --------------------------------------------- */

static sched_held_t *s_held(sched_t *s, const char *gpid)
{
    for (size_t i = 0; i < s->n_held; i++)
        if (strcmp(s->held[i].gpid, gpid) == 0)
            return &s->held[i];
    return NULL;
}

static uint64_t s_hold_window(const sched_t *s)
{
    return (s->params.hold_periods + 1) * sched_balance_period(&s->params);
}

void sched_follow_hold(sched_t *s, const char *gpid)
{
    uint64_t now = cairn_now_ms();
    sched_held_t *h = s_held(s, gpid);

    /* Forget what is past any hold; if still full, the oldest goes. */
    for (size_t i = 0; !h && i < s->n_held;)
        if (now - s->held[i].at_ms > s_hold_window(s))
            s->held[i] = s->held[--s->n_held];
        else
            i++;
    if (!h && s->n_held == SCHED_HELD) {
        size_t old = 0;
        for (size_t i = 1; i < s->n_held; i++)
            if (s->held[i].at_ms < s->held[old].at_ms)
                old = i;
        s->held[old] = s->held[--s->n_held];
    }
    if (!h)
        h = &s->held[s->n_held++];
    snprintf(h->gpid, sizeof(h->gpid), "%s", gpid);
    h->at_ms = now;
}

static const Cairn__Probed__LoadVector *s_vector(const sched_t *s, uint32_t node);

void sched_follow_commit(sched_t *s, uint32_t node, double cpu, int64_t mem)
{
    const Cairn__Probed__LoadVector *v = s_vector(s, node);

    if (s->n_commits == SCHED_COMMITS)
        memmove(s->commits, s->commits + 1, sizeof(s->commits[0]) * --s->n_commits);
    s->commits[s->n_commits++] = (sched_commit_t){
        .node = node, .unix_ms = cairn_realtime_ms(), .cpu = cpu, .mem = mem,
        .have_used = v != NULL, .used_before = v ? v->mem_used_bytes : 0 };
}

/* Whether v's memory figure shows c: used moved by half of c's memory
 * since c (a killed source frees its pages only once it runs its exit --
 * slowly, at a job's CPU weight on a throttled node -- and a restore fills
 * them over its run; a vector sampled meanwhile showed a node that had
 * sent a job away as full as before, and sched-mem sent the other one
 * too: test-sched in CI). */
static bool s_mem_shown(const sched_commit_t *c, const Cairn__Probed__LoadVector *v)
{
    uint64_t half = (uint64_t)(c->mem < 0 ? -c->mem : c->mem) / 2;

    if (!c->have_used || !half)
        return true;
    return c->mem < 0 ? v->mem_used_bytes + half <= c->used_before
                      : v->mem_used_bytes >= c->used_before + half;
}

/* The vector of node in probed's answer, or NULL. */
static const Cairn__Probed__LoadVector *s_vector(const sched_t *s, uint32_t node)
{
    const Cairn__Probed__LoadReply *l = s->load;

    if (!l)
        return NULL;
    if (l->local && l->local->node == node)
        return l->local;
    for (size_t i = 0; i < l->n_known; i++)
        if (l->known[i]->vector && l->known[i]->vector->node == node)
            return l->known[i]->vector;
    return NULL;
}

/* Drops the commitments a vector shows by now, or too old to matter. A
 * vector shows a move once its CPU figure covers a whole period after it:
 * one sampled 250 ms after a job arrived on an idle node counted a quarter
 * of the job, and node 1 sent seven of sixteen jobs to the one node that
 * still looked light (bench/sched.sh --part makespan). */
static void s_prune_commits(sched_t *s)
{
    uint64_t now = cairn_realtime_ms();
    uint64_t settle = (uint64_t)s->params.gossip_period_ms + SCHED_SETTLE_MS;
    uint64_t stale = (uint64_t)s->params.stale_periods * s->params.gossip_period_ms + settle;
    size_t k = 0;

    for (size_t i = 0; i < s->n_commits; i++) {
        const sched_commit_t *c = &s->commits[i];
        const Cairn__Probed__LoadVector *v = s_vector(s, c->node);
        bool shown = v && v->sampled_ms >= c->unix_ms + settle && s_mem_shown(c, v);
        if (!shown && now - c->unix_ms <= stale)
            s->commits[k++] = *c;
    }
    s->n_commits = k;
}

/* ---- the input of a decision ------------------------------------------- */

static void s_node_of(const Cairn__Probed__LoadVector *v, sched_node_t *n)
{
    *n = (sched_node_t){ .node = v->node, .cpus = v->cpus,
                         .cpu_load = v->cpu_load, .runnable = v->runnable,
                         .mem_limit = v->mem_limit_bytes,
                         .mem_used = v->mem_used_bytes,
                         .mem_free = v->mem_free_bytes, .jobs = v->jobs };
}

static void s_add_pending(const sched_t *s, sched_node_t *n)
{
    for (size_t i = 0; i < s->n_commits; i++)
        if (s->commits[i].node == n->node) {
            n->pending_cpu += s->commits[i].cpu;
            n->pending_mem += s->commits[i].mem;
        }
}

void sched_follow_input(sched_t *s, sched_input_t *in, sched_node_t *peers,
                        uint32_t *members)
{
    const Cairn__Probed__LoadReply *l = s->load;
    uint32_t self = cairn_service_node(s->svc)->id;
    uint64_t since = l ? cairn_now_ms() - s->load_at : 0;
    uint64_t now = cairn_realtime_ms();

    s_prune_commits(s);
    memset(in, 0, sizeof(*in));
    in->params = &s->params;
    in->self.node = self;
    if (l && l->local) {
        s_node_of(l->local, &in->self);
        in->self.node = self;
        in->self.age_ms = now > l->local->sampled_ms ? now - l->local->sampled_ms : 0;
    }
    s_add_pending(s, &in->self);
    for (size_t i = 0; l && i < l->n_known && in->n_peers < CAIRN_VIEW_MAX_NODES; i++) {
        const Cairn__Probed__KnownVector *k = l->known[i];
        if (!k->vector || k->vector->node == self || k->vector->node == 0)
            continue;
        sched_node_t *n = &peers[in->n_peers++];
        s_node_of(k->vector, n);
        n->age_ms = k->age_ms + since;
        s_add_pending(s, n);
    }
    in->peers = peers;
    if (s->view && cairn_view_known(s->view))
        in->n_members = cairn_view_members(s->view, members);
    in->members = members;
    in->jobs = s->jobs;
    in->n_jobs = s->n_jobs;
    in->last_placed = s->last_placed;
    in->mem_used_before = s->mem_used_before;
}

char *sched_follow_known_json(sched_t *s)
{
    sched_node_t peers[CAIRN_VIEW_MAX_NODES];
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    sched_input_t in;
    json_t *a = json_array();
    char *txt = NULL;

    sched_follow_input(s, &in, peers, members);
    for (size_t i = 0; a && i <= in.n_peers; i++) {
        const sched_node_t *n = i == 0 ? &in.self : &in.peers[i - 1];
        if (i == 0 && !s->load)
            continue;
        json_array_append_new(a, json_pack(
            "{s:i, s:b, s:f, s:f, s:i, s:f, s:I, s:I, s:I, s:b}",
            "node", (int)n->node, "self", i == 0, "cpu_load", n->cpu_load,
            "cpus", n->cpus, "runnable", (int)n->runnable,
            "load", sched_node_load(n), "mem_free_bytes", (json_int_t)n->mem_free,
            "mem_limit_bytes", (json_int_t)n->mem_limit,
            "age_ms", (json_int_t)n->age_ms,
            "usable", i == 0 || sched_peer_usable(&in, n)));
    }
    if (a)
        txt = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return txt;
}

/* ---- ghostd's jobs ------------------------------------------------------ */

static const Cairn__Probed__JobLoad *s_job_load(const sched_t *s, const char *gpid)
{
    const Cairn__Probed__LoadVector *v = s->load ? s->load->local : NULL;

    for (size_t i = 0; v && i < v->n_job; i++)
        if (v->job[i]->gpid && strcmp(v->job[i]->gpid, gpid) == 0)
            return v->job[i];
    return NULL;
}

static bool s_had_job(const sched_t *s, const char *gpid)
{
    for (size_t i = 0; i < s->n_jobs; i++)
        if (strcmp(s->jobs[i].gpid, gpid) == 0)
            return true;
    return false;
}

/* One running job of ghostd's list as the policy sees it. */
static void s_job_of(sched_t *s, const Cairn__Ghostd__Job *g, bool first,
                     sched_job_t *j)
{
    const Cairn__Probed__JobLoad *jl = s_job_load(s, g->gpid);
    uint64_t now = cairn_now_ms();

    *j = (sched_job_t){ .cpu = g->cpu_percent / 100.0, .rss_bytes = g->rss_bytes,
                        .since_move_ms = SCHED_NEVER };
    snprintf(j->gpid, sizeof(j->gpid), "%s", g->gpid);
    if (jl) {
        j->cpu = jl->cpu;
        j->rss_bytes = jl->rss_bytes;
        j->rss_growth = jl->rss_growth_bytes_s;
        j->cost_ms = jl->migration_cost_ms;
    }
    if (!j->cost_ms)
        j->cost_ms = S_DEFAULT_COST_MS + j->rss_bytes / S_DEFAULT_BYTES_PER_MS;
    /* Arrived since the last list (or before this daemon, with nothing
     * saying when): held from now -- also when a hold of it is on record,
     * which is then this node's sending it away earlier: a job back within
     * a hold window of its last arrival was moved on again at once. */
    if (g->moves > 0 && !s_had_job(s, g->gpid) && !(first && jl))
        sched_follow_hold(s, g->gpid);
    const sched_held_t *h = s_held(s, g->gpid);
    if (h)
        j->since_move_ms = now - h->at_ms;
    if (g->moves > 0 && jl && jl->age_ms < j->since_move_ms)
        j->since_move_ms = jl->age_ms;
}

static void s_take_jobs(sched_t *s, const Cairn__Ghostd__PsReply *ps, bool first)
{
    uint32_t self = cairn_service_node(s->svc)->id;
    sched_job_t *jobs = calloc(ps->n_jobs + 1, sizeof(*jobs));
    size_t n = 0;

    if (!jobs) {
        cairn_log_warn(-ENOMEM, "jobs", "msg=\"keeping the last list\"");
        return;
    }
    for (size_t i = 0; i < ps->n_jobs; i++) {
        const Cairn__Ghostd__Job *g = ps->jobs[i];
        if (g->node == self && g->gpid && strcmp(g->state, "running") == 0)
            s_job_of(s, g, first, &jobs[n++]);
    }
    free(s->jobs);
    s->jobs = jobs;
    s->n_jobs = n;
}

static void s_refresh_done(sched_t *s)
{
    if (s->ask_again) {
        s->ask_again = false;
        sched_follow_refresh(s);
    }
}

static void s_on_ps(void *userdata, uint32_t node, int code, const char *message,
                    ProtobufCMessage *msg)
{
    sched_t *s = userdata;
    Cairn__Ghostd__Reply *reply = (void *)msg;

    s->asking_ps = false;
    if (code != CAIRN_OK || reply->msg_case != CAIRN__GHOSTD__REPLY__MSG_PS_REPLY) {
        const char *why = code != CAIRN_OK ? message : "not a ps reply";
        if (strcmp(s->ps_error, why) != 0)
            cairn_log_warn(0, "jobs", "msg=\"ghostd ps: %s; keeping the last "
                           "list\"", why);
        snprintf(s->ps_error, sizeof(s->ps_error), "%s", why);
    } else {
        if (s->ps_error[0])
            cairn_log_info("jobs", "msg=\"ghostd answers again\"");
        s->ps_error[0] = '\0';
        s_take_jobs(s, reply->ps_reply, !s->had_jobs);
        s->had_jobs = true;
        sched_moves_check(s);
    }
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
    s_refresh_done(s);
}

static void s_ask_ps(sched_t *s)
{
    _cleanup_free_ char *ep = sched_follow_endpoint(s, "ghostd");
    Cairn__Ghostd__PsRequest pr = CAIRN__GHOSTD__PS_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    int r;

    if (!ep) {
        s_refresh_done(s);
        return;
    }
    pr.local_only = true;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
    req.ps = &pr;
    r = cairn_peers_call(s->ghostd, cairn_service_node(s->svc)->id, ep, &req.base,
                         S_ASK_TIMEOUT_MS, s_on_ps, s);
    if (r < 0) {
        cairn_log_warn(r, "jobs", "msg=\"cannot ask ghostd at %s\"", ep);
        s_refresh_done(s);
        return;
    }
    s->asking_ps = true;
}

/* ---- probed's load ------------------------------------------------------ */

static void s_probed_failed(sched_t *s, const char *why)
{
    if (strcmp(s->probed_error, why) != 0)
        cairn_log_warn(0, "load", "msg=\"probed: %s; deciding on what is "
                       "known\"", why);
    snprintf(s->probed_error, sizeof(s->probed_error), "%s", why);
}

static int s_on_tick(cairn_loop_t *loop, int64_t id, void *userdata);

/* The tick every gossip period (again when probed's period changed). */
static int s_arm_tick(sched_t *s)
{
    cairn_loop_t *loop = cairn_service_loop(s->svc);

    if (s->tick > 0)
        cairn_loop_cancel_timer(loop, s->tick);
    s->tick = cairn_loop_add_timer(loop, s->params.gossip_period_ms,
                                   s->params.gossip_period_ms, s_on_tick, s);
    if (s->tick < 0)
        return cairn_log_err((int)s->tick, "load", "msg=\"no tick: following "
                             "probed's PUB only\"");
    return 0;
}

static void s_take_load(sched_t *s, Cairn__Probed__LoadReply *l)
{
    if (l->local && l->local->seq != s->local_seq) {
        if (s->load && s->load->local)
            s->mem_used_before = s->load->local->mem_used_bytes;
        s->local_seq = l->local->seq;
    }
    if (l->gossip_period_ms && l->gossip_period_ms != s->params.gossip_period_ms) {
        cairn_log_info("load", "gossip-period-ms=%u (was %u)",
                       l->gossip_period_ms, s->params.gossip_period_ms);
        s->params.gossip_period_ms = l->gossip_period_ms;
        s_arm_tick(s);
    }
    if (s->probed_error[0])
        cairn_log_info("load", "msg=\"probed answers again\"");
    s->probed_error[0] = '\0';
}

static void s_on_load(void *userdata, uint32_t node, int code, const char *message,
                      ProtobufCMessage *msg)
{
    sched_t *s = userdata;
    Cairn__Probed__Reply *reply = (void *)msg;

    s->asking_load = false;
    if (code != CAIRN_OK || reply->msg_case != CAIRN__PROBED__REPLY__MSG_LOAD_REPLY) {
        s_probed_failed(s, code != CAIRN_OK ? message : "not a load reply");
        if (msg)
            protobuf_c_message_free_unpacked(msg, NULL);
        s_refresh_done(s);
        return;
    }
    s_take_load(s, reply->load_reply);
    if (s->load)
        protobuf_c_message_free_unpacked(&s->load->base, NULL);
    s->load = reply->load_reply;      /* keep the load reply alone */
    reply->load_reply = NULL;
    reply->msg_case = CAIRN__PROBED__REPLY__MSG__NOT_SET;
    protobuf_c_message_free_unpacked(msg, NULL);
    s->load_at = cairn_now_ms();
    if (s->policy->balance || s->policy->ushers)
        s_ask_ps(s);
    else
        s_refresh_done(s);   /* rr moves nothing: no jobs to know */
}

void sched_follow_refresh(sched_t *s)
{
    _cleanup_free_ char *ep = NULL;
    Cairn__Probed__LoadRequest lr = CAIRN__PROBED__LOAD_REQUEST__INIT;
    Cairn__Probed__Request req = CAIRN__PROBED__REQUEST__INIT;
    int r;

    if (s->asking_load || s->asking_ps) {
        s->ask_again = true;
        return;
    }
    if (!(ep = sched_follow_endpoint(s, "probed"))) {
        s_probed_failed(s, "no service probed in the description");
        return;
    }
    req.msg_case = CAIRN__PROBED__REQUEST__MSG_LOAD;
    req.load = &lr;
    r = cairn_peers_call(s->probed, cairn_service_node(s->svc)->id, ep, &req.base,
                         S_ASK_TIMEOUT_MS, s_on_load, s);
    if (r < 0)
        s_probed_failed(s, strerror(-r));
    else
        s->asking_load = true;
}

/* ---- start and stop ----------------------------------------------------- */

static int s_on_sub(cairn_loop_t *loop, int fd, void *zsock, short revents,
                    void *userdata)
{
    sched_t *s = userdata;
    bool any = false;
    zmq_msg_t m;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, s->sub, ZMQ_DONTWAIT) >= 0)
        any = true;
    zmq_msg_close(&m);
    if (any)
        sched_follow_refresh(s);
    return 0;
}

static int s_on_tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    sched_follow_refresh(userdata);
    return 0;
}

int sched_follow_start(sched_t *s)
{
    const cairn_node_desc_t *self = cairn_service_node(s->svc);
    cairn_loop_t *loop = cairn_service_loop(s->svc);
    _cleanup_free_ char *ep = NULL;
    int r;

    s->view = cairn_view_new(s->svc, "ghostd", NULL, NULL);
    s->probed = cairn_peers_new(s->svc, "probed", &cairn__probed__reply__descriptor);
    s->ghostd = cairn_peers_new(s->svc, "ghostd", &cairn__ghostd__reply__descriptor);
    if (!s->view || !s->probed || !s->ghostd)
        return -ENOMEM;
    if ((r = cairn_view_start(s->view)) < 0)
        return r;
    if (asprintf(&ep, "ipc://%s/probed.pub.sock", self->rundir) < 0)
        return -ENOMEM;
    s->sub = zmq_socket(cairn_service_zmq_context(s->svc), ZMQ_SUB);
    if (!s->sub)
        return -errno;
    if (zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, "load", 4) < 0 ||
        zmq_connect(s->sub, ep) < 0)
        return cairn_log_err(-errno, "load", "msg=\"cannot subscribe to %s\"", ep);
    if ((s->sub_watch = cairn_loop_add_socket(loop, s->sub, ZMQ_POLLIN, s_on_sub, s)) < 0)
        return (int)s->sub_watch;
    if ((r = s_arm_tick(s)) < 0)
        return r;
    s->next_balance = cairn_now_ms() + sched_balance_period(&s->params);
    sched_follow_refresh(s);
    return 0;
}

void sched_follow_stop(sched_t *s)
{
    cairn_loop_t *loop = s->svc ? cairn_service_loop(s->svc) : NULL;

    if (s->tick > 0)
        cairn_loop_cancel_timer(loop, s->tick);
    if (s->sub_watch > 0)
        cairn_loop_remove(loop, s->sub_watch);
    if (s->sub)
        zmq_close(s->sub);
    s->tick = s->sub_watch = 0;
    s->sub = NULL;
    s->probed = cairn_peers_free(s->probed);
    s->ghostd = cairn_peers_free(s->ghostd);
    s->view = cairn_view_free(s->view);
    if (s->load)
        protobuf_c_message_free_unpacked(&s->load->base, NULL);
    s->load = NULL;
    free(s->jobs);
    s->jobs = NULL;
    s->n_jobs = 0;
}
