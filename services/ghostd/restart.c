/* restart.c - restart on failure: periodic checkpoints, their replicas,
 * and restarts from them when a node dies (restart.h). This file holds
 * the restarts and the lifecycle; the checkpoints of this node's jobs are
 * restart-ckpt.c, the replica's side restart-replica.c, and what the three
 * share restart-private.h.
 *
 * Design. Three tables, all driven by the loop, nothing blocks but the
 * writes of a replica's chunks into its spool file (a tmpfs): the
 * checkpoints of this node's jobs (restart_ckpt_t, restart-ckpt.c), the
 * replica transfers coming in (restart_in_t, restart-replica.c) and the
 * restores from replicas under way here (restart_restore_t).
 *
 * The scan, every RESTART_SCAN_MS and at every view change: with quorum,
 * the jobs of dead nodes (restart from the replica here, or mark lost
 * when this node is the gpid's home and nobody can restart it); always,
 * this node's stale copies (jobs.c supersedes them); now and then,
 * replicas nobody needs any more.
 *
 * Times: last_checkpoint_ms is when the tick began (before the freeze),
 * so lost_ms (now - that) never under-counts the work lost.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "engine/place.h"
#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "restart-private.h"
#include "util/clock.h"
#include "util/fileio.h"

#define S_GC_EVERY 10              /* scans between replica clean-ups */

/* ---- small helpers ------------------------------------------------------ */

cairn_loop_t *restart_loop(const restart_t *r)
{
    return cairn_service_loop(r->gd->svc);
}

uint32_t restart_self(const restart_t *r)
{
    return cairn_service_node(r->gd->svc)->id;
}

void restart_mkdir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        cairn_log_warn(-errno, "restart", "msg=\"cannot make %s, ignoring\"", path);
}

/* Removes dir and the files restart*.c and a tracker make in it (image.ghost,
 * image.ghost.N, their .part, the symlink's temporary, job.json). */
