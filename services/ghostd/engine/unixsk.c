/* unixsk.c - unix sockets, both directions: the fd kind FD_UNIX.
 *
 * Dump side. A socket is known by its inode; the kernel's sock_diag
 * (NETLINK_SOCK_DIAG, unix_diag) tells its type, state, name, socket
 * file, peer, queued connections and shutdown without touching it. The
 * checks refuse what could not come back whole, before anything changes:
 * a stream or seqpacket socket whose peer is outside the tree (or is a
 * listener that has not accepted it yet), a listener with connections
 * queued, a dgram socket connected to an unnamed socket outside, a path
 * name whose socket file is not the socket's any more, a socket of
 * another network namespace. Frozen, the first fd written of each socket
 * holds its receive queue: our own descriptor on it (pidfd_getfd) peeks
 * it from SO_PEEK_OFF 0 with SO_PASSCRED on for the moment, so nothing is
 * consumed and each message shows its credentials and boundaries; both
 * options are put back. A queued message carrying fds (SCM_RIGHTS) is
 * refused. (Data a unix socket sent sits in its peer's receive queue:
 * the receive queues are all there is.)
 *
 * Restore side, in the caller before any process exists: every socket of
 * the image made once, as a helper fd: bound to its name again (a path's
 * stale socket file, the one the dump saw, unlinked first, unless a live
 * socket still holds it), listening with its backlog; a connected stream
 * pair remade by socketpair, or, when an end has a name, through a
 * listener on that name (the tree's own, else a temporary one), so that
 * the accepted end has it again.
 * Each process dup3s the socket into its numbers. Once every process
 * exists (the barrier, unixsk_tree_ready) each queue is sent again by the
 * socket's peer (or a temporary sender) message by message, each with its
 * credentials (the sender's pid exists now); then the dgram connections
 * (a dgram socket takes only its peer's messages once connected), the
 * shutdowns and the options.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include "image.h"
#include "ns.h"
#include "unixsk.h"
#include "util/cleanup.h"
#include "verify.h"

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

#define S_ESTABLISHED 1    /* the kernel's TCP_ESTABLISHED, TCP_CLOSE, */
#define S_CLOSE 7          /* TCP_LISTEN, as unix_diag reports them */
#define S_LISTEN 10
#define S_RCV_SHUTDOWN 1
#define S_SEND_SHUTDOWN 2
#define S_NAME_MAX ((int)sizeof(((struct sockaddr_un *)0)->sun_path))
#define S_QUEUE_MAX (GHOST_MAX_RECORD - 8192)   /* bytes of one socket's queue */

/* ---- sock_diag --------------------------------------------------------- */

/* What unix_diag says of one socket. */
typedef struct s_diag {
    uint32_t type, state, shutdown;
    uint8_t name[S_NAME_MAX];
    int name_len;          /* 0: unnamed */
    bool has_vfs;          /* a path name's socket file: */
    uint64_t vfs_ino;
    dev_t vfs_dev;
    uint64_t peer;         /* 0: none, or closed, or not accepted yet */
    uint32_t rqueue;       /* listening: connections queued */
    uint32_t wqueue;       /* listening: the backlog */
} s_diag_t;

static void s_diag_attr(s_diag_t *d, const struct rtattr *a)
{
    const void *v = RTA_DATA(a);
    size_t len = RTA_PAYLOAD(a);

    if (a->rta_type == UNIX_DIAG_NAME && len <= (size_t)S_NAME_MAX) {
        memcpy(d->name, v, len);
        /* a path ends at its NUL (the kernel counts it); an abstract name
         * is all its bytes */
        d->name_len = len && d->name[0] ? (int)strnlen((const char *)d->name, len) : (int)len;
    } else if (a->rta_type == UNIX_DIAG_VFS && len >= sizeof(struct unix_diag_vfs)) {
        const struct unix_diag_vfs *vfs = v;
        d->has_vfs = true;
        d->vfs_ino = vfs->udiag_vfs_ino;
        /* the kernel's dev_t: major above bit 20 */
        d->vfs_dev = makedev(vfs->udiag_vfs_dev >> 20, vfs->udiag_vfs_dev & 0xfffff);
    } else if (a->rta_type == UNIX_DIAG_PEER && len >= 4) {
        d->peer = *(const uint32_t *)v;
    } else if (a->rta_type == UNIX_DIAG_RQLEN && len >= sizeof(struct unix_diag_rqlen)) {
        d->rqueue = ((const struct unix_diag_rqlen *)v)->udiag_rqueue;
        d->wqueue = ((const struct unix_diag_rqlen *)v)->udiag_wqueue;
    } else if (a->rta_type == UNIX_DIAG_SHUTDOWN && len >= 1) {
        d->shutdown = *(const uint8_t *)v;
    }
}

/* sock_diag's view of the unix socket with inode ino in our network
 * namespace: 0, -ENOENT if there is none, else -errno with err set. */
