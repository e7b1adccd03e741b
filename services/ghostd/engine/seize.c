/* seize.c - taking hold of a live process tree, and running syscalls in it.
 *
 * Dump side. The freeze seizes every thread (PTRACE_SEIZE, then
 * PTRACE_INTERRUPT), rescanning task/ and children until a pass finds
 * nothing new. What only the task knows is read by injected syscalls: the
 * thread's registers point at a `syscall` instruction of its own vdso (no
 * code is written), it runs to the syscall-exit stop under PTRACE_SYSCALL
 * with every signal blocked (PTRACE_SETSIGMASK), and output lands in a
 * 64-byte scratch area below the red zone of its stack whose bytes are
 * saved first and put back afterwards. Release puts registers, mask and
 * scratch back, with the interrupted syscall's restart applied
 * (signals.c), and detaches.
 *
 * Restore side. Once every restored thread is held past its rt_sigreturn,
 * the region the restorer ran from is unmapped by one injected munmap in
 * the process's leader, through the blob's own `syscall` gadget.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ns.h"
#include "seize.h"
#include "signals.h"
#include "threads.h"
#include "tree.h"
#include "util/array.h"
#include "util/clock.h"

/* ---- dump: freeze ------------------------------------------------------ */

/* Nice, not a real-time policy: a real-time dumper that met a freeze
 * longer than planned (a delta of a job that wrote much) could starve
 * the node's daemons meanwhile; nice -20 takes nearly all of a CPU it
 * competes for and still leaves the others their share. The callers only
 * hurry freezes that copy what changed, never a full dump. */
#define S_HURRY_NICE (-20)

void seize_hurry(seize_sched_t *ret_old)
{
    *ret_old = (seize_sched_t){ .changed = false };
    errno = 0;
    int was = getpriority(PRIO_PROCESS, 0);   /* this thread (Linux) */
    if (was == -1 && errno != 0)
        return;
    if (was > S_HURRY_NICE && setpriority(PRIO_PROCESS, 0, S_HURRY_NICE) == 0)
        *ret_old = (seize_sched_t){ .changed = true, .nice = was };
}

void seize_hurry_end(const seize_sched_t *old)
{
    if (old->changed)
        (void)setpriority(PRIO_PROCESS, 0, old->nice);
}

/* Waits for tid's PTRACE_EVENT_STOP, passing on signals that were being
 * delivered (so none is lost). *ret_stop_sig: the job-control signal the
 * thread is stopped by (the stop reports it instead of SIGTRAP), 0 if it
 * was running. */
static int s_wait_interrupt(pid_t tid, int *ret_stop_sig, cairn_error_t *err)
{
    for (;;) {
        int st;
        pid_t w = waitpid(tid, &st, __WALL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "waitpid %d: %s",
                                   (int)tid, strerror(errno));
        if (WIFEXITED(st) || WIFSIGNALED(st))
            return cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                                   "thread %d exited while being frozen", (int)tid);
        if ((st >> 16) == PTRACE_EVENT_STOP) {
            *ret_stop_sig = proc_stop_signal(WSTOPSIG(st)) ? WSTOPSIG(st) : 0;
            return 0;
        }
        /* a signal-delivery-stop came first: let the signal through */
        int sig = WSTOPSIG(st);
        if (ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_CONT %d: %s",
                                   (int)tid, strerror(errno));
    }
}

/* Seized with PTRACE_O_SUSPEND_SECCOMP where we may (CAP_SYS_ADMIN, no
 * filter of our own): a sandboxed process's filters would otherwise judge
 * our injected syscalls, and one that kills on prlimit64 would kill it. */
static int s_seize_thread(dump_thread_t *t, cairn_error_t *err)
{
    if (ptrace(PTRACE_SEIZE, t->tid, 0,
               (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP)) < 0 &&
        ptrace(PTRACE_SEIZE, t->tid, 0, (void *)(long)PTRACE_O_TRACESYSGOOD) < 0) {
        int e = errno;
        if (tree_gone(t->tid))   /* a zombie cannot be seized (EPERM) */
            return cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                                   "thread %d exited while being frozen", (int)t->tid);
        return cairn_error_set(err, -e, e == EPERM ? CAIRN_FAILED_PRECONDITION : CAIRN_SYSTEM,
                               "cannot seize thread %d: %s", (int)t->tid, strerror(e));
    }
    t->seized = true;
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_INTERRUPT %d: %s",
                               (int)t->tid, strerror(errno));
    int r = s_wait_interrupt(t->tid, &t->stop_sig, err);
    if (r < 0)
        return r;
    t->stopped = true;
    return 0;
}

