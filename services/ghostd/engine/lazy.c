/* lazy.c - post-copy: the frames on the page source, the runs both
 * sides keep, the dump's choice of what goes lazy, the source's side (a
 * frozen tree serving its pages) and the userfaultfd each restored
 * process makes (lazy.h; the page server is lazysrv.c).
 *
 * Source. The dump lists each vma of private anonymous memory whole
 * (lazy_src_add) instead of copying it: no page-table walk in the freeze,
 * whatever the size. Once the holder says `serve`, lazy_serve answers
 * requests first and, between them, pushes the ranges in address order,
 * process by process: PAGEMAP_SCAN finds the next pages the process
 * holds (a frame of at most LAZY_MAX_PAGES of them is read and sent) and
 * the run before them that it never touched (one ZERO frame, no bytes):
 * the transfer ends in bounded time (the held bytes at the link's speed)
 * even if the target never faults, and the walk happens while the copy
 * already runs. A page already sent is sent again when asked for (the
 * target may ask while the push of it is on its way; it keeps the first
 * copy). The tree is frozen throughout, so its memory cannot change under
 * the reads.
 *
 * One thread, blocking writes: a request waits for at most the frame
 * being written. The target's requests are small and bounded by its
 * faulting threads, so they never fill the socket while we write.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "lazy.h"
#include "proc/proc.h"
#include "track.h"
#include "util/array.h"
#include "util/clock.h"

/* ---- frames ------------------------------------------------------------ */

static int s_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return errno == ECONNRESET ? -EPIPE : -errno;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

int lazy_frame_write(int fd, const lazy_frame_t *f, const void *payload)
{
    int r = s_write_full(fd, f, sizeof(*f));
    return r < 0 || f->len == 0 ? r : s_write_full(fd, payload, f->len);
}

int lazy_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = read(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return errno == ECONNRESET ? -EPIPE : -errno;
        if (k == 0)
            return -EPIPE;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

int lazy_frame_read(int fd, lazy_frame_t *f)
{
    int r = lazy_read_full(fd, f, sizeof(*f));
    if (r < 0)
        return r;
    bool pages = f->type == LAZY_PAGES || f->type == LAZY_REQ;
    if (f->type < LAZY_REQ || f->type > LAZY_ZERO ||
        (pages && (f->n_pages == 0 || f->n_pages > LAZY_MAX_PAGES || f->addr % LAZY_PAGE)) ||
        (f->type == LAZY_ZERO && (f->n_pages == 0 || f->n_pages > LAZY_MAX_ZERO ||
                                  f->addr % LAZY_PAGE || f->len != 0)) ||
        (f->type == LAZY_PAGES && f->len != f->n_pages * LAZY_PAGE) ||
        (f->type == LAZY_ERROR && f->len > LAZY_MAX_MESSAGE) ||
        ((f->type == LAZY_REQ || f->type == LAZY_END || f->type == LAZY_START) && f->len != 0))
        return -EPROTO;
    return 0;
}

/* ---- runs -------------------------------------------------------------- */

/* The index of the first run that ends past addr (s->n if none). */
static size_t s_runs_after(const lazy_runs_t *s, uint64_t addr)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].b <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const lazy_run_t *lazy_runs_next(const lazy_runs_t *s, uint64_t addr)
{
    size_t i = s_runs_after(s, addr);
    return i < s->n ? &s->v[i] : NULL;
}

const lazy_run_t *lazy_runs_at(const lazy_runs_t *s, uint64_t addr)
{
    const lazy_run_t *r = lazy_runs_next(s, addr);
    return r && r->a <= addr ? r : NULL;
}

