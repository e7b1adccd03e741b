/* test-sync.c - unit tests of libcairn's sync API (libclient/sync.c)
 * against a fake syncd.
 *
 * The fake is a ROUTER on ipc://<mkdtemp dir>/syncd.sock served by a
 * thread; each test gives it a script (a function from the request's
 * number and body to an answer: a reply, a Status, or nothing) and reads
 * back what it received: the oneof case, name, tag, timeout and mode of
 * every request. That checks what goes over the wire -- the same tag when
 * a wait is sent again after a call without an answer, the time left in
 * timeout_ms -- and the errno each Status becomes. For the fast path the
 * fake plays syncd's cache on a real table (lib/synctab): it grants the
 * word to the calling thread and names the slot, after which locks and
 * unlocks must send nothing, until the fake marks the slot revoked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/sync.h"
#include "cairn/wire.h"
#include "syncd.pb-c.h"
#include "synctab/synctab.h"
#include "util/clock.h"

#define MAX_SEEN 32

typedef struct seen {
    int msg_case;
    char name[64];
    uint64_t tag;
    int64_t timeout_ms;
    int mode;
    int phase;
} seen_t;

/* What the fake answers: status code (0 OK), message, and for OK the
 * reply to send; answer=false: say nothing. */
typedef struct answer {
    bool answer;
    int code;
    const char *message;
    Cairn__Syncd__Reply *reply;   /* msg set, status filled by the fake */
} answer_t;

typedef answer_t (*script_fn)(int n, const Cairn__Syncd__Request *req);

static struct {
    char dir[64];
    char endpoint[128];
    void *zctx, *router;
    pthread_t thread;
    atomic_bool stop;
    atomic_int n_seen;
    seen_t seen[MAX_SEEN];
    script_fn script;
} fk;

/* Reply bodies a script may point at (one test at a time). */
static Cairn__Syncd__Reply s_rep;
static Cairn__Syncd__AcquireReply s_acq;
static Cairn__Syncd__BarrierReply s_bar;
static Cairn__Syncd__ReleaseReply s_rel;

static void fake_handle(const cairn_frames_t *f)
{
    Cairn__Header *hdr = NULL, rh;
    ProtobufCMessage *body = NULL;
    const Cairn__Syncd__Request *req;
    Cairn__Status st = CAIRN__STATUS__INIT;
    seen_t *s;
    answer_t a;
    int n;

    if (f->n != 3 ||
        cairn_wire_decode_header(cairn_frames_data(f, 1), cairn_frames_size(f, 1),
                                 &hdr, NULL) < 0)
        return;
    if (cairn_wire_decode_body(&cairn__syncd__request__descriptor,
                               cairn_frames_data(f, 2), cairn_frames_size(f, 2),
                               0, &body, NULL) < 0) {
        cairn__header__free_unpacked(hdr, NULL);
        return;
    }
    req = (const Cairn__Syncd__Request *)body;
    n = atomic_load(&fk.n_seen);
    s = &fk.seen[n < MAX_SEEN ? n : MAX_SEEN - 1];
    memset(s, 0, sizeof *s);
    s->msg_case = (int)req->msg_case;
    if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
        snprintf(s->name, sizeof s->name, "%s", req->acquire->name);
        s->tag = req->acquire->tag;
        s->timeout_ms = req->acquire->timeout_ms;
        s->mode = req->acquire->mode;
    } else if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_RELEASE) {
        snprintf(s->name, sizeof s->name, "%s", req->release->name);
        s->mode = req->release->mode;
    } else if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_BARRIER) {
        s->tag = req->barrier->tag;
        s->timeout_ms = req->barrier->timeout_ms;
    }
    atomic_store(&fk.n_seen, n + 1);
    a = fk.script(n + 1, req);
    if (a.answer) {
        cairn_wire_reply_header(hdr, 1, &rh);
        zmq_send(fk.router, cairn_frames_data(f, 0), cairn_frames_size(f, 0),
                 ZMQ_SNDMORE);
        if (a.code) {
            cairn_wire_send_error(fk.router, hdr, 1, a.code, a.message, 0);
        } else {
            Cairn__Syncd__Reply *rep = a.reply;

            rep->status = &st;
            cairn_wire_send(fk.router, &rh, &rep->base, 0);
        }
    }
    protobuf_c_message_free_unpacked(body, NULL);
    cairn__header__free_unpacked(hdr, NULL);
}

