/* direct.c - page runs copied straight into their place in the image
 * file (direct.h).
 *
 * Design. A flush grows the file to the end of the batch (ftruncate, if it
 * is shorter) and maps that range shared; the calling thread and the
 * helpers then take pieces in turn until none is left. A piece is at most
 * S_PIECE bytes and ends near an S_PIECE boundary of the file (pieces are
 * whole pages of the process, and the file's raw bytes need not start on
 * a page), so on a tmpfs with huge pages it is mostly one folio:
 * MADV_POPULATE_WRITE allocates it (the kernel clears it), then
 * process_vm_readv (or /proc/PID/mem) copies the process's bytes onto it
 * while the cleared lines are still in this core's cache. One copy per
 * byte, no lock shared between the threads (write(2) would serialise them
 * on the inode lock), and a full filesystem is a clean error from the
 * populate rather than a copy that silently stops short.
 *
 * A batch is a generation: helpers sleep until it changes; the caller
 * waits until every piece is taken and no helper is still on one, then
 * ends the batch (`running`): the queue only changes between batches, and
 * a helper that wakes late finds nothing to take.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "direct.h"
#include "proc/proc.h"
#include "util/array.h"

#define S_PIECE (2u << 20)   /* one thread's unit of work: a PMD-sized folio */

/* One piece of a queued copy. */
typedef struct s_piece {
    pid_t pid;
    int mem_fd;
    bool readable;
    uint64_t addr;         /* in the process */
    uint64_t off;          /* in the image file */
    size_t len;            /* <= S_PIECE, a page multiple */
} s_piece_t;

struct ghost_direct {
    int fd;                /* the image (caller's) */
    uint64_t page;
    uint64_t batch;        /* flush once the queue spans this much file */
    s_piece_t *q;          /* queued pieces, ascending file offsets */
    size_t n, cap;
    uint64_t lo, hi;       /* file range of q[0..n) */

    pthread_mutex_t mu;    /* guards everything below */
    pthread_cond_t go;     /* gen changed or quit */
    pthread_cond_t done;   /* busy dropped to 0 */
    pthread_t th[GHOST_DIRECT_MAX_THREADS - 1];
    size_t nth;
    uint64_t gen;          /* batches started */
    bool quit;
    bool running;          /* a batch is on: q, n, base are not changing */
    uint8_t *base;         /* the batch's mapping ... */
    uint64_t base_off;     /* ... of the file from this offset */
    size_t next;           /* next piece to take */
    size_t busy;           /* helpers copying a piece */
    bool failed;           /* a piece failed: the first failure */
    int fail_errno;        /* placing it in the image; 0: a page was unreadable */
    pid_t fail_pid;        /* the page */
    uint64_t fail_addr;
};

/* Copies one piece into the mapping; 0, or -1 with *ret_errno (0 for an
 * unreadable page of the process) and *ret_addr where it stopped. */
static int s_copy_piece(const ghost_direct_t *d, const s_piece_t *p, int *ret_errno,
                        uint64_t *ret_addr)
{
    uint8_t *dst = d->base + (p->off - d->base_off);
    /* The range may start and end inside pages the header records share. */
    uintptr_t lo = (uintptr_t)dst & ~(uintptr_t)(d->page - 1);
    uintptr_t hi = ((uintptr_t)dst + p->len + d->page - 1) & ~(uintptr_t)(d->page - 1);
    /* EINVAL: a kernel before 5.14; the copy below then faults it in. */
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) < 0 && errno != EINVAL) {
        *ret_errno = errno == EFAULT ? ENOSPC : errno;   /* SIGBUS: no room */
        *ret_addr = p->addr;
        return -1;
    }
    size_t got = proc_read_mem(p->pid, p->mem_fd, p->readable, p->addr, dst, p->len);
    if (got < p->len) {
        *ret_errno = 0;
        *ret_addr = p->addr + got;
        return -1;
    }
    return 0;
}

/* Copies pieces until none is left. Called and returns with d->mu held. */
static void s_take_pieces(ghost_direct_t *d)
{
    while (d->running && d->next < d->n) {
        const s_piece_t p = d->q[d->next++];
        d->busy++;
        pthread_mutex_unlock(&d->mu);
        int e = 0;
        uint64_t at = 0;
        int r = s_copy_piece(d, &p, &e, &at);
        pthread_mutex_lock(&d->mu);
        d->busy--;
        if (r < 0 && !d->failed) {
            d->failed = true;
            d->fail_errno = e;
            d->fail_pid = p.pid;
            d->fail_addr = at;
        }
    }
    if (d->busy == 0)
        pthread_cond_broadcast(&d->done);
}

static void *s_helper(void *arg)
{
    ghost_direct_t *d = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->gen == seen && !d->quit)
            pthread_cond_wait(&d->go, &d->mu);
        if (d->quit)
            break;
        seen = d->gen;
        s_take_pieces(d);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* CPUs this thread may run on (1 if it cannot tell). */
static size_t s_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? (size_t)n : 1;
}

static int s_unsupported(cairn_error_t *err, const char *why, int e)
{
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "the image cannot be written in place: %s%s%s", why,
                           e ? ": " : "", e ? strerror(e) : "");
}

