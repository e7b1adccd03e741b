/* pipes.c - pipes and named FIFOs, both directions: the fd kind FD_PIPE,
 * and the pipe object, data and descriptions FD_FIFO (fifo.c) shares.
 *
 * Dump side. A pipe is known by its inode (pipe_id), not by its path; its
 * unread bytes are copied with tee(2) from a second read end, so nothing
 * is consumed, and recorded once per pipe, on the first readable end
 * written. Both ends must be in the tree, or the pipe could not be
 * reconnected: the check refuses a write end whose reader is outside.
 * Which fds share an open file description is found by kcmp, as for any
 * file (files.c): each description keeps its own status flags.
 *
 * Restore side. The caller makes one pipe per pipe_id before any process
 * exists (a FIFO: its path opened O_RDWR), refills it with its unread
 * bytes and keeps it as helper fds every process inherits. Each open file
 * description of the image is then opened anew through the helper's
 * /proc/self/fd link (a pipe's inode may be opened again like a FIFO's),
 * with its own status flags, and dup'ed into the fds sharing it, as for
 * any file: so O_NONBLOCK set on one description of an end does not show
 * on another. An image from before (no Fd.pipe_by_description) gets one
 * description per end, shared by all its fds, as its dump assumed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipes.h"

/* ---- dump -------------------------------------------------------------- */

/* The pipes (and FIFOs) whose unread data is in the image. */
struct pipes_dump {
    uint64_t (*done)[2];   /* their device and inode */
    size_t n;
};

pipes_dump_t *pipes_dump_new(void)
{
    return calloc(1, sizeof(pipes_dump_t));
}

pipes_dump_t *pipes_dump_free(pipes_dump_t *pd)
{
    if (pd)
        free(pd->done);
    free(pd);
    return NULL;
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    int acc = p->fi->flags & O_ACCMODE;
    if (strncmp(p->path, "pipe:[", 6) != 0)
        return FILES_NOT_MINE;   /* a named FIFO (fifo.c) */
    if (acc == O_RDWR)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is an anonymous pipe %s opened "
                               "read-write (through /proc): not restored",
                               (int)p->pid, p->fd, p->path);
    f->kind = CAIRN__GHOST__FD_KIND__FD_PIPE;
    f->pipe_by_description = true;
    f->pipe_id = p->st->st_ino;
    f->pipe_write_end = acc == O_WRONLY;
    f->path = "";
    return 0;
}

static bool s_tree_fd(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret)
{
    ret->write_end = f->pipe_write_end;
    ret->ino = f->pipe_id;
    return true;
}

/* A pipe whose write end is in the tree but whose read end is not cannot
 * be reconnected at restore (the restore refuses such an image), so it is
 * refused here, before anything changes -- not after the process was
 * killed. A read end whose writers are outside is fine: it reads what is
 * buffered, then end of file. */
static int s_check_tree(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                        cairn_error_t *err)
{
    const files_tree_fd_t *v = tfds->v;
    const Cairn__Ghost__FdKind pipe = CAIRN__GHOST__FD_KIND__FD_PIPE;
    int r = 0;
    for (size_t i = 0; r == 0 && i < tfds->n; i++) {
        bool writer = v[i].kind == pipe && v[i].write_end, reader = false;
        for (size_t j = 0; j < tfds->n && !reader && writer; j++)
            reader = v[j].kind == pipe && !v[j].write_end && v[j].ino == v[i].ino;
        if (writer && !reader)
            r = ghost_reason_add(
                rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                    "process %d fd %d is the write end of pipe %llu whose "
                                    "read end is held outside the process tree (a shell "
                                    "pipeline?): it could not be reconnected at restart",
                                    (int)v[i].pid, v[i].fd, (unsigned long long)v[i].ino),
                err, v[i].pid, "fd %d", v[i].fd);
    }
    return r;
}

static bool s_pipe_seen(const pipes_dump_t *pd, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < pd->n; i++)
        if (pd->done[i][0] == dev && pd->done[i][1] == ino)
            return true;
    return false;
}

/* Copies the unread bytes of a pipe without consuming them: tee(2) from a
 * second read end into a pipe of our own of the same capacity. */
static int s_pipe_peek(pid_t pid, int fd, uint8_t **ret, size_t *ret_len, cairn_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
    int in = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), mine[2] = { -1, -1 };
    if (in < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                               strerror(errno));
    int cap = fcntl(in, F_GETPIPE_SZ), r = 0;
    uint8_t *data = cap > 0 ? malloc((size_t)cap) : NULL;
    if (!data || pipe2(mine, O_NONBLOCK | O_CLOEXEC) < 0 ||
        fcntl(mine[1], F_SETPIPE_SZ, cap) < cap)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "cannot set up a copy of %s", path);
    ssize_t n = r == 0 ? tee(in, mine[1], (size_t)cap, SPLICE_F_NONBLOCK) : 0;
    if (n < 0 && errno == EAGAIN)
        n = 0;   /* empty */
    if (r == 0 && n < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "tee from %s: %s", path,
                            strerror(errno));
    if (r == 0 && n > 0 && read(mine[0], data, (size_t)n) != n)
        r = cairn_error_set(err, -EIO, CAIRN_SYSTEM, "short copy of the pipe %s", path);
    close(in);
    if (mine[0] >= 0)
        close(mine[0]), close(mine[1]);
    if (r < 0) {
        free(data);
        return r;
    }
    *ret = data;
    *ret_len = n > 0 ? (size_t)n : 0;
    return 0;
}