static void *fake_main(void *arg)
{
    zmq_pollitem_t item = { .socket = fk.router, .events = ZMQ_POLLIN };

    (void)arg;
    while (!atomic_load(&fk.stop)) {
        cairn_frames_t f = { 0 };

        if (zmq_poll(&item, 1, 20) <= 0)
            continue;
        if (cairn_wire_recv(fk.router, &f, ZMQ_DONTWAIT) == 0)
            fake_handle(&f);
        cairn_frames_free(&f);
    }
    return NULL;
}

static void fake_start(script_fn script)
{
    int linger = 0;

    fk.script = script;
    fk.zctx = zmq_ctx_new();
    fk.router = zmq_socket(fk.zctx, ZMQ_ROUTER);
    zmq_setsockopt(fk.router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(fk.router, fk.endpoint), 0);
    cr_assert_eq(pthread_create(&fk.thread, NULL, fake_main, NULL), 0);
}

static void setup(void)
{
    memset(&fk, 0, sizeof fk);
    snprintf(fk.dir, sizeof fk.dir, "/tmp/cairn-test-sync-XXXXXX");
    cr_assert_not_null(mkdtemp(fk.dir));
    snprintf(fk.endpoint, sizeof fk.endpoint, "ipc://%s/syncd.sock", fk.dir);
    s_rep = (Cairn__Syncd__Reply)CAIRN__SYNCD__REPLY__INIT;
    s_acq = (Cairn__Syncd__AcquireReply)CAIRN__SYNCD__ACQUIRE_REPLY__INIT;
    s_bar = (Cairn__Syncd__BarrierReply)CAIRN__SYNCD__BARRIER_REPLY__INIT;
    s_rel = (Cairn__Syncd__ReleaseReply)CAIRN__SYNCD__RELEASE_REPLY__INIT;
}

static void teardown(void)
{
    char path[160];

    if (fk.zctx) {
        atomic_store(&fk.stop, true);
        pthread_join(fk.thread, NULL);
        zmq_close(fk.router);
        zmq_ctx_term(fk.zctx);
    }
    snprintf(path, sizeof path, "%s/syncd.sock", fk.dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/t.tab", fk.dir);
    unlink(path);
    rmdir(fk.dir);
}

TestSuite(sync, .init = setup, .fini = teardown);

static answer_t s_ok_acquire(void)
{
    s_rep.msg_case = CAIRN__SYNCD__REPLY__MSG_ACQUIRE_REPLY;
    s_rep.acquire_reply = &s_acq;
    return (answer_t){ .answer = true, .reply = &s_rep };
}

static answer_t s_ok_release(void)
{
    s_rep.msg_case = CAIRN__SYNCD__REPLY__MSG_RELEASE_REPLY;
    s_rep.release_reply = &s_rel;
    return (answer_t){ .answer = true, .reply = &s_rep };
}

/* ---- Status -> errno ----------------------------------------------------- */

static int s_code;
static const char *s_msg;

static answer_t script_status(int n, const Cairn__Syncd__Request *req)
{
    return (answer_t){ .answer = true, .code = s_code, .message = s_msg };
}

Test(sync, status_becomes_the_errno_of_sync_h)
{
    static const struct { int code; const char *msg; int expect; } rows[] = {
        { CAIRN_BUSY, "taken", -EBUSY },
        { CAIRN_TIMEOUT, "timed out", -ETIMEDOUT },
        { CAIRN_PERMISSION_DENIED, "not yours", -EACCES },
        { CAIRN_INVALID_ARGUMENT, "bad", -EINVAL },
        { CAIRN_FAILED_PRECONDITION, SYNCD_MSG_DEADLOCK "yours already", -EDEADLK },
        { CAIRN_FAILED_PRECONDITION, SYNCD_MSG_NOT_RECOVERABLE "x", -ENOTRECOVERABLE },
        { CAIRN_FAILED_PRECONDITION, "m is a semaphore, not a mutex", -EREMOTEIO },
        { CAIRN_INTERNAL, "oops", -EREMOTEIO },
    };
    cairn_error_t e;
    cairn_sync_t *s;

    fake_start(script_status);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_assert_not_null(s);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        s_code = rows[i].code;
        s_msg = rows[i].msg;
        cairn_error_clear(&e);
        cr_expect_eq(cairn_mutex_lock(s, "m", 0, NULL, &e), rows[i].expect,
                     "row %zu", i);
        cr_expect_eq(e.code, rows[i].code, "row %zu: code kept", i);
        cr_expect_str_eq(e.message, rows[i].msg);
    }
    s_code = CAIRN_FAILED_PRECONDITION;
    s_msg = SYNCD_MSG_NOT_HOLDER "no";
    cr_expect_eq(cairn_mutex_unlock(s, "m", &e), -EPERM);
    s_msg = "held";
    cr_expect_eq(cairn_sync_destroy(s, "m", &e), -EBUSY);
    cairn_sync_close(s);
}

