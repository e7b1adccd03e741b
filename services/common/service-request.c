/* service-request.c - a request's way through the daemon skeleton
 * (service.h, service-private.h): from the ROUTER to its handler and back.
 *
 * Design. A request travels: ROUTER readable -> cairn_wire_recv ->
 * [id][Header][Body] shape check -> header decode (version, size) ->
 * service name, is_reply -> handler table -> caller and access
 * (service-trust.c) -> reply cache -> body decode with the header's type
 * -> handler -> packed reply sent and kept in the cache. Every failure on
 * the way is answered with an ErrorReply (wire-compatible with any Reply)
 * and one rate-limited log line. Replies are sent with ZMQ_DONTWAIT: a
 * peer that left (ROUTER_MANDATORY -> EHOSTUNREACH) or does not read
 * costs a debug line, never a blocked loop.
 *
 * The reply cache is a ring of SERVICE_CACHE_SIZE slots keyed by (request
 * id, type, caller); id 0 is never cached. A slot holds the packed header
 * and body, so a retry is answered byte for byte without running the
 * handler again. A request whose handler deferred its reply keeps its slot
 * `pending`: a retry then only moves the routing id to the new connection
 * (the lazy-pirate client reopened its socket), and the deferred answer
 * fills the slot when sent.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "log.h"
#include "service-private.h"
#include "util/cleanup.h"

#define BAD_FRAME_LOGS_PER_SEC 20

/* ---- small helpers ----------------------------------------------------- */

static void s_packed_clear(service_packed_t *p)
{
    free(p->hdr);
    free(p->body);
    *p = (service_packed_t){ 0 };
}

static cairn_deferred_t *s_deferred_free(cairn_deferred_t *d)
{
    if (!d)
        return NULL;
    free(d->rid);
    cairn__header__free_unpacked(d->hdr, NULL);
    free(d);
    return NULL;
}

static void s_request_clear(cairn_request_t *req)
{
    while (req->chunks) {
        service_chunk_t *c = req->chunks;
        req->chunks = c->next;
        free(c);
    }
    if (req->hdr)
        cairn__header__free_unpacked(req->hdr, NULL);
    if (req->body)
        protobuf_c_message_free_unpacked(req->body, NULL);
    free(req->reply);
    free(req->fail_msg);
}

/* Logs a bad frame, at most BAD_FRAME_LOGS_PER_SEC lines a second. */
static void s_log_bad(cairn_service_t *svc, int code, const char *msg)
{
    uint64_t sec = cairn_now_ms() / 1000;

    if (sec != svc->bad_window) {
        if (svc->bad_suppressed)
            cairn_log_warn(0, "bad-frame-suppressed", "count=%u",
                           svc->bad_suppressed);
        svc->bad_window = sec;
        svc->bad_in_window = 0;
        svc->bad_suppressed = 0;
    }
    if (svc->bad_in_window++ < BAD_FRAME_LOGS_PER_SEC)
        cairn_log_warn(0, code == CAIRN_PERMISSION_DENIED ? "denied" : "bad-frame",
                       "code=%s msg=\"%s\"", cairn_code_name(code), msg);
    else
        svc->bad_suppressed++;
}

/* ---- packing and sending replies --------------------------------------- */

static int s_pack(const cairn_service_t *svc, const Cairn__Header *req,
                  const ProtobufCMessage *body, service_packed_t *ret)
{
    service_packed_t p = { 0 };
    Cairn__Header hdr;
    int r;

    cairn_wire_reply_header(req, svc->node ? svc->node->id : 0, &hdr);
    if (!req)
        hdr.service = (char *)svc->ops->name;
    r = cairn_wire_pack(&hdr.base, &p.hdr, &p.hdr_len);
    if (r >= 0)
        r = cairn_wire_pack(body, &p.body, &p.body_len);
    if (r < 0) {
        s_packed_clear(&p);
        return r;
    }
    *ret = p;
    return 0;
}

