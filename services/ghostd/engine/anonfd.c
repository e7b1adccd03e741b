/* anonfd.c - eventfd, timerfd, signalfd, epoll and inotify fds (anonfd.h).
 *
 * Dump: the fd's fdinfo is read whole and the lines of its kind parsed
 * (formats of fs/eventfd.c, fs/timerfd.c, fs/signalfd.c, fs/eventpoll.c,
 * fs/notify/fdinfo.c); a timer's time comes from timerfd_gettime on a
 * pidfd_getfd copy, an inotify watch's path from its file handle.
 * Restore: eventfd() then a write of the count (the
 * initial value is only 32 bits wide); timerfd_create, timerfd_settime,
 * then TFD_IOC_SET_TICKS (settime clears the ticks); signalfd; an empty
 * epoll_create1, filled by ghost_anon_add_targets once its process has
 * all its fds; inotify_init1 and each watch by its path, with its number.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* open_by_handle_at */
#endif
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "anonfd.h"
#include "proc/proc.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* ---- dump -------------------------------------------------------------- */

void ghost_anon_free(ghost_anon_t *a)
{
    if (!a)
        return;
    free(a->tv);
    free(a->tp);
    for (size_t i = 0; i < a->nw; i++)
        free(a->wv[i].path);
    free(a->wv);
    free(a->wp);
    a->tv = NULL;
    a->tp = NULL;
    a->wv = NULL;
    a->wp = NULL;
    a->nw = 0;
}

static int s_anon_bad(pid_t pid, int fd, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d: its fdinfo does not tell %s", (int)pid, fd,
                           what);
}

/* A descriptor of our own on the open file of fd in pid (pid 0: this
 * process): pidfd_getfd, which a tracer may use. -errno with err set. */
int ghost_anon_grab_fd(pid_t pid, int fd, cairn_error_t *err)
{
    int pfd = pid ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    int got = pid ? (pfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pfd, fd, 0)) : dup(fd);
    int e = errno;
    if (pfd >= 0)
        close(pfd);
    if (got < 0)
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "process %d fd %d: pidfd_getfd: %s",
                               (int)pid, fd, strerror(e));
    return got;
}

/* One 8-byte read or write of the eventfd e, once poll says it would not
 * block (100 ms: nobody else should be using it): 0, or -1 with errno. */
static int s_eventfd_io(int e, bool wr, uint64_t *v)
{
    struct pollfd p = { .fd = e, .events = wr ? POLLOUT : POLLIN };
    int n = poll(&p, 1, 100);
    if (n == 0)
        errno = EAGAIN;
    if (n <= 0)
        return -1;
    return (wr ? write(e, v, 8) : read(e, v, 8)) == 8 ? 0 : -1;
}

/* Whether the eventfd (count now `count`) is a semaphore, probed on a copy
 * of its open file (anonfd.h): its count is the same afterwards. */
static int s_probe_semaphore(pid_t pid, int fd, uint64_t count, bool *ret,
                             cairn_error_t *err)
{
    if (count > UINT64_MAX - 3)
        return s_anon_bad(pid, fd, "whether the eventfd is a semaphore, and its count "
                          "is too close to the limit to probe it", err);
    int e = ghost_anon_grab_fd(pid, fd, err);
    if (e < 0)
        return e;
    uint64_t two = 2, got = 0, one = 0;
    int r = s_eventfd_io(e, true, &two) < 0 || s_eventfd_io(e, false, &got) < 0 ? -1 : 0;
    if (r == 0 && got == 1)   /* a semaphore: count + 1 left, take one more */
        r = s_eventfd_io(e, false, &one);
    else if (r == 0 && got == count + 2)   /* a counter, emptied: put it back */
        r = count ? s_eventfd_io(e, true, &count) : 0;
    else if (r == 0)
        r = -1, errno = EBUSY;   /* someone else read or wrote it meanwhile */
    int saved = errno;
    close(e);
    if (r < 0)
        return cairn_error_set(err, -saved, CAIRN_SYSTEM, "process %d fd %d: probing whether "
                               "the eventfd is a semaphore (fdinfo does not say before "
                               "Linux 6.2): %s", (int)pid, fd, strerror(saved));
    *ret = got == 1;
    return 0;
}

