/* tree.c - the process tree, both directions: who is in it, and how
 * sessions and groups come back.
 *
 * Dump side. The tree is its root and every descendant (/proc children).
 * A process of it must have its own memory: a child made by vfork shares
 * its parent's until it calls exec, and two images of one memory would
 * come back as two. Members that exit while the tree is looked at are
 * told apart from members that are refused (tree_vanished, tree_gone).
 *
 * Restore side. The image's tree is checked as it is loaded: the root
 * first, every parent before its children. Sessions and groups are
 * decided before anything is made: a process leading its session or
 * group creates it; one in another member's group joins it after the
 * barrier, once every leader exists. The root's session or group, when
 * led from outside the tree, is replaced by the caller's (a session
 * cannot be joined); members that shared it with the root follow.
 * Members in a session other than their parent's without leading it, or
 * in a group led from outside that the root is not in, are refused. Each
 * process clone3s its own children with set_tid = their original pid, so
 * parents come before children and getppid() is right.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <linux/sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "tree.h"
#include "util/array.h"
#include "util/cleanup.h"

/* ---- dump -------------------------------------------------------------- */

/* Whether pid (a process or a thread) has exited and been reaped. */
bool tree_vanished(pid_t pid)
{
    proc_stat_t st;
    return proc_read_stat(pid, &st, NULL) < 0;
}

/* Whether it has exited: reaped, or a zombie. */
bool tree_gone(pid_t pid)
{
    proc_stat_t st;
    return proc_read_stat(pid, &st, NULL) < 0 || proc_state_exited(st.state);
}

/* pid and all its descendants, parents first; (*ret)[i*2+1] is the parent. */
int tree_list(pid_t root, pid_t **ret, size_t *ret_n, cairn_error_t *err)
{
    _cleanup_free_ pid_t *v = NULL;   /* pairs: pid, parent */
    size_t n = 1, cap = 0;
    if (CAIRN_GROW(v, cap, 2, 32) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    v[0] = root;
    v[1] = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        pid_t *ch = NULL;
        size_t nc = 0;
        r = proc_list_children(v[i * 2], &ch, &nc, err);
        if (r == -ENOENT || r == -ESRCH)
            r = i == 0 ? cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d",
                                         (int)root) : 0;
        for (size_t j = 0; r == 0 && j < nc; j++) {
            if (CAIRN_GROW(v, cap, (n + 1) * 2, 32) < 0) {
                r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
                break;
            }
            v[n * 2] = ch[j];
            v[n * 2 + 1] = v[i * 2];
            n++;
        }
        free(ch);
    }
    if (r < 0)
        return r;
    *ret = TAKE_PTR(v);
    *ret_n = n;
    return 0;
}

/* A process of the tree must have its own memory: a child made by vfork
 * (posix_spawn, many a runtime's process launcher) shares its parent's
 * until it calls exec or exits, and two images of one memory would come
 * back as two (the parent then repeats its vfork). -EBUSY, a moment the
 * next look is likely past (dump.c's s_tree_moved); one that stays (a
 * CLONE_VM process pair) is refused. */
int tree_own_memory(pid_t parent, pid_t pid, cairn_error_t *err)
{
    long k = syscall(SYS_kcmp, parent, pid, KCMP_VM, 0, 0);
    if (k == 0)
        return cairn_error_set(err, -EBUSY, CAIRN_UNSUPPORTED,
                               "process %d shares its memory with its parent %d (a vfork "
                               "child that has not called exec yet, or CLONE_VM): not "
                               "restorable", (int)pid, (int)parent);
    if (k < 0 && errno != ENOSYS)   /* a kernel without kcmp cannot tell */
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "kcmp of %d and %d: %s",
                               (int)parent, (int)pid, strerror(errno));
    return 0;
}

/* ---- restore ----------------------------------------------------------- */

int tree_index_of(const rst_image_t *im, uint32_t pid)
{
    for (size_t i = 0; i < im->n_procs; i++)
        if (im->procs[i].process->process->pid == pid)
            return (int)i;
    return -1;
}

/* Links every process to its parent: the root first (ppid 0), every
 * other one after its parent; pids and thread ids unique. */
