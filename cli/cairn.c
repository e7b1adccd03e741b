/* cairn.c - the `cairn` command: main, the command table, the help object.
 *
 * Design. `cairn [global options] <noun> <verb> [options]`
 * (docs/architecture.md §7).
 * main() pulls the global options out of argv (args.c), finds the command
 * by its words in s_commands -- one row per command with its synopsis,
 * options, handler and --table view -- and runs it. It is the only place
 * that prints a result or an error and decides the exit code (output.h):
 * exactly one JSON document on stdout on success, nothing on stdout and one
 * {"error":{...}} line on stderr on failure, never usage text. The help
 * object is built from the same tables that drive parsing: `cairn help`
 * lists every command, `cairn help WORDS` and `cairn WORDS --help` give
 * that one command's object, whose "table" says whether --table works. Streaming
 * commands (batch, nodes --watch) print their own JSON lines and return
 * their exit code.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "output.h"

static const cli_command_t s_commands[] = {
    { "version", "", "version of this cairn and its wire protocol",
      cli_no_options, cli_cmd_version, NULL, NULL },
    { "status", "", "the asked node's clusterd: node, cluster, appliance, "
      "services, version, uptime", cli_no_options, cli_cmd_status, NULL,
      cli_table_object },
    { "nodes", "", "the cluster's members as the asked node sees them; "
      "--watch streams membership events as JSON lines",
      cli_nodes_options, cli_cmd_nodes, cli_cmd_nodes_watch, cli_table_nodes },
    { "node add", "", "admit a node to the cluster (on a local cluster, also "
      "create its namespace and start its daemons)", cli_node_add_options,
      cli_cmd_node_add, NULL, NULL },
    { "node remove", "N", "remove node N from the cluster (on a local "
      "cluster, also tear it down)", cli_no_options, cli_cmd_node_remove,
      NULL, NULL },
    { "node leave", "", "make the asked node (--node) leave the cluster; its "
      "clusterd exits, and on a local cluster its other daemons stop too",
      cli_no_options, cli_cmd_node_leave, NULL, NULL },
    { "node restart", "N", "on a local cluster, start again those daemons of "
      "node N that are not running (after a crash); a no-op when all run",
      cli_node_restart_options, cli_cmd_node_restart, NULL, NULL },
    { "config check", "FILE", "validate a cluster description; says file, "
      "line, element and reason when it is wrong", cli_no_options,
      cli_cmd_config_check, NULL, cli_table_object },
    { "config generate", "", "write a cluster description for a list of "
      "hosts (uses the global --run-base)", cli_config_generate_options,
      cli_cmd_config_generate, NULL, NULL },
    { "keys generate", "", "make the CURVE keypair of the node the global "
      "--node N names: write the secret key where the description looks for "
      "it (0600), print the public key and the <key> element",
      cli_keys_generate_options,
      cli_cmd_keys_generate, NULL, cli_table_object },
    { "keys list", "", "every <key> of the description, and whether its "
      "secret file here exists, is readable, safe and matches",
      cli_no_options, cli_cmd_keys_list, NULL, cli_table_keys },
    { "cluster up", "", "build a cluster on this machine: a netns, veth, "
      "cgroup and run dir per node, every daemon started (loopback without "
      "root)", cli_cluster_up_options, cli_cmd_cluster_up, NULL, NULL },
    { "cluster down", "", "remove every namespace, link, cgroup, process "
      "and file of a local cluster", cli_cluster_name_options,
      cli_cmd_cluster_down, NULL, NULL },
    { "cluster status", "", "a local cluster's nodes and whether each "
      "daemon runs", cli_cluster_name_options, cli_cmd_cluster_status, NULL,
      NULL },
    { "checkpoint", "PID", "freeze process PID into an image (killed after, unless --leave-running)", cli_checkpoint_options, cli_cmd_checkpoint, NULL, cli_table_object },
    { "restart", "DIR", "bring the process checkpointed in DIR back to life", cli_restart_options, cli_cmd_restart, NULL, cli_table_object },
    { "migrate", "GPID", "move job GPID (or --pid PID) to node --to while it "
      "runs: stop-and-copy, the image streamed ghostd to ghostd; on any "
      "failure it runs on where it was and the error says why; --check "
      "lists every reason it cannot move", cli_migrate_options,
      cli_cmd_migrate, NULL, cli_table_object },
    { "run", "-- CMD [ARGS...]", "start CMD as a job of the cluster (its own "
      "pid namespace, stdout/stderr in its directory) on the node --node "
      "names, else this host's; prints the job with its gpid",
      cli_run_options, cli_cmd_run, NULL, cli_table_object },
    { "ps", "", "every job of the cluster the caller may see (root: all; "
      "--node: one node's), from every alive ghostd; a node that does not "
      "answer is listed unreachable", cli_ps_options, cli_cmd_ps, NULL,
      cli_table_ps },
    { "signal", "GPID", "send a signal (--signal, default TERM) to job GPID, "
      "wherever it runs", cli_signal_options, cli_cmd_signal, NULL,
      cli_table_object },
    { "kill", "GPID", "end job GPID and everything in it (SIGKILL)",
      cli_no_options, cli_cmd_kill, NULL, cli_table_object },
    { "wait", "GPID", "wait until job GPID ends; prints it with exit_code "
      "and exit_signal (exit 0 whatever they are)", cli_no_options,
      cli_cmd_wait, NULL, cli_table_object },
    { "logs", "GPID", "print job GPID's stdout (--stderr: its stderr) as "
      "written; --follow until it ends", cli_logs_options, NULL, cli_cmd_logs,
      NULL },
    { "sched show", "", "the scheduler policy of the node --node names (or "
      "--all): policy, pid, parameters, counters, what it knows of the "
      "cluster's load", cli_sched_show_options, cli_cmd_sched_show, NULL,
      cli_table_object },
    { "sched swap", "POLICY", "stop the node's scheduler policy and start "
      "POLICY (rr, mosix, mem) in its place (--node N, --all); running jobs "
      "are not touched, placements asked meanwhile are held",
      cli_sched_swap_options, cli_cmd_sched_swap, NULL, NULL },
    { "sched log", "", "the node's newest scheduler decisions, each with its "
      "reason; --follow streams new ones as JSON lines, across swaps",
      cli_sched_log_options, cli_cmd_sched_log, cli_cmd_sched_follow, NULL },
    { "lock", "NAME -- CMD [ARGS...]", "run CMD while holding the cluster "
      "mutex NAME (a cluster-wide flock): waits for it (--timeout MS, else "
      "as long as it takes), exits with CMD's status", cli_lock_options,
      NULL, cli_cmd_lock, NULL },
    { "barrier", "NAME", "wait at the cluster barrier NAME until --parties N "
      "callers arrived; one of each generation is the serial one",
      cli_barrier_options, cli_cmd_barrier, NULL, cli_table_object },
    { "sync ls", "", "every lock, semaphore, barrier and condition variable "
      "of the cluster the caller may see: home, state, holders, waiters",
      cli_sync_ls_options, cli_cmd_sync_ls, NULL, cli_table_sync_ls },
    { "sync show", "NAME", "one syncd object in full: home, holders with "
      "node and pid, waiters in order, token, cache, value", cli_no_options,
      cli_cmd_sync_show, NULL, cli_table_sync_show },
    { "sync destroy", "NAME", "remove a syncd object nobody holds or waits "
      "on (its owner or root)", cli_no_options, cli_cmd_sync_destroy, NULL,
      cli_table_object },
    { "dsm ls", "", "every distributed shared memory segment of the cluster "
      "the caller may read: size, owner, mode, the nodes that joined it",
      cli_no_options, cli_cmd_dsm_ls, NULL, cli_table_dsm_ls },
    { "dsm show", "NAME", "one DSM segment: per node its processes and its "
      "pages by state (invalid, read, write, owned, lost) and the lost pages",
      cli_no_options, cli_cmd_dsm_show, NULL, cli_table_object },
    { "dsm rm", "NAME", "remove a DSM segment no process maps (its owner or "
      "root)", cli_no_options, cli_cmd_dsm_rm, NULL, cli_table_object },
    { "load", "", "the asked node's load as its probed sees it: its own "
      "vector with its jobs, the few peers' vectors it knows (with their ages), "
      "the probes and the gossip", cli_no_options, cli_cmd_load, NULL, NULL },
    { "selftest", "", "a battery against the live cluster: every service "
      "answers on every node, membership agrees, a lock, a DSM page, a "
      "checkpoint/restart, a migration there and back, a stream -- each step "
      "timed; fails naming the failed steps", cli_selftest_options,
      cli_cmd_selftest, NULL, cli_table_selftest },
    { "top", "", "a live terminal view of nodes (state, load, memory, jobs) "
      "and jobs (gpid, node, cpu, rss, moves), refreshed from events; q quits; "
      "--once prints one snapshot (--json: as JSON)", cli_top_options, NULL,
      cli_cmd_top, NULL },
    { "batch", "", "read JSON commands from stdin, one per line; answer one "
      "JSON line each", cli_no_options, NULL, cli_cmd_batch, NULL },
    { "help", "[WORDS]", "this list, as JSON; with the words of a command, "
      "that command's object alone", cli_no_options, NULL, NULL, NULL },
};
#define S_N_COMMANDS (sizeof s_commands / sizeof s_commands[0])

static const struct { int code; const char *meaning; } s_exit_codes[] = {
    { CLI_EXIT_OK, "success" },
    { CLI_EXIT_REMOTE, "the service answered with an error status" },
    { CLI_EXIT_INVALID, "invalid input file (config check failed)" },
    { CLI_EXIT_UNREACHABLE, "service unreachable (unavailable or timeout)" },
    { CLI_EXIT_USAGE, "wrong usage (bad command, option or value)" },
    { CLI_EXIT_SYSTEM, "a system call failed" },
};

static json_t *s_options_json(const cairn_option_t *options)
{
    json_t *list = json_array();

    for (size_t i = 0; list && options[i].name; i++)
        json_array_append_new(list, json_pack("{s:s, s:s?, s:s}",
                              "option", options[i].name, "arg",
                              options[i].arg, "description",
                              options[i].help));
    return list;
}

static json_t *s_command_json(const cli_command_t *c)
{
    return json_pack("{s:s, s:s, s:s, s:o*, s:b}", "command", c->words,
                     "args", c->synopsis, "description", c->help,
                     "options", s_options_json(c->options),
                     "table", c->table != NULL);
}

/* The help object: usage line, commands, global options, exit codes; or,
 * for one command, that command's object alone. */
