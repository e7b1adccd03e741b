/* view.c - a service's view of the membership (view.h has the contract).
 *
 * Design. The view is a table of members by id (1..255): state, whether
 * its appliance runs the service, its address. It is replaced whole by every
 * NodesReply from the local clusterd (view_apply_nodes), which is the one
 * source of truth; clusterd's events (PUB on ipc://<rundir>/
 * clusterd.pub.sock) only say "ask again now", so a dropped or reordered
 * event costs at most the 2 s of the periodic ask. One ask is in flight at
 * a time; an event during it marks the view stale and the reply triggers
 * the next ask. The ask goes through cairn_peers to clusterd's tcp
 * endpoint on this node (never blocking the loop; CURVE pinned in mode
 * curve like any peer).
 *
 * Who counts: members whose appliance runs the service (a node without
 * syncd can be no home of syncd's). Alive = alive or suspect (a suspect may still answer);
 * known = alive + dead + unknown (a member not heard from yet: counting
 * it keeps a node booting alone from being a quorum of one); left ones
 * do not count.
 * Quorum: alive > known / 2.
 *
 * Home of a name: rendezvous hashing. score(name, id) = mix(fnv1a(name) ^
 * mix(id + golden)), with mix the splitmix64 finaliser (a bijection with
 * full avalanche), so scores of one name over different ids are
 * independent and uniform; the highest wins (ties, which need a 64-bit
 * collision, go to the higher id). Removing a member moves exactly the
 * names it won; the others' winner is unchanged.
 *
 * The view id is FNV-1a over the sorted alive ids (4 bytes each, little
 * endian) run through mix: equal sets give equal ids on every node.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cairn/description.h"
#include "clusterd.pb-c.h"
#include "log.h"
#include "peer.h"
#include "util/cleanup.h"
#include "view.h"

#define ASK_EVERY_MS 2000
#define ASK_TIMEOUT_MS 1500

enum {
    M_NONE = 0,        /* not a member (or never heard of) */
    M_ALIVE,           /* alive or suspect */
    M_DEAD,            /* declared dead */
    M_LEFT,            /* left or removed */
    M_UNKNOWN,         /* a member clusterd has not heard from yet */
};

typedef struct member {
    int state;                 /* M_* */
    bool runs;                 /* its appliance runs the service */
    char *address;             /* owned; NULL if none given */
    char *endpoint;            /* owned; tcp://address:port, made on demand */
} member_t;

struct view {
    cairn_service_t *svc;      /* the daemon; NULL in tests */
    char *service;             /* whose members count; owned */
    cairn_view_changed_fn fn;        /* told of changes */
    void *userdata;            /* its */
    member_t members[CAIRN_VIEW_MAX_NODES + 1];   /* by id; [0] unused */
    uint32_t alive[CAIRN_VIEW_MAX_NODES];   /* alive members, sorted */
    size_t n_alive;            /* their number */
    size_t n_known;            /* alive + dead members */
    uint64_t id;               /* view id, 0 until known */
    bool known;                /* clusterd answered once */
    bool quorum;               /* alive > known / 2 */
    cairn_peers_t *peers;      /* to the local clusterd */
    void *sub;                 /* SUB on clusterd's events */
    int64_t sub_watch;         /* its loop watch, 0 if none */
    int64_t timer;             /* the periodic ask, 0 if none */
    bool asking;               /* a Request{nodes} in flight */
    bool stale;                /* an event came while asking */
    bool warned;               /* "clusterd not answering" logged */
};

/* ---- the pure part: hashing ------------------------------------------- */

static uint64_t s_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t s_fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_BASIS 0xcbf29ce484222325ull

static uint64_t s_score(uint64_t name_hash, uint32_t id)
{
    return s_mix(name_hash ^ s_mix((uint64_t)id + 0x9e3779b97f4a7c15ull));
}

