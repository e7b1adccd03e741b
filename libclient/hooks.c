/* hooks.c - the hooks interface (cairn/hooks.h): the backend's choice,
 * argument checks, and what both backends share.
 *
 * Design. The backends only move faults and events between the kernel
 * and the caller; this file keeps what the interface promises on top:
 * every fault read is remembered as pending until answered, so that
 * several threads faulting on one page are reported once (userfaultfd
 * sends one message per thread, the module one per page) and, for the
 * user backend, a fault that waits past the region's timeout is failed
 * (SIGBUS) by the next dispatch -- userfaultfd has no deadline of its
 * own. The pending list holds at most one entry per sleeping thread, so
 * a linear search is enough.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hooks-private.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_BATCH 32

static int s_env_backend(cairn_hooks_backend_t *ret, cairn_error_t *err)
{
    const char *e = getenv("CAIRN_HOOKS");
    if (!e || !*e) {
        *ret = access(CAIRN_DEVICE_PATH, F_OK) == 0 ? CAIRN_HOOKS_KMOD : CAIRN_HOOKS_USER;
        return 0;
    }
    if (strcmp(e, "user") == 0)
        *ret = CAIRN_HOOKS_USER;
    else if (strcmp(e, "kmod") == 0)
        *ret = CAIRN_HOOKS_KMOD;
    else
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "CAIRN_HOOKS=%s: expected kmod or user", e);
    return 0;
}

int cairn_hooks_open(cairn_hooks_t **ret, cairn_error_t *err)
{
    cairn_hooks_backend_t b = CAIRN_HOOKS_USER;
    int r = s_env_backend(&b, err);
    return r < 0 ? r : cairn_hooks_open_backend(b, ret, err);
}

int cairn_hooks_open_backend(cairn_hooks_backend_t b, cairn_hooks_t **ret, cairn_error_t *err)
{
    if (!ret || (b != CAIRN_HOOKS_USER && b != CAIRN_HOOKS_KMOD))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no such hooks backend");
    int fd = -1;
    if (b == CAIRN_HOOKS_KMOD) {
        int r = hooks_kmod_open(&fd, err);
        if (r < 0)
            return r;
    }
    cairn_hooks_t *h = calloc(1, sizeof(*h));
    if (!h) {
        if (fd >= 0)
            close(fd);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    h->backend = b;
    h->dev_fd = fd;
    *ret = h;
    return 0;
}

cairn_hooks_t *cairn_hooks_free(cairn_hooks_t *h)
{
    if (h) {
        if (h->dev_fd >= 0)
            close(h->dev_fd);
        free(h);
    }
    return NULL;
}

cairn_hooks_backend_t cairn_hooks_backend(const cairn_hooks_t *h)
{
    return h->backend;
}

const char *cairn_hooks_backend_name(cairn_hooks_backend_t b)
{
    return b == CAIRN_HOOKS_KMOD ? "kmod" : b == CAIRN_HOOKS_USER ? "user" : "unknown";
}

/* ---- regions ------------------------------------------------------------ */

int cairn_region_new(cairn_hooks_t *h, size_t size, unsigned timeout_ms,
                     cairn_region_t **ret, cairn_error_t *err)
{
    if (!h || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no hooks or no result");
    if (size == 0 || size % CAIRN_HOOKS_PAGE || size > CAIRN_REGION_SIZE_MAX)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "region size %zu: a multiple of %u up to %llu", size,
                               CAIRN_HOOKS_PAGE, (unsigned long long)CAIRN_REGION_SIZE_MAX);
    if (timeout_ms == 0 || timeout_ms > CAIRN_REGION_TIMEOUT_MAX_MS)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "region timeout %u ms: 1..%u", timeout_ms,
                               CAIRN_REGION_TIMEOUT_MAX_MS);
    _cleanup_free_ cairn_region_t *r = calloc(1, sizeof(*r));
    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    r->size = size;
    r->timeout_ms = timeout_ms;
    r->fd = r->mem_fd = -1;
    int e = h->backend == CAIRN_HOOKS_KMOD ? hooks_kmod_region(h, r, err)
                                           : hooks_uffd_region(h, r, err);
    if (e < 0)
        return e;
    pthread_mutex_init(&r->lock, NULL);
    *ret = TAKE_PTR(r);
    return 0;
}

cairn_region_t *cairn_region_free(cairn_region_t *r)
{
    if (r) {
        r->ops->close(r);
        pthread_mutex_destroy(&r->lock);
        free(r->pending);
        free(r);
    }
    return NULL;
}

void *cairn_region_addr(const cairn_region_t *r)
{
    return r->addr;
}

size_t cairn_region_size(const cairn_region_t *r)
{
    return r->size;
}

int cairn_region_fd(const cairn_region_t *r)
{
    return r->fd;
}

