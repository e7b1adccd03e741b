/* chain.h - the parents of a delta image, for its restore (chain.c):
 * incremental checkpoints, docs/ghost.md "Incremental checkpoints".
 *
 * A delta (header version 4) names its parent by file name, in the same
 * directory, and by image_id; the parent may be a delta too, down to a
 * full image. Before the delta itself is loaded, chain_load reads every
 * parent, oldest first, into im->rounds (pages.h, pages_chain_*): the
 * delta's kept_pages then resolve as a pre-copy image's do. A parent
 * missing, corrupt, or not the one the child names refuses the restore,
 * naming that parent.
 */
#ifndef GHOST_CHAIN_H
#define GHOST_CHAIN_H

#include "engine.h"

#define CHAIN_MAX 256u   /* images in one chain at most */

/* If in_fd (the image, at offset 0) is a regular file holding a delta,
 * loads its parents from beside image_path and sets im->chain (in_fd is
 * left at offset 0); otherwise does nothing (a delta without its file --
 * a stream, no path -- is refused by the header check). 0 or -errno with
 * err naming the parent at fault. */
int chain_load(rst_image_t *im, int in_fd, const char *image_path, cairn_error_t *err);

#endif