uint32_t cairn_view_home_among(const char *name, const uint32_t *ids, size_t n)
{
    uint64_t h = s_fnv1a(name, strlen(name), FNV_BASIS), best = 0;
    uint32_t home = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t s = s_score(h, ids[i]);
        if (!home || s > best || (s == best && ids[i] > home)) {
            best = s;
            home = ids[i];
        }
    }
    return home;
}

uint64_t cairn_view_id_of(const uint32_t *sorted_ids, size_t n)
{
    uint64_t h = FNV_BASIS;

    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4] = { (unsigned char)sorted_ids[i],
                               (unsigned char)(sorted_ids[i] >> 8),
                               (unsigned char)(sorted_ids[i] >> 16),
                               (unsigned char)(sorted_ids[i] >> 24) };
        h = s_fnv1a(b, sizeof(b), h);
    }
    return s_mix(h) | 1;   /* never 0: 0 is "unknown" */
}

/* ---- lifecycle ---------------------------------------------------------- */

cairn_view_t *cairn_view_new(cairn_service_t *svc, const char *service,
                             cairn_view_changed_fn fn, void *userdata)
{
    cairn_view_t *v = calloc(1, sizeof(*v));

    if (!v)
        return NULL;
    v->service = strdup(service);
    if (!v->service) {
        free(v);
        return NULL;
    }
    v->svc = svc;
    v->fn = fn;
    v->userdata = userdata;
    return v;
}

static void s_member_clear(member_t *m)
{
    free(m->address);
    free(m->endpoint);
    *m = (member_t){ 0 };
}

cairn_view_t *cairn_view_free(cairn_view_t *v)
{
    if (!v)
        return NULL;
    if (v->svc) {
        cairn_loop_t *loop = cairn_service_loop(v->svc);
        if (v->timer)
            cairn_loop_cancel_timer(loop, v->timer);
        if (v->sub_watch)
            cairn_loop_remove(loop, v->sub_watch);
    }
    if (v->sub)
        zmq_close(v->sub);
    cairn_peers_free(v->peers);
    for (size_t i = 0; i <= CAIRN_VIEW_MAX_NODES; i++)
        s_member_clear(&v->members[i]);
    free(v->service);
    free(v);
    return NULL;
}

/* ---- applying clusterd's list ---------------------------------------------- */

static int s_state_of(const char *s)
{
    if (!s)
        return M_NONE;
    if (strcmp(s, "alive") == 0 || strcmp(s, "suspect") == 0)
        return M_ALIVE;
    if (strcmp(s, "dead") == 0)
        return M_DEAD;
    if (strcmp(s, "left") == 0)
        return M_LEFT;
    /* "unknown": a member of the description not heard from yet (at boot,
     * or down since). It counts for the quorum: otherwise every node
     * booting alone would be a quorum of one and home everything. */
    return M_UNKNOWN;
}

/* Whether the node's appliance runs the service; without a description
 * (tests) every member does. */
static bool s_runs_service(const cairn_view_t *v, const char *appliance)
{
    if (!v->svc)
        return true;
    const cairn_description_t *d = cairn_service_description(v->svc);
    const char *const *names;
    size_t n;

    if (!appliance || cairn_description_appliance_services(d, appliance,
                                                           &names, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], v->service) == 0)
            return true;
    return false;
}

static bool s_same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

