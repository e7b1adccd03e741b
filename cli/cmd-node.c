/* cmd-node.c - `cairn version`, `cairn status`, `cairn nodes [--watch]`,
 * `cairn node add|remove|leave|restart`.
 *
 * Design. Every verb but --watch is one clusterd request: resolve the target
 * (target.c), send Request{status|nodes|node_add|node_remove|leave} through
 * cairn_client_call() with the --timeout/--retries of the context, and turn
 * the Reply into the JSON documented in docs/cli.md. The time spent
 * resolving the target (its tcp probe) is taken out of the deadline, so
 * --timeout bounds the request. Field names here are a stable contract:
 * scripts read them.
 *
 * Hotplug on a local cluster. When the target's description is the one
 * `cairn cluster up` wrote (its state.json exists beside it), node add also
 * provisions the node through the harness once clusterd admitted it
 * (harness_node_add, lib/harness: netns, veth, cgroup, daemons), and undoes the
 * admission (node_remove) if that fails; node remove tears the node down
 * once clusterd let it go. The address is checked against the cluster's
 * subnet before anything is asked, so a bad one changes nothing. node
 * leave stops what still runs of the node once its clusterd left
 * (harness_node_stop), so the id is free for a later node add; node
 * restart asks no clusterd at all: it starts again, through the harness,
 * the daemons of a node that are gone.
 *
 * Watch. `nodes --watch` subscribes to clusterd's event socket first
 * (everything, then a sync topic of its own), waits until clusterd answers
 * on the sync topic -- its subscriptions are then in effect -- and only
 * then takes the `nodes` snapshot, so no event falls between the two; it prints the snapshot and one JSON line
 * per MemberEvent, each flushed, until --count, --duration-ms or a signal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cairn-config.h"
#include "cairn/client.h"
#include "cairn/wire.h"
#include "cli.h"
#include "clusterd.pb-c.h"
#include "harness/harness.h"
#include "output.h"
#include "target.h"

const cairn_option_t cli_no_options[] = { { NULL, NULL, NULL } };

int cli_cmd_version(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err)
{
    cairn_args_t a;
    json_t *v;
    int r;

    r = cairn_args_parse("version", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    v = json_pack("{s:s, s:i}", "version", CAIRN_VERSION, "protocol",
                  (int)CAIRN_WIRE_VERSION);
    if (!v)
        return cli_oom(err);
    *ret_result = v;
    return 0;
}

/* Sends req to clusterd at the target and returns its Reply (caller frees
 * with protobuf_c_message_free_unpacked). */
static int s_call_clusterd(const cli_ctx *ctx, const cli_target_t *t,
                           int64_t start_ms, const ProtobufCMessage *req,
                           Cairn__Clusterd__Reply **ret, cairn_error_t *err)
{
    int64_t left = ctx->timeout_ms - ((int64_t)cairn_now_ms() - start_ms);
    ProtobufCMessage *reply = NULL;
    cairn_client_t *c;
    int r;

    if (left < 1)
        return cairn_error_set(err, -ETIMEDOUT, CAIRN_TIMEOUT,
                               "deadline of %d ms passed before the request "
                               "to clusterd was sent", ctx->timeout_ms);
    r = cli_target_client(ctx, t, "clusterd", (int)left, &c, err);
    if (r < 0)
        return r;
    r = cairn_client_call(c, req, &cairn__clusterd__reply__descriptor, &reply,
                          err);
    cairn_client_free(c);
    if (r < 0)
        return r;
    *ret = (Cairn__Clusterd__Reply *)reply;
    return 0;
}

/* Resolves the target (a node other than `avoid` unless one is named, see
 * cli_target_resolve_other) and runs one request. `expect` is the Reply
 * oneof case the request must get. */
