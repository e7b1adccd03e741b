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
 *               syscalls (seize.c).
 *  4. write   - records in the order of ghost.proto, each kind written by
 *               its own file: threads (threads.c), vmas (mem.c) and
 *               pages (pages.c), fds (files.c: kcmp sharing; pipes.c: contents
 *               copied with tee(2), nothing consumed; shmem.c: a memfd's
 *               contents once per image as object_pages). Then detach
 *               (restoring registers, mask and the interrupted syscall,
 *               signals.c) or SIGKILL after fsync.
 *
 * Pre-copy (opts->precopy, docs/ghost.md): after the check and before
 * the freeze, the tree's writes are tracked (track.c) and rounds of page
 * copies go into the stream while it runs (pages_round): every present
 * page, then what was written since, until a round is small enough or
 * the rounds run out. The phases then run as above, on the same stream;
 * the frozen part writes a tracked page that nothing wrote since the last
 * round as a kept_pages record. The tracking is undone whatever happens.
 *
 * This file runs the phases; the state of each concern (the frozen tree,
 * the page writer, fd references, pipes done, memfd objects) is owned by
 * its kind's file and held side by side in dump_ctx_t (engine.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cairn-config.h"
#include "creds.h"
#include "dump.h"
#include "engine.h"
#include "files.h"
#include "inetsk.h"
#include "lazy.h"
#include "mem.h"
#include "ns.h"
#include "owner.h"
#include "pages.h"
#include "pipes.h"
#include "procstate.h"
#include "seize.h"
#include "shmem.h"
#include "signals.h"
#include "verify.h"
#include "threads.h"
#include "track.h"
#include "tree.h"
#include "tty.h"
#include "util/clock.h"

#define S_PF_KTHREAD 0x00200000ul
/* A tree whose short-lived members come and go (a shell loop) is looked
 * at again this many times, this long apart, before its last failure is
 * reported (s_tree_moved): 20 x 2 ms, long enough for a parent to reap.
 * One budget serves a whole check or dump, the check's looks and the
 * dump's attempts together (s_retry_t). */
#define S_TREE_ATTEMPTS 20
#define S_TREE_RETRY_NS 2000000

/* ---- check: /proc only, nothing changes -------------------------------- */

/* One process of the tree rooted at root: each refusal into rs and on
 * (reasons.h). The root (checked first) fills *ns with what its
 * namespaces make of the tree (ns.c), which every other member must
 * share; a refusal there ends the check, since the members are judged by
 * it. A kernel thread, the dumper and a process the owner may not dump
 * are refused as a whole (nothing more is looked at); a zombie or a
 * process gone ends the look (-ESRCH: the tree moved). */
static int s_check_one(pid_t pid, pid_t root, dump_ns_t *ns, pid_t tracer,
                       const ghost_owner_t *owner, files_tree_fds_t *tfds,
                       const proc_vmas_t *before, proc_vmas_t *keep,
                       ghost_reasons_t *rs, cairn_error_t *err)
{
    proc_stat_t st;
    int r = proc_read_stat(pid, &st, err);
    if (r < 0)
        return r == -ENOENT || r == -ESRCH
                   ? cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d", (int)pid)
                   : r;
    if (pid == getpid() || pid == getppid())
        return ghost_reason_add(rs, cairn_error_set(err, -EINVAL, CAIRN_FAILED_PRECONDITION,
                                                    "process %d is the dumper or its parent",
                                                    (int)pid),
                                err, pid, "process");
    if (st.flags & S_PF_KTHREAD)
        return ghost_reason_add(rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                                    "process %d is a kernel thread", (int)pid),
                                err, pid, "process");
    if (proc_state_exited(st.state))
        return cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                               "process %d is a zombie", (int)pid);
    if (pid == root && (r = ns_dump_root(pid, ns, err)) < 0)
        return r;
    r = creds_check_threads(pid, tracer, owner, rs, err);
    if (r == CREDS_DENIED)
        return 0;
    if (r == 0 && (r = ns_dump_member(ns, root, pid, err)) < 0)
        r = ghost_reason_add(rs, r, err, pid, "namespace");
    if (r < 0 || (r = mem_check_vmas(pid, before, keep, rs, err)) < 0 ||
        (r = procstate_check(pid, &st, before != NULL, rs, err)) < 0 ||
        (r = tty_check_process(pid, root, &st, rs, err)) < 0)
        return r;
    return files_check(pid, tfds, rs, err);
}

