/* synctab.c - the shared table of cached cluster mutexes: the file, the
 * lock-word protocol, and the robust list (synctab.h says what and why).
 *
 * Design. A slot's word is a robust futex that lives in a MAP_SHARED file,
 * so every futex call is a shared one (no FUTEX_PRIVATE_FLAG). A holder
 * puts the slot on its thread's robust list -- the one glibc registered
 * with set_robust_list -- by following glibc's own layout and protocol
 * (nptl/descr.h ENQUEUE_MUTEX / DEQUEUE_MUTEX, pthread_mutex_lock.c's
 * robust path):
 *
 *  - the list is circular and doubly linked through {prev, next} pairs;
 *    every pointer, prev and next alike, points at a neighbour's `next`
 *    field (the head's `next` is robust_head.list itself, its `prev` the
 *    word glibc keeps just before the head); the kernel walks `next` only
 *    and finds the futex at entry + futex_offset, so our `next` must sit at
 *    word - futex_offset, which synctab_robust_ok() checks fits the slot's
 *    link area;
 *  - entries are pushed at the front; taking one out writes both
 *    neighbours (one may be a glibc mutex of this process, or the head);
 *  - list_op_pending names the entry around every change of the word and
 *    of the list, so a thread that dies between the CAS and the enqueue
 *    (or between the dequeue and the release) is still cleaned up by the
 *    kernel.
 * Because glibc writes our links when it dequeues its own neighbouring
 * mutexes, a table must stay mapped while one of its words is on a list
 * (libcairn keeps the mapping of a session that closes holding one).
 *
 * Thread ids and the process id are cached per thread (gettid and getpid
 * are system calls in glibc 2.36); a fork clears the caches in the child.
 *
 * Word changes are C11 atomics, sequentially consistent: the lock word is
 * the only synchronisation between syncd and the holders, and `gen`,
 * `state`, `seq` are read around it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "synctab.h"
#include "util/cleanup.h"
#include "util/clock.h"

/* The kernel's struct robust_list_head (linux/futex.h), as glibc keeps it
 * in its thread descriptor. */
typedef struct s_robust_head {
    void *list;                 /* first entry (a `next` field), or the head */
    long futex_offset;          /* futex = entry + futex_offset */
    void *list_op_pending;      /* the entry being locked or unlocked */
} s_robust_head_t;

/* Where the link sits in a slot: `next` at word + s_next_off, `prev` 8
 * bytes before it; 0 until synctab_robust_ok() found glibc's layout. */
static size_t s_next_off;
static bool s_robust;
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static __thread s_robust_head_t *s_head;   /* this thread's list head */
static __thread int32_t s_pid;             /* getpid(), 0 = not yet */

static void s_atfork_child(void)
{
    /* The forking thread is the child's only one; its list head is at the
     * same address (glibc registers it again), its pid is new. */
    s_pid = 0;
}

static s_robust_head_t *s_thread_head(void)
{
    s_robust_head_t *head = NULL;
    size_t len = 0;

    if (s_head)
        return s_head;
    if (syscall(SYS_get_robust_list, 0, &head, &len) < 0 ||
        len != sizeof(s_robust_head_t) || !head)
        return NULL;
    s_head = head;
    return head;
}

static int32_t s_getpid(void)
{
    if (!s_pid)
        s_pid = (int32_t)getpid();
    return s_pid;
}

static void s_probe_layout(void)
{
    s_robust_head_t *head = s_thread_head();
    const size_t link_start = offsetof(synctab_slot_t, link_area);
    const size_t link_end = link_start + sizeof(((synctab_slot_t *)0)->link_area);
    long off;

    pthread_atfork(NULL, NULL, s_atfork_child);
    if (!head)
        return;
    off = -head->futex_offset;
    /* the word is at offset 0 of the slot: the pair must fit after it */
    if (off < (long)(link_start + sizeof(void *)) ||
        (size_t)off + sizeof(void *) > link_end || off % sizeof(void *))
        return;
    s_next_off = (size_t)off;
    s_robust = true;
}

