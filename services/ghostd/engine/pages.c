/* pages.c - what the vmas of a process hold, both directions; the vmas
 * themselves are mem.c's.
 *
 * Dump side. Pages go out by the kind of their vma (mem_dump_policy):
 * anonymous ones only where pagemap says present or swapped (found with
 * PAGEMAP_SCAN where the kernel has it), a private file mapping's only
 * where the process wrote them (the rest is the file's, mapped again at
 * restore, which checks the file's size and mtime), a shared mapping's
 * all (but a memfd some fd refers to: its object pages hold it,
 * shmem.c). They are read through process_vm_readv (or /proc/PID/mem for
 * unreadable vmas) into a ring of windows a writer thread sends to the
 * image, or copied in place into the image file by several threads
 * (direct.c).
 *
 * Restore side. Page data is staged as it is read: into one memfd, or
 * left where it is in an image file, or -- one process's private
 * anonymous memory, from a stream -- read straight into place
 * (restore-inplace.c), and remembered as runs of its process. The plan cuts the runs at vma ends, leaves out the parts whose
 * pages come from elsewhere, and gives the restorer what it copies them
 * into place with (its buffers, a helper thread where that pays).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "direct.h"
#include "lazy.h"
#include "mem.h"
#include "pages.h"
#include "restore-inplace.h"
#include "shmem.h"
#include "track.h"
#include "util/array.h"
#include "util/cleanup.h"

#define S_CHUNK (8u << 20)    /* the ring of memory read windows */

/* ---- dump: the page writer --------------------------------------------- */

/* The page writer of one dump. */
struct pages_dump {
    ghost_direct_t *direct; /* page runs copied into the image file, or NULL */
    uint8_t *buf;          /* S_CHUNK bytes: the ring of memory windows */
};

int pages_dump_start(dump_ctx_t *c, int out_fd, cairn_error_t *err)
{
    c->pages = calloc(1, sizeof(*c->pages));
    if (c->pages)   /* page-aligned: the kernel copies fastest */
        c->pages->buf = aligned_alloc(4096, S_CHUNK);
    if (!c->pages || !c->pages->buf)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn_error_t why;
    int r = ghost_direct_new(out_fd, 0, &c->pages->direct, &why);
    if (r == -EOPNOTSUPP)
        r = 0;   /* a pipe, a socket, a small-page fs...: the pages are streamed */
    else if (r < 0 && err)
        *err = why;
    return r;
}

pages_dump_t *pages_dump_free(pages_dump_t *m)
{
    if (m) {
        free(m->buf);
        ghost_direct_free(m->direct);
    }
    free(m);
    return NULL;
}

size_t pages_copy_threads(const pages_dump_t *m)
{
    return m ? ghost_direct_threads(m->direct) : 0;
}

/* ---- dump: the ring ---------------------------------------------------- */

/* Memory goes out through a small pipeline: this thread reads windows of
 * pages (process_vm_readv, /proc/PID/mem) into a ring of S_SLOTS buffers
 * carved from c->pages->buf while a writer thread sends the filled ones to
 * the image, in order. Reading the next window overlaps writing the last:
 * on tmpfs a write (page-cache allocation and a copy) costs as much as the
 * read, so doing both on one thread halves the throughput. The writer
 * thread is the only user of c->out.w until s_pipe_stop has joined it;
 * ptrace stays on this thread. */
#define S_SLOTS 4
#define S_SLOT (S_CHUNK / S_SLOTS)

/* One filled window waiting for the writer. */
typedef struct s_slot {
    uint64_t addr;         /* first page */
    size_t len;            /* bytes, a page multiple */
    bool kept;             /* a kept_pages record: no bytes, its buffer unused */
    bool lazy;             /* a lazy_pages record (post-copy): the same */
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
    bool inline_;          /* no writer thread: each window written as it
                              is submitted (post-copy: a few small
                              records, which a hand-off per window to a
                              thread would only delay in the freeze) */
    int rc;                /* first write error, 0 if none */
    cairn_error_t err;     /* its reason */
} s_pipe_t;

static uint8_t *s_slot_buf(const s_pipe_t *q, uint64_t n)
{
    return q->c->pages->buf + (n % S_SLOTS) * S_SLOT;
}

/* A kept_pages record: [addr, addr + n_pages pages) hold what the last
 * pre-copy round copied of them. */
static int s_write_kept(ghost_writer_t *w, uint64_t addr, uint64_t n_pages, cairn_error_t *err)
{
    Cairn__Ghost__KeptPages k = CAIRN__GHOST__KEPT_PAGES__INIT;
    k.vaddr = addr;
    k.n_pages = n_pages;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_KEPT_PAGES;
    rec.kept_pages = &k;
    return ghost_write_record(w, &rec, err);
}

