/* hooks-uffd.c - page-fault regions of the user backend: a memfd mapped
 * shared, registered with userfaultfd for missing and write-protect
 * faults.
 *
 * Design. The region's pages live in a memfd so that a drop is a hole
 * punched in it (every mapping of the page goes, the next touch faults as
 * missing) and so that dsmd can later share one copy per node. Answers map
 * onto userfaultfd's ioctls: serve = UFFDIO_COPY (with MODE_WP for a
 * read-only page), upgrade = UFFDIO_WRITEPROTECT off, protect = on, fail =
 * UFFDIO_POISON, which leaves a marker whose touch is SIGBUS (Linux 6.6;
 * a present page is punched out first so that the marker can go in). The
 * userfaultfd takes kernel-mode faults too where the system allows it
 * (root, or vm.unprivileged_userfaultfd), so a read() into the region
 * waits for the page like a touch; otherwise it is opened user-mode only
 * and such a system call fails with EFAULT.
 *
 * The mapping is MADV_DONTFORK: a child would get a copy of the mapping
 * without the registration, where a missing page reads as zeros -- a
 * silent loss; without the mapping it gets SIGSEGV instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks-private.h"

#include "util/uffd-compat.h"

#define S_FEATURES (UFFD_FEATURE_POISON | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
                    UFFD_FEATURE_THREAD_ID)

static int s_read(cairn_region_t *r, cairn_fault_t *f, size_t n)
{
    struct uffd_msg m[32];
    if (n > 32)
        n = 32;
    ssize_t got = read(r->fd, m, n * sizeof(m[0]));
    if (got < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    size_t k = 0;
    for (size_t i = 0; i < (size_t)got / sizeof(m[0]); i++) {
        if (m[i].event != UFFD_EVENT_PAGEFAULT)
            continue;   /* none asked for */
        uint64_t a = m[i].arg.pagefault.address, fl = m[i].arg.pagefault.flags;
        uint64_t off = (a - (uint64_t)(uintptr_t)r->addr) & ~(uint64_t)(CAIRN_HOOKS_PAGE - 1);
        f[k++] = (cairn_fault_t){
            .offset = off,
            .addr = a,
            .flags = ((fl & UFFD_PAGEFAULT_FLAG_WRITE) ? CAIRN_HOOKS_FAULT_WRITE : 0) |
                     ((fl & UFFD_PAGEFAULT_FLAG_WP) ? CAIRN_HOOKS_FAULT_WP | CAIRN_HOOKS_FAULT_WRITE : 0),
            .tid = m[i].arg.pagefault.feat.ptid,
        };
    }
    return (int)k;
}

static uint64_t s_at(const cairn_region_t *r, uint64_t off)
{
    return (uint64_t)(uintptr_t)r->addr + off;
}

static int s_serve(cairn_region_t *r, uint64_t off, const void *src, unsigned flags)
{
    struct uffdio_copy c = {
        .dst = s_at(r, off), .src = (uint64_t)(uintptr_t)src, .len = CAIRN_HOOKS_PAGE,
        .mode = (flags & CAIRN_HOOKS_SERVE_RDONLY) ? UFFDIO_COPY_MODE_WP : 0,
    };
    while (ioctl(r->fd, UFFDIO_COPY, &c) < 0) {
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
        if (c.copy > 0)
            return 0;
    }
    return 0;
}

static int s_wp(cairn_region_t *r, uint64_t off, uint64_t len, bool on)
{
    struct uffdio_writeprotect w = {
        .range = { s_at(r, off), len },
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    while (ioctl(r->fd, UFFDIO_WRITEPROTECT, &w) < 0)
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    return 0;
}

static int s_upgrade(cairn_region_t *r, uint64_t off)
{
    /* UFFDIO_WRITEPROTECT says nothing of a missing page: ask mincore. */
    unsigned char v = 0;
    if (mincore(r->addr + off, CAIRN_HOOKS_PAGE, &v) == 0 && !(v & 1))
        return -ENOENT;
    return s_wp(r, off, CAIRN_HOOKS_PAGE, false);
}

static int s_protect(cairn_region_t *r, uint64_t off, uint64_t len)
{
    return s_wp(r, off, len, true);
}

static int s_drop(cairn_region_t *r, uint64_t off, uint64_t len)
{
    /* The hole takes the pages; MADV_DONTNEED the poison markers of
     * failed pages, which the hole leaves in the page table. */
    if (fallocate(r->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0)
        return -errno;
    if (madvise(r->addr + off, len, MADV_DONTNEED) < 0)
        return -errno;
    return 0;
}

static int s_fail(cairn_region_t *r, uint64_t off, int error)
{
    for (int tries = 0; tries < 2; tries++) {
        struct uffdio_poison p = { .range = { s_at(r, off), CAIRN_HOOKS_PAGE } };
        if (ioctl(r->fd, UFFDIO_POISON, &p) == 0)
            return 0;
        if (errno != EEXIST && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (errno == EEXIST) {
            /* a present page (a write fault on a read-only one): out
             * with it, then the marker */
            int e = s_drop(r, off, CAIRN_HOOKS_PAGE);
            if (e < 0)
                return e;
        }
    }
    return -EBUSY;
}

static void s_close(cairn_region_t *r)
{
    if (r->addr)
        munmap(r->addr, r->size);
    if (r->fd >= 0)
        close(r->fd);
    if (r->mem_fd >= 0)
        close(r->mem_fd);
}

static const hooks_region_ops_t s_ops = {
    .read = s_read, .serve = s_serve, .upgrade = s_upgrade, .fail = s_fail,
    .drop = s_drop, .protect = s_protect, .close = s_close, .expires = true,
};

int hooks_uffd_open(uint64_t features, const char *needs, int *ret, cairn_error_t *err)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == EPERM)
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "userfaultfd: %s", strerror(errno));
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    if (ioctl(fd, UFFDIO_API, &api) < 0 || (api.features & features) != features) {
        int e = errno;
        close(fd);
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "userfaultfd lacks %s (Linux 6.6): %s", needs, strerror(e));
    }
    *ret = fd;
    return 0;
}

int hooks_uffd_region(cairn_hooks_t *h, cairn_region_t *r, cairn_error_t *err)
{
    int e = hooks_uffd_open(S_FEATURES, "poison or shmem write-protect", &r->fd, err);
    if (e < 0)
        return e;
    r->ops = &s_ops;
    r->mem_fd = memfd_create("cairn-region", MFD_CLOEXEC);
    if (r->mem_fd < 0 || ftruncate(r->mem_fd, (off_t)r->size) < 0) {
        e = cairn_error_set(err, -errno, CAIRN_SYSTEM, "memfd of %zu bytes: %s", r->size,
                            strerror(errno));
        goto fail;
    }
    void *a = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->mem_fd, 0);
    if (a == MAP_FAILED) {
        e = cairn_error_set(err, -errno, CAIRN_SYSTEM, "mmap: %s", strerror(errno));
        goto fail;
    }
    r->addr = a;
    struct uffdio_register reg = {
        .range = { (uint64_t)(uintptr_t)a, r->size },
        .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
    };
    if (madvise(a, r->size, MADV_DONTFORK) < 0 || ioctl(r->fd, UFFDIO_REGISTER, &reg) < 0) {
        e = cairn_error_set(err, -errno, CAIRN_SYSTEM, "userfaultfd register: %s",
                            strerror(errno));
        goto fail;
    }
    return 0;
fail:
    s_close(r);
    r->addr = NULL;
    r->fd = r->mem_fd = -1;
    return e;
}
