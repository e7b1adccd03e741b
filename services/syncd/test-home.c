/* test-home.c - syncd's object state machine (home.c) through its public
 * API: a fake clock, and callbacks that record every answer and revoke.
 *
 * Each test drives one rule of home.h with requests built by small
 * helpers (rq_t: designated initialisers, unset node/pid/tid default to
 * node 1, pid 100, tid = pid) and asserts on what came back: the direct
 * result, the answers given to queued cookies (and the order), the
 * revokes asked, and what home_show says.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "home.h"
#include "synctab/synctab.h"

#define KIND(k) CAIRN__SYNCD__KIND__KIND_##k
#define MODE(m) CAIRN__SYNCD__MODE__MODE_##m
#define PHASE(p) CAIRN__SYNCD__COND_WAIT_REQUEST__PHASE__PHASE_##p

typedef struct answer {
    void *cookie;              /* whose */
    home_result_t r;           /* what */
} answer_t;

typedef struct revoke_rec {
    uint32_t node;             /* asked of */
    char name[256];            /* which mutex */
    uint64_t grant;            /* which grant */
} revoke_rec_t;

static struct fixture {
    uint64_t now_us;           /* the fake clock */
    uint64_t now_ms;           /* the fake monotonic clock */
    answer_t answers[4096];     /* in order */
    size_t n_answers;
    revoke_rec_t revokes[64];  /* in order */
    size_t n_revokes;
} F;

static home_t *H;
static char C[256];            /* cookies: &C[i] */
#define CK(i) ((void *)&C[i])

static void on_answer(void *ud, void *cookie, const home_result_t *r)
{
    struct fixture *f = ud;
    cr_assert_lt(f->n_answers, 4096);
    f->answers[f->n_answers++] = (answer_t){ cookie, *r };
}

static void on_revoke(void *ud, uint32_t node, const char *name, uint64_t grant)
{
    struct fixture *f = ud;
    cr_assert_lt(f->n_revokes, 64);
    revoke_rec_t *v = &f->revokes[f->n_revokes++];
    v->node = node;
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->grant = grant;
}

static uint64_t on_now_us(void *ud) { return ((struct fixture *)ud)->now_us; }
static uint64_t on_now_ms(void *ud) { return ((struct fixture *)ud)->now_ms; }

static const home_ops_t OPS = {
    .answer = on_answer, .revoke = on_revoke,
    .now_us = on_now_us, .now_ms = on_now_ms,
};

static home_t *s_new_home(uint32_t self)
{
    home_t *h = home_new(self, &OPS, &F);
    cr_assert_not_null(h);
    return h;
}

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    F.now_us = 1000000;        /* 1 s: tokens start at 16e6 */
    F.now_ms = 5000;
    H = s_new_home(1);
}

static void teardown(void)
{
    H = home_free(H);
}

TestSuite(home, .init = setup, .fini = teardown);

/* ---- request builders ---------------------------------------------------- */

typedef struct rq {
    const char *name;
    int mode;
    uint32_t node;
    int32_t pid, tid;
    uint32_t uid;
    uint64_t tag;
    bool try_once;             /* timeout 0, else -1 (forever) */
    bool cache_ok;
    int kind;
    uint32_t value;
    bool shared, no_cache;
    uint32_t count;
} rq_t;

static Cairn__Syncd__Holder s_holder(const rq_t *q)
{
    Cairn__Syncd__Holder ho;
    cairn__syncd__holder__init(&ho);
    ho.node = q->node ? q->node : 1;
    ho.pid = q->pid ? q->pid : 100;
    ho.tid = q->tid ? q->tid : ho.pid;
    ho.uid = q->uid;
    return ho;
}

static int s_acq(const rq_t *q, void *cookie, home_result_t *r)
{
    Cairn__Syncd__AcquireRequest a;
    Cairn__Syncd__Spec sp;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__acquire_request__init(&a);
    cairn__syncd__spec__init(&sp);
    sp.kind = q->kind;
    sp.value = q->value;
    sp.shared = q->shared;
    sp.no_cache = q->no_cache;
    a.name = (char *)q->name;
    a.spec = &sp;
    a.mode = q->mode ? q->mode : MODE(LOCK);
    a.timeout_ms = q->try_once ? 0 : -1;
    a.holder = &ho;
    a.tag = q->tag;
    a.cache_ok = q->cache_ok;
    a.count = q->count;
    memset(r, 0x5a, sizeof(*r));
    return home_acquire(H, &a, q->uid, cookie, r);
}

static int s_rel(const rq_t *q, home_result_t *r)
{
    Cairn__Syncd__ReleaseRequest a;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__release_request__init(&a);
    a.name = (char *)q->name;
    a.mode = q->mode ? q->mode : MODE(LOCK);
    a.holder = &ho;
    a.count = q->count;
    memset(r, 0x5a, sizeof(*r));
    return home_release(H, &a, q->uid, r);
}

static int s_consistent(const rq_t *q, home_result_t *r)
{
    Cairn__Syncd__ConsistentRequest a;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__consistent_request__init(&a);
    a.name = (char *)q->name;
    a.holder = &ho;
    return home_consistent(H, &a, q->uid, r);
}

static int s_barrier(const rq_t *q, uint32_t parties, void *cookie,
                     home_result_t *r)
{
    Cairn__Syncd__BarrierRequest a;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__barrier_request__init(&a);
    a.name = (char *)q->name;
    a.parties = parties;
    a.timeout_ms = -1;
    a.holder = &ho;
    a.tag = q->tag;
    a.shared = q->shared;
    return home_barrier(H, &a, q->uid, cookie, r);
}

static int s_cond(const rq_t *q, const char *mutex, int phase, void *cookie,
                  home_result_t *r)
{
    Cairn__Syncd__CondWaitRequest a;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__cond_wait_request__init(&a);
    a.name = (char *)q->name;
    a.mutex = (char *)mutex;
    a.timeout_ms = -1;
    a.holder = &ho;
    a.tag = q->tag;
    a.phase = phase;
    a.shared = q->shared;
    return home_cond(H, &a, q->uid, cookie, r);
}

static int s_signal(const rq_t *q, bool broadcast, home_result_t *r)
{
    Cairn__Syncd__CondSignalRequest a;
    Cairn__Syncd__Holder ho = s_holder(q);

    cairn__syncd__cond_signal_request__init(&a);
    a.name = (char *)q->name;
    a.broadcast = broadcast;
    a.holder = &ho;
    return home_cond_signal(H, &a, q->uid, r);
}

static int s_destroy(const char *name, uint32_t uid, home_result_t *r)
{
    Cairn__Syncd__DestroyRequest a;
    Cairn__Syncd__Holder ho = s_holder(&(rq_t){ 0 });

    cairn__syncd__destroy_request__init(&a);
    a.name = (char *)name;
    a.holder = &ho;
    return home_destroy(H, &a, uid, r);
}

#define ACQ(r, cookie, ...) s_acq(&(rq_t){ __VA_ARGS__ }, cookie, r)
#define REL(r, ...) s_rel(&(rq_t){ __VA_ARGS__ }, r)

/* The answer given to cookie, NULL if none; fails if given twice. */
static const home_result_t *s_answer(void *cookie)
{
    const home_result_t *found = NULL;
    for (size_t i = 0; i < F.n_answers; i++)
        if (F.answers[i].cookie == cookie) {
            cr_assert_null(found, "cookie answered twice");
            found = &F.answers[i].r;
        }
    return found;
}

/* An arena for show/names/hand_over: every block freed at teardown of the
 * test through s_arena_free. */
typedef struct arena {
    void *blocks[4096];
    size_t n;
} arena_t;

static void *s_alloc(void *ctx, size_t size)
{
    arena_t *a = ctx;
    cr_assert_lt(a->n, 4096);
    return a->blocks[a->n++] = calloc(1, size);
}

static void s_arena_free(arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    a->n = 0;
}

/* show into info (caller's arena). */
static bool s_show(const char *name, Cairn__Syncd__ObjectInfo *info, arena_t *a)
{
    cairn__syncd__object_info__init(info);
    return home_show(H, name, info, s_alloc, a);
}

