/* state-files.c - the files cases of ghost-state (state.h): pipe status
 * flags per open file description, named FIFOs with data in flight,
 * epoll watching a file whose fd number was reused, inotify and fanotify
 * (events not read refused), file locks (flock, POSIX, OFD) and leases, open files
 * unlinked from every directory.
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "state.h"

/* The fds a case keeps, numbered as it made them. */
typedef struct s_fds {
    int fd[6];
    char path[256];
} s_fds_t;

static s_fds_t *s_new(void **ctx)
{
    s_fds_t *c = calloc(1, sizeof *c);
    *ctx = c;
    return c;
}

/* Whether fd has O_NONBLOCK as `want` says. */
static int s_nonblock_is(int fd, bool want, const char *which)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return state_fail("%s: F_GETFL: %s", which, strerror(errno));
    if (!!(fl & O_NONBLOCK) != want)
        return state_fail("%s: O_NONBLOCK is %s, not %s", which,
                          fl & O_NONBLOCK ? "set" : "clear", want ? "set" : "clear");
    return 0;
}

/* 0 if fds a and b share an open file description (same == true) or
 * do not. */
static int s_same_description(int a, int b, bool same)
{
    pid_t p = getpid();
    long k = syscall(SYS_kcmp, p, p, KCMP_FILE, a, b);
    if (k < 0)
        return state_fail("kcmp(%d, %d): %s", a, b, strerror(errno));
    if ((k == 0) != same)
        return state_fail("fds %d and %d %s one open file description", a, b,
                          same ? "are not" : "are");
    return 0;
}

/* Reads exactly `want` from fd (non-blocking: it must be there). */
static int s_read_is(int fd, const char *want)
{
    char buf[256];
    size_t n = strlen(want);
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0)
        return state_fail("read fd %d: %s", fd, strerror(errno));
    if ((size_t)got != n || memcmp(buf, want, n) != 0)
        return state_fail("fd %d gave %zd bytes '%.*s', not '%s'", fd, got, (int)(got > 0 ? got : 0),
                          buf, want);
    return 0;
}

/* ---- pipes: flags per open file description ----------------------------- */

/* O_NONBLOCK on the write end only, data in flight. */
static int s_pipe_nb_write_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    if (pipe(c->fd) < 0 || fcntl(c->fd[1], F_SETFL, O_NONBLOCK) < 0 ||
        write(c->fd[1], "flight", 6) != 6)
        return state_fail("pipe: %s", strerror(errno));
    return 0;
}

static int s_pipe_nb_write_check(void *ctx)
{
    s_fds_t *c = ctx;
    if (s_nonblock_is(c->fd[1], true, "write end") < 0 ||
        s_nonblock_is(c->fd[0], false, "read end") < 0)
        return -1;
    return s_read_is(c->fd[0], "flight");
}

/* A second description of the read end (opened through /proc/self/fd),
 * O_NONBLOCK there only; a dup of the first shares the first's. */
static int s_pipe_reopen_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    char p[64];
    if (pipe(c->fd) < 0)
        return state_fail("pipe: %s", strerror(errno));
    snprintf(p, sizeof p, "/proc/self/fd/%d", c->fd[0]);
    c->fd[2] = open(p, O_RDONLY | O_NONBLOCK);
    c->fd[3] = dup(c->fd[0]);
    if (c->fd[2] < 0 || c->fd[3] < 0 || write(c->fd[1], "ab", 2) != 2)
        return state_fail("reopen %s: %s", p, strerror(errno));
    return 0;
}

static int s_pipe_reopen_check(void *ctx)
{
    s_fds_t *c = ctx;
    if (s_nonblock_is(c->fd[0], false, "first read end") < 0 ||
        s_nonblock_is(c->fd[3], false, "its dup") < 0 ||
        s_nonblock_is(c->fd[2], true, "second read end") < 0 ||
        s_same_description(c->fd[0], c->fd[3], true) < 0 ||
        s_same_description(c->fd[0], c->fd[2], false) < 0)
        return -1;
    return s_read_is(c->fd[2], "ab");
}

