/* directory.c - which segments exist: the home's directory entries, the
 * opens and removals it serializes, and the cluster-wide ls and show.
 *
 * Design. A segment's entry lives at its home (rendezvous hashing of the
 * name over the alive dsmds, view.h), which makes it on the first open
 * with CREATE and answers every later open with it: size, owner, mode,
 * the creator (every page's first owner) and a generation (a name
 * removed and made again is another segment). When the view changes,
 * every node announces the segments it holds to their homes (an open
 * carrying the entry), so a new home learns what its dead predecessor
 * knew. Opens need quorum: two sides of a partition must not both make a
 * name.
 *
 * ls and show fan out to every alive member (2 s each) and merge: ls the
 * entries each home keeps, show each node's pages of the segment. rm
 * asks the home, which refuses while any process maps the segment
 * (asked of every node that joined it) and otherwise forgets the entry
 * and tells the nodes to free their pages.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dsmd.h"
#include "log.h"

#define S_GATHER_MS 2000
#define S_LOST_LISTED 64

bool dsm_may(uint32_t uid, uint32_t gid, uint32_t owner, uint32_t group, uint32_t mode,
             unsigned want)
{
    if (uid == 0)
        return true;
    unsigned bits = uid == owner ? (mode >> 6) : gid == group ? (mode >> 3) : mode;
    return (bits & want) == want;
}

static dsm_dirent_t *s_dir_find(dsmd_t *d, const char *name)
{
    for (dsm_dirent_t *e = d->dir; e; e = e->next)
        if (strcmp(e->rec.name, name) == 0)
            return e;
    return NULL;
}

static void s_dirent_free(dsm_dirent_t *e)
{
    if (e)
        free(e->rec.name);
    free(e);
}

static void s_dir_remove(dsmd_t *d, dsm_dirent_t *e)
{
    for (dsm_dirent_t **pp = &d->dir; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    s_dirent_free(e);
}

void dsm_dir_free(dsmd_t *d)
{
    while (d->dir)
        s_dir_remove(d, d->dir);
}

static void s_dirent_add_node(dsm_dirent_t *e, uint32_t node)
{
    for (size_t i = 0; i < e->rec.n_nodes; i++)
        if (e->nodes[i] == node)
            return;
    if (e->rec.n_nodes < CAIRN_VIEW_MAX_NODES)
        e->nodes[e->rec.n_nodes++] = node;
}

static dsm_dirent_t *s_dirent_new(dsmd_t *d, const Cairn__Dsmd__Segment *from)
{
    dsm_dirent_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    cairn__dsmd__segment__init(&e->rec);
    e->rec.name = strdup(from->name);
    if (!e->rec.name) {
        free(e);
        return NULL;
    }
    e->rec.size = from->size;
    e->rec.uid = from->uid;
    e->rec.gid = from->gid;
    e->rec.mode = from->mode;
    e->rec.creator = from->creator;
    e->rec.generation = from->generation;
    e->rec.nodes = e->nodes;
    for (size_t i = 0; i < from->n_nodes; i++)
        s_dirent_add_node(e, from->nodes[i]);
    e->next = d->dir;
    d->dir = e;
    return e;
}

/* The home's answer to an open (or an announcement): 0 with *ret, or a
 * status code with msg. */
