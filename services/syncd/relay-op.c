/* relay-op.c - syncd's ops: a request of this node's processes on its way
 * to the object's home, one step at a time, and its answer back; and the
 * releases the relay answered itself, carried to the home behind them.
 *
 * Design. A relay request that cannot be answered at once becomes an *op*:
 * an owned copy of the request, the caller, a deadline and a deferred
 * reply. An op is sent to the home (home.c directly when the home is
 * self, else cairn_peers_call_as vouching for the caller) one *attempt* at
 * a time; each attempt has a new id, and a peer's answer names the attempt
 * it answers, so the late answer of a superseded attempt (re-sent after a
 * view change, a backoff, a long wait's renewal) is ignored. A home's
 * UNAVAILABLE (not home, recovering, moved) is retried after 10-50 ms
 * until the deadline. A client's retry with the same (pid, tid, tag)
 * re-binds to the op (the old deferred is failed, saying so).
 *
 * Condition variables (CondWaitRequest): PREPARE at the condvar's home,
 * then the mutex released for the caller, then WAIT, then the mutex taken
 * again (never through the cache: the caller then holds it through
 * syncd and unlocks with Request{release}) and CondReply with the new
 * token. The relay accepts PHASE_ALL only when its records show the
 * calling thread holds the mutex through syncd (else NOT_HOLDER): a mutex
 * held on a cache word can only be released by its holder thread (the word
 * is on that thread's robust list), so for it the client runs the phases
 * itself (proto/syncd.proto, CondWaitRequest): PREPARE, unlock of the
 * word, WAIT, its own relock; the relay passes each phase to the home with
 * the Holder filled and answers it as it comes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay-private.h"
#include "util/clock.h"

#define MARGIN_MS 2000          /* a wait's peer call: timeout + this */
#define LONG_MS 30000           /* an infinite wait's peer call, then re-sent */
#define BACKOFF_MIN_MS 10       /* retry of a home's UNAVAILABLE */
#define BACKOFF_MAX_MS 50
#define TRY_RETRY_MS 2000       /* a try's retries of a home not ready */
#define RELOCK_TAG 0x5eedc0de5eedc0deull  /* cond relock's tag: tag ^ this */

/* ---- small helpers ----------------------------------------------------- */

static uint64_t s_deadline(int64_t timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : cairn_now_ms() + (uint64_t)timeout_ms;
}

/* A try (timeout 0) asks whether the object is free, not whether the
 * cluster is recovering: a home that is not ready yet (a recovery ends in
 * milliseconds when every member answers) is asked again for TRY_RETRY_MS,
 * within a client's default call time. */
static uint64_t s_retry_until(int64_t timeout_ms, uint64_t deadline)
{
    return timeout_ms == 0 ? cairn_now_ms() + TRY_RETRY_MS : deadline;
}

/* A deep, owned copy of a Request (pack, unpack). NULL on ENOMEM. */
static relay_req_t *s_req_copy(const relay_req_t *req)
{
    size_t n = cairn__syncd__request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    relay_req_t *copy;

    if (!buf)
        return NULL;
    cairn__syncd__request__pack(req, buf);
    copy = cairn__syncd__request__unpack(NULL, n, buf);
    free(buf);
    return copy;
}

/* ---- ops --------------------------------------------------------------- */

relay_op_t *relay_op_by_attempt(relay_t *r, uint64_t attempt)
{
    for (relay_op_t *op = r->ops; op; op = op->next)
        if (op->attempt == attempt)
            return op;
    return NULL;
}

relay_op_t *relay_op_by_tag(relay_t *r, int32_t pid, int32_t tid,
                            uint64_t tag, uint32_t type)
{
    if (!tag)
        return NULL;
    for (relay_op_t *op = r->ops; op; op = op->next)
        if (op->pid == pid && op->tid == tid && op->tag == tag &&
            op->req->msg_case == type && !op->finished)
            return op;
    return NULL;
}

static void s_op_stop_timer(relay_op_t *op)
{
    if (op->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(op->r->svc), op->timer);
    op->timer = 0;
}

/* Takes op out of home.c if it waits there (no answer will come). */
static void s_op_unqueue(relay_op_t *op)
{
    if (op->at_local_home)
        home_cancel(op->r->home, op);
    op->at_local_home = false;
}

