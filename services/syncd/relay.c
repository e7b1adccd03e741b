/* relay.c - syncd's requests: those of this node's processes (the relay
 * side) and those of other nodes' relays (the home side); process exits;
 * failover.
 *
 * Design. Every client request is told apart by its caller: a LOCAL caller
 * (ipc, SO_PEERCRED) is one of this node's processes, and the relay fills
 * the Holder for it (node = self, pid and uid from the kernel, tid from
 * the request) and carries the request to the object's home; a NODE caller
 * is another node's relay, whose Holder pid/tid is believed but whose node
 * and uid are forced to what its CURVE key and vouching say, and the
 * request is served here, where the object must be homed.
 *
 * A relay request that cannot be answered at once becomes an *op*: an owned
 * copy of the request, the caller, a deadline and a deferred reply. An op
 * is sent to the home (home.c directly when the home is self, else
 * cairn_peers_call_as vouching for the caller) one *attempt* at a time;
 * each attempt has a new id, and a peer's answer names the attempt it
 * answers, so the late answer of a superseded attempt (re-sent after a
 * view change, a backoff, a long wait's renewal) is ignored. A home's
 * UNAVAILABLE (not home, recovering, moved) is retried after 10-50 ms
 * until the deadline. A client's retry with the same (pid, tid, tag)
 * re-binds to the op (the old deferred is failed, saying so).
 *
 * home.c calls back (answer, revoke) from inside its own calls and must not
 * be re-entered, so its answers to local ops and its revokes are queued and
 * run from a zero-delay timer; answers to remote waiters (hw: a deferred
 * reply to another relay, with its timeout timer) are sent at once.
 *
 * Records: what each local process holds through syncd (name, mode, token,
 * home, tag) lives in its proc record, with a pidfd watched on the loop.
 * A release is checked against them (NOT_HOLDER at once, no round trip)
 * and a valid one is answered at once and forwarded to the home behind it
 * on the same DEALER (ordered before the process's next request there).
 * When the pidfd fires: cache_process_exit, every op of the process
 * cancelled, home_gone here and Request{gone} to every other home
 * concerned. A mutex held through the node cache is not in the records:
 * the cache and the kernel (robust futex) know it.
 *
 * Condition variables (CondWaitRequest): PREPARE at the condvar's home,
 * then the mutex released for the caller, then WAIT, then the mutex taken
 * again (never through the cache: the caller then holds it through
 * syncd and unlocks with Request{release}) and CondReply with the new
 * token. The relay accepts PHASE_ALL only when its records show the
 * calling thread holds the mutex through syncd (else NOT_HOLDER): a mutex
 * held on a cache word can only be released by its holder thread (the word
 * is on that thread's robust list), so for it the client runs the phases
 * itself (proto/syncd.proto, CondWaitRequest): PREPARE, unlock of the
 * word, WAIT, its own relock; the relay passes each phase to the home with
 * the Holder filled and answers it as it comes.
 *
 * A home's revoke travels on another connection than its grant, so it can
 * overtake the grant it revokes: a revoke of a mutex the cache does not
 * have while an acquire of it with cache_ok is on its way is kept (early)
 * until that acquire's answer, and applied to the grant once installed.
 *
 * Membership changes (view.c's callback): dead members' holdings and waits
 * dropped (home_node_dead), objects no longer ours handed over
 * (authoritative announce), local holdings and caches whose home changed
 * announced, pending waits whose home changed re-sent (after the announce,
 * same DEALER), condvar waiters whose home died woken, announce{done} to
 * every alive member; the home stays recovering until every alive member
 * said done for the current view, or 3 s.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cache.h"
#include "home.h"
#include "log.h"
#include "peer.h"
#include "relay.h"
#include "synctab/synctab.h"
#include "syncd.pb-c.h"
#include "util/array.h"
#include "util/clock.h"
#include "view.h"

#define NAME_MAX_BYTES 255     /* CAIRN_SYNC_NAME_MAX */
#define CALL_MS 5000            /* a request that does not wait, to a home */
#define MARGIN_MS 2000          /* a wait's peer call: timeout + this */
#define LONG_MS 30000           /* an infinite wait's peer call, then re-sent */
#define BACKOFF_MIN_MS 10       /* retry of a home's UNAVAILABLE */
#define BACKOFF_MAX_MS 50
#define RECOVER_MS 3000         /* longest wait for every member's done */
#define TRY_RETRY_MS 2000       /* a try's retries of a home not ready */
#define REVOKE_RETRY_MS 200     /* a revoke whose peer did not answer */
#define LS_MS 2000              /* ls: how long each member may take */
#define RELOCK_TAG 0x5eedc0de5eedc0deull  /* cond relock's tag: tag ^ this */

typedef Cairn__Syncd__Request s_req_t;
typedef Cairn__Syncd__Reply s_rep_t;

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
typedef struct s_outcome {
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
} s_outcome_t;

typedef struct s_hold s_hold_t;
typedef struct s_proc s_proc_t;
typedef struct s_op s_op_t;
typedef struct s_hw s_hw_t;

/* A grant a local process holds through syncd (not through the cache). */
struct s_hold {
    s_hold_t *next;             /* the process's list */
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
struct s_proc {
    s_proc_t *next;             /* relay's list */
    relay_t *r;
    int32_t pid;
    int pidfd;                  /* owned; readable once it exited */
    int64_t watch;              /* its loop watch */
    s_hold_t *holds;            /* owned list */
};

/* A local process's request on its way to a home. */
struct s_op {
    int cookie;                 /* COOKIE_OP: home.c's cookie starts here */
    s_op_t *next;               /* relay's list */
    relay_t *r;
    uint64_t attempt;           /* id of the current attempt (0: none) */
    s_req_t *req;               /* Holder filled: borrowed from the handler
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
    bool timed_out;             /* cond: the wait timed out */
    bool prepared;              /* cond: PREPARE done */
    bool ready;                 /* a queued home answer waits in `queued` */
    s_outcome_t queued;         /* that answer */
    s_outcome_t out;            /* the answer for the client */
    cache_slot_ref_t slot;      /* acquire installed in the cache */
    bool slot_set;
    char table[512];            /* slot.table's copy */
    s_rep_t *passthrough;       /* show: the home's reply as it came; owned */
};

/* Another relay's request waiting here (we are its object's home). */
struct s_hw {
    int cookie;                 /* COOKIE_HW */
    s_hw_t *next;
    relay_t *r;
    cairn_deferred_t *deferred; /* owned */
    int64_t timer;              /* its timeout, 0 none */
    uint32_t type;              /* Request msg case: the reply's shape */
    uint32_t node;              /* the relay's node */
    int32_t pid, tid;
    uint64_t tag;
    uint64_t timeout_ms;
};

/* A revoke asked of this node's cache, waiting for the holder's unlock:
 * answered to a remote home (deferred) or fed to our own home. */
typedef struct s_revoke {
    struct s_revoke *next;
    char *name;
    uint64_t grant;
    cairn_deferred_t *deferred; /* remote home's request; NULL: our home */
    bool early;                 /* came before the grant it revokes */
} s_revoke_t;

/* A revoke our home asked of another node, sent or to be re-sent. */
/* A request to a peer sent again until the peer takes it -- a revoke a
 * home asks of a caching node, a release carried to a home: what their
 * lists share. Each kind's struct begins with one. */
typedef struct s_retry {
    struct s_retry *next;
    uint64_t id;                /* of the peer call in flight, 0 if none */
    char *name;                 /* the object (owned) */
    int64_t timer;              /* the next try, 0 if none */
} s_retry_t;

typedef struct s_out_revoke {
    s_retry_t rt;               /* first: in r->out_revokes */
    relay_t *r;
    uint32_t node;
    uint64_t grant;
} s_out_revoke_t;

/* ls fanned out to the members. */
typedef struct s_ls {
    struct s_ls *next;
    uint64_t id;
    cairn_deferred_t *deferred;
    size_t pending;             /* members still to answer */
    uint32_t asked[CAIRN_VIEW_MAX_NODES];
    bool answered[CAIRN_VIEW_MAX_NODES];
    size_t n_asked;
    s_rep_t **replies;          /* owned peer replies */
    Cairn__Syncd__ObjectInfo **own;  /* this node's objects (in chunks) */
    size_t n_own;
    size_t n_replies, cap_replies;
    void **chunks;              /* local objects' memory */
    size_t n_chunks, cap_chunks;
    int64_t timer;
} s_ls_t;

/* Work queued out of home.c's callbacks. */
typedef struct s_job {
    int kind;                   /* JOB_* */
    uint64_t op;                /* JOB_ANSWER: the op's attempt */
    uint32_t node;              /* JOB_REVOKE */
    char *name;
    uint64_t grant;
} s_job_t;
enum { JOB_ANSWER, JOB_REVOKE };

/* A release the relay answered and carries to the home. A home that cannot
 * take it now (UNAVAILABLE: not its home for a moment, recovering; or no
 * answer) gets it again, at the home of the moment, for RELEASE_TRY_MS:
 * dropped, it would leave the object held at the home by a holder that
 * let go. */
typedef struct s_rel {
    s_retry_t rt;               /* first: in r->rels */
    int mode;
    uint32_t count;
    Cairn__Syncd__Holder holder;
    cairn_caller_t as;          /* the local caller it is for */
    uint64_t until_ms;          /* cairn_now_ms() when it stops trying */
} s_rel_t;

struct relay {
    cairn_service_t *svc;
    uint32_t self;
    cairn_view_t *view;
    home_t *home;
    cache_t *cache;
    cairn_peers_t *peers;
    s_proc_t *procs;
    s_op_t *ops;
    s_hw_t *hws;
    s_revoke_t *revokes;
    s_retry_t *out_revokes;     /* s_out_revoke_t */
    s_ls_t *lss;
    s_job_t *jobs;
    size_t n_jobs, cap_jobs;
    s_retry_t *rels;            /* s_rel_t: releases on their way to a home */
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
};

/* The one relay of this process, for peer callbacks: they carry an id, not
 * a pointer, since what they answer may be gone when they run. */
static relay_t *s_relay_of_peers;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t s_next_id(relay_t *r)
{
    return ++r->next_id;
}

static void s_outcome_set(s_outcome_t *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_outcome_set(s_outcome_t *o, int code, const char *fmt, ...)
{
    va_list ap;
    o->code = code;
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof(o->message), fmt, ap);
    va_end(ap);
}

static const char *s_mode_name(int mode)
{
    switch (mode) {
    case CAIRN__SYNCD__MODE__MODE_LOCK: return "lock";
    case CAIRN__SYNCD__MODE__MODE_READ: return "read";
    case CAIRN__SYNCD__MODE__MODE_WRITE: return "write";
    case CAIRN__SYNCD__MODE__MODE_SEM: return "sem";
    default: return "unspecified";
    }
}

static const char *s_kind_name(int kind)
{
    switch (kind) {
    case CAIRN__SYNCD__KIND__KIND_MUTEX: return "mutex";
    case CAIRN__SYNCD__KIND__KIND_RWLOCK: return "rwlock";
    case CAIRN__SYNCD__KIND__KIND_SEMAPHORE: return "semaphore";
    case CAIRN__SYNCD__KIND__KIND_BARRIER: return "barrier";
    case CAIRN__SYNCD__KIND__KIND_CONDVAR: return "condvar";
    default: return "unspecified";
    }
}

/* The kind an acquire of `mode` needs. */
static int s_kind_of_mode(int mode)
{
    switch (mode) {
    case CAIRN__SYNCD__MODE__MODE_LOCK: return CAIRN__SYNCD__KIND__KIND_MUTEX;
    case CAIRN__SYNCD__MODE__MODE_READ:
    case CAIRN__SYNCD__MODE__MODE_WRITE: return CAIRN__SYNCD__KIND__KIND_RWLOCK;
    case CAIRN__SYNCD__MODE__MODE_SEM: return CAIRN__SYNCD__KIND__KIND_SEMAPHORE;
    default: return 0;
    }
}

/* A name is 1..255 bytes. Checked before anything else, so a huge name
 * costs one strnlen of 256 bytes. */
static bool s_name_ok(const char *name, const char *what, s_outcome_t *o)
{
    size_t n = name ? strnlen(name, NAME_MAX_BYTES + 1) : 0;
    if (n == 0) {
        s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "%s: a name is needed "
                      "(1..%d bytes)", what, NAME_MAX_BYTES);
        return false;
    }
    if (n > NAME_MAX_BYTES) {
        s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "%s: the name is %zu bytes "
                      "long, at most %d are allowed", what, strlen(name),
                      NAME_MAX_BYTES);
        return false;
    }
    return true;
}

static bool s_timeout_ok(int64_t t, s_outcome_t *o)
{
    if (t >= -1)
        return true;
    s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "timeout_ms %" PRId64 " is "
                  "invalid: -1 waits forever, 0 tries once, > 0 waits at most "
                  "that many ms", t);
    return false;
}

static uint64_t s_deadline(int64_t timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : cairn_now_ms() + (uint64_t)timeout_ms;
}

/* A try (timeout 0) asks whether the object is free, not whether the
 * cluster is recovering: a home that is not ready yet (a recovery ends in
 * milliseconds when every member answers) is asked again for TRY_RETRY_MS,
 * within a client's default call time. */
static uint64_t s_retry_until(int64_t timeout_ms, uint64_t deadline)
{
    return timeout_ms == 0 ? cairn_now_ms() + TRY_RETRY_MS : deadline;
}

/* The reason this node relays or homes nothing now, or NULL. */
static const char *s_unusable(relay_t *r, char *buf, size_t size)
{
    if (!cairn_view_known(r->view))
        return "membership unknown: clusterd of this node not answering yet";
    if (!cairn_view_quorum(r->view)) {
        snprintf(buf, size, "no quorum: %zu of %zu members alive",
                 cairn_view_alive_count(r->view), cairn_view_known_count(r->view));
        return buf;
    }
    return NULL;
}

/* The uid whose objects a caller may see: root sees all; a caller whose
 * user is unknown sees shared objects only. */
static uint32_t s_view_uid(const cairn_caller_t *c)
{
    return c->has_user ? c->uid : UINT32_MAX - 1;
}

static int s_fail(cairn_request_t *req, const s_outcome_t *o)
{
    return cairn_request_fail(req, o->code, "%s", o->message);
}

/* A deep, owned copy of a Request (pack, unpack). NULL on ENOMEM. */
static s_req_t *s_req_copy(const s_req_t *req)
{
    size_t n = cairn__syncd__request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    s_req_t *copy;

    if (!buf)
        return NULL;
    cairn__syncd__request__pack(req, buf);
    copy = cairn__syncd__request__unpack(NULL, n, buf);
    free(buf);
    return copy;
}

/* ---- process records -------------------------------------------------- */