static int s_anon_eventfd(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                          ghost_anon_t *a, cairn_error_t *err)
{
    const char *count = proc_field(text, "eventfd-count"), *sem = proc_field(text, "eventfd-semaphore");
    unsigned long long v;
    int said = 0;
    bool told = sem && sscanf(sem, "%d", &said) == 1, semaphore = said != 0;
    if (!count || sscanf(count, "%llx", &v) != 1)
        return s_anon_bad(pid, fd, "the eventfd's count", err);
    /* Kernels before 6.2 do not say whether it counts as a semaphore. */
    if ((!told && a->frozen) || a->force_probe) {
        int r = s_probe_semaphore(pid, fd, v, &semaphore, err);
        if (r < 0)
            return r;
    }
    cairn__ghost__event_fd__init(&a->ev);
    a->ev.count = v;
    a->ev.semaphore = semaphore;
    f->eventfd = &a->ev;
    return 0;
}

/* fdinfo alone would miss the expirations of a periodic timer that fired
 * and was not read since: the kernel counts them (forwarding the timer)
 * only when it is read or asked for its time, and until then shows no
 * time left. So the time comes from timerfd_gettime on the same open file
 * -- which does that count, as the process's own next read would -- and
 * the ticks from fdinfo after it. */
static int s_anon_timerfd(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                          ghost_anon_t *a, cairn_error_t *err)
{
    (void)text;
    struct itimerspec its;
    int t = ghost_anon_grab_fd(pid, fd, err);
    if (t < 0)
        return t;
    int r = timerfd_gettime(t, &its) < 0 ? -errno : 0;
    close(t);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "process %d fd %d: timerfd_gettime: %s",
                               (int)pid, fd, strerror(-r));
    char *now = NULL;
    r = proc_read_fdinfo_text(pid, fd, &now, err);
    if (r < 0)
        return r;
    const char *clk = proc_field(now, "clockid"), *ticks = proc_field(now, "ticks"),
               *fl = proc_field(now, "settime flags");
    int clockid;
    unsigned flags;
    unsigned long long n;
    bool ok = clk && ticks && fl && sscanf(clk, "%d", &clockid) == 1 &&
              sscanf(ticks, "%llu", &n) == 1 && sscanf(fl, "%o", &flags) == 1;
    free(now);
    if (!ok)
        return s_anon_bad(pid, fd, "the timerfd's clock, ticks and flags", err);
    cairn__ghost__timer_fd__init(&a->tf);
    a->tf.clockid = clockid;
    a->tf.ticks = n;
    a->tf.settime_flags = (int32_t)flags;
    a->tf.value_ns = (uint64_t)its.it_value.tv_sec * 1000000000ull + (uint64_t)its.it_value.tv_nsec;
    a->tf.interval_ns =
        (uint64_t)its.it_interval.tv_sec * 1000000000ull + (uint64_t)its.it_interval.tv_nsec;
    f->timerfd = &a->tf;
    return 0;
}

static int s_anon_signalfd(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                           ghost_anon_t *a, cairn_error_t *err)
{
    const char *mask = proc_field(text, "sigmask");
    unsigned long long m;
    if (!mask || sscanf(mask, "%llx", &m) != 1)
        return s_anon_bad(pid, fd, "the signalfd's mask", err);
    cairn__ghost__signal_fd__init(&a->sf);
    a->sf.mask = m;
    f->signalfd = &a->sf;
    return 0;
}

/* A kernel dev_t as fdinfo prints it (sdev: 12-bit major above a 20-bit
 * minor) as a user-space dev_t. */
dev_t ghost_anon_kernel_dev(unsigned kdev)
{
    return makedev(kdev >> 20, kdev & 0xfffff);
}

/* The fd of process pid holding the file epoll fd watches as its
 * toff-th item added as tfd (kcmp KCMP_EPOLL_TFD over the process's fds;
 * only files on inode ino are asked): the fd, or -1 if none does (the
 * file is held by another process only). */