int tree_check_image(rst_image_t *im, uint64_t at, cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++) {
        const Cairn__Ghost__Process *p = im->procs[i].process->process;
        im->procs[i].parent = -1;
        for (size_t j = 0; j < i; j++) {
            if (im->procs[j].process->process->pid == p->pid)
                return rst_bad(err, "two processes with one pid", at);
            if (im->procs[j].process->process->pid == p->ppid)
                im->procs[i].parent = (int)j;
        }
        if (p->pid == 0 || (i == 0) != (p->ppid == 0))
            return rst_bad(err, "the first process is not the only root", at);
        if (i > 0 && im->procs[i].parent < 0)
            return rst_bad(err, "a process comes before its parent or its "
                           "parent is not in the image", at);
    }
    return 0;
}

/* Session and group of one process, decided before anything is made. */
typedef struct tree_job {
    bool setsid;           /* it leads its session: setsid() */
    int group;             /* index of its group leader; -1: the group of
                              the caller (the root's group was outside the
                              tree) */
} s_job_t;

static int s_refuse_job(cairn_error_t *err, const Cairn__Ghost__Process *p,
                        const char *why)
{
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "process %u (session %u, group %u): %s", p->pid,
                           p->sid, p->pgid, why);
}

/* Session of process i: it leads its own (setsid), or it is in its
 * parent's (inherited by fork); the root may also stay in the session
 * of the caller when its own session leader is not in the tree. */
static int s_job_session(rst_tree_t *t, size_t i, cairn_error_t *err)
{
    const rst_proc_t *pr = &t->im->procs[i];
    const Cairn__Ghost__Process *p = pr->process->process;

    t->jobs[i].setsid = p->sid == p->pid;
    if (t->jobs[i].setsid)
        return 0;
    if (pr->parent < 0)
        return tree_index_of(t->im, p->sid) < 0 ? 0 :
               s_refuse_job(err, p, "the root's session leader is one of "
                            "its descendants");
    if (t->im->procs[pr->parent].process->process->sid != p->sid)
        return s_refuse_job(err, p, "in another session than its parent "
                            "without leading it (the parent called setsid "
                            "after forking it): cannot be recreated by fork");
    return 0;
}

/* Group of process i: its own, the group of a process of the tree, or
 * (when the leader is not in the tree) the root's group if it shares it:
 * the root then stays in the caller's group and so does i. */
static int s_job_group(rst_tree_t *t, size_t i, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = t->im->procs[i].process->process;
    const Cairn__Ghost__Process *root = t->im->procs[0].process->process;
    int l = tree_index_of(t->im, p->pgid);

    if (t->jobs[i].setsid && p->pgid != p->pid)
        return s_refuse_job(err, p, "leads its session but not its group");
    t->jobs[i].group = l;
    if (l >= 0 && t->im->procs[l].process->process->sid != p->sid)
        return s_refuse_job(err, p, "its group leader is in another session");
    if (l < 0 && (p->pgid != root->pgid || p->sid != root->sid))
        return s_refuse_job(err, p, "its group leader is not in the tree and "
                            "the root is not in that group");
    /* Inside a job's pid namespace a group led from outside cannot be
     * named: only fork keeps a process in it, so its parent must be. */
    if (l < 0 && t->job && i > 0 && t->jobs[t->im->procs[i].parent].group >= 0)
        return s_refuse_job(err, p, "in the group the job's root was started in, "
                            "which its parent left: cannot be joined again from "
                            "inside the job's pid namespace");
    return 0;
}

int tree_plan_jobs(rst_tree_t *t, cairn_error_t *err)
{
    int ret = 0;

    t->jobs = calloc(t->im->n_procs, sizeof *t->jobs);
    if (!t->jobs)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    t->caller_pgrp = getpgrp();
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++)
        ret = s_job_session(t, i, err);
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++)
        ret = s_job_group(t, i, err);
    return ret;
}

/* The first id of the image that a task still holds: 0 if none, else
 * the id, with *dead set if that task has exited and only waits to be
 * reaped (a zombie: a tree just killed by its checkpoint is reaped by
 * its parents a moment later) and *parent its parent. */
