/* output.c - JSON printing, the error object, exit codes and --table views.
 *
 * Design. Everything `cairn` prints goes through here, so the contract of
 * docs/architecture.md §7 is kept in one place: one JSON document on stdout
 * (indented for a terminal, one compact line for a pipe, so `jq` and line
 * readers both work), errors as one compact line {"error":{...}} on
 * stderr, write errors detected (fflush) and reported to the caller. The --table views build a
 * small grid of strings and pad each column to its widest cell; a view only
 * reads the JSON result, so the table always shows what JSON would. Reals
 * are rounded once, where they are made (cli_json_real), and printed with
 * no more digits than that everywhere (JSON, batch lines, tables).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "output.h"

/* Flags of every dump: reals with no more digits than they were rounded to. */
#define S_DUMP_FLAGS (JSON_ENCODE_ANY | JSON_REAL_PRECISION(CLI_REAL_DIGITS))

json_t *cli_json_real(double v, int decimals)
{
    static const double scale[] = { 1e0, 1e1, 1e2, 1e3, 1e4,
                                    1e5, 1e6, 1e7, 1e8, 1e9 };
    double f = scale[decimals < 0 ? 0 : decimals > 9 ? 9 : decimals];
    double x = v * f;

    /* half away from zero, in integers (no libm); beyond int64 a real has
     * no decimals left to round */
    if (x > -9.2e18 && x < 9.2e18)
        x = (double)(int64_t)(x < 0 ? x - 0.5 : x + 0.5);
    return json_real(x / f);
}

json_t *cli_json_ms(uint64_t us)
{
    return cli_json_real((double)us / 1000.0, CLI_MS_DECIMALS);
}

static int s_finish(FILE *out, int r)
{
    if (r == 0 && fputc('\n', out) == EOF)
        r = -1;
    if (fflush(out) == EOF)
        r = -1;
    return r < 0 ? -(errno ? errno : EIO) : 0;
}

int cli_print_json(FILE *out, const json_t *doc)
{
    size_t flags = JSON_COMPACT;

    if (isatty(fileno(out)))
        flags = JSON_INDENT(2);
    errno = 0;
    return s_finish(out, json_dumpf(doc, out, flags | S_DUMP_FLAGS));
}

int cli_print_json_line(FILE *out, const json_t *doc)
{
    errno = 0;
    return s_finish(out, json_dumpf(doc, out, JSON_COMPACT | S_DUMP_FLAGS));
}

json_t *cli_error_json(const cairn_error_t *err)
{
    return cli_error_json_extra(err, NULL);
}

json_t *cli_error_json_extra(const cairn_error_t *err, json_t *extra)
{
    json_t *e = json_pack("{s:s, s:s}", "code", cairn_code_name(err->code),
                          "message", err->message);

    if (e && json_is_object(extra))
        json_object_update(e, extra);
    json_decref(extra);
    if (!e)
        return NULL;
    if (err->file[0])
        json_object_set_new(e, "file", json_string(err->file));
    if (err->line > 0)
        json_object_set_new(e, "line", json_integer(err->line));
    if (err->element[0])
        json_object_set_new(e, "element", json_string(err->element));
    return e;
}

void cli_print_error(FILE *out, const cairn_error_t *err)
{
    cli_print_error_extra(out, err, NULL);
}

void cli_print_error_extra(FILE *out, const cairn_error_t *err, json_t *extra)
{
    _cleanup_json_ json_t *doc = json_pack("{s:o*}", "error",
                                           cli_error_json_extra(err, extra));

    if (doc)
        (void)cli_print_json_line(out, doc);
    else
        fprintf(out, "{\"error\":{\"code\":\"system\",\"message\":\"out of "
                     "memory\"}}\n");
}

int cli_exit_code(int r, const cairn_error_t *err)
{
    if (r >= 0)
        return CLI_EXIT_OK;
    if (r == -EREMOTEIO)
        return CLI_EXIT_REMOTE;
    switch (err->code) {
    case CAIRN_USAGE: return CLI_EXIT_USAGE;
    case CAIRN_INVALID_CONFIG: return CLI_EXIT_INVALID;
    case CAIRN_UNAVAILABLE:
    case CAIRN_TIMEOUT: return CLI_EXIT_UNREACHABLE;
    case CAIRN_SYSTEM: return CLI_EXIT_SYSTEM;
    default: return CLI_EXIT_REMOTE;
    }
}

