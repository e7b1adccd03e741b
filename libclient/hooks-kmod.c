/* hooks-kmod.c - the kmod backend: /dev/cairn (kmod/, its UAPI in
 * kmod/include/uapi/linux/cairn.h).
 *
 * Design. A thin translation: a region is CAIRN_IOC_REGION_CREATE on the
 * hooks' /dev/cairn file and an mmap of it at the returned offset; its
 * server fd is the region's fd (faults are read() from it as struct
 * cairn_fault), answers are CAIRN_IOC_SERVE / FAIL / DROP. The module
 * keeps the deadline and merges concurrent faults itself. A watch is a
 * /dev/cairn file of its own (a reader), subscribed with
 * CAIRN_IOC_SUBSCRIBE; its CAIRN_EV_OVERFLOW records become LOST.
 *
 * Versions only add ioctls, so any module of version 1 or later is spoken
 * to; protect is CAIRN_IOC_PROTECT (version 2), -EOPNOTSUPP on a version 1
 * module (ENOTTY). The module filters by cgroup v2 id only, so a cgroup v1
 * path is -EOPNOTSUPP.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../kmod/include/uapi/linux/cairn.h"
#include "hooks-private.h"

_Static_assert(CAIRN_HOOKS_FAULT_WRITE == CAIRN_FAULT_WRITE && CAIRN_HOOKS_FAULT_WP == CAIRN_FAULT_WP,
               "fault flags are the UAPI's");
_Static_assert(CAIRN_PROC_FORK == CAIRN_EV_FORK && CAIRN_PROC_EXEC == CAIRN_EV_EXEC &&
               CAIRN_PROC_EXIT == CAIRN_EV_EXIT && CAIRN_PROC_LOST == CAIRN_EV_OVERFLOW,
               "event types are the UAPI's");
_Static_assert(CAIRN_REGION_SIZE_MAX == CAIRN_REGION_MAX_SIZE &&
               CAIRN_REGION_TIMEOUT_MAX_MS == CAIRN_TIMEOUT_MAX_MS &&
               CAIRN_PROC_SUBS_MAX == CAIRN_SUB_MAX, "limits are the UAPI's");

int hooks_kmod_open(int *ret_fd, cairn_error_t *err)
{
    int fd = open(CAIRN_DEVICE, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return cairn_error_set(err, errno == ENOENT ? -ENODEV : -errno, CAIRN_UNAVAILABLE,
                               "%s: %s (is cairn.ko loaded?)", CAIRN_DEVICE, strerror(errno));
    __u32 v = 0;
    if (ioctl(fd, CAIRN_IOC_VERSION, &v) < 0 || v < 1) {
        int e = errno;
        close(fd);
        return cairn_error_set(err, -EPROTO, CAIRN_BAD_VERSION,
                               "%s speaks API version %u, libcairn 1..%d%s%s", CAIRN_DEVICE, v,
                               CAIRN_API_VERSION, v ? "" : ": ", v ? "" : strerror(e));
    }
    *ret_fd = fd;
    return 0;
}

/* ---- regions ------------------------------------------------------------ */