static int s_dir_open(dsmd_t *d, const Cairn__Dsmd__OpenRequest *o, const Cairn__Dsmd__Segment *ann,
                      uint32_t uid, uint32_t gid, dsm_dirent_t **ret, bool *created, char *msg,
                      size_t msize)
{
    dsm_dirent_t *e = s_dir_find(d, o->name);
    *created = false;
    if (ann) {
        if (!e && !(e = s_dirent_new(d, ann)))
            return snprintf(msg, msize, "out of memory"), CAIRN__STATUS_CODE__STATUS_INTERNAL;
        if (e->rec.generation != ann->generation) {
            snprintf(msg, msize, "segment %s of generation %" PRIx64 " is known here as %" PRIx64,
                     o->name, ann->generation, e->rec.generation);
            return CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION;
        }
        for (size_t i = 0; i < ann->n_nodes; i++)
            s_dirent_add_node(e, ann->nodes[i]);
        *ret = e;
        return 0;
    }
    if (!e) {
        if (!(o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_CREATE)) {
            snprintf(msg, msize, "no segment %s", o->name);
            return CAIRN__STATUS_CODE__STATUS_NOT_FOUND;
        }
        Cairn__Dsmd__Segment rec = CAIRN__DSMD__SEGMENT__INIT;
        rec.name = o->name;
        rec.size = o->size;
        rec.uid = uid;
        rec.gid = gid;
        rec.mode = o->mode ? o->mode : 0600;
        rec.creator = o->node;
        while (rec.generation == 0)
            if (getrandom(&rec.generation, sizeof rec.generation, 0) != sizeof rec.generation)
                rec.generation = cairn_now_ns();
        if (!(e = s_dirent_new(d, &rec)))
            return snprintf(msg, msize, "out of memory"), CAIRN__STATUS_CODE__STATUS_INTERNAL;
        *created = true;
        cairn_log_info("segment-made", "segment=%s size=%" PRIu64 " uid=%u mode=%o creator=%u",
                       o->name, o->size, uid, rec.mode, o->node);
    } else if ((o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_CREATE) &&
               (o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_EXCL)) {
        snprintf(msg, msize, "segment %s exists", o->name);
        return CAIRN__STATUS_CODE__STATUS_ALREADY_EXISTS;
    } else if (o->size && o->size != e->rec.size) {
        snprintf(msg, msize, "segment %s has %" PRIu64 " bytes, not %" PRIu64, o->name,
                 e->rec.size, o->size);
        return CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION;
    }
    unsigned want = (o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_RDONLY) ? 4 : 6;
    if (!dsm_may(uid, gid, e->rec.uid, e->rec.gid, e->rec.mode, want)) {
        snprintf(msg, msize, "segment %s (uid %u, mode %03o) may not be %s by uid %u", o->name,
                 e->rec.uid, e->rec.mode, want == 4 ? "read" : "read and written", uid);
        return CAIRN__STATUS_CODE__STATUS_PERMISSION_DENIED;
    }
    s_dirent_add_node(e, o->node);
    *ret = e;
    return 0;
}

/* Whether this node may home names now; code and msg when not. */
static int s_homing(dsmd_t *d, const char *name, uint32_t *home, char *msg, size_t msize)
{
    if (!cairn_view_known(d->view)) {
        snprintf(msg, msize, "membership unknown: no answer from clusterd yet");
        return CAIRN__STATUS_CODE__STATUS_UNAVAILABLE;
    }
    if (!cairn_view_quorum(d->view)) {
        snprintf(msg, msize, "no quorum: %zu of %zu members alive", cairn_view_alive_count(d->view),
                 cairn_view_known_count(d->view));
        return CAIRN__STATUS_CODE__STATUS_UNAVAILABLE;
    }
    *home = cairn_view_home(d->view, name);
    if (*home == 0) {
        snprintf(msg, msize, "no alive dsmd to home %s", name);
        return CAIRN__STATUS_CODE__STATUS_UNAVAILABLE;
    }
    return 0;
}

#define S_OPEN_RETRY_MS 100     /* an open the home could not take yet: again after */
#define S_OPEN_PATIENCE_MS 5000 /* ... for this long (a view settling, a home moving) */

/* An open on its way to the name's home. */
typedef struct s_open_call {
    dsmd_t *d;
    uint64_t conn_id;
    char *name;
    uint64_t size;
    uint32_t flags, mode, uid, gid;
    uint64_t deadline_ms;
} s_open_call_t;

static void s_open_try(s_open_call_t *oc);

static void s_open_done(s_open_call_t *oc, const Cairn__Dsmd__Segment *rec, bool created,
                        int code, const char *msg)
{
    dsm_fdsock_opened(oc->d, oc->conn_id, rec, created, code, msg);
    free(oc->name);
    free(oc);
}

static int s_on_open_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    (void)loop; (void)id;
    s_open_try(userdata);
    return 0;
}

/* UNAVAILABLE (membership or quorum not there yet, views that differ for a
 * moment) is tried again until the open's patience runs out. */
static void s_open_failed(s_open_call_t *oc, int code, const char *msg)
{
    if ((code == CAIRN__STATUS_CODE__STATUS_UNAVAILABLE ||
         code == CAIRN__STATUS_CODE__STATUS_TIMEOUT) &&
        cairn_now_ms() + S_OPEN_RETRY_MS < oc->deadline_ms &&
        cairn_loop_add_timer(cairn_service_loop(oc->d->svc), S_OPEN_RETRY_MS, 0, s_on_open_timer,
                             oc) > 0)
        return;
    s_open_done(oc, NULL, false, code, msg);
}

