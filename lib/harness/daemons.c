/* daemons.c - the daemons of a local cluster: found, started, awaited.
 *
 * A daemon binary is looked for in $CAIRN_SBIN/<svc>, then next to the
 * running program's build tree (<dir of exe>/../services/<svc>/<svc>),
 * then /usr/local/sbin/<svc>; the appliance holds the services whose
 * daemon exists. Service "sched" is whichever policy runs: the program
 * sched-<policy> (services/sched/sched-<policy> in a build tree), the
 * default policy's at up, another after a swap (sched.c). Each daemon is started as systemd would on a real host:
 * the forked child joins its node's cgroups, enters its namespace, calls
 * setsid, takes /dev/null as stdin and <rundir>/<svc>.log as stdout and
 * stderr, closes every other descriptor and executes the daemon. All are
 * forked before any is waited for; one loop then polls every socket and
 * every child together against one deadline, and a daemon that exits
 * first fails the whole start with the last lines of its log.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn/client.h"
#include "harness-private.h"
#include "util/clock.h"

/* ---- finding the daemons ----------------------------------------------- */

#define S_N_DIRS 4

/* Where the programs of daemon folder svc are looked for, in order:
 * $CAIRN_SBIN, the build tree (<dir of exe>/../services/<svc>), an
 * installed prefix (bin/cairn beside sbin/, whatever the prefix),
 * /usr/local/sbin. An entry is "" when it does not apply. */
static void s_search_dirs(const char *svc, char dirs[S_N_DIRS][PATH_MAX])
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const char *sbin = getenv("CAIRN_SBIN");
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash)
        *slash = '\0';
    memset(dirs, 0, S_N_DIRS * sizeof(dirs[0]));
    if (sbin && strlen(sbin) < PATH_MAX)
        memcpy(dirs[0], sbin, strlen(sbin) + 1);
    if (slash && snprintf(dirs[1], PATH_MAX, "%s/../services/%s", exe, svc) >=
                     PATH_MAX)
        dirs[1][0] = '\0';
    if (slash && snprintf(dirs[2], PATH_MAX, "%s/../sbin", exe) >= PATH_MAX)
        dirs[2][0] = '\0';
    memcpy(dirs[3], "/usr/local/sbin", sizeof("/usr/local/sbin"));
}

/* Path of program `bin` of daemon folder `svc` (services/<svc>/<bin> in
 * a build tree) in out, or false if it is not installed. */
static bool s_find_program(const char *svc, const char *bin, char *out,
                           size_t size)
{
    char dirs[S_N_DIRS][PATH_MAX], path[PATH_MAX + 72], real[PATH_MAX];
    s_search_dirs(svc, dirs);
    for (size_t i = 0; i < S_N_DIRS; i++) {
        if (!dirs[i][0])
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dirs[i], bin) >=
            (int)sizeof(path))
            continue;
        if (access(path, X_OK) == 0 && realpath(path, real)) {
            snprintf(out, size, "%s", real);
            return true;
        }
    }
    return false;
}

json_t *hx_policies(void)
{
    char dirs[S_N_DIRS][PATH_MAX], path[PATH_MAX + 300];
    json_t *names = json_array();
    s_search_dirs("sched", dirs);
    for (size_t i = 0; names && i < S_N_DIRS; i++) {
        DIR *dir = dirs[i][0] ? opendir(dirs[i]) : NULL;
        struct dirent *de;
        while (dir && (de = readdir(dir))) {
            const char *policy = de->d_name + 6;
            struct stat st;
            if (snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name) >=
                (int)sizeof(path))
                continue;
            if (strncmp(de->d_name, "sched-", 6) != 0 || !*policy ||
                strchr(policy, '.') || stat(path, &st) < 0 ||
                !S_ISREG(st.st_mode) || access(path, X_OK) < 0)
                continue;
            bool seen = false;
            for (size_t k = 0; k < json_array_size(names); k++)
                seen |= strcmp(json_string_value(json_array_get(names, k)),
                               policy) == 0;
            if (!seen)
                json_array_append_new(names, json_string(policy));
        }
        if (dir)
            closedir(dir);
    }
    if (names)
        hx_sort_names(names);
    return names;
}

bool hx_find_policy(const char *policy, char *out, size_t size)
{
    char bin[64];
    snprintf(bin, sizeof(bin), "sched-%s", policy);
    return s_find_program("sched", bin, out, size);
}