/* One look at the tree rooted at pid (s_check_tree): rs holds what it
 * found, and the first reason is its error. */
static int s_check_tree_once(pid_t pid, const ghost_dump_opts_t *opts, mem_seen_t *seen,
                             ghost_reasons_t *rs, dump_ns_t *ns, cairn_error_t *err)
{
    pid_t *tree = NULL, p = pid;
    size_t n = 0;
    const ghost_owner_t *owner = opts ? opts->owner : NULL;
    files_tree_fds_t tfds = { .ghost_file_max = opts ? opts->ghost_file_max : 0 };
    ghost_reasons_clear(rs);
    int r = tree_list(pid, &tree, &n, err);
    if (r == 0 && seen && !(seen->v = calloc(n, sizeof(*seen->v))))
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < n; i++) {
        proc_vmas_t *keep = NULL;
        size_t kept = rs->n, found = rs->total;
        p = tree[i * 2];
        if (seen) {
            seen->v[i].pid = p;
            keep = &seen->v[i].vm;
            seen->n = i + 1;
        }
        r = s_check_one(p, pid, ns, 0, owner, &tfds, NULL, keep, rs, err);
        if (r == 0 && i > 0)
            r = tree_own_memory(tree[i * 2 + 1], p, err);
        bool refused = r < 0 || rs->total > found;
        if (refused && i > 0 && tree_vanished(p)) {
            /* Exited and reaped while it was looked at (a shell loop's
             * commands do): the check of the frozen tree judges whoever
             * is there then. */
            if (keep)
                seen->v[i].pid = 0;
            files_forget(&tfds, p);
            ghost_reasons_cut(rs, kept, found);
            r = 0;
        } else if (refused && r != -ESRCH && i > 0 && tree_gone(p)) {
            r = cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                                "process %d is a zombie", (int)p);
        }
    }
    if (r == 0)
        r = files_check_tree(&tfds, rs, err);
    if (r == 0)
        r = mem_check_shared_outside(tree, n, 2, rs, err);
    if (r == 0)
        r = ghost_reasons_first(rs, err);
    else
        ghost_reasons_put_first(rs, r, err, p, "process");
    free(tfds.v);
    free(tree);
    return r;
}

/* Whether a look at the tree rooted at root that failed with r met a tree
 * whose members changed under it -- a process or thread other than the
 * root exited, or was a zombie its parent had not reaped yet (every
 * "exited" and "zombie" failure is -ESRCH), or a vfork child had not
 * called exec yet (-EBUSY, tree_own_memory) -- rather than something
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

/* The check of the tree rooted at pid (every member the owner's, when one
 * is given); with seen, the vmas read of each process are kept there. A
 * zombie in it, or a vfork child sharing its parent's memory, is looked at
 * again while rt allows before it is refused: one that its parent is about
 * to reap, or that is about to exec, is no reason to refuse. */
static int s_check_tree(pid_t pid, const ghost_dump_opts_t *opts, mem_seen_t *seen,
                        s_retry_t *rt, ghost_reasons_t *rs, cairn_error_t *err)
{
    dump_ns_t ns = { 0 };   /* the frozen tree's is the one that counts */

    if (pid <= 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad pid %d", (int)pid);
    for (;;) {
        int r = s_check_tree_once(pid, opts, seen, rs, &ns, err);
        if (r == 0 || !s_tree_moved(pid, r) || !s_retry_again(rt))
            return r;
        if (seen)
            mem_seen_free(seen);
    }
}

int ghost_check(pid_t pid, const ghost_dump_opts_t *opts, cairn_error_t *err)
{
    s_retry_t rt = { S_TREE_ATTEMPTS };
    ghost_reasons_t own = { 0 };
    ghost_reasons_t *rs = opts && opts->reasons ? opts->reasons : &own;
    int r = s_check_tree(pid, opts, NULL, &rt, rs, err);
    ghost_reasons_free(&own);
    return r;
}

/* ---- freeze: then the check again, on the frozen tree ------------------ */

/* The frozen tree's processes each have their own memory
 * (tree_own_memory). */
static int s_check_own_memory(const dump_ctx_t *c, cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < c->tree.np; i++)
        if (c->tree.p[i].parent != 0)
            r = tree_own_memory(c->tree.p[i].parent, c->tree.p[i].pid, err);
    return r;
}

