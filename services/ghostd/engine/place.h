/* place.h - where a restored tree lives: a transient systemd scope, or the
 * cgroup the helper was started in.
 *
 * ghost-restore calls ghost_place_scope before it makes anything, so the
 * helper itself sits in the target cgroup when it forks the tree: every
 * process of the tree is born there and none can escape to the helper's
 * old cgroup (ghostd.service's), whose stop would kill it. Without a scope
 * the tree is born in the helper's cgroup, which is ghostd's (on a local
 * cluster, the node's). ghost_place_cgroup_of names where a process is, for
 * the helper's JSON line. See docs/ghost.md, "Where restored processes
 * live".
 */
#ifndef GHOST_PLACE_H
#define GHOST_PLACE_H

#include <stddef.h>
#include <sys/types.h>

#include "cairn/error.h"

/* Asks systemd (system bus, else its private socket) for a transient scope
 * `unit` in `slice` holding the calling process, and waits until the
 * kernel shows us in it. 0, or -errno with err set: -ENOTSUP
 * (UNSUPPORTED) when built without libsystemd, -EHOSTUNREACH (UNAVAILABLE)
 * when systemd cannot be reached, refuses, or does not move us within 5 s. */
int ghost_place_scope(const char *unit, const char *slice,
                      const char *description, cairn_error_t *err);

/* pid's cgroup path (as /proc/PID/cgroup names it) in out: the unified
 * hierarchy's when it is not "/", else systemd's named v1 hierarchy's,
 * else the cpu controller's, else "/". 0 or -errno (out untouched). */
int ghost_place_cgroup_of(pid_t pid, char *out, size_t size);

/* A job's own sub-cgroup (ghost-init --cgroup NAME, docs/jobs.md): in
 * every mounted hierarchy (v1 controllers, the named systemd one, v2)
 * where the caller is not in the root cgroup, makes <its cgroup>/NAME
 * (0755) and moves the caller there, so what it forks next is born in the
 * job's cgroup under the node's, with an eighth of a daemon's CPU weight
 * (cpu.shares 128, or cpu.weight 12 where v2's cpu controller is on: the
 * node's daemons keep answering under a full load of jobs). NAME is one
 * path component. 0 (also when
 * every hierarchy had the caller at its root: nothing to make), or -errno
 * with err set: -EINVAL (INVALID_ARGUMENT) for a bad NAME, else the mkdir's
 * or the move's errno (FAILED_PRECONDITION); a move that fails halfway
 * leaves the caller where it was in the hierarchies not reached yet. */
int ghost_place_enter_cgroup(const char *name, cairn_error_t *err);

/* Removes the NAME sub-cgroups ghost_place_enter_cgroup would make under
 * the caller's cgroups (ghostd, once the job's last process is gone).
 * 0 when none is left, else the first rmdir's -errno (-EBUSY: processes
 * are still in one); missing ones are not an error. */
int ghost_place_remove_cgroup(const char *name);

/* SIGKILLs every process in the NAME sub-cgroups of the caller's cgroups
 * until they are empty (1 s at most), then removes them: a job's stale
 * copy, whose job.json names another node now (restart.h). The number of
 * processes signalled (0: none there, or no such cgroup), or -errno. */
int ghost_place_kill_cgroup(const char *name);

/* The OOM score ghostd asks of a helper -- and so of the jobs and the
 * restored trees it makes -- travels in the helper's environment under
 * this name (ghostd-manager.c says why). */
#define GHOST_HELPER_OOM_ENV "CAIRN_HELPER_OOM_ADJ"

/* A helper's first step: takes the oom_score_adj GHOST_HELPER_OOM_ENV
 * names (raising one's own needs no privilege) and removes the variable
 * from the environment, so a job never sees it. 0 also when it is not
 * set (run by hand); -errno with err set when the value is not a number
 * in -1000..1000 or cannot be written. */
int ghost_place_take_oom(cairn_error_t *err);

#endif
