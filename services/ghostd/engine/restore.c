/* restore.c - ghost_restore: a checkpoint image back to a running process
 * tree.
 *
 * Design, in four stages, each a block of this file that calls into the
 * file of each object kind (mem.c, pages.c, threads.c, signals.c,
 * creds.c, files.c, pipes.c, shmem.c, tree.c, seize.c):
 *
 *  1. load: the stream is read once, in order. Small records are kept per
 *     process; page data goes straight into one staging memfd (read into
 *     a window mapped over it, no intermediate copy) -- or, for one
 *     process of a stream, into place in our own memory, which it will
 *     inherit (restore-inplace.c) -- and is remembered as
 *     runs (vaddr, len, offset) of its process, a memfd's object pages as
 *     runs (shmid, offset, len) of the image. The image is validated as
 *     it comes: header version and page size, pages inside dumped vmas,
 *     counts matching each process record and the End record, a tree whose
 *     root comes first and every parent before its children.
 *  2. plan: everything is decided and opened in the caller before any
 *     process exists. Per process: the vdso/vvar moves (same kernel, same
 *     layout, else a refusal) and one anonymous "region" at an address
 *     free both here and in its target layout, holding the blob, its
 *     argument block, one rt_sigframe per thread (registers with syscall
 *     restart applied, sigmask, altstack, xsave with the sigframe magics),
 *     the blob's stacks and the vdso scratch window. For the tree: the
 *     session and group of every process (refusing what fork cannot
 *     recreate), one pipe per pipe_id refilled with its unread bytes, one
 *     memfd per shared-memory object (one an fd refers to is sized and
 *     filled from its object pages, which win over its vmas' pages: the
 *     vmas map it MAP_SHARED and take no pages of their own), one open
 *     file description per group of fds sharing one (dup, fork), opened
 *     with its flags at its offset, a shared pid table, the control
 *     pipes; all these "helper" fds sit above the highest fd of any
 *     process, so every process inherits them all and none collides with
 *     an fd number it must restore.
 *  3. child: ghost-restore clone3s the root (set_tid = original pid, or a
 *     fresh pid) and seizes it with PTRACE_O_TRACEFORK|TRACECLONE|EXITKILL
 *     before letting it go. Each process, in its libc stage, closes what
 *     is not a helper, calls setsid() if it leads its session or
 *     setpgid(0, 0) if it leads its group, writes its pid in the table and
 *     clone3s its own children (set_tid again), which the kernel attaches
 *     to our trace at birth and which run the same stage - so parents come
 *     before children and getppid() is right. Then a barrier (a byte on
 *     `ready` from each process; our byte on `sync` for each once all have
 *     one): every group leader exists, so a process joins a group led by
 *     another (sibling or ancestor, by the table: new pids work too). Then
 *     it dup3s its pipe ends and shared descriptions into their numbers
 *     (each fd keeps its own close-on-exec flag), reopens the rest,
 *     sets cwd, umask, personality, comm, handlers, drops glibc's rseq
 *     and jumps into its blob.
 *  4. supervise: the caller traces every task of the tree. Every thread
 *     stops itself with SIGSTOP right before its rt_sigreturn; the caller
 *     lets each run through rt_sigreturn and holds it at the syscall exit.
 *     Only once every thread of every process is held does it unmap each
 *     region by running the blob's `syscall` gadget in that process's
 *     leader (all signals blocked meanwhile), put registers and masks back
 *     and detach them all: the tree starts together. Any exit, unexpected
 *     signal or timeout on the way kills every task of the tree (and any
 *     that is born meanwhile); the status pipe says which process and
 *     step failed and why.
 *
 * Sessions and groups are decided and recreated by tree.c (its opening
 * comment says how); the helper fds and control pipes are rst.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "creds.h"
#include "chain.h"
#include "engine.h"
#include "files.h"
#include "inetsk.h"
#include "locks.h"
#include "lazyrst.h"
#include "mem.h"
#include "ns.h"
#include "owner.h"
#include "pages.h"
#include "procstate.h"
#include "restore.h"
#include "verify.h"
#include "restore-inplace.h"
#include "room.h"
#include "seize.h"
#include "shmem.h"
#include "signals.h"
#include "threads.h"
#include "tree.h"
#include "tty.h"
#include "unixsk.h"
#include "util/clock.h"

extern const unsigned char ghost_restorer_blob[];
extern const size_t ghost_restorer_blob_size;

/* ---- load -------------------------------------------------------------- */

#define S_MAX_PROCS 4096   /* processes in one image (bounds allocations) */

static int s_check_header(rst_image_t *im, const Cairn__Ghost__ImageHeader *h,
                          cairn_error_t *err)
{
    long page = sysconf(_SC_PAGESIZE);

    if (h->version < GHOST_IMAGE_VERSION_MIN || h->version > GHOST_IMAGE_VERSION_MAX)
        return cairn_error_set(err, -EBADMSG, CAIRN_BAD_VERSION,
                               "image version %u, this restorer reads %u to %u",
                               h->version, GHOST_IMAGE_VERSION_MIN, GHOST_IMAGE_VERSION_MAX);
    if ((im->n_rounds > 0) != (h->version == GHOST_IMAGE_VERSION_PRECOPY))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: version %u %s pre-copy rounds", h->version,
                               im->n_rounds ? "after" : "without");
    bool delta = h->version == GHOST_IMAGE_VERSION_DELTA;
    if (delta != (h->parent && h->parent[0]))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: version %u %s a parent", h->version,
                               delta ? "without" : "with");
    if (delta && !im->chain)
        return cairn_error_set(err, -EBADMSG, CAIRN_FAILED_PRECONDITION,
                               "image is a delta of %s: restore it from its file, "
                               "beside its parent chain", h->parent);
    if (h->page_size != (uint32_t)page)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "image page size %u, this host uses %ld",
                               h->page_size, page);
    if (h->n_processes == 0 || h->n_processes > S_MAX_PROCS)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "image holds %u processes; this restorer "
                               "takes 1 to %u", h->n_processes, S_MAX_PROCS);
    im->procs = calloc(h->n_processes, sizeof *im->procs);
    if (!im->procs)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return 0;
}

