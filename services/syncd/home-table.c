/* home-table.c - the table of the objects this node is home of (home.h,
 * home-private.h): objects by name, the waiters' cookies, each object's
 * holdings and waiters lists, the home's lifecycle and introspection
 * (show, names). The rules that decide who gets what are home.c; this
 * file only keeps the lists they work on.
 *
 * Design. Objects live in a chained hash table keyed by FNV-1a of the
 * name, doubled when objects outnumber buckets; the waiters' cookies in a
 * second, open-addressing table (cookie -> object, linear probing,
 * backward-shift deletion), so home_cancel finds its object at once and
 * scans only that object's waiters.
 *
 * Queuing a waiter reserves room for its future holding and its cookie,
 * so serving waiters (a release, a death, a revoke) never allocates and
 * never fails half-way. A waiter is taken off its list before
 * ops->answer runs, and the callee may not call back in, so no list
 * changes under a loop.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "home-private.h"
#include "util/array.h"
#include "util/cleanup.h"

#define MIN_BUCKETS 64

/* ---- the cookie index -------------------------------------------------- */

static size_t s_ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static void s_cookie_put_(cookie_slot_t *slots, size_t cap, void *cookie,
                          object_t *o)
{
    size_t mask = cap - 1, i = s_ptr_hash(cookie) & mask;

    while (slots[i].cookie && slots[i].cookie != cookie)
        i = (i + 1) & mask;
    slots[i] = (cookie_slot_t){ cookie, o };
}

/* Room for one more cookie: 0 or -ENOMEM (nothing changed). */
static int s_cookie_reserve(home_t *h)
{
    if ((h->n_cookies + 1) * 2 <= h->cap_cookies)
        return 0;
    size_t cap = h->cap_cookies ? h->cap_cookies * 2 : 64;
    cookie_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < h->cap_cookies; i++)
        if (h->cookies[i].cookie)
            s_cookie_put_(slots, cap, h->cookies[i].cookie, h->cookies[i].obj);
    free(h->cookies);
    h->cookies = slots;
    h->cap_cookies = cap;
    return 0;
}

