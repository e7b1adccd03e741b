/* mem.c - the vmas of a process, both directions; what they hold is
 * pages.c's.
 *
 * Dump side. The check reads every vma with its smaps flags (reused from
 * the check before the freeze while the layout is line for line the
 * same) and refuses what cannot come back. Each vma then goes out as a
 * record: its kind, the size and mtime of a private mapping's file (the
 * restore checks them), and whether its pages are dumped, by the policy
 * that pages.c follows (mem_dump_policy).
 *
 * Restore side. The plan lists the target vmas (files opened as helpers,
 * shared memory from shmem.c), moves our vdso/vvar where the image had
 * them (same kernel, same layout, else a refusal), places the region
 * where it is free in both layouts and sets the mm layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08   /* 6.11 */
#endif

#include "mem.h"
#include "shmem.h"
#include "track.h"
#include "util/cleanup.h"

/* ---- dump: the check --------------------------------------------------- */

/* The vma kind from its maps line. 0, or a refusal. */
int mem_vma_kind(pid_t pid, const proc_vma_t *v, Cairn__Ghost__VmaKind *ret,
                 cairn_error_t *err)
{
    const char *p = v->path;
    bool special = strcmp(p, "[vdso]") == 0 || strncmp(p, "[vvar", 5) == 0 ||
                   strcmp(p, "[vsyscall]") == 0;
    if (!special && (v->vmflags & (PROC_VMF_IO | PROC_VMF_PFNMAP)))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d maps device memory at %#llx (%s)", (int)pid,
                               (unsigned long long)v->start, p[0] ? p : "anonymous");
    if (!p[0] || strncmp(p, "[anon:", 6) == 0)
        *ret = v->shared ? CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED
                         : CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE;
    else if (strncmp(p, "[anon_shmem:", 12) == 0 || strcmp(p, "/dev/zero (deleted)") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED;
    else if (strcmp(p, "[heap]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_HEAP;
    else if (strcmp(p, "[stack]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_STACK;
    else if (strcmp(p, "[vdso]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VDSO;
    else if (strcmp(p, "[vvar]") == 0 || strcmp(p, "[vvar_vclock]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VVAR;
    else if (strcmp(p, "[vsyscall]") == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL;
    else if (strncmp(p, "/memfd:", 7) == 0)
        *ret = CAIRN__GHOST__VMA_KIND__VMA_MEMFD;
    else if (strncmp(p, "/SYSV", 5) == 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d attaches SysV shared memory %s at %#llx: a "
                               "system object outside the tree, not restorable",
                               (int)pid, p, (unsigned long long)v->start);
    else if (p[0] != '/' || engine_has_suffix(p, " (deleted)") ||
             strncmp(p, "/dev/", 5) == 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d maps %s at %#llx (not restorable)", (int)pid,
                               p, (unsigned long long)v->start);
    else
        *ret = v->shared ? CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED
                         : CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE;
    return 0;
}

void mem_seen_free(mem_seen_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        proc_vmas_free(&l->v[i].vm);
    free(l->v);
    *l = (mem_seen_t){ 0 };
}

const proc_vmas_t *mem_seen_find(const mem_seen_t *l, pid_t pid)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->v[i].pid == pid)
            return &l->v[i].vm;
    return NULL;
}

/* Whether b is a, or a grown or shrunk at one end (a heap's brk, a
 * stack growing down): the same mapping, whose flags are a's. */
static bool s_same_mapping(const proc_vma_t *a, const proc_vma_t *b)
{
    return (a->start == b->start || a->end == b->end) && a->prot == b->prot &&
           a->shared == b->shared && a->dev == b->dev && a->ino == b->ino &&
           (a->start != b->start || a->pgoff == b->pgoff) && strcmp(a->path, b->path) == 0;
}

/* A mapping made since the earlier read: its flags from what maps says.
 * false when it might be device memory (io, pf: only smaps tells) --
 * anything but anonymous memory or a regular file. */
static bool s_flags_from_maps(proc_vma_t *v)
{
    const char *p = v->path;
    if (p[0] && strncmp(p, "[anon:", 6) != 0 && strcmp(p, "[heap]") != 0 &&
        (p[0] != '/' || strncmp(p, "/dev/", 5) == 0 || v->dev == 0))
        return false;
    v->vmflags = PROC_VMF_HAVE | (v->shared ? PROC_VMF_SHARED : 0);
    return true;
}

/* v's flags are those an earlier read of the same mapping saw. */
static void s_take_flags(proc_vma_t *v, const proc_vma_t *seen)
{
    v->vmflags = seen->vmflags;
    memcpy(v->vmflags_text, seen->vmflags_text, sizeof(v->vmflags_text));
}

/* The vmas of pid with their smaps VmFlags. smaps walks every page table
 * (12 ms a GiB, far more on a busy machine: inside the freeze, the walk
 * post-copy otherwise avoids), so the flags of a mapping an earlier smaps
 * read (before) showed are taken from there -- the same mapping, or it
 * grown at one end -- and those of one made since, anonymous or of a
 * regular file, from maps: the flags the engine uses (gd, io, pf, nr,
 * sh) are fixed when a mapping is made, and such a new one cannot be
 * device memory (io, pf). Its MAP_GROWSDOWN or MAP_NORESERVE is not
 * seen (restored without). Anything else new reads smaps whole. The
 * madvise/mlock/mseal flags can change without a change of layout: a
 * change made between the two reads is not seen, which is why dump.c
 * passes before only for the dumps whose freeze must be short. */
static int s_read_vmas_since(pid_t pid, const proc_vmas_t *before, proc_vmas_t *ret,
                             cairn_error_t *err)
{
    if (!before || before->n == 0)
        return proc_read_vmas(pid, true, ret, err);
    proc_vmas_t now = { 0 };
    int r = proc_read_vmas(pid, false, &now, err);
    if (r < 0)
        return r;
    bool known = true;
    for (size_t i = 0, j = 0; known && i < now.n; i++) {
        proc_vma_t *v = &now.v[i];
        while (j < before->n && before->v[j].end <= v->start)
            j++;   /* both sorted by address */
        if (j < before->n && s_same_mapping(&before->v[j], v))
            s_take_flags(v, &before->v[j]);
        else if (j > 0 && s_same_mapping(&before->v[j - 1], v))
            s_take_flags(v, &before->v[j - 1]);   /* a stack grown below */
        else
            known = s_flags_from_maps(v);
    }
    if (!known) {
        proc_vmas_free(&now);
        return proc_read_vmas(pid, true, ret, err);
    }
    *ret = now;
    return 0;
}

/* The memfd a VMA_MEMFD vma v maps, read through map_files into *m; a
 * refusal when it is mapped writable under a write seal
 * (F_SEAL_FUTURE_WRITE added after the mapping: no new mapping may be
 * writable). The check and the record both read it. */
static int s_memfd_at(pid_t pid, const proc_vma_t *v, Cairn__Ghost__Memfd *m,
                      cairn_error_t *err)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)pid,
             (unsigned long long)v->start, (unsigned long long)v->end);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s (the memfd "
                               "%s, for its mode and seals): %s", path, v->path,
                               strerror(errno));
    int r = shmem_memfd_read(fd, v->path, m, err);
    if (r == 0 && (m->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) && v->shared &&
        (v->prot & PROT_WRITE))
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d maps the memfd %s writable at %#llx under "
                            "a write seal (%#x): not restorable", (int)pid, v->path,
                            (unsigned long long)v->start, m->seals);
    return r;
}

/* The smaps flags of v the restore cannot put back: a refusal naming
 * the first, or 0. The madvise, mlock and mseal flags (mem_plan_vmas)
 * and the may-bits (the access its file is reopened with) are restored. */
static int s_check_vmflags(pid_t pid, const proc_vma_t *v, cairn_error_t *err)
{
    static const struct { uint32_t bit; const char *what; } refused[] = {
        { PROC_VMF_HUGETLB, "is hugetlb memory (ht)" },
        { PROC_VMF_SHADOWSTK, "is a shadow stack (ss)" },
        { PROC_VMF_PKEY, "has a memory protection key (ProtectionKey)" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (v->vmflags & refused[i].bit)
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d: the mapping at %#llx (%s) %s: not restorable",
                                   (int)pid, (unsigned long long)v->start,
                                   v->path[0] ? v->path : "anonymous", refused[i].what);
    if (v->vmflags & PROC_VMF_UNKNOWN)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d: the mapping at %#llx has the VmFlag '%s', "
                               "unknown to this engine: not restorable", (int)pid,
                               (unsigned long long)v->start, v->unknown_flag);
    return 0;
}

/* PAGEMAP_SCAN's category of a guard region page (6.14). */
#define S_PAGE_IS_GUARD (1ull << 8)

/* Guard regions (MADV_GUARD_INSTALL) are markers in the page tables, no
 * vma of their own; smaps says "gu" where one may be (it stays after
 * MADV_GUARD_REMOVE), so PAGEMAP_SCAN asks that vma for its first. A
 * refusal naming it: a guard that came back as memory would turn the
 * program's overflow trap into a silent write. */
static int s_check_guards(pid_t pid, const proc_vma_t *v, cairn_error_t *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                               strerror(errno));
    struct track_page_region reg;
    struct track_pm_scan_arg a = {
        .size = sizeof a, .start = v->start, .end = v->end,
        .vec = (uint64_t)(uintptr_t)&reg, .vec_len = 1, .max_pages = 1,
        .category_anyof_mask = S_PAGE_IS_GUARD, .return_mask = S_PAGE_IS_GUARD,
    };
    long n = ioctl(fd, TRACK_PAGEMAP_SCAN, &a);
    if (n < 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d: the mapping at %#llx may hold guard regions "
                               "(gu) and PAGEMAP_SCAN cannot tell (%s): not restorable",
                               (int)pid, (unsigned long long)v->start, strerror(errno));
    if (n > 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d has a guard region (MADV_GUARD_INSTALL) at %#llx: "
                               "not restorable", (int)pid, (unsigned long long)reg.start);
    return 0;
}

/* Every vma of a kind the engine restores (each refusal into rs, and on:
 * reasons.h). With keep, the vmas read go there on success: the image is written from what the check on the
 * frozen tree saw. before: see s_read_vmas_since. */
int mem_check_vmas(pid_t pid, const proc_vmas_t *before, proc_vmas_t *keep,
                   ghost_reasons_t *rs, cairn_error_t *err)
{
    proc_vmas_t vm = { 0 };
    int r = s_read_vmas_since(pid, before, &vm, err);
    for (size_t i = 0; r == 0 && i < vm.n; i++) {
        Cairn__Ghost__VmaKind k;
        int e = mem_vma_kind(pid, &vm.v[i], &k, err);
        if (e == 0)
            e = s_check_vmflags(pid, &vm.v[i], err);
        if (e == 0 && (vm.v[i].vmflags & PROC_VMF_MAYBE_GUARD))
            e = s_check_guards(pid, &vm.v[i], err);
        Cairn__Ghost__Memfd m;
        if (e == 0 && k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD)
            e = s_memfd_at(pid, &vm.v[i], &m, err);
        r = ghost_reason_add(rs, e, err, pid, "memory at %#llx",
                             (unsigned long long)vm.v[i].start);
    }

    if (r == 0 && keep) {
        proc_vmas_free(keep);
        *keep = vm;
    } else {
        proc_vmas_free(&vm);
    }
    return r;
}

/* One shared object of the tree: its inode and where it first saw it. */
typedef struct s_shared {
    uint64_t dev, ino;
    pid_t pid;             /* a member that maps it */
    uint64_t start;        /* at this address */
    const char *what;      /* "shared anonymous memory" or "a memfd" */
    bool reported;
} s_shared_t;

static bool s_in_tree(const pid_t *tree, size_t n, size_t stride, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (tree[i * stride] == pid)
            return true;
    return false;
}

/* The tree's shared anonymous and memfd objects into *ret (one entry
 * each). */
static int s_shared_objects(const pid_t *tree, size_t n, size_t stride, s_shared_t **ret,
                            size_t *ret_n, cairn_error_t *err)
{
    s_shared_t *v = NULL;
    size_t nv = 0, cap = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        proc_vmas_t vm = { 0 };
        if (proc_read_vmas(tree[i * stride], false, &vm, NULL) < 0)
            continue;   /* gone: the tree's own check says so */
        for (size_t k = 0; r == 0 && k < vm.n; k++) {
            Cairn__Ghost__VmaKind kind;
            const proc_vma_t *m = &vm.v[k];
            if (m->ino == 0 || mem_vma_kind(tree[i * stride], m, &kind, NULL) < 0 ||
                (kind != CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED &&
                 kind != CAIRN__GHOST__VMA_KIND__VMA_MEMFD))
                continue;
            bool known = false;
            for (size_t j = 0; j < nv && !known; j++)
                known = v[j].dev == m->dev && v[j].ino == m->ino;
            if (known)
                continue;
            if (nv == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                s_shared_t *nvp = realloc(v, ncap * sizeof(*v));
                if (!nvp) {
                    r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
                    break;
                }
                v = nvp, cap = ncap;
            }
            v[nv++] = (s_shared_t){ m->dev, m->ino, tree[i * stride], m->start,
                                    kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD
                                        ? "a memfd" : "shared anonymous memory",
                                    false };
        }
        proc_vmas_free(&vm);
    }
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v, *ret_n = nv;
    return 0;
}

int mem_check_shared_outside(const pid_t *tree, size_t n, size_t stride,
                             ghost_reasons_t *rs, cairn_error_t *err)
{
    s_shared_t *objs = NULL;
    size_t nobj = 0, left;
    int r = s_shared_objects(tree, n, stride, &objs, &nobj, err);
    if (r < 0 || nobj == 0) {
        free(objs);
        return r;
    }
    DIR *d = opendir("/proc");
    if (!d) {
        free(objs);
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "opendir /proc: %s",
                               strerror(errno));
    }
    left = nobj;
    struct dirent *e;
    while (r == 0 && left > 0 && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || s_in_tree(tree, n, stride, (pid_t)pid))
            continue;
        proc_vmas_t vm = { 0 };
        if (proc_read_vmas((pid_t)pid, false, &vm, NULL) < 0)
            continue;   /* gone, a kernel thread, or not ours to read */
        for (size_t k = 0; r == 0 && k < vm.n; k++)
            for (size_t j = 0; r == 0 && j < nobj; j++) {
                s_shared_t *o = &objs[j];
                if (o->reported || o->dev != vm.v[k].dev || o->ino != vm.v[k].ino)
                    continue;
                o->reported = true, left--;
                r = ghost_reason_add(
                    rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                        "process %d maps %s at %#llx that process %ld "
                                        "outside the tree maps too: a restored copy "
                                        "would no longer share it",
                                        (int)o->pid, o->what, (unsigned long long)o->start,
                                        pid),
                    err, o->pid, "memory at %#llx", (unsigned long long)o->start);
            }
        proc_vmas_free(&vm);
    }
    closedir(d);
    free(objs);
    return r;
}

