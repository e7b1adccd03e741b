/* service.c - the daemon skeleton every Cairn service runs on (service.h):
 * its lifecycle. A request's way through it is service-request.c, trust
 * (ZAP, callers, access) service-trust.c, the sockets service-socket.c;
 * what they share is service-private.h.
 *
 * Design. cairn_service_main() is a straight line: options -> description
 * -> node -> signals blocked + signalfd (before zmq_ctx_new, so libzmq's I/O
 * threads inherit the mask and never take SIGTERM) -> zmq context + loop ->
 * run dir made -> keys -> ops->start -> ZAP, bind, handshake monitor ->
 * READY -> ops->ready -> loop -> STOPPING -> close.
 *
 * SIGHUP loads the description again and swaps it in only when it
 * validates, still names this node running this service, keeps the
 * security mode and this node's key, and ops->reload accepts it; the
 * sockets keep their endpoints (a change is logged, not rebound).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn-config.h"
#include "log.h"
#include "service-private.h"
#include "util/fileio.h"
#include "util/options.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define EXIT_USAGE 100

/* ---- small helpers ----------------------------------------------------- */

static void s_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_notify(const char *fmt, ...)
{
#if CAIRN_HAVE_SYSTEMD
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sd_notify(0, buf);
#else
    (void)fmt;
#endif
}

/* ---- accessors --------------------------------------------------------- */

cairn_loop_t *cairn_service_loop(cairn_service_t *svc)
{
    return svc->loop;
}

void *cairn_service_zmq_context(cairn_service_t *svc)
{
    return svc->zctx;
}

const cairn_description_t *cairn_service_description(cairn_service_t *svc)
{
    return svc->desc;
}

const cairn_node_desc_t *cairn_service_node(cairn_service_t *svc)
{
    return svc->node;
}

uint64_t cairn_service_uptime_ms(cairn_service_t *svc)
{
    return cairn_now_ms() - svc->started_ms;
}

const char *cairn_service_security_mode(cairn_service_t *svc)
{
    return svc->curve ? "curve" : "none";
}

const cairn_keypair_t *cairn_service_keypair(cairn_service_t *svc)
{
    return svc->curve ? &svc->keys : NULL;
}

/* ---- description, node, reload ----------------------------------------- */

/* For a hotplugged node (--node-id): adds it to d unless d already names
 * it (an operator may have added it to the file since). Logs refusals. */
static int s_add_hotplugged(const cairn_service_t *svc, cairn_description_t *d,
                            const char *event)
{
    cairn_error_t err;
    const cairn_node_desc_t *known = svc->hot_id ? cairn_description_find_node(d, svc->hot_id) : NULL;
    if (known && strcmp(known->address, svc->hot_address) != 0)
        return cairn_log_err(-EEXIST, event,
                             "node=%u msg=\"the description has node %u as %s at %s, not at %s\"",
                             svc->hot_id, svc->hot_id, known->name, known->address,
                             svc->hot_address);
    if (!svc->hot_id || known)
        return 0;
    int r = cairn_description_add_node(d, svc->hot_id, svc->hot_name, svc->hot_address,
                                       svc->hot_appliance, NULL, &err);
    if (r < 0)
        cairn_log_err(r, event, "node=%u msg=\"%s\"", svc->hot_id, err.message);
    return r;
}

/* Picks this node in d: by --node, else by host name, else the only one. */
static const cairn_node_desc_t *s_pick_node(const cairn_service_t *svc,
                                            const cairn_description_t *d,
                                            const char *arg)
{
    char host[256] = "";

    if (svc->hot_id)
        return cairn_description_find_node(d, svc->hot_id);

    if (arg)
        return cairn_description_lookup_node(d, arg);
    if (gethostname(host, sizeof(host) - 1) == 0) {
        const cairn_node_desc_t *n = cairn_description_find_node_by_name(d, host);
        if (n)
            return n;
    }
    return cairn_description_n_nodes(d) == 1 ? cairn_description_node(d, 0) : NULL;
}

