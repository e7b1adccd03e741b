/* cmd-load.c - `cairn load`: a node's load as its probed sees it.
 *
 * Design. One Request{load} to the probed of the node the global --node
 * names (else the first node of this host running probed), printed as
 * JSON (docs/cli.md, "cairn load"): the node's own vector with its jobs,
 * the window of peers' vectors (newest first, each with its age here and
 * the node that gossiped it), the probes with their periods, samples and
 * last error, the gossip settings and counters, and config_error -- why
 * the last reload's probe configuration was refused, null when none was.
 * Field names are probed.proto's.
 */
#include <errno.h>

#include "cli.h"
#include "output.h"
#include "probed.pb-c.h"
#include "target.h"

static json_t *s_missing_json(const Cairn__Probed__LoadVector *v)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < v->n_missing; i++)
        json_array_append_new(a, json_string(v->missing[i]));
    return a;
}

static json_t *s_jobs_json(const Cairn__Probed__LoadVector *v)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < v->n_job; i++) {
        const Cairn__Probed__JobLoad *j = v->job[i];
        json_array_append_new(a, json_pack(
            "{s:s, s:I, s:o, s:I, s:I, s:I, s:I}", "gpid", j->gpid ? j->gpid : "",
            "uid", (json_int_t)j->uid, "cpu", cli_json_real(j->cpu, 3),
            "rss_bytes", (json_int_t)j->rss_bytes,
            "rss_growth_bytes_s", (json_int_t)j->rss_growth_bytes_s,
            "migration_cost_ms", (json_int_t)j->migration_cost_ms,
            "age_ms", (json_int_t)j->age_ms));
    }
    return a;
}

json_t *cli_load_vector_json(const Cairn__Probed__LoadVector *v, bool with_jobs)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:o}",
                          "node", (json_int_t)v->node, "seq", (json_int_t)v->seq,
                          "sampled_ms", (json_int_t)v->sampled_ms,
                          "cpus", cli_json_real(v->cpus, 3),
                          "cpu_load", cli_json_real(v->cpu_load, 3),
                          "runnable", (json_int_t)v->runnable,
                          "mem_limit_bytes", (json_int_t)v->mem_limit_bytes,
                          "mem_used_bytes", (json_int_t)v->mem_used_bytes,
                          "mem_free_bytes", (json_int_t)v->mem_free_bytes,
                          "jobs", (json_int_t)v->jobs, "missing", s_missing_json(v));
    if (o && with_jobs && json_object_set_new(o, "job", s_jobs_json(v)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *s_known_json(const Cairn__Probed__LoadReply *lr)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < lr->n_known; i++) {
        const Cairn__Probed__KnownVector *k = lr->known[i];
        json_t *v = k->vector ? cli_load_vector_json(k->vector, false) : json_object();
        if (!v || json_object_set_new(v, "age_ms", json_integer((json_int_t)k->age_ms)) < 0 ||
            json_object_set_new(v, "from", json_integer(k->from)) < 0 ||
            json_array_append_new(a, v) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *s_probes_json(const Cairn__Probed__LoadReply *lr)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < lr->n_probes; i++) {
        const Cairn__Probed__ProbeConfig *p = lr->probes[i];
        json_array_append_new(a, json_pack(
            "{s:s, s:I, s:I, s:o}", "name", p->name ? p->name : "",
            "period_ms", (json_int_t)p->period_ms, "samples", (json_int_t)p->samples,
            "error", p->error && *p->error ? json_string(p->error) : json_null()));
    }
    return a;
}

static json_t *s_load_json(const Cairn__Probed__LoadReply *lr)
{
    return json_pack("{s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:o}",
                     "local", lr->local ? cli_load_vector_json(lr->local, true) : json_null(),
                     "known", s_known_json(lr), "probes", s_probes_json(lr),
                     "gossip", "period_ms", (json_int_t)lr->gossip_period_ms,
                     "fanout", (json_int_t)lr->gossip_fanout,
                     "window", (json_int_t)lr->window,
                     "sent", (json_int_t)lr->gossip_sent,
                     "received", (json_int_t)lr->gossip_received,
                     "config_error", lr->config_error && *lr->config_error
                         ? json_string(lr->config_error) : json_null());
}

int cli_cmd_load(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err)
{
    Cairn__Probed__LoadRequest lq = CAIRN__PROBED__LOAD_REQUEST__INIT;
    Cairn__Probed__Request req = CAIRN__PROBED__REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    cli_target_t t = { 0 };
    cairn_args_t a;
    int r = cairn_args_parse("load", cli_no_options, argc, argv, 0, &a, err);

    if (r < 0)
        return r;
    req.msg_case = CAIRN__PROBED__REQUEST__MSG_LOAD;
    req.load = &lq;
    r = cli_target_resolve(ctx, "probed", &t, err);
    if (r == 0)
        r = cli_target_call(ctx, &t, "probed", ctx->timeout_ms, &req.base,
                            &cairn__probed__reply__descriptor,
                            CAIRN__PROBED__REPLY__MSG_LOAD_REPLY, "load", &reply, &by, err);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    json_t *result = s_load_json(((Cairn__Probed__Reply *)reply)->load_reply);
    protobuf_c_message_free_unpacked(reply, NULL);
    if (!result || json_object_set(result, "answered_by", by) < 0) {
        json_decref(result);
        return cli_oom(err);
    }
    *ret_result = result;
    return 0;
}
