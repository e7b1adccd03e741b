/* place.c - the restored tree's cgroup: a transient scope, or where the
 * helper runs; a launched job's sub-cgroup (place.h).
 *
 * Design. systemd only moves a process into a scope it creates itself
 * (StartTransientUnit with PIDs = [us]); the method returns once the job is
 * queued, and the move happens when the job runs, so we then poll our own
 * /proc/self/cgroup until one of its lines ends in "/<unit>" (1 ms steps,
 * 5 s at most). The bus is the system bus, else systemd's private socket
 * (root only; what systemctl uses when dbus is not running). Nothing here
 * forks: the caller makes the tree after we return.
 *
 * A job's sub-cgroup. Without systemd the node's cgroup is wherever ghostd
 * runs (a local cluster puts it in .../cairn/<cluster>/<k> of the cpu and
 * memory hierarchies on v1, of the unified one on v2). Each line
 * "ID:CONTROLLERS:PATH" of /proc/self/cgroup whose PATH is not "/" names
 * one hierarchy the node owns a cgroup of; its directory is the mount of
 * that hierarchy (mountinfo: fstype cgroup2 for ID 0, else a cgroup mount
 * whose super options hold every controller of the line) joined with PATH
 * less the mount's root. The job's cgroup is NAME below it, made and
 * entered by writing "0" (ourselves) to its cgroup.procs; on v2 the node's
 * cgroup enables no controller for its children (the harness enables them
 * only above it), so a process may stay beside the job's cgroup.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn-config.h"
#include "place.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

#define S_MOVE_WAIT_MS 5000 /* for systemd to move us into the scope */

/* ---- reading /proc/PID/cgroup ------------------------------------------ */

/* The path of the line "ID:CONTROLLERS:PATH" whose controllers are `want`
 * (exactly, or one of a comma list when `in_list`), else NULL. */
static const char *s_line_path(char *text, const char *want, bool in_list)
{
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (next)
            *next++ = '\0';
        if (!c2)
            continue;
        *c2 = '\0';
        bool hit = strcmp(c1 + 1, want) == 0;
        for (char *t = c1 + 1; in_list && !hit && t;) {
            size_t len = strcspn(t, ",");
            hit = len == strlen(want) && strncmp(t, want, len) == 0;
            t = t[len] ? t + len + 1 : NULL;
        }
        *c2 = ':';
        if (hit)
            return c2 + 1;
    }
    return NULL;
}

int ghost_place_cgroup_of(pid_t pid, char *out, size_t size)
{
    static const struct {
        const char *name;
        bool in_list;
    } order[] = {
        { "", false },
        { "name=systemd", false },
        { "cpu", true },
    };
    char path[64];
    int r;

    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        _cleanup_free_ char *text = NULL;
        if ((r = cairn_read_file(path, 0, &text, NULL)) < 0)
            return r;
        const char *p = s_line_path(text, order[i].name, order[i].in_list);
        if (p && strcmp(p, "/") != 0) {
            snprintf(out, size, "%s", p);
            return 0;
        }
    }
    snprintf(out, size, "/");
    return 0;
}

/* ---- a job's sub-cgroup ------------------------------------------------ */

/* Whether the comma list `opts` holds every name of the comma list `want`. */
static bool s_opts_hold(const char *opts, const char *want)
{
    for (const char *w = want; *w;) {
        size_t wl = strcspn(w, ",");
        bool found = false;
        for (const char *o = opts; *o && !found;) {
            size_t ol = strcspn(o, ",");
            found = ol == wl && strncmp(o, w, wl) == 0;
            o += ol + (o[ol] == ',');
        }
        if (!found)
            return false;
        w += wl + (w[wl] == ',');
    }
    return true;
}

/* The directory of cgroup `path` of the hierarchy `ctrl` ("" for v2) from
 * mountinfo, into out. -ENOENT when no mount shows it. */
static int s_cgroup_dir(const char *mountinfo, const char *ctrl,
                        const char *path, char *out, size_t size)
{
    char line[4096];

    for (const char *l = mountinfo; l && *l;) {
        size_t len = strcspn(l, "\n");
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        l += len + (l[len] == '\n');
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SRC SUPER */
        char root[PATH_MAX], mnt[PATH_MAX], fstype[32], super[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
            sscanf(dash + 3, "%31s %*s %1023s", fstype, super) != 2)
            continue;
        bool v2 = strcmp(fstype, "cgroup2") == 0;
        if (*ctrl ? strcmp(fstype, "cgroup") != 0 || !s_opts_hold(super, ctrl) : !v2)
            continue;
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (rl && (strncmp(path, root, rl) != 0 || (path[rl] && path[rl] != '/')))
            continue;   /* this mount does not show our cgroup */
        int n = snprintf(out, size, "%s%s", mnt, path + rl);
        return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
    }
    return -ENOENT;
}

/* The NAME directories under the caller's cgroups (not root ones), at
 * most max, into dirs; their number, or -errno. */