int lazy_runs_put(lazy_runs_t *s, uint64_t a, uint64_t b)
{
    size_t i = s_runs_after(s, a);
    if (a >= b)
        return 0;
    s->bytes += b - a;
    if (i > 0 && s->v[i - 1].b == a) {   /* extends the run before */
        s->v[i - 1].b = b;
        if (i < s->n && s->v[i].a == b) {
            s->v[i - 1].b = s->v[i].b;
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
            s->n--;
        }
        return 0;
    }
    if (i < s->n && s->v[i].a == b) {    /* extends the run after */
        s->v[i].a = a;
        return 0;
    }
    if (CAIRN_GROW(s->v, s->cap, s->n + 1, 16) < 0) {
        s->bytes -= b - a;
        return -ENOMEM;
    }
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
    s->v[i] = (lazy_run_t){ a, b };
    s->n++;
    return 0;
}

int lazy_runs_cut(lazy_runs_t *s, uint64_t a, uint64_t b, uint64_t *ret_cut)
{
    size_t i = s_runs_after(s, a);
    uint64_t cut = 0;
    if (i == s->n) {   /* nothing ends past a (s->v may be NULL) */
        if (ret_cut)
            *ret_cut = 0;
        return 0;
    }
    if (i < s->n && s->v[i].a < a && s->v[i].b > b) {   /* a hole in one run */
        if (CAIRN_GROW(s->v, s->cap, s->n + 1, 16) < 0)
            return -ENOMEM;
        memmove(&s->v[i + 2], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
        s->v[i + 1] = (lazy_run_t){ b, s->v[i].b };
        s->v[i].b = a;
        s->n++;
        cut = b - a;
    } else {
        if (i < s->n && s->v[i].a < a && a < b) {   /* its tail */
            cut += s->v[i].b - a;
            s->v[i++].b = a;
        }
        size_t j = i;   /* [i, j): runs inside [a, b), gone */
        while (j < s->n && s->v[j].b <= b)
            cut += s->v[j].b - s->v[j].a, j++;
        if (j < s->n && s->v[j].a < b) {   /* the head of the last */
            cut += b - s->v[j].a;
            s->v[j].a = b;
        }
        memmove(&s->v[i], &s->v[j], (s->n - j) * sizeof(*s->v));
        s->n -= j - i;
    }
    s->bytes -= cut;
    if (ret_cut)
        *ret_cut = cut;
    return 0;
}

void lazy_runs_free(lazy_runs_t *s)
{
    free(s->v);
    *s = (lazy_runs_t){ 0 };
}

/* ---- dump: hot pages, resident memory ---------------------------------- */

#define S_PAGE_OF(x) ((uint64_t)(x) & ~(uint64_t)(LAZY_PAGE - 1))

/* Appends the pages of [a, b) to v (a != 0: 0 is "none"). */
static int s_hot_add(uint64_t **v, size_t *n, size_t *cap, uint64_t a, uint64_t b)
{
    for (uint64_t pg = S_PAGE_OF(a); a && a < b && pg < b; pg += LAZY_PAGE) {
        if (CAIRN_GROW(*v, *cap, *n + 1, 16) < 0)
            return -ENOMEM;
        (*v)[(*n)++] = pg;
    }
    return 0;
}

static int s_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Below sp: the red zone and the first frames the program pushes (a
 * signal frame with its xsave area is 3-4 KiB). */
#define S_HOT_BELOW_SP 4096u

int lazy_hot_pages(const dump_proc_t *p, uint64_t **ret, size_t *ret_n)
{
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i < p->nt; i++) {
        const dump_thread_t *t = &p->t[i];
        uint64_t sp = t->regs.rsp, fs = t->regs.fs_base;
        r = s_hot_add(&v, &n, &cap, sp > S_HOT_BELOW_SP ? sp - S_HOT_BELOW_SP : sp, sp + 64);
        if (r == 0)   /* the TCB at fs_base, the static TLS just below */
            r = s_hot_add(&v, &n, &cap, fs > 64 ? fs - 64 : fs, fs + 64);
        if (r == 0)
            r = s_hot_add(&v, &n, &cap, t->clear_tid, t->clear_tid + sizeof(int32_t));
        if (r == 0)
            r = s_hot_add(&v, &n, &cap, t->rseq, t->rseq + (t->rseq_len ? t->rseq_len : 32));
    }
    if (r < 0) {
        free(v);
        return r;
    }
    if (n)
        qsort(v, n, sizeof(*v), s_cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i])
            v[k++] = v[i];
    *ret = v;
    *ret_n = k;
    return 0;
}

