/* shmem.c - shared memory, both directions: memfds (the fd kind FD_MEMFD)
 * and the objects behind shared mappings.
 *
 * Dump side. A memfd some fd of the tree refers to is one object of the
 * image: its contents go out once, as object_pages records of its data
 * extents (SEEK_DATA/SEEK_HOLE, read through /proc/PID/fd/N), after the
 * fds of the first process referring to it; its mappings take no pages
 * of their own (mem.c asks shmem_fd_memfd). Its mode, seals and size go
 * with it (Memfd, on the fd record and on a memfd vma); a hugetlb memfd
 * is refused.
 *
 * Restore side. One object per shared-memory object (shmid) of the whole
 * tree, so a mapping shared between a parent and its child stays shared:
 * a memfd made with its mode, filled, then sealed; for shared anonymous
 * memory the kernel's own shmem file ("/dev/zero (deleted)").
 * One an fd refers to is made first, of the fd's size and filled from its
 * object pages, which win over its vmas' pages: mapping and fd see one
 * object; an fd reopens it through /proc/self/fd for an offset of its
 * own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pages.h"
#include "shmem.h"
#include "util/array.h"
#include "util/cleanup.h"

/* ---- dump -------------------------------------------------------------- */

/* A memfd that fds of the image refer to; its contents go out once. */
typedef struct s_obj {
    uint64_t shmid;        /* its inode, as Vma.shmid */
    pid_t pid;             /* the first process referring to it ... */
    int fd;                /* ... through this fd */
    uint64_t size;         /* its file size */
} s_obj_t;

#define S_OBJ_CHUNK (4u << 20)   /* object pages per record */

/* The memfds of the image. */
struct shmem_dump {
    s_obj_t *objs;         /* memfds fds refer to, in image order */
    size_t nobjs;
    size_t objs_written;   /* objs[0..objs_written) have their pages out */
    uint64_t *fd_memfds;   /* inodes of the memfds some fd of the tree refers
                              to (found by the check on the frozen tree):
                              written once as object pages, so their
                              mappings' pages are not */
    size_t nfd_memfds;
};

shmem_dump_t *shmem_dump_new(void)
{
    return calloc(1, sizeof(shmem_dump_t));
}

shmem_dump_t *shmem_dump_free(shmem_dump_t *sd)
{
    if (sd) {
        free(sd->objs);
        free(sd->fd_memfds);
    }
    free(sd);
    return NULL;
}

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

int shmem_memfd_read(int fd, const char *what, Cairn__Ghost__Memfd *ret, cairn_error_t *err)
{
    struct stat st;
    struct statfs sfs;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "stat of %s: %s", what,
                               strerror(errno));
    if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "%s is a hugetlb memfd (MFD_HUGETLB): not restorable", what);
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "F_GET_SEALS on %s: %s", what,
                               strerror(errno));
    cairn__ghost__memfd__init(ret);
    ret->mode = st.st_mode & 07777;
    ret->seals = (uint32_t)seals;
    ret->size = (uint64_t)st.st_size;
    ret->has = true;
    return 0;
}

/* The state of process pid's memfd fd into *ret (what: for messages). */
static int s_memfd_read_fd(pid_t pid, int fd, Cairn__Ghost__Memfd *ret, cairn_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
    _cleanup_close_ int m = open(path, O_RDONLY | O_CLOEXEC);
    if (m < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                               strerror(errno));
    return shmem_memfd_read(m, path, ret, err);
}

/* A memfd fd: FD_MEMFD, its object (inode, as the shmid of its vmas) and
 * size; its mode and seals are read again as it is written (s_record). */
