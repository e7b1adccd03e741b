/* segment.c - the segments this node holds and the kernel operations on
 * their pages.
 *
 * Design. One memfd per segment per node holds the node's copy of each
 * page; every process of the node that opened the segment maps that memfd
 * shared and registered its mapping with a userfaultfd of its own for
 * missing, minor and write-protect faults, and handed the userfaultfd to
 * dsmd. Minor mode is what makes the node's copy safe to share: a page
 * already in the memfd still faults in a process that has not mapped it
 * yet, so no process ever maps a page but through dsmd, which maps it
 * write-protected while the node holds a read copy (UFFDIO_CONTINUE with
 * MODE_WP). Then:
 *   install   = UFFDIO_CONTINUE (a page not in the memfd yet -- never
 *               written anywhere -- is first allocated zeroed);
 *   invalidate= a hole punched in the memfd: every process loses the page
 *               at once, the next touch faults as missing;
 *   downgrade = UFFDIO_WRITEPROTECT on in every process (the TLB flush it
 *               does also drains what the writers stored before);
 *   upgrade   = UFFDIO_WRITEPROTECT off in every process;
 *   lost      = UFFDIO_POISON at the faulting address: SIGBUS.
 * dsmd itself never maps the memfd: it reads and writes pages with
 * pread/pwrite after the writers are stopped.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include "dsmd.h"
#include "log.h"
#include "util/uffd-compat.h"

bool dsm_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > DSM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

dsm_seg_t *dsm_seg_find(dsmd_t *d, const char *name)
{
    for (dsm_seg_t *s = d->segs; s; s = s->next)
        if (!s->removed && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

int dsm_seg_new(dsmd_t *d, const Cairn__Dsmd__Segment *rec, dsm_seg_t **ret,
                cairn_error_t *err)
{
    dsm_seg_t *s = calloc(1, sizeof *s);
    if (!s)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    s->memfd = -1;
    s->name = strdup(rec->name);
    s->size = rec->size;
    s->npages = rec->size / DSM_PAGE;
    s->pages = calloc(s->npages ? s->npages : 1, sizeof *s->pages);
    if (!s->name || !s->pages) {
        dsm_seg_free(d, s);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory for %" PRIu64
                               " pages", s->npages);
    }
    s->generation = rec->generation;
    s->uid = rec->uid;
    s->gid = rec->gid;
    s->mode = rec->mode;
    s->creator = rec->creator;
    s->memfd = memfd_create("cairn-dsm", MFD_CLOEXEC);
    if (s->memfd < 0 || ftruncate(s->memfd, (off_t)s->size) < 0) {
        int e = -errno;
        dsm_seg_free(d, s);
        return cairn_error_set(err, e, CAIRN_SYSTEM, "memfd of %" PRIu64 " bytes: %s",
                               rec->size, strerror(-e));
    }
    for (uint64_t i = 0; i < s->npages; i++) {
        s->pages[i].hint = rec->creator;
        s->pages[i].state = rec->creator == d->self ? DSM_WRITE : DSM_INVALID;
    }
    s->next = d->segs;
    d->segs = s;
    *ret = s;
    return 0;
}

static void s_pend_free(dsm_pending_t *p)
{
    while (p && p->waiters) {
        dsm_waiter_t *w = p->waiters;
        p->waiters = w->next;
        free(w);
    }
    free(p);
}

void dsm_seg_free(dsmd_t *d, dsm_seg_t *seg)
{
    if (!seg)
        return;
    for (dsm_seg_t **pp = &d->segs; *pp; pp = &(*pp)->next)
        if (*pp == seg) {
            *pp = seg->next;
            break;
        }
    for (uint64_t i = 0; seg->pages && i < seg->npages; i++)
        s_pend_free(seg->pages[i].pend);
    if (seg->memfd >= 0)
        close(seg->memfd);
    free(seg->pages);
    free(seg->name);
    free(seg);
}

dsm_pending_t *dsm_page_pend(dsm_page_t *pg)
{
    if (!pg->pend)
        pg->pend = calloc(1, sizeof *pg->pend);
    return pg->pend;
}

void dsm_page_settle(dsm_page_t *pg)
{
    dsm_pending_t *p = pg->pend;
    if (p && !p->waiters && !p->held && !p->asking && p->acks_left == 0) {
        free(p);
        pg->pend = NULL;
    }
}

void dsm_copyset_add(dsm_page_t *pg, uint32_t node)
{
    if (node < 64 * DSM_NODE_WORDS)
        pg->copyset[node / 64] |= 1ull << (node % 64);
}

bool dsm_copyset_has(const dsm_page_t *pg, uint32_t node)
{
    return node < 64 * DSM_NODE_WORDS && (pg->copyset[node / 64] >> (node % 64)) & 1;
}

/* ---- pages in the memfd -------------------------------------------------- */

