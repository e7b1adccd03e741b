/* place-hold.c - asking the policy, holding, carrying the run (place-hold.h).
 *
 * Design. The queue's rules are holdq.c's; this file does the talking.
 * Two peer sets, both to this very node: "sched" (the policy, over tcp:
 * in mode curve the ipc socket would refuse our CURVE client) and
 * "ghostd" (ourselves, for the placed run: going through our own Run
 * handler with node set is the one path a run for a given node takes, and
 * the user the run is for is vouched for as any carried run's is).
 *
 * Whether a policy runs is asked of the kernel, not of the policy: one
 * connect() on <rundir>/sched.sock (cairn_endpoint_probe) says at once
 * whether anything listens. While something waits, a tick every
 * GHOSTD_PLACE_ASK_EVERY_MS probes it, asks the waiting requests when it
 * listens, and places here those whose deadline passed; the tick stops
 * when nothing waits.
 *
 * The request is kept as a deep copy (packed and unpacked again: the
 * skeleton frees the original when the handler returns), the caller as a
 * copy, the reply deferred. The relayed RunReply gets our three fields
 * for the time of the send only: the strings it points to stay ours.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/client.h"
#include "log.h"
#include "peer.h"
#include "place-hold.h"
#include "sched.pb-c.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_DEFAULT_BUDGET_MS 30000 /* a request without Header.deadline_ms */
#define S_LAUNCH_ROOM_MS 5000     /* kept for the launch after a hold, at
                                     most (half the budget when smaller) */

/* What the queue's slot holds for one request. */
typedef struct s_held {
    place_hold_t *h;
    holdq_slot_t *slot;          /* its slot */
    cairn_deferred_t *d;         /* the request; owned until answered */
    cairn_caller_t caller;       /* on whose behalf */
    Cairn__Ghostd__Request *req; /* a deep copy of the Run request; owned */
    uint64_t deadline_ms;        /* monotonic: the request's own deadline */
    uint64_t held_ms;            /* from arrival to placement */
    uint32_t node;               /* where it was placed, 0 before */
    char placed_by[32];          /* RunReply.placed_by */
    char placement[512];         /* RunReply.placement */
} s_held_t;

struct place_hold {
    ghostd_t *gd;
    holdq_t q;                   /* the slots */
    s_held_t held[GHOSTD_PLACE_HOLD_MAX]; /* beside them, same index */
    cairn_peers_t *sched;        /* to this node's policy */
    cairn_peers_t *self;         /* to this node's ghostd */
    int64_t tick;                /* the timer while something waits, 0 */
};

/* ---- small helpers ------------------------------------------------------- */

static cairn_service_t *s_svc(const place_hold_t *h) { return h->gd->svc; }

static uint32_t s_self(const place_hold_t *h)
{
    return cairn_service_node(s_svc(h))->id;
}

/* The endpoint of this node's `service` (ipc or tcp), or NULL (ENOMEM, or
 * not declared). Caller frees. */
static char *s_endpoint(const place_hold_t *h, const char *service, bool ipc)
{
    const cairn_description_t *d = cairn_service_description(s_svc(h));
    const cairn_node_desc_t *me = cairn_service_node(s_svc(h));

    return ipc ? cairn_description_ipc_endpoint(d, me, service)
               : cairn_description_tcp_endpoint(d, me, service, false);
}

/* Whether anything listens on this node's sched socket now. */
static bool s_policy_up(const place_hold_t *h)
{
    _cleanup_free_ char *ep = s_endpoint(h, "sched", true);

    return ep && cairn_endpoint_probe(ep, "sched", 0, NULL) == 0;
}

static s_held_t *s_held_of(place_hold_t *h, holdq_slot_t *slot)
{
    return &h->held[slot - h->q.slots];
}

/* The request copy, freed, and the slot free for reuse. */
static void s_release(s_held_t *e)
{
    if (e->req)
        protobuf_c_message_free_unpacked(&e->req->base, NULL);
    e->req = NULL;
    e->d = NULL;
    holdq_answered(&e->h->q, e->slot);
}

static void s_fail(s_held_t *e, int code, const char *msg)
{
    cairn_log_info("placement", "slot=%td code=%s msg=\"%s\"",
                   e->slot - e->h->q.slots, cairn_code_name(code), msg);
    cairn_deferred_fail(s_svc(e->h), e->d, code, msg);
    s_release(e);
}