static bool s_has_tid(const dump_proc_t *p, pid_t tid)
{
    for (size_t i = 0; i < p->nt; i++)
        if (p->t[i].tid == tid)
            return true;
    return false;
}

/* Seizes the threads of p not yet seized; *ret_new counts them. */
static int s_seize_new_threads(dump_proc_t *p, size_t *ret_new, cairn_error_t *err)
{
    int *tids = NULL;
    size_t n = 0, added = 0;
    int r = proc_list_dir(p->pid, "task", &tids, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (s_has_tid(p, tids[i]))
            continue;
        dump_thread_t *nt = realloc(p->t, (p->nt + 1) * sizeof(*nt));
        if (!nt) {
            r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
            break;
        }
        p->t = nt;
        dump_thread_t *t = &p->t[p->nt++];
        memset(t, 0, sizeof(*t));
        t->tid = tids[i];
        r = s_seize_thread(t, err);
        added++;
    }
    free(tids);
    /* leader first */
    for (size_t i = 1; i < p->nt; i++)
        if (p->t[i].tid == p->pid) {
            dump_thread_t tmp = p->t[0];
            p->t[0] = p->t[i];
            p->t[i] = tmp;
        }
    *ret_new = added;
    return r;
}

static int s_add_proc(dump_tree_t *tree, pid_t pid, pid_t parent, cairn_error_t *err)
{
    for (size_t i = 0; i < tree->np; i++)
        if (tree->p[i].pid == pid)
            return 0;
    dump_proc_t *np = realloc(tree->p, (tree->np + 1) * sizeof(*np));
    if (!np)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    tree->p = np;
    memset(&tree->p[tree->np], 0, sizeof(dump_proc_t));
    tree->p[tree->np].pid = pid;
    tree->p[tree->np].parent = parent;
    tree->np++;
    return 0;
}

/* One pass: seize new threads everywhere and add new children. Returns the
 * number of new threads and processes in *ret_changes. */
static int s_freeze_pass(dump_tree_t *tree, size_t *ret_changes, cairn_error_t *err)
{
    size_t changes = 0;
    for (size_t i = 0; i < tree->np; i++) {
        size_t added = 0;
        int r = s_seize_new_threads(&tree->p[i], &added, err);
        if (r < 0)
            return r;
        changes += added;
        pid_t *ch = NULL;
        size_t nc = 0, before = tree->np;
        r = proc_list_children(tree->p[i].pid, &ch, &nc, err);
        for (size_t j = 0; r == 0 && j < nc; j++)
            r = s_add_proc(tree, ch[j], tree->p[i].pid, err);
        free(ch);
        if (r < 0)
            return r;
        changes += tree->np - before;
    }
    *ret_changes = changes;
    return 0;
}

int seize_freeze(dump_tree_t *tree, pid_t root, cairn_error_t *err)
{
    int r = s_add_proc(tree, root, 0, err);
    for (int pass = 0; r == 0; pass++) {
        size_t changes = 0;
        r = s_freeze_pass(tree, &changes, err);
        if (r == 0 && changes == 0)
            return 0;
        if (r == 0 && pass > 1000)
            r = cairn_error_set(err, -EAGAIN, CAIRN_BUSY,
                                "tree of %d keeps creating threads or processes", (int)root);
    }
    return r;
}

/* ---- dump: syscall injection ------------------------------------------- */

/* Waits for tid's next syscall stop. A thread of a stopped process (job
 * control: SIGSTOP, SIGTSTP, ...) reports its group stop again when it
 * is resumed (PTRACE_EVENT_STOP): it is resumed once more, the stop
 * stays the process's and comes back when it is detached. */
