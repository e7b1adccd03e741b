/* client.c - request/reply to a Cairn service: the lazy pirate.
 *
 * Design (zguide ch. 4, "lazy pirate"). A client holds its endpoint, its
 * service name, its settings and one zmq context, created on the first call
 * and terminated in cairn_client_free(). An attempt sends [Header][Request]
 * on a DEALER (ZMQ_LINGER 0, ZMQ_IMMEDIATE off, so the request is queued
 * until the connection is up) and polls for the answer. When the attempt's
 * time is up the socket is closed -- dropping whatever it still queued --
 * and a new one resends the *same* request id, which the server answers
 * from its reply cache. Replies that are not ours (another request id, or
 * not marked is_reply) are dropped and the wait goes on within the same
 * attempt.
 *
 * Kept connection. The socket of an attempt that got its reply is kept for
 * the next call: a fresh socket costs a connection, a handshake and some
 * hundred system calls, more than the request itself on a local service.
 * Each socket has a monitor watching for the end of its connection
 * (ZMQ_EVENT_DISCONNECTED): a kept socket whose server went away is
 * closed and the call starts afresh (an ipc endpoint probed again, below),
 * and a disconnection while an attempt waits ends that attempt at once --
 * a server that died does not hold the caller until the deadline.
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
    void *kept;            /* the last answered attempt's socket, reused by
                            * the next call; NULL if none */
    void *kept_mon;        /* its monitor (s_watch), NULL if none */
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

static void s_unkeep(cairn_client_t *c);

/* Attempts made again because their connection ended, at most. */
#define S_MAX_RESETS 3

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
    /* Every other socket is closed when a call returns, and LINGER is 0,
     * so this does not block. */
    s_unkeep(c);
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

/* Every socket has a monitor: the end of its connection
 * (ZMQ_EVENT_DISCONNECTED: the server went away, the kept socket is stale)
 * and, for a CURVE client, its own handshake: a server that refuses our
 * key says so (ZAP 400, libzmq's HANDSHAKE_FAILED_AUTH), and waiting out
 * the deadline would only hide it. Attached before the connect, so no
 * event is missed. NULL (no watch) on any failure. */
static void *s_watch(cairn_client_t *c, void *sock)
{
    int events = ZMQ_EVENT_DISCONNECTED;
    char ep[64];
    void *mon;

    if (c->curve)
        events |= ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    snprintf(ep, sizeof ep, "inproc://cairn-client-monitor-%p", sock);
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

/* Stops a monitor and closes it; NULL-safe. */
static void s_unwatch(void *sock, void *mon)
{
    if (!mon)
        return;
    zmq_socket_monitor(sock, NULL, 0);
    zmq_close(mon);
}

/* Closes the kept socket, if any. */
static void s_unkeep(cairn_client_t *c)
{
    if (!c->kept)
        return;
    s_unwatch(c->kept, c->kept_mon);
    zmq_close(c->kept);
    c->kept = c->kept_mon = NULL;
}

/* Reads the monitor's pending events: -EACCES (err set) when the server
 * refused our CURVE key, -ECONNRESET when the connection ended, 0 when
 * nothing happened. */
static int s_monitor_event(const cairn_client_t *c, void *mon,
                           cairn_error_t *err)
{
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1];
    int r = 0;

    for (;;) {
        cairn_frames_t f = { 0 };
        uint16_t event = 0;

        /* [event:u16 value:u32][endpoint] */
        if (!mon || cairn_wire_recv(mon, &f, ZMQ_DONTWAIT) < 0)
            return r;
        if (f.n >= 1 && cairn_frames_size(&f, 0) >= sizeof(event))
            memcpy(&event, cairn_frames_data(&f, 0), sizeof(event));
        cairn_frames_free(&f);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            cairn_key_fingerprint(c->own.public_key, fp);
            return cairn_error_set(err, -EACCES, CAIRN_PERMISSION_DENIED,
                                   "%s at %s refused this client's CURVE key "
                                   "(%s): it admits only the keys of its "
                                   "cluster's nodes", c->service, c->endpoint,
                                   fp);
        }
        if (event == ZMQ_EVENT_DISCONNECTED)
            r = -ECONNRESET;
    }
}

