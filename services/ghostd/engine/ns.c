/* ns.c - a job's pid and mount namespace, both directions.
 *
 * A job (docs/ghost.md, "Jobs: a pid namespace each") is a tree whose
 * root is pid 1 of a pid namespace of its own, one level below the
 * dumper's, with a mount namespace of its own: the node's mounts (a
 * slave copy, so the node's later mounts reach it), and a proc of its pid
 * namespace on /proc, so the job sees its own pids there.
 *
 * Dump side. /proc/PID/status lists a task's ids in every pid namespace
 * from the one of the /proc mount down to its own (NSpid, NSpgid, NSsid):
 * one entry more for the root than for the dumper itself, and an inner pid
 * of 1, make a job. Every member must then be in the root's pid namespace
 * (a nested one is refused: its pids are another level) and in its mount
 * namespace, and the job's mounts must be the dumper's, /proc and below
 * aside, wherever the job sees files (a mount on one side only is fine
 * where the job sees nothing at its path): the restore gives the job a
 * copy of the restorer's own, and the job must find the same files at the
 * same paths there. The image names
 * every process, thread, group and session by its id inside (the last
 * entry; 0 for a group or session led from outside the job); siginfo's
 * si_pid and the thread library's cached tids already hold ids inside.
 * A tree that is not a job gets the same checks on its members, and the
 * node's ids.
 *
 * Restore side. The root is cloned with CLONE_NEWPID | CLONE_NEWNS (pid
 * 1 by construction) and, before anything else, makes its mounts slaves
 * of the node's and mounts a fresh proc on /proc in place of the node's.
 * Every other process and thread is then made inside with clone3 set_tid
 * = [its pid inside] (tree.c, the restorer): the namespace is new, so
 * every id of the image is free. The processes write their own pids in
 * the restore's table as they see them (inside); the tracer, which sees
 * the node's, finds each one's from the NSpid of the tasks it holds.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sched.h>

#include "ns.h"
#include "tree.h"
#include "util/fileio.h"
#include "util/array.h"
#include "util/cleanup.h"

#define S_MAX_LEVELS 33   /* the kernel nests pid namespaces 32 deep */

/* ---- /proc ------------------------------------------------------------- */

/* The numbers after key (NSpid, NSpgid, NSsid) in a status text: v[0] in
 * the namespace of the /proc mount, v[*ret_n - 1] in the task's own. */
static int s_ids_of(const char *text, const char *key, pid_t *v, size_t *ret_n,
                    pid_t pid, cairn_error_t *err)
{
    const char *p = proc_field(text, key);
    size_t n = 0;

    while (p && n < S_MAX_LEVELS) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p)
            break;
        v[n++] = (pid_t)x;
        p = end;
    }
    if (n == 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/status has no %s line", (int)pid, key);
    *ret_n = n;
    return 0;
}

/* The ids of key in /proc/PID/NAME (NAME: status or task/TID/status). */
static int s_ids(pid_t pid, const char *name, const char *key, pid_t *v, size_t *ret_n,
                 cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    int r = proc_read_file(pid, name, &text, NULL, err);
    return r < 0 ? r : s_ids_of(text, key, v, ret_n, pid, err);
}

/* The inode of namespace `which` (pid, mnt, pid_for_children) of pid
 * (0: ourselves). */
static int s_ns_ino(pid_t pid, const char *which, uint64_t *ret, cairn_error_t *err)
{
    char path[96], name[48];
    struct stat st;

    snprintf(name, sizeof name, "ns/%s", which);
    proc_path(path, sizeof path, pid, name);
    if (stat(path, &st) < 0)
        return cairn_error_set(err, -errno, errno == ENOENT || errno == ESRCH
                                   ? CAIRN_NOT_FOUND : CAIRN_SYSTEM,
                               "cannot stat %s: %s", path, strerror(errno));
    *ret = (uint64_t)st.st_ino;
    return 0;
}

/* ---- dump: the job's mounts -------------------------------------------- */

/* The start time (field 22) of /proc/PID/NAME, a stat file; pid 0 and
 * NAME "N/..." read /proc/N/... . -ENOENT when there is no such file. */