int pipes_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    pipes_dump_t *pd = c->pipes;
    if (f->pipe_write_end || f->shares || s_pipe_seen(pd, f->dev, f->pipe_id))
        return 0;
    uint8_t *data = NULL;
    size_t len = 0;
    int r = s_pipe_peek(pid, f->fd, &data, &len, err);
    f->pipe_data.data = data;
    f->pipe_data.len = len;
    uint64_t(*nv)[2] = r == 0 ? realloc(pd->done, (pd->n + 1) * sizeof *nv) : NULL;
    if (r == 0 && !nv)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0) {
        pd->done = nv;
        pd->done[pd->n][0] = f->dev;
        pd->done[pd->n++][1] = f->pipe_id;
    }
    if (r == 0 && len > GHOST_MAX_RECORD - 4096)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d fd %d: pipe holds %zu unread bytes (limit %u)",
                            (int)pid, f->fd, len, GHOST_MAX_RECORD - 4096);
    return r;
}

void pipes_release(Cairn__Ghost__Fd *f)
{
    free(f->pipe_data.data);
}

/* ---- restore ----------------------------------------------------------- */

/* One pipe or FIFO of the tree, recreated by the caller with its data. */
typedef struct s_pipe {
    Cairn__Ghost__FdKind kind;   /* FD_PIPE or FD_FIFO */
    uint64_t id;           /* pipe_id (inode at dump time) */
    int end[2];            /* helper fds: read end, write end (a FIFO: one
                              O_RDWR open in both) */
} s_pipe_t;

/* Every pipe and FIFO of the tree. */
struct pipes_rst {
    s_pipe_t *v;           /* one per (kind, pipe_id) */
    size_t n;
};

void pipes_rst_free(rst_tree_t *t)
{
    if (t->pipes)
        free(t->pipes->v);
    free(t->pipes);
    t->pipes = NULL;
}

static bool s_is_pipe(const Cairn__Ghost__Fd *f)
{
    return f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE ||
           f->kind == CAIRN__GHOST__FD_KIND__FD_FIFO;
}

/* A pipe whose write end is in the tree but not its read end would be
 * recreated without a reader: refused. */
static bool s_pipe_has_reader(const rst_image_t *im, uint64_t id)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            if (f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE &&
                f->pipe_id == id && !f->pipe_write_end)
                return true;
        }
    return false;
}

/* Writes every unread byte the image holds for the pipe or FIFO of g
 * into w (the write end, non-blocking: a pipe that cannot hold them is
 * refused). */
static int s_pipe_fill(const rst_image_t *im, const Cairn__Ghost__Fd *g, int w,
                       cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            if (f->kind != g->kind || f->pipe_id != g->pipe_id || f->pipe_data.len == 0)
                continue;
            if (f->pipe_data.len > 65536)
                fcntl(w, F_SETPIPE_SZ, (int)f->pipe_data.len);
            if (write(w, f->pipe_data.data, f->pipe_data.len) !=
                (ssize_t)f->pipe_data.len)
                return cairn_error_set(err, errno ? -errno : -EIO,
                                       CAIRN_SYSTEM, "pipe %llu: refilling "
                                       "%zu unread bytes failed: %s",
                                       (unsigned long long)g->pipe_id,
                                       f->pipe_data.len, strerror(errno));
        }
    return 0;
}

/* Both ends of a new anonymous pipe for f, O_NONBLOCK. */
static int s_make_pipe(uint32_t pid, const rst_image_t *im, const Cairn__Ghost__Fd *f,
                       int e[2], cairn_error_t *err)
{
    if (!s_pipe_has_reader(im, f->pipe_id))
        return cairn_error_set(err, -EPIPE, CAIRN_UNSUPPORTED,
                               "process %u fd %d: write end of pipe %llu "
                               "whose read end is outside the image", pid,
                               f->fd, (unsigned long long)f->pipe_id);
    if (pipe2(e, O_CLOEXEC | O_NONBLOCK) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s", strerror(errno));
    return 0;
}

/* The FIFO of f opened by its path, O_RDWR (never blocks, and keeps it
 * open, with its data, until every description is opened) in both
 * e[0] and e[1]. A FIFO is a file system object like any other file: if
 * its path is gone or no longer a FIFO, the restore fails. One that
 * already holds data (someone outside the tree kept it open) would mix
 * it with the image's: refused. */
static int s_open_fifo(uint32_t pid, const Cairn__Ghost__Fd *f, bool has_data, int e[2],
                       cairn_error_t *err)
{
    struct stat st;
    int fd = open(f->path, O_RDWR | O_NONBLOCK | O_CLOEXEC), queued = 0;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        int e2 = fd < 0 ? errno : EEXIST;
        if (fd >= 0)
            close(fd);
        return cairn_error_set(err, -e2, CAIRN_FAILED_PRECONDITION,
                               "process %u fd %d: the named FIFO %s: %s", pid, f->fd,
                               f->path, e2 == EEXIST ? "no longer a FIFO" : strerror(e2));
    }
    if (has_data && ioctl(fd, FIONREAD, &queued) == 0 && queued > 0) {
        close(fd);
        return cairn_error_set(err, -EBUSY, CAIRN_FAILED_PRECONDITION,
                               "process %u fd %d: the named FIFO %s already holds %d "
                               "bytes (held open outside the tree): its %s of the "
                               "image would mix with them", pid, f->fd, f->path, queued,
                               "unread bytes");
    }
    e[0] = fd;
    e[1] = dup(fd);
    if (e[1] < 0) {
        close(fd);
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "dup: %s", strerror(errno));
    }
    return 0;
}

