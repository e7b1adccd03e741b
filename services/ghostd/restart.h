/* restart.h - restart on failure: periodic checkpoints of a job,
 * replicated to another node, and the job restarted from its replica
 * when clusterd declares its node dead (docs/jobs.md, "Restart on
 * failure"; issue 19, item 6).
 *
 * Three parts, each a small state machine: the checkpoint in
 * restart-ckpt.c, the replica in restart-replica.c, the restart in
 * restart.c:
 *
 *   checkpoint (the job's node): a loop timer per job run with
 *     checkpoint_every_s and a tracker (ghost-dump --serve-fd 3, at most
 *     GHOSTD_MAX_TRACKERS); each tick asks it for "checkpoint
 *     <spool>/ckpt/<gpid>" (image.ghost.N: a full image, then deltas;
 *     image.ghost a symlink to the newest) -- or, with no tracker slot,
 *     runs ghost-dump --leave-running --in-place into image.ghost -- then
 *     sends the replica what it lacks of the chain (the new file, or the
 *     chain whole):
 *       idle ──tick──► dumping ──ok──► sending ──last chunk answered──► idle
 *                         └─ refused/failed: logged, next tick     └─ failed: next tick
 *     A tick while the last checkpoint still dumps or sends is skipped:
 *     checkpoints never queue up behind a slow replica.
 *
 *   replica (another node): each file comes in chunks (Request{replica_put})
 *     into <spool>/replicas/<gpid>/<file>.part, renamed once whole; when
 *     it holds every file of the chain before it, the image.ghost symlink
 *     names it and older chains' files go; the job's record beside it
 *     (job.json, last_checkpoint_ms set): a replica is never half a chain. The
 *     replica node is the rendezvous home of the gpid among the alive
 *     ghostds but the job's own node, chosen anew at every checkpoint, so
 *     a replica that dies is replaced by the next one (and a replica no
 *     longer named is told to drop its copy).
 *
 *   restart (the replica's node): when the view (clusterd) holds the
 *     job's node dead and this side has quorum, the ghostd named replica
 *     in the job's job.json restarts it from its image (ghost-restore,
 *     placed like a launched job), the job table adopts it with the same
 *     gpid, restarts + 1, lost_ms += now - the checkpoint's time, and
 *     job.json names this node. A job of a dead node that nobody can
 *     restart (no restart on failure, no replica yet, its replica dead
 *     too, the restore refused) is marked lost by the rendezvous home of
 *     its gpid among the alive ghostds: exit record with "lost" (why),
 *     listed by ps as state "lost". A job that ended (exit record) is
 *     never restarted.
 *
 * Split brain. job.json (on the shared jobs directory) names the one
 * node that runs a job. A node restarts or marks lost only with quorum
 * (an isolated node sees everyone else dead and must not act on it). A
 * node's copy is stale once job.json names another node or its exit
 * record says lost: ghostd kills it (its whole sub-cgroup) at start, and
 * every RESTART_SCAN_MS while it runs (so a node cut off and back kills
 * its old copy as soon as it sees the record), and checkpoints nothing
 * without quorum. Between the cut and that kill, an isolated node's copy
 * may run on (no lease stops it): docs/jobs.md says so.
 */
#ifndef GHOSTD_RESTART_H
#define GHOSTD_RESTART_H

#include <stdbool.h>
#include <stdint.h>

#include "ghostd.h"

#define RESTART_MAX_EVERY_S 86400     /* checkpoint_every_s at most (a day) */
#define RESTART_CHUNK (1u << 20)      /* bytes of image per replica_put */
#define RESTART_WINDOW 4              /* chunks in flight to the replica */
#define RESTART_CHUNK_MS 10000        /* a chunk unanswered this long fails */
#define RESTART_SCAN_MS 1000          /* dead nodes' jobs, stale copies */
#define RESTART_IN_IDLE_MS 60000      /* replica: a transfer silent this long goes */
#define RESTART_MAX_IN 64             /* replica: transfers at once */

/* From ops->start, before the job table (which calls the hooks below
 * while it takes its jobs back). 0 or -ENOMEM. */
int restart_start(ghostd_t *gd);

/* From ops->ready: follows the membership, kills the stale copies this
 * node holds (jobs whose job.json names another node or says lost). */
int restart_ready(ghostd_t *gd);

/* SIGTERM: every checkpoint's helper is left to ghostd_done, transfers
 * are dropped (a replica keeps its last whole image). NULL-safe. */
void restart_stop(ghostd_t *gd);

/* jobs.c: gpid runs here now (launched, taken back at start, restarted);
 * its checkpoints begin when its record asks for them. */
void restart_job_running(ghostd_t *gd, const char *gpid);

/* jobs.c: gpid ended here; its checkpoints stop and its replica node
 * (0: none) is told to drop the copy. */
void restart_job_ended(ghostd_t *gd, const char *gpid, uint32_t replica);

/* migrate.c: the job whose reaper is host_pid is leaving this node
 * (moving) or stays after all (!moving). Leaving: its tracker is killed
 * (the kernel drops its write protection with its fds) and no checkpoint
 * is taken until it stays again or ends here (restart_job_ended). Not a
 * checkpointed job: nothing. */
void restart_job_moving(ghostd_t *gd, uint32_t host_pid, bool moving);

/* Handlers (ghostd-manager.c's table; member nodes only). */
int restart_handle_put(void *ctx, cairn_request_t *req);
int restart_handle_drop(void *ctx, cairn_request_t *req);

#endif
