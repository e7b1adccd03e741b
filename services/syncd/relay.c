/* relay.c - syncd's relay: its lifecycle, the requests of this node's
 * processes (the client side), what each process holds, and process exits.
 * The other parts of the relay are relay-op.c (a request on its way to a
 * home), relay-home.c (the home side and revokes), relay-failover.c
 * (membership changes) and relay-ls.c (ls, show); relay-private.h is what
 * they share.
 *
 * Design. Every client request is told apart by its caller: a LOCAL caller
 * (ipc, SO_PEERCRED) is one of this node's processes, and the relay fills
 * the Holder for it (node = self, pid and uid from the kernel, tid from
 * the request) and carries the request to the object's home as an op
 * (relay-op.c); a NODE caller is another node's relay, whose Holder
 * pid/tid is believed but whose node and uid are forced to what its CURVE
 * key and vouching say, and the request is served here, where the object
 * must be homed (relay_home_side, relay-home.c).
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
 * A condvar wait with PHASE_ALL is accepted only when the records show the
 * calling thread holds the mutex through syncd (else NOT_HOLDER); a mutex
 * held on a cache word takes the phases one by one (relay-op.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "relay-private.h"
#include "synctab/synctab.h"
#include "util/array.h"
#include "util/clock.h"

/* The one relay of this process (relay_of_peers). */
static relay_t *s_relay_of_peers;

/* ---- small helpers ----------------------------------------------------- */

relay_t *relay_of_peers(void)
{
    return s_relay_of_peers;
}

uint64_t relay_next_id(relay_t *r)
{
    return ++r->next_id;
}

void relay_outcome_set(relay_outcome_t *o, int code, const char *fmt, ...)
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

bool relay_name_ok(const char *name, const char *what, relay_outcome_t *o)
{
    size_t n = name ? strnlen(name, NAME_MAX_BYTES + 1) : 0;
    if (n == 0) {
        relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "%s: a name is needed "
                          "(1..%d bytes)", what, NAME_MAX_BYTES);
        return false;
    }
    if (n > NAME_MAX_BYTES) {
        relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "%s: the name is %zu "
                          "bytes long, at most %d are allowed", what,
                          strlen(name), NAME_MAX_BYTES);
        return false;
    }
    return true;
}

static bool s_timeout_ok(int64_t t, relay_outcome_t *o)
{
    if (t >= -1)
        return true;
    relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "timeout_ms %" PRId64 " is "
                      "invalid: -1 waits forever, 0 tries once, > 0 waits at "
                      "most that many ms", t);
    return false;
}

const char *relay_unusable(relay_t *r, char *buf, size_t size)
{
    if (!cairn_view_known(r->view))
        return "membership unknown: clusterd of this node not answering yet";
    if (!cairn_view_quorum(r->view)) {
        snprintf(buf, size, "no quorum: %zu of %zu members alive",
                 cairn_view_alive_count(r->view),
                 cairn_view_known_count(r->view));
        return buf;
    }
    return NULL;
}

int relay_fail(cairn_request_t *req, const relay_outcome_t *o)
{
    return cairn_request_fail(req, o->code, "%s", o->message);
}

void *relay_req_alloc(void *ctx, size_t size)
{
    return cairn_request_alloc(ctx, size);
}

relay_retry_t *relay_retry_find(relay_retry_t *list, uint64_t id)
{
    while (list && list->id != id)
        list = list->next;
    return list;
}

void relay_retry_push(relay_retry_t **list, relay_retry_t *e)
{
    e->next = *list;
    *list = e;
}