bool synctab_robust_ok(void)
{
    pthread_once(&s_once, s_probe_layout);
    return s_robust;
}

uint64_t synctab_name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- futex ------------------------------------------------------------- */

static int s_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline_ms)
{
    struct timespec ts, *tsp = NULL;

    if (deadline_ms >= 0) {
        uint64_t left = cairn_ms_left((uint64_t)deadline_ms);

        if (left == 0)
            return -ETIMEDOUT;
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        tsp = &ts;
    }
    if (syscall(SYS_futex, word, FUTEX_WAIT, val, tsp, NULL, 0) < 0)
        return -errno;
    return 0;
}

static void s_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ---- the robust list --------------------------------------------------- */

/* A link pointer is the address of an entry's `next` field; prev is the
 * pointer just before it. Bit 0 marks PI mutexes in glibc's list. */
static void **s_entry(synctab_slot_t *sl)
{
    return (void **)((char *)&sl->word + s_next_off);
}

static void **s_unmark(void *p)
{
    return (void **)((uintptr_t)p & ~(uintptr_t)1);
}

/* glibc's ENQUEUE_MUTEX: push e at the front. */
static void s_enqueue(s_robust_head_t *head, void **e)
{
    void **first = s_unmark(head->list);

    first[-1] = e;                      /* the old first's prev (or the head's) */
    e[0] = head->list;
    e[-1] = &head->list;
    atomic_signal_fence(memory_order_seq_cst);  /* entry ready before it is linked */
    head->list = e;
}

/* glibc's DEQUEUE_MUTEX: both neighbours point past e, then e is cleared. */
static void s_dequeue(void **e)
{
    void **next = s_unmark(e[0]);
    void **prev = s_unmark(e[-1]);

    next[-1] = e[-1];
    prev[0] = e[0];
    atomic_signal_fence(memory_order_seq_cst);  /* out of the list before e changes */
    e[-1] = NULL;
    e[0] = NULL;
}

static void s_pending(s_robust_head_t *head, void **e)
{
    head->list_op_pending = e;
    atomic_signal_fence(memory_order_seq_cst);
}

/* ---- the file ---------------------------------------------------------- */

static int s_map(synctab_t *t, int fd, cairn_error_t *err, const char *path)
{
    void *p = mmap(NULL, SYNCTAB_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);

    if (p == MAP_FAILED)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mmap %s: %s", path,
                               strerror(errno));
    t->hdr = p;
    t->slots = (synctab_slot_t *)((char *)p + SYNCTAB_HEADER_SIZE);
    t->size = SYNCTAB_FILE_SIZE;
    return 0;
}

/* A table left by an earlier syncd may still be mapped by processes that
 * cached words in it: its free words are parked so that they ask the new
 * syncd instead of taking a word nobody serves any more. */
static void s_retire_old(const char *path)
{
    synctab_t old = { 0 };

    if (synctab_open(&old, path, NULL) < 0)
        return;
    for (uint32_t i = 0; i < SYNCTAB_SLOTS; i++) {
        bool died;

        atomic_store(&old.slots[i].state, SYNCTAB_REVOKING);
        synctab_try_park(&old, i, &died);
    }
    synctab_unmap(&old);
}

