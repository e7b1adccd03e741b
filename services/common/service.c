/* service.c - the daemon skeleton every Cairn service runs on (service.h).
 *
 * Design. cairn_service_main() is a straight line: options -> description
 * -> node -> signals blocked + signalfd (before zmq_ctx_new, so libzmq's I/O
 * threads inherit the mask and never take SIGTERM) -> zmq context + loop ->
 * run dir made -> ops->start -> bind -> READY -> ops->ready -> loop ->
 * STOPPING -> close.
 *
 * A request travels: ROUTER readable -> cairn_wire_recv -> [id][Header][Body]
 * shape check -> header decode (version, size) -> service name, is_reply ->
 * handler table -> reply cache -> body decode with the header's type ->
 * handler -> packed reply sent and kept in the cache. Every failure on the
 * way is answered with an ErrorReply (wire-compatible with any Reply) and one
 * rate-limited log line. Replies are sent with ZMQ_DONTWAIT: a peer that
 * left (ROUTER_MANDATORY -> EHOSTUNREACH) or does not read costs a debug
 * line, never a blocked loop.
 *
 * The reply cache is a ring of CACHE_SIZE slots keyed by (request id, type);
 * id 0 is never cached. A slot holds the packed header and body, so a retry
 * is answered byte for byte without running the handler again. A request
 * whose handler deferred its reply keeps its slot `pending`: a retry then
 * only moves the routing id to the new connection (the lazy-pirate client
 * reopened its socket), and the deferred answer fills the slot when sent.
 *
 * Oversized frames: libzmq's ZMQ_MAXMSGSIZE drops the connection instead of
 * delivering, which a client cannot tell from a crash, so the hard cap is
 * set well above CAIRN_WIRE_MAX_FRAME (HARD_CAP) and frames between the two
 * are received and answered TOO_LARGE by the wire decoder.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn-config.h"
#include "cairn/wire.h"
#include "log.h"
#include "service.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/options.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define CACHE_SIZE 256
#define REFUSED_LOGGED 64        /* refused (address, key) pairs remembered */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_LOCAL_DOMAIN "cairn-local"   /* ipc: the peer's SO_PEERCRED */
#define ZAP_TCP_DOMAIN "cairn-tcp"       /* tcp in mode none: nobody */
#define MONITOR_ENDPOINT "inproc://cairn.handshakes"
#define HANDSHAKE_LOG_EVERY_S 10
#define HARD_CAP (64 * 1024 * 1024)
#define BAD_FRAME_LOGS_PER_SEC 20
#define RECV_BATCH 64
#define EXIT_USAGE 100

/* One packed reply: the Header frame and the Body frame. */
typedef struct s_packed {
    uint8_t *hdr;        /* packed Header */
    size_t hdr_len;      /* its size */
    uint8_t *body;       /* packed Reply or ErrorReply */
    size_t body_len;     /* its size */
} s_packed_t;

/* A reply cache slot. */
typedef struct s_slot {
    uint64_t request_id;          /* 0 = empty */
    uint32_t type;                /* Header.type of the request */
    char who[72];                 /* s_caller_key of the asker: a retry
                                   * from anyone else runs afresh */
    s_packed_t reply;             /* empty while pending */
    cairn_deferred_t *pending;    /* deferred request not yet answered */
} s_slot_t;

struct cairn_deferred {
    uint8_t *rid;                 /* routing id of the (latest) asker */
    size_t rid_len;               /* its size */
    Cairn__Header *hdr;           /* the request header (owned) */
    long slot;                    /* cache slot, -1 if none/evicted */
};

/* Memory handed out by cairn_request_alloc. */
typedef struct s_chunk {
    struct s_chunk *next;         /* older chunk */
    max_align_t data[];           /* zeroed user memory */
} s_chunk_t;

struct cairn_request {
    cairn_service_t *svc;         /* owner */
    const uint8_t *rid;           /* routing id (in the received frame) */
    size_t rid_len;               /* its size */
    Cairn__Header *hdr;           /* decoded header (owned unless deferred) */
    ProtobufCMessage *body;       /* decoded Request (owned) */
    ProtobufCMessage *reply;      /* the service Reply being filled (owned) */
    s_chunk_t *chunks;            /* arena for the reply's members */
    int fail_code;                /* != 0 after cairn_request_fail */
    char *fail_msg;               /* its message (owned) */
    cairn_deferred_t *deferred;   /* set by cairn_request_defer */
    long slot;                    /* its reply cache slot, -1 if none */
    cairn_caller_t caller;        /* who sent it */
};

struct cairn_service {
    const cairn_service_ops_t *ops;   /* the service's table */
    void *ctx;                        /* the service's own context */
    const char *config_path;          /* --config, $CAIRN_CONFIG or default */
    const char *node_arg;             /* --node, NULL for hostname */
    uint32_t hot_id;                  /* --node-id: a node not in the description, 0 if none */
    const char *hot_address;          /* --address of that node */
    const char *hot_name;             /* --name of that node, NULL for n<id> */
    const char *hot_appliance;        /* --appliance of that node, NULL for the default */
    cairn_description_t *desc;        /* current description (owned) */
    const cairn_node_desc_t *node;    /* this node, inside desc */
    const cairn_service_desc_t *sdesc;/* this service, inside desc */
    size_t status_offset;             /* offset of Reply.status */
    void *zctx;                       /* zmq context (owned) */
    void *router;                     /* request socket */
    void *pub;                        /* event socket, NULL if no pub port */
    void *zap;                        /* ZAP handler (REP on ZAP_ENDPOINT) */
    bool curve;                       /* security mode curve, fixed at start */
    cairn_keypair_t keys;             /* this node's keypair when curve */
    char refused[REFUSED_LOGGED][96]; /* refused peers already logged */
    size_t refused_next;              /* next entry of refused to reuse */
    void *monitor;                    /* handshake failures on the router */
    uint64_t hs_window;               /* second the last summary was logged */
    unsigned hs_failed;               /* failures not logged since */
    char *ipc_path;                   /* <rundir>/<name>.sock once bound */
    char *pub_ipc_path;               /* <rundir>/<name>.pub.sock once bound */
    cairn_loop_t *loop;               /* the loop (owned) */
    int sfd;                          /* signalfd, -1 before */
    uint64_t started_ms;              /* cairn_now_ms() at start */
    s_slot_t cache[CACHE_SIZE];       /* reply cache ring */
    size_t cache_next;                /* next slot to take */
    uint64_t bad_window;              /* second of the rate-limit window */
    unsigned bad_in_window;           /* bad-frame lines logged in it */
    unsigned bad_suppressed;          /* lines not logged in it */
};

/* ---- small helpers ----------------------------------------------------- */

static void s_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_notify(const char *fmt, ...)
{
#if CAIRN_HAVE_SYSTEMD
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sd_notify(0, buf);
#else
    (void)fmt;
#endif
}

static void s_packed_clear(s_packed_t *p)
{
    free(p->hdr);
    free(p->body);
    *p = (s_packed_t){ 0 };
}

static cairn_deferred_t *s_deferred_free(cairn_deferred_t *d)
{
    if (!d)
        return NULL;
    free(d->rid);
    cairn__header__free_unpacked(d->hdr, NULL);
    free(d);
    return NULL;
}

static void s_request_clear(cairn_request_t *req)
{
    while (req->chunks) {
        s_chunk_t *c = req->chunks;
        req->chunks = c->next;
        free(c);
    }
    if (req->hdr)
        cairn__header__free_unpacked(req->hdr, NULL);
    if (req->body)
        protobuf_c_message_free_unpacked(req->body, NULL);
    free(req->reply);
    free(req->fail_msg);
}

/* Logs a bad frame, at most BAD_FRAME_LOGS_PER_SEC lines a second. */
static void s_log_bad(cairn_service_t *svc, int code, const char *msg)
{
    uint64_t sec = cairn_now_ms() / 1000;

    if (sec != svc->bad_window) {
        if (svc->bad_suppressed)
            cairn_log_warn(0, "bad-frame-suppressed", "count=%u",
                           svc->bad_suppressed);
        svc->bad_window = sec;
        svc->bad_in_window = 0;
        svc->bad_suppressed = 0;
    }
    if (svc->bad_in_window++ < BAD_FRAME_LOGS_PER_SEC)
        cairn_log_warn(0, code == CAIRN_PERMISSION_DENIED ? "denied" : "bad-frame",
                       "code=%s msg=\"%s\"", cairn_code_name(code), msg);
    else
        svc->bad_suppressed++;
}

