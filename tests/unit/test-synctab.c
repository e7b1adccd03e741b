/* test-synctab.c - unit tests of the node cache's shared lock-word table
 * (lib/synctab): the file, the word protocol, and the robust list shared
 * with glibc.
 *
 * Each test makes a table in a mkdtemp directory and plays both sides:
 * syncd's (create, assign, unpark, try_park, owner_died) and processes'
 * (lock, unlock, consistent). Contention and death use real processes and
 * threads: forked children on one MAP_SHARED table, a child killed with
 * SIGKILL while holding (the kernel, walking its robust list, must mark the
 * word owner-died), a thread that exits holding, and a glibc robust
 * pthread mutex held on the same list at the same time.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "synctab/synctab.h"
#include "util/clock.h"

static char s_dir[64];
static char s_path[128];
static synctab_t s_tab;

#define SLOT 7u
#define GRANT 1000u

static void setup(void)
{
    cairn_error_t e = { 0 };

    snprintf(s_dir, sizeof s_dir, "/tmp/test-synctab-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_path, sizeof s_path, "%s/uid-%u.tab", s_dir, (unsigned)getuid());
    cr_assert_eq(synctab_create(&s_tab, s_path, (uint32_t)getuid(), 1, 42, &e),
                 0, "%s", e.message);
    cr_assert(synctab_robust_ok(), "glibc's robust list layout not recognised");
}

static void teardown(void)
{
    synctab_unmap(&s_tab);
    unlink(s_path);
    rmdir(s_dir);
}

static int32_t tid(void)
{
    return (int32_t)gettid();
}

/* A slot cached and free, as syncd leaves it after a cache grant. */
static uint32_t cached_slot(uint32_t i)
{
    synctab_assign(&s_tab, i, synctab_name_hash("m"), GRANT, 0);
    synctab_unpark(&s_tab, i);
    return atomic_load(&s_tab.slots[i].gen);
}

static uint32_t word(uint32_t i)
{
    return atomic_load(&s_tab.slots[i].word);
}

/* Whether the slot's word is on this thread's robust list. */
static bool on_robust_list(uint32_t i)
{
    struct { void *list; long off; void *pending; } *head = NULL;
    size_t len;
    void *end;

    cr_assert_eq(syscall(SYS_get_robust_list, 0, &head, &len), 0);
    end = &head->list;
    for (void *e = head->list; e && e != end; e = *(void **)e)
        if ((char *)e + head->off == (char *)&s_tab.slots[i].word)
            return true;
    return false;
}

TestSuite(synctab, .init = setup, .fini = teardown);

Test(synctab, file_is_the_users_0600_all_parked)
{
    struct stat st;
    synctab_t t2 = { 0 };
    cairn_error_t e = { 0 };

    cr_assert_eq(stat(s_path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);
    cr_expect_eq(st.st_uid, getuid());
    cr_expect_eq((size_t)st.st_size, (size_t)SYNCTAB_FILE_SIZE);
    cr_expect_eq(s_tab.hdr->magic, SYNCTAB_MAGIC);
    cr_expect_eq(s_tab.hdr->syncd_start, 42u);
    for (uint32_t i = 0; i < SYNCTAB_SLOTS; i++)
        cr_assert_eq(word(i), SYNCTAB_PARKED);
    cr_assert_eq(synctab_open(&t2, s_path, &e), 0, "%s", e.message);
    cr_expect_eq(t2.hdr->uid, (uint32_t)getuid());
    synctab_unmap(&t2);
    cr_expect_eq(synctab_open(&t2, "/etc/hostname", &e), -EBADMSG);
    cr_expect_eq(synctab_open(&t2, "/nonexistent/x.tab", &e), -ENOENT);
}

Test(synctab, fast_path_lock_unlock)
{
    uint32_t gen = cached_slot(SLOT);
    uint64_t token = 0;
    bool died = true;

    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect_eq(token, GRANT + 1);
    cr_expect_not(died);
    cr_expect_eq(word(SLOT), (uint32_t)tid());
    cr_expect(on_robust_list(SLOT));
    cr_expect_eq(atomic_load(&s_tab.slots[SLOT].holder_pid), getpid());
    cr_expect_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 -EDEADLK);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid() + 1), -EPERM);
    cr_assert_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
    cr_expect_eq(word(SLOT), 0u);
    cr_expect_not(on_robust_list(SLOT));
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), -EPERM);
    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect_eq(token, GRANT + 2, "tokens grow by one per acquisition");
    cr_assert_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
}

