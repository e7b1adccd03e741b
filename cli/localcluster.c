/* localcluster.c - a whole Cairn cluster on one machine (localcluster.h).
 *
 * Design. The state file IS the plan: up() first builds the complete JSON
 * object it will report (mode, cgroup version, subnet, every node with its
 * netns, cgroup paths, rundir, services and binaries) and writes it to
 * <run-base>/<name>/state.json (temp + rename) before creating anything;
 * pids are added right after the fork and phase moves creating -> starting
 * -> running. status() is that file with "running" refreshed from /proc.
 *
 * Everything up() creates has a name derived from the cluster name
 * (cairn-<name>-<k>, cv-<name>-<k>, cb-<name>, .../cairn/<name>/<k>,
 * <run-base>/<name>), so down() needs no state to find it: it kills every
 * process whose netns, cgroup or `--config` argument belongs to the cluster
 * (plus the pids of the state file, checked against their start time), then
 * deletes links and namespaces in one `ip -batch`, removes the cgroups
 * leaves first and finally the cluster directory (after unmounting what is
 * mounted inside it: ghostd's image spool). An interrupted up() or a
 * kill -9 of the CLI is therefore undone by the same code path.
 *
 * Speed: the host side (namespaces, bridge, veth pairs created with their
 * peer already inside the namespace) is one `ip -batch -`; the inside of the
 * namespaces is one `ip -n <ns> -batch -` per node, all run in parallel; all
 * daemons are forked before any is waited for, and one loop polls every
 * socket and every child together against a single deadline.
 *
 * Concurrency: up and down hold an flock (a host-wide one as root, because
 * subnets and namespace names are host-wide) so two invocations never pick
 * the same subnet or sweep each other's half-built cluster.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cairn/description.h"
#include "cli.h"
#include "localcluster.h"

#define S_NETNS_DIR "/run/netns"
#define S_CG_ROOT "/sys/fs/cgroup"
#define S_CPU_PERIOD_US 100000
#define S_MIN_MEM (16ull << 20)
#define S_TERM_GRACE_MS 2000
#define S_KILL_GRACE_MS 2000
#define S_CHECK_MS 1000
#define S_SUN_PATH_MAX 108
#define S_HOST_LOCK "/run/lock/cairn-cluster.lock"
#define S_BASE_MAX 257   /* a description's run-base is at most 256 bytes */

typedef enum { S_CG_NONE = 0, S_CG_V1 = 1, S_CG_V2 = 2 } s_cg_t;

/* A growable set of pids (no duplicates). */
typedef struct s_pids {
    pid_t *v;      /* the pids */
    size_t n;      /* used */
    size_t cap;    /* allocated */
} s_pids_t;

/* A running `ip` child: its pid, the read end of its stderr, its batch. */
typedef struct s_ip_job {
    pid_t pid;          /* 0 if not started */
    int err_fd;         /* read end of stderr+stdout, -1 if none */
    const char *where;  /* "host" or the namespace name, for messages */
    const char *batch;  /* the commands it runs (borrowed) */
} s_ip_job_t;

/* ---- small helpers ------------------------------------------------------ */

static void s_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool s_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 8 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int s_mkdir_p(const char *path, cairn_error_t *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int) sizeof(buf))
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %m", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %m", buf);
    return 0;
}

/* Writes `value` to an existing (cgroup or proc) file in one write(). */
static int s_write_file(const char *path, const char *value, cairn_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "open %s: %m", path);
    ssize_t w = write(fd, value, strlen(value));
    int e = w < 0 ? errno : 0;
    close(fd);
    if (w < 0)
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "write '%s' to %s: %s", value,
                               path, strerror(e));
    return 0;
}

/* Reads up to size-1 bytes of a small file; returns the length or -errno. */
static ssize_t s_read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t) r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t) n;
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

/* A mount point field of /proc/self/mountinfo with its octal escapes
 * (\040 for a space...) undone, in place. */
