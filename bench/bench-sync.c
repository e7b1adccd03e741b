/* bench-sync - syncd's side of bench/sync.sh (issue 18's targets), through
 * libcairn's cairn/sync.h exactly as a program would use it.
 *
 *   latency ENDPOINT COUNT [--no-cache] [--home N | --not-home N]
 *   throughput ENDPOINT --procs P --locks L --seconds S [--no-cache] [--home N]
 *       bench-lock.h's modes with cairn_mutex_lock + cairn_mutex_unlock.
 *       Every lock is declared first (a mutex, no_cache as asked); --home N
 *       keeps only names whose grant says home N, --not-home N only the
 *       others (each candidate is locked once to read its home); the line
 *       says the home and whether the last grant was cached.
 *   cached ENDPOINT COUNT
 *       the fast path: ns per lock + unlock pair on one cached mutex, in 5
 *       rounds of COUNT pairs timed as a whole, each followed by a round of
 *       the baseline, a process-shared, robust, error-checking pthread
 *       mutex (the closest local equivalent: a cairn mutex is all three);
 *       the medians of the rounds, and the system calls per pair counted
 *       by the kernel over the syncd rounds (perf_event_open on the
 *       raw_syscalls:sys_enter tracepoint, this process only, its id from
 *       $CAIRN_BENCH_SYS_ENTER_ID or tracefs; null when the kernel does not
 *       let us count)
 *   handoff ENDPOINT --role a|b --shm FILE --count N [--nodes A,B]
 *       contended hand-off between two processes (run one of each role,
 *       each in its own node's namespace, sharing FILE): they take turns
 *       holding one no_cache mutex whose home is A's or B's node (the a
 *       side picks the name). The holder waits until the other has asked
 *       and 1 ms more (its request is queued at the home), notes the time
 *       and unlocks; the other notes the time its lock returns. Hand-off =
 *       the difference (one clock: the namespaces share the host's
 *       CLOCK_MONOTONIC). Role a prints the line after N acquisitions.
 *   raw latency|throughput ZMQ-ENDPOINT ...
 *       the transport's floor for the two modes above: every "lock" and
 *       every "unlock" is one 64-byte REQ/REP round trip to a `zmq-rtt
 *       server` (one single-threaded REP socket, as syncd's loop is one
 *       thread), from a context and socket kept by each client process --
 *       what a call costs when nothing but ZeroMQ runs
 *
 * Exit codes as bench-lock.h: 0, 1 failure (message on stderr), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench-lock.h"
#include "cairn/sync.h"
#include "util/clock.h"

#define CACHED_ROUNDS 5
#define CACHED_WARMUP 1000
#define HANDOFF_MAX 100000
/* How long either side of a hand-off waits for the other before it gives
 * up (a side that died). */
#define HANDOFF_PATIENCE_MS 20000
#define HANDOFF_SETTLE_NS 1000000L

/* ---- the locker (latency, throughput) ----------------------------------- */

static struct {
    bool no_cache;
    long home;            /* keep names homed there; -1 any */
    long not_home;        /* keep names not homed there; -1 none */
} s_opt = { .home = -1, .not_home = -1 };

struct conn {
    cairn_sync_t *s;
    cairn_sync_grant_t last;   /* the last grant */
    char describe[128];
};

static int s_err(char *err, int r, const char *what, const cairn_error_t *e)
{
    snprintf(err, BENCH_ERR_MAX, "%s: %.200s (%s)", what, e->message[0] ? e->message : strerror(-r),
             cairn_code_name(e->code));
    return r;
}

static long s_node_arg(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > 255 ? -1 : v;
}

static int s_parse_opt(int argc, char **argv)
{
    if (!strcmp(argv[0], "--no-cache")) {
        s_opt.no_cache = true;
        return 1;
    }
    long *slot = !strcmp(argv[0], "--home") ? &s_opt.home
               : !strcmp(argv[0], "--not-home") ? &s_opt.not_home : NULL;
    if (!slot)
        return 0;
    if (argc < 2 || (*slot = s_node_arg(argv[1])) < 0)
        return -1;
    return 2;
}

