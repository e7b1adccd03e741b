/* files.c - the fd table of a process, both directions, and the table of
 * fd kinds that everything fd-specific dispatches through.
 *
 * Dump side. Each fd is read from /proc (its link, stat and fdinfo) and
 * offered to the kinds that may hold its file type, in table order; the
 * first that claims it describes it, or refuses it with the reason. The
 * whole tree's fds are then checked together (a pipe end without its
 * reader, an epoll shared across processes). As it is written, every fd
 * is compared (kcmp KCMP_FILE) with the earlier fds of the image on the
 * same file, so a dup'ed or fork-inherited one names the fd it shares its
 * open file description with (pipes are matched by pipe_id instead).
 *
 * Restore side. Each kind makes its tree-wide objects first (pipes.c,
 * shmem.c); then one helper per open file description that fds share is
 * opened by the caller, before any process exists, and dup3'd into each
 * fd that has it, so their offset and status flags stay one. In the child
 * every other fd is opened there, in place, with its own close-on-exec
 * flag; once all are in place an epoll adds its targets by their numbers.
 *
 * The plain kinds (regular files, directories, character devices) and
 * the anon-inode ones (anonfd.c) have their entries here; pipes and
 * memfds in their own files.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "fanotify.h"
#include "files.h"
#include "ghostfile.h"
#include "inetsk.h"
#include "locks.h"
#include "ns.h"
#include "pipes.h"
#include "seize.h"
#include "shmem.h"
#include "tree.h"
#include "tty.h"
#include "unixsk.h"
#include "util/array.h"
#include "util/cleanup.h"

/* ---- the plain kinds --------------------------------------------------- */

/* Character devices a process may hold, reopened by path: the memory
 * devices (terminals are tty.c's). */
static bool s_char_dev_ok(dev_t rdev)
{
    unsigned ma = major(rdev), mi = minor(rdev);
    return ma == 1 && (mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9);
}

static int s_describe_regular(const files_probe_t *p, Cairn__Ghost__Fd *f,
                              cairn_error_t *err)
{
    if (p->path[0] != '/' || strncmp(p->path, "/memfd:", 7) == 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is %s (not a plain file)",
                               (int)p->pid, p->fd, p->path);
    if (engine_has_suffix(p->path, " (deleted)"))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a deleted file %s",
                               (int)p->pid, p->fd, p->path);
    f->kind = CAIRN__GHOST__FD_KIND__FD_REGULAR;
    return 0;
}

static int s_describe_directory(const files_probe_t *p, Cairn__Ghost__Fd *f,
                                cairn_error_t *err)
{
    f->kind = CAIRN__GHOST__FD_KIND__FD_DIRECTORY;
    return 0;
}

static int s_describe_chardev(const files_probe_t *p, Cairn__Ghost__Fd *f,
                              cairn_error_t *err)
{
    dev_t rdev = p->st->st_rdev;
    if (!s_char_dev_ok(rdev))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is the device %s (%u:%u)",
                               (int)p->pid, p->fd, p->path, major(rdev), minor(rdev));
    f->kind = CAIRN__GHOST__FD_KIND__FD_CHAR_DEVICE;
    return 0;
}

/* A plain file reopened by its path. */
static int s_open_path(const Cairn__Ghost__Fd *f, int extra, bool seek,
                       cairn_error_t *err)
{
    if (strstr(f->path, " (deleted)") || f->path[0] != '/')
        return cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                               "fd %d: %s cannot be reopened", f->fd, f->path);
    return files_reopen(f, f->path, extra, seek, err);
}

static int s_open_regular(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                          cairn_error_t *err)
{
    return s_open_path(f, 0, true, err);
}

static int s_open_directory(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                            cairn_error_t *err)
{
    return s_open_path(f, O_DIRECTORY, false, err);
}

static int s_open_chardev(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                          cairn_error_t *err)
{
    return s_open_path(f, 0, false, err);
}