uint64_t lazy_resident_pages(pid_t pid)
{
    char *text = NULL;
    size_t len = 0;
    if (proc_read_file(pid, "status", &text, &len, NULL) < 0)
        return 0;
    const char *anon = proc_field(text, "RssAnon"), *swap = proc_field(text, "VmSwap");
    uint64_t kib = (anon ? strtoull(anon, NULL, 10) : 0) + (swap ? strtoull(swap, NULL, 10) : 0);
    free(text);
    return kib / (LAZY_PAGE / 1024);
}

/* ---- source ------------------------------------------------------------ */

/* One process of the frozen tree with lazy ranges. */
typedef struct s_sproc {
    pid_t pid;             /* here */
    uint32_t vpid;         /* in the image */
    int mem_fd;            /* /proc/PID/mem, opened when first needed */
    int pagemap_fd;        /* /proc/PID/pagemap, for the push's scan */
    bool no_scan;          /* PAGEMAP_SCAN failed: push every page */
    lazy_runs_t ranges;    /* its lazy ranges, as listed */
    lazy_runs_t unsent;    /* of them, not sent yet (serving) */
} s_sproc_t;

struct lazy_src {
    s_sproc_t *p;
    size_t n, cap;
    uint64_t pages;
};

lazy_src_t *lazy_src_new(void)
{
    return calloc(1, sizeof(lazy_src_t));
}

lazy_src_t *lazy_src_free(lazy_src_t *s)
{
    for (size_t i = 0; s && i < s->n; i++) {
        lazy_runs_free(&s->p[i].ranges);
        lazy_runs_free(&s->p[i].unsent);
        if (s->p[i].mem_fd >= 0)
            close(s->p[i].mem_fd);
        if (s->p[i].pagemap_fd >= 0)
            close(s->p[i].pagemap_fd);
    }
    if (s)
        free(s->p);
    free(s);
    return NULL;
}

int lazy_src_add(lazy_src_t *s, pid_t pid, uint32_t vpid, uint64_t addr, uint64_t len)
{
    s_sproc_t *p = s->n ? &s->p[s->n - 1] : NULL;
    if (!p || p->pid != pid) {
        if (CAIRN_GROW_ZERO(s->p, s->cap, s->n + 1, 8) < 0)
            return -ENOMEM;
        p = &s->p[s->n++];
        *p = (s_sproc_t){ .pid = pid, .vpid = vpid, .mem_fd = -1, .pagemap_fd = -1 };
    }
    if (lazy_runs_put(&p->ranges, addr, addr + len) < 0)
        return -ENOMEM;
    s->pages += len / LAZY_PAGE;
    return 0;
}

uint64_t lazy_src_pages(const lazy_src_t *s)
{
    return s ? s->pages : 0;
}

static s_sproc_t *s_sproc_of(lazy_src_t *s, uint32_t vpid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i].vpid == vpid)
            return &s->p[i];
    return NULL;
}

/* The serving state of one lazy_serve. */
typedef struct s_serve {
    lazy_src_t *s;
    int fd;                /* the page source */
    uint8_t *buf;          /* LAZY_MAX_PAGES pages */
    size_t cp;             /* the push's process */
    bool started;          /* the target said START: push */
    lazy_serve_stats_t *st;
    cairn_error_t *err;
} s_serve_t;