/* The process records are being read for (the last one). */
static rst_proc_t *s_cur(rst_image_t *im)
{
    return im->n_procs ? &im->procs[im->n_procs - 1] : NULL;
}

/* Starts the next process of the tree; takes ownership of rec. */
static int s_take_process(rst_image_t *im, rst_rec_t *rec, uint64_t at,
                          cairn_error_t *err)
{
    if (im->n_procs == im->header->header->n_processes) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return rst_bad(err, "more processes than the header announced", at);
    }
    im->procs[im->n_procs++].process = rec;
    return 0;
}

/* Files one record; takes ownership of rec (freed on error too). */
static int s_take(rst_image_t *im, ghost_reader_t *r, rst_rec_t *rec,
                  cairn_error_t *err)
{
    uint64_t at = ghost_reader_bytes(r);
    rst_proc_t *pr = s_cur(im);
    int ret = 0;

    if (!im->header && rec->r_case != CAIRN__GHOST__RECORD__R_HEADER &&
        rec->r_case != CAIRN__GHOST__RECORD__R_ROUND &&
        rec->r_case != CAIRN__GHOST__RECORD__R_PAGES) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return rst_bad(err, "first record is not the header", at);
    }
    if (!pr && (rec->r_case == CAIRN__GHOST__RECORD__R_THREAD ||
                rec->r_case == CAIRN__GHOST__RECORD__R_VMA ||
                rec->r_case == CAIRN__GHOST__RECORD__R_FD)) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return rst_bad(err, "thread, vma or fd before any process", at);
    }
    switch (rec->r_case) {
    case CAIRN__GHOST__RECORD__R_HEADER:
        if (im->header) {
            ret = rst_bad(err, "second header", at);
            break;
        }
        im->header = rec;
        inplace_name(im, rec->header->placed_pid);
        ret = s_check_header(im, rec->header, err);
        return ret < 0 ? ret : pages_rounds_end(im, at, err);
    case CAIRN__GHOST__RECORD__R_ROUND:
        ret = im->header ? rst_bad(err, "pre-copy round after the header", at)
                         : pages_round_begin(im, rec->round, at, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_KEPT_PAGES:
        ret = pages_load_kept(im, pr, rec->kept_pages, at, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_LAZY_PAGES:
        ret = lazy_load(im, pr, rec->lazy_pages, at, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_PROCESS:
        return s_take_process(im, rec, at, err);
    case CAIRN__GHOST__RECORD__R_THREAD:
        ret = rst_recs_add(&pr->threads, rec);
        break;
    case CAIRN__GHOST__RECORD__R_VMA:
        ret = rst_recs_add(&pr->vmas, rec);
        break;
    case CAIRN__GHOST__RECORD__R_FD:
        ret = rst_recs_add(&pr->fds, rec);
        break;
    case CAIRN__GHOST__RECORD__R_GHOST_FILE:
        ret = rst_recs_add(&im->ghost_files, rec);
        break;
    case CAIRN__GHOST__RECORD__R_PAGES:
        ret = im->header ? pages_load(im, s_cur(im), r, rec->pages, err)
                         : pages_load_round(im, r, rec->pages, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_OBJECT_PAGES:
        ret = shmem_load_object_pages(im, s_cur(im), r, rec->object_pages, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_END:
        im->end = rec;
        return 0;
    default:
        ret = rst_bad(err, "unknown record type", at);
        break;
    }
    if (ret == -ENOMEM)
        ret = cairn_error_set(err, ret, CAIRN_SYSTEM, "out of memory");
    if (ret < 0)
        cairn__ghost__record__free_unpacked(rec, NULL);
    return ret;
}

static int s_check_proc_counts(const rst_proc_t *pr, uint64_t at,
                               cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;

    if (!p->mm)
        return rst_bad(err, "process record without its mm layout", at);
    if (p->n_threads != pr->threads.n || p->n_vmas != pr->vmas.n ||
        p->n_fds != pr->fds.n)
        return rst_bad(err, "thread/vma/fd counts differ from the process "
                       "record", at);
    if (pr->threads.n == 0)
        return rst_bad(err, "process without threads", at);
    return files_check_loaded(pr, err);
}

static int s_check_counts(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    int ret = 0;

    if (im->n_procs != im->header->header->n_processes)
        return rst_bad(err, "fewer processes than the header announced", at);
    for (size_t i = 0; i < im->n_procs && ret == 0; i++)
        ret = s_check_proc_counts(&im->procs[i], at, err);
    if (ret == 0 && im->end->end->total_pages != im->pages)
        ret = rst_bad(err, "end record's page count differs from the pages "
                      "read", at);
    return ret < 0 ? ret : tree_check_image(im, at, err);
}

/* place: a stream's pages may be read into place (restore-inplace.h). */
static int s_load(int in_fd, rst_image_t *im, bool place, cairn_error_t *err)
{
    ghost_reader_t *r = ghost_reader_new(in_fd);
    int ret = 0;

    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    struct stat st;
    /* A delta's pages and its parents' share one staging memfd. */
    im->direct = fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) &&
                 lseek(in_fd, 0, SEEK_CUR) == 0 && !im->check_only && !im->chain;
    if (place && !im->direct && !im->check_only && !im->chain)
        ret = inplace_start(im, err);
    /* A check plans with a staging fd too (it is only read at restore). */
    if (im->staging_fd < 0)   /* chain_load may have made it */
        im->staging_fd = im->direct || im->check_only ? fcntl(in_fd, F_DUPFD_CLOEXEC, 0)
                                                      : memfd_create("ghost-staging",
                                                                     MFD_CLOEXEC);
    if (ret == 0 && im->staging_fd < 0)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "memfd_create: %s",
                              strerror(errno));
    while (ret == 0 && !im->end) {
        rst_rec_t *rec = NULL;
        ret = ghost_read_record(r, &rec, err);
        if (ret == 0)
            ret = s_take(im, r, rec, err);
    }
    if (ret == 0)
        ret = s_check_counts(im, ghost_reader_bytes(r), err);
    if (ret == 0)
        ret = inplace_plan(im, err);
    im->bytes = ghost_reader_bytes(r);
    ghost_reader_free(r);
    return ret;
}

/* ---- plan -------------------------------------------------------------- */

/* Bytes of one process's region; n_helpers bounds the close list. */
static uint64_t s_region_size(const rst_proc_t *pr, size_t n_helpers)
{
    uint64_t n = RST_ALIGN(ghost_restorer_blob_size, RST_PAGE);
    uint64_t args = sizeof(struct gr_args) + 4096 +
                    pr->vmas.n * (sizeof(struct gr_vma) + sizeof(int32_t) * 2) +
                    (pr->n_runs + pr->vmas.n) * sizeof(struct gr_run) + 64 * 64 +
                    pr->process->process->mm->auxv.len + 16 * 1024;
    const Cairn__Ghost__Process *p = pr->process->process;

    args += p->n_shared_pending * sizeof(struct gr_sigq);
    args += (p->n_rlimits + p->n_itimers) * 64;
    args += p->creds ? (p->creds->n_groups + 1) * sizeof(uint32_t) + 64 : 0;
    for (size_t i = 0; i < p->n_seccomp; i++)
        args += sizeof(struct gr_seccomp) + p->seccomp[i]->prog.len + 16;
    args += (n_helpers + 1) * sizeof(int32_t);
    args += (locks_posix(pr, NULL) + 1) * sizeof(struct gr_lock);
    args += procstate_region_bytes(pr);
    args += (GR_MAX_KEEP + pr->vmas.n + 1) * sizeof(struct gr_range);
    for (size_t i = 0; i < pr->threads.n; i++)
        args += sizeof(struct gr_thread) + threads_frame_size(pr, i) +
                pr->threads.v[i]->thread->n_pending * sizeof(struct gr_sigq);
    n += RST_ALIGN(args, RST_PAGE);
    n += (pr->threads.n + 1) * GR_STACK_SIZE;   /* + the copy helper's */
    n += 2 * GR_COPY_BUF;                       /* the copying threads' buffers */
    n += 64 * RST_PAGE;   /* vdso scratch: vvar + vclock + vdso fit easily */
    return RST_ALIGN(n, RST_PAGE);
}

/* keep = the region, our vdso/vvar pieces and the placed vmas, sorted. */
static int s_plan_keep(rst_plan_t *pl, cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    struct gr_range r = { (uint64_t)(uintptr_t)pl->region,
                          (uint64_t)(uintptr_t)pl->region + pl->region_len };

    a->keep = rst_alloc(pl, (1 + a->n_moves + a->n_vmas) * sizeof(*a->keep), 64);
    if (!a->keep)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    a->keep[a->n_keep++] = r;
    for (uint32_t i = 0; i < a->n_moves; i++)
        a->keep[a->n_keep++] = (struct gr_range){
            a->moves[i].from, a->moves[i].from + a->moves[i].len };
    for (uint32_t i = 0; i < a->n_vmas; i++)
        if (a->vmas[i].placed)
            a->keep[a->n_keep++] = (struct gr_range){ a->vmas[i].start, a->vmas[i].end };
    for (uint32_t i = 1; i < a->n_keep; i++)
        for (uint32_t j = i; j > 0 && a->keep[j].start < a->keep[j - 1].start; j--) {
            struct gr_range t = a->keep[j];
            a->keep[j] = a->keep[j - 1];
            a->keep[j - 1] = t;
        }
    a->unmap_end = RST_TASK_SIZE;
    return 0;
}

static int s_cmp_int(const void *x, const void *y)
{
    return *(const int *)x - *(const int *)y;
}

/* The vmas whose pages were read into place (restore-inplace.h): the
 * process inherits them mapped read-write; the blob keeps them, maps
 * nothing over them and sets their protection. */
static void s_plan_placed(rst_plan_t *pl)
{
    const rst_tree_t *t = pl->tree;
    struct gr_args *a = pl->args;
    size_t i = (size_t)(pl - t->plans);

    for (uint32_t k = 0; k < a->n_vmas; k++) {
        struct gr_vma *v = &a->vmas[k];
        if (v->fd < 0 && !(v->map_flags & (MAP_GROWSDOWN | MAP_NORESERVE)) &&
            inplace_vma_placed(t->im, i, v->start, v->end)) {
            v->placed = 1;
            v->map_prot = PROT_READ | PROT_WRITE;
        }
    }
}

/* One process's plan: its region, vmas, pages, threads, signals, limits
 * and mm; n_helpers bounds the helper fds the tree will hold. */
static int s_plan_one(rst_plan_t *pl, const rst_proc_t *pr, size_t n_helpers,
                      cairn_error_t *err)
{
    int ret;

    pl->region_len = s_region_size(pr, n_helpers);
    ret = mem_map_region(pl, pr, err);
    if (ret < 0)
        return ret;
    memcpy(pl->region, ghost_restorer_blob, ghost_restorer_blob_size);
    pl->used = RST_ALIGN(ghost_restorer_blob_size, RST_PAGE);
    pl->args = rst_alloc(pl, sizeof *pl->args, 64);
    pl->args->magic = GR_ARGS_MAGIC;
    pl->args->scratch = (uint64_t)(uintptr_t)pl->region + pl->region_len -
                        64 * RST_PAGE;
    ret = mem_plan_vdso(pl, pr, err);
    if (ret == 0)
        ret = mem_plan_vmas(pl, pr, err);
    if (ret == 0)
        s_plan_placed(pl);
    if (ret == 0)
        lazy_plan_proc(pl, pr, (size_t)(pl - pl->tree->plans));
    if (ret == 0)
        ret = pages_plan_runs(pl, pr, err);
    if (ret == 0)
        ret = threads_plan(pl, pr, pl->tree->new_pid, err);
    if (ret == 0)
        ret = procstate_plan(pl, pr, err);
    if (ret == 0)
        ret = sig_plan_pending(pl, pr, err);
    if (ret == 0)
        ret = creds_plan_rlimits(pl, pr, err);
    if (ret == 0)
        ret = sig_plan_itimers(pl, pr, err);
    if (ret == 0)
        ret = creds_plan(pl, pr, err);
    if (ret == 0)
        ret = creds_plan_seccomp(pl, pr, err);
    if (ret == 0)
        ret = mem_plan_mm(pl, pr, err);
    if (ret == 0)
        ret = s_plan_keep(pl, err);
    return ret;
}

/* The blob of one process closes every helper of the tree but the status
 * pipe, the staging memfd and its own exe (closed after PR_SET_MM_MAP). */
static int s_plan_close(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const rst_tree_t *t = pl->tree;
    struct gr_args *a = pl->args;

    a->close_fds = rst_alloc(pl, (t->n_helpers + 1) * sizeof(int32_t), 8);
    if (!a->close_fds)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    a->status_fd = t->status_w;
    a->staging_fd = t->staging_fd;
    for (size_t i = 0; i < t->n_helpers; i++)
        if (t->helpers[i] != t->status_w && t->helpers[i] != t->staging_fd &&
            t->helpers[i] != (int)a->mm.exe_fd)
            a->close_fds[a->n_close++] = t->helpers[i];
    /* POSIX locks after the closes, which would drop them (locks.c) */
    a->n_locks = (uint32_t)locks_posix(pr, NULL);
    a->locks = rst_alloc(pl, (a->n_locks + 1) * sizeof *a->locks, 8);
    if (!a->locks)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    locks_posix(pr, a->locks);
    return 0;
}

/* ---- plan: tree -------------------------------------------------------- */

/* Everything decided and opened before any process exists (pages_fd:
 * post-copy's page source, -1: none). */
static int s_plan(rst_tree_t *t, rst_image_t *im, bool new_pid, int pages_fd,
                  cairn_error_t *err)
{
    int ret;

    t->im = im;
    t->new_pid = new_pid;
    t->plans = calloc(im->n_procs, sizeof *t->plans);
    if (!t->plans)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    ret = tree_plan_jobs(t, err);
    if (ret == 0)
        ret = rst_tree_ctl(t, err);
    if (ret == 0 && pages_fd >= 0)
        ret = lazy_plan_tree(t, pages_fd, err);
    if (ret == 0)
        ret = files_plan(t, err);
    for (size_t i = 0; i < im->n_procs && ret == 0; i++) {
        t->plans[i].tree = t;
        ret = s_plan_one(&t->plans[i], &im->procs[i], rst_helpers_bound(im), err);
    }
    if (ret == 0 && t->n_helpers > rst_helpers_bound(im))
        ret = cairn_error_set(err, -EOVERFLOW, CAIRN_INTERNAL,
                              "more helper fds than planned");
    if (ret < 0)
        return ret;
    qsort(t->helpers, t->n_helpers, sizeof t->helpers[0], s_cmp_int);
    for (size_t i = 0; i < im->n_procs && ret == 0; i++)
        ret = s_plan_close(&t->plans[i], &im->procs[i], err);
    return ret;
}

/* ---- child ------------------------------------------------------------- */

/* The libc stage of one process, in order (s_child_main):
 *   phase 1: close what is not a helper; setsid (session leader) or
 *            setpgid(0, 0) (group leader); a session leader's controlling
 *            terminal (inherited by its children); its pid into the pid table;
 *            clone3 every child of its own (set_tid = the original pid),
 *            each running this same stage; one byte on `ready`;
 *   barrier: one byte from `sync`, written by the caller once every
 *            process of the tree has passed phase 1;
 *   phase 2: join a group led by another process (it exists now); a
 *            session leader's terminal's foreground group; its
 *            own fds into their numbers (pipes from the tree's helpers),
 *            cwd, umask, personality, comm, handlers; jump into the blob.
 */

/* Closes every fd that is not a helper (helpers are sorted). */
static void s_child_close_others(const rst_tree_t *t)
{
    unsigned int from = 0;

    for (size_t i = 0; i < t->n_helpers; i++) {
        if ((unsigned int)t->helpers[i] > from)
            syscall(SYS_close_range, from, t->helpers[i] - 1, 0);
        from = (unsigned int)t->helpers[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

static void __attribute__((noreturn)) s_child_main(rst_tree_t *t, size_t i);

/* Phase 1: own session or group, the pid table, the children. */
static void s_child_phase1(rst_tree_t *t, size_t i)
{
    char one = 1;

    tree_child_session(t, i);
    tty_child_ctty(t, i);
    t->pids[i] = (int32_t)syscall(SYS_getpid);
    tree_child_fork_children(t, i, s_child_main);
    if (write(t->ready_w, &one, 1) != 1 || read(t->sync_r, &one, 1) != 1)
        _exit(1);   /* the caller is gone */
}

static void __attribute__((noreturn)) s_child_main(rst_tree_t *t, size_t i)
{
    const rst_proc_t *pr = &t->im->procs[i];
    const Cairn__Ghost__Process *p = pr->process->process;
    rst_plan_t *pl = &t->plans[i];
    struct gr_thread *lead = &pl->args->threads[0];
    char go;

    if (i == 0 && read(t->go_r, &go, 1) != 1)
        _exit(1);   /* the caller is gone */
    if (i == 0)
        ns_child_root(t);   /* a job: its own mounts and /proc first */
    s_child_close_others(t);
    s_child_phase1(t, i);
    tree_child_join_group(t, i);
    tty_child_foreground(t, i);
    files_child(pl, pr);
    if (p->cwd[0] && chdir(p->cwd) < 0)
        rst_child_fail(pl, errno, 0, "cwd %s: %s", p->cwd, strerror(errno));
    umask((mode_t)p->umask);
    if (personality(p->personality) < 0)
        rst_child_fail(pl, errno, 0, "personality(%#x): %s", p->personality,
                       strerror(errno));
    prctl(PR_SET_NAME, p->comm, 0, 0, 0);
    sig_child_sigactions(pl, p);
    procstate_child(pl, p);
    threads_child_drop_rseq(pl);
    lazy_child(t, i);
    /* Every signal blocked in the blob, glibc's own two too (its
     * sigfillset leaves out SIGCANCEL and SIGSETXID, 32 and 33): a POSIX
     * timer the blob arms, or a pending signal it queues again, may be
     * one of them, and must wait for the program's mask. */
    uint64_t all = ~0ull;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
    pl->args->pid = (int32_t)syscall(SYS_getpid);
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "jmp *%1\n\t"
                     :
                     : "r"(lead->stack_top - 8), "r"(pl->region),
                       "D"(pl->args)
                     : "memory");
    __builtin_unreachable();
}

/* ---- supervise --------------------------------------------------------- */

/* Explains why a process ended, from the status pipe. */
static int s_explain(const rst_tree_t *t, pid_t who, int wstatus,
                     cairn_error_t *err)
{
    static const char *const stages[] = {
        "ok", "child", "unmapping the old address space", "moving the vdso",
        "mapping a vma", "copying pages", "setting a vma's protection",
        "PR_SET_MM_MAP", "setting an rlimit", "setting thread state",
        "creating a thread", "re-queueing a pending signal", "setting an itimer",
        "entering the process (rt_sigreturn)",
        "setting credentials (step << 32 | tid)",
        "installing a seccomp filter (index << 32 | tid)",
        "registering a post-copy vma with its userfaultfd",
        "taking a POSIX file lock again (fd << 32 | index; someone else locked "
        "the file since the dump?)",
        "setting a vma's flags (madvise, mlock, mseal, name)",
        "setting a thread's settings (step << 32 | tid)",
        "making a POSIX timer (step << 32 | timer id)" };
    struct gr_status st;

    fcntl(t->status_r, F_SETFL, O_NONBLOCK);
    if (read(t->status_r, &st, sizeof st) == (ssize_t)sizeof st &&
        st.stage > 0 && st.stage < (int)(sizeof stages / sizeof stages[0])) {
        st.msg[sizeof st.msg - 1] = '\0';
        if (st.stage == GR_STAGE_CHILD)
            return cairn_error_set(err, -(st.err ? st.err : EIO),
                                   st.err == EEXIST ? CAIRN_ALREADY_EXISTS
                                                    : CAIRN_FAILED_PRECONDITION,
                                   "process %d: %s", st.pid, st.msg);
        return cairn_error_set(err, -(st.err ? st.err : EIO), CAIRN_SYSTEM,
                               "process %d: restorer failed %s (%#llx): %s",
                               st.pid, stages[st.stage],
                               (unsigned long long)st.arg, strerror(st.err));
    }
    if (WIFSIGNALED(wstatus))
        return cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                               "restored task %d died of signal %d before "
                               "reaching its target state", who,
                               WTERMSIG(wstatus));
    return cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                           "restored task %d exited with %d before reaching "
                           "its target state", who, WEXITSTATUS(wstatus));
}

/* The barrier: once every process has written its byte on `ready`, one
 * byte each on `sync` lets them all into phase 2. */
static int s_barrier(const rst_tree_t *t, seize_trace_t *tr, cairn_error_t *err)
{
    char buf[256];
    ssize_t n;

    while (!tr->synced && (n = read(t->ready_r, buf, sizeof buf)) > 0)
        tr->ready += (size_t)n;
    if (tr->synced || tr->ready < t->im->n_procs)
        return 0;
    ((rst_tree_t *)t)->synced_us = cairn_now_us();
    /* every pid exists now: the sockets' queues with their credentials */
    int r = unixsk_tree_ready((rst_tree_t *)t, err);
    if (r < 0)
        return r;
    for (size_t left = t->im->n_procs; left > 0; left -= (size_t)n) {
        n = write(t->sync_w, buf, left < sizeof buf ? left : sizeof buf);
        if (n <= 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sync pipe: %s",
                                   strerror(errno));
    }
    tr->synced = true;
    return 0;
}

/* Until every thread of every process is held past its rt_sigreturn:
 * any exit on the way is a failure, explained from the status pipe. */
static int s_trace_until_held(const rst_tree_t *t, seize_trace_t *tr,
                              size_t n_threads, uint32_t timeout_ms,
                              cairn_error_t *err)
{
    uint64_t deadline = cairn_now_ms() + timeout_ms;
    int ret = 0;

    fcntl(t->ready_r, F_SETFL, O_NONBLOCK);
    while (ret == 0 && tr->held < n_threads) {
        pid_t tid = 0;
        int status = 0;
        ret = s_barrier(t, tr, err);
        if (ret < 0)
            break;
        ret = seize_wait(&tid, &status, deadline, tr->synced ? -1 : t->ready_r);
        if (ret == -EAGAIN)
            ret = 0;
        else if (ret == -ETIMEDOUT)
            ret = cairn_error_set(err, ret, CAIRN_TIMEOUT,
                                  "the restored tree did not reach its target "
                                  "state within %u ms (%zu of %zu threads, "
                                  "%zu of %zu processes ready)", timeout_ms,
                                  tr->held, n_threads, tr->ready,
                                  t->im->n_procs);
        else if (ret < 0)
            ret = cairn_error_set(err, ret, CAIRN_SYSTEM, "waitpid: %s",
                                  strerror(-ret));
        else if (ret == 0 && (WIFEXITED(status) || WIFSIGNALED(status)))
            ret = s_explain(t, tid, status, err);
        else if (ret == 0 && WIFSTOPPED(status))
            ret = seize_on_stop(tr, tid, status, err);
    }
    return ret;
}

/* The verifier (verify.h): every process held, its region gone, so its
 * /proc shows what the program will find. */
static int s_verify(rst_tree_t *t, cairn_error_t *err)
{
    uint64_t t0 = cairn_now_us();
    pid_t *pids = calloc(t->im->n_procs, sizeof(*pids));
    if (!pids)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < t->im->n_procs; i++)
        pids[i] = ns_host_pid(t, i);
    int ret = ghost_verify_tree(t->im, pids, t->verify, err);
    free(pids);
    t->verify_us = cairn_now_us() - t0;
    return ret;
}

/* Every process held: unmap each one's region through its leader, verify
 * (unless asked not to), then let every thread go. */
static int s_release(rst_tree_t *t, const seize_trace_t *tr, cairn_error_t *err)
{
    int ret = 0;

    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++) {
        const rst_plan_t *pl = &t->plans[i];
        uint64_t region = (uint64_t)(uintptr_t)pl->region;
        ret = seize_inject_munmap(ns_host_pid(t, i), region, pl->region_len,
                                  region + GR_GADGET_OFFSET, pl->leader_mask, err);
    }
    if (ret == 0 && t->verify)
        ret = s_verify(t, err);
    /* A process that was stopped (job control) gets its stop back as a
     * pending SIGSTOP: its threads take it as they are let go, before
     * any instruction of the program runs. */
    for (size_t i = 0; ret == 0 && i < t->im->n_procs; i++) {
        if (!t->im->procs[i].process->process->stop_signal)
            continue;
        ret = seize_enter_interrupted(t, tr, i, err);
        if (ret == 0 && kill(ns_host_pid(t, i), SIGSTOP) < 0)
            ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "stopping %d again: %s",
                                  (int)t->pids[i], strerror(errno));
    }
    /* Post-copy: the tree runs still traced, so that it dies with us
     * (PTRACE_O_EXITKILL) while pages are missing (lazy_window); the
     * server hears it runs before it can fault (early_faults). */
    if (ret == 0 && t->lazy)
        lazy_srv_push(t->lazy);
    for (size_t i = 0; ret == 0 && i < tr->n; i++)
        if (ptrace(t->lazy ? PTRACE_CONT : PTRACE_DETACH, tr->tids[i], 0, 0) < 0)
            ret = cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                  "%s thread %d: %s", t->lazy ? "resuming" : "detaching",
                                  tr->tids[i], strerror(errno));
    return ret;
}

