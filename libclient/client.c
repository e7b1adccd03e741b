/* client.c - request/reply to a Cairn service: the lazy pirate.
 *
 * Design (zguide ch. 4, "lazy pirate"). A client holds its endpoint, its
 * service name, its settings and one zmq context, created on the first call
 * and terminated in cairn_client_free(). Each attempt of a call opens a
 * fresh DEALER (ZMQ_LINGER 0, ZMQ_IMMEDIATE off, so the request is queued
 * until the connection is up), sends [Header][Request] and polls for the
 * answer. When the attempt's time is up the socket is closed -- dropping
 * whatever it still queued -- and a new one resends the *same* request id,
 * which the server answers from its reply cache. Replies that are not ours
 * (another request id, or not marked is_reply) are dropped and the wait goes
 * on within the same attempt.
 *
 * Time: the total deadline is split into 1 + retries attempts of
 * total / (1 + retries) ms (at least 1 ms); the last attempt runs to the
 * total deadline, which is never exceeded. Header.deadline_ms tells the
 * server how long the caller is still willing to wait.
 *
 * Before anything is sent to an ipc:// endpoint it is probed with one plain
 * connect() (cairn_endpoint_probe), so "the service is not running here" is
 * an immediate -ENOENT (no socket file) or -ECONNREFUSED (a socket file
 * nobody listens on: a daemon killed with -9 leaves it behind) and not a
 * timeout: ZeroMQ itself would silently reconnect until the deadline. The
 * kernel answers a unix connect() at once, so the probe costs one accepted
 * and closed connection on a live server, which ZeroMQ drops unnoticed.
 * tcp:// endpoints are not probed here: a remote server that is slow to
 * accept is the case the retries are for (the CLI probes them once, with a
 * short wait, when it picks a node).
 *
 * Status: every service Reply has `cairn.Status status = 1`; it is read
 * generically through the reply descriptor, so one code path serves every
 * service, and an ErrorReply sent by the skeleton (wire-compatible with any
 * Reply) reaches the caller as its Status.
 *
 * Threads: a client is used by one thread at a time (its zmq sockets are
 * not thread-safe); different clients may be used concurrently. The library
 * never logs: errors go to the caller's cairn_error_t.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/client.h"
#include "cairn/security.h"
#include "cairn/wire.h"
#include "util/cleanup.h"
#include "util/clock.h"

struct cairn_client {
    char *endpoint;        /* "ipc://...", "tcp://..." or "inproc://..." */
    char *service;         /* Header.service, "clusterd" */
    void *zctx;            /* zmq context, created on the first call */
    int timeout_ms;        /* total deadline of one call */
    int retries;           /* resends after the first attempt */
    uint32_t source_node;  /* Header.source_node */
    int last_attempts;     /* attempts made by the last call */
    bool curve;            /* connect as a CURVE client (below) */
    char server_key[CAIRN_KEY_LEN + 1];  /* the server's public key */
    cairn_keypair_t own;   /* this client's keypair */
};

/* What one call is about: fixed across its attempts. */
typedef struct s_call {
    const ProtobufCMessage *req;                 /* the Request to send */
    const ProtobufCMessageDescriptor *reply_desc;/* how to decode the Reply */
    uint64_t request_id;                         /* same on every attempt */
    uint32_t type;                               /* req's oneof case */
    uint64_t end_ms;                             /* deadline, cairn_now_ms() */
} s_call_t;

/* An attempt's socket is closed on every way out (LINGER 0: at once). */
CAIRN_DEFINE_CLEANUP(s_zmq_closep, void *, zmq_close)

static bool s_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* An endpoint is one of our transports followed by a non-empty address. */
static bool s_endpoint_valid(const char *endpoint)
{
    static const char *const prefixes[] = { "ipc://", "tcp://", "inproc://" };

    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (s_has_prefix(endpoint, prefixes[i]))
            return endpoint[strlen(prefixes[i])] != '\0';
    return false;
}

