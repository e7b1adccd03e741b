/* cmd-sched.c - `cairn sched show|swap|log [--follow]`: the scheduler
 * policy of a node (docs/scheduler.md, "Swapping a policy").
 *
 * Design. Every node runs one policy daemon as service "sched"
 * (sched-rr, sched-mosix, ...), so these verbs ask the node's "sched"
 * like any service: the global --node names it, else the first node of
 * this host whose policy listens; --all asks every node of the
 * description whose appliance runs sched, and lists a node that cannot
 * answer with its error instead of failing the whole.
 *
 * swap on a local cluster (its state.json beside the description) is the
 * harness's: it stops the node's policy daemon and starts sched-POLICY in
 * the node's namespace and cgroups (harness_sched_swap). Anywhere else it
 * is the running policy's Request{swap}, which asks systemd to start
 * sched-POLICY.service (its Conflicts= stops the running one).
 *
 * log --follow subscribes to the node's "sched" topic and prints each
 * Decision as a JSON line; every second without one it asks Request{log}
 * for what came after the last seq printed (seqs continue across swaps),
 * so a decision published while no policy ran, or before the
 * subscription took, is printed all the same, once.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <zmq.h>

#include "cairn/client.h"
#include "cairn/wire.h"
#include "cli.h"
#include "harness/harness.h"
#include "output.h"
#include "sched.pb-c.h"
#include "target.h"

#define S_FOLLOW_POLL_MS 1000   /* log --follow: asked again after this */
#define S_GO_ON INT_MIN          /* log --follow: not done yet */

const cairn_option_t cli_sched_show_options[] = {
    { "--all", NULL, "every node running a scheduler" },
    { NULL, NULL, NULL },
};
const cairn_option_t cli_sched_swap_options[] = {
    { "--all", NULL, "every node running a scheduler" },
    { "--start-timeout", "MS", "local cluster: how long the new policy may "
      "take to serve (100..600000, default 10000)" },
    { NULL, NULL, NULL },
};
enum { O_SWAP_ALL, O_SWAP_START };
const cairn_option_t cli_sched_log_options[] = {
    { "--max", "N", "the newest N decisions (1..10000, default 100)" },
    { "--follow", NULL, "stream: then one JSON line per new decision, across "
      "swaps, until a signal (or --count, --duration-ms)" },
    { "--count", "K", "with --follow: stop after K decisions, 1..1000000" },
    { "--duration-ms", "D", "with --follow: stop after D ms, 1..86400000" },
    { NULL, NULL, NULL },
};
enum { O_LOG_MAX, O_LOG_FOLLOW, O_LOG_COUNT, O_LOG_DURATION };

/* ---- asking a node's policy ------------------------------------------- */

/* ctx with --node set to node id (0: ctx's own choice). */
static cli_ctx s_at(const cli_ctx *ctx, uint32_t node, char buf[16])
{
    cli_ctx c = *ctx;

    if (node) {
        snprintf(buf, 16, "%u", node);
        c.node = buf;
    }
    return c;
}

/* Sends req to the sched of node (0: ctx's choice); *ret the Reply of case
 * `expect`, *ret_node the node that answered. An unreachable policy is
 * said so: "no scheduler policy runs on node N". */
static int s_call(const cli_ctx *ctx, uint32_t node, const char *what,
                  const Cairn__Sched__Request *req, uint32_t expect,
                  Cairn__Sched__Reply **ret, uint32_t *ret_node,
                  cairn_error_t *err)
{
    char buf[16];
    cli_ctx c = s_at(ctx, node, buf);
    cli_target_t t = { 0 };
    ProtobufCMessage *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    int r = cli_target_resolve(&c, "sched", &t, err);

    if (r < 0 && err && err->code == CAIRN_UNAVAILABLE &&
        strstr(err->message, "is not running"))
        cairn_error_append(err, r, " -- no scheduler policy runs there: "
                           "`cairn sched swap POLICY` starts one");
    if (r == 0)
        r = cli_target_call(&c, &t, "sched", ctx->timeout_ms, &req->base,
                            &cairn__sched__reply__descriptor, expect, what,
                            &reply, &by, err);
    if (r == 0 && ret_node)
        *ret_node = t.node_id;
    cli_target_clear(&t);
    if (r == 0)
        *ret = (Cairn__Sched__Reply *)reply;
    return r;
}

