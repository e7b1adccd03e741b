/* bench-lock.c - latency and throughput of lock + unlock pairs, for any
 * lock service a bench_locker_t describes (bench-lock.h has the modes).
 *
 * Throughput forks its client processes before any of them connects, lets
 * each make and touch its locks, and starts them together by closing a
 * pipe they all block on; each times its own S seconds and reports
 * "pairs elapsed_ns cpu_ns" (or "E message") in one line on a shared pipe
 * (one write under PIPE_BUF: lines never interleave). The rate is the sum
 * of each process's pairs over its own elapsed time.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-lock.h"
#include "util/clock.h"

#define WARMUP 100
#define MAX_COUNT 10000000L
#define MAX_PROCS 256
#define MAX_LOCKS 100000L
#define MAX_SECONDS 600L
/* A prepare that rejects names (another home) gets this many tries per
 * lock wanted before the run gives up. */
#define PREPARE_TRIES 64
/* How long the parent waits for every client to be ready and to report. */
#define READY_TIMEOUT_MS 120000

struct opts {
    const char *endpoint;
    const char *prefix;
    long count, procs, locks, seconds;
};

int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)((double)n * p / 100.0 + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return sorted[i - 1];
}

const char *bench_stats_json(uint64_t *ns, size_t n)
{
    static char buf[256];
    double sum = 0;
    qsort(ns, n, sizeof(*ns), bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    snprintf(buf, sizeof(buf),
             "\"median_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.2f,\"mean_us\":%.2f",
             (double)bench_percentile(ns, n, 50) / 1e3,
             (double)bench_percentile(ns, n, 99) / 1e3, (double)ns[0] / 1e3,
             sum / (double)n / 1e3);
    return buf;
}

static int s_usage(const char *why)
{
    fprintf(stderr,
            "usage: latency ENDPOINT COUNT [--prefix P] [OPTS]\n"
            "       throughput ENDPOINT --procs P --locks L --seconds S [--prefix P] [OPTS]\n"
            "%s\n", why);
    return 2;
}

static int s_long(const char *s, long lo, long hi, long *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* The options after the mode's positional arguments. */
static int s_parse(const bench_locker_t *l, int argc, char **argv, struct opts *o)
{
    for (int i = 0; i < argc;) {
        const char *a = argv[i];
        long *slot = NULL, hi = 0;
        if (!strcmp(a, "--procs"))
            slot = &o->procs, hi = MAX_PROCS;
        else if (!strcmp(a, "--locks"))
            slot = &o->locks, hi = MAX_LOCKS;
        else if (!strcmp(a, "--seconds"))
            slot = &o->seconds, hi = MAX_SECONDS;
        if (slot) {
            if (i + 1 >= argc || s_long(argv[i + 1], 1, hi, slot) < 0) {
                fprintf(stderr, "%s: bad value for %s\n", l->name, a);
                return -EINVAL;
            }
            i += 2;
            continue;
        }
        if (!strcmp(a, "--prefix")) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                fprintf(stderr, "%s: --prefix needs a value\n", l->name);
                return -EINVAL;
            }
            o->prefix = argv[i + 1];
            i += 2;
            continue;
        }
        int took = l->parse_opt ? l->parse_opt(argc - i, argv + i) : 0;
        if (took <= 0) {
            fprintf(stderr, "%s: %s option '%s'\n", l->name,
                    took < 0 ? "bad value for" : "unknown", a);
            return -EINVAL;
        }
        i += took;
    }
    return 0;
}

static const char *s_describe(const bench_locker_t *l, void *conn)
{
    const char *d = l->describe ? l->describe(conn) : "";
    return d ? d : "";
}

/* Finds a name under base the locker accepts and prepares it; 0 or -errno. */
static int s_prepare_one(const bench_locker_t *l, void *conn, const char *base,
                         long *next, char *name, size_t size, char *err)
{
    for (int tries = 0; tries < PREPARE_TRIES; tries++) {
        snprintf(name, size, "%s-%ld", base, (*next)++);
        int r = l->prepare ? l->prepare(conn, name, err) : 0;
        if (r <= 0)
            return r;
    }
    snprintf(err, BENCH_ERR_MAX, "no acceptable name in %d tries under %s",
             PREPARE_TRIES, base);
    return -ENOENT;
}

