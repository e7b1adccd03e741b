/* jobs.c - ghostd's job table and the job requests (jobs.h).
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
 * Requests about other nodes' jobs go out as queries: one request per
 * ghostd asked (cairn_peers_call_as: the caller's user, vouched for by
 * this node), each with the deadline left, and the query answers when it
 * can -- ps when every node answered or timed out (each one listed with
 * reachable and why), signal and wait at the first decisive answer (the
 * job was found: its reply or its refusal), else when all said not-found.
 * A query lives until its last callback ran. One whose every answer was
 * known at once (nobody to ask) is answered from a 0 ms timer: a
 * deferred request must not be answered inside its own handler.
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
#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "peer.h"
#include "restart.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"
#include "view.h"

#define S_SWEEP_MS 200            /* orphan reaping */
#define S_EXPIRE_MS 30000         /* dropping old exited jobs */
#define S_DEFAULT_DEADLINE_MS 3000 /* a request without Header.deadline_ms */
#define S_MAX_ARGS 4096           /* argv and env entries of a run */
#define S_MAX_ARG_BYTES (1 << 20) /* their total size */

struct ghostd_job {
    ghostd_jobs_t *jobs;       /* the table */
    ghostd_jobrec_t rec;       /* job.json */
    char dir[PATH_MAX];        /* <jobs>/<gpid> */
    bool launching;            /* ghost-init runs: not listed yet */
    int pidfd;                 /* on the reaper, -1 once it ended */
    int64_t watch;             /* loop watch on pidfd, 0 if none */
    bool exited;               /* ended: exit is meaningful */
    ghostd_exitrec_t exit;     /* how */
    uint64_t ended_at;         /* monotonic ms we saw it end */
    bool killed;               /* SIGKILL sent to the reaper from here */
    bool migrating;            /* being moved to another node (migrate.c) */
    struct s_wait **waits;     /* wait requests deferred on it */
    size_t n_waits;
};

/* A wait deferred until the job ends or the deadline. */
typedef struct s_wait {
    ghostd_job_t *job;         /* what it waits for */
    cairn_deferred_t *d;       /* the request; owned */
    int64_t timer;             /* its deadline */
    uint64_t since;            /* monotonic ms of the request */
} s_wait_t;

typedef enum { Q_RUN, Q_PS, Q_SIGNAL, Q_WAIT } s_qkind_t;

/* Requests to other ghostds for one request of ours. */
typedef struct s_query {
    ghostd_jobs_t *jobs;
    s_qkind_t kind;
    cairn_deferred_t *d;       /* our request; NULL once answered */
    cairn_caller_t caller;     /* on whose behalf */
    char gpid[GHOSTD_GPID_MAX]; /* signal, wait */
    size_t asked, heard;       /* requests sent, callbacks run */
    uint32_t nodes[CAIRN_VIEW_MAX_NODES]; /* asked, in order */
    Cairn__Ghostd__Reply *replies[CAIRN_VIEW_MAX_NODES]; /* OK replies; owned */
    int codes[CAIRN_VIEW_MAX_NODES];      /* their codes */
    char *errors[CAIRN_VIEW_MAX_NODES];   /* their messages; owned */
    Cairn__Ghostd__PsReply *local;        /* ps: this node's part; owned */
    uint32_t only_node;        /* ps: the node asked for, 0: all */
    int64_t settle;            /* timer answering a query nobody had to
                                  answer, 0 if none */
    struct s_query *next;      /* in jobs->queries */
} s_query_t;

struct ghostd_jobs {
    ghostd_t *gd;              /* the daemon */
    cairn_service_t *svc;      /* its skeleton */
    uint32_t self;             /* this node */
    char dir[PATH_MAX - GHOSTD_GPID_MAX - 1]; /* <run base>/<cluster>/jobs */
    uint64_t next_seq;         /* the next sequence number to try */
    ghostd_job_t **jobs;       /* the table */
    size_t n_jobs;
    cairn_view_t *view;        /* the alive ghostds */
    cairn_peers_t *peers;      /* to them */
    s_query_t *queries;        /* in flight */
    int64_t sweep_timer, expire_timer;
};

/* ---- small helpers ------------------------------------------------------- */

static int s_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int s_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static ghostd_t *s_gd(void *ctx) { return ctx; }

/* How long a request may take from now: Header.deadline_ms (else
 * `dflt`), less a margin for the answer to travel back. */
static uint64_t s_budget_ms(cairn_request_t *req, uint64_t dflt)
{
    const Cairn__Header *h = cairn_request_header(req);
    uint64_t d = h && h->deadline_ms ? h->deadline_ms : dflt;
    uint64_t margin = d / 10 < 300 ? d / 10 : 300;

    if (d > 3600000)
        d = 3600000;
    return d > margin + 1 ? d - margin : 1;
}

static int s_fail(cairn_request_t *req, const cairn_error_t *err)
{
    cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(err->code),
                   err->message);
    return cairn_request_fail(req, err->code, "%s", err->message);
}

/* The cgroup name of a job's sub-cgroups. */
static void s_cgroup_name(const char *gpid, char *out, size_t size)
{
    snprintf(out, size, "job-%s", gpid);
}

/* ---- the table ----------------------------------------------------------- */

static ghostd_job_t *s_find(const ghostd_jobs_t *jobs, const char *gpid)
{
    for (size_t i = 0; i < jobs->n_jobs; i++)
        if (strcmp(jobs->jobs[i]->rec.gpid, gpid) == 0)
            return jobs->jobs[i];
    return NULL;
}

static ghostd_job_t *s_job_new(ghostd_jobs_t *jobs)
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

static void s_wait_answer(s_wait_t *w, const ghostd_job_t *job, int code,
                          const char *msg);

/* Takes job out of the table and frees it; its waits are answered
 * UNAVAILABLE with msg. */
