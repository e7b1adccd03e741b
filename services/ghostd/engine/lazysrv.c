/* lazysrv.c - post-copy, the target's side: the page server of a
 * restored tree, and its window (lazy.h).
 *
 * Design. Each restored process with lazy pages makes a userfaultfd in
 * its libc stage (lazy_child_uffd) and sends it to the server on a
 * socket; its blob registers the lazy vmas (MISSING) once the image's
 * other pages are in, and says so on the same socket. The server is a
 * thread of ghost-restore, started once the root exists (a thread made
 * before the clone would leave the child's libc in whatever state the
 * thread had it), polling the socket, every userfaultfd and the page
 * source:
 *
 *  - a fault at an address whose page is lazy and has not come yet asks
 *    the source for it (and up to S_AHEAD pages after it, not asked yet);
 *    the faulting thread sleeps until UFFDIO_COPY puts the page in. A
 *    fault anywhere else in a registered vma (a page the source said it
 *    never touched, the stack growing, the heap growing, a page the
 *    process dropped since) gets a zero page, as it would have.
 *  - a ZERO run from the source (pages it never touched) is only
 *    forgotten: nothing is placed (a 1 TiB reservation costs no page
 *    table), so a later fault there gets a zero page, and once the
 *    userfaultfd is closed the kernel gives one; a thread already
 *    waiting in it (its page asked for) gets its zero page now.
 *  - a page from the source goes into every process that still misses
 *    it, at the address it has there now; it is read from the source only
 *    once every process is registered (before that, a copy would find no
 *    registered vma and the page would be lost).
 *  - the events that change a registered range are followed per process
 *    (s_mm_t.iv maps image addresses to where they are now): a fork gives
 *    the child its own userfaultfd and a copy of the parent's missing
 *    pages, mremap moves them, MADV_DONTNEED and munmap drop them (their
 *    page must not come back). While such an event is unread the kernel
 *    refuses copies into that process (EAGAIN): the events are read and
 *    the copy tried again.
 *
 * It ends when every lazy page of the image has come (whether a process
 * still wanted it or not): it tells the source END and closes every
 * userfaultfd, which unregisters what is left. It fails when the source
 * fails (gone, an ERROR frame, END with pages missing): the caller kills
 * the tree, since a userfaultfd closed early leaves holes that read as
 * zeros.
 *
 * The window (lazy_window): the restored tree runs, still traced by
 * ghost-restore with PTRACE_O_EXITKILL, until the server ends, so that
 * if ghost-restore dies (killed at ghostd's deadline, a crash) the kernel
 * kills the tree rather than leave it with holes. Meanwhile every ptrace
 * stop is passed through (signals delivered, group stops kept with
 * PTRACE_LISTEN, children born are traced too); then every task is
 * interrupted and detached, or, if the server failed, killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "lazy.h"
#include "lazyrst.h"
#include "mem.h"
#include "seize.h"
#include "util/array.h"
#include "util/clock.h"

#define S_AHEAD 16u            /* pages asked for after a faulting one */

/* ---- the server's state ------------------------------------------------ */

/* A process of the image: its lazy pages and which have come (runs, not
 * bits: a range may span a whole untouched reservation). */
typedef struct s_fam {
    uint32_t vpid;             /* as the image and the source name it */
    lazy_runs_t ranges;        /* its lazy ranges */
    lazy_runs_t missing;       /* of them, not come yet */
    lazy_runs_t asked;         /* of those, asked for */
    bool arrived;              /* its userfaultfd came */
    bool ready;                /* its blob registered the lazy vmas */
} s_fam_t;

/* Image addresses [img, img + len) are at [cur, cur + len) in an mm. */
typedef struct s_iv {
    uint64_t img, cur, len;
} s_iv_t;

/* An mm the server fills: a restored process, or a child forked from
 * one while serving. */
typedef struct s_mm {
    size_t fam;                /* its family (the image process it came from) */
    int uffd;                  /* our copy of its userfaultfd; -1: gone */
    s_iv_t *iv;                /* what it still misses, sorted by cur */
    size_t n, cap;
} s_mm_t;

struct lazy_srv {
    int pages_fd;              /* the page source (the caller's) */
    int sock;                  /* userfaultfds and readiness come here */
    bool sock_done;            /* nobody is left to write on it */
    bool pushing;              /* START went to the source */
    int stop_efd, done_efd;    /* the caller's stop; our end */
    int push_efd;              /* the caller's word: the tree runs */
    bool push;                 /* it came */
    s_fam_t *fam;              /* [n_fam], image order */
    size_t n_fam;
    s_mm_t *mm;
    size_t n_mm, cap_mm;
    uint8_t *buf;              /* LAZY_MAX_PAGES pages from the source */
    pthread_t thread;
    bool started;
    bool joined;          /* the thread was joined (lazy_srv_join) */
    int rc;                    /* 0 done, -ECANCELED stopped, else failed */
    cairn_error_t err;
    lazy_srv_stats_t st;
};

