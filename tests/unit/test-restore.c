/* test-restore.c - the restore side of the ghost engine, end to end:
 * ghost-dump a process we started, kill it, ghost-restore it, and let the
 * restored process check its own state.
 *
 * Design: the test binary re-executes itself as the helper (an ELF
 * constructor sees GHOST_TEST_MODE and never returns to criterion). The
 * helper sets up every kind of state it can check - anonymous, heap,
 * shared anonymous, memfd, private file and PROT_NONE memory with known
 * bytes, a file at an offset, a pipe to itself with unread data, a
 * handler, a blocked signal, cwd, umask, an AVX register live across a
 * nanosleep - writes "ready" to its report file and loops. SIGUSR1 (its
 * handler) tells it to verify and write "PASS pid=N" or "FAIL: why" to
 * the report, through the file it had open since before the dump. The
 * test is a child subreaper, so restored processes (reparented when
 * ghost-restore exits) come back to it to be reaped.
 *
 * Mode "tree" is a process tree (see s_tree_helper): a session leader
 * with two children, one in its own process group, pipes both ways with
 * unread bytes in each at dump time; every member checks its parent,
 * session, group and pipes itself after the restore.
 *
 * Mode "fds" (see s_fds_helper) is a parent and a forked child sharing
 * open file descriptions (fd 3, its dup fd 42, both inherited) and a
 * memfd with a shared mapping of it: offsets must keep moving together
 * across processes, and mapping and fd must stay one object.
 *
 * ghost_restore_check (in this process) is run on a real image and on
 * thousands of damaged copies of it (records' bytes changed, records
 * dropped, repeated, swapped, cut): each is accepted or refused with a
 * reason, never a crash (the ASan build runs it too), and nothing is
 * left behind (fds, processes). The same for an image of pre-copy rounds
 * (ghost-dump --precopy), which must also restore and pass.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "restore.h"

#define MB (1u << 20)
/* The helper's anonymous mapping: large enough that its pages (with the
 * heap's) pass restore.c's S_COPY_HELPER_MIN, so every restore of it
 * copies with the restorer's helper thread too. */
#define S_ANON_MB 12u

/* ---- helper ------------------------------------------------------------ */

/* The helper's state (a local of s_helper: no globals but the flag). */
typedef struct {
    int rep;                    /* report file, O_APPEND */
    int data;                   /* data file read at an offset */
    int pipe_r, pipe_w;         /* pipe to itself with "hello" unread */
    uint8_t *heap, *anon, *shared, *memfd, *filep, *none;
    uint8_t stack[8192];        /* lives on the main stack */
    unsigned long counter;      /* iterations so far */
    int avx_bad;                /* ymm8 changed across a nanosleep */
} helper_t;

static volatile sig_atomic_t s_go;   /* set by the SIGUSR1 handler */

static void s_on_usr1(int sig)
{
    (void)sig;
    s_go = 1;
}

static void s_fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static int s_same(const uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7))
            return 0;
    return 1;
}

