/* sync-tool - drives libcairn's cluster-wide locks (cairn/sync.h) from the
 * integration tests and the benchmarks: one operation per run, one JSON
 * line on stdout at the end, one JSON error line on stderr on failure.
 *
 *   sync-tool [--endpoint ipc://PATH] [--node N] OP ARGS
 *     lock NAME [--timeout MS] [--count N] [--hold MS] [--file F] [--log F]
 *               [--no-cache] [--consistent]
 *     rw NAME read|write [the options of lock]
 *     hold NAME [--kind mutex|read|write|sem] [--value V]
 *     sem NAME --value V [--count N] [--hold MS] [--track F] [--timeout MS]
 *     barrier NAME --parties P [--generations G] [--timeout MS]
 *     cond NAME --mutex M --role ping|pong --rounds R --file F [--timeout MS]
 *     declare NAME --kind K [--value V] [--shared] [--no-cache]
 *     unlock NAME | destroy NAME
 *
 * The endpoint defaults to $CAIRN_SYNCD_ENDPOINT (cairn_sync_open's rule);
 * --node (default: $CAIRN_NODE_ID, else the name of the endpoint's
 * directory, a local cluster node's run dir) is only what --log writes.
 *
 * lock: N times, lock; with --file read an integer from F (absent: 0),
 * sleep --hold ms, write it + 1 -- an unprotected read-modify-write that
 * only mutual exclusion keeps exact; without --file just sleep; unlock.
 * --log F appends per grant "<token> <start_ns> <end_ns> <node> <pid>
 * <owner_died>" (CLOCK_REALTIME of the grant and of just before the
 * unlock), one write(2) on an O_APPEND file, so lines of many processes
 * never mix. --consistent: a grant with EOWNERDEAD is made consistent
 * (without it, the unlock leaves the mutex not recoverable).
 *
 * cond: a ping-pong. F holds a turn counter; ping plays on even turns,
 * pong on odd ones. Each round: lock M, wait on NAME while it is not our
 * turn, count the turn up, broadcast, unlock. Both end with the counter at
 * 2R exactly when no signal was lost and mutual exclusion held.
 *
 * Exit: 0 done; 1 an operation failed ({"error":{"code","errno","message"}}
 * on stderr); 100 wrong usage; 111 a system call of the tool failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn/sync.h"
#include "util/options.h"

static const cairn_option_t s_options[] = {
    { "--endpoint", "ipc://PATH", "syncd of this node (default $CAIRN_SYNCD_ENDPOINT)" },
    { "--node", "N", "node id --log writes (default: from the endpoint)" },
    { "--timeout", "MS", "per acquire or wait; default forever" },
    { "--count", "N", "acquisitions (default 1)" },
    { "--hold", "MS", "time held each time (default 0)" },
    { "--file", "F", "lock: counter file; cond: turn file" },
    { "--log", "F", "lock: append one line per grant" },
    { "--no-cache", NULL, "declare the mutex never cached" },
    { "--consistent", NULL, "make an owner-died mutex consistent" },
    { "--kind", "K", "mutex|read|write|sem (hold); mutex|rwlock|sem|barrier|cond (declare)" },
    { "--value", "V", "semaphore value or barrier parties (declare)" },
    { "--shared", NULL, "declare: any user may use it" },
    { "--track", "F", "sem: append +1/-1 lines around each hold" },
    { "--parties", "P", "barrier parties" },
    { "--generations", "G", "barrier waits (default 1)" },
    { "--mutex", "M", "cond: the mutex" },
    { "--role", "R", "cond: ping or pong" },
    { "--rounds", "R", "cond: rounds (default 1)" },
    { "--help", NULL, "this text" },
    { NULL, NULL, NULL },
};

enum {
    O_ENDPOINT, O_NODE, O_TIMEOUT, O_COUNT, O_HOLD, O_FILE, O_LOG, O_NO_CACHE,
    O_CONSISTENT, O_KIND, O_VALUE, O_SHARED, O_TRACK, O_PARTIES, O_GENERATIONS,
    O_MUTEX, O_ROLE, O_ROUNDS, O_HELP,
};

#define EXIT_FAIL 1
#define EXIT_USAGE 100
#define EXIT_SYSTEM 111

typedef struct tool {
    cairn_args_t a;
    cairn_sync_t *s;
    const char *name;
    long node;
    int64_t timeout_ms;
    long count, hold_ms;
} tool_t;

/* ---- output ------------------------------------------------------------ */

