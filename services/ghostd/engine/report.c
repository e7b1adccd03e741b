/* report.c - the one JSON line a ghost helper program prints (report.h). */
#include <stdio.h>
#include <stdlib.h>

#include "report.h"

void ghost_report(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s)
        printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

int ghost_report_error(const cairn_error_t *err, int exit_code)
{
    ghost_report(json_pack("{s:{s:s,s:s}}", "error", "code", cairn_code_name(err->code),
                           "message", err->message));
    return exit_code;
}
