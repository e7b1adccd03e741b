/* service.h - the daemon skeleton every Cairn service runs on.
 *
 * A service is a table of handlers keyed by message type plus a few
 * lifecycle callbacks; cairn_service_main() does the rest, the same way for
 * every daemon:
 *
 *   parse --config/--node -> load the description -> pick this node ->
 *   ops->start -> bind ROUTER on tcp://<address>:<port> and
 *   ipc://<rundir>/<name>.sock (ROUTER_MANDATORY, ROUTER_HANDOVER), PUB on
 *   <pub_port> and ipc://<rundir>/<name>.pub.sock if declared -> signalfd ->
 *   sd_notify READY -> loop.
 *
 * Requests: [routing id][Header][Request]. The skeleton decodes the header
 * (version, size), checks the service name and that Header.type is in the
 * table and equals the Request's oneof case, answers a retried request id
 * from a small reply cache, and only then calls the handler. Anything wrong
 * gets an ErrorReply with a Status and one log line; nothing crashes, nothing
 * is dropped silently.
 *
 * Signals: SIGTERM/SIGINT -> STOPPING, ops->stop, close, exit 0. SIGHUP ->
 * RELOADING, load the description again; if it fails to validate, or
 * ops->reload refuses it, the old one stays and the reason is logged; READY.
 * The watchdog is pinged at half of WATCHDOG_USEC when systemd asks for it.
 */
#ifndef CAIRN_SERVICE_H
#define CAIRN_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cairn/description.h"
#include "cairn/error.h"
#include "cairn/security.h"
#include "common.pb-c.h"
#include "loop.h"

typedef struct cairn_service cairn_service_t;
typedef struct cairn_request cairn_request_t;
typedef struct cairn_deferred cairn_deferred_t;

/* Handler return values. */
#define CAIRN_REPLY_NOW 0       /* send req's reply now (status OK unless failed) */
#define CAIRN_REPLY_DEFERRED 1  /* handler called cairn_request_defer(); answers later */

/* A handler. ctx is the service's own context (the `ctx` given to
 * cairn_service_main). It fills cairn_request_reply(req) -- the service's
 * Reply, already initialised -- by setting one oneof member and its case
 * (or calls cairn_request_fail). Memory for the reply's members comes from
 * cairn_request_alloc()/strdup() and is freed after the reply is sent.
 * A negative return is an internal error: INTERNAL status is sent. */
typedef int (*cairn_handler_fn)(void *ctx, cairn_request_t *req);

/* Who may send a request, checked by the skeleton before the handler
 * runs (the rule is stated once, in docs/security.md). A refusal is
 * PERMISSION_DENIED naming the request and why. */
typedef enum cairn_access {
    /* Root on this node (ipc, uid 0) or the user the daemon runs as, a
     * member node's daemon over CURVE (vouching for nobody, for root or
     * for that user), and -- only with security mode none, where the
     * network is trusted -- any tcp peer. The default. */
    CAIRN_ACCESS_ADMIN = 0,
    /* Any caller whose user is known: a local user (ipc, the kernel
     * says who) or a user a member node vouches for (CURVE). Not a tcp
     * peer in mode none: nobody vouches for it. The handler then checks
     * that the caller may act on the object (cairn_caller_may_act_on). */
    CAIRN_ACCESS_USER,
    /* Anyone who can reach the socket: read-only requests. */
    CAIRN_ACCESS_ANYONE,
} cairn_access_t;

typedef struct cairn_handler {
    uint32_t type;          /* Request oneof field number */
    const char *name;       /* for logs: "status", "nodes" */
    cairn_handler_fn fn;
    cairn_access_t access;  /* who may ask; 0 = CAIRN_ACCESS_ADMIN */
} cairn_handler_t;

/* Who sent a request, from what the kernel and the CURVE handshake say,
 * never from the message alone. */
typedef enum cairn_caller_kind {
    CAIRN_CALLER_LOCAL,    /* over ipc: uid, gid, pid from SO_PEERCRED */
    CAIRN_CALLER_NODE,     /* over tcp with CURVE: node from its key; uid
                            * and gid as that node vouches (Header.user),
                            * root when it vouches for nobody */
    CAIRN_CALLER_NETWORK,  /* over tcp in security mode none: unknown */
} cairn_caller_kind_t;

typedef struct cairn_caller {
    cairn_caller_kind_t kind;
    uint32_t node;         /* LOCAL: this node; NODE: the sender; NETWORK: 0 */
    bool has_user;         /* uid/gid known (LOCAL, NODE) */
    uint32_t uid;          /* the user the request is for */
    uint32_t gid;          /* their group */
    int32_t pid;           /* LOCAL: the connecting process, else 0 */
    char address[64];      /* peer address, for logs ("ipc", an IP) */
} cairn_caller_t;

/* The rule, stated once: root may act on anything; another user only on
 * what is theirs (owner_uid). False for a caller whose user is unknown. */
