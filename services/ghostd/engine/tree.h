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

/* ---- dump ---------------------------------------------------------- */

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

/* ---- restore ------------------------------------------------------- */

/* Index of the process of im whose pid is `pid`, -1 if none. */
int tree_index_of(const rst_image_t *im, uint32_t pid);

#endif
