/* jobs.c - ghostd's job table (jobs.h): a job's life on this node, and
 * what restart.c and migrate.c ask of the table. The run request is
 * jobs-run.c; ps, signal, wait and the queries to other ghostds are
 * jobs-query.c; jobs-private.h holds what the three share.
 *
 * Design. The table is an array of jobs of this node, each with its
 * record (jobinfo.h), its directory and a pidfd on its reaper watched by
 * the loop. Life of a job here:
 *
 *   run:      validate -> mkdir <jobs>/<gpid> (the gpid is taken) -> chown
 *             to the user -> ghost-init through ghostd_helper_request
 *             [launching: not listed]
 *   launched: pidfd_open(reaper), its start time, job.json, watch
 *             [running]                  (failed: dir and cgroup removed)
 *   pidfd readable: waitpid it (our child: ghostd is a subreaper), read
 *             DIR/exit (written by the reaper; else made here from the
 *             wait status), remove the sub-cgroup, answer the waits
 *             [exited: listed GHOSTD_JOB_KEEP_MS, then dropped]
 *
 * Children. As a subreaper ghostd also inherits what a restore leaves
 * (the restored tree, once ghost-restore exits) and the orphans of a job
 * whose reaper is gone: a sweep every S_SWEEP_MS reaps every zombie child
 * that is neither a helper (reaped by its own poll) nor a reaper (reaped
 * when its pidfd fires); it waits while a ghost-init runs, whose reaper
 * may become our child before the table knows it.
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "engine/place.h"
#include "jobs-private.h"
#include "log.h"
#include "restart.h"
#include "util/clock.h"
#include "util/fileio.h"

#define S_SWEEP_MS 200            /* orphan reaping */
#define S_EXPIRE_MS 30000         /* dropping old exited jobs */

/* ---- small helpers ------------------------------------------------------- */

int jobs_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int jobs_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* How long a request may take from now: Header.deadline_ms (else
 * `dflt`), less a margin for the answer to travel back. */
uint64_t jobs_budget_ms(cairn_request_t *req, uint64_t dflt)
{
    const Cairn__Header *h = cairn_request_header(req);
    uint64_t d = h && h->deadline_ms ? h->deadline_ms : dflt;
    uint64_t margin = d / 10 < 300 ? d / 10 : 300;

    if (d > 3600000)
        d = 3600000;
    return d > margin + 1 ? d - margin : 1;
}

int jobs_fail(cairn_request_t *req, const cairn_error_t *err)
{
    cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(err->code),
                   err->message);
    return cairn_request_fail(req, err->code, "%s", err->message);
}

/* The cgroup name of a job's sub-cgroups. */
void jobs_cgroup_name(const char *gpid, char *out, size_t size)
{
    snprintf(out, size, "job-%s", gpid);
}

/* ---- the table ----------------------------------------------------------- */

ghostd_job_t *jobs_find(const ghostd_jobs_t *jobs, const char *gpid)
{
    for (size_t i = 0; i < jobs->n_jobs; i++)
        if (strcmp(jobs->jobs[i]->rec.gpid, gpid) == 0)
            return jobs->jobs[i];
    return NULL;
}