/* ---- grants, waits, tags ------------------------------------------------- */

static answer_t script_grant(int n, const Cairn__Syncd__Request *req)
{
    s_acq.token = 77;
    s_acq.home = 2;
    s_acq.owner_died = n == 2;
    return s_ok_acquire();
}

Test(sync, grant_and_owner_died)
{
    cairn_sync_grant_t g = { 0 };
    cairn_error_t e;
    cairn_sync_t *s;

    fake_start(script_grant);
    s = cairn_sync_open(fk.endpoint, &e);
    cr_assert_not_null(s, "%s", e.message);
    cr_assert_eq(cairn_mutex_lock(s, "m", 1500, &g, &e), 0, "%s", e.message);
    cr_expect_eq(g.token, 77u);
    cr_expect_eq(g.home, 2u);
    cr_expect_not(g.cached);
    cr_expect_eq(fk.seen[0].msg_case, CAIRN__SYNCD__REQUEST__MSG_ACQUIRE);
    cr_expect_str_eq(fk.seen[0].name, "m");
    cr_expect_eq(fk.seen[0].mode, CAIRN__SYNCD__MODE__MODE_LOCK);
    cr_expect(fk.seen[0].timeout_ms <= 1500 && fk.seen[0].timeout_ms > 1300,
              "the time left: %lld", (long long)fk.seen[0].timeout_ms);
    cr_expect_neq(fk.seen[0].tag, 0u);
    cr_expect_eq(cairn_mutex_lock(s, "m", -1, &g, &e), -EOWNERDEAD);
    cr_expect(g.owner_died);
    cr_expect_eq(fk.seen[1].timeout_ms, -1);
    cr_expect_neq(fk.seen[1].tag, fk.seen[0].tag, "a new tag per acquire");
    cairn_sync_close(s);
}

static answer_t script_drop_first(int n, const Cairn__Syncd__Request *req)
{
    if (n == 1)
        return (answer_t){ .answer = false };
    s_acq.token = 5;
    return s_ok_acquire();
}

Test(sync, a_wait_without_answer_goes_again_with_the_same_tag, .timeout = 30)
{
    cairn_sync_grant_t g = { 0 };
    cairn_error_t e;
    cairn_sync_t *s;
    uint64_t t0 = cairn_now_ms();

    fake_start(script_drop_first);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_assert_eq(cairn_mutex_lock(s, "m", CAIRN_SYNC_FOREVER, &g, &e), 0, "%s",
                 e.message);
    cr_expect_eq(g.token, 5u);
    cr_assert_eq(atomic_load(&fk.n_seen), 2);
    cr_expect_eq(fk.seen[1].tag, fk.seen[0].tag, "the same logical acquire");
    cr_expect_eq(fk.seen[1].timeout_ms, -1);
    cr_expect_geq(cairn_now_ms() - t0, 4500u, "after one chunk of ~5 s");
    cairn_sync_close(s);
}