/* A grid of owned strings, rows x cols, printed with padded columns. */
typedef struct s_grid {
    json_t *rows;   /* array of arrays of strings */
    size_t cols;    /* cells per row */
} s_grid_t;

/* Text of a scalar JSON value; caller frees. Arrays of scalars joined with
 * ",", null as "-". */
static char *s_cell_text(const json_t *v)
{
    char *s = NULL;

    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_null(v) || !v)
        return strdup("-");
    if (json_is_array(v)) {
        size_t i, len = 0;
        json_t *item;
        FILE *f = open_memstream(&s, &len);

        if (!f)
            return NULL;
        json_array_foreach(v, i, item) {
            _cleanup_free_ char *t = s_cell_text(item);

            fprintf(f, "%s%s", i ? "," : "", t ? t : "?");
        }
        fclose(f);
        return s;
    }
    return json_dumps(v, S_DUMP_FLAGS | JSON_COMPACT);
}

static int s_grid_add(s_grid_t *g, const char *const *cells)
{
    json_t *row = json_array();

    if (!row)
        return -ENOMEM;
    for (size_t i = 0; i < g->cols; i++)
        json_array_append_new(row, json_string(cells[i] ? cells[i] : ""));
    return json_array_append_new(g->rows, row) == 0 ? 0 : -ENOMEM;
}

/* Prints the grid: cells padded to their column's widest, two spaces
 * between columns, no trailing spaces. */
static int s_grid_print(FILE *out, const s_grid_t *g)
{
    size_t width[16] = { 0 }, i, c;
    json_t *row;

    json_array_foreach(g->rows, i, row)
        for (c = 0; c < g->cols && c < 16; c++) {
            size_t w = strlen(json_string_value(json_array_get(row, c)));

            width[c] = w > width[c] ? w : width[c];
        }
    errno = 0;
    json_array_foreach(g->rows, i, row) {
        for (c = 0; c < g->cols && c < 16; c++) {
            const char *cell = json_string_value(json_array_get(row, c));

            if (c + 1 == g->cols)
                fputs(cell, out);
            else
                fprintf(out, "%-*s  ", (int)width[c], cell);
        }
        fputc('\n', out);
    }
    return fflush(out) == EOF || ferror(out) ? -(errno ? errno : EIO) : 0;
}

void cli_size_text(char *out, size_t size, int64_t bytes)
{
    const char *unit = "KMGT";
    double v = (double)bytes / 1024.0;
    int u = 0;

    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, size, v < 10 ? "%.1f%c" : "%.0f%c", v, unit[u]);
}

int cli_table_rows(FILE *out, const json_t *rows)
{
    _cleanup_json_ json_t *cells = json_array();
    s_grid_t g = { .rows = cells, .cols = json_array_size(json_array_get(rows, 0)) };
    json_t *row, *v;
    size_t i, c;

    if (!cells || !json_is_array(rows) || g.cols == 0 || g.cols > 16)
        return -EINVAL;
    json_array_foreach(rows, i, row) {
        char *text[16] = { NULL };
        int r = 0;

        json_array_foreach(row, c, v)
            if (c < g.cols && !(text[c] = s_cell_text(v)))
                r = -ENOMEM;
        if (r == 0)
            r = s_grid_add(&g, (const char *const *)text);
        for (c = 0; c < 16; c++)
            free(text[c]);
        if (r < 0)
            return r;
    }
    return s_grid_print(out, &g);
}

/* Adds one KEY VALUE row per scalar of obj, prefixing nested keys. */
static int s_grid_add_object(s_grid_t *g, const char *prefix,
                             const json_t *obj)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v) {
        _cleanup_free_ char *name = NULL, *text = NULL;
        int r;

        if (asprintf(&name, "%s%s", prefix, key) < 0)
            return -ENOMEM;
        if (json_is_object(v)) {
            _cleanup_free_ char *sub = NULL;

            if (asprintf(&sub, "%s.", name) < 0)
                return -ENOMEM;
            r = s_grid_add_object(g, sub, v);
        } else {
            text = s_cell_text(v);
            if (!text)
                return -ENOMEM;
            r = s_grid_add(g, (const char *const[]){ name, text });
        }
        if (r < 0)
            return r;
    }
    return 0;
}

