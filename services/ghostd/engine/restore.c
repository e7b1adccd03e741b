/* restore.c - ghost_restore: a checkpoint image back to a running process
 * tree.
 *
 * Design, in four stages, each in its own block of this file:
 *
 *  1. load: the stream is read once, in order. Small records are kept per
 *     process; page data goes straight into one staging memfd (read into
 *     a window mapped over it, no intermediate copy) and is remembered as
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
 * Sessions and groups: a process leading its session or group creates it;
 * one in another member's group joins it after the barrier. The root's
 * session or group, when led from outside the tree, is replaced by the
 * caller's (a session cannot be joined); members that shared it with the
 * root follow. Members in a session other than their parent's without
 * leading it, or in a group led from outside that the root is not in, are
 * refused before anything is made.
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>

#include "anonfd.h"
#include "image.h"
#include "proc/proc.h"
#include "restorer/restorer.h"
#include "engine.h"
#include "seize.h"
#include "creds.h"
#include "files.h"
#include "pipes.h"
#include "shmem.h"
#include "signals.h"
#include "tree.h"

#define S_FPX_MAGIC1 0x46505853u
#define S_FPX_MAGIC2 0x46505845u
#define S_XSAVE_MIN 576u
#define S_USER_CS 0x33
#define S_USER_DS 0x2b
#define S_SS_AUTODISARM (1u << 31)

extern const unsigned char ghost_restorer_blob[];
extern const size_t ghost_restorer_blob_size;

/* ---------------------------------------------------------------- load */

#define S_MAX_PROCS 4096   /* processes in one image (bounds allocations) */

static void s_recs_free(rst_recs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        cairn__ghost__record__free_unpacked(r->v[i], NULL);
    free(r->v);
    *r = (rst_recs_t){ 0 };
}

static int s_recs_add(rst_recs_t *r, rst_rec_t *rec)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        rst_rec_t **v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = rec;
    return 0;
}

static void s_proc_free(rst_proc_t *pr)
{
    if (pr->process)
        cairn__ghost__record__free_unpacked(pr->process, NULL);
    s_recs_free(&pr->threads);
    s_recs_free(&pr->vmas);
    s_recs_free(&pr->fds);
    free(pr->runs);
    *pr = (rst_proc_t){ 0 };
}

static void s_image_free(rst_image_t *im)
{
    if (im->header)
        cairn__ghost__record__free_unpacked(im->header, NULL);
    if (im->end)
        cairn__ghost__record__free_unpacked(im->end, NULL);
    for (size_t i = 0; i < im->n_procs; i++)
        s_proc_free(&im->procs[i]);
    free(im->procs);
    free(im->objruns);
    if (im->staging_fd >= 0)
        close(im->staging_fd);
    *im = (rst_image_t){ .staging_fd = -1 };
}

static int s_check_header(rst_image_t *im, const Cairn__Ghost__ImageHeader *h,
                          cairn_error_t *err)
{
    long page = sysconf(_SC_PAGESIZE);

    if (h->version < GHOST_IMAGE_VERSION_MIN || h->version > GHOST_IMAGE_VERSION)
        return cairn_error_set(err, -EBADMSG, CAIRN_BAD_VERSION,
                               "image version %u, this restorer reads %u to %u",
                               h->version, GHOST_IMAGE_VERSION_MIN, GHOST_IMAGE_VERSION);
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

/* The vma of a process holding [vaddr, vaddr + len). */
static const Cairn__Ghost__Vma *s_vma_of(const rst_proc_t *pr, uint64_t vaddr,
                                         uint64_t len)
{
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (vaddr >= v->start && vaddr + len <= v->end && vaddr + len > vaddr)
            return v;
    }
    return NULL;
}

/* [vaddr, vaddr + len) lies in one writable vma of the process. */
static bool s_writable(const rst_proc_t *pr, uint64_t vaddr, uint64_t len)
{
    const Cairn__Ghost__Vma *v = vaddr ? s_vma_of(pr, vaddr, len) : NULL;
    return v && (v->prot & PROT_WRITE);
}

static int s_run_add(rst_proc_t *pr, uint64_t vaddr, uint64_t len, uint64_t off)
{
    struct gr_run *last = pr->n_runs ? &pr->runs[pr->n_runs - 1] : NULL;

    if (last && last->vaddr + last->len == vaddr && last->off + last->len == off) {
        last->len += len;
        return 0;
    }
    if (pr->n_runs == pr->cap_runs) {
        size_t cap = pr->cap_runs ? pr->cap_runs * 2 : 64;
        struct gr_run *v = realloc(pr->runs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        pr->runs = v;
        pr->cap_runs = cap;
    }
    pr->runs[pr->n_runs++] = (struct gr_run){ vaddr, len, off };
    return 0;
}

/* The process records are being read for (the last one). */
static rst_proc_t *s_cur(rst_image_t *im)
{
    return im->n_procs ? &im->procs[im->n_procs - 1] : NULL;
}

/* Stages len raw bytes; *ret_off says where they are in staging_fd. A
 * regular-file image read from its start is its own staging area: the
 * bytes stay where they are (skipped, not copied), which saves allocating
 * and filling every page once more. Otherwise they go to the end of the
 * staging memfd through a shared mapping whose pages are allocated in one
 * batch. */
static int s_stage(rst_image_t *im, ghost_reader_t *r, uint64_t len,
                   uint64_t *ret_off, cairn_error_t *err)
{
    void *win;
    int ret;

    if (im->direct || im->check_only) {
        uint64_t at = ghost_reader_bytes(r);
        ret = ghost_skip_raw(r, len, err);
        if (ret == 0)
            *ret_off = at;
        return ret;
    }
    if (ftruncate(im->staging_fd, (off_t)(im->staging_len + len)) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "staging memfd of %llu bytes: %s",
                               (unsigned long long)(im->staging_len + len),
                               strerror(errno));
    win = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, im->staging_fd,
               (off_t)im->staging_len);
    if (win == MAP_FAILED)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "mapping the staging memfd: %s", strerror(errno));
    madvise(win, len, MADV_POPULATE_WRITE);   /* a hint: one batch, not a fault per page */
    ret = ghost_read_raw(r, win, len, err);
    munmap(win, len);
    if (ret < 0)
        return ret;
    *ret_off = im->staging_len;
    im->staging_len += len;
    return 0;
}

/* Reads the raw bytes of a pages record into the staging memfd. */
static int s_load_pages(rst_image_t *im, ghost_reader_t *r,
                        const Cairn__Ghost__Pages *p, cairn_error_t *err)
{
    uint64_t len = p->n_pages * RST_PAGE, off;
    const Cairn__Ghost__Vma *v;
    int ret;

    if (p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE ||
        p->vaddr % RST_PAGE)
        return rst_bad(err, "pages record with a bad range",
                     ghost_reader_bytes(r));
    v = s_cur(im) ? s_vma_of(s_cur(im), p->vaddr, len) : NULL;
    if (!v || !v->dumped)
        return rst_bad(err, "pages outside every dumped vma",
                     ghost_reader_bytes(r));
    ret = s_stage(im, r, len, &off, err);
    if (ret < 0)
        return ret;
    ret = s_run_add(s_cur(im), p->vaddr, len, off);
    if (ret < 0)
        return cairn_error_set(err, ret, CAIRN_SYSTEM, "out of memory");
    im->pages += p->n_pages;
    return 0;
}

