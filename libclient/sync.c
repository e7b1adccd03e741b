/* sync.c - libcairn's cluster-wide mutexes, rwlocks, semaphores, barriers
 * and condition variables (cairn/sync.h): the client of this node's syncd.
 *
 * Design. A session holds the syncd endpoint (always ipc: syncd learns who
 * calls from SO_PEERCRED), a pool of clients (a cairn_client_t is one
 * thread's at a time; a call takes one from the pool and gives it back, so
 * any number of threads may wait at once), and what it learnt per name:
 * the cache slot of a mutex cached at this node, the spec the session
 * declared, the rwlock modes its threads hold. One pthread mutex guards
 * those; it is never held across a call to syncd or a futex wait.
 *
 * Slow path. Every call is a Request of proto/syncd.proto to the local
 * syncd (the relay). A wait is a loop of calls of at most S_CHUNK_MS each:
 * the request carries the caller's remaining timeout (-1 forever), and when
 * a call ends without a reply the same request -- with the same random
 * `tag`, chosen once per logical acquire -- goes again, which syncd binds to
 * the waiter it already has (never a second acquire). A Status maps to the
 * errno of cairn/sync.h; FAILED_PRECONDITION's first words
 * (SYNCD_MSG_* in synctab.h) say which POSIX outcome it is.
 *
 * Fast path. When syncd answers a mutex acquire with a slot of the user's
 * table (lib/synctab), the session maps the table (once) and remembers
 * (name -> table, slot, gen); later locks try synctab_lock first -- one
 * CAS, no message -- and only a parked or reassigned word (GO_SLOW) sends
 * them to syncd again. A grant made by syncd on the word (no use_slot) is
 * adopted onto the thread's robust list; use_slot means another thread of
 * the node holds it: wait on the word. An unlock of a word goes back to
 * syncd only when synctab_unlock says the cache is being revoked
 * (slot_release). A mutex held through syncd (not cached) unlocks with a
 * release.
 *
 * Condition variables: a mutex held through syncd is released and retaken
 * by the relay (phase ALL). One held on a cache word can only be released
 * by the holder (the word is on its robust list), so then the session
 * queues the waiter first (PREPARE), unlocks the word itself, waits
 * (WAIT) and locks the mutex again -- the same order, so no signal sent
 * under the mutex is lost.
 *
 * Tables stay mapped until the session closes, and past it while a word of
 * theirs is held: glibc writes the links of neighbouring entries of the
 * robust list, which may live in the table.
 */
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cairn/description.h"
#include "cairn/sync.h"
#include "syncd.pb-c.h"
#include "synctab/synctab.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_CHUNK_MS 5000        /* longest single call of a wait */
#define S_SLACK_MS 1000        /* how long past the request's own timeout a
                                * call waits for syncd's answer */
#define S_RETRY_PAUSE_MS 50    /* between attempts that syncd answered
                                * UNAVAILABLE, or a word we may not take */
#define S_BUCKETS 1024u

typedef struct s_table {
    char *path;                /* as syncd named it */
    synctab_t tab;             /* the mapping */
    struct s_table *next;
} s_table_t;

/* A thread's hold on a rwlock. */
typedef struct s_rwhold {
    int32_t tid;
    Cairn__Syncd__Mode mode;   /* MODE_READ or MODE_WRITE */
    uint32_t count;            /* recursive read locks */
} s_rwhold_t;

typedef struct s_name {
    char *name;
    struct s_name *next;       /* bucket chain */
    s_table_t *table;          /* the cache slot's table, NULL if none known */
    uint32_t slot;
    uint32_t gen;
    uint32_t home;             /* the home node syncd last named */
    bool declared;             /* spec was given by cairn_sync_declare */
    cairn_sync_spec_t spec;
    int32_t held_by;           /* the thread holding the mutex through
                                * syncd (not on a word), 0 if none */
    s_rwhold_t *rw;            /* this process's rwlock holds */
    size_t n_rw, cap_rw;
} s_name_t;

/* An idle client. One that carried a thread's release without waiting for
 * the reply stays that thread's until its next call: the thread's next
 * request then goes on the same connection, behind the release, so syncd
 * never sees it first (a relock before the unlock). */
typedef struct s_idle {
    cairn_client_t *c;
    int32_t owner_tid;         /* 0: anyone's */
} s_idle_t;

struct cairn_sync {
    char *endpoint;            /* ipc://.../syncd.sock */
    pthread_mutex_t lock;      /* guards everything below */
    s_idle_t *pool;            /* idle clients */
    size_t n_pool, cap_pool;
    s_name_t *buckets[S_BUCKETS];
    s_table_t *tables;
    _Atomic long held_words;   /* words taken and not yet unlocked */
};

/* ---- thread ids -------------------------------------------------------- */

static __thread int32_t s_tid_cache;

static void s_tid_atfork(void)
{
    s_tid_cache = 0;
}

static void s_tid_init(void)
{
    pthread_atfork(NULL, NULL, s_tid_atfork);
}

/* gettid() is a system call in glibc: cached per thread, reset in a child. */
static int32_t s_tid(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    if (!s_tid_cache) {
        pthread_once(&once, s_tid_init);
        s_tid_cache = (int32_t)gettid();
    }
    return s_tid_cache;
}

static uint64_t s_new_tag(void)
{
    uint64_t tag = 0;

    while (tag == 0)
        if (getrandom(&tag, sizeof tag, 0) != sizeof tag)
            tag = cairn_now_ns() ^ ((uint64_t)s_tid() << 32);
    return tag;
}

/* ---- the session ------------------------------------------------------- */

/* $CAIRN_SYNCD_ENDPOINT, ipc://$CAIRN_NODE_RUNDIR/syncd.sock, or the one
 * syncd.sock of a local cluster under /run/cairn. */
