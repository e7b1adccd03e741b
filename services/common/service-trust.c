/* service-trust.c - who may connect to a daemon and who asked
 * (docs/security.md; service.h, service-private.h).
 *
 * Design. Every connection to the ROUTER passes the ZAP handler, bound
 * here before any socket that consults it. ipc peers (domain
 * "cairn-local") are admitted with their SO_PEERCRED as user id; in mode
 * curve a tcp peer is admitted only with a CURVE key the description
 * gives a node, and its user id names that node and key (a reload that
 * drops the key revokes open connections); in mode none tcp peers
 * ("cairn-tcp") come in with no user id. Each request's caller is then
 * read from that verdict, never from the message alone, and checked
 * against its handler's access before the handler runs.
 *
 * Handshakes that fail before ZAP are seen only through a socket monitor
 * and logged as a periodic count; a refused peer is logged once per
 * (address, key) while remembered.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "log.h"
#include "service-private.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define MONITOR_ENDPOINT "inproc://cairn.handshakes"
#define HANDSHAKE_LOG_EVERY_S 10

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
const char *service_caller_key(const cairn_caller_t *c, char *buf, size_t size)
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
void service_caller_of(const cairn_service_t *svc, const cairn_frames_t *f,
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
int service_check_access(const cairn_service_t *svc, const cairn_handler_t *h,
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
    for (size_t i = 0; i < SERVICE_REFUSED_LOGGED; i++)
        if (strcmp(svc->refused[i], entry) == 0)
            return;
    snprintf(svc->refused[svc->refused_next], sizeof(entry), "%s", entry);
    svc->refused_next = (svc->refused_next + 1) % SERVICE_REFUSED_LOGGED;
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
    if (strcmp(z[2], SERVICE_ZAP_LOCAL_DOMAIN) == 0 && strcmp(z[5], "NULL") == 0) {
        if (!s_parse_creds(z[3], v)) {
            s_log_refused(svc, z[3], "-", "ipc peer without SO_PEERCRED");
            return "400";
        }
        snprintf(user, len, "local:%lld:%lld:%lld", v[0], v[1], v[2]);
        return "200";
    }
    if (!svc->curve && strcmp(z[2], SERVICE_ZAP_TCP_DOMAIN) == 0 &&
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

    for (int i = 0; i < SERVICE_RECV_BATCH; i++) {
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

    for (int i = 0; i < SERVICE_RECV_BATCH; i++) {
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
int service_watch_handshakes(cairn_service_t *svc)
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

/* ---- keys -------------------------------------------------------------- */

/* The ZAP handler, bound before any socket that consults it: libzmq
 * 4.3 lets every handshake through when none is bound. */
int service_bind_zap(cairn_service_t *svc)
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
int service_load_keys(cairn_service_t *svc)
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