/* A failure: SIGKILL every task we know of (and any that shows up), then
 * collect them until none is left, so nothing of the tree survives. */
static void s_kill_tree(seize_trace_t *tr, pid_t root)
{
    uint64_t deadline = cairn_now_ms() + 10000;
    pid_t tid;
    int status;

    kill(root, SIGKILL);
    for (size_t i = 0; i < tr->n; i++)
        kill(tr->tids[i], SIGKILL);
    for (;;) {
        int ret = seize_wait(&tid, &status, deadline, -1);
        if (ret == 0 && WIFSTOPPED(status))
            kill(tid, SIGKILL), ptrace(PTRACE_CONT, tid, 0, 0);
        else if (ret < 0 && ret != -EAGAIN)
            break;
    }
}

/* Until the tree runs; post-copy: its tasks, still traced, into *keep. */
static int s_supervise(rst_tree_t *t, pid_t root, size_t n_threads,
                       uint32_t timeout_ms, seize_trace_t *keep, cairn_error_t *err)
{
    seize_trace_t tr = { 0 };
    int ret = s_trace_until_held(t, &tr, n_threads, timeout_ms, err);
    t->held_us = cairn_now_us();

    if (ret == 0)   /* every task is held: each process's pid on the node */
        ret = ns_host_pids(t, tr.tids, tr.n, err);
    /* Every socket is back: its connections unlocked before the program
     * sends on them, so nothing it sends waits for a retransmission. */
    if (ret == 0)
        ret = inetsk_lock_image(t->im, false, err);
    if (ret == 0)
        ret = s_release(t, &tr, err);
    if (ret < 0)
        s_kill_tree(&tr, root);
    if (ret == 0 && t->lazy)
        *keep = tr;
    else
        seize_trace_free(&tr);
    return ret;
}