static char *s_default_endpoint(cairn_error_t *err)
{
    const char *env = getenv("CAIRN_SYNCD_ENDPOINT");
    glob_t g = { 0 };
    char *ep = NULL;

    if (env && *env)
        return strdup(env);
    env = getenv("CAIRN_NODE_RUNDIR");
    if (env && *env)
        return asprintf(&ep, "ipc://%s/syncd.sock", env) < 0 ? NULL : ep;
    if (glob(CAIRN_DEFAULT_RUN_BASE "/*/*/syncd.sock", 0, NULL, &g) == 0 &&
        g.gl_pathc == 1 && asprintf(&ep, "ipc://%s", g.gl_pathv[0]) < 0)
        ep = NULL;
    if (!ep)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "no syncd endpoint: %s syncd.sock under "
                        CAIRN_DEFAULT_RUN_BASE "/<cluster>/<node>/; set "
                        "CAIRN_SYNCD_ENDPOINT or CAIRN_NODE_RUNDIR",
                        g.gl_pathc > 1 ? "more than one" : "no");
    globfree(&g);
    return ep;
}

cairn_sync_t *cairn_sync_open(const char *endpoint, cairn_error_t *err)
{
    cairn_sync_t *s;

    if (endpoint && strncmp(endpoint, "ipc://", 6) != 0) {
        cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                        "syncd endpoint %s is not ipc://: syncd learns who "
                        "calls from the kernel, over a local socket only",
                        endpoint);
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->endpoint = endpoint ? strdup(endpoint) : s_default_endpoint(err);
    if (!s->endpoint) {
        if (endpoint)
            cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        return cairn_sync_close(s);
    }
    if (strncmp(s->endpoint, "ipc://", 6) != 0) {
        cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                        "syncd endpoint %s (CAIRN_SYNCD_ENDPOINT) is not ipc://",
                        s->endpoint);
        return cairn_sync_close(s);
    }
    return s;
}

cairn_sync_t *cairn_sync_close(cairn_sync_t *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n_pool; i++)
        cairn_client_free(s->pool[i].c);
    free(s->pool);
    for (size_t b = 0; b < S_BUCKETS; b++)
        for (s_name_t *n = s->buckets[b], *nx; n; n = nx) {
            nx = n->next;
            free(n->name);
            free(n->rw);
            free(n);
        }
    for (s_table_t *t = s->tables, *nx; t; t = nx) {
        nx = t->next;
        /* a held word's link is on a robust list glibc walks: keep it */
        if (atomic_load(&s->held_words) <= 0)
            synctab_unmap(&t->tab);
        free(t->path);
        free(t);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->endpoint);
    free(s);
    return NULL;
}

/* The entry of name, made if absent (NULL on ENOMEM). Under s->lock. */
static s_name_t *s_name_get(cairn_sync_t *s, const char *name, bool make)
{
    uint32_t b = (uint32_t)(synctab_name_hash(name) % S_BUCKETS);
    s_name_t *n;

    for (n = s->buckets[b]; n; n = n->next)
        if (strcmp(n->name, name) == 0)
            return n;
    if (!make)
        return NULL;
    n = calloc(1, sizeof *n);
    if (!n || !(n->name = strdup(name))) {
        free(n);
        return NULL;
    }
    n->next = s->buckets[b];
    s->buckets[b] = n;
    return n;
}

/* The mapping of the table at path, opened on first use. Under s->lock. */
static s_table_t *s_table_get(cairn_sync_t *s, const char *path)
{
    s_table_t *t;

    for (t = s->tables; t; t = t->next)
        if (strcmp(t->path, path) == 0)
            return t;
    t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path)) || synctab_open(&t->tab, path, NULL) < 0) {
        if (t)
            free(t->path);
        free(t);
        return NULL;
    }
    t->next = s->tables;
    s->tables = t;
    return t;
}

static int s_check_name(const char *name, cairn_error_t *err)
{
    size_t len;

    if (!name)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no object name");
    len = strnlen(name, CAIRN_SYNC_NAME_MAX + 1);
    if (len == 0 || len > CAIRN_SYNC_NAME_MAX)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "an object name is 1 to %d bytes, not %s",
                               CAIRN_SYNC_NAME_MAX,
                               len == 0 ? "empty" : "longer");
    return 0;
}

/* ---- calls ------------------------------------------------------------- */

/* An idle client for the calling thread: the one it owes a reply to, else
 * anyone's, else a new one. */
static cairn_client_t *s_client_take(cairn_sync_t *s, cairn_error_t *err)
{
    cairn_client_t *c = NULL;
    int32_t tid = s_tid();
    size_t pick = SIZE_MAX;

    pthread_mutex_lock(&s->lock);
    for (size_t i = s->n_pool; i-- > 0;) {
        if (s->pool[i].owner_tid == tid) {
            pick = i;
            break;
        }
        if (s->pool[i].owner_tid == 0 && pick == SIZE_MAX)
            pick = i;
    }
    if (pick != SIZE_MAX) {
        c = s->pool[pick].c;
        s->pool[pick] = s->pool[--s->n_pool];
    }
    pthread_mutex_unlock(&s->lock);
    if (c)
        return c;
    c = cairn_client_new(s->endpoint, "syncd");
    if (!c)
        cairn_error_set(err, -errno, CAIRN_INVALID_ARGUMENT,
                        "cannot make a client of syncd at %s: %s", s->endpoint,
                        strerror(errno));
    return c;
}

