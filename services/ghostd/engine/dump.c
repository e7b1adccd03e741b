/* dump.c - checkpoint a running, unmodified process tree (dump.h).
 *
 * Design. Four phases, each leaving the tree runnable if it fails:
 *
 *  1. check   - /proc only (stat, status, smaps, fd/fdinfo), nothing
 *               changes: a refusal names the pid, fd or vma and its kind.
 *  2. freeze  - PTRACE_SEIZE + PTRACE_INTERRUPT every thread of every
 *               process, rescanning task/ and children until stable; then
 *               the check again on the frozen tree (a socket opened in
 *               between is still a refusal: we only detach).
 *  3. collect - registers, xsave, sigmask, pending signals, rseq, robust
 *               list from ptrace; what only the task knows (sigactions,
 *               itimers, brk, sigaltstack, clear-tid address) by injected
 *               syscalls: the thread's registers point at a `syscall`
 *               instruction of its own vdso (no code is written), it runs
 *               to the syscall-exit stop under PTRACE_SYSCALL with every
 *               signal blocked (PTRACE_SETSIGMASK), and output lands in a
 *               64-byte scratch area below the red zone of its stack whose
 *               bytes are saved first and put back afterwards.
 *  4. write   - records in the order of ghost.proto; memory through
 *               process_vm_readv (or /proc/PID/mem for unreadable vmas),
 *               anonymous pages only where pagemap says present or
 *               swapped, a private file mapping's only where the process
 *               wrote them (the rest is the file's, mapped again at
 *               restore, which checks the file's size and mtime); pipe contents copied with tee(2), so nothing is
 *               consumed; every fd compared (kcmp KCMP_FILE) with the
 *               earlier fds of the image on the same file, so a dup'ed or
 *               fork-inherited one names the fd it shares its open file
 *               description with; a memfd fd's contents written once per
 *               image as object_pages (its data extents, SEEK_DATA/
 *               SEEK_HOLE, read through /proc/PID/fd/N). Then detach (restoring registers, mask and the
 *               interrupted syscall) or SIGKILL after fsync.
 *
 * An injected thread resumes from a syscall-exit stop, where the kernel no
 * longer applies its -ERESTART* logic; we apply it to the registers we put
 * back (re-execute, or restart_syscall for ERESTART_RESTARTBLOCK). The
 * image keeps the registers exactly as the interrupt found them, with
 * syscall_nr/syscall_ret, and the restorer decides.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/kcmp.h>
#include <linux/seccomp.h>

#include "cairn-config.h"
#include "anonfd.h"
#include "direct.h"
#include "dump.h"
#include "image.h"
#include "proc/proc.h"
#include "engine.h"
#include "creds.h"
#include "files.h"
#include "pipes.h"
#include "shmem.h"
#include "seize.h"
#include "signals.h"
#include "tree.h"

#define S_PF_KTHREAD 0x00200000ul
#define S_CHUNK (8u << 20)    /* the ring of memory read windows */
#define S_XSAVE_MAX (64u * 1024u)
/* A tree whose short-lived members come and go (a shell loop) is looked
 * at again this many times, this long apart, before its last failure is
 * reported (s_tree_moved): 20 x 2 ms, long enough for a parent to reap.
 * One budget serves a whole check or dump, the check's looks and the
 * dump's attempts together (s_retry_t). */
#define S_TREE_ATTEMPTS 20
#define S_TREE_RETRY_NS 2000000

static uint64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ==== phase 1: checks on /proc ======================================= */

