/* recover.c - a page whose owner died: the segment's home finds what is
 * left of it.
 *
 * Design. A node whose request finds no living owner (a dead node on the
 * chain, a chain that comes back to it) asks the home of the segment's
 * name. The home asks every alive member for its state of the page
 * (probe, answered at once even by a busy page) and then:
 *   - a member owns it: that is the answer (the chain was only cut);
 *   - members hold read copies: the lowest of them is promoted to owner,
 *     the others its copyset (they all hold the page's last value: a copy
 *     exists only while nobody writes), and it is the answer;
 *   - nobody holds it: the page is lost; every member marks it so (a
 *     touch is SIGBUS, `cairn dsm show` lists it) and the answer says so.
 * One recovery per page at a time: requests for a page being recovered
 * join it. A member that does not answer a probe within the call's time
 * counts as holding nothing; a promotion refused (the copy went meanwhile)
 * probes again, up to three rounds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsmd.h"
#include "log.h"

#define S_ROUNDS_MAX 3

typedef struct s_waiter {
    struct s_waiter *next;
    dsm_recovered_fn fn;
    void *ud;
} s_waiter_t;

typedef struct dsm_recovery {
    struct dsm_recovery *next;
    dsmd_t *d;
    uint64_t id;
    char *name;
    uint64_t generation, page;
    s_waiter_t *waiters;
    size_t pending;           /* probes or the promotion in flight */
    int round;
    uint32_t owner;           /* a member that owns it, 0 none */
    uint32_t readers[CAIRN_VIEW_MAX_NODES];
    size_t n_readers;
} dsm_recovery_t;

typedef struct s_rcall {
    dsmd_t *d;
    uint64_t id;
} s_rcall_t;

static dsm_recovery_t *s_find(dsmd_t *d, uint64_t id)
{
    dsm_recovery_t *r = d->recoveries;
    while (r && r->id != id)
        r = r->next;
    return r;
}