/* ---- the run, carried ------------------------------------------------- */

/* Our own ghostd's answer to the placed run: relayed with our fields. */
static void s_on_run(void *userdata, uint32_t node, int code, const char *message,
                     ProtobufCMessage *reply)
{
    s_held_t *e = userdata;
    Cairn__Ghostd__Reply *r = (Cairn__Ghostd__Reply *)reply;

    (void)node;
    holdq_returned(e->slot);
    if (code != CAIRN_OK || !r || !r->run_reply) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s (placed on node %u by %s: %s)",
                 message && *message ? message : "run failed", e->node,
                 e->placed_by, e->placement);
        s_fail(e, code != CAIRN_OK ? code : CAIRN_INTERNAL, msg);
    } else {
        Cairn__Ghostd__RunReply *rr = r->run_reply;
        char *by = rr->placed_by, *why = rr->placement;
        rr->placed_by = e->placed_by;
        rr->placement = e->placement;
        rr->held_ms = e->held_ms;
        cairn_log_info("placed", "gpid=%s node=%u by=%s held_ms=%llu why=\"%s\"",
                       rr->job && rr->job->gpid ? rr->job->gpid : "?", e->node,
                       e->placed_by, (unsigned long long)e->held_ms, e->placement);
        cairn_deferred_reply(s_svc(e->h), e->d, reply);
        rr->placed_by = by;
        rr->placement = why;
        s_release(e);
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Placed: the run goes to our own ghostd with node set, which launches it
 * here or carries it to `node` as for --node. */
static void s_run_on(s_held_t *e, uint32_t node, const char *by, const char *why)
{
    place_hold_t *h = e->h;
    uint64_t now = cairn_now_ms();
    _cleanup_free_ char *ep = s_endpoint(h, "ghostd", false);

    e->node = node;
    e->held_ms = now - e->slot->arrived_ms;
    snprintf(e->placed_by, sizeof e->placed_by, "%s", by);
    snprintf(e->placement, sizeof e->placement, "%s", why);
    e->req->run->node = node;
    uint64_t left = e->deadline_ms > now ? e->deadline_ms - now : 1;
    int r = ep ? cairn_peers_call_as(h->self, s_self(h), ep, &e->req->base,
                                     (uint32_t)left, &e->caller, s_on_run, e)
               : -ENOMEM;
    if (r == 0) {
        holdq_asked(e->slot, now);
        return;
    }
    char msg[768];
    snprintf(msg, sizeof msg, "run: placed on node %u by %s but not sent to "
             "this node's ghostd: %s", node, by, strerror(-r));
    s_fail(e, CAIRN_UNAVAILABLE, msg);
}

/* ---- asking the policy ----------------------------------------------- */

/* The policy's answer: the run goes where it says, unless the request was
 * placed meanwhile. */
static void s_on_place(void *userdata, uint32_t node, int code, const char *message,
                       ProtobufCMessage *reply)
{
    s_held_t *e = userdata;
    const Cairn__Sched__Reply *r = (const Cairn__Sched__Reply *)reply;
    const Cairn__Sched__PlaceReply *p = r ? r->place_reply : NULL;
    char why[512];

    (void)node;
    holdq_returned(e->slot);
    if (code == CAIRN_UNAVAILABLE || code == CAIRN_TIMEOUT) {
        holdq_ask_failed(e->slot);   /* asked again once a policy is up */
    } else if (e->slot->state != HOLDQ_WAITING || !e->req) {
        ;   /* placed already: this late answer is dropped */
    } else if (code != CAIRN_OK || !p) {
        snprintf(why, sizeof why, "the scheduler policy answered %s (%s): "
                 "placed on this node", cairn_code_name(code != CAIRN_OK ? code
                 : CAIRN_DECODE_ERROR), code != CAIRN_OK && message ? message
                 : "no place_reply");
        if (holdq_place(e->slot))
            s_run_on(e, s_self(e->h), "local", why);
    } else if (p->node < 1 || p->node > 255) {
        snprintf(why, sizeof why, "the scheduler policy %s answered node %u, "
                 "not a node id: placed on this node", p->policy ? p->policy : "?",
                 p->node);
        if (holdq_place(e->slot))
            s_run_on(e, s_self(e->h), "local", why);
    } else if (holdq_place(e->slot)) {
        s_run_on(e, p->node, p->policy && *p->policy ? p->policy : "sched",
                 p->reason ? p->reason : "");
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Sends Request{place} for e to this node's policy. */
static void s_ask(s_held_t *e, uint64_t now)
{
    place_hold_t *h = e->h;
    const Cairn__Ghostd__RunRequest *run = e->req->run;
    Cairn__Sched__PlaceRequest pr = CAIRN__SCHED__PLACE_REQUEST__INIT;
    Cairn__Sched__Request req = CAIRN__SCHED__REQUEST__INIT;
    _cleanup_free_ char *ep = s_endpoint(h, "sched", false);
    uint64_t left = e->slot->deadline_ms > now ? e->slot->deadline_ms - now : 1;

    pr.uid = e->caller.uid;
    pr.argv = run->argv;
    pr.n_argv = run->n_argv;
    pr.name = run->name;
    req.msg_case = CAIRN__SCHED__REQUEST__MSG_PLACE;
    req.place = &pr;
    if (left > GHOSTD_PLACE_ASK_TIMEOUT_MS)
        left = GHOSTD_PLACE_ASK_TIMEOUT_MS;
    int r = ep ? cairn_peers_call(h->sched, s_self(h), ep, &req.base,
                                  (uint32_t)left, s_on_place, e)
               : -ENOENT;
    if (r == 0)
        holdq_asked(e->slot, now);
    else
        cairn_log_warn(r, "placement", "msg=\"cannot ask this node's sched, "
                       "asked again in %d ms\"", GHOSTD_PLACE_ASK_EVERY_MS);
}

/* ---- the tick ------------------------------------------------------------ */

static void s_tick_stop(place_hold_t *h)
{
    if (h->tick)
        cairn_loop_cancel_timer(cairn_service_loop(s_svc(h)), h->tick);
    h->tick = 0;
}

/* One pass over what waits: expired ones here, the others asked when a
 * policy listens. */
static void s_pass(place_hold_t *h)
{
    uint64_t now = cairn_now_ms();
    bool up = s_policy_up(h);
    char why[160];

    if (!up)
        holdq_policy_gone(&h->q);
    for (size_t i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++) {
        s_held_t *e = &h->held[i];
        switch (holdq_next(&h->q.slots[i], now, up, GHOSTD_PLACE_ASK_TIMEOUT_MS)) {
        case HOLDQ_EXPIRED:
            snprintf(why, sizeof why, "no scheduler policy answered within "
                     "%llu ms: placed on this node",
                     (unsigned long long)(now - e->slot->arrived_ms));
            if (holdq_place(e->slot))
                s_run_on(e, s_self(h), "local", why);
            break;
        case HOLDQ_ASK:
            s_ask(e, now);
            break;
        case HOLDQ_WAIT:
            break;
        }
    }
    if (holdq_waiting(&h->q) == 0)
        s_tick_stop(h);
}

static int s_on_tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    (void)loop;
    (void)id;
    s_pass(userdata);
    return 0;
}

/* ---- the entry point ----------------------------------------------------- */

/* The hold deadline of a request with `budget` ms: room left for the
 * launch, and never more than the hold's maximum. */
static uint64_t s_hold_ms(const place_hold_t *h, uint64_t budget)
{
    uint64_t room = budget / 2 < S_LAUNCH_ROOM_MS ? budget / 2 : S_LAUNCH_ROOM_MS;
    uint64_t hold = budget - room;

    uint64_t max = cairn_description_sched(cairn_service_description(s_svc(h)))->placement_hold_ms;

    return hold < max ? hold : max;
}

/* e's copy of req's body and caller, and its deadlines. */
static int s_keep(s_held_t *e, cairn_request_t *req, uint64_t budget)
{
    const ProtobufCMessage *body = cairn_request_body(req);
    size_t len = protobuf_c_message_get_packed_size(body);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);

    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(body, buf);
    e->req = cairn__ghostd__request__unpack(NULL, len, buf);
    if (!e->req || !e->req->run)
        return -ENOMEM;
    e->caller = *cairn_request_caller(req);
    e->deadline_ms = cairn_now_ms() + budget;
    e->node = 0;
    return 0;
}

int place_hold_run(place_hold_t *h, cairn_request_t *req, const char **ret_here)
{
    const cairn_description_t *d = cairn_service_description(s_svc(h));
    const Cairn__Header *hdr = cairn_request_header(req);
    uint64_t budget = hdr && hdr->deadline_ms ? hdr->deadline_ms : S_DEFAULT_BUDGET_MS;
    holdq_slot_t *slot;

    *ret_here = NULL;
    if (!cairn_description_node_runs(d, cairn_service_node(s_svc(h)), "sched")) {
        *ret_here = "no scheduler on this node";
        return 0;
    }
    if (!cairn_service_keypair(s_svc(h))) {
        *ret_here = "security mode none: no node vouches for a job's user on "
                    "another node, so a job runs where it is asked for";
        return 0;
    }
    if (budget > GHOSTD_MAX_DEADLINE_MS)
        budget = GHOSTD_MAX_DEADLINE_MS;
    uint64_t now = cairn_now_ms();
    if (holdq_add(&h->q, now, s_hold_ms(h, budget), NULL, &slot) < 0)
        return cairn_request_fail(req, CAIRN_BUSY, "run: %d placements are held "
                                  "waiting for a scheduler policy on node %u; "
                                  "try again later", GHOSTD_PLACE_HOLD_MAX,
                                  s_self(h));
    s_held_t *e = s_held_of(h, slot);
    e->h = h;
    e->slot = slot;
    if (s_keep(e, req, budget) < 0 || !(e->d = cairn_request_defer(req))) {
        s_release(e);
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    slot->data = e;
    if (s_policy_up(h))
        s_ask(e, now);   /* answered from the loop, never from here */
    if (!h->tick) {
        h->tick = cairn_loop_add_timer(cairn_service_loop(s_svc(h)),
                                       GHOSTD_PLACE_ASK_EVERY_MS,
                                       GHOSTD_PLACE_ASK_EVERY_MS, s_on_tick, h);
        if (h->tick < 0)
            h->tick = 0;   /* the next request's pass tries again */
    }
    if (slot->state == HOLDQ_WAITING && !slot->asking)
        cairn_log_info("held", "slot=%td uid=%u argv0=\"%s\" hold_ms=%llu "
                       "msg=\"no scheduler policy listens on this node\"",
                       slot - h->q.slots, e->caller.uid, e->req->run->argv[0],
                       (unsigned long long)(slot->deadline_ms - now));
    return CAIRN_REPLY_DEFERRED;
}

/* ---- start, stop --------------------------------------------------------- */

int place_hold_start(ghostd_t *gd)
{
    place_hold_t *h = calloc(1, sizeof *h);

    if (!h)
        return -ENOMEM;
    h->gd = gd;
    holdq_init(&h->q);
    h->sched = cairn_peers_new(gd->svc, "sched", &cairn__sched__reply__descriptor);
    h->self = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
    if (!h->sched || !h->self) {
        cairn_peers_free(h->sched);
        cairn_peers_free(h->self);
        free(h);
        return -ENOMEM;
    }
    gd->hold = h;
    return 0;
}

void place_hold_stop(ghostd_t *gd)
{
    place_hold_t *h = gd->hold;
    char msg[256];

    if (!h)
        return;
    s_tick_stop(h);
    h->sched = cairn_peers_free(h->sched);   /* no callback runs after */
    h->self = cairn_peers_free(h->self);
    for (size_t i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++) {
        s_held_t *e = &h->held[i];
        if (h->q.slots[i].state == HOLDQ_FREE || !e->d)
            continue;
        if (h->q.slots[i].state == HOLDQ_RUNNING)
            snprintf(msg, sizeof msg, "ghostd of node %u is stopping: the run "
                     "was sent to node %u unanswered (cairn ps shows whether "
                     "it started)", s_self(h), e->node);
        else
            snprintf(msg, sizeof msg, "ghostd of node %u is stopping: the run "
                     "was never placed", s_self(h));
        s_fail(e, CAIRN_UNAVAILABLE, msg);
    }
    free(h);
    gd->hold = NULL;
}
