/* reasons.h - every reason a process tree cannot be dumped, or an image
 * cannot be restored here, found in one look.
 *
 * A check that stopped at its first refusal answered "why won't it move"
 * one reason at a time: remove the socket, try again, learn about the
 * device file. The checks (dump.c's check phase with creds.c, mem.c,
 * files.c and the fd kinds; restore.c's check) file each refusal here and
 * go on; what is not a refusal -- a system call that failed, a process
 * that went away while it was looked at (the tree is looked at again) --
 * still ends the check at once.
 *
 * A refusal is an error whose code is UNSUPPORTED, FAILED_PRECONDITION or
 * PERMISSION_DENIED: what is wrong with the process, the image or this
 * node, not with the engine. The first reason found is the check's error,
 * so a caller that reads only the error reads what it always did. The
 * helpers print the list in their error line (report.h). The list keeps
 * GHOST_REASONS_MAX reasons and counts the rest: a process with 10000
 * sockets is refused for 10000 reasons, and the first 32 say enough.
 */
#ifndef GHOST_REASONS_H
#define GHOST_REASONS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cairn/error.h"

#define GHOST_REASONS_MAX 32

/* One refusal. */
typedef struct ghost_reason {
    int ret;               /* the -errno the check returned */
    int code;              /* cairn_code_t: a refusal code */
    pid_t pid;             /* the process it is about (the image's pid on
                              the restore side); 0: the image or the node */
    char what[128];        /* which part: "fd 5", "thread 812", "memory at
                              0x7f0000000000", "process", "file /x", "room" */
    char message[CAIRN_ERROR_MESSAGE_MAX];   /* the error's message */
} ghost_reason_t;

/* The reasons found so far, in the order found. */
typedef struct ghost_reasons {
    ghost_reason_t *v;     /* at most GHOST_REASONS_MAX (owned) */
    size_t n, cap;         /* kept, allocated */
    size_t total;          /* found, kept or not */
} ghost_reasons_t;

/* Whether the check's failure (r, err) is a refusal to be listed: a
 * refusal code, and not -ESRCH (a process gone or a zombie: the tree
 * moved under the check, which looks again). */
bool ghost_reason_is_refusal(int r, const cairn_error_t *err);

/* Files the refusal (r, err) about pid and printf-style `what` in rs and
 * returns 0, so the check goes on; returns r unchanged when it is no
 * refusal (ghost_reason_is_refusal) or rs is NULL (the first refusal ends
 * the check). A reason beyond GHOST_REASONS_MAX, or one that finds no
 * memory, is counted only. */
int ghost_reason_add(ghost_reasons_t *rs, int r, const cairn_error_t *err, pid_t pid,
                     const char *what_fmt, ...) __attribute__((format(printf, 5, 6)));

/* The first reason as the check's error: its -errno with err set to it;
 * 0 (err untouched) when rs holds none. */
int ghost_reasons_first(const ghost_reasons_t *rs, cairn_error_t *err);

/* Makes the refusal (r, err), which ended the check, the first reason
 * (moved to the front when it was found already, else added there): the
 * error and the list say the same first.
 * Any refusal code counts here, -ESRCH too (a zombie that stayed one);
 * an error that is no refusal changes nothing. */
void ghost_reasons_put_first(ghost_reasons_t *rs, int r, const cairn_error_t *err,
                             pid_t pid, const char *what);

/* Drops the reasons found after a mark (n and total saved before): those
 * about a process that left the tree meanwhile. */
void ghost_reasons_cut(ghost_reasons_t *rs, size_t n, size_t total);

/* Empties rs, keeping its memory. */
void ghost_reasons_clear(ghost_reasons_t *rs);

/* Frees rs's memory; rs is empty afterwards. NULL-safe. */
void ghost_reasons_free(ghost_reasons_t *rs);

#endif
