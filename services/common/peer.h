/* peer.h - asynchronous requests from a daemon to other nodes' services.
 *
 * A daemon must never block its loop waiting for a peer, so it cannot use
 * the blocking libcairn client. cairn_peers keeps one DEALER per peer node
 * (created on first use, registered in the service's loop, reconnecting by
 * itself when the peer restarts) and matches replies to requests by request
 * id. Each request has its own deadline; its callback runs exactly once,
 * from the loop: with the reply, or with an error code (TIMEOUT, a Status
 * from the peer, DECODE_ERROR).
 */
#ifndef CAIRN_PEER_H
#define CAIRN_PEER_H

#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "service.h"

typedef struct cairn_peers cairn_peers_t;

/* code == CAIRN_OK: reply is the decoded Reply, and the callee owns it (free
 * with protobuf_c_message_free_unpacked). Otherwise reply is NULL and
 * message says why (static or short-lived: copy it to keep it). */
typedef void (*cairn_peer_fn)(void *userdata, uint32_t node, int code,
                              const char *message, ProtobufCMessage *reply);

/* Requests go to `service` on peers; replies decode as reply_desc. NULL on
 * ENOMEM. The caller owns the result. */
cairn_peers_t *cairn_peers_new(cairn_service_t *svc, const char *service,
                               const ProtobufCMessageDescriptor *reply_desc);

/* Closes every connection. Pending requests are dropped without their
 * callbacks running (the daemon is stopping). NULL-safe; returns NULL. */
cairn_peers_t *cairn_peers_free(cairn_peers_t *p);

/* Sends req (a Request with its oneof set) to node at endpoint
 * ("tcp://addr:port"); if the node's endpoint changed, its connection is
 * replaced. Returns 0 and fn will run exactly once later, or -errno
 * (-EINVAL no oneof case, -EAGAIN peer queue full, -ENOMEM, -ENOKEY in
 * security mode curve when the description has no key for node) and fn
 * never runs. In mode curve the connection is a CURVE client pinning
 * node's key from the description, and is made anew when a reload
 * changed that key. The request goes as this node's daemon (root here). */
int cairn_peers_call(cairn_peers_t *p, uint32_t node, const char *endpoint,
                     const ProtobufCMessage *req, uint32_t timeout_ms,
                     cairn_peer_fn fn, void *userdata);

/* Same, on behalf of `as` (NULL: the daemon itself): its uid and gid go
 * in Header.user, which node believes because this node's key vouches
 * for them (docs/security.md, "trusted hosts"). For a request a local
 * user made here and that node carries out there. */
int cairn_peers_call_as(cairn_peers_t *p, uint32_t node, const char *endpoint,
                        const ProtobufCMessage *req, uint32_t timeout_ms,
                        const cairn_caller_t *as, cairn_peer_fn fn,
                        void *userdata);

/* Drops the connection to node (it left, was removed, or came back and
 * needs a fresh one). Safe inside any callback, including a reply from that
 * node. Its pending requests still end through their timeouts. */
void cairn_peers_forget(cairn_peers_t *p, uint32_t node);

/* Number of requests sent and of replies received, for benchmarks. */
uint64_t cairn_peers_sent(const cairn_peers_t *p);
uint64_t cairn_peers_received(const cairn_peers_t *p);

#endif
