/* procstate.h - process-wide and per-thread settings outside memory, fds,
 * registers and signals (procstate.c): POSIX timers, oom_score_adj, THP
 * disable, membarrier registrations, the child-subreaper flag; per thread
 * its name, timer slack, scheduling, cpus, io priority, parent-death
 * signal and prctl flags (MCE kill, TSC, IO flusher, speculation).
 *
 * Dump side: the check refuses what cannot come back (read from /proc
 * only); the collect reads the rest from /proc, from the dumper's own
 * calls on the tid (sched_getattr, sched_getaffinity, ioprio_get) and by
 * calls injected into the frozen threads (prctl getters, timer_gettime,
 * membarrier). Restore side: the process-wide settings in the child's
 * libc stage, the per-thread ones and the timers in the restorer blob
 * (gr_tstate, gr_timer). Records built here are the caller's buffers,
 * freed with procstate_free.
 */
#ifndef GHOST_PROCSTATE_H
#define GHOST_PROCSTATE_H

#include "engine.h"
#include "reasons.h"
#include "verify.h"

/* ---- dump -------------------------------------------------------------- */

/* A process record's ProcState under construction (caller's). */
typedef struct procstate_dump {
    Cairn__Ghost__Process__ProcState ps;
    Cairn__Ghost__Process__PosixTimer *timers;   /* n_timers */
    Cairn__Ghost__Process__PosixTimer **timerv;
} procstate_dump_t;

/* A thread record's State under construction (caller's). */
typedef struct procstate_thread {
    Cairn__Ghost__Thread__State st;
    char comm[64];           /* as /proc/TID/stat names it */
    uint8_t affinity[128];   /* 1024 cpus */
} procstate_thread_t;

/* What of pid (st: its /proc/PID/stat) cannot be restored, from /proc
 * and kcmp only: timers on a clock we cannot make again (another
 * process's or thread's cpu clock, a thread cpu-time timer of a
 * multi-threaded process), an exit signal other than SIGCHLD, a NUMA
 * memory policy, SysV semaphore undo adjustments. Each refusal into rs.
 * numa_seen: a check before the freeze read numa_maps already and the
 * freeze must be short (dump.c's hurried check): its page-table walk
 * (about 12 ms per GiB) is not made again -- an mbind between the two
 * looks is the race accepted for madvise's VmFlags (mem.h). */
int procstate_check(pid_t pid, const proc_stat_t *st, bool numa_seen, ghost_reasons_t *rs,
                    cairn_error_t *err);

/* s->ps of p (injected in leader t); pr->procstate is the caller's to
 * point at &s->ps. */
int procstate_collect(const dump_proc_t *p, dump_thread_t *t, procstate_dump_t *s,
                      cairn_error_t *err);
void procstate_free(procstate_dump_t *s);

/* Frozen p, before anything is injected in it: refuses syscall user
 * dispatch (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, 6.4+): the
 * restorer's own syscalls would be dispatched, and with its selector on
 * "block" so would the dump's injected ones. */
int procstate_check_frozen(const dump_proc_t *p, cairn_error_t *err);

/* b->st of thread t of p (up: p's parent in the tree, NULL for the
 * root; the leader first: it sets p->session_keyring); th->state is the
 * caller's to point at &b->st. Refuses a core-scheduling cookie, a NUMA
 * memory policy, a thread or process keyring, a session keyring joined
 * inside the tree. */
int procstate_collect_thread(dump_proc_t *p, dump_thread_t *t, const dump_proc_t *up,
                             procstate_thread_t *b, cairn_error_t *err);

/* ---- restore ----------------------------------------------------------- */

/* Region bytes pr's settings take in its plan. */
uint64_t procstate_region_bytes(const rst_proc_t *pr);

/* Every thread's settings and the timers into pl's argument block (after
 * threads_plan). */
int procstate_plan(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* In a child's libc stage: the process-wide settings (fails the child on
 * error). */
void procstate_child(const rst_plan_t *pl, const Cairn__Ghost__Process *p);

/* A user's image (not root's): the settings the restorer, still root,
 * would make that the user could not make themselves -- oom_score_adj or
 * an autogroup nice below 0, a thread's nice below 0, a real-time or
 * deadline policy, the real-time io class, the IO-flusher flag -- refused
 * (-EPERM, PERMISSION_DENIED, naming the process and the setting). */
int procstate_check_owner(const rst_proc_t *pr, cairn_error_t *err);

/* ---- verify ------------------------------------------------------------ */

/* The verifier's check of what only this file restores (verify.c's table;
 * oom_score_adj, THP, timers and thread names are verify.c's own): the
 * core-dump filter, and per thread (where the process kept its pid)
 * scheduling, io priority and cpus (a subset: cosmetic, the node's
 * cpuset narrowed them). */
int procstate_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                     cairn_error_t *err);

#endif
