/* owner.h - whose a process is: the rule the ghost helpers apply when a
 * user who is not root asks for a checkpoint or a restart (ghostd passes
 * `--as UID:GID`), and the rights such a job runs with.
 *
 * ghostd runs as root, and so do its helpers: without this, any local user
 * could have root dump a root process into a file of theirs, or restore an
 * image of their making as uid 0. ghostd says who asked (the kernel's
 * SO_PEERCRED over ipc, the vouching node over CURVE); the helpers hold
 * every process, and every file, to that user's rights. The rule is
 * written down once, in docs/ghost.md ("Who may checkpoint and restart
 * what"); its parts, as the functions below check them:
 *
 *   (a) ids: the real, effective, saved and filesystem uids are all the
 *       user's;
 *   (b) groups: the four gids and every supplementary group are groups the
 *       user holds -- the group the request came with, and those the
 *       node's user database gives the user (getgrouplist);
 *   (c) capabilities: none -- permitted, effective, inheritable and ambient
 *       sets empty (the bounding set only takes away: any is fine);
 *   (d) dump: the process is dumpable, the kernel's own condition for its
 *       user to trace it (one that ran a setuid, setgid or file-capability
 *       program, changed its ids, or said PR_SET_DUMPABLE 0 is not handed
 *       to its user by ghostd either);
 *   (e) restore: seccomp filters only with no_new_privs (the kernel's rule
 *       for an unprivileged process installing one: a filter without it
 *       could fool a setuid program the process runs later);
 *   (f) restore: no hard resource limit above the helper's own (ghostd's:
 *       the node's service limits), which only CAP_SYS_RESOURCE raises.
 *
 * And the rights: a helper working for a user touches files as that user
 * (ghost_owner_fs_enter: fsuid, fsgid and groups are theirs, so the
 * kernel's own permission checks apply), and a restore for a user keeps
 * only the capabilities a restore needs (ghost_owner_restrict_caps): what
 * the image asks for beyond (a)-(f) -- a mapping below mmap_min_addr, an
 * alarm timer, a file only root may open -- the kernel refuses.
 */
#ifndef GHOST_OWNER_H
#define GHOST_OWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "ghost.pb-c.h"
#include "proc/proc.h"

typedef struct ghost_owner {
    uint32_t uid;           /* the user */
    uint32_t gid;           /* the group the request came with */
    uint32_t *groups;       /* every group the user holds, gid first (owned) */
    size_t n_groups;
    uint32_t *saved;        /* the helper's own groups while fs_enter holds
                               (owned), to go back to */
    size_t n_saved;
    bool entered;           /* between fs_enter and fs_leave */
} ghost_owner_t;

/* The user uid with group gid: the groups they hold are gid and those the
 * user database lists for uid's name (none more when uid has no name).
 * -ENOMEM; uid 0 is -EINVAL (root is held to no rule). Free with
 * ghost_owner_free. */
int ghost_owner_init(ghost_owner_t *ret, uint32_t uid, uint32_t gid,
                     cairn_error_t *err);

/* "UID:GID", as the helpers' --as takes it, then ghost_owner_init;
 * -EINVAL (code USAGE) for anything else. */
int ghost_owner_parse(const char *arg, ghost_owner_t *ret, cairn_error_t *err);

/* Frees what o owns (safe on a zeroed owner and twice). */
void ghost_owner_free(ghost_owner_t *o);

/* Whether the user holds group gid. */
bool ghost_owner_holds(const ghost_owner_t *o, uint32_t gid);

/* (a)-(c) on the credentials c of `what` ("process 42"): 0, or -EPERM
 * with code PERMISSION_DENIED naming the first id or set that is not the
 * user's (the helpers add what the refusal means for the request). */
int ghost_owner_check_creds(const ghost_owner_t *o, const proc_creds_t *c,
                            const char *what, cairn_error_t *err);

/* (d) for live process pid: its /proc/PID files belong to the user (the
 * kernel makes them root's while the process is not dumpable; proc(5)).
 * -EPERM (PERMISSION_DENIED), or -errno reading it (-ESRCH when gone). */
int ghost_owner_check_dumpable(const ghost_owner_t *o, pid_t pid,
                               cairn_error_t *err);

/* (a)-(c), (e), (f) on one process record of an image; a record without
 * credentials (an image older than them) would come back as root and is
 * refused. -EPERM (PERMISSION_DENIED) naming the process and why. */
int ghost_owner_check_process(const ghost_owner_t *o,
                              const Cairn__Ghost__Process *p,
                              cairn_error_t *err);

/* File access as the user from now on, for the calling thread and what
 * it makes: groups (every thread: glibc's setgroups), fsgid, fsuid. The
 * helper's groups are kept in o for ghost_owner_fs_leave. -errno (code
 * SYSTEM) if the kernel refuses; then nothing changed. */
int ghost_owner_fs_enter(ghost_owner_t *o, cairn_error_t *err);

/* Back to root's file access (fsuid and fsgid 0, the helper's groups).
 * No-op when not entered. -errno (code SYSTEM) on failure. */
int ghost_owner_fs_leave(ghost_owner_t *o, cairn_error_t *err);

/* Keeps, of this process's capabilities, only those a restore needs: it
 * traces and kills its tree (SYS_PTRACE, KILL), picks pids (set_tid:
 * CHECKPOINT_RESTORE, SYS_ADMIN before 5.9), sets the memory layout and
 * limits (SYS_RESOURCE), installs seccomp filters and traces with them
 * suspended (SYS_ADMIN), and becomes the user (SETUID, SETGID, SETPCAP).
 * Every other one, DAC_OVERRIDE and SYS_RAWIO among them, leaves the
 * permitted, effective and inheritable sets for good. -errno (SYSTEM). */
int ghost_owner_restrict_caps(cairn_error_t *err);

#endif
