/* home.c - every rule of the five primitives for the objects this node
 * is home of (home.h is the contract, README.md the reasons): acquire,
 * release, barrier, condvar, destroy, declare, cancel, and the events
 * (revokes answered, deaths). The table the objects live in, their
 * holdings and waiters lists and introspection are home-table.c; moving
 * homes (hand-over, import, recovering) is home-move.c; home-private.h
 * holds the object model and the helpers the three share.
 *
 * Design. An object is a name, a kind, its spec and two lists: *holdings*
 * (who has it: one per mutex, one per read share or write lock of a
 * rwlock, one per process holding semaphore units) and *waiters* (a FIFO
 * array: acquirers, barrier arrivals, condvar waiters). A request opens
 * its object by name (made on first use, checked against the caller and
 * the request's spec), then the kind's rules grant it, queue it or
 * refuse it; whatever frees a holding serves the queue again.
 *
 * Everything that can run out of memory does so before any state changes:
 * queuing a waiter (home-table.c) reserves room for its future holding and
 * its cookie, so serving waiters (a release, a death, a revoke) never
 * allocates and never fails half-way. A waiter is taken off its list before
 * ops->answer runs, and the callee may not call back in, so no list changes
 * under a loop.
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

#define PHASE(p) CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_##p

/* ---- small helpers ----------------------------------------------------- */

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

/* ---- opening an object for a request ------------------------------------ */

/* What a request says the object should be. */
typedef struct want {
    int kind;                  /* KIND_* the request needs */
    uint32_t value;            /* Spec.value (0: any) */
    uint32_t make_value;       /* the value to make it with */
    bool shared;               /* on first use */
    bool no_cache;             /* on first use */
} want_t;

/* Checks an existing object against the caller and the request. */
static bool s_check(const object_t *o, const want_t *w, uint32_t uid,
                    home_result_t *r)
{
    if (!home_may_use(o, uid)) {
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
        home_waiter_answer(h, o, 0, r);
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
    home_waiter_take(h, o, 0, &w);
    s_mutex_grant(h, o, &w.who, w.tag, w.cache_ok, &r);
    h->ops.answer(h->userdata, w.cookie, &r);
    home_waiter_clear(&w);
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
        home_waiter_take(h, o, 0, &t);
        s_rw_grant(h, o, &t.who, t.tag, t.mode, &r);
        h->ops.answer(h->userdata, t.cookie, &r);
        home_waiter_clear(&t);
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
        home_waiter_take(h, o, 0, &t);
        s_sem_grant(h, o, &t.who, t.tag, t.count, &r);
        h->ops.answer(h->userdata, t.cookie, &r);
        home_waiter_clear(&t);
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
    int rc = home_waiter_add(h, o, &w);
    return rc < 0 ? rc : HOME_QUEUED;
}

static int s_mutex_acquire(home_t *h, object_t *o, const who_t *who,
                           const Cairn__Syncd__AcquireRequest *req,
                           void *cookie, home_result_t *r)
{
    holding_t *g = home_hold_find_tag(o, who, req->tag);
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
    waiter_t *w = req->tag ? home_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return home_waiter_rebind(h, o, w, cookie);
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
    holding_t *g = home_hold_find_tag(o, who, req->tag);
    if (g)
        return s_grant_again(g, r);
    waiter_t *w = req->tag ? home_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return home_waiter_rebind(h, o, w, cookie);
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
    holding_t *g = home_hold_find_tag(o, who, req->tag);
    if (g)
        return s_grant_again(g, r);
    waiter_t *w = req->tag ? home_waiter_find_tag(o, who, req->tag) : NULL;
    if (w)
        return home_waiter_rebind(h, o, w, cookie);
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
    home_hold_remove(o, i);
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
            home_hold_remove(o, (size_t)(g - o->holds));
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
        home_waiter_answer(h, o, 0, &a);
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
    waiter_t *wt = req->tag ? home_waiter_find_tag(o, &who, req->tag) : NULL;
    if (wt)
        return home_waiter_rebind(h, o, wt, cookie);
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
    rc = home_waiter_add(h, o, &nw);
    return rc < 0 ? rc : HOME_QUEUED;
}

/* ---- condition variable ------------------------------------------------------ */

static int s_cond_prepare(home_t *h, object_t *o, const who_t *who,
                          const Cairn__Syncd__CondWaitRequest *req,
                          home_result_t *r)
{
    if (home_waiter_find_tag(o, who, req->tag))
        return s_ok(r);     /* a retried PREPARE: already queued */
    if (o->n_waiters && strcmp(o->waiters[0].mutex, req->mutex) != 0)
        return home_fail(r, CAIRN_INVALID_ARGUMENT, "\"%s\" is in use with "
                         "mutex \"%s\", not \"%s\"", o->name,
                         o->waiters[0].mutex, req->mutex);
    waiter_t w = { .who = *who, .tag = req->tag, .mutex = strdup(req->mutex) };
    if (!w.mutex)
        return -ENOMEM;
    int rc = home_waiter_add(h, o, &w);
    home_waiter_clear(&w);
    return rc < 0 ? rc : s_ok(r);
}

static int s_cond_wait(home_t *h, object_t *o, const who_t *who, uint64_t tag,
                       void *cookie, home_result_t *r)
{
    waiter_t *w = o ? home_waiter_find_tag(o, who, tag) : NULL;

    if (!w)
        return s_ok(r);     /* not known here: a spurious wakeup */
    if (w->signalled) {
        home_waiter_drop(h, o, (size_t)(w - o->waiters));
        return s_ok(r);
    }
    return home_waiter_rebind(h, o, w, cookie);
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
    waiter_t *wt = o ? home_waiter_find_tag(o, &who, req->tag) : NULL;
    if (wt)
        home_waiter_drop(h, o, (size_t)(wt - o->waiters));
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
            home_waiter_answer(h, o, i, &a);
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
    cookie_slot_t *s = home_cookie_find(h, cookie);
    if (!s)
        return false;
    object_t *o = s->obj;
    for (size_t i = 0; i < o->n_waiters; i++)
        if (o->waiters[i].cookie == cookie) {
            home_waiter_drop(h, o, i);
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
            home_waiter_drop(h, o, i);
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
        home_hold_remove(o, i);
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