static uint64_t TOKEN_FLOOR(void) { return F.now_us << 4; }

/* ---- mutex ----------------------------------------------------------------- */

Test(home, mutex_excludes_and_serves_fifo)
{
    home_result_t r;
    uint64_t t0;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .pid = 1), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_geq(r.token, TOKEN_FLOOR());
    cr_assert(!r.cached && !r.owner_died);
    t0 = r.token;
    for (int i = 2; i <= 4; i++)
        cr_assert_eq(ACQ(&r, CK(i), .name = "m", .pid = i), HOME_QUEUED);
    cr_assert_eq(F.n_answers, 0);

    /* not the holder: refused, nothing changes */
    cr_assert_eq(REL(&r, .name = "m", .pid = 3), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strncmp(r.message, SYNCD_MSG_NOT_HOLDER,
                      strlen(SYNCD_MSG_NOT_HOLDER)) == 0, "%s", r.message);
    cr_assert_eq(F.n_answers, 0);

    /* each release hands it to the next in arrival order, tokens rising */
    uint64_t prev = t0;
    for (int i = 1; i <= 3; i++) {
        cr_assert_eq(REL(&r, .name = "m", .pid = i), HOME_DONE);
        cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
        cr_assert_eq(F.n_answers, (size_t)i);
        cr_assert_eq(F.answers[i - 1].cookie, CK(i + 1));
        cr_assert_eq(F.answers[i - 1].r.code, CAIRN_OK);
        cr_assert_gt(F.answers[i - 1].r.token, prev);
        prev = F.answers[i - 1].r.token;
        /* only the new holder may release: the old one is refused */
        cr_assert_eq(REL(&r, .name = "m", .pid = i), HOME_DONE);
        cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    }
    cr_assert_eq(REL(&r, .name = "m", .pid = 4), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);

    arena_t a = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &a));
    cr_assert_str_eq(info.state, "free");
    cr_assert_eq(info.token, prev);
    cr_assert_eq(info.n_holders, 0);
    s_arena_free(&a);
}

Test(home, mutex_threads_of_one_process_are_different_holders)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .pid = 7, .tid = 70), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .pid = 7, .tid = 71), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "m", .pid = 7, .tid = 71), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION, "another thread's unlock");
    cr_assert_eq(REL(&r, .name = "m", .pid = 7, .tid = 70), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_not_null(s_answer(CK(1)));
}

Test(home, mutex_relock_is_deadlock_and_retry_is_idempotent)
{
    home_result_t r, first;

    cr_assert_eq(ACQ(&first, CK(0), .name = "m", .tag = 11), HOME_DONE);
    /* the same tag again (a lost reply): the same grant */
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .tag = 11), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(r.token, first.token);
    /* another tag (or none) by the same thread: deadlock */
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .tag = 12), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strncmp(r.message, SYNCD_MSG_DEADLOCK,
                      strlen(SYNCD_MSG_DEADLOCK)) == 0, "%s", r.message);
    cr_assert_eq(ACQ(&r, CK(2), .name = "m"), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);

    /* a waiter retrying re-binds: only the new cookie is answered */
    cr_assert_eq(ACQ(&r, CK(3), .name = "m", .pid = 2, .tag = 5), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(4), .name = "m", .pid = 2, .tag = 5), HOME_QUEUED);
    cr_assert_not(home_cancel(H, CK(3)), "the old cookie is no longer waiting");
    arena_t a = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &a));
    cr_assert_eq(info.n_waiters, 1, "a retry does not queue twice");
    s_arena_free(&a);
    cr_assert_eq(REL(&r, .name = "m"), HOME_DONE);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(4));
    cr_assert_gt(F.answers[0].r.token, first.token);
}

Test(home, trylock_is_busy_and_leaves_nothing_queued)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m"), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .pid = 2, .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);
    cr_assert_not(home_cancel(H, CK(1)));
    cr_assert_eq(REL(&r, .name = "m"), HOME_DONE);
    cr_assert_eq(F.n_answers, 0);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .pid = 2, .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "free now: the try succeeds");
}

Test(home, tokens_strictly_increase_against_the_clock_and_revokes)
{
    home_result_t r;
    uint64_t prev = 0;

    /* the clock floor: a later grant is at least now_us << 4 */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(ACQ(&r, CK(0), .name = "t"), HOME_DONE);
        cr_assert_gt(r.token, prev);
        cr_assert_geq(r.token, TOKEN_FLOOR());
        prev = r.token;
        cr_assert_eq(REL(&r, .name = "t"), HOME_DONE);
        F.now_us += 10;
    }
    /* the clock goes back: still strictly increasing */
    F.now_us -= 500000;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ACQ(&r, CK(0), .name = "t"), HOME_DONE);
        cr_assert_eq(r.token, prev + 1);
        prev = r.token;
        cr_assert_eq(REL(&r, .name = "t"), HOME_DONE);
    }
    /* a cache handing out tokens far above the floor: the next is above */
    cr_assert_eq(ACQ(&r, CK(0), .name = "t", .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    uint64_t grant = r.token;
    cr_assert_eq(ACQ(&r, CK(1), .name = "t", .node = 2), HOME_QUEUED);
    cr_assert_eq(F.n_revokes, 1);
    home_revoked(H, "t", grant, grant + 1000000, false, false);
    const home_result_t *a = s_answer(CK(1));
    cr_assert_not_null(a);
    cr_assert_eq(a->token, grant + 1000001);
}

/* ---- owner died ------------------------------------------------------------ */

Test(home, owner_died_then_consistent_then_normal)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 2, .pid = 20), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .node = 3, .pid = 30), HOME_QUEUED);
    int32_t dead = 20;
    home_gone(H, 2, &dead, 1);
    const home_result_t *a = s_answer(CK(1));
    cr_assert_not_null(a, "the next waiter got it at the death");
    cr_assert_eq(a->code, CAIRN_OK);
    cr_assert(a->owner_died);

    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &ar));
    cr_assert_str_eq(info.state, "owner-died");
    s_arena_free(&ar);

    /* only the holder may make it consistent */
    cr_assert_eq(s_consistent(&(rq_t){ .name = "m", .node = 4 }, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert_eq(s_consistent(&(rq_t){ .name = "m", .node = 3, .pid = 30 }, &r),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
    cr_assert_eq(s_consistent(&(rq_t){ .name = "m", .node = 3, .pid = 30 }, &r),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT, "consistent twice");
    cr_assert_eq(REL(&r, .name = "m", .node = 3, .pid = 30), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .node = 4), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_not(r.owner_died, "consistent again: a normal grant");
}

Test(home, owner_died_unlocked_is_not_recoverable_until_destroyed)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 2, .pid = 20), HOME_DONE);
    int32_t dead = 20;
    home_gone(H, 2, &dead, 1);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .node = 3), HOME_DONE);
    cr_assert(r.owner_died, "a free owner-died mutex says so at the grant");
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .node = 4), HOME_QUEUED);
    /* unlocked without consistent: the unlock works, then nothing does */
    cr_assert_eq(REL(&r, .name = "m", .node = 3), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    const home_result_t *a = s_answer(CK(2));
    cr_assert_not_null(a);
    cr_assert_eq(a->code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strncmp(a->message, SYNCD_MSG_NOT_RECOVERABLE,
                      strlen(SYNCD_MSG_NOT_RECOVERABLE)) == 0, "%s", a->message);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(ACQ(&r, CK(3), .name = "m", .node = 5), HOME_DONE);
        cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
        cr_assert(strncmp(r.message, SYNCD_MSG_NOT_RECOVERABLE,
                          strlen(SYNCD_MSG_NOT_RECOVERABLE)) == 0);
    }
    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &ar));
    cr_assert_str_eq(info.state, "not-recoverable");
    s_arena_free(&ar);
    cr_assert_eq(s_destroy("m", 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
    cr_assert_eq(ACQ(&r, CK(4), .name = "m", .node = 5), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_not(r.owner_died);
}

Test(home, holder_dying_while_inconsistent_keeps_it_owner_died)
{
    home_result_t r;
    int32_t p;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .pid = 20), HOME_DONE);
    p = 20;
    home_gone(H, 1, &p, 1);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .pid = 21), HOME_DONE);
    cr_assert(r.owner_died);
    p = 21;
    home_gone(H, 1, &p, 1);
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .pid = 22), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert(r.owner_died);
}