static int s_diag(uint64_t ino, s_diag_t *ret, cairn_error_t *err)
{
    _cleanup_close_ int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req = {
        .h = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
               .nlmsg_flags = NLM_F_REQUEST },
        .r = { .sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (uint32_t)ino,
               .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER |
                             UDIAG_SHOW_RQLEN,
               .udiag_cookie = { ~0u, ~0u } },
    };
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    union {
        struct nlmsghdr h;
        uint8_t b[8192];
    } rsp;

    if (nl < 0 || sendto(nl, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sock_diag: %s", strerror(errno));
    ssize_t n = recv(nl, rsp.b, sizeof rsp.b, 0);
    if (n < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "sock_diag: %s", strerror(errno));
    if (!NLMSG_OK(&rsp.h, (size_t)n))
        return cairn_error_set(err, -EIO, CAIRN_SYSTEM, "sock_diag: short answer");
    if (rsp.h.nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(&rsp.h);
        if (e->error == -ENOENT)
            return -ENOENT;
        return cairn_error_set(err, e->error ? e->error : -EIO, CAIRN_SYSTEM,
                               "sock_diag of socket %llu: %s", (unsigned long long)ino,
                               strerror(-e->error));
    }
    const struct unix_diag_msg *m = NLMSG_DATA(&rsp.h);
    int len = (int)rsp.h.nlmsg_len - (int)NLMSG_LENGTH(sizeof *m);
    s_diag_t d = { .type = m->udiag_type, .state = m->udiag_state };
    for (const struct rtattr *a = (const void *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
        s_diag_attr(&d, a);
    *ret = d;
    return 0;
}

/* ---- names ------------------------------------------------------------- */

static const char *s_type_name(uint32_t type)
{
    return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram"
         : type == SOCK_SEQPACKET ? "seqpacket" : "unknown";
}

/* name (len bytes, abstract with a leading NUL) printable into buf: a
 * path as is, an abstract name as "@name" with other NULs as '@'. */
static const char *s_name_str(const uint8_t *name, size_t len, char *buf, size_t size)
{
    size_t k = 0;

    if (len == 0)
        return "(unnamed)";
    for (size_t i = 0; i < len && k + 1 < size; i++)
        buf[k++] = name[i] == '\0' ? '@' : (char)name[i];
    buf[k] = '\0';
    return buf;
}

static bool s_abstract(const uint8_t *name, size_t len)
{
    return len > 0 && name[0] == '\0';
}

/* The sockaddr of a name (the bytes sock_diag gave). */
static socklen_t s_addr(struct sockaddr_un *sa, const uint8_t *name, size_t len)
{
    *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
    memcpy(sa->sun_path, name, len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

/* ---- dump: describing and checking ------------------------------------- */

/* Whether pid is in another network namespace than ours. */
static bool s_other_netns(pid_t pid)
{
    char path[64];
    struct stat a, b;

    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    return stat(path, &a) == 0 && stat("/proc/self/ns/net", &b) == 0 && a.st_ino != b.st_ino;
}

/* A path name's socket file must still be the socket's (bound again at
 * restore, where the file the dump saw is unlinked first): seen from the
 * process (its root, or its cwd for a relative name). */
static int s_check_name_file(pid_t pid, int fd, const s_diag_t *d, cairn_error_t *err)
{
    char path[PATH_MAX], nb[S_NAME_MAX + 2];
    const char *name = s_name_str(d->name, (size_t)d->name_len, nb, sizeof nb);
    struct stat st;

    if (d->name_len == 0 || s_abstract(d->name, (size_t)d->name_len))
        return 0;
    snprintf(path, sizeof path, "/proc/%d/%s/%s", (int)pid, name[0] == '/' ? "root" : "cwd",
             name);
    if (!d->has_vfs || stat(path, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        st.st_ino != d->vfs_ino || st.st_dev != d->vfs_dev)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix socket bound to %s whose socket "
                               "file was removed or replaced (or a relative name not found "
                               "from its cwd): it could not be bound again",
                               (int)pid, fd, name);
    return 0;
}

/* What one socket alone says against restoring it. */
static int s_check_one(pid_t pid, int fd, const s_diag_t *d, cairn_error_t *err)
{
    char nb[S_NAME_MAX + 2];
    const char *name = s_name_str(d->name, (size_t)d->name_len, nb, sizeof nb);
    bool conn = d->type == SOCK_STREAM || d->type == SOCK_SEQPACKET;

    if (d->type != SOCK_STREAM && d->type != SOCK_DGRAM && d->type != SOCK_SEQPACKET)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix socket of type %u", (int)pid, fd,
                               d->type);
    if (d->state != S_ESTABLISHED && d->state != S_CLOSE && d->state != S_LISTEN)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix %s socket in state %u",
                               (int)pid, fd, s_type_name(d->type), d->state);
    if (d->state == S_LISTEN && d->rqueue > 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix %s socket listening on %s with %u "
                               "connections not accepted yet: their clients could not be "
                               "connected again", (int)pid, fd, s_type_name(d->type), name,
                               d->rqueue);
    if (conn && d->state == S_ESTABLISHED && d->peer == 0 && d->shutdown != 3)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix %s socket connected to a listener "
                               "that has not accepted it yet: it could not be connected again",
                               (int)pid, fd, s_type_name(d->type));
    return s_check_name_file(pid, fd, d, err);
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    s_diag_t d;
    int r = s_diag(p->st->st_ino, &d, err);

    if (r == -ENOENT && s_other_netns(p->pid))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a socket (%s) of another network "
                               "namespace", (int)p->pid, p->fd, p->path);
    if (r == -ENOENT)
        return FILES_NOT_MINE;   /* not a unix socket: refused as a socket */
    if (r == 0)
        r = s_check_one(p->pid, p->fd, &d, err);
    if (r == 0)
        f->kind = CAIRN__GHOST__FD_KIND__FD_UNIX;
    return r;
}

static bool s_tree_fd(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret)
{
    if (f->kind != CAIRN__GHOST__FD_KIND__FD_UNIX)
        return false;
    ret->ino = f->ino;
    return true;
}

static bool s_in_tree(const files_tree_fds_t *tfds, uint64_t ino)
{
    for (size_t i = 0; i < tfds->n; i++)
        if (tfds->v[i].kind == CAIRN__GHOST__FD_KIND__FD_UNIX && tfds->v[i].ino == ino)
            return true;
    return false;
}

/* Whether a socket connected to peer (outside the tree) can come back:
 * only a dgram one to a named peer, connected again by that name. */
static int s_check_outside(const files_tree_fd_t *v, const s_diag_t *d, cairn_error_t *err)
{
    s_diag_t pd = { 0 };
    char nb[S_NAME_MAX + 2];
    int r = s_diag(d->peer, &pd, err);

    if (r < 0 && r != -ENOENT)
        return r;
    const char *peer = s_name_str(pd.name, (size_t)pd.name_len, nb, sizeof nb);
    if (d->type != SOCK_DGRAM)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix %s socket connected to socket "
                               "inode %llu (bound to %s) outside the process tree: it could "
                               "not be connected again", (int)v->pid, v->fd,
                               s_type_name(d->type), (unsigned long long)d->peer, peer);
    if (pd.name_len == 0 || (!s_abstract(pd.name, (size_t)pd.name_len) && pd.name[0] != '/'))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a unix dgram socket connected to socket "
                               "inode %llu outside the process tree, %s: it could not be "
                               "connected again by name", (int)v->pid, v->fd,
                               (unsigned long long)d->peer,
                               pd.name_len ? "bound to a relative path" : "unnamed");
    return 0;
}

/* A socket connected to one outside the tree: refused, unless it is a
 * dgram one connected to a named socket (connected again by name). A
 * dgram socket connected one way to an unnamed one of the tree (which is
 * connected elsewhere) could not be connected again either. */
static int s_check_tree(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                        cairn_error_t *err)
{
    int r = 0;

    for (size_t i = 0; r == 0 && i < tfds->n; i++) {
        const files_tree_fd_t *v = &tfds->v[i];
        s_diag_t d, pd;
        int e = 0;
        if (v->kind != CAIRN__GHOST__FD_KIND__FD_UNIX || s_diag(v->ino, &d, err) < 0 ||
            d.peer == 0)
            continue;   /* gone meanwhile: the freeze's check sees it */
        if (!s_in_tree(tfds, d.peer))
            e = s_check_outside(v, &d, err);
        else if (d.type == SOCK_DGRAM && s_diag(d.peer, &pd, err) == 0 && pd.peer != v->ino &&
                 pd.name_len == 0)
            e = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                "process %d fd %d is a unix dgram socket connected to an "
                                "unnamed socket that is connected elsewhere: it could not "
                                "be connected again", (int)v->pid, v->fd);
        if (e < 0)
            r = ghost_reason_add(rs, e, err, v->pid, "fd %d", v->fd);
    }
    return r;
}