/* Checks that d has this service on `node`; logs why not. */
static int s_check_node(const cairn_service_t *svc, const cairn_description_t *d,
                        const cairn_node_desc_t *node, const char *event)
{
    if (!node)
        return cairn_log_err(-ENOENT, event, "msg=\"no node %s in %s\"",
                             svc->node_arg ? svc->node_arg : "named like this host",
                             cairn_description_path(d));
    if (!cairn_description_service(d, svc->ops->name))
        return cairn_log_err(-ENOENT, event, "msg=\"service %s is not declared\"",
                             svc->ops->name);
    if (!cairn_description_node_runs(d, node, svc->ops->name))
        return cairn_log_err(-ENOENT, event,
                             "msg=\"node %s (appliance %s) does not run %s\"",
                             node->name, node->appliance, svc->ops->name);
    return 0;
}

static int s_load(cairn_service_t *svc, cairn_description_t **ret,
                  const char *event)
{
    cairn_error_t err;
    int r = cairn_description_load(svc->config_path, ret, &err);

    if (r < 0)
        cairn_log_err(r, event, "file=%s line=%d element=%s msg=\"%s\"",
                      err.file[0] ? err.file : svc->config_path, err.line,
                      err.element[0] ? err.element : "-", err.message);
    return r;
}

/* The sockets keep the mode and the key they were bound with: a new
 * description may change other nodes' keys (that is how a node joins
 * or is cast out without restarts), not these. */
static int s_check_reload_keys(const cairn_service_t *svc,
                               const cairn_description_t *nd,
                               const cairn_node_desc_t *node)
{
    const cairn_key_desc_t *k = cairn_description_find_key(nd, node->id);

    if (cairn_description_curve(nd) != svc->curve)
        return cairn_log_err(-EINVAL, "reload",
                             "msg=\"security mode changed from %s: restart "
                             "the daemon to change it\"",
                             svc->curve ? "curve" : "none");
    if (svc->curve && (!k || strcmp(k->public_key, svc->keys.public_key) != 0))
        return cairn_log_err(-EKEYREJECTED, "reload",
                             "msg=\"this node's own key changed: restart the "
                             "daemon to serve the new one\"");
    return 0;
}

/* Loads the new description; on any refusal the old one stays. */
static int s_try_reload(cairn_service_t *svc)
{
    cairn_description_t *nd = NULL;
    const cairn_node_desc_t *node;
    cairn_error_t err;
    int r;

    if ((r = s_load(svc, &nd, "reload")) < 0)
        return r;
    if ((r = s_add_hotplugged(svc, nd, "reload")) < 0)
        goto fail;
    node = cairn_description_find_node(nd, svc->node->id);
    if ((r = s_check_node(svc, nd, node, "reload")) < 0)
        goto fail;
    if ((r = s_check_reload_keys(svc, nd, node)) < 0)
        goto fail;
    cairn_error_clear(&err);
    if (svc->ops->reload && (r = svc->ops->reload(svc, svc->ctx, nd, &err)) < 0) {
        cairn_log_err(r, "reload", "msg=\"refused by %s: %s\"", svc->ops->name,
                      err.message);
        goto fail;
    }
    const cairn_service_desc_t *sd = cairn_description_service(nd, svc->ops->name);
    if (strcmp(node->address, svc->node->address) != 0 ||
        sd->port != svc->sdesc->port || sd->pub_port != svc->sdesc->pub_port ||
        sd->metrics_port != svc->sdesc->metrics_port)
        cairn_log_warn(0, "reload", "msg=\"endpoints changed; restart to rebind, ignoring\"");
    cairn_description_free(svc->desc);
    svc->desc = nd;
    svc->node = node;
    svc->sdesc = sd;
    return 0;
fail:
    cairn_description_free(nd);
    return r;
}