/* Back to the pool; owner_tid: the thread whose next call must use it. */
static void s_client_give(cairn_sync_t *s, cairn_client_t *c, int32_t owner_tid)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_pool == s->cap_pool) {
        size_t cap = s->cap_pool ? 2 * s->cap_pool : 4;
        s_idle_t *p = realloc(s->pool, cap * sizeof *p);

        if (!p) {
            pthread_mutex_unlock(&s->lock);
            cairn_client_free(c);
            return;
        }
        s->pool = p;
        s->cap_pool = cap;
    }
    s->pool[s->n_pool++] = (s_idle_t){ c, owner_tid };
    pthread_mutex_unlock(&s->lock);
}

static void s_pause(void)
{
    struct timespec ts = { 0, S_RETRY_PAUSE_MS * 1000000L };

    nanosleep(&ts, NULL);
}

static bool s_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The errno of cairn/sync.h for what syncd answered (r = -EREMOTEIO with
 * err's code and message) or for the call's own failure. */
static int s_errno(int r, const cairn_error_t *err)
{
    if (r != -EREMOTEIO)
        return r;
    switch (err->code) {
    case CAIRN_TIMEOUT: return -ETIMEDOUT;
    case CAIRN_BUSY: return -EBUSY;
    case CAIRN_PERMISSION_DENIED: return -EACCES;
    case CAIRN_INVALID_ARGUMENT:
    case CAIRN_TOO_LARGE: return -EINVAL;
    case CAIRN_NOT_FOUND: return -ENOENT;
    case CAIRN_FAILED_PRECONDITION:
        if (s_starts(err->message, SYNCD_MSG_DEADLOCK))
            return -EDEADLK;
        if (s_starts(err->message, SYNCD_MSG_NOT_HOLDER))
            return -EPERM;
        if (s_starts(err->message, SYNCD_MSG_NOT_RECOVERABLE))
            return -ENOTRECOVERABLE;
        if (s_starts(err->message, SYNCD_MSG_OWNER_DIED))
            return -EOWNERDEAD;
        return -EREMOTEIO;
    default: return -EREMOTEIO;
    }
}

/* One Request to syncd, waiting at most timeout_ms for the reply. 0 with
 * *ret_reply, -ETIME when no reply came in time (the waits below send
 * again), or the errno of s_errno with err set. */
static int s_call(cairn_sync_t *s, Cairn__Syncd__Request *req, int timeout_ms,
                  int retries, Cairn__Syncd__Reply **ret_reply,
                  cairn_error_t *err)
{
    ProtobufCMessage *reply = NULL;
    cairn_client_t *c;
    cairn_error_t e = { 0 };
    int r;

    c = s_client_take(s, &e);
    if (!c) {
        r = -EINVAL;
        goto fail;
    }
    cairn_client_set_timeout(c, timeout_ms > 0 ? timeout_ms : 1);
    cairn_client_set_retries(c, retries);
    r = cairn_client_call(c, &req->base, &cairn__syncd__reply__descriptor,
                          &reply, &e);
    s_client_give(s, c, 0);
    if (r == 0) {
        *ret_reply = (Cairn__Syncd__Reply *)reply;
        return 0;
    }
    r = r == -ETIMEDOUT ? -ETIME : s_errno(r, &e);
fail:
    if (err)
        *err = e;
    return r;
}

/* A short request (release, signal, declare...): the client's default
 * deadline and retries, which the server's reply cache makes idempotent. */
static int s_call_short(cairn_sync_t *s, Cairn__Syncd__Request *req,
                        Cairn__Syncd__Reply **ret_reply, cairn_error_t *err)
{
    int r = s_call(s, req, CAIRN_CLIENT_DEFAULT_TIMEOUT_MS,
                   CAIRN_CLIENT_DEFAULT_RETRIES, ret_reply, err);

    return r == -ETIME ? -ETIMEDOUT : r;
}

static void s_reply_free(Cairn__Syncd__Reply *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(&reply->base, NULL);
}
CAIRN_DEFINE_CLEANUP(s_reply_freep, Cairn__Syncd__Reply *, s_reply_free)

/* A request whose reply is release_reply (or any status only). UNAVAILABLE
 * (the home is recovering, a cache is being given back) is asked again for
 * as long as a short call may take. */
static int s_call_simple(cairn_sync_t *s, Cairn__Syncd__Request *req,
                         cairn_error_t *err)
{
    uint64_t end = cairn_now_ms() + CAIRN_CLIENT_DEFAULT_TIMEOUT_MS;
    cairn_error_t e;
    int r;

    for (;;) {
        _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;

        cairn_error_clear(&e);
        r = s_call_short(s, req, &reply, &e);
        if (r != -EREMOTEIO || e.code != CAIRN_UNAVAILABLE ||
            cairn_ms_left(end) <= S_RETRY_PAUSE_MS)
            break;
        s_pause();
    }
    if (r < 0 && err)
        *err = e;
    return r;
}

/* ---- waits ------------------------------------------------------------- */

/* The time a wait has, over its calls. */
typedef struct s_wait {
    int64_t timeout_ms;        /* as the caller gave it */
    uint64_t end_ms;           /* cairn_now_ms() deadline if timeout_ms > 0 */
} s_wait_t;

static s_wait_t s_wait_start(int64_t timeout_ms)
{
    s_wait_t w = { .timeout_ms = timeout_ms < 0 ? -1 : timeout_ms };

    if (timeout_ms > 0)
        w.end_ms = cairn_now_ms() + (uint64_t)timeout_ms;
    return w;
}

/* What the next request says: -1 forever, 0 try, else the ms left (at
 * least 1 while any is left). */
static int64_t s_wait_left(const s_wait_t *w)
{
    if (w->timeout_ms <= 0)
        return w->timeout_ms;
    return (int64_t)cairn_ms_left(w->end_ms);
}

static bool s_wait_over(const s_wait_t *w)
{
    return w->timeout_ms == 0 || (w->timeout_ms > 0 && s_wait_left(w) == 0);
}

/* The deadline of one call: the request's own timeout and a slack for the
 * answer, at most one chunk. */
static int s_wait_chunk(const s_wait_t *w)
{
    int64_t left = s_wait_left(w);

    if (left < 0 || left + S_SLACK_MS > S_CHUNK_MS)
        return S_CHUNK_MS;
    return (int)(left + S_SLACK_MS);
}

/* The monotonic deadline for a futex wait (-1 forever). */
static int64_t s_wait_deadline(const s_wait_t *w)
{
    if (w->timeout_ms < 0)
        return -1;
    return w->timeout_ms == 0 ? (int64_t)cairn_now_ms() : (int64_t)w->end_ms;
}

/* Whether a failed call of a wait is worth sending again: no reply within
 * the chunk (syncd still has the waiter, the same tag re-binds to it), or
 * UNAVAILABLE (no home yet) -- while the caller's time lasts. */
static bool s_wait_again(const s_wait_t *w, int r, const cairn_error_t *err)
{
    if (s_wait_over(w))
        return false;
    if (r == -ETIME)
        return true;
    if (r == -EREMOTEIO && err->code == CAIRN_UNAVAILABLE) {
        s_pause();
        return true;
    }
    return false;
}

/* Runs a waiting request: req's timeout field (*timeout_field) is set to
 * what is left before each call. */
static int s_call_wait(cairn_sync_t *s, Cairn__Syncd__Request *req,
                       int64_t *timeout_field, const s_wait_t *w,
                       Cairn__Syncd__Reply **ret_reply, cairn_error_t *err)
{
    cairn_error_t e;
    int r;

    do {
        *timeout_field = s_wait_left(w);
        cairn_error_clear(&e);
        r = s_call(s, req, s_wait_chunk(w), 0, ret_reply, &e);
    } while (r < 0 && s_wait_again(w, r, &e));
    if (r == -ETIME)
        r = cairn_error_set(&e, -ETIMEDOUT, CAIRN_TIMEOUT,
                            "timeout: no answer from syncd at %s in time",
                            s->endpoint);
    if (r < 0 && err)
        *err = e;
    return r;
}

/* ---- acquire ----------------------------------------------------------- */

static void s_grant_set(cairn_sync_grant_t *g, uint64_t token, uint32_t home,
                        bool cached, bool owner_died)
{
    if (g)
        *g = (cairn_sync_grant_t){ .token = token, .home = home,
                                   .cached = cached, .owner_died = owner_died };
}

/* The spec an acquire carries: the declared one, else kind alone. */
static void s_spec_of(cairn_sync_t *s, const char *name, cairn_sync_kind_t kind,
                      Cairn__Syncd__Spec *spec)
{
    s_name_t *n;

    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, false);
    spec->kind = (Cairn__Syncd__Kind)kind;
    if (n && n->declared && n->spec.kind == kind) {
        spec->value = n->spec.value;
        spec->shared = n->spec.shared;
        spec->no_cache = n->spec.no_cache;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Where the cached word of a mutex is, as this session knows it. */
typedef struct s_slot {
    s_table_t *table;
    uint32_t slot, gen, home;
} s_slot_t;

static bool s_slot_of(cairn_sync_t *s, const char *name, s_slot_t *ret)
{
    s_name_t *n;
    bool ok = false;

    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, false);
    if (n && n->table) {
        *ret = (s_slot_t){ n->table, n->slot, n->gen, n->home };
        ok = true;
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* Remembers what syncd said of a mutex: its home and its slot, if any. */
static bool s_slot_learn(cairn_sync_t *s, const char *name,
                         const Cairn__Syncd__AcquireReply *ar, s_slot_t *ret)
{
    s_name_t *n;
    s_table_t *t = NULL;

    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, true);
    if (n)
        n->home = ar->home;
    if (n && ar->table && *ar->table && ar->slot < SYNCTAB_SLOTS &&
        (t = s_table_get(s, ar->table))) {
        n->table = t;
        n->slot = ar->slot;
        n->gen = ar->slot_gen;
        *ret = (s_slot_t){ t, ar->slot, ar->slot_gen, ar->home };
    }
    pthread_mutex_unlock(&s->lock);
    return t != NULL;
}

static void s_held_add(cairn_sync_t *s, long d)
{
    atomic_fetch_add(&s->held_words, d);
}

/* Takes a cached word: SYNCTAB_TAKEN with g set (the return value then is
 * 0 or -EOWNERDEAD in *ret), SYNCTAB_GO_SLOW, or a final errno in *ret. */
static int s_word_lock(cairn_sync_t *s, const s_slot_t *sl, bool wait,
                       const s_wait_t *w, cairn_sync_grant_t *g, int *ret,
                       cairn_error_t *err)
{
    uint64_t token = 0;
    bool died = false;
    int r;

    r = synctab_lock(&sl->table->tab, sl->slot, sl->gen, s_tid(), wait,
                     s_wait_deadline(w), &token, &died);
    if (r == SYNCTAB_GO_SLOW)
        return r;
    if (r == SYNCTAB_TAKEN) {
        s_held_add(s, 1);
        s_grant_set(g, token, sl->home, true, died);
        *ret = died ? cairn_error_set(err, -EOWNERDEAD, CAIRN_OK,
                                      "the previous holder died holding it")
                    : 0;
        return SYNCTAB_TAKEN;
    }
    switch (r) {
    case -EBUSY:
        *ret = cairn_error_set(err, r, CAIRN_BUSY, "held by another thread "
                               "of this node");
        break;
    case -ETIMEDOUT:
        *ret = cairn_error_set(err, r, CAIRN_TIMEOUT, "timeout: still held "
                               "by another thread of this node");
        break;
    case -EDEADLK:
        *ret = cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               SYNCD_MSG_DEADLOCK "this thread holds it");
        break;
    case -ENOTRECOVERABLE:
        *ret = cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               SYNCD_MSG_NOT_RECOVERABLE "unlocked while "
                               "inconsistent");
        break;
    default:
        *ret = cairn_error_set(err, r, CAIRN_SYSTEM, "lock word: %s",
                               strerror(-r));
    }
    return 1 + SYNCTAB_GO_SLOW;  /* final */
}