static void s_job_drop(ghostd_job_t *job, const char *msg)
{
    ghostd_jobs_t *jobs = job->jobs;

    while (job->n_waits)
        s_wait_answer(job->waits[0], NULL, CAIRN_UNAVAILABLE, msg);
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
static void s_job_msg(const ghostd_job_t *job, Cairn__Ghostd__Job *m)
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

static void s_job_ended(ghostd_job_t *job)
{
    int status = 0;
    pid_t r;
    char cg[64];

    do
        r = waitpid(job->rec.host_pid, &status, WNOHANG | __WALL);
    while (r < 0 && errno == EINTR);
    s_job_unwatch(job);
    if (ghostd_exitrec_read(job->dir, &job->exit) < 0) {
        job->exit = s_exit_without_record(job, r == job->rec.host_pid, status);
        int w = ghostd_exitrec_write(job->dir, &job->exit, job->rec.uid, job->rec.gid);
        if (w < 0)
            cairn_log_warn(w, "job-exit", "gpid=%s msg=\"cannot write %s/exit, "
                           "ignoring\"", job->rec.gpid, job->dir);
    }
    job->exited = true;
    job->ended_at = cairn_now_ms();
    if (job->rec.sub_cgroup) {
        s_cgroup_name(job->rec.gpid, cg, sizeof cg);
        ghost_place_remove_cgroup(cg);
    }
    cairn_log_info("job-exit", "gpid=%s host_pid=%d exit_code=%d exit_signal=%d",
                   job->rec.gpid, (int)job->rec.host_pid, job->exit.exit_code,
                   job->exit.exit_signal);
    restart_job_ended(job->jobs->gd, job->rec.gpid, job->rec.replica);
    while (job->n_waits)
        s_wait_answer(job->waits[0], job, CAIRN_OK, NULL);
}

static int s_on_pidfd(cairn_loop_t *loop, int fd, void *zsock, short revents,
                      void *userdata)
{
    s_job_ended(userdata);
    return 0;
}

/* Watches a running job's reaper through a pidfd that names it: opened,
 * then checked against the recorded start time (a pid reused since is
 * another process). -ESRCH when the reaper is gone. */
static int s_job_watch(ghostd_job_t *job)
{
    uint64_t start = 0;
    int fd = s_pidfd_open(job->rec.host_pid);

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
 * ended, joins the table. */
static void s_adopt(ghostd_jobs_t *jobs, const char *gpid)
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
    ghostd_job_t *job = s_job_new(jobs);
    if (!job) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    job->rec = rec;
    snprintf(job->dir, sizeof job->dir, "%s", dir);
    if (!ended && s_job_watch(job) == 0) {
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
            s_adopt(jobs, e->d_name);
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

static int s_on_sweep(cairn_loop_t *loop, int64_t id, void *userdata)
{
    ghostd_jobs_t *jobs = userdata;

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
            s_cgroup_name(job->rec.gpid, cg, sizeof cg);
            ghost_place_remove_cgroup(cg);
        }
        s_job_drop(job, "the job was dropped");
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

static void s_query_free(s_query_t *q);

ghostd_jobs_t *ghostd_jobs_free(ghostd_jobs_t *jobs)
{
    if (!jobs)
        return NULL;
    cairn_loop_t *loop = cairn_service_loop(jobs->svc);
    /* peers first: their callbacks never run after this */
    jobs->peers = cairn_peers_free(jobs->peers);
    while (jobs->queries) {
        s_query_t *q = jobs->queries;
        jobs->queries = q->next;
        if (q->d)
            cairn_deferred_fail(jobs->svc, q->d, CAIRN_UNAVAILABLE, "ghostd is stopping");
        q->d = NULL;
        s_query_free(q);
    }
    while (jobs->n_jobs)
        s_job_drop(jobs->jobs[0], "ghostd is stopping; the job runs on");
    free(jobs->jobs);
    jobs->view = cairn_view_free(jobs->view);
    if (jobs->sweep_timer > 0)
        cairn_loop_cancel_timer(loop, jobs->sweep_timer);
    if (jobs->expire_timer > 0)
        cairn_loop_cancel_timer(loop, jobs->expire_timer);
    free(jobs);
    return NULL;
}

/* ---- queries to other ghostds ---------------------------------------------- */

/* Frees a PsReply s_local_ps made. NULL-safe. */
static void s_ps_reply_free(Cairn__Ghostd__PsReply *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n_jobs; i++)
        free(ps->jobs[i]);
    free(ps->jobs);
    free(ps);
}

static void s_query_free(s_query_t *q)
{
    if (q->settle > 0)
        cairn_loop_cancel_timer(cairn_service_loop(q->jobs->svc), q->settle);
    for (size_t i = 0; i < q->asked; i++) {
        if (q->replies[i])
            protobuf_c_message_free_unpacked(&q->replies[i]->base, NULL);
        free(q->errors[i]);
    }
    s_ps_reply_free(q->local);
    free(q);
}

/* Unlinks q from the table and frees it once every callback ran. */
static void s_query_maybe_free(s_query_t *q)
{
    if (q->heard < q->asked || q->d || q->settle)
        return;
    for (s_query_t **p = &q->jobs->queries; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            break;
        }
    s_query_free(q);
}

static void s_query_reply(s_query_t *q, ProtobufCMessage *reply)
{
    if (q->d)
        cairn_deferred_reply(q->jobs->svc, q->d, reply);
    q->d = NULL;
}

static void s_query_fail(s_query_t *q, int code, const char *msg)
{
    if (q->d) {
        cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(code), msg);
        cairn_deferred_fail(q->jobs->svc, q->d, code, msg);
    }
    q->d = NULL;
}

static void s_query_done(s_query_t *q);
static void s_query_heard(s_query_t *q, size_t i);

static void s_on_peer(void *userdata, uint32_t node, int code, const char *message,
                      ProtobufCMessage *reply)
{
    s_query_t *q = userdata;
    size_t i = 0;

    while (i < q->asked && (q->nodes[i] != node || q->codes[i] != -1))
        i++;
    if (i == q->asked) {   /* cannot be: one request per node */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    q->codes[i] = code;
    q->replies[i] = (Cairn__Ghostd__Reply *)reply;
    q->errors[i] = strdup(message ? message : "");
    q->heard++;
    s_query_heard(q, i);
    if (q->heard == q->asked)
        s_query_done(q);
    s_query_maybe_free(q);
}

/* Sends req to node on behalf of q's caller; its answer comes to
 * s_on_peer. A request that cannot be sent counts as heard, with why. */
static void s_query_ask(s_query_t *q, uint32_t node, const ProtobufCMessage *req,
                        uint64_t timeout_ms)
{
    size_t i = q->asked++;
    const char *ep = cairn_view_endpoint(q->jobs->view, node);
    int r = ep ? 0 : -ENOENT;

    q->nodes[i] = node;
    q->codes[i] = -1;
    if (r == 0)
        r = cairn_peers_call_as(q->jobs->peers, node, ep, req,
                                (uint32_t)(timeout_ms ? timeout_ms : 1),
                                &q->caller, s_on_peer, q);
    if (r == 0)
        return;
    q->codes[i] = CAIRN_UNAVAILABLE;
    q->errors[i] = strdup(ep ? strerror(-r) : "no ghostd endpoint for it");
    q->heard++;
}

static s_query_t *s_query_new(ghostd_jobs_t *jobs, s_qkind_t kind,
                              cairn_request_t *req)
{
    s_query_t *q = calloc(1, sizeof *q);

    if (!q)
        return NULL;
    q->jobs = jobs;
    q->kind = kind;
    q->caller = *cairn_request_caller(req);
    q->d = cairn_request_defer(req);
    if (!q->d) {
        free(q);
        return NULL;
    }
    q->next = jobs->queries;
    jobs->queries = q;
    return q;
}

static int s_on_settle(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_query_t *q = userdata;

    q->settle = 0;
    s_query_done(q);
    s_query_maybe_free(q);
    return 0;
}

/* After the asks: a query that heard everything already is answered from
 * the loop, after its handler returned. */
static int s_query_sent(s_query_t *q)
{
    if (q->heard == q->asked && q->d) {
        q->settle = cairn_loop_add_timer(cairn_service_loop(q->jobs->svc), 0, 0,
                                         s_on_settle, q);
        if (q->settle < 0) {
            q->settle = 0;
            s_query_done(q);   /* cannot wait: answer now, as a last resort */
        }
    }
    s_query_maybe_free(q);
    return CAIRN_REPLY_DEFERRED;
}

/* The other alive ghostds (every ghostd of the description while the
 * view is not known), in id order, into out; their number. */
static size_t s_others(ghostd_jobs_t *jobs, uint32_t out[CAIRN_VIEW_MAX_NODES])
{
    const cairn_description_t *d = cairn_service_description(jobs->svc);
    size_t n = 0;

    if (cairn_view_known(jobs->view)) {
        uint32_t alive[CAIRN_VIEW_MAX_NODES];
        size_t k = cairn_view_members(jobs->view, alive);
        for (size_t i = 0; i < k; i++)
            if (alive[i] != jobs->self)
                out[n++] = alive[i];
        return n;
    }
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *nd = cairn_description_node(d, i);
        if (nd->id != jobs->self && cairn_description_node_runs(d, nd, "ghostd"))
            out[n++] = nd->id;
    }
    return n;
}

/* ---- run -------------------------------------------------------------------- */

/* Checks a RunRequest's strings. */
static int s_check_run(const Cairn__Ghostd__RunRequest *rr, cairn_error_t *err)
{
    size_t bytes = 0;

    if (rr->n_argv == 0 || !rr->argv[0] || !rr->argv[0][0])
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run: the command is empty (argv[0] missing)");
    if (rr->n_argv > S_MAX_ARGS || rr->n_env > S_MAX_ARGS)
        return cairn_error_set(err, -E2BIG, CAIRN_INVALID_ARGUMENT,
                               "run: more than %d arguments or environment "
                               "entries", S_MAX_ARGS);
    for (size_t i = 0; i < rr->n_argv; i++)
        bytes += strlen(rr->argv[i]) + 1;
    for (size_t i = 0; i < rr->n_env; i++) {
        const char *eq = strchr(rr->env[i], '=');
        if (!eq || eq == rr->env[i])
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                                   "run: environment entry '%.64s' is not "
                                   "NAME=VALUE", rr->env[i]);
        bytes += strlen(rr->env[i]) + 1;
    }
    if (bytes > S_MAX_ARG_BYTES)
        return cairn_error_set(err, -E2BIG, CAIRN_INVALID_ARGUMENT,
                               "run: arguments and environment exceed %d bytes",
                               S_MAX_ARG_BYTES);
    if (rr->cwd && *rr->cwd && rr->cwd[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run: cwd '%.200s' is not an absolute path", rr->cwd);
    if (rr->cwd && strlen(rr->cwd) >= PATH_MAX)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "run: cwd is longer than %d bytes", PATH_MAX - 1);
    if (rr->name && (strlen(rr->name) >= GHOSTD_JOB_NAME_MAX || strchr(rr->name, '\n')))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run: name must be one line shorter than %d bytes",
                               GHOSTD_JOB_NAME_MAX);
    if (rr->checkpoint_every_s > RESTART_MAX_EVERY_S)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run: checkpoint_every_s %u is not 1..%d seconds",
                               rr->checkpoint_every_s, RESTART_MAX_EVERY_S);
    if (rr->restart_on_failure && !rr->checkpoint_every_s)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run: restart_on_failure restarts from the last "
                               "checkpoint: it needs checkpoint_every_s");
    return 0;
}

