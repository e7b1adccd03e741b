/* test-synccache.c - unit tests of syncd's node cache (services/syncd/cache.c)
 * without the daemon: a cache built with cache_new_in on a loop of its own
 * and a mkdtemp directory, the relay's calls made by hand, and the
 * processes' side played with lib/synctab on the same table -- by this
 * thread, by other thread ids (syncd grants on their behalf), and by a
 * forked child killed while holding so that only the 20 ms re-check can
 * finish the revoke.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "loop.h"
#include "synctab/synctab.h"

static char s_dir[80];
static cairn_loop_t *s_loop;
static cache_t *s_cache;

/* What the revoked callback saw. */
static struct {
    int calls;
    char name[64];
    uint64_t grant, last;
    bool died, nr;
} s_cb;

static void s_revoked(void *userdata, const char *name, uint64_t grant,
                      uint64_t last_token, bool owner_died, bool not_recoverable)
{
    s_cb.calls++;
    snprintf(s_cb.name, sizeof s_cb.name, "%s", name);
    s_cb.grant = grant;
    s_cb.last = last_token;
    s_cb.died = owner_died;
    s_cb.nr = not_recoverable;
    cairn_loop_quit(s_loop, 0);
}

static void setup(void)
{
    char base[64];
    cairn_error_t e = { 0 };

    snprintf(base, sizeof base, "/tmp/test-synccache-XXXXXX");
    cr_assert_not_null(mkdtemp(base));
    snprintf(s_dir, sizeof s_dir, "%s/syncd", base);
    s_loop = cairn_loop_new();
    cr_assert_not_null(s_loop);
    s_cache = cache_new_in(s_loop, s_dir, 3, s_revoked, NULL, &e);
    cr_assert_not_null(s_cache, "%s", e.message);
    memset(&s_cb, 0, sizeof s_cb);
}

static void teardown(void)
{
    char base[80];

    s_cache = cache_free(s_cache);
    s_loop = cairn_loop_free(s_loop);
    snprintf(base, sizeof base, "%s", s_dir);
    *strrchr(base, '/') = '\0';
    rmdir(base);
}

TestSuite(synccache, .init = setup, .fini = teardown);

static int32_t tid(void)
{
    return (int32_t)gettid();
}

static uint32_t uid(void)
{
    return (uint32_t)getuid();
}

/* The table the cache made for us, mapped as a process maps it. */
static void s_open(const cache_slot_ref_t *ref, synctab_t *t)
{
    cairn_error_t e = { 0 };

    cr_assert_eq(synctab_open(t, ref->table, &e), 0, "%s", e.message);
}

static int s_quit_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    cairn_loop_quit(loop, 1);
    return 0;
}

/* Runs the loop until the revoked callback or ms pass. */
static void s_run(uint64_t ms)
{
    int64_t t = cairn_loop_add_timer(s_loop, ms, 0, s_quit_timer, NULL);

    cairn_loop_run(s_loop);
    cairn_loop_cancel_timer(s_loop, t);
}

Test(synccache, table_is_made_for_the_user_0600_in_a_0711_dir)
{
    char path[128];
    struct stat st;

    cr_assert(cache_may_cache(s_cache, uid()));
    cr_assert_eq(stat(s_dir, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0711);
    snprintf(path, sizeof path, "%s/uid-%u.tab", s_dir, uid());
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);
    cr_expect_eq(st.st_uid, getuid());
    s_cache = cache_free(s_cache);
    cr_expect_neq(stat(path, &st), 0, "cache_free removes the tables");
}

