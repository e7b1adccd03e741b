/* cache.c - syncd's side of the node cache: the per-user lock tables, which
 * mutex has which slot, grants on the word for the node's processes, and
 * revocations (cache.h; README.md, "The node cache").
 *
 * Design. A table per user (lib/synctab: <rundir>/syncd/uid-U.tab, the
 * user's, 0600), made on the first mutex of that user cached here. Each
 * cached mutex is an entry: its name, owner, table and slot, the cache
 * grant's token. Entries are found by name (a chained hash) and by
 * (table, slot) (an array per table), both small.
 *
 * The word is the truth while a mutex is cached: processes lock and unlock
 * it without telling syncd, so everything here reads it (synctab's
 * syncd-side calls) rather than keeping a copy. A revoke parks a free word
 * at once; a held one is marked REVOKING (its holder's unlock parks it and
 * sends slot_release), and a 20 ms timer on the service loop -- armed only
 * while some revoke or drop waits -- tries again, which covers a holder
 * thread that died (the kernel made the word owner-died) and a process that
 * exited without telling. The timer also finishes cache_drop_all's
 * entries, which are forgotten without a word to anyone.
 *
 * A word syncd takes for a process (synctab_grant_free, synctab_grant_to)
 * is on no robust list until the process adopts it, so the entry remembers
 * that pid and tid: if the process exits first, cache_process_exit makes
 * the word owner-died as the kernel would have.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "synctab/synctab.h"
#include "util/clock.h"
#include "util/fileio.h"

#define RECHECK_MS 20
#define BUCKETS 256u

typedef struct s_entry s_entry_t;

/* One user's table. */
typedef struct s_utab {
    uint32_t uid;
    char *path;
    synctab_t tab;
    s_entry_t *by_slot[SYNCTAB_SLOTS];   /* the entry using each slot */
    uint32_t used;                       /* slots in use */
    struct s_utab *next;
} s_utab_t;

/* One mutex cached here. */
struct s_entry {
    char *name;
    uint32_t uid;             /* its owner: whose table */
    s_utab_t *ut;
    uint32_t slot;
    uint32_t gen;             /* the slot's gen when assigned */
    uint64_t grant;           /* the cache grant's token */
    bool revoking;            /* the home asked for it back; callback owed */
    uint64_t revoke_grant;    /* the grant that revoke named */
    bool dropping;            /* cache_drop_all: park and forget, silently */
    int32_t granted_pid;      /* syncd put this process's tid in the word */
    int32_t granted_tid;      /*   and it may not have adopted it yet */
    s_entry_t *next;          /* hash chain */
};

struct cache {
    cairn_loop_t *loop;
    char *dir;                /* <rundir>/syncd */
    uint32_t node;
    uint64_t start_ms;        /* wall clock at start: the tables' syncd_start */
    cache_revoked_fn revoked;
    void *userdata;
    s_utab_t *tables;
    s_entry_t *buckets[BUCKETS];
    int64_t timer;            /* the re-check, 0 when not armed */
};

/* ---- lookups ----------------------------------------------------------- */

static s_entry_t **s_bucket(cache_t *c, const char *name)
{
    return &c->buckets[synctab_name_hash(name) % BUCKETS];
}

