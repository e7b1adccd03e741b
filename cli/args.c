/* args.c - command-line options of `cairn`: the global ones and each
 * command's own, parsed from the same kind of table.
 *
 * Design. Options are long only (`--name VALUE` or `--name=VALUE`; `-h` is
 * the one short alias, of --help). Global options may stand anywhere on the
 * line, before or after the command words, so they are pulled out of argv
 * first (cli_parse_globals) and what is left -- command words, the
 * command's options and positionals -- goes to the command, which parses it
 * against its own table with cairn_args_parse (lib/util/options.h, the
 * parser every program of the tree shares). "--" ends option processing. A
 * value is missing when the option is last or is followed by another
 * "--option"; every failure is a usage error naming the bad argument, and
 * nothing here prints.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "cli.h"

const cairn_option_t cli_global_options[] = {
    { "--config", "FILE", "cluster description to use (else CAIRN_CONFIG, "
      "<run-base>/<cluster>/cluster.xml, /etc/cairn/cluster.xml)" },
    { "--cluster", "NAME", "cluster name for the default description path "
      "(else CAIRN_CLUSTER, else \"cairn\")" },
    { "--run-base", "DIR", "run base for the default description path "
      "(else CAIRN_RUN_BASE, else /run/cairn as root, else "
      "${XDG_RUNTIME_DIR:-/tmp}/cairn); run base written by "
      "config generate" },
    { "--node", "ID|NAME", "node to ask, an error at once if it is down "
      "(else CAIRN_NODE, else the first node running the service that is "
      "not down)" },
    { "--endpoint", "URI", "talk to this endpoint (ipc://, tcp://) instead "
      "of a node of the description (which a tcp:// one still reads for its "
      "CURVE keys)" },
    { "--key", "FILE", "secret key the client uses over tcp when the "
      "description says security mode curve (else CAIRN_KEY, else the first "
      "node key file of the description this process can read)" },
    { "--timeout", "MS", "total deadline of each request in ms (default 3000)" },
    { "--retries", "N", "resends after the first attempt (default 2)" },
    { "--table", NULL, "print a human-readable table instead of JSON "
      "(status, nodes, config check, checkpoint, restart: the commands "
      "whose help says \"table\": true)" },
    { "--help", NULL, "print the commands and options as JSON" },
    { NULL, NULL, NULL },
};

/* Indices into cli_global_options, in the same order. */
enum { G_CONFIG, G_CLUSTER, G_RUN_BASE, G_NODE, G_ENDPOINT, G_KEY,
       G_TIMEOUT, G_RETRIES, G_TABLE, G_HELP };

void cli_ctx_init(cli_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
    ctx->retries = -1;
}

/* Stores one global option's value into ctx. */
static int s_set_global(cli_ctx *ctx, int index, const char *value,
                        cairn_error_t *err)
{
    long v;
    int r;

    switch (index) {
    case G_CONFIG: ctx->config = value; return 0;
    case G_CLUSTER: ctx->cluster = value; return 0;
    case G_RUN_BASE: ctx->run_base = value; return 0;
    case G_NODE: ctx->node = value; return 0;
    case G_ENDPOINT: ctx->endpoint = value; return 0;
    case G_KEY: ctx->key = value; return 0;
    case G_TABLE: ctx->table = true; return 0;
    case G_HELP: ctx->help = true; return 0;
    case G_TIMEOUT:
        r = cairn_parse_long("--timeout", value, 1, CLI_MAX_TIMEOUT_MS, &v,
                             err);
        if (r == 0) {
            ctx->timeout_ms = (int)v;
            ctx->timeout_set = true;
        }
        return r;
    case G_RETRIES:
        r = cairn_parse_long("--retries", value, 0, CLI_MAX_RETRIES, &v, err);
        if (r == 0)
            ctx->retries = (int)v;
        return r;
    default:
        return -EINVAL;
    }
}

int cli_parse_globals(cli_ctx *ctx, int argc, char **argv, char **rest,
                      int *ret_n_rest, cairn_error_t *err)
{
    int n = 0;
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *inline_value = NULL, *value = NULL;
        int index, r;

        if (strcmp(argv[i], "--") == 0)
            options_done = true;
        index = options_done ? -1
                             : cairn_option_find(cli_global_options, argv[i],
                                                 &inline_value);
        if (index < 0) {
            rest[n++] = argv[i];
            continue;
        }
        r = cairn_option_value(&cli_global_options[index], inline_value,
                               argc, argv, &i, &value, err);
        if (r == 0)
            r = s_set_global(ctx, index, value, err);
        if (r < 0)
            return r;
    }
    *ret_n_rest = n;
    return 0;
}