/* ---- dump: vma records ------------------------------------------------- */

/* Which pages of a vma of this kind are dumped: 0 none, 1 present only
 * (anonymous private: the rest is zero), 2 all, 3 the present anonymous
 * ones (a private file mapping: the pages the process wrote; the others
 * are the file's, mapped again at restore). A memfd some fd of the tree
 * refers to: none (its object pages hold it all, shmem.c). */
int mem_dump_policy(const dump_ctx_t *c, const proc_vma_t *v,
                    Cairn__Ghost__VmaKind k)
{
    if (k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD && shmem_fd_memfd(c->shmem, v->ino))
        return 0;
    switch (k) {
    case CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE:
    case CAIRN__GHOST__VMA_KIND__VMA_HEAP:
    case CAIRN__GHOST__VMA_KIND__VMA_STACK:
        return 1;
    case CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE:
        return 3;
    case CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED:
    case CAIRN__GHOST__VMA_KIND__VMA_MEMFD:
        return 2;
    default:
        return 0;
    }
}

/* stat of the object a file or shared mapping maps (/proc/PID/map_files:
 * the mapped inode itself, whatever the path now names). */
int mem_map_file_stat(pid_t pid, const proc_vma_t *v, struct stat *st)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)pid,
             (unsigned long long)v->start, (unsigned long long)v->end);
    return stat(path, st) < 0 ? -errno : 0;
}

