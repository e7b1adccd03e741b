/* relay-failover.c - syncd's relay when membership changes: dead members
 * forgotten, objects handed over to their new homes, what this node holds
 * and caches announced to the homes that changed, waits re-sent, and the
 * recovery that holds back unknown names until every member has spoken.
 *
 * Design. Membership changes (view.c's callback): dead members' holdings and
 * waits dropped (home_node_dead), objects no longer ours handed over
 * (authoritative announce), local holdings and caches whose home changed
 * announced, pending waits whose home changed re-sent (after the announce,
 * same DEALER), condvar waiters whose home died woken, announce{done} to
 * every alive member; the home stays recovering until every alive member
 * said done for the current view, or 3 s.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay-private.h"
#include "util/array.h"

#define RECOVER_MS 3000         /* longest wait for every member's done */

/* ---- announcements and recovery ---------------------------------------- */

static void s_check_recovered(relay_t *r);
static void s_reannounce(relay_t *r, uint32_t node);

int relay_handle_announce(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const Cairn__Syncd__AnnounceRequest *an =
        ((const relay_req_t *)cairn_request_body(req))->announce;
    uint32_t from = c->kind == CAIRN_CALLER_LOCAL ? r->self : c->node;
    size_t bad = 0;

    if (!from)
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "announce: the "
                                  "sender is not a member node");
    for (size_t i = 0; i < an->n_objects; i++) {
        cairn_error_t err;
        const Cairn__Syncd__ObjectState *st = an->objects[i];
        if (!st || strnlen(st->name ? st->name : "", NAME_MAX_BYTES + 1) - 1 >= NAME_MAX_BYTES) {
            bad++;
            continue;
        }
        int k = home_import(r->home, from, st, &err);
        if (k < 0) {
            bad++;
            cairn_log_warn(0, "announce", "from=%u name=%s msg=\"%s\", ignoring",
                           from, st->name, err.message);
        } else if (k == 1) {
            cairn_log_warn(0, "announce-conflict", "from=%u name=%s msg=\"%s\"",
                           from, st->name, err.message);
        }
    }
    if (an->done && from <= CAIRN_VIEW_MAX_NODES) {
        bool again = from != r->self && an->view == r->view_id &&
                     r->done_view[from] == an->view && cairn_view_alive(r->view, from);
        r->done_view[from] = an->view;
        if (again)
            s_reannounce(r, from);
        s_check_recovered(r);
    }
    if (bad && bad == an->n_objects)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "announce: none "
                                  "of the %zu objects could be taken", bad);
    return relay_reply_empty(req);
}

static void s_recovered(relay_t *r, const char *how)
{
    char missing[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < r->n_members; i++)
        if (r->done_view[r->members[i]] != r->view_id && len < sizeof(missing) - 8)
            len += (size_t)snprintf(missing + len, sizeof(missing) - len, "%s%u",
                                    len ? "," : "", r->members[i]);
    r->recovering = false;
    home_set_recovering(r->home, false);
    if (r->recover_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), r->recover_timer);
    r->recover_timer = 0;
    cairn_log_info("recovery-done", "view=%016" PRIx64 " objects=%zu how=%s%s%s",
                   r->view_id, home_count(r->home), how, len ? " missing=" : "", missing);
}

static void s_check_recovered(relay_t *r)
{
    if (!r->recovering)
        return;
    for (size_t i = 0; i < r->n_members; i++)
        if (r->done_view[r->members[i]] != r->view_id)
            return;
    s_recovered(r, "all-done");
}

static int s_on_recover_timeout(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_t *r = userdata;
    r->recover_timer = 0;
    if (r->recovering)
        s_recovered(r, "timeout");
    return 0;
}

/* Objects to announce, grouped by their new home. */
typedef struct s_group {
    Cairn__Syncd__ObjectState **objs[CAIRN_VIEW_MAX_NODES + 1];
    size_t n[CAIRN_VIEW_MAX_NODES + 1], cap[CAIRN_VIEW_MAX_NODES + 1];
} s_group_t;

static void s_group_add(s_group_t *g, uint32_t node, Cairn__Syncd__ObjectState *st)
{
    if (!node || node > CAIRN_VIEW_MAX_NODES || !st)
        return;
    cairn_log_debug("announce-object", "to=%u name=%s holders=%zu holder_pid=%d "
                    "last_token=%" PRIu64 " cached_at=%u grant=%" PRIu64
                    " authoritative=%d", node, st->name, st->n_holders,
                    st->n_holders ? st->holders[0]->holder->pid : 0,
                    st->last_token, st->cached_at, st->cache_grant,
                    st->authoritative);
    if (CAIRN_GROW(g->objs[node], g->cap[node], g->n[node] + 1, 8) == 0)
        g->objs[node][g->n[node]++] = st;
}

static void s_group_free(s_group_t *g)
{
    for (size_t i = 0; i <= CAIRN_VIEW_MAX_NODES; i++)
        free(g->objs[i]);
}

