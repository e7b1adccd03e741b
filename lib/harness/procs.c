/* procs.c - the processes of a cluster: finding them and stopping them.
 *
 * A process belongs to a cluster when it is in one of its namespaces
 * (same namespace inode as /run/netns/cairn-x-k, like `ip netns pids`), in
 * one of its cgroups (cgroup.c), started with `--config <its
 * cluster.xml>`, or recorded in state.json with the same start time -- so
 * a reused pid is never taken for a daemon. Stopping is SIGTERM to all at
 * once, one grace period for all, SIGKILL to the rest, a grace period: a
 * node's daemons stop together, so stopping n of them costs one grace
 * period at most, not n. Pids are reaped when they are ours.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness-private.h"
#include "proc/proc.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

/* ---- one process ------------------------------------------------------- */

int hx_proc_stat(pid_t pid, char *ret_state, unsigned long long *ret_start)
{
    _cleanup_free_ char *buf = NULL;
    char path[64], state = 0;
    unsigned long long start = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int r = cairn_read_file(path, 0, &buf, NULL);
    if (r < 0)
        return r;
    const char *p = strrchr(buf, ')');
    if (!p || !p[1])
        return -EINVAL;
    /* after ")": state (field 3) ... starttime is field 22 */
    if (sscanf(p + 2,
               "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
               "%*s %*s %*s %*s %llu",
               &state, &start) != 2)
        return -EINVAL;
    *ret_state = state;
    *ret_start = start;
    return 0;
}

bool hx_pid_alive(pid_t pid, unsigned long long start)
{
    char state;
    unsigned long long st;
    if (pid <= 0 || hx_proc_stat(pid, &state, &st) < 0)
        return false;
    if (proc_state_exited(state))
        return false;
    return start == 0 || st == start;
}

/* Reaps pid if it is our child and has exited; ignores everything else. */
static void s_reap(pid_t pid)
{
    while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
        ;
}

/* ---- sets of processes ------------------------------------------------- */

int hx_pids_add(hx_pids_t *s, pid_t pid)
{
    if (pid <= 0 || pid == getpid())
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == pid)
            return 0;
    if (CAIRN_GROW(s->v, s->cap, s->n + 1, 32) < 0)
        return -ENOMEM;
    s->v[s->n++] = pid;
    return 0;
}

void hx_pids_free(hx_pids_t *s)
{
    free(s->v);
    *s = (hx_pids_t){ 0 };
}

size_t hx_wait_gone(const hx_pids_t *s, int ms)
{
    uint64_t deadline = cairn_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    for (;;) {
        size_t alive = 0;
        for (size_t i = 0; i < s->n; i++) {
            s_reap(s->v[i]);
            alive += hx_pid_alive(s->v[i], 0);
        }
        if (alive == 0 || cairn_ms_left(deadline) == 0)
            return alive;
        hx_sleep_ms(10);
    }
}

/* sig to every one of s that still runs, all at once; how many were. */
static size_t s_signal_all(const hx_pids_t *s, int sig)
{
    size_t signalled = 0;
    for (size_t i = 0; i < s->n; i++)
        if (hx_pid_alive(s->v[i], 0) && kill(s->v[i], sig) == 0)
            signalled++;
    return signalled;
}

size_t hx_stop_all(const hx_pids_t *s, int term_ms, size_t *ret_running)
{
    size_t running = s_signal_all(s, SIGTERM), killed = 0;
    /* one deadline for all: they stop in parallel, not one after another */
    if (running > 0 && hx_wait_gone(s, term_ms) > 0) {
        killed = s_signal_all(s, SIGKILL);
        hx_wait_gone(s, HX_KILL_GRACE_MS);
    }
    if (ret_running)
        *ret_running = running;
    return killed;
}

size_t hx_kill_all(const hx_pids_t *s)
{
    size_t signalled = 0;
    hx_stop_all(s, HX_TERM_GRACE_MS, &signalled);
    return signalled;
}

/* ---- finding them ------------------------------------------------------ */

bool hx_cmdline_has_config(const char *argv, size_t len, const char *config)
{
    for (size_t i = 0; i < len; i += strlen(argv + i) + 1) {
        const char *a = argv + i;
        if (strncmp(a, "--config=", 9) == 0 && strcmp(a + 9, config) == 0)
            return true;
        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) &&
            i + strlen(a) + 1 < len && strcmp(a + strlen(a) + 1, config) == 0)
            return true;
    }
    return false;
}

/* The identities (dev, inode) of the namespaces named in netns. */
static size_t s_netns_ids(const json_t *netns, struct stat *out, size_t max)
{
    size_t n = 0, i;
    json_t *ns;
    json_array_foreach(netns, i, ns) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), HX_NETNS_DIR "/%s", json_string_value(ns));
        if (n < max && stat(path, &out[n]) == 0)
            n++;
    }
    return n;
}

/* True if process `pid` (a /proc entry) is in one of the n namespaces. */
static bool s_in_netns(const char *pid, const struct stat *ids, size_t n)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%s/ns/net", pid);
    if (n == 0 || stat(path, &st) < 0)
        return false;
    for (size_t k = 0; k < n; k++)
        if (st.st_dev == ids[k].st_dev && st.st_ino == ids[k].st_ino)
            return true;
    return false;
}

/* True if process `pid` (a /proc entry) was started with config. */
static bool s_has_config(const char *pid, const char *config)
{
    _cleanup_free_ char *argv = NULL;
    char path[300];
    size_t len = 0;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    return cairn_read_file(path, 0, &argv, &len) == 0 && len > 0 &&
           hx_cmdline_has_config(argv, len, config);
}

void hx_find_procs(const json_t *netns, const char *config, hx_pids_t *pids)
{
    struct stat ids[HARNESS_MAX_NODES + 8];
    size_t nns = s_netns_ids(netns, ids, sizeof(ids) / sizeof(ids[0]));
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strspn(e->d_name, "0123456789") != strlen(e->d_name))
            continue;
        if (s_in_netns(e->d_name, ids, nns) ||
            (config && s_has_config(e->d_name, config)))
            hx_pids_add(pids, atoi(e->d_name));
    }
    if (d)
        closedir(d);
}