static int s_start_time(pid_t pid, const char *name, uint64_t *ret, cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    char path[128];
    const char *p;
    int r;

    if (pid)
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    else
        snprintf(path, sizeof path, "/proc/%s", name);
    r = cairn_read_file(path, 0, &text, NULL);
    if (r < 0)
        return r == -ENOENT ? r : cairn_error_set(err, r, r == -ESRCH ? CAIRN_NOT_FOUND
                                                                      : CAIRN_SYSTEM,
                                                  "cannot read %s: %s", path, strerror(-r));
    p = strrchr(text, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL, "%s: no start time", path);
    *ret = strtoull(p + 1, NULL, 10);
    return 0;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void s_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The mounts of pid (0: ourselves) other than /proc and below, one string
 * each, "MOUNTPOINT DEV ROOT" (mountinfo's escaped fields), sorted. */
static int s_mounts(pid_t pid, char ***ret, size_t *ret_n, cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    char **v = NULL;
    size_t n = 0, cap = 0;
    int r = proc_read_file(pid, "mountinfo", &text, NULL, err);

    for (char *line = text, *next; r == 0 && line && *line; line = next) {
        char dev[32], root[4096], point[4096];
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (sscanf(line, "%*u %*u %31s %4095s %4095s", dev, root, point) != 3)
            r = cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                                "bad line in /proc/%d/mountinfo: %s", (int)pid, line);
        else if (strcmp(point, "/proc") == 0 || strncmp(point, "/proc/", 6) == 0)
            continue;
        else if (CAIRN_GROW(v, cap, n + 1, 64) < 0 ||
                 asprintf(&v[n], "%s %s %s", point, dev, root) < 0)
            r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        else
            n++;
    }
    if (r == 0)
        qsort(v, n, sizeof *v, s_cmp_str);
    if (r < 0) {
        s_strv_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* "MOUNTPOINT DEV ROOT" for a message: "MOUNTPOINT (dev DEV, root ROOT)". */
static void s_mount_words(const char *m, char *buf, size_t size)
{
    char point[4096] = "", dev[32] = "", root[4096] = "";

    sscanf(m, "%4095s %31s %4095s", point, dev, root);
    snprintf(buf, size, "%s (dev %s, root %s)", point, dev, root);
}

/* mountinfo's escapes (\ooo: space, tab, newline, backslash) undone, in
 * place. */
static void s_unescape(char *p)
{
    char *o = p;

    for (; *p; p++, o++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o = *p;
        }
    }
    *o = '\0';
}

/* Whether the job rooted at root sees nothing at mount point m, mounted
 * on one side only: no such path, or an empty directory (a mount point as
 * made, an empty mount). After a restore it sees there what the node
 * does: what appears is new, nothing it saw is gone. */
static bool s_job_sees_nothing(pid_t root, const char *m)
{
    char point[4096] = "", path[4200];
    struct dirent *e;
    bool empty = true;
    DIR *d;

    sscanf(m, "%4095s", point);
    s_unescape(point);
    snprintf(path, sizeof path, "/proc/%d/root%s", (int)root, point);
    d = opendir(path);
    if (!d)
        return errno == ENOENT;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* The job's mounts are the dumper's, /proc and below aside, wherever the
 * job sees files: the first mount one side lacks where it does is the
 * reason. (A node whose mounts are private, not shared as systemd makes
 * them, propagates nothing to the job's slave copy: a mount made or
 * removed on the node since the job began differs, harmlessly while the
 * job sees nothing there.) */
static int s_same_mounts(pid_t root, cairn_error_t *err)
{
    char **job = NULL, **node = NULL, what[8300];
    size_t nj = 0, nn = 0, i = 0, k = 0;
    int r = s_mounts(root, &job, &nj, err);

    if (r == 0)
        r = s_mounts(0, &node, &nn, err);
    while (r == 0 && (i < nj || k < nn)) {
        int c = i == nj ? 1 : k == nn ? -1 : strcmp(job[i], node[k]);
        if (c == 0) {
            i++, k++;
            continue;
        }
        if (s_job_sees_nothing(root, c < 0 ? job[i] : node[k])) {
            c < 0 ? i++ : k++;
            continue;
        }
        s_mount_words(c < 0 ? job[i] : node[k], what, sizeof what);
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            c < 0 ? "job %d: %s is mounted in its mount namespace, with "
                                    "files, but not on this node: a job must see the "
                                    "node's files at the node's paths (only /proc may "
                                    "differ)"
                                  : "job %d: this node's mount %s is not in its mount "
                                    "namespace, where that path holds files: a job must "
                                    "see the node's files at the node's paths (only "
                                    "/proc may differ)",
                            (int)root, what);
    }
    s_strv_free(job, nj);
    s_strv_free(node, nn);
    return r;
}

/* A job has a mount namespace of its own, with a proc of its own pid
 * namespace on /proc (its pid 1 there is the job's), and the node's
 * mounts otherwise. */
static int s_job_mounts(pid_t root, const dump_ns_t *ns, cairn_error_t *err)
{
    char path[96];
    uint64_t mine = 0, inside = 0, outside = 0;
    int r = s_ns_ino(0, "mnt", &mine, err);

    if (r < 0)
        return r;
    if (mine == ns->mnt_ns)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "job %d (pid 1 of its own pid namespace) shares this "
                               "node's mount namespace: a job has its own, with a proc "
                               "of its pid namespace on /proc", (int)root);
    /* Its /proc shows the job's pid 1 as 1: the same task (start time)
     * as the root seen from here. */
    snprintf(path, sizeof path, "%d/root/proc/1/stat", (int)root);
    r = s_start_time(0, path, &inside, err);
    if (r == -ENOENT)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "job %d has no proc on /proc in its mount namespace: "
                               "a job has a proc of its pid namespace there", (int)root);
    if (r == 0)
        r = s_start_time(root, "stat", &outside, err);
    if (r == 0 && inside != outside)
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "job %d: the proc on its /proc is another pid namespace's "
                            "(its pid 1 is not the job's): a job has a proc of its pid "
                            "namespace there", (int)root);
    return r < 0 ? r : s_same_mounts(root, err);
}