static int s_request(cli_ctx *ctx, const char *what,
                     Cairn__Clusterd__Request *req,
                     Cairn__Clusterd__Reply__MsgCase expect, uint32_t avoid,
                     cli_target_t *ret_target, Cairn__Clusterd__Reply **ret,
                     cairn_error_t *err)
{
    int64_t start = (int64_t)cairn_now_ms();
    Cairn__Clusterd__Reply *reply = NULL;
    cli_target_t t = { 0 };
    int r;

    r = cli_target_resolve_other(ctx, "clusterd", avoid, &t, err);
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

/* A string field of a reply, or NULL when empty (a daemon too old to set
 * it, or nothing to say): printed as null. */
static const char *s_or_null(const char *s)
{
    return s && *s ? s : NULL;
}

static json_t *s_status_json(const Cairn__Clusterd__StatusReply *s)
{
    json_t *services = json_array();

    for (size_t i = 0; services && i < s->n_services; i++)
        json_array_append_new(services, json_string(s->services[i]));
    /* the reply names the node that answered: answered_by says the same */
    return json_pack("{s:{s:I, s:s, s:s}, s:s, s:s, s:o*, s:s, s:I, s:I, "
                     "s:{s:s?, s:s?}, s:{s:I, s:s}}",
                     "node", "id", (json_int_t)s->node_id, "name",
                     s->node_name, "address", s->address,
                     "cluster", s->cluster, "appliance", s->appliance,
                     "services", services, "version", s->version,
                     "uptime_ms", (json_int_t)s->uptime_ms,
                     "pid", (json_int_t)s->pid,
                     "security", "mode", s_or_null(s->security_mode),
                     "key", s_or_null(s->key_fingerprint),
                     "answered_by", "id",
                     (json_int_t)s->node_id, "name", s->node_name);
}

int cli_cmd_status(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err)
{
    Cairn__Clusterd__StatusRequest sreq = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    cli_target_t t = { 0 };
    json_t *result;
    int r;

    cairn_args_t a;

    r = cairn_args_parse("status", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
    req.status = &sreq;
    r = s_request(ctx, "status", &req, CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY,
                  0, &t, &reply, err);
    if (r < 0)
        return r;
    result = s_status_json(reply->status_reply);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    cli_target_clear(&t);
    if (!result)
        return cli_oom(err);
    *ret_result = result;
    return 0;
}

static json_t *s_node_json(const Cairn__Clusterd__NodeInfo *n)
{
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
                           const Cairn__Clusterd__NodesReply *nr)
{
    if (t->node_id)
        return json_integer(t->node_id);
    for (size_t i = 0; i < nr->n_nodes; i++)
        if (nr->nodes[i]->last_heard_ms == 0)
            return json_integer(nr->nodes[i]->id);
    return json_null();
}

/* The node that answered: the target's, else (--endpoint) the one that
 * reports itself, else null. */
static json_t *s_answered_by_json(const cli_target_t *t,
                                  const Cairn__Clusterd__NodesReply *nr)
{
    if (t->node_id)
        return cli_target_node_json(t);
    for (size_t i = 0; i < nr->n_nodes; i++)
        if (nr->nodes[i]->last_heard_ms == 0)
            return json_pack("{s:I, s:s}", "id", (json_int_t)nr->nodes[i]->id,
                             "name", nr->nodes[i]->name);
    return json_null();
}

static json_t *s_nodes_json(const cli_target_t *t,
                            const Cairn__Clusterd__NodesReply *nr)
{
    json_t *nodes = json_array();

    for (size_t i = 0; nodes && i < nr->n_nodes; i++)
        if (json_array_append_new(nodes, s_node_json(nr->nodes[i])) < 0) {
            json_decref(nodes);
            return NULL;
        }
    return json_pack("{s:s?, s:o, s:o*, s:o*}", "cluster", t->cluster, "self",
                     s_self_json(t, nr), "nodes", nodes, "answered_by",
                     s_answered_by_json(t, nr));
}

const cairn_option_t cli_nodes_options[] = {
    { "--watch", NULL, "stream: the current members, then one JSON line per "
      "membership event (node-up, node-suspect, node-down, node-left)" },
    { "--count", "K", "with --watch: stop after K events, 1..1000000" },
    { "--duration-ms", "D", "with --watch: stop after D ms, 1..86400000" },
    { NULL, NULL, NULL },
};
enum { O_WATCH, O_COUNT, O_DURATION };

/* The members as the target sees them: Request{nodes} on t. */
static int s_nodes_snapshot(cli_ctx *ctx, cli_target_t *ret_target,
                            json_t **ret_result, cairn_error_t *err)
{
    Cairn__Clusterd__NodesRequest nreq = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    json_t *result;
    int r;

    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    req.nodes = &nreq;
    r = s_request(ctx, "nodes", &req, CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY,
                  0, ret_target, &reply, err);
    if (r < 0)
        return r;
    result = s_nodes_json(ret_target, reply->nodes_reply);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (!result) {
        cli_target_clear(ret_target);
        return cli_oom(err);
    }
    *ret_result = result;
    return 0;
}

int cli_cmd_nodes(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                  cairn_error_t *err)
{
    cli_target_t t = { 0 };
    cairn_args_t a;
    int r;

    r = cairn_args_parse("nodes", cli_nodes_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    if (a.values[O_WATCH])   /* only reached inside a batch */
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "nodes --watch streams and cannot run inside a "
                               "batch");
    if (a.values[O_COUNT] || a.values[O_DURATION])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "nodes: %s needs "
                               "--watch", a.values[O_COUNT] ? "--count"
                                                            : "--duration-ms");
    r = s_nodes_snapshot(ctx, &t, ret_result, err);
    cli_target_clear(&t);
    return r;
}

/* ---- nodes --watch ----------------------------------------------------- */

static volatile sig_atomic_t s_stop_signal;

static void s_on_stop_signal(int sig)
{
    s_stop_signal = sig;
}

static const char *s_member_state(int state)
{
    switch (state) {
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE: return "alive";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT: return "suspect";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD: return "dead";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT: return "left";
    default: return "unknown";
    }
}

int cli_member_event_json(zmq_msg_t *frames, json_t **ret, cairn_error_t *err)
{
    Cairn__Header *hdr = NULL;
    ProtobufCMessage *body = NULL;
    const Cairn__Clusterd__MemberEvent *ev;
    const Cairn__Clusterd__Member *m;
    int r;

    r = cairn_wire_decode_header(zmq_msg_data(&frames[1]),
                                 zmq_msg_size(&frames[1]), &hdr, err);
    if (r == 0)
        r = cairn_wire_decode_body(&cairn__clusterd__member_event__descriptor,
                                   zmq_msg_data(&frames[2]),
                                   zmq_msg_size(&frames[2]), 0, &body, err);
    if (hdr)
        protobuf_c_message_free_unpacked(&hdr->base, NULL);
    if (r < 0)
        return r;
    ev = (const Cairn__Clusterd__MemberEvent *)body;
    m = ev->member;
    if (!m) {
        protobuf_c_message_free_unpacked(body, NULL);
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "membership event without a member");
    }
    *ret = json_pack("{s:s%, s:{s:I, s:s, s:s, s:s, s:s, s:I}, s:I, s:I}",
                     "event", (const char *)zmq_msg_data(&frames[0]),
                     zmq_msg_size(&frames[0]),
                     "node", "id", (json_int_t)m->id, "name", m->name,
                     "address", m->address, "appliance", m->appliance,
                     "state", s_member_state(m->state),
                     "incarnation", (json_int_t)m->incarnation,
                     "observer", (json_int_t)ev->observer,
                     "time_ms", (json_int_t)ev->time_ms);
    protobuf_c_message_free_unpacked(body, NULL);
    return *ret ? 0 : cli_oom(err);
}

