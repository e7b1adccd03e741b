/* relay-private.h - what the parts of syncd's relay share: its structs and
 * the functions one part calls in another. relay.h is the interface the
 * rest of the daemon sees; nothing outside relay*.c includes this file.
 *
 * The parts (each file's top says more):
 *  - relay.c: lifecycle, small helpers, process records, the client-side
 *    handlers (requests of this node's processes) and process exits;
 *  - relay-op.c: ops (a local request on its way to a home) and their
 *    steps, and releases carried to a home after the relay answered;
 *  - relay-home.c: the glue to home.c, revokes (asked by our home, answered
 *    by our cache), queued jobs, and the home side (other relays' requests
 *    served here, their waiters);
 *  - relay-failover.c: membership changes: hand-over, announcements,
 *    re-sent ops and recovery;
 *  - relay-ls.c: ls and show.
 *
 * Ownership: the relay owns every record below (procs, ops, hws, revokes,
 * retries, lss, jobs), each on its list in struct relay; whoever frees one
 * takes it off its list first (relay_op_free, relay_hw_free, relay_ls_free
 * and relay_retry_drop do both), and relay_stop and relay_free free what
 * is left. Records hold no pointers into requests once their handler has
 * returned (an op copies its request when it defers).
 */
#ifndef SYNCD_RELAY_PRIVATE_H
#define SYNCD_RELAY_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "home.h"
#include "metrics.h"
#include "peer.h"
#include "relay.h"
#include "service.h"
#include "syncd.pb-c.h"
#include "view.h"

#define NAME_MAX_BYTES 255     /* CAIRN_SYNC_NAME_MAX */
#define CALL_MS 5000            /* a request that does not wait, to a home */

typedef Cairn__Syncd__Request relay_req_t;
typedef Cairn__Syncd__Reply relay_rep_t;

enum { COOKIE_OP = 0x4f50, COOKIE_HW = 0x4857 };

/* Steps of an op; a cond phase's step is the phase's own number. */
enum {
    STEP_SEND = 0,      /* acquire, barrier, forwarded request: one step */
    STEP_PREPARE = 1,   /* cond: queue the waiter at the condvar's home */
    STEP_WAIT = 2,      /* cond: wait for the signal */
    STEP_CANCEL = 3,    /* cond: drop a prepared waiter */
    STEP_UNLOCK = 4,    /* cond: release the mutex at its home */
    STEP_RELOCK = 5,    /* cond: take the mutex again */
};

/* What a home said, from home.c or from a peer's Reply. */
typedef struct relay_outcome {
    int code;                   /* CAIRN_OK or a Status code */
    char message[256];          /* why, when code != OK */
    uint64_t token;
    bool owner_died;
    bool cached;
    bool serial;
    uint64_t generation;
    uint32_t woken;
    uint32_t home;
    bool timed_out;
} relay_outcome_t;

typedef struct relay_hold relay_hold_t;
typedef struct relay_proc relay_proc_t;
typedef struct relay_op relay_op_t;
typedef struct relay_hw relay_hw_t;
typedef struct relay_ls relay_ls_t;    /* relay-ls.c's */

/* A grant a local process holds through syncd (not through the cache). */
struct relay_hold {
    relay_hold_t *next;         /* the process's list */
    char *name;                 /* owned */
    int32_t tid;                /* the holder thread */
    int mode;                   /* Cairn__Syncd__Mode */
    uint64_t token;             /* its fencing token */
    uint64_t tag;               /* the acquire's tag (a retry re-answers) */
    uint32_t home;              /* the node that granted it */
    uint32_t count;             /* semaphore units */
    uint32_t uid;               /* the holder's user */
    int kind;                   /* Cairn__Syncd__Kind, for announcements */
    uint32_t value;             /* spec value, for announcements */
    bool shared;                /* spec shared, for announcements */
    bool no_cache;              /* spec no_cache */
    bool owner_died;            /* granted owner-died, not yet consistent */
};

/* A local process that holds or waits for something. */
struct relay_proc {
    relay_proc_t *next;         /* relay's list */
    relay_t *r;
    int32_t pid;
    int pidfd;                  /* owned; readable once it exited */
    int64_t watch;              /* its loop watch */
    relay_hold_t *holds;        /* owned list */
};

