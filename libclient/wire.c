/* wire.c - the one codec for Cairn messages (see cairn/wire.h).
 *
 * Decoding is done on plain buffers so it can be fuzzed without sockets.
 * The generic oneof helpers read protobuf-c's descriptors: every member of a
 * oneof shares one `quantifier_offset` holding the case (the field number),
 * which lets the skeleton dispatch any service's Request without knowing its
 * C type.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "util/cleanup.h"

/* Frames of this size or more are handed to libzmq without a copy; below
 * it the copy is cheaper than libzmq's separate allocation for the
 * message's bookkeeping. */
#define S_ZERO_COPY_MIN (64u * 1024u)

static const ProtobufCFieldDescriptor *s_first_oneof(const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            return &d->fields[i];
    return NULL;
}

static const ProtobufCFieldDescriptor *s_oneof_member(const ProtobufCMessageDescriptor *d,
                                                      uint32_t id)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if ((d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && d->fields[i].id == id)
            return &d->fields[i];
    return NULL;
}

uint32_t cairn_wire_oneof_case(const ProtobufCMessage *msg)
{
    const ProtobufCFieldDescriptor *f = s_first_oneof(msg->descriptor);
    if (!f)
        return 0;
    uint32_t c;
    memcpy(&c, (const char *)msg + f->quantifier_offset, sizeof(c));
    return c;
}

int cairn_wire_set_oneof_case(ProtobufCMessage *msg, uint32_t type)
{
    const ProtobufCFieldDescriptor *f = s_oneof_member(msg->descriptor, type);
    if (!f)
        return -EINVAL;
    memcpy((char *)msg + f->quantifier_offset, &type, sizeof(type));
    return 0;
}

/* protobuf-c refuses field number 0, which no message may carry, only
 * when the tag is one byte: written in two (0x82 0x00) it is kept as an
 * unknown field, and the message packs back into bytes that no longer
 * decode. True when m, or a message in it, holds such a field. */
static bool s_has_field_zero(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        /* A message field's members: one pointer, or an array of n. */
        ProtobufCMessage *const *subs =
            (ProtobufCMessage *const *)(base + f->offset);
        size_t n = 1;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            subs = *(ProtobufCMessage *const *const *)subs;
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            n = *(const uint32_t *)(base + f->quantifier_offset) == f->id;
        }
        for (size_t k = 0; k < n; k++)
            if (subs[k] && s_has_field_zero(subs[k]))
                return true;
    }
    return false;
}

int cairn_wire_decode_header(const void *data, size_t len, Cairn__Header **ret,
                             cairn_error_t *err)
{
    if (len > CAIRN_WIRE_MAX_HEADER)
        return cairn_error_set(err, -EMSGSIZE, CAIRN_TOO_LARGE,
                               "header frame of %zu bytes is over the limit of %u",
                               len, CAIRN_WIRE_MAX_HEADER);
    Cairn__Header *h = cairn__header__unpack(NULL, len, data);
    if (h && s_has_field_zero(&h->base)) {
        cairn__header__free_unpacked(h, NULL);
        h = NULL;
    }
    if (!h)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "header frame of %zu bytes does not decode", len);
    /* A reply header echoes the service: with a name near the frame limit
     * it would be over it, and the asker could not read the answer. */
    if (h->service && strlen(h->service) > CAIRN_WIRE_MAX_SERVICE) {
        size_t n = strlen(h->service);
        cairn__header__free_unpacked(h, NULL);
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "header names a service of %zu bytes (limit %u)",
                               n, CAIRN_WIRE_MAX_SERVICE);
    }
    if (h->version != CAIRN_WIRE_VERSION) {
        uint32_t v = h->version;
        cairn__header__free_unpacked(h, NULL);
        return cairn_error_set(err, -EPROTO, CAIRN_BAD_VERSION,
                               "protocol version %u is not supported (this side speaks %u)",
                               v, CAIRN_WIRE_VERSION);
    }
    *ret = h;
    return 0;
}

/* Checks that msg's oneof case is `expect`; on mismatch fills err. */
static int s_check_case(const ProtobufCMessage *msg, uint32_t expect, cairn_error_t *err)
{
    uint32_t got = cairn_wire_oneof_case(msg);
    if (got == expect)
        return 0;
    if (got == 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "header says type %u but the %s body carries no message",
                               expect, msg->descriptor->short_name);
    return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                           "header says type %u but the %s body carries type %u",
                           expect, msg->descriptor->short_name, got);
}

int cairn_wire_decode_body(const ProtobufCMessageDescriptor *desc,
                           const void *data, size_t len, uint32_t expect_type,
                           ProtobufCMessage **ret, cairn_error_t *err)
{
    if (len > CAIRN_WIRE_MAX_FRAME)
        return cairn_error_set(err, -EMSGSIZE, CAIRN_TOO_LARGE,
                               "body frame of %zu bytes is over the limit of %u",
                               len, CAIRN_WIRE_MAX_FRAME);
    if (expect_type != 0 && !s_oneof_member(desc, expect_type))
        return cairn_error_set(err, -EBADMSG, CAIRN_UNKNOWN_TYPE,
                               "message type %u is not a %s", expect_type,
                               desc->short_name);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
    if (m && s_has_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (!m)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "%s body of %zu bytes does not decode",
                               desc->short_name, len);
    if (expect_type != 0) {
        int r = s_check_case(m, expect_type, err);
        if (r < 0) {
            protobuf_c_message_free_unpacked(m, NULL);
            return r;
        }
    }
    *ret = m;
    return 0;
}