static ssize_t s_pending_find(const cairn_region_t *r, uint64_t key)
{
    for (size_t i = 0; i < r->n_pending; i++)
        if (r->pending[i].key == key)
            return (ssize_t)i;
    return -1;
}

/* Forgets the pending faults of the page at off (both kinds); under lock. */
static void s_pending_clear(cairn_region_t *r, uint64_t off)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_pending; i++)
        if ((r->pending[i].key & ~(uint64_t)1) != off)
            r->pending[k++] = r->pending[i];
    r->n_pending = k;
}

/* Notes a fault read: false if one on that page is pending already. */
static bool s_pending_add(cairn_region_t *r, const cairn_fault_t *f)
{
    uint64_t key = f->offset | ((f->flags & CAIRN_HOOKS_FAULT_WP) ? 1 : 0);
    pthread_mutex_lock(&r->lock);
    bool fresh = s_pending_find(r, key) < 0;
    if (fresh && CAIRN_GROW(r->pending, r->cap_pending, r->n_pending + 1, 8) == 0)
        r->pending[r->n_pending++] = (hooks_pending_t){ key, cairn_now_ns() };
    /* out of memory: reported anyway, only without merging or deadline */
    if (fresh) {
        r->st.faults++;
        r->st.wp_faults += (f->flags & CAIRN_HOOKS_FAULT_WP) ? 1 : 0;
    }
    pthread_mutex_unlock(&r->lock);
    return fresh;
}

/* Fails the faults that waited past the deadline (user backend). */
static void s_expire(cairn_region_t *r)
{
    if (!r->ops->expires)
        return;
    uint64_t limit = cairn_now_ns() - (uint64_t)r->timeout_ms * 1000000u;
    for (;;) {
        uint64_t off = UINT64_MAX;
        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < r->n_pending && off == UINT64_MAX; i++)
            if (r->pending[i].since_ns < limit)
                off = r->pending[i].key & ~(uint64_t)1;
        if (off != UINT64_MAX)
            r->st.timed_out++;
        pthread_mutex_unlock(&r->lock);
        if (off == UINT64_MAX)
            return;
        cairn_region_fail(r, off, -ETIMEDOUT);
    }
}

/* The poll timeout that wakes for the oldest pending fault's deadline. */
static int s_wait_ms(cairn_region_t *r, int timeout_ms)
{
    if (!r->ops->expires)
        return timeout_ms;
    uint64_t oldest = UINT64_MAX;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n_pending; i++)
        if (r->pending[i].since_ns < oldest)
            oldest = r->pending[i].since_ns;
    pthread_mutex_unlock(&r->lock);
    if (oldest == UINT64_MAX)
        return timeout_ms;
    uint64_t due = oldest + (uint64_t)r->timeout_ms * 1000000u, now = cairn_now_ns();
    int left = due > now ? (int)((due - now) / 1000000u) + 1 : 0;
    return timeout_ms < 0 || left < timeout_ms ? left : timeout_ms;
}

int cairn_region_dispatch(cairn_region_t *r, int timeout_ms, cairn_fault_fn fn, void *userdata)
{
    if (!r || !fn)
        return -EINVAL;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cairn_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        cairn_fault_t f[S_BATCH];
        int n = r->ops->read(r, f, S_BATCH);
        if (n < 0)
            return n;
        int called = 0;
        for (int i = 0; i < n; i++) {
            if (!s_pending_add(r, &f[i]))
                continue;
            called++;
            int e = fn(r, &f[i], userdata);
            if (e < 0)
                return e;
        }
        s_expire(r);
        if (called > 0)
            return called;
        if (n > 0)
            continue;   /* only repeats of pending faults: read again */
        int left = timeout_ms < 0 ? -1 : (int)cairn_ms_left(deadline);
        if (timeout_ms >= 0 && left == 0)
            return 0;
        struct pollfd p = { .fd = r->fd, .events = POLLIN };
        int w = poll(&p, 1, s_wait_ms(r, left));
        if (w < 0 && errno != EINTR)
            return -errno;
        if (w > 0 && (p.revents & (POLLERR | POLLNVAL)))
            return -EIO;
    }
}

static int s_check_off(const cairn_region_t *r, uint64_t off, uint64_t len)
{
    if (!r || off % CAIRN_HOOKS_PAGE || len % CAIRN_HOOKS_PAGE || off >= r->size ||
        len > r->size - off)
        return -EINVAL;
    return 0;
}

/* After an answer: the page's faults are no longer pending. */
static int s_answered(cairn_region_t *r, uint64_t off, int e, uint64_t *counter)
{
    pthread_mutex_lock(&r->lock);
    if (e == 0 || e == -EEXIST)
        s_pending_clear(r, off);
    if (e == 0)
        (*counter)++;
    pthread_mutex_unlock(&r->lock);
    return e;
}