lazy_srv_t *lazy_srv_new(int pages_fd, int sock, size_t n_procs)
{
    lazy_srv_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->pages_fd = pages_fd;
    s->sock = sock;
    s->n_fam = n_procs;
    s->fam = calloc(n_procs ? n_procs : 1, sizeof(*s->fam));
    s->buf = aligned_alloc(LAZY_PAGE, LAZY_MAX_PAGES * LAZY_PAGE);
    s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->push_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!s->fam || !s->buf || s->stop_efd < 0 || s->done_efd < 0 || s->push_efd < 0) {
        s->n_fam = 0;
        s->sock = -1;   /* still the caller's on failure */
        (void)lazy_srv_finish(s, false, NULL, NULL);
        return NULL;
    }
    return s;
}

int lazy_srv_add(lazy_srv_t *s, size_t index, uint32_t vpid, uint64_t addr, uint64_t len)
{
    if (index >= s->n_fam)
        return -EINVAL;
    s_fam_t *f = &s->fam[index];
    f->vpid = vpid;
    if (lazy_runs_put(&f->ranges, addr, addr + len) < 0 ||
        lazy_runs_put(&f->missing, addr, addr + len) < 0)
        return -ENOMEM;
    s->st.pages += len / LAZY_PAGE;
    return 0;
}

void lazy_srv_push(lazy_srv_t *s)
{
    uint64_t one = 1;
    (void)!write(s->push_efd, &one, sizeof(one));
}

int lazy_srv_done_fd(const lazy_srv_t *s)
{
    return s->done_efd;
}

/* The server's first failure (later ones are its consequences): rc. */
static int __attribute__((format(printf, 4, 5)))
s_fail(lazy_srv_t *s, int r, int code, const char *fmt, ...)
{
    char msg[CAIRN_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->rc == 0)
        s->rc = cairn_error_set(&s->err, r, code, "%s", msg);
    return s->rc;
}

/* ---- an mm's missing pages --------------------------------------------- */

static int s_cmp_iv(const void *a, const void *b)
{
    const s_iv_t *x = a, *y = b;
    return x->cur < y->cur ? -1 : x->cur > y->cur;
}

/* The interval of m holding address cur, or NULL. */
static s_iv_t *s_iv_at(s_mm_t *m, uint64_t cur)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->iv[mid].cur + m->iv[mid].len <= cur)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->iv[lo].cur <= cur ? &m->iv[lo] : NULL;
}

/* Removes [a, b) from m's intervals, in image addresses (by_img) or
 * where they are now; the bytes removed into *ret_len. */
static int s_iv_cut(s_mm_t *m, uint64_t a, uint64_t b, bool by_img, uint64_t *ret_len)
{
    s_iv_t *out = NULL;
    size_t n = 0, cap = 0;
    uint64_t cut = 0;
    for (size_t i = 0; i < m->n; i++) {
        s_iv_t v = m->iv[i];
        uint64_t s = by_img ? v.img : v.cur, e = s + v.len;
        uint64_t os = a > s ? a : s, oe = b < e ? b : e;
        if (os >= oe) {
            if (CAIRN_GROW(out, cap, n + 1, 16) < 0)
                goto nomem;
            out[n++] = v;
            continue;
        }
        cut += oe - os;
        if (os > s) {
            if (CAIRN_GROW(out, cap, n + 1, 16) < 0)
                goto nomem;
            out[n++] = (s_iv_t){ v.img, v.cur, os - s };
        }
        if (oe < e) {
            if (CAIRN_GROW(out, cap, n + 1, 16) < 0)
                goto nomem;
            out[n++] = (s_iv_t){ v.img + (oe - s), v.cur + (oe - s), e - oe };
        }
    }
    free(m->iv);
    m->iv = out, m->n = n, m->cap = cap;
    if (ret_len)
        *ret_len = cut;
    return 0;
nomem:
    free(out);
    return -ENOMEM;
}

/* mremap moved [from, from + len) of m to `to`: so did its missing pages. */
static int s_iv_move(s_mm_t *m, uint64_t from, uint64_t to, uint64_t len)
{
    s_iv_t *moved = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < m->n; i++) {
        s_iv_t v = m->iv[i];
        uint64_t os = from > v.cur ? from : v.cur;
        uint64_t oe = from + len < v.cur + v.len ? from + len : v.cur + v.len;
        if (os >= oe)
            continue;
        if (CAIRN_GROW(moved, cap, n + 1, 8) < 0) {
            free(moved);
            return -ENOMEM;
        }
        moved[n++] = (s_iv_t){ v.img + (os - v.cur), to + (os - from), oe - os };
    }
    int r = s_iv_cut(m, from, from + len, false, NULL);
    if (r == 0 && CAIRN_GROW(m->iv, m->cap, m->n + n, 16) < 0)
        r = -ENOMEM;
    if (r == 0) {
        memcpy(m->iv + m->n, moved, n * sizeof(*moved));
        m->n += n;
        qsort(m->iv, m->n, sizeof(*m->iv), s_cmp_iv);
    }
    free(moved);
    return r;
}

/* A new mm of family f with userfaultfd uffd, missing what `like` misses
 * (NULL: every lazy page of f). Its index, or -ENOMEM (uffd closed). */