static int s_wait_syscall_stop(pid_t tid, cairn_error_t *err)
{
    for (;;) {
        int st;
        pid_t w;
        while ((w = waitpid(tid, &st, __WALL)) < 0 && errno == EINTR)
            ;
        if (w < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "waitpid %d: %s", (int)tid,
                                   strerror(errno));
        if (!WIFSTOPPED(st))
            return cairn_error_set(err, -ESRCH, CAIRN_INTERNAL,
                                   "thread %d died during an injected syscall", (int)tid);
        if (WSTOPSIG(st) == (SIGTRAP | 0x80))
            return 0;
        if ((st >> 16) != PTRACE_EVENT_STOP)
            return cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                                   "thread %d stopped by signal %d during an injected syscall",
                                   (int)tid, WSTOPSIG(st));
        if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_SYSCALL %d: %s",
                                   (int)tid, strerror(errno));
    }
}

/* Runs syscall nr(a[0..5]) in thread t; its result into *ret. Two stops
 * (syscall entry and exit): single-stepping the syscall instruction would
 * take one, but the kernel reports the step with a forced SIGTRAP, and
 * forcing a blocked or ignored signal resets its disposition to SIG_DFL
 * for the whole process -- every signal is blocked here. */
int seize_inject(const dump_proc_t *p, dump_thread_t *t, long nr, const uint64_t a[6],
                 int64_t *ret, cairn_error_t *err)
{
    if (!p->vdso_syscall)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d has no vdso syscall instruction to borrow",
                               (int)p->pid);
    struct user_regs_struct r = t->regs;
    r.rip = p->vdso_syscall;
    r.rax = (uint64_t)nr;
    r.orig_rax = (uint64_t)-1;
    r.rdi = a[0], r.rsi = a[1], r.rdx = a[2], r.r10 = a[3], r.r8 = a[4], r.r9 = a[5];
    t->injected = true;
    if (ptrace(PTRACE_SETREGS, t->tid, 0, &r) < 0 ||
        ptrace(PTRACE_SYSCALL, t->tid, 0, 0) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "injecting into %d: %s",
                               (int)t->tid, strerror(errno));
    int rc = s_wait_syscall_stop(t->tid, err);   /* entry */
    if (rc == 0 && ptrace(PTRACE_SYSCALL, t->tid, 0, 0) < 0)
        rc = cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_SYSCALL %d: %s",
                             (int)t->tid, strerror(errno));
    if (rc == 0)
        rc = s_wait_syscall_stop(t->tid, err);   /* exit */
    if (rc == 0 && ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0)
        rc = cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_GETREGS %d: %s",
                             (int)t->tid, strerror(errno));
    if (rc == 0)
        *ret = (int64_t)r.rax;
    return rc;
}

/* seize_inject whose syscall must succeed (its error says which); its result
 * into *ret when ret is not NULL. */
int seize_inject_ok(const dump_proc_t *p, dump_thread_t *t, long nr, const uint64_t a[6],
                    const char *what, int64_t *ret, cairn_error_t *err)
{
    int64_t res = 0;
    int r = seize_inject(p, t, nr, a, &res, err);
    if (r == 0 && res < 0 && res > -4096)
        r = cairn_error_set(err, (int)res, CAIRN_SYSTEM, "%s in thread %d failed: %s",
                            what, (int)t->tid, strerror((int)-res));
    if (r == 0 && ret)
        *ret = res;
    return r;
}

int seize_peek(pid_t pid, uint64_t addr, void *dst, size_t len, cairn_error_t *err)
{
    struct iovec l = { dst, len }, rv = { (void *)(uintptr_t)addr, len };
    ssize_t k = process_vm_readv(pid, &l, 1, &rv, 1, 0);
    if (k != (ssize_t)len)
        return cairn_error_set(err, k < 0 ? -errno : -EIO, CAIRN_SYSTEM,
                               "cannot read %zu bytes at %#llx in %d", len,
                               (unsigned long long)addr, (int)pid);
    return 0;
}

static int s_poke(pid_t pid, uint64_t addr, const void *src, size_t len, cairn_error_t *err)
{
    struct iovec l = { (void *)src, len }, rv = { (void *)(uintptr_t)addr, len };
    ssize_t k = process_vm_writev(pid, &l, 1, &rv, 1, 0);
    if (k != (ssize_t)len)
        return cairn_error_set(err, k < 0 ? -errno : -EIO, CAIRN_SYSTEM,
                               "cannot write %zu bytes at %#llx in %d", len,
                               (unsigned long long)addr, (int)pid);
    return 0;
}