/* ---- rwlock ----------------------------------------------------------------- */

Test(home, rwlock_readers_share_writer_waits_and_blocks_later_readers)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(1), .name = "rw", .mode = MODE(READ), .pid = 2), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "readers share");
    cr_assert_eq(ACQ(&r, CK(2), .name = "rw", .mode = MODE(WRITE), .pid = 3), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(3), .name = "rw", .mode = MODE(READ), .pid = 4), HOME_QUEUED,
                 "a waiting writer blocks later readers");
    cr_assert_eq(ACQ(&r, CK(4), .name = "rw", .mode = MODE(READ), .pid = 5,
                     .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);
    /* a reader that holds a share gets another (no self-deadlock) */
    cr_assert_eq(ACQ(&r, CK(5), .name = "rw", .mode = MODE(READ), .pid = 1, .tag = 9),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    /* write while reading: deadlock */
    cr_assert_eq(ACQ(&r, CK(6), .name = "rw", .mode = MODE(WRITE), .pid = 2), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strncmp(r.message, SYNCD_MSG_DEADLOCK, strlen(SYNCD_MSG_DEADLOCK)) == 0);

    cr_assert_eq(REL(&r, .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(F.n_answers, 0, "one reader still in");
    cr_assert_eq(REL(&r, .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION, "pid 1 has no share left");
    /* the unlock names WRITE but finds the caller's read share */
    cr_assert_eq(REL(&r, .name = "rw", .mode = MODE(WRITE), .pid = 2), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(2), "the writer first");
    cr_assert_eq(ACQ(&r, CK(7), .name = "rw", .mode = MODE(READ), .pid = 6), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "rw", .mode = MODE(WRITE), .pid = 3), HOME_DONE);
    cr_assert_eq(F.n_answers, 3, "both readers behind the writer go in");
    cr_assert_eq(F.answers[1].cookie, CK(3));
    cr_assert_eq(F.answers[2].cookie, CK(7));
    cr_assert_gt(F.answers[2].r.token, F.answers[1].r.token);
    cr_assert_gt(F.answers[1].r.token, F.answers[0].r.token);

    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("rw", &info, &ar));
    cr_assert_eq(info.kind, KIND(RWLOCK));
    cr_assert_eq(info.n_holders, 2);
    cr_assert_str_eq(info.state, "held");
    s_arena_free(&ar);
}

Test(home, rwlock_dead_reader_gives_its_share_back)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "rw", .mode = MODE(READ), .node = 2), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "rw", .mode = MODE(WRITE), .node = 3), HOME_QUEUED);
    home_node_dead(H, 2);
    const home_result_t *a = s_answer(CK(1));
    cr_assert_not_null(a);
    cr_assert_eq(a->code, CAIRN_OK);
    cr_assert_not(a->owner_died, "rwlocks have no owner-died");
}

/* ---- semaphore -------------------------------------------------------------- */

Test(home, semaphore_bounds_holders_and_posts_serve_in_order)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "s", .mode = MODE(SEM), .kind = KIND(SEMAPHORE),
                     .value = 2, .pid = 1), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(1), .name = "s", .mode = MODE(SEM), .pid = 2), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(2), .name = "s", .mode = MODE(SEM), .pid = 3), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(3), .name = "s", .mode = MODE(SEM), .pid = 4, .count = 2),
                 HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(4), .name = "s", .mode = MODE(SEM), .pid = 5), HOME_QUEUED,
                 "FIFO: a one-unit wait behind a two-unit wait");
    cr_assert_eq(ACQ(&r, CK(5), .name = "s", .mode = MODE(SEM), .pid = 6, .try_once = true),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);

    cr_assert_eq(REL(&r, .name = "s", .mode = MODE(SEM), .pid = 1), HOME_DONE);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(2));
    /* a post by a process that never waited just adds */
    cr_assert_eq(REL(&r, .name = "s", .mode = MODE(SEM), .pid = 99), HOME_DONE);
    cr_assert_eq(F.n_answers, 1, "pid 4 wants 2, only 1 free");
    cr_assert_eq(REL(&r, .name = "s", .mode = MODE(SEM), .pid = 2), HOME_DONE);
    cr_assert_eq(F.n_answers, 2);
    cr_assert_eq(F.answers[1].cookie, CK(3));
    cr_assert_eq(F.n_answers, 2, "pid 5 waits: 0 free");

    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("s", &info, &ar));
    cr_assert_eq(info.value, 0);
    cr_assert_eq(info.n_holders, 2, "pid 3 (1 unit) and pid 4 (2 units)");
    uint32_t units = 0;
    for (size_t i = 0; i < info.n_holders; i++)
        units += info.holders[i]->count;
    cr_assert_eq(units, 3);
    cr_assert_eq(info.n_waiters, 1);
    s_arena_free(&ar);

    /* pid 4 dies holding 2 units: given back, pid 5 served, 1 left */
    int32_t p = 4;
    home_gone(H, 1, &p, 1);
    cr_assert_eq(F.n_answers, 3);
    cr_assert_eq(F.answers[2].cookie, CK(4));
    cr_assert(s_show("s", &info, &ar));
    cr_assert_eq(info.value, 1);
    s_arena_free(&ar);
}

Test(home, semaphore_default_value_and_bounds)
{
    home_result_t r;

    /* kind unspecified, value 0: a semaphore of 1 */
    cr_assert_eq(ACQ(&r, CK(0), .name = "d", .mode = MODE(SEM)), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(1), .name = "d", .mode = MODE(SEM), .pid = 2,
                     .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);
    /* KIND_SEMAPHORE with value 0: really 0 */
    cr_assert_eq(ACQ(&r, CK(2), .name = "z", .mode = MODE(SEM), .kind = KIND(SEMAPHORE),
                     .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);
    /* value mismatch names both */
    cr_assert_eq(ACQ(&r, CK(3), .name = "d", .mode = MODE(SEM), .value = 5), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strstr(r.message, "1") && strstr(r.message, "5"), "%s", r.message);
    /* overflow */
    cr_assert_eq(REL(&r, .name = "z", .mode = MODE(SEM), .count = 0x7fffffff), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(REL(&r, .name = "z", .mode = MODE(SEM)), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION, "past SEM_VALUE_MAX");
    /* a post to a semaphore nobody made */
    cr_assert_eq(REL(&r, .name = "nope", .mode = MODE(SEM)), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_NOT_FOUND);
}

/* ---- barrier ---------------------------------------------------------------- */

Test(home, barrier_generations_with_one_serial_party_each)
{
    home_result_t r;

    for (uint64_t gen = 1; gen <= 5; gen++) {
        size_t before = F.n_answers;
        cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 1 }, 3, CK(1), &r),
                     HOME_QUEUED);
        cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 2 }, 3, CK(2), &r),
                     HOME_QUEUED);
        cr_assert_eq(F.n_answers, before);
        cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 3 }, 3, CK(3), &r),
                     HOME_DONE);
        cr_assert_eq(r.code, CAIRN_OK);
        cr_assert(r.serial, "the completing arrival is serial");
        cr_assert_eq(r.generation, gen);
        cr_assert_eq(F.n_answers, before + 2);
        for (size_t i = before; i < F.n_answers; i++) {
            cr_assert_eq(F.answers[i].r.code, CAIRN_OK);
            cr_assert_not(F.answers[i].r.serial);
            cr_assert_eq(F.answers[i].r.generation, gen);
        }
    }
    /* parties mismatch */
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 4 }, 4, CK(4), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strstr(r.message, "3") && strstr(r.message, "4"), "%s", r.message);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b0", .pid = 4 }, 0, CK(4), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    /* one party: every arrival completes at once */
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b1" }, 1, CK(5), &r), HOME_DONE);
    cr_assert(r.serial);
    cr_assert_eq(r.generation, 1);

    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("b", &info, &ar));
    cr_assert_eq(info.generation, 5);
    cr_assert_eq(info.value, 3);
    s_arena_free(&ar);
}