/* Stages the raw bytes of an object_pages record: pages of a memfd an fd
 * of the current process refers to, inside its size. */
static int s_load_object_pages(rst_image_t *im, ghost_reader_t *r,
                               const Cairn__Ghost__ObjectPages *p,
                               cairn_error_t *err)
{
    const Cairn__Ghost__Fd *f = s_cur(im) ? shmem_fd_of(s_cur(im), p->shmid) : NULL;
    uint64_t len = p->n_pages * RST_PAGE, off;
    int ret;

    if (!f || p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE ||
        p->offset % RST_PAGE || p->offset + len > RST_ALIGN(f->size, RST_PAGE))
        return rst_bad(err, "object pages of no memfd fd of the process, or "
                     "outside its size", ghost_reader_bytes(r));
    if (im->n_objruns == im->cap_objruns) {
        size_t cap = im->cap_objruns ? im->cap_objruns * 2 : 16;
        rst_objrun_t *v = realloc(im->objruns, cap * sizeof *v);
        if (!v)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        im->objruns = v;
        im->cap_objruns = cap;
    }
    ret = s_stage(im, r, len, &off, err);
    if (ret < 0)
        return ret;
    im->objruns[im->n_objruns++] = (rst_objrun_t){ p->shmid, p->offset, len, off };
    im->pages += p->n_pages;
    return 0;
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

    if (!im->header && rec->r_case != CAIRN__GHOST__RECORD__R_HEADER) {
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
        return s_check_header(im, rec->header, err);
    case CAIRN__GHOST__RECORD__R_PROCESS:
        return s_take_process(im, rec, at, err);
    case CAIRN__GHOST__RECORD__R_THREAD:
        ret = s_recs_add(&pr->threads, rec);
        break;
    case CAIRN__GHOST__RECORD__R_VMA:
        ret = s_recs_add(&pr->vmas, rec);
        break;
    case CAIRN__GHOST__RECORD__R_FD:
        ret = s_recs_add(&pr->fds, rec);
        break;
    case CAIRN__GHOST__RECORD__R_PAGES:
        ret = s_load_pages(im, r, rec->pages, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_OBJECT_PAGES:
        ret = s_load_object_pages(im, r, rec->object_pages, err);
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

/* Links every process to its parent: the root first (ppid 0), every
 * other one after its parent; pids and thread ids unique. */
static int s_check_tree(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++) {
        const Cairn__Ghost__Process *p = im->procs[i].process->process;
        im->procs[i].parent = -1;
        for (size_t j = 0; j < i; j++) {
            if (im->procs[j].process->process->pid == p->pid)
                return rst_bad(err, "two processes with one pid", at);
            if (im->procs[j].process->process->pid == p->ppid)
                im->procs[i].parent = (int)j;
        }
        if (p->pid == 0 || (i == 0) != (p->ppid == 0))
            return rst_bad(err, "the first process is not the only root", at);
        if (i > 0 && im->procs[i].parent < 0)
            return rst_bad(err, "a process comes before its parent or its "
                         "parent is not in the image", at);
    }
    return 0;
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
    return ret < 0 ? ret : s_check_tree(im, at, err);
}

static int s_load(int in_fd, rst_image_t *im, cairn_error_t *err)
{
    ghost_reader_t *r = ghost_reader_new(in_fd);
    int ret = 0;

    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    struct stat st;
    im->direct = fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) &&
                 lseek(in_fd, 0, SEEK_CUR) == 0 && !im->check_only;
    /* A check plans with a staging fd too (it is only read at restore). */
    im->staging_fd = im->direct || im->check_only ? fcntl(in_fd, F_DUPFD_CLOEXEC, 0)
                                : memfd_create("ghost-staging", MFD_CLOEXEC);
    if (im->staging_fd < 0)
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
    im->bytes = ghost_reader_bytes(r);
    ghost_reader_free(r);
    return ret;
}

/* ---------------------------------------------------------------- plan */

/* Session and group of one process, decided before anything is made. */
typedef struct rst_job {
    bool setsid;           /* it leads its session: setsid() */
    int group;             /* index of its group leader; -1: the group of
                              the caller (the root's group was outside the
                              tree) */
} s_job_t;

static uint64_t s_xgetbv0(void)
{
    uint32_t lo, hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t s_xsave_size(void)
{
    uint32_t a, b, c, d;

    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                     : "a"(0xd), "c"(0));
    return b;
}

static bool s_is_special(const char *path)
{
    return !strcmp(path, "[vdso]") || !strcmp(path, "[vvar]") ||
           !strcmp(path, "[vvar_vclock]");
}

/* Where our vdso/vvar pieces go: same kernel, same relative layout. */
static int s_plan_vdso(rst_plan_t *pl, const rst_proc_t *pr,
                       const proc_vmas_t *self, cairn_error_t *err)
{
    const Cairn__Ghost__ImageHeader *h = pl->tree->im->header->header;
    struct gr_args *a = pl->args;
    uint64_t our_vdso = 0, target_vdso = 0, our_total = 0, target_total = 0;
    struct utsname u;

    for (size_t i = 0; i < self->n; i++)
        if (!strcmp(self->v[i].path, "[vdso]"))
            our_vdso = self->v[i].start;
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO)
            target_vdso = v->start;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO ||
            v->kind == CAIRN__GHOST__VMA_KIND__VMA_VVAR)
            target_total += v->end - v->start;
    }
    if (!target_vdso) {
        a->drop_specials = 1;
    } else {
        uname(&u);
        if (strcmp(u.release, h->kernel_release))
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "image dumped on kernel %s, this is %s: "
                                   "its vdso may differ from ours",
                                   h->kernel_release, u.release);
        if (!our_vdso)
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "the image has a vdso but this process "
                                   "has none to move there");
    }
    for (size_t i = 0; i < self->n; i++) {
        const proc_vma_t *s = &self->v[i];
        if (!s_is_special(s->path))
            continue;
        if (a->n_moves == GR_MAX_KEEP - 1)
            return cairn_error_set(err, -ENOTSUP, CAIRN_INTERNAL,
                                   "too many vdso/vvar pieces");
        a->moves[a->n_moves++] = (struct gr_move){
            s->start, s->start - our_vdso + target_vdso, s->end - s->start };
        our_total += s->end - s->start;
    }
    if (target_vdso && our_total != target_total)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "vdso+vvar take %llu bytes in the image, %llu "
                               "here: the layout differs",
                               (unsigned long long)target_total,
                               (unsigned long long)our_total);
    for (size_t i = 0; target_vdso && i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        bool ok = v->kind != CAIRN__GHOST__VMA_KIND__VMA_VDSO &&
                  v->kind != CAIRN__GHOST__VMA_KIND__VMA_VVAR;
        for (uint32_t m = 0; !ok && m < a->n_moves; m++)
            ok = v->start >= a->moves[m].to &&
                 v->end <= a->moves[m].to + a->moves[m].len;
        if (!ok)
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "image %s at %#llx does not match this "
                                   "kernel's vdso/vvar layout", v->path,
                                   (unsigned long long)v->start);
    }
    return 0;
}