static int s_pack_error(const cairn_service_t *svc, const Cairn__Header *req,
                        int code, const char *msg, service_packed_t *ret)
{
    Cairn__Status st = CAIRN__STATUS__INIT;
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;

    st.code = (Cairn__StatusCode)code;
    st.message = (char *)(msg ? msg : "");
    er.status = &st;
    return s_pack(svc, req, &er.base, ret);
}

/* Sends [rid][hdr][body] without blocking. */
static int s_deliver(cairn_service_t *svc, const void *rid, size_t rid_len,
                     const service_packed_t *p)
{
    const int f = ZMQ_DONTWAIT;

    int r;

    if (zmq_send(svc->router, rid, rid_len, f | ZMQ_SNDMORE) >= 0 &&
        zmq_send(svc->router, p->hdr, p->hdr_len, f | ZMQ_SNDMORE) >= 0 &&
        zmq_send(svc->router, p->body, p->body_len, f) >= 0)
        return 0;
    r = -errno;
    cairn_log_debug("reply-dropped", "reason=\"%s\"", zmq_strerror(-r));
    return r;
}

static const cairn_handler_t *s_find_handler(const cairn_service_t *svc,
                                             uint32_t type);

/* Answers a request that cannot be accepted; nothing is cached. */
static void s_reject(cairn_service_t *svc, const void *rid, size_t rid_len,
                     const Cairn__Header *req, int code, const char *msg)
{
    service_packed_t p;

    s_log_bad(svc, code, msg);
    const cairn_handler_t *h = req ? s_find_handler(svc, req->type) : NULL;
    service_metrics_request(svc, h ? h->name : NULL, code, 0);
    if (s_pack_error(svc, req, code, msg, &p) < 0)
        return;
    s_deliver(svc, rid, rid_len, &p);
    s_packed_clear(&p);
}

/* ---- reply cache ------------------------------------------------------- */

static service_slot_t *s_cache_find(cairn_service_t *svc, uint64_t id, uint32_t type,
                               const char *who)
{
    if (id == 0)
        return NULL;
    for (size_t i = 0; i < SERVICE_CACHE_SIZE; i++)
        if (svc->cache[i].request_id == id && svc->cache[i].type == type &&
            strcmp(svc->cache[i].who, who) == 0)
            return &svc->cache[i];
    return NULL;
}

/* Takes the oldest slot for a new request id; -1 for id 0. */
static long s_cache_claim(cairn_service_t *svc, uint64_t id, uint32_t type,
                          const char *who)
{
    size_t i = svc->cache_next;
    service_slot_t *s = &svc->cache[i];

    if (id == 0)
        return -1;
    svc->cache_next = (i + 1) % SERVICE_CACHE_SIZE;
    s_packed_clear(&s->reply);
    if (s->pending)
        s->pending->slot = -1;
    *s = (service_slot_t){ .request_id = id, .type = type };
    snprintf(s->who, sizeof(s->who), "%s", who);
    return (long)i;
}

/* Stores p (ownership taken) in slot i; frees it if there is no slot.
 * With p NULL (no reply could be made) the slot is emptied. */
static void s_cache_fill(cairn_service_t *svc, long i, service_packed_t *p)
{
    if (i < 0) {
        if (p)
            s_packed_clear(p);
        return;
    }
    if (!p) {
        svc->cache[i] = (service_slot_t){ 0 };
        return;
    }
    svc->cache[i].pending = NULL;
    svc->cache[i].reply = *p;
    *p = (service_packed_t){ 0 };
}

void service_cache_clear(cairn_service_t *svc)
{
    for (size_t i = 0; i < SERVICE_CACHE_SIZE; i++) {
        s_packed_clear(&svc->cache[i].reply);
        if (svc->cache[i].pending)
            svc->cache[i].pending->slot = -1;
        svc->cache[i] = (service_slot_t){ 0 };
    }
}

/* Answers a retried id from its slot. */
static void s_cache_answer(cairn_service_t *svc, service_slot_t *s, const void *rid,
                           size_t rid_len)
{
    cairn_log_debug("retry", "request-id=%llu pending=%d",
                    (unsigned long long)s->request_id, s->pending != NULL);
    if (!s->pending) {
        s_deliver(svc, rid, rid_len, &s->reply);
        return;
    }
    uint8_t *copy = malloc(rid_len ? rid_len : 1);
    if (!copy)
        return;
    memcpy(copy, rid, rid_len);
    free(s->pending->rid);
    s->pending->rid = copy;
    s->pending->rid_len = rid_len;
}

