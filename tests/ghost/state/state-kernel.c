/* state-kernel.c - the process cases of ghost-state (state.h) for state
 * the kernel keeps about a process where no /proc file shows it whole:
 * keyrings, SysV semaphore undo lists, NUMA memory policies, a clone's
 * exit signal, the private futex hash. Most are refused (the restore
 * cannot make them again, docs/ghost.md's inventory says why); each
 * refusal's check then makes sure the process still has its state (the
 * dump left it running untouched). The futex hash is restored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sched.h>

#include "state.h"

#define S_KEYCTL_GET_KEYRING_ID 0
#define S_KEYCTL_JOIN_SESSION_KEYRING 1
#define S_KEY_SPEC_THREAD_KEYRING (-1)
#define S_KEY_SPEC_PROCESS_KEYRING (-2)
#define S_KEY_SPEC_SESSION_KEYRING (-3)
#define S_MPOL_PREFERRED 1
#define S_MPOL_BIND 2
#define S_MPOL_F_ADDR (1 << 1)
#define S_PR_FUTEX_HASH 78
#define S_FUTEX_HASH_SET_SLOTS 1
#define S_FUTEX_HASH_GET_SLOTS 2

/* ---- keyrings ----------------------------------------------------------- */

static long s_keyring(int spec, int create)
{
    return syscall(SYS_keyctl, S_KEYCTL_GET_KEYRING_ID, spec, create);
}

/* A keyring of kind spec, made (create) in setup, the same after. */
typedef struct s_keys {
    int spec;
    long serial;
} s_keys_t;

static int s_keyring_setup(void **ctx, int spec)
{
    s_keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return state_fail("out of memory");
    k->spec = spec;
    k->serial = s_keyring(spec, 1);
    *ctx = k;
    return k->serial < 0 ? state_fail("keyctl(GET_KEYRING_ID, %d, create): %s", spec,
                                      strerror(errno))
                         : 0;
}

static int s_process_keyring_setup(void **ctx)
{
    return s_keyring_setup(ctx, S_KEY_SPEC_PROCESS_KEYRING);
}

static int s_thread_keyring_setup(void **ctx)
{
    return s_keyring_setup(ctx, S_KEY_SPEC_THREAD_KEYRING);
}

static int s_keyring_check(void *ctx)
{
    s_keys_t *k = ctx;
    long now = s_keyring(k->spec, 0);
    return now == k->serial ? 0 : state_fail("keyring %d is %ld, was %ld", k->spec, now,
                                             k->serial);
}

/* A child that joined a session keyring of its own (keyctl join), and
 * answers with its serial: the tree's own keyring, refused. */
typedef struct s_kid {
    pid_t pid;
    int ask, answer;
    long serial;
} s_kid_t;

static int s_session_keyring_setup(void **ctx)
{
    int a[2], b[2];
    s_kid_t *c = calloc(1, sizeof(*c));
    if (!c || pipe(a) < 0 || pipe(b) < 0)
        return state_fail("pipe: %s", strerror(errno));
    *ctx = c;
    c->pid = fork();
    if (c->pid < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c->pid == 0) {
        char x;
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        long mine = syscall(SYS_keyctl, S_KEYCTL_JOIN_SESSION_KEYRING, NULL);
        while (read(a[0], &x, 1) == 1) {
            long now = mine < 0 ? mine : s_keyring(S_KEY_SPEC_SESSION_KEYRING, 0);
            if (write(b[1], &now, sizeof(now)) != (ssize_t)sizeof(now))
                _exit(1);
        }
        _exit(0);
    }
    c->ask = a[1], c->answer = b[0];
    close(a[0]), close(b[1]);
    if (write(c->ask, "?", 1) != 1 || read(c->answer, &c->serial, sizeof(c->serial)) !=
                                          (ssize_t)sizeof(c->serial))
        return state_fail("the child does not answer");
    if (c->serial < 0)
        return state_fail("keyctl(JOIN_SESSION_KEYRING) failed in the child");
    return c->serial == s_keyring(S_KEY_SPEC_SESSION_KEYRING, 0)
               ? state_fail("the child's session keyring is its parent's")
               : 0;
}

static int s_session_keyring_check(void *ctx)
{
    s_kid_t *c = ctx;
    long now = 0;
    if (write(c->ask, "?", 1) != 1 || read(c->answer, &now, sizeof(now)) != (ssize_t)sizeof(now))
        return state_fail("the child does not answer after the refusal");
    return now == c->serial ? 0 : state_fail("the child's session keyring is %ld, was %ld",
                                             now, c->serial);
}

/* ---- SysV semaphore undo ------------------------------------------------ */

typedef struct s_sem {
    int id;
} s_sem_t;