int cli_table_object(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *rows = json_array();
    s_grid_t g = { .rows = rows, .cols = 2 };
    int r;

    if (!rows || !json_is_object(result))
        return -EINVAL;
    r = s_grid_add(&g, (const char *const[]){ "KEY", "VALUE" });
    if (r == 0)
        r = s_grid_add_object(&g, "", result);
    return r < 0 ? r : s_grid_print(out, &g);
}

/* Columns of the nodes table: header and the field of each NodeInfo. */
static const char *const s_node_columns[][2] = {
    { "ID", "id" }, { "NAME", "name" }, { "ADDRESS", "address" },
    { "APPLIANCE", "appliance" }, { "STATE", "state" },
    { "INCARNATION", "incarnation" }, { "LAST_HEARD_MS", "last_heard_ms" },
};
#define S_NODE_COLS (sizeof s_node_columns / sizeof s_node_columns[0])

static int s_grid_add_node(s_grid_t *g, const json_t *node, bool self)
{
    char *cells[S_NODE_COLS + 1] = { self ? "*" : "" };
    int r = 0;

    for (size_t c = 0; c < S_NODE_COLS && r == 0; c++) {
        cells[c + 1] = s_cell_text(json_object_get(node, s_node_columns[c][1]));
        if (!cells[c + 1])
            r = -ENOMEM;
    }
    if (r == 0)
        r = s_grid_add(g, (const char *const *)cells);
    for (size_t c = 1; c <= S_NODE_COLS; c++)
        free(cells[c]);
    return r;
}

int cli_table_nodes(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *rows = json_array();
    s_grid_t g = { .rows = rows, .cols = S_NODE_COLS + 1 };
    const char *header[S_NODE_COLS + 1] = { "" };
    json_t *nodes = json_object_get(result, "nodes"), *node;
    json_int_t self = json_integer_value(json_object_get(result, "self"));
    size_t i;
    int r;

    if (!rows || !json_is_array(nodes))
        return -EINVAL;
    for (i = 0; i < S_NODE_COLS; i++)
        header[i + 1] = s_node_columns[i][0];
    r = s_grid_add(&g, header);
    json_array_foreach(nodes, i, node) {
        json_int_t id = json_integer_value(json_object_get(node, "id"));

        if (r == 0)
            r = s_grid_add_node(&g, node, self > 0 && id == self);
    }
    return r < 0 ? r : s_grid_print(out, &g);
}

/* Columns of the keys table: header and the field of each key. */
static const char *const s_key_columns[][2] = {
    { "NODE", "node" }, { "NAME", "name" }, { "FINGERPRINT", "fingerprint" },
    { "STATE", "state" }, { "MODE", "mode" }, { "SECRET_PATH", "secret_path" },
};
#define S_KEY_COLS (sizeof s_key_columns / sizeof s_key_columns[0])

static int s_grid_add_key(s_grid_t *g, const json_t *key)
{
    char *cells[S_KEY_COLS] = { NULL };
    int r = 0;

    for (size_t c = 0; c < S_KEY_COLS && r == 0; c++)
        if (!(cells[c] = s_cell_text(json_object_get(key, s_key_columns[c][1]))))
            r = -ENOMEM;
    if (r == 0)
        r = s_grid_add(g, (const char *const *)cells);
    for (size_t c = 0; c < S_KEY_COLS; c++)
        free(cells[c]);
    return r;
}

int cli_table_keys(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *rows = json_array();
    s_grid_t g = { .rows = rows, .cols = S_KEY_COLS };
    const char *header[S_KEY_COLS];
    json_t *keys = json_object_get(result, "keys"), *key;
    size_t i;
    int r;

    if (!rows || !json_is_array(keys))
        return -EINVAL;
    for (i = 0; i < S_KEY_COLS; i++)
        header[i] = s_key_columns[i][0];
    r = s_grid_add(&g, header);
    json_array_foreach(keys, i, key)
        if (r == 0)
            r = s_grid_add_key(&g, key);
    return r < 0 ? r : s_grid_print(out, &g);
}