/* ---- dump -------------------------------------------------------------- */

/* The namespaces besides pid and mount: the restore makes every process
 * in its own (the node's), so a process in another -- unshare(2), a
 * container -- would come back in the node's without a word (its
 * hostname, its network, its SysV IPC, its user ids' meaning...):
 * refused. The dumper's are the node's (ghostd's, or the one a dump runs
 * in by hand), read once per dump into dump_ns_t.node_ns. */
static const char *const s_node_ns[] = { "user", "net", "ipc", "uts", "cgroup", "time",
                                         "time_for_children" };
_Static_assert(sizeof s_node_ns / sizeof s_node_ns[0] ==
                   sizeof ((dump_ns_t *)0)->node_ns / sizeof(uint64_t),
               "dump_ns_t.node_ns holds one inode per name");

/* The dumper's own, into ns (0 for one the kernel does not have). */
static int s_read_node_namespaces(uint64_t ns[], cairn_error_t *err)
{
    for (size_t i = 0; i < sizeof s_node_ns / sizeof s_node_ns[0]; i++) {
        int r = s_ns_ino(0, s_node_ns[i], &ns[i], err);
        if (r == -ENOENT)
            ns[i] = 0;   /* a kernel without that namespace */
        else if (r < 0)
            return r;
    }
    return 0;
}

static int s_node_namespaces(const dump_ns_t *ns, pid_t pid, cairn_error_t *err)
{
    for (size_t i = 0; i < sizeof s_node_ns / sizeof s_node_ns[0]; i++) {
        uint64_t theirs = 0;
        if (ns->node_ns[i] == 0)
            continue;
        int r = s_ns_ino(pid, s_node_ns[i], &theirs, err);
        if (r < 0)
            return r;
        if (theirs != ns->node_ns[i])
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d has its own %s namespace (%s:[%" PRIu64
                                   "], the node's %" PRIu64 "): the restore would put it in "
                                   "the node's", (int)pid, s_node_ns[i], s_node_ns[i], theirs,
                                   ns->node_ns[i]);
    }
    return 0;
}

int ns_dump_root(pid_t root, dump_ns_t *ret, cairn_error_t *err)
{
    pid_t self[S_MAX_LEVELS], ids[S_MAX_LEVELS];
    size_t ns = 0, n = 0;
    dump_ns_t d = { 0 };
    int r = s_ids(0, "status", "NSpid", self, &ns, err);

    if (r == 0)
        r = s_ids(root, "status", "NSpid", ids, &n, err);
    if (r == 0)
        r = s_ns_ino(root, "pid", &d.pid_ns, err);
    if (r == 0)
        r = s_ns_ino(root, "mnt", &d.mnt_ns, err);
    if (r == 0)
        r = s_read_node_namespaces(d.node_ns, err);
    if (r < 0)
        return r;
    if (n < ns)
        return cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                               "process %d is in a pid namespace above ours", (int)root);
    if (n > ns + 1)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d is %zu pid namespaces below this one (pid %d "
                               "in the innermost): nested pid namespaces are not "
                               "supported; a job is one level below", (int)root,
                               n - ns, (int)ids[n - 1]);
    if (n == ns + 1 && ids[n - 1] != 1)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d is pid %d of a pid namespace of its own, not "
                               "its pid 1: a job is checkpointed whole, from its pid 1",
                               (int)root, (int)ids[n - 1]);
    d.job = n == ns + 1;
    if (d.job && (r = s_job_mounts(root, &d, err)) < 0)
        return r;
    *ret = d;
    return 0;
}

