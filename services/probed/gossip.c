/* gossip.c - probed's dissemination (gossip.h).
 *
 * Design. The peers are drawn with a partial Fisher-Yates shuffle of the
 * view's alive members (self and peers with a request in flight left
 * out), from a xorshift generator seeded by getrandom: nodes that start
 * together still pick different peers. Requests go through cairn_peers,
 * one DEALER per peer made on first use, so a node ends up connected to
 * the peers it happened to pick and the loop never waits on any of them.
 * Each message is built in a small arena and packed by the send itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "gossip.h"
#include "log.h"
#include "peer.h"
#include "probed.pb-c.h"
#include "util/clock.h"
#include "view.h"

struct gossip {
    cairn_service_t *svc;
    window_t *w;                    /* the owner's */
    const loadvec_t *local;         /* the owner's */
    cairn_view_t *view;             /* alive probeds */
    cairn_peers_t *peers;           /* to them */
    int64_t timer;                  /* the period's, 0 if none */
    uint32_t period_ms;
    uint32_t fanout;
    bool inflight[256];             /* by node: a request unanswered */
    uint64_t sent, received;        /* vectors */
    uint64_t rng;                   /* xorshift64 state, never 0 */
};

static uint64_t s_rand(gossip_t *g)
{
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

gossip_t *gossip_new(cairn_service_t *svc, window_t *w, const loadvec_t *local)
{
    gossip_t *g = calloc(1, sizeof(*g));

    if (!g)
        return NULL;
    g->svc = svc;
    g->w = w;
    g->local = local;
    if (getrandom(&g->rng, sizeof(g->rng), 0) != sizeof(g->rng) || !g->rng)
        g->rng = cairn_now_ns() | 1;
    return g;
}

gossip_t *gossip_free(gossip_t *g)
{
    if (!g)
        return NULL;
    if (g->timer)
        cairn_loop_cancel_timer(cairn_service_loop(g->svc), g->timer);
    cairn_view_free(g->view);
    cairn_peers_free(g->peers);
    free(g);
    return NULL;
}

uint64_t gossip_sent(const gossip_t *g) { return g->sent; }
uint64_t gossip_received(const gossip_t *g) { return g->received; }

static uint64_t s_max_age(const gossip_t *g)
{
    return (uint64_t)g->period_ms * GOSSIP_MAX_AGE_PERIODS;
}

void gossip_age(gossip_t *g)
{
    window_age(g->w, cairn_now_ms(), s_max_age(g));
}

/* ---- sending --------------------------------------------------------------- */

static void s_on_reply(void *userdata, uint32_t node, int code, const char *message,
                       ProtobufCMessage *reply)
{
    gossip_t *g = userdata;

    g->inflight[node & 255] = false;
    if (code != CAIRN_OK)
        cairn_log_debug("gossip", "peer=%u code=%d msg=\"%s\"", node, code,
                        message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* The request to `to`: our vector, then the freshest of the window that
 * are not `to`'s own. */
static int s_send(gossip_t *g, uint32_t to, const char *endpoint)
{
    const window_entry_t *list[WINDOW_MAX];
    size_t n = window_list(g->w, list), nv = 0;
    Cairn__Probed__LoadVector pv[1 + GOSSIP_RELAYED], *pp[1 + GOSSIP_RELAYED];
    loadvec_arena_t arena = { 0 };
    int r = 0;

    for (size_t i = 0; i <= n && nv < 1 + GOSSIP_RELAYED && r == 0; i++) {
        const loadvec_t *v = i == 0 ? g->local : &list[i - 1]->v;
        if (v->node == to)
            continue;
        cairn__probed__load_vector__init(&pv[nv]);
        r = loadvec_to_pb(v, false, &pv[nv], loadvec_arena_alloc, &arena);
        pp[nv] = &pv[nv];
        nv++;
    }
    Cairn__Probed__GossipRequest gr = CAIRN__PROBED__GOSSIP_REQUEST__INIT;
    Cairn__Probed__Request req = CAIRN__PROBED__REQUEST__INIT;
    gr.vectors = pp;
    gr.n_vectors = nv;
    req.msg_case = CAIRN__PROBED__REQUEST__MSG_GOSSIP;
    req.gossip = &gr;
    if (r == 0)
        r = cairn_peers_call(g->peers, to, endpoint, &req.base, g->period_ms, s_on_reply, g);
    loadvec_arena_clear(&arena);
    if (r == 0) {
        g->inflight[to] = true;
        g->sent += nv;
    }
    return r;
}

static int s_on_tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    gossip_t *g = userdata;
    uint32_t members[CAIRN_VIEW_MAX_NODES], self = cairn_service_node(g->svc)->id;
    size_t n = 0, all = cairn_view_members(g->view, members);

    (void)loop, (void)id;
    gossip_age(g);
    if (!g->local->seq)
        return 0;           /* nothing sampled yet */
    for (size_t i = 0; i < all; i++)
        if (members[i] != self && !g->inflight[members[i] & 255])
            members[n++] = members[i];
    for (size_t i = 0; i < n && i < g->fanout; i++) {
        size_t j = i + (size_t)(s_rand(g) % (n - i));
        uint32_t to = members[j];
        members[j] = members[i];
        members[i] = to;
        const char *ep = cairn_view_endpoint(g->view, to);
        int r = ep ? s_send(g, to, ep) : -ENOENT;
        if (r < 0)
            cairn_log_debug("gossip", "peer=%u cannot send: %s", to, strerror(-r));
    }
    return 0;
}

/* ---- membership ----------------------------------------------------------- */

/* A node that died, left or is no member any more leaves the window. */
static void s_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    gossip_t *g = userdata;
    const window_entry_t *list[WINDOW_MAX];
    uint32_t gone[WINDOW_MAX];
    size_t n = window_list(g->w, list), k = 0;

    (void)old_view, (void)new_view;
    for (size_t i = 0; i < n; i++) {
        const char *st = cairn_view_state(g->view, list[i]->v.node);
        if (!st || strcmp(st, "dead") == 0 || strcmp(st, "left") == 0)
            gone[k++] = list[i]->v.node;
    }
    for (size_t i = 0; i < k; i++)
        window_forget(g->w, gone[i]);
}

int gossip_set(gossip_t *g, uint32_t period_ms, uint32_t fanout)
{
    cairn_loop_t *loop = cairn_service_loop(g->svc);

    if (g->timer)
        cairn_loop_cancel_timer(loop, g->timer);
    g->timer = 0;
    g->period_ms = period_ms;
    g->fanout = fanout;
    int64_t t = cairn_loop_add_timer(loop, period_ms, period_ms, s_on_tick, g);
    if (t < 0)
        return (int)t;
    g->timer = t;
    return 0;
}

int gossip_start(gossip_t *g, uint32_t period_ms, uint32_t fanout)
{
    g->view = cairn_view_new(g->svc, "probed", s_on_view, g);
    g->peers = cairn_peers_new(g->svc, "probed", &cairn__probed__reply__descriptor);
    if (!g->view || !g->peers)
        return -ENOMEM;
    int r = cairn_view_start(g->view);
    return r < 0 ? r : gossip_set(g, period_ms, fanout);
}

/* ---- receiving ------------------------------------------------------------- */

/* The node that sent req: its CURVE identity, else (mode none) what its
 * header says. */
static uint32_t s_sender(cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);

    return c->kind == CAIRN_CALLER_NODE ? c->node : cairn_request_header(req)->source_node;
}