/* A mutex lock through syncd; a grant on the node's word is adopted, a
 * use_slot answer waited on. SYNCTAB_GO_SLOW: ask again (new tag). */
/* Records that tid holds name through syncd (0: nobody now). */
static void s_held_by(cairn_sync_t *s, const char *name, int32_t tid)
{
    pthread_mutex_lock(&s->lock);
    s_name_t *n = s_name_get(s, name, tid != 0);
    if (n)
        n->held_by = tid;
    pthread_mutex_unlock(&s->lock);
}

/* Whether the calling thread holds name through syncd; if so, it no
 * longer does (it is unlocking). */
static bool s_held_take(cairn_sync_t *s, const char *name)
{
    bool mine;

    pthread_mutex_lock(&s->lock);
    s_name_t *n = s_name_get(s, name, false);
    mine = n && n->held_by == s_tid();
    if (mine)
        n->held_by = 0;
    pthread_mutex_unlock(&s->lock);
    return mine;
}

/* Sends a release syncd will accept -- the session saw the grant to this
 * thread -- without waiting for its answer: the thread's next request goes
 * on the same connection, behind it. The relay checks it again and carries
 * it to the home. -errno when it could not be queued (then it goes as a
 * call). */
static int s_send_release(cairn_sync_t *s, Cairn__Syncd__Request *req)
{
    cairn_client_t *c = s_client_take(s, NULL);
    int r;

    if (!c)
        return -ENOMEM;
    r = cairn_client_send(c, &req->base, NULL);
    s_client_give(s, c, r == 0 ? s_tid() : 0);
    return r;
}

