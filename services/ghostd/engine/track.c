/* track.c - which pages a running process tree writes, for pre-copy
 * (track.h).
 *
 * Design. A userfaultfd belongs to the mm of the process that made it, so
 * each process makes its own: the tree is frozen as for a dump (seize.c),
 * userfaultfd() is injected into each leader, the fd is taken over with
 * pidfd_getfd and closed in the process, and the tree is let go -- a
 * stop of well under a millisecond per process. From then on everything
 * is done from here through our copy, while the tree runs: UFFDIO_API
 * asks for write-protect async mode (UFFD_FEATURE_WP_ASYNC, which implies
 * WP_UNPOPULATED), UFFDIO_REGISTER (MODE_WP) takes each private anonymous
 * and private file mapping, and PAGEMAP_SCAN on /proc/PID/pagemap with
 * PM_SCAN_WP_MATCHING returns the pages written since the last scan (no
 * uffd-wp bit: PAGE_IS_WRITTEN) and write-protects them in the same walk.
 * In async mode a write to a protected page is resolved by the kernel
 * itself (it clears the bit; no message, no thread waiting), so the
 * process never waits on us.
 *
 * Only present or swapped pages are ever matched, never empty ones: a
 * scan that protected an empty pte would leave a uffd-wp marker there,
 * which PAGEMAP_SCAN reports as a swapped page that was not written --
 * indistinguishable from a real one. With no marker of ours, a page that
 * is dropped (MADV_DONTNEED), moved (mremap clears the bits) or replaced
 * (munmap + mmap: the new mapping is not registered) is written again or
 * absent in the eyes of the next scan. At the freeze, a page is *kept*
 * -- its content is the last copy a round took -- only when it is
 * present, still protected, and in a mapping registered in async mode
 * (PAGE_IS_WPALLOWED): the kernel's own statement that nothing wrote it
 * since our scan protected it. Everything else present is copied then:
 * written pages, swapped ones (a marker a file mapping's zap left would
 * look like one), mappings made or re-made since (not registered yet),
 * whole processes born since the tracking began, and the regions a round
 * could not copy (track_lost).
 *
 * Undoing: UFFDIO_UNREGISTER clears the bits of every page of a mapping
 * (and the registration); closing the last fd does the same for every
 * mapping still registered, so a ghost-dump that dies leaves nothing
 * behind either.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "mem.h"
#include "ns.h"
#include "seize.h"
#include "track.h"
#include "util/array.h"
#include "util/clock.h"

/* Newer than Debian 12's <linux/userfaultfd.h>; the kernel decides. */
#define S_UFFD_USER_MODE_ONLY 1
#define S_UFFD_FEATURE_WP_UNPOPULATED (1ull << 13)
#define S_UFFD_FEATURE_WP_ASYNC (1ull << 15)

#define S_REGIONS 512      /* regions one PAGEMAP_SCAN call may return */

/* A range of a process's memory. */
typedef struct s_range {
    uint64_t start, end;
} s_range_t;

struct track_proc {
    pid_t pid;
    pid_t image_pid;       /* as the image names it (inside a job: ns.h) */
    int uffd;              /* our copy of its userfaultfd, -1 if none */
    int pagemap_fd;        /* /proc/PID/pagemap */
    int mem_fd;            /* /proc/PID/mem */
    s_range_t *lost;       /* found written, not copied: never kept */
    size_t n_lost, cap_lost;
};

struct track {
    track_proc_t *p;       /* one per process of the tree at the start */
    size_t n;
};

/* ---- the processes ----------------------------------------------------- */

size_t track_count(const track_t *t)
{
    return t ? t->n : 0;
}

track_proc_t *track_proc(track_t *t, size_t i)
{
    return t && i < t->n ? &t->p[i] : NULL;
}

track_proc_t *track_find(track_t *t, pid_t pid)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (t->p[i].pid == pid && t->p[i].uffd >= 0)
            return &t->p[i];
    return NULL;
}

pid_t track_image_pid(const track_proc_t *p)
{
    return p->image_pid;
}

pid_t track_pid(const track_proc_t *p)
{
    return p->pid;
}

int track_mem_fd(const track_proc_t *p)
{
    return p->mem_fd;
}

