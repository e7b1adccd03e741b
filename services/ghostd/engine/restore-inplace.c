/* restore-inplace.c - a streamed image's pages read straight to where they
 * will live: ghost-restore's own memory at their addresses, which the
 * restored process inherits when it is born.
 *
 * Why. A stream (a pipe from ghostd, a migration) used to be staged whole
 * in a memfd, and the restorer then copied every page from there into
 * place: two passes over every byte, and for pre-copy the second one came
 * after the source froze -- 512 MiB took about 0.4 s of the freeze. The
 * process being restored is a fork of ghost-restore (the root, by clone3;
 * the others, by their restored parents), and fork hands anonymous pages
 * over without copying them. So the pages of one process are read, as
 * they come, into an anonymous mapping of ours at their own address; a
 * later copy of a page (a later pre-copy round, the frozen part) is read
 * over the earlier one, so the latest wins by construction. The restorer
 * keeps those mappings instead of unmapping them, maps nothing over them
 * and only sets their protection; its copy is left with the runs staged
 * as before.
 *
 * Why not UFFDIO_MOVE (kernel 6.8+: moves anonymous pages inside one mm
 * without copying): the pages would still have to reach the restored
 * process's mm first, which only fork does without a copy, and fork
 * makes them shared (not PageAnonExclusive), which UFFDIO_MOVE refuses
 * (EBUSY). Why not mremap from a staging area: a moved vma keeps the
 * staging area's page offset, so the program's next brk or adjacent mmap
 * would not merge with it and /proc/PID/maps would drift from what the
 * original would show.
 *
 * The rules that keep /proc/PID/maps as the dump had it:
 *  - only private anonymous vmas (the heap too) that are neither
 *    MAP_GROWSDOWN nor MAP_NORESERVE take placed pages: our plain
 *    anonymous read-write mapping has then every flag the restorer's own
 *    mmap would give them (the restorer sets the protection);
 *  - before the plan, each vma holding placed pages is completed here
 *    (mapped where no page came), so it is one mapping of exactly its
 *    range, as the restorer would have made it; a vma that cannot be --
 *    part of its range taken by one of our own mappings, or made of
 *    pieces the kernel will not merge (below) -- has its placed pages
 *    staged in the memfd instead, and so has any vma of another kind (a
 *    thread's stack, a file's written pages);
 *  - two written anonymous mappings each have their own anon_vma, and
 *    the kernel never merges those: a hole between them filled later
 *    joins one side only. So a placement joins the mapping below it
 *    (the gap, up to S_JOIN, mapped with it: rounds and the frozen part
 *    come in ascending order), a frozen-part record maps its whole vma at
 *    once, and the plan checks in /proc/self/maps that each placed vma is
 *    inside one of our mappings;
 *  - pages placed by a round that the image does not name in the end
 *    (written over by a copy that was staged, dropped or unmapped by the
 *    program since) are dropped: MADV_DONTNEED inside a placed vma (they
 *    read as zeros again), unmapped elsewhere.
 *
 * One process is placed (pids of a tree overlap: a forked child has its
 * parent's addresses): the one the stream names (placed_pid: the dump's
 * pick, the most resident anonymous memory -- a job's program, where the
 * first whose pages come would be its small reaper, and the program's
 * memory all staged); in older images the first whose pages come. The others are
 * staged as before. A file image is not placed either: its pages are read
 * from the file by the restorer (measured faster on this VM than anything
 * that touches fresh pages through a user mapping: bench/README.md).
 *
 * The fork copies a page-table entry per placed 4 KiB page (512 MiB:
 * 11-21 ms idle, many times that loaded): a pre-copy round's 2 MiB blocks
 * are collapsed into huge pages as they are read (inplace_collapse), while
 * the source still runs, so the birth copies one entry per block.
 *
 * Bytes go in with process_vm_writev on ourselves from a reused 1 MiB
 * buffer: reading the stream straight into fresh pages would fault each
 * 4 KiB page through our user mapping, which on a VM that shadows page
 * tables costs a trip to the hypervisor per page (170-220 MiB/s here,
 * against 2.2-3.1 GiB/s through the kernel's own mapping).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mem.h"
#include "proc/proc.h"
#include "restore-inplace.h"
#include "util/array.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define S_BUF (1u << 20)        /* stream bytes on their way into place */
#define S_JOIN (256ull << 20)   /* a gap this small below a placement is
                                   mapped with it: one mapping, one anon_vma */