/* The VmFlags an image keeps: what the restorer puts back, and the
 * may-bits a shared file mapping's file is reopened for. */
#define S_VMF_KEPT (PROC_VMF_DONTDUMP | PROC_VMF_DONTCOPY | PROC_VMF_WIPEONFORK |   \
                    PROC_VMF_HUGEPAGE | PROC_VMF_NOHUGEPAGE | PROC_VMF_MERGEABLE | \
                    PROC_VMF_LOCKED | PROC_VMF_LOCKONFAULT | PROC_VMF_DROPPABLE |  \
                    PROC_VMF_SEQREAD | PROC_VMF_RANDREAD | PROC_VMF_SEALED |       \
                    PROC_VMF_MAYREAD | PROC_VMF_MAYWRITE | PROC_VMF_MAYEXEC |      \
                    PROC_VMF_GROWSDOWN | PROC_VMF_NORESERVE | PROC_VMF_SHARED |    \
                    PROC_VMF_ACCOUNT | PROC_VMF_HAVE)

/* The memfd of v for its record, refused as the image is written when it
 * is sealed against writing and no fd of the tree refers to it (its pages
 * would come in through a writable mapping): only the frozen tree's fds
 * say so. */
static int s_vma_memfd(const dump_ctx_t *c, pid_t pid, const proc_vma_t *v,
                       Cairn__Ghost__Memfd *m, cairn_error_t *err)
{
    int r = s_memfd_at(pid, v, m, err);
    if (r == 0 && (m->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) &&
        !shmem_fd_memfd(c->shmem, v->ino))
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d maps the memfd %s sealed against writing "
                            "(%#x) and no fd of the tree refers to it: not "
                            "restorable", (int)pid, v->path, m->seals);
    return r;
}

