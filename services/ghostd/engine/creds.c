/* creds.c - credentials and limits, both directions: uids and gids,
 * groups, capabilities, securebits, no_new_privs, dumpable, seccomp
 * filters and resource limits.
 *
 * Dump side. The image holds one set of credentials per process, the
 * leader's: the check refuses a thread with others (threads that called
 * setresuid(2) themselves, not through libc's broadcast, would all come
 * back as the leader) and strict seccomp mode (it allows no syscall we
 * could inject, nor the restorer's). Most come from /proc/PID/status;
 * securebits and the dumpable flag only the task can tell (injected
 * prctl), the filters only ptrace. Resource limits are read from
 * /proc/PID/limits.
 *
 * Restore side. The restorer's argument block carries them; every thread
 * takes the credentials and filters last (restorer.c), so the restorer
 * runs as itself until the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "creds.h"
#include "seize.h"
#include "util/cleanup.h"
#include "util/fileio.h"

/* ---- dump: the check --------------------------------------------------- */

/* One thread (the leader: leader NULL): gone meanwhile is fine (the freeze
 * rescans); not traced by anyone but `tracer` (0 before we seize); the
 * leader's credentials, which the image holds once for all threads
 * (threads that called setresuid(2) themselves, not through libc's
 * broadcast, would all come back as the leader). With keep, the
 * credentials read go there. */
static int s_check_thread(pid_t pid, pid_t tid, pid_t tracer, const proc_creds_t *leader,
                          proc_creds_t *keep, cairn_error_t *err)
{
    proc_status_t st;
    proc_creds_t c = { 0 };
    int r = proc_read_status(tid, &st, &c, err);
    if (r == -ENOENT || r == -ESRCH)
        return tid == pid ? r : 0;
    if (r == 0 && st.tracer_pid != 0 && st.tracer_pid != tracer)
        r = cairn_error_set(err, -EBUSY, CAIRN_FAILED_PRECONDITION,
                            "process %d thread %d is already traced by %d", (int)pid,
                            (int)tid, (int)st.tracer_pid);
    if (r == 0 && leader && !proc_creds_equal(&c, leader))
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d thread %d has credentials other than its "
                            "leader's (uid %u/%u, gid %u/%u)", (int)pid, (int)tid,
                            c.uid[0], c.uid[1], c.gid[0], c.gid[1]);
    if (r == 0 && keep)
        *keep = c;
    else
        proc_creds_free(&c);
    return r;
}

/* The leader's credentials are the owner's and the process is dumpable
 * (owner.h (a)-(d)). The threads share them (s_check_thread), and once the
 * tree is frozen they cannot change: the check of the frozen tree is the
 * one that counts. */
static int s_check_owner(pid_t pid, const ghost_owner_t *owner, const proc_creds_t *leader,
                         cairn_error_t *err)
{
    char what[32];
    snprintf(what, sizeof(what), "process %d", (int)pid);
    int r = ghost_owner_check_creds(owner, leader, what, err);
    return r < 0 ? r : ghost_owner_check_dumpable(owner, pid, err);
}

/* Every thread: see s_check_thread. Each refusal is filed in rs and the
 * check goes on (reasons.h); a permission refusal ends it with
 * CREDS_DENIED (what else a process the asker may not dump holds is none
 * of their business). */
int creds_check_threads(pid_t pid, pid_t tracer, const ghost_owner_t *owner,
                        ghost_reasons_t *rs, cairn_error_t *err)
{
    int *tids = NULL;
    size_t n = 0;
    proc_creds_t leader = { 0 };
    int r = proc_list_dir(pid, "task", &tids, &n, err);
    if (r == 0)
        r = ghost_reason_add(rs, s_check_thread(pid, pid, tracer, NULL, &leader, err), err,
                             pid, "thread %d", (int)pid);
    if (r == 0 && owner && (r = s_check_owner(pid, owner, &leader, err)) < 0 &&
        err->code == CAIRN_PERMISSION_DENIED && ghost_reason_add(rs, r, err, pid, "process") == 0)
        r = CREDS_DENIED;
    /* Strict mode allows no syscall we could inject, nor the restorer's. */
    if (r == 0 && leader.seccomp == 1)
        r = ghost_reason_add(rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                                 "process %d is in strict seccomp mode",
                                                 (int)pid),
                             err, pid, "process");
    for (size_t i = 0; r == 0 && i < n; i++)
        if (tids[i] != pid)
            r = ghost_reason_add(rs, s_check_thread(pid, tids[i], tracer, &leader, NULL, err),
                                 err, pid, "thread %d", (int)tids[i]);
    proc_creds_free(&leader);
    free(tids);
    return r;
}