/* Whether a topic frame is s (whole), or starts with it. */
static bool s_topic_is(zmq_msg_t *topic, const char *s, bool whole)
{
    size_t n = strlen(s), m = zmq_msg_size(topic);
    return (whole ? m == n : m >= n) && memcmp(zmq_msg_data(topic), s, n) == 0;
}


/* Waits for the marker on our own sync topic: once it comes, clusterd has
 * taken the subscription to everything too (it was sent first), so no
 * event published from then on is lost. Events before it are dropped: the
 * snapshot taken next holds their effect. */
static int s_wait_sync(void *sub, const char *sync, int64_t deadline, cairn_error_t *err)
{
    while (!s_stop_signal) {
        zmq_pollitem_t p = { .socket = sub, .events = ZMQ_POLLIN };
        int64_t left = deadline - (int64_t)cairn_now_ms();
        zmq_msg_t frames[3];
        cairn_error_t e = { 0 };

        if (left <= 0)
            break;
        if (zmq_poll(&p, 1, (long)left) <= 0)
            continue;
        int r = cli_target_recv_event(sub, frames, &e);
        if (r <= 0)
            continue;   /* nothing, or a malformed event: not the marker */
        bool ours = s_topic_is(&frames[0], sync, true);
        cli_target_close_event(frames);
        if (ours)
            return 0;
    }
    if (s_stop_signal)
        return 0;
    return cairn_error_set(err, -ETIMEDOUT, CAIRN_UNAVAILABLE,
                           "clusterd did not confirm the event subscription within the "
                           "timeout");
}

/* Reads monitor events until a handshake succeeded: 1, or 0 if none yet. */
static int s_monitor_handshake(void *mon)
{
    zmq_msg_t m;
    int found = 0;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) >= 0) {
        uint16_t event;

        /* [event (2 bytes) + value (4)][endpoint] */
        if (zmq_msg_size(&m) == 6) {
            memcpy(&event, zmq_msg_data(&m), sizeof event);
            found |= event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
        }
    }
    zmq_msg_close(&m);
    return found;
}

/* Connects sub to endpoint and waits until the connection completed its
 * handshake, so the subscription is on its way, for at most timeout_ms.
 * 0, or -ETIMEDOUT (code unavailable); 0 too when a signal stops us. */