Test(synccache, install_acquire_use_slot_and_miss)
{
    cache_slot_ref_t ref = { 0 }, ref2 = { 0 };
    cache_entry_t ce;
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };
    uint64_t token = 0;
    bool died = true;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 500, false, getpid(), tid(),
                               &ref, &e),
                 0, "%s", e.message);
    s_open(&ref, &t);
    cr_expect_eq(atomic_load(&t.slots[ref.slot].word), (uint32_t)tid());
    cr_assert(cache_find(s_cache, "m", &ce));
    cr_expect_eq(ce.grant, 500u);
    cr_expect_eq(ce.holder_tid, tid());
    cr_expect_eq(ce.holder_pid, getpid());
    cr_expect_not(cache_find(s_cache, "other", NULL));
    /* another thread of the node: wait on the word */
    cr_expect_eq(cache_acquire(s_cache, "m", uid(), getpid(), tid() + 1, &ref2,
                               &token, &died),
                 CACHE_USE_SLOT);
    cr_expect_eq(ref2.slot, ref.slot);
    cr_expect_eq(ref2.gen, ref.gen);
    /* another user: the home decides */
    cr_expect_eq(cache_acquire(s_cache, "m", uid() + 1, getpid(), tid() + 1,
                               &ref2, &token, &died),
                 CACHE_MISS);
    cr_expect_eq(cache_acquire(s_cache, "nope", uid(), getpid(), tid(), &ref2,
                               &token, &died),
                 CACHE_MISS);
    synctab_adopt(&t, ref.slot, tid());
    cr_assert_eq(synctab_unlock(&t, ref.slot, tid()), 0);
    cr_expect_eq(cache_acquire(s_cache, "m", uid(), getpid(), tid(), &ref2,
                               &token, &died),
                 CACHE_GRANTED);
    cr_expect_eq(token, 501u);
    cr_expect_not(died);
    cr_expect_eq(atomic_load(&t.slots[ref.slot].word), (uint32_t)tid());
    synctab_adopt(&t, ref.slot, tid());
    cr_expect_eq(synctab_unlock(&t, ref.slot, tid()), 0);
    synctab_unmap(&t);
}

Test(synccache, revoke_free_gives_back_at_once)
{
    cache_slot_ref_t ref = { 0 };
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };
    uint64_t last = 0, token;
    bool died = true, nr = true;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 500, false, getpid(), tid(),
                               &ref, &e), 0);
    s_open(&ref, &t);
    synctab_adopt(&t, ref.slot, tid());
    synctab_unlock(&t, ref.slot, tid());
    cr_assert_eq(synctab_lock(&t, ref.slot, ref.gen, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_TAKEN);
    synctab_unlock(&t, ref.slot, tid());
    cr_expect_eq(cache_revoke(s_cache, "m", 499, &last, &died, &nr), -ESTALE);
    cr_assert_eq(cache_revoke(s_cache, "m", 500, &last, &died, &nr), 1);
    cr_expect_eq(last, 501u, "the last token handed out under the grant");
    cr_expect_not(died);
    cr_expect_not(nr);
    cr_expect_eq(atomic_load(&t.slots[ref.slot].word), SYNCTAB_PARKED);
    cr_expect_not(cache_find(s_cache, "m", NULL));
    cr_expect_eq(cache_revoke(s_cache, "m", 500, &last, &died, &nr), -ENOENT);
    cr_expect_eq(synctab_lock(&t, ref.slot, ref.gen, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_GO_SLOW);
    synctab_unmap(&t);
}

Test(synccache, revoke_held_finishes_at_slot_release)
{
    cache_slot_ref_t ref = { 0 };
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };
    uint64_t last = 0, token;
    bool died = true, nr = true;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 700, false, getpid(), tid(),
                               &ref, &e), 0);
    s_open(&ref, &t);
    synctab_adopt(&t, ref.slot, tid());
    cr_assert_eq(cache_revoke(s_cache, "m", 700, &last, &died, &nr), 0);
    cr_expect_eq(cache_acquire(s_cache, "m", uid(), getpid(), tid() + 1, NULL,
                               &token, &died),
                 CACHE_MISS, "being revoked: ask the home");
    cr_expect_eq(cache_slot_released(s_cache, uid(), ref.slot, ref.gen), -ENOENT,
                 "still held");
    cr_assert_eq(synctab_unlock(&t, ref.slot, tid()), 1);
    cr_expect_eq(cache_slot_released(s_cache, uid(), ref.slot, ref.gen + 1),
                 -ENOENT, "wrong generation");
    cr_assert_eq(cache_slot_released(s_cache, uid(), ref.slot, ref.gen), 0);
    cr_expect_eq(s_cb.calls, 1);
    cr_expect_str_eq(s_cb.name, "m");
    cr_expect_eq(s_cb.grant, 700u);
    cr_expect_eq(s_cb.last, 700u);
    cr_expect_not(s_cb.died);
    cr_expect_not(cache_find(s_cache, "m", NULL));
    synctab_unmap(&t);
}

