/* procstate.c - process-wide and per-thread settings (procstate.h).
 *
 * Design. Each setting is read where the kernel shows it most cheaply
 * and put back where it belongs:
 *
 *  - POSIX timers: /proc/PID/timers lists id, signal and sigev_value,
 *    notify (and its target thread) and clock; timer_gettime and
 *    timer_getoverrun injected in the leader give the time left and the
 *    interval. The blob's leader makes them again once every thread
 *    exists (a timer may signal one, SIGEV_THREAD_ID), with
 *    PR_TIMER_CREATE_RESTORE_IDS (6.13+) so each gets its id; an older
 *    kernel picks ids itself, in order, and a timer whose id comes out
 *    wrong fails the restore. Each is armed with the time it had left,
 *    relative: an absolute CLOCK_REALTIME timer so becomes a relative one
 *    (docs/ghost.md says why that is the same expiry). glibc's
 *    SIGEV_THREAD timers are plain SIGEV_THREAD_ID timers to its helper
 *    thread, which is restored with the rest of the memory and threads.
 *    A thread's cpu-time clock is bound to the thread that made the
 *    timer, which /proc does not tell: refused in a multi-threaded
 *    process, as is another process's cpu clock.
 *  - oom_score_adj (/proc), THP disable (PR_GET_THP_DISABLE with its
 *    flags), the child-subreaper flag and membarrier registrations
 *    (MEMBARRIER_CMD_GET_REGISTRATIONS, 6.3+; before it the private
 *    commands are probed: each fails with EPERM unless registered) are
 *    the process's: set again in the child's libc stage, before its blob.
 *  - Per thread: name (/proc/TID/comm), scheduling (sched_getattr),
 *    cpus (sched_getaffinity) and io priority (ioprio_get) read by the
 *    dumper on the tid; timer slack, parent-death signal, MCE kill
 *    policy, TSC mode, speculation controls injected in the thread; the
 *    IO flusher flag from /proc/TID/stat's flags. Each thread sets its own
 *    in the blob before its seccomp filters and credentials. A
 *    parent-death signal is set again below the root only: the root's
 *    parent is not part of the checkpoint (docs/ghost.md says why it is
 *    dropped rather than refused).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "procstate.h"
#include "seize.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif
#define S_MB_GET_REGISTRATIONS (1 << 9)
#define S_MB_REGISTER_GLOBAL_EXPEDITED (1 << 2)
#define S_MB_PRIVATE_EXPEDITED (1 << 3)
#define S_MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#define S_MB_SYNC_CORE (1 << 5)
#define S_MB_REGISTER_SYNC_CORE (1 << 6)
#define S_MB_RSEQ (1 << 7)
#define S_MB_REGISTER_RSEQ (1 << 8)
#define S_PF_MEMALLOC_NOIO 0x00080000ul
#define S_PF_LOCAL_THROTTLE 0x00100000ul
#define S_SPEC_PRCTL 1
#define S_SPEC_OFF (4 | 8 | 16)   /* DISABLE, FORCE_DISABLE, DISABLE_NOEXEC */
#define S_MAX_TIMERS 4096
#ifndef PR_GET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif
#ifndef PR_GET_MDWE
#define PR_GET_MDWE 66
#endif
#define S_PR_SCHED_CORE 62
#define S_PR_FUTEX_HASH 78
#define S_FUTEX_HASH_SET_SLOTS 1
#define S_FUTEX_HASH_GET_SLOTS 2
#define S_PTRACE_GET_SUD_CONFIG 0x4211   /* PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG */

/* ---- /proc/PID/timers -------------------------------------------------- */

/* One entry of /proc/PID/timers. */
typedef struct s_ptimer {
    int32_t id, clock, notify, signo;
    uint64_t value;
    pid_t target;          /* the pid or tid after notify's '.' */
} s_ptimer_t;

static int s_notify_kind(const char *name)
{
    return strcmp(name, "signal") == 0 ? SIGEV_SIGNAL
           : strcmp(name, "none") == 0 ? SIGEV_NONE
           : strcmp(name, "thread") == 0 ? SIGEV_THREAD
                                          : -1;
}

/* The timers of pid (*ret malloc'ed, caller's). */
static int s_read_timers(pid_t pid, s_ptimer_t **ret, size_t *ret_n, cairn_error_t *err)
{
    char *text = NULL;
    size_t len = 0, n = 0;
    int r = proc_read_file(pid, "timers", &text, &len, err);
    if (r < 0)
        return r;
    s_ptimer_t *v = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && r == 0;
         line = strtok_r(NULL, "\n", &save)) {
        s_ptimer_t *t = n ? &v[n - 1] : NULL;
        char kind[16], scope[8];
        unsigned long long value;
        int id;
        if (sscanf(line, "ID: %d", &id) == 1) {
            s_ptimer_t *nv = n < S_MAX_TIMERS ? realloc(v, (n + 1) * sizeof(*v)) : NULL;
            if (!nv)
                r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "timers of %d: too many",
                                    (int)pid);
            else
                v = nv, v[n++] = (s_ptimer_t){ .id = id };
        } else if (t && sscanf(line, "signal: %d/%llx", &t->signo, &value) == 2) {
            t->value = value;
        } else if (t && sscanf(line, "notify: %15[a-z]/%7[a-z].%d", kind, scope,
                               &t->target) == 3 && s_notify_kind(kind) >= 0) {
            t->notify = s_notify_kind(kind) | (strcmp(scope, "tid") == 0 ? SIGEV_THREAD_ID : 0);
        } else if (!t || sscanf(line, "ClockID: %d", &t->clock) != 1) {
            r = cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                                "/proc/%d/timers: cannot read '%s'", (int)pid, line);
        }
    }
    free(text);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Why a timer on clock cannot be made again in a process of nthreads
 * threads, NULL if it can. /proc shows a cpu-time clock as the kernel
 * keeps it: (~pid << 3) | thread << 2 | PROF/VIRT/SCHED, pid 0 standing
 * for the maker (CLOCK_PROCESS_CPUTIME_ID is -6, CLOCK_THREAD_CPUTIME_ID
 * -2); the thread a thread clock's pid 0 stands for is not shown. */
