/* dsm-preload.c - libcairn-dsm-preload.so: POSIX and System V shared
 * memory of an unmodified program made cluster-wide DSM segments
 * (`cairn run --dsm`, docs/dsm.md "Unmodified programs").
 *
 * Design. Loaded with LD_PRELOAD, it interposes the calls a program makes
 * to share memory and turns each named segment into a dsmd segment of the
 * same name, so two programs that share memory on one machine share it
 * across nodes:
 *   shm_open(NAME) -> an fd (a placeholder memfd, so fstat, fchmod and
 *                     close behave) bound to DSM segment "shm.NAME";
 *                     an existing segment is opened at once (the
 *                     placeholder gets its size), a new one (O_CREAT) is
 *                     made by the ftruncate that gives its size;
 *   mmap(fd, MAP_SHARED) of such an fd -> the segment's mapping (offset 0;
 *                     a hint address is ignored, MAP_FIXED is refused);
 *   munmap         -> cairn_dsm_close; close(fd) forgets the binding;
 *   shm_unlink     -> cairn_dsm_unlink, and while a process still maps it,
 *                     again at each later unmap of this process (POSIX
 *                     removes the name at once; DSM refuses while mapped);
 *   shmget(KEY)    -> segment "sysv.KEY" (hex), shmat/shmdt map and unmap
 *                     it, shmctl IPC_STAT reports it, IPC_RMID removes it
 *                     once this process detached (IPC_PRIVATE is left to
 *                     the kernel: nobody else can name it).
 * Everything else passes through. A failure of dsmd is the call's
 * failure with errno set (ENOENT, EEXIST, EACCES, EINVAL, EHOSTUNREACH):
 * never a silent fall-back to local memory, which would split the
 * program's memory without a word. The tables are this process's (a
 * preload library has no other place), behind one mutex never held across
 * a call into dsmd.
 */
/* The plain names (ftruncate, mmap), not the 64-bit redirects the build's
 * _FILE_OFFSET_BITS=64 would turn them into: both are interposed below. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/dsm.h"

#define S_SLOTS 256
#define S_SYSV_BASE 0x7e000000   /* shim ids: above what the kernel hands out */
#define S_PAGE 4096u
#define S_NAME_MAX 264            /* "shm." or "sysv." and a name of 255 */

typedef struct s_name {
    bool used;
    bool pending_create;      /* O_CREAT: made by the ftruncate */
    bool unlink_pending;      /* shm_unlink / IPC_RMID asked while mapped */
    int fd;                   /* POSIX: the placeholder, -1 for System V */
    int oflag;
    mode_t mode;
    size_t size;
    char name[S_NAME_MAX];
} s_name_t;

typedef struct s_map {
    bool used;
    void *addr;
    cairn_dsm_t *dsm;
    char name[S_NAME_MAX];
} s_map_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_name_t s_names[S_SLOTS];
static s_map_t s_maps[S_SLOTS];