void relay_retry_drop(relay_t *r, relay_retry_t **list, relay_retry_t *e)
{
    for (relay_retry_t **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    if (e->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(r->svc), e->timer);
    free(e->name);
    free(e);
}

int relay_reply_empty(cairn_request_t *req)
{
    Cairn__Syncd__ReleaseReply *rr = cairn_request_alloc(req, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    cairn__syncd__release_reply__init(rr);
    ((relay_rep_t *)cairn_request_reply(req))->release_reply = rr;
    ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
    return CAIRN_REPLY_NOW;
}

/* ---- memory for messages built outside a request ----------------------- */

void *relay_arena_alloc(void *ctx, size_t size)
{
    relay_arena_t *a = ctx;
    void *p;
    if (CAIRN_GROW(a->chunks, a->cap, a->n + 1, 16) < 0 || !(p = calloc(1, size ? size : 1)))
        return NULL;
    a->chunks[a->n++] = p;
    return p;
}

void relay_arena_clear(relay_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->chunks[i]);
    free(a->chunks);
    *a = (relay_arena_t){ 0 };
}

/* ---- process records --------------------------------------------------- */

static void s_process_exit(relay_t *r, int32_t pid);

static relay_proc_t *s_proc_find(relay_t *r, int32_t pid)
{
    for (relay_proc_t *p = r->procs; p; p = p->next)
        if (p->pid == pid)
            return p;
    return NULL;
}

static int s_on_pidfd(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata)
{
    relay_proc_t *p = userdata;
    s_process_exit(p->r, p->pid);
    return 0;
}

relay_proc_t *relay_proc_get(relay_t *r, int32_t pid)
{
    relay_proc_t *p = s_proc_find(r, pid);
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

void relay_hold_free(relay_hold_t *h)
{
    if (h) {
        free(h->name);
        free(h);
    }
}

static void s_proc_free(relay_t *r, relay_proc_t *p)
{
    for (relay_proc_t **pp = &r->procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    while (p->holds) {
        relay_hold_t *h = p->holds;
        p->holds = h->next;
        relay_hold_free(h);
    }
    cairn_loop_remove(cairn_service_loop(r->svc), p->watch);
    close(p->pidfd);
    free(p);
}

relay_hold_t *relay_hold_find(relay_t *r, int32_t pid, int32_t tid,
                              const char *name, int mode,
                              relay_hold_t ***ret_link)
{
    relay_proc_t *p = s_proc_find(r, pid);
    if (!p)
        return NULL;
    for (relay_hold_t **hp = &p->holds; *hp; hp = &(*hp)->next) {
        relay_hold_t *h = *hp;
        if (h->tid == tid && strcmp(h->name, name) == 0 &&
            (mode == 0 || h->mode == mode)) {
            if (ret_link)
                *ret_link = hp;
            return h;
        }
    }
    return NULL;
}

void relay_hold_add(relay_t *r, const relay_op_t *op, const relay_outcome_t *o)
{
    const Cairn__Syncd__AcquireRequest *a = op->req->acquire;
    relay_proc_t *p = relay_proc_get(r, op->pid);
    relay_hold_t *h = p ? calloc(1, sizeof(*h)) : NULL;

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

/* ---- relay side: the handlers' common parts ---------------------------- */

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

bool relay_is_local(const cairn_request_t *req)
{
    return cairn_request_caller((cairn_request_t *)req)->kind == CAIRN_CALLER_LOCAL;
}

/* ---- acquire ----------------------------------------------------------- */

static bool s_acquire_ok(const Cairn__Syncd__AcquireRequest *a,
                         relay_outcome_t *o)
{
    int want = s_kind_of_mode(a->mode);

    if (!relay_name_ok(a->name, "acquire", o) ||
        !s_timeout_ok(a->timeout_ms, o))
        return false;
    if (!want) {
        relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: mode %d is "
                          "not one of lock, read, write, sem", a->name,
                          (int)a->mode);
        return false;
    }
    if (a->spec && a->spec->kind != 0 && a->spec->kind != (unsigned)want) {
        if (a->spec->kind < CAIRN__SYNCD__KIND__KIND_MUTEX ||
            a->spec->kind > CAIRN__SYNCD__KIND__KIND_CONDVAR)
            relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: unknown "
                              "object kind %d", a->name, (int)a->spec->kind);
        else
            relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: mode %s "
                              "does not fit a %s", a->name,
                              s_mode_name(a->mode), s_kind_name(a->spec->kind));
        return false;
    }
    if (a->mode == CAIRN__SYNCD__MODE__MODE_SEM && a->count > INT32_MAX) {
        relay_outcome_set(o, CAIRN_INVALID_ARGUMENT, "acquire %s: count %u is "
                          "too large", a->name, a->count);
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
    relay_rep_t *reply = (relay_rep_t *)cairn_request_reply(req);

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
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__AcquireRequest *a = in->acquire;
    relay_outcome_t o = { 0 };

    if (!s_acquire_ok(a, &o))
        return relay_fail(req, &o);
    if (!relay_is_local(req))
        return relay_home_side(r, req);

    int32_t tid = s_tid_of(c, a->holder);
    relay_op_t *op = relay_op_by_tag(r, c->pid, tid, a->tag, in->msg_case);
    if (op)
        return relay_op_rebind(r, op, req, a->timeout_ms);
    /* a retry after the grant's reply was lost: the same grant again */
    relay_hold_t *h = a->tag ? relay_hold_find(r, c->pid, tid, a->name, a->mode, NULL) : NULL;
    if (h && h->tag == a->tag) {
        Cairn__Syncd__AcquireReply *ar = cairn_request_alloc(req, sizeof(*ar));
        if (!ar)
            return -ENOMEM;
        cairn__syncd__acquire_reply__init(ar);
        ar->token = h->token;
        ar->owner_died = h->owner_died;
        ar->home = h->home;
        ((relay_rep_t *)cairn_request_reply(req))->acquire_reply = ar;
        ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
        return CAIRN_REPLY_NOW;
    }
    char why[128];
    const char *bad = relay_unusable(r, why, sizeof(why));
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

    relay_req_t q = *in;
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
    return relay_op_start(r, req, &q, tid, a->tag, a->timeout_ms, STEP_SEND,
                          cache_ok, false);
}

/* ---- release, consistent, signal, destroy ------------------------------ */

int relay_forward(relay_t *r, cairn_request_t *req, relay_req_t *q, int32_t tid)
{
    return relay_op_start(r, req, q, tid, 0, 0, STEP_SEND, false, false);
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
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    Cairn__Syncd__Holder *hd = cairn_request_alloc(req, sizeof(*hd));
    relay_req_t q;
    ProtobufCMessage *m = relay_copy_request(req, in, &q);
    Cairn__Syncd__Holder **hp = m ? relay_member(m, "holder") : NULL;

    if (!m || !hd)
        return -ENOMEM;
    assert(hp);
    int32_t tid = s_tid_of(c, *hp);
    s_local_holder(r, c, tid, hd);
    *hp = hd;
    return relay_forward(r, req, &q, tid);
}

int relay_handle_release(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__ReleaseRequest *rl = in->release;
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(rl->name, "release", &o))
        return relay_fail(req, &o);
    if (rl->mode > CAIRN__SYNCD__MODE__MODE_SEM)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "release %s: mode "
                                  "%d is not one of lock, read, write, sem",
                                  rl->name, (int)rl->mode);
    if (!relay_is_local(req))
        return relay_home_side(r, req);

    int32_t tid = s_tid_of(c, rl->holder);
    relay_hold_t **link = NULL;
    relay_hold_t *h;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);

    if (rl->mode == CAIRN__SYNCD__MODE__MODE_SEM) {
        /* a post: any thread of the process may give back its units; a
         * post without a wait goes to the home and waits for its word */
        relay_proc_t *p = s_proc_find(r, c->pid);
        uint32_t count = rl->count ? rl->count : 1;
        h = NULL;
        for (relay_hold_t **hp = p ? &p->holds : NULL; hp && *hp;
             hp = &(*hp)->next)
            if ((*hp)->mode == CAIRN__SYNCD__MODE__MODE_SEM &&
                strcmp((*hp)->name, rl->name) == 0 && (*hp)->count >= count) {
                link = hp;
                h = *hp;
                break;
            }
        if (!h) {
            relay_req_t q = *in;
            Cairn__Syncd__ReleaseRequest rq = *rl;
            rq.holder = &hd;
            rq.count = count;
            q.release = &rq;
            return relay_forward(r, req, &q, tid);
        }
        hd.tid = h->tid;
        relay_release_async(r, h->home, rl->name, rl->mode, count, &hd, c);
        h->count -= count;
        if (!h->count) {
            *link = h->next;
            relay_hold_free(h);
        }
        return CAIRN_REPLY_NOW;
    }
    h = relay_hold_find(r, c->pid, tid, rl->name, rl->mode, &link);
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
    relay_release_async(r, h->home, rl->name, h->mode, h->count, &hd, c);
    *link = h->next;
    relay_hold_free(h);
    return CAIRN_REPLY_NOW;
}

