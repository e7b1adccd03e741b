/* cmd-selftest.c - `cairn selftest [--node N|--all]`: a battery of real
 * round trips against the live cluster, each step timed.
 *
 * Design. The steps use the same handlers as the commands an operator
 * would type (status, nodes, run, migrate, kill, checkpoint, restart) or
 * libcairn itself (the lock), each aimed at one node by a copy of the
 * caller's context whose node is that node's id (s_at), so a step proves
 * exactly what the command would. A step answers 0 (passed, with a detail
 * object), S_SKIPPED (err's message says why: the node does not run the
 * service, kernetd not built yet, a node on another host) or a
 * negative errno (failed, err says why). Steps, in order: "status" of
 * every service of the description on every node (a cheap read request of
 * that service, its reply case checked); "membership" once: every alive
 * node's view of the members is the same (retried for a short settle time,
 * a suspect flapping is not a failure yet); then per node "lock" (a mutex
 * taken, released and destroyed at the node's syncd), "dsm" (a word
 * written into a new segment at the node, read back at the next node, the
 * segment removed), "checkpoint"
 * (a sleep started in the node's network namespace, checkpointed and
 * restored under a new pid), "migrate" (a `cairn run` job moved to another
 * node and back) and "stream". Whatever a step started (processes, jobs,
 * locks, image files) is removed before it returns, pass or fail; a
 * failed clean-up fails the step.
 *
 * The report is the result when every step passed or was skipped; when one
 * failed, the command fails (docs/cli.md, "cairn selftest") with the first
 * failed step's error code -- so its exit code -- a message naming every
 * failed step, and the whole report in the error object (ctx->error_extra),
 * since stdout stays empty on failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn/dsm.h"
#include "cairn/sync.h"
#include "cli.h"
#include "clusterd.pb-c.h"
#include "dsmd.pb-c.h"
#include "ghostd.pb-c.h"
#include "output.h"
#include "probed.pb-c.h"
#include "sched.pb-c.h"
#include "syncd.pb-c.h"
#include "target.h"

#define S_SKIPPED 1
#define S_SETTLE_MS 3000           /* membership views may differ this long */
#define S_EXEC_WAIT_MS 2000        /* the sleep's exec */
#define S_SLEEP_SECONDS "600"      /* outlives any step; killed at its end */

const cairn_option_t cli_selftest_options[] = {
    { "--all", NULL, "every node of the description (the default; the global "
      "--node N tests node N alone)" },
    { NULL, NULL, NULL },
};
enum { O_ALL };

typedef struct s_run {
    cli_ctx *ctx;                 /* the caller's */
    cairn_description_t *d;       /* owned */
    json_t *steps;                /* the report's steps, owned */
    unsigned passed, failed, skipped;
    int first_r;                  /* the first failure's return, 0 if none */
    cairn_error_t first_err;      /* and its error */
    char failures[512];           /* "lock@2, status syncd@2" */
} s_run_t;

/* A copy of the caller's context aimed at node id; arg holds its text. */
typedef struct s_at {
    cli_ctx ctx;
    char arg[16];
} s_at_t;

typedef int (*s_step_fn)(s_run_t *run, const cairn_node_desc_t *n,
                         const char *service, json_t **ret_detail,
                         cairn_error_t *err);

static void s_at(const s_run_t *run, uint32_t id, s_at_t *at)
{
    at->ctx = *run->ctx;
    at->ctx.error_extra = NULL;
    at->ctx.node = NULL;
    if (id) {
        snprintf(at->arg, sizeof at->arg, "%u", id);
        at->ctx.node = at->arg;
    }
}

/* Drops what a handler left in the copy's context (a refusal's reasons). */
static void s_at_done(s_at_t *at)
{
    json_decref(at->ctx.error_extra);
    at->ctx.error_extra = NULL;
}

/* Runs a command handler at node id (0: the default target). */
static int s_cmd(s_run_t *run, uint32_t id, cli_cmd_fn fn, int argc,
                 char **argv, json_t **ret, cairn_error_t *err)
{
    s_at_t at;

    s_at(run, id, &at);
    int r = fn(&at.ctx, argc, argv, ret, err);
    s_at_done(&at);
    return r;
}

/* A skipped step: S_SKIPPED, its reason in err. */
#define s_skip(err, ...) cairn_error_set((err), S_SKIPPED, CAIRN_OK, __VA_ARGS__)

/* ---- the report --------------------------------------------------------- */

static void s_note_failure(s_run_t *run, const char *step, const char *service,
                           uint32_t id, int r, const cairn_error_t *err)
{
    size_t len = strlen(run->failures);

    if (run->failed++ == 0) {
        run->first_r = r;
        run->first_err = *err;
    }
    snprintf(run->failures + len, sizeof run->failures - len, "%s%s%s%s@%u",
             len ? ", " : "", step, service ? " " : "", service ? service : "", id);
}