static int s_help(const cli_command_t *one, json_t **ret_result,
                  cairn_error_t *err)
{
    json_t *commands, *exits;

    if (one) {
        *ret_result = s_command_json(one);
        return *ret_result ? 0 : cli_oom(err);
    }
    commands = json_array();
    exits = json_array();

    for (size_t i = 0; commands && i < S_N_COMMANDS; i++)
        json_array_append_new(commands, s_command_json(&s_commands[i]));
    for (size_t i = 0; exits && i < sizeof s_exit_codes / sizeof s_exit_codes[0]; i++)
        json_array_append_new(exits, json_pack("{s:i, s:s}", "code",
                              s_exit_codes[i].code, "meaning",
                              s_exit_codes[i].meaning));
    *ret_result = json_pack("{s:s, s:o*, s:o*, s:o*}", "usage",
                            "cairn [global options] <noun> <verb> [options]",
                            "commands", commands, "global_options",
                            s_options_json(cli_global_options),
                            "exit_codes", exits);
    return *ret_result ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                             "out of memory");
}

static bool s_is_word(const char *arg)
{
    return arg[0] != '-' || arg[1] == '\0';
}

static const cli_command_t *s_lookup(const char *words)
{
    for (size_t c = 0; c < S_N_COMMANDS; c++)
        if (strcmp(s_commands[c].words, words) == 0)
            return &s_commands[c];
    return NULL;
}