static void s_unescape_mount(char *p)
{
    char *o = p;
    for (; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* Detaches every mount at or under path (ghostd mounts its image spool in
 * a node's run dir, spool.h), the last mounted first: 0, or -errno of the
 * first that could not be. */
static int s_umount_under(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char **found = NULL, *line = NULL, mnt[PATH_MAX];
    size_t n = 0, cap = 0, len = strlen(path);
    int r = 0;
    while (r == 0 && getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mount-point ... */
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            continue;
        s_unescape_mount(mnt);
        if (strncmp(mnt, path, len) != 0 || (mnt[len] != '\0' && mnt[len] != '/'))
            continue;
        char **g = realloc(found, (n + 1) * sizeof(*g));
        if (!g || !(g[n] = strdup(mnt)))
            r = -ENOMEM;
        found = g ? g : found;
        n += r == 0;
    }
    free(line);
    fclose(f);
    for (size_t i = n; i-- > 0;) {   /* mountinfo lists parents first */
        if (r == 0 && umount2(found[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
            r = -errno;
        free(found[i]);
    }
    free(found);
    return r;
}

/* rm -rf path, mounts inside it first detached; 0 if it is gone (or never
 * was), else -errno. */
static int s_rm_rf(const char *path)
{
    if (!s_exists(path))
        return 0;
    int r = s_umount_under(path);
    if (r < 0)
        return errno = -r, r;
    if (nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
        return -errno;
    return 0;
}

/* Takes the up/down lock; returns the fd to close, or -errno. */
static int s_lock(const char *run_base, cairn_error_t *err)
{
    char path[PATH_MAX];
    if (geteuid() == 0) {
        int r = s_mkdir_p("/run/lock", err);
        if (r < 0)
            return r;
        snprintf(path, sizeof(path), "%s", S_HOST_LOCK);
    } else {
        int r = s_mkdir_p(run_base, err);
        if (r < 0)
            return r;
        snprintf(path, sizeof(path), "%s/.lock", run_base);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "open lock %s: %m", path);
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return cairn_error_set(err, -e, CAIRN_SYSTEM, "flock %s: %s", path, strerror(e));
        }
    }
    return fd;
}

/* ---- processes ------------------------------------------------------------ */

/* State letter and start time (clock ticks after boot) of pid; -errno if
 * it does not exist. */
static int s_proc_stat(pid_t pid, char *ret_state, unsigned long long *ret_start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    ssize_t n = s_read_small(path, buf, sizeof(buf));
    if (n < 0)
        return (int) n;
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    char state = 0;
    unsigned long long start = 0;
    /* after ")": state(3) ... starttime is field 22 */
    if (sscanf(p + 2, "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
                      "%*s %*s %*s %*s %llu", &state, &start) != 2)
        return -EINVAL;
    *ret_state = state;
    *ret_start = start;
    return 0;
}

/* True if pid runs (not a zombie) and, when start != 0, is the same process. */
static bool s_pid_alive(pid_t pid, unsigned long long start)
{
    char state;
    unsigned long long st;
    if (pid <= 0 || s_proc_stat(pid, &state, &st) < 0)
        return false;
    if (state == 'Z' || state == 'X')
        return false;
    return start == 0 || st == start;
}

static int s_pids_add(s_pids_t *s, pid_t pid)
{
    if (pid <= 0 || pid == getpid())
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == pid)
            return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        pid_t *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = pid;
    return 0;
}

static void s_pids_free(s_pids_t *s)
{
    free(s->v);
    *s = (s_pids_t) { 0 };
}

/* Reaps pid if it is our child and has exited; ignores everything else. */
static void s_reap(pid_t pid)
{
    while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
        ;
}

/* Waits until none of s runs, up to ms; returns how many still run. */
static size_t s_wait_gone(const s_pids_t *s, int ms)
{
    int64_t deadline = (int64_t)cairn_now_ms() + ms;
    for (;;) {
        size_t alive = 0;
        for (size_t i = 0; i < s->n; i++) {
            s_reap(s->v[i]);
            alive += s_pid_alive(s->v[i], 0);
        }
        if (alive == 0 || (int64_t)cairn_now_ms() >= deadline)
            return alive;
        s_sleep_ms(10);
    }
}

/* SIGTERM, up to 2 s, SIGKILL, up to 2 s. Returns how many were signalled;
 * processes already gone are skipped. */
static size_t s_kill_all(const s_pids_t *s)
{
    size_t signalled = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s_pid_alive(s->v[i], 0) && kill(s->v[i], SIGTERM) == 0)
            signalled++;
    if (signalled == 0 || s_wait_gone(s, S_TERM_GRACE_MS) == 0)
        return signalled;
    for (size_t i = 0; i < s->n; i++)
        if (s_pid_alive(s->v[i], 0))
            kill(s->v[i], SIGKILL);
    s_wait_gone(s, S_KILL_GRACE_MS);
    return signalled;
}

/* ---- ip(8) ---------------------------------------------------------------- */

static const char *s_ip_path(void)
{
    static const char *const cands[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };
    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

static void s_child_ip(const char *ip, const char *netns, int in_fd, int err_fd)
{
    dup2(in_fd, 0);
    dup2(err_fd, 1);
    dup2(err_fd, 2);
    if (netns)
        execl(ip, "ip", "-force", "-n", netns, "-batch", "-", (char *) NULL);
    else
        execl(ip, "ip", "-force", "-batch", "-", (char *) NULL);
    dprintf(2, "exec %s: %m\n", ip);
    _exit(127);
}

/* Starts `ip [-n netns] -force -batch -` fed with job->batch. */
static int s_ip_start(const char *netns, s_ip_job_t *job, cairn_error_t *err)
{
    const char *ip = s_ip_path();
    int in[2], out[2];
    if (!ip)
        return cairn_error_set(err, -ENOENT, CAIRN_SYSTEM,
                               "ip(8) not found in /usr/sbin, /sbin, /usr/bin, /bin (install iproute2)");
    if (pipe2(in, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %m");
    if (pipe2(out, O_CLOEXEC) < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "pipe: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid == 0)
        s_child_ip(ip, netns, in[0], out[1]);
    int e = errno;
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "fork: %s", strerror(e));
    }
    job->pid = pid;
    job->err_fd = out[0];
    size_t len = strlen(job->batch), off = 0;
    while (off < len) {
        ssize_t w = write(in[1], job->batch + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;   /* ip died early: its exit status says why */
        off += (size_t) w;
    }
    close(in[1]);
    return 0;
}

/* Line `lineno` (1-based) of batch, copied to out. */
static void s_batch_line(const char *batch, long lineno, char *out, size_t size)
{
    const char *p = batch;
    for (long i = 1; i < lineno && p; i++) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    if (!p) {
        snprintf(out, size, "?");
        return;
    }
    size_t n = strcspn(p, "\n");
    snprintf(out, size, "%.*s", (int) (n < size ? n : size - 1), p);
}

/* Replaces newlines with " | " in place-ish (into out), trimming the end. */
static void s_one_line(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 4 < size; p++) {
        if (*p == '\n') {
            if (p[1])
                o += (size_t) snprintf(out + o, size - o, " | ");
        } else {
            out[o++] = *p;
        }
    }
    while (o > 0 && strchr(" |", out[o - 1]))
        o--;
    out[o] = '\0';
}

/* Waits for job; 0 if ip exited 0, else an error quoting the failing
 * command and ip's message. */
static int s_ip_finish(s_ip_job_t *job, cairn_error_t *err)
{
    char msg[2048];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(job->err_fd, msg + n, sizeof(msg) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (n += (size_t) r) >= sizeof(msg) - 1)
            break;
    }
    msg[n] = '\0';
    close(job->err_fd);
    job->err_fd = -1;
    int status = 0;
    while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
        ;
    job->pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char line[256] = "?", flat[1024];
    const char *at = strstr(msg, "Command failed -:");
    if (at)
        s_batch_line(job->batch, strtol(at + strlen("Command failed -:"), NULL, 10),
                     line, sizeof(line));
    s_one_line(msg, flat, sizeof(flat));
    return cairn_error_set(err, -EIO, CAIRN_SYSTEM, "ip (%s) failed at '%s': %s",
                           job->where, line, flat);
}

/* Runs one batch to completion. */
static int s_ip_run(const char *netns, const char *where, const char *batch,
                    cairn_error_t *err)
{
    s_ip_job_t job = { .err_fd = -1, .where = where, .batch = batch };
    int r = s_ip_start(netns, &job, err);
    return r < 0 ? r : s_ip_finish(&job, err);
}

/* ---- growable text -------------------------------------------------------- */

typedef struct s_buf {
    char *s;       /* NUL-terminated text */
    size_t len;    /* length */
    size_t cap;    /* allocated */
} s_buf_t;

static int s_buf_add(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_buf_add(s_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if (b->len + (size_t) n + 1 > b->cap) {
        size_t cap = (b->len + (size_t) n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return -ENOMEM;
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
    return 0;
}

/* ---- the state document --------------------------------------------------- */

static int s_state_save(json_t *state, const char *dir, cairn_error_t *err)
{
    char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s/.state.json.tmp", dir);
    snprintf(path, sizeof(path), "%s/state.json", dir);
    if (json_dump_file(state, tmp, JSON_INDENT(2)) < 0)
        return cairn_error_set(err, -EIO, CAIRN_SYSTEM, "cannot write %s", tmp);
    if (rename(tmp, path) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "rename %s: %m", tmp);
    return 0;
}

static json_t *s_state_load(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *s_jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Refreshes every service's "running"; returns how many run. */
static size_t s_state_refresh(json_t *state, size_t *ret_total)
{
    size_t running = 0, total = 0, i, j;
    json_t *node, *svc;
    json_array_foreach(json_object_get(state, "nodes"), i, node) {
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            pid_t pid = (pid_t) json_integer_value(json_object_get(svc, "pid"));
            unsigned long long start =
                (unsigned long long) json_integer_value(json_object_get(svc, "start_time"));
            bool alive = pid > 0 && s_pid_alive(pid, start);
            json_object_set_new(svc, "running", json_boolean(alive));
            running += alive;
            total++;
        }
    }
    if (ret_total)
        *ret_total = total;
    return running;
}

/* ---- cgroups -------------------------------------------------------------- */

/* Which hierarchy to use; an error says precisely what is missing. */
static int s_cg_detect(s_cg_t *ret, cairn_error_t *err)
{
    char buf[512];
    if (s_read_small(S_CG_ROOT "/cgroup.controllers", buf, sizeof(buf)) >= 0) {
        if (!strstr(buf, "cpu") || !strstr(buf, "memory"))
            return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                                   "cgroup v2 at " S_CG_ROOT " lacks the cpu or memory "
                                   "controller (cgroup.controllers: '%.200s'); use --loopback",
                                   strtok(buf, "\n"));
        *ret = S_CG_V2;
        return 0;
    }
    if (s_exists(S_CG_ROOT "/cpu/cpu.cfs_quota_us") &&
        s_exists(S_CG_ROOT "/memory/memory.limit_in_bytes")) {
        *ret = S_CG_V1;
        return 0;
    }
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "no usable cgroup hierarchy: neither " S_CG_ROOT
                           "/cgroup.controllers (v2) nor " S_CG_ROOT "/cpu and "
                           S_CG_ROOT "/memory (v1); use --loopback");
}

/* The directories of node k's cgroup (1 for v2, 2 for v1). */
static size_t s_cg_dirs(s_cg_t cg, const char *name, unsigned k, char dirs[2][PATH_MAX])
{
    if (cg == S_CG_V2) {
        snprintf(dirs[0], PATH_MAX, S_CG_ROOT "/cairn/%s/%u", name, k);
        return 1;
    }
    if (cg == S_CG_V1) {
        snprintf(dirs[0], PATH_MAX, S_CG_ROOT "/cpu/cairn/%s/%u", name, k);
        snprintf(dirs[1], PATH_MAX, S_CG_ROOT "/memory/cairn/%s/%u", name, k);
        return 2;
    }
    return 0;
}

/* v2: mkdir cairn/<name> and turn on +cpu +memory on the way down. */
static int s_cg2_parents(const char *name, cairn_error_t *err)
{
    char dir[PATH_MAX], file[PATH_MAX + 32];
    const char *levels[] = { S_CG_ROOT, S_CG_ROOT "/cairn", NULL };
    snprintf(dir, sizeof(dir), S_CG_ROOT "/cairn/%s", name);
    levels[2] = dir;
    for (size_t i = 0; i < 3; i++) {
        if (mkdir(levels[i], 0755) < 0 && errno != EEXIST)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %m", levels[i]);
        snprintf(file, sizeof(file), "%s/cgroup.subtree_control", levels[i]);
        int r = s_write_file(file, "+cpu +memory", err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Creates node k's cgroup with its limits. */
static int s_cg_create(s_cg_t cg, const char *name, unsigned k, double cpus,
                       uint64_t mem, cairn_error_t *err)
{
    char dirs[2][PATH_MAX], file[PATH_MAX + 32], val[64];
    long quota = (long) (cpus * S_CPU_PERIOD_US + 0.5);
    size_t n = s_cg_dirs(cg, name, k, dirs);
    int r = cg == S_CG_V2 ? s_cg2_parents(name, err) : 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = s_mkdir_p(dirs[i], err);
    if (r < 0)
        return r;
    if (cg == S_CG_V2) {
        snprintf(file, sizeof(file), "%s/cpu.max", dirs[0]);
        snprintf(val, sizeof(val), "%ld %d", quota, S_CPU_PERIOD_US);
        r = s_write_file(file, val, err);
        snprintf(file, sizeof(file), "%s/memory.max", dirs[0]);
        snprintf(val, sizeof(val), "%llu", (unsigned long long) mem);
        return r < 0 ? r : s_write_file(file, val, err);
    }
    snprintf(file, sizeof(file), "%s/cpu.cfs_period_us", dirs[0]);
    snprintf(val, sizeof(val), "%d", S_CPU_PERIOD_US);
    r = s_write_file(file, val, err);
    snprintf(file, sizeof(file), "%s/cpu.cfs_quota_us", dirs[0]);
    snprintf(val, sizeof(val), "%ld", quota);
    if (r == 0)
        r = s_write_file(file, val, err);
    snprintf(file, sizeof(file), "%s/memory.limit_in_bytes", dirs[1]);
    snprintf(val, sizeof(val), "%llu", (unsigned long long) mem);
    return r < 0 ? r : s_write_file(file, val, err);
}

/* The cluster-level cgroup directories that may exist (any version). */
static const char *const s_cg_bases[] = {
    S_CG_ROOT "/cpu/cairn", S_CG_ROOT "/memory/cairn", S_CG_ROOT "/cairn",
};
#define S_N_CG_BASES (sizeof(s_cg_bases) / sizeof(s_cg_bases[0]))

/* ---- the description ------------------------------------------------------ */

/* Appends s to b, XML-escaped for an attribute value. */
static int s_buf_attr(s_buf_t *b, const char *s)
{
    int r = 0;
    for (; *s && r == 0; s++) {
        switch (*s) {
        case '&': r = s_buf_add(b, "&amp;"); break;
        case '<': r = s_buf_add(b, "&lt;"); break;
        case '>': r = s_buf_add(b, "&gt;"); break;
        case '"': r = s_buf_add(b, "&quot;"); break;
        default: r = s_buf_add(b, "%c", *s); break;
        }
    }
    return r;
}

/* Path of service `svc`'s daemon, or false if none is installed: next to
 * the build tree (<exe dir>/../services/<svc>/<svc>), $CAIRN_SBIN, or
 * /usr/local/sbin. */
static bool s_find_daemon(const char *svc, char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const char *sbin = getenv("CAIRN_SBIN");
    if (sbin && *sbin) {
        snprintf(out, size, "%s/%s", sbin, svc);
        if (access(out, X_OK) == 0)
            return true;
    }
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        char real[PATH_MAX];
        int len = snprintf(out, size, "%s/../services/%s/%s", exe, svc, svc);
        if (len > 0 && (size_t) len < size && access(out, X_OK) == 0 && realpath(out, real)) {
            snprintf(out, size, "%s", real);
            return true;
        }
    }
    snprintf(out, size, "/usr/local/sbin/%s", svc);
    return access(out, X_OK) == 0;
}

static int s_desc_head(s_buf_t *b, const cairn_description_t *gen, const char *run_base,
                       json_t *services)
{
    int r = s_buf_add(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<!-- generated by `cairn cluster up`; removed by `cairn cluster down` -->\n"
                         "<cluster name=\"%s\" run-base=\"", cairn_description_cluster(gen));
    r = r ? r : s_buf_attr(b, run_base);
    r = r ? r : s_buf_add(b, "\">\n  <services>\n");
    for (size_t i = 0; r == 0 && i < cairn_description_n_services(gen); i++) {
        const cairn_service_desc_t *s = cairn_description_service_at(gen, i);
        r = s_buf_add(b, "    <service name=\"%s\" port=\"%u\"", s->name, s->port);
        if (r == 0 && s->pub_port)
            r = s_buf_add(b, " pub-port=\"%u\"", s->pub_port);
        r = r ? r : s_buf_add(b, "/>\n");
    }
    r = r ? r : s_buf_add(b, "  </services>\n  <appliances>\n    <appliance name=\"compute\">\n");
    size_t i;
    json_t *svc;
    json_array_foreach(services, i, svc)
        r = r ? r : s_buf_add(b, "      <use service=\"%s\"/>\n", s_jstr(svc, "name"));
    return r ? r : s_buf_add(b, "    </appliance>\n  </appliances>\n");
}

static int s_desc_tail(s_buf_t *b, const cairn_description_t *gen, json_t *nodes)
{
    int r = s_buf_add(b, "  <nodes>\n");
    size_t i;
    json_t *node;
    json_array_foreach(nodes, i, node)
        r = r ? r : s_buf_add(b, "    <node id=\"%lld\" name=\"%s\" address=\"%s\" "
                                 "appliance=\"compute\"%s/>\n",
                              json_integer_value(json_object_get(node, "id")),
                              s_jstr(node, "name"), s_jstr(node, "address"),
                              i == 0 ? " seed=\"true\"" : "");
    const cairn_membership_desc_t *m = cairn_description_membership(gen);
    r = r ? r : s_buf_add(b, "  </nodes>\n  <membership protocol-period-ms=\"%u\" "
                             "ping-timeout-ms=\"%u\" indirect-checks=\"%u\" "
                             "suspect-timeout-ms=\"%u\" gossip-fanout=\"%u\"/>\n",
                          m->protocol_period_ms, m->ping_timeout_ms, m->indirect_checks,
                          m->suspect_timeout_ms, m->gossip_fanout);
    const char *policy = cairn_description_policy(gen);
    if (r == 0 && policy && *policy) {
        r = s_buf_add(b, "  <scheduler policy=\"%s\">\n", policy);
        for (size_t p = 0; r == 0 && p < cairn_description_n_probes(gen); p++) {
            const cairn_probe_desc_t *pr = cairn_description_probe(gen, p);
            r = s_buf_add(b, "    <probe name=\"%s\" period-ms=\"%u\"/>\n", pr->name,
                          pr->period_ms);
        }
        r = r ? r : s_buf_add(b, "  </scheduler>\n");
    }
    return r ? r : s_buf_add(b, "</cluster>\n");
}

/* Copies each service's ROUTER port from the description into the state. */
static void s_desc_ports(json_t *state, const cairn_description_t *d)
{
    size_t i, j;
    json_t *node, *svc;
    json_array_foreach(json_object_get(state, "nodes"), i, node) {
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            const cairn_service_desc_t *s = cairn_description_service(d, s_jstr(svc, "name"));
            json_object_set_new(svc, "port", json_integer(s ? s->port : 0));
        }
    }
}

/* Generates the default description for the nodes (for the service table
 * and timings), keeps only the services whose daemons exist, writes
 * cluster.xml atomically and loads it back. */
static int s_desc_write(json_t *state, const char *run_base, cairn_error_t *err)
{
    json_t *nodes = json_object_get(state, "nodes");
    size_t n = json_array_size(nodes), i;
    json_t *node;
    const char **hosts = calloc(n, sizeof(*hosts));
    char (*specs)[64] = calloc(n, sizeof(*specs));
    char *xml = NULL;
    cairn_description_t *gen = NULL;
    s_buf_t b = { 0 };
    int r = hosts && specs ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_array_foreach(nodes, i, node) {
        if (r < 0)
            break;
        snprintf(specs[i], sizeof(specs[i]), "%s=%s", s_jstr(node, "name"),
                 s_jstr(node, "address"));
        hosts[i] = specs[i];
    }
    const char *cluster = s_jstr(state, "cluster");
    if (r == 0)
        r = cairn_description_generate(cluster, hosts, n, "compute", run_base, &xml, err);
    if (r == 0)
        r = cairn_description_load_memory(xml, strlen(xml), "<generated>", &gen, err);
    if (r == 0 && (s_desc_head(&b, gen, run_base, json_object_get(json_array_get(nodes, 0),
                                                                  "services")) < 0 ||
                   s_desc_tail(&b, gen, nodes) < 0))
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    free(xml);
    free(hosts);
    free(specs);
    cairn_description_free(gen);
    if (r == 0) {
        char tmp[PATH_MAX];
        const char *path = s_jstr(state, "config");
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        FILE *f = fopen(tmp, "we");
        if (!f || fputs(b.s, f) < 0 || fclose(f) != 0 || rename(tmp, path) < 0)
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "write %s: %m", path);
    }
    free(b.s);
    if (r == 0) {
        gen = NULL;
        r = cairn_description_load(s_jstr(state, "config"), &gen, err);
        if (r == 0)
            s_desc_ports(state, gen);
        cairn_description_free(gen);
    }
    return r;
}

/* ---- planning ------------------------------------------------------------- */

/* First c in 0..254 such that no interface has an address in 10.77.c.0/24. */
static int s_pick_subnet(int *ret, cairn_error_t *err)
{
    struct ifaddrs *ifa = NULL;
    bool used[256] = { false };
    if (getifaddrs(&ifa) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getifaddrs: %m");
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *) p->ifa_addr)->sin_addr.s_addr);
        if ((a >> 16) == ((10u << 8) | 77u))
            used[(a >> 8) & 0xff] = true;
    }
    freeifaddrs(ifa);
    for (int c = 0; c < 255; c++)
        if (!used[c]) {
            *ret = c;
            return 0;
        }
    return cairn_error_set(err, -EADDRINUSE, CAIRN_UNAVAILABLE,
                           "every subnet 10.77.0-254.0/24 is in use by another interface");
}

/* The services of the appliance: every known service whose daemon exists. */
static int s_plan_services(json_t **ret, cairn_error_t *err)
{
    static const char *const known[] = {
        "clusterd", "ghostd", "dsmd", "syncd", "probed", "kernetd",
    };
    json_t *a = json_array();
    char bin[PATH_MAX];
    for (size_t i = 0; a && i < sizeof(known) / sizeof(known[0]); i++)
        if (s_find_daemon(known[i], bin, sizeof(bin)))
            json_array_append_new(a, json_pack("{s:s, s:s}", "name", known[i], "binary", bin));
    if (!a)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    if (json_array_size(a) == 0) {
        json_decref(a);
        return cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                               "no Cairn daemon found (looked for clusterd in $CAIRN_SBIN, "
                               "<cairn dir>/../services/clusterd/ and /usr/local/sbin)");
    }
    *ret = a;
    return 0;
}

/* One node of the plan. */
static json_t *s_plan_node(const json_t *state, const localcluster_opts_t *o, unsigned k,
                           s_cg_t cg, int subnet, const json_t *services)
{
    const char *name = s_jstr(state, "cluster");
    char addr[32], ns[32], veth[IFNAMSIZ + 8], nm[16], rundir[PATH_MAX], dirs[2][PATH_MAX];
    bool netns = subnet >= 0;
    if (netns)
        snprintf(addr, sizeof(addr), "10.77.%d.%u", subnet, k);
    else
        snprintf(addr, sizeof(addr), "127.0.0.%u", k);
    snprintf(ns, sizeof(ns), "cairn-%s-%u", name, k);
    snprintf(veth, sizeof(veth), "cv-%s-%u", name, k);
    snprintf(nm, sizeof(nm), "n%u", k);
    snprintf(rundir, sizeof(rundir), "%s/%u", s_jstr(state, "run_dir"), k);
    size_t ncg = s_cg_dirs(cg, name, k, dirs);
    json_t *paths = json_array();
    for (size_t i = 0; i < ncg; i++)
        json_array_append_new(paths, json_string(dirs[i]));
    json_t *svcs = json_deep_copy(services);
    size_t i;
    json_t *s;
    json_array_foreach(svcs, i, s)
        json_object_update_new(s, json_pack("{s:i, s:i, s:b}", "pid", 0, "start_time", 0,
                                            "running", 0));
    return json_pack("{s:i, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o}",
                     "id", (int) k, "name", nm, "address", addr,
                     "netns", netns ? json_string(ns) : json_null(),
                     "veth", netns ? json_string(veth) : json_null(),
                     "cgroup", ncg ? json_string(dirs[0]) : json_null(),
                     "cgroup_paths", paths,
                     "cpus", netns ? json_real(o->cpus) : json_null(),
                     "mem_bytes", netns ? json_integer((json_int_t) o->mem_bytes) : json_null(),
                     "rundir", rundir, "services", svcs);
}

/* Builds the whole state document (nothing is created yet). */
static int s_plan(const localcluster_opts_t *o, const char *name, const char *run_base,
                  json_t **ret, cairn_error_t *err)
{
    bool netns = !o->loopback && geteuid() == 0;
    s_cg_t cg = S_CG_NONE;
    int subnet = -1, r;
    char dir[PATH_MAX], cfg[PATH_MAX + 16], bridge[IFNAMSIZ + 8], net[32];
    json_t *services = NULL;
    if (netns && ((r = s_cg_detect(&cg, err)) < 0 || (r = s_pick_subnet(&subnet, err)) < 0))
        return r;
    if ((r = s_plan_services(&services, err)) < 0)
        return r;
    snprintf(dir, sizeof(dir), "%s/%s", run_base, name);
    snprintf(cfg, sizeof(cfg), "%s/cluster.xml", dir);
    snprintf(bridge, sizeof(bridge), "cb-%s", name);
    snprintf(net, sizeof(net), "10.77.%d.0/24", subnet);
    json_t *st = json_pack("{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:s, s:[]}",
                           "cluster", name, "mode", netns ? "netns" : "loopback",
                           "cgroup", cg == S_CG_V1 ? json_string("v1")
                                     : cg == S_CG_V2 ? json_string("v2") : json_null(),
                           "config", cfg, "run_dir", dir,
                           "bridge", netns ? json_string(bridge) : json_null(),
                           "subnet", netns ? json_string(net) : json_null(),
                           "phase", "creating", "nodes");
    json_t *nodes = json_object_get(st, "nodes");
    for (unsigned k = 1; st && k <= o->nodes; k++)
        json_array_append_new(nodes, s_plan_node(st, o, k, cg, subnet, services));
    json_decref(services);
    if (!st || json_array_size(nodes) != o->nodes) {
        json_decref(st);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    if (!netns)
        json_object_set_new(st, "warning", json_string(
            geteuid() != 0
            ? "not root: loopback mode; nodes share the host network (127.0.0.<k>, same ports) and have no capacity limits"
            : "loopback mode (--loopback): nodes share the host network (127.0.0.<k>, same ports) and have no capacity limits"));
    *ret = st;
    return 0;
}

/* Refuses run dirs whose socket paths would not fit a sockaddr_un. */
static int s_check_paths(const json_t *st, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        size_t len = strlen(s_jstr(node, "rundir")) + strlen("/kernetd.pub.sock");
        if (len >= S_SUN_PATH_MAX)
            return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                                   "run dir %s is too long for a unix socket path "
                                   "(%zu >= %d bytes); use a shorter run base",
                                   s_jstr(node, "rundir"), len, S_SUN_PATH_MAX);
    }
    return 0;
}

