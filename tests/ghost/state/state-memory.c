/* state-memory.c - the memory cases of ghost-state (state.h): memory
 * mappings: VMA flags (madvise, mlock, mseal), file mappings and
 * the access their file is reopened with, memfd mode, seals and name,
 * shared anonymous memory.
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason. A VmFlag is checked in
 * /proc/self/smaps (what the kernel says), and where it has an effect a
 * program can see (wipe-on-fork, a write through a reopened file), that
 * too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define S_PAGE 4096
#define S_LEN (8 * S_PAGE)

/* One mapping a case made: where, and which smaps flags it must show. */
typedef struct s_map {
    uint8_t *p;
    size_t len;
    const char *flags;     /* space-separated VmFlags it must have */
    int fd;                /* a memfd or file of the case, or -1 */
} s_map_t;

/* The smaps entry of the vma starting at p: its VmFlags line into flags
 * and its maps line into line. 0, or -1 (no such vma). */
static int s_smaps(const void *p, char *line, size_t nline, char *flags, size_t nflags)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    char buf[1024];
    bool in = false;
    int r = -1;
    if (!f)
        return -1;
    while (fgets(buf, sizeof buf, f)) {
        unsigned long s, e;
        if (sscanf(buf, "%lx-%lx ", &s, &e) == 2 && strchr(buf, ' ') == buf + strcspn(buf, " ")) {
            in = s == (unsigned long)(uintptr_t)p;
            if (in)
                snprintf(line, nline, "%s", buf);
        } else if (in && strncmp(buf, "VmFlags:", 8) == 0) {
            snprintf(flags, nflags, "%s", buf + 8);
            r = 0;
            break;
        }
    }
    fclose(f);
    return r;
}

/* Whether the vma at p shows every flag of want (and its end is p + len). */
static int s_has_flags(const void *p, size_t len, const char *want)
{
    char line[1024], flags[512], w[64];
    if (s_smaps(p, line, sizeof line, flags, sizeof flags) < 0)
        return state_fail("no vma starts at %p", p);
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx", &s, &e) != 2 || e - s != len)
        return state_fail("the vma at %p is %s", p, line);
    for (const char *q = want; *q;) {
        size_t n = strcspn(q, " ");
        snprintf(w, sizeof w, " %.*s ", (int)n, q);
        char padded[520];
        snprintf(padded, sizeof padded, " %s", flags);
        padded[strcspn(padded, "\n")] = ' ';
        if (!strstr(padded, w))
            return state_fail("the vma at %p lacks VmFlag %.*s: %s", p, (int)n, q, flags);
        q += n;
        while (*q == ' ')
            q++;
    }
    return 0;
}

static void s_fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 13 + seed);
}

static int s_same(const uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(i * 13 + seed))
            return state_fail("byte %zu at %p is %u, not %u", i, (const void *)p, p[i],
                              (uint8_t)(i * 13 + seed));
    return 0;
}

/* An anonymous private mapping, filled, with the flags it must show. */
static s_map_t *s_anon(int extra_flags, const char *flags)
{
    s_map_t *m = calloc(1, sizeof *m);
    if (!m) {
        state_fail("out of memory");
        return NULL;
    }
    int type = (extra_flags & MAP_DROPPABLE) ? 0 : MAP_PRIVATE;
    m->p = mmap(NULL, S_LEN, PROT_READ | PROT_WRITE, type | MAP_ANONYMOUS | extra_flags,
                -1, 0);
    if (m->p == MAP_FAILED) {
        state_fail("mmap: %s", strerror(errno));
        free(m);
        return NULL;
    }
    m->len = S_LEN, m->flags = flags, m->fd = -1;
    s_fill(m->p, S_LEN, 7);
    return m;
}

static int s_check_anon(void *ctx)
{
    s_map_t *m = ctx;
    if (s_has_flags(m->p, m->len, m->flags) < 0)
        return -1;
    return s_same(m->p, m->len, 7);
}

/* madvise(advice) on a fresh anonymous mapping that must show flag. */
static int s_advised(void **ctx, int advice, const char *flag)
{
    s_map_t *m = s_anon(0, flag);
    if (!m)
        return -1;
    if (madvise(m->p, m->len, advice) < 0)
        return state_fail("madvise(%d): %s", advice, strerror(errno));
    *ctx = m;
    return 0;
}