/* The nodes of the description whose appliance runs sched, into ids. */
static int s_sched_nodes(const cli_ctx *ctx, uint32_t ids[256], size_t *ret_n,
                         cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    size_t n = 0;
    int r = cli_target_load_description(ctx, &d, err);

    if (r < 0)
        return r;
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *nd = cairn_description_node(d, i);
        if (cairn_description_node_runs(d, nd, "sched") && n < 256)
            ids[n++] = nd->id;
    }
    cairn_description_free(d);
    *ret_n = n;
    if (n == 0)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no node of the "
                               "description runs a scheduler (service "
                               "\"sched\" in its appliance)");
    return 0;
}

/* A JSON text field as JSON (an object or array the policy wrote), or
 * the string itself when it does not parse. */
static json_t *s_json_text(const char *s)
{
    json_t *v = s && *s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;

    return v ? v : json_string(s ? s : "");
}

/* ---- show ---------------------------------------------------------------- */

static json_t *s_show_json(const Cairn__Sched__ShowReply *s, uint32_t node)
{
    /* clang-format off */
    return json_pack("{s:I, s:s, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:o}",
                     "node", (json_int_t)node,
                     "policy", s->policy ? s->policy : "",
                     "pid", (json_int_t)s->pid,
                     "started_ms", (json_int_t)s->started_ms,
                     "params", s_json_text(s->params),
                     "placements", (json_int_t)s->placements,
                     "migrations", (json_int_t)s->migrations,
                     "migrations_failed", (json_int_t)s->migrations_failed,
                     "usherings", (json_int_t)s->usherings,
                     "known", s_json_text(s->known));
    /* clang-format on */
}

/* One node's ShowReply, asked with req (show or swap), as JSON. */
static int s_show_one(const cli_ctx *ctx, uint32_t node, const char *what,
                      const Cairn__Sched__Request *req, json_t **ret,
                      cairn_error_t *err)
{
    Cairn__Sched__Reply *reply = NULL;
    uint32_t by = 0;
    int r = s_call(ctx, node, what, req, CAIRN__SCHED__REPLY__MSG_SHOW_REPLY,
                   &reply, &by, err);

    if (r < 0)
        return r;
    *ret = s_show_json(reply->show_reply, by);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return *ret ? 0 : cli_oom(err);
}

/* req asked of every node running sched: {"nodes": [...]}, a node that
 * failed listed as {"node", "error": {code, message}}. */
static int s_show_all(const cli_ctx *ctx, const char *what,
                      const Cairn__Sched__Request *req, json_t **ret,
                      cairn_error_t *err)
{
    uint32_t ids[256];
    size_t n = 0;
    int r = s_sched_nodes(ctx, ids, &n, err);
    json_t *nodes = json_array();

    if (r < 0 || !nodes) {
        json_decref(nodes);
        return r < 0 ? r : cli_oom(err);
    }
    for (size_t i = 0; i < n; i++) {
        cairn_error_t e = { 0 };
        json_t *one = NULL;
        if (s_show_one(ctx, ids[i], what, req, &one, &e) < 0)
            one = json_pack("{s:I, s:{s:s, s:s}}", "node", (json_int_t)ids[i],
                            "error", "code", cairn_code_name(e.code),
                            "message", e.message);
        json_array_append_new(nodes, one);
    }
    *ret = json_pack("{s:o}", "nodes", nodes);
    return *ret ? 0 : cli_oom(err);
}

int cli_cmd_sched_show(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err)
{
    Cairn__Sched__ShowRequest sr = CAIRN__SCHED__SHOW_REQUEST__INIT;
    Cairn__Sched__Request req = CAIRN__SCHED__REQUEST__INIT;
    cairn_args_t a;
    int r = cairn_args_parse("sched show", cli_sched_show_options, argc, argv, 0,
                             &a, err);

    if (r == 0 && a.values[0] && ctx->node)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "sched show: --all or "
                            "--node N, not both");
    if (r < 0)
        return r;
    req.msg_case = CAIRN__SCHED__REQUEST__MSG_SHOW;
    req.show = &sr;
    return a.values[0] ? s_show_all(ctx, "show", &req, ret_result, err)
                       : s_show_one(ctx, 0, "show", &req, ret_result, err);
}

/* ---- swap ---------------------------------------------------------------- */