#define S_HUGE (2ull << 20)     /* a PMD: what fork copies as one entry */

typedef struct s_range {
    uint64_t start, end;   /* page aligned, end exclusive */
} s_range_t;

/* Sorted, disjoint, merged ranges. */
typedef struct s_set {
    s_range_t *v;
    size_t n, cap;
} s_set_t;

struct inplace {
    bool has_pid;          /* a process was chosen */
    uint32_t pid;          /* its pid, as the image names it */
    uint32_t named;        /* the one the stream names (placed_pid), 0:
                              the first whose pages come */
    s_set_t mapped;        /* our mappings holding its pages */
    uint8_t *buf;          /* S_BUF bytes, page aligned */
    bool pvw_refused;      /* process_vm_writev refused: memcpy instead */
    uint64_t bytes;        /* page bytes read into place */
    ssize_t proc;          /* after inplace_plan: its index, -1 none */
    s_set_t vmas;          /* after inplace_plan: its placed vmas */
    uint64_t streak_start, streak_end;   /* pre-copy: the pages just read,
                                            one contiguous range */
    uint64_t collapsed_to; /* its 2 MiB blocks below this are collapsed */
};

/* ---- ranges -------------------------------------------------------------- */

/* The first range of s that ends past addr. */
static size_t s_find(const s_set_t *s, uint64_t addr)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* [start, end) into s, merged with what it touches. -ENOMEM. */
static int s_set_add(s_set_t *s, uint64_t start, uint64_t end)
{
    size_t i = s_find(s, start > 0 ? start - 1 : 0), j = i;
    while (j < s->n && s->v[j].start <= end) {   /* overlapping or adjacent */
        start = s->v[j].start < start ? s->v[j].start : start;
        end = s->v[j].end > end ? s->v[j].end : end;
        j++;
    }
    if (j == i) {
        if (CAIRN_GROW(s->v, s->cap, s->n + 1, 64) < 0)
            return -ENOMEM;
        memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
        s->n++;
    } else if (j > i + 1) {
        memmove(&s->v[i + 1], &s->v[j], (s->n - j) * sizeof(*s->v));
        s->n -= j - i - 1;
    }
    s->v[i] = (s_range_t){ start, end };
    return 0;
}

/* The parts of [start, end) that s does not hold, into gaps (caller frees). */
static int s_set_gaps(const s_set_t *s, uint64_t start, uint64_t end, s_set_t *gaps)
{
    uint64_t at = start;
    for (size_t i = s_find(s, start); at < end && i < s->n && s->v[i].start < end; i++) {
        if (s->v[i].start > at && s_set_add(gaps, at, s->v[i].start) < 0)
            return -ENOMEM;
        at = s->v[i].end;
    }
    return at < end ? s_set_add(gaps, at, end) : 0;
}

/* ---- our mappings -------------------------------------------------------- */

/* [start, end) mapped by us, read-write: what is not yet is mapped where
 * nothing of ours is. -EEXIST (nothing changed): part of it is taken
 * here; -ENOMEM. */
