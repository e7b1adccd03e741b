/* migrate.h - moving a running process tree (a job, or a plain process)
 * from this node to another: stop-and-copy, the image streamed from this
 * ghostd to the target's over ZeroMQ, with no file in between.
 *
 * Two sides, each a small state machine in migrate.c:
 *
 *   source (Request{migrate}, from a client):
 *     begin ──ok──► stream ──last chunk answered "runs"──► killing ──► done
 *       │             │ (chunks of 1 MiB, MIGRATE_WINDOW in flight)
 *       │             └─ any failure: resume the tree, abort the target
 *       └─ refused: nothing was frozen
 *     The last chunk's answer lost (timeout, broken link): confirm --
 *     ask the target (migrate_status) until it answers or clusterd says
 *     it is dead; resume only on a definite "not running".
 *
 *   target (Request{migrate_begin|chunk|status|commit|abort}, from the
 *   source's ghostd over CURVE, vouching for the user who asked):
 *     receiving ──last chunk written──► restoring ──► running ──► committed
 *         └────── any failure, or abort ──► failed (nothing of it runs)
 *
 * The source's tree stays frozen (ghost-dump --hold-fd) from the freeze
 * until the target says the restored tree runs; ghost-dump is then told
 * "kill". Its final image byte is only ever sent with the chunk marked
 * last, so the target cannot finish a restore the source does not know of.
 * Exactly one copy runs at any time, with one documented exception (the
 * target's ghostd dies between the restore's end and its answer: see
 * docs/jobs.md, "Migration").
 */
#ifndef GHOSTD_MIGRATE_H
#define GHOSTD_MIGRATE_H

#include "ghostd.h"

#define MIGRATE_CHUNK (1u << 20)     /* bytes of image per chunk */
#define MIGRATE_WINDOW 4             /* chunks in flight, source to target */
#define MIGRATE_MAX 8                /* migrations at once, each direction */
#define MIGRATE_BEGIN_MS 5000        /* the target must answer begin by then */
#define MIGRATE_CHUNK_MS 5000        /* ... and each chunk but the last: one is
                                        answered once in the restore's pipe */
#define MIGRATE_IDLE_MS 30000        /* target: a stream silent this long fails */
#define MIGRATE_KEEP_MS 600000       /* target: an ended migration's state is
                                        kept this long for status questions */

/* From ops->start: the module's state in gd->migrate. 0 or -ENOMEM. */
int migrate_start(ghostd_t *gd);

/* SIGTERM, before ghostd_done: every held source tree is resumed (its
 * ghost-dump told so and reaped), every restore under way killed, every
 * request answered UNAVAILABLE; the state is freed. NULL-safe. */
void migrate_stop(ghostd_t *gd);

/* Handlers (ghostd-manager.c's table). */
int migrate_handle(void *ctx, cairn_request_t *req);
int migrate_handle_begin(void *ctx, cairn_request_t *req);
int migrate_handle_chunk(void *ctx, cairn_request_t *req);
int migrate_handle_status(void *ctx, cairn_request_t *req);
int migrate_handle_commit(void *ctx, cairn_request_t *req);
int migrate_handle_abort(void *ctx, cairn_request_t *req);

#endif