/* The vma kind from its maps line. 0, or a refusal. */
static int s_vma_kind(pid_t pid, const proc_vma_t *v, Cairn__Ghost__VmaKind *ret,
                      cairn_error_t *err)
{
    const char *p = v->path;
    bool special = strcmp(p, "[vdso]") == 0 || strncmp(p, "[vvar", 5) == 0 ||
                   strcmp(p, "[vsyscall]") == 0;
    if (!special && (v->vmflags & (PROC_VMF_IO | PROC_VMF_PFNMAP)))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d maps device memory at %#llx (%s)", (int)pid,
                               (unsigned long long)v->start, p[0] ? p : "anonymous");
    if (!p[0] || strncmp(p, "[anon:", 6) == 0)
        *ret = v->shared ? CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED
                         : CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE;
    else if (strncmp(p, "[anon_shmem:", 12) == 0 || strcmp(p, "/dev/zero (deleted)") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED;
    else if (strcmp(p, "[heap]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_HEAP;
    else if (strcmp(p, "[stack]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_STACK;
    else if (strcmp(p, "[vdso]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VDSO;
    else if (strcmp(p, "[vvar]") == 0 || strcmp(p, "[vvar_vclock]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VVAR;
    else if (strcmp(p, "[vsyscall]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL;
    else if (strncmp(p, "/memfd:", 7) == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_MEMFD;
    else if (p[0] != '/' || strncmp(p, "/SYSV", 5) == 0 || engine_has_suffix(p, " (deleted)") ||
             strncmp(p, "/dev/", 5) == 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d maps %s at %#llx (not restorable)", (int)pid,
                               p, (unsigned long long)v->start);
    else
        *ret = v->shared ? CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED
                         : CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE;
    return 0;
}

/* The vmas a check read for one process. */
typedef struct s_seen {
    pid_t pid;
    proc_vmas_t vm;
} s_seen_t;

/* What the check before the freeze read, for the check on the frozen tree
 * (s_read_vmas_since). */
typedef struct mem_seen {
    s_seen_t *v;
    size_t n;
} s_seen_list_t;

static void s_seen_free(s_seen_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        proc_vmas_free(&l->v[i].vm);
    free(l->v);
    *l = (s_seen_list_t){ 0 };
}

static const proc_vmas_t *s_seen_find(const s_seen_list_t *l, pid_t pid)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->v[i].pid == pid)
            return &l->v[i].vm;
    return NULL;
}

/* The same mappings, line for line (what /proc/PID/maps shows). */
static bool s_same_layout(const proc_vmas_t *a, const proc_vmas_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const proc_vma_t *x = &a->v[i], *y = &b->v[i];
        if (x->start != y->start || x->end != y->end || x->prot != y->prot ||
            x->shared != y->shared || x->pgoff != y->pgoff || x->dev != y->dev ||
            x->ino != y->ino || strcmp(x->path, y->path) != 0)
            return false;
    }
    return true;
}

/* The vmas of pid with their smaps VmFlags. smaps walks every page table
 * (12 ms a GiB): when the process's maps are line for line what an
 * earlier smaps read (before) showed, its flags are taken from there.
 * The flags the engine uses (gd, io, pf, nr, sh) are fixed when a mapping
 * is made, so only a mapping replaced in between by one identical in
 * every maps field but those flags would be described by its predecessor's. */
static int s_read_vmas_since(pid_t pid, const proc_vmas_t *before, proc_vmas_t *ret,
                             cairn_error_t *err)
{
    if (!before || before->n == 0)
        return proc_read_vmas(pid, true, ret, err);
    proc_vmas_t now = { 0 };
    int r = proc_read_vmas(pid, false, &now, err);
    if (r < 0)
        return r;
    if (!s_same_layout(&now, before)) {
        proc_vmas_free(&now);
        return proc_read_vmas(pid, true, ret, err);
    }
    for (size_t i = 0; i < now.n; i++)
        now.v[i].vmflags = before->v[i].vmflags;
    *ret = now;
    return 0;
}

/* Every vma of a kind the engine restores. With keep, the vmas read go
 * there on success: the image is written from what the check on the
 * frozen tree saw. before: see s_read_vmas_since. */
static int s_check_vmas(pid_t pid, const proc_vmas_t *before, proc_vmas_t *keep,
                        cairn_error_t *err)
{
    proc_vmas_t vm = { 0 };
    int r = s_read_vmas_since(pid, before, &vm, err);
    for (size_t i = 0; r == 0 && i < vm.n; i++) {
        Cairn__Ghost__VmaKind k;
        r = s_vma_kind(pid, &vm.v[i], &k, err);
    }
    if (r == 0 && keep) {
        proc_vmas_free(keep);
        *keep = vm;
    } else {
        proc_vmas_free(&vm);
    }
    return r;
}

static int s_check_one(pid_t pid, pid_t tracer, files_tree_fds_t *tfds,
                       const proc_vmas_t *before, proc_vmas_t *keep, cairn_error_t *err)
{
    proc_stat_t st;
    int r = proc_read_stat(pid, &st, err);
    if (r < 0)
        return r == -ENOENT || r == -ESRCH
                   ? cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d", (int)pid)
                   : r;
    if (pid == getpid() || pid == getppid())
        return cairn_error_set(err, -EINVAL, CAIRN_FAILED_PRECONDITION,
                               "process %d is the dumper or its parent", (int)pid);
    if (st.flags & S_PF_KTHREAD)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d is a kernel thread", (int)pid);
    if (proc_state_exited(st.state))
        return cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                               "process %d is a zombie", (int)pid);
    if ((r = creds_check_threads(pid, tracer, err)) < 0)
        return r;
    if ((r = s_check_vmas(pid, before, keep, err)) < 0)
        return r;
    return files_check(pid, tfds, err);
}

/* One look at the tree rooted at pid (s_check_tree). */
static int s_check_tree_once(pid_t pid, s_seen_list_t *seen, cairn_error_t *err)
{
    pid_t *tree = NULL;
    size_t n = 0;
    files_tree_fds_t tfds = { 0 };
    int r = tree_list(pid, &tree, &n, err);
    if (r == 0 && seen && !(seen->v = calloc(n, sizeof(*seen->v))))
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < n; i++) {
        pid_t p = tree[i * 2];
        proc_vmas_t *keep = NULL;
        if (seen) {
            seen->v[i].pid = p;
            keep = &seen->v[i].vm;
            seen->n = i + 1;
        }
        r = s_check_one(p, 0, &tfds, NULL, keep, err);
        if (r == 0 && i > 0)
            r = tree_own_memory(tree[i * 2 + 1], p, err);
        if (r < 0 && i > 0 && tree_vanished(p)) {
            /* Exited and reaped while it was looked at (a shell loop's
             * commands do): the check of the frozen tree judges whoever
             * is there then. */
            if (keep)
                seen->v[i].pid = 0;
            files_forget(&tfds, p);
            r = 0;
        } else if (r < 0 && r != -ESRCH && i > 0 && tree_gone(p)) {
            r = cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                                "process %d is a zombie", (int)p);
        }
    }
    if (r == 0)
        r = files_check_tree(&tfds, err);
    free(tfds.v);
    free(tree);
    return r;
}

/* Whether a look at the tree rooted at root that failed with r met a tree
 * whose members changed under it -- a process or thread other than the
 * root exited, or was a zombie its parent had not reaped yet (every
 * "exited" and "zombie" failure is -ESRCH), or a vfork child had not
 * called exec yet (-EBUSY, s_own_memory) -- rather than something
 * it holds: another look, once the parent has reaped it, may find the
 * tree still. */
static bool s_tree_moved(pid_t root, int r)
{
    return (r == -ESRCH || r == -EBUSY) && !tree_gone(root);
}

/* The looks left to one ghost_check or ghost_dump (S_TREE_ATTEMPTS). */
typedef struct s_retry {
    int left;
} s_retry_t;

/* Whether another look may be taken; if so, waits S_TREE_RETRY_NS first. */
static bool s_retry_again(s_retry_t *rt)
{
    if (rt->left <= 1)
        return false;
    rt->left--;
    nanosleep(&(struct timespec){ 0, S_TREE_RETRY_NS }, NULL);
    return true;
}

/* The check of the tree rooted at pid; with seen, the vmas read of each
 * process are kept there. A zombie in it, or a vfork child sharing its
 * parent's memory, is looked at again while rt allows before it is
 * refused: one that its parent is about to reap, or that is about to
 * exec, is no reason to refuse. */
static int s_check_tree(pid_t pid, s_seen_list_t *seen, s_retry_t *rt, cairn_error_t *err)
{
    if (pid <= 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad pid %d", (int)pid);
    for (;;) {
        int r = s_check_tree_once(pid, seen, err);
        if (r == 0 || !s_tree_moved(pid, r) || !s_retry_again(rt))
            return r;
        if (seen)
            s_seen_free(seen);
    }
}

int ghost_check(pid_t pid, const ghost_dump_opts_t *opts, cairn_error_t *err)
{
    (void)opts;
    s_retry_t rt = { S_TREE_ATTEMPTS };
    return s_check_tree(pid, NULL, &rt, err);
}

/* ==== phase 3: collect ================================================= */

static void s_mm_from_stat(const proc_stat_t *st, Cairn__Ghost__MmLayout *mm)
{
    mm->start_code = st->start_code, mm->end_code = st->end_code;
    mm->start_data = st->start_data, mm->end_data = st->end_data;
    mm->start_brk = st->start_brk, mm->start_stack = st->start_stack;
    mm->arg_start = st->arg_start, mm->arg_end = st->arg_end;
    mm->env_start = st->env_start, mm->env_end = st->env_end;
}

/* Strings owned by a process record under construction. */
typedef struct s_pstrings {
    char comm[64];
    char cwd[PATH_MAX];
    char exe[PATH_MAX];
    char *auxv;
    creds_dump_t cr;       /* the record's creds point into it */
} s_pstrings_t;

static int s_collect_mm(const dump_proc_t *p, dump_thread_t *t, const proc_stat_t *st,
                        Cairn__Ghost__MmLayout *mm, s_pstrings_t *s, cairn_error_t *err)
{
    s_mm_from_stat(st, mm);
    size_t len = 0;
    int r = proc_read_file(p->pid, "auxv", &s->auxv, &len, err);
    if (r < 0)
        return r;
    mm->auxv.data = (uint8_t *)s->auxv;
    mm->auxv.len = len;
    r = proc_readlink(p->pid, "exe", s->exe, sizeof(s->exe), err);
    if (r < 0)
        return r;
    mm->exe_path = s->exe;
    uint64_t a[6] = { 0 };
    int64_t brk = 0;
    r = seize_inject(p, t, SYS_brk, a, &brk, err);
    mm->brk = (uint64_t)brk;
    return r;
}

static int s_collect_process(dump_ctx_t *c, dump_proc_t *p, Cairn__Ghost__Process *pr,
                             Cairn__Ghost__MmLayout *mm, s_pstrings_t *s,
                             cairn_error_t *err)
{
    proc_stat_t st;
    proc_status_t status;
    dump_thread_t *leader = &p->t[0];
    int r = proc_read_stat(p->pid, &st, err);
    if (r == 0)
        r = proc_read_status(p->pid, &status, &s->cr.pc, err);
    if (r == 0)
        r = proc_readlink(p->pid, "cwd", s->cwd, sizeof(s->cwd), err);
    if (r == 0)
        r = proc_read_personality(p->pid, &pr->personality, err);
    if (r < 0)
        return r;
    snprintf(s->comm, sizeof(s->comm), "%s", st.comm);
    pr->pid = (uint32_t)p->pid;
    pr->stop_signal = (uint32_t)p->t[0].stop_sig;
    pr->ppid = (uint32_t)p->parent;
    pr->pgid = (uint32_t)st.pgid, pr->sid = (uint32_t)st.sid;
    pr->comm = s->comm, pr->cwd = s->cwd;
    pr->umask = status.umask;
    pr->mm = mm;
    pr->n_threads = (uint32_t)p->nt;
    if ((r = creds_collect_rlimits(p, pr, err)) < 0 ||
        (r = sig_collect_sigactions(p, leader, &status, pr, err)) < 0 ||
        (r = sig_collect_itimers(p, leader, pr, err)) < 0 ||
        (r = sig_collect_pending(p->pid, true, &pr->shared_pending, &pr->n_shared_pending,
                               err)) < 0 ||
        (r = creds_collect(p, leader, &s->cr, pr, err)) < 0)
        return r;
    pr->creds = &s->cr.creds;
    return s_collect_mm(p, leader, &st, mm, s, err);
}

/* Buffers owned by a thread record under construction. */
typedef struct s_tbufs {
    uint8_t xsave[S_XSAVE_MAX];
    Cairn__Ghost__Rseq rseq;
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
    uint64_t head = 0;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t->tid, &head, &len) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "robust list of %d: %s",
                               (int)t->tid, strerror(errno));
    th->robust_list = head, th->robust_list_len = len;
    return sig_collect_pending(t->tid, false, &th->pending, &th->n_pending, err);
}

static int s_collect_thread(const dump_proc_t *p, dump_thread_t *t, Cairn__Ghost__Thread *th,
                            s_tbufs_t *b, cairn_error_t *err)
{
    th->tid = (uint32_t)t->tid;
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
    return s_collect_thread_ptrace(t, th, b, err);
}

/* The memory writer's state (moving to mem.c). */
struct mem_dump {
    ghost_direct_t *direct; /* page runs copied into the image file, or NULL */
    uint8_t *buf;          /* S_CHUNK bytes: the ring of memory windows */
};

/* ==== phase 4: write =================================================== */

static int s_put(dump_ctx_t *c, Cairn__Ghost__Record *rec, cairn_error_t *err)
{
    return ghost_write_record(c->out.w, rec, err);
}

static int s_write_threads(dump_ctx_t *c, dump_proc_t *p, cairn_error_t *err)
{
    s_tbufs_t *b = malloc(sizeof(*b));
    if (!b)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int r = 0;
    for (size_t i = 0; r == 0 && i < p->nt; i++) {
        Cairn__Ghost__Thread th = CAIRN__GHOST__THREAD__INIT;
        r = s_collect_thread(p, &p->t[i], &th, b, err);
        if (r == 0) {
            Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
            rec.r_case = CAIRN__GHOST__RECORD__R_THREAD;
            rec.thread = &th;
            r = s_put(c, &rec, err);
        }
        sig_free_pending(th.pending, th.n_pending);
    }
    free(b);
    return r;
}

/* Which pages of a vma of this kind are dumped: 0 none, 1 present only
 * (anonymous private: the rest is zero), 2 all, 3 the present anonymous
 * ones (a private file mapping: the pages the process wrote; the others
 * are the file's, mapped again at restore). A memfd some fd of the tree
 * refers to: none (its object pages hold it all, restore.c). */
static int s_dump_policy(const dump_ctx_t *c, const proc_vma_t *v, Cairn__Ghost__VmaKind k)
{
    if (k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD && shmem_fd_memfd(c->shmem, v->ino))
        return 0;
    switch (k) {
    case CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE:
    case CAIRN__GHOST__VMA_KIND__VMA_HEAP:
    case CAIRN__GHOST__VMA_KIND__VMA_STACK:
        return 1;
    case CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE:
        return 3;
    case CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED:
    case CAIRN__GHOST__VMA_KIND__VMA_MEMFD:
        return 2;
    default:
        return 0;
    }
}

/* stat of the object a file or shared mapping maps (/proc/PID/map_files:
 * the mapped inode itself, whatever the path now names). */
static int s_map_file_stat(pid_t pid, const proc_vma_t *v, struct stat *st)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)pid,
             (unsigned long long)v->start, (unsigned long long)v->end);
    return stat(path, st) < 0 ? -errno : 0;
}

static int s_vma_record(const dump_ctx_t *c, pid_t pid, const proc_vma_t *v,
                        Cairn__Ghost__Vma *out, cairn_error_t *err)
{
    Cairn__Ghost__VmaKind k;
    int r = s_vma_kind(pid, v, &k, err);
    if (r < 0)
        return r;
    out->start = v->start, out->end = v->end, out->prot = v->prot;
    out->flags = (v->shared ? MAP_SHARED : MAP_PRIVATE) |
                 ((v->vmflags & PROC_VMF_GROWSDOWN) ? MAP_GROWSDOWN : 0) |
                 ((v->vmflags & PROC_VMF_NORESERVE) ? MAP_NORESERVE : 0);
    out->pgoff = v->pgoff, out->kind = k;
    out->path = (char *)v->path;
    out->dev = v->dev, out->ino = v->ino;
    if (k == CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED || k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD)
        out->shmid = v->ino;
    out->dumped = s_dump_policy(c, v, k) != 0;
    struct stat st;
    if (k == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE && s_map_file_stat(pid, v, &st) == 0) {
        out->file_size = (uint64_t)st.st_size;
        out->file_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    return 0;
}

static int s_write_vmas(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm, cairn_error_t *err)
{
    for (size_t i = 0; i < vm->n; i++) {
        Cairn__Ghost__Vma v = CAIRN__GHOST__VMA__INIT;
        int r = s_vma_record(c, p->pid, &vm->v[i], &v, err);
        if (r < 0)
            return r;
        Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
        rec.r_case = CAIRN__GHOST__RECORD__R_VMA;
        rec.vma = &v;
        if ((r = s_put(c, &rec, err)) < 0)
            return r;
    }
    return 0;
}

/* Memory goes out through a small pipeline: this thread reads windows of
 * pages (process_vm_readv, /proc/PID/mem) into a ring of S_SLOTS buffers
 * carved from c->mem->buf while a writer thread sends the filled ones to the
 * image, in order. Reading the next window overlaps writing the last: on
 * tmpfs a write (page-cache allocation and a copy) costs as much as the
 * read, so doing both on one thread halves the throughput. The writer
 * thread is the only user of c->out.w until s_pipe_stop has joined it; ptrace
 * stays on this thread. */
#define S_SLOTS 4
#define S_SLOT (S_CHUNK / S_SLOTS)

/* One filled window waiting for the writer. */
typedef struct s_slot {
    uint64_t addr;         /* first page */
    size_t len;            /* bytes, a page multiple */
} s_slot_t;

/* The ring between the reading thread and the writer thread. */
typedef struct s_pipe {
    dump_ctx_t *c;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* any change of head, tail, closing or rc */
    s_slot_t slot[S_SLOTS];
    uint64_t head;         /* windows submitted */
    uint64_t tail;         /* windows written */
    bool closing;          /* no more windows will come */
    int rc;                /* first write error, 0 if none */
    cairn_error_t err;     /* its reason */
} s_pipe_t;

/* Memory access to one process. */
typedef struct s_mem {
    pid_t pid;
    int mem_fd;        /* /proc/PID/mem */
    int pagemap_fd;    /* /proc/PID/pagemap */
    s_pipe_t *pipe;    /* the writer of this process's pages, once started */
    bool direct;       /* this vma's runs go through c->mem->direct */
} s_mem_t;

static uint8_t *s_slot_buf(const s_pipe_t *q, uint64_t n)
{
    return q->c->mem->buf + (n % S_SLOTS) * S_SLOT;
}

static void *s_pipe_writer(void *arg)
{
    s_pipe_t *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->tail == q->head && !q->closing)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->tail == q->head)
            break;
        s_slot_t s = q->slot[q->tail % S_SLOTS];
        pthread_mutex_unlock(&q->mu);
        struct iovec v = { s_slot_buf(q, q->tail), s.len };
        int r = ghost_write_pages(q->c->out.w, s.addr, s.len / q->c->out.page_size,
                                  q->c->out.page_size, &v, 1, &q->err);
        pthread_mutex_lock(&q->mu);
        q->tail++;
        if (r < 0) {
            q->rc = r;
            pthread_cond_broadcast(&q->cv);
            break;
        }
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static int s_pipe_start(s_pipe_t *q, dump_ctx_t *c, cairn_error_t *err)
{
    *q = (s_pipe_t){ .c = c };
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int r = pthread_create(&q->thread, NULL, s_pipe_writer, q);
    if (r != 0) {
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        return cairn_error_set(err, -r, CAIRN_SYSTEM, "cannot start the page writer: %s",
                               strerror(r));
    }
    return 0;
}

/* Waits for the writer to drain the ring and joins it; returns its error
 * (into err) if it had one. */
static int s_pipe_stop(s_pipe_t *q, cairn_error_t *err)
{
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    if (q->rc < 0 && err)
        *err = q->err;
    return q->rc;
}

/* The buffer of the next free slot (waiting for the writer to free one),
 * or NULL once the writer has failed. */
static uint8_t *s_pipe_acquire(s_pipe_t *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->head - q->tail >= S_SLOTS && q->rc == 0)
        pthread_cond_wait(&q->cv, &q->mu);
    uint8_t *b = q->rc == 0 ? s_slot_buf(q, q->head) : NULL;
    pthread_mutex_unlock(&q->mu);
    return b;
}

