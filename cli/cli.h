/* cli.h - private umbrella header of the `cairn` command.
 *
 * Design. `cairn [global options] <noun> <verb> [options]`. main() (cairn.c)
 * pulls the global options out of argv wherever they stand into a cli_ctx,
 * finds the command in one table (words, synopsis, options, handler, table
 * view) and runs its handler. A handler never prints: it returns 0 with a
 * JSON result it hands over to the caller, or a negative errno with a
 * cairn_error_t; only main() and `cairn batch` print, so one handler serves
 * a single invocation and every line of a batch alike. The exit code is a
 * function of (return value, error code): see cli_exit_code() in output.h.
 *
 * Options are described as data (cairn_option_t arrays); the same arrays drive
 * parsing and the `cairn help` object, so the two cannot disagree.
 */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <time.h>
#include <jansson.h>

#include "cairn/error.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/options.h"

/* Exit codes, documented in docs/cli.md. */
#define CLI_EXIT_OK 0           /* success */
#define CLI_EXIT_REMOTE 1       /* the service answered with an error Status */
#define CLI_EXIT_INVALID 2      /* invalid input file (config check failed) */
#define CLI_EXIT_UNREACHABLE 3  /* service unreachable: unavailable or timeout */
#define CLI_EXIT_USAGE 100      /* wrong command-line arguments */
#define CLI_EXIT_SYSTEM 111     /* a system call failed */

#define CLI_DEFAULT_TIMEOUT_MS 3000
#define CLI_MAX_TIMEOUT_MS 3600000   /* one hour */
#define CLI_MAX_RETRIES 100

/* json_decref is NULL-safe, so it serves as its own cleanup. */
static inline void cli_json_decrefp(json_t **p) { json_decref(*p); }

/* Fills err for a failed allocation; returns -ENOMEM. */
static inline int cli_oom(cairn_error_t *err)
{
    return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}
#define _cleanup_json_ _cleanup_(cli_json_decrefp)

/* Global options of one invocation (or one batch line). The strings point
 * into argv (or into the batch line being run) and are not owned. */
typedef struct cli_ctx {
    const char *config;    /* --config FILE, NULL if not given */
    const char *cluster;   /* --cluster NAME, NULL if not given */
    const char *run_base;  /* --run-base DIR, NULL if not given */
    const char *node;      /* --node ID|NAME, NULL if not given */
    const char *endpoint;  /* --endpoint URI, NULL if not given */
    const char *key;       /* --key FILE: the client's CURVE secret key,
                            * NULL if not given (then $CAIRN_KEY) */
    int timeout_ms;        /* --timeout MS: total deadline of each request */
    bool timeout_set;      /* --timeout was given (else a verb may pick its own) */
    int retries;           /* --retries N, -1 = the library's default */
    bool table;            /* --table: human table instead of JSON */
    bool help;             /* --help / -h seen */
    bool in_batch;         /* running a line of `cairn batch` */
    json_t *error_extra;   /* a failed handler's fields for its error
                            * object beyond code and message (a check's
                            * "reasons"): owned; whoever prints the error
                            * takes it (main, `cairn batch`) */
} cli_ctx;

/* A command handler: returns 0 with *ret_result set (caller owns it), or a
 * negative errno with err filled; *ret_result untouched on failure. */
typedef int (*cli_cmd_fn)(cli_ctx *ctx, int argc, char **argv,
                          json_t **ret_result, cairn_error_t *err);
/* Prints result as a human table on out; 0 or -errno. */
typedef int (*cli_table_fn)(FILE *out, const json_t *result);
/* A streaming command (batch, nodes --watch) prints JSON lines on out itself
 * and returns its exit code (>= 0), or a negative errno with err filled when
 * it failed before printing anything. */
typedef int (*cli_stream_fn)(cli_ctx *ctx, int argc, char **argv, FILE *in,
                             FILE *out, cairn_error_t *err);

typedef struct cli_command {
    const char *words;             /* "config check" */
    const char *synopsis;          /* positionals, "FILE" or "" */
    const char *help;              /* one line */
    const cairn_option_t *options;   /* the command's own options */
    cli_cmd_fn run;                /* the handler, NULL for a stream */
    cli_stream_fn stream;          /* the streaming handler, or NULL; with
                                    * run too, used when --watch (or
                                    * --follow) is given */
    cli_table_fn table;            /* --table view, NULL if none */
} cli_command_t;

/* args.c: the global options, shared by main() and batch lines. */
extern const cairn_option_t cli_global_options[];

/* Resets ctx to the defaults (no option given). */
void cli_ctx_init(cli_ctx *ctx);

/* Moves the global options found anywhere in argv[0..argc) into ctx (later
 * ones override earlier ones and what ctx already holds) and copies the other
 * arguments, in order, to rest[] (room for argc entries); "--" ends option
 * processing and is kept in rest. Returns 0 or -EINVAL (code usage). */
int cli_parse_globals(cli_ctx *ctx, int argc, char **argv, char **rest,
                      int *ret_n_rest, cairn_error_t *err);

/* cairn.c: runs one command line whose global options are already in ctx:
 * the help object when ctx->help or the command is `help`, else the command
 * named by the leading words of argv. Streaming commands are refused (a
 * batch line cannot run a batch). *ret_cmd is the command run (NULL for
 * help). Returns as cli_cmd_fn. */
int cli_dispatch(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 const cli_command_t **ret_cmd, cairn_error_t *err);

