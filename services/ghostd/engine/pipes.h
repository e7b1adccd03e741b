/* pipes.h - pipes between the processes of a tree (pipes.c): the fd
 * kind FD_PIPE, with the dump's record of which pipes' data is out and
 * the restore's pipe per pipe_id; named FIFOs (fifo.c) share them.
 */
#ifndef GHOST_PIPES_H
#define GHOST_PIPES_H

#include "files.h"

extern const files_kind_t pipes_kind;
extern const files_kind_t fifo_kind;   /* fifo.c */

/* The unread bytes of the pipe or FIFO of f, once per pipe, on the first
 * readable fd of it written: into f->pipe_data (released by
 * pipes_release). Refuses more than a record holds. */
int pipes_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err);
void pipes_release(Cairn__Ghost__Fd *f);

/* A new open file description of the pipe or FIFO of f (made by the plan,
 * which runs first), with f's access mode and status flags, O_CLOEXEC:
 * the fd, or -errno with err set. */
int pipes_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err);

pipes_dump_t *pipes_dump_new(void);
pipes_dump_t *pipes_dump_free(pipes_dump_t *pd); /* NULL-safe; NULL */

void pipes_rst_free(rst_tree_t *t);

#endif