static int s_connect_sub(void *zctx, void *sub, const char *endpoint,
                         int timeout_ms, cairn_error_t *err)
{
    int64_t deadline = (int64_t)cairn_now_ms() + timeout_ms;
    char name[64];
    void *mon = NULL;
    int found = 0, e;

    snprintf(name, sizeof name, "inproc://cairn-watch-%d", (int)getpid());
    if (zmq_socket_monitor(sub, name, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) < 0 ||
        !(mon = zmq_socket(zctx, ZMQ_PAIR)) || zmq_connect(mon, name) < 0) {
        e = errno;
        if (mon)
            zmq_close(mon);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "cannot monitor the "
                               "subscription: %s", zmq_strerror(e));
    }
    if (zmq_connect(sub, endpoint) < 0) {
        e = errno;
        zmq_close(mon);
        return cairn_error_set(err, -e, CAIRN_USAGE, "cannot subscribe to "
                               "%s: %s", endpoint, zmq_strerror(e));
    }
    while (!found && !s_stop_signal) {
        zmq_pollitem_t p = { .socket = mon, .events = ZMQ_POLLIN };
        int64_t left = deadline - (int64_t)cairn_now_ms();

        if (left <= 0)
            break;
        if (zmq_poll(&p, 1, (long)left) > 0)
            found = s_monitor_handshake(mon);
    }
    zmq_socket_monitor(sub, NULL, 0);
    zmq_close(mon);
    if (!found && !s_stop_signal)
        return cairn_error_set(err, -ETIMEDOUT, CAIRN_UNAVAILABLE,
                               "no connection to clusterd's event socket %s "
                               "within %d ms", endpoint, timeout_ms);
    return 0;
}

/* The watch options, checked: count and duration (0 = none). */
static int s_watch_args(const cli_ctx *ctx, int argc, char **argv,
                        long *ret_count, long *ret_duration, cairn_error_t *err)
{
    cairn_args_t a;
    int r;

    *ret_count = *ret_duration = 0;
    r = cairn_args_parse("nodes --watch", cli_nodes_options, argc, argv, 0, &a,
                       err);
    if (r == 0 && ctx->table)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "nodes --watch prints "
                            "JSON lines; --table cannot be used with it");
    if (r == 0 && a.values[O_COUNT])
        r = cairn_parse_long("--count", a.values[O_COUNT], 1, 1000000, ret_count,
                          err);
    if (r == 0 && a.values[O_DURATION])
        r = cairn_parse_long("--duration-ms", a.values[O_DURATION], 1, 86400000,
                          ret_duration, err);
    return r;
}

/* Prints line on out; the exit code when it failed, else -1. */
static int s_watch_print(FILE *out, const json_t *line)
{
    cairn_error_t e = { 0 };
    int r = cli_print_json_line(out, line);

    if (r == 0)
        return -1;
    cairn_error_set(&e, r, CAIRN_SYSTEM, "cannot write to stdout: %s",
                    strerror(-r));
    cli_print_error(stderr, &e);
    return CLI_EXIT_SYSTEM;
}

/* The event loop: one line per event until count, the deadline (0: none)
 * or a signal. Returns the exit code. */
static int s_watch_loop(void *sub, FILE *out, long count, int64_t deadline)
{
    long seen = 0;

    while (!s_stop_signal && (count == 0 || seen < count)) {
        zmq_pollitem_t p = { .socket = sub, .events = ZMQ_POLLIN };
        int64_t left = deadline ? deadline - (int64_t)cairn_now_ms() : -1;
        cairn_error_t e = { 0 };
        zmq_msg_t frames[3];
        json_t *line = NULL;
        int r, code;

        if (deadline && left <= 0)
            break;
        if (zmq_poll(&p, 1, (long)left) <= 0)
            continue;   /* timeout or EINTR: the loop condition decides */
        r = cli_target_recv_event(sub, frames, &e);
        if (r == 0)
            continue;
        if (r < 0 && r != -EBADMSG) {
            cairn_error_set(&e, r, CAIRN_SYSTEM, "receiving an event: %s",
                            zmq_strerror(-r));
            cli_print_error(stderr, &e);
            return CLI_EXIT_SYSTEM;
        }
        if (r > 0 && s_topic_is(&frames[0], CAIRN_SYNC_TOPIC_PREFIX, false)) {
            cli_target_close_event(frames);   /* another watcher's marker */
            continue;
        }
        if (r > 0) {
            r = cli_member_event_json(frames, &line, &e);
            cli_target_close_event(frames);
        }
        if (r < 0) {   /* a bad event is reported and skipped */
            cli_print_error(stderr, &e);
            continue;
        }
        code = s_watch_print(out, line);
        json_decref(line);
        if (code >= 0)
            return code;
        seen++;
    }
    return CLI_EXIT_OK;
}

