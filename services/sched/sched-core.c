/* sched-core.c - the core of every policy daemon: the node's lock, the
 * handlers of service "sched", the decision log (sched-private.h).
 *
 * Exactly one policy serves a node. Before it binds, the core takes
 * flock(<rundir>/sched.lock) and writes "<policy> <pid>" into it; a second
 * policy started on the node finds the lock held, says which policy and
 * pid hold it, and exits 1 without touching the first one's sockets. The
 * kernel drops the lock when the holder dies, however it dies, so a crash
 * never leaves the node locked.
 *
 * Requests: place (anyone: ghostd asks where a job goes; the policy only
 * answers), show and log (anyone), swap (admin; swap.c). Each placement
 * is a Decision, logged and published like the moves of moves.c.
 *
 * Parameters come from the description's <scheduler> (bounds checked by
 * the loader) at start and again on SIGHUP; the gossip period stays
 * probed's, as its LoadReply says.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "sched-private.h"
#include "sched.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

/* ---- the lock ---------------------------------------------------------- */

/* Takes <rundir>/sched.lock or says who holds it (stderr and the log). */
static int s_lock(sched_t *s)
{
    const cairn_node_desc_t *node = cairn_service_node(s->svc);
    _cleanup_free_ char *path = NULL;
    char holder[64] = "", line[64];
    int fd;

    if (asprintf(&path, "%s/sched.lock", node->rundir) < 0)
        return -ENOMEM;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn_log_err(-errno, "lock", "path=%s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
        char pol[16] = "?";
        int pid = 0;
        close(fd);
        if (e != EWOULDBLOCK)
            return cairn_log_err(-e, "lock", "path=%s", path);
        holder[n > 0 ? n : 0] = '\0';
        if (sscanf(holder, "%15s %d", pol, &pid) != 2)
            pid = 0;
        fprintf(stderr, "sched-%s: sched-%s already serves node %u (pid %d)\n",
                s->policy->name, pol, node->id, pid);
        return cairn_log_err(-EBUSY, "lock", "path=%s holder=sched-%s pid=%d "
                             "msg=\"another policy serves this node: stop it "
                             "first (cairn sched swap does)\"", path, pol, pid);
    }
    int len = snprintf(line, sizeof(line), "%s %d\n", s->policy->name, (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)len, 0) != len)
        cairn_log_warn(-errno, "lock", "path=%s msg=\"cannot write who holds "
                       "it, ignoring\"", path);
    s->lock_fd = fd;
    return 0;
}

/* ---- decisions --------------------------------------------------------- */

static void s_publish(sched_t *s, const sched_entry_t *e)
{
    Cairn__Sched__Decision d;
    int r;

    sched_entry_proto(e, &d);
    r = cairn_service_publish(s->svc, "sched", 0, &d.base);
    if (r < 0 && r != -ENOTCONN)
        cairn_log_warn(r, "publish", "seq=%llu", (unsigned long long)e->seq);
}

int sched_decide(sched_t *s, const sched_entry_t *e, const sched_entry_t **ret)
{
    sched_entry_t n = *e;
    const sched_entry_t *stored = NULL;
    int r;

    n.node = cairn_service_node(s->svc)->id;
    snprintf(n.policy, sizeof(n.policy), "%s", s->policy->name);
    r = sched_log_add(s->log, &n, &stored);
    if (r < 0)
        cairn_log_warn(r, "decision-log", "seq=%llu msg=\"not written, kept "
                       "in memory\"", (unsigned long long)stored->seq);
    cairn_log_info("decision", "seq=%llu kind=%s gpid=%s from=%u to=%u "
                   "reason=\"%s\"", (unsigned long long)stored->seq,
                   stored->kind, stored->gpid, stored->from, stored->to,
                   stored->reason);
    s_publish(s, stored);
    if (ret)
        *ret = stored;
    return 0;
}

void sched_decided(sched_t *s, uint64_t seq, const char *outcome)
{
    const sched_entry_t *e = NULL;
    int r = sched_log_set_outcome(s->log, seq, outcome, &e);

    if (r < 0 && !e) {
        cairn_log_warn(r, "decision-log", "seq=%llu msg=\"no longer kept\"",
                       (unsigned long long)seq);
        return;
    }
    if (r < 0)
        cairn_log_warn(r, "decision-log", "seq=%llu msg=\"outcome not "
                       "written, kept in memory\"", (unsigned long long)seq);
    cairn_log_info("outcome", "seq=%llu gpid=%s outcome=\"%s\"",
                   (unsigned long long)seq, e->gpid, outcome);
    s_publish(s, e);
}

/* ---- handlers ---------------------------------------------------------- */