Test(synccache, killed_holder_is_found_by_the_recheck)
{
    cache_slot_ref_t ref = { 0 };
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };
    uint64_t last = 0, token;
    bool died = false, nr;
    int p[2], st;
    pid_t kid;
    char c;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 900, false, getpid(), tid(),
                               &ref, &e), 0);
    s_open(&ref, &t);
    synctab_adopt(&t, ref.slot, tid());
    synctab_unlock(&t, ref.slot, tid());
    cr_assert_eq(pipe(p), 0);
    kid = fork();
    cr_assert_geq(kid, 0);
    if (kid == 0) {
        if (synctab_lock(&t, ref.slot, ref.gen, (int32_t)gettid(), false, -1,
                         &token, &died) != SYNCTAB_TAKEN ||
            write(p[1], "x", 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    close(p[1]);
    cr_assert_eq(read(p[0], &c, 1), 1);
    cr_assert_eq(cache_revoke(s_cache, "m", 900, &last, &died, &nr), 0);
    kill(kid, SIGKILL);
    waitpid(kid, &st, 0);
    s_run(2000);
    cr_expect_eq(s_cb.calls, 1, "the 20 ms re-check finished the revoke");
    cr_expect(s_cb.died, "its holder died holding it");
    cr_expect_eq(s_cb.last, 901u);
    close(p[0]);
    synctab_unmap(&t);
}

Test(synccache, process_that_never_adopted_leaves_owner_died)
{
    cache_slot_ref_t ref = { 0 };
    cache_entry_t ce;
    cairn_error_t e = { 0 };
    uint64_t token;
    bool died = false;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 100, false, 99999, 99999,
                               &ref, &e), 0);
    cache_process_exit(s_cache, 12345);
    cr_assert(cache_find(s_cache, "m", &ce));
    cr_expect_eq(ce.holder_tid, 99999, "another pid's exit changes nothing");
    cache_process_exit(s_cache, 99999);
    cr_assert(cache_find(s_cache, "m", &ce));
    cr_expect_eq(ce.holder_tid, 0);
    cr_expect(ce.owner_died);
    cr_expect_eq(cache_acquire(s_cache, "m", uid(), getpid(), tid(), &ref,
                               &token, &died),
                 CACHE_GRANTED);
    cr_expect(died, "the next acquirer learns it");
    cr_expect_eq(token, 101u);
}

Test(synccache, install_owner_died_starts_inconsistent)
{
    cache_slot_ref_t ref = { 0 };
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };
    uint64_t last;
    bool died = false, nr = false;

    cr_assert_eq(cache_install(s_cache, "m", uid(), 100, true, getpid(), tid(),
                               &ref, &e), 0);
    s_open(&ref, &t);
    synctab_adopt(&t, ref.slot, tid());
    cr_expect_eq(synctab_unlock(&t, ref.slot, tid()), 1, "unlocked inconsistent");
    cr_assert_eq(cache_revoke(s_cache, "m", 100, &last, &died, &nr), 1);
    cr_expect(nr, "the home learns it is not recoverable");
    synctab_unmap(&t);
}

Test(synccache, drop_all_parks_and_forgets_without_telling)
{
    cache_slot_ref_t r1 = { 0 }, r2 = { 0 };
    cairn_error_t e = { 0 };
    synctab_t t = { 0 };

    cr_assert_eq(cache_install(s_cache, "a", uid(), 10, false, getpid(), tid(),
                               &r1, &e), 0);
    cr_assert_eq(cache_install(s_cache, "b", uid(), 20, false, getpid(), tid(),
                               &r2, &e), 0);
    s_open(&r1, &t);
    synctab_adopt(&t, r1.slot, tid());
    synctab_unlock(&t, r1.slot, tid());  /* a free, b held */
    synctab_adopt(&t, r2.slot, tid());
    cache_drop_all(s_cache);
    cr_expect_not(cache_find(s_cache, "a", NULL));
    cr_expect_not(cache_find(s_cache, "b", NULL));
    cr_expect_eq(atomic_load(&t.slots[r1.slot].word), SYNCTAB_PARKED);
    cr_expect_eq(synctab_unlock(&t, r2.slot, tid()), 1);
    s_run(100);
    cr_expect_eq(s_cb.calls, 0);
    cr_expect(cache_may_cache(s_cache, uid()));
    synctab_unmap(&t);
}
