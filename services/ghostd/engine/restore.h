/* restore.h - the restore side of the ghost engine: bring a checkpointed
 * process back to life from an image stream (image.h).
 *
 * ghost_restore reads and validates the whole image, stages the page data
 * in a memfd, creates the process with clone3 (set_tid = the original pid
 * unless new_pid), lets it restore its fds, cwd and handlers in C, then
 * jumps into the libc-free restorer (restorer/) which rebuilds the address
 * space and enters every thread through a crafted rt_sigreturn frame. The
 * caller is the process's ptrace tracer throughout (PTRACE_O_EXITKILL), so
 * a restore that fails - or a caller that dies - never leaves a
 * half-restored process: whatever was made is killed.
 *
 * Scope: one process (single- or multi-threaded); an image of a process
 * tree is refused with UNSUPPORTED.
 */
#ifndef GHOST_RESTORE_H
#define GHOST_RESTORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

typedef struct ghost_restore_opts {
    bool new_pid;           /* a fresh pid instead of the original one */
    uint32_t timeout_ms;    /* for the process to reach its target; 0 = 30 s */
} ghost_restore_opts_t;

typedef struct ghost_restore_stats {
    pid_t pid;              /* the restored process */
    pid_t original_pid;     /* its pid at dump time */
    bool same_pid;          /* pid == original_pid */
    uint64_t image_bytes;   /* bytes of the stream consumed */
    uint64_t pages;         /* pages restored */
    uint32_t processes;     /* processes restored */
    uint32_t threads;       /* threads restored */
    uint64_t restore_us;    /* from the first byte read until it runs */
} ghost_restore_stats_t;

/* Restores the image read from in_fd (file, pipe or socket; stays the
 * caller's). On success the process runs detached from the caller (still
 * its child until the caller exits: ghost-restore exits right away) and
 * *ret_stats is filled. Errors, with err set to the precise reason:
 *   -EBADMSG  INVALID_ARGUMENT / BAD_VERSION: the image is malformed;
 *   -EEXIST   ALREADY_EXISTS: the original pid (or a thread id) is taken
 *             and new_pid is false; nothing was made;
 *   -ENOTSUP  UNSUPPORTED / FAILED_PRECONDITION: the image cannot be
 *             restored here (other kernel, CPU features, missing file...);
 *   other     SYSTEM / INTERNAL: a step failed; the process was killed. */
int ghost_restore(int in_fd, const ghost_restore_opts_t *opts,
                  ghost_restore_stats_t *ret_stats, cairn_error_t *err);

#endif
