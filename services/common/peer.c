/* peer.c - asynchronous requests to peers (peer.h).
 *
 * Connections: one DEALER per node, LINGER 100 ms, a small SNDHWM so a dead peer
 * cannot make us queue without bound, fast reconnect so a restarted peer is
 * reached again within ~100 ms. Messages to a peer that is not connected
 * yet wait in the pipe (ZMQ_IMMEDIATE off) -- a request to a starting node
 * is delivered instead of failing -- and their deadline bounds the wait.
 *
 * Forgetting a peer can happen inside that peer's own read callback (a
 * reply revives a member, and the member's stale connection is dropped), so
 * a forgotten socket is unwatched at once but closed later, from a 0 ms
 * loop timer, never while its reader is on the stack.
 *
 * Pending requests live in a small array (a node talks to a handful of
 * peers at a time), each with a one-shot loop timer for its deadline. A
 * reply whose id matches no pending request (it came after the deadline) is
 * dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "log.h"
#include "peer.h"
#include "util/array.h"

typedef struct s_conn {
    uint32_t node;            /* peer node id, 0 = free slot */
    char *endpoint;           /* where the DEALER is connected */
    char key[CAIRN_KEY_LEN + 1]; /* the server key pinned, "" in mode none */
    void *sock;               /* the DEALER */
    int64_t watch;            /* loop watch id */
} s_conn_t;

typedef struct s_pending {
    uint64_t id;              /* request id, 0 = free slot */
    uint32_t node;            /* who was asked */
    int64_t timer;            /* deadline timer */
    cairn_peer_fn fn;         /* called once */
    void *userdata;           /* for fn */
    cairn_peers_t *owner;     /* back pointer for the timer callback */
} s_pending_t;

struct cairn_peers {
    cairn_service_t *svc;                        /* our daemon */
    char *service;                               /* target service name */
    const ProtobufCMessageDescriptor *reply_desc; /* how replies decode */
    s_conn_t *conns;                             /* connections */
    size_t n_conns;                              /* slots in conns */
    void **graveyard;                            /* forgotten sockets to close */
    size_t n_graveyard;                          /* entries in graveyard */
    size_t cap_graveyard;                        /* allocated entries */
    int64_t reaper;                              /* timer closing them, 0 if none */
    s_pending_t **pending;                       /* pending requests */
    size_t n_pending;                            /* slots in pending */
    uint64_t sent, received;                     /* counters */
};

cairn_peers_t *cairn_peers_new(cairn_service_t *svc, const char *service,
                               const ProtobufCMessageDescriptor *reply_desc)
{
    cairn_peers_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->svc = svc;
    p->reply_desc = reply_desc;
    p->service = strdup(service);
    if (!p->service) {
        free(p);
        return NULL;
    }
    return p;
}

static void s_conn_close(cairn_peers_t *p, s_conn_t *c)
{
    if (c->watch > 0)
        cairn_loop_remove(cairn_service_loop(p->svc), c->watch);
    if (c->sock)
        zmq_close(c->sock);
    free(c->endpoint);
    memset(c, 0, sizeof(*c));
}

static void s_reap(cairn_peers_t *p)
{
    for (size_t i = 0; i < p->n_graveyard; i++)
        zmq_close(p->graveyard[i]);
    free(p->graveyard);
    p->graveyard = NULL;
    p->n_graveyard = p->cap_graveyard = 0;
}

static int s_on_reap(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    cairn_peers_t *p = userdata;
    p->reaper = 0;
    s_reap(p);
    return 0;
}

/* Unwatches c now and closes its socket from a 0 ms timer. */
static void s_conn_bury(cairn_peers_t *p, s_conn_t *c)
{
    cairn_loop_t *loop = cairn_service_loop(p->svc);
    /* Out of memory: keep the connection rather than risk a close under a
     * reader. */
    if (CAIRN_GROW(p->graveyard, p->cap_graveyard, p->n_graveyard + 1, 4) < 0)
        return;
    if (!p->reaper &&
        (p->reaper = cairn_loop_add_timer(loop, 0, 0, s_on_reap, p)) <= 0) {
        p->reaper = 0;
        return;
    }
    p->graveyard[p->n_graveyard++] = c->sock;
    cairn_loop_remove(loop, c->watch);
    free(c->endpoint);
    memset(c, 0, sizeof(*c));
}

cairn_peers_t *cairn_peers_free(cairn_peers_t *p)
{
    if (!p)
        return NULL;
    if (p->reaper)
        cairn_loop_cancel_timer(cairn_service_loop(p->svc), p->reaper);
    s_reap(p);
    for (size_t i = 0; i < p->n_conns; i++)
        if (p->conns[i].node)
            s_conn_close(p, &p->conns[i]);
    for (size_t i = 0; i < p->n_pending; i++) {
        if (!p->pending[i])
            continue;
        cairn_loop_cancel_timer(cairn_service_loop(p->svc), p->pending[i]->timer);
        free(p->pending[i]);
    }
    free(p->conns);
    free(p->pending);
    free(p->service);
    free(p);
    return NULL;
}