static void s_on_opened(void *ud, uint32_t node, int code, const char *message,
                        ProtobufCMessage *reply)
{
    s_open_call_t *oc = ud;
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)reply;
    char msg[300];
    if (code == CAIRN__STATUS_CODE__STATUS_OK && rep &&
        rep->msg_case == CAIRN__DSMD__REPLY__MSG_OPEN_REPLY && rep->open_reply->segment) {
        s_open_done(oc, rep->open_reply->segment, rep->open_reply->created, 0, NULL);
    } else {
        snprintf(msg, sizeof msg, "home node %u: %s", node, message ? message : "no answer");
        s_open_failed(oc, code == CAIRN__STATUS_CODE__STATUS_OK ? CAIRN__STATUS_CODE__STATUS_INTERNAL
                                                              : code, msg);
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

static void s_open_try(s_open_call_t *oc)
{
    dsmd_t *d = oc->d;
    char msg[300];
    uint32_t home = 0;
    int code = s_homing(d, oc->name, &home, msg, sizeof msg);
    Cairn__Dsmd__OpenRequest o = CAIRN__DSMD__OPEN_REQUEST__INIT;
    o.name = oc->name;
    o.size = oc->size;
    o.flags = oc->flags;
    o.mode = oc->mode;
    o.node = d->self;
    if (code == 0 && home == d->self) {
        dsm_dirent_t *e = NULL;
        bool created;
        code = s_dir_open(d, &o, NULL, oc->uid, oc->gid, &e, &created, msg, sizeof msg);
        if (code == 0)
            s_open_done(oc, &e->rec, created, 0, NULL);
        else
            s_open_failed(oc, code, msg);
        return;
    }
    if (code == 0) {
        Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
        req.msg_case = CAIRN__DSMD__REQUEST__MSG_OPEN;
        req.open = &o;
        cairn_caller_t as = { .kind = CAIRN_CALLER_LOCAL, .node = d->self, .has_user = true,
                              .uid = oc->uid, .gid = oc->gid };
        const char *ep = cairn_view_endpoint(d->view, home);
        if (ep && cairn_peers_call_as(d->peers, home, ep, &req.base, S_GATHER_MS, &as, s_on_opened,
                                      oc) == 0)
            return;
        snprintf(msg, sizeof msg, "home node %u of %s cannot be asked", home, oc->name);
        code = CAIRN__STATUS_CODE__STATUS_UNAVAILABLE;
    }
    s_open_failed(oc, code, msg);
}

void dsm_dir_open(dsmd_t *d, uint64_t conn_id, const char *name, uint64_t size, uint32_t flags,
                  uint32_t mode, uint32_t uid, uint32_t gid)
{
    s_open_call_t *oc = calloc(1, sizeof *oc);
    if (!oc || !(oc->name = strdup(name))) {
        free(oc);
        dsm_fdsock_opened(d, conn_id, NULL, false, CAIRN__STATUS_CODE__STATUS_INTERNAL,
                          "out of memory");
        return;
    }
    oc->d = d;
    oc->conn_id = conn_id;
    oc->size = size;
    oc->flags = flags;
    oc->mode = mode;
    oc->uid = uid;
    oc->gid = gid;
    oc->deadline_ms = cairn_now_ms() + S_OPEN_PATIENCE_MS;
    s_open_try(oc);
}

int dsm_handle_open(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__OpenRequest *o = r->open;
    const cairn_caller_t *c = cairn_request_caller(req);
    char msg[300];
    if (!dsm_name_ok(o->name) || o->node == 0 || o->size % DSM_PAGE != 0)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                                  "bad name, node or size");
    if (!o->announce && !c->has_user)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_PERMISSION_DENIED,
                                  "an open from another node needs its user vouched for "
                                  "(security mode curve); %s has none",
                                  c->kind == CAIRN_CALLER_NETWORK ? "a tcp peer in mode none"
                                                                  : "this caller");
    uint32_t home = 0;
    int code = s_homing(d, o->name, &home, msg, sizeof msg);
    if (code == 0 && home != d->self && !o->announce) {
        snprintf(msg, sizeof msg, "not home of %s: home is %u", o->name, home);
        code = CAIRN__STATUS_CODE__STATUS_UNAVAILABLE;
    }
    dsm_dirent_t *e = NULL;
    bool created = false;
    if (code == 0)
        code = s_dir_open(d, o, o->announce, c->has_user ? c->uid : UINT32_MAX,
                          c->has_user ? c->gid : UINT32_MAX, &e, &created, msg, sizeof msg);
    if (code != 0)
        return cairn_request_fail(req, code, "%s", msg);
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__OpenReply *orep = cairn_request_alloc(req, sizeof *orep);
    if (!orep)
        return -ENOMEM;
    cairn__dsmd__open_reply__init(orep);
    orep->segment = &e->rec;   /* packed before anything can change it */
    orep->created = created;
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_OPEN_REPLY;
    rep->open_reply = orep;
    return CAIRN_REPLY_NOW;
}

/* ---- after a view change ----------------------------------------------------- */

