/* threads.h - the threads of a process (threads.c): registers, xsave,
 * rseq, robust list, altstack, clear-tid address; at restore, each
 * thread's rt_sigframe.
 */
#ifndef GHOST_THREADS_H
#define GHOST_THREADS_H

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* One Thread record per thread of p (prepared for injection). */
int threads_write(dump_ctx_t *c, dump_proc_t *p, cairn_error_t *err);

/* ---- restore ----------------------------------------------------------- */

/* Region bytes thread i of pr's sigframe takes (for sizing the region). */
uint64_t threads_frame_size(const rst_proc_t *pr, size_t i);

/* Every thread of pr into pl's argument block: its stack, its kernel
 * state and its rt_sigframe (registers with the syscall restart applied,
 * sigmask, altstack, xsave checked against this CPU). */
int threads_plan(rst_plan_t *pl, const rst_proc_t *pr, bool new_pid,
                 cairn_error_t *err);

/* The thread of image process pr whose registers (as it resumes) are r,
 * NULL if none; *ret_reenters: whether it resumes by entering again the
 * call the dump interrupted. */
const Cairn__Ghost__Thread *
threads_image_thread(const rst_proc_t *pr, const struct user_regs_struct *r,
                     bool *ret_reenters);

/* In a child's libc stage: drops the rseq area glibc registered (fails
 * the child on error). */
void threads_child_drop_rseq(const rst_plan_t *pl);

#endif
