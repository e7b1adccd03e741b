/* restore.c - ghost_restore: a checkpoint image back to a running process.
 *
 * Design, in four stages, each in its own block of this file:
 *
 *  1. load: the stream is read once, in order. Small records are kept;
 *     page data goes straight into a staging memfd (read into a window
 *     mapped over it, no intermediate copy) and is remembered as runs
 *     (vaddr, len, offset). The image is validated as it comes: header
 *     version and page size, one process only, pages inside dumped vmas,
 *     counts matching the process record and the End record.
 *  2. plan: everything the restorer needs is decided in the caller, before
 *     any process exists: the vdso/vvar moves (same kernel release and
 *     same layout, else a refusal), one anonymous "region" at an address
 *     free both here and in the target layout holding the blob, its
 *     argument block, one rt_sigframe per thread (registers with syscall
 *     restart applied, sigmask, altstack, xsave with the sigframe magics),
 *     the blob's stacks and the vdso scratch window; the helper fds (files
 *     of file-backed vmas, one memfd per shared-memory object, the exe,
 *     the staging memfd, the status pipe) all above the image's highest fd.
 *  3. child: clone3 (set_tid = original pid, or a fresh pid), which waits
 *     until the caller has seized it, closes what is not a helper,
 *     reopens the image's fds into their numbers (files at their offsets,
 *     pipes refilled), sets cwd, umask, personality, comm, handlers,
 *     drops glibc's rseq registration and jumps into the blob.
 *  4. supervise: the caller is the tracer. Every thread stops itself with
 *     SIGSTOP right before its rt_sigreturn; the caller lets each run
 *     through rt_sigreturn and holds it at the syscall exit, then unmaps
 *     the region by running the blob's `syscall` gadget in the leader
 *     (all signals blocked meanwhile), puts the registers and mask back
 *     and detaches. Any exit, unexpected signal or timeout on the way
 *     kills the process; the status pipe says which step failed and why.
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
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

#include "image.h"
#include "proc.h"
#include "restorer/restorer.h"

extern const unsigned char ghost_restorer_blob[];
extern const size_t ghost_restorer_blob_size;

#define S_PAGE 4096ull
#define S_ALIGN(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define S_FPX_MAGIC1 0x46505853u
#define S_FPX_MAGIC2 0x46505845u
#define S_XSAVE_MIN 576u
#define S_ERESTARTSYS 512
#define S_ERESTARTNOINTR 513
#define S_ERESTARTNOHAND 514
#define S_ERESTART_RESTARTBLOCK 516
#define S_USER_CS 0x33
#define S_USER_DS 0x2b
#define S_TASK_SIZE 0x7ffffffff000ull
#define S_SS_AUTODISARM (1u << 31)

typedef Cairn__Ghost__Record s_rec_t;

/* ---------------------------------------------------------------- load */

/* A growable array of record pointers (owned). */
typedef struct {
    s_rec_t **v;           /* records */
    size_t n, cap;         /* used, allocated */
} s_recs_t;

/* The image as loaded: records, page runs and the staging memfd. */
typedef struct {
    s_rec_t *header;       /* Record{header} */
    s_rec_t *process;      /* Record{process} */
    s_rec_t *end;          /* Record{end} */
    s_recs_t threads, vmas, fds;
    struct gr_run *runs;   /* page data in the staging memfd, by vaddr */
    size_t n_runs, cap_runs;
    int staging_fd;        /* memfd holding every page */
    uint64_t staging_len;  /* bytes used in it */
    uint64_t pages;        /* pages read */
    uint64_t bytes;        /* stream bytes consumed */
} s_image_t;

static void s_recs_free(s_recs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        cairn__ghost__record__free_unpacked(r->v[i], NULL);
    free(r->v);
    *r = (s_recs_t){ 0 };
}

static int s_recs_add(s_recs_t *r, s_rec_t *rec)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        s_rec_t **v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = rec;
    return 0;
}

static void s_image_free(s_image_t *im)
{
    if (im->header)
        cairn__ghost__record__free_unpacked(im->header, NULL);
    if (im->process)
        cairn__ghost__record__free_unpacked(im->process, NULL);
    if (im->end)
        cairn__ghost__record__free_unpacked(im->end, NULL);
    s_recs_free(&im->threads);
    s_recs_free(&im->vmas);
    s_recs_free(&im->fds);
    free(im->runs);
    if (im->staging_fd >= 0)
        close(im->staging_fd);
    *im = (s_image_t){ .staging_fd = -1 };
}

static int s_bad(cairn_error_t *err, const char *what, uint64_t at)
{
    return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                           "bad image: %s (at byte %llu)", what,
                           (unsigned long long)at);
}

static int s_check_header(const Cairn__Ghost__ImageHeader *h,
                          cairn_error_t *err)
{
    long page = sysconf(_SC_PAGESIZE);

    if (h->version != GHOST_IMAGE_VERSION)
        return cairn_error_set(err, -EBADMSG, CAIRN_BAD_VERSION,
                               "image version %u, this restorer reads %u",
                               h->version, GHOST_IMAGE_VERSION);
    if (h->page_size != (uint32_t)page)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "image page size %u, this host uses %ld",
                               h->page_size, page);
    if (h->n_processes != 1)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "image holds a tree of %u processes; only "
                               "single-process images are restored yet",
                               h->n_processes);
    return 0;
}