void restart_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char path[PATH_MAX + 300];

    for (struct dirent *e; d && (e = readdir(d));)
        if (strncmp(e->d_name, GHOSTD_IMAGE_NAME, strlen(GHOSTD_IMAGE_NAME)) == 0 ||
            strncmp(e->d_name, "." GHOSTD_IMAGE_NAME, strlen(GHOSTD_IMAGE_NAME) + 1) == 0 ||
            strncmp(e->d_name, "job.json", 8) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* name is image.ghost.N (N decimal, no sign, at most 19 digits). */
bool restart_file_name_ok(const char *name)
{
    size_t k = strlen(GHOSTD_IMAGE_NAME);
    size_t len = strlen(name);

    if (len <= k + 1 || len > k + 20 || strncmp(name, GHOSTD_IMAGE_NAME ".", k + 1) != 0)
        return false;
    for (const char *p = name + k + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* ---- restarts ------------------------------------------------------------ */

static restart_restore_t *s_restore_find(restart_t *r, const char *gpid)
{
    for (size_t i = 0; i < RESTART_MAX_RESTORES; i++)
        if (r->restores[i].used && strcmp(r->restores[i].gpid, gpid) == 0)
            return &r->restores[i];
    return NULL;
}

static void s_mark_lost(restart_t *r, const char *gpid, const char *why)
{
    int e = ghostd_jobs_mark_lost(r->gd->jobs, gpid, why);

    if (e < 0 && e != -EEXIST)
        cairn_log_warn(e, "job-lost", "gpid=%s msg=\"cannot write its exit record: %s\"",
                       gpid, why);
}

static void s_restore_on_exit(ghostd_helper_t *j, int status)
{
    restart_restore_t *rs = j->hook_data;
    restart_t *r = rs->r;
    _cleanup_(restart_json_decrefp) json_t *v = ghostd_helper_line(j, -1);
    char dir[PATH_MAX], msg[1200], why[1400];
    ghostd_jobrec_t rec = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, rs->gpid);
    int e = ghostd_jobrec_read(dir, &rec);
    /* a job's root is pid 1 inside: its host pid is the reaper to watch */
    uint64_t host_pid = ghostd_json_u64(v, "host_pid");
    bool restored = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool named = host_pid > 1 && host_pid <= INT32_MAX;
    if (!restored || !named || e < 0) {
        if (!restored)
            ghostd_helper_error(j, status, v, msg, sizeof msg);
        else if (!named)
            snprintf(msg, sizeof msg, "ghost-restore's answer lacks a valid host_pid");
        else
            snprintf(msg, sizeof msg, "its replica's record is gone");
        if (restored && named)   /* nothing may run that nobody watches */
            kill((pid_t)host_pid, SIGKILL);
        snprintf(why, sizeof why, "its node died and the restart from its checkpoint "
                 "on node %u failed: %s", restart_self(r), msg);
        s_mark_lost(r, rs->gpid, why);
        ghostd_jobrec_clear(&rec);
        rs->used = false;
        return;
    }
    const char *cg = json_string_value(json_object_get(v, "cgroup"));
    const char *unit = json_string_value(json_object_get(v, "unit"));
    uint64_t now = cairn_realtime_ms();
    uint32_t dead = rec.node;
    uint64_t lost = now > rec.last_checkpoint_ms ? now - rec.last_checkpoint_ms : 0;
    rec.node = restart_self(r);
    rec.host_pid = (int32_t)host_pid;
    rec.restarts++;
    rec.lost_ms += lost;
    rec.replica = 0;   /* the next checkpoint picks one among the others */
    snprintf(rec.cgroup, sizeof rec.cgroup, "%s", cg ? cg : "");
    snprintf(rec.unit, sizeof rec.unit, "%s", unit ? unit : "");
    rec.sub_cgroup = r->gd->placement.mode != GHOSTD_PLACE_SCOPE;
    char gpid[GHOSTD_GPID_MAX];
    snprintf(gpid, sizeof gpid, "%s", rs->gpid);
    uint32_t restarts = rec.restarts;
    e = ghostd_jobs_adopt_restored(r->gd->jobs, &rec);
    ghostd_jobrec_clear(&rec);
    rs->used = false;
    if (e < 0) {
        cairn_log_err(e, "job-restart", "gpid=%s msg=\"restored (host pid %d) but the "
                      "table cannot take it; killing it\"", gpid, (int)host_pid);
        kill((pid_t)host_pid, SIGKILL);
        return;
    }
    restart_remove_dir(dir);
    cairn_log_info("job-restart", "gpid=%s dead_node=%u host_pid=%d restarts=%u "
                   "lost_ms=%llu restore_us=%llu", gpid, dead, (int)host_pid, restarts,
                   (unsigned long long)lost,
                   (unsigned long long)ghostd_json_u64(v, "restore_us"));
}

/* Restores gpid from its replica here (ghost-restore, placed as ghost-init
 * places a launch). */
static void s_restart_job(restart_t *r, const char *gpid, const ghostd_jobrec_t *rec)
{
    ghostd_t *gd = r->gd;
    char image[PATH_MAX + 32], scope[160], cg[64];
    cairn_error_t err = { 0 };
    restart_restore_t *rs = NULL;

    if (s_restore_find(r, gpid))
        return;   /* under way */
    for (size_t i = 0; i < RESTART_MAX_RESTORES && !rs; i++)
        if (!r->restores[i].used)
            rs = &r->restores[i];
    if (!rs)
        return;   /* the next scan */
    snprintf(image, sizeof image, "%s/%.31s/" GHOSTD_IMAGE_NAME, r->replica_dir, gpid);
    if (access(image, R_OK) < 0) {
        char why[300];
        snprintf(why, sizeof why, "its node %u died and its replica on node %u holds "
                 "no complete image", rec->node, restart_self(r));
        s_mark_lost(r, gpid, why);
        return;
    }
    char *argv[10] = { NULL, "--image", image };
    int n = 3;
    if (gd->placement.mode == GHOSTD_PLACE_SCOPE) {
        snprintf(scope, sizeof scope, "cairn-job-%s.scope", gpid);
        argv[n++] = "--scope";
        argv[n++] = scope;
        argv[n++] = "--slice";
        argv[n++] = GHOSTD_JOB_SLICE;
    } else {
        snprintf(cg, sizeof cg, "job-%.31s", gpid);
        argv[n++] = "--cgroup";
        argv[n++] = cg;
    }
    argv[n] = NULL;
    int e = ghostd_helper_start(gd, GHOSTD_RESTART, argv, NULL, 0,
                                GHOSTD_DEFAULT_DEADLINE_MS, &rs->rst, &err);
    if (e < 0) {
        cairn_log_warn(e, "job-restart", "gpid=%s msg=\"%s; again at the next scan\"",
                       gpid, err.message);
        return;
    }
    rs->used = true;
    rs->r = r;
    snprintf(rs->gpid, sizeof rs->gpid, "%s", gpid);
    rs->rst->on_exit = s_restore_on_exit;
    rs->rst->hook_data = rs;
    cairn_log_info("job-restarting", "gpid=%s dead_node=%u checkpoint_ms=%llu helper=%d",
                   gpid, rec->node, (unsigned long long)rec->last_checkpoint_ms,
                   (int)rs->rst->helper);
}

/* One job of the jobs directory, whose node may be dead. */
static void s_scan_job(restart_t *r, const char *jobs_dir, const char *gpid)
{
    char dir[PATH_MAX], exit_path[PATH_MAX + 8], why[400];
    ghostd_jobrec_t rec = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", jobs_dir, gpid);
    snprintf(exit_path, sizeof exit_path, "%s/exit", dir);
    if (access(exit_path, F_OK) == 0 || ghostd_jobrec_read(dir, &rec) < 0)
        return;   /* ended (or lost already), or no record */
    const char *state = cairn_view_state(r->view, rec.node);
    if (rec.node == restart_self(r) || !state || strcmp(state, "dead") != 0) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    if (rec.restart_on_failure && rec.replica == restart_self(r)) {
        s_restart_job(r, gpid, &rec);
    } else if (rec.restart_on_failure && rec.replica && cairn_view_alive(r->view, rec.replica)) {
        ;   /* its replica's to restart */
    } else if (cairn_view_home(r->view, gpid) == restart_self(r)) {
        if (!rec.restart_on_failure)
            snprintf(why, sizeof why, "node %u died (declared dead by clusterd) and the "
                     "job was not run with --restart-on-failure", rec.node);
        else if (!rec.replica)
            snprintf(why, sizeof why, "node %u died before a first checkpoint of the "
                     "job was replicated", rec.node);
        else
            snprintf(why, sizeof why, "node %u died and node %u, which held its last "
                     "checkpoint, is dead too", rec.node, rec.replica);
        s_mark_lost(r, gpid, why);
    }
    ghostd_jobrec_clear(&rec);
}

/* Whether the view holds any member dead. */
static bool s_any_dead(restart_t *r)
{
    const cairn_description_t *d = cairn_service_description(r->gd->svc);

    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const char *st = cairn_view_state(r->view, cairn_description_node(d, i)->id);
        if (st && strcmp(st, "dead") == 0)
            return true;
    }
    return false;
}

/* This node's copy of gpid is stale when job.json names another node or
 * its exit record says it was lost. */
static bool s_stale(restart_t *r, const char *jobs_dir, const char *gpid)
{
    char dir[PATH_MAX];
    ghostd_jobrec_t rec = { 0 };
    ghostd_exitrec_t ex = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", jobs_dir, gpid);
    if (ghostd_jobrec_read(dir, &rec) < 0)
        return false;
    bool stale = rec.node != restart_self(r) ||
                 (ghostd_exitrec_read(dir, &ex) == 0 && ex.lost[0]);
    ghostd_jobrec_clear(&rec);
    return stale;
}

/* Replicas here nobody needs: the job ended, or names another replica. */
static void s_gc_replicas(restart_t *r, const char *jobs_dir)
{
    DIR *d = opendir(r->replica_dir);
    uint32_t node;
    uint64_t seq;

    for (struct dirent *e; d && (e = readdir(d));) {
        char jdir[PATH_MAX], rdir[PATH_MAX], exit_path[PATH_MAX + 8];
        ghostd_jobrec_t rec = { 0 };
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0 ||
            restart_in_find_gpid(r, e->d_name) || s_restore_find(r, e->d_name))
            continue;
        snprintf(jdir, sizeof jdir, "%s/%.31s", jobs_dir, e->d_name);
        snprintf(exit_path, sizeof exit_path, "%s/exit", jdir);
        int rd = ghostd_jobrec_read(jdir, &rec);
        bool keep = rd == 0 && access(exit_path, F_OK) < 0 &&
                    (rec.replica == restart_self(r) || rec.replica == 0);
        ghostd_jobrec_clear(&rec);
        if (keep || (rd < 0 && rd != -ENOENT))
            continue;
        snprintf(rdir, sizeof rdir, "%s/%.31s", r->replica_dir, e->d_name);
        restart_remove_dir(rdir);
        cairn_log_info("replica-dropped", "gpid=%s msg=\"no longer needed\"", e->d_name);
    }
    if (d)
        closedir(d);
}