int dsm_page_read(dsm_seg_t *seg, uint64_t page, void *buf)
{
    ssize_t n = pread(seg->memfd, buf, DSM_PAGE, (off_t)(page * DSM_PAGE));
    if (n < 0)
        return -errno;
    if ((size_t)n < DSM_PAGE)
        memset((char *)buf + n, 0, DSM_PAGE - (size_t)n);
    return 0;
}

int dsm_page_write(dsm_seg_t *seg, uint64_t page, const void *buf)
{
    ssize_t n = pwrite(seg->memfd, buf, DSM_PAGE, (off_t)(page * DSM_PAGE));
    if (n < 0)
        return -errno;
    return (size_t)n == DSM_PAGE ? 0 : -EIO;
}

int dsm_page_punch(dsm_seg_t *seg, uint64_t page)
{
    if (fallocate(seg->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(page * DSM_PAGE), DSM_PAGE) < 0)
        return -errno;
    return 0;
}

static int s_wp(int uffd, uint64_t addr, bool on)
{
    struct uffdio_writeprotect w = {
        .range = { addr, DSM_PAGE },
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    while (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0) {
        if (errno == ENOENT || errno == EFAULT || errno == ESRCH)
            return -ENOENT;   /* unmapped, or the process is gone */
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    }
    return 0;
}

int dsm_page_protect_all(dsm_seg_t *seg, uint64_t page, bool on)
{
    int first = 0;
    for (dsm_attach_t *at = seg->attached; at; at = at->next) {
        if (at->rdonly)
            continue;   /* never writable */
        int e = s_wp(at->uffd, at->addr + page * DSM_PAGE, on);
        if (e < 0 && e != -ENOENT && first == 0)
            first = e;
    }
    return first;
}

/* Puts a zeroed page in the memfd where there is none: a page nobody ever
 * wrote, owned here. */
static int s_materialize(dsm_seg_t *seg, uint64_t page)
{
    if (fallocate(seg->memfd, FALLOC_FL_KEEP_SIZE, (off_t)(page * DSM_PAGE), DSM_PAGE) < 0)
        return -errno;
    return 0;
}

static int s_wake(int uffd, uint64_t addr)
{
    struct uffdio_range r = { addr, DSM_PAGE };
    if (ioctl(uffd, UFFDIO_WAKE, &r) < 0)
        return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
    return 0;
}

int dsm_fault_answer(dsm_seg_t *seg, dsm_attach_t *at, uint64_t addr, uint64_t page)
{
    bool ro = seg->pages[page].state != DSM_WRITE && !at->rdonly;
    int e = s_materialize(seg, page);
    if (e < 0)
        return e;
    for (;;) {
        struct uffdio_continue c = {
            .range = { addr, DSM_PAGE },
            .mode = ro ? UFFDIO_CONTINUE_MODE_WP : 0,
        };
        if (ioctl(at->uffd, UFFDIO_CONTINUE, &c) == 0)
            return 0;
        if (errno == EINTR || errno == EAGAIN)
            continue;
        if (errno == EEXIST)
            /* mapped already: a write to a page that is writable now, or
             * two faults of one page */
            return ro || at->rdonly ? s_wake(at->uffd, addr) : s_wp(at->uffd, addr, false);
        if (errno == ENOENT || errno == EFAULT || errno == ESRCH)
            return -ENOENT;
        return -errno;
    }
}

int dsm_pages_map(dsm_attach_t *at, uint64_t first, uint64_t n, bool wp)
{
    uint64_t done = 0;
    wp = wp && !at->rdonly;   /* a read-only mapping has no write-protect mode */
    /* owned pages nobody wrote yet are holes: zeroed pages first */
    if (!wp && !at->rdonly && fallocate(at->seg->memfd, FALLOC_FL_KEEP_SIZE, (off_t)(first * DSM_PAGE),
                         (off_t)(n * DSM_PAGE)) < 0)
        return -errno;
    while (done < n) {
        struct uffdio_continue c = {
            .range = { at->addr + (first + done) * DSM_PAGE, (n - done) * DSM_PAGE },
            .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
        };
        if (ioctl(at->uffd, UFFDIO_CONTINUE, &c) == 0)
            return 0;
        if (errno == EINTR || errno == EAGAIN) {
            if (c.mapped > 0)
                done += (uint64_t)c.mapped / DSM_PAGE;
            continue;
        }
        if (errno != EEXIST)
            /* unmapped, the process gone, or a page not in the memfd (never
             * written): its own fault says what to do */
            return errno == ENOENT || errno == EFAULT || errno == ESRCH ? 0 : -errno;
        /* one page of the run is mapped there already: past it */
        done += (c.mapped > 0 ? (uint64_t)c.mapped / DSM_PAGE : 0) + 1;
    }
    return 0;
}

int dsm_pages_map_all(dsm_seg_t *seg, uint64_t first, uint64_t n)
{
    int err = 0;
    for (dsm_attach_t *at = seg->attached; at; at = at->next) {
        int e = dsm_pages_map(at, first, n, true);
        if (e < 0 && !err)
            err = e;
    }
    return err;
}

int dsm_fault_poison(dsm_attach_t *at, uint64_t addr)
{
    for (;;) {
        struct uffdio_poison p = { .range = { addr, DSM_PAGE } };
        if (ioctl(at->uffd, UFFDIO_POISON, &p) == 0)
            return 0;
        if (errno == EINTR || errno == EAGAIN)
            continue;
        if (errno == EEXIST)
            return s_wake(at->uffd, addr);   /* a lost page is punched: cannot be */
        return errno == ENOENT || errno == ESRCH ? -ENOENT : -errno;
    }
}

/* ---- attachments ---------------------------------------------------------- */

/* The faults of one process: one message per faulting page. */
static int s_on_uffd(cairn_loop_t *loop, int fd, void *zsock, short revents, void *userdata)
{
    (void)loop; (void)fd; (void)zsock; (void)revents;
    dsm_attach_t *at = userdata;
    struct uffd_msg m[16];
    ssize_t got = read(at->uffd, m, sizeof m);
    if (got <= 0)
        return 0;   /* EAGAIN; a dead process's fd reads 0 until its socket closes */
    for (size_t i = 0; i < (size_t)got / sizeof m[0]; i++) {
        if (m[i].event != UFFD_EVENT_PAGEFAULT)
            continue;
        uint64_t a = m[i].arg.pagefault.address & ~(uint64_t)(DSM_PAGE - 1);
        bool w = !at->rdonly &&
                 (m[i].arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP));
        dsm_fault(at->d, at, a, w);
    }
    return 0;
}

