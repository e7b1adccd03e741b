/* cache.h - syncd's side of the node cache (README.md, "The node cache").
 *
 * The relay asks the home to cache a mutex at this node when the caller
 * owns it (not shared, not no_cache) and cache_may_cache() agrees; once the
 * home granted it cached, cache.c keeps its lock word in the owner's table
 * (lib/synctab: <rundir>/syncd/uid-U.tab) and answers the node's processes
 * from there. The home gets the mutex back through cache_revoke.
 *
 * Everything runs on syncd's loop; the one timer is the 20 ms re-check of
 * slots being revoked whose holder has not said it unlocked (a thread that
 * died, a process that exited before telling).
 */
#ifndef SYNCD_CACHE_H
#define SYNCD_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "cairn/error.h"
#include "service.h"

typedef struct cache cache_t;

/* Where a process finds a cached mutex's word. table points into the
 * cache (valid until the cache changes). */
typedef struct cache_slot_ref {
    uint32_t slot;
    uint32_t gen;
    const char *table;     /* path of the user's table file */
} cache_slot_ref_t;

/* A revoke that could not finish at once finished: the word is parked,
 * the mutex no longer cached here. */
typedef void (*cache_revoked_fn)(void *userdata, const char *name,
                                 uint64_t grant, uint64_t last_token,
                                 bool owner_died, bool not_recoverable);

/* Tables go in <rundir>/syncd/ (made 0711, root's). NULL with err set. The
 * caller owns the result. */
cache_t *cache_new(cairn_service_t *svc, cache_revoked_fn fn, void *userdata,
                   cairn_error_t *err);
/* The same with its parts given: the loop for the re-check timer (NULL:
 * none; revokes then finish only through cache_slot_released and
 * cache_process_exit), the tables' directory, this node's id. What
 * cache_new calls; the unit test builds a cache without a service. */
cache_t *cache_new_in(cairn_loop_t *loop, const char *dir, uint32_t node,
                      cache_revoked_fn fn, void *userdata, cairn_error_t *err);
/* Parks every word (held ones at their unlock), unmaps and removes every
 * table. NULL-safe; returns NULL. */
cache_t *cache_free(cache_t *c);

/* Whether a mutex of uid may be cached here now: the robust layout is
 * known (synctab_robust_ok), uid's table exists or can be made, and it has
 * a free slot. */
bool cache_may_cache(cache_t *c, uint32_t uid);

/* The home granted `name` (owned by uid) cached to this node, for the
 * thread tid of process pid, with token grant; owner_died: its last holder
 * died (the slot starts INCONSISTENT). The word then names tid; ref says
 * where. 0 or -errno with err set (no slot: the relay gives the grant back
 * at once with cache_revoke's values). */
int cache_install(cache_t *c, const char *name, uint32_t uid, uint64_t grant,
                  bool owner_died, int32_t pid, int32_t tid,
                  cache_slot_ref_t *ref, cairn_error_t *err);

/* What cache_acquire found. */
enum {
    CACHE_MISS = 0,      /* not cached here for uid, being revoked, or at
                          * SYNCTAB_SEQ_MAX: ask the home */
    CACHE_GRANTED = 1,   /* the word was free and now names tid: *token,
                          * *owner_died and ref are set */
    CACHE_USE_SLOT = 2,  /* another thread of the node holds it: ref is
                          * set; the process waits on the word */
};
int cache_acquire(cache_t *c, const char *name, uint32_t uid, int32_t pid,
                  int32_t tid, cache_slot_ref_t *ref, uint64_t *token,
                  bool *owner_died);

/* The home wants the cache back (grant: the cache grant it asks for; a
 * grant older than the one cached is stale: -ESTALE). 1: given back now,
 * outputs set; 0: a holder has it, the revoked callback runs when it
 * unlocks or dies; -ENOENT: not cached here (given back already). */
int cache_revoke(cache_t *c, const char *name, uint64_t grant,
                 uint64_t *last_token, bool *owner_died,
                 bool *not_recoverable);

/* A process of uid parked slot at its unlock (Request{slot_release}).
 * -ENOENT for a slot that is not being revoked at that generation
 * (answered OK anyway: the re-check timer would have found it). */
int cache_slot_released(cache_t *c, uint32_t uid, uint32_t slot, uint32_t gen);

/* Process pid of this node exited: a word syncd granted to one of its
 * threads that it had not put on its robust list yet becomes owner-died
 * (the kernel did it for the others), and revokes waiting on it finish. */
void cache_process_exit(cache_t *c, int32_t pid);

/* Every cached mutex, for announcements and `show`. */
typedef struct cache_entry {
    const char *name;
    uint32_t uid;
    uint64_t grant;        /* the cache grant's token */
    uint64_t last_token;   /* grant + acquisitions under it */
    int32_t holder_pid;    /* 0 if free */
    int32_t holder_tid;
    bool owner_died;
    bool not_recoverable;
    bool revoking;
} cache_entry_t;
typedef void (*cache_each_fn)(void *ctx, const cache_entry_t *e);
void cache_each(cache_t *c, cache_each_fn fn, void *ctx);
/* One entry by name; false if not cached here. */
bool cache_find(cache_t *c, const char *name, cache_entry_t *e);

/* Quorum lost or stopping: every cached mutex is parked as soon as it is
 * free (held ones at their unlock) and forgotten; nothing is told to the
 * home (there is none to tell, or the new one rebuilds from the
 * announcements of the others and treats this node as dead). */
void cache_drop_all(cache_t *c);

#endif