/* ---- main -------------------------------------------------------------- */

/* Every process of the image is the owner's (owner.h): checked on the
 * whole loaded image, before anything is planned or opened; each refusal
 * into rs (a check's; NULL: the first is the answer). */
static int s_check_owner(const rst_image_t *im, const ghost_owner_t *owner,
                         ghost_reasons_t *rs, cairn_error_t *err)
{
    int r = 0;

    for (size_t i = 0; r == 0 && owner && i < im->n_procs; i++) {
        const Cairn__Ghost__Process *p = im->procs[i].process->process;
        r = ghost_reason_add(rs, ghost_owner_check_process(owner, p, err), err,
                             (pid_t)p->pid, "process");
        if (r == 0)
            r = ghost_reason_add(rs, procstate_check_owner(&im->procs[i], err), err,
                                 (pid_t)p->pid, "process");
    }
    return r;
}

/* Bytes of memory the image's pages take once restored. */
static uint64_t s_need(const rst_image_t *im)
{
    return (im->pages - im->lazy_pages + lazy_need_pages(im)) * im->header->header->page_size;
}

/* The kernel the image's vdso was dumped on is this one (s_plan_vdso says
 * the same, for the first process that has a vdso). */
static int s_check_kernel(const rst_image_t *im, cairn_error_t *err)
{
    const Cairn__Ghost__ImageHeader *h = im->header->header;
    struct utsname u;

    uname(&u);
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].vmas.n; j++)
            if (im->procs[i].vmas.v[j]->vma->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO &&
                strcmp(u.release, h->kernel_release) != 0)
                return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                       "image dumped on kernel %s, this is %s: "
                                       "its vdso may differ from ours",
                                       h->kernel_release, u.release);
    return 0;
}