/* ---- dump: recording --------------------------------------------------- */

static int s_getopt(int sk, int opt, int *ret)
{
    socklen_t l = sizeof *ret;
    return getsockopt(sk, SOL_SOCKET, opt, ret, &l) < 0 ? -errno : 0;
}

/* The socket's options, from our descriptor on it. */
static int s_record_options(int sk, Cairn__Ghost__UnixSocket *u, cairn_error_t *err)
{
    int rcv = 0, snd = 0, cred = 0, sec = 0, pidfd = 0, off = -1;
    int r = s_getopt(sk, SO_RCVBUF, &rcv);

    if (r == 0)
        r = s_getopt(sk, SO_SNDBUF, &snd);
    if (r == 0)
        r = s_getopt(sk, SO_PASSCRED, &cred);
    if (r == 0)
        r = s_getopt(sk, SO_PASSSEC, &sec);
    if (r == 0)
        r = s_getopt(sk, SO_PEEK_OFF, &off);
    if (r == 0 && s_getopt(sk, SO_PASSPIDFD, &pidfd) < 0)
        pidfd = 0;   /* an older kernel: no such option */
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "getsockopt: %s", strerror(-r));
    u->rcvbuf = (uint32_t)rcv;
    u->sndbuf = (uint32_t)snd;
    u->passcred = cred != 0;
    u->passsec = sec != 0;
    u->passpidfd = pidfd != 0;
    u->peek_off = off;
    return 0;
}

/* Adds one peeked message to u's queue (data copied). */
static int s_queue_add(Cairn__Ghost__UnixSocket *u, const uint8_t *data, size_t len,
                       const struct ucred *cr, cairn_error_t *err)
{
    Cairn__Ghost__UnixMessage **nv = realloc(u->queue, (u->n_queue + 1) * sizeof *nv);
    Cairn__Ghost__UnixMessage *m = calloc(1, sizeof *m);
    uint8_t *copy = len ? malloc(len) : NULL;

    if (nv)
        u->queue = nv;
    if (!nv || !m || (len && !copy)) {
        free(m);
        free(copy);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    cairn__ghost__unix_message__init(m);
    if (len)
        memcpy(copy, data, len);
    m->data.data = copy;
    m->data.len = len;
    if (cr) {
        m->pid = (uint32_t)cr->pid;
        m->uid = cr->uid;
        m->gid = cr->gid;
    }
    u->queue[u->n_queue++] = m;
    return 0;
}

/* The control messages of one peek: credentials into *cr; fds in flight
 * closed again (ours now) and counted. */
static int s_peek_cmsgs(struct msghdr *m, struct ucred *cr, bool *has_cr)
{
    int n_fds = 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof *cr)) {
            memcpy(cr, CMSG_DATA(c), sizeof *cr);
            *has_cr = true;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                close(fd);
            }
            n_fds += (int)k;
        }
    }
    return n_fds;
}

/* Peeks the whole receive queue of sk (SO_PEEK_OFF from 0 on; the caller
 * turned SO_PASSCRED on), message by message, into u->queue. */
static int s_peek_all(int sk, pid_t pid, int fd, Cairn__Ghost__UnixSocket *u,
                      cairn_error_t *err)
{
    bool stream = u->type == SOCK_STREAM;
    _cleanup_free_ uint8_t *buf = malloc(S_QUEUE_MAX);
    union {
        char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } cm;
    size_t total = 0;

    if (!buf)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (;;) {
        struct iovec iov = { buf, S_QUEUE_MAX };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                            .msg_controllen = sizeof cm.b };
        struct sockaddr_un from;
        struct ucred cr = { 0 };
        bool has_cr = false;
        if (u->type == SOCK_DGRAM) {
            m.msg_name = &from;
            m.msg_namelen = sizeof from;
        }
        ssize_t n = recvmsg(sk, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC |
                                        (stream ? 0 : MSG_TRUNC));
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: peeking "
                                   "its queue: %s", (int)pid, fd, strerror(errno));
        /* the end: a stream's, or a seqpacket's shut down for reading */
        if (n == 0 && (stream || (u->type == SOCK_SEQPACKET &&
                                  (u->shutdown & S_RCV_SHUTDOWN))))
            return 0;
        int n_fds = s_peek_cmsgs(&m, &cr, &has_cr);
        if (m.msg_flags & MSG_CTRUNC)   /* more than any message may carry */
            n_fds = n_fds > 0 ? n_fds : 1;
        if (n_fds > 0)
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d fd %d is a unix socket with %d fds in flight "
                                   "(SCM_RIGHTS) in its receive queue: not restored",
                                   (int)pid, fd, n_fds);
        if (u->type == SOCK_DGRAM && m.msg_namelen > offsetof(struct sockaddr_un, sun_path))
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d fd %d is a unix dgram socket with a datagram "
                                   "queued from a named socket: its sender's name would be "
                                   "lost", (int)pid, fd);
        total += (size_t)n;
        if ((size_t)n > S_QUEUE_MAX || total > S_QUEUE_MAX)
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %d fd %d: unix socket holds more than %u queued "
                                   "bytes (limit)", (int)pid, fd, S_QUEUE_MAX);
        int r = s_queue_add(u, buf, (size_t)n, has_cr ? &cr : NULL, err);
        if (r < 0)
            return r;
    }
}

/* An out-of-band byte (a stream's MSG_OOB) a peek of the queue would not
 * see: refused. A peek for it answers EINVAL when there is none. */
static int s_check_oob(int sk, pid_t pid, int fd, const Cairn__Ghost__UnixSocket *u,
                       cairn_error_t *err)
{
    char b;

    if (u->type != SOCK_STREAM || recv(sk, &b, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) != 1)
        return 0;
    return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                           "process %d fd %d is a unix stream socket with an out-of-band "
                           "byte (MSG_OOB) queued: not restored", (int)pid, fd);
}

/* Credentials' pids named as the image names processes (a job's own). */
static void s_queue_pids(dump_ctx_t *c, Cairn__Ghost__UnixSocket *u)
{
    for (size_t i = 0; i < u->n_queue; i++) {
        Cairn__Ghost__UnixMessage *m = u->queue[i];
        for (size_t k = 0; m->pid && k < c->tree.np; k++)
            if (c->tree.p[k].pid == (pid_t)m->pid) {
                m->pid = (uint32_t)ns_dump_vpid(&c->tree, (pid_t)m->pid);
                m->pid_in_tree = true;
                break;
            }
    }
}

/* The receive queue of the socket behind sk: SO_PEEK_OFF and SO_PASSCRED
 * set for the peek, then put back as they were. */
