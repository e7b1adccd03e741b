/* cmd-dsm.c - `cairn dsm ls|show|rm`: dsmd's shared memory segments from
 * the shell (docs/dsm.md).
 *
 * Each verb is one request to the target node's dsmd (target.c: --node,
 * $CAIRN_NODE, else the first of this host's nodes that runs dsmd), which
 * asks the rest of the cluster: ls merges the homes' entries, show every
 * node's pages of the segment, rm goes to the segment's home. Mapping a
 * segment is for programs (cairn/dsm.h): a shell has no memory to share.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "dsmd.pb-c.h"
#include "output.h"
#include "target.h"

/* The one positional NAME, 1..255 bytes without '/' (dsmd's rule, said
 * here before anything is sent). */
static int s_name_arg(const char *what, int argc, char **argv, cairn_args_t *a,
                      cairn_error_t *err)
{
    int r = cairn_args_parse(what, cli_no_options, argc, argv, 1, a, err);
    if (r < 0)
        return r;
    if (a->n_pos == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is required", what);
    size_t len = strlen(a->pos[0]);
    if (len == 0 || len > 255 || strchr(a->pos[0], '/'))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is 1..255 bytes "
                               "without '/' (this one: %zu bytes)", what, len);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)a->pos[0][i] < 0x20 || a->pos[0][i] == 0x7f)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME has a control "
                                   "character", what);
    return 0;
}

static int s_call(const cli_ctx *ctx, const ProtobufCMessage *req,
                  Cairn__Dsmd__Reply__MsgCase expect, const char *what,
                  Cairn__Dsmd__Reply **ret, json_t **ret_by, cairn_error_t *err)
{
    ProtobufCMessage *reply = NULL;
    cli_target_t t = { 0 };
    int r = cli_target_resolve(ctx, "dsmd", &t, err);
    if (r == 0)
        r = cli_target_call(ctx, &t, "dsmd", ctx->timeout_ms, req,
                            &cairn__dsmd__reply__descriptor, expect, what, &reply, ret_by, err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret = (Cairn__Dsmd__Reply *)reply;
    return 0;
}

static json_t *s_ids(const uint32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *s_segment_json(const Cairn__Dsmd__Segment *s)
{
    char mode[8], gen[24];
    snprintf(mode, sizeof mode, "%04o", s->mode);
    snprintf(gen, sizeof gen, "%016" PRIx64, s->generation);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:s, s:o*}", "name", s->name,
                     "size", (json_int_t)s->size, "pages", (json_int_t)(s->size / 4096),
                     "owner_uid", (json_int_t)s->uid, "owner_gid", (json_int_t)s->gid,
                     "mode", mode, "creator", (json_int_t)s->creator, "generation", gen,
                     "nodes", s_ids(s->nodes, s->n_nodes));
}

static json_t *s_pages_json(const Cairn__Dsmd__NodePages *p)
{
    json_t *lost = json_array();
    for (size_t i = 0; lost && i < p->n_lost_pages; i++)
        json_array_append_new(lost, json_integer((json_int_t)p->lost_pages[i]));
    return json_pack("{s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:o*, s:I, s:I, s:I, s:I}",
                     "node", (json_int_t)p->node, "processes", (json_int_t)p->processes,
                     "pages", "invalid", (json_int_t)p->invalid, "read", (json_int_t)p->read,
                     "write", (json_int_t)p->write, "lost", (json_int_t)p->lost,
                     "owned", (json_int_t)p->owned, "lost_pages", lost,
                     "faults", (json_int_t)p->faults, "fetches", (json_int_t)p->fetches,
                     "prefetched", (json_int_t)p->prefetched,
                     "invalidations", (json_int_t)p->invalidations);
}