static uint32_t s_first_taken(const rst_image_t *im, bool *dead, pid_t *parent, bool *is_pid)
{
    for (size_t p = 0; p < im->n_procs; p++) {
        const rst_proc_t *pr = &im->procs[p];
        for (size_t i = 0; i < pr->threads.n; i++) {
            uint32_t tid = pr->threads.v[i]->thread->tid;
            proc_stat_t st;
            int r = proc_read_stat((pid_t)tid, &st, NULL);
            if (r == -ENOENT || r == -ESRCH)
                continue;   /* free */
            bool known = r == 0;   /* held, by what we may not be able to tell */
            *dead = known && proc_state_exited(st.state);
            *parent = known ? st.ppid : 0;
            *is_pid = tid == pr->process->process->pid;
            return tid;
        }
    }
    return 0;
}

/* Whether every id of the image is free (same-pid restore only): all or
 * nothing, checked before anything is made. An id held by a task that
 * has exited is waited for, up to S_REAP_GRACE_MS, to be reaped. */
#define S_REAP_GRACE_MS 2000
int tree_check_ids(const rst_image_t *im, cairn_error_t *err)
{
    for (int waited = 0;; waited += 10) {
        bool dead = false, is_pid = false;
        pid_t parent = 0;
        uint32_t tid = s_first_taken(im, &dead, &parent, &is_pid);
        if (tid == 0)
            return 0;
        if (!dead)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "%s %u is taken by another process",
                                   is_pid ? "pid" : "thread id", tid);
        if (waited >= S_REAP_GRACE_MS)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "%s %u is still held by a process that exited and "
                                   "that its parent %d has not reaped in %d ms",
                                   is_pid ? "pid" : "thread id", tid, (int)parent,
                                   S_REAP_GRACE_MS);
        usleep(10000);
    }
}

/* clone3 as a fork: set_tid = want (0: any pid). Returns as fork does. */
pid_t tree_fork_pid(pid_t want)
{
    struct clone_args ca = { .exit_signal = SIGCHLD };
    pid_t set_tid = want;

    if (want) {
        ca.set_tid = (uint64_t)(uintptr_t)&set_tid;
        ca.set_tid_size = 1;
    }
    return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

/* Forks every child of process i, each into its own libc stage. */
void tree_child_fork_children(rst_tree_t *t, size_t i,
                              void (*child_main)(rst_tree_t *t, size_t i))
{
    const rst_plan_t *pl = &t->plans[i];

    for (size_t j = i + 1; j < t->im->n_procs; j++) {
        const Cairn__Ghost__Process *c = t->im->procs[j].process->process;
        pid_t pid;
        if (t->im->procs[j].parent != (int)i)
            continue;
        pid = tree_fork_pid(t->new_pid ? 0 : (pid_t)c->pid);
        if (pid == 0)
            child_main(t, j);
        if (pid < 0)
            rst_child_fail(pl, errno, 0, "clone3 of child %u%s: %s", c->pid,
                           t->new_pid ? "" : " with set_tid", strerror(errno));
    }
}

/* Phase 2, first step: the group led by another process of the tree, or
 * the caller's group (the root's group was outside the tree). */
void tree_child_join_group(const rst_tree_t *t, size_t i)
{
    const s_job_t *j = &t->jobs[i];
    pid_t want = j->group < 0 ? t->caller_pgrp : (pid_t)t->pids[j->group];

    if (j->group == (int)i || getpgrp() == want)
        return;
    if (j->group < 0 && t->job)
        return;   /* forked into the root's, the caller's (tree_plan_jobs) */
    if (setpgid(0, want) < 0)
        rst_child_fail(&t->plans[i], errno, 0, "setpgid(0, %d) (group %u): %s",
                       want, t->im->procs[i].process->process->pgid,
                       strerror(errno));
}

void tree_child_session(const rst_tree_t *t, size_t i)
{
    const rst_plan_t *pl = &t->plans[i];
    const s_job_t *j = &t->jobs[i];

    if (j->setsid && setsid() < 0)
        rst_child_fail(pl, errno, 0, "setsid: %s", strerror(errno));
    if (!j->setsid && j->group == (int)i && setpgid(0, 0) < 0)
        rst_child_fail(pl, errno, 0, "setpgid(0, 0): %s", strerror(errno));
}