/* Hands the slot just filled (len > 0 bytes at addr) to the writer. */
static void s_pipe_submit(s_pipe_t *q, uint64_t addr, size_t len)
{
    pthread_mutex_lock(&q->mu);
    q->slot[q->head % S_SLOTS] = (s_slot_t){ addr, len };
    q->head++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Waits until the writer has sent every submitted window, so that this
 * thread may use c->out.w; -EPIPE once the writer has failed. */
static int s_pipe_drain(s_pipe_t *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->tail != q->head && q->rc == 0)
        pthread_cond_wait(&q->cv, &q->mu);
    int rc = q->rc;
    pthread_mutex_unlock(&q->mu);
    return rc < 0 ? -EPIPE : 0;
}

/* A run of present anonymous pages placed in the image file and queued
 * for c->mem->direct, in records of at most GHOST_DIRECT_BATCH bytes. */
static int s_dump_run_direct(dump_ctx_t *c, s_mem_t *m, bool readable, uint64_t addr,
                             size_t len, cairn_error_t *err)
{
    int r = m->pipe ? s_pipe_drain(m->pipe) : 0;
    while (r == 0 && len > 0) {
        size_t n = len < GHOST_DIRECT_BATCH ? len : GHOST_DIRECT_BATCH;
        uint64_t off = 0;
        r = ghost_write_pages_room(c->out.w, addr, n / c->out.page_size, c->out.page_size, &off, err);
        if (r == 0)
            r = ghost_direct_add(c->mem->direct, m->pid, m->mem_fd, readable, addr, off, n, err);
        c->out.pages += r == 0 ? n / c->out.page_size : 0;
        addr += n;
        len -= n;
    }
    return r;
}