/* The check again on the frozen tree; its fds the tree checks looked at
 * into *ret_tfds (the caller frees v). For an owner this is the check that
 * counts: a frozen process can change neither its credentials nor its
 * dumpable flag, nor fork, until it is let go, so what is judged here is
 * what gets written (the check before the freeze only spares the tree a
 * stop when it would be refused anyway). */
static int s_recheck_frozen(dump_ctx_t *c, files_tree_fds_t *ret_tfds, cairn_error_t *err)
{
    files_tree_fds_t tfds = { .ghost_file_max = c->opts->ghost_file_max };
    ghost_reasons_t *rs = c->reasons;
    pid_t pid = 0;
    int r = 0;
    ghost_reasons_clear(rs);
    for (size_t i = 0; r == 0 && i < c->tree.np; i++) {
        dump_proc_t *p = &c->tree.p[i];
        pid = p->pid;
        /* What the check before the freeze read spares the frozen one an
         * smaps walk only where the freeze must be short (post-copy,
         * pre-copy, deltas): madvise and mlock change VmFlags without
         * changing the layout, so elsewhere smaps is read again (mem.h). */
        bool hurried = c->opts->postcopy || c->opts->precopy || c->opts->delta;
        r = s_check_one(p->pid, c->tree.p[0].pid, &c->ns, getpid(), c->opts->owner, &tfds,
                        hurried ? mem_seen_find(c->seen, p->pid) : NULL, &p->vm, rs, err);
    }
    if (r == 0)
        r = files_check_tree(&tfds, rs, err);
    if (r == 0)
        r = s_check_own_memory(c, err);
    if (r == 0)
        r = ghost_reasons_first(rs, err);
    else
        ghost_reasons_put_first(rs, r, err, pid, "process");
    if (r == 0)
        *ret_tfds = tfds;
    else
        free(tfds.v);
    return r;
}

/* ---- collect ----------------------------------------------------------- */

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
    char *timers;          /* /proc/PID/timers (verify.h) */
    creds_dump_t cr;       /* the record's creds point into it */
    procstate_dump_t ps;   /* the record's procstate points into it */
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
    pr->pid = (uint32_t)p->vpid;   /* the ids inside, for a job (ns.c) */
    pr->stop_signal = (uint32_t)p->t[0].stop_sig;
    pr->ppid = (uint32_t)ns_dump_vpid(&c->tree, p->parent);
    pr->pgid = (uint32_t)p->vpgid, pr->sid = (uint32_t)p->vsid;
    pr->comm = s->comm, pr->cwd = s->cwd;
    pr->umask = status.umask;
    tty_collect_process(&c->tree, &st, pr);
    pr->mm = mm;
    pr->n_threads = (uint32_t)p->nt;
    pr->lazy_resident_pages = c->lazy ? lazy_resident_pages(p->pid) : 0;
    c->lazy_resident += pr->lazy_resident_pages;
    if ((r = creds_collect_rlimits(p, pr, err)) < 0 ||
        (r = sig_collect_sigactions(p, leader, &status, pr, err)) < 0 ||
        (r = sig_collect_itimers(p, leader, pr, err)) < 0 ||
        (r = sig_collect_pending(p->pid, true, &pr->shared_pending, &pr->n_shared_pending,
                                 err)) < 0 ||
        (r = creds_collect(p, leader, &s->cr, pr, err)) < 0 ||
        (r = procstate_collect(p, leader, &s->ps, err)) < 0)
        return r;
    pr->creds = &s->cr.creds;
    if ((r = ghost_verify_collect_process(p->pid, pr, &s->timers, err)) < 0)
        return r;
    pr->procstate = &s->ps.ps;
    return s_collect_mm(p, leader, &st, mm, s, err);
}