static int s_memfd_describe(pid_t pid, int fd, const struct stat *st,
                            Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    Cairn__Ghost__Memfd m;
    int r = s_memfd_read_fd(pid, fd, &m, err);
    if (r < 0)
        return r;
    f->kind = CAIRN__GHOST__FD_KIND__FD_MEMFD;
    f->shmid = st->st_ino;
    f->size = (uint64_t)st->st_size;
    return 0;
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    if (strncmp(p->path, "/memfd:", 7) != 0 || !engine_has_suffix(p->path, " (deleted)"))
        return FILES_NOT_MINE;
    return s_memfd_describe(p->pid, p->fd, p->st, f, err);
}

static bool s_tree_fd(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret)
{
    ret->ino = f->shmid;
    return true;
}

bool shmem_fd_memfd(const shmem_dump_t *sd, uint64_t ino)
{
    for (size_t i = 0; i < sd->nfd_memfds; i++)
        if (sd->fd_memfds[i] == ino)
            return true;
    return false;
}

/* Adds ino to the memfds some fd of the tree refers to, once. */
static int s_note_fd_memfd(shmem_dump_t *sd, uint64_t ino, cairn_error_t *err)
{
    if (shmem_fd_memfd(sd, ino))
        return 0;
    uint64_t *nv = realloc(sd->fd_memfds, (sd->nfd_memfds + 1) * sizeof(*nv));
    if (!nv)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    sd->fd_memfds = nv;
    sd->fd_memfds[sd->nfd_memfds++] = ino;
    return 0;
}

int shmem_note_fd_memfds(shmem_dump_t *sd, const files_tree_fds_t *tfds,
                         cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < tfds->n; i++)
        if (tfds->v[i].kind == CAIRN__GHOST__FD_KIND__FD_MEMFD)
            r = s_note_fd_memfd(sd, tfds->v[i].ino, err);
    return r;
}

/* The memfd f refers to: its mode and seals on f (until s_release), and
 * the object remembered once per image, for s_write_objects. */
static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f,
                    cairn_error_t *err)
{
    Cairn__Ghost__Memfd *m = malloc(sizeof *m);
    if (!m)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    f->memfd = m;   /* freed by s_release, whatever happens */
    int r = s_memfd_read_fd(pid, f->fd, m, err);
    if (r < 0)
        return r;
    shmem_dump_t *sd = c->shmem;
    for (size_t i = 0; i < sd->nobjs; i++)
        if (sd->objs[i].shmid == f->shmid)
            return 0;
    s_obj_t *nv = realloc(sd->objs, (sd->nobjs + 1) * sizeof(*nv));
    if (!nv)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    sd->objs = nv;
    sd->objs[sd->nobjs++] = (s_obj_t){ f->shmid, pid, f->fd, f->size };
    return 0;
}

/* Writes [off, end) of a memfd (o, opened as fd) as object_pages records
 * of up to S_OBJ_CHUNK bytes; the last page is zero-padded past the end
 * of the file. */
static int s_write_extent(dump_ctx_t *c, const s_obj_t *o, int fd, uint8_t *buf,
                          uint64_t off, uint64_t end, cairn_error_t *err)
{
    size_t ps = c->out.page_size;
    while (off < end) {
        size_t n = end - off < S_OBJ_CHUNK ? (size_t)(end - off) : S_OBJ_CHUNK, got = 0;
        while (got < n) {
            ssize_t k = pread(fd, buf + got, n - got, (off_t)(off + got));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                       "reading memfd %llu of process %d at %llu: %s",
                                       (unsigned long long)o->shmid, (int)o->pid,
                                       (unsigned long long)(off + got), strerror(errno));
            if (k == 0)
                break;   /* shrunk meanwhile: the rest reads as zero */
            got += (size_t)k;
        }
        size_t padded = (n + ps - 1) / ps * ps;
        memset(buf + got, 0, padded - got);
        struct iovec v = { buf, padded };
        int r = ghost_write_object_pages(c->out.w, o->shmid, off, padded / ps,
                                         c->out.page_size, &v, 1, err);
        if (r < 0)
            return r;
        c->out.pages += padded / ps;
        off += n;
    }
    return 0;
}

