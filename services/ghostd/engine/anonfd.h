/* anonfd.h - eventfd, timerfd, signalfd, epoll and inotify fds: their state read
 * from /proc/PID/fdinfo at dump, and the fd recreated from it at restore.
 *
 * These fds have no path to reopen: the kernel names them
 * "anon_inode:[eventfd]" and so on, and tells their state in fdinfo (the
 * eventfd's count, a timerfd's clock, ticks and time left, a signalfd's
 * mask, every file an epoll watches with its events and data, every
 * inotify watch with its descriptor, mask and file handle). The dump
 * keeps that state in the fd record's sub-message; the restore makes a
 * new object with it. An epoll's targets are added once every fd of its
 * process is in place (ghost_anon_add_targets), through the fd numbers
 * they were added with.
 *
 * An inotify watch is added again by the path of its inode (from the file
 * handle fdinfo gives, at dump), added and removed until the kernel hands
 * out the same descriptor (its numbers only grow).
 *
 * An eventfd's mode (EFD_SEMAPHORE) is in fdinfo from Linux 6.2; on older
 * kernels (Debian 12's 6.1) it is probed while the tree is frozen
 * (a->frozen), on a copy of the open file: 2 added to the count, one read
 * taken (a semaphore gives 1, a counter all of it), the count put back.
 * That assumes no process outside the tree uses the eventfd meanwhile;
 * waiters on it are woken once (poll, epoll: a spurious readiness that
 * epoll re-checks; a reader in the tree is stopped). Otherwise (the
 * dump's checks, which do not need it) the mode is left unknown.
 *
 * An inotify instance holding events not read yet is refused (they
 * could not be given back to a new instance). An epoll target whose fd
 * number no longer names its file is found among the process's fds by
 * kcmp(KCMP_EPOLL_TFD) and added through a temporary copy at its number.
 *
 * What does not come back: a timer
 * set TFD_TIMER_ABSTIME is restored as
 * the time it had left (the process does not run between dump and
 * restore); an edge-triggered epoll item that was ready reports once more;
 * an epoll instance shared across processes (fork) is refused by the dump
 * before the freeze (files.c).
 */
#ifndef GHOST_ANONFD_H
#define GHOST_ANONFD_H

#include <stdbool.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "ghost.pb-c.h"

/* The sub-messages an Fd record points to; the caller's, released with
 * ghost_anon_free (NULL-safe fields, zero-initialise it). */
typedef struct ghost_anon {
    Cairn__Ghost__EventFd ev;
    Cairn__Ghost__TimerFd tf;
    Cairn__Ghost__SignalFd sf;
    Cairn__Ghost__Epoll ep;
    Cairn__Ghost__EpollTarget *tv;    /* the epoll's targets (owned) */
    Cairn__Ghost__EpollTarget **tp;   /* pointers into tv (owned) */
    Cairn__Ghost__Inotify in;
    Cairn__Ghost__InotifyWatch *wv;   /* the inotify's watches (owned) */
    Cairn__Ghost__InotifyWatch **wp;  /* pointers into wv (owned) */
    size_t nw;                        /* watches in wv, their paths owned */
    /* Inputs, set before ghost_anon_describe: */
    bool frozen;                      /* the fd's process (and its tree) is
                                         frozen: state fdinfo does not tell
                                         may be probed on the open file */
    bool force_probe;                 /* probe even where fdinfo tells (tests) */
} ghost_anon_t;

/* Fd number fd of process pid (0: self) whose /proc link is `link`: if it
 * is an eventfd, timerfd, signalfd, epoll or inotify, sets f->kind, f->path "" and
 * the sub-message (pointing into *a) and returns 0, or refuses with the
 * reason (-EOPNOTSUPP: fdinfo does not tell enough, an epoll target's fd
 * no longer names its file); -ENOENT if it is none of them (err
 * untouched). */
int ghost_anon_describe(pid_t pid, int fd, const char *link, Cairn__Ghost__Fd *f,
                        ghost_anon_t *a, cairn_error_t *err);

void ghost_anon_free(ghost_anon_t *a);

/* For the kinds that read fdinfo alike (fanotify.c): */
/* A descriptor of our own on fd's open file in pid (pidfd_getfd; pid 0:
 * this process): the fd, or -errno with err set. */
int ghost_anon_grab_fd(pid_t pid, int fd, cairn_error_t *err);
/* A kernel dev_t as fdinfo prints it (sdev:) as a user-space dev_t. */
dev_t ghost_anon_kernel_dev(unsigned kdev);
/* The path of the inode an fdinfo file handle (hex bytes) names on the
 * filesystem kdev, as process pid sees it: into out, 0; -1 if it has none
 * (deleted, or on no mount the process sees). */
int ghost_anon_handle_path(pid_t pid, unsigned kdev, unsigned type, const char *hex,
                           unsigned bytes, char *out, size_t size);

/* Whether an Fd record of one of these kinds is whole (its sub-message
 * present and sane): 0 or -EBADMSG with err set. Other kinds: 0. */
int ghost_anon_check(const Cairn__Ghost__Fd *f, cairn_error_t *err);

/* A new object for f (one of these kinds), close-on-exec, with f's status
 * flags; an epoll comes back empty (ghost_anon_add_targets). The fd, or
 * -errno with err set. */
int ghost_anon_open(const Cairn__Ghost__Fd *f, cairn_error_t *err);

/* Adds f's epoll targets to epfd, each through its fd number in the
 * calling process. 0 or -errno with err naming the target. */
int ghost_anon_add_targets(int epfd, const Cairn__Ghost__Fd *f, cairn_error_t *err);

/* Events queued and not read cannot be put into a new inotify instance
 * or fanotify group (and reading them would take them from the process):
 * refused, never lost. FIONREAD on a copy of pid's fd tells how many
 * bytes wait: 0 when none, -EOPNOTSUPP (UNSUPPORTED) naming `what` ("inotify
 * instance") and the count when some, else the -errno of looking. */
int ghost_anon_refuse_queued(pid_t pid, int fd, const char *what, cairn_error_t *err);

#endif
