/* probe-memory.c - the "memory" probe: the node's memory (limit), what is
 * used of it and what is free.
 *
 * With a node cgroup: v2 memory.max and memory.current, v1
 * memory.limit_in_bytes and memory.usage_in_bytes; used leaves out the
 * inactive file cache (memory.stat inactive_file, v1
 * total_inactive_file), which the kernel drops before it reclaims anything
 * a job needs -- so used is what a policy must not overfill. The limit is
 * never above the host's MemTotal. Without: /proc/meminfo, used =
 * MemTotal - MemAvailable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "util/cleanup.h"

/* MemTotal and MemAvailable in bytes. */
static int s_meminfo(const probe_env_t *env, uint64_t *total, uint64_t *avail)
{
    _cleanup_free_ char *t = NULL;
    int r = nodecg_read(env->root, "/proc", "meminfo", &t);

    if (r == 0)
        r = nodecg_key_u64(t, "MemTotal", total);
    if (r == 0)
        r = nodecg_key_u64(t, "MemAvailable", avail);
    if (r == 0) {
        *total *= 1024;
        *avail *= 1024;
    }
    return r;
}

static int s_cgroup(const probe_env_t *env, uint64_t *limit, uint64_t *used)
{
    const nodecg_t *cg = env->cg;
    bool v2 = cg->version == NODECG_V2;
    _cleanup_free_ char *stat = NULL;
    uint64_t inactive = 0;
    int r = nodecg_read_u64(env->root, cg->mem, v2 ? "memory.max" : "memory.limit_in_bytes",
                            limit);

    if (r == 0)
        r = nodecg_read_u64(env->root, cg->mem,
                            v2 ? "memory.current" : "memory.usage_in_bytes", used);
    if (r == 0 && nodecg_read(env->root, cg->mem, "memory.stat", &stat) == 0)
        nodecg_key_u64(stat, v2 ? "inactive_file" : "total_inactive_file", &inactive);
    if (r == 0)
        *used = *used > inactive ? *used - inactive : 0;
    return r;
}

static int s_sample(void *state, const probe_env_t *env, loadvec_t *v,
                    cairn_error_t *err)
{
    bool cg = *env->cg->mem != '\0';
    uint64_t total, avail, limit, used;
    int r = s_meminfo(env, &total, &avail);

    (void)state;
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot read /proc/meminfo: %s",
                               strerror(-r));
    if (cg && (r = s_cgroup(env, &limit, &used)) < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot read the node cgroup's "
                               "memory under %s: %s", env->cg->mem, strerror(-r));
    if (!cg) {
        limit = total;
        used = total > avail ? total - avail : 0;
    }
    if (limit > total)
        limit = total;
    v->mem_limit_bytes = limit;
    v->mem_used_bytes = used;
    v->mem_free_bytes = limit > used ? limit - used : 0;
    return 0;
}

const probe_ops_t probe_memory = {
    .name = "memory",
    .sample = s_sample,
};