void cairn_view_apply_nodes(cairn_view_t *v, const Cairn__Clusterd__NodesReply *rep)
{
    bool seen[CAIRN_VIEW_MAX_NODES + 1] = { false };
    uint64_t old = v->id;
    bool old_quorum = v->quorum, was_known = v->known;

    for (size_t i = 0; rep && i < rep->n_nodes; i++) {
        const Cairn__Clusterd__NodeInfo *ni = rep->nodes[i];
        if (!ni || ni->id == 0 || ni->id > CAIRN_VIEW_MAX_NODES)
            continue;   /* clusterd checks ids; ignore what cannot be one */
        member_t *m = &v->members[ni->id];
        seen[ni->id] = true;
        m->state = s_state_of(ni->state);
        m->runs = s_runs_service(v, ni->appliance);
        const char *addr = ni->address && *ni->address ? ni->address : NULL;
        if (!s_same_str(m->address, addr)) {
            free(m->address);
            free(m->endpoint);
            m->endpoint = NULL;
            m->address = addr ? strdup(addr) : NULL;   /* NULL on ENOMEM: no endpoint */
        }
    }
    v->n_alive = v->n_known = 0;
    for (uint32_t id = 1; id <= CAIRN_VIEW_MAX_NODES; id++) {
        member_t *m = &v->members[id];
        if (!seen[id])
            s_member_clear(m);   /* gone from clusterd's list: removed */
        if (!m->runs)
            continue;
        if (m->state == M_ALIVE)
            v->alive[v->n_alive++] = id;
        if (m->state == M_ALIVE || m->state == M_DEAD || m->state == M_UNKNOWN)
            v->n_known++;
    }
    v->known = true;
    v->quorum = v->n_alive > v->n_known / 2;
    v->id = cairn_view_id_of(v->alive, v->n_alive);
    if (v->fn && (!was_known || old != v->id || old_quorum != v->quorum))
        v->fn(v->userdata, old, v->id);
}

/* ---- queries --------------------------------------------------------------- */

bool cairn_view_known(const cairn_view_t *v) { return v->known; }
bool cairn_view_quorum(const cairn_view_t *v) { return v->known && v->quorum; }
uint64_t cairn_view_id(const cairn_view_t *v) { return v->id; }
size_t cairn_view_alive_count(const cairn_view_t *v) { return v->n_alive; }
size_t cairn_view_known_count(const cairn_view_t *v) { return v->n_known; }

bool cairn_view_alive(const cairn_view_t *v, uint32_t node)
{
    return node >= 1 && node <= CAIRN_VIEW_MAX_NODES &&
           v->members[node].state == M_ALIVE && v->members[node].runs;
}

const char *cairn_view_state(const cairn_view_t *v, uint32_t node)
{
    static const char *const names[] = {
        [M_ALIVE] = "alive", [M_DEAD] = "dead", [M_LEFT] = "left",
        [M_UNKNOWN] = "unknown",
    };

    if (node < 1 || node > CAIRN_VIEW_MAX_NODES || !v->members[node].runs ||
        v->members[node].state == M_NONE)
        return NULL;
    return names[v->members[node].state];
}

size_t cairn_view_members(const cairn_view_t *v, uint32_t out[CAIRN_VIEW_MAX_NODES])
{
    memcpy(out, v->alive, v->n_alive * sizeof(*out));
    return v->n_alive;
}

uint32_t cairn_view_home(const cairn_view_t *v, const char *name)
{
    if (!v->known || !name)
        return 0;
    return cairn_view_home_among(name, v->alive, v->n_alive);
}

const char *cairn_view_endpoint(cairn_view_t *v, uint32_t node)
{
    if (!v->svc || node < 1 || node > CAIRN_VIEW_MAX_NODES)
        return NULL;
    member_t *m = &v->members[node];
    if (m->endpoint)
        return m->endpoint;
    const cairn_description_t *d = cairn_service_description(v->svc);
    const cairn_node_desc_t *nd = cairn_description_find_node(d, node);
    const cairn_service_desc_t *sd = cairn_description_service(d, v->service);
    if (!sd)
        return NULL;
    /* the description's own formatting (IPv6 brackets) when it knows the
     * node at that address; a hotplugged node by clusterd's address */
    if (nd && (!m->address || strcmp(nd->address, m->address) == 0))
        m->endpoint = cairn_description_tcp_endpoint(d, nd, v->service, false);
    else if (m->address && asprintf(&m->endpoint, strchr(m->address, ':')
                                    ? "tcp://[%s]:%u" : "tcp://%s:%u",
                                    m->address, sd->port) < 0)
        m->endpoint = NULL;
    return m->endpoint;
}