/* A pipe across a fork: the child's read end is the parent's description
 * (inherited), which the parent then makes O_NONBLOCK; the parent's
 * second description of the read end is nobody else's. The child only
 * waits: the parent checks it through kcmp and its fdinfo. */
static int s_pipe_tree_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    char p[64];
    if (pipe(c->fd) < 0)
        return state_fail("pipe: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        return state_fail("fork: %s", strerror(errno));
    if (child == 0) {
        for (;;)
            pause();
    }
    c->fd[4] = (int)child;
    snprintf(p, sizeof p, "/proc/self/fd/%d", c->fd[0]);
    c->fd[2] = open(p, O_RDONLY);
    if (c->fd[2] < 0 || fcntl(c->fd[0], F_SETFL, O_NONBLOCK) < 0)
        return state_fail("reopen/F_SETFL: %s", strerror(errno));
    return 0;
}

static int s_pipe_tree_check(void *ctx)
{
    s_fds_t *c = ctx;
    pid_t me = getpid(), child = (pid_t)c->fd[4];
    char p[64];
    if (s_nonblock_is(c->fd[0], true, "parent's read end") < 0 ||
        s_nonblock_is(c->fd[2], false, "parent's second read end") < 0)
        return -1;
    if (syscall(SYS_kcmp, me, child, KCMP_FILE, c->fd[0], c->fd[0]) != 0)
        return state_fail("the child's read end is not the parent's description");
    if (syscall(SYS_kcmp, me, child, KCMP_FILE, c->fd[2], c->fd[0]) == 0)
        return state_fail("the parent's second read end is the child's description");
    snprintf(p, sizeof p, "/proc/%d/fdinfo/%d", (int)child, c->fd[0]);
    FILE *f = fopen(p, "r");
    unsigned flags = 0;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "flags: %o", &flags) == 1)
            break;
    if (f)
        fclose(f);
    if (!(flags & O_NONBLOCK))
        return state_fail("the child's read end lost O_NONBLOCK (flags %o)", flags);
    kill(child, SIGKILL);
    return 0;
}

/* ---- named FIFOs ------------------------------------------------------- */

/* A FIFO in the work directory: a reader (O_NONBLOCK), a writer, an
 * O_RDWR open, and bytes written not read yet. */
static int s_fifo_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    snprintf(c->path, sizeof c->path, "%s/fifo", state_workdir());
    if (mkfifo(c->path, 0640) < 0)
        return state_fail("mkfifo %s: %s", c->path, strerror(errno));
    c->fd[0] = open(c->path, O_RDONLY | O_NONBLOCK);
    c->fd[1] = open(c->path, O_WRONLY);
    c->fd[2] = open(c->path, O_RDWR);
    if (c->fd[0] < 0 || c->fd[1] < 0 || c->fd[2] < 0 ||
        write(c->fd[1], "in flight", 9) != 9)
        return state_fail("open %s: %s", c->path, strerror(errno));
    return 0;
}

static int s_fifo_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct stat a, b;
    if (stat(c->path, &a) < 0 || fstat(c->fd[0], &b) < 0)
        return state_fail("stat %s: %s", c->path, strerror(errno));
    if (a.st_ino != b.st_ino || a.st_dev != b.st_dev || !S_ISFIFO(b.st_mode))
        return state_fail("fd %d is not the FIFO %s", c->fd[0], c->path);
    if ((fcntl(c->fd[1], F_GETFL) & O_ACCMODE) != O_WRONLY ||
        (fcntl(c->fd[2], F_GETFL) & O_ACCMODE) != O_RDWR)
        return state_fail("the FIFO's access modes changed");
    if (s_nonblock_is(c->fd[0], true, "reader") < 0 ||
        s_nonblock_is(c->fd[1], false, "writer") < 0 || s_read_is(c->fd[0], "in flight") < 0)
        return -1;
    if (write(c->fd[2], "x", 1) != 1)
        return state_fail("write to the O_RDWR fd: %s", strerror(errno));
    return s_read_is(c->fd[0], "x");
}