int cli_cmd_dsm_ls(cli_ctx *ctx, int argc, char **argv, json_t **ret_result, cairn_error_t *err)
{
    Cairn__Dsmd__LsRequest ls = CAIRN__DSMD__LS_REQUEST__INIT;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    Cairn__Dsmd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    cairn_args_t a;
    int r = cairn_args_parse("dsm ls", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_LS;
    req.ls = &ls;
    r = s_call(ctx, &req.base, CAIRN__DSMD__REPLY__MSG_LS_REPLY, "ls", &reply, &by, err);
    if (r < 0)
        return r;
    json_t *segs = json_array();
    for (size_t i = 0; segs && i < reply->ls_reply->n_segments; i++)
        json_array_append_new(segs, s_segment_json(reply->ls_reply->segments[i]));
    json_t *unreachable = s_ids(reply->ls_reply->unreachable, reply->ls_reply->n_unreachable);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    *ret_result = json_pack("{s:o*, s:o*, s:O}", "segments", segs, "unreachable", unreachable,
                            "answered_by", by);
    return *ret_result ? 0 : cli_oom(err);
}

int cli_cmd_dsm_show(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err)
{
    Cairn__Dsmd__ShowRequest show = CAIRN__DSMD__SHOW_REQUEST__INIT;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    Cairn__Dsmd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    cairn_args_t a;
    int r = s_name_arg("dsm show", argc, argv, &a, err);
    if (r < 0)
        return r;
    show.name = (char *)a.pos[0];
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_SHOW;
    req.show = &show;
    r = s_call(ctx, &req.base, CAIRN__DSMD__REPLY__MSG_SHOW_REPLY, "show", &reply, &by, err);
    if (r < 0)
        return r;
    const Cairn__Dsmd__ShowReply *sh = reply->show_reply;
    json_t *obj = sh->segment ? s_segment_json(sh->segment) : NULL;
    json_t *nodes = json_array();
    uint64_t lost = 0;
    for (size_t i = 0; nodes && i < sh->n_nodes; i++) {
        json_array_append_new(nodes, s_pages_json(sh->nodes[i]));
        lost += sh->nodes[i]->lost;
    }
    json_t *unreachable = s_ids(sh->unreachable, sh->n_unreachable);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (!obj) {
        json_decref(nodes);
        json_decref(unreachable);
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "dsmd answered show with no segment");
    }
    if (json_object_set_new(obj, "node_pages", nodes) < 0 ||
        json_object_set_new(obj, "lost_pages", json_integer((json_int_t)lost)) < 0 ||
        json_object_set_new(obj, "unreachable", unreachable) < 0 ||
        json_object_set(obj, "answered_by", by) < 0) {
        json_decref(obj);
        return cli_oom(err);
    }
    *ret_result = obj;
    return 0;
}

int cli_cmd_dsm_rm(cli_ctx *ctx, int argc, char **argv, json_t **ret_result, cairn_error_t *err)
{
    Cairn__Dsmd__RmRequest rm = CAIRN__DSMD__RM_REQUEST__INIT;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    Cairn__Dsmd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    cairn_args_t a;
    int r = s_name_arg("dsm rm", argc, argv, &a, err);
    if (r < 0)
        return r;
    rm.name = (char *)a.pos[0];
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_RM;
    req.rm = &rm;
    r = s_call(ctx, &req.base, CAIRN__DSMD__REPLY__MSG_DONE, "rm", &reply, &by, err);
    if (r < 0)
        return r;
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    *ret_result = json_pack("{s:s, s:b, s:O}", "name", a.pos[0], "removed", 1, "answered_by", by);
    return *ret_result ? 0 : cli_oom(err);
}

int cli_table_dsm_ls(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *rows = json_pack("[[s,s,s,s,s,s]]", "NAME", "SIZE", "OWNER", "MODE",
                                            "CREATOR", "NODES");
    json_t *segs = json_object_get(result, "segments"), *s;
    size_t i;
    if (!rows || !json_is_array(segs))
        return -EINVAL;
    json_array_foreach(segs, i, s) {
        _cleanup_free_ char *nodes = json_dumps(json_object_get(s, "nodes"), JSON_COMPACT);
        json_t *row = json_pack("[O, O, O, O, O, s]", json_object_get(s, "name"),
                                json_object_get(s, "size"), json_object_get(s, "owner_uid"),
                                json_object_get(s, "mode"), json_object_get(s, "creator"),
                                nodes ? nodes : "?");
        if (!row || json_array_append_new(rows, row) < 0)
            return -ENOMEM;
    }
    return cli_table_rows(out, rows);
}
