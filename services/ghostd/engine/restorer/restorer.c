/* restorer.c - the libc-free restorer blob: rebuilds a process's address
 * space and kernel state from the argument block and enters every thread
 * through its crafted rt_sigreturn frame.
 *
 * Design: this code runs after it has unmapped the program that loaded it,
 * so it uses no libc, no relocations and no writable globals: raw syscalls
 * in inline asm, everything reached through the struct gr_args pointer it
 * receives in %rdi (see restorer.h). It is linked as a flat binary whose
 * first bytes are gr_start (offset 0: jump to gr_main) and gr_gadget
 * (offset GR_GADGET_OFFSET: `syscall; ud2`, used by ghost-restore to unmap
 * the region through ptrace once every thread has left it).
 *
 * Order: unmap the old address space (but the vmas whose pages ghost-restore
 * read into place before it forked us) -> move vdso/vvar (two phases through
 * the scratch window) -> map every other target vma -> copy the staged pages in (with one
 * helper thread when planned: CLONE_UNTRACED, so the tracer never sees it;
 * it exits before any other thread is made) -> post-copy: the lazy vmas
 * registered with the process's userfaultfd -> final protections -> MDWE -> close
 * helper fds -> PR_SET_MM_MAP -> rlimits -> clone3 the other threads (each
 * sets its own state and stops) -> POSIX timers -> leader state ->
 * re-queue pending signals -> itimers -> SIGSTOP (the tracer's cue) ->
 * rt_sigreturn. Each thread takes its credentials last in its own state
 * (they are per thread), once nothing privileged is left for it to do; the
 * leader, after every other thread has, also puts the dumpable flag back
 * (every change of uid resets it). On any failure: a gr_status record on the status pipe and
 * exit_group(1).
 */
#include "restorer.h"

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_ioctl 16
#define NR_fcntl 72
#define NR_mmap 9
#define NR_mprotect 10
#define NR_munmap 11
#define NR_rt_sigreturn 15
#define NR_pread64 17
#define NR_mremap 25
#define NR_nanosleep 35
#define NR_madvise 28
#define NR_getpid 39
#define NR_exit 60
#define NR_setitimer 38
#define NR_prctl 157
#define NR_arch_prctl 158
#define NR_gettid 186
#define NR_futex 202
#define NR_set_tid_address 218
#define NR_exit_group 231
#define NR_tgkill 234
#define NR_rt_tgsigqueueinfo 297
#define NR_rt_sigqueueinfo 129
#define NR_prlimit64 302
#define NR_setgroups 116
#define NR_setresuid 117
#define NR_setresgid 119
#define NR_setfsuid 122
#define NR_setfsgid 123
#define NR_capset 126
#define NR_mlock2 325
#define NR_mseal 462
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#define MLOCK_ONFAULT 1
#define NR_seccomp 317
#define NR_process_vm_writev 311
#define SECCOMP_SET_MODE_FILTER 1
#define NR_set_robust_list 273
#define NR_rseq 334
#define NR_clone3 435
#define NR_sched_setaffinity 203
#define NR_timer_create 222
#define NR_timer_settime 223
#define NR_ioprio_set 251
#define NR_sched_setattr 314
#define NR_setpriority 141

#define MAP_FIXED 0x10
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define PR_SET_DUMPABLE 4
#define PR_CAPBSET_DROP 24
#define PR_SET_SECUREBITS 28
#define PR_SET_NO_NEW_PRIVS 38
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#define CAP_VERSION_3 0x20080522
#define PR_SET_MM 35
#define PR_SET_PDEATHSIG 1
#define PR_SET_NAME 15
#define PR_SET_TSC 26
#define PR_SET_TIMERSLACK 29
#define PR_MCE_KILL 33
#define PR_MCE_KILL_SET 1
#define PR_SET_SPECULATION_CTRL 53
#define PR_SPEC_STORE_BYPASS 0
#define PR_SPEC_INDIRECT_BRANCH 1
#define PR_SET_IO_FLUSHER 57
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_SET_MDWE 65
#define SIGEV_THREAD_ID 4
#define PR_SET_MM_MAP 14
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define SIGSTOP 19
#define CLONE_THREAD_FLAGS 0x00050f00ull  /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM */
#define CLONE_UNTRACED 0x00800000ull
#define CLONE_CHILD_CLEARTID 0x00200000ull
#define UFFDIO_REGISTER 0xc020aa00ul   /* _IOWR(0xAA, 0, struct uffdio_register) */
#define UFFDIO_REGISTER_MODE_MISSING 1
#define EINTR 4
#define EEXIST 17