static void s_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int s_fail_err(int r, const cairn_error_t *e)
{
    fputs("{\"error\":{\"code\":", stderr);
    s_json_string(stderr, cairn_code_name(e->code));
    fprintf(stderr, ",\"errno\":%d,\"message\":", -r);
    s_json_string(stderr, e->message[0] ? e->message : strerror(-r));
    fputs("}}\n", stderr);
    return EXIT_FAIL;
}

static int s_fail(int exit_code, int code, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int s_fail(int exit_code, int code, int r, const char *fmt, ...)
{
    cairn_error_t e = { .code = code };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    s_fail_err(r, &e);
    return exit_code;
}

static uint64_t s_real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void s_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One line to an O_APPEND file in one write. */
static int s_append(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, line, strlen(line));
    close(fd);
    return n == (ssize_t)strlen(line) ? 0 : -EIO;
}

/* The integer in path (absent or empty: 0). */
static int s_read_counter(const char *path, long *ret)
{
    char buf[64] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0 && errno == ENOENT) {
        *ret = 0;
        return 0;
    }
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return -EIO;
    buf[n] = '\0';
    *ret = strtol(buf, NULL, 10);
    return 0;
}

static int s_write_counter(const char *path, long v)
{
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int n = snprintf(buf, sizeof buf, "%ld\n", v);
    ssize_t w;

    if (fd < 0)
        return -errno;
    w = write(fd, buf, (size_t)n);
    close(fd);
    return w == n ? 0 : -EIO;
}

/* ---- options ----------------------------------------------------------- */

static int s_long_opt(tool_t *t, int i, long min, long max, long def, long *ret)
{
    cairn_error_t e = { 0 };

    if (!t->a.values[i]) {
        *ret = def;
        return 0;
    }
    if (cairn_parse_long(s_options[i].name, t->a.values[i], min, max, ret, &e) < 0)
        return s_fail_err(-EINVAL, &e), -1;
    return 0;
}

/* --node, else $CAIRN_NODE_ID, else the endpoint's directory name. */
static long s_node_id(const tool_t *t)
{
    const char *ep = t->a.values[O_ENDPOINT];
    const char *env = getenv("CAIRN_NODE_ID");
    char buf[512], *slash;

    if (t->a.values[O_NODE])
        return strtol(t->a.values[O_NODE], NULL, 10);
    if (env && *env)
        return strtol(env, NULL, 10);
    if (!ep)
        ep = getenv("CAIRN_SYNCD_ENDPOINT");
    if (!ep)
        return 0;
    snprintf(buf, sizeof buf, "%s", ep);
    slash = strrchr(buf, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    slash = strrchr(buf, '/');
    return slash ? strtol(slash + 1, NULL, 10) : 0;
}

/* ---- operations -------------------------------------------------------- */

typedef int (*acquire_fn)(cairn_sync_t *s, const char *name, int64_t timeout_ms,
                          cairn_sync_grant_t *g, cairn_error_t *err);
typedef int (*release_fn)(cairn_sync_t *s, const char *name, cairn_error_t *err);

static int s_declare_no_cache(tool_t *t, cairn_sync_kind_t kind)
{
    cairn_sync_spec_t spec = { .kind = kind, .no_cache = true };
    cairn_error_t e = { 0 };
    int r;

    if (!t->a.values[O_NO_CACHE])
        return 0;
    r = cairn_sync_declare(t->s, t->name, &spec, &e);
    return r < 0 ? s_fail_err(r, &e) : 0;
}

/* The body of one grant of lock / rw: the counter or the sleep. */
static int s_critical(tool_t *t)
{
    const char *file = t->a.values[O_FILE];
    long v = 0;
    int r;

    if (!file) {
        s_sleep_ms(t->hold_ms);
        return 0;
    }
    if ((r = s_read_counter(file, &v)) < 0)
        return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "read %s: %s", file,
                      strerror(-r));
    s_sleep_ms(t->hold_ms);
    if ((r = s_write_counter(file, v + 1)) < 0)
        return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "write %s: %s", file,
                      strerror(-r));
    return 0;
}

static int s_log_grant(tool_t *t, const cairn_sync_grant_t *g, uint64_t start,
                       uint64_t end)
{
    const char *log = t->a.values[O_LOG];
    char line[160];
    int r;

    if (!log)
        return 0;
    snprintf(line, sizeof line, "%llu %llu %llu %ld %d %d\n",
             (unsigned long long)g->token, (unsigned long long)start,
             (unsigned long long)end, t->node, (int)getpid(),
             g->owner_died ? 1 : 0);
    if ((r = s_append(log, line)) < 0)
        return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "append to %s: %s", log,
                      strerror(-r));
    return 0;
}

