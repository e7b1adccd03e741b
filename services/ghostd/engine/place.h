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

#endif
