/* hooks-cnproc.c - process events of the user backend: the netlink proc
 * connector, filtered by subscription.
 *
 * Design. The proc connector reports every fork, exec and exit of the
 * machine, so the watch keeps a table of the processes it follows
 * (member: subscribed by pid, below a pid subscribed with tree, or in a
 * subscribed cgroup) and judges each event by it:
 *
 *  - fork: a thread is its process's (a process not followed is read:
 *    it may have joined since); a new process is its parent's
 *    descendant, and in its parent's cgroup (a child starts where its
 *    parent is) when the parent is a member that way; else its own cgroup
 *    is read from /proc/PID/cgroup. A child gone before that read is
 *    judged by its parent if the parent is known, else dropped; both are
 *    counted as unresolved (we cannot say whether it was ours).
 *  - exec: a process not followed is read again (a launcher moves its
 *    child into the cgroup between fork and exec).
 *  - exit: a member's is reported and the member forgotten; a process
 *    not followed is read (a zombie's cgroup still reads) when the watch
 *    has cgroups, for one that joined and never forked or exec'd since.
 *    A parent not followed whose new child is in a cgroup is read too.
 *
 * A subscription seeds the table with what is there already (the cgroup's
 * cgroup.procs, the pid's children), so the exit of a process older than
 * the watch is reported too.
 *
 * Loss. The connector numbers its messages per CPU (cn_msg.seq, with the
 * CPU in the event); a gap is messages lost -- the socket's buffer full
 * (ENOBUFS) or the kernel's allocation failed -- and is reported as a
 * CAIRN_PROC_LOST record before the next event, its count being of any
 * process of the machine, an upper bound of what the watch lost. A gap
 * shows only when the next message of that CPU arrives: on a quiet
 * machine the last losses are reported late. The
 * socket asks for a large buffer so that bursts fit. A new watch learns
 * each CPU's number by making a short-lived child exit on each CPU.
 *
 * The connector lives in the initial network namespace only: a watch
 * made from another one fails (-EPROTONOSUPPORT), and needs
 * CAP_NET_ADMIN (-EPERM).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks-private.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/clock.h"

CAIRN_DEFINE_CLEANUP(s_closedirp, DIR *, closedir)

#define S_RCVBUF (16 << 20)
#define S_MAX_CPUS 4096

/* A followed process: why it is a member. */
typedef struct s_proc {
    pid_t pid;             /* 0: a free slot; -1: a tombstone */
    bool direct;           /* subscribed by pid */
    bool tree;             /* at or below a pid subscribed with tree */
    bool cg;               /* in a subscribed cgroup when last read */
} s_proc_t;

/* A subscribed cgroup: its hierarchy and its path in /proc/PID/cgroup. */
typedef struct s_cg {
    bool v2;               /* cgroup2 (the "0::" line) */
    char ctrls[256];       /* v1: the mount's options (its controllers) */
    char path[4096];       /* path inside the hierarchy, "/" for all */
} s_cg_t;

typedef struct s_cn {
    s_proc_t *tab;         /* open addressing by pid; a power of two */
    size_t cap, used;      /* slots, slots not free (live + tombstones) */
    s_cg_t *cg;
    size_t n_cg, cap_cg;
    uint32_t *seq;         /* per CPU: the next sequence number expected */
    bool *seen;            /* per CPU: a message came from it already */
    uint64_t lost_unsaid;  /* lost, not reported yet */
    cairn_proc_event_t held; /* an event read, not returned yet */
    bool has_held;
} s_cn_t;

/* ---- the table of followed processes ----------------------------------- */

static size_t s_hash(pid_t pid, size_t cap)
{
    return ((uint32_t)pid * 2654435761u) & (cap - 1);
}

static s_proc_t *s_find(s_cn_t *c, pid_t pid)
{
    if (!c->tab)
        return NULL;
    for (size_t i = s_hash(pid, c->cap), k = 0; k < c->cap; i = (i + 1) & (c->cap - 1), k++) {
        if (c->tab[i].pid == 0)
            return NULL;
        if (c->tab[i].pid == pid)
            return &c->tab[i];
    }
    return NULL;
}

