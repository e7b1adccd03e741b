/* dsm-tool - libcairn's DSM segments from the shell, for dsmd's
 * integration test and bench (services/dsmd/test-dsmd.sh, bench/dsm.sh).
 *
 *   dsm-tool put NAME SIZE OFFSET VALUE      make (if needed) and store a u64
 *   dsm-tool get NAME OFFSET                 print the u64 (SIGBUS: "sigbus", exit 3)
 *   dsm-tool counter NAME SLOT ITERS LOCK    ITERS times: slot SLOT += 1 (page 1),
 *                                            and under syncd's mutex LOCK the
 *                                            shared counter (page 0) += 1
 *   dsm-tool sb NAME ROLE RUNS               store buffering: role 0 x=i; r=y,
 *                                            role 1 y=i; r=x; prints the runs
 *                                            where r < i (SC forbids both)
 *   dsm-tool mp NAME ROLE RUNS               message passing: 0 writes data then
 *                                            flag; 1 waits for the flag and checks
 *                                            data; prints violations
 *   dsm-tool word NAME WORD ITERS            false sharing: word WORD of page 0
 *                                            += 1 ITERS times, checked after each
 *   dsm-tool hold NAME SECONDS               map it and wait
 *   dsm-tool scan NAME                       read every page; prints ms and MB/s
 *   dsm-tool fill NAME SIZE                  make it and write every page
 *   dsm-tool jacobi NAME N ITERS RANK NPROCS  ITERS Jacobi sweeps of an N x N
 *                                            grid (two in the segment) by
 *                                            NPROCS ranks, each its block of
 *                                            rows, a syncd barrier per sweep;
 *                                            prints the rank's ms for the
 *                                            sweeps, rank 0 also the grid's sum
 *   dsm-tool lat NAME read|write [PAGES [STRIDE]]
 *                                            touch the first word of every
 *                                            STRIDE-th page (1), PAGES of them,
 *                                            each timed: the median, p99 and
 *                                            min in µs (STRIDE 2: no read-ahead)
 * Errors: one JSON line on stderr, exit 1.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/dsm.h"
#include "cairn/sync.h"
#include "util/clock.h"

#define PAGE 4096

static int s_die(const char *what, int e, const cairn_error_t *err)
{
    fprintf(stderr, "{\"error\":{\"code\":\"%s\",\"errno\":%d,\"message\":\"%s: %s\"}}\n",
            cairn_code_name(err->code), -e, what, err->message);
    return 1;
}

static cairn_dsm_t *s_open(const char *name, size_t size, unsigned flags, int *rc)
{
    cairn_dsm_t *s = NULL;
    cairn_error_t err = { 0 };
    int e = cairn_dsm_open(name, size, flags, 0666, &s, &err);
    if (e < 0)
        *rc = s_die("open", e, &err);
    return s;
}

static volatile uint64_t *s_word(cairn_dsm_t *s, size_t off)
{
    return (volatile uint64_t *)((char *)cairn_dsm_addr(s) + off);
}

static sigjmp_buf s_jump;
static void s_on_bus(int sig)
{
    (void)sig;
    siglongjmp(s_jump, 1);
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void s_spin_until(volatile uint64_t *w, uint64_t v)
{
    while (__atomic_load_n(w, __ATOMIC_SEQ_CST) < v)
        ;
}

/* Waits at the sweep barrier of name; 0 or the failure printed. */
static int s_barrier(cairn_sync_t *sy, const char *bar, int nprocs)
{
    cairn_error_t err = { 0 };
    int e = cairn_barrier_wait(sy, bar, (uint32_t)nprocs, CAIRN_SYNC_FOREVER, NULL, &err);
    return e < 0 ? s_die("barrier", e, &err) : 0;
}