/* ---- creating the network ------------------------------------------------- */

static int s_net_host_batch(const json_t *st, s_buf_t *b)
{
    const char *bridge = s_jstr(st, "bridge");
    const char *subnet = s_jstr(st, "subnet");
    int c = atoi(subnet + strlen("10.77."));
    int r = s_buf_add(b, "link add %s type bridge\naddr add 10.77.%d.254/24 dev %s\n"
                         "link set %s up\n", bridge, c, bridge, bridge);
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        const char *ns = s_jstr(node, "netns"), *veth = s_jstr(node, "veth");
        r = r ? r : s_buf_add(b, "netns add %s\nlink add %s type veth peer name eth0 netns %s\n"
                                 "link set %s master %s up\n", ns, veth, ns, veth, bridge);
    }
    return r;
}

/* Host side in one batch, then every namespace's inside in parallel. */
static int s_net_create(const json_t *st, cairn_error_t *err)
{
    json_t *nodes = json_object_get(st, "nodes");
    size_t n = json_array_size(nodes), i;
    json_t *node;
    s_buf_t host = { 0 };
    s_buf_t *in = calloc(n, sizeof(*in));
    s_ip_job_t *jobs = calloc(n, sizeof(*jobs));
    int r = in && jobs && s_net_host_batch(st, &host) == 0 ? 0
            : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    if (r == 0 && (r = s_ip_run(NULL, "host", host.s, err)) < 0 && err) {
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof(err->message) - len,
                 " (cairn cluster up --loopback runs without namespaces)");
    }
    json_array_foreach(nodes, i, node) {
        if (r < 0)
            break;
        if (s_buf_add(&in[i], "link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n",
                      s_jstr(node, "address")) < 0) {
            r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
            break;
        }
        jobs[i] = (s_ip_job_t) { .err_fd = -1, .where = s_jstr(node, "netns"), .batch = in[i].s };
        r = s_ip_start(jobs[i].where, &jobs[i], err);
    }
    for (i = 0; jobs && i < n; i++) {
        cairn_error_t e2;
        if (jobs[i].pid > 0 && s_ip_finish(&jobs[i], r == 0 ? err : &e2) < 0 && r == 0)
            r = -EIO;
        free(in[i].s);
    }
    free(host.s);
    free(in);
    free(jobs);
    return r;
}