/* A FIFO whose path is gone: refused (the restore opens it by path). */
static int s_fifo_gone_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    snprintf(c->path, sizeof c->path, "%s/fifo", state_workdir());
    if (mkfifo(c->path, 0640) < 0)
        return state_fail("mkfifo %s: %s", c->path, strerror(errno));
    c->fd[0] = open(c->path, O_RDWR);
    if (c->fd[0] < 0 || unlink(c->path) < 0)
        return state_fail("open %s: %s", c->path, strerror(errno));
    return 0;
}

/* ---- epoll ------------------------------------------------------------- */

/* An eventfd added as fd A, then moved to fd B (dup, close) and A reused
 * by another file: the epoll still watches the eventfd. */
static int s_epoll_moved_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    int ep = epoll_create1(0), e = eventfd(0, 0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234abcd };
    if (ep < 0 || e < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) < 0)
        return state_fail("epoll: %s", strerror(errno));
    c->fd[0] = ep;
    c->fd[1] = dup(e);
    close(e);
    c->fd[2] = open("/dev/null", O_RDONLY);   /* takes e's number */
    if (c->fd[1] < 0 || c->fd[2] != e)
        return state_fail("dup/open: fd %d, expected %d: %s", c->fd[2], e, strerror(errno));
    return 0;
}

static int s_epoll_moved_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct epoll_event ev;
    uint64_t one = 1;
    int n = epoll_wait(c->fd[0], &ev, 1, 0);
    if (n != 0)
        return state_fail("epoll_wait before the write: %d", n);
    if (write(c->fd[1], &one, 8) != 8)
        return state_fail("eventfd write: %s", strerror(errno));
    n = epoll_wait(c->fd[0], &ev, 1, 1000);
    if (n != 1 || ev.data.u64 != 0x1234abcd || !(ev.events & EPOLLIN))
        return state_fail("epoll_wait: %d events, data %llx", n, (unsigned long long)ev.data.u64);
    return 0;
}

/* ---- inotify ----------------------------------------------------------- */

/* An event queued and not read: refused (reading it would take it from
 * the process, and a new instance cannot be given it back). */
static int s_inotify_queued_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    char p[300];
    c->fd[0] = inotify_init1(IN_NONBLOCK);
    if (c->fd[0] < 0 || inotify_add_watch(c->fd[0], state_workdir(), IN_CREATE) < 0)
        return state_fail("inotify: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/new", state_workdir());
    int f = open(p, O_CREAT | O_WRONLY, 0600);
    if (f < 0)
        return state_fail("create %s: %s", p, strerror(errno));
    close(f);
    return 0;
}

static int s_inotify_queued_check(void *ctx)
{
    s_fds_t *c = ctx;
    char buf[4096];
    ssize_t n = read(c->fd[0], buf, sizeof buf);
    if (n < (ssize_t)sizeof(struct inotify_event))
        return state_fail("the queued event is gone (%zd: %s)", n, strerror(errno));
    return 0;
}

/* ---- fanotify ---------------------------------------------------------- */

/* A notification group, non-blocking, marking one file for modifications
 * and closes after writing, with FAN_OPEN in its ignored mask. */
static int s_fanotify_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    snprintf(c->path, sizeof c->path, "%s/watched", state_workdir());
    int w = open(c->path, O_CREAT | O_WRONLY, 0600);
    if (w < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    close(w);
    c->fd[0] = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
    if (c->fd[0] < 0 ||
        fanotify_mark(c->fd[0], FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD,
                      c->path) < 0 ||
        fanotify_mark(c->fd[0], FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN, AT_FDCWD,
                      c->path) < 0)
        return state_fail("fanotify: %s", strerror(errno));
    /* the group's own close of w above came before the marks: nothing queued */
    return 0;
}