/* The vma of the image (read so far) holding [vaddr, vaddr + len). */
static const Cairn__Ghost__Vma *s_vma_of(const s_image_t *im, uint64_t vaddr,
                                         uint64_t len)
{
    for (size_t i = 0; i < im->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = im->vmas.v[i]->vma;
        if (vaddr >= v->start && vaddr + len <= v->end && vaddr + len > vaddr)
            return v;
    }
    return NULL;
}

static int s_run_add(s_image_t *im, uint64_t vaddr, uint64_t len)
{
    struct gr_run *last = im->n_runs ? &im->runs[im->n_runs - 1] : NULL;

    if (last && last->vaddr + last->len == vaddr &&
        last->off + last->len == im->staging_len) {
        last->len += len;
        return 0;
    }
    if (im->n_runs == im->cap_runs) {
        size_t cap = im->cap_runs ? im->cap_runs * 2 : 64;
        struct gr_run *v = realloc(im->runs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        im->runs = v;
        im->cap_runs = cap;
    }
    im->runs[im->n_runs++] = (struct gr_run){ vaddr, len, im->staging_len };
    return 0;
}

/* Reads the raw bytes of a pages record into the staging memfd, through
 * a shared mapping of the new part of it. */
static int s_load_pages(s_image_t *im, ghost_reader_t *r,
                        const Cairn__Ghost__Pages *p, cairn_error_t *err)
{
    uint64_t len = p->n_pages * S_PAGE;
    const Cairn__Ghost__Vma *v;
    void *win;
    int ret;

    if (p->n_pages == 0 || p->n_pages > (1ull << 36) / S_PAGE ||
        p->vaddr % S_PAGE)
        return s_bad(err, "pages record with a bad range",
                     ghost_reader_bytes(r));
    v = s_vma_of(im, p->vaddr, len);
    if (!v || !v->dumped)
        return s_bad(err, "pages outside every dumped vma",
                     ghost_reader_bytes(r));
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
    ret = ghost_read_raw(r, win, len, err);
    munmap(win, len);
    if (ret < 0)
        return ret;
    ret = s_run_add(im, p->vaddr, len);
    if (ret < 0)
        return cairn_error_set(err, ret, CAIRN_SYSTEM, "out of memory");
    im->staging_len += len;
    im->pages += p->n_pages;
    return 0;
}

/* Files one record; takes ownership of rec (freed on error too). */
static int s_take(s_image_t *im, ghost_reader_t *r, s_rec_t *rec,
                  cairn_error_t *err)
{
    uint64_t at = ghost_reader_bytes(r);
    int ret = 0;

    if (!im->header && rec->r_case != CAIRN__GHOST__RECORD__R_HEADER) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return s_bad(err, "first record is not the header", at);
    }
    switch (rec->r_case) {
    case CAIRN__GHOST__RECORD__R_HEADER:
        if (im->header) {
            ret = s_bad(err, "second header", at);
            break;
        }
        im->header = rec;
        return s_check_header(rec->header, err);
    case CAIRN__GHOST__RECORD__R_PROCESS:
        if (im->process) {
            ret = s_bad(err, "more processes than the header announced", at);
            break;
        }
        im->process = rec;
        return 0;
    case CAIRN__GHOST__RECORD__R_THREAD:
        ret = s_recs_add(&im->threads, rec);
        break;
    case CAIRN__GHOST__RECORD__R_VMA:
        ret = s_recs_add(&im->vmas, rec);
        break;
    case CAIRN__GHOST__RECORD__R_FD:
        ret = s_recs_add(&im->fds, rec);
        break;
    case CAIRN__GHOST__RECORD__R_PAGES:
        ret = s_load_pages(im, r, rec->pages, err);
        cairn__ghost__record__free_unpacked(rec, NULL);
        return ret;
    case CAIRN__GHOST__RECORD__R_END:
        im->end = rec;
        return 0;
    default:
        ret = s_bad(err, "unknown record type", at);
        break;
    }
    if (ret == -ENOMEM)
        ret = cairn_error_set(err, ret, CAIRN_SYSTEM, "out of memory");
    if (ret < 0)
        cairn__ghost__record__free_unpacked(rec, NULL);
    return ret;
}

static int s_check_counts(const s_image_t *im, uint64_t at, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p;

    if (!im->process)
        return s_bad(err, "no process record", at);
    p = im->process->process;
    if (!p->mm)
        return s_bad(err, "process record without its mm layout", at);
    if (p->n_threads != im->threads.n || p->n_vmas != im->vmas.n ||
        p->n_fds != im->fds.n)
        return s_bad(err, "thread/vma/fd counts differ from the process "
                     "record", at);
    if (im->threads.n == 0)
        return s_bad(err, "process without threads", at);
    if (im->end->end->total_pages != im->pages)
        return s_bad(err, "end record's page count differs from the pages "
                     "read", at);
    return 0;
}

