/* cmd-migrate.c - `cairn migrate GPID --to NODE [--mode M] [--check]` and
 * `cairn migrate --pid PID --to NODE [--mode M] [--check]`.
 *
 * Design. One ghostd request, Request{migrate}, to the node the job runs
 * on: for --pid the node asked (--node, else this host's: the pid is this
 * host's, as for checkpoint); for a gpid the node asked too, which finds
 * the job. That ghostd streams the job to the target's and answers once
 * the job runs there (or why not: the job then runs on where it was,
 * which the error's message says). --to takes a node id or name, resolved
 * through the description. The JSON (docs/cli.md): from, to, image_bytes,
 * freeze_ms, total_ms, dump_ms, restore_ms, pid (on the target),
 * source_pid, the job after the move, mode (the one used: --mode auto
 * resolved), resident_bytes, rounds and precopy_bytes (pre-copy),
 * lazy_pages (post-copy); --check: movable and every reason
 * it is not ("reasons"), nothing frozen. A move takes seconds for large
 * jobs, so unless --timeout was given the verb waits up to
 * S_DEFAULT_TIMEOUT_MS.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "cairn/client.h"
#include "cli.h"
#include "ghostd.pb-c.h"
#include "output.h"
#include "target.h"

#define S_DEFAULT_TIMEOUT_MS 120000

const cairn_option_t cli_migrate_options[] = {
    { "--to", "NODE", "the target node (id or name)" },
    { "--pid", "PID", "a plain process tree of the node asked instead of a "
      "job (restored under new pids)" },
    { "--check", NULL, "only say whether it could move now and every reason "
      "it could not: nothing is frozen or sent" },
    { "--mode", "MODE", "stop-copy (the default), pre-copy (copy while it runs, "
      "freeze for what changed), post-copy (run at once, memory follows; a failure "
      "meanwhile loses the job), auto (pre-copy from 64 MiB resident, else stop-copy)" },
    { "--no-verify", NULL, "the target lets the restored tree go without comparing it "
      "with its image (docs/ghost.md, \"The verifier\")" },
    { NULL, NULL, NULL },
};
enum { O_TO, O_PID, O_CHECK, O_MODE, O_NO_VERIFY };

/* --to NODE: an id, or a name of the description. */
static int s_node_id(const cli_ctx *ctx, const char *node, uint32_t *ret,
                     cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    const cairn_node_desc_t *nd;
    long id;
    char *end;

    id = strtol(node, &end, 10);
    if (*node && !*end) {
        if (id < 1 || id > 255)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--to %s: a node id "
                                   "is 1..255", node);
        *ret = (uint32_t)id;
        return 0;
    }
    int r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    nd = cairn_description_find_node_by_name(d, node);
    if (nd)
        *ret = nd->id;
    else
        r = cairn_error_set(err, -ENOENT, CAIRN_USAGE, "--to %s: no such node in the "
                            "cluster description", node);
    cairn_description_free(d);
    return r;
}

static json_t *s_job_json(const Cairn__Ghostd__Job *j)
{
    if (!j)
        return json_null();
    return json_pack("{s:s, s:I, s:I, s:I, s:s, s:I}", "gpid", j->gpid ? j->gpid : "",
                     "node", (json_int_t)j->node, "host_pid", (json_int_t)j->host_pid,
                     "pid", (json_int_t)j->pid, "state", j->state ? j->state : "",
                     "moves", (json_int_t)j->moves);
}