int synctab_create(synctab_t *t, const char *path, uint32_t uid, uint32_t node,
                   uint64_t syncd_start, cairn_error_t *err)
{
    _cleanup_close_ int fd = -1;
    char tmp[PATH_MAX];
    synctab_t nt = { 0 };
    int r;

    if (!t || !path)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "synctab_create: missing argument");
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.new", path) >= sizeof tmp)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "table path too long: %s", path);
    /* Made beside and renamed over: a process that maps the old file keeps
     * its inode (its held words stay valid memory), never a truncated one. */
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "create %s: %s", tmp,
                               strerror(errno));
    if (fchown(fd, (uid_t)uid, (gid_t)-1) < 0 || fchmod(fd, 0600) < 0 ||
        ftruncate(fd, SYNCTAB_FILE_SIZE) < 0) {
        r = -errno;
        unlink(tmp);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "set up %s: %s", tmp,
                               strerror(-r));
    }
    r = s_map(&nt, fd, err, tmp);
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    *nt.hdr = (synctab_header_t){ .magic = SYNCTAB_MAGIC,
                                  .version = SYNCTAB_VERSION,
                                  .slots = SYNCTAB_SLOTS,
                                  .slot_size = SYNCTAB_SLOT_SIZE,
                                  .uid = uid,
                                  .node = node,
                                  .syncd_start = syncd_start };
    for (uint32_t i = 0; i < SYNCTAB_SLOTS; i++)
        atomic_store(&nt.slots[i].word, SYNCTAB_PARKED);
    s_retire_old(path);
    if (rename(tmp, path) < 0) {
        r = -errno;
        synctab_unmap(&nt);
        unlink(tmp);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "rename %s to %s: %s",
                               tmp, path, strerror(-r));
    }
    *t = nt;
    return 0;
}

int synctab_open(synctab_t *t, const char *path, cairn_error_t *err)
{
    _cleanup_close_ int fd = -1;
    struct stat st;
    synctab_t nt = { 0 };
    int r;

    if (!t || !path)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "synctab_open: missing argument");
    fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno,
                               errno == EACCES ? CAIRN_PERMISSION_DENIED
                                               : CAIRN_SYSTEM,
                               "open lock table %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "stat %s: %s", path,
                               strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size != (off_t)SYNCTAB_FILE_SIZE)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "%s is not a lock table (%lld bytes)", path,
                               (long long)st.st_size);
    r = s_map(&nt, fd, err, path);
    if (r < 0)
        return r;
    if (nt.hdr->magic != SYNCTAB_MAGIC || nt.hdr->version != SYNCTAB_VERSION ||
        nt.hdr->slots != SYNCTAB_SLOTS ||
        nt.hdr->slot_size != SYNCTAB_SLOT_SIZE) {
        synctab_unmap(&nt);
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "%s is not a version %u lock table", path,
                               SYNCTAB_VERSION);
    }
    *t = nt;
    return 0;
}

void synctab_unmap(synctab_t *t)
{
    if (!t || !t->hdr)
        return;
    munmap(t->hdr, t->size);
    *t = (synctab_t){ 0 };
}

/* ---- syncd's side ------------------------------------------------------ */

void synctab_assign(synctab_t *t, uint32_t i, uint64_t name_hash,
                    uint64_t grant, uint32_t flags)
{
    synctab_slot_t *sl = &t->slots[i];

    atomic_fetch_add(&sl->gen, 1);
    atomic_store(&sl->grant, grant);
    atomic_store(&sl->seq, 0);
    atomic_store(&sl->flags, flags);
    atomic_store(&sl->holder_pid, 0);
    sl->name_hash = name_hash;
    atomic_store(&sl->state, SYNCTAB_CACHED);
}

void synctab_grant_to(synctab_t *t, uint32_t i, int32_t tid)
{
    synctab_slot_t *sl = &t->slots[i];
    uint32_t old = atomic_load(&sl->word);

    memset(sl->link_area, 0, sizeof sl->link_area);
    while ((old & SYNCTAB_TID_MASK) == SYNCTAB_PARKED &&
           !atomic_compare_exchange_weak(&sl->word, &old,
                                         ((uint32_t)tid & SYNCTAB_TID_MASK) |
                                             (old & SYNCTAB_WAITERS)))
        ;
}