static int s_vma_record(const dump_ctx_t *c, pid_t pid, const proc_vma_t *v,
                        Cairn__Ghost__Vma *out, Cairn__Ghost__Memfd *m,
                        cairn_error_t *err)
{
    Cairn__Ghost__VmaKind k;
    int r = mem_vma_kind(pid, v, &k, err);
    if (r < 0)
        return r;
    out->start = v->start, out->end = v->end, out->prot = v->prot;
    out->flags = (v->shared ? MAP_SHARED : MAP_PRIVATE) |
                 ((v->vmflags & PROC_VMF_GROWSDOWN) ? MAP_GROWSDOWN : 0) |
                 ((v->vmflags & PROC_VMF_NORESERVE) ? MAP_NORESERVE : 0);
    out->pgoff = v->pgoff, out->kind = k;
    out->path = (char *)v->path;
    out->smaps_flags = (char *)v->vmflags_text;   /* the verifier's (verify.h) */
    out->dev = v->dev, out->ino = v->ino;
    if (k == CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED || k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD)
        out->shmid = v->ino;
    out->dumped = mem_dump_policy(c, v, k) != 0;
    out->vm_flags = v->vmflags & S_VMF_KEPT;
    if (k == CAIRN__GHOST__VMA_KIND__VMA_MEMFD) {
        if ((r = s_vma_memfd(c, pid, v, m, err)) < 0)
            return r;
        out->memfd = m;
    }
    struct stat st;
    if (k == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE &&
        mem_map_file_stat(pid, v, &st) == 0) {
        out->file_size = (uint64_t)st.st_size;
        out->file_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    return 0;
}

int mem_write_vmas(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm, cairn_error_t *err)
{
    for (size_t i = 0; i < vm->n; i++) {
        Cairn__Ghost__Vma v = CAIRN__GHOST__VMA__INIT;
        Cairn__Ghost__Memfd m = CAIRN__GHOST__MEMFD__INIT;
        int r = s_vma_record(c, p->pid, &vm->v[i], &v, &m, err);
        if (r < 0)
            return r;
        Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
        rec.r_case = CAIRN__GHOST__RECORD__R_VMA;
        rec.vma = &v;
        if ((r = ghost_write_record(c->out.w, &rec, err)) < 0)
            return r;
    }
    return 0;
}

void mem_special_sizes(pid_t pid, uint64_t *vdso, uint64_t *vvar)
{
    proc_vmas_t vm = { 0 };
    *vdso = *vvar = 0;
    if (proc_read_vmas(pid, false, &vm, NULL) < 0)
        return;
    for (size_t i = 0; i < vm.n; i++) {
        if (strcmp(vm.v[i].path, "[vdso]") == 0)
            *vdso += vm.v[i].end - vm.v[i].start;
        else if (strncmp(vm.v[i].path, "[vvar", 5) == 0)
            *vvar += vm.v[i].end - vm.v[i].start;
    }
    proc_vmas_free(&vm);
}

/* ---- restore: the vmas of a process ------------------------------------ */

/* The vma of a process holding [vaddr, vaddr + len). */
const Cairn__Ghost__Vma *mem_vma_of(const rst_proc_t *pr, uint64_t vaddr,
                                    uint64_t len)
{
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (vaddr >= v->start && vaddr + len <= v->end && vaddr + len > vaddr)
            return v;
    }
    return NULL;
}

