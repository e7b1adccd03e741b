/* home.h - the objects this node is home of: their state and every
 * decision about them (who gets what, in which order, with which token).
 *
 * Pure logic: no sockets, no timers, no clock of its own. syncd's relay
 * side (relay.c) feeds it requests and events and carries out what it asks
 * through the callbacks of home_ops_t: answer a waiter, revoke a node's
 * cache. That keeps every rule of the primitives in one file, testable
 * without a cluster (tests: test-home.c).
 *
 * Rules it keeps (services/syncd/README.md has the reasons):
 *  - an object is made by the first request that names it, from its Spec;
 *    a request of another kind, or a non-zero value that differs, is
 *    FAILED_PRECONDITION; a user other than the owner (and not root) is
 *    PERMISSION_DENIED unless the object is shared;
 *  - waiters are served in arrival order (FIFO); a release hands the
 *    object to the next waiter at once (one callback, one message);
 *  - every grant gets a token strictly greater than every token granted
 *    for the object before: token = max(last + 1, now_us << 4) -- the clock
 *    floor keeps tokens increasing across a failover that lost the last
 *    ones (README, "Fencing tokens");
 *  - a mutex granted with cache_ok while nobody waits is *cached* at the
 *    requester's node (cached_at, cache_grant); any other request for it
 *    queues and makes the home ask that node to give it back (revoke); the
 *    node answers with the last token it handed out and whether its last
 *    holder died. It is granted cached only when the requester's uid is
 *    the object's owner uid and the object is not shared (the node's
 *    tables are per user). A trylock (timeout 0) of a cached mutex asks
 *    for it back and answers BUSY;
 *  - a release (MODE_LOCK) of a cached mutex sent by the caching node
 *    (holder.node == cached_at) gives the cache back unused (the relay
 *    could not install it): the mutex is free and served onward, its last
 *    token stays; from any other node it is "not the holder";
 *  - tag 0 is no retry identity: only a non-zero (holder, tag) already
 *    waiting re-binds (the new cookie replaces the old, HOME_QUEUED) or
 *    already granted gets the same grant again (HOME_DONE);
 *  - a holder that dies (home_gone, home_node_dead) leaves a mutex
 *    owner-died: the next grant says so, and the mutex stays inconsistent
 *    until its holder calls consistent; unlocked inconsistent, it is not
 *    recoverable (every later acquire fails) until destroyed. A dead
 *    holder's rwlock share or semaphore units are given back; a barrier or
 *    condvar waiter that dies is dropped.
 */
#ifndef SYNCD_HOME_H
#define SYNCD_HOME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"
#include "syncd.pb-c.h"

typedef struct home home_t;

/* What a waiter gets (one of the requests below that returned HOME_QUEUED). */
typedef struct home_result {
    int code;              /* CAIRN_OK or a Status code (TIMEOUT is never
                            * given here: the caller times waiters out
                            * with home_cancel) */
    char message[160];     /* why, when code != OK */
    uint64_t token;        /* acquire, cond wait (none: 0) */
    bool owner_died;       /* mutex granted owner-died */
    bool cached;           /* granted as a node cache */
    bool serial;           /* barrier: this party is the serial one */
    uint64_t generation;   /* barrier: the generation that completed */
    uint32_t woken;        /* cond signal */
} home_result_t;

typedef struct home_ops {
    /* A queued waiter's outcome; cookie is what the request gave. Called
     * from inside any home_* call (never re-entered: the callee must not
     * call back into the home from it -- queue work instead). */
    void (*answer)(void *userdata, void *cookie, const home_result_t *r);
    /* Asks `node` to give back its cache of mutex `name` granted with
     * token `grant` (Request{revoke}); the answer comes back through
     * home_revoked. Asked once per grant. */
    void (*revoke)(void *userdata, uint32_t node, const char *name,
                   uint64_t grant);
    /* The clock, microseconds since the epoch (tests pass a fake one). */
    uint64_t (*now_us)(void *userdata);
    /* Monotonic milliseconds, for "since" in show. */
    uint64_t (*now_ms)(void *userdata);
} home_ops_t;

/* HOME_DONE: *r is the answer now; HOME_QUEUED: ops->answer comes later
 * with cookie; < 0: -errno for ENOMEM only (r->code/message say the rest:
 * an error answer is HOME_DONE with r->code != OK). */
#define HOME_DONE 0
#define HOME_QUEUED 1

/* NULL on ENOMEM. self is this node's id. The caller owns the result. */
home_t *home_new(uint32_t self, const home_ops_t *ops, void *userdata);
/* Frees every object; waiters' cookies are dropped without answers.
 * NULL-safe; returns NULL. */
home_t *home_free(home_t *h);

/* ---- requests (holder and uid already filled and checked by the relay) */