int track_lost(track_proc_t *p, uint64_t start, uint64_t end)
{
    if (CAIRN_GROW(p->lost, p->cap_lost, p->n_lost + 1, 16) < 0)
        return -ENOMEM;
    p->lost[p->n_lost++] = (s_range_t){ start, end };
    return 0;
}

/* ---- the mappings tracked ---------------------------------------------- */

/* Whether v is a mapping whose written pages a dump copies (pages.c:
 * private anonymous memory, the heap, the stack, a private file
 * mapping); *ret_anon_only: a private file mapping, whose page-cache
 * pages are the file's and never copied. */
static bool s_tracked_kind(pid_t pid, const proc_vma_t *v, bool *ret_anon_only)
{
    Cairn__Ghost__VmaKind k;
    cairn_error_t ignored;
    if (mem_vma_kind(pid, v, &k, &ignored) < 0)
        return false;   /* the dump's check says why, at the freeze */
    *ret_anon_only = k == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE;
    return k == CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE ||
           k == CAIRN__GHOST__VMA_KIND__VMA_HEAP || k == CAIRN__GHOST__VMA_KIND__VMA_STACK ||
           k == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE;
}

/* Registers v in write-protect mode. A mapping already registered is left
 * as it is (the kernel skips it); one the kernel will not take (another
 * userfaultfd's, a droppable one) stays untracked: its pages are copied
 * at the freeze. */
static void s_register(const track_proc_t *p, const proc_vma_t *v)
{
    struct uffdio_register reg = {
        .range = { .start = v->start, .len = v->end - v->start },
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    (void)ioctl(p->uffd, UFFDIO_REGISTER, &reg);
}

/* Drops every registration of p: the kernel clears the uffd-wp bit of
 * every page of each mapping as it does. */
static void s_unregister_all(const track_proc_t *p)
{
    proc_vmas_t vm = { 0 };
    if (proc_read_vmas(p->pid, false, &vm, NULL) < 0)
        return;   /* gone: its mm went with it */
    for (size_t i = 0; i < vm.n; i++) {
        bool anon_only;
        if (!s_tracked_kind(p->pid, &vm.v[i], &anon_only))
            continue;
        struct uffdio_range r = { vm.v[i].start, vm.v[i].end - vm.v[i].start };
        (void)ioctl(p->uffd, UFFDIO_UNREGISTER, &r);
    }
    proc_vmas_free(&vm);
}

/* ---- scans ------------------------------------------------------------- */

/* One PAGEMAP_SCAN walk of [start, end) of p, batch by batch into fn. */
typedef struct s_scan {
    uint64_t flags;        /* PM_SCAN_* */
    uint64_t inverted, mask, anyof, ret_mask;
    bool frozen;           /* tell kept regions (track_scan_frozen) */
} s_scan_t;

/* Whether [a, b) meets a range p could not copy; *ret_cut: where the
 * first such range starts at or after a (or b). */
static bool s_meets_lost(const track_proc_t *p, uint64_t a, uint64_t b, uint64_t *ret_cut,
                         uint64_t *ret_cut_end)
{
    bool met = false;
    *ret_cut = b;
    for (size_t i = 0; i < p->n_lost; i++) {
        uint64_t s = p->lost[i].start > a ? p->lost[i].start : a;
        uint64_t e = p->lost[i].end < b ? p->lost[i].end : b;
        if (s < e && s < *ret_cut) {
            *ret_cut = s;
            *ret_cut_end = e;
            met = true;
        }
    }
    return met;
}

/* Output regions of a frozen scan, in batches. */
typedef struct s_out {
    track_region_t v[64];
    size_t n;
} s_out_t;

static int s_emit(s_out_t *o, track_proc_t *p, track_fn fn, void *arg, uint64_t a, uint64_t b,
                  bool kept, cairn_error_t *err)
{
    if (a >= b)
        return 0;
    if (o->n == sizeof(o->v) / sizeof(o->v[0])) {
        int r = fn(arg, p, o->v, o->n, err);
        o->n = 0;
        if (r < 0)
            return r;
    }
    o->v[o->n++] = (track_region_t){ a, b, kept };
    return 0;
}

/* A kept region [a, b) with what p could not copy cut out of it. */
static int s_emit_kept(s_out_t *o, track_proc_t *p, track_fn fn, void *arg, uint64_t a,
                       uint64_t b, cairn_error_t *err)
{
    int r = 0;
    while (r == 0 && a < b) {
        uint64_t cut, cut_end = b;
        if (!s_meets_lost(p, a, b, &cut, &cut_end))
            return s_emit(o, p, fn, arg, a, b, true, err);
        r = s_emit(o, p, fn, arg, a, cut, true, err);
        if (r == 0)
            r = s_emit(o, p, fn, arg, cut, cut_end, false, err);
        a = cut_end;
    }
    return r;
}

/* Kept: present, still write-protected, in a mapping registered in async
 * mode. */
static bool s_is_kept(uint64_t cat)
{
    return (cat & TRACK_PAGE_IS_WPALLOWED) && (cat & TRACK_PAGE_IS_PRESENT) &&
           !(cat & (TRACK_PAGE_IS_WRITTEN | TRACK_PAGE_IS_SWAPPED));
}

static int s_deliver(track_proc_t *p, const s_scan_t *s, const struct track_page_region *reg,
                     long n, track_fn fn, void *arg, cairn_error_t *err)
{
    s_out_t o = { .n = 0 };
    int r = 0;
    for (long i = 0; r == 0 && i < n; i++) {
        if (s->frozen && s_is_kept(reg[i].categories))
            r = s_emit_kept(&o, p, fn, arg, reg[i].start, reg[i].end, err);
        else
            r = s_emit(&o, p, fn, arg, reg[i].start, reg[i].end, false, err);
    }
    if (r == 0 && o.n > 0)
        r = fn(arg, p, o.v, o.n, err);
    return r;
}

static int s_walk(track_proc_t *p, uint64_t start, uint64_t end, const s_scan_t *s,
                  track_fn fn, void *arg, cairn_error_t *err)
{
    struct track_page_region *reg = malloc(S_REGIONS * sizeof(*reg));
    uint64_t at = start;
    int r = reg ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    while (r == 0 && at < end) {
        struct track_pm_scan_arg a = {
            .size = sizeof(a), .flags = s->flags, .start = at, .end = end,
            .vec = (uint64_t)(uintptr_t)reg, .vec_len = S_REGIONS,
            .category_inverted = s->inverted, .category_mask = s->mask,
            .category_anyof_mask = s->anyof, .return_mask = s->ret_mask,
        };
        long n = ioctl(p->pagemap_fd, TRACK_PAGEMAP_SCAN, &a);
        if (n < 0) {
            r = errno == ESRCH ? -ESRCH
                               : cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                                 "PAGEMAP_SCAN of %d at %#llx: %s", (int)p->pid,
                                                 (unsigned long long)at, strerror(errno));
            break;
        }
        r = s_deliver(p, s, reg, n, fn, arg, err);
        if (a.walk_end <= at)
            break;   /* no progress: cannot happen, but never loop on it */
        at = a.walk_end;
    }
    free(reg);
    return r;
}

