/* migrate.h - moving a running process tree (a job, or a plain process)
 * from this node to another: stop-and-copy, or pre-copy (the held
 * ghost-dump's rounds go down the same stream while the tree runs), the
 * image streamed from this ghostd to the target's over ZeroMQ, with no
 * file in between. MigrateRequest.mode chooses; "auto" is the size rule
 * below. Post-copy: the copy runs as soon as all but the private
 * anonymous pages are in, and those follow through the page source,
 * relayed between the ghostds (migrate-relay.h) until every one came.
 *
 * Two sides, each a small state machine in migrate.c:
 *
 *   source (Request{migrate}, from a client):
 *     begin ──ok──► stream ──last chunk answered "runs"──► killing ──► done
 *                     │  post-copy: "held" ─► `serve`, P relayed; "runs" ─►
 *                     │  serving (job handed over, commit) ──► done once
 *                     │  ghost-dump served every page (or `kill`: relay ended)
 *       │             │ (chunks of 256 KiB, MIGRATE_WINDOW in flight)
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
 * The target records each migration under <rundir>/migrate before it
 * says the copy runs, so a ghostd restarted there answers as its
 * predecessor would have. Exactly one copy remains; what does not hold
 * (a restored copy runs before the source's is killed, a source ghostd
 * dying while it holds the tree) is listed in docs/jobs.md, "Migration".
 *
 * A job (gpid) moves with its table entry: jobs.h's release at the source
 * once the target runs it, arrived at the target on commit. A gpid this
 * node does not run is carried to the node its job.json names.
 */
#ifndef GHOSTD_MIGRATE_H
#define GHOSTD_MIGRATE_H

#include "ghostd.h"

#define MIGRATE_CHUNK (256u << 10)   /* bytes of image per chunk */
#define MIGRATE_WINDOW 64            /* chunks in flight, source to target:
                                        16 MiB, so that the stream is not
                                        bound by one chunk's round trip */
#define MIGRATE_MAX 8                /* migrations at once, each direction */
#define MIGRATE_BEGIN_MS 5000        /* the target must answer begin by then */
#define MIGRATE_CHUNK_MS 5000        /* ... and each chunk but the last: one is
                                        answered once in the restore's pipe */
#define MIGRATE_LAST_MS 10000        /* the last chunk, answered once the tree
                                        runs: unanswered by then, the target is
                                        asked its state (a target ghostd that
                                        died never answers; waiting for the
                                        client's deadline left no time to ask) */
#define MIGRATE_IDLE_MS 30000        /* target: a stream silent this long fails */
#define MIGRATE_KEEP_MS 600000       /* target: an ended migration's state is
                                        kept this long for status questions */

/* How a tree moves (MigrateRequest.mode; docs/jobs.md, "Migration"). */
typedef enum {
    MIGRATE_STOP_COPY,   /* frozen for the whole transfer; nothing can be lost */
    MIGRATE_PRE_COPY,    /* rounds while it runs, frozen for what changed since */
    MIGRATE_POST_COPY,   /* the copy runs at once, its memory follows; a
                            failure before the last page loses the job */
    MIGRATE_AUTO,        /* the size rule below decides */
} migrate_mode_t;

/* auto: pre-copy from this many resident bytes, stop-and-copy below (the
 * stream moves ~60-180 MiB/s here, so below it stop-and-copy freezes a
 * few hundred ms at most, and the rounds' tracking and second copy are
 * not worth it). Never post-copy, not even when pre-copy does not
 * converge: a failure in its window loses the job, a risk only the user
 * may take (docs/jobs.md, "Modes"). */
#define MIGRATE_AUTO_PRECOPY (64ull << 20)

/* "stop-copy" (also "" and NULL), "pre-copy", "post-copy", "auto" into
 * *ret: 0, or -EINVAL for anything else. */
int migrate_mode_parse(const char *name, migrate_mode_t *ret);
const char *migrate_mode_name(migrate_mode_t mode);
/* The auto rule for a tree of rss resident bytes. */
migrate_mode_t migrate_mode_auto(uint64_t rss);

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
int migrate_handle_pages(void *ctx, cairn_request_t *req);

/* The MigrateState a ghostd's reply holds (to status, commit, abort,
 * begin), NULL if it holds none (an error Status, another kind). */
const Cairn__Ghostd__MigrateState *migrate_state_of(const ProtobufCMessage *reply);

#endif