/* [addr, addr + n pages) of p went: not to be pushed again. */
static int s_sent(s_serve_t *v, s_sproc_t *p, uint64_t addr, uint64_t n)
{
    if (lazy_runs_cut(&p->unsent, addr, addr + n * LAZY_PAGE, NULL) < 0)
        return cairn_error_set(v->err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return 0;
}

/* Sends n pages of p at addr: their bytes read from the frozen process,
 * or an ERROR frame when they cannot be read (-EIO). */
static int s_send(s_serve_t *v, s_sproc_t *p, uint64_t addr, uint32_t n)
{
    size_t len = (size_t)n * LAZY_PAGE;
    size_t got = proc_read_mem(p->pid, -1, true, addr, v->buf, len);
    if (got < len && p->mem_fd < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/mem", (int)p->pid);
        p->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (got < len && p->mem_fd >= 0)
        got += proc_read_mem(p->pid, p->mem_fd, false, addr + got, v->buf + got, len - got);
    if (got < len) {
        char msg[LAZY_MAX_MESSAGE];
        int k = snprintf(msg, sizeof(msg), "process %u: cannot read the page at %#llx",
                         p->vpid, (unsigned long long)(addr + got));
        lazy_frame_t f = { LAZY_ERROR, p->vpid, addr, n, (uint32_t)k };
        (void)lazy_frame_write(v->fd, &f, msg);
        return cairn_error_set(v->err, -EIO, CAIRN_SYSTEM, "%s", msg);
    }
    lazy_frame_t f = { LAZY_PAGES, p->vpid, addr, n, (uint32_t)len };
    int rc = lazy_frame_write(v->fd, &f, v->buf);
    if (rc < 0)
        return cairn_error_set(v->err, rc, CAIRN_UNAVAILABLE, "the page source's target is "
                               "gone: %s", strerror(-rc));
    return s_sent(v, p, addr, n);
}

/* A request: the pages, or an ERROR frame naming what is wrong with it
 * (which ends the serving: the target fails on it). */
static int s_answer(s_serve_t *v, const lazy_frame_t *f)
{
    s_sproc_t *p = s_sproc_of(v->s, f->pid);
    const lazy_run_t *r = p ? lazy_runs_at(&p->ranges, f->addr) : NULL;
    if (!r || f->addr + (uint64_t)f->n_pages * LAZY_PAGE > r->b) {
        char msg[LAZY_MAX_MESSAGE];
        int k = snprintf(msg, sizeof(msg), "process %u has no lazy pages at %#llx (%u pages)",
                         f->pid, (unsigned long long)f->addr, f->n_pages);
        lazy_frame_t e = { LAZY_ERROR, f->pid, f->addr, f->n_pages, (uint32_t)k };
        (void)lazy_frame_write(v->fd, &e, msg);
        return cairn_error_set(v->err, -EPROTO, CAIRN_INVALID_ARGUMENT, "bad page request: %s",
                               msg);
    }
    v->st->requests++;
    v->st->requested += f->n_pages;
    return s_send(v, p, f->addr, f->n_pages);
}

/* The first pages p holds in [a, b): *ret_run (held: the next frame's
 * worth from its start, at most LAZY_MAX_PAGES), or {b, b} if none. */
static int s_scan(s_serve_t *v, s_sproc_t *p, uint64_t a, uint64_t b, lazy_run_t *ret_run)
{
    if (p->pagemap_fd < 0 && !p->no_scan) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)p->pid);
        p->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
        p->no_scan = p->pagemap_fd < 0;
    }
    struct track_page_region reg;
    struct track_pm_scan_arg q = {
        .size = sizeof(q), .start = a, .end = b, .vec = (uint64_t)(uintptr_t)&reg,
        .vec_len = 1, .max_pages = LAZY_MAX_PAGES,
        .category_anyof_mask = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
        .return_mask = TRACK_PAGE_IS_PRESENT | TRACK_PAGE_IS_SWAPPED,
    };
    long k = p->no_scan ? -1 : ioctl(p->pagemap_fd, TRACK_PAGEMAP_SCAN, &q);
    if (k < 0 && !p->no_scan && errno != ENOTTY && errno != EINVAL)
        return cairn_error_set(v->err, -errno, CAIRN_SYSTEM, "PAGEMAP_SCAN of %d at %#llx: %s",
                               (int)p->pid, (unsigned long long)a, strerror(errno));
    if (k < 0) {   /* no scan here: every page goes as if held */
        p->no_scan = true;
        uint64_t e = a + (uint64_t)LAZY_MAX_PAGES * LAZY_PAGE;
        *ret_run = (lazy_run_t){ a, e < b ? e : b };
        return 0;
    }
    *ret_run = k > 0 ? (lazy_run_t){ reg.start, reg.end < b ? reg.end : b }
                     : (lazy_run_t){ b, b };
    return 0;
}