int synctab_grant_free(synctab_t *t, uint32_t i, int32_t pid, int32_t tid,
                       uint64_t *token, bool *owner_died)
{
    const uint32_t me = (uint32_t)tid & SYNCTAB_TID_MASK;
    synctab_slot_t *sl = &t->slots[i];
    uint32_t old = atomic_load(&sl->word);
    uint64_t seq;

    for (;;) {
        uint32_t holder = old & SYNCTAB_TID_MASK;

        if (holder == SYNCTAB_PARKED ||
            atomic_load(&sl->state) != SYNCTAB_CACHED ||
            atomic_load(&sl->seq) >= SYNCTAB_SEQ_MAX)
            return SYNCTAB_GO_SLOW;
        if (holder == me)
            return -EDEADLK;
        if (holder != 0)
            return -EBUSY;
        if (atomic_compare_exchange_weak(&sl->word, &old,
                                         me | (old & SYNCTAB_WAITERS)))
            break;
    }
    /* a dead holder's link may still be there: the adopter starts clean */
    memset(sl->link_area, 0, sizeof sl->link_area);
    seq = atomic_fetch_add(&sl->seq, 1) + 1;
    if (old & SYNCTAB_OWNER_DIED)
        atomic_fetch_or(&sl->flags, SYNCTAB_INCONSISTENT);
    atomic_store(&sl->holder_pid, pid);
    if (token)
        *token = atomic_load(&sl->grant) + seq;
    if (owner_died)
        *owner_died = (old & SYNCTAB_OWNER_DIED) != 0;
    return SYNCTAB_TAKEN;
}

void synctab_unpark(synctab_t *t, uint32_t i)
{
    synctab_slot_t *sl = &t->slots[i];
    uint32_t old = atomic_load(&sl->word);

    while ((old & SYNCTAB_TID_MASK) == SYNCTAB_PARKED) {
        if (atomic_compare_exchange_weak(&sl->word, &old, 0)) {
            if (old & SYNCTAB_WAITERS)
                s_futex_wake(&sl->word, INT_MAX);
            return;
        }
    }
}

int synctab_try_park(synctab_t *t, uint32_t i, bool *owner_died)
{
    synctab_slot_t *sl = &t->slots[i];
    uint32_t old = atomic_load(&sl->word);

    for (;;) {
        uint32_t tid = old & SYNCTAB_TID_MASK;

        if (tid == SYNCTAB_PARKED || tid == 0) {
            bool died = (old & SYNCTAB_OWNER_DIED) ||
                        (atomic_load(&sl->flags) & SYNCTAB_INCONSISTENT);

            if (tid == 0 &&
                !atomic_compare_exchange_weak(&sl->word, &old, SYNCTAB_PARKED))
                continue;
            if (old & SYNCTAB_WAITERS)
                s_futex_wake(&sl->word, INT_MAX);  /* they go to syncd */
            atomic_store(&sl->holder_pid, 0);
            if (owner_died)
                *owner_died = died;
            return 1;
        }
        /* held: the holder's unlock parks it once it sees both */
        atomic_store(&sl->state, SYNCTAB_REVOKING);
        if (atomic_compare_exchange_weak(&sl->word, &old, old | SYNCTAB_WAITERS))
            return 0;
    }
}

bool synctab_owner_died(synctab_t *t, uint32_t i, int32_t tid)
{
    synctab_slot_t *sl = &t->slots[i];
    uint32_t old = atomic_load(&sl->word);

    while ((old & SYNCTAB_TID_MASK) == ((uint32_t)tid & SYNCTAB_TID_MASK)) {
        if (atomic_compare_exchange_weak(&sl->word, &old,
                                         SYNCTAB_OWNER_DIED |
                                             (old & SYNCTAB_WAITERS))) {
            atomic_store(&sl->holder_pid, 0);
            if (old & SYNCTAB_WAITERS)
                s_futex_wake(&sl->word, 1);
            return true;
        }
    }
    return false;
}

/* ---- a process's side -------------------------------------------------- */

/* Gives back a word the caller took but may not keep (the slot changed
 * under it, the fast path is at SEQ_MAX, the mutex is not recoverable): as
 * an unlock that hands out no token. Before the link is enqueued; pending
 * still names the entry. */
static void s_give_back(synctab_slot_t *sl, uint32_t cur)
{
    bool park = atomic_load(&sl->state) != SYNCTAB_CACHED;
    uint32_t old = cur;

    while (!atomic_compare_exchange_weak(&sl->word, &old,
                                         park ? SYNCTAB_PARKED : 0))
        ;
    atomic_store(&sl->holder_pid, 0);
    if (old & SYNCTAB_WAITERS)
        s_futex_wake(&sl->word, park ? INT_MAX : 1);
}

