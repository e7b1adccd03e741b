/* threads.c - the threads of a process, both directions.
 *
 * Dump side. Registers and sigmask come from the freeze (seize.c); xsave,
 * rseq configuration, robust list and pending signals from ptrace and
 * syscalls on the stopped thread; what only the thread knows (its
 * altstack, its clear-tid address) from injected syscalls. The registers
 * are kept exactly as the interrupt found them, with syscall_nr and
 * syscall_ret: the restore decides how the call resumes (signals.c).
 *
 * Restore side. Each thread enters its code through an rt_sigreturn: the
 * plan writes one kernel rt_sigframe per thread into the region (its
 * ucontext with registers, mask and altstack, then an xsave area with the
 * software bytes and magics the kernel checks), after checking the
 * image's xsave against this CPU's size and enabled features.
 */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include "mem.h"
#include "procstate.h"
#include "seize.h"
#include "signals.h"
#include "threads.h"
#include "verify.h"

#define S_XSAVE_MAX (64u * 1024u)
#define S_FPX_MAGIC1 0x46505853u
#define S_FPX_MAGIC2 0x46505845u
#define S_XSAVE_MIN 576u
#define S_USER_CS 0x33
#define S_USER_DS 0x2b
#define S_SS_AUTODISARM (1u << 31)

/* ---- dump -------------------------------------------------------------- */

/* Buffers owned by a thread record under construction. */
typedef struct s_tbufs {
    uint8_t xsave[S_XSAVE_MAX];
    Cairn__Ghost__Rseq rseq;
    procstate_thread_t state;   /* th->state points into it */
} s_tbufs_t;

static int s_collect_thread_ptrace(dump_thread_t *t, Cairn__Ghost__Thread *th, s_tbufs_t *b,
                                   cairn_error_t *err)
{
    struct iovec xs = { b->xsave, sizeof(b->xsave) };
    if (ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_X86_XSTATE, &xs) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "xsave of %d: %s", (int)t->tid,
                               strerror(errno));
    th->xsave.data = b->xsave;
    th->xsave.len = xs.iov_len;
    struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
    if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->tid, (void *)sizeof(rs), &rs) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "rseq of %d: %s", (int)t->tid,
                               strerror(errno));
    cairn__ghost__rseq__init(&b->rseq);
    b->rseq.addr = rs.ptr, b->rseq.len = rs.size, b->rseq.signature = rs.sig;
    th->rseq = &b->rseq;
    t->rseq = rs.ptr, t->rseq_len = rs.size;   /* post-copy: lazy_hot_pages */
    uint64_t head = 0;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t->tid, &head, &len) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "robust list of %d: %s",
                               (int)t->tid, strerror(errno));
    th->robust_list = head, th->robust_list_len = len;
    return sig_collect_pending(t->tid, false, &th->pending, &th->n_pending, err);
}

static int s_collect_thread(dump_proc_t *p, dump_thread_t *t, const dump_proc_t *up,
                            Cairn__Ghost__Thread *th, s_tbufs_t *b, cairn_error_t *err)
{
    th->tid = (uint32_t)t->vtid;   /* inside, for a job (ns.c) */
    th->leader = t->tid == p->pid;
    th->regs.data = (uint8_t *)&t->regs;
    th->regs.len = sizeof(t->regs);
    th->sigmask = t->sigmask;
    th->fs_base = t->regs.fs_base, th->gs_base = t->regs.gs_base;
    th->syscall_nr = (int64_t)t->regs.orig_rax < 0 ? -1 : (int64_t)t->regs.orig_rax;
    th->syscall_ret = th->syscall_nr < 0 ? 0 : (int64_t)t->regs.rax;
    uint64_t a[6] = { 0, t->scratch, 0, 0, 0, 0 }, ss[3];
    int r = seize_inject_read(p, t, SYS_sigaltstack, a, "sigaltstack", ss, sizeof(ss), err);
    if (r < 0)
        return r;
    th->altstack_sp = ss[0], th->altstack_flags = (int32_t)ss[1], th->altstack_size = ss[2];
    uint64_t b2[6] = { PR_GET_TID_ADDRESS, t->scratch, 0, 0, 0, 0 }, addr = 0;
    r = seize_inject_read(p, t, SYS_prctl, b2, "prctl(PR_GET_TID_ADDRESS)", &addr, sizeof(addr),
                          err);
    if (r < 0)
        return r;
    th->clear_tid_addr = addr;
    t->clear_tid = addr;
    r = procstate_collect_thread(p, t, up, &b->state, err);
    if (r < 0)
        return r;
    th->state = &b->state.st;
    return s_collect_thread_ptrace(t, th, b, err);
}