/* Whether [start, start + len) is clear of every target vma (with a guard
 * margin, so a growsdown stack or a heap never touches the region). */
static bool s_target_free(const rst_proc_t *pr, uint64_t start, uint64_t len)
{
    const uint64_t margin = 16ull << 20;

    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL)
            continue;
        if (start < v->end + margin && v->start < start + len + margin)
            return false;
    }
    return true;
}

/* Maps the region at a place free in both layouts: candidates just above
 * every target vma, tried with MAP_FIXED_NOREPLACE. */
static int s_map_region(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    for (size_t i = 0; i <= pr->vmas.n; i++) {
        uint64_t at = i < pr->vmas.n ? pr->vmas.v[i]->vma->end : (1ull << 32);
        at = RST_ALIGN(at + (32ull << 20), 1ull << 21);
        if (at + pl->region_len >= RST_TASK_SIZE ||
            !s_target_free(pr, at, pl->region_len))
            continue;
        void *p = mmap((void *)at, pl->region_len,
                       PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == (void *)at) {
            pl->region = p;
            return 0;
        }
        if (p != MAP_FAILED)
            munmap(p, pl->region_len);
    }
    return cairn_error_set(err, -ENOMEM, CAIRN_UNSUPPORTED,
                           "no address range of %llu bytes is free both in "
                           "the target layout and here",
                           (unsigned long long)pl->region_len);
}

static uint64_t s_frame_size(const rst_proc_t *pr, size_t i)
{
    const Cairn__Ghost__Thread *t = pr->threads.v[i]->thread;
    return 1024 + RST_ALIGN(t->xsave.len + 4, 64);
}

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
    for (size_t i = 0; i < pr->threads.n; i++)
        args += sizeof(struct gr_thread) + s_frame_size(pr, i) +
                pr->threads.v[i]->thread->n_pending * sizeof(struct gr_sigq);
    n += RST_ALIGN(args, RST_PAGE);
    n += (pr->threads.n + 1) * GR_STACK_SIZE;   /* + the copy helper's */
    n += 2 * GR_COPY_BUF;                       /* the copying threads' buffers */
    n += 64 * RST_PAGE;   /* vdso scratch: vvar + vclock + vdso fit easily */
    return RST_ALIGN(n, RST_PAGE);
}

/* The file a file-backed vma maps, opened as a helper fd. */
static int s_open_vma_file(rst_plan_t *pl, const Cairn__Ghost__Vma *v,
                           cairn_error_t *err)
{
    bool shared = v->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED;
    int mode = shared && (v->prot & PROT_WRITE) ? O_RDWR : O_RDONLY;
    struct stat st;
    int fd;

    if (strstr(v->path, " (deleted)"))
        return cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                               "vma %#llx maps the deleted file %s",
                               (unsigned long long)v->start, v->path);
    fd = open(v->path, mode | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "vma %#llx: cannot open %s: %s",
                               (unsigned long long)v->start, v->path,
                               strerror(errno));
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "fstat of %s: %s", v->path,
                               strerror(e));
    }
    if (v->ino && (uint64_t)st.st_dev == v->dev &&
        (uint64_t)st.st_ino != v->ino) {
        close(fd);
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                               "%s was replaced since the dump (inode %llu, "
                               "now %llu)", v->path,
                               (unsigned long long)v->ino,
                               (unsigned long long)st.st_ino);
    }
    /* Only its written pages are in the image: the rest must be the same
     * file's as at the dump. */
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (!shared && v->file_mtime_ns &&
        ((uint64_t)st.st_size != v->file_size || mtime != v->file_mtime_ns)) {
        close(fd);
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                               "%s changed since the dump (size %llu, mtime %lld ns; "
                               "now %llu, %lld)", v->path,
                               (unsigned long long)v->file_size,
                               (long long)v->file_mtime_ns,
                               (unsigned long long)st.st_size, (long long)mtime);
    }
    return rst_helper(pl->tree, fd, err);
}

static bool s_vma_has_pages(const Cairn__Ghost__Vma *v)
{
    return v->kind != CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED;
}

static int s_plan_vmas(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    int *fds = calloc(pr->vmas.n + 1, sizeof *fds);
    int ret = 0;

    a->vmas = rst_alloc(pl, (pr->vmas.n + 1) * sizeof *a->vmas, 64);
    if (!fds || !a->vmas) {
        free(fds);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    }
    for (size_t i = 0; i < pr->vmas.n && ret >= 0; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        struct gr_vma g = { v->start, v->end, 0, -1, v->prot,
                            v->prot | PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS };
        fds[i] = -1;
        switch (v->kind) {
        case CAIRN__GHOST__VMA_KIND__VMA_VDSO:
        case CAIRN__GHOST__VMA_KIND__VMA_VVAR:
        case CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL:
            continue;
        case CAIRN__GHOST__VMA_KIND__VMA_STACK:
            g.map_flags |= v->flags & MAP_GROWSDOWN;
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE:
            g.map_flags |= v->flags & MAP_GROWSDOWN;
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_HEAP:
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE:
        case CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED:
            ret = fds[i] = s_open_vma_file(pl, v, err);
            g.fd = fds[i];
            g.pgoff = v->pgoff;
            if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED) {
                g.map_flags = MAP_SHARED;
                g.map_prot = v->prot;
            } else {
                g.map_flags = MAP_PRIVATE;
            }
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED:
        case CAIRN__GHOST__VMA_KIND__VMA_MEMFD:
            ret = fds[i] = shmem_open_vma(pl, v, err);
            g.fd = fds[i];
            g.pgoff = v->pgoff;
            g.map_flags = MAP_SHARED;
            break;
        default:
            ret = cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                  "vma %#llx of unknown kind %d",
                                  (unsigned long long)v->start, v->kind);
        }
        /* A reservation made without commit accounting (ASan's shadow, a
         * runtime's heap arena) must stay so, or mapping it fails ENOMEM. */
        g.map_flags |= v->flags & MAP_NORESERVE;
        if (ret >= 0)
            a->vmas[a->n_vmas++] = g;
    }
    free(fds);
    return ret < 0 ? ret : 0;
}

/* The parts of run r the blob copies: a run loaded from contiguous
 * pages records may span adjacent vmas, so it is cut at vma ends and
 * the parts in vmas whose pages come from elsewhere are left out. */