/* Opens a DEALER connected to the endpoint, with its monitor in *ret_mon
 * (NULL if it cannot have one). An ipc endpoint is probed first, so a
 * service that is not running fails at once (see the design note). */
static int s_open_socket(cairn_client_t *c, void **ret_sock, void **ret_mon,
                         cairn_error_t *err)
{
    _cleanup_(s_zmq_closep) void *sock = NULL;
    int linger = 0, immediate = 0;

    /* ipc only: see the design note on tcp */
    if (s_has_prefix(c->endpoint, "ipc://")) {
        int r = cairn_endpoint_probe(c->endpoint, c->service, 0, err);
        if (r < 0)
            return r;
    }
    sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!sock)
        return s_zmq_error(err, "zmq_socket");
    if (c->curve && cairn_curve_client(sock, c->server_key, &c->own, err) < 0)
        return -EINVAL;
    *ret_mon = s_watch(c, sock);
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate) < 0 ||
        zmq_connect(sock, c->endpoint) < 0) {
        int e = errno ? errno : EIO;
        s_unwatch(sock, *ret_mon);
        *ret_mon = NULL;
        return cairn_error_set(err, -e, CAIRN_UNAVAILABLE,
                               "cannot connect to %s at %s: %s", c->service,
                               c->endpoint, zmq_strerror(e));
    }
    *ret_sock = TAKE_PTR(sock);
    return 0;
}

/* The socket for the next request: the kept one while its connection
 * lasts, else a new one. The caller owns *ret_sock and *ret_mon. */
static int s_take_socket(cairn_client_t *c, void **ret_sock, void **ret_mon,
                         cairn_error_t *err)
{
    if (c->kept && s_monitor_event(c, c->kept_mon, NULL) == 0) {
        *ret_sock = c->kept;
        *ret_mon = c->kept_mon;
        c->kept = c->kept_mon = NULL;
        return 0;
    }
    s_unkeep(c);
    *ret_mon = NULL;
    return s_open_socket(c, ret_sock, ret_mon, err);
}

/* Keeps sock (and its monitor) for the next request, or closes them. */
static void s_give_socket(cairn_client_t *c, void *sock, void *mon, bool keep)
{
    if (keep && !c->kept) {
        c->kept = sock;
        c->kept_mon = mon;
        return;
    }
    s_unwatch(sock, mon);
    zmq_close(sock);
}

/* Sends [Header][Request]. A full pipe (-EAGAIN) is not an error: the
 * attempt then just waits out its time and the next one resends. */
/* Sends call's [Header][Request] without blocking: 0 or -errno (-EAGAIN
 * when the pipe is full). */
static int s_send_frames(const cairn_client_t *c, void *sock,
                         const s_call_t *call, bool no_reply)
{
    Cairn__Header hdr = CAIRN__HEADER__INIT;
    Cairn__User user = CAIRN__USER__INIT;
    uint64_t left = cairn_ms_left(call->end_ms);

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
    hdr.no_reply = no_reply;
    return cairn_wire_send(sock, &hdr, call->req, ZMQ_DONTWAIT);
}

static int s_send_request(const cairn_client_t *c, void *sock,
                          const s_call_t *call, cairn_error_t *err)
{
    int r = s_send_frames(c, sock, call, false);
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
 * (-ETIMEDOUT); -ECONNRESET when the connection ended meanwhile (the
 * attempt is over at once); other negative values are errors that end the
 * call. mon, when not NULL, is s_watch's. */
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
        if (r <= 0)
            continue;
        if (items[0].revents & ZMQ_POLLIN) {
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
        /* the reply first: a server that answers and then goes away
         * (clusterd's leave) has answered */
        if (mon && (items[1].revents & ZMQ_POLLIN) &&
            (r = s_monitor_event(c, mon, err)) < 0)
            return r;
    }
    return -ETIMEDOUT;
}

/* One attempt: send on the kept socket or a new one, wait until
 * attempt_end; the socket is kept when the reply came. */