/* Takes the next gpid by making its directory (0700, the user's). */
static int s_take_gpid(ghostd_jobs_t *jobs, ghostd_job_t *job, cairn_error_t *err)
{
    for (int tries = 0; tries < 10000; tries++) {
        uint64_t seq = jobs->next_seq++;
        ghostd_gpid_format(jobs->self, seq, job->rec.gpid, sizeof job->rec.gpid);
        snprintf(job->dir, sizeof job->dir, "%s/%s", jobs->dir, job->rec.gpid);
        if (mkdir(job->dir, 0700) == 0) {
            if (chown(job->dir, job->rec.uid, job->rec.gid) < 0) {
                int e = errno;
                rmdir(job->dir);
                return cairn_error_set(err, -e, CAIRN_FAILED_PRECONDITION,
                                       "run: cannot give %s to uid %u: %s",
                                       job->dir, job->rec.uid, strerror(e));
            }
            return 0;
        }
        if (errno != EEXIST)
            return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                                   "run: cannot make the job directory %s: %s",
                                   job->dir, strerror(errno));
    }
    return cairn_error_set(err, -EEXIST, CAIRN_INTERNAL,
                           "run: no free gpid in %s", jobs->dir);
}

/* Removes a failed launch's directory: the files ghost-init and we make. */
static void s_remove_job_dir(const char *dir)
{
    static const char *const files[] = { "stdout", "stderr", "exit", "exit.tmp",
                                         "job.json", "job.json.tmp" };
    char path[PATH_MAX + 32];

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Starts ghost-init for job with rr's command; defers req. */
static int s_launch(ghostd_jobs_t *jobs, ghostd_job_t *job, cairn_request_t *req,
                    const Cairn__Ghostd__RunRequest *rr, cairn_error_t *err)
{
    ghostd_t *gd = jobs->gd;
    char as[32], scope[160], cg[64];
    size_t n = 0;
    _cleanup_free_ char **argv = calloc(rr->n_argv + 20, sizeof *argv);
    _cleanup_free_ char **envp = calloc(rr->n_env + 1, sizeof *envp);

    if (!argv || !envp)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    snprintf(as, sizeof as, "%u:%u", job->rec.uid, job->rec.gid);
    argv[n++] = NULL;   /* the helper's path */
    argv[n++] = "--job";
    argv[n++] = job->dir;
    argv[n++] = "--gpid";
    argv[n++] = job->rec.gpid;
    argv[n++] = "--as";
    argv[n++] = as;
    argv[n++] = "--cwd";
    argv[n++] = rr->cwd && *rr->cwd ? rr->cwd : "/";
    if (gd->placement.mode == GHOSTD_PLACE_SCOPE) {
        snprintf(scope, sizeof scope, "cairn-job-%s.scope", job->rec.gpid);
        argv[n++] = "--scope";
        argv[n++] = scope;
        argv[n++] = "--slice";
        argv[n++] = GHOSTD_JOB_SLICE;
    } else {
        s_cgroup_name(job->rec.gpid, cg, sizeof cg);
        argv[n++] = "--cgroup";
        argv[n++] = cg;
        job->rec.sub_cgroup = true;
    }
    argv[n++] = "--";
    for (size_t i = 0; i < rr->n_argv; i++)
        argv[n++] = rr->argv[i];
    argv[n] = NULL;
    for (size_t i = 0; i < rr->n_env; i++)
        envp[i] = rr->env[i];
    return ghostd_helper_request(gd, req, GHOSTD_LAUNCH, argv, envp, job,
                                 cairn_request_caller(req), err);
}

static int s_run_here(ghostd_jobs_t *jobs, cairn_request_t *req,
                      const Cairn__Ghostd__RunRequest *rr)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    cairn_error_t err = { 0 };
    ghostd_job_t *job = s_job_new(jobs);

    if (!job)
        return cairn_request_fail(req, CAIRN_BUSY, "run: %d jobs are in the "
                                  "table; try again later", GHOSTD_MAX_JOBS);
    job->launching = true;
    job->rec.uid = c->uid;
    job->rec.gid = c->gid;
    job->rec.node = jobs->self;
    job->rec.start_ms = cairn_realtime_ms();
    job->rec.checkpoint_every_s = rr->checkpoint_every_s;
    job->rec.restart_on_failure = rr->restart_on_failure;
    snprintf(job->rec.name, sizeof job->rec.name, "%s", rr->name ? rr->name : "");
    int r = ghostd_jobrec_set_argv(&job->rec, rr->argv, rr->n_argv);
    if (r < 0)
        cairn_error_set(&err, r, CAIRN_INTERNAL, "out of memory");
    if (r == 0)
        r = s_take_gpid(jobs, job, &err);
    if (r == 0 && (r = s_launch(jobs, job, req, rr, &err)) >= 0)
        return r;
    if (job->dir[0] && job->rec.gpid[0])
        s_remove_job_dir(job->dir);
    s_job_drop(job, "");
    return s_fail(req, &err);
}