void relay_op_free(relay_op_t *op)
{
    relay_t *r = op->r;
    for (relay_op_t **pp = &r->ops; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    if (op->cache_ok && op->req && r->revokes &&
        op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE &&
        !relay_cache_op_pending(r, op->req->acquire->name, op))
        relay_early_revokes(r, op->req->acquire->name, 0, true);
    s_op_stop_timer(op);
    s_op_unqueue(op);
    if (op->deferred)
        cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    if (op->req && op->req_owned)
        cairn__syncd__request__free_unpacked(op->req, NULL);
    if (op->passthrough)
        protobuf_c_message_free_unpacked(&op->passthrough->base, NULL);
    free(op);
}

/* A new op for a local caller's request (copied; holder filled). */
static relay_op_t *s_op_new(relay_t *r, cairn_request_t *req, const relay_req_t *copy_of,
                            int32_t tid, uint64_t tag, int64_t timeout_ms)
{
    relay_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->cookie = COOKIE_OP;
    op->r = r;
    /* most requests are answered inside their handler (a local home, an
     * error): the copy is made only when the op outlives it */
    op->req = (relay_req_t *)copy_of;
    op->caller = *cairn_request_caller(req);
    op->pid = op->caller.pid;
    op->tid = tid;
    op->tag = tag;
    op->inline_req = req;
    op->deadline = s_deadline(timeout_ms);
    op->retry_until = s_retry_until(timeout_ms, op->deadline);
    op->next = r->ops;
    r->ops = op;
    return op;
}

/* Storage for the request of a step (built from op->req). */
typedef struct s_step_req {
    relay_req_t req;
    Cairn__Syncd__AcquireRequest acquire;
    Cairn__Syncd__ReleaseRequest release;
    Cairn__Syncd__CondWaitRequest cond;
    Cairn__Syncd__Spec spec;
    Cairn__Syncd__Holder holder;
} s_step_req_t;
static const char *s_step_build(const relay_op_t *op, s_step_req_t *s);

int relay_op_fill_reply(const relay_op_t *op, relay_rep_t *reply,
                        void *(*alloc)(void *, size_t), void *ctx)
{
    const relay_outcome_t *o = &op->out;
    switch (op->req->msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE: {
        Cairn__Syncd__AcquireReply *a = alloc(ctx, sizeof(*a));
        if (!a)
            return -ENOMEM;
        cairn__syncd__acquire_reply__init(a);
        a->token = o->token;
        a->owner_died = o->owner_died;
        a->home = o->home;
        a->cached = o->cached;
        if (op->slot_set) {
            a->slot = op->slot.slot;
            a->slot_gen = op->slot.gen;
            a->table = (char *)op->table;
        }
        reply->acquire_reply = a;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
        return 0;
    }
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER: {
        Cairn__Syncd__BarrierReply *b = alloc(ctx, sizeof(*b));
        if (!b)
            return -ENOMEM;
        cairn__syncd__barrier_reply__init(b);
        b->serial = o->serial;
        b->generation = o->generation;
        reply->barrier_reply = b;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY;
        return 0;
    }
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL: {
        Cairn__Syncd__CondReply *c = alloc(ctx, sizeof(*c));
        if (!c)
            return -ENOMEM;
        cairn__syncd__cond_reply__init(c);
        c->timed_out = o->timed_out;
        c->woken = o->woken;
        c->token = o->token;
        c->owner_died = o->owner_died;
        reply->cond_reply = c;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_COND_REPLY;
        return 0;
    }
    default: {
        Cairn__Syncd__ReleaseReply *rr = alloc(ctx, sizeof(*rr));
        if (!rr)
            return -ENOMEM;
        cairn__syncd__release_reply__init(rr);
        reply->release_reply = rr;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
        return 0;
    }
    }
}

/* Stack storage for a deferred reply (all fits in one union). */
typedef struct s_store {
    union {
        Cairn__Syncd__AcquireReply a;
        Cairn__Syncd__BarrierReply b;
        Cairn__Syncd__CondReply c;
        Cairn__Syncd__ReleaseReply rr;
    } u;
    bool used;
} s_store_t;

static void *s_store_alloc(void *ctx, size_t size)
{
    s_store_t *s = ctx;
    if (s->used || size > sizeof(s->u))
        return NULL;
    s->used = true;
    memset(&s->u, 0, sizeof(s->u));
    return &s->u;
}

/* Answers op's client with op->out and frees op, unless it is still inside
 * its handler (the handler replies and frees it). */
static void s_op_finish(relay_op_t *op, const relay_outcome_t *o)
{
    relay_t *r = op->r;

    if (o != &op->out)
        op->out = *o;
    op->finished = true;
    s_op_stop_timer(op);
    if (op->inline_req)
        return;     /* the handler answers */
    if (op->deferred && op->passthrough && op->out.code == CAIRN_OK) {
        cairn_deferred_reply(r->svc, op->deferred, &op->passthrough->base);
        op->deferred = NULL;
    }
    if (op->deferred) {
        if (op->out.code != CAIRN_OK) {
            cairn_deferred_fail(r->svc, op->deferred, op->out.code, op->out.message);
        } else {
            relay_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
            s_store_t st = { .used = false };
            if (relay_op_fill_reply(op, &reply, s_store_alloc, &st) < 0)
                cairn_deferred_fail(r->svc, op->deferred, CAIRN_INTERNAL,
                                    "out of memory");
            else
                cairn_deferred_reply(r->svc, op->deferred, &reply.base);
        }
        op->deferred = NULL;
    }
    relay_op_free(op);
}

/* The handler's end for an op: its reply now, or deferred. */
static int s_op_handler_end(relay_op_t *op, cairn_request_t *req)
{
    op->inline_req = NULL;
    if (op->finished) {
        int ret;
        relay_rep_t *reply = (relay_rep_t *)cairn_request_reply(req);
        if (op->out.code != CAIRN_OK)
            ret = relay_fail(req, &op->out);
        else
            ret = relay_op_fill_reply(op, reply, relay_req_alloc, req) < 0
                      ? -ENOMEM : CAIRN_REPLY_NOW;
        /* the reply is sent after op is gone: its table path goes along */
        if (ret == CAIRN_REPLY_NOW && op->slot_set &&
            reply->msg_case == CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY &&
            !(reply->acquire_reply->table = cairn_request_strdup(req, op->table)))
            ret = -ENOMEM;
        relay_op_free(op);
        return ret;
    }
    relay_req_t *own = s_req_copy(op->req);
    op->deferred = own ? cairn_request_defer(req) : NULL;
    if (!op->deferred) {
        if (own)
            cairn__syncd__request__free_unpacked(own, NULL);
        relay_op_free(op);
        return -ENOMEM;
    }
    op->req = own;
    op->req_owned = true;
    if (op->target) {   /* it pointed into the handler's request */
        s_step_req_t scratch;
        op->target = s_step_build(op, &scratch);
    }
    return CAIRN_REPLY_DEFERRED;
}

/* ---- one step's request ------------------------------------------------ */

/* The request op's current step sends, and the name it is about. */
static const char *s_step_build(const relay_op_t *op, s_step_req_t *s)
{
    const relay_req_t *q = op->req;
    const Cairn__Syncd__CondWaitRequest *cw = q->cond_wait;

    if (op->step == STEP_SEND) {
        s->req = *q;
        if (q->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
            s->acquire = *q->acquire;
            s->acquire.cache_ok = op->cache_ok;
            /* what is left of the caller's timeout */
            if (q->acquire->timeout_ms > 0)
                s->acquire.timeout_ms = (int64_t)cairn_ms_left(op->deadline);
            s->req.acquire = &s->acquire;
            return q->acquire->name;
        }
        switch (q->msg_case) {
        case CAIRN__SYNCD__REQUEST__MSG_RELEASE: return q->release->name;
        case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT: return q->consistent->name;
        case CAIRN__SYNCD__REQUEST__MSG_BARRIER: return q->barrier->name;
        case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL: return q->cond_signal->name;
        case CAIRN__SYNCD__REQUEST__MSG_SHOW: return q->show->name;
        case CAIRN__SYNCD__REQUEST__MSG_DESTROY: return q->destroy->name;
        case CAIRN__SYNCD__REQUEST__MSG_DECLARE: return q->declare->name;
        default: return "";
        }
    }
    cairn__syncd__request__init(&s->req);
    s->holder = *cw->holder;
    switch (op->step) {
    case STEP_PREPARE:
    case STEP_WAIT:
    case STEP_CANCEL:
        s->cond = *cw;
        s->cond.holder = &s->holder;
        s->cond.phase = op->step == STEP_PREPARE ? CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_PREPARE
                      : op->step == STEP_WAIT ? CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT
                      : CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL;
        if (op->step == STEP_WAIT && cw->timeout_ms > 0)
            s->cond.timeout_ms = (int64_t)cairn_ms_left(op->deadline);
        s->req.cond_wait = &s->cond;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_COND_WAIT;
        return cw->name;
    case STEP_UNLOCK:
        cairn__syncd__release_request__init(&s->release);
        s->release.name = cw->mutex;
        s->release.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
        s->release.holder = &s->holder;
        s->req.release = &s->release;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
        return cw->mutex;
    default: /* STEP_RELOCK */
        cairn__syncd__acquire_request__init(&s->acquire);
        cairn__syncd__spec__init(&s->spec);
        s->spec.kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
        s->spec.shared = cw->shared;
        s->acquire.name = cw->mutex;
        s->acquire.spec = &s->spec;
        s->acquire.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
        s->acquire.timeout_ms = -1;
        s->acquire.holder = &s->holder;
        s->acquire.tag = cw->tag ^ RELOCK_TAG;
        s->req.acquire = &s->acquire;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ACQUIRE;
        return cw->mutex;
    }
}

/* ---- sending an op's step ---------------------------------------------- */

static void s_outcome_from_reply(relay_outcome_t *o, const relay_rep_t *rep,
                                 uint32_t home)
{
    memset(o, 0, sizeof(*o));
    o->home = home;
    if (rep->status && (int)rep->status->code != CAIRN_OK) {
        relay_outcome_set(o, rep->status->code, "%s", rep->status->message ?
                          rep->status->message : "");
        return;
    }
    switch (rep->msg_case) {
    case CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY:
        o->token = rep->acquire_reply->token;
        o->owner_died = rep->acquire_reply->owner_died;
        o->cached = rep->acquire_reply->cached;
        if (rep->acquire_reply->home)
            o->home = rep->acquire_reply->home;
        break;
    case CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY:
        o->serial = rep->barrier_reply->serial;
        o->generation = rep->barrier_reply->generation;
        break;
    case CAIRN__SYNCD__REPLY__MSG_COND_REPLY:
        o->woken = rep->cond_reply->woken;
        o->timed_out = rep->cond_reply->timed_out;
        o->token = rep->cond_reply->token;
        o->owner_died = rep->cond_reply->owner_died;
        break;
    default:
        break;
    }
}

static int s_on_op_timer(cairn_loop_t *loop, int64_t id, void *userdata);

static void s_on_op_reply(void *userdata, uint32_t node, int code,
                          const char *message, ProtobufCMessage *reply)
{
    relay_t *r = relay_of_peers();
    relay_op_t *op = r ? relay_op_by_attempt(r, (uint64_t)(uintptr_t)userdata)
                       : NULL;
    relay_outcome_t o;

    if (!op) {      /* a superseded attempt */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    if (code == CAIRN_OK) {
        s_outcome_from_reply(&o, (relay_rep_t *)reply, node);
        if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_SHOW && o.code == CAIRN_OK &&
            !op->passthrough)
            op->passthrough = (relay_rep_t *)reply;
        else
            protobuf_c_message_free_unpacked(reply, NULL);
    } else {
        memset(&o, 0, sizeof(o));
        o.home = node;
        relay_outcome_set(&o, code, "%s", message ? message : "no answer");
    }
    op->attempt = 0;
    relay_op_result(op, &o);
}

/* Retries op's step after a short backoff (a home that is not ready). */
static void s_op_backoff(relay_op_t *op)
{
    uint64_t ms = BACKOFF_MIN_MS + (uint64_t)(rand() % (BACKOFF_MAX_MS - BACKOFF_MIN_MS + 1));
    uint64_t left = cairn_ms_left(op->retry_until);

    if (op->retry_until != UINT64_MAX && left < ms)
        ms = left;
    /* late answers of the old attempt: ignored */
    op->attempt = relay_next_id(op->r);
    s_op_stop_timer(op);
    op->timer = cairn_loop_add_timer(cairn_service_loop(op->r->svc), ms, 0,
                                     s_on_op_timer, op);
}

/* The peer deadline of op's current step. */
static uint32_t s_step_wait_ms(const relay_op_t *op, const s_step_req_t *s)
{
    int64_t t = 0;
    switch (s->req.msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE: t = s->req.acquire->timeout_ms; break;
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER: t = s->req.barrier->timeout_ms; break;
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
        t = s->req.cond_wait->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT ?
            s->req.cond_wait->timeout_ms : 0;
        break;
    default: break;
    }
    if (t < 0)
        return LONG_MS;
    return (uint32_t)(t > LONG_MS ? LONG_MS : t) + (t ? MARGIN_MS : CALL_MS);
}

void relay_op_dispatch(relay_op_t *op)
{
    relay_t *r = op->r;
    s_step_req_t s;
    char why[128];
    const char *bad = relay_unusable(r, why, sizeof(why));
    relay_outcome_t o = { 0 };

    op->attempt = relay_next_id(r);
    s_op_stop_timer(op);
    if (bad) {
        relay_outcome_set(&o, CAIRN_UNAVAILABLE, "%s", bad);
        s_op_finish(op, &o);
        return;
    }
    memset(&s, 0, sizeof(s));
    op->target = s_step_build(op, &s);
    op->home = cairn_view_home(r->view, op->target);
    if (op->home == r->self) {
        home_result_t hr;
        int k = relay_home_exec(r, &s.req, op->caller.uid, op, &hr);
        if (k < 0) {
            relay_outcome_set(&o, CAIRN_INTERNAL, "out of memory at the home");
            s_op_finish(op, &o);
            return;
        }
        if (k == HOME_QUEUED) {
            op->at_local_home = true;
            op->waited = true;
            op->queued_ns = cairn_now_ns();
            if (op->deadline != UINT64_MAX)
                op->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                                 cairn_ms_left(op->deadline), 0,
                                                 s_on_op_timer, op);
            return;
        }
        relay_outcome_from_home(&o, &hr, r->self);
        relay_op_result(op, &o);
        return;
    }
    const char *ep = cairn_view_endpoint(r->view, op->home);
    int k = ep ? cairn_peers_call_as(r->peers, op->home, ep, &s.req.base,
                                     s_step_wait_ms(op, &s), &op->caller,
                                     s_on_op_reply, (void *)(uintptr_t)op->attempt)
               : -ENOENT;
    if (k < 0) {
        if (k == -EAGAIN || k == -ENOENT) {
            s_op_backoff(op);
            return;
        }
        relay_outcome_set(&o, CAIRN_UNAVAILABLE, "cannot reach syncd of node "
                          "%u (home of %s): %s", op->home, op->target,
                          strerror(-k));
        s_op_finish(op, &o);
    }
}