/* Whether node may have a vector here: a node of the description or a
 * member the view knows (hotplugged). */
static bool s_member(gossip_t *g, uint32_t node)
{
    return cairn_description_find_node(cairn_service_description(g->svc), node) ||
           (g->view && cairn_view_state(g->view, node));
}

int gossip_handle(gossip_t *g, cairn_request_t *req)
{
    const Cairn__Probed__Request *rq = (const Cairn__Probed__Request *)cairn_request_body(req);
    const Cairn__Probed__GossipRequest *gr = rq->gossip;
    uint32_t self = cairn_service_node(g->svc)->id, from = s_sender(req);
    loadvec_t in[GOSSIP_MAX_VECTORS] = { 0 };
    char why[200];

    if (!gr || gr->n_vectors == 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "gossip with no vector");
    if (gr->n_vectors > GOSSIP_MAX_VECTORS)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "gossip with %zu vectors: "
                                  "at most %d", gr->n_vectors, GOSSIP_MAX_VECTORS);
    for (size_t i = 0; i < gr->n_vectors; i++) {
        if (loadvec_from_pb(gr->vectors[i], &in[i], why, sizeof(why)) < 0)
            return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "gossip vector %zu: %s",
                                      i, why);
        if (!s_member(g, in[i].node))
            return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "gossip vector %zu: "
                                      "node %u is not a member of the cluster", i,
                                      in[i].node);
    }
    uint64_t now = cairn_now_ms(), wall = cairn_realtime_ms();
    uint32_t accepted = 0;
    for (size_t i = 0; i < gr->n_vectors; i++) {
        uint64_t age = wall > in[i].sampled_ms ? wall - in[i].sampled_ms : 0;
        if (in[i].node == self || age > s_max_age(g))
            continue;      /* our own, relayed back; or stale */
        accepted += (uint32_t)window_merge(g->w, &in[i], from, age, now);
    }
    g->received += gr->n_vectors;
    Cairn__Probed__Reply *rep = (Cairn__Probed__Reply *)cairn_request_reply(req);
    Cairn__Probed__GossipReply *gp = cairn_request_alloc(req, sizeof(*gp));
    if (!gp)
        return -ENOMEM;
    cairn__probed__gossip_reply__init(gp);
    gp->accepted = accepted;
    rep->msg_case = CAIRN__PROBED__REPLY__MSG_GOSSIP_REPLY;
    rep->gossip_reply = gp;
    return CAIRN_REPLY_NOW;
}