static void s_process_exit(relay_t *r, int32_t pid);

static s_proc_t *s_proc_find(relay_t *r, int32_t pid)
{
    for (s_proc_t *p = r->procs; p; p = p->next)
        if (p->pid == pid)
            return p;
    return NULL;
}

static int s_on_pidfd(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata)
{
    s_proc_t *p = userdata;
    s_process_exit(p->r, p->pid);
    return 0;
}

/* The record of pid, made (and its pidfd watched) on first use. NULL if
 * the process is already gone (ESRCH) or on ENOMEM. */
static s_proc_t *s_proc_get(relay_t *r, int32_t pid)
{
    s_proc_t *p = s_proc_find(r, pid);
    if (p || pid <= 0)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->r = r;
    p->pid = pid;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->pidfd < 0) {
        cairn_log_debug("pidfd", "pid=%d msg=\"%s\"", pid, strerror(errno));
        free(p);
        return NULL;
    }
    p->watch = cairn_loop_add_fd(cairn_service_loop(r->svc), p->pidfd,
                                 ZMQ_POLLIN, s_on_pidfd, p);
    if (p->watch < 0) {
        close(p->pidfd);
        free(p);
        return NULL;
    }
    p->next = r->procs;
    r->procs = p;
    return p;
}

static void s_hold_free(s_hold_t *h)
{
    if (h) {
        free(h->name);
        free(h);
    }
}