static void s_reload(cairn_service_t *svc)
{
    s_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)cairn_now_ms() * 1000ull);
    cairn_log_info("reload", "file=%s", svc->config_path);
    if (s_try_reload(svc) == 0)
        cairn_log_info("reloaded", "file=%s", svc->config_path);
    else
        cairn_log_warn(0, "reload", "msg=\"keeping the previous description\"");
    s_notify("READY=1\nSTATUS=serving on node %u", svc->node->id);
}

/* ---- signals and watchdog ---------------------------------------------- */

static int s_on_signal(cairn_loop_t *loop, int fd, void *zsock, short revents,
                       void *userdata)
{
    cairn_service_t *svc = userdata;
    struct signalfd_siginfo si;

    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        const char *name = sigabbrev_np((int)si.ssi_signo);

        cairn_log_info("signal", "signal=%s", name ? name : "?");
        if (si.ssi_signo == SIGHUP) {
            s_reload(svc);
            continue;
        }
        cairn_loop_quit(loop, 0);
        return 0;
    }
    return 0;
}

static int s_setup_signals(cairn_service_t *svc)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return cairn_log_err(-errno, "signals", "msg=\"sigprocmask failed\"");
    svc->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (svc->sfd < 0)
        return cairn_log_err(-errno, "signals", "msg=\"signalfd failed\"");
    return 0;
}

static int s_on_watchdog(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_notify("WATCHDOG=1");
    return 0;
}

static int s_setup_watchdog(cairn_service_t *svc)
{
#if CAIRN_HAVE_SYSTEMD
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    uint64_t ms = usec / 2000 ? usec / 2000 : 1;
    int64_t id = cairn_loop_add_timer(svc->loop, ms, ms, s_on_watchdog, svc);
    if (id < 0)
        return cairn_log_err((int)id, "watchdog", "msg=\"no timer\"");
    cairn_log_info("watchdog", "interval-ms=%llu", (unsigned long long)ms);
#endif
    return 0;
}

/* ---- options ----------------------------------------------------------- */

/* The daemons' options, in the order s_parse_args reads them. */
enum {
    S_OPT_CONFIG, S_OPT_NODE, S_OPT_NODE_ID, S_OPT_ADDRESS, S_OPT_NAME,
    S_OPT_APPLIANCE, S_OPT_HELP, S_OPT_VERSION,
};

static const cairn_option_t s_options[] = {
    [S_OPT_CONFIG] = { "--config", "FILE", "cluster description (default "
                       "$CAIRN_CONFIG or /etc/cairn/cluster.xml)", "-c" },
    [S_OPT_NODE] = { "--node", "ID|NAME", "this node (default: the node "
                     "named like the host)", "-n" },
    [S_OPT_NODE_ID] = { "--node-id", "N", "this node is N, hotplugged: not "
                        "in the description" },
    [S_OPT_ADDRESS] = { "--address", "A", "its address (with --node-id)" },
    [S_OPT_NAME] = { "--name", "NAME", "its name (with --node-id; default "
                     "n<N>)" },
    [S_OPT_APPLIANCE] = { "--appliance", "APP", "its appliance (with "
                          "--node-id; default the first node's)" },
    [S_OPT_HELP] = { "--help", NULL, "this text", "-h" },
    [S_OPT_VERSION] = { "--version", NULL, "the Cairn version", "-V" },
    { NULL, NULL, NULL, NULL },
};

static void s_usage(const char *name, FILE *out)
{
    char synopsis[256];

    snprintf(synopsis, sizeof(synopsis),
             "[--config FILE] [--node ID|NAME]\n"
             "       %s [--config FILE] --node-id N --address A [--name NAME] "
             "[--appliance APP]", name);
    cairn_options_usage(out, name, synopsis, s_options);
}

/* A --node-id value: 1..255, or 0 (then s_check_hotplug_args complains). */
static uint32_t s_parse_node_id(const char *arg)
{
    char *end = NULL;
    unsigned long v = strtoul(arg, &end, 10);
    return end && *end == '\0' && end != arg && v >= 1 && v <= 255 ? (uint32_t)v : 0;
}

