/* signals.c - signal state, both directions, and the one copy of the
 * kernel's syscall-restart rules.
 *
 * Dump side. Only the task can tell a handler's flags, mask and restorer,
 * and its itimers: they are read by injected syscalls (seize.c); pending
 * signals come from PTRACE_PEEKSIGINFO, the thread's own queue and the
 * process's.
 *
 * Restore side. Pending signals are re-queued and itimers set by the
 * restorer from the argument block; handlers are installed by the child's
 * libc stage with the target's own sa_restorer.
 *
 * Restart. A thread interrupted inside a syscall carries -ERESTART* in
 * rax. An injected thread resumes from a syscall-exit stop, where the
 * kernel no longer applies its -ERESTART* logic: the dump applies it to
 * the registers it puts back (re-execute, or restart_syscall for
 * ERESTART_RESTARTBLOCK). The image keeps the registers exactly as the
 * interrupt found them, with syscall_nr/syscall_ret, and the restore
 * decides (sig_fix_restart), knowing which handler the thread will run
 * first as it resumes.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <unistd.h>

#include "seize.h"
#include "signals.h"

/* The kernel's restart codes (include/linux/errno.h, not exported). */
#define S_ERESTARTSYS 512
#define S_ERESTARTNOINTR 513
#define S_ERESTARTNOHAND 514
#define S_ERESTART_RESTARTBLOCK 516
#define S_NSIG 64

/* ---- dump -------------------------------------------------------------- */

/* Every signal's disposition. Only the task can tell a handler's flags,
 * mask and restorer (an injected rt_sigaction each), but /proc says which
 * signals are caught or ignored: the others are SIG_DFL, recorded so
 * without asking (the kernel ignores a default action's flags and mask,
 * and execve clears them) -- but for SIGCHLD, whose SA_NOCLDSTOP and
 * SA_NOCLDWAIT matter even then. 64 injections were most of a small
 * dump's fixed cost. */
int sig_collect_sigactions(const dump_proc_t *p, dump_thread_t *t, const proc_status_t *st,
                           Cairn__Ghost__Process *pr, cairn_error_t *err)
{
    uint64_t ask = st->has_sig ? st->sig_ign | st->sig_cgt | (1ull << (SIGCHLD - 1)) : ~0ull;
    pr->sigactions = calloc(S_NSIG, sizeof(*pr->sigactions));
    if (!pr->sigactions)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (int sig = 1; sig <= S_NSIG; sig++) {
        uint64_t a[6] = { (uint64_t)sig, 0, t->scratch, 8, 0, 0 }, k[4] = { 0 };
        int r = (ask >> (sig - 1)) & 1
                    ? seize_inject_read(p, t, SYS_rt_sigaction, a, "rt_sigaction", k, sizeof(k), err)
                    : 0;
        if (r < 0)
            return r;
        Cairn__Ghost__SigAction *sa = malloc(sizeof(*sa));
        if (!sa)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        cairn__ghost__sig_action__init(sa);
        sa->signo = (uint32_t)sig;
        sa->handler = k[0], sa->flags = k[1], sa->restorer = k[2], sa->mask = k[3];
        pr->sigactions[pr->n_sigactions++] = sa;
    }
    return 0;
}

int sig_collect_itimers(const dump_proc_t *p, dump_thread_t *t, Cairn__Ghost__Process *pr,
                        cairn_error_t *err)
{
    pr->itimers = calloc(3, sizeof(*pr->itimers));
    if (!pr->itimers)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (int which = 0; which < 3; which++) {
        uint64_t a[6] = { (uint64_t)which, t->scratch, 0, 0, 0, 0 }, tv[4];
        int r = seize_inject_read(p, t, SYS_getitimer, a, "getitimer", tv, sizeof(tv), err);
        if (r < 0)
            return r;
        Cairn__Ghost__Itimer *it = malloc(sizeof(*it));
        if (!it)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        cairn__ghost__itimer__init(it);
        it->which = (uint32_t)which;
        it->interval_ns = tv[0] * 1000000000ull + tv[1] * 1000ull;
        it->value_ns = tv[2] * 1000000000ull + tv[3] * 1000ull;
        pr->itimers[pr->n_itimers++] = it;
    }
    return 0;
}

