/* ghost-init - launches a Cairn job and is its reaper (docs/jobs.md).
 *
 *   ghost-init --job DIR --gpid G [--as UID:GID] [--cwd D]
 *              [--scope UNIT --slice SLICE | --cgroup NAME] -- ARGV...
 *
 * The job's environment is this program's own (ghostd builds it from
 * RunRequest.env). Three processes, one after the other:
 *
 *   launcher (this program, ghostd's child): places itself (a transient
 *     scope, or the job's sub-cgroup NAME under the node's: place.h), then
 *     clone3(CLONE_NEWPID)s
 *   the reaper (pid 1 inside): unshares a mount namespace, makes every
 *     mount in it private and mounts the pid namespace's own /proc,
 *     becomes the user, makes DIR/stdout and DIR/stderr (0600), forks
 *   the program (pid 2): its own session, stdin /dev/null, stdout and
 *     stderr those files, the user's groups, cwd D, execvp ARGV.
 *
 * The launcher waits on a close-on-exec pipe that the reaper and the
 * program hold: EOF with nothing written means the program was executed;
 * otherwise it carries "CODE\tMESSAGE" (a setup step or the exec failed),
 * and the launcher kills the reaper (the kernel then kills the whole
 * namespace), reaps it and fails. It prints one JSON line and exits:
 *   {"host_pid":N,"pid":2,"cgroup":"...","unit":"..."}      exit 0
 *   {"error":{"code":"...","message":"..."}}               exit 1
 * (100 wrong usage). On success the reaper lives on; it is reparented to
 * ghostd, which is a child subreaper.
 *
 * The reaper must be checkpointable by the engine like any process of the
 * job, so it is as plain as a process can be: one thread, no fd at all
 * once the program runs (0-2 closed too), no signalfd or timerfd -- plain
 * handlers and a sigsuspend/waitpid loop with every signal it handles
 * blocked outside sigsuspend (so none is lost between the two) -- and
 * nothing mapped but the program and its libraries. It forwards SIGTERM,
 * SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, SIGWINCH and SIGALRM
 * to pid 2 and turns SIGTSTP, SIGTTIN and SIGTTOU into SIGSTOP for it;
 * it reaps every orphan of the namespace. When pid 2 exits it SIGKILLs
 * what is left in the namespace, reaps it, writes DIR/exit
 * ({"exit_code":N,"exit_signal":S,"end_ms":T}, through DIR/exit.tmp and a
 * rename) and exits (the kernel kills and reaps whatever is left before
 * our parent sees us exit) with pid 2's status (128 + the signal for one killed
 * by a signal: the namespace's init cannot raise a signal on itself). If
 * the reaper dies, the kernel kills the namespace: the job ends with it.
 *
 * Why clone3 and not unshare + fork: unshare(CLONE_NEWPID) would put
 * every later child of the launcher in the job's namespace too (an ASan
 * build's leak checker clones a tracer at exit, and hung there), where
 * clone3 with CLONE_NEWPID makes that one child the namespace's pid 1.
 * The raw system call skips glibc's fork bookkeeping (atfork handlers,
 * the tid cached in the child's thread block), which the reaper does not
 * need: it makes plain system calls, and the program comes from glibc's
 * own fork in the reaper, which sets it right.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "place.h"
#include "report.h"
#include "util/clock.h"
#include "util/options.h"

#define S_MAX_GROUPS 1024

static const cairn_option_t s_options[] = {
    { "--job", "DIR", "the job's directory (absolute; made by ghostd)" },
    { "--gpid", "G", "the job's gpid, NODE.SEQ" },
    { "--as", "UID:GID", "run the job as this user (else as ourselves)" },
    { "--cwd", "D", "the program's working directory (absolute; default /)" },
    { "--scope", "UNIT", "place the job in this transient systemd scope" },
    { "--slice", "SLICE", "the scope's slice (with --scope)" },
    { "--cgroup", "NAME", "place the job in sub-cgroup NAME of ours" },
    { "--help", NULL, "this text" },
    { NULL, NULL, NULL },
};
enum { O_JOB, O_GPID, O_AS, O_CWD, O_SCOPE, O_SLICE, O_CGROUP, O_HELP };

typedef struct s_job {
    const char *dir;           /* DIR */
    const char *gpid;          /* G */
    const char *cwd;           /* D */
    const char *scope, *slice; /* --scope, --slice, or NULL */
    const char *cgroup;        /* --cgroup NAME, or NULL */
    bool as;                   /* --as given */
    uid_t uid;                 /* its user */
    gid_t gid;                 /* its group */
    gid_t groups[S_MAX_GROUPS]; /* the user's supplementary groups */
    int n_groups;              /* their number */
    char **argv;               /* the program */
} s_job_t;