static int s_cover(struct inplace *p, uint64_t start, uint64_t end)
{
    s_set_t gaps = { 0 };
    int r = s_set_gaps(&p->mapped, start, end, &gaps);
    size_t made = 0;
    for (; r == 0 && made < gaps.n; made++) {
        size_t len = gaps.v[made].end - gaps.v[made].start;
        void *want = (void *)(uintptr_t)gaps.v[made].start;
        void *got = mmap(want, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (got != want) {   /* (a kernel before 4.17 takes it as a hint) */
            if (got != MAP_FAILED)
                munmap(got, len);
            r = -EEXIST;
            break;
        }
    }
    for (size_t i = 0; i < made; i++)
        if (r < 0)
            munmap((void *)(uintptr_t)gaps.v[i].start, gaps.v[i].end - gaps.v[i].start);
        else if (s_set_add(&p->mapped, gaps.v[i].start, gaps.v[i].end) < 0)
            r = -ENOMEM;   /* (mapped, not remembered: freed at our exit) */
    free(gaps.v);
    return r;
}

/* len bytes of p->buf to addr, which is ours. */
static void s_put(struct inplace *p, uint64_t addr, size_t len)
{
    size_t done = 0;
    while (!p->pvw_refused && done < len) {
        struct iovec l = { p->buf + done, len - done };
        struct iovec rem = { (void *)(uintptr_t)(addr + done), len - done };
        ssize_t n = process_vm_writev(getpid(), &l, 1, &rem, 1, 0);
        if (n <= 0)
            p->pvw_refused = true;   /* ENOSYS, EPERM: the slow way, still right */
        else
            done += (size_t)n;
    }
    if (done < len)
        memcpy((void *)(uintptr_t)(addr + done), p->buf + done, len - done);
}

int inplace_start(rst_image_t *im, cairn_error_t *err)
{
    struct inplace *p = calloc(1, sizeof(*p));
    if (p)
        p->buf = aligned_alloc(RST_PAGE, S_BUF);
    if (!p || !p->buf) {
        free(p);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    p->proc = -1;
    im->inplace = p;
    return 0;
}

struct inplace *inplace_leave(struct inplace *p)
{
    if (!p)
        return NULL;
    free(p->mapped.v);
    free(p->vmas.v);
    free(p->buf);
    free(p);
    return NULL;
}

struct inplace *inplace_free(struct inplace *p)
{
    for (size_t i = 0; p && i < p->mapped.n; i++)
        munmap((void *)(uintptr_t)p->mapped.v[i].start, p->mapped.v[i].end - p->mapped.v[i].start);
    return inplace_leave(p);
}

bool inplace_vma_ok(const Cairn__Ghost__Vma *v)
{
    return v && v->dumped &&
           (v->kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE ||
            v->kind == CAIRN__GHOST__VMA_KIND__VMA_HEAP) &&
           !(v->flags & (MAP_GROWSDOWN | MAP_NORESERVE)) && v->start < v->end &&
           v->end <= RST_TASK_SIZE && v->start % RST_PAGE == 0 && v->end % RST_PAGE == 0;
}

/* [start, end) mapped by us, joined to our mapping below it when the gap
 * is free and small, so that both are one mapping. */
static int s_cover_joined(struct inplace *p, uint64_t start, uint64_t end)
{
    size_t i = s_find(&p->mapped, start);
    uint64_t below = i > 0 ? p->mapped.v[i - 1].end : 0;
    if (below && below < start && start - below <= S_JOIN && s_cover(p, below, end) == 0)
        return 0;
    return s_cover(p, start, end);
}

int inplace_read(rst_image_t *im, ghost_reader_t *r, uint32_t pid, uint64_t vaddr,
                 uint64_t len, const Cairn__Ghost__Vma *v, uint64_t *ret_off,
                 cairn_error_t *err)
{
    struct inplace *p = im->inplace;
    if (!p || (p->has_pid && p->pid != pid) || (p->named && p->named != pid) || len == 0 || vaddr % RST_PAGE ||
        len % RST_PAGE || vaddr >= RST_TASK_SIZE || len > RST_TASK_SIZE - vaddr)
        return -EAGAIN;
    bool whole = v && v->start <= vaddr && vaddr + len <= v->end;
    if (s_cover_joined(p, whole ? v->start : vaddr, whole ? v->end : vaddr + len) < 0 &&
        (!whole || s_cover_joined(p, vaddr, vaddr + len) < 0))
        return -EAGAIN;
    p->has_pid = true;
    p->pid = pid;
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < S_BUF ? (size_t)(len - done) : S_BUF;
        int ret = ghost_read_raw(r, p->buf, n, err);
        if (ret < 0)
            return ret;
        s_put(p, vaddr + done, n);
        done += n;
    }
    p->bytes += len;
    *ret_off = RST_PLACED | vaddr;
    return 0;
}

void inplace_name(rst_image_t *im, uint32_t pid)
{
    struct inplace *p = im->inplace;
    if (p && !p->has_pid && !p->named)
        p->named = pid;
}

uint64_t inplace_bytes(const rst_image_t *im)
{
    return im->inplace ? im->inplace->bytes : 0;
}

void inplace_collapse(rst_image_t *im, uint64_t vaddr, uint64_t len)
{
    struct inplace *p = im->inplace;
    if (!p)
        return;
    if (vaddr != p->streak_end || p->streak_end == 0) {
        p->streak_start = vaddr;
        p->collapsed_to = RST_ALIGN(vaddr, S_HUGE);
    }
    p->streak_end = vaddr + len;
    for (uint64_t b = p->collapsed_to; b + S_HUGE <= p->streak_end; b += S_HUGE) {
        (void)madvise((void *)(uintptr_t)b, S_HUGE, MADV_COLLAPSE);
        p->collapsed_to = b + S_HUGE;
    }
}

/* ---- the plan ------------------------------------------------------------ */

/* Appends len bytes of our memory at addr to the staging memfd; *ret_off:
 * where. */
static int s_stage_copy(rst_image_t *im, uint64_t addr, uint64_t len, uint64_t *ret_off,
                        cairn_error_t *err)
{
    uint64_t at = im->staging_len;
    if (ftruncate(im->staging_fd, (off_t)(at + len)) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "staging memfd of %llu bytes: %s",
                               (unsigned long long)(at + len), strerror(errno));
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(im->staging_fd, (const void *)(uintptr_t)(addr + done),
                           (size_t)(len - done), (off_t)(at + done));
        if (n <= 0)
            return cairn_error_set(err, n < 0 ? -errno : -EIO, CAIRN_SYSTEM,
                                   "staging placed pages: %s", n < 0 ? strerror(errno) : "short write");
        done += (uint64_t)n;
    }
    im->staging_len += len;
    *ret_off = at;
    return 0;
}

