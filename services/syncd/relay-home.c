/* relay-home.c - syncd's relay where it meets home.c: the glue (home.c's
 * callbacks and running a request on our home), revokes (our home asking
 * a caching node for its cache back; our cache answering a home), the
 * jobs queued out of home.c's callbacks, and the home side: the requests
 * of other nodes' relays served here, their waiters, their processes'
 * exits.
 *
 * Design. home.c calls back (answer, revoke) from inside its own calls and
 * must not be re-entered, so its answers to local ops and its revokes are
 * queued and run from a zero-delay timer; answers to remote waiters (hw: a
 * deferred reply to another relay, with its timeout timer) are sent at
 * once.
 *
 * A home's revoke travels on another connection than its grant, so it can
 * overtake the grant it revokes: a revoke of a mutex the cache does not
 * have while an acquire of it with cache_ok is on its way is kept (early)
 * until that acquire's answer, and applied to the grant once installed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "relay-private.h"
#include "util/array.h"
#include "util/clock.h"

#define REVOKE_RETRY_MS 200     /* a revoke whose peer did not answer */

/* ---- home.c glue ------------------------------------------------------- */

void relay_outcome_from_home(relay_outcome_t *o, const home_result_t *hr,
                             uint32_t home)
{
    memset(o, 0, sizeof(*o));
    o->code = hr->code;
    snprintf(o->message, sizeof(o->message), "%s", hr->message);
    o->token = hr->token;
    o->owner_died = hr->owner_died;
    o->cached = hr->cached;
    o->serial = hr->serial;
    o->generation = hr->generation;
    o->woken = hr->woken;
    o->home = home;
}