static void s_on_announced(void *ud, uint32_t node, int code, const char *message,
                           ProtobufCMessage *reply)
{
    (void)ud;
    if (code != CAIRN__STATUS_CODE__STATUS_OK)
        cairn_log_warn(-EAGAIN, "announce", "home=%u: %s", node, message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

static void s_announce(dsmd_t *d, uint32_t home, const Cairn__Dsmd__Segment *rec)
{
    const char *ep = cairn_view_endpoint(d->view, home);
    Cairn__Dsmd__OpenRequest o = CAIRN__DSMD__OPEN_REQUEST__INIT;
    o.name = rec->name;
    o.size = rec->size;
    o.node = d->self;
    o.announce = (Cairn__Dsmd__Segment *)rec;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_OPEN;
    req.open = &o;
    if (ep)
        cairn_peers_call(d->peers, home, ep, &req.base, S_GATHER_MS, s_on_announced, NULL);
}

void dsm_dir_view(dsmd_t *d)
{
    if (!cairn_view_known(d->view) || !cairn_view_quorum(d->view))
        return;
    /* entries this node is no longer home of go to their new homes */
    for (dsm_dirent_t *e = d->dir, *next; e; e = next) {
        next = e->next;
        uint32_t home = cairn_view_home(d->view, e->rec.name);
        if (home != 0 && home != d->self) {
            s_announce(d, home, &e->rec);
            s_dir_remove(d, e);
        }
    }
    /* and the segments this node holds are announced to theirs */
    for (dsm_seg_t *s = d->segs; s; s = s->next) {
        if (s->removed)
            continue;
        uint32_t self = d->self;
        Cairn__Dsmd__Segment rec = CAIRN__DSMD__SEGMENT__INIT;
        rec.name = s->name;
        rec.size = s->size;
        rec.uid = s->uid;
        rec.gid = s->gid;
        rec.mode = s->mode;
        rec.creator = s->creator;
        rec.generation = s->generation;
        rec.n_nodes = 1;
        rec.nodes = &self;
        uint32_t home = cairn_view_home(d->view, s->name);
        if (home == d->self) {
            dsm_dirent_t *e = s_dir_find(d, s->name);
            if (!e)
                s_dirent_new(d, &rec);
            else if (e->rec.generation == s->generation)
                s_dirent_add_node(e, d->self);
        } else if (home != 0) {
            s_announce(d, home, &rec);
        }
    }
}

/* ---- ls, show, rm: fanned out -------------------------------------------------- */

typedef enum { G_LS, G_SHOW, G_RM } s_kind_t;

typedef struct dsm_gather {
    struct dsm_gather *next;
    dsmd_t *d;
    uint64_t id;
    s_kind_t kind;
    cairn_deferred_t *deferred;
    uint32_t uid, gid;           /* who asked */
    bool has_user;
    char *name;
    uint64_t generation;         /* rm */
    size_t pending;
    int64_t timer;
    Cairn__Dsmd__Reply *replies[CAIRN_VIEW_MAX_NODES];
    uint32_t from[CAIRN_VIEW_MAX_NODES];
    size_t n_replies;
    uint32_t unreachable[CAIRN_VIEW_MAX_NODES];
    size_t n_unreachable;
} dsm_gather_t;

typedef struct s_gather_call {
    dsmd_t *d;
    uint64_t id;
} s_gather_call_t;

static void s_gather_free(dsmd_t *d, dsm_gather_t *g)
{
    for (dsm_gather_t **pp = &d->gathers; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    for (size_t i = 0; i < g->n_replies; i++)
        if (g->replies[i])
            protobuf_c_message_free_unpacked(&g->replies[i]->base, NULL);
    if (g->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(d->svc), g->timer);
    free(g->name);
    free(g);
}

static void s_gather_finish(dsmd_t *d, dsm_gather_t *g);

/* The gather a call was for (NULL: it ended meanwhile); frees the call. */
static dsm_gather_t *s_gather_of(s_gather_call_t *gc)
{
    dsm_gather_t *g = gc->d->gathers;
    while (g && g->id != gc->id)
        g = g->next;
    free(gc);
    return g;
}

static void s_on_part(void *ud, uint32_t node, int code, const char *message,
                      ProtobufCMessage *reply)
{
    (void)message;
    s_gather_call_t *gc = ud;
    dsmd_t *d = gc->d;
    dsm_gather_t *g = s_gather_of(gc);
    if (!g) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    if (code == CAIRN__STATUS_CODE__STATUS_OK && reply) {
        g->replies[g->n_replies] = (Cairn__Dsmd__Reply *)reply;
        g->from[g->n_replies++] = node;
    } else {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        if (code != CAIRN__STATUS_CODE__STATUS_NOT_FOUND)
            g->unreachable[g->n_unreachable++] = node;
    }
    if (--g->pending == 0)
        s_gather_finish(d, g);
}

static int s_on_gather_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    (void)loop; (void)id;
    dsm_gather_t *g = userdata;
    g->timer = 0;
    g->pending = 0;
    s_gather_finish(g->d, g);
    return 0;
}

/* This node's pages of seg. */
static void s_node_pages(dsmd_t *d, const dsm_seg_t *seg, Cairn__Dsmd__NodePages *np,
                         uint64_t *lost)
{
    cairn__dsmd__node_pages__init(np);
    np->node = d->self;
    np->generation = seg->generation;
    np->lost_pages = lost;
    for (uint64_t i = 0; i < seg->npages; i++) {
        const dsm_page_t *pg = &seg->pages[i];
        switch (pg->state) {
        case DSM_INVALID: np->invalid++; break;
        case DSM_READ: np->read++; break;
        case DSM_WRITE: np->write++; break;
        default:
            if (np->n_lost_pages < S_LOST_LISTED)
                lost[np->n_lost_pages++] = i;
            np->lost++;
        }
        if (pg->hint == d->self && pg->state != DSM_LOST)
            np->owned++;
    }
    np->processes = (uint32_t)dsm_seg_processes(seg);
    np->faults = seg->faults;
    np->fetches = seg->fetches;
    np->prefetched = seg->prefetched;
    np->invalidations = seg->invalidations;
}

static bool s_may_see(const dsm_gather_t *g, const Cairn__Dsmd__Segment *rec)
{
    return g->has_user && dsm_may(g->uid, g->gid, rec->uid, rec->gid, rec->mode, 4);
}

static int s_cmp_seg(const void *a, const void *b)
{
    return strcmp((*(Cairn__Dsmd__Segment *const *)a)->name,
                  (*(Cairn__Dsmd__Segment *const *)b)->name);
}

static void s_finish_ls(dsmd_t *d, dsm_gather_t *g)
{
    size_t n = 0, cap = 0;
    for (dsm_dirent_t *e = d->dir; e; e = e->next)
        cap++;
    for (size_t i = 0; i < g->n_replies; i++)
        if (g->replies[i]->msg_case == CAIRN__DSMD__REPLY__MSG_LS_REPLY)
            cap += g->replies[i]->ls_reply->n_segments;
    Cairn__Dsmd__Segment **v = calloc(cap ? cap : 1, sizeof *v);
    if (!v) {
        cairn_deferred_fail(d->svc, g->deferred, CAIRN__STATUS_CODE__STATUS_INTERNAL,
                            "out of memory");
        return;
    }
    for (dsm_dirent_t *e = d->dir; e; e = e->next)
        if (s_may_see(g, &e->rec))
            v[n++] = &e->rec;
    for (size_t i = 0; i < g->n_replies; i++)
        if (g->replies[i]->msg_case == CAIRN__DSMD__REPLY__MSG_LS_REPLY)
            for (size_t k = 0; k < g->replies[i]->ls_reply->n_segments; k++)
                if (s_may_see(g, g->replies[i]->ls_reply->segments[k]))
                    v[n++] = g->replies[i]->ls_reply->segments[k];
    qsort(v, n, sizeof *v, s_cmp_seg);
    Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
    Cairn__Dsmd__LsReply ls = CAIRN__DSMD__LS_REPLY__INIT;
    ls.n_segments = n;
    ls.segments = v;
    ls.n_unreachable = g->n_unreachable;
    ls.unreachable = g->unreachable;
    rep.msg_case = CAIRN__DSMD__REPLY__MSG_LS_REPLY;
    rep.ls_reply = &ls;
    cairn_deferred_reply(d->svc, g->deferred, &rep.base);
    free(v);
}

static int s_cmp_np(const void *a, const void *b)
{
    uint32_t x = (*(Cairn__Dsmd__NodePages *const *)a)->node;
    uint32_t y = (*(Cairn__Dsmd__NodePages *const *)b)->node;
    return x < y ? -1 : x > y;
}

/* The show parts: this node's and every reply's, of the generation of
 * the entry (rec). */
static size_t s_collect_pages(dsmd_t *d, dsm_gather_t *g, const Cairn__Dsmd__Segment *rec,
                              Cairn__Dsmd__NodePages **v, Cairn__Dsmd__NodePages *own,
                              uint64_t *lost)
{
    size_t n = 0;
    dsm_seg_t *seg = dsm_seg_find(d, g->name);
    if (seg && seg->generation == rec->generation) {
        s_node_pages(d, seg, own, lost);
        v[n++] = own;
    }
    for (size_t i = 0; i < g->n_replies; i++) {
        Cairn__Dsmd__Reply *r = g->replies[i];
        if (r->msg_case != CAIRN__DSMD__REPLY__MSG_SHOW_REPLY)
            continue;
        for (size_t k = 0; k < r->show_reply->n_nodes; k++)
            if (r->show_reply->nodes[k]->generation == rec->generation)
                v[n++] = r->show_reply->nodes[k];
    }
    qsort(v, n, sizeof *v, s_cmp_np);
    return n;
}

/* The entry of the name: the home's, else any node's record. */
static const Cairn__Dsmd__Segment *s_gathered_rec(dsmd_t *d, dsm_gather_t *g,
                                                  Cairn__Dsmd__Segment *tmp)
{
    dsm_dirent_t *e = s_dir_find(d, g->name);
    if (e)
        return &e->rec;
    for (size_t i = 0; i < g->n_replies; i++)
        if (g->replies[i]->msg_case == CAIRN__DSMD__REPLY__MSG_SHOW_REPLY &&
            g->replies[i]->show_reply->segment)
            return g->replies[i]->show_reply->segment;
    dsm_seg_t *s = dsm_seg_find(d, g->name);
    if (!s)
        return NULL;
    cairn__dsmd__segment__init(tmp);
    tmp->name = s->name;
    tmp->size = s->size;
    tmp->uid = s->uid;
    tmp->gid = s->gid;
    tmp->mode = s->mode;
    tmp->creator = s->creator;
    tmp->generation = s->generation;
    return tmp;
}

static void s_send_rm_local(dsmd_t *d, uint32_t node, const char *name, uint64_t generation);
static void s_rm_local(dsmd_t *d, const char *name, uint64_t generation);

static void s_finish_show_rm(dsmd_t *d, dsm_gather_t *g)
{
    Cairn__Dsmd__Segment tmp;
    const Cairn__Dsmd__Segment *rec = s_gathered_rec(d, g, &tmp);
    if (!rec || (g->kind == G_SHOW && !s_may_see(g, rec))) {
        cairn_deferred_fail(d->svc, g->deferred, CAIRN__STATUS_CODE__STATUS_NOT_FOUND,
                            rec ? "no segment of that name you may see" : "no such segment");
        return;
    }
    Cairn__Dsmd__NodePages *v[CAIRN_VIEW_MAX_NODES + 1], own;
    uint64_t lost[S_LOST_LISTED];
    size_t n = s_collect_pages(d, g, rec, v, &own, lost);
    if (g->kind == G_RM) {
        char who[512] = "";
        size_t procs = 0, len = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i]->processes > 0) {
                procs += v[i]->processes;
                len += (size_t)snprintf(who + len, len < sizeof who ? sizeof who - len : 0,
                                        "%s%u", len ? "," : "", v[i]->node);
            }
        if (procs > 0) {
            char msg[700];
            snprintf(msg, sizeof msg, "segment %s is mapped by %zu processes (nodes %s)", g->name,
                     procs, who);
            cairn_deferred_fail(d->svc, g->deferred, CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION,
                                msg);
            return;
        }
        dsm_dirent_t *e = s_dir_find(d, g->name);
        uint64_t gen = rec->generation;
        uint32_t nodes[CAIRN_VIEW_MAX_NODES];
        size_t k = 0;
        if (e) {
            k = e->rec.n_nodes;
            memcpy(nodes, e->nodes, k * sizeof nodes[0]);
            s_dir_remove(d, e);
        }
        for (size_t i = 0; i < k; i++)
            if (nodes[i] != d->self)
                s_send_rm_local(d, nodes[i], g->name, gen);
        s_rm_local(d, g->name, gen);
        cairn_log_info("segment-removed", "segment=%s", g->name);
        Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
        Cairn__Dsmd__Empty done = CAIRN__DSMD__EMPTY__INIT;
        rep.msg_case = CAIRN__DSMD__REPLY__MSG_DONE;
        rep.done = &done;
        cairn_deferred_reply(d->svc, g->deferred, &rep.base);
        return;
    }
    Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
    Cairn__Dsmd__ShowReply sh = CAIRN__DSMD__SHOW_REPLY__INIT;
    sh.segment = (Cairn__Dsmd__Segment *)rec;
    sh.n_nodes = n;
    sh.nodes = v;
    sh.n_unreachable = g->n_unreachable;
    sh.unreachable = g->unreachable;
    rep.msg_case = CAIRN__DSMD__REPLY__MSG_SHOW_REPLY;
    rep.show_reply = &sh;
    cairn_deferred_reply(d->svc, g->deferred, &rep.base);
}

