/* verify.h - the restore's verifier: after every restore (unless the
 * caller opts out, ghost-restore --no-verify), each restored process's
 * /proc view is compared with what its image recorded, while every thread
 * of the tree is still held (restore.c, before the tree is let go), so
 * the program has changed nothing yet.
 *
 * This is what makes issue 16's "never silently" hold for the cases
 * nobody listed: a piece of state the image recorded and the restore did
 * not put back shows up as a difference. A difference is either fatal
 * (the restore fails, the tree is killed, the error names the process,
 * what differs, what the image said and what /proc says) or, for what
 * docs/ghost.md's inventory calls cosmetic, listed in the restore's JSON
 * ("verify":{"cosmetic":[...]}) and the restore goes on.
 *
 * Each area of state has one check function (the fd kinds, memory,
 * process-wide state, timers...), listed in verify.c's table; a new piece
 * of state recorded in the image gets its comparison there, in the same
 * change.
 */
#ifndef GHOST_VERIFY_H
#define GHOST_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "engine.h"

#define GHOST_VERIFY_MAX 64   /* differences kept; the rest are counted */

/* One difference between the image and the restored process. */
typedef struct ghost_verify_diff {
    uint32_t pid;              /* the image's pid of the process */
    bool cosmetic;             /* reported, not fatal */
    char what[128];            /* "vma 0x7f..-0x7f.. VmFlags", "fd 4 flags",
                                  "oom_score_adj", "timer 3" */
    char want[192];            /* what the image recorded */
    char got[192];             /* what /proc says now */
} ghost_verify_diff_t;

/* The differences found (owned). */
typedef struct ghost_verify {
    ghost_verify_diff_t *v;    /* at most GHOST_VERIFY_MAX */
    size_t n, cap;
    size_t n_fatal, n_cosmetic;   /* found, kept or not */
} ghost_verify_t;

/* One area's comparison of process pr of the image, restored as `pid`
 * (its pid on this node: read /proc/<pid>/...; threads are held, so
 * per-thread files are stable): each difference through
 * ghost_verify_differ. Returns 0, or -errno only when /proc itself could
 * not be read (the restore then fails with that error: a verifier that
 * cannot look must not say yes). */
typedef int (*ghost_verify_fn)(const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                               cairn_error_t *err);

/* Files one difference (printf-style want and got are the caller's,
 * already formatted). Never fails: a difference beyond GHOST_VERIFY_MAX
 * is counted only. */
void ghost_verify_differ(ghost_verify_t *v, const rst_proc_t *pr, bool cosmetic,
                         const char *what, const char *want, const char *got);

/* Runs every area's check on every process of the tree (pids[i] is the
 * live pid of im->procs[i]). 0 when no fatal difference was found (the
 * cosmetic ones stay in *v for the JSON); -EPROTO with err naming the
 * first fatal difference (and how many more) otherwise; -errno when /proc
 * could not be read. */
int ghost_verify_tree(const rst_image_t *im, const pid_t *pids, ghost_verify_t *v,
                      cairn_error_t *err);

void ghost_verify_free(ghost_verify_t *v);   /* frees v's contents; NULL-safe */

/* ---- dump side: what only the verifier reads ----------------------------
 * The pieces of /proc no restorer reads (yet) are recorded in the
 * verifier's blocks of ghost.proto, so that a later loss shows. */

/* Process.verify_recorded, oom_score_adj, thp_disabled and timers of pid
 * (frozen); *ret_timers is the text pr->timers points to (caller frees).
 * 0 or -errno with err set. */
int ghost_verify_collect_process(pid_t pid, Cairn__Ghost__Process *pr, char **ret_timers,
                                 cairn_error_t *err);

/* Thread.comm of tid into comm[size], which th->comm then points to. */
int ghost_verify_collect_thread(pid_t tid, char *comm, size_t size, Cairn__Ghost__Thread *th,
                                cairn_error_t *err);

#endif
