/* ghostfile.h - open files unlinked from every directory ("ghost files",
 * as CRIU calls them), both directions (ghostfile.c): the fd kind
 * FD_GHOST_FILE, whose contents travel in the image.
 */
#ifndef GHOST_GHOSTFILE_H
#define GHOST_GHOSTFILE_H

#include "files.h"

/* The contents of an unlinked file go into the image up to this many
 * bytes by default (ghost-dump --ghost-file-max): a scratch or lock file
 * a program made and unlinked is small; a bigger one is refused, naming
 * its size and the limit, rather than making every checkpoint of it
 * that much bigger unasked. */
#define GHOST_FILE_MAX_DEFAULT (1ull << 20)

extern const files_kind_t ghostfile_kind;

void ghostfile_rst_free(rst_tree_t *t);

#endif
