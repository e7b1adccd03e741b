/* rst.c - what every kind's restore side shares with restore.c: the
 * error of a malformed image, the bump allocator over a process's region,
 * the helper fds the whole tree inherits, and the failure report of a
 * child's libc stage.
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
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"

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
    if (t->n_helpers == t->cap_helpers) {
        size_t cap = t->cap_helpers ? t->cap_helpers * 2 : 64;
        int *v = realloc(t->helpers, cap * sizeof *v);
        if (!v) {
            close(h);
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        }
        t->helpers = v;
        t->cap_helpers = cap;
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
