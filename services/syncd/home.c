/* home.c - the objects this node is home of, and every rule of the five
 * primitives (home.h is the contract, README.md the reasons). Moving homes
 * (hand-over, import, recovering) is home-move.c; home-private.h holds the
 * object model and the helpers the two share.
 *
 * Design. An object is a name, a kind, its spec and two lists: *holdings*
 * (who has it: one per mutex, one per read share or write lock of a
 * rwlock, one per process holding semaphore units) and *waiters* (a FIFO
 * array: acquirers, barrier arrivals, condvar waiters). Objects live in a
 * chained hash table keyed by FNV-1a of the name; the waiters' cookies in
 * a second, open-addressing table (cookie -> object), so home_cancel finds
 * its object at once and scans only that object's waiters.
 *
 * Everything that can run out of memory does so before any state changes:
 * queuing a waiter reserves room for its future holding and its cookie, so
 * serving waiters (a release, a death, a revoke) never allocates and never
 * fails half-way. A waiter is taken off its list before ops->answer runs,
 * and the callee may not call back in, so no list changes under a loop.
 *
 * Rules this file adds to home.h (each is also said where it is kept):
 *  - kind comes from the request (acquire: MODE_LOCK mutex, MODE_READ or
 *    MODE_WRITE rwlock, MODE_SEM semaphore; barrier; cond); a Spec.kind
 *    that is set must agree with it (INVALID_ARGUMENT otherwise);
 *  - a semaphore made by a request whose Spec has kind unspecified and
 *    value 0 starts at 1 (sem_open's usual "a lock" default); with
 *    KIND_SEMAPHORE set, value 0 means 0. A later Spec.value of 0 never
 *    conflicts; a non-zero one must equal the made object's value;
 *  - tag 0 means "no retry identity": two acquires with tag 0 are two
 *    acquires (so a relock with tag 0 is a deadlock, not a retry);
 *  - a mutex is granted cached only when the requester's uid is the owner
 *    uid and the object is not shared (the node tables are per user);
 *  - a MODE_LOCK release of a cached mutex from the caching node gives the
 *    cache back unused (the relay could not install it); from anyone else
 *    it is NOT_HOLDER;
 *  - a trylock (timeout 0) of a cached mutex asks the node for it back and
 *    answers BUSY: a later try finds it free at the home;
 *  - a reader that already holds a read share of a rwlock gets another at
 *    once even if writers wait (a recursive read lock must not deadlock on
 *    its own share);
 *  - semaphore units are counted per process (node, pid); a post takes
 *    back up to `count` of the poster's own units and adds `count` to the
 *    value either way: a post by a process that never waited just adds.
 *    A process that dies gives back the units it holds. The value is kept
 *    at most SEM_MAX (INT32_MAX, Linux's SEM_VALUE_MAX): a post past it is
 *    FAILED_PRECONDITION, units given back by the dead are clipped;
 *  - a barrier's completing arrival (the N-th) is its serial party, as
 *    glibc does it; generation counts completions (the first is 1);
 *  - a condvar WAIT for a waiter this home does not know (the home moved
 *    and the PREPARE was lost with it) returns at once: a spurious wakeup,
 *    which POSIX allows, instead of a wait no signal can end. Waiters of
 *    one condvar must name the same mutex (INVALID_ARGUMENT otherwise, as
 *    some pthread implementations' EINVAL);
 *  - destroy of a cached mutex asks for the cache back and answers
 *    UNAVAILABLE (the relay retries until the caller's deadline);
 *  - while recovering, every request naming an unknown object is
 *    UNAVAILABLE "recovering".
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "home-private.h"
#include "synctab/synctab.h"
#include "util/array.h"
#include "util/cleanup.h"

#define MIN_BUCKETS 64

#define PHASE(p) CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_##p

/* ---- small helpers ----------------------------------------------------- */

static uint64_t s_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

const char *home_kind_name(int kind)
{
    switch (kind) {
    case KIND(MUTEX): return "mutex";
    case KIND(RWLOCK): return "rwlock";
    case KIND(SEMAPHORE): return "semaphore";
    case KIND(BARRIER): return "barrier";
    case KIND(CONDVAR): return "condition variable";
    default: return "unspecified kind";
    }
}

int home_fail(home_result_t *r, int code, const char *fmt, ...)
{
    va_list ap;

    memset(r, 0, sizeof(*r));
    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return HOME_DONE;
}

static int s_ok(home_result_t *r)
{
    memset(r, 0, sizeof(*r));
    return HOME_DONE;
}

bool home_same_thread(const who_t *a, const who_t *b)
{
    return a->node == b->node && a->pid == b->pid && a->tid == b->tid;
}

static bool s_same_proc(const who_t *a, const who_t *b)
{
    return a->node == b->node && a->pid == b->pid;
}

bool home_name_ok(const char *name, const char *what, home_result_t *r)
{
    if (!name || !*name) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "%s name is empty", what);
        return false;
    }
    if (strnlen(name, NAME_MAX_BYTES + 1) > NAME_MAX_BYTES) {
        home_fail(r, CAIRN_INVALID_ARGUMENT,
                  "%s name is longer than %d bytes", what, NAME_MAX_BYTES);
        return false;
    }
    return true;
}

/* The relay fills the holder; a request without one (or with no node or
 * pid) cannot be queued or granted. */
