/* synctab.h - the table of cached cluster mutexes a node's syncd shares
 * with one user's processes, and the lock-word protocol both sides follow.
 *
 * Why: a mutex that only one node uses should cost a process of that node
 * one compare-and-swap to lock and one to unlock, with no message and no
 * system call (services/syncd/README.md, "The node cache"). So the lock
 * word of a cached mutex lives in memory syncd and the user's processes
 * share: one file per user, <rundir>/syncd/uid-<U>.tab, owned by that user,
 * mode 0600 (another user cannot even read which locks exist).
 *
 * The word is a robust futex (linux/futex.h): bits 0..29 the holder's
 * thread id, FUTEX_OWNER_DIED, FUTEX_WAITERS. A holder puts the slot on its
 * thread's robust list -- the list glibc registered with set_robust_list,
 * shared with glibc's own robust mutexes by using their layout: the link
 * is a {prev, next} pair whose `next` sits at word - futex_offset -- so
 * when the holder dies the kernel itself marks the word owner-died and
 * wakes a waiter.
 *
 * Word values:
 *   0                       cached here and free: a process takes it with
 *                           CAS(0 -> tid) alone
 *   tid [| WAITERS]         held by thread tid of this node
 *   OWNER_DIED [| WAITERS]  its holder died holding it (the kernel said so)
 *   SYNCTAB_PARKED [| ...]  not usable here: not cached (any more), being
 *                           revoked, or handed over; a process asks syncd
 *
 * Who writes what:
 *   syncd   assigns slots (gen, grant, state), parks and unparks words,
 *           sets WAITERS on a held word to be told of its release;
 *   holders CAS the word, bump `seq` and set `flags` while holding, put
 *           and take the link on their robust list.
 * A slot is reassigned only while its word is parked; a process checks
 * `gen` before and after taking the word, so it never takes a recycled
 * slot for the name it meant.
 *
 * Fencing tokens under a cache grant: the home granted the node `grant`;
 * the n-th acquisition under it (n = ++seq, by the holder, under the lock)
 * gets grant + n. At SYNCTAB_SEQ_MAX the fast path refuses (the process
 * asks syncd, which renews the grant), so the home's next token -- at least
 * grant + seq + 1 once the cache is back, and never below the clock-based
 * floor of services/syncd/home.h -- is always greater.
 */
#ifndef CAIRN_SYNCTAB_H
#define CAIRN_SYNCTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"

#define SYNCTAB_MAGIC 0x43534e54u       /* "CSNT" */
#define SYNCTAB_VERSION 1u
#define SYNCTAB_SLOTS 16384u    /* 2 MiB a user: 8 processes x 1000 locks fit */
#define SYNCTAB_SLOT_SIZE 128u
#define SYNCTAB_SEQ_MAX (1u << 20)

/* Word bits (the kernel's robust futex encoding). */
#define SYNCTAB_TID_MASK 0x3fffffffu    /* FUTEX_TID_MASK */
#define SYNCTAB_OWNER_DIED 0x40000000u  /* FUTEX_OWNER_DIED */
#define SYNCTAB_WAITERS 0x80000000u     /* FUTEX_WAITERS */
/* A tid no thread has (pid_max is at most 2^22). */
#define SYNCTAB_PARKED SYNCTAB_TID_MASK

/* slot.state, written by syncd */
enum {
    SYNCTAB_FREE = 0,       /* unassigned */
    SYNCTAB_CACHED = 1,     /* the node holds the grant; word usable */
    SYNCTAB_REVOKING = 2,   /* give it back at the next unlock: park */
};

/* slot.flags, written by the holder */
enum {
    SYNCTAB_INCONSISTENT = 1u << 0,    /* granted owner-died, not yet consistent */
    SYNCTAB_NOT_RECOVERABLE = 1u << 1, /* unlocked while inconsistent */
};

/* One cached mutex. 128 bytes: the first 64 are the word and the room for
 * a holder's robust-list link; the second 64 are syncd's. */
typedef struct synctab_slot {
    _Atomic uint32_t word;        /* the robust futex */
    uint32_t pad0;
    unsigned char link_area[56];  /* {prev, next} at word - futex_offset - 8 */
    _Atomic uint32_t gen;         /* bumped by syncd at each (re)assignment */
    _Atomic uint32_t state;       /* SYNCTAB_FREE / CACHED / REVOKING */
    _Atomic uint64_t grant;       /* the cache grant's fencing token */
    _Atomic uint64_t seq;         /* acquisitions under this grant */
    _Atomic uint32_t flags;       /* SYNCTAB_INCONSISTENT... */
    _Atomic int32_t holder_pid;   /* pid of the holder, 0 if free (for show) */
    uint64_t name_hash;           /* synctab_name_hash of its mutex */
    unsigned char pad1[16];
} synctab_slot_t;

/* The file: a header page, then SYNCTAB_SLOTS slots. */
typedef struct synctab_header {
    uint32_t magic;               /* SYNCTAB_MAGIC */
    uint32_t version;             /* SYNCTAB_VERSION */
    uint32_t slots;               /* SYNCTAB_SLOTS */
    uint32_t slot_size;           /* SYNCTAB_SLOT_SIZE */
    uint32_t uid;                 /* whose table */
    uint32_t node;                /* which node's syncd */
    uint64_t syncd_start;         /* syncd's start time (ms): a table left by a
                                   * previous syncd is made anew */
} synctab_header_t;

#define SYNCTAB_HEADER_SIZE 4096u
#define SYNCTAB_FILE_SIZE (SYNCTAB_HEADER_SIZE + SYNCTAB_SLOTS * SYNCTAB_SLOT_SIZE)