cairn_client_t *cairn_client_new(const char *endpoint, const char *service)
{
    cairn_client_t *c;

    if (!endpoint || !service || !*service || !s_endpoint_valid(endpoint)) {
        errno = EINVAL;
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->endpoint = strdup(endpoint);
    c->service = strdup(service);
    if (!c->endpoint || !c->service) {
        cairn_client_free(c);
        errno = ENOMEM;
        return NULL;
    }
    c->timeout_ms = CAIRN_CLIENT_DEFAULT_TIMEOUT_MS;
    c->retries = CAIRN_CLIENT_DEFAULT_RETRIES;
    return c;
}

cairn_client_t *cairn_client_free(cairn_client_t *c)
{
    if (!c)
        return NULL;
    /* Every socket is closed when a call returns, so this does not block. */
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    free(c->endpoint);
    free(c->service);
    free(c);
    return NULL;
}

void cairn_client_set_timeout(cairn_client_t *c, int timeout_ms)
{
    if (c && timeout_ms > 0)
        c->timeout_ms = timeout_ms;
}

void cairn_client_set_retries(cairn_client_t *c, int retries)
{
    if (c && retries >= 0)
        c->retries = retries;
}

void cairn_client_set_source_node(cairn_client_t *c, uint32_t node)
{
    if (c)
        c->source_node = node;
}

int cairn_client_set_curve(cairn_client_t *c, const char *server_public,
                           const cairn_keypair_t *own, cairn_error_t *err)
{
    if (!c || !own || !cairn_key_is_valid(server_public) ||
        !cairn_key_is_valid(own->public_key) ||
        !cairn_key_is_valid(own->secret_key))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "a CURVE client needs the server's public key "
                               "and a keypair of its own");
    snprintf(c->server_key, sizeof c->server_key, "%s", server_public);
    c->own = *own;
    c->curve = true;
    return 0;
}

int cairn_client_last_attempts(const cairn_client_t *c)
{
    return c ? c->last_attempts : 0;
}

/* ---- liveness probe ---------------------------------------------------- */

/* connect() to the unix socket at path ("@name": abstract): 0 when it was
 * accepted or may be (EAGAIN: a full backlog is a busy server), else the
 * negative errno the kernel gave at once. A path too long for sun_path
 * cannot be probed (nor reached by ZeroMQ: its own error will say so). */
static int s_probe_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    _cleanup_close_ int fd = -1;
    socklen_t salen;

    if (len >= sizeof sa.sun_path)
        return 0;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (connect(fd, (struct sockaddr *)&sa, salen) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS)
        return 0;
    return -errno;
}

/* Splits "ADDRESS:PORT" ("[v6]:PORT" too) into host and port buffers. */
static bool s_split_host_port(const char *hp, char *host, size_t hsize,
                              char *port, size_t psize)
{
    const char *colon = strrchr(hp, ':');
    size_t hlen;

    if (!colon || !colon[1] || strlen(colon + 1) >= psize)
        return false;
    if (hp[0] == '[' && colon > hp && colon[-1] == ']')
        hp++, hlen = (size_t)(colon - hp) - 1;
    else
        hlen = (size_t)(colon - hp);
    if (hlen == 0 || hlen >= hsize)
        return false;
    memcpy(host, hp, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return true;
}

/* A non-blocking connect() to a numeric ADDRESS:PORT, waited on for at most
 * wait_ms: a definite "nobody there" as a negative errno, else 0. */
static int s_probe_tcp(const char *hp, int wait_ms)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    _cleanup_close_ int fd = -1;
    char host[256], port[8];
    int r = 0, e = 0;
    socklen_t elen = sizeof e;

    if (!s_split_host_port(hp, host, sizeof host, port, sizeof port) ||
        getaddrinfo(host, port, &hints, &ai) != 0)
        return 0;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };

        if (errno != EINPROGRESS)
            r = -errno;
        else if (poll(&p, 1, wait_ms) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e)
            r = -e;
    }
    freeaddrinfo(ai);
    return r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ENETUNREACH ? r
                                                                         : 0;
}