int dsm_attach_add(dsmd_t *d, dsm_seg_t *seg, int uffd, uint64_t addr, pid_t pid, bool rdonly,
                   struct dsm_conn *conn, dsm_attach_t **ret, cairn_error_t *err)
{
    dsm_attach_t *at = calloc(1, sizeof *at);
    if (!at) {
        close(uffd);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    at->d = d;
    at->seg = seg;
    at->uffd = uffd;
    at->addr = addr;
    at->pid = pid;
    at->rdonly = rdonly;
    at->conn = conn;
    int fl = fcntl(uffd, F_GETFL);
    if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = -errno;
        close(uffd);
        free(at);
        return cairn_error_set(err, e, CAIRN_SYSTEM, "userfaultfd: %s", strerror(-e));
    }
    at->watch = cairn_loop_add_fd(cairn_service_loop(d->svc), uffd, ZMQ_POLLIN, s_on_uffd, at);
    if (at->watch < 0) {
        int e = (int)at->watch;
        close(uffd);
        free(at);
        return cairn_error_set(err, e, CAIRN_SYSTEM, "watch: %s", strerror(-e));
    }
    at->next = seg->attached;
    seg->attached = at;
    *ret = at;
    return 0;
}

void dsm_attach_remove(dsmd_t *d, dsm_attach_t *at)
{
    dsm_seg_t *seg = at->seg;
    for (dsm_attach_t **pp = &seg->attached; *pp; pp = &(*pp)->next)
        if (*pp == at) {
            *pp = at->next;
            break;
        }
    for (uint64_t i = 0; i < seg->npages; i++) {
        dsm_pending_t *p = seg->pages[i].pend;
        for (dsm_waiter_t *w = p ? p->waiters : NULL; w; w = w->next)
            if (w->at == at)
                w->at = NULL;
    }
    cairn_loop_remove(cairn_service_loop(d->svc), at->watch);
    close(at->uffd);
    free(at);
    if (seg->removed && !seg->attached)
        dsm_seg_free(d, seg);
}

size_t dsm_seg_processes(const dsm_seg_t *seg)
{
    size_t n = 0;
    for (const dsm_attach_t *at = seg->attached; at; at = at->next)
        n++;
    return n;
}