static const files_kind_t s_regular = {
    .name = "regular file",
    .first = CAIRN__GHOST__FD_KIND__FD_REGULAR,
    .last = CAIRN__GHOST__FD_KIND__FD_REGULAR,
    .mode = S_IFREG,
    .by_description = true,
    .describe = s_describe_regular,
    .open = s_open_regular,
};

static const files_kind_t s_directory = {
    .name = "directory",
    .first = CAIRN__GHOST__FD_KIND__FD_DIRECTORY,
    .last = CAIRN__GHOST__FD_KIND__FD_DIRECTORY,
    .mode = S_IFDIR,
    .by_description = true,
    .describe = s_describe_directory,
    .open = s_open_directory,
};

static const files_kind_t s_chardev = {
    .name = "character device",
    .first = CAIRN__GHOST__FD_KIND__FD_CHAR_DEVICE,
    .last = CAIRN__GHOST__FD_KIND__FD_CHAR_DEVICE,
    .mode = S_IFCHR,
    .by_description = true,
    .describe = s_describe_chardev,
    .open = s_open_chardev,
};

/* ---- the anon-inode kinds (anonfd.c) ----------------------------------- */

static int s_describe_anon(const files_probe_t *p, Cairn__Ghost__Fd *f,
                           cairn_error_t *err)
{
    int r = ghost_anon_describe(p->pid, p->fd, p->path, f, p->anon, err);
    return r == -ENOENT ? FILES_NOT_MINE : r;
}

static bool s_tree_fd_anon(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret)
{
    return f->kind == CAIRN__GHOST__FD_KIND__FD_EPOLL;
}

/* An epoll instance lists its targets by the fd numbers of the process
 * that added them; the restore re-adds them in the process whose record
 * owns the instance, so one shared with another process of the tree
 * (inherited across fork) is refused here, before anything changes. */
static int s_check_epolls(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                          cairn_error_t *err)
{
    const files_tree_fd_t *v = tfds->v;
    const Cairn__Ghost__FdKind ep = CAIRN__GHOST__FD_KIND__FD_EPOLL;
    int r = 0;
    for (size_t i = 0; r == 0 && i < tfds->n; i++)
        for (size_t j = i + 1; r == 0 && v[i].kind == ep && j < tfds->n; j++)
            if (v[j].kind == ep && v[j].pid != v[i].pid &&
                syscall(SYS_kcmp, v[i].pid, v[j].pid, KCMP_FILE, v[i].fd, v[j].fd) == 0)
                r = ghost_reason_add(
                    rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                        "process %d fd %d and process %d fd %d are one epoll "
                                        "instance (inherited across fork): not restored",
                                        (int)v[i].pid, v[i].fd, (int)v[j].pid, v[j].fd),
                    err, v[j].pid, "fd %d", v[j].fd);
    return r;
}

static int s_open_anon(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                       cairn_error_t *err)
{
    return ghost_anon_open(f, err);
}

/* An epoll watches fds by their numbers here: all of them are in place
 * now. The fd owning the instance adds them; those sharing it see them. */
static int s_finish_anon(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    return f->kind == CAIRN__GHOST__FD_KIND__FD_EPOLL
               ? ghost_anon_add_targets(f->fd, f, err) : 0;
}

static const files_kind_t s_anon = {
    .name = "anon inode",
    .first = CAIRN__GHOST__FD_KIND__FD_EVENTFD,
    .last = CAIRN__GHOST__FD_KIND__FD_INOTIFY,
    .mode = 0,
    .by_description = true,
    .describe = s_describe_anon,
    .tree_fd = s_tree_fd_anon,
    .check_tree = s_check_epolls,
    .check = ghost_anon_check,
    .open = s_open_anon,
    .finish = s_finish_anon,
};

/* ---- the table --------------------------------------------------------- */

/* Every kind, in the order the dump offers an fd to them (a memfd before
 * a regular file, and an unlinked one: all S_IFREG; a pipe before a named
 * FIFO; a terminal before other character devices) and the restore plans
 * them (pipes and FIFOs, then memfds, then ptys). */
