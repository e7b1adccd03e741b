/* cmd-ghost.c - `cairn checkpoint PID`, `cairn restart DIR`.
 *
 * Design. Each verb is one ghostd request: resolve the target (target.c),
 * send Request{checkpoint|restart} through cairn_client_call() and turn the
 * Reply into the JSON documented in docs/cli.md (times in ms from the
 * reply's us fields, 3 decimals: cli_json_ms), with "answered_by" naming
 * the node whose ghostd answered. The pid and the directory belong to this
 * host, so with no --node the target falls over only among this host's
 * nodes (cli_target_resolve_here), never to a ghostd on another host. A checkpoint or restore of a large process takes
 * seconds, so unless --timeout was given these verbs wait up to
 * S_DEFAULT_TIMEOUT_MS; ghostd kills its helper a little before the
 * deadline it is told and answers timeout. A relative DIR is made absolute
 * here, against the caller's cwd: ghostd runs elsewhere and refuses one.
 * With no --dir, ghostd picks <rundir>/ghost/<pid>-<unix ms> and says so in
 * the reply ("dir"). A --check that ghostd answers with reasons (a
 * checked_only reply listing why not) is this command's error: the first
 * reason's code and message, every reason in the error's "reasons"
 * (cli_ctx.error_extra), exit 1 as any refusal.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cli.h"
#include "ghostd.pb-c.h"
#include "output.h"
#include "target.h"

#define S_DEFAULT_TIMEOUT_MS 120000

const cairn_option_t cli_checkpoint_options[] = {
    { "--dir", "D", "image directory, created (default <node rundir>/ghost/"
      "<pid>-<unix ms>); the image is D/image.ghost" },
    { "--leave-running", NULL, "let the process run on after the dump (else "
      "it is killed)" },
    { "--in-place", NULL, "write over D's image, reusing its memory (faster "
      "for periodic checkpoints; needs --dir; a dump that fails once it "
      "began writing removes the image)" },
    { "--check", NULL, "only say whether PID can be checkpointed now: the "
      "same checks, nothing frozen or written (no --dir, --in-place)" },
    { NULL, NULL, NULL },
};
enum { O_DIR, O_LEAVE_RUNNING, O_IN_PLACE, O_CHECK };

const cairn_option_t cli_restart_options[] = {
    { "--pid", "same|new", "restore with the original pid (default; "
      "already-exists if it is taken) or a new one" },
    { "--check", NULL, "only read, check and plan the restore of DIR's image "
      "here: nothing is made (no --pid)" },
    { "--no-verify", NULL, "let the restored tree go without comparing it with "
      "its image (docs/ghost.md, \"The verifier\")" },
    { NULL, NULL, NULL },
};
enum { O_PID, O_RESTART_CHECK, O_NO_VERIFY };

/* path made absolute against the cwd into out. */
static int s_absolute(const char *what, const char *path, char *out,
                      size_t size, cairn_error_t *err)
{
    char cwd[PATH_MAX];
    int n;

    if (!*path)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s is empty", what);
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getcwd: %s",
                               strerror(errno));
    n = path[0] == '/' ? snprintf(out, size, "%s", path)
                       : snprintf(out, size, "%s/%s", cwd, path);
    if (n < 0 || (size_t)n >= size)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_USAGE,
                               "%s '%s' is too long", what, path);
    return 0;
}

/* Sends req to ghostd at the target within the deadline left and returns
 * its Reply (caller frees), which must be of case `expect`. */
static int s_call(const cli_ctx *ctx, int timeout_ms, const char *what,
                  const ProtobufCMessage *req, Cairn__Ghostd__Reply__MsgCase expect,
                  Cairn__Ghostd__Reply **ret, json_t **ret_answered_by,
                  cairn_error_t *err)
{
    int64_t start = (int64_t)cairn_now_ms(), left;
    ProtobufCMessage *reply = NULL;
    cli_target_t t = { 0 };
    int r;

    /* the pid and the directory are this host's: never another host's ghostd */
    r = cli_target_resolve_here(ctx, "ghostd", &t, err);
    left = timeout_ms - ((int64_t)cairn_now_ms() - start);
    if (r == 0 && left < 1)
        r = cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT, "deadline of %d ms "
                            "passed before the request to ghostd was sent",
                            timeout_ms);
    if (r == 0)
        r = cli_target_call(ctx, &t, "ghostd", (int)left, req,
                            &cairn__ghostd__reply__descriptor, expect, what,
                            &reply, ret_answered_by, err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret = (Cairn__Ghostd__Reply *)reply;
    return 0;
}

/* Hands result back with "answered_by" added; NULL (result freed) on
 * ENOMEM. */
static json_t *s_with_answered_by(json_t *result, json_t *by)
{
    if (result && json_object_set(result, "answered_by", by) < 0) {
        json_decref(result);
        return NULL;
    }
    return result;
}