/* ---- packing and sending replies --------------------------------------- */

static int s_pack(const cairn_service_t *svc, const Cairn__Header *req,
                  const ProtobufCMessage *body, s_packed_t *ret)
{
    s_packed_t p = { 0 };
    Cairn__Header hdr;
    int r;

    cairn_wire_reply_header(req, svc->node ? svc->node->id : 0, &hdr);
    if (!req)
        hdr.service = (char *)svc->ops->name;
    r = cairn_wire_pack(&hdr.base, &p.hdr, &p.hdr_len);
    if (r >= 0)
        r = cairn_wire_pack(body, &p.body, &p.body_len);
    if (r < 0) {
        s_packed_clear(&p);
        return r;
    }
    *ret = p;
    return 0;
}

static int s_pack_error(const cairn_service_t *svc, const Cairn__Header *req,
                        int code, const char *msg, s_packed_t *ret)
{
    Cairn__Status st = CAIRN__STATUS__INIT;
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;

    st.code = (Cairn__StatusCode)code;
    st.message = (char *)(msg ? msg : "");
    er.status = &st;
    return s_pack(svc, req, &er.base, ret);
}

/* Sends [rid][hdr][body] without blocking. */
static int s_deliver(cairn_service_t *svc, const void *rid, size_t rid_len,
                     const s_packed_t *p)
{
    const int f = ZMQ_DONTWAIT;

    int r;

    if (zmq_send(svc->router, rid, rid_len, f | ZMQ_SNDMORE) >= 0 &&
        zmq_send(svc->router, p->hdr, p->hdr_len, f | ZMQ_SNDMORE) >= 0 &&
        zmq_send(svc->router, p->body, p->body_len, f) >= 0)
        return 0;
    r = -errno;
    cairn_log_debug("reply-dropped", "reason=\"%s\"", zmq_strerror(-r));
    return r;
}

/* Answers a request that cannot be accepted; nothing is cached. */
static void s_reject(cairn_service_t *svc, const void *rid, size_t rid_len,
                     const Cairn__Header *req, int code, const char *msg)
{
    s_packed_t p;

    s_log_bad(svc, code, msg);
    if (s_pack_error(svc, req, code, msg, &p) < 0)
        return;
    s_deliver(svc, rid, rid_len, &p);
    s_packed_clear(&p);
}

/* ---- reply cache ------------------------------------------------------- */

static s_slot_t *s_cache_find(cairn_service_t *svc, uint64_t id, uint32_t type,
                               const char *who)
{
    if (id == 0)
        return NULL;
    for (size_t i = 0; i < CACHE_SIZE; i++)
        if (svc->cache[i].request_id == id && svc->cache[i].type == type &&
            strcmp(svc->cache[i].who, who) == 0)
            return &svc->cache[i];
    return NULL;
}

/* Takes the oldest slot for a new request id; -1 for id 0. */
static long s_cache_claim(cairn_service_t *svc, uint64_t id, uint32_t type,
                          const char *who)
{
    size_t i = svc->cache_next;
    s_slot_t *s = &svc->cache[i];

    if (id == 0)
        return -1;
    svc->cache_next = (i + 1) % CACHE_SIZE;
    s_packed_clear(&s->reply);
    if (s->pending)
        s->pending->slot = -1;
    *s = (s_slot_t){ .request_id = id, .type = type };
    snprintf(s->who, sizeof(s->who), "%s", who);
    return (long)i;
}

/* Stores p (ownership taken) in slot i; frees it if there is no slot.
 * With p NULL (no reply could be made) the slot is emptied. */
static void s_cache_fill(cairn_service_t *svc, long i, s_packed_t *p)
{
    if (i < 0) {
        if (p)
            s_packed_clear(p);
        return;
    }
    if (!p) {
        svc->cache[i] = (s_slot_t){ 0 };
        return;
    }
    svc->cache[i].pending = NULL;
    svc->cache[i].reply = *p;
    *p = (s_packed_t){ 0 };
}

static void s_cache_clear(cairn_service_t *svc)
{
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        s_packed_clear(&svc->cache[i].reply);
        if (svc->cache[i].pending)
            svc->cache[i].pending->slot = -1;
        svc->cache[i] = (s_slot_t){ 0 };
    }
}

/* Answers a retried id from its slot. */
static void s_cache_answer(cairn_service_t *svc, s_slot_t *s, const void *rid,
                           size_t rid_len)
{
    cairn_log_debug("retry", "request-id=%llu pending=%d",
                    (unsigned long long)s->request_id, s->pending != NULL);
    if (!s->pending) {
        s_deliver(svc, rid, rid_len, &s->reply);
        return;
    }
    uint8_t *copy = malloc(rid_len ? rid_len : 1);
    if (!copy)
        return;
    memcpy(copy, rid, rid_len);
    free(s->pending->rid);
    s->pending->rid = copy;
    s->pending->rid_len = rid_len;
}

/* ---- callers ----------------------------------------------------------- */

bool cairn_caller_may_act_on(const cairn_caller_t *c, uint32_t owner_uid)
{
    return c && c->has_user && (c->uid == 0 || c->uid == owner_uid);
}

const char *cairn_caller_describe(const cairn_caller_t *c, char *buf,
                                  size_t size)
{
    if (!c)
        snprintf(buf, size, "nobody");
    else if (c->kind == CAIRN_CALLER_LOCAL)
        snprintf(buf, size, "uid %u (pid %d) on this node", c->uid, (int)c->pid);
    else if (c->kind == CAIRN_CALLER_NODE)
        snprintf(buf, size, "uid %u on node %u", c->uid, c->node);
    else
        snprintf(buf, size, "an unauthenticated tcp peer at %s", c->address);
    return buf;
}

/* What tells two callers apart in the reply cache. */
static const char *s_caller_key(const cairn_caller_t *c, char *buf, size_t size)
{
    if (c->kind == CAIRN_CALLER_LOCAL)
        snprintf(buf, size, "L%u", c->uid);
    else if (c->kind == CAIRN_CALLER_NODE)
        snprintf(buf, size, "N%u:%u", c->node, c->uid);
    else
        snprintf(buf, size, "X%s", c->address);
    return buf;
}

/* The last three ':'-separated numbers of s (libzmq's ipc peer address
 * "<host>:<uid>:<gid>:<pid>", SO_PEERCRED) into v[0..3). */
static bool s_parse_creds(const char *s, long long v[3])
{
    const char *end = s + strlen(s);

    for (int k = 2; k >= 0; k--) {
        const char *p = end;
        while (p > s && p[-1] != ':')
            p--;
        char *stop = NULL;
        if (p == end || (k > 0 && p == s))
            return false;
        errno = 0;
        v[k] = strtoll(p, &stop, 10);
        if (errno || stop != end || v[k] < 0 || v[k] > UINT32_MAX)
            return false;
        end = p - 1;
    }
    return true;
}

/* Who sent frames f (header h): the ZAP handler's verdict on the
 * connection ("User-Id"), else an unauthenticated tcp peer. */
static void s_caller_of(const cairn_service_t *svc, const cairn_frames_t *f,
                        const Cairn__Header *h, cairn_caller_t *c)
{
    const char *user = cairn_frames_property(f, 1, "User-Id");
    const char *addr = cairn_frames_property(f, 1, "Peer-Address");
    long long v[3];
    unsigned node = 0;

    *c = (cairn_caller_t){ .kind = CAIRN_CALLER_NETWORK };
    snprintf(c->address, sizeof(c->address), "%s", addr ? addr : "?");
    if (user && strncmp(user, "local:", 6) == 0 && s_parse_creds(user, v)) {
        *c = (cairn_caller_t){ .kind = CAIRN_CALLER_LOCAL, .node = svc->node->id,
                               .has_user = true, .uid = (uint32_t)v[0],
                               .gid = (uint32_t)v[1], .pid = (int32_t)v[2] };
        snprintf(c->address, sizeof(c->address), "ipc");
    } else if (user && sscanf(user, "node:%u:", &node) == 1 && node &&
               strchr(user + 5, ':') &&
               cairn_description_key_owner(svc->desc, strchr(user + 5, ':') + 1) == node) {
        c->kind = CAIRN_CALLER_NODE;
        c->node = node;
        c->has_user = true;
        /* A node vouching for nobody is its own daemon: root there. */
        c->uid = h && h->user ? h->user->uid : 0;
        c->gid = h && h->user ? h->user->gid : 0;
    }
}