static answer_t script_never(int n, const Cairn__Syncd__Request *req)
{
    return (answer_t){ .answer = false };
}

Test(sync, a_finite_wait_ends_in_time_without_answer)
{
    cairn_error_t e;
    cairn_sync_t *s;
    uint64_t t0 = cairn_now_ms();

    fake_start(script_never);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_expect_eq(cairn_mutex_lock(s, "m", 200, NULL, &e), -ETIMEDOUT);
    cr_expect_eq(e.code, CAIRN_TIMEOUT);
    cr_expect_lt(cairn_now_ms() - t0, 2500u);
    cairn_sync_close(s);
}

static answer_t script_unavailable_twice(int n, const Cairn__Syncd__Request *req)
{
    if (n <= 2)
        return (answer_t){ .answer = true, .code = CAIRN_UNAVAILABLE,
                           .message = "recovering" };
    return s_ok_release();
}

Test(sync, short_requests_ask_again_while_unavailable)
{
    cairn_error_t e;
    cairn_sync_t *s;

    fake_start(script_unavailable_twice);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_expect_eq(cairn_sem_post(s, "sem", &e), 0, "%s", e.message);
    cr_expect_eq(atomic_load(&fk.n_seen), 3);
    cr_expect_eq(fk.seen[2].mode, CAIRN__SYNCD__MODE__MODE_SEM);
    cairn_sync_close(s);
}

static answer_t script_rw(int n, const Cairn__Syncd__Request *req)
{
    if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_BARRIER) {
        s_bar.serial = true;
        s_bar.generation = 9;
        s_rep.msg_case = CAIRN__SYNCD__REPLY__MSG_BARRIER_REPLY;
        s_rep.barrier_reply = &s_bar;
        return (answer_t){ .answer = true, .reply = &s_rep };
    }
    if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE)
        return s_ok_acquire();
    return s_ok_release();
}

Test(sync, rwlock_unlock_names_the_mode_held_and_barrier_serial)
{
    cairn_error_t e;
    cairn_sync_t *s;
    uint64_t gen = 0;

    fake_start(script_rw);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_expect_eq(cairn_rwlock_unlock(s, "rw", &e), -EPERM, "nothing held");
    cr_expect_eq(atomic_load(&fk.n_seen), 0, "decided here");
    cr_assert_eq(cairn_rwlock_rdlock(s, "rw", -1, NULL, &e), 0);
    cr_assert_eq(cairn_rwlock_unlock(s, "rw", &e), 0);
    cr_expect_eq(fk.seen[1].msg_case, CAIRN__SYNCD__REQUEST__MSG_RELEASE);
    cr_expect_eq(fk.seen[1].mode, CAIRN__SYNCD__MODE__MODE_READ);
    cr_assert_eq(cairn_rwlock_wrlock(s, "rw", -1, NULL, &e), 0);
    cr_assert_eq(cairn_rwlock_unlock(s, "rw", &e), 0);
    cr_expect_eq(fk.seen[3].mode, CAIRN__SYNCD__MODE__MODE_WRITE);
    cr_expect_eq(cairn_barrier_wait(s, "b", 3, 1000, &gen, &e), 1);
    cr_expect_eq(gen, 9u);
    cr_expect_eq(cairn_barrier_wait(s, "b", 0, 1000, &gen, &e), -EINVAL);
    cairn_sync_close(s);
}

