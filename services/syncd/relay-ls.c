/* relay-ls.c - syncd's ls and show: what objects there are, asked of every
 * alive member (ls) or of one name's home (show), filtered to what the
 * caller may see.
 *
 * Design. ls fans out to every alive member (Request{ls local_only}, 2 s
 * each), keeps the replies until the last one or the time is up, and
 * answers the merged list sorted by name, the members that did not answer
 * in `unreachable`. show is asked of the name's home (relay_forward, the
 * home's reply passed through as it came); a home fills in the holder of
 * a mutex cached at its own node from its cache.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay-private.h"
#include "util/array.h"

#define LS_MS 2000              /* ls: how long each member may take */

/* ---- ls and show ------------------------------------------------------- */

/* The uid whose objects a caller may see: root sees all; a caller whose
 * user is unknown sees shared objects only. */
static uint32_t s_view_uid(const cairn_caller_t *c)
{
    return c->has_user ? c->uid : UINT32_MAX - 1;
}

/* ls fanned out to the members. */
struct relay_ls {
    struct relay_ls *next;
    uint64_t id;
    cairn_deferred_t *deferred;
    size_t pending;             /* members still to answer */
    uint32_t asked[CAIRN_VIEW_MAX_NODES];
    bool answered[CAIRN_VIEW_MAX_NODES];
    size_t n_asked;
    relay_rep_t **replies;      /* owned peer replies */
    Cairn__Syncd__ObjectInfo **own;  /* this node's objects (in chunks) */
    size_t n_own;
    size_t n_replies, cap_replies;
    void **chunks;              /* local objects' memory */
    size_t n_chunks, cap_chunks;
    int64_t timer;
};

/* Whether uid may see an object. */
static bool s_may_see(uint32_t uid, const Cairn__Syncd__ObjectInfo *info)
{
    return uid == 0 || info->shared || info->owner_uid == uid;
}

/* What the cache of this node adds to an object's info. */
static void s_enrich(relay_t *r, Cairn__Syncd__ObjectInfo *info,
                     home_alloc_fn alloc, void *ctx)
{
    cache_entry_t e;
    if (info->cached_at != r->self || !cache_find(r->cache, info->name, &e))
        return;
    if (e.last_token > info->token)
        info->token = e.last_token;
    if (!e.holder_pid) {
        info->state = (char *)(e.not_recoverable ? "not-recoverable" :
                               e.owner_died ? "owner-died" : "cached");
        return;
    }
    Cairn__Syncd__Grant *g = alloc(ctx, sizeof(*g));
    Cairn__Syncd__Grant **gs = alloc(ctx, sizeof(*gs));
    Cairn__Syncd__Holder *hd = alloc(ctx, sizeof(*hd));
    if (!g || !gs || !hd)
        return;
    cairn__syncd__grant__init(g);
    cairn__syncd__holder__init(hd);
    hd->node = r->self;
    hd->pid = e.holder_pid;
    hd->tid = e.holder_tid;
    hd->uid = e.uid;
    g->holder = hd;
    g->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
    g->token = e.last_token;
    gs[0] = g;
    info->holders = gs;
    info->n_holders = 1;
    info->state = (char *)"held";
}