static ssize_t s_mm_add(lazy_srv_t *s, size_t f, int uffd, const s_mm_t *like)
{
    s_mm_t m = { .fam = f, .uffd = uffd };
    const s_fam_t *fa = &s->fam[f];
    size_t n = like ? like->n : fa->ranges.n;
    if (n && !(m.iv = malloc(n * sizeof(*m.iv)))) {
        close(uffd);
        return -ENOMEM;
    }
    m.n = m.cap = n;
    for (size_t i = 0; i < n; i++)
        m.iv[i] = like ? like->iv[i]
                       : (s_iv_t){ fa->ranges.v[i].a, fa->ranges.v[i].a,
                                   fa->ranges.v[i].b - fa->ranges.v[i].a };
    if (CAIRN_GROW(s->mm, s->cap_mm, s->n_mm + 1, 8) < 0) {
        free(m.iv);
        close(uffd);
        return -ENOMEM;
    }
    s->mm[s->n_mm] = m;
    return (ssize_t)s->n_mm++;
}

static void s_mm_gone(s_mm_t *m)
{
    if (m->uffd >= 0)
        close(m->uffd);
    m->uffd = -1;
    free(m->iv);
    m->iv = NULL;
    m->n = m->cap = 0;
}

/* ---- faults and events ------------------------------------------------- */

/* Asks the source for image page img of family f and the few after it
 * that have not come and nobody asked for yet (within its range). */
static int s_ask(lazy_srv_t *s, s_fam_t *f, uint64_t img)
{
    const lazy_run_t *m = lazy_runs_at(&f->missing, img);
    if (!m || lazy_runs_at(&f->asked, img))
        return 0;   /* come, or on its way */
    uint64_t end = img + (uint64_t)S_AHEAD * LAZY_PAGE;
    const lazy_run_t *next = lazy_runs_next(&f->asked, img);
    end = m->b < end ? m->b : end;
    end = next && next->a < end ? next->a : end;
    if (lazy_runs_put(&f->asked, img, end) < 0)
        return s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    uint32_t n = (uint32_t)((end - img) / LAZY_PAGE);
    lazy_frame_t q = { LAZY_REQ, f->vpid, img, n, 0 };
    int rc = lazy_frame_write(s->pages_fd, &q, NULL);
    s->st.requested += n;
    return rc < 0 ? s_fail(s, rc, CAIRN_UNAVAILABLE, "the page source is gone (%s)",
                           strerror(-rc)) : 0;
}

/* A fault at addr in mm k: the page asked for if it is lazy, else a zero
 * page (a page already there: just wake the thread). */
static int s_fault(lazy_srv_t *s, size_t k, uint64_t addr)
{
    s_mm_t *m = &s->mm[k];
    uint64_t page = addr & ~(uint64_t)(LAZY_PAGE - 1);
    s_iv_t *v = s_iv_at(m, page);
    s->st.faults++;
    s->st.early_faults += !s->push;   /* the restore is waiting for it */
    if (v)
        return s_ask(s, &s->fam[m->fam], v->img + (page - v->cur));
    struct uffdio_zeropage z = { .range = { page, LAZY_PAGE } };
    s->st.zero++;
    if (ioctl(m->uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno == EEXIST) {
        struct uffdio_range w = { page, LAZY_PAGE };
        (void)ioctl(m->uffd, UFFDIO_WAKE, &w);
    }
    /* EAGAIN: an event is pending; once read, the thread faults again.
     * ENOENT, ESRCH: the mapping or the mm is gone. */
    return 0;
}

static int s_event(lazy_srv_t *s, size_t k, const struct uffd_msg *msg)
{
    uint64_t cut = 0;
    int r = 0;
    switch (msg->event) {
    case UFFD_EVENT_PAGEFAULT:
        return s_fault(s, k, msg->arg.pagefault.address);
    case UFFD_EVENT_FORK: {
        /* The child's ptes are the parent's: it misses what it misses. */
        s->st.forks++;
        s_mm_t like = s->mm[k];
        ssize_t c = s_mm_add(s, like.fam, (int)msg->arg.fork.ufd, &like);
        return c < 0 ? s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory") : 0;
    }
    case UFFD_EVENT_REMAP:
        r = s_iv_move(&s->mm[k], msg->arg.remap.from, msg->arg.remap.to, msg->arg.remap.len);
        break;
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
        r = s_iv_cut(&s->mm[k], msg->arg.remove.start, msg->arg.remove.end, false, &cut);
        s->st.dropped += cut / LAZY_PAGE;
        break;
    default:
        break;
    }
    return r < 0 ? s_fail(s, r, CAIRN_SYSTEM, "out of memory") : 0;
}

/* Every message waiting on mm k's userfaultfd. */
static int s_drain(lazy_srv_t *s, size_t k)
{
    struct uffd_msg msg[16];
    while (s->mm[k].uffd >= 0 && s->rc == 0) {
        ssize_t n = read(s->mm[k].uffd, msg, sizeof(msg));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;   /* EAGAIN: nothing more */
        for (size_t i = 0; i < (size_t)n / sizeof(msg[0]) && s->rc == 0; i++)
            s_event(s, k, &msg[i]);
    }
    return s->rc;
}

/* ---- pages from the source --------------------------------------------- */

/* Places len bytes at dst of an mm: a copy of src, or zero pages (src
 * NULL); -1 and errno on failure, the bytes placed before it in *done. */
static int s_place(int uffd, uint64_t dst, uint64_t len, const uint8_t *src, int64_t *done)
{
    if (src) {
        struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len };
        int r = ioctl(uffd, UFFDIO_COPY, &c);
        *done = c.copy;
        return r;
    }
    struct uffdio_zeropage z = { .range = { dst, len } };
    int r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
    *done = z.zeropage;
    return r;
}