/* A 5-point Jacobi relaxation with fixed borders (1.0 on the top edge). */
static int s_jacobi(const char *name, size_t n, long iters, int rank, int nprocs)
{
    int rc = 0;
    if (n < 8 || iters < 1 || nprocs < 1 || rank < 0 || rank >= nprocs)
        return 2;
    size_t bytes = (2 * n * n * sizeof(double) + PAGE - 1) / PAGE * PAGE;
    cairn_dsm_t *s = s_open(name, bytes, CAIRN_DSM_CREATE, &rc);
    cairn_error_t err = { 0 };
    cairn_sync_t *sy = s ? cairn_sync_open(NULL, &err) : NULL;
    if (!s || !sy)
        return s ? s_die("sync", -EHOSTUNREACH, &err) : rc;
    double *g[2] = { cairn_dsm_addr(s), (double *)cairn_dsm_addr(s) + n * n };
    size_t lo = n * (size_t)rank / (size_t)nprocs, hi = n * (size_t)(rank + 1) / (size_t)nprocs;
    char bar[300];
    snprintf(bar, sizeof bar, "%s.sweep", name);
    for (size_t i = lo; i < hi; i++)
        for (size_t j = 0; j < n; j++)
            g[0][i * n + j] = g[1][i * n + j] = i == 0 ? 1.0 : 0.0;
    if (s_barrier(sy, bar, nprocs))
        return 1;
    uint64_t t0 = cairn_now_ns();
    for (long it = 0; it < iters; it++) {
        const double *src = g[it % 2];
        double *dst = g[(it + 1) % 2];
        for (size_t i = lo > 1 ? lo : 1; i < hi && i < n - 1; i++)
            for (size_t j = 1; j < n - 1; j++)
                dst[i * n + j] = 0.25 * (src[(i - 1) * n + j] + src[(i + 1) * n + j] +
                                         src[i * n + j - 1] + src[i * n + j + 1]);
        if (s_barrier(sy, bar, nprocs))
            return 1;
    }
    double ms = (double)(cairn_now_ns() - t0) / 1e6, sum = 0;
    if (rank == 0)
        for (size_t k = 0; k < n * n; k++)
            sum += g[iters % 2][k];
    printf("{\"rank\":%d,\"nprocs\":%d,\"n\":%zu,\"iters\":%ld,\"ms\":%.1f,\"sum\":%.9g}\n",
           rank, nprocs, n, iters, ms, rank == 0 ? sum : 0.0);
    if (s_barrier(sy, bar, nprocs))   /* rank 0 has read the grid */
        return 1;
    cairn_sync_close(sy);
    cairn_dsm_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: dsm-tool put|get|counter|sb|mp|word|hold|scan NAME ...\n");
        return 2;
    }
    const char *cmd = argv[1], *name = argv[2];
    if (strcmp(cmd, "put") == 0 && argc == 6) {
        cairn_dsm_t *s = s_open(name, strtoull(argv[3], NULL, 0), CAIRN_DSM_CREATE, &rc);
        if (!s)
            return rc;
        *s_word(s, strtoull(argv[4], NULL, 0)) = strtoull(argv[5], NULL, 0);
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "get") == 0 && argc == 4) {
        cairn_dsm_t *volatile s = s_open(name, 0, 0, &rc);
        if (!s)
            return rc;
        signal(SIGBUS, s_on_bus);
        if (sigsetjmp(s_jump, 1)) {
            printf("sigbus\n");
            cairn_dsm_close(s);
            return 3;
        }
        printf("%llu\n", (unsigned long long)*s_word(s, strtoull(argv[3], NULL, 0)));
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "counter") == 0 && argc == 6) {
        cairn_dsm_t *s = s_open(name, 2 * PAGE, CAIRN_DSM_CREATE, &rc);
        cairn_error_t err = { 0 };
        cairn_sync_t *sy = s ? cairn_sync_open(NULL, &err) : NULL;
        if (!s || !sy)
            return s ? s_die("sync", -EHOSTUNREACH, &err) : rc;
        long slot = atol(argv[3]), iters = atol(argv[4]);
        for (long i = 0; i < iters; i++) {
            (*s_word(s, PAGE + 8 * (size_t)slot))++;
            int e = cairn_mutex_lock(sy, argv[5], CAIRN_SYNC_FOREVER, NULL, &err);
            if (e < 0)
                return s_die("lock", e, &err);
            (*s_word(s, 0))++;
            if ((e = cairn_mutex_unlock(sy, argv[5], &err)) < 0)
                return s_die("unlock", e, &err);
        }
        cairn_sync_close(sy);
        cairn_dsm_close(s);
        return 0;
    }
    if ((strcmp(cmd, "sb") == 0 || strcmp(cmd, "mp") == 0) && argc == 5) {
        /* page 0: x, page 1: y, page 2: done of role 0, page 3: done of role 1 */
        cairn_dsm_t *s = s_open(name, 4 * PAGE, CAIRN_DSM_CREATE, &rc);
        if (!s)
            return rc;
        int role = atoi(argv[3]);
        uint64_t runs = strtoull(argv[4], NULL, 0), bad = 0;
        volatile uint64_t *x = s_word(s, 0), *y = s_word(s, PAGE);
        volatile uint64_t *mine = s_word(s, (size_t)(2 + role) * PAGE);
        volatile uint64_t *theirs = s_word(s, (size_t)(3 - role) * PAGE);
        bool sb = cmd[0] == 's';
        for (uint64_t i = 1; i <= runs; i++) {
            s_spin_until(theirs, i - 1);   /* both finished run i-1 */
            uint64_t r;
            if (sb) {
                __atomic_store_n(role ? y : x, i, __ATOMIC_SEQ_CST);
                r = __atomic_load_n(role ? x : y, __ATOMIC_SEQ_CST);
                if (r < i) {
                    printf("%llu\n", (unsigned long long)i);
                    bad++;
                }
            } else if (role == 0) {
                __atomic_store_n(y, i, __ATOMIC_RELAXED);   /* data */
                __atomic_store_n(x, i, __ATOMIC_RELAXED);   /* flag */
            } else {
                s_spin_until(x, i);
                r = __atomic_load_n(y, __ATOMIC_RELAXED);
                if (r != i) {
                    printf("violation run %llu: data %llu\n", (unsigned long long)i,
                           (unsigned long long)r);
                    bad++;
                }
            }
            __atomic_store_n(mine, i, __ATOMIC_SEQ_CST);
        }
        fprintf(stderr, "%s role %d: %llu runs, %llu %s\n", cmd, role, (unsigned long long)runs,
                (unsigned long long)bad, sb ? "saw the old value" : "violations");
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "word") == 0 && argc == 5) {
        cairn_dsm_t *s = s_open(name, PAGE, CAIRN_DSM_CREATE, &rc);
        if (!s)
            return rc;
        volatile uint64_t *w = s_word(s, 8 * strtoull(argv[3], NULL, 0));
        uint64_t iters = strtoull(argv[4], NULL, 0), start = *w;
        for (uint64_t i = 1; i <= iters; i++) {
            *w = start + i;
            if (*w != start + i) {
                fprintf(stderr, "word lost a write at %llu\n", (unsigned long long)i);
                return 4;
            }
        }
        printf("%llu\n", (unsigned long long)*w);
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "hold") == 0 && argc == 4) {
        cairn_dsm_t *s = s_open(name, 0, 0, &rc);
        if (!s)
            return rc;
        printf("mapped\n");
        fflush(stdout);
        sleep((unsigned)atoi(argv[3]));
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "scan") == 0 && argc == 3) {
        cairn_dsm_t *s = s_open(name, 0, 0, &rc);
        if (!s)
            return rc;
        uint64_t t0 = cairn_now_ns(), sum = 0;
        for (size_t off = 0; off < cairn_dsm_size(s); off += PAGE)
            sum += *s_word(s, off);
        double ms = (double)(cairn_now_ns() - t0) / 1e6;
        printf("{\"bytes\":%zu,\"ms\":%.3f,\"mb_s\":%.1f,\"sum\":%llu}\n", cairn_dsm_size(s), ms,
               (double)cairn_dsm_size(s) / 1e3 / ms, (unsigned long long)sum);
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "jacobi") == 0 && argc == 7)
        return s_jacobi(name, (size_t)atol(argv[3]), atol(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (strcmp(cmd, "fill") == 0 && argc == 4) {
        cairn_dsm_t *s = s_open(name, strtoull(argv[3], NULL, 0), CAIRN_DSM_CREATE, &rc);
        if (!s)
            return rc;
        for (size_t off = 0; off < cairn_dsm_size(s); off += PAGE)
            *s_word(s, off) = off / PAGE + 1;
        cairn_dsm_close(s);
        return 0;
    }
    if (strcmp(cmd, "lat") == 0 && argc >= 4 && argc <= 6) {
        cairn_dsm_t *s = s_open(name, 0, 0, &rc);
        if (!s)
            return rc;
        bool write = strcmp(argv[3], "write") == 0;
        size_t stride = argc == 6 && atoi(argv[5]) > 0 ? (size_t)atoi(argv[5]) : 1;
        size_t n = cairn_dsm_size(s) / PAGE / stride;
        if (argc >= 5 && strtoull(argv[4], NULL, 0) < n)
            n = strtoull(argv[4], NULL, 0);
        double *us = calloc(n ? n : 1, sizeof *us);
        if (!us)
            return 1;
        for (size_t i = 0; i < n; i++) {
            uint64_t t0 = cairn_now_ns();
            if (write)
                *s_word(s, i * stride * PAGE) = i + 1;   /* a store alone: no read fault first */
            else
                (void)*s_word(s, i * stride * PAGE);
            us[i] = (double)(cairn_now_ns() - t0) / 1e3;
        }
        qsort(us, n, sizeof *us, s_cmp_double);
        printf("{\"pages\":%zu,\"median_us\":%.1f,\"p99_us\":%.1f,\"min_us\":%.1f}\n", n,
               n ? us[n / 2] : 0, n ? us[n * 99 / 100] : 0, n ? us[0] : 0);
        free(us);
        cairn_dsm_close(s);
        return 0;
    }
    fprintf(stderr, "{\"error\":{\"code\":\"usage\",\"message\":\"bad command or arguments\"}}\n");
    return 2;
}