static int s_job_dirs(const char *name, char dirs[][PATH_MAX], size_t max)
{
    _cleanup_free_ char *cg = NULL, *mi = NULL;
    char dir[PATH_MAX];
    size_t n = 0;
    int r = cairn_read_file("/proc/self/cgroup", 0, &cg, NULL);

    if (r == 0)
        r = cairn_read_file("/proc/self/mountinfo", 0, &mi, NULL);
    if (r < 0)
        return r;
    for (char *line = cg, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || strcmp(c2 + 1, "/") == 0 || n == max)
            continue;
        *c2 = '\0';
        if (s_cgroup_dir(mi, c1 + 1, c2 + 1, dir, sizeof dir) < 0)
            continue;   /* a hierarchy not mounted here */
        if (snprintf(dirs[n], PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
            return -ENAMETOOLONG;
        n++;
    }
    return (int)n;
}

#define S_MAX_HIERARCHIES 16

static bool s_good_name(const char *name)
{
    return name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0 && strlen(name) < 200;
}

/* A job's CPU weight beside its node's daemons, which sit in the node's
 * cgroup itself: v1 cpu.shares (1024 by default, each daemon task counts
 * as 1024 too), v2 cpu.weight (100) where the controller is enabled. An
 * eighth: a node whose 0.5 CPU sixteen jobs kept busy left clusterd a
 * 17th of it, too late to answer SWIM's pings, and the node was declared
 * dead with every job on it (issue 20); with jobs at an eighth a waking
 * daemon gets a third of the CPU against sixteen of them, and jobs among
 * themselves share as before. Idle daemons take nothing from the jobs. */
#define S_JOB_CPU_SHARES "128"
#define S_JOB_CPU_WEIGHT "12"

/* Writes the job's CPU weight into dir, the one of the two knobs dir
 * has; 0 also when it has neither (not a cpu hierarchy). */
static int s_job_cpu_weight(const char *dir, cairn_error_t *err)
{
    static const char *const knob[2][2] = {
        { "cpu.shares", S_JOB_CPU_SHARES }, { "cpu.weight", S_JOB_CPU_WEIGHT },
    };
    char path[PATH_MAX + 16];

    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%.*s/%s", PATH_MAX - 1, dir, knob[i][0]);
        if (access(path, W_OK) < 0)
            continue;
        int r = cairn_write_file(path, knob[i][1], strlen(knob[i][1]), 0, 0);
        if (r < 0)
            return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                                   "cannot write %s: %s", path, strerror(-r));
    }
    return 0;
}

int ghost_place_enter_cgroup(const char *name, cairn_error_t *err)
{
    char dirs[S_MAX_HIERARCHIES][PATH_MAX], procs[PATH_MAX + 16];

    if (!s_good_name(name))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cgroup name '%s' is not one path component",
                               name ? name : "");
    int n = s_job_dirs(name, dirs, S_MAX_HIERARCHIES);
    if (n < 0)
        return cairn_error_set(err, n, CAIRN_FAILED_PRECONDITION,
                               "cannot read our cgroups: %s", strerror(-n));
    for (int i = 0; i < n; i++) {
        if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST)
            return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                                   "cannot make cgroup %s: %s", dirs[i],
                                   strerror(errno));
        int w = s_job_cpu_weight(dirs[i], err);
        if (w < 0)
            return w;
        if (snprintf(procs, sizeof procs, "%.*s/cgroup.procs", PATH_MAX - 1,
                     dirs[i]) >= (int)sizeof procs)
            return cairn_error_set(err, -ENAMETOOLONG, CAIRN_FAILED_PRECONDITION,
                                   "cgroup path %s is too long", dirs[i]);
        int r = cairn_write_file(procs, "0\n", 2, 0, 0);
        if (r < 0)
            return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                                   "cannot move into cgroup %s: %s", dirs[i],
                                   strerror(-r));
    }
    return 0;
}

int ghost_place_remove_cgroup(const char *name)
{
    char dirs[S_MAX_HIERARCHIES][PATH_MAX];
    int first = 0;

    if (!s_good_name(name))
        return -EINVAL;
    int n = s_job_dirs(name, dirs, S_MAX_HIERARCHIES);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++)
        if (rmdir(dirs[i]) < 0 && errno != ENOENT && first == 0)
            first = -errno;
    return first;
}

/* SIGKILLs every process listed in dir/cgroup.procs; how many were. */
static int s_kill_procs(const char *dir)
{
    char path[PATH_MAX + 16];
    _cleanup_free_ char *text = NULL;
    int n = 0;

    snprintf(path, sizeof path, "%.*s/cgroup.procs", PATH_MAX - 1, dir);
    if (cairn_read_file(path, 0, &text, NULL) < 0)
        return 0;
    for (char *p = text, *end; *p; p = end) {
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
            n++;
        while (*end == '\n')
            end++;
    }
    return n;
}

