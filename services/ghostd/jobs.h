/* jobs.h - ghostd's job table: the jobs `cairn run` started on this node,
 * and the requests about jobs anywhere (run, ps, signal, wait;
 * docs/jobs.md, proto/ghostd.proto).
 *
 * A job is launched by ghost-init (engine/ghost-init.c) through the
 * generic helper path of ghostd-manager.c (kind GHOSTD_LAUNCH): its own
 * pid and mount namespaces under a reaper, in a sub-cgroup of the node's
 * (or a transient scope under systemd), as the caller's user. Its gpid
 * and records: jobinfo.h. This node's jobs are tracked with a pidfd on
 * each reaper (the loop watches it: readable at exit); their end is read
 * from the job's exit record. An exited job stays in the table for
 * GHOSTD_JOB_KEEP_MS (for wait and ps), and its directory answers wait
 * after that. ghostd is a child subreaper, so a reaper whose ghost-init
 * exited is ghostd's child and reaped here; at start, the jobs whose
 * job.json names this node and whose reaper still runs (pid and start
 * time) are taken back: a restarted ghostd loses no job.
 *
 * Requests about jobs elsewhere (a run for another node, a ps of the
 * cluster, a signal or wait for a gpid not in this table) go to the other
 * ghostds (local_only set, on behalf of the caller's user) under the
 * request's one deadline; which ghostds: the alive members running ghostd
 * in this node's membership view (services/common/view.h). No home table:
 * a dead node takes nothing but its own jobs with it.
 */
#ifndef GHOSTD_JOBS_H
#define GHOSTD_JOBS_H

#include <jansson.h>

#include "ghostd.h"
#include "jobinfo.h"

#define GHOSTD_JOB_KEEP_MS (10 * 60 * 1000)  /* an exited job stays listed */
#define GHOSTD_MAX_JOBS 4096                  /* jobs in the table at once */

typedef struct ghostd_job ghostd_job_t;
typedef struct ghostd_jobs ghostd_jobs_t;

/* Makes the table (from ops->start): the jobs directory
 * <run base>/<cluster>/jobs (0755), the next sequence number, the jobs of
 * this node taken back. 0 or -errno (logged). */
int ghostd_jobs_new(ghostd_t *gd, ghostd_jobs_t **ret);

/* Starts the membership view (from ops->ready). 0 or -errno. */
int ghostd_jobs_ready(ghostd_jobs_t *jobs);

/* Answers every waiting request UNAVAILABLE and frees the table; the
 * jobs run on. NULL-safe; returns NULL. */
ghostd_jobs_t *ghostd_jobs_free(ghostd_jobs_t *jobs);

/* ghost-init of h->job succeeded with `line`: the job joins the table and
 * the run is answered (h->deferred, taken). 0, or -errno when the line
 * breaks the contract (answered INTERNAL; the job is then a failed
 * launch). */
int ghostd_jobs_launched(ghostd_jobs_t *jobs, ghostd_helper_t *h, json_t *line);

/* A launch that did not succeed: its directory and cgroup go, and the job
 * leaves the table. NULL-safe. */
void ghostd_jobs_launch_failed(ghostd_jobs_t *jobs, ghostd_job_t *job);

/* ---- for migration (migrate.c) ----
 * A job moves with its record: the source marks it migrating while it
 * streams, lets it go (no exit record: it did not end) once the target
 * runs it, and takes it back if its copy was resumed after all; the
 * target adopts it on commit, rewriting job.json. */

/* (ghostd_jobs_dir and ghostd_jobs_running, below, serve it too.) */

/* Marks gpid's job migrating to node `to` by migration `id` (ps shows
 * state "migrating"; job.json records the move before anything freezes,
 * for a successor of a ghostd that dies mid-move: jobs-settle.c) or, with
 * migrating false, not any more (the mark cleared). */
void ghostd_jobs_set_migrating(ghostd_jobs_t *jobs, const char *gpid, bool migrating,
                               uint32_t to, const char *id);

/* gpid's job left this node: out of the table without an exit record,
 * its reaper no longer watched (and reaped as an orphan once killed). */
void ghostd_jobs_release(ghostd_jobs_t *jobs, const char *gpid);

/* Takes gpid's job back from its job.json after a release whose move
 * did not happen (the tree was resumed here; the target's copy is this
 * ghostd's to abort): the move's mark cleared. */