static s_pending_t *s_take_pending(cairn_peers_t *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_pending; i++) {
        s_pending_t *pd = p->pending[i];
        if (pd && pd->id == id) {
            p->pending[i] = NULL;
            return pd;
        }
    }
    return NULL;
}

static int s_add_pending(cairn_peers_t *p, s_pending_t *pd)
{
    for (size_t i = 0; i < p->n_pending; i++)
        if (!p->pending[i]) {
            p->pending[i] = pd;
            return 0;
        }
    size_t i = p->n_pending;
    if (CAIRN_GROW_ZERO(p->pending, p->n_pending, i + 1, 16) < 0)
        return -ENOMEM;
    p->pending[i] = pd;
    return 0;
}

/* Status of a decoded Reply: field 1 of every Reply. */
static const Cairn__Status *s_reply_status(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(m->descriptor, 1);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    const Cairn__Status *st;
    memcpy(&st, (const char *)m + f->offset, sizeof(st));
    return st;
}

static void s_finish(cairn_peers_t *p, s_pending_t *pd, ProtobufCMessage *reply)
{
    cairn_loop_cancel_timer(cairn_service_loop(p->svc), pd->timer);
    const Cairn__Status *st = s_reply_status(reply);
    if (st && st->code != CAIRN__STATUS_CODE__STATUS_OK) {
        pd->fn(pd->userdata, pd->node, (int)st->code, st->message, NULL);
        protobuf_c_message_free_unpacked(reply, NULL);
    } else {
        pd->fn(pd->userdata, pd->node, CAIRN_OK, "", reply);
    }
    free(pd);
}

static void s_on_frames(cairn_peers_t *p, const cairn_frames_t *f)
{
    Cairn__Header *h = NULL;
    if (f->n != 2 || cairn_wire_decode_header(cairn_frames_data(f, 0),
                                              cairn_frames_size(f, 0), &h, NULL) < 0)
        return;
    s_pending_t *pd = h->is_reply ? s_take_pending(p, h->request_id) : NULL;
    cairn__header__free_unpacked(h, NULL);
    if (!pd)
        return;   /* late reply: its caller already got TIMEOUT */
    p->received++;
    ProtobufCMessage *reply = NULL;
    cairn_error_t err;
    if (cairn_wire_decode_body(p->reply_desc, cairn_frames_data(f, 1),
                               cairn_frames_size(f, 1), 0, &reply, &err) < 0) {
        cairn_loop_cancel_timer(cairn_service_loop(p->svc), pd->timer);
        pd->fn(pd->userdata, pd->node, err.code, err.message, NULL);
        free(pd);
        return;
    }
    s_finish(p, pd, reply);
}

/* False once the socket's peer was forgotten (it awaits the reaper). */
static bool s_sock_owned(const cairn_peers_t *p, const void *zsock)
{
    for (size_t i = 0; i < p->n_conns; i++)
        if (p->conns[i].node && p->conns[i].sock == zsock)
            return true;
    return false;
}

static int s_on_readable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                         void *userdata)
{
    cairn_peers_t *p = userdata;
    for (int i = 0; i < 64 && s_sock_owned(p, zsock); i++) {
        cairn_frames_t f;
        if (cairn_wire_recv(zsock, &f, ZMQ_DONTWAIT) < 0)
            break;
        s_on_frames(p, &f);   /* may forget this very peer */
        cairn_frames_free(&f);
    }
    return 0;
}

static int s_on_deadline(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    s_pending_t *pd = userdata;
    cairn_peers_t *p = pd->owner;
    if (s_take_pending(p, pd->id) != pd)
        return 0;
    pd->fn(pd->userdata, pd->node, CAIRN_TIMEOUT, "no reply before the deadline", NULL);
    free(pd);
    return 0;
}