/* Timer: a backoff ended (send again) or a wait at our home timed out. */
static int s_on_op_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_op_t *op = userdata;
    relay_outcome_t o = { 0 };

    op->timer = 0;
    if (op->at_local_home) {
        s_op_unqueue(op);
        relay_outcome_set(&o, CAIRN_TIMEOUT, "timed out waiting for %s", op->target);
        o.home = op->r->self;
        relay_op_result(op, &o);
        return 0;
    }
    if (op->retry_until != UINT64_MAX && cairn_ms_left(op->retry_until) == 0 &&
        op->step != STEP_RELOCK && op->step != STEP_UNLOCK && op->step != STEP_CANCEL) {
        relay_outcome_set(&o, CAIRN_TIMEOUT, "timed out: the home of %s was "
                          "not available before the deadline", op->target);
        relay_op_result(op, &o);
        return 0;
    }
    relay_op_dispatch(op);
    return 0;
}

/* ---- what an op does with a step's answer ------------------------------ */

/* Whether a home's answer is one to retry after a backoff: not home (views
 * differ for a moment), recovering, moved, or unreachable. */
static bool s_retryable(const relay_op_t *op, const relay_outcome_t *o)
{
    if (o->code == CAIRN_UNAVAILABLE)
        return true;
    /* a peer call that got no answer before its (long) deadline */
    return o->code == CAIRN_TIMEOUT && o->home != op->r->self &&
           (op->deadline == UINT64_MAX || cairn_ms_left(op->deadline) > 0);
}