/* What a holding is, as an announcement. */
static Cairn__Syncd__ObjectState *s_state_of_hold(relay_t *r,
                                                  const relay_proc_t *p,
                                                  const relay_hold_t *h,
                                                  relay_arena_t *a)
{
    Cairn__Syncd__ObjectState *st = relay_arena_alloc(a, sizeof(*st));
    Cairn__Syncd__Spec *sp = relay_arena_alloc(a, sizeof(*sp));
    Cairn__Syncd__Grant *g = relay_arena_alloc(a, sizeof(*g));
    Cairn__Syncd__Grant **gs = relay_arena_alloc(a, sizeof(*gs));
    Cairn__Syncd__Holder *hd = relay_arena_alloc(a, sizeof(*hd));

    if (!st || !sp || !g || !gs || !hd)
        return NULL;
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(sp);
    cairn__syncd__grant__init(g);
    cairn__syncd__holder__init(hd);
    sp->kind = h->kind;
    sp->value = h->value;
    sp->shared = h->shared;
    sp->no_cache = h->no_cache;
    hd->node = r->self;
    hd->pid = p->pid;
    hd->tid = h->tid;
    hd->uid = h->uid;
    g->holder = hd;
    g->mode = h->mode;
    g->token = h->token;
    g->count = h->count;
    gs[0] = g;
    st->name = h->name;
    st->spec = sp;
    st->owner_uid = h->uid;
    st->holders = gs;
    st->n_holders = 1;
    st->last_token = h->token;
    st->owner_died = h->owner_died;
    return st;
}

typedef struct s_cache_ctx {
    relay_t *r;
    s_group_t *g;
    relay_arena_t *a;
} s_cache_ctx_t;

/* A cached mutex, as an announcement to its home. */
static void s_announce_cache(void *ctx, const cache_entry_t *e)
{
    s_cache_ctx_t *cc = ctx;
    relay_t *r = cc->r;
    Cairn__Syncd__ObjectState *st = relay_arena_alloc(cc->a, sizeof(*st));
    Cairn__Syncd__Spec *sp = relay_arena_alloc(cc->a, sizeof(*sp));
    char *name = relay_arena_alloc(cc->a, strlen(e->name) + 1);

    if (!st || !sp || !name)
        return;
    strcpy(name, e->name);
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(sp);
    sp->kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
    st->name = name;
    st->spec = sp;
    st->owner_uid = e->uid;
    st->last_token = e->last_token;
    st->cached_at = r->self;
    st->cache_grant = e->grant;
    st->owner_died = e->owner_died;
    st->not_recoverable = e->not_recoverable;
    if (e->holder_pid) {
        Cairn__Syncd__Grant *g = relay_arena_alloc(cc->a, sizeof(*g));
        Cairn__Syncd__Grant **gs = relay_arena_alloc(cc->a, sizeof(*gs));
        Cairn__Syncd__Holder *hd = relay_arena_alloc(cc->a, sizeof(*hd));
        if (g && gs && hd) {
            cairn__syncd__grant__init(g);
            cairn__syncd__holder__init(hd);
            hd->node = r->self;
            hd->pid = e->holder_pid;
            hd->tid = e->holder_tid;
            hd->uid = e->uid;
            g->holder = hd;
            g->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
            g->token = e->last_token;
            gs[0] = g;
            st->holders = gs;
            st->n_holders = 1;
        }
    }
    s_group_add(cc->g, cairn_view_home(r->view, e->name), st);
}

static bool s_keep(void *ctx, const char *name)
{
    relay_t *r = ctx;
    return cairn_view_home(r->view, name) == r->self;
}