static int s_rehash(s_cn_t *c, size_t cap)
{
    s_proc_t *old = c->tab;
    size_t n = c->cap;
    c->tab = calloc(cap, sizeof(*c->tab));
    if (!c->tab) {
        c->tab = old;
        return -ENOMEM;
    }
    c->cap = cap;
    c->used = 0;
    for (size_t i = 0; i < n; i++)
        if (old[i].pid > 0) {
            size_t j = s_hash(old[i].pid, cap);
            while (c->tab[j].pid != 0)
                j = (j + 1) & (cap - 1);
            c->tab[j] = old[i];
            c->used++;
        }
    free(old);
    return 0;
}

/* The entry of pid, made (not a member yet) if missing; NULL: no memory. */
static s_proc_t *s_get(s_cn_t *c, pid_t pid)
{
    s_proc_t *p = s_find(c, pid);
    if (p)
        return p;
    if ((c->used + 1) * 2 > c->cap && s_rehash(c, c->cap ? c->cap * 2 : 1024) < 0)
        return NULL;
    size_t i = s_hash(pid, c->cap);
    while (c->tab[i].pid > 0)
        i = (i + 1) & (c->cap - 1);
    if (c->tab[i].pid == 0)
        c->used++;
    c->tab[i] = (s_proc_t){ .pid = pid };
    return &c->tab[i];
}

static void s_forget(s_proc_t *p)
{
    if (p)
        *p = (s_proc_t){ .pid = -1 };
}

static bool s_member(const s_proc_t *p)
{
    return p && (p->direct || p->tree || p->cg);
}

/* ---- cgroups ------------------------------------------------------------ */

/* Whether one line "ID:CTRLS:PATH" of /proc/PID/cgroup puts it in g. */
static bool s_cg_line(const s_cg_t *g, const char *line, size_t len)
{
    const char *c1 = memchr(line, ':', len);
    const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
    if (!c2)
        return false;
    size_t nc = (size_t)(c2 - c1 - 1);
    if (g->v2 != (nc == 0))
        return false;
    /* v1: each controller of the line is an option of the mount */
    for (const char *t = c1 + 1; !g->v2 && t < c2;) {
        const char *e = memchr(t, ',', (size_t)(c2 - t));
        size_t tl = (size_t)((e ? e : c2) - t);
        bool found = false;
        for (const char *o = g->ctrls; *o && !found;) {
            size_t ol = strcspn(o, ",");
            found = ol == tl && memcmp(o, t, tl) == 0;
            o += ol + (o[ol] == ',');
        }
        if (!found)
            return false;
        t += tl + 1;
    }
    const char *p = c2 + 1;
    size_t pl = len - (size_t)(p - line), gl = strlen(g->path);
    if (gl == 1)
        return true;   /* the hierarchy's root */
    return pl >= gl && memcmp(p, g->path, gl) == 0 && (pl == gl || p[gl] == '/');
}

/* Reads pid's cgroups: 1 in a subscribed one, 0 not, -ESRCH gone. */
static int s_cg_of(const s_cn_t *c, pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ESRCH;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -ESRCH;   /* reaped meanwhile */
    for (const char *l = buf, *end = buf + n; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t len = (size_t)((nl ? nl : end) - l);
        for (size_t i = 0; i < c->n_cg; i++)
            if (s_cg_line(&c->cg[i], l, len))
                return 1;
        l += len + 1;
    }
    return 0;
}

/* Finds the cgroup mount holding dir (a real path): fills g. */
static int s_cg_mount(const char *dir, s_cg_t *g, cairn_error_t *err)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mountinfo: %s", strerror(errno));
    char line[4096];
    size_t best = 0;
    while (fgets(line, sizeof(line), f)) {
        char root[1024], mp[1024], type[64], opts[256];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", root, mp) != 2 ||
            sscanf(dash + 3, "%63s %*s %255s", type, opts) != 2)
            continue;
        bool v2 = strcmp(type, "cgroup2") == 0;
        size_t ml = strlen(mp);
        if ((!v2 && strcmp(type, "cgroup") != 0) || ml < best || strncmp(dir, mp, ml) != 0 ||
            (dir[ml] != '/' && dir[ml] != '\0'))
            continue;
        best = ml;
        g->v2 = v2;
        snprintf(g->ctrls, sizeof(g->ctrls), "%s", opts);
        const char *rest = dir + ml;
        snprintf(g->path, sizeof(g->path), "%s%s", strcmp(root, "/") == 0 ? "" : root,
                 *rest ? rest : (strcmp(root, "/") == 0 ? "/" : ""));
    }
    if (best == 0)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "%s is not in a cgroup hierarchy",
                               dir);
    return 0;
}

