/* ghost-job - a job built by hand, for the ghost engine's job tests:
 * a pid namespace and a mount namespace of its own, a reaper as its pid 1
 * and children that check, as they run, that they are who they were.
 *
 * Usage:
 *   ghost-job launch DIR [VARIANT]   start a job, print "job <host pid of
 *                                    its pid 1>", wait for it to end
 *   ghost-job body DIR               the same members under this process,
 *                                    as a job's program (ghost-init's pid 2)
 *   ghost-job produce | ghost-job consume    (the job's pipeline; the
 *                                    log is fd $GHOST_JOB_LOG)
 *
 * The launcher unshares CLONE_NEWPID | CLONE_NEWNS, makes its mounts
 * slaves of the node's and forks the reaper, pid 1 of the new namespace,
 * which mounts a proc of its own on /proc (in place of the node's) and
 * forks: a counter, a process of four threads, and `sh -c 'ghost-job
 * produce | ghost-job consume'` -- plain libc, no Cairn code: nothing
 * in here knows it is checkpointed. Each writes lines into DIR/log
 * (O_APPEND, one write each):
 *
 *   count NS PID N      the counter's Nth tick (every 20 ms)
 *   threads NS PID N W  the threaded one's Nth tick, W the least count of
 *                       its three workers (each counts every 10 ms)
 *   pipe NS PID N       the consumer read N, the producer's Nth number
 *   reaper NS PID N     the reaper's Nth tick (every 100 ms; "body" for
 *                       the parent of `ghost-job body`)
 *   FAIL KIND NS PID: WHAT
 *
 * NS is the inode of the pid namespace the line was written in, read
 * from /proc/self/ns/pid at every tick: a restored job lives in a new
 * one, so two copies of one job running side by side (same pids inside)
 * write lines told apart by it. Every tick checks: getpid() as at the
 * start, getppid() the parent it had, /proc/self/stat and the /proc/self
 * link naming that pid (the job's /proc shows the job's pids); the
 * reaper checks that each of its children is still there under its pid
 * with it as parent and reaps nothing unexpected; the threaded one that
 * every worker keeps its tid, /proc/self/task lists exactly them, and
 * none stalls for 3 s; the consumer that every number follows the last
 * (no byte lost or repeated in the pipe).
 *
 * VARIANT, for the refusals (the job is otherwise the same):
 *   nested      a child that unshares a pid namespace of its own and forks
 *               its pid 1 there
 *   mountns     a child in a mount namespace of its own
 *   extramount  the reaper mounts a tmpfs on DIR/mnt (only in the job) and
 *               makes a file in it
 *   hostproc    no proc of its own: /proc is the node's
 *   noproc      no mount namespace of its own either (CLONE_NEWPID alone)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

static int s_log = -1;                /* DIR/log, O_APPEND */
static const char *s_kind = "launch"; /* what this process is, for lines */
static const char *s_self;            /* argv[0], for the pipeline */

/* ---- lines ------------------------------------------------------------- */

