/* service-private.h - what the files of the daemon skeleton share: the
 * service and request structs, the reply cache, and the helpers one file
 * calls in another. service.h is the skeleton's interface; nothing outside
 * services/common/service*.c includes this file.
 *
 *  - service.c: the lifecycle (options, description and node, start,
 *    reload on SIGHUP, signals, watchdog, close) and the accessors;
 *  - service-request.c: a request's way from the ROUTER to its handler and
 *    back: header checks, the reply cache, dispatch, the handler's API and
 *    deferred answers;
 *  - service-trust.c: who may connect (the ZAP handler, CURVE keys, the
 *    handshake monitor) and who asked (callers, each handler's access);
 *  - service-socket.c: the sockets: binding the ROUTER and the XPUB on ipc
 *    and tcp, publishing events and the subscription markers;
 *  - service-metrics.c: the skeleton's metrics (requests, latency) and
 *    the HTTP server on the metrics-port (metrics.h).
 *
 * Ownership: the service (one, on cairn_service_main's stack) owns its
 * description, sockets, loop, run-dir socket paths and the reply cache;
 * a cache slot owns its packed reply, and points at (does not own) the
 * deferred request still to answer it; a deferred owns its routing id and
 * header; a request owns its header (until deferred), body, reply, arena
 * and failure message.
 */
#ifndef CAIRN_SERVICE_PRIVATE_H
#define CAIRN_SERVICE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/wire.h"
#include "metrics.h"
#include "service.h"

#define SERVICE_CACHE_SIZE 256
#define SERVICE_REFUSED_LOGGED 64        /* refused (address, key) pairs remembered */
#define SERVICE_ZAP_LOCAL_DOMAIN "cairn-local"   /* ipc: the peer's SO_PEERCRED */
#define SERVICE_ZAP_TCP_DOMAIN "cairn-tcp"       /* tcp in mode none: nobody */
#define SERVICE_RECV_BATCH 64    /* messages read per readable event */

/* One packed reply: the Header frame and the Body frame. */
typedef struct service_packed {
    uint8_t *hdr;        /* packed Header */
    size_t hdr_len;      /* its size */
    uint8_t *body;       /* packed Reply or ErrorReply */
    size_t body_len;     /* its size */
} service_packed_t;

/* A reply cache slot. */
typedef struct service_slot {
    uint64_t request_id;          /* 0 = empty */
    uint32_t type;                /* Header.type of the request */
    char who[72];                 /* service_caller_key of the asker: a
                                   * retry from anyone else runs afresh */
    service_packed_t reply;       /* empty while pending */
    cairn_deferred_t *pending;    /* deferred request not yet answered */
} service_slot_t;

struct cairn_deferred {
    uint8_t *rid;                 /* routing id of the (latest) asker */
    size_t rid_len;               /* its size */
    Cairn__Header *hdr;           /* the request header (owned) */
    long slot;                    /* cache slot, -1 if none/evicted */
    const char *type_name;        /* the handler's name, for the metrics */
    uint64_t started_ns;          /* when the request reached the handler */
};

/* Memory handed out by cairn_request_alloc. */
typedef struct service_chunk {
    struct service_chunk *next;   /* older chunk */
    max_align_t data[];           /* zeroed user memory */
} service_chunk_t;