static s_entry_t *s_find(cache_t *c, const char *name)
{
    for (s_entry_t *e = *s_bucket(c, name); e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static synctab_slot_t *s_slot(const s_entry_t *e)
{
    return &e->ut->tab.slots[e->slot];
}

/* Frees the entry's slot (its word parked) and forgets it. */
static void s_remove(cache_t *c, s_entry_t *e)
{
    for (s_entry_t **pp = s_bucket(c, e->name); *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    atomic_store(&s_slot(e)->state, SYNCTAB_FREE);
    e->ut->by_slot[e->slot] = NULL;
    e->ut->used--;
    free(e->name);
    free(e);
}

/* What a revoke reports of an entry whose word is parked. */
static void s_outcome(const s_entry_t *e, bool died, uint64_t *last_token,
                      bool *owner_died, bool *not_recoverable)
{
    const synctab_slot_t *sl = s_slot(e);

    *last_token = atomic_load(&sl->grant) + atomic_load(&sl->seq);
    *not_recoverable = (atomic_load(&sl->flags) & SYNCTAB_NOT_RECOVERABLE) != 0;
    *owner_died = died && !*not_recoverable;
}

/* ---- tables ------------------------------------------------------------ */

static s_utab_t *s_utab_find(cache_t *c, uint32_t uid)
{
    for (s_utab_t *u = c->tables; u; u = u->next)
        if (u->uid == uid)
            return u;
    return NULL;
}

/* uid's table, made on first use. NULL with err set. */
static s_utab_t *s_utab_get(cache_t *c, uint32_t uid, cairn_error_t *err)
{
    s_utab_t *u = s_utab_find(c, uid);

    if (u)
        return u;
    u = calloc(1, sizeof *u);
    if (!u || asprintf(&u->path, "%s/uid-%" PRIu32 ".tab", c->dir, uid) < 0) {
        free(u);
        cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        return NULL;
    }
    if (synctab_create(&u->tab, u->path, uid, c->node, c->start_ms, err) < 0) {
        free(u->path);
        free(u);
        return NULL;
    }
    u->uid = uid;
    u->next = c->tables;
    c->tables = u;
    cairn_log_info("cache-table", "uid=%" PRIu32 " path=%s", uid, u->path);
    return u;
}

/* A free slot of u (state FREE, word parked), or SYNCTAB_SLOTS. */
static uint32_t s_free_slot(const s_utab_t *u)
{
    if (u->used >= SYNCTAB_SLOTS)
        return SYNCTAB_SLOTS;
    for (uint32_t i = 0; i < SYNCTAB_SLOTS; i++)
        if (!u->by_slot[i] &&
            (atomic_load(&u->tab.slots[i].word) & SYNCTAB_TID_MASK) ==
                SYNCTAB_PARKED)
            return i;
    return SYNCTAB_SLOTS;
}

/* ---- the re-check timer ------------------------------------------------ */

static bool s_pending(const cache_t *c)
{
    for (size_t b = 0; b < BUCKETS; b++)
        for (const s_entry_t *e = c->buckets[b]; e; e = e->next)
            if (e->revoking || e->dropping)
                return true;
    return false;
}

/* Tries to finish e's revoke or drop; true if e is gone. */
static bool s_try_finish(cache_t *c, s_entry_t *e)
{
    uint64_t last, grant = e->revoke_grant;
    bool died = false, od, nr;
    char *name;

    if (synctab_try_park(&e->ut->tab, e->slot, &died) != 1)
        return false;
    if (e->dropping) {
        s_remove(c, e);
        return true;
    }
    s_outcome(e, died, &last, &od, &nr);
    name = strdup(e->name);
    s_remove(c, e);
    cairn_log_info("cache-revoked", "name=%s grant=%" PRIu64 " last=%" PRIu64
                   " owner_died=%d not_recoverable=%d",
                   name ? name : "?", grant, last, od, nr);
    if (name && c->revoked)
        c->revoked(c->userdata, name, grant, last, od, nr);
    free(name);
    return true;
}

static void s_recheck_all(cache_t *c)
{
    for (size_t b = 0; b < BUCKETS; b++)
        for (s_entry_t *e = c->buckets[b], *nx; e; e = nx) {
            nx = e->next;
            if (e->revoking || e->dropping)
                s_try_finish(c, e);
        }
}

static int s_on_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    cache_t *c = userdata;

    s_recheck_all(c);
    if (!s_pending(c)) {
        cairn_loop_cancel_timer(loop, id);
        c->timer = 0;
    }
    return 0;
}

static void s_arm(cache_t *c)
{
    int64_t id;

    if (c->timer || !c->loop)
        return;
    id = cairn_loop_add_timer(c->loop, RECHECK_MS, RECHECK_MS, s_on_timer, c);
    if (id > 0)
        c->timer = id;
    else
        cairn_log_err((int)id, "cache-timer", "msg=\"cannot arm the re-check "
                      "of revoked slots\"");
}

/* ---- life -------------------------------------------------------------- */

cache_t *cache_new_in(cairn_loop_t *loop, const char *dir, uint32_t node,
                      cache_revoked_fn fn, void *userdata, cairn_error_t *err)
{
    cache_t *c;
    int r;

    if (!dir) {
        cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no cache directory");
        return NULL;
    }
    r = cairn_mkdir_p(dir, 0711);
    if (r == 0 && chmod(dir, 0711) < 0)
        r = -errno;
    if (r < 0) {
        cairn_error_set(err, r, CAIRN_SYSTEM, "cannot make %s: %s", dir,
                        strerror(-r));
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        return NULL;
    }
    c->start_ms = cairn_realtime_ms();
    c->loop = loop;
    c->node = node;
    c->revoked = fn;
    c->userdata = userdata;
    return c;
}

cache_t *cache_new(cairn_service_t *svc, cache_revoked_fn fn, void *userdata,
                   cairn_error_t *err)
{
    const cairn_node_desc_t *node = svc ? cairn_service_node(svc) : NULL;
    char dir[PATH_MAX];

    if (!node || !node->rundir) {
        cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                        "the node cache needs the node's run directory");
        return NULL;
    }
    if ((size_t)snprintf(dir, sizeof dir, "%s/syncd", node->rundir) >= sizeof dir) {
        cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                        "run directory too long: %s", node->rundir);
        return NULL;
    }
    return cache_new_in(cairn_service_loop(svc), dir, node->id, fn, userdata,
                        err);
}