void *memset(void *dst, int c, unsigned long n);
void *memcpy(void *dst, const void *src, unsigned long n);
void gr_main(struct gr_args *a) __attribute__((noreturn, used));
void gr_thread_main(struct gr_args *a, struct gr_thread *t)
    __attribute__((noreturn, used));

/* Offset 0: the entry; offset GR_GADGET_OFFSET: the unmap gadget;
 * gr_clone_thread(a, t, clone_args, size): clone3 whose child calls
 * gr_thread_main(a, t) on its new stack (t NULL: the page copy helper). */
__asm__(
    ".section .text.entry,\"ax\",@progbits\n"
    ".globl gr_start\n"
    "gr_start:\n"
    "  jmp gr_main\n"
    "  .balign 8\n"
    ".globl gr_gadget\n"
    "gr_gadget:\n"
    "  syscall\n"
    "  ud2\n"
    ".text\n"
    ".globl gr_clone_thread\n"
    "gr_clone_thread:\n"
    "  push %r12\n"
    "  push %r13\n"
    "  mov %rdi, %r12\n"
    "  mov %rsi, %r13\n"
    "  mov %rdx, %rdi\n"
    "  mov %rcx, %rsi\n"
    "  mov $435, %eax\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"
    "  mov %r12, %rdi\n"
    "  mov %r13, %rsi\n"
    "  and $-16, %rsp\n"
    "  call gr_thread_main\n"
    "  ud2\n"
    "1:\n"
    "  pop %r13\n"
    "  pop %r12\n"
    "  ret\n");

long gr_clone_thread(struct gr_args *a, struct gr_thread *t, void *cl,
                     unsigned long size);

static long s_sys6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define SYS(n, ...) s_sys_n(n, __VA_ARGS__)
static long s_sys_n(long n, long a1, long a2, long a3, long a4, long a5)
{
    return s_sys6(n, a1, a2, a3, a4, a5, 0);
}

void *memset(void *dst, int c, unsigned long n)
{
    unsigned char *d = dst;

    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, unsigned long n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    while (n--)
        *d++ = *s++;
    return dst;
}

/* Reports a failed step on the status pipe and ends the whole process. */
static void __attribute__((noreturn))
s_fail(struct gr_args *a, int stage, long ret, uint64_t arg)
{
    struct gr_status st;

    memset(&st, 0, sizeof st);
    st.stage = stage;
    st.err = (int32_t)(ret < 0 ? -ret : ret);
    st.arg = arg;
    st.pid = a->pid;
    SYS(NR_write, a->status_fd, (long)&st, sizeof st, 0, 0);
    for (;;)
        SYS(NR_exit_group, 1, 0, 0, 0, 0);
}

/* Unmaps [0, unmap_end) except the keep ranges (sorted, disjoint). */
static void s_unmap_old(struct gr_args *a)
{
    uint64_t at = 0;

    for (uint32_t i = 0; i <= a->n_keep; i++) {
        uint64_t end = i < a->n_keep ? a->keep[i].start : a->unmap_end;
        if (end > at) {
            long r = SYS(NR_munmap, (long)at, (long)(end - at), 0, 0, 0);
            if (r < 0)
                s_fail(a, GR_STAGE_UNMAP, r, at);
        }
        if (i < a->n_keep)
            at = a->keep[i].end;
    }
}

static void s_move(struct gr_args *a, uint64_t from, uint64_t to,
                   uint64_t len, uint32_t i)
{
    long r;

    if (from == to)
        return;
    r = s_sys6(NR_mremap, (long)from, (long)len, (long)len,
               MREMAP_MAYMOVE | MREMAP_FIXED, (long)to, 0);
    if (r != (long)to)
        s_fail(a, GR_STAGE_VDSO, r < 0 ? r : -14, i);
}

/* vdso/vvar to their old addresses: all into scratch, then all to the
 * target, so an old place overlapping a new one never clobbers it. */
static void s_move_specials(struct gr_args *a)
{
    uint64_t off = 0;

    if (a->drop_specials) {
        for (uint32_t i = 0; i < a->n_moves; i++)
            SYS(NR_munmap, (long)a->moves[i].from, (long)a->moves[i].len, 0,
                0, 0);
        return;
    }
    for (uint32_t i = 0; i < a->n_moves; i++) {
        s_move(a, a->moves[i].from, a->scratch + off, a->moves[i].len, i);
        off += a->moves[i].len;
    }
    off = 0;
    for (uint32_t i = 0; i < a->n_moves; i++) {
        s_move(a, a->scratch + off, a->moves[i].to, a->moves[i].len, i);
        off += a->moves[i].len;
    }
}