static int s_record_queue(dump_ctx_t *c, int sk, pid_t pid, int fd,
                          Cairn__Ghost__UnixSocket *u, cairn_error_t *err)
{
    int zero = 0, on = 1, off = u->peek_off, cred = u->passcred;
    int r = 0;

    if (setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) < 0 ||
        setsockopt(sk, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: setsockopt: %s",
                            (int)pid, fd, strerror(errno));
    if (r == 0)
        r = s_check_oob(sk, pid, fd, u, err);
    if (r == 0)
        r = s_peek_all(sk, pid, fd, u, err);
    if ((setsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0 ||
         setsockopt(sk, SOL_SOCKET, SO_PASSCRED, &cred, sizeof cred) < 0) && r == 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: putting its "
                            "socket options back: %s", (int)pid, fd, strerror(errno));
    if (r == 0 && c)
        s_queue_pids(c, u);
    return r;
}

static int s_dup_bytes(ProtobufCBinaryData *b, const uint8_t *v, size_t len)
{
    b->data = len ? malloc(len) : NULL;
    b->len = b->data ? len : 0;
    if (len && !b->data)
        return -ENOMEM;
    if (len)
        memcpy(b->data, v, len);
    return 0;
}

/* The directory a relative name is relative to: the process's cwd (the
 * dump's check made sure the name is found from there). */
static int s_name_dir(pid_t pid, const s_diag_t *d, char **ret, cairn_error_t *err)
{
    char link[PATH_MAX];

    if (d->name_len == 0 || s_abstract(d->name, (size_t)d->name_len) || d->name[0] == '/')
        return 0;
    int r = proc_readlink(pid, "cwd", link, sizeof link, err);
    if (r < 0)
        return r;
    *ret = strdup(link);
    return *ret ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
}

/* sock_diag's view of the socket into u, and an outside dgram peer's
 * name. */
static int s_record_diag(pid_t pid, const Cairn__Ghost__Fd *f, Cairn__Ghost__UnixSocket *u,
                         cairn_error_t *err)
{
    s_diag_t d, pd;
    int r = s_diag(f->ino, &d, err);

    if (r == -ENOENT)
        return cairn_error_set(err, -ENOENT, CAIRN_SYSTEM, "process %d fd %d: its socket "
                               "is gone", (int)pid, f->fd);
    if (r == 0)
        r = s_check_one(pid, f->fd, &d, err);
    if (r < 0)
        return r;
    u->type = d.type;
    u->state = d.state;
    u->name_dev = d.has_vfs ? d.vfs_dev : 0;
    u->name_ino = d.has_vfs ? d.vfs_ino : 0;
    u->peer = d.peer;
    u->backlog = d.state == S_LISTEN ? d.wqueue : 0;
    u->shutdown = d.shutdown;
    if (s_dup_bytes(&u->name, d.name, (size_t)d.name_len) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    r = s_name_dir(pid, &d, &u->name_dir, err);
    if (r == 0 && d.type == SOCK_DGRAM && d.peer && s_diag(d.peer, &pd, err) == 0 &&
        s_dup_bytes(&u->peer_name, pd.name, (size_t)pd.name_len) < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    return r;
}

/* f's socket state into a new f->unix_socket (s_release frees it), with
 * its receive queue if queue; c NULL: its credentials' pids as they are
 * (the verifier reading a restored socket again). */
static int s_record_one(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, bool queue,
                        cairn_error_t *err)
{
    Cairn__Ghost__UnixSocket *u = calloc(1, sizeof *u);

    if (!u)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__unix_socket__init(u);
    f->unix_socket = u;
    int r = s_record_diag(pid, f, u, err);
    _cleanup_close_ int sk = r < 0 ? -1 : ghost_anon_grab_fd(pid, f->fd, err);
    if (r == 0 && sk < 0)
        r = sk;
    if (r == 0)
        r = s_record_options(sk, u, err);
    if (r < 0 || !queue)
        return r;
    u->queue_here = true;
    /* a listener's queue holds connections, refused above if any */
    return u->state == S_LISTEN ? 0 : s_record_queue(c, sk, pid, f->fd, u, err);
}

/* The first fd written of each socket holds its queue: a later one shares
 * its open file (files.c found it by kcmp: a socket has one). */
static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    return s_record_one(c, pid, f, !f->shares, err);
}

static void s_release(Cairn__Ghost__Fd *f)
{
    Cairn__Ghost__UnixSocket *u = f->unix_socket;

    if (!u)
        return;
    for (size_t i = 0; i < u->n_queue; i++) {
        free(u->queue[i]->data.data);
        free(u->queue[i]);
    }
    free(u->queue);
    free(u->name.data);
    if (u->name_dir != protobuf_c_empty_string)
        free(u->name_dir);
    free(u->peer_name.data);
    free(u);
    f->unix_socket = NULL;
}

/* ---- restore: the image's sockets -------------------------------------- */

/* One socket of the tree, made by the caller. */
typedef struct s_sock {
    uint64_t ino;          /* its inode at dump time (Fd.ino) */
    const Cairn__Ghost__UnixSocket *u;   /* the record holding its queue */
    int fd;                /* helper fd; -1 until made */
    int sender;            /* a temporary peer (caller's only) that sends
                              its queue and is closed after; -1 if none */
    bool paired;           /* made connected to its peer (socketpair or
                              accept): no connect later */
} s_sock_t;

/* Every socket of the tree, and the path names bound in this restore. */
struct unixsk_rst {
    s_sock_t *v;           /* one per inode */
    size_t n;
    char **rebound;        /* path names this restore bound (their files
                              are ours now, whatever inode they have) */
    size_t n_rebound;
};

void unixsk_rst_free(rst_tree_t *t)
{
    struct unixsk_rst *ur = t->unixsk;

    if (!ur)
        return;
    for (size_t i = 0; i < ur->n; i++)
        if (ur->v[i].sender >= 0)
            close(ur->v[i].sender);
    for (size_t i = 0; i < ur->n_rebound; i++)
        free(ur->rebound[i]);
    free(ur->rebound);
    free(ur->v);
    free(ur);
    t->unixsk = NULL;
}

static s_sock_t *s_find(struct unixsk_rst *ur, uint64_t ino)
{
    for (size_t i = 0; ino && i < ur->n; i++)
        if (ur->v[i].ino == ino)
            return &ur->v[i];
    return NULL;
}

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const Cairn__Ghost__UnixSocket *u = f->unix_socket;

    if (!u)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d: a unix socket without its state", f->fd);
    if ((u->type != SOCK_STREAM && u->type != SOCK_DGRAM && u->type != SOCK_SEQPACKET) ||
        (u->state != S_ESTABLISHED && u->state != S_CLOSE && u->state != S_LISTEN) ||
        u->name.len > (size_t)S_NAME_MAX || u->peer_name.len > (size_t)S_NAME_MAX ||
        u->shutdown > 3 || (u->n_queue && !u->queue_here) || (u->peer && u->peer == f->ino))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d: unix socket of type %u, state %u, name of "
                               "%zu bytes, shutdown %u", f->fd, u->type, u->state,
                               u->name.len, u->shutdown);
    return 0;
}