Test(synctab, go_slow_when_parked_reassigned_or_at_seq_max)
{
    uint64_t token;
    bool died;
    uint32_t gen;

    /* parked (never assigned) */
    cr_expect_eq(synctab_lock(&s_tab, 3, atomic_load(&s_tab.slots[3].gen), tid(),
                              true, -1, &token, &died),
                 SYNCTAB_GO_SLOW);
    /* gen mismatch: the slot went to another name */
    gen = cached_slot(SLOT);
    cr_expect_eq(synctab_lock(&s_tab, SLOT, gen - 1, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_GO_SLOW);
    cr_expect_eq(word(SLOT), 0u);
    /* the grant ran out of tokens: nothing taken */
    atomic_store(&s_tab.slots[SLOT].seq, SYNCTAB_SEQ_MAX);
    cr_expect_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_GO_SLOW);
    cr_expect_eq(word(SLOT), 0u, "given back");
    cr_expect_not(on_robust_list(SLOT));
    cr_expect_eq(synctab_grant_free(&s_tab, SLOT, getpid(), tid(), &token, &died),
                 SYNCTAB_GO_SLOW);
    /* out of range */
    cr_expect_eq(synctab_lock(&s_tab, SYNCTAB_SLOTS, 0, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_GO_SLOW);
}

Test(synctab, revoking_then_unlock_parks_and_says_so)
{
    uint32_t gen = cached_slot(SLOT);
    uint64_t token;
    bool died = true;

    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect_eq(synctab_try_park(&s_tab, SLOT, &died), 0, "held: not yet");
    cr_expect_eq(atomic_load(&s_tab.slots[SLOT].state), SYNCTAB_REVOKING);
    cr_expect(word(SLOT) & SYNCTAB_WAITERS);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 1);
    cr_expect_eq(word(SLOT) & SYNCTAB_TID_MASK, SYNCTAB_PARKED);
    cr_expect_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_GO_SLOW);
    cr_expect_eq(synctab_try_park(&s_tab, SLOT, &died), 1);
    cr_expect_not(died);
}