static const files_kind_t *const s_kinds[] = {
    &pipes_kind, &fifo_kind, &shmem_kind, &ghostfile_kind, &s_regular, &s_directory,
    &tty_kind, &tty_ctty_kind, &s_chardev, &s_anon, &fanotify_kind, &inetsk_kind,
    &unixsk_kind,
};
#define S_NKINDS (sizeof(s_kinds) / sizeof(s_kinds[0]))

/* The kind owning Fd kind `kind`, NULL if none does. */
static const files_kind_t *s_kind_of(int kind)
{
    for (size_t i = 0; i < S_NKINDS; i++)
        if (kind >= (int)s_kinds[i]->first && kind <= (int)s_kinds[i]->last)
            return s_kinds[i];
    return NULL;
}

/* Whether kind k may claim a file of type `type` (S_IFMT bits). */
static bool s_kind_takes(const files_kind_t *k, mode_t type)
{
    bool typed = type == S_IFREG || type == S_IFDIR || type == S_IFIFO ||
                 type == S_IFCHR || type == S_IFSOCK || type == S_IFBLK;
    return k->mode ? k->mode == type : !typed;
}

/* ---- dump: describing an fd -------------------------------------------- */

/* f for an fd no kind claimed: the refusal. */
static int s_refuse(const files_probe_t *p, cairn_error_t *err)
{
    switch (p->st->st_mode & S_IFMT) {
    case S_IFSOCK:
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a socket (%s)", (int)p->pid, p->fd,
                               p->path);
    case S_IFBLK:
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is the block device %s",
                               (int)p->pid, p->fd, p->path);
    default:
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is %s (unsupported fd type)",
                               (int)p->pid, p->fd, p->path);
    }
}

/* Offers the fd to the kinds that may hold its file type: the first that
 * takes it describes or refuses it; *ret_kind is it. */
static int s_claim(const files_probe_t *p, Cairn__Ghost__Fd *f,
                   const files_kind_t **ret_kind, cairn_error_t *err)
{
    mode_t type = p->st->st_mode & S_IFMT;
    for (size_t i = 0; i < S_NKINDS; i++) {
        const files_kind_t *k = s_kinds[i];
        int r = s_kind_takes(k, type) ? k->describe(p, f, err) : FILES_NOT_MINE;
        if (r != FILES_NOT_MINE) {
            *ret_kind = k;
            return r;
        }
    }
    return s_refuse(p, err);
}

/* Fills f (path into pathbuf) for fd, or refuses with the reason; the
 * state of an anon-inode fd goes into *anon; *ret_kind is its kind. */