/* Runs one step, times it and appends its line to the report. */
static int s_step(s_run_t *run, const char *step, const cairn_node_desc_t *n,
                  const char *service, s_step_fn fn)
{
    cairn_error_t err = { 0 };
    json_t *detail = NULL;
    uint64_t t0 = cairn_now_us();
    int r = fn(run, n, service, &detail, &err);
    const char *result = r == 0 ? "passed" : r == S_SKIPPED ? "skipped" : "failed";
    json_t *line = json_pack("{s:s, s:s*, s:o, s:s, s:o}", "step", step,
                             "service", service, "node",
                             n ? json_integer(n->id) : json_null(), "result",
                             result, "ms", cli_json_ms(cairn_now_us() - t0));

    if (!line)
        return -ENOMEM;
    if (r == 0) {
        run->passed++;
        json_object_set_new(line, "detail", detail ? detail : json_object());
    } else {
        json_decref(detail);
        json_object_set_new(line, "reason", json_string(err.message));
        if (r == S_SKIPPED)
            run->skipped++;
        else {
            json_object_set_new(line, "code", json_string(cairn_code_name(err.code)));
            s_note_failure(run, step, service, n ? n->id : 0, r, &err);
        }
    }
    return json_array_append_new(run->steps, line) < 0 ? -ENOMEM : 0;
}

/* ---- status: one read request per service ------------------------------ */

/* The request a service answers cheaply, and the reply case it must get. */
typedef union s_status_req {
    Cairn__Clusterd__Request clusterd;
    Cairn__Ghostd__Request ghostd;
    Cairn__Syncd__Request syncd;
    Cairn__Probed__Request probed;
    Cairn__Sched__Request sched;
    Cairn__Dsmd__Request dsmd;
} s_status_req_t;

typedef union s_status_body {
    Cairn__Clusterd__StatusRequest clusterd;
    Cairn__Ghostd__PsRequest ghostd;
    Cairn__Syncd__LsRequest syncd;
    Cairn__Probed__LoadRequest probed;
    Cairn__Sched__ShowRequest sched;
    Cairn__Dsmd__LsRequest dsmd;
} s_status_body_t;

/* Fills req for service; false when cairn knows no request of it. */
static bool s_status_request(const char *service, s_status_req_t *req,
                             s_status_body_t *b,
                             const ProtobufCMessageDescriptor **ret_desc,
                             uint32_t *ret_expect)
{
    if (strcmp(service, "clusterd") == 0) {
        req->clusterd = (Cairn__Clusterd__Request)CAIRN__CLUSTERD__REQUEST__INIT;
        b->clusterd = (Cairn__Clusterd__StatusRequest)CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
        req->clusterd.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
        req->clusterd.status = &b->clusterd;
        *ret_desc = &cairn__clusterd__reply__descriptor;
        *ret_expect = CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY;
    } else if (strcmp(service, "ghostd") == 0) {
        req->ghostd = (Cairn__Ghostd__Request)CAIRN__GHOSTD__REQUEST__INIT;
        b->ghostd = (Cairn__Ghostd__PsRequest)CAIRN__GHOSTD__PS_REQUEST__INIT;
        b->ghostd.local_only = true;   /* this ghostd, not its peers */
        req->ghostd.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
        req->ghostd.ps = &b->ghostd;
        *ret_desc = &cairn__ghostd__reply__descriptor;
        *ret_expect = CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;
    } else if (strcmp(service, "syncd") == 0) {
        req->syncd = (Cairn__Syncd__Request)CAIRN__SYNCD__REQUEST__INIT;
        b->syncd = (Cairn__Syncd__LsRequest)CAIRN__SYNCD__LS_REQUEST__INIT;
        b->syncd.local_only = true;
        req->syncd.msg_case = CAIRN__SYNCD__REQUEST__MSG_LS;
        req->syncd.ls = &b->syncd;
        *ret_desc = &cairn__syncd__reply__descriptor;
        *ret_expect = CAIRN__SYNCD__REPLY__MSG_LS_REPLY;
    } else if (strcmp(service, "probed") == 0) {
        req->probed = (Cairn__Probed__Request)CAIRN__PROBED__REQUEST__INIT;
        b->probed = (Cairn__Probed__LoadRequest)CAIRN__PROBED__LOAD_REQUEST__INIT;
        req->probed.msg_case = CAIRN__PROBED__REQUEST__MSG_LOAD;
        req->probed.load = &b->probed;
        *ret_desc = &cairn__probed__reply__descriptor;
        *ret_expect = CAIRN__PROBED__REPLY__MSG_LOAD_REPLY;
    } else if (strcmp(service, "dsmd") == 0) {
        req->dsmd = (Cairn__Dsmd__Request)CAIRN__DSMD__REQUEST__INIT;
        b->dsmd = (Cairn__Dsmd__LsRequest)CAIRN__DSMD__LS_REQUEST__INIT;
        b->dsmd.local_only = true;
        req->dsmd.msg_case = CAIRN__DSMD__REQUEST__MSG_LS;
        req->dsmd.ls = &b->dsmd;
        *ret_desc = &cairn__dsmd__reply__descriptor;
        *ret_expect = CAIRN__DSMD__REPLY__MSG_LS_REPLY;
    } else if (strcmp(service, "sched") == 0) {
        req->sched = (Cairn__Sched__Request)CAIRN__SCHED__REQUEST__INIT;
        b->sched = (Cairn__Sched__ShowRequest)CAIRN__SCHED__SHOW_REQUEST__INIT;
        req->sched.msg_case = CAIRN__SCHED__REQUEST__MSG_SHOW;
        req->sched.show = &b->sched;
        *ret_desc = &cairn__sched__reply__descriptor;
        *ret_expect = CAIRN__SCHED__REPLY__MSG_SHOW_REPLY;
    } else
        return false;
    return true;
}