/* One pass of placing the image pages [img, img + len) (bytes at data;
 * NULL: zero pages) into mm m where it misses them: 0, or the errno that
 * stopped it (EAGAIN: an event is unread; ENOENT: no registered mapping
 * there; ESRCH: the mm is gone). Pages there already are skipped. */
static int s_copy_pass(s_mm_t *m, uint64_t img, uint64_t len, const uint8_t *data)
{
    for (size_t i = 0; i < m->n; i++) {
        s_iv_t v = m->iv[i];
        uint64_t os = img > v.img ? img : v.img;
        uint64_t oe = img + len < v.img + v.len ? img + len : v.img + v.len;
        while (os < oe) {
            int64_t done = 0;
            if (s_place(m->uffd, v.cur + (os - v.img), oe - os, data ? data + (os - img) : NULL,
                        &done) == 0)
                break;
            int e = errno;
            os += done > 0 ? (uint64_t)done : 0;
            if (e == EEXIST)
                os += LAZY_PAGE;   /* there already: a zero page raced it in */
            else if (e != EINTR)
                return e;
        }
    }
    return 0;
}

/* Places the image pages [img, img + len) (data NULL: zero pages) into
 * mm k where it misses them and forgets them there. Refused because an event is unread (a
 * fork, a move, a drop under way), the events are read first and the
 * copy tried again; a place that still has no registered mapping after
 * that was unmapped: its pages are dropped. */
static int s_fill_mm(lazy_srv_t *s, size_t k, uint64_t img, uint64_t len, const uint8_t *data)
{
    for (int tries = 0;; tries++) {
        int e = s_copy_pass(&s->mm[k], img, len, data);
        if (e == 0)
            break;
        if (e == ESRCH) {   /* the process is gone */
            s_mm_gone(&s->mm[k]);
            return 0;
        }
        if (e != EAGAIN && e != ENOENT)
            return s_fail(s, -e, CAIRN_SYSTEM, "UFFDIO_COPY at image %#llx: %s",
                          (unsigned long long)img, strerror(e));
        if (s_drain(s, k) < 0)
            return s->rc;
        if (e == ENOENT && tries >= 2)
            break;
        if (tries > 100000)
            return s_fail(s, -EAGAIN, CAIRN_INTERNAL, "UFFDIO_COPY at image %#llx: still "
                          "refused after the events were read", (unsigned long long)img);
        if (tries > 100)
            sched_yield();
    }
    int r = s_iv_cut(&s->mm[k], img, img + len, true, NULL);
    return r < 0 ? s_fail(s, r, CAIRN_SYSTEM, "out of memory") : 0;
}

/* The family of the frame's pages, or NULL (then the server failed):
 * they must be inside one lazy range of that process. */
static s_fam_t *s_frame_fam(lazy_srv_t *s, const lazy_frame_t *f)
{
    s_fam_t *fa = NULL;
    for (size_t i = 0; i < s->n_fam && !fa; i++)
        if (s->fam[i].ranges.n && s->fam[i].vpid == f->pid)
            fa = &s->fam[i];
    const lazy_run_t *rg = fa ? lazy_runs_at(&fa->ranges, f->addr) : NULL;
    if (!rg || f->addr + (uint64_t)f->n_pages * LAZY_PAGE > rg->b) {
        s_fail(s, -EPROTO, CAIRN_INVALID_ARGUMENT, "the page source sent pages that are "
               "not lazy pages of the image (process %u at %#llx)", f->pid,
               (unsigned long long)f->addr);
        return NULL;
    }
    return fa;
}

/* [a, b) of family fa came: no longer missing nor asked. */
static int s_came(lazy_srv_t *s, s_fam_t *fa, uint64_t a, uint64_t b, bool zero)
{
    uint64_t cut = 0;
    if (lazy_runs_cut(&fa->missing, a, b, &cut) < 0 || lazy_runs_cut(&fa->asked, a, b, NULL) < 0)
        return s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    s->st.received += cut / LAZY_PAGE;
    s->st.absent += zero ? cut / LAZY_PAGE : 0;
    return s->rc;
}