#define S_PUB_PROBE_MS 250   /* longest wait of a tcp event socket's probe */

/* Subscribes, takes the snapshot, prints it and runs the loop. */
static int s_watch(cli_ctx *ctx, void *zctx, FILE *out, long count,
                   int64_t deadline, cairn_error_t *err)
{
    _cleanup_json_ json_t *snap = NULL, *line = NULL;
    cli_target_t t = { 0 };
    void *sub = NULL;
    int r, linger = 0;

    r = cli_target_resolve(ctx, "clusterd", &t, err);
    if (r == 0 && !t.pub_endpoint)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                            ctx->endpoint ? "nodes --watch with --endpoint "
                            "needs an ipc://.../clusterd.sock endpoint (the "
                            "event socket is the clusterd.pub.sock beside it); "
                            "for tcp use the description"
                            : "clusterd declares no pub-port in the "
                            "description: it publishes no events");
    /* a dead event socket is "unavailable" now, not after --timeout */
    if (r == 0)
        r = cairn_endpoint_probe(t.pub_endpoint, "clusterd's event socket",
                                 S_PUB_PROBE_MS, err);
    if (r == 0 && !(sub = zmq_socket(zctx, ZMQ_SUB)))
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "zmq_socket: %s",
                            zmq_strerror(errno));
    if (r == 0)   /* over tcp in mode curve, as the requests are */
        r = cli_target_secure_socket(&t, sub, err);
    char sync[64];
    snprintf(sync, sizeof sync, "%s%d.%lld", CAIRN_SYNC_TOPIC_PREFIX, (int)getpid(),
             (long long)(int64_t)cairn_now_ms());
    if (r == 0) {
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, sync, strlen(sync));   /* after "" */
        r = s_connect_sub(zctx, sub, t.pub_endpoint, ctx->timeout_ms, err);
    }
    if (r == 0)
        r = s_wait_sync(sub, sync, (int64_t)cairn_now_ms() + ctx->timeout_ms, err);
    cli_target_clear(&t);
    /* subscribed and confirmed: nothing published from here on is lost */
    if (r == 0 && !s_stop_signal)
        r = s_nodes_snapshot(ctx, &t, &snap, err);
    cli_target_clear(&t);
    if (r == 0 && !s_stop_signal) {
        line = json_pack("{s:s, s:O}", "event", "snapshot", "nodes",
                         json_object_get(snap, "nodes"));
        r = line ? s_watch_print(out, line) : cli_oom(err);
        if (line && r < 0)   /* printed */
            r = s_watch_loop(sub, out, count, deadline);
    }
    if (sub)
        zmq_close(sub);
    return r;
}

int cli_cmd_nodes_watch(cli_ctx *ctx, int argc, char **argv, FILE *in,
                        FILE *out, cairn_error_t *err)
{
    struct sigaction sa = { .sa_handler = s_on_stop_signal }, old_int, old_term;
    long count, duration;
    void *zctx;
    int r;

    (void)in;
    r = s_watch_args(ctx, argc, argv, &count, &duration, err);
    if (r < 0)
        return r;
    zctx = zmq_ctx_new();
    if (!zctx)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "zmq_ctx_new: %s",
                               zmq_strerror(errno));
    s_stop_signal = 0;
    sigemptyset(&sa.sa_mask);   /* no SA_RESTART: a signal ends the poll */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    r = s_watch(ctx, zctx, out, count,
                duration ? (int64_t)cairn_now_ms() + duration : 0, err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    zmq_ctx_term(zctx);
    return r < 0 && s_stop_signal ? CLI_EXIT_OK : r;
}

/* ---- node add | remove | leave ----------------------------------------- */

const cairn_option_t cli_node_add_options[] = {
    { "--id", "N", "the new node's id, 1..255 (required)" },
    { "--address", "A", "its IPv4 or IPv6 address (required, except on a local "
      "cluster: default the subnet's .N)" },
    { "--name", "NAME", "its name (default n<N>)" },
    { "--appliance", "APP", "its appliance (default: the asked node's)" },
    { NULL, NULL, NULL },
};
enum { O_ID, O_ADDRESS, O_NAME, O_APPLIANCE };

