/* util/options.c - the option-table parser shared by every program of the
 * tree (options.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

/* "-x" or "-xVALUE" against the table's aliases: getopt's short options,
 * without bundling. */
static int s_find_alias(const cairn_option_t *options, const char *arg,
                        const char **ret_inline)
{
    for (int i = 0; options[i].name; i++) {
        const char *alias = options[i].alias;

        if (!alias || alias[0] != '-' || alias[1] != arg[1] || alias[2])
            continue;
        if (arg[2] && !options[i].arg)
            return -1;
        *ret_inline = arg[2] ? arg + 2 : NULL;
        return i;
    }
    return -1;
}

int cairn_option_find(const cairn_option_t *options, const char *arg,
                      const char **ret_inline)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

    if (arg[0] == '-' && arg[1] && arg[1] != '-') {
        int i = s_find_alias(options, arg, ret_inline);

        if (i >= 0 || strcmp(arg, "-h") != 0)
            return i;
        /* The one hard-wired alias, where --help has none of its own. */
        i = cairn_option_find(options, "--help", ret_inline);
        return i >= 0 && !options[i].alias ? i : -1;
    }
    for (int i = 0; options[i].name; i++)
        if (strlen(options[i].name) == len &&
            strncmp(options[i].name, arg, len) == 0) {
            *ret_inline = eq ? eq + 1 : NULL;
            return i;
        }
    return -1;
}

int cairn_option_value(const cairn_option_t *opt, const char *inline_value,
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

int cairn_args_parse(const char *what, const cairn_option_t *options,
                     int argc, char **argv, size_t max_pos,
                     cairn_args_t *ret, cairn_error_t *err)
{
    cairn_args_t a = { 0 };
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *inline_value = NULL;
        int index, r;

        if (!options_done && strcmp(argv[i], "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || argv[i][0] != '-' || argv[i][1] == '\0') {
            if (a.n_pos >= max_pos || a.n_pos >= CAIRN_MAX_ARGS)
                return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                       "%s: unexpected argument '%s'", what,
                                       argv[i]);
            a.pos[a.n_pos++] = argv[i];
            continue;
        }
        index = cairn_option_find(options, argv[i], &inline_value);
        if (index < 0 || index >= CAIRN_MAX_ARGS)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "%s: unknown option '%s'", what, argv[i]);
        r = cairn_option_value(&options[index], inline_value, argc, argv, &i,
                               &a.values[index], err);
        if (r < 0)
            return r;
    }
    *ret = a;
    return 0;
}

int cairn_parse_long(const char *option, const char *value, long min,
                     long max, long *ret, cairn_error_t *err)
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

void cairn_options_usage(FILE *out, const char *prog, const char *synopsis,
                         const cairn_option_t *options)
{
    bool aliases = false;

    for (int i = 0; options[i].name; i++)
        aliases |= options[i].alias != NULL;
    fprintf(out, "usage: %s%s%s\n", prog, synopsis && *synopsis ? " " : "",
            synopsis ? synopsis : "");
    for (int i = 0; options[i].name; i++) {
        char left[64];

        /* Long names line up under those that follow an alias. */
        snprintf(left, sizeof left, "%s%s%s%s%s",
                 options[i].alias ? options[i].alias : "",
                 options[i].alias ? ", " : aliases ? "    " : "",
                 options[i].name,
                 options[i].arg ? " " : "",
                 options[i].arg ? options[i].arg : "");
        fprintf(out, "  %-24s %s\n", left, options[i].help);
    }
}