static bool s_who(const pb_holder_t *ph, uint32_t uid, who_t *who,
                  home_result_t *r)
{
    if (!ph) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "no holder in the request");
        return false;
    }
    if (ph->node == 0 || ph->pid <= 0) {
        home_fail(r, CAIRN_INVALID_ARGUMENT,
                  "holder node %u pid %d: both must be > 0", ph->node, ph->pid);
        return false;
    }
    *who = (who_t){ .node = ph->node, .pid = ph->pid, .tid = ph->tid,
                    .uid = uid };
    return true;
}

uint64_t home_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* token = max(last + 1, now_us << 4): strictly increasing per object, and
 * above every token a dead home could have handed out (README, "Fencing
 * tokens"). */
static uint64_t s_next_token(home_t *h, object_t *o)
{
    uint64_t floor = h->ops.now_us(h->userdata) << 4;

    o->last = home_max(o->last + 1, floor);
    return o->last;
}

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

static cookie_slot_t *s_cookie_find(home_t *h, const void *cookie)
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
    if (!s_cookie_find(h, cookie))
        h->n_cookies++;
    s_cookie_put_(h->cookies, h->cap_cookies, cookie, o);
}

/* Backward-shift deletion: the probe chains stay whole, no tombstones. */
static void s_cookie_del(home_t *h, const void *cookie)
{
    cookie_slot_t *s = s_cookie_find(h, cookie);
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

object_t *home_find(const home_t *h, const char *name)
{
    uint64_t hash = s_fnv1a(name);

    for (object_t *o = h->buckets[hash & (h->n_buckets - 1)]; o; o = o->next)
        if (o->hash == hash && strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void s_waiter_clear(waiter_t *w)
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
        s_waiter_clear(&o->waiters[i]);
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

/* What a request says the object should be. */
typedef struct want {
    int kind;                  /* KIND_* the request needs */
    uint32_t value;            /* Spec.value (0: any) */
    uint32_t make_value;       /* the value to make it with */
    bool shared;               /* on first use */
    bool no_cache;             /* on first use */
} want_t;

static bool s_may_use(const object_t *o, uint32_t uid)
{
    return uid == 0 || uid == o->owner_uid || o->shared;
}

static bool s_may_see(const object_t *o, uint32_t uid)
{
    return s_may_use(o, uid);
}

/* Checks an existing object against the caller and the request. */
static bool s_check(const object_t *o, const want_t *w, uint32_t uid,
                    home_result_t *r)
{
    if (!s_may_use(o, uid)) {
        home_fail(r, CAIRN_PERMISSION_DENIED,
                  "\"%s\" belongs to uid %u and is not shared", o->name,
                  o->owner_uid);
        return false;
    }
    if (w->kind && o->kind != w->kind) {
        home_fail(r, CAIRN_FAILED_PRECONDITION, "\"%s\" is a %s, not a %s",
                  o->name, home_kind_name(o->kind), home_kind_name(w->kind));
        return false;
    }
    if (w->value && o->value != w->value) {
        home_fail(r, CAIRN_FAILED_PRECONDITION, "\"%s\" is a %s with %s %u, not %u",
                  o->name, home_kind_name(o->kind),
                  o->kind == KIND(BARRIER) ? "parties" : "initial value",
                  o->value, w->value);
        return false;
    }
    return true;
}

/* The object a request names, made from *w when unknown (make) and not
 * recovering. 0 with *ret_o set; 1: refused, *r says why; 2: unknown and
 * not made (r untouched); -ENOMEM. */
#define OPEN_REFUSED 1
#define OPEN_UNKNOWN 2
static int s_open(home_t *h, const char *name, const want_t *w, bool make,
                  uint32_t uid, object_t **ret_o, home_result_t *r)
{
    object_t *o = home_find(h, name);

    *ret_o = NULL;
    if (!o) {
        if (h->recovering) {
            home_fail(r, CAIRN_UNAVAILABLE,
                      "recovering: \"%s\" is not known here yet", name);
            return OPEN_REFUSED;
        }
        if (!make)
            return OPEN_UNKNOWN;
        o = home_object_new(name, w->kind, w->make_value, uid, w->shared,
                            w->no_cache);
        if (!o)
            return -ENOMEM;
        home_insert(h, o);
        *ret_o = o;
        return 0;
    }
    if (!s_check(o, w, uid, r))
        return OPEN_REFUSED;
    *ret_o = o;
    return 0;
}

/* ---- holdings and waiters ---------------------------------------------- */

static holding_t *s_hold_find_tag(object_t *o, const who_t *who, uint64_t tag)
{
    if (!tag)
        return NULL;
    for (size_t i = 0; i < o->n_holds; i++)
        if (o->holds[i].tag == tag && home_same_thread(&o->holds[i].who, who))
            return &o->holds[i];
    return NULL;
}

static waiter_t *s_waiter_find_tag(object_t *o, const who_t *who, uint64_t tag)
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

static void s_hold_remove(object_t *o, size_t i)
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
static int s_waiter_add(home_t *h, object_t *o, waiter_t *w)
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
static void s_waiter_take(home_t *h, object_t *o, size_t i, waiter_t *out)
{
    *out = o->waiters[i];
    s_cookie_del(h, out->cookie);
    memmove(&o->waiters[i], &o->waiters[i + 1],
            (o->n_waiters - i - 1) * sizeof(*o->waiters));
    o->n_waiters--;
}

/* Drops waiter i without an answer. */
static void s_waiter_drop(home_t *h, object_t *o, size_t i)
{
    waiter_t w;

    s_waiter_take(h, o, i, &w);
    s_waiter_clear(&w);
}

/* Takes waiter i off and answers it. */
static void s_waiter_answer(home_t *h, object_t *o, size_t i,
                            const home_result_t *r)
{
    waiter_t w;

    s_waiter_take(h, o, i, &w);
    if (w.cookie)
        h->ops.answer(h->userdata, w.cookie, r);
    s_waiter_clear(&w);
}

/* A retry re-binds: the new cookie replaces the old one. */
static int s_rebind(home_t *h, object_t *o, waiter_t *w, void *cookie)
{
    if (cookie && cookie != w->cookie && s_cookie_reserve(h) < 0)
        return -ENOMEM;
    s_cookie_del(h, w->cookie);
    w->cookie = cookie;
    s_cookie_add(h, cookie, o);
    return HOME_QUEUED;
}

static int s_grant_again(const holding_t *g, home_result_t *r)
{
    s_ok(r);
    r->token = g->token;
    r->owner_died = g->owner_died;
    return HOME_DONE;
}

/* ---- mutex --------------------------------------------------------------- */

static bool s_mutex_free(const object_t *o)
{
    return o->n_holds == 0 && o->cached_at == 0;
}

/* Cached only for the owner of an unshared, cacheable mutex, asked with
 * cache_ok, nobody else waiting (home.h; README "The node cache"). */
static bool s_may_cache(const object_t *o, const who_t *who, bool cache_ok)
{
    return cache_ok && !o->no_cache && !o->shared &&
           who->uid == o->owner_uid && o->n_waiters == 0 &&
           !o->not_recoverable;
}

static void s_revoke(home_t *h, object_t *o)
{
    if (!o->cached_at || o->revoke_asked)
        return;
    o->revoke_asked = true;
    h->ops.revoke(h->userdata, o->cached_at, o->name, o->cache_grant);
}

/* Grants a free mutex to who (room for the holding reserved). */
static void s_mutex_grant(home_t *h, object_t *o, const who_t *who,
                          uint64_t tag, bool cache_ok, home_result_t *r)
{
    s_ok(r);
    r->token = s_next_token(h, o);
    r->owner_died = o->dirty;
    if (s_may_cache(o, who, cache_ok)) {
        /* The node carries the state from now on (its slot starts
         * INCONSISTENT if dirty); it reports it back when revoked. */
        o->cached_at = who->node;
        o->cache_grant = r->token;
        o->cache_dirty = o->dirty;
        o->dirty = false;
        o->revoke_asked = false;
        o->cache_who = *who;
        o->cache_tag = tag;
        r->cached = true;
        return;
    }
    holding_t *g = home_hold_add(o);
    assert(g);
    *g = (holding_t){ .who = *who, .tag = tag, .mode = MODE(LOCK),
                      .token = r->token, .units = 1,
                      .owner_died = o->dirty };
}

void home_fail_all(home_t *h, object_t *o, const home_result_t *r)
{
    while (o->n_waiters)
        s_waiter_answer(h, o, 0, r);
}

/* Hands a free mutex to the next waiter; a not recoverable one fails them. */
static void s_mutex_serve(home_t *h, object_t *o)
{
    home_result_t r;

    if (o->not_recoverable && o->n_waiters && s_mutex_free(o)) {
        home_fail(&r, CAIRN_FAILED_PRECONDITION,
                  SYNCD_MSG_NOT_RECOVERABLE "\"%s\" was unlocked while "
                  "inconsistent; destroy it to use the name again", o->name);
        home_fail_all(h, o, &r);
        return;
    }
    if (!o->n_waiters || !s_mutex_free(o))
        return;
    waiter_t w;
    s_waiter_take(h, o, 0, &w);
    s_mutex_grant(h, o, &w.who, w.tag, w.cache_ok, &r);
    h->ops.answer(h->userdata, w.cookie, &r);
    s_waiter_clear(&w);
}

/* The holder's mutex is released. A holder that died leaves it owner-died;
 * one that was told owner-died (EOWNERDEAD) and unlocks without
 * consistent makes it not recoverable. A holder never told (an import
 * conflict marked it afterwards) leaves it owner-died for the next. */
static void s_mutex_unhold(home_t *h, object_t *o, bool died)
{
    bool was_dirty = o->n_holds && o->holds[0].owner_died && o->dirty;

    o->n_holds = 0;
    if (died)
        o->dirty = true;
    else if (was_dirty)
        o->not_recoverable = true;
    s_mutex_serve(h, o);
}

/* ---- rwlock -------------------------------------------------------------- */

bool home_rw_has_writer(const object_t *o)
{
    return o->n_holds && o->holds[0].mode == MODE(WRITE);
}

static bool s_rw_holds(const object_t *o, const who_t *who, int mode)
{
    for (size_t i = 0; i < o->n_holds; i++)
        if (home_same_thread(&o->holds[i].who, who) &&
            (!mode || o->holds[i].mode == mode))
            return true;
    return false;
}

static void s_rw_grant(home_t *h, object_t *o, const who_t *who, uint64_t tag,
                       int mode, home_result_t *r)
{
    s_ok(r);
    r->token = s_next_token(h, o);
    holding_t *g = home_hold_add(o);
    assert(g);
    *g = (holding_t){ .who = *who, .tag = tag, .mode = mode,
                      .token = r->token, .units = 1 };
}

/* Readers at the head go in together; a writer waits for nobody. */
static void s_rw_serve(home_t *h, object_t *o)
{
    while (o->n_waiters) {
        const waiter_t *w = &o->waiters[0];
        if (w->mode == MODE(WRITE) ? o->n_holds > 0 : home_rw_has_writer(o))
            return;
        waiter_t t;
        home_result_t r;
        s_waiter_take(h, o, 0, &t);
        s_rw_grant(h, o, &t.who, t.tag, t.mode, &r);
        h->ops.answer(h->userdata, t.cookie, &r);
        s_waiter_clear(&t);
    }
}

/* ---- semaphore ----------------------------------------------------------- */

holding_t *home_sem_holding(object_t *o, const who_t *who)
{
    for (size_t i = 0; i < o->n_holds; i++)
        if (s_same_proc(&o->holds[i].who, who))
            return &o->holds[i];
    return NULL;
}

static void s_sem_grant(home_t *h, object_t *o, const who_t *who, uint64_t tag,
                        uint32_t count, home_result_t *r)
{
    s_ok(r);
    r->token = s_next_token(h, o);
    o->sem_value -= count;
    holding_t *g = home_sem_holding(o, who);
    if (!g) {
        g = home_hold_add(o);
        assert(g);
        g->mode = MODE(SEM);
    }
    g->who = *who;
    g->tag = tag;
    g->token = r->token;
    g->units += count;
}

static void s_sem_serve(home_t *h, object_t *o)
{
    while (o->n_waiters && o->waiters[0].count <= o->sem_value) {
        waiter_t t;
        home_result_t r;
        s_waiter_take(h, o, 0, &t);
        s_sem_grant(h, o, &t.who, t.tag, t.count, &r);
        h->ops.answer(h->userdata, t.cookie, &r);
        s_waiter_clear(&t);
    }
}

/* Units given back (a post, a death), the value kept at most SEM_MAX. */
static void s_sem_add(object_t *o, uint64_t units)
{
    o->sem_value = units > SEM_MAX - o->sem_value ? SEM_MAX
                                                  : o->sem_value + units;
}

void home_serve(home_t *h, object_t *o)
{
    switch (o->kind) {
    case KIND(MUTEX): s_mutex_serve(h, o); break;
    case KIND(RWLOCK): s_rw_serve(h, o); break;
    case KIND(SEMAPHORE): s_sem_serve(h, o); break;
    default: break;   /* barrier, condvar: a departure frees nobody */
    }
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

/* ---- acquire ------------------------------------------------------------- */

/* What the request's mode makes; 0 with *r set when it names none. */
static int s_kind_of_mode(int mode, home_result_t *r)
{
    switch (mode) {
    case MODE(LOCK): return KIND(MUTEX);
    case MODE(READ):
    case MODE(WRITE): return KIND(RWLOCK);
    case MODE(SEM): return KIND(SEMAPHORE);
    default:
        home_fail(r, CAIRN_INVALID_ARGUMENT, "mode %d is not lock, read, write "
                  "or sem", mode);
        return 0;
    }
}

/* The acquire's want: kind from the mode, the Spec checked against it. */
static bool s_acquire_want(const Cairn__Syncd__AcquireRequest *req,
                           want_t *w, home_result_t *r)
{
    const pb_spec_t *spec = req->spec;
    int kind = s_kind_of_mode(req->mode, r);

    if (!kind)
        return false;
    *w = (want_t){ .kind = kind, .make_value = kind == KIND(SEMAPHORE) };
    if (!spec)
        return true;
    if (spec->kind && (int)spec->kind != kind) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": a %s request cannot use "
                  "a %s", req->name, home_kind_name(kind),
                  home_kind_name(spec->kind));
        return false;
    }
    if (spec->value && kind != KIND(SEMAPHORE)) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": a %s takes no value (%u)",
                  req->name, home_kind_name(kind), spec->value);
        return false;
    }
    if (kind == KIND(SEMAPHORE) && spec->value > SEM_MAX) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": initial value %u is "
                  "above %u", req->name, spec->value, SEM_MAX);
        return false;
    }
    w->value = spec->value;
    w->make_value = spec->value;
    /* the default: a semaphore nobody said anything about is a lock */
    if (kind == KIND(SEMAPHORE) && !spec->kind && !spec->value)
        w->make_value = 1;
    w->shared = spec->shared;
    w->no_cache = spec->no_cache;
    return true;
}