static int s_cg_create_all(const json_t *st, const localcluster_opts_t *o, cairn_error_t *err)
{
    const char *v = s_jstr(st, "cgroup");
    s_cg_t cg = !v ? S_CG_NONE : strcmp(v, "v2") == 0 ? S_CG_V2 : S_CG_V1;
    for (unsigned k = 1; cg != S_CG_NONE && k <= o->nodes; k++) {
        int r = s_cg_create(cg, s_jstr(st, "cluster"), k, o->cpus, o->mem_bytes, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- starting daemons ----------------------------------------------------- */

/* In the forked child: join cgroups and netns, detach, exec. Never returns. */
static void s_child_daemon(const json_t *node, const char *bin, const char *config,
                           const char *log)
{
    char file[PATH_MAX + 32], pid[32], id[16];
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(126);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    snprintf(pid, sizeof(pid), "%d", (int) getpid());
    size_t i;
    json_t *cg;
    json_array_foreach(json_object_get(node, "cgroup_paths"), i, cg) {
        snprintf(file, sizeof(file), "%s/cgroup.procs", json_string_value(cg));
        cairn_error_t e;
        if (s_write_file(file, pid, &e) < 0) {
            dprintf(2, "cairn cluster up: cannot join cgroup: %s\n", e.message);
            _exit(127);
        }
    }
    const char *ns = s_jstr(node, "netns");
    if (ns) {
        snprintf(file, sizeof(file), S_NETNS_DIR "/%s", ns);
        int nfd = open(file, O_RDONLY | O_CLOEXEC);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
            dprintf(2, "cairn cluster up: cannot enter netns %s: %m\n", file);
            _exit(127);
        }
    }
    setsid();
    /* the daemon is not a unit of whatever supervises the CLI */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("CAIRN_CLUSTER_TEST_PAUSE");
    snprintf(id, sizeof(id), "%lld", json_integer_value(json_object_get(node, "id")));
    close_range(3, ~0u, 0);
    if (json_is_true(json_object_get(node, "hotplug")))
        /* not in the description: the node says who it is */
        execl(bin, bin, "--config", config, "--node-id", id, "--address",
              s_jstr(node, "address"), "--name", s_jstr(node, "name"), "--appliance",
              s_jstr(node, "appliance"), (char *) NULL);
    else
        execl(bin, bin, "--config", config, "--node", id, (char *) NULL);
    dprintf(2, "cairn cluster up: exec %s: %m\n", bin);
    _exit(127);
}

/* Forks every daemon of one node; pids go into the node's services. */
static int s_spawn_node(json_t *node, const char *config, cairn_error_t *err)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        char log[PATH_MAX + 64], sock[PATH_MAX + 64];
        const char *rundir = s_jstr(node, "rundir"), *name = s_jstr(svc, "name");
        snprintf(log, sizeof(log), "%s/%s.log", rundir, name);
        snprintf(sock, sizeof(sock), "%s/%s.sock", rundir, name);
        unlink(sock);
        pid_t pid = fork();
        if (pid < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fork: %m");
        if (pid == 0)
            s_child_daemon(node, s_jstr(svc, "binary"), config, log);
        char state;
        unsigned long long start = 0;
        s_proc_stat(pid, &state, &start);
        json_object_set_new(svc, "pid", json_integer(pid));
        json_object_set_new(svc, "start_time", json_integer((json_int_t) start));
    }
    return 0;
}

/* Forks every daemon of every node. */
static int s_spawn_all(json_t *st, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        int r = s_spawn_node(node, s_jstr(st, "config"), err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The last lines of a log, on one line, into out. */
static void s_log_tail(const char *path, char *out, size_t size)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    if (fd >= 0) {
        off_t end = lseek(fd, 0, SEEK_END);
        off_t from = end > (off_t) sizeof(buf) - 1 ? end - (off_t) sizeof(buf) + 1 : 0;
        n = pread(fd, buf, sizeof(buf) - 1, from);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    /* keep the last 3 lines */
    char *p = buf + (n > 0 ? n : 0);
    for (int lines = 0; p > buf; p--)
        if (p[-1] == '\n' && ++lines == 3)
            break;
    s_one_line(p, out, size);
    if (!*out)
        snprintf(out, size, "(empty log)");
}

static void s_exit_text(int status, char *out, size_t size)
{
    if (WIFEXITED(status))
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, size, "stopped");
}

/* One check of one daemon: 1 ready, 0 not yet, -1 died (err filled). */
static int s_check_daemon(const json_t *node, const json_t *svc, cairn_error_t *err)
{
    char path[PATH_MAX + 64], tail[600], how[96];
    const char *rundir = s_jstr(node, "rundir"), *name = s_jstr(svc, "name");
    pid_t pid = (pid_t) json_integer_value(json_object_get(svc, "pid"));
    int status;
    struct stat st;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        snprintf(path, sizeof(path), "%s/%s.log", rundir, name);
        s_log_tail(path, tail, sizeof(tail));
        s_exit_text(status, how, sizeof(how));
        cairn_error_set(err, -ECHILD, CAIRN_UNAVAILABLE,
                        "%s of node %lld (pid %d) %s before serving; last lines of %s: %s",
                        name, json_integer_value(json_object_get(node, "id")), (int) pid,
                        how, path, tail);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s.sock", rundir, name);
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode) ? 1 : 0;
}

/* Polls every daemon of `nodes` together until all serve, one dies, or the
 * deadline. */
static int s_wait_ready(const json_t *nodes, int timeout_ms, cairn_error_t *err)
{
    int64_t deadline = (int64_t)cairn_now_ms() + timeout_ms;
    for (;;) {
        size_t pending = 0, i, j;
        json_t *node, *svc;
        const char *late = NULL;
        long long late_id = 0;
        json_array_foreach(nodes, i, node) {
            json_array_foreach(json_object_get(node, "services"), j, svc) {
                int r = s_check_daemon(node, svc, err);
                if (r < 0)
                    return -ECHILD;
                if (r == 0 && !pending++) {
                    late = s_jstr(svc, "name");
                    late_id = json_integer_value(json_object_get(node, "id"));
                }
            }
        }
        if (pending == 0)
            return 0;
        if ((int64_t)cairn_now_ms() >= deadline)
            return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                                   "%zu daemon(s) did not create their ipc socket within "
                                   "%d ms (first: %s of node %lld)", pending, timeout_ms,
                                   late, late_id);
        s_sleep_ms(5);
    }
}