/* The node ctx names (an id, or a name of d), 0 when none. */
static int s_node_id(const cli_ctx *ctx, const cairn_description_t *d,
                     uint32_t *ret, cairn_error_t *err)
{
    const char *spec = ctx->node ? ctx->node : getenv("CAIRN_NODE");
    const cairn_node_desc_t *nd = spec && *spec
                                      ? cairn_description_lookup_node(d, spec)
                                      : NULL;

    *ret = nd ? nd->id : 0;
    if (spec && *spec && !nd)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--node '%s': no such "
                               "node in the description", spec);
    for (size_t i = 0; !*ret && i < cairn_description_n_nodes(d); i++) {
        nd = cairn_description_node(d, i);
        if (cairn_description_node_runs(d, nd, "sched"))
            *ret = nd->id;
    }
    return 0;
}

/* On a local cluster: the harness stops and starts the daemons. 1 when
 * the cluster is not one (nothing done). */
static int s_swap_local(const cli_ctx *ctx, const char *policy, bool all,
                        long start_ms, json_t **ret, cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    uint32_t node = 0;
    int r = ctx->endpoint ? 1 : cli_target_load_description(ctx, &d, err);

    if (r != 0)
        return r;
    _cleanup_free_ char *name = strdup(cairn_description_cluster(d));
    _cleanup_free_ char *base = strdup(cairn_description_run_base(d));
    if (!all)
        r = s_node_id(ctx, d, &node, err);
    cairn_description_free(d);
    if (r < 0)
        return r;
    if (!name || !base)
        return cli_oom(err);
    if (!harness_exists(name, base))
        return 1;
    if (!all && !node)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no node of local "
                               "cluster %s runs a scheduler", name);
    return harness_sched_swap(name, base, node, policy, (int)start_ms, ret, err);
}

int cli_cmd_sched_swap(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err)
{
    Cairn__Sched__SwapRequest sw = CAIRN__SCHED__SWAP_REQUEST__INIT;
    Cairn__Sched__Request req = CAIRN__SCHED__REQUEST__INIT;
    cairn_args_t a;
    long start_ms = 0;
    int r = cairn_args_parse("sched swap", cli_sched_swap_options, argc, argv, 1,
                             &a, err);

    if (r == 0 && a.n_pos != 1)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "sched swap: the policy "
                            "is required (cairn sched swap POLICY, e.g. mosix)");
    if (r == 0 && a.values[O_SWAP_ALL] && ctx->node)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "sched swap: --all or "
                            "--node N, not both");
    if (r == 0 && a.values[O_SWAP_START])
        r = cairn_parse_long("--start-timeout", a.values[O_SWAP_START], 100,
                             600000, &start_ms, err);
    if (r == 0)
        r = s_swap_local(ctx, a.pos[0], a.values[O_SWAP_ALL], start_ms,
                         ret_result, err);
    if (r <= 0)
        return r;
    /* not a local cluster: the running policy asks systemd */
    sw.policy = (char *)a.pos[0];
    req.msg_case = CAIRN__SCHED__REQUEST__MSG_SWAP;
    req.swap = &sw;
    return a.values[O_SWAP_ALL] ? s_show_all(ctx, "swap", &req, ret_result, err)
                                : s_show_one(ctx, 0, "swap", &req, ret_result, err);
}

/* ---- log ----------------------------------------------------------------- */

static json_t *s_decision_json(const Cairn__Sched__Decision *d)
{
    /* clang-format off */
    return json_pack("{s:I, s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:s, s:s}",
                     "seq", (json_int_t)d->seq,
                     "time_ms", (json_int_t)d->time_ms,
                     "node", (json_int_t)d->node,
                     "policy", d->policy ? d->policy : "",
                     "kind", d->kind ? d->kind : "",
                     "gpid", d->gpid ? d->gpid : "",
                     "from", (json_int_t)d->from,
                     "to", (json_int_t)d->to,
                     "reason", d->reason ? d->reason : "",
                     "outcome", d->outcome ? d->outcome : "");
    /* clang-format on */
}

/* Request{log} of node (0: ctx's choice): the decisions after `after`,
 * the newest max, oldest first. */
