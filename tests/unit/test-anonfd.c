/* test-anonfd.c - eventfd, timerfd, signalfd, epoll, inotify fds (engine/anonfd.c)
 * in this process: each is made with known state, described from its
 * fdinfo as the dump does, recreated from that record as the restore does,
 * and the copy must behave as the original: the same count, semaphore-ness,
 * time left and pending expirations, signal mask, and epoll targets with
 * their events and data, inotify watches with their numbers. An epoll
 * target whose fd number was reused for another file, and an inotify watch
 * on a deleted file, are refused; records without their state are bad
 * images. An eventfd's mode is probed where fdinfo does not tell it
 * (kernels before 6.2), leaving its count as it was.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "anonfd.h"

/* ghost_anon_describe of fd (of this process) into *f, backed by *a. */
static int s_try_describe(int fd, Cairn__Ghost__Fd *f, ghost_anon_t *a, cairn_error_t *err)
{
    char path[64], link[256];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    cr_assert_gt(n, 0);
    link[n] = '\0';
    cairn__ghost__fd__init(f);
    f->fd = fd;
    f->flags = fcntl(fd, F_GETFL);
    return ghost_anon_describe(getpid(), fd, link, f, a, err);
}

/* Describes fd (of this process) into *f, backed by *a. */
static void s_describe(int fd, Cairn__Ghost__Fd *f, ghost_anon_t *a)
{
    cairn_error_t err = { 0 };
    int r = s_try_describe(fd, f, a, &err);
    cr_assert_eq(r, 0, "fd %d: %s", fd, err.message);
}

/* The dump must refuse fd, saying `why`. */
static void s_expect_refused(int fd, const char *why)
{
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };
    cairn_error_t err = { 0 };
    cr_assert_eq(s_try_describe(fd, &f, &a, &err), -EOPNOTSUPP);
    cr_assert(strstr(err.message, why), "%s", err.message);
    ghost_anon_free(&a);
}

/* Recreates the fd f describes; the new fd. */
static int s_recreate(const Cairn__Ghost__Fd *f)
{
    cairn_error_t err = { 0 };
    int fd = ghost_anon_open(f, &err);
    cr_assert_geq(fd, 0, "%s", err.message);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "made close-on-exec");
    return fd;
}

Test(anonfd, eventfd_count_and_semaphore)
{
    int e = eventfd(0, EFD_NONBLOCK | EFD_SEMAPHORE);
    uint64_t big = 0x123456789ull, v = 0;   /* wider than eventfd()'s initval */
    cr_assert_eq(write(e, &big, sizeof(big)), (ssize_t)sizeof(big));
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { .frozen = true };   /* nobody else uses it: may probe (< 6.2) */
    s_describe(e, &f, &a);
    cr_assert_eq(f.kind, CAIRN__GHOST__FD_KIND__FD_EVENTFD);
    cr_assert_eq(f.eventfd->count, big);
    cr_assert(f.eventfd->semaphore);
    int c = s_recreate(&f);
    cr_assert(fcntl(c, F_GETFL) & O_NONBLOCK);
    cr_assert_eq(read(c, &v, sizeof(v)), (ssize_t)sizeof(v));
    cr_assert_eq(v, 1, "a semaphore reads 1");
    Cairn__Ghost__Fd g;
    ghost_anon_t b = { .frozen = true };
    s_describe(c, &g, &b);
    cr_assert_eq(g.eventfd->count, big - 1);
    ghost_anon_free(&a), ghost_anon_free(&b);
    close(e), close(c);
}

/* The count of eventfd e, from fdinfo. */
static uint64_t s_eventfd_count(int e)
{
    char path[64], line[256];
    unsigned long long v = UINT64_MAX;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", e);
    FILE *fi = fopen(path, "r");
    cr_assert_not_null(fi);
    while (fgets(line, sizeof(line), fi))
        sscanf(line, "eventfd-count: %llx", &v);
    fclose(fi);
    return v;
}