static int s_attempt(cairn_client_t *c, const s_call_t *call, int number,
                     uint64_t attempt_end, ProtobufCMessage **ret_reply,
                     cairn_error_t *err)
{
    void *sock = NULL, *mon = NULL;
    int r;

    r = s_take_socket(c, &sock, &mon, err);
    if (r < 0)
        return r;   /* nothing sent: not an attempt (a failed probe) */
    c->last_attempts = number;
    r = s_send_request(c, sock, call, err);
    if (r == 0)
        r = s_wait_reply(c, sock, mon, call, attempt_end, ret_reply, err);
    s_give_socket(c, sock, mon, r == 0);
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

/* Sleeps until cairn_now_ms() reaches end. */
static void s_sleep_until(uint64_t end)
{
    for (uint64_t left = cairn_ms_left(end); left > 0; left = cairn_ms_left(end))
        poll(NULL, 0, (int)(left > 1000 ? 1000 : left));
}

/* Runs the attempts; returns 0 with *ret_reply or a negative errno. */
static int s_run(cairn_client_t *c, const s_call_t *call,
                 ProtobufCMessage **ret_reply, cairn_error_t *err)
{
    uint64_t slice = (uint64_t)c->timeout_ms / (1 + (uint64_t)c->retries);
    int r = -ETIMEDOUT;

    if (slice < 1)
        slice = 1;
    int resets = 0;

    for (int i = 0; i <= c->retries && cairn_ms_left(call->end_ms) > 0; i++) {
        uint64_t attempt_end = cairn_now_ms() + slice;

        if (i == c->retries || attempt_end > call->end_ms)
            attempt_end = call->end_ms;
        r = s_attempt(c, call, i + 1, attempt_end, ret_reply, err);
        /* A connection that ended: the same attempt again at once on a
         * new socket (an ipc server that died fails its probe there; one
         * that restarted answers from its reply cache or afresh). A few
         * times only: a connection that keeps ending is a timeout. */
        if (r == -ECONNRESET && resets++ < S_MAX_RESETS) {
            i--;
            continue;
        }
        if (r == -ECONNRESET)   /* as before the kept socket: a timeout */
            s_sleep_until(attempt_end);
        else if (r != -ETIMEDOUT)
            return r;
    }
    return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                           "no reply from %s at %s within %d ms (%d attempts)",
                           c->service, c->endpoint, c->timeout_ms,
                           c->last_attempts);
}

/* Fills what a call is about (type, a new request id, its deadline) for
 * call->req, and makes the context. */
static int s_call_start(cairn_client_t *c, s_call_t *call, cairn_error_t *err)
{
    call->type = cairn_wire_oneof_case(call->req);
    if (call->type == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "request to %s has no message set", c->service);
    int r = s_ensure_context(c, err);
    if (r < 0)
        return r;
    call->request_id = cairn_wire_new_request_id();
    call->end_ms = cairn_now_ms() + (uint64_t)c->timeout_ms;
    return 0;
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
    r = s_call_start(c, &call, err);
    if (r < 0)
        return r;
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

int cairn_client_send(cairn_client_t *c, const ProtobufCMessage *req,
                      cairn_error_t *err)
{
    s_call_t call = { .req = req };
    void *sock = NULL, *mon = NULL;
    int r;

    if (!c || !req)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cairn_client_send: missing argument");
    r = s_call_start(c, &call, err);
    if (r < 0)
        return r;
    r = s_take_socket(c, &sock, &mon, err);
    if (r < 0)
        return r;
    r = s_send_frames(c, sock, &call, true);
    /* kept either way: closing it could drop the request still queued */
    s_give_socket(c, sock, mon, true);
    if (r == -EAGAIN)
        return cairn_error_set(err, r, CAIRN_BUSY, "the queue to %s at %s is "
                               "full", c->service, c->endpoint);
    if (r < 0)
        return cairn_error_set(err, r, r == -EMSGSIZE ? CAIRN_TOO_LARGE
                                                      : CAIRN_SYSTEM,
                               "cannot send to %s at %s: %s", c->service,
                               c->endpoint, strerror(-r));
    return 0;
}