/* Queues a run of pages for writing, skipping single unreadable pages.
 * A write error shows here (or in s_pipe_stop) as -EPIPE from this side:
 * the caller takes the writer's own error from s_pipe_stop. */
static int s_dump_run(dump_ctx_t *c, s_mem_t *m, bool readable, uint64_t addr, size_t len,
                      cairn_error_t *err)
{
    if (m->direct)
        return s_dump_run_direct(c, m, readable, addr, len, err);
    size_t ps = c->out.page_size;
    while (len > 0) {
        size_t n = len < S_SLOT ? len : S_SLOT;
        uint8_t *buf = s_pipe_acquire(m->pipe);
        if (!buf)
            return -EPIPE;
        size_t got = proc_read_mem(m->pid, m->mem_fd, readable, addr, buf, n);
        if (got > 0) {
            s_pipe_submit(m->pipe, addr, got);
            c->out.pages += got / ps;
        }
        size_t adv = got < n ? got + ps : got;   /* skip the page that failed */
        if (adv > len)
            adv = len;
        addr += adv;
        len -= adv;
    }
    return 0;
}

/* PAGEMAP_SCAN (Linux 6.7, <linux/fs.h> of newer headers than Debian 12's):
 * the kernel walks the page tables and returns only the populated ranges,
 * so a huge sparse reservation -- ASan's terabytes of shadow, a runtime's
 * arena -- costs its populated pages, not one pagemap entry per page. */