/* Kernels before 6.2 do not tell the mode: the probe finds it, blocking or
 * not, at any count, and leaves the count as it was; before a freeze the
 * mode is not probed at all. */
Test(anonfd, eventfd_mode_probed_where_fdinfo_does_not_say)
{
    static const uint64_t counts[] = { 0, 1, 5, 0x123456789ull };
    for (int sem = 0; sem < 2; sem++)
        for (int nb = 0; nb < 2; nb++)
            for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                int e = eventfd(0, (sem ? EFD_SEMAPHORE : 0) | (nb ? EFD_NONBLOCK : 0));
                uint64_t c = counts[i];
                cr_assert(c == 0 || write(e, &c, sizeof(c)) == (ssize_t)sizeof(c));
                Cairn__Ghost__Fd f;
                ghost_anon_t a = { .frozen = true, .force_probe = true };
                s_describe(e, &f, &a);
                cr_assert_eq(f.eventfd->semaphore, sem != 0, "count %llu: mode",
                             (unsigned long long)c);
                cr_assert_eq(f.eventfd->count, c);
                cr_assert_eq(s_eventfd_count(e), c, "count %llu put back",
                             (unsigned long long)c);
                cr_assert_eq(fcntl(e, F_GETFL) & O_NONBLOCK, nb ? O_NONBLOCK : 0);
                ghost_anon_free(&a);
                close(e);
            }
    int e = eventfd(3, EFD_SEMAPHORE);
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };   /* not frozen: fdinfo's word or nothing */
    s_describe(e, &f, &a);
    cr_assert_eq(s_eventfd_count(e), 3, "not touched");
    ghost_anon_free(&a);
    close(e);
}

Test(anonfd, timerfd_time_left_interval_and_ticks)
{
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } }, got;   /* 1 ms, repeating */
    cr_assert_eq(timerfd_settime(t, 0, &its, NULL), 0);
    usleep(20000);
    its = (struct itimerspec){ { 3, 0 }, { 100, 0 } };   /* re-arm: ticks are cleared */
    int u = timerfd_create(CLOCK_MONOTONIC, 0);
    cr_assert_eq(timerfd_settime(u, 0, &its, NULL), 0);
    Cairn__Ghost__Fd f, g;
    ghost_anon_t a = { 0 }, b = { 0 };
    s_describe(t, &f, &a);
    s_describe(u, &g, &b);
    cr_assert_eq(f.kind, CAIRN__GHOST__FD_KIND__FD_TIMERFD);
    cr_assert_geq(f.timerfd->ticks, 5, "expirations not read: %llu",
                  (unsigned long long)f.timerfd->ticks);
    cr_assert_eq(g.timerfd->clockid, CLOCK_MONOTONIC);
    cr_assert_eq(g.timerfd->interval_ns, 3000000000ull);
    cr_assert(g.timerfd->value_ns > 99000000000ull && g.timerfd->value_ns <= 100000000000ull);
    int c = s_recreate(&f), d = s_recreate(&g);
    uint64_t ticks = 0;
    cr_assert_geq(read(c, &ticks, sizeof(ticks)), 8);
    cr_assert_geq(ticks, f.timerfd->ticks, "the pending expirations are back");
    cr_assert_eq(timerfd_gettime(d, &got), 0);
    cr_assert_eq(got.it_interval.tv_sec, 3);
    cr_assert(got.it_value.tv_sec >= 98 && got.it_value.tv_sec <= 100, "%ld s left",
              (long)got.it_value.tv_sec);
    ghost_anon_free(&a), ghost_anon_free(&b);
    close(t), close(u), close(c), close(d);
}