static const char *s_clock_refusal(int32_t clock, size_t nthreads)
{
    switch (clock) {
    case CLOCK_REALTIME: case CLOCK_MONOTONIC: case CLOCK_BOOTTIME:
    case CLOCK_REALTIME_ALARM: case CLOCK_BOOTTIME_ALARM: case CLOCK_TAI:
        return NULL;
    default:
        break;
    }
    if (clock >= 0 || (clock & 3) == 3 || ~(clock >> 3) != 0)
        return clock >= 0 ? "an unknown clock" : "another process's or thread's cpu clock";
    if ((clock & 4) && nthreads > 1)
        return "a thread's cpu clock in a multi-threaded process (which thread's is not shown)";
    return NULL;
}

/* What /proc/PID/status says cannot come back: a shadow stack (x86 CET:
 * the blob's rt_sigreturn frames carry no shadow-stack token) or linear
 * address masking (pointers carry tags the restored mm would fault on). */
static int s_check_status(pid_t pid, ghost_reasons_t *rs, cairn_error_t *err)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    int r = proc_read_file(pid, "status", &text, &len, err);
    for (char *line = r == 0 ? strtok_r(text, "\n", &save) : NULL; line && r == 0;
         line = strtok_r(NULL, "\n", &save)) {
        char word[32] = "";
        unsigned long long mask = ~0ull;
        const char *what = NULL;
        if (sscanf(line, "x86_Thread_features: %31s", word) == 1)
            what = "has a shadow stack (x86_Thread_features)";
        else if (sscanf(line, "untag_mask: %llx", &mask) == 1 && mask != ~0ull)
            what = "uses linear address masking (untag_mask)";
        if (what)
            r = ghost_reason_add(rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                                     "process %d %s: not restored", (int)pid,
                                                     what),
                                 err, pid, "process");
    }
    free(text);
    return r;
}

/* A refusal of process pid's `what` into rs. */
static int s_refuse(ghost_reasons_t *rs, pid_t pid, const char *piece, cairn_error_t *err,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int s_refuse(ghost_reasons_t *rs, pid_t pid, const char *piece, cairn_error_t *err,
                    const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ghost_reason_add(rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                                "process %d %s: not restored", (int)pid, what),
                            err, pid, "%s", piece);
}

/* The SysV semaphore set and number that pid operated on last, if any
 * (semctl GETPID: the last semop's process), from the sets of the node's
 * IPC namespace (/proc/sysvipc/sem; the dumper's: ns.c refuses one of
 * the process's own). *ret_id -1: none. */
static int s_sem_last_op(pid_t pid, int *ret_id, int *ret_num, cairn_error_t *err)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    *ret_id = -1;
    _cleanup_close_ int fd = open("/proc/sysvipc/sem", O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;   /* no SysV IPC in this kernel */
    int r = fd < 0 ? -errno : cairn_read_fd(fd, 0, &text, &len);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "/proc/sysvipc/sem: %s", strerror(-r));
    for (char *line = r == 0 ? strtok_r(text, "\n", &save) : NULL; line && *ret_id < 0;
         line = strtok_r(NULL, "\n", &save)) {
        int id = -1, nsems = 0;
        if (sscanf(line, "%*d %d %*o %d", &id, &nsems) != 2)
            continue;   /* the heading */
        for (int i = 0; i < nsems; i++)
            if (semctl(id, i, GETPID) == pid) {
                *ret_id = id, *ret_num = i;
                break;
            }
    }
    free(text);
    return r;
}

/* SysV semaphore undo adjustments (semop SEM_UNDO) of pid: the kernel
 * applies them to the sets when the process exits, from an undo list no
 * /proc file shows, and the restore cannot make one (it would lose them,
 * or with a semop of its own apply them twice). What can be seen: kcmp's
 * KCMP_SYSVSEM compares two tasks' undo lists, and the dumper has none,
 * so a difference is a list the thread holds -- made by its first
 * SEM_UNDO semop, and also by any pthread_create (CLONE_SYSVSEM shares
 * one, made empty): so a list alone says little. Refused: a process that
 * has a list and is the last to have operated on a semaphore of the
 * node. Not seen: a SEM_UNDO operation followed by another process's on
 * the same semaphore (docs/ghost.md). */
static int s_check_sem_undo(pid_t pid, const int *tids, size_t nt, ghost_reasons_t *rs,
                            cairn_error_t *err)
{
    bool list = false;
    for (size_t i = 0; i < nt && !list; i++) {
        long k = syscall(SYS_kcmp, (pid_t)tids[i], getpid(), 6 /* KCMP_SYSVSEM */, 0, 0);
        if (k < 0 && (errno == EOPNOTSUPP || errno == ESRCH))
            continue;   /* no SysV IPC in this kernel; a thread that exited */
        if (k < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "kcmp(KCMP_SYSVSEM) %d: %s",
                                   tids[i], strerror(errno));
        list = k > 0;
    }
    int id = -1, num = 0;
    int r = list ? s_sem_last_op(pid, &id, &num, err) : 0;
    if (r == 0 && id >= 0)
        r = s_refuse(rs, pid, "process", err,
                     "has an undo list and operated on SysV semaphore %d of set %d (its "
                     "semaphore undo adjustments, semop SEM_UNDO, cannot be seen)",
                     num, id);
    return r;
}

/* A NUMA memory policy in pid (set_mempolicy or mbind): numa_maps names
 * each vma's policy, the leader's own standing for a vma without one
 * ("default" when neither has one). Other threads' own policies are
 * asked of each thread (s_thread_refusals). No CONFIG_NUMA: no file,
 * no policy. */
static int s_check_numa(pid_t pid, ghost_reasons_t *rs, cairn_error_t *err)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    int r = proc_read_file(pid, "numa_maps", &text, &len, err);
    if (r == -ENOENT) {
        cairn_error_clear(err);
        return 0;
    }
    for (char *line = r == 0 ? strtok_r(text, "\n", &save) : NULL; line && r == 0;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned long long at = 0;
        char policy[64] = "";
        if (sscanf(line, "%llx %63s", &at, policy) == 2 && strcmp(policy, "default") != 0) {
            r = s_refuse(rs, pid, "process", err,
                         "has a NUMA memory policy (%s at %#llx: set_mempolicy or mbind)",
                         policy, at);
            break;
        }
    }
    free(text);
    return r;
}