bool cairn_caller_may_act_on(const cairn_caller_t *c, uint32_t owner_uid);

/* One line naming the caller for messages and logs: "uid 1000 (pid 42)
 * on this node", "uid 0 on node 3", "an unauthenticated tcp peer at
 * 10.0.0.9". Writes into buf (size bytes) and returns it. */
const char *cairn_caller_describe(const cairn_caller_t *c, char *buf,
                                  size_t size);

typedef struct cairn_service_ops {
    const char *name;                                /* "clusterd" */
    const ProtobufCMessageDescriptor *request_desc;  /* the service's Request */
    const ProtobufCMessageDescriptor *reply_desc;    /* the service's Reply */
    const cairn_handler_t *handlers;
    size_t n_handlers;
    /* After the description is loaded, the node chosen and its run dir
     * made, before binding. Builds the service's state in ctx. <0 aborts startup (exit 1). May be NULL. */
    int (*start)(cairn_service_t *svc, void *ctx);
    /* After READY has been sent, for work that needs the sockets bound
     * (contacting peers). May be NULL. */
    int (*ready)(cairn_service_t *svc, void *ctx);
    /* SIGHUP with a new, validated description. Return <0 with err set to
     * refuse it (the old one stays). The skeleton swaps descriptions only on
     * success. May be NULL (then any valid description is accepted). */
    int (*reload)(cairn_service_t *svc, void *ctx,
                  const cairn_description_t *newd, cairn_error_t *err);
    /* SIGTERM: drain (say goodbye to peers...). Sockets still open. May be NULL. */
    void (*stop)(cairn_service_t *svc, void *ctx);
} cairn_service_ops_t;

/* Runs a daemon: parses argv (--config FILE, --node ID|NAME, --help,
 * --version; the config defaults to $CAIRN_CONFIG then
 * /etc/cairn/cluster.xml, the node to the one named like the host), and
 * returns the process exit code: 0 after SIGTERM, 1 on a startup failure
 * (logged), 100 on wrong usage. */
int cairn_service_main(const cairn_service_ops_t *ops, void *ctx, int argc,
                       char **argv);

/* Accessors, valid from ops->start on. */
cairn_loop_t *cairn_service_loop(cairn_service_t *svc);
void *cairn_service_zmq_context(cairn_service_t *svc);
const cairn_description_t *cairn_service_description(cairn_service_t *svc);
const cairn_node_desc_t *cairn_service_node(cairn_service_t *svc);
uint64_t cairn_service_uptime_ms(cairn_service_t *svc);
/* "curve" or "none": what the sockets between nodes run (fixed from
 * startup; a reload that changes it is refused). */
const char *cairn_service_security_mode(cairn_service_t *svc);
/* This node's keypair in mode curve, NULL in mode none. */
const cairn_keypair_t *cairn_service_keypair(cairn_service_t *svc);

/* The service's metrics registry (services/common/metrics.h): declare
 * the service's own families from ops->start on; the skeleton's HTTP
 * server shows them with its own at /metrics when the description gives
 * the service a metrics-port (docs/metrics.md). */
typedef struct cairn_metrics cairn_metrics_t;
cairn_metrics_t *cairn_service_metrics(cairn_service_t *svc);

/* Publishes msg on the PUB socket with `topic` as first frame:
 * [topic][Header][msg]. -ENOTCONN if the service declares no pub port. */
int cairn_service_publish(cairn_service_t *svc, const char *topic,
                          uint32_t type, const ProtobufCMessage *msg);

/* Inside a handler. */
const Cairn__Header *cairn_request_header(cairn_request_t *req);
/* Who sent the request (valid until the handler returns; copy it to keep
 * it past a deferral). */
const cairn_caller_t *cairn_request_caller(cairn_request_t *req);
const ProtobufCMessage *cairn_request_body(cairn_request_t *req);
ProtobufCMessage *cairn_request_reply(cairn_request_t *req);
/* Zeroed memory freed after the reply is sent; NULL on ENOMEM. */
void *cairn_request_alloc(cairn_request_t *req, size_t size);
char *cairn_request_strdup(cairn_request_t *req, const char *s);
/* Makes the reply a failure with code and message; returns CAIRN_REPLY_NOW. */
int cairn_request_fail(cairn_request_t *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the request's routing id and header so the handler can answer after
 * it returns CAIRN_REPLY_DEFERRED. The caller owns the result and must pass
 * it to exactly one of the two functions below, which free it. */
cairn_deferred_t *cairn_request_defer(cairn_request_t *req);
/* Sends `reply` (a service Reply the caller still owns) with status OK. */
int cairn_deferred_reply(cairn_service_t *svc, cairn_deferred_t *d,
                         ProtobufCMessage *reply);
int cairn_deferred_fail(cairn_service_t *svc, cairn_deferred_t *d, int code,
                        const char *message);

#endif