/* ---- connectivity check --------------------------------------------------- */

/* In a child inside node 1's netns: TCP connect to every other node's
 * `port`; writes the ids that failed to fd as text. */
/* One TCP connect to addr:port within the time left until deadline: 0,
 * or the errno that ended it. A refused connection (the node's daemon not
 * listening yet: it was just started) or an unreachable host (its link
 * still coming up) is tried again until the deadline. */
static int s_probe_one(const char *addr, int port, int64_t deadline)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    int e = ETIMEDOUT;
    inet_pton(AF_INET, addr, &sa.sin_addr);
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0)
            return errno;
        e = connect(s, (struct sockaddr *) &sa, sizeof(sa)) == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            struct pollfd p = { .fd = s, .events = POLLOUT };
            int left = (int) (deadline - (int64_t)cairn_now_ms());
            socklen_t len = sizeof(e);
            e = poll(&p, 1, left > 0 ? left : 0) != 1 ? ETIMEDOUT
                : getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) < 0 ? errno : e;
        }
        close(s);
        bool again = e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH;
        if (!again || (int64_t)cairn_now_ms() + 20 >= deadline)
            return e;
        usleep(20 * 1000);
    }
}

static void s_child_probe(const json_t *st, int port, int fd)
{
    json_t *nodes = json_object_get(st, "nodes");
    char ns[PATH_MAX];
    snprintf(ns, sizeof(ns), S_NETNS_DIR "/%s", s_jstr(json_array_get(nodes, 0), "netns"));
    int nfd = open(ns, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0)
        _exit(2);
    int64_t deadline = (int64_t)cairn_now_ms() + S_CHECK_MS;
    for (size_t i = 1; i < json_array_size(nodes); i++) {
        const json_t *node = json_array_get(nodes, i);
        if (s_probe_one(s_jstr(node, "address"), port, deadline) != 0)
            dprintf(fd, "%s%lld", i > 1 ? "," : "", json_integer_value(json_object_get(node, "id")));
    }
    _exit(0);
}

/* Checks traffic between namespaces; a failure is reported in a warning,
 * with the bridge-netfilter hint when it applies. */
static void s_check_traffic(json_t *st)
{
    json_t *nodes = json_object_get(st, "nodes");
    const json_t *svc = json_array_get(json_object_get(json_array_get(nodes, 0), "services"), 0);
    int port = (int) json_integer_value(json_object_get(svc, "port"));
    int fds[2];
    if (json_array_size(nodes) < 2 || port <= 0 || pipe2(fds, O_CLOEXEC) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0)
        s_child_probe(st, port, fds[1]);
    close(fds[1]);
    char failed[1024] = "", msg[1400], nf[8] = "";
    size_t n = 0;
    for (ssize_t r; pid > 0 && n < sizeof(failed) - 1 &&
                    ((r = read(fds[0], failed + n, sizeof(failed) - 1 - n)) > 0 || (r < 0 && errno == EINTR));)
        n += r > 0 ? (size_t) r : 0;
    failed[n] = '\0';
    close(fds[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ran = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    json_object_set_new(st, "traffic_ok", ran ? json_boolean(!*failed) : json_null());
    if (!ran || !*failed)
        return;
    s_read_small("/proc/sys/net/bridge/bridge-nf-call-iptables", nf, sizeof(nf));
    snprintf(msg, sizeof(msg), "TCP from node 1 to node(s) %s failed across bridge %s%s",
             failed, s_jstr(st, "bridge"),
             nf[0] == '1' ? "; bridge-nf-call-iptables is 1, so host iptables rules see "
                            "bridged traffic and may drop it" : "");
    json_object_set_new(st, "warning", json_string(msg));
}

/* ---- inventory and sweep (down) ------------------------------------------- */

/* Everything of cluster `name` that exists now. */
typedef struct s_inventory {
    json_t *netns;     /* array of namespace names */
    json_t *links;     /* array of link names (veths, then the bridge) */
    json_t *cgroups;   /* array of cgroup dirs, leaves before parents */
    s_pids_t pids;     /* processes belonging to the cluster */
    bool dir;          /* the cluster directory exists */
} s_inventory_t;

static void s_inventory_free(s_inventory_t *inv)
{
    json_decref(inv->netns);
    json_decref(inv->links);
    json_decref(inv->cgroups);
    s_pids_free(&inv->pids);
}

static bool s_inventory_empty(const s_inventory_t *inv)
{
    return json_array_size(inv->netns) == 0 && json_array_size(inv->links) == 0 &&
           json_array_size(inv->cgroups) == 0 && inv->pids.n == 0 && !inv->dir;
}

/* True if s is "<prefix><digits>". */
static bool s_match_k(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 && s[n] && strspn(s + n, "0123456789") == strlen(s + n);
}

/* Shorter first, then by bytes: "cairn-x-2" before "cairn-x-10". */
static int s_cmp_names(const void *a, const void *b)
{
    const char *x = json_string_value(*(json_t *const *) a);
    const char *y = json_string_value(*(json_t *const *) b);
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* Sorts an array of strings in place (s_cmp_names order). */
static void s_sort_names(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
    json_t *e;
    if (!v)
        return;
    json_array_foreach(arr, i, e)
        v[i] = json_incref(e);
    qsort(v, n, sizeof(*v), s_cmp_names);
    json_array_clear(arr);
    for (i = 0; i < n; i++)
        json_array_append_new(arr, v[i]);
    free(v);
}

static void s_find_netns(const char *name, json_t *out)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "cairn-%s-", name);
    DIR *d = opendir(S_NETNS_DIR);
    for (struct dirent *e; d && (e = readdir(d));)
        if (s_match_k(e->d_name, prefix))
            json_array_append_new(out, json_string(e->d_name));
    if (d)
        closedir(d);
    s_sort_names(out);
}

static void s_find_links(const char *name, json_t *out)
{
    char prefix[32], bridge[32];
    snprintf(prefix, sizeof(prefix), "cv-%s-", name);
    snprintf(bridge, sizeof(bridge), "cb-%s", name);
    struct if_nameindex *ifs = if_nameindex();
    bool has_bridge = false;
    for (struct if_nameindex *p = ifs; p && p->if_index; p++) {
        if (s_match_k(p->if_name, prefix))
            json_array_append_new(out, json_string(p->if_name));
        has_bridge |= strcmp(p->if_name, bridge) == 0;
    }
    s_sort_names(out);
    if (has_bridge)
        json_array_append_new(out, json_string(bridge));
    if (ifs)
        if_freenameindex(ifs);
}

/* Reads pids from <dir>/cgroup.procs. */
static void s_cg_procs(const char *dir, s_pids_t *pids)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1)
        s_pids_add(pids, pid);
    if (f)
        fclose(f);
}

/* Cgroup dirs of the cluster (leaves, then the cluster dir) and their procs. */
static void s_find_cgroups(const char *name, json_t *out, s_pids_t *pids)
{
    for (size_t b = 0; b < S_N_CG_BASES; b++) {
        char top[PATH_MAX], leaf[PATH_MAX + 300];
        snprintf(top, sizeof(top), "%s/%s", s_cg_bases[b], name);
        DIR *d = opendir(top);
        json_t *leaves = d ? json_array() : NULL;
        if (!leaves) {
            if (d)
                closedir(d);
            continue;
        }
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            snprintf(leaf, sizeof(leaf), "%s/%s", top, e->d_name);
            s_cg_procs(leaf, pids);
            json_array_append_new(leaves, json_string(leaf));
        }
        closedir(d);
        s_sort_names(leaves);
        json_array_extend(out, leaves);
        json_decref(leaves);
        s_cg_procs(top, pids);
        json_array_append_new(out, json_string(top));
    }
}

/* True if the NUL-separated argv holds "--config" <config> or "--config=<config>". */
static bool s_cmdline_has_config(const char *argv, size_t len, const char *config)
{
    for (size_t i = 0; i < len; i += strlen(argv + i) + 1) {
        const char *a = argv + i;
        if (strncmp(a, "--config=", 9) == 0 && strcmp(a + 9, config) == 0)
            return true;
        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && i + strlen(a) + 1 < len &&
            strcmp(a + strlen(a) + 1, config) == 0)
            return true;
    }
    return false;
}

/* One pass over /proc: processes in one of the namespaces or (config not
 * NULL) started with the cluster's config. */