static void s_proc_free(relay_t *r, s_proc_t *p)
{
    for (s_proc_t **pp = &r->procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    while (p->holds) {
        s_hold_t *h = p->holds;
        p->holds = h->next;
        s_hold_free(h);
    }
    cairn_loop_remove(cairn_service_loop(r->svc), p->watch);
    close(p->pidfd);
    free(p);
}

/* The holding of (pid, tid, name) in mode (0: any mode). */
static s_hold_t *s_hold_find(relay_t *r, int32_t pid, int32_t tid,
                             const char *name, int mode, s_hold_t ***ret_link)
{
    s_proc_t *p = s_proc_find(r, pid);
    if (!p)
        return NULL;
    for (s_hold_t **hp = &p->holds; *hp; hp = &(*hp)->next) {
        s_hold_t *h = *hp;
        if (h->tid == tid && strcmp(h->name, name) == 0 &&
            (mode == 0 || h->mode == mode)) {
            if (ret_link)
                *ret_link = hp;
            return h;
        }
    }
    return NULL;
}

/* Records a grant op's process holds now. A failure to record is logged:
 * the grant stands (the home knows it), only the fast NOT_HOLDER check
 * and the announcement after a failover lose it. */
static void s_hold_add(relay_t *r, const s_op_t *op, const s_outcome_t *o)
{
    const Cairn__Syncd__AcquireRequest *a = op->req->acquire;
    s_proc_t *p = s_proc_get(r, op->pid);
    s_hold_t *h = p ? calloc(1, sizeof(*h)) : NULL;

    if (!h || !(h->name = strdup(a->name))) {
        free(h);
        cairn_log_warn(0, "record", "name=%s pid=%d msg=\"cannot record the "
                       "grant (process gone or out of memory), ignoring\"",
                       a->name, op->pid);
        return;
    }
    h->tid = op->tid;
    h->mode = a->mode;
    h->token = o->token;
    h->tag = a->tag;
    h->home = o->home ? o->home : op->home;
    h->count = a->count ? a->count : 1;
    h->uid = op->caller.uid;
    h->kind = s_kind_of_mode(a->mode);
    h->value = a->spec ? a->spec->value : 0;
    h->shared = a->spec && a->spec->shared;
    h->no_cache = a->spec && a->spec->no_cache;
    h->owner_died = o->owner_died;
    h->next = p->holds;
    p->holds = h;
}

/* ---- ops -------------------------------------------------------------- */

static void s_op_dispatch(s_op_t *op);
static void s_op_result(s_op_t *op, const s_outcome_t *o);

static s_op_t *s_op_by_attempt(relay_t *r, uint64_t attempt)
{
    for (s_op_t *op = r->ops; op; op = op->next)
        if (op->attempt == attempt)
            return op;
    return NULL;
}

static s_op_t *s_op_by_tag(relay_t *r, int32_t pid, int32_t tid,
                           uint64_t tag, uint32_t type)
{
    if (!tag)
        return NULL;
    for (s_op_t *op = r->ops; op; op = op->next)
        if (op->pid == pid && op->tid == tid && op->tag == tag &&
            op->req->msg_case == type && !op->finished)
            return op;
    return NULL;
}

static void s_op_stop_timer(s_op_t *op)
{
    if (op->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(op->r->svc), op->timer);
    op->timer = 0;
}

/* Takes op out of home.c if it waits there (no answer will come). */
static void s_op_unqueue(s_op_t *op)
{
    if (op->at_local_home)
        home_cancel(op->r->home, op);
    op->at_local_home = false;
}

static void s_early_revokes(relay_t *r, const char *name, uint64_t grant,
                            bool none_left);
static bool s_cache_op_pending(relay_t *r, const char *name, const s_op_t *except);

static void s_op_free(s_op_t *op)
{
    relay_t *r = op->r;
    for (s_op_t **pp = &r->ops; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    if (op->cache_ok && op->req && r->revokes &&
        op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE &&
        !s_cache_op_pending(r, op->req->acquire->name, op))
        s_early_revokes(r, op->req->acquire->name, 0, true);
    s_op_stop_timer(op);
    s_op_unqueue(op);
    if (op->deferred)
        cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    if (op->req && op->req_owned)
        cairn__syncd__request__free_unpacked(op->req, NULL);
    if (op->passthrough)
        protobuf_c_message_free_unpacked(&op->passthrough->base, NULL);
    free(op);
}

/* A new op for a local caller's request (copied; holder filled). */
static s_op_t *s_op_new(relay_t *r, cairn_request_t *req, const s_req_t *copy_of,
                        int32_t tid, uint64_t tag, int64_t timeout_ms)
{
    s_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->cookie = COOKIE_OP;
    op->r = r;
    /* most requests are answered inside their handler (a local home, an
     * error): the copy is made only when the op outlives it */
    op->req = (s_req_t *)copy_of;
    op->caller = *cairn_request_caller(req);
    op->pid = op->caller.pid;
    op->tid = tid;
    op->tag = tag;
    op->inline_req = req;
    op->deadline = s_deadline(timeout_ms);
    op->retry_until = s_retry_until(timeout_ms, op->deadline);
    op->next = r->ops;
    r->ops = op;
    return op;
}

/* Storage for the request of a step (built from op->req). */
typedef struct s_step_req {
    s_req_t req;
    Cairn__Syncd__AcquireRequest acquire;
    Cairn__Syncd__ReleaseRequest release;
    Cairn__Syncd__CondWaitRequest cond;
    Cairn__Syncd__Spec spec;
    Cairn__Syncd__Holder holder;
} s_step_req_t;
static const char *s_step_build(const s_op_t *op, s_step_req_t *s);

/* Fills reply (storage from alloc) with what op's client gets. */
static int s_op_fill_reply(const s_op_t *op, s_rep_t *reply,
                           void *(*alloc)(void *, size_t), void *ctx)
{
    const s_outcome_t *o = &op->out;
    switch (op->req->msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE: {
        Cairn__Syncd__AcquireReply *a = alloc(ctx, sizeof(*a));
        if (!a)
            return -ENOMEM;
        cairn__syncd__acquire_reply__init(a);
        a->token = o->token;
        a->owner_died = o->owner_died;
        a->home = o->home;
        a->cached = o->cached;
        if (op->slot_set) {
            a->slot = op->slot.slot;
            a->slot_gen = op->slot.gen;
            a->table = (char *)op->table;
        }
        reply->acquire_reply = a;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
        return 0;
    }
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER: {
        Cairn__Syncd__BarrierReply *b = alloc(ctx, sizeof(*b));
        if (!b)
            return -ENOMEM;
        cairn__syncd__barrier_reply__init(b);
        b->serial = o->serial;
        b->generation = o->generation;
        reply->barrier_reply = b;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY;
        return 0;
    }
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL: {
        Cairn__Syncd__CondReply *c = alloc(ctx, sizeof(*c));
        if (!c)
            return -ENOMEM;
        cairn__syncd__cond_reply__init(c);
        c->timed_out = o->timed_out;
        c->woken = o->woken;
        c->token = o->token;
        c->owner_died = o->owner_died;
        reply->cond_reply = c;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_COND_REPLY;
        return 0;
    }
    default: {
        Cairn__Syncd__ReleaseReply *rr = alloc(ctx, sizeof(*rr));
        if (!rr)
            return -ENOMEM;
        cairn__syncd__release_reply__init(rr);
        reply->release_reply = rr;
        reply->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
        return 0;
    }
    }
}

static void *s_req_alloc(void *ctx, size_t size)
{
    return cairn_request_alloc(ctx, size);
}

/* Stack storage for a deferred reply (all fits in one union). */
typedef struct s_store {
    union {
        Cairn__Syncd__AcquireReply a;
        Cairn__Syncd__BarrierReply b;
        Cairn__Syncd__CondReply c;
        Cairn__Syncd__ReleaseReply rr;
    } u;
    bool used;
} s_store_t;

static void *s_store_alloc(void *ctx, size_t size)
{
    s_store_t *s = ctx;
    if (s->used || size > sizeof(s->u))
        return NULL;
    s->used = true;
    memset(&s->u, 0, sizeof(s->u));
    return &s->u;
}

/* Answers op's client with op->out and frees op, unless it is still inside
 * its handler (the handler replies and frees it). */
static void s_op_finish(s_op_t *op, const s_outcome_t *o)
{
    relay_t *r = op->r;

    if (o != &op->out)
        op->out = *o;
    op->finished = true;
    s_op_stop_timer(op);
    if (op->inline_req)
        return;     /* the handler answers */
    if (op->deferred && op->passthrough && op->out.code == CAIRN_OK) {
        cairn_deferred_reply(r->svc, op->deferred, &op->passthrough->base);
        op->deferred = NULL;
    }
    if (op->deferred) {
        if (op->out.code != CAIRN_OK) {
            cairn_deferred_fail(r->svc, op->deferred, op->out.code, op->out.message);
        } else {
            s_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
            s_store_t st = { .used = false };
            if (s_op_fill_reply(op, &reply, s_store_alloc, &st) < 0)
                cairn_deferred_fail(r->svc, op->deferred, CAIRN_INTERNAL,
                                    "out of memory");
            else
                cairn_deferred_reply(r->svc, op->deferred, &reply.base);
        }
        op->deferred = NULL;
    }
    s_op_free(op);
}

/* The handler's end for an op: its reply now, or deferred. */
static int s_op_handler_end(s_op_t *op, cairn_request_t *req)
{
    op->inline_req = NULL;
    if (op->finished) {
        int ret;
        s_rep_t *reply = (s_rep_t *)cairn_request_reply(req);
        if (op->out.code != CAIRN_OK)
            ret = s_fail(req, &op->out);
        else
            ret = s_op_fill_reply(op, reply, s_req_alloc, req) < 0 ? -ENOMEM
                                                                   : CAIRN_REPLY_NOW;
        /* the reply is sent after op is gone: its table path goes along */
        if (ret == CAIRN_REPLY_NOW && op->slot_set &&
            reply->msg_case == CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY &&
            !(reply->acquire_reply->table = cairn_request_strdup(req, op->table)))
            ret = -ENOMEM;
        s_op_free(op);
        return ret;
    }
    s_req_t *own = s_req_copy(op->req);
    op->deferred = own ? cairn_request_defer(req) : NULL;
    if (!op->deferred) {
        if (own)
            cairn__syncd__request__free_unpacked(own, NULL);
        s_op_free(op);
        return -ENOMEM;
    }
    op->req = own;
    op->req_owned = true;
    if (op->target) {   /* it pointed into the handler's request */
        s_step_req_t scratch;
        op->target = s_step_build(op, &scratch);
    }
    return CAIRN_REPLY_DEFERRED;
}

/* ---- one step's request ------------------------------------------------ */


/* The request op's current step sends, and the name it is about. */
static const char *s_step_build(const s_op_t *op, s_step_req_t *s)
{
    const s_req_t *q = op->req;
    const Cairn__Syncd__CondWaitRequest *cw = q->cond_wait;

    if (op->step == STEP_SEND) {
        s->req = *q;
        if (q->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
            s->acquire = *q->acquire;
            s->acquire.cache_ok = op->cache_ok;
            /* what is left of the caller's timeout */
            if (q->acquire->timeout_ms > 0)
                s->acquire.timeout_ms = (int64_t)cairn_ms_left(op->deadline);
            s->req.acquire = &s->acquire;
            return q->acquire->name;
        }
        switch (q->msg_case) {
        case CAIRN__SYNCD__REQUEST__MSG_RELEASE: return q->release->name;
        case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT: return q->consistent->name;
        case CAIRN__SYNCD__REQUEST__MSG_BARRIER: return q->barrier->name;
        case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL: return q->cond_signal->name;
        case CAIRN__SYNCD__REQUEST__MSG_SHOW: return q->show->name;
        case CAIRN__SYNCD__REQUEST__MSG_DESTROY: return q->destroy->name;
        case CAIRN__SYNCD__REQUEST__MSG_DECLARE: return q->declare->name;
        default: return "";
        }
    }
    cairn__syncd__request__init(&s->req);
    s->holder = *cw->holder;
    switch (op->step) {
    case STEP_PREPARE:
    case STEP_WAIT:
    case STEP_CANCEL:
        s->cond = *cw;
        s->cond.holder = &s->holder;
        s->cond.phase = op->step == STEP_PREPARE ? CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_PREPARE
                      : op->step == STEP_WAIT ? CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT
                      : CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL;
        if (op->step == STEP_WAIT && cw->timeout_ms > 0)
            s->cond.timeout_ms = (int64_t)cairn_ms_left(op->deadline);
        s->req.cond_wait = &s->cond;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_COND_WAIT;
        return cw->name;
    case STEP_UNLOCK:
        cairn__syncd__release_request__init(&s->release);
        s->release.name = cw->mutex;
        s->release.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
        s->release.holder = &s->holder;
        s->req.release = &s->release;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
        return cw->mutex;
    default: /* STEP_RELOCK */
        cairn__syncd__acquire_request__init(&s->acquire);
        cairn__syncd__spec__init(&s->spec);
        s->spec.kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
        s->spec.shared = cw->shared;
        s->acquire.name = cw->mutex;
        s->acquire.spec = &s->spec;
        s->acquire.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
        s->acquire.timeout_ms = -1;
        s->acquire.holder = &s->holder;
        s->acquire.tag = cw->tag ^ RELOCK_TAG;
        s->req.acquire = &s->acquire;
        s->req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ACQUIRE;
        return cw->mutex;
    }
}

/* ---- home.c glue --------------------------------------------------------- */

static void s_outcome_from_home(s_outcome_t *o, const home_result_t *hr,
                                uint32_t home)
{
    memset(o, 0, sizeof(*o));
    o->code = hr->code;
    snprintf(o->message, sizeof(o->message), "%s", hr->message);
    o->token = hr->token;
    o->owner_died = hr->owner_died;
    o->cached = hr->cached;
    o->serial = hr->serial;
    o->generation = hr->generation;
    o->woken = hr->woken;
    o->home = home;
}

static void s_outcome_from_reply(s_outcome_t *o, const s_rep_t *rep,
                                 uint32_t home)
{
    memset(o, 0, sizeof(*o));
    o->home = home;
    if (rep->status && (int)rep->status->code != CAIRN_OK) {
        s_outcome_set(o, rep->status->code, "%s", rep->status->message ?
                      rep->status->message : "");
        return;
    }
    switch (rep->msg_case) {
    case CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY:
        o->token = rep->acquire_reply->token;
        o->owner_died = rep->acquire_reply->owner_died;
        o->cached = rep->acquire_reply->cached;
        if (rep->acquire_reply->home)
            o->home = rep->acquire_reply->home;
        break;
    case CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY:
        o->serial = rep->barrier_reply->serial;
        o->generation = rep->barrier_reply->generation;
        break;
    case CAIRN__SYNCD__REPLY__MSG_COND_REPLY:
        o->woken = rep->cond_reply->woken;
        o->timed_out = rep->cond_reply->timed_out;
        o->token = rep->cond_reply->token;
        o->owner_died = rep->cond_reply->owner_died;
        break;
    default:
        break;
    }
}

/* Runs req (holder and uid already right) on our home. HOME_DONE with *hr,
 * HOME_QUEUED (answer later with cookie), or < 0. */
static int s_home_exec(relay_t *r, const s_req_t *req, uint32_t uid,
                       void *cookie, home_result_t *hr)
{
    memset(hr, 0, sizeof(*hr));
    switch (req->msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
        return home_acquire(r->home, req->acquire, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_RELEASE:
        return home_release(r->home, req->release, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT:
        return home_consistent(r->home, req->consistent, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
        return home_barrier(r->home, req->barrier, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
        return home_cond(r->home, req->cond_wait, uid, cookie, hr);
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL:
        return home_cond_signal(r->home, req->cond_signal, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_DESTROY:
        return home_destroy(r->home, req->destroy, uid, hr);
    case CAIRN__SYNCD__REQUEST__MSG_DECLARE:
        return home_declare(r->home, req->declare, uid, hr);
    default:
        hr->code = CAIRN_UNSUPPORTED;
        snprintf(hr->message, sizeof(hr->message), "not a home request");
        return HOME_DONE;
    }
}

static void s_jobs_run_soon(relay_t *r);
static void s_hw_answer(s_hw_t *hw, const home_result_t *hr);

/* home.c's answer to a waiter. */
static void s_home_answer(void *userdata, void *cookie, const home_result_t *hr)
{
    relay_t *r = userdata;
    int kind = *(int *)cookie;

    if (kind == COOKIE_HW) {
        s_hw_answer((s_hw_t *)cookie, hr);
        return;
    }
    s_op_t *op = cookie;
    op->at_local_home = false;
    s_outcome_from_home(&op->queued, hr, r->self);
    op->ready = true;
    if (CAIRN_GROW(r->jobs, r->cap_jobs, r->n_jobs + 1, 16) < 0) {
        cairn_log_err(0, "queue", "msg=\"out of memory queueing an answer, "
                      "the request is dropped\"");
        return;
    }
    r->jobs[r->n_jobs++] = (s_job_t){ .kind = JOB_ANSWER, .op = op->attempt };
    s_jobs_run_soon(r);
}

static void s_home_revoke(void *userdata, uint32_t node, const char *name,
                          uint64_t grant)
{
    relay_t *r = userdata;
    char *copy = strdup(name);
    if (!copy || CAIRN_GROW(r->jobs, r->cap_jobs, r->n_jobs + 1, 16) < 0) {
        free(copy);
        cairn_log_err(0, "revoke", "name=%s node=%u msg=\"out of memory, the "
                      "revoke is retried at the next request\"", name, node);
        return;
    }
    r->jobs[r->n_jobs++] = (s_job_t){ .kind = JOB_REVOKE, .node = node,
                                      .name = copy, .grant = grant };
    s_jobs_run_soon(r);
}

static uint64_t s_home_now_us(void *userdata)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t s_home_now_ms(void *userdata)
{
    return cairn_now_ms();
}

static const home_ops_t s_home_ops = {
    .answer = s_home_answer,
    .revoke = s_home_revoke,
    .now_us = s_home_now_us,
    .now_ms = s_home_now_ms,
};

/* ---- revokes (home side: asking; cache side: answering) ---------------- */

static void s_revoke_send(s_out_revoke_t *o);

/* The entry of list whose peer call is id, or NULL. */
static s_retry_t *s_retry_find(s_retry_t *list, uint64_t id)
{
    while (list && list->id != id)
        list = list->next;
    return list;
}

static void s_retry_push(s_retry_t **list, s_retry_t *e)
{
    e->next = *list;
    *list = e;
}

/* Takes e off list, cancels its timer and frees it (its struct began
 * with e). */
static void s_retry_drop(relay_t *r, s_retry_t **list, s_retry_t *e)
{
    for (s_retry_t **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    if (e->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), e->timer);
    free(e->name);
    free(e);
}

static void s_out_revoke_free(relay_t *r, s_out_revoke_t *o)
{
    s_retry_drop(r, &r->out_revokes, &o->rt);
}

static int s_on_revoke_retry(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_out_revoke_t *o = userdata;
    o->rt.timer = 0;
    s_revoke_send(o);
    return 0;
}

static void s_on_revoke_reply(void *userdata, uint32_t node, int code,
                              const char *message, ProtobufCMessage *reply)
{
    relay_t *r = s_relay_of_peers;
    s_out_revoke_t *o = r ? (s_out_revoke_t *)s_retry_find(
                                r->out_revokes, (uint64_t)(uintptr_t)userdata)
                          : NULL;

    if (!o) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    if (code == CAIRN_OK) {
        s_rep_t *rep = (s_rep_t *)reply;
        const Cairn__Syncd__RevokeReply *rv =
            rep->msg_case == CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY ? rep->revoke_reply : NULL;
        home_revoked(r->home, o->rt.name, o->grant, rv ? rv->last_token : 0,
                     rv && rv->owner_died, rv && rv->not_recoverable);
        protobuf_c_message_free_unpacked(reply, NULL);
        s_out_revoke_free(r, o);
        return;
    }
    if (!cairn_view_alive(r->view, o->node)) {
        s_out_revoke_free(r, o);     /* home_node_dead takes the cache back */
        return;
    }
    cairn_log_warn(0, "revoke", "name=%s node=%u msg=\"%s\", retrying", o->rt.name,
                   o->node, message ? message : "");
    o->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc), REVOKE_RETRY_MS,
                                    0, s_on_revoke_retry, o);
}

static void s_revoke_send(s_out_revoke_t *o)
{
    relay_t *r = o->r;
    const char *ep = cairn_view_endpoint(r->view, o->node);
    s_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__RevokeRequest rv = CAIRN__SYNCD__REVOKE_REQUEST__INIT;

    rv.name = o->rt.name;
    rv.grant = o->grant;
    req.revoke = &rv;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_REVOKE;
    o->rt.id = s_next_id(r);
    if (!ep || cairn_peers_call(r->peers, o->node, ep, &req.base, CALL_MS,
                                s_on_revoke_reply, (void *)(uintptr_t)o->rt.id) < 0)
        o->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                        REVOKE_RETRY_MS, 0, s_on_revoke_retry, o);
}

/* Our home wants `name`'s cache back from node. */
static void s_revoke_start(relay_t *r, uint32_t node, const char *name,
                           uint64_t grant)
{
    cairn_log_info("revoke", "name=%s node=%u grant=%" PRIu64, name, node, grant);
    if (node == r->self) {
        uint64_t last = 0;
        bool died = false, nr = false;
        int k = cache_revoke(r->cache, name, grant, &last, &died, &nr);
        if (k == 0) {
            s_revoke_t *w = calloc(1, sizeof(*w));
            if (w && (w->name = strdup(name))) {
                w->grant = grant;
                w->next = r->revokes;
                r->revokes = w;
            } else {
                free(w);
                cairn_log_err(0, "revoke", "name=%s msg=\"out of memory\"", name);
            }
            return;
        }
        home_revoked(r->home, name, grant, k == 1 ? last : 0, k == 1 && died,
                     k == 1 && nr);
        return;
    }
    s_out_revoke_t *o = calloc(1, sizeof(*o));
    if (!o || !(o->rt.name = strdup(name))) {
        free(o);
        cairn_log_err(0, "revoke", "name=%s msg=\"out of memory\"", name);
        return;
    }
    o->r = r;
    o->node = node;
    o->grant = grant;
    s_retry_push(&r->out_revokes, &o->rt);
    s_revoke_send(o);
}

/* cache.c: a revoke that waited for a holder finished. */
static void s_on_cache_revoked(void *userdata, const char *name, uint64_t grant,
                               uint64_t last_token, bool owner_died,
                               bool not_recoverable)
{
    relay_t *r = userdata;
    for (s_revoke_t **pp = &r->revokes; *pp;) {
        s_revoke_t *w = *pp;
        if (w->early || strcmp(w->name, name) != 0 || w->grant > grant) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->deferred) {
            s_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
            Cairn__Syncd__RevokeReply rv = CAIRN__SYNCD__REVOKE_REPLY__INIT;
            rv.last_token = last_token;
            rv.owner_died = owner_died;
            rv.not_recoverable = not_recoverable;
            reply.revoke_reply = &rv;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
            cairn_deferred_reply(r->svc, w->deferred, &reply.base);
        } else {
            home_revoked(r->home, name, w->grant, last_token, owner_died,
                         not_recoverable);
        }
        cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%" PRIu64
                       " owner_died=%d", name, w->grant, last_token, owner_died);
        free(w->name);
        free(w);
    }
}

/* Whether an acquire of name that may come back cached is on its way
 * (other than `except`). */
static bool s_cache_op_pending(relay_t *r, const char *name, const s_op_t *except)
{
    for (s_op_t *op = r->ops; op; op = op->next)
        if (op != except && op->cache_ok && !op->finished &&
            op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE &&
            strcmp(op->req->acquire->name, name) == 0)
            return true;
    return false;
}

static void s_revoke_reply(relay_t *r, cairn_deferred_t *d, uint64_t last,
                           bool died, bool nr)
{
    s_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__RevokeReply rv = CAIRN__SYNCD__REVOKE_REPLY__INIT;
    rv.last_token = last;
    rv.owner_died = died;
    rv.not_recoverable = nr;
    reply.revoke_reply = &rv;
    reply.msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
    cairn_deferred_reply(r->svc, d, &reply.base);
}

/* Early revokes of name: with `grant` installed now (0: none will be),
 * applied; those whose grant did not come (all when grant is 0 and no
 * acquire is left on its way) answered "not here". */
static void s_early_revokes(relay_t *r, const char *name, uint64_t grant,
                            bool none_left)
{
    for (s_revoke_t **pp = &r->revokes; *pp;) {
        s_revoke_t *w = *pp;
        uint64_t last = 0;
        bool died = false, nr = false;
        int k = -ENOENT;
        if (!w->early || strcmp(w->name, name) != 0 ||
            (w->grant != grant && !none_left)) {
            pp = &w->next;
            continue;
        }
        if (grant && w->grant == grant)
            k = cache_revoke(r->cache, name, grant, &last, &died, &nr);
        cairn_log_debug("revoke-early", "name=%s grant=%" PRIu64 " k=%d", name,
                        w->grant, k);
        if (k == 0) {           /* held: the cache's callback answers */
            w->early = false;
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        s_revoke_reply(r, w->deferred, k == 1 ? last : 0, k == 1 && died,
                       k == 1 && nr);
        if (k == 1)
            cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%"
                           PRIu64, name, w->grant, last);
        free(w->name);
        free(w);
    }
}

/* ---- queued jobs ----------------------------------------------------------- */

static int s_on_jobs(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_t *r = userdata;
    r->jobs_timer = 0;
    /* jobs queued while running go in the same array: index, not pointer */
    for (size_t i = 0; i < r->n_jobs; i++) {
        s_job_t j = r->jobs[i];
        if (j.kind == JOB_ANSWER) {
            s_op_t *op = s_op_by_attempt(r, j.op);
            if (op && op->ready) {
                s_outcome_t o = op->queued;
                op->ready = false;
                s_op_result(op, &o);
            }
        } else {
            s_revoke_start(r, j.node, j.name, j.grant);
            free(j.name);
        }
    }
    r->n_jobs = 0;
    return 0;
}

static void s_jobs_run_soon(relay_t *r)
{
    if (r->jobs_timer <= 0)
        r->jobs_timer = cairn_loop_add_timer(cairn_service_loop(r->svc), 0, 0,
                                             s_on_jobs, r);
}

/* ---- sending an op's step ----------------------------------------------- */

static int s_on_op_timer(cairn_loop_t *loop, int64_t id, void *userdata);

static void s_on_op_reply(void *userdata, uint32_t node, int code,
                          const char *message, ProtobufCMessage *reply)
{
    relay_t *r = s_relay_of_peers;
    s_op_t *op = r ? s_op_by_attempt(r, (uint64_t)(uintptr_t)userdata) : NULL;
    s_outcome_t o;

    if (!op) {      /* a superseded attempt */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    if (code == CAIRN_OK) {
        s_outcome_from_reply(&o, (s_rep_t *)reply, node);
        if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_SHOW && o.code == CAIRN_OK &&
            !op->passthrough)
            op->passthrough = (s_rep_t *)reply;
        else
            protobuf_c_message_free_unpacked(reply, NULL);
    } else {
        memset(&o, 0, sizeof(o));
        o.home = node;
        s_outcome_set(&o, code, "%s", message ? message : "no answer");
    }
    op->attempt = 0;
    s_op_result(op, &o);
}

/* Retries op's step after a short backoff (a home that is not ready). */
static void s_op_backoff(s_op_t *op)
{
    uint64_t ms = BACKOFF_MIN_MS + (uint64_t)(rand() % (BACKOFF_MAX_MS - BACKOFF_MIN_MS + 1));
    uint64_t left = cairn_ms_left(op->retry_until);

    if (op->retry_until != UINT64_MAX && left < ms)
        ms = left;
    op->attempt = s_next_id(op->r);  /* late answers of the old one: ignored */
    s_op_stop_timer(op);
    op->timer = cairn_loop_add_timer(cairn_service_loop(op->r->svc), ms, 0,
                                     s_on_op_timer, op);
}

/* The peer deadline of op's current step. */
static uint32_t s_step_wait_ms(const s_op_t *op, const s_step_req_t *s)
{
    int64_t t = 0;
    switch (s->req.msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE: t = s->req.acquire->timeout_ms; break;
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER: t = s->req.barrier->timeout_ms; break;
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
        t = s->req.cond_wait->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT ?
            s->req.cond_wait->timeout_ms : 0;
        break;
    default: break;
    }
    if (t < 0)
        return LONG_MS;
    return (uint32_t)(t > LONG_MS ? LONG_MS : t) + (t ? MARGIN_MS : CALL_MS);
}

/* Sends op's current step to the home of its name. */
static void s_op_dispatch(s_op_t *op)
{
    relay_t *r = op->r;
    s_step_req_t s;
    char why[128];
    const char *bad = s_unusable(r, why, sizeof(why));
    s_outcome_t o = { 0 };

    op->attempt = s_next_id(r);
    s_op_stop_timer(op);
    if (bad) {
        s_outcome_set(&o, CAIRN_UNAVAILABLE, "%s", bad);
        s_op_finish(op, &o);
        return;
    }
    memset(&s, 0, sizeof(s));
    op->target = s_step_build(op, &s);
    op->home = cairn_view_home(r->view, op->target);
    if (op->home == r->self) {
        home_result_t hr;
        int k = s_home_exec(r, &s.req, op->caller.uid, op, &hr);
        if (k < 0) {
            s_outcome_set(&o, CAIRN_INTERNAL, "out of memory at the home");
            s_op_finish(op, &o);
            return;
        }
        if (k == HOME_QUEUED) {
            op->at_local_home = true;
            op->waited = true;
            if (op->deadline != UINT64_MAX)
                op->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                                 cairn_ms_left(op->deadline), 0,
                                                 s_on_op_timer, op);
            return;
        }
        s_outcome_from_home(&o, &hr, r->self);
        s_op_result(op, &o);
        return;
    }
    const char *ep = cairn_view_endpoint(r->view, op->home);
    int k = ep ? cairn_peers_call_as(r->peers, op->home, ep, &s.req.base,
                                     s_step_wait_ms(op, &s), &op->caller,
                                     s_on_op_reply, (void *)(uintptr_t)op->attempt)
               : -ENOENT;
    if (k < 0) {
        if (k == -EAGAIN || k == -ENOENT) {
            s_op_backoff(op);
            return;
        }
        s_outcome_set(&o, CAIRN_UNAVAILABLE, "cannot reach syncd of node %u "
                      "(home of %s): %s", op->home, op->target, strerror(-k));
        s_op_finish(op, &o);
    }
}

/* Timer: a backoff ended (send again) or a wait at our home timed out. */
static int s_on_op_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_op_t *op = userdata;
    s_outcome_t o = { 0 };

    op->timer = 0;
    if (op->at_local_home) {
        s_op_unqueue(op);
        s_outcome_set(&o, CAIRN_TIMEOUT, "timed out waiting for %s", op->target);
        o.home = op->r->self;
        s_op_result(op, &o);
        return 0;
    }
    if (op->retry_until != UINT64_MAX && cairn_ms_left(op->retry_until) == 0 &&
        op->step != STEP_RELOCK && op->step != STEP_UNLOCK && op->step != STEP_CANCEL) {
        s_outcome_set(&o, CAIRN_TIMEOUT, "timed out: the home of %s was not "
                      "available before the deadline", op->target);
        s_op_result(op, &o);
        return 0;
    }
    s_op_dispatch(op);
    return 0;
}