static void s_plan_run(rst_plan_t *pl, const rst_proc_t *pr, const struct gr_run *r)
{
    struct gr_args *a = pl->args;
    uint64_t at = r->vaddr, end = r->vaddr + r->len;

    while (at < end) {
        const Cairn__Ghost__Vma *v = s_vma_of(pr, at, 1);
        uint64_t stop = !v ? at + RST_PAGE : v->end < end ? v->end : end;
        if (v && s_vma_has_pages(v) && !shmem_vma_from_object(pl->tree, v))
            a->runs[a->n_runs++] = (struct gr_run){ at, stop - at,
                                                   r->off + (at - r->vaddr) };
        at = stop;
    }
}

/* Page data from which the restorer copies with a helper thread, where
 * this process may run on more than one CPU: two chunks, the least there
 * is to share. Measured (bench/README.md): 1 GiB from /dev/shm restored
 * in 0.51-0.55 s with the helper, 0.85-1.33 s without (one thread
 * allocating, clearing and filling every page). test-restore's helper
 * process is sized to pass it. */
#define S_COPY_HELPER_MIN (2 * GR_COPY_CHUNK)

static bool s_copy_helper_pays(const struct gr_args *a)
{
    uint64_t total = 0;
    cpu_set_t set;

    for (uint32_t i = 0; i < a->n_runs; i++)
        total += a->runs[i].len;
    return total >= S_COPY_HELPER_MIN && sched_getaffinity(0, sizeof set, &set) == 0 &&
           CPU_COUNT(&set) > 1;
}

static int s_plan_runs(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    struct gr_args *a = pl->args;

    a->runs = rst_alloc(pl, (pr->n_runs + pr->vmas.n + 1) * sizeof *a->runs, 64);
    if (!a->runs)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < pr->n_runs; i++)
        s_plan_run(pl, pr, &pr->runs[i]);
    a->copy_pread = pl->tree->pread_pages;
    bool helper = s_copy_helper_pays(a);
    for (int i = 0; i < 1 + helper; i++) {
        uint8_t *buf = rst_alloc(pl, GR_COPY_BUF, RST_PAGE);
        if (!buf)
            return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
        a->copy_buf[i] = (uint64_t)(uintptr_t)buf;
    }
    if (helper) {
        uint8_t *stack = rst_alloc(pl, GR_STACK_SIZE, RST_PAGE);
        if (!stack)
            return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
        a->copy_stack_top = (uint64_t)(uintptr_t)(stack + GR_STACK_SIZE);
    }
    return 0;
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
    return 0;
}

/* The xsave area with the sigframe's software bytes and end magic. */
static uint64_t s_put_xsave(rst_plan_t *pl, const Cairn__Ghost__Thread *t)
{
    uint8_t *x = rst_alloc(pl, t->xsave.len + 4, 64);
    uint32_t magic2 = S_FPX_MAGIC2, u32;
    uint64_t u64 = pl->xcr0;

    if (!x)
        return 0;
    memcpy(x, t->xsave.data, t->xsave.len);
    memset(x + 464, 0, 48);
    u32 = S_FPX_MAGIC1;
    memcpy(x + 464, &u32, 4);
    u32 = (uint32_t)t->xsave.len + 4;
    memcpy(x + 468, &u32, 4);
    memcpy(x + 472, &u64, 8);
    u32 = (uint32_t)t->xsave.len;
    memcpy(x + 480, &u32, 4);
    memcpy(x + t->xsave.len, &magic2, 4);
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

static int s_plan_threads(rst_plan_t *pl, const rst_proc_t *pr, bool new_pid,
                          cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    size_t n = pr->threads.n, k = 1;
    uint8_t *stacks;

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
        g->fix_tid = new_pid && s_writable(pr, t->clear_tid_addr, sizeof(int32_t));
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

static int s_plan_mm(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__MmLayout *m = pr->process->process->mm;
    struct gr_args *a = pl->args;
    void *auxv = rst_alloc(pl, m->auxv.len + 8, 64);
    int fd;

    if (!auxv)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    memcpy(auxv, m->auxv.data, m->auxv.len);
    fd = open(m->exe_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "cannot open the executable %s: %s",
                               m->exe_path, strerror(errno));
    fd = rst_helper(pl->tree, fd, err);   /* the blob closes it after PR_SET_MM_MAP */
    if (fd < 0)
        return fd;
    a->mm = (struct gr_mm_map){
        m->start_code, m->end_code, m->start_data, m->end_data,
        m->start_brk, m->brk, m->start_stack, m->arg_start, m->arg_end,
        m->env_start, m->env_end, (uint64_t)(uintptr_t)auxv,
        (uint32_t)m->auxv.len, (uint32_t)fd };
    a->has_mm = 1;
    return 0;
}

/* keep = the region and our vdso/vvar pieces, sorted; close = helpers. */
static int s_plan_keep(rst_plan_t *pl)
{
    struct gr_args *a = pl->args;
    struct gr_range r = { (uint64_t)(uintptr_t)pl->region,
                          (uint64_t)(uintptr_t)pl->region + pl->region_len };

    a->keep[a->n_keep++] = r;
    for (uint32_t i = 0; i < a->n_moves; i++)
        a->keep[a->n_keep++] = (struct gr_range){
            a->moves[i].from, a->moves[i].from + a->moves[i].len };
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

/* One process's plan: its region, vmas, pages, threads, signals, limits
 * and mm; n_helpers bounds the helper fds the tree will hold. */
static int s_plan_one(rst_plan_t *pl, const rst_proc_t *pr, size_t n_helpers,
                      cairn_error_t *err)
{
    proc_vmas_t self = { 0 };
    int ret;

    pl->xcr0 = s_xgetbv0();
    pl->xsave_max = s_xsave_size();
    pl->region_len = s_region_size(pr, n_helpers);
    ret = s_map_region(pl, pr, err);
    if (ret < 0)
        return ret;
    memcpy(pl->region, ghost_restorer_blob, ghost_restorer_blob_size);
    pl->used = RST_ALIGN(ghost_restorer_blob_size, RST_PAGE);
    pl->args = rst_alloc(pl, sizeof *pl->args, 64);
    pl->args->magic = GR_ARGS_MAGIC;
    pl->args->scratch = (uint64_t)(uintptr_t)pl->region + pl->region_len -
                        64 * RST_PAGE;
    ret = proc_read_vmas(0, false, &self, err);
    if (ret == 0)
        ret = s_plan_vdso(pl, pr, &self, err);
    proc_vmas_free(&self);
    if (ret == 0)
        ret = s_plan_vmas(pl, pr, err);
    if (ret == 0)
        ret = s_plan_runs(pl, pr, err);
    if (ret == 0)
        ret = s_plan_threads(pl, pr, pl->tree->new_pid, err);
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
        ret = s_plan_mm(pl, pr, err);
    if (ret == 0)
        ret = s_plan_keep(pl);
    return ret;
}

/* The blob of one process closes every helper of the tree but the status
 * pipe, the staging memfd and its own exe (closed after PR_SET_MM_MAP). */
static int s_plan_close(rst_plan_t *pl, cairn_error_t *err)
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
    return 0;
}

/* ---------------------------------------------------------- plan: tree */

static int s_refuse_job(cairn_error_t *err, const Cairn__Ghost__Process *p,
                        const char *why)
{
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "process %u (session %u, group %u): %s", p->pid,
                           p->sid, p->pgid, why);
}

/* Session of process i: it leads its own (setsid), or it is in its
 * parent's (inherited by fork); the root may also stay in the session
 * of the caller when its own session leader is not in the tree. */
static int s_job_session(rst_tree_t *t, size_t i, cairn_error_t *err)
{
    const rst_proc_t *pr = &t->im->procs[i];
    const Cairn__Ghost__Process *p = pr->process->process;

    t->jobs[i].setsid = p->sid == p->pid;
    if (t->jobs[i].setsid)
        return 0;
    if (pr->parent < 0)
        return tree_index_of(t->im, p->sid) < 0 ? 0 :
               s_refuse_job(err, p, "the root's session leader is one of "
                            "its descendants");
    if (t->im->procs[pr->parent].process->process->sid != p->sid)
        return s_refuse_job(err, p, "in another session than its parent "
                            "without leading it (the parent called setsid "
                            "after forking it): cannot be recreated by fork");
    return 0;
}

/* Group of process i: its own, the group of a process of the tree, or
 * (when the leader is not in the tree) the root's group if it shares it:
 * the root then stays in the caller's group and so does i. */
static int s_job_group(rst_tree_t *t, size_t i, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = t->im->procs[i].process->process;
    const Cairn__Ghost__Process *root = t->im->procs[0].process->process;
    int l = tree_index_of(t->im, p->pgid);

    if (t->jobs[i].setsid && p->pgid != p->pid)
        return s_refuse_job(err, p, "leads its session but not its group");
    t->jobs[i].group = l;
    if (l >= 0 && t->im->procs[l].process->process->sid != p->sid)
        return s_refuse_job(err, p, "its group leader is in another session");
    if (l < 0 && (p->pgid != root->pgid || p->sid != root->sid))
        return s_refuse_job(err, p, "its group leader is not in the tree and "
                            "the root is not in that group");
    return 0;
}

static int s_tree_jobs(rst_tree_t *t, cairn_error_t *err)
{
    int ret = 0;

    t->jobs = calloc(t->im->n_procs, sizeof *t->jobs);
    if (!t->jobs)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    t->caller_pgrp = getpgrp();
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++)
        ret = s_job_session(t, i, err);
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++)
        ret = s_job_group(t, i, err);
    return ret;
}