static void s_find_procs(const json_t *netns, const char *config, s_pids_t *pids)
{
    struct stat nst[LOCALCLUSTER_MAX_NODES + 8];
    size_t nns = 0, i;
    json_t *ns;
    json_array_foreach(netns, i, ns) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), S_NETNS_DIR "/%s", json_string_value(ns));
        if (nns < sizeof(nst) / sizeof(nst[0]) && stat(path, &nst[nns]) == 0)
            nns++;
    }
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strspn(e->d_name, "0123456789") != strlen(e->d_name))
            continue;
        char path[300], argv[4096];
        struct stat st;
        bool hit = false;
        snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
        for (size_t k = 0; k < nns && !hit && stat(path, &st) == 0; k++)
            hit = st.st_dev == nst[k].st_dev && st.st_ino == nst[k].st_ino;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        ssize_t n = hit || !config ? 0 : s_read_small(path, argv, sizeof(argv));
        if (hit || (n > 0 && s_cmdline_has_config(argv, (size_t) n, config)))
            s_pids_add(pids, atoi(e->d_name));
    }
    if (d)
        closedir(d);
}

/* The pids of the state file that are still the processes it started. */
static void s_state_pids(const json_t *st, s_pids_t *pids)
{
    size_t i, j;
    json_t *node, *svc;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            pid_t pid = (pid_t) json_integer_value(json_object_get(svc, "pid"));
            unsigned long long start =
                (unsigned long long) json_integer_value(json_object_get(svc, "start_time"));
            if (pid > 0 && start > 0 && s_pid_alive(pid, start))
                s_pids_add(pids, pid);
        }
    }
}

static int s_inventory(const char *name, const char *dir, const json_t *st,
                       s_inventory_t *inv, cairn_error_t *err)
{
    char config[PATH_MAX + 16];
    *inv = (s_inventory_t) { .netns = json_array(), .links = json_array(),
                             .cgroups = json_array() };
    if (!inv->netns || !inv->links || !inv->cgroups) {
        s_inventory_free(inv);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    snprintf(config, sizeof(config), "%s/cluster.xml", dir);
    s_find_netns(name, inv->netns);
    s_find_links(name, inv->links);
    s_find_cgroups(name, inv->cgroups, &inv->pids);
    s_find_procs(inv->netns, config, &inv->pids);
    s_state_pids(st, &inv->pids);
    inv->dir = s_exists(dir);
    return 0;
}

/* Deletes links and namespaces in one batch (-force: all are tried). */
static int s_sweep_net(const s_inventory_t *inv, cairn_error_t *err)
{
    s_buf_t b = { 0 };
    size_t i;
    json_t *v;
    int r = 0;
    json_array_foreach(inv->links, i, v)
        r = r ? r : s_buf_add(&b, "link del %s\n", json_string_value(v));
    json_array_foreach(inv->netns, i, v)
        r = r ? r : s_buf_add(&b, "netns del %s\n", json_string_value(v));
    if (r < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    else if (b.len > 0)
        r = s_ip_run(NULL, "host", b.s, err);
    free(b.s);
    return r;
}

/* rmdir every cgroup (leaves first); a cgroup still busy is retried for a
 * second while its last processes leave. The shared parents "cairn" go too
 * when empty. */
static int s_sweep_cgroups(const s_inventory_t *inv, cairn_error_t *err)
{
    size_t i;
    json_t *v;
    json_array_foreach(inv->cgroups, i, v) {
        const char *dir = json_string_value(v);
        int64_t deadline = (int64_t)cairn_now_ms() + 1000;
        while (rmdir(dir) < 0 && errno != ENOENT) {
            if (errno != EBUSY || (int64_t)cairn_now_ms() >= deadline)
                return cairn_error_set(err, -errno, CAIRN_SYSTEM, "rmdir %s: %m", dir);
            s_sleep_ms(10);
        }
    }
    for (size_t b = 0; b < S_N_CG_BASES; b++)
        rmdir(s_cg_bases[b]);   /* only succeeds when no other cluster uses it */
    return 0;
}

/* The whole of down, the lock held. */
static int s_down_locked(const char *name, const char *dir, json_t **ret_result,
                         cairn_error_t *err)
{
    json_t *st = s_state_load(dir);
    s_inventory_t inv;
    int r = s_inventory(name, dir, st, &inv, err);
    json_decref(st);
    if (r < 0)
        return r;
    bool removed = !s_inventory_empty(&inv);
    size_t killed = s_kill_all(&inv.pids);
    r = s_sweep_net(&inv, err);
    if (r == 0)
        r = s_sweep_cgroups(&inv, err);
    if (r == 0 && s_rm_rf(dir) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot remove %s: %m", dir);
    if (r == 0 && ret_result)
        *ret_result = json_pack("{s:s, s:b, s:O, s:O, s:O, s:i, s:s, s:b}", "cluster", name,
                                "removed", removed, "netns", inv.netns, "links", inv.links,
                                "cgroups", inv.cgroups, "processes_killed", (int) killed,
                                "run_dir", dir, "run_dir_removed", inv.dir);
    s_inventory_free(&inv);
    return r;
}

/* ---- up ----------------------------------------------------------------- */

/* Test hook: CAIRN_CLUSTER_TEST_PAUSE=<phase>:<ms> sleeps at that phase
 * (plan, net, cgroups, spawn) so a test can kill -9 the CLI mid-up. */
static void s_test_pause(const char *phase)
{
    const char *v = getenv("CAIRN_CLUSTER_TEST_PAUSE");
    size_t n = strlen(phase);
    if (v && strncmp(v, phase, n) == 0 && v[n] == ':')
        s_sleep_ms(atoi(v + n + 1));
}

/* Creates everything of the planned st and starts the daemons. */
static int s_build(json_t *st, const localcluster_opts_t *o, const char *run_base,
                   cairn_error_t *err)
{
    size_t i;
    json_t *node;
    int r = s_mkdir_p(s_jstr(st, "run_dir"), err);
    json_array_foreach(json_object_get(st, "nodes"), i, node)
        r = r ? r : s_mkdir_p(s_jstr(node, "rundir"), err);
    r = r ? r : s_state_save(st, s_jstr(st, "run_dir"), err);   /* intent first */
    r = r ? r : s_desc_write(st, run_base, err);
    s_test_pause("plan");
    bool netns = strcmp(s_jstr(st, "mode"), "netns") == 0;
    r = r || !netns ? r : s_net_create(st, err);
    s_test_pause("net");
    r = r || !netns ? r : s_cg_create_all(st, o, err);
    s_test_pause("cgroups");
    r = r ? r : s_spawn_all(st, err);
    json_object_set_new(st, "phase", json_string("starting"));
    int r2 = s_state_save(st, s_jstr(st, "run_dir"), r ? NULL : err);
    r = r ? r : r2;
    s_test_pause("spawn");
    r = r ? r : s_wait_ready(json_object_get(st, "nodes"), o->start_timeout_ms > 0 ? o->start_timeout_ms
                                                          : LOCALCLUSTER_DEFAULT_START_MS, err);
    if (r == 0 && netns)
        s_check_traffic(st);
    json_object_set_new(st, "phase", json_string("running"));
    return r ? r : s_state_save(st, s_jstr(st, "run_dir"), err);
}

static int s_check_opts(const localcluster_opts_t *o, cairn_error_t *err)
{
    if (o->nodes < 1 || o->nodes > LOCALCLUSTER_MAX_NODES)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--nodes must be 1..%d, got %u", LOCALCLUSTER_MAX_NODES, o->nodes);
    if (!(o->cpus >= 0.01 && o->cpus <= 1024))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--cpus must be 0.01..1024, got %g", o->cpus);
    if (o->mem_bytes < S_MIN_MEM)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--mem must be at least 16M, got %llu bytes",
                               (unsigned long long) o->mem_bytes);
    return 0;
}

/* What to do about an existing cluster of that name: 1 = it runs (result
 * set), 0 = nothing there or stale leftovers removed (*ret_stale). */
static int s_existing(const char *name, const char *dir, json_t **ret_result,
                      bool *ret_stale, cairn_error_t *err)
{
    json_t *st = s_state_load(dir);
    size_t total = 0;
    if (st && strcmp(s_jstr(st, "phase") ? s_jstr(st, "phase") : "", "running") == 0 &&
        s_state_refresh(st, &total) > 0) {
        json_object_set_new(st, "already_running", json_true());
        *ret_result = st;
        return 1;
    }
    s_inventory_t inv;
    int r = s_inventory(name, dir, st, &inv, err);
    bool foreign = !st && inv.pids.n > 0 && json_array_size(inv.netns) > 0;
    bool stale = r == 0 && !s_inventory_empty(&inv);
    json_decref(st);
    if (r == 0)
        s_inventory_free(&inv);
    if (r < 0)
        return r;
    if (foreign)
        return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                               "namespaces cairn-%s-* exist with running processes but %s/state.json "
                               "does not: a cluster '%s' under another run base? bring it down "
                               "there, or run `cairn cluster down --name %s` with this one",
                               name, dir, name, name);
    *ret_stale = stale;
    return stale ? s_down_locked(name, dir, NULL, err) : 0;
}

static int s_up_locked(const localcluster_opts_t *o, const char *name, const char *run_base,
                       json_t **ret_result, cairn_error_t *err)
{
    int64_t t0 = (int64_t)cairn_now_ms();
    char dir[PATH_MAX];
    bool stale = false;
    json_t *st = NULL;
    snprintf(dir, sizeof(dir), "%s/%s", run_base, name);
    int r = s_existing(name, dir, &st, &stale, err);
    if (r == 1) {
        json_object_set_new(st, "recovered_stale", json_false());
        json_object_set_new(st, "elapsed_ms", json_integer((int64_t)cairn_now_ms() - t0));
        *ret_result = st;
        return 0;
    }
    if (r == 0)
        r = s_plan(o, name, run_base, &st, err);
    if (r == 0)
        r = s_check_paths(st, err);
    if (r == 0 && (r = s_build(st, o, run_base, err)) < 0)
        s_down_locked(name, dir, NULL, NULL);   /* undo; the first error is the one reported */
    if (r < 0) {
        json_decref(st);
        return r;
    }
    s_state_refresh(st, NULL);
    json_object_set_new(st, "already_running", json_false());
    json_object_set_new(st, "recovered_stale", json_boolean(stale));
    json_object_set_new(st, "elapsed_ms", json_integer((int64_t)cairn_now_ms() - t0));
    *ret_result = st;
    return 0;
}

/* ---- hotplug (cairn node add|remove) ------------------------------------- */

/* The node of st with that id, and its index; NULL if none. */
static json_t *s_state_node(const json_t *st, unsigned id, size_t *ret_index)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        if (json_integer_value(json_object_get(node, "id")) == (json_int_t) id) {
            if (ret_index)
                *ret_index = i;
            return node;
        }
    }
    return NULL;
}