/* Whether something serves `service` at node n (a probe, no request). */
static bool s_listening(s_run_t *run, const cairn_node_desc_t *n,
                        const char *service)
{
    cairn_error_t e = { 0 };
    cli_target_t t = { 0 };
    s_at_t at;

    s_at(run, n->id, &at);
    int r = cli_target_resolve(&at.ctx, service, &t, &e);
    cli_target_clear(&t);
    return r == 0;
}

static int s_step_status(s_run_t *run, const cairn_node_desc_t *n,
                         const char *service, json_t **ret_detail,
                         cairn_error_t *err)
{
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *reply = NULL;
    json_t *by = NULL;
    s_status_req_t req;
    s_status_body_t body;
    cli_target_t t = { 0 };
    uint32_t expect;
    s_at_t at;

    if (!cairn_description_node_runs(run->d, n, service))
        return s_skip(err, "%s: not in the appliance of node %u", service, n->id);
    if (!s_status_request(service, &req, &body, &desc, &expect))
        return s_listening(run, n, service)
                   ? s_skip(err, "%s answers on node %u, but this cairn knows "
                            "none of its requests", service, n->id)
                   : s_skip(err, "%s not running on node %u", service, n->id);
    s_at(run, n->id, &at);
    int r = cli_target_resolve(&at.ctx, service, &t, err);
    if (r == 0)
        r = cli_target_call(&at.ctx, &t, service, at.ctx.timeout_ms,
                            (const ProtobufCMessage *)&req, desc, expect,
                            "status", &reply, &by, err);
    if (r == 0)
        *ret_detail = json_pack("{s:s}", "endpoint", t.endpoint);
    cli_target_clear(&t);
    json_decref(by);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    return r;
}

/* ---- membership --------------------------------------------------------- */

/* The alive nodes' views: {"<id>": {"<member id>": state}}; the nodes that
 * did not answer are left out (their peers' views say whether that is
 * right). */