int cairn_wire_pack(const ProtobufCMessage *msg, uint8_t **ret_buf, size_t *ret_len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > CAIRN_WIRE_MAX_FRAME)
        return -EMSGSIZE;
    _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    if (protobuf_c_message_pack(msg, buf) != n)
        return -EINVAL;
    *ret_buf = TAKE_PTR(buf);
    *ret_len = n;
    return 0;
}

void cairn_wire_reply_header(const Cairn__Header *req, uint32_t source_node,
                             Cairn__Header *hdr)
{
    cairn__header__init(hdr);
    hdr->version = CAIRN_WIRE_VERSION;
    hdr->source_node = source_node;
    hdr->is_reply = 1;
    if (req) {
        hdr->request_id = req->request_id;
        hdr->service = req->service;   /* borrowed: hdr lives no longer than req */
        hdr->type = req->type;
    }
}

static void s_free_frame(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends one packed message as a frame; `more` adds ZMQ_SNDMORE. A large
 * frame (an image chunk) is handed to libzmq as it is, freed by libzmq
 * once sent: zmq_send would copy it once more into a buffer of its own,
 * which for a 1 MiB chunk costs a pass over memory and, in a freshly
 * allocated buffer, a page fault per page. */
static int s_send_packed(void *zsock, const ProtobufCMessage *m, int flags, bool more)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    int r = cairn_wire_pack(m, &buf, &len);
    if (r < 0)
        return r;
    flags |= more ? ZMQ_SNDMORE : 0;
    if (len < S_ZERO_COPY_MIN) {
        r = zmq_send(zsock, buf, len, flags);
        return r < 0 ? -errno : 0;   /* evaluated before buf is freed */
    }
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, buf, len, s_free_frame, NULL) < 0)
        return -errno;
    TAKE_PTR(buf);                   /* the message owns it now */
    if (zmq_msg_send(&msg, zsock, flags) < 0) {
        r = -errno;
        zmq_msg_close(&msg);         /* frees buf */
        return r;
    }
    return 0;
}

int cairn_wire_send(void *zsock, const Cairn__Header *hdr,
                    const ProtobufCMessage *body, int flags)
{
    /* Pack both first so a body that is too large fails before any frame
     * leaves (a half-sent multipart would confuse the peer). */
    if (protobuf_c_message_get_packed_size(body) > CAIRN_WIRE_MAX_FRAME)
        return -EMSGSIZE;
    int r = s_send_packed(zsock, &hdr->base, flags, true);
    if (r < 0)
        return r;
    return s_send_packed(zsock, body, flags, false);
}

int cairn_wire_send_error(void *zsock, const Cairn__Header *req,
                          uint32_t source_node, int code, const char *message,
                          int flags)
{
    Cairn__Header hdr;
    cairn_wire_reply_header(req, source_node, &hdr);
    Cairn__Status st = CAIRN__STATUS__INIT;
    st.code = (Cairn__StatusCode)code;
    st.message = (char *)(message ? message : "");
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;
    er.status = &st;
    return cairn_wire_send(zsock, &hdr, &er.base, flags);
}

int cairn_wire_recv(void *zsock, cairn_frames_t *ret, int flags)
{
    zmq_msg_t *msgs = calloc(CAIRN_WIRE_MAX_PARTS, sizeof(zmq_msg_t));
    if (!msgs)
        return -ENOMEM;
    memset(ret, 0, sizeof(*ret));
    ret->msgs = msgs;
    for (;;) {
        zmq_msg_t scratch, *m = ret->n < CAIRN_WIRE_MAX_PARTS ? &msgs[ret->n] : &scratch;
        zmq_msg_init(m);
        /* After the first frame the rest are already queued: never block. */
        if (zmq_msg_recv(m, zsock, ret->n == 0 && !ret->truncated ? flags : 0) < 0) {
            int e = errno;
            zmq_msg_close(m);
            cairn_frames_free(ret);
            return -e;
        }
        bool more = zmq_msg_more(m);
        if (m == &scratch) {
            zmq_msg_close(m);
            ret->truncated = true;
        } else {
            ret->n++;
        }
        if (!more)
            return 0;
    }
}

const void *cairn_frames_data(const cairn_frames_t *f, size_t i)
{
    if (i >= f->n)
        return NULL;
    return zmq_msg_data(&((zmq_msg_t *)f->msgs)[i]);
}

size_t cairn_frames_size(const cairn_frames_t *f, size_t i)
{
    if (i >= f->n)
        return 0;
    return zmq_msg_size(&((zmq_msg_t *)f->msgs)[i]);
}

const char *cairn_frames_property(const cairn_frames_t *f, size_t i,
                                  const char *name)
{
    if (!f || i >= f->n || !name)
        return NULL;
    return zmq_msg_gets(&((zmq_msg_t *)f->msgs)[i], name);
}

void cairn_frames_free(cairn_frames_t *f)
{
    if (!f || !f->msgs)
        return;
    zmq_msg_t *msgs = f->msgs;
    for (size_t i = 0; i < f->n; i++)
        zmq_msg_close(&msgs[i]);
    free(msgs);
    memset(f, 0, sizeof(*f));
}

uint64_t cairn_wire_new_request_id(void)
{
    /* Process-wide by design: ids must be unique across every client of the
     * process. High 40 bits random per process, low 24 bits a counter. */
    static _Atomic uint64_t next;
    uint64_t cur = atomic_load(&next);
    if (cur == 0) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = (uint64_t)(uintptr_t)&seed ^ ((uint64_t)getpid() << 32);
        seed = (seed << 24) | 1;
        atomic_compare_exchange_strong(&next, &cur, seed);
    }
    uint64_t id = atomic_fetch_add(&next, 1);
    return id ? id : atomic_fetch_add(&next, 1);
}