/* The first running daemon pid of node, 0 if none runs. */
static pid_t s_node_running(const json_t *node)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        pid_t pid = (pid_t) json_integer_value(json_object_get(svc, "pid"));
        unsigned long long start =
            (unsigned long long) json_integer_value(json_object_get(svc, "start_time"));
        if (pid > 0 && start > 0 && s_pid_alive(pid, start))
            return pid;
    }
    return 0;
}

/* Third byte of the netns subnet "10.77.<c>.0/24", -1 in loopback mode. */
static int s_subnet_c(const json_t *st)
{
    const char *subnet = s_jstr(st, "subnet");
    return subnet && strncmp(subnet, "10.77.", 6) == 0 ? atoi(subnet + 6) : -1;
}

/* The address node `id` gets: `given` checked against the cluster's
 * network, else the subnet's .<id> (netns) or 127.0.0.<id> (loopback). */
static int s_hotplug_address(const json_t *st, unsigned id, const char *given, char *out,
                             size_t size, cairn_error_t *err)
{
    const char *name = s_jstr(st, "cluster");
    int c = s_subnet_c(st);
    struct in_addr in;
    if (!given) {
        if (id < 1 || id > (c >= 0 ? 253u : 254u))
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "--address is required for node id %u: the default address "
                                   "%s.<id> of local cluster %s exists only for ids 1..%u", id,
                                   c >= 0 ? "10.77.<c>" : "127.0.0", name, c >= 0 ? 253u : 254u);
        if (c >= 0)
            snprintf(out, size, "10.77.%d.%u", c, id);
        else
            snprintf(out, size, "127.0.0.%u", id);
        return 0;
    }
    if (inet_pton(AF_INET, given, &in) != 1)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--address '%s' is not an IPv4 address; local cluster %s uses %s",
                               given, name, c >= 0 ? s_jstr(st, "subnet") : "127.0.0.0/8");
    uint32_t a = ntohl(in.s_addr), host = a & 0xff;
    if (c >= 0 && (a >> 8) != ((10u << 16) | (77u << 8) | (unsigned) c))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--address %s is outside local cluster %s's subnet %s", given,
                               name, s_jstr(st, "subnet"));
    if (c < 0 && (a >> 24) != 127)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--address %s is not a loopback address: local cluster %s runs in "
                               "loopback mode (127.0.0.0/8)", given, name);
    if (host == 0 || host == 255 || (c >= 0 && host == 254))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--address %s is the %s address of local cluster %s's subnet",
                               given, host == 0 ? "network" : host == 255 ? "broadcast" : "bridge",
                               name);
    snprintf(out, size, "%s", given);
    return 0;
}

/* Address and conflicts of a node to add to the cluster of st: an id whose
 * daemons run, or an address another node of the cluster holds. */
static int s_hotplug_check(const json_t *st, unsigned id, const char *given, char *out,
                           size_t size, cairn_error_t *err)
{
    const char *name = s_jstr(st, "cluster"), *phase = s_jstr(st, "phase");
    size_t i;
    json_t *node;
    if (!phase || strcmp(phase, "running") != 0)
        return cairn_error_set(err, -EBUSY, CAIRN_FAILED_PRECONDITION,
                               "local cluster %s is not running (phase '%s'); run `cairn "
                               "cluster up` first", name, phase ? phase : "?");
    int r = s_hotplug_address(st, id, given, out, size, err);
    if (r < 0)
        return r;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        unsigned k = (unsigned) json_integer_value(json_object_get(node, "id"));
        pid_t pid = s_node_running(node);
        if (k == id && pid)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "node %u of local cluster %s already runs (pid %d)", id, name,
                                   (int) pid);
        if (k != id && strcmp(s_jstr(node, "address"), out) == 0)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "address %s is already used by node %u of local cluster %s",
                                   out, k, name);
    }
    return 0;
}

/* Stops node's daemons (waiting up to wait_ms for them to exit by
 * themselves first) and removes its link, namespace, cgroups and run dir.
 * report gets what was done. */
static int s_node_teardown(const json_t *node, int wait_ms, json_t *report, cairn_error_t *err)
{
    s_pids_t pids = { 0 };
    size_t j;
    json_t *svc, *v;
    const char *ns = s_jstr(node, "netns"), *veth = s_jstr(node, "veth");
    char path[PATH_MAX];
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        pid_t pid = (pid_t) json_integer_value(json_object_get(svc, "pid"));
        unsigned long long start =
            (unsigned long long) json_integer_value(json_object_get(svc, "start_time"));
        if (pid > 0 && start > 0 && s_pid_alive(pid, start))
            s_pids_add(&pids, pid);
    }
    json_t *nss = ns ? json_pack("[s]", ns) : NULL;
    if (nss)
        s_find_procs(nss, NULL, &pids);
    json_decref(nss);
    size_t running = s_wait_gone(&pids, 0);
    size_t left = running ? s_wait_gone(&pids, wait_ms) : 0;
    size_t killed = left ? s_kill_all(&pids) : 0;
    s_pids_free(&pids);
    json_object_set_new(report, "processes_exited", json_integer((json_int_t) (running - left)));
    json_object_set_new(report, "processes_killed", json_integer((json_int_t) killed));
    s_buf_t b = { 0 };
    int r = 0;
    if (veth && if_nametoindex(veth) > 0)
        r = s_buf_add(&b, "link del %s\n", veth);
    snprintf(path, sizeof(path), S_NETNS_DIR "/%s", ns ? ns : "");
    if (r == 0 && ns && s_exists(path))
        r = s_buf_add(&b, "netns del %s\n", ns);
    if (r < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    else if (b.len > 0)
        r = s_ip_run(NULL, "host", b.s, err);
    free(b.s);
    json_array_foreach(json_object_get(node, "cgroup_paths"), j, v) {
        const char *dir = json_string_value(v);
        int64_t deadline = (int64_t)cairn_now_ms() + 1000;
        while (r == 0 && rmdir(dir) < 0 && errno != ENOENT) {
            if (errno != EBUSY || (int64_t)cairn_now_ms() >= deadline)
                r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "rmdir %s: %m", dir);
            else
                s_sleep_ms(10);
        }
    }
    if (r == 0 && s_rm_rf(s_jstr(node, "rundir")) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot remove %s: %m",
                            s_jstr(node, "rundir"));
    return r;
}

/* The per-node limits a new node gets: those of the cluster's first node. */
static void s_hotplug_limits(const json_t *st, localcluster_opts_t *o)
{
    const json_t *first = json_array_get(json_object_get(st, "nodes"), 0);
    localcluster_opts_init(o);
    if (json_is_number(json_object_get(first, "cpus")))
        o->cpus = json_number_value(json_object_get(first, "cpus"));
    if (json_is_integer(json_object_get(first, "mem_bytes")))
        o->mem_bytes = (uint64_t) json_integer_value(json_object_get(first, "mem_bytes"));
}

/* The network of one new node: its namespace and veth on the bridge, then
 * its address inside. */
static int s_hotplug_net(const json_t *st, const json_t *node, cairn_error_t *err)
{
    const char *ns = s_jstr(node, "netns"), *veth = s_jstr(node, "veth");
    s_buf_t host = { 0 }, in = { 0 };
    int r = s_buf_add(&host, "netns add %s\nlink add %s type veth peer name eth0 netns %s\n"
                             "link set %s master %s up\n", ns, veth, ns, veth,
                      s_jstr(st, "bridge"));
    r = r ? r : s_buf_add(&in, "link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n",
                          s_jstr(node, "address"));
    if (r < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = r ? r : s_ip_run(NULL, "host", host.s, err);
    r = r ? r : s_ip_run(ns, ns, in.s, err);
    free(host.s);
    free(in.s);
    return r;
}

/* Plans, records, creates and starts node `spec` in the cluster of st. */
static int s_hotplug_build(json_t *st, const localcluster_node_t *spec, const char *address,
                           json_t **ret_node, cairn_error_t *err)
{
    const char *cgv = s_jstr(st, "cgroup");
    s_cg_t cg = !cgv ? S_CG_NONE : strcmp(cgv, "v2") == 0 ? S_CG_V2 : S_CG_V1;
    bool netns = strcmp(s_jstr(st, "mode"), "netns") == 0;
    localcluster_opts_t o;
    json_t *services = NULL;
    s_hotplug_limits(st, &o);
    int r = s_plan_services(&services, err);
    if (r < 0)
        return r;
    json_t *node = s_plan_node(st, &o, spec->id, cg, netns ? s_subnet_c(st) : -1, services);
    json_decref(services);
    if (!node)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_object_set_new(node, "address", json_string(address));
    json_object_set_new(node, "name", json_string(spec->name));
    json_object_set_new(node, "appliance", json_string(spec->appliance));
    json_object_set_new(node, "hotplug", json_true());
    json_array_append_new(json_object_get(st, "nodes"), node);   /* st owns it */
    size_t len = strlen(s_jstr(node, "rundir")) + strlen("/kernetd.pub.sock");
    if (len >= S_SUN_PATH_MAX)
        r = cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                            "run dir %s is too long for a unix socket path (%zu >= %d bytes)",
                            s_jstr(node, "rundir"), len, S_SUN_PATH_MAX);
    r = r ? r : s_mkdir_p(s_jstr(node, "rundir"), err);
    r = r ? r : s_state_save(st, s_jstr(st, "run_dir"), err);   /* intent first */
    r = r || !netns ? r : s_hotplug_net(st, node, err);
    r = r || cg == S_CG_NONE ? r
                             : s_cg_create(cg, s_jstr(st, "cluster"), spec->id, o.cpus,
                                           o.mem_bytes, err);
    r = r ? r : s_spawn_node(node, s_jstr(st, "config"), err);
    int r2 = s_state_save(st, s_jstr(st, "run_dir"), r ? NULL : err);
    r = r ? r : r2;
    json_t *one = json_pack("[O]", node);
    r = r ? r : one ? s_wait_ready(one, spec->start_timeout_ms > 0 ? spec->start_timeout_ms
                                                                   : LOCALCLUSTER_DEFAULT_START_MS,
                                   err)
                    : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_decref(one);
    *ret_node = node;
    return r;
}