static int s_ctl_pipe(rst_tree_t *t, int *ret_mine, int *ret_helper,
                      bool helper_reads, cairn_error_t *err)
{
    int e[2];

    if (pipe2(e, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s",
                               strerror(errno));
    *ret_mine = e[helper_reads ? 1 : 0];
    *ret_helper = rst_helper(t, e[helper_reads ? 0 : 1], err);
    return *ret_helper < 0 ? *ret_helper : 0;
}

/* base_fd above every fd of every process; the control pipes; the pid
 * table every process writes its restored pid into. */
static int s_tree_ctl(rst_tree_t *t, cairn_error_t *err)
{
    int max = 2, ret;

    for (size_t i = 0; i < t->im->n_procs; i++)
        for (size_t j = 0; j < t->im->procs[i].fds.n; j++)
            if (t->im->procs[i].fds.v[j]->fd->fd > max)
                max = t->im->procs[i].fds.v[j]->fd->fd;
    if (max > 65535)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "fd %d is above what the restorer handles", max);
    t->base_fd = max + 1;
    t->pids = mmap(NULL, t->im->n_procs * sizeof *t->pids,
                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t->pids == MAP_FAILED) {
        t->pids = NULL;
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pid table: %s",
                               strerror(errno));
    }
    ret = s_ctl_pipe(t, &t->status_r, &t->status_w, false, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->go_w, &t->go_r, true, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->ready_r, &t->ready_w, false, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->sync_w, &t->sync_r, true, err);
    if (ret == 0)
        ret = rst_helper(t, dup(t->im->staging_fd), err);
    if (ret >= 0)
        t->staging_fd = ret;
    return ret < 0 ? ret : 0;
}

static void s_tree_free(rst_tree_t *t)
{
    for (size_t i = 0; t->plans && i < t->im->n_procs; i++)
        if (t->plans[i].region)
            munmap(t->plans[i].region, t->plans[i].region_len);
    for (size_t i = 0; i < t->n_helpers; i++)
        close(t->helpers[i]);
    int mine[] = { t->status_r, t->go_w, t->ready_r, t->sync_w };
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        if (mine[i] >= 0)
            close(mine[i]);
    if (t->pids)
        munmap(t->pids, t->im->n_procs * sizeof *t->pids);
    free(t->plans);
    free(t->jobs);
    free(t->helpers);
    pipes_rst_free(t);
    shmem_rst_free(t);
    files_rst_free(t);
    *t = (rst_tree_t){ .status_r = -1, .go_w = -1, .ready_r = -1, .sync_w = -1 };
}

/* Helper fds the tree will hold at most: for the close lists. */
static size_t s_helpers_bound(const rst_image_t *im)
{
    size_t n = 16;

    for (size_t i = 0; i < im->n_procs; i++)
        n += im->procs[i].vmas.n + 4 * im->procs[i].fds.n + 1;
    return n;
}

/* Everything decided and opened before any process exists. */
static int s_plan(rst_tree_t *t, rst_image_t *im, bool new_pid, cairn_error_t *err)
{
    int ret;

    t->im = im;
    t->new_pid = new_pid;
    t->plans = calloc(im->n_procs, sizeof *t->plans);
    if (!t->plans)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    ret = s_tree_jobs(t, err);
    if (ret == 0)
        ret = s_tree_ctl(t, err);
    if (ret == 0)
        ret = files_plan(t, err);
    for (size_t i = 0; i < im->n_procs && ret == 0; i++) {
        t->plans[i].tree = t;
        ret = s_plan_one(&t->plans[i], &im->procs[i], s_helpers_bound(im), err);
    }
    if (ret == 0 && t->n_helpers > s_helpers_bound(im))
        ret = cairn_error_set(err, -EOVERFLOW, CAIRN_INTERNAL,
                              "more helper fds than planned");
    if (ret < 0)
        return ret;
    qsort(t->helpers, t->n_helpers, sizeof t->helpers[0], s_cmp_int);
    for (size_t i = 0; i < im->n_procs && ret == 0; i++)
        ret = s_plan_close(&t->plans[i], err);
    return ret;
}

/* --------------------------------------------------------------- child */

