/* util/options.h - one shape of command-line option table for the CLI, the
 * daemons, the engine's helper programs and the benchmarks.
 *
 * Options are described as data (an array of cairn_option_t ending with a
 * NULL name); the same array drives parsing and the help text, so the two
 * cannot disagree. Options are long (`--name VALUE` or `--name=VALUE`);
 * an entry may also give a short alias ("-c"), taking its value as the
 * next argument or attached (`-c FILE`, `-cFILE`), as getopt does (short
 * flags are not bundled: "-hV" is unknown). In a table without an alias
 * for it, `-h` stands for --help when the table has --help. "--" ends
 * option processing. A value is missing when the option is last or is
 * followed by another "--option". Every failure is a CAIRN_USAGE error
 * naming the bad argument; nothing here prints except cairn_options_usage.
 */
#ifndef CAIRN_UTIL_OPTIONS_H
#define CAIRN_UTIL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cairn/error.h"

#define CAIRN_MAX_ARGS 64   /* options + positionals of one command */

/* One option: name with its dashes, the value's placeholder (NULL for a
 * flag), one line of help and, optionally, a short alias. Tables written
 * {name, arg, help} have no alias. */
typedef struct cairn_option {
    const char *name;   /* "--hosts" */
    const char *arg;    /* "LIST", or NULL for a flag */
    const char *help;   /* one line */
    const char *alias;  /* "-c": one dash, one character; NULL for none */
} cairn_option_t;

/* Parsed arguments: values[i] is the value of options[i] ("" for a flag
 * that is set, NULL when absent; the last one given wins); pos[] the
 * positional arguments. The strings point into argv and are not owned. */
typedef struct cairn_args {
    const char *values[CAIRN_MAX_ARGS];
    const char *pos[CAIRN_MAX_ARGS];
    size_t n_pos;
} cairn_args_t;

/* Index of the option `arg` names ("--x", "--x=...", or a short alias
 * "-x", "-xVALUE"), -1 if none; sets *ret_inline to the text after '='
 * (after the alias, for "-xVALUE") when there is one, else NULL. */
int cairn_option_find(const cairn_option_t *options, const char *arg,
                      const char **ret_inline);

/* Takes the value of opt, found at argv[*pos]: inline ("--x=v") or the
 * next argument, which moves *pos past it; "" for a flag. */
int cairn_option_value(const cairn_option_t *opt, const char *inline_value,
                       int argc, char **argv, int *pos, const char **ret,
                       cairn_error_t *err);

/* Parses argv[0..argc) against options; `what` names the program or
 * command in messages. Fails on an unknown option, a missing value, a
 * value given to a flag, or more than max_pos positionals. */
int cairn_args_parse(const char *what, const cairn_option_t *options,
                     int argc, char **argv, size_t max_pos,
                     cairn_args_t *ret, cairn_error_t *err);

/* Parses a decimal integer in [min, max]; the message names `option`. */
int cairn_parse_long(const char *option, const char *value, long min,
                     long max, long *ret, cairn_error_t *err);

/* Prints "usage: PROG SYNOPSIS" and one line per option ("-c, --config
 * FILE" for an option with an alias, the others' names lined up with
 * it). */
void cairn_options_usage(FILE *out, const char *prog, const char *synopsis,
                         const cairn_option_t *options);

#endif