static int s_fanotify_check(void *ctx)
{
    s_fds_t *c = ctx;
    char buf[4096];
    if (s_nonblock_is(c->fd[0], true, "fanotify fd") < 0)
        return -1;
    if (read(c->fd[0], buf, sizeof buf) >= 0 || errno != EAGAIN)
        return state_fail("an event was queued after the restore");
    int w = open(c->path, O_WRONLY);
    if (w < 0 || write(w, "x", 1) != 1)
        return state_fail("write %s: %s", c->path, strerror(errno));
    close(w);
    unsigned long long got = 0;
    ssize_t n = read(c->fd[0], buf, sizeof buf);
    for (ssize_t off = 0; n > 0 && off + (ssize_t)sizeof(struct fanotify_event_metadata) <= n;) {
        struct fanotify_event_metadata *m = (void *)(buf + off);
        got |= m->mask;
        if (m->fd >= 0)
            close(m->fd);
        off += m->event_len;
    }
    if (!(got & FAN_MODIFY) || !(got & FAN_CLOSE_WRITE) || (got & FAN_OPEN))
        return state_fail("events %#llx after a write, not FAN_MODIFY|FAN_CLOSE_WRITE", got);
    return 0;
}

/* An event queued, not read: refused. */
static int s_fanotify_queued_setup(void **ctx)
{
    if (s_fanotify_setup(ctx) < 0)
        return -1;
    s_fds_t *c = *ctx;
    int w = open(c->path, O_WRONLY);
    if (w < 0 || write(w, "x", 1) != 1)
        return state_fail("write %s: %s", c->path, strerror(errno));
    close(w);
    return 0;
}

/* ---- file locks -------------------------------------------------------- */

/* A file in the work directory, with `len` bytes, open O_RDWR. */
static int s_lockfile(s_fds_t *c)
{
    snprintf(c->path, sizeof c->path, "%s/locked", state_workdir());
    c->fd[0] = open(c->path, O_CREAT | O_RDWR, 0600);
    if (c->fd[0] < 0 || write(c->fd[0], "0123456789", 10) != 10)
        return state_fail("create %s: %s", c->path, strerror(errno));
    return 0;
}

static int s_flock_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    if (s_lockfile(c) < 0)
        return -1;
    if (flock(c->fd[0], LOCK_EX) < 0)
        return state_fail("flock: %s", strerror(errno));
    return 0;
}

static int s_flock_check(void *ctx)
{
    s_fds_t *c = ctx;
    int o = open(c->path, O_RDONLY);
    if (o < 0)
        return state_fail("open %s: %s", c->path, strerror(errno));
    int r = flock(o, LOCK_SH | LOCK_NB), e = errno;
    close(o);
    if (r == 0 || e != EWOULDBLOCK)
        return state_fail("the exclusive flock is gone (a second open took a shared one)");
    if (flock(c->fd[0], LOCK_SH | LOCK_NB) < 0)   /* converting our own: must work */
        return state_fail("flock on the holder's fd: %s", strerror(errno));
    return 0;
}

/* What F_OFD_GETLK from a new open file description says of [start,
 * start+len). That description stays open: closing any fd of the file
 * would drop the process's POSIX locks on it. */
static int s_getlk(const char *path, short type, off_t start, off_t len, struct flock *ret)
{
    static int o = -1;
    if (o < 0)
        o = open(path, O_RDWR);
    if (o < 0)
        return state_fail("open %s: %s", path, strerror(errno));
    *ret = (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
    int r = fcntl(o, F_OFD_GETLK, ret);
    return r < 0 ? state_fail("F_OFD_GETLK: %s", strerror(errno)) : 0;
}

/* A POSIX write lock on bytes 2-4 and a read lock on 7 to EOF. */
static int s_posix_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    if (s_lockfile(c) < 0)
        return -1;
    struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 2, .l_len = 3 };
    struct flock r = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 7, .l_len = 0 };
    if (fcntl(c->fd[0], F_SETLK, &w) < 0 || fcntl(c->fd[0], F_SETLK, &r) < 0)
        return state_fail("F_SETLK: %s", strerror(errno));
    return 0;
}

