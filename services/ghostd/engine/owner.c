/* owner.c - whose a process is, and the rights a helper keeps while it
 * works for a user who is not root (owner.h states the rule, (a)-(f)).
 *
 * The same credential check serves both directions: a dump reads the live
 * process's from /proc/PID/status (proc_creds_t), a restore converts an
 * image's Creds record into that shape. File access is switched with
 * setfsuid/setfsgid rather than setresuid so the helper keeps what ptrace,
 * set_tid and PR_SET_MM need, while every open, mkdir and rename it makes
 * for the user is judged by the kernel as the user's.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "owner.h"
#include "util/cleanup.h"

_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bits");

#define S_MAX_GROUPS 65536   /* NGROUPS_MAX on Linux */

#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

/* ---- the user ---------------------------------------------------------- */

/* Appends g to o's groups unless it is there already. */
static int s_add_group(ghost_owner_t *o, uint32_t g)
{
    if (ghost_owner_holds(o, g))
        return 0;
    uint32_t *v = realloc(o->groups, (o->n_groups + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    o->groups = v;
    o->groups[o->n_groups++] = g;
    return 0;
}

/* The groups the user database gives the user named `name` whose primary
 * group is pgid, into o. */
static int s_add_database_groups(ghost_owner_t *o, const char *name, gid_t pgid)
{
    int n = 64;
    for (;;) {
        _cleanup_free_ gid_t *v = calloc((size_t)n, sizeof(*v));
        int got = n;
        if (!v)
            return -ENOMEM;
        if (getgrouplist(name, pgid, v, &got) >= 0) {
            int r = 0;
            for (int i = 0; r == 0 && i < got; i++)
                r = s_add_group(o, v[i]);
            return r;
        }
        if (got <= n || got > S_MAX_GROUPS)
            return 0;   /* the database said nothing usable: gid alone */
        n = got;
    }
}

int ghost_owner_init(ghost_owner_t *ret, uint32_t uid, uint32_t gid, cairn_error_t *err)
{
    ghost_owner_t o = { .uid = uid, .gid = gid };
    struct passwd pw, *found = NULL;
    char buf[4096];

    if (uid == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "root is held to no owner rule");
    int r = s_add_group(&o, gid);
    /* No entry, or a database that cannot be asked: the request's group
     * alone, which holds the user to less, never to more. */
    if (r == 0 && getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found)
        r = s_add_database_groups(&o, found->pw_name, found->pw_gid);
    if (r < 0) {
        ghost_owner_free(&o);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "out of memory");
    }
    *ret = o;
    return 0;
}

int ghost_owner_parse(const char *arg, ghost_owner_t *ret, cairn_error_t *err)
{
    unsigned long long uid, gid;
    char *end = NULL;

    errno = 0;
    uid = arg ? strtoull(arg, &end, 10) : 0;
    if (!arg || end == arg || *end != ':' || errno)
        goto bad;
    arg = end + 1;
    gid = strtoull(arg, &end, 10);
    if (end == arg || *end || errno || uid > UINT32_MAX - 1 || gid > UINT32_MAX - 1 ||
        uid == 0)
        goto bad;
    return ghost_owner_init(ret, (uint32_t)uid, (uint32_t)gid, err);
bad:
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "--as takes UID:GID of a user other than root");
}

void ghost_owner_free(ghost_owner_t *o)
{
    free(o->groups);
    free(o->saved);
    o->groups = o->saved = NULL;
    o->n_groups = o->n_saved = 0;
}

bool ghost_owner_holds(const ghost_owner_t *o, uint32_t gid)
{
    for (size_t i = 0; i < o->n_groups; i++)
        if (o->groups[i] == gid)
            return true;
    return false;
}

/* ---- the rule ---------------------------------------------------------- */

/* (a): every uid is the user's. */
static int s_check_uids(const ghost_owner_t *o, const proc_creds_t *c, const char *what,
                        cairn_error_t *err)
{
    for (int i = 0; i < 4; i++)
        if (c->uid[i] != o->uid)
            return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                   "%s runs as uid %u/%u/%u/%u (real, effective, saved, "
                                   "fs), not as uid %u", what, c->uid[0], c->uid[1],
                                   c->uid[2], c->uid[3], o->uid);
    return 0;
}

/* (b): every gid and supplementary group is one the user holds. */
static int s_check_groups(const ghost_owner_t *o, const proc_creds_t *c, const char *what,
                          cairn_error_t *err)
{
    for (int i = 0; i < 4; i++)
        if (!ghost_owner_holds(o, c->gid[i]))
            return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                   "%s runs with group %u, which uid %u does not hold",
                                   what, c->gid[i], o->uid);
    for (size_t i = 0; i < c->n_groups; i++)
        if (!ghost_owner_holds(o, c->groups[i]))
            return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                   "%s has supplementary group %u, which uid %u does not "
                                   "hold", what, c->groups[i], o->uid);
    return 0;
}

int ghost_owner_check_creds(const ghost_owner_t *o, const proc_creds_t *c, const char *what,
                            cairn_error_t *err)
{
    int r = s_check_uids(o, c, what, err);
    if (r == 0)
        r = s_check_groups(o, c, what, err);
    /* (c): what a user's own process may hold; the bounding set only
     * takes away. */
    if (r == 0 && (c->cap_prm || c->cap_eff || c->cap_inh || c->cap_amb))
        r = cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                            "%s holds capabilities (permitted %#llx, inheritable %#llx, "
                            "ambient %#llx), which a user's process does not", what,
                            (unsigned long long)c->cap_prm, (unsigned long long)c->cap_inh,
                            (unsigned long long)c->cap_amb);
    return r;
}