static void s_gather_finish(dsmd_t *d, dsm_gather_t *g)
{
    if (g->pending > 0)
        return;
    if (g->kind == G_LS)
        s_finish_ls(d, g);
    else
        s_finish_show_rm(d, g);
    s_gather_free(d, g);
}

/* Fans req out to every alive member but this node. */
static int s_gather(dsmd_t *d, cairn_request_t *req, s_kind_t kind, const char *name,
                    const Cairn__Dsmd__Request *part)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    dsm_gather_t *g = calloc(1, sizeof *g);
    if (!g || (name && !(g->name = strdup(name)))) {
        free(g);
        return -ENOMEM;
    }
    g->d = d;
    g->id = ++d->next_gather;
    g->kind = kind;
    g->has_user = c->has_user;
    g->uid = c->uid;
    g->gid = c->gid;
    g->deferred = cairn_request_defer(req);
    if (!g->deferred) {
        free(g->name);
        free(g);
        return -ENOMEM;
    }
    g->next = d->gathers;
    d->gathers = g;
    uint32_t ids[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(d->view, ids);
    g->pending = 1;   /* held until every call went out */
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == d->self)
            continue;
        const char *ep = cairn_view_endpoint(d->view, ids[i]);
        s_gather_call_t *gc = ep ? calloc(1, sizeof *gc) : NULL;
        if (gc) {
            gc->d = d;
            gc->id = g->id;
            if (cairn_peers_call(d->peers, ids[i], ep, &part->base, S_GATHER_MS, s_on_part, gc) == 0) {
                g->pending++;
                continue;
            }
        }
        free(gc);
        g->unreachable[g->n_unreachable++] = ids[i];
    }
    g->timer = cairn_loop_add_timer(cairn_service_loop(d->svc), S_GATHER_MS + 500, 0,
                                    s_on_gather_timer, g);
    if (--g->pending == 0)
        s_gather_finish(d, g);
    return CAIRN_REPLY_DEFERRED;
}