/* A semaphore raised with SEM_UNDO: the kernel lowers it again when the
 * process exits, from an undo list no /proc file shows. */
static int s_sem_undo_setup(void **ctx)
{
    s_sem_t *s = calloc(1, sizeof(*s));
    if (!s)
        return state_fail("out of memory");
    *ctx = s;
    s->id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (s->id < 0)
        return state_fail("semget: %s", strerror(errno));
    struct sembuf op = { .sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO };
    return semop(s->id, &op, 1) < 0 ? state_fail("semop SEM_UNDO: %s", strerror(errno)) : 0;
}

static int s_sem_undo_check(void *ctx)
{
    s_sem_t *s = ctx;
    int v = semctl(s->id, 0, GETVAL);
    int r = v == 1 ? 0 : state_fail("the semaphore is %d, not 1", v);
    semctl(s->id, 0, IPC_RMID);   /* the node's IPC namespace outlives us */
    return r;
}

/* ---- NUMA memory policy ------------------------------------------------- */

static long s_get_mempolicy(int *mode, void *addr, unsigned long flags)
{
    unsigned long nodes[16] = { 0 };
    return syscall(SYS_get_mempolicy, mode, nodes, sizeof(nodes) * 8, addr, flags);
}

static int s_numa_process_setup(void **ctx)
{
    unsigned long node0 = 1;
    (void)ctx;
    if (syscall(SYS_set_mempolicy, S_MPOL_PREFERRED, &node0, sizeof(node0) * 8) < 0)
        return state_fail("set_mempolicy(MPOL_PREFERRED): %s", strerror(errno));
    return 0;
}

static int s_numa_process_check(void *ctx)
{
    int mode = -1;
    (void)ctx;
    if (s_get_mempolicy(&mode, NULL, 0) < 0)
        return state_fail("get_mempolicy: %s", strerror(errno));
    return mode == S_MPOL_PREFERRED ? 0 : state_fail("the policy is %d, not MPOL_PREFERRED",
                                                     mode);
}

static int s_numa_mbind_setup(void **ctx)
{
    unsigned long node0 = 1;
    size_t len = 4 * (size_t)sysconf(_SC_PAGESIZE);
    void *at = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    *ctx = at;
    if (syscall(SYS_mbind, at, len, S_MPOL_BIND, &node0, sizeof(node0) * 8, 0) < 0)
        return state_fail("mbind(MPOL_BIND): %s", strerror(errno));
    memset(at, 1, len);
    return 0;
}

static int s_numa_mbind_check(void *ctx)
{
    int mode = -1;
    if (s_get_mempolicy(&mode, ctx, S_MPOL_F_ADDR) < 0)
        return state_fail("get_mempolicy(MPOL_F_ADDR): %s", strerror(errno));
    return mode == S_MPOL_BIND ? 0 : state_fail("the range's policy is %d, not MPOL_BIND", mode);
}

/* A second thread with a policy of its own (the leader has none: only
 * asking the thread shows it). */
typedef struct s_numa_thread {
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int asked, answered, mode;
} s_numa_thread_t;

static void *s_numa_thread_main(void *arg)
{
    s_numa_thread_t *n = arg;
    unsigned long node0 = 1;
    int r = (int)syscall(SYS_set_mempolicy, S_MPOL_BIND, &node0, sizeof(node0) * 8);
    pthread_mutex_lock(&n->lock);
    for (;;) {
        if (n->asked > n->answered) {
            n->mode = -1;
            if (r == 0)
                s_get_mempolicy(&n->mode, NULL, 0);
            n->answered = n->asked;
            pthread_cond_broadcast(&n->cond);
        }
        pthread_cond_wait(&n->cond, &n->lock);
    }
    return NULL;
}

/* The thread's policy as it tells it. */
static int s_numa_thread_ask(s_numa_thread_t *n)
{
    pthread_mutex_lock(&n->lock);
    int want = ++n->asked;
    pthread_cond_broadcast(&n->cond);
    while (n->answered < want)
        pthread_cond_wait(&n->cond, &n->lock);
    int mode = n->mode;
    pthread_mutex_unlock(&n->lock);
    return mode;
}

static int s_numa_thread_setup(void **ctx)
{
    s_numa_thread_t *n = calloc(1, sizeof(*n));
    if (!n)
        return state_fail("out of memory");
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    *ctx = n;
    if (pthread_create(&n->th, NULL, s_numa_thread_main, n) != 0)
        return state_fail("pthread_create failed");
    int mode = s_numa_thread_ask(n);
    return mode == S_MPOL_BIND ? 0 : state_fail("the thread's policy is %d", mode);
}