static int s_busy(const object_t *o, home_result_t *r)
{
    if (o->cached_at)
        return home_fail(r, CAIRN_BUSY, "\"%s\" is cached at node %u (asked "
                         "back)", o->name, o->cached_at);
    return home_fail(r, CAIRN_BUSY, "\"%s\" is not free", o->name);
}

/* A waiter for an acquire. */
static int s_queue(home_t *h, object_t *o, const who_t *who,
                   const Cairn__Syncd__AcquireRequest *req, uint32_t count,
                   void *cookie)
{
    waiter_t w = { .who = *who, .tag = req->tag, .cookie = cookie,
                   .mode = req->mode, .count = count,
                   .cache_ok = req->cache_ok };
    int rc = s_waiter_add(h, o, &w);
    return rc < 0 ? rc : HOME_QUEUED;
}

static int s_mutex_acquire(home_t *h, object_t *o, const who_t *who,
                           const Cairn__Syncd__AcquireRequest *req,
                           void *cookie, home_result_t *r)
{
    holding_t *g = s_hold_find_tag(o, who, req->tag);
    if (g)
        return s_grant_again(g, r);
    if (req->tag && o->cached_at && o->cache_tag == req->tag &&
        home_same_thread(&o->cache_who, who)) {
        s_ok(r);
        r->token = o->cache_grant;
        r->owner_died = o->cache_dirty;
        r->cached = true;
        return HOME_DONE;
    }
    waiter_t *w = req->tag ? s_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return s_rebind(h, o, w, cookie);
    if (o->not_recoverable)
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_RECOVERABLE
                         "\"%s\" was unlocked while inconsistent; destroy it "
                         "to use the name again", o->name);
    if (o->n_holds && home_same_thread(&o->holds[0].who, who))
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_DEADLOCK
                         "\"%s\" is already held by this thread", o->name);
    if (s_mutex_free(o) && !o->n_waiters) {
        if (home_hold_reserve(o, 1) < 0)
            return -ENOMEM;
        s_mutex_grant(h, o, who, req->tag, req->cache_ok, r);
        return HOME_DONE;
    }
    s_revoke(h, o);
    if (req->timeout_ms == 0)
        return s_busy(o, r);
    return s_queue(h, o, who, req, 1, cookie);
}

