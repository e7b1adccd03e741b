/* files.h - the fd table of a process, and the table of fd kinds
 * (files.c).
 *
 * Every fd kind is one files_kind_t: how the dump recognises an fd of it
 * and records it, how the restore checks, plans, opens or places it. A
 * kind's entry sits in the file of that kind (pipes.c, shmem.c) or, for
 * the plain ones, in files.c; files.c lists them and dispatches. Adding a
 * kind is writing its entry and listing it there. Ops a kind does not
 * need are NULL.
 */
#ifndef GHOST_FILES_H
#define GHOST_FILES_H

#include <sys/stat.h>

#include "anonfd.h"
#include "engine.h"

/* What the dump knows of an fd before its kind is decided. */
typedef struct files_probe {
    pid_t pid;                 /* its process */
    int fd;                    /* its number */
    const char *path;          /* its /proc/PID/fd link */
    const struct stat *st;     /* stat through that link */
    const proc_fdinfo_t *fi;   /* its fdinfo */
    ghost_anon_t *anon;        /* an anon-inode fd's state goes here */
    uint64_t ghost_file_max;   /* ghost_dump_opts_t's (0: the default) */
    const char *info;          /* its fdinfo's whole text */
} files_probe_t;

/* An fd the whole-tree checks look at (files_kind_t.tree_fd). */
typedef struct files_tree_fd {
    Cairn__Ghost__FdKind kind;
    bool write_end;            /* a pipe's write end */
    uint64_t ino;              /* pipe inode, memfd object; 0 if none */
    pid_t pid;                 /* holder */
    int fd;                    /* its fd number */
} files_tree_fd_t;

/* Gathered while the tree's fds are checked (the caller frees v). */
typedef struct files_tree_fds {
    files_tree_fd_t *v;        /* in scan order */
    size_t n, cap;             /* used and allocated entries */
    uint64_t ghost_file_max;   /* input: ghost_dump_opts_t's */
} files_tree_fds_t;

#define FILES_NOT_MINE 1   /* files_kind_t.describe: another kind's fd */

typedef struct files_kind {
    const char *name;
    Cairn__Ghost__FdKind first, last;   /* the Fd kinds it owns */
    mode_t mode;               /* file type (S_IFMT bits) it may claim at
                                  dump; 0: no file type (anon inodes) */
    bool by_description;       /* fds sharing an open file description are
                                  found by kcmp (not pipes: by pipe_id) */

    /* dump */
    /* Claims the fd: sets f->kind and its fields, 0; FILES_NOT_MINE if
     * it is not of this kind; else -errno, a refusal with its reason (an
     * -ENOENT is an fd closed meanwhile). f's common fields (fd, flags,
     * pos, dev, ino, path) are set. */
    int (*describe)(const files_probe_t *p, Cairn__Ghost__Fd *f,
                    cairn_error_t *err);
    /* Whether the whole-tree checks need f; fills ino and write_end. */
    bool (*tree_fd)(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret);
    /* Refuses a tree whose fds of this kind cannot come back together:
     * each refusal into rs (reasons.h), or the first without rs. */
    int (*check_tree)(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                      cairn_error_t *err);
    /* Records what f needs beyond its fields as it is written (data that
     * f then points to until release). */
    int (*record)(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f,
                  cairn_error_t *err);
    void (*release)(Cairn__Ghost__Fd *f);
    /* After a process's fds: what they brought (a memfd's contents). */
    int (*flush)(dump_ctx_t *c, cairn_error_t *err);

    /* restore */
    /* Whether a loaded record is whole: 0 or -EBADMSG. */
    int (*check)(const Cairn__Ghost__Fd *f, cairn_error_t *err);
    /* Before any process exists: the tree-wide objects (helpers). */
    int (*plan)(rst_tree_t *t, cairn_error_t *err);
    /* A new open file description for f, O_CLOEXEC: the fd or -errno. */
    int (*open)(const rst_tree_t *t, const Cairn__Ghost__Fd *f,
                cairn_error_t *err);
    /* In the child, instead of open: puts f into its number itself
     * (fails the child on error). */
    void (*child)(const rst_plan_t *pl, const Cairn__Ghost__Fd *f);
    /* In the child, once every fd is in place (f owns its description). */
    int (*finish)(const Cairn__Ghost__Fd *f, cairn_error_t *err);
} files_kind_t;

/* ---- dump -------------------------------------------------------------- */

/* Describes every fd of pid (refusing what cannot be dumped: each refusal
 * into rs and on, reasons.h; without rs the first is returned) and adds
 * those the tree checks need to *tfds. */
int files_check(pid_t pid, files_tree_fds_t *tfds, ghost_reasons_t *rs,
                cairn_error_t *err);

/* Drops what the check of pid (which left the tree) added. */
void files_forget(files_tree_fds_t *tfds, pid_t pid);

/* The checks of a whole tree's fds, before and after the freeze. */
int files_check_tree(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                     cairn_error_t *err);

files_dump_t *files_dump_new(void);
files_dump_t *files_dump_free(files_dump_t *fs);   /* NULL-safe; NULL */

/* The fd records of p (its fds[0..n)), then what they brought. */
int files_write(dump_ctx_t *c, dump_proc_t *p, const int *fds, size_t n,
                cairn_error_t *err);

/* ---- restore ----------------------------------------------------------- */

/* Every fd record of pr is of a kind this restorer recreates, and whole. */
int files_check_loaded(const rst_proc_t *pr, cairn_error_t *err);

/* Restore check: every fd of pr reopened by its path (regular files,
 * directories, devices) can be opened here as the plan and the child
 * would open it, and is closed again; each refusal into rs (reasons.h),
 * with the message the restore would give. */
int files_check_paths(const rst_proc_t *pr, ghost_reasons_t *rs, cairn_error_t *err);

/* Each kind's tree-wide objects, then one helper per open file
 * description that fds share. */
int files_plan(rst_tree_t *t, cairn_error_t *err);

void files_rst_free(rst_tree_t *t);

/* Calls fn on every fd record of the image, in image order (pid: its
 * process's), until one fails: 0 or that failure. For the plans of the
 * kinds that make tree-wide objects (pipes, unlinked files). */
int files_each_fd(rst_tree_t *t,
                  int (*fn)(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f,
                            cairn_error_t *err),
                  cairn_error_t *err);

/* In the child's libc stage: every fd of pr into its number. */
void files_child(const rst_plan_t *pl, const rst_proc_t *pr);

/* Opens path for fd record f with f's status flags (| extra), O_CLOEXEC
 * and O_NOCTTY, seeking to f->pos if seek: the fd or -errno (the message
 * names f->path). */
int files_reopen(const Cairn__Ghost__Fd *f, const char *path, int extra,
                 bool seek, cairn_error_t *err);

#endif