static int s_posix_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct flock l;
    if (s_getlk(c->path, F_RDLCK, 0, 2, &l) < 0)
        return -1;
    if (l.l_type != F_UNLCK)
        return state_fail("bytes 0-1 are locked (type %d)", l.l_type);
    if (s_getlk(c->path, F_RDLCK, 0, 0, &l) < 0)
        return -1;
    if (l.l_type != F_WRLCK || l.l_start != 2 || l.l_len != 3 || l.l_pid != getpid())
        return state_fail("write lock: type %d start %lld len %lld pid %d", l.l_type,
                          (long long)l.l_start, (long long)l.l_len, l.l_pid);
    if (s_getlk(c->path, F_WRLCK, 5, 0, &l) < 0)
        return -1;
    if (l.l_type != F_RDLCK || l.l_start != 7 || l.l_len != 0 || l.l_pid != getpid())
        return state_fail("read lock: type %d start %lld len %lld pid %d", l.l_type,
                          (long long)l.l_start, (long long)l.l_len, l.l_pid);
    return 0;
}

/* An OFD lock on bytes 1-8, on a description a dup shares. */
static int s_ofd_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    if (s_lockfile(c) < 0)
        return -1;
    struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 8 };
    c->fd[1] = dup(c->fd[0]);
    if (c->fd[1] < 0 || fcntl(c->fd[0], F_OFD_SETLK, &w) < 0)
        return state_fail("F_OFD_SETLK: %s", strerror(errno));
    return 0;
}

static int s_ofd_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct flock l;
    if (s_getlk(c->path, F_RDLCK, 0, 0, &l) < 0)
        return -1;
    if (l.l_type != F_WRLCK || l.l_start != 1 || l.l_len != 8 || l.l_pid != -1)
        return state_fail("OFD lock: type %d start %lld len %lld pid %d", l.l_type,
                          (long long)l.l_start, (long long)l.l_len, l.l_pid);
    /* the dup owns it too: unlocking there frees it */
    struct flock u = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(c->fd[1], F_OFD_SETLK, &u) < 0 || s_getlk(c->path, F_WRLCK, 0, 0, &l) < 0)
        return state_fail("unlock through the dup: %s", strerror(errno));
    if (l.l_type != F_UNLCK)
        return state_fail("the OFD lock is not the dup's description's");
    return 0;
}

static int s_lease_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    snprintf(c->path, sizeof c->path, "%s/leased", state_workdir());
    int f = open(c->path, O_CREAT | O_WRONLY, 0600);
    if (f < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    close(f);
    c->fd[0] = open(c->path, O_RDONLY);
    if (c->fd[0] < 0 || fcntl(c->fd[0], F_SETLEASE, F_RDLCK) < 0)
        return state_fail("F_SETLEASE: %s", strerror(errno));
    return 0;
}

static int s_lease_check(void *ctx)
{
    s_fds_t *c = ctx;
    int t = fcntl(c->fd[0], F_GETLEASE);
    return t == F_RDLCK ? 0 : state_fail("lease is %d after the refusal", t);
}

/* ---- unlinked open files ------------------------------------------------ */

#define S_UNLINKED_LEN 300000   /* more than one 256 KiB chunk of the image */

static uint8_t s_byte(size_t i)
{
    return (uint8_t)(i * 31 + i / 4096);
}

/* A file of S_UNLINKED_LEN bytes, mode 0604, unlinked: fd[0] O_RDWR at
 * offset 1234, fd[1] its dup, fd[2] a second description (O_RDONLY,
 * through /proc/self/fd) at offset 77. */