/* The single NodeInfo of a node_add / node_remove reply as {"node":{...}}. */
static int s_one_node(const Cairn__Clusterd__Reply *reply, const char *what,
                      const cli_target_t *t, json_t **ret, cairn_error_t *err)
{
    const Cairn__Clusterd__NodesReply *nr = reply->nodes_reply;

    if (nr->n_nodes != 1)
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                               "clusterd at %s answered %s with %zu nodes, "
                               "expected 1", t->endpoint, what, nr->n_nodes);
    *ret = json_pack("{s:o*, s:o*}", "node", s_node_json(nr->nodes[0]),
                     "answered_by", cli_target_node_json(t));
    return *ret ? 0 : cli_oom(err);
}

/* Request{node_remove id} on t, the reply dropped: undoes an admission whose
 * provisioning failed. Best effort. */
static void s_unadmit(cli_ctx *ctx, const cli_target_t *t, uint32_t id)
{
    Cairn__Clusterd__NodeRemoveRequest rreq =
        CAIRN__CLUSTERD__NODE_REMOVE_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    cairn_error_t e = { 0 };

    rreq.id = id;
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODE_REMOVE;
    req.node_remove = &rreq;
    if (s_call_clusterd(ctx, t, (int64_t)cairn_now_ms(), &req.base, &reply, &e) == 0)
        protobuf_c_message_free_unpacked(&reply->base, NULL);
}

/* The new node's key as {"public_key", "fingerprint", "secret_path"},
 * null in security mode none. */
static json_t *s_key_json(const json_t *made)
{
    const json_t *key = json_object_get(made, "key");

    if (!json_is_object(key))
        return json_null();
    return json_pack("{s:O, s:O, s:O}", "public_key",
                     json_object_get(key, "public"), "fingerprint",
                     json_object_get(key, "fingerprint"), "secret_path",
                     json_object_get(key, "secret_path"));
}

/* Provisions the admitted node on the local cluster and adds what the
 * harness did to result ("provisioned", "pids", "netns", "rundir", "key",
 * "reloaded"). */
static int s_provision(cli_ctx *ctx, const cli_target_t *t, json_t *result,
                       const char *address, cairn_error_t *err)
{
    json_t *node = json_object_get(result, "node"), *made = NULL, *pids, *svc;
    harness_node_t spec = {
        .id = (unsigned)json_integer_value(json_object_get(node, "id")),
        .address = address,
        .name = json_string_value(json_object_get(node, "name")),
        .appliance = json_string_value(json_object_get(node, "appliance")),
    };
    size_t i;
    int r;

    r = harness_node_add(t->cluster, t->run_base, &spec, &made, err);
    if (r < 0) {
        size_t len = strlen(err->message);

        s_unadmit(ctx, t, spec.id);
        snprintf(err->message + len, sizeof err->message - len, " (node %u "
                 "was admitted by clusterd and has been removed again)",
                 spec.id);
        return r;
    }
    pids = json_array();
    json_array_foreach(json_object_get(made, "services"), i, svc)
        json_array_append(pids, json_object_get(svc, "pid"));
    r = json_object_set_new(result, "provisioned", json_true()) |
        json_object_set_new(result, "pids", pids) |
        json_object_set(result, "netns", json_object_get(made, "netns")) |
        json_object_set(result, "rundir", json_object_get(made, "rundir")) |
        json_object_set_new(result, "key", s_key_json(made)) |
        json_object_set(result, "reloaded", json_object_get(made, "reloaded"));
    json_decref(made);
    return r ? cli_oom(err) : 0;
}

/* The node add arguments: id and address, checked. */
static int s_add_args(int argc, char **argv, cairn_args_t *a, long *ret_id,
                      cairn_error_t *err)
{
    unsigned char buf[sizeof(struct in6_addr)];
    const char *addr;
    int r;

    r = cairn_args_parse("node add", cli_node_add_options, argc, argv, 0, a, err);
    if (r < 0)
        return r;
    if (!a->values[O_ID])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "node add: --id N "
                               "is required");
    r = cairn_parse_long("--id", a->values[O_ID], 1, 255, ret_id, err);
    addr = a->values[O_ADDRESS];
    if (r == 0 && addr && inet_pton(AF_INET, addr, buf) != 1 &&
        inet_pton(AF_INET6, addr, buf) != 1)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--address '%s' is "
                            "not an IPv4 or IPv6 address", addr);
    if (r == 0 && a->values[O_NAME] && !*a->values[O_NAME])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--name is empty");
    if (r == 0 && a->values[O_APPLIANCE] && !*a->values[O_APPLIANCE])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--appliance is empty");
    return r;
}