int cairn_endpoint_probe(const char *endpoint, const char *service, int wait_ms,
                         cairn_error_t *err)
{
    const char *what = service && *service ? service : "the service";
    int r;

    if (!endpoint)
        return 0;
    if (s_has_prefix(endpoint, "ipc://")) {
        const char *path = endpoint + strlen("ipc://");

        r = s_probe_unix(path);
        if (r == -ENOENT)
            return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                                   "%s is not running: no socket at %s", what,
                                   path);
        if (r == -ECONNREFUSED)
            return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                                   "%s is not running: no listener "
                                   "(connection refused) at %s",
                                   what, path);
        return 0; /* EACCES and the like: let the request say */
    }
    if (!s_has_prefix(endpoint, "tcp://"))
        return 0;
    r = s_probe_tcp(endpoint + strlen("tcp://"), wait_ms > 0 ? wait_ms : 0);
    if (r == -ECONNREFUSED)
        return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                               "%s is not running: no listener (connection "
                               "refused) at %s",
                               what, endpoint);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                               "%s cannot be reached at %s: %s", what, endpoint,
                               strerror(-r));
    return 0;
}

/* ---- the call ---------------------------------------------------------- */

static int s_zmq_error(cairn_error_t *err, const char *what)
{
    int e = errno ? errno : EIO;

    return cairn_error_set(err, -e, CAIRN_SYSTEM, "%s: %s", what,
                           zmq_strerror(e));
}

static int s_ensure_context(cairn_client_t *c, cairn_error_t *err)
{
    if (c->zctx)
        return 0;
    c->zctx = zmq_ctx_new();
    return c->zctx ? 0 : s_zmq_error(err, "zmq_ctx_new");
}

/* A CURVE client's attempt watches its own handshake: a server that
 * refuses our key says so (ZAP 400, libzmq's HANDSHAKE_FAILED_AUTH), and
 * waiting out the deadline would only hide it. Attached before the
 * connect, so no event is missed. NULL (no watch) on any failure. */
static void *s_watch_handshake(cairn_client_t *c, void *sock)
{
    static const int events = ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    char ep[64];
    void *mon;

    snprintf(ep, sizeof ep, "inproc://cairn-client-handshake-%p", sock);
    if (zmq_socket_monitor(sock, ep, events) < 0)
        return NULL;
    mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (mon && zmq_connect(mon, ep) == 0)
        return mon;
    if (mon)
        zmq_close(mon);
    zmq_socket_monitor(sock, NULL, 0);
    return NULL;
}

static int s_refused_key(const cairn_client_t *c, void *mon, cairn_error_t *err)
{
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1];
    cairn_frames_t f = { 0 };

    /* [event:u16 value:u32][endpoint]: only AUTH failures are watched */
    if (cairn_wire_recv(mon, &f, ZMQ_DONTWAIT) < 0)
        return 0;
    cairn_frames_free(&f);
    cairn_key_fingerprint(c->own.public_key, fp);
    return cairn_error_set(err, -EACCES, CAIRN_PERMISSION_DENIED,
                           "%s at %s refused this client's CURVE key (%s): "
                           "it admits only the keys of its cluster's nodes",
                           c->service, c->endpoint, fp);
}

/* Opens one attempt's DEALER, connected to the endpoint; as a CURVE
 * client, *ret_mon watches its handshake (NULL if it cannot). */
static int s_open_socket(cairn_client_t *c, void **ret_sock, void **ret_mon,
                         cairn_error_t *err)
{
    _cleanup_(s_zmq_closep) void *sock = zmq_socket(c->zctx, ZMQ_DEALER);
    int linger = 0, immediate = 0;

    if (!sock)
        return s_zmq_error(err, "zmq_socket");
    if (c->curve && cairn_curve_client(sock, c->server_key, &c->own, err) < 0)
        return -EINVAL;
    if (c->curve)
        *ret_mon = s_watch_handshake(c, sock);
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate) < 0 ||
        zmq_connect(sock, c->endpoint) < 0)
        return cairn_error_set(err, errno ? -errno : -EIO, CAIRN_UNAVAILABLE,
                               "cannot connect to %s at %s: %s", c->service,
                               c->endpoint, zmq_strerror(errno));
    *ret_sock = TAKE_PTR(sock);
    return 0;
}

/* Sends [Header][Request]. A full pipe (-EAGAIN) is not an error: the
 * attempt then just waits out its time and the next one resends. */