static json_t *s_views(s_run_t *run)
{
    json_t *views = json_object();

    for (size_t i = 0; views && i < cairn_description_n_nodes(run->d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(run->d, i);
        _cleanup_json_ json_t *nodes = NULL;
        cairn_error_t e = { 0 };
        char key[16];
        json_t *m, *view = json_object();
        size_t k;

        if (!view || s_cmd(run, n->id, cli_cmd_nodes, 0, NULL, &nodes, &e) < 0) {
            json_decref(view);
            continue;
        }
        json_array_foreach(json_object_get(nodes, "nodes"), k, m) {
            snprintf(key, sizeof key, "%lld",
                     (long long)json_integer_value(json_object_get(m, "id")));
            json_object_set(view, key, json_object_get(m, "state"));
        }
        snprintf(key, sizeof key, "%u", n->id);
        json_object_set_new(views, key, view);
    }
    return views;
}

/* Why the views disagree, into err; 0 when every node that one of them
 * says is alive answered with the same view. */
static int s_compare_views(const json_t *views, json_t **ret_alive,
                           cairn_error_t *err)
{
    const json_t *ref = NULL, *view;
    const char *ref_id = NULL, *id, *member;
    json_t *state;

    json_object_foreach((json_t *)views, id, view) {
        if (!ref) {
            ref = view;
            ref_id = id;
        } else if (!json_equal(ref, view))
            return cairn_error_set(err, -EPROTO, CAIRN_FAILED_PRECONDITION,
                                   "node %s and node %s see different members "
                                   "or states", ref_id, id);
    }
    if (!ref)
        return cairn_error_set(err, -ENOTCONN, CAIRN_UNAVAILABLE,
                               "no node's clusterd answered");
    json_t *alive = json_array();
    json_object_foreach((json_t *)ref, member, state)
        if (strcmp(json_string_value(state) ? json_string_value(state) : "",
                   "alive") == 0) {
            if (!json_object_get(views, member)) {
                json_decref(alive);
                return cairn_error_set(err, -ENOTCONN, CAIRN_UNAVAILABLE,
                                       "node %s is alive to its peers but its "
                                       "clusterd does not answer", member);
            }
            json_array_append_new(alive, json_integer(atoll(member)));
        }
    *ret_alive = alive;
    return 0;
}

static int s_step_membership(s_run_t *run, const cairn_node_desc_t *n,
                             const char *service, json_t **ret_detail,
                             cairn_error_t *err)
{
    uint64_t deadline = cairn_now_ms() + S_SETTLE_MS;
    json_t *alive = NULL;
    int r, tries = 0;

    (void)n;
    (void)service;
    do {
        if (tries++)
            usleep(200000);
        _cleanup_json_ json_t *views = s_views(run);
        if (!views)
            return cli_oom(err);
        cairn_error_clear(err);
        r = s_compare_views(views, &alive, err);
    } while (r < 0 && cairn_now_ms() < deadline);
    if (r < 0)
        return r;
    *ret_detail = json_pack("{s:o, s:i}", "alive", alive, "tries", tries);
    return 0;
}

/* ---- lock --------------------------------------------------------------- */

static int s_step_lock(s_run_t *run, const cairn_node_desc_t *n,
                       const char *service, json_t **ret_detail,
                       cairn_error_t *err)
{
    cairn_sync_grant_t g = { 0 };
    cli_target_t t = { 0 };
    char name[96];
    s_at_t at;

    (void)service;
    if (!cairn_description_node_runs(run->d, n, "syncd"))
        return s_skip(err, "%s not running on node %u", "syncd", n->id);
    s_at(run, n->id, &at);
    int r = cli_target_resolve(&at.ctx, "syncd", &t, err);
    if (r == 0 && strncmp(t.endpoint, "ipc://", 6) != 0)
        r = s_skip(err, "%s on node %u is on another host (a lock is taken "
                   "over ipc)", "syncd", n->id);
    cairn_sync_t *s = r == 0 ? cairn_sync_open(t.endpoint, err) : NULL;
    cli_target_clear(&t);
    if (r != 0 || !s)
        return r != 0 ? r : -ENOTCONN;
    snprintf(name, sizeof name, "cairn-selftest.%d.%u.%llu", (int)getpid(), n->id,
             (unsigned long long)cairn_now_ms());
    uint64_t t_lock = cairn_now_us();
    r = cairn_mutex_lock(s, name, run->ctx->timeout_ms, &g, err);
    uint64_t t_locked = cairn_now_us();
    if (r == 0)
        r = cairn_mutex_unlock(s, name, err);
    uint64_t unlock_us = cairn_now_us() - t_locked;
    cairn_error_t e = { 0 };   /* the destroy also runs after a failure */
    int rd = cairn_sync_destroy(s, name, &e);
    cairn_sync_close(s);
    /* not-found: gone already -- a destroy resent under load finds the
     * name its first copy removed; said in the detail, not a failure */
    bool gone = rd < 0 && e.code == CAIRN_NOT_FOUND;
    if (r == 0 && rd < 0 && !gone) {
        *err = e;
        r = rd;
    }
    if (r < 0)
        return r;
    char token[24];
    snprintf(token, sizeof token, "%llu", (unsigned long long)g.token);
    *ret_detail = json_pack("{s:s, s:s, s:I, s:b, s:o, s:o, s:s}", "name", name, "token",
                            token, "home", (json_int_t)g.home, "cached", g.cached,
                            "lock_ms", cli_json_ms(t_locked - t_lock), "unlock_ms",
                            cli_json_ms(unlock_us), "destroy",
                            gone ? "not-found" : "done");
    return 0;
}

/* ---- services not built yet -------------------------------------------- */

/* A step of a service this cairn has no round trip for: skipped while the
 * service does not run, failed (never passed) when it does. */
static int s_unbuilt(s_run_t *run, const cairn_node_desc_t *n,
                     const char *service, const char *what, cairn_error_t *err)
{
    if (!cairn_description_node_runs(run->d, n, service) ||
        !s_listening(run, n, service))
        return s_skip(err, "%s not running on node %u", service, n->id);
    return cairn_error_set(err, -ENOSYS, CAIRN_UNSUPPORTED, "%s answers on "
                           "node %u, but this cairn has no %s round trip",
                           service, n->id, what);
}

/* A DSM page round trip: a word written into a new segment through node
 * n's dsmd is read back through the next node's (its page fetched from
 * n), then the segment is removed. */
static int s_step_dsm(s_run_t *run, const cairn_node_desc_t *n,
                      const char *service, json_t **ret_detail,
                      cairn_error_t *err)
{
    (void)service;
    if (!cairn_description_node_runs(run->d, n, "dsmd") || !s_listening(run, n, "dsmd"))
        return s_skip(err, "dsmd not running on node %u", n->id);
    const cairn_node_desc_t *m = n;
    size_t count = cairn_description_n_nodes(run->d);
    for (size_t i = 0; i < count; i++) {
        const cairn_node_desc_t *c = cairn_description_node(run->d, (i + 1) % count);
        if (cairn_description_node(run->d, i) == n && c != n &&
            cairn_description_node_runs(run->d, c, "dsmd") && s_listening(run, c, "dsmd"))
            m = c;
    }
    char name[64], at_n[PATH_MAX], at_m[PATH_MAX];
    uint64_t word = cairn_now_ns() | 1, got = 0;
    snprintf(name, sizeof name, "cairn-selftest-%d-%u", (int)getpid(), n->id);
    snprintf(at_n, sizeof at_n, "%s/dsmd.fd.sock", n->rundir);
    snprintf(at_m, sizeof at_m, "%s/dsmd.fd.sock", m->rundir);
    cairn_dsm_t *s = NULL;
    int r = cairn_dsm_open_at(at_n, name, 4096, CAIRN_DSM_CREATE | CAIRN_DSM_EXCL, 0600, &s, err);
    if (r < 0)
        return r;
    *(volatile uint64_t *)cairn_dsm_addr(s) = word;
    cairn_dsm_close(s);
    r = cairn_dsm_open_at(at_m, name, 4096, 0, 0, &s, err);
    if (r == 0) {
        got = *(volatile uint64_t *)cairn_dsm_addr(s);
        cairn_dsm_close(s);
    }
    cairn_error_t rm_err = { 0 };
    int rm = cairn_dsm_unlink_at(at_n, name, &rm_err);
    if (r < 0)
        return r;
    if (got != word)
        return cairn_error_set(err, -EIO, CAIRN_INTERNAL, "dsm: node %u wrote %" PRIu64
                               ", node %u read %" PRIu64, n->id, word, m->id, got);
    if (rm < 0) {
        *err = rm_err;
        return rm;
    }
    *ret_detail = json_pack("{s:I, s:I}", "written_on", (json_int_t)n->id, "read_on",
                            (json_int_t)m->id);
    return 0;
}

static int s_step_stream(s_run_t *run, const cairn_node_desc_t *n,
                         const char *service, json_t **ret_detail,
                         cairn_error_t *err)
{
    (void)service;
    (void)ret_detail;
    return s_unbuilt(run, n, "kernetd", "stream", err);
}

/* ---- checkpoint / restart ------------------------------------------------ */

/* A sleep in the network namespace of pid ns_pid (where the node's daemons
 * run: its ghostd checkpoints only its node's processes), detached from
 * our session and files. */
static int s_spawn_sleep(long ns_pid, pid_t *ret, cairn_error_t *err)
{
    char path[64];

    snprintf(path, sizeof path, "/proc/%ld/ns/net", ns_pid);
    _cleanup_close_ int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "open %s: %s", path,
                               strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (setns(ns, CLONE_NEWNET) < 0 || null < 0 || setsid() < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        closefrom(3);
        execl("/bin/sleep", "sleep", S_SLEEP_SECONDS, (char *)NULL);
        _exit(127);
    }
    *ret = pid;
    return 0;
}

/* Whether pid runs the program named comm (a sleep that exec'ed). */
static bool s_is_comm(pid_t pid, const char *comm)
{
    char path[64], buf[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, sizeof buf, f) && strncmp(buf, comm, strlen(comm)) == 0 &&
              buf[strlen(comm)] == '\n';
    fclose(f);
    return ok;
}

/* Waits until *pid runs sleep; one that exited instead is reaped (and
 * *pid zeroed, so nobody signals a pid that may be another's by then). */
static int s_wait_exec(pid_t *pid, cairn_error_t *err)
{
    uint64_t deadline = cairn_now_ms() + S_EXEC_WAIT_MS;

    while (!s_is_comm(*pid, "sleep")) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid)
            *pid = 0;
        if (*pid == 0 || cairn_now_ms() > deadline)
            return cairn_error_set(err, -ECHILD, CAIRN_SYSTEM, "the test "
                                   "program (/bin/sleep) did not start");
        usleep(10000);
    }
    return 0;
}

