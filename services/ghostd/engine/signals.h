/* signals.h - signal state and the syscall-restart rules (signals.c).
 *
 * Dump side: dispositions, itimers and pending signals of a frozen
 * process, and the registers an injected thread resumes with. Restore
 * side: the registers a restored thread resumes with, its pending
 * signals and itimers in the restorer's argument block, and the handlers
 * a child installs. Records built here are freed with sig_free_process /
 * sig_free_pending.
 */
#ifndef GHOST_SIGNALS_H
#define GHOST_SIGNALS_H

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* Every signal's disposition into pr->sigactions (st: p's status). */
int sig_collect_sigactions(const dump_proc_t *p, dump_thread_t *t,
                           const proc_status_t *st, Cairn__Ghost__Process *pr,
                           cairn_error_t *err);

/* The three itimers into pr->itimers. */
int sig_collect_itimers(const dump_proc_t *p, dump_thread_t *t,
                        Cairn__Ghost__Process *pr, cairn_error_t *err);

/* Pending signals of tid: the thread's own, or (shared) the process's;
 * *ret is the caller's, freed with sig_free_pending. */
int sig_collect_pending(pid_t tid, bool shared, Cairn__Ghost__SigInfo ***ret,
                        size_t *ret_n, cairn_error_t *err);

void sig_free_pending(Cairn__Ghost__SigInfo **v, size_t n);

/* Frees what the sig_collect_* calls put into pr. */
void sig_free_process(Cairn__Ghost__Process *pr);

/* The registers r of a thread that ran injected syscalls, made to resume
 * as the kernel would have resumed it had we run nothing. */
void sig_restart_injected(struct user_regs_struct *r);

/* ---- restore ----------------------------------------------------------- */

/* Registers r of thread t of process pr as it must resume: a syscall the
 * dump interrupted is re-executed, or returns EINTR. */
void sig_fix_restart(struct user_regs_struct *r, const rst_proc_t *pr,
                     const Cairn__Ghost__Thread *t);

/* The pending signals of pr into pl's argument block. */
int sig_plan_pending(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* The armed itimers of pr into pl's argument block. */
int sig_plan_itimers(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* In a child's libc stage: p's handlers (fails the child on error). */
void sig_child_sigactions(const rst_plan_t *pl, const Cairn__Ghost__Process *p);

#endif