static int s_mutex_slow(cairn_sync_t *s, const char *name, const s_wait_t *w,
                        cairn_sync_grant_t *g, int *ret, cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__AcquireRequest ar = CAIRN__SYNCD__ACQUIRE_REQUEST__INIT;
    Cairn__Syncd__Spec spec = CAIRN__SYNCD__SPEC__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;
    const Cairn__Syncd__AcquireReply *a;
    s_slot_t sl;
    bool have_slot;
    int r;

    s_spec_of(s, name, CAIRN_SYNC_MUTEX, &spec);
    h.tid = s_tid();
    ar.name = (char *)name;
    ar.spec = &spec;
    ar.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
    ar.holder = &h;
    ar.tag = s_new_tag();
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ACQUIRE;
    req.acquire = &ar;
    r = s_call_wait(s, &req, &ar.timeout_ms, w, &reply, err);
    if (r < 0) {
        *ret = r;
        return 1 + SYNCTAB_GO_SLOW;
    }
    if (reply->msg_case != CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY) {
        *ret = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "syncd answered an acquire of %s with another "
                               "reply", name);
        return 1 + SYNCTAB_GO_SLOW;
    }
    a = reply->acquire_reply;
    have_slot = s_slot_learn(s, name, a, &sl);
    if (a->use_slot) {
        if (!have_slot) {   /* a table we cannot map: ask again later */
            s_pause();
            return SYNCTAB_GO_SLOW;
        }
        return s_word_lock(s, &sl, w->timeout_ms != 0, w, g, ret, err);
    }
    if (have_slot) {        /* syncd put our tid in the word */
        synctab_adopt(&sl.table->tab, sl.slot, s_tid());
        s_held_add(s, 1);
    } else
        s_held_by(s, name, s_tid());
    s_grant_set(g, a->token, a->home, false, a->owner_died);
    *ret = a->owner_died ? cairn_error_set(err, -EOWNERDEAD, CAIRN_OK,
                                           "the previous holder of %s died "
                                           "holding it", name)
                         : 0;
    return SYNCTAB_TAKEN;
}

int cairn_mutex_lock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                     cairn_sync_grant_t *g, cairn_error_t *err)
{
    cairn_error_t e = { 0 };
    s_wait_t w = s_wait_start(timeout_ms);
    s_slot_t sl;
    int r, ret = 0;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    if (s_slot_of(s, name, &sl)) {
        r = s_word_lock(s, &sl, timeout_ms != 0, &w, g, &ret, &e);
        if (r != SYNCTAB_GO_SLOW)
            goto done;
    }
    do
        r = s_mutex_slow(s, name, &w, g, &ret, &e);
    while (r == SYNCTAB_GO_SLOW);
done:
    if (ret < 0 && err)
        *err = e;
    return ret;
}

/* Unlocks the word if this thread holds it: 1 done, 0 not held there. */
static int s_word_unlock(cairn_sync_t *s, const char *name)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__SlotReleaseRequest sr = CAIRN__SYNCD__SLOT_RELEASE_REQUEST__INIT;
    synctab_slot_t *slot;
    cairn_error_t e;
    s_slot_t sl;
    int r;

    if (!s_slot_of(s, name, &sl))
        return 0;
    slot = &sl.table->tab.slots[sl.slot];
    if (atomic_load(&slot->gen) != sl.gen ||
        (atomic_load(&slot->word) & SYNCTAB_TID_MASK) !=
            ((uint32_t)s_tid() & SYNCTAB_TID_MASK))
        return 0;
    r = synctab_unlock(&sl.table->tab, sl.slot, s_tid());
    if (r < 0)
        return 0;
    s_held_add(s, -1);
    if (r == 1) {
        /* the cache is being revoked (or the mutex is not recoverable):
         * tell syncd now; its re-check finds the parked word anyway */
        sr.slot = sl.slot;
        sr.slot_gen = sl.gen;
        req.msg_case = CAIRN__SYNCD__REQUEST__MSG_SLOT_RELEASE;
        req.slot_release = &sr;
        s_call_simple(s, &req, &e);
    }
    return 1;
}