static int s_dontfork_setup(void **ctx) { return s_advised(ctx, MADV_DONTFORK, "dc"); }
static int s_dontdump_setup(void **ctx) { return s_advised(ctx, MADV_DONTDUMP, "dd"); }
static int s_hugepage_setup(void **ctx) { return s_advised(ctx, MADV_HUGEPAGE, "hg"); }
static int s_nohugepage_setup(void **ctx) { return s_advised(ctx, MADV_NOHUGEPAGE, "nh"); }
static int s_mergeable_setup(void **ctx) { return s_advised(ctx, MADV_MERGEABLE, "mg"); }
static int s_sequential_setup(void **ctx) { return s_advised(ctx, MADV_SEQUENTIAL, "sr"); }
static int s_random_setup(void **ctx) { return s_advised(ctx, MADV_RANDOM, "rr"); }
static int s_wipeonfork_setup(void **ctx) { return s_advised(ctx, MADV_WIPEONFORK, "wf"); }

/* Wipe-on-fork does what it says: a child sees zeros there. */
static int s_wipeonfork_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_check_anon(ctx) < 0)
        return -1;
    pid_t c = fork();
    if (c < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c == 0)
        _exit(m->p[1] == 0 && m->p[m->len - 1] == 0 ? 0 : 1);
    int st;
    if (waitpid(c, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return state_fail("a child after the restore still sees the wipe-on-fork memory");
    return 0;
}

static int s_mlock_setup(void **ctx)
{
    s_map_t *m = s_anon(0, "lo");
    if (!m)
        return -1;
    /* the system call itself: a sanitizer's mlock does nothing */
    if (syscall(SYS_mlock, m->p, m->len) < 0)
        return state_fail("mlock: %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_map_locked_setup(void **ctx)
{
    s_map_t *m = s_anon(MAP_LOCKED, "lo");
    *ctx = m;
    return m ? 0 : -1;
}

static int s_mlock_onfault_setup(void **ctx)
{
    s_map_t *m = s_anon(0, "lo lf");
    if (!m)
        return -1;
    if (syscall(SYS_mlock2, m->p, m->len, MLOCK_ONFAULT) < 0)
        return state_fail("mlock2(MLOCK_ONFAULT): %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_droppable_setup(void **ctx)
{
    s_map_t *m = s_anon(MAP_DROPPABLE, "dp wf");
    *ctx = m;
    return m ? 0 : -1;
}

/* Droppable memory may lose its pages under pressure: only its flags
 * are checked, and that what is there is either the data or zero. */
static int s_droppable_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_has_flags(m->p, m->len, m->flags) < 0)
        return -1;
    for (size_t i = 0; i < m->len; i += S_PAGE)
        if (m->p[i + 1] != 0 && m->p[i + 1] != (uint8_t)((i + 1) * 13 + 7))
            return state_fail("droppable page %zu holds neither its data nor zeros", i);
    return 0;
}

static int s_noreserve_setup(void **ctx)
{
    s_map_t *m = s_anon(MAP_NORESERVE, "nr");
    *ctx = m;
    return m ? 0 : -1;
}

static int s_mseal_setup(void **ctx)
{
    s_map_t *m = s_anon(0, "sl");
    if (!m)
        return -1;
    if (syscall(462 /* mseal */, m->p, m->len, 0) < 0)
        return state_fail("mseal: %s", strerror(errno));
    *ctx = m;
    return 0;
}

/* Sealed: mprotect must still fail with EPERM. */
static int s_mseal_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_check_anon(ctx) < 0)
        return -1;
    if (mprotect(m->p, m->len, PROT_READ) == 0 || errno != EPERM)
        return state_fail("mprotect of the sealed mapping did not fail with EPERM");
    return 0;
}

/* A PROT_NONE guard page between two writable ones: three vmas. */
static int s_prot_none_setup(void **ctx)
{
    s_map_t *m = s_anon(0, "");
    if (!m)
        return -1;
    if (mprotect(m->p + S_PAGE, S_PAGE, PROT_NONE) < 0)
        return state_fail("mprotect: %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_prot_none_check(void *ctx)
{
    s_map_t *m = ctx;
    char line[1024], flags[512];
    if (s_smaps(m->p + S_PAGE, line, sizeof line, flags, sizeof flags) < 0)
        return state_fail("no vma starts at the guard page");
    if (strncmp(strchr(line, ' ') + 1, "---p", 4) != 0)
        return state_fail("the guard page is %s", line);
    if (s_same(m->p, S_PAGE, 7) < 0)
        return -1;
    for (size_t i = 2 * S_PAGE; i < m->len; i++)
        if (m->p[i] != (uint8_t)(i * 13 + 7))
            return state_fail("byte %zu after the guard page differs", i);
    return 0;
}

/* A new file of S_LEN zero bytes in the work directory, opened O_RDWR,
 * mapped PROT_READ with map_flags and closed (the mapping alone keeps
 * it, with the access it was opened with): *ctx, or -1. */
static int s_file_map(const char *name, int map_flags, void **ctx)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", state_workdir(), name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, S_LEN) < 0)
        return state_fail("%s: %s", path, strerror(errno));
    s_map_t *m = calloc(1, sizeof *m);
    if (!m)
        return state_fail("out of memory");
    m->p = mmap(NULL, S_LEN, PROT_READ, map_flags, fd, 0);
    close(fd);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    m->len = S_LEN, m->fd = -1;
    *ctx = m;
    return 0;
}

/* A file opened O_RDWR, mapped MAP_SHARED but PROT_READ: the process may
 * mprotect it writable later, and write through it to the file. */
static int s_shared_rdwr_setup(void **ctx)
{
    if (s_file_map("shared-rdwr", MAP_SHARED, ctx) < 0)
        return -1;
    ((s_map_t *)*ctx)->flags = "mw";
    return 0;
}

static int s_shared_rdwr_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_has_flags(m->p, m->len, m->flags) < 0)
        return -1;
    if (mprotect(m->p, m->len, PROT_READ | PROT_WRITE) < 0)
        return state_fail("mprotect(PROT_WRITE) of the shared file mapping: %s",
                          strerror(errno));
    m->p[5] = 42;
    char path[512], c = 0;
    snprintf(path, sizeof path, "%s/shared-rdwr", state_workdir());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, &c, 1, 5) != 1 || c != 42)
        return state_fail("the write through the mapping is not in the file");
    close(fd);
    return 0;
}

