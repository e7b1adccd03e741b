/* home-move.c - syncd's home when objects change homes: the state of the
 * objects this node is no longer home of, handed over to their new homes;
 * the states a relay or an old home announces, imported here; and the
 * recovering mode that holds back unknown names until the announcements
 * are in (home.h, "moving homes"; README.md, "Failure").
 *
 * Design. A hand-over builds every state first and only then removes the
 * objects, so running out of memory moves nothing; their waiters are
 * answered UNAVAILABLE "moved" and their relays send them again to the new
 * home. An import merges: holders are added (a holder announced twice, by
 * its relay and by the old home, counts once), the last token only rises,
 * an authoritative state (the old home's) brings the values only the home
 * knew. Two claims that cannot both be true (two holders of a mutex, a
 * holder and a cache) keep the one with the higher token and leave the
 * mutex owner-died. A semaphore with no authoritative state is rebuilt as
 * its initial value minus the units live processes hold. While recovering,
 * home.c answers a request naming an unknown object UNAVAILABLE
 * "recovering" instead of making it.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "home-private.h"

/* ---- moving homes ------------------------------------------------------ */

static Cairn__Syncd__ObjectState *s_state_a(const object_t *o,
                                            home_alloc_fn alloc, void *ctx)
{
    Cairn__Syncd__ObjectState *st = alloc(ctx, sizeof(*st));
    pb_spec_t *spec = alloc(ctx, sizeof(*spec));

    if (!st || !spec)
        return NULL;
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(spec);
    spec->kind = o->kind;
    spec->value = o->value;
    spec->shared = o->shared;
    spec->no_cache = o->no_cache;
    st->spec = spec;
    st->name = home_strdup_a(alloc, ctx, o->name);
    if (!st->name ||
        !home_grants_a(o, alloc, ctx, &st->holders, &st->n_holders))
        return NULL;
    st->owner_uid = o->owner_uid;
    st->last_token = o->last;
    st->cached_at = o->cached_at;
    st->cache_grant = o->cache_grant;
    st->owner_died = o->dirty;
    st->not_recoverable = o->not_recoverable;
    st->authoritative = true;
    st->sem_value = (uint32_t)o->sem_value;
    st->generation = o->generation;
    return st;
}

int home_hand_over(home_t *h, home_keep_fn keep, void *keep_ctx,
                   Cairn__Syncd__ObjectState ***states, size_t *n,
                   home_alloc_fn alloc, void *ctx)
{
    assert(h && keep && states && n && alloc);
    size_t k = 0, moving = 0;

    for (size_t b = 0; b < h->n_buckets; b++)
        for (object_t *o = h->buckets[b]; o; o = o->next)
            moving += !keep(keep_ctx, o->name);
    Cairn__Syncd__ObjectState **v = alloc(ctx, (moving ? moving : 1) * sizeof(*v));
    object_t **objs = calloc(moving ? moving : 1, sizeof(*objs));
    if (!v || !objs) {
        free(objs);
        return -ENOMEM;
    }
    /* every state first: on ENOMEM nothing has moved */
    for (size_t b = 0; b < h->n_buckets; b++)
        for (object_t *o = h->buckets[b]; o; o = o->next) {
            if (k == moving || keep(keep_ctx, o->name))
                continue;
            v[k] = s_state_a(o, alloc, ctx);
            if (!v[k]) {
                free(objs);
                return -ENOMEM;
            }
            objs[k++] = o;
        }
    for (size_t i = 0; i < k; i++) {
        object_t *o = objs[i];
        home_result_t r;
        home_unlink(h, o);
        home_fail(&r, CAIRN_UNAVAILABLE, "moved: \"%s\" has a new home",
                  o->name);
        home_fail_all(h, o, &r);
        home_object_free(h, o);
    }
    free(objs);
    *states = v;
    *n = k;
    return 0;
}

/* ---- import ------------------------------------------------------------ */

static bool s_mode_fits(int kind, int mode)
{
    switch (kind) {
    case KIND(MUTEX): return mode == MODE(LOCK);
    case KIND(RWLOCK): return mode == MODE(READ) || mode == MODE(WRITE);
    case KIND(SEMAPHORE): return mode == MODE(SEM);
    default: return false;
    }
}