/* The working directory of pr is there to enter. */
static int s_check_cwd(const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    int fd = p->cwd[0] ? open(p->cwd, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;

    if (p->cwd[0] && fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "process %u: cannot enter its working directory %s: %s",
                               p->pid, p->cwd, strerror(errno));
    if (fd >= 0)
        close(fd);
    return 0;
}

/* The check's own look at this node, before the plan: the kernel, every
 * file the image names (mapped, open, the executable, the cwd) and the
 * room for its pages, each refusal into rs, so one answer lists them all
 * (the plan stops at its first). */
static int s_check_here(const rst_image_t *im, ghost_reasons_t *rs, cairn_error_t *err)
{
    int r = ghost_reason_add(rs, s_check_kernel(im, err), err, 0, "kernel");

    for (size_t i = 0; r == 0 && i < im->n_procs; i++) {
        const rst_proc_t *pr = &im->procs[i];
        r = mem_check_files(pr, rs, err);
        if (r == 0)
            r = files_check_paths(pr, rs, err);
        if (r == 0)
            r = tty_check_here(im, pr, rs, err);
        if (r == 0)
            r = ghost_reason_add(rs, s_check_cwd(pr, err), err,
                                 (pid_t)pr->process->process->pid, "cwd");
    }
    if (r == 0)
        r = ghost_reason_add(rs, ghost_room_check(s_need(im), err), err, 0, "room");
    return r;
}

/* A check's answer: its error is the first reason, the plan's refusal
 * (which the list may hold already) brought to the front. */
static int s_check_answer(ghost_reasons_t *rs, int ret, cairn_error_t *err)
{
    if (ret < 0) {
        ghost_reasons_put_first(rs, ret, err, 0, "image");
        return ret;
    }
    return ghost_reasons_first(rs, err);
}

static size_t s_n_threads(const rst_image_t *im)
{
    size_t n = 0;

    for (size_t i = 0; i < im->n_procs; i++)
        n += im->procs[i].threads.n;
    return n;
}

/* Creates the root (which creates the rest), seizes it and supervises
 * the whole tree until it runs or is gone; post-copy: the page server
 * starts once the root exists (a thread before the clone would leave the
 * child's libc as the thread had it), and the traced tasks go to *keep. */
static int s_spawn(rst_tree_t *t, uint32_t timeout_ms, seize_trace_t *keep,
                   cairn_error_t *err)
{
    long opts = PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD |
                PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK;
    /* Filters a thread installs apply to the restorer's own last syscalls
     * (setresuid, capset, the SIGSTOP...) unless suspended while we trace
     * it: needs CAP_SYS_ADMIN and no filter of our own. */
    for (size_t i = 0; i < t->im->n_procs; i++)
        if (t->im->procs[i].process->process->n_seccomp)
            opts |= PTRACE_O_SUSPEND_SECCOMP;
    uint32_t want = t->new_pid || t->job ? 0 : t->im->procs[0].process->process->pid;
    sigset_t all, old;
    pid_t pid;
    int ret;
    char go = 1;

    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = ns_clone_root(t, (pid_t)want);
    if (pid == 0)
        s_child_main(t, 0);
    if (pid < 0)
        ret = cairn_error_set(err, -errno, errno == EEXIST ? CAIRN_ALREADY_EXISTS
                                                           : CAIRN_SYSTEM,
                              "clone3 of the root%s: %s",
                              t->job ? " into a new pid and mount namespace"
                                     : want ? " with set_tid" : "", strerror(errno));
    else if (ptrace(PTRACE_SEIZE, pid, 0, (void *)opts) < 0)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_SEIZE%s: %s",
                              (opts & PTRACE_O_SUSPEND_SECCOMP)
                                  ? " (suspending seccomp, to restore filters)" : "",
                              strerror(errno));
    else if (t->lazy && (ret = lazy_srv_start(t->lazy, err)) < 0)
        ;
    else if (write(t->go_w, &go, 1) != 1)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "go pipe: %s",
                              strerror(errno));
    else
        ret = s_supervise(t, pid, s_n_threads(t->im), timeout_ms, keep, err);
    if (ret < 0 && pid > 0 && kill(pid, SIGKILL) == 0)
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return ret;
}