int threads_write(dump_ctx_t *c, dump_proc_t *p, cairn_error_t *err)
{
    s_tbufs_t *b = malloc(sizeof(*b));
    if (!b)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int r = 0;
    const dump_proc_t *up = NULL;   /* its parent, written before it */
    for (size_t i = 0; i < c->tree.np; i++)
        if (p->parent && c->tree.p[i].pid == p->parent)
            up = &c->tree.p[i];
    for (size_t i = 0; r == 0 && i < p->nt; i++) {
        Cairn__Ghost__Thread th = CAIRN__GHOST__THREAD__INIT;
        char comm[64];
        r = s_collect_thread(p, &p->t[i], up, &th, b, err);
        if (r == 0)
            r = ghost_verify_collect_thread(p->t[i].tid, comm, sizeof(comm), &th, err);
        if (r == 0) {
            Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
            rec.r_case = CAIRN__GHOST__RECORD__R_THREAD;
            rec.thread = &th;
            r = ghost_write_record(c->out.w, &rec, err);
        }
        sig_free_pending(th.pending, th.n_pending);
    }
    free(b);
    return r;
}

/* ---- restore ----------------------------------------------------------- */

static uint64_t s_xgetbv0(void)
{
    uint32_t lo, hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void s_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

/* The xsave sizes of this CPU: all of xcr0's features (CPUID 0xd.0 EBX),
 * and the standard-format size of those but the dynamic ones (CPUID
 * 0xd.i ECX bit 2, XFD: AMX tile data) -- the kernel's user size of a
 * process that did not ask for them (arch_prctl ARCH_REQ_XCOMP_PERM):
 * a sigframe that says more is restored as its legacy part only (x87 and
 * SSE; the AVX upper halves were lost on a CPU with AMX). */
static void s_xsave_sizes(rst_plan_t *pl)
{
    uint32_t r[4];

    s_cpuid(0xd, 0, r);
    pl->xsave_max = r[1];
    pl->xsave_user = S_XSAVE_MIN;
    pl->xdynamic = 0;
    for (uint32_t i = 2; i < 63; i++) {
        if (!(pl->xcr0 & (1ull << i)))
            continue;
        s_cpuid(0xd, i, r);
        if (r[2] & 4u) {
            pl->xdynamic |= 1ull << i;
            continue;
        }
        if (r[1] + r[0] > pl->xsave_user)
            pl->xsave_user = r[1] + r[0];
    }
}

uint64_t threads_frame_size(const rst_proc_t *pr, size_t i)
{
    const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
    return 1024 + RST_ALIGN(t->xsave.len + 4, 64);
}

/* The kernel's x86_64 struct sigcontext and struct ucontext. */
struct s_sigcontext {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t di, si, bp, bx, dx, ax, cx, sp, ip, flags;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2, fpstate;
    uint64_t reserved1[8];
};
struct s_ucontext {
    uint64_t flags, link;
    struct { uint64_t sp; int32_t flags; int32_t pad; uint64_t size; } stack;
    struct s_sigcontext mc;
    uint64_t sigmask;
};
_Static_assert(sizeof(struct s_sigcontext) == 256, "kernel sigcontext");
_Static_assert(sizeof(struct s_ucontext) == 304, "kernel ucontext");
#define S_UC_FP_XSTATE 0x1
#define S_UC_SIGCONTEXT_SS 0x2
#define S_UC_STRICT_RESTORE_SS 0x4

static int s_check_xsave(const rst_plan_t *pl, const Cairn__Ghost__Thread *t,
                         cairn_error_t *err)
{
    uint64_t bv;

    if (t->xsave.len < S_XSAVE_MIN || t->xsave.len > pl->xsave_max)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "thread %u: xsave area of %zu bytes, this CPU "
                               "uses %u", t->tid, t->xsave.len, pl->xsave_max);
    memcpy(&bv, t->xsave.data + 512, sizeof bv);
    if (bv & ~pl->xcr0)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "thread %u uses CPU state components %#llx "
                               "this CPU does not enable (xcr0 %#llx)",
                               t->tid, (unsigned long long)bv,
                               (unsigned long long)pl->xcr0);
    if (bv & pl->xdynamic)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "thread %u holds dynamic CPU state (components "
                               "%#llx: AMX tiles), which a restored process "
                               "has only once it asks for it: not restored",
                               t->tid, (unsigned long long)(bv & pl->xdynamic));
    return 0;
}