/* ---- asking clusterd ----------------------------------------------------------- */

static void s_ask(cairn_view_t *v);

static void s_on_nodes(void *userdata, uint32_t node, int code,
                       const char *message, ProtobufCMessage *reply)
{
    cairn_view_t *v = userdata;
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)reply;

    v->asking = false;
    if (code != CAIRN_OK || !rep ||
        rep->msg_case != CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY) {
        if (!v->warned)
            cairn_log_warn(0, "membership", "clusterd not answering: %s; "
                           "asking again every %d ms",
                           code != CAIRN_OK && message ? message
                                                       : "not a nodes reply",
                           ASK_EVERY_MS);
        v->warned = true;
    } else {
        if (v->warned || !v->known)
            cairn_log_info("membership", "clusterd answered: %zu members",
                           rep->nodes_reply->n_nodes);
        v->warned = false;
        cairn_view_apply_nodes(v, rep->nodes_reply);
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (v->stale) {
        v->stale = false;
        s_ask(v);
    }
}

static void s_ask(cairn_view_t *v)
{
    if (v->asking) {
        v->stale = true;
        return;
    }
    const cairn_node_desc_t *self = cairn_service_node(v->svc);
    _cleanup_free_ char *ep = cairn_description_tcp_endpoint(
        cairn_service_description(v->svc), self, "clusterd", false);
    if (!ep) {
        if (!v->warned)
            cairn_log_warn(-ENOENT, "membership", "no clusterd declared in "
                           "the description");
        v->warned = true;
        return;
    }
    Cairn__Clusterd__NodesRequest nr = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    req.nodes = &nr;
    int r = cairn_peers_call(v->peers, self->id, ep, &req.base, ASK_TIMEOUT_MS,
                             s_on_nodes, v);
    if (r < 0)
        cairn_log_warn(r, "membership", "cannot ask clusterd at %s, "
                       "retrying", ep);
    else
        v->asking = true;
}

static int s_on_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_ask(userdata);
    return 0;
}

/* An event: drain every frame of every message, then ask once. */
static int s_on_event(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata)
{
    cairn_view_t *v = userdata;
    bool any = false;
    zmq_msg_t m;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, v->sub, ZMQ_DONTWAIT) >= 0)
        any = true;
    zmq_msg_close(&m);
    if (any)
        s_ask(v);
    return 0;
}

int cairn_view_start(cairn_view_t *v)
{
    if (!v->svc)
        return -EINVAL;
    const cairn_node_desc_t *self = cairn_service_node(v->svc);
    cairn_loop_t *loop = cairn_service_loop(v->svc);
    _cleanup_free_ char *ep = NULL;

    v->peers = cairn_peers_new(v->svc, "clusterd",
                               &cairn__clusterd__reply__descriptor);
    if (!v->peers)
        return -ENOMEM;
    if (asprintf(&ep, "ipc://%s/clusterd.pub.sock", self->rundir) < 0)
        return -ENOMEM;
    v->sub = zmq_socket(cairn_service_zmq_context(v->svc), ZMQ_SUB);
    if (!v->sub)
        return -errno;
    /* node-up, node-suspect, node-down, node-left */
    if (zmq_setsockopt(v->sub, ZMQ_SUBSCRIBE, "node-", 5) < 0 ||
        zmq_connect(v->sub, ep) < 0)
        return cairn_log_warn(-errno, "membership", "cannot subscribe to %s",
                              ep);
    int64_t w = cairn_loop_add_socket(loop, v->sub, ZMQ_POLLIN, s_on_event, v);
    if (w < 0)
        return (int)w;
    v->sub_watch = w;
    int64_t t = cairn_loop_add_timer(loop, ASK_EVERY_MS, ASK_EVERY_MS,
                                     s_on_timer, v);
    if (t < 0)
        return (int)t;
    v->timer = t;
    s_ask(v);
    return 0;
}
