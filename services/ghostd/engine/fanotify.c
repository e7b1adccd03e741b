/* fanotify.c - fanotify groups, both directions: the fd kind FD_FANOTIFY.
 *
 * Dump. fdinfo tells the group's fanotify_init flags and event flags, and
 * each mark (fs/notify/fdinfo.c): an inode mark with its flags, mask,
 * ignored mask and the inode's file handle, whose path is found as an
 * inotify watch's is (anonfd.c) and checked by inode and device. Refused:
 * a mark on a mount or a filesystem (not restored yet), an inode that has
 * no path the process sees (deleted), and a group holding events not read
 * yet (FIONREAD on a copy of the open file) -- they could not be given
 * back to a new group, and reading them would take them from the process.
 *
 * Restore. fanotify_init with the same flags (close-on-exec and
 * non-blocking as the fd says), then each mark added by its path: its
 * mask, then its ignored mask (FAN_MARK_IGNORE where the mark had it,
 * else FAN_MARK_IGNORED_MASK, keeping FAN_MARK_IGNORED_SURV_MODIFY and
 * FAN_MARK_EVICTABLE).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <unistd.h>

#include "fanotify.h"
#include "proc/proc.h"

/* ---- dump -------------------------------------------------------------- */

static void s_release(Cairn__Ghost__Fd *f)
{
    Cairn__Ghost__Fanotify *fa = f->fanotify;
    if (!fa)
        return;
    for (size_t i = 0; i < fa->n_marks; i++)
        free(fa->marks[i]->path);
    free(fa->n_marks ? fa->marks[0] : NULL);   /* one array of marks */
    free(fa->marks);
    free(fa);
    f->fanotify = NULL;
}

static int s_refuse(pid_t pid, int fd, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d: the fanotify group %s", (int)pid, fd, what);
}

/* One "fanotify ino:..." line into m (its path owned by m). */
static int s_mark(pid_t pid, int fd, const char *l, Cairn__Ghost__FanotifyMark *m,
                  cairn_error_t *err)
{
    unsigned kdev, mflags, mask, ignored, bytes, type;
    unsigned long ino;
    char hex[2 * MAX_HANDLE_SZ + 1], path[PATH_MAX];
    struct stat st;

    if (sscanf(l, "%lx sdev:%x mflags:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
                  "fhandle-type:%x f_handle:%256s",
               &ino, &kdev, &mflags, &mask, &ignored, &bytes, &type, hex) != 8)
        return s_refuse(pid, fd, "has a mark its fdinfo does not describe", err);
    if (ghost_anon_handle_path(pid, kdev, type, hex, bytes, path, sizeof(path)) < 0 ||
        stat(path, &st) < 0 || st.st_ino != ino || st.st_dev != ghost_anon_kernel_dev(kdev))
        return s_refuse(pid, fd, "marks an inode which has no path the restore could "
                        "mark it by (deleted, or not under a mount the process sees)", err);
    cairn__ghost__fanotify_mark__init(m);
    m->mflags = mflags;
    m->mask = mask;
    m->ignored_mask = ignored;
    m->ino = ino;
    m->dev = st.st_dev;
    m->path = strdup(path);
    return m->path ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const char *head = proc_field(p->info, "fanotify flags");
    unsigned flags, event_flags;
    size_t n = proc_field_count(p->info, "fanotify ino");

    if (strcmp(p->path, "anon_inode:[fanotify]") != 0)
        return FILES_NOT_MINE;
    if (!head || sscanf(head, "%x event-flags:%x", &flags, &event_flags) != 2)
        return s_refuse(p->pid, p->fd, "has flags its fdinfo does not tell", err);
    if (proc_field(p->info, "fanotify mnt_id") || proc_field(p->info, "fanotify sdev"))
        return s_refuse(p->pid, p->fd, "marks a mount or a filesystem (not restored)", err);
    int r = ghost_anon_refuse_queued(p->pid, p->fd, "fanotify group", err);
    if (r < 0)
        return r;
    Cairn__Ghost__Fanotify *fa = calloc(1, sizeof *fa);
    Cairn__Ghost__FanotifyMark *v = n ? calloc(n, sizeof *v) : NULL;
    Cairn__Ghost__FanotifyMark **vp = n ? calloc(n, sizeof *vp) : NULL;
    if (!fa || (n && (!v || !vp))) {
        free(v);
        free(vp);
        free(fa);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    cairn__ghost__fanotify__init(fa);
    fa->marks = vp;
    fa->flags = flags;
    fa->event_flags = event_flags;
    f->kind = CAIRN__GHOST__FD_KIND__FD_FANOTIFY;
    f->path = "";
    f->fanotify = fa;
    for (size_t i = 0; i < n; i++)
        fa->marks[i] = &v[i];
    for (const char *l = proc_field(p->info, "fanotify ino"); r == 0 && l && fa->n_marks < n;
         l = proc_field(l, "fanotify ino")) {
        r = s_mark(p->pid, p->fd, l, &v[fa->n_marks], err);
        if (r == 0)
            fa->n_marks++;
    }
    if (!fa->n_marks)
        free(v);
    if (r < 0)
        s_release(f);
    return r;
}

/* ---- restore ----------------------------------------------------------- */

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    bool ok = f->fanotify != NULL;
    for (size_t i = 0; ok && i < f->fanotify->n_marks; i++)
        ok = f->fanotify->marks[i] && f->fanotify->marks[i]->path &&
             f->fanotify->marks[i]->path[0] == '/';
    return ok ? 0 : cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT, "bad image: "
                                    "fd %d is a fanotify group without its state", f->fd);
}