static int s_pages(lazy_srv_t *s, const lazy_frame_t *f)
{
    int r = lazy_read_full(s->pages_fd, s->buf, f->len);
    if (r < 0)
        return s_fail(s, r, CAIRN_UNAVAILABLE, "the page source is gone (%s)", strerror(-r));
    s_fam_t *fa = s_frame_fam(s, f);
    if (!fa)
        return s->rc;
    uint64_t len = (uint64_t)f->n_pages * LAZY_PAGE;
    for (size_t k = 0; k < s->n_mm && s->rc == 0; k++)   /* forks append */
        if (&s->fam[s->mm[k].fam] == fa && s->mm[k].uffd >= 0)
            s_fill_mm(s, k, f->addr, len, s->buf);
    return s->rc ? s->rc : s_came(s, fa, f->addr, f->addr + len, false);
}

/* A ZERO run: pages the source never touched. Nothing is placed but
 * where a thread waits (asked for), so a huge untouched range costs no
 * page table; each mm forgets the run (a fault there now gets a zero
 * page, as once the userfaultfd is closed). */
static int s_zero(lazy_srv_t *s, const lazy_frame_t *f)
{
    s_fam_t *fa = s_frame_fam(s, f);
    if (!fa)
        return s->rc;
    uint64_t a = f->addr, b = a + (uint64_t)f->n_pages * LAZY_PAGE;
    /* The asked parts, copied: placing reads events, whose faults ask. */
    lazy_runs_t wait = { 0 };
    for (const lazy_run_t *q = lazy_runs_next(&fa->asked, a); q && q->a < b;
         q = lazy_runs_next(&fa->asked, q->b))
        if (lazy_runs_put(&wait, q->a > a ? q->a : a, q->b < b ? q->b : b) < 0) {
            lazy_runs_free(&wait);
            return s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        }
    for (size_t k = 0; k < s->n_mm && s->rc == 0; k++) {
        if (&s->fam[s->mm[k].fam] != fa || s->mm[k].uffd < 0)
            continue;
        for (size_t j = 0; j < wait.n && s->rc == 0 && s->mm[k].uffd >= 0; j++)
            s_fill_mm(s, k, wait.v[j].a, wait.v[j].b - wait.v[j].a, NULL);
        if (s->rc == 0 && s->mm[k].uffd >= 0 && s_iv_cut(&s->mm[k], a, b, true, NULL) < 0)
            s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    lazy_runs_free(&wait);
    return s->rc ? s->rc : s_came(s, fa, a, b, true);
}

/* One frame from the source. */
static int s_source(lazy_srv_t *s)
{
    lazy_frame_t f;
    char msg[LAZY_MAX_MESSAGE + 1] = "";
    int r = lazy_frame_read(s->pages_fd, &f);
    if (r == -EPROTO)
        return s_fail(s, r, CAIRN_INVALID_ARGUMENT, "the page source sent a bad frame");
    if (r < 0)
        return s_fail(s, r, CAIRN_UNAVAILABLE, "the page source is gone (%s)", strerror(-r));
    switch (f.type) {
    case LAZY_PAGES:
        return s_pages(s, &f);
    case LAZY_ZERO:
        return s_zero(s, &f);
    case LAZY_ERROR:
        if (lazy_read_full(s->pages_fd, msg, f.len) < 0)
            snprintf(msg, sizeof(msg), "(its message was cut)");
        msg[f.len < sizeof(msg) ? f.len : sizeof(msg) - 1] = '\0';
        return s_fail(s, -EIO, CAIRN_UNAVAILABLE, "the page source failed: %s", msg);
    case LAZY_END:
        if (s->st.received < s->st.pages)
            return s_fail(s, -EIO, CAIRN_UNAVAILABLE, "the page source ended with %llu "
                          "lazy pages never sent", (unsigned long long)(s->st.pages - s->st.received));
        return 0;
    default:
        return s_fail(s, -EPROTO, CAIRN_INVALID_ARGUMENT, "the page source sent a request");
    }
}

/* ---- the socket: userfaultfds and readiness ---------------------------- */

static int s_sock(lazy_srv_t *s)
{
    uint32_t word = 0;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &word, sizeof(word) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf) };
    ssize_t n = recvmsg(s->sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == 0) {   /* every process and the plan closed their end */
        s->sock_done = true;
        return 0;
    }
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : s_fail(s, -errno, CAIRN_SYSTEM,
                                                             "lazy socket: %s", strerror(errno));
    int fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
    size_t i = word & ~GR_LAZY_READY;
    if (n != (ssize_t)sizeof(word) || i >= s->n_fam || !s->fam[i].ranges.n ||
        (fd >= 0) == !!(word & GR_LAZY_READY)) {
        if (fd >= 0)
            close(fd);
        return s_fail(s, -EPROTO, CAIRN_INTERNAL, "lazy socket: a message no restored "
                      "process sends (%#x)", word);
    }
    if (word & GR_LAZY_READY) {
        s->fam[i].ready = true;
        return 0;
    }
    s->fam[i].arrived = true;
    return s_mm_add(s, i, fd, NULL) < 0 ? s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory")
                                       : 0;
}

/* ---- the loop ---------------------------------------------------------- */

static bool s_all(const lazy_srv_t *s, bool ready_only)
{
    for (size_t i = 0; i < s->n_fam; i++)
        if (s->fam[i].ranges.n && (ready_only ? !s->fam[i].ready : s->fam[i].missing.bytes > 0))
            return false;
    return true;
}