static void s_scan(restart_t *r, bool fence_only)
{
    const char *jobs_dir = ghostd_jobs_dir(r->gd->jobs);
    bool act = !fence_only && cairn_view_known(r->view) && cairn_view_quorum(r->view) &&
               s_any_dead(r);
    bool gc = !fence_only && ++r->scans % S_GC_EVERY == 0;
    DIR *d = opendir(jobs_dir);
    uint32_t node;
    uint64_t seq;

    for (struct dirent *e; d && (e = readdir(d));) {
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0)
            continue;
        if (ghostd_jobs_running(r->gd->jobs, e->d_name)) {
            if (s_stale(r, jobs_dir, e->d_name))
                ghostd_jobs_supersede(r->gd->jobs, e->d_name, "job.json names another "
                                      "node or says the job was lost");
        } else if (act) {
            s_scan_job(r, jobs_dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    if (gc)
        s_gc_replicas(r, jobs_dir);
}

static int s_on_scan(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_scan(userdata, false);
    return 0;
}

static void s_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    s_scan(userdata, false);
}

/* At start: the copies this node still runs of jobs whose job.json names
 * another node now, or that were declared lost, are killed with their
 * sub-cgroups (they are not in the table: jobs.c takes back only jobs
 * whose record names this node, and a lost one as ended). */
static void s_fence_at_start(restart_t *r)
{
    const char *jobs_dir = ghostd_jobs_dir(r->gd->jobs);
    DIR *d = opendir(jobs_dir);
    uint32_t node;
    uint64_t seq;
    char cg[64];

    for (struct dirent *e; d && (e = readdir(d));) {
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0 ||
            ghostd_jobs_running(r->gd->jobs, e->d_name) || !s_stale(r, jobs_dir, e->d_name))
            continue;
        snprintf(cg, sizeof cg, "job-%.31s", e->d_name);
        int n = ghost_place_kill_cgroup(cg);
        if (n > 0)
            cairn_log_warn(0, "job-superseded", "gpid=%s killed=%d msg=\"a stale copy "
                           "(job.json names another node or says lost) was killed\"",
                           e->d_name, n);
    }
    if (d)
        closedir(d);
}

