/* unixsk.h - unix sockets of a tree (unixsk.c): the fd kind FD_UNIX, the
 * restore's socket per inode, and the queues sent again once every
 * process exists.
 */
#ifndef GHOST_UNIXSK_H
#define GHOST_UNIXSK_H

#include "files.h"

extern const files_kind_t unixsk_kind;

/* Once every process of the tree exists (the barrier, before any of them
 * goes on): each socket's queue sent again with its credentials (their
 * pids exist now), then the dgram connections, shutdowns and options. */
int unixsk_tree_ready(rst_tree_t *t, cairn_error_t *err);

void unixsk_rst_free(rst_tree_t *t);

/* The verifier's check (verify.c's table): each unix socket of process
 * pr, restored as pid, read again as the dump reads it and compared with
 * its record (type, state, name, connected, shutdown, backlog, options,
 * the queue message by message). */
int unixsk_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                  struct ghost_verify *v, cairn_error_t *err);

#endif
