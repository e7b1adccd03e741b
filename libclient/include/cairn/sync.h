/* cairn/sync.h - cluster-wide mutexes, rwlocks, semaphores, barriers and
 * condition variables (syncd), with POSIX semantics.
 *
 * Objects are named by a string (1..255 bytes) and made on first use: the
 * call that names an object first decides its kind (and, for a semaphore or
 * a barrier, its value or parties); a later call of another kind fails with
 * FAILED_PRECONDITION. An object belongs to the user who made it: only that
 * user and root may use it, unless it was made `shared` (cairn_sync_declare).
 *
 * A cairn_sync_t is a session with the syncd of this node. It is safe to
 * use from many threads at once: each call that must ask syncd takes a
 * connection of its own from the session's pool, and a thread that holds a
 * mutex is the holder (POSIX error-checking semantics: unlocking a mutex
 * another thread holds is EPERM, relocking one's own is EDEADLK).
 *
 * Fast path. A mutex that only this node uses is *cached* here: its lock
 * word lives in a table shared between syncd and this user's processes
 * (one file per user, mode 0600), and lock/unlock of an uncontended cached
 * mutex is one compare-and-swap each -- no system call, no message. The
 * word is a robust futex on the calling thread's robust list (the one glibc
 * keeps), so the kernel marks it owner-died when its holder dies.
 *
 * Return values: 0, or a negative errno, as pthread calls return a positive
 * one:
 *   -EOWNERDEAD      the mutex is granted, but its previous holder died
 *                    holding it: call cairn_mutex_consistent() before
 *                    unlocking, or it becomes not recoverable;
 *   -ENOTRECOVERABLE the mutex was unlocked while inconsistent; it stays so
 *                    until destroyed;
 *   -ETIMEDOUT       the timeout passed, nothing is held;
 *   -EBUSY           a try (timeout 0) found it taken;
 *   -EDEADLK         the calling thread already holds it;
 *   -EPERM           unlock of what the calling thread does not hold;
 *   -EACCES          the object is another user's;
 *   -EINVAL          a bad name or argument;
 *   others (-EREMOTEIO, -ENOENT, -ECONNREFUSED, -ENOMEM...) with err set:
 *                    syncd could not be reached or answered another status.
 * err (may be NULL) gets the code and a message for every failure.
 *
 * Timeouts are in milliseconds: CAIRN_SYNC_FOREVER waits as long as it
 * takes (a dead holder is never waited for: its node's syncd or clusterd
 * frees what it held), 0 tries once.
 */
#ifndef CAIRN_SYNC_H
#define CAIRN_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_SYNC_FOREVER (-1)
#define CAIRN_SYNC_NAME_MAX 255

typedef struct cairn_sync cairn_sync_t;

typedef enum cairn_sync_kind {
    CAIRN_SYNC_MUTEX = 1,
    CAIRN_SYNC_RWLOCK = 2,
    CAIRN_SYNC_SEMAPHORE = 3,
    CAIRN_SYNC_BARRIER = 4,
    CAIRN_SYNC_CONDVAR = 5,
} cairn_sync_kind_t;

/* How an object is made if it does not exist yet. */
typedef struct cairn_sync_spec {
    cairn_sync_kind_t kind;
    uint32_t value;        /* semaphore: initial value; barrier: parties */
    bool shared;           /* any user may use it */
    bool no_cache;         /* mutex: never cached at a node */
} cairn_sync_spec_t;

/* What a grant says. */
typedef struct cairn_sync_grant {
    uint64_t token;        /* fencing token: strictly increasing per object,
                            * across nodes, caches and failovers */
    uint32_t home;         /* node id of the object's home */
    bool cached;           /* taken on this node's cache (no message) */
    bool owner_died;       /* same as the -EOWNERDEAD return */
} cairn_sync_grant_t;

/* Opens a session with the syncd at endpoint (NULL: this node's:
 * $CAIRN_SYNCD_ENDPOINT, else ipc://$CAIRN_NODE_RUNDIR/syncd.sock, else
 * the one syncd.sock under /run/cairn/<cluster>/<node>/ -- none or several
 * is UNAVAILABLE naming the variables to set). The endpoint must be an
 * ipc:// one: syncd learns who calls from the kernel.
 * Nothing is sent yet. NULL with err set on failure. The caller owns the
 * result; close it with cairn_sync_close. */
cairn_sync_t *cairn_sync_open(const char *endpoint, cairn_error_t *err);

/* Releases nothing: a mutex still held when its session closes stays held
 * until its holder exits (then it is owner-died). NULL-safe; returns NULL. */
cairn_sync_t *cairn_sync_close(cairn_sync_t *s);

/* Makes `name` with spec if it does not exist; if it does, checks that it
 * matches (kind, value when non-zero). For a shared object, or a semaphore
 * whose initial value is not 1. */
int cairn_sync_declare(cairn_sync_t *s, const char *name,
                       const cairn_sync_spec_t *spec, cairn_error_t *err);

/* Mutexes. g may be NULL. */
int cairn_mutex_lock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                     cairn_sync_grant_t *g, cairn_error_t *err);
int cairn_mutex_unlock(cairn_sync_t *s, const char *name, cairn_error_t *err);
int cairn_mutex_consistent(cairn_sync_t *s, const char *name,
                           cairn_error_t *err);

/* Read-write locks: many readers or one writer, granted in arrival order
 * (a waiting writer holds back later readers). */
int cairn_rwlock_rdlock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                        cairn_sync_grant_t *g, cairn_error_t *err);
int cairn_rwlock_wrlock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                        cairn_sync_grant_t *g, cairn_error_t *err);
int cairn_rwlock_unlock(cairn_sync_t *s, const char *name, cairn_error_t *err);

/* Counting semaphores (initial value 1 unless declared). A unit taken by a
 * process that dies is given back. */
int cairn_sem_wait(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                   cairn_sync_grant_t *g, cairn_error_t *err);
int cairn_sem_post(cairn_sync_t *s, const char *name, cairn_error_t *err);

/* Barriers: returns 1 to exactly one caller of each generation (POSIX's
 * PTHREAD_BARRIER_SERIAL_THREAD), 0 to the others. parties must equal the
 * barrier's (the first call sets it); generation may be NULL. */
int cairn_barrier_wait(cairn_sync_t *s, const char *name, uint32_t parties,
                       int64_t timeout_ms, uint64_t *generation,
                       cairn_error_t *err);

/* Condition variables bound to a cluster mutex the caller holds. wait
 * releases the mutex, waits for a signal (or the timeout: -ETIMEDOUT) and
 * takes the mutex again before returning, in both cases; g tells the new
 * grant of the mutex. Spurious wakeups may happen (a home that failed over
 * wakes every waiter), as in POSIX. */
int cairn_cond_wait(cairn_sync_t *s, const char *cond, const char *mutex,
                    int64_t timeout_ms, cairn_sync_grant_t *g,
                    cairn_error_t *err);
int cairn_cond_signal(cairn_sync_t *s, const char *cond, cairn_error_t *err);
int cairn_cond_broadcast(cairn_sync_t *s, const char *cond, cairn_error_t *err);

/* Removes an object nobody holds or waits on (its owner or root). */
int cairn_sync_destroy(cairn_sync_t *s, const char *name, cairn_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
