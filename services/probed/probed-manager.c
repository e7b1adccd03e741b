/* probed-manager.c - probed's lifecycle and handler table.
 *
 * start reads the configuration (an unknown probe refuses the start with
 * the reason: exit 1), finds the node's cgroup and builds the window, the
 * sampler and the gossip; ready starts their timers. A reload with a
 * configuration probed refuses keeps the running one and the whole
 * previous description (the skeleton's rule), and the reason stays in
 * LoadReply.config_error until a reload is taken. Request{load} is a
 * read anyone may make; Request{gossip} comes from member nodes' probeds.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "probed.h"
#include "util/clock.h"

/* ---- publishing ------------------------------------------------------------ */

/* The node's newest sample as gauges (docs/metrics.md): what a
 * Prometheus server graphs without asking probed's protocol. */
static void s_gauges(probed_t *pd)
{
    static const struct { const char *name, *help; } g[] = {
        { "cairn_node_cpus", "The node's capacity in CPUs (its cgroup's quota)." },
        { "cairn_node_cpu_load", "CPUs busy on the node over the last period." },
        { "cairn_node_runnable", "Tasks runnable on the node (run-queue length)." },
        { "cairn_node_memory_limit_bytes", "The node's memory (its cgroup's limit)." },
        { "cairn_node_memory_used_bytes", "Of it, used." },
        { "cairn_node_jobs", "Jobs running on the node." },
    };
    const loadvec_t *v = &pd->local;
    const double val[] = { v->cpus, v->cpu_load, v->runnable, (double)v->mem_limit_bytes,
                           (double)v->mem_used_bytes, v->jobs };
    cairn_metrics_t *reg = cairn_service_metrics(pd->svc);

    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
        cairn_metric_set(cairn_metrics_gauge(reg, g[i].name, g[i].help, NULL), val[i]);
}

static void s_on_vector(void *userdata)
{
    probed_t *pd = userdata;
    Cairn__Probed__LoadVector m = CAIRN__PROBED__LOAD_VECTOR__INIT;
    loadvec_arena_t arena = { 0 };

    s_gauges(pd);
    int r = loadvec_to_pb(&pd->local, true, &m, loadvec_arena_alloc, &arena);
    if (r == 0)
        r = cairn_service_publish(pd->svc, "load", 1, &m.base);
    loadvec_arena_clear(&arena);
    if (r < 0 && r != -ENOTCONN)
        cairn_log_warn(r, "publish", "topic=load, ignoring");
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void s_log_config(const probe_config_t *cfg, const char *event)
{
    char list[256] = "";
    size_t off = 0;

    for (size_t i = 0; i < cfg->n_probes && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s:%u", i ? "," : "",
                                probe_table[cfg->probes[i].index]->name,
                                cfg->probes[i].period_ms);
    cairn_log_info(event, "probes=%s gossip_period_ms=%u fanout=%u window=%u",
                   *list ? list : "none", cfg->gossip_period_ms, cfg->gossip_fanout,
                   cfg->window);
}

static int s_start(cairn_service_t *svc, void *ctx)
{
    probed_t *pd = ctx;
    cairn_error_t err;
    char where[PATH_MAX * 3];

    pd->svc = svc;
    cairn_error_clear(&err);
    int r = probe_config_from(cairn_service_description(svc), &pd->cfg, &err);
    if (r < 0)
        return cairn_log_err(r, "config", "msg=\"%s\"", err.message);
    nodecg_find("", &pd->cg);
    cairn_log_info("node-cgroup", "%s", nodecg_describe(&pd->cg, where, sizeof(where)));
    pd->window = window_new(pd->cfg.window);
    pd->sampler = sampler_new(svc, &pd->cg, &pd->local, s_on_vector, pd);
    pd->gossip = gossip_new(svc, pd->window, &pd->local);
    if (!pd->window || !pd->sampler || !pd->gossip)
        return -ENOMEM;
    s_log_config(&pd->cfg, "probes");
    return 0;
}

static int s_ready(cairn_service_t *svc, void *ctx)
{
    probed_t *pd = ctx;
    int r = sampler_apply(pd->sampler, &pd->cfg);

    (void)svc;
    return r < 0 ? r : gossip_start(pd->gossip, pd->cfg.gossip_period_ms,
                                    pd->cfg.gossip_fanout);
}

static int s_reload(cairn_service_t *svc, void *ctx, const cairn_description_t *newd,
                    cairn_error_t *err)
{
    probed_t *pd = ctx;
    probe_config_t cfg;

    (void)svc;
    int r = probe_config_from(newd, &cfg, err);
    if (r < 0) {
        snprintf(pd->config_error, sizeof(pd->config_error), "%s", err->message);
        return r;
    }
    pd->config_error[0] = '\0';
    if ((r = sampler_apply(pd->sampler, &cfg)) < 0 ||
        (r = gossip_set(pd->gossip, cfg.gossip_period_ms, cfg.gossip_fanout)) < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot apply the new probes: %s",
                               strerror(-r));
    window_set_cap(pd->window, cfg.window);
    pd->cfg = cfg;
    s_log_config(&cfg, "probes");
    return 0;
}

void probed_done(probed_t *pd)
{
    pd->gossip = gossip_free(pd->gossip);
    pd->sampler = sampler_free(pd->sampler);
    pd->window = window_free(pd->window);
    loadvec_clear(&pd->local);
}

/* ---- Request{load} ------------------------------------------------------------ */

static void *s_alloc(void *req, size_t size)
{
    return cairn_request_alloc(req, size);
}

static int s_known(probed_t *pd, cairn_request_t *req, Cairn__Probed__LoadReply *lr)
{
    const window_entry_t *list[WINDOW_MAX];
    uint64_t now = cairn_now_ms();

    gossip_age(pd->gossip);
    size_t n = window_list(pd->window, list);
    lr->known = cairn_request_alloc(req, (n ? n : 1) * sizeof(*lr->known));
    if (!lr->known)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Cairn__Probed__KnownVector *k = cairn_request_alloc(req, sizeof(*k));
        Cairn__Probed__LoadVector *v = cairn_request_alloc(req, sizeof(*v));
        if (!k || !v)
            return -ENOMEM;
        cairn__probed__known_vector__init(k);
        cairn__probed__load_vector__init(v);
        if (loadvec_to_pb(&list[i]->v, false, v, s_alloc, req) < 0)
            return -ENOMEM;
        k->vector = v;
        k->age_ms = now > list[i]->born_ms ? now - list[i]->born_ms : 0;
        k->from = list[i]->from;
        lr->known[lr->n_known++] = k;
    }
    return 0;
}