static int s_rw_acquire(home_t *h, object_t *o, const who_t *who,
                        const Cairn__Syncd__AcquireRequest *req,
                        void *cookie, home_result_t *r)
{
    holding_t *g = s_hold_find_tag(o, who, req->tag);
    if (g)
        return s_grant_again(g, r);
    waiter_t *w = req->tag ? s_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return s_rebind(h, o, w, cookie);
    if (s_rw_holds(o, who, MODE(WRITE)) ||
        (req->mode == MODE(WRITE) && s_rw_holds(o, who, 0)))
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_DEADLOCK
                         "\"%s\" is already locked by this thread", o->name);
    bool now = req->mode == MODE(WRITE)
        ? o->n_holds == 0 && o->n_waiters == 0
        : !home_rw_has_writer(o) &&
          (o->n_waiters == 0 || s_rw_holds(o, who, MODE(READ)));
    if (now) {
        if (home_hold_reserve(o, 1) < 0)
            return -ENOMEM;
        s_rw_grant(h, o, who, req->tag, req->mode, r);
        return HOME_DONE;
    }
    if (req->timeout_ms == 0)
        return s_busy(o, r);
    return s_queue(h, o, who, req, 1, cookie);
}

static int s_sem_acquire(home_t *h, object_t *o, const who_t *who,
                         const Cairn__Syncd__AcquireRequest *req,
                         void *cookie, home_result_t *r)
{
    uint32_t count = req->count ? req->count : 1;

    if (count > SEM_MAX)
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": %u units is more "
                         "than a semaphore can hold (%u)", o->name, count,
                         SEM_MAX);
    holding_t *g = s_hold_find_tag(o, who, req->tag);
    if (g)
        return s_grant_again(g, r);
    waiter_t *w = req->tag ? s_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return s_rebind(h, o, w, cookie);
    if (!o->n_waiters && o->sem_value >= count) {
        if (!home_sem_holding(o, who) && home_hold_reserve(o, 1) < 0)
            return -ENOMEM;
        s_sem_grant(h, o, who, req->tag, count, r);
        return HOME_DONE;
    }
    if (req->timeout_ms == 0)
        return s_busy(o, r);
    return s_queue(h, o, who, req, count, cookie);
}