int procstate_check(pid_t pid, const proc_stat_t *st, bool numa_seen, ghost_reasons_t *rs,
                    cairn_error_t *err)
{
    s_ptimer_t *v = NULL;
    int *tids = NULL;
    size_t n = 0, nt = 0;
    int r = s_check_status(pid, rs, err);
    if (r < 0)
        return r;
    /* a clone with another exit signal: the restore forks with SIGCHLD */
    if (st->exit_signal != SIGCHLD &&
        (r = s_refuse(rs, pid, "process", err,
                      "has exit signal %d (clone's exit_signal, not SIGCHLD)",
                      st->exit_signal)) < 0)
        return r;
    if (!numa_seen && (r = s_check_numa(pid, rs, err)) < 0)
        return r;
    r = proc_list_dir(pid, "task", &tids, &nt, err);
    if (r == 0)
        r = s_check_sem_undo(pid, tids, nt, rs, err);
    if (r == 0)
        r = s_read_timers(pid, &v, &n, err);
    for (size_t i = 0; r == 0 && i < n; i++) {
        const char *why = s_clock_refusal(v[i].clock, nt);
        if (why)
            r = ghost_reason_add(rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                                     "process %d: POSIX timer %d is on %s "
                                                     "(clock %d)", (int)pid, v[i].id, why,
                                                     v[i].clock),
                                 err, pid, "timer");
    }
    free(v);
    free(tids);
    return r;
}

/* ---- dump: process-wide ------------------------------------------------- */

/* The image's name of host tid `tid` of p (its vtid), 0 if not p's. */
static uint32_t s_vtid(const dump_proc_t *p, pid_t tid)
{
    for (size_t i = 0; i < p->nt; i++)
        if (p->t[i].tid == tid)
            return (uint32_t)p->t[i].vtid;
    return 0;
}

static int s_collect_timer(const dump_proc_t *p, dump_thread_t *t, const s_ptimer_t *pt,
                           Cairn__Ghost__Process__PosixTimer *out, cairn_error_t *err)
{
    cairn__ghost__process__posix_timer__init(out);
    out->id = pt->id, out->clock = pt->clock, out->notify = pt->notify;
    out->signo = pt->signo, out->value = pt->value;
    if (pt->notify & SIGEV_THREAD_ID) {
        out->thread = s_vtid(p, pt->target);
        if (!out->thread)
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d: POSIX timer %d signals thread %d, not one "
                                   "of its own", (int)p->pid, pt->id, (int)pt->target);
    }
    uint64_t a[6] = { (uint64_t)pt->id, t->scratch, 0, 0, 0, 0 };
    int64_t its[4], overrun = 0;
    int r = seize_inject_read(p, t, SYS_timer_gettime, a, "timer_gettime", its, sizeof(its),
                              err);
    if (r == 0)
        r = seize_inject_ok(p, t, SYS_timer_getoverrun, a, "timer_getoverrun", &overrun, err);
    if (r < 0)
        return r;
    out->interval_ns = (uint64_t)its[0] * 1000000000ull + (uint64_t)its[1];
    out->value_ns = (uint64_t)its[2] * 1000000000ull + (uint64_t)its[3];
    out->overrun = (int32_t)overrun;
    return 0;
}

static int s_collect_timers(const dump_proc_t *p, dump_thread_t *t, procstate_dump_t *s,
                            cairn_error_t *err)
{
    s_ptimer_t *v = NULL;
    size_t n = 0;
    int r = s_read_timers(p->pid, &v, &n, err);
    if (r < 0 || n == 0) {
        free(v);
        return r;
    }
    s->timers = calloc(n, sizeof(*s->timers));
    s->timerv = calloc(n, sizeof(*s->timerv));
    if (!s->timers || !s->timerv)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = s_collect_timer(p, t, &v[i], &s->timers[i], err);
        s->timerv[i] = &s->timers[i];
        s->ps.n_timers = i + 1;
    }
    s->ps.timers = s->timerv;
    free(v);
    return r;
}

/* Registrations from MEMBARRIER_CMD_GET_REGISTRATIONS, or (before 6.3)
 * probed: a private expedited command fails with EPERM unless the
 * process registered for it. A GLOBAL_EXPEDITED registration cannot be
 * probed (the command works without it): docs/ghost.md. */
static int s_collect_membarrier(const dump_proc_t *p, dump_thread_t *t, uint32_t *ret,
                                cairn_error_t *err)
{
    static const uint32_t probe[][2] = {
        { S_MB_PRIVATE_EXPEDITED, S_MB_REGISTER_PRIVATE_EXPEDITED },
        { S_MB_SYNC_CORE, S_MB_REGISTER_SYNC_CORE },
        { S_MB_RSEQ, S_MB_REGISTER_RSEQ } };
    uint64_t a[6] = { S_MB_GET_REGISTRATIONS, 0, 0, 0, 0, 0 };
    int64_t got = 0;
    int r = seize_inject(p, t, SYS_membarrier, a, &got, err);
    if (r < 0 || got >= 0) {
        *ret = (uint32_t)got;
        return r;
    }
    *ret = 0;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        a[0] = probe[i][0];
        r = seize_inject(p, t, SYS_membarrier, a, &got, err);
        if (r < 0)
            return r;
        if (got == 0)
            *ret |= probe[i][1];
    }
    return 0;
}

/* A prctl getter injected in t whose EINVAL means "not in this kernel":
 * 0 then. */
static int s_prctl_opt(const dump_proc_t *p, dump_thread_t *t, uint64_t option,
                       int64_t *ret, cairn_error_t *err)
{
    uint64_t a[6] = { option, 0, 0, 0, 0, 0 };
    int r = seize_inject(p, t, SYS_prctl, a, ret, err);
    if (r == 0 && *ret == -EINVAL)
        *ret = 0;
    else if (r == 0 && *ret < 0)
        r = cairn_error_set(err, (int)*ret, CAIRN_SYSTEM, "prctl(%llu) in %d: %s",
                            (unsigned long long)option, (int)p->pid, strerror((int)-*ret));
    return r;
}