int ghost_place_kill_cgroup(const char *name)
{
    char dirs[S_MAX_HIERARCHIES][PATH_MAX];
    int total = 0;

    if (!s_good_name(name))
        return -EINVAL;
    int n = s_job_dirs(name, dirs, S_MAX_HIERARCHIES);
    if (n < 0)
        return n;
    /* A pid namespace's init takes its namespace with it, but a process
     * forking meanwhile may add one: again until empty, 1 s at most. */
    for (int round = 0; round < 100; round++) {
        int killed = 0;
        for (int i = 0; i < n; i++)
            killed += s_kill_procs(dirs[i]);
        total += killed;
        if (!killed)
            break;
        usleep(10000);
    }
    for (int i = 0; i < n; i++)
        rmdir(dirs[i]);
    return total;
}

/* ---- a transient scope ------------------------------------------------- */

#if CAIRN_HAVE_SYSTEMD

/* True when a line of /proc/self/cgroup ends in "/unit". */
static bool s_in_unit(const char *unit)
{
    _cleanup_free_ char *text = NULL;
    char tail[300];

    snprintf(tail, sizeof tail, "/%s\n", unit);
    return cairn_read_file("/proc/self/cgroup", 0, &text, NULL) == 0 &&
           strstr(text, tail) != NULL;
}

/* The system bus, else systemd's private socket. */
static int s_bus_open(sd_bus **ret, bool *ret_private)
{
    sd_bus *bus = NULL;
    int r = sd_bus_open_system(&bus);

    *ret_private = false;
    if (r >= 0) {
        *ret = bus;
        return 0;
    }
    r = sd_bus_new(&bus);
    if (r >= 0)
        r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
    if (r >= 0)
        r = sd_bus_start(bus);
    if (r < 0) {
        sd_bus_unref(bus);
        return r;
    }
    *ret_private = true;
    *ret = bus;
    return 0;
}

/* StartTransientUnit(unit, "fail", {Description, Slice, CollectMode,
 * PIDs=[us]}, {}). */
static int s_start_scope(sd_bus *bus, bool priv, const char *unit,
                         const char *slice, const char *description,
                         sd_bus_error *error)
{
    sd_bus_message *m = NULL, *reply = NULL;
    int r = sd_bus_message_new_method_call(
        bus, &m, priv ? NULL : "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
        "StartTransientUnit");

    if (r >= 0)
        r = sd_bus_message_append(m, "ss", unit, "fail");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'a', "(sv)");
    if (r >= 0)
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "Description", "s",
                                  description, "Slice", "s", slice,
                                  "CollectMode", "s", "inactive-or-failed",
                                  "PIDs", "au", 1, (uint32_t)getpid());
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_message_append(m, "a(sa(sv))", 0);
    if (r >= 0)
        r = sd_bus_call(bus, m, 0, error, &reply);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
    return r;
}

/* Polls until systemd has moved us (S_MOVE_WAIT_MS at most). */
static int s_wait_moved(const char *unit)
{
    uint64_t deadline = cairn_now_ms() + S_MOVE_WAIT_MS;
    struct timespec ms = { 0, 1000000 };

    while (!s_in_unit(unit)) {
        if (cairn_ms_left(deadline) == 0)
            return -ETIMEDOUT;
        nanosleep(&ms, NULL);
    }
    return 0;
}

int ghost_place_scope(const char *unit, const char *slice,
                      const char *description, cairn_error_t *err)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus *bus = NULL;
    bool priv;
    int r = s_bus_open(&bus, &priv);

    if (r < 0)
        return cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                               "cannot reach systemd (system bus, then "
                               "/run/systemd/private): %s; nothing was "
                               "restored",
                               strerror(-r));
    r = s_start_scope(bus, priv, unit, slice, description, &error);
    if (r < 0)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "systemd refused the scope %s in %s: %s; nothing "
                        "was restored",
                        unit, slice,
                        error.message ? error.message : strerror(-r));
    else if ((r = s_wait_moved(unit)) < 0)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "systemd made %s but did not move the restore into "
                        "it within %d ms; nothing was restored",
                        unit, S_MOVE_WAIT_MS);
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(bus);
    return r < 0 ? -EHOSTUNREACH : 0;
}

#else

int ghost_place_scope(const char *unit, const char *slice,
                      const char *description, cairn_error_t *err)
{
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "ghost-restore was built without libsystemd: it "
                           "cannot make the scope %s in %s",
                           unit, slice);
}

#endif

int ghost_place_take_oom(cairn_error_t *err)
{
    const char *v = getenv(GHOST_HELPER_OOM_ENV);
    char *end;

    if (!v)
        return 0;
    errno = 0;
    long adj = strtol(v, &end, 10);
    if (errno || end == v || *end || adj < -1000 || adj > 1000)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s=%.32s is not an oom_score_adj (-1000..1000)",
                               GHOST_HELPER_OOM_ENV, v);
    char buf[16];
    snprintf(buf, sizeof buf, "%ld", adj);
    int r = cairn_write_file("/proc/self/oom_score_adj", buf, strlen(buf), 0, 0);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_INTERNAL,
                               "cannot set oom_score_adj %ld: %s", adj, strerror(-r));
    unsetenv(GHOST_HELPER_OOM_ENV);
    return 0;
}