/* True when `noun` is the first word of a two-word command. */
static bool s_is_noun(const char *noun)
{
    size_t len = strlen(noun);

    for (size_t c = 0; c < S_N_COMMANDS; c++)
        if (strncmp(s_commands[c].words, noun, len) == 0 &&
            s_commands[c].words[len] == ' ')
            return true;
    return false;
}

/* The usage error for command words that name no command. */
static int s_unknown(int n_words, const char *words, cairn_error_t *err)
{
    if (n_words == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "no command given; run 'cairn help' for the "
                               "list");
    if (n_words == 1 && s_is_noun(words))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "'%s' needs a verb; run 'cairn help' for the "
                               "list", words);
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "unknown command '%s'; run 'cairn help' for the "
                           "list", words);
}

/* The command whose words are the first one or two non-option arguments
 * (before any "--"); copies the other arguments to cmd_argv (room for
 * argc). */
static int s_find_command(int argc, char **argv, const cli_command_t **ret,
                          char **cmd_argv, int *ret_cmd_argc,
                          cairn_error_t *err)
{
    int at[2] = { -1, -1 }, n_words = 0, n = 0;
    const cli_command_t *cmd = NULL;
    char words[256] = "";

    for (int i = 0; i < argc && !cmd && n_words < 2; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (!s_is_word(argv[i]))
            continue;
        at[n_words++] = i;
        snprintf(words + strlen(words), sizeof words - strlen(words), "%s%s",
                 n_words > 1 ? " " : "", argv[i]);
        cmd = s_lookup(words);
    }
    if (!cmd)
        return s_unknown(n_words, words, err);
    for (int j = 0; j < argc; j++)
        if (j != at[0] && j != at[1])
            cmd_argv[n++] = argv[j];
    *ret = cmd;
    *ret_cmd_argc = n;
    return 0;
}

