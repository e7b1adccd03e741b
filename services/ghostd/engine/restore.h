/* restore.h - the restore side of the ghost engine: bring a checkpointed
 * process tree back to life from an image stream (image.h).
 *
 * ghost_restore reads and validates the whole image, stages the page data
 * in a memfd (or leaves it in an image file, or reads one process's
 * straight into place from a stream: restore-inplace.h), creates the root with clone3 (set_tid = the original pid
 * unless new_pid); every process creates its own children the same way
 * (so each is the child of its restored parent), takes its session and
 * process group, restores its fds (pipes between members, open file
 * descriptions shared by dup or fork, memfds and their mappings shared
 * again),
 * cwd and handlers in C, then jumps into the libc-free restorer
 * (restorer/) which rebuilds the address space and enters every thread
 * through a crafted rt_sigreturn frame. The caller is the ptrace tracer
 * of every task of the tree throughout (PTRACE_O_EXITKILL), so a restore
 * that fails - or a caller that dies - never leaves a half-restored tree:
 * whatever was made is killed.
 *
 * Scope: a tree of processes (single- or multi-threaded each), sessions
 * and groups led from inside the tree; a root whose session or group
 * leader is outside the tree stays in the caller's session and group,
 * and so do members that shared them with the root. Anything else
 * (e.g. a member in a session its parent is not in, without leading it)
 * is refused with UNSUPPORTED before anything is made.
 */
#ifndef GHOST_RESTORE_H
#define GHOST_RESTORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "lazy.h"
#include "reasons.h"
#include "verify.h"

struct ghost_owner;   /* owner.h */

typedef struct ghost_restore_opts {
    bool new_pid;           /* a fresh pid instead of the original one */
    uint32_t timeout_ms;    /* for the process to reach its target; 0 = 30 s */
    bool pread_pages;       /* the restorer preads pages straight into place,
                               as where process_vm_writev is refused (tests) */
    const struct ghost_owner *owner;  /* the image is a user's who is not
                               root: every process in it must be theirs
                               (owner.h), else PERMISSION_DENIED before
                               anything is planned; NULL: root's image */
    const char *image_path; /* the image's file, when it is one: a delta
                               (incremental checkpoints) finds its parents
                               beside it (chain.h); NULL: a stream, which
                               must stand alone */
    ghost_reasons_t *reasons; /* ghost_restore_check, out when not NULL:
                               every refusal found (reasons.h), the first
                               being the error */
    bool postcopy;          /* a post-copy image: its lazy pages come from
                               pages_fd (lazy.h) after the tree runs */
    int pages_fd;           /* with postcopy: the page source (the caller's;
                               it must stay open until ghost_restore_lazy) */
    bool no_verify;         /* skip the verifier (verify.h): the tree is let
                               go without its /proc compared with the image */
    bool exiting;           /* the caller exits right after a success: the
                               pages read into place (restore-inplace.h) are
                               left mapped for its exit to drop, not
                               unmapped first (512 MiB of small pages:
                               15-160 ms before the caller's answer) */
} ghost_restore_opts_t;

/* One restored process. */
typedef struct ghost_restore_member {
    pid_t pid;              /* its pid now (inside the job for a job) */
    pid_t host_pid;         /* its pid on the node (pid unless a job) */
    pid_t original_pid;     /* its pid at dump time */
    pid_t ppid;             /* its parent's pid now, 0 for the root */
    uint32_t threads;       /* threads restored */
    bool stopped;           /* restored in a job-control stop, as dumped */
} ghost_restore_member_t;

/* The steps of a restore, in order: the image read (until its end came:
 * with a stream, while the dump writes it); the checks and the plan; the
 * tree made until every process passed the barrier; until every thread
 * was held past its rt_sigreturn (the restorers' work: vmas, pages,
 * threads); the regions unmapped and the tree let go; of that, the
 * verifier's comparison of the tree with its image (verify.h). */
enum ghost_restore_step {
    GHOST_RESTORE_LOAD, GHOST_RESTORE_PLAN, GHOST_RESTORE_SPAWN, GHOST_RESTORE_HELD,
    GHOST_RESTORE_RELEASE, GHOST_RESTORE_VERIFY, GHOST_RESTORE_STEPS
};

/* Their names in JSON ("steps_us"). */
extern const char *const ghost_restore_step_names[GHOST_RESTORE_STEPS];