static int s_numa_thread_check(void *ctx)
{
    int mode = s_numa_thread_ask(ctx);
    return mode == S_MPOL_BIND ? 0 : state_fail("the thread's policy is %d, not MPOL_BIND",
                                                mode);
}

/* ---- a clone's exit signal ---------------------------------------------- */

/* A child made by clone3 with no exit signal (exit_signal 0: its parent
 * learns of its end by waitpid __WCLONE only). */
static int s_exit_signal_setup(void **ctx)
{
    struct clone_args ca = { .exit_signal = 0 };
    pid_t *kid = calloc(1, sizeof(*kid));
    if (!kid)
        return state_fail("out of memory");
    *ctx = kid;
    pid_t parent = getpid();
    *kid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (*kid < 0)
        return state_fail("clone3: %s", strerror(errno));
    if (*kid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        while (getppid() == parent)
            pause();
        _exit(0);
    }
    return 0;
}

static int s_exit_signal_check(void *ctx)
{
    pid_t *kid = ctx;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)*kid);
    FILE *f = fopen(path, "re");
    if (!f)
        return state_fail("the child %d is gone: %s", (int)*kid, strerror(errno));
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int field = 2, sig = -1;
    for (; p && *p && field < 38; p++)
        if (*p == ' ' && ++field == 38)
            sig = atoi(p + 1);
    return sig == 0 ? 0 : state_fail("the child's exit signal is %d, not 0", sig);
}

/* ---- the private futex hash --------------------------------------------- */

/* A size the program chose: restored (the kernel would have sized it
 * otherwise, or left a single-threaded process on the global hash). */
static int s_futex_hash_setup(void **ctx)
{
    (void)ctx;
    if (prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_SET_SLOTS, 64, 0, 0) < 0)
        return state_fail("PR_FUTEX_HASH_SET_SLOTS 64: %s", strerror(errno));
    return 0;
}

static int s_futex_hash_check(void *ctx)
{
    (void)ctx;
    int slots = prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    return slots == 64 ? 0 : state_fail("the futex hash has %d slots, not 64", slots);
}

static void *s_idle(void *arg)
{
    for (;;)
        pause();
    return arg;
}

/* The global hash chosen (slots 0) before threads: the kernel would give
 * the threaded process a private one. */
static int s_futex_global_setup(void **ctx)
{
    pthread_t th;
    (void)ctx;
    if (prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_SET_SLOTS, 0, 0, 0) < 0)
        return state_fail("PR_FUTEX_HASH_SET_SLOTS 0: %s", strerror(errno));
    for (int i = 0; i < 3; i++)
        if (pthread_create(&th, NULL, s_idle, NULL) != 0)
            return state_fail("pthread_create failed");
    int slots = prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    return slots == 0 ? 0 : state_fail("the futex hash has %d slots before, not 0", slots);
}

static int s_futex_global_check(void *ctx)
{
    (void)ctx;
    int slots = prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    return slots == 0 ? 0 : state_fail("the futex hash has %d slots, not 0 (global)", slots);
}

const state_case_t state_cases_kernel[] = {
    { .name = "process-keyring", .expect = STATE_REFUSE, .reason = "a process keyring",
      .setup = s_process_keyring_setup, .check = s_keyring_check },
    { .name = "process-thread-keyring", .expect = STATE_REFUSE, .reason = "a thread keyring",
      .setup = s_thread_keyring_setup, .check = s_keyring_check },
    { .name = "process-session-keyring", .expect = STATE_REFUSE,
      .reason = "a session keyring its parent has not", .setup = s_session_keyring_setup,
      .check = s_session_keyring_check, .flags = "tree" },
    { .name = "process-sem-undo", .expect = STATE_REFUSE, .reason = "semaphore undo",
      .setup = s_sem_undo_setup, .check = s_sem_undo_check },
    { .name = "process-numa-policy", .expect = STATE_REFUSE, .reason = "NUMA memory policy",
      .setup = s_numa_process_setup, .check = s_numa_process_check },
    { .name = "process-numa-mbind", .expect = STATE_REFUSE, .reason = "NUMA memory policy",
      .setup = s_numa_mbind_setup, .check = s_numa_mbind_check },
    { .name = "process-numa-thread-policy", .expect = STATE_REFUSE,
      .reason = "NUMA memory policy", .setup = s_numa_thread_setup,
      .check = s_numa_thread_check },
    { .name = "process-exit-signal", .expect = STATE_REFUSE, .reason = "has exit signal 0",
      .setup = s_exit_signal_setup, .check = s_exit_signal_check, .flags = "tree" },
    { .name = "process-futex-hash", .setup = s_futex_hash_setup, .check = s_futex_hash_check },
    { .name = "process-futex-hash-global", .setup = s_futex_global_setup,
      .check = s_futex_global_check },
    { .name = NULL },
};