/* Follows the processes of dir and the cgroups below it. */
static int s_cg_seed(s_cn_t *c, const char *dir, int depth)
{
    char path[4352];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1) {
        s_proc_t *p = s_get(c, pid);
        if (!p)
            return -ENOMEM;
        p->cg = true;
    }
    _cleanup_(s_closedirp) DIR *d = depth < 32 ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_type == DT_DIR && de->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            int e = s_cg_seed(c, path, depth + 1);
            if (e < 0)
                return e;
        }
    return 0;
}

static int s_sub_cgroup(cairn_proc_watch_t *w, const char *path, cairn_error_t *err)
{
    s_cn_t *c = w->be;
    char real[4096];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no cgroup %s", path);
    s_cg_t g = { 0 };
    int e = s_cg_mount(real, &g, err);
    if (e < 0)
        return e;
    if (CAIRN_GROW(c->cg, c->cap_cg, c->n_cg + 1, 4) < 0 || s_cg_seed(c, real, 0) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    c->cg[c->n_cg++] = g;
    return 0;
}

/* Follows pid's children and theirs, as of now, as tree members. */
static int s_tree_seed(s_cn_t *c, pid_t pid, int depth)
{
    char path[320];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    _cleanup_(s_closedirp) DIR *d = depth < 64 ? opendir(path) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, de->d_name);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        int child;
        while (f && fscanf(f, "%d", &child) == 1) {
            s_proc_t *p = s_get(c, child);
            if (!p)
                return -ENOMEM;
            p->tree = true;
            int e = s_tree_seed(c, child, depth + 1);
            if (e < 0)
                return e;
        }
    }
    return 0;
}

static int s_sub_pid(cairn_proc_watch_t *w, pid_t pid, bool tree, cairn_error_t *err)
{
    s_cn_t *c = w->be;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d", (int)pid);
    s_proc_t *p = s_get(c, pid);
    if (!p || (tree && s_tree_seed(c, pid, 0) < 0))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    p = s_find(c, pid);
    p->direct = true;
    p->tree |= tree;
    return 0;
}

/* ---- events ------------------------------------------------------------- */

/* Whether the message's sequence number says some were lost before it. */
static void s_seq(s_cn_t *c, uint32_t cpu, uint32_t seq)
{
    if (cpu >= S_MAX_CPUS)
        return;
    if (c->seen[cpu] && seq != c->seq[cpu])
        c->lost_unsaid += (uint32_t)(seq - c->seq[cpu]);
    c->seen[cpu] = true;
    c->seq[cpu] = seq + 1;
}

static void s_comm(pid_t pid, char comm[16])
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, comm, 15) : -1;
    n = n < 0 ? 0 : n;
    comm[n] = '\0';
    comm[strcspn(comm, "\n")] = '\0';
}

/* A new process's membership (see the top of the file). */
static s_proc_t *s_forked(cairn_proc_watch_t *w, pid_t parent, pid_t child)
{
    s_cn_t *c = w->be;
    s_proc_t *pp = s_find(c, parent);
    bool tree = pp && pp->tree, cg = pp && pp->cg;
    if (!cg && c->n_cg > 0) {
        int r = s_cg_of(c, child);
        if (r == -ESRCH)
            w->st.unresolved++;   /* judged by its parent, if known */
        else
            cg = r == 1;
    }
    if (!tree && !cg)
        return NULL;
    if (cg && !pp && s_cg_of(c, parent) == 1 && (pp = s_get(c, parent)))
        pp->cg = true;   /* it joined since: follow it too */
    s_proc_t *p = s_get(c, child);
    if (p) {
        p->tree = tree;
        p->cg = cg;
    }
    return p;
}

/* The process of a new thread; one not followed is read (it may have
 * joined a cgroup since it was born). */
static s_proc_t *s_thread_of(s_cn_t *c, pid_t tgid)
{
    s_proc_t *p = s_find(c, tgid);
    if (!p && c->n_cg > 0 && s_cg_of(c, tgid) == 1 && (p = s_get(c, tgid)))
        p->cg = true;
    return p;
}