/* Runs fn(fd, sa, len) on name, from name_dir for a relative one (the
 * caller's cwd is put back). */
static int s_at_name(int fd, const ProtobufCBinaryData *name, const char *dir,
                     int (*fn)(int, const struct sockaddr *, socklen_t))
{
    struct sockaddr_un sa;
    socklen_t len = s_addr(&sa, name->data, name->len);
    _cleanup_close_ int cwd = -1;

    if (dir && dir[0]) {
        cwd = open(".", O_PATH | O_CLOEXEC);
        if (cwd < 0 || chdir(dir) < 0)
            return -errno;
    }
    int r = fn(fd, (struct sockaddr *)&sa, len) < 0 ? -errno : 0;
    if (cwd >= 0 && fchdir(cwd) < 0 && r == 0)
        r = -errno;
    return r;
}

static int s_stat_at(const ProtobufCBinaryData *name, const char *dir, struct stat *st)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s%s%.*s", dir && dir[0] ? dir : "", dir && dir[0] ? "/" : "",
             (int)name->len, (const char *)name->data);
    return lstat(path, st) < 0 ? -errno : 0;
}

static int s_unlink_at(const ProtobufCBinaryData *name, const char *dir)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s%s%.*s", dir && dir[0] ? dir : "", dir && dir[0] ? "/" : "",
             (int)name->len, (const char *)name->data);
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static bool s_rebound(const struct unixsk_rst *ur, const char *key)
{
    for (size_t i = 0; i < ur->n_rebound; i++)
        if (strcmp(ur->rebound[i], key) == 0)
            return true;
    return false;
}

/* A path name's socket file is ours to replace: the one the dump saw (or
 * one this restore bound), and no live socket holds it (a connect to a
 * file no socket is bound to is refused). */
static int s_take_path(struct unixsk_rst *ur, const Cairn__Ghost__UnixSocket *u,
                       const char *key, cairn_error_t *err)
{
    struct stat st;
    int r = s_stat_at(&u->name, u->name_dir, &st);

    if (s_rebound(ur, key))
        return s_unlink_at(&u->name, u->name_dir);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               "unix socket %s: its socket file is gone since the dump: %s",
                               key, strerror(-r));
    if (!S_ISSOCK(st.st_mode) || st.st_ino != u->name_ino ||
        (u->name_dev && st.st_dev != u->name_dev))
        return cairn_error_set(err, -EEXIST, CAIRN_FAILED_PRECONDITION,
                               "unix socket %s: the file there is not the socket file the "
                               "dump saw (inode %llu, now %llu)", key,
                               (unsigned long long)u->name_ino, (unsigned long long)st.st_ino);
    _cleanup_close_ int probe = socket(AF_UNIX, (int)u->type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    r = probe < 0 ? -errno : s_at_name(probe, &u->name, u->name_dir, connect);
    if (r != -ECONNREFUSED)
        return cairn_error_set(err, -EADDRINUSE, CAIRN_FAILED_PRECONDITION,
                               "unix socket %s: a live socket is still bound there (the "
                               "checkpointed process still runs?)", key);
    return s_unlink_at(&u->name, u->name_dir);
}

/* Binds fd to u's name again (a path's stale file unlinked first). */
static int s_bind(struct unixsk_rst *ur, int fd, const Cairn__Ghost__UnixSocket *u,
                  cairn_error_t *err)
{
    char key[PATH_MAX + S_NAME_MAX + 2], nb[S_NAME_MAX + 2];
    const char *name = s_name_str(u->name.data, u->name.len, nb, sizeof nb);
    bool path = !s_abstract(u->name.data, u->name.len);
    int r = 0;

    if (u->name.len == 0)
        return 0;
    snprintf(key, sizeof key, "%s%s%s", name[0] == '/' || !path ? "" : u->name_dir,
             name[0] == '/' || !path ? "" : "/", name);
    if (path)
        r = s_take_path(ur, u, key, err);
    if (r < 0)
        return r;
    r = s_at_name(fd, &u->name, path ? u->name_dir : NULL, bind);
    if (r < 0)
        return cairn_error_set(err, r, r == -EADDRINUSE ? CAIRN_FAILED_PRECONDITION
                                                        : CAIRN_SYSTEM,
                               "unix socket %s: bind: %s", key, strerror(-r));
    char **nv = path ? realloc(ur->rebound, (ur->n_rebound + 1) * sizeof *nv) : NULL;
    if (path && (!nv || !(nv[ur->n_rebound] = strdup(key))))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (path)
        ur->rebound = nv, ur->n_rebound++;
    return 0;
}

/* Buffer sizes first: the queues are sent again into them. The kernel
 * doubles what it is given; root may pass the sysctl maxima (a user's
 * restore without CAP_NET_ADMIN sets what the user could have set). */
static int s_buffers(int fd, const Cairn__Ghost__UnixSocket *u, cairn_error_t *err)
{
    int now = 0;
    struct { int get, force; uint32_t want; } b[] = {
        { SO_RCVBUF, SO_RCVBUFFORCE, u->rcvbuf }, { SO_SNDBUF, SO_SNDBUFFORCE, u->sndbuf } };

    for (size_t i = 0; i < 2; i++) {
        int half = (int)(b[i].want / 2);
        if (b[i].want == 0 || (s_getopt(fd, b[i].get, &now) == 0 && now == (int)b[i].want))
            continue;
        if (setsockopt(fd, SOL_SOCKET, b[i].force, &half, sizeof half) < 0 &&
            (errno != EPERM || setsockopt(fd, SOL_SOCKET, b[i].get, &half, sizeof half) < 0))
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "unix socket: setting its "
                                   "buffer to %u: %s", b[i].want, strerror(errno));
    }
    return 0;
}

static int s_socket(uint32_t type, cairn_error_t *err)
{
    int fd = socket(AF_UNIX, (int)type | SOCK_CLOEXEC, 0);
    return fd < 0 ? cairn_error_set(err, -errno, CAIRN_SYSTEM, "socket(AF_UNIX): %s",
                                    strerror(errno))
                  : fd;
}

/* Files fd as s's helper. */
static int s_keep(rst_tree_t *t, s_sock_t *s, int fd, cairn_error_t *err)
{
    int r = s ? s_buffers(fd, s->u, err) : 0;

    if (r < 0) {
        close(fd);
        return r;
    }
    s->fd = rst_helper(t, fd, err);
    return s->fd < 0 ? s->fd : 0;
}

static int s_make_alone(rst_tree_t *t, s_sock_t *s, cairn_error_t *err);

/* The listener of the tree bound to u's name (an accepted socket has its
 * listener's name), NULL if none. */