static void s_map_vmas(struct gr_args *a)
{
    for (uint32_t i = 0; i < a->n_vmas; i++) {
        const struct gr_vma *v = &a->vmas[i];
        if (v->placed)
            continue;   /* inherited with its pages, kept by s_unmap_old */
        long r = s_sys6(NR_mmap, (long)v->start, (long)(v->end - v->start),
                        v->map_prot, v->map_flags | MAP_FIXED, v->fd,
                        (long)v->pgoff);
        if (r != (long)v->start)
            s_fail(a, GR_STAGE_MMAP, r < 0 ? r : -14, v->start);
    }
}

/* Reads len bytes of the staging fd at off into buf; fails the restore
 * on a short read (the image was checked to hold them). */
static void s_read_staging(struct gr_args *a, void *buf, uint64_t len, uint64_t off,
                           uint64_t vaddr)
{
    for (uint64_t done = 0; done < len;) {
        long r = SYS(NR_pread64, a->staging_fd, (long)buf + (long)done, (long)(len - done),
                     (long)(off + done), 0);
        if (r <= 0)
            s_fail(a, GR_STAGE_PAGES, r < 0 ? r : -5, vaddr + done);
        done += (uint64_t)r;
    }
}

/* Copies [vaddr, vaddr + len) from the staging fd at off, through buf
 * (GR_COPY_BUF bytes).
 *
 * Why not pread straight into place: that writes every new page through
 * this process's own mapping of it, and on a VM whose hypervisor shadows
 * the guest's page tables (PVM here) the first touch of each 4 KiB page
 * from user space is a trip to the hypervisor, 4-5 us: pread into fresh
 * memory ran at 0.6-0.8 GiB/s, the same bytes through a reused buffer and
 * process_vm_writev (the kernel fills the pages through its own mapping)
 * at 3-4.5 GiB/s (bench/README.md). A kernel that refuses
 * process_vm_writev (ENOSYS: built without it; EPERM) gets the old way:
 * populate in one batched pass, then pread into place. */
static void s_copy_piece(struct gr_args *a, uint8_t *buf, uint64_t vaddr, uint64_t len,
                         uint64_t off)
{
    uint64_t done = 0;

    while (!a->copy_pread && done < len) {
        uint64_t n = len - done < GR_COPY_BUF ? len - done : GR_COPY_BUF;
        s_read_staging(a, buf, n, off + done, vaddr + done);
        struct { uint64_t base, len; } local = { (uint64_t)buf, n },
                                       remote = { vaddr + done, n };
        long r = s_sys6(NR_process_vm_writev, SYS(NR_getpid, 0, 0, 0, 0, 0), (long)&local,
                        1, (long)&remote, 1, 0);
        if (r == -38 /* ENOSYS */ || r == -1 /* EPERM */) {
            a->copy_pread = 1;
            break;
        }
        if (r != (long)n)
            s_fail(a, GR_STAGE_PAGES, r < 0 ? r : -14, vaddr + done + (r > 0 ? (uint64_t)r : 0));
        done += n;
    }
    if (done < len) {
        /* A hint: older kernels answer EINVAL. */
        SYS(NR_madvise, (long)(vaddr + done), (long)(len - done), 23 /* MADV_POPULATE_WRITE */,
            0, 0);
        s_read_staging(a, (void *)(vaddr + done), len - done, off + done, vaddr + done);
    }
}

/* Copies chunks of the page runs (GR_COPY_CHUNK bytes, or a run's end)
 * taken in turn from a->copy_next until none is left: each caller's
 * chunk numbers only grow, so its walk over the runs only moves forward. */
static void s_copy_chunks(struct gr_args *a, uint8_t *buf)
{
    uint32_t i = 0;
    uint64_t before = 0;   /* chunks of the runs before run i */

    for (;;) {
        uint64_t c = __atomic_fetch_add(&a->copy_next, 1, __ATOMIC_RELAXED);
        while (i < a->n_runs &&
               c >= before + (a->runs[i].len + GR_COPY_CHUNK - 1) / GR_COPY_CHUNK)
            before += (a->runs[i++].len + GR_COPY_CHUNK - 1) / GR_COPY_CHUNK;
        if (i == a->n_runs)
            return;
        const struct gr_run *run = &a->runs[i];
        uint64_t at = (c - before) * GR_COPY_CHUNK;
        uint64_t len = run->len - at < GR_COPY_CHUNK ? run->len - at : GR_COPY_CHUNK;
        s_copy_piece(a, buf, run->vaddr + at, len, run->off + at);
    }
}

