/* home-private.h - what the three files of syncd's home share: the object
 * model (objects, their holdings and waiters, the table they live in) and
 * the helpers they use. home.h is the module's interface; nothing outside
 * home*.c includes this file.
 *
 *  - home.c: every rule of the five primitives (requests, events);
 *  - home-table.c: the table of objects, the cookie index, the holdings
 *    and waiters lists, the home's lifecycle, introspection;
 *  - home-move.c: moving homes: an object's state handed over to its new
 *    home, a state announced by a relay or the old home imported, and the
 *    recovering mode while the announcements come in.
 *
 * Ownership: the home owns its objects (the table in struct home); an
 * object owns its name, its holdings, its waiters (each waiter its mutex
 * string) and its barrier arrivals.
 */
#ifndef SYNCD_HOME_PRIVATE_H
#define SYNCD_HOME_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "home.h"

#define NAME_MAX_BYTES 255
#define SEM_MAX 0x7fffffffu          /* SEM_VALUE_MAX on Linux */

typedef Cairn__Syncd__Holder pb_holder_t;
typedef Cairn__Syncd__Spec pb_spec_t;

#define KIND(k) CAIRN__SYNCD__KIND__KIND_##k
#define MODE(m) CAIRN__SYNCD__MODE__MODE_##m

/* Who: a thread of a process of a node, and the user it runs as. */
typedef struct who {
    uint32_t node;             /* node id */
    int32_t pid;               /* process on that node */
    int32_t tid;               /* thread of that process */
    uint32_t uid;              /* the user (as the relay vouched) */
} who_t;

/* One grant alive: a mutex's holder, a rwlock share, a process's units. */
typedef struct holding {
    who_t who;                 /* the holder (semaphore: tid of the last grant) */
    uint64_t tag;              /* the acquire's tag (retries find it) */
    int mode;                  /* MODE_* */
    uint64_t token;            /* the grant's token (semaphore: the last) */
    uint64_t units;            /* semaphore units held; others 1 */
    bool owner_died;           /* granted owner-died (a retry says it again) */
} holding_t;

/* One waiter, FIFO: an acquire, a barrier arrival, a condvar waiter. */
typedef struct waiter {
    who_t who;                 /* who waits */
    uint64_t tag;              /* its tag: (who, tag) re-binds a retry */
    void *cookie;              /* the relay's; NULL: condvar prepared only */
    int mode;                  /* acquire: MODE_*; others MODE_UNSPECIFIED */
    uint32_t count;            /* semaphore units wanted */
    bool cache_ok;             /* mutex: may be granted cached */
    bool signalled;            /* condvar: a signal came before its WAIT */
    char *mutex;               /* condvar: the mutex it is used with (owned) */
    uint64_t since_ms;         /* ops->now_ms when it queued */
} waiter_t;

/* A barrier party of the last completed generation (retries). */
typedef struct arrival {
    who_t who;                 /* the party */
    uint64_t tag;              /* its tag */
    bool serial;               /* it was the serial one */
} arrival_t;

/* An object: what its kind needs, its holdings and its waiters. */
typedef struct object {
    struct object *next;       /* hash chain */
    char *name;                /* owned */
    uint64_t hash;             /* FNV-1a of name */
    int kind;                  /* KIND_* */
    uint32_t owner_uid;        /* who made it */
    bool shared;               /* any user may use it */
    bool no_cache;             /* mutex: never cached */
    uint32_t value;            /* semaphore: initial value; barrier: parties */
    uint64_t last;             /* the last token granted */
    holding_t *holds;          /* holdings (owned) */
    size_t n_holds, cap_holds;
    waiter_t *waiters;         /* FIFO (owned) */
    size_t n_waiters, cap_waiters;
    /* mutex */
    bool dirty;                /* owner died, not made consistent yet */
    bool not_recoverable;      /* unlocked while dirty: every acquire fails */
    uint32_t cached_at;        /* node caching it, 0 if none */
    uint64_t cache_grant;      /* the cache grant's token */
    bool cache_dirty;          /* dirty when cached (back if given back unused) */
    bool revoke_asked;         /* ops->revoke sent for this cache grant */
    who_t cache_who;           /* the request granted the cache (retries) */
    uint64_t cache_tag;        /* its tag */
    /* semaphore */
    uint64_t sem_value;        /* free units */
    bool sem_known;            /* value from an authoritative state or made here */
    /* barrier */
    uint64_t generation;       /* completions */
    arrival_t *done;           /* parties of the last completed generation */
    size_t n_done, cap_done;
} object_t;

