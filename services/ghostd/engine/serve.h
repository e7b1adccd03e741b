/* serve.h - the tracker of incremental checkpoints: ghost-dump --pid P
 * --serve-fd C (serve.c; docs/ghost.md "Incremental checkpoints").
 *
 * It tracks the tree's writes once (track.h) and stays, holding its
 * userfaultfds; each "checkpoint DIR" line on fd C writes one image into
 * DIR -- a full one first, then deltas holding what changed since the one
 * before -- and answers one JSON line on stdout. The end of C stops it:
 * the tracking is undone, the tree runs on untouched.
 */
#ifndef GHOST_SERVE_H
#define GHOST_SERVE_H

#include <stdint.h>
#include <sys/types.h>

struct ghost_owner;

#define SERVE_COMPACT_EVERY 16u   /* deltas between two full images, default */

typedef struct ghost_serve_opts {
    uint32_t compact_every;       /* at most this many deltas after a full */
    struct ghost_owner *owner;    /* --as: their processes, their files */
    uint64_t ghost_file_max;      /* --ghost-file-max, 0: the default */
} ghost_serve_opts_t;

/* Serves commands from cmd_fd until its end; the exit code of ghost-dump
 * (0: stopped on the end of cmd_fd; 1: the tree is gone). */
int ghost_serve(pid_t pid, int cmd_fd, const ghost_serve_opts_t *o);

#endif