#define S_REAL(ret, fn, ...)                                                 \
    static ret (*real_##fn)(__VA_ARGS__);                                    \
    if (!real_##fn)                                                          \
        real_##fn = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #fn)

/* ---- the tables ------------------------------------------------------------ */

static int s_name_of_fd(int fd)
{
    for (int i = 0; fd >= 0 && i < S_SLOTS; i++)
        if (s_names[i].used && s_names[i].fd == fd)
            return i;
    return -1;
}

static int s_name_new(void)
{
    for (int i = 0; i < S_SLOTS; i++)
        if (!s_names[i].used) {
            memset(&s_names[i], 0, sizeof s_names[i]);
            s_names[i].used = true;
            s_names[i].fd = -1;
            return i;
        }
    return -1;
}

static int s_map_of(const void *addr)
{
    for (int i = 0; i < S_SLOTS; i++)
        if (s_maps[i].used && s_maps[i].addr == addr)
            return i;
    return -1;
}

/* errno from a libcairn return. */
static int s_fail(int e)
{
    errno = e == -EHOSTUNREACH || e == -EREMOTEIO ? EHOSTUNREACH : -e;
    return -1;
}

/* Opens name and records the mapping; its address or MAP_FAILED. */
static void *s_map_open(const char *name, size_t size, unsigned flags, mode_t mode)
{
    cairn_dsm_t *dsm = NULL;
    cairn_error_t err = { 0 };
    int e = cairn_dsm_open(name, size, flags, mode & 0666, &dsm, &err);
    if (e < 0) {
        fprintf(stderr, "cairn-dsm-preload: %s: %s\n", name, err.message);
        s_fail(e);
        return MAP_FAILED;
    }
    pthread_mutex_lock(&s_lock);
    int i = 0;
    while (i < S_SLOTS && s_maps[i].used)
        i++;
    if (i == S_SLOTS) {
        pthread_mutex_unlock(&s_lock);
        cairn_dsm_close(dsm);
        errno = ENOMEM;
        return MAP_FAILED;
    }
    s_maps[i].used = true;
    s_maps[i].dsm = dsm;
    s_maps[i].addr = cairn_dsm_addr(dsm);
    snprintf(s_maps[i].name, sizeof s_maps[i].name, "%s", name);
    pthread_mutex_unlock(&s_lock);
    return cairn_dsm_addr(dsm);
}

/* The removal asked of a name while it was mapped, tried again. */
static void s_retry_unlinks(void)
{
    char names[S_SLOTS][S_NAME_MAX];
    int n = 0;
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < S_SLOTS; i++)
        if (s_names[i].used && s_names[i].unlink_pending)
            snprintf(names[n++], sizeof names[0], "%s", s_names[i].name);
    pthread_mutex_unlock(&s_lock);
    for (int i = 0; i < n; i++) {
        int e = cairn_dsm_unlink(names[i], NULL);
        if (e == 0 || e == -ENOENT) {
            pthread_mutex_lock(&s_lock);
            for (int k = 0; k < S_SLOTS; k++)
                if (s_names[k].used && s_names[k].unlink_pending &&
                    strcmp(s_names[k].name, names[i]) == 0) {
                    s_names[k].unlink_pending = false;
                    if (s_names[k].fd < 0)
                        s_names[k].used = false;
                }
            pthread_mutex_unlock(&s_lock);
        }
    }
}

/* "shm.NAME" of a POSIX name "/NAME"; false for a name DSM cannot take. */
static bool s_posix_name(const char *in, char *out, size_t size)
{
    while (in && *in == '/')
        in++;
    return in && *in && !strchr(in, '/') && (size_t)snprintf(out, size, "shm.%s", in) < size;
}

/* ---- POSIX shared memory ----------------------------------------------------- */

int shm_open(const char *name, int oflag, mode_t mode)
{
    char dname[S_NAME_MAX];
    if (!s_posix_name(name, dname, sizeof dname)) {
        errno = EINVAL;
        return -1;
    }
    /* an existing segment: its size now, for fstat and the mmap to come */
    cairn_dsm_t *probe = NULL;
    cairn_error_t err = { 0 };
    unsigned fl = (oflag & O_ACCMODE) == O_RDONLY ? CAIRN_DSM_RDONLY : 0;
    int e = cairn_dsm_open(dname, 0, fl, 0, &probe, &err);
    if (e == 0 && (oflag & O_CREAT) && (oflag & O_EXCL)) {
        cairn_dsm_close(probe);
        errno = EEXIST;
        return -1;
    }
    if (e < 0 && !(e == -ENOENT && (oflag & O_CREAT))) {
        fprintf(stderr, "cairn-dsm-preload: shm_open %s: %s\n", name, err.message);
        return s_fail(e);
    }
    size_t size = probe ? cairn_dsm_size(probe) : 0;
    cairn_dsm_close(probe);
    int fd = memfd_create("cairn-dsm-shim", (oflag & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0)
        return -1;
    if (size && ftruncate(fd, (off_t)size) < 0) {
        close(fd);
        return -1;
    }
    pthread_mutex_lock(&s_lock);
    int i = s_name_new();
    if (i >= 0) {
        s_names[i].fd = fd;
        s_names[i].oflag = oflag;
        s_names[i].mode = mode;
        s_names[i].size = size;
        s_names[i].pending_create = size == 0;
        snprintf(s_names[i].name, sizeof s_names[i].name, "%s", dname);
    }
    pthread_mutex_unlock(&s_lock);
    if (i < 0) {
        close(fd);
        errno = EMFILE;
        return -1;
    }
    return fd;
}

/* The segment a placeholder fd names gets its size: made now. */
static int s_truncate(int slot, off_t len)
{
    s_name_t n = s_names[slot];
    if (len <= 0 || (n.size && (size_t)len != n.size)) {
        errno = EINVAL;   /* a DSM segment has one size for life */
        return -1;
    }
    if (n.size)
        return 0;
    size_t size = ((size_t)len + S_PAGE - 1) / S_PAGE * S_PAGE;
    cairn_dsm_t *dsm = NULL;
    cairn_error_t err = { 0 };
    int e = cairn_dsm_open(n.name, size, CAIRN_DSM_CREATE, n.mode & 0666, &dsm, &err);
    if (e < 0) {
        fprintf(stderr, "cairn-dsm-preload: ftruncate %s: %s\n", n.name, err.message);
        return s_fail(e);
    }
    cairn_dsm_close(dsm);
    pthread_mutex_lock(&s_lock);
    s_names[slot].size = size;
    s_names[slot].pending_create = false;
    pthread_mutex_unlock(&s_lock);
    return 0;
}

/* Whether fd is a placeholder whose segment could not take len: -1. */
static int s_truncate_fd(int fd, off_t len)
{
    pthread_mutex_lock(&s_lock);
    int slot = s_name_of_fd(fd);
    pthread_mutex_unlock(&s_lock);
    return slot >= 0 ? s_truncate(slot, len) : 0;
}

int ftruncate(int fd, off_t len)
{
    S_REAL(int, ftruncate, int, off_t);
    return s_truncate_fd(fd, len) < 0 ? -1 : real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
    S_REAL(int, ftruncate64, int, off64_t);
    return s_truncate_fd(fd, (off_t)len) < 0 ? -1 : real_ftruncate64(fd, len);
}

/* The segment's mapping for a placeholder fd, MAP_FAILED with errno, or
 * NULL when fd is none of ours. */
static void *s_mmap_fd(size_t len, int prot, int flags, int fd, off_t off)
{
    pthread_mutex_lock(&s_lock);
    int slot = (flags & MAP_ANONYMOUS) ? -1 : s_name_of_fd(fd);
    s_name_t n = slot >= 0 ? s_names[slot] : (s_name_t){ 0 };
    pthread_mutex_unlock(&s_lock);
    if (slot < 0)
        return NULL;
    if (!(flags & MAP_SHARED) || (flags & MAP_FIXED) || off != 0 || n.size == 0 ||
        len > n.size) {
        fprintf(stderr, "cairn-dsm-preload: mmap of %s: only MAP_SHARED of the whole segment "
                "from offset 0 without MAP_FIXED, after its size is set\n", n.name);
        errno = n.size == 0 ? EINVAL : ENOTSUP;
        return MAP_FAILED;
    }
    unsigned fl = (prot & PROT_WRITE) ? 0 : CAIRN_DSM_RDONLY;
    return s_map_open(n.name, 0, fl, 0);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    S_REAL(void *, mmap, void *, size_t, int, int, int, off_t);
    void *a = s_mmap_fd(len, prot, flags, fd, off);
    return a ? a : real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    S_REAL(void *, mmap64, void *, size_t, int, int, int, off64_t);
    void *a = s_mmap_fd(len, prot, flags, fd, (off_t)off);
    return a ? a : real_mmap64(addr, len, prot, flags, fd, off);
}

/* Closes the segment mapped at addr (munmap, shmdt); false when addr is
 * none of ours. */
static bool s_unmap(const void *addr)
{
    pthread_mutex_lock(&s_lock);
    int i = s_map_of(addr);
    cairn_dsm_t *dsm = i >= 0 ? s_maps[i].dsm : NULL;
    if (i >= 0)
        s_maps[i].used = false;
    pthread_mutex_unlock(&s_lock);
    if (!dsm)
        return false;
    cairn_dsm_close(dsm);
    s_retry_unlinks();
    return true;
}

int munmap(void *addr, size_t len)
{
    S_REAL(int, munmap, void *, size_t);
    return s_unmap(addr) ? 0 : real_munmap(addr, len);
}

int close(int fd)
{
    S_REAL(int, close, int);
    pthread_mutex_lock(&s_lock);
    int slot = s_name_of_fd(fd);
    if (slot >= 0) {
        s_names[slot].fd = -1;
        if (!s_names[slot].unlink_pending)
            s_names[slot].used = false;
    }
    pthread_mutex_unlock(&s_lock);
    return real_close(fd);
}

/* Removes name now, or once this process no longer maps it. */
static int s_unlink(const char *dname)
{
    int e = cairn_dsm_unlink(dname, NULL);
    if (e != -EBUSY)
        return e < 0 ? s_fail(e) : 0;
    pthread_mutex_lock(&s_lock);
    int i = s_name_new();
    if (i >= 0) {
        s_names[i].unlink_pending = true;
        snprintf(s_names[i].name, sizeof s_names[i].name, "%s", dname);
    }
    pthread_mutex_unlock(&s_lock);
    return 0;
}

int shm_unlink(const char *name)
{
    char dname[S_NAME_MAX];
    if (!s_posix_name(name, dname, sizeof dname)) {
        errno = EINVAL;
        return -1;
    }
    return s_unlink(dname);
}

/* ---- System V shared memory ---------------------------------------------------- */

int shmget(key_t key, size_t size, int shmflg)
{
    S_REAL(int, shmget, key_t, size_t, int);
    if (key == IPC_PRIVATE)
        return real_shmget(key, size, shmflg);
    char dname[S_NAME_MAX];
    snprintf(dname, sizeof dname, "sysv.%08x", (unsigned)key);
    size_t rounded = (size + S_PAGE - 1) / S_PAGE * S_PAGE;
    unsigned fl = (shmflg & IPC_CREAT) ? CAIRN_DSM_CREATE : 0;
    if ((shmflg & IPC_CREAT) && (shmflg & IPC_EXCL))
        fl |= CAIRN_DSM_EXCL;
    cairn_dsm_t *dsm = NULL;
    cairn_error_t err = { 0 };
    /* an existing segment at least as large as asked is the one (SysV) */
    int e = cairn_dsm_open(dname, 0, 0, 0, &dsm, &err);
    if (e == 0 && (fl & CAIRN_DSM_EXCL)) {
        cairn_dsm_close(dsm);
        errno = EEXIST;
        return -1;
    }
    if (e == 0 && cairn_dsm_size(dsm) < rounded) {
        cairn_dsm_close(dsm);
        errno = EINVAL;
        return -1;
    }
    if (e == -ENOENT && (fl & CAIRN_DSM_CREATE) && rounded > 0)
        e = cairn_dsm_open(dname, rounded, fl, (mode_t)(shmflg & 0666), &dsm, &err);
    if (e < 0) {
        fprintf(stderr, "cairn-dsm-preload: shmget %s: %s\n", dname, err.message);
        return s_fail(e);
    }
    size = cairn_dsm_size(dsm);
    cairn_dsm_close(dsm);
    pthread_mutex_lock(&s_lock);
    int i = -1;
    for (int k = 0; k < S_SLOTS && i < 0; k++)
        if (s_names[k].used && s_names[k].fd < 0 && !s_names[k].unlink_pending &&
            strcmp(s_names[k].name, dname) == 0)
            i = k;
    if (i < 0 && (i = s_name_new()) >= 0) {
        s_names[i].size = size;
        s_names[i].mode = (mode_t)(shmflg & 0666);
        snprintf(s_names[i].name, sizeof s_names[i].name, "%s", dname);
    }
    pthread_mutex_unlock(&s_lock);
    if (i < 0) {
        errno = ENOSPC;
        return -1;
    }
    return S_SYSV_BASE + i;
}

static int s_sysv_slot(int id)
{
    int i = id - S_SYSV_BASE;
    return i >= 0 && i < S_SLOTS && s_names[i].used && s_names[i].fd < 0 ? i : -1;
}

void *shmat(int id, const void *addr, int shmflg)
{
    S_REAL(void *, shmat, int, const void *, int);
    pthread_mutex_lock(&s_lock);
    int i = s_sysv_slot(id);
    s_name_t n = i >= 0 ? s_names[i] : (s_name_t){ 0 };
    pthread_mutex_unlock(&s_lock);
    if (i < 0)
        return real_shmat(id, addr, shmflg);
    if (addr) {
        fprintf(stderr, "cairn-dsm-preload: shmat of %s at a chosen address: not supported\n",
                n.name);
        errno = ENOTSUP;
        return (void *)-1;
    }
    void *a = s_map_open(n.name, 0, (shmflg & SHM_RDONLY) ? CAIRN_DSM_RDONLY : 0, 0);
    return a == MAP_FAILED ? (void *)-1 : a;
}

int shmdt(const void *addr)
{
    S_REAL(int, shmdt, const void *);
    return s_unmap(addr) ? 0 : real_shmdt(addr);
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
    S_REAL(int, shmctl, int, int, struct shmid_ds *);
    pthread_mutex_lock(&s_lock);
    int i = s_sysv_slot(id);
    s_name_t n = i >= 0 ? s_names[i] : (s_name_t){ 0 };
    pthread_mutex_unlock(&s_lock);
    if (i < 0)
        return real_shmctl(id, cmd, buf);
    switch (cmd) {
    case IPC_STAT:
        if (!buf) {
            errno = EFAULT;
            return -1;
        }
        memset(buf, 0, sizeof *buf);
        buf->shm_segsz = n.size;
        buf->shm_perm.mode = n.mode;
        buf->shm_perm.uid = buf->shm_perm.cuid = getuid();
        buf->shm_perm.gid = buf->shm_perm.cgid = getgid();
        return 0;
    case IPC_RMID:
        return s_unlink(n.name);
    default:
        fprintf(stderr, "cairn-dsm-preload: shmctl command %d on %s: not supported\n", cmd,
                n.name);
        errno = EINVAL;
        return -1;
    }
}