int ghostd_jobs_launched(ghostd_jobs_t *jobs, ghostd_helper_t *h, json_t *line)
{
    ghostd_job_t *job = h->job;
    json_t *hp = json_object_get(line, "host_pid");
    const char *cg = json_string_value(json_object_get(line, "cgroup"));
    const char *unit = json_string_value(json_object_get(line, "unit"));
    Cairn__Ghostd__RunReply rr = CAIRN__GHOSTD__RUN_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    Cairn__Ghostd__Job m;

    if (!json_is_integer(hp) || json_integer_value(hp) <= 1 ||
        json_integer_value(hp) > INT_MAX) {
        cairn_deferred_fail(jobs->svc, h->deferred, CAIRN_INTERNAL,
                            "ghost-init exited 0 but its output lacks a valid \"host_pid\"");
        h->deferred = NULL;
        return -EBADMSG;
    }
    job->rec.host_pid = (int32_t)json_integer_value(hp);
    snprintf(job->rec.cgroup, sizeof job->rec.cgroup, "%s", cg ? cg : "");
    snprintf(job->rec.unit, sizeof job->rec.unit, "%s", unit ? unit : "");
    job->launching = false;
    if (s_job_watch(job) < 0)
        s_job_ended(job);   /* it ended already (the sweep waits for us) */
    int r = ghostd_jobrec_write(job->dir, &job->rec);
    if (r < 0)
        cairn_log_warn(r, "job", "gpid=%s msg=\"cannot write %s/job.json, "
                       "ignoring\"", job->rec.gpid, job->dir);
    cairn_log_info("job-start", "gpid=%s host_pid=%d uid=%u cgroup=%s argv0=\"%s\"",
                   job->rec.gpid, (int)job->rec.host_pid, job->rec.uid,
                   job->rec.cgroup, job->rec.argv[0]);
    if (!job->exited)
        restart_job_running(jobs->gd, job->rec.gpid);
    s_job_msg(job, &m);
    rr.job = &m;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_RUN_REPLY;
    reply.run_reply = &rr;
    cairn_deferred_reply(jobs->svc, h->deferred, &reply.base);
    h->deferred = NULL;
    return 0;
}

void ghostd_jobs_launch_failed(ghostd_jobs_t *jobs, ghostd_job_t *job)
{
    char cg[64];

    if (!jobs || !job)
        return;
    if (job->rec.sub_cgroup) {
        s_cgroup_name(job->rec.gpid, cg, sizeof cg);
        ghost_place_remove_cgroup(cg);
    }
    s_remove_job_dir(job->dir);
    s_job_drop(job, "");
}

/* A run for another node: carried there on the caller's behalf. */
static int s_run_forward(ghostd_jobs_t *jobs, cairn_request_t *req,
                         const Cairn__Ghostd__Request *body, uint32_t node)
{
    const char *state = cairn_view_state(jobs->view, node);
    const cairn_description_t *d = cairn_service_description(jobs->svc);
    const cairn_node_desc_t *nd = cairn_description_find_node(d, node);

    if (!nd || !cairn_description_node_runs(d, nd, "ghostd"))
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "run: node %u is not a "
                                  "member running ghostd", node);
    if (cairn_view_known(jobs->view) && (!state || strcmp(state, "alive") != 0))
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "run: node %u is %s",
                                  node, state ? state : "not a member");
    uint64_t budget = s_budget_ms(req, 120000);
    s_query_t *q = s_query_new(jobs, Q_RUN, req);
    if (!q)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    s_query_ask(q, node, &body->base, budget);
    return s_query_sent(q);
}

int ghostd_jobs_handle_run(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = s_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__RunRequest *rr = body->run;
    cairn_error_t err = { 0 };

    if (!rr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "run: request body is empty");
    if (s_check_run(rr, &err) < 0)
        return s_fail(req, &err);
    if (rr->node > 255)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "run: node %u is not "
                                  "a node id (1..255)", rr->node);
    if (rr->node && rr->node != jobs->self)
        return s_run_forward(jobs, req, body, rr->node);
    return s_run_here(jobs, req, rr);
}

/* ---- ps -------------------------------------------------------------------- */

/* Whether the caller sees job: users their own, root all (or uid's). */
static bool s_visible(const cairn_caller_t *c, const ghostd_job_t *job,
                      const Cairn__Ghostd__PsRequest *pr)
{
    if (job->launching || !cairn_caller_may_act_on(c, job->rec.uid))
        return false;
    return !pr->has_uid || pr->uid == job->rec.uid;
}

/* This node's visible jobs as a PsReply the caller frees (s_query_free's
 * way: each Job malloc'ed, strings pointing into the table). */
static Cairn__Ghostd__PsReply *s_local_ps(ghostd_jobs_t *jobs, const cairn_caller_t *c,
                                          const Cairn__Ghostd__PsRequest *pr)
{
    Cairn__Ghostd__PsReply *ps = calloc(1, sizeof *ps);

    if (!ps)
        return NULL;
    cairn__ghostd__ps_reply__init(ps);
    ps->jobs = calloc(jobs->n_jobs + 1, sizeof *ps->jobs);
    if (!ps->jobs) {
        free(ps);
        return NULL;
    }
    for (size_t i = 0; i < jobs->n_jobs; i++) {
        if (!s_visible(c, jobs->jobs[i], pr))
            continue;
        Cairn__Ghostd__Job *m = malloc(sizeof *m);
        if (!m)
            break;
        s_job_msg(jobs->jobs[i], m);
        ps->jobs[ps->n_jobs++] = m;
    }
    return ps;
}