static void *s_main(void *arg)
{
    lazy_srv_t *s = arg;
    uint64_t t0 = cairn_now_us();
    struct pollfd *pf = NULL;
    size_t cap = 0;

    while (s->rc == 0 && !s_all(s, false)) {
        bool ready = s_all(s, true);
        if (ready && s->push && !s->pushing) {   /* the tree runs: push */
            lazy_frame_t go = { LAZY_START, 0, 0, 0, 0 };
            int r = lazy_frame_write(s->pages_fd, &go, NULL);
            if (r < 0) {
                s_fail(s, r, CAIRN_UNAVAILABLE, "the page source is gone (%s)", strerror(-r));
                break;
            }
            s->pushing = true;
        }
        if (CAIRN_GROW(pf, cap, s->n_mm + 4, 16) < 0) {
            s_fail(s, -ENOMEM, CAIRN_SYSTEM, "out of memory");
            break;
        }
        pf[0] = (struct pollfd){ s->stop_efd, POLLIN, 0 };
        pf[1] = (struct pollfd){ s->sock_done ? -1 : s->sock, POLLIN, 0 };
        pf[2] = (struct pollfd){ ready ? s->pages_fd : -1, POLLIN, 0 };
        size_t n_mm = s->n_mm;
        for (size_t k = 0; k < n_mm; k++)
            pf[3 + k] = (struct pollfd){ s->mm[k].uffd, POLLIN, 0 };
        pf[3 + n_mm] = (struct pollfd){ s->push ? -1 : s->push_efd, POLLIN, 0 };
        if (poll(pf, 4 + n_mm, -1) < 0) {
            if (errno != EINTR)
                s_fail(s, -errno, CAIRN_SYSTEM, "poll: %s", strerror(errno));
            continue;
        }
        if (pf[0].revents) {
            s->rc = -ECANCELED;   /* the restore failed: nothing to report */
            break;
        }
        if (pf[3 + n_mm].revents)   /* first: a fault beside it came after */
            s->push = true;
        for (size_t k = 0; k < n_mm && s->rc == 0; k++)
            if (pf[3 + k].revents)
                s_drain(s, k);
        if (s->rc == 0 && pf[1].revents)
            s_sock(s);
        if (s->rc == 0 && pf[2].revents)
            s_source(s);
    }
    if (s->rc == 0) {   /* every page came: the source may stop */
        lazy_frame_t e = { LAZY_END, 0, 0, 0, 0 };
        (void)lazy_frame_write(s->pages_fd, &e, NULL);
    }
    /* Closing unregisters what is left: done here once every page came;
     * after a failure by lazy_srv_finish, once the caller killed the tree
     * (until then a thread on a missing page stays blocked, not zeroed). */
    for (size_t k = 0; s->rc == 0 && k < s->n_mm; k++)
        s_mm_gone(&s->mm[k]);
    free(pf);
    s->st.serve_us = cairn_now_us() - t0;
    uint64_t one = 1;
    (void)!write(s->done_efd, &one, sizeof(one));
    return NULL;
}

int lazy_srv_start(lazy_srv_t *s, cairn_error_t *err)
{
    int r = pthread_create(&s->thread, NULL, s_main, s);
    if (r != 0)
        return cairn_error_set(err, -r, CAIRN_SYSTEM, "cannot start the page server: %s",
                               strerror(r));
    s->started = true;
    return 0;
}

/* Waits for the server's thread once (it has ended when done_fd is
 * readable, or after stop); its result. The userfaultfds stay open. */
static int s_join(lazy_srv_t *s)
{
    if (s->started && !s->joined) {
        pthread_join(s->thread, NULL);
        s->joined = true;
    }
    return s->started ? s->rc : -ECANCELED;
}

int lazy_srv_finish(lazy_srv_t *s, bool stop, lazy_srv_stats_t *st, cairn_error_t *err)
{
    if (!s)
        return 0;
    uint64_t one = 1;
    if (stop && s->started && !s->joined)
        (void)!write(s->stop_efd, &one, sizeof(one));
    s_join(s);
    int rc = s->started ? s->rc : -ECANCELED;
    if (rc < 0 && rc != -ECANCELED && err)
        *err = s->err;
    if (st)
        *st = s->st;
    for (size_t k = 0; k < s->n_mm; k++)
        s_mm_gone(&s->mm[k]);
    for (size_t i = 0; i < s->n_fam; i++) {
        lazy_runs_free(&s->fam[i].ranges);
        lazy_runs_free(&s->fam[i].missing);
        lazy_runs_free(&s->fam[i].asked);
    }
    free(s->fam);
    free(s->mm);
    free(s->buf);
    if (s->sock >= 0)
        close(s->sock);
    if (s->stop_efd >= 0)
        close(s->stop_efd);
    if (s->done_efd >= 0)
        close(s->done_efd);
    if (s->push_efd >= 0)
        close(s->push_efd);
    free(s);
    return rc;
}

/* ---- restore: the image, the plan, the child --------------------------- */