static int s_timeout(const cli_ctx *ctx)
{
    return ctx->timeout_set ? ctx->timeout_ms : S_DEFAULT_TIMEOUT_MS;
}

/* A check's refusal (a checked_only reply with reasons) as the command's
 * error: the first reason's code and message, and every reason in the
 * error object's "reasons" (ctx->error_extra; docs/cli.md). */
static int s_refused(cli_ctx *ctx, Cairn__Ghostd__Reason **reasons, size_t n,
                     uint32_t more, cairn_error_t *err)
{
    json_t *a = json_array(), *extra = json_object();

    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:I, s:s, s:s}", "code",
                                           cairn_code_name((int)reasons[i]->code),
                                           "pid", (json_int_t)reasons[i]->pid,
                                           "what", reasons[i]->what,
                                           "message", reasons[i]->message));
    if (!a || !extra || json_object_set_new(extra, "reasons", a) < 0) {
        json_decref(extra);
        return cli_oom(err);
    }
    if (more)
        json_object_set_new(extra, "more_reasons", json_integer(more));
    json_decref(ctx->error_extra);
    ctx->error_extra = extra;
    return cairn_error_set(err, -EREMOTEIO, (int)reasons[0]->code, "%s", reasons[0]->message);
}

static json_t *s_checkpoint_json(const Cairn__Ghostd__CheckpointReply *c)
{
    if (c->checked_only)
        return json_pack("{s:I, s:b}", "pid", (json_int_t)c->pid, "checkpointable", 1);
    return json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:b}",
                     "pid", (json_int_t)c->pid, "dir", c->dir,
                     "image", c->image,
                     "image_bytes", (json_int_t)c->image_bytes,
                     "pages", (json_int_t)c->pages,
                     "processes", (json_int_t)c->processes,
                     "threads", (json_int_t)c->threads,
                     "freeze_ms", cli_json_ms(c->freeze_us),
                     "dump_ms", cli_json_ms(c->dump_us),
                     "copy_threads", (json_int_t)c->copy_threads,
                     "stopped", (json_int_t)c->stopped,
                     "left_running", (int)c->left_running);
}

/* The checkpoint arguments: the pid and the absolute directory ("" when
 * ghostd is to pick it). */
static int s_checkpoint_args(int argc, char **argv, cairn_args_t *a, long *ret_pid,
                             char *dir, size_t size, cairn_error_t *err)
{
    int r = cairn_args_parse("checkpoint", cli_checkpoint_options, argc, argv, 1,
                           a, err);

    if (r == 0 && a->n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "checkpoint: the pid of "
                            "the process is required (cairn checkpoint PID)");
    if (r == 0)
        r = cairn_parse_long("checkpoint: PID", a->pos[0], 1, INT_MAX, ret_pid,
                          err);
    dir[0] = '\0';
    if (r == 0 && a->values[O_DIR])
        r = s_absolute("--dir", a->values[O_DIR], dir, size, err);
    if (r == 0 && a->values[O_CHECK] && (a->values[O_DIR] || a->values[O_IN_PLACE]))
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "checkpoint: --check writes "
                            "nothing: it takes no --dir or --in-place");
    if (r == 0 && a->values[O_IN_PLACE] && !a->values[O_DIR])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "checkpoint: --in-place "
                            "needs --dir (the directory whose image it writes over)");
    return r;
}

int cli_cmd_checkpoint(cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err)
{
    Cairn__Ghostd__CheckpointRequest creq = CAIRN__GHOSTD__CHECKPOINT_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    char dir[PATH_MAX];
    json_t *result;
    cairn_args_t a;
    long pid;
    int r;

    r = s_checkpoint_args(argc, argv, &a, &pid, dir, sizeof dir, err);
    if (r < 0)
        return r;
    creq.pid = (uint32_t)pid;
    creq.dir = dir;
    creq.leave_running = a.values[O_LEAVE_RUNNING] != NULL;
    creq.in_place = a.values[O_IN_PLACE] != NULL;
    creq.check_only = a.values[O_CHECK] != NULL;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_CHECKPOINT;
    req.checkpoint = &creq;
    r = s_call(ctx, s_timeout(ctx), "checkpoint", &req.base,
               CAIRN__GHOSTD__REPLY__MSG_CHECKPOINT_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    if (reply->checkpoint_reply->checked_only && reply->checkpoint_reply->n_reasons > 0) {
        r = s_refused(ctx, reply->checkpoint_reply->reasons,
                      reply->checkpoint_reply->n_reasons,
                      reply->checkpoint_reply->more_reasons, err);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        return r;
    }
    result = s_with_answered_by(s_checkpoint_json(reply->checkpoint_reply), by);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (!result)
        return cli_oom(err);
    *ret_result = result;
    return 0;
}

/* What the restore's verifier let pass, and its time; null when it did
 * not run (--no-verify). */
static json_t *s_verify_json(const Cairn__Ghostd__RestartReply *rr)
{
    if (!rr->verified)
        return json_null();
    json_t *list = json_array();
    for (size_t i = 0; list && i < rr->n_cosmetic; i++) {
        const Cairn__Ghostd__VerifyDiff *d = rr->cosmetic[i];
        json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:s}", "pid", (json_int_t)d->pid,
                                              "what", d->what, "want", d->want, "got",
                                              d->got));
    }
    return json_pack("{s:o*,s:I}", "cosmetic", list, "us", (json_int_t)rr->verify_us);
}