/* ---- dispatch ---------------------------------------------------------- */

static const cairn_handler_t *s_find_handler(const cairn_service_t *svc,
                                             uint32_t type)
{
    for (size_t i = 0; i < svc->ops->n_handlers; i++)
        if (svc->ops->handlers[i].type == type)
            return &svc->ops->handlers[i];
    return NULL;
}

static Cairn__Status **s_status_member(const cairn_service_t *svc,
                                       ProtobufCMessage *reply)
{
    return (Cairn__Status **)((char *)reply + svc->status_offset);
}

static ProtobufCMessage *s_new_reply(const cairn_service_t *svc)
{
    const ProtobufCMessageDescriptor *d = svc->ops->reply_desc;
    ProtobufCMessage *m = calloc(1, d->sizeof_message);

    if (m)
        protobuf_c_message_init(d, m);
    return m;
}

/* Packs the handler's outcome: the Reply with status OK, or an ErrorReply. */
static int s_pack_outcome(cairn_service_t *svc, cairn_request_t *req, int hr,
                          service_packed_t *ret)
{
    Cairn__Status ok = CAIRN__STATUS__INIT;
    int r;

    if (hr < 0) {
        cairn_log_err(hr, "handler-failed", "type=%u", req->hdr->type);
        return s_pack_error(svc, req->hdr, CAIRN_INTERNAL, "internal error", ret);
    }
    if (req->fail_code)
        return s_pack_error(svc, req->hdr, req->fail_code, req->fail_msg, ret);
    *s_status_member(svc, req->reply) = &ok;
    r = s_pack(svc, req->hdr, req->reply, ret);
    *s_status_member(svc, req->reply) = NULL;
    if (r == -EMSGSIZE)
        return s_pack_error(svc, req->hdr, CAIRN_TOO_LARGE,
                            "reply over the frame size limit", ret);
    return r;
}

/* A request whose sender reads no reply (Header.no_reply) and that failed:
 * said in the log, since nobody else hears it. */
static void s_log_unanswered(const char *what, int hr, int code,
                             const char *msg)
{
    if (hr < 0)
        cairn_log_warn(hr, "unanswered", "type=%s code=internal", what);
    else if (code)
        cairn_log_warn(0, "unanswered", "type=%s code=%s msg=\"%s\"", what,
                       cairn_code_name(code), msg ? msg : "");
}

/* Runs the handler of a validated request and answers or parks it. */
static void s_run_handler(cairn_service_t *svc, cairn_request_t *req,
                          const cairn_handler_t *h)
{
    char who[72];
    /* nobody retries a request that reads no reply: no cache slot (it
     * would push out a reply someone may ask for again) */
    long slot = req->hdr->no_reply
                    ? -1
                    : s_cache_claim(svc, req->hdr->request_id, req->hdr->type,
                                    service_caller_key(&req->caller, who, sizeof(who)));
    service_packed_t p = { 0 };
    int hr;

    cairn_log_debug("request", "type=%s request-id=%llu", h->name,
                    (unsigned long long)req->hdr->request_id);
    req->slot = slot;
    req->type_name = h->name;
    req->started_ns = cairn_now_ns();
    hr = h->fn(svc->ctx, req);
    /* Deferred: the deferred holds the slot, and may even be answered
     * and freed already; req->deferred is not looked at again. */
    if (hr == CAIRN_REPLY_DEFERRED && req->deferred)
        return;
    if (hr == CAIRN_REPLY_DEFERRED)
        hr = cairn_log_err(-EINVAL, "handler-bug",
                           "type=%s msg=\"deferred without cairn_request_defer\"",
                           h->name);
    service_metrics_request(svc, h->name,
                            hr < 0 ? CAIRN_INTERNAL : req->fail_code, req->started_ns);
    if (req->hdr->no_reply) {
        s_log_unanswered(h->name, hr, req->fail_code, req->fail_msg);
        s_cache_fill(svc, slot, NULL);
        return;
    }
    if (s_pack_outcome(svc, req, hr, &p) < 0) {
        s_cache_fill(svc, slot, NULL);
        return;
    }
    s_deliver(svc, req->rid, req->rid_len, &p);
    s_cache_fill(svc, slot, &p);
}

