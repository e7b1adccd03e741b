/* output.h - what `cairn` prints: JSON results, the error object, the exit
 * code of an error, and the --table views.
 *
 * Stdout carries exactly one JSON document per invocation (one line per
 * input line in batch); errors go to stderr as one compact JSON line. No
 * function here exits; main() decides.
 */
#ifndef CAIRN_CLI_OUTPUT_H
#define CAIRN_CLI_OUTPUT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "cairn/error.h"

/* Reals. Every real `cairn` prints is made by cli_json_real, rounded to a
 * fixed number of decimals for its kind (docs/cli.md, "Numbers"), and the
 * printers below write reals with at most CLI_REAL_DIGITS significant
 * digits, so a rounded value prints as itself: 0.079, not
 * 0.079000000000000001. */
#define CLI_MS_DECIMALS 3  /* durations in ms: to the microsecond */
#define CLI_REAL_DIGITS 15 /* DBL_DIG: every such decimal survives */

/* v rounded to `decimals` decimal places (0..9). Caller owns; NULL only on
 * ENOMEM. */
json_t *cli_json_real(double v, int decimals);

/* A duration given in µs as ms with CLI_MS_DECIMALS decimals. */
json_t *cli_json_ms(uint64_t us);

/* Writes doc followed by "\n" and flushes: indented when `out` is a
 * terminal, compact (one line) otherwise. 0 or -errno (-EPIPE, -ENOSPC...). */
int cli_print_json(FILE *out, const json_t *doc);

/* Same, always compact: one line (batch answers, errors). */
int cli_print_json_line(FILE *out, const json_t *doc);

/* The error object's inner part: {"code","message"[,"file","line",
 * "element"]}. Caller owns the result; NULL only on ENOMEM. */
json_t *cli_error_json(const cairn_error_t *err);

/* The same with extra's fields added (cli_ctx.error_extra: a check's
 * "reasons"); takes ownership of extra, which may be NULL. */
json_t *cli_error_json_extra(const cairn_error_t *err, json_t *extra);

/* Prints {"error":{...}} as one line on out (stderr). */
void cli_print_error(FILE *out, const cairn_error_t *err);

/* The same with extra's fields in the error object; takes ownership of
 * extra (NULL: none). */
void cli_print_error_extra(FILE *out, const cairn_error_t *err, json_t *extra);

/* Exit code for a failed command: r is its negative return value, err its
 * error. -EREMOTEIO (the service's own Status) -> 1, usage -> 100,
 * invalid-config -> 2, unavailable/timeout -> 3, system -> 111, anything
 * else -> 1. */
int cli_exit_code(int r, const cairn_error_t *err);

/* bytes as people read them in a view: 12K, 3.4M, 1.2G (binary units). */
void cli_size_text(char *out, size_t size, int64_t bytes);

/* --table views. Each prints plain aligned text; 0 or -errno. */
/* An object as two columns, KEY and VALUE; nested objects flatten to dotted
 * keys, arrays of scalars join with ",". */
int cli_table_object(FILE *out, const json_t *result);
/* rows: an array of arrays of scalars (the first one the header, at most
 * 16 columns), printed as padded columns (null as "-"). */
int cli_table_rows(FILE *out, const json_t *rows);
/* `cairn nodes`: one row per node, "*" in front of the asked node. */
int cli_table_nodes(FILE *out, const json_t *result);
/* `cairn keys list`: one row per key, its state on this host. */
int cli_table_keys(FILE *out, const json_t *result);

#endif