/* Mutex lock, rwlock read/write, semaphore wait. timeout 0 and not free:
 * HOME_DONE with BUSY. uid: the caller's user (0 = root). */
int home_acquire(home_t *h, const Cairn__Syncd__AcquireRequest *req,
                 uint32_t uid, void *cookie, home_result_t *r);
/* Unlock / post. HOME_DONE always (r->code says). */
int home_release(home_t *h, const Cairn__Syncd__ReleaseRequest *req,
                 uint32_t uid, home_result_t *r);
int home_consistent(home_t *h, const Cairn__Syncd__ConsistentRequest *req,
                    uint32_t uid, home_result_t *r);
int home_barrier(home_t *h, const Cairn__Syncd__BarrierRequest *req,
                 uint32_t uid, void *cookie, home_result_t *r);
/* PHASE_PREPARE queues the waiter (HOME_DONE, OK); PHASE_WAIT waits for
 * the signal (HOME_QUEUED, or HOME_DONE if it came already); PHASE_CANCEL
 * drops it (HOME_DONE). Waiters are keyed by (holder, tag). */
int home_cond(home_t *h, const Cairn__Syncd__CondWaitRequest *req,
              uint32_t uid, void *cookie, home_result_t *r);
int home_cond_signal(home_t *h, const Cairn__Syncd__CondSignalRequest *req,
                     uint32_t uid, home_result_t *r);
int home_destroy(home_t *h, const Cairn__Syncd__DestroyRequest *req,
                 uint32_t uid, home_result_t *r);
/* Makes the object from req->spec if it does not exist (value as given),
 * else checks it matches (kind; value when non-zero). HOME_DONE always. */
int home_declare(home_t *h, const Cairn__Syncd__DeclareRequest *req,
                 uint32_t uid, home_result_t *r);

/* A waiter stops waiting (its timeout passed, its relay gave up): removed
 * without an answer. Returns true if it was waiting. */
bool home_cancel(home_t *h, void *cookie);

/* ---- events ------------------------------------------------------------ */

/* The answer to a revoke: the cache is back (last_token: the highest
 * token the node handed out under it). A stale grant is ignored. */
void home_revoked(home_t *h, const char *name, uint64_t grant,
                  uint64_t last_token, bool owner_died, bool not_recoverable);
/* Processes of `node` exited. */
void home_gone(home_t *h, uint32_t node, const int32_t *pids, size_t n);
/* `node` is dead or left: all its holdings as if its processes exited, its
 * caches owner-died unless given back, its waiters dropped. */
void home_node_dead(home_t *h, uint32_t node);

/* ---- introspection ----------------------------------------------------- */

/* Fills info (already initialised) for `name` with memory from alloc(ctx,
 * size) (zeroed, freed by the caller's arena). false: no such object.
 * info->home is this node; info->name and info->state point at the home's
 * own storage (valid until the next home_* call). */
typedef void *(*home_alloc_fn)(void *ctx, size_t size);
bool home_show(home_t *h, const char *name, Cairn__Syncd__ObjectInfo *info,
               home_alloc_fn alloc, void *ctx);
/* Every object's name, in name order, that `uid` may see (root: all);
 * *names is allocated with alloc (the strings are the home's, valid until
 * the next home_* call). */
int home_names(home_t *h, uint32_t uid, const char ***names, size_t *n,
               home_alloc_fn alloc, void *ctx);
size_t home_count(const home_t *h);

/* ---- moving homes ------------------------------------------------------ */

/* Objects whose home is no longer this node (keep(name) says false):
 * fills *states (alloc) with their authoritative state, removes them, and
 * answers their waiters UNAVAILABLE "moved" (their relays re-send to the
 * new home). */
typedef bool (*home_keep_fn)(void *ctx, const char *name);
int home_hand_over(home_t *h, home_keep_fn keep, void *keep_ctx,
                   Cairn__Syncd__ObjectState ***states, size_t *n,
                   home_alloc_fn alloc, void *ctx);
/* What a relay (or the old home) announced of an object this node is now
 * home of: merged in (holders added, last token raised, authoritative
 * values taken). from: the sender's node. 0: merged; 1: merged, but two
 * claims conflicted (two holders of a mutex, a cache and a holder): the
 * one with the higher token is kept, the object marked owner-died, and
 * err says which (the caller logs it); -EINVAL: a malformed state, nothing
 * changed (err says why); -ENOMEM. */
int home_import(home_t *h, uint32_t from,
                const Cairn__Syncd__ObjectState *st, cairn_error_t *err);
/* While recovering (a view change made this node home of objects whose
 * state is still being announced), a request naming an object not known
 * here is answered UNAVAILABLE "recovering" instead of making it (its
 * relay retries); known objects are served as usual. */
void home_set_recovering(home_t *h, bool on);

#endif
