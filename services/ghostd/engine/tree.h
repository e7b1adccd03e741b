/* tree.h - the process tree: its members, sessions and groups (tree.c).
 *
 * Dump side: list a tree, tell a member that exited, one that shares its
 * parent's memory. Restore side: check the image's tree, decide each
 * process's session and group before anything is made, recreate them in
 * the children, and tell whether the image's ids are free.
 */
#ifndef GHOST_TREE_H
#define GHOST_TREE_H

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* root and all its descendants, parents first; (*ret)[i*2+1] is the
 * parent of (*ret)[i*2]. *ret is the caller's. */
int tree_list(pid_t root, pid_t **ret, size_t *ret_n, cairn_error_t *err);

/* -EBUSY if pid shares its memory with its parent (a vfork child that
 * has not called exec yet, CLONE_VM): not restorable. */
int tree_own_memory(pid_t parent, pid_t pid, cairn_error_t *err);

/* Whether pid (a process or a thread) has exited and been reaped. */
bool tree_vanished(pid_t pid);

/* Whether it has exited: reaped, or a zombie. */
bool tree_gone(pid_t pid);

/* ---- restore ----------------------------------------------------------- */

/* Index of the process of im whose pid is `pid`, -1 if none. */
int tree_index_of(const rst_image_t *im, uint32_t pid);

/* Links every process of im to its parent: the root first (ppid 0),
 * every other one after its parent; pids unique (at: for messages). */
int tree_check_image(rst_image_t *im, uint64_t at, cairn_error_t *err);

/* Whether every id of the image is free (same-pid restore only): all or
 * nothing, checked before anything is made. */
int tree_check_ids(const rst_image_t *im, cairn_error_t *err);

/* The session and group of every process (t->jobs), or a refusal of what
 * fork cannot recreate; before anything is made. */
int tree_plan_jobs(rst_tree_t *t, cairn_error_t *err);

/* clone3 as a fork: set_tid = want (0: any pid). Returns as fork does. */
pid_t tree_fork_pid(pid_t want);

/* In process i's libc stage (each fails the child on error): its own
 * session or group; its children forked, each running child_main; the
 * group led by another process joined (after the barrier). The
 * controlling terminal is tty.c's. */
void tree_child_session(const rst_tree_t *t, size_t i);
void tree_child_fork_children(rst_tree_t *t, size_t i,
                              void (*child_main)(rst_tree_t *t, size_t i));
void tree_child_join_group(const rst_tree_t *t, size_t i);

#endif