/* 0 when c may send a request of handler h, else PERMISSION_DENIED with
 * the reason in msg. */
static int s_check_access(const cairn_service_t *svc, const cairn_handler_t *h,
                          const cairn_caller_t *c, char *msg, size_t len)
{
    char who[128];

    if (c->kind == CAIRN_CALLER_NETWORK && svc->curve) {
        /* Only a connection whose key a reload removed gets here. */
        snprintf(msg, len, "%s %s refused: the key of this connection from "
                 "%s is no longer a member's", svc->ops->name, h->name, c->address);
        return CAIRN_PERMISSION_DENIED;
    }
    if (h->access == CAIRN_ACCESS_ANYONE)
        return 0;
    if (c->kind == CAIRN_CALLER_NETWORK) {
        if (h->access == CAIRN_ACCESS_ADMIN)
            return 0;   /* mode none: the network is trusted for admin */
        snprintf(msg, len,
                 "%s %s from %s refused: %s", svc->ops->name, h->name,
                 cairn_caller_describe(c, who, sizeof(who)),
                 svc->curve ? "only member nodes' CURVE keys are admitted"
                            : "the cluster runs security mode none, where "
                              "nobody vouches for a tcp peer's user; remote "
                              "requests like this one need <security "
                              "mode=\"curve\">");
        return CAIRN_PERMISSION_DENIED;
    }
    /* The daemons' own user is their admin too: a cluster run without
     * root (loopback) is that user's. */
    if (h->access == CAIRN_ACCESS_USER || c->uid == 0 || c->uid == (uint32_t)geteuid())
        return 0;
    snprintf(msg, len, "%s %s is for root: asked by %s", svc->ops->name,
             h->name, cairn_caller_describe(c, who, sizeof(who)));
    return CAIRN_PERMISSION_DENIED;
}

/* ---- ZAP: who may connect ---------------------------------------------- */

/* Logs a refused peer once per (address, key) while it is remembered. */
static void s_log_refused(cairn_service_t *svc, const char *address,
                          const char *key, const char *why)
{
    char entry[sizeof(svc->refused[0])];

    snprintf(entry, sizeof(entry), "%s %s", address, key);
    for (size_t i = 0; i < REFUSED_LOGGED; i++)
        if (strcmp(svc->refused[i], entry) == 0)
            return;
    snprintf(svc->refused[svc->refused_next], sizeof(entry), "%s", entry);
    svc->refused_next = (svc->refused_next + 1) % REFUSED_LOGGED;
    cairn_log_warn(0, "peer-refused", "address=%s key=%s msg=\"%s\"", address,
                   key, why);
}

/* The verdict on one ZAP request: 200 with a user id, or 400. */
static const char *s_zap_verdict(cairn_service_t *svc, const cairn_frames_t *f,
                                 char *user, size_t len)
{
    char z[16][64] = { { 0 } };
    size_t n = f->n < 16 ? f->n : 16;
    char key[CAIRN_KEY_LEN + 1] = "", fp[CAIRN_KEY_FINGERPRINT_LEN + 1] = "-";
    long long v[3];

    /* version, request id, domain, address, identity, mechanism, creds */
    for (size_t i = 0; i < n && i < 6; i++)
        snprintf(z[i], sizeof(z[i]), "%.*s", (int)cairn_frames_size(f, i),
                 (const char *)cairn_frames_data(f, i));
    if (strcmp(z[2], ZAP_LOCAL_DOMAIN) == 0 && strcmp(z[5], "NULL") == 0) {
        if (!s_parse_creds(z[3], v)) {
            s_log_refused(svc, z[3], "-", "ipc peer without SO_PEERCRED");
            return "400";
        }
        snprintf(user, len, "local:%lld:%lld:%lld", v[0], v[1], v[2]);
        return "200";
    }
    if (!svc->curve && strcmp(z[2], ZAP_TCP_DOMAIN) == 0 &&
        strcmp(z[5], "NULL") == 0)
        return "200";   /* no user id: an unauthenticated tcp peer */
    if (n == 7 && cairn_frames_size(f, 6) == 32 &&
        !zmq_z85_encode(key, (const uint8_t *)cairn_frames_data(f, 6), 32))
        key[0] = '\0';
    cairn_key_fingerprint(key, fp);
    uint32_t owner = cairn_description_key_owner(svc->desc, key);
    if (svc->curve && strcmp(z[2], CAIRN_ZAP_DOMAIN) == 0 &&
        strcmp(z[5], "CURVE") == 0 && owner) {
        /* the key too: a reload that drops it revokes open connections */
        snprintf(user, len, "node:%u:%s", owner, key);
        return "200";
    }
    s_log_refused(svc, z[3], fp,
                  key[0] ? "a CURVE key that is no node's in the description"
                         : "not a CURVE handshake");
    return "400";
}