/* A process whose root directory is not the node's (chroot(2)) would come
 * back with the restorer's: refused. A job's root is its mount namespace's,
 * the node's / there too. */
static int s_node_root(pid_t pid, cairn_error_t *err)
{
    char path[64];
    struct stat ours, theirs;

    proc_path(path, sizeof path, pid, "root");
    if (stat("/", &ours) < 0 || stat(path, &theirs) < 0)
        return cairn_error_set(err, -errno, errno == ENOENT || errno == ESRCH
                                   ? CAIRN_NOT_FOUND : CAIRN_SYSTEM,
                               "cannot stat %s: %s", path, strerror(errno));
    if (ours.st_dev != theirs.st_dev || ours.st_ino != theirs.st_ino)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d is chrooted (its root directory is not the "
                               "node's /): the restore would give it the node's", (int)pid);
    return 0;
}

int ns_dump_member(const dump_ns_t *ns, pid_t root, pid_t pid, cairn_error_t *err)
{
    const char *whose = ns->job ? "the job's" : "the tree's root's";
    uint64_t pidns = 0, children = 0, mnt = 0;
    pid_t ids[S_MAX_LEVELS];
    size_t n = 0;
    int r = 0;

    if (pid != root)
        r = s_ns_ino(pid, "pid", &pidns, err);
    if (r == 0 && pid != root && pidns != ns->pid_ns) {
        r = s_ids(pid, "status", "NSpid", ids, &n, err);
        return r < 0 ? r : cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                           "process %d is in another pid namespace than "
                                           "%s (a nested one: pid %d there): nested pid "
                                           "namespaces are not supported", (int)pid,
                                           whose, (int)ids[n - 1]);
    }
    if (r == 0)
        r = s_ns_ino(pid, "pid_for_children", &children, err);
    if (r == 0 && children != ns->pid_ns)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d unshared a pid namespace for its children "
                               "(unshare(CLONE_NEWPID)): nested pid namespaces are not "
                               "supported", (int)pid);
    if (r == 0 && pid != root)
        r = s_ns_ino(pid, "mnt", &mnt, err);
    if (r == 0 && pid != root && mnt != ns->mnt_ns)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d is in another mount namespace than %s %d: "
                               "the members of %s share one", (int)pid,
                               ns->job ? "the job's pid 1" : "the tree's root", (int)root,
                               ns->job ? "a job" : "a tree");
    if (r == 0)
        r = s_node_namespaces(ns, pid, err);
    if (r == 0 && !ns->job)
        r = s_node_root(pid, err);
    return r;
}

/* The ids of one process as the image names them: its pid, group and
 * session in the innermost namespace (0: not in it, led from outside). */
static int s_proc_ids(const dump_ns_t *ns, dump_proc_t *p, cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    pid_t v[S_MAX_LEVELS];
    size_t n = 0;
    int r = proc_read_file(p->pid, "status", &text, NULL, err);

    if (r == 0 && (r = s_ids_of(text, "NSpid", v, &n, p->pid, err)) == 0)
        p->vpid = v[n - 1];
    if (r == 0 && (r = s_ids_of(text, "NSpgid", v, &n, p->pid, err)) == 0)
        p->vpgid = v[n - 1];
    if (r == 0 && (r = s_ids_of(text, "NSsid", v, &n, p->pid, err)) == 0)
        p->vsid = v[n - 1];
    for (size_t i = 0; r == 0 && i < p->nt; i++) {
        char name[64];
        p->t[i].vtid = p->t[i].tid;
        if (!ns->job)
            continue;
        snprintf(name, sizeof name, "task/%d/status", (int)p->t[i].tid);
        if ((r = s_ids(p->pid, name, "NSpid", v, &n, err)) == 0)
            p->t[i].vtid = v[n - 1];
    }
    return r;
}

