/* report.h - the one JSON line a ghost helper program prints.
 *
 * ghost-dump and ghost-restore each end by printing exactly one JSON line
 * on stdout (ghostd reads it): their result, or
 * {"error":{"code":"<cairn code name>","message":"..."}}. This is that
 * printer, shared by both.
 */
#ifndef GHOST_REPORT_H
#define GHOST_REPORT_H

#include <jansson.h>

#include "cairn/error.h"

/* Prints j compactly as one line and flushes; takes ownership of j (NULL:
 * nothing is printed, as jansson returns NULL on ENOMEM). */
void ghost_report(json_t *j);

/* Prints err as the error line; returns exit_code for `return` chaining. */
int ghost_report_error(const cairn_error_t *err, int exit_code);

#endif