/* Mark m added again to group fd, by its path. */
static int s_add_mark(int fd, const Cairn__Ghost__FanotifyMark *m, cairn_error_t *err)
{
    struct stat st;
    unsigned keep = m->mflags & FAN_MARK_EVICTABLE;
    unsigned ign = (m->mflags & FAN_MARK_IGNORE ? FAN_MARK_IGNORE : FAN_MARK_IGNORED_MASK) |
                   (m->mflags & FAN_MARK_IGNORED_SURV_MODIFY);

    if (stat(m->path, &st) < 0 || st.st_ino != m->ino || st.st_dev != m->dev)
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION, "fanotify mark: %s "
                               "is not the file marked at the dump", m->path);
    if ((m->mask && fanotify_mark(fd, FAN_MARK_ADD | keep, m->mask, AT_FDCWD, m->path) < 0) ||
        (m->ignored_mask &&
         fanotify_mark(fd, FAN_MARK_ADD | keep | ign, m->ignored_mask, AT_FDCWD, m->path) < 0))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fanotify mark on %s: %s", m->path,
                               strerror(errno));
    return 0;
}

/* Group f made again with its marks (flags: fanotify_init's): its fd. */
static int s_open_group(const Cairn__Ghost__Fd *f, unsigned flags, cairn_error_t *err)
{
    const Cairn__Ghost__Fanotify *fa = f->fanotify;
    int fd = fanotify_init(flags, fa->event_flags), r = 0;

    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: fanotify_init(%#x, %#x): "
                               "%s", f->fd, flags, fa->event_flags, strerror(errno));
    for (size_t i = 0; r == 0 && i < fa->n_marks; i++)
        r = s_add_mark(fd, fa->marks[i], err);
    if (r < 0) {
        close(fd);
        return cairn_error_append(err, r, " (fd %d)", f->fd);
    }
    return fd;
}

/* Turns CAP_SYS_ADMIN off (on: false) or back on in the effective set.
 * A user's restore keeps it (seccomp filters, owner.h) but the user who
 * made the group had none: fanotify_init and fanotify_mark ask for it
 * (capable()) to allow permission events, unlimited queues and marks,
 * events with open fds of any file, mount and filesystem marks -- root's
 * powers, which the image must not be able to ask of the restorer. With
 * it off the kernel applies its own rules for an unprivileged group, and
 * makes it as unprivileged as the user's was. */
static int s_sys_admin(bool on, cairn_error_t *err)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "capget: %s", strerror(errno));
    if (on)
        data[CAP_SYS_ADMIN / 32].effective |= 1u << (CAP_SYS_ADMIN % 32);
    else
        data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    if (syscall(SYS_capset, &hdr, data) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "capset: %s", strerror(errno));
    return 0;
}

static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const Cairn__Ghost__Fanotify *fa = f->fanotify;
    unsigned flags = (fa->flags & ~(unsigned)(FAN_CLOEXEC | FAN_NONBLOCK)) | FAN_CLOEXEC |
                     (f->flags & O_NONBLOCK ? FAN_NONBLOCK : 0);
    if (t->for_user && s_sys_admin(false, err) < 0)
        return -EPERM;
    int r = s_open_group(f, flags, err);
    if (t->for_user && s_sys_admin(true, err) < 0) {
        if (r >= 0)
            close(r);
        return -EPERM;
    }
    return r;
}

const files_kind_t fanotify_kind = {
    .name = "fanotify",
    .first = CAIRN__GHOST__FD_KIND__FD_FANOTIFY,
    .last = CAIRN__GHOST__FD_KIND__FD_FANOTIFY,
    .mode = 0,
    .by_description = true,
    .describe = s_describe,
    .release = s_release,
    .check = s_check,
    .open = s_open,
};