int ns_dump_ids(const dump_ns_t *ns, dump_tree_t *tree, cairn_error_t *err)
{
    int r = 0;

    for (size_t i = 0; r == 0 && i < tree->np; i++)
        r = s_proc_ids(ns, &tree->p[i], err);
    if (r == 0 && ns->job && tree->np && tree->p[0].vpid != 1)
        r = cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                            "job %d is pid %d inside, not 1", (int)tree->p[0].pid,
                            (int)tree->p[0].vpid);
    return r;
}

int ns_inner_pid(pid_t pid, pid_t *ret, cairn_error_t *err)
{
    pid_t ids[S_MAX_LEVELS];
    size_t n = 0;
    int r = s_ids(pid, "status", "NSpid", ids, &n, err);

    if (r == 0)
        *ret = ids[n - 1];
    return r;
}

pid_t ns_dump_vpid(const dump_tree_t *tree, pid_t pid)
{
    for (size_t i = 0; pid && i < tree->np; i++)
        if (tree->p[i].pid == pid)
            return tree->p[i].vpid;
    return pid;
}

/* ---- restore ----------------------------------------------------------- */

int ns_plan(rst_tree_t *t, bool new_pid, cairn_error_t *err)
{
    const Cairn__Ghost__ImageHeader *h = t->im->header->header;

    t->job = h->job;
    if (!t->job)
        return 0;
    if (new_pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "the image is a job's (pid %u on the node it was dumped "
                               "on): it is restored into a pid namespace of its own, "
                               "where every pid it names is free; --new-pid does not "
                               "apply", h->root_host_pid);
    if (t->im->procs[0].process->process->pid != 1)
        return rst_bad(err, "a job's root is not its pid 1", t->im->bytes);
    return 0;
}

pid_t ns_clone_root(const rst_tree_t *t, pid_t want)
{
    struct clone_args ca = { .flags = CLONE_NEWPID | CLONE_NEWNS,
                             .exit_signal = SIGCHLD };

    if (!t->job)
        return tree_fork_pid(want);
    return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

void ns_child_root(const rst_tree_t *t)
{
    const rst_plan_t *pl = &t->plans[0];

    if (!t->job)
        return;
    /* Slaves: the node's later mounts reach the job, none of its own
     * (the proc below) reaches the node. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        rst_child_fail(pl, errno, 0, "making the job's mounts slaves of the node's: %s",
                       strerror(errno));
    if (umount2("/proc", MNT_DETACH) < 0 && errno != EINVAL)
        rst_child_fail(pl, errno, 0, "unmounting the node's /proc in the job: %s",
                       strerror(errno));
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        rst_child_fail(pl, errno, 0, "mounting the job's proc on /proc: %s",
                       strerror(errno));
}

int ns_host_pids(rst_tree_t *t, const pid_t *tids, size_t n, cairn_error_t *err)
{
    size_t np = t->im->n_procs;

    t->host_pids = calloc(np, sizeof *t->host_pids);
    if (!t->host_pids)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; !t->job && i < np; i++)
        t->host_pids[i] = t->pids[i];
    for (size_t k = 0; t->job && k < n; k++) {
        _cleanup_free_ char *text = NULL;
        const char *tgid;
        pid_t v[S_MAX_LEVELS];
        size_t nv = 0;
        int r = proc_read_file(tids[k], "status", &text, NULL, err);
        if (r == 0)
            r = s_ids_of(text, "NSpid", v, &nv, tids[k], err);
        if (r < 0)
            return r;
        tgid = proc_field(text, "Tgid");
        if (!tgid || strtol(tgid, NULL, 10) != tids[k])
            continue;   /* a thread, not a leader */
        for (size_t i = 0; i < np; i++)
            if (t->pids[i] == v[nv - 1])
                t->host_pids[i] = tids[k];
    }
    for (size_t i = 0; i < np; i++)
        if (t->host_pids[i] <= 0)
            return cairn_error_set(err, -ESRCH, CAIRN_INTERNAL,
                                   "process %d of the job is not among the tasks held",
                                   (int)t->pids[i]);
    return 0;
}

pid_t ns_host_pid(const rst_tree_t *t, size_t i)
{
    return t->host_pids ? (pid_t)t->host_pids[i] : (pid_t)t->pids[i];
}