/* Runs syscall nr(a) in thread t, which writes its answer into the
 * thread's scratch area, and copies len bytes of that answer into dst. */
int seize_inject_read(const dump_proc_t *p, dump_thread_t *t, long nr, const uint64_t a[6],
                      const char *what, void *dst, size_t len, cairn_error_t *err)
{
    int r = seize_inject_ok(p, t, nr, a, what, NULL, err);
    return r < 0 ? r : seize_peek(t->tid, t->scratch, dst, len, err);
}

/* Prepares a thread for injection: registers and mask saved, all signals
 * blocked, scratch bytes saved. */
int seize_prepare_thread(dump_thread_t *t, cairn_error_t *err)
{
    if (ptrace(PTRACE_GETREGS, t->tid, 0, &t->regs) < 0 ||
        ptrace(PTRACE_GETSIGMASK, t->tid, (void *)sizeof(uint64_t), &t->sigmask) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "reading thread %d: %s",
                               (int)t->tid, strerror(errno));
    if (t->regs.cs != 0x33)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "thread %d is not in 64-bit mode (cs %#llx)", (int)t->tid,
                               (unsigned long long)t->regs.cs);
    uint64_t all = ~0ull;
    if (ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(uint64_t), &all) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "blocking signals of %d: %s",
                               (int)t->tid, strerror(errno));
    t->mask_set = true;
    t->scratch = ((t->regs.rsp - 1024) & ~63ull);
    int r = seize_peek(t->tid, t->scratch, t->scratch_orig, DUMP_SCRATCH, err);
    if (r == 0)
        t->scratch_saved = true;
    return r;
}

/* Finds a `syscall` (0f 05) in the process's vdso. */
int seize_find_vdso_syscall(dump_proc_t *p, const proc_vmas_t *vm, cairn_error_t *err)
{
    for (size_t i = 0; i < vm->n; i++) {
        const proc_vma_t *v = &vm->v[i];
        if (strcmp(v->path, "[vdso]") != 0 || v->end - v->start > (1u << 20))
            continue;
        size_t len = v->end - v->start;
        uint8_t *b = malloc(len);
        if (!b)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        int r = seize_peek(p->pid, v->start, b, len, err);
        for (size_t k = 0; r == 0 && k + 1 < len; k++)
            if (b[k] == 0x0f && b[k + 1] == 0x05) {
                p->vdso_syscall = v->start + k;
                break;
            }
        free(b);
        return r;
    }
    return 0;
}

/* ---- dump: release ----------------------------------------------------- */

/* Puts a thread back as it was and detaches it. */
static int s_release_thread(dump_thread_t *t, cairn_error_t *err)
{
    int r = 0;
    if (t->scratch_saved && s_poke(t->tid, t->scratch, t->scratch_orig, DUMP_SCRATCH, err) < 0)
        r = -EIO;
    if (t->injected) {
        struct user_regs_struct rr = t->regs;
        sig_restart_injected(&rr);
        if (ptrace(PTRACE_SETREGS, t->tid, 0, &rr) < 0)
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "restoring registers of %d: %s",
                                (int)t->tid, strerror(errno));
    }
    if (t->mask_set &&
        ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(uint64_t), &t->sigmask) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "restoring sigmask of %d: %s",
                            (int)t->tid, strerror(errno));
    if (t->seized && ptrace(PTRACE_DETACH, t->tid, 0, 0) < 0 && errno != ESRCH)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "detaching %d: %s", (int)t->tid,
                            strerror(errno));
    t->seized = t->stopped = t->injected = t->mask_set = t->scratch_saved = false;
    return r;
}

/* Detaches everything; true if every thread is back to running. */
bool seize_release_all(dump_tree_t *tree)
{
    bool ok = true;
    for (size_t i = 0; i < tree->np; i++)
        for (size_t j = 0; j < tree->p[i].nt; j++) {
            cairn_error_t e;
            if (s_release_thread(&tree->p[i].t[j], &e) < 0)
                ok = false;
        }
    return ok;
}