static int s_handle_place(void *ctx, cairn_request_t *req)
{
    sched_t *s = ctx;
    const Cairn__Sched__Request *rq = (const void *)cairn_request_body(req);
    const Cairn__Sched__PlaceRequest *pr = rq->place;
    Cairn__Sched__Reply *reply = (void *)cairn_request_reply(req);
    Cairn__Sched__PlaceReply *out = cairn_request_alloc(req, sizeof(*out));
    sched_node_t peers[CAIRN_VIEW_MAX_NODES];
    uint32_t members[CAIRN_VIEW_MAX_NODES];
    sched_input_t in;
    sched_verdict_t v;
    const sched_entry_t *e = NULL;

    if (!out)
        return -ENOMEM;
    sched_follow_input(s, &in, peers, members);
    in.memory_hint = pr->memory_hint_bytes;
    s->policy->place(&in, &v);
    sched_entry_t d = { .from = in.self.node, .to = v.node };
    snprintf(d.kind, sizeof(d.kind), "place");
    snprintf(d.outcome, sizeof(d.outcome), "ok");
    snprintf(d.reason, sizeof(d.reason), "%s", v.reason);
    sched_decide(s, &d, &e);
    /* A new job wants a CPU (and its memory) there until a vector says. */
    sched_follow_commit(s, v.node, 1.0,
                        (int64_t)(pr->memory_hint_bytes ? pr->memory_hint_bytes
                                                        : s->params.job_mem_bytes));
    s->last_placed = v.node;
    s->placements++;
    cairn__sched__place_reply__init(out);
    out->node = v.node;
    out->policy = (char *)s->policy->name;
    out->reason = cairn_request_strdup(req, v.reason);
    out->decision = e->seq;
    if (!out->reason)
        return -ENOMEM;
    reply->msg_case = CAIRN__SCHED__REPLY__MSG_PLACE_REPLY;
    reply->place_reply = out;
    return CAIRN_REPLY_NOW;
}

static char *s_params_json(const sched_t *s)
{
    const sched_params_t *p = &s->params;
    /* ghostd's, from the same description: how long a run waits for us */
    uint32_t hold_ms = cairn_description_sched(cairn_service_description(s->svc))->placement_hold_ms;
    json_t *o = json_pack("{s:I, s:I, s:f, s:i, s:i, s:f, s:f, s:I, s:I, s:b, s:b}",
                          "gossip_period_ms", (json_int_t)p->gossip_period_ms,
                          "balance_period_ms", (json_int_t)sched_balance_period(p),
                          "margin_cpu", p->margin_cpu,
                          "hold_periods", (int)p->hold_periods,
                          "stale_periods", (int)p->stale_periods,
                          "high_water", p->high_water,
                          "mem_margin", p->mem_margin,
                          "job_mem_bytes", (json_int_t)p->job_mem_bytes,
                          "placement_hold_ms", (json_int_t)hold_ms,
                          "balances", s->policy->balance != NULL,
                          "ushers", s->policy->ushers);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return txt;
}

int sched_fill_show(sched_t *s, cairn_request_t *req, Cairn__Sched__ShowReply *out)
{
    _cleanup_free_ char *params = s_params_json(s);
    _cleanup_free_ char *known = sched_follow_known_json(s);

    cairn__sched__show_reply__init(out);
    out->policy = (char *)s->policy->name;
    out->pid = (uint32_t)getpid();
    out->started_ms = s->started_ms;
    out->params = params ? cairn_request_strdup(req, params) : NULL;
    out->known = known ? cairn_request_strdup(req, known) : NULL;
    out->placements = s->placements;
    out->migrations = s->migrations;
    out->migrations_failed = s->migrations_failed;
    out->usherings = s->usherings;
    return out->params && out->known ? 0 : -ENOMEM;
}

static int s_handle_show(void *ctx, cairn_request_t *req)
{
    Cairn__Sched__Reply *reply = (void *)cairn_request_reply(req);
    Cairn__Sched__ShowReply *out = cairn_request_alloc(req, sizeof(*out));

    if (!out || sched_fill_show(ctx, req, out) < 0)
        return -ENOMEM;
    reply->msg_case = CAIRN__SCHED__REPLY__MSG_SHOW_REPLY;
    reply->show_reply = out;
    return CAIRN_REPLY_NOW;
}

static int s_handle_log(void *ctx, cairn_request_t *req)
{
    sched_t *s = ctx;
    const Cairn__Sched__Request *rq = (const void *)cairn_request_body(req);
    Cairn__Sched__Reply *reply = (void *)cairn_request_reply(req);
    Cairn__Sched__LogReply *out = cairn_request_alloc(req, sizeof(*out));
    size_t max = rq->log->max ? rq->log->max : 100;
    const sched_entry_t **found;

    if (max > SCHED_LOG_KEEP)
        max = SCHED_LOG_KEEP;
    found = cairn_request_alloc(req, max * sizeof(*found));
    if (!out || !found)
        return -ENOMEM;
    cairn__sched__log_reply__init(out);
    out->n_decisions = sched_log_since(s->log, rq->log->after, max, found);
    out->decisions = cairn_request_alloc(req, (out->n_decisions + 1) * sizeof(void *));
    Cairn__Sched__Decision *ds =
        cairn_request_alloc(req, (out->n_decisions + 1) * sizeof(*ds));
    if (!out->decisions || !ds)
        return -ENOMEM;
    for (size_t i = 0; i < out->n_decisions; i++) {
        sched_entry_proto(found[i], &ds[i]);
        out->decisions[i] = &ds[i];
    }
    reply->msg_case = CAIRN__SCHED__REPLY__MSG_LOG_REPLY;
    reply->log_reply = out;
    return CAIRN_REPLY_NOW;
}

