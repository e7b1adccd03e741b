/* cmd-job.c - `cairn run`, `cairn ps`, `cairn signal|kill|wait`, `cairn logs`.
 *
 * Design. Jobs are ghostd's (docs/jobs.md). Every verb asks this host's
 * ghostd (cli_target_resolve_here: $CAIRN_NODE, else the first local node
 * running ghostd; --endpoint as usual), and that ghostd carries the
 * request to the node concerned: the global --node here names the job's
 * node (run: where it runs; ps: whose jobs), not the ghostd asked. A
 * gpid-addressed verb needs no node at all: ghostd finds the job.
 *
 * run sends the CLI's own environment with the --env entries over it (as
 * srun does) and its cwd unless --cwd names another (absolute: the job
 * may start on another node, where only absolute paths mean the same).
 * Each verb prints the Job as JSON (job_json), with "answered_by"; ps
 * prints {"jobs":[...],"nodes":[...]} where a node that did not answer is
 * listed with reachable false and why. wait prints the ended Job and exits
 * 0 whatever the job's status (exit_code, exit_signal say it); it waits an
 * hour unless --timeout says otherwise.
 *
 * logs is the one verb that reads no daemon: the job's directory lies on
 * a path every node sees (<run base>/<cluster>/jobs/<gpid>, from the
 * description), so the file is read where it is; it prints the job's
 * bytes as they are (not JSON: they are the program's output), and with
 * --follow keeps reading until the job's exit record appears.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cli.h"
#include "ghostd.pb-c.h"
#include "output.h"
#include "cairn-config.h"
#include "target.h"
#include "util/options.h"

extern char **environ;

#define S_RUN_TIMEOUT_MS 30000       /* run: a launch, perhaps on another node */
#define S_WAIT_TIMEOUT_MS CLI_MAX_TIMEOUT_MS
#define S_FOLLOW_POLL_US 100000      /* logs --follow: 100 ms */
#define S_MAX_ENV 4096

const cairn_option_t cli_run_options[] = {
    { "--name", "NAME", "a label shown by ps" },
    { "--cwd", "D", "absolute directory the program starts in (default: "
      "this one)" },
    { "--env", "K=V", "set K in the job's environment (repeatable; the job "
      "gets this environment with these over it)" },
    { "--wait", NULL, "wait for the job to end and print it ended" },
    { "--checkpoint-every", "SEC", "checkpoint the job every SEC seconds "
      "(1..86400), each replicated to another node" },
    { "--restart-on-failure", NULL, "restart the job from its last checkpoint "
      "on a live node if its node dies (needs --checkpoint-every)" },
    { "--dsm", NULL, "the job's POSIX (shm_open) and System V (shmget) shared "
      "memory become cluster-wide DSM segments, shared with jobs on other "
      "nodes (a preload shim: docs/dsm.md)" },
    { NULL, NULL, NULL },
};
enum { O_RUN_NAME, O_RUN_CWD, O_RUN_ENV, O_RUN_WAIT, O_RUN_CHECKPOINT_EVERY,
       O_RUN_RESTART, O_RUN_DSM };

const cairn_option_t cli_ps_options[] = {
    { "--user", "U", "only the jobs of user U (name or uid)" },
    { NULL, NULL, NULL },
};
enum { O_PS_USER };

const cairn_option_t cli_signal_options[] = {
    { "--signal", "S", "signal name (TERM, SIGTERM) or number (default TERM)" },
    { NULL, NULL, NULL },
};
enum { O_SIG_SIGNAL };

const cairn_option_t cli_logs_options[] = {
    { "--stderr", NULL, "the job's stderr (default its stdout)" },
    { "--follow", NULL, "keep printing until the job has exited" },
    { NULL, NULL, NULL },
};
enum { O_LOGS_STDERR, O_LOGS_FOLLOW };

/* ---- talking to ghostd --------------------------------------------------- */

/* Sends req to this host's ghostd (the global --node is the job's, not
 * the target's) and returns its Reply of case `expect` (caller frees). */