Test(sync, bad_arguments_are_refused_before_sending)
{
    char longname[CAIRN_SYNC_NAME_MAX + 2];
    cairn_error_t e;
    cairn_sync_t *s;

    fake_start(script_never);
    cr_expect_null(cairn_sync_open("tcp://127.0.0.1:1", &e));
    cr_expect_eq(e.code, CAIRN_INVALID_ARGUMENT);
    s = cairn_sync_open(fk.endpoint, NULL);
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_expect_eq(cairn_mutex_lock(s, "", 0, NULL, &e), -EINVAL);
    cr_expect_eq(cairn_mutex_lock(s, longname, 0, NULL, &e), -EINVAL);
    cr_expect_eq(cairn_mutex_lock(s, NULL, 0, NULL, &e), -EINVAL);
    cr_expect_eq(cairn_mutex_lock(NULL, "m", 0, NULL, &e), -EINVAL);
    cr_expect_eq(atomic_load(&fk.n_seen), 0);
    cairn_sync_close(s);
}

/* ---- the fast path --------------------------------------------------------- */

static synctab_t s_tab;
static char s_tab_path[160];
#define FSLOT 11u

/* syncd's cache, played: the first acquire is granted on the word for the
 * caller's thread; a slot_release is answered OK. */
static answer_t script_cache(int n, const Cairn__Syncd__Request *req)
{
    if (req->msg_case == CAIRN__SYNCD__REQUEST__MSG_ACQUIRE) {
        uint64_t token = 0;
        bool died;

        synctab_grant_free(&s_tab, FSLOT, 1, req->acquire->holder->tid, &token,
                           &died);
        s_acq.token = token;
        s_acq.slot = FSLOT;
        s_acq.slot_gen = atomic_load(&s_tab.slots[FSLOT].gen);
        s_acq.table = s_tab_path;
        return s_ok_acquire();
    }
    return s_ok_release();
}

Test(sync, fast_path_sends_nothing_until_revoked)
{
    cairn_sync_grant_t g = { 0 };
    cairn_error_t e;
    cairn_sync_t *s;
    bool died;

    snprintf(s_tab_path, sizeof s_tab_path, "%s/t.tab", fk.dir);
    cr_assert_eq(synctab_create(&s_tab, s_tab_path, (uint32_t)getuid(), 1, 0, &e),
                 0, "%s", e.message);
    synctab_assign(&s_tab, FSLOT, synctab_name_hash("fm"), 1000, 0);
    synctab_unpark(&s_tab, FSLOT);
    fake_start(script_cache);
    s = cairn_sync_open(fk.endpoint, NULL);
    cr_assert_eq(cairn_mutex_lock(s, "fm", -1, &g, &e), 0, "%s", e.message);
    cr_expect_not(g.cached, "the first comes from syncd");
    cr_expect_eq(g.token, 1001u);
    cr_expect_eq(cairn_mutex_unlock(s, "fm", &e), 0);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(cairn_mutex_lock(s, "fm", -1, &g, &e), 0);
        cr_assert(g.cached);
        cr_assert_eq(g.token, 1002u + (uint64_t)i);
        cr_assert_eq(cairn_mutex_unlock(s, "fm", &e), 0);
    }
    cr_expect_eq(atomic_load(&fk.n_seen), 1, "nothing sent on the word");
    cr_expect_eq(cairn_mutex_lock(s, "fm", 0, &g, &e), 0);
    cr_expect_eq(cairn_mutex_lock(s, "fm", 0, &g, &e), -EDEADLK);
    cr_expect_eq(synctab_try_park(&s_tab, FSLOT, &died), 0, "revoking");
    cr_expect_eq(cairn_mutex_unlock(s, "fm", &e), 0);
    cr_expect_eq(atomic_load(&fk.n_seen), 2, "the parked word is reported");
    cr_expect_eq(fk.seen[1].msg_case, CAIRN__SYNCD__REQUEST__MSG_SLOT_RELEASE);
    cr_expect_eq(atomic_load(&s_tab.slots[FSLOT].word), SYNCTAB_PARKED);
    cairn_sync_close(s);
    synctab_unmap(&s_tab);
}