static int s_job_order(const void *a, const void *b)
{
    const Cairn__Ghostd__Job *x = *(Cairn__Ghostd__Job *const *)a;
    const Cairn__Ghostd__Job *y = *(Cairn__Ghostd__Job *const *)b;
    uint32_t nx = 0, ny = 0;
    uint64_t sx = 0, sy = 0;

    ghostd_gpid_parse(x->gpid, &nx, &sx);
    ghostd_gpid_parse(y->gpid, &ny, &sy);
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return sx < sy ? -1 : sx > sy;
}

static int s_answer_order(const void *a, const void *b)
{
    const Cairn__Ghostd__NodeAnswer *x = *(Cairn__Ghostd__NodeAnswer *const *)a;
    const Cairn__Ghostd__NodeAnswer *y = *(Cairn__Ghostd__NodeAnswer *const *)b;

    return x->node < y->node ? -1 : x->node > y->node;
}

/* Every job heard and every node asked (or known dead), merged. */
static void s_ps_done(s_query_t *q)
{
    ghostd_jobs_t *jobs = q->jobs;
    size_t n_jobs = q->local ? q->local->n_jobs : 0, n_nodes = 0;
    Cairn__Ghostd__NodeAnswer answers[CAIRN_VIEW_MAX_NODES + 1];
    Cairn__Ghostd__NodeAnswer *ap[CAIRN_VIEW_MAX_NODES + 1];
    char why[CAIRN_VIEW_MAX_NODES + 1][160];

    for (size_t i = 0; i < q->asked; i++)
        if (q->codes[i] == CAIRN_OK && q->replies[i] &&
            q->replies[i]->msg_case == CAIRN__GHOSTD__REPLY__MSG_PS_REPLY)
            n_jobs += q->replies[i]->ps_reply->n_jobs;
    _cleanup_free_ Cairn__Ghostd__Job **all = calloc(n_jobs + 1, sizeof *all);
    if (!all)
        return s_query_fail(q, CAIRN_INTERNAL, "out of memory");
    n_jobs = 0;
    for (size_t i = 0; q->local && i < q->local->n_jobs; i++)
        all[n_jobs++] = q->local->jobs[i];
    if (q->local) {   /* this node answered itself */
        cairn__ghostd__node_answer__init(&answers[n_nodes]);
        answers[n_nodes].node = jobs->self;
        answers[n_nodes].reachable = true;
        answers[n_nodes].error = "";
        ap[n_nodes] = &answers[n_nodes];
        n_nodes++;
    }
    for (size_t i = 0; i < q->asked; i++) {
        Cairn__Ghostd__NodeAnswer *a = &answers[n_nodes];
        cairn__ghostd__node_answer__init(a);
        a->node = q->nodes[i];
        bool ok = q->codes[i] == CAIRN_OK && q->replies[i] &&
                  q->replies[i]->msg_case == CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;
        a->reachable = ok;
        if (ok) {
            Cairn__Ghostd__PsReply *r = q->replies[i]->ps_reply;
            for (size_t k = 0; k < r->n_jobs; k++)
                all[n_jobs++] = r->jobs[k];
            a->error = "";
        } else {
            snprintf(why[n_nodes], sizeof why[0], "%s: %s",
                     q->codes[i] >= 0 ? cairn_code_name(q->codes[i]) : "internal",
                     q->errors[i] ? q->errors[i] : "");
            a->error = why[n_nodes];
        }
        ap[n_nodes++] = a;
    }
    /* members clusterd holds dead (or not heard from): listed, not asked */
    for (uint32_t id = 1; !q->only_node && id <= CAIRN_VIEW_MAX_NODES; id++) {
        const char *state = cairn_view_state(jobs->view, id);
        if (!state || id == jobs->self || strcmp(state, "alive") == 0 ||
            strcmp(state, "left") == 0)
            continue;
        Cairn__Ghostd__NodeAnswer *a = &answers[n_nodes];
        cairn__ghostd__node_answer__init(a);
        a->node = id;
        snprintf(why[n_nodes], sizeof why[0], "unavailable: clusterd says node %u "
                 "is %s", id, state);
        a->error = why[n_nodes];
        ap[n_nodes++] = a;
    }
    qsort(all, n_jobs, sizeof *all, s_job_order);
    qsort(ap, n_nodes, sizeof *ap, s_answer_order);
    Cairn__Ghostd__PsReply pr = CAIRN__GHOSTD__PS_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    pr.jobs = all;
    pr.n_jobs = n_jobs;
    pr.nodes = ap;
    pr.n_nodes = n_nodes;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;
    reply.ps_reply = &pr;
    s_query_reply(q, &reply.base);
}

int ghostd_jobs_handle_ps(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = s_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__PsRequest *pr = body->ps;
    const cairn_caller_t *c = cairn_request_caller(req);
    uint32_t others[CAIRN_VIEW_MAX_NODES];
    size_t n = 0;

    if (!pr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "ps: request body is empty");
    if (pr->node > 255)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "ps: node %u is not "
                                  "a node id (1..255)", pr->node);
    bool here = pr->local_only || pr->node == 0 || pr->node == jobs->self;
    if (!pr->local_only && pr->node != jobs->self)
        n = pr->node ? (others[0] = pr->node, 1) : s_others(jobs, others);
    Cairn__Ghostd__PsReply *local = here ? s_local_ps(jobs, c, pr) : NULL;
    if (here && !local)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    s_query_t *q = s_query_new(jobs, Q_PS, req);
    if (!q) {
        s_ps_reply_free(local);
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    q->only_node = pr->node;
    q->local = local;
    Cairn__Ghostd__PsRequest sub = *pr;
    Cairn__Ghostd__Request fwd = CAIRN__GHOSTD__REQUEST__INIT;
    sub.local_only = true;
    sub.node = 0;
    fwd.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
    fwd.ps = &sub;
    uint64_t budget = s_budget_ms(req, S_DEFAULT_DEADLINE_MS);
    for (size_t i = 0; q->d && i < n; i++)
        s_query_ask(q, others[i], &fwd.base, budget);
    return s_query_sent(q);
}

/* ---- signal and wait: finding the job ----------------------------------- */

/* The job of gpid from its directory alone (no ghostd has it in its
 * table): 0 and *ret filled (ret->exited when an exit record is there),
 * -ENOENT when there is no such job. */