/* The libc stage of one process, in order (s_child_main):
 *   phase 1: close what is not a helper; setsid (session leader) or
 *            setpgid(0, 0) (group leader); its pid into the pid table;
 *            clone3 every child of its own (set_tid = the original pid),
 *            each running this same stage; one byte on `ready`;
 *   barrier: one byte from `sync`, written by the caller once every
 *            process of the tree has passed phase 1;
 *   phase 2: join a group led by another process (it exists now); its
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

/* Descriptions are opened O_NOCTTY (the caller opens shared ones); a
 * session leader takes its first terminal fd as its controlling terminal,
 * as opening it would have done, if that terminal has no session yet. */
static void s_child_ctty(const rst_tree_t *t, size_t i)
{
    const rst_proc_t *pr = &t->im->procs[i];

    for (size_t k = 0; t->jobs[i].setsid && k < pr->fds.n; k++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[k]->fd;
        if (f->kind == CAIRN__GHOST__FD_KIND__FD_CHAR_DEVICE && isatty(f->fd))
            if (ioctl(f->fd, TIOCSCTTY, 0) == 0)
                return;
    }
}

/* glibc registered an rseq area for this thread in our TLS (and a fork
 * keeps the registration); the kernel would write into it after the blob
 * unmapped it. */
static void s_child_drop_rseq(const rst_plan_t *pl)
{
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;

    if (__rseq_size == 0)
        return;
    if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0 &&
        syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0)
        rst_child_fail(pl, errno, 0, "unregistering glibc's rseq: %s",
                     strerror(errno));
}

/* clone3 as a fork: set_tid = want (0: any pid). Returns as fork does. */
static pid_t s_fork_pid(pid_t want)
{
    struct clone_args ca = { .exit_signal = SIGCHLD };
    pid_t set_tid = want;

    if (want) {
        ca.set_tid = (uint64_t)(uintptr_t)&set_tid;
        ca.set_tid_size = 1;
    }
    return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

static void __attribute__((noreturn)) s_child_main(rst_tree_t *t, size_t i);

/* Forks every child of process i, each into its own libc stage. */
static void s_child_fork_children(rst_tree_t *t, size_t i)
{
    const rst_plan_t *pl = &t->plans[i];

    for (size_t j = i + 1; j < t->im->n_procs; j++) {
        const Cairn__Ghost__Process *c = t->im->procs[j].process->process;
        pid_t pid;
        if (t->im->procs[j].parent != (int)i)
            continue;
        pid = s_fork_pid(t->new_pid ? 0 : (pid_t)c->pid);
        if (pid == 0)
            s_child_main(t, j);
        if (pid < 0)
            rst_child_fail(pl, errno, 0, "clone3 of child %u%s: %s", c->pid,
                         t->new_pid ? "" : " with set_tid", strerror(errno));
    }
}

/* Phase 1: own session or group, the pid table, the children. */
static void s_child_phase1(rst_tree_t *t, size_t i)
{
    const rst_plan_t *pl = &t->plans[i];
    const s_job_t *j = &t->jobs[i];
    char one = 1;

    if (j->setsid && setsid() < 0)
        rst_child_fail(pl, errno, 0, "setsid: %s", strerror(errno));
    if (!j->setsid && j->group == (int)i && setpgid(0, 0) < 0)
        rst_child_fail(pl, errno, 0, "setpgid(0, 0): %s", strerror(errno));
    t->pids[i] = (int32_t)syscall(SYS_getpid);
    s_child_fork_children(t, i);
    if (write(t->ready_w, &one, 1) != 1 || read(t->sync_r, &one, 1) != 1)
        _exit(1);   /* the caller is gone */
}

/* Phase 2, first step: the group led by another process of the tree, or
 * the caller's group (the root's group was outside the tree). */
static void s_child_join_group(const rst_tree_t *t, size_t i)
{
    const s_job_t *j = &t->jobs[i];
    pid_t want = j->group < 0 ? t->caller_pgrp : (pid_t)t->pids[j->group];

    if (j->group == (int)i || getpgrp() == want)
        return;
    if (setpgid(0, want) < 0)
        rst_child_fail(&t->plans[i], errno, 0, "setpgid(0, %d) (group %u): %s",
                     want, t->im->procs[i].process->process->pgid,
                     strerror(errno));
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
    s_child_close_others(t);
    s_child_phase1(t, i);
    s_child_join_group(t, i);
    files_child(pl, pr);
    s_child_ctty(t, i);
    if (p->cwd[0] && chdir(p->cwd) < 0)
        rst_child_fail(pl, errno, 0, "cwd %s: %s", p->cwd, strerror(errno));
    umask((mode_t)p->umask);
    if (personality(p->personality) < 0)
        rst_child_fail(pl, errno, 0, "personality(%#x): %s", p->personality,
                     strerror(errno));
    prctl(PR_SET_NAME, p->comm, 0, 0, 0);
    sig_child_sigactions(pl, p);
    s_child_drop_rseq(pl);
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

/* ----------------------------------------------------------- supervise */

/* Per-thread progress as the tracer sees it. */
enum s_tstate { S_T_RUNNING, S_T_IN_SIGRETURN, S_T_HELD };

/* Every traced thread of every process of the tree. */
typedef struct {
    pid_t *tids;           /* threads seen so far */
    enum s_tstate *st;     /* their progress */
    size_t n, cap;         /* seen, allocated */
    size_t held;           /* threads stopped after their rt_sigreturn */
    size_t ready;          /* processes past phase 1 (bytes on `ready`) */
    bool synced;           /* the barrier bytes are written */
} s_trace_t;

static void s_trace_free(s_trace_t *tr)
{
    free(tr->tids);
    free(tr->st);
    *tr = (s_trace_t){ 0 };
}

/* The slot of tid, added if new; -1 on ENOMEM. */
static ssize_t s_tslot(s_trace_t *tr, pid_t tid)
{
    for (size_t i = 0; i < tr->n; i++)
        if (tr->tids[i] == tid)
            return (ssize_t)i;
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 64;
        pid_t *t = realloc(tr->tids, cap * sizeof *t);
        if (t)
            tr->tids = t;
        enum s_tstate *s = t ? realloc(tr->st, cap * sizeof *s) : NULL;
        if (!s)
            return -1;
        tr->st = s;
        tr->cap = cap;
    }
    tr->tids[tr->n] = tid;
    tr->st[tr->n] = S_T_RUNNING;
    return (ssize_t)tr->n++;
}

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
        "installing a seccomp filter (index << 32 | tid)" };
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

/* One wait for any task of ours: 0 and the task, -EAGAIN after a short
 * sleep with nothing to report (so the caller can poll its pipes),
 * -ETIMEDOUT past the deadline, -ECHILD when no task is left. */
