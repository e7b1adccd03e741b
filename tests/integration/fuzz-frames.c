/* fuzz-frames - throws random and mutated frames at a live Cairn service
 * and checks that every single one is answered with a Status.
 *
 * usage: fuzz-frames ENDPOINT SERVICE COUNT [SEED]
 *
 * Each round sends one message on a DEALER (1 to 4 frames: pure garbage,
 * or a valid clusterd Status request with bytes flipped, truncated,
 * extended, its version or type changed, or its frames duplicated) and
 * waits up to 2 s for the answer. An answer must decode as a reply header
 * plus a Reply carrying a Status. A success Status is accepted only if the
 * frame was in fact a well-formed request -- judged here by protobuf-c
 * directly, not by the codec under test. A missing answer fails the run.
 * Finally a real Status request must still succeed. Prints one JSON line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "clusterd.pb-c.h"

typedef struct {
    uint8_t *data[4];
    size_t len[4];
    int n;
} s_msg_t;

static uint64_t s_rng;

static uint32_t s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t)(s_rng >> 11);
}

static size_t s_pack_valid_header(uint8_t *buf, const char *service, uint32_t type)
{
    Cairn__Header h = CAIRN__HEADER__INIT;
    h.version = CAIRN_WIRE_VERSION;
    h.request_id = ((uint64_t)s_rand() << 32) | s_rand() | 1;
    h.service = (char *)service;
    h.type = type;
    return cairn__header__pack(&h, buf);
}

/* Types 1-2 (status, nodes) are valid requests; 3-7 (ping, ping-req, join,
 * node-add, node-remove) are sent empty -- no sender, id 0 -- and must each
 * be refused with a Status. Leave (8) is never sent: it would stop the
 * daemon, as it should. */
static size_t s_pack_valid_body(uint8_t *buf, uint32_t type)
{
    Cairn__Clusterd__Request r = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__StatusRequest st = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__NodesRequest nd = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__PingRequest pg = CAIRN__CLUSTERD__PING_REQUEST__INIT;
    Cairn__Clusterd__PingReqRequest pr = CAIRN__CLUSTERD__PING_REQ_REQUEST__INIT;
    Cairn__Clusterd__JoinRequest jn = CAIRN__CLUSTERD__JOIN_REQUEST__INIT;
    Cairn__Clusterd__NodeAddRequest na = CAIRN__CLUSTERD__NODE_ADD_REQUEST__INIT;
    Cairn__Clusterd__NodeRemoveRequest rm = CAIRN__CLUSTERD__NODE_REMOVE_REQUEST__INIT;
    switch (type) {
    case 2: r.nodes = &nd; break;
    case 3: r.ping = &pg; break;
    case 4: r.ping_req = &pr; break;
    case 5: r.join = &jn; break;
    case 6: r.node_add = &na; break;
    case 7: r.node_remove = &rm; break;
    default: type = 1; r.status = &st; break;
    }
    r.msg_case = (Cairn__Clusterd__Request__MsgCase)type;
    return cairn__clusterd__request__pack(&r, buf);
}

static void s_set_frame(s_msg_t *m, int i, const uint8_t *src, size_t len)
{
    m->data[i] = malloc(len ? len : 1);
    if (len)
        memcpy(m->data[i], src, len);
    m->len[i] = len;
}

static void s_garbage(s_msg_t *m)
{
    m->n = 1 + (int)(s_rand() % 4);
    for (int i = 0; i < m->n; i++) {
        size_t len = s_rand() % 64;
        uint8_t buf[64];
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)s_rand();
        s_set_frame(m, i, buf, len);
    }
}

/* A valid request, then one mutation. */
static void s_mutated(s_msg_t *m, const char *service)
{
    uint8_t hdr[256], body[64];
    uint32_t type = 1 + s_rand() % 7;
    size_t hl = s_pack_valid_header(hdr, service, type);
    size_t bl = s_pack_valid_body(body, type);
    switch (s_rand() % 7) {
    case 0: /* flip bytes */
        for (int k = 0; k < 1 + (int)(s_rand() % 3); k++) {
            if (s_rand() & 1)
                hdr[s_rand() % hl] ^= (uint8_t)(1u << (s_rand() % 8));
            else if (bl)
                body[s_rand() % bl] ^= (uint8_t)(1u << (s_rand() % 8));
        }
        break;
    case 1: /* truncate */
        hl = s_rand() % (hl + 1);
        break;
    case 2: /* wrong type in header */
        hl = s_pack_valid_header(hdr, service, 3 + s_rand() % 1000);
        break;
    case 3: /* type/body disagreement */
        bl = s_pack_valid_body(body, type == 1 ? 2 : 1);
        break;
    case 6: /* an empty membership message, unmutated: must be refused */
        type = 3 + s_rand() % 5;
        hl = s_pack_valid_header(hdr, service, type);
        bl = s_pack_valid_body(body, type);
        break;
    case 4: /* wrong service */
        hl = s_pack_valid_header(hdr, "ghostd-nope", type);
        break;
    case 5: /* append junk to the body */
        body[bl++] = 0xff;
        body[bl++] = 0xff;
        break;
    }
    s_set_frame(m, 0, hdr, hl);
    s_set_frame(m, 1, body, bl);
    m->n = 2;
    if (s_rand() % 5 == 0) {          /* wrong frame count */
        if (s_rand() & 1)
            m->n = 1;
        else {
            s_set_frame(m, 2, body, bl);
            m->n = 3;
        }
    }
}