/* ---- arguments ------------------------------------------------------- */

static int s_parse_as(const char *arg, s_job_t *j, cairn_error_t *err)
{
    unsigned long u, g;
    char *end;

    errno = 0;
    u = strtoul(arg, &end, 10);
    if (errno || end == arg || *end != ':' || u > 0xfffffffeul)
        goto bad;
    arg = end + 1;
    g = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || g > 0xfffffffeul)
        goto bad;
    j->as = true;
    j->uid = (uid_t)u;
    j->gid = (gid_t)g;
    return 0;
bad:
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--as: expected UID:GID");
}

/* The groups the user holds: those the user database lists for the
 * uid's name with gid (getgrouplist, as initgroups does), else gid alone. */
static void s_user_groups(s_job_t *j)
{
    struct passwd *pw = getpwuid(j->uid);
    int n = S_MAX_GROUPS;

    j->groups[0] = j->gid;
    j->n_groups = 1;
    if (pw && getgrouplist(pw->pw_name, j->gid, j->groups, &n) >= 0)
        j->n_groups = n;
    else
        j->groups[0] = j->gid;
}

static int s_parse(int argc, char **argv, s_job_t *j, cairn_error_t *err)
{
    cairn_args_t a;
    int dash = 1;

    while (dash < argc && strcmp(argv[dash], "--") != 0)
        dash++;
    int r = cairn_args_parse("ghost-init", s_options, dash - 1, argv + 1, 0,
                             &a, err);
    if (r < 0)
        return r;
    if (a.values[O_HELP]) {
        cairn_options_usage(stdout, "ghost-init", "--job DIR --gpid G [options] "
                            "-- ARGV...", s_options);
        exit(0);
    }
    j->dir = a.values[O_JOB];
    j->gpid = a.values[O_GPID];
    j->cwd = a.values[O_CWD] ? a.values[O_CWD] : "/";
    j->scope = a.values[O_SCOPE];
    j->slice = a.values[O_SLICE];
    j->cgroup = a.values[O_CGROUP];
    j->argv = dash + 1 < argc ? argv + dash + 1 : NULL;
    if (!j->dir || j->dir[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--job DIR is required and must be absolute");
    if (!j->gpid || !*j->gpid)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--gpid is required");
    if (j->cwd[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--cwd '%s' is not absolute", j->cwd);
    if (!j->argv || !j->argv[0][0])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "no program: give it after --");
    if (!j->scope != !j->slice || (j->scope && j->cgroup))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "give --scope with "
                               "--slice, or --cgroup, or neither");
    if (a.values[O_AS] && (r = s_parse_as(a.values[O_AS], j, err)) < 0)
        return r;
    if (j->as)
        s_user_groups(j);
    return 0;
}

/* ---- the status pipe ------------------------------------------------- */

/* Writes "CODE\tMESSAGE" (": strerror(e)" appended when e) to fd; for
 * the reaper and the program before exec, which then _exit. */
static void __attribute__((format(printf, 4, 5)))
s_tell(int fd, int code, int e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n = snprintf(buf, sizeof buf, "%s\t", cairn_code_name(code));

    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (e && (size_t)n < sizeof buf)
        snprintf(buf + n, sizeof buf - (size_t)n, ": %s", strerror(e));
    ssize_t w = write(fd, buf, strlen(buf));
    (void)w;
}

/* Drops to the job's user (groups, gid, uid), keeps the process dumpable
 * (a credential change clears that, and the engine refuses a process
 * its owner could not ptrace). */
static int s_become_user(const s_job_t *j)
{
    if (!j->as)
        return 0;
    if (setgroups((size_t)j->n_groups, j->groups) < 0 ||
        setresgid(j->gid, j->gid, j->gid) < 0 ||
        setresuid(j->uid, j->uid, j->uid) < 0)
        return -errno;
    return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 ? -errno : 0;
}

/* ---- the program (pid 2) --------------------------------------------- */

static int s_exec_code(int e)
{
    return e == ENOENT || e == ENOTDIR ? CAIRN_NOT_FOUND
         : e == EACCES || e == EPERM ? CAIRN_PERMISSION_DENIED
                                     : CAIRN_INVALID_ARGUMENT;
}

static void s_default_signals(void)
{
    sigset_t none;

    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void __attribute__((noreturn))
s_program(const s_job_t *j, int tell, int out, int errfd)
{
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (setsid() < 0 || null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(errfd, 2) < 0) {
        s_tell(tell, CAIRN_INTERNAL, errno, "cannot set up the program's stdio");
        _exit(127);
    }
    if (chdir(j->cwd) < 0) {
        int e = errno;
        s_tell(tell, e == ENOENT || e == ENOTDIR ? CAIRN_NOT_FOUND
               : e == EACCES ? CAIRN_PERMISSION_DENIED : CAIRN_FAILED_PRECONDITION,
               e, "cannot change to directory %s", j->cwd);
        _exit(127);
    }
    s_default_signals();
    execvp(j->argv[0], j->argv);
    int e = errno;
    s_tell(tell, s_exec_code(e), e, "cannot execute %s", j->argv[0]);
    _exit(127);
}

/* ---- the reaper (pid 1) ---------------------------------------------- */

static volatile pid_t s_child;   /* pid 2, the program */

/* Forwards a signal to the program; the stops of a terminal become
 * SIGSTOP (the program's group is orphaned: SIGTSTP would be dropped). */
static void s_forward(int sig)
{
    int saved = errno;

    if (s_child > 0)
        kill(s_child, sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU
                          ? SIGSTOP : sig);
    errno = saved;
}

/* Only interrupts sigsuspend: the loop reaps. */
static void s_on_child(int sig)
{
    (void)sig;
}

static const int s_forwarded[] = {
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, SIGWINCH,
    SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU,
};
#define S_N_FORWARDED (sizeof s_forwarded / sizeof s_forwarded[0])

/* Handlers for the forwarded signals and SIGCHLD, all of them blocked
 * (the loop lets them in only inside sigsuspend); *ret_wait is the mask
 * sigsuspend waits with: the one before, with them unblocked. */
static void s_reaper_signals(sigset_t *ret_wait)
{
    struct sigaction sa = { 0 };
    sigset_t block;

    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    for (size_t i = 0; i < S_N_FORWARDED; i++)
        sigaddset(&block, s_forwarded[i]);
    sigprocmask(SIG_BLOCK, &block, ret_wait);
    sigfillset(&sa.sa_mask);   /* handlers never nest */
    sa.sa_handler = s_forward;
    for (size_t i = 0; i < S_N_FORWARDED; i++)
        sigaction(s_forwarded[i], &sa, NULL);
    sa.sa_handler = s_on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sigdelset(ret_wait, SIGCHLD);
    for (size_t i = 0; i < S_N_FORWARDED; i++)
        sigdelset(ret_wait, s_forwarded[i]);
}

/* DIR/exit: written to DIR/exit.tmp, then renamed, so a reader sees a
 * whole record or none. Errors are nobody's to hear: ghostd writes one
 * itself for a job that ended without it. */
static void s_write_exit(const char *dir, int status)
{
    char tmp[4200], final[4200], rec[128];
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int n = snprintf(rec, sizeof rec, "{\"exit_code\":%d,\"exit_signal\":%d,"
                     "\"end_ms\":%llu}\n", code, sig,
                     (unsigned long long)cairn_realtime_ms());

    snprintf(tmp, sizeof tmp, "%s/exit.tmp", dir);
    snprintf(final, sizeof final, "%s/exit", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, rec, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    if (ok)
        rename(tmp, final);
}

/* The reaper's life after the program runs: reap, forward, and once pid 2
 * is gone, end the namespace and report. Never returns. */
static void __attribute__((noreturn))
s_reap(const char *dir, const sigset_t *wait_mask)
{
    int status = 0, st;
    pid_t p;

    for (;;) {
        bool done = false;
        while ((p = waitpid(-1, &st, WNOHANG | __WALL)) > 0)
            if (p == s_child) {
                status = st;
                done = true;
            }
        if (done)
            break;
        sigsuspend(wait_mask);
    }
    s_child = 0;
    /* In a pid namespace: every process but ourselves that we may signal.
     * One we may not (a setuid program of a user's job) dies with us: the
     * kernel kills and reaps the whole namespace when its init exits,
     * before our parent hears of it -- so we do not wait here for what
     * we could not kill. */
    kill(-1, SIGKILL);
    while ((p = waitpid(-1, &st, WNOHANG | __WALL)) > 0 || (p < 0 && errno == EINTR))
        ;
    s_write_exit(dir, status);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Opens DIR/NAME for the program's output, as the user, 0600. */
static int s_open_log(const char *dir, const char *name)
{
    char path[4200];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC |
                          O_NOFOLLOW, 0600);
}

static void __attribute__((noreturn)) s_reaper(const s_job_t *j, int tell)
{
    sigset_t wait_mask;
    int out, errfd, e;

    s_reaper_signals(&wait_mask);
    /* A mount namespace of the reaper's own (not the launcher's, which
     * still reads the host's /proc after this). Its mounts are slaves of
     * the node's, as a restored job's are (ns.c): what the node mounts
     * later reaches the job where the node's mounts are shared (systemd),
     * and nothing the job mounts (its /proc) leaks out. */
    if (unshare(CLONE_NEWNS) < 0 ||
        mount("none", "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        s_tell(tell, CAIRN_FAILED_PRECONDITION, errno,
               "cannot mount the job's /proc");
        _exit(1);
    }
    if ((e = s_become_user(j)) < 0) {
        s_tell(tell, CAIRN_PERMISSION_DENIED, -e, "cannot become the job's user");
        _exit(1);
    }
    out = s_open_log(j->dir, "stdout");
    errfd = out < 0 ? -1 : s_open_log(j->dir, "stderr");
    if (out < 0 || errfd < 0) {
        s_tell(tell, CAIRN_FAILED_PRECONDITION, errno, "cannot make the output "
               "files in %s", j->dir);
        _exit(1);
    }
    pid_t pid = fork();
    if (pid == 0)
        s_program(j, tell, out, errfd);
    if (pid < 0) {
        s_tell(tell, CAIRN_INTERNAL, errno, "cannot fork the program");
        _exit(1);
    }
    s_child = pid;
    /* Nothing open from here on: the reaper is part of every checkpoint. */
    close_range(0, ~0U, 0);
    s_reap(j->dir, &wait_mask);
}

/* ---- the launcher ---------------------------------------------------- */

/* Places the launcher (and so all it forks) where ghostd said. */
static int s_place(const s_job_t *j, cairn_error_t *err)
{
    char desc[256];

    if (j->scope) {
        snprintf(desc, sizeof desc, "Cairn job %s", j->gpid);
        return ghost_place_scope(j->scope, j->slice, desc, err);
    }
    return j->cgroup ? ghost_place_enter_cgroup(j->cgroup, err) : 0;
}

/* Reads the status pipe to EOF: "" when the program was executed. */
static void s_read_status(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n;

    while (len + 1 < size &&
           ((n = read(fd, buf + len, size - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    buf[len] = '\0';
}

/* "CODE\tMESSAGE" from the pipe into err. */
static int s_status_error(char *msg, cairn_error_t *err)
{
    char *tab = strchr(msg, '\t');
    int code = CAIRN_INTERNAL;

    if (tab) {
        *tab = '\0';
        int c = cairn_code_from_name(msg);
        code = c > CAIRN_OK ? c : CAIRN_INTERNAL;
        msg = tab + 1;
    }
    return cairn_error_set(err, -EIO, code, "%s", msg);
}

/* clone3's arguments, version 0 (linux/sched.h's struct clone_args,
 * which cannot be included beside sched.h). */
struct s_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        stack_size, tls;
};

/* fork() into a new pid namespace: 0 in the child (pid 1 there), its pid
 * here, -1 with errno. */
static pid_t s_clone_newpid(void)
{
    struct s_clone_args args = { .flags = CLONE_NEWPID, .exit_signal = SIGCHLD };

    return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

static int s_launch(const s_job_t *j, pid_t *ret_pid, cairn_error_t *err)
{
    char status[1100];
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s",
                               strerror(errno));
    pid_t pid = s_clone_newpid();
    if (pid == 0) {
        close(p[0]);
        s_reaper(j, p[1]);
    }
    int e = errno;
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return cairn_error_set(err, -e, e == EPERM || e == EINVAL || e == ENOSPC
                               ? CAIRN_FAILED_PRECONDITION : CAIRN_INTERNAL,
                               "cannot make the job's pid namespace (clone3): %s",
                               strerror(e));
    }
    s_read_status(p[0], status, sizeof status);
    close(p[0]);
    if (status[0]) {
        kill(pid, SIGKILL);   /* its namespace dies with it */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return s_status_error(status, err);
    }
    *ret_pid = pid;
    return 0;
}

int main(int argc, char **argv)
{
    cairn_error_t err = { 0 };
    char cgroup[4096] = "/";
    s_job_t j = { 0 };
    pid_t pid = 0;

    if (ghost_place_take_oom(&err) < 0)
        return ghost_report_error(&err, 1);
    if (s_parse(argc, argv, &j, &err) < 0)
        return ghost_report_error(&err, 100);
    if (s_place(&j, &err) < 0 || s_launch(&j, &pid, &err) < 0)
        return ghost_report_error(&err, 1);
    ghost_place_cgroup_of(pid, cgroup, sizeof cgroup);
    ghost_report(json_pack("{s:i,s:i,s:s,s:s}", "host_pid", (int)pid, "pid", 2,
                           "cgroup", cgroup, "unit", j.scope ? j.scope : ""));
    return 0;
}