static int s_lock_loop(tool_t *t, const char *op, acquire_fn acq,
                       release_fn rel, bool is_mutex)
{
    uint64_t first = 0, last = 0;
    long died = 0, cached = 0;
    cairn_error_t e = { 0 };
    int r;

    if ((r = s_declare_no_cache(t, is_mutex ? CAIRN_SYNC_MUTEX
                                            : CAIRN_SYNC_RWLOCK)) != 0)
        return r;
    for (long i = 0; i < t->count; i++) {
        cairn_sync_grant_t g = { 0 };
        uint64_t start;

        r = acq(t->s, t->name, t->timeout_ms, &g, &e);
        if (r < 0 && r != -EOWNERDEAD)
            return s_fail_err(r, &e);
        start = s_real_ns();
        if (r == -EOWNERDEAD) {
            died++;
            if (t->a.values[O_CONSISTENT] &&
                (r = cairn_mutex_consistent(t->s, t->name, &e)) < 0)
                return s_fail_err(r, &e);
        }
        cached += g.cached;
        if (i == 0)
            first = g.token;
        last = g.token;
        if ((r = s_critical(t)) != 0 ||
            (r = s_log_grant(t, &g, start, s_real_ns())) != 0)
            return r;
        r = rel(t->s, t->name, &e);
        if (r < 0)
            return s_fail_err(r, &e);
    }
    printf("{\"op\":\"%s\",\"count\":%ld,\"owner_died\":%ld,\"cached\":%ld,"
           "\"first_token\":%llu,\"last_token\":%llu}\n",
           op, t->count, died, cached, (unsigned long long)first,
           (unsigned long long)last);
    return 0;
}

static int s_op_lock(tool_t *t)
{
    return s_lock_loop(t, "lock", cairn_mutex_lock, cairn_mutex_unlock, true);
}

static int s_op_rw(tool_t *t)
{
    const char *mode = t->a.n_pos > 2 ? t->a.pos[2] : "";

    if (strcmp(mode, "read") == 0)
        return s_lock_loop(t, "rw", cairn_rwlock_rdlock, cairn_rwlock_unlock,
                           false);
    if (strcmp(mode, "write") == 0)
        return s_lock_loop(t, "rw", cairn_rwlock_wrlock, cairn_rwlock_unlock,
                           false);
    return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                  "rw NAME read|write: not '%s'", mode);
}

static int s_op_hold(tool_t *t)
{
    const char *kind = t->a.values[O_KIND] ? t->a.values[O_KIND] : "mutex";
    cairn_sync_grant_t g = { 0 };
    cairn_error_t e = { 0 };
    acquire_fn acq;
    int r;

    if (strcmp(kind, "mutex") == 0)
        acq = cairn_mutex_lock;
    else if (strcmp(kind, "read") == 0)
        acq = cairn_rwlock_rdlock;
    else if (strcmp(kind, "write") == 0)
        acq = cairn_rwlock_wrlock;
    else if (strcmp(kind, "sem") == 0)
        acq = cairn_sem_wait;
    else
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                      "--kind: mutex, read, write or sem, not '%s'", kind);
    r = acq(t->s, t->name, t->timeout_ms, &g, &e);
    if (r < 0 && r != -EOWNERDEAD)
        return s_fail_err(r, &e);
    printf("{\"held\":true,\"token\":%llu,\"owner_died\":%s,\"cached\":%s,"
           "\"home\":%u,\"pid\":%d}\n",
           (unsigned long long)g.token, g.owner_died ? "true" : "false",
           g.cached ? "true" : "false", g.home, (int)getpid());
    fflush(stdout);
    for (;;)
        pause();
}