/* The entry of service svc, or NULL when its daemon is not installed:
 * service "sched" is run by the default policy's daemon. */
static json_t *s_service_entry(const char *svc)
{
    char bin[PATH_MAX];
    if (strcmp(svc, "sched") == 0)
        return hx_find_policy(CAIRN_SCHED_DEFAULT_POLICY, bin, sizeof(bin))
                   ? json_pack("{s:s, s:s, s:s}", "name", svc, "binary", bin,
                               "policy", CAIRN_SCHED_DEFAULT_POLICY)
                   : NULL;
    return s_find_program(svc, svc, bin, sizeof(bin))
               ? json_pack("{s:s, s:s}", "name", svc, "binary", bin)
               : NULL;
}

int hx_find_services(json_t **ret, cairn_error_t *err)
{
    static const char *const known[] = {
        "clusterd", "ghostd", "dsmd", "syncd", "probed", "sched", "kernetd",
    };
    json_t *a = json_array(), *e;
    for (size_t i = 0; a && i < sizeof(known) / sizeof(known[0]); i++)
        if ((e = s_service_entry(known[i])))
            json_array_append_new(a, e);
    if (!a)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    if (json_array_size(a) == 0) {
        json_decref(a);
        return cairn_error_set(
            err, -ENOENT, CAIRN_FAILED_PRECONDITION,
            "no Cairn daemon found (looked for clusterd in $CAIRN_SBIN, "
            "<cairn dir>/../services/clusterd/, <cairn dir>/../sbin and "
            "/usr/local/sbin)");
    }
    *ret = a;
    return 0;
}

/* ---- in the forked child ----------------------------------------------- */

/* stdin /dev/null, stdout and stderr to log; default signal handling. */
static void s_child_stdio(const char *log)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 ||
        dup2(fd, 2) < 0)
        _exit(126);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
}

/* Joins the node's cgroups and enters its namespace. */
static void s_child_join(const json_t *node)
{
    char file[PATH_MAX + 32], pid[32];
    size_t i;
    json_t *cg;
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    json_array_foreach(json_object_get(node, "cgroup_paths"), i, cg) {
        snprintf(file, sizeof(file), "%s/cgroup.procs", json_string_value(cg));
        cairn_error_t e;
        if (hx_write_knob(file, pid, &e) < 0) {
            dprintf(2, "cairn cluster up: cannot join cgroup: %s\n", e.message);
            _exit(127);
        }
    }
    const char *ns = hx_jstr(node, "netns");
    if (!ns)
        return;
    snprintf(file, sizeof(file), HX_NETNS_DIR "/%s", ns);
    int nfd = open(file, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
        dprintf(2, "cairn cluster up: cannot enter netns %s: %m\n", file);
        _exit(127);
    }
}

/* The node's daemons are what keeps it in the cluster: when the node's
 * memory runs out, the kernel is to kill the job that outgrew it, never
 * them -- as each unit's OOMScoreAdjust=-900 says on a real host. ghostd
 * starts its helpers (and so the jobs) 1000 above its own, within 0..1000.
 * Without the right to lower it (no CAP_SYS_RESOURCE: no root, or a
 * container) the daemons keep the default 0, and the jobs get 1000. */
static void s_child_oom(void)
{
    cairn_error_t e;

    (void)hx_write_knob("/proc/self/oom_score_adj", HX_DAEMON_OOM_ADJ, &e);
}

/* The daemon is not a unit of whatever supervises the harness. */
static void s_child_env(void)
{
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("CAIRN_CLUSTER_TEST_PAUSE");
}

/* Join cgroups and netns, detach, exec. Never returns. */
static void s_child_daemon(const json_t *node, const char *bin,
                           const char *config, const char *log)
{
    char id[16];
    s_child_stdio(log);
    s_child_join(node);
    s_child_oom();
    setsid();
    s_child_env();
    snprintf(id, sizeof(id), "%lld",
             json_integer_value(json_object_get(node, "id")));
    close_range(3, ~0u, 0);
    if (json_is_true(json_object_get(node, "hotplug")))
        /* not in the description: the node says who it is */
        execl(bin, bin, "--config", config, "--node-id", id, "--address",
              hx_jstr(node, "address"), "--name", hx_jstr(node, "name"),
              "--appliance", hx_jstr(node, "appliance"), (char *)NULL);
    else
        execl(bin, bin, "--config", config, "--node", id, (char *)NULL);
    dprintf(2, "cairn cluster up: exec %s: %m\n", bin);
    _exit(127);
}