static s_sock_t *s_listener_of(struct unixsk_rst *ur, const Cairn__Ghost__UnixSocket *u)
{
    for (size_t i = 0; i < ur->n; i++) {
        const Cairn__Ghost__UnixSocket *l = ur->v[i].u;
        if (l->state == S_LISTEN && l->type == u->type && l->name.len == u->name.len &&
            memcmp(l->name.data, u->name.data, u->name.len) == 0 &&
            strcmp(l->name_dir, u->name_dir) == 0)
            return &ur->v[i];
    }
    return NULL;
}

/* A connected stream or seqpacket pair a-b (b NULL: a's peer is closed;
 * a temporary one stands for it until a's queue is sent). Unnamed ends:
 * socketpair. Else through the listener on a named end's name (the tree's,
 * else a temporary one), whose name the accepted end then has; the other
 * end bound to its own. */
static int s_make_pair(rst_tree_t *t, s_sock_t *a, s_sock_t *b, cairn_error_t *err)
{
    struct unixsk_rst *ur = t->unixsk;
    s_sock_t *acc = a->u->name.len ? a : b && b->u->name.len ? b : NULL;
    s_sock_t *first = acc ? acc : a, *con = first == a ? b : a;
    uint32_t type = a->u->type;
    int sv[2], r;

    if (!acc) {
        if (socketpair(AF_UNIX, (int)type | SOCK_CLOEXEC, 0, sv) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "socketpair: %s",
                                   strerror(errno));
    } else {
        /* the tree's own listener on that name, if any, accepts it (the
         * accepted end then has its socket file too); else a temporary one */
        s_sock_t *tl = s_listener_of(ur, acc->u);
        if (tl && tl->fd < 0 && (r = s_make_alone(t, tl, err)) < 0)
            return r;
        _cleanup_close_ int l = tl ? -1 : s_socket(type, err);
        sv[1] = !tl && l < 0 ? l : s_socket(type, err);
        if (sv[1] < 0)
            return sv[1];
        r = tl ? 0 : s_bind(ur, l, acc->u, err);
        if (r == 0 && con)
            r = s_bind(ur, sv[1], con->u, err);
        if (r == 0 && ((!tl && listen(l, 1) < 0) ||
                       s_at_name(sv[1], &acc->u->name, acc->u->name_dir, connect) < 0 ||
                       (sv[0] = accept4(tl ? tl->fd : l, NULL, NULL, SOCK_CLOEXEC)) < 0))
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "unix socket: connecting a "
                                "pair again: %s", strerror(errno));
        if (r < 0) {
            close(sv[1]);
            return r;
        }
    }
    a->paired = true;
    if (b)
        b->paired = true;
    r = s_keep(t, first, sv[0], err);
    if (r == 0 && con)
        return s_keep(t, con, sv[1], err);
    if (r == 0)
        a->sender = sv[1];
    else
        close(sv[1]);
    return r;
}

/* A dgram socket whose peer closed (the peer still named in the kernel):
 * one end of a pair whose other end sends its queue and is closed. */
static int s_make_orphan_dgram(rst_tree_t *t, s_sock_t *s, cairn_error_t *err)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "socketpair: %s", strerror(errno));
    s->paired = true;
    s->sender = sv[1];
    return s_keep(t, s, sv[0], err);
}

/* One socket alone: bound, listening if it was; connected later. */
static int s_make_alone(rst_tree_t *t, s_sock_t *s, cairn_error_t *err)
{
    int fd = s_socket(s->u->type, err);
    int r = fd < 0 ? fd : s_bind(t->unixsk, fd, s->u, err);

    if (r == 0 && s->u->state == S_LISTEN && listen(fd, (int)s->u->backlog) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "unix socket: listen: %s",
                            strerror(errno));
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    return s_keep(t, s, fd, err);
}

static int s_make(rst_tree_t *t, s_sock_t *s, cairn_error_t *err)
{
    const Cairn__Ghost__UnixSocket *u = s->u;
    s_sock_t *p = s_find(t->unixsk, u->peer);
    bool mutual = p && p->u->peer == s->ino && p->fd < 0;

    if (u->type != SOCK_DGRAM && u->state == S_ESTABLISHED)
        return s_make_pair(t, s, mutual ? p : NULL, err);
    if (u->type == SOCK_DGRAM && mutual && u->name.len == 0 && p->u->name.len == 0)
        return s_make_pair(t, s, p, err);
    if (u->type == SOCK_DGRAM && u->state == S_ESTABLISHED && !u->peer && u->name.len == 0)
        return s_make_orphan_dgram(t, s, err);
    return s_make_alone(t, s, err);
}

/* Every socket of the image once, by inode: the record holding its queue
 * stands for it. */
static int s_collect(rst_tree_t *t, cairn_error_t *err)
{
    struct unixsk_rst *ur = calloc(1, sizeof *ur);
    size_t n = rst_n_fds(t->im);

    t->unixsk = ur;
    if (ur)
        ur->v = calloc(n + 1, sizeof *ur->v);
    if (!ur || !ur->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < t->im->n_procs; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n; j++) {
            const Cairn__Ghost__Fd *f = pr->fds.v[j]->fd;
            if (f->kind != CAIRN__GHOST__FD_KIND__FD_UNIX)
                continue;
            s_sock_t *s = s_find(ur, f->ino);
            if (!s)
                s = &ur->v[ur->n++], *s = (s_sock_t){ f->ino, f->unix_socket, -1, -1, false };
            if (f->unix_socket->queue_here)
                s->u = f->unix_socket;
        }
    }
    return 0;
}

/* Connected stream and seqpacket sockets first: an accepted one is
 * accepted again by the tree's listener on its name (made then), or by a
 * temporary listener there whose name a later socket takes over. */
static int s_plan(rst_tree_t *t, cairn_error_t *err)
{
    int r = s_collect(t, err);

    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; r == 0 && i < t->unixsk->n; i++) {
            s_sock_t *s = &t->unixsk->v[i];
            bool conn = s->u->type != SOCK_DGRAM && s->u->state == S_ESTABLISHED;
            if (s->fd < 0 && conn == (pass == 0))
                r = s_make(t, s, err);
        }
    return r;
}

/* The socket of f, for files.c's shared open files (every fd after the
 * first of a socket shares it): our own descriptor on it. */
static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const s_sock_t *s = s_find(t->unixsk, f->ino);
    int fd = s && s->fd >= 0 ? fcntl(s->fd, F_DUPFD_CLOEXEC, 0) : -1;

    if (fd < 0)
        return cairn_error_set(err, s ? -errno : -ENOTCONN, CAIRN_SYSTEM,
                               "fd %d: unix socket %llu was not made", f->fd,
                               (unsigned long long)f->ino);
    return fd;
}

/* The socket the caller made into f->fd, with its status flags (one open
 * file per socket: every fd of it shares them, as they did). */