static void s_cond_result(relay_op_t *op, const relay_outcome_t *o);
static void s_acquire_result(relay_op_t *op, const relay_outcome_t *o);

void relay_op_result(relay_op_t *op, const relay_outcome_t *o)
{
    if (s_retryable(op, o)) {
        bool forever = op->step == STEP_RELOCK || op->step == STEP_UNLOCK ||
                       op->step == STEP_CANCEL;
        if (forever || op->retry_until == UINT64_MAX || cairn_ms_left(op->retry_until) > 0) {
            s_op_backoff(op);
            return;
        }
        relay_outcome_t t = *o;
        if (t.code == CAIRN_UNAVAILABLE)
            snprintf(t.message + strlen(t.message), sizeof(t.message) - strlen(t.message),
                     " (until the deadline)");
        s_op_finish(op, &t);
        return;
    }
    if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_COND_WAIT) {
        s_cond_result(op, o);
        return;
    }
    if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
        s_acquire_result(op, o);
        return;
    }
    if (o->code == CAIRN_OK && op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_CONSISTENT) {
        relay_hold_t *h = relay_hold_find(op->r, op->pid, op->tid,
                                          op->req->consistent->name, 0, NULL);
        if (h)
            h->owner_died = false;
    }
    s_op_finish(op, o);
}