static int s_call(const cli_ctx *ctx, int timeout_ms, const char *what,
                  const ProtobufCMessage *req, Cairn__Ghostd__Reply__MsgCase expect,
                  Cairn__Ghostd__Reply **ret, json_t **ret_by, cairn_error_t *err)
{
    cli_ctx here = *ctx;
    cli_target_t t = { 0 };
    ProtobufCMessage *reply = NULL;

    here.node = NULL;
    int r = cli_target_resolve_here(&here, "ghostd", &t, err);
    if (r == 0)
        r = cli_target_call(&here, &t, "ghostd", timeout_ms, req,
                            &cairn__ghostd__reply__descriptor, expect, what,
                            &reply, ret_by, err);
    cli_target_clear(&t);
    if (r == 0)
        *ret = (Cairn__Ghostd__Reply *)reply;
    return r;
}

static int s_timeout(const cli_ctx *ctx, int dflt)
{
    return ctx->timeout_set ? ctx->timeout_ms : dflt;
}

/* The node the global --node names (0 when none): an id, or a name of the
 * description. */
static int s_job_node(const cli_ctx *ctx, uint32_t *ret, cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    long id;

    *ret = 0;
    if (!ctx->node)
        return 0;
    if (cairn_parse_long("--node", ctx->node, 1, 255, &id, NULL) == 0) {
        *ret = (uint32_t)id;
        return 0;
    }
    int r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    const cairn_node_desc_t *nd = cairn_description_lookup_node(d, ctx->node);
    if (nd)
        *ret = nd->id;
    cairn_description_free(d);
    return nd ? 0 : cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--node '%s': no "
                                    "such node in the description", ctx->node);
}

/* ---- the Job as JSON --------------------------------------------------- */

static json_t *s_user_json(uint32_t uid)
{
    struct passwd *pw = getpwuid(uid);

    return pw ? json_string(pw->pw_name) : json_null();
}

/* A Job as docs/cli.md shows it. NULL only on ENOMEM. */
static json_t *s_job_json(const Cairn__Ghostd__Job *j)
{
    json_t *argv = json_array();

    for (size_t i = 0; argv && i < j->n_argv; i++)
        json_array_append_new(argv, json_string(j->argv[i]));
    json_t *v = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:s, s:o, s:I, s:I,"
                     " s:I, s:I, s:I, s:o*, s:s, s:I, s:s, s:s, s:b, s:o, s:o}",
                     "gpid", j->gpid ? j->gpid : "", "node", (json_int_t)j->node,
                     "host_pid", (json_int_t)j->host_pid, "pid", (json_int_t)j->pid,
                     "uid", (json_int_t)j->uid, "user", s_user_json(j->uid),
                     "gid", (json_int_t)j->gid, "state", j->state ? j->state : "",
                     "cpu_percent", cli_json_real(j->cpu_percent, 1),
                     "rss_bytes", (json_int_t)j->rss_bytes,
                     "start_ms", (json_int_t)j->start_ms,
                     "moves", (json_int_t)j->moves,
                     "restarts", (json_int_t)j->restarts,
                     "lost_ms", (json_int_t)j->lost_ms, "argv", argv,
                     "name", j->name ? j->name : "",
                     "processes", (json_int_t)j->processes,
                     "dir", j->dir ? j->dir : "", "cgroup", j->cgroup ? j->cgroup : "",
                     "exited", (int)j->exited,
                     "exit_code", j->exited ? json_integer(j->exit_code) : json_null(),
                     "exit_signal", j->exited ? json_integer(j->exit_signal) : json_null());
    /* restart on failure (docs/jobs.md) */
    if (v && (json_object_set_new(v, "checkpoint_every_s",
                                  json_integer(j->checkpoint_every_s)) < 0 ||
              json_object_set_new(v, "restart_on_failure",
                                  json_boolean(j->restart_on_failure)) < 0 ||
              json_object_set_new(v, "last_checkpoint_ms", j->last_checkpoint_ms
                                  ? json_integer((json_int_t)j->last_checkpoint_ms)
                                  : json_null()) < 0 ||
              json_object_set_new(v, "replica", j->replica ? json_integer(j->replica)
                                                           : json_null()) < 0 ||
              json_object_set_new(v, "lost", j->lost && *j->lost ? json_string(j->lost)
                                                                 : json_null()) < 0)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* result with "answered_by": by added (by's reference is shared). */
static int s_result(json_t *result, json_t *by, json_t **ret, cairn_error_t *err)
{
    if (!result || json_object_set(result, "answered_by", by) < 0) {
        json_decref(result);
        return cli_oom(err);
    }
    *ret = result;
    return 0;
}

/* ---- run --------------------------------------------------------------- */

/* Takes every --env out of argv[0..dash) into env (values kept in order)
 * and the rest into rest. */
static int s_take_env(int dash, char **argv, const char **env, size_t *n_env,
                      char **rest, int *n_rest, cairn_error_t *err)
{
    *n_env = 0;
    *n_rest = 0;
    for (int i = 0; i < dash; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--env") == 0) {
            if (i + 1 >= dash)
                return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--env needs "
                                       "a value K=V");
            v = argv[++i];
        } else if (strncmp(argv[i], "--env=", 6) == 0) {
            v = argv[i] + 6;
        } else {
            rest[(*n_rest)++] = argv[i];
            continue;
        }
        const char *eq = strchr(v, '=');
        if (!eq || eq == v)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--env '%s': "
                                   "expected K=V", v);
        if (*n_env == S_MAX_ENV)
            return cairn_error_set(err, -E2BIG, CAIRN_USAGE, "more than %d --env",
                                   S_MAX_ENV);
        env[(*n_env)++] = v;
    }
    return 0;
}