int dsm_handle_ls(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    if (!r->ls->local_only) {
        Cairn__Dsmd__LsRequest ls = CAIRN__DSMD__LS_REQUEST__INIT;
        ls.local_only = true;
        Cairn__Dsmd__Request part = CAIRN__DSMD__REQUEST__INIT;
        part.msg_case = CAIRN__DSMD__REQUEST__MSG_LS;
        part.ls = &ls;
        return s_gather(d, req, G_LS, NULL, &part);
    }
    size_t n = 0;
    for (dsm_dirent_t *e = d->dir; e; e = e->next)
        n++;
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__LsReply *ls = cairn_request_alloc(req, sizeof *ls);
    Cairn__Dsmd__Segment **v = cairn_request_alloc(req, (n ? n : 1) * sizeof *v);
    if (!ls || !v)
        return -ENOMEM;
    cairn__dsmd__ls_reply__init(ls);
    for (dsm_dirent_t *e = d->dir; e; e = e->next)
        v[ls->n_segments++] = &e->rec;
    ls->segments = v;
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_LS_REPLY;
    rep->ls_reply = ls;
    return CAIRN_REPLY_NOW;
}

int dsm_handle_show(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__ShowRequest *s = r->show;
    if (!dsm_name_ok(s->name))
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                                  "a segment name is 1..255 bytes without '/' or control characters");
    if (!s->local_only) {
        Cairn__Dsmd__ShowRequest sh = CAIRN__DSMD__SHOW_REQUEST__INIT;
        sh.name = s->name;
        sh.local_only = true;
        Cairn__Dsmd__Request part = CAIRN__DSMD__REQUEST__INIT;
        part.msg_case = CAIRN__DSMD__REQUEST__MSG_SHOW;
        part.show = &sh;
        return s_gather(d, req, G_SHOW, s->name, &part);
    }
    dsm_seg_t *seg = dsm_seg_find(d, s->name);
    dsm_dirent_t *e = s_dir_find(d, s->name);
    if (!seg && !e)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_NOT_FOUND, "no segment %s here",
                                  s->name);
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__ShowReply *sh = cairn_request_alloc(req, sizeof *sh);
    Cairn__Dsmd__NodePages *np = cairn_request_alloc(req, sizeof *np);
    Cairn__Dsmd__NodePages **v = cairn_request_alloc(req, sizeof *v);
    uint64_t *lost = cairn_request_alloc(req, S_LOST_LISTED * sizeof *lost);
    if (!sh || !np || !v || !lost)
        return -ENOMEM;
    cairn__dsmd__show_reply__init(sh);
    if (e)
        sh->segment = &e->rec;
    if (seg) {
        s_node_pages(d, seg, np, lost);
        v[0] = np;
        sh->n_nodes = 1;
        sh->nodes = v;
    }
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_SHOW_REPLY;
    rep->show_reply = sh;
    return CAIRN_REPLY_NOW;
}