int relay_handle_consistent(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__ConsistentRequest *cs = in->consistent;
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(cs->name, "consistent", &o))
        return relay_fail(req, &o);
    if (!relay_is_local(req))
        return relay_home_side(r, req);
    int32_t tid = s_tid_of(c, cs->holder);
    if (!relay_hold_find(r, c->pid, tid, cs->name, CAIRN__SYNCD__MODE__MODE_LOCK, NULL))
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
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(name, what, &o))
        return relay_fail(req, &o);
    if (!relay_is_local(req))
        return relay_home_side(r, req);
    return s_forward_filled(r, req);
}

int relay_handle_cond_signal(relay_t *r, cairn_request_t *req)
{
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);

    return s_plain(r, req, in->cond_signal->name, "cond_signal");
}

int relay_handle_destroy(relay_t *r, cairn_request_t *req)
{
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);

    return s_plain(r, req, in->destroy->name, "destroy");
}

int relay_handle_declare(relay_t *r, cairn_request_t *req)
{
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__DeclareRequest *d = in->declare;
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(d->name, "declare", &o))
        return relay_fail(req, &o);
    if (!d->spec || d->spec->kind < CAIRN__SYNCD__KIND__KIND_MUTEX ||
        d->spec->kind > CAIRN__SYNCD__KIND__KIND_CONDVAR)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "declare %s: "
                                  "unknown object kind %d", d->name,
                                  d->spec ? (int)d->spec->kind : 0);
    if (d->spec->kind == CAIRN__SYNCD__KIND__KIND_BARRIER && d->spec->value < 1)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "declare %s: a "
                                  "barrier needs at least 1 party", d->name);
    if (!relay_is_local(req))
        return relay_home_side(r, req);
    return s_forward_filled(r, req);
}