/* Waits while the word is held by another thread: sets WAITERS, then a
 * futex wait on that value. 0 to look again, -ETIMEDOUT. */
static int s_wait_held(synctab_slot_t *sl, uint32_t old, int64_t deadline_ms)
{
    int r;

    if (!(old & SYNCTAB_WAITERS) &&
        !atomic_compare_exchange_strong(&sl->word, &old, old | SYNCTAB_WAITERS))
        return 0;
    r = s_futex_wait(&sl->word, old | SYNCTAB_WAITERS, deadline_ms);
    if (r == -ETIMEDOUT && deadline_ms >= 0 &&
        cairn_ms_left((uint64_t)deadline_ms) == 0)
        return -ETIMEDOUT;
    return 0; /* woken, EAGAIN (the word changed), EINTR */
}

/* The CAS loop of synctab_lock: *ret_old is the word it replaced.
 * SYNCTAB_TAKEN, SYNCTAB_GO_SLOW (parked) or a negative errno. */
static int s_take_word(synctab_slot_t *sl, int32_t tid, bool wait,
                       int64_t deadline_ms, uint32_t *ret_old)
{
    const uint32_t me = (uint32_t)tid & SYNCTAB_TID_MASK;
    uint32_t waiters = 0;

    for (;;) {
        uint32_t old = atomic_load(&sl->word);
        uint32_t holder = old & SYNCTAB_TID_MASK;
        int r;

        if (holder == SYNCTAB_PARKED)
            return SYNCTAB_GO_SLOW;
        if (holder == me)
            return -EDEADLK;
        if (holder == 0) {
            /* after a wait others may still wait: keep them told */
            uint32_t nw = me | (old & SYNCTAB_WAITERS) | waiters;

            if (atomic_compare_exchange_strong(&sl->word, &old, nw)) {
                *ret_old = old;
                return SYNCTAB_TAKEN;
            }
            continue;
        }
        if (!wait)
            return -EBUSY;
        r = s_wait_held(sl, old, deadline_ms);
        if (r < 0)
            return r;
        waiters = SYNCTAB_WAITERS;
    }
}

int synctab_lock(synctab_t *t, uint32_t i, uint32_t gen, int32_t tid,
                 bool wait, int64_t deadline_ms, uint64_t *token,
                 bool *owner_died)
{
    s_robust_head_t *head;
    synctab_slot_t *sl;
    uint32_t old = 0;
    uint64_t seq;
    void **e;
    int r;

    if (!t || !t->slots || i >= SYNCTAB_SLOTS || !synctab_robust_ok() ||
        !(head = s_thread_head()))
        return SYNCTAB_GO_SLOW;
    sl = &t->slots[i];
    if (atomic_load(&sl->gen) != gen ||
        atomic_load(&sl->state) != SYNCTAB_CACHED)
        return SYNCTAB_GO_SLOW;
    e = s_entry(sl);
    s_pending(head, e);
    r = s_take_word(sl, tid, wait, deadline_ms, &old);
    if (r != SYNCTAB_TAKEN) {
        s_pending(head, NULL);
        return r;
    }
    /* the slot may have been parked and given to another name between the
     * first look at gen and the CAS; nor may the grant run out of tokens */
    seq = atomic_load(&sl->seq);
    if (atomic_load(&sl->gen) != gen || seq >= SYNCTAB_SEQ_MAX ||
        (atomic_load(&sl->flags) & SYNCTAB_NOT_RECOVERABLE)) {
        bool nr = atomic_load(&sl->gen) == gen && seq < SYNCTAB_SEQ_MAX;

        s_give_back(sl, atomic_load(&sl->word));
        s_pending(head, NULL);
        return nr ? -ENOTRECOVERABLE : SYNCTAB_GO_SLOW;
    }
    atomic_store(&sl->seq, seq + 1);
    if (old & SYNCTAB_OWNER_DIED)
        atomic_fetch_or(&sl->flags, SYNCTAB_INCONSISTENT);
    atomic_store(&sl->holder_pid, s_getpid());
    s_enqueue(head, e);
    s_pending(head, NULL);
    if (token)
        *token = atomic_load(&sl->grant) + seq + 1;
    if (owner_died)
        *owner_died = (old & SYNCTAB_OWNER_DIED) != 0;
    return SYNCTAB_TAKEN;
}