/* ---- what an op does with a step's answer ------------------------------ */

/* Whether a home's answer is one to retry after a backoff: not home (views
 * differ for a moment), recovering, moved, or unreachable. */
static bool s_retryable(const s_op_t *op, const s_outcome_t *o)
{
    if (o->code == CAIRN_UNAVAILABLE)
        return true;
    /* a peer call that got no answer before its (long) deadline */
    return o->code == CAIRN_TIMEOUT && o->home != op->r->self &&
           (op->deadline == UINT64_MAX || cairn_ms_left(op->deadline) > 0);
}

static void s_cond_result(s_op_t *op, const s_outcome_t *o);
static void s_acquire_result(s_op_t *op, const s_outcome_t *o);

static void s_op_result(s_op_t *op, const s_outcome_t *o)
{
    if (s_retryable(op, o)) {
        bool forever = op->step == STEP_RELOCK || op->step == STEP_UNLOCK ||
                       op->step == STEP_CANCEL;
        if (forever || op->retry_until == UINT64_MAX || cairn_ms_left(op->retry_until) > 0) {
            s_op_backoff(op);
            return;
        }
        s_outcome_t t = *o;
        if (t.code == CAIRN_UNAVAILABLE)
            snprintf(t.message + strlen(t.message), sizeof(t.message) - strlen(t.message),
                     " (until the deadline)");
        s_op_finish(op, &t);
        return;
    }
    if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_COND_WAIT) {
        s_cond_result(op, o);
        return;
    }
    if (op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
        s_acquire_result(op, o);
        return;
    }
    if (o->code == CAIRN_OK && op->req->msg_case == CAIRN__SYNCD__REQUEST__MSG_CONSISTENT) {
        s_hold_t *h = s_hold_find(op->r, op->pid, op->tid,
                                  op->req->consistent->name, 0, NULL);
        if (h)
            h->owner_died = false;
    }
    s_op_finish(op, o);
}

/* Gives back a cache grant we could not install: a release by the grantee
 * from this node, then the acquire again without cache_ok. */
static void s_release_async(relay_t *r, uint32_t home, const char *name,
                            int mode, uint32_t count, const Cairn__Syncd__Holder *holder,
                            const cairn_caller_t *as);

static void s_acquire_result(s_op_t *op, const s_outcome_t *o)
{
    relay_t *r = op->r;
    const Cairn__Syncd__AcquireRequest *a = op->req->acquire;

    if (o->code != CAIRN_OK) {
        s_op_finish(op, o);
        return;
    }
    if (o->owner_died)
        cairn_log_info("owner-died", "name=%s pid=%d token=%" PRIu64, a->name,
                       op->pid, o->token);
    else if (op->waited)    /* one line per grant after a wait at our home */
        cairn_log_info("grant", "name=%s node=%u pid=%d token=%" PRIu64, a->name,
                       r->self, op->pid, o->token);
    if (o->cached) {
        cairn_error_t err;
        int k = cache_install(r->cache, a->name, op->caller.uid, o->token,
                              o->owner_died, op->pid, op->tid, &op->slot, &err);
        if (k == 0) {
            snprintf(op->table, sizeof(op->table), "%s", op->slot.table);
            op->slot_set = true;
            s_early_revokes(r, a->name, o->token, false);
            s_op_finish(op, o);
            return;
        }
        cairn_log_warn(0, "cache-install", "name=%s msg=\"%s\", giving the "
                       "cache back", a->name, err.message);
        s_release_async(r, o->home, a->name, CAIRN__SYNCD__MODE__MODE_LOCK, 1,
                        a->holder, &op->caller);
        op->cache_ok = false;
        s_op_dispatch(op);
        return;
    }
    s_hold_add(r, op, o);
    s_op_finish(op, o);
}

/* ---- the condvar op --------------------------------------------------------- */

static void s_cond_next(s_op_t *op, int step)
{
    op->step = step;
    s_op_dispatch(op);
}

static void s_cond_result(s_op_t *op, const s_outcome_t *o)
{
    relay_t *r = op->r;
    const Cairn__Syncd__CondWaitRequest *cw = op->req->cond_wait;

    if (op->one_phase) {
        s_outcome_t fin = *o;
        if (op->step == STEP_WAIT && o->code == CAIRN_TIMEOUT) {
            memset(&fin, 0, sizeof(fin));
            fin.timed_out = true;
        }
        s_op_finish(op, &fin);
        return;
    }
    switch (op->step) {
    case STEP_PREPARE:
        if (o->code != CAIRN_OK) {
            s_op_finish(op, o);
            return;
        }
        op->prepared = true;
        s_cond_next(op, STEP_UNLOCK);
        return;
    case STEP_UNLOCK: {
        s_hold_t **link = NULL;
        s_hold_t *h = s_hold_find(r, op->pid, op->tid, cw->mutex,
                                  CAIRN__SYNCD__MODE__MODE_LOCK, &link);
        if (o->code == CAIRN_OK && h) {
            *link = h->next;
            s_hold_free(h);
        }
        if (o->code != CAIRN_OK)
            cairn_log_warn(0, "cond-unlock", "name=%s mutex=%s msg=\"%s\"",
                           cw->name, cw->mutex, o->message);
        s_cond_next(op, STEP_WAIT);
        return;
    }
    case STEP_WAIT:
    case STEP_CANCEL:
        if (o->code == CAIRN_TIMEOUT)
            op->timed_out = true;
        else if (op->step == STEP_WAIT && o->code != CAIRN_OK)
            cairn_log_info("cond-wake", "name=%s pid=%d msg=\"%s\"", cw->name,
                           op->pid, o->message);
        /* whatever the wait said, the mutex is taken again: its deadline
         * no longer applies */
        op->deadline = UINT64_MAX;
        s_cond_next(op, STEP_RELOCK);
        return;
    default: { /* STEP_RELOCK */
        s_outcome_t fin = *o;
        if (o->code == CAIRN_OK) {
            s_hold_t *h;
            s_proc_t *p = s_proc_get(r, op->pid);
            if (p && (h = calloc(1, sizeof(*h))) && (h->name = strdup(cw->mutex))) {
                h->tid = op->tid;
                h->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
                h->token = o->token;
                h->tag = cw->tag ^ RELOCK_TAG;
                h->home = o->home;
                h->count = 1;
                h->uid = op->caller.uid;
                h->kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
                h->shared = cw->shared;
                h->owner_died = o->owner_died;
                h->next = p->holds;
                p->holds = h;
            } else if (p) {
                free(h);
            }
            fin.timed_out = op->timed_out;
        }
        s_op_finish(op, &fin);
        return;
    }
    }
}

/* ---- releases --------------------------------------------------------------- */

#define RELEASE_TRY_MS 10000

static void s_rel_free(relay_t *r, s_rel_t *rel)
{
    s_retry_drop(r, &r->rels, &rel->rt);
}

static void s_rel_send(relay_t *r, s_rel_t *rel);

static int s_on_rel_retry(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_rel_t *rel = userdata;

    (void)loop;
    (void)id;
    rel->rt.timer = 0;
    s_rel_send(s_relay_of_peers, rel);
    return 0;
}

/* The home could not take it (why): again soon, or given up. */
static void s_rel_again(relay_t *r, s_rel_t *rel, const char *why)
{
    rel->rt.id = 0;
    if (r->stopping || cairn_now_ms() >= rel->until_ms) {
        cairn_log_warn(0, "release", "name=%s pid=%d tid=%d msg=\"%s\", "
                       "given up: its home frees it when the process exits "
                       "or the home changes", rel->rt.name, rel->holder.pid,
                       rel->holder.tid, why);
        s_rel_free(r, rel);
        return;
    }
    uint64_t ms = BACKOFF_MIN_MS +
                  (uint64_t)(rand() % (BACKOFF_MAX_MS - BACKOFF_MIN_MS + 1));
    rel->rt.timer = cairn_loop_add_timer(cairn_service_loop(r->svc), ms, 0,
                                      s_on_rel_retry, rel);
    if (rel->rt.timer <= 0)
        s_rel_free(r, rel);
}

static void s_on_release_reply(void *userdata, uint32_t node, int code,
                               const char *message, ProtobufCMessage *reply)
{
    relay_t *r = s_relay_of_peers;
    uint64_t id = (uint64_t)(uintptr_t)userdata;
    s_rel_t *rel = r ? (s_rel_t *)s_retry_find(r->rels, id) : NULL;

    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (!rel)
        return;
    if (code == CAIRN_UNAVAILABLE || code == CAIRN_TIMEOUT) {
        s_rel_again(r, rel, message ? message : "");
        return;
    }
    if (code != CAIRN_OK)
        cairn_log_warn(0, "release", "name=%s node=%u msg=\"%s\", ignoring",
                       rel->rt.name, node, message ? message : "");
    s_rel_free(r, rel);
}

/* Sends rel to the home of the moment; frees it once taken or refused. */
static void s_rel_send(relay_t *r, s_rel_t *rel)
{
    s_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__ReleaseRequest rl = CAIRN__SYNCD__RELEASE_REQUEST__INIT;
    Cairn__Syncd__Holder h = rel->holder;
    uint32_t home = cairn_view_quorum(r->view) ? cairn_view_home(r->view, rel->rt.name) : 0;

    if (!home) {
        s_rel_again(r, rel, "no home now (no quorum or no membership)");
        return;
    }
    rl.name = rel->rt.name;
    rl.mode = rel->mode;
    rl.count = rel->count;
    rl.holder = &h;
    req.release = &rl;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
    cairn_log_debug("release-forward", "name=%s home=%u pid=%d tid=%d mode=%d",
                    rel->rt.name, home, h.pid, h.tid, rel->mode);
    if (home == r->self) {
        home_result_t hr;
        home_release(r->home, &rl, rel->as.uid, &hr);
        if (hr.code == CAIRN_UNAVAILABLE) {
            s_rel_again(r, rel, hr.message);
            return;
        }
        if (hr.code != CAIRN_OK)
            cairn_log_warn(0, "release", "name=%s msg=\"%s\", ignoring",
                           rel->rt.name, hr.message);
        s_rel_free(r, rel);
        return;
    }
    const char *ep = cairn_view_endpoint(r->view, home);
    rel->rt.id = s_next_id(r);
    int k = ep ? cairn_peers_call_as(r->peers, home, ep, &req.base, CALL_MS,
                                     &rel->as, s_on_release_reply,
                                     (void *)(uintptr_t)rel->rt.id) : -ENOENT;
    if (k < 0)
        s_rel_again(r, rel, strerror(-k));
}

/* Carries a release the relay already answered to the home; ordered
 * behind the caller's earlier requests to that home on the same DEALER. */
static void s_release_async(relay_t *r, uint32_t home, const char *name,
                            int mode, uint32_t count, const Cairn__Syncd__Holder *holder,
                            const cairn_caller_t *as)
{
    s_rel_t *rel = calloc(1, sizeof(*rel));

    (void)home;   /* the home of the moment decides, not the grant's */
    if (!rel || !(rel->rt.name = strdup(name))) {
        free(rel);
        cairn_log_warn(0, "release", "name=%s msg=\"out of memory\", the home "
                       "frees it when the holder's process exits", name);
        return;
    }
    rel->mode = mode;
    rel->count = count;
    rel->holder = *holder;
    if (as)
        rel->as = *as;
    rel->until_ms = cairn_now_ms() + RELEASE_TRY_MS;
    s_retry_push(&r->rels, &rel->rt);
    s_rel_send(r, rel);
}