/* ---- barrier, cond_wait ------------------------------------------------ */

int relay_handle_barrier(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__BarrierRequest *b = in->barrier;
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(b->name, "barrier", &o) || !s_timeout_ok(b->timeout_ms, &o))
        return relay_fail(req, &o);
    if (b->parties < 1)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "barrier %s: "
                                  "parties must be at least 1", b->name);
    if (!relay_is_local(req))
        return relay_home_side(r, req);
    int32_t tid = s_tid_of(c, b->holder);
    relay_op_t *op = relay_op_by_tag(r, c->pid, tid, b->tag, in->msg_case);
    if (op)
        return relay_op_rebind(r, op, req, b->timeout_ms);
    relay_req_t q = *in;
    Cairn__Syncd__BarrierRequest bq = *b;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);
    bq.holder = &hd;
    q.barrier = &bq;
    return relay_op_start(r, req, &q, tid, b->tag, b->timeout_ms, STEP_SEND, false, false);
}

int relay_handle_cond_wait(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);
    const Cairn__Syncd__CondWaitRequest *cw = in->cond_wait;
    relay_outcome_t o = { 0 };

    if (!relay_name_ok(cw->name, "cond_wait", &o) ||
        !relay_name_ok(cw->mutex, "cond_wait (mutex)", &o) ||
        !s_timeout_ok(cw->timeout_ms, &o))
        return relay_fail(req, &o);
    if (!relay_is_local(req))
        return relay_home_side(r, req);
    if (cw->phase > CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "cond_wait %s: "
                                  "unknown phase %d", cw->name, (int)cw->phase);
    int32_t tid = s_tid_of(c, cw->holder);
    relay_op_t *op = relay_op_by_tag(r, c->pid, tid, cw->tag, in->msg_case);
    if (op && op->one_phase && cw->phase != CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_ALL &&
        op->step != (int)cw->phase) {
        /* the next phase of a client-run wait: the previous one is over */
        op->inline_req = NULL;
        relay_op_free(op);
        op = NULL;
    }
    if (op)
        return relay_op_rebind(r, op, req, cw->timeout_ms);
    bool all = cw->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_ALL;
    if (all && !relay_hold_find(r, c->pid, tid, cw->mutex, CAIRN__SYNCD__MODE__MODE_LOCK, NULL))
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                  SYNCD_MSG_NOT_HOLDER "cond_wait %s needs the "
                                  "mutex %s held by the calling thread (%d of "
                                  "process %d) through syncd; a mutex held on "
                                  "a cache word takes the phases one by one",
                                  cw->name, cw->mutex, tid, c->pid);
    relay_req_t q = *in;
    Cairn__Syncd__CondWaitRequest cq = *cw;
    Cairn__Syncd__Holder hd;
    s_local_holder(r, c, tid, &hd);
    cq.holder = &hd;
    q.cond_wait = &cq;
    /* the step numbers of the phases are the phases' own */
    return relay_op_start(r, req, &q, tid, cw->tag, cw->timeout_ms,
                          all ? STEP_PREPARE : (int)cw->phase, false, !all);
}