static int s_wait(pid_t *ret_tid, int *ret_status, uint64_t deadline_ms)
{
    struct timespec now, left = { 0, 5000000 };
    sigset_t chld;
    pid_t w;

    w = waitpid(-1, ret_status, __WALL | WNOHANG);
    if (w > 0) {
        *ret_tid = w;
        return 0;
    }
    if (w < 0 && errno != EINTR)
        return -errno;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    if (now_ms >= deadline_ms)
        return -ETIMEDOUT;
    if (deadline_ms - now_ms < 5)
        left.tv_nsec = (long)(deadline_ms - now_ms) * 1000000;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigtimedwait(&chld, NULL, &left);
    return -EAGAIN;
}

/* One ptrace stop of a restored thread, until it is held past its
 * rt_sigreturn. Fork/clone events and the first stop of a new task are
 * let through; a signal-delivery stop other than the blob's SIGSTOP is
 * delivered. */
static int s_on_stop(s_trace_t *tr, pid_t tid, int status, cairn_error_t *err)
{
    ssize_t i = s_tslot(tr, tid);
    int sig = WSTOPSIG(status), event = status >> 16;

    if (i < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (event) {
        ptrace(PTRACE_CONT, tid, 0, 0);
        return 0;
    }
    if (sig == SIGSTOP && tr->st[i] == S_T_RUNNING) {
        tr->st[i] = S_T_IN_SIGRETURN;
        ptrace(PTRACE_SYSCALL, tid, 0, 0);   /* to rt_sigreturn's entry */
        return 0;
    }
    if (sig == (SIGTRAP | 0x80) && tr->st[i] == S_T_IN_SIGRETURN) {
        struct user_regs_struct r;
        ptrace(PTRACE_GETREGS, tid, 0, &r);
        if (r.orig_rax == SYS_rt_sigreturn && r.rax == (unsigned long long)-ENOSYS) {
            ptrace(PTRACE_SYSCALL, tid, 0, 0);   /* to its exit */
            return 0;
        }
        tr->st[i] = S_T_HELD;
        tr->held++;
        return 0;
    }
    ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig);
    return 0;
}

/* The barrier: once every process has written its byte on `ready`, one
 * byte each on `sync` lets them all into phase 2. */
static int s_barrier(const rst_tree_t *t, s_trace_t *tr, cairn_error_t *err)
{
    char buf[256];
    ssize_t n;

    while (!tr->synced && (n = read(t->ready_r, buf, sizeof buf)) > 0)
        tr->ready += (size_t)n;
    if (tr->synced || tr->ready < t->im->n_procs)
        return 0;
    for (size_t left = t->im->n_procs; left > 0; left -= (size_t)n) {
        n = write(t->sync_w, buf, left < sizeof buf ? left : sizeof buf);
        if (n <= 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sync pipe: %s",
                                   strerror(errno));
    }
    tr->synced = true;
    return 0;
}

static uint64_t s_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Until every thread of every process is held past its rt_sigreturn:
 * any exit on the way is a failure, explained from the status pipe. */
static int s_trace_until_held(const rst_tree_t *t, s_trace_t *tr,
                              size_t n_threads, uint32_t timeout_ms,
                              cairn_error_t *err)
{
    uint64_t deadline = s_now_us() / 1000 + timeout_ms;
    int ret = 0;

    fcntl(t->ready_r, F_SETFL, O_NONBLOCK);
    while (ret == 0 && tr->held < n_threads) {
        pid_t tid = 0;
        int status = 0;
        ret = s_barrier(t, tr, err);
        if (ret < 0)
            break;
        ret = s_wait(&tid, &status, deadline);
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
            ret = s_on_stop(tr, tid, status, err);
    }
    return ret;
}

/* The thread of image process pr whose registers (as it resumes) are r:
 * each thread has its own stack, so rsp and rip tell it, with the
 * original tids or new ones alike. NULL if none. *ret_reenters: whether
 * it resumes by entering again the call the dump interrupted
 * (s_fix_restart moved it back onto its syscall instruction). */
static const Cairn__Ghost__Thread *s_image_thread(const rst_proc_t *pr,
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

/* Process p is to come back stopped: each of its threads that was inside
 * a blocking call is taken to that call's entry first, so that the
 * SIGSTOP queued next stops it inside the call, as it was -- and a
 * handled signal sent while it is stopped interrupts the call on SIGCONT
 * (EINTR, or a restart with SA_RESTART) instead of running before the
 * call starts anew. Only where nothing could come in between: no pending
 * signal of the image (it would be delivered on the way). */
static int s_enter_interrupted(const rst_tree_t *t, const s_trace_t *tr, size_t p,
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

        snprintf(path, sizeof path, "/proc/%d/task/%d", (int)t->pids[p], (int)tid);
        if (access(path, F_OK) < 0 || ptrace(PTRACE_GETREGS, tid, 0, &r) < 0)
            continue;   /* another process's thread */
        th = s_image_thread(pr, &r, &reenters);
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
            syscall(SYS_tgkill, (pid_t)t->pids[p], tid, WSTOPSIG(status));
    }
    return 0;
}

/* Every process held: unmap each one's region through its leader, then
 * let every thread go. */
static int s_release(const rst_tree_t *t, const s_trace_t *tr, cairn_error_t *err)
{
    int ret = 0;

    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++) {
        const rst_plan_t *pl = &t->plans[i];
        uint64_t region = (uint64_t)(uintptr_t)pl->region;
        ret = seize_inject_munmap((pid_t)t->pids[i], region, pl->region_len,
                              region + GR_GADGET_OFFSET, pl->leader_mask, err);
    }
    /* A process that was stopped (job control) gets its stop back as a
     * pending SIGSTOP: its threads take it as they are let go, before
     * any instruction of the program runs. */
    for (size_t i = 0; ret == 0 && i < t->im->n_procs; i++) {
        if (!t->im->procs[i].process->process->stop_signal)
            continue;
        ret = s_enter_interrupted(t, tr, i, err);
        if (ret == 0 && kill((pid_t)t->pids[i], SIGSTOP) < 0)
            ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "stopping %d again: %s",
                                  (int)t->pids[i], strerror(errno));
    }
    for (size_t i = 0; ret == 0 && i < tr->n; i++)
        if (ptrace(PTRACE_DETACH, tr->tids[i], 0, 0) < 0)
            ret = cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                  "detaching thread %d: %s", tr->tids[i],
                                  strerror(errno));
    return ret;
}

/* A failure: SIGKILL every task we know of (and any that shows up), then
 * collect them until none is left, so nothing of the tree survives. */
static void s_kill_tree(s_trace_t *tr, pid_t root)
{
    uint64_t deadline = s_now_us() / 1000 + 10000;
    pid_t tid;
    int status;

    kill(root, SIGKILL);
    for (size_t i = 0; i < tr->n; i++)
        kill(tr->tids[i], SIGKILL);
    for (;;) {
        int ret = s_wait(&tid, &status, deadline);
        if (ret == 0 && WIFSTOPPED(status))
            kill(tid, SIGKILL), ptrace(PTRACE_CONT, tid, 0, 0);
        else if (ret < 0 && ret != -EAGAIN)
            break;
    }
}