/* ---- the home side: other relays' waiters ------------------------------ */

static void s_hw_free(s_hw_t *hw)
{
    relay_t *r = hw->r;
    for (s_hw_t **pp = &r->hws; *pp; pp = &(*pp)->next)
        if (*pp == hw) {
            *pp = hw->next;
            break;
        }
    if (hw->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), hw->timer);
    if (hw->deferred)
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    free(hw);
}

static void s_hw_answer(s_hw_t *hw, const home_result_t *hr)
{
    relay_t *r = hw->r;
    s_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__AcquireReply a = CAIRN__SYNCD__ACQUIRE_REPLY__INIT;
    Cairn__Syncd__BarrierReply b = CAIRN__SYNCD__BARRIER_REPLY__INIT;
    Cairn__Syncd__CondReply c = CAIRN__SYNCD__COND_REPLY__INIT;

    if (hr->code != CAIRN_OK) {
        cairn_deferred_fail(r->svc, hw->deferred, hr->code, hr->message);
    } else {
        switch (hw->type) {
        case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
            a.token = hr->token;
            a.owner_died = hr->owner_died;
            a.cached = hr->cached;
            a.home = r->self;
            reply.acquire_reply = &a;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
            /* an hw is a waiter: one line per grant after a wait */
            cairn_log_info("grant", "node=%u pid=%d token=%" PRIu64 " owner_died=%d",
                               hw->node, hw->pid, hr->token, hr->owner_died);
            break;
        case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
            b.serial = hr->serial;
            b.generation = hr->generation;
            reply.barrier_reply = &b;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY;
            break;
        default:
            c.token = hr->token;
            c.woken = hr->woken;
            reply.cond_reply = &c;
            reply.msg_case = CAIRN__SYNCD__REPLY__MSG_COND_REPLY;
            break;
        }
        cairn_deferred_reply(r->svc, hw->deferred, &reply.base);
    }
    hw->deferred = NULL;
    s_hw_free(hw);
}

static int s_on_hw_timeout(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_hw_t *hw = userdata;
    hw->timer = 0;
    if (home_cancel(hw->r->home, hw)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "timed out after %" PRIu64 " ms", hw->timeout_ms);
        cairn_deferred_fail(hw->r->svc, hw->deferred, CAIRN_TIMEOUT, msg);
        hw->deferred = NULL;
        s_hw_free(hw);
    }
    return 0;
}

static s_hw_t *s_hw_find(relay_t *r, uint32_t node, int32_t pid, int32_t tid,
                         uint64_t tag, uint32_t type)
{
    if (!tag)
        return NULL;
    for (s_hw_t *hw = r->hws; hw; hw = hw->next)
        if (hw->node == node && hw->pid == pid && hw->tid == tid &&
            hw->tag == tag && hw->type == type)
            return hw;
    return NULL;
}

/* Drops (answers) every waiter here of node's processes pids (all of them
 * if pids is NULL), before home_gone/home_node_dead forget them. */
static void s_hw_drop(relay_t *r, uint32_t node, const int32_t *pids, size_t n,
                      const char *why)
{
    for (s_hw_t *hw = r->hws, *next; hw; hw = next) {
        bool hit = hw->node == node;
        next = hw->next;
        if (hit && pids) {
            hit = false;
            for (size_t i = 0; i < n; i++)
                hit = hit || pids[i] == hw->pid;
        }
        if (!hit)
            continue;
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE, why);
        hw->deferred = NULL;
        s_hw_free(hw);
    }
}

/* Whether a Request case is one a client (through its relay) may send. */
static bool s_client_request(int msg_case)
{
    switch (msg_case) {
    case CAIRN__SYNCD__REQUEST__MSG_ACQUIRE:
    case CAIRN__SYNCD__REQUEST__MSG_RELEASE:
    case CAIRN__SYNCD__REQUEST__MSG_CONSISTENT:
    case CAIRN__SYNCD__REQUEST__MSG_BARRIER:
    case CAIRN__SYNCD__REQUEST__MSG_COND_WAIT:
    case CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL:
    case CAIRN__SYNCD__REQUEST__MSG_DESTROY:
    case CAIRN__SYNCD__REQUEST__MSG_DECLARE:
        return true;
    default:
        return false;
    }
}

/* The member `field` of message m, or NULL if its type has none. The
 * client requests share field names (name, holder, timeout_ms, tag), so
 * one path reads them all through the descriptors. */
static void *s_member(ProtobufCMessage *m, const char *field)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);

    return f ? (char *)m + f->offset : NULL;
}

/* *q becomes in with its message shallow-copied into req's arena (so its
 * holder can be replaced); returns the copy, NULL on ENOMEM. */
static ProtobufCMessage *s_copy_request(cairn_request_t *req, const s_req_t *in,
                                        s_req_t *q)
{
    const ProtobufCFieldDescriptor *of =
        protobuf_c_message_descriptor_get_field(in->base.descriptor, in->msg_case);
    const ProtobufCMessage *inner =
        *(ProtobufCMessage *const *)((const char *)in + of->offset);
    ProtobufCMessage *copy =
        cairn_request_alloc(req, inner->descriptor->sizeof_message);

    if (!copy)
        return NULL;
    memcpy(copy, inner, inner->descriptor->sizeof_message);
    *q = *in;
    *(ProtobufCMessage **)((char *)q + of->offset) = copy;
    return copy;
}

/* A client request of another node's relay, served here: the Holder's node
 * and uid forced to what the connection says. */
static int s_home_side(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    s_req_t q;
    ProtobufCMessage *m;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    Cairn__Syncd__Holder **hp;
    const Cairn__Syncd__Holder *given = NULL;
    const Cairn__Syncd__CondWaitRequest *cw = NULL;
    const char *name;
    int64_t timeout = 0;
    uint64_t tag = 0;
    char why[128];
    const char *bad;
    uint32_t home;

    if (!s_client_request(in->msg_case))
        return cairn_request_fail(req, CAIRN_UNSUPPORTED, "not a client request");
    m = s_copy_request(req, in, &q);
    if (!m)
        return -ENOMEM;
    hp = s_member(m, "holder");
    name = *(char **)s_member(m, "name");
    const int64_t *tp = s_member(m, "timeout_ms");
    const uint64_t *gp = s_member(m, "tag");
    if (tp)
        timeout = *tp;
    if (gp)
        tag = *gp;
    if (in->msg_case == CAIRN__SYNCD__REQUEST__MSG_COND_WAIT)
        cw = q.cond_wait;
    given = *hp;
    if (given)
        h = *given;
    h.node = c->node;
    h.uid = c->uid;
    if (h.tid == 0)
        h.tid = h.pid;
    *hp = &h;
    bad = s_unusable(r, why, sizeof(why));
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    home = cairn_view_home(r->view, name);
    if (home != r->self)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "not home of %s: "
                                  "home is %u", name, home);
    /* a relay's retry of a wait that is still here: re-bind */
    s_hw_t *hw = s_hw_find(r, c->node, h.pid, h.tid, tag, in->msg_case);
    if (hw) {
        bool waiting = !(cw && cw->phase != CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT);
        if (waiting) {
            cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                                "superseded by a retry of the same request");
            hw->deferred = cairn_request_defer(req);
            return hw->deferred ? CAIRN_REPLY_DEFERRED : -ENOMEM;
        }
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE,
                            "superseded by a later phase of the same wait");
        hw->deferred = NULL;
        s_hw_free(hw);
    }
    hw = calloc(1, sizeof(*hw));
    if (!hw)
        return -ENOMEM;
    hw->cookie = COOKIE_HW;
    hw->r = r;
    hw->type = in->msg_case;
    hw->node = c->node;
    hw->pid = h.pid;
    hw->tid = h.tid;
    hw->tag = tag;

    home_result_t hr;
    int k = s_home_exec(r, &q, c->uid, hw, &hr);
    if (k < 0) {
        free(hw);
        return k;
    }
    if (k == HOME_DONE) {
        free(hw);
        if (hr.code != CAIRN_OK)
            return cairn_request_fail(req, hr.code, "%s", hr.message);
        s_rep_t *reply = (s_rep_t *)cairn_request_reply(req);
        s_op_t fake = { 0 };
        fake.req = &q;
        s_outcome_from_home(&fake.out, &hr, r->self);
        return s_op_fill_reply(&fake, reply, s_req_alloc, req) < 0 ? -ENOMEM
                                                                  : CAIRN_REPLY_NOW;
    }
    hw->deferred = cairn_request_defer(req);
    if (!hw->deferred) {
        home_cancel(r->home, hw);
        free(hw);
        return -ENOMEM;
    }
    hw->next = r->hws;
    r->hws = hw;
    if (timeout > 0) {
        hw->timeout_ms = (uint64_t)timeout;
        hw->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                         (uint64_t)timeout, 0, s_on_hw_timeout, hw);
    } else {
        hw->timer = -1;   /* waited: marks a grant after a wait for the log */
    }
    return CAIRN_REPLY_DEFERRED;
}

/* ---- relay side: the handlers' common parts ------------------------------ */

/* The thread of a local caller: the request's word, else the process. */
static int32_t s_tid_of(const cairn_caller_t *c, const Cairn__Syncd__Holder *h)
{
    return h && h->tid > 0 ? h->tid : c->pid;
}

/* The Holder the relay fills for a local caller. */
static void s_local_holder(relay_t *r, const cairn_caller_t *c, int32_t tid,
                           Cairn__Syncd__Holder *h)
{
    cairn__syncd__holder__init(h);
    h->node = r->self;
    h->pid = c->pid;
    h->tid = tid;
    h->uid = c->uid;
}

/* A retry (same pid, tid, tag) of a request still on its way: the new
 * request takes over the op. */
static int s_rebind(relay_t *r, s_op_t *op, cairn_request_t *req,
                    int64_t timeout_ms)
{
    if (op->deferred)
        cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE,
                            "superseded by a retry of the same request (same tag)");
    op->deferred = cairn_request_defer(req);
    if (!op->deferred)
        return -ENOMEM;
    if (op->step == STEP_SEND || op->step == STEP_PREPARE || op->step == STEP_WAIT) {
        op->deadline = s_deadline(timeout_ms);
        op->retry_until = s_retry_until(timeout_ms, op->deadline);
        if (op->at_local_home) {
            s_op_stop_timer(op);
            if (op->deadline != UINT64_MAX)
                op->timer = cairn_loop_add_timer(cairn_service_loop(r->svc),
                                                 cairn_ms_left(op->deadline), 0,
                                                 s_on_op_timer, op);
        }
    }
    return CAIRN_REPLY_DEFERRED;
}

/* Starts an op for a local caller's request `q` (holder filled). */
static int s_relay_op(relay_t *r, cairn_request_t *req, const s_req_t *q,
                      int32_t tid, uint64_t tag, int64_t timeout_ms, int step,
                      bool cache_ok, bool one_phase)
{
    char why[128];
    const char *bad = s_unusable(r, why, sizeof(why));
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    s_op_t *op = s_op_new(r, req, q, tid, tag, timeout_ms);
    if (!op)
        return -ENOMEM;
    op->step = step;
    op->cache_ok = cache_ok;
    op->one_phase = one_phase;
    s_op_dispatch(op);
    return s_op_handler_end(op, req);
}

static bool s_local(const cairn_request_t *req)
{
    return cairn_request_caller((cairn_request_t *)req)->kind == CAIRN_CALLER_LOCAL;
}

/* ---- acquire --------------------------------------------------------------- */

static bool s_acquire_ok(const Cairn__Syncd__AcquireRequest *a, s_outcome_t *o)
{
    int want = s_kind_of_mode(a->mode);

    if (!s_name_ok(a->name, "acquire", o) || !s_timeout_ok(a->timeout_ms, o))
        return false;
    if (!want) {
        s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: mode %d is not "
                      "one of lock, read, write, sem", a->name, (int)a->mode);
        return false;
    }
    if (a->spec && a->spec->kind != 0 && a->spec->kind != (unsigned)want) {
        if (a->spec->kind < CAIRN__SYNCD__KIND__KIND_MUTEX ||
            a->spec->kind > CAIRN__SYNCD__KIND__KIND_CONDVAR)
            s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: unknown object "
                          "kind %d", a->name, (int)a->spec->kind);
        else
            s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: mode %s does "
                          "not fit a %s", a->name, s_mode_name(a->mode),
                          s_kind_name(a->spec->kind));
        return false;
    }
    if (a->mode == CAIRN__SYNCD__MODE__MODE_SEM && a->count > INT32_MAX) {
        s_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: count %u is too "
                      "large", a->name, a->count);
        return false;
    }
    return true;
}

/* The cache answered a local lock: GRANTED or USE_SLOT. */
static int s_reply_cached(relay_t *r, cairn_request_t *req, const char *name,
                          int k, const cache_slot_ref_t *ref, uint64_t token,
                          bool owner_died)
{
    Cairn__Syncd__AcquireReply *a = cairn_request_alloc(req, sizeof(*a));
    s_rep_t *reply = (s_rep_t *)cairn_request_reply(req);

    if (!a)
        return -ENOMEM;
    cairn__syncd__acquire_reply__init(a);
    a->home = cairn_view_home(r->view, name);
    a->cached = true;
    a->slot = ref->slot;
    a->slot_gen = ref->gen;
    a->table = cairn_request_strdup(req, ref->table);
    if (!a->table)
        return -ENOMEM;
    if (k == CACHE_GRANTED) {
        a->token = token;
        a->owner_died = owner_died;
    } else {
        a->use_slot = true;
    }
    reply->acquire_reply = a;
    reply->msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
    return CAIRN_REPLY_NOW;
}

