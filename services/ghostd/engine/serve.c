/* serve.c - the tracker of incremental checkpoints (serve.h).
 *
 * Design. The chain lives in one directory: image.ghost.N files, N
 * growing, each written as image.ghost.N.part and renamed when complete
 * (fsync'ed by the dump); image.ghost, a symlink replaced atomically
 * (rename), names the newest complete one. A full image starts a chain;
 * each delta names the one before it (header parent, parent_id) and holds
 * the pages written since, the rest as kept_pages. A chain is only
 * removed once a newer full image is complete and image.ghost points at
 * it, so a restore always finds a whole chain behind image.ghost.
 *
 * A checkpoint is full when it is the first in DIR, when the last one
 * failed, when the tree's processes are not the ones tracked (the
 * tracking is started again: a new process's writes are unknown), or for
 * compaction: compact_every deltas since the full one, or the chain's
 * bytes over twice the full one's. A mapping made since the last
 * checkpoint is no reason: the freeze registers it and copies its pages
 * (track_scan_checkpoint).
 *
 * The tracking survives the checkpoints: the userfaultfds are ours, made
 * once; the tree is seized only for each freeze. If this process dies,
 * the kernel drops every registration with its fds: the tree runs on,
 * untracked, nothing write-protected.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "owner.h"
#include "report.h"
#include "serve.h"
#include "track.h"
#include "tree.h"
#include "util/fileio.h"

#define S_BASE "image.ghost"

/* The tracker's state between checkpoints. */
typedef struct s_serve {
    pid_t pid;
    const ghost_serve_opts_t *o;
    track_t *t;             /* NULL: to be started before the next one */
    bool need_full;         /* the last one failed */
    char dir[PATH_MAX];     /* the chain's directory, "" before the first */
    uint64_t base, n;       /* the chain: image.ghost.base .. image.ghost.n */
    uint64_t last_id;       /* image.ghost.n's image_id */
    uint64_t full_bytes;    /* image.ghost.base's bytes */
    uint64_t chain_bytes;   /* the whole chain's */
    uint32_t deltas;        /* since the full one */
    uint64_t done;          /* checkpoints written */
} s_serve_t;

static int s_fs_user(const s_serve_t *s, cairn_error_t *err)
{
    return s->o->owner ? ghost_owner_fs_enter(s->o->owner, err) : 0;
}

static void s_fs_root(const s_serve_t *s)
{
    if (s->o->owner)
        ghost_owner_fs_leave(s->o->owner, NULL);
}

/* The highest N of an image.ghost.N in dir (0 if none). */
static uint64_t s_highest(const char *dir)
{
    DIR *d = opendir(dir);
    uint64_t max = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, S_BASE ".", sizeof(S_BASE)) != 0)
            continue;
        unsigned long long v = strtoull(e->d_name + sizeof(S_BASE), &end, 10);
        if (*end == '\0' && v > max)
            max = v;
    }
    if (d)
        closedir(d);
    return max;
}

/* Removes every image.ghost.M (and .part) in dir with M < keep. */
static void s_remove_before(const char *dir, uint64_t keep)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end, path[PATH_MAX];
        if (strncmp(e->d_name, S_BASE ".", sizeof(S_BASE)) != 0)
            continue;
        unsigned long long v = strtoull(e->d_name + sizeof(S_BASE), &end, 10);
        if ((*end == '\0' || strcmp(end, ".part") == 0) && v < keep &&
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
            unlink(path);
    }
    if (d)
        closedir(d);
}

