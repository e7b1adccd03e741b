/* reasons.c - the refusals a check found, all of them (reasons.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reasons.h"
#include "util/array.h"

/* Whether err's code says what is wrong with the process, the image or
 * this node. */
static bool s_refusal_code(const cairn_error_t *err)
{
    return err && (err->code == CAIRN_UNSUPPORTED || err->code == CAIRN_FAILED_PRECONDITION ||
                   err->code == CAIRN_PERMISSION_DENIED);
}

bool ghost_reason_is_refusal(int r, const cairn_error_t *err)
{
    return r < 0 && r != -ESRCH && s_refusal_code(err);
}

/* Room for one more kept reason: its slot, or NULL (full, or no memory). */
static ghost_reason_t *s_slot(ghost_reasons_t *rs)
{
    if (rs->n >= GHOST_REASONS_MAX || CAIRN_GROW(rs->v, rs->cap, rs->n + 1, 4) < 0)
        return NULL;
    return &rs->v[rs->n++];
}

static void s_fill(ghost_reason_t *g, int r, const cairn_error_t *err, pid_t pid)
{
    g->ret = r;
    g->code = err->code;
    g->pid = pid;
    snprintf(g->message, sizeof(g->message), "%s", err->message);
}

int ghost_reason_add(ghost_reasons_t *rs, int r, const cairn_error_t *err, pid_t pid,
                     const char *what_fmt, ...)
{
    if (!rs || !ghost_reason_is_refusal(r, err))
        return r;
    rs->total++;
    ghost_reason_t *g = s_slot(rs);
    if (!g)
        return 0;
    s_fill(g, r, err, pid);
    va_list ap;
    va_start(ap, what_fmt);
    vsnprintf(g->what, sizeof(g->what), what_fmt, ap);
    va_end(ap);
    return 0;
}

int ghost_reasons_first(const ghost_reasons_t *rs, cairn_error_t *err)
{
    if (!rs || rs->n == 0)
        return 0;
    return cairn_error_set(err, rs->v[0].ret, rs->v[0].code, "%s", rs->v[0].message);
}

void ghost_reasons_put_first(ghost_reasons_t *rs, int r, const cairn_error_t *err,
                             pid_t pid, const char *what)
{
    if (!rs || r >= 0 || !s_refusal_code(err))
        return;
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i].message, err->message) == 0) {
            ghost_reason_t g = rs->v[i];   /* found already: moved to the front */
            memmove(&rs->v[1], &rs->v[0], i * sizeof(rs->v[0]));
            rs->v[0] = g;
            return;
        }
    rs->total++;
    if (rs->n == GHOST_REASONS_MAX)
        rs->n--;   /* the last kept one makes room; it is still counted */
    if (!s_slot(rs))
        return;
    memmove(&rs->v[1], &rs->v[0], (rs->n - 1) * sizeof(rs->v[0]));
    s_fill(&rs->v[0], r, err, pid);
    snprintf(rs->v[0].what, sizeof(rs->v[0].what), "%s", what);
}

void ghost_reasons_cut(ghost_reasons_t *rs, size_t n, size_t total)
{
    if (rs && n <= rs->n && total <= rs->total) {
        rs->n = n;
        rs->total = total;
    }
}

void ghost_reasons_clear(ghost_reasons_t *rs)
{
    if (rs)
        rs->n = rs->total = 0;
}

void ghost_reasons_free(ghost_reasons_t *rs)
{
    if (!rs)
        return;
    free(rs->v);
    *rs = (ghost_reasons_t){ 0 };
}
