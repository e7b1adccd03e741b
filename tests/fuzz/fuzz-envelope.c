/* fuzz-envelope.c - fuzz target: the envelope, [Header][Body], as the
 * daemon skeleton and a client take it apart (libclient/wire.c).
 *
 * Input: a u16 little-endian header length, that many bytes of Header
 * frame, the rest the Body frame. An input too short for its length is
 * one lone frame, which the skeleton decodes as a header and refuses.
 *
 * Design. Each input goes the skeleton's way (services/common/service.c,
 * s_handle): the header decodes or is refused; a request for a known
 * service with a type in its Request decodes its body with that type as
 * the codec's check. Whatever is refused is answered the way s_reject
 * answers -- reply header + ErrorReply -- and that answer must decode on
 * the client's side, as the service's Reply, with the same code and
 * message. A header that says it is a reply goes the client's way: its
 * body decodes as an ErrorReply and as the service's Reply. Every decoded
 * message must survive a round trip (fuzz_check_round_trip), and every
 * refusal must carry one of the codec's documented errors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/wire.h"
#include "fuzz.h"

/* The documented failures of the decode functions (cairn/wire.h). */
static void s_check_refusal(int r, const cairn_error_t *err)
{
    FUZZ_CHECK(r == -EBADMSG || r == -EPROTO || r == -EMSGSIZE);
    FUZZ_CHECK(err->code == CAIRN_DECODE_ERROR ||
               err->code == CAIRN_BAD_VERSION || err->code == CAIRN_TOO_LARGE ||
               err->code == CAIRN_UNKNOWN_TYPE);
    FUZZ_CHECK(memchr(err->message, '\0', sizeof(err->message)) != NULL);
}

/* The client's view of a reply body: decodes as desc (expect no type);
 * with want_code >= 0 its status must be (want_code, want_msg). */
static void s_client_take(const ProtobufCMessageDescriptor *desc,
                          const uint8_t *body, size_t len, int want_code,
                          const char *want_msg)
{
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    int r = cairn_wire_decode_body(desc, body, len, 0, &m, &err);

    if (r < 0) {
        FUZZ_CHECK(want_code < 0);
        s_check_refusal(r, &err);
        return;
    }
    fuzz_check_round_trip(m, 0);
    if (want_code >= 0) {
        /* Field 1 of every Reply is the Status (proto/common.proto). */
        Cairn__ErrorReply *as_error = (Cairn__ErrorReply *)m;
        FUZZ_CHECK(desc->fields[0].id == 1);
        FUZZ_CHECK(as_error->status != NULL);
        FUZZ_CHECK((int)as_error->status->code == want_code);
        FUZZ_CHECK(strcmp(as_error->status->message, want_msg) == 0);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

/* What s_reject sends for a refused request (cairn_wire_send_error's two
 * frames, packed), then checked the way the asker's client reads it. */
static void s_reject(const fuzz_service_t *svc, const Cairn__Header *req,
                     int code, const char *message)
{
    Cairn__Header hdr, *back = NULL;
    Cairn__Status st = CAIRN__STATUS__INIT;
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;
    uint8_t *hbuf = NULL, *bbuf = NULL;
    size_t hlen = 0, blen = 0;

    cairn_wire_reply_header(req, 1, &hdr);
    st.code = (Cairn__StatusCode)code;
    st.message = (char *)message;
    er.status = &st;
    FUZZ_CHECK(cairn_wire_pack(&hdr.base, &hbuf, &hlen) == 0);
    FUZZ_CHECK(cairn_wire_pack(&er.base, &bbuf, &blen) == 0);
    /* A header that decoded came from <= CAIRN_WIRE_MAX_HEADER bytes and
     * its echo is no longer: the answer always reaches the asker. */
    FUZZ_CHECK(cairn_wire_decode_header(hbuf, hlen, &back, NULL) == 0);
    FUZZ_CHECK(back->is_reply);
    FUZZ_CHECK(back->request_id == (req ? req->request_id : 0));
    cairn__header__free_unpacked(back, NULL);
    s_client_take(&cairn__error_reply__descriptor, bbuf, blen, code, message);
    if (svc)
        s_client_take(svc->reply_desc, bbuf, blen, code, message);
    free(hbuf);
    free(bbuf);
}

/* The skeleton's checks after the header decoded (s_check_header), then
 * the body decoded as the service's Request of type h->type. */
static void s_serve(const Cairn__Header *h, const uint8_t *body, size_t len)
{
    const fuzz_service_t *svc = fuzz_service_find(h->service);
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    int r;

    if (h->is_reply || !svc || h->type == 0) {
        s_reject(svc, h,
                 h->type == 0 && svc ? CAIRN_UNKNOWN_TYPE
                                     : CAIRN_INVALID_ARGUMENT,
                 "refused by the header check");
        return;
    }
    r = cairn_wire_decode_body(svc->request_desc, body, len, h->type, &m, &err);
    if (r < 0) {
        s_check_refusal(r, &err);
        s_reject(svc, h, err.code, err.message);
        return;
    }
    fuzz_check_round_trip(m, h->type);
    protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hlen = size >= 2 ? (size_t)data[0] | (size_t)data[1] << 8 : 0;
    bool two_frames = size >= 2 && hlen <= size - 2;
    const uint8_t *head = two_frames ? data + 2 : data;
    const uint8_t *body = two_frames ? data + 2 + hlen : NULL;
    size_t body_len = two_frames ? size - 2 - hlen : 0;
    Cairn__Header *h = NULL;
    cairn_error_t err;

    if (!two_frames)
        hlen = size;
    int r = cairn_wire_decode_header(head, hlen, &h, &err);
    if (r < 0) {
        s_check_refusal(r, &err);
        s_reject(NULL, NULL, err.code, err.message);
        return 0;
    }
    fuzz_check_round_trip(&h->base, 0);
    if (!two_frames)
        s_reject(fuzz_service_find(h->service), h, CAIRN_DECODE_ERROR,
                 "expected 2 frames [header][body], got 1");
    else if (h->is_reply)
        s_client_take(&cairn__error_reply__descriptor, body, body_len, -1,
                      NULL);
    else
        s_serve(h, body, body_len);
    if (two_frames && h->is_reply && fuzz_service_find(h->service))
        s_client_take(fuzz_service_find(h->service)->reply_desc, body, body_len,
                      -1, NULL);
    cairn__header__free_unpacked(h, NULL);
    return 0;
}