static void *s_open(const char *endpoint, char *err)
{
    cairn_error_t e = { 0 };
    struct conn *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, BENCH_ERR_MAX, "out of memory");
        return NULL;
    }
    k->s = cairn_sync_open(endpoint, &e);
    if (!k->s) {
        s_err(err, -EIO, "cairn_sync_open", &e);
        free(k);
        return NULL;
    }
    return k;
}

static void s_close(void *p)
{
    struct conn *k = p;
    if (k) {
        cairn_sync_close(k->s);
        free(k);
    }
}

static int s_lock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    cairn_error_t e = { 0 };
    int r = cairn_mutex_lock(k->s, name, CAIRN_SYNC_FOREVER, &k->last, &e);
    return r < 0 ? s_err(err, r, "cairn_mutex_lock", &e) : 0;
}

static int s_unlock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    cairn_error_t e = { 0 };
    int r = cairn_mutex_unlock(k->s, name, &e);
    return r < 0 ? s_err(err, r, "cairn_mutex_unlock", &e) : 0;
}

static int s_declare(cairn_sync_t *s, const char *name, bool no_cache, char *err)
{
    cairn_error_t e = { 0 };
    cairn_sync_spec_t spec = { .kind = CAIRN_SYNC_MUTEX, .no_cache = no_cache };
    int r = cairn_sync_declare(s, name, &spec, &e);
    return r < 0 ? s_err(err, r, "cairn_sync_declare", &e) : 0;
}

/* Declares name and, when a home is asked for, locks it once to learn its
 * home: 1 if that home is not wanted. */
static int s_prepare(void *p, const char *name, char *err)
{
    struct conn *k = p;
    int r = s_declare(k->s, name, s_opt.no_cache, err);
    if (r < 0 || (s_opt.home < 0 && s_opt.not_home < 0))
        return r;
    if ((r = s_lock(k, name, err)) < 0 || (r = s_unlock(k, name, err)) < 0)
        return r;
    if (s_opt.home >= 0 && k->last.home != (uint32_t)s_opt.home)
        return 1;
    if (s_opt.not_home >= 0 && k->last.home == (uint32_t)s_opt.not_home)
        return 1;
    return 0;
}

static const char *s_describe(void *p)
{
    static char buf[160];
    struct conn *k = p;
    int n = snprintf(buf, sizeof(buf), "\"no_cache\":%s", s_opt.no_cache ? "true" : "false");
    if (k)
        snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"home\":%" PRIu32 ",\"cached\":%s",
                 k->last.home, k->last.cached ? "true" : "false");
    else if (s_opt.home >= 0)
        snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"home\":%ld", s_opt.home);
    return buf;
}

static const bench_locker_t s_syncd = {
    .name = "syncd",
    .parse_opt = s_parse_opt,
    .open = s_open,
    .prepare = s_prepare,
    .lock = s_lock,
    .unlock = s_unlock,
    .close = s_close,
    .describe = s_describe,
};

/* ---- raw: one ZeroMQ round trip per call -------------------------------- */

#define RAW_SIZE 64
#define RAW_TIMEOUT_MS 5000

struct raw {
    void *ctx, *sock;
};

static void s_raw_close(void *p)
{
    struct raw *k = p;
    if (!k)
        return;
    if (k->sock)
        zmq_close(k->sock);
    if (k->ctx)
        zmq_ctx_term(k->ctx);
    free(k);
}

static void *s_raw_open(const char *endpoint, char *err)
{
    struct raw *k = calloc(1, sizeof(*k));
    int linger = 0, timeout = RAW_TIMEOUT_MS;
    if (!k || !(k->ctx = zmq_ctx_new()) || !(k->sock = zmq_socket(k->ctx, ZMQ_REQ)) ||
        zmq_setsockopt(k->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_setsockopt(k->sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout)) < 0 ||
        zmq_connect(k->sock, endpoint) < 0) {
        snprintf(err, BENCH_ERR_MAX, "%s: %s", endpoint, zmq_strerror(zmq_errno()));
        s_raw_close(k);
        return NULL;
    }
    return k;
}