/* Validates the header against this service; 0 or a status code. */
static int s_check_header(const cairn_service_t *svc, const Cairn__Header *h,
                          char *msg, size_t len)
{
    if (h->is_reply)
        return snprintf(msg, len, "a reply sent to %s as a request",
                        svc->ops->name), CAIRN_INVALID_ARGUMENT;
    if (!h->service || strcmp(h->service, svc->ops->name) != 0)
        return snprintf(msg, len, "request for service '%s' reached %s",
                        h->service ? h->service : "", svc->ops->name),
               CAIRN_INVALID_ARGUMENT;
    if (!s_find_handler(svc, h->type))
        return snprintf(msg, len, "message type %u is not a %s request",
                        h->type, svc->ops->name), CAIRN_UNKNOWN_TYPE;
    return 0;
}

/* Handles one received message; frame 0 is the routing id. */
static void s_handle(cairn_service_t *svc, const cairn_frames_t *f)
{
    cairn_request_t req = { .svc = svc, .slot = -1, .rid = cairn_frames_data(f, 0),
                            .rid_len = cairn_frames_size(f, 0) };
    cairn_error_t err;
    char msg[256];
    int code;

    if (f->n >= 2 && cairn_wire_decode_header(cairn_frames_data(f, 1),
                                              cairn_frames_size(f, 1),
                                              &req.hdr, &err) < 0) {
        s_reject(svc, req.rid, req.rid_len, NULL, err.code, err.message);
        return;
    }
    if (f->n != 3 || f->truncated) {
        snprintf(msg, sizeof(msg), "expected 2 frames [header][body], got %s%zu",
                 f->truncated ? "over " : "", f->n - 1);
        s_reject(svc, req.rid, req.rid_len, req.hdr, CAIRN_DECODE_ERROR, msg);
        goto out;
    }
    if ((code = s_check_header(svc, req.hdr, msg, sizeof(msg))) != 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, code, msg);
        goto out;
    }
    service_caller_of(svc, f, req.hdr, &req.caller);
    const cairn_handler_t *h = s_find_handler(svc, req.hdr->type);
    if ((code = service_check_access(svc, h, &req.caller, msg, sizeof(msg))) != 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, code, msg);
        goto out;
    }
    char who[72];
    service_slot_t *cached = s_cache_find(svc, req.hdr->request_id, req.hdr->type,
                                    service_caller_key(&req.caller, who, sizeof(who)));
    if (cached) {
        s_cache_answer(svc, cached, req.rid, req.rid_len);
        goto out;
    }
    if (cairn_wire_decode_body(svc->ops->request_desc, cairn_frames_data(f, 2),
                               cairn_frames_size(f, 2), req.hdr->type,
                               &req.body, &err) < 0) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, err.code, err.message);
        goto out;
    }
    req.reply = s_new_reply(svc);
    if (!req.reply) {
        s_reject(svc, req.rid, req.rid_len, req.hdr, CAIRN_INTERNAL, "out of memory");
        goto out;
    }
    s_run_handler(svc, &req, h);
out:
    s_request_clear(&req);
}

int service_on_router(cairn_loop_t *loop, int fd, void *zsock, short revents,
                       void *userdata)
{
    cairn_service_t *svc = userdata;

    for (int i = 0; i < SERVICE_RECV_BATCH; i++) {
        cairn_frames_t f;
        int r = cairn_wire_recv(zsock, &f, ZMQ_DONTWAIT);

        if (r == -EAGAIN || r == -EINTR)
            return 0;
        if (r < 0)
            return cairn_log_err(r, "recv", "socket=router");
        if (f.n > 0)
            s_handle(svc, &f);
        cairn_frames_free(&f);
    }
    return 0;
}

/* ---- inside a handler -------------------------------------------------- */