int cli_cmd_node_add(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err)
{
    Cairn__Clusterd__NodeAddRequest areq = CAIRN__CLUSTERD__NODE_ADD_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    _cleanup_json_ json_t *result = NULL;
    cli_target_t t = { 0 };
    char address[64] = "";
    cairn_args_t a;
    long id;
    int r, local = 0;

    r = s_add_args(argc, argv, &a, &id, err);
    if (r == 0)
        r = cli_target_resolve(ctx, "clusterd", &t, err);
    /* a local cluster: the address must fit its subnet (default .N) */
    if (r == 0 && !ctx->endpoint)
        r = local = harness_node_prepare(t.cluster, t.run_base, (unsigned)id,
                                         a.values[O_ADDRESS], address,
                                         sizeof address, err);
    if (r >= 0 && !local && !a.values[O_ADDRESS])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "node add: --address "
                            "is required (cluster %s is not a local cluster "
                            "made by `cairn cluster up`)",
                            t.cluster ? t.cluster : "at --endpoint");
    if (r >= 0 && !local)
        snprintf(address, sizeof address, "%s", a.values[O_ADDRESS]);
    if (r >= 0) {
        areq.id = (uint32_t)id;
        areq.address = address;
        areq.name = (char *)(a.values[O_NAME] ? a.values[O_NAME] : "");
        areq.appliance = (char *)(a.values[O_APPLIANCE] ? a.values[O_APPLIANCE] : "");
        req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODE_ADD;
        req.node_add = &areq;
        r = s_call_clusterd(ctx, &t, (int64_t)cairn_now_ms(), &req.base, &reply, err);
    }
    /* clusterd still counts a crashed node a member: bringing it back is a
     * restart, not an add (a node that left is admitted again) */
    if (r < 0 && local == 2 && err->code == CAIRN_ALREADY_EXISTS)
        cairn_error_append(err, r, "; node %ld is provisioned on local "
                           "cluster %s but none of its daemons runs: `cairn "
                           "node restart %ld` brings it back, `cairn node "
                           "remove %ld` removes it", id, t.cluster, id, id);
    if (r == 0 && reply->msg_case != CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY)
        r = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "clusterd at %s "
                            "answered node add with another message",
                            t.endpoint);
    if (r == 0)
        r = s_one_node(reply, "node add", &t, &result, err);
    if (reply)
        protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (r == 0)
        r = local ? s_provision(ctx, &t, result, address, err)
                  : json_object_set_new(result, "provisioned", json_false())
                        ? cli_oom(err) : 0;
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret_result = TAKE_PTR(result);
    return 0;
}

#define S_REMOVE_WAIT_MS 3000   /* for a removed node's daemons to stop */