/* The inode of our pid namespace, through the job's own /proc. */
static unsigned long s_ns(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* One line into the log, in one write. */
static void s_line(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (s_log >= 0 && write(s_log, buf, (size_t)n) < 0)
        _exit(3);
}

static void __attribute__((format(printf, 1, 2))) s_fail(const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    s_line("FAIL %s %lu %d: %s", s_kind, s_ns(), (int)getpid(), what);
}

static void s_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- who we are -------------------------------------------------------- */

/* The pid and parent field of /proc/PID/stat (PID 0: self), -1 if none. */
static int s_stat_ids(pid_t pid, pid_t *ret_pid, pid_t *ret_ppid)
{
    char path[64], buf[512];
    int fd, n;
    char *close_paren;

    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = (int)read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    if (!close_paren || sscanf(close_paren + 2, "%*c %d", ret_ppid) != 1)
        return -1;
    *ret_pid = (pid_t)atoi(buf);
    return 0;
}

/* We are pid0 with parent ppid0, and /proc says so. */
static void s_check_self(pid_t pid0, pid_t ppid0)
{
    pid_t p = 0, pp = 0;
    char link[32] = "";
    ssize_t n;

    if (getpid() != pid0)
        s_fail("getpid() is %d, was %d", (int)getpid(), (int)pid0);
    if (getppid() != ppid0)
        s_fail("getppid() is %d, was %d", (int)getppid(), (int)ppid0);
    if (s_stat_ids(0, &p, &pp) < 0 || p != pid0 || pp != ppid0)
        s_fail("/proc/self/stat says pid %d parent %d, not %d and %d", (int)p, (int)pp,
               (int)pid0, (int)ppid0);
    n = readlink("/proc/self", link, sizeof link - 1);
    if (n <= 0 || atoi(link) != pid0)
        s_fail("/proc/self is \"%s\", not %d", n > 0 ? link : "", (int)pid0);
}

/* ---- the counter ------------------------------------------------------- */

static void __attribute__((noreturn)) s_counter(void)
{
    pid_t pid0 = getpid(), ppid0 = getppid();

    s_kind = "count";
    for (unsigned long n = 1;; n++) {
        s_check_self(pid0, ppid0);
        s_line("count %lu %d %lu", s_ns(), (int)pid0, n);
        s_sleep_ms(20);
    }
}

/* ---- the threaded one -------------------------------------------------- */

#define S_WORKERS 3
static atomic_long s_worker_n[S_WORKERS];   /* each worker's count */
static atomic_int s_worker_tid[S_WORKERS];  /* each worker's tid */

static void *s_worker(void *arg)
{
    int k = (int)(long)arg;
    pid_t tid0 = (pid_t)syscall(SYS_gettid);

    atomic_store(&s_worker_tid[k], tid0);
    for (;;) {
        if ((pid_t)syscall(SYS_gettid) != tid0)
            s_fail("worker %d: gettid() is %d, was %d", k, (int)syscall(SYS_gettid),
                   (int)tid0);
        atomic_fetch_add(&s_worker_n[k], 1);
        s_sleep_ms(10);
    }
    return NULL;
}

/* /proc/self/task lists exactly us and the workers. */
static void s_check_tasks(pid_t pid0)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int seen = 0;

    if (!d) {
        s_fail("cannot list /proc/self/task: %s", strerror(errno));
        return;
    }
    while ((e = readdir(d))) {
        int tid = atoi(e->d_name);
        bool known = tid == pid0;
        if (e->d_name[0] == '.')
            continue;
        for (int k = 0; k < S_WORKERS; k++)
            known |= tid == atomic_load(&s_worker_tid[k]);
        if (!known)
            s_fail("/proc/self/task lists %d, not one of ours", tid);
        seen++;
    }
    closedir(d);
    if (seen != S_WORKERS + 1)
        s_fail("/proc/self/task lists %d threads, not %d", seen, S_WORKERS + 1);
}

static void __attribute__((noreturn)) s_threads(void)
{
    pid_t pid0 = getpid(), ppid0 = getppid();
    long last[S_WORKERS] = { 0 }, still[S_WORKERS] = { 0 };
    pthread_t t;

    s_kind = "threads";
    for (long k = 0; k < S_WORKERS; k++)
        if (pthread_create(&t, NULL, s_worker, (void *)k) != 0)
            s_fail("setup: pthread_create failed");
    for (int k = 0; k < S_WORKERS; k++)
        while (atomic_load(&s_worker_tid[k]) == 0)
            s_sleep_ms(1);
    for (unsigned long n = 1;; n++) {
        long least = -1;
        s_check_self(pid0, ppid0);
        s_check_tasks(pid0);
        for (int k = 0; k < S_WORKERS; k++) {
            long now = atomic_load(&s_worker_n[k]);
            still[k] = now == last[k] ? still[k] + 1 : 0;
            if (still[k] == 60)   /* 3 s */
                s_fail("worker %d stalled at %ld", k, now);
            last[k] = now;
            least = least < 0 || now < least ? now : least;
        }
        s_line("threads %lu %d %lu %ld", s_ns(), (int)pid0, n, least);
        s_sleep_ms(50);
    }
}