/* ---- write ------------------------------------------------------------- */

static int s_put(dump_ctx_t *c, Cairn__Ghost__Record *rec, cairn_error_t *err)
{
    return ghost_write_record(c->out.w, rec, err);
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
    free(s->timers);
    creds_free(&s->cr);
    procstate_free(&s->ps);
    free(s);
    return r;
}

/* The calling thread's nanoseconds on a CPU and waiting on a runqueue
 * (/proc/thread-self/schedstat); both 0 where the kernel keeps none. */
static void s_schedstat(uint64_t *ret_cpu_ns, uint64_t *ret_wait_ns)
{
    unsigned long long cpu = 0, wait = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "re");
    if (f && fscanf(f, "%llu %llu", &cpu, &wait) != 2)
        cpu = wait = 0;
    if (f)
        fclose(f);
    *ret_cpu_ns = cpu;
    *ret_wait_ns = wait;
}

/* Adds the time since *at to *step and moves *at to now. */
static void s_step(uint64_t *step, uint64_t *at)
{
    uint64_t now = cairn_now_us();
    *step += now - *at;
    *at = now;
}

/* Everything of one process, in stream order; each part's time into st. */
static int s_write_process(dump_ctx_t *c, dump_proc_t *p, ghost_dump_steps_t *st,
                           cairn_error_t *err)
{
    const proc_vmas_t *vm = &p->vm;   /* frozen since the check read it */
    int *fds = NULL;
    size_t nfds = 0;
    uint64_t at = cairn_now_us();
    int r = seize_find_vdso_syscall(p, vm, err);
    if (r == 0)
        r = proc_list_dir(p->pid, "fd", &fds, &nfds, err);
    if (r == 0)
        r = procstate_check_frozen(p, err);
    for (size_t i = 0; r == 0 && i < p->nt; i++)
        r = seize_prepare_thread(&p->t[i], err);
    if (r == 0)
        r = s_write_process_record(c, p, vm, nfds, err);
    if (r == 0)
        r = threads_write(c, p, err);
    s_step(&st->state_us, &at);
    if (r == 0)
        r = mem_write_vmas(c, p, vm, err);
    s_step(&st->vmas_us, &at);
    if (r == 0)
        r = pages_write(c, p, vm, err);
    s_step(&st->pages_us, &at);
    if (r == 0)
        r = files_write(c, p, fds, nfds, err);
    s_step(&st->files_us, &at);
    free(fds);
    return r;
}

/* ImageHeader.placed_pid: the process with the most resident anonymous
 * memory -- a job's program, not its small reaper, whose pages come
 * first -- as the image names it; 0 when none holds any. */
static uint32_t s_placed_pid(const dump_tree_t *t)
{
    uint64_t best = 0;
    uint32_t pid = 0;
    for (size_t i = 0; i < t->np; i++) {
        uint64_t n = lazy_resident_pages(t->p[i].pid);
        if (n > best) {
            best = n;
            pid = (uint32_t)t->p[i].vpid;
        }
    }
    return pid;
}