int relay_handle_acquire(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__AcquireRequest *a = in->acquire;
    s_outcome_t o = { 0 };

    if (!s_acquire_ok(a, &o))
        return s_fail(req, &o);
    if (!s_local(req))
        return s_home_side(r, req);

    int32_t tid = s_tid_of(c, a->holder);
    s_op_t *op = s_op_by_tag(r, c->pid, tid, a->tag, in->msg_case);
    if (op)
        return s_rebind(r, op, req, a->timeout_ms);
    /* a retry after the grant's reply was lost: the same grant again */
    s_hold_t *h = a->tag ? s_hold_find(r, c->pid, tid, a->name, a->mode, NULL) : NULL;
    if (h && h->tag == a->tag) {
        Cairn__Syncd__AcquireReply *ar = cairn_request_alloc(req, sizeof(*ar));
        if (!ar)
            return -ENOMEM;
        cairn__syncd__acquire_reply__init(ar);
        ar->token = h->token;
        ar->owner_died = h->owner_died;
        ar->home = h->home;
        ((s_rep_t *)cairn_request_reply(req))->acquire_reply = ar;
        ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
        return CAIRN_REPLY_NOW;
    }
    char why[128];
    const char *bad = s_unusable(r, why, sizeof(why));
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);

    bool no_cache = a->spec && (a->spec->no_cache || a->spec->shared);
    if (a->mode == CAIRN__SYNCD__MODE__MODE_LOCK && !no_cache) {
        cache_slot_ref_t ref;
        uint64_t token = 0;
        bool died = false;
        int k = cache_acquire(r->cache, a->name, c->uid, c->pid, tid, &ref,
                              &token, &died);
        if (k == CACHE_GRANTED || k == CACHE_USE_SLOT)
            return s_reply_cached(r, req, a->name, k, &ref, token, died);
    }

    s_req_t q = *in;
    Cairn__Syncd__AcquireRequest ac = *a;
    Cairn__Syncd__Holder hd;
    Cairn__Syncd__Spec sp = CAIRN__SYNCD__SPEC__INIT;
    if (a->spec)
        sp = *a->spec;
    if (!sp.kind)
        sp.kind = s_kind_of_mode(a->mode);
    s_local_holder(r, c, tid, &hd);
    ac.holder = &hd;
    ac.spec = &sp;
    ac.cache_ok = false;
    if (ac.mode == CAIRN__SYNCD__MODE__MODE_SEM && !ac.count)
        ac.count = 1;
    q.acquire = &ac;
    bool cache_ok = a->mode == CAIRN__SYNCD__MODE__MODE_LOCK && !no_cache &&
                    cache_may_cache(r->cache, c->uid);
    return s_relay_op(r, req, &q, tid, a->tag, a->timeout_ms, STEP_SEND,
                      cache_ok, false);
}

/* ---- release, consistent, signal, destroy ----------------------------------- */

/* A request the relay carries to the home and answers with its reply. */
static int s_forward(relay_t *r, cairn_request_t *req, s_req_t *q, int32_t tid)
{
    return s_relay_op(r, req, q, tid, 0, 0, STEP_SEND, false, false);
}

/* Forwards a local client's request as it came, its `holder` filled in by
 * this relay (node, pid and uid from the kernel, the tid the client gave):
 * the common path of the requests that need nothing else of the relay
 * (consistent, cond_signal, destroy, declare). Every Request's message
 * has a `holder` field; it is found through the descriptors, so one
 * function serves them all. */
static int s_forward_filled(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    Cairn__Syncd__Holder *hd = cairn_request_alloc(req, sizeof(*hd));
    s_req_t q;
    ProtobufCMessage *m = s_copy_request(req, in, &q);
    Cairn__Syncd__Holder **hp = m ? s_member(m, "holder") : NULL;

    if (!m || !hd)
        return -ENOMEM;
    assert(hp);
    int32_t tid = s_tid_of(c, *hp);
    s_local_holder(r, c, tid, hd);
    *hp = hd;
    return s_forward(r, req, &q, tid);
}

int relay_handle_release(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__ReleaseRequest *rl = in->release;
    s_outcome_t o = { 0 };

    if (!s_name_ok(rl->name, "release", &o))
        return s_fail(req, &o);
    if (rl->mode > CAIRN__SYNCD__MODE__MODE_SEM)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "release %s: mode "
                                  "%d is not one of lock, read, write, sem",
                                  rl->name, (int)rl->mode);
    if (!s_local(req))
        return s_home_side(r, req);

    int32_t tid = s_tid_of(c, rl->holder);
    s_hold_t **link = NULL;
    s_hold_t *h;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);

    if (rl->mode == CAIRN__SYNCD__MODE__MODE_SEM) {
        /* a post: any thread of the process may give back its units; a
         * post without a wait goes to the home and waits for its word */
        s_proc_t *p = s_proc_find(r, c->pid);
        uint32_t count = rl->count ? rl->count : 1;
        h = NULL;
        for (s_hold_t **hp = p ? &p->holds : NULL; hp && *hp; hp = &(*hp)->next)
            if ((*hp)->mode == CAIRN__SYNCD__MODE__MODE_SEM &&
                strcmp((*hp)->name, rl->name) == 0 && (*hp)->count >= count) {
                link = hp;
                h = *hp;
                break;
            }
        if (!h) {
            s_req_t q = *in;
            Cairn__Syncd__ReleaseRequest rq = *rl;
            rq.holder = &hd;
            rq.count = count;
            q.release = &rq;
            return s_forward(r, req, &q, tid);
        }
        hd.tid = h->tid;
        s_release_async(r, h->home, rl->name, rl->mode, count, &hd, c);
        h->count -= count;
        if (!h->count) {
            *link = h->next;
            s_hold_free(h);
        }
        return CAIRN_REPLY_NOW;
    }
    h = s_hold_find(r, c->pid, tid, rl->name, rl->mode, &link);
    if (!h) {
        cache_entry_t e;
        if (cache_find(r->cache, rl->name, &e) && e.holder_pid == c->pid &&
            e.holder_tid == tid)
            return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                      SYNCD_MSG_NOT_HOLDER "%s is held through the "
                                      "node cache: unlock its word (slot)", rl->name);
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                  SYNCD_MSG_NOT_HOLDER "%s is not held%s%s by thread "
                                  "%d of process %d", rl->name,
                                  rl->mode ? " in mode " : "",
                                  rl->mode ? s_mode_name(rl->mode) : "", tid, c->pid);
    }
    s_release_async(r, h->home, rl->name, h->mode, h->count, &hd, c);
    *link = h->next;
    s_hold_free(h);
    return CAIRN_REPLY_NOW;
}

int relay_handle_consistent(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__ConsistentRequest *cs = in->consistent;
    s_outcome_t o = { 0 };

    if (!s_name_ok(cs->name, "consistent", &o))
        return s_fail(req, &o);
    if (!s_local(req))
        return s_home_side(r, req);
    int32_t tid = s_tid_of(c, cs->holder);
    if (!s_hold_find(r, c->pid, tid, cs->name, CAIRN__SYNCD__MODE__MODE_LOCK, NULL))
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                  SYNCD_MSG_NOT_HOLDER "%s is not held by thread "
                                  "%d of process %d", cs->name, tid, c->pid);
    return s_forward_filled(r, req);
}

/* A request that needs nothing of the relay but a valid name: the home's
 * side, or forwarded with its holder filled. */
static int s_plain(relay_t *r, cairn_request_t *req, const char *name,
                   const char *what)
{
    s_outcome_t o = { 0 };

    if (!s_name_ok(name, what, &o))
        return s_fail(req, &o);
    if (!s_local(req))
        return s_home_side(r, req);
    return s_forward_filled(r, req);
}

int relay_handle_cond_signal(relay_t *r, cairn_request_t *req)
{
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);

    return s_plain(r, req, in->cond_signal->name, "cond_signal");
}

int relay_handle_destroy(relay_t *r, cairn_request_t *req)
{
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);

    return s_plain(r, req, in->destroy->name, "destroy");
}

int relay_handle_declare(relay_t *r, cairn_request_t *req)
{
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__DeclareRequest *d = in->declare;
    s_outcome_t o = { 0 };

    if (!s_name_ok(d->name, "declare", &o))
        return s_fail(req, &o);
    if (!d->spec || d->spec->kind < CAIRN__SYNCD__KIND__KIND_MUTEX ||
        d->spec->kind > CAIRN__SYNCD__KIND__KIND_CONDVAR)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "declare %s: "
                                  "unknown object kind %d", d->name,
                                  d->spec ? (int)d->spec->kind : 0);
    if (d->spec->kind == CAIRN__SYNCD__KIND__KIND_BARRIER && d->spec->value < 1)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "declare %s: a "
                                  "barrier needs at least 1 party", d->name);
    if (!s_local(req))
        return s_home_side(r, req);
    return s_forward_filled(r, req);
}

/* ---- barrier, cond_wait --------------------------------------------------------- */

int relay_handle_barrier(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__BarrierRequest *b = in->barrier;
    s_outcome_t o = { 0 };

    if (!s_name_ok(b->name, "barrier", &o) || !s_timeout_ok(b->timeout_ms, &o))
        return s_fail(req, &o);
    if (b->parties < 1)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "barrier %s: "
                                  "parties must be at least 1", b->name);
    if (!s_local(req))
        return s_home_side(r, req);
    int32_t tid = s_tid_of(c, b->holder);
    s_op_t *op = s_op_by_tag(r, c->pid, tid, b->tag, in->msg_case);
    if (op)
        return s_rebind(r, op, req, b->timeout_ms);
    s_req_t q = *in;
    Cairn__Syncd__BarrierRequest bq = *b;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);
    bq.holder = &hd;
    q.barrier = &bq;
    return s_relay_op(r, req, &q, tid, b->tag, b->timeout_ms, STEP_SEND, false, false);
}

int relay_handle_cond_wait(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__CondWaitRequest *cw = in->cond_wait;
    s_outcome_t o = { 0 };

    if (!s_name_ok(cw->name, "cond_wait", &o) ||
        !s_name_ok(cw->mutex, "cond_wait (mutex)", &o) ||
        !s_timeout_ok(cw->timeout_ms, &o))
        return s_fail(req, &o);
    if (!s_local(req))
        return s_home_side(r, req);
    if (cw->phase > CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "cond_wait %s: "
                                  "unknown phase %d", cw->name, (int)cw->phase);
    int32_t tid = s_tid_of(c, cw->holder);
    s_op_t *op = s_op_by_tag(r, c->pid, tid, cw->tag, in->msg_case);
    if (op && op->one_phase && cw->phase != CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_ALL &&
        op->step != (int)cw->phase) {
        /* the next phase of a client-run wait: the previous one is over */
        op->inline_req = NULL;
        s_op_free(op);
        op = NULL;
    }
    if (op)
        return s_rebind(r, op, req, cw->timeout_ms);
    bool all = cw->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_ALL;
    if (all && !s_hold_find(r, c->pid, tid, cw->mutex, CAIRN__SYNCD__MODE__MODE_LOCK, NULL))
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                  SYNCD_MSG_NOT_HOLDER "cond_wait %s needs the "
                                  "mutex %s held by the calling thread (%d of "
                                  "process %d) through syncd; a mutex held on "
                                  "a cache word takes the phases one by one",
                                  cw->name, cw->mutex, tid, c->pid);
    s_req_t q = *in;
    Cairn__Syncd__CondWaitRequest cq = *cw;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);
    cq.holder = &hd;
    q.cond_wait = &cq;
    /* the step numbers of the phases are the phases' own */
    return s_relay_op(r, req, &q, tid, cw->tag, cw->timeout_ms,
                      all ? STEP_PREPARE : (int)cw->phase, false, !all);
}

/* ---- the node cache's requests ----------------------------------------------- */

int relay_handle_slot_release(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);

    if (!s_local(req))
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "slot_release "
                                  "comes from a process of this node");
    /* -ENOENT: nothing to do (the re-check timer would have found it) */
    cache_slot_released(r->cache, c->uid, in->slot_release->slot,
                        in->slot_release->slot_gen);
    Cairn__Syncd__ReleaseReply *rr = cairn_request_alloc(req, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    cairn__syncd__release_reply__init(rr);
    ((s_rep_t *)cairn_request_reply(req))->release_reply = rr;
    ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
    return CAIRN_REPLY_NOW;
}

int relay_handle_revoke(relay_t *r, cairn_request_t *req)
{
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const Cairn__Syncd__RevokeRequest *rv = in->revoke;
    Cairn__Syncd__RevokeReply *out;
    s_outcome_t o = { 0 };
    uint64_t last = 0;
    bool died = false, nr = false;

    if (!s_name_ok(rv->name, "revoke", &o))
        return s_fail(req, &o);
    int k = cache_revoke(r->cache, rv->name, rv->grant, &last, &died, &nr);
    cairn_log_debug("revoke-asked", "name=%s grant=%" PRIu64 " k=%d", rv->name,
                    rv->grant, k);
    if (k == 0 || (k == -ENOENT && s_cache_op_pending(r, rv->name, NULL))) {
        s_revoke_t *w = calloc(1, sizeof(*w));
        if (!w || !(w->name = strdup(rv->name))) {
            free(w);
            return -ENOMEM;
        }
        w->grant = rv->grant;
        w->early = k != 0;
        w->deferred = cairn_request_defer(req);
        if (!w->deferred) {
            free(w->name);
            free(w);
            return -ENOMEM;
        }
        w->next = r->revokes;
        r->revokes = w;
        return CAIRN_REPLY_DEFERRED;
    }
    out = cairn_request_alloc(req, sizeof(*out));
    if (!out)
        return -ENOMEM;
    cairn__syncd__revoke_reply__init(out);
    if (k == 1) {   /* -ENOENT / -ESTALE: given back already, nothing to say */
        out->last_token = last;
        out->owner_died = died;
        out->not_recoverable = nr;
        cairn_log_info("revoked", "name=%s grant=%" PRIu64 " last_token=%" PRIu64,
                       rv->name, rv->grant, last);
    }
    ((s_rep_t *)cairn_request_reply(req))->revoke_reply = out;
    ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_REVOKE_REPLY;
    return CAIRN_REPLY_NOW;
}