/* A lazy_pages record (post-copy): [addr, addr + n_pages pages) are
 * present and come from the page source later. */
static int s_write_lazy(ghost_writer_t *w, uint64_t addr, uint64_t n_pages, cairn_error_t *err)
{
    Cairn__Ghost__LazyPages l = CAIRN__GHOST__LAZY_PAGES__INIT;
    l.vaddr = addr;
    l.n_pages = n_pages;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_LAZY_PAGES;
    rec.lazy_pages = &l;
    return ghost_write_record(w, &rec, err);
}

/* Writes window n (its record, and its bytes if it has some). */
static int s_slot_write(s_pipe_t *q, uint64_t n)
{
    s_slot_t s = q->slot[n % S_SLOTS];
    struct iovec v = { s_slot_buf(q, n), s.len };
    uint32_t ps = q->c->out.page_size;
    return s.lazy ? s_write_lazy(q->c->out.w, s.addr, s.len / ps, &q->err)
         : s.kept ? s_write_kept(q->c->out.w, s.addr, s.len / ps, &q->err)
                  : ghost_write_pages(q->c->out.w, s.addr, s.len / ps, ps, &v, 1, &q->err);
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
        pthread_mutex_unlock(&q->mu);
        int r = s_slot_write(q, q->tail);
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

static int s_pipe_start(s_pipe_t *q, dump_ctx_t *c, bool inline_, cairn_error_t *err)
{
    *q = (s_pipe_t){ .c = c, .inline_ = inline_ };
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int r = inline_ ? 0 : pthread_create(&q->thread, NULL, s_pipe_writer, q);
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
    if (!q->inline_)
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

/* Hands the slot just filled (len > 0 bytes at addr; kept: none, a
 * kept_pages record; lazy: none, a lazy_pages record) to the writer. */
static void s_pipe_submit(s_pipe_t *q, uint64_t addr, size_t len, bool kept, bool lazy)
{
    pthread_mutex_lock(&q->mu);
    q->slot[q->head % S_SLOTS] = (s_slot_t){ addr, len, kept, lazy };
    q->head++;
    if (q->inline_ && q->rc == 0) {   /* this thread is the writer */
        int r = s_slot_write(q, q->tail);
        q->tail++;
        q->rc = r < 0 ? r : 0;
    }
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

/* ---- dump: pages ------------------------------------------------------- */

/* Memory access to one process. */
typedef struct s_mem {
    pid_t pid;
    uint32_t vpid;     /* its pid as the image names it */
    int mem_fd;        /* /proc/PID/mem */
    int pagemap_fd;    /* /proc/PID/pagemap */
    s_pipe_t *pipe;    /* the writer of this process's pages, once started */
    bool direct;       /* this vma's runs go through c->pages->direct */
    bool lazy;         /* this vma's runs are listed, not copied (post-copy) */
} s_mem_t;

/* Post-copy: a range listed as lazy_pages records (of at most
 * S_LAZY_RECORD each: what a restore takes in one), after the windows
 * before it, and remembered for serving (lazy.h). */
#define S_LAZY_RECORD (64ull << 30)
static int s_dump_lazy(dump_ctx_t *c, s_mem_t *m, uint64_t addr, size_t len,
                       cairn_error_t *err)
{
    if (lazy_src_add(c->lazy, m->pid, m->vpid, addr, len) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t n = 0; len > 0; addr += n, len -= n) {
        n = len < S_LAZY_RECORD ? len : S_LAZY_RECORD;
        if (!s_pipe_acquire(m->pipe))
            return -EPIPE;
        s_pipe_submit(m->pipe, addr, n, false, true);
        c->out.pages += n / c->out.page_size;
    }
    return 0;
}

/* A run of present anonymous pages placed in the image file and queued
 * for c->pages->direct, in records of at most GHOST_DIRECT_BATCH bytes. */
static int s_dump_run_direct(dump_ctx_t *c, s_mem_t *m, bool readable, uint64_t addr,
                             size_t len, cairn_error_t *err)
{
    uint32_t ps = c->out.page_size;
    int r = m->pipe ? s_pipe_drain(m->pipe) : 0;
    while (r == 0 && len > 0) {
        size_t n = len < GHOST_DIRECT_BATCH ? len : GHOST_DIRECT_BATCH;
        uint64_t off = 0;
        r = ghost_write_pages_room(c->out.w, addr, n / ps, ps, &off, err);
        if (r == 0)
            r = ghost_direct_add(c->pages->direct, m->pid, m->mem_fd, readable,
                                 addr, off, n, err);
        c->out.pages += r == 0 ? n / ps : 0;
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
    if (m->lazy)
        return s_dump_lazy(c, m, addr, len, err);
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
            s_pipe_submit(m->pipe, addr, got, false, false);
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

/* Post-copy: vma v listed lazy whole, its pages not walked (the source
 * finds the ones it holds while it serves, after the copy runs), but for
 * the hot pages (lazy_hot_pages, sorted) inside it, which go in the image
 * so that no round trip to the source happens before the copy runs. */
static int s_dump_lazy_vma(dump_ctx_t *c, s_mem_t *m, const proc_vma_t *v, const uint64_t *hot,
                           size_t n_hot, cairn_error_t *err)
{
    uint64_t at = v->start, ps = c->out.page_size;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n_hot; i++) {
        if (hot[i] < at || hot[i] >= v->end)
            continue;
        if (hot[i] > at)
            r = s_dump_lazy(c, m, at, hot[i] - at, err);
        m->lazy = false;
        if (r == 0)
            r = s_dump_run(c, m, true, hot[i], ps, err);
        m->lazy = true;
        at = hot[i] + ps;
    }
    return r == 0 && at < v->end ? s_dump_lazy(c, m, at, v->end - at, err) : r;
}

/* PAGEMAP_SCAN (track.h): the kernel walks the page tables and returns
 * only the populated ranges, so a huge sparse reservation -- ASan's
 * terabytes of shadow, a runtime's arena -- costs its populated pages,
 * not one pagemap entry per page. */
#define S_SCAN_REGIONS 512

/* Dumps v's present or swapped pages found by PAGEMAP_SCAN (anon_only:
 * not those of the page cache). -ENOTTY when the kernel lacks it (nothing
 * dumped yet: the caller falls back). */
static int s_dump_scanned(dump_ctx_t *c, s_mem_t *m, const proc_vma_t *v, bool anon_only,
                          cairn_error_t *err)
{
    if (c->opts->pagemap_read)
        return -ENOTTY;
    _cleanup_free_ struct track_page_region *reg = malloc(S_SCAN_REGIONS * sizeof(*reg));
    bool readable = v->prot & PROT_READ;
    uint64_t at = v->start;
    int r = reg ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    while (r == 0 && at < v->end) {
        struct track_pm_scan_arg a = {
            .size = sizeof(a), .start = at, .end = v->end,
            .vec = (uint64_t)(uintptr_t)reg, .vec_len = S_SCAN_REGIONS,
            .category_inverted = anon_only ? TRACK_PAGE_IS_FILE : 0,
            .category_mask = anon_only ? TRACK_PAGE_IS_FILE : 0,
            .category_anyof_mask = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
            .return_mask = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
        };
        long n = ioctl(m->pagemap_fd, TRACK_PAGEMAP_SCAN, &a);
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
    _cleanup_free_ uint64_t *ent = malloc(S_PAGEMAP_BATCH * sizeof(*ent));
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
    if (r == 0 && run_len > 0)
        r = s_dump_run(c, m, readable, run_start, run_len, err);
    return r;
}

/* ---- dump: what pre-copy rounds already hold --------------------------- */

/* A kept_pages record for [addr, addr + len): through the ring, after the
 * windows before it, or written here when the pages go in place. */
static int s_dump_kept(dump_ctx_t *c, s_mem_t *m, uint64_t addr, size_t len,
                       cairn_error_t *err)
{
    uint64_t n = len / c->out.page_size;
    if (m->direct) {
        int r = m->pipe ? s_pipe_drain(m->pipe) : 0;
        if (r == 0)
            r = s_write_kept(c->out.w, addr, n, err);
        if (r < 0)
            return r;
    } else {
        if (!s_pipe_acquire(m->pipe))
            return -EPIPE;
        s_pipe_submit(m->pipe, addr, len, true, false);
    }
    c->out.pages += n;
    c->out.kept += n;
    return 0;
}

/* A frozen scan's regions of one tracked vma (track_fn). */
typedef struct s_frozen {
    dump_ctx_t *c;
    s_mem_t *m;
    bool readable;
} s_frozen_t;

static int s_on_frozen(void *arg, track_proc_t *p, const track_region_t *reg, size_t n,
                       cairn_error_t *err)
{
    s_frozen_t *f = arg;
    (void)p;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = reg[i].kept ? s_dump_kept(f->c, f->m, reg[i].start, reg[i].end - reg[i].start, err)
                        : s_dump_run(f->c, f->m, f->readable, reg[i].start,
                                     reg[i].end - reg[i].start, err);
    return r;
}

/* The present pages of a vma of a tracked process: those a pre-copy round
 * (or, for a delta, the parent checkpoint) holds as kept_pages records,
 * the others copied now. */
static int s_dump_tracked(dump_ctx_t *c, s_mem_t *m, track_proc_t *tp, const proc_vma_t *v,
                          bool anon_only, cairn_error_t *err)
{
    s_frozen_t f = { c, m, v->prot & PROT_READ };
    if (c->opts->track)   /* incremental: protected again for the next one */
        return track_scan_checkpoint(tp, v, anon_only, c->opts->delta, s_on_frozen, &f, err);
    return track_scan_frozen(tp, v, anon_only, s_on_frozen, &f, err);
}

/* Where the pages of a shared mapping that its object backs end: its size
 * from the mapping's offset, in whole pages; -errno if the object cannot
 * be looked at. */
static int s_object_end(pid_t pid, const proc_vma_t *v, uint64_t *ret_end)
{
    struct stat st;
    int r = mem_map_file_stat(pid, v, &st);
    if (r < 0)
        return r;
    uint64_t size = (uint64_t)st.st_size, ps = 4096;
    uint64_t backed = size > v->pgoff ? (size - v->pgoff + ps - 1) / ps * ps : 0;
    *ret_end = backed < v->end - v->start ? v->start + backed : v->end;
    return 0;
}

int pages_write(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                cairn_error_t *err)
{
    char path[64];
    s_pipe_t q;
    s_mem_t m = { p->pid, (uint32_t)p->vpid, -1, -1, NULL, false, false };
    _cleanup_free_ uint64_t *hot = NULL;
    size_t n_hot = 0;
    if (c->lazy && lazy_hot_pages(p, &hot, &n_hot) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)p->pid);
    m.mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)p->pid);
    m.pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = 0;
    if (m.mem_fd < 0 || m.pagemap_fd < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                            strerror(errno));
    track_proc_t *tp = track_find(c->track, p->pid);   /* NULL: not tracked */
    for (size_t i = 0; r == 0 && i < vm->n; i++) {
        const proc_vma_t *v = &vm->v[i];
        Cairn__Ghost__VmaKind k;
        r = mem_vma_kind(p->pid, v, &k, err);
        int pol = r == 0 ? mem_dump_policy(c, v, k) : 0;
        /* Present anonymous pages can always be read; a shared mapping
         * cannot past the end of its object, which the pipeline finds page
         * by page and the in-place copy needs to know first. */
        uint64_t end = v->end;
        /* Post-copy: readable private anonymous memory is listed whole;
         * what cannot be read through process_vm_readv is copied now, and
         * so is locked memory (resident by definition: mlock at restore
         * would fault it all in from the page server). */
        m.lazy = c->lazy && pol == 1 && (v->prot & PROT_READ) &&
                 !(v->vmflags & (PROC_VMF_LOCKED | PROC_VMF_LOCKONFAULT));
        m.direct = c->pages->direct && !m.lazy &&
                   (pol == 1 || pol == 3 || (pol == 2 && s_object_end(p->pid, v, &end) == 0));
        /* The streaming writer thread only once something is streamed. */
        if (r == 0 && pol != 0 && !m.direct && !m.pipe &&
            (r = s_pipe_start(&q, c, c->lazy != NULL, err)) == 0)
            m.pipe = &q;
        if (m.lazy)
            r = s_dump_lazy_vma(c, &m, v, hot, n_hot, err);
        else if ((pol == 1 || pol == 3) && tp)
            r = s_dump_tracked(c, &m, tp, v, pol == 3, err);
        else if (pol == 1 || pol == 3)
            r = s_dump_present(c, &m, v, pol == 3, err);
        else if (pol == 2 && end > v->start)
            r = s_dump_run(c, &m, v->prot & PROT_READ, v->start, end - v->start, err);
    }
    if (r == 0 && c->pages->direct)
        r = ghost_direct_flush(c->pages->direct, err);   /* before mem_fd closes */
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

/* ---- dump: pre-copy rounds --------------------------------------------- */

/* One round's copying: each region track_scan_written reports is read
 * while the process runs, S_CHUNK at a time, and written as pages records
 * naming the process. A page that cannot be read (unmapped meanwhile, or
 * never readable) is skipped and told to the tracker as lost, so the
 * freeze copies it if it is still there. Reading and writing take turns
 * on this thread: a round is not the freeze, and what the freeze waits
 * for is the last round's few pages. */
typedef struct s_round {
    ghost_writer_t *w;
    uint32_t page_size;
    uint8_t *buf;          /* S_CHUNK bytes */
    proc_vmas_t vm;        /* the vmas of the process being scanned */
    uint64_t bytes;        /* page bytes written this round */
} s_round_t;

/* Whether the vma holding addr is readable through process_vm_readv. */
static bool s_readable_at(const proc_vmas_t *vm, uint64_t addr)
{
    for (size_t i = 0; i < vm->n; i++)
        if (addr >= vm->v[i].start && addr < vm->v[i].end)
            return vm->v[i].prot & PROT_READ;
    return false;
}

static int s_round_copy(s_round_t *o, track_proc_t *p, uint64_t addr, uint64_t len,
                        cairn_error_t *err)
{
    uint32_t ps = o->page_size;
    bool readable = s_readable_at(&o->vm, addr);
    int r = 0;
    while (r == 0 && len > 0) {
        size_t n = len < S_CHUNK ? (size_t)len : S_CHUNK;
        size_t got = proc_read_mem(track_pid(p), track_mem_fd(p), readable, addr, o->buf, n);
        if (got > 0) {
            struct iovec v = { o->buf, got };
            r = ghost_write_round_pages(o->w, (uint32_t)track_image_pid(p), addr, got / ps, ps, &v,
                                        1, err);
            o->bytes += got;
        }
        size_t adv = got < n ? got + ps : got;   /* skip the page that failed */
        if (r == 0 && got < n && track_lost(p, addr + got, addr + got + ps) < 0)
            r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        adv = adv > len ? (size_t)len : adv;
        addr += adv;
        len -= adv;
    }
    return r;
}

static int s_on_written(void *arg, track_proc_t *p, const track_region_t *reg, size_t n,
                        cairn_error_t *err)
{
    s_round_t *o = arg;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = s_round_copy(o, p, reg[i].start, reg[i].end - reg[i].start, err);
    return r;
}

/* Round.placed_pid: as the header's (dump.c), over the tracked processes. */
static uint32_t s_placed_pid(track_t *t)
{
    uint64_t best = 0;
    uint32_t pid = 0;
    for (size_t i = 0; i < track_count(t); i++) {
        uint64_t n = lazy_resident_pages(track_pid(track_proc(t, i)));
        if (n > best) {
            best = n;
            pid = (uint32_t)track_image_pid(track_proc(t, i));
        }
    }
    return pid;
}

static int s_write_round(ghost_writer_t *w, uint32_t round, uint32_t page_size,
                         uint32_t placed_pid, cairn_error_t *err)
{
    Cairn__Ghost__Round rd = CAIRN__GHOST__ROUND__INIT;
    rd.round = round;
    rd.page_size = page_size;
    rd.placed_pid = placed_pid;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_ROUND;
    rec.round = &rd;
    return ghost_write_record(w, &rec, err);
}

int pages_round(ghost_writer_t *w, track_t *t, uint32_t round, uint32_t page_size,
                uint64_t *ret_bytes, cairn_error_t *err)
{
    s_round_t o = { .w = w, .page_size = page_size, .buf = aligned_alloc(4096, S_CHUNK) };
    int r = o.buf ? s_write_round(w, round, page_size, s_placed_pid(t), err)
                  : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; r == 0 && i < track_count(t); i++) {
        r = track_scan_written(t, track_proc(t, i), &o.vm, s_on_written, &o, err);
        if (r == -ESRCH)
            r = 0;   /* exited: the freeze will not find it either */
    }
    proc_vmas_free(&o.vm);
    free(o.buf);
    if (r == 0)
        *ret_bytes = o.bytes;
    return r;
}

/* ---- restore: loading pages -------------------------------------------- */

static int s_run_add(rst_proc_t *pr, uint64_t vaddr, uint64_t len, uint64_t off)
{
    struct gr_run *last = pr->n_runs ? &pr->runs[pr->n_runs - 1] : NULL;

    if (last && last->vaddr + last->len == vaddr && last->off + last->len == off) {
        last->len += len;
        return 0;
    }
    if (CAIRN_GROW(pr->runs, pr->cap_runs, pr->n_runs + 1, 64) < 0)
        return -ENOMEM;
    pr->runs[pr->n_runs++] = (struct gr_run){ vaddr, len, off };
    return 0;
}

/* Stages len raw bytes; *ret_off says where they are in staging_fd. A
 * regular-file image read from its start is its own staging area: the
 * bytes stay where they are (skipped, not copied), which saves allocating
 * and filling every page once more. Otherwise they go to the end of the
 * staging memfd through a shared mapping whose pages are allocated in one
 * batch. */
int pages_stage(rst_image_t *im, ghost_reader_t *r, uint64_t len,
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
int pages_load(rst_image_t *im, rst_proc_t *pr, ghost_reader_t *r,
                   const Cairn__Ghost__Pages *p, cairn_error_t *err)
{
    uint64_t len = p->n_pages * RST_PAGE, off;
    const Cairn__Ghost__Vma *v;
    int ret;

    if (p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE ||
        p->vaddr % RST_PAGE)
        return rst_bad(err, "pages record with a bad range",
                       ghost_reader_bytes(r));
    v = pr ? mem_vma_of(pr, p->vaddr, len) : NULL;
    if (!v || !v->dumped)
        return rst_bad(err, "pages outside every dumped vma",
                       ghost_reader_bytes(r));
    ret = inplace_vma_ok(v) ? inplace_read(im, r, pr->process->process->pid, p->vaddr, len,
                                           v, &off, err)
                            : -EAGAIN;
    if (ret == -EAGAIN)
        ret = pages_stage(im, r, len, &off, err);
    if (ret < 0)
        return ret;
    ret = s_run_add(pr, p->vaddr, len, off);
    if (ret < 0)
        return cairn_error_set(err, ret, CAIRN_SYSTEM, "out of memory");
    im->pages += p->n_pages;
    return 0;
}

/* ---- restore: pre-copy rounds ------------------------------------------ */

/* The copies the rounds hold of one process's pages: map, the latest copy
 * of each page (ascending, no overlap), and pend, the current round's,
 * merged into map when the round ends -- a later copy of a page wins.
 * Offsets are staging offsets, as a run's. Which of them are used is the
 * frozen part's to say (kept_pages); the others are never placed. */
typedef struct s_rpid {
    uint32_t pid;          /* as the round's pages records name it */
    struct gr_run *map;
    size_t n_map, cap_map;
    struct gr_run *pend;
    size_t n_pend, cap_pend;
} s_rpid_t;

struct pages_rounds {
    s_rpid_t *v;           /* one per process the rounds named */
    size_t n, cap;
};

void pages_rounds_free(struct pages_rounds *rs)
{
    for (size_t i = 0; rs && i < rs->n; i++) {
        free(rs->v[i].map);
        free(rs->v[i].pend);
    }
    if (rs)
        free(rs->v);
    free(rs);
}

static s_rpid_t *s_rpid(struct pages_rounds *rs, uint32_t pid, bool add)
{
    for (size_t i = 0; rs && i < rs->n; i++)
        if (rs->v[i].pid == pid)
            return &rs->v[i];
    if (!rs || !add || CAIRN_GROW_ZERO(rs->v, rs->cap, rs->n + 1, 16) < 0)
        return NULL;
    rs->v[rs->n].pid = pid;
    return &rs->v[rs->n++];
}

static int s_cmp_run(const void *a, const void *b)
{
    const struct gr_run *x = a, *y = b;
    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

/* Staged bytes a later copy replaced are given back (a staging memfd
 * only: an image file's bytes are the file's; placed pages a later copy
 * did not overwrite are dropped by inplace_plan). */
static void s_drop_staged(const rst_image_t *im, uint64_t off, uint64_t len)
{
    if (!im->direct && !im->check_only && !(off & RST_PLACED))
        (void)fallocate(im->staging_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                        (off_t)len);
}

/* Appends the part [a, b) of map run m to out. */
static int s_keep_part(struct gr_run **out, size_t *n, size_t *cap, const struct gr_run *m,
                       uint64_t a, uint64_t b)
{
    if (a >= b)
        return 0;
    if (CAIRN_GROW(*out, *cap, *n + 1, 64) < 0)
        return -ENOMEM;
    (*out)[(*n)++] = (struct gr_run){ a, b - a, m->off + (a - m->vaddr) };
    return 0;
}

/* map = what of map this round's copies leave, and those copies. */
static int s_merge_pid(const rst_image_t *im, s_rpid_t *p, uint64_t at, cairn_error_t *err)
{
    struct gr_run *out = NULL;
    size_t n = 0, cap = 0, j = 0;
    if (p->n_pend > 1)   /* (qsort's array may not be NULL, even empty) */
        qsort(p->pend, p->n_pend, sizeof(*p->pend), s_cmp_run);
    for (size_t k = 1; k < p->n_pend; k++)
        if (p->pend[k - 1].vaddr + p->pend[k - 1].len > p->pend[k].vaddr)
            return rst_bad(err, "pre-copy pages copied twice in one round", at);
    int r = 0;
    for (size_t i = 0; r == 0 && i < p->n_map; i++) {
        const struct gr_run *m = &p->map[i];
        uint64_t cur = m->vaddr, end = m->vaddr + m->len;
        while (j < p->n_pend && p->pend[j].vaddr + p->pend[j].len <= cur)
            j++;
        for (size_t k = j; r == 0 && k < p->n_pend && p->pend[k].vaddr < end; k++) {
            uint64_t ps = p->pend[k].vaddr, pe = ps + p->pend[k].len;
            r = s_keep_part(&out, &n, &cap, m, cur, ps);
            uint64_t os = ps > cur ? ps : cur, oe = pe < end ? pe : end;
            if (os < oe)
                s_drop_staged(im, m->off + (os - m->vaddr), oe - os);
            cur = pe > cur ? pe : cur;
        }
        if (r == 0 && cur < end)
            r = s_keep_part(&out, &n, &cap, m, cur, end);
    }
    for (size_t k = 0; r == 0 && k < p->n_pend; k++)
        r = CAIRN_GROW(out, cap, n + 1, 64) < 0 ? -ENOMEM : (out[n++] = p->pend[k], 0);
    if (r < 0) {
        free(out);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    if (n > 1)
        qsort(out, n, sizeof(*out), s_cmp_run);
    free(p->map);
    p->map = out, p->n_map = n, p->cap_map = cap;
    p->n_pend = 0;
    return 0;
}

/* The round being read is complete: its copies override earlier ones. */
static int s_rounds_merge(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && im->rounds && i < im->rounds->n; i++)
        r = s_merge_pid(im, &im->rounds->v[i], at, err);
    return r;
}

int pages_round_begin(rst_image_t *im, const Cairn__Ghost__Round *rd, uint64_t at,
                      cairn_error_t *err)
{
    if (rd->round != im->n_rounds)
        return rst_bad(err, "pre-copy rounds out of order", at);
    if (rd->page_size != RST_PAGE)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "image page size %u, this host uses %llu", rd->page_size,
                               (unsigned long long)RST_PAGE);
    if (!im->rounds && !(im->rounds = calloc(1, sizeof(*im->rounds))))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    inplace_name(im, rd->placed_pid);
    im->n_rounds++;
    return s_rounds_merge(im, at, err);
}

int pages_rounds_end(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    return s_rounds_merge(im, at, err);
}

int pages_load_round(rst_image_t *im, ghost_reader_t *r, const Cairn__Ghost__Pages *p,
                     cairn_error_t *err)
{
    uint64_t len = p->n_pages * RST_PAGE, off, at = ghost_reader_bytes(r);
    if (im->n_rounds == 0 || p->pid == 0)
        return rst_bad(err, "pages before the header outside a pre-copy round", at);
    if (p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE || p->vaddr % RST_PAGE ||
        p->vaddr + len > RST_TASK_SIZE)
        return rst_bad(err, "pre-copy pages record with a bad range", at);
    s_rpid_t *rp = s_rpid(im->rounds, p->pid, true);
    if (!rp || CAIRN_GROW(rp->pend, rp->cap_pend, rp->n_pend + 1, 64) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int ret = inplace_read(im, r, p->pid, p->vaddr, len, NULL, &off, err);
    if (ret == 0)
        inplace_collapse(im, p->vaddr, len);
    if (ret == -EAGAIN)
        ret = pages_stage(im, r, len, &off, err);
    if (ret == 0)
        rp->pend[rp->n_pend++] = (struct gr_run){ p->vaddr, len, off };
    return ret;
}

/* The first run of map that ends past vaddr (binary search). */
static size_t s_map_find(const s_rpid_t *rp, uint64_t vaddr)
{
    size_t lo = 0, hi = rp->n_map;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rp->map[mid].vaddr + rp->map[mid].len <= vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int pages_load_kept(rst_image_t *im, rst_proc_t *pr, const Cairn__Ghost__KeptPages *k,
                    uint64_t at, cairn_error_t *err)
{
    uint64_t len = k->n_pages * RST_PAGE;
    const Cairn__Ghost__Vma *v;
    if (k->n_pages == 0 || k->n_pages > (1ull << 36) / RST_PAGE || k->vaddr % RST_PAGE)
        return rst_bad(err, "kept pages record with a bad range", at);
    v = pr ? mem_vma_of(pr, k->vaddr, len) : NULL;
    if (!v || !v->dumped)
        return rst_bad(err, "kept pages outside every dumped vma", at);
    const s_rpid_t *rp = s_rpid(im->rounds, pr->process->process->pid, false);
    uint64_t a = k->vaddr, end = k->vaddr + len;
    for (size_t i = rp ? s_map_find(rp, a) : 0; rp && i < rp->n_map && a < end; i++) {
        const struct gr_run *m = &rp->map[i];
        if (m->vaddr > a)
            break;   /* a page no round copied */
        uint64_t e = m->vaddr + m->len < end ? m->vaddr + m->len : end;
        if (s_run_add(pr, a, e - a, m->off + (a - m->vaddr)) < 0)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        a = e;
    }
    if (a < end)
        return rst_bad(err, im->chain ? "kept pages its parent does not hold"
                                      : "kept pages that no pre-copy round copied", at);
    im->pages += k->n_pages;
    return 0;
}

/* ---- restore: a delta's parents ---------------------------------------- */

/* The parents of a delta (chain.c) are read oldest first, each into the
 * same maps the pre-copy rounds use: pend gathers one image's view of
 * every page of a process -- its own pages, and its kept ones resolved
 * against the image before it -- and becomes the map when the image ends,
 * so the map is always exactly one checkpoint's memory. */

int pages_chain_begin(rst_image_t *im, cairn_error_t *err)
{
    if (!im->rounds && !(im->rounds = calloc(1, sizeof(*im->rounds))))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return 0;
}

int pages_chain_pages(rst_image_t *im, uint32_t pid, ghost_reader_t *r,
                      const Cairn__Ghost__Pages *p, cairn_error_t *err)
{
    uint64_t len = p->n_pages * RST_PAGE, off, at = ghost_reader_bytes(r);
    if (p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE || p->vaddr % RST_PAGE ||
        p->vaddr + len > RST_TASK_SIZE)
        return rst_bad(err, "pages record with a bad range", at);
    s_rpid_t *rp = s_rpid(im->rounds, pid, true);
    if (!rp || CAIRN_GROW(rp->pend, rp->cap_pend, rp->n_pend + 1, 64) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int ret = pages_stage(im, r, len, &off, err);
    if (ret == 0)
        rp->pend[rp->n_pend++] = (struct gr_run){ p->vaddr, len, off };
    return ret;
}

int pages_chain_kept(rst_image_t *im, uint32_t pid, const Cairn__Ghost__KeptPages *k,
                     uint64_t at, cairn_error_t *err)
{
    uint64_t len = k->n_pages * RST_PAGE;
    if (k->n_pages == 0 || k->n_pages > (1ull << 36) / RST_PAGE || k->vaddr % RST_PAGE ||
        k->vaddr + len > RST_TASK_SIZE)
        return rst_bad(err, "kept pages record with a bad range", at);
    s_rpid_t *rp = s_rpid(im->rounds, pid, true);
    if (!rp)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    uint64_t a = k->vaddr, end = k->vaddr + len;
    for (size_t i = s_map_find(rp, a); i < rp->n_map && a < end; i++) {
        const struct gr_run *m = &rp->map[i];
        if (m->vaddr > a)
            break;   /* a page the image before did not hold */
        uint64_t e = m->vaddr + m->len < end ? m->vaddr + m->len : end;
        if (CAIRN_GROW(rp->pend, rp->cap_pend, rp->n_pend + 1, 64) < 0)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        rp->pend[rp->n_pend++] = (struct gr_run){ a, e - a, m->off + (a - m->vaddr) };
        a = e;
    }
    if (a < end)
        return rst_bad(err, "kept pages its parent does not hold", at);
    return 0;
}

int pages_chain_end(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    for (size_t i = 0; im->rounds && i < im->rounds->n; i++) {
        s_rpid_t *p = &im->rounds->v[i];
        if (p->n_pend > 1)
            qsort(p->pend, p->n_pend, sizeof(*p->pend), s_cmp_run);
        for (size_t k = 1; k < p->n_pend; k++)
            if (p->pend[k - 1].vaddr + p->pend[k - 1].len > p->pend[k].vaddr)
                return rst_bad(err, "pages held twice in one image", at);
        struct gr_run *old = p->map;
        size_t cap = p->cap_map;
        p->map = p->pend, p->n_map = p->n_pend, p->cap_map = p->cap_pend;
        p->pend = old, p->n_pend = 0, p->cap_pend = cap;
    }
    return 0;
}

/* ---- restore: the runs ------------------------------------------------- */

static bool s_vma_has_pages(const Cairn__Ghost__Vma *v)
{
    return v->kind != CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED;
}

/* The parts of run r the blob copies: a run loaded from contiguous
 * pages records may span adjacent vmas, so it is cut at vma ends and
 * the parts in vmas whose pages come from elsewhere are left out; a
 * placed run is in place already (inplace_plan kept it only there). */
static void s_plan_run(rst_plan_t *pl, const rst_proc_t *pr, const struct gr_run *r)
{
    struct gr_args *a = pl->args;
    uint64_t at = r->vaddr, end = r->vaddr + r->len;

    if (r->off & RST_PLACED)
        return;

    while (at < end) {
        const Cairn__Ghost__Vma *v = mem_vma_of(pr, at, 1);
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

int pages_plan_runs(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
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