static int s_fd_describe(pid_t pid, int fd, Cairn__Ghost__Fd *f, char *pathbuf,
                         size_t size, ghost_anon_t *anon, uint64_t ghost_max,
                         const files_kind_t **ret_kind, cairn_error_t *err)
{
    char name[64], full[96];
    snprintf(name, sizeof(name), "fd/%d", fd);
    int r = proc_readlink(pid, name, pathbuf, size, err);
    if (r < 0)
        return r;
    struct stat st;
    snprintf(full, sizeof(full), "/proc/%d/fd/%d", (int)pid, fd);
    if (stat(full, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot stat %s: %s",
                               full, strerror(errno));
    proc_fdinfo_t fi;
    _cleanup_free_ char *info = NULL;   /* read once: the locks are in it too */
    r = proc_read_fdinfo_text(pid, fd, &info, err);
    if (r < 0)
        return r;
    if (proc_parse_fdinfo(info, &fi) < 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/fdinfo/%d lacks pos or flags", (int)pid, fd);
    f->fd = fd;
    f->flags = fi.flags & ~O_CLOEXEC;
    f->cloexec = (fi.flags & O_CLOEXEC) != 0;
    f->pos = fi.pos;
    f->mode = (uint32_t)st.st_mode;   /* the verifier's (verify.h) */
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->path = pathbuf;
    files_probe_t p = { pid, fd, pathbuf, &st, &fi, anon, ghost_max, info };
    r = s_claim(&p, f, ret_kind, err);
    return r < 0 ? r : locks_describe(pid, fd, info, f, err);
}

/* ---- dump: the checks -------------------------------------------------- */

static int s_add_tree_fd(files_tree_fds_t *e, files_tree_fd_t fd, cairn_error_t *err)
{
    if (CAIRN_GROW(e->v, e->cap, e->n + 1, 32) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    e->v[e->n++] = fd;
    return 0;
}

/* Describes every fd of pid (which refuses what cannot be dumped: each
 * refusal into rs, and on) and adds those the tree checks need to *tfds. Nothing is probed (anonfd.h):
 * what fdinfo does not tell is not needed to refuse, and the writing pass
 * probes it once. */
int files_check(pid_t pid, files_tree_fds_t *tfds, ghost_reasons_t *rs,
                cairn_error_t *err)
{
    int *fds = NULL;
    size_t nf = 0;
    int r = proc_list_dir(pid, "fd", &fds, &nf, err);
    for (size_t i = 0; r == 0 && i < nf; i++) {
        Cairn__Ghost__Fd f = CAIRN__GHOST__FD__INIT;
        char path[PATH_MAX];
        ghost_anon_t anon = { 0 };
        const files_kind_t *k = NULL;
        files_tree_fd_t tf = { .kind = CAIRN__GHOST__FD_KIND__FD_REGULAR };
        r = s_fd_describe(pid, fds[i], &f, path, sizeof(path), &anon, tfds->ghost_file_max, &k,
                          err);
        ghost_anon_free(&anon);
        locks_release(&f);
        if (k && k->release)
            k->release(&f);
        if (r == 0)
            tf = (files_tree_fd_t){ .kind = f.kind, .pid = pid, .fd = f.fd };
        if (r == -ENOENT)
            r = 0;   /* closed meanwhile */
        else if (r == 0 && k->tree_fd && k->tree_fd(&f, &tf))
            r = s_add_tree_fd(tfds, tf, err);
        else if (r < 0)
            r = ghost_reason_add(rs, r, err, pid, "fd %d", fds[i]);
    }
    free(fds);
    return r;
}

/* Drops what the check of a process that left the tree meanwhile added. */
void files_forget(files_tree_fds_t *tfds, pid_t pid)
{
    size_t k = 0;
    for (size_t i = 0; i < tfds->n; i++)
        if (tfds->v[i].pid != pid)
            tfds->v[k++] = tfds->v[i];
    tfds->n = k;
}

/* The checks of a whole tree's fds, before and after the freeze. */
int files_check_tree(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                     cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < S_NKINDS; i++)
        if (s_kinds[i]->check_tree)
            r = s_kinds[i]->check_tree(tfds, rs, err);
    return r;
}

/* ---- dump: open file descriptions shared (kcmp) ------------------------ */

/* An fd of the image that opened its own open file description (pipes
 * aside: those are shared by pipe_id): later fds are compared with it. */
typedef struct s_fdref {
    pid_t pid;
    int fd;
    uint64_t dev, ino;     /* its file: only fds on the same one are compared */
    int kcmp_errno;        /* set by s_fdref_cmp when kcmp failed on this key, */
    pid_t kcmp_pid;        /* ... comparing it with this process's */
    int kcmp_fd;           /* ... fd */
} s_fdref_t;

/* The fds of the image that opened their own open file description. */
struct files_dump {
    void *fdrefs;          /* tsearch tree of s_fdref_t, by s_fdref_cmp */
};

files_dump_t *files_dump_new(void)
{
    return calloc(1, sizeof(files_dump_t));
}

files_dump_t *files_dump_free(files_dump_t *fs)
{
    if (fs)
        tdestroy(fs->fdrefs, free);
    free(fs);
    return NULL;
}

/* The order of the fdrefs tree: by file, then by open file description
 * as kcmp(KCMP_FILE) orders them (a total order: the kernel compares
 * obfuscated pointers), so finding the description of an fd costs
 * O(log n) kcmp calls where comparing it with every earlier fd on the same
 * file cost O(n): 10000 fds of /dev/null froze a process for 87 s. The
 * first kcmp that fails is kept in the key, with the fd it was compared
 * with (the key is the first argument: tsearch compares the key it is
 * given with the tree's). */
static int s_fdref_cmp(const void *ka, const void *kb)
{
    s_fdref_t *a = (s_fdref_t *)ka;
    const s_fdref_t *b = kb;
    if (a->dev != b->dev)
        return a->dev < b->dev ? -1 : 1;
    if (a->ino != b->ino)
        return a->ino < b->ino ? -1 : 1;
    long k = syscall(SYS_kcmp, a->pid, b->pid, KCMP_FILE, a->fd, b->fd);
    if (k < 0 || k > 2) {
        if (!a->kcmp_errno)
            *a = (s_fdref_t){ a->pid, a->fd, a->dev, a->ino, k < 0 ? errno : EINVAL,
                              b->pid, b->fd };
        return -1;   /* any answer: the caller fails on kcmp_errno */
    }
    return k == 0 ? 0 : k == 1 ? -1 : 1;
}

/* Sets f->shares* to the first earlier fd of the image (this process's
 * lower fds, or any fd of a process written before) with the same open
 * file description; an fd sharing none is remembered for later ones. */
static int s_fd_share(files_dump_t *fs, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    s_fdref_t *key = malloc(sizeof(*key));
    if (!key)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    *key = (s_fdref_t){ pid, f->fd, f->dev, f->ino, 0, 0, 0 };
    s_fdref_t **at = tsearch(key, &fs->fdrefs, s_fdref_cmp);
    s_fdref_t failed = *key;
    if (!at) {
        free(key);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    const s_fdref_t *first = *at;
    bool shares = first != key;
    if (shares)
        free(key);   /* else the tree owns it (tdestroy), even on failure */
    int e = failed.kcmp_errno;
    if (e)
        return cairn_error_set(err, -e, CAIRN_SYSTEM,
                               "kcmp of process %d fd %d with process %d fd %d: %s", (int)pid,
                               f->fd, (int)failed.kcmp_pid, failed.kcmp_fd, strerror(e));
    if (shares) {
        f->shares = true;
        f->shares_pid = (uint32_t)first->pid;
        f->shares_fd = first->fd;
    }
    return 0;
}

/* ---- dump: writing the fd records -------------------------------------- */

/* An owner for signal-driven I/O on fd (F_SETOWN / F_SETOWN_EX, and
 * dnotify's F_NOTIFY, which makes its caller the owner) or a signal for
 * it (F_SETSIG): both live in the open file description, no /proc file
 * shows them, so they are asked of the leader (fcntl injected). The
 * restore would reopen the file without them and the program would wait
 * for SIGIO, SIGURG or its dnotify signal forever: refused. */
static int s_check_fd_owner(dump_proc_t *p, int fd, cairn_error_t *err)
{
    dump_thread_t *t = &p->t[0];
    uint64_t a[6] = { (uint64_t)fd, F_GETOWN_EX, t->scratch, 0, 0, 0 };
    struct f_owner_ex owner = { 0 };
    int64_t sig = 0;
    int r = seize_inject_read(p, t, SYS_fcntl, a, "fcntl(F_GETOWN_EX)", &owner, sizeof(owner),
                              err);
    if (r < 0)
        return r;
    a[1] = F_GETSIG;
    if ((r = seize_inject_ok(p, t, SYS_fcntl, a, "fcntl(F_GETSIG)", &sig, err)) < 0)
        return r;
    if (owner.pid)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "fd %d of process %d has an owner for signal-driven I/O "
                               "(F_SETOWN %s %d, or dnotify's F_NOTIFY): not restored", fd,
                               (int)p->pid, owner.type == F_OWNER_TID ? "thread"
                                            : owner.type == F_OWNER_PGRP ? "group" : "process",
                               (int)owner.pid);
    if (sig)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "fd %d of process %d has signal %d for its I/O (F_SETSIG): not "
                               "restored", fd, (int)p->pid, (int)sig);
    return 0;
}

static int s_write_fd(dump_ctx_t *c, dump_proc_t *p, int fd, cairn_error_t *err)
{
    Cairn__Ghost__Fd f = CAIRN__GHOST__FD__INIT;
    char path[PATH_MAX];
    ghost_anon_t anon = { .frozen = true, .force_probe = c->opts->probe_eventfds };
    const files_kind_t *k = NULL;
    int r = s_check_fd_owner(p, fd, err);
    if (r == 0)
        r = s_fd_describe(p->pid, fd, &f, path, sizeof(path), &anon, c->opts->ghost_file_max,
                          &k, err);
    if (r == 0 && k->by_description)
        r = s_fd_share(c->files, p->pid, &f, err);
    if (r == 0 && f.shares)   /* named as the image names processes (ns.c) */
        f.shares_pid = (uint32_t)ns_dump_vpid(&c->tree, (pid_t)f.shares_pid);
    if (r == 0 && k->record)
        r = k->record(c, p->pid, &f, err);
    if (r == 0) {
        Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
        rec.r_case = CAIRN__GHOST__RECORD__R_FD;
        rec.fd = &f;
        r = ghost_write_record(c->out.w, &rec, err);
    }
    if (k && k->release)
        k->release(&f);
    ghost_anon_free(&anon);
    locks_release(&f);
    return r;
}

int files_write(dump_ctx_t *c, dump_proc_t *p, const int *fds, size_t n,
                cairn_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        int r = s_write_fd(c, p, fds[i], err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < S_NKINDS; i++) {
        int r = s_kinds[i]->flush ? s_kinds[i]->flush(c, err) : 0;
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- restore: checks and shared descriptions --------------------------- */

int files_check_loaded(const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;

    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        const files_kind_t *k = s_kind_of(f->kind);
        if (!k)
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "process %u fd %d is of kind %d, which "
                                   "this restorer does not recreate", p->pid,
                                   f->fd, (int)f->kind);
        if ((k->check && k->check(f, err) < 0) || locks_check(f, err) < 0)
            return cairn_error_append(err, -EBADMSG, " (process %u)", p->pid);
    }
    return 0;
}

int files_reopen(const Cairn__Ghost__Fd *f, const char *path, int extra, bool seek,
                 cairn_error_t *err)
{
    int flags = f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
    _cleanup_close_ int fd = open(path, flags | extra | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "fd %d: cannot reopen %s: %s", f->fd, f->path,
                               strerror(errno));
    if (seek && lseek(fd, f->pos, SEEK_SET) != f->pos)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "fd %d: cannot seek %s to %lld: %s", f->fd,
                               f->path, (long long)f->pos, strerror(errno));
    return TAKE_FD(fd);
}

