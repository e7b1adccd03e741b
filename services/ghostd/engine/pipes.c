/* pipes.c - pipes, both directions: the fd kind FD_PIPE.
 *
 * Dump side. A pipe is known by its inode (pipe_id), not by its path; its
 * unread bytes are copied with tee(2) from a second read end, so nothing
 * is consumed, and recorded once per pipe, on the first read end written.
 * Both ends must be in the tree, or the pipe could not be reconnected:
 * the check refuses a write end whose reader is outside.
 *
 * Restore side. The caller makes one pipe per pipe_id before any process
 * exists, refills it with its unread bytes and keeps both ends as helper
 * fds every process inherits; each process dup3s its ends into their
 * numbers. The status flags belong to the open file description, shared
 * by every process holding that end, as they were.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipes.h"

/* ---- dump -------------------------------------------------------------- */

/* The pipes whose unread data is in the image. */
struct pipes_dump {
    uint64_t *done;        /* their inodes */
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
    if (strncmp(p->path, "pipe:[", 6) != 0 || acc == O_RDWR)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a named FIFO %s",
                               (int)p->pid, p->fd, p->path);
    f->kind = CAIRN__GHOST__FD_KIND__FD_PIPE;
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

static bool s_pipe_seen(const pipes_dump_t *pd, uint64_t ino)
{
    for (size_t i = 0; i < pd->n; i++)
        if (pd->done[i] == ino)
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

/* The unread bytes of the pipe, on the first of its read ends written. */
static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    pipes_dump_t *pd = c->pipes;
    if (f->pipe_write_end || s_pipe_seen(pd, f->pipe_id))
        return 0;
    uint8_t *data = NULL;
    size_t len = 0;
    int r = s_pipe_peek(pid, f->fd, &data, &len, err);
    f->pipe_data.data = data;
    f->pipe_data.len = len;
    uint64_t *nv = r == 0 ? realloc(pd->done, (pd->n + 1) * 8) : NULL;
    if (r == 0 && !nv)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0)
        pd->done = nv, pd->done[pd->n++] = f->pipe_id;
    if (r == 0 && len > GHOST_MAX_RECORD - 4096)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d fd %d: pipe holds %zu unread bytes (limit %u)",
                            (int)pid, f->fd, len, GHOST_MAX_RECORD - 4096);
    return r;
}

static void s_release(Cairn__Ghost__Fd *f)
{
    free(f->pipe_data.data);
}

/* ---- restore ----------------------------------------------------------- */

/* One pipe of the tree, recreated by the caller with its unread data. */
typedef struct s_pipe {
    uint64_t id;           /* pipe_id (inode at dump time) */
    int end[2];            /* helper fds: read end, write end */
} s_pipe_t;

/* Every pipe of the tree. */
struct pipes_rst {
    s_pipe_t *v;           /* one per pipe_id */
    size_t n;
};

void pipes_rst_free(rst_tree_t *t)
{
    if (t->pipes)
        free(t->pipes->v);
    free(t->pipes);
    t->pipes = NULL;
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

/* Writes every unread byte the image holds for pipe id into w (the
 * write end, non-blocking: a pipe that cannot hold them is refused). */
static int s_pipe_fill(const rst_image_t *im, uint64_t id, int w,
                       cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            if (f->kind != CAIRN__GHOST__FD_KIND__FD_PIPE || f->pipe_id != id ||
                f->pipe_data.len == 0)
                continue;
            if (f->pipe_data.len > 65536)
                fcntl(w, F_SETPIPE_SZ, (int)f->pipe_data.len);
            if (write(w, f->pipe_data.data, f->pipe_data.len) !=
                (ssize_t)f->pipe_data.len)
                return cairn_error_set(err, errno ? -errno : -EIO,
                                       CAIRN_SYSTEM, "pipe %llu: refilling "
                                       "%zu unread bytes failed: %s",
                                       (unsigned long long)id,
                                       f->pipe_data.len, strerror(errno));
        }
    return 0;
}

/* One pipe for pipe_id f->pipe_id, refilled, both ends as helpers. */
static int s_tree_pipe(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f,
                       cairn_error_t *err)
{
    s_pipe_t *p = &t->pipes->v[t->pipes->n];
    int e[2], ret;

    if (!s_pipe_has_reader(t->im, f->pipe_id))
        return cairn_error_set(err, -EPIPE, CAIRN_UNSUPPORTED,
                               "process %u fd %d: write end of pipe %llu "
                               "whose read end is outside the image", pid,
                               f->fd, (unsigned long long)f->pipe_id);
    if (pipe2(e, O_CLOEXEC | O_NONBLOCK) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s",
                               strerror(errno));
    ret = s_pipe_fill(t->im, f->pipe_id, e[1], err);
    if (ret < 0) {
        close(e[0]);
        close(e[1]);
        return ret;
    }
    p->id = f->pipe_id;
    p->end[0] = rst_helper(t, e[0], err);
    p->end[1] = p->end[0] < 0 ? (close(e[1]), -1) : rst_helper(t, e[1], err);
    if (p->end[1] < 0)
        return p->end[0] < 0 ? p->end[0] : p->end[1];
    t->pipes->n++;
    return 0;
}

static const s_pipe_t *s_find_pipe(const rst_tree_t *t, uint64_t id)
{
    for (size_t i = 0; i < t->pipes->n; i++)
        if (t->pipes->v[i].id == id)
            return &t->pipes->v[i];
    return NULL;
}

/* Every pipe of the tree, made here so that every process inherits it. */
static int s_tree_pipes(rst_tree_t *t, cairn_error_t *err)
{
    size_t n = rst_n_fds(t->im);
    int ret = 0;

    t->pipes = calloc(1, sizeof *t->pipes);
    if (t->pipes)
        t->pipes->v = calloc(n + 1, sizeof *t->pipes->v);
    if (!t->pipes || !t->pipes->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n && ret == 0; j++) {
            const Cairn__Ghost__Fd *f = pr->fds.v[j]->fd;
            if (f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE &&
                !s_find_pipe(t, f->pipe_id))
                ret = s_tree_pipe(t, pr->process->process->pid, f, err);
        }
    }
    return ret;
}

/* The end of a pipe the caller recreated (with its data) into f->fd; the
 * status flags are the open file description's, shared by every process
 * holding that end, as they were. */
static void s_child_pipe(const rst_plan_t *pl, const Cairn__Ghost__Fd *f)
{
    const s_pipe_t *p = s_find_pipe(pl->tree, f->pipe_id);

    if (!p)
        rst_child_fail(pl, EPIPE, f->fd, "fd %d: pipe %llu was not recreated",
                       f->fd, (unsigned long long)f->pipe_id);
    if (dup3(p->end[f->pipe_write_end], f->fd, f->cloexec ? O_CLOEXEC : 0) < 0)
        rst_child_fail(pl, errno, f->fd, "fd %d: dup3: %s", f->fd,
                       strerror(errno));
    if (fcntl(f->fd, F_SETFL, f->flags & (O_NONBLOCK | O_APPEND)) < 0)
        rst_child_fail(pl, errno, f->fd, "fd %d: F_SETFL: %s", f->fd,
                       strerror(errno));
}

const files_kind_t pipes_kind = {
    .name = "pipe",
    .first = CAIRN__GHOST__FD_KIND__FD_PIPE,
    .last = CAIRN__GHOST__FD_KIND__FD_PIPE,
    .mode = S_IFIFO,
    .describe = s_describe,
    .tree_fd = s_tree_fd,
    .check_tree = s_check_tree,
    .record = s_record,
    .release = s_release,
    .plan = s_tree_pipes,
    .child = s_child_pipe,
};