/* Gives back a cache grant we could not install: a release by the grantee
 * from this node, then the acquire again without cache_ok. */

static void s_acquire_result(relay_op_t *op, const relay_outcome_t *o)
{
    relay_t *r = op->r;
    const Cairn__Syncd__AcquireRequest *a = op->req->acquire;

    if (o->code != CAIRN_OK) {
        s_op_finish(op, o);
        return;
    }
    if (o->owner_died)
        cairn_log_info("owner-died", "name=%s pid=%d token=%" PRIu64, a->name,
                       op->pid, o->token);
    else if (op->waited)    /* one line per grant after a wait at our home */
        cairn_log_info("grant", "name=%s node=%u pid=%d token=%" PRIu64, a->name,
                       r->self, op->pid, o->token);
    if (o->cached) {
        cairn_error_t err;
        int k = cache_install(r->cache, a->name, op->caller.uid, o->token,
                              o->owner_died, op->pid, op->tid, &op->slot, &err);
        if (k == 0) {
            snprintf(op->table, sizeof(op->table), "%s", op->slot.table);
            op->slot_set = true;
            relay_early_revokes(r, a->name, o->token, false);
            s_op_finish(op, o);
            return;
        }
        cairn_log_warn(0, "cache-install", "name=%s msg=\"%s\", giving the "
                       "cache back", a->name, err.message);
        relay_release_async(r, o->home, a->name,
                            CAIRN__SYNCD__MODE__MODE_LOCK, 1, a->holder,
                            &op->caller);
        op->cache_ok = false;
        relay_op_dispatch(op);
        return;
    }
    relay_hold_add(r, op, o);
    s_op_finish(op, o);
}