Test(synctab, try_park_free_and_owner_died_syncd_side)
{
    uint32_t gen = cached_slot(SLOT);
    uint64_t token;
    bool died = true;

    cr_assert_eq(synctab_try_park(&s_tab, SLOT, &died), 1);
    cr_expect_not(died);
    cr_expect_eq(word(SLOT), SYNCTAB_PARKED);
    /* syncd grants to a thread that dies before adopting it */
    synctab_assign(&s_tab, SLOT, synctab_name_hash("m"), GRANT, 0);
    gen = atomic_load(&s_tab.slots[SLOT].gen);
    synctab_grant_to(&s_tab, SLOT, 4242);
    cr_expect_eq(word(SLOT), 4242u);
    cr_expect_not(synctab_owner_died(&s_tab, SLOT, 4243));
    cr_expect(synctab_owner_died(&s_tab, SLOT, 4242));
    cr_expect_eq(word(SLOT), SYNCTAB_OWNER_DIED);
    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect(died);
    cr_expect(atomic_load(&s_tab.slots[SLOT].flags) & SYNCTAB_INCONSISTENT);
    cr_expect_eq(synctab_consistent(&s_tab, SLOT, tid()), 0);
    cr_expect_eq(synctab_consistent(&s_tab, SLOT, tid()), -EINVAL);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
    /* free -> syncd grants it itself, then the process adopts */
    cr_assert_eq(synctab_grant_free(&s_tab, SLOT, getpid(), tid(), &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect_eq(token, GRANT + 2);
    cr_expect_eq(synctab_grant_free(&s_tab, SLOT, getpid(), tid(), &token, &died),
                 -EDEADLK);
    cr_expect_eq(synctab_grant_free(&s_tab, SLOT, getpid(), tid() + 1, &token,
                                    &died),
                 -EBUSY);
    synctab_adopt(&s_tab, SLOT, tid());
    cr_expect(on_robust_list(SLOT));
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
    cr_expect_not(on_robust_list(SLOT));
}

Test(synctab, unlocked_inconsistent_is_not_recoverable)
{
    uint32_t gen = cached_slot(SLOT);
    uint64_t token;
    bool died;

    synctab_try_park(&s_tab, SLOT, &died);
    synctab_grant_to(&s_tab, SLOT, 4242);
    synctab_owner_died(&s_tab, SLOT, 4242);
    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_assert(died);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 1, "syncd must be told");
    cr_expect_eq(word(SLOT), SYNCTAB_PARKED);
    cr_expect(atomic_load(&s_tab.slots[SLOT].flags) & SYNCTAB_NOT_RECOVERABLE);
}

/* ---- waiting ------------------------------------------------------------ */

typedef struct waiter {
    uint32_t gen;
    int64_t deadline_ms;
    int r;
    uint64_t token;
} waiter_t;

static void *s_waiter(void *arg)
{
    waiter_t *w = arg;
    bool died;

    w->r = synctab_lock(&s_tab, SLOT, w->gen, tid(), true, w->deadline_ms,
                        &w->token, &died);
    if (w->r == SYNCTAB_TAKEN)
        synctab_unlock(&s_tab, SLOT, tid());
    return NULL;
}

Test(synctab, futex_wait_wakes_on_unlock_and_times_out)
{
    waiter_t w = { .gen = cached_slot(SLOT), .deadline_ms = -1 };
    uint64_t token;
    bool died;
    pthread_t th;

    cr_assert_eq(synctab_lock(&s_tab, SLOT, w.gen, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_TAKEN);
    cr_expect_eq(synctab_lock(&s_tab, SLOT, w.gen, tid() + 1, false, -1, &token,
                              &died),
                 -EBUSY);
    pthread_create(&th, NULL, s_waiter, &w);
    usleep(50000);
    cr_expect(word(SLOT) & SYNCTAB_WAITERS, "the waiter said so");
    cr_assert_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
    pthread_join(th, NULL);
    cr_expect_eq(w.r, SYNCTAB_TAKEN);
    cr_expect_eq(w.token, token + 1);
    cr_expect_eq(word(SLOT), 0u);

    cr_assert_eq(synctab_lock(&s_tab, SLOT, w.gen, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_TAKEN);
    w.deadline_ms = (int64_t)cairn_now_ms() + 50;
    pthread_create(&th, NULL, s_waiter, &w);
    pthread_join(th, NULL);
    cr_expect_eq(w.r, -ETIMEDOUT);
    cr_expect_geq(cairn_now_ms(), (uint64_t)w.deadline_ms);
    synctab_unlock(&s_tab, SLOT, tid());
}

Test(synctab, waiter_goes_slow_when_the_holder_parks)
{
    waiter_t w = { .gen = cached_slot(SLOT), .deadline_ms = -1 };
    uint64_t token;
    bool died;
    pthread_t th;

    cr_assert_eq(synctab_lock(&s_tab, SLOT, w.gen, tid(), false, -1, &token,
                              &died),
                 SYNCTAB_TAKEN);
    pthread_create(&th, NULL, s_waiter, &w);
    usleep(30000);
    cr_expect_eq(synctab_try_park(&s_tab, SLOT, &died), 0);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 1);
    pthread_join(th, NULL);
    cr_expect_eq(w.r, SYNCTAB_GO_SLOW, "a parked word sends waiters to syncd");
}

/* ---- processes ---------------------------------------------------------- */

#define PROCS 4
#define ROUNDS 1500

Test(synctab, forked_processes_exclude_each_other)
{
    uint32_t gen = cached_slot(SLOT);
    /* the counter lives beside the table, shared, not atomic */
    volatile long *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t kids[PROCS];

    cr_assert_neq((void *)counter, MAP_FAILED);
    *counter = 0;
    for (int k = 0; k < PROCS; k++) {
        kids[k] = fork();
        cr_assert_geq(kids[k], 0);
        if (kids[k] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                uint64_t token;
                bool died;
                long v;

                if (synctab_lock(&s_tab, SLOT, gen, tid(), true, -1, &token,
                                 &died) != SYNCTAB_TAKEN)
                    _exit(2);
                v = *counter;
                if (i % 64 == 0)
                    usleep(100);   /* hold long enough for others to wait */
                else
                    sched_yield();
                *counter = v + 1;
                if (synctab_unlock(&s_tab, SLOT, tid()) != 0)
                    _exit(3);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < PROCS; k++) {
        int st;

        cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: %d", k, st);
    }
    cr_expect_eq(*counter, (long)PROCS * ROUNDS);
    cr_expect_eq(atomic_load(&s_tab.slots[SLOT].seq), (uint64_t)PROCS * ROUNDS);
    cr_expect_eq(word(SLOT), 0u);
    munmap((void *)counter, 4096);
}

/* Two glibc robust mutexes in shared memory, for the shared-list tests. */
static pthread_mutex_t *s_glibc_mutexes(void)
{
    pthread_mutex_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_mutexattr_t a;

    cr_assert_neq((void *)m, MAP_FAILED);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&m[0], &a);
    pthread_mutex_init(&m[1], &a);
    pthread_mutexattr_destroy(&a);
    return m;
}

Test(synctab, killed_holder_leaves_owner_died_with_glibc_mutexes_on_the_list)
{
    uint32_t gen = cached_slot(SLOT);
    pthread_mutex_t *m1 = s_glibc_mutexes(), *m2 = m1 + 1;
    int p[2];
    pid_t kid;
    char c;
    uint64_t token;
    bool died = false;
    int st;

    cr_assert_eq(pipe(p), 0);
    kid = fork();
    cr_assert_geq(kid, 0);
    if (kid == 0) {
        uint64_t t;
        bool d;

        /* glibc, ours, glibc: our entry has glibc neighbours both sides */
        if (pthread_mutex_lock(m1) != 0 ||
            synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &t, &d) !=
                SYNCTAB_TAKEN ||
            pthread_mutex_lock(m2) != 0)
            _exit(2);
        if (write(p[1], "x", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    close(p[1]);
    if (read(p[0], &c, 1) != 1) {
        waitpid(kid, &st, 0);
        cr_assert_fail("the child could not take the locks: %d", st);
    }
    kill(kid, SIGKILL);
    cr_assert_eq(waitpid(kid, &st, 0), kid);
    cr_expect(word(SLOT) & SYNCTAB_OWNER_DIED, "word %#x", word(SLOT));
    cr_expect_eq(pthread_mutex_lock(m1), EOWNERDEAD);
    cr_expect_eq(pthread_mutex_lock(m2), EOWNERDEAD);
    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect(died, "the next locker learns its holder died");
    cr_expect_eq(synctab_consistent(&s_tab, SLOT, tid()), 0);
    pthread_mutex_consistent(m1);
    pthread_mutex_consistent(m2);
    /* here too, mixed: unlock in an order that makes each side write the
     * other's links */
    cr_expect_eq(pthread_mutex_unlock(m1), 0);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 0);
    cr_expect_eq(pthread_mutex_unlock(m2), 0);
    cr_expect_not(on_robust_list(SLOT));
    close(p[0]);
    munmap(m1, 4096);
}

static void *s_exit_holding(void *arg)
{
    uint32_t gen = *(uint32_t *)arg;
    uint64_t token;
    bool died;

    synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died);
    return NULL;
}

Test(synctab, thread_that_exits_holding_leaves_owner_died)
{
    uint32_t gen = cached_slot(SLOT);
    uint64_t token;
    bool died = false;
    pthread_t th;

    pthread_create(&th, NULL, s_exit_holding, &gen);
    pthread_join(th, NULL);
    cr_expect(word(SLOT) & SYNCTAB_OWNER_DIED, "word %#x", word(SLOT));
    cr_assert_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_TAKEN);
    cr_expect(died);
    cr_expect_eq(synctab_unlock(&s_tab, SLOT, tid()), 1, "not made consistent");
}

Test(synctab, recreate_parks_the_old_tables_free_words)
{
    uint32_t gen = cached_slot(SLOT);
    synctab_t fresh = { 0 };
    cairn_error_t e = { 0 };
    uint64_t token;
    bool died;

    cr_assert_eq(synctab_create(&fresh, s_path, (uint32_t)getuid(), 1, 43, &e),
                 0, "%s", e.message);
    cr_expect_eq(synctab_lock(&s_tab, SLOT, gen, tid(), false, -1, &token, &died),
                 SYNCTAB_GO_SLOW, "the old table's words are parked");
    cr_expect_eq(fresh.hdr->syncd_start, 43u);
    synctab_unmap(&fresh);
}