/* The command `cairn help WORDS` (exact: WORDS must be one command and
 * nothing more) or `cairn WORDS... --help` (its leading words) asks about:
 * *ret NULL, the whole help, when there are no words. Words that name no
 * command are a usage error naming them. */
static int s_help_subject(int argc, char **argv, bool exact,
                          const cli_command_t **ret, cairn_error_t *err)
{
    const cli_command_t *cmd = NULL;
    char words[256] = "";
    int n = 0, used = 0;

    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const cli_command_t *c;

        if (!s_is_word(argv[i]))
            continue;
        snprintf(words + strlen(words), sizeof words - strlen(words), "%s%s",
                 n++ ? " " : "", argv[i]);
        if (n <= 2 && (c = s_lookup(words))) {
            cmd = c;
            used = n;
        }
    }
    *ret = cmd;
    if (n == 0 || (cmd && (!exact || n == used)))
        return 0;
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "help: '%s' is not a command; run 'cairn help' "
                           "for the list", words);
}

/* True if cmd runs as a stream with these arguments: a streaming-only
 * command (batch), or one with a streaming mode asked by --watch or
 * --follow (before any "--"). */
static bool s_streams(const cli_command_t *cmd, int argc, char **argv)
{
    if (!cmd->stream)
        return false;
    if (!cmd->run)
        return true;
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--watch") == 0 ||
            strncmp(argv[i], "--watch=", 8) == 0 ||
            strcmp(argv[i], "--follow") == 0)
            return true;
    return false;
}

/* Finds the command and checks what the context asks of it. *ret is NULL
 * for help, and *ret_subject then the command help is asked about (NULL:
 * all of them). */