static int s_latency(const bench_locker_t *l, const struct opts *o)
{
    char err[BENCH_ERR_MAX] = "", name[256];
    long next = 0;
    int r;
    void *conn = l->open(o->endpoint, err);
    if (!conn) {
        fprintf(stderr, "%s: open %s: %s\n", l->name, o->endpoint, err);
        return 1;
    }
    uint64_t *ns = calloc((size_t)o->count, sizeof(*ns));
    if (!ns) {
        l->close(conn);
        return 1;
    }
    r = s_prepare_one(l, conn, o->prefix, &next, name, sizeof(name), err);
    for (long i = 0; r == 0 && i < WARMUP + o->count; i++) {
        uint64_t t0 = cairn_now_ns();
        r = l->lock(conn, name, err);
        if (r == 0)
            r = l->unlock(conn, name, err);
        if (i >= WARMUP)
            ns[i - WARMUP] = cairn_now_ns() - t0;
    }
    if (r < 0) {
        fprintf(stderr, "%s: %s: %s\n", l->name, name, err);
        free(ns);
        l->close(conn);
        return 1;
    }
    const char *extra = s_describe(l, conn);
    printf("{\"bench\":\"%s\",\"mode\":\"latency\",\"lock\":\"%s\",\"pairs\":%ld,%s%s%s}\n",
           l->name, name, o->count, bench_stats_json(ns, (size_t)o->count),
           *extra ? "," : "", extra);
    free(ns);
    l->close(conn);
    return 0;
}

static uint64_t s_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void s_report(int fd, const char *line)
{
    if (write(fd, line, strlen(line)) < 0)
        _exit(1);
}

/* A throughput client: connect, prepare, wait for the start, run. Never
 * returns. */
static void s_client(const bench_locker_t *l, const struct opts *o, long id,
                     int go_fd, int ready_fd, int out_fd)
{
    char err[BENCH_ERR_MAX] = "", line[512], base[200];
    long next = 0;
    int r = 0;
    char(*names)[256] = calloc((size_t)o->locks, sizeof(*names));
    void *conn = names ? l->open(o->endpoint, err) : NULL;
    if (!conn) {
        snprintf(line, sizeof(line), "E client %ld: open: %s\n", id,
                 names ? err : "out of memory");
        s_report(out_fd, line);
        _exit(1);
    }
    snprintf(base, sizeof(base), "%s-%ld", o->prefix, id);
    for (long i = 0; r == 0 && i < o->locks; i++)
        r = s_prepare_one(l, conn, base, &next, names[i], sizeof(names[i]), err);
    /* Touched once, so first-use costs (creation, a cache grant) stay out. */
    for (long i = 0; r == 0 && i < o->locks; i++) {
        r = l->lock(conn, names[i], err);
        if (r == 0)
            r = l->unlock(conn, names[i], err);
    }
    if (r < 0) {
        snprintf(line, sizeof(line), "E client %ld: prepare: %s\n", id, err);
        s_report(out_fd, line);
        _exit(1);
    }
    s_report(ready_fd, "r");
    char c;
    while (read(go_fd, &c, 1) < 0 && errno == EINTR)
        ;
    uint64_t cpu0 = s_cpu_ns(), t0 = cairn_now_ns();
    uint64_t end = t0 + (uint64_t)o->seconds * 1000000000ULL, now = t0;
    long pairs = 0, i = 0;
    while (now < end) {
        for (int k = 0; k < 64; k++) {
            r = l->lock(conn, names[i], err);
            if (r == 0)
                r = l->unlock(conn, names[i], err);
            if (r < 0) {
                snprintf(line, sizeof(line), "E client %ld: %s: %s\n", id,
                         names[i], err);
                s_report(out_fd, line);
                _exit(1);
            }
            pairs++;
            if (++i == o->locks)
                i = 0;
        }
        now = cairn_now_ns();
    }
    snprintf(line, sizeof(line), "%ld %" PRIu64 " %" PRIu64 "\n", pairs,
             now - t0, s_cpu_ns() - cpu0);
    s_report(out_fd, line);
    l->close(conn);
    _exit(0);
}