/* The page copy: shared with a helper thread when one was planned and
 * can be made (else the leader copies alone), which has exited when this
 * returns. The helper is CLONE_UNTRACED (no event or exit for the tracer
 * to take for a thread of the image); its tid is the kernel's pick, which
 * a later set_tid may find still held for a moment (s_clone_threads). */
static void s_copy_pages(struct gr_args *a)
{
    uint64_t cl[11];

    a->copy_next = 0;
    a->copy_busy = 0;
    if (a->copy_stack_top) {
        memset(cl, 0, sizeof cl);
        cl[0] = CLONE_THREAD_FLAGS | CLONE_UNTRACED | CLONE_CHILD_CLEARTID;
        cl[2] = (uint64_t)&a->copy_busy;            /* child_tid */
        cl[5] = a->copy_stack_top - GR_STACK_SIZE;  /* stack */
        cl[6] = GR_STACK_SIZE;                      /* stack_size */
        a->copy_busy = 1;
        if (gr_clone_thread(a, 0, cl, sizeof cl) < 0)
            a->copy_busy = 0;   /* copy alone */
    }
    s_copy_chunks(a, (uint8_t *)a->copy_buf[0]);
    for (;;) {
        int32_t busy = __atomic_load_n(&a->copy_busy, __ATOMIC_SEQ_CST);
        if (!busy)
            break;
        SYS(NR_futex, (long)&a->copy_busy, FUTEX_WAIT, busy, 0, 0);
    }
}

/* Post-copy: every lazy vma registered with the process's userfaultfd
 * (MISSING: a fault there waits for the page server), now that the pages
 * of the image are in and before anything -- the kernel's rseq update,
 * a thread's cached tid -- can touch one; then the server is told, and
 * our copy of the userfaultfd closed (the server holds its own). */
static void s_register_lazy(struct gr_args *a)
{
    if (a->uffd_fd < 0)
        return;
    for (uint32_t i = 0; i < a->n_vmas; i++) {
        const struct gr_vma *v = &a->vmas[i];
        struct { uint64_t start, len, mode, ioctls; } reg = {
            v->start, v->end - v->start, UFFDIO_REGISTER_MODE_MISSING, 0 };
        if (!v->lazy)
            continue;
        long r = SYS(NR_ioctl, a->uffd_fd, (long)UFFDIO_REGISTER, (long)&reg, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_UFFD, r, v->start);
    }
    uint32_t word = a->lazy_index | GR_LAZY_READY;
    long r = SYS(NR_write, a->lazy_sock, (long)&word, sizeof word, 0, 0);
    if (r != (long)sizeof word)
        s_fail(a, GR_STAGE_UFFD, r < 0 ? r : -5, 0);
    SYS(NR_close, a->uffd_fd, 0, 0, 0, 0);
}

static void s_protect(struct gr_args *a)
{
    for (uint32_t i = 0; i < a->n_vmas; i++) {
        const struct gr_vma *v = &a->vmas[i];
        if (v->prot == v->map_prot)
            continue;
        long r = SYS(NR_mprotect, (long)v->start, (long)(v->end - v->start),
                     v->prot, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_MPROTECT, r, v->start);
    }
}

/* The state of each vma beyond its mapping, once its pages are in and
 * the rlimits (RLIMIT_MEMLOCK) are set, before any thread or fork:
 * madvise flags, then its name, then mlock (after the pages: it would
 * fault them all in) and mseal last (nothing may change it after). A
 * plain vma costs no syscall. */