static int s_write_header(dump_ctx_t *c, pid_t root, cairn_error_t *err)
{
    struct utsname u;
    struct timespec ts;
    uname(&u);
    clock_gettime(CLOCK_REALTIME, &ts);
    Cairn__Ghost__ImageHeader h = CAIRN__GHOST__IMAGE_HEADER__INIT;
    h.version = c->opts->delta  ? GHOST_IMAGE_VERSION_DELTA
                : c->opts->track ? GHOST_IMAGE_VERSION
                : c->track       ? GHOST_IMAGE_VERSION_PRECOPY
                                 : GHOST_IMAGE_VERSION;
    h.parent = c->opts->delta ? (char *)c->opts->parent : (char *)"";
    h.parent_id = c->opts->delta ? c->opts->parent_id : 0;
    h.image_id = c->opts->image_id;
    h.kernel_release = u.release;
    h.page_size = c->out.page_size;
    h.created_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    h.root_pid = (uint32_t)ns_dump_vpid(&c->tree, root);
    h.job = c->ns.job;
    h.lazy = c->lazy != NULL;
    h.root_host_pid = c->ns.job ? (uint32_t)root : 0;
    h.cairn_version = CAIRN_VERSION;
    h.n_processes = (uint32_t)c->tree.np;
    h.placed_pid = s_placed_pid(&c->tree);
    mem_special_sizes(root, &h.vdso_size, &h.vvar_size);
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
 * place may have held a longer one: ghost-dump --in-place). */
static int s_cut_file(int fd, cairn_error_t *err)
{
    off_t end = lseek(fd, 0, SEEK_CUR);
    if (end < 0 || ftruncate(fd, end) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot end the image: %s",
                               strerror(errno));
    return 0;
}

static int s_sync_file(int fd, cairn_error_t *err)
{
    if (fsync(fd) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fsync of the image: %s",
                               strerror(errno));
    return 0;
}

/* The image into out_fd. A regular file is fsync'ed here only when the
 * tree may not run on afterwards (killed, or held for someone who may
 * kill it): otherwise *ret_sync is set and the caller syncs it once the
 * tree is let go -- durability is not worth a longer stop, and the image
 * is only reported written once it is durable. */
static int s_write_image(dump_ctx_t *c, pid_t root, int out_fd, ghost_dump_steps_t *steps,
                         bool *ret_sync, cairn_error_t *err)
{
    uint64_t at = cairn_now_us();
    if (!c->out.w)
        c->out.w = ghost_writer_new(out_fd);
    int r = c->out.w ? pages_dump_start(c, out_fd, err)
                     : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    c->out.began = true;
    if (r == 0)
        r = s_write_header(c, root, err);
    s_step(&steps->state_us, &at);
    for (size_t i = 0; r == 0 && i < c->tree.np; i++)
        r = s_write_process(c, &c->tree.p[i], steps, err);
    at = cairn_now_us();
    if (r == 0)
        r = s_write_end(c, err);
    struct stat st;
    bool file = r == 0 && fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
    if (file)
        r = s_cut_file(out_fd, err);
    s_step(&steps->end_us, &at);
    bool later = c->opts->leave_running && !c->opts->hold;
    if (file && r == 0 && !later) {
        r = s_sync_file(out_fd, err);
        s_step(&steps->sync_us, &at);   /* else none in the freeze: 0, not a
                                           timed no-op (1 us failed a test) */
    }
    *ret_sync = file && r == 0 && later;
    return r;
}

/* ---- entry point ------------------------------------------------------- */

/* Each concern's state, empty. */
static int s_ctx_init(dump_ctx_t *c, cairn_error_t *err)
{
    c->files = files_dump_new();
    c->pipes = pipes_dump_new();
    c->shmem = shmem_dump_new();
    if (c->opts->postcopy && !(c->lazy = lazy_src_new()))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (!c->files || !c->pipes || !c->shmem)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return 0;
}

static void s_ctx_free(dump_ctx_t *c)
{
    seize_tree_free(&c->tree);
    c->pages = pages_dump_free(c->pages);
    c->files = files_dump_free(c->files);
    c->pipes = pipes_dump_free(c->pipes);
    c->shmem = shmem_dump_free(c->shmem);
    c->lazy = lazy_src_free(c->lazy);
    if (!c->out.borrowed)
        ghost_writer_free(c->out.w);
}

