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

json_t *ghost_reasons_json(const ghost_reasons_t *rs)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < rs->n; i++) {
        const ghost_reason_t *g = &rs->v[i];
        json_t *o = json_pack("{s:s,s:i,s:s,s:s}", "code", cairn_code_name(g->code),
                              "pid", (int)g->pid, "what", g->what, "message", g->message);
        if (!o || json_array_append_new(a, o) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int ghost_report_refusal(const cairn_error_t *err, const ghost_reasons_t *rs, int exit_code)
{
    if (!rs || rs->n == 0)
        return ghost_report_error(err, exit_code);
    json_t *e = json_pack("{s:s,s:s,s:o*}", "code", cairn_code_name(err->code), "message",
                          err->message, "reasons", ghost_reasons_json(rs));
    if (e && rs->total > rs->n)
        json_object_set_new(e, "more_reasons", json_integer((json_int_t)(rs->total - rs->n)));
    ghost_report(e ? json_pack("{s:o}", "error", e) : NULL);
    return exit_code;
}

json_t *ghost_steps_json(const ghost_dump_steps_t *st)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                     "seize", (json_int_t)st->seize_us, "check", (json_int_t)st->check_us,
                     "state", (json_int_t)st->state_us, "vmas", (json_int_t)st->vmas_us,
                     "pages", (json_int_t)st->pages_us, "files", (json_int_t)st->files_us,
                     "end", (json_int_t)st->end_us, "sync", (json_int_t)st->sync_us,
                     "release", (json_int_t)st->release_us);
}

json_t *ghost_dumper_json(const ghost_dump_stats_t *st)
{
    return json_pack("{s:I,s:I,s:I}", "cpu", (json_int_t)st->dumper_cpu_us, "runqueue",
                     (json_int_t)st->dumper_runqueue_us, "asleep",
                     (json_int_t)st->dumper_asleep_us);
}