static void *s_dealer(cairn_peers_t *p, const char *endpoint, const char *key)
{
    const cairn_keypair_t *own = cairn_service_keypair(p->svc);
    void *s = zmq_socket(cairn_service_zmq_context(p->svc), ZMQ_DEALER);
    if (!s)
        return NULL;
    if (own && cairn_curve_client(s, key, own, NULL) < 0) {
        zmq_close(s);
        return NULL;
    }
    /* A short linger lets a goodbye sent just before stopping leave. */
    int linger = 100, hwm = 256, ivl = 100, ivl_max = 400;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max));
    if (zmq_connect(s, endpoint) < 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static s_conn_t *s_find_conn(cairn_peers_t *p, uint32_t node)
{
    for (size_t i = 0; i < p->n_conns; i++)
        if (p->conns[i].node == node)
            return &p->conns[i];
    return NULL;
}

static s_conn_t *s_free_conn_slot(cairn_peers_t *p)
{
    s_conn_t *c = s_find_conn(p, 0);
    if (c)
        return c;
    size_t i = p->n_conns;
    if (CAIRN_GROW_ZERO(p->conns, p->n_conns, i + 1, 16) < 0)
        return NULL;
    return &p->conns[i];
}

/* The public key node's server has in mode curve ("" in mode none);
 * false when mode curve gives node no key. */
static bool s_server_key(cairn_peers_t *p, uint32_t node,
                         char key[CAIRN_KEY_LEN + 1])
{
    const cairn_key_desc_t *k;

    key[0] = '\0';
    if (!cairn_service_keypair(p->svc))
        return true;
    k = cairn_description_find_key(cairn_service_description(p->svc), node);
    if (!k)
        return false;
    snprintf(key, CAIRN_KEY_LEN + 1, "%s", k->public_key);
    return true;
}

/* The connection to node at endpoint, made or replaced as needed (a new
 * endpoint, or a new key after a reload). *ret_err: why not. */
static s_conn_t *s_conn(cairn_peers_t *p, uint32_t node, const char *endpoint,
                        int *ret_err)
{
    char key[CAIRN_KEY_LEN + 1];
    s_conn_t *c = s_find_conn(p, node);

    *ret_err = -ENOMEM;
    if (!s_server_key(p, node, key)) {
        *ret_err = -ENOKEY;
        return NULL;
    }
    if (c && strcmp(c->endpoint, endpoint) == 0 && strcmp(c->key, key) == 0)
        return c;
    if (c)
        s_conn_bury(p, c);
    c = s_free_conn_slot(p);
    if (!c)
        return NULL;
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->endpoint = strdup(endpoint);
    c->sock = c->endpoint ? s_dealer(p, endpoint, key) : NULL;
    if (c->sock)
        c->watch = cairn_loop_add_socket(cairn_service_loop(p->svc), c->sock,
                                         ZMQ_POLLIN, s_on_readable, p);
    if (!c->sock || c->watch <= 0) {
        s_conn_close(p, c);
        return NULL;
    }
    c->node = node;
    return c;
}

static int s_send(cairn_peers_t *p, s_conn_t *c, uint64_t id,
                  const ProtobufCMessage *req, uint32_t timeout_ms,
                  const cairn_caller_t *as)
{
    Cairn__Header h = CAIRN__HEADER__INIT;
    Cairn__User user = CAIRN__USER__INIT;
    if (as && as->has_user) {
        user.uid = as->uid;
        user.gid = as->gid;
        h.user = &user;
    }
    h.version = CAIRN_WIRE_VERSION;
    h.request_id = id;
    h.source_node = cairn_service_node(p->svc)->id;
    h.service = p->service;
    h.type = cairn_wire_oneof_case(req);
    h.deadline_ms = timeout_ms;
    return cairn_wire_send(c->sock, &h, req, ZMQ_DONTWAIT);
}

int cairn_peers_call(cairn_peers_t *p, uint32_t node, const char *endpoint,
                     const ProtobufCMessage *req, uint32_t timeout_ms,
                     cairn_peer_fn fn, void *userdata)
{
    return cairn_peers_call_as(p, node, endpoint, req, timeout_ms, NULL, fn,
                               userdata);
}

int cairn_peers_call_as(cairn_peers_t *p, uint32_t node, const char *endpoint,
                        const ProtobufCMessage *req, uint32_t timeout_ms,
                        const cairn_caller_t *as, cairn_peer_fn fn,
                        void *userdata)
{
    int r;
    if (cairn_wire_oneof_case(req) == 0 || node == 0)
        return -EINVAL;
    s_conn_t *c = s_conn(p, node, endpoint, &r);
    if (!c)
        return r;
    s_pending_t *pd = calloc(1, sizeof(*pd));
    if (!pd)
        return -ENOMEM;
    *pd = (s_pending_t){ .id = cairn_wire_new_request_id(), .node = node,
                         .fn = fn, .userdata = userdata, .owner = p };
    r = s_send(p, c, pd->id, req, timeout_ms, as);
    if (r == 0)
        r = s_add_pending(p, pd);
    if (r == 0) {
        pd->timer = cairn_loop_add_timer(cairn_service_loop(p->svc), timeout_ms, 0,
                                         s_on_deadline, pd);
        if (pd->timer <= 0) {
            s_take_pending(p, pd->id);
            r = pd->timer < 0 ? (int)pd->timer : -ENOMEM;
        }
    }
    if (r < 0) {
        free(pd);
        return r;
    }
    p->sent++;
    return 0;
}

void cairn_peers_forget(cairn_peers_t *p, uint32_t node)
{
    s_conn_t *c = node ? s_find_conn(p, node) : NULL;
    if (c)
        s_conn_bury(p, c);
}

uint64_t cairn_peers_sent(const cairn_peers_t *p)
{
    return p->sent;
}

uint64_t cairn_peers_received(const cairn_peers_t *p)
{
    return p->received;
}