void ghostd_jobs_take_back(ghostd_jobs_t *jobs, const char *gpid);
/* gpid is about to be placed on this node again (a migration in): its
 * sub-cgroup, left from an earlier stay, is no longer the sweep's to
 * remove. */
void ghostd_jobs_cgroup_wanted(ghostd_jobs_t *jobs, const char *gpid);

/* A job restored here by a migration now belongs to this node: its
 * job.json (read from the jobs directory) gets this node, reaper
 * host_pid and its start time, cgroup, unit, sub_cgroup and moves + 1, is
 * written back, and the job joins the table with its reaper watched.
 * 0 or -errno (-ENOENT no such record, -ESRCH the reaper is gone: the job
 * joins the table ended). */
int ghostd_jobs_arrived(ghostd_jobs_t *jobs, const char *gpid, pid_t host_pid,
                        const char *cgroup, const char *unit, bool sub_cgroup);

/* gpid arrived post-copy and its pages are still coming (pending), or
 * they all came: while pending, a reaper that ends without an exit record
 * was killed for its holes and the job is recorded lost. */
void ghostd_jobs_set_pages_pending(ghostd_jobs_t *jobs, const char *gpid, bool pending);

/* gpid's pages stopped coming (post-copy): the job is killed if it still
 * runs here, its exit record says lost = why (ps: state "lost", wait
 * answers it), as ghostd_jobs_mark_lost does for a job not in the table.
 * 0 or -errno of the record's write. */
int ghostd_jobs_lose(ghostd_jobs_t *jobs, const char *gpid, const char *why);

/* Fills m with gpid's job in this table (strings point into the table:
 * valid until it changes). -ENOENT when it is not here. */
int ghostd_jobs_describe(const ghostd_jobs_t *jobs, const char *gpid,
                         Cairn__Ghostd__Job *m);

/* The handlers (ctx: ghostd_t). */
int ghostd_jobs_handle_run(void *ctx, cairn_request_t *req);
int ghostd_jobs_handle_ps(void *ctx, cairn_request_t *req);
int ghostd_jobs_handle_signal(void *ctx, cairn_request_t *req);
int ghostd_jobs_handle_wait(void *ctx, cairn_request_t *req);

/* ---- for restart.c (restart on failure, restart.h) ---- */

/* <run base>/<cluster>/jobs. */
const char *ghostd_jobs_dir(const ghostd_jobs_t *jobs);

/* The record of job gpid when it runs here (launched, not ended), else
 * NULL; valid until the table changes (the loop runs again). */
const ghostd_jobrec_t *ghostd_jobs_running(const ghostd_jobs_t *jobs, const char *gpid);

/* Whether the table holds gpid at all (running, launching or ended). */
bool ghostd_jobs_has(const ghostd_jobs_t *jobs, const char *gpid);

/* A checkpoint of gpid begun at unix ms `ms` is whole on node replica:
 * the record says so and job.json is rewritten. -ENOENT when the job no
 * longer runs here, else 0 or job.json's -errno. */
int ghostd_jobs_checkpointed(ghostd_jobs_t *jobs, const char *gpid, uint64_t ms,
                             uint32_t replica);

/* A job restored here from its replica joins the table: rec (taken: its
 * argv is the table's, *rec is zeroed) has node, host_pid, cgroup,
 * restarts and lost_ms already set; its reaper is watched, job.json
 * written, its checkpoints started. -EEXIST when it runs here already,
 * -ENOSPC table full. */
int ghostd_jobs_adopt_restored(ghostd_jobs_t *jobs, ghostd_jobrec_t *rec);

/* Job gpid of a dead node that nobody restarts: its exit record is
 * written with lost = why (exit_code -1), and it is listed here, state
 * "lost", for GHOSTD_JOB_KEEP_MS. -EEXIST when it runs here. */
int ghostd_jobs_mark_lost(ghostd_jobs_t *jobs, const char *gpid, const char *why);

/* This node's copy of gpid is stale (its job.json names another node, or
 * it was declared lost, while this node was cut off): it is SIGKILLed
 * with its whole sub-cgroup and leaves the table, without an exit record
 * (the job lives on elsewhere). */
void ghostd_jobs_supersede(ghostd_jobs_t *jobs, const char *gpid, const char *why);

#endif