void synctab_adopt(synctab_t *t, uint32_t i, int32_t tid)
{
    s_robust_head_t *head;
    synctab_slot_t *sl;

    if (!t || !t->slots || i >= SYNCTAB_SLOTS || !synctab_robust_ok() ||
        !(head = s_thread_head()))
        return;     /* syncd's pidfd makes it owner-died if we die */
    sl = &t->slots[i];
    if ((atomic_load(&sl->word) & SYNCTAB_TID_MASK) !=
        ((uint32_t)tid & SYNCTAB_TID_MASK))
        return;
    s_pending(head, s_entry(sl));
    atomic_store(&sl->holder_pid, s_getpid());
    s_enqueue(head, s_entry(sl));
    s_pending(head, NULL);
}

int synctab_unlock(synctab_t *t, uint32_t i, int32_t tid)
{
    const uint32_t me = (uint32_t)tid & SYNCTAB_TID_MASK;
    s_robust_head_t *head = NULL;
    synctab_slot_t *sl;
    uint32_t old, nw;
    bool on_list;
    int ret;

    if (!t || !t->slots || i >= SYNCTAB_SLOTS)
        return -EINVAL;
    sl = &t->slots[i];
    old = atomic_load(&sl->word);
    if ((old & SYNCTAB_TID_MASK) != me)
        return -EPERM;
    on_list = synctab_robust_ok() && (head = s_thread_head()) &&
              s_entry(sl)[0] != NULL;
    if (on_list) {
        s_pending(head, s_entry(sl));
        s_dequeue(s_entry(sl));
    }
    if (atomic_load(&sl->flags) & SYNCTAB_INCONSISTENT)
        atomic_store(&sl->flags, SYNCTAB_NOT_RECOVERABLE);
    atomic_store(&sl->holder_pid, 0);
    do {
        bool park = (atomic_load(&sl->flags) & SYNCTAB_NOT_RECOVERABLE) ||
                    ((old & SYNCTAB_WAITERS) &&
                     atomic_load(&sl->state) == SYNCTAB_REVOKING);

        nw = park ? SYNCTAB_PARKED : 0;
        ret = park ? 1 : 0;
    } while (!atomic_compare_exchange_weak(&sl->word, &old, nw));
    /* syncd may have marked it REVOKING just after we looked: park it
     * ourselves if nobody took it since (else its re-check timer will) */
    if (nw == 0 && atomic_load(&sl->state) == SYNCTAB_REVOKING) {
        uint32_t zero = 0;

        if (atomic_compare_exchange_strong(&sl->word, &zero, SYNCTAB_PARKED)) {
            nw = SYNCTAB_PARKED;
            ret = 1;
        }
    }
    if (old & SYNCTAB_WAITERS)
        s_futex_wake(&sl->word, nw == SYNCTAB_PARKED ? INT_MAX : 1);
    if (on_list)
        s_pending(head, NULL);
    return ret;
}

int synctab_consistent(synctab_t *t, uint32_t i, int32_t tid)
{
    synctab_slot_t *sl;

    if (!t || !t->slots || i >= SYNCTAB_SLOTS)
        return -EINVAL;
    sl = &t->slots[i];
    if ((atomic_load(&sl->word) & SYNCTAB_TID_MASK) !=
        ((uint32_t)tid & SYNCTAB_TID_MASK))
        return -EPERM;
    if (!(atomic_fetch_and(&sl->flags, ~(uint32_t)SYNCTAB_INCONSISTENT) &
          SYNCTAB_INCONSISTENT))
        return -EINVAL;
    return 0;
}