/* ---- the node cache's requests ----------------------------------------- */

int relay_handle_slot_release(relay_t *r, cairn_request_t *req)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const relay_req_t *in = (const relay_req_t *)cairn_request_body(req);

    if (!relay_is_local(req))
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "slot_release "
                                  "comes from a process of this node");
    /* -ENOENT: nothing to do (the re-check timer would have found it) */
    cache_slot_released(r->cache, c->uid, in->slot_release->slot,
                        in->slot_release->slot_gen);
    Cairn__Syncd__ReleaseReply *rr = cairn_request_alloc(req, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    cairn__syncd__release_reply__init(rr);
    ((relay_rep_t *)cairn_request_reply(req))->release_reply = rr;
    ((relay_rep_t *)cairn_request_reply(req))->msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
    return CAIRN_REPLY_NOW;
}

/* ---- process exits ----------------------------------------------------- */

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
    relay_proc_t *p = s_proc_find(r, pid);
    uint32_t homes[CAIRN_VIEW_MAX_NODES];
    size_t nh = 0, n_ops = 0, n_holds = 0;

    cache_process_exit(r->cache, pid);
    for (relay_op_t *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (op->pid != pid)
            continue;
        s_add_node(homes, &nh, op->home);
        n_ops++;
        relay_op_free(op);
    }
    for (relay_hold_t *h = p ? p->holds : NULL; h; h = h->next) {
        uint32_t home = cairn_view_home(r->view, h->name);
        s_add_node(homes, &nh, home ? home : h->home);
        n_holds++;
    }
    if (p)
        s_proc_free(r, p);
    home_gone(r->home, r->self, &pid, 1);
    relay_req_t req = CAIRN__SYNCD__REQUEST__INIT;
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

/* ---- lifecycle --------------------------------------------------------- */

/* Waits at this node's homes (docs/metrics.md): how many ended, how,
 * and how long they took -- 1 ms (a release right after) to 5 min. */
static void s_declare_metrics(relay_t *r)
{
    static const double bounds[] = { 0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300 };
    cairn_metrics_t *reg = cairn_service_metrics(r->svc);

    r->m_waits = cairn_metrics_counter(reg, "cairn_sync_waits_total",
                                       "Waits at this node's homes (locks, semaphores, "
                                       "barriers, condition variables) answered, by "
                                       "status.", "result");
    r->m_wait_s = cairn_metrics_histogram(reg, "cairn_sync_wait_seconds",
                                          "How long an answered wait at this node's "
                                          "homes lasted.", NULL, bounds,
                                          sizeof(bounds) / sizeof(bounds[0]));
}

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
    r->view = cairn_view_new(svc, "syncd", relay_on_view, r);
    r->home = home_new(r->self, &relay_home_ops, r);
    r->peers = cairn_peers_new(svc, "syncd", &cairn__syncd__reply__descriptor);
    r->cache = cache_new(svc, relay_on_cache_revoked, r, err);
    s_declare_metrics(r);
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
        relay_op_t *op = r->ops;
        if (op->deferred) {
            cairn_deferred_fail(r->svc, op->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
            op->deferred = NULL;
        }
        relay_op_free(op);
    }
    while (r->hws) {
        relay_hw_t *hw = r->hws;
        home_cancel(r->home, hw);
        cairn_deferred_fail(r->svc, hw->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
        hw->deferred = NULL;
        relay_hw_free(hw);
    }
    while (r->lss)
        relay_ls_free(r, r->lss);
    while (r->revokes) {
        relay_revoke_t *w = r->revokes;
        r->revokes = w->next;
        if (w->deferred)
            cairn_deferred_fail(r->svc, w->deferred, CAIRN_UNAVAILABLE, "syncd is stopping");
        free(w->name);
        free(w);
    }
    while (r->rels)
        relay_retry_drop(r, &r->rels, r->rels);
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
        relay_retry_drop(r, &r->out_revokes, r->out_revokes);
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
