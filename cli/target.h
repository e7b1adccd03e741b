/* target.h - which node, and which endpoint, a `cairn` command talks to.
 *
 * Resolution order (docs/cli.md, "Target"):
 *   1. --endpoint URI: that endpoint, no description needed;
 *   2. the cluster description: --config FILE, else $CAIRN_CONFIG, else
 *      <run-base>/<cluster>/cluster.xml (run-base = cairn_run_base(): --run-base,
 *      $CAIRN_RUN_BASE, /run/cairn as root, else ${XDG_RUNTIME_DIR:-/tmp}/cairn;
 *      cluster = --cluster, $CAIRN_CLUSTER or "cairn"), else (not root,
 *      no run base named) /run/cairn/<cluster>/cluster.xml, else
 *      /etc/cairn/cluster.xml;
 *   3. the node: --node ID|NAME, else $CAIRN_NODE (a node that is down is
 *      then an error at once); else the first node (in document order)
 *      running the service whose socket file on this host has a listener,
 *      else the first one running it whose tcp port is not known to be
 *      closed (fall-over: a node that is down is skipped, not waited for);
 *   4. the endpoint: ipc://<rundir>/<service>.sock when that socket file
 *      exists (no listener on it: the node is down), else
 *      tcp://<address>:<port> -- after a short connect probe, so a port
 *      nobody listens on is "unavailable" at once, not a timeout;
 *   5. security: over tcp, when the description says <security
 *      mode="curve">, the client is a CURVE client pinning the node's
 *      public key, with the keypair of --key FILE, else $CAIRN_KEY, else
 *      the first node key file of the description this process can read;
 *      none readable is permission-denied at once. With --endpoint
 *      tcp://ADDR:PORT the description (when one is found) is read for
 *      that: its node at ADDR running the service on PORT gives the key.
 *      ipc needs none: the kernel says who connects.
 * Every probe is cairn_endpoint_probe (cairn/client.h); --endpoint is
 * probed the same way. Every client and subscriber of the CLI is made
 * here (cli_target_client, cli_target_secure_socket), so no request
 * leaves without the security its target needs.
 */
#ifndef CAIRN_CLI_TARGET_H
#define CAIRN_CLI_TARGET_H

#include <stdint.h>
#include <zmq.h>

#include "cairn/client.h"
#include "cairn/description.h"
#include "cairn/error.h"
#include "cairn/security.h"
#include "cli.h"

typedef struct cli_target {
    char *endpoint;      /* URI to connect to (owned) */
    uint32_t node_id;    /* the asked node, 0 if unknown (--endpoint) */
    char *node_name;     /* its name (owned), NULL if unknown */
    char *cluster;       /* cluster name (owned), NULL if unknown */
    char *description;   /* path of the description used (owned), or NULL */
    char *run_base;      /* the description's run base (owned), or NULL */
    char *pub_endpoint;  /* the service's PUB endpoint (owned): ipc://
                          * <rundir>/<service>.pub.sock when the endpoint is
                          * ipc, else tcp://<address>:<pub-port>; NULL if it
                          * publishes nothing or is unknown (--endpoint
                          * tcp://) */
    bool curve;          /* tcp in security mode curve: connect as a CURVE
                          * client of server_key with own */
    char server_key[CAIRN_KEY_LEN + 1];  /* the node's public key, or "" */
    cairn_keypair_t own; /* the client's keypair when curve; its secret is
                          * wiped by cli_target_clear() */
    uint32_t own_node;   /* the node whose key own is, 0 if none's */
} cli_target_t;

/* Finds and loads the cluster description by steps 2 above. On success *ret
 * is a description the caller frees. Errors: code unavailable when no file
 * is found (the message lists the paths tried and how to name one), else the
 * loader's error (invalid-config, system). */
int cli_target_load_description(const cli_ctx *ctx,
                                cairn_description_t **ret,
                                cairn_error_t *err);

/* Resolves the endpoint of `service` for ctx. timeout_ms bounds the tcp
 * probe. On success fills *ret (release with cli_target_clear()); on failure
 * *ret is untouched: usage (no such --node), unavailable (service not
 * declared, not run by the node, nobody listening -- at once, never after a
 * wait: the named node's or, with no node named, every node's), or a
 * description error. */
int cli_target_resolve(const cli_ctx *ctx, const char *service,
                       cli_target_t *ret, cairn_error_t *err);

/* Same, but when no node is named the pick skips node `avoid` (0: none),
 * and naming it is a usage error: for asking a node about another one that
 * is going away (node remove). */
int cli_target_resolve_other(const cli_ctx *ctx, const char *service,
                             uint32_t avoid, cli_target_t *ret,
                             cairn_error_t *err);

/* Same, for requests about this host's processes and files (checkpoint,
 * restart): when this host has nodes running the service, the default
 * falls over only among them, never to a node on another host. */
int cli_target_resolve_here(const cli_ctx *ctx, const char *service,
                            cli_target_t *ret, cairn_error_t *err);

/* Sends req to `service` at t (a client of cli_target_client, with
 * timeout_ms) and checks that the Reply (of reply_desc) is of oneof case
 * `expect` -- `what` names the request in the error. On success *ret is
 * the Reply (caller frees: protobuf_c_message_free_unpacked) and *ret_by
 * the answering node (cli_target_node_json; caller owns). The one request
 * path of the commands that ask a daemon once. */
int cli_target_call(const cli_ctx *ctx, const cli_target_t *t,
                    const char *service, int timeout_ms,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *reply_desc,
                    uint32_t expect, const char *what, ProtobufCMessage **ret,
                    json_t **ret_by, cairn_error_t *err);

/* The client's secret key file: --key, else $CAIRN_KEY; NULL for neither
 * (then the description's node key files are tried). */
const char *cli_target_key_path(const cli_ctx *ctx);

/* A client of `service` at t's endpoint, with timeout_ms, ctx's retries and,
 * when t->curve, t's CURVE keys: the one way the CLI makes a client. The
 * caller frees it (cairn_client_free). Errors: usage for an endpoint
 * libzmq cannot take, system when out of memory. */
int cli_target_client(const cli_ctx *ctx, const cli_target_t *t,
                      const char *service, int timeout_ms,
                      cairn_client_t **ret, cairn_error_t *err);

/* Makes zsock (a SUB of t's pub_endpoint) a CURVE client of t's node when
 * that endpoint is tcp in mode curve; nothing otherwise. Call before
 * connecting. */
int cli_target_secure_socket(const cli_target_t *t, void *zsock,
                             cairn_error_t *err);

/* The asked node as {"id":N,"name":"nN"} -- the "answered_by" field of a
 * result -- or JSON null when it is unknown (--endpoint). Caller owns the
 * reference; NULL only on ENOMEM. */
json_t *cli_target_node_json(const cli_target_t *t);

/* Receives one whole event [topic][Header][body] from a SUB socket into
 * frames[3]: 1 done (close them with cli_target_close_event), 0 nothing
 * yet, -EBADMSG (err set) for a message that is not three frames
 * (dropped), -errno on a zmq failure. */
int cli_target_recv_event(void *sub, zmq_msg_t frames[3], cairn_error_t *err);
void cli_target_close_event(zmq_msg_t frames[3]);

/* Frees what t owns and zeroes it; accepts a zeroed target. */
void cli_target_clear(cli_target_t *t);

#endif