/* ---- rm ------------------------------------------------------------------------- */

static void s_rm_local(dsmd_t *d, const char *name, uint64_t generation)
{
    dsm_seg_t *seg = dsm_seg_find(d, name);
    if (!seg || seg->generation != generation)
        return;
    if (seg->attached)
        seg->removed = true;   /* freed when its last process detaches */
    else
        dsm_seg_free(d, seg);
}

static void s_on_rm_sent(void *ud, uint32_t node, int code, const char *message,
                         ProtobufCMessage *reply)
{
    (void)ud;
    if (code != CAIRN__STATUS_CODE__STATUS_OK)
        cairn_log_warn(-EAGAIN, "rm", "node=%u: %s (its pages stay until it restarts)", node,
                       message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

static void s_send_rm_local(dsmd_t *d, uint32_t node, const char *name, uint64_t generation)
{
    const char *ep = cairn_view_endpoint(d->view, node);
    Cairn__Dsmd__RmRequest rm = CAIRN__DSMD__RM_REQUEST__INIT;
    rm.name = (char *)name;
    rm.local_only = true;
    rm.generation = generation;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_RM;
    req.rm = &rm;
    if (ep && cairn_view_alive(d->view, node))
        cairn_peers_call(d->peers, node, ep, &req.base, S_GATHER_MS, s_on_rm_sent, NULL);
}

static void s_on_rm_forwarded(void *ud, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    (void)node;
    s_gather_call_t *gc = ud;
    dsmd_t *d = gc->d;
    dsm_gather_t *g = s_gather_of(gc);
    if (g) {
        if (code == CAIRN__STATUS_CODE__STATUS_OK)
            cairn_deferred_reply(d->svc, g->deferred, reply);
        else
            cairn_deferred_fail(d->svc, g->deferred, code, message ? message : "");
        s_gather_free(d, g);
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

int dsm_handle_rm(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__RmRequest *rm = r->rm;
    const cairn_caller_t *c = cairn_request_caller(req);
    if (!dsm_name_ok(rm->name))
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                                  "a segment name is 1..255 bytes without '/' or control characters");
    if (rm->local_only) {
        if (c->kind != CAIRN_CALLER_NODE && c->kind != CAIRN_CALLER_NETWORK)
            return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_PERMISSION_DENIED,
                                      "local_only rm is for the home's dsmd");
        s_rm_local(d, rm->name, rm->generation);
        return CAIRN_REPLY_NOW;
    }
    char msg[300];
    uint32_t home = 0;
    int code = s_homing(d, rm->name, &home, msg, sizeof msg);
    if (code != 0)
        return cairn_request_fail(req, code, "%s", msg);
    if (home != d->self) {
        /* carried to the home as the caller */
        dsm_gather_t *g = calloc(1, sizeof *g);
        s_gather_call_t *gc = calloc(1, sizeof *gc);
        const char *ep = cairn_view_endpoint(d->view, home);
        if (!g || !gc || !ep) {
            free(g);
            free(gc);
            return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE,
                                      "home node %u cannot be asked", home);
        }
        g->d = d;
        g->id = ++d->next_gather;
        g->kind = G_RM;
        gc->d = d;
        gc->id = g->id;
        if (cairn_peers_call_as(d->peers, home, ep, &r->base, S_GATHER_MS * 2, c, s_on_rm_forwarded,
                                gc) < 0) {
            free(g);
            free(gc);
            return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE,
                                      "home node %u cannot be asked", home);
        }
        g->deferred = cairn_request_defer(req);
        g->next = d->gathers;
        d->gathers = g;
        return CAIRN_REPLY_DEFERRED;
    }
    dsm_dirent_t *e = s_dir_find(d, rm->name);
    if (!e)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_NOT_FOUND, "no segment %s",
                                  rm->name);
    if (!cairn_caller_may_act_on(c, e->rec.uid))
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_PERMISSION_DENIED,
                                  "segment %s is uid %u's", rm->name, e->rec.uid);
    Cairn__Dsmd__ShowRequest sh = CAIRN__DSMD__SHOW_REQUEST__INIT;
    sh.name = rm->name;
    sh.local_only = true;
    Cairn__Dsmd__Request part = CAIRN__DSMD__REQUEST__INIT;
    part.msg_case = CAIRN__DSMD__REQUEST__MSG_SHOW;
    part.show = &sh;
    return s_gather(d, req, G_RM, rm->name, &part);
}