static int s_import_check(uint32_t from, const Cairn__Syncd__ObjectState *st,
                          cairn_error_t *err)
{
    home_result_t r;

    if (!home_name_ok(st->name, "object", &r))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "state from node %u: %s", from, r.message);
    if (!st->spec || st->spec->kind < KIND(MUTEX) ||
        st->spec->kind > KIND(CONDVAR))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "state of \"%s\" from node %u: no kind",
                               st->name, from);
    if (st->spec->kind == KIND(BARRIER) && st->spec->value == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "state of \"%s\" from node %u: a barrier of 0 "
                               "parties", st->name, from);
    if (st->cached_at && (st->spec->kind != KIND(MUTEX) || !st->cache_grant))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "state of \"%s\" from node %u: a cache needs a "
                               "mutex and a grant", st->name, from);
    for (size_t i = 0; i < st->n_holders; i++) {
        const Cairn__Syncd__Grant *g = st->holders[i];
        if (!g || !g->holder || !g->holder->node || g->holder->pid <= 0 ||
            !s_mode_fits(st->spec->kind, g->mode))
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                                   "state of \"%s\" from node %u: holder %zu "
                                   "is not a holder of a %s", st->name, from,
                                   i, home_kind_name(st->spec->kind));
    }
    return 0;
}

static who_t s_who_of(const pb_holder_t *p)
{
    return (who_t){ .node = p->node, .pid = p->pid, .tid = p->tid,
                    .uid = p->uid };
}

/* A conflict: two claims on a mutex, the newer kept, owner-died. */
__attribute__((format(printf, 4, 5)))
static void s_conflict(object_t *o, cairn_error_t *err, int *conflicts,
                       const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o->dirty = true;
    if ((*conflicts)++ == 0)
        cairn_error_set(err, 1, CAIRN_FAILED_PRECONDITION,
                        "\"%s\": %s; kept the newer, owner-died", o->name, msg);
}

static void s_import_cache(object_t *o, uint32_t node, uint64_t grant,
                           cairn_error_t *err, int *conflicts)
{
    if (o->cached_at == node) {
        o->cache_grant = home_max(o->cache_grant, grant);
        return;
    }
    if (o->cached_at) {
        s_conflict(o, err, conflicts, "cached at node %u (grant %llu) and at "
                   "node %u (grant %llu)", o->cached_at,
                   (unsigned long long)o->cache_grant, node,
                   (unsigned long long)grant);
        if (grant < o->cache_grant)
            return;
    } else if (o->n_holds) {
        const holding_t *g = &o->holds[0];
        s_conflict(o, err, conflicts, "held by node %u pid %d (token %llu) "
                   "and cached at node %u (grant %llu)", g->who.node,
                   g->who.pid, (unsigned long long)g->token, node,
                   (unsigned long long)grant);
        if (grant < g->token)
            return;
        o->n_holds = 0;
    }
    o->cached_at = node;
    o->cache_grant = grant;
    o->cache_dirty = false;
    o->revoke_asked = false;
    o->cache_who = (who_t){ 0 };
    o->cache_tag = 0;
}

static void s_import_mutex_holder(object_t *o, const who_t *who,
                                  uint64_t token, cairn_error_t *err,
                                  int *conflicts)
{
    if (o->cached_at) {
        if (who->node == o->cached_at)
            return;   /* the caching node's own holder: the cache covers it */
        s_conflict(o, err, conflicts, "cached at node %u (grant %llu) and "
                   "held by node %u pid %d (token %llu)", o->cached_at,
                   (unsigned long long)o->cache_grant, who->node, who->pid,
                   (unsigned long long)token);
        if (token < o->cache_grant)
            return;
        o->cached_at = 0;
    } else if (o->n_holds) {
        holding_t *g = &o->holds[0];
        if (home_same_thread(&g->who, who)) {
            g->token = home_max(g->token, token);
            return;
        }
        s_conflict(o, err, conflicts, "held by node %u pid %d (token %llu) "
                   "and by node %u pid %d (token %llu)", g->who.node,
                   g->who.pid, (unsigned long long)g->token, who->node,
                   who->pid, (unsigned long long)token);
        if (token < g->token)
            return;
        o->n_holds = 0;
    }
    holding_t *g = home_hold_add(o);
    assert(g);
    *g = (holding_t){ .who = *who, .mode = MODE(LOCK), .token = token,
                      .units = 1 };
}