Test(home, barrier_retry_rebinds_and_dead_or_cancelled_parties_drop)
{
    home_result_t r;

    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 1, .tag = 1 }, 3, CK(1), &r),
                 HOME_QUEUED);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 1, .tag = 1 }, 3, CK(9), &r),
                 HOME_QUEUED, "a retry re-binds, does not arrive twice");
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 2, .node = 2 }, 3, CK(2), &r),
                 HOME_QUEUED);
    home_node_dead(H, 2);
    cr_assert_eq(F.n_answers, 0, "a dead party is dropped without an answer");
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 3 }, 3, CK(3), &r), HOME_QUEUED);
    cr_assert(home_cancel(H, CK(3)));
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 4 }, 3, CK(4), &r), HOME_QUEUED);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 5 }, 3, CK(5), &r), HOME_DONE);
    cr_assert(r.serial);
    cr_assert_eq(F.n_answers, 2);
    cr_assert_not_null(s_answer(CK(9)));
    cr_assert_not_null(s_answer(CK(4)));
    cr_assert_null(s_answer(CK(1)));
    /* the first party's retry after completion gets the same answer */
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b", .pid = 1, .tag = 1 }, 3, CK(6), &r),
                 HOME_DONE);
    cr_assert_eq(r.generation, 1);
    cr_assert_not(r.serial);
}

/* ---- condition variable ------------------------------------------------------- */

Test(home, cond_signal_before_wait_is_not_lost)
{
    home_result_t r;
    rq_t w1 = { .name = "c", .pid = 1, .tag = 1 };

    cr_assert_eq(s_cond(&w1, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    /* the relay released the mutex; the signaller runs before the WAIT */
    cr_assert_eq(s_signal(&(rq_t){ .name = "c", .pid = 9 }, false, &r), HOME_DONE);
    cr_assert_eq(r.woken, 1);
    cr_assert_eq(s_cond(&w1, "m", PHASE(WAIT), CK(1), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(F.n_answers, 0);
    /* consumed: another signal wakes nobody */
    cr_assert_eq(s_signal(&(rq_t){ .name = "c", .pid = 9 }, false, &r), HOME_DONE);
    cr_assert_eq(r.woken, 0);
}

Test(home, cond_signal_wakes_oldest_and_broadcast_all)
{
    home_result_t r;

    for (int i = 1; i <= 3; i++) {
        rq_t w = { .name = "c", .pid = i, .tag = 1 };
        cr_assert_eq(s_cond(&w, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
        cr_assert_eq(s_cond(&w, "m", PHASE(WAIT), CK(i), &r), HOME_QUEUED);
    }
    cr_assert_eq(s_signal(&(rq_t){ .name = "c", .pid = 9 }, false, &r), HOME_DONE);
    cr_assert_eq(r.woken, 1);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(1), "the oldest first");
    /* a prepared (not yet waiting) one counts too */
    rq_t w4 = { .name = "c", .pid = 4, .tag = 1 };
    cr_assert_eq(s_cond(&w4, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(s_signal(&(rq_t){ .name = "c", .pid = 9 }, true, &r), HOME_DONE);
    cr_assert_eq(r.woken, 3);
    cr_assert_eq(F.n_answers, 3);
    cr_assert_eq(F.answers[1].cookie, CK(2));
    cr_assert_eq(F.answers[2].cookie, CK(3));
    cr_assert_eq(s_cond(&w4, "m", PHASE(WAIT), CK(4), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);

    /* a different mutex with waiters present is refused */
    rq_t w5 = { .name = "c", .pid = 5, .tag = 1 };
    cr_assert_eq(s_cond(&w5, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
    rq_t w6 = { .name = "c", .pid = 6, .tag = 1 };
    cr_assert_eq(s_cond(&w6, "other", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    /* cancel drops it: a signal then wakes nobody */
    cr_assert_eq(s_cond(&w5, "m", PHASE(CANCEL), NULL, &r), HOME_DONE);
    cr_assert_eq(s_signal(&(rq_t){ .name = "c", .pid = 9 }, true, &r), HOME_DONE);
    cr_assert_eq(r.woken, 0);
}

Test(home, cond_wait_unknown_is_a_spurious_wakeup_and_cancel_and_death_drop)
{
    home_result_t r;
    rq_t w = { .name = "c", .pid = 1, .tag = 1 };

    cr_assert_eq(s_cond(&w, "m", PHASE(WAIT), CK(1), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_cond(&w, "m", PHASE(ALL), CK(1), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_cond(&w, "", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT, "a mutex name is needed");

    cr_assert_eq(s_cond(&w, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(s_cond(&w, "m", PHASE(WAIT), CK(1), &r), HOME_QUEUED);
    cr_assert(home_cancel(H, CK(1)));
    cr_assert_not(home_cancel(H, CK(1)));
    rq_t w2 = { .name = "c", .node = 2, .pid = 2, .tag = 1 };
    cr_assert_eq(s_cond(&w2, "m", PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(s_cond(&w2, "m", PHASE(WAIT), CK(2), &r), HOME_QUEUED);
    int32_t p = 2;
    home_gone(H, 2, &p, 1);
    cr_assert_eq(s_signal(&(rq_t){ .name = "c" }, true, &r), HOME_DONE);
    cr_assert_eq(r.woken, 0);
    cr_assert_eq(F.n_answers, 0);
}

/* ---- cancel ------------------------------------------------------------------- */

Test(home, cancel_removes_any_waiter_and_unblocks_those_behind)
{
    home_result_t r;

    cr_assert_not(home_cancel(H, CK(0)));
    cr_assert_eq(ACQ(&r, CK(0), .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "rw", .mode = MODE(WRITE), .pid = 2), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(2), .name = "rw", .mode = MODE(READ), .pid = 3), HOME_QUEUED);
    cr_assert(home_cancel(H, CK(1)));
    cr_assert_eq(F.n_answers, 1, "the reader behind the cancelled writer goes in");
    cr_assert_eq(F.answers[0].cookie, CK(2));

    cr_assert_eq(ACQ(&r, CK(3), .name = "m", .pid = 1), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(4), .name = "m", .pid = 2), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(5), .name = "m", .pid = 3), HOME_QUEUED);
    cr_assert(home_cancel(H, CK(4)));
    cr_assert_eq(REL(&r, .name = "m", .pid = 1), HOME_DONE);
    cr_assert_null(s_answer(CK(4)), "a cancelled waiter is never answered");
    cr_assert_not_null(s_answer(CK(5)));

    cr_assert_eq(ACQ(&r, CK(6), .name = "s", .mode = MODE(SEM), .kind = KIND(SEMAPHORE),
                     .value = 1, .count = 1), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(7), .name = "s", .mode = MODE(SEM), .pid = 2, .count = 5),
                 HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(8), .name = "s", .mode = MODE(SEM), .pid = 3), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "s", .mode = MODE(SEM)), HOME_DONE);
    cr_assert_null(s_answer(CK(8)), "FIFO behind the five-unit wait");
    cr_assert(home_cancel(H, CK(7)));
    cr_assert_not_null(s_answer(CK(8)));
}

/* ---- gone, node dead ------------------------------------------------------------ */

Test(home, gone_drops_waits_silently_and_releases_holdings)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 2, .pid = 20), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .node = 2, .pid = 21), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .node = 3, .pid = 20), HOME_QUEUED);
    int32_t pids[] = { 21, 20 };
    home_gone(H, 2, pids, 2);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(2), "pid 20 of node 3 is another process");
    cr_assert(F.answers[0].r.owner_died);
    cr_assert_not(home_cancel(H, CK(1)), "the dead waiter was dropped");
}

Test(home, node_dead_releases_everything_of_the_node)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 2), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .node = 2, .pid = 5), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .node = 3), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(3), .name = "s", .mode = MODE(SEM), .kind = KIND(SEMAPHORE),
                     .value = 1, .node = 2), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(4), .name = "s", .mode = MODE(SEM), .node = 3), HOME_QUEUED);
    home_node_dead(H, 2);
    cr_assert_eq(F.n_answers, 2);
    cr_assert(s_answer(CK(2))->owner_died);
    cr_assert_eq(s_answer(CK(4))->code, CAIRN_OK);
    cr_assert_null(s_answer(CK(1)));
}