int cairn_region_serve(cairn_region_t *r, uint64_t offset, const void *src, unsigned flags)
{
    int e = s_check_off(r, offset, CAIRN_HOOKS_PAGE);
    if (e < 0 || !src || (flags & ~CAIRN_HOOKS_SERVE_RDONLY))
        return -EINVAL;
    return s_answered(r, offset, r->ops->serve(r, offset, src, flags), &r->st.served);
}

int cairn_region_upgrade(cairn_region_t *r, uint64_t offset)
{
    int e = s_check_off(r, offset, CAIRN_HOOKS_PAGE);
    if (e < 0)
        return e;
    uint64_t ignored = 0;
    return s_answered(r, offset, r->ops->upgrade(r, offset), &ignored);
}

int cairn_region_fail(cairn_region_t *r, uint64_t offset, int error)
{
    int e = s_check_off(r, offset, CAIRN_HOOKS_PAGE);
    if (e < 0 || error >= 0)
        return -EINVAL;
    return s_answered(r, offset, r->ops->fail(r, offset, error), &r->st.failed);
}

int cairn_region_drop(cairn_region_t *r, uint64_t offset, uint64_t len)
{
    int e = s_check_off(r, offset, len);
    return e < 0 || len == 0 ? -EINVAL : r->ops->drop(r, offset, len);
}

int cairn_region_protect(cairn_region_t *r, uint64_t offset, uint64_t len)
{
    int e = s_check_off(r, offset, len);
    return e < 0 || len == 0 ? -EINVAL : r->ops->protect(r, offset, len);
}

void cairn_region_stats(const cairn_region_t *r, cairn_region_stats_t *ret)
{
    pthread_mutex_lock((pthread_mutex_t *)&r->lock);
    *ret = r->st;
    pthread_mutex_unlock((pthread_mutex_t *)&r->lock);
}

/* ---- process events ---------------------------------------------------- */

int cairn_proc_watch_new(cairn_hooks_t *h, cairn_proc_watch_t **ret, cairn_error_t *err)
{
    if (!h || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no hooks or no result");
    _cleanup_free_ cairn_proc_watch_t *w = calloc(1, sizeof(*w));
    if (!w)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    w->fd = -1;
    int e = h->backend == CAIRN_HOOKS_KMOD ? hooks_kmod_watch(h, w, err)
                                           : hooks_cnproc_watch(h, w, err);
    if (e < 0)
        return e;
    *ret = TAKE_PTR(w);
    return 0;
}

cairn_proc_watch_t *cairn_proc_watch_free(cairn_proc_watch_t *w)
{
    if (w) {
        w->ops->close(w);
        free(w);
    }
    return NULL;
}

static int s_sub_room(cairn_proc_watch_t *w, cairn_error_t *err)
{
    if (w->n_subs >= CAIRN_PROC_SUBS_MAX)
        return cairn_error_set(err, -ENOSPC, CAIRN_TOO_LARGE,
                               "a watch takes at most %d subscriptions", CAIRN_PROC_SUBS_MAX);
    return 0;
}

int cairn_proc_watch_pid(cairn_proc_watch_t *w, pid_t pid, bool tree, cairn_error_t *err)
{
    if (!w || pid <= 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "pid %d", (int)pid);
    int e = s_sub_room(w, err);
    if (e == 0 && (e = w->ops->pid(w, pid, tree, err)) == 0)
        w->n_subs++;
    return e;
}

int cairn_proc_watch_cgroup(cairn_proc_watch_t *w, const char *path, cairn_error_t *err)
{
    if (!w || !path || !*path)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no cgroup path");
    int e = s_sub_room(w, err);
    if (e == 0 && (e = w->ops->cgroup(w, path, err)) == 0)
        w->n_subs++;
    return e;
}

int cairn_proc_watch_fd(const cairn_proc_watch_t *w)
{
    return w->fd;
}

int cairn_proc_watch_read(cairn_proc_watch_t *w, cairn_proc_event_t *ev, size_t n,
                          int timeout_ms)
{
    if (!w || !ev || n == 0)
        return -EINVAL;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cairn_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int got = w->ops->read(w, ev, n);
        if (got != 0) {
            if (got > 0)
                w->st.delivered += (uint64_t)got;
            return got;
        }
        int left = timeout_ms < 0 ? -1 : (int)cairn_ms_left(deadline);
        if (timeout_ms >= 0 && left == 0)
            return 0;
        struct pollfd p = { .fd = w->fd, .events = POLLIN };
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            return -errno;
    }
}

void cairn_proc_watch_stats(const cairn_proc_watch_t *w, cairn_proc_stats_t *ret)
{
    *ret = w->st;
}