/* Pending signals of tid: the thread's own, or (shared) the process's. */
int sig_collect_pending(pid_t tid, bool shared, Cairn__Ghost__SigInfo ***ret,
                        size_t *ret_n, cairn_error_t *err)
{
    Cairn__Ghost__SigInfo **v = NULL;
    size_t n = 0;
    for (;;) {
        struct { uint64_t off; uint32_t flags; int32_t nr; } arg = {
            n, shared ? PTRACE_PEEKSIGINFO_SHARED : 0, 1 };
        uint8_t si[128];
        long k = ptrace(PTRACE_PEEKSIGINFO, tid, &arg, si);
        if (k < 0) {
            free(v);
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_PEEKSIGINFO %d: %s",
                                   (int)tid, strerror(errno));
        }
        if (k == 0)
            break;
        Cairn__Ghost__SigInfo **nv = realloc(v, (n + 1) * sizeof(*nv));
        Cairn__Ghost__SigInfo *s = malloc(sizeof(*s));
        uint8_t *raw = malloc(sizeof(si));
        if (!nv || !s || !raw) {
            free(nv ? nv : v);
            free(s);
            free(raw);
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        }
        v = nv;
        cairn__ghost__sig_info__init(s);
        memcpy(raw, si, sizeof(si));
        s->raw.data = raw;
        s->raw.len = sizeof(si);
        v[n++] = s;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

void sig_free_pending(Cairn__Ghost__SigInfo **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]->raw.data);
        free(v[i]);
    }
    free(v);
}

void sig_free_process(Cairn__Ghost__Process *pr)
{
    for (size_t i = 0; i < pr->n_sigactions; i++)
        free(pr->sigactions[i]);
    free(pr->sigactions);
    for (size_t i = 0; i < pr->n_itimers; i++)
        free(pr->itimers[i]);
    free(pr->itimers);
    for (size_t i = 0; i < pr->n_shared_pending; i++) {
        free(pr->shared_pending[i]->raw.data);
        free(pr->shared_pending[i]);
    }
    free(pr->shared_pending);
}

/* The -ERESTART* logic the kernel would have applied had we not run
 * anything. */
void sig_restart_injected(struct user_regs_struct *r)
{
    if ((int64_t)r->orig_rax < 0)
        return;
    int64_t ret = (int64_t)r->rax;
    if (ret == -S_ERESTARTSYS || ret == -S_ERESTARTNOINTR || ret == -S_ERESTARTNOHAND) {
        r->rax = r->orig_rax;
        r->rip -= 2;
    } else if (ret == -S_ERESTART_RESTARTBLOCK) {
        r->rax = SYS_restart_syscall;
        r->rip -= 2;
    }
}

/* ---- restore: how an interrupted call resumes -------------------------- */

/* The interrupted syscall of a thread and its return value then (-1, 0
 * if it was in none). */
static long long s_interrupted(const struct user_regs_struct *r, const Cairn__Ghost__Thread *t,
                               long long *ret_val)
{
    *ret_val = t->syscall_nr >= 0 ? t->syscall_ret : (long long)r->rax;
    return t->syscall_nr >= 0 ? t->syscall_nr : (long long)r->orig_rax;
}

/* ERESTART_RESTARTBLOCK means "continue with what the kernel kept in the
 * task" (restart_syscall), which a new task does not have. Where running
 * the syscall again from its registers is right or harmless, it is run
 * again: poll and a futex wait (a program without signal handlers does
 * not expect EINTR from them -- `tail -f` dies on it -- and may wait up to
 * one timeout longer), and clock_nanosleep to an absolute time. A
 * relative sleep returns EINTR, as issue 4 asks: the kernel wrote the time
 * left into its remainder when the dump interrupted it (running it again
 * would sleep it all over). */
#define S_NR_POLL 7
#define S_NR_FUTEX 202
#define S_NR_CLOCK_NANOSLEEP 230
#define S_TIMER_ABSTIME 1
static bool s_rerun_restartblock(long long nr, const struct user_regs_struct *r)
{
    return nr == S_NR_POLL || nr == S_NR_FUTEX ||
           (nr == S_NR_CLOCK_NANOSLEEP && (r->rsi & S_TIMER_ABSTIME));
}