/* The mm's flags: coredump filter, KSM for every vma, MDWE; and the
 * autogroup's nice value of a session leader (the session's: the
 * restore makes the session again only where its leader is restored). */
static int s_collect_mm_flags(const dump_proc_t *p, dump_thread_t *t,
                              Cairn__Ghost__Process__ProcState *ps, cairn_error_t *err)
{
    char *text = NULL;
    size_t len = 0;
    int64_t merge = 0, mdwe = 0;
    int r = proc_read_file(p->pid, "coredump_filter", &text, &len, err);
    if (r < 0)
        return r;
    ps->coredump_filter = (uint32_t)strtoul(text, NULL, 16);
    ps->has_coredump_filter = true;
    free(text);
    text = NULL;
    int nice = 0;
    if (p->vsid == p->vpid && proc_read_file(p->pid, "autogroup", &text, &len, NULL) == 0 &&
        sscanf(text, "%*s nice %d", &nice) == 1)
        ps->autogroup_nice = nice;
    free(text);
    if ((r = s_prctl_opt(p, t, PR_GET_MEMORY_MERGE, &merge, err)) < 0 ||
        (r = s_prctl_opt(p, t, PR_GET_MDWE, &mdwe, err)) < 0)
        return r;
    ps->memory_merge = merge != 0;
    ps->mdwe = (uint32_t)mdwe;
    return 0;
}

/* The private futex hash's size (PR_FUTEX_HASH, 6.16+; EINVAL before:
 * none recorded). The kernel sizes it itself as threads are made, or
 * the program set it (PR_FUTEX_HASH_SET_SLOTS, 0 for the global hash):
 * procstate_child makes it again when the sizing would not. */
static int s_collect_futex_hash(const dump_proc_t *p, dump_thread_t *t,
                                Cairn__Ghost__Process__ProcState *ps, cairn_error_t *err)
{
    uint64_t a[6] = { S_PR_FUTEX_HASH, S_FUTEX_HASH_GET_SLOTS, 0, 0, 0, 0 };
    int64_t slots = 0;
    int r = seize_inject(p, t, SYS_prctl, a, &slots, err);
    if (r < 0 || slots == -EINVAL)
        return r;
    if (slots < 0)
        return cairn_error_set(err, (int)slots, CAIRN_SYSTEM,
                               "prctl(PR_FUTEX_HASH_GET_SLOTS) in %d: %s", (int)p->pid,
                               strerror((int)-slots));
    ps->futex_slots = (uint32_t)slots;
    ps->has_futex_slots = true;
    return 0;
}

int procstate_collect(const dump_proc_t *p, dump_thread_t *t, procstate_dump_t *s,
                      cairn_error_t *err)
{
    char *text = NULL;
    size_t len = 0;
    cairn__ghost__process__proc_state__init(&s->ps);
    int r = proc_read_file(p->pid, "oom_score_adj", &text, &len, err);
    if (r < 0)
        return r;
    s->ps.oom_score_adj = atoi(text);
    free(text);
    uint64_t a[6] = { PR_GET_THP_DISABLE, 0, 0, 0, 0, 0 };
    int64_t thp = 0;
    int32_t subreaper = 0;
    r = seize_inject_ok(p, t, SYS_prctl, a, "prctl(PR_GET_THP_DISABLE)", &thp, err);
    s->ps.thp_disable = (uint32_t)thp;
    uint64_t b[6] = { PR_GET_CHILD_SUBREAPER, t->scratch, 0, 0, 0, 0 };
    if (r == 0)
        r = seize_inject_read(p, t, SYS_prctl, b, "prctl(PR_GET_CHILD_SUBREAPER)", &subreaper,
                              sizeof(subreaper), err);
    s->ps.child_subreaper = subreaper != 0;
    if (r == 0)
        r = s_collect_membarrier(p, t, &s->ps.membarrier, err);
    if (r == 0)
        r = s_collect_mm_flags(p, t, &s->ps, err);
    if (r == 0)
        r = s_collect_futex_hash(p, t, &s->ps, err);
    return r < 0 ? r : s_collect_timers(p, t, s, err);
}

void procstate_free(procstate_dump_t *s)
{
    free(s->timers);
    free(s->timerv);
    s->timers = NULL;
    s->timerv = NULL;
}

/* ---- dump: per thread --------------------------------------------------- */

/* prctl(option, arg2...) injected in t: its return value into *ret. */
static int s_prctl(const dump_proc_t *p, dump_thread_t *t, uint64_t option, uint64_t arg2,
                   const char *what, int64_t *ret, cairn_error_t *err)
{
    uint64_t a[6] = { option, arg2, 0, 0, 0, 0 };
    return seize_inject_ok(p, t, SYS_prctl, a, what, ret, err);
}

/* prctl(option, &int) injected in t: the int into *ret. */
static int s_prctl_int(const dump_proc_t *p, dump_thread_t *t, uint64_t option,
                       const char *what, int32_t *ret, cairn_error_t *err)
{
    uint64_t a[6] = { option, t->scratch, 0, 0, 0, 0 };
    return seize_inject_read(p, t, SYS_prctl, a, what, ret, sizeof(*ret), err);
}

/* What the dumper reads itself on the tid. */
static int s_collect_sched(dump_thread_t *t, procstate_thread_t *b, cairn_error_t *err)
{
    Cairn__Ghost__Thread__State *st = &b->st;
    /* the restorer's sched_attr and the utilization clamps after it */
    struct { struct gr_sched_attr sa; uint32_t util_min, util_max; } ga = { 0 };
    if (syscall(SYS_sched_getattr, t->tid, &ga, sizeof(ga), 0) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sched_getattr %d: %s", (int)t->tid,
                               strerror(errno));
    /* CONFIG_UCLAMP_TASK (not on this machine's kernel, which reports 0
     * and 0): a clamp other than the default 0..1024 is not restored */
    if (ga.util_max && (ga.util_min != 0 || ga.util_max != 1024))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "thread %d has utilization clamps %u..%u (sched_setattr "
                               "SCHED_FLAG_UTIL_CLAMP): not restored", (int)t->tid,
                               ga.util_min, ga.util_max);
    const struct gr_sched_attr sa = ga.sa;
    st->policy = sa.policy, st->sched_flags = sa.flags, st->nice = sa.nice;
    st->rt_priority = sa.priority, st->dl_runtime = sa.runtime;
    st->dl_deadline = sa.deadline, st->dl_period = sa.period;
    long n = syscall(SYS_sched_getaffinity, t->tid, sizeof(b->affinity), b->affinity);
    if (n < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sched_getaffinity %d: %s",
                               (int)t->tid, strerror(errno));
    st->affinity.data = b->affinity;
    st->affinity.len = (size_t)n;
    long io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, t->tid);
    if (io < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "ioprio_get %d: %s", (int)t->tid,
                               strerror(errno));
    st->ioprio = (int32_t)io;
    return 0;
}