static int s_job_from_dir(ghostd_jobs_t *jobs, const char *gpid, ghostd_job_t *ret)
{
    memset(ret, 0, sizeof *ret);
    ret->pidfd = -1;
    snprintf(ret->dir, sizeof ret->dir, "%s/%s", jobs->dir, gpid);
    int r = ghostd_jobrec_read(ret->dir, &ret->rec);
    if (r < 0)
        return r == -EBADMSG ? -ENOENT : r;
    ret->exited = ghostd_exitrec_read(ret->dir, &ret->exit) == 0;
    return 0;
}

/* Replies to a signal or wait with job. */
static void s_reply_job(cairn_service_t *svc, cairn_deferred_t *d, s_qkind_t kind,
                        const ghostd_job_t *job)
{
    Cairn__Ghostd__SignalReply sr = CAIRN__GHOSTD__SIGNAL_REPLY__INIT;
    Cairn__Ghostd__WaitReply wr = CAIRN__GHOSTD__WAIT_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    Cairn__Ghostd__Job m;

    s_job_msg(job, &m);
    if (kind == Q_SIGNAL) {
        sr.job = &m;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_SIGNAL_REPLY;
        reply.signal_reply = &sr;
    } else {
        wr.job = &m;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_WAIT_REPLY;
        reply.wait_reply = &wr;
    }
    cairn_deferred_reply(svc, d, &reply.base);
}

/* Fills req's own reply (signal or wait) with job, answered when the
 * handler returns: the messages live in the request's arena, their
 * strings in the table. */
static int s_reply_now(cairn_request_t *req, s_qkind_t kind, const ghostd_job_t *job)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__Job *m = cairn_request_alloc(req, sizeof *m);
    Cairn__Ghostd__SignalReply *sr = cairn_request_alloc(req, sizeof *sr);
    Cairn__Ghostd__WaitReply *wr = cairn_request_alloc(req, sizeof *wr);

    if (!m || !sr || !wr)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    s_job_msg(job, m);
    if (kind == Q_SIGNAL) {
        cairn__ghostd__signal_reply__init(sr);
        sr->job = m;
        reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_SIGNAL_REPLY;
        reply->signal_reply = sr;
    } else {
        cairn__ghostd__wait_reply__init(wr);
        wr->job = m;
        reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_WAIT_REPLY;
        reply->wait_reply = wr;
    }
    return CAIRN_REPLY_NOW;
}

/* Nobody runs gpid: its directory says whether it ever ran and how it
 * ended; `unreached` names the nodes that did not answer. */
static void s_not_running(s_query_t *q, const char *unreached)
{
    char who[128], msg[640];
    ghostd_job_t job;
    int r = s_job_from_dir(q->jobs, q->gpid, &job);

    if (r < 0) {
        snprintf(msg, sizeof msg, "no job %s in the cluster%s%s", q->gpid,
                 *unreached ? " (no answer from: " : "", unreached);
        if (*unreached)
            strncat(msg, ")", sizeof msg - strlen(msg) - 1);
        return s_query_fail(q, CAIRN_NOT_FOUND, msg);
    }
    if (!cairn_caller_may_act_on(&q->caller, job.rec.uid)) {
        snprintf(msg, sizeof msg, "job %s is uid %u's; %s may act only on its own "
                 "jobs", q->gpid, job.rec.uid,
                 cairn_caller_describe(&q->caller, who, sizeof who));
        s_query_fail(q, CAIRN_PERMISSION_DENIED, msg);
    } else if (job.exited && q->kind == Q_WAIT) {
        s_reply_job(q->jobs->svc, q->d, Q_WAIT, &job);
        q->d = NULL;
    } else if (job.exited) {
        snprintf(msg, sizeof msg, "job %s has exited (exit_code %d, exit_signal %d)",
                 q->gpid, job.exit.exit_code, job.exit.exit_signal);
        s_query_fail(q, CAIRN_FAILED_PRECONDITION, msg);
    } else {
        snprintf(msg, sizeof msg, "job %s is not running on any node that "
                 "answered; its node %u %s", q->gpid, job.rec.node,
                 *unreached ? "did not answer" : "does not have it");
        s_query_fail(q, *unreached ? CAIRN_UNAVAILABLE : CAIRN_NOT_FOUND, msg);
    }
    ghostd_jobrec_clear(&job.rec);
}

/* A signal or wait answer from node i: decisive unless not-found or the
 * node could not be reached. */
static void s_query_heard(s_query_t *q, size_t i)
{
    int code = q->codes[i];

    if (q->kind == Q_PS || q->kind == Q_RUN || !q->d)
        return;
    if (code == CAIRN_OK && q->replies[i]) {
        s_query_reply(q, &q->replies[i]->base);
        return;
    }
    /* found, and refused (not the caller's, exited, ...); a wait's
     * "still runs" TIMEOUT is told from an unanswered node's once all
     * answered (s_query_done) */
    if (code != CAIRN_NOT_FOUND && code != CAIRN_UNAVAILABLE &&
        code != CAIRN_TIMEOUT && code >= 0)
        s_query_fail(q, code, q->errors[i] ? q->errors[i] : "");
}

/* Every node answered (or not): the query's last word. */
static void s_query_done(s_query_t *q)
{
    char unreached[512] = "";

    if (!q->d)
        return;
    if (q->kind == Q_PS)
        return s_ps_done(q);
    if (q->kind == Q_RUN) {
        if (q->codes[0] == CAIRN_OK && q->replies[0])
            return s_query_reply(q, &q->replies[0]->base);
        return s_query_fail(q, q->codes[0] >= 0 ? q->codes[0] : CAIRN_INTERNAL,
                            q->errors[0] ? q->errors[0] : "");
    }
    for (size_t i = 0; i < q->asked; i++) {
        if (q->kind == Q_WAIT && q->codes[i] == CAIRN_TIMEOUT &&
            q->errors[i] && strstr(q->errors[i], "still runs"))
            return s_query_fail(q, CAIRN_TIMEOUT, q->errors[i]);
        if (q->codes[i] != CAIRN_NOT_FOUND) {
            size_t len = strlen(unreached);
            snprintf(unreached + len, sizeof unreached - len, "%snode %u",
                     len ? ", " : "", q->nodes[i]);
        }
    }
    s_not_running(q, unreached);
}