static void s_import_rw_holder(object_t *o, const who_t *who, int mode,
                               uint64_t token, cairn_error_t *err,
                               int *conflicts)
{
    uint64_t top = 0;

    for (size_t i = 0; i < o->n_holds; i++) {
        if (o->holds[i].token == token &&
            home_same_thread(&o->holds[i].who, who))
            return;   /* announced twice */
        top = home_max(top, o->holds[i].token);
    }
    if (o->n_holds && (mode == MODE(WRITE) || home_rw_has_writer(o))) {
        s_conflict(o, err, conflicts, "a writer (node %u pid %d token %llu) "
                   "and other holders", who->node, who->pid,
                   (unsigned long long)token);
        if (token < top)
            return;
        o->n_holds = 0;
    }
    holding_t *g = home_hold_add(o);
    assert(g);
    *g = (holding_t){ .who = *who, .mode = mode, .token = token, .units = 1 };
}

static void s_import_sem_holder(object_t *o, const who_t *who, uint64_t token,
                                uint32_t count)
{
    holding_t *g = home_sem_holding(o, who);

    if (!g) {
        g = home_hold_add(o);
        assert(g);
        *g = (holding_t){ .who = *who, .mode = MODE(SEM) };
    }
    /* a process announced twice (by its relay, by the old home) counts once */
    g->units = home_max(g->units, count ? count : 1);
    g->token = home_max(g->token, token);
}

int home_import(home_t *h, uint32_t from, const Cairn__Syncd__ObjectState *st,
                cairn_error_t *err)
{
    assert(h && st);
    int conflicts = 0;
    const pb_spec_t *spec = st->spec;

    int rc = s_import_check(from, st, err);
    if (rc < 0)
        return rc;
    object_t *o = home_find(h, st->name);
    if (o && o->kind != (int)spec->kind)
        return cairn_error_set(err, -EINVAL, CAIRN_FAILED_PRECONDITION,
                               "\"%s\" is a %s here; node %u says %s",
                               o->name, home_kind_name(o->kind), from,
                               home_kind_name(spec->kind));
    if (!o) {
        o = home_object_new(st->name, spec->kind, spec->value, st->owner_uid,
                            spec->shared, spec->no_cache);
        if (!o)
            return -ENOMEM;
        o->sem_known = false;   /* until an authoritative state says */
        home_insert(h, o);
    }
    if (home_hold_reserve(o, st->n_holders) < 0)
        return -ENOMEM;
    o->last = home_max(o->last, st->last_token);
    if (st->cached_at) {
        s_import_cache(o, st->cached_at, st->cache_grant, err, &conflicts);
        o->last = home_max(o->last, st->cache_grant);
    }
    for (size_t i = 0; i < st->n_holders; i++) {
        const Cairn__Syncd__Grant *g = st->holders[i];
        who_t who = s_who_of(g->holder);
        o->last = home_max(o->last, g->token);
        if (o->kind == KIND(MUTEX))
            s_import_mutex_holder(o, &who, g->token, err, &conflicts);
        else if (o->kind == KIND(RWLOCK))
            s_import_rw_holder(o, &who, g->mode, g->token, err, &conflicts);
        else
            s_import_sem_holder(o, &who, g->token, g->count);
    }
    if (st->authoritative) {
        o->dirty = o->dirty || st->owner_died;
        o->not_recoverable = o->not_recoverable || st->not_recoverable;
        o->generation = home_max(o->generation, st->generation);
        if (o->kind == KIND(SEMAPHORE)) {
            o->sem_value = st->sem_value > SEM_MAX ? SEM_MAX : st->sem_value;
            o->sem_known = true;
        }
    } else if (o->kind == KIND(SEMAPHORE) && !o->sem_known) {
        /* README "Failure": initial value minus the units live processes
         * hold (a post by one that never waited is lost with the home) */
        uint64_t held = 0;
        for (size_t i = 0; i < o->n_holds; i++)
            held += o->holds[i].units;
        o->sem_value = held >= o->value ? 0 : o->value - held;
    }
    /* the old home's holder of an owner-died mutex was told so */
    if (o->kind == KIND(MUTEX) && o->n_holds && st->authoritative &&
        st->owner_died)
        o->holds[0].owner_died = true;
    home_serve(h, o);
    return conflicts ? 1 : 0;
}

/* ---- recovering -------------------------------------------------------- */

void home_set_recovering(home_t *h, bool on)
{
    h->recovering = on;
}