/* [vaddr, vaddr + len) lies in one writable vma of the process. */
bool mem_writable(const rst_proc_t *pr, uint64_t vaddr, uint64_t len)
{
    const Cairn__Ghost__Vma *v = vaddr ? mem_vma_of(pr, vaddr, len) : NULL;
    return v && (v->prot & PROT_WRITE);
}

/* ---- restore: the plan ------------------------------------------------- */

static bool s_is_special(const char *path)
{
    return !strcmp(path, "[vdso]") || !strcmp(path, "[vvar]") ||
           !strcmp(path, "[vvar_vclock]");
}

/* Where our vdso/vvar pieces go: same kernel, same relative layout. */
static int s_plan_vdso(rst_plan_t *pl, const rst_proc_t *pr,
                       const proc_vmas_t *self, cairn_error_t *err)
{
    const Cairn__Ghost__ImageHeader *h = pl->tree->im->header->header;
    struct gr_args *a = pl->args;
    uint64_t our_vdso = 0, target_vdso = 0, our_total = 0, target_total = 0;
    struct utsname u;

    for (size_t i = 0; i < self->n; i++)
        if (!strcmp(self->v[i].path, "[vdso]"))
            our_vdso = self->v[i].start;
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO)
            target_vdso = v->start;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO ||
            v->kind == CAIRN__GHOST__VMA_KIND__VMA_VVAR)
            target_total += v->end - v->start;
    }
    if (!target_vdso) {
        a->drop_specials = 1;
    } else {
        uname(&u);
        if (strcmp(u.release, h->kernel_release))
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "image dumped on kernel %s, this is %s: "
                                   "its vdso may differ from ours",
                                   h->kernel_release, u.release);
        if (!our_vdso)
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "the image has a vdso but this process "
                                   "has none to move there");
    }
    for (size_t i = 0; i < self->n; i++) {
        const proc_vma_t *s = &self->v[i];
        if (!s_is_special(s->path))
            continue;
        if (a->n_moves == GR_MAX_KEEP - 1)
            return cairn_error_set(err, -ENOTSUP, CAIRN_INTERNAL,
                                   "too many vdso/vvar pieces");
        a->moves[a->n_moves++] = (struct gr_move){
            s->start, s->start - our_vdso + target_vdso, s->end - s->start };
        our_total += s->end - s->start;
    }
    if (target_vdso && our_total != target_total)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "vdso+vvar take %llu bytes in the image, %llu "
                               "here: the layout differs",
                               (unsigned long long)target_total,
                               (unsigned long long)our_total);
    for (size_t i = 0; target_vdso && i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        bool ok = v->kind != CAIRN__GHOST__VMA_KIND__VMA_VDSO &&
                  v->kind != CAIRN__GHOST__VMA_KIND__VMA_VVAR;
        for (uint32_t m = 0; !ok && m < a->n_moves; m++)
            ok = v->start >= a->moves[m].to &&
                 v->end <= a->moves[m].to + a->moves[m].len;
        if (!ok)
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "image %s at %#llx does not match this "
                                   "kernel's vdso/vvar layout", v->path,
                                   (unsigned long long)v->start);
    }
    return 0;
}