static json_t *s_reply_json(const Cairn__Ghostd__MigrateReply *m)
{
    if (m->checked_only) {
        json_t *reasons = json_array();
        for (size_t i = 0; reasons && i < m->n_reasons; i++)
            json_array_append_new(reasons, json_string(m->reasons[i]));
        return json_pack("{s:s, s:I, s:I, s:I, s:b, s:o, s:o}", "gpid",
                         m->gpid ? m->gpid : "", "source_pid", (json_int_t)m->source_pid,
                         "from", (json_int_t)m->from, "to", (json_int_t)m->to,
                         "movable", (int)m->movable, "reasons", reasons,
                         "check_ms", cli_json_ms(m->total_us));
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, "
                     "s:o, s:s, s:o}",
                     "gpid", m->gpid ? m->gpid : "", "from", (json_int_t)m->from,
                     "to", (json_int_t)m->to, "source_pid", (json_int_t)m->source_pid,
                     "pid", (json_int_t)m->pid, "image_bytes", (json_int_t)m->image_bytes,
                     "processes", (json_int_t)m->processes,
                     "threads", (json_int_t)m->threads, "chunks", (json_int_t)m->chunks,
                     "freeze_ms", cli_json_ms(m->freeze_us),
                     "dump_ms", cli_json_ms(m->dump_us),
                     "restore_ms", cli_json_ms(m->restore_us),
                     "total_ms", cli_json_ms(m->total_us),
                     "cgroup", m->cgroup ? m->cgroup : "", "job", s_job_json(m->job));
    _cleanup_json_ json_t *more = json_pack("{s:s, s:I, s:I, s:I, s:I}",
                                            "mode", m->mode ? m->mode : "",
                                            "resident_bytes", (json_int_t)m->resident_bytes,
                                            "rounds", (json_int_t)m->rounds,
                                            "precopy_bytes", (json_int_t)m->precopy_bytes,
                                            "lazy_pages", (json_int_t)m->lazy_pages);
    if (o && (!more || json_object_update(o, more) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The arguments: the gpid or --pid, --to, --check. */
static int s_args(const cli_ctx *ctx, int argc, char **argv,
                  Cairn__Ghostd__MigrateRequest *mr, cairn_error_t *err)
{
    cairn_args_t a;
    long pid = 0;
    int r = cairn_args_parse("migrate", cli_migrate_options, argc, argv, 1, &a, err);

    if (r == 0 && a.n_pos == 0 && !a.values[O_PID])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "migrate: the job's gpid (or "
                            "--pid PID) is required (cairn migrate GPID --to NODE)");
    if (r == 0 && a.n_pos > 0 && a.values[O_PID])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "migrate: a gpid or --pid, "
                            "not both");
    if (r == 0 && !a.values[O_TO])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "migrate: --to NODE is required");
    if (r == 0 && a.values[O_PID])
        r = cairn_parse_long("--pid", a.values[O_PID], 1, INT_MAX, &pid, err);
    if (r == 0 && a.n_pos > 0 && (!strchr(a.pos[0], '.') || strlen(a.pos[0]) > 63))
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "migrate: '%s' is not a gpid "
                            "(<origin node>.<sequence>)", a.pos[0]);
    if (r == 0)
        r = s_node_id(ctx, a.values[O_TO], &mr->to, err);
    if (r < 0)
        return r;
    mr->pid = (uint32_t)pid;
    mr->gpid = a.n_pos > 0 ? (char *)a.pos[0] : "";
    mr->check_only = a.values[O_CHECK] != NULL;
    mr->no_verify = a.values[O_NO_VERIFY] != NULL;
    mr->mode = a.values[O_MODE] ? (char *)a.values[O_MODE] : "";
    if (*mr->mode && strcmp(mr->mode, "stop-copy") && strcmp(mr->mode, "pre-copy") &&
        strcmp(mr->mode, "post-copy") && strcmp(mr->mode, "auto"))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--mode %s: one of stop-copy, "
                               "pre-copy, post-copy, auto", mr->mode);
    return 0;
}

int cli_cmd_migrate(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err)
{
    Cairn__Ghostd__MigrateRequest mr = CAIRN__GHOSTD__MIGRATE_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    int timeout = ctx->timeout_set ? ctx->timeout_ms : S_DEFAULT_TIMEOUT_MS;
    cli_target_t t = { 0 };
    json_t *result;

    int r = s_args(ctx, argc, argv, &mr, err);
    if (r < 0)
        return r;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE;
    req.migrate = &mr;
    r = cli_target_resolve_here(ctx, "ghostd", &t, err);
    if (r == 0)
        r = cli_target_call(ctx, &t, "ghostd", timeout, &req.base,
                            &cairn__ghostd__reply__descriptor,
                            CAIRN__GHOSTD__REPLY__MSG_MIGRATE_REPLY, "migrate", &reply,
                            &by, err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    result = s_reply_json(((Cairn__Ghostd__Reply *)reply)->migrate_reply);
    protobuf_c_message_free_unpacked(reply, NULL);
    if (!result || json_object_set(result, "answered_by", by) < 0) {
        json_decref(result);
        return cli_oom(err);
    }
    *ret_result = result;
    return 0;
}