/* Whether entry "K=..." sets the same K as one of over[0..n). */
static bool s_overridden(const char *entry, const char **over, size_t n)
{
    size_t klen = strcspn(entry, "=");

    for (size_t i = 0; i < n; i++)
        if (strncmp(over[i], entry, klen) == 0 && over[i][klen] == '=')
            return true;
    return false;
}

/* The job's environment: ours, with the --env entries over it. The
 * strings are not copied; the caller frees the array. */
static char **s_job_env(const char **over, size_t n_over, size_t *ret_n)
{
    size_t n = 0, ours = 0;

    while (environ && environ[ours])
        ours++;
    char **env = calloc(ours + n_over + 1, sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; i < ours; i++)
        if (strchr(environ[i], '=') && environ[i][0] != '=' &&
            !s_overridden(environ[i], over, n_over))
            env[n++] = environ[i];
    for (size_t i = 0; i < n_over; i++)
        env[n++] = (char *)over[i];
    *ret_n = n;
    return env;
}

typedef struct s_run_args {
    const char *name;
    char cwd[PATH_MAX];
    bool wait;
    char **cmd;
    size_t n_cmd;
    const char *env[S_MAX_ENV];
    size_t n_env;
    long checkpoint_every_s;   /* 0: none */
    bool restart_on_failure;
    char preload[PATH_MAX + 16];   /* --dsm: "LD_PRELOAD=<shim>[:theirs]" */
} s_run_args_t;

/* The DSM shim (libcairn-dsm-preload.so): $CAIRN_DSM_SHIM, else beside
 * this cairn in a build tree (<dir of exe>/../libclient/), else where
 * the build installs it. */
static int s_dsm_shim(char *out, size_t size, cairn_error_t *err)
{
    const char *env = getenv("CAIRN_DSM_SHIM");
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    const char *tries[3] = { env && *env ? env : NULL, NULL, CAIRN_DSM_SHIM_PATH };
    if (slash) {
        *slash = '\0';
        snprintf(path, sizeof path, "%s/../libclient/libcairn-dsm-preload.so", exe);
        tries[1] = path;
    }
    for (int i = 0; i < 3; i++)
        if (tries[i] && access(tries[i], R_OK) == 0 && realpath(tries[i], out) &&
            strlen(out) < size)
            return 0;
    return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "run --dsm: no DSM shim at "
                           "$CAIRN_DSM_SHIM, beside this cairn or at " CAIRN_DSM_SHIM_PATH);
}