/* Removes dir/image-dir and what the checkpoint wrote in it (files only). */
static int s_remove_image(const char *dir, cairn_error_t *err)
{
    DIR *dh = opendir(dir);
    struct dirent *e;

    while (dh && (e = readdir(dh)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(dh), e->d_name, 0);
    if (dh)
        closedir(dh);
    if (rmdir(dir) < 0 && errno != ENOENT)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "clean-up: rmdir %s: %s",
                               dir, strerror(errno));
    return 0;
}

/* Checkpoints pid (killing it) into dir and restores it under a new pid:
 * *ret_restored, and the two results' figures in *ret_detail. */
static int s_checkpoint_restart(s_run_t *run, uint32_t id, pid_t pid, char *dir,
                                pid_t *ret_restored, json_t **ret_detail,
                                cairn_error_t *err)
{
    _cleanup_json_ json_t *ck = NULL, *rs = NULL;
    char pid_arg[16];

    snprintf(pid_arg, sizeof pid_arg, "%d", (int)pid);
    char *ck_argv[] = { pid_arg, "--dir", dir, NULL };
    int r = s_cmd(run, id, cli_cmd_checkpoint, 3, ck_argv, &ck, err);
    if (r < 0)
        return r;
    char *rs_argv[] = { dir, "--pid", "new", NULL };
    if ((r = s_cmd(run, id, cli_cmd_restart, 3, rs_argv, &rs, err)) < 0)
        return r;
    *ret_restored = (pid_t)json_integer_value(json_object_get(rs, "pid"));
    if (*ret_restored <= 0 || !s_is_comm(*ret_restored, "sleep"))
        return cairn_error_set(err, -ESRCH, CAIRN_INTERNAL, "restart said pid %d, "
                               "which is not the restored sleep", (int)*ret_restored);
    *ret_detail = json_pack("{s:O, s:O, s:O, s:O, s:i}", "image_bytes",
                            json_object_get(ck, "image_bytes"), "freeze_ms",
                            json_object_get(ck, "freeze_ms"), "dump_ms",
                            json_object_get(ck, "dump_ms"), "restore_ms",
                            json_object_get(rs, "restore_ms"), "pid", (int)*ret_restored);
    return *ret_detail ? 0 : cli_oom(err);
}