/* The restored and original pid of every process, into members (the
 * caller's array of n_procs, allocated before anything was made). */
static void s_members(const rst_tree_t *t, ghost_restore_member_t *members)
{
    for (size_t i = 0; i < t->im->n_procs; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        members[i] = (ghost_restore_member_t){
            .pid = (pid_t)t->pids[i],
            .host_pid = ns_host_pid(t, i),
            .original_pid = (pid_t)pr->process->process->pid,
            .ppid = pr->parent < 0 ? 0 : (pid_t)t->pids[pr->parent],
            .threads = (uint32_t)pr->threads.n,
            .stopped = pr->process->process->stop_signal != 0 };
    }
}

/* Raises our soft RLIMIT_NOFILE to the hard one: the tree's helper fds
 * sit above the highest fd of any process. */
static void s_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A post-copy window handed to the caller (ghost_restore_lazy). */
struct ghost_lazy {
    lazy_srv_t *srv;       /* the page server, running */
    seize_trace_t tr;      /* every task of the tree, traced */
    pid_t root;            /* the root's pid on the node */
};

int ghost_restore_lazy(struct ghost_lazy *lz, ghost_lazy_stats_t *ret, cairn_error_t *err)
{
    ghost_lazy_stats_t st = { 0 };
    if (!lz)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore_lazy: no window");
    int r = lazy_window(lz->srv, &lz->tr, lz->root, &st.srv, &st.killed, err);
    if (r < 0)
        cairn_error_append(err, r, "; the restored tree was killed: it cannot run with pages "
                           "missing");
    seize_trace_free(&lz->tr);
    free(lz);
    if (ret)
        *ret = st;
    return r;
}