/* ---- the node cache -------------------------------------------------------------- */

Test(home, cache_grant_revoke_once_then_next_waiter)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .uid = 1000,
                     .cache_ok = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert(r.cached);
    uint64_t grant = r.token;
    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("c", &info, &ar));
    cr_assert_str_eq(info.state, "cached");
    cr_assert_eq(info.cached_at, 2);
    cr_assert_eq(info.n_holders, 0);
    s_arena_free(&ar);

    /* the retry of the cached grant gets it again, asks no revoke */
    cr_assert_eq(ACQ(&r, CK(1), .name = "c", .node = 2, .uid = 1000, .tag = 0,
                     .cache_ok = true, .pid = 100), HOME_QUEUED,
                 "tag 0: a new request, a renewal");
    cr_assert_eq(F.n_revokes, 1);
    cr_assert_eq(F.revokes[0].node, 2);
    cr_assert_str_eq(F.revokes[0].name, "c");
    cr_assert_eq(F.revokes[0].grant, grant);
    cr_assert_eq(ACQ(&r, CK(2), .name = "c", .node = 3, .uid = 1000), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(3), .name = "c", .node = 4, .uid = 1000, .try_once = true),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY);
    cr_assert_eq(F.n_revokes, 1, "asked once per grant");
    /* a release from another node is not the holder's */
    cr_assert_eq(REL(&r, .name = "c", .node = 3, .uid = 1000), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);

    /* a stale answer is ignored */
    home_revoked(H, "c", grant - 1, grant + 50, false, false);
    cr_assert_eq(F.n_answers, 0);
    home_revoked(H, "c", grant, grant + 50, false, false);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_eq(F.answers[0].cookie, CK(1));
    cr_assert_eq(F.answers[0].r.token, grant + 51);
    cr_assert_not(F.answers[0].r.cached, "someone waits behind: not cached");
    home_revoked(H, "c", grant, grant + 50, false, false);
    cr_assert_eq(F.n_answers, 1, "a second answer to the same revoke changes nothing");
    cr_assert_eq(REL(&r, .name = "c", .node = 2, .uid = 1000), HOME_DONE);
    cr_assert_eq(F.n_answers, 2);
    cr_assert_eq(F.answers[1].cookie, CK(2));
    cr_assert_gt(F.answers[1].r.token, F.answers[0].r.token);
}

Test(home, cache_only_for_the_owner_unshared_cacheable_and_uncontended)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "sh", .uid = 1000, .shared = true,
                     .cache_ok = true), HOME_DONE);
    cr_assert_not(r.cached, "shared");
    cr_assert_eq(ACQ(&r, CK(0), .name = "nc", .uid = 1000, .no_cache = true,
                     .cache_ok = true), HOME_DONE);
    cr_assert_not(r.cached, "no_cache");
    cr_assert_eq(ACQ(&r, CK(0), .name = "own", .uid = 1000), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "own", .uid = 1000), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(0), .name = "own", .uid = 0, .cache_ok = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_not(r.cached, "root is not the owner: the table is per user");
    cr_assert_eq(ACQ(&r, CK(1), .name = "own", .uid = 1000, .pid = 2,
                     .cache_ok = true), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(2), .name = "own", .uid = 1000, .pid = 3), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "own", .uid = 0), HOME_DONE);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_not(F.answers[0].r.cached, "a waiter behind: not cached");
    cr_assert_eq(REL(&r, .name = "own", .uid = 1000, .pid = 2), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "own", .uid = 1000, .pid = 3), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(3), .name = "own", .uid = 1000, .cache_ok = true),
                 HOME_DONE);
    cr_assert(r.cached, "free, uncontended, the owner's: cached");
}

Test(home, cache_given_back_unused_by_the_caching_node)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    uint64_t grant = r.token;
    cr_assert_eq(ACQ(&r, CK(1), .name = "c", .node = 3), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "c", .node = 2, .pid = 555), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
    cr_assert_eq(F.n_answers, 1);
    cr_assert_gt(F.answers[0].r.token, grant);
    /* the revoke's late answer for the old grant is stale now */
    home_revoked(H, "c", grant, grant + 10, true, false);
    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("c", &info, &ar));
    cr_assert_str_eq(info.state, "held");
    cr_assert_eq(info.n_holders, 1);
    cr_assert_eq(info.holders[0]->holder->node, 3);
    s_arena_free(&ar);
}

Test(home, cache_revoked_owner_died_and_caching_node_death)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .cache_ok = true), HOME_DONE);
    uint64_t grant = r.token;
    cr_assert_eq(ACQ(&r, CK(1), .name = "c", .node = 3), HOME_QUEUED);
    home_revoked(H, "c", grant, grant + 3, true, false);
    cr_assert(s_answer(CK(1))->owner_died, "the node's holder died holding it");

    /* cached again at node 4, which dies: owner-died, tokens beyond the grant */
    cr_assert_eq(s_consistent(&(rq_t){ .name = "c", .node = 3 }, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(REL(&r, .name = "c", .node = 3), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(2), .name = "c", .node = 4, .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    cr_assert_not(r.owner_died);
    grant = r.token;
    cr_assert_eq(ACQ(&r, CK(3), .name = "c", .node = 5), HOME_QUEUED);
    home_node_dead(H, 4);
    const home_result_t *a = s_answer(CK(3));
    cr_assert_not_null(a);
    cr_assert(a->owner_died);
    cr_assert_gt(a->token, grant + SYNCTAB_SEQ_MAX);

    /* not recoverable reported by the node */
    cr_assert_eq(s_consistent(&(rq_t){ .name = "c", .node = 5 }, &r), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "c", .node = 5), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(4), .name = "c", .node = 6, .cache_ok = true), HOME_DONE);
    grant = r.token;
    cr_assert_eq(ACQ(&r, CK(5), .name = "c", .node = 7), HOME_QUEUED);
    home_revoked(H, "c", grant, grant + 1, false, true);
    a = s_answer(CK(5));
    cr_assert_eq(a->code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strncmp(a->message, SYNCD_MSG_NOT_RECOVERABLE,
                      strlen(SYNCD_MSG_NOT_RECOVERABLE)) == 0);
}

Test(home, cache_carries_the_owner_died_state_to_the_node_and_back)
{
    home_result_t r;
    int32_t p = 20;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .pid = 20), HOME_DONE);
    home_gone(H, 2, &p, 1);
    /* granted cached while owner-died: the node's slot starts inconsistent */
    cr_assert_eq(ACQ(&r, CK(1), .name = "c", .node = 2, .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    cr_assert(r.owner_died);
    uint64_t grant = r.token;
    /* given back unused: still owner-died for the next */
    cr_assert_eq(REL(&r, .name = "c", .node = 2), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(2), .name = "c", .node = 2, .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    cr_assert(r.owner_died);
    cr_assert_gt(r.token, grant);
    grant = r.token;
    /* made consistent at the node: the revoke says so, the next is clean */
    cr_assert_eq(ACQ(&r, CK(3), .name = "c", .node = 3), HOME_QUEUED);
    home_revoked(H, "c", grant, grant + 2, false, false);
    cr_assert_not(s_answer(CK(3))->owner_died);
    cr_assert_eq(s_answer(CK(3))->token, grant + 3);
}

Test(home, cache_retry_with_the_same_tag_gets_the_same_grant)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .tag = 77, .cache_ok = true),
                 HOME_DONE);
    uint64_t grant = r.token;
    cr_assert_eq(ACQ(&r, CK(1), .name = "c", .node = 2, .tag = 77, .cache_ok = true),
                 HOME_DONE);
    cr_assert(r.cached);
    cr_assert_eq(r.token, grant);
    cr_assert_eq(F.n_revokes, 0);
}