/* dir/image.ghost now names image.ghost.n: a new symlink renamed over it. */
static int s_point_latest(const char *dir, uint64_t n, cairn_error_t *err)
{
    char target[64], tmp[PATH_MAX], latest[PATH_MAX];
    snprintf(target, sizeof(target), S_BASE ".%llu", (unsigned long long)n);
    if (snprintf(tmp, sizeof(tmp), "%s/." S_BASE ".link", dir) >= (int)sizeof(tmp) ||
        snprintf(latest, sizeof(latest), "%s/" S_BASE, dir) >= (int)sizeof(latest))
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT, "%s: path too long",
                               dir);
    unlink(tmp);
    if (symlink(target, tmp) < 0 || rename(tmp, latest) < 0) {
        int e = errno;
        unlink(tmp);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "cannot point %s at %s: %s", latest,
                               target, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Why this one must be full (NULL: a delta will do); the tracking is
 * started again first when the tree changed. */
static const char *s_why_full(s_serve_t *s, const char *dir, cairn_error_t *err, int *ret)
{
    *ret = 0;
    pid_t *tree = NULL;
    size_t n = 0;
    const char *why = NULL;
    if (tree_list(s->pid, &tree, &n, err) < 0) {
        *ret = -ESRCH;
        return "the tree is gone";
    }
    if (s->t && !track_same_tree(s->t, tree, n, 2)) {
        s->t = track_free(s->t);
        why = "the tree changed (processes born or gone)";
    }
    free(tree);
    if (!s->t) {
        uint64_t us;
        if ((*ret = track_start(s->pid, &s->t, &us, err)) < 0)
            return "the tracking could not start";
        why = why ? why : s->done ? "the tracking started again" : "the first checkpoint";
    }
    if (why)
        return why;
    if (strcmp(dir, s->dir) != 0)
        return "a new directory";
    if (s->need_full)
        return "the last checkpoint failed";
    if (s->deltas >= s->o->compact_every)
        return "compaction: enough deltas";
    if (s->chain_bytes > 2 * s->full_bytes)
        return "compaction: the chain outgrew twice the full image";
    return NULL;
}

static json_t *s_chain_json(const s_serve_t *s)
{
    json_t *a = json_array();
    for (uint64_t i = s->base; a && i <= s->n; i++)
        json_array_append_new(a, json_sprintf(S_BASE ".%llu", (unsigned long long)i));
    return a;
}

static void s_answer(const s_serve_t *s, const char *path, const char *why,
                     const ghost_dump_stats_t *st)
{
    json_t *j = json_pack("{s:I,s:s,s:s+,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}",
                          "checkpoint", (json_int_t)s->n, "image", path,
                          "latest", s->dir, "/" S_BASE,
                          "full", why != NULL,
                          "freeze_us", (json_int_t)st->freeze_us,
                          "frozen_us", (json_int_t)st->frozen_us,
                          "dump_us", (json_int_t)st->dump_us,
                          "image_bytes", (json_int_t)st->image_bytes,
                          "pages", (json_int_t)st->pages,
                          "kept_pages", (json_int_t)st->kept_pages,
                          "processes", (json_int_t)st->processes,
                          "chain_bytes", (json_int_t)s->chain_bytes,
                          "pid", (json_int_t)s->pid, "chain", s_chain_json(s));
    if (j) {
        json_object_set_new(j, "why_full", why ? json_string(why) : json_null());
        json_object_set_new(j, "job", json_boolean(st->job));
        json_object_set_new(j, "steps_us", ghost_steps_json(&st->steps));
        json_object_set_new(j, "dumper_us", ghost_dumper_json(st));
        json_object_set_new(j, "durable_us", json_integer((json_int_t)st->durable_us));
    }
    ghost_report(j);
}

/* One checkpoint into dir; answers either way. */
static int s_checkpoint(s_serve_t *s, const char *dir)
{
    cairn_error_t err;
    ghost_reasons_t rs = { 0 };
    ghost_dump_stats_t st = { 0 };
    char part[PATH_MAX], path[PATH_MAX], parent[64];
    int r = 0;
    const char *why = s_why_full(s, dir, &err, &r);
    if (r < 0)
        goto fail;
    bool fresh = strcmp(dir, s->dir) != 0;
    if ((r = s_fs_user(s, &err)) < 0)
        goto fail;
    r = cairn_mkdir_p(dir, 0700);
    if (r < 0)
        cairn_error_set(&err, r, r == -EACCES || r == -EPERM ? CAIRN_PERMISSION_DENIED
                                                              : CAIRN_SYSTEM,
                        "cannot make directory %s: %s", dir, strerror(-r));
    uint64_t n = fresh ? s_highest(dir) + 1 : s->n + 1;
    snprintf(parent, sizeof(parent), S_BASE ".%llu", (unsigned long long)s->n);
    if (r == 0 && (snprintf(path, sizeof(path), "%s/" S_BASE ".%llu", dir,
                            (unsigned long long)n) >= (int)sizeof(path) - 8))
        r = cairn_error_set(&err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT, "%s: path too long",
                            dir);
    if (r == 0 && snprintf(part, sizeof(part), "%s.part", path) >= (int)sizeof(part))
        r = cairn_error_set(&err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT, "%s: path too long",
                            dir);
    int fd = r == 0 ? open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (r == 0 && fd < 0)
        r = cairn_error_set(&err, -errno, CAIRN_SYSTEM, "cannot create %s: %s", part,
                            strerror(errno));
    s_fs_root(s);
    if (r < 0)
        goto fail;
    uint64_t id = 0;
    while (id == 0 && getrandom(&id, sizeof(id), 0) != sizeof(id))
        ;
    ghost_dump_opts_t o = { .leave_running = true, .track = s->t, .delta = why == NULL,
                            .parent = parent, .parent_id = s->last_id, .image_id = id,
                            .owner = s->o->owner, .reasons = &rs,
                            .ghost_file_max = s->o->ghost_file_max };
    r = ghost_dump(s->pid, &o, fd, &st, &err);
    if (close(fd) < 0 && r == 0)
        r = cairn_error_set(&err, -errno, CAIRN_SYSTEM, "closing %s: %s", part,
                            strerror(errno));
    cairn_error_t fs_err;
    if (s_fs_user(s, &fs_err) < 0) {
        if (r == 0)
            err = fs_err, r = -EPERM;
    } else {
        if (r == 0 && rename(part, path) < 0)
            r = cairn_error_set(&err, -errno, CAIRN_SYSTEM, "renaming %s: %s", part,
                                strerror(errno));
        if (r == 0)
            r = s_point_latest(dir, n, &err);
        if (r < 0)
            unlink(part);
        else if (why)   /* the new full image is whole and named: the old chain goes */
            s_remove_before(dir, n);
        s_fs_root(s);
    }
    if (r < 0)
        goto fail;
    if (why) {
        size_t len = strnlen(dir, sizeof(s->dir) - 1);   /* shorter: path was made of it */
        memcpy(s->dir, dir, len);
        s->dir[len] = '\0';
        s->base = n;
        s->full_bytes = s->chain_bytes = 0;
        s->deltas = 0;
    } else {
        s->deltas++;
    }
    s->n = n;
    s->last_id = id;
    s->chain_bytes += st.image_bytes;
    s->full_bytes = why ? st.image_bytes : s->full_bytes;
    s->need_full = false;
    s->done++;
    if (st.untracked > 0)   /* born since: the next one tracks them too */
        s->t = track_free(s->t);
    s_answer(s, path, why, &st);
    ghost_reasons_free(&rs);
    return 0;
fail:
    s->need_full = true;
    s->t = track_free(s->t);   /* whatever happened, start clean */
    ghost_report_refusal(&err, rs.n ? &rs : NULL, 1);
    ghost_reasons_free(&rs);
    return r;
}

/* One line from fd into buf (without its newline); 0 at the end of fd,
 * 1 for a line, -1 for one too long (the rest of it is skipped). */
static int s_read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;
    bool over = false;
    for (;;) {
        char c;
        ssize_t k = read(fd, &c, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return n > 0 || over ? (over ? -1 : (buf[n] = '\0', 1)) : 0;
        if (c == '\n')
            break;
        if (n + 1 < size)
            buf[n++] = c;
        else
            over = true;
    }
    buf[n] = '\0';
    return over ? -1 : 1;
}

int ghost_serve(pid_t pid, int cmd_fd, const ghost_serve_opts_t *o)
{
    s_serve_t s = { .pid = pid, .o = o };
    char line[PATH_MAX + 32];
    cairn_error_t err;
    int code = 0;
    for (;;) {
        int k = s_read_line(cmd_fd, line, sizeof(line));
        if (k == 0)
            break;
        if (k < 0 || strncmp(line, "checkpoint ", 11) != 0 || line[11] != '/') {
            cairn_error_set(&err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                            "unknown command (one line: checkpoint /ABSOLUTE/DIR)");
            ghost_report_error(&err, 1);
            continue;
        }
        if (s_checkpoint(&s, line + 11) == -ESRCH && tree_gone(pid)) {
            code = 1;   /* nothing left to track */
            break;
        }
    }
    track_free(s.t);
    ghost_report(json_pack("{s:b,s:I}", "stopped", 1, "checkpoints", (json_int_t)s.done));
    return code;
}