static void s_vma_flags(struct gr_args *a)
{
    static const struct { uint32_t bit; int advice; } adv[] = {
        { GR_VMA_DONTDUMP, 16 }, { GR_VMA_DONTFORK, 10 }, { GR_VMA_WIPEONFORK, 18 },
        { GR_VMA_HUGEPAGE, 14 }, { GR_VMA_NOHUGEPAGE, 15 }, { GR_VMA_MERGEABLE, 12 },
        { GR_VMA_SEQUENTIAL, 2 }, { GR_VMA_RANDOM, 1 },
    };
    for (uint32_t i = 0; i < a->n_vmas; i++) {
        const struct gr_vma *v = &a->vmas[i];
        long len = (long)(v->end - v->start), r = 0;
        for (uint32_t k = 0; k < sizeof adv / sizeof adv[0] && r >= 0; k++)
            if (v->flags & adv[k].bit)
                r = SYS(NR_madvise, (long)v->start, len, adv[k].advice, 0, 0);
        if (r >= 0 && v->anon_name)
            r = SYS(NR_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, (long)v->start, len,
                    (long)v->anon_name);
        if (r >= 0 && (v->flags & (GR_VMA_LOCK | GR_VMA_LOCKONFAULT)))
            r = SYS(NR_mlock2, (long)v->start, len,
                    (v->flags & GR_VMA_LOCKONFAULT) ? MLOCK_ONFAULT : 0, 0, 0);
        if (r >= 0 && (v->flags & GR_VMA_SEAL))
            r = SYS(NR_mseal, (long)v->start, len, 0, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_VMA_FLAGS, r, v->start);
    }
}

static void s_process_state(struct gr_args *a)
{
    long r;

    for (uint32_t i = 0; i < a->n_close; i++)
        SYS(NR_close, a->close_fds[i], 0, 0, 0, 0);
    for (uint32_t i = 0; i < a->n_locks; i++) {   /* F_SETLK = 6 */
        r = SYS(NR_fcntl, a->locks[i].fd, 6, (long)&a->locks[i].type, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_LOCK, r, (uint64_t)(uint32_t)a->locks[i].fd << 32 | i);
    }
    if (a->has_mm) {
        r = SYS(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&a->mm,
                sizeof a->mm, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_MM_MAP, r, 0);
        SYS(NR_close, (long)(int32_t)a->mm.exe_fd, 0, 0, 0, 0);
    }
    for (uint32_t i = 0; i < a->n_rlimits; i++) {
        const struct gr_rlimit *l = &a->rlimits[i];
        uint64_t lim[2] = { l->cur, l->max };
        r = SYS(NR_prlimit64, 0, l->resource, (long)lim, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_RLIMIT, r, l->resource);
    }
}

/* One credential step; a failure names the step and the thread. */
static void s_cred_step(struct gr_args *a, const struct gr_thread *t, long r, uint64_t step)
{
    if (r < 0)
        s_fail(a, GR_STAGE_CREDS, r, step << 32 | (uint32_t)t->tid);
}

/* The calling thread becomes who it was: groups, then ids with
 * SECBIT_NO_SETUID_FIXUP so the capabilities survive the change of uid,
 * the real securebits, the bounding set (CAP_SETPCAP is still there), the
 * three sets, the ambient set, no_new_privs. */
