/* creds.h - who a process is and what it may do (creds.c): credentials,
 * capabilities, securebits, seccomp filters and resource limits, dumped
 * and restored.
 */
#ifndef GHOST_CREDS_H
#define GHOST_CREDS_H

#include "engine.h"
#include "owner.h"
#include "reasons.h"

/* ---- dump -------------------------------------------------------------- */

/* The credentials part of a process record under construction: the
 * record's creds point into it (caller's; creds_free). */
typedef struct creds_dump {
    Cairn__Ghost__Creds creds;
    proc_creds_t pc; /* read with the status; creds' arrays point into it */
    Cairn__Ghost__SeccompFilter *filters; /* n_filters, programs malloc'ed */
    Cairn__Ghost__SeccompFilter **filterv;
    size_t n_filters;
} creds_dump_t;

#define CREDS_DENIED 1   /* creds_check_threads: not the owner's */

/* Every thread of pid: not traced by anyone but `tracer` (0 before we
 * seize), with the leader's credentials, not in strict seccomp mode; with
 * an owner (a user who is not root asks: NULL for root), those
 * credentials are the owner's and the process is dumpable (owner.h).
 * Each refusal goes into rs and the check goes on (0; reasons.h), but
 * the owner's refusal ends it: CREDS_DENIED, the process is not to be
 * looked at further. Without rs the first refusal is returned. */
int creds_check_threads(pid_t pid, pid_t tracer, const ghost_owner_t *owner,
                        ghost_reasons_t *rs, cairn_error_t *err);

/* pr->rlimits, from /proc/PID/limits; freed by creds_free_rlimits. */
int creds_collect_rlimits(const dump_proc_t *p, Cairn__Ghost__Process *pr,
                          cairn_error_t *err);
void creds_free_rlimits(Cairn__Ghost__Process *pr);

/* s->creds from s->pc and what only the task tells (injected in t), then
 * the seccomp filters into pr; pr->creds is the caller's to point. */
int creds_collect(const dump_proc_t *p, dump_thread_t *t, creds_dump_t *s,
                  Cairn__Ghost__Process *pr, cairn_error_t *err);

void creds_free(creds_dump_t *s);

/* ---- restore ----------------------------------------------------------- */

/* The resource limits every process sets (restorer.c). */
int creds_plan_rlimits(rst_plan_t *pl, const rst_proc_t *pr,
                       cairn_error_t *err);

/* Credentials, then seccomp filters, every thread takes last. */
int creds_plan(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int creds_plan_seccomp(rst_plan_t *pl, const rst_proc_t *pr,
                       cairn_error_t *err);

#endif
