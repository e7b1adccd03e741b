/* ghostfile.c - open files unlinked from every directory, both
 * directions: the fd kind FD_GHOST_FILE.
 *
 * Dump. A regular file whose /proc link ends in " (deleted)" and whose
 * link count is 0 has no name left to reopen it by: its bytes are copied
 * into the image (GhostFile records of 256 KiB at most, read through the
 * /proc link, before the fd's record), up to ghost-dump --ghost-file-max
 * (GHOST_FILE_MAX_DEFAULT); a bigger one is refused with its size and the
 * limit. One that was unlinked from this name but still has another
 * (a hard link: link count above 0) is refused too: a copy would stop
 * sharing its writes with the name nobody knows. Fds of one file opened
 * separately each copy it (the restore writes a byte range once more);
 * fds sharing a description copy nothing (files.c finds the sharing).
 *
 * Restore. Before any process exists, each such file is made again in
 * the directory it was in (an O_TMPFILE, so it never shows half-written
 * under a name), filled, given its mode and owner, linked under its old
 * name just long enough to open it there -- so /proc shows the same
 * "/dir/name (deleted)" -- and unlinked again; that open is a helper fd
 * every process inherits, and each open file description of the image
 * is opened anew through its /proc/self/fd link with its own flags and
 * offset. If the name is taken meanwhile the file stays nameless (/proc
 * shows "/dir/#ino (deleted)"); a directory that is gone fails the
 * restore.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ghostfile.h"
#include "image.h"

#define S_CHUNK (256u << 10)
#define S_DELETED " (deleted)"

/* ---- dump -------------------------------------------------------------- */

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    uint64_t max = p->ghost_file_max ? p->ghost_file_max : GHOST_FILE_MAX_DEFAULT;

    if (p->path[0] != '/' || !engine_has_suffix(p->path, S_DELETED) ||
        strncmp(p->path, "/memfd:", 7) == 0)
        return FILES_NOT_MINE;
    if (p->st->st_nlink > 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is %s, unlinked from that name but "
                               "still linked elsewhere (%lu links): its other name is "
                               "not known", (int)p->pid, p->fd, p->path,
                               (unsigned long)p->st->st_nlink);
    if ((uint64_t)p->st->st_size > max)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is the unlinked file %s of %lld bytes, "
                               "above the limit of %llu bytes for an unlinked file's "
                               "contents in the image (ghost-dump --ghost-file-max)",
                               (int)p->pid, p->fd, p->path, (long long)p->st->st_size,
                               (unsigned long long)max);
    f->kind = CAIRN__GHOST__FD_KIND__FD_GHOST_FILE;
    f->size = (uint64_t)p->st->st_size;
    f->ghost_mode = p->st->st_mode & 07777;
    f->ghost_uid = p->st->st_uid;
    f->ghost_gid = p->st->st_gid;
    return 0;
}

/* The file's bytes as GhostFile records, read through the /proc link. */
static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    char link[64];
    if (f->shares)
        return 0;
    snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)pid, f->fd);
    int fd = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    uint8_t *buf = fd >= 0 ? malloc(S_CHUNK) : NULL;
    int r = fd < 0 ? cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: "
                                     "cannot read the unlinked file %s: %s", (int)pid,
                                     f->fd, f->path, strerror(errno))
            : !buf ? cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory") : 0;
    for (uint64_t off = 0; r == 0 && off < f->size; off += S_CHUNK) {
        size_t want = f->size - off < S_CHUNK ? (size_t)(f->size - off) : S_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n != (ssize_t)want) {
            r = cairn_error_set(err, n < 0 ? -errno : -EIO, CAIRN_SYSTEM,
                                "process %d fd %d: reading the unlinked file %s at %llu: "
                                "%s", (int)pid, f->fd, f->path, (unsigned long long)off,
                                n < 0 ? strerror(errno) : "it shrank");
            break;
        }
        Cairn__Ghost__GhostFile g = CAIRN__GHOST__GHOST_FILE__INIT;
        Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
        g.dev = f->dev;
        g.ino = f->ino;
        g.offset = off;
        g.data.data = buf;
        g.data.len = want;
        rec.r_case = CAIRN__GHOST__RECORD__R_GHOST_FILE;
        rec.ghost_file = &g;
        r = ghost_write_record(c->out.w, &rec, err);
    }
    free(buf);
    if (fd >= 0)
        close(fd);
    return r;
}

/* ---- restore ----------------------------------------------------------- */

/* One unlinked file made again, by its dump-time dev and ino. */
typedef struct s_ghost {
    uint64_t dev, ino;
    int helper;            /* helper fd on it, named "/dir/name (deleted)" */
} s_ghost_t;

struct ghostfile_rst {
    s_ghost_t *v;
    size_t n;
};