typedef struct synctab {
    synctab_header_t *hdr;        /* the mapping */
    synctab_slot_t *slots;        /* hdr + SYNCTAB_HEADER_SIZE */
    size_t size;                  /* mapped bytes */
} synctab_t;

/* FNV-1a 64 of a name: what slot.name_hash holds. */
uint64_t synctab_name_hash(const char *name);

/* ---- syncd's side ------------------------------------------------------ */

/* Creates (or truncates and makes anew) the table file at path for uid,
 * owned by uid, mode 0600, every word parked, and maps it into *t.
 * 0 or -errno with err set. */
int synctab_create(synctab_t *t, const char *path, uint32_t uid, uint32_t node,
                   uint64_t syncd_start, cairn_error_t *err);

/* Assigns slot i to a mutex (the word must be parked): gen++, grant, seq 0,
 * flags, name_hash, state CACHED; the word stays parked until
 * synctab_unpark or synctab_grant_to. */
void synctab_assign(synctab_t *t, uint32_t i, uint64_t name_hash,
                    uint64_t grant, uint32_t flags);

/* Sets the word of a cached slot to tid (syncd grants on a process's
 * behalf; the process then puts it on its robust list): parked -> tid. */
void synctab_grant_to(synctab_t *t, uint32_t i, int32_t tid);

/* Takes a free word of a cached slot for thread tid of process pid (syncd
 * answers a process's acquire on its behalf; the process then adopts it):
 * 0 or OWNER_DIED -> tid, *token = grant + ++seq, *owner_died when the
 * last holder died (the slot becomes INCONSISTENT). SYNCTAB_TAKEN,
 * SYNCTAB_GO_SLOW (parked, not cached, at SEQ_MAX), -EBUSY (held),
 * -EDEADLK (tid holds it already). */
int synctab_grant_free(synctab_t *t, uint32_t i, int32_t pid, int32_t tid,
                       uint64_t *token, bool *owner_died);

/* Parked -> 0: free for the fast path. */
void synctab_unpark(synctab_t *t, uint32_t i);

/* Tries to take the word back for syncd (revocation, release of the slot):
 * 0 or OWNER_DIED -> PARKED succeeds and returns 1 (*owner_died says which);
 * a held word gets WAITERS set and state REVOKING, and returns 0 (the
 * holder's unlock parks it and tells syncd; or try again later). */
int synctab_try_park(synctab_t *t, uint32_t i, bool *owner_died);

/* A process that syncd granted to died before putting the word on its
 * robust list: if the word still names tid, it becomes OWNER_DIED (waiters
 * woken). Returns true if it did. */
bool synctab_owner_died(synctab_t *t, uint32_t i, int32_t tid);

/* Unmaps. The file stays (syncd removes it at stop). */
void synctab_unmap(synctab_t *t);

/* ---- a process's side -------------------------------------------------- */

/* Maps an existing table read-write. 0 or -errno with err set. */
int synctab_open(synctab_t *t, const char *path, cairn_error_t *err);

/* Whether this process can put words on its robust list (glibc's list
 * layout recognised); without it the fast path is off and every lock goes
 * to syncd. */
bool synctab_robust_ok(void);

/* Results of the process-side calls. */
enum {
    SYNCTAB_TAKEN = 0,      /* the caller holds the word */
    SYNCTAB_GO_SLOW = 1,    /* parked, reassigned or at SEQ_MAX: ask syncd */
};

/* Takes slot i's word for the calling thread (tid) if gen still matches:
 * the CAS fast path, then -- if `wait` -- the futex wait on a held word
 * until deadline_ms (cairn_now_ms clock; -1 forever). On SYNCTAB_TAKEN:
 * the link is on the thread's robust list, *token is grant + ++seq,
 * *owner_died is set when the previous holder died (the slot is then
 * INCONSISTENT). Returns SYNCTAB_TAKEN, SYNCTAB_GO_SLOW, -EBUSY (held and
 * not wait), -ETIMEDOUT, -EDEADLK (tid holds it), -ENOTRECOVERABLE. */
int synctab_lock(synctab_t *t, uint32_t i, uint32_t gen, int32_t tid,
                 bool wait, int64_t deadline_ms, uint64_t *token,
                 bool *owner_died);

/* After syncd granted slot i to tid (AcquireReply without use_slot): put
 * the link on the robust list. */
void synctab_adopt(synctab_t *t, uint32_t i, int32_t tid);

/* Unlocks slot i held by tid: takes the link off the robust list, then
 * CAS(tid -> 0); with WAITERS set: parks it if REVOKING (returns 1: the
 * caller must tell syncd with a SlotReleaseRequest), else frees it and
 * wakes one waiter (returns 0). An INCONSISTENT slot becomes
 * NOT_RECOVERABLE and parked (returns 1). -EPERM if tid does not hold it. */
int synctab_unlock(synctab_t *t, uint32_t i, int32_t tid);

/* Clears INCONSISTENT on a slot tid holds. -EPERM if it does not, -EINVAL
 * if it was consistent. */
int synctab_consistent(synctab_t *t, uint32_t i, int32_t tid);

/* ---- what syncd's Status messages start with ---------------------------
 * FAILED_PRECONDITION covers several POSIX outcomes; the message's first
 * word tells libcairn which errno to return (the rest is for people). */
#define SYNCD_MSG_DEADLOCK "deadlock: "          /* -EDEADLK */
#define SYNCD_MSG_NOT_HOLDER "not the holder: "  /* -EPERM */
#define SYNCD_MSG_NOT_RECOVERABLE "not recoverable: " /* -ENOTRECOVERABLE */
#define SYNCD_MSG_OWNER_DIED "owner died: "      /* barrier/cond: a party died */

#endif