int track_scan_written(track_t *t, track_proc_t *p, proc_vmas_t *vm, track_fn fn, void *arg,
                       cairn_error_t *err)
{
    (void)t;
    proc_vmas_free(vm);
    if (proc_read_vmas(p->pid, false, vm, NULL) < 0)
        return -ESRCH;   /* exited: the freeze will not find it either */
    int r = 0;
    for (size_t i = 0; r == 0 && i < vm->n; i++) {
        const proc_vma_t *v = &vm->v[i];
        bool anon_only = false;
        if (!s_tracked_kind(p->pid, v, &anon_only))
            continue;
        s_register(p, v);
        /* Written and present or swapped (never an empty pte: no marker,
         * see above); a private file mapping's page-cache pages are the
         * file's. Unregistered mappings are skipped by the kernel. */
        s_scan_t s = {
            .flags = TRACK_PM_SCAN_WP_MATCHING,
            .mask = TRACK_PAGE_IS_WRITTEN | (anon_only ? TRACK_PAGE_IS_FILE : 0),
            .inverted = anon_only ? TRACK_PAGE_IS_FILE : 0,
            .anyof = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
            .ret_mask = TRACK_PAGE_IS_WRITTEN,
        };
        r = s_walk(p, v->start, v->end, &s, fn, arg, err);
    }
    return r;
}