/* Whether the image holds unread bytes for the FIFO or pipe of g. */
static bool s_has_data(const rst_image_t *im, const Cairn__Ghost__Fd *g)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            if (f->kind == g->kind && f->pipe_id == g->pipe_id && f->pipe_data.len)
                return true;
        }
    return false;
}

/* One pipe (or FIFO) for f->pipe_id, refilled, both ends as helpers. */
static int s_tree_pipe(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f,
                       cairn_error_t *err)
{
    s_pipe_t *p = &t->pipes->v[t->pipes->n];
    int e[2], ret;

    ret = f->kind == CAIRN__GHOST__FD_KIND__FD_FIFO
              ? s_open_fifo(pid, f, s_has_data(t->im, f), e, err)
              : s_make_pipe(pid, t->im, f, e, err);
    if (ret < 0)
        return ret;
    ret = s_pipe_fill(t->im, f, e[1], err);
    if (ret < 0) {
        close(e[0]);
        close(e[1]);
        return ret;
    }
    p->kind = f->kind;
    p->id = f->pipe_id;
    p->end[0] = rst_helper(t, e[0], err);
    p->end[1] = p->end[0] < 0 ? (close(e[1]), -1) : rst_helper(t, e[1], err);
    if (p->end[1] < 0)
        return p->end[0] < 0 ? p->end[0] : p->end[1];
    t->pipes->n++;
    return 0;
}

static const s_pipe_t *s_find_pipe(const rst_tree_t *t, const Cairn__Ghost__Fd *f)
{
    for (size_t i = 0; i < t->pipes->n; i++)
        if (t->pipes->v[i].kind == f->kind && t->pipes->v[i].id == f->pipe_id)
            return &t->pipes->v[i];
    return NULL;
}

/* The pipe or FIFO of f, unless made already. */
static int s_visit(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    return s_is_pipe(f) && !s_find_pipe(t, f) ? s_tree_pipe(t, pid, f, err) : 0;
}

/* Every pipe and FIFO of the tree, made here so that every process
 * inherits it. */
static int s_tree_pipes(rst_tree_t *t, cairn_error_t *err)
{
    size_t n = rst_n_fds(t->im);

    t->pipes = calloc(1, sizeof *t->pipes);
    if (t->pipes)
        t->pipes->v = calloc(n + 1, sizeof *t->pipes->v);
    if (!t->pipes || !t->pipes->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return files_each_fd(t, s_visit, err);
}

int pipes_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const s_pipe_t *p = t->pipes ? s_find_pipe(t, f) : NULL;
    char path[64];

    if (!p)
        return cairn_error_set(err, -EPIPE, CAIRN_INTERNAL, "fd %d: pipe %llu was not "
                               "recreated", f->fd, (unsigned long long)f->pipe_id);
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE && !f->pipe_by_description) {
        /* an older image: one description per end, as its dump assumed */
        int fd = fcntl(p->end[f->pipe_write_end], F_DUPFD_CLOEXEC, 0);
        if (fd < 0 || fcntl(fd, F_SETFL, f->flags & (O_NONBLOCK | O_APPEND)) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return cairn_error_set(err, -e, CAIRN_SYSTEM, "fd %d: pipe %llu: %s", f->fd,
                                   (unsigned long long)f->pipe_id, strerror(e));
        }
        return fd;
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", p->end[f->pipe_write_end]);
    return files_reopen(f, path, 0, false, err);
}

const files_kind_t pipes_kind = {
    .name = "pipe",
    .first = CAIRN__GHOST__FD_KIND__FD_PIPE,
    .last = CAIRN__GHOST__FD_KIND__FD_PIPE,
    .mode = S_IFIFO,
    .by_description = true,
    .describe = s_describe,
    .tree_fd = s_tree_fd,
    .check_tree = s_check_tree,
    .record = pipes_record,
    .release = pipes_release,
    .plan = s_tree_pipes,
    .open = pipes_open,
};