static int s_load(int in_fd, s_image_t *im, cairn_error_t *err)
{
    ghost_reader_t *r = ghost_reader_new(in_fd);
    int ret = 0;

    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    im->staging_fd = memfd_create("ghost-staging", MFD_CLOEXEC);
    if (im->staging_fd < 0)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "memfd_create: %s",
                              strerror(errno));
    while (ret == 0 && !im->end) {
        s_rec_t *rec = NULL;
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

/* The restore plan: the region and what lives in it, plus the helper fds
 * the child keeps (every one of them above the image's fds). */
typedef struct {
    uint8_t *region;       /* the mapped region */
    uint64_t region_len;
    uint64_t used;         /* bump allocator over the region */
    struct gr_args *args;
    int helpers[1024];     /* helper fds, ascending after s_plan */
    size_t n_helpers;
    int base_fd;           /* lowest helper fd */
    int status_r, status_w;   /* status pipe */
    int go_r, go_w;           /* the child waits on go_r until seized */
    uint64_t xcr0;         /* features the sigframe xsave restores */
    uint32_t xsave_max;    /* this CPU's xsave size for xcr0 */
    uint64_t leader_mask;  /* the leader's target sigmask */
} s_plan_t;

static void *s_alloc(s_plan_t *pl, size_t len, size_t align)
{
    uint64_t at = S_ALIGN(pl->used, align);

    if (at + len > pl->region_len)
        return NULL;
    pl->used = at + len;
    return pl->region + at;
}

static int s_helper_fd(s_plan_t *pl, int fd, cairn_error_t *err)
{
    int h;

    if (fd < 0)
        return fd;
    h = fcntl(fd, F_DUPFD_CLOEXEC, pl->base_fd);
    close(fd);
    if (h < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "moving a helper fd above %d: %s", pl->base_fd,
                               strerror(errno));
    if (pl->n_helpers == sizeof pl->helpers / sizeof pl->helpers[0]) {
        close(h);
        return cairn_error_set(err, -EMFILE, CAIRN_UNSUPPORTED,
                               "more than %zu helper fds (file-backed vmas)",
                               pl->n_helpers);
    }
    pl->helpers[pl->n_helpers++] = h;
    return h;
}

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
static int s_plan_vdso(s_plan_t *pl, const s_image_t *im,
                       const proc_vmas_t *self, cairn_error_t *err)
{
    const Cairn__Ghost__ImageHeader *h = im->header->header;
    struct gr_args *a = pl->args;
    uint64_t our_vdso = 0, target_vdso = 0, our_total = 0, target_total = 0;
    struct utsname u;

    for (size_t i = 0; i < self->n; i++)
        if (!strcmp(self->v[i].path, "[vdso]"))
            our_vdso = self->v[i].start;
    for (size_t i = 0; i < im->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = im->vmas.v[i]->vma;
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
    for (size_t i = 0; target_vdso && i < im->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = im->vmas.v[i]->vma;
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
static bool s_target_free(const s_image_t *im, uint64_t start, uint64_t len)
{
    const uint64_t margin = 16ull << 20;

    for (size_t i = 0; i < im->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = im->vmas.v[i]->vma;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL)
            continue;
        if (start < v->end + margin && v->start < start + len + margin)
            return false;
    }
    return true;
}

/* Maps the region at a place free in both layouts: candidates just above
 * every target vma, tried with MAP_FIXED_NOREPLACE. */
static int s_map_region(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    for (size_t i = 0; i <= im->vmas.n; i++) {
        uint64_t at = i < im->vmas.n ? im->vmas.v[i]->vma->end : (1ull << 32);
        at = S_ALIGN(at + (32ull << 20), 1ull << 21);
        if (at + pl->region_len >= S_TASK_SIZE ||
            !s_target_free(im, at, pl->region_len))
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

static uint64_t s_frame_size(const s_image_t *im, size_t i)
{
    const Cairn__Ghost__Thread *t = im->threads.v[i]->thread;
    return 1024 + S_ALIGN(t->xsave.len + 4, 64);
}

static uint64_t s_region_size(const s_image_t *im)
{
    uint64_t n = S_ALIGN(ghost_restorer_blob_size, S_PAGE);
    uint64_t args = sizeof(struct gr_args) + 4096 +
                    im->vmas.n * (sizeof(struct gr_vma) + sizeof(int32_t) * 2) +
                    im->n_runs * sizeof(struct gr_run) + 64 * 64 +
                    im->process->process->mm->auxv.len + 16 * 1024;
    const Cairn__Ghost__Process *p = im->process->process;

    args += p->n_shared_pending * sizeof(struct gr_sigq);
    args += (p->n_rlimits + p->n_itimers) * 64;
    for (size_t i = 0; i < im->threads.n; i++)
        args += sizeof(struct gr_thread) + s_frame_size(im, i) +
                im->threads.v[i]->thread->n_pending * sizeof(struct gr_sigq);
    n += S_ALIGN(args, S_PAGE);
    n += im->threads.n * GR_STACK_SIZE;
    n += 64 * S_PAGE;   /* vdso scratch: vvar + vclock + vdso fit easily */
    return S_ALIGN(n, S_PAGE);
}

/* The file a file-backed vma maps, opened as a helper fd. */
static int s_open_vma_file(s_plan_t *pl, const Cairn__Ghost__Vma *v,
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
    if (fstat(fd, &st) == 0 && v->ino && (uint64_t)st.st_dev == v->dev &&
        (uint64_t)st.st_ino != v->ino) {
        close(fd);
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                               "%s was replaced since the dump (inode %llu, "
                               "now %llu)", v->path,
                               (unsigned long long)v->ino,
                               (unsigned long long)st.st_ino);
    }
    return s_helper_fd(pl, fd, err);
}

/* One memfd per shared-memory object (shmid), sized for every vma of it. */
static int s_open_shmem(s_plan_t *pl, const s_image_t *im, size_t idx,
                        int *fds, cairn_error_t *err)
{
    const Cairn__Ghost__Vma *v = im->vmas.v[idx]->vma;
    uint64_t size = 0;
    const char *name = "ghost-shmem";
    char buf[256];
    int fd;

    for (size_t j = 0; j < idx; j++)
        if (fds[j] >= 0 && im->vmas.v[j]->vma->shmid == v->shmid &&
            im->vmas.v[j]->vma->kind == v->kind)
            return fds[j];
    for (size_t j = 0; j < im->vmas.n; j++) {
        const Cairn__Ghost__Vma *w = im->vmas.v[j]->vma;
        if (w->shmid == v->shmid && w->kind == v->kind &&
            w->pgoff + (w->end - w->start) > size)
            size = w->pgoff + (w->end - w->start);
    }
    if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD &&
        sscanf(v->path, "/memfd:%255[^(]", buf) == 1) {
        size_t n = strlen(buf);
        while (n && buf[n - 1] == ' ')
            buf[--n] = '\0';
        name = buf;
    }
    fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return cairn_error_set(err, -e, CAIRN_SYSTEM,
                               "memfd for shared memory %llu: %s",
                               (unsigned long long)v->shmid, strerror(e));
    }
    return s_helper_fd(pl, fd, err);
}

static bool s_vma_has_pages(const Cairn__Ghost__Vma *v)
{
    return v->kind != CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED;
}

static int s_plan_vmas(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    int *fds = calloc(im->vmas.n + 1, sizeof *fds);
    int ret = 0;

    a->vmas = s_alloc(pl, (im->vmas.n + 1) * sizeof *a->vmas, 64);
    if (!fds || !a->vmas) {
        free(fds);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    }
    for (size_t i = 0; i < im->vmas.n && ret >= 0; i++) {
        const Cairn__Ghost__Vma *v = im->vmas.v[i]->vma;
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
            ret = fds[i] = s_open_shmem(pl, im, i, fds, err);
            g.fd = fds[i];
            g.pgoff = v->pgoff;
            g.map_flags = MAP_SHARED;
            break;
        default:
            ret = cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                  "vma %#llx of unknown kind %d",
                                  (unsigned long long)v->start, v->kind);
        }
        if (ret >= 0)
            a->vmas[a->n_vmas++] = g;
    }
    free(fds);
    return ret < 0 ? ret : 0;
}

