/* cmd-cluster.c - `cairn cluster up|down|status`: a cluster on one machine.
 *
 * Design. Argument parsing only; the harness itself is lib/harness
 * (harness/harness.h), which returns the JSON this prints. The cluster is
 * named by --name, else the global --cluster, else $CAIRN_CLUSTER, else
 * "cairn"; the run base is the global --run-base, else the run base rule
 * (cairn_run_base: $CAIRN_RUN_BASE, /run/cairn as root,
 * ${XDG_RUNTIME_DIR:-/tmp}/cairn otherwise). Every verb answers one JSON
 * object (docs/local-cluster.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "harness/harness.h"

const cairn_option_t cli_cluster_up_options[] = {
    { "--nodes", "N", "number of nodes, 1..253 (default 3)" },
    { "--cpus", "C", "CPU quota of each node, e.g. 0.5 (default 0.5)" },
    { "--mem", "SIZE", "memory limit of each node, bytes or K/M/G (default 512M)" },
    { "--name", "NAME", "cluster name, [a-z0-9]{1,8} (else --cluster, "
      "$CAIRN_CLUSTER, \"cairn\")" },
    { "--loopback", NULL, "loopback mode even as root: no namespaces, no cgroups" },
    { "--start-timeout", "MS", "deadline for every daemon's socket (default 30000)" },
    { "--security", "curve|none", "CURVE between nodes with a keypair per "
      "node (default), or no security at all" },
    { NULL, NULL, NULL },
};
enum { O_NODES, O_CPUS, O_MEM, O_NAME, O_LOOPBACK, O_START_TIMEOUT,
       O_SECURITY };

const cairn_option_t cli_cluster_name_options[] = {
    { "--name", "NAME", "cluster name (else --cluster, $CAIRN_CLUSTER, \"cairn\")" },
    { NULL, NULL, NULL },
};

#define S_DEFAULT_NODES 3

/* --name, else the global --cluster, else $CAIRN_CLUSTER, else NULL. */
static const char *s_name(const cli_ctx *ctx, const char *opt)
{
    const char *env = getenv("CAIRN_CLUSTER");
    if (opt)
        return opt;
    if (ctx->cluster)
        return ctx->cluster;
    return env && *env ? env : NULL;
}

static int s_up_opts(const cairn_args_t *a, harness_opts_t *o,
                     cairn_error_t *err)
{
    long v;
    int r = 0;
    o->nodes = S_DEFAULT_NODES;
    if (a->values[O_NODES]) {
        r = cairn_parse_long("--nodes", a->values[O_NODES], 1,
                             HARNESS_MAX_NODES, &v, err);
        o->nodes = (unsigned) v;
    }
    if (r == 0 && a->values[O_CPUS])
        r = harness_parse_cpus("--cpus", a->values[O_CPUS], &o->cpus, err);
    if (r == 0 && a->values[O_MEM])
        r = harness_parse_size("--mem", a->values[O_MEM], &o->mem_bytes, err);
    if (r == 0 && a->values[O_START_TIMEOUT]) {
        r = cairn_parse_long("--start-timeout", a->values[O_START_TIMEOUT], 100, 600000, &v, err);
        o->start_timeout_ms = (int) v;
    }
    o->security = a->values[O_SECURITY];
    if (r == 0 && o->security && strcmp(o->security, "curve") != 0 &&
        strcmp(o->security, "none") != 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--security '%s': "
                            "curve or none", o->security);
    o->loopback = a->values[O_LOOPBACK] != NULL;
    /* what was asked must match a cluster that already runs */
    o->nodes_given = a->values[O_NODES] != NULL;
    o->cpus_given = a->values[O_CPUS] != NULL;
    o->mem_given = a->values[O_MEM] != NULL;
    o->security_given = a->values[O_SECURITY] != NULL;
    return r;
}

int cli_cmd_cluster_up(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err)
{
    harness_opts_t o;
    cairn_args_t a;
    int r = cairn_args_parse("cluster up", cli_cluster_up_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    harness_opts_init(&o);
    r = s_up_opts(&a, &o, err);
    if (r < 0)
        return r;
    o.name = s_name(ctx, a.values[O_NAME]);
    o.run_base = ctx->run_base;
    return harness_up(&o, ret_result, err);
}

int cli_cmd_cluster_down(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                         cairn_error_t *err)
{
    cairn_args_t a;
    int r = cairn_args_parse("cluster down", cli_cluster_name_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    return harness_down(s_name(ctx, a.values[0]), ctx->run_base, ret_result,
                        err);
}

int cli_cmd_cluster_status(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                           cairn_error_t *err)
{
    cairn_args_t a;
    int r = cairn_args_parse("cluster status", cli_cluster_name_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    return harness_status(s_name(ctx, a.values[0]), ctx->run_base, ret_result,
                          err);
}