static int s_reply_empty(cairn_request_t *req)
{
    Cairn__Syncd__ReleaseReply *rr = cairn_request_alloc(req, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    cairn__syncd__release_reply__init(rr);
    ((s_rep_t *)cairn_request_reply(req))->release_reply = rr;
    ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
    return CAIRN_REPLY_NOW;
}

/* ---- process exits ---------------------------------------------------------------- */

static void s_add_node(uint32_t *set, size_t *n, uint32_t node)
{
    if (!node)
        return;
    for (size_t i = 0; i < *n; i++)
        if (set[i] == node)
            return;
    if (*n < CAIRN_VIEW_MAX_NODES)
        set[(*n)++] = node;
}

static void s_on_gone_reply(void *userdata, uint32_t node, int code,
                            const char *message, ProtobufCMessage *reply)
{
    if (code != CAIRN_OK)
        cairn_log_warn(0, "gone", "node=%u msg=\"%s\", ignoring (a new home "
                       "learns from the announcements)", node, message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Tells every home concerned that pid exited; drops its records. */
static void s_process_exit(relay_t *r, int32_t pid)
{
    s_proc_t *p = s_proc_find(r, pid);
    uint32_t homes[CAIRN_VIEW_MAX_NODES];
    size_t nh = 0, n_ops = 0, n_holds = 0;

    cache_process_exit(r->cache, pid);
    for (s_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (op->pid != pid)
            continue;
        s_add_node(homes, &nh, op->home);
        n_ops++;
        s_op_free(op);
    }
    for (s_hold_t *h = p ? p->holds : NULL; h; h = h->next) {
        uint32_t home = cairn_view_home(r->view, h->name);
        s_add_node(homes, &nh, home ? home : h->home);
        n_holds++;
    }
    if (p)
        s_proc_free(r, p);
    home_gone(r->home, r->self, &pid, 1);
    s_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__GoneRequest g = CAIRN__SYNCD__GONE_REQUEST__INIT;
    g.pids = &pid;
    g.n_pids = 1;
    req.gone = &g;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_GONE;
    for (size_t i = 0; i < nh; i++) {
        const char *ep = homes[i] == r->self ? NULL : cairn_view_endpoint(r->view, homes[i]);
        if (ep)
            cairn_peers_call(r->peers, homes[i], ep, &req.base, CALL_MS,
                             s_on_gone_reply, NULL);
    }
    if (n_ops || n_holds)
        cairn_log_info("gone", "pid=%d holdings=%zu waits=%zu homes=%zu", pid,
                       n_holds, n_ops, nh);
}

int relay_handle_gone(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const Cairn__Syncd__GoneRequest *g = ((const s_req_t *)cairn_request_body(req))->gone;
    uint32_t node = c->kind == CAIRN_CALLER_LOCAL ? r->self : c->node;

    if (!node)
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "gone: the "
                                  "sender is not a member node");
    if (g->n_pids == 0)
        return s_reply_empty(req);
    s_hw_drop(r, node, g->pids, g->n_pids, "the process exited");
    home_gone(r->home, node, g->pids, g->n_pids);
    cairn_log_info("gone", "node=%u pids=%zu first=%d", node, g->n_pids, g->pids[0]);
    return s_reply_empty(req);
}

/* ---- memory for messages built outside a request -------------------------- */

typedef struct s_arena {
    void **chunks;
    size_t n, cap;
} s_arena_t;

static void *s_arena_alloc(void *ctx, size_t size)
{
    s_arena_t *a = ctx;
    void *p;
    if (CAIRN_GROW(a->chunks, a->cap, a->n + 1, 16) < 0 || !(p = calloc(1, size ? size : 1)))
        return NULL;
    a->chunks[a->n++] = p;
    return p;
}

static void s_arena_clear(s_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->chunks[i]);
    free(a->chunks);
    *a = (s_arena_t){ 0 };
}

/* ---- announcements and recovery -------------------------------------------- */

static void s_check_recovered(relay_t *r);
static void s_reannounce(relay_t *r, uint32_t node);

int relay_handle_announce(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const Cairn__Syncd__AnnounceRequest *an =
        ((const s_req_t *)cairn_request_body(req))->announce;
    uint32_t from = c->kind == CAIRN_CALLER_LOCAL ? r->self : c->node;
    size_t bad = 0;

    if (!from)
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "announce: the "
                                  "sender is not a member node");
    for (size_t i = 0; i < an->n_objects; i++) {
        cairn_error_t err;
        const Cairn__Syncd__ObjectState *st = an->objects[i];
        if (!st || strnlen(st->name ? st->name : "", NAME_MAX_BYTES + 1) - 1 >= NAME_MAX_BYTES) {
            bad++;
            continue;
        }
        int k = home_import(r->home, from, st, &err);
        if (k < 0) {
            bad++;
            cairn_log_warn(0, "announce", "from=%u name=%s msg=\"%s\", ignoring",
                           from, st->name, err.message);
        } else if (k == 1) {
            cairn_log_warn(0, "announce-conflict", "from=%u name=%s msg=\"%s\"",
                           from, st->name, err.message);
        }
    }
    if (an->done && from <= CAIRN_VIEW_MAX_NODES) {
        bool again = from != r->self && an->view == r->view_id &&
                     r->done_view[from] == an->view && cairn_view_alive(r->view, from);
        r->done_view[from] = an->view;
        if (again)
            s_reannounce(r, from);
        s_check_recovered(r);
    }
    if (bad && bad == an->n_objects)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "announce: none "
                                  "of the %zu objects could be taken", bad);
    return s_reply_empty(req);
}

static void s_recovered(relay_t *r, const char *how)
{
    char missing[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < r->n_members; i++)
        if (r->done_view[r->members[i]] != r->view_id && len < sizeof(missing) - 8)
            len += (size_t)snprintf(missing + len, sizeof(missing) - len, "%s%u",
                                    len ? "," : "", r->members[i]);
    r->recovering = false;
    home_set_recovering(r->home, false);
    if (r->recover_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), r->recover_timer);
    r->recover_timer = 0;
    cairn_log_info("recovery-done", "view=%016" PRIx64 " objects=%zu how=%s%s%s",
                   r->view_id, home_count(r->home), how, len ? " missing=" : "", missing);
}

static void s_check_recovered(relay_t *r)
{
    if (!r->recovering)
        return;
    for (size_t i = 0; i < r->n_members; i++)
        if (r->done_view[r->members[i]] != r->view_id)
            return;
    s_recovered(r, "all-done");
}

static int s_on_recover_timeout(cairn_loop_t *loop, int64_t id, void *userdata)
{
    relay_t *r = userdata;
    r->recover_timer = 0;
    if (r->recovering)
        s_recovered(r, "timeout");
    return 0;
}

/* Objects to announce, grouped by their new home. */
typedef struct s_group {
    Cairn__Syncd__ObjectState **objs[CAIRN_VIEW_MAX_NODES + 1];
    size_t n[CAIRN_VIEW_MAX_NODES + 1], cap[CAIRN_VIEW_MAX_NODES + 1];
} s_group_t;

static void s_group_add(s_group_t *g, uint32_t node, Cairn__Syncd__ObjectState *st)
{
    if (!node || node > CAIRN_VIEW_MAX_NODES || !st)
        return;
    cairn_log_debug("announce-object", "to=%u name=%s holders=%zu holder_pid=%d "
                    "last_token=%" PRIu64 " cached_at=%u grant=%" PRIu64
                    " authoritative=%d", node, st->name, st->n_holders,
                    st->n_holders ? st->holders[0]->holder->pid : 0,
                    st->last_token, st->cached_at, st->cache_grant,
                    st->authoritative);
    if (CAIRN_GROW(g->objs[node], g->cap[node], g->n[node] + 1, 8) == 0)
        g->objs[node][g->n[node]++] = st;
}

static void s_group_free(s_group_t *g)
{
    for (size_t i = 0; i <= CAIRN_VIEW_MAX_NODES; i++)
        free(g->objs[i]);
}

/* What a holding is, as an announcement. */
static Cairn__Syncd__ObjectState *s_state_of_hold(relay_t *r, const s_proc_t *p,
                                                  const s_hold_t *h, s_arena_t *a)
{
    Cairn__Syncd__ObjectState *st = s_arena_alloc(a, sizeof(*st));
    Cairn__Syncd__Spec *sp = s_arena_alloc(a, sizeof(*sp));
    Cairn__Syncd__Grant *g = s_arena_alloc(a, sizeof(*g));
    Cairn__Syncd__Grant **gs = s_arena_alloc(a, sizeof(*gs));
    Cairn__Syncd__Holder *hd = s_arena_alloc(a, sizeof(*hd));

    if (!st || !sp || !g || !gs || !hd)
        return NULL;
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(sp);
    cairn__syncd__grant__init(g);
    cairn__syncd__holder__init(hd);
    sp->kind = h->kind;
    sp->value = h->value;
    sp->shared = h->shared;
    sp->no_cache = h->no_cache;
    hd->node = r->self;
    hd->pid = p->pid;
    hd->tid = h->tid;
    hd->uid = h->uid;
    g->holder = hd;
    g->mode = h->mode;
    g->token = h->token;
    g->count = h->count;
    gs[0] = g;
    st->name = h->name;
    st->spec = sp;
    st->owner_uid = h->uid;
    st->holders = gs;
    st->n_holders = 1;
    st->last_token = h->token;
    st->owner_died = h->owner_died;
    return st;
}

typedef struct s_cache_ctx {
    relay_t *r;
    s_group_t *g;
    s_arena_t *a;
} s_cache_ctx_t;

/* A cached mutex, as an announcement to its home. */
static void s_announce_cache(void *ctx, const cache_entry_t *e)
{
    s_cache_ctx_t *cc = ctx;
    relay_t *r = cc->r;
    Cairn__Syncd__ObjectState *st = s_arena_alloc(cc->a, sizeof(*st));
    Cairn__Syncd__Spec *sp = s_arena_alloc(cc->a, sizeof(*sp));
    char *name = s_arena_alloc(cc->a, strlen(e->name) + 1);

    if (!st || !sp || !name)
        return;
    strcpy(name, e->name);
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(sp);
    sp->kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
    st->name = name;
    st->spec = sp;
    st->owner_uid = e->uid;
    st->last_token = e->last_token;
    st->cached_at = r->self;
    st->cache_grant = e->grant;
    st->owner_died = e->owner_died;
    st->not_recoverable = e->not_recoverable;
    if (e->holder_pid) {
        Cairn__Syncd__Grant *g = s_arena_alloc(cc->a, sizeof(*g));
        Cairn__Syncd__Grant **gs = s_arena_alloc(cc->a, sizeof(*gs));
        Cairn__Syncd__Holder *hd = s_arena_alloc(cc->a, sizeof(*hd));
        if (g && gs && hd) {
            cairn__syncd__grant__init(g);
            cairn__syncd__holder__init(hd);
            hd->node = r->self;
            hd->pid = e->holder_pid;
            hd->tid = e->holder_tid;
            hd->uid = e->uid;
            g->holder = hd;
            g->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
            g->token = e->last_token;
            gs[0] = g;
            st->holders = gs;
            st->n_holders = 1;
        }
    }
    s_group_add(cc->g, cairn_view_home(r->view, e->name), st);
}

static bool s_keep(void *ctx, const char *name)
{
    relay_t *r = ctx;
    return cairn_view_home(r->view, name) == r->self;
}

static void s_on_announce_reply(void *userdata, uint32_t node, int code,
                                const char *message, ProtobufCMessage *reply)
{
    if (code != CAIRN_OK)
        cairn_log_warn(0, "announce", "node=%u msg=\"%s\"", node,
                       message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Sends member m the objects g holds for it, and done for our view. */
static void s_send_announce(relay_t *r, uint32_t m, const s_group_t *g)
{
    s_req_t req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__AnnounceRequest an = CAIRN__SYNCD__ANNOUNCE_REQUEST__INIT;
    const char *ep = cairn_view_endpoint(r->view, m);

    an.view = r->view_id;
    an.objects = g->objs[m];
    an.n_objects = g->n[m];
    an.done = true;
    req.announce = &an;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ANNOUNCE;
    if (!ep || cairn_peers_call(r->peers, m, ep, &req.base, CALL_MS,
                                s_on_announce_reply, NULL) < 0)
        cairn_log_warn(0, "announce", "node=%u msg=\"cannot send\", its "
                       "recovery ends by timeout", m);
}

/* Sends each alive member what it is now home of, and done. */
static void s_announce_all(relay_t *r, s_group_t *g)
{
    for (size_t i = 0; i < r->n_members; i++) {
        uint32_t m = r->members[i];
        if (m == r->self) {
            for (size_t k = 0; k < g->n[m]; k++) {
                cairn_error_t err;
                if (home_import(r->home, m, g->objs[m][k], &err) != 0)
                    cairn_log_warn(0, "announce", "name=%s msg=\"%s\"",
                                   g->objs[m][k]->name, err.message);
            }
            r->done_view[m] = r->view_id;
            continue;
        }
        s_send_announce(r, m, g);
    }
}

/* A member that said done for our view twice restarted (its syncd, not
 * its node: the view did not change) and lost its objects' state: what
 * we hold of objects it is home of, and done, go to it again, and our
 * waits there are sent again. */
static void s_reannounce(relay_t *r, uint32_t node)
{
    s_group_t *g = calloc(1, sizeof(*g));
    s_arena_t a = { 0 };

    if (!g)
        return;
    for (s_proc_t *p = r->procs; p; p = p->next)
        for (s_hold_t *h = p->holds; h; h = h->next)
            if (cairn_view_home(r->view, h->name) == node)
                s_group_add(g, node, s_state_of_hold(r, p, h, &a));
    s_cache_ctx_t cc = { r, g, &a };
    cache_each(r->cache, s_announce_cache, &cc);
    cairn_log_info("reannounce", "node=%u objects=%zu msg=\"it said done for "
                   "this view again: restarted\"", node, g->n[node]);
    s_send_announce(r, node, g);
    s_group_free(g);
    free(g);
    s_arena_clear(&a);
    for (s_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (!op->finished && !op->at_local_home && op->timer <= 0 &&
            op->home == node && op->target)
            s_op_dispatch(op);
    }
}

/* Ops whose home changed go to the new one; condvar waits whose home died
 * end (a spurious wakeup). */
static void s_resend_ops(relay_t *r, const uint32_t *dead, size_t n_dead)
{
    for (s_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (op->finished || op->at_local_home || op->timer > 0 || !op->home ||
            !op->target)
            continue;
        bool died = false;
        for (size_t i = 0; i < n_dead; i++)
            died = died || dead[i] == op->home;
        if (died && op->step == STEP_WAIT) {
            s_outcome_t o = { .code = CAIRN_OK, .home = op->home };
            op->attempt = 0;
            cairn_log_info("cond-wake", "name=%s pid=%d msg=\"home %u died: "
                           "spurious wakeup\"", op->target, op->pid, op->home);
            s_op_result(op, &o);
            continue;
        }
        if (cairn_view_home(r->view, op->target) != op->home)
            s_op_dispatch(op);
    }
}

static bool s_in(const uint32_t *set, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == x)
            return true;
    return false;
}

/* view.c: the alive set changed. */
static void s_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    relay_t *r = userdata;
    uint32_t now[CAIRN_VIEW_MAX_NODES], dead[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, now), n_dead = 0;
    s_group_t *g = calloc(1, sizeof(*g));
    s_arena_t a = { 0 };

    for (size_t i = 0; i < r->n_members; i++)
        if (!s_in(now, n, r->members[i]))
            dead[n_dead++] = r->members[i];
    memcpy(r->members, now, n * sizeof(now[0]));
    r->n_members = n;
    r->view_id = new_view;
    cairn_log_info("view", "view=%016" PRIx64 " members=%zu dead=%zu quorum=%d",
                   new_view, n, n_dead, cairn_view_quorum(r->view));
    for (size_t i = 0; i < n_dead; i++) {
        s_hw_drop(r, dead[i], NULL, 0, "the node is dead");
        home_node_dead(r->home, dead[i]);
        cairn_peers_forget(r->peers, dead[i]);
        cairn_log_info("failover", "node=%u msg=\"dead or left: its holdings "
                       "released owner-died, its objects move\"", dead[i]);
    }
    if (!g) {
        cairn_log_err(0, "view", "msg=\"out of memory: no announcements\"");
        return;
    }
    if (!cairn_view_quorum(r->view)) {
        cache_drop_all(r->cache);
        free(g);
        return;
    }
    /* objects no longer ours: their state to their new homes */
    Cairn__Syncd__ObjectState **states = NULL;
    size_t ns = 0;
    if (home_hand_over(r->home, s_keep, r, &states, &ns, s_arena_alloc, &a) < 0)
        cairn_log_err(0, "hand-over", "msg=\"out of memory\"");
    for (size_t i = 0; i < ns; i++)
        s_group_add(g, cairn_view_home(r->view, states[i]->name), states[i]);
    if (ns)
        cairn_log_info("hand-over", "objects=%zu", ns);
    /* local holdings whose home changed */
    for (s_proc_t *p = r->procs; p; p = p->next)
        for (s_hold_t *h = p->holds; h; h = h->next) {
            uint32_t home = cairn_view_home(r->view, h->name);
            if (home == h->home)
                continue;
            h->home = home;
            s_group_add(g, home, s_state_of_hold(r, p, h, &a));
        }
    s_cache_ctx_t cc = { r, g, &a };
    cache_each(r->cache, s_announce_cache, &cc);
    r->recovering = true;
    home_set_recovering(r->home, true);
    s_announce_all(r, g);
    s_group_free(g);
    free(g);
    s_arena_clear(&a);
    s_resend_ops(r, dead, n_dead);
    if (r->recover_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), r->recover_timer);
    r->recover_timer = cairn_loop_add_timer(cairn_service_loop(r->svc), RECOVER_MS,
                                            0, s_on_recover_timeout, r);
    s_check_recovered(r);
}