ghostd_job_t *jobs_job_new(ghostd_jobs_t *jobs)
{
    if (jobs->n_jobs >= GHOSTD_MAX_JOBS)
        return NULL;
    ghostd_job_t **grown = realloc(jobs->jobs, (jobs->n_jobs + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    jobs->jobs = grown;
    ghostd_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->jobs = jobs;
    job->pidfd = -1;
    jobs->jobs[jobs->n_jobs++] = job;
    return job;
}

static void s_job_unwatch(ghostd_job_t *job)
{
    if (job->watch > 0)
        cairn_loop_remove(cairn_service_loop(job->jobs->svc), job->watch);
    job->watch = 0;
    if (job->pidfd >= 0)
        close(job->pidfd);
    job->pidfd = -1;
}

/* Takes job out of the table and frees it; its waits are answered
 * UNAVAILABLE with msg. */
void jobs_job_drop(ghostd_job_t *job, const char *msg)
{
    ghostd_jobs_t *jobs = job->jobs;

    while (job->n_waits)
        jobs_wait_answer(job->waits[0], NULL, CAIRN_UNAVAILABLE, msg);
    free(job->waits);
    s_job_unwatch(job);
    ghostd_jobrec_clear(&job->rec);
    for (size_t i = 0; i < jobs->n_jobs; i++)
        if (jobs->jobs[i] == job) {
            memmove(&jobs->jobs[i], &jobs->jobs[i + 1],
                    (jobs->n_jobs - i - 1) * sizeof *jobs->jobs);
            jobs->n_jobs--;
            break;
        }
    free(job);
}

/* ---- a job as a message -------------------------------------------------- */

/* Fills m (Job) from job; strings point into job (valid until it
 * changes). A running job is sampled now. */
void jobs_job_msg(const ghostd_job_t *job, Cairn__Ghostd__Job *m)
{
    ghostd_jobsample_t s = { 0 };

    cairn__ghostd__job__init(m);
    m->gpid = (char *)job->rec.gpid;
    m->node = job->rec.node;
    m->host_pid = (uint32_t)job->rec.host_pid;
    m->pid = 2;
    m->uid = job->rec.uid;
    m->gid = job->rec.gid;
    m->start_ms = job->rec.start_ms;
    m->moves = job->rec.moves;
    m->restarts = job->rec.restarts;
    m->argv = job->rec.argv;
    m->n_argv = job->rec.argc;
    m->name = (char *)job->rec.name;
    m->dir = (char *)job->dir;
    m->cgroup = (char *)job->rec.cgroup;
    m->lost_ms = job->rec.lost_ms;
    m->checkpoint_every_s = job->rec.checkpoint_every_s;
    m->restart_on_failure = job->rec.restart_on_failure;
    m->last_checkpoint_ms = job->rec.last_checkpoint_ms;
    m->replica = job->rec.replica;
    if (job->exited && job->exit.lost[0]) {
        m->state = "lost";
        m->lost = (char *)job->exit.lost;
        m->exited = true;
        m->exit_code = job->exit.exit_code;
        m->exit_signal = job->exit.exit_signal;
        return;
    }
    if (job->exited) {
        m->state = "exited";
        m->exited = true;
        m->exit_code = job->exit.exit_code;
        m->exit_signal = job->exit.exit_signal;
        return;
    }
    m->state = job->migrating ? "migrating" : "running";
    if (ghostd_job_sample(job->rec.host_pid, &s) == 0) {
        uint64_t now = cairn_realtime_ms();
        uint64_t age = now > job->rec.start_ms ? now - job->rec.start_ms : 1;
        m->state = job->migrating ? "migrating" : s.stopped ? "stopped" : "running";
        m->processes = s.processes;
        m->rss_bytes = s.rss_bytes;
        m->cpu_percent = (double)s.cpu_ms * 100.0 / (double)(age ? age : 1);
        if (s.pid_inside)
            m->pid = s.pid_inside;
    }
}

/* ---- a job's end ----------------------------------------------------------- */

/* The exit record when the reaper left none: from its wait status when we
 * reaped it, SIGKILL when we sent one, else unknown (-1, 0). */
static ghostd_exitrec_t s_exit_without_record(const ghostd_job_t *job,
                                              bool reaped, int status)
{
    ghostd_exitrec_t e = { .exit_code = -1, .exit_signal = 0,
                           .end_ms = cairn_realtime_ms() };

    if (reaped && WIFSIGNALED(status))
        e.exit_signal = WTERMSIG(status);
    else if (reaped && WIFEXITED(status))
        e.exit_code = WEXITSTATUS(status);
    else if (job->killed)
        e.exit_signal = SIGKILL;
    return e;
}

void jobs_job_ended(ghostd_job_t *job)
{
    int status = 0;
    pid_t r;
    char cg[64];

    do
        r = waitpid(job->rec.host_pid, &status, WNOHANG | __WALL);
    while (r < 0 && errno == EINTR);
    s_job_unwatch(job);
    bool recorded = ghostd_exitrec_read(job->dir, &job->exit) == 0;
    if (!recorded)
        job->exit = s_exit_without_record(job, r == job->rec.host_pid, status);
    if (job->pages_pending && !job->exit.lost[0] &&
        (!recorded || job->exit.exit_signal == SIGKILL)) {
        /* killed for its holes (ghost-restore's doing; the reaper may have
         * recorded its program's SIGKILL first) */
        snprintf(job->exit.lost, sizeof job->exit.lost, "killed while its post-copy "
                 "pages were still coming: the job is lost");
        recorded = false;
    }
    if (!recorded) {
        int w = ghostd_exitrec_write(job->dir, &job->exit, job->rec.uid, job->rec.gid);
        if (w < 0)
            cairn_log_warn(w, "job-exit", "gpid=%s msg=\"cannot write %s/exit, "
                           "ignoring\"", job->rec.gpid, job->dir);
    }
    job->exited = true;
    job->ended_at = cairn_now_ms();
    if (job->rec.sub_cgroup) {
        jobs_cgroup_name(job->rec.gpid, cg, sizeof cg);
        ghost_place_remove_cgroup(cg);
    }
    cairn_log_info("job-exit", "gpid=%s host_pid=%d exit_code=%d exit_signal=%d",
                   job->rec.gpid, (int)job->rec.host_pid, job->exit.exit_code,
                   job->exit.exit_signal);
    restart_job_ended(job->jobs->gd, job->rec.gpid, job->rec.replica);
    while (job->n_waits)
        jobs_wait_answer(job->waits[0], job, CAIRN_OK, NULL);
}

static int s_on_pidfd(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata)
{
    jobs_job_ended(userdata);
    return 0;
}

/* Watches a running job's reaper through a pidfd that names it: opened,
 * then checked against the recorded start time (a pid reused since is
 * another process). -ESRCH when the reaper is gone. */
int jobs_job_watch(ghostd_job_t *job)
{
    uint64_t start = 0;
    int fd = jobs_pidfd_open(job->rec.host_pid);

    if (fd < 0)
        return -errno;
    if (ghostd_proc_start(job->rec.host_pid, &start) < 0 ||
        (job->rec.host_start && start != job->rec.host_start)) {
        close(fd);
        return -ESRCH;
    }
    job->rec.host_start = start;
    job->pidfd = fd;
    int64_t w = cairn_loop_add_fd(cairn_service_loop(job->jobs->svc), fd,
                                  ZMQ_POLLIN, s_on_pidfd, job);
    if (w < 0) {
        close(fd);
        job->pidfd = -1;
        return (int)w;
    }
    job->watch = w;
    return 0;
}

/* ---- taking jobs back at start ------------------------------------------ */

/* One directory of the jobs dir: this node's job, running or recently
 * ended, joins the table. settle: at start, a move the ghostd before us
 * left under way is settled with its target (jobs-settle.c). */
static void s_adopt(ghostd_jobs_t *jobs, const char *gpid, bool settle)
{
    ghostd_jobrec_t rec = { 0 };
    ghostd_exitrec_t ex;
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s/%s", jobs->dir, gpid);
    if (ghostd_jobrec_read(dir, &rec) < 0 || rec.node != jobs->self ||
        strcmp(rec.gpid, gpid) != 0) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    bool ended = ghostd_exitrec_read(dir, &ex) == 0;
    uint64_t now = cairn_realtime_ms();
    /* declared lost while this node was dead: the ghostd that marked it
     * lists it (and restart.c kills what is left of it here) */
    if ((ended && ex.lost[0]) || (ended && now > ex.end_ms + GHOSTD_JOB_KEEP_MS)) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    if (settle && rec.migrating_to && !ended) {
        /* a move left under way: settled with the target once the tree is
         * no longer held (killed or let go by the old ghost-dump) */
        jobs_settle_start(jobs, &rec, false);
        ghostd_jobrec_clear(&rec);
        return;
    }
    ghostd_job_t *job = jobs_job_new(jobs);
    if (!job) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    job->rec = rec;
    snprintf(job->dir, sizeof job->dir, "%s", dir);
    if (settle && job->rec.migrating_to) {
        /* the job ended here before any freeze (its reaper's record):
         * whatever the target made goes */
        jobs_settle_start(jobs, &job->rec, true);
        job->rec.migrating_to = 0;
        job->rec.migration[0] = '\0';
        int w = ghostd_jobrec_write(job->dir, &job->rec);
        if (w < 0)
            cairn_log_warn(w, "job", "gpid=%s msg=\"cannot clear the move's mark in "
                           "job.json, ignoring\"", gpid);
    }
    if (!ended && jobs_job_watch(job) == 0) {
        cairn_log_info("job-adopted", "gpid=%s host_pid=%d", gpid, (int)rec.host_pid);
        restart_job_running(jobs->gd, gpid);
        return;
    }
    if (!ended) {   /* it ended while no ghostd watched, leaving no record */
        ex = s_exit_without_record(job, false, 0);
        ghostd_exitrec_write(dir, &ex, rec.uid, rec.gid);
        cairn_log_warn(0, "job-lost", "gpid=%s host_pid=%d msg=\"its reaper is "
                       "gone and left no exit record\"", gpid, (int)rec.host_pid);
    }
    job->exit = ex;
    job->exited = true;
    job->ended_at = cairn_now_ms();
}

static void s_adopt_all(ghostd_jobs_t *jobs)
{
    DIR *d = opendir(jobs->dir);
    uint32_t node;
    uint64_t seq;

    for (struct dirent *e; d && (e = readdir(d));)
        if (ghostd_gpid_parse(e->d_name, &node, &seq) == 0)
            s_adopt(jobs, e->d_name, true);
    if (d)
        closedir(d);
}

/* ---- timers --------------------------------------------------------------- */

/* Whether pid is a reaper of the table (its pidfd reaps it). */
static bool s_is_reaper(const ghostd_jobs_t *jobs, pid_t pid)
{
    for (size_t i = 0; i < jobs->n_jobs; i++)
        if (jobs->jobs[i]->rec.host_pid == pid && !jobs->jobs[i]->exited)
            return true;
    return false;
}

#define S_LEFT_CGROUPS_MAX 1024   /* beyond: the oldest is forgotten */

/* Takes entry i off the left sub-cgroups. */
static void s_left_cgroup_forget(ghostd_jobs_t *jobs, size_t i)
{
    memmove(&jobs->left_cgroups[i], &jobs->left_cgroups[i + 1],
            (--jobs->n_left_cgroups - i) * sizeof *jobs->left_cgroups);
}

/* Notes cg, the sub-cgroup of a job that left, for the sweep. */
static void s_left_cgroup(ghostd_jobs_t *jobs, const char *cg)
{
    if (jobs->n_left_cgroups == S_LEFT_CGROUPS_MAX) {
        s_left_cgroup_forget(jobs, 0);   /* the oldest */
    } else {
        void *grown = realloc(jobs->left_cgroups,
                              (jobs->n_left_cgroups + 1) * sizeof *jobs->left_cgroups);
        if (!grown)
            return;   /* an empty cgroup stays: nothing is lost */
        jobs->left_cgroups = grown;
    }
    snprintf(jobs->left_cgroups[jobs->n_left_cgroups++], sizeof *jobs->left_cgroups, "%s", cg);
}

/* Removes the left sub-cgroups that are empty by now (or gone). */
static void s_sweep_left_cgroups(ghostd_jobs_t *jobs)
{
    for (size_t i = 0; i < jobs->n_left_cgroups;) {
        int r = ghost_place_remove_cgroup(jobs->left_cgroups[i]);
        if (r == 0 || r == -ENOENT || r == -EINVAL)
            s_left_cgroup_forget(jobs, i);
        else
            i++;   /* its processes still die: next sweep */
    }
}

void ghostd_jobs_cgroup_wanted(ghostd_jobs_t *jobs, const char *gpid)
{
    char cg[GHOSTD_GPID_MAX + 8];

    jobs_cgroup_name(gpid, cg, sizeof cg);
    for (size_t i = 0; i < jobs->n_left_cgroups; i++)
        if (strcmp(jobs->left_cgroups[i], cg) == 0) {
            s_left_cgroup_forget(jobs, i);
            return;
        }
}

static int s_on_sweep(cairn_loop_t *loop, int64_t id, void *userdata)
{
    ghostd_jobs_t *jobs = userdata;

    s_sweep_left_cgroups(jobs);
    if (ghostd_launch_running(jobs->gd))
        return 0;
    for (int i = 0; i < 64; i++) {
        siginfo_t si = { 0 };
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
            break;
        if (ghostd_helper_running(jobs->gd, si.si_pid) || s_is_reaper(jobs, si.si_pid))
            break;   /* theirs to reap, soon */
        waitpid(si.si_pid, NULL, WNOHANG);
    }
    return 0;
}

static int s_on_expire(cairn_loop_t *loop, int64_t id, void *userdata)
{
    ghostd_jobs_t *jobs = userdata;
    uint64_t now = cairn_now_ms();
    char cg[64];

    for (size_t i = 0; i < jobs->n_jobs;) {
        ghostd_job_t *job = jobs->jobs[i];
        if (!job->exited || now < job->ended_at + GHOSTD_JOB_KEEP_MS) {
            i++;
            continue;
        }
        if (job->rec.sub_cgroup) {   /* once more, if it was busy then */
            jobs_cgroup_name(job->rec.gpid, cg, sizeof cg);
            ghost_place_remove_cgroup(cg);
        }
        jobs_job_drop(job, "the job was dropped");
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

int ghostd_jobs_new(ghostd_t *gd, ghostd_jobs_t **ret)
{
    cairn_service_t *svc = gd->svc;
    const cairn_description_t *d = cairn_service_description(svc);
    ghostd_jobs_t *jobs = calloc(1, sizeof *jobs);
    cairn_loop_t *loop = cairn_service_loop(svc);

    if (!jobs)
        return -ENOMEM;
    jobs->gd = gd;
    jobs->svc = svc;
    jobs->self = cairn_service_node(svc)->id;
    snprintf(jobs->dir, sizeof jobs->dir, "%s/%s/jobs",
             cairn_description_run_base(d), cairn_description_cluster(d));
    int r = cairn_mkdir_p(jobs->dir, 0755);
    if (r < 0)
        cairn_log_warn(r, "jobs", "dir=%s msg=\"cannot make the jobs directory; "
                       "cairn run will fail\"", jobs->dir);
    r = ghostd_gpid_next_seq(jobs->dir, jobs->self, &jobs->next_seq);
    if (r < 0)
        jobs->next_seq = 1;
    jobs->view = cairn_view_new(svc, "ghostd", NULL, NULL);
    jobs->peers = cairn_peers_new(svc, "ghostd", &cairn__ghostd__reply__descriptor);
    jobs->sweep_timer = cairn_loop_add_timer(loop, S_SWEEP_MS, S_SWEEP_MS,
                                             s_on_sweep, jobs);
    jobs->expire_timer = cairn_loop_add_timer(loop, S_EXPIRE_MS, S_EXPIRE_MS,
                                              s_on_expire, jobs);
    if (!jobs->view || !jobs->peers || jobs->sweep_timer < 0 || jobs->expire_timer < 0) {
        ghostd_jobs_free(jobs);
        return cairn_log_warn(-ENOMEM, "jobs", "msg=\"out of memory\"");
    }
    s_adopt_all(jobs);
    cairn_log_info("jobs", "dir=%s next=%u.%llu adopted=%zu", jobs->dir, jobs->self,
                   (unsigned long long)jobs->next_seq, jobs->n_jobs);
    *ret = jobs;
    return 0;
}

int ghostd_jobs_ready(ghostd_jobs_t *jobs)
{
    int r = jobs ? cairn_view_start(jobs->view) : -EINVAL;

    if (r < 0)
        cairn_log_warn(r, "jobs", "msg=\"cannot follow the membership; only "
                       "this node's jobs are seen\"");
    return 0;
}

ghostd_jobs_t *ghostd_jobs_free(ghostd_jobs_t *jobs)
{
    if (!jobs)
        return NULL;
    cairn_loop_t *loop = cairn_service_loop(jobs->svc);
    /* peers first: their callbacks never run after this */
    jobs->peers = cairn_peers_free(jobs->peers);
    jobs_settle_free_all(jobs);
    while (jobs->queries) {
        jobs_query_t *q = jobs->queries;
        jobs->queries = q->next;
        if (q->d)
            cairn_deferred_fail(jobs->svc, q->d, CAIRN_UNAVAILABLE, "ghostd is stopping");
        q->d = NULL;
        jobs_query_free(q);
    }
    while (jobs->n_jobs)
        jobs_job_drop(jobs->jobs[0], "ghostd is stopping; the job runs on");
    free(jobs->jobs);
    jobs->view = cairn_view_free(jobs->view);
    if (jobs->sweep_timer > 0)
        cairn_loop_cancel_timer(loop, jobs->sweep_timer);
    if (jobs->expire_timer > 0)
        cairn_loop_cancel_timer(loop, jobs->expire_timer);
    free(jobs->left_cgroups);
    free(jobs);
    return NULL;
}

/* ---- for restart.c ------------------------------------------------------------ */

const char *ghostd_jobs_dir(const ghostd_jobs_t *jobs)
{
    return jobs->dir;
}

const ghostd_jobrec_t *ghostd_jobs_running(const ghostd_jobs_t *jobs, const char *gpid)
{
    const ghostd_job_t *job = jobs ? jobs_find(jobs, gpid) : NULL;

    return job && !job->launching && !job->exited ? &job->rec : NULL;
}

bool ghostd_jobs_has(const ghostd_jobs_t *jobs, const char *gpid)
{
    return jobs && jobs_find(jobs, gpid) != NULL;
}

int ghostd_jobs_checkpointed(ghostd_jobs_t *jobs, const char *gpid, uint64_t ms,
                             uint32_t replica)
{
    ghostd_job_t *job = jobs_find(jobs, gpid);

    if (!job || job->launching || job->exited)
        return -ENOENT;
    job->rec.last_checkpoint_ms = ms;
    job->rec.replica = replica;
    return ghostd_jobrec_write(job->dir, &job->rec);
}

int ghostd_jobs_adopt_restored(ghostd_jobs_t *jobs, ghostd_jobrec_t *rec)
{
    ghostd_job_t *job = jobs_find(jobs, rec->gpid);

    if (job && !job->exited)
        return -EEXIST;
    if (job)   /* an ended entry of an earlier life here */
        jobs_job_drop(job, "the job was restarted");
    if (!(job = jobs_job_new(jobs)))
        return -ENOSPC;
    job->rec = *rec;
    memset(rec, 0, sizeof *rec);   /* argv is the table's now */
    snprintf(job->dir, sizeof job->dir, "%s/%s", jobs->dir, job->rec.gpid);
    job->rec.host_start = 0;       /* the restored reaper's, read now */
    int r = jobs_job_watch(job);
    if (r < 0) {
        jobs_job_ended(job);
        return 0;
    }
    r = ghostd_jobrec_write(job->dir, &job->rec);
    if (r < 0)
        cairn_log_warn(r, "job", "gpid=%s msg=\"cannot write %s/job.json, "
                       "ignoring\"", job->rec.gpid, job->dir);
    restart_job_running(jobs->gd, job->rec.gpid);
    return 0;
}

int ghostd_jobs_mark_lost(ghostd_jobs_t *jobs, const char *gpid, const char *why)
{
    ghostd_job_t *job = jobs_find(jobs, gpid);
    ghostd_jobrec_t rec = { 0 };
    char dir[PATH_MAX];

    if (job && !job->exited)
        return -EEXIST;   /* it runs here */
    snprintf(dir, sizeof dir, "%s/%s", jobs->dir, gpid);
    int r = ghostd_jobrec_read(dir, &rec);
    if (r < 0)
        return r;
    ghostd_exitrec_t ex = { .exit_code = -1, .exit_signal = 0, .end_ms = cairn_realtime_ms() };
    snprintf(ex.lost, sizeof ex.lost, "%s", why);
    r = ghostd_exitrec_write(dir, &ex, rec.uid, rec.gid);
    if (r < 0 || job || !(job = jobs_job_new(jobs))) {
        ghostd_jobrec_clear(&rec);
        return r < 0 ? r : 0;
    }
    job->rec = rec;
    snprintf(job->dir, sizeof job->dir, "%s", dir);
    job->exit = ex;
    job->exited = true;
    job->ended_at = cairn_now_ms();
    cairn_log_warn(0, "job-lost", "gpid=%s node=%u msg=\"%s\"", gpid, rec.node, why);
    return 0;
}

void ghostd_jobs_supersede(ghostd_jobs_t *jobs, const char *gpid_arg, const char *why)
{
    char gpid[GHOSTD_GPID_MAX], cg[64];

    snprintf(gpid, sizeof gpid, "%s", gpid_arg);   /* may be the record's own */
    ghostd_job_t *job = jobs_find(jobs, gpid);

    if (!job || job->launching)
        return;
    if (!job->exited && job->pidfd >= 0)
        jobs_pidfd_signal(job->pidfd, SIGKILL);   /* the namespace dies with it */
    cairn_log_warn(0, "job-superseded", "gpid=%s host_pid=%d msg=\"%s; this copy "
                   "was killed\"", gpid, (int)job->rec.host_pid, why);
    /* No exit record: the job lives on elsewhere (waits follow it); the
     * sweep reaps this copy. */
    jobs_waits_follow(job, why);
    jobs_job_drop(job, why);
    restart_job_ended(jobs->gd, gpid, 0);   /* its checkpoints stop here */
    jobs_cgroup_name(gpid, cg, sizeof cg);
    ghost_place_kill_cgroup(cg);
}

/* ---- for migrate.c (migration, jobs.h) -------------------------------------- */

void ghostd_jobs_set_migrating(ghostd_jobs_t *jobs, const char *gpid, bool migrating,
                               uint32_t to, const char *id)
{
    ghostd_job_t *job = gpid ? jobs_find(jobs, gpid) : NULL;

    if (!job || job->exited)
        return;
    job->migrating = migrating;
    job->rec.migrating_to = migrating ? to : 0;
    snprintf(job->rec.migration, sizeof job->rec.migration, "%s", migrating && id ? id : "");
    int r = ghostd_jobrec_write(job->dir, &job->rec);
    if (r < 0)
        cairn_log_warn(r, "job", "gpid=%s msg=\"cannot record the move in %s/job.json: "
                       "a successor of this ghostd would not settle it\"", gpid, job->dir);
}

void ghostd_jobs_release(ghostd_jobs_t *jobs, const char *gpid)
{
    ghostd_job_t *job = gpid ? jobs_find(jobs, gpid) : NULL;
    char msg[96];

    if (!job || job->exited)
        return;
    /* A client's wait follows the job; a forwarded one is told, and its
     * ghostd follows. */
    snprintf(msg, sizeof msg, "wait: job %s moved to another node", gpid);
    cairn_log_info("job-left", "gpid=%s host_pid=%d", gpid, (int)job->rec.host_pid);
    if (job->rec.sub_cgroup) {   /* emptied once ghost-dump killed the tree */
        char cg[GHOSTD_GPID_MAX + 8];
        jobs_cgroup_name(gpid, cg, sizeof cg);
        s_left_cgroup(jobs, cg);
    }
    jobs_waits_follow(job, msg);
    jobs_job_drop(job, msg);
    restart_job_ended(jobs->gd, gpid, 0);   /* its checkpoints go on from the target */
}

void ghostd_jobs_take_back(ghostd_jobs_t *jobs, const char *gpid)
{
    if (!gpid || jobs_find(jobs, gpid))
        return;
    ghostd_jobs_cgroup_wanted(jobs, gpid);
    s_adopt(jobs, gpid, false);
    ghostd_jobs_set_migrating(jobs, gpid, false, 0, NULL);
}

int ghostd_jobs_arrived(ghostd_jobs_t *jobs, const char *gpid, pid_t host_pid,
                        const char *cgroup, const char *unit, bool sub_cgroup)
{
    char dir[PATH_MAX];
    ghostd_job_t *job;
    int r;

    if (jobs_find(jobs, gpid))
        return -EEXIST;
    if (!(job = jobs_job_new(jobs)))
        return -ENOMEM;
    snprintf(dir, sizeof dir, "%s/%s", jobs->dir, gpid);
    snprintf(job->dir, sizeof job->dir, "%s", dir);
    if ((r = ghostd_jobrec_read(dir, &job->rec)) < 0) {
        jobs_job_drop(job, "");
        return r;
    }
    job->rec.node = jobs->self;
    job->rec.host_pid = (int32_t)host_pid;
    job->rec.host_start = 0;   /* jobs_job_watch reads it */
    job->rec.moves++;
    snprintf(job->rec.cgroup, sizeof job->rec.cgroup, "%s", cgroup ? cgroup : "");
    snprintf(job->rec.unit, sizeof job->rec.unit, "%s", unit ? unit : "");
    job->rec.sub_cgroup = sub_cgroup;
    job->rec.migrating_to = 0;   /* the move ended: the source's mark goes */
    job->rec.migration[0] = '\0';
    int w = jobs_job_watch(job);
    int k = ghostd_jobrec_write(dir, &job->rec);
    if (k < 0)
        cairn_log_warn(k, "job", "gpid=%s msg=\"cannot write %s/job.json, ignoring\"",
                       gpid, dir);
    cairn_log_info("job-arrived", "gpid=%s host_pid=%d moves=%u cgroup=%s", gpid,
                   (int)host_pid, job->rec.moves, job->rec.cgroup);
    if (w < 0) {
        jobs_job_ended(job);   /* it ended already */
        return -ESRCH;
    }
    restart_job_running(jobs->gd, gpid);   /* checkpoints, if it asked for them */
    return 0;
}

void ghostd_jobs_set_pages_pending(ghostd_jobs_t *jobs, const char *gpid, bool pending)
{
    ghostd_job_t *job = gpid ? jobs_find(jobs, gpid) : NULL;

    if (job)
        job->pages_pending = pending;
}

int ghostd_jobs_lose(ghostd_jobs_t *jobs, const char *gpid, const char *why)
{
    ghostd_job_t *job = jobs_find(jobs, gpid);

    if (!job)
        return ghostd_jobs_mark_lost(jobs, gpid, why);
    if (job->launching)
        return -EBUSY;
    if (job->exited && !job->exit.lost[0] && job->exit.exit_signal != SIGKILL)
        return 0;   /* it ended on its own first: its own record says how */
    snprintf(job->exit.lost, sizeof job->exit.lost, "%s", why);
    if (!job->exited) {
        job->exit.exit_code = -1;
        job->exit.exit_signal = SIGKILL;
        job->exit.end_ms = cairn_realtime_ms();
        if (job->pidfd >= 0)
            jobs_pidfd_signal(job->pidfd, SIGKILL);
    }
    /* The record first, so that jobs_job_ended (now, or when it ended) keeps it. */
    int r = ghostd_exitrec_write(job->dir, &job->exit, job->rec.uid, job->rec.gid);
    cairn_log_warn(0, "job-lost", "gpid=%s node=%u msg=\"%s\"", gpid, job->rec.node, why);
    if (!job->exited)
        jobs_job_ended(job);
    return r;
}

int ghostd_jobs_describe(const ghostd_jobs_t *jobs, const char *gpid,
                         Cairn__Ghostd__Job *m)
{
    ghostd_job_t *job = gpid ? jobs_find(jobs, gpid) : NULL;

    if (!job || job->launching)
        return -ENOENT;
    jobs_job_msg(job, m);
    return 0;
}