/* A local process's request on its way to a home. */
struct relay_op {
    int cookie;                 /* COOKIE_OP: home.c's cookie starts here */
    relay_op_t *next;           /* relay's list */
    relay_t *r;
    uint64_t attempt;           /* id of the current attempt (0: none) */
    relay_req_t *req;           /* Holder filled: borrowed from the handler
                                 * until it defers, then an owned copy */
    bool req_owned;             /* req is ours to free */
    cairn_caller_t caller;      /* the local process */
    int32_t pid, tid;
    uint64_t tag;
    cairn_request_t *inline_req;   /* during its handler only */
    cairn_deferred_t *deferred;    /* once deferred; owned */
    bool finished;              /* answered (reply filled or sent) */
    uint64_t deadline;          /* cairn_now_ms; UINT64_MAX: forever */
    uint64_t retry_until;       /* a home's UNAVAILABLE is retried until
                                 * then: the deadline, or for a try (0) a
                                 * recovery's length */
    int64_t timer;              /* backoff / local timeout timer, 0 none */
    int step;
    uint32_t home;              /* where the current step went */
    const char *target;         /* name the current step is about */
    bool at_local_home;         /* queued in home.c with this as cookie */
    bool cache_ok;              /* the acquire may cache at this node */
    bool one_phase;             /* cond: a phase the client runs itself */
    bool waited;                /* queued at our home at least once */
    uint64_t queued_ns;         /* cairn_now_ns() when last queued there */
    bool timed_out;             /* cond: the wait timed out */
    bool prepared;              /* cond: PREPARE done */
    bool ready;                 /* a queued home answer waits in `queued` */
    relay_outcome_t queued;     /* that answer */
    relay_outcome_t out;        /* the answer for the client */
    cache_slot_ref_t slot;      /* acquire installed in the cache */
    bool slot_set;
    char table[512];            /* slot.table's copy */
    relay_rep_t *passthrough;   /* show: the home's reply as it came; owned */
};

/* Another relay's request waiting here (we are its object's home). */
struct relay_hw {
    int cookie;                 /* COOKIE_HW */
    relay_hw_t *next;
    relay_t *r;
    cairn_deferred_t *deferred; /* owned */
    int64_t timer;              /* its timeout, 0 none */
    uint32_t type;              /* Request msg case: the reply's shape */
    uint32_t node;              /* the relay's node */
    int32_t pid, tid;
    uint64_t tag;
    uint64_t timeout_ms;
    uint64_t queued_ns;         /* cairn_now_ns() when queued */
};

/* A revoke asked of this node's cache, waiting for the holder's unlock:
 * answered to a remote home (deferred) or fed to our own home. */
typedef struct relay_revoke {
    struct relay_revoke *next;
    char *name;
    uint64_t grant;
    cairn_deferred_t *deferred; /* remote home's request; NULL: our home */
    bool early;                 /* came before the grant it revokes */
} relay_revoke_t;

/* A request to a peer sent again until the peer takes it -- a revoke a
 * home asks of a caching node, a release carried to a home: what their
 * lists share. Each kind's struct begins with one. */
typedef struct relay_retry {
    struct relay_retry *next;
    uint64_t id;                /* of the peer call in flight, 0 if none */
    char *name;                 /* the object (owned) */
    int64_t timer;              /* the next try, 0 if none */
} relay_retry_t;

/* Work queued out of home.c's callbacks. */
typedef struct relay_job {
    int kind;                   /* JOB_* */
    uint64_t op;                /* JOB_ANSWER: the op's attempt */
    uint32_t node;              /* JOB_REVOKE */
    char *name;
    uint64_t grant;
} relay_job_t;
enum { JOB_ANSWER, JOB_REVOKE };

/* Memory for messages built outside a request: every chunk is freed at
 * once by relay_arena_clear. */
typedef struct relay_arena {
    void **chunks;
    size_t n, cap;
} relay_arena_t;