static int s_probes(probed_t *pd, cairn_request_t *req, Cairn__Probed__LoadReply *lr)
{
    size_t n = pd->cfg.n_probes;

    lr->probes = cairn_request_alloc(req, (n ? n : 1) * sizeof(*lr->probes));
    if (!lr->probes)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int k = pd->cfg.probes[i].index;
        const sampler_stat_t *st = sampler_stat(pd->sampler, k);
        Cairn__Probed__ProbeConfig *pc = cairn_request_alloc(req, sizeof(*pc));
        if (!pc)
            return -ENOMEM;
        cairn__probed__probe_config__init(pc);
        pc->name = (char *)probe_table[k]->name;
        pc->period_ms = pd->cfg.probes[i].period_ms;
        pc->samples = st->samples;
        pc->error = (char *)st->error;
        lr->probes[lr->n_probes++] = pc;
    }
    return 0;
}

static int s_handle_load(void *ctx, cairn_request_t *req)
{
    probed_t *pd = ctx;
    Cairn__Probed__Reply *rep = (Cairn__Probed__Reply *)cairn_request_reply(req);
    Cairn__Probed__LoadReply *lr = cairn_request_alloc(req, sizeof(*lr));
    Cairn__Probed__LoadVector *local = cairn_request_alloc(req, sizeof(*local));

    if (!lr || !local)
        return -ENOMEM;
    cairn__probed__load_reply__init(lr);
    cairn__probed__load_vector__init(local);
    if (loadvec_to_pb(&pd->local, true, local, s_alloc, req) < 0 ||
        s_known(pd, req, lr) < 0 || s_probes(pd, req, lr) < 0)
        return -ENOMEM;
    lr->local = local;
    lr->gossip_period_ms = pd->cfg.gossip_period_ms;
    lr->gossip_fanout = pd->cfg.gossip_fanout;
    lr->window = pd->cfg.window;
    lr->gossip_sent = gossip_sent(pd->gossip);
    lr->gossip_received = gossip_received(pd->gossip);
    lr->config_error = pd->config_error;
    rep->msg_case = CAIRN__PROBED__REPLY__MSG_LOAD_REPLY;
    rep->load_reply = lr;
    return CAIRN_REPLY_NOW;
}

/* SIGTERM: the gossip's and the sampler's peer sockets closed before the
 * skeleton terminates the ZeroMQ context, which waits for every socket of
 * it (left to main, after cairn_service_main, the daemon never exited:
 * systemd killed it after TimeoutStopSec, its sockets left behind). */
static void s_stop(cairn_service_t *svc, void *ctx)
{
    (void)svc;
    probed_done(ctx);
}

static int s_handle_gossip(void *ctx, cairn_request_t *req)
{
    return gossip_handle(((probed_t *)ctx)->gossip, req);
}

static const cairn_handler_t s_handlers[] = {
    { CAIRN__PROBED__REQUEST__MSG_LOAD, "load", s_handle_load, CAIRN_ACCESS_ANYONE },
    /* between probeds of member nodes (admin) */
    { CAIRN__PROBED__REQUEST__MSG_GOSSIP, "gossip", s_handle_gossip },
};

const cairn_service_ops_t probed_ops = {
    .name = "probed",
    .request_desc = &cairn__probed__request__descriptor,
    .reply_desc = &cairn__probed__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .reload = s_reload,
    .stop = s_stop,
};