static int s_cmp_range(const void *a, const void *b)
{
    const s_range_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The placed runs of pr, as ranges, ascending (caller frees). */
static int s_placed_runs(const rst_proc_t *pr, s_set_t *out)
{
    for (size_t i = 0; i < pr->n_runs; i++) {
        if (!(pr->runs[i].off & RST_PLACED))
            continue;
        if (CAIRN_GROW(out->v, out->cap, out->n + 1, 64) < 0)
            return -ENOMEM;
        out->v[out->n++] = (s_range_t){ pr->runs[i].vaddr, pr->runs[i].vaddr + pr->runs[i].len };
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), s_cmp_range);
    return 0;
}

/* Some run of runs (ascending, disjoint) meets [start, end). */
static bool s_meets(const s_set_t *runs, uint64_t start, uint64_t end)
{
    size_t i = s_find(runs, start);
    return i < runs->n && runs->v[i].start < end;
}

/* [start, end) lies inside one mapping of ours (self: our maps). */
static bool s_one_mapping(const proc_vmas_t *self, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i].start <= start && start < self->v[i].end)
            return end <= self->v[i].end;
    return false;
}

/* The vmas of pr that hold placed pages and can be placed: completed
 * here, into p->vmas. */
static int s_plan_vmas(struct inplace *p, const rst_proc_t *pr, const s_set_t *runs,
                       cairn_error_t *err)
{
    int r = 0;
    for (size_t j = 0; r == 0 && j < pr->vmas.n; j++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[j]->vma;
        if (!inplace_vma_ok(v) || !s_meets(runs, v->start, v->end))
            continue;
        int c = s_cover(p, v->start, v->end);
        if (c == 0)
            r = s_set_add(&p->vmas, v->start, v->end) < 0 ? -ENOMEM : 0;
        else if (c == -ENOMEM)
            r = c;   /* -EEXIST: taken here, staged instead */
    }
    proc_vmas_t self = { 0 };
    if (r == 0 && p->vmas.n > 0)
        r = proc_read_vmas(0, false, &self, err);
    /* A vma of pieces the kernel did not merge: staged instead. */
    for (size_t k = 0; r == 0 && k < p->vmas.n;)
        if (s_one_mapping(&self, p->vmas.v[k].start, p->vmas.v[k].end))
            k++;
        else
            memmove(&p->vmas.v[k], &p->vmas.v[k + 1], (--p->vmas.n - k) * sizeof(*p->vmas.v));
    proc_vmas_free(&self);
    return r;
}