static void s_creds(struct gr_args *a, const struct gr_thread *t)
{
    const struct gr_creds *c = &a->creds;
    struct { uint32_t version; int32_t pid; } hdr = { CAP_VERSION_3, 0 };
    struct { uint32_t eff, prm, inh; } data[2] = {
        { (uint32_t)c->cap_eff, (uint32_t)c->cap_prm, (uint32_t)c->cap_inh },
        { (uint32_t)(c->cap_eff >> 32), (uint32_t)(c->cap_prm >> 32),
          (uint32_t)(c->cap_inh >> 32) } };

    if (!c->has)
        return;
    s_cred_step(a, t, SYS(NR_setgroups, c->n_groups, (long)c->groups, 0, 0, 0), 1);
    s_cred_step(a, t, SYS(NR_prctl, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0), 2);
    s_cred_step(a, t, SYS(NR_setresgid, c->gid[0], c->gid[1], c->gid[2], 0, 0), 3);
    SYS(NR_setfsgid, c->gid[3], 0, 0, 0, 0);
    s_cred_step(a, t, SYS(NR_setresuid, c->uid[0], c->uid[1], c->uid[2], 0, 0), 4);
    SYS(NR_setfsuid, c->uid[3], 0, 0, 0, 0);
    s_cred_step(a, t, SYS(NR_prctl, PR_SET_SECUREBITS, c->securebits, 0, 0, 0), 5);
    for (uint32_t cap = 0; cap <= c->cap_last && cap < 64; cap++)
        if (!(c->cap_bnd & (1ull << cap)))
            s_cred_step(a, t, SYS(NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0), 6);
    s_cred_step(a, t, SYS(NR_capset, (long)&hdr, (long)data, 0, 0, 0), 7);
    for (uint32_t cap = 0; cap <= c->cap_last && cap < 64; cap++)
        if (c->cap_amb & (1ull << cap))
            s_cred_step(a, t, SYS(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                        8);
    if (c->no_new_privs)
        s_cred_step(a, t, SYS(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 9);
}

/* The process's seccomp filters, oldest first, on the calling thread.
 * Installed while the thread still has CAP_SYS_ADMIN (no no_new_privs
 * needed); ghost-restore traces it with PTRACE_O_SUSPEND_SECCOMP, so the
 * filters do not see the restorer's remaining syscalls, only the
 * program's once it is detached. */
static void s_seccomp(struct gr_args *a, const struct gr_thread *t)
{
    for (uint32_t i = 0; i < a->n_seccomp; i++) {
        const struct gr_seccomp *f = &a->seccomp[i];
        struct { uint16_t len; uint16_t pad[3]; uint64_t filter; } prog = {
            (uint16_t)f->len, { 0, 0, 0 }, f->prog };
        long r = SYS(NR_seccomp, SECCOMP_SET_MODE_FILTER, f->flags, (long)&prog, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_SECCOMP, r, (uint64_t)i << 32 | (uint32_t)t->tid);
    }
}

/* Threading libraries keep a thread's tid in the word the kernel clears
 * when it exits (glibc's struct pthread tid: set_tid_address and
 * CLONE_CHILD_CLEARTID point at it) and use it for pthread_kill and for
 * robust and PI mutex ownership. Restored under a new tid, a word still
 * holding the old one gets the new one; a word holding anything else is
 * not a cached tid and is left alone. */
static void s_cached_tid(const struct gr_thread *t)
{
    volatile int32_t *w = (volatile int32_t *)(uintptr_t)t->clear_tid;

    if (t->fix_tid && *w == t->old_tid)
        *w = (int32_t)SYS(NR_gettid, 0, 0, 0, 0, 0);
}

/* One step of a thread's settings; a failure names the step and the
 * thread. */
static void s_tstate_step(struct gr_args *a, const struct gr_thread *t, long r, uint64_t step)
{
    if (r < 0)
        s_fail(a, GR_STAGE_TSTATE, r, step << 32 | (uint32_t)t->tid);
}

/* The calling thread's settings (procstate.c): name, timer slack,
 * scheduling, cpus, io priority, prctl flags. Before its seccomp filters
 * and credentials, while it may still raise its priority. */
static void s_tstate(struct gr_args *a, const struct gr_thread *t)
{
    const struct gr_tstate *st = &t->st;

    if (!st->has)
        return;
    s_tstate_step(a, t, SYS(NR_prctl, PR_SET_NAME, (long)st->comm, 0, 0, 0), 1);
    if (st->timer_slack)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_TIMERSLACK, (long)st->timer_slack, 0, 0, 0),
                      2);
    s_tstate_step(a, t, SYS(NR_sched_setattr, 0, (long)&st->sched, 0, 0, 0), 3);
    /* sched_setattr takes the nice value of SCHED_OTHER and SCHED_BATCH
     * only; a SCHED_IDLE thread keeps one too (setpriority's) */
    if (st->sched.nice)
        s_tstate_step(a, t, SYS(NR_setpriority, 0 /* PRIO_PROCESS */, 0, st->sched.nice, 0, 0),
                      12);
    if (st->affinity_len)
        s_tstate_step(a, t, SYS(NR_sched_setaffinity, 0, st->affinity_len,
                                (long)st->affinity, 0, 0), 4);
    if (st->ioprio)
        s_tstate_step(a, t, SYS(NR_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, st->ioprio, 0, 0),
                      5);
    if (st->pdeathsig)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_PDEATHSIG, st->pdeathsig, 0, 0, 0), 6);
    if (st->mce_kill >= 0)
        s_tstate_step(a, t, SYS(NR_prctl, PR_MCE_KILL, PR_MCE_KILL_SET, st->mce_kill, 0, 0), 7);
    if (st->tsc)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_TSC, st->tsc, 0, 0, 0), 8);
    if (st->io_flusher)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_IO_FLUSHER, 1, 0, 0, 0), 9);
    if (st->spec_ssb)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS,
                                st->spec_ssb, 0, 0), 10);
    if (st->spec_ib)
        s_tstate_step(a, t, SYS(NR_prctl, PR_SET_SPECULATION_CTRL, PR_SPEC_INDIRECT_BRANCH,
                                st->spec_ib, 0, 0), 11);
}

