/* tty.h - terminals (tty.c): the fd kinds of pseudo-terminals and of
 * terminals outside the tree, and the controlling terminal of each
 * process with its foreground group.
 */
#ifndef GHOST_TTY_H
#define GHOST_TTY_H

#include "files.h"
#include "reasons.h"

extern const files_kind_t tty_kind;        /* ptys, terminals outside */
extern const files_kind_t tty_ctty_kind;   /* /dev/tty */

/* ---- dump -------------------------------------------------------------- */

/* Refuses (into rs) a process of the tree rooted at root whose
 * controlling terminal cannot come back: its session led from outside
 * the tree (a job of an interactive shell: a session cannot be joined),
 * or a terminal that is not a pty or a virtual console. st is its stat. */
int tty_check_process(pid_t pid, pid_t root, const proc_stat_t *st, ghost_reasons_t *rs,
                      cairn_error_t *err);

/* The controlling terminal and its foreground group into pr (the group
 * named as the image names pids). */
void tty_collect_process(const dump_tree_t *tree, const proc_stat_t *st,
                         Cairn__Ghost__Process *pr);

/* ---- restore ----------------------------------------------------------- */

void tty_rst_free(rst_tree_t *t);

struct ghost_verify;
/* The verifier's look at process pr, restored as pid (verify.c's table):
 * its controlling terminal and foreground group, and each terminal fd --
 * its path, and for a master its pair's index, settings, packet mode and
 * lock -- against the image. 0, or -errno when /proc could not be read. */
int tty_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
               struct ghost_verify *v, cairn_error_t *err);

/* Restore check (ghost-restore --check): each terminal of pr held outside
 * the image (a slave whose master is not in it, a session leader's
 * controlling terminal) is still there and is the one the process had;
 * each refusal into rs (reasons.h). */
int tty_check_here(const rst_image_t *im, const rst_proc_t *pr, ghost_reasons_t *rs,
                   cairn_error_t *err);

/* Phase 1 of process i's libc stage, after its own session is made and
 * before it forks: a session leader takes its controlling terminal back
 * (its children inherit it, as they did); a process that had none drops
 * the one it inherited. Fails the child on error. */
void tty_child_ctty(const rst_tree_t *t, size_t i);

/* Phase 2 (every group exists): the session leader gives its terminal's
 * foreground back to the group that had it. Fails the child on error. */
void tty_child_foreground(const rst_tree_t *t, size_t i);

#endif