/* ---- the condvar op ---------------------------------------------------- */

static void s_cond_next(relay_op_t *op, int step)
{
    op->step = step;
    relay_op_dispatch(op);
}

static void s_cond_result(relay_op_t *op, const relay_outcome_t *o)
{
    relay_t *r = op->r;
    const Cairn__Syncd__CondWaitRequest *cw = op->req->cond_wait;

    if (op->one_phase) {
        relay_outcome_t fin = *o;
        if (op->step == STEP_WAIT && o->code == CAIRN_TIMEOUT) {
            memset(&fin, 0, sizeof(fin));
            fin.timed_out = true;
        }
        s_op_finish(op, &fin);
        return;
    }
    switch (op->step) {
    case STEP_PREPARE:
        if (o->code != CAIRN_OK) {
            s_op_finish(op, o);
            return;
        }
        op->prepared = true;
        s_cond_next(op, STEP_UNLOCK);
        return;
    case STEP_UNLOCK: {
        relay_hold_t **link = NULL;
        relay_hold_t *h = relay_hold_find(r, op->pid, op->tid, cw->mutex,
                                          CAIRN__SYNCD__MODE__MODE_LOCK, &link);
        if (o->code == CAIRN_OK && h) {
            *link = h->next;
            relay_hold_free(h);
        }
        if (o->code != CAIRN_OK)
            cairn_log_warn(0, "cond-unlock", "name=%s mutex=%s msg=\"%s\"",
                           cw->name, cw->mutex, o->message);
        s_cond_next(op, STEP_WAIT);
        return;
    }
    case STEP_WAIT:
    case STEP_CANCEL:
        if (o->code == CAIRN_TIMEOUT)
            op->timed_out = true;
        else if (op->step == STEP_WAIT && o->code != CAIRN_OK)
            cairn_log_info("cond-wake", "name=%s pid=%d msg=\"%s\"", cw->name,
                           op->pid, o->message);
        /* whatever the wait said, the mutex is taken again: its deadline
         * no longer applies */
        op->deadline = UINT64_MAX;
        s_cond_next(op, STEP_RELOCK);
        return;
    default: { /* STEP_RELOCK */
        relay_outcome_t fin = *o;
        if (o->code == CAIRN_OK) {
            relay_hold_t *h;
            relay_proc_t *p = relay_proc_get(r, op->pid);
            if (p && (h = calloc(1, sizeof(*h))) && (h->name = strdup(cw->mutex))) {
                h->tid = op->tid;
                h->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
                h->token = o->token;
                h->tag = cw->tag ^ RELOCK_TAG;
                h->home = o->home;
                h->count = 1;
                h->uid = op->caller.uid;
                h->kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
                h->shared = cw->shared;
                h->owner_died = o->owner_died;
                h->next = p->holds;
                p->holds = h;
            } else if (p) {
                free(h);
            }
            fin.timed_out = op->timed_out;
        }
        s_op_finish(op, &fin);
        return;
    }
    }
}