/* Reads exactly n bytes from fd within the deadline; 0 or -errno. */
static int s_read_all(int fd, char *buf, size_t n, uint64_t deadline_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int left = (int)cairn_ms_left(deadline_ms);
        if (left == 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -ETIMEDOUT;
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EPIPE;
        got += (size_t)k;
    }
    return 0;
}

static int s_throughput(const bench_locker_t *l, const struct opts *o)
{
    int go[2], ready[2], out[2];
    pid_t pids[MAX_PROCS];
    if (pipe(go) < 0 || pipe(ready) < 0 || pipe(out) < 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    for (long i = 0; i < o->procs; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            close(go[1]);
            close(ready[0]);
            close(out[0]);
            s_client(l, o, i, go[0], ready[1], out[1]);
        }
    }
    close(go[0]);
    close(ready[1]);
    close(out[1]);
    /* Everyone ready (or someone failed: its line is on out). */
    char *buf = calloc((size_t)o->procs, 1);
    int r = buf ? s_read_all(ready[0], buf, (size_t)o->procs,
                             cairn_now_ms() + READY_TIMEOUT_MS)
                : -ENOMEM;
    free(buf);
    close(go[1]);   /* start */
    FILE *f = fdopen(out[0], "r");
    char line[512];
    double rate = 0, cpu_s = 0, secs = 0;
    long pairs = 0, done = 0;
    int rc = 0;
    while (f && fgets(line, sizeof(line), f)) {
        long p;
        uint64_t el, cpu;
        if (line[0] == 'E' || sscanf(line, "%ld %" SCNu64 " %" SCNu64, &p, &el, &cpu) != 3) {
            fprintf(stderr, "%s: %s", l->name, line);
            rc = 1;
            continue;
        }
        pairs += p;
        rate += (double)p / ((double)el / 1e9);
        cpu_s += (double)cpu / 1e9;
        secs += (double)el / 1e9;
        done++;
    }
    if (f)
        fclose(f);
    for (long i = 0; i < o->procs; i++)
        waitpid(pids[i], NULL, 0);
    if (r < 0 && !rc)
        fprintf(stderr, "%s: clients not ready: %s\n", l->name, strerror(-r));
    if (r < 0 || rc || done != o->procs)
        return 1;
    printf("{\"bench\":\"%s\",\"mode\":\"throughput\",\"procs\":%ld,\"locks_per_proc\":%ld,"
           "\"seconds\":%.2f,\"pairs\":%ld,\"pairs_per_s\":%.0f,\"calls_per_s\":%.0f,"
           "\"clients_cpu_s\":%.2f%s%s}\n",
           l->name, o->procs, o->locks, secs / (double)o->procs, pairs, rate,
           2 * rate, cpu_s, *s_describe(l, NULL) ? "," : "", s_describe(l, NULL));
    return 0;
}

int bench_lock_main(const bench_locker_t *l, int argc, char **argv)
{
    static char prefix[64];
    struct opts o = { .count = 0, .procs = 0, .locks = 0, .seconds = 0 };
    snprintf(prefix, sizeof(prefix), "bench-%s-%d", l->name, (int)getpid());
    o.prefix = prefix;
    if (argc < 3)
        return s_usage("a mode and an endpoint are needed");
    o.endpoint = argv[2];
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(argv[1], "latency")) {
        if (argc < 4 || s_long(argv[3], 1, MAX_COUNT, &o.count) < 0)
            return s_usage("latency: COUNT must be 1..10000000");
        if (s_parse(l, argc - 4, argv + 4, &o) < 0)
            return 2;
        return s_latency(l, &o);
    }
    if (!strcmp(argv[1], "throughput")) {
        if (s_parse(l, argc - 3, argv + 3, &o) < 0)
            return 2;
        if (!o.procs || !o.locks || !o.seconds)
            return s_usage("throughput: --procs, --locks and --seconds are needed");
        return s_throughput(l, &o);
    }
    return s_usage("unknown mode");
}