/* Drops node `id` from st's nodes and saves st. */
static int s_state_drop(json_t *st, unsigned id, cairn_error_t *err)
{
    size_t index;
    if (s_state_node(st, id, &index))
        json_array_remove(json_object_get(st, "nodes"), index);
    return s_state_save(st, s_jstr(st, "run_dir"), err);
}

static int s_node_add_locked(const char *dir, const localcluster_node_t *spec,
                             json_t **ret_result, cairn_error_t *err)
{
    char address[64];
    json_t *st = s_state_load(dir), *node = NULL, *old;
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster at %s (no state.json)", dir);
    int r = s_hotplug_check(st, spec->id, spec->address, address, sizeof(address), err);
    json_t *report = json_object();
    if (r == 0 && !report)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    /* leftovers of an earlier life of this id (it left, its daemons are gone) */
    if (r == 0 && (old = s_state_node(st, spec->id, NULL)) &&
        (r = s_node_teardown(old, 0, report, err)) == 0)
        r = s_state_drop(st, spec->id, err);
    if (r == 0 && (r = s_hotplug_build(st, spec, address, &node, err)) < 0 && node) {
        cairn_error_t e2;
        s_node_teardown(node, 0, report, &e2);   /* undo; the first error is reported */
        s_state_drop(st, spec->id, &e2);
    }
    if (r == 0) {
        json_t *one = json_pack("{s:[O]}", "nodes", node);
        s_state_refresh(one, NULL);
        json_decref(one);
        *ret_result = json_deep_copy(node);
        if (!*ret_result)
            r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    json_decref(report);
    json_decref(st);
    return r;
}

static int s_node_remove_locked(const char *dir, unsigned id, int wait_ms,
                                json_t **ret_result, cairn_error_t *err)
{
    json_t *st = s_state_load(dir), *node;
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster at %s (no state.json)", dir);
    if (!(node = s_state_node(st, id, NULL))) {
        json_decref(st);
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "node %u is not a node of local cluster %s (%s/state.json)", id,
                               s_jstr(st, "cluster"), dir);
    }
    json_t *report = json_pack("{s:I, s:O, s:O, s:s}", "id", (json_int_t) id, "netns",
                               json_object_get(node, "netns"), "veth",
                               json_object_get(node, "veth"), "rundir", s_jstr(node, "rundir"));
    int r = report ? s_node_teardown(node, wait_ms, report, err)
                   : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = r ? r : s_state_drop(st, id, err);
    json_decref(st);
    if (r < 0) {
        json_decref(report);
        return r;
    }
    *ret_result = report;
    return 0;
}

/* ---- public ------------------------------------------------------------- */

void localcluster_opts_init(localcluster_opts_t *opts)
{
    *opts = (localcluster_opts_t) { .nodes = 1, .cpus = LOCALCLUSTER_DEFAULT_CPUS,
                                    .mem_bytes = LOCALCLUSTER_DEFAULT_MEM };
}

/* Name and run base of a call, checked. */
static int s_target(const char *name, const char *run_base, const char **ret_name,
                    char *base, size_t size, cairn_error_t *err)
{
    if (!name)
        name = LOCALCLUSTER_DEFAULT_NAME;
    if (!s_valid_name(name))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cluster name '%s' must match [a-z0-9]{1,8}", name);
    *ret_name = name;
    return cli_run_base(run_base, base, size, err);
}

/* The operations that run under the harness lock, and their arguments. */
typedef enum { S_OP_UP, S_OP_DOWN, S_OP_NODE_ADD, S_OP_NODE_REMOVE } s_op_kind_t;
typedef struct s_op {
    s_op_kind_t kind;                   /* which */
    const localcluster_opts_t *opts;    /* S_OP_UP */
    const localcluster_node_t *node;    /* S_OP_NODE_ADD */
    unsigned id;                        /* S_OP_NODE_REMOVE */
    int wait_ms;                        /* S_OP_NODE_REMOVE */
} s_op_t;

/* Resolves the cluster, takes the lock, runs op, hands over its result. */
static int s_run_locked(const char *name, const char *run_base, const s_op_t *op,
                        json_t **ret_result, cairn_error_t *err)
{
    char base[S_BASE_MAX], dir[PATH_MAX + 16];
    json_t *res = NULL;
    int r = s_target(name, run_base, &name, base, sizeof(base), err);
    if (r < 0)
        return r;
    int lock = s_lock(base, err);
    if (lock < 0)
        return lock;
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    switch (op->kind) {
    case S_OP_UP: r = s_up_locked(op->opts, name, base, &res, err); break;
    case S_OP_DOWN: r = s_down_locked(name, dir, &res, err); break;
    case S_OP_NODE_ADD: r = s_node_add_locked(dir, op->node, &res, err); break;
    case S_OP_NODE_REMOVE: r = s_node_remove_locked(dir, op->id, op->wait_ms, &res, err); break;
    }
    close(lock);
    if (r == 0)
        *ret_result = res;
    return r;
}

int localcluster_up(const localcluster_opts_t *opts, json_t **ret_result, cairn_error_t *err)
{
    if (!opts || !ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "opts and ret_result are required");
    int r = s_check_opts(opts, err);
    if (r < 0)
        return r;
    s_op_t op = { .kind = S_OP_UP, .opts = opts };
    return s_run_locked(opts->name, opts->run_base, &op, ret_result, err);
}

int localcluster_down(const char *name, const char *run_base, json_t **ret_result,
                      cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "ret_result is required");
    s_op_t op = { .kind = S_OP_DOWN };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int localcluster_status(const char *name, const char *run_base, json_t **ret_result,
                        cairn_error_t *err)
{
    char base[S_BASE_MAX], dir[PATH_MAX + 16];
    int r = s_target(name, run_base, &name, base, sizeof(base), err);
    if (r < 0)
        return r;
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    json_t *st = s_state_load(dir);
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster '%s' (no %s/state.json)", name, dir);
    size_t total = 0, running = s_state_refresh(st, &total);
    json_object_set_new(st, "services_running", json_integer((json_int_t) running));
    json_object_set_new(st, "services_total", json_integer((json_int_t) total));
    *ret_result = st;
    return 0;
}

bool localcluster_exists(const char *name, const char *run_base)
{
    char base[S_BASE_MAX], path[PATH_MAX + 32];
    if (!name || !s_valid_name(name) || cli_run_base(run_base, base, sizeof(base), NULL) < 0)
        return false;
    snprintf(path, sizeof(path), "%s/%s/state.json", base, name);
    return s_exists(path);
}

int localcluster_node_prepare(const char *name, const char *run_base, unsigned id,
                              const char *address, char *out, size_t size, cairn_error_t *err)
{
    char base[S_BASE_MAX], dir[PATH_MAX + 16];
    if (!name || !s_valid_name(name))
        return 0;   /* the harness never made a cluster of that name */
    int r = cli_run_base(run_base, base, sizeof(base), err);
    if (r < 0)
        return r;
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    json_t *st = s_state_load(dir);
    if (!st)
        return 0;
    r = s_hotplug_check(st, id, address, out, size, err);
    json_decref(st);
    return r < 0 ? r : 1;
}

int localcluster_node_add(const char *name, const char *run_base,
                          const localcluster_node_t *node, json_t **ret_result,
                          cairn_error_t *err)
{
    if (!node || !node->name || !node->appliance || !ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "node (with name and appliance) and ret_result are required");
    s_op_t op = { .kind = S_OP_NODE_ADD, .node = node };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int localcluster_node_remove(const char *name, const char *run_base, unsigned id, int wait_ms,
                             json_t **ret_result, cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "ret_result is required");
    s_op_t op = { .kind = S_OP_NODE_REMOVE, .id = id, .wait_ms = wait_ms };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int localcluster_parse_size(const char *option, const char *value, uint64_t *ret,
                            cairn_error_t *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = value && *value != '-' ? strtoull(value, &end, 10) : 0;
    unsigned shift = 0;
    if (end && *end && !end[1])
        shift = strchr("kK", *end) ? 10 : strchr("mM", *end) ? 20 : strchr("gG", *end) ? 30 : 99;
    else if (end && *end)
        shift = 99;
    if (!value || !end || end == value || errno || shift == 99 || v > (UINT64_MAX >> shift))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s: '%s' is not a size (bytes, or a number with K, M or G)",
                               option, value ? value : "");
    *ret = (uint64_t) v << shift;
    return 0;
}

int localcluster_parse_cpus(const char *option, const char *value, double *ret,
                            cairn_error_t *err)
{
    char *end = NULL;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || !end || end == value || *end || errno || !(v >= 0.01 && v <= 1024))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s: '%s' is not a CPU count in 0.01..1024", option,
                               value ? value : "");
    *ret = v;
    return 0;
}