/* ---- dump: collect ----------------------------------------------------- */

/* Resource limits from /proc/PID/limits: prlimit(2) from outside needs
 * CAP_SYS_RESOURCE for a process of another user, which a root without it
 * (a container, this build VM) lacks, and injecting prlimit64 costs a stop
 * per resource. */
int creds_collect_rlimits(const dump_proc_t *p, Cairn__Ghost__Process *pr,
                          cairn_error_t *err)
{
    uint64_t rl[RLIM_NLIMITS][2];
    int r = proc_read_limits(p->pid, rl, RLIM_NLIMITS, err);
    if (r < 0)
        return r;
    pr->rlimits = calloc(RLIM_NLIMITS, sizeof(*pr->rlimits));
    if (!pr->rlimits)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (int res = 0; res < RLIM_NLIMITS; res++) {
        Cairn__Ghost__Rlimit *l = malloc(sizeof(*l));
        if (!l)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        cairn__ghost__rlimit__init(l);
        l->resource = (uint32_t)res, l->cur = rl[res][0], l->max = rl[res][1];
        pr->rlimits[pr->n_rlimits++] = l;
    }
    return 0;
}

void creds_free_rlimits(Cairn__Ghost__Process *pr)
{
    for (size_t i = 0; i < pr->n_rlimits; i++)
        free(pr->rlimits[i]);
    free(pr->rlimits);
}

static void s_free_filters(creds_dump_t *s)
{
    for (size_t i = 0; i < s->n_filters; i++)
        free(s->filters[i].prog.data);
    free(s->filters);
    free(s->filterv);
    s->filters = NULL, s->filterv = NULL, s->n_filters = 0;
}

/* One thread's seccomp filters, newest first (index 0 is the last
 * installed), into *ret (caller frees each prog and the array). */
static int s_read_filters(pid_t tid, Cairn__Ghost__SeccompFilter **ret, size_t *ret_n,
                          cairn_error_t *err)
{
    Cairn__Ghost__SeccompFilter *v = NULL;
    size_t n = 0;
    for (;; n++) {
        long len = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)n, NULL);
        if (len < 0 && errno == ENOENT)
            break;
        Cairn__Ghost__SeccompFilter *nv = len > 0 ? realloc(v, (n + 1) * sizeof(*v)) : NULL;
        uint8_t *prog = nv ? malloc((size_t)len * 8) : NULL;
        struct { uint64_t filter_off, flags; } md = { n, 0 };
        if (nv)
            v = nv;
        if (!prog || ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)n, prog) != len ||
            ptrace(PTRACE_SECCOMP_GET_METADATA, tid, (void *)sizeof(md), &md) < 0) {
            int e = len < 0 || !prog ? (len < 0 ? errno : ENOMEM) : errno;
            free(prog);
            for (size_t i = 0; i < n; i++)
                free(v[i].prog.data);
            free(v);
            return cairn_error_set(err, -e, CAIRN_SYSTEM,
                                   "seccomp filter %zu of thread %d: %s", n, (int)tid,
                                   strerror(e));
        }
        cairn__ghost__seccomp_filter__init(&v[n]);
        v[n].prog.data = prog, v[n].prog.len = (size_t)len * 8;
        v[n].flags = (uint32_t)md.flags;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* A filter that hands syscalls to a user-space supervisor cannot come back
 * without it: SECCOMP_RET_USER_NOTIF anywhere in the program. */