/* A release the relay answered and carries to the home. A home that cannot
 * take it now (UNAVAILABLE: not its home for a moment, recovering; or no
 * answer) gets it again, at the home of the moment, for RELEASE_TRY_MS:
 * dropped, it would leave the object held at the home by a holder that
 * let go. */
typedef struct s_rel {
    relay_retry_t rt;           /* first: in r->rels */
    int mode;
    uint32_t count;
    Cairn__Syncd__Holder holder;
    cairn_caller_t as;          /* the local caller it is for */
    uint64_t until_ms;          /* cairn_now_ms() when it stops trying */
} s_rel_t;

/* ---- releases ---------------------------------------------------------- */

#define RELEASE_TRY_MS 10000

static void s_rel_free(relay_t *r, s_rel_t *rel)
{
    relay_retry_drop(r, &r->rels, &rel->rt);
}

static void s_rel_send(relay_t *r, s_rel_t *rel);

static int s_on_rel_retry(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_rel_t *rel = userdata;

    (void)loop;
    (void)id;
    rel->rt.timer = 0;
    s_rel_send(relay_of_peers(), rel);
    return 0;
}

/* The home could not take it (why): again soon, or given up. */
static void s_rel_again(relay_t *r, s_rel_t *rel, const char *why)
{
    rel->rt.id = 0;
    if (r->stopping || cairn_now_ms() >= rel->until_ms) {
        cairn_log_warn(0, "release", "name=%s pid=%d tid=%d msg=\"%s\", "
                       "given up: its home frees it when the process exits "
                       "or the home changes", rel->rt.name, rel->holder.pid,
                       rel->holder.tid, why);
        s_rel_free(r, rel);
        return;
    }
    uint64_t ms = BACKOFF_MIN_MS +
                  (uint64_t)(rand() % (BACKOFF_MAX_MS - BACKOFF_MIN_MS + 1));
    rel->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc), ms, 0,
                                      s_on_rel_retry, rel);
    if (rel->rt.timer <= 0)
        s_rel_free(r, rel);
}

static void s_on_release_reply(void *userdata, uint32_t node, int code,
                               const char *message, ProtobufCMessage *reply)
{
    relay_t *r = relay_of_peers();
    uint64_t id = (uint64_t)(uintptr_t)userdata;
    s_rel_t *rel = r ? (s_rel_t *)relay_retry_find(r->rels, id) : NULL;

    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (!rel)
        return;
    if (code == CAIRN_UNAVAILABLE || code == CAIRN_TIMEOUT) {
        s_rel_again(r, rel, message ? message : "");
        return;
    }
    if (code != CAIRN_OK)
        cairn_log_warn(0, "release", "name=%s node=%u msg=\"%s\", ignoring",
                       rel->rt.name, node, message ? message : "");
    s_rel_free(r, rel);
}

