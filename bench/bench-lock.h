/* bench-lock.h - the one driver of bench/sync.sh's lock clients.
 *
 * syncd (bench-sync), Redis (bench-sync-redis) and etcd (bench-sync-etcd)
 * are measured by the same code, so a difference between their lines is
 * the lock service's and not the loop's. Each client program describes how
 * it talks to its service with a bench_locker_t and hands argv to
 * bench_lock_main, which runs one of:
 *
 *   latency ENDPOINT COUNT [--prefix P] [OPTS]
 *       one lock, made and touched first, then 100 untimed and COUNT timed
 *       lock + unlock pairs, each pair timed alone on CLOCK_MONOTONIC; one
 *       JSON line: median, p99, min and mean in µs
 *   throughput ENDPOINT --procs P --locks L --seconds S [--prefix X] [OPTS]
 *       P client processes (each its own connection), each with L locks
 *       of its own (nobody contends), made and touched before the clock
 *       starts; each cycles lock + unlock over its locks for S seconds.
 *       One JSON line: pairs/s and calls/s (a pair is two calls, two
 *       requests to the service), the clients' CPU seconds
 *
 * OPTS are the locker's own (parse_opt). Every figure is of this run only.
 * Exit codes: 0, 1 the service failed or answered wrong (a message on
 * stderr), 2 usage.
 */
#ifndef BENCH_LOCK_H
#define BENCH_LOCK_H

#include <stddef.h>
#include <stdint.h>

/* How a client program talks to its lock service. Each call returns 0 or
 * a negative errno with a message in err (size BENCH_ERR_MAX). */
#define BENCH_ERR_MAX 256

typedef struct bench_locker {
    const char *name;        /* "syncd", "redis", "etcd": the JSON's "bench" */
    /* Consumes one option at argv[0] (and its value) it knows: returns how
     * many arguments it took, 0 if it is not the locker's, -1 if its value
     * is bad. May be NULL. */
    int (*parse_opt)(int argc, char **argv);
    /* A connection (or session) to endpoint; NULL with err set. */
    void *(*open)(const char *endpoint, char *err);
    /* Makes name ready for the measurement (first use: creates it); a
     * name the locker does not want (e.g. its home is not the one asked
     * for) is 1, and the driver tries another. May be NULL. */
    int (*prepare)(void *conn, const char *name, char *err);
    int (*lock)(void *conn, const char *name, char *err);
    /* Unlocks name, which this connection locked last. */
    int (*unlock)(void *conn, const char *name, char *err);
    void (*close)(void *conn);
    /* Extra JSON members for the result line ("\"k\":v,..." without braces,
     * or ""), e.g. the options in force. May be NULL. */
    const char *(*describe)(void *conn);
} bench_locker_t;

/* Runs argv's mode with locker l; returns the exit code. A mode it does
 * not know returns 2 with usage on stderr. */
int bench_lock_main(const bench_locker_t *l, int argc, char **argv);

/* Sorted-sample helpers the client programs share. */
int bench_cmp_u64(const void *a, const void *b);
/* Nearest-rank percentile p (0..100) of n sorted values. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);
/* Prints one "median_us","p99_us","min_us","mean_us" fragment of n
 * nanosecond samples (sorts them) to a static buffer. */
const char *bench_stats_json(uint64_t *ns, size_t n);

#endif