/* --node-id and --address go together, and exclude --node. */
static int s_check_hotplug_args(const cairn_service_t *svc)
{
    bool hot = svc->hot_id || svc->hot_address || svc->hot_name || svc->hot_appliance;
    const char *why = NULL;
    if (!hot)
        return 0;
    if (svc->node_arg)
        why = "--node cannot be combined with --node-id/--address";
    else if (!svc->hot_id)
        why = "--node-id needs a number in 1..255";
    else if (!svc->hot_address)
        why = "--node-id needs --address";
    if (!why)
        return 0;
    fprintf(stderr, "%s: %s\n", svc->ops->name, why);
    return -EINVAL;
}

/* 0 to go on, or an exit code + 1 (help/version: 1, usage error: 101). */
static int s_parse_args(cairn_service_t *svc, int argc, char **argv)
{
    const char *name = svc->ops->name;
    cairn_args_t a;
    cairn_error_t err;

    /* Positionals are taken, then refused without the usage text. */
    if (cairn_args_parse(name, s_options, argc > 0 ? argc - 1 : 0, argv + 1,
                         CAIRN_MAX_ARGS, &a, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        s_usage(name, stderr);
        return EXIT_USAGE + 1;
    }
    if (a.values[S_OPT_HELP]) {
        s_usage(name, stdout);
        return 1;
    }
    if (a.values[S_OPT_VERSION]) {
        printf("%s %s\n", name, CAIRN_VERSION);
        return 1;
    }
    if (a.n_pos > 0) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", name, a.pos[0]);
        return EXIT_USAGE + 1;
    }
    svc->config_path = a.values[S_OPT_CONFIG];
    svc->node_arg = a.values[S_OPT_NODE];
    if (a.values[S_OPT_NODE_ID])
        svc->hot_id = s_parse_node_id(a.values[S_OPT_NODE_ID]);
    svc->hot_address = a.values[S_OPT_ADDRESS];
    svc->hot_name = a.values[S_OPT_NAME];
    svc->hot_appliance = a.values[S_OPT_APPLIANCE];
    if (s_check_hotplug_args(svc) < 0)
        return EXIT_USAGE + 1;
    if (!svc->config_path)
        svc->config_path = getenv("CAIRN_CONFIG");
    if (!svc->config_path || !*svc->config_path)
        svc->config_path = "/etc/cairn/cluster.xml";
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

/* Checks that the ops tables fit the skeleton's assumptions. */
static int s_check_ops(cairn_service_t *svc)
{
    const cairn_service_ops_t *o = svc->ops;
    const ProtobufCFieldDescriptor *f;

    if (!o->name || !o->request_desc || !o->reply_desc ||
        (o->n_handlers && !o->handlers))
        return cairn_log_err(-EINVAL, "start", "msg=\"incomplete service ops\"");
    f = protobuf_c_message_descriptor_get_field(o->reply_desc, 1);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        f->descriptor != &cairn__status__descriptor)
        return cairn_log_err(-EINVAL, "start", "msg=\"%s has no Status status = 1\"",
                             o->reply_desc->name);
    svc->status_offset = f->offset;
    return 0;
}