/* ---- ls and show -------------------------------------------------------------- */

/* Whether uid may see an object. */
static bool s_may_see(uint32_t uid, const Cairn__Syncd__ObjectInfo *info)
{
    return uid == 0 || info->shared || info->owner_uid == uid;
}

/* What the cache of this node adds to an object's info. */
static void s_enrich(relay_t *r, Cairn__Syncd__ObjectInfo *info,
                     home_alloc_fn alloc, void *ctx)
{
    cache_entry_t e;
    if (info->cached_at != r->self || !cache_find(r->cache, info->name, &e))
        return;
    if (e.last_token > info->token)
        info->token = e.last_token;
    if (!e.holder_pid) {
        info->state = (char *)(e.not_recoverable ? "not-recoverable" :
                               e.owner_died ? "owner-died" : "cached");
        return;
    }
    Cairn__Syncd__Grant *g = alloc(ctx, sizeof(*g));
    Cairn__Syncd__Grant **gs = alloc(ctx, sizeof(*gs));
    Cairn__Syncd__Holder *hd = alloc(ctx, sizeof(*hd));
    if (!g || !gs || !hd)
        return;
    cairn__syncd__grant__init(g);
    cairn__syncd__holder__init(hd);
    hd->node = r->self;
    hd->pid = e.holder_pid;
    hd->tid = e.holder_tid;
    hd->uid = e.uid;
    g->holder = hd;
    g->mode = CAIRN__SYNCD__MODE__MODE_LOCK;
    g->token = e.last_token;
    gs[0] = g;
    info->holders = gs;
    info->n_holders = 1;
    info->state = (char *)"held";
}

/* The objects homed here that uid may see, into *ret (alloc). */
static int s_local_objects(relay_t *r, uint32_t uid, Cairn__Syncd__ObjectInfo ***ret,
                           size_t *ret_n, home_alloc_fn alloc, void *ctx)
{
    const char **names = NULL;
    size_t n = 0, k = 0;
    int e = home_names(r->home, uid, &names, &n, alloc, ctx);
    if (e < 0)
        return e;
    Cairn__Syncd__ObjectInfo **v = alloc(ctx, (n ? n : 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cairn__Syncd__ObjectInfo *info = alloc(ctx, sizeof(*info));
        if (!info)
            return -ENOMEM;
        cairn__syncd__object_info__init(info);
        if (!home_show(r->home, names[i], info, alloc, ctx) || !s_may_see(uid, info))
            continue;
        s_enrich(r, info, alloc, ctx);
        v[k++] = info;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

int relay_handle_show(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    const char *name = in->show->name;
    s_outcome_t o = { 0 };
    char why[128];
    const char *bad;

    if (!s_name_ok(name, "show", &o))
        return s_fail(req, &o);
    if ((bad = s_unusable(r, why, sizeof(why))))
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    uint32_t home = cairn_view_home(r->view, name);
    if (home != r->self) {
        if (!s_local(req))
            return cairn_request_fail(req, CAIRN_UNAVAILABLE, "not home of %s: "
                                      "home is %u", name, home);
        return s_forward(r, req, (s_req_t *)in, c->pid);
    }
    Cairn__Syncd__ObjectInfo *info = cairn_request_alloc(req, sizeof(*info));
    Cairn__Syncd__ShowReply *sr = cairn_request_alloc(req, sizeof(*sr));
    if (!info || !sr)
        return -ENOMEM;
    cairn__syncd__object_info__init(info);
    cairn__syncd__show_reply__init(sr);
    if (!home_show(r->home, name, info, s_req_alloc, req) ||
        !s_may_see(s_view_uid(c), info))
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "no object %s%s", name,
                                  r->recovering ? " (this home is recovering: "
                                  "try again in a moment)" : "");
    s_enrich(r, info, s_req_alloc, req);
    sr->object = info;
    ((s_rep_t *)cairn_request_reply(req))->show_reply = sr;
    ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_SHOW_REPLY;
    return CAIRN_REPLY_NOW;
}

static s_ls_t *s_ls_find(relay_t *r, uint64_t id)
{
    for (s_ls_t *l = r->lss; l; l = l->next)
        if (l->id == id)
            return l;
    return NULL;
}

static void s_ls_free(relay_t *r, s_ls_t *l)
{
    for (s_ls_t **pp = &r->lss; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    if (l->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), l->timer);
    if (l->deferred)
        cairn_deferred_fail(r->svc, l->deferred, CAIRN_UNAVAILABLE,
                            "syncd dropped the request");
    for (size_t i = 0; i < l->n_replies; i++)
        protobuf_c_message_free_unpacked(&l->replies[i]->base, NULL);
    free(l->replies);
    s_arena_t a = { .chunks = l->chunks, .n = l->n_chunks, .cap = l->cap_chunks };
    s_arena_clear(&a);
    free(l);
}

static int s_cmp_info(const void *x, const void *y)
{
    const Cairn__Syncd__ObjectInfo *a = *(Cairn__Syncd__ObjectInfo *const *)x;
    const Cairn__Syncd__ObjectInfo *b = *(Cairn__Syncd__ObjectInfo *const *)y;
    return strcmp(a->name, b->name);
}

/* Every member answered or the time is up: the merged list. */
static void s_ls_finish(relay_t *r, s_ls_t *l)
{
    s_arena_t a = { .chunks = l->chunks, .n = l->n_chunks, .cap = l->cap_chunks };
    size_t total = l->n_own, k = 0, nu = 0;
    for (size_t i = 0; i < l->n_replies; i++)
        total += l->replies[i]->ls_reply ? l->replies[i]->ls_reply->n_objects : 0;
    s_rep_t reply = CAIRN__SYNCD__REPLY__INIT;
    Cairn__Syncd__LsReply lr = CAIRN__SYNCD__LS_REPLY__INIT;
    Cairn__Syncd__ObjectInfo **v = s_arena_alloc(&a, (total + 1) * sizeof(*v));
    uint32_t *un = s_arena_alloc(&a, (l->n_asked + 1) * sizeof(*un));
    if (!v || !un) {
        l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
        cairn_deferred_fail(r->svc, l->deferred, CAIRN_INTERNAL, "out of memory");
        l->deferred = NULL;
        s_ls_free(r, l);
        return;
    }
    for (size_t i = 0; i < l->n_own; i++)
        v[k++] = l->own[i];
    for (size_t i = 0; i < l->n_replies; i++)
        for (size_t j = 0; l->replies[i]->ls_reply && j < l->replies[i]->ls_reply->n_objects; j++)
            v[k++] = l->replies[i]->ls_reply->objects[j];
    qsort(v, k, sizeof(*v), s_cmp_info);
    for (size_t i = 0; i < l->n_asked; i++)
        if (!l->answered[i])
            un[nu++] = l->asked[i];
    lr.objects = v;
    lr.n_objects = k;
    lr.unreachable = un;
    lr.n_unreachable = nu;
    reply.ls_reply = &lr;
    reply.msg_case = CAIRN__SYNCD__REPLY__MSG_LS_REPLY;
    l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
    cairn_deferred_reply(r->svc, l->deferred, &reply.base);
    l->deferred = NULL;
    s_ls_free(r, l);
}

static void s_on_ls_reply(void *userdata, uint32_t node, int code,
                          const char *message, ProtobufCMessage *reply)
{
    relay_t *r = s_relay_of_peers;
    s_ls_t *l = r ? s_ls_find(r, (uint64_t)(uintptr_t)userdata) : NULL;
    s_rep_t *rep = (s_rep_t *)reply;

    if (!l) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    for (size_t i = 0; i < l->n_asked; i++)
        if (l->asked[i] == node && code == CAIRN_OK)
            l->answered[i] = true;
    if (code == CAIRN_OK && rep->msg_case == CAIRN__SYNCD__REPLY__MSG_LS_REPLY &&
        CAIRN_GROW(l->replies, l->cap_replies, l->n_replies + 1, 8) == 0)
        l->replies[l->n_replies++] = rep;
    else if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (--l->pending == 0)
        s_ls_finish(r, l);
}

int relay_handle_ls(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const s_req_t *in = (const s_req_t *)cairn_request_body(req);
    uint32_t uid = s_view_uid(c);
    char why[128];
    const char *bad = s_unusable(r, why, sizeof(why));

    if (in->ls->local_only || !s_local(req)) {
        Cairn__Syncd__LsReply *lr = cairn_request_alloc(req, sizeof(*lr));
        if (!lr)
            return -ENOMEM;
        cairn__syncd__ls_reply__init(lr);
        if (s_local_objects(r, uid, &lr->objects, &lr->n_objects, s_req_alloc, req) < 0)
            return -ENOMEM;
        ((s_rep_t *)cairn_request_reply(req))->ls_reply = lr;
        ((s_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_LS_REPLY;
        return CAIRN_REPLY_NOW;
    }
    if (bad)
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "%s", bad);
    s_ls_t *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->id = s_next_id(r);
    l->next = r->lss;
    r->lss = l;
    /* this node's own objects, kept in the ls's chunks */
    s_arena_t a = { 0 };
    if (s_local_objects(r, uid, &l->own, &l->n_own, s_arena_alloc, &a) < 0)
        l->n_own = 0;
    l->chunks = a.chunks, l->n_chunks = a.n, l->cap_chunks = a.cap;
    l->deferred = cairn_request_defer(req);
    if (!l->deferred) {
        s_ls_free(r, l);
        return -ENOMEM;
    }
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, members);
    s_req_t q = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__LsRequest lq = CAIRN__SYNCD__LS_REQUEST__INIT;
    lq.local_only = true;
    q.ls = &lq;
    q.msg_case = CAIRN__SYNCD__REQUEST__MSG_LS;
    for (size_t i = 0; i < n; i++) {
        if (members[i] == r->self)
            continue;
        const char *ep = cairn_view_endpoint(r->view, members[i]);
        l->asked[l->n_asked++] = members[i];
        if (ep && cairn_peers_call_as(r->peers, members[i], ep, &q.base, LS_MS, c,
                                      s_on_ls_reply, (void *)(uintptr_t)l->id) == 0)
            l->pending++;
    }
    if (l->pending == 0)
        s_ls_finish(r, l);
    return CAIRN_REPLY_DEFERRED;
}

/* ---- lifecycle ----------------------------------------------------------------- */

relay_t *relay_new(cairn_service_t *svc, cairn_error_t *err)
{
    relay_t *r = calloc(1, sizeof(*r));
    if (!r) {
        cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
        return NULL;
    }
    r->svc = svc;
    r->self = cairn_service_node(svc)->id;
    r->next_id = (uint64_t)cairn_now_ms() << 20;
    r->view = cairn_view_new(svc, "syncd", s_on_view, r);
    r->home = home_new(r->self, &s_home_ops, r);
    r->peers = cairn_peers_new(svc, "syncd", &cairn__syncd__reply__descriptor);
    r->cache = cache_new(svc, s_on_cache_revoked, r, err);
    if (!r->view || !r->home || !r->peers) {
        cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
        return relay_free(r);
    }
    if (!r->cache) {
        cairn_log_err(0, "cache", "msg=\"%s\"", err->message);
        return relay_free(r);
    }
    s_relay_of_peers = r;
    return r;
}

int relay_start(relay_t *r)
{
    return cairn_view_start(r->view);
}

void relay_stop(relay_t *r)
{
    if (!r || r->stopping)
        return;
    r->stopping = true;
    while (r->ops) {
        s_op_t *op = r->ops;
        if (op->deferred) {
            cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
            op->deferred = NULL;
        }
        s_op_free(op);
    }
    while (r->hws) {
        s_hw_t *hw = r->hws;
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
        hw->deferred = NULL;
        s_hw_free(hw);
    }
    while (r->lss)
        s_ls_free(r, r->lss);
    while (r->revokes) {
        s_revoke_t *w = r->revokes;
        r->revokes = w->next;
        if (w->deferred)
            cairn_deferred_fail(r->svc, w->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
        free(w->name);
        free(w);
    }
    while (r->rels)
        s_retry_drop(r, &r->rels, r->rels);
    if (r->cache)
        cache_drop_all(r->cache);
    /* the skeleton ends the zmq context after this returns: every socket
     * of ours (the peers' DEALERs, the view's SUB) must be closed by then */
    r->peers = cairn_peers_free(r->peers);
    r->view = cairn_view_free(r->view);
}

relay_t *relay_free(relay_t *r)
{
    if (!r)
        return NULL;
    relay_stop(r);
    while (r->procs)
        s_proc_free(r, r->procs);
    while (r->out_revokes)
        s_retry_drop(r, &r->out_revokes, r->out_revokes);
    for (size_t i = 0; i < r->n_jobs; i++)
        free(r->jobs[i].name);
    free(r->jobs);
    r->peers = cairn_peers_free(r->peers);
    r->cache = cache_free(r->cache);
    r->home = home_free(r->home);
    r->view = cairn_view_free(r->view);
    if (s_relay_of_peers == r)
        s_relay_of_peers = NULL;
    free(r);
    return NULL;
}