struct s_page_region {
    uint64_t start, end, categories;
};
struct s_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define S_PAGEMAP_SCAN _IOWR('f', 16, struct s_pm_scan_arg)
#define S_PAGE_IS_FILE (1ull << 2)
#define S_PAGE_IS_PRESENT (1ull << 3)
#define S_PAGE_IS_SWAPPED (1ull << 4)
#define S_SCAN_REGIONS 512

/* Dumps v's present or swapped pages found by PAGEMAP_SCAN (anon_only:
 * not those of the page cache). -ENOTTY when the kernel lacks it (nothing
 * dumped yet: the caller falls back). */
static int s_dump_scanned(dump_ctx_t *c, s_mem_t *m, const proc_vma_t *v, bool anon_only,
                          cairn_error_t *err)
{
    if (c->opts->pagemap_read)
        return -ENOTTY;
    struct s_page_region *reg = malloc(S_SCAN_REGIONS * sizeof(*reg));
    bool readable = v->prot & PROT_READ;
    uint64_t at = v->start;
    int r = reg ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    while (r == 0 && at < v->end) {
        struct s_pm_scan_arg a = {
            .size = sizeof(a), .start = at, .end = v->end,
            .vec = (uint64_t)(uintptr_t)reg, .vec_len = S_SCAN_REGIONS,
            .category_inverted = anon_only ? S_PAGE_IS_FILE : 0,
            .category_mask = anon_only ? S_PAGE_IS_FILE : 0,
            .category_anyof_mask = S_PAGE_IS_PRESENT | S_PAGE_IS_SWAPPED,
            .return_mask = S_PAGE_IS_PRESENT | S_PAGE_IS_SWAPPED,
        };
        long n = ioctl(m->pagemap_fd, S_PAGEMAP_SCAN, &a);
        if (n < 0) {
            r = at == v->start && (errno == ENOTTY || errno == EINVAL)
                    ? -ENOTTY
                    : cairn_error_set(err, -errno, CAIRN_SYSTEM, "PAGEMAP_SCAN of %d at %#llx: %s",
                                      (int)m->pid, (unsigned long long)at, strerror(errno));
            break;
        }
        for (long i = 0; r == 0 && i < n; i++)
            r = s_dump_run(c, m, readable, reg[i].start, (size_t)(reg[i].end - reg[i].start), err);
        if (a.walk_end <= at)
            break;   /* no progress: cannot happen, but never loop on it */
        at = a.walk_end;
    }
    free(reg);
    return r;
}