/* A guard page (MADV_GUARD_INSTALL, 6.13) inside a mapping: no vma of
 * its own, a marker in the page table. Refused: it cannot be seen in
 * smaps, and lost it would make an overflow trap a silent write. */
static int s_guard_setup(void **ctx)
{
    s_map_t *m = s_anon(0, "");
    if (!m)
        return -1;
    if (madvise(m->p + S_PAGE, S_PAGE, 102 /* MADV_GUARD_INSTALL */) < 0)
        return state_fail("MADV_GUARD_INSTALL: %s", strerror(errno));
    *ctx = m;
    return 0;
}

/* Still a guard after the refusal: a child touching it dies of SIGSEGV. */
static int s_guard_check(void *ctx)
{
    s_map_t *m = ctx;
    pid_t c = fork();
    if (c < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c == 0)
        _exit(m->p[S_PAGE + 1] == 0 ? 0 : 1);
    /* killed by SIGSEGV, or (a sanitizer's handler) exited reporting it */
    int st;
    if (waitpid(c, &st, 0) < 0 || (WIFEXITED(st) && WEXITSTATUS(st) == 0))
        return state_fail("a read of the guard page did not fault");
    return 0;
}

/* A private file mapping, read-only and never written: no "ac"
 * (accounting: only a mapping ever writable has it), read or not. */
static int s_untouched_file_setup(void **ctx)
{
    if (s_file_map("untouched", MAP_PRIVATE, ctx) < 0)
        return -1;
    const s_map_t *m = *ctx;
    return m->p[S_PAGE] == 0 ? 0 : state_fail("the new file is not zeros");
}