/* Kernel state private to the calling thread, credentials last. */
static void s_thread_state(struct gr_args *a, const struct gr_thread *t)
{
    long r;

    s_cached_tid(t);
    SYS(NR_set_tid_address, (long)t->clear_tid, 0, 0, 0, 0);
    if (t->robust) {
        r = SYS(NR_set_robust_list, (long)t->robust, (long)t->robust_len, 0,
                0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_THREAD, r, (uint64_t)t->tid);
    }
    if (t->rseq) {
        r = SYS(NR_rseq, (long)t->rseq, (long)t->rseq_len, 0,
                (long)t->rseq_sig, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_THREAD, r, (uint64_t)t->tid);
    }
    r = SYS(NR_arch_prctl, ARCH_SET_FS, (long)t->fs_base, 0, 0, 0);
    if (r < 0)
        s_fail(a, GR_STAGE_THREAD, r, (uint64_t)t->tid);
    r = SYS(NR_arch_prctl, ARCH_SET_GS, (long)t->gs_base, 0, 0, 0);
    if (r < 0)
        s_fail(a, GR_STAGE_THREAD, r, (uint64_t)t->tid);
    s_tstate(a, t);
    s_seccomp(a, t);
    s_creds(a, t);
}

/* Stops for the tracer (ghost-restore), then enters the target through
 * the thread's rt_sigframe: %rsp at the ucontext, just past pretcode. */
static void __attribute__((noreturn))
s_sigreturn(struct gr_args *a, const struct gr_thread *t)
{
    long tid = SYS(NR_gettid, 0, 0, 0, 0, 0);

    SYS(NR_tgkill, a->pid, tid, SIGSTOP, 0, 0);
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "mov $15, %%eax\n\t"
                     "syscall\n\t"
                     :
                     : "r"(t->frame + 8)
                     : "memory");
    s_fail(a, GR_STAGE_SIGRETURN, -EINTR, (uint64_t)t->tid);
}

void gr_thread_main(struct gr_args *a, struct gr_thread *t)
{
    if (!t) {   /* the page copy helper */
        s_copy_chunks(a, (uint8_t *)a->copy_buf[1]);
        for (;;)
            SYS(NR_exit, 0, 0, 0, 0, 0);
    }
    s_thread_state(a, t);
    __atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
    if (__atomic_sub_fetch(&a->threads_left, 1, __ATOMIC_SEQ_CST) == 0)
        SYS(NR_futex, (long)&a->threads_left, FUTEX_WAKE, 1, 0, 0);
    s_sigreturn(a, t);
}

/* clone3 with set_tid for every thread but the leader; waits until each
 * has set its own state. */
static void s_clone_threads(struct gr_args *a)
{
    a->threads_left = (int32_t)a->n_threads - 1;
    for (uint32_t i = 1; i < a->n_threads; i++) {
        struct gr_thread *t = &a->threads[i];
        uint64_t cl[11];
        int32_t tid = t->tid;
        memset(cl, 0, sizeof cl);
        cl[0] = CLONE_THREAD_FLAGS;
        cl[5] = t->stack_top - GR_STACK_SIZE;   /* stack */
        cl[6] = GR_STACK_SIZE;                  /* stack_size */
        if (tid) {
            cl[8] = (uint64_t)&tid;             /* set_tid */
            cl[9] = 1;                          /* set_tid_size */
        }
        long r = gr_clone_thread(a, t, cl, sizeof cl);
        /* A copy helper's tid (the kernel's pick, here or in another
         * process of the tree) is freed a moment after its exit woke its
         * leader: a set_tid equal to it may meet EEXIST until then (ids
         * were checked free before the restore; up to 1 s here). */
        for (int k = 0; r == -EEXIST && tid && k < 1000; k++) {
            int64_t ms[2] = { 0, 1000000 };
            SYS(NR_nanosleep, (long)ms, 0, 0, 0, 0);
            r = gr_clone_thread(a, t, cl, sizeof cl);
        }
        if (r < 0)
            s_fail(a, GR_STAGE_CLONE, r, (uint64_t)t->tid);
        t->tid = (int32_t)r;
    }
    for (;;) {
        int32_t left = __atomic_load_n(&a->threads_left, __ATOMIC_SEQ_CST);
        if (left == 0)
            break;
        SYS(NR_futex, (long)&a->threads_left, FUTEX_WAIT, left, 0, 0);
    }
}

