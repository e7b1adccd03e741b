/* sampler.c - probed's probes on their timers (sampler.h).
 *
 * Design. A group per distinct period, each a repeating loop timer whose
 * userdata is the group; groups are rebuilt whole by sampler_apply (their
 * timers cancelled first), and a Ps answer that arrives after a rebuild
 * only runs groups the new configuration marked waiting. One Ps is in
 * flight at a time; ticks that need it meanwhile wait for its answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ghostd.pb-c.h"
#include "log.h"
#include "peer.h"
#include "sampler.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define S_PS_TIMEOUT_MS 1500

typedef struct s_group {
    sampler_t *s;           /* back */
    uint32_t period_ms;
    uint32_t rows;          /* bit i: probe_table row i */
    int64_t timer;          /* 0 if none */
    bool waiting;           /* ticked; runs when the Ps answer comes */
} s_group_t;

struct sampler {
    cairn_service_t *svc;
    nodecg_t cg;
    loadvec_t *local;               /* the owner's */
    sampler_fn fn;
    void *ud;
    probe_config_t cfg;             /* running */
    uint32_t configured;            /* bit per configured row */
    void *state[PROBE_MAX];         /* per row, while configured */
    sampler_stat_t stat[PROBE_MAX]; /* per row */
    s_group_t groups[PROBE_MAX];
    size_t n_groups;
    cairn_peers_t *ghostd;          /* Ps asks to the local ghostd */
    bool asking;                    /* a Ps in flight */
    uint64_t seq;                   /* the last vector's */
};

sampler_t *sampler_new(cairn_service_t *svc, const nodecg_t *cg,
                       loadvec_t *local, sampler_fn fn, void *userdata)
{
    sampler_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->svc = svc;
    s->cg = *cg;
    s->local = local;
    s->fn = fn;
    s->ud = userdata;
    s->seq = cairn_realtime_ms() * 1000;
    return s;
}

static void s_cancel(sampler_t *s)
{
    for (size_t i = 0; i < s->n_groups; i++)
        if (s->groups[i].timer)
            cairn_loop_cancel_timer(cairn_service_loop(s->svc), s->groups[i].timer);
    s->n_groups = 0;
}

static void s_drop_state(sampler_t *s, size_t row)
{
    if (s->state[row] && probe_table[row]->fini)
        probe_table[row]->fini(s->state[row]);
    free(s->state[row]);
    s->state[row] = NULL;
}

sampler_t *sampler_free(sampler_t *s)
{
    if (!s)
        return NULL;
    if (s->svc)
        s_cancel(s);
    for (size_t i = 0; i < probe_table_size; i++)
        s_drop_state(s, i);
    cairn_peers_free(s->ghostd);
    free(s);
    return NULL;
}

const sampler_stat_t *sampler_stat(const sampler_t *s, int index)
{
    return &s->stat[index];
}

/* ---- running a group ------------------------------------------------------ */

/* rows, with every configured probe that needs one of them. */
static uint32_t s_with_dependents(const sampler_t *s, uint32_t rows)
{
    for (size_t i = 0; i < probe_table_size; i++) {
        const char *needs = probe_table[i]->needs;
        int k = needs ? probe_index(needs) : -1;
        if (k >= 0 && (s->configured >> i & 1) && (rows >> k & 1))
            rows |= 1u << i;
    }
    return rows;
}

static void s_run(sampler_t *s, uint32_t rows, const probe_env_t *env)
{
    rows = s_with_dependents(s, rows) & s->configured;
    for (size_t i = 0; i < probe_table_size; i++) {
        if (!(rows >> i & 1))
            continue;
        cairn_error_t err;
        cairn_error_clear(&err);
        int r = probe_table[i]->sample(s->state[i], env, s->local, &err);
        s->stat[i].samples++;
        if (r < 0 && strcmp(s->stat[i].error, err.message) != 0)
            cairn_log_warn(r, "probe", "probe=%s msg=\"%s\"", probe_table[i]->name,
                           err.message);
        snprintf(s->stat[i].error, sizeof(s->stat[i].error), "%s",
                 r < 0 ? err.message : "");
    }
    s->local->node = cairn_service_node(s->svc)->id;
    s->local->seq = ++s->seq;
    s->local->sampled_ms = env->wall_ms;
    s->local->missing = probe_config_missing(&s->cfg);
    s->fn(s->ud);
}

static void s_env(const sampler_t *s, probe_env_t *env)
{
    *env = (probe_env_t){
        .root = "", .cg = &s->cg, .now_ns = cairn_now_ns(),
        .wall_ms = cairn_realtime_ms(), .self_tid = (long)syscall(SYS_gettid),
        .clk_tck = sysconf(_SC_CLK_TCK),
    };
}

static bool s_needs_ps(uint32_t rows)
{
    for (size_t i = 0; i < probe_table_size; i++)
        if ((rows >> i & 1) && probe_table[i]->needs_ps)
            return true;
    return false;
}

