/* rst.c - what every kind's restore side shares with restore.c: the
 * error of a malformed image, the bump allocator over a process's region,
 * the helper fds the whole tree inherits (with the control pipes), the
 * failure report of a child's libc stage, and the image as loaded.
 *
 * It sits in the ghost-engine library with the kinds (whose files hold
 * both directions), away from restore.c and the restorer blob, so that
 * ghost-dump links the kinds without the blob.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "pages.h"
#include "files.h"
#include "lazy.h"
#include "ghostfile.h"
#include "pipes.h"
#include "tty.h"
#include "restore-inplace.h"
#include "shmem.h"
#include "unixsk.h"
#include "util/array.h"

int rst_bad(cairn_error_t *err, const char *what, uint64_t at)
{
    return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                           "bad image: %s (at byte %llu)", what,
                           (unsigned long long)at);
}

void *rst_alloc(rst_plan_t *pl, size_t len, size_t align)
{
    uint64_t at = RST_ALIGN(pl->used, align);

    if (at + len > pl->region_len)
        return NULL;
    pl->used = at + len;
    return pl->region + at;
}

/* Moves fd above every image fd and files it as a helper (closing fd). */
int rst_helper(rst_tree_t *t, int fd, cairn_error_t *err)
{
    int h;

    if (fd < 0)
        return cairn_error_set(err, -EBADF, CAIRN_SYSTEM, "helper fd: %s",
                               strerror(errno));
    h = fcntl(fd, F_DUPFD_CLOEXEC, t->base_fd);
    close(fd);
    if (h < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "moving a helper fd above %d: %s", t->base_fd,
                               strerror(errno));
    if (CAIRN_GROW(t->helpers, t->cap_helpers, t->n_helpers + 1, 64) < 0) {
        close(h);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    t->helpers[t->n_helpers++] = h;
    return h;
}

void rst_child_fail(const rst_plan_t *pl, int e, int fd, const char *fmt, ...)
{
    struct gr_status st = { .stage = GR_STAGE_CHILD, .err = e,
                            .arg = (uint64_t)fd,
                            .pid = (int32_t)syscall(SYS_getpid) };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st.msg, sizeof st.msg, fmt, ap);
    va_end(ap);
    if (write(pl->tree->status_w, &st, sizeof st) < 0)
        _exit(2);
    _exit(1);
}

/* ---- the image as loaded ----------------------------------------------- */

static void s_recs_free(rst_recs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        cairn__ghost__record__free_unpacked(r->v[i], NULL);
    free(r->v);
    *r = (rst_recs_t){ 0 };
}

int rst_recs_add(rst_recs_t *r, rst_rec_t *rec)
{
    if (CAIRN_GROW(r->v, r->cap, r->n + 1, 16) < 0)
        return -ENOMEM;
    r->v[r->n++] = rec;
    return 0;
}

static void s_proc_free(rst_proc_t *pr)
{
    if (pr->process)
        cairn__ghost__record__free_unpacked(pr->process, NULL);
    s_recs_free(&pr->threads);
    s_recs_free(&pr->vmas);
    s_recs_free(&pr->fds);
    free(pr->runs);
    free(pr->lazy);
    *pr = (rst_proc_t){ 0 };
}

void rst_image_free(rst_image_t *im)
{
    if (im->header)
        cairn__ghost__record__free_unpacked(im->header, NULL);
    if (im->end)
        cairn__ghost__record__free_unpacked(im->end, NULL);
    for (size_t i = 0; i < im->n_procs; i++)
        s_proc_free(&im->procs[i]);
    s_recs_free(&im->ghost_files);
    free(im->procs);
    free(im->objruns);
    pages_rounds_free(im->rounds);
    inplace_free(im->inplace);
    if (im->staging_fd >= 0)
        close(im->staging_fd);
    *im = (rst_image_t){ .staging_fd = -1 };
}

/* ---- the tree's helper fds and control pipes --------------------------- */

static int s_ctl_pipe(rst_tree_t *t, int *ret_mine, int *ret_helper,
                      bool helper_reads, cairn_error_t *err)
{
    int e[2];

    if (pipe2(e, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s",
                               strerror(errno));
    *ret_mine = e[helper_reads ? 1 : 0];
    *ret_helper = rst_helper(t, e[helper_reads ? 0 : 1], err);
    return *ret_helper < 0 ? *ret_helper : 0;
}

/* base_fd above every fd of every process; the control pipes; the pid
 * table every process writes its restored pid into. */
int rst_tree_ctl(rst_tree_t *t, cairn_error_t *err)
{
    int max = 2, ret;

    for (size_t i = 0; i < t->im->n_procs; i++)
        for (size_t j = 0; j < t->im->procs[i].fds.n; j++)
            if (t->im->procs[i].fds.v[j]->fd->fd > max)
                max = t->im->procs[i].fds.v[j]->fd->fd;
    if (max > 65535)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "fd %d is above what the restorer handles", max);
    t->base_fd = max + 1;
    t->pids = mmap(NULL, t->im->n_procs * sizeof *t->pids,
                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t->pids == MAP_FAILED) {
        t->pids = NULL;
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pid table: %s",
                               strerror(errno));
    }
    ret = s_ctl_pipe(t, &t->status_r, &t->status_w, false, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->go_w, &t->go_r, true, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->ready_r, &t->ready_w, false, err);
    if (ret == 0)
        ret = s_ctl_pipe(t, &t->sync_w, &t->sync_r, true, err);
    if (ret == 0)
        ret = rst_helper(t, dup(t->im->staging_fd), err);
    if (ret >= 0)
        t->staging_fd = ret;
    return ret < 0 ? ret : 0;
}

size_t rst_n_fds(const rst_image_t *im)
{
    size_t n = 0;

    for (size_t i = 0; i < im->n_procs; i++)
        n += im->procs[i].fds.n;
    return n;
}

/* Helper fds the tree will hold at most: for the close lists. */
size_t rst_helpers_bound(const rst_image_t *im)
{
    size_t n = 16;

    for (size_t i = 0; i < im->n_procs; i++)
        n += im->procs[i].vmas.n + 4 * im->procs[i].fds.n + 1;
    return n;
}

void rst_tree_free(rst_tree_t *t)
{
    for (size_t i = 0; t->plans && i < t->im->n_procs; i++)
        if (t->plans[i].region)
            munmap(t->plans[i].region, t->plans[i].region_len);
    for (size_t i = 0; i < t->n_helpers; i++)
        close(t->helpers[i]);
    int mine[] = { t->status_r, t->go_w, t->ready_r, t->sync_w };
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        if (mine[i] >= 0)
            close(mine[i]);
    if (t->pids)
        munmap(t->pids, t->im->n_procs * sizeof *t->pids);
    free(t->host_pids);
    free(t->plans);
    free(t->jobs);
    free(t->helpers);
    pipes_rst_free(t);
    tty_rst_free(t);
    unixsk_rst_free(t);
    shmem_rst_free(t);
    files_rst_free(t);
    ghostfile_rst_free(t);
    (void)lazy_srv_finish(t->lazy, true, NULL, NULL);   /* a restore that failed */
    *t = (rst_tree_t){ .status_r = -1, .go_w = -1, .ready_r = -1, .sync_w = -1 };
}