/* pr's runs again: a placed piece outside every placed vma is staged. */
static int s_replan_runs(rst_image_t *im, rst_proc_t *pr, cairn_error_t *err)
{
    struct inplace *p = im->inplace;
    struct gr_run *out = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i < pr->n_runs; i++) {
        struct gr_run run = pr->runs[i];
        uint64_t at = run.vaddr, end = run.vaddr + run.len;
        while (r == 0 && at < end) {
            size_t k = s_find(&p->vmas, at);
            bool in = run.off & RST_PLACED && k < p->vmas.n && p->vmas.v[k].start <= at;
            uint64_t stop = !(run.off & RST_PLACED) ? end
                          : in ? (p->vmas.v[k].end < end ? p->vmas.v[k].end : end)
                          : k < p->vmas.n && p->vmas.v[k].start < end ? p->vmas.v[k].start : end;
            uint64_t off = run.off + (at - run.vaddr);
            if (run.off & RST_PLACED && !in)
                r = s_stage_copy(im, at, stop - at, &off, err);
            if (r == 0 && CAIRN_GROW(out, cap, n + 1, 64) < 0)
                r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
            if (r == 0)
                out[n++] = (struct gr_run){ at, stop - at, off };
            at = stop;
        }
    }
    if (r < 0) {
        free(out);
        return r;
    }
    free(pr->runs);
    pr->runs = out, pr->n_runs = n, pr->cap_runs = cap;
    return 0;
}

/* Everything of ours outside the placed vmas unmapped; inside them, the
 * pages no placed run names dropped (they read as zeros). */
static int s_drop_stale(struct inplace *p, const s_set_t *runs)
{
    for (size_t i = 0; i < p->mapped.n; i++) {
        s_set_t out = { 0 };
        if (s_set_gaps(&p->vmas, p->mapped.v[i].start, p->mapped.v[i].end, &out) < 0)
            return -ENOMEM;
        for (size_t k = 0; k < out.n; k++)
            munmap((void *)(uintptr_t)out.v[k].start, out.v[k].end - out.v[k].start);
        free(out.v);
    }
    free(p->mapped.v);
    p->mapped = (s_set_t){ 0 };
    for (size_t i = 0; i < p->vmas.n; i++)
        if (s_set_add(&p->mapped, p->vmas.v[i].start, p->vmas.v[i].end) < 0)
            return -ENOMEM;
    for (size_t i = 0; i < p->vmas.n; i++) {
        s_set_t holes = { 0 };
        if (s_set_gaps(runs, p->vmas.v[i].start, p->vmas.v[i].end, &holes) < 0)
            return -ENOMEM;
        for (size_t k = 0; k < holes.n; k++)
            madvise((void *)(uintptr_t)holes.v[k].start, holes.v[k].end - holes.v[k].start,
                    MADV_DONTNEED);
        free(holes.v);
    }
    return 0;
}

int inplace_plan(rst_image_t *im, cairn_error_t *err)
{
    struct inplace *p = im->inplace;
    if (!p)
        return 0;
    for (size_t i = 0; p->has_pid && p->proc < 0 && i < im->n_procs; i++)
        if (im->procs[i].process->process->pid == p->pid)
            p->proc = (ssize_t)i;
    s_set_t runs = { 0 };
    rst_proc_t *pr = p->proc >= 0 ? &im->procs[p->proc] : NULL;
    int r = pr ? s_placed_runs(pr, &runs) : 0;
    if (r == 0 && pr)
        r = s_plan_vmas(p, pr, &runs, err);
    if (r == -ENOMEM)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0 && pr)
        r = s_replan_runs(im, pr, err);
    free(runs.v);
    runs = (s_set_t){ 0 };
    if (r == 0 && pr)   /* the runs left placed, merged: what each vma keeps */
        r = s_placed_runs(pr, &runs);
    s_set_t merged = { 0 };
    for (size_t i = 0; r == 0 && i < runs.n; i++)
        r = s_set_add(&merged, runs.v[i].start, runs.v[i].end);
    if (r == 0)
        r = s_drop_stale(p, &merged);
    free(runs.v);
    free(merged.v);
    if (r == -ENOMEM)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return r;
}

bool inplace_vma_placed(const rst_image_t *im, size_t i, uint64_t start, uint64_t end)
{
    const struct inplace *p = im->inplace;
    if (!p || p->proc < 0 || (size_t)p->proc != i)
        return false;
    size_t k = s_find(&p->vmas, start);
    /* placed vmas may sit side by side (merged in the set): inside one */
    return k < p->vmas.n && p->vmas.v[k].start <= start && end <= p->vmas.v[k].end;
}