/* One connector event into ev: true if the watch reports it. */
static bool s_event(cairn_proc_watch_t *w, const struct proc_event *pe, cairn_proc_event_t *ev)
{
    s_cn_t *c = w->be;
    *ev = (cairn_proc_event_t){ .time_ns = pe->timestamp_ns };
    switch (pe->what) {
    case PROC_EVENT_FORK: {
        const typeof(pe->event_data.fork) *f = &pe->event_data.fork;
        bool thread = f->child_pid != f->child_tgid;
        bool member = thread ? s_member(s_thread_of(c, f->child_tgid))
                             : s_member(s_forked(w, f->parent_tgid, f->child_pid));
        *ev = (cairn_proc_event_t){ .type = CAIRN_PROC_FORK, .pid = f->child_tgid,
                                    .tid = f->child_pid, .ppid = f->parent_tgid,
                                    .flags = thread ? CAIRN_PROC_THREAD : 0,
                                    .time_ns = pe->timestamp_ns };
        if (member)
            s_comm(f->child_pid, ev->comm);
        return member;
    }
    case PROC_EVENT_EXEC: {
        const typeof(pe->event_data.exec) *x = &pe->event_data.exec;
        s_proc_t *p = s_find(c, x->process_tgid);
        if (!s_member(p) && c->n_cg > 0 && s_cg_of(c, x->process_tgid) == 1 &&
            (p = s_get(c, x->process_tgid)))
            p->cg = true;
        *ev = (cairn_proc_event_t){ .type = CAIRN_PROC_EXEC, .pid = x->process_tgid,
                                    .tid = x->process_pid, .time_ns = pe->timestamp_ns };
        if (s_member(p))
            s_comm(x->process_pid, ev->comm);
        return s_member(p);
    }
    case PROC_EVENT_EXIT: {
        const typeof(pe->event_data.exit) *x = &pe->event_data.exit;
        s_proc_t *p = s_find(c, x->process_tgid);
        bool thread = x->process_pid != x->process_tgid;
        /* one that joined a cgroup and never forked or exec'd since:
         * its cgroup, read while it is a zombie */
        bool member = s_member(p) ||
                      (!p && !thread && c->n_cg > 0 && s_cg_of(c, x->process_tgid) == 1);
        *ev = (cairn_proc_event_t){ .type = CAIRN_PROC_EXIT, .pid = x->process_tgid,
                                    .tid = x->process_pid, .ppid = x->parent_tgid,
                                    .exit_code = (int)x->exit_code,
                                    .flags = thread ? CAIRN_PROC_THREAD : 0,
                                    .time_ns = pe->timestamp_ns };
        if (!thread)
            s_forget(p);
        return member;
    }
    default:
        return false;
    }
}

/* Reads datagrams until n events are out or none is left. An event
 * read after a gap waits in c->held while the LOST record goes first. */
static int s_read(cairn_proc_watch_t *w, cairn_proc_event_t *ev, size_t n)
{
    s_cn_t *c = w->be;
    size_t k = 0;
    while (k < n) {
        if (c->lost_unsaid > 0) {
            ev[k++] = (cairn_proc_event_t){ .type = CAIRN_PROC_LOST, .lost = c->lost_unsaid };
            w->st.lost += c->lost_unsaid;
            c->lost_unsaid = 0;
            continue;
        }
        if (c->has_held) {
            ev[k++] = c->held;
            c->has_held = false;
            continue;
        }
        char buf[1024] __attribute__((aligned(NLMSG_ALIGNTO)));
        ssize_t got = recv(w->fd, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == ENOBUFS)
                continue;   /* the sequence numbers will say how many */
            if (errno == EAGAIN || errno == EINTR)
                break;
            return k > 0 ? (int)k : -errno;
        }
        const struct nlmsghdr *nh = (const void *)buf;
        if (!NLMSG_OK(nh, (size_t)got) || nh->nlmsg_type != NLMSG_DONE)
            continue;
        const struct cn_msg *cm = NLMSG_DATA(nh);
        if (cm->id.idx != CN_IDX_PROC || cm->len < sizeof(struct proc_event))
            continue;
        /* the event sits 36 bytes into the datagram (netlink and connector
         * headers): copied out, as struct proc_event needs 8-byte alignment */
        struct proc_event pe;
        memcpy(&pe, cm->data, sizeof(pe));
        s_seq(c, pe.cpu, cm->seq);
        if (s_event(w, &pe, &c->held))
            c->has_held = true;
        else if (pe.what != PROC_EVENT_NONE)
            w->st.filtered++;
    }
    return (int)k;
}