struct relay {
    cairn_service_t *svc;
    uint32_t self;
    cairn_view_t *view;
    home_t *home;
    cache_t *cache;
    cairn_peers_t *peers;
    relay_proc_t *procs;
    relay_op_t *ops;
    relay_hw_t *hws;
    relay_revoke_t *revokes;
    relay_retry_t *out_revokes; /* revokes to other nodes (relay-home.c) */
    relay_ls_t *lss;
    relay_job_t *jobs;
    size_t n_jobs, cap_jobs;
    relay_retry_t *rels;        /* releases on their way to a home
                                 * (relay-op.c) */
    int64_t jobs_timer;
    uint64_t next_id;           /* attempt and request ids */
    /* membership as we last handled it */
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    size_t n_members;
    uint64_t view_id;           /* the view id of members[] */
    /* recovery: which members said done for which view */
    uint64_t done_view[CAIRN_VIEW_MAX_NODES + 1];
    bool recovering;
    int64_t recover_timer;
    bool stopping;
    cairn_metric_t *m_waits;    /* cairn_sync_waits_total{result} */
    cairn_metric_t *m_wait_s;   /* cairn_sync_wait_seconds */
};

/* ---- relay.c: small helpers -------------------------------------------- */

/* The one relay of this process, for peer callbacks: they carry an id, not
 * a pointer, since what they answer may be gone when they run. NULL once
 * it is freed. */
relay_t *relay_of_peers(void);