/* The contents of one memfd: its data extents (SEEK_DATA/SEEK_HOLE, so a
 * hole stays a hole; the whole file where the fs cannot tell), read
 * through /proc/PID/fd/N opened read-only. */
static int s_write_object(dump_ctx_t *c, const s_obj_t *o, cairn_error_t *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)o->pid, o->fd);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    _cleanup_free_ uint8_t *buf = fd >= 0 ? malloc(S_OBJ_CHUNK) : NULL;
    int r = 0;
    if (!buf)
        r = fd < 0 ? cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", path,
                                     strerror(errno))
                   : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    uint64_t at = 0, ps = c->out.page_size;
    while (r == 0 && at < o->size) {
        off_t data = lseek(fd, (off_t)at, SEEK_DATA), hole;
        if (data < 0 && errno == ENXIO)
            break;   /* only a hole is left */
        if (data < 0)
            data = (off_t)at, hole = (off_t)o->size;
        else if ((hole = lseek(fd, data, SEEK_HOLE)) < 0)
            hole = (off_t)o->size;
        uint64_t end = (uint64_t)hole < o->size ? (uint64_t)hole : o->size;
        r = s_write_extent(c, o, fd, buf, (uint64_t)data / ps * ps, end, err);
        at = end > at ? end : at + ps;
    }
    return r;
}

static void s_release(Cairn__Ghost__Fd *f)
{
    free(f->memfd);
    f->memfd = NULL;
}

/* Object pages of the memfds first referred to since the last call. */
static int s_write_objects(dump_ctx_t *c, cairn_error_t *err)
{
    shmem_dump_t *sd = c->shmem;
    for (; sd->objs_written < sd->nobjs; sd->objs_written++) {
        int r = s_write_object(c, &sd->objs[sd->objs_written], err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- restore ----------------------------------------------------------- */

/* One shared-memory object (anonymous shared or memfd) of the tree. */
typedef struct rst_shm {
    uint64_t shmid;        /* its id in the image */
    int kind;              /* VMA_ANON_SHARED or VMA_MEMFD */
    int fd;                /* helper memfd */
    bool from_fd;          /* a memfd fds refer to: sized and filled from
                              the fd record and its object pages, which
                              win over the pages of its vmas */
} s_shm_t;

/* Every shared-memory object of the tree. */
struct shmem_rst {
    s_shm_t *v;            /* one per object */
    size_t n, cap;
};

void shmem_rst_free(rst_tree_t *t)
{
    if (t->shm)
        free(t->shm->v);
    free(t->shm);
    t->shm = NULL;
}

/* The FD_MEMFD fd of a process on object shmid, NULL if none. */
const Cairn__Ghost__Fd *shmem_fd_of(const rst_proc_t *pr, uint64_t shmid)
{
    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        if (f->kind == CAIRN__GHOST__FD_KIND__FD_MEMFD && f->shmid == shmid)
            return f;
    }
    return NULL;
}

/* Size of a shared-memory object: the end of its furthest vma in any
 * process of the tree. */
static uint64_t s_shm_size(const rst_image_t *im, const Cairn__Ghost__Vma *v)
{
    uint64_t size = 0;

    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].vmas.n; j++) {
            const Cairn__Ghost__Vma *w = im->procs[i].vmas.v[j]->vma;
            if (w->shmid == v->shmid && w->kind == v->kind &&
                w->pgoff + (w->end - w->start) > size)
                size = w->pgoff + (w->end - w->start);
        }
    return size;
}

static const s_shm_t *s_shm_find(const rst_tree_t *t, uint64_t shmid, int kind)
{
    for (size_t i = 0; i < t->shm->n; i++)
        if (t->shm->v[i].shmid == shmid && t->shm->v[i].kind == kind)
            return &t->shm->v[i];
    return NULL;
}