/* A ZERO frame: [a, b) of p was never touched, in frames of at most
 * LAZY_MAX_ZERO pages. */
static int s_zero(s_serve_t *v, s_sproc_t *p, uint64_t a, uint64_t b)
{
    while (a < b) {
        uint64_t n = (b - a) / LAZY_PAGE;
        n = n > LAZY_MAX_ZERO ? LAZY_MAX_ZERO : n;
        lazy_frame_t f = { LAZY_ZERO, p->vpid, a, (uint32_t)n, 0 };
        int rc = lazy_frame_write(v->fd, &f, NULL);
        if (rc < 0)
            return cairn_error_set(v->err, rc, CAIRN_UNAVAILABLE, "the page source's target "
                                   "is gone: %s", strerror(-rc));
        rc = s_sent(v, p, a, n);
        if (rc < 0)
            return rc;
        v->st->absent += n;
        a += n * LAZY_PAGE;
    }
    return 0;
}

/* Pushes what comes next in address order: the run before the next held
 * pages (ZERO), then those pages; *ret_all once nothing is left. */
static int s_push(s_serve_t *v, bool *ret_all)
{
    lazy_src_t *s = v->s;
    for (; v->cp < s->n; v->cp++) {
        s_sproc_t *p = &s->p[v->cp];
        if (p->unsent.n == 0)
            continue;
        lazy_run_t u = p->unsent.v[0], held = { 0, 0 };
        int r = s_scan(v, p, u.a, u.b, &held);
        if (r == 0 && held.a > u.a)
            r = s_zero(v, p, u.a, held.a);
        if (r < 0 || held.a == held.b)
            return r;
        uint32_t n = (uint32_t)((held.b - held.a) / LAZY_PAGE);
        v->st->pushed += n;
        return s_send(v, p, held.a, n);
    }
    *ret_all = true;
    return 0;
}

/* The holder's word while serving: 'r' for a line "resume", 'k' for
 * "kill" (stop serving: the target is done or given up), 0 for anything
 * else; *hold becomes -1 at its end. */
static int s_holder_word(int *hold)
{
    char line[32];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t k = read(*hold, line + n, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            *hold = -1;
            break;
        }
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    return strcmp(line, "resume") == 0 ? 'r' : strcmp(line, "kill") == 0 ? 'k' : 0;
}

bool lazy_hold_resumes(int fd)
{
    return fd >= 0 && s_holder_word(&fd) == 'r';
}

/* Every range of every process still to send. */
static int s_init_unsent(lazy_src_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        s_sproc_t *p = &s->p[i];
        lazy_runs_free(&p->unsent);
        p->unsent = (lazy_runs_t){ .n = p->ranges.n, .cap = p->ranges.n,
                                   .bytes = p->ranges.bytes };
        if (p->ranges.n && !(p->unsent.v = malloc(p->ranges.n * sizeof(lazy_run_t))))
            return -ENOMEM;
        if (p->ranges.n)
            memcpy(p->unsent.v, p->ranges.v, p->ranges.n * sizeof(lazy_run_t));
    }
    return 0;
}

