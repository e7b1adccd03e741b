/* jobs-run.c - the run request (jobs.h, jobs-private.h): a job launched
 * on this node, or carried to the node the caller asked for.
 *
 * Design. A run here validates the command, takes the next free gpid by
 * making its directory (0700, the user's), and has ghost-init started
 * through ghostd_helper_request; the job is in the table but `launching`
 * (not listed, not signalled) until ghost-init's line names its reaper
 * (ghostd_jobs_launched), when it is watched and the run answered. A
 * launch that fails leaves nothing: its directory and sub-cgroup are
 * removed with the job. A run for another node is one query
 * (jobs-query.c) to that node's ghostd, on the caller's behalf.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/place.h"
#include "jobs-private.h"
#include "log.h"
#include "place-hold.h"
#include "restart.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_MAX_ARGS 4096           /* argv and env entries of a run */
#define S_MAX_ARG_BYTES (1 << 20) /* their total size */

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
    _cleanup_free_ char **envp = calloc(rr->n_env + 2, sizeof *envp);
    char rundir_env[PATH_MAX + 32];

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
        jobs_cgroup_name(job->rec.gpid, cg, sizeof cg);
        argv[n++] = "--cgroup";
        argv[n++] = cg;
        job->rec.sub_cgroup = true;
    }
    argv[n++] = "--";
    for (size_t i = 0; i < rr->n_argv; i++)
        argv[n++] = rr->argv[i];
    argv[n] = NULL;
    /* CAIRN_NODE_RUNDIR is this node's, whatever the caller's was: libcairn
     * in the job finds its node's syncd and dsmd by it */
    size_t k = 0;
    for (size_t i = 0; i < rr->n_env; i++)
        if (strncmp(rr->env[i], "CAIRN_NODE_RUNDIR=", 18) != 0)
            envp[k++] = rr->env[i];
    const cairn_node_desc_t *node = cairn_service_node(gd->svc);
    if (node && node->rundir &&
        (size_t)snprintf(rundir_env, sizeof rundir_env, "CAIRN_NODE_RUNDIR=%s", node->rundir) <
            sizeof rundir_env)
        envp[k++] = rundir_env;
    return ghostd_helper_request(gd, req, GHOSTD_LAUNCH, argv, envp, job,
                                 cairn_request_caller(req), err);
}

static int s_run_here(ghostd_jobs_t *jobs, cairn_request_t *req,
                      const Cairn__Ghostd__RunRequest *rr, const char *here_why)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    cairn_error_t err = { 0 };
    ghostd_job_t *job = jobs_job_new(jobs);

    if (!job)
        return cairn_request_fail(req, CAIRN_BUSY, "run: %d jobs are in the "
                                  "table; try again later", GHOSTD_MAX_JOBS);
    job->launching = true;
    job->here_why = here_why;
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
    jobs_job_drop(job, "");
    return jobs_fail(req, &err);
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
    if (jobs_job_watch(job) < 0)
        jobs_job_ended(job);   /* it ended already (the sweep waits for us) */
    int r = ghostd_jobrec_write(job->dir, &job->rec);
    if (r < 0)
        cairn_log_warn(r, "job", "gpid=%s msg=\"cannot write %s/job.json, "
                       "ignoring\"", job->rec.gpid, job->dir);
    cairn_log_info("job-start", "gpid=%s host_pid=%d uid=%u cgroup=%s argv0=\"%s\"",
                   job->rec.gpid, (int)job->rec.host_pid, job->rec.uid,
                   job->rec.cgroup, job->rec.argv[0]);
    if (!job->exited)
        restart_job_running(jobs->gd, job->rec.gpid);
    jobs_job_msg(job, &m);
    rr.job = &m;
    rr.placed_by = (char *)(job->here_why ? "local" : "request");
    rr.placement = (char *)(job->here_why ? job->here_why : "");
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
        jobs_cgroup_name(job->rec.gpid, cg, sizeof cg);
        ghost_place_remove_cgroup(cg);
    }
    s_remove_job_dir(job->dir);
    jobs_job_drop(job, "");
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
    uint64_t budget = jobs_budget_ms(req, 120000);
    jobs_query_t *q = jobs_query_new(jobs, Q_RUN, req);
    if (!q)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    jobs_query_ask(q, node, &body->base, budget);
    return jobs_query_sent(q);
}

int ghostd_jobs_handle_run(void *ctx, cairn_request_t *req)
{
    ghostd_jobs_t *jobs = jobs_gd(ctx)->jobs;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__RunRequest *rr = body->run;
    cairn_error_t err = { 0 };

    if (!rr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "run: request body is empty");
    if (s_check_run(rr, &err) < 0)
        return jobs_fail(req, &err);
    if (rr->node > 255)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "run: node %u is not "
                                  "a node id (1..255)", rr->node);
    if (rr->node && rr->node != jobs->self)
        return s_run_forward(jobs, req, body, rr->node);
    if (!rr->node) {   /* the policy's choice, or held (place-hold.h) */
        const char *here_why = NULL;
        int r = place_hold_run(jobs->gd->hold, req, &here_why);
        return here_why ? s_run_here(jobs, req, rr, here_why) : r;
    }
    return s_run_here(jobs, req, rr, NULL);
}
