/* seize.h - taking hold of a live tree and running code in it (seize.c).
 *
 * Dump side: freeze a tree with PTRACE_SEIZE + PTRACE_INTERRUPT, inject
 * syscalls into its threads, put them back and let them go (or kill
 * them). Restore side: the injected munmap of a restored process's
 * region. Nothing here owns the tree: dump_tree_t is the caller's and is
 * freed with seize_tree_free.
 */
#ifndef GHOST_SEIZE_H
#define GHOST_SEIZE_H

#include "engine.h"

/* ---- dump: freeze and release ------------------------------------------ */

/* The calling thread's scheduling before seize_hurry, for seize_hurry_end. */
typedef struct seize_sched {
    bool changed;          /* seize_hurry changed it */
    int nice;              /* its nice value before */
} seize_sched_t;

/* Raises the calling thread's priority (nice -20) while a tree is frozen
 * for a short while (the tracking's stop, a delta, pre-copy's last
 * freeze): every moment the dumper waits for a CPU the tree waits too.
 * Threads it starts meanwhile inherit it. Without the right to (no
 * CAP_SYS_NICE), nothing changes. */
void seize_hurry(seize_sched_t *ret_old);

/* Puts the calling thread's priority back as seize_hurry found it. */
void seize_hurry_end(const seize_sched_t *old);

/* Seizes every thread of every process of the tree rooted at root,
 * rescanning task/ and children until stable; *tree collects them. */
int seize_freeze(dump_tree_t *tree, pid_t root, cairn_error_t *err);

/* Puts every thread back as it was and detaches it; true if every one is
 * running again. */
bool seize_release_all(dump_tree_t *tree);

/* SIGKILLs every process (the image is written and synced). */
void seize_kill_all(dump_tree_t *tree);

/* Frees the threads and vmas of every process and the array. */
void seize_tree_free(dump_tree_t *tree);

/* ---- dump: syscall injection ------------------------------------------- */

/* Finds a `syscall` instruction in p's vdso (vm: its vmas). */
int seize_find_vdso_syscall(dump_proc_t *p, const proc_vmas_t *vm,
                            cairn_error_t *err);

/* Saves t's registers and mask, blocks every signal, saves the scratch
 * bytes: t may then run injected syscalls. */
int seize_prepare_thread(dump_thread_t *t, cairn_error_t *err);

/* Runs syscall nr(a[0..5]) in thread t of p; its result into *ret. */
int seize_inject(const dump_proc_t *p, dump_thread_t *t, long nr,
                 const uint64_t a[6], int64_t *ret, cairn_error_t *err);

/* seize_inject whose syscall must succeed (its error names `what`); its
 * result into *ret when ret is not NULL. */
int seize_inject_ok(const dump_proc_t *p, dump_thread_t *t, long nr,
                    const uint64_t a[6], const char *what, int64_t *ret,
                    cairn_error_t *err);

/* Runs syscall nr(a), which writes its answer into t's scratch area, and
 * copies len bytes of that answer into dst. */
int seize_inject_read(const dump_proc_t *p, dump_thread_t *t, long nr,
                      const uint64_t a[6], const char *what, void *dst,
                      size_t len, cairn_error_t *err);

/* len bytes at addr in pid into dst (process_vm_readv). */
int seize_peek(pid_t pid, uint64_t addr, void *dst, size_t len,
               cairn_error_t *err);

/* ---- restore ----------------------------------------------------------- */

/* Runs munmap(start, len) in the held thread tid through the `syscall`
 * at gadget, all signals blocked, then puts its registers back and its
 * mask to `mask`. */
int seize_inject_munmap(pid_t tid, uint64_t start, uint64_t len,
                        uint64_t gadget, uint64_t mask, cairn_error_t *err);

/* Per-thread progress of a restored tree as the tracer sees it. */
enum seize_tstate { SEIZE_RUNNING, SEIZE_IN_SIGRETURN, SEIZE_HELD };

/* Every traced thread of every process of a restored tree. */
typedef struct seize_trace {
    pid_t *tids;           /* threads seen so far */
    enum seize_tstate *st; /* their progress */
    size_t n, cap;         /* seen, allocated */
    size_t held;           /* threads stopped after their rt_sigreturn */
    size_t ready;          /* processes past phase 1 (bytes on `ready`) */
    bool synced;           /* the barrier bytes are written */
} seize_trace_t;

void seize_trace_free(seize_trace_t *tr);

/* One wait for any task of ours (SIGCHLD blocked by the caller): 0 and
 * the task, -EAGAIN after a short sleep with nothing to report (cut
 * short when wake_fd, -1: none, becomes readable), -ETIMEDOUT past
 * deadline_ms (monotonic), -ECHILD when no task is left. */
int seize_wait(pid_t *ret_tid, int *ret_status, uint64_t deadline_ms, int wake_fd);

/* One ptrace stop (status) of restored thread tid, until it is held past
 * its rt_sigreturn. */
int seize_on_stop(seize_trace_t *tr, pid_t tid, int status, cairn_error_t *err);

/* Takes the threads of process p (to come back stopped) that were inside
 * a blocking call back to that call's entry. */
int seize_enter_interrupted(const rst_tree_t *t, const seize_trace_t *tr,
                            size_t p, cairn_error_t *err);

#endif