/* One turn of the loop: the holder's word, a request, or a push. */
static int s_turn(s_serve_t *v, int *hold, bool *all_sent, lazy_serve_end_t *end)
{
    struct pollfd pf[2] = { { v->fd, POLLIN, 0 }, { *hold, POLLIN, 0 } };
    int k = poll(pf, *hold >= 0 ? 2 : 1, *all_sent || !v->started ? -1 : 0);
    if (k < 0)
        return errno == EINTR ? 0 : cairn_error_set(v->err, -errno, CAIRN_SYSTEM, "poll: %s",
                                                    strerror(errno));
    int word = *hold >= 0 && pf[1].revents ? s_holder_word(hold) : 0;
    if (word) {
        *end = word == 'r' ? LAZY_RESUMED : LAZY_SERVED;
        return 1;
    }
    if (pf[0].revents) {
        lazy_frame_t f;
        int r = lazy_frame_read(v->fd, &f);
        if (r == -EPIPE && *all_sent) {
            *end = LAZY_SERVED;   /* everything went out; the target is gone */
            return 1;
        }
        if (r < 0)
            return cairn_error_set(v->err, r, r == -EPROTO ? CAIRN_INVALID_ARGUMENT
                                                           : CAIRN_UNAVAILABLE,
                                   "the page source's target %s", r == -EPROTO
                                   ? "sent a frame no target sends" : "is gone");
        if (f.type == LAZY_END) {
            v->st->target_done = true;
            *end = LAZY_SERVED;
            return 1;
        }
        if (f.type == LAZY_START) {
            v->started = true;
            return 0;
        }
        if (f.type != LAZY_REQ)
            return cairn_error_set(v->err, -EPROTO, CAIRN_INVALID_ARGUMENT,
                                   "the page source's target sent a frame of type %u",
                                   f.type);
        return s_answer(v, &f);
    }
    if (*all_sent || !v->started)
        return 0;
    int r = s_push(v, all_sent);
    if (r == 0 && *all_sent) {
        lazy_frame_t e = { LAZY_END, 0, 0, 0, 0 };
        r = lazy_frame_write(v->fd, &e, NULL);
        if (r == -EPIPE) {
            *end = LAZY_SERVED;
            return 1;
        }
        if (r < 0)
            r = cairn_error_set(v->err, r, CAIRN_SYSTEM, "page source: %s", strerror(-r));
    }
    return r;
}

lazy_serve_end_t lazy_serve(lazy_src_t *s, int pages_fd, int hold_fd, lazy_serve_stats_t *st,
                            cairn_error_t *err)
{
    uint64_t t0 = cairn_now_us();
    s_serve_t v = { .s = s, .fd = pages_fd, .st = st, .err = err,
                    .buf = aligned_alloc(LAZY_PAGE, LAZY_MAX_PAGES * LAZY_PAGE) };
    lazy_serve_end_t end = LAZY_BROKEN;
    bool all_sent = false;
    int hold = hold_fd;

    *st = (lazy_serve_stats_t){ .pages = s->pages };
    int r = v.buf && s_init_unsent(s) == 0
                ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    while (r == 0)
        r = s_turn(&v, &hold, &all_sent, &end);
    free(v.buf);
    st->serve_us = cairn_now_us() - t0;
    return r > 0 ? end : LAZY_BROKEN;
}

/* ---- the restored process's userfaultfd -------------------------------- */

/* The events that change a registered range under the server: it must
 * know, or it would copy a page where the process dropped, moved or
 * unmapped it, or miss a forked child's copy of the missing pages. */
#define S_UFFD_FEATURES (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | \
                         UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)

int lazy_child_uffd(int sock, uint32_t index)
{
    /* Not UFFD_USER_MODE_ONLY: the kernel's own accesses to a lazy page
     * (a read(2) into it, rseq's update of its area) must wait for the
     * page too, not fail with EFAULT. */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct uffdio_api api = { .api = UFFD_API, .features = S_UFFD_FEATURES };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { &index, sizeof(index) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(sock, &m, MSG_NOSIGNAL) != (ssize_t)sizeof(index)) {
        int e = errno ? errno : EIO;
        close(fd);
        return -e;
    }
    return fd;
}