/* Sends rel to the home of the moment; frees it once taken or refused. */
static void s_rel_send(relay_t *r, s_rel_t *rel)
{
    relay_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__ReleaseRequest rl = CAIRN__SYNCD__RELEASE_REQUEST__INIT;
    Cairn__Syncd__Holder h = rel->holder;
    uint32_t home = cairn_view_quorum(r->view)
                        ? cairn_view_home(r->view, rel->rt.name) : 0;

    if (!home) {
        s_rel_again(r, rel, "no home now (no quorum or no membership)");
        return;
    }
    rl.name = rel->rt.name;
    rl.mode = rel->mode;
    rl.count = rel->count;
    rl.holder = &h;
    req.release = &rl;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
    cairn_log_debug("release-forward", "name=%s home=%u pid=%d tid=%d mode=%d",
                    rel->rt.name, home, h.pid, h.tid, rel->mode);
    if (home == r->self) {
        home_result_t hr;
        home_release(r->home, &rl, rel->as.uid, &hr);
        if (hr.code == CAIRN_UNAVAILABLE) {
            s_rel_again(r, rel, hr.message);
            return;
        }
        if (hr.code != CAIRN_OK)
            cairn_log_warn(0, "release", "name=%s msg=\"%s\", ignoring",
                           rel->rt.name, hr.message);
        s_rel_free(r, rel);
        return;
    }
    const char *ep = cairn_view_endpoint(r->view, home);
    rel->rt.id = relay_next_id(r);
    int k = ep ? cairn_peers_call_as(r->peers, home, ep, &req.base, CALL_MS,
                                     &rel->as, s_on_release_reply,
                                     (void *)(uintptr_t)rel->rt.id) : -ENOENT;
    if (k < 0)
        s_rel_again(r, rel, strerror(-k));
}

void relay_release_async(relay_t *r, uint32_t home, const char *name,
                         int mode, uint32_t count,
                         const Cairn__Syncd__Holder *holder,
                         const cairn_caller_t *as)
{
    s_rel_t *rel = calloc(1, sizeof(*rel));

    (void)home;   /* the home of the moment decides, not the grant's */
    if (!rel || !(rel->rt.name = strdup(name))) {
        free(rel);
        cairn_log_warn(0, "release", "name=%s msg=\"out of memory\", the home "
                       "frees it when the holder's process exits", name);
        return;
    }
    rel->mode = mode;
    rel->count = count;
    rel->holder = *holder;
    if (as)
        rel->as = *as;
    rel->until_ms = cairn_now_ms() + RELEASE_TRY_MS;
    relay_retry_push(&r->rels, &rel->rt);
    s_rel_send(r, rel);
}

/* ---- the handlers' entries: a new op, a retry re-bound ----------------- */

int relay_op_rebind(relay_t *r, relay_op_t *op, cairn_request_t *req,
                    int64_t timeout_ms)
{
    if (op->deferred)
        cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE,
                            "superseded by a retry of the same request (same tag)");
    op->deferred = cairn_request_defer(req);
    if (!op->deferred)
        return -ENOMEM;
    if (op->step == STEP_SEND || op->step == STEP_PREPARE || op->step == STEP_WAIT) {
        op->deadline = s_deadline(timeout_ms);
        op->retry_until = s_retry_until(timeout_ms, op->deadline);
        if (op->at_local_home) {
            s_op_stop_timer(op);
            if (op->deadline != UINT64_MAX)
                op->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                                 cairn_ms_left(op->deadline), 0,
                                                 s_on_op_timer, op);
        }
    }
    return CAIRN_REPLY_DEFERRED;
}

int relay_op_start(relay_t *r, cairn_request_t *req, const relay_req_t *q,
                   int32_t tid, uint64_t tag, int64_t timeout_ms, int step,
                   bool cache_ok, bool one_phase)
{
    char why[128];
    const char *bad = relay_unusable(r, why, sizeof(why));
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    relay_op_t *op = s_op_new(r, req, q, tid, tag, timeout_ms);
    if (!op)
        return -ENOMEM;
    op->step = step;
    op->cache_ok = cache_ok;
    op->one_phase = one_phase;
    relay_op_dispatch(op);
    return s_op_handler_end(op, req);
}