int relay_home_exec(relay_t *r, const relay_req_t *req, uint32_t uid,
                    void *cookie, home_result_t *hr)
{
    memset(hr, 0, sizeof(*hr));
    switch (req->msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
        return home_acquire(r->home, req->acquire, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_RELEASE:
        return home_release(r->home, req->release, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT:
        return home_consistent(r->home, req->consistent, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
        return home_barrier(r->home, req->barrier, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
        return home_cond(r->home, req->cond_wait, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL:
        return home_cond_signal(r->home, req->cond_signal, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_DESTROY:
        return home_destroy(r->home, req->destroy, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_DECLARE:
        return home_declare(r->home, req->declare, uid, hr);
    default:
        hr->code = CAIRN_UNSUPPORTED;
        snprintf(hr->message, sizeof(hr->message), "not a home request");
        return HOME_DONE;
    }
}

static void s_jobs_run_soon(relay_t *r);
static void s_hw_answer(relay_hw_t *hw, const home_result_t *hr);

/* home.c's answer to a waiter. */
static void s_home_answer(void *userdata, void *cookie, const home_result_t *hr)
{
    relay_t *r = userdata;
    int kind = *(int *)cookie;
    uint64_t queued = kind == COOKIE_HW ? ((relay_hw_t *)cookie)->queued_ns
                                        : ((relay_op_t *)cookie)->queued_ns;

    /* every wait at this home ends here: a local process's or a peer's */
    cairn_metric_add(r->m_waits, 1, cairn_code_name(hr->code));
    if (queued)
        cairn_metric_observe(r->m_wait_s, cairn_metrics_since(queued));
    if (kind == COOKIE_HW) {
        s_hw_answer((relay_hw_t *)cookie, hr);
        return;
    }
    relay_op_t *op = cookie;
    op->at_local_home = false;
    relay_outcome_from_home(&op->queued, hr, r->self);
    op->ready = true;
    if (CAIRN_GROW(r->jobs, r->cap_jobs, r->n_jobs + 1, 16) < 0) {
        cairn_log_err(0, "queue", "msg=\"out of memory queueing an answer, "
                      "the request is dropped\"");
        return;
    }
    r->jobs[r->n_jobs++] = (relay_job_t){ .kind = JOB_ANSWER,
                                          .op = op->attempt };
    s_jobs_run_soon(r);
}

static void s_home_revoke(void *userdata, uint32_t node, const char *name,
                          uint64_t grant)
{
    relay_t *r = userdata;
    char *copy = strdup(name);
    if (!copy || CAIRN_GROW(r->jobs, r->cap_jobs, r->n_jobs + 1, 16) < 0) {
        free(copy);
        cairn_log_err(0, "revoke", "name=%s node=%u msg=\"out of memory, the "
                      "revoke is retried at the next request\"", name, node);
        return;
    }
    r->jobs[r->n_jobs++] = (relay_job_t){ .kind = JOB_REVOKE, .node = node,
                                      .name = copy, .grant = grant };
    s_jobs_run_soon(r);
}

static uint64_t s_home_now_us(void *userdata)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t s_home_now_ms(void *userdata)
{
    return cairn_now_ms();
}

const home_ops_t relay_home_ops = {
    .answer = s_home_answer,
    .revoke = s_home_revoke,
    .now_us = s_home_now_us,
    .now_ms = s_home_now_ms,
};

/* ---- revokes (home side: asking; cache side: answering) ---------------- */

/* A revoke our home asked of another node, sent or to be re-sent. */
typedef struct s_out_revoke {
    relay_retry_t rt;           /* first: in r->out_revokes */
    relay_t *r;
    uint32_t node;
    uint64_t grant;
} s_out_revoke_t;

static void s_revoke_send(s_out_revoke_t *o);

static void s_out_revoke_free(relay_t *r, s_out_revoke_t *o)
{
    relay_retry_drop(r, &r->out_revokes, &o->rt);
}

static int s_on_revoke_retry(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_out_revoke_t *o = userdata;
    o->rt.timer = 0;
    s_revoke_send(o);
    return 0;
}

static void s_on_revoke_reply(void *userdata, uint32_t node, int code,
                              const char *message, ProtobufCMessage *reply)
{
    relay_t *r = relay_of_peers();
    s_out_revoke_t *o = r ? (s_out_revoke_t *)relay_retry_find(
                                r->out_revokes, (uint64_t)(uintptr_t)userdata)
                          : NULL;

    if (!o) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    if (code == CAIRN_OK) {
        relay_rep_t *rep = (relay_rep_t *)reply;
        const Cairn__Syncd__RevokeReply *rv =
            rep->msg_case == CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY ? rep->revoke_reply : NULL;
        home_revoked(r->home, o->rt.name, o->grant, rv ? rv->last_token : 0,
                     rv && rv->owner_died, rv && rv->not_recoverable);
        protobuf_c_message_free_unpacked(reply, NULL);
        s_out_revoke_free(r, o);
        return;
    }
    if (!cairn_view_alive(r->view, o->node)) {
        s_out_revoke_free(r, o);     /* home_node_dead takes the cache back */
        return;
    }
    cairn_log_warn(0, "revoke", "name=%s node=%u msg=\"%s\", retrying", o->rt.name,
                   o->node, message ? message : "");
    o->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc), REVOKE_RETRY_MS,
                                    0, s_on_revoke_retry, o);
}

static void s_revoke_send(s_out_revoke_t *o)
{
    relay_t *r = o->r;
    const char *ep = cairn_view_endpoint(r->view, o->node);
    relay_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__RevokeRequest rv = CAIRN__SYNCD__REVOKE_REQUEST__INIT;

    rv.name = o->rt.name;
    rv.grant = o->grant;
    req.revoke = &rv;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_REVOKE;
    o->rt.id = relay_next_id(r);
    if (!ep || cairn_peers_call(r->peers, o->node, ep, &req.base, CALL_MS,
                                s_on_revoke_reply, (void *)(uintptr_t)o->rt.id) < 0)
        o->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                        REVOKE_RETRY_MS, 0, s_on_revoke_retry, o);
}

/* Our home wants `name`'s cache back from node. */
static void s_revoke_start(relay_t *r, uint32_t node, const char *name,
                           uint64_t grant)
{
    cairn_log_info("revoke", "name=%s node=%u grant=%" PRIu64, name, node, grant);
    if (node == r->self) {
        uint64_t last = 0;
        bool died = false, nr = false;
        int k = cache_revoke(r->cache, name, grant, &last, &died, &nr);
        if (k == 0) {
            relay_revoke_t *w = calloc(1, sizeof(*w));
            if (w && (w->name = strdup(name))) {
                w->grant = grant;
                w->next = r->revokes;
                r->revokes = w;
            } else {
                free(w);
                cairn_log_err(0, "revoke", "name=%s msg=\"out of memory\"", name);
            }
            return;
        }
        home_revoked(r->home, name, grant, k == 1 ? last : 0, k == 1 && died,
                     k == 1 && nr);
        return;
    }
    s_out_revoke_t *o = calloc(1, sizeof(*o));
    if (!o || !(o->rt.name = strdup(name))) {
        free(o);
        cairn_log_err(0, "revoke", "name=%s msg=\"out of memory\"", name);
        return;
    }
    o->r = r;
    o->node = node;
    o->grant = grant;
    relay_retry_push(&r->out_revokes, &o->rt);
    s_revoke_send(o);
}

void relay_on_cache_revoked(void *userdata, const char *name, uint64_t grant,
                            uint64_t last_token, bool owner_died,
                            bool not_recoverable)
{
    relay_t *r = userdata;
    for (relay_revoke_t **pp = &r->revokes; *pp;) {
        relay_revoke_t *w = *pp;
        if (w->early || strcmp(w->name, name) != 0 || w->grant > grant) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->deferred) {
            relay_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
            Cairn__Syncd__RevokeReply rv = CAIRN__SYNCD__REVOKE_REPLY__INIT;
            rv.last_token = last_token;
            rv.owner_died = owner_died;
            rv.not_recoverable = not_recoverable;
            reply.revoke_reply = &rv;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
            cairn_deferred_reply(r->svc, w->deferred, &reply.base);
        } else {
            home_revoked(r->home, name, w->grant, last_token, owner_died,
                         not_recoverable);
        }
        cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%" PRIu64
                       " owner_died=%d", name, w->grant, last_token, owner_died);
        free(w->name);
        free(w);
    }
}

bool relay_cache_op_pending(relay_t *r, const char *name, const relay_op_t *except)
{
    for (relay_op_t *op = r->ops; op; op = op->next)
        if (op != except && op->cache_ok && !op->finished &&
            op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE &&
            strcmp(op->req->acquire->name, name) == 0)
            return true;
    return false;
}

static void s_revoke_reply(relay_t *r, cairn_deferred_t *d, uint64_t last,
                           bool died, bool nr)
{
    relay_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__RevokeReply rv = CAIRN__SYNCD__REVOKE_REPLY__INIT;
    rv.last_token = last;
    rv.owner_died = died;
    rv.not_recoverable = nr;
    reply.revoke_reply = &rv;
    reply.msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
    cairn_deferred_reply(r->svc, d, &reply.base);
}

void relay_early_revokes(relay_t *r, const char *name, uint64_t grant,
                         bool none_left)
{
    for (relay_revoke_t **pp = &r->revokes; *pp;) {
        relay_revoke_t *w = *pp;
        uint64_t last = 0;
        bool died = false, nr = false;
        int k = -ENOENT;
        if (!w->early || strcmp(w->name, name) != 0 ||
            (w->grant != grant && !none_left)) {
            pp = &w->next;
            continue;
        }
        if (grant && w->grant == grant)
            k = cache_revoke(r->cache, name, grant, &last, &died, &nr);
        cairn_log_debug("revoke-early", "name=%s grant=%" PRIu64 " k=%d", name,
                        w->grant, k);
        if (k == 0) {           /* held: the cache's callback answers */
            w->early = false;
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        s_revoke_reply(r, w->deferred, k == 1 ? last : 0, k == 1 && died,
                       k == 1 && nr);
        if (k == 1)
            cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%"
                           PRIu64, name, w->grant, last);
        free(w->name);
        free(w);
    }
}

int relay_handle_revoke(relay_t *r, cairn_request_t *req)
{
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__RevokeRequest *rv = in->revoke;
    Cairn__Syncd__RevokeReply *out;
    relay_outcome_t o = { 0 };
    uint64_t last = 0;
    bool died = false, nr = false;

    if (!relay_name_ok(rv->name, "revoke", &o))
        return relay_fail(req, &o);
    int k = cache_revoke(r->cache, rv->name, rv->grant, &last, &died, &nr);
    cairn_log_debug("revoke-asked", "name=%s grant=%" PRIu64 " k=%d", rv->name,
                    rv->grant, k);
    if (k == 0 || (k == -ENOENT && relay_cache_op_pending(r, rv->name, NULL))) {
        relay_revoke_t *w = calloc(1, sizeof(*w));
        if (!w || !(w->name = strdup(rv->name))) {
            free(w);
            return -ENOMEM;
        }
        w->grant = rv->grant;
        w->early = k != 0;
        w->deferred = cairn_request_defer(req);
        if (!w->deferred) {
            free(w->name);
            free(w);
            return -ENOMEM;
        }
        w->next = r->revokes;
        r->revokes = w;
        return CAIRN_REPLY_DEFERRED;
    }
    out = cairn_request_alloc(req, sizeof(*out));
    if (!out)
        return -ENOMEM;
    cairn__syncd__revoke_reply__init(out);
    if (k == 1) {   /* -ENOENT / -ESTALE: given back already, nothing to say */
        out->last_token = last;
        out->owner_died = died;
        out->not_recoverable = nr;
        cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%" PRIu64,
                       rv->name, rv->grant, last);
    }
    ((relay_rep_t *)cairn_request_reply(req))->revoke_reply = out;
    ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
    return CAIRN_REPLY_NOW;
}

/* ---- queued jobs ------------------------------------------------------- */

static int s_on_jobs(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_t *r = userdata;
    r->jobs_timer = 0;
    /* jobs queued while running go in the same array: index, not pointer */
    for (size_t i = 0; i < r->n_jobs; i++) {
        relay_job_t j = r->jobs[i];
        if (j.kind == JOB_ANSWER) {
            relay_op_t *op = relay_op_by_attempt(r, j.op);
            if (op && op->ready) {
                relay_outcome_t o = op->queued;
                op->ready = false;
                relay_op_result(op, &o);
            }
        } else {
            s_revoke_start(r, j.node, j.name, j.grant);
            free(j.name);
        }
    }
    r->n_jobs = 0;
    return 0;
}

static void s_jobs_run_soon(relay_t *r)
{
    if (r->jobs_timer <= 0)
        r->jobs_timer = cairn_loop_add_timer(cairn_service_loop(r->svc), 0, 0,
                                             s_on_jobs, r);
}

/* ---- the home side: other relays' waiters ------------------------------ */

void relay_hw_free(relay_hw_t *hw)
{
    relay_t *r = hw->r;
    for (relay_hw_t **pp = &r->hws; *pp; pp = &(*pp)->next)
        if (*pp == hw) {
            *pp = hw->next;
            break;
        }
    if (hw->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), hw->timer);
    if (hw->deferred)
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    free(hw);
}