static int s_epoll_holder(pid_t pid, int fd, int tfd, unsigned toff, unsigned long ino)
{
    struct kcmp_epoll_slot slot = { .efd = (uint32_t)fd, .tfd = (uint32_t)tfd, .toff = toff };
    int *fds = NULL, found = -1;
    size_t n = 0;
    if (proc_list_dir(pid, "fd", &fds, &n, NULL) < 0)
        return -1;
    for (size_t i = 0; i < n && found < 0; i++) {
        char name[32], path[64];
        struct stat st;
        snprintf(name, sizeof(name), "fd/%d", fds[i]);
        proc_path(path, sizeof(path), pid, name);
        if (fds[i] != fd && stat(path, &st) == 0 && st.st_ino == ino &&
            syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fds[i], &slot) == 0)
            found = fds[i];
    }
    free(fds);
    return found;
}

/* The fd an epoll target was added with (tfd, its toff-th item of that
 * number) must name its file in this process, or another fd must: the
 * restore adds it through that fd's file put at number tfd for the
 * moment (t->moved, t->file_fd). fdinfo gives the file's inode and its
 * superblock's kernel dev_t. */
static int s_epoll_target_ok(pid_t pid, int fd, int tfd, unsigned toff, unsigned long ino,
                             unsigned kdev, Cairn__Ghost__EpollTarget *t, cairn_error_t *err)
{
    char name[32], path[64];
    struct stat st;
    snprintf(name, sizeof(name), "fd/%d", tfd);
    proc_path(path, sizeof(path), pid, name);
    struct kcmp_epoll_slot slot = { .efd = (uint32_t)fd, .tfd = (uint32_t)tfd, .toff = toff };
    if (stat(path, &st) == 0 && st.st_ino == ino && st.st_dev == ghost_anon_kernel_dev(kdev) &&
        syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, tfd, &slot) == 0)
        return 0;
    int holder = s_epoll_holder(pid, fd, tfd, toff, ino);
    if (holder >= 0) {
        t->moved = true;
        t->file_fd = holder;
        return 0;
    }
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d: the epoll instance watches a file added "
                           "as fd %d, which no fd of the process holds now (held by "
                           "another process only)", (int)pid, fd, tfd);
}

static int s_anon_epoll(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                        ghost_anon_t *a, cairn_error_t *err)
{
    size_t n = proc_field_count(text, "tfd");
    a->tv = calloc(n ? n : 1, sizeof(*a->tv));
    a->tp = calloc(n ? n : 1, sizeof(*a->tp));
    if (!a->tv || !a->tp)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__epoll__init(&a->ep);
    size_t k = 0;
    for (const char *l = proc_field(text, "tfd"); l && k < n; l = proc_field(l, "tfd"), k++) {
        int tfd;
        unsigned events, kdev;
        unsigned long long data;
        long long pos;
        unsigned long ino;
        if (sscanf(l, "%d events: %x data: %llx pos:%lli ino:%lx sdev:%x", &tfd, &events,
                   &data, &pos, &ino, &kdev) != 6)
            return s_anon_bad(pid, fd, "an epoll target's fd, events and data", err);
        unsigned toff = 0;   /* earlier items added with the same number */
        for (size_t j = 0; j < k; j++)
            toff += a->tv[j].fd == tfd;
        cairn__ghost__epoll_target__init(&a->tv[k]);
        int r = s_epoll_target_ok(pid, fd, tfd, toff, ino, kdev, &a->tv[k], err);
        if (r < 0)
            return r;
        a->tv[k].fd = tfd;
        a->tv[k].events = events;
        a->tv[k].data = data;
        a->tp[k] = &a->tv[k];
    }
    a->ep.targets = a->tp;
    a->ep.n_targets = k;
    f->epoll = &a->ep;
    return 0;
}

/* An fd on the root of a mount of the filesystem with kernel dev_t kdev,
 * as process pid sees it (its mountinfo, under /proc/PID/root): what
 * open_by_handle_at needs to find an inode of that filesystem. -1 if none. */
static int s_mount_fd(pid_t pid, unsigned kdev)
{
    char *info = NULL, want[32], seen_from[64];   /* the process's root */
    if (proc_read_file(pid, "mountinfo", &info, NULL, NULL) < 0)
        return -1;
    proc_path(seen_from, sizeof(seen_from), pid, "root");
    snprintf(want, sizeof(want), "%u:%u", major(ghost_anon_kernel_dev(kdev)), minor(ghost_anon_kernel_dev(kdev)));
    int fd = -1;
    for (char *save = NULL, *l = strtok_r(info, "\n", &save); l && fd < 0;
         l = strtok_r(NULL, "\n", &save)) {
        char devs[32], root[PATH_MAX], point[PATH_MAX], path[PATH_MAX + 64];
        if (sscanf(l, "%*d %*d %31s %4095s %4095s", devs, root, point) != 3 ||
            strcmp(devs, want) != 0 || strcmp(root, "/") != 0)
            continue;
        snprintf(path, sizeof(path), "%s%s", seen_from, point);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);   /* not O_PATH: EBADF */
    }
    free(info);
    return fd;
}