static int s_op_sem(tool_t *t)
{
    const char *track = t->a.values[O_TRACK];
    cairn_sync_spec_t spec = { .kind = CAIRN_SYNC_SEMAPHORE };
    uint64_t first = 0, last = 0;
    cairn_error_t e = { 0 };
    long value;
    char line[96];
    int r;

    if (!t->a.values[O_VALUE])
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL, "sem needs --value V");
    if (s_long_opt(t, O_VALUE, 0, UINT32_MAX, 1, &value) < 0)
        return EXIT_USAGE;
    spec.value = (uint32_t)value;
    if ((r = cairn_sync_declare(t->s, t->name, &spec, &e)) < 0)
        return s_fail_err(r, &e);
    for (long i = 0; i < t->count; i++) {
        cairn_sync_grant_t g = { 0 };

        if ((r = cairn_sem_wait(t->s, t->name, t->timeout_ms, &g, &e)) < 0)
            return s_fail_err(r, &e);
        if (i == 0)
            first = g.token;
        last = g.token;
        snprintf(line, sizeof line, "+1 %d %llu\n", (int)getpid(),
                 (unsigned long long)s_real_ns());
        if (track && (r = s_append(track, line)) < 0)
            return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "append to %s: %s",
                          track, strerror(-r));
        s_sleep_ms(t->hold_ms);
        snprintf(line, sizeof line, "-1 %d %llu\n", (int)getpid(),
                 (unsigned long long)s_real_ns());
        if (track && (r = s_append(track, line)) < 0)
            return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "append to %s: %s",
                          track, strerror(-r));
        if ((r = cairn_sem_post(t->s, t->name, &e)) < 0)
            return s_fail_err(r, &e);
    }
    printf("{\"op\":\"sem\",\"count\":%ld,\"first_token\":%llu,"
           "\"last_token\":%llu}\n",
           t->count, (unsigned long long)first, (unsigned long long)last);
    return 0;
}

static int s_op_barrier(tool_t *t)
{
    long parties, gens, serial = 0;
    uint64_t gen = 0;
    cairn_error_t e = { 0 };

    if (!t->a.values[O_PARTIES])
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                      "barrier needs --parties P");
    if (s_long_opt(t, O_PARTIES, 1, UINT32_MAX, 1, &parties) < 0 ||
        s_long_opt(t, O_GENERATIONS, 1, 100000000, 1, &gens) < 0)
        return EXIT_USAGE;
    for (long i = 0; i < gens; i++) {
        int r = cairn_barrier_wait(t->s, t->name, (uint32_t)parties,
                                   t->timeout_ms, &gen, &e);

        if (r < 0)
            return s_fail_err(r, &e);
        serial += r;
    }
    printf("{\"op\":\"barrier\",\"generations\":%ld,\"serial\":%ld,"
           "\"last_generation\":%llu}\n",
           gens, serial, (unsigned long long)gen);
    return 0;
}

/* One round of the ping-pong: our turn taken under the mutex. */
static int s_cond_round(tool_t *t, const char *mutex, const char *file,
                        long parity, long *waits, long *turn)
{
    cairn_error_t e = { 0 };
    long v = 0;
    int r;

    r = cairn_mutex_lock(t->s, mutex, t->timeout_ms, NULL, &e);
    if (r < 0 && r != -EOWNERDEAD)
        return s_fail_err(r, &e);
    for (;;) {
        if ((r = s_read_counter(file, &v)) < 0)
            return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "read %s: %s", file,
                          strerror(-r));
        if (v % 2 == parity)
            break;
        (*waits)++;
        r = cairn_cond_wait(t->s, t->name, mutex, t->timeout_ms, NULL, &e);
        if (r < 0 && r != -EOWNERDEAD)
            return s_fail_err(r, &e);
    }
    if ((r = s_write_counter(file, v + 1)) < 0)
        return s_fail(EXIT_SYSTEM, CAIRN_SYSTEM, r, "write %s: %s", file,
                      strerror(-r));
    *turn = v + 1;
    if ((r = cairn_cond_broadcast(t->s, t->name, &e)) < 0 ||
        (r = cairn_mutex_unlock(t->s, mutex, &e)) < 0)
        return s_fail_err(r, &e);
    return 0;
}

static int s_op_cond(tool_t *t)
{
    const char *mutex = t->a.values[O_MUTEX], *role = t->a.values[O_ROLE];
    const char *file = t->a.values[O_FILE];
    long rounds, parity, waits = 0, turn = 0;
    int r;

    if (!mutex || !role || !file)
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                      "cond needs --mutex M --role ping|pong --file F");
    if (strcmp(role, "ping") == 0)
        parity = 0;
    else if (strcmp(role, "pong") == 0)
        parity = 1;
    else
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                      "--role: ping or pong, not '%s'", role);
    if (s_long_opt(t, O_ROUNDS, 1, 100000000, 1, &rounds) < 0)
        return EXIT_USAGE;
    for (long i = 0; i < rounds; i++)
        if ((r = s_cond_round(t, mutex, file, parity, &waits, &turn)) != 0)
            return r;
    printf("{\"op\":\"cond\",\"role\":\"%s\",\"rounds\":%ld,\"waits\":%ld,"
           "\"last_turn\":%ld}\n",
           role, rounds, waits, turn);
    return 0;
}