cache_t *cache_free(cache_t *c)
{
    if (!c)
        return NULL;
    if (c->timer)
        cairn_loop_cancel_timer(c->loop, c->timer);
    for (size_t b = 0; b < BUCKETS; b++)
        for (s_entry_t *e = c->buckets[b], *nx; e; e = nx) {
            nx = e->next;
            free(e->name);
            free(e);
        }
    for (s_utab_t *u = c->tables, *nx; u; u = nx) {
        nx = u->next;
        /* processes may keep it mapped: every word they could take is
         * parked (held ones at their unlock), so they ask a syncd */
        for (uint32_t i = 0; i < SYNCTAB_SLOTS; i++) {
            bool died;

            atomic_store(&u->tab.slots[i].state, SYNCTAB_REVOKING);
            synctab_try_park(&u->tab, i, &died);
        }
        synctab_unmap(&u->tab);
        unlink(u->path);
        free(u->path);
        free(u);
    }
    rmdir(c->dir);   /* if empty */
    free(c->dir);
    free(c);
    return NULL;
}

/* ---- the relay's calls ------------------------------------------------- */

bool cache_may_cache(cache_t *c, uint32_t uid)
{
    cairn_error_t err;
    s_utab_t *u;

    if (!c || !synctab_robust_ok())
        return false;
    u = s_utab_get(c, uid, &err);
    if (!u) {
        cairn_log_warn(0, "cache-table", "uid=%" PRIu32 " msg=\"%s\", not "
                       "caching", uid, err.message);
        return false;
    }
    return s_free_slot(u) < SYNCTAB_SLOTS;
}

static void s_ref(const s_entry_t *e, cache_slot_ref_t *ref)
{
    if (ref)
        *ref = (cache_slot_ref_t){ .slot = e->slot, .gen = e->gen,
                                   .table = e->ut->path };
}

int cache_install(cache_t *c, const char *name, uint32_t uid, uint64_t grant,
                  bool owner_died, int32_t pid, int32_t tid,
                  cache_slot_ref_t *ref, cairn_error_t *err)
{
    s_entry_t *e;
    s_utab_t *u;
    uint32_t i;

    if (!c || !name || !*name || tid <= 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cache_install: bad argument");
    e = s_find(c, name);
    if (e) {
        /* an older cache of it that was not given back: take its slot
         * back if nobody holds it, else refuse this one */
        bool died;

        if (e->uid != uid || synctab_try_park(&e->ut->tab, e->slot, &died) != 1)
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY,
                                   "%s is cached here already and held", name);
        s_remove(c, e);
    }
    u = s_utab_get(c, uid, err);
    if (!u)
        return -EIO;
    i = s_free_slot(u);
    if (i >= SYNCTAB_SLOTS)
        return cairn_error_set(err, -ENOSPC, CAIRN_UNAVAILABLE,
                               "uid %" PRIu32 "'s table has no free slot (%u)",
                               uid, SYNCTAB_SLOTS);
    e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    synctab_assign(&u->tab, i, synctab_name_hash(name), grant,
                   owner_died ? SYNCTAB_INCONSISTENT : 0);
    synctab_grant_to(&u->tab, i, tid);
    atomic_store(&u->tab.slots[i].holder_pid, pid);
    e->uid = uid;
    e->ut = u;
    e->slot = i;
    e->gen = atomic_load(&u->tab.slots[i].gen);
    e->grant = grant;
    e->granted_pid = pid;
    e->granted_tid = tid;
    e->next = *s_bucket(c, name);
    *s_bucket(c, name) = e;
    u->by_slot[i] = e;
    u->used++;
    s_ref(e, ref);
    return 0;
}