/* Dumps the pages of one vma that pagemap says are present or swapped
 * (anon_only: and not page-cache pages): with PAGEMAP_SCAN where the
 * kernel has it, else reading pagemap S_PAGEMAP_BATCH entries (512 KiB)
 * at a time: the kernel fills an entry for every page, populated or not,
 * and with 8192 entries per read the calls cost more (9.7 s against 8.5 s
 * for the 14 TiB shadow of an ASan-built program, idle VM). */
#define S_PAGEMAP_BATCH (1u << 16)
static int s_dump_present(dump_ctx_t *c, s_mem_t *m, const proc_vma_t *v, bool anon_only,
                          cairn_error_t *err)
{
    int scanned = s_dump_scanned(c, m, v, anon_only, err);
    if (scanned != -ENOTTY)
        return scanned;
    size_t ps = c->out.page_size, npages = (v->end - v->start) / ps;
    bool readable = v->prot & PROT_READ;
    uint64_t *ent = malloc(S_PAGEMAP_BATCH * sizeof(*ent));
    uint64_t run_start = 0;
    size_t run_len = 0;
    int r = ent ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < npages; i += S_PAGEMAP_BATCH) {
        size_t n = npages - i < S_PAGEMAP_BATCH ? npages - i : S_PAGEMAP_BATCH;
        off_t off = (off_t)((v->start / ps + i) * 8);
        if (pread(m->pagemap_fd, ent, n * 8, off) != (ssize_t)(n * 8)) {
            r = cairn_error_set(err, -EIO, CAIRN_SYSTEM, "pagemap of %d at %#llx",
                                (int)m->pid, (unsigned long long)v->start);
            break;
        }
        for (size_t j = 0; r == 0 && j < n; j++) {
            uint64_t a = v->start + (i + j) * ps;
            /* bit 63 present, 62 swapped, 61 a page-cache page */
            bool file = (ent[j] & (1ull << 63)) && (ent[j] & (1ull << 61));
            if ((ent[j] & (3ull << 62)) && !(anon_only && file)) {
                if (run_len == 0)
                    run_start = a;
                run_len += ps;
            } else if (run_len > 0) {
                r = s_dump_run(c, m, readable, run_start, run_len, err);
                run_len = 0;
            }
        }
    }
    free(ent);
    if (r == 0 && run_len > 0)
        r = s_dump_run(c, m, readable, run_start, run_len, err);
    return r;
}

/* Where the pages of a shared mapping that its object backs end: its size
 * from the mapping's offset, in whole pages; -errno if the object cannot
 * be looked at. */
static int s_object_end(pid_t pid, const proc_vma_t *v, uint64_t *ret_end)
{
    struct stat st;
    int r = s_map_file_stat(pid, v, &st);
    if (r < 0)
        return r;
    uint64_t size = (uint64_t)st.st_size, ps = 4096;
    uint64_t backed = size > v->pgoff ? (size - v->pgoff + ps - 1) / ps * ps : 0;
    *ret_end = backed < v->end - v->start ? v->start + backed : v->end;
    return 0;
}

static int s_write_pages(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm, cairn_error_t *err)
{
    char path[64];
    s_pipe_t q;
    s_mem_t m = { p->pid, -1, -1, NULL };
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)p->pid);
    m.mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)p->pid);
    m.pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = 0;
    if (m.mem_fd < 0 || m.pagemap_fd < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                            strerror(errno));
    for (size_t i = 0; r == 0 && i < vm->n; i++) {
        const proc_vma_t *v = &vm->v[i];
        Cairn__Ghost__VmaKind k;
        r = s_vma_kind(p->pid, v, &k, err);
        int pol = r == 0 ? s_dump_policy(c, v, k) : 0;
        /* Present anonymous pages can always be read; a shared mapping
         * cannot past the end of its object, which the pipeline finds page
         * by page and the in-place copy needs to know first. */
        uint64_t end = v->end;
        m.direct = c->mem->direct &&
                   (pol == 1 || pol == 3 || (pol == 2 && s_object_end(p->pid, v, &end) == 0));
        /* The streaming writer thread only once something is streamed. */
        if (r == 0 && pol != 0 && !m.direct && !m.pipe && (r = s_pipe_start(&q, c, err)) == 0)
            m.pipe = &q;
        if (pol == 1 || pol == 3)
            r = s_dump_present(c, &m, v, pol == 3, err);
        else if (pol == 2 && end > v->start)
            r = s_dump_run(c, &m, v->prot & PROT_READ, v->start, end - v->start, err);
    }
    if (r == 0 && c->mem->direct)
        r = ghost_direct_flush(c->mem->direct, err);   /* before mem_fd closes */
    if (m.pipe) {
        int w = s_pipe_stop(&q, r == 0 || r == -EPIPE ? err : NULL);
        if (r == 0 || r == -EPIPE)
            r = w;
    }
    if (m.mem_fd >= 0)
        close(m.mem_fd);
    if (m.pagemap_fd >= 0)
        close(m.pagemap_fd);
    return r;
}