static int s_on_zap(cairn_loop_t *loop, int fd, void *zsock, short revents,
                    void *userdata)
{
    cairn_service_t *svc = userdata;

    for (int i = 0; i < RECV_BATCH; i++) {
        cairn_frames_t f;
        char user[64] = "";

        if (cairn_wire_recv(zsock, &f, ZMQ_DONTWAIT) < 0)
            return 0;
        const char *code = f.n >= 6 && !f.truncated
                               ? s_zap_verdict(svc, &f, user, sizeof(user))
                               : "500";
        /* A REP socket must answer before it reads again. */
        zmq_send(zsock, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(zsock, f.n > 1 ? cairn_frames_data(&f, 1) : "",
                 f.n > 1 ? cairn_frames_size(&f, 1) : 0, ZMQ_SNDMORE);
        zmq_send(zsock, code, 3, ZMQ_SNDMORE);
        zmq_send(zsock, code[0] == '2' ? "OK" : "refused",
                 code[0] == '2' ? 2 : 7, ZMQ_SNDMORE);
        zmq_send(zsock, user, strlen(user), ZMQ_SNDMORE);
        zmq_send(zsock, "", 0, 0);
        cairn_frames_free(&f);
    }
    return 0;
}

/* Handshakes that fail before ZAP (no CURVE at all, garbage, a greeting
 * cut short) carry no peer address in libzmq 4.3's monitor events, so
 * they are counted and logged at most every HANDSHAKE_LOG_EVERY_S. */
static int s_on_monitor(cairn_loop_t *loop, int fd, void *zsock, short revents,
                        void *userdata)
{
    cairn_service_t *svc = userdata;

    for (int i = 0; i < RECV_BATCH; i++) {
        cairn_frames_t f;
        uint16_t event = 0;
        uint32_t value = 0;

        if (cairn_wire_recv(zsock, &f, ZMQ_DONTWAIT) < 0)
            break;
        if (f.n == 2 && cairn_frames_size(&f, 0) == 6) {
            memcpy(&event, cairn_frames_data(&f, 0), 2);
            memcpy(&value, (const uint8_t *)cairn_frames_data(&f, 0) + 2, 4);
        }
        /* Which side of a mismatch notices first is a race, so a peer
         * without CURVE shows as PROTOCOL or as NO_DETAIL (so does a
         * connect-only liveness probe: the line says so). ipc peers are
         * the kernel's business, not counted. */
        if ((event & (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                      ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)) && f.n == 2 &&
            cairn_frames_size(&f, 1) > 6 &&
            memcmp(cairn_frames_data(&f, 1), "tcp://", 6) == 0)
            svc->hs_failed++;
        uint64_t sec = cairn_now_ms() / 1000;
        if (svc->hs_failed && sec >= svc->hs_window + HANDSHAKE_LOG_EVERY_S) {
            cairn_log_warn(0, "handshake-failed",
                           "endpoint=%.*s count=%u reason=0x%x msg=\"tcp "
                           "connections that ended before a %s handshake: "
                           "peers without it, garbage, or connect-only "
                           "probes; no key was seen\"", (int)cairn_frames_size(&f, 1),
                           (const char *)cairn_frames_data(&f, 1), svc->hs_failed,
                           value, svc->curve ? "CURVE" : "ZMTP");
            svc->hs_window = sec;
            svc->hs_failed = 0;
        }
        cairn_frames_free(&f);
    }
    return 0;
}

/* Watches the router's handshakes (s_on_monitor). */
static int s_watch_handshakes(cairn_service_t *svc)
{
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;

    if (zmq_socket_monitor(svc->router, MONITOR_ENDPOINT, events) < 0 ||
        !(svc->monitor = zmq_socket(svc->zctx, ZMQ_PAIR)) ||
        zmq_connect(svc->monitor, MONITOR_ENDPOINT) < 0)
        return cairn_log_err(-errno, "monitor", "msg=\"%s\"", zmq_strerror(errno));
    int64_t w = cairn_loop_add_socket(svc->loop, svc->monitor, ZMQ_POLLIN,
                                      s_on_monitor, svc);
    return w < 0 ? cairn_log_err((int)w, "monitor", "msg=\"cannot watch\"") : 0;
}

/* ---- dispatch ---------------------------------------------------------- */

static const cairn_handler_t *s_find_handler(const cairn_service_t *svc,
                                             uint32_t type)
{
    for (size_t i = 0; i < svc->ops->n_handlers; i++)
        if (svc->ops->handlers[i].type == type)
            return &svc->ops->handlers[i];
    return NULL;
}

static Cairn__Status **s_status_member(const cairn_service_t *svc,
                                       ProtobufCMessage *reply)
{
    return (Cairn__Status **)((char *)reply + svc->status_offset);
}

static ProtobufCMessage *s_new_reply(const cairn_service_t *svc)
{
    const ProtobufCMessageDescriptor *d = svc->ops->reply_desc;
    ProtobufCMessage *m = calloc(1, d->sizeof_message);

    if (m)
        protobuf_c_message_init(d, m);
    return m;
}

/* Packs the handler's outcome: the Reply with status OK, or an ErrorReply. */
static int s_pack_outcome(cairn_service_t *svc, cairn_request_t *req, int hr,
                          s_packed_t *ret)
{
    Cairn__Status ok = CAIRN__STATUS__INIT;
    int r;

    if (hr < 0) {
        cairn_log_err(hr, "handler-failed", "type=%u", req->hdr->type);
        return s_pack_error(svc, req->hdr, CAIRN_INTERNAL, "internal error", ret);
    }
    if (req->fail_code)
        return s_pack_error(svc, req->hdr, req->fail_code, req->fail_msg, ret);
    *s_status_member(svc, req->reply) = &ok;
    r = s_pack(svc, req->hdr, req->reply, ret);
    *s_status_member(svc, req->reply) = NULL;
    if (r == -EMSGSIZE)
        return s_pack_error(svc, req->hdr, CAIRN_TOO_LARGE,
                            "reply over the frame size limit", ret);
    return r;
}

/* A request whose sender reads no reply (Header.no_reply) and that failed:
 * said in the log, since nobody else hears it. */
static void s_log_unanswered(const char *what, int hr, int code,
                             const char *msg)
{
    if (hr < 0)
        cairn_log_warn(hr, "unanswered", "type=%s code=internal", what);
    else if (code)
        cairn_log_warn(0, "unanswered", "type=%s code=%s msg=\"%s\"", what,
                       cairn_code_name(code), msg ? msg : "");
}

/* Runs the handler of a validated request and answers or parks it. */
static void s_run_handler(cairn_service_t *svc, cairn_request_t *req,
                          const cairn_handler_t *h)
{
    char who[72];
    /* nobody retries a request that reads no reply: no cache slot (it
     * would push out a reply someone may ask for again) */
    long slot = req->hdr->no_reply
                    ? -1
                    : s_cache_claim(svc, req->hdr->request_id, req->hdr->type,
                                    s_caller_key(&req->caller, who, sizeof(who)));
    s_packed_t p = { 0 };
    int hr;

    cairn_log_debug("request", "type=%s request-id=%llu", h->name,
                    (unsigned long long)req->hdr->request_id);
    req->slot = slot;
    hr = h->fn(svc->ctx, req);
    /* Deferred: the deferred holds the slot, and may even be answered
     * and freed already; req->deferred is not looked at again. */
    if (hr == CAIRN_REPLY_DEFERRED && req->deferred)
        return;
    if (hr == CAIRN_REPLY_DEFERRED)
        hr = cairn_log_err(-EINVAL, "handler-bug",
                           "type=%s msg=\"deferred without cairn_request_defer\"",
                           h->name);
    if (req->hdr->no_reply) {
        s_log_unanswered(h->name, hr, req->fail_code, req->fail_msg);
        s_cache_fill(svc, slot, NULL);
        return;
    }
    if (s_pack_outcome(svc, req, hr, &p) < 0) {
        s_cache_fill(svc, slot, NULL);
        return;
    }
    s_deliver(svc, req->rid, req->rid_len, &p);
    s_cache_fill(svc, slot, &p);
}

/* Validates the header against this service; 0 or a status code. */
static int s_check_header(const cairn_service_t *svc, const Cairn__Header *h,
                          char *msg, size_t len)
{
    if (h->is_reply)
        return snprintf(msg, len, "a reply sent to %s as a request",
                        svc->ops->name), CAIRN_INVALID_ARGUMENT;
    if (!h->service || strcmp(h->service, svc->ops->name) != 0)
        return snprintf(msg, len, "request for service '%s' reached %s",
                        h->service ? h->service : "", svc->ops->name),
               CAIRN_INVALID_ARGUMENT;
    if (!s_find_handler(svc, h->type))
        return snprintf(msg, len, "message type %u is not a %s request",
                        h->type, svc->ops->name), CAIRN_UNKNOWN_TYPE;
    return 0;
}

/* Handles one received message; frame 0 is the routing id. */
static void s_handle(cairn_service_t *svc, const cairn_frames_t *f)
{
    cairn_request_t req = { .svc = svc, .slot = -1, .rid = cairn_frames_data(f, 0),
                            .rid_len = cairn_frames_size(f, 0) };
    cairn_error_t err;
    char msg[256];
    int code;

    if (f->n >= 2 && cairn_wire_decode_header(cairn_frames_data(f, 1),
                                              cairn_frames_size(f, 1),
                                              &req.hdr, &err) < 0) {
        s_reject(svc, req.rid, req.rid_len, NULL, err.code, err.message);
        return;
    }
    if (f->n != 3 || f->truncated) {
        snprintf(msg, sizeof(msg), "expected 2 frames [header][body], got %s%zu",
                 f->truncated ? "over " : "", f->n - 1);
        s_reject(svc, req.rid, req.rid_len, req.hdr, CAIRN_DECODE_ERROR, msg);
        goto out;
    }
    if ((code = s_check_header(svc, req.hdr, msg, sizeof(msg))) != 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, code, msg);
        goto out;
    }
    s_caller_of(svc, f, req.hdr, &req.caller);
    const cairn_handler_t *h = s_find_handler(svc, req.hdr->type);
    if ((code = s_check_access(svc, h, &req.caller, msg, sizeof(msg))) != 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, code, msg);
        goto out;
    }
    char who[72];
    s_slot_t *cached = s_cache_find(svc, req.hdr->request_id, req.hdr->type,
                                    s_caller_key(&req.caller, who, sizeof(who)));
    if (cached) {
        s_cache_answer(svc, cached, req.rid, req.rid_len);
        goto out;
    }
    if (cairn_wire_decode_body(svc->ops->request_desc, cairn_frames_data(f, 2),
                               cairn_frames_size(f, 2), req.hdr->type,
                               &req.body, &err) < 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, err.code, err.message);
        goto out;
    }
    req.reply = s_new_reply(svc);
    if (!req.reply) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, CAIRN_INTERNAL, "out of memory");
        goto out;
    }
    s_run_handler(svc, &req, h);
out:
    s_request_clear(&req);
}

static int s_on_router(cairn_loop_t *loop, int fd, void *zsock, short revents,
                       void *userdata)
{
    cairn_service_t *svc = userdata;

    for (int i = 0; i < RECV_BATCH; i++) {
        cairn_frames_t f;
        int r = cairn_wire_recv(zsock, &f, ZMQ_DONTWAIT);

        if (r == -EAGAIN || r == -EINTR)
            return 0;
        if (r < 0)
            return cairn_log_err(r, "recv", "socket=router");
        if (f.n > 0)
            s_handle(svc, &f);
        cairn_frames_free(&f);
    }
    return 0;
}

/* ---- inside a handler -------------------------------------------------- */

const Cairn__Header *cairn_request_header(cairn_request_t *req)
{
    return req->hdr;
}

const cairn_caller_t *cairn_request_caller(cairn_request_t *req)
{
    return &req->caller;
}

const ProtobufCMessage *cairn_request_body(cairn_request_t *req)
{
    return req->body;
}

ProtobufCMessage *cairn_request_reply(cairn_request_t *req)
{
    return req->reply;
}