static int s_log(const cli_ctx *ctx, uint32_t node, uint32_t max, uint64_t after,
                 Cairn__Sched__Reply **ret, uint32_t *ret_node,
                 cairn_error_t *err)
{
    Cairn__Sched__LogRequest lr = CAIRN__SCHED__LOG_REQUEST__INIT;
    Cairn__Sched__Request req = CAIRN__SCHED__REQUEST__INIT;

    lr.max = max;
    lr.after = after;
    req.msg_case = CAIRN__SCHED__REQUEST__MSG_LOG;
    req.log = &lr;
    return s_call(ctx, node, "log", &req, CAIRN__SCHED__REPLY__MSG_LOG_REPLY, ret,
                  ret_node, err);
}

static int s_log_args(const char *what, int argc, char **argv, cairn_args_t *a,
                      long *ret_max, cairn_error_t *err)
{
    int r = cairn_args_parse(what, cli_sched_log_options, argc, argv, 0, a, err);

    *ret_max = 100;
    if (r == 0 && a->values[O_LOG_MAX])
        r = cairn_parse_long("--max", a->values[O_LOG_MAX], 1, 10000, ret_max,
                             err);
    return r;
}

int cli_cmd_sched_log(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                      cairn_error_t *err)
{
    Cairn__Sched__Reply *reply = NULL;
    cairn_args_t a;
    uint32_t node = 0;
    long max;
    int r = s_log_args("sched log", argc, argv, &a, &max, err);

    if (r == 0 && (a.values[O_LOG_COUNT] || a.values[O_LOG_DURATION]))
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "sched log: --count and "
                            "--duration-ms go with --follow");
    if (r == 0)
        r = s_log(ctx, 0, (uint32_t)max, 0, &reply, &node, err);
    if (r < 0)
        return r;
    json_t *list = json_array();
    const Cairn__Sched__LogReply *lr = reply->log_reply;
    for (size_t i = 0; list && i < lr->n_decisions; i++)
        json_array_append_new(list, s_decision_json(lr->decisions[i]));
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    *ret_result = list ? json_pack("{s:I, s:o}", "node", (json_int_t)node,
                                   "decisions", list)
                       : NULL;
    return *ret_result ? 0 : cli_oom(err);
}

/* ---- log --follow --------------------------------------------------------- */

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    s_stop = sig;
}

typedef struct s_follow {
    const cli_ctx *ctx;
    uint32_t node;         /* the node followed */
    uint64_t last;         /* the newest seq printed */
    long printed, count;   /* lines printed, --count (0: none) */
    FILE *out;
} s_follow_t;

/* Prints d unless it was printed; S_GO_ON, or the exit code. */
static int s_print(s_follow_t *f, const Cairn__Sched__Decision *d)
{
    cairn_error_t e = { 0 };

    if (d->seq <= f->last)
        return S_GO_ON;
    json_t *line = s_decision_json(d);
    int r = line ? cli_print_json_line(f->out, line) : -ENOMEM;
    json_decref(line);
    if (r < 0) {
        cairn_error_set(&e, r, CAIRN_SYSTEM, "cannot write to stdout: %s",
                        strerror(-r));
        cli_print_error(stderr, &e);
        return CLI_EXIT_SYSTEM;
    }
    f->last = d->seq;
    f->printed++;
    return f->count && f->printed >= f->count ? CLI_EXIT_OK : S_GO_ON;
}

/* What came after the last printed, asked of the policy (none running:
 * nothing, asked again later). S_GO_ON, or the exit code. */
static int s_catch_up(s_follow_t *f, uint32_t max)
{
    Cairn__Sched__Reply *reply = NULL;
    cairn_error_t e = { 0 };
    int code = S_GO_ON;

    if (s_log(f->ctx, f->node, max, f->last, &reply, NULL, &e) < 0)
        return S_GO_ON;
    for (size_t i = 0; code == S_GO_ON && i < reply->log_reply->n_decisions; i++)
        code = s_print(f, reply->log_reply->decisions[i]);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return code;
}

/* One published decision: printed after any it skipped. */
static int s_on_event(s_follow_t *f, zmq_msg_t frames[3])
{
    Cairn__Sched__Decision *d = (Cairn__Sched__Decision *)
        protobuf_c_message_unpack(&cairn__sched__decision__descriptor, NULL,
                                  zmq_msg_size(&frames[2]),
                                  zmq_msg_data(&frames[2]));
    int code = S_GO_ON;

    if (!d)
        return S_GO_ON;   /* not a decision: the log catches up later */
    if (d->seq > f->last + 1)
        code = s_catch_up(f, 1000);
    if (code == S_GO_ON)
        code = s_print(f, d);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    return code;
}