static void *s_map(size_t n, int prot, int flags, int fd)
{
    void *p = mmap(NULL, n, prot, flags, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void s_setup_memory(helper_t *h, const char *dir)
{
    char path[512];
    int fd;

    h->heap = malloc(2 * MB);
    h->anon = s_map(S_ANON_MB * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    h->shared = s_map(MB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
    fd = memfd_create("ghost-test", 0);
    if (ftruncate(fd, MB) == 0)
        h->memfd = s_map(MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    close(fd);
    snprintf(path, sizeof path, "%s/mapped", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (ftruncate(fd, MB) == 0)
        h->filep = s_map(MB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
    close(fd);
    h->none = s_map(64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    s_fill(h->heap, 2 * MB, 1);
    s_fill(h->anon, S_ANON_MB * MB, 2);
    s_fill(h->shared, MB, 3);
    s_fill(h->memfd, MB, 4);
    s_fill(h->filep, MB, 5);   /* private copy: the file stays zero */
    s_fill(h->none, 64 * 1024, 6);
    s_fill(h->stack, sizeof h->stack, 7);
    mprotect(h->none, 64 * 1024, PROT_NONE);
}

static void s_setup_state(helper_t *h, const char *dir)
{
    char path[512];
    int p[2];
    sigset_t set;

    snprintf(path, sizeof path, "%s/data", dir);
    h->data = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (write(h->data, "0123456789", 10) != 10 || lseek(h->data, 7, SEEK_SET) != 7)
        _exit(2);
    if (pipe(p) < 0 || write(p[1], "hello", 5) != 5)
        _exit(2);
    h->pipe_r = p[0];
    h->pipe_w = p[1];
    signal(SIGUSR1, s_on_usr1);
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (chdir(dir) < 0)
        _exit(2);
    umask(027);
}

/* One iteration: ymm8 holds a pattern across a raw nanosleep (the dump
 * most likely lands inside it), then is compared. */
static void s_tick(helper_t *h)
{
    static const uint64_t pat[4] = { 0x1122334455667788ull, 0x99aabbccddeeff00ull,
                                     0x0f1e2d3c4b5a6978ull, 0xdeadbeefcafef00dull };
    uint64_t back[4];
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    long r;

    __asm__ volatile("vmovdqu %2, %%ymm8\n\t"
                     "syscall\n\t"
                     "vmovdqu %%ymm8, %1\n\t"
                     : "=a"(r), "=m"(back)
                     : "m"(pat), "a"((long)SYS_nanosleep), "D"(&ts), "S"(0)
                     : "rcx", "r11", "memory", "xmm8");
    (void)r;
    if (memcmp(pat, back, sizeof pat))
        h->avx_bad = 1;
    h->counter++;
}

static const char *s_verify(helper_t *h, unsigned long counter_at_ready)
{
    char buf[16] = { 0 }, cwd[512];
    sigset_t set;

    if (!s_same(h->heap, 2 * MB, 1) || !s_same(h->anon, S_ANON_MB * MB, 2))
        return "heap or anonymous memory differs";
    if (!s_same(h->shared, MB, 3) || !s_same(h->memfd, MB, 4))
        return "shared anonymous or memfd memory differs";
    if (!s_same(h->filep, MB, 5) || !s_same(h->stack, sizeof h->stack, 7))
        return "private file mapping or stack differs";
    if (mprotect(h->none, 64 * 1024, PROT_READ) < 0 || !s_same(h->none, 64 * 1024, 6))
        return "PROT_NONE memory differs";
    if (h->avx_bad)
        return "ymm8 changed across the checkpoint";
    if (h->counter <= counter_at_ready)
        return "counter did not continue";
    if (read(h->data, buf, 1) != 1 || buf[0] != '7')
        return "data file offset not preserved";
    if (read(h->pipe_r, buf, 5) != 5 || memcmp(buf, "hello", 5))
        return "pipe contents lost";
    sigprocmask(SIG_BLOCK, NULL, &set);
    if (!sigismember(&set, SIGWINCH) || sigismember(&set, SIGUSR1))
        return "signal mask differs";
    if (!getcwd(cwd, sizeof cwd) || umask(0) != 027)
        return "cwd or umask differs";
    return NULL;
}

/* A thread that counts until told to stop (mode "threads"). */
typedef struct {
    volatile unsigned long n;   /* iterations */
    volatile int stop;          /* set by main */
} worker_t;

static void *s_worker(void *arg)
{
    worker_t *w = arg;
    struct timespec ts = { 0, 10 * 1000 * 1000 };

    while (!w->stop) {
        w->n++;
        nanosleep(&ts, NULL);
    }
    return (void *)w->n;
}

static void s_helper(const char *mode, const char *dir, const char *report)
{
    helper_t h = { 0 };
    worker_t w[2] = { 0 };
    pthread_t th[2];
    unsigned long at_ready, w_at_ready[2] = { 0 };
    int nthreads = !strcmp(mode, "threads") ? 2 : 0;
    const char *why;

    h.rep = open(report, O_WRONLY | O_APPEND | O_CREAT, 0600);
    s_setup_memory(&h, dir);
    s_setup_state(&h, dir);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, s_worker, &w[i]);
    for (int i = 0; i < 5; i++)
        s_tick(&h);
    at_ready = h.counter;
    for (int i = 0; i < nthreads; i++)
        w_at_ready[i] = w[i].n;
    dprintf(h.rep, "ready %d\n", getpid());
    while (!s_go)
        s_tick(&h);
    why = s_verify(&h, at_ready);
    for (int i = 0; i < nthreads; i++) {
        void *n;
        w[i].stop = 1;
        pthread_join(th[i], &n);
        if (!why && (unsigned long)n <= w_at_ready[i] + 2)
            why = "a thread did not keep counting";
    }
    if (why)
        dprintf(h.rep, "FAIL %d: %s\n", getpid(), why);
    else
        dprintf(h.rep, "PASS %d counter=%lu\n", getpid(), h.counter);
    _exit(0);
}

/* ---- tree helper ------------------------------------------------------- */

/* Mode "tree": the root leads a new session and forks child "a" (in the
 * root's group) and child "b" (in a group of its own). Each child has a
 * pipe from the root and one to the root; before the dump the root has
 * written "to-a"/"to-b" the children leave unread, and the children
 * "up-a"/"up-b" the root leaves unread. On SIGUSR1 (sent to each member)
 * every member checks its session and group, the unread bytes, then the
 * pipes both ways: the child sends "ack", the root answers with its pid,
 * which the child compares with getppid(). The root then reaps both
 * children with waitpid and checks EOF on its read ends (no stray copy of
 * a write end survived the restore). */
typedef struct {
    int down[2];            /* root -> child */
    int up[2];              /* child -> root */
    char name;              /* 'a' or 'b' */
} tree_link_t;

static int s_read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void s_wait_go(void)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };

    while (!s_go)
        nanosleep(&ts, NULL);
}

static const char *s_tree_child_verify(const tree_link_t *l)
{
    char buf[16] = { 0 }, want[8];
    pid_t parent;

    snprintf(want, sizeof want, "to-%c", l->name);
    if (s_read_full(l->down[0], buf, 4) < 0 || memcmp(buf, want, 4))
        return "unread bytes from the root lost";
    if (write(l->up[1], "ack", 3) != 3)
        return "cannot write to the root";
    memset(buf, 0, sizeof buf);
    if (s_read_full(l->down[0], buf, 8) < 0)
        return "no answer from the root";
    parent = (pid_t)atoi(buf);
    if (getppid() != parent)
        return "getppid() is not the root";
    if (getsid(0) != parent)
        return "not in the root's session";
    if (l->name == 'b' ? getpgrp() != getpid() : getpgrp() != parent)
        return "process group differs";
    return NULL;
}

static void s_tree_child(tree_link_t *l, int rep)
{
    char up[8];
    const char *why;

    close(l->down[1]);
    close(l->up[0]);
    if (l->name == 'b' && setpgid(0, 0) < 0)
        _exit(2);
    if (l->name == 'b') {   /* a description of its own, reopened by b */
        char own[512];
        snprintf(own, sizeof own, "%s/own-b", getenv("GHOST_TEST_DIR"));
        if (open(own, O_RDONLY | O_CREAT, 0600) < 0)
            _exit(2);
    }
    snprintf(up, sizeof up, "up-%c", l->name);
    if (write(l->up[1], up, 4) != 4)
        _exit(2);
    dprintf(rep, "ready %d child-%c\n", getpid(), l->name);
    s_wait_go();
    why = s_tree_child_verify(l);
    if (why)
        dprintf(rep, "FAIL %d: child %c: %s\n", getpid(), l->name, why);
    else
        dprintf(rep, "PASS %d child-%c\n", getpid(), l->name);
    _exit(why ? 1 : 0);
}

static const char *s_tree_root_link(const tree_link_t *l)
{
    char buf[16] = { 0 }, want[8];

    snprintf(want, sizeof want, "up-%c", l->name);
    if (s_read_full(l->up[0], buf, 4) < 0 || memcmp(buf, want, 4))
        return "unread bytes from a child lost";
    if (s_read_full(l->up[0], buf, 3) < 0 || memcmp(buf, "ack", 3))
        return "no ack from a child";
    snprintf(buf, sizeof buf, "%07d\n", getpid());
    if (write(l->down[1], buf, 8) != 8)
        return "cannot answer a child";
    return NULL;
}

/* After both children are gone: EOF on each up pipe, within 2 s. */
static const char *s_tree_root_eof(const tree_link_t *l)
{
    struct pollfd p = { .fd = l->up[0], .events = POLLIN };
    char c;

    if (poll(&p, 1, 2000) != 1 || read(l->up[0], &c, 1) != 0)
        return "no EOF: a stray write end of a pipe survived";
    return NULL;
}

static const char *s_tree_root_verify(tree_link_t *l)
{
    const char *why = NULL;
    int st;

    if (getsid(0) != getpid() || getpgrp() != getpid())
        return "root no longer leads its session and group";
    for (int i = 0; i < 2 && !why; i++)
        why = s_tree_root_link(&l[i]);
    for (int i = 0; i < 2 && !why; i++) {
        if (waitpid(-1, &st, 0) <= 0)
            why = "waitpid: the children are not the root's";
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            why = "a child failed";
    }
    if (!why && waitpid(-1, &st, WNOHANG) != -1)
        why = "more children than forked";
    for (int i = 0; i < 2 && !why; i++)
        why = s_tree_root_eof(&l[i]);
    return why;
}

static void s_tree_helper(const char *report)
{
    tree_link_t l[2] = { { .name = 'a' }, { .name = 'b' } };
    int rep = open(report, O_WRONLY | O_APPEND | O_CREAT, 0600);
    const char *why;

    signal(SIGUSR1, s_on_usr1);
    if (setsid() < 0)
        _exit(2);
    for (int i = 0; i < 2; i++) {
        if (pipe(l[i].down) < 0 || pipe(l[i].up) < 0)
            _exit(2);
        pid_t pid = fork();
        if (pid == 0) {
            if (i == 1) {   /* b does not hold a's pipes */
                close(l[0].down[1]);
                close(l[0].up[0]);
            }
            s_tree_child(&l[i], rep);
        }
        close(l[i].down[0]);
        close(l[i].up[1]);
        if (pid < 0 || write(l[i].down[1], i ? "to-b" : "to-a", 4) != 4)
            _exit(2);
    }
    dprintf(rep, "ready %d root\n", getpid());
    s_wait_go();
    why = s_tree_root_verify(l);
    if (why)
        dprintf(rep, "FAIL %d: root: %s\n", getpid(), why);
    else
        dprintf(rep, "PASS %d root\n", getpid());
    _exit(0);
}

/* ---- fds helper -------------------------------------------------------- */

/* Mode "fds": fd 3 a file at offset 4 and fd 42 its dup; a memfd of
 * FDS_OBJ bytes (data at 0, a shared mapping of its second MiB, a hole
 * after) at offset 77; a child inherits them all (fork) and waits on a
 * pipe. On SIGUSR1 the root checks that fd 3 and fd 42 still move
 * together, tells the child, which checks that its fd 3 moved with them
 * and moves it on, which the root checks in turn; then mapping and fd of
 * the memfd show each other's writes and the memfd kept its size, data,
 * hole and offset. */
#define FDS_OBJ (3 * MB + 123)

typedef struct {
    int m;                      /* the memfd */
    uint8_t *map;               /* its second MiB, MAP_SHARED */
    int down[2], up[2];         /* root -> child, child -> root */
} fds_t;

static const char *s_fds_child_verify(const fds_t *x)
{
    char c;

    if (read(x->down[0], &c, 1) != 1)
        return "no word from the root";
    if (lseek(3, 0, SEEK_CUR) != 6)
        return "the inherited fd 3 no longer shares the root's offset";
    if (write(3, "Z", 1) != 1 || write(x->up[1], "1", 1) != 1)
        return "cannot write";
    return NULL;
}

static const char *s_fds_memfd_verify(const fds_t *x)
{
    struct stat st;
    char buf[16] = { 0 };
    uint8_t b = 0;

    if (fstat(x->m, &st) < 0 || st.st_size != FDS_OBJ)
        return "memfd size differs";
    if (lseek(x->m, 0, SEEK_CUR) != 77)
        return "memfd offset differs";
    if (pread(x->m, buf, 10, 0) != 10 || memcmp(buf, "memfd-head", 10))
        return "memfd data written through the fd lost";
    if (!s_same(x->map, MB, 9))
        return "memfd mapping differs";
    if (pread(x->m, &b, 1, 2 * MB + 5) != 1 || b != 0)
        return "memfd hole is not zero";
    x->map[5] = 0xEE;
    if (pread(x->m, &b, 1, MB + 5) != 1 || b != 0xEE)
        return "a write through the mapping is not seen through the fd";
    if (pwrite(x->m, "Q", 1, MB + 6) != 1 || x->map[6] != 'Q')
        return "a write through the fd is not seen through the mapping";
    return NULL;
}

static const char *s_fds_root_verify(fds_t *x, pid_t child)
{
    const char *why = NULL;
    char c;
    int st;

    if (lseek(3, 0, SEEK_CUR) != 4 || write(42, "XY", 2) != 2 ||
        lseek(3, 0, SEEK_CUR) != 6)
        return "fd 42 no longer shares fd 3's offset";
    if (write(x->down[1], "1", 1) != 1 || read(x->up[0], &c, 1) != 1)
        return "the child did not answer";
    if (lseek(42, 0, SEEK_CUR) != 7)
        why = "the child's fd 3 no longer shares the root's offset";
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        why = why ? why : "the child failed";
    return why ? why : s_fds_memfd_verify(x);
}

static void s_fds_setup(fds_t *x, const char *dir)
{
    char path[512];
    int f;

    snprintf(path, sizeof path, "%s/shared", dir);
    f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0 || (f != 3 && dup2(f, 3) != 3) || write(3, "0123456789", 10) != 10 ||
        lseek(3, 4, SEEK_SET) != 4 || dup2(3, 42) != 42)
        _exit(2);
    x->m = memfd_create("ghost-test-fds", 0);
    if (x->m < 0 || ftruncate(x->m, FDS_OBJ) < 0 ||
        pwrite(x->m, "memfd-head", 10, 0) != 10 || lseek(x->m, 77, SEEK_SET) != 77)
        _exit(2);
    x->map = mmap(NULL, MB, PROT_READ | PROT_WRITE, MAP_SHARED, x->m, MB);
    if (x->map == MAP_FAILED || pipe(x->down) < 0 || pipe(x->up) < 0)
        _exit(2);
    s_fill(x->map, MB, 9);
}

static void s_fds_helper(const char *dir, const char *report)
{
    fds_t x;
    pid_t child;
    const char *why;
    int rep;

    s_fds_setup(&x, dir);
    rep = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    signal(SIGUSR1, s_on_usr1);
    child = fork();
    if (child == 0) {
        why = s_fds_child_verify(&x);
        if (why)
            dprintf(rep, "FAIL %d: child: %s\n", getpid(), why);
        _exit(why ? 1 : 0);
    }
    close(x.down[0]);   /* a child that fails: EOF, not a hang */
    close(x.up[1]);
    dprintf(rep, "ready %d child=%d\n", getpid(), child);
    s_wait_go();
    why = s_fds_root_verify(&x, child);
    if (why)
        dprintf(rep, "FAIL %d: %s\n", getpid(), why);
    else
        dprintf(rep, "PASS %d\n", getpid());
    _exit(0);
}

__attribute__((constructor)) static void s_maybe_helper(void)
{
    const char *mode = getenv("GHOST_TEST_MODE");

    if (mode && !strcmp(mode, "fds"))
        s_fds_helper(getenv("GHOST_TEST_DIR"), getenv("GHOST_TEST_REPORT"));
    if (mode && !strcmp(mode, "tree"))
        s_tree_helper(getenv("GHOST_TEST_REPORT"));
    if (mode)
        s_helper(mode, getenv("GHOST_TEST_DIR"), getenv("GHOST_TEST_REPORT"));
}

/* ---- test -------------------------------------------------------------- */

static char s_dir[256];

static void s_setup(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (clone3 set_tid, ptrace, PR_SET_MM_MAP)");
    snprintf(s_dir, sizeof s_dir, "/tmp/test-restore-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* SIGKILLs every process of ours still running (a test that failed
 * half-way): those whose environment names this test's directory. */
static void s_kill_ours(void)
{
    char want[300], path[64], env[8192];
    DIR *d = opendir("/proc");
    struct dirent *e;

    snprintf(want, sizeof want, "GHOST_TEST_DIR=%s", s_dir);
    while (d && (e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name);
        int fd;
        ssize_t n;
        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(path, sizeof path, "/proc/%d/environ", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? read(fd, env, sizeof env - 1) : -1;
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(env + i) + 1)
            if (!strcmp(env + i, want))
                kill(pid, SIGKILL);
    }
    if (d)
        closedir(d);
}

static void s_teardown(void)
{
    char cmd[512];

    if (s_dir[0])
        s_kill_ours();
    usleep(50000);

    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (s_dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
}

static const char *s_tool(const char *name)
{
    static char path[2][512];
    const char *b = getenv("CAIRN_BUILD");
    int i = !strcmp(name, "ghost-restore");

    snprintf(path[i], sizeof path[i], "%s/services/ghostd/engine/%s",
             b ? b : ".", name);
    return path[i];
}

/* Starts the helper with only fds 0-2 (/dev/null) and waits for "ready". */
static pid_t s_start(const char *mode)
{
    char report[512], exe[512];
    pid_t pid;

    snprintf(report, sizeof report, "%s/report", s_dir);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt(n, 0);
    exe[n] = '\0';
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        syscall(SYS_close_range, 3, ~0u, 0);
        setenv("GHOST_TEST_MODE", mode, 1);
        setenv("GHOST_TEST_DIR", s_dir, 1);
        setenv("GHOST_TEST_REPORT", report, 1);
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits until the report holds a line starting with `word` for pid. */
static int s_report_has(const char *word, pid_t pid, int timeout_ms, char *line,
                        size_t size)
{
    char path[512], want[64];

    snprintf(path, sizeof path, "%s/report", s_dir);
    snprintf(want, sizeof want, "%s %d", word, pid);
    for (int t = 0; t < timeout_ms; t += 20) {
        FILE *f = fopen(path, "r");
        char buf[512];
        while (f && fgets(buf, sizeof buf, f)) {
            if (!strncmp(buf, want, strlen(want)) ||
                (!strncmp(buf, "FAIL", 4) && strstr(buf, want + strlen(word)))) {
                snprintf(line, size, "%s", buf);
                fclose(f);
                return 0;
            }
        }
        if (f)
            fclose(f);
        usleep(20000);
    }
    return -ETIMEDOUT;
}

/* Runs a tool; returns its exit code and its one stdout line. */
static int s_run(char *out, size_t size, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    FILE *p;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)size, p))
        out[0] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t s_json_pid(const char *json)
{
    const char *p = strstr(json, "\"pid\":");
    return p ? (pid_t)atoi(p + 6) : -1;
}

/* ghost-dump of pid into the image with the options extra (" --..."). */
static void s_dump_with(pid_t pid, bool leave_running, const char *extra)
{
    char out[1024], image[512];
    int st;

    snprintf(image, sizeof image, "%s/image", s_dir);
    cr_assert_eq(s_run(out, sizeof out, "%s --pid %d --out %s%s%s", s_tool("ghost-dump"),
                       pid, image, leave_running ? " --leave-running" : "", extra),
                 0, "ghost-dump failed: %s", out);
    if (!leave_running)
        cr_assert_eq(waitpid(pid, &st, 0), pid);
}

static void s_dump(pid_t pid, bool leave_running)
{
    s_dump_with(pid, leave_running, "");
}

static pid_t s_restore(const char *extra, int want_rc, char *out, size_t size)
{
    int rc = s_run(out, size, "%s --image %s/image %s", s_tool("ghost-restore"),
                   s_dir, extra);
    cr_assert_eq(rc, want_rc, "ghost-restore exit %d, wanted %d: %s", rc, want_rc, out);
    return want_rc == 0 ? s_json_pid(out) : -1;
}

/* Tells a restored helper to verify itself and waits for its verdict. */
static void s_expect_pass(pid_t pid)
{
    char line[512];

    cr_assert_eq(kill(pid, SIGUSR1), 0, "restored %d is not running", pid);
    cr_assert_eq(s_report_has("PASS", pid, 10000, line, sizeof line), 0,
                 "no verdict from %d", pid);
    cr_assert_eq(strncmp(line, "PASS", 4), 0, "%s", line);
    cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

/* mode started, dumped with the options extra, killed. */
static void s_checkpoint_with(const char *mode, const char *extra, pid_t *ret_pid)
{
    char line[512];
    pid_t pid = s_start(mode);

    cr_assert_eq(s_report_has("ready", pid, 10000, line, sizeof line), 0);
    usleep(100000);
    s_dump_with(pid, false, extra);
    *ret_pid = pid;
}

static void s_checkpoint(const char *mode, pid_t *ret_pid)
{
    s_checkpoint_with(mode, "", ret_pid);
}

TestSuite(restore, .init = s_setup, .fini = s_teardown, .timeout = 60);

Test(restore, single_threaded_state_survives)
{
    char out[1024];
    pid_t pid, got;

    s_checkpoint("single", &pid);
    got = s_restore("", 0, out, sizeof out);
    cr_assert_eq(got, pid, "%s", out);
    cr_assert_not_null(strstr(out, "\"same_pid\":true"), "%s", out);
    s_expect_pass(pid);
}

Test(restore, multi_threaded_state_survives)
{
    char out[1024];
    pid_t pid;

    s_checkpoint("threads", &pid);
    cr_assert_eq(s_restore("", 0, out, sizeof out), pid, "%s", out);
    cr_assert_not_null(strstr(out, "\"threads\":3"), "%s", out);
    s_expect_pass(pid);
}

Test(restore, twice_from_one_image)
{
    char out[1024], out2[1024];
    pid_t pid, second;

    s_checkpoint("single", &pid);
    cr_assert_eq(s_restore("", 0, out, sizeof out), pid, "%s", out);
    s_restore("", 3, out2, sizeof out2);   /* pid now taken by the first */
    cr_assert_not_null(strstr(out2, "already-exists"), "%s", out2);
    second = s_restore("--new-pid", 0, out2, sizeof out2);
    cr_assert_gt(second, 0, "%s", out2);
    cr_assert_neq(second, pid);
    cr_assert_not_null(strstr(out2, "\"same_pid\":false"), "%s", out2);
    s_expect_pass(pid);
    s_expect_pass(second);
}

Test(restore, pid_taken_is_refused_with_3)
{
    char out[1024], line[512];
    pid_t pid = s_start("single");

    cr_assert_eq(s_report_has("ready", pid, 10000, line, sizeof line), 0);
    s_dump(pid, true);
    s_restore("", 3, out, sizeof out);
    cr_assert_not_null(strstr(out, "\"code\":\"already-exists\""), "%s", out);
    s_expect_pass(pid);   /* the original ran on untouched */
}

/* Writes a damaged copy of the image and checks the refusal. */
static void s_bad_image(void (*damage)(char *, size_t *), const char *code)
{
    char out[1024], path[512], *buf;
    pid_t pid;
    size_t n;
    FILE *f;

    s_checkpoint("single", &pid);
    snprintf(path, sizeof path, "%s/image", s_dir);
    f = fopen(path, "r+");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    buf = malloc(n);
    rewind(f);
    cr_assert_eq(fread(buf, 1, n, f), n);
    damage(buf, &n);
    fclose(f);
    f = fopen(path, "w");
    fwrite(buf, 1, n, f);
    fclose(f);
    free(buf);
    s_restore("", 1, out, sizeof out);
    cr_assert_not_null(strstr(out, code), "%s", out);
    cr_assert_eq(kill(pid, 0), -1, "something runs with pid %d", pid);
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a restored process was left");
}

static void s_truncate(char *buf, size_t *n)
{
    (void)buf;
    *n = *n / 2;
}

static void s_bad_magic(char *buf, size_t *n)
{
    (void)n;
    buf[0] = 'X';
}

Test(restore, truncated_image_is_refused)
{
    s_bad_image(s_truncate, "invalid-argument");
}

Test(restore, bad_magic_is_refused)
{
    s_bad_image(s_bad_magic, "invalid-argument");
}

/* ---- trees ------------------------------------------------------------- */

/* The pids of the tree's members by their "ready" lines: m[0] child a,
 * m[1] child b, m[2] the root. */
static void s_ready_pids(pid_t m[3])
{
    static const char *const roles[3] = { "child-a", "child-b", "root" };
    char path[512], buf[512];
    int got = 0;

    snprintf(path, sizeof path, "%s/report", s_dir);
    for (int t = 0; t < 10000 && got < 3; t += 20) {
        FILE *f = fopen(path, "r");
        got = 0;
        while (f && fgets(buf, sizeof buf, f))
            for (int i = 0; i < 3; i++)
                if (!strncmp(buf, "ready ", 6) && strstr(buf, roles[i]))
                    m[i] = (pid_t)atoi(buf + 6), got++;
        if (f)
            fclose(f);
        if (got < 3)
            usleep(20000);
    }
    cr_assert_eq(got, 3, "only %d of 3 members ready", got);
}

/* Starts the tree, dumps it (killing it) and reaps every member, so each
 * pid is free again. m[0..1] children, m[2] root. */
static void s_checkpoint_tree(pid_t m[3], bool leave_running)
{
    pid_t root = s_start("tree");

    s_ready_pids(m);
    cr_assert_eq(m[2], root);
    usleep(100000);
    s_dump(root, leave_running);
    for (int i = 0; i < 2 && !leave_running; i++)   /* reparented to us */
        cr_assert_eq(waitpid(m[i], NULL, 0), m[i]);
}

/* The n member pids of a ghost-restore success line, in image order. */
static int s_json_members(const char *json, pid_t *ret, int n)
{
    const char *p = strstr(json, "\"members\":[");
    int got = 0;

    while (p && got < n && (p = strstr(p, "{\"pid\":")))
        ret[got++] = (pid_t)atoi(p += 7);
    return got;
}

/* SIGUSR1 to every member, a PASS from each, then the root reaped. */
static void s_expect_tree_pass(const pid_t *m, pid_t root)
{
    char line[512];

    for (int i = 0; i < 3; i++)
        cr_assert_eq(kill(m[i], SIGUSR1), 0, "member %d is not running", m[i]);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s_report_has("PASS", m[i], 10000, line, sizeof line), 0,
                     "no verdict from %d", m[i]);
        cr_assert_eq(strncmp(line, "PASS", 4), 0, "%s", line);
    }
    cr_assert_eq(waitpid(root, NULL, 0), root);
}

Test(restore, process_tree_with_pipes_sessions_groups)
{
    char out[2048];
    pid_t m[3], got[3];

    s_checkpoint_tree(m, false);
    cr_assert_eq(s_restore("", 0, out, sizeof out), m[2], "%s", out);
    cr_assert_not_null(strstr(out, "\"processes\":3"), "%s", out);
    cr_assert_not_null(strstr(out, "\"threads\":3"), "%s", out);
    cr_assert_not_null(strstr(out, "\"same_pid\":true"), "%s", out);
    cr_assert_eq(s_json_members(out, got, 3), 3, "%s", out);
    cr_assert_eq(got[0], m[2], "%s", out);   /* image order: root first */
    s_expect_tree_pass(m, m[2]);
}

Test(restore, tree_with_new_pids_keeps_its_shape)
{
    char out[2048];
    pid_t m[3], fresh[3];

    s_checkpoint_tree(m, true);   /* the original keeps its pids */
    cr_assert_gt(s_restore("--new-pid", 0, out, sizeof out), 0, "%s", out);
    cr_assert_eq(s_json_members(out, fresh, 3), 3, "%s", out);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            cr_assert_neq(fresh[i], m[j], "%s", out);
    s_expect_tree_pass(fresh, fresh[0]);
    s_expect_tree_pass(m, m[2]);   /* the original ran on untouched */
}

/* A process holding `pid` (clone3 set_tid) until killed. */
static pid_t s_squat(pid_t pid)
{
    struct clone_args ca = { .exit_signal = SIGCHLD,
                             .set_tid = (uint64_t)(uintptr_t)&pid,
                             .set_tid_size = 1 };
    long r = syscall(SYS_clone3, &ca, sizeof ca);

    if (r == 0) {
        pause();
        _exit(0);
    }
    cr_assert_eq(r, pid, "cannot take pid %d: %s", pid, strerror(errno));
    return (pid_t)r;
}

Test(restore, tree_member_pid_taken_is_refused_with_3)
{
    char out[2048];
    pid_t m[3], squat;

    s_checkpoint_tree(m, false);
    squat = s_squat(m[1]);   /* child b's pid */
    s_restore("", 3, out, sizeof out);
    cr_assert_not_null(strstr(out, "\"code\":\"already-exists\""), "%s", out);
    cr_assert_eq(kill(m[2], 0), -1, "the root %d runs", m[2]);
    cr_assert_eq(kill(m[0], 0), -1, "child a %d runs", m[0]);
    kill(squat, SIGKILL);
    cr_assert_eq(waitpid(squat, NULL, 0), squat);
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a restored process was left");
}

Test(restore, tree_failure_kills_every_member)
{
    char out[2048], from[512], to[512];
    pid_t m[3];

    s_checkpoint_tree(m, false);
    snprintf(from, sizeof from, "%s/own-b", s_dir);
    snprintf(to, sizeof to, "%s/own-b.moved", s_dir);
    cr_assert_eq(rename(from, to), 0);   /* child b reopens it: fails there */
    s_restore("", 1, out, sizeof out);
    cr_assert_not_null(strstr(out, "cannot reopen"), "%s", out);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;   /* killed children of the killed root come back to us */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(kill(m[i], 0), -1, "member %d runs", m[i]);
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a restored process was left");
}

/* ---- shared files, memfd ----------------------------------------------- */

Test(restore, shared_open_files_and_memfd_survive)
{
    char out[2048], line[512];
    pid_t root = s_start("fds"), child;
    const char *c;

    cr_assert_eq(s_report_has("ready", root, 10000, line, sizeof line), 0);
    cr_assert_not_null(c = strstr(line, "child="), "%s", line);
    child = (pid_t)atoi(c + 6);
    usleep(100000);
    s_dump(root, false);
    cr_assert_eq(waitpid(child, NULL, 0), child);   /* reparented to us */
    cr_assert_eq(s_restore("", 0, out, sizeof out), root, "%s", out);
    cr_assert_not_null(strstr(out, "\"processes\":2"), "%s", out);
    cr_assert_eq(kill(root, SIGUSR1), 0);
    cr_assert_eq(s_report_has("PASS", root, 10000, line, sizeof line), 0,
                 "no verdict from %d", root);
    cr_assert_eq(strncmp(line, "PASS", 4), 0, "%s", line);
    cr_assert_eq(waitpid(root, NULL, 0), root);
}

/* ---- check and damage -------------------------------------------------- */

/* One record of an image: [off, off + len) is its length prefix and
 * body, raw the pad and page bytes after it. */
typedef struct {
    size_t off, len, raw;
} s_span_t;

/* The records of a well-formed image (magic skipped); their count. */
static size_t s_spans(const uint8_t *buf, size_t n, s_span_t *v, size_t cap)
{
    size_t at = 8, k = 0;

    while (at + 4 <= n && k < cap) {
        uint32_t len = (uint32_t)buf[at] | (uint32_t)buf[at + 1] << 8 |
                       (uint32_t)buf[at + 2] << 16 | (uint32_t)buf[at + 3] << 24;
        Cairn__Ghost__Record *r = cairn__ghost__record__unpack(NULL, len, buf + at + 4);
        cr_assert_not_null(r, "record at %zu does not decode", at);
        size_t raw = r->r_case == CAIRN__GHOST__RECORD__R_PAGES
                         ? r->pages->pad + r->pages->n_pages * 4096
                     : r->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES
                         ? r->object_pages->pad + r->object_pages->n_pages * 4096
                         : 0;
        cairn__ghost__record__free_unpacked(r, NULL);
        v[k++] = (s_span_t){ at, 4 + len, raw };
        at += 4 + len + raw;
    }
    cr_assert_eq(at, n, "the records cover the image");
    return k;
}

static uint64_t s_rand(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* A damaged copy of buf into out (room for 2n): one of several kinds of
 * damage to the records (never to page bytes alone, which are data);
 * its length. */
static size_t s_damage(const uint8_t *buf, size_t n, const s_span_t *v, size_t k,
                       uint64_t *rng, uint8_t *out)
{
    const s_span_t *a = &v[s_rand(rng) % k];
    size_t whole = a->len + a->raw;

    switch (s_rand(rng) % 6) {
    case 0:   /* a few bytes of one record changed */
    case 1:
        memcpy(out, buf, n);
        for (int i = 0, m = 1 + (int)(s_rand(rng) % 4); i < m; i++)
            out[a->off + s_rand(rng) % a->len] = (uint8_t)s_rand(rng);
        return n;
    case 2:   /* one byte of one record set to an edge value */
        memcpy(out, buf, n);
        out[a->off + 4 + s_rand(rng) % (a->len - 4)] =
            (uint8_t[]){ 0, 1, 0x7f, 0x80, 0xff }[s_rand(rng) % 5];
        return n;
    case 3:   /* one record dropped */
        memcpy(out, buf, a->off);
        memcpy(out + a->off, buf + a->off + whole, n - a->off - whole);
        return n - whole;
    case 4:   /* one record repeated */
        memcpy(out, buf, a->off + whole);
        memcpy(out + a->off + whole, buf + a->off, n - a->off);
        return n + whole;
    default:  /* cut inside or at the end of a record */
        memcpy(out, buf, n);
        return a->off + s_rand(rng) % whole;
    }
}

static int s_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

/* ghost_restore_check on len bytes through a memfd. */
static int s_check_bytes(const uint8_t *b, size_t len, ghost_restore_stats_t *st,
                         cairn_error_t *err)
{
    int fd = memfd_create("damaged", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, b, len), (ssize_t)len);
    lseek(fd, 0, SEEK_SET);
    cairn_error_clear(err);
    int ret = ghost_restore_check(fd, NULL, st, err);
    close(fd);
    return ret;
}

Test(restore, check_accepts_the_image_and_changes_nothing)
{
    char path[512], out[1024];
    pid_t pid;

    s_checkpoint("single", &pid);
    snprintf(path, sizeof path, "%s/image", s_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    ghost_restore_stats_t st;
    cairn_error_t err;
    cr_assert_eq(ghost_restore_check(fd, NULL, &st, &err), 0, "%s", err.message);
    close(fd);
    cr_assert_eq(st.original_pid, pid);
    cr_assert(st.same_pid, "the pid is free: it was dumped and reaped");
    cr_assert_eq(st.processes, 1);
    cr_assert_gt(st.pages, 0);
    cr_assert_eq(kill(pid, 0), -1, "the check made nothing");
    /* the tool says the same, and the image still restores */
    cr_assert_eq(s_run(out, sizeof out, "%s --image %s --check", s_tool("ghost-restore"),
                       path), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"pids_free\":true"), "%s", out);
    cr_assert_eq(s_restore("", 0, out, sizeof out), pid, "%s", out);
    cr_assert_eq(s_run(out, sizeof out, "%s --image %s --check", s_tool("ghost-restore"),
                       path), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\"pids_free\":false"), "%s", out);
    s_expect_pass(pid);
}

/* Damaged copies of the image ghost-dump made (rounds of them, or
 * CAIRN_DAMAGE_ROUNDS): each checked, accepted or refused with a reason,
 * nothing left behind. */
static void s_damage_rounds(int default_rounds)
{
    char path[512];

    snprintf(path, sizeof path, "%s/image", s_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    rewind(f);
    uint8_t *buf = malloc(n), *out = malloc(2 * n);
    cr_assert(buf && out);
    cr_assert_eq(fread(buf, 1, n, f), n);
    fclose(f);
    static s_span_t v[4096];
    size_t k = s_spans(buf, n, v, 4096);
    const char *env = getenv("CAIRN_DAMAGE_ROUNDS");
    int rounds = env ? atoi(env) : default_rounds, fds = s_count_fds(), refused = 0;
    uint64_t seed = (uint64_t)time(NULL) | 1, rng = seed;
    for (int i = 0; i < rounds; i++) {
        uint64_t before = rng;
        size_t len = s_damage(buf, n, v, k, &rng, out);
        ghost_restore_stats_t st;
        cairn_error_t err;
        int ret = s_check_bytes(out, len, &st, &err);
        if (ret < 0) {
            refused++;
            cr_assert(err.code != CAIRN_OK && err.message[0],
                      "round %d (rng %llu): refused without a reason", i,
                      (unsigned long long)before);
        }
    }
    cr_assert_eq(s_count_fds(), fds, "the checks leaked fds (seed %llu)",
                 (unsigned long long)seed);
    cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a check made a process");
    cr_assert_gt(refused, rounds / 4, "most damage is refused (%d of %d)", refused, rounds);
    free(buf);
    free(out);
}

Test(restore, damaged_images_are_checked_without_a_crash, .timeout = 170)
{
    pid_t pid;

    s_checkpoint("single", &pid);
    s_damage_rounds(1500);
}

/* ---- pre-copy ------------------------------------------------------------ */

/* An image of pre-copy rounds (ghost-dump --precopy: version 3, rounds
 * before the header, kept pages) restores like any other, and its damaged
 * copies -- rounds and kept records among what is changed, dropped,
 * repeated and cut -- are refused with a reason or accepted, never a
 * crash. */
Test(restore, precopy_image_restores, .timeout = 120)
{
    char out[1024];
    pid_t pid;

    s_checkpoint_with("single", " --precopy --rounds 3", &pid);
    cr_assert_eq(s_restore("", 0, out, sizeof out), pid, "%s", out);
    s_expect_pass(pid);
}

Test(restore, damaged_precopy_images_are_checked_without_a_crash, .timeout = 170)
{
    pid_t pid;

    s_checkpoint_with("single", " --precopy --rounds 3", &pid);
    s_damage_rounds(800);
}
