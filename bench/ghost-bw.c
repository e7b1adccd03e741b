/* ghost-bw - the baselines of bench/ghost.sh: how fast memory can be read
 * out of another process, and how fast this machine copies memory.
 *
 *   ghost-bw --pid PID --addr ADDR --bytes N [--chunk BYTES] [--reps R] [--dir DIR]
 *
 * process_vm_readv: reads [ADDR, ADDR+N) of PID (a running ghost-victim)
 * in CHUNK-sized calls into one reused CHUNK buffer: the reading alone,
 * the buffer staying in the cache. process_vm_readv_resident: the same
 * calls into consecutive parts of a resident buffer of N bytes, so the
 * bytes land in memory as an image's must. process_vm_readv_dst16: the
 * reused-buffer reads into the buffer + 16 bytes, a destination 16 bytes
 * past its source modulo 4 KiB (x86 4K aliasing: what an image run that is
 * not page-aligned in its file costs a copy). memcpy: the same N bytes from
 * a buffer of our own (written first, so resident) into the reused CHUNK
 * buffer. With --dir, what any writer of an image on DIR's filesystem
 * pays there: write_new_file, write(2) of the N bytes from our resident
 * buffer in CHUNK calls into a new file of DIR, then fsync (each rep a new
 * file, the last one unlinked first, as a dump's .part replaces the last
 * image); write_over_file, the same into the last such file, whose pages
 * exist. Each is run R times (default 3) and the best is kept. One line:
 *   {"process_vm_readv_mib_s":X,"process_vm_readv_resident_mib_s":Z,
 *    "process_vm_readv_dst16_mib_s":U,
 *    "memcpy_mib_s":Y[,"write_new_file_mib_s":W,"write_over_file_mib_s":V],
 *    "bytes":N,"chunk_bytes":C,"reps":R}
 * Exit codes: 100 wrong usage, 111 a system call failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/options.h"

typedef struct s_args {
    long pid;            /* --pid */
    uint64_t addr;       /* --addr */
    size_t bytes;        /* --bytes */
    size_t chunk;        /* --chunk, default 8 MiB (the dump's window) */
    int reps;            /* --reps */
    const char *dir;     /* --dir, or NULL */
} s_args_t;

static double s_now(void)
{
    return (double)cairn_now_ns() / 1e9;
}

/* The options, as cairn_args_t values. */
enum { S_OPT_PID, S_OPT_ADDR, S_OPT_BYTES, S_OPT_CHUNK, S_OPT_REPS, S_OPT_DIR };

static const cairn_option_t s_options[] = {
    [S_OPT_PID] = { "--pid", "PID", "the process to read (a ghost-victim)" },
    [S_OPT_ADDR] = { "--addr", "ADDR", "start of its region" },
    [S_OPT_BYTES] = { "--bytes", "N", "size of the region" },
    [S_OPT_CHUNK] = { "--chunk", "BYTES", "bytes per call (default 8 MiB)" },
    [S_OPT_REPS] = { "--reps", "R", "runs, the best kept (default 3)" },
    [S_OPT_DIR] = { "--dir", "DIR", "also time writing a file there" },
    { NULL, NULL, NULL },
};

/* A number as strtoull(base 0) reads it, the whole string. */
static int s_number(const char *s, unsigned long long *ret)
{
    char *end = NULL;

    *ret = strtoull(s, &end, 0);
    return *s && !*end ? 0 : -EINVAL;
}

static int s_parse(int argc, char **argv, s_args_t *a)
{
    unsigned long long v[S_OPT_DIR];
    cairn_args_t args;
    cairn_error_t err;

    if (cairn_args_parse("ghost-bw", s_options, argc > 0 ? argc - 1 : 0,
                         argv + 1, 0, &args, &err) < 0)
        return -EINVAL;
    for (int i = 0; i < S_OPT_DIR; i++)
        if (args.values[i] && s_number(args.values[i], &v[i]) < 0)
            return -EINVAL;
    if (args.values[S_OPT_PID])
        a->pid = (long)v[S_OPT_PID];
    if (args.values[S_OPT_ADDR])
        a->addr = v[S_OPT_ADDR];
    if (args.values[S_OPT_BYTES])
        a->bytes = (size_t)v[S_OPT_BYTES];
    if (args.values[S_OPT_CHUNK])
        a->chunk = (size_t)v[S_OPT_CHUNK];
    if (args.values[S_OPT_REPS])
        a->reps = (int)v[S_OPT_REPS];
    a->dir = args.values[S_OPT_DIR];
    if (a->pid <= 0 || !a->addr || !a->bytes || !a->chunk || a->reps <= 0 ||
        a->reps > 100)
        return -EINVAL;
    return 0;
}

/* One pass of process_vm_readv over the region into buf (advancing
 * through it when spread, else reusing its first chunk); seconds, or -1. */
