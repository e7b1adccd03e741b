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
 * Options are described as data (cli_option_t arrays); the same arrays drive
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
#define CLI_MAX_ARGS 64              /* options + positionals of one command */

/* Cleanup helpers in the systemd manner. */
#define _cleanup_(f) __attribute__((cleanup(f)))
#define TAKE_PTR(p) ({ __typeof__(p) _tp = (p); (p) = NULL; _tp; })
static inline void cli_freep(void *p) { free(*(void **)p); }
static inline void cli_json_decrefp(json_t **p) { json_decref(*p); }

/* Milliseconds on CLOCK_MONOTONIC, for deadlines. */
static inline int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fills err for a failed allocation; returns -ENOMEM. */
static inline int cli_oom(cairn_error_t *err)
{
    return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}
#define _cleanup_free_ _cleanup_(cli_freep)
#define _cleanup_json_ _cleanup_(cli_json_decrefp)

/* Global options of one invocation (or one batch line). The strings point
 * into argv (or into the batch line being run) and are not owned. */
typedef struct cli_ctx {
    const char *config;    /* --config FILE, NULL if not given */
    const char *cluster;   /* --cluster NAME, NULL if not given */
    const char *run_base;  /* --run-base DIR, NULL if not given */
    const char *node;      /* --node ID|NAME, NULL if not given */
    const char *endpoint;  /* --endpoint URI, NULL if not given */
    int timeout_ms;        /* --timeout MS: total deadline of each request */
    bool timeout_set;      /* --timeout was given (else a verb may pick its own) */
    int retries;           /* --retries N, -1 = the library's default */
    bool table;            /* --table: human table instead of JSON */
    bool help;             /* --help / -h seen */
    bool in_batch;         /* running a line of `cairn batch` */
} cli_ctx;

/* One option: name with its dashes, the value's placeholder (NULL for a
 * flag) and one line of help. Arrays end with an entry whose name is NULL. */
typedef struct cli_option {
    const char *name;   /* "--hosts" */
    const char *arg;    /* "LIST", or NULL for a flag */
    const char *help;   /* one line for `cairn help` */
} cli_option_t;

/* A command's parsed arguments: values[i] is the value of options[i] ("" for
 * a flag that is set, NULL when absent); pos[] the positional arguments. The
 * strings point into argv. */
typedef struct cli_args {
    const char *values[CLI_MAX_ARGS];  /* per option, NULL if absent */
    const char *pos[CLI_MAX_ARGS];     /* positional arguments, in order */
    size_t n_pos;                      /* number of positionals */
} cli_args_t;

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
    const cli_option_t *options;   /* the command's own options */
    cli_cmd_fn run;                /* the handler, NULL for a stream */
    cli_stream_fn stream;          /* the streaming handler, or NULL; with
                                    * run too, used when --watch is given */
    cli_table_fn table;            /* --table view, NULL if none */
} cli_command_t;

/* args.c: the global options, shared by main() and batch lines. */
extern const cli_option_t cli_global_options[];

/* Resets ctx to the defaults (no option given). */
void cli_ctx_init(cli_ctx *ctx);

/* Moves the global options found anywhere in argv[0..argc) into ctx (later
 * ones override earlier ones and what ctx already holds) and copies the other
 * arguments, in order, to rest[] (room for argc entries); "--" ends option
 * processing and is kept in rest. Returns 0 or -EINVAL (code usage). */
int cli_parse_globals(cli_ctx *ctx, int argc, char **argv, char **rest,
                      int *ret_n_rest, cairn_error_t *err);

/* Parses a command's own arguments against options; `what` names the
 * command in messages. Fails with a usage error on an unknown option, a
 * missing value, a value given to a flag, or more than max_pos positionals. */
int cli_parse_args(const char *what, const cli_option_t *options, int argc,
                   char **argv, size_t max_pos, cli_args_t *ret,
                   cairn_error_t *err);

/* Parses a decimal integer in [min, max]; 0 or -EINVAL (code usage, message
 * naming `option`). */
int cli_parse_int(const char *option, const char *value, long min, long max,
                  long *ret, cairn_error_t *err);

/* target.c: the run base, the one rule shared by target resolution and the
 * local cluster harness: explicit_base (--run-base) when given, else
 * $CAIRN_RUN_BASE, else /run/cairn as root, else
 * ${XDG_RUNTIME_DIR:-/tmp}/cairn. Written to out without trailing slashes.
 * 0, or -ENAMETOOLONG / -EINVAL (code invalid-argument: too long, not
 * absolute). */
int cli_run_base(const char *explicit_base, char *out, size_t size,
                 cairn_error_t *err);

/* cairn.c: runs one command line whose global options are already in ctx:
 * the help object when ctx->help or the command is `help`, else the command
 * named by the leading words of argv. Streaming commands are refused (a
 * batch line cannot run a batch). *ret_cmd is the command run (NULL for
 * help). Returns as cli_cmd_fn. */
int cli_dispatch(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                 const cli_command_t **ret_cmd, cairn_error_t *err);

/* The commands, one file per noun. */
extern const cli_option_t cli_no_options[];
extern const cli_option_t cli_config_generate_options[];
int cli_cmd_version(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_status(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                   cairn_error_t *err);
int cli_cmd_nodes(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                  cairn_error_t *err);
int cli_cmd_nodes_watch(cli_ctx *ctx, int argc, char **argv, FILE *in,
                        FILE *out, cairn_error_t *err);
extern const cli_option_t cli_nodes_options[];
extern const cli_option_t cli_node_add_options[];
int cli_cmd_node_add(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                     cairn_error_t *err);
int cli_cmd_node_remove(cli_ctx *ctx, int argc, char **argv,
                        json_t **ret_result, cairn_error_t *err);
int cli_cmd_node_leave(cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err);
int cli_cmd_config_check(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_cmd_config_generate(cli_ctx *ctx, int argc, char **argv,
                            json_t **ret_result, cairn_error_t *err);
extern const cli_option_t cli_checkpoint_options[];
extern const cli_option_t cli_restart_options[];
int cli_cmd_checkpoint(cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err);
int cli_cmd_restart(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err);
int cli_cmd_batch(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                  cairn_error_t *err);

#endif