static int s_check_gpid(const char *what, const char *gpid, cairn_error_t *err)
{
    uint32_t node;
    uint64_t seq;

    if (!gpid || !*gpid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: gpid is missing", what);
    if (ghostd_gpid_parse(gpid, &node, &seq) < 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: '%.64s' is not a gpid (NODE.SEQ, e.g. 1.7)",
                               what, gpid);
    return 0;
}

/* Asks every other alive ghostd for gpid (kind signal or wait), with req's
 * body marked local_only. */
static int s_find_elsewhere(ghostd_jobs_t *jobs, cairn_request_t *req, s_qkind_t kind,
                            const char *gpid, uint64_t budget)
{
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    Cairn__Ghostd__SignalRequest sr;
    Cairn__Ghostd__WaitRequest wr;
    Cairn__Ghostd__Request fwd = CAIRN__GHOSTD__REQUEST__INIT;
    uint32_t others[CAIRN_VIEW_MAX_NODES];
    size_t n = s_others(jobs, others);

    fwd.msg_case = body->msg_case;
    if (kind == Q_SIGNAL) {
        sr = *body->signal;
        sr.local_only = true;
        fwd.signal = &sr;
    } else {
        wr = *body->wait;
        wr.local_only = true;
        fwd.wait = &wr;
    }
    s_query_t *q = s_query_new(jobs, kind, req);
    if (!q)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    snprintf(q->gpid, sizeof q->gpid, "%s", gpid);
    for (size_t i = 0; i < n && q->d; i++)
        s_query_ask(q, others[i], &fwd.base, budget);
    return s_query_sent(q);
}

/* The caller may act on job, else PERMISSION_DENIED in err. */
static int s_check_owner(const cairn_caller_t *c, const ghostd_job_t *job,
                         const char *what, cairn_error_t *err)
{
    char who[128];

    if (cairn_caller_may_act_on(c, job->rec.uid))
        return 0;
    return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                           "%s: job %s is uid %u's; %s may act only on its own "
                           "jobs (root may act on any)", what, job->rec.gpid,
                           job->rec.uid, cairn_caller_describe(c, who, sizeof who));
}

/* ---- signal ------------------------------------------------------------------ */

static bool s_forwarded_by_reaper(int sig)
{
    static const int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
                               SIGCONT, SIGWINCH, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU };

    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        if (fwd[i] == sig)
            return true;
    return false;
}

/* Sends sig to job: SIGKILL to the reaper (the namespace dies with it);
 * the signals ghost-init forwards to the reaper; any other (SIGSTOP, a
 * signal the reaper ignores as the namespace's init) straight to the
 * program, found through the reaper's children and held by a pidfd. */
static int s_send(ghostd_job_t *job, int sig, cairn_error_t *err)
{
    ghostd_jobsample_t s;
    int r;

    if (sig == SIGKILL || s_forwarded_by_reaper(sig)) {
        r = s_pidfd_signal(job->pidfd, sig) < 0 ? -errno : 0;
        if (r == 0 && sig == SIGKILL)
            job->killed = true;
    } else if (ghostd_job_sample(job->rec.host_pid, &s) < 0 || !s.program) {
        r = -ESRCH;
    } else {
        int fd = s_pidfd_open(s.program);
        r = fd < 0 ? -errno : s_pidfd_signal(fd, sig) < 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
    }
    if (r == -ESRCH)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               "signal: job %s is ending", job->rec.gpid);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_INTERNAL, "signal %d to job %s: %s",
                               sig, job->rec.gpid, strerror(-r));
    return 0;
}

int ghostd_jobs_handle_signal(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = s_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__SignalRequest *sr = body->signal;
    const cairn_caller_t *c = cairn_request_caller(req);
    cairn_error_t err = { 0 };

    if (!sr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "signal: request body is empty");
    int r = s_check_gpid("signal", sr->gpid, &err);
    if (r == 0 && (sr->signal < 1 || sr->signal > 64))
        r = cairn_error_set(&err, -EINVAL, CAIRN_INVALID_ARGUMENT, "signal: %u is "
                            "not a signal number (1..64)", sr->signal);
    if (r < 0)
        return s_fail(req, &err);
    ghostd_job_t *job = s_find(jobs, sr->gpid);
    if (!job || job->launching) {
        if (sr->local_only)
            return cairn_request_fail(req, CAIRN_NOT_FOUND, "signal: job %s does "
                                      "not run on node %u", sr->gpid, jobs->self);
        return s_find_elsewhere(jobs, req, Q_SIGNAL, sr->gpid,
                                s_budget_ms(req, S_DEFAULT_DEADLINE_MS));
    }
    r = s_check_owner(c, job, "signal", &err);
    if (r == 0 && job->exited)
        r = cairn_error_set(&err, -ESRCH, CAIRN_FAILED_PRECONDITION, "signal: job "
                            "%s has exited (exit_code %d, exit_signal %d)", sr->gpid,
                            job->exit.exit_code, job->exit.exit_signal);
    if (r == 0)
        r = s_send(job, (int)sr->signal, &err);
    if (r < 0)
        return s_fail(req, &err);
    cairn_log_info("job-signal", "gpid=%s signal=%u", sr->gpid, sr->signal);
    return s_reply_now(req, Q_SIGNAL, job);
}

/* ---- wait --------------------------------------------------------------------- */

/* Answers w (job: its end, NULL: code and msg) and frees it. */
static void s_wait_answer(s_wait_t *w, const ghostd_job_t *job, int code,
                          const char *msg)
{
    ghostd_job_t *owner = w->job;
    cairn_service_t *svc = owner->jobs->svc;

    for (size_t i = 0; i < owner->n_waits; i++)
        if (owner->waits[i] == w) {
            memmove(&owner->waits[i], &owner->waits[i + 1],
                    (owner->n_waits - i - 1) * sizeof *owner->waits);
            owner->n_waits--;
            break;
        }
    if (w->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(svc), w->timer);
    if (job)
        s_reply_job(svc, w->d, Q_WAIT, job);
    else
        cairn_deferred_fail(svc, w->d, code, msg);
    free(w);
}

static int s_on_wait_deadline(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_wait_t *w = userdata;
    char msg[160];

    w->timer = 0;
    snprintf(msg, sizeof msg, "wait: job %s still runs after %llu ms",
             w->job->rec.gpid, (unsigned long long)(cairn_now_ms() - w->since));
    s_wait_answer(w, NULL, CAIRN_TIMEOUT, msg);
    return 0;
}