static int s_unlinked_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    uint8_t *buf = malloc(S_UNLINKED_LEN);
    char p[64];
    snprintf(c->path, sizeof c->path, "%s/scratch", state_workdir());
    c->fd[0] = open(c->path, O_CREAT | O_RDWR, 0604);
    if (!buf || c->fd[0] < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    for (size_t i = 0; i < S_UNLINKED_LEN; i++)
        buf[i] = s_byte(i);
    if (write(c->fd[0], buf, S_UNLINKED_LEN) != S_UNLINKED_LEN || fchmod(c->fd[0], 0604) < 0 ||
        unlink(c->path) < 0 || lseek(c->fd[0], 1234, SEEK_SET) != 1234)
        return state_fail("write/unlink %s: %s", c->path, strerror(errno));
    free(buf);
    snprintf(p, sizeof p, "/proc/self/fd/%d", c->fd[0]);
    c->fd[1] = dup(c->fd[0]);
    c->fd[2] = open(p, O_RDONLY);
    if (c->fd[1] < 0 || c->fd[2] < 0 || lseek(c->fd[2], 77, SEEK_SET) != 77)
        return state_fail("reopen %s: %s", p, strerror(errno));
    return 0;
}

static int s_unlinked_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct stat st, st2;
    char link[64], target[512];
    if (fstat(c->fd[0], &st) < 0 || fstat(c->fd[2], &st2) < 0)
        return state_fail("fstat: %s", strerror(errno));
    if (st.st_nlink != 0 || st.st_size != S_UNLINKED_LEN || (st.st_mode & 07777) != 0604)
        return state_fail("nlink %lu size %lld mode %o", (unsigned long)st.st_nlink,
                          (long long)st.st_size, st.st_mode & 07777);
    if (st.st_ino != st2.st_ino)
        return state_fail("the second description is on another file");
    snprintf(link, sizeof link, "/proc/self/fd/%d", c->fd[0]);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    char want[300];
    snprintf(want, sizeof want, "%s (deleted)", c->path);
    if (strcmp(target, want) != 0)
        return state_fail("fd 0 names '%s', not '%s'", target, want);
    if (lseek(c->fd[1], 0, SEEK_CUR) != 1234 || lseek(c->fd[2], 0, SEEK_CUR) != 77)
        return state_fail("offsets %lld and %lld, not 1234 and 77",
                          (long long)lseek(c->fd[1], 0, SEEK_CUR),
                          (long long)lseek(c->fd[2], 0, SEEK_CUR));
    if (s_same_description(c->fd[0], c->fd[1], true) < 0 ||
        s_same_description(c->fd[0], c->fd[2], false) < 0)
        return -1;
    if ((fcntl(c->fd[2], F_GETFL) & O_ACCMODE) != O_RDONLY)
        return state_fail("the second description is not O_RDONLY");
    uint8_t *buf = malloc(S_UNLINKED_LEN);
    if (!buf || pread(c->fd[2], buf, S_UNLINKED_LEN, 0) != S_UNLINKED_LEN)
        return state_fail("pread: %s", strerror(errno));
    for (size_t i = 0; i < S_UNLINKED_LEN; i++)
        if (buf[i] != s_byte(i))
            return state_fail("byte %zu is %u, not %u", i, buf[i], s_byte(i));
    free(buf);
    /* still one file: a write through one description shows in the other */
    if (pwrite(c->fd[0], "Z", 1, 5) != 1 || pread(c->fd[2], target, 1, 5) != 1 || target[0] != 'Z')
        return state_fail("the descriptions are not on one file");
    return 0;
}

/* Bigger than the default limit (1 MiB): refused with size and limit. */
static int s_unlinked_big_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    snprintf(c->path, sizeof c->path, "%s/big", state_workdir());
    c->fd[0] = open(c->path, O_CREAT | O_RDWR, 0600);
    if (c->fd[0] < 0 || ftruncate(c->fd[0], (2 << 20) + 1) < 0 || unlink(c->path) < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    return 0;
}