static void s_hw_answer(relay_hw_t *hw, const home_result_t *hr)
{
    relay_t *r = hw->r;
    relay_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__AcquireReply a = CAIRN__SYNCD__ACQUIRE_REPLY__INIT;
    Cairn__Syncd__BarrierReply b = CAIRN__SYNCD__BARRIER_REPLY__INIT;
    Cairn__Syncd__CondReply c = CAIRN__SYNCD__COND_REPLY__INIT;

    if (hr->code != CAIRN_OK) {
        cairn_deferred_fail(r->svc, hw->deferred, hr->code, hr->message);
    } else {
        switch (hw->type) {
        case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
            a.token = hr->token;
            a.owner_died = hr->owner_died;
            a.cached = hr->cached;
            a.home = r->self;
            reply.acquire_reply = &a;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
            /* an hw is a waiter: one line per grant after a wait */
            cairn_log_info("grant", "node=%u pid=%d token=%" PRIu64 " owner_died=%d",
                               hw->node, hw->pid, hr->token, hr->owner_died);
            break;
        case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
            b.serial = hr->serial;
            b.generation = hr->generation;
            reply.barrier_reply = &b;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY;
            break;
        default:
            c.token = hr->token;
            c.woken = hr->woken;
            reply.cond_reply = &c;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_COND_REPLY;
            break;
        }
        cairn_deferred_reply(r->svc, hw->deferred, &reply.base);
    }
    hw->deferred = NULL;
    relay_hw_free(hw);
}