/* cookie -> object of the waiter that has it. */
typedef struct cookie_slot {
    void *cookie;              /* NULL: empty */
    object_t *obj;             /* its object */
} cookie_slot_t;

struct home {
    uint32_t self;             /* this node */
    home_ops_t ops;            /* callbacks */
    void *userdata;            /* theirs */
    object_t **buckets;        /* chained hash of objects */
    size_t n_buckets;          /* power of two */
    size_t n_objects;          /* objects */
    cookie_slot_t *cookies;    /* open addressing, linear probing */
    size_t cap_cookies;        /* power of two or 0 */
    size_t n_cookies;          /* used slots */
    bool recovering;           /* unknown names: UNAVAILABLE */
};

/* ---- home.c: small helpers -------------------------------------------- */

const char *home_kind_name(int kind);
/* An error answer: r cleared, code and message set. HOME_DONE. */
int home_fail(home_result_t *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool home_same_thread(const who_t *a, const who_t *b);
/* A name of 1..255 bytes; *r says why not. Never reads past byte 256. */
bool home_name_ok(const char *name, const char *what, home_result_t *r);
uint64_t home_max(uint64_t a, uint64_t b);

/* ---- home-table.c: objects ---------------------------------------------- */

object_t *home_find(const home_t *h, const char *name);
/* A new object (not yet in the table); NULL on ENOMEM. */
object_t *home_object_new(const char *name, int kind, uint32_t value,
                          uint32_t owner, bool shared, bool no_cache);
void home_insert(home_t *h, object_t *o);
/* Takes o out of the table (not freed). */
void home_unlink(home_t *h, object_t *o);
/* Frees o (already out of the table) and its waiters' cookies, without
 * answers. NULL-safe; returns NULL. */
object_t *home_object_free(home_t *h, object_t *o);
/* Root, the owner, or anyone when o is shared. */
bool home_may_use(const object_t *o, uint32_t uid);
/* The slot of a waiter's cookie (which object it waits on), or NULL. */
cookie_slot_t *home_cookie_find(home_t *h, const void *cookie);

/* ---- home-table.c: holdings and waiters --------------------------------- */

/* who's holding taken with tag (tag 0: none), or NULL. */
holding_t *home_hold_find_tag(object_t *o, const who_t *who, uint64_t tag);
/* who's waiter queued with tag, or NULL. */
waiter_t *home_waiter_find_tag(object_t *o, const who_t *who, uint64_t tag);
/* A holding added; room was reserved when its waiter queued (or by the
 * caller). */
holding_t *home_hold_add(object_t *o);
/* Removes holding i, keeping the others' order. */
void home_hold_remove(object_t *o, size_t i);
/* Room for `more` holdings: 0 or -ENOMEM. */
int home_hold_reserve(object_t *o, size_t more);
/* Frees what a waiter owns (its mutex string). */
void home_waiter_clear(waiter_t *w);
/* Queues a waiter (copied; *w's mutex string moves in). Reserves what
 * serving it will need. 0 or -ENOMEM (nothing changed). */
int home_waiter_add(home_t *h, object_t *o, waiter_t *w);
/* Takes waiter i off the list into *out (the caller clears it). */
void home_waiter_take(home_t *h, object_t *o, size_t i, waiter_t *out);
/* Drops waiter i without an answer. */
void home_waiter_drop(home_t *h, object_t *o, size_t i);
/* Takes waiter i off and answers it with r. */
void home_waiter_answer(home_t *h, object_t *o, size_t i,
                        const home_result_t *r);
/* A retry re-binds: the new cookie replaces the old one. HOME_QUEUED or
 * -ENOMEM. */
int home_waiter_rebind(home_t *h, object_t *o, waiter_t *w, void *cookie);

/* ---- home.c: serving ----------------------------------------------------- */

bool home_rw_has_writer(const object_t *o);
/* A semaphore's holding of who's process, or NULL. */
holding_t *home_sem_holding(object_t *o, const who_t *who);
/* Answers every waiter of o with r. */
void home_fail_all(home_t *h, object_t *o, const home_result_t *r);
/* Whatever changed, serve what can be served now. */
void home_serve(home_t *h, object_t *o);

/* ---- home-table.c: introspection --------------------------------------- */

/* s copied into memory from alloc(ctx); NULL on ENOMEM. */
char *home_strdup_a(home_alloc_fn alloc, void *ctx, const char *s);
/* The holdings as Grant messages; false on ENOMEM. */
bool home_grants_a(const object_t *o, home_alloc_fn alloc, void *ctx,
                   Cairn__Syncd__Grant ***ret, size_t *ret_n);

#endif