static int s_prepare(const cli_ctx *ctx, int argc, char **argv,
                     const cli_command_t **ret, char **cmd_argv,
                     int *ret_cmd_argc, const cli_command_t **ret_subject,
                     cairn_error_t *err)
{
    const cli_command_t *cmd = NULL;
    cairn_args_t a;
    int r;

    *ret = NULL;
    if (ctx->help)
        return s_help_subject(argc, argv, false, ret_subject, err);
    r = s_find_command(argc, argv, &cmd, cmd_argv, ret_cmd_argc, err);
    if (r < 0)
        return r;
    if (!cmd->run && !cmd->stream) {   /* help [WORDS] */
        r = cairn_args_parse("help", cli_no_options, *ret_cmd_argc, cmd_argv,
                             CAIRN_MAX_ARGS, &a, err);
        return r < 0 ? r : s_help_subject(*ret_cmd_argc, cmd_argv, true,
                                          ret_subject, err);
    }
    if (ctx->table && !cmd->table)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--table is not available for '%s'",
                               cmd->words);
    *ret = cmd;
    return 0;
}

int cli_dispatch(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 const cli_command_t **ret_cmd, cairn_error_t *err)
{
    char *cmd_argv[CAIRN_MAX_ARGS + 1];
    const cli_command_t *cmd, *subject = NULL;
    int n = 0, r;

    if (argc > CAIRN_MAX_ARGS)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "more than %d arguments", CAIRN_MAX_ARGS);
    r = s_prepare(ctx, argc, argv, &cmd, cmd_argv, &n, &subject, err);
    if (r < 0)
        return r;
    *ret_cmd = cmd;
    if (!cmd)
        return s_help(subject, ret_result, err);
    if (s_streams(cmd, n, cmd_argv))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "'%s%s' cannot run inside a batch", cmd->words,
                               cmd->run ? " --watch/--follow" : "");
    return cmd->run(ctx, n, cmd_argv, ret_result, err);
}

/* Prints a successful result the way ctx asks; exit code. */
static int s_print_result(const cli_ctx *ctx, const cli_command_t *cmd,
                          const json_t *result)
{
    cairn_error_t err = { 0 };
    int r;

    if (ctx->table && cmd)
        r = cmd->table(stdout, result);
    else
        r = cli_print_json(stdout, result);
    if (r == 0)
        return CLI_EXIT_OK;
    cairn_error_set(&err, r, CAIRN_SYSTEM, "cannot write the result to "
                    "stdout: %s", strerror(-r));
    cli_print_error(stderr, &err);
    return CLI_EXIT_SYSTEM;
}

/* One invocation from parsed globals to exit code. */
static int s_main(cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_free_ char **cmd_argv = calloc((size_t)argc + 1, sizeof *cmd_argv);
    _cleanup_json_ json_t *result = NULL;
    cairn_error_t err = { 0 };
    const cli_command_t *cmd = NULL, *subject = NULL;
    bool stream = false;
    int n = 0, r;

    r = cmd_argv ? s_prepare(ctx, argc, argv, &cmd, cmd_argv, &n, &subject,
                             &err)
                 : cairn_error_set(&err, -ENOMEM, CAIRN_SYSTEM,
                                   "out of memory");
    if (r == 0 && !cmd)
        r = s_help(subject, &result, &err);
    else if (r == 0 && (stream = s_streams(cmd, n, cmd_argv)))
        r = cmd->stream(ctx, n, cmd_argv, stdin, stdout, &err);
    else if (r == 0)
        r = cmd->run(ctx, n, cmd_argv, &result, &err);
    if (r < 0) {
        cli_print_error_extra(stderr, &err, TAKE_PTR(ctx->error_extra));
        return cli_exit_code(r, &err);
    }
    if (stream)
        return r;
    return s_print_result(ctx, cmd, result);
}

int main(int argc, char **argv)
{
    _cleanup_free_ char **rest = calloc((size_t)argc + 1, sizeof *rest);
    cairn_error_t err = { 0 };
    cli_ctx ctx;
    int n = 0, r;

    if (!rest) {
        cairn_error_set(&err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        cli_print_error(stderr, &err);
        return CLI_EXIT_SYSTEM;
    }
    cli_ctx_init(&ctx);
    r = cli_parse_globals(&ctx, argc - 1, argv + 1, rest, &n, &err);
    if (r < 0) {
        cli_print_error(stderr, &err);
        return cli_exit_code(r, &err);
    }
    return s_main(&ctx, n, rest);
}