int ghost_owner_check_dumpable(const ghost_owner_t *o, pid_t pid, cairn_error_t *err)
{
    char path[64];
    struct stat st;

    proc_path(path, sizeof(path), pid, "status");
    if (stat(path, &st) < 0) {
        if (errno == ENOENT || errno == ESRCH)
            return cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d", (int)pid);
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "%s: %s", path, strerror(errno));
    }
    if (st.st_uid != o->uid)
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "process %d is not dumpable (it ran a setuid, setgid or "
                               "file-capability program, changed its ids, or asked not to "
                               "be traced): the kernel would not let uid %u trace it",
                               (int)pid, o->uid);
    return 0;
}

/* An image's Creds in the shape of /proc's; points into c (nothing owned). */
static int s_creds_view(const Cairn__Ghost__Creds *c, proc_creds_t *v)
{
    if (c->n_uid != 4 || c->n_gid != 4)
        return -EBADMSG;
    *v = (proc_creds_t){ .groups = c->groups, .n_groups = c->n_groups,
                         .cap_inh = c->cap_inh, .cap_prm = c->cap_prm,
                         .cap_eff = c->cap_eff, .cap_bnd = c->cap_bnd,
                         .cap_amb = c->cap_amb, .no_new_privs = c->no_new_privs };
    memcpy(v->uid, c->uid, sizeof(v->uid));
    memcpy(v->gid, c->gid, sizeof(v->gid));
    return 0;
}

static const char *s_rlimit_name(uint32_t res)
{
    static const char *const names[] = {
        "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
        "memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
    };
    return res < sizeof(names) / sizeof(names[0]) ? names[res] : "unknown";
}

/* (f): no hard limit above the helper's own. */
static int s_check_rlimits(const Cairn__Ghost__Process *p, const char *what,
                           cairn_error_t *err)
{
    for (size_t i = 0; i < p->n_rlimits; i++) {
        const Cairn__Ghost__Rlimit *l = p->rlimits[i];
        struct rlimit mine;
        if (l->resource >= RLIM_NLIMITS || getrlimit((int)l->resource, &mine) < 0)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "%s: resource limit %u is not one of this kernel's",
                                   what, l->resource);
        if (mine.rlim_max != RLIM_INFINITY && l->max > mine.rlim_max)
            return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                   "%s has a hard %s limit of %llu, above the %llu a "
                                   "user's restore may set",
                                   what, s_rlimit_name(l->resource),
                                   (unsigned long long)l->max,
                                   (unsigned long long)mine.rlim_max);
    }
    return 0;
}

int ghost_owner_check_process(const ghost_owner_t *o, const Cairn__Ghost__Process *p,
                              cairn_error_t *err)
{
    char what[64];
    proc_creds_t v;

    snprintf(what, sizeof(what), "process %u of the image", p->pid);
    if (!p->creds)
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "%s records no credentials (an image older than them) "
                               "and would come back as root", what);
    if (s_creds_view(p->creds, &v) < 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "%s: credentials with %zu uids and %zu gids", what,
                               p->creds->n_uid, p->creds->n_gid);
    int r = ghost_owner_check_creds(o, &v, what, err);
    if (r == 0 && p->n_seccomp && !v.no_new_privs)
        r = cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                            "%s has seccomp filters without no_new_privs, which only a "
                            "privileged process installs", what);
    return r < 0 ? r : s_check_rlimits(p, what, err);
}

/* ---- the rights -------------------------------------------------------- */

int ghost_owner_fs_enter(ghost_owner_t *o, cairn_error_t *err)
{
    if (o->entered)
        return 0;
    int n = getgroups(0, NULL);
    if (n < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getgroups: %s", strerror(errno));
    _cleanup_free_ uint32_t *saved = calloc((size_t)n + 1, sizeof(*saved));
    if (!saved)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (n > 0 && getgroups(n, (gid_t *)saved) != n)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getgroups: %s", strerror(errno));
    if (setgroups(o->n_groups, (const gid_t *)o->groups) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "setgroups for uid %u: %s",
                               o->uid, strerror(errno));
    /* set*fsid return the old id, never an error: read back to know. */
    setfsgid(o->gid);
    setfsuid(o->uid);
    if ((gid_t)setfsgid((gid_t)-1) != o->gid || (uid_t)setfsuid((uid_t)-1) != o->uid) {
        setfsuid(0);
        setfsgid(0);
        setgroups((size_t)n, (const gid_t *)saved);
        return cairn_error_set(err, -EPERM, CAIRN_SYSTEM,
                               "cannot take the file rights of uid %u gid %u", o->uid,
                               o->gid);
    }
    free(o->saved);
    o->saved = TAKE_PTR(saved);
    o->n_saved = (size_t)n;
    o->entered = true;
    return 0;
}

int ghost_owner_fs_leave(ghost_owner_t *o, cairn_error_t *err)
{
    if (!o->entered)
        return 0;
    /* fsuid 0 first: it gives the file capabilities back. */
    setfsuid(0);
    setfsgid(0);
    if ((uid_t)setfsuid((uid_t)-1) != 0 || (gid_t)setfsgid((gid_t)-1) != 0 ||
        setgroups(o->n_saved, (const gid_t *)o->saved) < 0)
        return cairn_error_set(err, -EPERM, CAIRN_SYSTEM,
                               "cannot take root's file rights back");
    o->entered = false;
    return 0;
}

int ghost_owner_restrict_caps(cairn_error_t *err)
{
    static const int keep[] = { CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,
                                CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_RESOURCE,
                                CAP_CHECKPOINT_RESTORE };
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    uint32_t mask[2] = { 0, 0 };

    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        mask[keep[i] / 32] |= 1u << (keep[i] % 32);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "capget: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        data[i].permitted &= mask[i];
        data[i].effective &= mask[i];
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "capset: %s", strerror(errno));
    return 0;
}