static int s_plan_runs(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    struct gr_args *a = pl->args;

    a->runs = s_alloc(pl, (im->n_runs + 1) * sizeof *a->runs, 64);
    if (!a->runs)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < im->n_runs; i++) {
        const Cairn__Ghost__Vma *v = s_vma_of(im, im->runs[i].vaddr, 1);
        if (v && s_vma_has_pages(v))
            a->runs[a->n_runs++] = im->runs[i];
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

/* Registers of a thread as it must resume: a syscall interrupted by the
 * dump is re-executed, or returns EINTR if it cannot be. */
static void s_fix_restart(struct user_regs_struct *r,
                          const Cairn__Ghost__Thread *t)
{
    long long nr = t->syscall_nr >= 0 ? t->syscall_nr : (long long)r->orig_rax;
    long long ret = t->syscall_nr >= 0 ? t->syscall_ret : (long long)r->rax;

    if (nr < 0)
        return;
    switch (-ret) {
    case S_ERESTARTSYS:
    case S_ERESTARTNOINTR:
    case S_ERESTARTNOHAND:
        r->rax = (unsigned long long)nr;
        r->rip -= 2;
        break;
    case S_ERESTART_RESTARTBLOCK:
        r->rax = (unsigned long long)-EINTR;
        break;
    default:
        break;
    }
}

static int s_check_xsave(const s_plan_t *pl, const Cairn__Ghost__Thread *t,
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
static uint64_t s_put_xsave(s_plan_t *pl, const Cairn__Ghost__Thread *t)
{
    uint8_t *x = s_alloc(pl, t->xsave.len + 4, 64);
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
static int s_put_frame(s_plan_t *pl, const Cairn__Ghost__Thread *t,
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
    s_fix_restart(&regs, t);
    frame = s_alloc(pl, 8 + sizeof *uc + 128, 64);
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

static int s_sigq_add(s_plan_t *pl, const Cairn__Ghost__SigInfo *si,
                      int32_t tid, cairn_error_t *err)
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
    q->tid = tid;
    pl->args->n_sigq++;
    return 0;
}

static int s_plan_threads(s_plan_t *pl, const s_image_t *im, bool new_pid,
                          cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    size_t n = im->threads.n, k = 1;
    uint8_t *stacks;

    a->threads = s_alloc(pl, n * sizeof *a->threads, 64);
    stacks = s_alloc(pl, n * GR_STACK_SIZE, S_PAGE);
    if (!a->threads || !stacks)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < n; i++) {
        const Cairn__Ghost__Thread *t = im->threads.v[i]->thread;
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
        ret = s_put_frame(pl, t, &g->frame, err);
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

static int s_plan_signals(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = im->process->process;
    struct gr_args *a = pl->args;
    size_t n = p->n_shared_pending;
    int ret = 0;

    for (size_t i = 0; i < im->threads.n; i++)
        n += im->threads.v[i]->thread->n_pending;
    a->sigq = s_alloc(pl, (n + 1) * sizeof *a->sigq, 64);
    if (!a->sigq)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < im->threads.n && ret == 0; i++) {
        const Cairn__Ghost__Thread *t = im->threads.v[i]->thread;
        for (size_t j = 0; j < t->n_pending && ret == 0; j++)
            ret = s_sigq_add(pl, t->pending[j], t->tid, err);
    }
    for (size_t i = 0; i < p->n_shared_pending && ret == 0; i++)
        ret = s_sigq_add(pl, p->shared_pending[i], 0, err);
    return ret;
}

static int s_plan_limits(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = im->process->process;
    struct gr_args *a = pl->args;

    a->rlimits = s_alloc(pl, (p->n_rlimits + 1) * sizeof *a->rlimits, 64);
    a->itimers = s_alloc(pl, (p->n_itimers + 1) * sizeof *a->itimers, 64);
    if (!a->rlimits || !a->itimers)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < p->n_rlimits; i++)
        a->rlimits[a->n_rlimits++] = (struct gr_rlimit){
            .resource = p->rlimits[i]->resource, .cur = p->rlimits[i]->cur,
            .max = p->rlimits[i]->max };
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

static int s_plan_mm(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    const Cairn__Ghost__MmLayout *m = im->process->process->mm;
    struct gr_args *a = pl->args;
    void *auxv = s_alloc(pl, m->auxv.len + 8, 64);
    int fd;

    if (!auxv)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    memcpy(auxv, m->auxv.data, m->auxv.len);
    fd = open(m->exe_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "cannot open the executable %s: %s",
                               m->exe_path, strerror(errno));
    fd = s_helper_fd(pl, fd, err);   /* the blob closes it after PR_SET_MM_MAP */
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
static int s_plan_keep(s_plan_t *pl, cairn_error_t *err)
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
    a->unmap_end = S_TASK_SIZE;
    a->close_fds = s_alloc(pl, (pl->n_helpers + 1) * sizeof(int32_t), 8);
    if (!a->close_fds)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    return 0;
}

static int s_cmp_int(const void *x, const void *y)
{
    return *(const int *)x - *(const int *)y;
}

static int s_plan_fds(s_plan_t *pl, const s_image_t *im, cairn_error_t *err)
{
    int max = 2, fds[2];

    for (size_t i = 0; i < im->fds.n; i++)
        if (im->fds.v[i]->fd->fd > max)
            max = im->fds.v[i]->fd->fd;
    if (max > 65535)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "fd %d is above what the restorer handles", max);
    pl->base_fd = max + 1;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s",
                               strerror(errno));
    pl->status_r = fds[0];
    pl->status_w = s_helper_fd(pl, fds[1], err);
    if (pipe2(fds, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s",
                               strerror(errno));
    pl->go_w = fds[1];
    pl->go_r = s_helper_fd(pl, fds[0], err);
    if (pl->status_w < 0 || pl->go_r < 0)
        return -EMFILE;
    return 0;
}

static void s_plan_free(s_plan_t *pl)
{
    if (pl->region)
        munmap(pl->region, pl->region_len);
    for (size_t i = 0; i < pl->n_helpers; i++)
        close(pl->helpers[i]);
    if (pl->status_r >= 0)
        close(pl->status_r);
    if (pl->go_w >= 0)
        close(pl->go_w);
    *pl = (s_plan_t){ .status_r = -1, .go_w = -1 };
}

static int s_plan(s_plan_t *pl, s_image_t *im, bool new_pid,
                  cairn_error_t *err)
{
    proc_vmas_t self = { 0 };
    int ret;

    pl->xcr0 = s_xgetbv0();
    pl->xsave_max = s_xsave_size();
    pl->region_len = s_region_size(im);
    ret = s_map_region(pl, im, err);
    if (ret < 0)
        return ret;
    memcpy(pl->region, ghost_restorer_blob, ghost_restorer_blob_size);
    pl->used = S_ALIGN(ghost_restorer_blob_size, S_PAGE);
    pl->args = s_alloc(pl, sizeof *pl->args, 64);
    pl->args->magic = GR_ARGS_MAGIC;
    ret = proc_read_vmas(0, false, &self, err);
    if (ret == 0)
        ret = s_plan_vdso(pl, im, &self, err);
    proc_vmas_free(&self);
    if (ret == 0)
        ret = s_plan_fds(pl, im, err);
    if (ret == 0)
        ret = s_plan_vmas(pl, im, err);
    if (ret == 0)
        ret = s_plan_runs(pl, im, err);
    if (ret == 0)
        ret = s_plan_threads(pl, im, new_pid, err);
    if (ret == 0)
        ret = s_plan_signals(pl, im, err);
    if (ret == 0)
        ret = s_plan_limits(pl, im, err);
    if (ret == 0)
        ret = s_plan_mm(pl, im, err);
    if (ret == 0)
        ret = s_plan_keep(pl, err);
    if (ret < 0)
        return ret;
    pl->args->staging_fd = s_helper_fd(pl, dup(im->staging_fd), err);
    if (pl->args->staging_fd < 0)
        return pl->args->staging_fd;
    pl->args->status_fd = pl->status_w;
    pl->args->scratch = (uint64_t)(uintptr_t)pl->region + pl->region_len -
                        64 * S_PAGE;
    qsort(pl->helpers, pl->n_helpers, sizeof pl->helpers[0], s_cmp_int);
    for (size_t i = 0; i < pl->n_helpers; i++)
        if (pl->helpers[i] != pl->args->status_fd &&
            pl->helpers[i] != pl->args->staging_fd &&
            pl->helpers[i] != (int)pl->args->mm.exe_fd &&
            pl->helpers[i] != pl->go_r)
            pl->args->close_fds[pl->args->n_close++] = pl->helpers[i];
    return 0;
}

/* --------------------------------------------------------------- child */

/* Reports a failure of the child's libc stage and exits. */
static void __attribute__((noreturn, format(printf, 4, 5)))
s_child_fail(const s_plan_t *pl, int e, int fd, const char *fmt, ...)
{
    struct gr_status st = { .stage = GR_STAGE_CHILD, .err = e,
                            .arg = (uint64_t)fd };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st.msg, sizeof st.msg, fmt, ap);
    va_end(ap);
    if (write(pl->status_w, &st, sizeof st) < 0)
        _exit(2);
    _exit(1);
}

/* Closes every fd that is not a helper (helpers are sorted). */
static void s_child_close_others(const s_plan_t *pl)
{
    unsigned int from = 0;

    for (size_t i = 0; i < pl->n_helpers; i++) {
        if ((unsigned int)pl->helpers[i] > from)
            syscall(SYS_close_range, from, pl->helpers[i] - 1, 0);
        from = (unsigned int)pl->helpers[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

static void s_child_place(const s_plan_t *pl, int fd, int target, bool cloexec)
{
    if (fd != target) {
        if (dup3(fd, target, cloexec ? O_CLOEXEC : 0) < 0)
            s_child_fail(pl, errno, target, "fd %d: dup3: %s", target,
                         strerror(errno));
        close(fd);
    } else if (!cloexec) {
        fcntl(fd, F_SETFD, 0);
    }
}

static void s_child_open(const s_plan_t *pl, const Cairn__Ghost__Fd *f)
{
    int flags = f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
    int fd;

    if (strstr(f->path, " (deleted)") || f->path[0] != '/')
        s_child_fail(pl, ENOENT, f->fd, "fd %d: %s cannot be reopened",
                     f->fd, f->path);
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_DIRECTORY)
        flags |= O_DIRECTORY;
    fd = open(f->path, flags | O_CLOEXEC);
    if (fd < 0)
        s_child_fail(pl, errno, f->fd, "fd %d: cannot reopen %s: %s", f->fd,
                     f->path, strerror(errno));
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_REGULAR &&
        lseek(fd, f->pos, SEEK_SET) != f->pos)
        s_child_fail(pl, errno, f->fd, "fd %d: cannot seek %s to %lld: %s",
                     f->fd, f->path, (long long)f->pos, strerror(errno));
    s_child_place(pl, fd, f->fd, f->cloexec);
}

/* Recreates the pipe of f (its read end's record carries the data) and
 * places it into every fd of the image that refers to it. */
static void s_child_pipe(const s_plan_t *pl, const s_image_t *im, size_t idx)
{
    const Cairn__Ghost__Fd *f = im->fds.v[idx]->fd;
    bool have[2] = { false, false };
    int p[2];

    for (size_t j = 0; j < idx; j++)
        if (im->fds.v[j]->fd->kind == CAIRN__GHOST__FD_KIND__FD_PIPE &&
            im->fds.v[j]->fd->pipe_id == f->pipe_id)
            return;   /* placed with an earlier fd of the same pipe */
    for (size_t j = 0; j < im->fds.n; j++) {
        const Cairn__Ghost__Fd *g = im->fds.v[j]->fd;
        if (g->kind == CAIRN__GHOST__FD_KIND__FD_PIPE && g->pipe_id == f->pipe_id)
            have[g->pipe_write_end] = true;
    }
    if (!have[0])
        s_child_fail(pl, EPIPE, f->fd, "fd %d: write end of pipe %llu whose "
                     "read end was outside the image", f->fd,
                     (unsigned long long)f->pipe_id);
    if (pipe2(p, O_CLOEXEC) < 0)
        s_child_fail(pl, errno, f->fd, "pipe: %s", strerror(errno));
    for (size_t j = 0; j < im->fds.n; j++) {
        const Cairn__Ghost__Fd *g = im->fds.v[j]->fd;
        if (g->kind != CAIRN__GHOST__FD_KIND__FD_PIPE || g->pipe_id != f->pipe_id ||
            g->pipe_data.len == 0)
            continue;
        if (g->pipe_data.len > 65536)
            fcntl(p[1], F_SETPIPE_SZ, (int)g->pipe_data.len);
        if (write(p[1], g->pipe_data.data, g->pipe_data.len) !=
            (ssize_t)g->pipe_data.len)
            s_child_fail(pl, errno, g->fd, "fd %d: refilling pipe with %zu "
                         "bytes failed", g->fd, g->pipe_data.len);
    }
    for (size_t j = 0; j < im->fds.n; j++) {
        const Cairn__Ghost__Fd *g = im->fds.v[j]->fd;
        if (g->kind != CAIRN__GHOST__FD_KIND__FD_PIPE || g->pipe_id != f->pipe_id)
            continue;
        int end = p[g->pipe_write_end];
        if (dup3(end, g->fd, g->cloexec ? O_CLOEXEC : 0) < 0)
            s_child_fail(pl, errno, g->fd, "fd %d: dup3: %s", g->fd,
                         strerror(errno));
        fcntl(g->fd, F_SETFL, g->flags & (O_NONBLOCK | O_APPEND));
    }
    for (int e = 0; e < 2; e++) {
        bool used = false;
        for (size_t j = 0; j < im->fds.n; j++)
            used |= im->fds.v[j]->fd->fd == p[e];
        if (!used)
            close(p[e]);
    }
}

static void s_child_fds(const s_plan_t *pl, const s_image_t *im)
{
    for (size_t i = 0; i < im->fds.n; i++) {
        const Cairn__Ghost__Fd *f = im->fds.v[i]->fd;
        if (f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE)
            s_child_pipe(pl, im, i);
        else
            s_child_open(pl, f);
    }
}

/* Handlers, with the target's own sa_restorer: through the raw syscall,
 * as the kernel stores them. */
static void s_child_sigactions(const s_plan_t *pl, const Cairn__Ghost__Process *p)
{
    for (size_t i = 0; i < p->n_sigactions; i++) {
        const Cairn__Ghost__SigAction *s = p->sigactions[i];
        uint64_t ksa[4] = { s->handler, s->flags, s->restorer, s->mask };
        if (s->signo == SIGKILL || s->signo == SIGSTOP)
            continue;
        if (syscall(SYS_rt_sigaction, s->signo, ksa, NULL, 8) < 0)
            s_child_fail(pl, errno, 0, "rt_sigaction(%u): %s", s->signo,
                         strerror(errno));
    }
}

/* glibc registered an rseq area for this thread in our TLS; the kernel
 * would write into it after the blob unmapped it. */
static void s_child_drop_rseq(const s_plan_t *pl)
{
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;

    if (__rseq_size == 0)
        return;
    if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0 &&
        syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0)
        s_child_fail(pl, errno, 0, "unregistering glibc's rseq: %s",
                     strerror(errno));
}

static void __attribute__((noreturn))
s_child_main(s_plan_t *pl, const s_image_t *im)
{
    const Cairn__Ghost__Process *p = im->process->process;
    struct gr_thread *lead = &pl->args->threads[0];
    char go;

    if (read(pl->go_r, &go, 1) != 1)
        _exit(1);   /* the caller is gone */
    s_child_close_others(pl);
    s_child_fds(pl, im);
    if (p->cwd[0] && chdir(p->cwd) < 0)
        s_child_fail(pl, errno, 0, "cwd %s: %s", p->cwd, strerror(errno));
    umask((mode_t)p->umask);
    if (personality(p->personality) < 0)
        s_child_fail(pl, errno, 0, "personality(%#x): %s", p->personality,
                     strerror(errno));
    prctl(PR_SET_NAME, p->comm, 0, 0, 0);
    s_child_sigactions(pl, p);
    s_child_drop_rseq(pl);
    close(pl->go_r);
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

typedef struct {
    pid_t pid;             /* the restored process */
    pid_t tids[1024];      /* threads seen so far */
    enum s_tstate st[1024];
    size_t n;              /* threads seen */
    size_t held;           /* threads stopped after their rt_sigreturn */
} s_trace_t;

static size_t s_tslot(s_trace_t *tr, pid_t tid)
{
    for (size_t i = 0; i < tr->n; i++)
        if (tr->tids[i] == tid)
            return i;
    if (tr->n == sizeof tr->tids / sizeof tr->tids[0])
        return tr->n - 1;
    tr->tids[tr->n] = tid;
    tr->st[tr->n] = S_T_RUNNING;
    return tr->n++;
}

/* Explains why the process ended, from the status pipe. */
static int s_explain(const s_plan_t *pl, int wstatus, cairn_error_t *err)
{
    static const char *const stages[] = {
        "ok", "child", "unmapping the old address space", "moving the vdso",
        "mapping a vma", "copying pages", "setting a vma's protection",
        "PR_SET_MM_MAP", "setting an rlimit", "setting thread state",
        "creating a thread", "re-queueing a pending signal", "setting an itimer",
        "entering the process (rt_sigreturn)" };
    struct gr_status st;

    fcntl(pl->status_r, F_SETFL, O_NONBLOCK);
    if (read(pl->status_r, &st, sizeof st) == (ssize_t)sizeof st &&
        st.stage > 0 && st.stage < (int)(sizeof stages / sizeof stages[0])) {
        st.msg[sizeof st.msg - 1] = '\0';
        if (st.stage == GR_STAGE_CHILD)
            return cairn_error_set(err, -(st.err ? st.err : EIO),
                                   CAIRN_FAILED_PRECONDITION, "%s", st.msg);
        return cairn_error_set(err, -(st.err ? st.err : EIO), CAIRN_SYSTEM,
                               "restorer failed %s (%#llx): %s",
                               stages[st.stage], (unsigned long long)st.arg,
                               strerror(st.err));
    }
    if (WIFSIGNALED(wstatus))
        return cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                               "restored process died of signal %d before "
                               "reaching its target state",
                               WTERMSIG(wstatus));
    return cairn_error_set(err, -EIO, CAIRN_INTERNAL,
                           "restored process exited with %d before reaching "
                           "its target state", WEXITSTATUS(wstatus));
}

static int s_wait(pid_t *ret_tid, int *ret_status, uint64_t deadline_ms)
{
    sigset_t chld;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        struct timespec now, left;
        pid_t w = waitpid(-1, ret_status, __WALL | WNOHANG);
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
        left.tv_sec = (time_t)((deadline_ms - now_ms) / 1000);
        left.tv_nsec = (long)((deadline_ms - now_ms) % 1000 * 1000000);
        if (left.tv_sec > 0 || left.tv_nsec > 10000000)
            left = (struct timespec){ 0, 10000000 };
        sigtimedwait(&chld, NULL, &left);
    }
}

