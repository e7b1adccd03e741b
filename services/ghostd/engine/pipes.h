/* pipes.h - pipes between the processes of a tree (pipes.c): the fd
 * kind FD_PIPE, with the dump's record of which pipes' data is out and
 * the restore's pipe per pipe_id.
 */
#ifndef GHOST_PIPES_H
#define GHOST_PIPES_H

#include "files.h"

extern const files_kind_t pipes_kind;

pipes_dump_t *pipes_dump_new(void);
pipes_dump_t *pipes_dump_free(pipes_dump_t *pd); /* NULL-safe; NULL */

void pipes_rst_free(rst_tree_t *t);

#endif