static int s_raw_call(void *p, const char *name, char *err)
{
    struct raw *k = p;
    char msg[RAW_SIZE] = { 0 }, buf[256];
    snprintf(msg, sizeof(msg), "%s", name);
    if (zmq_send(k->sock, msg, sizeof(msg), 0) < 0) {
        snprintf(err, BENCH_ERR_MAX, "send: %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    int got = zmq_recv(k->sock, buf, sizeof(buf), 0);
    if (got != RAW_SIZE) {
        snprintf(err, BENCH_ERR_MAX, "receive: %s",
                 got < 0 ? zmq_strerror(zmq_errno()) : "a reply of another size");
        return -EIO;
    }
    return 0;
}

static const char *s_raw_describe(void *p)
{
    (void)p;
    return "\"method\":\"one 64-byte REQ/REP round trip per call\"";
}

static const bench_locker_t s_raw = {
    .name = "zmq",
    .open = s_raw_open,
    .lock = s_raw_call,
    .unlock = s_raw_call,
    .close = s_raw_close,
    .describe = s_raw_describe,
};

/* ---- cached: the fast path against a pthread mutex ----------------------- */

/* A counter of this process's system calls, or -1 when the kernel will not
 * give one (no tracefs, not allowed). */
static int s_syscall_counter(void)
{
    char buf[32] = "";
    const char *id = getenv("CAIRN_BENCH_SYS_ENTER_ID");
    if (id && *id) {
        snprintf(buf, sizeof(buf), "%s", id);
        goto have_id;
    }
    int fd = open("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fd = open("/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
have_id:;
    struct perf_event_attr a = {
        .type = PERF_TYPE_TRACEPOINT,
        .size = sizeof(a),
        .config = strtoull(buf, NULL, 10),
        .sample_period = 0,
    };
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static int64_t s_count(int fd)
{
    uint64_t v;
    return fd >= 0 && read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? (int64_t)v : -1;
}

static int s_cached(const char *endpoint, long count)
{
    char err[BENCH_ERR_MAX], name[96];
    struct conn *k = s_open(endpoint, err);
    if (!k) {
        fprintf(stderr, "syncd: %s\n", err);
        return 1;
    }
    snprintf(name, sizeof(name), "bench-syncd-%d-cached", (int)getpid());
    int r = s_declare(k->s, name, false, err);
    for (int i = 0; r == 0 && i < CACHED_WARMUP; i++)
        if ((r = s_lock(k, name, err)) == 0)
            r = s_unlock(k, name, err);
    if (r < 0) {
        fprintf(stderr, "syncd: %s: %s\n", name, err);
        s_close(k);
        return 1;
    }
    bool cached = k->last.cached;
    uint32_t home = k->last.home;

    pthread_mutex_t *m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    if (m == MAP_FAILED || pthread_mutex_init(m, &ma) != 0) {
        fprintf(stderr, "syncd: the pthread baseline could not be set up\n");
        s_close(k);
        return 1;
    }
    for (int i = 0; i < CACHED_WARMUP; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }

    int cfd = s_syscall_counter();
    int64_t calls = 0, idle0 = s_count(cfd), idle1 = s_count(cfd);
    uint64_t ours[CACHED_ROUNDS], base[CACHED_ROUNDS];
    bool counted = cfd >= 0 && idle0 >= 0 && idle1 >= 0;
    for (int round = 0; round < CACHED_ROUNDS; round++) {
        int64_t c0 = s_count(cfd);
        uint64_t t0 = cairn_now_ns();
        for (long i = 0; r == 0 && i < count; i++)
            if ((r = s_lock(k, name, err)) == 0)
                r = s_unlock(k, name, err);
        uint64_t t1 = cairn_now_ns();
        int64_t c1 = s_count(cfd);
        if (r < 0)
            break;
        ours[round] = t1 - t0;
        /* What two reads of the counter cost is taken off. */
        if (c0 >= 0 && c1 >= 0)
            calls += (c1 - c0) - (idle1 - idle0);
        else
            counted = false;
        t0 = cairn_now_ns();
        for (long i = 0; i < count; i++) {
            pthread_mutex_lock(m);
            pthread_mutex_unlock(m);
        }
        base[round] = cairn_now_ns() - t0;
    }
    bool still_cached = k->last.cached;
    if (cfd >= 0)
        close(cfd);
    pthread_mutex_destroy(m);
    munmap(m, sizeof(*m));
    s_close(k);
    if (r < 0) {
        fprintf(stderr, "syncd: %s: %s\n", name, err);
        return 1;
    }
    qsort(ours, CACHED_ROUNDS, sizeof(ours[0]), bench_cmp_u64);
    qsort(base, CACHED_ROUNDS, sizeof(base[0]), bench_cmp_u64);
    double ns = (double)ours[CACHED_ROUNDS / 2] / (double)count;
    double bns = (double)base[CACHED_ROUNDS / 2] / (double)count;
    char sc[32] = "null";
    if (counted)
        snprintf(sc, sizeof(sc), "%.6f", (double)calls / ((double)count * CACHED_ROUNDS));
    printf("{\"bench\":\"syncd\",\"mode\":\"cached\",\"lock\":\"%s\",\"home\":%" PRIu32
           ",\"cached\":%s,\"pairs_per_round\":%ld,\"rounds\":%d,\"ns_per_pair\":%.1f,"
           "\"ns_per_pair_min\":%.1f,\"syscalls_per_pair\":%s,"
           "\"baseline_pthread_robust_ns_per_pair\":%.1f,\"ratio_to_pthread\":%.2f}\n",
           name, home, cached && still_cached ? "true" : "false", count, CACHED_ROUNDS, ns,
           (double)ours[0] / (double)count, sc, bns, bns > 0 ? ns / bns : 0);
    return 0;
}

/* ---- handoff: release on one node -> the waiter on another runs ---------- */

struct handoff_shm {
    atomic_int started;         /* a holds the lock, name is set */
    atomic_int waiting[2];      /* side i has asked (or is about to) */
    atomic_int done;            /* the last acquisition happened */
    atomic_int finished[2];     /* side i has left */
    atomic_long count;          /* acquisitions so far */
    atomic_uint_least64_t t_rel;/* when the holder called unlock */
    atomic_int failed;          /* a side failed: the other stops too */
    uint32_t home;
    char name[128];
    uint64_t sample[HANDOFF_MAX + 1]; /* [n]: hand-off into acquisition n, ns */
};

/* Waits until *flag is non-zero (or the other side failed); 0 or -ETIMEDOUT. */
static int s_await(struct handoff_shm *h, atomic_int *flag)
{
    uint64_t deadline = cairn_now_ms() + HANDOFF_PATIENCE_MS;
    while (!atomic_load(flag)) {
        if (atomic_load(&h->failed) || cairn_now_ms() > deadline)
            return -ETIMEDOUT;
        sched_yield();
    }
    return 0;
}

/* Role a's choice of lock: a no_cache mutex homed at one of nodes[]. */
static int s_pick(struct conn *k, const long nodes[2], struct handoff_shm *h, char *err)
{
    for (int i = 0; i < 64; i++) {
        snprintf(h->name, sizeof(h->name), "bench-syncd-%d-handoff-%d", (int)getpid(), i);
        int r = s_declare(k->s, h->name, true, err);
        if (r == 0)
            r = s_lock(k, h->name, err);
        if (r < 0)
            return r;
        if (nodes[0] < 0 || k->last.home == (uint32_t)nodes[0] ||
            k->last.home == (uint32_t)nodes[1]) {
            h->home = k->last.home;
            return 0;      /* held */
        }
        if ((r = s_unlock(k, h->name, err)) < 0)
            return r;
    }
    snprintf(err, BENCH_ERR_MAX, "no name homed at node %ld or %ld in 64 tries", nodes[0],
             nodes[1]);
    return -ENOENT;
}

static int s_handoff_loop(struct conn *k, struct handoff_shm *h, int me, long n, char *err)
{
    int other = 1 - me, r;
    for (;;) {
        uint64_t t = cairn_now_ns();
        long c = atomic_fetch_add(&h->count, 1) + 1;
        if (c > 1 && c <= HANDOFF_MAX)
            h->sample[c] = t - atomic_load(&h->t_rel);
        atomic_store(&h->waiting[me], 0);
        if (c >= n || atomic_load(&h->done)) {
            atomic_store(&h->done, 1);
            return s_unlock(k, h->name, err);
        }
        if (s_await(h, &h->waiting[other]) < 0) {
            snprintf(err, BENCH_ERR_MAX, "the other side never asked");
            return -ETIMEDOUT;
        }
        nanosleep(&(struct timespec){ .tv_nsec = HANDOFF_SETTLE_NS }, NULL);
        atomic_store(&h->t_rel, cairn_now_ns());
        if ((r = s_unlock(k, h->name, err)) < 0)
            return r;
        atomic_store(&h->waiting[me], 1);
        if ((r = s_lock(k, h->name, err)) < 0)
            return r;
    }
}

static int s_handoff(int argc, char **argv)
{
    const char *endpoint = argv[2], *shm = NULL;
    long n = 0, nodes[2] = { -1, -1 };
    int me = -1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--role") && (!strcmp(argv[i + 1], "a") || !strcmp(argv[i + 1], "b")))
            me = argv[i + 1][0] - 'a';
        else if (!strcmp(argv[i], "--shm"))
            shm = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            n = strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--nodes") &&
                 sscanf(argv[i + 1], "%ld,%ld", &nodes[0], &nodes[1]) == 2)
            ;
        else
            return fprintf(stderr, "handoff: bad option '%s'\n", argv[i]), 2;
    }
    if (me < 0 || !shm || n < 3 || n > HANDOFF_MAX || (argc - 3) % 2)
        return fprintf(stderr, "usage: handoff ENDPOINT --role a|b --shm FILE --count 3..%d "
                               "[--nodes A,B]\n", HANDOFF_MAX), 2;
    int fd = open(shm, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(struct handoff_shm)) < 0) {
        fprintf(stderr, "handoff: %s: %s\n", shm, strerror(errno));
        return 1;
    }
    struct handoff_shm *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (h == MAP_FAILED) {
        fprintf(stderr, "handoff: mmap %s: %s\n", shm, strerror(errno));
        return 1;
    }
    char err[BENCH_ERR_MAX] = "";
    struct conn *k = s_open(endpoint, err);
    int r = k ? 0 : -EIO;
    if (r == 0 && me == 0) {
        r = s_pick(k, nodes, h, err);
        if (r == 0)
            atomic_store(&h->started, 1);
    } else if (r == 0) {
        if ((r = s_await(h, &h->started)) < 0)
            snprintf(err, BENCH_ERR_MAX, "side a never started");
        if (r == 0) {
            atomic_store(&h->waiting[me], 1);
            r = s_lock(k, h->name, err);
        }
    }
    if (r == 0)
        r = s_handoff_loop(k, h, me, n, err);
    s_close(k);
    if (r < 0) {
        atomic_store(&h->failed, 1);
        fprintf(stderr, "handoff %c: %s\n", 'a' + me, err);
        return 1;
    }
    atomic_store(&h->finished[me], 1);
    if (me == 1)
        return 0;
    if (s_await(h, &h->finished[1]) < 0) {
        fprintf(stderr, "handoff a: side b did not finish\n");
        return 1;
    }
    size_t m = 0;
    uint64_t *v = calloc((size_t)n, sizeof(*v));
    for (long c = 2; v && c <= n; c++)
        v[m++] = h->sample[c];
    if (!v || !m)
        return 1;
    printf("{\"bench\":\"syncd\",\"mode\":\"handoff\",\"lock\":\"%s\",\"home\":%" PRIu32
           ",\"no_cache\":true,\"handoffs\":%zu,%s}\n", h->name, h->home, m,
           bench_stats_json(v, m));
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "cached")) {
        long count = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
        if (count < 1 || count > 100000000L)
            return fprintf(stderr, "usage: cached ENDPOINT COUNT (1..100000000)\n"), 2;
        return s_cached(argv[2], count);
    }
    if (argc >= 3 && !strcmp(argv[1], "handoff"))
        return s_handoff(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "raw"))
        return bench_lock_main(&s_raw, argc - 1, argv + 1);
    return bench_lock_main(&s_syncd, argc, argv);
}
