/* cmd-config.c - `cairn config check FILE` and `cairn config generate`.
 *
 * Design. Both are thin over libcairn's one description loader and
 * generator (cairn/description.h); nothing here parses XML. check turns a
 * loaded description into a summary, or passes the loader's located error
 * (file, line, element, reason) through as code invalid-config, exit 2 --
 * an unreadable file included, since it is the input that is wrong.
 * generate fills libcairn's description builder for the hosts and has it
 * write the document atomically (temp file in the same directory, fsync,
 * rename) with --output, or returns it inside the JSON result ("xml") so
 * stdout stays one JSON document. A missing parent directory of --output
 * is made first (mode 0755, as mkdir -p): the standard path,
 * /etc/cairn/cluster.xml, is in a directory nothing else creates, and
 * every daemon and user must be able to read what is written there.
 */
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "cairn/description.h"
#include "cli.h"
#include "util/fileio.h"

#define S_MAX_HOSTS 255

const cairn_option_t cli_config_generate_options[] = {
    { "--hosts", "LIST", "comma-separated hosts: name, address or "
      "name=address; ids 1..n in order (required)" },
    { "--appliance", "NAME", "appliance of every node (default compute)" },
    { "--name", "CLUSTER", "cluster name (default cairn)" },
    { "--output", "FILE", "write the XML to FILE (atomically; missing "
      "directories made, mode 0755) instead of returning it in \"xml\"" },
    { NULL, NULL, NULL },
};
enum { O_HOSTS, O_APPLIANCE, O_NAME, O_OUTPUT };

/* Appliance names used by the nodes, each once, in order of first use. */
static json_t *s_appliances_json(const cairn_description_t *d)
{
    json_t *names = json_array();

    for (size_t i = 0; names && i < cairn_description_n_nodes(d); i++) {
        const char *a = cairn_description_node(d, i)->appliance;
        bool seen = false;
        size_t j;
        json_t *v;

        json_array_foreach(names, j, v)
            seen = seen || strcmp(json_string_value(v), a) == 0;
        if (!seen)
            json_array_append_new(names, json_string(a));
    }
    return names;
}

static json_t *s_check_json(const cairn_description_t *d)
{
    return json_pack("{s:b, s:s, s:s, s:I, s:I, s:o*}", "valid", 1,
                     "file", cairn_description_path(d),
                     "cluster", cairn_description_cluster(d),
                     "nodes", (json_int_t)cairn_description_n_nodes(d),
                     "services", (json_int_t)cairn_description_n_services(d),
                     "appliances", s_appliances_json(d));
}

int cli_cmd_config_check(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    cairn_args_t a;
    json_t *result;
    int r;

    r = cairn_args_parse("config check", cli_no_options, argc, argv, 1, &a, err);
    if (r < 0)
        return r;
    if (a.n_pos != 1)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "config check: missing FILE argument");
    r = cairn_description_load(a.pos[0], &d, err);
    if (r < 0) {
        /* The input file is what is wrong, readable or not: exit 2. */
        err->code = CAIRN_INVALID_CONFIG;
        if (!err->file[0])
            snprintf(err->file, sizeof err->file, "%s", a.pos[0]);
        return r;
    }
    result = s_check_json(d);
    cairn_description_free(d);
    if (!result)
        return cli_oom(err);
    *ret_result = result;
    return 0;
}

/* Splits "h1,h2,..." in place into hosts[]; every item must be non-empty. */
static int s_split_hosts(char *list, const char **hosts, size_t *ret_n,
                         cairn_error_t *err)
{
    size_t n = 0;

    for (char *item; (item = strsep(&list, ",")) != NULL;) {
        if (!*item)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "--hosts: empty host in the list");
        if (n == S_MAX_HOSTS)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "--hosts: more than %d hosts", S_MAX_HOSTS);
        hosts[n++] = item;
    }
    *ret_n = n;
    return 0;
}

/* Makes the directory that will hold path when it is missing. */
static int s_make_parent(const char *path, cairn_error_t *err)
{
    _cleanup_free_ char *copy = strdup(path);
    const char *dir;
    struct stat st;
    int r;

    if (!copy)
        return cli_oom(err);
    dir = dirname(copy);
    if (stat(dir, &st) == 0)
        return 0; /* there (or not a directory: the write says so) */
    r = cairn_mkdir_p(dir, 0755);
    if (r < 0) {
        cairn_error_set(err, r, CAIRN_SYSTEM,
                        "cannot create directory %s for %s: %s", dir, path,
                        strerror(-r));
        snprintf(err->file, sizeof err->file, "%s", path);
    }
    return r;
}

/* The JSON result of generate: the builder's document written to output
 * (atomically, by libcairn) or returned in "xml". */
static int s_generate_result(const char *output, const char *cluster,
                             size_t n, cairn_description_builder_t *b,
                             json_t **ret, cairn_error_t *err)
{
    _cleanup_free_ char *xml = NULL;
    json_t *v;
    int r;

    if (output) {
        r = s_make_parent(output, err);
        if (r == 0)
            r = cairn_description_builder_write_file(b, output, err);
        if (r < 0)
            return r;
        v = json_pack("{s:s, s:s, s:I}", "file", output, "cluster", cluster,
                      "nodes", (json_int_t)n);
    } else {
        r = cairn_description_builder_to_string(b, &xml, err);
        if (r < 0)
            return r;
        v = json_pack("{s:s, s:I, s:s}", "cluster", cluster, "nodes",
                      (json_int_t)n, "xml", xml);
    }
    if (!v)
        return cli_oom(err);
    *ret = v;
    return 0;
}

CAIRN_DEFINE_CLEANUP(s_builder_freep, cairn_description_builder_t *,
                     cairn_description_builder_free)

int cli_cmd_config_generate(cli_ctx *ctx, int argc, char **argv,
                            json_t **ret_result, cairn_error_t *err)
{
    const char *hosts[S_MAX_HOSTS], *cluster;
    _cleanup_(s_builder_freep) cairn_description_builder_t *b = NULL;
    _cleanup_free_ char *list = NULL;
    size_t n = 0;
    cairn_args_t a;
    int r;

    r = cairn_args_parse("config generate", cli_config_generate_options, argc,
                       argv, 0, &a, err);
    if (r < 0)
        return r;
    if (!a.values[O_HOSTS])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "config generate: --hosts LIST is required");
    list = strdup(a.values[O_HOSTS]);
    if (!list)
        return cli_oom(err);
    r = s_split_hosts(list, hosts, &n, err);
    if (r < 0)
        return r;
    cluster = a.values[O_NAME] ? a.values[O_NAME] : "cairn";
    r = cairn_description_generate_builder(cluster, hosts, n,
                                           a.values[O_APPLIANCE],
                                           ctx->run_base, &b, err);
    if (r == 0)
        r = s_generate_result(a.values[O_OUTPUT], cluster, n, b, ret_result,
                              err);
    /* What the generator refuses came from our arguments. */
    if (r < 0 && err->code != CAIRN_SYSTEM)
        err->code = CAIRN_USAGE;
    return r;
}