static int s_op_declare(tool_t *t)
{
    static const struct { const char *name; cairn_sync_kind_t kind; } kinds[] = {
        { "mutex", CAIRN_SYNC_MUTEX }, { "rwlock", CAIRN_SYNC_RWLOCK },
        { "sem", CAIRN_SYNC_SEMAPHORE }, { "semaphore", CAIRN_SYNC_SEMAPHORE },
        { "barrier", CAIRN_SYNC_BARRIER }, { "cond", CAIRN_SYNC_CONDVAR },
        { "condvar", CAIRN_SYNC_CONDVAR },
    };
    const char *kind = t->a.values[O_KIND];
    cairn_sync_spec_t spec = { 0 };
    cairn_error_t e = { 0 };
    long value;
    int r;

    for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i].name) == 0)
            spec.kind = kinds[i].kind;
    if (!spec.kind)
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL,
                      "declare needs --kind mutex|rwlock|sem|barrier|cond%s%s",
                      kind ? ", not " : "", kind ? kind : "");
    if (s_long_opt(t, O_VALUE, 0, UINT32_MAX, 0, &value) < 0)
        return EXIT_USAGE;
    spec.value = (uint32_t)value;
    spec.shared = t->a.values[O_SHARED] != NULL;
    spec.no_cache = t->a.values[O_NO_CACHE] != NULL;
    if ((r = cairn_sync_declare(t->s, t->name, &spec, &e)) < 0)
        return s_fail_err(r, &e);
    fputs("{\"op\":\"declare\",\"name\":", stdout);
    s_json_string(stdout, t->name);
    printf(",\"kind\":\"%s\"}\n", kind);
    return 0;
}

static int s_op_simple(tool_t *t, const char *op, release_fn fn)
{
    cairn_error_t e = { 0 };
    int r = fn(t->s, t->name, &e);

    if (r < 0)
        return s_fail_err(r, &e);
    printf("{\"op\":\"%s\"}\n", op);
    return 0;
}

static int s_run(tool_t *t)
{
    const char *op = t->a.pos[0];

    if (strcmp(op, "lock") == 0)
        return s_op_lock(t);
    if (strcmp(op, "rw") == 0)
        return s_op_rw(t);
    if (strcmp(op, "hold") == 0)
        return s_op_hold(t);
    if (strcmp(op, "sem") == 0)
        return s_op_sem(t);
    if (strcmp(op, "barrier") == 0)
        return s_op_barrier(t);
    if (strcmp(op, "cond") == 0)
        return s_op_cond(t);
    if (strcmp(op, "declare") == 0)
        return s_op_declare(t);
    if (strcmp(op, "unlock") == 0)
        return s_op_simple(t, "unlock", cairn_mutex_unlock);
    if (strcmp(op, "destroy") == 0)
        return s_op_simple(t, "destroy", cairn_sync_destroy);
    return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL, "unknown operation '%s'", op);
}

int main(int argc, char **argv)
{
    static const char *synopsis =
        "[--endpoint ipc://PATH] lock|rw|hold|sem|barrier|cond|declare|"
        "unlock|destroy NAME [read|write] [OPTIONS]";
    tool_t t = { 0 };
    cairn_error_t e = { 0 };
    long timeout;
    int r;

    if (cairn_args_parse("sync-tool", s_options, argc - 1, argv + 1, 3, &t.a,
                         &e) < 0)
        return s_fail_err(-EINVAL, &e), EXIT_USAGE;
    if (t.a.values[O_HELP]) {
        cairn_options_usage(stdout, "sync-tool", synopsis, s_options);
        return 0;
    }
    if (t.a.n_pos < 2)
        return s_fail(EXIT_USAGE, CAIRN_USAGE, -EINVAL, "usage: sync-tool %s",
                      synopsis);
    t.name = t.a.pos[1];
    if (s_long_opt(&t, O_TIMEOUT, -1, INT64_MAX / 2, -1, &timeout) < 0 ||
        s_long_opt(&t, O_COUNT, 0, 1000000000, 1, &t.count) < 0 ||
        s_long_opt(&t, O_HOLD, 0, 86400000, 0, &t.hold_ms) < 0)
        return EXIT_USAGE;
    t.timeout_ms = timeout;
    t.node = s_node_id(&t);
    t.s = cairn_sync_open(t.a.values[O_ENDPOINT], &e);
    if (!t.s)
        return s_fail_err(-EINVAL, &e);
    r = s_run(&t);
    fflush(stdout);
    cairn_sync_close(t.s);
    return r;
}