static int s_send_request(const cairn_client_t *c, void *sock,
                          const s_call_t *call, cairn_error_t *err)
{
    Cairn__Header hdr = CAIRN__HEADER__INIT;
    Cairn__User user = CAIRN__USER__INIT;
    uint64_t left = cairn_ms_left(call->end_ms);
    int r;

    hdr.version = CAIRN_WIRE_VERSION;
    hdr.request_id = call->request_id;
    hdr.source_node = c->source_node;
    hdr.service = c->service;
    hdr.type = call->type;
    hdr.deadline_ms = left > 0 ? left : 1;
    /* Believed by a server only over a CURVE connection from a member
     * node's key, which only root there reads: then it is the truth. */
    user.uid = (uint32_t)getuid();
    user.gid = (uint32_t)getgid();
    hdr.user = &user;
    r = cairn_wire_send(sock, &hdr, call->req, ZMQ_DONTWAIT);
    if (r == -EAGAIN)
        return 0;
    if (r == -EMSGSIZE)
        return cairn_error_set(err, r, CAIRN_TOO_LARGE,
                               "request to %s is over the frame size limit",
                               c->service);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM,
                               "cannot send to %s at %s: %s", c->service,
                               c->endpoint, strerror(-r));
    return 0;
}

/* Is this header the reply to our request? */
static bool s_header_matches(const void *data, size_t len, uint64_t id)
{
    Cairn__Header *hdr = NULL;
    bool ok;

    if (cairn_wire_decode_header(data, len, &hdr, NULL) < 0)
        return false;
    ok = hdr->is_reply && hdr->request_id == id;
    cairn__header__free_unpacked(hdr, NULL);
    return ok;
}

/* Looks at one received message. Returns 1 with *ret_reply set when it is
 * our reply, 0 when it is to be dropped (not ours, or not even a header we
 * can read), -EBADMSG when it is ours but the body does not decode. */
static int s_take_reply(const cairn_frames_t *f, const s_call_t *call,
                        ProtobufCMessage **ret_reply, cairn_error_t *err)
{
    ProtobufCMessage *reply = NULL;
    int r;

    if (f->n != 2 || f->truncated ||
        !s_header_matches(cairn_frames_data(f, 0), cairn_frames_size(f, 0),
                          call->request_id))
        return 0;
    r = cairn_wire_decode_body(call->reply_desc, cairn_frames_data(f, 1),
                               cairn_frames_size(f, 1), 0, &reply, err);
    if (r < 0)
        return r == -EMSGSIZE ? r : -EBADMSG;
    *ret_reply = reply;
    return 1;
}

/* Waits on sock until our reply arrives (0) or attempt_end passes
 * (-ETIMEDOUT); other negative values are errors that end the call. mon,
 * when not NULL, is s_watch_handshake's. */
static int s_wait_reply(const cairn_client_t *c, void *sock, void *mon,
                        const s_call_t *call, uint64_t attempt_end,
                        ProtobufCMessage **ret_reply, cairn_error_t *err)
{
    zmq_pollitem_t items[2] = { { .socket = sock, .events = ZMQ_POLLIN },
                                { .socket = mon, .events = ZMQ_POLLIN } };

    for (uint64_t left = cairn_ms_left(attempt_end); left > 0;
         left = cairn_ms_left(attempt_end)) {
        cairn_frames_t frames = { 0 };
        int r;

        r = zmq_poll(items, mon ? 2 : 1, (long)left);
        if (r < 0 && errno != EINTR)
            return s_zmq_error(err, "zmq_poll");
        if (r > 0 && mon && (items[1].revents & ZMQ_POLLIN) &&
            (r = s_refused_key(c, mon, err)) < 0)
            return r;
        if (r <= 0 || !(items[0].revents & ZMQ_POLLIN))
            continue;
        r = cairn_wire_recv(sock, &frames, ZMQ_DONTWAIT);
        if (r == -EAGAIN || r == -EINTR)
            continue;
        if (r < 0)
            return cairn_error_set(err, r, CAIRN_SYSTEM, "receive: %s",
                                   strerror(-r));
        r = s_take_reply(&frames, call, ret_reply, err);
        cairn_frames_free(&frames);
        if (r != 0)
            return r < 0 ? r : 0;
    }
    return -ETIMEDOUT;
}