/* The path of the inode a file handle names (hex bytes), on the
 * filesystem kdev: into out, 0; -1 if it has none (deleted, or on no
 * mount the process sees). */
int ghost_anon_handle_path(pid_t pid, unsigned kdev, unsigned type, const char *hex,
                           unsigned bytes, char *out, size_t size)
{
    bool sane = bytes <= MAX_HANDLE_SZ && strlen(hex) == 2 * (size_t)bytes;
    struct file_handle *h = sane ? malloc(sizeof(*h) + bytes) : NULL;
    int mfd = h ? s_mount_fd(pid, kdev) : -1, r = -1;
    if (mfd >= 0) {
        h->handle_bytes = bytes;
        h->handle_type = (int)type;
        unsigned i = 0;
        for (; i < bytes && sscanf(hex + 2 * i, "%2hhx", &h->f_handle[i]) == 1; i++)
            ;
        int fd = i == bytes ? open_by_handle_at(mfd, h, O_PATH | O_CLOEXEC) : -1;
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = fd >= 0 ? readlink(link, out, size - 1) : -1;
        if (n > 0) {
            out[n] = '\0';
            r = out[0] == '/' && !strstr(out, " (deleted)") ? 0 : -1;
        }
        if (fd >= 0)
            close(fd);
        close(mfd);
    }
    free(h);
    return r;
}

/* One "inotify wd:..." line into w (its path owned by w). */
static int s_inotify_watch(pid_t pid, int fd, const char *l, Cairn__Ghost__InotifyWatch *w,
                           cairn_error_t *err)
{
    unsigned wd, kdev, mask, ignored, bytes, type;
    unsigned long ino;
    char hex[2 * MAX_HANDLE_SZ + 1], path[PATH_MAX];
    if (sscanf(l, "%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
                  "fhandle-type:%x f_handle:%256s",
               &wd, &ino, &kdev, &mask, &ignored, &bytes, &type, hex) != 8)
        return s_anon_bad(pid, fd, "an inotify watch's descriptor, mask and file handle", err);
    struct stat st;
    if (ghost_anon_handle_path(pid, kdev, type, hex, bytes, path, sizeof(path)) < 0 ||
        stat(path, &st) < 0 || st.st_ino != ino ||
        st.st_dev != ghost_anon_kernel_dev(kdev))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d: inotify watch %u is on inode %lu, which "
                               "has no path the restore could watch it by (deleted, or "
                               "not under a mount the process sees)", (int)pid, fd, wd, ino);
    cairn__ghost__inotify_watch__init(w);
    w->wd = (int32_t)wd;
    w->mask = mask;
    w->ino = ino;
    w->dev = st.st_dev;
    w->path = strdup(path);
    return w->path ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}

static int s_cmp_wd(const void *x, const void *y)
{
    int32_t a = ((const Cairn__Ghost__InotifyWatch *)x)->wd,
            b = ((const Cairn__Ghost__InotifyWatch *)y)->wd;
    return (a > b) - (a < b);
}

int ghost_anon_refuse_queued(pid_t pid, int fd, const char *what, cairn_error_t *err)
{
    int c = ghost_anon_grab_fd(pid, fd, err), queued = 0;
    if (c < 0)
        return c;
    int r = ioctl(c, FIONREAD, &queued) < 0 ? -errno : 0;
    close(c);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "process %d fd %d: %s FIONREAD: %s",
                               (int)pid, fd, what, strerror(-r));
    if (queued > 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d: the %s holds %d bytes of events not read "
                               "yet, which a new one could not be given back", (int)pid, fd,
                               what, queued);
    return 0;
}

