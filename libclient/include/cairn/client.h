/* cairn/client.h - request/reply to a Cairn service, with deadline and retries.
 *
 * One client talks to one service at one endpoint (ipc:// for the local
 * node, tcp:// for a remote one). cairn_client_call() sends a Request and
 * waits for the matching Reply, lazy-pirate style: a DEALER socket, a poll
 * with a per-attempt timeout, and on timeout the socket is closed and
 * reopened and the *same* request id is sent again (servers answer a
 * retried id from their reply cache, so retries are idempotent). Replies
 * with another request id (late answers to an earlier attempt) are dropped.
 *
 * The total deadline is split evenly over 1 + retries attempts. No call
 * blocks longer than the deadline. An ipc:// endpoint with no socket file,
 * or a socket file nobody listens on (a daemon that died and left it), is
 * not a slow server: the call fails at once (cairn_endpoint_probe).
 */
#ifndef CAIRN_CLIENT_H
#define CAIRN_CLIENT_H

#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_CLIENT_DEFAULT_TIMEOUT_MS 3000
#define CAIRN_CLIENT_DEFAULT_RETRIES 2

typedef struct cairn_client cairn_client_t;
struct cairn_keypair;   /* cairn/security.h */

/* Whether `service` listens at endpoint, found without sending it anything
 * -- the one liveness probe of libcairn and the CLI.
 *   ipc://PATH (or ipc://@NAME, abstract): one connect(), answered by the
 *     kernel at once: -ENOENT no socket file (the service is not running
 *     here), -ECONNREFUSED a socket file with no listener (a daemon that
 *     died and left it, or a file that is not a socket);
 *   tcp://ADDRESS:PORT with a numeric address: a non-blocking connect()
 *     waited on for at most wait_ms: -ECONNREFUSED, -EHOSTUNREACH or
 *     -ENETUNREACH when the port is closed or cannot be reached; with
 *     wait_ms 0, only what the kernel knows at once;
 * 0 otherwise: something listens, the connect is still pending after
 * wait_ms (a slow or filtered network: the request itself will tell), or
 * the endpoint is not one this can probe (inproc://, a host name, a
 * malformed one: cairn_client_new says so). On failure err has code
 * UNAVAILABLE and a message naming service, the socket or address and the
 * cause ("no listener (connection refused)"). */
int cairn_endpoint_probe(const char *endpoint, const char *service, int wait_ms,
                         cairn_error_t *err);

/* Creates a client for `service` ("clusterd", ...) at `endpoint`. Nothing
 * is connected until the first call. Returns NULL with errno set (EINVAL for
 * a malformed endpoint, ENOMEM). The caller owns the client. */
cairn_client_t *cairn_client_new(const char *endpoint, const char *service);

/* Closes the socket and frees; accepts NULL; returns NULL. */
cairn_client_t *cairn_client_free(cairn_client_t *c);

/* Total deadline of one call in ms (> 0); default 3000. */
void cairn_client_set_timeout(cairn_client_t *c, int timeout_ms);
/* Number of resends after the first attempt (>= 0); default 2. */
void cairn_client_set_retries(cairn_client_t *c, int retries);
/* Node id stamped in Header.source_node; default 0 (a local client). */
void cairn_client_set_source_node(cairn_client_t *c, uint32_t node);

/* Makes every connection of c a CURVE client (cairn/security.h) of the
 * server whose public key is server_public, with keypair own (copied).
 * For tcp:// endpoints of a cluster whose description says mode="curve".
 * A server that does not admit own's public key refuses the handshake,
 * and the call fails at once with -EACCES (code PERMISSION_DENIED, the
 * key's fingerprint in the message); a server that says nothing at all
 * (not a CURVE server) still ends in TIMEOUT. Every request also carries this process's uid and
 * gid (Header.user), which a server believes only over such an
 * authenticated connection. -EINVAL (INVALID_ARGUMENT) for a key that is
 * not a Z85 CURVE key. */
int cairn_client_set_curve(cairn_client_t *c, const char *server_public,
                           const struct cairn_keypair *own,
                           cairn_error_t *err);

/* Sends req (a service Request with its oneof set; Header.type is taken from
 * the oneof case) and waits for the reply, decoded as reply_desc.
 *
 * Returns 0 when a reply with STATUS_OK arrived: *ret_reply is then a newly
 * unpacked message the caller frees with protobuf_c_message_free_unpacked().
 * Returns -EREMOTEIO when the service answered with another status (err has
 * its code and message), -ETIMEDOUT when no reply came before the deadline
 * (code TIMEOUT), -ENOENT when an ipc endpoint's socket file does not exist
 * and -ECONNREFUSED when nobody listens on it (code UNAVAILABLE, at once:
 * the service is not running there; see cairn_endpoint_probe), -EBADMSG for
 * a reply that does not decode. *ret_reply is untouched on failure. */
int cairn_client_call(cairn_client_t *c, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *reply_desc,
                      ProtobufCMessage **ret_reply, cairn_error_t *err);

/* Sends req and returns without waiting for its reply: for a request
 * whose outcome the caller already knows (a release of what it holds).
 * Goes on the connection the next call uses, so the server sees the two in
 * order; it is marked Header.no_reply, so the server sends no reply (and
 * logs it if it fails anyway). 0 once queued, or
 * -EAGAIN (code BUSY: the queue is full; send it with cairn_client_call),
 * -ENOENT/-ECONNREFUSED (an ipc service not running), -EINVAL, -EMSGSIZE,
 * with err set. Nothing tells whether the server accepted it. */
int cairn_client_send(cairn_client_t *c, const ProtobufCMessage *req,
                      cairn_error_t *err);

/* Number of attempts the last call made (1 = no retry); for tests and
 * diagnostics. */
int cairn_client_last_attempts(const cairn_client_t *c);

#ifdef __cplusplus
}
#endif
#endif