int home_acquire(home_t *h, const Cairn__Syncd__AcquireRequest *req,
                 uint32_t uid, void *cookie, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    want_t w;
    object_t *o;

    if (!home_name_ok(req->name, "object", r) || !s_who(req->holder, uid, &who, r) ||
        !s_acquire_want(req, &w, r))
        return HOME_DONE;
    int rc = s_open(h, req->name, &w, true, uid, &o, r);
    if (rc != 0)
        return rc < 0 ? rc : HOME_DONE;
    switch (o->kind) {
    case KIND(MUTEX): return s_mutex_acquire(h, o, &who, req, cookie, r);
    case KIND(RWLOCK): return s_rw_acquire(h, o, &who, req, cookie, r);
    default: return s_sem_acquire(h, o, &who, req, cookie, r);
    }
}

/* ---- release, consistent --------------------------------------------------- */

static int s_mutex_release(home_t *h, object_t *o, const who_t *who,
                           home_result_t *r)
{
    if (o->cached_at) {
        if (who->node != o->cached_at)
            return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_HOLDER
                             "\"%s\" is cached at node %u", o->name,
                             o->cached_at);
        /* the caching node gives it back unused: free, served onward */
        o->cached_at = 0;
        o->revoke_asked = false;
        o->dirty = o->dirty || o->cache_dirty;
        s_mutex_serve(h, o);
        return s_ok(r);
    }
    if (!o->n_holds || !home_same_thread(&o->holds[0].who, who))
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_HOLDER
                         "\"%s\" is not held by node %u pid %d tid %d", o->name,
                         who->node, who->pid, who->tid);
    s_mutex_unhold(h, o, false);
    return s_ok(r);
}

static int s_rw_release(home_t *h, object_t *o, const who_t *who, int mode,
                        home_result_t *r)
{
    size_t i, any = o->n_holds;

    for (i = 0; i < o->n_holds; i++) {
        if (!home_same_thread(&o->holds[i].who, who))
            continue;
        if (o->holds[i].mode == mode)
            break;
        if (any == o->n_holds)
            any = i;
    }
    if (i == o->n_holds)
        i = any;
    if (i == o->n_holds)
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_HOLDER
                         "\"%s\" is not locked by node %u pid %d tid %d",
                         o->name, who->node, who->pid, who->tid);
    s_hold_remove(o, i);
    s_rw_serve(h, o);
    return s_ok(r);
}