static int s_anon_inotify(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                          ghost_anon_t *a, cairn_error_t *err)
{
    size_t n = proc_field_count(text, "inotify wd");
    a->wv = calloc(n ? n : 1, sizeof(*a->wv));
    a->wp = calloc(n ? n : 1, sizeof(*a->wp));
    if (!a->wv || !a->wp)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__inotify__init(&a->in);
    for (const char *l = proc_field(text, "inotify wd"); l && a->nw < n;
         l = proc_field(l, "inotify wd")) {
        int r = s_inotify_watch(pid, fd, l, &a->wv[a->nw], err);
        if (r < 0)
            return r;
        a->nw++;
    }
    int r = ghost_anon_refuse_queued(pid, fd, "inotify instance", err);
    if (r < 0)
        return r;
    /* fdinfo lists the newest first; the restore adds them in order */
    qsort(a->wv, a->nw, sizeof(*a->wv), s_cmp_wd);
    for (size_t i = 0; i < a->nw; i++)
        a->wp[i] = &a->wv[i];
    a->in.watches = a->wp;
    a->in.n_watches = a->nw;
    f->inotify = &a->in;
    return 0;
}

/* The anon-inode fds the restore recreates, by their /proc link. */
static const struct {
    const char *link;
    Cairn__Ghost__FdKind kind;
    int (*describe)(pid_t, int, const char *, Cairn__Ghost__Fd *, ghost_anon_t *, cairn_error_t *);
} s_anon_kinds[] = {
    { "anon_inode:[eventfd]", CAIRN__GHOST__FD_KIND__FD_EVENTFD, s_anon_eventfd },
    { "anon_inode:[timerfd]", CAIRN__GHOST__FD_KIND__FD_TIMERFD, s_anon_timerfd },
    { "anon_inode:[signalfd]", CAIRN__GHOST__FD_KIND__FD_SIGNALFD, s_anon_signalfd },
    { "anon_inode:[eventpoll]", CAIRN__GHOST__FD_KIND__FD_EPOLL, s_anon_epoll },
    { "anon_inode:inotify", CAIRN__GHOST__FD_KIND__FD_INOTIFY, s_anon_inotify },
};

int ghost_anon_describe(pid_t pid, int fd, const char *link, Cairn__Ghost__Fd *f,
                           ghost_anon_t *a, cairn_error_t *err)
{
    for (size_t i = 0; i < sizeof(s_anon_kinds) / sizeof(s_anon_kinds[0]); i++) {
        if (strcmp(link, s_anon_kinds[i].link) != 0)
            continue;
        char *text = NULL;
        int r = proc_read_fdinfo_text(pid, fd, &text, err);
        if (r == 0) {
            f->kind = s_anon_kinds[i].kind;
            f->path = "";
            r = s_anon_kinds[i].describe(pid, fd, text, f, a, err);
        }
        free(text);
        return r;
    }
    return -ENOENT;
}

/* ---- restore ----------------------------------------------------------- */

static int s_bad(const Cairn__Ghost__Fd *f, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                           "bad image: fd %d of kind %d %s", f->fd, (int)f->kind, what);
}

int ghost_anon_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    switch (f->kind) {
    case CAIRN__GHOST__FD_KIND__FD_EVENTFD:
        if (!f->eventfd)
            return s_bad(f, "has no eventfd state", err);
        if (f->eventfd->count == UINT64_MAX)
            return s_bad(f, "has an eventfd count out of range", err);
        return 0;
    case CAIRN__GHOST__FD_KIND__FD_TIMERFD:
        return f->timerfd ? 0 : s_bad(f, "has no timerfd state", err);
    case CAIRN__GHOST__FD_KIND__FD_SIGNALFD:
        return f->signalfd ? 0 : s_bad(f, "has no signalfd mask", err);
    case CAIRN__GHOST__FD_KIND__FD_INOTIFY:
        if (!f->inotify)
            return s_bad(f, "has no inotify watches", err);
        for (size_t i = 0; i < f->inotify->n_watches; i++)
            if (!f->inotify->watches[i] || f->inotify->watches[i]->wd < 1 ||
                !f->inotify->watches[i]->path || f->inotify->watches[i]->path[0] != '/' ||
                (i > 0 && f->inotify->watches[i]->wd <= f->inotify->watches[i - 1]->wd))
                return s_bad(f, "has a bad inotify watch (or watches out of order)", err);
        return 0;
    case CAIRN__GHOST__FD_KIND__FD_EPOLL:
        if (!f->shares && !f->epoll)
            return s_bad(f, "has no epoll targets", err);
        for (size_t i = 0; f->epoll && i < f->epoll->n_targets; i++)
            if (!f->epoll->targets[i] || f->epoll->targets[i]->fd < 0 ||
                (f->epoll->targets[i]->moved && f->epoll->targets[i]->file_fd < 0))
                return s_bad(f, "has a bad epoll target", err);
        return 0;
    default:
        return 0;
    }
}