int cache_acquire(cache_t *c, const char *name, uint32_t uid, int32_t pid,
                  int32_t tid, cache_slot_ref_t *ref, uint64_t *token,
                  bool *owner_died)
{
    s_entry_t *e = c && name ? s_find(c, name) : NULL;
    int r;

    if (!e || e->uid != uid || e->revoking || e->dropping || tid <= 0)
        return CACHE_MISS;
    r = synctab_grant_free(&e->ut->tab, e->slot, pid, tid, token, owner_died);
    if (r == SYNCTAB_TAKEN) {
        e->granted_pid = pid;
        e->granted_tid = tid;
        s_ref(e, ref);
        return CACHE_GRANTED;
    }
    if (r == -EBUSY || r == -EDEADLK) {
        /* the process takes it on the word: a futex wait, or its own
         * EDEADLK */
        s_ref(e, ref);
        return CACHE_USE_SLOT;
    }
    return CACHE_MISS;
}

int cache_revoke(cache_t *c, const char *name, uint64_t grant,
                 uint64_t *last_token, bool *owner_died, bool *not_recoverable)
{
    s_entry_t *e = c && name ? s_find(c, name) : NULL;
    bool died = false;

    if (!e || e->dropping)
        return -ENOENT;
    if (grant < e->grant)
        return -ESTALE;
    if (synctab_try_park(&e->ut->tab, e->slot, &died) == 1) {
        s_outcome(e, died, last_token, owner_died, not_recoverable);
        s_remove(c, e);
        return 1;
    }
    e->revoking = true;
    e->revoke_grant = grant;
    s_arm(c);
    return 0;
}

int cache_slot_released(cache_t *c, uint32_t uid, uint32_t slot, uint32_t gen)
{
    s_utab_t *u = c ? s_utab_find(c, uid) : NULL;
    s_entry_t *e;

    if (!u || slot >= SYNCTAB_SLOTS || !(e = u->by_slot[slot]) || e->gen != gen ||
        !(e->revoking || e->dropping))
        return -ENOENT;
    return s_try_finish(c, e) ? 0 : -ENOENT;
}

void cache_process_exit(cache_t *c, int32_t pid)
{
    bool any = false;

    if (!c || pid <= 0)
        return;
    for (size_t b = 0; b < BUCKETS; b++)
        for (s_entry_t *e = c->buckets[b]; e; e = e->next) {
            if (e->granted_pid != pid)
                continue;
            if (synctab_owner_died(&e->ut->tab, e->slot, e->granted_tid))
                cairn_log_info("cache-owner-died", "name=%s pid=%d tid=%d",
                               e->name, pid, e->granted_tid);
            e->granted_pid = 0;
            e->granted_tid = 0;
            any = true;
        }
    if (any || s_pending(c))
        s_recheck_all(c);
}

static void s_entry_of(const s_entry_t *e, cache_entry_t *out)
{
    const synctab_slot_t *sl = s_slot(e);
    uint32_t w = atomic_load(&sl->word), tid = w & SYNCTAB_TID_MASK;
    uint32_t flags = atomic_load(&sl->flags);
    bool held = tid != 0 && tid != SYNCTAB_PARKED;

    *out = (cache_entry_t){
        .name = e->name,
        .uid = e->uid,
        .grant = e->grant,
        .last_token = atomic_load(&sl->grant) + atomic_load(&sl->seq),
        .holder_pid = held ? atomic_load(&sl->holder_pid) : 0,
        .holder_tid = held ? (int32_t)tid : 0,
        .owner_died = (w & SYNCTAB_OWNER_DIED) || (flags & SYNCTAB_INCONSISTENT),
        .not_recoverable = (flags & SYNCTAB_NOT_RECOVERABLE) != 0,
        .revoking = e->revoking,
    };
}

void cache_each(cache_t *c, cache_each_fn fn, void *ctx)
{
    if (!c || !fn)
        return;
    for (size_t b = 0; b < BUCKETS; b++)
        for (const s_entry_t *e = c->buckets[b]; e; e = e->next) {
            cache_entry_t out;

            if (e->dropping)
                continue;
            s_entry_of(e, &out);
            fn(ctx, &out);
        }
}

bool cache_find(cache_t *c, const char *name, cache_entry_t *out)
{
    s_entry_t *e = c && name ? s_find(c, name) : NULL;

    if (!e || e->dropping)
        return false;
    if (out)
        s_entry_of(e, out);
    return true;
}

void cache_drop_all(cache_t *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < BUCKETS; b++)
        for (s_entry_t *e = c->buckets[b], *nx; e; e = nx) {
            bool died;

            nx = e->next;
            e->dropping = true;
            e->revoking = false;
            if (synctab_try_park(&e->ut->tab, e->slot, &died) == 1)
                s_remove(c, e);
        }
    if (s_pending(c))
        s_arm(c);
}