void seize_kill_all(dump_tree_t *tree)
{
    for (size_t i = 0; i < tree->np; i++)
        kill(tree->p[i].pid, SIGKILL);
    for (size_t i = 0; i < tree->np; i++)
        for (size_t j = 0; j < tree->p[i].nt; j++)
            tree->p[i].t[j].seized = false;
}

void seize_tree_free(dump_tree_t *tree)
{
    for (size_t i = 0; i < tree->np; i++) {
        free(tree->p[i].t);
        proc_vmas_free(&tree->p[i].vm);
    }
    free(tree->p);
    *tree = (dump_tree_t){ 0 };
}

/* ---- restore: the restorer's region ------------------------------------ */

/* Runs one syscall in a held thread through the blob's gadget, with all
 * signals blocked, then puts its registers back. */
int seize_inject_munmap(pid_t tid, uint64_t start, uint64_t len,
                        uint64_t gadget, uint64_t mask, cairn_error_t *err)
{
    struct user_regs_struct saved, r;
    uint64_t all = ~0ull;
    int status, ret = 0;

    if (ptrace(PTRACE_GETREGS, tid, 0, &saved) < 0 ||
        ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &all) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "ptrace(%d): %s",
                               tid, strerror(errno));
    r = saved;
    r.rip = gadget;
    r.rax = SYS_munmap;
    r.rdi = start;
    r.rsi = len;
    r.orig_rax = (unsigned long long)-1;
    ptrace(PTRACE_SETREGS, tid, 0, &r);
    for (int step = 0; step < 2 && ret == 0; step++) {
        if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0 ||
            waitpid(tid, &status, __WALL) != tid || !WIFSTOPPED(status) ||
            WSTOPSIG(status) != (SIGTRAP | 0x80))
            ret = cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                                  "unmapping the restorer in %d: unexpected "
                                  "stop %#x", tid, status);
    }
    if (ret == 0) {
        ptrace(PTRACE_GETREGS, tid, 0, &r);
        if ((long long)r.rax < 0)
            ret = cairn_error_set(err, (int)r.rax, CAIRN_SYSTEM,
                                  "unmapping the restorer: %s",
                                  strerror((int)-r.rax));
    }
    if (ret == 0 && (ptrace(PTRACE_SETREGS, tid, 0, &saved) < 0 ||
                     ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &mask) < 0))
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "ptrace(%d): %s",
                              tid, strerror(errno));
    return ret;
}

/* ---- restore: the trace of a restored tree ----------------------------- */

void seize_trace_free(seize_trace_t *tr)
{
    free(tr->tids);
    free(tr->st);
    *tr = (seize_trace_t){ 0 };
}

/* The slot of tid, added if new; -1 on ENOMEM. */
static ssize_t s_tslot(seize_trace_t *tr, pid_t tid)
{
    for (size_t i = 0; i < tr->n; i++)
        if (tr->tids[i] == tid)
            return (ssize_t)i;
    size_t cap = tr->cap, cap_st = tr->cap;   /* the two grow alike */
    if (CAIRN_GROW(tr->tids, cap, tr->n + 1, 64) < 0 ||
        CAIRN_GROW(tr->st, cap_st, tr->n + 1, 64) < 0)
        return -1;
    tr->cap = cap;
    tr->tids[tr->n] = tid;
    tr->st[tr->n] = SEIZE_RUNNING;
    return (ssize_t)tr->n++;
}

/* One wait for any task of ours: 0 and the task, -EAGAIN after a short
 * sleep with nothing to report (so the caller can poll its pipes),
 * -ETIMEDOUT past the deadline, -ECHILD when no task is left. */