static struct timespec s_ts(uint64_t ns)
{
    return (struct timespec){ (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
}

/* The timer as it was: the time it had left from now (an absolute timer
 * becomes now + that on its clock, keeping TFD_TIMER_CANCEL_ON_SET), then
 * the expirations not read yet (settime cleared them). */
static int s_timerfd_set(int fd, const Cairn__Ghost__TimerFd *t, cairn_error_t *err)
{
    struct itimerspec its = { s_ts(t->interval_ns), s_ts(t->value_ns) };
    int flags = t->settime_flags & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    if ((flags & TFD_TIMER_ABSTIME) && t->value_ns) {
        struct timespec now;
        if (clock_gettime(t->clockid, &now) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "clock_gettime(%d): %s",
                                   t->clockid, strerror(errno));
        uint64_t at = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec + t->value_ns;
        its.it_value = s_ts(at);
    } else {
        flags = 0;
    }
    if (timerfd_settime(fd, flags, &its, NULL) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "timerfd_settime: %s",
                               strerror(errno));
    uint64_t ticks = t->ticks;
    if (ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "setting %llu timer expirations (TFD_IOC_SET_TICKS): %s",
                               (unsigned long long)ticks, strerror(errno));
    return 0;
}

static int s_eventfd_set(int fd, const Cairn__Ghost__EventFd *e, cairn_error_t *err)
{
    uint64_t v = e->count;
    if (v && write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "setting the eventfd count: %s",
                               strerror(errno));
    return 0;
}

static int s_signalfd_open(const Cairn__Ghost__SignalFd *s, int nb)
{
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig <= 64; sig++)
        if (s->mask & (1ull << (sig - 1)))
            sigaddset(&set, sig);
    return signalfd(-1, &set, SFD_CLOEXEC | (nb ? SFD_NONBLOCK : 0));
}

/* Drops the IN_IGNORED events the watches removed while numbering left in
 * the new instance's queue: it must start empty, as its events were not
 * kept. */
static int s_inotify_drain(int fd, cairn_error_t *err)
{
    int fl = fcntl(fd, F_GETFL);
    char buf[4096];
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "inotify: F_SETFL: %s",
                               strerror(errno));
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (fcntl(fd, F_SETFL, fl) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "inotify: F_SETFL: %s",
                               strerror(errno));
    return 0;
}

/* Each watch with its descriptor: a new instance hands out 1, 2, ...
 * and never a number again until it wraps, so a watch whose number is
 * higher than the next one is added and removed until it comes. Watches
 * are in ascending order (ghost_anon_check). */
#define S_WD_TRIES (1 << 20)
static int s_inotify_set(int fd, const Cairn__Ghost__Inotify *in, cairn_error_t *err)
{
    for (size_t i = 0; i < in->n_watches; i++) {
        const Cairn__Ghost__InotifyWatch *w = in->watches[i];
        struct stat st;
        if (stat(w->path, &st) < 0 || st.st_ino != w->ino || st.st_dev != w->dev)
            return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                                   "inotify watch %d: %s is not the file watched at the "
                                   "dump", w->wd, w->path);
        int wd = -1;
        for (int k = 0; k < S_WD_TRIES; k++) {
            wd = inotify_add_watch(fd, w->path, w->mask | IN_DONT_FOLLOW);
            if (wd < 0 || wd >= w->wd)
                break;
            inotify_rm_watch(fd, wd);
        }
        if (wd != w->wd)
            return cairn_error_set(err, wd < 0 ? -errno : -EEXIST, CAIRN_SYSTEM,
                                   "inotify watch %d on %s: %s", w->wd, w->path,
                                   wd < 0 ? strerror(errno) : "another descriptor came");
    }
    return s_inotify_drain(fd, err);
}

