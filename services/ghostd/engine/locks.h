/* locks.h - file locks an fd holds, both directions (locks.c): flock and
 * OFD locks on its open file description, POSIX (fcntl F_SETLK) locks of
 * its process on its file. Leases and delegations are refused.
 */
#ifndef GHOST_LOCKS_H
#define GHOST_LOCKS_H

#include <sys/types.h>

#include "cairn/error.h"
#include "engine.h"

struct gr_lock;

/* The locks /proc/PID/fdinfo/FD (its text: fdinfo) lists for f (its
 * "lock:" lines, waiters skipped: their call is restarted) into f->locks
 * (owned by f until locks_release). 0, -ENOMEM, or -EOPNOTSUPP with the
 * reason (a lease, a lock kind the restore cannot take); pid and fd name
 * the fd in it. */
int locks_describe(pid_t pid, int fd, const char *fdinfo, Cairn__Ghost__Fd *f,
                   cairn_error_t *err);

void locks_release(Cairn__Ghost__Fd *f);   /* frees f->locks; NULL-safe */

/* Whether f's locks are whole: 0 or -EBADMSG. */
int locks_check(const Cairn__Ghost__Fd *f, cairn_error_t *err);

/* In the child, once every fd is in place: the flock and OFD locks of f
 * on its description (f->fd). 0, or -errno with err set (someone else
 * took a conflicting lock since the dump: -EAGAIN). */
int locks_take(const Cairn__Ghost__Fd *f, cairn_error_t *err);

/* The POSIX locks of pr's fds: how many, and (v non-NULL) each as the
 * restorer blob takes it after it closed the helper fds -- closing any
 * fd of a file drops the process's POSIX locks on it, and a helper may be
 * one (restorer.h, struct gr_lock). */
size_t locks_posix(const rst_proc_t *pr, struct gr_lock *v);

#endif