/* The commands, one file per noun. */
extern const cairn_option_t cli_no_options[];
extern const cairn_option_t cli_config_generate_options[];
int cli_cmd_version(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_status(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err);
int cli_cmd_nodes(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                  cairn_error_t *err);
/* A membership event [topic][Header][MemberEvent] (frames[3], as
 * cli_target_recv_event gives them) as the line `nodes --watch` prints:
 * {"event","node":{...},"observer","time_ms"}. *ret is the caller's;
 * -EBADMSG (code decode-error) for a bad event. */
struct zmq_msg_t;
int cli_member_event_json(struct zmq_msg_t *frames, json_t **ret,
                          cairn_error_t *err);
int cli_cmd_nodes_watch(cli_ctx *ctx, int argc, char **argv, FILE *in,
                        FILE *out, cairn_error_t *err);
extern const cairn_option_t cli_nodes_options[];
extern const cairn_option_t cli_node_add_options[];
int cli_cmd_node_add(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err);
int cli_cmd_node_remove(cli_ctx *ctx, int argc, char **argv,
                        json_t **ret_result, cairn_error_t *err);
int cli_cmd_node_leave(cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err);
extern const cairn_option_t cli_node_restart_options[];
int cli_cmd_node_restart(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_cmd_config_check(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_cmd_config_generate(cli_ctx *ctx, int argc, char **argv,
                            json_t **ret_result, cairn_error_t *err);
extern const cairn_option_t cli_checkpoint_options[];
extern const cairn_option_t cli_restart_options[];
int cli_cmd_checkpoint(cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err);
int cli_cmd_restart(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_batch(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                  cairn_error_t *err);
/* cmd-migrate.c: moving a job to another node. */
extern const cairn_option_t cli_migrate_options[];
int cli_cmd_migrate(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
/* cmd-keys.c: CURVE keys. */
extern const cairn_option_t cli_keys_generate_options[];
int cli_cmd_keys_generate(cli_ctx *ctx, int argc, char **argv,
                          json_t **ret_result, cairn_error_t *err);
int cli_cmd_keys_list(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                      cairn_error_t *err);
/* cmd-cluster.c: the local cluster harness (lib/harness). */
extern const cairn_option_t cli_cluster_up_options[];
extern const cairn_option_t cli_cluster_name_options[];
int cli_cmd_cluster_up(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err);
int cli_cmd_cluster_down(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_cmd_cluster_status(cli_ctx *ctx, int argc, char **argv,
                           json_t **ret_result, cairn_error_t *err);

/* cmd-job.c: jobs (ghostd): run, ps, signal, kill, wait, logs. */
extern const cairn_option_t cli_run_options[];
extern const cairn_option_t cli_ps_options[];
extern const cairn_option_t cli_signal_options[];
extern const cairn_option_t cli_logs_options[];
int cli_cmd_run(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                cairn_error_t *err);
int cli_cmd_ps(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
               cairn_error_t *err);
int cli_cmd_signal(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err);
int cli_cmd_kill(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err);
int cli_cmd_wait(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err);
int cli_cmd_logs(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                 cairn_error_t *err);
int cli_table_ps(FILE *out, const json_t *result);

/* cmd-sched.c: the scheduler policy of a node (show, swap, log). */
extern const cairn_option_t cli_sched_show_options[];
extern const cairn_option_t cli_sched_swap_options[];
extern const cairn_option_t cli_sched_log_options[];
int cli_cmd_sched_show(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err);
int cli_cmd_sched_swap(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                       cairn_error_t *err);
int cli_cmd_sched_log(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                      cairn_error_t *err);
int cli_cmd_sched_follow(cli_ctx *ctx, int argc, char **argv, FILE *in,
                         FILE *out, cairn_error_t *err);

/* cmd-load.c: a node's load as its probed sees it. */
struct Cairn__Probed__LoadVector;
/* A probed LoadVector as `cairn load` prints it; with_jobs adds its job
 * list ("job"). Caller owns; NULL on ENOMEM. */
json_t *cli_load_vector_json(const struct Cairn__Probed__LoadVector *v,
                             bool with_jobs);
int cli_cmd_load(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 cairn_error_t *err);

/* cmd-dsm.c: dsmd's shared memory segments. */
int cli_cmd_dsm_ls(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err);
int cli_cmd_dsm_show(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err);
int cli_cmd_dsm_rm(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err);
int cli_table_dsm_ls(FILE *out, const json_t *result);

/* cmd-sync.c: syncd's locks, barriers and objects. */
extern const cairn_option_t cli_lock_options[];
extern const cairn_option_t cli_barrier_options[];
extern const cairn_option_t cli_sync_ls_options[];
int cli_cmd_lock(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                 cairn_error_t *err);
int cli_cmd_barrier(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_sync_ls(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_sync_show(cli_ctx *ctx, int argc, char **argv,
                      json_t **ret_result, cairn_error_t *err);
int cli_cmd_sync_destroy(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_table_sync_ls(FILE *out, const json_t *result);
int cli_table_sync_show(FILE *out, const json_t *result);

/* cmd-selftest.c: a battery of round trips against the live cluster. */
extern const cairn_option_t cli_selftest_options[];
int cli_cmd_selftest(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err);
int cli_table_selftest(FILE *out, const json_t *result);

/* cmd-top.c: the live view of nodes and jobs. */
extern const cairn_option_t cli_top_options[];
int cli_cmd_top(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                cairn_error_t *err);

#endif