static bool s_filter_notifies(const Cairn__Ghost__SeccompFilter *f)
{
    for (size_t i = 0; i + 8 <= f->prog.len; i += 8) {
        const uint8_t *in = f->prog.data + i;
        uint16_t code = (uint16_t)(in[0] | in[1] << 8);
        uint32_t k = (uint32_t)in[4] | (uint32_t)in[5] << 8 | (uint32_t)in[6] << 16 |
                     (uint32_t)in[7] << 24;
        if (code == (BPF_RET | BPF_K) && (k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF)
            return true;
    }
    return false;
}

static bool s_same_filters(const Cairn__Ghost__SeccompFilter *a, size_t na,
                           const Cairn__Ghost__SeccompFilter *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].flags != b[i].flags || a[i].prog.len != b[i].prog.len ||
            memcmp(a[i].prog.data, b[i].prog.data, a[i].prog.len) != 0)
            return false;
    return true;
}

/* The process's seccomp filters (mode 2), oldest first, the same for every
 * thread. A filter notifying a supervisor cannot work without it, and
 * threads with other filters than the leader's are not one process's:
 * both refused (after the freeze: only ptrace reads filters). */
static int s_collect_seccomp(const dump_proc_t *p, creds_dump_t *s, Cairn__Ghost__Process *pr,
                             cairn_error_t *err)
{
    if (s->pc.seccomp != 2)   /* strict mode (1) was refused by the check */
        return 0;
    int r = s_read_filters(p->t[0].tid, &s->filters, &s->n_filters, err);
    for (size_t i = 0; r == 0 && i < s->n_filters; i++)
        if (s_filter_notifies(&s->filters[i]))
            r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                "process %d has a seccomp filter that notifies a "
                                "supervisor (SECCOMP_RET_USER_NOTIF)", (int)p->pid);
    for (size_t t = 1; r == 0 && t < p->nt; t++) {
        Cairn__Ghost__SeccompFilter *o = NULL;
        size_t no = 0;
        r = s_read_filters(p->t[t].tid, &o, &no, err);
        if (r == 0 && !s_same_filters(o, no, s->filters, s->n_filters))
            r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                "process %d thread %d has other seccomp filters than its "
                                "leader", (int)p->pid, (int)p->t[t].tid);
        for (size_t i = 0; i < no; i++)
            free(o[i].prog.data);
        free(o);
    }
    if (r == 0 && s->n_filters &&
        !(s->filterv = calloc(s->n_filters, sizeof(*s->filterv))))
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r < 0)
        return r;
    for (size_t i = 0; i < s->n_filters; i++)   /* the image: oldest first */
        s->filterv[i] = &s->filters[s->n_filters - 1 - i];
    pr->n_seccomp = s->n_filters;
    pr->seccomp = s->filterv;
    return 0;
}

/* The process's credentials, s->pc (read with its status; the check made
 * sure every thread has the leader's); securebits and the dumpable flag
 * only the task can tell. */
static int s_collect_creds(const dump_proc_t *p, dump_thread_t *t, creds_dump_t *s,
                           cairn_error_t *err)
{
    int64_t bits = 0, dumpable = 0;
    uint64_t a[6] = { PR_GET_SECUREBITS, 0, 0, 0, 0, 0 };
    uint64_t b[6] = { PR_GET_DUMPABLE, 0, 0, 0, 0, 0 };
    int r = seize_inject_ok(p, t, SYS_prctl, a, "prctl(PR_GET_SECUREBITS)", &bits, err);
    if (r == 0)
        r = seize_inject_ok(p, t, SYS_prctl, b, "prctl(PR_GET_DUMPABLE)", &dumpable, err);
    if (r < 0)
        return r;
    Cairn__Ghost__Creds *c = &s->creds;
    cairn__ghost__creds__init(c);
    c->n_uid = 4, c->uid = s->pc.uid;
    c->n_gid = 4, c->gid = s->pc.gid;
    c->n_groups = s->pc.n_groups, c->groups = s->pc.groups;
    c->cap_inh = s->pc.cap_inh, c->cap_prm = s->pc.cap_prm, c->cap_eff = s->pc.cap_eff;
    c->cap_bnd = s->pc.cap_bnd, c->cap_amb = s->pc.cap_amb;
    c->securebits = (uint32_t)bits;
    c->no_new_privs = s->pc.no_new_privs;
    c->dumpable = (uint32_t)dumpable;
    return 0;
}