int track_scan_frozen(track_proc_t *p, const proc_vma_t *v, bool anon_only, track_fn fn,
                      void *arg, cairn_error_t *err)
{
    s_scan_t s = {
        .mask = anon_only ? TRACK_PAGE_IS_FILE : 0,
        .inverted = anon_only ? TRACK_PAGE_IS_FILE : 0,
        .anyof = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
        .ret_mask = TRACK_PAGE_IS_WPALLOWED | TRACK_PAGE_IS_WRITTEN | TRACK_PAGE_IS_PRESENT |
                    TRACK_PAGE_IS_SWAPPED,
        .frozen = true,
    };
    int r = s_walk(p, v->start, v->end, &s, fn, arg, err);
    return r == -ESRCH ? cairn_error_set(err, r, CAIRN_SYSTEM, "process %d exited while frozen",
                                         (int)p->pid)
                       : r;
}

int track_scan_checkpoint(track_proc_t *p, const proc_vma_t *v, bool anon_only, bool keep,
                          track_fn fn, void *arg, cairn_error_t *err)
{
    bool tracked_anon_only;
    /* A mapping made since the last checkpoint: registered now, its pages
     * are unprotected (written, copied) and protected by this walk. */
    if (s_tracked_kind(p->pid, v, &tracked_anon_only))
        s_register(p, v);
    s_scan_t s = {
        .flags = TRACK_PM_SCAN_WP_MATCHING,
        .mask = anon_only ? TRACK_PAGE_IS_FILE : 0,
        .inverted = anon_only ? TRACK_PAGE_IS_FILE : 0,
        .anyof = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
        .ret_mask = TRACK_PAGE_IS_WPALLOWED | TRACK_PAGE_IS_WRITTEN | TRACK_PAGE_IS_PRESENT |
                    TRACK_PAGE_IS_SWAPPED,
        .frozen = keep,
    };
    int r = s_walk(p, v->start, v->end, &s, fn, arg, err);
    return r == -ESRCH ? cairn_error_set(err, r, CAIRN_SYSTEM, "process %d exited while frozen",
                                         (int)p->pid)
                       : r;
}

bool track_same_tree(const track_t *t, const pid_t *pids, size_t n, size_t stride)
{
    if (!t || t->n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!track_find((track_t *)t, pids[i * stride]))
            return false;
    return true;
}

/* ---- start and end ----------------------------------------------------- */

/* A refusal of pre-copy: why (errno e, if any), and what still works. */
static int s_refuse(cairn_error_t *err, int e, const char *why)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "pre-copy refused: %s%s%s; a dump without --precopy "
                           "(stop-and-copy) works", why, e ? ": " : "", e ? strerror(e) : "");
}

/* UFFDIO_API in write-protect async mode on our copy uffd, and a
 * PAGEMAP_SCAN of pid's pagemap: the two things pre-copy needs. */
static int s_check_kernel(track_proc_t *p, const proc_vmas_t *vm, cairn_error_t *err)
{
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = S_UFFD_FEATURE_WP_ASYNC | S_UFFD_FEATURE_WP_UNPOPULATED,
    };
    if (ioctl(p->uffd, UFFDIO_API, &api) < 0 || !(api.features & S_UFFD_FEATURE_WP_ASYNC))
        return s_refuse(err, errno, "this kernel has no userfaultfd write-protect async mode "
                        "(UFFD_FEATURE_WP_ASYNC, Linux 6.7)");
    struct track_page_region reg;
    uint64_t start = vm->n ? vm->v[0].start : 0;
    struct track_pm_scan_arg a = {
        .size = sizeof(a), .start = start, .end = start + 4096,
        .vec = (uint64_t)(uintptr_t)&reg, .vec_len = 1,
        .category_anyof_mask = TRACK_PAGE_IS_PRESENT, .return_mask = TRACK_PAGE_IS_PRESENT,
    };
    if (ioctl(p->pagemap_fd, TRACK_PAGEMAP_SCAN, &a) < 0)
        return errno == ENOTTY || errno == EINVAL
                   ? s_refuse(err, 0, "this kernel has no PAGEMAP_SCAN (Linux 6.7)")
                   : cairn_error_set(err, -errno, CAIRN_SYSTEM, "PAGEMAP_SCAN of %d: %s",
                                     (int)p->pid, strerror(errno));
    return 0;
}

static int s_open_proc(pid_t pid, const char *name, int *ret, cairn_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    *ret = open(path, O_RDONLY | O_CLOEXEC);
    return *ret >= 0 ? 0
                     : cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                                       strerror(errno));
}