void *cairn_request_alloc(cairn_request_t *req, size_t size)
{
    s_chunk_t *c = calloc(1, sizeof(*c) + size);

    if (!c)
        return NULL;
    c->next = req->chunks;
    req->chunks = c;
    return c->data;
}

char *cairn_request_strdup(cairn_request_t *req, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cairn_request_alloc(req, n);

    if (p)
        memcpy(p, s, n);
    return p;
}

int cairn_request_fail(cairn_request_t *req, int code, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    free(req->fail_msg);
    req->fail_msg = msg;
    req->fail_code = code ? code : CAIRN_INTERNAL;
    return CAIRN_REPLY_NOW;
}

cairn_deferred_t *cairn_request_defer(cairn_request_t *req)
{
    _cleanup_free_ cairn_deferred_t *d = NULL;

    if (req->deferred)
        return req->deferred;
    d = calloc(1, sizeof(*d));
    if (!d || !(d->rid = malloc(req->rid_len ? req->rid_len : 1)))
        return NULL;
    memcpy(d->rid, req->rid, req->rid_len);
    d->rid_len = req->rid_len;
    d->hdr = TAKE_PTR(req->hdr);   /* the request no longer frees it */
    /* The slot is the deferred's from now on, so that an answer sent
     * before the handler returns (the handler's own work finished at
     * once) fills it as a later one would. */
    d->slot = req->slot;
    if (d->slot >= 0)
        req->svc->cache[d->slot].pending = d;
    req->deferred = TAKE_PTR(d);
    return req->deferred;
}

/* Sends p (if any) to d's asker, caches it, frees d. */
static int s_deferred_finish(cairn_service_t *svc, cairn_deferred_t *d,
                             s_packed_t *p)
{
    int r = p && !d->hdr->no_reply ? s_deliver(svc, d->rid, d->rid_len, p) : 0;
    bool ours = d->slot >= 0 && svc->cache[d->slot].pending == d;

    s_cache_fill(svc, ours ? d->slot : -1, p);
    s_deferred_free(d);
    return r;
}

int cairn_deferred_reply(cairn_service_t *svc, cairn_deferred_t *d,
                         ProtobufCMessage *reply)
{
    Cairn__Status ok = CAIRN__STATUS__INIT, **st;
    Cairn__Status *saved;
    s_packed_t p;
    int r;

    if (!svc || !d || !reply)
        return -EINVAL;
    st = s_status_member(svc, reply);
    saved = *st;
    *st = &ok;
    r = s_pack(svc, d->hdr, reply, &p);
    *st = saved;
    if (r == -EMSGSIZE)
        r = s_pack_error(svc, d->hdr, CAIRN_TOO_LARGE,
                         "reply over the frame size limit", &p);
    if (r < 0)
        return s_deferred_finish(svc, d, NULL), r;
    return s_deferred_finish(svc, d, &p);
}

int cairn_deferred_fail(cairn_service_t *svc, cairn_deferred_t *d, int code,
                        const char *message)
{
    s_packed_t p;
    int r;

    if (!svc || !d)
        return -EINVAL;
    r = s_pack_error(svc, d->hdr, code ? code : CAIRN_INTERNAL, message, &p);
    if (r < 0)
        return s_deferred_finish(svc, d, NULL), r;
    return s_deferred_finish(svc, d, &p);
}

/* ---- accessors and publishing ------------------------------------------ */

cairn_loop_t *cairn_service_loop(cairn_service_t *svc)
{
    return svc->loop;
}

void *cairn_service_zmq_context(cairn_service_t *svc)
{
    return svc->zctx;
}

const cairn_description_t *cairn_service_description(cairn_service_t *svc)
{
    return svc->desc;
}

const cairn_node_desc_t *cairn_service_node(cairn_service_t *svc)
{
    return svc->node;
}

uint64_t cairn_service_uptime_ms(cairn_service_t *svc)
{
    return cairn_now_ms() - svc->started_ms;
}

const char *cairn_service_security_mode(cairn_service_t *svc)
{
    return svc->curve ? "curve" : "none";
}

const cairn_keypair_t *cairn_service_keypair(cairn_service_t *svc)
{
    return svc->curve ? &svc->keys : NULL;
}

int cairn_service_publish(cairn_service_t *svc, const char *topic,
                          uint32_t type, const ProtobufCMessage *msg)
{
    Cairn__Header hdr = CAIRN__HEADER__INIT;

    if (!svc || !topic || !msg)
        return -EINVAL;
    if (!svc->pub)
        return -ENOTCONN;
    hdr.version = CAIRN_WIRE_VERSION;
    hdr.request_id = cairn_wire_new_request_id();
    hdr.source_node = svc->node->id;
    hdr.service = (char *)svc->ops->name;
    hdr.type = type;
    if (protobuf_c_message_get_packed_size(msg) > CAIRN_WIRE_MAX_FRAME)
        return -EMSGSIZE;
    if (zmq_send(svc->pub, topic, strlen(topic), ZMQ_SNDMORE) < 0)
        return -errno;
    return cairn_wire_send(svc->pub, &hdr, msg, 0);
}

/* The XPUB hands up every new subscription (a frame: 1, then the topic)
 * and the end of each last one (0, topic); they are read so none piles
 * up. A subscription to a CAIRN_SYNC_TOPIC_PREFIX topic is answered with
 * one marker on it: read in order from the subscriber's pipe, everything
 * it subscribed before is in effect by now. */