static int s_sem_post(home_t *h, object_t *o, const who_t *who, uint32_t count,
                      home_result_t *r)
{
    if (!count)
        count = 1;
    if (count > SEM_MAX - o->sem_value)
        return home_fail(r, CAIRN_FAILED_PRECONDITION, "\"%s\": posting %u "
                         "would take the value past %u", o->name, count,
                         SEM_MAX);
    holding_t *g = home_sem_holding(o, who);
    if (g) {
        g->units -= g->units < count ? g->units : count;
        if (!g->units)
            s_hold_remove(o, (size_t)(g - o->holds));
    }
    o->sem_value += count;
    s_sem_serve(h, o);
    return s_ok(r);
}

int home_release(home_t *h, const Cairn__Syncd__ReleaseRequest *req,
                 uint32_t uid, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    want_t w = { 0 };
    object_t *o;

    if (!home_name_ok(req->name, "object", r) ||
        !s_who(req->holder, uid, &who, r))
        return HOME_DONE;
    w.kind = s_kind_of_mode(req->mode, r);
    if (!w.kind)
        return HOME_DONE;
    int rc = s_open(h, req->name, &w, false, uid, &o, r);
    if (rc < 0 || rc == OPEN_REFUSED)
        return rc < 0 ? rc : HOME_DONE;
    if (rc == OPEN_UNKNOWN) {
        if (w.kind == KIND(SEMAPHORE))
            return home_fail(r, CAIRN_NOT_FOUND, "no semaphore \"%s\"",
                             req->name);
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_HOLDER
                         "no %s \"%s\"", home_kind_name(w.kind), req->name);
    }
    switch (o->kind) {
    case KIND(MUTEX): return s_mutex_release(h, o, &who, r);
    case KIND(RWLOCK): return s_rw_release(h, o, &who, req->mode, r);
    default: return s_sem_post(h, o, &who, req->count, r);
    }
}

int home_consistent(home_t *h, const Cairn__Syncd__ConsistentRequest *req,
                    uint32_t uid, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    want_t w = { .kind = KIND(MUTEX) };
    object_t *o;

    if (!home_name_ok(req->name, "mutex", r) || !s_who(req->holder, uid, &who, r))
        return HOME_DONE;
    int rc = s_open(h, req->name, &w, false, uid, &o, r);
    if (rc < 0 || rc == OPEN_REFUSED)
        return rc < 0 ? rc : HOME_DONE;
    if (rc == OPEN_UNKNOWN)
        return home_fail(r, CAIRN_NOT_FOUND, "no mutex \"%s\"", req->name);
    if (o->n_holds == 0 || !home_same_thread(&o->holds[0].who, &who))
        return home_fail(r, CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_HOLDER
                         "\"%s\" is not held by node %u pid %d tid %d", o->name,
                         who.node, who.pid, who.tid);
    if (!o->dirty)
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\" is consistent "
                         "already", o->name);
    o->dirty = false;
    o->holds[0].owner_died = false;
    return s_ok(r);
}

/* ---- barrier ---------------------------------------------------------------- */

static const arrival_t *s_done_find(const object_t *o, const who_t *who,
                                    uint64_t tag)
{
    for (size_t i = 0; tag && i < o->n_done; i++)
        if (o->done[i].tag == tag && home_same_thread(&o->done[i].who, who))
            return &o->done[i];
    return NULL;
}

/* The N-th arrival: every waiting party is answered, the caller is the
 * serial one (glibc's choice: the last to arrive). */
static int s_barrier_complete(home_t *h, object_t *o, const who_t *who,
                              uint64_t tag, home_result_t *r)
{
    home_result_t a;

    o->generation++;
    o->n_done = 0;
    s_ok(&a);
    a.generation = o->generation;
    while (o->n_waiters) {
        o->done[o->n_done++] = (arrival_t){ .who = o->waiters[0].who,
                                            .tag = o->waiters[0].tag };
        s_waiter_answer(h, o, 0, &a);
    }
    if (o->n_done < o->cap_done)
        o->done[o->n_done++] = (arrival_t){ .who = *who, .tag = tag,
                                            .serial = true };
    s_ok(r);
    r->serial = true;
    r->generation = o->generation;
    return HOME_DONE;
}

int home_barrier(home_t *h, const Cairn__Syncd__BarrierRequest *req,
                 uint32_t uid, void *cookie, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    object_t *o;

    if (!home_name_ok(req->name, "barrier", r) || !s_who(req->holder, uid, &who, r))
        return HOME_DONE;
    if (req->parties == 0)
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "barrier \"%s\": parties "
                         "must be at least 1", req->name);
    want_t w = { .kind = KIND(BARRIER), .value = req->parties,
                 .make_value = req->parties, .shared = req->shared };
    int rc = s_open(h, req->name, &w, true, uid, &o, r);
    if (rc != 0)
        return rc < 0 ? rc : HOME_DONE;
    waiter_t *wt = req->tag ? s_waiter_find_tag(o, &who, req->tag) : NULL;
    if (wt)
        return s_rebind(h, o, wt, cookie);
    const arrival_t *d = s_done_find(o, &who, req->tag);
    if (d) {
        s_ok(r);
        r->serial = d->serial;
        r->generation = o->generation;
        return HOME_DONE;
    }
    /* room for the caller's own record in the completed generation */
    if (CAIRN_GROW(o->done, o->cap_done, o->n_waiters + 1, 4) < 0)
        return -ENOMEM;
    if (o->n_waiters + 1 >= o->value)
        return s_barrier_complete(h, o, &who, req->tag, r);
    waiter_t nw = { .who = who, .tag = req->tag, .cookie = cookie };
    rc = s_waiter_add(h, o, &nw);
    return rc < 0 ? rc : HOME_QUEUED;
}