/* ---- lifecycle ------------------------------------------------------------- */

int restart_start(ghostd_t *gd)
{
    restart_t *r = calloc(1, sizeof *r);

    if (!r || !(r->buf = malloc(RESTART_CHUNK))) {
        free(r);
        return -ENOMEM;
    }
    r->gd = gd;
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        r->in[i].fd = -1;
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%.*s/ckpt", 3000, gd->spool.path);
    snprintf(r->replica_dir, sizeof r->replica_dir, "%.*s/replicas", 3000,
             gd->spool.path);
    restart_mkdir(r->ckpt_dir, 0700);
    restart_mkdir(r->replica_dir, 0700);
    r->view = cairn_view_new(gd->svc, "ghostd", s_on_view, r);
    r->peers = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
    if (!r->view || !r->peers) {
        cairn_view_free(r->view);
        cairn_peers_free(r->peers);
        free(r->buf);
        free(r);
        return -ENOMEM;
    }
    gd->restart = r;
    return 0;
}

int restart_ready(ghostd_t *gd)
{
    restart_t *r = gd->restart;

    if (!r)
        return 0;
    s_fence_at_start(r);
    s_scan(r, true);
    int e = cairn_view_start(r->view);
    if (e < 0)
        cairn_log_warn(e, "restart", "msg=\"cannot follow the membership; no job "
                       "is restarted from here\"");
    r->scan_timer = cairn_loop_add_timer(restart_loop(r), RESTART_SCAN_MS, RESTART_SCAN_MS,
                                         s_on_scan, r);
    return 0;
}

void restart_stop(ghostd_t *gd)
{
    restart_t *r = gd ? gd->restart : NULL;

    if (!r)
        return;
    /* peers first: their callbacks never run after this */
    r->peers = cairn_peers_free(r->peers);
    r->view = cairn_view_free(r->view);
    if (r->scan_timer > 0)
        cairn_loop_cancel_timer(restart_loop(r), r->scan_timer);
    while (r->ckpts) {
        restart_ckpt_t *c = r->ckpts;
        r->ckpts = c->next;
        if (c->timer > 0)
            cairn_loop_cancel_timer(restart_loop(r), c->timer);
        if (c->dump) {   /* ghostd_done kills and reaps it; no hook after */
            c->dump->on_exit = NULL;
            c->dump->hook_data = NULL;
        }
        if (c->tracker) {   /* likewise: killed, its registrations dropped */
            c->tracker->on_output = NULL;
            c->tracker->on_exit = NULL;
            c->tracker->hook_data = NULL;
        }
        restart_tracker_stop(c);
        restart_ckpt_close(c);
        free(c);
    }
    for (size_t i = 0; i < RESTART_MAX_RESTORES; i++)
        if (r->restores[i].used && r->restores[i].rst) {
            r->restores[i].rst->on_exit = NULL;
            r->restores[i].rst->hook_data = NULL;
        }
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used)
            restart_in_abandon(r, &r->in[i]);
    free(r->buf);
    free(r);
    gd->restart = NULL;
}