static int s_run_args(int argc, char **argv, s_run_args_t *ra, cairn_error_t *err)
{
    char *rest[CAIRN_MAX_ARGS + 1];
    int dash = 0, n_rest;
    cairn_args_t a;

    while (dash < argc && strcmp(argv[dash], "--") != 0)
        dash++;
    if (dash == argc)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "run: the command goes "
                               "after '--' (cairn run [options] -- CMD [ARGS...])");
    if (dash > CAIRN_MAX_ARGS)
        return cairn_error_set(err, -E2BIG, CAIRN_USAGE, "run: too many options");
    int r = s_take_env(dash, argv, ra->env, &ra->n_env, rest, &n_rest, err);
    if (r == 0)
        r = cairn_args_parse("run", cli_run_options, n_rest, rest, 0, &a, err);
    if (r < 0)
        return r;
    if (dash + 1 == argc || !*argv[dash + 1])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "run: no command after '--'");
    ra->cmd = argv + dash + 1;
    ra->n_cmd = (size_t)(argc - dash - 1);
    ra->name = a.values[O_RUN_NAME];
    ra->wait = a.values[O_RUN_WAIT] != NULL;
    ra->restart_on_failure = a.values[O_RUN_RESTART] != NULL;
    if (a.values[O_RUN_DSM]) {
        char shim[PATH_MAX];
        const char *theirs = getenv("LD_PRELOAD");
        if ((r = s_dsm_shim(shim, sizeof shim, err)) < 0)
            return r;
        if (ra->n_env == S_MAX_ENV)
            return cairn_error_set(err, -E2BIG, CAIRN_USAGE, "more than %d --env", S_MAX_ENV);
        if ((size_t)snprintf(ra->preload, sizeof ra->preload, "LD_PRELOAD=%s%s%s", shim,
                             theirs && *theirs ? ":" : "", theirs ? theirs : "") >=
            sizeof ra->preload)
            return cairn_error_set(err, -E2BIG, CAIRN_USAGE, "run --dsm: LD_PRELOAD too long");
        ra->env[ra->n_env++] = ra->preload;
    }
    if (a.values[O_RUN_CHECKPOINT_EVERY] &&
        (r = cairn_parse_long("--checkpoint-every", a.values[O_RUN_CHECKPOINT_EVERY],
                              1, 86400, &ra->checkpoint_every_s, err)) < 0)
        return r;
    if (ra->restart_on_failure && !ra->checkpoint_every_s)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "run: --restart-on-failure "
                               "restarts from the last checkpoint: give "
                               "--checkpoint-every SEC too");
    const char *cwd = a.values[O_RUN_CWD];
    if (cwd && cwd[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "run: --cwd '%s' is not "
                               "an absolute path (the job may start on another "
                               "node)", cwd);
    if (cwd && strlen(cwd) >= sizeof ra->cwd)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_USAGE, "run: --cwd is too long");
    if (cwd)
        snprintf(ra->cwd, sizeof ra->cwd, "%s", cwd);
    else if (!getcwd(ra->cwd, sizeof ra->cwd))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getcwd: %s", strerror(errno));
    return 0;
}

static int s_wait_gpid(cli_ctx *ctx, const char *gpid, json_t **ret_result,
                       cairn_error_t *err);

/* Where the run went and why (docs/scheduler.md): "placed_by" (the policy,
 * "request" for --node, "local"), "placement", "held_ms". */
static json_t *s_placement_json(const Cairn__Ghostd__RunReply *rr)
{
    return json_pack("{s:s, s:s, s:I}", "placed_by", rr->placed_by ? rr->placed_by : "",
                     "placement", rr->placement ? rr->placement : "",
                     "held_ms", (json_int_t)rr->held_ms);
}