/* Whether [start, start + len) is clear of every target vma (with a guard
 * margin, so a growsdown stack or a heap never touches the region). */
static bool s_target_free(const rst_proc_t *pr, uint64_t start, uint64_t len)
{
    const uint64_t margin = 16ull << 20;

    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL)
            continue;
        if (start < v->end + margin && v->start < start + len + margin)
            return false;
    }
    return true;
}

/* Maps the region at a place free in both layouts: candidates just above
 * every target vma, tried with MAP_FIXED_NOREPLACE. */
int mem_map_region(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    for (size_t i = 0; i <= pr->vmas.n; i++) {
        uint64_t at = i < pr->vmas.n ? pr->vmas.v[i]->vma->end : (1ull << 32);
        at = RST_ALIGN(at + (32ull << 20), 1ull << 21);
        if (at + pl->region_len >= RST_TASK_SIZE ||
            !s_target_free(pr, at, pl->region_len))
            continue;
        void *p = mmap((void *)at, pl->region_len,
                       PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == (void *)at) {
            pl->region = p;
            return 0;
        }
        if (p != MAP_FAILED)
            munmap(p, pl->region_len);
    }
    return cairn_error_set(err, -ENOMEM, CAIRN_UNSUPPORTED,
                           "no address range of %llu bytes is free both in "
                           "the target layout and here",
                           (unsigned long long)pl->region_len);
}

/* The file a file-backed vma maps, opened (O_CLOEXEC) and found the same
 * as at the dump: the fd, or -errno with the refusal. */
static int s_open_vma_file_checked(const Cairn__Ghost__Vma *v, cairn_error_t *err)
{
    bool shared = v->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED;
    /* A shared mapping may take PROT_WRITE later (mprotect) only if its
     * file was open for writing: mw says it was. */
    bool may_write = (v->prot & PROT_WRITE) || (v->vm_flags & PROC_VMF_MAYWRITE);
    int mode = shared && may_write ? O_RDWR : O_RDONLY;
    struct stat st;

    if (strstr(v->path, " (deleted)"))
        return cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                               "vma %#llx maps the deleted file %s",
                               (unsigned long long)v->start, v->path);
    /* O_NONBLOCK: a crafted image naming a FIFO must not hang us in
     * open(2); it changes nothing for the mapping. */
    _cleanup_close_ int fd = open(v->path, mode | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "vma %#llx: cannot open %s: %s",
                               (unsigned long long)v->start, v->path,
                               strerror(errno));
    if (fstat(fd, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fstat of %s: %s", v->path,
                               strerror(errno));
    if (v->ino && (uint64_t)st.st_dev == v->dev &&
        (uint64_t)st.st_ino != v->ino)
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                               "%s was replaced since the dump (inode %llu, "
                               "now %llu)", v->path,
                               (unsigned long long)v->ino,
                               (unsigned long long)st.st_ino);
    /* Only its written pages are in the image: the rest must be the same
     * file's as at the dump. */
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (!shared && v->file_mtime_ns &&
        ((uint64_t)st.st_size != v->file_size || mtime != v->file_mtime_ns))
        return cairn_error_set(err, -ESTALE, CAIRN_FAILED_PRECONDITION,
                               "%s changed since the dump (size %llu, mtime %lld ns; "
                               "now %llu, %lld)", v->path,
                               (unsigned long long)v->file_size,
                               (long long)v->file_mtime_ns,
                               (unsigned long long)st.st_size, (long long)mtime);
    return TAKE_FD(fd);
}