int creds_collect(const dump_proc_t *p, dump_thread_t *t, creds_dump_t *s,
                  Cairn__Ghost__Process *pr, cairn_error_t *err)
{
    int r = s_collect_creds(p, t, s, err);
    return r < 0 ? r : s_collect_seccomp(p, s, pr, err);
}

void creds_free(creds_dump_t *s)
{
    proc_creds_free(&s->pc);
    s_free_filters(s);
}

/* ---- restore ----------------------------------------------------------- */

/* The resource limits every process sets (restorer.c). */
int creds_plan_rlimits(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    struct gr_args *a = pl->args;

    a->rlimits = rst_alloc(pl, (p->n_rlimits + 1) * sizeof *a->rlimits, 64);
    if (!a->rlimits)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < p->n_rlimits; i++)
        a->rlimits[a->n_rlimits++] = (struct gr_rlimit){
            .resource = p->rlimits[i]->resource, .cur = p->rlimits[i]->cur,
            .max = p->rlimits[i]->max };
    return 0;
}

/* The seccomp filters every thread installs (restorer.c). */
int creds_plan_seccomp(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    struct gr_args *a = pl->args;

    if (!p->n_seccomp)
        return 0;
    a->seccomp = rst_alloc(pl, p->n_seccomp * sizeof *a->seccomp, 8);
    if (!a->seccomp)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    for (size_t i = 0; i < p->n_seccomp; i++) {
        const ProtobufCBinaryData *b = &p->seccomp[i]->prog;
        void *prog;
        if (b->len == 0 || b->len % 8 || b->len / 8 > 4096)   /* BPF_MAXINSNS */
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "process %u: seccomp filter %zu of %zu bytes", p->pid,
                                   i, b->len);
        if (!(prog = rst_alloc(pl, b->len, 8)))
            return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
        memcpy(prog, b->data, b->len);
        a->seccomp[i] = (struct gr_seccomp){ (uint64_t)(uintptr_t)prog,
                                             (uint32_t)(b->len / 8), p->seccomp[i]->flags };
    }
    a->n_seccomp = (uint32_t)p->n_seccomp;
    return 0;
}

/* The highest capability this kernel knows (bounding-set drops go up to
 * it); 40 (CAP_CHECKPOINT_RESTORE) if it cannot be read. */
static uint32_t s_cap_last(void)
{
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    long v = cairn_read_file("/proc/sys/kernel/cap_last_cap", 16, &buf, &n) == 0 && n > 0
                 ? strtol(buf, NULL, 10) : 40;
    return v > 0 && v < 64 ? (uint32_t)v : 40;
}

/* Who the process was: every thread takes these last (restorer.c). An
 * image without them (older than credentials) restores as the restorer. */
int creds_plan(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err)
{
    const Cairn__Ghost__Creds *c = pr->process->process->creds;
    struct gr_creds *g = &pl->args->creds;

    if (!c)
        return 0;
    if (c->n_uid != 4 || c->n_gid != 4 || c->n_groups > 65536)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "process %u: credentials with %zu uids, %zu gids, %zu "
                               "groups", pr->process->process->pid, c->n_uid, c->n_gid,
                               c->n_groups);
    g->groups = rst_alloc(pl, (c->n_groups + 1) * sizeof(uint32_t), 8);
    if (!g->groups)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "plan too big");
    memcpy(g->uid, c->uid, sizeof g->uid);
    memcpy(g->gid, c->gid, sizeof g->gid);
    if (c->n_groups)
        memcpy(g->groups, c->groups, c->n_groups * sizeof(uint32_t));
    g->n_groups = (uint32_t)c->n_groups;
    g->cap_inh = c->cap_inh, g->cap_prm = c->cap_prm, g->cap_eff = c->cap_eff;
    g->cap_bnd = c->cap_bnd, g->cap_amb = c->cap_amb;
    g->securebits = c->securebits;
    g->no_new_privs = c->no_new_privs;
    g->dumpable = c->dumpable;
    g->cap_last = s_cap_last();
    g->has = 1;
    return 0;
}