static int s_ioctl(int fd, unsigned long req, void *arg)
{
    while (ioctl(fd, req, arg) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static int s_read(cairn_region_t *r, cairn_fault_t *f, size_t n)
{
    struct cairn_fault k[32];
    if (n > 32)
        n = 32;
    ssize_t got = read(r->fd, k, n * sizeof(k[0]));
    if (got < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    size_t m = (size_t)got / sizeof(k[0]);
    for (size_t i = 0; i < m; i++)
        f[i] = (cairn_fault_t){ .offset = k[i].offset, .addr = k[i].addr,
                                .flags = k[i].flags, .tid = k[i].tid };
    return (int)m;
}

static int s_serve(cairn_region_t *r, uint64_t off, const void *src, unsigned flags)
{
    struct cairn_serve s = { .offset = off, .src = (__u64)(uintptr_t)src,
                             .flags = (flags & CAIRN_HOOKS_SERVE_RDONLY) ? CAIRN_SERVE_RDONLY : 0 };
    return s_ioctl(r->fd, CAIRN_IOC_SERVE, &s);
}

static int s_upgrade(cairn_region_t *r, uint64_t off)
{
    struct cairn_serve s = { .offset = off, .flags = CAIRN_SERVE_UPGRADE };
    return s_ioctl(r->fd, CAIRN_IOC_SERVE, &s);
}

static int s_fail(cairn_region_t *r, uint64_t off, int error)
{
    struct cairn_fail f = { .offset = off, .error = error };
    return s_ioctl(r->fd, CAIRN_IOC_FAIL, &f);
}

static int s_drop(cairn_region_t *r, uint64_t off, uint64_t len)
{
    struct cairn_drop d = { .offset = off, .len = len };
    return s_ioctl(r->fd, CAIRN_IOC_DROP, &d);
}

static int s_protect(cairn_region_t *r, uint64_t off, uint64_t len)
{
    struct cairn_drop d = { .offset = off, .len = len };
    int e = s_ioctl(r->fd, CAIRN_IOC_PROTECT, &d);
    return e == -ENOTTY ? -EOPNOTSUPP : e;
}

static void s_close(cairn_region_t *r)
{
    if (r->addr)
        munmap(r->addr, r->size);
    if (r->fd >= 0)
        close(r->fd);
}

static const hooks_region_ops_t s_region_ops = {
    .read = s_read, .serve = s_serve, .upgrade = s_upgrade, .fail = s_fail,
    .drop = s_drop, .protect = s_protect, .close = s_close, .expires = false,
};

int hooks_kmod_region(cairn_hooks_t *h, cairn_region_t *r, cairn_error_t *err)
{
    struct cairn_region cr = { .size = r->size, .timeout_ms = r->timeout_ms };
    int fd = ioctl(h->dev_fd, CAIRN_IOC_REGION_CREATE, &cr);
    if (fd < 0)
        return cairn_error_set(err, -errno, errno == ENOSPC ? CAIRN_TOO_LARGE : CAIRN_SYSTEM,
                               "CAIRN_IOC_REGION_CREATE of %zu bytes: %s", (size_t)r->size,
                               strerror(errno));
    int fl = fcntl(fd, F_GETFL);
    void *a = fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0
                  ? MAP_FAILED
                  : mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, h->dev_fd,
                         (off_t)cr.map_offset);
    if (a == MAP_FAILED) {
        int e = errno;
        close(fd);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "mmap of the region: %s", strerror(e));
    }
    r->ops = &s_region_ops;
    r->addr = a;
    r->fd = fd;
    return 0;
}

/* ---- process events ------------------------------------------------------ */

static int s_ev_read(cairn_proc_watch_t *w, cairn_proc_event_t *ev, size_t n)
{
    struct cairn_event k[64];
    if (n > 64)
        n = 64;
    ssize_t got = read(w->fd, k, n * sizeof(k[0]));
    if (got < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    size_t m = (size_t)got / sizeof(k[0]);
    for (size_t i = 0; i < m; i++) {
        ev[i] = (cairn_proc_event_t){
            .type = k[i].type, .flags = (k[i].flags & CAIRN_EVF_THREAD) ? CAIRN_PROC_THREAD : 0,
            .pid = (pid_t)k[i].pid, .tid = (pid_t)k[i].tid, .ppid = (pid_t)k[i].ppid,
            .exit_code = k[i].exit_code, .time_ns = k[i].time_ns, .lost = k[i].lost,
        };
        memcpy(ev[i].comm, k[i].comm, sizeof(ev[i].comm));
        ev[i].comm[sizeof(ev[i].comm) - 1] = '\0';
        w->st.lost += k[i].type == CAIRN_EV_OVERFLOW ? k[i].lost : 0;
    }
    return (int)m;
}

static int s_sub(cairn_proc_watch_t *w, __u32 kind, __u32 flags, __u64 id, cairn_error_t *err)
{
    struct cairn_subscribe s = { .kind = kind, .flags = flags, .id = id };
    int e = s_ioctl(w->fd, CAIRN_IOC_SUBSCRIBE, &s);
    return e < 0 ? cairn_error_set(err, e, e == -ESRCH ? CAIRN_NOT_FOUND : CAIRN_SYSTEM,
                                   "CAIRN_IOC_SUBSCRIBE: %s", strerror(-e))
                 : 0;
}

static int s_ev_pid(cairn_proc_watch_t *w, pid_t pid, bool tree, cairn_error_t *err)
{
    return s_sub(w, CAIRN_SUB_PID, tree ? CAIRN_SUBF_TREE : 0, (__u64)pid, err);
}

static int s_ev_cgroup(cairn_proc_watch_t *w, const char *path, cairn_error_t *err)
{
    struct statfs sf;
    struct stat st;
    if (statfs(path, &sf) < 0 || stat(path, &st) < 0)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no cgroup %s", path);
    if (sf.f_type != CGROUP2_SUPER_MAGIC)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "%s: the module follows cgroup v2 only", path);
    return s_sub(w, CAIRN_SUB_CGROUP, 0, (__u64)st.st_ino, err);
}

static void s_ev_close(cairn_proc_watch_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
}

static const hooks_proc_ops_t s_proc_ops = {
    .read = s_ev_read, .pid = s_ev_pid, .cgroup = s_ev_cgroup, .close = s_ev_close,
};

int hooks_kmod_watch(cairn_hooks_t *h, cairn_proc_watch_t *w, cairn_error_t *err)
{
    int e = hooks_kmod_open(&w->fd, err);
    if (e < 0)
        return e;
    w->ops = &s_proc_ops;
    return 0;
}