/* The name a "/memfd:NAME (deleted)" had: NAME, at most 249 bytes. */
static void s_memfd_name(const char *path, char *buf, size_t size)
{
    const char *n = strncmp(path, "/memfd:", 7) == 0 ? path + 7 : "ghost-shmem";
    size_t len = strlen(n);

    if (len >= 10 && !strcmp(n + len - 10, " (deleted)"))
        len -= 10;
    snprintf(buf, size, "%.*s", (int)(len < 249 ? len : 249), n);
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* A memfd as m describes it (NULL: a plain one, sealing not allowed, as
 * the images before Memfd): made with MFD_EXEC unless it had F_SEAL_EXEC,
 * so the vm.memfd_noexec sysctl does not seal it on its own, its mode
 * set, size bytes long. Its seals come after its filling (s_shm_seal). */
static int s_memfd_make(const char *name, const Cairn__Ghost__Memfd *m, uint64_t size)
{
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (!m || !(m->seals & F_SEAL_EXEC))
        flags |= MFD_EXEC;
    int fd = memfd_create(name, flags);
    if (fd < 0 && errno == EINVAL && (flags & MFD_EXEC))
        fd = memfd_create(name, flags & ~MFD_EXEC);   /* before 6.3 */
    if (fd < 0)
        return -errno;
    if ((m && m->has && fchmod(fd, m->mode) < 0) || ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* The object of shared anonymous memory as the kernel makes it: a shmem
 * file that /proc/PID/maps shows as "/dev/zero (deleted)", reached
 * through our own mapping's /proc/self/map_files entry (root, or
 * CAP_SYS_ADMIN, only: without, a memfd holds it, which maps shows
 * otherwise). */
static int s_dev_zero_make(uint64_t size)
{
    void *p = mmap(NULL, size ? size : 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    char path[80];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)p,
             (unsigned long)p + (size ? size : 4096));
    int fd = open(path, O_RDWR | O_CLOEXEC), e = errno;
    munmap(p, size ? size : 4096);
    return fd < 0 ? -e : fd;
}

/* The seals of m on the memfd fd, once its contents are in. */
static int s_shm_seal(int fd, uint64_t shmid, const Cairn__Ghost__Memfd *m, cairn_error_t *err)
{
    unsigned seals = m && m->has ? m->seals : F_SEAL_SEAL;
    if (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sealing memfd %llu (%#x): %s",
                               (unsigned long long)shmid, seals, strerror(errno));
    return 0;
}

/* A new shared-memory object of size bytes for shmid, filed as a helper:
 * a memfd as m says (sealed now unless from_fd: the caller seals it
 * after its filling), or shared anonymous memory. */
static int s_shm_create(rst_tree_t *t, uint64_t shmid, int kind, const char *name,
                        const Cairn__Ghost__Memfd *m, uint64_t size, bool from_fd,
                        cairn_error_t *err)
{
    int fd = -ENOSYS;
    if (kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED)
        fd = s_dev_zero_make(size);
    if (fd == -EACCES || fd == -EPERM || kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD)
        fd = s_memfd_make(name, kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD ? m : NULL, size);
    if (fd < 0)
        return cairn_error_set(err, fd, CAIRN_SYSTEM, "shared memory %llu: %s",
                               (unsigned long long)shmid, strerror(-fd));
    int r = 0;
    if (kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD && !from_fd)
        r = s_shm_seal(fd, shmid, m, err);
    if (r == 0 && CAIRN_GROW(t->shm->v, t->shm->cap, t->shm->n + 1, 16) < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r < 0) {
        close(fd);
        return r;
    }
    fd = rst_helper(t, fd, err);
    if (fd >= 0)
        t->shm->v[t->shm->n++] = (s_shm_t){ shmid, kind, fd, from_fd };
    return fd;
}

/* One memfd per shared-memory object (shmid) of the whole tree, so a
 * mapping shared between a parent and its child stays shared; a memfd
 * that fds refer to was made by s_tree_objects already. A memfd only
 * mapped is as long as its file was (or its furthest mapping, for an
 * image without it). */
int shmem_open_vma(rst_plan_t *pl, const Cairn__Ghost__Vma *v,
                   cairn_error_t *err)
{
    const s_shm_t *s = s_shm_find(pl->tree, v->shmid, (int)v->kind);
    char name[256] = "ghost-shmem";

    if (s)
        return s->fd;
    uint64_t size = s_shm_size(pl->tree->im, v);
    if (v->kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD) {
        s_memfd_name(v->path, name, sizeof name);
        if (v->memfd && v->memfd->has && v->memfd->size > size)
            size = v->memfd->size;
    }
    return s_shm_create(pl->tree, v->shmid, (int)v->kind, name, v->memfd, size, false, err);
}

/* Whether the pages of vma v come from its object's pages instead. */
bool shmem_vma_from_object(const rst_tree_t *t, const Cairn__Ghost__Vma *v)
{
    const s_shm_t *s = s_shm_find(t, v->shmid, (int)v->kind);

    return v->kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD && s && s->from_fd;
}

/* Copies n bytes from src at src_off to dst at dst_off (the staged bytes
 * may sit at any file offset, so no mapping). Returns 0 or an errno. */
static int s_copy_range(int src, uint64_t src_off, int dst, uint64_t dst_off, size_t n)
{
    size_t cap = n < (4u << 20) ? n : (4u << 20);
    uint8_t *buf = malloc(cap ? cap : 1);
    int e = 0;
    if (!buf)
        return ENOMEM;
    for (size_t done = 0; done < n && !e;) {
        size_t want = n - done < cap ? n - done : cap;
        ssize_t k = pread(src, buf, want, (off_t)(src_off + done));
        if (k < 0)
            e = errno;
        else if (k == 0)
            e = EIO;   /* the image ends before its staged bytes */
        else if (pwrite(dst, buf, (size_t)k, (off_t)(dst_off + done)) != k)
            e = EIO;   /* a memfd write is all or nothing short of ENOSPC */
        else
            done += (size_t)k;
    }
    free(buf);
    return e;
}

/* Writes the staged object pages of shmid into its memfd, clipped to the
 * object's size (the last page was padded). */
static int s_shm_fill(const rst_image_t *im, uint64_t shmid, int fd, uint64_t size,
                      cairn_error_t *err)
{
    if (im->check_only)   /* nothing staged: the contents are not checked */
        return 0;
    for (size_t i = 0; i < im->n_objruns; i++) {
        const rst_objrun_t *o = &im->objruns[i];
        if (o->shmid != shmid || o->offset >= size)
            continue;
        size_t n = (size_t)(size - o->offset < o->len ? size - o->offset : o->len);
        int e = s_copy_range(im->staging_fd, o->off, fd, o->offset, n);
        if (e)
            return cairn_error_set(err, -e, CAIRN_SYSTEM, "filling memfd %llu at "
                                   "%llu: %s", (unsigned long long)shmid,
                                   (unsigned long long)o->offset, strerror(e));
    }
    return 0;
}

/* A memfd mapping whose pages the dump left out (an fd of the tree
 * refers to the memfd: its object pages hold it) must have that fd, or
 * it would come back as zeros. */
static int s_check_fd_memfds(const rst_image_t *im, cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].vmas.n; j++) {
            const Cairn__Ghost__Vma *v = im->procs[i].vmas.v[j]->vma;
            bool has_fd = false;
            if (v->kind != CAIRN__GHOST__VMA_KIND__VMA_MEMFD || v->dumped)
                continue;
            for (size_t k = 0; k < im->n_procs && !has_fd; k++)
                has_fd = shmem_fd_of(&im->procs[k], v->shmid) != NULL;
            if (!has_fd)
                return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                       "bad image: process %u maps memfd %llu at %#llx "
                                       "without its pages, and no fd refers to it",
                                       im->procs[i].process->process->pid,
                                       (unsigned long long)v->shmid,
                                       (unsigned long long)v->start);
        }
    return 0;
}