static void s_close(cairn_proc_watch_t *w)
{
    s_cn_t *c = w->be;
    if (w->fd >= 0)
        close(w->fd);
    if (c) {
        free(c->tab);
        free(c->cg);
        free(c->seq);
        free(c->seen);
        free(c);
    }
}

static const hooks_proc_ops_t s_ops = {
    .read = s_read, .pid = s_sub_pid, .cgroup = s_sub_cgroup, .close = s_close,
};

/* Tells the connector to start sending (PROC_CN_MCAST_LISTEN). The message
 * is laid out by hand: struct cn_msg ends in a flexible array, which no
 * struct may hold in its middle (clang refuses even GNU's extension). */
static int s_listen(int fd)
{
    enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;
    char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(op))]
        __attribute__((aligned(NLMSG_ALIGNTO))) = { 0 };
    struct nlmsghdr *nh = (void *)buf;
    nh->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(op));
    nh->nlmsg_type = NLMSG_DONE;
    struct cn_msg *cm = NLMSG_DATA(nh);
    cm->id.idx = CN_IDX_PROC;
    cm->id.val = CN_VAL_PROC;
    cm->len = sizeof(op);
    memcpy(cm->data, &op, sizeof(op));
    return send(fd, buf, nh->nlmsg_len, 0) < 0 ? -errno : 0;
}

void hooks_exit_on_every_cpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > S_MAX_CPUS ? S_MAX_CPUS : n;
    for (long i = 0; i < n; i++) {
        pid_t k = fork();
        if (k == 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((int)i, &set);
            sched_setaffinity(0, sizeof(set), &set);
            _exit(0);
        }
        if (k > 0)
            waitpid(k, NULL, 0);
    }
}

/* Learns every CPU's sequence number: a child exits on each CPU, and the
 * messages are read until each CPU has spoken (at most 200 ms). A gap
 * before a CPU's first message could not be counted. */
static void s_prime(cairn_proc_watch_t *w)
{
    s_cn_t *c = w->be;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > S_MAX_CPUS ? S_MAX_CPUS : n;
    hooks_exit_on_every_cpu();
    uint64_t end = cairn_now_ms() + 200;
    for (long seen = 0; seen < n && cairn_now_ms() < end;) {
        cairn_proc_event_t ev;
        (void)s_read(w, &ev, 1);   /* nothing is subscribed yet */
        seen = 0;
        for (long i = 0; i < n; i++)
            seen += c->seen[i];
        struct pollfd p = { .fd = w->fd, .events = POLLIN };
        if (seen < n)
            (void)poll(&p, 1, 10);
    }
    c->lost_unsaid = 0;
    w->st = (cairn_proc_stats_t){ 0 };
}

int hooks_cnproc_watch(cairn_hooks_t *h, cairn_proc_watch_t *w, cairn_error_t *err)
{
    w->ops = &s_ops;
    s_cn_t *c = calloc(1, sizeof(*c));
    w->be = c;
    if (!c || !(c->seq = calloc(S_MAX_CPUS, sizeof(*c->seq))) ||
        !(c->seen = calloc(S_MAX_CPUS, sizeof(*c->seen)))) {
        s_close(w);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    w->fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
    int e = w->fd < 0 ? -errno : 0;
    struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
    if (e == 0 && bind(w->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        e = -errno;
    int sz = S_RCVBUF;
    if (e == 0 && setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
        (void)setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (e == 0)
        e = s_listen(w->fd);
    if (e < 0) {
        s_close(w);
        w->be = NULL;
        w->fd = -1;
        return cairn_error_set(err, e, e == -EPERM ? CAIRN_PERMISSION_DENIED : CAIRN_UNSUPPORTED,
                               "proc connector: %s%s", strerror(-e),
                               e == -EPERM ? " (needs CAP_NET_ADMIN)"
                               : e == -EPROTONOSUPPORT ? " (only in the initial network namespace)"
                               : "");
    }
    s_prime(w);
    return 0;
}