/* Phases 2-4 on a checked tree; stats->refused says how a failure ended. */
static int s_run(dump_ctx_t *c, pid_t pid, int out_fd, ghost_dump_stats_t *stats,
                 bool *ret_sync, cairn_error_t *err)
{
    uint64_t t0 = cairn_now_us();
    int r = seize_freeze(&c->tree, pid, err);
    uint64_t t1 = cairn_now_us(), at = t1;
    stats->steps.seize_us = t1 - t0;
    files_tree_fds_t tfds = { 0 };
    if (r == 0 && (r = s_recheck_frozen(c, &tfds, err)) < 0) {
        stats->refused = true;
        return r;
    }
    if (r == 0)
        r = ns_dump_ids(&c->ns, &c->tree, err);
    if (r == 0)
        r = shmem_note_fd_memfds(c->shmem, &tfds, err);
    free(tfds.v);
    s_step(&stats->steps.check_us, &at);
    if (r == 0)
        r = s_write_image(c, pid, out_fd, &stats->steps, ret_sync, err);
    if (r < 0)
        return r;
    stats->image_bytes = ghost_writer_bytes(c->out.w);
    stats->pages = c->out.pages;
    stats->processes = (uint32_t)c->tree.np;
    for (size_t i = 0; i < c->tree.np; i++) {
        stats->threads += (uint32_t)c->tree.p[i].nt;
        stats->stopped += c->tree.p[i].t[0].stop_sig != 0;
    }
    stats->copy_threads = (uint32_t)pages_copy_threads(c->pages);
    stats->kept_pages = c->out.kept;
    stats->lazy_pages = lazy_src_pages(c->lazy);
    stats->lazy_resident = c->lazy_resident;
    for (size_t i = 0; c->opts->track && i < c->tree.np; i++)
        stats->untracked += !track_find(c->track, c->tree.p[i].pid);
    stats->job = c->ns.job;
    stats->freeze_us = t1 - t0;
    stats->dump_us = cairn_now_us() - t1;
    return 0;
}

/* What pre-copy hands the freeze: the stream the rounds began and the
 * tracking (both NULL without pre-copy). */
typedef struct s_pre {
    ghost_writer_t *w;
    track_t *track;
    const ghost_dump_stats_t *st;   /* the rounds' figures, NULL without */
} s_pre_t;

/* Post-copy: the frozen tree serves its lazy pages (lazy_serve); whether
 * it must die then. Once served, its pages may be half on the target,
 * which may run: it dies, unless the holder says `resume` -- while
 * serving, or after a page source that broke (the target never ran). */
static bool s_serve(dump_ctx_t *c, const ghost_dump_opts_t *opts, ghost_dump_stats_t *s)
{
    s->served = true;
    lazy_serve_end_t e = lazy_serve(c->lazy, opts->pages_fd, opts->hold_fd, &s->serve,
                                    &s->serve_error);
    if (e == LAZY_RESUMED)
        return false;
    if (e == LAZY_SERVED)
        return true;
    s->serve_broken = true;
    return !lazy_hold_resumes(opts->hold_fd);
}

static void s_precopy_stats(const ghost_dump_stats_t *pre_st, bool wrote,
                            ghost_dump_stats_t *stats);

/* One attempt; *ret_froze says whether the tree passed the check and was
 * frozen, *ret_began whether the image began to be written. */
