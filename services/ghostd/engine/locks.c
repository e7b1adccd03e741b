/* locks.c - file locks, both directions (locks.h).
 *
 * Dump. /proc/PID/fdinfo/FD lists, in "lock:" lines formatted as
 * /proc/locks is (fs/locks.c lock_get_status), the locks on the fd's file
 * that belong to it: a flock or OFD lock whose open file description is
 * the fd's, a POSIX lock of the fd's process set through that
 * description. Each is recorded on the fd as kind, type and byte range; a
 * lease or delegation (F_SETLEASE) is refused -- it is a promise to be
 * told before someone else opens the file, which a restore could not keep
 * across the gap -- and so is anything else the line names.
 *
 * Restore. A flock or OFD lock is taken again on the restored fd, once
 * every fd of the process is in place (a description dup'ed into several
 * fds is one owner: taking it twice is a no-op). A POSIX lock belongs to
 * the process, and closing any fd of its file drops it: the restore's
 * helper fds (a description shared by fds, a mapped file) may be such
 * fds, so the restorer blob takes the POSIX locks after it closed them,
 * the last thing before the process runs. A lock someone outside took
 * while the tree was down fails the restore (F_SETLK, never waiting).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "locks.h"
#include "proc/proc.h"
#include "restorer/restorer.h"

/* ---- dump -------------------------------------------------------------- */

void locks_release(Cairn__Ghost__Fd *f)
{
    if (!f || !f->locks)
        return;
    free(f->locks[0]);   /* one array of n_locks messages */
    free(f->locks);
    f->locks = NULL;
    f->n_locks = 0;
}

static int s_refuse(pid_t pid, int fd, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d holds %s: not restored", (int)pid, fd, what);
}

/* One "lock:" line (after the key): "ID: KIND ... TYPE PID DEV:INO START
 * END|EOF", into l. A waiter ("ID: -> ...") gives 1, a lock 0. */
static int s_parse(pid_t pid, int fd, const char *line, Cairn__Ghost__FileLock *l,
                   cairn_error_t *err)
{
    char kind[16], word[16], type[16];
    char end[32];
    unsigned long long start;
    int n = 0;

    if (sscanf(line, " %*d: %15s%n", kind, &n) != 1)
        return s_refuse(pid, fd, "a lock its fdinfo does not describe", err);
    if (strcmp(kind, "->") == 0)
        return 1;
    if (strcmp(kind, "LEASE") == 0 || strcmp(kind, "DELEG") == 0)
        return s_refuse(pid, fd, "a lease (F_SETLEASE) on its file", err);
    cairn__ghost__file_lock__init(l);
    if (strcmp(kind, "FLOCK") == 0)
        l->kind = CAIRN__GHOST__LOCK_KIND__LOCK_FLOCK;
    else if (strcmp(kind, "POSIX") == 0)
        l->kind = CAIRN__GHOST__LOCK_KIND__LOCK_POSIX;
    else if (strcmp(kind, "OFDLCK") == 0)
        l->kind = CAIRN__GHOST__LOCK_KIND__LOCK_OFD;
    else
        return s_refuse(pid, fd, "a lock of a kind the restore cannot take", err);
    if (sscanf(line + n, " %15s %15s %*d %*s %llu %31s", word, type, &start, end) != 4 ||
        strcmp(word, "ADVISORY") != 0 ||
        (strcmp(type, "READ") != 0 && strcmp(type, "WRITE") != 0))
        return s_refuse(pid, fd, "a lock its fdinfo does not describe (mandatory?)", err);
    l->write = strcmp(type, "WRITE") == 0;
    l->start = start;
    l->to_eof = strcmp(end, "EOF") == 0;
    l->end = l->to_eof ? 0 : strtoull(end, NULL, 10);
    if (!l->to_eof && l->end < l->start)
        return s_refuse(pid, fd, "a lock its fdinfo does not describe", err);
    return 0;
}

int locks_describe(pid_t pid, int fd, const char *text, Cairn__Ghost__Fd *f,
                   cairn_error_t *err)
{
    int r = 0;
    size_t n = proc_field_count(text, "lock");
    Cairn__Ghost__FileLock *v = n ? calloc(n, sizeof *v) : NULL;
    f->locks = n ? calloc(n, sizeof *f->locks) : NULL;
    if (n && (!v || !f->locks)) {
        free(v);
        free(f->locks);
        f->locks = NULL;
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        f->locks[i] = &v[i];   /* locks[0] owns the array (locks_release) */
    for (const char *l = proc_field(text, "lock"); r >= 0 && l; l = proc_field(l, "lock")) {
        r = s_parse(pid, fd, l, &v[f->n_locks], err);
        if (r == 0)
            f->n_locks++;
    }
    if (n && f->n_locks == 0) {   /* only waiters */
        free(v);
        free(f->locks);
        f->locks = NULL;
    }
    if (r < 0)
        locks_release(f);
    return r < 0 ? r : 0;
}

/* ---- restore ----------------------------------------------------------- */

int locks_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    for (size_t i = 0; i < f->n_locks; i++) {
        const Cairn__Ghost__FileLock *l = f->locks[i];
        if (!l || (l->kind != CAIRN__GHOST__LOCK_KIND__LOCK_FLOCK &&
                   l->kind != CAIRN__GHOST__LOCK_KIND__LOCK_POSIX &&
                   l->kind != CAIRN__GHOST__LOCK_KIND__LOCK_OFD) ||
            (!l->to_eof && l->end < l->start) || l->start > INT64_MAX ||
            l->end > INT64_MAX)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: fd %d has a bad file lock", f->fd);
    }
    return 0;
}

/* The byte range of l as struct flock says it (l_len 0: to the end). */
static struct flock s_flock_of(const Cairn__Ghost__FileLock *l)
{
    return (struct flock){ .l_type = l->write ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET,
                           .l_start = (off_t)l->start,
                           .l_len = l->to_eof ? 0 : (off_t)(l->end - l->start + 1) };
}

int locks_take(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    for (size_t i = 0; i < f->n_locks; i++) {
        const Cairn__Ghost__FileLock *l = f->locks[i];
        struct flock fl = s_flock_of(l);
        int r = 0;
        if (l->kind == CAIRN__GHOST__LOCK_KIND__LOCK_FLOCK)
            r = flock(f->fd, (l->write ? LOCK_EX : LOCK_SH) | LOCK_NB);
        else if (l->kind == CAIRN__GHOST__LOCK_KIND__LOCK_OFD)
            r = fcntl(f->fd, F_OFD_SETLK, &fl);
        if (r < 0)
            return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                                   "fd %d: taking its %s %s lock again: %s%s", f->fd,
                                   l->write ? "write" : "read",
                                   l->kind == CAIRN__GHOST__LOCK_KIND__LOCK_FLOCK ? "flock"
                                                                                 : "OFD",
                                   strerror(errno),
                                   errno == EAGAIN || errno == EWOULDBLOCK
                                       ? " (someone else holds the file locked now)" : "");
    }
    return 0;
}

size_t locks_posix(const rst_proc_t *pr, struct gr_lock *v)
{
    size_t n = 0;

    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        for (size_t j = 0; j < f->n_locks; j++) {
            const Cairn__Ghost__FileLock *l = f->locks[j];
            if (l->kind != CAIRN__GHOST__LOCK_KIND__LOCK_POSIX)
                continue;
            if (v) {
                struct flock fl = s_flock_of(l);
                v[n] = (struct gr_lock){ .fd = f->fd, .type = fl.l_type,
                                         .start = fl.l_start, .len = fl.l_len };
            }
            n++;
        }
    }
    return n;
}