static int s_supervise(const rst_tree_t *t, pid_t root, size_t n_threads,
                       uint32_t timeout_ms, cairn_error_t *err)
{
    s_trace_t tr = { 0 };
    int ret = s_trace_until_held(t, &tr, n_threads, timeout_ms, err);

    if (ret == 0)
        ret = s_release(t, &tr, err);
    if (ret < 0)
        s_kill_tree(&tr, root);
    s_trace_free(&tr);
    return ret;
}

/* ---------------------------------------------------------------- main */

/* The first id of the image that a task still holds: 0 if none, else
 * the id, with *dead set if that task has exited and only waits to be
 * reaped (a zombie: a tree just killed by its checkpoint is reaped by
 * its parents a moment later) and *parent its parent. */
static uint32_t s_first_taken(const rst_image_t *im, bool *dead, pid_t *parent, bool *is_pid)
{
    for (size_t p = 0; p < im->n_procs; p++) {
        const rst_proc_t *pr = &im->procs[p];
        for (size_t i = 0; i < pr->threads.n; i++) {
            uint32_t tid = pr->threads.v[i]->thread->tid;
            proc_stat_t st;
            int r = proc_read_stat((pid_t)tid, &st, NULL);
            if (r == -ENOENT || r == -ESRCH)
                continue;   /* free */
            bool known = r == 0;   /* held, by what we may not be able to tell */
            *dead = known && proc_state_exited(st.state);
            *parent = known ? st.ppid : 0;
            *is_pid = tid == pr->process->process->pid;
            return tid;
        }
    }
    return 0;
}

/* Whether every id of the image is free (same-pid restore only): all or
 * nothing, checked before anything is made. An id held by a task that
 * has exited is waited for, up to S_REAP_GRACE_MS, to be reaped. */
#define S_REAP_GRACE_MS 2000
static int s_check_ids(const rst_image_t *im, cairn_error_t *err)
{
    for (int waited = 0;; waited += 10) {
        bool dead = false, is_pid = false;
        pid_t parent = 0;
        uint32_t tid = s_first_taken(im, &dead, &parent, &is_pid);
        if (tid == 0)
            return 0;
        if (!dead)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "%s %u is taken by another process",
                                   is_pid ? "pid" : "thread id", tid);
        if (waited >= S_REAP_GRACE_MS)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "%s %u is still held by a process that exited and "
                                   "that its parent %d has not reaped in %d ms",
                                   is_pid ? "pid" : "thread id", tid, (int)parent,
                                   S_REAP_GRACE_MS);
        usleep(10000);
    }
}

static size_t s_n_threads(const rst_image_t *im)
{
    size_t n = 0;

    for (size_t i = 0; i < im->n_procs; i++)
        n += im->procs[i].threads.n;
    return n;
}

/* Creates the root (which creates the rest), seizes it and supervises
 * the whole tree until it runs or is gone. */
static int s_spawn(rst_tree_t *t, uint32_t timeout_ms, cairn_error_t *err)
{
    long opts = PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD |
                PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK;
    /* Filters a thread installs apply to the restorer's own last syscalls
     * (setresuid, capset, the SIGSTOP...) unless suspended while we trace
     * it: needs CAP_SYS_ADMIN and no filter of our own. */
    for (size_t i = 0; i < t->im->n_procs; i++)
        if (t->im->procs[i].process->process->n_seccomp)
            opts |= PTRACE_O_SUSPEND_SECCOMP;
    uint32_t want = t->new_pid ? 0 : t->im->procs[0].process->process->pid;
    sigset_t all, old;
    pid_t pid;
    int ret;
    char go = 1;

    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = s_fork_pid((pid_t)want);
    if (pid == 0)
        s_child_main(t, 0);
    if (pid < 0)
        ret = cairn_error_set(err, -errno, errno == EEXIST ? CAIRN_ALREADY_EXISTS
                                                           : CAIRN_SYSTEM,
                              "clone3 of the root%s: %s",
                              want ? " with set_tid" : "", strerror(errno));
    else if (ptrace(PTRACE_SEIZE, pid, 0, (void *)opts) < 0)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_SEIZE%s: %s",
                              (opts & PTRACE_O_SUSPEND_SECCOMP)
                                  ? " (suspending seccomp, to restore filters)" : "",
                              strerror(errno));
    else if (write(t->go_w, &go, 1) != 1)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "go pipe: %s",
                              strerror(errno));
    else
        ret = s_supervise(t, pid, s_n_threads(t->im), timeout_ms, err);
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

/* Loads and plans the image from in_fd, then (unless check) makes the
 * tree; the stats as ghost_restore and ghost_restore_check describe. */
static int s_restore(int in_fd, bool check, const ghost_restore_opts_t *o,
                     ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    bool new_pid = o->new_pid;
    uint32_t timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    rst_image_t im = { .staging_fd = -1, .check_only = check };
    rst_tree_t t = { .status_r = -1, .go_w = -1, .ready_r = -1, .sync_w = -1,
                   .pread_pages = o->pread_pages };
    ghost_restore_stats_t st = { 0 };
    uint64_t t0 = s_now_us();
    cairn_error_t taken;
    int ret;

    s_raise_nofile();
    t.im = &im;
    ret = s_load(in_fd, &im, err);
    if (ret == 0 && !new_pid && !check)
        ret = s_check_ids(&im, err);
    if (ret == 0)
        ret = s_plan(&t, &im, new_pid, err);
    if (ret == 0 && !check && !(st.members = calloc(im.n_procs, sizeof *st.members)))
        ret = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (ret == 0 && !check)
        ret = s_spawn(&t, timeout_ms, err);
    if (ret < 0)
        free(st.members);
    if (ret == 0) {
        st.original_pid = (pid_t)im.procs[0].process->process->pid;
        if (check) {
            st.same_pid = s_check_ids(&im, &taken) == 0;   /* would keep its ids */
        } else {
            s_members(&t, st.members);
            st.pid = (pid_t)t.pids[0];
            st.same_pid = st.pid == st.original_pid;
        }
        st.image_bytes = im.bytes;
        st.pages = im.pages;
        st.processes = (uint32_t)im.n_procs;
        st.threads = (uint32_t)s_n_threads(&im);
        for (size_t i = 0; i < im.n_procs; i++)
            st.stopped += im.procs[i].process->process->stop_signal != 0;
        st.restore_us = s_now_us() - t0;
        *ret_stats = st;
    }
    s_tree_free(&t);
    s_image_free(&im);
    return ret;
}

int ghost_restore_check(int in_fd, ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    if (in_fd < 0 || !ret_stats)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore_check: bad arguments");
    return s_restore(in_fd, true, &(ghost_restore_opts_t){ 0 }, ret_stats, err);
}

int ghost_restore(int in_fd, const ghost_restore_opts_t *opts,
                  ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    if (in_fd < 0 || !ret_stats)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore: bad arguments");
    return s_restore(in_fd, false, opts ? opts : &(ghost_restore_opts_t){ 0 }, ret_stats, err);
}