typedef struct ghost_restore_stats {
    pid_t pid;              /* the restored root (a job's: 1, inside) */
    pid_t host_pid;         /* the restored root's pid on the node (pid
                               unless a job) */
    bool job;               /* a job image: restored into a pid and mount
                               namespace of its own, every pid as it was */
    pid_t original_pid;     /* its pid at dump time */
    bool same_pid;          /* pid == original_pid */
    uint64_t image_bytes;   /* bytes of the stream consumed */
    uint64_t pages;         /* pages restored */
    uint32_t processes;     /* processes restored */
    uint32_t threads;       /* threads restored */
    uint32_t stopped;       /* of the processes, those restored stopped */
    uint64_t restore_us;    /* from the first byte read until it runs */
    uint64_t steps_us[GHOST_RESTORE_STEPS]; /* where restore_us went
                               (ghost_restore_step_names) */
    uint64_t tail_us;       /* of it, from the image's end record until it
                               runs: what a restore adds to a migration's
                               freeze once the last byte came */
    uint64_t placed_bytes;  /* page bytes read straight into place
                               (restore-inplace.h), not staged */
    ghost_restore_member_t *members;   /* [processes], image order (root
                                          first); caller frees with free() */
    uint64_t lazy_pages;    /* post-copy: of pages, those still to come */
    ghost_verify_t verify;  /* the verifier's differences, all cosmetic on
                               success (empty with no_verify); the caller
                               frees them with ghost_verify_free */
    struct ghost_lazy *lazy; /* post-copy: the window still open (the tree
                               runs and its lazy pages come): the caller
                               must end it with ghost_restore_lazy */
} ghost_restore_stats_t;

/* How a post-copy window ended. */
typedef struct ghost_lazy_stats {
    lazy_srv_stats_t srv;   /* the page server's figures */
    bool killed;            /* the tree was killed: its pages could not
                               all come (err says why) */
} ghost_lazy_stats_t;

/* Ends a post-copy restore's window (stats->lazy, taken over and freed):
 * the tree runs, traced by the caller (if the caller dies, the kernel
 * kills the tree: it must never run with pages missing), while every
 * lazy page comes from the page source; then it is let go. If the source
 * fails (gone, an error, pages it never sent) the tree is killed. 0, or
 * -errno with err set and *ret (may be NULL) saying so. */
int ghost_restore_lazy(struct ghost_lazy *lz, ghost_lazy_stats_t *ret, cairn_error_t *err);

/* Restores the image read from in_fd (file, pipe or socket; stays the
 * caller's). On success the whole tree runs detached from the caller (the
 * root is still its child until the caller exits: ghost-restore exits
 * right away) and *ret_stats is filled (members owned by the caller).
 * A post-copy image needs opts->postcopy and its page source; the tree
 * then runs still traced, its lazy pages coming, until the caller ends
 * the window with ghost_restore_lazy (stats->lazy). A post-copy image
 * without a page source is refused (FAILED_PRECONDITION), and so is a
 * page source for an image that is not (INVALID_ARGUMENT).
 * Errors, with err set to the precise reason:
 *   -EBADMSG  INVALID_ARGUMENT / BAD_VERSION: the image is malformed;
 *   -EEXIST   ALREADY_EXISTS: the original pid of a process (or a thread
 *             id) is taken and new_pid is false; nothing was made;
 *   -ENOTSUP  UNSUPPORTED / FAILED_PRECONDITION: the image cannot be
 *             restored here (other kernel, CPU features, missing file,
 *             a session or group that cannot be recreated...);
 *   -ENOMEM   FAILED_PRECONDITION: no room here for its pages (room.h);
 *   other     SYSTEM / INTERNAL: a step failed; the whole tree was killed. */
int ghost_restore(int in_fd, const ghost_restore_opts_t *opts,
                  ghost_restore_stats_t *ret_stats, cairn_error_t *err);

/* Reads and checks the whole image from in_fd as ghost_restore would (of
 * opts, only owner and reasons count; may be NULL) and plans its restore
 * -- the files it names opened, its layout checked against this host and
 * its CPU, the room for its pages (room.h) -- but makes no process and
 * changes nothing: what ghost_restore would refuse before making
 * anything, this refuses with the same error (a taken pid excepted), and
 * every other reason it finds (files missing or changed, the kernel, the
 * room) goes with it into opts->reasons. Page data is
 * skipped, not staged (a pipe is read through). On success *ret_stats has
 * original_pid, image_bytes, pages, processes, threads; same_pid says
 * whether every original pid and thread id is free now (a restore without
 * new_pid would keep them); restore_us is the time the check took; pid 0,
 * members NULL. */
int ghost_restore_check(int in_fd, const ghost_restore_opts_t *opts,
                        ghost_restore_stats_t *ret_stats, cairn_error_t *err);

#endif