/* Our copy of the process's fd (pidfd_getfd), or -errno. */
static int s_grab(pid_t pid, int fd)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int got = pfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
    int e = errno;
    if (pfd >= 0)
        close(pfd);
    return got >= 0 ? got : -e;
}

/* In the frozen process dp: userfaultfd() made there, our copy taken into
 * tp->uffd, the process's own closed again whatever happened. */
static int s_take_uffd(dump_proc_t *dp, track_proc_t *tp, cairn_error_t *err)
{
    dump_thread_t *t = &dp->t[0];
    uint64_t a[6] = { O_CLOEXEC | O_NONBLOCK | S_UFFD_USER_MODE_ONLY };
    int64_t fd = -1;
    int r = seize_inject(dp, t, SYS_userfaultfd, a, &fd, err);
    if (r < 0)
        return r;
    if (fd < 0 && fd > -4096) {
        int e = (int)-fd;
        char why[160];
        snprintf(why, sizeof(why), e == ENOSYS ? "this kernel has no userfaultfd"
                                               : "process %d may not make a userfaultfd "
                                                 "(a security module, seccomp)", (int)dp->pid);
        return s_refuse(err, e == ENOSYS ? 0 : e, why);
    }
    int got = s_grab(dp->pid, (int)fd);
    uint64_t c[6] = { (uint64_t)fd };
    int64_t ignored;
    r = seize_inject_ok(dp, t, SYS_close, c, "closing the userfaultfd", &ignored, err);
    if (got < 0 && r == 0)
        r = cairn_error_set(err, got, CAIRN_SYSTEM, "process %d fd %d: pidfd_getfd: %s",
                            (int)dp->pid, (int)fd, strerror(-got));
    if (got >= 0 && r < 0)
        close(got);
    if (r == 0)
        tp->uffd = got;
    return r;
}

/* Tracking for one frozen process of the tree. */
static int s_start_one(dump_proc_t *dp, track_proc_t *tp, cairn_error_t *err)
{
    proc_vmas_t vm = { 0 };
    *tp = (track_proc_t){ .pid = dp->pid, .uffd = -1, .pagemap_fd = -1, .mem_fd = -1 };
    int r = ns_inner_pid(dp->pid, &tp->image_pid, err);
    if (r == 0)
        r = proc_read_vmas(dp->pid, false, &vm, err);
    if (r == 0)
        r = s_open_proc(dp->pid, "pagemap", &tp->pagemap_fd, err);
    if (r == 0)
        r = s_open_proc(dp->pid, "mem", &tp->mem_fd, err);
    if (r == 0)
        r = seize_find_vdso_syscall(dp, &vm, err);
    if (r == 0)
        r = seize_prepare_thread(&dp->t[0], err);
    if (r == 0)
        r = s_take_uffd(dp, tp, err);
    if (r == 0)
        r = s_check_kernel(tp, &vm, err);
    proc_vmas_free(&vm);
    return r;
}

int track_start(pid_t root, track_t **ret, uint64_t *ret_freeze_us, cairn_error_t *err)
{
    dump_tree_t tree = { 0 };
    track_t *t = calloc(1, sizeof(*t));
    seize_sched_t sched;
    seize_hurry(&sched);
    uint64_t t0 = cairn_now_us();
    int r = t ? seize_freeze(&tree, root, err)
              : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0 && !(t->p = calloc(tree.np, sizeof(*t->p))))
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < tree.np; i++) {
        t->n = i + 1;
        r = s_start_one(&tree.p[i], &t->p[i], err);
    }
    bool resumed = seize_release_all(&tree);
    seize_hurry_end(&sched);
    seize_tree_free(&tree);
    if (r == 0 && !resumed)
        r = cairn_error_set(err, -EIO, CAIRN_SYSTEM,
                            "the tree could not be resumed cleanly after its userfaultfds "
                            "were made");
    if (r < 0) {
        track_free(t);
        return r;
    }
    *ret_freeze_us = cairn_now_us() - t0;
    *ret = t;
    return 0;
}

track_t *track_free(track_t *t)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        track_proc_t *p = &t->p[i];
        if (p->uffd >= 0) {
            s_unregister_all(p);
            close(p->uffd);
        }
        if (p->pagemap_fd >= 0)
            close(p->pagemap_fd);
        if (p->mem_fd >= 0)
            close(p->mem_fd);
        free(p->lost);
    }
    free(t->p);
    free(t);
    return NULL;
}