/* The pid of the node's clusterd (whose network namespace is the node's),
 * or a skip when the node is not on this host. */
static int s_node_pid(s_run_t *run, const cairn_node_desc_t *n, long *ret,
                      cairn_error_t *err)
{
    _cleanup_json_ json_t *st = NULL;
    cli_target_t t = { 0 };
    s_at_t at;

    s_at(run, n->id, &at);
    int r = cli_target_resolve(&at.ctx, "ghostd", &t, err);
    bool here = r == 0 && strncmp(t.endpoint, "ipc://", 6) == 0;
    cli_target_clear(&t);
    if (r < 0)
        return r;
    if (!here)
        return s_skip(err, "%s on node %u is on another host (the test program "
                      "is started here)", "ghostd", n->id);
    if ((r = s_cmd(run, n->id, cli_cmd_status, 0, NULL, &st, err)) < 0)
        return r;
    *ret = (long)json_integer_value(json_object_get(st, "pid"));
    return 0;
}

static int s_step_checkpoint(s_run_t *run, const cairn_node_desc_t *n,
                             const char *service, json_t **ret_detail,
                             cairn_error_t *err)
{
    const char *base = getenv("TMPDIR");
    char tmp[PATH_MAX], dir[PATH_MAX + 8];
    pid_t pid = 0, restored = 0;
    long ns_pid = 0;

    (void)service;
    if (!cairn_description_node_runs(run->d, n, "ghostd"))
        return s_skip(err, "%s not running on node %u", "ghostd", n->id);
    int r = s_node_pid(run, n, &ns_pid, err);
    if (r != 0)
        return r;
    snprintf(tmp, sizeof tmp, "%s/cairn-selftest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdtemp: %s", strerror(errno));
    snprintf(dir, sizeof dir, "%s/image", tmp);
    r = s_spawn_sleep(ns_pid, &pid, err);
    if (r == 0)
        r = s_wait_exec(&pid, err);
    if (r == 0)
        r = s_checkpoint_restart(run, n->id, pid, dir, &restored, ret_detail, err);
    if (pid > 0) {   /* killed by its dump, else by us: our child till reaped */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (restored > 0 && s_is_comm(restored, "sleep"))
        kill(restored, SIGKILL);
    cairn_error_t e = { 0 };
    int rc = s_remove_image(dir, r < 0 ? &e : err);
    if (rc == 0)
        rc = s_remove_image(tmp, r < 0 ? &e : err);
    if (r == 0 && rc < 0) {
        json_decref(*ret_detail);
        *ret_detail = NULL;
        r = rc;
    }
    return r;
}

/* ---- migrate ------------------------------------------------------------ */

/* The next node after n (in description order, wrapping) whose ghostd
 * answers; NULL when there is none. */
static const cairn_node_desc_t *s_other_ghostd(s_run_t *run,
                                               const cairn_node_desc_t *n)
{
    size_t count = cairn_description_n_nodes(run->d), at = 0;

    while (at < count && cairn_description_node(run->d, at) != n)
        at++;
    for (size_t k = 1; k < count; k++) {
        const cairn_node_desc_t *m = cairn_description_node(run->d, (at + k) % count);
        if (cairn_description_node_runs(run->d, m, "ghostd") &&
            s_listening(run, m, "ghostd"))
            return m;
    }
    return NULL;
}

/* Moves gpid (asked at node from) to node to; its time into *ret_ms. */
static int s_move(s_run_t *run, const char *gpid, uint32_t from, uint32_t to,
                  json_t **ret_ms, cairn_error_t *err)
{
    _cleanup_json_ json_t *res = NULL;
    char to_arg[16];

    snprintf(to_arg, sizeof to_arg, "%u", to);
    char *argv[] = { (char *)gpid, "--to", to_arg, NULL };
    int r = s_cmd(run, from, cli_cmd_migrate, 3, argv, &res, err);
    if (r < 0)
        return r;
    json_int_t now = json_integer_value(json_object_get(json_object_get(res, "job"), "node"));
    if (now != (json_int_t)to)
        return cairn_error_set(err, -EPROTO, CAIRN_INTERNAL, "migrate of %s to node %u "
                               "answered, but the job is on node %lld", gpid, to,
                               (long long)now);
    *ret_ms = json_incref(json_object_get(res, "total_ms"));
    return 0;
}

static int s_step_migrate(s_run_t *run, const cairn_node_desc_t *n,
                          const char *service, json_t **ret_detail,
                          cairn_error_t *err)
{
    _cleanup_json_ json_t *job = NULL;
    json_t *there = NULL, *back = NULL;
    char gpid[64];

    (void)service;
    if (!cairn_description_node_runs(run->d, n, "ghostd"))
        return s_skip(err, "%s not running on node %u", "ghostd", n->id);
    const cairn_node_desc_t *m = s_other_ghostd(run, n);
    if (!m)
        return s_skip(err, "%s: no other node's answers, so node %u's jobs have "
                      "nowhere to go", "ghostd", n->id);
    char *run_argv[] = { "--name", "cairn-selftest", "--cwd", "/", "--", "sleep",
                         S_SLEEP_SECONDS, NULL };
    int r = s_cmd(run, n->id, cli_cmd_run, 7, run_argv, &job, err);
    if (r < 0)
        return r;
    snprintf(gpid, sizeof gpid, "%s", json_string_value(json_object_get(job, "gpid")));
    r = s_move(run, gpid, n->id, m->id, &there, err);
    if (r == 0)
        r = s_move(run, gpid, m->id, n->id, &back, err);
    _cleanup_json_ json_t *killed = NULL;
    cairn_error_t e = { 0 };
    char *kill_argv[] = { gpid, NULL };
    int rk = s_cmd(run, 0, cli_cmd_kill, 1, kill_argv, &killed, r < 0 ? &e : err);
    if (r == 0 && rk < 0)
        r = rk;
    if (r == 0)
        *ret_detail = json_pack("{s:s, s:I, s:o, s:o}", "gpid", gpid, "via",
                                (json_int_t)m->id, "there_ms", there, "back_ms", back);
    else {
        json_decref(there);
        json_decref(back);
    }
    return r;
}

/* ---- the battery -------------------------------------------------------- */

/* The nodes to test: the one the global --node (or CAIRN_NODE) names, else
 * every node of the description. */
static int s_nodes(const s_run_t *run, bool all, const cairn_node_desc_t **out,
                   size_t *ret_n, cairn_error_t *err)
{
    const char *env = getenv("CAIRN_NODE");
    const char *one = run->ctx->node ? run->ctx->node : (env && *env ? env : NULL);

    if (one && all && run->ctx->node)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "selftest: --node and "
                               "--all, not both");
    if (one && !all) {
        out[0] = cairn_description_lookup_node(run->d, one);
        *ret_n = 1;
        return out[0] ? 0 : cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--node '%s': "
                                            "no such node in the description", one);
    }
    *ret_n = cairn_description_n_nodes(run->d);
    for (size_t i = 0; i < *ret_n; i++)
        out[i] = cairn_description_node(run->d, i);
    return 0;
}