static int s_on_hw_timeout(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_hw_t *hw = userdata;
    hw->timer = 0;
    if (home_cancel(hw->r->home, hw)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "timed out after %" PRIu64 " ms", hw->timeout_ms);
        cairn_deferred_fail(hw->r->svc, hw->deferred, CAIRN_TIMEOUT, msg);
        hw->deferred = NULL;
        relay_hw_free(hw);
    }
    return 0;
}

static relay_hw_t *s_hw_find(relay_t *r, uint32_t node, int32_t pid,
                             int32_t tid, uint64_t tag, uint32_t type)
{
    if (!tag)
        return NULL;
    for (relay_hw_t *hw = r->hws; hw; hw = hw->next)
        if (hw->node == node && hw->pid == pid && hw->tid == tid &&
            hw->tag == tag && hw->type == type)
            return hw;
    return NULL;
}

void relay_hw_drop(relay_t *r, uint32_t node, const int32_t *pids, size_t n,
                   const char *why)
{
    for (relay_hw_t *hw = r->hws, *next; hw; hw = next) {
        bool hit = hw->node == node;
        next = hw->next;
        if (hit && pids) {
            hit = false;
            for (size_t i = 0; i < n; i++)
                hit = hit || pids[i] == hw->pid;
        }
        if (!hit)
            continue;
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE, why);
        hw->deferred = NULL;
        relay_hw_free(hw);
    }
}