int cairn_mutex_unlock(cairn_sync_t *s, const char *name, cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__ReleaseRequest rr = CAIRN__SYNCD__RELEASE_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    if (s_word_unlock(s, name))
        return 0;
    h.tid = s_tid();
    rr.name = (char *)name;
    rr.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
    rr.holder = &h;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
    req.release = &rr;
    if (s_held_take(s, name) && s_send_release(s, &req) == 0)
        return 0;
    return s_call_simple(s, &req, err);
}

int cairn_mutex_consistent(cairn_sync_t *s, const char *name,
                           cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__ConsistentRequest cr = CAIRN__SYNCD__CONSISTENT_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    s_slot_t sl;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    if (s_slot_of(s, name, &sl) &&
        atomic_load(&sl.table->tab.slots[sl.slot].gen) == sl.gen) {
        r = synctab_consistent(&sl.table->tab, sl.slot, s_tid());
        if (r == -EINVAL)
            return cairn_error_set(err, r, CAIRN_INVALID_ARGUMENT,
                                   "%s is consistent already", name);
        if (r == 0)
            return 0;
    }
    h.tid = s_tid();
    cr.name = (char *)name;
    cr.holder = &h;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_CONSISTENT;
    req.consistent = &cr;
    return s_call_simple(s, &req, err);
}

/* An acquire that never uses the cache: rwlocks and semaphores. */
static int s_acquire(cairn_sync_t *s, const char *name, cairn_sync_kind_t kind,
                     Cairn__Syncd__Mode mode, int64_t timeout_ms,
                     cairn_sync_grant_t *g, cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__AcquireRequest ar = CAIRN__SYNCD__ACQUIRE_REQUEST__INIT;
    Cairn__Syncd__Spec spec = CAIRN__SYNCD__SPEC__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;
    s_wait_t w = s_wait_start(timeout_ms);
    const Cairn__Syncd__AcquireReply *a;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    s_spec_of(s, name, kind, &spec);
    h.tid = s_tid();
    ar.name = (char *)name;
    ar.spec = &spec;
    ar.mode = mode;
    ar.holder = &h;
    ar.tag = s_new_tag();
    ar.count = mode == CAIRN__SYNCD__MODE__MODE_SEM ? 1 : 0;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ACQUIRE;
    req.acquire = &ar;
    r = s_call_wait(s, &req, &ar.timeout_ms, &w, &reply, err);
    if (r < 0)
        return r;
    if (reply->msg_case != CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "syncd answered an acquire of %s with another "
                               "reply", name);
    a = reply->acquire_reply;
    s_grant_set(g, a->token, a->home, false, a->owner_died);
    return 0;
}

/* ---- rwlocks ----------------------------------------------------------- */

static void s_rw_note(cairn_sync_t *s, const char *name, Cairn__Syncd__Mode mode)
{
    int32_t tid = s_tid();
    s_name_t *n;

    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, true);
    for (size_t i = 0; n && i < n->n_rw; i++)
        if (n->rw[i].tid == tid && n->rw[i].mode == mode) {
            n->rw[i].count++;
            goto out;
        }
    if (n && n->n_rw == n->cap_rw) {
        size_t cap = n->cap_rw ? 2 * n->cap_rw : 2;
        s_rwhold_t *p = realloc(n->rw, cap * sizeof *p);

        if (!p)
            goto out;
        n->rw = p;
        n->cap_rw = cap;
    }
    if (n)
        n->rw[n->n_rw++] = (s_rwhold_t){ tid, mode, 1 };
out:
    pthread_mutex_unlock(&s->lock);
}

/* The mode this thread holds name in, taken off the record. */
static Cairn__Syncd__Mode s_rw_forget(cairn_sync_t *s, const char *name)
{
    Cairn__Syncd__Mode mode = CAIRN__SYNCD__MODE__MODE_UNSPECIFIED;
    int32_t tid = s_tid();
    s_name_t *n;

    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, false);
    for (size_t i = 0; n && i < n->n_rw; i++)
        if (n->rw[i].tid == tid) {
            mode = n->rw[i].mode;
            if (--n->rw[i].count == 0)
                n->rw[i] = n->rw[--n->n_rw];
            break;
        }
    pthread_mutex_unlock(&s->lock);
    return mode;
}

static int s_rwlock(cairn_sync_t *s, const char *name, Cairn__Syncd__Mode mode,
                    int64_t timeout_ms, cairn_sync_grant_t *g,
                    cairn_error_t *err)
{
    int r = s_acquire(s, name, CAIRN_SYNC_RWLOCK, mode, timeout_ms, g, err);

    if (r == 0)
        s_rw_note(s, name, mode);
    return r;
}

int cairn_rwlock_rdlock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                        cairn_sync_grant_t *g, cairn_error_t *err)
{
    return s_rwlock(s, name, CAIRN__SYNCD__MODE__MODE_READ, timeout_ms, g, err);
}

int cairn_rwlock_wrlock(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                        cairn_sync_grant_t *g, cairn_error_t *err)
{
    return s_rwlock(s, name, CAIRN__SYNCD__MODE__MODE_WRITE, timeout_ms, g, err);
}