Test(anonfd, timerfd_absolute_keeps_its_flags)
{
    int t = timerfd_create(CLOCK_REALTIME, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec its = { { 0, 0 }, { now.tv_sec + 50, 0 } }, got;
    cr_assert_eq(timerfd_settime(t, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL), 0);
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };
    s_describe(t, &f, &a);
    cr_assert_eq(f.timerfd->settime_flags, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    int c = s_recreate(&f);
    cr_assert_eq(timerfd_gettime(c, &got), 0);
    cr_assert(got.it_value.tv_sec >= 48 && got.it_value.tv_sec <= 50);
    Cairn__Ghost__Fd g;
    ghost_anon_t b = { 0 };
    s_describe(c, &g, &b);
    cr_assert_eq(g.timerfd->settime_flags, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    ghost_anon_free(&a), ghost_anon_free(&b);
    close(t), close(c);
}

Test(anonfd, signalfd_mask)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN + 3);
    int s = signalfd(-1, &set, SFD_NONBLOCK);
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };
    s_describe(s, &f, &a);
    cr_assert_eq(f.kind, CAIRN__GHOST__FD_KIND__FD_SIGNALFD);
    cr_assert_eq(f.signalfd->mask, (1ull << (SIGUSR1 - 1)) | (1ull << (SIGRTMIN + 3 - 1)));
    int c = s_recreate(&f);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    struct signalfd_siginfo si;
    cr_assert_eq(read(c, &si, sizeof(si)), (ssize_t)sizeof(si));
    cr_assert_eq(si.ssi_signo, (uint32_t)SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    ghost_anon_free(&a);
    close(s), close(c);
}

Test(anonfd, epoll_targets_events_and_data)
{
    int ep = epoll_create1(0), e = eventfd(1, 0), p[2];
    cr_assert_eq(pipe(p), 0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234 };
    cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev), 0);
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 77 };
    cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };
    s_describe(ep, &f, &a);
    cr_assert_eq(f.kind, CAIRN__GHOST__FD_KIND__FD_EPOLL);
    cr_assert_eq(f.epoll->n_targets, 2);
    int c = s_recreate(&f);
    cairn_error_t err = { 0 };
    cr_assert_eq(ghost_anon_add_targets(c, &f, &err), 0, "%s", err.message);
    struct epoll_event got[4];
    cr_assert_eq(epoll_wait(c, got, 4, 1000), 1);
    cr_assert_eq(got[0].data.u64, 0x1234, "the ready eventfd, with its data");
    uint64_t one;
    cr_assert_eq(read(e, &one, sizeof(one)), (ssize_t)sizeof(one));
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(epoll_wait(c, got, 4, 1000), 1);
    cr_assert_eq(got[0].data.u64, 77);
    cr_assert(got[0].events & EPOLLIN);
    cr_assert_eq(epoll_wait(c, got, 4, 0), 0, "edge-triggered: once");
    ghost_anon_free(&a);
    close(ep), close(e), close(p[0]), close(p[1]), close(c);
}

/* The file stays alive (and watched) through a dup while its fd number
 * names another file: found by kcmp(KCMP_EPOLL_TFD) as the dup, which the
 * restore puts at the old number for a moment to add it back. */
Test(anonfd, epoll_target_renumbered_is_found_by_kcmp)
{
    int ep = epoll_create1(0), p[2], q[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(q), 0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 };
    cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
    int keep = dup(p[0]);
    cr_assert_eq(dup2(q[0], p[0]), p[0]);
    Cairn__Ghost__Fd f;
    ghost_anon_t a = { 0 };
    s_describe(ep, &f, &a);
    cr_assert_eq(f.epoll->n_targets, 1);
    const Cairn__Ghost__EpollTarget *t = f.epoll->targets[0];
    cr_assert(t->fd == p[0] && t->moved && t->file_fd == keep, "fd %d moved %d file_fd %d (keep %d)",
              t->fd, t->moved, t->file_fd, keep);
    ghost_anon_free(&a);
    close(ep), close(keep), close(p[0]), close(p[1]), close(q[0]), close(q[1]);
}

/* Watches with their numbers (one removed: the next number skips it),
 * masks and paths; an event on the copy names the same watch. */