static void s_finish(dsmd_t *d, dsm_recovery_t *r, uint32_t owner, int code, const char *msg)
{
    for (dsm_recovery_t **pp = &d->recoveries; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    while (r->waiters) {
        s_waiter_t *w = r->waiters;
        r->waiters = w->next;
        w->fn(d, w->ud, owner, code, msg);
        free(w);
    }
    free(r->name);
    free(r);
}

static void s_probe_round(dsmd_t *d, dsm_recovery_t *r);

static void s_on_promoted(void *ud, uint32_t node, int code, const char *message,
                          ProtobufCMessage *reply)
{
    s_rcall_t *rc = ud;
    dsmd_t *d = rc->d;
    dsm_recovery_t *r = s_find(d, rc->id);
    free(rc);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (!r)
        return;
    r->pending = 0;
    if (code == CAIRN__STATUS_CODE__STATUS_OK) {
        s_finish(d, r, node, 0, NULL);
        return;
    }
    cairn_log_warn(-ESTALE, "recover-promote", "segment=%s page=%" PRIu64 " node=%u: %s",
                   r->name, r->page, node, message ? message : "");
    s_probe_round(d, r);
}

static void s_on_lost_told(void *ud, uint32_t node, int code, const char *message,
                           ProtobufCMessage *reply)
{
    (void)ud;
    if (code != CAIRN__STATUS_CODE__STATUS_OK && code != CAIRN__STATUS_CODE__STATUS_NOT_FOUND)
        cairn_log_warn(-EAGAIN, "recover-lost", "node=%u: %s (it finds out when it asks)", node,
                       message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

static void s_mark_lost(dsmd_t *d, dsm_recovery_t *r)
{
    uint32_t ids[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(d->view, ids);
    uint64_t pages[1] = { r->page };
    Cairn__Dsmd__InvalidateRequest ir = CAIRN__DSMD__INVALIDATE_REQUEST__INIT;
    ir.name = r->name;
    ir.generation = r->generation;
    ir.n_pages = 1;
    ir.pages = pages;
    ir.lost = true;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_INVALIDATE;
    req.invalidate = &ir;
    for (size_t i = 0; i < n; i++) {
        const char *ep = cairn_view_endpoint(d->view, ids[i]);
        if (ids[i] != d->self && ep)
            cairn_peers_call(d->peers, ids[i], ep, &req.base, DSM_CALL_MS, s_on_lost_told, NULL);
    }
    dsm_seg_t *seg = dsm_seg_find(d, r->name);
    if (seg && seg->generation == r->generation)
        dsm_page_lose(d, seg, r->page, "its owner died and no alive node held a copy");
}

/* Every probe is in: decide. */
static void s_decide(dsmd_t *d, dsm_recovery_t *r)
{
    if (r->owner) {
        s_finish(d, r, r->owner, 0, NULL);
        return;
    }
    if (r->n_readers == 0) {
        /* a member not heard from yet may own it: no verdict before it is */
        for (uint32_t k = 1; k <= CAIRN_VIEW_MAX_NODES; k++) {
            const char *st = cairn_view_state(d->view, k);
            if (st && strcmp(st, "unknown") == 0) {
                char msg[120];
                snprintf(msg, sizeof msg, "member %u not heard from yet: it may own the page", k);
                s_finish(d, r, 0, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE, msg);
                return;
            }
        }
        cairn_log_err(-EIO, "page-lost", "segment=%s page=%" PRIu64
                      " reason=\"its owner died and no alive node holds a copy\" (recovery at "
                      "the home)", r->name, r->page);
        s_mark_lost(d, r);
        s_finish(d, r, 0, 0, NULL);
        return;
    }
    uint32_t to = r->readers[0];
    for (size_t i = 1; i < r->n_readers; i++)
        if (r->readers[i] < to)
            to = r->readers[i];
    if (to == d->self) {
        dsm_seg_t *seg = dsm_seg_find(d, r->name);
        if (seg && seg->generation == r->generation &&
            dsm_page_promote(d, seg, r->page, r->readers, r->n_readers) == 0) {
            s_finish(d, r, d->self, 0, NULL);
            return;
        }
        s_probe_round(d, r);
        return;
    }
    Cairn__Dsmd__PromoteRequest pr = CAIRN__DSMD__PROMOTE_REQUEST__INIT;
    pr.name = r->name;
    pr.generation = r->generation;
    pr.page = r->page;
    pr.n_copyset = r->n_readers;
    pr.copyset = r->readers;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_PROMOTE;
    req.promote = &pr;
    const char *ep = cairn_view_endpoint(d->view, to);
    s_rcall_t *rc = ep ? calloc(1, sizeof *rc) : NULL;
    if (rc) {
        rc->d = d;
        rc->id = r->id;
        r->pending = 1;
        if (cairn_peers_call(d->peers, to, ep, &req.base, DSM_CALL_MS, s_on_promoted, rc) == 0)
            return;
        r->pending = 0;
    }
    free(rc);
    s_probe_round(d, r);
}

static void s_take_probe(dsm_recovery_t *r, uint32_t node, uint32_t state, bool owner)
{
    if (owner)
        r->owner = node;
    else if (state == DSM_READ || state == DSM_WRITE)
        r->readers[r->n_readers++] = node;
}

static void s_on_probe(void *ud, uint32_t node, int code, const char *message,
                       ProtobufCMessage *reply)
{
    (void)message;
    s_rcall_t *rc = ud;
    dsmd_t *d = rc->d;
    dsm_recovery_t *r = s_find(d, rc->id);
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)reply;
    free(rc);
    if (r && code == CAIRN__STATUS_CODE__STATUS_OK && rep &&
        rep->msg_case == CAIRN__DSMD__REPLY__MSG_PROBE_REPLY)
        s_take_probe(r, node, rep->probe_reply->state, rep->probe_reply->owner);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (r && --r->pending == 0)
        s_decide(d, r);
}

static void s_probe_round(dsmd_t *d, dsm_recovery_t *r)
{
    if (++r->round > S_ROUNDS_MAX) {
        s_finish(d, r, 0, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE,
                 "the page's readers kept changing during its recovery");
        return;
    }
    r->owner = 0;
    r->n_readers = 0;
    r->pending = 1;   /* held while the probes go out */
    dsm_seg_t *seg = dsm_seg_find(d, r->name);
    if (seg && seg->generation == r->generation && r->page < seg->npages) {
        uint32_t state;
        bool owner;
        dsm_page_probe(d, seg, r->page, &state, &owner);
        s_take_probe(r, d->self, state, owner);
    }
    uint32_t ids[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(d->view, ids);
    Cairn__Dsmd__ProbeRequest pr = CAIRN__DSMD__PROBE_REQUEST__INIT;
    pr.name = r->name;
    pr.generation = r->generation;
    pr.page = r->page;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_PROBE;
    req.probe = &pr;
    for (size_t i = 0; i < n; i++) {
        const char *ep = cairn_view_endpoint(d->view, ids[i]);
        s_rcall_t *rc = ids[i] != d->self && ep ? calloc(1, sizeof *rc) : NULL;
        if (!rc)
            continue;
        rc->d = d;
        rc->id = r->id;
        if (cairn_peers_call(d->peers, ids[i], ep, &req.base, DSM_CALL_MS, s_on_probe, rc) == 0)
            r->pending++;
        else
            free(rc);
    }
    if (--r->pending == 0)
        s_decide(d, r);
}

void dsm_recover_run(dsmd_t *d, const char *name, uint64_t generation, uint64_t page,
                     dsm_recovered_fn fn, void *ud)
{
    s_waiter_t *w = calloc(1, sizeof *w);
    dsm_recovery_t *r = d->recoveries;
    while (r && !(r->generation == generation && r->page == page && strcmp(r->name, name) == 0))
        r = r->next;
    if (!w || (!r && !(r = calloc(1, sizeof *r)))) {
        free(w);
        fn(d, ud, 0, CAIRN__STATUS_CODE__STATUS_INTERNAL, "out of memory");
        return;
    }
    w->fn = fn;
    w->ud = ud;
    w->next = r->waiters;
    r->waiters = w;
    if (r->name)
        return;   /* joined the recovery under way */
    r->d = d;
    r->id = ++d->next_recovery;
    r->name = strdup(name);
    r->generation = generation;
    r->page = page;
    r->next = d->recoveries;
    d->recoveries = r;
    if (!r->name) {
        s_finish(d, r, 0, CAIRN__STATUS_CODE__STATUS_INTERNAL, "out of memory");
        return;
    }
    s_probe_round(d, r);
}

void dsm_recover_free(dsmd_t *d)
{
    while (d->recoveries)
        s_finish(d, d->recoveries, 0, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE, "dsmd stopping");
}

/* ---- the handlers -------------------------------------------------------------- */

static void s_reply_recovered(dsmd_t *d, void *ud, uint32_t owner, int code, const char *message)
{
    cairn_deferred_t *def = ud;
    if (code != 0) {
        cairn_deferred_fail(d->svc, def, code, message ? message : "");
        return;
    }
    Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
    Cairn__Dsmd__RecoverReply rr = CAIRN__DSMD__RECOVER_REPLY__INIT;
    rr.owner = owner;
    rep.msg_case = CAIRN__DSMD__REPLY__MSG_RECOVER_REPLY;
    rep.recover_reply = &rr;
    cairn_deferred_reply(d->svc, def, &rep.base);
}

int dsm_handle_recover(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__RecoverRequest *rr = r->recover;
    if (!dsm_name_ok(rr->name))
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT, "bad name");
    uint32_t home = cairn_view_home(d->view, rr->name);
    if (home != d->self)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE,
                                  "not home of %s: home is %u", rr->name, home);
    cairn_deferred_t *def = cairn_request_defer(req);
    if (!def)
        return -ENOMEM;
    dsm_recover_run(d, rr->name, rr->generation, rr->page, s_reply_recovered, def);
    return CAIRN_REPLY_DEFERRED;
}

/* The segment and page a probe or promotion names, or a failed reply. */
static dsm_seg_t *s_seg_page(dsmd_t *d, cairn_request_t *req, const char *name, uint64_t gen,
                             uint64_t page)
{
    dsm_seg_t *seg = dsm_seg_find(d, name);
    if (!seg || seg->generation != gen) {
        cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_NOT_FOUND, "no segment %s here", name);
        return NULL;
    }
    if (page >= seg->npages) {
        cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                           "page %" PRIu64 " of %" PRIu64, page, seg->npages);
        return NULL;
    }
    return seg;
}

int dsm_handle_probe(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__ProbeRequest *pr = r->probe;
    dsm_seg_t *seg = s_seg_page(d, req, pr->name, pr->generation, pr->page);
    if (!seg)
        return CAIRN_REPLY_NOW;
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__ProbeReply *out = cairn_request_alloc(req, sizeof *out);
    if (!out)
        return -ENOMEM;
    cairn__dsmd__probe_reply__init(out);
    bool owner;
    dsm_page_probe(d, seg, pr->page, &out->state, &owner);
    out->owner = owner;
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_PROBE_REPLY;
    rep->probe_reply = out;
    return CAIRN_REPLY_NOW;
}

int dsm_handle_promote(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__PromoteRequest *pr = r->promote;
    dsm_seg_t *seg = s_seg_page(d, req, pr->name, pr->generation, pr->page);
    if (!seg)
        return CAIRN_REPLY_NOW;
    if (dsm_page_promote(d, seg, pr->page, pr->copyset, pr->n_copyset) < 0)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION,
                                  "no copy of page %" PRIu64 " here any more", pr->page);
    return dsm_reply_done(req);
}