static int s_on_subscription(cairn_loop_t *loop, int fd, void *zsock, short revents,
                             void *userdata)
{
    cairn_service_t *svc = userdata;
    size_t plen = strlen(CAIRN_SYNC_TOPIC_PREFIX);
    char topic[256];

    (void)loop, (void)fd, (void)revents;
    for (int i = 0; i < RECV_BATCH; i++) {
        int n = zmq_recv(zsock, topic, sizeof topic - 1, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        if (n < 1 || (size_t)n > sizeof topic - 1 || topic[0] != 1 ||
            (size_t)n - 1 < plen || memcmp(topic + 1, CAIRN_SYNC_TOPIC_PREFIX, plen) != 0)
            continue;
        topic[n] = '\0';
        Cairn__Status empty = CAIRN__STATUS__INIT;
        int r = cairn_service_publish(svc, topic + 1, 0, &empty.base);
        if (r < 0)
            cairn_log_warn(r, "sync-marker", "topic=%s", topic + 1);
    }
    return 0;
}

/* ---- binding ----------------------------------------------------------- */

/* 0 if path is free (absent, or a stale socket now removed); -EADDRINUSE
 * if a live process accepts connections on it, with that process's pid in
 * *ret_pid (0 if the kernel does not say). */
static int s_claim_ipc_path(const char *path, pid_t *ret_pid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ucred cred = { 0 };
    socklen_t len = sizeof(cred);
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    if (access(path, F_OK) < 0)
        return 0;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    /* The listener's credentials, taken when it called listen(). */
    if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        cred.pid = 0;
    close(fd);
    if (r == 0) {
        *ret_pid = cred.pid;
        return -EADDRINUSE;
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* The --config (or -c) argument pid was started with, in out; "" if none
 * or unreadable. Only for the message of a refused bind. */
static void s_pid_config(pid_t pid, char *out, size_t size)
{
    _cleanup_free_ char *cmd = NULL;
    char path[64];
    size_t len = 0;

    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (pid <= 0 || cairn_read_file(path, 1 << 16, &cmd, &len) < 0)
        return;
    /* cmdline is NUL-separated: a, then the argument after it, if any. */
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1) {
        const char *a = cmd + i, *after = a + strlen(a) + 1;

        if (strncmp(a, "--config=", 9) == 0)
            after = a + 9;
        else if (strcmp(a, "--config") != 0 && strcmp(a, "-c") != 0)
            continue;
        else if (after >= cmd + len)
            return;
        snprintf(out, size, "%s", after);
        return;
    }
}

/* Logs why path is taken: which process serves it and how to part the
 * two clusters. A second cluster generated with the default name and run
 * base shares the first one's run dirs, and this is where it shows. */
static void s_log_in_use(const cairn_service_t *svc, const char *path,
                         pid_t pid)
{
    char config[PATH_MAX], by[PATH_MAX + 16] = "";

    s_pid_config(pid, config, sizeof(config));
    if (config[0])
        snprintf(by, sizeof(by), " (--config %s)", config);
    cairn_log_err(-EADDRINUSE, "bind",
                  "endpoint=ipc://%s pid=%d msg=\"another %s is running: "
                  "pid %d%s serves the run dir %s, which this description "
                  "(%s) gives to cluster '%s' node %u too; name this cluster "
                  "apart (cairn config generate --name NAME, or --run-base "
                  "DIR) or stop pid %d\"",
                  path, (int)pid, svc->ops->name, (int)pid, by,
                  svc->node->rundir, svc->config_path,
                  cairn_description_cluster(svc->desc), svc->node->id,
                  (int)pid);
}

/* Binds sock on ipc://<rundir>/<name><suffix>; *ret_path set on success. */
static int s_bind_ipc(cairn_service_t *svc, void *sock, const char *suffix,
                      char **ret_path)
{
    _cleanup_free_ char *path = NULL;
    char ep[PATH_MAX + 8];
    pid_t owner = 0;
    int r;

    if (asprintf(&path, "%s/%s%s", svc->node->rundir, svc->ops->name, suffix) < 0)
        return -ENOMEM;
    r = s_claim_ipc_path(path, &owner);
    if (r == -EADDRINUSE)
        s_log_in_use(svc, path, owner);
    else if (r < 0)
        cairn_log_err(r, "bind", "endpoint=ipc://%s", path);
    snprintf(ep, sizeof(ep), "ipc://%s", path);
    if (r == 0 && zmq_bind(sock, ep) < 0)
        r = cairn_log_err(-errno, "bind", "endpoint=%s msg=\"%s\"", ep,
                          zmq_strerror(errno));
    if (r < 0)
        return r;
    cairn_log_info("bind", "endpoint=%s", ep);
    *ret_path = TAKE_PTR(path);
    return 0;
}

static int s_bind_tcp(cairn_service_t *svc, void *sock, bool pub)
{
    _cleanup_free_ char *ep = cairn_description_tcp_endpoint(
        svc->desc, svc->node, svc->ops->name, pub);

    if (!ep)
        return cairn_log_err(-errno, "bind", "msg=\"no tcp endpoint for %s\"",
                             svc->ops->name);
    if (zmq_bind(sock, ep) < 0) {
        int e = errno;

        /* The usual cause: --node names another host's node. */
        if (e == EADDRNOTAVAIL)
            return cairn_log_err(-e, "bind",
                                 "endpoint=%s msg=\"%s is not an address of "
                                 "this host: is this host node %s (--node)?\"",
                                 ep, svc->node->address, svc->node->name);
        return cairn_log_err(-e, "bind", "endpoint=%s msg=\"%s\"", ep,
                             zmq_strerror(e));
    }
    cairn_log_info("bind", "endpoint=%s", ep);
    return 0;
}

static void *s_socket(cairn_service_t *svc, int type)
{
    void *s = zmq_socket(svc->zctx, type);
    int one = 1, zero = 0;
    int64_t cap = HARD_CAP;

    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof(cap));
    if (type == ZMQ_ROUTER) {
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
    }
    return s;
}

/* Sets sock up for the tcp binds that follow: a CURVE server in mode
 * curve; in mode none the NULL mechanism under ZAP domain "cairn-tcp",
 * so the handler tells these peers from ipc ones by domain, never by
 * parsing an address. */
static int s_tcp_security(cairn_service_t *svc, void *sock, bool zap)
{
    cairn_error_t err;

    if (svc->curve) {
        int r = cairn_curve_server(sock, &svc->keys, &err);
        return r < 0 ? cairn_log_err(r, "bind", "msg=\"%s\"", err.message) : 0;
    }
    if (zap && zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_TCP_DOMAIN,
                              strlen(ZAP_TCP_DOMAIN)) < 0)
        return cairn_log_err(-errno, "bind", "msg=\"ZAP_DOMAIN: %s\"",
                             zmq_strerror(errno));
    return 0;
}

/* Any local user may connect (connect(2) on a unix socket needs write
 * access to its file); what they may ask is the handlers' access and
 * the caller's SO_PEERCRED, not the file mode. */
static int s_open_ipc(cairn_service_t *svc, const char *path)
{
    if (chmod(path, 0666) < 0)
        return cairn_log_err(-errno, "bind", "endpoint=ipc://%s msg=\"chmod 0666: %s\"",
                             path, strerror(errno));
    return 0;
}

static int s_bind(cairn_service_t *svc)
{
    int r;

    svc->router = s_socket(svc, ZMQ_ROUTER);
    if (!svc->router)
        return cairn_log_err(-errno, "socket", "type=router");
    /* ipc first, with ZAP on: the handler records each peer's creds. */
    if (zmq_setsockopt(svc->router, ZMQ_ZAP_DOMAIN, ZAP_LOCAL_DOMAIN,
                       strlen(ZAP_LOCAL_DOMAIN)) < 0)
        return cairn_log_err(-errno, "bind", "msg=\"ZAP_DOMAIN: %s\"",
                             zmq_strerror(errno));
    if ((r = s_bind_ipc(svc, svc->router, ".sock", &svc->ipc_path)) < 0 ||
        (r = s_open_ipc(svc, svc->ipc_path)) < 0 ||
        (r = s_tcp_security(svc, svc->router, true)) < 0 ||
        (r = s_bind_tcp(svc, svc->router, false)) < 0)
        return r;
    cairn_log_info("security", "mode=%s", svc->curve ? "curve" : "none");
    if (svc->sdesc->pub_port == 0)
        return 0;
    /* XPUB: a PUB that also hands us new subscriptions, so a subscriber
     * can learn when its own is in effect (s_on_subscription). */
    svc->pub = s_socket(svc, ZMQ_XPUB);
    if (!svc->pub)
        return cairn_log_err(-errno, "socket", "type=xpub");
    if ((r = s_bind_ipc(svc, svc->pub, ".pub.sock", &svc->pub_ipc_path)) < 0 ||
        (r = s_open_ipc(svc, svc->pub_ipc_path)) < 0 ||
        (r = s_tcp_security(svc, svc->pub, false)) < 0 ||
        (r = s_bind_tcp(svc, svc->pub, true)) < 0)
        return r;
    return 0;
}

/* The ZAP handler, bound before any socket that consults it: libzmq
 * 4.3 lets every handshake through when none is bound. */
static int s_bind_zap(cairn_service_t *svc)
{
    int zero = 0;

    svc->zap = zmq_socket(svc->zctx, ZMQ_REP);
    if (!svc->zap)
        return cairn_log_err(-errno, "socket", "type=zap");
    zmq_setsockopt(svc->zap, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(svc->zap, ZAP_ENDPOINT) < 0)
        return cairn_log_err(-errno, "bind", "endpoint=%s msg=\"%s\"",
                             ZAP_ENDPOINT, zmq_strerror(errno));
    int64_t w = cairn_loop_add_socket(svc->loop, svc->zap, ZMQ_POLLIN, s_on_zap, svc);
    return w < 0 ? cairn_log_err((int)w, "start", "msg=\"cannot watch zap\"") : 0;
}

/* Mode curve: this node's keypair, from the file its <key> names, which
 * must hold the public key the description lists for it. */
static int s_load_keys(cairn_service_t *svc)
{
    const cairn_key_desc_t *k;
    char want[CAIRN_KEY_FINGERPRINT_LEN + 1], have[CAIRN_KEY_FINGERPRINT_LEN + 1];
    cairn_error_t err;
    int r;

    svc->curve = cairn_description_curve(svc->desc);
    if (!svc->curve)
        return 0;
    if (!(k = cairn_description_find_key(svc->desc, svc->node->id)))
        return cairn_log_err(-ENOKEY, "keys",
                             "node=%u msg=\"security mode curve, but the "
                             "description has no <key> for node %u (cairn "
                             "keys generate --node %u prints the element)\"",
                             svc->node->id, svc->node->id, svc->node->id);
    if ((r = cairn_keypair_read(k->secret_path, &svc->keys, &err)) < 0)
        return cairn_log_err(r, "keys", "msg=\"%s\"", err.message);
    if (strcmp(svc->keys.public_key, k->public_key) != 0) {
        cairn_key_fingerprint(k->public_key, want);
        cairn_key_fingerprint(svc->keys.public_key, have);
        return cairn_log_err(-EKEYREJECTED, "keys",
                             "file=%s msg=\"this secret key (public %s) is "
                             "not the one the description lists for node %u "
                             "(%s)\"", k->secret_path, have, svc->node->id, want);
    }
    cairn_key_fingerprint(svc->keys.public_key, have);
    cairn_log_info("keys", "node=%u key=%s", svc->node->id, have);
    return 0;
}