int ghost_anon_open(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    int r = ghost_anon_check(f, err), nb = f->flags & O_NONBLOCK, fd = -1;
    if (r < 0)
        return r;
    switch (f->kind) {
    case CAIRN__GHOST__FD_KIND__FD_EVENTFD:
        fd = eventfd(0, EFD_CLOEXEC | (nb ? EFD_NONBLOCK : 0) |
                            (f->eventfd->semaphore ? EFD_SEMAPHORE : 0));
        break;
    case CAIRN__GHOST__FD_KIND__FD_TIMERFD:
        fd = timerfd_create(f->timerfd->clockid, TFD_CLOEXEC | (nb ? TFD_NONBLOCK : 0));
        break;
    case CAIRN__GHOST__FD_KIND__FD_SIGNALFD:
        fd = s_signalfd_open(f->signalfd, nb);
        break;
    case CAIRN__GHOST__FD_KIND__FD_INOTIFY:
        fd = inotify_init1(IN_CLOEXEC | (nb ? IN_NONBLOCK : 0));
        break;
    case CAIRN__GHOST__FD_KIND__FD_EPOLL:
        fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd >= 0 && nb && fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            close(fd);
            fd = -1;
        }
        break;
    default:
        return cairn_error_set(err, -EINVAL, CAIRN_INTERNAL, "fd %d: kind %d is not an "
                               "anon-inode fd", f->fd, (int)f->kind);
    }
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: cannot create its %s: %s",
                               f->fd, f->kind == CAIRN__GHOST__FD_KIND__FD_EPOLL ? "epoll"
                               : f->kind == CAIRN__GHOST__FD_KIND__FD_INOTIFY ? "inotify"
                               : f->kind == CAIRN__GHOST__FD_KIND__FD_EVENTFD ? "eventfd"
                               : f->kind == CAIRN__GHOST__FD_KIND__FD_TIMERFD ? "timerfd"
                                                                               : "signalfd",
                               strerror(errno));
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_EVENTFD)
        r = s_eventfd_set(fd, f->eventfd, err);
    else if (f->kind == CAIRN__GHOST__FD_KIND__FD_TIMERFD)
        r = s_timerfd_set(fd, f->timerfd, err);
    else if (f->kind == CAIRN__GHOST__FD_KIND__FD_INOTIFY)
        r = s_inotify_set(fd, f->inotify, err);
    if (r < 0) {
        close(fd);
        return cairn_error_append(err, r, " (fd %d)", f->fd);
    }
    return fd;
}

/* Adds the file of t->file_fd as item t->fd (the number the kernel keys
 * it by, and the program later names it by): that file is put at t->fd
 * for the moment, and what held the number (if anything) put back with
 * its close-on-exec flag. */
static int s_epoll_add_moved(int epfd, const Cairn__Ghost__EpollTarget *t,
                             struct epoll_event *ev)
{
    int fdflags = fcntl(t->fd, F_GETFD), saved = -1, r;
    if (fdflags >= 0 && (saved = fcntl(t->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return -1;
    r = dup3(t->file_fd, t->fd, O_CLOEXEC) < 0 ? -1 : epoll_ctl(epfd, EPOLL_CTL_ADD, t->fd, ev);
    int e = errno;
    if (saved >= 0) {
        if (dup3(saved, t->fd, fdflags & FD_CLOEXEC ? O_CLOEXEC : 0) < 0)
            r = -1, e = errno;
        close(saved);
    } else {
        close(t->fd);
    }
    errno = e;
    return r;
}

int ghost_anon_add_targets(int epfd, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    for (size_t i = 0; f->epoll && i < f->epoll->n_targets; i++) {
        const Cairn__Ghost__EpollTarget *t = f->epoll->targets[i];
        struct epoll_event ev = { .events = t->events, .data.u64 = t->data };
        int r = t->moved ? s_epoll_add_moved(epfd, t, &ev)
                         : epoll_ctl(epfd, EPOLL_CTL_ADD, t->fd, &ev);
        if (r < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                   "fd %d: adding fd %d (the file of fd %d) to the epoll "
                                   "instance: %s", f->fd, t->fd,
                                   t->moved ? t->file_fd : t->fd, strerror(errno));
    }
    return 0;
}