static json_t *s_restart_json(const Cairn__Ghostd__RestartReply *rr, const char *dir)
{
    json_t *o =
        rr->checked_only
            ? json_pack("{s:s, s:b, s:I, s:b}", "dir", dir, "restorable", 1,
                        "original_pid", (json_int_t)rr->original_pid,
                        "pids_free", (int)rr->pids_free)
            : json_pack("{s:I, s:I, s:b, s:I, s:b, s:I, s:s, s:s*}", "pid",
                        (json_int_t)rr->pid, "original_pid",
                        (json_int_t)rr->original_pid, "job", (int)rr->job,
                        "host_pid", (json_int_t)rr->host_pid, "same_pid",
                        (int)rr->same_pid, "stopped", (json_int_t)rr->stopped,
                        "cgroup", rr->cgroup ? rr->cgroup : "", "unit",
                        rr->unit && *rr->unit ? rr->unit : NULL);
    json_t *common = json_pack("{s:I, s:I, s:I, s:I, s:o}",
                               "image_bytes", (json_int_t)rr->image_bytes,
                               "pages", (json_int_t)rr->pages,
                               "processes", (json_int_t)rr->processes,
                               "threads", (json_int_t)rr->threads,
                               rr->checked_only ? "check_ms" : "restore_ms",
                               cli_json_ms(rr->restore_us));

    if (!o || !common || json_object_update(o, common) < 0) {
        json_decref(o);
        o = NULL;
    }
    json_decref(common);
    if (o && !rr->checked_only)
        json_object_set_new(o, "verify", s_verify_json(rr));
    return o;
}

/* The restart arguments: the absolute directory, --pid same|new, --check. */
static int s_restart_args(int argc, char **argv, char *dir, size_t size,
                          bool *ret_new_pid, bool *ret_check, bool *ret_no_verify,
                          cairn_error_t *err)
{
    cairn_args_t a;
    const char *pid;
    int r = cairn_args_parse("restart", cli_restart_options, argc, argv, 1, &a,
                           err);

    if (r == 0 && a.n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "restart: the image "
                            "directory is required (cairn restart DIR)");
    if (r == 0)
        r = s_absolute("restart: DIR", a.pos[0], dir, size, err);
    pid = a.values[O_PID] ? a.values[O_PID] : "same";
    if (r == 0 && strcmp(pid, "same") != 0 && strcmp(pid, "new") != 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--pid '%s': expected "
                            "same or new", pid);
    if (r == 0 && a.values[O_RESTART_CHECK] && (a.values[O_PID] || a.values[O_NO_VERIFY]))
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "restart: --check restores "
                            "nothing: it takes no %s", a.values[O_PID] ? "--pid" : "--no-verify");
    if (r == 0) {
        *ret_new_pid = strcmp(pid, "new") == 0;
        *ret_check = a.values[O_RESTART_CHECK] != NULL;
        *ret_no_verify = a.values[O_NO_VERIFY] != NULL;
    }
    return r;
}

int cli_cmd_restart(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err)
{
    Cairn__Ghostd__RestartRequest rreq = CAIRN__GHOSTD__RESTART_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    char dir[PATH_MAX];
    bool new_pid = false, check = false, no_verify = false;
    json_t *result;
    int r;

    r = s_restart_args(argc, argv, dir, sizeof dir, &new_pid, &check, &no_verify, err);
    if (r < 0)
        return r;
    rreq.dir = dir;
    rreq.new_pid = new_pid;
    rreq.check_only = check;
    rreq.no_verify = no_verify;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_RESTART;
    req.restart = &rreq;
    r = s_call(ctx, s_timeout(ctx), "restart", &req.base,
               CAIRN__GHOSTD__REPLY__MSG_RESTART_REPLY, &reply, &by, err);
    if (r < 0)
        return r;
    if (reply->restart_reply->checked_only && reply->restart_reply->n_reasons > 0) {
        r = s_refused(ctx, reply->restart_reply->reasons, reply->restart_reply->n_reasons,
                      reply->restart_reply->more_reasons, err);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        return r;
    }
    result = s_with_answered_by(s_restart_json(reply->restart_reply, dir), by);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (!result)
        return cli_oom(err);
    *ret_result = result;
    return 0;
}