/* Opens the open file description fd record f describes, by its kind:
 * its file, status flags and offset; O_CLOEXEC (the caller places it).
 * The fd, or -errno with err set. */
static int s_open_description(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                              cairn_error_t *err)
{
    const files_kind_t *k = s_kind_of(f->kind);

    if (!k || !k->open)
        return cairn_error_set(err, -ENOTSUP, CAIRN_INTERNAL,
                               "fd %d: an fd of kind %d is not opened", f->fd,
                               (int)f->kind);
    return k->open(t, f, err);
}

/* An open file description several fds share (dup, fork), opened once by
 * the caller and dup3'd into each of them. */
typedef struct rst_ofd {
    uint32_t pid;          /* the fd owning it in the image: its process */
    int32_t fd;            /* and number */
    int helper;            /* helper fd holding it */
} s_ofd_t;

/* The open file descriptions the caller opened for fds to share. */
struct files_rst {
    s_ofd_t *v;            /* one per shared open file description */
    size_t n;
};

void files_rst_free(rst_tree_t *t)
{
    if (t->files)
        free(t->files->v);
    free(t->files);
    t->files = NULL;
}

static const s_ofd_t *s_find_ofd(const rst_tree_t *t, uint32_t pid, int32_t fd)
{
    for (size_t i = 0; i < t->files->n; i++)
        if (t->files->v[i].pid == pid && t->files->v[i].fd == fd)
            return &t->files->v[i];
    return NULL;
}