static double s_pvr_pass(const s_args_t *a, uint8_t *buf, bool spread)
{
    double t0 = s_now();
    for (size_t off = 0; off < a->bytes; off += a->chunk) {
        size_t n = a->bytes - off < a->chunk ? a->bytes - off : a->chunk;
        struct iovec l = { buf + (spread ? off : 0), n },
                     r = { (void *)(uintptr_t)(a->addr + off), n };
        if (process_vm_readv((pid_t)a->pid, &l, 1, &r, 1, 0) != (ssize_t)n)
            return -1;
    }
    return s_now() - t0;
}

/* One pass of memcpy of src (a->bytes) through the reused buffer. */
static double s_memcpy_pass(const s_args_t *a, const uint8_t *src, uint8_t *buf)
{
    double t0 = s_now();
    for (size_t off = 0; off < a->bytes; off += a->chunk) {
        size_t n = a->bytes - off < a->chunk ? a->bytes - off : a->chunk;
        memcpy(buf, src + off, n);
        __asm__ volatile("" : : "r"(buf) : "memory");   /* keep the copy */
    }
    return s_now() - t0;
}

/* One pass of write(2) of src (a->bytes) into fd from offset 0, then
 * fsync; seconds, or -1. */
static double s_write_pass(const s_args_t *a, const uint8_t *src, int fd)
{
    double t0 = s_now();
    for (size_t off = 0; off < a->bytes;) {
        size_t n = a->bytes - off < a->chunk ? a->bytes - off : a->chunk;
        ssize_t k = pwrite(fd, src + off, n, (off_t)off);
        if (k <= 0)
            return -1;
        off += (size_t)k;
    }
    if (fsync(fd) < 0)
        return -1;
    return s_now() - t0;
}

/* Best of a->reps writes into a new file of a->dir (*fresh) and over the
 * last one (*over), seconds; 0 or -1 with errno. */
static int s_file_passes(const s_args_t *a, const uint8_t *src, double *fresh, double *over)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/ghost-bw.%d", a->dir, (int)getpid()) >=
        (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    *fresh = *over = 1e9;
    int fd = -1;
    for (int i = 0; i < a->reps; i++) {
        if (fd >= 0)
            close(fd);
        unlink(path);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        double t = fd < 0 ? -1 : s_write_pass(a, src, fd);
        if (t < 0)
            break;
        *fresh = t < *fresh ? t : *fresh;
    }
    for (int i = 0; fd >= 0 && *fresh < 1e9 && i < a->reps; i++) {
        double t = s_write_pass(a, src, fd);
        if (t < 0) {
            *over = 1e9;
            break;
        }
        *over = t < *over ? t : *over;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    errno = e;
    return *fresh < 1e9 && *over < 1e9 ? 0 : -1;
}

static void *s_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0x5a, n);   /* resident before timing */
    return p;
}

int main(int argc, char **argv)
{
    s_args_t a = { .chunk = 8u << 20, .reps = 3 };
    if (s_parse(argc, argv, &a) < 0) {
        fprintf(stderr, "usage: ghost-bw --pid PID --addr ADDR --bytes N "
                        "[--chunk BYTES] [--reps R] [--dir DIR]\n");
        return 100;
    }
    uint8_t *buf = s_map(a.chunk + 64), *src = s_map(a.bytes), *big = s_map(a.bytes);
    if (!buf || !src || !big)
        return 111;
    double pvr = 1e9, res = 1e9, cpy = 1e9, d16 = 1e9;
    for (int i = 0; i < a.reps; i++) {
        double t = s_pvr_pass(&a, buf, false), u = s_pvr_pass(&a, big, true),
               v = s_pvr_pass(&a, buf + 16, false);
        if (t < 0 || u < 0 || v < 0) {
            fprintf(stderr, "ghost-bw: process_vm_readv: %s\n", strerror(errno));
            return 111;
        }
        pvr = t < pvr ? t : pvr;
        res = u < res ? u : res;
        d16 = v < d16 ? v : d16;
        t = s_memcpy_pass(&a, src, buf);
        cpy = t < cpy ? t : cpy;
    }
    double mib = (double)a.bytes / (1 << 20), fresh = 0, over = 0;
    if (a.dir && s_file_passes(&a, src, &fresh, &over) < 0) {
        fprintf(stderr, "ghost-bw: writing a file in %s: %s\n", a.dir, strerror(errno));
        return 111;
    }
    printf("{\"process_vm_readv_mib_s\":%.0f,\"process_vm_readv_resident_mib_s\":%.0f,"
           "\"process_vm_readv_dst16_mib_s\":%.0f,\"memcpy_mib_s\":%.0f,", mib / pvr,
           mib / res, mib / d16, mib / cpy);
    if (a.dir)
        printf("\"write_new_file_mib_s\":%.0f,\"write_over_file_mib_s\":%.0f,", mib / fresh,
               mib / over);
    printf("\"bytes\":%zu,\"chunk_bytes\":%zu,\"reps\":%d}\n", a.bytes, a.chunk, a.reps);
    return 0;
}