/* ---- condition variable ------------------------------------------------------ */

static int s_cond_prepare(home_t *h, object_t *o, const who_t *who,
                          const Cairn__Syncd__CondWaitRequest *req,
                          home_result_t *r)
{
    if (s_waiter_find_tag(o, who, req->tag))
        return s_ok(r);     /* a retried PREPARE: already queued */
    if (o->n_waiters && strcmp(o->waiters[0].mutex, req->mutex) != 0)
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\" is in use with "
                         "mutex \"%s\", not \"%s\"", o->name,
                         o->waiters[0].mutex, req->mutex);
    waiter_t w = { .who = *who, .tag = req->tag, .mutex = strdup(req->mutex) };
    if (!w.mutex)
        return -ENOMEM;
    int rc = s_waiter_add(h, o, &w);
    s_waiter_clear(&w);
    return rc < 0 ? rc : s_ok(r);
}

static int s_cond_wait(home_t *h, object_t *o, const who_t *who, uint64_t tag,
                       void *cookie, home_result_t *r)
{
    waiter_t *w = o ? s_waiter_find_tag(o, who, tag) : NULL;

    if (!w)
        return s_ok(r);     /* not known here: a spurious wakeup */
    if (w->signalled) {
        s_waiter_drop(h, o, (size_t)(w - o->waiters));
        return s_ok(r);
    }
    return s_rebind(h, o, w, cookie);
}

int home_cond(home_t *h, const Cairn__Syncd__CondWaitRequest *req,
              uint32_t uid, void *cookie, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    object_t *o;
    int phase = req->phase;

    if (!home_name_ok(req->name, "condition variable", r) ||
        !s_who(req->holder, uid, &who, r))
        return HOME_DONE;
    if (phase != PHASE(PREPARE) && phase != PHASE(WAIT) &&
        phase != PHASE(CANCEL))
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "condition variable "
                         "\"%s\": phase %d is not prepare, wait or cancel",
                         req->name, phase);
    if (phase == PHASE(PREPARE) && !home_name_ok(req->mutex, "mutex", r))
        return HOME_DONE;
    want_t w = { .kind = KIND(CONDVAR), .shared = req->shared };
    int rc = s_open(h, req->name, &w, phase == PHASE(PREPARE), uid, &o, r);
    if (rc < 0 || rc == OPEN_REFUSED)
        return rc < 0 ? rc : HOME_DONE;
    if (phase == PHASE(PREPARE))
        return s_cond_prepare(h, o, &who, req, r);
    if (phase == PHASE(WAIT))
        return s_cond_wait(h, o, &who, req->tag, cookie, r);
    waiter_t *wt = o ? s_waiter_find_tag(o, &who, req->tag) : NULL;
    if (wt)
        s_waiter_drop(h, o, (size_t)(wt - o->waiters));
    return s_ok(r);
}

int home_cond_signal(home_t *h, const Cairn__Syncd__CondSignalRequest *req,
                     uint32_t uid, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    object_t *o;
    want_t w = { .kind = KIND(CONDVAR) };
    uint32_t woken = 0;

    if (!home_name_ok(req->name, "condition variable", r) ||
        !s_who(req->holder, uid, &who, r))
        return HOME_DONE;
    int rc = s_open(h, req->name, &w, false, uid, &o, r);
    if (rc < 0 || rc == OPEN_REFUSED)
        return rc < 0 ? rc : HOME_DONE;
    if (rc == OPEN_UNKNOWN)
        return s_ok(r);     /* nobody waits on what does not exist */
    home_result_t a;
    s_ok(&a);
    for (size_t i = 0; i < o->n_waiters;) {
        waiter_t *wt = &o->waiters[i];
        if (wt->signalled) {
            i++;
            continue;
        }
        woken++;
        if (wt->cookie) {
            s_waiter_answer(h, o, i, &a);
        } else {
            wt->signalled = true;
            i++;
        }
        if (!req->broadcast)
            break;
    }
    s_ok(r);
    r->woken = woken;
    return HOME_DONE;
}

/* ---- destroy, cancel ------------------------------------------------------------ */

int home_destroy(home_t *h, const Cairn__Syncd__DestroyRequest *req,
                 uint32_t uid, home_result_t *r)
{
    assert(h && req && r);
    if (!home_name_ok(req->name, "object", r))
        return HOME_DONE;
    object_t *o = home_find(h, req->name);
    if (!o) {
        if (h->recovering)
            return home_fail(r, CAIRN_UNAVAILABLE, "recovering: \"%s\" is not "
                             "known here yet", req->name);
        return home_fail(r, CAIRN_NOT_FOUND, "no object \"%s\"", req->name);
    }
    if (uid != 0 && uid != o->owner_uid)
        return home_fail(r, CAIRN_PERMISSION_DENIED, "only its owner (uid %u) "
                         "or root may destroy \"%s\"", o->owner_uid, o->name);
    if (o->cached_at) {
        s_revoke(h, o);
        return home_fail(r, CAIRN_UNAVAILABLE, "\"%s\" is cached at node %u: "
                         "asked back, try again", o->name, o->cached_at);
    }
    if (o->n_holds && (o->kind == KIND(MUTEX) || o->kind == KIND(RWLOCK)))
        return home_fail(r, CAIRN_FAILED_PRECONDITION, "\"%s\" is held",
                         o->name);
    if (o->n_waiters)
        return home_fail(r, CAIRN_FAILED_PRECONDITION, "\"%s\" has %zu "
                         "waiter(s)", o->name, o->n_waiters);
    home_unlink(h, o);
    home_object_free(h, o);
    return s_ok(r);
}