static int s_dump_once(pid_t pid, const ghost_dump_opts_t *opts, const s_pre_t *pre,
                       int out_fd, ghost_dump_stats_t *stats, s_retry_t *rt,
                       ghost_reasons_t *rs, bool *ret_froze, bool *ret_began,
                       cairn_error_t *err)
{
    ghost_dump_stats_t s = { 0 };
    mem_seen_t seen = { 0 };
    *ret_froze = *ret_began = false;
    int r = s_check_tree(pid, opts, &seen, rt, rs, err);
    if (r < 0) {
        mem_seen_free(&seen);
        *stats = (ghost_dump_stats_t){ .refused = true, .left_running = true };
        return r;
    }
    dump_ctx_t c = { .opts = opts, .seen = &seen, .reasons = rs, .track = pre->track,
                     .out = { .w = pre->w, .borrowed = pre->w != NULL,
                              .page_size = (uint32_t)sysconf(_SC_PAGESIZE) } };
    *ret_froze = true;
    bool sync_after = false;
    /* Only a freeze that copies what changed is hurried: a full one
     * copies the whole tree, for seconds, which the node's daemons must
     * not lose a CPU to. */
    seize_sched_t sched = { .changed = false };
    if (opts->delta || opts->precopy)
        seize_hurry(&sched);
    uint64_t cpu0, wait0, cpu1, wait1;
    s_schedstat(&cpu0, &wait0);
    uint64_t t0 = cairn_now_us();
    r = s_ctx_init(&c, err);
    if (r == 0)
        r = s_run(&c, pid, out_fd, &s, &sync_after, err);
    *ret_began = c.out.began;
    /* Held (migration): the tree stays frozen until the holder decides;
     * its answer replaces leave_running. */
    bool kill_it = r == 0 && !opts->leave_running;
    if (r == 0 && opts->hold) {
        s.held = true;
        if (pre->st)   /* the held line reports the rounds too (migrate.c) */
            s_precopy_stats(pre->st, true, &s);
        int verdict = opts->hold(opts->hold_data, &s);
        kill_it = verdict != GHOST_HOLD_RESUME;
        if (verdict == GHOST_HOLD_SERVE && c.lazy)
            kill_it = s_serve(&c, opts, &s);
    }
    uint64_t released = cairn_now_us();
    /* Before the tree runs again: its connections out of repair mode. */
    if (!kill_it)
        c.inet = inetsk_dump_end(c.inet, false);
    if (kill_it) {
        seize_kill_all(&c.tree);
        s.killed = true;
    } else {
        s.left_running = seize_release_all(&c.tree);
        if (r < 0)
            cairn_error_append(err, r, "; %s",
                               s.left_running ? "the process was left running"
                                              : "the process could not be resumed cleanly");
    }
    s.frozen_us = cairn_now_us() - t0;
    /* Killed: the locks between its own connections lifted (one nft run)
     * once nobody waits for it. */
    c.inet = inetsk_dump_end(c.inet, true);
    s.steps.release_us = t0 + s.frozen_us - released;
    s_schedstat(&cpu1, &wait1);
    s.dumper_cpu_us = (cpu1 - cpu0) / 1000;
    s.dumper_runqueue_us = (wait1 - wait0) / 1000;
    s.dumper_asleep_us = s.frozen_us > s.dumper_cpu_us + s.dumper_runqueue_us
                             ? s.frozen_us - s.dumper_cpu_us - s.dumper_runqueue_us
                             : 0;
    seize_hurry_end(&sched);
    if (r == 0 && sync_after) {   /* the tree runs again: now make it last */
        r = s_sync_file(out_fd, err);
        s.durable_us = cairn_now_us() - t0 - s.frozen_us;
        if (r < 0)
            cairn_error_append(err, r, "; %s", s.left_running
                                                    ? "the process was left running"
                                                    : "the process could not be resumed "
                                                      "cleanly");
    }
    s_ctx_free(&c);
    mem_seen_free(&seen);
    *stats = s;
    return r;
}

/* ---- pre-copy ---------------------------------------------------------- */

/* Whether the rounds are done after one that copied `bytes` (prev: the
 * one before): small enough, out of rounds, or not getting smaller (the
 * tree writes faster than the rounds copy: more rounds would not shorten
 * the freeze). */
static bool s_rounds_done(const ghost_dump_opts_t *o, uint32_t done, uint64_t bytes,
                          uint64_t prev)
{
    return bytes <= o->round_until || done >= o->rounds || (done >= 3 && bytes >= prev);
}

/* The check, then the tracking and the rounds while the tree runs, into
 * pre (the caller frees it); the figures into *st. A refusal (the check,
 * a kernel without what tracking needs) leaves the tree untouched. */