int seize_wait(pid_t *ret_tid, int *ret_status, uint64_t deadline_ms, int wake_fd)
{
    struct timespec left = { 0, 5000000 };
    sigset_t chld;
    pid_t w;

    w = waitpid(-1, ret_status, __WALL | WNOHANG);
    if (w > 0) {
        *ret_tid = w;
        return 0;
    }
    if (w < 0 && errno != EINTR)
        return -errno;
    uint64_t now_ms = cairn_now_ms();
    if (now_ms >= deadline_ms)
        return -ETIMEDOUT;
    if (deadline_ms - now_ms < 5)
        left.tv_nsec = (long)(deadline_ms - now_ms) * 1000000;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    /* Woken by SIGCHLD or by wake_fd (the restore's barrier pipe: a byte
     * there is no signal, and each wait for it cost up to the 5 ms). */
    int sfd = wake_fd >= 0 ? signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK) : -1;
    if (sfd < 0) {
        sigtimedwait(&chld, NULL, &left);
        return -EAGAIN;
    }
    struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { wake_fd, POLLIN, 0 } };
    struct signalfd_siginfo si;
    if (poll(pf, 2, (int)(left.tv_nsec / 1000000)) > 0 && pf[0].revents)
        (void)!read(sfd, &si, sizeof(si));   /* taken, as sigtimedwait would */
    close(sfd);
    return -EAGAIN;
}

/* One ptrace stop of a restored thread, until it is held past its
 * rt_sigreturn. Fork/clone events and the first stop of a new task are
 * let through; a signal-delivery stop other than the blob's SIGSTOP is
 * delivered. */
int seize_on_stop(seize_trace_t *tr, pid_t tid, int status, cairn_error_t *err)
{
    ssize_t i = s_tslot(tr, tid);
    int sig = WSTOPSIG(status), event = status >> 16;

    if (i < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (event) {
        ptrace(PTRACE_CONT, tid, 0, 0);
        return 0;
    }
    if (sig == SIGSTOP && tr->st[i] == SEIZE_RUNNING) {
        tr->st[i] = SEIZE_IN_SIGRETURN;
        ptrace(PTRACE_SYSCALL, tid, 0, 0);   /* to rt_sigreturn's entry */
        return 0;
    }
    if (sig == (SIGTRAP | 0x80) && tr->st[i] == SEIZE_IN_SIGRETURN) {
        struct user_regs_struct r;
        ptrace(PTRACE_GETREGS, tid, 0, &r);
        if (r.orig_rax == SYS_rt_sigreturn && r.rax == (unsigned long long)-ENOSYS) {
            ptrace(PTRACE_SYSCALL, tid, 0, 0);   /* to its exit */
            return 0;
        }
        tr->st[i] = SEIZE_HELD;
        tr->held++;
        return 0;
    }
    ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig);
    return 0;
}

/* Process p is to come back stopped: each of its threads that was inside
 * a blocking call is taken to that call's entry first, so that the
 * SIGSTOP queued next stops it inside the call, as it was -- and a
 * handled signal sent while it is stopped interrupts the call on SIGCONT
 * (EINTR, or a restart with SA_RESTART) instead of running before the
 * call starts anew. Only where nothing could come in between: no pending
 * signal of the image (it would be delivered on the way). */
int seize_enter_interrupted(const rst_tree_t *t, const seize_trace_t *tr, size_t p,
                            cairn_error_t *err)
{
    const rst_proc_t *pr = &t->im->procs[p];
    char path[64];

    if (pr->process->process->n_shared_pending)
        return 0;
    for (size_t i = 0; i < tr->n; i++) {
        pid_t tid = tr->tids[i];
        struct user_regs_struct r;
        const Cairn__Ghost__Thread *th;
        bool reenters = false;
        int status = 0;

        snprintf(path, sizeof path, "/proc/%d/task/%d", (int)ns_host_pid(t, p), (int)tid);
        if (access(path, F_OK) < 0 || ptrace(PTRACE_GETREGS, tid, 0, &r) < 0)
            continue;   /* another process's thread */
        th = threads_image_thread(pr, &r, &reenters);
        if (!th || th->n_pending || !reenters)
            continue;
        if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0 ||
            waitpid(tid, &status, __WALL) != tid || !WIFSTOPPED(status))
            return cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                                   "taking stopped thread %d back into its call: "
                                   "status %#x", (int)tid, status);
        /* A signal sent to it meanwhile stops it first: queued again (the
         * stop took it off), it is delivered once the thread is let go. */
        if (WSTOPSIG(status) != (SIGTRAP | 0x80) && (status >> 16) == 0)
            syscall(SYS_tgkill, ns_host_pid(t, p), tid, WSTOPSIG(status));
    }
    return 0;
}
