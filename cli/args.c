/* args.c - command-line options of `cairn`: the global ones and each
 * command's own, parsed from the same kind of table.
 *
 * Design. Options are long only (`--name VALUE` or `--name=VALUE`; `-h` is
 * the one short alias, of --help). Global options may stand anywhere on the
 * line, before or after the command words, so they are pulled out of argv
 * first (cli_parse_globals) and what is left -- command words, the
 * command's options and positionals -- goes to the command, which parses it
 * against its own table (cli_parse_args). "--" ends option processing. A
 * value is missing when the option is last or is followed by another
 * "--option"; every failure is a usage error naming the bad argument, and
 * nothing here prints.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "cli.h"

const cli_option_t cli_global_options[] = {
    { "--config", "FILE", "cluster description to use (else CAIRN_CONFIG, "
      "<run-base>/<cluster>/cluster.xml, /etc/cairn/cluster.xml)" },
    { "--cluster", "NAME", "cluster name for the default description path "
      "(else CAIRN_CLUSTER, else \"cairn\")" },
    { "--run-base", "DIR", "run base for the default description path "
      "(else CAIRN_RUN_BASE, else /run/cairn as root, else "
      "${XDG_RUNTIME_DIR:-/tmp}/cairn); run base written by "
      "config generate" },
    { "--node", "ID|NAME", "node to ask (else CAIRN_NODE, else the first "
      "node whose service socket exists, else the first node)" },
    { "--endpoint", "URI", "talk to this endpoint (ipc://, tcp://) and skip "
      "the description" },
    { "--timeout", "MS", "total deadline of each request in ms (default 3000)" },
    { "--retries", "N", "resends after the first attempt (default 2)" },
    { "--table", NULL, "print a human-readable table instead of JSON "
      "(status, nodes, config check)" },
    { "--help", NULL, "print the commands and options as JSON" },
    { NULL, NULL, NULL },
};

/* Indices into cli_global_options, in the same order. */
enum { G_CONFIG, G_CLUSTER, G_RUN_BASE, G_NODE, G_ENDPOINT, G_TIMEOUT,
       G_RETRIES, G_TABLE, G_HELP };

void cli_ctx_init(cli_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
    ctx->retries = -1;
}

int cli_parse_int(const char *option, const char *value, long min, long max,
                  long *ret, cairn_error_t *err)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (!*value || *end || errno == ERANGE || v < min || v > max)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s: '%s' is not a whole number in %ld..%ld",
                               option, value, min, max);
    *ret = v;
    return 0;
}

/* Index of the option arg names ("--x" or "--x=..."), -1 if none; sets
 * *ret_inline to the text after '=' when there is one. */
static int s_find_option(const cli_option_t *options, const char *arg,
                         const char **ret_inline)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

    if (strcmp(arg, "-h") == 0)
        arg = "--help", len = strlen(arg);
    for (int i = 0; options[i].name; i++)
        if (strlen(options[i].name) == len &&
            strncmp(options[i].name, arg, len) == 0) {
            *ret_inline = eq ? eq + 1 : NULL;
            return i;
        }
    return -1;
}

/* Takes the value of options[i] found at argv[*pos]: inline ("--x=v") or
 * the next argument, which moves *pos past it. "" for a flag. */
static int s_take_value(const cli_option_t *opt, const char *inline_value,
                        int argc, char **argv, int *pos, const char **ret,
                        cairn_error_t *err)
{
    if (!opt->arg) {
        if (inline_value)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "'%s': option %s takes no value",
                                   argv[*pos], opt->name);
        *ret = "";
        return 0;
    }
    if (inline_value) {
        *ret = inline_value;
        return 0;
    }
    if (*pos + 1 >= argc || strncmp(argv[*pos + 1], "--", 2) == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "option %s needs a value (%s)", opt->name,
                               opt->arg);
    *ret = argv[++*pos];
    return 0;
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
    case G_TABLE: ctx->table = true; return 0;
    case G_HELP: ctx->help = true; return 0;
    case G_TIMEOUT:
        r = cli_parse_int("--timeout", value, 1, CLI_MAX_TIMEOUT_MS, &v, err);
        if (r == 0) {
            ctx->timeout_ms = (int)v;
            ctx->timeout_set = true;
        }
        return r;
    case G_RETRIES:
        r = cli_parse_int("--retries", value, 0, CLI_MAX_RETRIES, &v, err);
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
                             : s_find_option(cli_global_options, argv[i],
                                             &inline_value);
        if (index < 0) {
            rest[n++] = argv[i];
            continue;
        }
        r = s_take_value(&cli_global_options[index], inline_value, argc, argv,
                         &i, &value, err);
        if (r == 0)
            r = s_set_global(ctx, index, value, err);
        if (r < 0)
            return r;
    }
    *ret_n_rest = n;
    return 0;
}

int cli_parse_args(const char *what, const cli_option_t *options, int argc,
                   char **argv, size_t max_pos, cli_args_t *ret,
                   cairn_error_t *err)
{
    cli_args_t a = { 0 };
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *inline_value = NULL;
        int index, r;

        if (!options_done && strcmp(argv[i], "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || argv[i][0] != '-' || argv[i][1] == '\0') {
            if (a.n_pos >= max_pos || a.n_pos >= CLI_MAX_ARGS)
                return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                       "%s: unexpected argument '%s'", what,
                                       argv[i]);
            a.pos[a.n_pos++] = argv[i];
            continue;
        }
        index = s_find_option(options, argv[i], &inline_value);
        if (index < 0)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "%s: unknown option '%s'", what, argv[i]);
        r = s_take_value(&options[index], inline_value, argc, argv, &i,
                         &a.values[index], err);
        if (r < 0)
            return r;
    }
    *ret = a;
    return 0;
}
