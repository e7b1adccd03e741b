/* cmd-batch.c - `cairn batch`: one JSON command per input line, one JSON
 * answer line per command, for orchestration scripts.
 *
 * Design. A line is either an array of argument strings, ["nodes"], or an
 * object {"id": <any JSON>, "args": [...]}. It runs through the same
 * cli_dispatch() as a single invocation, with a copy of the batch's global
 * options that the line's own global options override, so `cairn --timeout
 * 500 batch` applies 500 ms to every line that does not say otherwise. The
 * answer is {"id","ok":true,"result"} or {"id","ok":false,"error","exit"},
 * where id is the object's "id" or else the 1-based input line number, and
 * exit is the code `cairn` alone would have exited with. Answers are
 * flushed line by line, so a script can converse with a running batch.
 * Blank lines are skipped; a line that does not parse gets a usage answer;
 * a batch inside a batch is refused (cli_dispatch refuses streams).
 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "output.h"

/* A line's arguments, copied out of its JSON (strings owned). */
typedef struct s_line {
    json_t *id;            /* the answer's id (owned reference) */
    char *argv[CAIRN_MAX_ARGS];  /* owned copies of the arguments */
    int argc;              /* number of arguments */
} s_line_t;

static void s_line_clear(s_line_t *l)
{
    json_decref(l->id);
    for (int i = 0; i < l->argc; i++)
        free(l->argv[i]);
    memset(l, 0, sizeof *l);
}

/* Copies the strings of the JSON array args into l->argv. */
static int s_take_args(s_line_t *l, const json_t *args, size_t lineno,
                       cairn_error_t *err)
{
    size_t i;
    json_t *v;

    if (json_array_size(args) > CAIRN_MAX_ARGS)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "line %zu: more than %d arguments", lineno,
                               CAIRN_MAX_ARGS);
    json_array_foreach(args, i, v) {
        if (!json_is_string(v))
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "line %zu: argument %zu is not a string",
                                   lineno, i + 1);
        l->argv[l->argc] = strdup(json_string_value(v));
        if (!l->argv[l->argc])
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                   "out of memory");
        l->argc++;
    }
    return 0;
}

/* Reads the id and the arguments of an object line. */
static int s_parse_object(s_line_t *l, json_t *doc, size_t lineno,
                          cairn_error_t *err)
{
    json_t *args = json_object_get(doc, "args"), *id;
    const char *key;

    json_object_foreach(doc, key, id)
        if (strcmp(key, "id") != 0 && strcmp(key, "args") != 0)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "line %zu: unknown key \"%s\" (expected "
                                   "\"id\" and \"args\")", lineno, key);
    if (!json_is_array(args))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "line %zu: \"args\" must be an array of "
                               "strings", lineno);
    id = json_object_get(doc, "id");
    if (id) {
        json_decref(l->id);
        l->id = json_incref(id);
    }
    return s_take_args(l, args, lineno, err);
}

/* Parses one input line into l; l->id is set (to the line number) first so
 * even a line that does not parse is answered with an id. */
static int s_parse_line(s_line_t *l, const char *text, size_t lineno,
                        cairn_error_t *err)
{
    _cleanup_json_ json_t *doc = NULL;
    json_error_t je;

    l->id = json_integer((json_int_t)lineno);
    doc = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "line %zu: not valid JSON: %s (column %d)",
                               lineno, je.text, je.column);
    if (json_is_array(doc))
        return s_take_args(l, doc, lineno, err);
    return s_parse_object(l, doc, lineno, err);
}

/* Runs a parsed line with its own copy of the global options; a failed
 * command's error fields beyond code and message go to *ret_extra. */
static int s_run_line(const cli_ctx *base, s_line_t *l, json_t **ret_result,
                      json_t **ret_extra, cairn_error_t *err)
{
    char *rest[CAIRN_MAX_ARGS];
    cli_ctx ctx = *base;
    const cli_command_t *cmd;
    int n = 0, r;

    ctx.in_batch = true;
    ctx.error_extra = NULL;
    r = cli_parse_globals(&ctx, l->argc, l->argv, rest, &n, err);
    if (r < 0)
        return r;
    if (ctx.table)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--table is not available in batch: answers "
                               "are JSON lines");
    r = cli_dispatch(&ctx, n, rest, ret_result, &cmd, err);
    *ret_extra = ctx.error_extra;
    return r;
}

/* The answer line for one input line (takes extra). NULL only on ENOMEM. */
static json_t *s_answer(s_line_t *l, int r, json_t *result, json_t *extra,
                        const cairn_error_t *err)
{
    if (r == 0) {
        json_decref(extra);
        return json_pack("{s:O, s:b, s:o}", "id", l->id, "ok", 1, "result",
                         result);
    }
    return json_pack("{s:O, s:b, s:o*, s:i}", "id", l->id, "ok", 0, "error",
                     cli_error_json_extra(err, extra), "exit", cli_exit_code(r, err));
}

/* Handles one non-blank line: parse, run, print the answer. Returns 1 if
 * the command succeeded, 0 if it failed, -errno if the answer could not be
 * written. */
static int s_handle_line(const cli_ctx *base, const char *text, size_t lineno,
                         FILE *out)
{
    _cleanup_json_ json_t *answer = NULL;
    cairn_error_t err = { 0 };
    json_t *result = NULL, *extra = NULL;
    s_line_t l = { 0 };
    int r, w;

    r = s_parse_line(&l, text, lineno, &err);
    if (r == 0)
        r = s_run_line(base, &l, &result, &extra, &err);
    answer = s_answer(&l, r, result, extra, &err);
    s_line_clear(&l);
    if (!answer)
        return -ENOMEM;
    w = cli_print_json_line(out, answer);
    return w < 0 ? w : r == 0;
}

static bool s_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

int cli_cmd_batch(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                  cairn_error_t *err)
{
    _cleanup_free_ char *line = NULL;
    size_t cap = 0, lineno = 0;
    bool all_ok = true;
    cairn_args_t a;
    int r;

    r = cairn_args_parse("batch", cli_no_options, argc, argv, 0, &a, err);
    if (r < 0)
        return r;
    if (ctx->table)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "--table is not available in batch: answers "
                               "are JSON lines");
    for (errno = 0; getline(&line, &cap, in) >= 0; errno = 0) {
        lineno++;
        if (s_blank(line))
            continue;
        r = s_handle_line(ctx, line, lineno, out);
        if (r < 0)
            return cairn_error_set(err, r, CAIRN_SYSTEM,
                                   "cannot write the answer to line %zu: %s",
                                   lineno, strerror(-r));
        all_ok = all_ok && r == 1;
    }
    if (ferror(in))
        return cairn_error_set(err, errno ? -errno : -EIO, CAIRN_SYSTEM,
                               "cannot read line %zu: %s", lineno + 1,
                               strerror(errno ? errno : EIO));
    return all_ok ? CLI_EXIT_OK : CLI_EXIT_REMOTE;
}