/* The bytes of t's xsave area a sigframe restores: up to this CPU's user
 * size (the dynamic parts beyond it are in their init state, checked). */
static uint32_t s_xsave_len(const rst_plan_t *pl, const Cairn__Ghost__Thread *t)
{
    return t->xsave.len < pl->xsave_user ? (uint32_t)t->xsave.len : pl->xsave_user;
}

/* The xsave area with the sigframe's software bytes and end magic. */
static uint64_t s_put_xsave(rst_plan_t *pl, const Cairn__Ghost__Thread *t)
{
    uint32_t len = s_xsave_len(pl, t);
    uint8_t *x = rst_alloc(pl, len + 4, 64);
    uint32_t magic2 = S_FPX_MAGIC2, u32;
    uint64_t u64 = pl->xcr0 & ~pl->xdynamic;

    if (!x)
        return 0;
    memcpy(x, t->xsave.data, len);
    memset(x + 464, 0, 48);
    u32 = S_FPX_MAGIC1;
    memcpy(x + 464, &u32, 4);
    u32 = len + 4;
    memcpy(x + 468, &u32, 4);
    memcpy(x + 472, &u64, 8);
    memcpy(x + 480, &len, 4);
    memcpy(x + len, &magic2, 4);
    return (uint64_t)(uintptr_t)x;
}

static void s_fill_sigcontext(struct s_sigcontext *mc,
                              const struct user_regs_struct *r)
{
    *mc = (struct s_sigcontext){
        .r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11,
        .r12 = r->r12, .r13 = r->r13, .r14 = r->r14, .r15 = r->r15,
        .di = r->rdi, .si = r->rsi, .bp = r->rbp, .bx = r->rbx,
        .dx = r->rdx, .ax = r->rax, .cx = r->rcx, .sp = r->rsp,
        .ip = r->rip, .flags = r->eflags, .cs = S_USER_CS, .ss = S_USER_DS,
    };
}

/* The rt_sigframe of one thread: pretcode, ucontext (registers, mask,
 * altstack, fpstate pointer), then the xsave area. Returns its address. */
static int s_put_frame(rst_plan_t *pl, const rst_proc_t *pr, const Cairn__Ghost__Thread *t,
                       uint64_t *ret_frame, cairn_error_t *err)
{
    struct user_regs_struct regs;
    uint8_t *frame;
    struct s_ucontext *uc;
    int ret;

    if (t->regs.len != sizeof regs)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: thread %u registers are %zu bytes, "
                               "not %zu", t->tid, t->regs.len, sizeof regs);
    ret = s_check_xsave(pl, t, err);
    if (ret < 0)
        return ret;
    memcpy(&regs, t->regs.data, sizeof regs);
    sig_fix_restart(&regs, pr, t);
    frame = rst_alloc(pl, 8 + sizeof *uc + 128, 64);
    if (!frame)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    uc = (struct s_ucontext *)(frame + 8);
    uc->flags = S_UC_FP_XSTATE | S_UC_SIGCONTEXT_SS | S_UC_STRICT_RESTORE_SS;
    s_fill_sigcontext(&uc->mc, &regs);
    uc->sigmask = t->sigmask;
    uc->stack.flags = t->altstack_flags & (SS_DISABLE | (int)S_SS_AUTODISARM);
    if (!(uc->stack.flags & SS_DISABLE)) {
        uc->stack.sp = t->altstack_sp;
        uc->stack.size = t->altstack_size;
    }
    uc->mc.fpstate = s_put_xsave(pl, t);
    if (!uc->mc.fpstate)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    *ret_frame = (uint64_t)(uintptr_t)frame;
    return 0;
}