/* The file a file-backed vma maps, opened as a helper fd. */
static int s_open_vma_file(rst_plan_t *pl, const Cairn__Ghost__Vma *v,
                           cairn_error_t *err)
{
    int fd = s_open_vma_file_checked(v, err);
    return fd < 0 ? fd : rst_helper(pl->tree, fd, err);
}

int mem_check_files(const rst_proc_t *pr, ghost_reasons_t *rs, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    int r = 0;

    for (size_t i = 0; r == 0 && i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        if (v->kind != CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE &&
            v->kind != CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED)
            continue;
        int fd = s_open_vma_file_checked(v, err);
        if (fd >= 0)
            close(fd);
        r = ghost_reason_add(rs, fd < 0 ? fd : 0, err, (pid_t)p->pid, "memory at %#llx",
                             (unsigned long long)v->start);
    }
    int fd = r == 0 ? open(p->mm->exe_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    if (r == 0 && fd < 0)
        r = ghost_reason_add(rs, cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                                                 "cannot open the executable %s: %s",
                                                 p->mm->exe_path, strerror(errno)),
                             err, (pid_t)p->pid, "executable");
    if (fd >= 0)
        close(fd);
    return r;
}

/* What the restorer puts back on v beyond its mapping (GR_VMA_*), from
 * the VmFlags the image kept. */
static uint32_t s_gr_flags(const Cairn__Ghost__Vma *v)
{
    static const struct { uint32_t vmf, gr; } map[] = {
        { PROC_VMF_DONTDUMP, GR_VMA_DONTDUMP }, { PROC_VMF_DONTCOPY, GR_VMA_DONTFORK },
        { PROC_VMF_WIPEONFORK, GR_VMA_WIPEONFORK }, { PROC_VMF_HUGEPAGE, GR_VMA_HUGEPAGE },
        { PROC_VMF_NOHUGEPAGE, GR_VMA_NOHUGEPAGE }, { PROC_VMF_MERGEABLE, GR_VMA_MERGEABLE },
        { PROC_VMF_SEQREAD, GR_VMA_SEQUENTIAL }, { PROC_VMF_RANDREAD, GR_VMA_RANDOM },
        { PROC_VMF_LOCKED, GR_VMA_LOCK }, { PROC_VMF_LOCKONFAULT, GR_VMA_LOCKONFAULT },
        { PROC_VMF_SEALED, GR_VMA_SEAL },
    };
    uint32_t f = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (v->vm_flags & map[i].vmf)
            f |= map[i].gr;
    /* A droppable mapping is made wipe-on-fork by the kernel itself. */
    if (v->vm_flags & PROC_VMF_DROPPABLE)
        f &= ~GR_VMA_WIPEONFORK;
    return f;
}

/* "[anon:NAME]" (PR_SET_VMA_ANON_NAME; "[anon_shmem:NAME]" for shared
 * memory): NAME copied into the region for the restorer, or 0. */
static int s_anon_name(rst_plan_t *pl, const Cairn__Ghost__Vma *v, uint64_t *ret,
                       cairn_error_t *err)
{
    const char *p = v->path, *name = NULL;
    if (strncmp(p, "[anon:", 6) == 0)
        name = p + 6;
    else if (strncmp(p, "[anon_shmem:", 12) == 0)
        name = p + 12;
    size_t n = name ? strlen(name) : 0;
    *ret = 0;
    if (!name || n < 2 || name[n - 1] != ']')
        return 0;
    char *s = rst_alloc(pl, n, 8);
    if (!s)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    memcpy(s, name, n - 1);
    s[n - 1] = '\0';
    *ret = (uint64_t)(uintptr_t)s;
    return 0;
}

/* Whether one of runs[0..n) holds a page of v (the runs need not be
 * sorted: a scan, made only for s_map_as_is's few candidates). */
static bool s_has_run(const struct gr_run *runs, size_t n, const Cairn__Ghost__Vma *v)
{
    for (size_t i = 0; i < n; i++)
        if (runs[i].vaddr < v->end && v->start < runs[i].vaddr + runs[i].len)
            return true;
    return false;
}