/* One attempt: new socket, send, wait until attempt_end. */
static int s_attempt(cairn_client_t *c, const s_call_t *call,
                     uint64_t attempt_end, ProtobufCMessage **ret_reply,
                     cairn_error_t *err)
{
    void *sock = NULL, *mon = NULL;
    int r;

    r = s_open_socket(c, &sock, &mon, err);
    if (r == 0)
        r = s_send_request(c, sock, call, err);
    if (r == 0)
        r = s_wait_reply(c, sock, mon, call, attempt_end, ret_reply, err);
    if (mon) {
        zmq_socket_monitor(sock, NULL, 0);
        zmq_close(mon);
    }
    if (sock)
        zmq_close(sock);
    return r;
}

/* The Reply's `cairn.Status status = 1`, or NULL when absent. */
static const Cairn__Status *s_reply_status(const ProtobufCMessage *reply)
{
    const ProtobufCFieldDescriptor *fd;

    fd = protobuf_c_message_descriptor_get_field(reply->descriptor, 1);
    if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE ||
        fd->label == PROTOBUF_C_LABEL_REPEATED ||
        fd->descriptor != &cairn__status__descriptor)
        return NULL;
    return *(Cairn__Status *const *)((const char *)reply + fd->offset);
}

/* 0 for a reply whose status is missing or OK, else -EREMOTEIO with the
 * service's code and message in err. */
static int s_check_status(const cairn_client_t *c,
                          const ProtobufCMessage *reply, cairn_error_t *err)
{
    const Cairn__Status *st = s_reply_status(reply);

    if (!st || st->code == CAIRN__STATUS_CODE__STATUS_OK)
        return 0;
    if (st->message && *st->message)
        return cairn_error_set(err, -EREMOTEIO, (int)st->code, "%s",
                               st->message);
    return cairn_error_set(err, -EREMOTEIO, (int)st->code, "%s: %s",
                           c->service, cairn_code_name((int)st->code));
}

/* Runs the attempts; returns 0 with *ret_reply or a negative errno. */
static int s_run(cairn_client_t *c, const s_call_t *call,
                 ProtobufCMessage **ret_reply, cairn_error_t *err)
{
    uint64_t slice = (uint64_t)c->timeout_ms / (1 + (uint64_t)c->retries);
    int r = -ETIMEDOUT;

    if (slice < 1)
        slice = 1;
    for (int i = 0; i <= c->retries && cairn_ms_left(call->end_ms) > 0; i++) {
        uint64_t attempt_end = cairn_now_ms() + slice;

        if (i == c->retries || attempt_end > call->end_ms)
            attempt_end = call->end_ms;
        c->last_attempts = i + 1;
        r = s_attempt(c, call, attempt_end, ret_reply, err);
        if (r != -ETIMEDOUT)
            return r;
    }
    return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                           "no reply from %s at %s within %d ms (%d attempts)",
                           c->service, c->endpoint, c->timeout_ms,
                           c->last_attempts);
}

int cairn_client_call(cairn_client_t *c, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *reply_desc,
                      ProtobufCMessage **ret_reply, cairn_error_t *err)
{
    s_call_t call = { .req = req, .reply_desc = reply_desc };
    ProtobufCMessage *reply = NULL;
    int r;

    if (!c || !req || !reply_desc || !ret_reply)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cairn_client_call: missing argument");
    c->last_attempts = 0;
    call.type = cairn_wire_oneof_case(req);
    if (call.type == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "request to %s has no message set", c->service);
    /* ipc only: see the design note on tcp */
    if (s_has_prefix(c->endpoint, "ipc://")) {
        r = cairn_endpoint_probe(c->endpoint, c->service, 0, err);
        if (r < 0)
            return r;
    }
    r = s_ensure_context(c, err);
    if (r < 0)
        return r;
    call.request_id = cairn_wire_new_request_id();
    call.end_ms = cairn_now_ms() + (uint64_t)c->timeout_ms;
    r = s_run(c, &call, &reply, err);
    if (r < 0)
        return r;
    r = s_check_status(c, reply, err);
    if (r < 0) {
        protobuf_c_message_free_unpacked(reply, NULL);
        return r;
    }
    *ret_reply = reply;
    return 0;
}