static int s_release(cairn_sync_t *s, const char *name, Cairn__Syncd__Mode mode,
                     cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__ReleaseRequest rr = CAIRN__SYNCD__RELEASE_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;

    h.tid = s_tid();
    rr.name = (char *)name;
    rr.mode = mode;
    rr.holder = &h;
    rr.count = mode == CAIRN__SYNCD__MODE__MODE_SEM ? 1 : 0;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_RELEASE;
    req.release = &rr;
    return s_call_simple(s, &req, err);
}

int cairn_rwlock_unlock(cairn_sync_t *s, const char *name, cairn_error_t *err)
{
    Cairn__Syncd__Mode mode;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    mode = s_rw_forget(s, name);
    if (mode == CAIRN__SYNCD__MODE__MODE_UNSPECIFIED)
        return cairn_error_set(err, -EPERM, CAIRN_FAILED_PRECONDITION,
                               SYNCD_MSG_NOT_HOLDER "this thread holds no read "
                               "or write lock on %s (through this session)",
                               name);
    r = s_release(s, name, mode, err);
    if (r < 0 && r != -EPERM)
        s_rw_note(s, name, mode);   /* still held: syncd did not hear it */
    return r;
}

/* ---- semaphores -------------------------------------------------------- */

int cairn_sem_wait(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                   cairn_sync_grant_t *g, cairn_error_t *err)
{
    return s_acquire(s, name, CAIRN_SYNC_SEMAPHORE, CAIRN__SYNCD__MODE__MODE_SEM,
                     timeout_ms, g, err);
}

int cairn_sem_post(cairn_sync_t *s, const char *name, cairn_error_t *err)
{
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    return s_release(s, name, CAIRN__SYNCD__MODE__MODE_SEM, err);
}

/* ---- barriers ---------------------------------------------------------- */

int cairn_barrier_wait(cairn_sync_t *s, const char *name, uint32_t parties,
                       int64_t timeout_ms, uint64_t *generation,
                       cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__BarrierRequest br = CAIRN__SYNCD__BARRIER_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    Cairn__Syncd__Spec spec = CAIRN__SYNCD__SPEC__INIT;
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;
    s_wait_t w = s_wait_start(timeout_ms);
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    if (parties == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "a barrier has at least 1 party");
    s_spec_of(s, name, CAIRN_SYNC_BARRIER, &spec);
    h.tid = s_tid();
    br.name = (char *)name;
    br.parties = parties;
    br.holder = &h;
    br.tag = s_new_tag();
    br.shared = spec.shared;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_BARRIER;
    req.barrier = &br;
    r = s_call_wait(s, &req, &br.timeout_ms, &w, &reply, err);
    if (r < 0)
        return r;
    if (reply->msg_case != CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "syncd answered a barrier wait on %s with "
                               "another reply", name);
    if (generation)
        *generation = reply->barrier_reply->generation;
    return reply->barrier_reply->serial ? 1 : 0;
}

/* ---- condition variables ----------------------------------------------- */

/* One cond_wait request of the given phase, looped while time lasts. */
static int s_cond_call(cairn_sync_t *s, Cairn__Syncd__CondWaitRequest *cw,
                       const s_wait_t *w, Cairn__Syncd__Reply **ret_reply,
                       cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;

    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_COND_WAIT;
    req.cond_wait = cw;
    if (cw->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_PREPARE ||
        cw->phase == CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL) {
        /* answered at once: the wait's own timeout goes along unchanged */
        cw->timeout_ms = s_wait_left(w);
        return s_call_short(s, &req, ret_reply, err);
    }
    return s_call_wait(s, &req, &cw->timeout_ms, w, ret_reply, err);
}

/* After the relay took the mutex again for us: if it did so on this node's
 * cache word, the word names our thread and goes on our robust list. */
static void s_adopt_if_ours(cairn_sync_t *s, const char *mutex)
{
    synctab_slot_t *slot;
    s_slot_t sl;

    if (!s_slot_of(s, mutex, &sl))
        return;
    slot = &sl.table->tab.slots[sl.slot];
    /* we did not hold it before the wait (s_holds_word), so a word that
     * names us now is the relay's grant */
    if (atomic_load(&slot->gen) == sl.gen &&
        (atomic_load(&slot->word) & SYNCTAB_TID_MASK) ==
            ((uint32_t)s_tid() & SYNCTAB_TID_MASK)) {
        synctab_adopt(&sl.table->tab, sl.slot, s_tid());
        s_held_add(s, 1);
    }
}

/* Whether this thread holds mutex on its node's cache word. */
static bool s_holds_word(cairn_sync_t *s, const char *mutex)
{
    synctab_slot_t *slot;
    s_slot_t sl;

    if (!s_slot_of(s, mutex, &sl))
        return false;
    slot = &sl.table->tab.slots[sl.slot];
    return atomic_load(&slot->gen) == sl.gen &&
           (atomic_load(&slot->word) & SYNCTAB_TID_MASK) ==
               ((uint32_t)s_tid() & SYNCTAB_TID_MASK);
}

/* The phased wait for a mutex held on a cache word (see the top). */
static int s_cond_wait_word(cairn_sync_t *s, Cairn__Syncd__CondWaitRequest *cw,
                            const s_wait_t *w, cairn_sync_grant_t *g,
                            cairn_error_t *err)
{
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *prep = NULL;
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;
    bool timed_out = false;
    cairn_error_t e2;
    int r, r2;

    cw->phase = CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_PREPARE;
    r = s_cond_call(s, cw, w, &prep, err);
    if (r < 0)
        return r;           /* not queued: the mutex is still ours */
    s_word_unlock(s, cw->mutex);
    cw->phase = CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_WAIT;
    r = s_cond_call(s, cw, w, &reply, err);
    if (r == -ETIMEDOUT ||
        (r == 0 && reply->msg_case == CAIRN__SYNCD__REPLY__MSG_COND_REPLY &&
         reply->cond_reply->timed_out))
        timed_out = true;
    if (r < 0) {
        /* whatever went wrong, the waiter goes and the mutex comes back */
        cw->phase = CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_CANCEL;
        s_reply_free(prep);
        prep = NULL;
        s_cond_call(s, cw, w, &prep, &e2);
    }
    r2 = cairn_mutex_lock(s, cw->mutex, CAIRN_SYNC_FOREVER, g, &e2);
    if (r2 < 0 && r2 != -EOWNERDEAD) {
        if (err)
            *err = e2;
        return r2;
    }
    if (timed_out)
        return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                               "timeout: no signal within the time given");
    if (r < 0)
        return r;
    if (r2 == -EOWNERDEAD && err)
        *err = e2;
    return r2;
}