/* One ptrace stop of a restored thread, until it is held past its
 * rt_sigreturn. Returns 1 when the whole process ended. */
static int s_on_stop(s_trace_t *tr, pid_t tid, int status)
{
    size_t i = s_tslot(tr, tid);
    int sig = WSTOPSIG(status), event = status >> 16;

    if (event) {   /* PTRACE_EVENT_STOP of a new thread, or CLONE */
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

/* Runs one syscall in a held thread through the blob's gadget, with all
 * signals blocked, then puts its registers back. */
static int s_inject_munmap(pid_t tid, uint64_t start, uint64_t len,
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

static uint64_t s_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int s_supervise(const s_plan_t *pl, pid_t pid, uint32_t n_threads,
                       uint32_t timeout_ms, cairn_error_t *err)
{
    s_trace_t *tr = calloc(1, sizeof *tr);
    uint64_t deadline = s_now_us() / 1000 + timeout_ms;
    int ret = 0;

    if (!tr)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    tr->pid = pid;
    while (ret == 0 && tr->held < n_threads) {
        pid_t tid = 0;
        int status = 0;
        ret = s_wait(&tid, &status, deadline);
        if (ret == -ETIMEDOUT)
            ret = cairn_error_set(err, ret, CAIRN_TIMEOUT,
                                  "restored process did not reach its target "
                                  "state within %u ms", timeout_ms);
        else if (ret < 0)
            ret = cairn_error_set(err, ret, CAIRN_SYSTEM, "waitpid: %s",
                                  strerror(-ret));
        else if (tid == pid && (WIFEXITED(status) || WIFSIGNALED(status)))
            ret = s_explain(pl, status, err);
        else if (WIFSTOPPED(status))
            s_on_stop(tr, tid, status);
    }
    if (ret == 0)
        ret = s_inject_munmap(pid, (uint64_t)(uintptr_t)pl->region,
                              pl->region_len,
                              (uint64_t)(uintptr_t)pl->region + GR_GADGET_OFFSET,
                              pl->leader_mask, err);
    for (size_t i = 0; ret == 0 && i < tr->n; i++)
        if (ptrace(PTRACE_DETACH, tr->tids[i], 0, 0) < 0)
            ret = cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                  "detaching thread %d: %s", tr->tids[i],
                                  strerror(errno));
    free(tr);
    return ret;
}

/* ---------------------------------------------------------------- main */

/* Whether every id of the image is free (same-pid restore only). */
static int s_check_ids(const s_image_t *im, cairn_error_t *err)
{
    for (size_t i = 0; i < im->threads.n; i++) {
        char path[64];
        uint32_t tid = im->threads.v[i]->thread->tid;
        snprintf(path, sizeof path, "/proc/%u", tid);
        if (access(path, F_OK) == 0)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "%s %u is taken by another process",
                                   tid == im->process->process->pid ? "pid"
                                                                     : "thread id",
                                   tid);
    }
    return 0;
}

static pid_t s_clone(pid_t want, cairn_error_t *err)
{
    struct clone_args ca = { .exit_signal = SIGCHLD };
    pid_t set_tid = want;
    long r;

    if (want) {
        ca.set_tid = (uint64_t)(uintptr_t)&set_tid;
        ca.set_tid_size = 1;
    }
    r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r < 0 && errno == EEXIST)
        return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                               "pid %d is taken by another process", want);
    if (r < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "clone3%s: %s", want ? " with set_tid" : "",
                               strerror(errno));
    return (pid_t)r;
}