/* Can fd be grown and mapped shared for writing? */
static int s_check_fd(int fd, cairn_error_t *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return s_unsupported(err, "fstat", errno);
    if (!S_ISREG(st.st_mode))
        return s_unsupported(err, "not a regular file", 0);
    /* Measured (bench/README.md): where the filesystem backs the file
     * with small pages, one fault per page costs more than write(2)'s
     * copy and the streaming pipeline wins; st_blksize says which (tmpfs
     * reports its huge page size when huge pages are on). */
    if ((uint64_t)st.st_blksize < S_PIECE)
        return s_unsupported(err, "its filesystem works in small pages (st_blksize)", 0);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
        return s_unsupported(err, "not open for reading and writing", 0);
    if (fl & O_APPEND)
        return s_unsupported(err, "open with O_APPEND", 0);
    if (lseek(fd, 0, SEEK_CUR) < 0)
        return s_unsupported(err, "cannot seek", errno);
    long ps = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return s_unsupported(err, "cannot be mapped shared", errno);
    munmap(m, (size_t)ps);
    return 0;
}

int ghost_direct_new(int fd, size_t batch, ghost_direct_t **ret, cairn_error_t *err)
{
    int r = s_check_fd(fd, err);
    if (r < 0)
        return r;
    ghost_direct_t *d = calloc(1, sizeof(*d));
    if (!d)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    d->fd = fd;
    d->page = (uint64_t)sysconf(_SC_PAGESIZE);
    d->batch = batch ? batch : GHOST_DIRECT_BATCH;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->go, NULL);
    pthread_cond_init(&d->done, NULL);
    size_t cpus = s_cpus(), want = (cpus > GHOST_DIRECT_MAX_THREADS ? GHOST_DIRECT_MAX_THREADS : cpus) - 1;
    /* Fewer helpers than wanted only makes the copy slower: not an error. */
    while (d->nth < want && pthread_create(&d->th[d->nth], NULL, s_helper, d) == 0)
        d->nth++;
    *ret = d;
    return 0;
}

size_t ghost_direct_threads(const ghost_direct_t *d)
{
    return d ? d->nth + 1 : 0;
}

ghost_direct_t *ghost_direct_free(ghost_direct_t *d)
{
    if (!d)
        return NULL;
    pthread_mutex_lock(&d->mu);
    d->quit = true;
    pthread_cond_broadcast(&d->go);
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; i < d->nth; i++)
        pthread_join(d->th[i], NULL);
    pthread_cond_destroy(&d->done);
    pthread_cond_destroy(&d->go);
    pthread_mutex_destroy(&d->mu);
    free(d->q);
    free(d);
    return NULL;
}

static int s_push(ghost_direct_t *d, const s_piece_t *p, cairn_error_t *err)
{
    if (CAIRN_GROW(d->q, d->cap, d->n + 1, 256) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (d->n == 0)
        d->lo = p->off;
    d->q[d->n++] = *p;
    d->hi = p->off + p->len;
    return 0;
}

int ghost_direct_add(ghost_direct_t *d, pid_t pid, int mem_fd, bool readable,
                     uint64_t addr, uint64_t off, size_t len, cairn_error_t *err)
{
    if (!d || len % d->page || addr % d->page || (d->n > 0 && off < d->hi))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "bad direct copy of %zu bytes at %#llx", len,
                               (unsigned long long)addr);
    for (size_t done = 0; done < len;) {
        /* Up to the next S_PIECE boundary of the file, in whole pages of
         * the process: the raw bytes need not start on a page of the file. */
        uint64_t at = off + done, edge = (at / S_PIECE + 1) * S_PIECE;
        size_t n = (size_t)((edge - at) & ~(d->page - 1));
        n = n == 0 ? (size_t)d->page : n;
        n = n < len - done ? n : len - done;
        s_piece_t p = { pid, mem_fd, readable, addr + done, at, n };
        int r = 0;
        if (d->n > 0 && p.off + p.len - d->lo > d->batch)
            r = ghost_direct_flush(d, err);
        if (r == 0)
            r = s_push(d, &p, err);
        if (r < 0)
            return r;
        done += p.len;
    }
    return 0;
}

/* Grows the file to the batch's end if needed and maps the batch (from
 * its first page) into d->base. */
static int s_map_batch(ghost_direct_t *d, cairn_error_t *err)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0 ||
        ((uint64_t)st.st_size < d->hi && ftruncate(d->fd, (off_t)d->hi) < 0))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot grow the image: %s",
                               strerror(errno));
    d->base_off = d->lo / S_PIECE * S_PIECE;   /* huge pages map whole */
    void *m = mmap(NULL, d->hi - d->base_off, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd,
                   (off_t)d->base_off);
    if (m == MAP_FAILED)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot map the image: %s",
                               strerror(errno));
    d->base = m;
    return 0;
}

int ghost_direct_flush(ghost_direct_t *d, cairn_error_t *err)
{
    if (!d)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no direct copier");
    if (d->n == 0)
        return 0;
    int r = s_map_batch(d, err);
    if (r < 0) {
        d->n = 0;
        return r;
    }
    pthread_mutex_lock(&d->mu);
    d->next = 0;
    d->failed = false;
    d->running = true;
    d->gen++;
    pthread_cond_broadcast(&d->go);
    s_take_pieces(d);
    while (d->busy > 0)
        pthread_cond_wait(&d->done, &d->mu);
    d->running = false;
    bool failed = d->failed;
    pthread_mutex_unlock(&d->mu);
    munmap(d->base, d->hi - d->base_off);
    d->base = NULL;
    d->n = 0;
    if (!failed)
        return 0;
    if (d->fail_errno)
        return cairn_error_set(err, -d->fail_errno, CAIRN_SYSTEM,
                               "cannot place page %#llx of process %d in the image: %s",
                               (unsigned long long)d->fail_addr, (int)d->fail_pid,
                               strerror(d->fail_errno));
    return cairn_error_set(err, -EIO, CAIRN_SYSTEM,
                           "cannot read the page at %#llx of process %d",
                           (unsigned long long)d->fail_addr, (int)d->fail_pid);
}
