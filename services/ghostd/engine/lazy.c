/* lazy.c - post-copy: the frames on the page source, the source's side
 * (a frozen tree serving its pages) and the userfaultfd each restored
 * process makes (lazy.h; the page server is lazysrv.c).
 *
 * Source. The dump lists each present run of private anonymous memory
 * (lazy_src_add) instead of copying it; once the holder says `serve`,
 * lazy_serve answers requests first and, between them, pushes every page
 * not sent yet in address order, process by process, a frame of at most
 * LAZY_MAX_PAGES at a time: the transfer ends in bounded time (the lazy
 * bytes at the link's speed) even if the target never faults. A page
 * already sent is sent again when asked for (the target may ask while
 * the push of it is on its way; it keeps the first copy). The tree is
 * frozen throughout, so its memory cannot change under the reads.
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

#include "lazy.h"
#include "proc/proc.h"
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
    if (f->type < LAZY_REQ || f->type > LAZY_START ||
        (pages && (f->n_pages == 0 || f->n_pages > LAZY_MAX_PAGES || f->addr % LAZY_PAGE)) ||
        (f->type == LAZY_PAGES && f->len != f->n_pages * LAZY_PAGE) ||
        (f->type == LAZY_ERROR && f->len > LAZY_MAX_MESSAGE) ||
        ((f->type == LAZY_REQ || f->type == LAZY_END || f->type == LAZY_START) && f->len != 0))
        return -EPROTO;
    return 0;
}

/* ---- source ------------------------------------------------------------ */

/* One lazy range of a process: its pages are page indexes first..first+n
 * of the process's sent bitmap. */
typedef struct s_range {
    uint64_t addr, n;      /* first page, pages */
    uint64_t first;        /* index of its first page in the bitmap */
} s_range_t;

/* One process of the frozen tree with lazy ranges. */
typedef struct s_sproc {
    pid_t pid;             /* here */
    uint32_t vpid;         /* in the image */
    int mem_fd;            /* /proc/PID/mem, opened when first needed */
    s_range_t *r;
    size_t n, cap;
    uint64_t pages;        /* of all its ranges */
    uint64_t *sent;        /* a bit per page: sent at least once */
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
        free(s->p[i].r);
        free(s->p[i].sent);
        if (s->p[i].mem_fd >= 0)
            close(s->p[i].mem_fd);
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
        *p = (s_sproc_t){ .pid = pid, .vpid = vpid, .mem_fd = -1 };
    }
    s_range_t *last = p->n ? &p->r[p->n - 1] : NULL;
    uint64_t n = len / LAZY_PAGE;
    if (last && last->addr + last->n * LAZY_PAGE == addr) {
        last->n += n;   /* adjacent runs of one scan: one range */
    } else {
        if (CAIRN_GROW(p->r, p->cap, p->n + 1, 16) < 0)
            return -ENOMEM;
        p->r[p->n++] = (s_range_t){ addr, n, p->pages };
    }
    p->pages += n;
    s->pages += n;
    return 0;
}

uint64_t lazy_src_pages(const lazy_src_t *s)
{
    return s ? s->pages : 0;
}

static bool s_bit(const uint64_t *b, uint64_t i)
{
    return b[i / 64] >> (i % 64) & 1;
}

static void s_set(uint64_t *b, uint64_t i)
{
    b[i / 64] |= 1ull << (i % 64);
}

/* The range of p holding [addr, addr + n pages), or NULL. */
static s_range_t *s_range_of(s_sproc_t *p, uint64_t addr, uint64_t n)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {   /* the first range ending past addr */
        size_t mid = lo + (hi - lo) / 2;
        if (p->r[mid].addr + p->r[mid].n * LAZY_PAGE <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == p->n || p->r[lo].addr > addr ||
        addr + n * LAZY_PAGE > p->r[lo].addr + p->r[lo].n * LAZY_PAGE)
        return NULL;
    return &p->r[lo];
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
    size_t cp, cr;         /* the push cursor: process, range */
    uint64_t cpage;        /*   and page within the range */
    bool started;          /* the target said START: push */
    lazy_serve_stats_t *st;
    cairn_error_t *err;
} s_serve_t;

/* Sends n pages of p at addr (inside range r): their bytes read from the
 * frozen process, or an ERROR frame when they cannot be read (-EIO). */
static int s_send(s_serve_t *v, s_sproc_t *p, s_range_t *r, uint64_t addr, uint32_t n)
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
    for (uint64_t i = 0; i < n; i++)
        s_set(p->sent, r->first + (addr - r->addr) / LAZY_PAGE + i);
    return 0;
}

/* A request: the pages, or an ERROR frame naming what is wrong with it
 * (which ends the serving: the target fails on it). */
static int s_answer(s_serve_t *v, const lazy_frame_t *f)
{
    s_sproc_t *p = s_sproc_of(v->s, f->pid);
    s_range_t *r = p ? s_range_of(p, f->addr, f->n_pages) : NULL;
    if (!r) {
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
    return s_send(v, p, r, f->addr, f->n_pages);
}

/* Pushes the next run of pages not sent yet; *ret_all once none is left. */
static int s_push(s_serve_t *v, bool *ret_all)
{
    lazy_src_t *s = v->s;
    for (; v->cp < s->n; v->cp++, v->cr = 0, v->cpage = 0) {
        s_sproc_t *p = &s->p[v->cp];
        for (; v->cr < p->n; v->cr++, v->cpage = 0) {
            s_range_t *r = &p->r[v->cr];
            while (v->cpage < r->n && s_bit(p->sent, r->first + v->cpage))
                v->cpage++;
            if (v->cpage == r->n)
                continue;
            uint32_t n = 0;
            while (v->cpage + n < r->n && n < LAZY_MAX_PAGES &&
                   !s_bit(p->sent, r->first + v->cpage + n))
                n++;
            uint64_t addr = r->addr + v->cpage * LAZY_PAGE;
            v->cpage += n;
            v->st->pushed += n;
            return s_send(v, p, r, addr, n);
        }
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

/* The bitmaps of every process, empty (nothing sent yet). */
static int s_alloc_sent(lazy_src_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->p[i].sent);
        if (!(s->p[i].sent = calloc((s->p[i].pages + 63) / 64 + 1, sizeof(uint64_t))))
            return -ENOMEM;
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
    int r = v.buf && s_alloc_sent(s) == 0
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