/* A new attempt or request id. */
uint64_t relay_next_id(relay_t *r);
void relay_outcome_set(relay_outcome_t *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A name is 1..255 bytes. Checked before anything else, so a huge name
 * costs one strnlen of 256 bytes. false with *o set. */
bool relay_name_ok(const char *name, const char *what, relay_outcome_t *o);
/* The reason this node relays or homes nothing now, or NULL. */
const char *relay_unusable(relay_t *r, char *buf, size_t size);
/* Fails req with o's code and message. */
int relay_fail(cairn_request_t *req, const relay_outcome_t *o);
/* Memory from the request ctx's arena (an alloc for home.c and
 * relay_op_fill_reply). */
void *relay_req_alloc(void *ctx, size_t size);
/* An empty answer (a ReleaseReply) to req. */
int relay_reply_empty(cairn_request_t *req);

/* The entry of list whose peer call is id, or NULL. */
relay_retry_t *relay_retry_find(relay_retry_t *list, uint64_t id);
void relay_retry_push(relay_retry_t **list, relay_retry_t *e);
/* Takes e off list, cancels its timer and frees it (its struct began
 * with e). */
void relay_retry_drop(relay_t *r, relay_retry_t **list, relay_retry_t *e);

/* Zeroed memory kept in ctx (a relay_arena_t); NULL on ENOMEM. */
void *relay_arena_alloc(void *ctx, size_t size);
void relay_arena_clear(relay_arena_t *a);

/* ---- relay.c: process records, the client side ------------------------- */

/* The record of pid, made (and its pidfd watched) on first use. NULL if
 * the process is already gone (ESRCH) or on ENOMEM. */
relay_proc_t *relay_proc_get(relay_t *r, int32_t pid);
/* The holding of (pid, tid, name) in mode (0: any mode); *ret_link, if
 * asked for, is where the list points to it. */
relay_hold_t *relay_hold_find(relay_t *r, int32_t pid, int32_t tid,
                              const char *name, int mode,
                              relay_hold_t ***ret_link);
/* Records a grant op's process holds now. A failure to record is logged:
 * the grant stands (the home knows it), only the fast NOT_HOLDER check
 * and the announcement after a failover lose it. */
void relay_hold_add(relay_t *r, const relay_op_t *op,
                    const relay_outcome_t *o);
void relay_hold_free(relay_hold_t *h);
/* Whether req comes from a process of this node. */
bool relay_is_local(const cairn_request_t *req);
/* A request the relay carries to the home and answers with its reply. */
int relay_forward(relay_t *r, cairn_request_t *req, relay_req_t *q,
                  int32_t tid);

/* ---- relay-op.c: ops --------------------------------------------------- */

/* Starts an op for a local caller's request `q` (holder filled); returns
 * what the handler returns. */
int relay_op_start(relay_t *r, cairn_request_t *req, const relay_req_t *q,
                   int32_t tid, uint64_t tag, int64_t timeout_ms, int step,
                   bool cache_ok, bool one_phase);
/* A retry (same pid, tid, tag) of a request still on its way: the new
 * request takes over the op. */
int relay_op_rebind(relay_t *r, relay_op_t *op, cairn_request_t *req,
                    int64_t timeout_ms);
relay_op_t *relay_op_by_attempt(relay_t *r, uint64_t attempt);
/* The unfinished op of (pid, tid, tag) for a request of `type`; none for
 * tag 0. */
relay_op_t *relay_op_by_tag(relay_t *r, int32_t pid, int32_t tid,
                            uint64_t tag, uint32_t type);
/* Sends op's current step to the home of its name. */
void relay_op_dispatch(relay_op_t *op);
/* What op does with its current step's answer. */
void relay_op_result(relay_op_t *op, const relay_outcome_t *o);
/* Fills reply (storage from alloc) with what op's client gets. */
int relay_op_fill_reply(const relay_op_t *op, relay_rep_t *reply,
                        void *(*alloc)(void *, size_t), void *ctx);
/* Unlinks op and frees it; a client still waiting for it is failed. */
void relay_op_free(relay_op_t *op);
/* Carries a release the relay already answered to the home; ordered
 * behind the caller's earlier requests to that home on the same DEALER. */
void relay_release_async(relay_t *r, uint32_t home, const char *name,
                         int mode, uint32_t count,
                         const Cairn__Syncd__Holder *holder,
                         const cairn_caller_t *as);

/* ---- relay-home.c: home.c glue, revokes, the home side ----------------- */

/* home.c's callbacks (userdata: the relay). */
extern const home_ops_t relay_home_ops;
void relay_outcome_from_home(relay_outcome_t *o, const home_result_t *hr,
                             uint32_t home);
/* Runs req (holder and uid already right) on our home. HOME_DONE with *hr,
 * HOME_QUEUED (answer later with cookie), or < 0. */
int relay_home_exec(relay_t *r, const relay_req_t *req, uint32_t uid,
                    void *cookie, home_result_t *hr);
/* cache.c: a revoke that waited for a holder finished. */
void relay_on_cache_revoked(void *userdata, const char *name, uint64_t grant,
                            uint64_t last_token, bool owner_died,
                            bool not_recoverable);
/* Whether an acquire of name that may come back cached is on its way
 * (other than `except`). */
bool relay_cache_op_pending(relay_t *r, const char *name,
                            const relay_op_t *except);
/* Early revokes of name: with `grant` installed now (0: none will be),
 * applied; those whose grant did not come (all when grant is 0 and no
 * acquire is left on its way) answered "not here". */
void relay_early_revokes(relay_t *r, const char *name, uint64_t grant,
                         bool none_left);
/* A client request of another node's relay, served here: the Holder's node
 * and uid forced to what the connection says. */
int relay_home_side(relay_t *r, cairn_request_t *req);
/* Unlinks hw and frees it; a relay still waiting for it is failed. */
void relay_hw_free(relay_hw_t *hw);
/* Drops (answers) every waiter here of node's processes pids (all of them
 * if pids is NULL), before home_gone/home_node_dead forget them. */
void relay_hw_drop(relay_t *r, uint32_t node, const int32_t *pids, size_t n,
                   const char *why);
/* The member `field` of message m, or NULL if its type has none. The
 * client requests share field names (name, holder, timeout_ms, tag), so
 * one path reads them all through the descriptors. */
void *relay_member(ProtobufCMessage *m, const char *field);
/* *q becomes in with its message shallow-copied into req's arena (so its
 * holder can be replaced); returns the copy, NULL on ENOMEM. */
ProtobufCMessage *relay_copy_request(cairn_request_t *req,
                                     const relay_req_t *in, relay_req_t *q);

/* ---- relay-failover.c, relay-ls.c -------------------------------------- */

/* view.c: the alive set changed. */
void relay_on_view(void *userdata, uint64_t old_view, uint64_t new_view);
/* Unlinks l and frees it; a client still waiting for it is failed. */
void relay_ls_free(relay_t *r, relay_ls_t *l);

#endif