static int s_spawn(s_plan_t *pl, const s_image_t *im, bool new_pid,
                   uint32_t timeout_ms, pid_t *ret_pid, cairn_error_t *err)
{
    sigset_t all, old;
    pid_t pid;
    int ret, status;
    char go = 1;

    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = s_clone(new_pid ? 0 : (pid_t)im->process->process->pid, err);
    if (pid == 0)
        s_child_main(pl, im);
    if (pid < 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return pid;
    }
    if (ptrace(PTRACE_SEIZE, pid, 0,
               (void *)(long)(PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD |
                              PTRACE_O_TRACECLONE)) < 0)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "PTRACE_SEIZE: %s",
                              strerror(errno));
    else if (write(pl->go_w, &go, 1) != 1)
        ret = cairn_error_set(err, -errno, CAIRN_SYSTEM, "go pipe: %s",
                              strerror(errno));
    else
        ret = s_supervise(pl, pid, (uint32_t)im->threads.n, timeout_ms, err);
    if (ret < 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
            ;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (ret == 0)
        *ret_pid = pid;
    return ret;
}

int ghost_restore(int in_fd, const ghost_restore_opts_t *opts,
                  ghost_restore_stats_t *ret_stats, cairn_error_t *err)
{
    s_image_t im = { .staging_fd = -1 };
    s_plan_t pl = { .status_r = -1, .go_w = -1 };
    uint64_t t0 = s_now_us();
    uint32_t timeout = opts && opts->timeout_ms ? opts->timeout_ms : 30000;
    bool new_pid = opts && opts->new_pid;
    pid_t pid = 0;
    int ret;

    if (in_fd < 0 || !ret_stats)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ghost_restore: bad arguments");
    ret = s_load(in_fd, &im, err);
    if (ret == 0 && !new_pid)
        ret = s_check_ids(&im, err);
    if (ret == 0)
        ret = s_plan(&pl, &im, new_pid, err);
    if (ret == 0)
        ret = s_spawn(&pl, &im, new_pid, timeout, &pid, err);
    if (ret == 0)
        *ret_stats = (ghost_restore_stats_t){
            .pid = pid, .original_pid = (pid_t)im.process->process->pid,
            .same_pid = pid == (pid_t)im.process->process->pid,
            .image_bytes = im.bytes, .pages = im.pages, .processes = 1,
            .threads = (uint32_t)im.threads.n,
            .restore_us = s_now_us() - t0 };
    s_plan_free(&pl);
    s_image_free(&im);
    return ret;
}