/* ---- description, node, reload ----------------------------------------- */

/* Picks this node in d: by --node, else by host name, else the only one. */
/* For a hotplugged node (--node-id): adds it to d unless d already names
 * it (an operator may have added it to the file since). Logs refusals. */
static int s_add_hotplugged(const cairn_service_t *svc, cairn_description_t *d,
                            const char *event)
{
    cairn_error_t err;
    const cairn_node_desc_t *known = svc->hot_id ? cairn_description_find_node(d, svc->hot_id) : NULL;
    if (known && strcmp(known->address, svc->hot_address) != 0)
        return cairn_log_err(-EEXIST, event,
                             "node=%u msg=\"the description has node %u as %s at %s, not at %s\"",
                             svc->hot_id, svc->hot_id, known->name, known->address,
                             svc->hot_address);
    if (!svc->hot_id || known)
        return 0;
    int r = cairn_description_add_node(d, svc->hot_id, svc->hot_name, svc->hot_address,
                                       svc->hot_appliance, NULL, &err);
    if (r < 0)
        cairn_log_err(r, event, "node=%u msg=\"%s\"", svc->hot_id, err.message);
    return r;
}

static const cairn_node_desc_t *s_pick_node(const cairn_service_t *svc,
                                            const cairn_description_t *d,
                                            const char *arg)
{
    char host[256] = "";

    if (svc->hot_id)
        return cairn_description_find_node(d, svc->hot_id);

    if (arg)
        return cairn_description_lookup_node(d, arg);
    if (gethostname(host, sizeof(host) - 1) == 0) {
        const cairn_node_desc_t *n = cairn_description_find_node_by_name(d, host);
        if (n)
            return n;
    }
    return cairn_description_n_nodes(d) == 1 ? cairn_description_node(d, 0) : NULL;
}

/* Checks that d has this service on `node`; logs why not. */
static int s_check_node(const cairn_service_t *svc, const cairn_description_t *d,
                        const cairn_node_desc_t *node, const char *event)
{
    if (!node)
        return cairn_log_err(-ENOENT, event, "msg=\"no node %s in %s\"",
                             svc->node_arg ? svc->node_arg : "named like this host",
                             cairn_description_path(d));
    if (!cairn_description_service(d, svc->ops->name))
        return cairn_log_err(-ENOENT, event, "msg=\"service %s is not declared\"",
                             svc->ops->name);
    if (!cairn_description_node_runs(d, node, svc->ops->name))
        return cairn_log_err(-ENOENT, event,
                             "msg=\"node %s (appliance %s) does not run %s\"",
                             node->name, node->appliance, svc->ops->name);
    return 0;
}

static int s_load(cairn_service_t *svc, cairn_description_t **ret,
                  const char *event)
{
    cairn_error_t err;
    int r = cairn_description_load(svc->config_path, ret, &err);

    if (r < 0)
        cairn_log_err(r, event, "file=%s line=%d element=%s msg=\"%s\"",
                      err.file[0] ? err.file : svc->config_path, err.line,
                      err.element[0] ? err.element : "-", err.message);
    return r;
}

/* The sockets keep the mode and the key they were bound with: a new
 * description may change other nodes' keys (that is how a node joins
 * or is cast out without restarts), not these. */
static int s_check_reload_keys(const cairn_service_t *svc,
                               const cairn_description_t *nd,
                               const cairn_node_desc_t *node)
{
    const cairn_key_desc_t *k = cairn_description_find_key(nd, node->id);

    if (cairn_description_curve(nd) != svc->curve)
        return cairn_log_err(-EINVAL, "reload",
                             "msg=\"security mode changed from %s: restart "
                             "the daemon to change it\"",
                             svc->curve ? "curve" : "none");
    if (svc->curve && (!k || strcmp(k->public_key, svc->keys.public_key) != 0))
        return cairn_log_err(-EKEYREJECTED, "reload",
                             "msg=\"this node's own key changed: restart the "
                             "daemon to serve the new one\"");
    return 0;
}

/* Loads the new description; on any refusal the old one stays. */
static int s_try_reload(cairn_service_t *svc)
{
    cairn_description_t *nd = NULL;
    const cairn_node_desc_t *node;
    cairn_error_t err;
    int r;

    if ((r = s_load(svc, &nd, "reload")) < 0)
        return r;
    if ((r = s_add_hotplugged(svc, nd, "reload")) < 0)
        goto fail;
    node = cairn_description_find_node(nd, svc->node->id);
    if ((r = s_check_node(svc, nd, node, "reload")) < 0)
        goto fail;
    if ((r = s_check_reload_keys(svc, nd, node)) < 0)
        goto fail;
    cairn_error_clear(&err);
    if (svc->ops->reload && (r = svc->ops->reload(svc, svc->ctx, nd, &err)) < 0) {
        cairn_log_err(r, "reload", "msg=\"refused by %s: %s\"", svc->ops->name,
                      err.message);
        goto fail;
    }
    const cairn_service_desc_t *sd = cairn_description_service(nd, svc->ops->name);
    if (strcmp(node->address, svc->node->address) != 0 ||
        sd->port != svc->sdesc->port || sd->pub_port != svc->sdesc->pub_port)
        cairn_log_warn(0, "reload", "msg=\"endpoints changed; restart to rebind, ignoring\"");
    cairn_description_free(svc->desc);
    svc->desc = nd;
    svc->node = node;
    svc->sdesc = sd;
    return 0;
fail:
    cairn_description_free(nd);
    return r;
}

static void s_reload(cairn_service_t *svc)
{
    s_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)cairn_now_ms() * 1000ull);
    cairn_log_info("reload", "file=%s", svc->config_path);
    if (s_try_reload(svc) == 0)
        cairn_log_info("reloaded", "file=%s", svc->config_path);
    else
        cairn_log_warn(0, "reload", "msg=\"keeping the previous description\"");
    s_notify("READY=1\nSTATUS=serving on node %u", svc->node->id);
}

/* ---- signals and watchdog ---------------------------------------------- */

static int s_on_signal(cairn_loop_t *loop, int fd, void *zsock, short revents,
                       void *userdata)
{
    cairn_service_t *svc = userdata;
    struct signalfd_siginfo si;

    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        const char *name = sigabbrev_np((int)si.ssi_signo);

        cairn_log_info("signal", "signal=%s", name ? name : "?");
        if (si.ssi_signo == SIGHUP) {
            s_reload(svc);
            continue;
        }
        cairn_loop_quit(loop, 0);
        return 0;
    }
    return 0;
}

static int s_setup_signals(cairn_service_t *svc)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return cairn_log_err(-errno, "signals", "msg=\"sigprocmask failed\"");
    svc->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (svc->sfd < 0)
        return cairn_log_err(-errno, "signals", "msg=\"signalfd failed\"");
    return 0;
}

static int s_on_watchdog(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_notify("WATCHDOG=1");
    return 0;
}

static int s_setup_watchdog(cairn_service_t *svc)
{
#if CAIRN_HAVE_SYSTEMD
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    uint64_t ms = usec / 2000 ? usec / 2000 : 1;
    int64_t id = cairn_loop_add_timer(svc->loop, ms, ms, s_on_watchdog, svc);
    if (id < 0)
        return cairn_log_err((int)id, "watchdog", "msg=\"no timer\"");
    cairn_log_info("watchdog", "interval-ms=%llu", (unsigned long long)ms);
#endif
    return 0;
}

/* ---- options ----------------------------------------------------------- */

/* The daemons' options, in the order s_parse_args reads them. */
enum {
    S_OPT_CONFIG, S_OPT_NODE, S_OPT_NODE_ID, S_OPT_ADDRESS, S_OPT_NAME,
    S_OPT_APPLIANCE, S_OPT_HELP, S_OPT_VERSION,
};

static const cairn_option_t s_options[] = {
    [S_OPT_CONFIG] = { "--config", "FILE", "cluster description (default "
                       "$CAIRN_CONFIG or /etc/cairn/cluster.xml)", "-c" },
    [S_OPT_NODE] = { "--node", "ID|NAME", "this node (default: the node "
                     "named like the host)", "-n" },
    [S_OPT_NODE_ID] = { "--node-id", "N", "this node is N, hotplugged: not "
                        "in the description" },
    [S_OPT_ADDRESS] = { "--address", "A", "its address (with --node-id)" },
    [S_OPT_NAME] = { "--name", "NAME", "its name (with --node-id; default "
                     "n<N>)" },
    [S_OPT_APPLIANCE] = { "--appliance", "APP", "its appliance (with "
                          "--node-id; default the first node's)" },
    [S_OPT_HELP] = { "--help", NULL, "this text", "-h" },
    [S_OPT_VERSION] = { "--version", NULL, "the Cairn version", "-V" },
    { NULL, NULL, NULL, NULL },
};