static void s_child(const rst_plan_t *pl, const Cairn__Ghost__Fd *f)
{
    const s_sock_t *s = s_find(pl->tree->unixsk, f->ino);

    if (!s || s->fd < 0)
        rst_child_fail(pl, ENOTCONN, f->fd, "fd %d: unix socket %llu was not made", f->fd,
                       (unsigned long long)f->ino);
    if (dup3(s->fd, f->fd, f->cloexec ? O_CLOEXEC : 0) < 0)
        rst_child_fail(pl, errno, f->fd, "fd %d: dup3: %s", f->fd, strerror(errno));
    if (fcntl(f->fd, F_SETFL, f->flags & O_NONBLOCK) < 0)
        rst_child_fail(pl, errno, f->fd, "fd %d: F_SETFL: %s", f->fd, strerror(errno));
}

/* ---- restore: once every process exists -------------------------------- */

/* The node's pid of the process of a job that sees itself as `inner`:
 * found among our descendants (the job's root is our child) by the last
 * pid of their NSpid. 0 if none. */
static pid_t s_job_node_pid(pid_t inner)
{
    pid_t q[512] = { getpid() };
    size_t head = 0, tail = 1;

    while (head < tail) {
        char path[64], buf[4096];
        pid_t p = q[head++];
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)p, (int)p);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        for (long c; f && fscanf(f, "%ld", &c) == 1 && tail < 512;)
            q[tail++] = (pid_t)c;
        snprintf(path, sizeof path, "/proc/%d/status", (int)p);
        _cleanup_fclose_ FILE *st = p == q[0] ? NULL : fopen(path, "re");
        while (st && fgets(buf, sizeof buf, st))
            if (strncmp(buf, "NSpid:", 6) == 0) {
                const char *last = strrchr(buf, '\t');
                if (last && strchr(buf + 6, '\t') != last && atol(last + 1) == inner)
                    return p;
            }
    }
    return 0;
}

/* The node's pid of the image's pid `pid` of the tree (a job's processes
 * see themselves as the pid table says). 0 if none. */
static pid_t s_node_pid(const rst_tree_t *t, uint32_t pid)
{
    for (size_t i = 0; i < t->im->n_procs; i++)
        if (t->im->procs[i].process->process->pid == pid)
            return t->job ? s_job_node_pid((pid_t)t->pids[i]) : (pid_t)t->pids[i];
    return 0;
}

/* Sends one message of a queue from sender, with its credentials when
 * they can be given (the pid exists); without, when the receiver does not
 * ask for them (the program never sees them). */