static void s_queue_signals(struct gr_args *a)
{
    for (uint32_t i = 0; i < a->n_sigq; i++) {
        const struct gr_sigq *q = &a->sigq[i];
        long r;
        if (q->thread)
            r = SYS(NR_rt_tgsigqueueinfo, a->pid,
                    a->threads[q->thread - 1].tid, q->signo,
                    (long)q->info, 0);
        else
            r = SYS(NR_rt_sigqueueinfo, a->pid, q->signo, (long)q->info, 0,
                    0);
        if (r < 0)
            s_fail(a, GR_STAGE_SIGQUEUE, r, (uint64_t)q->signo);
    }
}

static void s_itimers(struct gr_args *a)
{
    for (uint32_t i = 0; i < a->n_itimers; i++) {
        const struct gr_itimer *it = &a->itimers[i];
        int64_t v[4] = { it->interval_sec, it->interval_usec, it->value_sec,
                         it->value_usec };
        long r = SYS(NR_setitimer, it->which, (long)v, 0, 0, 0);
        if (r < 0)
            s_fail(a, GR_STAGE_ITIMER, r, (uint64_t)it->which);
    }
}

/* One timer, made with its id (t->id in the timer_t the kernel reads
 * when asked to restore ids; on an older kernel, which picks the next
 * free id itself, the id it picked must be the one wanted) and armed
 * with the time it had left. */
static void s_timer(struct gr_args *a, const struct gr_timer *t)
{
    struct { uint64_t value; int32_t signo, notify, tid, pad[11]; } ev;
    int32_t id = t->id;

    memset(&ev, 0, sizeof ev);
    ev.value = t->value;
    ev.signo = t->signo;
    ev.notify = t->notify;
    if (t->notify & SIGEV_THREAD_ID)
        ev.tid = a->threads[t->thread - 1].tid;
    long r = SYS(NR_timer_create, t->clock, (long)&ev, (long)&id, 0, 0);
    if (r < 0)
        s_fail(a, GR_STAGE_TIMER, r, 1ull << 32 | (uint32_t)t->id);
    if (id != t->id)
        s_fail(a, GR_STAGE_TIMER, -EEXIST, 2ull << 32 | (uint32_t)t->id);
    if (!t->value_sec && !t->value_nsec)
        return;
    int64_t its[4] = { t->interval_sec, t->interval_nsec, t->value_sec, t->value_nsec };
    r = SYS(NR_timer_settime, id, 0, (long)its, 0, 0);
    if (r < 0)
        s_fail(a, GR_STAGE_TIMER, r, 3ull << 32 | (uint32_t)t->id);
}

/* The POSIX timers, once every thread exists (a timer may signal one);
 * with the kernel's restore-ids mode on, which only this thread may use
 * (the others are past their state, waiting to be let into the program). */
static void s_timers(struct gr_args *a)
{
    if (!a->n_timers)
        return;
    long on = SYS(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0);
    for (uint32_t i = 0; i < a->n_timers; i++)
        s_timer(a, &a->timers[i]);
    if (on == 0)
        SYS(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}

void gr_main(struct gr_args *a)
{
    a->threads[0].tid = a->pid;
    s_unmap_old(a);
    s_move_specials(a);
    s_map_vmas(a);
    s_copy_pages(a);
    s_register_lazy(a);
    s_protect(a);
    /* memory-deny-write-execute only now: it would refuse the writable
     * mapping of an executable vma while its pages are copied in */
    if (a->mdwe)
        s_tstate_step(a, &a->threads[0], SYS(NR_prctl, PR_SET_MDWE, a->mdwe, 0, 0, 0), 13);
    s_process_state(a);
    s_vma_flags(a);
    s_clone_threads(a);
    s_timers(a);
    s_thread_state(a, &a->threads[0]);
    if (a->creds.has && a->creds.dumpable <= 1)   /* every thread is done */
        s_cred_step(a, &a->threads[0],
                    SYS(NR_prctl, PR_SET_DUMPABLE, a->creds.dumpable, 0, 0, 0), 10);
    s_queue_signals(a);
    s_itimers(a);
    SYS(NR_close, a->status_fd, 0, 0, 0, 0);
    SYS(NR_close, a->staging_fd, 0, 0, 0, 0);
    s_sigreturn(a, &a->threads[0]);
}