static int s_battery(s_run_t *run, const cairn_node_desc_t **nodes, size_t n)
{
    static const struct { const char *step; s_step_fn fn; } per_node[] = {
        { "lock", s_step_lock }, { "dsm", s_step_dsm },
        { "checkpoint", s_step_checkpoint }, { "migrate", s_step_migrate },
        { "stream", s_step_stream },
    };
    int r = 0;

    for (size_t i = 0; r == 0 && i < n; i++)
        for (size_t s = 0; r == 0 && s < cairn_description_n_services(run->d); s++)
            r = s_step(run, "status", nodes[i],
                       cairn_description_service_at(run->d, s)->name, s_step_status);
    if (r == 0)
        r = s_step(run, "membership", NULL, NULL, s_step_membership);
    for (size_t k = 0; r == 0 && k < sizeof per_node / sizeof per_node[0]; k++)
        for (size_t i = 0; r == 0 && i < n; i++)
            r = s_step(run, per_node[k].step, nodes[i], NULL, per_node[k].fn);
    return r;
}

/* The report; on a failed step, the error carrying it. */
static int s_report(s_run_t *run, const cairn_node_desc_t **nodes, size_t n,
                    uint64_t t0, json_t **ret_result, cairn_error_t *err)
{
    json_t *ids = json_array();

    for (size_t i = 0; ids && i < n; i++)
        json_array_append_new(ids, json_integer(nodes[i]->id));
    json_t *report = json_pack("{s:s, s:o*, s:b, s:I, s:I, s:I, s:o, s:O}",
                               "cluster", cairn_description_cluster(run->d),
                               "nodes", ids, "ok", run->failed == 0,
                               "passed", (json_int_t)run->passed,
                               "failed", (json_int_t)run->failed,
                               "skipped", (json_int_t)run->skipped,
                               "ms", cli_json_ms(cairn_now_us() - t0),
                               "steps", run->steps);
    if (!report)
        return cli_oom(err);
    if (run->failed == 0) {
        *ret_result = report;
        return 0;
    }
    run->ctx->error_extra = json_pack("{s:o}", "report", report);
    cairn_error_set(err, run->first_r, run->first_err.code, "selftest: %u of %u "
                    "steps failed (%s); the first: %s", run->failed,
                    run->passed + run->failed + run->skipped, run->failures,
                    run->first_err.message);
    return run->first_r;
}