static int s_wait_defer(ghostd_job_t *job, cairn_request_t *req)
{
    uint64_t budget = s_budget_ms(req, 120000);
    s_wait_t **grown = realloc(job->waits, (job->n_waits + 1) * sizeof *grown);
    s_wait_t *w = grown ? calloc(1, sizeof *w) : NULL;

    if (grown)
        job->waits = grown;
    if (!w)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    w->job = job;
    w->since = cairn_now_ms();
    w->timer = cairn_loop_add_timer(cairn_service_loop(job->jobs->svc), budget, 0,
                                    s_on_wait_deadline, w);
    w->d = w->timer > 0 ? cairn_request_defer(req) : NULL;
    if (!w->d) {
        if (w->timer > 0)
            cairn_loop_cancel_timer(cairn_service_loop(job->jobs->svc), w->timer);
        free(w);
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    job->waits[job->n_waits++] = w;
    return CAIRN_REPLY_DEFERRED;
}

int ghostd_jobs_handle_wait(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = s_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__WaitRequest *wr = body->wait;
    cairn_error_t err = { 0 };

    if (!wr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "wait: request body is empty");
    if (s_check_gpid("wait", wr->gpid, &err) < 0)
        return s_fail(req, &err);
    ghostd_job_t *job = s_find(jobs, wr->gpid);
    if (!job || job->launching) {
        if (wr->local_only)
            return cairn_request_fail(req, CAIRN_NOT_FOUND, "wait: job %s does "
                                      "not run on node %u", wr->gpid, jobs->self);
        return s_find_elsewhere(jobs, req, Q_WAIT, wr->gpid, s_budget_ms(req, 120000));
    }
    if (s_check_owner(cairn_request_caller(req), job, "wait", &err) < 0)
        return s_fail(req, &err);
    if (!job->exited)
        return s_wait_defer(job, req);
    return s_reply_now(req, Q_WAIT, job);
}

/* ---- for restart.c ------------------------------------------------------------ */

const char *ghostd_jobs_dir(const ghostd_jobs_t *jobs)
{
    return jobs->dir;
}

const ghostd_jobrec_t *ghostd_jobs_running(const ghostd_jobs_t *jobs, const char *gpid)
{
    const ghostd_job_t *job = jobs ? s_find(jobs, gpid) : NULL;

    return job && !job->launching && !job->exited ? &job->rec : NULL;
}

bool ghostd_jobs_has(const ghostd_jobs_t *jobs, const char *gpid)
{
    return jobs && s_find(jobs, gpid) != NULL;
}

int ghostd_jobs_checkpointed(ghostd_jobs_t *jobs, const char *gpid, uint64_t ms,
                             uint32_t replica)
{
    ghostd_job_t *job = s_find(jobs, gpid);

    if (!job || job->launching || job->exited)
        return -ENOENT;
    job->rec.last_checkpoint_ms = ms;
    job->rec.replica = replica;
    return ghostd_jobrec_write(job->dir, &job->rec);
}

int ghostd_jobs_adopt_restored(ghostd_jobs_t *jobs, ghostd_jobrec_t *rec)
{
    ghostd_job_t *job = s_find(jobs, rec->gpid);

    if (job && !job->exited)
        return -EEXIST;
    if (job)   /* an ended entry of an earlier life here */
        s_job_drop(job, "the job was restarted");
    if (!(job = s_job_new(jobs)))
        return -ENOSPC;
    job->rec = *rec;
    memset(rec, 0, sizeof *rec);   /* argv is the table's now */
    snprintf(job->dir, sizeof job->dir, "%s/%s", jobs->dir, job->rec.gpid);
    job->rec.host_start = 0;       /* the restored reaper's, read now */
    int r = s_job_watch(job);
    if (r < 0) {
        s_job_ended(job);
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
    ghostd_job_t *job = s_find(jobs, gpid);
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
    if (r < 0 || job || !(job = s_job_new(jobs))) {
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
    ghostd_job_t *job = s_find(jobs, gpid);

    if (!job || job->launching)
        return;
    if (!job->exited && job->pidfd >= 0)
        s_pidfd_signal(job->pidfd, SIGKILL);   /* the namespace dies with it */
    cairn_log_warn(0, "job-superseded", "gpid=%s host_pid=%d msg=\"%s; this copy "
                   "was killed\"", gpid, (int)job->rec.host_pid, why);
    /* No exit record: the job lives on elsewhere; the sweep reaps it. */
    s_job_drop(job, why);
    restart_job_ended(jobs->gd, gpid, 0);   /* its checkpoints stop here */
    s_cgroup_name(gpid, cg, sizeof cg);
    ghost_place_kill_cgroup(cg);
}

/* ---- for migrate.c (migration, jobs.h) -------------------------------------- */

void ghostd_jobs_set_migrating(ghostd_jobs_t *jobs, const char *gpid, bool migrating)
{
    ghostd_job_t *job = gpid ? s_find(jobs, gpid) : NULL;

    if (job)
        job->migrating = migrating;
}

void ghostd_jobs_release(ghostd_jobs_t *jobs, const char *gpid)
{
    ghostd_job_t *job = gpid ? s_find(jobs, gpid) : NULL;
    char msg[96];

    if (!job || job->exited)
        return;
    /* Waits follow the job only if asked again: their answer says where. */
    snprintf(msg, sizeof msg, "wait: job %s moved to another node; wait again", gpid);
    cairn_log_info("job-left", "gpid=%s host_pid=%d", gpid, (int)job->rec.host_pid);
    s_job_drop(job, msg);
    restart_job_ended(jobs->gd, gpid, 0);   /* its checkpoints go on from the target */
}

void ghostd_jobs_take_back(ghostd_jobs_t *jobs, const char *gpid)
{
    if (!gpid || s_find(jobs, gpid))
        return;
    s_adopt(jobs, gpid);
}

int ghostd_jobs_arrived(ghostd_jobs_t *jobs, const char *gpid, pid_t host_pid,
                        const char *cgroup, const char *unit, bool sub_cgroup)
{
    char dir[PATH_MAX];
    ghostd_job_t *job;
    int r;

    if (s_find(jobs, gpid))
        return -EEXIST;
    if (!(job = s_job_new(jobs)))
        return -ENOMEM;
    snprintf(dir, sizeof dir, "%s/%s", jobs->dir, gpid);
    snprintf(job->dir, sizeof job->dir, "%s", dir);
    if ((r = ghostd_jobrec_read(dir, &job->rec)) < 0) {
        s_job_drop(job, "");
        return r;
    }
    job->rec.node = jobs->self;
    job->rec.host_pid = (int32_t)host_pid;
    job->rec.host_start = 0;   /* s_job_watch reads it */
    job->rec.moves++;
    snprintf(job->rec.cgroup, sizeof job->rec.cgroup, "%s", cgroup ? cgroup : "");
    snprintf(job->rec.unit, sizeof job->rec.unit, "%s", unit ? unit : "");
    job->rec.sub_cgroup = sub_cgroup;
    int w = s_job_watch(job);
    int k = ghostd_jobrec_write(dir, &job->rec);
    if (k < 0)
        cairn_log_warn(k, "job", "gpid=%s msg=\"cannot write %s/job.json, ignoring\"",
                       gpid, dir);
    cairn_log_info("job-arrived", "gpid=%s host_pid=%d moves=%u cgroup=%s", gpid,
                   (int)host_pid, job->rec.moves, job->rec.cgroup);
    if (w < 0) {
        s_job_ended(job);   /* it ended already */
        return -ESRCH;
    }
    restart_job_running(jobs->gd, gpid);   /* checkpoints, if it asked for them */
    return 0;
}

int ghostd_jobs_describe(const ghostd_jobs_t *jobs, const char *gpid,
                         Cairn__Ghostd__Job *m)
{
    ghostd_job_t *job = gpid ? s_find(jobs, gpid) : NULL;

    if (!job || job->launching)
        return -ENOENT;
    s_job_msg(job, m);
    return 0;
}