/* Above ghost-dump's own 1 MiB and below the 1.5 MiB that
 * test-ghost-state.sh's description sets (ghost-file-max): restored only
 * because ghostd passed the description's limit on. */
#define S_DESC_MAX_LEN (1280 * 1024)

static int s_unlinked_desc_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    uint8_t *buf = malloc(S_DESC_MAX_LEN);
    snprintf(c->path, sizeof c->path, "%s/desc-max", state_workdir());
    c->fd[0] = open(c->path, O_CREAT | O_RDWR, 0600);
    if (!buf || c->fd[0] < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    for (size_t i = 0; i < S_DESC_MAX_LEN; i++)
        buf[i] = s_byte(i);
    ssize_t n = write(c->fd[0], buf, S_DESC_MAX_LEN);
    free(buf);
    if (n != S_DESC_MAX_LEN || unlink(c->path) < 0)
        return state_fail("write/unlink %s: %s", c->path, strerror(errno));
    return 0;
}

static int s_unlinked_desc_check(void *ctx)
{
    s_fds_t *c = ctx;
    struct stat st;
    if (fstat(c->fd[0], &st) < 0 || st.st_size != S_DESC_MAX_LEN || st.st_nlink != 0)
        return state_fail("the unlinked file is %lld bytes, %lu links",
                          (long long)st.st_size, (unsigned long)st.st_nlink);
    for (size_t at = 0; at < S_DESC_MAX_LEN; at += 4093) {
        uint8_t b = 0;
        if (pread(c->fd[0], &b, 1, (off_t)at) != 1 || b != s_byte(at))
            return state_fail("byte %zu of the unlinked file differs", at);
    }
    return 0;
}

/* Unlinked from its name but linked under another: refused. */
static int s_unlinked_linked_setup(void **ctx)
{
    s_fds_t *c = s_new(ctx);
    char other[300];
    snprintf(c->path, sizeof c->path, "%s/one", state_workdir());
    snprintf(other, sizeof other, "%s/two", state_workdir());
    c->fd[0] = open(c->path, O_CREAT | O_RDWR, 0600);
    if (c->fd[0] < 0 || link(c->path, other) < 0 || unlink(c->path) < 0)
        return state_fail("create %s: %s", c->path, strerror(errno));
    return 0;
}

/* ---- signal-driven I/O owners ------------------------------------------- */

/* An fd whose open file description names an owner (F_SETOWN), a signal
 * (F_SETSIG) or a dnotify watch (F_NOTIFY, which makes the caller the
 * owner): nothing in /proc shows them, so the dump asks, and refuses. */
typedef struct s_owned {
    int fd;
} s_owned_t;

static int s_owned_pipe(void **ctx, int cmd, int arg, const char *what)
{
    int p[2];
    s_owned_t *o = calloc(1, sizeof(*o));
    if (!o || pipe(p) < 0)
        return state_fail("pipe: %s", strerror(errno));
    o->fd = p[0];
    *ctx = o;
    return fcntl(o->fd, cmd, arg) < 0 ? state_fail("%s: %s", what, strerror(errno)) : 0;
}

static int s_setown_setup(void **ctx)
{
    return s_owned_pipe(ctx, F_SETOWN, getpid(), "F_SETOWN");
}

static int s_setown_check(void *ctx)
{
    s_owned_t *o = ctx;
    int owner = fcntl(o->fd, F_GETOWN);
    return owner == getpid() ? 0 : state_fail("the owner is %d, not %d", owner, (int)getpid());
}

static int s_setsig_setup(void **ctx)
{
    return s_owned_pipe(ctx, F_SETSIG, SIGRTMIN + 1, "F_SETSIG");
}