/* Independent oracle: is this message a request the service must accept? */
static bool s_is_valid_request(const s_msg_t *m, const char *service)
{
    if (m->n != 2 || m->len[0] > CAIRN_WIRE_MAX_HEADER)
        return false;
    Cairn__Header *h = cairn__header__unpack(NULL, m->len[0], m->data[0]);
    if (!h)
        return false;
    bool ok = h->version == CAIRN_WIRE_VERSION && !h->is_reply &&
              strcmp(h->service, service) == 0 && (h->type == 1 || h->type == 2);
    uint32_t type = h->type;
    cairn__header__free_unpacked(h, NULL);
    if (!ok)
        return false;
    Cairn__Clusterd__Request *r = cairn__clusterd__request__unpack(NULL, m->len[1], m->data[1]);
    if (!r)
        return false;
    ok = (uint32_t)r->msg_case == type;
    cairn__clusterd__request__free_unpacked(r, NULL);
    return ok;
}

static int s_send(void *sock, const s_msg_t *m)
{
    for (int i = 0; i < m->n; i++)
        if (zmq_send(sock, m->data[i], m->len[i], i + 1 < m->n ? ZMQ_SNDMORE : 0) < 0)
            return -errno;
    return 0;
}

/* Waits for one answer; returns its status code, or -1 none, -2 malformed. */
static int s_answer(void *sock)
{
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, 2000) <= 0)
        return -1;
    cairn_frames_t f;
    if (cairn_wire_recv(sock, &f, 0) < 0)
        return -1;
    int code = -2;
    Cairn__Header *h = NULL;
    if (f.n == 2 && cairn_wire_decode_header(cairn_frames_data(&f, 0), cairn_frames_size(&f, 0), &h, NULL) == 0) {
        Cairn__ErrorReply *er = cairn__error_reply__unpack(NULL, cairn_frames_size(&f, 1), cairn_frames_data(&f, 1));
        if (er && h->is_reply)
            code = er->status ? (int)er->status->code : 0;
        if (er)
            cairn__error_reply__free_unpacked(er, NULL);
        cairn__header__free_unpacked(h, NULL);
    }
    cairn_frames_free(&f);
    return code;
}

static void s_free(s_msg_t *m)
{
    for (int i = 0; i < 4; i++)
        free(m->data[i]);
    memset(m, 0, sizeof(*m));
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: fuzz-frames ENDPOINT SERVICE COUNT [SEED]\n");
        return 100;
    }
    const char *service = argv[2];
    long count = strtol(argv[3], NULL, 10);
    s_rng = argc > 4 ? strtoull(argv[4], NULL, 10) : 88172645463325252ull;
    if (s_rng == 0)
        s_rng = 1;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(sock, argv[1]) < 0) {
        fprintf(stderr, "connect %s: %s\n", argv[1], zmq_strerror(errno));
        return 111;
    }
    long errors = 0, oks = 0, bad = 0, missing = 0, false_ok = 0;
    for (long i = 0; i < count; i++) {
        s_msg_t m = { 0 };
        if (s_rand() % 3 == 0)
            s_garbage(&m);
        else
            s_mutated(&m, service);
        bool valid = s_is_valid_request(&m, service);
        if (s_send(sock, &m) < 0) {
            s_free(&m);
            missing++;
            break;
        }
        int code = s_answer(sock);
        if (code == -1) {
            missing++;
            fprintf(stderr, "round %ld: no answer\n", i);
            s_free(&m);
            break;
        } else if (code == -2) {
            bad++;
        } else if (code == 0) {
            oks++;
            if (!valid)
                false_ok++;
        } else {
            errors++;
        }
        s_free(&m);
    }
    /* The daemon must still answer a real request. */
    s_msg_t m = { 0 };
    uint8_t hdr[256], body[64];
    size_t hl = s_pack_valid_header(hdr, service, 1), bl = s_pack_valid_body(body, 1);
    s_set_frame(&m, 0, hdr, hl);
    s_set_frame(&m, 1, body, bl);
    m.n = 2;
    int final = s_send(sock, &m) == 0 ? s_answer(sock) : -1;
    s_free(&m);
    bool pass = missing == 0 && bad == 0 && false_ok == 0 && final == 0 && errors > 0;
    printf("{\"sent\":%ld,\"status_errors\":%ld,\"ok_valid\":%ld,\"malformed_answers\":%ld,"
           "\"unanswered\":%ld,\"ok_for_invalid\":%ld,\"final_status\":%d,\"pass\":%s}\n",
           count, errors, oks, bad, missing, false_ok, final, pass ? "true" : "false");
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return pass ? 0 : 1;
}