/* A post-copy image restores only with its page source, and a page
 * source only goes with a post-copy image. */
static int s_check_lazy(const rst_image_t *im, const ghost_restore_opts_t *o,
                        cairn_error_t *err)
{
    bool lazy = im->header->header->lazy;
    if (lazy && !o->postcopy)
        return cairn_error_set(err, -ENOTSUP, CAIRN_FAILED_PRECONDITION,
                               "a post-copy image: its %llu lazy pages come from its source, "
                               "which a restore needs (ghost-restore --pages-fd)",
                               (unsigned long long)im->lazy_pages);
    if (!lazy && o->postcopy)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "a page source was given for an image that is not post-copy");
    if (o->postcopy && o->pages_fd < 0)
        return cairn_error_set(err, -EBADF, CAIRN_INVALID_ARGUMENT, "post-copy: no page source");
    return 0;
}

const char *const ghost_restore_step_names[GHOST_RESTORE_STEPS] = {
    "load", "plan", "spawn", "held", "release", "verify" };

/* Where the restore's time went, from the timestamps of its steps (a
 * check's end at the plan). */
static void s_steps(const rst_tree_t *t, uint64_t t0, uint64_t t_load, uint64_t t_plan,
                    uint64_t *us)
{
    uint64_t now = cairn_now_us();
    uint64_t synced = t->synced_us ? t->synced_us : t_plan;
    uint64_t held = t->held_us ? t->held_us : synced;
    us[GHOST_RESTORE_LOAD] = t_load - t0;
    us[GHOST_RESTORE_PLAN] = t_plan - t_load;
    us[GHOST_RESTORE_SPAWN] = synced - t_plan;
    us[GHOST_RESTORE_HELD] = held - synced;
    us[GHOST_RESTORE_VERIFY] = t->verify_us;
    us[GHOST_RESTORE_RELEASE] = now - held - t->verify_us;
}