static int s_write_process_record(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                                  size_t nfds, cairn_error_t *err)
{
    Cairn__Ghost__Process pr = CAIRN__GHOST__PROCESS__INIT;
    Cairn__Ghost__MmLayout mm = CAIRN__GHOST__MM_LAYOUT__INIT;
    s_pstrings_t *s = calloc(1, sizeof(*s));
    if (!s)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int r = s_collect_process(c, p, &pr, &mm, s, err);
    pr.n_vmas = (uint32_t)vm->n;
    pr.n_fds = (uint32_t)nfds;
    if (r == 0) {
        Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
        rec.r_case = CAIRN__GHOST__RECORD__R_PROCESS;
        rec.process = &pr;
        r = s_put(c, &rec, err);
    }
    sig_free_process(&pr);
    creds_free_rlimits(&pr);
    free(s->auxv);
    creds_free(&s->cr);
    free(s);
    return r;
}

/* Everything of one process, in stream order. */
static int s_write_process(dump_ctx_t *c, dump_proc_t *p, cairn_error_t *err)
{
    const proc_vmas_t *vm = &p->vm;   /* frozen since the check read it */
    int *fds = NULL;
    size_t nfds = 0;
    int r = seize_find_vdso_syscall(p, vm, err);
    if (r == 0)
        r = proc_list_dir(p->pid, "fd", &fds, &nfds, err);
    for (size_t i = 0; r == 0 && i < p->nt; i++)
        r = seize_prepare_thread(&p->t[i], err);
    if (r == 0)
        r = s_write_process_record(c, p, vm, nfds, err);
    if (r == 0)
        r = s_write_threads(c, p, err);
    if (r == 0)
        r = s_write_vmas(c, p, vm, err);
    if (r == 0)
        r = s_write_pages(c, p, vm, err);
    if (r == 0)
        r = files_write(c, p, fds, nfds, err);
    free(fds);
    return r;
}

static void s_special_sizes(pid_t pid, uint64_t *vdso, uint64_t *vvar)
{
    proc_vmas_t vm = { 0 };
    *vdso = *vvar = 0;
    if (proc_read_vmas(pid, false, &vm, NULL) < 0)
        return;
    for (size_t i = 0; i < vm.n; i++) {
        if (strcmp(vm.v[i].path, "[vdso]") == 0)
            *vdso += vm.v[i].end - vm.v[i].start;
        else if (strncmp(vm.v[i].path, "[vvar", 5) == 0)
            *vvar += vm.v[i].end - vm.v[i].start;
    }
    proc_vmas_free(&vm);
}

static int s_write_header(dump_ctx_t *c, pid_t root, cairn_error_t *err)
{
    struct utsname u;
    struct timespec ts;
    uname(&u);
    clock_gettime(CLOCK_REALTIME, &ts);
    Cairn__Ghost__ImageHeader h = CAIRN__GHOST__IMAGE_HEADER__INIT;
    h.version = GHOST_IMAGE_VERSION;
    h.kernel_release = u.release;
    h.page_size = c->out.page_size;
    h.created_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    h.root_pid = (uint32_t)root;
    h.cairn_version = CAIRN_VERSION;
    h.n_processes = (uint32_t)c->tree.np;
    s_special_sizes(root, &h.vdso_size, &h.vvar_size);
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_HEADER;
    rec.header = &h;
    return s_put(c, &rec, err);
}

static int s_write_end(dump_ctx_t *c, cairn_error_t *err)
{
    Cairn__Ghost__End e = CAIRN__GHOST__END__INIT;
    e.total_pages = c->out.pages;
    e.total_bytes = ghost_writer_bytes(c->out.w);
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_END;
    rec.end = &e;
    int r = s_put(c, &rec, err);
    return r < 0 ? r : ghost_writer_flush(c->out.w, err);
}

/* Ends an image in a regular file where it ends (a file written over in
 * place may have held a longer one: ghost-dump --in-place) and fsyncs. */
static int s_finish_file(int fd, cairn_error_t *err)
{
    off_t end = lseek(fd, 0, SEEK_CUR);
    if (end < 0 || ftruncate(fd, end) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot end the image: %s",
                               strerror(errno));
    if (fsync(fd) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fsync of the image: %s",
                               strerror(errno));
    return 0;
}

static int s_write_image(dump_ctx_t *c, pid_t root, int out_fd, cairn_error_t *err)
{
    c->out.w = ghost_writer_new(out_fd);
    c->mem = calloc(1, sizeof(*c->mem));
    if (c->mem)
        c->mem->buf = aligned_alloc(4096, S_CHUNK);   /* page-aligned: the kernel copies fastest */
    if (!c->out.w || !c->mem || !c->mem->buf)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn_error_t why;
    int r = ghost_direct_new(out_fd, 0, &c->mem->direct, &why);
    if (r == -EOPNOTSUPP)
        r = 0;   /* a pipe, a socket, a small-page fs...: the pages are streamed */
    else if (r < 0 && err)
        *err = why;
    if (r == 0)
        r = s_write_header(c, root, err);
    for (size_t i = 0; r == 0 && i < c->tree.np; i++)
        r = s_write_process(c, &c->tree.p[i], err);
    if (r == 0)
        r = s_write_end(c, err);
    struct stat st;
    if (r == 0 && fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode))
        r = s_finish_file(out_fd, err);
    return r;
}