static int s_send_one(const rst_tree_t *t, int sender, const s_sock_t *s,
                      const Cairn__Ghost__UnixMessage *m, const struct sockaddr_un *to,
                      socklen_t tolen, cairn_error_t *err)
{
    struct ucred cr = { .pid = m->pid_in_tree ? s_node_pid(t, m->pid) : (pid_t)m->pid,
                        .uid = m->uid, .gid = m->gid };
    union {
        char b[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } cm = { 0 };
    struct iovec iov = { m->data.data, m->data.len };
    struct msghdr mh = { .msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
                         .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                         .msg_controllen = sizeof cm.b };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

    if (cr.pid == 0)
        cr.pid = getpid();   /* a job's sender from outside it shows as 0 there too */
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof cr);
    memcpy(CMSG_DATA(c), &cr, sizeof cr);
    ssize_t n = sendmsg(sender, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == ESRCH && !s->u->passcred) {
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        n = sendmsg(sender, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (n != (ssize_t)m->data.len)
        return cairn_error_set(err, n < 0 ? -errno : -EIO, CAIRN_FAILED_PRECONDITION,
                               "unix socket %llu: sending a queued message of %zu bytes "
                               "(credentials pid %d uid %u) again: %s",
                               (unsigned long long)s->ino, m->data.len, (int)cr.pid, cr.uid,
                               n < 0 ? strerror(errno) : "short write");
    return 0;
}

/* s's queue sent again: by its peer of the tree or its temporary one, or
 * (a named dgram socket) from a socket of our own to its name. */
static int s_refill(rst_tree_t *t, s_sock_t *s, cairn_error_t *err)
{
    const s_sock_t *p = s_find(t->unixsk, s->u->peer);
    int sender = s->sender >= 0 ? s->sender : p && s->paired ? p->fd : -1;
    _cleanup_close_ int own = -1;
    struct sockaddr_un to;
    socklen_t tolen = 0;
    int r = 0;

    if (s->u->n_queue == 0)
        return 0;
    if (sender < 0 && s->u->type == SOCK_DGRAM && s->u->name.len) {
        own = s_socket(SOCK_DGRAM, err);
        if (own < 0)
            return own;
        int big = (int)S_QUEUE_MAX;
        setsockopt(own, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        sender = own;
        tolen = s_addr(&to, s->u->name.data, s->u->name.len);
    }
    if (sender < 0)
        return cairn_error_set(err, -ENOTCONN, CAIRN_FAILED_PRECONDITION,
                               "unix socket %llu: %zu queued messages and nothing that could "
                               "send them again", (unsigned long long)s->ino, s->u->n_queue);
    _cleanup_close_ int cwd = -1;
    if (own >= 0 && s->u->name_dir && s->u->name_dir[0] &&
        ((cwd = open(".", O_PATH | O_CLOEXEC)) < 0 || chdir(s->u->name_dir) < 0))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "chdir %s: %s", s->u->name_dir,
                               strerror(errno));
    for (size_t i = 0; r == 0 && i < s->u->n_queue; i++)
        r = s_send_one(t, sender, s, s->u->queue[i], own >= 0 ? &to : NULL, tolen, err);
    if (cwd >= 0 && fchdir(cwd) < 0 && r == 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fchdir: %s", strerror(errno));
    return r;
}

/* A dgram socket connected again: to its peer of the tree by the peer's
 * name, or to the named socket outside by that name. */
static int s_reconnect(rst_tree_t *t, s_sock_t *s, cairn_error_t *err)
{
    const Cairn__Ghost__UnixSocket *u = s->u;
    const s_sock_t *p = s_find(t->unixsk, u->peer);
    const ProtobufCBinaryData *name = p ? &p->u->name : &u->peer_name;
    const char *dir = p ? p->u->name_dir : u->peer_dir;
    char nb[S_NAME_MAX + 2];

    if (u->type != SOCK_DGRAM || s->paired || !u->peer)
        return 0;
    int r = name->len ? s_at_name(s->fd, name, dir, connect) : -EDESTADDRREQ;
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               "unix dgram socket %llu: connecting again to %s: %s",
                               (unsigned long long)s->ino,
                               s_name_str(name->data, name->len, nb, sizeof nb),
                               strerror(-r));
    return 0;
}

/* Shutdowns (after the queues: a shut down end sends nothing) and the
 * options the program reads. */
static int s_finish_socket(const s_sock_t *s, cairn_error_t *err)
{
    const Cairn__Ghost__UnixSocket *u = s->u;
    int how = (u->shutdown & S_RCV_SHUTDOWN ? 1 : 0) | (u->shutdown & S_SEND_SHUTDOWN ? 2 : 0);
    int cred = u->passcred, sec = u->passsec, pidfd = u->passpidfd, off = u->peek_off;
    static const int hows[] = { -1, SHUT_RD, SHUT_WR, SHUT_RDWR };

    if (how && shutdown(s->fd, hows[how]) < 0 && errno != ENOTCONN)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "unix socket %llu: shutdown: %s",
                               (unsigned long long)s->ino, strerror(errno));
    if (setsockopt(s->fd, SOL_SOCKET, SO_PASSCRED, &cred, sizeof cred) < 0 ||
        setsockopt(s->fd, SOL_SOCKET, SO_PASSSEC, &sec, sizeof sec) < 0 ||
        (pidfd && setsockopt(s->fd, SOL_SOCKET, SO_PASSPIDFD, &pidfd, sizeof pidfd) < 0) ||
        (off >= 0 && setsockopt(s->fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "unix socket %llu: its options: %s",
                               (unsigned long long)s->ino, strerror(errno));
    return 0;
}

int unixsk_tree_ready(rst_tree_t *t, cairn_error_t *err)
{
    struct unixsk_rst *ur = t->unixsk;
    int r = 0;

    for (size_t i = 0; ur && r == 0 && i < ur->n; i++)
        r = s_refill(t, &ur->v[i], err);
    for (size_t i = 0; ur && i < ur->n; i++)
        if (ur->v[i].sender >= 0) {
            close(ur->v[i].sender);   /* the closed peer closes again */
            ur->v[i].sender = -1;
        }
    for (size_t i = 0; ur && r == 0 && i < ur->n; i++)
        r = s_reconnect(t, &ur->v[i], err);
    for (size_t i = 0; ur && r == 0 && i < ur->n; i++)
        r = s_finish_socket(&ur->v[i], err);
    return r;
}

/* ---- verify: what the restore put back --------------------------------- */

static void s_differ_u(ghost_verify_t *v, const rst_proc_t *pr, int fd, const char *what,
                       uint64_t want, uint64_t got)
{
    char w[40], g[40], name[96];

    if (want == got)
        return;
    snprintf(name, sizeof name, "fd %d unix socket %s", fd, what);
    snprintf(w, sizeof w, "%llu", (unsigned long long)want);
    snprintf(g, sizeof g, "%llu", (unsigned long long)got);
    ghost_verify_differ(v, pr, false, name, w, g);
}

/* The queue as recorded against the queue as peeked now: their counts,
 * then the first message whose bytes differ. */
static void s_verify_queue(ghost_verify_t *v, const rst_proc_t *pr, int fd,
                           const Cairn__Ghost__UnixSocket *w, const Cairn__Ghost__UnixSocket *g)
{
    char what[96];

    s_differ_u(v, pr, fd, "queued messages", w->n_queue, g->n_queue);
    for (size_t i = 0; w->n_queue == g->n_queue && i < w->n_queue; i++)
        if (w->queue[i]->data.len != g->queue[i]->data.len ||
            (w->queue[i]->data.len &&
             memcmp(w->queue[i]->data.data, g->queue[i]->data.data, w->queue[i]->data.len))) {
            char a[48], b[48];
            snprintf(what, sizeof what, "fd %d unix socket queued message %zu", fd, i);
            snprintf(a, sizeof a, "%zu bytes", w->queue[i]->data.len);
            snprintf(b, sizeof b, "%zu bytes%s", g->queue[i]->data.len,
                     w->queue[i]->data.len == g->queue[i]->data.len ? ", other bytes" : "");
            ghost_verify_differ(v, pr, false, what, a, b);
            return;
        }
}

/* One socket fd of the restored process, read again as the dump reads it. */
static int s_verify_fd(const rst_proc_t *pr, pid_t pid, const Cairn__Ghost__Fd *f,
                       ghost_verify_t *v, cairn_error_t *err)
{
    const Cairn__Ghost__UnixSocket *w = f->unix_socket;
    Cairn__Ghost__Fd live = *f;
    char path[64], nb[S_NAME_MAX + 2], gb[S_NAME_MAX + 2];
    struct stat st;
    int r;

    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, f->fd);
    if (stat(path, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "verify: stat %s: %s", path,
                               strerror(errno));
    live.ino = st.st_ino;
    live.unix_socket = NULL;
    r = s_record_one(NULL, pid, &live, w->queue_here, err);
    const Cairn__Ghost__UnixSocket *g = live.unix_socket;
    if (r == 0) {
        s_differ_u(v, pr, f->fd, "type", w->type, g->type);
        s_differ_u(v, pr, f->fd, "state", w->state, g->state);
        s_differ_u(v, pr, f->fd, "connected", w->peer != 0, g->peer != 0);
        s_differ_u(v, pr, f->fd, "shutdown", w->shutdown, g->shutdown);
        s_differ_u(v, pr, f->fd, "backlog", w->backlog, g->backlog);
        s_differ_u(v, pr, f->fd, "SO_RCVBUF", w->rcvbuf, g->rcvbuf);
        s_differ_u(v, pr, f->fd, "SO_SNDBUF", w->sndbuf, g->sndbuf);
        s_differ_u(v, pr, f->fd, "SO_PASSCRED", w->passcred, g->passcred);
        s_differ_u(v, pr, f->fd, "SO_PASSSEC", w->passsec, g->passsec);
        s_differ_u(v, pr, f->fd, "SO_PASSPIDFD", w->passpidfd, g->passpidfd);
        s_differ_u(v, pr, f->fd, "SO_PEEK_OFF", (uint32_t)w->peek_off, (uint32_t)g->peek_off);
        if (w->name.len != g->name.len ||
            (w->name.len && memcmp(w->name.data, g->name.data, w->name.len)))
            ghost_verify_differ(v, pr, false, "unix socket name",
                                s_name_str(w->name.data, w->name.len, nb, sizeof nb),
                                s_name_str(g->name.data, g->name.len, gb, sizeof gb));
        if (w->queue_here)
            s_verify_queue(v, pr, f->fd, w, g);
    }
    s_release(&live);
    return r;
}

int unixsk_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                  cairn_error_t *err)
{
    int r = 0;

    (void)im;
    for (size_t i = 0; r == 0 && i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        if (f->kind == CAIRN__GHOST__FD_KIND__FD_UNIX && f->unix_socket)
            r = s_verify_fd(pr, pid, f, v, err);
    }
    return r;
}

const files_kind_t unixsk_kind = {
    .name = "unix socket",
    .first = CAIRN__GHOST__FD_KIND__FD_UNIX,
    .last = CAIRN__GHOST__FD_KIND__FD_UNIX,
    .mode = S_IFSOCK,
    .by_description = true,
    .describe = s_describe,
    .tree_fd = s_tree_fd,
    .check_tree = s_check_tree,
    .record = s_record,
    .release = s_release,
    .check = s_check,
    .plan = s_plan,
    .open = s_open,
    .child = s_child,
};