/* ---- the pipeline ------------------------------------------------------ */

static int s_produce(void)
{
    pid_t pid0 = getpid(), ppid0 = getppid();
    char buf[32];

    s_kind = "produce";
    for (unsigned long n = 1;; n++) {
        int len = snprintf(buf, sizeof buf, "%lu\n", n);
        s_check_self(pid0, ppid0);
        if (write(1, buf, (size_t)len) != len) {
            s_fail("write to the pipe: %s", strerror(errno));
            return 1;
        }
        s_sleep_ms(10);
    }
}

static int s_consume(void)
{
    pid_t pid0 = getpid(), ppid0 = getppid();
    unsigned long last = 0;
    char buf[64];

    s_kind = "pipe";
    while (fgets(buf, sizeof buf, stdin)) {
        unsigned long n = strtoul(buf, NULL, 10);
        s_check_self(pid0, ppid0);
        if (last && n != last + 1)
            s_fail("read %lu after %lu", n, last);
        last = n;
        s_line("pipe %lu %d %lu", s_ns(), (int)pid0, n);
    }
    s_fail("the pipe ended");
    return 1;
}

/* ---- the reaper -------------------------------------------------------- */

#define S_MAX_CHILDREN 8

/* A child running fn. */
static pid_t s_spawn(void (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0)
        fn();
    if (pid < 0)
        s_fail("setup: fork: %s", strerror(errno));
    return pid;
}

static void __attribute__((noreturn)) s_pipeline(void)
{
    char cmd[4096];

    snprintf(cmd, sizeof cmd, "'%s' produce | '%s' consume", s_self, s_self);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    s_fail("setup: exec /bin/sh: %s", strerror(errno));
    _exit(1);
}

/* variant nested: pid 1 of a pid namespace below the job's */
static void __attribute__((noreturn)) s_nested(void)
{
    s_kind = "nested";
    if (unshare(CLONE_NEWPID) < 0)
        s_fail("setup: unshare(CLONE_NEWPID): %s", strerror(errno));
    if (fork() == 0)
        for (;;)
            pause();
    for (;;)
        pause();
}

/* variant mountns: a member with a mount namespace of its own */
static void __attribute__((noreturn)) s_own_mounts(void)
{
    s_kind = "mountns";
    if (unshare(CLONE_NEWNS) < 0)
        s_fail("setup: unshare(CLONE_NEWNS): %s", strerror(errno));
    for (;;)
        pause();
}

/* Each child still there under its pid, with us as parent; nothing of
 * ours exited. */
static void s_check_children(const pid_t *kids, int n, pid_t self)
{
    int status;
    pid_t w;

    while ((w = waitpid(-1, &status, WNOHANG)) > 0)
        s_fail("reaped %d (status %#x): a member exited", (int)w, status);
    for (int i = 0; i < n; i++) {
        pid_t p = 0, pp = 0;
        if (s_stat_ids(kids[i], &p, &pp) < 0 || p != kids[i] || pp != self)
            s_fail("child %d is not there under its pid with parent %d (pid %d, "
                   "parent %d)", (int)kids[i], (int)self, (int)p, (int)pp);
    }
}

static void __attribute__((noreturn)) s_parent(const char *variant);