/* The fd record f of process i shares: an earlier fd (a process before
 * i, or i itself) that owns its description, of the same kind, not a
 * pipe. NULL, with err set, if the image says otherwise. */
static const Cairn__Ghost__Fd *s_share_origin(const rst_image_t *im, size_t i,
                                              const Cairn__Ghost__Fd *f,
                                              cairn_error_t *err)
{
    int j = tree_index_of(im, f->shares_pid);
    uint32_t pid = im->procs[i].process->process->pid;

    for (size_t k = 0; j >= 0 && (size_t)j <= i && k < im->procs[j].fds.n; k++) {
        const Cairn__Ghost__Fd *o = im->procs[j].fds.v[k]->fd;
        if (o->fd == f->shares_fd && !o->shares && o->kind == f->kind &&
            s_kind_of(o->kind)->by_description && o != f)
            return o;
    }
    cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT, "bad image: process "
                    "%u fd %d shares the open file of process %u fd %d, which is "
                    "not an earlier fd of its kind owning one", pid, f->fd,
                    f->shares_pid, f->shares_fd);
    return NULL;
}

/* Prefixes err's message with "process PID"; returns ret. */
static int s_in_process(cairn_error_t *err, int ret, uint32_t pid)
{
    char why[CAIRN_ERROR_MESSAGE_MAX - 32];

    if (!err)
        return ret;
    size_t n = strnlen(err->message, sizeof why - 1);

    memcpy(why, err->message, n);
    why[n] = '\0';
    return cairn_error_set(err, ret, err->code, "process %u %s", pid, why);
}