int procstate_check_frozen(const dump_proc_t *p, cairn_error_t *err)
{
    for (size_t i = 0; i < p->nt; i++) {
        struct { uint64_t mode, selector, offset, len; } sud = { 0 };
        if (ptrace(S_PTRACE_GET_SUD_CONFIG, p->t[i].tid, (void *)sizeof(sud), &sud) == 0 &&
            sud.mode)
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "thread %d of %d uses syscall user dispatch "
                                   "(PR_SET_SYSCALL_USER_DISPATCH): not restored",
                                   (int)p->t[i].tid, (int)p->pid);
    }
    return 0;
}

/* Thread t's own NUMA memory policy (get_mempolicy: its mode, flags
 * or'ed in; MPOL_DEFAULT is 0). The leader's shows in numa_maps too
 * (s_check_numa); the other threads' only here. No CONFIG_NUMA: ENOSYS,
 * no policy. */
static int s_thread_mempolicy(const dump_proc_t *p, dump_thread_t *t, cairn_error_t *err)
{
    uint64_t a[6] = { t->scratch, 0, 0, 0, 0, 0 };
    int64_t ret = 0;
    int32_t mode = 0;
    int r = seize_inject(p, t, SYS_get_mempolicy, a, &ret, err);
    if (r == 0 && ret == 0)
        r = seize_peek(t->tid, t->scratch, &mode, sizeof(mode), err);
    if (r == 0 && ret < 0 && ret != -ENOSYS)
        r = cairn_error_set(err, (int)ret, CAIRN_SYSTEM, "get_mempolicy in %d: %s",
                            (int)t->tid, strerror((int)-ret));
    if (r == 0 && mode)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "thread %d of %d has a NUMA memory policy (set_mempolicy mode "
                            "%#x): not restored", (int)t->tid, (int)p->pid, (unsigned)mode);
    return r;
}

/* keyctl(KEYCTL_GET_KEYRING_ID, spec, create 0) injected in t: the
 * keyring's serial, 0 if t has none of that kind (ENOKEY). */
static int s_keyring(const dump_proc_t *p, dump_thread_t *t, int32_t spec, int32_t *ret,
                     cairn_error_t *err)
{
    uint64_t a[6] = { 0 /* KEYCTL_GET_KEYRING_ID */, (uint64_t)(int64_t)spec, 0, 0, 0, 0 };
    int64_t got = 0;
    int r = seize_inject(p, t, SYS_keyctl, a, &got, err);
    if (r < 0)
        return r;
    if (got == -ENOKEY || got == -ENOSYS) {   /* none; no keys in this kernel */
        *ret = 0;
        return 0;
    }
    if (got < 0)
        return cairn_error_set(err, (int)got, CAIRN_SYSTEM, "keyctl(GET_KEYRING_ID, %d) in %d: %s",
                               (int)spec, (int)t->tid, strerror((int)-got));
    *ret = (int32_t)got;
    return 0;
}

/* Thread t's keyrings: a thread or process keyring is always the
 * process's own (fork gives a child neither) and the restore cannot make
 * a keyring with its serial and keys: refused. The session keyring is
 * inherited; the restored tree gets the restorer's (docs/ghost.md says
 * why that is no loss for one inherited from outside the tree), but one
 * that a thread or a process of the tree joined (keyctl join: it differs
 * from its leader's or from its parent's, up) is the tree's own:
 * refused. p->session_keyring is set from the leader (t first). */
static int s_thread_keyrings(dump_proc_t *p, dump_thread_t *t, const dump_proc_t *up,
                             cairn_error_t *err)
{
    int32_t own = 0, ses = 0;
    const char *what = NULL;
    int r = s_keyring(p, t, -1 /* KEY_SPEC_THREAD_KEYRING */, &own, err);
    if (r == 0 && own)
        what = "a thread keyring";
    if (r == 0 && !what && t == &p->t[0] &&
        (r = s_keyring(p, t, -2 /* KEY_SPEC_PROCESS_KEYRING */, &own, err)) == 0 && own)
        what = "a process keyring";
    if (r == 0 && !what)
        r = s_keyring(p, t, -3 /* KEY_SPEC_SESSION_KEYRING */, &ses, err);
    if (r == 0 && !what && t == &p->t[0]) {
        p->session_keyring = ses;
        if (up && up->session_keyring && ses != up->session_keyring)
            what = "a session keyring its parent has not (keyctl join)";
    } else if (r == 0 && !what && ses != p->session_keyring) {
        what = "a session keyring its process's leader has not (keyctl join)";
    }
    if (r == 0 && what)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "thread %d of %d has %s: not restored", (int)t->tid, (int)p->pid,
                            what);
    return r;
}

/* What of thread t cannot come back: a core-scheduling cookie (shared
 * with tasks outside the tree), a NUMA memory policy, keyrings of its
 * own. */
static int s_thread_refusals(dump_proc_t *p, dump_thread_t *t, const dump_proc_t *up,
                             cairn_error_t *err)
{
    uint64_t a[6] = { S_PR_SCHED_CORE, 0 /* PR_SCHED_CORE_GET */, 0, 0 /* PIDTYPE_PID */,
                      t->scratch, 0 };
    int64_t ret = 0;
    uint64_t cookie = 0;
    int r = seize_inject(p, t, SYS_prctl, a, &ret, err);
    if (r == 0 && ret == 0)
        r = seize_peek(t->tid, t->scratch, &cookie, sizeof(cookie), err);
    if (r == 0 && cookie)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "thread %d of %d has a core-scheduling cookie (PR_SCHED_CORE): "
                            "not restored", (int)t->tid, (int)p->pid);
    if (r == 0)
        r = s_thread_mempolicy(p, t, err);
    return r < 0 ? r : s_thread_keyrings(p, t, up, err);
}