Test(anonfd, inotify_watches_keep_their_numbers)
{
    char dir[] = "/tmp/ghost-anonfd-XXXXXX", file[64], other[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/f", dir);
    snprintf(other, sizeof(other), "%s/g", dir);
    close(open(file, O_WRONLY | O_CREAT, 0600));
    close(open(other, O_WRONLY | O_CREAT, 0600));
    int in = inotify_init1(IN_NONBLOCK);
    int a = inotify_add_watch(in, dir, IN_CREATE);
    int b = inotify_add_watch(in, other, IN_ATTRIB);
    cr_assert_eq(inotify_rm_watch(in, a), 0);
    int c = inotify_add_watch(in, file, IN_MODIFY | IN_ONESHOT);
    cr_assert(a == 1 && b == 2 && c == 3, "wds %d %d %d", a, b, c);
    /* rm_watch queued IN_IGNORED for watch 1: read, as a program would
     * (an instance with events not read is refused: the next test) */
    char ignored[4096] __attribute__((aligned(8)));
    cr_assert_geq(read(in, ignored, sizeof(ignored)), (ssize_t)sizeof(struct inotify_event));
    Cairn__Ghost__Fd f;
    ghost_anon_t an = { 0 };
    s_describe(in, &f, &an);
    cr_assert_eq(f.kind, CAIRN__GHOST__FD_KIND__FD_INOTIFY);
    cr_assert_eq(f.inotify->n_watches, 2);
    cr_assert_eq(f.inotify->watches[0]->wd, 2);
    cr_assert_str_eq(f.inotify->watches[0]->path, other);
    cr_assert_eq(f.inotify->watches[1]->wd, 3);
    cr_assert_str_eq(f.inotify->watches[1]->path, file);
    cr_assert_eq(f.inotify->watches[1]->mask, IN_MODIFY | IN_ONESHOT);
    int copy = s_recreate(&f);
    int fd = open(file, O_WRONLY);
    cr_assert_eq(write(fd, "x", 1), 1);
    close(fd);
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(copy, buf, sizeof(buf));
    cr_assert_geq(n, (ssize_t)sizeof(struct inotify_event));
    const struct inotify_event *ev = (const struct inotify_event *)buf;
    cr_assert_eq(ev->wd, 3, "the event names watch 3");
    cr_assert(ev->mask & IN_MODIFY);
    ghost_anon_free(&an);
    close(in), close(copy);
    unlink(file), unlink(other), rmdir(dir);
}

/* A watched file unlinked but kept alive by an open fd has no path to
 * watch it by again. */
Test(anonfd, inotify_watch_on_a_deleted_file_is_refused)
{
    char file[] = "/tmp/ghost-anonfd-del-XXXXXX";
    int keep = mkstemp(file);
    int in = inotify_init1(0);
    cr_assert_geq(inotify_add_watch(in, file, IN_MODIFY), 1);
    unlink(file);
    s_expect_refused(in, "has no path");
    close(in), close(keep);
}

Test(anonfd, other_fds_and_bad_records)
{
    Cairn__Ghost__Fd f;
    cairn__ghost__fd__init(&f);
    ghost_anon_t a = { 0 };
    cairn_error_t err = { 0 };
    cr_assert_eq(ghost_anon_describe(0, 0, "/dev/null", &f, &a, &err), -ENOENT);
    f.kind = CAIRN__GHOST__FD_KIND__FD_EVENTFD;
    cr_assert_eq(ghost_anon_check(&f, &err), -EBADMSG);
    cr_assert_lt(ghost_anon_open(&f, &err), 0);
    cr_assert(strstr(err.message, "bad image"), "%s", err.message);
    f.kind = CAIRN__GHOST__FD_KIND__FD_EPOLL;
    cr_assert_eq(ghost_anon_check(&f, &err), -EBADMSG);
    f.shares = true;   /* the fd owning the instance carries the targets */
    cr_assert_eq(ghost_anon_check(&f, &err), 0);
    f.kind = CAIRN__GHOST__FD_KIND__FD_REGULAR;
    cr_assert_eq(ghost_anon_check(&f, &err), 0);
}