/* ---- declare ---------------------------------------------------------- */

/* The declare's want: every kind, its value checked for that kind. */
static bool s_declare_want(const Cairn__Syncd__DeclareRequest *req,
                           want_t *w, home_result_t *r)
{
    const pb_spec_t *spec = req->spec;

    if (!spec || spec->kind < KIND(MUTEX) || spec->kind > KIND(CONDVAR)) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": declare needs a kind "
                  "(mutex, rwlock, semaphore, barrier or condvar)", req->name);
        return false;
    }
    int kind = (int)spec->kind;
    bool valued = kind == KIND(SEMAPHORE) || kind == KIND(BARRIER);
    if (spec->value && !valued) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": a %s takes no value (%u)",
                  req->name, home_kind_name(kind), spec->value);
        return false;
    }
    if (kind == KIND(BARRIER) && spec->value == 0) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "barrier \"%s\": parties must be "
                  "at least 1", req->name);
        return false;
    }
    if (kind == KIND(SEMAPHORE) && spec->value > SEM_MAX) {
        home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\": initial value %u is "
                  "above %u", req->name, spec->value, SEM_MAX);
        return false;
    }
    /* A declared semaphore's value is what it says, 0 included; an
     * existing one is checked only against a non-zero value. */
    *w = (want_t){ .kind = kind, .value = spec->value,
                   .make_value = spec->value, .shared = spec->shared,
                   .no_cache = spec->no_cache };
    return true;
}

int home_declare(home_t *h, const Cairn__Syncd__DeclareRequest *req,
                 uint32_t uid, home_result_t *r)
{
    assert(h && req && r);
    who_t who;
    want_t w;
    object_t *o;

    if (!home_name_ok(req->name, "object", r) || !s_who(req->holder, uid, &who, r) ||
        !s_declare_want(req, &w, r))
        return HOME_DONE;
    int rc = s_open(h, req->name, &w, true, uid, &o, r);
    if (rc < 0)
        return rc;
    return rc == 0 ? s_ok(r) : HOME_DONE;
}

bool home_cancel(home_t *h, void *cookie)
{
    cookie_slot_t *s = s_cookie_find(h, cookie);
    if (!s)
        return false;
    object_t *o = s->obj;
    for (size_t i = 0; i < o->n_waiters; i++)
        if (o->waiters[i].cookie == cookie) {
            s_waiter_drop(h, o, i);
            home_serve(h, o);   /* a writer or a large count may have blocked others */
            return true;
        }
    return false;
}

/* ---- events ----------------------------------------------------------------------- */

void home_revoked(home_t *h, const char *name, uint64_t grant,
                  uint64_t last_token, bool owner_died, bool not_recoverable)
{
    object_t *o = name ? home_find(h, name) : NULL;

    if (!o || o->kind != KIND(MUTEX) || !o->cached_at ||
        o->cache_grant != grant)
        return;   /* stale: given back already, or an older grant */
    o->cached_at = 0;
    o->revoke_asked = false;
    o->last = home_max(o->last, last_token);
    o->dirty = o->dirty || owner_died;
    o->not_recoverable = o->not_recoverable || not_recoverable;
    s_mutex_serve(h, o);
}

/* Which holders and waiters an event concerns: a node's, or some of its
 * processes'. */
typedef struct dead {
    uint32_t node;             /* the node */
    const int32_t *pids;       /* its processes, or NULL: all of them */
    size_t n;                  /* how many */
} dead_t;

static bool s_is_dead(const dead_t *d, const who_t *who)
{
    if (who->node != d->node)
        return false;
    if (!d->pids)
        return true;
    for (size_t i = 0; i < d->n; i++)
        if (d->pids[i] == who->pid)
            return true;
    return false;
}

static void s_bury(home_t *h, object_t *o, const dead_t *d)
{
    bool changed = false;

    for (size_t i = 0; i < o->n_waiters;)
        if (s_is_dead(d, &o->waiters[i].who)) {
            s_waiter_drop(h, o, i);
            changed = true;
        } else {
            i++;
        }
    if (o->kind == KIND(MUTEX) && !d->pids && o->cached_at == d->node) {
        /* its state is unknown: owner-died, and beyond every token the
         * node could have handed out under the grant */
        o->cached_at = 0;
        o->revoke_asked = false;
        o->dirty = true;
        o->last = home_max(o->last, o->cache_grant + SYNCTAB_SEQ_MAX);
        changed = true;
    }
    for (size_t i = 0; i < o->n_holds;) {
        if (!s_is_dead(d, &o->holds[i].who)) {
            i++;
            continue;
        }
        changed = true;
        if (o->kind == KIND(MUTEX)) {
            o->n_holds = 0;
            o->dirty = true;
            break;
        }
        if (o->kind == KIND(SEMAPHORE))
            s_sem_add(o, o->holds[i].units);
        s_hold_remove(o, i);
    }
    if (changed)
        home_serve(h, o);
}

static void s_bury_all(home_t *h, const dead_t *d)
{
    for (size_t b = 0; b < h->n_buckets; b++)
        for (object_t *o = h->buckets[b]; o; o = o->next)
            s_bury(h, o, d);
}

void home_gone(home_t *h, uint32_t node, const int32_t *pids, size_t n)
{
    if (!n)
        return;
    dead_t d = { .node = node, .pids = pids, .n = n };
    s_bury_all(h, &d);
}

void home_node_dead(home_t *h, uint32_t node)
{
    dead_t d = { .node = node };
    s_bury_all(h, &d);
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