/* ---- starting ---------------------------------------------------------- */

int hx_spawn_service(const json_t *node, json_t *svc, const char *config,
                     cairn_error_t *err)
{
    char log[PATH_MAX + 64], sock[PATH_MAX + 64], state;
    const char *rundir = hx_jstr(node, "rundir"), *name = hx_jstr(svc, "name");
    unsigned long long start = 0;
    snprintf(log, sizeof(log), "%s/%s.log", rundir, name);
    snprintf(sock, sizeof(sock), "%s/%s.sock", rundir, name);
    unlink(sock);
    pid_t pid = fork();
    if (pid < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fork: %m");
    if (pid == 0)
        s_child_daemon(node, hx_jstr(svc, "binary"), config, log);
    hx_proc_stat(pid, &state, &start);
    json_object_set_new(svc, "pid", json_integer(pid));
    json_object_set_new(svc, "start_time", json_integer((json_int_t)start));
    return 0;
}

int hx_spawn_node(json_t *node, const char *config, cairn_error_t *err)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        int r = hx_spawn_service(node, svc, config, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int hx_spawn_all(json_t *st, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        int r = hx_spawn_node(node, hx_jstr(st, "config"), err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- waiting ----------------------------------------------------------- */

/* The last 3 lines of a log, on one line, into out. */
static void s_log_tail(const char *path, char *out, size_t size)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    if (fd >= 0) {
        off_t end = lseek(fd, 0, SEEK_END);
        off_t from =
            end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
        n = pread(fd, buf, sizeof(buf) - 1, from);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    char *p = buf + (n > 0 ? n : 0);
    for (int lines = 0; p > buf; p--)
        if (p[-1] == '\n' && ++lines == 3)
            break;
    hx_one_line(p, out, size);
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
static int s_check_daemon(const json_t *node, const json_t *svc,
                          cairn_error_t *err)
{
    char path[PATH_MAX + 64], tail[600], how[96];
    const char *rundir = hx_jstr(node, "rundir"), *name = hx_jstr(svc, "name");
    pid_t pid = (pid_t)json_integer_value(json_object_get(svc, "pid"));
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        snprintf(path, sizeof(path), "%s/%s.log", rundir, name);
        s_log_tail(path, tail, sizeof(tail));
        s_exit_text(status, how, sizeof(how));
        cairn_error_set(
            err, -ECHILD, CAIRN_UNAVAILABLE,
            "%s of node %lld (pid %d) %s before serving; last lines of %s: %s",
            name, json_integer_value(json_object_get(node, "id")), (int)pid,
            how, path, tail);
        return -1;
    }
    /* A socket file is not enough: one left by a killed daemon of the same
     * node (node restart) stays until the new one binds over it. */
    snprintf(path, sizeof(path), "ipc://%s/%s.sock", rundir, name);
    return cairn_endpoint_probe(path, name, 0, NULL) == 0 ? 1 : 0;
}

/* One pass over every daemon: how many do not serve yet (the first of
 * them in *ret_late), or -ECHILD when one died. */
static ssize_t s_pending(const json_t *nodes, const json_t **ret_late_node,
                         const json_t **ret_late_svc, cairn_error_t *err)
{
    size_t pending = 0, i, j;
    json_t *node, *svc;
    json_array_foreach(nodes, i, node) {
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            int r = s_check_daemon(node, svc, err);
            if (r < 0)
                return -ECHILD;
            if (r == 0 && !pending++) {
                *ret_late_node = node;
                *ret_late_svc = svc;
            }
        }
    }
    return (ssize_t)pending;
}

int hx_wait_ready(const json_t *nodes, int timeout_ms, cairn_error_t *err)
{
    uint64_t deadline = cairn_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        const json_t *node = NULL, *svc = NULL;
        ssize_t pending = s_pending(nodes, &node, &svc, err);
        if (pending <= 0)
            return (int)pending;
        if (cairn_ms_left(deadline) == 0)
            return cairn_error_set(
                err, -ETIMEDOUT, CAIRN_TIMEOUT,
                "%zd daemon(s) did not create their ipc socket within "
                "%d ms (first: %s of node %lld)",
                pending, timeout_ms, hx_jstr(svc, "name"),
                json_integer_value(json_object_get(node, "id")));
        hx_sleep_ms(5);
    }
}