static void __attribute__((noreturn)) s_reaper(const char *dir, const char *variant)
{
    char path[4096];

    s_kind = "reaper";
    if (getpid() != 1)
        s_fail("setup: the reaper is pid %d, not 1", (int)getpid());
    if (strcmp(variant, "hostproc") != 0 && strcmp(variant, "noproc") != 0) {
        if (umount2("/proc", MNT_DETACH) < 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            s_fail("setup: our own proc on /proc: %s", strerror(errno));
    }
    if (strcmp(variant, "extramount") == 0) {
        snprintf(path, sizeof path, "%s/mnt", dir);
        mkdir(path, 0700);
        if (mount("tmpfs", path, "tmpfs", 0, "size=1m") < 0)
            s_fail("setup: tmpfs on %s: %s", path, strerror(errno));
        snprintf(path, sizeof path, "%s/mnt/data", dir);   /* the job's files */
        close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    }
    s_parent(variant);
}

/* The members under us, then every 100 ms: we and they are who we were. */
static void __attribute__((noreturn)) s_parent(const char *variant)
{
    pid_t kids[S_MAX_CHILDREN], pid0 = getpid(), ppid0 = getppid();
    int n = 0;

    kids[n++] = s_spawn(s_counter);
    kids[n++] = s_spawn(s_threads);
    kids[n++] = s_spawn(s_pipeline);
    if (strcmp(variant, "nested") == 0)
        kids[n++] = s_spawn(s_nested);
    if (strcmp(variant, "mountns") == 0)
        kids[n++] = s_spawn(s_own_mounts);
    for (unsigned long k = 1;; k++) {
        s_check_self(pid0, ppid0);
        s_check_children(kids, n, pid0);
        s_line("%s %lu %d %lu", s_kind, s_ns(), (int)pid0, k);
        s_sleep_ms(100);
    }
}

/* ghost-job body DIR: the members under us, logging into DIR/log. */
static int s_body(const char *dir)
{
    char path[4096];

    s_kind = "body";
    syscall(SYS_close_range, 3, ~0u, 0);   /* nothing of our caller's goes in */
    snprintf(path, sizeof path, "%s/log", dir);
    s_log = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (s_log < 0) {
        fprintf(stderr, "ghost-job: %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%d", s_log);
    setenv("GHOST_JOB_LOG", path, 1);
    s_parent("normal");
}

/* ---- the launcher ------------------------------------------------------ */

static int s_launch(const char *dir, const char *variant)
{
    static const char *const known[] = { "normal", "nested", "mountns", "extramount",
                                         "hostproc", "noproc" };
    bool ok = false, own_mounts = strcmp(variant, "noproc") != 0;
    char path[4096];
    int status, fd;
    pid_t pid;

    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |= strcmp(variant, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "ghost-job: unknown variant %s\n", variant);
        return 100;
    }
    syscall(SYS_close_range, 3, ~0u, 0);   /* nothing of our caller's goes in */
    snprintf(path, sizeof path, "%s/log", dir);
    s_log = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (s_log < 0) {
        fprintf(stderr, "ghost-job: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (unshare(CLONE_NEWPID | (own_mounts ? CLONE_NEWNS : 0)) < 0 ||
        (own_mounts && mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)) {
        fprintf(stderr, "ghost-job: namespaces: %s\n", strerror(errno));
        return 77;
    }
    pid = fork();
    if (pid == 0) {
        /* The job holds nothing of ours but its log. */
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        fcntl(s_log, F_SETFD, 0);
        snprintf(path, sizeof path, "%d", s_log);
        setenv("GHOST_JOB_LOG", path, 1);
        s_reaper(dir, variant);
    }
    if (pid < 0) {
        fprintf(stderr, "ghost-job: fork: %s\n", strerror(errno));
        return 1;
    }
    printf("job %d\n", (int)pid);
    fflush(stdout);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    const char *log = getenv("GHOST_JOB_LOG");

    s_self = argv[0];
    s_log = log ? atoi(log) : -1;
    if (argc >= 3 && strcmp(argv[1], "launch") == 0)
        return s_launch(argv[2], argc > 3 ? argv[3] : "normal");
    if (argc == 3 && strcmp(argv[1], "body") == 0)
        return s_body(argv[2]);
    if (argc == 2 && strcmp(argv[1], "produce") == 0)
        return s_produce();
    if (argc == 2 && strcmp(argv[1], "consume") == 0)
        return s_consume();
    fprintf(stderr, "usage: ghost-job launch DIR [VARIANT] | body DIR | produce | consume\n");
    return 100;
}