/* The number of a pending signal record (0 if it is not one). */
static int s_pending_signo(const Cairn__Ghost__SigInfo *si)
{
    int32_t signo = 0;
    if (si->raw.len >= sizeof signo)
        memcpy(&signo, si->raw.data, sizeof signo);
    return signo >= 1 && signo <= 64 ? signo : 0;
}

static uint64_t s_sigbit(int sig)
{
    return 1ull << (sig - 1);
}

/* The signals the kernel takes first from a queue (its SYNCHRONOUS_MASK):
 * those a fault raises. */
#define S_SYNC_SIGNALS                                                             \
    (s_sigbit(SIGSEGV) | s_sigbit(SIGBUS) | s_sigbit(SIGILL) | s_sigbit(SIGTRAP) | \
     s_sigbit(SIGFPE) | s_sigbit(SIGSYS))

/* Of the signals in set, the one the kernel dequeues first: a synchronous
 * one, else the lowest; 0 if set is empty. */
static int s_first_dequeued(uint64_t set)
{
    uint64_t pick = set & S_SYNC_SIGNALS ? set & S_SYNC_SIGNALS : set;
    return pick ? __builtin_ctzll(pick) + 1 : 0;
}

static const Cairn__Ghost__SigAction *s_sigaction(const Cairn__Ghost__Process *p, int sig)
{
    for (size_t i = 0; i < p->n_sigactions; i++)
        if (p->sigactions[i]->signo == (uint32_t)sig)
            return p->sigactions[i];
    return NULL;   /* SIG_DFL */
}

/* Whether the thread goes on to its next pending signal after sig with
 * action act (NULL: SIG_DFL) is dequeued without a handler: it is
 * ignored, or its default is to ignore or to stop (and the thread, once
 * continued, dequeues the next). Otherwise the process dies of it. */
static bool s_dequeued_and_passed(int sig, const Cairn__Ghost__SigAction *act)
{
    if (act && act->handler == (uint64_t)(uintptr_t)SIG_IGN)
        return true;
    return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT ||
           proc_stop_signal(sig);
}

/* The image's pending signals in v that thread t does not block; of the
 * process-wide ones (shared), only those t is the one thread of pr not
 * blocking: the kernel gives such a signal to that thread, and which of
 * several would take it cannot be told. */
static uint64_t s_pending_for(const rst_proc_t *pr, const Cairn__Ghost__Thread *t,
                              Cairn__Ghost__SigInfo *const *v, size_t n, bool shared)
{
    uint64_t set = 0;
    for (size_t i = 0; i < n; i++) {
        int sig = s_pending_signo(v[i]);
        if (!sig || (t->sigmask & s_sigbit(sig)))
            continue;
        bool alone = true;
        for (size_t k = 0; shared && alone && k < pr->threads.n; k++) {
            const Cairn__Ghost__Thread *o = pr->threads.v[k]->thread;
            alone = o == t || (o->sigmask & s_sigbit(sig));
        }
        if (alone)
            set |= s_sigbit(sig);
    }
    return set;
}

/* The sa_flags of the handler the kernel will run first for thread t of
 * process pr as it resumes, taking the image's pending signals in the
 * kernel's order (its own queue, then the process's); -1 if no handler
 * will run before it returns to its code. */
static long long s_handler_on_resume(const rst_proc_t *pr, const Cairn__Ghost__Thread *t)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    uint64_t queues[2] = {
        s_pending_for(pr, t, t->pending, t->n_pending, false),
        s_pending_for(pr, t, p->shared_pending, p->n_shared_pending, true),
    };
    for (int q = 0; q < 2; q++)
        for (int sig; (sig = s_first_dequeued(queues[q])) != 0; queues[q] &= ~s_sigbit(sig)) {
            const Cairn__Ghost__SigAction *act = s_sigaction(p, sig);
            if (act && act->handler > (uint64_t)(uintptr_t)SIG_IGN)
                return (long long)act->flags;
            if (!s_dequeued_and_passed(sig, act))
                return -1;
        }
    return -1;
}

/* Registers of thread t of process pr as it must resume: a syscall
 * interrupted by the dump is re-executed, or returns EINTR if it cannot
 * be. Where a pending signal of the image will run a handler as the
 * thread resumes, the call returns as the kernel makes it return to a
 * handler: EINTR, or re-executed for ERESTARTNOINTR and, with SA_RESTART,
 * ERESTARTSYS -- re-executing it after the handler instead would wait
 * again in a pause() or sigsuspend() that the signal was to end. */