static bool s_private_anon(const Cairn__Ghost__Vma *v)
{
    return v->kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE ||
           v->kind == CAIRN__GHOST__VMA_KIND__VMA_HEAP ||
           v->kind == CAIRN__GHOST__VMA_KIND__VMA_STACK;
}

int lazy_load(rst_image_t *im, rst_proc_t *pr, const Cairn__Ghost__LazyPages *l, uint64_t at,
              cairn_error_t *err)
{
    uint64_t len = l->n_pages * RST_PAGE;
    if (!im->header || !im->header->header->lazy)
        return rst_bad(err, "lazy pages in an image that is not post-copy", at);
    if (l->n_pages == 0 || l->n_pages > (1ull << 24) || l->vaddr % RST_PAGE)
        return rst_bad(err, "lazy pages record with a bad range", at);
    const Cairn__Ghost__Vma *v = pr ? mem_vma_of(pr, l->vaddr, len) : NULL;
    if (!v || !v->dumped || !s_private_anon(v))
        return rst_bad(err, "lazy pages outside every dumped vma of private anonymous memory",
                       at);
    struct gr_run *last = pr->n_lazy ? &pr->lazy[pr->n_lazy - 1] : NULL;
    if (last && l->vaddr < last->vaddr + last->len)
        return rst_bad(err, "lazy pages out of order", at);
    if (last && last->vaddr + last->len == l->vaddr) {
        last->len += len;
    } else {
        if (CAIRN_GROW(pr->lazy, pr->cap_lazy, pr->n_lazy + 1, 16) < 0)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        pr->lazy[pr->n_lazy++] = (struct gr_run){ l->vaddr, len, 0 };
    }
    im->lazy_pages += l->n_pages;
    im->pages += l->n_pages;
    return 0;
}

uint64_t lazy_need_pages(const rst_image_t *im)
{
    uint64_t n = 0;
    for (size_t i = 0; i < im->n_procs; i++) {
        const rst_proc_t *pr = &im->procs[i];
        uint64_t extent = 0, held = pr->process->process->lazy_resident_pages;
        for (size_t j = 0; j < pr->n_lazy; j++)
            extent += pr->lazy[j].len / RST_PAGE;
        n += held && held < extent ? held : extent;
    }
    return n;
}

int lazy_plan_tree(rst_tree_t *t, int pages_fd, cairn_error_t *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "socketpair: %s", strerror(errno));
    lazy_srv_t *srv = lazy_srv_new(pages_fd, sv[0], t->im->n_procs);
    if (!srv) {
        close(sv[0]);
        close(sv[1]);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    t->lazy = srv;
    int r = rst_helper(t, sv[1], err);
    if (r < 0)
        return r;
    t->lazy_sock = r;
    for (size_t i = 0; i < t->im->n_procs; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->n_lazy; j++)
            if (lazy_srv_add(srv, i, pr->process->process->pid, pr->lazy[j].vaddr,
                             pr->lazy[j].len) < 0)
                return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    return 0;
}

void lazy_plan_proc(rst_plan_t *pl, const rst_proc_t *pr, size_t index)
{
    struct gr_args *a = pl->args;
    a->uffd_fd = -1;
    a->lazy_sock = -1;
    if (!pl->tree->lazy || !pr->n_lazy)
        return;
    a->lazy_sock = pl->tree->lazy_sock;
    a->lazy_index = (uint32_t)index;
    for (uint32_t i = 0; i < a->n_vmas; i++) {
        struct gr_vma *g = &a->vmas[i];
        for (size_t j = 0; j < pr->n_lazy && !g->lazy; j++)
            g->lazy = pr->lazy[j].vaddr < g->end && pr->lazy[j].vaddr + pr->lazy[j].len > g->start;
    }
}

void lazy_child(const rst_tree_t *t, size_t i)
{
    const rst_plan_t *pl = &t->plans[i];
    if (!t->lazy || !t->im->procs[i].n_lazy)
        return;
    int fd = lazy_child_uffd(t->lazy_sock, (uint32_t)i);
    if (fd < 0)
        rst_child_fail(pl, -fd, 0, "post-copy: cannot make and hand over its userfaultfd: %s",
                       strerror(-fd));
    pl->args->uffd_fd = fd;
}

/* ---- restore: the window ----------------------------------------------- */

/* The tasks traced in the window. */
typedef struct s_tasks {
    pid_t *v;
    size_t n, cap;
} s_tasks_t;

static ssize_t s_task_find(const s_tasks_t *ts, pid_t tid)
{
    for (size_t i = 0; i < ts->n; i++)
        if (ts->v[i] == tid)
            return (ssize_t)i;
    return -1;
}

static void s_task_drop(s_tasks_t *ts, pid_t tid)
{
    ssize_t i = s_task_find(ts, tid);
    if (i >= 0)
        ts->v[i] = ts->v[--ts->n];
}

/* A task seen for the first time (a child born in the window, traced
 * from birth): remembered. false on ENOMEM. */
static bool s_task_note(s_tasks_t *ts, pid_t tid, bool *ret_new)
{
    *ret_new = s_task_find(ts, tid) < 0;
    if (!*ret_new)
        return true;
    if (CAIRN_GROW(ts->v, ts->cap, ts->n + 1, 16) < 0)
        return false;
    ts->v[ts->n++] = tid;
    return true;
}