int cli_cmd_selftest(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err)
{
    const cairn_node_desc_t *nodes[256];
    s_run_t run = { .ctx = ctx };
    uint64_t t0 = cairn_now_us();
    cairn_args_t a;
    size_t n = 0;

    int r = cairn_args_parse("selftest", cli_selftest_options, argc, argv, 0, &a, err);
    if (r == 0)
        r = cli_target_load_description(ctx, &run.d, err);
    if (r == 0)
        r = s_nodes(&run, a.values[O_ALL] != NULL, nodes, &n, err);
    if (r == 0 && !(run.steps = json_array()))
        r = cli_oom(err);
    if (r == 0 && s_battery(&run, nodes, n) < 0)
        r = cli_oom(err);
    if (r == 0)
        r = s_report(&run, nodes, n, t0, ret_result, err);
    json_decref(run.steps);
    cairn_description_free(run.d);
    return r;
}

/* --table: one row per step. */
int cli_table_selftest(FILE *out, const json_t *result)
{
    json_t *rows = json_array(), *step;
    size_t i;
#define S_CELL(key) (json_object_get(step, key) ? json_object_get(step, key) : json_null())

    json_array_append_new(rows, json_pack("[s,s,s,s,s,s]", "STEP", "SERVICE", "NODE",
                                          "RESULT", "MS", "REASON"));
    json_array_foreach(json_object_get(result, "steps"), i, step)
        json_array_append_new(rows, json_pack("[O,O,O,O,O,O]", S_CELL("step"),
                                              S_CELL("service"), S_CELL("node"),
                                              S_CELL("result"), S_CELL("ms"),
                                              S_CELL("reason")));
#undef S_CELL
    int r = cli_table_rows(out, rows);
    json_decref(rows);
    if (r == 0)
        fprintf(out, "%lld passed, %lld failed, %lld skipped in %.0f ms\n",
                (long long)json_integer_value(json_object_get(result, "passed")),
                (long long)json_integer_value(json_object_get(result, "failed")),
                (long long)json_integer_value(json_object_get(result, "skipped")),
                json_number_value(json_object_get(result, "ms")));
    return r;
}
