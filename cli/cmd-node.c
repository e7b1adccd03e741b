/* cmd-node.c - `cairn version`, `cairn status`, `cairn nodes`.
 *
 * Design. status and nodes are one clusterd request each: resolve the
 * target (target.c), send Request{status|nodes} through cairn_client_call()
 * with the --timeout/--retries of the context, and turn the Reply into the
 * JSON documented in docs/cli.md. The time spent resolving the target (its
 * tcp probe) is taken out of the deadline, so --timeout bounds the whole
 * command. Field names here are a stable contract: scripts read them.
 */
#include <errno.h>
#include <time.h>

#include "cairn-config.h"
#include "cairn/client.h"
#include "cairn/wire.h"
#include "clusterd.pb-c.h"
#include "cli.h"
#include "target.h"

const cli_option_t cli_no_options[] = { { NULL, NULL, NULL } };

static int64_t s_now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_oom(cairn_error_t *err) {
    return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}

int cli_cmd_version(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err) {
    cli_args_t a;
    json_t *v;
    int r;

    r = cli_parse_args("version", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    v = json_pack("{s:s, s:i}", "version", CAIRN_VERSION, "protocol",
                  (int)CAIRN_WIRE_VERSION);
    if (!v)
        return s_oom(err);
    *ret_result = v;
    return 0;
}

/* Sends req to clusterd at the target and returns its Reply (caller frees
 * with protobuf_c_message_free_unpacked). */
static int s_call_clusterd(const cli_ctx *ctx, const cli_target_t *t,
                           int64_t start_ms, const ProtobufCMessage *req,
                           Cairn__Clusterd__Reply **ret, cairn_error_t *err) {
    int64_t left = ctx->timeout_ms - (s_now_ms() - start_ms);
    ProtobufCMessage *reply = NULL;
    cairn_client_t *c;
    int r;

    if (left < 1)
        return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                               "deadline of %d ms passed before the request "
                               "to clusterd was sent", ctx->timeout_ms);
    c = cairn_client_new(t->endpoint, "clusterd");
    if (!c)
        return errno == EINVAL
                   ? cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                     "--endpoint '%s': not an ipc://, tcp:// "
                                     "or inproc:// endpoint", t->endpoint)
                   : s_oom(err);
    cairn_client_set_timeout(c, (int)left);
    if (ctx->retries >= 0)
        cairn_client_set_retries(c, ctx->retries);
    r = cairn_client_call(c, req, &cairn__clusterd__reply__descriptor, &reply,
                          err);
    cairn_client_free(c);
    if (r < 0)
        return r;
    *ret = (Cairn__Clusterd__Reply *)reply;
    return 0;
}

/* Resolves the target and runs one request; the common part of status and
 * nodes. `expect` is the Reply oneof case the request must get. */
static int s_request(cli_ctx *ctx, const char *what, int argc, char **argv,
                     Cairn__Clusterd__Request *req,
                     Cairn__Clusterd__Reply__MsgCase expect,
                     cli_target_t *ret_target, Cairn__Clusterd__Reply **ret,
                     cairn_error_t *err) {
    int64_t start = s_now_ms();
    Cairn__Clusterd__Reply *reply = NULL;
    cli_target_t t = { 0 };
    cli_args_t a;
    int r;

    r = cli_parse_args(what, cli_no_options, argc, argv, 0, &a, err);
    if (r == 0)
        r = cli_target_resolve(ctx, "clusterd", &t, err);
    if (r == 0)
        r = s_call_clusterd(ctx, &t, start, &req->base, &reply, err);
    if (r == 0 && reply->msg_case != expect) {
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        r = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                            "clusterd at %s answered %s with another message",
                            t.endpoint, what);
    }
    if (r < 0) {
        cli_target_clear(&t);
        return r;
    }
    *ret_target = t;
    *ret = reply;
    return 0;
}

static json_t *s_status_json(const Cairn__Clusterd__StatusReply *s) {
    json_t *services = json_array();

    for (size_t i = 0; services && i < s->n_services; i++)
        json_array_append_new(services, json_string(s->services[i]));
    return json_pack("{s:{s:I, s:s, s:s}, s:s, s:s, s:o*, s:s, s:I, s:I}",
                     "node", "id", (json_int_t)s->node_id, "name",
                     s->node_name, "address", s->address,
                     "cluster", s->cluster, "appliance", s->appliance,
                     "services", services, "version", s->version,
                     "uptime_ms", (json_int_t)s->uptime_ms,
                     "pid", (json_int_t)s->pid);
}

int cli_cmd_status(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err) {
    Cairn__Clusterd__StatusRequest sreq = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    cli_target_t t = { 0 };
    json_t *result;
    int r;

    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
    req.status = &sreq;
    r = s_request(ctx, "status", argc, argv, &req,
                  CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY, &t, &reply, err);
    if (r < 0)
        return r;
    result = s_status_json(reply->status_reply);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    cli_target_clear(&t);
    if (!result)
        return s_oom(err);
    *ret_result = result;
    return 0;
}

static json_t *s_node_json(const Cairn__Clusterd__NodeInfo *n) {
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I}",
                     "id", (json_int_t)n->id, "name", n->name,
                     "address", n->address, "appliance", n->appliance,
                     "state", n->state,
                     "incarnation", (json_int_t)n->incarnation,
                     "last_heard_ms", (json_int_t)n->last_heard_ms);
}

/* The asked node: the target's id, else (with --endpoint) the node that
 * reports itself (last_heard_ms == 0), else null. */
static json_t *s_self_json(const cli_target_t *t,
                           const Cairn__Clusterd__NodesReply *nr) {
    if (t->node_id)
        return json_integer(t->node_id);
    for (size_t i = 0; i < nr->n_nodes; i++)
        if (nr->nodes[i]->last_heard_ms == 0)
            return json_integer(nr->nodes[i]->id);
    return json_null();
}

static json_t *s_nodes_json(const cli_target_t *t,
                            const Cairn__Clusterd__NodesReply *nr) {
    json_t *nodes = json_array();

    for (size_t i = 0; nodes && i < nr->n_nodes; i++)
        if (json_array_append_new(nodes, s_node_json(nr->nodes[i])) < 0) {
            json_decref(nodes);
            return NULL;
        }
    return json_pack("{s:s?, s:o, s:o*}", "cluster", t->cluster, "self",
                     s_self_json(t, nr), "nodes", nodes);
}

int cli_cmd_nodes(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                  cairn_error_t *err) {
    Cairn__Clusterd__NodesRequest nreq = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    cli_target_t t = { 0 };
    json_t *result;
    int r;

    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    req.nodes = &nreq;
    r = s_request(ctx, "nodes", argc, argv, &req,
                  CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY, &t, &reply, err);
    if (r < 0)
        return r;
    result = s_nodes_json(&t, reply->nodes_reply);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    cli_target_clear(&t);
    if (!result)
        return s_oom(err);
    *ret_result = result;
    return 0;
}