int cli_cmd_run(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                cairn_error_t *err)
{
    Cairn__Ghostd__RunRequest rr = CAIRN__GHOSTD__RUN_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    _cleanup_free_ s_run_args_t *ra = calloc(1, sizeof *ra);
    _cleanup_free_ char **env = NULL;
    uint32_t node = 0;

    if (!ra)
        return cli_oom(err);
    int r = s_run_args(argc, argv, ra, err);
    if (r == 0)
        r = s_job_node(ctx, &node, err);
    if (r < 0)
        return r;
    if (!(env = s_job_env(ra->env, ra->n_env, &rr.n_env)))
        return cli_oom(err);
    rr.argv = ra->cmd;
    rr.n_argv = ra->n_cmd;
    rr.env = env;
    rr.cwd = ra->cwd;
    rr.name = (char *)(ra->name ? ra->name : "");
    rr.node = node;
    rr.checkpoint_every_s = (uint32_t)ra->checkpoint_every_s;
    rr.restart_on_failure = ra->restart_on_failure;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_RUN;
    req.run = &rr;
    r = s_call(ctx, s_timeout(ctx, S_RUN_TIMEOUT_MS), "run", &req.base,
               CAIRN__GHOSTD__REPLY__MSG_RUN_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *placed = s_placement_json(reply->run_reply);
    json_t *job = NULL;
    if (ra->wait) {
        char gpid[64];
        snprintf(gpid, sizeof gpid, "%s", reply->run_reply->job->gpid);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        r = s_wait_gpid(ctx, gpid, &job, err);
        if (r < 0)
            return r;
    } else {
        job = s_job_json(reply->run_reply->job);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        if ((r = s_result(job, by, &job, err)) < 0)
            return r;
    }
    if (!placed || json_object_update(job, placed) < 0) {
        json_decref(job);
        return cli_oom(err);
    }
    *ret_result = job;
    return 0;
}

/* ---- ps ----------------------------------------------------------------- */

static int s_parse_user(const char *u, uint32_t *ret, cairn_error_t *err)
{
    long uid;
    struct passwd *pw;

    if (cairn_parse_long("--user", u, 0, 0xfffffffel, &uid, NULL) == 0) {
        *ret = (uint32_t)uid;
        return 0;
    }
    if ((pw = getpwnam(u))) {
        *ret = pw->pw_uid;
        return 0;
    }
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--user '%s': no such user", u);
}

int cli_cmd_ps(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
               cairn_error_t *err)
{
    Cairn__Ghostd__PsRequest pr = CAIRN__GHOSTD__PS_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    cairn_args_t a;
    int r = cairn_args_parse("ps", cli_ps_options, argc, argv, 0, &a, err);

    if (r == 0)
        r = s_job_node(ctx, &pr.node, err);
    if (r == 0 && a.values[O_PS_USER]) {
        pr.has_uid = true;
        r = s_parse_user(a.values[O_PS_USER], &pr.uid, err);
    }
    if (r < 0)
        return r;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
    req.ps = &pr;
    r = s_call(ctx, s_timeout(ctx, CLI_DEFAULT_TIMEOUT_MS), "ps", &req.base,
               CAIRN__GHOSTD__REPLY__MSG_PS_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    const Cairn__Ghostd__PsReply *ps = reply->ps_reply;
    json_t *jobs = json_array(), *nodes = json_array();
    for (size_t i = 0; jobs && i < ps->n_jobs; i++)
        json_array_append_new(jobs, s_job_json(ps->jobs[i]));
    for (size_t i = 0; nodes && i < ps->n_nodes; i++) {
        const Cairn__Ghostd__NodeAnswer *na = ps->nodes[i];
        json_array_append_new(nodes, json_pack("{s:I, s:b, s:s*}", "node",
                              (json_int_t)na->node, "reachable", (int)na->reachable,
                              "error", na->reachable ? NULL : na->error));
    }
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return s_result(json_pack("{s:o*, s:o*}", "jobs", jobs, "nodes", nodes), by,
                    ret_result, err);
}

int cli_table_ps(FILE *out, const json_t *result)
{
    json_t *rows = json_array(), *job, *node;
    size_t i;

    json_array_append_new(rows, json_pack("[s,s,s,s,s,s,s,s,s,s,s]", "GPID", "NODE",
                          "HOST_PID", "PID", "USER", "STATE", "CPU%", "RSS",
                          "START", "MOVES", "COMMAND"));
    json_array_foreach(json_object_get(result, "jobs"), i, job) {
        char rss[32], start[32], cmd[256] = "";
        time_t t = (time_t)(json_integer_value(json_object_get(job, "start_ms")) / 1000);
        struct tm tm;
        json_t *a;
        size_t k;
        cli_size_text(rss, sizeof rss, json_integer_value(json_object_get(job, "rss_bytes")));
        strftime(start, sizeof start, "%H:%M:%S", localtime_r(&t, &tm));
        json_array_foreach(json_object_get(job, "argv"), k, a) {
            size_t len = strlen(cmd);
            snprintf(cmd + len, sizeof cmd - len, "%s%s", k ? " " : "",
                     json_string_value(a));
        }
        json_t *user = json_object_get(job, "user");
        json_array_append_new(rows, json_pack("[O,O,O,O,O,O,O,s,s,O,s]",
            json_object_get(job, "gpid"), json_object_get(job, "node"),
            json_object_get(job, "host_pid"), json_object_get(job, "pid"),
            json_is_string(user) ? user : json_object_get(job, "uid"),
            json_object_get(job, "state"), json_object_get(job, "cpu_percent"),
            rss, start, json_object_get(job, "moves"), cmd));
    }
    int r = cli_table_rows(out, rows);
    json_decref(rows);
    json_array_foreach(json_object_get(result, "nodes"), i, node)
        if (r == 0 && !json_is_true(json_object_get(node, "reachable")))
            fprintf(out, "node %lld unreachable: %s\n",
                    (long long)json_integer_value(json_object_get(node, "node")),
                    json_string_value(json_object_get(node, "error")));
    return r;
}

/* ---- signal, kill, wait --------------------------------------------------- */

static const struct { const char *name; int sig; } s_signals[] = {
    { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL },
    { "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS }, { "FPE", SIGFPE },
    { "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
    { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
    { "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
    { "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
    { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH },
    { "IO", SIGIO }, { "PWR", SIGPWR }, { "SYS", SIGSYS },
};

/* A signal by number (1..64) or name (TERM, SIGTERM, term). */
static int s_parse_signal(const char *s, uint32_t *ret, cairn_error_t *err)
{
    long n;

    if (cairn_parse_long("--signal", s, 1, 64, &n, NULL) == 0) {
        *ret = (uint32_t)n;
        return 0;
    }
    const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
    for (size_t i = 0; i < sizeof s_signals / sizeof s_signals[0]; i++)
        if (strcasecmp(name, s_signals[i].name) == 0) {
            *ret = (uint32_t)s_signals[i].sig;
            return 0;
        }
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--signal '%s': not a signal "
                           "name (TERM, KILL, USR1, ...) or number 1..64", s);
}

static int s_gpid_arg(const char *what, const cairn_option_t *opts, int argc,
                      char **argv, cairn_args_t *a, cairn_error_t *err)
{
    int r = cairn_args_parse(what, opts, argc, argv, 1, a, err);

    if (r == 0 && a->n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: the job's gpid is "
                            "required (cairn %s GPID)", what, what);
    return r;
}

static int s_signal(cli_ctx *ctx, const char *gpid, uint32_t sig, json_t **ret_result,
                    cairn_error_t *err)
{
    Cairn__Ghostd__SignalRequest sr = CAIRN__GHOSTD__SIGNAL_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;

    sr.gpid = (char *)gpid;
    sr.signal = sig;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_SIGNAL;
    req.signal = &sr;
    int r = s_call(ctx, s_timeout(ctx, CLI_DEFAULT_TIMEOUT_MS), "signal", &req.base,
                   CAIRN__GHOSTD__REPLY__MSG_SIGNAL_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    json_t *job = s_job_json(reply->signal_reply->job);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (job)
        json_object_set_new(job, "signal", json_integer(sig));
    return s_result(job, by, ret_result, err);
}

int cli_cmd_signal(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err)
{
    cairn_args_t a;
    uint32_t sig = SIGTERM;
    int r = s_gpid_arg("signal", cli_signal_options, argc, argv, &a, err);

    if (r == 0 && a.values[O_SIG_SIGNAL])
        r = s_parse_signal(a.values[O_SIG_SIGNAL], &sig, err);
    return r < 0 ? r : s_signal(ctx, a.pos[0], sig, ret_result, err);
}

int cli_cmd_kill(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err)
{
    cairn_args_t a;
    int r = s_gpid_arg("kill", cli_no_options, argc, argv, &a, err);

    return r < 0 ? r : s_signal(ctx, a.pos[0], SIGKILL, ret_result, err);
}

static int s_wait_gpid(cli_ctx *ctx, const char *gpid, json_t **ret_result,
                       cairn_error_t *err)
{
    Cairn__Ghostd__WaitRequest wr = CAIRN__GHOSTD__WAIT_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;

    wr.gpid = (char *)gpid;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_WAIT;
    req.wait = &wr;
    int r = s_call(ctx, s_timeout(ctx, S_WAIT_TIMEOUT_MS), "wait", &req.base,
                   CAIRN__GHOSTD__REPLY__MSG_WAIT_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    json_t *job = s_job_json(reply->wait_reply->job);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return s_result(job, by, ret_result, err);
}

int cli_cmd_wait(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err)
{
    cairn_args_t a;
    int r = s_gpid_arg("wait", cli_no_options, argc, argv, &a, err);

    return r < 0 ? r : s_wait_gpid(ctx, a.pos[0], ret_result, err);
}

/* ---- logs ---------------------------------------------------------------- */

/* gpid's directory: <run base>/<cluster>/jobs/<gpid>, from the description. */
static int s_job_dir(const cli_ctx *ctx, const char *gpid, char *out, size_t size,
                     cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    const char *p;

    for (p = gpid; *p && (isdigit((unsigned char)*p) || *p == '.'); p++)
        ;
    if (!*gpid || *p || !strchr(gpid, '.'))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "logs: '%s' is not a "
                               "gpid (NODE.SEQ, e.g. 1.7)", gpid);
    int r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    snprintf(out, size, "%s/%s/jobs/%s", cairn_description_run_base(d),
             cairn_description_cluster(d), gpid);
    cairn_description_free(d);
    return 0;
}

/* Copies what fd holds past its offset to out. */
static int s_copy(int fd, FILE *out, cairn_error_t *err)
{
    char buf[65536];
    ssize_t n;

    while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0 && fwrite(buf, 1, (size_t)n, out) != (size_t)n)
            return cairn_error_set(err, -EIO, CAIRN_SYSTEM, "write: %s", strerror(errno));
    if (n < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "read: %s", strerror(errno));
    fflush(out);
    return 0;
}

int cli_cmd_logs(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                 cairn_error_t *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], exit_path[PATH_MAX + 16];
    cairn_args_t a;
    int r = s_gpid_arg("logs", cli_logs_options, argc, argv, &a, err);

    if (r == 0)
        r = s_job_dir(ctx, a.pos[0], dir, sizeof dir, err);
    if (r < 0)
        return r;
    snprintf(path, sizeof path, "%s/%s", dir, a.values[O_LOGS_STDERR] ? "stderr" : "stdout");
    snprintf(exit_path, sizeof exit_path, "%s/exit", dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set(err, -errno, errno == EACCES ? CAIRN_PERMISSION_DENIED
                               : errno == ENOENT ? CAIRN_NOT_FOUND : CAIRN_SYSTEM,
                               "logs: cannot read %s: %s%s", path, strerror(errno),
                               errno == ENOENT ? " (no such job, or it did not start)" : "");
    uint64_t deadline = ctx->timeout_set ? cairn_now_ms() + (uint64_t)ctx->timeout_ms : 0;
    for (;;) {
        /* the exit record first: once it is there, no byte comes after
         * what the next read sees */
        bool ended = !a.values[O_LOGS_FOLLOW] || access(exit_path, F_OK) == 0;
        if ((r = s_copy(fd, out, err)) < 0)
            return r;
        if (ended)
            return CLI_EXIT_OK;
        if (deadline && cairn_now_ms() >= deadline)
            return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT, "logs: job %s "
                                   "still runs after %d ms", a.pos[0], ctx->timeout_ms);
        if (access(dir, F_OK) < 0)
            return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "logs: %s is gone", dir);
        usleep(S_FOLLOW_POLL_US);
    }
}