/* Everything up to READY. */
static int s_start(cairn_service_t *svc)
{
    int r;

    if ((r = s_check_ops(svc)) < 0 || (r = s_load(svc, &svc->desc, "config")) < 0)
        return r;
    if ((r = s_add_hotplugged(svc, svc->desc, "config")) < 0)
        return r;
    svc->node = s_pick_node(svc, svc->desc, svc->node_arg);
    if ((r = s_check_node(svc, svc->desc, svc->node, "config")) < 0)
        return r;
    svc->sdesc = cairn_description_service(svc->desc, svc->ops->name);
    cairn_log_init(svc->ops->name, svc->node->id);
    if ((r = s_setup_signals(svc)) < 0)
        return r;
    svc->zctx = zmq_ctx_new();
    svc->loop = cairn_loop_new();
    if (!svc->zctx || !svc->loop)
        return cairn_log_err(-ENOMEM, "start", "msg=\"no zmq context or loop\"");
    if ((r = cairn_mkdir_p(svc->node->rundir, 0755)) < 0)
        return cairn_log_err(r, "rundir", "path=%s", svc->node->rundir);
    if ((r = service_load_keys(svc)) < 0)
        return r;
    if ((r = service_metrics_start(svc)) < 0)
        return r;
    if (svc->ops->start && (r = svc->ops->start(svc, svc->ctx)) < 0)
        return cairn_log_err(r, "start", "msg=\"%s refused to start\"", svc->ops->name);
    if ((r = service_bind_zap(svc)) < 0 || (r = service_bind(svc)) < 0 ||
        (r = service_watch_handshakes(svc)) < 0 || (r = service_metrics_listen(svc)) < 0)
        return r;
    if ((r = (int)cairn_loop_add_socket(svc->loop, svc->router, ZMQ_POLLIN,
                                        service_on_router, svc)) < 0 ||
        (svc->pub && (r = (int)cairn_loop_add_socket(svc->loop, svc->pub, ZMQ_POLLIN,
                                                     service_on_subscription, svc)) < 0) ||
        (r = (int)cairn_loop_add_fd(svc->loop, svc->sfd, ZMQ_POLLIN,
                                    s_on_signal, svc)) < 0)
        return cairn_log_err(r, "start", "msg=\"cannot watch sockets\"");
    return s_setup_watchdog(svc);
}

static void s_close(cairn_service_t *svc)
{
    /* the HTTP thread first: nothing may read the registry once the
     * service's own state goes */
    cairn_metrics_stop(svc->metrics);
    service_cache_clear(svc);
    if (svc->monitor) {
        zmq_socket_monitor(svc->router, NULL, 0);
        zmq_close(svc->monitor);
    }
    if (svc->router)
        zmq_close(svc->router);
    if (svc->pub)
        zmq_close(svc->pub);
    if (svc->zap)
        zmq_close(svc->zap);
    if (svc->zctx)
        zmq_ctx_term(svc->zctx);
    if (svc->ipc_path)
        unlink(svc->ipc_path);
    if (svc->pub_ipc_path)
        unlink(svc->pub_ipc_path);
    free(svc->ipc_path);
    free(svc->pub_ipc_path);
    if (svc->sfd >= 0)
        close(svc->sfd);
    cairn_loop_free(svc->loop);
    cairn_description_free(svc->desc);
    svc->metrics = cairn_metrics_free(svc->metrics);
}

int cairn_service_main(const cairn_service_ops_t *ops, void *ctx, int argc,
                       char **argv)
{
    cairn_service_t svc = { .ops = ops, .ctx = ctx, .sfd = -1,
                            .started_ms = cairn_now_ms() };
    int r;

    if (!ops || !ops->name)
        return 1;
    cairn_log_init(ops->name, 0);
    if ((r = s_parse_args(&svc, argc, argv)) != 0)
        return r - 1;
    if (s_start(&svc) < 0) {
        s_notify("STATUS=startup failed");
        s_close(&svc);
        return 1;
    }
    s_notify("READY=1\nSTATUS=serving on node %u", svc.node->id);
    cairn_log_info("ready", "node=%u name=%s pid=%d", svc.node->id,
                   svc.node->name, (int)getpid());
    r = ops->ready ? ops->ready(&svc, ctx) : 0;
    if (r < 0)
        cairn_log_err(r, "ready", "msg=\"%s failed after READY\"", ops->name);
    else
        r = cairn_loop_run(svc.loop);
    s_notify("STOPPING=1\nSTATUS=stopping");
    cairn_log_info("stopping", "code=%d", r);
    if (ops->stop)
        ops->stop(&svc, ctx);
    s_close(&svc);
    cairn_log_info("stopped", "pid=%d", (int)getpid());
    return r < 0 ? 1 : 0;
}