int threads_plan(rst_plan_t *pl, const rst_proc_t *pr, bool new_pid,
                 cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    size_t n = pr->threads.n, k = 1;
    uint8_t *stacks;

    pl->xcr0 = s_xgetbv0();
    s_xsave_sizes(pl);

    a->threads = rst_alloc(pl, n * sizeof *a->threads, 64);
    stacks = rst_alloc(pl, n * GR_STACK_SIZE, RST_PAGE);
    if (!a->threads || !stacks)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < n; i++) {
        const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
        size_t slot = t->leader ? 0 : k++;
        struct gr_thread *g = &a->threads[slot];
        int ret;
        if (slot >= n || (t->leader && a->n_threads & 1))
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: not exactly one leader thread");
        a->n_threads |= t->leader;
        *g = (struct gr_thread){
            .tid = new_pid ? 0 : (int32_t)t->tid, .leader = t->leader,
            .fs_base = t->fs_base, .gs_base = t->gs_base,
            .clear_tid = t->clear_tid_addr, .robust = t->robust_list,
            .robust_len = t->robust_list_len,
            .stack_top = (uint64_t)(uintptr_t)(stacks + (slot + 1) * GR_STACK_SIZE),
        };
        if (t->rseq && t->rseq->addr)
            g->rseq = t->rseq->addr, g->rseq_len = t->rseq->len,
            g->rseq_sig = t->rseq->signature;
        g->old_tid = (int32_t)t->tid;
        g->fix_tid = new_pid && mem_writable(pr, t->clear_tid_addr, sizeof(int32_t));
        ret = s_put_frame(pl, pr, t, &g->frame, err);
        if (ret < 0)
            return ret;
        if (t->leader)
            pl->leader_mask = t->sigmask;
    }
    if (!(a->n_threads & 1))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: no leader thread");
    a->n_threads = (uint32_t)n;
    return 0;
}

/* The thread of image process pr whose registers (as it resumes) are r:
 * each thread has its own stack, so rsp and rip tell it, with the
 * original tids or new ones alike. NULL if none. *ret_reenters: whether
 * it resumes by entering again the call the dump interrupted
 * (sig_fix_restart moved it back onto its syscall instruction). */
const Cairn__Ghost__Thread *threads_image_thread(const rst_proc_t *pr,
                                                 const struct user_regs_struct *r,
                                                 bool *ret_reenters)
{
    for (size_t k = 0; k < pr->threads.n; k++) {
        const Cairn__Ghost__Thread *th = pr->threads.v[k]->thread;
        struct user_regs_struct fixed;

        if (th->regs.len != sizeof fixed)
            continue;
        memcpy(&fixed, th->regs.data, sizeof fixed);
        uint64_t dumped_rip = fixed.rip;
        sig_fix_restart(&fixed, pr, th);
        if (fixed.rsp == r->rsp && fixed.rip == r->rip) {
            *ret_reenters = fixed.rip != dumped_rip;
            return th;
        }
    }
    return NULL;
}

/* glibc registered an rseq area for this thread in our TLS (and a fork
 * keeps the registration); the kernel would write into it after the blob
 * unmapped it. */
void threads_child_drop_rseq(const rst_plan_t *pl)
{
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;

    if (__rseq_size == 0)
        return;
    if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0 &&
        syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0)
        rst_child_fail(pl, errno, 0, "unregistering glibc's rseq: %s",
                       strerror(errno));
}