void ghostfile_rst_free(rst_tree_t *t)
{
    if (t->ghosts)
        free(t->ghosts->v);
    free(t->ghosts);
    t->ghosts = NULL;
}

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    if (!f->path || f->path[0] != '/' || !engine_has_suffix(f->path, S_DELETED) ||
        strlen(f->path) >= PATH_MAX)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d is an unlinked file without its old path",
                               f->fd);
    return 0;
}

static const s_ghost_t *s_find(const rst_tree_t *t, const Cairn__Ghost__Fd *f)
{
    for (size_t i = 0; t->ghosts && i < t->ghosts->n; i++)
        if (t->ghosts->v[i].dev == f->dev && t->ghosts->v[i].ino == f->ino)
            return &t->ghosts->v[i];
    return NULL;
}

/* Writes the image's bytes of f's file into fd; every byte of its size
 * must be there. */
static int s_fill(const rst_image_t *im, const Cairn__Ghost__Fd *f, int fd,
                  cairn_error_t *err)
{
    uint64_t covered = 0;   /* records come in order; a copy per open */
    for (size_t i = 0; i < im->ghost_files.n; i++) {
        const Cairn__Ghost__GhostFile *g = im->ghost_files.v[i]->ghost_file;
        if (g->dev != f->dev || g->ino != f->ino)
            continue;
        if (g->offset > f->size || g->data.len > f->size - g->offset)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT, "bad image: "
                                   "bytes of the unlinked file %s beyond its size", f->path);
        if (pwrite(fd, g->data.data, g->data.len, (off_t)g->offset) != (ssize_t)g->data.len)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "writing the unlinked file "
                                   "%s again: %s", f->path, strerror(errno));
        if (g->offset <= covered && g->offset + g->data.len > covered)
            covered = g->offset + g->data.len;
    }
    if (covered < f->size)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT, "bad image: the "
                               "unlinked file %s has %llu of its %llu bytes", f->path,
                               (unsigned long long)covered, (unsigned long long)f->size);
    return 0;
}

/* The file of f made again in its directory: a helper fd on it, named
 * as it was, unlinked. */
static int s_make(rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    char name[PATH_MAX], dir[PATH_MAX], link[64];
    size_t n = strlen(f->path) - strlen(S_DELETED);

    memcpy(name, f->path, n);
    name[n] = '\0';
    memcpy(dir, name, n + 1);
    int fd = open(dirname(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, f->ghost_mode & 07777);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION, "fd %d: cannot "
                               "make the unlinked file %s again in %s: %s", f->fd, name,
                               dir, strerror(errno));
    int r = s_fill(t->im, f, fd, err);
    if (r == 0 && (ftruncate(fd, (off_t)f->size) < 0 ||
                   fchmod(fd, f->ghost_mode & 07777) < 0 ||
                   (geteuid() == 0 && fchown(fd, f->ghost_uid, f->ghost_gid) < 0)))
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "the unlinked file %s: size, mode "
                            "or owner: %s", name, strerror(errno));
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (r == 0 && linkat(AT_FDCWD, link, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) {
        int named = open(name, O_RDWR | O_CLOEXEC | O_NOCTTY);   /* /proc shows name */
        unlink(name);
        if (named >= 0) {
            close(fd);
            fd = named;
        }
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    s_ghost_t *g = &t->ghosts->v[t->ghosts->n];
    g->dev = f->dev;
    g->ino = f->ino;
    g->helper = rst_helper(t, fd, err);
    if (g->helper < 0)
        return g->helper;
    t->ghosts->n++;
    return 0;
}

/* The file of f, unless made already. */
static int s_visit(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    (void)pid;
    return f->kind == CAIRN__GHOST__FD_KIND__FD_GHOST_FILE && !f->shares && !s_find(t, f)
               ? s_make(t, f, err) : 0;
}

static int s_plan(rst_tree_t *t, cairn_error_t *err)
{
    t->ghosts = calloc(1, sizeof *t->ghosts);
    if (t->ghosts)
        t->ghosts->v = calloc(rst_n_fds(t->im) + 1, sizeof *t->ghosts->v);
    if (!t->ghosts || !t->ghosts->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return files_each_fd(t, s_visit, err);
}

static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const s_ghost_t *g = s_find(t, f);
    char link[64];

    if (!g)
        return cairn_error_set(err, -ENOENT, CAIRN_INTERNAL, "fd %d: the unlinked file "
                               "%s was not made again", f->fd, f->path);
    snprintf(link, sizeof link, "/proc/self/fd/%d", g->helper);
    return files_reopen(f, link, 0, true, err);
}

const files_kind_t ghostfile_kind = {
    .name = "unlinked file",
    .first = CAIRN__GHOST__FD_KIND__FD_GHOST_FILE,
    .last = CAIRN__GHOST__FD_KIND__FD_GHOST_FILE,
    .mode = S_IFREG,
    .by_description = true,
    .describe = s_describe,
    .record = s_record,
    .check = s_check,
    .plan = s_plan,
    .open = s_open,
};