int procstate_collect_thread(dump_proc_t *p, dump_thread_t *t, const dump_proc_t *up,
                             procstate_thread_t *b, cairn_error_t *err)
{
    Cairn__Ghost__Thread__State *st = &b->st;
    proc_stat_t ps;
    int64_t slack = 0, mce = 0, ssb = 0, ib = 0;
    cairn__ghost__thread__state__init(st);
    int r = proc_read_stat(t->tid, &ps, err);
    if (r < 0)
        return r;
    snprintf(b->comm, sizeof(b->comm), "%s", ps.comm);
    st->comm = b->comm;
    st->io_flusher = (ps.flags & (S_PF_MEMALLOC_NOIO | S_PF_LOCAL_THROTTLE)) ==
                     (S_PF_MEMALLOC_NOIO | S_PF_LOCAL_THROTTLE);
    if ((r = s_collect_sched(t, b, err)) < 0 ||
        (r = s_prctl(p, t, PR_GET_TIMERSLACK, 0, "prctl(PR_GET_TIMERSLACK)", &slack, err)) < 0 ||
        (r = s_prctl_int(p, t, PR_GET_PDEATHSIG, "prctl(PR_GET_PDEATHSIG)", &st->pdeathsig,
                         err)) < 0 ||
        (r = s_prctl(p, t, PR_MCE_KILL_GET, 0, "prctl(PR_MCE_KILL_GET)", &mce, err)) < 0 ||
        (r = s_prctl_int(p, t, PR_GET_TSC, "prctl(PR_GET_TSC)", &st->tsc, err)) < 0 ||
        (r = s_prctl(p, t, PR_GET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS,
                     "prctl(PR_GET_SPECULATION_CTRL)", &ssb, err)) < 0 ||
        (r = s_prctl(p, t, PR_GET_SPECULATION_CTRL, PR_SPEC_INDIRECT_BRANCH,
                     "prctl(PR_GET_SPECULATION_CTRL)", &ib, err)) < 0)
        return r;
    st->timer_slack_ns = (uint64_t)slack;
    st->mce_kill = (int32_t)mce;
    st->spec_ssb = (int32_t)ssb, st->spec_ib = (int32_t)ib;
    return s_thread_refusals(p, t, up, err);
}

/* ---- restore ----------------------------------------------------------- */

uint64_t procstate_region_bytes(const rst_proc_t *pr)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    uint64_t n = 64 + pr->threads.n * (128 + 64);
    if (p->procstate)
        n += (p->procstate->n_timers + 1) * sizeof(struct gr_timer);
    return n;
}

/* The slot of the image thread named tid in the argument block (the
 * order of threads_plan: the leader first), or -1. */
static int s_thread_slot(const rst_proc_t *pr, uint32_t tid)
{
    int k = 1;
    for (size_t i = 0; i < pr->threads.n; i++) {
        const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
        if (t->tid == tid)
            return t->leader ? 0 : k;
        k += !t->leader;
    }
    return -1;
}

/* The state bit of a speculation control to set again (0: the default,
 * left as the restored thread has it). */
static int32_t s_spec(int32_t v)
{
    return v >= 0 && (v & S_SPEC_PRCTL) ? v & S_SPEC_OFF : 0;
}

/* The slice a fair thread has when nobody chose one (sched_getattr shows
 * it in sched_runtime since 6.12: the base slice, or the thread's own
 * custom one), as ours shows it: 0 where the kernel shows none. */
static uint64_t s_default_slice(void)
{
    struct gr_sched_attr sa = { 0 };
    if (syscall(SYS_sched_getattr, 0, &sa, sizeof(sa), 0) < 0 || sa.policy != SCHED_OTHER)
        return 0;
    return sa.runtime;
}

static int s_plan_thread(rst_plan_t *pl, const rst_proc_t *pr, const Cairn__Ghost__Thread *t,
                         uint64_t default_slice, struct gr_thread *g, cairn_error_t *err)
{
    const Cairn__Ghost__Thread__State *st = t->state;
    struct gr_tstate *o = &g->st;
    if (!st)
        return 0;
    if (st->affinity.len > 128 || st->policy > 6 /* SCHED_DEADLINE */)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: thread %u's affinity or policy", t->tid);
    o->has = 1;
    snprintf(o->comm, sizeof(o->comm), "%s", st->comm);
    o->timer_slack = st->timer_slack_ns;
    /* a fair thread's runtime is its slice: one equal to the default is
     * left to the default, as setting it would make it the thread's own */
    bool fair = st->policy == SCHED_OTHER || st->policy == SCHED_BATCH ||
                st->policy == SCHED_IDLE;
    o->sched = (struct gr_sched_attr){
        .size = sizeof(o->sched), .policy = st->policy,
        .flags = st->sched_flags & 0x7 /* RESET_ON_FORK, RECLAIM, DL_OVERRUN */,
        .nice = st->nice, .priority = st->rt_priority,
        .runtime = fair && st->dl_runtime == default_slice ? 0 : st->dl_runtime,
        .deadline = st->dl_deadline, .period = st->dl_period };
    if (st->affinity.len) {
        uint8_t *mask = rst_alloc(pl, st->affinity.len, 8);
        if (!mask)
            return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
        memcpy(mask, st->affinity.data, st->affinity.len);
        o->affinity = (uint64_t)(uintptr_t)mask;
        o->affinity_len = (uint32_t)st->affinity.len;
    }
    o->ioprio = st->ioprio;
    /* the root's parent is not in the image: what the signal watched is
     * gone, and the restorer would stand in for it (docs/ghost.md) */
    o->pdeathsig = pr->parent < 0 ? 0 : st->pdeathsig;
    o->mce_kill = st->mce_kill == PR_MCE_KILL_DEFAULT ? -1 : st->mce_kill;
    o->tsc = st->tsc == PR_TSC_SIGSEGV ? PR_TSC_SIGSEGV : 0;
    o->io_flusher = st->io_flusher ? 1 : 0;
    o->spec_ssb = s_spec(st->spec_ssb);
    o->spec_ib = s_spec(st->spec_ib);
    return 0;
}