void sig_fix_restart(struct user_regs_struct *r, const rst_proc_t *pr,
                     const Cairn__Ghost__Thread *t)
{
    long long ret, nr = s_interrupted(r, t, &ret);
    bool restart;

    if (nr < 0)
        return;
    long long handled = s_handler_on_resume(pr, t);
    switch (-ret) {
    case S_ERESTARTSYS:
        restart = handled < 0 || (handled & SA_RESTART);
        break;
    case S_ERESTARTNOINTR:
        restart = true;
        break;
    case S_ERESTARTNOHAND:
        restart = handled < 0;
        break;
    case S_ERESTART_RESTARTBLOCK:
        restart = handled < 0 && s_rerun_restartblock(nr, r);
        break;
    default:
        return;
    }
    if (restart) {
        r->rax = (unsigned long long)nr;
        r->rip -= 2;
    } else {
        r->rax = (unsigned long long)-EINTR;
    }
}

/* ---- restore: pending signals, itimers, handlers ----------------------- */

static int s_sigq_add(rst_plan_t *pl, const Cairn__Ghost__SigInfo *si,
                      int32_t thread, cairn_error_t *err)
{
    struct gr_sigq *q = &pl->args->sigq[pl->args->n_sigq];
    int32_t signo;

    if (si->raw.len != sizeof q->info)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: pending siginfo of %zu bytes",
                               si->raw.len);
    memcpy(q->info, si->raw.data, sizeof q->info);
    memcpy(&signo, si->raw.data, sizeof signo);
    if (signo < 1 || signo > 64)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: pending signal %d", signo);
    q->signo = signo;
    q->thread = thread;
    pl->args->n_sigq++;
    return 0;
}

int sig_plan_pending(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    struct gr_args *a = pl->args;
    size_t n = p->n_shared_pending;
    int ret = 0;

    for (size_t i = 0; i < pr->threads.n; i++)
        n += pr->threads.v[i]->thread->n_pending;
    a->sigq = rst_alloc(pl, (n + 1) * sizeof *a->sigq, 64);
    if (!a->sigq)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0, k = 1; i < pr->threads.n && ret == 0; i++) {
        const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
        int32_t slot = t->leader ? 0 : (int32_t)k++;   /* as threads_plan */
        for (size_t j = 0; j < t->n_pending && ret == 0; j++)
            ret = s_sigq_add(pl, t->pending[j], slot + 1, err);
    }
    for (size_t i = 0; i < p->n_shared_pending && ret == 0; i++)
        ret = s_sigq_add(pl, p->shared_pending[i], 0, err);
    return ret;
}

int sig_plan_itimers(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    struct gr_args *a = pl->args;

    a->itimers = rst_alloc(pl, (p->n_itimers + 1) * sizeof *a->itimers, 64);
    if (!a->itimers)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < p->n_itimers; i++) {
        const Cairn__Ghost__Itimer *t = p->itimers[i];
        if (!t->value_ns)
            continue;
        a->itimers[a->n_itimers++] = (struct gr_itimer){
            .which = (int32_t)t->which,
            .interval_sec = (int64_t)(t->interval_ns / 1000000000ull),
            .interval_usec = (int64_t)(t->interval_ns % 1000000000ull / 1000),
            .value_sec = (int64_t)(t->value_ns / 1000000000ull),
            .value_usec = (int64_t)((t->value_ns % 1000000000ull + 999) / 1000) };
    }
    return 0;
}

/* Handlers, with the target's own sa_restorer: through the raw syscall,
 * as the kernel stores them. */
void sig_child_sigactions(const rst_plan_t *pl, const Cairn__Ghost__Process *p)
{
    for (size_t i = 0; i < p->n_sigactions; i++) {
        const Cairn__Ghost__SigAction *s = p->sigactions[i];
        uint64_t ksa[4] = { s->handler, s->flags, s->restorer, s->mask };
        if (s->signo == SIGKILL || s->signo == SIGSTOP)
            continue;
        if (syscall(SYS_rt_sigaction, s->signo, ksa, NULL, 8) < 0)
            rst_child_fail(pl, errno, 0, "rt_sigaction(%u): %s", s->signo,
                           strerror(errno));
    }
}