/* One helper per open file description fds share (dup, fork): opened
 * here once, dup3'd into every fd that has it, so their offset and
 * status flags stay one. */
static int s_tree_shared(rst_tree_t *t, cairn_error_t *err)
{
    size_t n = rst_n_fds(t->im);
    int ret = 0;

    t->files = calloc(1, sizeof *t->files);
    if (t->files)
        t->files->v = calloc(n + 1, sizeof *t->files->v);
    if (!t->files || !t->files->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < t->im->n_procs && ret >= 0; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n && ret >= 0; j++) {
            const Cairn__Ghost__Fd *f = pr->fds.v[j]->fd, *o;
            if (!f->shares || s_find_ofd(t, f->shares_pid, f->shares_fd))
                continue;
            if (!(o = s_share_origin(t->im, i, f, err)))
                return -EBADMSG;
            ret = s_open_description(t, o, err);
            if (ret < 0)
                return s_in_process(err, ret, f->shares_pid);
            ret = rst_helper(t, ret, err);
            if (ret >= 0)
                t->files->v[t->files->n++] = (s_ofd_t){ f->shares_pid, f->shares_fd, ret };
        }
    }
    return ret < 0 ? ret : 0;
}

int files_check_paths(const rst_proc_t *pr, ghost_reasons_t *rs, cairn_error_t *err)
{
    uint32_t pid = pr->process->process->pid;
    int r = 0;

    for (size_t i = 0; r == 0 && i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        const files_kind_t *k = s_kind_of(f->kind);
        struct stat st;
        if (!f->shares && k == &fifo_kind && (stat(f->path, &st) < 0 || !S_ISFIFO(st.st_mode))) {
            r = ghost_reason_add(rs, cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                                                     "process %u fd %d: the named FIFO %s "
                                                     "is gone (or no longer a FIFO)", pid,
                                                     f->fd, f->path),
                                 err, (pid_t)pid, "fd %d", f->fd);
            continue;
        }
        if (f->shares || (k != &s_regular && k != &s_directory && k != &s_chardev))
            continue;   /* an fd sharing a description is checked with its owner */
        /* O_NONBLOCK: an image naming a FIFO or a modem line must not
         * hang the check in open(2). */
        int fd = strstr(f->path, " (deleted)") || f->path[0] != '/'
                     ? cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                                       "fd %d: %s cannot be reopened", f->fd, f->path)
                     : files_reopen(f, f->path,
                                    O_NONBLOCK | (k == &s_directory ? O_DIRECTORY : 0),
                                    k == &s_regular, err);
        if (fd >= 0)
            close(fd);
        else
            s_in_process(err, fd, pid);
        r = ghost_reason_add(rs, fd < 0 ? fd : 0, err, (pid_t)pid, "fd %d", f->fd);
    }
    return r;
}