static int s_plan_timers(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process__ProcState *ps = pr->process->process->procstate;
    struct gr_args *a = pl->args;
    if (!ps || !ps->n_timers)
        return 0;
    a->timers = rst_alloc(pl, ps->n_timers * sizeof(*a->timers), 64);
    if (!a->timers)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < ps->n_timers; i++) {
        const Cairn__Ghost__Process__PosixTimer *t = ps->timers[i];
        struct gr_timer g = {
            .id = t->id, .clock = t->clock, .notify = t->notify, .signo = t->signo,
            .value = t->value,
            .interval_sec = (int64_t)(t->interval_ns / 1000000000ull),
            .interval_nsec = (int64_t)(t->interval_ns % 1000000000ull),
            .value_sec = (int64_t)(t->value_ns / 1000000000ull),
            .value_nsec = (int64_t)(t->value_ns % 1000000000ull) };
        if (t->id < 0 || (t->notify & SIGEV_THREAD_ID &&
                          (g.thread = s_thread_slot(pr, t->thread) + 1) <= 0))
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: POSIX timer %d (thread %u)", t->id, t->thread);
        /* in id order: an older kernel hands out ids in order */
        uint32_t k = a->n_timers++;
        for (; k > 0 && a->timers[k - 1].id > g.id; k--)
            a->timers[k] = a->timers[k - 1];
        if (k > 0 && a->timers[k - 1].id == g.id)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: POSIX timer %d twice", t->id);
        a->timers[k] = g;
    }
    return 0;
}

int procstate_plan(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    uint64_t default_slice = s_default_slice();
    int r = 0;
    for (size_t i = 0; r == 0 && i < pr->threads.n; i++) {
        const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
        int slot = s_thread_slot(pr, t->tid);
        if (slot < 0 || (uint32_t)slot >= a->n_threads)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: thread %u", t->tid);
        r = s_plan_thread(pl, pr, t, default_slice, &a->threads[slot], err);
    }
    const Cairn__Ghost__Process__ProcState *ps = pr->process->process->procstate;
    if (ps)
        a->mdwe = ps->mdwe;
    return r < 0 ? r : s_plan_timers(pl, pr, err);
}

/* The registrations of mask again, each with its own command. */
static void s_child_membarrier(const rst_plan_t *pl, uint32_t mask)
{
    mask &= S_MB_REGISTER_GLOBAL_EXPEDITED | S_MB_REGISTER_PRIVATE_EXPEDITED |
            S_MB_REGISTER_SYNC_CORE | S_MB_REGISTER_RSEQ;
    for (uint32_t bit = 1; bit; bit <<= 1) {
        if (!(mask & bit))
            continue;
        if (syscall(SYS_membarrier, bit, 0, 0) < 0)
            rst_child_fail(pl, errno, 0, "membarrier registration %#x: %s", bit,
                           strerror(errno));
    }
}

/* Whether the /proc/self file at path holds the number buf says
 * already (read in the base buf is written in). */
static bool s_child_holds(const char *path, const char *buf)
{
    char cur[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, cur, sizeof(cur) - 1);
    close(fd);
    if (n <= 0)
        return false;
    cur[n] = '\0';
    int base = strncmp(buf, "0x", 2) == 0 ? 16 : 10;   /* coredump_filter: "00000033" */
    return strtoll(cur, NULL, base) == strtoll(buf, NULL, 0);
}

/* One number into a /proc/self file (fails the child on error). A file
 * that holds it already is not written (a job's oom_score_adj is the one
 * the helper gave it). */
static void __attribute__((format(printf, 3, 4)))
s_child_write(const rst_plan_t *pl, const char *path, const char *fmt, ...)
{
    char buf[32];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s_child_holds(path, buf))
        return;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    uid_t fsuid = (uid_t)setfsuid((uid_t)-1);
    if (fd < 0 && errno == EACCES && fsuid != 0) {
        /* A user's restore runs with their file rights (owner.h) and this
         * process's /proc files are still root's: its own file opened
         * with root's. What it may write there was checked before
         * anything was made (procstate_check_owner). */
        setfsuid(0);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        int e = errno;
        setfsuid(fsuid);
        errno = e;
    }
    if (fd < 0)
        rst_child_fail(pl, errno, 0, "cannot open %s: %s", path, strerror(errno));
    if (write(fd, buf, (size_t)n) != n)
        rst_child_fail(pl, errno, 0, "%s %s: %s", path, buf, strerror(errno));
    close(fd);
}

int procstate_check_owner(const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    const Cairn__Ghost__Process__ProcState *ps = p->procstate;
    const char *why = NULL;

    if (ps && ps->oom_score_adj < 0)
        why = "an oom_score_adj below 0";
    else if (ps && ps->autogroup_nice < 0)
        why = "an autogroup nice below 0";
    for (size_t i = 0; !why && i < pr->threads.n; i++) {
        const Cairn__Ghost__Thread__State *st = pr->threads.v[i]->thread->state;
        if (!st)
            continue;
        if (st->nice < 0)
            why = "a thread's nice below 0";
        else if (st->policy == SCHED_FIFO || st->policy == SCHED_RR || st->policy == 6)
            why = "a real-time or deadline scheduling policy";   /* 6: SCHED_DEADLINE */
        else if ((st->ioprio >> 13) == 1)
            why = "the real-time io class";
        else if (st->io_flusher > 0)
            why = "the IO-flusher flag";
    }
    return why ? cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                 "process %u of the image asks for %s, which only a "
                                 "privileged process sets", p->pid, why)
               : 0;
}

/* The slots the kernel gives a private futex hash by itself once a
 * process has nthreads threads (kernel/futex/core.c's default sizing: 4
 * a thread, at most one thread a cpu, at least 16). */
static uint32_t s_futex_auto_slots(uint32_t nthreads)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n = cpus > 0 && (uint32_t)cpus < nthreads ? (uint32_t)cpus : nthreads, b = 16;
    while (b < 4 * n)
        b <<= 1;
    return b;
}

/* The private futex hash as the image had it, made while the child is
 * single-threaded: a hash the kernel would size alike from the restored
 * threads (or none, one thread and the global hash) is left to it, so it
 * keeps growing as the program makes threads; a size the program chose
 * (or one a past crowd of threads left) is set, and then stays. */