/* ==== entry point ====================================================== */

/* Each concern's state, empty. */
static int s_ctx_init(dump_ctx_t *c, cairn_error_t *err)
{
    c->files = files_dump_new();
    c->pipes = pipes_dump_new();
    c->shmem = shmem_dump_new();
    if (!c->files || !c->pipes || !c->shmem)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return 0;
}

static void s_ctx_free(dump_ctx_t *c)
{
    seize_tree_free(&c->tree);
    if (c->mem) {
        free(c->mem->buf);
        ghost_direct_free(c->mem->direct);
        free(c->mem);
    }
    c->files = files_dump_free(c->files);
    c->pipes = pipes_dump_free(c->pipes);
    c->shmem = shmem_dump_free(c->shmem);
    ghost_writer_free(c->out.w);
}

/* The frozen tree's processes each have their own memory
 * (s_own_memory). */
static int s_check_own_memory(const dump_ctx_t *c, cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < c->tree.np; i++)
        if (c->tree.p[i].parent != 0)
            r = tree_own_memory(c->tree.p[i].parent, c->tree.p[i].pid, err);
    return r;
}

/* The check again on the frozen tree; its fds the tree checks looked at
 * into *ret_tfds (the caller frees v). */
static int s_recheck_frozen(dump_ctx_t *c, files_tree_fds_t *ret_tfds, cairn_error_t *err)
{
    files_tree_fds_t tfds = { 0 };
    int r = 0;
    for (size_t i = 0; r == 0 && i < c->tree.np; i++)
        r = s_check_one(c->tree.p[i].pid, getpid(), &tfds, s_seen_find(c->seen, c->tree.p[i].pid),
                        &c->tree.p[i].vm, err);
    if (r == 0)
        r = files_check_tree(&tfds, err);
    if (r == 0)
        r = s_check_own_memory(c, err);
    if (r == 0)
        *ret_tfds = tfds;
    else
        free(tfds.v);
    return r;
}

/* Phases 2-4 on a checked tree; stats->refused says how a failure ended. */
static int s_run(dump_ctx_t *c, pid_t pid, int out_fd, ghost_dump_stats_t *stats,
                 cairn_error_t *err)
{
    uint64_t t0 = s_now_us();
    int r = seize_freeze(&c->tree, pid, err);
    uint64_t t1 = s_now_us();
    files_tree_fds_t tfds = { 0 };
    if (r == 0 && (r = s_recheck_frozen(c, &tfds, err)) < 0) {
        stats->refused = true;
        return r;
    }
    if (r == 0)
        r = shmem_note_fd_memfds(c->shmem, &tfds, err);
    free(tfds.v);
    if (r == 0)
        r = s_write_image(c, pid, out_fd, err);
    if (r < 0)
        return r;
    stats->image_bytes = ghost_writer_bytes(c->out.w);
    stats->pages = c->out.pages;
    stats->processes = (uint32_t)c->tree.np;
    for (size_t i = 0; i < c->tree.np; i++) {
        stats->threads += (uint32_t)c->tree.p[i].nt;
        stats->stopped += c->tree.p[i].t[0].stop_sig != 0;
    }
    stats->copy_threads = (uint32_t)ghost_direct_threads(c->mem->direct);
    stats->freeze_us = t1 - t0;
    stats->dump_us = s_now_us() - t1;
    return 0;
}

/* One attempt; *ret_froze says whether the tree passed the check and was
 * frozen, *ret_began whether the image began to be written. */
static int s_dump_once(pid_t pid, const ghost_dump_opts_t *opts, int out_fd,
                       ghost_dump_stats_t *stats, s_retry_t *rt, bool *ret_froze,
                       bool *ret_began, cairn_error_t *err)
{
    ghost_dump_stats_t s = { 0 };
    s_seen_list_t seen = { 0 };
    *ret_froze = *ret_began = false;
    int r = s_check_tree(pid, &seen, rt, err);
    if (r < 0) {
        s_seen_free(&seen);
        *stats = (ghost_dump_stats_t){ .refused = true, .left_running = true };
        return r;
    }
    dump_ctx_t c = { .opts = opts, .seen = &seen,
                     .out.page_size = (uint32_t)sysconf(_SC_PAGESIZE) };
    *ret_froze = true;
    r = s_ctx_init(&c, err);
    if (r == 0)
        r = s_run(&c, pid, out_fd, &s, err);
    *ret_began = c.out.w != NULL;
    if (r == 0 && !opts->leave_running) {
        seize_kill_all(&c.tree);
    } else {
        s.left_running = seize_release_all(&c.tree);
        if (r < 0)
            cairn_error_append(err, r, "; %s",
                               s.left_running ? "the process was left running"
                                              : "the process could not be resumed cleanly");
    }
    s_ctx_free(&c);
    s_seen_free(&seen);
    *stats = s;
    return r;
}

int ghost_dump(pid_t pid, const ghost_dump_opts_t *opts, int out_fd,
               ghost_dump_stats_t *stats, cairn_error_t *err)
{
    static const ghost_dump_opts_t defaults = { 0 };
    if (!stats || out_fd < 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad arguments");
    opts = opts ? opts : &defaults;
    /* A member that exits while the tree is being frozen, or a zombie
     * the freeze finds (its parent frozen before it reaped it), fails the
     * attempt before anything is written: the tree is let go and looked
     * at again (the check itself already waited for zombies it saw),
     * from the same budget of looks as the check's. */
    s_retry_t rt = { S_TREE_ATTEMPTS };
    int r;
    for (;;) {
        bool froze = false, began = false;
        r = s_dump_once(pid, opts, out_fd, stats, &rt, &froze, &began, err);
        if (r == 0 || !froze || began || !stats->left_running || !s_tree_moved(pid, r) ||
            !s_retry_again(&rt))
            break;
    }
    return r;
}