/* One memfd per object the fds of the tree refer to (FD_MEMFD), of the
 * fd's size and filled from its object pages: the whole truth of the
 * object. Its vmas map this memfd (shmem_open_vma) and take no pages of
 * their own (shmem_vma_from_object), so mapping and fd see one object. */
static int s_tree_objects(rst_tree_t *t, cairn_error_t *err)
{
    char name[256];
    int ret;

    if (!(t->shm = calloc(1, sizeof *t->shm)))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    ret = s_check_fd_memfds(t->im, err);

    for (size_t i = 0; i < t->im->n_procs && ret >= 0; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n && ret >= 0; j++) {
            const Cairn__Ghost__Fd *f = pr->fds.v[j]->fd;
            if (f->kind != CAIRN__GHOST__FD_KIND__FD_MEMFD ||
                s_shm_find(t, f->shmid, CAIRN__GHOST__VMA_KIND__VMA_MEMFD))
                continue;
            s_memfd_name(f->path, name, sizeof name);
            int fd = ret = s_shm_create(t, f->shmid, CAIRN__GHOST__VMA_KIND__VMA_MEMFD,
                                        name, f->memfd, f->size, true, err);
            if (ret >= 0)
                ret = s_shm_fill(t->im, f->shmid, fd, f->size, err);
            if (ret >= 0)
                ret = s_shm_seal(fd, f->shmid, f->memfd, err);
        }
    }
    return ret < 0 ? ret : 0;
}