static int s_follow_loop(s_follow_t *f, void *sub, int64_t deadline)
{
    while (!s_stop) {
        int64_t left = deadline ? deadline - (int64_t)cairn_now_ms() : S_FOLLOW_POLL_MS;
        zmq_pollitem_t p = { .socket = sub, .events = ZMQ_POLLIN };
        zmq_msg_t frames[3];
        cairn_error_t e = { 0 };
        int code = S_GO_ON;

        if (deadline && left <= 0)
            break;
        if (left > S_FOLLOW_POLL_MS)
            left = S_FOLLOW_POLL_MS;
        if (!sub || zmq_poll(&p, 1, (long)left) <= 0) {
            if (!sub && !s_stop)
                usleep((useconds_t)left * 1000);
            code = s_catch_up(f, 1000);
        } else if (cli_target_recv_event(sub, frames, &e) > 0) {
            code = s_on_event(f, frames);
            cli_target_close_event(frames);
        }
        if (code != S_GO_ON)
            return code;
    }
    return CLI_EXIT_OK;
}

/* SUB to the sched topic of t's PUB, into *ret; NULL when it publishes
 * nothing (the loop then only asks). */
static int s_subscribe(void *zctx, const cli_target_t *t, void **ret,
                       cairn_error_t *err)
{
    void *sub = t->pub_endpoint ? zmq_socket(zctx, ZMQ_SUB) : NULL;
    int linger = 0, ivl = 100;

    *ret = NULL;
    if (!t->pub_endpoint)
        return 0;
    if (!sub)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "zmq_socket: %s",
                               zmq_strerror(errno));
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "sched", 5);
    int r = cli_target_secure_socket(t, sub, err);
    if (r == 0 && zmq_connect(sub, t->pub_endpoint) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot subscribe to "
                            "%s: %s", t->pub_endpoint, zmq_strerror(errno));
    if (r < 0) {
        zmq_close(sub);
        return r;
    }
    *ret = sub;
    return 0;
}

/* The newest max decisions: S_GO_ON, an exit code, or -errno (err
 * set) when none could be read. */
static int s_first(s_follow_t *f, uint32_t max, cairn_error_t *err)
{
    Cairn__Sched__Reply *reply = NULL;
    int code = s_log(f->ctx, f->node, max, 0, &reply, NULL, err);

    if (code < 0)
        return code;
    code = S_GO_ON;
    for (size_t i = 0; code == S_GO_ON && i < reply->log_reply->n_decisions; i++)
        code = s_print(f, reply->log_reply->decisions[i]);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    return code;
}

int cli_cmd_sched_follow(cli_ctx *ctx, int argc, char **argv, FILE *in,
                         FILE *out, cairn_error_t *err)
{
    struct sigaction sa = { .sa_handler = s_on_signal }, old_int, old_term;
    s_follow_t f = { .ctx = ctx, .out = out };
    cli_target_t t = { 0 };
    cairn_args_t a;
    long max, duration = 0;
    void *zctx = NULL, *sub = NULL;

    (void)in;
    int r = s_log_args("sched log --follow", argc, argv, &a, &max, err);
    if (r == 0 && a.values[O_LOG_COUNT])
        r = cairn_parse_long("--count", a.values[O_LOG_COUNT], 1, 1000000,
                             &f.count, err);
    if (r == 0 && a.values[O_LOG_DURATION])
        r = cairn_parse_long("--duration-ms", a.values[O_LOG_DURATION], 1,
                             86400000, &duration, err);
    if (r == 0)   /* the node followed: named, or the first that answers */
        r = cli_target_resolve(ctx, "sched", &t, err);
    if (r == 0 && !(zctx = zmq_ctx_new()))
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "zmq_ctx_new: %s",
                            zmq_strerror(errno));
    f.node = t.node_id;
    if (r == 0)   /* subscribed first: nothing falls between */
        r = s_subscribe(zctx, &t, &sub, err);
    cli_target_clear(&t);
    int code = r < 0 ? r : s_first(&f, (uint32_t)max, err);
    if (code == S_GO_ON) {
        s_stop = 0;
        sigemptyset(&sa.sa_mask);   /* no SA_RESTART: a signal ends the poll */
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        code = s_follow_loop(&f, sub, duration ? (int64_t)cairn_now_ms() + duration
                                               : 0);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (sub)
        zmq_close(sub);
    if (zctx)
        zmq_ctx_term(zctx);
    return code;
}
