/* verify-mem.c - the verifier's memory area (verify.h): the memfds of a
 * restored process -- mode, seals and size, through its fds and through
 * map_files for its memfd mappings -- against their Memfd records.
 *
 * The rest of the memory map (vmas, protections, paths, VmFlags, merged
 * neighbours as cosmetic) is verify.c's own memory check, which reads
 * maps or smaps once per process; this file adds only what /proc shows
 * of a memfd beyond its mapping: seals and size, and the mode of one
 * only mapped. Any difference is fatal: the restore sets each.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "shmem.h"
#include "util/cleanup.h"
#include "verify.h"

/* The memfd opened as path against its record m (what: for messages). */
static void s_verify_memfd(const rst_proc_t *pr, const char *path, const char *what,
                           const Cairn__Ghost__Memfd *m, ghost_verify_t *vr)
{
    char want[192], got[192];
    Cairn__Ghost__Memfd now;
    snprintf(want, sizeof want, "mode %04o seals %#x size %llu", m->mode, m->seals,
             (unsigned long long)m->size);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || shmem_memfd_read(fd, path, &now, NULL) < 0) {
        ghost_verify_differ(vr, pr, false, what, want, "unreadable");
        return;
    }
    snprintf(got, sizeof got, "mode %04o seals %#x size %llu", now.mode, now.seals,
             (unsigned long long)now.size);
    if (strcmp(want, got) != 0)
        ghost_verify_differ(vr, pr, false, what, want, got);
}

int mem_verify(const rst_proc_t *pr, pid_t pid, ghost_verify_t *vr, cairn_error_t *err)
{
    char path[96], what[128];
    (void)err;   /* an unreadable memfd is a difference, not an error */
    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        if (f->kind != CAIRN__GHOST__FD_KIND__FD_MEMFD || !f->memfd || !f->memfd->has)
            continue;
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, f->fd);
        snprintf(what, sizeof what, "fd %d memfd", f->fd);
        s_verify_memfd(pr, path, what, f->memfd, vr);
    }
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind != CAIRN__GHOST__VMA_KIND__VMA_MEMFD || !v->memfd || !v->memfd->has)
            continue;
        snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", (int)pid,
                 (unsigned long long)v->start, (unsigned long long)v->end);
        snprintf(what, sizeof what, "memfd %s at %#llx", v->path, (unsigned long long)v->start);
        s_verify_memfd(pr, path, what, v->memfd, vr);
    }
    return 0;
}