static void s_on_announce_reply(void *userdata, uint32_t node, int code,
                                const char *message, ProtobufCMessage *reply)
{
    if (code != CAIRN_OK)
        cairn_log_warn(0, "announce", "node=%u msg=\"%s\"", node,
                       message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Sends member m the objects g holds for it, and done for our view. */
static void s_send_announce(relay_t *r, uint32_t m, const s_group_t *g)
{
    relay_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__AnnounceRequest an = CAIRN__SYNCD__ANNOUNCE_REQUEST__INIT;
    const char *ep = cairn_view_endpoint(r->view, m);

    an.view = r->view_id;
    an.objects = g->objs[m];
    an.n_objects = g->n[m];
    an.done = true;
    req.announce = &an;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ANNOUNCE;
    if (!ep || cairn_peers_call(r->peers, m, ep, &req.base, CALL_MS,
                                s_on_announce_reply, NULL) < 0)
        cairn_log_warn(0, "announce", "node=%u msg=\"cannot send\", its "
                       "recovery ends by timeout", m);
}

/* Sends each alive member what it is now home of, and done. */
static void s_announce_all(relay_t *r, s_group_t *g)
{
    for (size_t i = 0; i < r->n_members; i++) {
        uint32_t m = r->members[i];
        if (m == r->self) {
            for (size_t k = 0; k < g->n[m]; k++) {
                cairn_error_t err;
                if (home_import(r->home, m, g->objs[m][k], &err) != 0)
                    cairn_log_warn(0, "announce", "name=%s msg=\"%s\"",
                                   g->objs[m][k]->name, err.message);
            }
            r->done_view[m] = r->view_id;
            continue;
        }
        s_send_announce(r, m, g);
    }
}

/* A member that said done for our view twice restarted (its syncd, not
 * its node: the view did not change) and lost its objects' state: what
 * we hold of objects it is home of, and done, go to it again, and our
 * waits there are sent again. */
static void s_reannounce(relay_t *r, uint32_t node)
{
    s_group_t *g = calloc(1, sizeof(*g));
    relay_arena_t a = { 0 };

    if (!g)
        return;
    for (relay_proc_t *p = r->procs; p; p = p->next)
        for (relay_hold_t *h = p->holds; h; h = h->next)
            if (cairn_view_home(r->view, h->name) == node)
                s_group_add(g, node, s_state_of_hold(r, p, h, &a));
    s_cache_ctx_t cc = { r, g, &a };
    cache_each(r->cache, s_announce_cache, &cc);
    cairn_log_info("reannounce", "node=%u objects=%zu msg=\"it said done for "
                   "this view again: restarted\"", node, g->n[node]);
    s_send_announce(r, node, g);
    s_group_free(g);
    free(g);
    relay_arena_clear(&a);
    for (relay_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (!op->finished && !op->at_local_home && op->timer <= 0 &&
            op->home == node && op->target)
            relay_op_dispatch(op);
    }
}

/* Ops whose home changed go to the new one; condvar waits whose home died
 * end (a spurious wakeup). */
static void s_resend_ops(relay_t *r, const uint32_t *dead, size_t n_dead)
{
    for (relay_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (op->finished || op->at_local_home || op->timer > 0 || !op->home ||
            !op->target)
            continue;
        bool died = false;
        for (size_t i = 0; i < n_dead; i++)
            died = died || dead[i] == op->home;
        if (died && op->step == STEP_WAIT) {
            relay_outcome_t o = { .code = CAIRN_OK, .home = op->home };
            op->attempt = 0;
            cairn_log_info("cond-wake", "name=%s pid=%d msg=\"home %u died: "
                           "spurious wakeup\"", op->target, op->pid, op->home);
            relay_op_result(op, &o);
            continue;
        }
        if (cairn_view_home(r->view, op->target) != op->home)
            relay_op_dispatch(op);
    }
}

static bool s_in(const uint32_t *set, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == x)
            return true;
    return false;
}

void relay_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    relay_t *r = userdata;
    uint32_t now[CAIRN_VIEW_MAX_NODES], dead[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, now), n_dead = 0;
    s_group_t *g = calloc(1, sizeof(*g));
    relay_arena_t a = { 0 };

    for (size_t i = 0; i < r->n_members; i++)
        if (!s_in(now, n, r->members[i]))
            dead[n_dead++] = r->members[i];
    memcpy(r->members, now, n * sizeof(now[0]));
    r->n_members = n;
    r->view_id = new_view;
    cairn_log_info("view", "view=%016" PRIx64 " members=%zu dead=%zu quorum=%d",
                   new_view, n, n_dead, cairn_view_quorum(r->view));
    for (size_t i = 0; i < n_dead; i++) {
        relay_hw_drop(r, dead[i], NULL, 0, "the node is dead");
        home_node_dead(r->home, dead[i]);
        cairn_peers_forget(r->peers, dead[i]);
        cairn_log_info("failover", "node=%u msg=\"dead or left: its holdings "
                       "released owner-died, its objects move\"", dead[i]);
    }
    if (!g) {
        cairn_log_err(0, "view", "msg=\"out of memory: no announcements\"");
        return;
    }
    if (!cairn_view_quorum(r->view)) {
        cache_drop_all(r->cache);
        free(g);
        return;
    }
    /* objects no longer ours: their state to their new homes */
    Cairn__Syncd__ObjectState **states = NULL;
    size_t ns = 0;
    if (home_hand_over(r->home, s_keep, r, &states, &ns, relay_arena_alloc,
                       &a) < 0)
        cairn_log_err(0, "hand-over", "msg=\"out of memory\"");
    for (size_t i = 0; i < ns; i++)
        s_group_add(g, cairn_view_home(r->view, states[i]->name), states[i]);
    if (ns)
        cairn_log_info("hand-over", "objects=%zu", ns);
    /* local holdings whose home changed */
    for (relay_proc_t *p = r->procs; p; p = p->next)
        for (relay_hold_t *h = p->holds; h; h = h->next) {
            uint32_t home = cairn_view_home(r->view, h->name);
            if (home == h->home)
                continue;
            h->home = home;
            s_group_add(g, home, s_state_of_hold(r, p, h, &a));
        }
    s_cache_ctx_t cc = { r, g, &a };
    cache_each(r->cache, s_announce_cache, &cc);
    r->recovering = true;
    home_set_recovering(r->home, true);
    s_announce_all(r, g);
    s_group_free(g);
    free(g);
    relay_arena_clear(&a);
    s_resend_ops(r, dead, n_dead);
    if (r->recover_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), r->recover_timer);
    r->recover_timer = cairn_loop_add_timer(cairn_service_loop(r->svc), RECOVER_MS,
                                            0, s_on_recover_timeout, r);
    s_check_recovered(r);
}

