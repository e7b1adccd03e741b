/* placement.h - where ghostd puts the processes it restores.
 *
 * A restored process must outlive a restart or stop of ghostd, so it never
 * stays in a cgroup that systemd kills with the daemon. Decided once, at
 * start:
 *
 *   scope   ghostd is a systemd service (systemd executed this very process:
 *           $SYSTEMD_EXEC_PID is our pid, and our unit is a .service): each
 *           restore goes to a new transient scope cairn-job-<n>.scope in
 *           cairn.slice, made by the helper before it forks the tree
 *           (engine/place.h). `systemctl restart|stop ghostd` never
 *           touches it; `systemctl stop cairn-job-<n>.scope` ends that job.
 *   inherit anything else (a local cluster's daemon, or a process started by
 *           hand): the tree stays in the cgroup ghostd runs in. On a local
 *           cluster that is the node's cgroup (the harness puts every daemon
 *           of a node there; no daemon has a cgroup of its own); by hand, the
 *           caller's. ghostd logs which at start.
 *
 * docs/ghost.md, "Where restored processes live", says why a scope and not a
 * delegated subtree of ghostd.service.
 */
#ifndef GHOSTD_PLACEMENT_H
#define GHOSTD_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#define GHOSTD_JOB_SLICE "cairn.slice" /* the scopes' slice */

typedef enum ghostd_place_mode {
    GHOSTD_PLACE_INHERIT, /* the helper's cgroup: ghostd's own */
    GHOSTD_PLACE_SCOPE,   /* a transient scope per restore */
} ghostd_place_mode_t;

typedef struct ghostd_placement {
    ghostd_place_mode_t mode; /* decided by ghostd_placement_init */
    char unit[256];           /* our systemd unit, "" when none */
    char cgroup[4096];        /* our own cgroup (engine/place.h's path) */
    const char *why;          /* one phrase for the log and STATUS= */
    uint64_t last_id;         /* the last scope number handed out */
} ghostd_placement_t;

/* Decides p's mode from where and how this process runs. Never fails: what
 * cannot be learnt means `inherit`, and `why` says so. */
void ghostd_placement_init(ghostd_placement_t *p);

/* The next scope's name, cairn-job-<n>.scope, into out (n: CLOCK_BOOTTIME
 * in microseconds, strictly increasing, so unique for the boot even across
 * restarts of ghostd). 0, or -ENAMETOOLONG. */
int ghostd_placement_next_scope(ghostd_placement_t *p, char *out, size_t size);

#endif