static const cairn_handler_t s_handlers[] = {
    { CAIRN__SCHED__REQUEST__MSG_PLACE, "place", s_handle_place, CAIRN_ACCESS_ANYONE },
    { CAIRN__SCHED__REQUEST__MSG_SHOW, "show", s_handle_show, CAIRN_ACCESS_ANYONE },
    { CAIRN__SCHED__REQUEST__MSG_LOG, "log", s_handle_log, CAIRN_ACCESS_ANYONE },
    { CAIRN__SCHED__REQUEST__MSG_SWAP, "swap", sched_handle_swap },
};

/* ---- parameters -------------------------------------------------------- */

/* p's description parameters from d; the rest (the gossip period probed
 * reports, the fixed ones) untouched. */
static void s_params_from(const cairn_description_t *d, sched_params_t *p)
{
    const cairn_sched_desc_t *sd = cairn_description_sched(d);

    p->balance_period_ms = sd->balance_period_ms;
    p->margin_cpu = sd->stability_margin_pct / 100.0;
    p->hold_periods = sd->hold_periods;
    p->high_water = sd->high_water_pct / 100.0;
    p->mem_margin = sd->mem_margin_pct / 100.0;
}

static void s_log_params(const char *what, const sched_params_t *p)
{
    cairn_log_info(what, "balance-period-ms=%llu margin-cpu=%.2f hold-periods=%u "
                   "high-water=%.2f mem-margin=%.2f",
                   (unsigned long long)sched_balance_period(p), p->margin_cpu,
                   p->hold_periods, p->high_water, p->mem_margin);
}

/* SIGHUP: the loader has checked the bounds, so a valid description is
 * always taken; a running move keeps going, the next check uses the new
 * figures. */
static int s_reload(cairn_service_t *svc, void *ctx, const cairn_description_t *newd,
                    cairn_error_t *err)
{
    sched_t *s = ctx;

    (void)svc;
    (void)err;
    s_params_from(newd, &s->params);
    if (s->next_balance > cairn_now_ms() + sched_balance_period(&s->params))
        s->next_balance = cairn_now_ms() + sched_balance_period(&s->params);
    s_log_params("reload", &s->params);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static int s_start(cairn_service_t *svc, void *ctx)
{
    sched_t *s = ctx;
    const cairn_node_desc_t *node = cairn_service_node(svc);
    _cleanup_free_ char *path = NULL;
    int r;

    s->svc = svc;
    if ((r = s_lock(s)) < 0)
        return r;
    s_params_from(cairn_service_description(svc), &s->params);
    s_log_params("params", &s->params);
    if (asprintf(&path, "%s/sched-decisions.jsonl", node->rundir) < 0)
        return -ENOMEM;
    if ((r = sched_log_open(path, &s->log)) < 0)
        return cairn_log_err(r, "decision-log", "path=%s", path);
    if (sched_log_skipped(s->log))
        cairn_log_warn(0, "decision-log", "path=%s skipped=%zu msg=\"lines "
                       "that are no decision, ignoring\"", path,
                       sched_log_skipped(s->log));
    s->last_placed = sched_log_last_placed(s->log);
    cairn_log_info("policy", "policy=%s lock=%s/sched.lock log=%s last-placed=%u",
                   s->policy->name, node->rundir, path, s->last_placed);
    return 0;
}

static int s_ready(cairn_service_t *svc, void *ctx)
{
    return sched_follow_start(ctx);
}

static void s_stop(cairn_service_t *svc, void *ctx)
{
    sched_t *s = ctx;

    if (s->move.busy)
        cairn_log_info("stopping", "msg=\"migration of %s to node %u still "
                       "running: ghostd finishes it\"", s->move.gpid, s->move.to);
    sched_follow_stop(s);
}

static const cairn_service_ops_t s_ops = {
    .name = "sched",
    .request_desc = &cairn__sched__request__descriptor,
    .reply_desc = &cairn__sched__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .reload = s_reload,
    .stop = s_stop,
};

int sched_main(const sched_policy_t *policy, int argc, char **argv)
{
    sched_t s = { .policy = policy, .lock_fd = -1,
                  .started_ms = cairn_realtime_ms() };
    int r;

    sched_params_default(&s.params);
    r = cairn_service_main(&s_ops, &s, argc, argv);
    s.log = sched_log_free(s.log);
    if (s.lock_fd >= 0)
        close(s.lock_fd);
    return r;
}