/* Stages the raw bytes of an object_pages record: pages of a memfd an fd
 * of the current process refers to, inside its size. */
int shmem_load_object_pages(rst_image_t *im, const rst_proc_t *pr, ghost_reader_t *r,
                            const Cairn__Ghost__ObjectPages *p, cairn_error_t *err)
{
    const Cairn__Ghost__Fd *f = pr ? shmem_fd_of(pr, p->shmid) : NULL;
    uint64_t len = p->n_pages * RST_PAGE, off;
    int ret;

    if (!f || p->n_pages == 0 || p->n_pages > (1ull << 36) / RST_PAGE ||
        p->offset % RST_PAGE || p->offset + len > RST_ALIGN(f->size, RST_PAGE))
        return rst_bad(err, "object pages of no memfd fd of the process, or "
                       "outside its size", ghost_reader_bytes(r));
    if (CAIRN_GROW(im->objruns, im->cap_objruns, im->n_objruns + 1, 16) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    ret = pages_stage(im, r, len, &off, err);
    if (ret < 0)
        return ret;
    im->objruns[im->n_objruns++] = (rst_objrun_t){ p->shmid, p->offset, len, off };
    im->pages += p->n_pages;
    return 0;
}

/* The memfd's object, reopened through /proc/self/fd for an offset of
 * its own. */
static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const s_shm_t *s = s_shm_find(t, f->shmid, CAIRN__GHOST__VMA_KIND__VMA_MEMFD);
    char self[64];

    if (!s)
        return cairn_error_set(err, -ENOENT, CAIRN_INTERNAL, "fd %d: memfd "
                               "%llu was not recreated", f->fd,
                               (unsigned long long)f->shmid);
    snprintf(self, sizeof self, "/proc/self/fd/%d", s->fd);
    return files_reopen(f, self, 0, true, err);
}

const files_kind_t shmem_kind = {
    .name = "memfd",
    .first = CAIRN__GHOST__FD_KIND__FD_MEMFD,
    .last = CAIRN__GHOST__FD_KIND__FD_MEMFD,
    .mode = S_IFREG,
    .by_description = true,
    .describe = s_describe,
    .tree_fd = s_tree_fd,
    .record = s_record,
    .release = s_release,
    .flush = s_write_objects,
    .plan = s_tree_objects,
    .open = s_open,
};