struct cairn_request {
    cairn_service_t *svc;         /* owner */
    const uint8_t *rid;           /* routing id (in the received frame) */
    size_t rid_len;               /* its size */
    Cairn__Header *hdr;           /* decoded header (owned unless deferred) */
    ProtobufCMessage *body;       /* decoded Request (owned) */
    ProtobufCMessage *reply;      /* the service Reply being filled (owned) */
    service_chunk_t *chunks;      /* arena for the reply's members */
    int fail_code;                /* != 0 after cairn_request_fail */
    char *fail_msg;               /* its message (owned) */
    cairn_deferred_t *deferred;   /* set by cairn_request_defer */
    long slot;                    /* its reply cache slot, -1 if none */
    cairn_caller_t caller;        /* who sent it */
    const char *type_name;        /* its handler's name (metrics) */
    uint64_t started_ns;          /* cairn_now_ns() when the handler ran */
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
    void *zap;                        /* ZAP handler (REP, service-trust.c) */
    bool curve;                       /* security mode curve, fixed at start */
    cairn_keypair_t keys;             /* this node's keypair when curve */
    char refused[SERVICE_REFUSED_LOGGED][96]; /* refused peers already logged */
    size_t refused_next;              /* next entry of refused to reuse */
    void *monitor;                    /* handshake failures on the router */
    uint64_t hs_window;               /* second the last summary was logged */
    unsigned hs_failed;               /* failures not logged since */
    char *ipc_path;                   /* <rundir>/<name>.sock once bound */
    char *pub_ipc_path;               /* <rundir>/<name>.pub.sock once bound */
    cairn_loop_t *loop;               /* the loop (owned) */
    int sfd;                          /* signalfd, -1 before */
    uint64_t started_ms;              /* cairn_now_ms() at start */
    service_slot_t cache[SERVICE_CACHE_SIZE]; /* reply cache ring */
    size_t cache_next;                /* next slot to take */
    uint64_t bad_window;              /* second of the rate-limit window */
    unsigned bad_in_window;           /* bad-frame lines logged in it */
    unsigned bad_suppressed;          /* lines not logged in it */
    cairn_metrics_t *metrics;         /* the registry, its HTTP server (owned) */
    cairn_metric_t *m_requests;       /* cairn_requests_total{type,status} */
    cairn_metric_t *m_latency;        /* cairn_request_duration_seconds{type} */
};

/* ---- service-request.c ---- */

/* The ROUTER's loop callback: reads, checks, dispatches and answers a
 * batch of requests. */
int service_on_router(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata);
/* Empties the reply cache; a deferred still pending loses its slot. */
void service_cache_clear(cairn_service_t *svc);

/* ---- service-metrics.c ---- */

/* The registry with the skeleton's own families, before ops->start. */
int service_metrics_start(cairn_service_t *svc);
/* The HTTP server on the node's address and the service's metrics-port,
 * if it declares one; after the sockets are bound. */
int service_metrics_listen(cairn_service_t *svc);
/* One answered request: its handler's name (NULL: none found), the
 * status code it got, and since when it ran (0: it never reached a
 * handler, no latency). */
void service_metrics_request(cairn_service_t *svc, const char *type, int code,
                             uint64_t started_ns);

/* ---- service-trust.c ---- */

/* What tells two callers apart in the reply cache, written into buf. */
const char *service_caller_key(const cairn_caller_t *c, char *buf, size_t size);
/* Who sent frames f (header h): the ZAP handler's verdict on the
 * connection ("User-Id"), else an unauthenticated tcp peer. */
void service_caller_of(const cairn_service_t *svc, const cairn_frames_t *f,
                       const Cairn__Header *h, cairn_caller_t *c);
/* 0 when c may send a request of handler h, else PERMISSION_DENIED with
 * the reason in msg. */
int service_check_access(const cairn_service_t *svc, const cairn_handler_t *h,
                         const cairn_caller_t *c, char *msg, size_t len);
/* Mode curve: this node's keypair into svc->keys, checked against the
 * description; mode none: nothing. Logs a failure. */
int service_load_keys(cairn_service_t *svc);
/* Binds and watches the ZAP handler; before any socket that consults it. */
int service_bind_zap(cairn_service_t *svc);
/* Watches the router's failed handshakes (counted, logged now and then). */
int service_watch_handshakes(cairn_service_t *svc);

/* ---- service-socket.c ---- */

/* Binds the ROUTER (ipc, then tcp) and, with a pub port, the XPUB. */
int service_bind(cairn_service_t *svc);
/* The XPUB's loop callback: reads subscriptions, answers sync markers. */
int service_on_subscription(cairn_loop_t *loop, int fd, void *zsock,
                            short revents, void *userdata);

#endif