cookie_slot_t *home_cookie_find(home_t *h, const void *cookie)
{
    if (!cookie || !h->cap_cookies)
        return NULL;
    size_t mask = h->cap_cookies - 1, i = s_ptr_hash(cookie) & mask;
    while (h->cookies[i].cookie) {
        if (h->cookies[i].cookie == cookie)
            return &h->cookies[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

/* After s_cookie_reserve. A cookie given twice names its latest waiter. */
static void s_cookie_add(home_t *h, void *cookie, object_t *o)
{
    if (!cookie)
        return;
    if (!home_cookie_find(h, cookie))
        h->n_cookies++;
    s_cookie_put_(h->cookies, h->cap_cookies, cookie, o);
}

/* Backward-shift deletion: the probe chains stay whole, no tombstones. */
static void s_cookie_del(home_t *h, const void *cookie)
{
    cookie_slot_t *s = home_cookie_find(h, cookie);
    if (!s)
        return;
    size_t mask = h->cap_cookies - 1;
    size_t i = (size_t)(s - h->cookies), j = i;

    h->n_cookies--;
    for (;;) {
        h->cookies[i].cookie = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (!h->cookies[j].cookie)
                return;
            size_t k = s_ptr_hash(h->cookies[j].cookie) & mask;
            /* the entry at j may stay if its home slot k lies in (i, j] */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        h->cookies[i] = h->cookies[j];
        i = j;
    }
}

/* ---- objects ------------------------------------------------------------ */

static uint64_t s_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

object_t *home_find(const home_t *h, const char *name)
{
    uint64_t hash = s_fnv1a(name);

    for (object_t *o = h->buckets[hash & (h->n_buckets - 1)]; o; o = o->next)
        if (o->hash == hash && strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

void home_waiter_clear(waiter_t *w)
{
    free(w->mutex);
    w->mutex = NULL;
}

object_t *home_object_free(home_t *h, object_t *o)
{
    if (!o)
        return NULL;
    for (size_t i = 0; i < o->n_waiters; i++) {
        s_cookie_del(h, o->waiters[i].cookie);
        home_waiter_clear(&o->waiters[i]);
    }
    free(o->waiters);
    free(o->holds);
    free(o->done);
    free(o->name);
    free(o);
    return NULL;
}

/* Doubles the buckets when objects outnumber them; a failure to grow only
 * makes chains longer. */
static void s_rehash(home_t *h)
{
    if (h->n_objects < h->n_buckets)
        return;
    size_t n = h->n_buckets * 2;
    object_t **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < h->n_buckets; i++)
        for (object_t *o = h->buckets[i], *next; o; o = next) {
            next = o->next;
            o->next = b[o->hash & (n - 1)];
            b[o->hash & (n - 1)] = o;
        }
    free(h->buckets);
    h->buckets = b;
    h->n_buckets = n;
}

object_t *home_object_new(const char *name, int kind, uint32_t value,
                          uint32_t owner, bool shared, bool no_cache)
{
    _cleanup_free_ object_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->name = strdup(name);
    if (!o->name)
        return NULL;
    o->hash = s_fnv1a(name);
    o->kind = kind;
    o->value = value;
    o->owner_uid = owner;
    o->shared = shared;
    o->no_cache = kind == KIND(MUTEX) && no_cache;
    o->sem_value = kind == KIND(SEMAPHORE) ? value : 0;
    o->sem_known = true;
    return TAKE_PTR(o);
}

void home_insert(home_t *h, object_t *o)
{
    size_t b = o->hash & (h->n_buckets - 1);

    o->next = h->buckets[b];
    h->buckets[b] = o;
    h->n_objects++;
    s_rehash(h);
}

void home_unlink(home_t *h, object_t *o)
{
    object_t **p = &h->buckets[o->hash & (h->n_buckets - 1)];

    while (*p != o)
        p = &(*p)->next;
    *p = o->next;
    o->next = NULL;
    h->n_objects--;
}

bool home_may_use(const object_t *o, uint32_t uid)
{
    return uid == 0 || uid == o->owner_uid || o->shared;
}

static bool s_may_see(const object_t *o, uint32_t uid)
{
    return home_may_use(o, uid);
}

/* ---- holdings and waiters ---------------------------------------------- */

holding_t *home_hold_find_tag(object_t *o, const who_t *who, uint64_t tag)
{
    if (!tag)
        return NULL;
    for (size_t i = 0; i < o->n_holds; i++)
        if (o->holds[i].tag == tag && home_same_thread(&o->holds[i].who, who))
            return &o->holds[i];
    return NULL;
}

waiter_t *home_waiter_find_tag(object_t *o, const who_t *who, uint64_t tag)
{
    for (size_t i = 0; i < o->n_waiters; i++)
        if (o->waiters[i].tag == tag &&
            home_same_thread(&o->waiters[i].who, who))
            return &o->waiters[i];
    return NULL;
}

holding_t *home_hold_add(object_t *o)
{
    if (o->n_holds >= o->cap_holds)
        return NULL;
    holding_t *g = &o->holds[o->n_holds++];
    memset(g, 0, sizeof(*g));
    return g;
}

void home_hold_remove(object_t *o, size_t i)
{
    memmove(&o->holds[i], &o->holds[i + 1],
            (o->n_holds - i - 1) * sizeof(*o->holds));
    o->n_holds--;
}

int home_hold_reserve(object_t *o, size_t more)
{
    return CAIRN_GROW(o->holds, o->cap_holds, o->n_holds + more, 4);
}

/* Queues a waiter (copied; *w's mutex string moves in). Reserves what
 * serving it will need. 0 or -ENOMEM (nothing changed). */
int home_waiter_add(home_t *h, object_t *o, waiter_t *w)
{
    bool grants = o->kind == KIND(MUTEX) || o->kind == KIND(RWLOCK) ||
                  o->kind == KIND(SEMAPHORE);

    if (CAIRN_GROW(o->waiters, o->cap_waiters, o->n_waiters + 1, 4) < 0 ||
        (grants && home_hold_reserve(o, o->n_waiters + 1) < 0) ||
        (w->cookie && s_cookie_reserve(h) < 0))
        return -ENOMEM;
    w->since_ms = h->ops.now_ms(h->userdata);
    o->waiters[o->n_waiters++] = *w;
    w->mutex = NULL;
    s_cookie_add(h, w->cookie, o);
    return 0;
}

/* Takes waiter i off the list into *out (the caller clears it). */
void home_waiter_take(home_t *h, object_t *o, size_t i, waiter_t *out)
{
    *out = o->waiters[i];
    s_cookie_del(h, out->cookie);
    memmove(&o->waiters[i], &o->waiters[i + 1],
            (o->n_waiters - i - 1) * sizeof(*o->waiters));
    o->n_waiters--;
}

/* Drops waiter i without an answer. */
void home_waiter_drop(home_t *h, object_t *o, size_t i)
{
    waiter_t w;

    home_waiter_take(h, o, i, &w);
    home_waiter_clear(&w);
}

/* Takes waiter i off and answers it. */
void home_waiter_answer(home_t *h, object_t *o, size_t i,
                            const home_result_t *r)
{
    waiter_t w;

    home_waiter_take(h, o, i, &w);
    if (w.cookie)
        h->ops.answer(h->userdata, w.cookie, r);
    home_waiter_clear(&w);
}

/* A retry re-binds: the new cookie replaces the old one. */
int home_waiter_rebind(home_t *h, object_t *o, waiter_t *w, void *cookie)
{
    if (cookie && cookie != w->cookie && s_cookie_reserve(h) < 0)
        return -ENOMEM;
    s_cookie_del(h, w->cookie);
    w->cookie = cookie;
    s_cookie_add(h, cookie, o);
    return HOME_QUEUED;
}

/* ---- lifecycle ------------------------------------------------------------ */

home_t *home_new(uint32_t self, const home_ops_t *ops, void *userdata)
{
    assert(ops && ops->answer && ops->revoke && ops->now_us && ops->now_ms);
    _cleanup_free_ home_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->buckets = calloc(MIN_BUCKETS, sizeof(*h->buckets));
    if (!h->buckets)
        return NULL;
    h->n_buckets = MIN_BUCKETS;
    h->self = self;
    h->ops = *ops;
    h->userdata = userdata;
    return TAKE_PTR(h);
}

home_t *home_free(home_t *h)
{
    if (!h)
        return NULL;
    for (size_t i = 0; i < h->n_buckets; i++)
        for (object_t *o = h->buckets[i], *next; o; o = next) {
            next = o->next;
            home_object_free(h, o);
        }
    free(h->buckets);
    free(h->cookies);
    free(h);
    return NULL;
}

size_t home_count(const home_t *h)
{
    return h->n_objects;
}

/* ---- introspection ------------------------------------------------------------------ */

static const char *s_state(const object_t *o)
{
    if (o->kind == KIND(MUTEX)) {
        if (o->not_recoverable)
            return "not-recoverable";
        if (o->cached_at)
            return "cached";
        if (o->dirty)
            return "owner-died";
    }
    if (o->kind == KIND(BARRIER) || o->kind == KIND(CONDVAR))
        return o->n_waiters ? "held" : "free";
    return o->n_holds ? "held" : "free";
}

char *home_strdup_a(home_alloc_fn alloc, void *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = alloc(ctx, n);

    if (p)
        memcpy(p, s, n);
    return p;
}

static pb_holder_t *s_holder_a(home_alloc_fn alloc, void *ctx, const who_t *w)
{
    pb_holder_t *p = alloc(ctx, sizeof(*p));

    if (!p)
        return NULL;
    cairn__syncd__holder__init(p);
    p->node = w->node;
    p->pid = w->pid;
    p->tid = w->tid;
    p->uid = w->uid;
    return p;
}

bool home_grants_a(const object_t *o, home_alloc_fn alloc, void *ctx,
                   Cairn__Syncd__Grant ***ret, size_t *ret_n)
{
    if (!o->n_holds)
        return true;
    Cairn__Syncd__Grant **v = alloc(ctx, o->n_holds * sizeof(*v));
    if (!v)
        return false;
    for (size_t i = 0; i < o->n_holds; i++) {
        const holding_t *g = &o->holds[i];
        v[i] = alloc(ctx, sizeof(*v[i]));
        if (!v[i])
            return false;
        cairn__syncd__grant__init(v[i]);
        v[i]->holder = s_holder_a(alloc, ctx, &g->who);
        if (!v[i]->holder)
            return false;
        v[i]->mode = g->mode;
        v[i]->token = g->token;
        v[i]->count = g->units > UINT32_MAX ? UINT32_MAX : (uint32_t)g->units;
    }
    *ret = v;
    *ret_n = o->n_holds;
    return true;
}

static bool s_waiters_a(home_t *h, const object_t *o, home_alloc_fn alloc,
                        void *ctx, Cairn__Syncd__ObjectInfo *info)
{
    uint64_t now = h->ops.now_ms(h->userdata);

    if (!o->n_waiters)
        return true;
    Cairn__Syncd__Waiter **v = alloc(ctx, o->n_waiters * sizeof(*v));
    if (!v)
        return false;
    for (size_t i = 0; i < o->n_waiters; i++) {
        const waiter_t *w = &o->waiters[i];
        v[i] = alloc(ctx, sizeof(*v[i]));
        if (!v[i])
            return false;
        cairn__syncd__waiter__init(v[i]);
        v[i]->holder = s_holder_a(alloc, ctx, &w->who);
        if (!v[i]->holder)
            return false;
        v[i]->mode = w->mode;
        v[i]->since_ms = now > w->since_ms ? now - w->since_ms : 0;
    }
    info->waiters = v;
    info->n_waiters = o->n_waiters;
    return true;
}

bool home_show(home_t *h, const char *name, Cairn__Syncd__ObjectInfo *info,
               home_alloc_fn alloc, void *ctx)
{
    assert(h && info && alloc);
    object_t *o = name && *name && strnlen(name, NAME_MAX_BYTES + 1) <=
                  NAME_MAX_BYTES ? home_find(h, name) : NULL;
    if (!o)
        return false;
    info->name = o->name;     /* the home's: valid until the next home_* call */
    info->kind = o->kind;
    info->home = h->self;
    info->owner_uid = o->owner_uid;
    info->shared = o->shared;
    info->token = o->last;
    info->cached_at = o->cached_at;
    info->value = o->kind == KIND(SEMAPHORE) ? (uint32_t)o->sem_value
                : o->kind == KIND(BARRIER) ? o->value : 0;
    info->generation = o->generation;
    info->state = (char *)s_state(o);
    /* out of memory: the lists stay empty, the rest is right */
    if (!home_grants_a(o, alloc, ctx, &info->holders, &info->n_holders))
        info->n_holders = 0, info->holders = NULL;
    if (!s_waiters_a(h, o, alloc, ctx, info))
        info->n_waiters = 0, info->waiters = NULL;
    return true;
}

static int s_cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int home_names(home_t *h, uint32_t uid, const char ***names, size_t *n,
               home_alloc_fn alloc, void *ctx)
{
    assert(h && names && n && alloc);
    size_t k = 0;
    const char **v = alloc(ctx, (h->n_objects ? h->n_objects : 1) * sizeof(*v));

    if (!v)
        return -ENOMEM;
    for (size_t b = 0; b < h->n_buckets; b++)
        for (object_t *o = h->buckets[b]; o; o = o->next)
            if (s_may_see(o, uid))
                v[k++] = o->name;
    qsort(v, k, sizeof(*v), s_cmp_names);
    *names = v;
    *n = k;
    return 0;
}