int cairn_cond_wait(cairn_sync_t *s, const char *cond, const char *mutex,
                    int64_t timeout_ms, cairn_sync_grant_t *g,
                    cairn_error_t *err)
{
    Cairn__Syncd__CondWaitRequest cw = CAIRN__SYNCD__COND_WAIT_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    Cairn__Syncd__Spec spec = CAIRN__SYNCD__SPEC__INIT;
    _cleanup_(s_reply_freep) Cairn__Syncd__Reply *reply = NULL;
    s_wait_t w = s_wait_start(timeout_ms);
    const Cairn__Syncd__CondReply *cr;
    s_name_t *mn;
    uint32_t home = 0;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(cond, err)) < 0 || (r = s_check_name(mutex, err)) < 0)
        return r;
    s_spec_of(s, cond, CAIRN_SYNC_CONDVAR, &spec);
    h.tid = s_tid();
    cw.name = (char *)cond;
    cw.mutex = (char *)mutex;
    cw.holder = &h;
    cw.tag = s_new_tag();
    cw.shared = spec.shared;
    if (s_holds_word(s, mutex))
        return s_cond_wait_word(s, &cw, &w, g, err);
    cw.phase = CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_ALL;
    r = s_cond_call(s, &cw, &w, &reply, err);
    if (r < 0)
        return r;
    if (reply->msg_case != CAIRN__SYNCD__REPLY__MSG_COND_REPLY)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "syncd answered a wait on %s with another "
                               "reply", cond);
    cr = reply->cond_reply;
    s_adopt_if_ours(s, mutex);
    pthread_mutex_lock(&s->lock);
    mn = s_name_get(s, mutex, false);
    if (mn)
        home = mn->home;
    pthread_mutex_unlock(&s->lock);
    s_grant_set(g, cr->token, home, false, cr->owner_died);
    if (cr->timed_out)
        return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                               "timeout: no signal on %s within %lld ms", cond,
                               (long long)timeout_ms);
    if (cr->owner_died)
        return cairn_error_set(err, -EOWNERDEAD, CAIRN_OK,
                               "the previous holder of %s died holding it",
                               mutex);
    return 0;
}

static int s_signal(cairn_sync_t *s, const char *cond, bool broadcast,
                    cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__CondSignalRequest cs = CAIRN__SYNCD__COND_SIGNAL_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(cond, err)) < 0)
        return r;
    h.tid = s_tid();
    cs.name = (char *)cond;
    cs.broadcast = broadcast;
    cs.holder = &h;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL;
    req.cond_signal = &cs;
    return s_call_simple(s, &req, err);
}

int cairn_cond_signal(cairn_sync_t *s, const char *cond, cairn_error_t *err)
{
    return s_signal(s, cond, false, err);
}

int cairn_cond_broadcast(cairn_sync_t *s, const char *cond, cairn_error_t *err)
{
    return s_signal(s, cond, true, err);
}

/* ---- declare, destroy -------------------------------------------------- */

int cairn_sync_declare(cairn_sync_t *s, const char *name,
                       const cairn_sync_spec_t *spec, cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__DeclareRequest dr = CAIRN__SYNCD__DECLARE_REQUEST__INIT;
    Cairn__Syncd__Spec sp = CAIRN__SYNCD__SPEC__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    s_name_t *n;
    int r;

    if (!s || !spec)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no session or spec");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    if (spec->kind < CAIRN_SYNC_MUTEX || spec->kind > CAIRN_SYNC_CONDVAR)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "unknown object kind %d", (int)spec->kind);
    if (spec->kind == CAIRN_SYNC_BARRIER && spec->value == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "a barrier has at least 1 party");
    sp.kind = (Cairn__Syncd__Kind)spec->kind;
    sp.value = spec->value;
    sp.shared = spec->shared;
    sp.no_cache = spec->no_cache;
    h.tid = s_tid();
    dr.name = (char *)name;
    dr.spec = &sp;
    dr.holder = &h;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_DECLARE;
    req.declare = &dr;
    r = s_call_simple(s, &req, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    n = s_name_get(s, name, true);
    if (n) {
        n->declared = true;
        n->spec = *spec;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int cairn_sync_destroy(cairn_sync_t *s, const char *name, cairn_error_t *err)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__DestroyRequest dr = CAIRN__SYNCD__DESTROY_REQUEST__INIT;
    Cairn__Syncd__Holder h = CAIRN__SYNCD__HOLDER__INIT;
    cairn_error_t e = { 0 };
    int r;

    if (!s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no session");
    if ((r = s_check_name(name, err)) < 0)
        return r;
    h.tid = s_tid();
    dr.name = (char *)name;
    dr.holder = &h;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_DESTROY;
    req.destroy = &dr;
    r = s_call_simple(s, &req, &e);
    /* pthread_mutex_destroy's EBUSY: held or waited on */
    if (r == -EREMOTEIO && e.code == CAIRN_FAILED_PRECONDITION)
        r = -EBUSY;
    if (r < 0 && err)
        *err = e;
    return r;
}