static int s_setsig_check(void *ctx)
{
    s_owned_t *o = ctx;
    int sig = fcntl(o->fd, F_GETSIG);
    return sig == SIGRTMIN + 1 ? 0 : state_fail("the I/O signal is %d, not %d", sig,
                                                SIGRTMIN + 1);
}

static int s_dnotify_setup(void **ctx)
{
    s_owned_t *o = calloc(1, sizeof(*o));
    if (!o)
        return state_fail("out of memory");
    *ctx = o;
    o->fd = open(state_workdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (o->fd < 0)
        return state_fail("open %s: %s", state_workdir(), strerror(errno));
    signal(SIGIO, SIG_IGN);   /* a file made in the directory must not kill us */
    if (fcntl(o->fd, F_NOTIFY, DN_CREATE | DN_MULTISHOT) < 0)
        return state_fail("F_NOTIFY: %s", strerror(errno));
    return 0;
}

static int s_dnotify_check(void *ctx)
{
    s_owned_t *o = ctx;
    /* the watch is there: dnotify made this process the owner */
    int owner = fcntl(o->fd, F_GETOWN);
    return owner == getpid() ? 0 : state_fail("the dnotify owner is %d, not %d", owner,
                                              (int)getpid());
}

const state_case_t state_cases_files[] = {
    { .name = "files-unlinked", .setup = s_unlinked_setup, .check = s_unlinked_check },
    { .name = "files-unlinked-too-big", .expect = STATE_REFUSE, .reason = "above the limit",
      .setup = s_unlinked_big_setup },
    { .name = "files-unlinked-description-max", .setup = s_unlinked_desc_setup,
      .check = s_unlinked_desc_check },
    { .name = "files-unlinked-linked-elsewhere", .expect = STATE_REFUSE,
      .reason = "linked elsewhere", .setup = s_unlinked_linked_setup },
    { .name = "files-pipe-nonblock-write", .setup = s_pipe_nb_write_setup,
      .check = s_pipe_nb_write_check },
    { .name = "files-pipe-reopened-read", .setup = s_pipe_reopen_setup,
      .check = s_pipe_reopen_check },
    { .name = "files-pipe-tree", .setup = s_pipe_tree_setup, .check = s_pipe_tree_check,
      .flags = "tree" },
    { .name = "files-fifo", .setup = s_fifo_setup, .check = s_fifo_check },
    { .name = "files-fifo-unlinked", .expect = STATE_REFUSE, .reason = "FIFO",
      .setup = s_fifo_gone_setup },
    { .name = "files-epoll-moved-target", .setup = s_epoll_moved_setup,
      .check = s_epoll_moved_check },
    { .name = "files-inotify-queued", .expect = STATE_REFUSE, .reason = "not read",
      .setup = s_inotify_queued_setup, .check = s_inotify_queued_check },
    { .name = "files-fanotify", .setup = s_fanotify_setup, .check = s_fanotify_check },
    { .name = "files-fanotify-queued", .expect = STATE_REFUSE, .reason = "not read",
      .setup = s_fanotify_queued_setup },
    { .name = "files-flock", .setup = s_flock_setup, .check = s_flock_check },
    { .name = "files-posix-lock", .setup = s_posix_setup, .check = s_posix_check },
    { .name = "files-ofd-lock", .setup = s_ofd_setup, .check = s_ofd_check },
    { .name = "files-lease", .expect = STATE_REFUSE, .reason = "lease",
      .setup = s_lease_setup, .check = s_lease_check },
    { .name = "files-setown", .expect = STATE_REFUSE, .reason = "owner for signal-driven I/O",
      .setup = s_setown_setup, .check = s_setown_check },
    { .name = "files-setsig", .expect = STATE_REFUSE, .reason = "(F_SETSIG)",
      .setup = s_setsig_setup, .check = s_setsig_check },
    { .name = "files-dnotify", .expect = STATE_REFUSE, .reason = "F_NOTIFY",
      .setup = s_dnotify_setup, .check = s_dnotify_check },
    { .name = NULL },
};
