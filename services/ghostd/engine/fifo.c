/* fifo.c - named FIFOs, both directions: the fd kind FD_FIFO.
 *
 * A FIFO is a file system object like any other file: it is reopened by
 * its path at restore, and one whose path was removed is refused at dump
 * (as a deleted regular file is: it could not be found again). What makes
 * it more than a path is the pipe behind it, which lives only while
 * someone holds it open: its unread bytes are recorded as a pipe's are
 * (once per FIFO, on the first readable fd of the tree), and the restore
 * opens the path O_RDWR once before any process exists (so no open of
 * either end blocks, and the refilled bytes stay), then opens each open
 * file description of the image through it with its own access mode and
 * status flags. All of that is pipes.c's: this file only claims the fd.
 *
 * Bytes written by the tree and meant for a reader outside it are not
 * recorded when no fd of the tree can read them: that reader keeps the
 * FIFO, and its bytes, open. The restore refuses to refill a FIFO that
 * already holds bytes (pipes.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "pipes.h"

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    if (p->path[0] != '/' || engine_has_suffix(p->path, " (deleted)"))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is the named FIFO %s, whose path was "
                               "removed: it could not be reopened", (int)p->pid, p->fd,
                               p->path);
    f->kind = CAIRN__GHOST__FD_KIND__FD_FIFO;
    f->pipe_id = p->st->st_ino;
    f->pipe_write_end = (p->fi->flags & O_ACCMODE) == O_WRONLY;
    return 0;
}

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    if (!f->path || f->path[0] != '/')
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d is a named FIFO without a path", f->fd);
    return 0;
}

const files_kind_t fifo_kind = {
    .name = "named FIFO",
    .first = CAIRN__GHOST__FD_KIND__FD_FIFO,
    .last = CAIRN__GHOST__FD_KIND__FD_FIFO,
    .mode = S_IFIFO,
    .by_description = true,
    .describe = s_describe,
    .record = pipes_record,
    .release = pipes_release,
    .check = s_check,
    .open = pipes_open,
};
