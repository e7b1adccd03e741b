/* test-wire.c - the codec: round trips, and every way a frame can be bad
 * (truncated, garbage, oversized, wrong version, unknown type, header/body
 * disagreement), plus the zmq framing layer over an inproc pair. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "clusterd.pb-c.h"

static size_t s_pack_header(uint32_t version, uint32_t type, uint8_t *buf)
{
    Cairn__Header h = CAIRN__HEADER__INIT;
    h.version = version;
    h.request_id = 42;
    h.service = "clusterd";
    h.type = type;
    return cairn__header__pack(&h, buf);
}

Test(wire, header_round_trip)
{
    uint8_t buf[256];
    size_t n = s_pack_header(CAIRN_WIRE_VERSION, 2, buf);
    Cairn__Header *h = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header(buf, n, &h, &err), 0);
    cr_assert_eq(h->request_id, 42);
    cr_assert_str_eq(h->service, "clusterd");
    cr_assert_eq(h->type, 2);
    cairn__header__free_unpacked(h, NULL);
}

Test(wire, header_wrong_version)
{
    uint8_t buf[256];
    size_t n = s_pack_header(7, 1, buf);
    Cairn__Header *h = (Cairn__Header *)0x1;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header(buf, n, &h, &err), -EPROTO);
    cr_assert_eq(err.code, CAIRN_BAD_VERSION);
    cr_assert(strstr(err.message, "version 7") != NULL, "%s", err.message);
    cr_assert_eq(h, (Cairn__Header *)0x1, "ret untouched on failure");
}

Test(wire, header_missing_version_is_bad_version)
{
    /* An empty frame decodes as an all-default Header: version 0. */
    Cairn__Header *h = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header("", 0, &h, &err), -EPROTO);
    cr_assert_eq(err.code, CAIRN_BAD_VERSION);
}

Test(wire, header_truncated)
{
    uint8_t buf[256];
    size_t n = s_pack_header(CAIRN_WIRE_VERSION, 1, buf);
    int bad = 0;
    /* Cutting inside the service string must fail to decode. */
    for (size_t cut = 1; cut < n; cut++) {
        Cairn__Header *h = NULL;
        cairn_error_t err;
        int r = cairn_wire_decode_header(buf, cut, &h, &err);
        if (r == 0)
            cairn__header__free_unpacked(h, NULL);
        else {
            cr_assert(err.code == CAIRN_DECODE_ERROR || err.code == CAIRN_BAD_VERSION);
            bad++;
        }
    }
    cr_assert_gt(bad, 0);
    Cairn__Header *h = NULL;
    cairn_error_t err;
    /* cut in the middle of the "clusterd" string */
    cr_assert_eq(cairn_wire_decode_header(buf, n - 3, &h, &err), -EBADMSG);
    cr_assert_eq(err.code, CAIRN_DECODE_ERROR);
}

Test(wire, header_garbage)
{
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    Cairn__Header *h = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header(garbage, sizeof(garbage), &h, &err), -EBADMSG);
    cr_assert_eq(err.code, CAIRN_DECODE_ERROR);
}

Test(wire, header_oversized)
{
    size_t n = CAIRN_WIRE_MAX_HEADER + 1;
    uint8_t *buf = calloc(1, n);
    Cairn__Header *h = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header(buf, n, &h, &err), -EMSGSIZE);
    cr_assert_eq(err.code, CAIRN_TOO_LARGE);
    free(buf);
}

Test(wire, body_round_trip_and_oneof)
{
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__NodesRequest nr = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    cr_assert_eq(cairn_wire_oneof_case(&req.base), 0);
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    req.nodes = &nr;
    cr_assert_eq(cairn_wire_oneof_case(&req.base), 2);

    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert_eq(cairn_wire_pack(&req.base, &buf, &len), 0);
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        buf, len, 2, &m, &err), 0);
    cr_assert_eq(cairn_wire_oneof_case(m), 2);
    protobuf_c_message_free_unpacked(m, NULL);

    /* Header says status (1) but body carries nodes (2). */
    m = NULL;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        buf, len, 1, &m, &err), -EBADMSG);
    cr_assert_eq(err.code, CAIRN_DECODE_ERROR);
    cr_assert(strstr(err.message, "carries type 2") != NULL, "%s", err.message);
    cr_assert_null(m);
    free(buf);
}