/* Loads and plans the image from in_fd, then (unless check) makes the
 * tree; the stats as ghost_restore and ghost_restore_check describe. */
static int s_restore(int in_fd, bool check, const ghost_restore_opts_t *o,
                     ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    bool new_pid = o->new_pid;
    uint32_t timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    rst_image_t im = { .staging_fd = -1, .check_only = check };
    rst_tree_t t = { .status_r = -1, .go_w = -1, .ready_r = -1, .sync_w = -1,
                   .pread_pages = o->pread_pages, .for_user = o->owner != NULL };
    ghost_restore_stats_t st = { 0 };
    t.verify = check || o->no_verify ? NULL : &st.verify;
    uint64_t t0 = cairn_now_us();
    cairn_error_t taken;
    int ret;

    ghost_reasons_t own = { 0 };
    ghost_reasons_t *rs = !check ? NULL : o->reasons ? o->reasons : &own;

    s_raise_nofile();
    ghost_reasons_clear(rs);
    t.im = &im;
    ret = chain_load(&im, in_fd, o->image_path, err);
    if (ret == 0)
        ret = s_load(in_fd, &im, !check && !o->postcopy && !o->pread_pages, err);
    uint64_t t_end = cairn_now_us();   /* the stream is in */
    if (ret == 0)
        ret = s_check_owner(&im, o->owner, rs, err);
    /* A job image asked for a new pid, say: the request is wrong. */
    if (ret == 0)
        ret = ns_plan(&t, new_pid, err);
    /* Not the owner's (a check's reasons so far): nothing of it is opened
     * with their rights. */
    bool denied = check && rs->total > 0;
    if (ret == 0 && check && !denied)
        ret = s_check_here(&im, rs, err);
    if (ret == 0 && !check)
        ret = ghost_room_check(s_need(&im), err);
    /* A job's ids are free in the fresh namespace the restore makes. */
    if (ret == 0 && !new_pid && !check && !t.job)
        ret = tree_check_ids(&im, err);
    if (ret == 0 && !check)
        ret = s_check_lazy(&im, o, err);
    /* Its connections locked while they come back (inetsk.h): from the
     * plan on, which opens the sockets fds share, until every task is
     * held (s_supervise). */
    bool locked = ret == 0 && !check && (ret = inetsk_lock_image(&im, true, err)) == 0;
    if (ret == 0 && !denied)
        ret = s_plan(&t, &im, new_pid, !check && o->postcopy ? o->pages_fd : -1, err);
    if (check)
        ret = s_check_answer(rs, ret, err);
    if (ret == 0 && !check && !(st.members = calloc(im.n_procs, sizeof *st.members)))
        ret = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    seize_trace_t kept = { 0 };
    uint64_t t_plan = cairn_now_us();
    if (ret == 0 && !check)
        ret = s_spawn(&t, timeout_ms, &kept, err);
    if (locked && ret < 0)   /* made or not, nothing of it is held for */
        inetsk_lock_image(&im, false, NULL);
    if (ret == 0 && t.lazy && !(st.lazy = malloc(sizeof(*st.lazy))))
        ret = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (ret < 0) {
        free(st.members);
        ghost_verify_free(&st.verify);
    }
    if (ret == 0) {
        st.original_pid = (pid_t)im.procs[0].process->process->pid;
        st.job = t.job;
        if (check) {   /* would keep its ids */
            st.same_pid = t.job || tree_check_ids(&im, &taken) == 0;
        } else {
            s_members(&t, st.members);
            if (st.lazy) {   /* the window is the caller's now */
                *st.lazy = (struct ghost_lazy){ t.lazy, kept, ns_host_pid(&t, 0) };
                t.lazy = NULL;
                kept = (seize_trace_t){ 0 };
            }
            st.pid = (pid_t)t.pids[0];
            st.host_pid = ns_host_pid(&t, 0);
            st.same_pid = st.pid == st.original_pid;
        }
        st.image_bytes = im.bytes;
        st.pages = im.pages;
        st.lazy_pages = im.lazy_pages;
        st.processes = (uint32_t)im.n_procs;
        st.threads = (uint32_t)s_n_threads(&im);
        for (size_t i = 0; i < im.n_procs; i++)
            st.stopped += im.procs[i].process->process->stop_signal != 0;
        st.restore_us = cairn_now_us() - t0;
        s_steps(&t, t0, t_end, t_plan, st.steps_us);
        st.tail_us = cairn_now_us() - t_end;
        st.placed_bytes = inplace_bytes(&im);
        *ret_stats = st;
    }
    if (ret == 0 && o->exiting)   /* our copy of the placed pages: the exit's */
        im.inplace = inplace_leave(im.inplace);
    if (ret < 0 && kept.n)   /* made, but not handed over: never half-filled */
        s_kill_tree(&kept, ns_host_pid(&t, 0));
    seize_trace_free(&kept);
    rst_tree_free(&t);
    rst_image_free(&im);
    ghost_reasons_free(&own);
    return ret;
}

int ghost_restore_check(int in_fd, const ghost_restore_opts_t *opts,
                        ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    if (in_fd < 0 || !ret_stats)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore_check: bad arguments");
    ghost_restore_opts_t o = { .owner = opts ? opts->owner : NULL,
                               .image_path = opts ? opts->image_path : NULL,
                               .reasons = opts ? opts->reasons : NULL };
    return s_restore(in_fd, true, &o, ret_stats, err);
}

int ghost_restore(int in_fd, const ghost_restore_opts_t *opts,
                  ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    if (in_fd < 0 || !ret_stats)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore: bad arguments");
    return s_restore(in_fd, false, opts ? opts : &(ghost_restore_opts_t){ 0 }, ret_stats, err);
}
