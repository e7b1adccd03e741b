/* cairn/wire.h - the one codec: Cairn messages to and from bytes and frames.
 *
 * A message is two ZeroMQ frames, [Header][Body] (proto/common.proto). This
 * module packs and unpacks them, enforces the version and the size limit,
 * checks that Header.type matches the body's oneof case, and builds the
 * ErrorReply a server sends for a frame it cannot accept. Every service and
 * libcairn go through here; nothing else calls protobuf_c pack/unpack on
 * wire data.
 *
 * The buffer functions (cairn_wire_decode_*) take no sockets so they can be
 * unit-tested and fuzzed; cairn_wire_send/recv are the thin zmq layer.
 */
#ifndef CAIRN_WIRE_H
#define CAIRN_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "cairn/error.h"
#include "common.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_WIRE_VERSION 1u
/* Largest frame accepted or sent (header or body). */
#define CAIRN_WIRE_MAX_FRAME (16u * 1024u * 1024u)

/* A subscriber that also subscribes to a topic of its own starting with
 * this gets one event on that topic ([topic][Header type 0][empty body])
 * once the service has taken its subscriptions: from then on it misses
 * nothing published. Subscribers to every topic see other subscribers'
 * markers and skip them. */
#define CAIRN_SYNC_TOPIC_PREFIX "cairn.sync."
/* Largest header frame: a Header is small; anything bigger is garbage. */
#define CAIRN_WIRE_MAX_HEADER 1024u
/* Longest Header.service (the description allows 32 bytes): a reply
 * echoes it, and the echo must stay under CAIRN_WIRE_MAX_HEADER. */
#define CAIRN_WIRE_MAX_SERVICE  64u

/* Returns the field number of the oneof case set in msg (the first oneof of
 * its descriptor), 0 if none is set or the message has no oneof. */
uint32_t cairn_wire_oneof_case(const ProtobufCMessage *msg);

/* Sets the oneof case of msg to `type` without touching the member; used by
 * code that builds a message generically. Returns -EINVAL if msg has no such
 * oneof member. */
int cairn_wire_set_oneof_case(ProtobufCMessage *msg, uint32_t type);

/* Unpacks a header frame. Checks size (<= CAIRN_WIRE_MAX_HEADER), decoding,
 * the service name's length (<= CAIRN_WIRE_MAX_SERVICE) and version. On success *ret is a newly allocated header the caller frees
 * with cairn__header__free_unpacked(*, NULL). On failure returns -EBADMSG
 * (DECODE_ERROR), -EPROTO (BAD_VERSION) or -EMSGSIZE (TOO_LARGE) with err set,
 * and *ret untouched. */
int cairn_wire_decode_header(const void *data, size_t len, Cairn__Header **ret,
                             cairn_error_t *err);

/* Unpacks a body frame of type desc (a service's Request or Reply). When
 * expect_type != 0, the message's oneof case must equal it (UNKNOWN_TYPE /
 * DECODE_ERROR otherwise). Caller frees *ret with
 * protobuf_c_message_free_unpacked(*ret, NULL). Errors as above. */
int cairn_wire_decode_body(const ProtobufCMessageDescriptor *desc,
                           const void *data, size_t len, uint32_t expect_type,
                           ProtobufCMessage **ret, cairn_error_t *err);

/* Packs msg into a newly malloc'ed buffer; caller frees *ret_buf.
 * -EMSGSIZE if over CAIRN_WIRE_MAX_FRAME, -ENOMEM. */
int cairn_wire_pack(const ProtobufCMessage *msg, uint8_t **ret_buf,
                    size_t *ret_len);

/* Fills hdr (already initialised with CAIRN__HEADER__INIT or zeroed by the
 * caller) as a reply to req: same request id, service and type, is_reply. */
void cairn_wire_reply_header(const Cairn__Header *req, uint32_t source_node,
                             Cairn__Header *hdr);

/* Sends [hdr][body] on a zmq socket; the caller has already sent any routing
 * frames with ZMQ_SNDMORE. flags may contain ZMQ_DONTWAIT. Returns 0 or
 * -errno (-EAGAIN when DONTWAIT and the pipe is full, -EHOSTUNREACH for a
 * ROUTER_MANDATORY peer that left). */
int cairn_wire_send(void *zsock, const Cairn__Header *hdr,
                    const ProtobufCMessage *body, int flags);

/* Sends [hdr][ErrorReply{code,message}] as the answer to req (req may be NULL
 * when the header itself did not decode: then request id 0 and type 0). */
int cairn_wire_send_error(void *zsock, const Cairn__Header *req,
                          uint32_t source_node, int code, const char *message,
                          int flags);

/* Receives all frames of one message on zsock (blocking unless flags has
 * ZMQ_DONTWAIT) into *ret, which the caller releases with cairn_frames_free()
 * (also after a failure: it is then empty). At most CAIRN_WIRE_MAX_PARTS
 * frames are kept; the rest are drained and `truncated` is set, so a server
 * still has the routing id to answer with. Frame sizes are checked by the
 * decode functions, not here. Returns 0 or -errno (-EAGAIN, -EINTR, -ETERM). */
#define CAIRN_WIRE_MAX_PARTS 8
typedef struct cairn_frames {
    size_t n;             /* number of frames kept */
    bool truncated;       /* more than CAIRN_WIRE_MAX_PARTS arrived */
    void *msgs;           /* zmq_msg_t[CAIRN_WIRE_MAX_PARTS], opaque to keep zmq.h out */
} cairn_frames_t;
int cairn_wire_recv(void *zsock, cairn_frames_t *ret, int flags);
const void *cairn_frames_data(const cairn_frames_t *f, size_t i);
/* A metadata property of frame i as libzmq set it on receipt, never from
 * the peer's bytes: "Peer-Address" (for ipc, "<host>:<uid>:<gid>:<pid>"
 * from SO_PEERCRED), "User-Id" (what the ZAP handler answered for the
 * connection). NULL if absent; valid until cairn_frames_free. */
const char *cairn_frames_property(const cairn_frames_t *f, size_t i,
                                  const char *name);
size_t cairn_frames_size(const cairn_frames_t *f, size_t i);
void cairn_frames_free(cairn_frames_t *f);

/* A request id that is unique across clients and restarts: random high bits
 * seeded once per process, a counter in the low bits. */
uint64_t cairn_wire_new_request_id(void);

#ifdef __cplusplus
}
#endif
#endif