int files_each_fd(rst_tree_t *t,
                  int (*fn)(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f,
                            cairn_error_t *err),
                  cairn_error_t *err)
{
    int ret = 0;

    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n && ret == 0; j++)
            ret = fn(t, pr->process->process->pid, pr->fds.v[j]->fd, err);
    }
    return ret;
}

int files_plan(rst_tree_t *t, cairn_error_t *err)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < S_NKINDS; i++)
        if (s_kinds[i]->plan)
            ret = s_kinds[i]->plan(t, err);
    return ret < 0 ? ret : s_tree_shared(t, err);
}

/* ---- restore: the child's fds ------------------------------------------ */

static void s_child_place(const rst_plan_t *pl, int fd, int target, bool cloexec)
{
    if (fd != target) {
        if (dup3(fd, target, cloexec ? O_CLOEXEC : 0) < 0)
            rst_child_fail(pl, errno, target, "fd %d: dup3: %s", target,
                           strerror(errno));
        close(fd);
    } else if (!cloexec) {
        fcntl(fd, F_SETFD, 0);
    }
}

/* An fd whose open file description no other fd shares: opened here. */
static void s_child_open(const rst_plan_t *pl, const Cairn__Ghost__Fd *f)
{
    cairn_error_t e;
    int fd = s_open_description(pl->tree, f, &e);

    if (fd < 0)
        rst_child_fail(pl, -fd, f->fd, "%s", e.message);
    s_child_place(pl, fd, f->fd, f->cloexec);
}

/* An fd on a description the caller opened once for every fd sharing it
 * (s_tree_shared), with its own close-on-exec flag. */
static void s_child_shared(const rst_plan_t *pl, const s_ofd_t *o,
                           const Cairn__Ghost__Fd *f)
{
    if (dup3(o->helper, f->fd, f->cloexec ? O_CLOEXEC : 0) < 0)
        rst_child_fail(pl, errno, f->fd, "fd %d: dup3 of a shared open file: %s",
                       f->fd, strerror(errno));
}

void files_child(const rst_plan_t *pl, const rst_proc_t *pr)
{
    uint32_t pid = pr->process->process->pid;

    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        const s_ofd_t *o = f->shares ? s_find_ofd(pl->tree, f->shares_pid, f->shares_fd)
                                     : s_find_ofd(pl->tree, pid, f->fd);
        const files_kind_t *k = s_kind_of(f->kind);
        if (k && k->child)
            k->child(pl, f);
        else if (o)
            s_child_shared(pl, o, f);
        else
            s_child_open(pl, f);
    }
    /* An epoll watches fds by their numbers here: all of them are in
     * place now. The fd owning the instance adds them; those sharing it
     * see them. */
    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        cairn_error_t e;
        const files_kind_t *k = s_kind_of(f->kind);
        int r = k && k->finish && !f->shares ? k->finish(f, &e) : 0;
        if (r == 0)
            r = locks_take(f, &e);   /* flock, OFD; POSIX ones in the blob */
        if (r < 0)
            rst_child_fail(pl, -r, f->fd, "%s", e.message);
    }
}