/* The objects homed here that uid may see, into *ret (alloc). */
static int s_local_objects(relay_t *r, uint32_t uid, Cairn__Syncd__ObjectInfo ***ret,
                           size_t *ret_n, home_alloc_fn alloc, void *ctx)
{
    const char **names = NULL;
    size_t n = 0, k = 0;
    int e = home_names(r->home, uid, &names, &n, alloc, ctx);
    if (e < 0)
        return e;
    Cairn__Syncd__ObjectInfo **v = alloc(ctx, (n ? n : 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cairn__Syncd__ObjectInfo *info = alloc(ctx, sizeof(*info));
        if (!info)
            return -ENOMEM;
        cairn__syncd__object_info__init(info);
        if (!home_show(r->home, names[i], info, alloc, ctx) || !s_may_see(uid, info))
            continue;
        s_enrich(r, info, alloc, ctx);
        v[k++] = info;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

int relay_handle_show(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const char *name = in->show->name;
    relay_outcome_t o = { 0 };
    char why[128];
    const char *bad;

    if (!relay_name_ok(name, "show", &o))
        return relay_fail(req, &o);
    if ((bad = relay_unusable(r, why, sizeof(why))))
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    uint32_t home = cairn_view_home(r->view, name);
    if (home != r->self) {
        if (!relay_is_local(req))
            return cairn_request_fail(req, CAIRN_UNAVAILABLE, "not home of %s: "
                                      "home is %u", name, home);
        return relay_forward(r, req, (relay_req_t *)in, c->pid);
    }
    Cairn__Syncd__ObjectInfo *info = cairn_request_alloc(req, sizeof(*info));
    Cairn__Syncd__ShowReply *sr = cairn_request_alloc(req, sizeof(*sr));
    if (!info || !sr)
        return -ENOMEM;
    cairn__syncd__object_info__init(info);
    cairn__syncd__show_reply__init(sr);
    if (!home_show(r->home, name, info, relay_req_alloc, req) ||
        !s_may_see(s_view_uid(c), info))
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "no object %s%s", name,
                                  r->recovering ? " (this home is recovering: "
                                  "try again in a moment)" : "");
    s_enrich(r, info, relay_req_alloc, req);
    sr->object = info;
    ((relay_rep_t *)cairn_request_reply(req))->show_reply = sr;
    ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_SHOW_REPLY;
    return CAIRN_REPLY_NOW;
}

static relay_ls_t *s_ls_find(relay_t *r, uint64_t id)
{
    for (relay_ls_t *l = r->lss; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

void relay_ls_free(relay_t *r, relay_ls_t *l)
{
    for (relay_ls_t **pp = &r->lss; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    if (l->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), l->timer);
    if (l->deferred)
        cairn_deferred_fail(r->svc, l->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    for (size_t i = 0; i < l->n_replies; i++)
        protobuf_c_message_free_unpacked(&l->replies[i]->base, NULL);
    free(l->replies);
    relay_arena_t a = { .chunks = l->chunks, .n = l->n_chunks, .cap = l->cap_chunks };
    relay_arena_clear(&a);
    free(l);
}

static int s_cmp_info(const void *x, const void *y)
{
    const Cairn__Syncd__ObjectInfo *a = *(Cairn__Syncd__ObjectInfo *const *)x;
    const Cairn__Syncd__ObjectInfo *b = *(Cairn__Syncd__ObjectInfo *const *)y;
    return strcmp(a->name, b->name);
}

/* Every member answered or the time is up: the merged list. */
static void s_ls_finish(relay_t *r, relay_ls_t *l)
{
    relay_arena_t a = { .chunks = l->chunks, .n = l->n_chunks, .cap = l->cap_chunks };
    size_t total = l->n_own, k = 0, nu = 0;
    for (size_t i = 0; i < l->n_replies; i++)
        total += l->replies[i]->ls_reply ? l->replies[i]->ls_reply->n_objects : 0;
    relay_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__LsReply lr = CAIRN__SYNCD__LS_REPLY__INIT;
    Cairn__Syncd__ObjectInfo **v =
        relay_arena_alloc(&a, (total + 1) * sizeof(*v));
    uint32_t *un = relay_arena_alloc(&a, (l->n_asked + 1) * sizeof(*un));
    if (!v || !un) {
        l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
        cairn_deferred_fail(r->svc, l->deferred, CAIRN_INTERNAL, "out of memory");
        l->deferred = NULL;
        relay_ls_free(r, l);
        return;
    }
    for (size_t i = 0; i < l->n_own; i++)
        v[k++] = l->own[i];
    for (size_t i = 0; i < l->n_replies; i++)
        for (size_t j = 0; l->replies[i]->ls_reply && j < l->replies[i]->ls_reply->n_objects; j++)
            v[k++] = l->replies[i]->ls_reply->objects[j];
    qsort(v, k, sizeof(*v), s_cmp_info);
    for (size_t i = 0; i < l->n_asked; i++)
        if (!l->answered[i])
            un[nu++] = l->asked[i];
    lr.objects = v;
    lr.n_objects = k;
    lr.unreachable = un;
    lr.n_unreachable = nu;
    reply.ls_reply = &lr;
    reply.msg_case = CAIRN__SYNCD__REPLY__MSG_LS_REPLY;
    l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
    cairn_deferred_reply(r->svc, l->deferred, &reply.base);
    l->deferred = NULL;
    relay_ls_free(r, l);
}

static void s_on_ls_reply(void *userdata, uint32_t node, int code,
                          const char *message, ProtobufCMessage *reply)
{
    relay_t *r = relay_of_peers();
    relay_ls_t *l = r ? s_ls_find(r, (uint64_t)(uintptr_t)userdata) : NULL;
    relay_rep_t *rep = (relay_rep_t *)reply;

    if (!l) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    for (size_t i = 0; i < l->n_asked; i++)
        if (l->asked[i] == node && code == CAIRN_OK)
            l->answered[i] = true;
    if (code == CAIRN_OK && rep->msg_case == CAIRN__SYNCD__REPLY__MSG_LS_REPLY &&
        CAIRN_GROW(l->replies, l->cap_replies, l->n_replies + 1, 8) == 0)
        l->replies[l->n_replies++] = rep;
    else if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (--l->pending == 0)
        s_ls_finish(r, l);
}

int relay_handle_ls(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    uint32_t uid = s_view_uid(c);
    char why[128];
    const char *bad = relay_unusable(r, why, sizeof(why));

    if (in->ls->local_only || !relay_is_local(req)) {
        Cairn__Syncd__LsReply *lr = cairn_request_alloc(req, sizeof(*lr));
        if (!lr)
            return -ENOMEM;
        cairn__syncd__ls_reply__init(lr);
        if (s_local_objects(r, uid, &lr->objects, &lr->n_objects, relay_req_alloc, req) < 0)
            return -ENOMEM;
        ((relay_rep_t *)cairn_request_reply(req))->ls_reply = lr;
        ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_LS_REPLY;
        return CAIRN_REPLY_NOW;
    }
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    relay_ls_t *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->id = relay_next_id(r);
    l->next = r->lss;
    r->lss = l;
    /* this node's own objects, kept in the ls's chunks */
    relay_arena_t a = { 0 };
    if (s_local_objects(r, uid, &l->own, &l->n_own, relay_arena_alloc, &a) < 0)
        l->n_own = 0;
    l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
    l->deferred = cairn_request_defer(req);
    if (!l->deferred) {
        relay_ls_free(r, l);
        return -ENOMEM;
    }
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, members);
    relay_req_t q = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__LsRequest lq = CAIRN__SYNCD__LS_REQUEST__INIT;
    lq.local_only = true;
    q.ls = &lq;
    q.msg_case = CAIRN__SYNCD__REQUEST__MSG_LS;
    for (size_t i = 0; i < n; i++) {
        if (members[i] == r->self)
            continue;
        const char *ep = cairn_view_endpoint(r->view, members[i]);
        l->asked[l->n_asked++] = members[i];
        if (ep && cairn_peers_call_as(r->peers, members[i], ep, &q.base, LS_MS, c,
                                      s_on_ls_reply, (void *)(uintptr_t)l->id) == 0)
            l->pending++;
    }
    if (l->pending == 0)
        s_ls_finish(r, l);
    return CAIRN_REPLY_DEFERRED;
}

