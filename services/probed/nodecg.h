/* nodecg.h - the node's cgroup as the probes see it, and the small file
 * readers they share.
 *
 * A node is a cgroup with a CPU quota and a memory limit (a local
 * cluster's harness makes one per node and starts every daemon of the
 * node in it; on a real host a slice may carry the limits). probed finds
 * it from its own place: it walks up from its cgroup, as
 * <root>/proc/self/cgroup names it, to the first level that has a CPU
 * quota (cgroup v2 `cpu.max` not "max", v1 `cpu.cfs_quota_us` not -1) and
 * the first that has a memory limit (v2 `memory.max` not "max", v1
 * `memory.limit_in_bytes` below 2^62). Usage read at that level includes
 * every process below it: the daemons and the jobs' sub-cgroups. A
 * resource without such a level is the host's: the probes read /proc.
 *
 * v2 when <root>/sys/fs/cgroup/cgroup.controllers exists (the harness's
 * rule). On v1 the CPU usage is `cpuacct.usage` when cpuacct is mounted
 * with cpu or puts us at the same path; otherwise (this build machine:
 * cpuacct apart, the node's cgroup only in cpu and memory) it is summed
 * from the times of the processes in the cpu cgroup and below.
 *
 * Every path is relative to a root ("" on a node; a fixture tree in the
 * unit tests), so the same code reads a machine and a fixture.
 */
#ifndef PROBED_NODECG_H
#define PROBED_NODECG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nodecg_version {
    NODECG_NONE = 0,   /* no usable hierarchy: the host's figures */
    NODECG_V1,
    NODECG_V2,
} nodecg_version_t;

typedef struct nodecg {
    nodecg_version_t version;
    char cpu[PATH_MAX];      /* the level with the CPU quota, under the
                              * root ("/sys/fs/cgroup/cpu/cairn/x/2"); ""
                              * when none: the host's CPUs */
    char cpuacct[PATH_MAX];  /* v1: where cpuacct.usage of that level is,
                              * "" when nowhere (sum the processes) */
    char mem[PATH_MAX];      /* the level with the memory limit, "" none */
} nodecg_t;

/* Finds the node's cgroup under root. Never fails: what cannot be read
 * leaves a resource "" (the host's). */
void nodecg_find(const char *root, nodecg_t *ret);

/* One line for the log: where each resource is read. */
const char *nodecg_describe(const nodecg_t *cg, char *buf, size_t size);

/* Reads <root><dir>/<file> whole (NUL-terminated, the caller frees).
 * 0 or -errno. */
int nodecg_read(const char *root, const char *dir, const char *file,
                char **ret);

/* Its first number; -EINVAL when it starts with none ("max"). */
int nodecg_read_u64(const char *root, const char *dir, const char *file,
                    uint64_t *ret);

/* The value of `key` in text made of "key value" lines (cpu.stat,
 * memory.stat) or "Key: value kB" lines (/proc/meminfo: key "MemTotal",
 * value in kB as written). 0 or -ENOENT. */
int nodecg_key_u64(const char *text, const char *key, uint64_t *ret);

/* Calls fn on dir and every directory below it (depth first, at most 4096
 * of them); fn's non-zero return stops the walk and is returned. */
typedef int (*nodecg_dir_fn)(const char *root, const char *dir, void *userdata);
int nodecg_walk(const char *root, const char *dir, nodecg_dir_fn fn,
                void *userdata);

/* /proc/<pid>/stat under root: the state letter and utime + stime +
 * cutime + cstime in clock ticks. 0 or -errno (-EINVAL unparsable). */
int nodecg_pid_stat(const char *root, long pid, char *ret_state,
                    uint64_t *ret_ticks);

#endif