static bool s_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* One stop while the tree runs: passed through. */
static void s_window_stop(s_tasks_t *ts, pid_t tid, int status)
{
    int sig = WSTOPSIG(status), event = status >> 16;
    bool fresh;
    if (!s_task_note(ts, tid, &fresh) || fresh) {
        ptrace(PTRACE_CONT, tid, 0, 0);   /* a new task's first stop */
        return;
    }
    if (event == PTRACE_EVENT_STOP && s_stop_signal(sig))
        ptrace(PTRACE_LISTEN, tid, 0, 0);   /* a group stop: it stays stopped */
    else if (event || sig == (SIGTRAP | 0x80))
        ptrace(PTRACE_CONT, tid, 0, 0);
    else
        ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig);   /* its signal */
}

/* Every task's status now, without waiting; handle(ts, tid, status). */
static void s_reap(s_tasks_t *ts, void (*handle)(s_tasks_t *, pid_t, int))
{
    int status;
    pid_t tid;
    while ((tid = waitpid(-1, &status, __WALL | WNOHANG)) > 0) {
        if (WIFEXITED(status) || WIFSIGNALED(status))
            s_task_drop(ts, tid);
        else if (WIFSTOPPED(status))
            handle(ts, tid, status);
    }
}

/* A stop while detaching: the task goes, with the signal it stopped
 * for if that was one (a group stop or an interrupt: none). */
static void s_detach_stop(s_tasks_t *ts, pid_t tid, int status)
{
    int sig = WSTOPSIG(status), event = status >> 16;
    bool fresh;
    (void)s_task_note(ts, tid, &fresh);
    bool signal = !fresh && !event && sig != (SIGTRAP | 0x80);
    ptrace(PTRACE_DETACH, tid, 0, (void *)(long)(signal ? sig : 0));
    s_task_drop(ts, tid);
}

static void s_kill_stop(s_tasks_t *ts, pid_t tid, int status)
{
    (void)ts;
    (void)status;
    kill(tid, SIGKILL);
    ptrace(PTRACE_CONT, tid, 0, 0);
}

/* Waits for SIGCHLD (sfd) or the server's end (done, -1: none) up to ms. */
static void s_wait(int sfd, int done, int ms)
{
    struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { done, POLLIN, 0 } };
    if (poll(pf, 2, ms) > 0 && pf[0].revents) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            ;
    }
}

/* Every task interrupted and detached (a grandchild born meanwhile too),
 * 10 s at most. */
static void s_detach_all(s_tasks_t *ts, int sfd)
{
    uint64_t deadline = cairn_now_ms() + 10000;
    for (size_t i = 0; i < ts->n;)
        if (ptrace(PTRACE_INTERRUPT, ts->v[i], 0, 0) < 0 && errno == ESRCH)
            ts->v[i] = ts->v[--ts->n];
        else
            i++;
    while (ts->n > 0 && cairn_now_ms() < deadline) {
        s_reap(ts, s_detach_stop);
        if (ts->n > 0)
            s_wait(sfd, -1, 10);
    }
}

static void s_kill_all(s_tasks_t *ts, pid_t root, int sfd)
{
    uint64_t deadline = cairn_now_ms() + 10000;
    kill(root, SIGKILL);
    for (size_t i = 0; i < ts->n; i++)
        kill(ts->v[i], SIGKILL);
    while (ts->n > 0 && cairn_now_ms() < deadline) {
        s_reap(ts, s_kill_stop);
        if (ts->n > 0)
            s_wait(sfd, -1, 10);
    }
    /* Whatever is left of ours: none of it may run on with holes. */
    int status;
    while (waitpid(-1, &status, __WALL | WNOHANG) > 0)
        ;
}

int lazy_window(lazy_srv_t *srv, seize_trace_t *tr, pid_t root, lazy_srv_stats_t *st,
                bool *ret_killed, cairn_error_t *err)
{
    s_tasks_t ts = { 0 };
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &old);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    for (size_t i = 0; i < tr->n; i++) {
        bool fresh;
        (void)s_task_note(&ts, tr->tids[i], &fresh);
    }
    int done = lazy_srv_done_fd(srv);
    for (;;) {
        s_reap(&ts, s_window_stop);
        struct pollfd pd = { done, POLLIN, 0 };
        if (poll(&pd, 1, 0) > 0)
            break;
        s_wait(sfd, done, 1000);
    }
    /* A failed server's tree dies before its userfaultfds close: closed,
     * they let a thread blocked on a missing page read zeros and run on
     * (seen: the copy died of SIGSEGV, its end recorded as a crash before
     * ghostd could say its pages were lost). */
    bool failed = s_join(srv) < 0;
    if (failed)
        s_kill_all(&ts, root, sfd);
    int rc = lazy_srv_finish(srv, false, st, err);
    *ret_killed = failed || rc < 0;
    if (!*ret_killed)
        s_detach_all(&ts, sfd);
    if (sfd >= 0)
        close(sfd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(ts.v);
    return rc;
}