/* Whether a Request case is one a client (through its relay) may send. */
static bool s_client_request(int msg_case)
{
    switch (msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
    case CAIRN__SYNCD__REQUEST__MSG_RELEASE:
    case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT:
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL:
    case CAIRN__SYNCD__REQUEST__MSG_DESTROY:
    case CAIRN__SYNCD__REQUEST__MSG_DECLARE:
        return true;
    default:
        return false;
    }
}

void *relay_member(ProtobufCMessage *m, const char *field)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);

    return f ? (char *)m + f->offset : NULL;
}

ProtobufCMessage *relay_copy_request(cairn_request_t *req,
                                     const relay_req_t *in, relay_req_t *q)
{
    const ProtobufCFieldDescriptor *of =
        protobuf_c_message_descriptor_get_field(in->base.descriptor, in->msg_case);
    const ProtobufCMessage *inner =
        *(ProtobufCMessage *const *)((const char *)in + of->offset);
    ProtobufCMessage *copy =
        cairn_request_alloc(req, inner->descriptor->sizeof_message);

    if (!copy)
        return NULL;
    memcpy(copy, inner, inner->descriptor->sizeof_message);
    *q = *in;
    *(ProtobufCMessage **)((char *)q + of->offset) = copy;
    return copy;
}

int relay_home_side(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    relay_req_t q;
    ProtobufCMessage *m;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    Cairn__Syncd__Holder **hp;
    const Cairn__Syncd__Holder *given = NULL;
    const Cairn__Syncd__CondWaitRequest *cw = NULL;
    const char *name;
    int64_t timeout = 0;
    uint64_t tag = 0;
    char why[128];
    const char *bad;
    uint32_t home;

    if (!s_client_request(in->msg_case))
        return cairn_request_fail(req, CAIRN_UNSUPPORTED, "not a client request");
    m = relay_copy_request(req, in, &q);
    if (!m)
        return -ENOMEM;
    hp = relay_member(m, "holder");
    name = *(char **)relay_member(m, "name");
    const int64_t *tp = relay_member(m, "timeout_ms");
    const uint64_t *gp = relay_member(m, "tag");
    if (tp)
        timeout = *tp;
    if (gp)
        tag = *gp;
    if (in->msg_case == CAIRN__SYNCD__REQUEST__MSG_COND_WAIT)
        cw = q.cond_wait;
    given = *hp;
    if (given)
        h = *given;
    h.node = c->node;
    h.uid = c->uid;
    if (h.tid == 0)
        h.tid = h.pid;
    *hp = &h;
    bad = relay_unusable(r, why, sizeof(why));
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    home = cairn_view_home(r->view, name);
    if (home != r->self)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "not home of %s: "
                                  "home is %u", name, home);
    /* a relay's retry of a wait that is still here: re-bind */
    relay_hw_t *hw = s_hw_find(r, c->node, h.pid, h.tid, tag, in->msg_case);
    if (hw) {
        bool waiting = !(cw && cw->phase != CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT);
        if (waiting) {
            cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                                "superseded by a retry of the same request");
            hw->deferred = cairn_request_defer(req);
            return hw->deferred ? CAIRN_REPLY_DEFERRED : -ENOMEM;
        }
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                            "superseded by a later phase of the same wait");
        hw->deferred = NULL;
        relay_hw_free(hw);
    }
    hw = calloc(1, sizeof(*hw));
    if (!hw)
        return -ENOMEM;
    hw->cookie = COOKIE_HW;
    hw->r = r;
    hw->type = in->msg_case;
    hw->node = c->node;
    hw->pid = h.pid;
    hw->tid = h.tid;
    hw->tag = tag;

    home_result_t hr;
    int k = relay_home_exec(r, &q, c->uid, hw, &hr);
    if (k < 0) {
        free(hw);
        return k;
    }
    if (k == HOME_DONE) {
        free(hw);
        if (hr.code != CAIRN_OK)
            return cairn_request_fail(req, hr.code, "%s", hr.message);
        relay_rep_t *reply = (relay_rep_t *)cairn_request_reply(req);
        relay_op_t fake = { 0 };
        fake.req = &q;
        relay_outcome_from_home(&fake.out, &hr, r->self);
        return relay_op_fill_reply(&fake, reply, relay_req_alloc, req) < 0
                   ? -ENOMEM : CAIRN_REPLY_NOW;
    }
    hw->queued_ns = cairn_now_ns();
    hw->deferred = cairn_request_defer(req);
    if (!hw->deferred) {
        home_cancel(r->home, hw);
        free(hw);
        return -ENOMEM;
    }
    hw->next = r->hws;
    r->hws = hw;
    if (timeout > 0) {
        hw->timeout_ms = (uint64_t)timeout;
        hw->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                         (uint64_t)timeout, 0, s_on_hw_timeout, hw);
    } else {
        hw->timer = -1;   /* waited: marks a grant after a wait for the log */
    }
    return CAIRN_REPLY_DEFERRED;
}

int relay_handle_gone(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const Cairn__Syncd__GoneRequest *g = ((const relay_req_t *)cairn_request_body(req))->gone;
    uint32_t node = c->kind == CAIRN_CALLER_LOCAL ? r->self : c->node;

    if (!node)
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "gone: the "
                                  "sender is not a member node");
    if (g->n_pids == 0)
        return relay_reply_empty(req);
    relay_hw_drop(r, node, g->pids, g->n_pids, "the process exited");
    home_gone(r->home, node, g->pids, g->n_pids);
    cairn_log_info("gone", "node=%u pids=%zu first=%d", node, g->n_pids, g->pids[0]);
    return relay_reply_empty(req);
}