int cli_cmd_node_remove(cli_ctx *ctx, int argc, char **argv,
                        json_t **ret_result, cairn_error_t *err)
{
    Cairn__Clusterd__NodeRemoveRequest rreq =
        CAIRN__CLUSTERD__NODE_REMOVE_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    _cleanup_json_ json_t *result = NULL, *gone = NULL;
    cli_target_t t = { 0 };
    cairn_args_t a;
    long id = 0;
    int r;

    r = cairn_args_parse("node remove", cli_no_options, argc, argv, 1, &a, err);
    if (r == 0 && a.n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "node remove: the id "
                            "of the node to remove is required (cairn node "
                            "remove N)");
    if (r == 0)
        r = cairn_parse_long("node remove: N", a.pos[0], 1, 255, &id, err);
    if (r < 0)
        return r;
    rreq.id = (uint32_t)id;
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODE_REMOVE;
    req.node_remove = &rreq;
    r = s_request(ctx, "node remove", &req,
                  CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY, (uint32_t)id, &t,
                  &reply, err);
    if (r < 0)
        return r;
    r = s_one_node(reply, "node remove", &t, &result, err);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (r == 0 && !ctx->endpoint && harness_exists(t.cluster, t.run_base)) {
        r = harness_node_remove(t.cluster, t.run_base, (unsigned)id,
                                S_REMOVE_WAIT_MS, &gone, err);
        if (r == -ENOENT)   /* not a node the harness made */
            r = 0;
    }
    if (gone)
        json_object_del(gone, "id");   /* already in node.id */
    if (r == 0 && (json_object_set_new(result, "deprovisioned",
                                       json_boolean(gone != NULL)) ||
                   (gone && json_object_update_missing(result, gone))))
        r = cli_oom(err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret_result = TAKE_PTR(result);
    return 0;
}

/* On a local cluster, stops what still runs of node id once its clusterd
 * left (ghostd and the others would otherwise run on, and keep the id
 * taken) and adds the counts to result. */
static int s_leave_stop(const cli_target_t *t, uint32_t id, json_t *result,
                        cairn_error_t *err)
{
    _cleanup_json_ json_t *stopped = NULL;
    int r;

    if (!id || !harness_exists(t->cluster, t->run_base))
        return json_object_set_new(result, "stopped", json_false())
                   ? cli_oom(err) : 0;
    r = harness_node_stop(t->cluster, t->run_base, id, S_REMOVE_WAIT_MS,
                          &stopped, err);
    if (r == -ENOENT)   /* not a node the harness made */
        return json_object_set_new(result, "stopped", json_false())
                   ? cli_oom(err) : 0;
    if (r < 0)
        return r;
    json_object_del(stopped, "id");
    if (json_object_set_new(result, "stopped", json_true()) ||
        json_object_update(result, stopped))
        return cli_oom(err);
    return 0;
}

int cli_cmd_node_leave(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err)
{
    Cairn__Clusterd__StatusRequest sreq = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__LeaveRequest lreq = CAIRN__CLUSTERD__LEAVE_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *reply = NULL;
    _cleanup_json_ json_t *result = NULL;
    cli_target_t t = { 0 };
    _cleanup_json_ json_t *by = NULL;   /* the node that answered */
    uint32_t id = 0;
    cairn_args_t a;
    int r;

    r = cairn_args_parse("node leave", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    if (ctx->endpoint) {   /* who is there? the answer names the node */
        req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
        req.status = &sreq;
        r = s_request(ctx, "status", &req,
                      CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY, 0, &t, &reply,
                      err);
        if (r < 0)
            return r;
        id = reply->status_reply->node_id;
        by = json_pack("{s:I, s:s}", "id", (json_int_t)id, "name",
                       reply->status_reply->node_name);
        protobuf_c_message_free_unpacked(&reply->base, NULL);
        cli_target_clear(&t);
    }
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_LEAVE;
    req.leave = &lreq;
    r = s_request(ctx, "node leave", &req,
                  CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY, 0, &t, &reply, err);
    if (r < 0)
        return r;
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (t.node_id) {
        id = t.node_id;
        json_decref(by);
        by = cli_target_node_json(&t);
    }
    result = json_pack("{s:I, s:b, s:O*}", "node", (json_int_t)id, "left", 1,
                       "answered_by", by);
    r = !result ? cli_oom(err)
        : ctx->endpoint ? json_object_set_new(result, "stopped", json_false())
                              ? cli_oom(err) : 0
                        : s_leave_stop(&t, id, result, err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret_result = TAKE_PTR(result);
    return 0;
}

/* ---- node restart ------------------------------------------------------ */

const cairn_option_t cli_node_restart_options[] = {
    { "--start-timeout", "MS", "deadline for every restarted daemon's socket "
      "(default 10000)" },
    { NULL, NULL, NULL },
};

/* The local cluster ctx names: its name and run base from the description
 * (--config, $CAIRN_CONFIG, <run-base>/<cluster>/cluster.xml), no node
 * asked -- the node to restart may be the one that does not answer. */
static int s_local_cluster(const cli_ctx *ctx, char **ret_name,
                           char **ret_base, cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    int r = cli_target_load_description(ctx, &d, err);

    if (r < 0)
        return r;
    *ret_name = strdup(cairn_description_cluster(d));
    *ret_base = strdup(cairn_description_run_base(d));
    cairn_description_free(d);
    if (!*ret_name || !*ret_base)
        return cli_oom(err);
    if (!harness_exists(*ret_name, *ret_base))
        return cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                               "cluster %s is not a local cluster made by "
                               "`cairn cluster up` (no %s/%s/state.json): "
                               "restart its daemons on their hosts",
                               *ret_name, *ret_base, *ret_name);
    return 0;
}

int cli_cmd_node_restart(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err)
{
    _cleanup_free_ char *name = NULL, *base = NULL;
    cairn_args_t a;
    long id = 0, timeout = 0;
    int r;

    r = cairn_args_parse("node restart", cli_node_restart_options, argc, argv,
                         1, &a, err);
    if (r == 0 && a.n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "node restart: the id "
                            "of the node is required (cairn node restart N)");
    if (r == 0)
        r = cairn_parse_long("node restart: N", a.pos[0], 1, 255, &id, err);
    if (r == 0 && a.values[0])
        r = cairn_parse_long("--start-timeout", a.values[0], 100, 600000,
                             &timeout, err);
    if (r == 0 && ctx->endpoint)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "node restart works "
                            "on a local cluster's description, not on "
                            "--endpoint");
    if (r == 0)
        r = s_local_cluster(ctx, &name, &base, err);
    if (r < 0)
        return r;
    return harness_node_restart(name, base, (unsigned)id, (int)timeout,
                                ret_result, err);
}