Test(home, destroy_of_a_cached_mutex_asks_it_back_first)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "c", .node = 2, .cache_ok = true), HOME_DONE);
    uint64_t grant = r.token;
    cr_assert_eq(s_destroy("c", 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_UNAVAILABLE);
    cr_assert_eq(F.n_revokes, 1);
    home_revoked(H, "c", grant, grant, false, false);
    cr_assert_eq(s_destroy("c", 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(home_count(H), 0);
}

/* ---- permission, kinds, names ------------------------------------------------------- */

Test(home, permission_owner_root_shared)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "mine", .uid = 1000), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "mine", .uid = 1001, .pid = 2), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_PERMISSION_DENIED);
    cr_assert_eq(REL(&r, .name = "mine", .uid = 1001), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_PERMISSION_DENIED);
    cr_assert_eq(ACQ(&r, CK(1), .name = "mine", .uid = 0, .pid = 2), HOME_QUEUED,
                 "root may");
    cr_assert_eq(ACQ(&r, CK(2), .name = "ours", .uid = 1000, .shared = true), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "ours", .uid = 1000), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(2), .name = "ours", .uid = 1001), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "shared: anyone");
    cr_assert_eq(REL(&r, .name = "ours", .uid = 1001), HOME_DONE);
    cr_assert_eq(s_destroy("ours", 1001, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_PERMISSION_DENIED, "destroy: owner or root only");
    cr_assert_eq(s_destroy("ours", 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_destroy("ours", 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_NOT_FOUND);
    /* held, waited on: refused */
    cr_assert_eq(s_destroy("mine", 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);

    /* ls: what the caller may see */
    cr_assert_eq(ACQ(&r, CK(3), .name = "pub", .uid = 7, .shared = true), HOME_DONE);
    arena_t ar = { 0 };
    const char **names;
    size_t n;
    cr_assert_eq(home_names(H, 1001, &names, &n, s_alloc, &ar), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(names[0], "pub");
    cr_assert_eq(home_names(H, 0, &names, &n, s_alloc, &ar), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(names[0], "mine");
    cr_assert_str_eq(names[1], "pub");
    s_arena_free(&ar);
}

Test(home, destroy_refused_while_waited_on)
{
    home_result_t r;

    cr_assert_eq(s_barrier(&(rq_t){ .name = "b" }, 2, CK(1), &r), HOME_QUEUED);
    cr_assert_eq(s_destroy("b", 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(home_cancel(H, CK(1)));
    cr_assert_eq(s_destroy("b", 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
}

Test(home, kind_mismatch_names_both)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "job", .mode = MODE(SEM)), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "job", .mode = MODE(LOCK)), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert_str_eq(r.message, "\"job\" is a semaphore, not a mutex");
    cr_assert_eq(s_barrier(&(rq_t){ .name = "job" }, 2, CK(2), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert_eq(REL(&r, .name = "job", .mode = MODE(READ)), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    /* a Spec that disagrees with the mode, a mode that is none */
    cr_assert_eq(ACQ(&r, CK(3), .name = "x", .mode = MODE(LOCK), .kind = KIND(BARRIER)),
                 HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(ACQ(&r, CK(3), .name = "x", .mode = 42), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(ACQ(&r, CK(3), .name = "x", .mode = MODE(LOCK), .value = 3), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(home_count(H), 1, "nothing made by refused requests");
}

Test(home, bad_names_and_holders)
{
    home_result_t r;
    char n256[257];

    memset(n256, 'a', 256);
    n256[256] = 0;
    cr_assert_eq(ACQ(&r, CK(0), .name = ""), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(ACQ(&r, CK(0), .name = NULL), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(ACQ(&r, CK(0), .name = n256), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    n256[255] = 0;
    cr_assert_eq(ACQ(&r, CK(0), .name = n256), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "255 bytes is fine");

    size_t big = 10u << 20;
    char *huge = malloc(big + 1);
    cr_assert_not_null(huge);
    memset(huge, 'x', big);
    huge[big] = 0;
    cr_assert_eq(ACQ(&r, CK(0), .name = huge), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_lt(strlen(r.message), sizeof(r.message));
    cr_assert_eq(s_barrier(&(rq_t){ .name = huge }, 2, CK(1), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_cond(&(rq_t){ .name = "c" }, huge, PHASE(PREPARE), NULL, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_destroy(huge, 0, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    arena_t ar = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert_not(s_show(huge, &info, &ar));
    free(huge);

    /* no holder, a holder without a pid */
    Cairn__Syncd__AcquireRequest a;
    cairn__syncd__acquire_request__init(&a);
    a.name = "m";
    a.mode = MODE(LOCK);
    cr_assert_eq(home_acquire(H, &a, 0, CK(2), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    Cairn__Syncd__Holder ho;
    cairn__syncd__holder__init(&ho);
    ho.node = 1;
    a.holder = &ho;
    cr_assert_eq(home_acquire(H, &a, 0, CK(2), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(home_count(H), 1);
}

/* ---- recovery, hand over, import ------------------------------------------------------ */

Test(home, recovering_answers_unknown_names_unavailable)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "known"), HOME_DONE);
    home_set_recovering(H, true);
    cr_assert_eq(ACQ(&r, CK(1), .name = "new"), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_UNAVAILABLE);
    cr_assert(strncmp(r.message, "recovering: ", 12) == 0, "%s", r.message);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "nb" }, 2, CK(2), &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_UNAVAILABLE);
    cr_assert_eq(REL(&r, .name = "new"), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_UNAVAILABLE);
    cr_assert_eq(home_count(H), 1);
    cr_assert_eq(ACQ(&r, CK(3), .name = "known", .pid = 2), HOME_QUEUED,
                 "known objects are served as usual");
    home_set_recovering(H, false);
    cr_assert_eq(ACQ(&r, CK(1), .name = "new"), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
}

static bool keep_only_b(void *ctx, const char *name)
{
    return strcmp(name, "b") == 0;
}

/* What a home says of name, kept in arena a. */
static Cairn__Syncd__ObjectInfo *s_info(home_t *h, const char *name, arena_t *a)
{
    Cairn__Syncd__ObjectInfo *i = s_alloc(a, sizeof(*i));

    cairn__syncd__object_info__init(i);
    cr_assert(home_show(h, name, i, s_alloc, a), "%s", name);
    /* name and state are the home's: keep copies */
    i->name = strcpy(s_alloc(a, strlen(i->name) + 1), i->name);
    i->state = strcpy(s_alloc(a, strlen(i->state) + 1), i->state);
    return i;
}

static void s_same_info(const Cairn__Syncd__ObjectInfo *i1,
                        const Cairn__Syncd__ObjectInfo *i2)
{
    const char *name = i1->name;

    cr_assert_str_eq(i1->name, i2->name);
    cr_assert_eq(i1->kind, i2->kind, "%s", name);
    cr_assert_eq(i1->owner_uid, i2->owner_uid, "%s", name);
    cr_assert_eq(i1->shared, i2->shared, "%s", name);
    cr_assert_eq(i1->token, i2->token, "%s", name);
    cr_assert_eq(i1->cached_at, i2->cached_at, "%s", name);
    cr_assert_eq(i1->value, i2->value, "%s", name);
    cr_assert_eq(i1->generation, i2->generation, "%s", name);
    cr_assert_str_eq(i1->state, i2->state, "%s", name);
    cr_assert_eq(i1->n_holders, i2->n_holders, "%s", name);
    for (size_t i = 0; i < i1->n_holders; i++) {
        cr_assert_eq(i1->holders[i]->holder->node, i2->holders[i]->holder->node);
        cr_assert_eq(i1->holders[i]->holder->pid, i2->holders[i]->holder->pid);
        cr_assert_eq(i1->holders[i]->holder->tid, i2->holders[i]->holder->tid);
        cr_assert_eq(i1->holders[i]->token, i2->holders[i]->token, "%s", name);
        cr_assert_eq(i1->holders[i]->count, i2->holders[i]->count, "%s", name);
        cr_assert_eq(i1->holders[i]->mode, i2->holders[i]->mode, "%s", name);
    }
}

Test(home, hand_over_then_import_gives_the_same_state)
{
    home_result_t r;
    home_t *old = H;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 2, .uid = 5), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .node = 3, .uid = 5), HOME_QUEUED);
    cr_assert_eq(ACQ(&r, CK(2), .name = "d", .node = 2, .pid = 9), HOME_DONE);
    int32_t p = 9;
    home_gone(H, 2, &p, 1);   /* d: free, owner-died */
    cr_assert_eq(ACQ(&r, CK(3), .name = "c", .node = 4, .cache_ok = true), HOME_DONE);
    cr_assert(r.cached);
    cr_assert_eq(ACQ(&r, CK(4), .name = "s", .mode = MODE(SEM), .kind = KIND(SEMAPHORE),
                     .value = 3, .count = 2), HOME_DONE);
    cr_assert_eq(REL(&r, .name = "s", .mode = MODE(SEM), .pid = 77), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(5), .name = "rw", .mode = MODE(READ), .pid = 1), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(6), .name = "rw", .mode = MODE(READ), .pid = 2), HOME_DONE);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "bar", .shared = true }, 1, CK(7), &r), HOME_DONE);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "bar" }, 1, CK(7), &r), HOME_DONE);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "b" }, 2, CK(8), &r), HOME_QUEUED);

    const char *names[] = { "m", "d", "c", "s", "rw", "bar" };
    arena_t before = { 0 };
    Cairn__Syncd__ObjectInfo *was[6];
    for (size_t i = 0; i < 6; i++)
        was[i] = s_info(H, names[i], &before);

    arena_t a = { 0 };
    Cairn__Syncd__ObjectState **states;
    size_t n;
    cr_assert_eq(home_hand_over(H, keep_only_b, NULL, &states, &n, s_alloc, &a), 0);
    cr_assert_eq(n, 6);
    cr_assert_eq(home_count(H), 1, "only b stays");
    /* the waiter of m is told to go to the new home; b's is not */
    const home_result_t *ans = s_answer(CK(1));
    cr_assert_not_null(ans);
    cr_assert_eq(ans->code, CAIRN_UNAVAILABLE);
    cr_assert(strncmp(ans->message, "moved: ", 7) == 0, "%s", ans->message);
    cr_assert_null(s_answer(CK(8)));

    home_t *fresh = s_new_home(2);
    for (size_t i = 0; i < n; i++) {
        cairn_error_t err;
        cr_assert(states[i]->authoritative);
        cr_assert_eq(home_import(fresh, 1, states[i], &err), 0, "%s", err.message);
        /* importing the same state twice changes nothing */
        cr_assert_eq(home_import(fresh, 1, states[i], &err), 0, "%s", err.message);
    }
    cr_assert_eq(home_count(fresh), 6);
    for (size_t i = 0; i < 6; i++)
        s_same_info(was[i], s_info(fresh, names[i], &a));
    s_arena_free(&a);
    s_arena_free(&before);

    /* the states as the old home had them */
    Cairn__Syncd__ObjectInfo info;
    cairn__syncd__object_info__init(&info);
    cr_assert(home_show(fresh, "m", &info, s_alloc, &a));
    cr_assert_str_eq(info.state, "held");
    cr_assert_eq(info.owner_uid, 5);
    cr_assert_eq(info.holders[0]->holder->node, 2);
    cr_assert_eq(info.home, 2);
    uint64_t m_token = info.token;
    cairn__syncd__object_info__init(&info);
    cr_assert(home_show(fresh, "d", &info, s_alloc, &a));
    cr_assert_str_eq(info.state, "owner-died");
    cairn__syncd__object_info__init(&info);
    cr_assert(home_show(fresh, "c", &info, s_alloc, &a));
    cr_assert_str_eq(info.state, "cached");
    cr_assert_eq(info.cached_at, 4);
    uint64_t c_grant = info.token;
    cairn__syncd__object_info__init(&info);
    cr_assert(home_show(fresh, "s", &info, s_alloc, &a));
    cr_assert_eq(info.value, 2, "3 - 2 held + 1 posted");
    cr_assert_eq(info.n_holders, 1);
    cairn__syncd__object_info__init(&info);
    cr_assert(home_show(fresh, "bar", &info, s_alloc, &a));
    cr_assert_eq(info.generation, 2);
    cr_assert(info.shared);
    s_arena_free(&a);

    /* it goes on from there: the moved waiter re-sends, tokens keep rising */
    H = fresh;
    cr_assert_eq(REL(&r, .name = "m", .node = 2, .uid = 5), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(ACQ(&r, CK(9), .name = "m", .node = 3, .uid = 5), HOME_DONE);
    cr_assert_gt(r.token, m_token);
    cr_assert_eq(ACQ(&r, CK(10), .name = "d", .node = 3), HOME_DONE);
    cr_assert(r.owner_died);
    cr_assert_eq(ACQ(&r, CK(11), .name = "c", .node = 3), HOME_QUEUED);
    cr_assert_eq(F.n_revokes, 1);
    cr_assert_eq(F.revokes[0].node, 4);
    cr_assert_eq(F.revokes[0].grant, c_grant);
    home_revoked(H, "c", c_grant, c_grant + 9, false, false);
    cr_assert_eq(s_answer(CK(11))->token, c_grant + 10);
    cr_assert_eq(s_barrier(&(rq_t){ .name = "bar" }, 1, CK(12), &r), HOME_DONE);
    cr_assert_eq(r.generation, 3);
    H = old;
    home_free(fresh);
}

static Cairn__Syncd__ObjectState *s_state(arena_t *a, const char *name, int kind,
                                          uint32_t value, size_t n_holders)
{
    Cairn__Syncd__ObjectState *st = s_alloc(a, sizeof(*st));
    Cairn__Syncd__Spec *sp = s_alloc(a, sizeof(*sp));
    cairn__syncd__object_state__init(st);
    cairn__syncd__spec__init(sp);
    sp->kind = kind;
    sp->value = value;
    st->name = (char *)name;
    st->spec = sp;
    st->n_holders = n_holders;
    st->holders = s_alloc(a, (n_holders ? n_holders : 1) * sizeof(*st->holders));
    for (size_t i = 0; i < n_holders; i++) {
        st->holders[i] = s_alloc(a, sizeof(*st->holders[i]));
        cairn__syncd__grant__init(st->holders[i]);
        st->holders[i]->holder = s_alloc(a, sizeof(Cairn__Syncd__Holder));
        cairn__syncd__holder__init(st->holders[i]->holder);
    }
    return st;
}

static void s_set_grant(Cairn__Syncd__Grant *g, uint32_t node, int32_t pid,
                        int mode, uint64_t token, uint32_t count)
{
    g->holder->node = node;
    g->holder->pid = pid;
    g->holder->tid = pid;
    g->mode = mode;
    g->token = token;
    g->count = count;
}

Test(home, import_relay_announcements_and_conflicts)
{
    arena_t a = { 0 };
    cairn_error_t err;
    home_result_t r;

    /* a relay announces its holder; another claims the same mutex newer */
    Cairn__Syncd__ObjectState *s1 = s_state(&a, "m", KIND(MUTEX), 0, 1);
    s_set_grant(s1->holders[0], 2, 20, MODE(LOCK), 100, 1);
    s1->last_token = 100;
    cr_assert_eq(home_import(H, 2, s1, &err), 0);
    Cairn__Syncd__ObjectState *s2 = s_state(&a, "m", KIND(MUTEX), 0, 1);
    s_set_grant(s2->holders[0], 3, 30, MODE(LOCK), 200, 1);
    s2->last_token = 200;
    cairn_error_clear(&err);
    cr_assert_eq(home_import(H, 3, s2, &err), 1);
    cr_assert_neq(err.code, CAIRN_OK);
    cr_assert(strstr(err.message, "owner-died"), "%s", err.message);
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &a));
    cr_assert_eq(info.n_holders, 1, "never two holders");
    cr_assert_eq(info.holders[0]->holder->node, 3, "the newer token kept");
    cr_assert_str_eq(info.state, "owner-died");
    cr_assert_eq(info.token, 200);
    /* the next grant is above every announced token, owner-died */
    F.now_us = 1;   /* a clock far behind */
    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .node = 4), HOME_QUEUED);
    cr_assert_eq(REL(&r, .name = "m", .node = 3, .pid = 30), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_answer(CK(0))->token, 201, "%llu %d %s", (unsigned long long)s_answer(CK(0))->token, s_answer(CK(0))->code, s_answer(CK(0))->message);
    cr_assert(s_answer(CK(0))->owner_died);

    /* a semaphore rebuilt from relays: initial value minus units held */
    Cairn__Syncd__ObjectState *s3 = s_state(&a, "s", KIND(SEMAPHORE), 5, 1);
    s_set_grant(s3->holders[0], 2, 21, MODE(SEM), 300, 2);
    cr_assert_eq(home_import(H, 2, s3, &err), 0);
    cr_assert_eq(home_import(H, 2, s3, &err), 0, "announced twice");
    Cairn__Syncd__ObjectState *s4 = s_state(&a, "s", KIND(SEMAPHORE), 5, 1);
    s_set_grant(s4->holders[0], 3, 31, MODE(SEM), 301, 1);
    cr_assert_eq(home_import(H, 3, s4, &err), 0);
    cr_assert(s_show("s", &info, &a));
    cr_assert_eq(info.value, 2, "5 - 2 - 1");
    /* a cache and a holder claiming one mutex: the newer wins */
    Cairn__Syncd__ObjectState *s5 = s_state(&a, "k", KIND(MUTEX), 0, 0);
    s5->cached_at = 5;
    s5->cache_grant = 500;
    cr_assert_eq(home_import(H, 5, s5, &err), 0);
    Cairn__Syncd__ObjectState *s6 = s_state(&a, "k", KIND(MUTEX), 0, 1);
    s_set_grant(s6->holders[0], 6, 60, MODE(LOCK), 400, 1);
    cr_assert_eq(home_import(H, 6, s6, &err), 1);
    cr_assert(s_show("k", &info, &a));
    cr_assert_eq(info.cached_at, 5);
    cr_assert_eq(info.n_holders, 0);
    /* the caching node's own holder is no conflict */
    Cairn__Syncd__ObjectState *s7 = s_state(&a, "k", KIND(MUTEX), 0, 1);
    s_set_grant(s7->holders[0], 5, 50, MODE(LOCK), 520, 1);
    s7->cached_at = 5;
    s7->cache_grant = 500;
    cr_assert_eq(home_import(H, 5, s7, &err), 0);

    /* bad states are refused whole */
    Cairn__Syncd__ObjectState *bad = s_state(&a, "k", KIND(SEMAPHORE), 1, 0);
    cr_assert_eq(home_import(H, 5, bad, &err), -EINVAL);
    bad = s_state(&a, "", KIND(MUTEX), 0, 0);
    cr_assert_eq(home_import(H, 5, bad, &err), -EINVAL);
    bad = s_state(&a, "z", KIND(MUTEX), 0, 1);
    s_set_grant(bad->holders[0], 5, 50, MODE(READ), 1, 1);
    cr_assert_eq(home_import(H, 5, bad, &err), -EINVAL);
    bad = s_state(&a, "z", 0, 0, 0);
    cr_assert_eq(home_import(H, 5, bad, &err), -EINVAL);
    cr_assert_null(home_show(H, "z", &info, s_alloc, &a) ? "z" : NULL);
    s_arena_free(&a);
}

Test(home, show_lists_waiters_fifo_with_their_age)
{
    home_result_t r;

    cr_assert_eq(ACQ(&r, CK(0), .name = "m", .pid = 1), HOME_DONE);
    cr_assert_eq(ACQ(&r, CK(1), .name = "m", .pid = 2), HOME_QUEUED);
    F.now_ms += 100;
    cr_assert_eq(ACQ(&r, CK(2), .name = "m", .pid = 3, .mode = MODE(LOCK)), HOME_QUEUED);
    F.now_ms += 50;
    arena_t a = { 0 };
    Cairn__Syncd__ObjectInfo info;
    cr_assert(s_show("m", &info, &a));
    cr_assert_eq(info.n_waiters, 2);
    cr_assert_eq(info.waiters[0]->holder->pid, 2);
    cr_assert_eq(info.waiters[0]->since_ms, 150);
    cr_assert_eq(info.waiters[1]->holder->pid, 3);
    cr_assert_eq(info.waiters[1]->since_ms, 50);
    cr_assert_eq(info.waiters[1]->mode, MODE(LOCK));
    cr_assert_eq(info.home, 1);
    cr_assert_eq(info.n_holders, 1);
    cr_assert_eq(info.holders[0]->holder->pid, 1);
    cr_assert_not(s_show("nothing", &info, &a));
    s_arena_free(&a);
}

Test(home, many_objects_and_cookies)
{
    static char big[2000];
    home_result_t r;
    char name[32];

    /* enough to grow both tables several times */
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "obj-%d", i);
        cr_assert_eq(ACQ(&r, NULL, .name = name, .pid = 1), HOME_DONE);
        cr_assert_eq(ACQ(&r, &big[i], .name = name, .pid = 2), HOME_QUEUED);
    }
    cr_assert_eq(home_count(H), 2000);
    for (int i = 0; i < 2000; i += 2)
        cr_assert(home_cancel(H, &big[i]));
    for (int i = 0; i < 2000; i += 2)
        cr_assert_not(home_cancel(H, &big[i]));
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "obj-%d", i);
        cr_assert_eq(REL(&r, .name = name, .pid = 1), HOME_DONE);
        cr_assert_eq(r.code, CAIRN_OK);
    }
    cr_assert_eq(F.n_answers, 1000);
    for (size_t i = 0; i < F.n_answers; i++)
        cr_assert_eq(((char *)F.answers[i].cookie - big) % 2, 1);
}