/* A private mapping that was never writable (no "ac": the kernel sets it
 * on the first writable private mapping of a range and keeps it) and has
 * no page of its own in the image is mapped with its own protection, not
 * writable for a copy-in that does not come: it would gain "ac". */
static bool s_map_as_is(const rst_proc_t *pr, const Cairn__Ghost__Vma *v)
{
    return (v->vm_flags & PROC_VMF_HAVE) && !(v->vm_flags & PROC_VMF_ACCOUNT) &&
           !(v->prot & PROT_WRITE) &&
           (v->kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE ||
            v->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE) &&
           !s_has_run(pr->runs, pr->n_runs, v) && !s_has_run(pr->lazy, pr->n_lazy, v);
}

int mem_plan_vmas(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    struct gr_args *a = pl->args;
    int *fds = calloc(pr->vmas.n + 1, sizeof *fds);
    int ret = 0;

    a->vmas = rst_alloc(pl, (pr->vmas.n + 1) * sizeof *a->vmas, 64);
    if (!fds || !a->vmas) {
        free(fds);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    }
    for (size_t i = 0; i < pr->vmas.n && ret >= 0; i++) {
        const Cairn__Ghost__Vma *v = pr->vmas.v[i]->vma;
        struct gr_vma g = { v->start, v->end, 0, -1, v->prot,
                            v->prot | PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS };
        fds[i] = -1;
        switch (v->kind) {
        case CAIRN__GHOST__VMA_KIND__VMA_VDSO:
        case CAIRN__GHOST__VMA_KIND__VMA_VVAR:
        case CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL:
            continue;
        case CAIRN__GHOST__VMA_KIND__VMA_STACK:
            g.map_flags |= v->flags & MAP_GROWSDOWN;
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE:
            g.map_flags |= v->flags & MAP_GROWSDOWN;
            if (v->vm_flags & PROC_VMF_DROPPABLE)
                g.map_flags = MAP_DROPPABLE | MAP_ANONYMOUS;
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_HEAP:
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE:
        case CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED:
            ret = fds[i] = s_open_vma_file(pl, v, err);
            g.fd = fds[i];
            g.pgoff = v->pgoff;
            if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED) {
                g.map_flags = MAP_SHARED;
                g.map_prot = v->prot;
            } else {
                g.map_flags = MAP_PRIVATE;
            }
            break;
        case CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED:
        case CAIRN__GHOST__VMA_KIND__VMA_MEMFD:
            ret = fds[i] = shmem_open_vma(pl, v, err);
            g.fd = fds[i];
            g.pgoff = v->pgoff;
            g.map_flags = MAP_SHARED;
            /* Its pages come from the object (no copy through here), which
             * may be sealed against writing by now. */
            if (shmem_vma_from_object(pl->tree, v))
                g.map_prot = v->prot;
            break;
        default:
            ret = cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                  "vma %#llx of unknown kind %d",
                                  (unsigned long long)v->start, v->kind);
        }
        /* A reservation made without commit accounting (ASan's shadow, a
         * runtime's heap arena) must stay so, or mapping it fails ENOMEM. */
        g.map_flags |= v->flags & MAP_NORESERVE;
        if (s_map_as_is(pr, v))
            g.map_prot = v->prot;
        g.flags = s_gr_flags(v);
        if (ret >= 0)
            ret = s_anon_name(pl, v, &g.anon_name, err);
        if (ret >= 0)
            a->vmas[a->n_vmas++] = g;
    }
    free(fds);
    return ret < 0 ? ret : 0;
}

int mem_plan_mm(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__MmLayout *m = pr->process->process->mm;
    struct gr_args *a = pl->args;
    void *auxv = rst_alloc(pl, m->auxv.len + 8, 64);
    int fd;

    if (!auxv)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    memcpy(auxv, m->auxv.data, m->auxv.len);
    fd = open(m->exe_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "cannot open the executable %s: %s",
                               m->exe_path, strerror(errno));
    fd = rst_helper(pl->tree, fd, err);   /* the blob closes it after PR_SET_MM_MAP */
    if (fd < 0)
        return fd;
    a->mm = (struct gr_mm_map){
        m->start_code, m->end_code, m->start_data, m->end_data,
        m->start_brk, m->brk, m->start_stack, m->arg_start, m->arg_end,
        m->env_start, m->env_end, (uint64_t)(uintptr_t)auxv,
        (uint32_t)m->auxv.len, (uint32_t)fd };
    a->has_mm = 1;
    return 0;
}

int mem_plan_vdso(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    proc_vmas_t self = { 0 };
    int ret = proc_read_vmas(0, false, &self, err);

    if (ret == 0)
        ret = s_plan_vdso(pl, pr, &self, err);
    proc_vmas_free(&self);
    return ret;
}