static int s_untouched_file_check(void *ctx)
{
    s_map_t *m = ctx;
    char line[1024], flags[512];
    if (s_smaps(m->p, line, sizeof line, flags, sizeof flags) < 0)
        return state_fail("no vma starts at %p", (void *)m->p);
    if (strstr(flags, " ac") || strncmp(flags, "ac", 2) == 0)
        return state_fail("the untouched file mapping gained ac: %s", flags);
    return m->p[S_PAGE] == 0 ? 0 : state_fail("the file mapping reads other than zeros");
}

/* ---- memfds ------------------------------------------------------------ */

/* A memfd named name with flags, S_LEN bytes of data; kept open. */
static s_map_t *s_memfd(const char *name, unsigned flags)
{
    s_map_t *m = calloc(1, sizeof *m);
    if (!m) {
        state_fail("out of memory");
        return NULL;
    }
    m->fd = memfd_create(name, flags);
    if (m->fd < 0 || ftruncate(m->fd, S_LEN) < 0) {
        state_fail("memfd_create(%s, %#x): %s", name, flags, strerror(errno));
        free(m);
        return NULL;
    }
    uint8_t buf[S_LEN];
    s_fill(buf, sizeof buf, 3);
    if (pwrite(m->fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
        state_fail("pwrite: %s", strerror(errno));
        free(m);
        return NULL;
    }
    m->len = S_LEN;
    return m;
}

/* The memfd's data, mode and seals are as expected. */
static int s_memfd_is(const s_map_t *m, mode_t mode, int seals)
{
    struct stat st;
    uint8_t buf[S_LEN];
    if (fstat(m->fd, &st) < 0)
        return state_fail("fstat: %s", strerror(errno));
    if ((st.st_mode & 07777) != mode)
        return state_fail("the memfd's mode is %04o, not %04o", st.st_mode & 07777, mode);
    if (st.st_size != S_LEN)
        return state_fail("the memfd is %lld bytes, not %d", (long long)st.st_size, S_LEN);
    int s = fcntl(m->fd, F_GET_SEALS);
    if (s != seals)
        return state_fail("the memfd's seals are %#x, not %#x", s, seals);
    if (pread(m->fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
        return state_fail("pread: %s", strerror(errno));
    return s_same(buf, sizeof buf, 3);
}

static int s_memfd_mode_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-mode", MFD_CLOEXEC);
    if (!m)
        return -1;
    if (fchmod(m->fd, 0642) < 0)
        return state_fail("fchmod: %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_memfd_mode_check(void *ctx)
{
    return s_memfd_is(ctx, 0642, F_SEAL_SEAL);
}

static int s_memfd_seals_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-seals", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!m)
        return -1;
    if (fcntl(m->fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) < 0)
        return state_fail("F_ADD_SEALS: %s", strerror(errno));
    *ctx = m;
    return 0;
}

/* Grow and shrink sealed; more seals may still be added. */
static int s_memfd_seals_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_memfd_is(m, 0777, F_SEAL_GROW | F_SEAL_SHRINK) < 0)
        return -1;
    if (ftruncate(m->fd, 2 * S_LEN) == 0 || errno != EPERM)
        return state_fail("the grow-sealed memfd grew");
    if (fcntl(m->fd, F_ADD_SEALS, F_SEAL_SEAL) < 0)
        return state_fail("F_ADD_SEALS(F_SEAL_SEAL) after the restore: %s", strerror(errno));
    return 0;
}

/* Sealed against writing, and mapped read-only, shared. */
static int s_memfd_seal_write_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!m)
        return -1;
    if (fcntl(m->fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        return state_fail("F_ADD_SEALS: %s", strerror(errno));
    m->p = mmap(NULL, S_LEN, PROT_READ, MAP_SHARED, m->fd, 0);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_memfd_seal_write_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_memfd_is(m, 0777, F_SEAL_WRITE | F_SEAL_SEAL) < 0 || s_same(m->p, S_LEN, 3) < 0)
        return -1;
    if (pwrite(m->fd, "x", 1, 0) == 1 || errno != EPERM)
        return state_fail("a write to the write-sealed memfd did not fail with EPERM");
    return 0;
}

/* Mapped writable, then sealed against future writes: the mapping stays
 * writable but no new one may be -- a restore could not map it again. */