static void s_usage(const char *name, FILE *out)
{
    char synopsis[256];

    snprintf(synopsis, sizeof(synopsis),
             "[--config FILE] [--node ID|NAME]\n"
             "       %s [--config FILE] --node-id N --address A [--name NAME] "
             "[--appliance APP]", name);
    cairn_options_usage(out, name, synopsis, s_options);
}

/* A --node-id value: 1..255, or 0 (then s_check_hotplug_args complains). */
static uint32_t s_parse_node_id(const char *arg)
{
    char *end = NULL;
    unsigned long v = strtoul(arg, &end, 10);
    return end && *end == '\0' && end != arg && v >= 1 && v <= 255 ? (uint32_t)v : 0;
}

/* --node-id and --address go together, and exclude --node. */
static int s_check_hotplug_args(const cairn_service_t *svc)
{
    bool hot = svc->hot_id || svc->hot_address || svc->hot_name || svc->hot_appliance;
    const char *why = NULL;
    if (!hot)
        return 0;
    if (svc->node_arg)
        why = "--node cannot be combined with --node-id/--address";
    else if (!svc->hot_id)
        why = "--node-id needs a number in 1..255";
    else if (!svc->hot_address)
        why = "--node-id needs --address";
    if (!why)
        return 0;
    fprintf(stderr, "%s: %s\n", svc->ops->name, why);
    return -EINVAL;
}

/* 0 to go on, or an exit code + 1 (help/version: 1, usage error: 101). */
static int s_parse_args(cairn_service_t *svc, int argc, char **argv)
{
    const char *name = svc->ops->name;
    cairn_args_t a;
    cairn_error_t err;

    /* Positionals are taken, then refused without the usage text. */
    if (cairn_args_parse(name, s_options, argc > 0 ? argc - 1 : 0, argv + 1,
                         CAIRN_MAX_ARGS, &a, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        s_usage(name, stderr);
        return EXIT_USAGE + 1;
    }
    if (a.values[S_OPT_HELP]) {
        s_usage(name, stdout);
        return 1;
    }
    if (a.values[S_OPT_VERSION]) {
        printf("%s %s\n", name, CAIRN_VERSION);
        return 1;
    }
    if (a.n_pos > 0) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", name, a.pos[0]);
        return EXIT_USAGE + 1;
    }
    svc->config_path = a.values[S_OPT_CONFIG];
    svc->node_arg = a.values[S_OPT_NODE];
    if (a.values[S_OPT_NODE_ID])
        svc->hot_id = s_parse_node_id(a.values[S_OPT_NODE_ID]);
    svc->hot_address = a.values[S_OPT_ADDRESS];
    svc->hot_name = a.values[S_OPT_NAME];
    svc->hot_appliance = a.values[S_OPT_APPLIANCE];
    if (s_check_hotplug_args(svc) < 0)
        return EXIT_USAGE + 1;
    if (!svc->config_path)
        svc->config_path = getenv("CAIRN_CONFIG");
    if (!svc->config_path || !*svc->config_path)
        svc->config_path = "/etc/cairn/cluster.xml";
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

/* Checks that the ops tables fit the skeleton's assumptions. */
static int s_check_ops(cairn_service_t *svc)
{
    const cairn_service_ops_t *o = svc->ops;
    const ProtobufCFieldDescriptor *f;

    if (!o->name || !o->request_desc || !o->reply_desc ||
        (o->n_handlers && !o->handlers))
        return cairn_log_err(-EINVAL, "start", "msg=\"incomplete service ops\"");
    f = protobuf_c_message_descriptor_get_field(o->reply_desc, 1);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        f->descriptor != &cairn__status__descriptor)
        return cairn_log_err(-EINVAL, "start", "msg=\"%s has no Status status = 1\"",
                             o->reply_desc->name);
    svc->status_offset = f->offset;
    return 0;
}

/* Everything up to READY. */
static int s_start(cairn_service_t *svc)
{
    int r;

    if ((r = s_check_ops(svc)) < 0 || (r = s_load(svc, &svc->desc, "config")) < 0)
        return r;
    if ((r = s_add_hotplugged(svc, svc->desc, "config")) < 0)
        return r;
    svc->node = s_pick_node(svc, svc->desc, svc->node_arg);
    if ((r = s_check_node(svc, svc->desc, svc->node, "config")) < 0)
        return r;
    svc->sdesc = cairn_description_service(svc->desc, svc->ops->name);
    cairn_log_init(svc->ops->name, svc->node->id);
    if ((r = s_setup_signals(svc)) < 0)
        return r;
    svc->zctx = zmq_ctx_new();
    svc->loop = cairn_loop_new();
    if (!svc->zctx || !svc->loop)
        return cairn_log_err(-ENOMEM, "start", "msg=\"no zmq context or loop\"");
    if ((r = cairn_mkdir_p(svc->node->rundir, 0755)) < 0)
        return cairn_log_err(r, "rundir", "path=%s", svc->node->rundir);
    if ((r = s_load_keys(svc)) < 0)
        return r;
    if (svc->ops->start && (r = svc->ops->start(svc, svc->ctx)) < 0)
        return cairn_log_err(r, "start", "msg=\"%s refused to start\"", svc->ops->name);
    if ((r = s_bind_zap(svc)) < 0 || (r = s_bind(svc)) < 0 ||
        (r = s_watch_handshakes(svc)) < 0)
        return r;
    if ((r = (int)cairn_loop_add_socket(svc->loop, svc->router, ZMQ_POLLIN,
                                        s_on_router, svc)) < 0 ||
        (svc->pub && (r = (int)cairn_loop_add_socket(svc->loop, svc->pub, ZMQ_POLLIN,
                                                     s_on_subscription, svc)) < 0) ||
        (r = (int)cairn_loop_add_fd(svc->loop, svc->sfd, ZMQ_POLLIN,
                                    s_on_signal, svc)) < 0)
        return cairn_log_err(r, "start", "msg=\"cannot watch sockets\"");
    return s_setup_watchdog(svc);
}

static void s_close(cairn_service_t *svc)
{
    s_cache_clear(svc);
    if (svc->monitor) {
        zmq_socket_monitor(svc->router, NULL, 0);
        zmq_close(svc->monitor);
    }
    if (svc->router)
        zmq_close(svc->router);
    if (svc->pub)
        zmq_close(svc->pub);
    if (svc->zap)
        zmq_close(svc->zap);
    if (svc->zctx)
        zmq_ctx_term(svc->zctx);
    if (svc->ipc_path)
        unlink(svc->ipc_path);
    if (svc->pub_ipc_path)
        unlink(svc->pub_ipc_path);
    free(svc->ipc_path);
    free(svc->pub_ipc_path);
    if (svc->sfd >= 0)
        close(svc->sfd);
    cairn_loop_free(svc->loop);
    cairn_description_free(svc->desc);
}

int cairn_service_main(const cairn_service_ops_t *ops, void *ctx, int argc,
                       char **argv)
{
    cairn_service_t svc = { .ops = ops, .ctx = ctx, .sfd = -1,
                            .started_ms = cairn_now_ms() };
    int r;

    if (!ops || !ops->name)
        return 1;
    cairn_log_init(ops->name, 0);
    if ((r = s_parse_args(&svc, argc, argv)) != 0)
        return r - 1;
    if (s_start(&svc) < 0) {
        s_notify("STATUS=startup failed");
        s_close(&svc);
        return 1;
    }
    s_notify("READY=1\nSTATUS=serving on node %u", svc.node->id);
    cairn_log_info("ready", "node=%u name=%s pid=%d", svc.node->id,
                   svc.node->name, (int)getpid());
    r = ops->ready ? ops->ready(&svc, ctx) : 0;
    if (r < 0)
        cairn_log_err(r, "ready", "msg=\"%s failed after READY\"", ops->name);
    else
        r = cairn_loop_run(svc.loop);
    s_notify("STOPPING=1\nSTATUS=stopping");
    cairn_log_info("stopping", "code=%d", r);
    if (ops->stop)
        ops->stop(&svc, ctx);
    s_close(&svc);
    cairn_log_info("stopped", "pid=%d", (int)getpid());
    return r < 0 ? 1 : 0;
}
