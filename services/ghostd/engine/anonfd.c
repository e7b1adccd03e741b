/* anonfd.c - eventfd, timerfd, signalfd and epoll fds (anonfd.h).
 *
 * Dump: the fd's fdinfo is read whole and the lines of its kind parsed
 * (formats of fs/eventfd.c, fs/timerfd.c, fs/signalfd.c,
 * fs/eventpoll.c). Restore: eventfd() then a write of the count (the
 * initial value is only 32 bits wide); timerfd_create, timerfd_settime,
 * then TFD_IOC_SET_TICKS (settime clears the ticks); signalfd; an empty
 * epoll_create1, filled by ghost_anon_add_targets once its process has
 * all its fds.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "anonfd.h"
#include "proc.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* ---- dump ------------------------------------------------------------ */

void ghost_anon_free(ghost_anon_t *a)
{
    if (!a)
        return;
    free(a->tv);
    free(a->tp);
    a->tv = NULL;
    a->tp = NULL;
}

/* The value after "key" on a line of fdinfo text, NULL if no line has it. */
static const char *s_info(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, key, n) == 0)
            return l + n;
    return NULL;
}

static int s_read_fdinfo(pid_t pid, int fd, char **ret, cairn_error_t *err)
{
    char name[64];
    snprintf(name, sizeof(name), "fdinfo/%d", fd);
    return proc_read_file(pid, name, ret, NULL, err);
}

static int s_anon_bad(pid_t pid, int fd, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d: its fdinfo does not tell %s", (int)pid, fd,
                           what);
}

static int s_anon_eventfd(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                          ghost_anon_t *a, cairn_error_t *err)
{
    const char *count = s_info(text, "eventfd-count:"), *sem = s_info(text, "eventfd-semaphore:");
    unsigned long long v;
    int semaphore;
    if (!count || sscanf(count, "%llx", &v) != 1)
        return s_anon_bad(pid, fd, "the eventfd's count", err);
    /* Older kernels do not say whether it counts as a semaphore. */
    if (!sem || sscanf(sem, "%d", &semaphore) != 1)
        return s_anon_bad(pid, fd, "whether the eventfd is a semaphore (kernel < 6.2?)", err);
    cairn__ghost__event_fd__init(&a->ev);
    a->ev.count = v;
    a->ev.semaphore = semaphore != 0;
    f->eventfd = &a->ev;
    return 0;
}

/* A descriptor of our own on the open file of fd in pid (pid 0: this
 * process): pidfd_getfd, which a tracer may use. -errno with err set. */
static int s_grab_fd(pid_t pid, int fd, cairn_error_t *err)
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
    int t = s_grab_fd(pid, fd, err);
    if (t < 0)
        return t;
    int r = timerfd_gettime(t, &its) < 0 ? -errno : 0;
    close(t);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "process %d fd %d: timerfd_gettime: %s",
                               (int)pid, fd, strerror(-r));
    char *now = NULL;
    r = s_read_fdinfo(pid, fd, &now, err);
    if (r < 0)
        return r;
    const char *clk = s_info(now, "clockid:"), *ticks = s_info(now, "ticks:"),
               *fl = s_info(now, "settime flags:");
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
    const char *mask = s_info(text, "sigmask:");
    unsigned long long m;
    if (!mask || sscanf(mask, "%llx", &m) != 1)
        return s_anon_bad(pid, fd, "the signalfd's mask", err);
    cairn__ghost__signal_fd__init(&a->sf);
    a->sf.mask = m;
    f->signalfd = &a->sf;
    return 0;
}

/* The fd an epoll target was added with must still name that file in
 * this process: the restore adds it again through that fd. fdinfo gives
 * the file's inode and its superblock's kernel dev_t. */
static int s_epoll_target_ok(pid_t pid, int fd, int tfd, unsigned long ino, unsigned kdev,
                             cairn_error_t *err)
{
    char path[64];
    struct stat st;
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, tfd);
    else
        snprintf(path, sizeof(path), "/proc/self/fd/%d", tfd);
    if (stat(path, &st) == 0 && st.st_ino == ino &&
        st.st_dev == makedev(kdev >> 20, kdev & 0xfffff))
        return 0;
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d: the epoll instance watches a file added "
                           "as fd %d, which no longer names it (closed or replaced)",
                           (int)pid, fd, tfd);
}

static int s_anon_epoll(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                        ghost_anon_t *a, cairn_error_t *err)
{
    size_t n = 0;
    for (const char *l = s_info(text, "tfd:"); l; l = s_info(l, "tfd:"))
        n++;
    a->tv = calloc(n ? n : 1, sizeof(*a->tv));
    a->tp = calloc(n ? n : 1, sizeof(*a->tp));
    if (!a->tv || !a->tp)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__epoll__init(&a->ep);
    size_t k = 0;
    for (const char *l = s_info(text, "tfd:"); l && k < n; l = s_info(l, "tfd:"), k++) {
        int tfd;
        unsigned events, kdev;
        unsigned long long data;
        long long pos;
        unsigned long ino;
        if (sscanf(l, "%d events: %x data: %llx pos:%lli ino:%lx sdev:%x", &tfd, &events,
                   &data, &pos, &ino, &kdev) != 6)
            return s_anon_bad(pid, fd, "an epoll target's fd, events and data", err);
        int r = s_epoll_target_ok(pid, fd, tfd, ino, kdev, err);
        if (r < 0)
            return r;
        cairn__ghost__epoll_target__init(&a->tv[k]);
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
};

int ghost_anon_describe(pid_t pid, int fd, const char *link, Cairn__Ghost__Fd *f,
                           ghost_anon_t *a, cairn_error_t *err)
{
    for (size_t i = 0; i < sizeof(s_anon_kinds) / sizeof(s_anon_kinds[0]); i++) {
        if (strcmp(link, s_anon_kinds[i].link) != 0)
            continue;
        char *text = NULL;
        int r = s_read_fdinfo(pid, fd, &text, err);
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

/* ---- restore --------------------------------------------------------- */

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
    case CAIRN__GHOST__FD_KIND__FD_EPOLL:
        if (!f->shares && !f->epoll)
            return s_bad(f, "has no epoll targets", err);
        for (size_t i = 0; f->epoll && i < f->epoll->n_targets; i++)
            if (!f->epoll->targets[i] || f->epoll->targets[i]->fd < 0)
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
                               : f->kind == CAIRN__GHOST__FD_KIND__FD_EVENTFD ? "eventfd"
                               : f->kind == CAIRN__GHOST__FD_KIND__FD_TIMERFD ? "timerfd"
                                                                               : "signalfd",
                               strerror(errno));
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_EVENTFD)
        r = s_eventfd_set(fd, f->eventfd, err);
    else if (f->kind == CAIRN__GHOST__FD_KIND__FD_TIMERFD)
        r = s_timerfd_set(fd, f->timerfd, err);
    if (r < 0) {
        close(fd);
        return cairn_error_append(err, r, " (fd %d)", f->fd);
    }
    return fd;
}

int ghost_anon_add_targets(int epfd, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    for (size_t i = 0; f->epoll && i < f->epoll->n_targets; i++) {
        const Cairn__Ghost__EpollTarget *t = f->epoll->targets[i];
        struct epoll_event ev = { .events = t->events, .data.u64 = t->data };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, t->fd, &ev) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                   "fd %d: adding fd %d to the epoll instance: %s", f->fd,
                                   t->fd, strerror(errno));
    }
    return 0;
}