Test(wire, body_unknown_type)
{
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        "", 0, 99, &m, &err), -EBADMSG);
    cr_assert_eq(err.code, CAIRN_UNKNOWN_TYPE);
}

Test(wire, body_empty_has_no_case)
{
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        "", 0, 1, &m, &err), -EBADMSG);
    cr_assert(strstr(err.message, "carries no message") != NULL, "%s", err.message);
}

Test(wire, body_garbage_and_oversized)
{
    const uint8_t garbage[] = { 0x0a, 0x80, 0x80, 0x80, 0x80, 0x08 };
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        garbage, sizeof(garbage), 0, &m, &err), -EBADMSG);
    cr_assert_eq(err.code, CAIRN_DECODE_ERROR);
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__request__descriptor,
                                        garbage, (size_t)CAIRN_WIRE_MAX_FRAME + 1, 0,
                                        &m, &err), -EMSGSIZE);
    cr_assert_eq(err.code, CAIRN_TOO_LARGE);
}

Test(wire, set_oneof_case)
{
    Cairn__Clusterd__Reply rep = CAIRN__CLUSTERD__REPLY__INIT;
    cr_assert_eq(cairn_wire_set_oneof_case(&rep.base, 3), 0);
    cr_assert_eq(rep.msg_case, CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY);
    cr_assert_eq(cairn_wire_set_oneof_case(&rep.base, 1), -EINVAL, "field 1 is status, not a oneof member");
}

Test(wire, error_reply_is_wire_compatible_with_service_reply)
{
    Cairn__Status st = CAIRN__STATUS__INIT;
    st.code = CAIRN__STATUS_CODE__STATUS_NOT_FOUND;
    st.message = "no such node";
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;
    er.status = &st;
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert_eq(cairn_wire_pack(&er.base, &buf, &len), 0);
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__reply__descriptor,
                                        buf, len, 0, &m, &err), 0);
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)m;
    cr_assert_not_null(rep->status);
    cr_assert_eq(rep->status->code, CAIRN__STATUS_CODE__STATUS_NOT_FOUND);
    cr_assert_str_eq(rep->status->message, "no such node");
    protobuf_c_message_free_unpacked(m, NULL);
    free(buf);
}

Test(wire, request_ids_unique_and_nonzero)
{
    uint64_t prev = cairn_wire_new_request_id();
    for (int i = 0; i < 10000; i++) {
        uint64_t id = cairn_wire_new_request_id();
        cr_assert_neq(id, 0);
        cr_assert_neq(id, prev);
        prev = id;
    }
}

Test(wire, zmq_send_recv_and_truncation)
{
    void *ctx = zmq_ctx_new();
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    cr_assert_eq(zmq_bind(a, "inproc://wire"), 0);
    cr_assert_eq(zmq_connect(b, "inproc://wire"), 0);

    Cairn__Header h = CAIRN__HEADER__INIT;
    h.version = CAIRN_WIRE_VERSION;
    h.request_id = 9;
    h.service = "clusterd";
    h.type = 1;
    cr_assert_eq(cairn_wire_send_error(b, &h, 3, CAIRN_BUSY, "later", 0), 0);
    cairn_frames_t f;
    cr_assert_eq(cairn_wire_recv(a, &f, 0), 0);
    cr_assert_eq(f.n, 2);
    cr_assert_not(f.truncated);
    Cairn__Header *rh = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_wire_decode_header(cairn_frames_data(&f, 0), cairn_frames_size(&f, 0), &rh, &err), 0);
    cr_assert(rh->is_reply);
    cr_assert_eq(rh->request_id, 9);
    cr_assert_eq(rh->source_node, 3);
    cairn__header__free_unpacked(rh, NULL);
    cairn_frames_free(&f);

    /* Twelve frames: eight kept, the rest drained. */
    for (int i = 0; i < 12; i++)
        zmq_send(b, "x", 1, i < 11 ? ZMQ_SNDMORE : 0);
    cr_assert_eq(cairn_wire_recv(a, &f, 0), 0);
    cr_assert_eq(f.n, CAIRN_WIRE_MAX_PARTS);
    cr_assert(f.truncated);
    cairn_frames_free(&f);
    cairn_frames_free(&f); /* safe twice */

    cr_assert_eq(cairn_wire_recv(a, &f, ZMQ_DONTWAIT), -EAGAIN);
    cairn_frames_free(&f);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}