static int s_memfd_future_write_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-future", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!m)
        return -1;
    m->p = mmap(NULL, S_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    if (fcntl(m->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) < 0)
        return state_fail("F_ADD_SEALS(F_SEAL_FUTURE_WRITE): %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_memfd_future_write_check(void *ctx)
{
    s_map_t *m = ctx;
    if (s_memfd_is(m, 0777, F_SEAL_FUTURE_WRITE) < 0)
        return -1;
    m->p[0] = 3;   /* (i * 13 + 3 at 0: unchanged) the old mapping still writes */
    return s_same(m->p, S_LEN, 3);
}

static int s_memfd_noexec_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-noexec", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    *ctx = m;
    return m ? 0 : -1;
}

static int s_memfd_noexec_check(void *ctx)
{
    return s_memfd_is(ctx, 0666, F_SEAL_EXEC);
}

/* The name shows in /proc/self/fd and in maps. */
static int s_memfd_name_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-name:42", MFD_CLOEXEC);
    if (!m)
        return -1;
    m->p = mmap(NULL, S_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    *ctx = m;
    return 0;
}

static int s_memfd_name_check(void *ctx)
{
    s_map_t *m = ctx;
    char link[64], target[256] = "", line[1024], flags[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
    if (readlink(link, target, sizeof target - 1) < 0 ||
        strcmp(target, "/memfd:state-name:42 (deleted)") != 0)
        return state_fail("the memfd is now '%s'", target);
    s_smaps(m->p, line, sizeof line, flags, sizeof flags);
    if (!strstr(line, "/memfd:state-name:42 (deleted)"))
        return state_fail("its mapping is now %s", line);
    return s_memfd_is(m, 0777, F_SEAL_SEAL);
}

/* Mapped, its fd closed: mode and size come back through the mapping. */
static int s_memfd_mapped_setup(void **ctx)
{
    s_map_t *m = s_memfd("state-mapped", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!m)
        return -1;
    if (fchmod(m->fd, 0600) < 0 || ftruncate(m->fd, 3 * S_LEN) < 0 ||
        fcntl(m->fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        return state_fail("fchmod/ftruncate/F_ADD_SEALS: %s", strerror(errno));
    m->p = mmap(NULL, S_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    close(m->fd);
    m->fd = -1;
    *ctx = m;
    return 0;
}

static int s_memfd_mapped_check(void *ctx)
{
    s_map_t *m = ctx;
    char path[96];
    struct stat st;
    if (s_same(m->p, S_LEN, 3) < 0)
        return -1;
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)m->p,
             (unsigned long)m->p + S_LEN);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        return state_fail("%s: %s", path, strerror(errno));
    int seals = fcntl(fd, F_GET_SEALS);
    close(fd);
    if ((st.st_mode & 07777) != 0600 || st.st_size != 3 * S_LEN || seals != F_SEAL_SHRINK)
        return state_fail("the mapped memfd is mode %04o, %lld bytes, seals %#x (not "
                          "0600, %d, %#x)", st.st_mode & 07777, (long long)st.st_size,
                          seals, 3 * S_LEN, F_SEAL_SHRINK);
    return 0;
}

static int s_memfd_hugetlb_setup(void **ctx)
{
    (void)ctx;
    int fd = memfd_create("state-huge", MFD_CLOEXEC | MFD_HUGETLB);
    if (fd < 0)
        return state_fail("memfd_create(MFD_HUGETLB): %s", strerror(errno));
    return 0;
}

/* ---- shared anonymous memory ------------------------------------------- */

/* MAP_SHARED | MAP_ANONYMOUS, shared with a child that writes to it after
 * the restore: maps shows it as /dev/zero (deleted), and it is one object. */
static int s_shared_anon_setup(void **ctx)
{
    s_map_t *m = calloc(1, sizeof *m);
    if (!m)
        return state_fail("out of memory");
    m->p = mmap(NULL, S_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    m->len = S_LEN, m->fd = -1;
    s_fill(m->p, S_LEN, 9);
    *ctx = m;
    return 0;
}

static int s_shared_anon_check(void *ctx)
{
    s_map_t *m = ctx;
    char line[1024], flags[512];
    if (s_same(m->p, S_LEN, 9) < 0)
        return -1;
    s_smaps(m->p, line, sizeof line, flags, sizeof flags);
    if (!strstr(line, "/dev/zero (deleted)"))
        return state_fail("the shared anonymous mapping shows as %s", line);
    pid_t c = fork();
    if (c < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c == 0) {
        m->p[3] = 0xee;
        _exit(0);
    }
    waitpid(c, NULL, 0);
    if (m->p[3] != 0xee)
        return state_fail("a child's write to the shared memory is not seen");
    return 0;
}

static int s_sysv_shm_setup(void **ctx)
{
    (void)ctx;
    int id = shmget(IPC_PRIVATE, S_LEN, IPC_CREAT | 0600);
    if (id < 0)
        return state_fail("shmget: %s", strerror(errno));
    void *p = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL);   /* gone with its last detach */
    if (p == (void *)-1)
        return state_fail("shmat: %s", strerror(errno));
    return 0;
}

const state_case_t state_cases_memory[] = {
    { .name = "memory-dontfork", .setup = s_dontfork_setup, .check = s_check_anon },
    { .name = "memory-dontdump", .setup = s_dontdump_setup, .check = s_check_anon },
    { .name = "memory-hugepage", .setup = s_hugepage_setup, .check = s_check_anon },
    { .name = "memory-nohugepage", .setup = s_nohugepage_setup, .check = s_check_anon },
    { .name = "memory-mergeable", .setup = s_mergeable_setup, .check = s_check_anon },
    { .name = "memory-sequential", .setup = s_sequential_setup, .check = s_check_anon },
    { .name = "memory-random", .setup = s_random_setup, .check = s_check_anon },
    { .name = "memory-wipeonfork", .setup = s_wipeonfork_setup, .check = s_wipeonfork_check },
    { .name = "memory-mlock", .setup = s_mlock_setup, .check = s_check_anon },
    { .name = "memory-map-locked", .setup = s_map_locked_setup, .check = s_check_anon },
    { .name = "memory-mlock-onfault", .setup = s_mlock_onfault_setup, .check = s_check_anon },
    { .name = "memory-droppable", .setup = s_droppable_setup, .check = s_droppable_check },
    { .name = "memory-noreserve", .setup = s_noreserve_setup, .check = s_check_anon },
    { .name = "memory-mseal", .setup = s_mseal_setup, .check = s_mseal_check },
    { .name = "memory-prot-none", .setup = s_prot_none_setup, .check = s_prot_none_check },
    { .name = "memory-guard-install", .expect = STATE_REFUSE, .reason = "guard region",
      .setup = s_guard_setup, .check = s_guard_check },
    { .name = "memory-shared-file-rdwr", .setup = s_shared_rdwr_setup,
      .check = s_shared_rdwr_check },
    { .name = "memory-untouched-file", .setup = s_untouched_file_setup,
      .check = s_untouched_file_check },
    { .name = "memory-memfd-mode", .setup = s_memfd_mode_setup, .check = s_memfd_mode_check },
    { .name = "memory-memfd-seals", .setup = s_memfd_seals_setup,
      .check = s_memfd_seals_check },
    { .name = "memory-memfd-seal-write", .setup = s_memfd_seal_write_setup,
      .check = s_memfd_seal_write_check },
    { .name = "memory-memfd-future-write", .expect = STATE_REFUSE, .reason = "write seal",
      .setup = s_memfd_future_write_setup, .check = s_memfd_future_write_check },
    { .name = "memory-memfd-noexec", .setup = s_memfd_noexec_setup,
      .check = s_memfd_noexec_check },
    { .name = "memory-memfd-name", .setup = s_memfd_name_setup, .check = s_memfd_name_check },
    { .name = "memory-memfd-mapped", .setup = s_memfd_mapped_setup,
      .check = s_memfd_mapped_check },
    { .name = "memory-memfd-hugetlb", .expect = STATE_REFUSE, .reason = "hugetlb",
      .setup = s_memfd_hugetlb_setup },
    { .name = "memory-shared-anon", .setup = s_shared_anon_setup, .check = s_shared_anon_check },
    { .name = "memory-sysv-shm", .expect = STATE_REFUSE, .reason = "SysV shared memory",
      .setup = s_sysv_shm_setup },
    { .name = NULL },
};