const Cairn__Header *cairn_request_header(cairn_request_t *req)
{
    return req->hdr;
}

const cairn_caller_t *cairn_request_caller(cairn_request_t *req)
{
    return &req->caller;
}

const ProtobufCMessage *cairn_request_body(cairn_request_t *req)
{
    return req->body;
}

ProtobufCMessage *cairn_request_reply(cairn_request_t *req)
{
    return req->reply;
}

void *cairn_request_alloc(cairn_request_t *req, size_t size)
{
    service_chunk_t *c = calloc(1, sizeof(*c) + size);

    if (!c)
        return NULL;
    c->next = req->chunks;
    req->chunks = c;
    return c->data;
}

char *cairn_request_strdup(cairn_request_t *req, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cairn_request_alloc(req, n);

    if (p)
        memcpy(p, s, n);
    return p;
}

int cairn_request_fail(cairn_request_t *req, int code, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    free(req->fail_msg);
    req->fail_msg = msg;
    req->fail_code = code ? code : CAIRN_INTERNAL;
    return CAIRN_REPLY_NOW;
}

cairn_deferred_t *cairn_request_defer(cairn_request_t *req)
{
    _cleanup_free_ cairn_deferred_t *d = NULL;

    if (req->deferred)
        return req->deferred;
    d = calloc(1, sizeof(*d));
    if (!d || !(d->rid = malloc(req->rid_len ? req->rid_len : 1)))
        return NULL;
    memcpy(d->rid, req->rid, req->rid_len);
    d->rid_len = req->rid_len;
    d->hdr = TAKE_PTR(req->hdr);   /* the request no longer frees it */
    /* The slot is the deferred's from now on, so that an answer sent
     * before the handler returns (the handler's own work finished at
     * once) fills it as a later one would. */
    d->slot = req->slot;
    d->type_name = req->type_name;
    d->started_ns = req->started_ns;
    if (d->slot >= 0)
        req->svc->cache[d->slot].pending = d;
    req->deferred = TAKE_PTR(d);
    return req->deferred;
}

/* Sends p (if any: the answer whose status is code) to d's asker,
 * caches it, counts it, frees d. */
static int s_deferred_finish(cairn_service_t *svc, cairn_deferred_t *d,
                             service_packed_t *p, int code)
{
    int r = p && !d->hdr->no_reply ? s_deliver(svc, d->rid, d->rid_len, p) : 0;
    bool ours = d->slot >= 0 && svc->cache[d->slot].pending == d;

    s_cache_fill(svc, ours ? d->slot : -1, p);
    service_metrics_request(svc, d->type_name, p ? code : CAIRN_INTERNAL,
                            d->started_ns);
    s_deferred_free(d);
    return r;
}

int cairn_deferred_reply(cairn_service_t *svc, cairn_deferred_t *d,
                         ProtobufCMessage *reply)
{
    Cairn__Status ok = CAIRN__STATUS__INIT, **st;
    Cairn__Status *saved;
    service_packed_t p;
    int r;

    if (!svc || !d || !reply)
        return -EINVAL;
    st = s_status_member(svc, reply);
    saved = *st;
    *st = &ok;
    r = s_pack(svc, d->hdr, reply, &p);
    *st = saved;
    int code = CAIRN_OK;
    if (r == -EMSGSIZE) {
        code = CAIRN_TOO_LARGE;
        r = s_pack_error(svc, d->hdr, code, "reply over the frame size limit", &p);
    }
    if (r < 0)
        return s_deferred_finish(svc, d, NULL, 0), r;
    return s_deferred_finish(svc, d, &p, code);
}

int cairn_deferred_fail(cairn_service_t *svc, cairn_deferred_t *d, int code,
                        const char *message)
{
    service_packed_t p;
    int r;

    if (!svc || !d)
        return -EINVAL;
    code = code ? code : CAIRN_INTERNAL;
    r = s_pack_error(svc, d->hdr, code, message, &p);
    if (r < 0)
        return s_deferred_finish(svc, d, NULL, 0), r;
    return s_deferred_finish(svc, d, &p, code);
}
