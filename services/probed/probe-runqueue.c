/* probe-runqueue.c - the "runqueue" probe: how many tasks are runnable on
 * the node (runnable).
 *
 * With a node cgroup: the threads of its cpu level and every cgroup below
 * it (v1 `tasks`, v2 `cgroup.threads`) whose /proc/<tid>/stat state is R.
 * Without: the running count of /proc/loadavg ("R/T"). Either way the
 * sampling thread itself, running while it counts, is left out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "util/cleanup.h"

typedef struct s_count {
    const probe_env_t *env;
    uint32_t running;
} s_count_t;

static int s_count_dir(const char *root, const char *dir, void *ud)
{
    s_count_t *c = ud;
    _cleanup_free_ char *tids = NULL;
    const char *file = c->env->cg->version == NODECG_V2 ? "cgroup.threads" : "tasks";

    if (nodecg_read(root, dir, file, &tids) < 0)
        return 0;
    for (char *p = tids, *end; *p; p = end) {
        long tid = strtol(p, &end, 10);
        if (end == p)
            break;
        char state;
        uint64_t ticks;
        if (tid != c->env->self_tid && nodecg_pid_stat(root, tid, &state, &ticks) == 0 &&
            state == 'R')
            c->running++;
    }
    return 0;
}

static int s_host(const probe_env_t *env, uint32_t *ret)
{
    _cleanup_free_ char *t = NULL;
    unsigned running, total;
    int r = nodecg_read(env->root, "/proc", "loadavg", &t);

    if (r < 0)
        return r;
    if (sscanf(t, "%*f %*f %*f %u/%u", &running, &total) != 2)
        return -EINVAL;
    *ret = env->self_tid && running > 0 ? running - 1 : running;
    return 0;
}

static int s_sample(void *state, const probe_env_t *env, loadvec_t *v,
                    cairn_error_t *err)
{
    (void)state;
    if (*env->cg->cpu) {
        s_count_t c = { .env = env };
        nodecg_walk(env->root, env->cg->cpu, s_count_dir, &c);
        v->runnable = c.running;
        return 0;
    }
    uint32_t n;
    int r = s_host(env, &n);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot read /proc/loadavg: %s",
                               strerror(-r));
    v->runnable = n;
    return 0;
}

const probe_ops_t probe_runqueue = {
    .name = "runqueue",
    .sample = s_sample,
};
