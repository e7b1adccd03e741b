/* report.h - the one JSON line a ghost helper program prints.
 *
 * ghost-dump and ghost-restore each end by printing exactly one JSON line
 * on stdout (ghostd reads it): their result, or
 * {"error":{"code":"<cairn code name>","message":"..."}}. A refusal adds
 * every reason its check found (reasons.h), the first being the error:
 * {"error":{"code","message","reasons":[{"code","pid","what","message"},
 * ...],"more_reasons":N}} (more_reasons: found beyond those listed, only
 * when there are). This is that printer, shared by both.
 */
#ifndef GHOST_REPORT_H
#define GHOST_REPORT_H

#include <jansson.h>

#include "cairn/error.h"
#include "dump.h"
#include "reasons.h"

/* Prints j compactly as one line and flushes; takes ownership of j (NULL:
 * nothing is printed, as jansson returns NULL on ENOMEM). */
void ghost_report(json_t *j);

/* Prints err as the error line; returns exit_code for `return` chaining. */
int ghost_report_error(const cairn_error_t *err, int exit_code);

/* The reasons as a JSON array (new reference; NULL on ENOMEM). */
json_t *ghost_reasons_json(const ghost_reasons_t *rs);

/* Prints err as the error line with rs's reasons when it holds any (rs
 * may be NULL); returns exit_code. */
int ghost_report_refusal(const cairn_error_t *err, const ghost_reasons_t *rs, int exit_code);

/* The frozen part's steps as {"seize":N,"check":N,...} in microseconds
 * (a dump's "steps_us"; new reference, NULL on ENOMEM). */
json_t *ghost_steps_json(const ghost_dump_steps_t *st);

/* The frozen part seen from the dumper's thread, {"cpu":N,"runqueue":N,
 * "asleep":N} in microseconds (a dump's "dumper_us"; new reference). */
json_t *ghost_dumper_json(const ghost_dump_stats_t *st);

#endif