static void s_child_futex_hash(const rst_plan_t *pl, const Cairn__Ghost__Process *p,
                               const Cairn__Ghost__Process__ProcState *ps)
{
    if (!ps->has_futex_slots)
        return;
    if (p->n_threads <= 1 ? ps->futex_slots == 0
                          : ps->futex_slots == s_futex_auto_slots(p->n_threads))
        return;
    if (prctl(S_PR_FUTEX_HASH, S_FUTEX_HASH_SET_SLOTS, ps->futex_slots, 0, 0) < 0)
        rst_child_fail(pl, errno, 0, "PR_FUTEX_HASH_SET_SLOTS %u: %s", ps->futex_slots,
                       strerror(errno));
}

void procstate_child(const rst_plan_t *pl, const Cairn__Ghost__Process *p)
{
    const Cairn__Ghost__Process__ProcState *ps = p->procstate;
    if (!ps)
        return;
    if (ps->oom_score_adj < -1000 || ps->oom_score_adj > 1000)
        rst_child_fail(pl, EINVAL, 0, "bad image: oom_score_adj %d", ps->oom_score_adj);
    s_child_write(pl, "/proc/self/oom_score_adj", "%d", ps->oom_score_adj);
    if (ps->thp_disable &&
        prctl(PR_SET_THP_DISABLE, 1, ps->thp_disable & ~1u, 0, 0) < 0)
        rst_child_fail(pl, errno, 0, "PR_SET_THP_DISABLE %#x: %s", ps->thp_disable,
                       strerror(errno));
    if (ps->child_subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        rst_child_fail(pl, errno, 0, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    s_child_membarrier(pl, ps->membarrier);
    if (ps->has_coredump_filter)
        s_child_write(pl, "/proc/self/coredump_filter", "%#x", ps->coredump_filter);
    if (ps->memory_merge && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) < 0)
        rst_child_fail(pl, errno, 0, "PR_SET_MEMORY_MERGE: %s", strerror(errno));
    /* the session's, and only its leader's to set: it made the session */
    if (ps->autogroup_nice && p->sid == p->pid)
        s_child_write(pl, "/proc/self/autogroup", "%d", ps->autogroup_nice);
    s_child_futex_hash(pl, p, ps);
}

/* ---- verify ------------------------------------------------------------ */

/* A difference in setting `what` of pr: want and got as numbers. */
static void s_differ_num(ghost_verify_t *v, const rst_proc_t *pr, bool cosmetic,
                         const char *what, long long want, long long got)
{
    char w[32], g[32];
    snprintf(w, sizeof(w), "%lld", want);
    snprintf(g, sizeof(g), "%lld", got);
    ghost_verify_differ(v, pr, cosmetic, what, w, g);
}

/* One number of /proc/PID/NAME (base: 10 or 16) into *ret. */
static int s_proc_num(pid_t pid, const char *name, int base, long long *ret, cairn_error_t *err)
{
    char *text = NULL;
    size_t len = 0;
    int r = proc_read_file(pid, name, &text, &len, err);
    if (r == 0)
        *ret = strtoll(text, NULL, base);
    free(text);
    return r;
}

/* Thread `th` of the image, live as tid: scheduling, io priority;
 * its cpus (a node's cpuset may narrow them: cosmetic if a subset). */
static int s_verify_thread(const rst_proc_t *pr, const Cairn__Ghost__Thread *th, pid_t tid,
                           ghost_verify_t *v, cairn_error_t *err)
{
    const Cairn__Ghost__Thread__State *st = th->state;
    struct gr_sched_attr sa = { 0 };
    uint8_t mask[128] = { 0 };
    char what[64];
    if (syscall(SYS_sched_getattr, tid, &sa, sizeof(sa), 0) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sched_getattr %d: %s", (int)tid,
                               strerror(errno));
    long n = syscall(SYS_sched_getaffinity, tid, sizeof(mask), mask);
    long io = syscall(SYS_ioprio_get, 1, tid);
    if (n < 0 || io < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "affinity or ioprio of %d: %s",
                               (int)tid, strerror(errno));
    snprintf(what, sizeof(what), "thread %u scheduling", th->tid);
    if (sa.policy != st->policy || sa.nice != st->nice || sa.priority != st->rt_priority)
        s_differ_num(v, pr, false, what, (long long)st->policy << 32 | (uint32_t)st->nice,
                     (long long)sa.policy << 32 | (uint32_t)sa.nice);
    snprintf(what, sizeof(what), "thread %u ioprio", th->tid);
    if (io != st->ioprio)
        s_differ_num(v, pr, false, what, st->ioprio, io);
    bool same = true, subset = true;
    for (size_t i = 0; i < sizeof(mask); i++) {
        uint8_t w = i < st->affinity.len ? st->affinity.data[i] : 0;
        same &= mask[i] == w;
        subset &= (mask[i] & ~w) == 0;
    }
    snprintf(what, sizeof(what), "thread %u cpu affinity", th->tid);
    if (!same)
        ghost_verify_differ(v, pr, subset, what, "the image's mask",
                            subset ? "narrowed by this node" : "other cpus");
    return 0;
}

int procstate_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                     cairn_error_t *err)
{
    (void)im;
    const Cairn__Ghost__Process__ProcState *ps = pr->process->process->procstate;
    long long got = 0;
    int r = 0;
    if (!ps)
        return 0;
    /* oom_score_adj, THP, timers and thread names: verify.c's own */
    if (ps->has_coredump_filter &&
        (r = s_proc_num(pid, "coredump_filter", 16, &got, err)) == 0 &&
        got != ps->coredump_filter)
        s_differ_num(v, pr, false, "coredump_filter", ps->coredump_filter, got);
    /* threads by tid: only where the process kept its pid (and tids) */
    for (size_t i = 0; r == 0 && (uint32_t)pid == pr->process->process->pid &&
                       i < pr->threads.n; i++) {
        const Cairn__Ghost__Thread *th = pr->threads.v[i]->thread;
        if (th->state)
            r = s_verify_thread(pr, th, (pid_t)th->tid, v, err);
    }
    return r;
}