static int s_precopy(pid_t pid, const ghost_dump_opts_t *opts, int out_fd, s_retry_t *rt,
                     ghost_reasons_t *rs, s_pre_t *pre, ghost_dump_stats_t *st,
                     cairn_error_t *err)
{
    st->refused = st->left_running = true;
    if (opts->rounds < 1 || opts->rounds > GHOST_MAX_ROUNDS)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pre-copy rounds %u: 1 to %u", opts->rounds, GHOST_MAX_ROUNDS);
    if (opts->pagemap_read)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pre-copy finds written pages with PAGEMAP_SCAN: it cannot "
                               "read pagemap instead");
    int r = s_check_tree(pid, opts, NULL, rt, rs, err);
    if (r < 0)
        return r;
    r = track_start(pid, &pre->track, &st->track_us, err);
    st->refused = r < 0 && err && err->code == CAIRN_UNSUPPORTED;
    if (r < 0)
        return r;
    if (!(pre->w = ghost_writer_new(out_fd)))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    uint32_t ps = (uint32_t)sysconf(_SC_PAGESIZE);
    for (uint64_t prev = UINT64_MAX; r == 0;) {
        uint64_t bytes = 0;
        r = pages_round(pre->w, pre->track, st->rounds, ps, &bytes, err);
        if (r < 0)
            break;
        st->round_bytes[st->rounds++] = bytes;
        st->precopy_bytes += bytes;
        if (s_rounds_done(opts, st->rounds, bytes, prev))
            break;
        prev = bytes;
    }
    /* The rounds' bytes reach the disk while the tree still runs: the
     * fsync at the end of the frozen part then has only its own to
     * write. */
    struct stat sb;
    if (r == 0 && (r = ghost_writer_flush(pre->w, err)) == 0 && fstat(out_fd, &sb) == 0 &&
        S_ISREG(sb.st_mode) && fdatasync(out_fd) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fdatasync of the image: %s",
                            strerror(errno));
    return r;
}

/* The pre-copy figures of pre_st into the dump's *stats. */
static void s_precopy_stats(const ghost_dump_stats_t *pre_st, bool wrote,
                            ghost_dump_stats_t *stats)
{
    stats->rounds = pre_st->rounds;
    memcpy(stats->round_bytes, pre_st->round_bytes, sizeof(stats->round_bytes));
    stats->precopy_bytes = pre_st->precopy_bytes;
    stats->track_us = pre_st->track_us;
    stats->began = stats->began || wrote;
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
    ghost_reasons_t own = { 0 };
    ghost_reasons_t *rs = opts->reasons ? opts->reasons : &own;
    *stats = (ghost_dump_stats_t){ .refused = true, .left_running = true };
    if (opts->track && (opts->precopy || opts->hold || !opts->leave_running))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "an incremental checkpoint leaves the tree running, "
                               "without pre-copy or a hold");
    if (opts->delta && (!opts->track || !opts->parent || !opts->parent[0]))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "a delta needs the tracking and its parent");
    ghost_dump_stats_t pre_st = { 0 };
    s_pre_t pre = { NULL, opts->track, opts->precopy ? &pre_st : NULL };
    int r = opts->precopy ? s_precopy(pid, opts, out_fd, &rt, rs, &pre, &pre_st, err) : 0;
    if (r < 0)   /* the tree ran all along */
        *stats = (ghost_dump_stats_t){ .refused = pre_st.refused, .left_running = true };
    for (bool again = r == 0; again;) {
        bool froze = false, began = false;
        r = s_dump_once(pid, opts, &pre, out_fd, stats, &rt, rs, &froze, &began, err);
        stats->began = began;
        again = r < 0 && froze && !began && stats->left_running && s_tree_moved(pid, r) &&
                s_retry_again(&rt);
    }
    if (opts->precopy)
        s_precopy_stats(&pre_st, pre.w != NULL, stats);
    /* The tree runs on (or is dead): its pages are no longer tracked --
     * unless the tracking is the caller's (incremental checkpoints). */
    if (!opts->track)
        track_free(pre.track);
    ghost_writer_free(pre.w);
    if (r == 0 || !stats->refused)
        ghost_reasons_clear(rs);   /* a failure, not a refusal: no reasons */
    ghost_reasons_free(&own);
    return r;
}