/* ---- declare ------------------------------------------------------------ */

static int s_declare(const char *name, int kind, uint32_t value, bool shared,
                     uint32_t uid, home_result_t *r)
{
    Cairn__Syncd__DeclareRequest d;
    Cairn__Syncd__Spec sp;
    Cairn__Syncd__Holder ho = s_holder(&(rq_t){ .uid = uid });

    cairn__syncd__declare_request__init(&d);
    cairn__syncd__spec__init(&sp);
    sp.kind = kind;
    sp.value = value;
    sp.shared = shared;
    d.name = (char *)name;
    d.spec = &sp;
    d.holder = &ho;
    return home_declare(H, &d, uid, r);
}

Test(home, declare_makes_checks_and_refuses)
{
    home_result_t r;

    /* a semaphore of 0 units: the first wait finds nothing */
    cr_assert_eq(s_declare("gate", KIND(SEMAPHORE), 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
    cr_assert_eq(ACQ(&r, CK(0), .name = "gate", .mode = MODE(SEM), .uid = 1000,
                     .try_once = true), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_BUSY, "declared with 0 units");
    /* declared again: the same kind matches, any value 0 matches */
    cr_assert_eq(s_declare("gate", KIND(SEMAPHORE), 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_declare("gate", KIND(MUTEX), 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    cr_assert_str_eq(r.message, "\"gate\" is a semaphore, not a mutex");
    /* another user: not theirs, not shared */
    cr_assert_eq(s_declare("gate", KIND(SEMAPHORE), 0, false, 1001, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_PERMISSION_DENIED);
    /* shared: another user may use it */
    cr_assert_eq(s_declare("open", KIND(CONDVAR), 0, true, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_declare("open", KIND(CONDVAR), 0, false, 1001, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK, "%s", r.message);
    /* barriers need parties; they must agree */
    cr_assert_eq(s_declare("b", KIND(BARRIER), 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_declare("b", KIND(BARRIER), 3, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_OK);
    cr_assert_eq(s_declare("b", KIND(BARRIER), 4, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_FAILED_PRECONDITION);
    /* no kind, a value on a mutex, a bad name */
    cr_assert_eq(s_declare("m", 0, 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_declare("m", KIND(MUTEX), 2, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(s_declare("", KIND(MUTEX), 0, false, 1000, &r), HOME_DONE);
    cr_assert_eq(r.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(home_count(H), 3, "gate, open, b");
}