/* Runs the waiting groups with the Ps answer (or its failure). */
static void s_run_waiting(sampler_t *s, const Cairn__Ghostd__PsReply *ps,
                          const char *error)
{
    probe_env_t env;
    _cleanup_free_ probe_psjob_t *jobs = NULL;

    s_env(s, &env);
    if (ps && ps->n_jobs && !(jobs = calloc(ps->n_jobs, sizeof(*jobs))))
        error = "out of memory";
    for (size_t i = 0; jobs && i < ps->n_jobs; i++) {
        const Cairn__Ghostd__Job *j = ps->jobs[i];
        jobs[i] = (probe_psjob_t){ .gpid = j->gpid, .uid = j->uid, .state = j->state,
                                   .cpu_percent = j->cpu_percent,
                                   .rss_bytes = j->rss_bytes, .start_ms = j->start_ms,
                                   .moves = j->moves };
    }
    env.ps_ok = ps && !error;
    env.ps_error = error;
    env.ps = jobs;
    env.n_ps = jobs ? ps->n_jobs : 0;
    uint32_t rows = 0;
    for (size_t i = 0; i < s->n_groups; i++)
        if (s->groups[i].waiting) {
            rows |= s->groups[i].rows;
            s->groups[i].waiting = false;
        }
    if (rows)
        s_run(s, rows, &env);
}

static void s_on_ps(void *userdata, uint32_t node, int code, const char *message,
                    ProtobufCMessage *reply)
{
    sampler_t *s = userdata;
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    bool ok = code == CAIRN_OK && rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_PS_REPLY;

    (void)node;
    s->asking = false;
    s_run_waiting(s, ok ? rep->ps_reply : NULL,
                  ok ? NULL : code != CAIRN_OK && message ? message : "not a ps reply");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* Asks the local ghostd for its jobs; a failure to ask runs the waiting
 * groups at once with the reason. */
static void s_ask_ps(sampler_t *s)
{
    const cairn_description_t *d = cairn_service_description(s->svc);
    const cairn_node_desc_t *self = cairn_service_node(s->svc);
    _cleanup_free_ char *ep = NULL;

    const char *cannot = NULL;
    int r;

    if (s->asking)
        return;
    if (!cairn_description_node_runs(d, self, "ghostd"))
        cannot = "this node's appliance runs no ghostd";
    else if (!s->ghostd &&
             !(s->ghostd = cairn_peers_new(s->svc, "ghostd", &cairn__ghostd__reply__descriptor)))
        cannot = "out of memory";
    else if (!(ep = cairn_description_tcp_endpoint(d, self, "ghostd", false)))
        cannot = "no ghostd endpoint in the description";
    if (cannot) {
        s_run_waiting(s, NULL, cannot);
        return;
    }
    Cairn__Ghostd__PsRequest ps = CAIRN__GHOSTD__PS_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    ps.local_only = true;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
    req.ps = &ps;
    r = cairn_peers_call(s->ghostd, self->id, ep, &req.base, S_PS_TIMEOUT_MS, s_on_ps, s);
    if (r < 0)
        s_run_waiting(s, NULL, strerror(-r));
    else
        s->asking = true;
}

static int s_on_tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_group_t *g = userdata;
    sampler_t *s = g->s;

    (void)loop, (void)id;
    if (s_needs_ps(g->rows)) {
        g->waiting = true;
        s_ask_ps(s);
        return 0;
    }
    probe_env_t env;
    s_env(s, &env);
    s_run(s, g->rows, &env);
    return 0;
}

/* ---- configuration --------------------------------------------------------- */

static s_group_t *s_group_of(sampler_t *s, uint32_t period)
{
    for (size_t i = 0; i < s->n_groups; i++)
        if (s->groups[i].period_ms == period)
            return &s->groups[i];
    s_group_t *g = &s->groups[s->n_groups++];
    *g = (s_group_t){ .s = s, .period_ms = period };
    return g;
}

int sampler_apply(sampler_t *s, const probe_config_t *cfg)
{
    uint32_t configured = 0;

    s_cancel(s);
    for (size_t i = 0; i < cfg->n_probes; i++)
        configured |= 1u << cfg->probes[i].index;
    for (size_t i = 0; i < probe_table_size; i++) {
        bool now = configured >> i & 1, before = s->configured >> i & 1;
        if (before && !now)
            s_drop_state(s, i);
        s->stat[i] = (sampler_stat_t){ 0 };   /* "since start or last reload" */
        if (now && !s->state[i] &&
            !(s->state[i] = calloc(1, probe_table[i]->state_size ? probe_table[i]->state_size : 1)))
            return -ENOMEM;
    }
    s->configured = configured;
    s->cfg = *cfg;
    for (size_t i = 0; i < cfg->n_probes; i++)
        s_group_of(s, cfg->probes[i].period_ms)->rows |= 1u << cfg->probes[i].index;
    for (size_t i = 0; i < s->n_groups; i++) {
        s_group_t *g = &s->groups[i];
        /* the first sample at once, so a node has a vector from its start */
        int64_t t = cairn_loop_add_timer(cairn_service_loop(s->svc), 1, g->period_ms,
                                         s_on_tick, g);
        if (t < 0)
            return (int)t;
        g->timer = t;
    }
    return 0;
}
