/* inetsk.c - TCP and UDP sockets, both directions: the fd kind FD_INET.
 *
 * Dump. An fd on a socket is taken here when the socket is AF_INET or
 * AF_INET6 (a copy of it through pidfd_getfd tells); the socket is found
 * by its inode with sock_diag (INET_DIAG) in its own network namespace
 * (SIOCGSKNS), which says its state, its queues and its shutdown. What
 * cannot come back whole is refused there, before anything changes: a
 * protocol other than TCP and UDP, a TCP state other than CLOSE, LISTEN
 * and ESTABLISHED (named), connections waiting in a listener's accept
 * queue (they have no fd to put them back on: the client would see its
 * connection reset), unread UDP datagrams (their senders cannot be
 * faked), a TCP connection half shut down. While the tree is frozen, an
 * established connection is put in repair mode (TCP_REPAIR) on our copy
 * and read as CRIU reads it: the sequence numbers, both queues, the
 * options agreed at the handshake, the window. Repair mode is what makes
 * the kill silent: the process's last close of a socket in repair mode
 * sends neither FIN nor RST. Until the restore, a packet to the
 * connection's port would find no socket and be answered with a RST:
 * a peer outside the tree sends whenever it likes (data, a retransmit,
 * a probe); and while the tree is frozen a peer's packet that arrives
 * after our socket's queues were read would be acknowledged and lost. So,
 * before the first connection of a process is put in repair mode, every
 * established connection of that process is locked: an nftables set
 * (table inet cairn_ghost, netlock.c) drops the packets to its 4-tuple,
 * from then until the restore lifts it (a connection within the tree:
 * until the kill, which leaves no end of it); TCP retransmits what was
 * dropped. A dump that leaves the tree running (or fails) turns repair
 * mode off again and lifts the locks. A socket in another network
 * namespace than ours (the node's) is refused: the restore makes its
 * sockets in its own.
 *
 * Restore. A new socket gets its options (SO_REUSEADDR held on while it
 * binds: the port's old owners are gone, but a listener and the
 * connections it accepted share it), its address and, for a listener,
 * listen() with its backlog; a connected UDP socket connect(). An
 * established TCP connection is rebuilt in repair mode: sequence numbers
 * before connect (which then sends nothing), the options and window
 * after, the receive queue and the send queue written back into their
 * queues, then repair mode off (a window probe tells the peer we are
 * back). Until the whole tree is back its connections stay locked (the
 * restore adds them all again, so an image from elsewhere is locked too):
 * both ends of a connection inside the tree come back one after the other
 * (in two processes, maybe), and what the first sends (the probe, a
 * retransmit) must not find the second's port closed, or the answer
 * would be a RST. The restore lifts every lock once the tree is made, or
 * failed. A connection to a peer outside the tree comes back only in the
 * network namespace and boot it was dumped in: elsewhere (a migration to
 * another node) the peer's half cannot follow until cluster streams exist,
 * and the restore refuses it up front.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>

#include "inetsk.h"
#include "netlock.h"
#include "verify.h"
#include "util/cleanup.h"

#ifndef TCP_REPAIR_OFF_NO_WP
#define TCP_REPAIR_OFF_NO_WP -1
#endif
#ifndef TCPOPT_MSS
#define TCPOPT_MSS 2
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8
#endif

#define S_QUEUE_MAX (64u << 20)   /* a queue larger than this is refused */

/* ---- the socket as sock_diag sees it ----------------------------------- */

/* What sock_diag says of one socket. */
typedef struct s_diag {
    uint8_t state;             /* TCP_* (net/tcp_states.h) */
    uint32_t rqueue, wqueue;   /* LISTEN: accept queue, backlog; else bytes */
    uint8_t shutdown;          /* SHUT_RD 1, SHUT_WR 2 done */
    struct inet_diag_sockid id;
    uint32_t ino;
} s_diag_t;

/* What a lookup looks for: a socket by inode, or by its 4-tuple. */
typedef struct s_diag_want {
    uint32_t ino;              /* 0: by the tuple below */
    const struct inet_diag_sockid *tuple;
} s_diag_want_t;

static const char *const s_tcp_states[] = {
    [1] = "ESTABLISHED", [2] = "SYN_SENT", [3] = "SYN_RECV", [4] = "FIN_WAIT1",
    [5] = "FIN_WAIT2", [6] = "TIME_WAIT", [7] = "CLOSE", [8] = "CLOSE_WAIT",
    [9] = "LAST_ACK", [10] = "LISTEN", [11] = "CLOSING", [12] = "NEW_SYN_RECV",
};
enum { S_ESTABLISHED = 1, S_CLOSE = 7, S_LISTEN = 10 };

static const char *s_state_name(uint8_t st)
{
    return st < sizeof s_tcp_states / sizeof s_tcp_states[0] && s_tcp_states[st]
               ? s_tcp_states[st] : "unknown";
}

/* A sock_diag socket in the network namespace of socket fd (ours when
 * they are one). *ret_ns_ino: that namespace's inode; *ret_here (if not
 * NULL): whether it is ours. fd or -errno. */
static int s_diag_open(int fd, uint64_t *ret_ns_ino, bool *ret_here)
{
    _cleanup_close_ int ns = ioctl(fd, SIOCGSKNS);
    _cleanup_close_ int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct stat a, b;
    if (ns < 0 || own < 0 || fstat(ns, &a) < 0 || fstat(own, &b) < 0)
        return -errno;
    *ret_ns_ino = a.st_ino;
    bool here = a.st_ino == b.st_ino;
    if (ret_here)
        *ret_here = here;
    if (!here && setns(ns, CLONE_NEWNET) < 0)
        return -errno;
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    int e = errno;
    if (!here && setns(own, CLONE_NEWNET) < 0)
        abort();   /* we would run on in the process's namespace */
    return s < 0 ? -e : s;
}

static bool s_diag_match(const struct inet_diag_msg *m, const s_diag_want_t *w)
{
    if (w->ino)
        return m->idiag_inode == w->ino;
    const struct inet_diag_sockid *t = w->tuple;
    return m->id.idiag_sport == t->idiag_sport && m->id.idiag_dport == t->idiag_dport &&
           memcmp(m->id.idiag_src, t->idiag_src, sizeof t->idiag_src) == 0 &&
           memcmp(m->id.idiag_dst, t->idiag_dst, sizeof t->idiag_dst) == 0;
}

/* Fills *ret from one matching message (its attributes: the shutdown). */
static void s_diag_fill(const struct nlmsghdr *h, s_diag_t *ret)
{
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    *ret = (s_diag_t){ .state = m->idiag_state, .rqueue = m->idiag_rqueue,
                       .wqueue = m->idiag_wqueue, .id = m->id, .ino = m->idiag_inode };
    int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
    for (struct nlattr *a = (struct nlattr *)(m + 1);
         len >= (int)sizeof *a && a->nla_len >= sizeof *a && a->nla_len <= len;
         len -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len)))
        if ((a->nla_type & NLA_TYPE_MASK) == INET_DIAG_SHUTDOWN)
            ret->shutdown = *(uint8_t *)(a + 1);
}

/* Looks the socket up in the namespace diag lives in: by its 4-tuple
 * id (one request: the kernel's own lookup, as cheap with 10000 sockets
 * as with one), or, id NULL, among every socket of the family and
 * protocol. Either way the one matching w: 0 and *ret, -ENOENT, or
 * -errno. */
static int s_diag_find(int diag, int family, int proto, const struct inet_diag_sockid *id,
                       const s_diag_want_t *w, s_diag_t *ret)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req = {
        .h = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
               .nlmsg_flags = NLM_F_REQUEST | (id ? 0 : NLM_F_DUMP) },
        .r = { .sdiag_family = (uint8_t)family, .sdiag_protocol = (uint8_t)proto,
               .idiag_states = ~0u },
    };
    if (id)
        req.r.id = *id;
    struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
    if (sendto(diag, &req, sizeof req, 0, (struct sockaddr *)&nl, sizeof nl) < 0)
        return -errno;
    static _Alignas(struct nlmsghdr) char buf[32768];
    int found = -ENOENT;
    for (;;) {
        ssize_t n = recv(diag, buf, sizeof buf, 0);
        if (n < 0)
            return -errno;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return found;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return e->error ? e->error : -EPROTO;
            }
            if (found == -ENOENT && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg)) &&
                s_diag_match(NLMSG_DATA(h), w)) {
                s_diag_fill(h, ret);
                found = 0;   /* a dump is read on to its end */
            }
            if (id)   /* one answer */
                return found;
        }
    }
}

/* The 4-tuple of socket fd as sock_diag names it (zeros where it is not
 * bound or connected), for an exact lookup. */
static void s_sockid(int fd, struct inet_diag_sockid *id)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    *id = (struct inet_diag_sockid){ .idiag_cookie = { INET_DIAG_NOCOOKIE,
                                                       INET_DIAG_NOCOOKIE } };
    for (int peer = 0; peer < 2; peer++, l = sizeof ss) {
        if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &l)
                  : getsockname(fd, (struct sockaddr *)&ss, &l)) < 0)
            continue;
        __be16 *port = peer ? &id->idiag_dport : &id->idiag_sport;
        void *addr = peer ? (void *)id->idiag_dst : (void *)id->idiag_src;
        if (ss.ss_family == AF_INET) {
            *port = ((struct sockaddr_in *)&ss)->sin_port;
            memcpy(addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        } else {
            *port = ((struct sockaddr_in6 *)&ss)->sin6_port;
            memcpy(addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
            id->idiag_if = ((struct sockaddr_in6 *)&ss)->sin6_scope_id;
        }
    }
}

/* ---- our copy of the socket -------------------------------------------- */

/* What the dump knows of an inet socket fd of the tree. */
typedef struct s_sock {
    int fd;                    /* our copy (pidfd_getfd), owned */
    int family, type, proto;
    s_diag_t d;
    uint64_t ns_ino;
    bool ns_here;              /* in the dumper's network namespace */
} s_sock_t;

static int s_getint(int fd, int level, int name, int *ret)
{
    socklen_t l = sizeof *ret;
    return getsockopt(fd, level, name, ret, &l) < 0 ? -errno : 0;
}

/* A copy of fd in pid, or -errno. */
static int s_grab(pid_t pid, int fd)
{
    _cleanup_close_ int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return -errno;
    int got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
    return got < 0 ? -errno : got;
}

/* Opens and identifies the socket of probe p: FILES_NOT_MINE for another
 * family, 0 and *s (whose fd the caller closes), or a refusal. */
static int s_sock_open(const files_probe_t *p, s_sock_t *s, cairn_error_t *err)
{
    int fd = s_grab(p->pid, p->fd);
    if (fd < 0)
        return cairn_error_set(err, fd, CAIRN_SYSTEM, "process %d fd %d: pidfd_getfd: %s",
                               (int)p->pid, p->fd, strerror(-fd));
    *s = (s_sock_t){ .fd = fd };
    if (s_getint(fd, SOL_SOCKET, SO_DOMAIN, &s->family) < 0 ||
        (s->family != AF_INET && s->family != AF_INET6))
        return FILES_NOT_MINE;
    if (s_getint(fd, SOL_SOCKET, SO_TYPE, &s->type) < 0 ||
        s_getint(fd, SOL_SOCKET, SO_PROTOCOL, &s->proto) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: getsockopt: %s",
                               (int)p->pid, p->fd, strerror(errno));
    if (!(s->type == SOCK_STREAM && s->proto == IPPROTO_TCP) &&
        !(s->type == SOCK_DGRAM && s->proto == IPPROTO_UDP))
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is an inet socket of type %d protocol %d "
                               "(only TCP and UDP sockets are checkpointed)",
                               (int)p->pid, p->fd, s->type, s->proto);
    _cleanup_close_ int diag = s_diag_open(fd, &s->ns_ino, &s->ns_here);
    s_diag_want_t w = { .ino = (uint32_t)p->st->st_ino };
    struct inet_diag_sockid id;
    s_sockid(fd, &id);
    /* By its tuple first; a socket not bound yet, or one sharing its
     * tuple (a listener's port), among them all. */
    int r = diag < 0 ? diag : id.idiag_sport ? s_diag_find(diag, s->family, s->proto, &id, &w, &s->d)
                                          : -ENOENT;
    if (r == -ENOENT && diag >= 0)
        r = s_diag_find(diag, s->family, s->proto, NULL, &w, &s->d);
    /* Never bound: in no table sock_diag reads, and nothing in it. */
    if (r == -ENOENT && !id.idiag_sport) {
        s->d = (s_diag_t){ .state = S_CLOSE, .ino = w.ino };
        r = 0;
    }
    /* Bound once and in no table now: a connection closed under it. */
    if (r == -ENOENT)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a %s socket no longer connected nor "
                               "listening (its connection closed or reset): not restored",
                               (int)p->pid, p->fd, s->proto == IPPROTO_TCP ? "TCP" : "UDP");
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM,
                               "process %d fd %d: sock_diag does not find socket %lu: %s",
                               (int)p->pid, p->fd, (unsigned long)p->st->st_ino,
                               strerror(-r));
    return 0;
}

/* The refusals: what of the socket cannot come back whole. */
static int s_sock_refuse(const files_probe_t *p, const s_sock_t *s, cairn_error_t *err)
{
    const char *proto = s->proto == IPPROTO_TCP ? "TCP" : "UDP";
    uint8_t st = s->d.state;
    /* The restore makes sockets in its own namespace, the node's: one
     * from elsewhere would come back there, silently moved. */
    if (!s->ns_here)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a %s socket in another network "
                               "namespace (%llu) than the node's, where the restore would "
                               "make it", (int)p->pid, p->fd, proto,
                               (unsigned long long)s->ns_ino);
    if (st != S_CLOSE && st != S_LISTEN && st != S_ESTABLISHED)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a %s socket in state %s (only CLOSE, "
                               "LISTEN and ESTABLISHED are restored)", (int)p->pid, p->fd,
                               proto, s_state_name(st));
    if (st == S_LISTEN && s->d.rqueue)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a listening TCP socket with %u "
                               "connection(s) waiting in its accept queue (not accepted "
                               "yet: they would be reset)", (int)p->pid, p->fd,
                               s->d.rqueue);
    if (s->proto == IPPROTO_UDP && s->d.rqueue)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a UDP socket with datagrams not read "
                               "(%u bytes queued: their senders cannot be put back)",
                               (int)p->pid, p->fd, s->d.rqueue);
    if (s->proto == IPPROTO_TCP && st == S_ESTABLISHED && !netlock_available())
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a TCP connection, which needs nft for "
                               "the network lock (apt-get install nftables)", (int)p->pid,
                               p->fd);
    if (s->proto == IPPROTO_TCP && st == S_ESTABLISHED && s->d.shutdown)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is a TCP connection shut down for %s "
                               "(a half-closed connection is not restored)", (int)p->pid,
                               p->fd, s->d.shutdown == SHUT_RD + 1 ? "reading"
                               : s->d.shutdown == SHUT_WR + 1 ? "writing" : "both");
    return 0;
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    s_sock_t s = { .fd = -1 };
    int r = s_sock_open(p, &s, err);
    if (r == 0)
        r = s_sock_refuse(p, &s, err);
    /* Its SIGIO owner (F_SETOWN) is not recorded: the flag alone would
     * come back and the signals not. */
    if (r == 0 && (p->fi->flags & O_ASYNC))
        r = cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                            "process %d fd %d is a socket with O_ASYNC (its SIGIO owner "
                            "is not restored)", (int)p->pid, p->fd);
    if (s.fd >= 0)
        close(s.fd);
    if (r == 0)
        f->kind = CAIRN__GHOST__FD_KIND__FD_INET;
    return r;
}

/* ---- dump: the options ------------------------------------------------- */

/* An option worth keeping, for the families and protocols it is read on. */
typedef struct s_opt {
    int level, name;
    int family;                /* 0: both */
    int proto;                 /* 0: both */
    bool before_bind;          /* must be set before bind (and connect) */
} s_opt_t;

static const s_opt_t s_opts[] = {
    { SOL_SOCKET, SO_REUSEADDR, 0, 0, true },
    { SOL_SOCKET, SO_REUSEPORT, 0, 0, true },
    { SOL_SOCKET, SO_BINDTODEVICE, 0, 0, true },
    { IPPROTO_IPV6, IPV6_V6ONLY, AF_INET6, 0, true },
    { IPPROTO_IP, IP_FREEBIND, 0, 0, true },
    { SOL_SOCKET, SO_KEEPALIVE, 0, 0, false },
    { SOL_SOCKET, SO_BROADCAST, 0, IPPROTO_UDP, false },
    { SOL_SOCKET, SO_OOBINLINE, 0, IPPROTO_TCP, false },
    { SOL_SOCKET, SO_LINGER, 0, 0, false },
    { SOL_SOCKET, SO_PRIORITY, 0, 0, false },
    { SOL_SOCKET, SO_RCVLOWAT, 0, 0, false },
    { SOL_SOCKET, SO_RCVTIMEO_NEW, 0, 0, false },
    { SOL_SOCKET, SO_SNDTIMEO_NEW, 0, 0, false },
    { SOL_SOCKET, SO_MARK, 0, 0, false },
    { SOL_SOCKET, SO_RCVBUF, 0, 0, false },
    { SOL_SOCKET, SO_SNDBUF, 0, 0, false },
    { SOL_SOCKET, SO_TIMESTAMP_NEW, 0, 0, false },
    { IPPROTO_TCP, TCP_NODELAY, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_CORK, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_KEEPIDLE, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_KEEPINTVL, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_KEEPCNT, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_USER_TIMEOUT, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_DEFER_ACCEPT, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_NOTSENT_LOWAT, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_CONGESTION, 0, IPPROTO_TCP, false },
    { IPPROTO_TCP, TCP_QUICKACK, 0, IPPROTO_TCP, false },
    { IPPROTO_IP, IP_TOS, AF_INET, 0, false },
    { IPPROTO_IP, IP_TTL, AF_INET, 0, false },
    { IPPROTO_IP, IP_RECVERR, AF_INET, 0, false },
    { IPPROTO_IP, IP_PKTINFO, AF_INET, IPPROTO_UDP, false },
    { IPPROTO_IP, IP_MULTICAST_TTL, AF_INET, IPPROTO_UDP, false },
    { IPPROTO_IP, IP_MULTICAST_LOOP, AF_INET, IPPROTO_UDP, false },
    { IPPROTO_IPV6, IPV6_TCLASS, AF_INET6, 0, false },
    { IPPROTO_IPV6, IPV6_UNICAST_HOPS, AF_INET6, 0, false },
    { IPPROTO_IPV6, IPV6_RECVERR, AF_INET6, 0, false },
    { IPPROTO_IPV6, IPV6_RECVPKTINFO, AF_INET6, IPPROTO_UDP, false },
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

static bool s_opt_applies(const s_opt_t *o, int family, int proto)
{
    return (!o->family || o->family == family) && (!o->proto || o->proto == proto);
}

static const s_opt_t *s_opt_find(int level, int name)
{
    for (size_t i = 0; i < S_NOPTS; i++)
        if (s_opts[i].level == level && s_opts[i].name == name)
            return &s_opts[i];
    return NULL;
}

static void s_free_inet(Cairn__Ghost__InetSocket *in)
{
    if (!in)
        return;
    for (size_t i = 0; i < in->n_opts; i++) {
        if (in->opts[i])
            free(in->opts[i]->value.data);
        free(in->opts[i]);
    }
    free(in->opts);
    if (in->local)
        free(in->local->addr.data);
    if (in->peer)
        free(in->peer->addr.data);
    free(in->local);
    free(in->peer);
    if (in->tcp) {
        free(in->tcp->send_queue.data);
        free(in->tcp->recv_queue.data);
    }
    free(in->tcp);
    free(in->boot_id);
    free(in);
}

/* Every option of s_opts the socket has, read as it is. */
static int s_read_opts(const s_sock_t *s, Cairn__Ghost__InetSocket *in)
{
    in->opts = calloc(S_NOPTS, sizeof *in->opts);
    if (!in->opts)
        return -ENOMEM;
    for (size_t i = 0; i < S_NOPTS; i++) {
        const s_opt_t *o = &s_opts[i];
        uint8_t buf[64];
        socklen_t l = sizeof buf;
        if (!s_opt_applies(o, s->family, s->proto))
            continue;
        if (getsockopt(s->fd, o->level, o->name, buf, &l) < 0)
            return -errno;
        Cairn__Ghost__SockOpt *so = malloc(sizeof *so);
        uint8_t *v = malloc(l ? l : 1);
        if (!so || !v) {
            free(so);
            free(v);
            return -ENOMEM;
        }
        cairn__ghost__sock_opt__init(so);
        memcpy(v, buf, l);
        so->level = o->level;
        so->name = o->name;
        so->value = (ProtobufCBinaryData){ l, v };
        in->opts[in->n_opts++] = so;
    }
    return 0;
}

/* An address record from a sockaddr (NULL: out of memory). */
static Cairn__Ghost__InetAddr *s_addr_new(const struct sockaddr_storage *ss)
{
    Cairn__Ghost__InetAddr *a = malloc(sizeof *a);
    size_t n = ss->ss_family == AF_INET ? 4 : 16;
    uint8_t *b = malloc(n);
    if (!a || !b) {
        free(a);
        free(b);
        return NULL;
    }
    cairn__ghost__inet_addr__init(a);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *i = (const struct sockaddr_in *)ss;
        memcpy(b, &i->sin_addr, 4);
        a->port = ntohs(i->sin_port);
    } else {
        const struct sockaddr_in6 *i = (const struct sockaddr_in6 *)ss;
        memcpy(b, &i->sin6_addr, 16);
        a->port = ntohs(i->sin6_port);
        a->flowinfo = i->sin6_flowinfo;
        a->scope_id = i->sin6_scope_id;
    }
    a->addr = (ProtobufCBinaryData){ n, b };
    return a;
}

/* The socket's own address (when bound) and its peer's (when connected). */
static int s_read_addrs(const s_sock_t *s, Cairn__Ghost__InetSocket *in)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getsockname(s->fd, (struct sockaddr *)&ss, &l) < 0)
        return -errno;
    bool bound = s->d.id.idiag_sport != 0 || s->d.state == S_LISTEN;
    if (bound && !(in->local = s_addr_new(&ss)))
        return -ENOMEM;
    l = sizeof ss;
    if (getpeername(s->fd, (struct sockaddr *)&ss, &l) == 0) {
        if (!(in->peer = s_addr_new(&ss)))
            return -ENOMEM;
    } else if (errno != ENOTCONN) {
        return -errno;
    }
    return 0;
}

/* ---- dump: an established connection in repair mode -------------------- */

/* The connections of one network namespace the dump locked. */
typedef struct s_netns {
    uint64_t ino;
    int fd;                    /* owned: where nft runs to unlock them */
    netlock_conn_t *v;
    bool *in_tree;             /* [i]: v[i]'s peer is a socket of the tree */
    size_t n, cap;
    size_t locked;             /* v[0..locked) are in the sets */
} s_netns_t;

struct inetsk_dump {
    int *held;                 /* our copies of the connections in repair
                                  mode, owned */
    size_t n_held, cap_held;
    s_netns_t *ns;             /* what is locked, by namespace */
    size_t n_ns;
    pid_t locked_pid;          /* the process whose connections were locked
                                  last (s_lock_process) */
    uint32_t *inos;            /* the tree's sockets (s_tree_sockets) */
    size_t n_inos, cap_inos;
    bool have_inos;            /* inos read */
};

/* ---- dump: reading a connection in repair mode ------------------------- */

/* The sequence number and bytes of one queue (TCP_SEND_QUEUE or
 * TCP_RECV_QUEUE) of a socket in repair mode. */
static int s_read_queue(int fd, int q, uint32_t len, uint32_t *ret_seq,
                        ProtobufCBinaryData *ret)
{
    int seq = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof q) < 0 ||
        s_getint(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq) < 0)
        return -errno;
    *ret_seq = (uint32_t)seq;
    if (len == 0)
        return 0;
    if (len > S_QUEUE_MAX)
        return -EFBIG;
    uint8_t *b = malloc(len);
    if (!b)
        return -ENOMEM;
    ssize_t n = recv(fd, b, len, MSG_PEEK | MSG_DONTWAIT);
    if (n != (ssize_t)len) {
        int e = n < 0 ? errno : EIO;
        free(b);
        return -e;
    }
    *ret = (ProtobufCBinaryData){ len, b };
    return 0;
}

/* The connection's state, the queues and the window (repair mode on). */
static int s_read_tcp(int fd, Cairn__Ghost__TcpRepair *t)
{
    int inq = 0, outq = 0, unsent = 0, mss = 0, ts = 0;
    struct tcp_info ti;
    struct tcp_repair_window w;
    socklen_t l = sizeof ti, lw = sizeof w;
    if (ioctl(fd, SIOCINQ, &inq) < 0 || ioctl(fd, SIOCOUTQ, &outq) < 0 ||
        ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
        return -errno;
    int r = s_read_queue(fd, TCP_RECV_QUEUE, (uint32_t)inq, &t->rcv_seq, &t->recv_queue);
    if (r == 0)
        r = s_read_queue(fd, TCP_SEND_QUEUE, (uint32_t)outq, &t->snd_seq, &t->send_queue);
    if (r == 0 && (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ||
                   s_getint(fd, IPPROTO_TCP, TCP_MAXSEG, &mss) < 0 ||
                   s_getint(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts) < 0 ||
                   getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &lw) < 0))
        r = -errno;
    if (r < 0)
        return r;
    t->unsent = (uint32_t)unsent;
    t->mss = (uint32_t)mss;
    t->timestamp = (uint32_t)ts;
    t->sack = (ti.tcpi_options & TCPI_OPT_SACK) != 0;
    t->timestamps = (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0;
    t->wscale = (ti.tcpi_options & TCPI_OPT_WSCALE) != 0;
    t->snd_wscale = ti.tcpi_snd_wscale;
    t->rcv_wscale = ti.tcpi_rcv_wscale;
    t->snd_wl1 = w.snd_wl1;
    t->snd_wnd = w.snd_wnd;
    t->max_window = w.max_window;
    t->rcv_wnd = w.rcv_wnd;
    t->rcv_wup = w.rcv_wup;
    return 0;
}

static inetsk_dump_t *s_dump_get(dump_ctx_t *c)
{
    if (!c->inet)
        c->inet = calloc(1, sizeof *c->inet);
    return c->inet;
}

static int s_cmp_ino(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* d->inos: the inode of every socket the frozen tree holds, sorted (read
 * once per dump: a tree with 10000 connections asks 10000 times). */
static int s_tree_sockets(const dump_ctx_t *c, inetsk_dump_t *d)
{
    for (size_t i = 0; i < c->tree.np; i++) {
        int *fds = NULL;
        size_t n = 0;
        pid_t pid = c->tree.p[i].pid;
        int r = proc_list_dir(pid, "fd", &fds, &n, NULL);
        for (size_t j = 0; r == 0 && j < n; j++) {
            char name[32], link[64];
            unsigned ino;
            snprintf(name, sizeof name, "fd/%d", fds[j]);
            if (proc_readlink(pid, name, link, sizeof link, NULL) < 0 ||
                sscanf(link, "socket:[%u]", &ino) != 1)
                continue;
            if (d->n_inos == d->cap_inos &&
                !(d->inos = reallocarray(d->inos, d->cap_inos = d->cap_inos * 2 + 64,
                                         sizeof *d->inos)))
                r = -ENOMEM;
            else
                d->inos[d->n_inos++] = ino;
        }
        free(fds);
        if (r < 0)
            return r;
    }
    qsort(d->inos, d->n_inos, sizeof *d->inos, s_cmp_ino);
    d->have_inos = true;
    return 0;
}

/* Whether a process of the tree holds socket inode ino. */
static bool s_tree_holds(dump_ctx_t *c, uint32_t ino)
{
    inetsk_dump_t *d = s_dump_get(c);
    if (!d || (!d->have_inos && s_tree_sockets(c, d) < 0))
        return false;
    return bsearch(&ino, d->inos, d->n_inos, sizeof ino, s_cmp_ino) != NULL;
}

/* Whether the other end of connection s is a socket of the tree: the
 * socket with the reversed 4-tuple, in the same namespace. */
static bool s_peer_in_tree(dump_ctx_t *c, const s_sock_t *s)
{
    struct inet_diag_sockid rev = s->d.id;
    rev.idiag_cookie[0] = rev.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    rev.idiag_sport = s->d.id.idiag_dport;
    rev.idiag_dport = s->d.id.idiag_sport;
    memcpy(rev.idiag_src, s->d.id.idiag_dst, sizeof rev.idiag_src);
    memcpy(rev.idiag_dst, s->d.id.idiag_src, sizeof rev.idiag_dst);
    uint64_t ns;
    _cleanup_close_ int diag = s_diag_open(s->fd, &ns, NULL);
    s_diag_t peer;
    s_diag_want_t w = { .tuple = &rev };
    return diag >= 0 && s_diag_find(diag, s->family, s->proto, &rev, &w, &peer) == 0 &&
           s_tree_holds(c, peer.ino);
}

/* The namespace entry of d for namespace ino (made with a copy of
 * ns_fd's namespace), NULL when out of memory. */
static s_netns_t *s_netns_of(inetsk_dump_t *d, uint64_t ino, int sock_fd)
{
    for (size_t k = 0; k < d->n_ns; k++)
        if (d->ns[k].ino == ino)
            return &d->ns[k];
    s_netns_t *v = reallocarray(d->ns, d->n_ns + 1, sizeof *v);
    if (!v)
        return NULL;
    d->ns = v;
    v[d->n_ns] = (s_netns_t){ .ino = ino, .fd = ioctl(sock_fd, SIOCGSKNS) };
    return &v[d->n_ns++];
}

static bool s_peer_in_tree(dump_ctx_t *c, const s_sock_t *s);

/* Notes fd of pid for the lock when it is an established TCP connection. */
static int s_lock_note(dump_ctx_t *c, inetsk_dump_t *d, pid_t pid, int fd,
                       cairn_error_t *err)
{
    char name[32], link[64];
    unsigned ino;
    snprintf(name, sizeof name, "fd/%d", fd);
    if (proc_readlink(pid, name, link, sizeof link, NULL) < 0 ||
        sscanf(link, "socket:[%u]", &ino) != 1)
        return 0;
    _cleanup_close_ int g = s_grab(pid, fd);
    int family = 0, proto = 0;
    if (g < 0 || s_getint(g, SOL_SOCKET, SO_DOMAIN, &family) < 0 ||
        (family != AF_INET && family != AF_INET6) ||
        s_getint(g, SOL_SOCKET, SO_PROTOCOL, &proto) < 0 || proto != IPPROTO_TCP)
        return 0;   /* not one; what is wrong with it the describe says */
    uint64_t ns_ino = 0;
    _cleanup_close_ int diag = s_diag_open(g, &ns_ino, NULL);
    struct inet_diag_sockid id;
    s_diag_want_t w = { .ino = ino };
    s_diag_t dg;
    s_sockid(g, &id);
    if (diag < 0 || s_diag_find(diag, family, proto, &id, &w, &dg) < 0 ||
        dg.state != S_ESTABLISHED)
        return 0;
    s_netns_t *ns = s_netns_of(d, ns_ino, g);
    if (ns && ns->n == ns->cap) {
        netlock_conn_t *v = reallocarray(ns->v, ns->cap * 2 + 8, sizeof *v);
        bool *t = v ? reallocarray(ns->in_tree, ns->cap * 2 + 8, sizeof *t) : NULL;
        ns->v = v ? v : ns->v;
        ns->in_tree = t ? t : ns->in_tree;
        ns->cap = t ? ns->cap * 2 + 8 : ns->cap;
    }
    if (!ns || ns->n == ns->cap)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    s_sock_t peer = { .fd = g, .family = family, .proto = proto, .d = dg };
    ns->in_tree[ns->n] = s_peer_in_tree(c, &peer);
    ns->v[ns->n++] = (netlock_conn_t){ family, dg.id };
    return 0;
}

/* Locks every established TCP connection of process pid, once, before
 * the first of them is put in repair mode and read: what a peer (in the
 * tree or not) sends once its queues are read must not be acknowledged,
 * or it is lost. One nft transaction per network namespace. */
static int s_lock_process(dump_ctx_t *c, pid_t pid, cairn_error_t *err)
{
    inetsk_dump_t *d = s_dump_get(c);
    if (!d)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (d->locked_pid == pid)
        return 0;
    d->locked_pid = pid;
    int *fds = NULL;
    size_t nf = 0;
    int r = proc_list_dir(pid, "fd", &fds, &nf, err);
    for (size_t i = 0; r == 0 && i < nf; i++)
        r = s_lock_note(c, d, pid, fds[i], err);
    free(fds);
    for (size_t k = 0; r == 0 && k < d->n_ns; k++) {
        s_netns_t *ns = &d->ns[k];
        r = netlock_batch(ns->fd, ns->v + ns->locked, ns->n - ns->locked, true, err);
        if (r == 0)
            ns->locked = ns->n;
    }
    return r;
}

/* Puts connection s in repair mode, held in c (which takes s->fd). */
static int s_hold(dump_ctx_t *c, s_sock_t *s, cairn_error_t *err)
{
    inetsk_dump_t *d = s_dump_get(c);
    if (!d || (d->n_held == d->cap_held &&
               !(d->held = reallocarray(d->held, d->cap_held = d->cap_held * 2 + 8,
                                        sizeof *d->held))))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    int fd = d->held[d->n_held++] = s->fd;
    s->fd = -1;
    int on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "TCP_REPAIR: %s", strerror(errno));
    return 0;
}

static int s_boot_id(char **ret)
{
    char b[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return -errno;
    bool ok = fgets(b, sizeof b, f) != NULL;
    fclose(f);
    b[strcspn(b, "\n")] = '\0';
    if (!ok)
        return -EIO;
    return (*ret = strdup(b)) ? 0 : -ENOMEM;
}

/* The whole record of the socket (the tree is frozen). */
static int s_read_socket(dump_ctx_t *c, pid_t pid, s_sock_t *s,
                         Cairn__Ghost__InetSocket *in, cairn_error_t *err)
{
    in->family = s->family;
    in->type = s->type;
    in->protocol = s->proto;
    in->netns_ino = s->ns_ino;
    in->state = s->d.state == S_LISTEN        ? CAIRN__GHOST__INET_STATE__INET_LISTEN
                : s->d.state == S_ESTABLISHED ? CAIRN__GHOST__INET_STATE__INET_ESTABLISHED
                                              : CAIRN__GHOST__INET_STATE__INET_CLOSE;
    in->backlog = in->state == CAIRN__GHOST__INET_STATE__INET_LISTEN ? s->d.wqueue : 0;
    in->shutdown = s->d.shutdown;
    int r = s_read_opts(s, in);
    if (r == 0)
        r = s_read_addrs(s, in);
    if (r == 0)
        r = s_boot_id(&in->boot_id);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "reading it: %s", strerror(-r));
    if (s->proto != IPPROTO_TCP || in->state != CAIRN__GHOST__INET_STATE__INET_ESTABLISHED)
        return 0;
    if (!(in->tcp = malloc(sizeof *in->tcp)))
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__tcp_repair__init(in->tcp);
    in->tcp->peer_in_tree = s_peer_in_tree(c, s);
    int fd = s->fd;
    r = s_lock_process(c, pid, err);
    if (r == 0)
        r = s_hold(c, s, err);
    if (r == 0 && (r = s_read_tcp(fd, in->tcp)) < 0)
        cairn_error_set(err, r, CAIRN_SYSTEM, "reading the connection in repair mode: %s",
                        r == -EFBIG ? "a queue is larger than 64 MiB" : strerror(-r));
    return r;
}

static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, f->fd);
    struct stat st;
    if (stat(path, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot stat %s: %s", path,
                               strerror(errno));
    files_probe_t p = { .pid = pid, .fd = f->fd, .path = f->path, .st = &st };
    s_sock_t s = { .fd = -1 };
    int r = s_sock_open(&p, &s, err);
    if (r == FILES_NOT_MINE)
        r = cairn_error_set(err, -EBADF, CAIRN_SYSTEM, "no longer an inet socket");
    if (r == 0 && !(f->inet = malloc(sizeof *f->inet)))
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0) {
        cairn__ghost__inet_socket__init(f->inet);
        r = s_read_socket(c, pid, &s, f->inet, err);
    }
    if (s.fd >= 0)
        close(s.fd);
    return r < 0 ? cairn_error_append(err, r, " (process %d fd %d)", (int)pid, f->fd) : 0;
}

static void s_release(Cairn__Ghost__Fd *f)
{
    s_free_inet(f->inet);
    f->inet = NULL;
}

inetsk_dump_t *inetsk_dump_end(inetsk_dump_t *d, bool killed)
{
    if (!d)
        return NULL;
    int off = TCP_REPAIR_OFF_NO_WP;
    for (size_t i = 0; i < d->n_held; i++) {
        if (!killed)   /* nothing was lost: no window probe either */
            setsockopt(d->held[i], IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
        close(d->held[i]);
    }
    for (size_t k = 0; k < d->n_ns; k++) {
        s_netns_t *ns = &d->ns[k];
        /* Killed: a connection between two of its processes has no end
         * left here to reset or to lose a segment, and its tuple must not
         * stay dropped for a new connection that takes it (the restore
         * may be on another node). One to an outside peer stays locked
         * until its restore. */
        size_t n = 0;
        for (size_t i = 0; i < ns->locked; i++)
            if (!killed || ns->in_tree[i])
                ns->v[n++] = ns->v[i];
        netlock_batch(ns->fd, ns->v, n, false, NULL);
        if (ns->fd >= 0)
            close(ns->fd);
        free(ns->v);
        free(ns->in_tree);
    }
    free(d->held);
    free(d->ns);
    free(d->inos);
    free(d);
    return NULL;
}

/* ---- restore ----------------------------------------------------------- */

static bool s_addr_ok(const Cairn__Ghost__InetAddr *a, int family)
{
    return !a || (a->addr.len == (family == AF_INET ? 4u : 16u) && a->port <= 65535);
}

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const Cairn__Ghost__InetSocket *in = f->inet;
    bool tcp = in && in->protocol == IPPROTO_TCP;
    bool est = in && in->state == CAIRN__GHOST__INET_STATE__INET_ESTABLISHED;
    if (!in || (in->family != AF_INET && in->family != AF_INET6) ||
        !(tcp ? in->type == SOCK_STREAM : in->protocol == IPPROTO_UDP && in->type == SOCK_DGRAM) ||
        !s_addr_ok(in->local, in->family) || !s_addr_ok(in->peer, in->family) ||
        (in->state == CAIRN__GHOST__INET_STATE__INET_LISTEN && (!tcp || !in->local)) ||
        (est && (!in->local || !in->peer)) || (tcp && est && !in->tcp))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d is an inet socket record that is not whole",
                               f->fd);
    for (size_t i = 0; i < in->n_opts; i++)
        if (!s_opt_find(in->opts[i]->level, in->opts[i]->name))
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "bad image: fd %d: socket option %d/%d is not one "
                                   "this restorer sets", f->fd, in->opts[i]->level,
                                   in->opts[i]->name);
    if (!tcp || !est || in->tcp->peer_in_tree)
        return 0;
    /* A peer outside the tree keeps its half where it is. */
    struct stat ns;
    char *boot = NULL;
    int r = stat("/proc/self/ns/net", &ns) < 0 ? -errno : s_boot_id(&boot);
    bool here = r == 0 && ns.st_ino == in->netns_ino && strcmp(boot, in->boot_id) == 0;
    free(boot);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "fd %d: where am I: %s", f->fd,
                               strerror(-r));
    if (!here)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "fd %d is a TCP connection to a peer outside the tree (port "
                               "%u to port %u): it is restored only on the node and in "
                               "the network namespace it was checkpointed in, not moved "
                               "(a migration needs cluster streams)", f->fd,
                               in->local->port, in->peer->port);
    return 0;
}

/* A sockaddr from an address record. */
static socklen_t s_sockaddr(int family, const Cairn__Ghost__InetAddr *a,
                            struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *i = (struct sockaddr_in *)ss;
        i->sin_family = AF_INET;
        i->sin_port = htons((uint16_t)a->port);
        memcpy(&i->sin_addr, a->addr.data, 4);
        return sizeof *i;
    }
    struct sockaddr_in6 *i = (struct sockaddr_in6 *)ss;
    i->sin6_family = AF_INET6;
    i->sin6_port = htons((uint16_t)a->port);
    i->sin6_flowinfo = a->flowinfo;
    i->sin6_scope_id = a->scope_id;
    memcpy(&i->sin6_addr, a->addr.data, 16);
    return sizeof *i;
}

/* When s_set_opts sets an option. */
typedef enum { S_BEFORE_BIND, S_ANY_TIME, S_AGAIN_AFTER_BIND } s_pass_t;

/* Sets the recorded options of one pass: those that must be set before
 * bind, the others, or the former again once bind and repair mode have
 * changed them (SO_REUSEADDR; not IPV6_V6ONLY, which a bind to an IPv6
 * address turns on for good, as it did for the dumped socket if it
 * matters). SO_RCVBUF and SO_SNDBUF read double what was asked. */
static int s_set_opts(int fd, const Cairn__Ghost__InetSocket *in, s_pass_t pass,
                      cairn_error_t *err)
{
    for (size_t i = 0; i < in->n_opts; i++) {
        const Cairn__Ghost__SockOpt *o = in->opts[i];
        const s_opt_t *k = s_opt_find(o->level, o->name);
        if (k->before_bind != (pass != S_ANY_TIME) ||
            (pass == S_AGAIN_AFTER_BIND && o->level == IPPROTO_IPV6 && o->name == IPV6_V6ONLY))
            continue;
        uint8_t now[64];
        socklen_t l = sizeof now;
        if (getsockopt(fd, o->level, o->name, now, &l) == 0 && l == o->value.len &&
            (l == 0 || memcmp(now, o->value.data, l) == 0))
            continue;   /* as it is: a buffer left to the kernel stays so */
        int half;
        const void *v = o->value.data;
        socklen_t vl = (socklen_t)o->value.len;
        if (o->level == SOL_SOCKET && (o->name == SO_RCVBUF || o->name == SO_SNDBUF) &&
            vl == sizeof half) {
            memcpy(&half, v, sizeof half);
            half /= 2;
            v = &half;
        }
        /* A user's restore (their file rights, owner.h) gets what the user
         * could set: no FORCE past the system's buffer maximum, and no
         * mark or priority only CAP_NET_ADMIN sets. */
        bool user = (uid_t)setfsuid((uid_t)-1) != 0;
        int value = 0;
        if (vl == sizeof value)
            memcpy(&value, v, sizeof value);
        if (user && o->level == SOL_SOCKET &&
            (o->name == SO_MARK || (o->name == SO_PRIORITY && (value < 0 || value > 6))))
            return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                                   "socket option %d/%d = %d: only a privileged process "
                                   "sets it", o->level, o->name, value);
        int name = !user && o->level == SOL_SOCKET && o->name == SO_RCVBUF ? SO_RCVBUFFORCE
                   : !user && o->level == SOL_SOCKET && o->name == SO_SNDBUF ? SO_SNDBUFFORCE
                                                                            : o->name;
        if (setsockopt(fd, o->level, name, v, vl) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                   "socket option %d/%d: %s", o->level, o->name,
                                   strerror(errno));
    }
    return 0;
}

/* bind with SO_REUSEADDR held on for it (the caller sets the recorded
 * value after); a socket in repair mode binds over any other (the
 * kernel's SK_FORCE_REUSE, which SO_REUSEADDR would undo). */
static int s_bind(int fd, const Cairn__Ghost__Fd *f, bool repair, cairn_error_t *err)
{
    const Cairn__Ghost__InetSocket *in = f->inet;
    struct sockaddr_storage ss;
    int on = 1;
    socklen_t l = s_sockaddr(in->family, in->local, &ss);
    if ((!repair && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) ||
        bind(fd, (struct sockaddr *)&ss, l) < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "fd %d: cannot bind the socket to port %u again: %s", f->fd,
                               in->local->port, strerror(errno));
    return 0;
}

static int s_setint(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v) < 0 ? -errno : 0;
}

/* Writes a queue back (repair mode, the queue selected). */
static int s_write_queue(int fd, int q, const ProtobufCBinaryData *b)
{
    int r = s_setint(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, q);
    for (size_t done = 0; r == 0 && done < b->len;) {
        ssize_t n = send(fd, b->data + done, b->len - done, 0);
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return r;
}

/* The established connection, rebuilt in repair mode. */
static int s_repair(int fd, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    const Cairn__Ghost__InetSocket *in = f->inet;
    const Cairn__Ghost__TcpRepair *t = in->tcp;
    struct sockaddr_storage ss;
    const char *step = "TCP_REPAIR";
    int r = s_setint(fd, IPPROTO_TCP, TCP_REPAIR, 1);
    /* The queues' first bytes: writing them back moves these on to the
     * numbers the dump read. */
    if (r == 0 && !(r = s_setint(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)))
        r = s_setint(fd, IPPROTO_TCP, TCP_QUEUE_SEQ,
                     (int)(t->rcv_seq - (uint32_t)t->recv_queue.len));
    if (r == 0 && !(r = s_setint(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)))
        r = s_setint(fd, IPPROTO_TCP, TCP_QUEUE_SEQ,
                     (int)(t->snd_seq - (uint32_t)t->send_queue.len));
    if (r == 0 && (r = s_bind(fd, f, true, err)) < 0)
        return r;
    if (r == 0) {
        step = "connect";
        socklen_t l = s_sockaddr(in->family, in->peer, &ss);
        r = connect(fd, (struct sockaddr *)&ss, l) < 0 ? -errno : 0;
    }
    struct tcp_repair_opt opts[4];
    unsigned n = 0;
    opts[n++] = (struct tcp_repair_opt){ TCPOPT_MSS, t->mss };
    if (t->wscale)
        opts[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW,
                                             t->snd_wscale | (t->rcv_wscale << 16) };
    if (t->sack)
        opts[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERM, 0 };
    if (t->timestamps)
        opts[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
    if (r == 0 && (step = "TCP_REPAIR_OPTIONS") &&
        setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, n * sizeof opts[0]) < 0)
        r = -errno;
    if (r == 0 && t->timestamps && (step = "TCP_TIMESTAMP"))
        r = s_setint(fd, IPPROTO_TCP, TCP_TIMESTAMP, (int)t->timestamp);
    if (r == 0 && (step = "the receive queue"))
        r = s_write_queue(fd, TCP_RECV_QUEUE, &t->recv_queue);
    if (r == 0 && (step = "the send queue"))
        r = s_write_queue(fd, TCP_SEND_QUEUE, &t->send_queue);
    struct tcp_repair_window w = { t->snd_wl1, t->snd_wnd, t->max_window, t->rcv_wnd,
                                   t->rcv_wup };
    if (r == 0 && (step = "TCP_REPAIR_WINDOW") &&
        setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) < 0)
        r = -errno;
    /* Off with a window probe (dropped by the lock until the tree is
     * back: the peer may not be yet). */
    if (r == 0 && (step = "TCP_REPAIR off"))
        r = s_setint(fd, IPPROTO_TCP, TCP_REPAIR, 0);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM,
                               "fd %d: the TCP connection (port %u to port %u) could not "
                               "be rebuilt: %s: %s", f->fd, in->local->port, in->peer->port,
                               step, strerror(-r));
    return 0;
}

/* The socket of f, as the dump left it, O_CLOEXEC. */
static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    (void)t;
    const Cairn__Ghost__InetSocket *in = f->inet;
    bool tcp = in->protocol == IPPROTO_TCP;
    _cleanup_close_ int fd = socket(in->family, in->type | SOCK_CLOEXEC, in->protocol);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: socket: %s", f->fd,
                               strerror(errno));
    int r = s_set_opts(fd, in, S_BEFORE_BIND, err);
    if (r == 0)
        r = s_set_opts(fd, in, S_ANY_TIME, err);
    if (r < 0)
        return cairn_error_append(err, r, " (fd %d)", f->fd);
    if (tcp && in->state == CAIRN__GHOST__INET_STATE__INET_ESTABLISHED)
        r = s_repair(fd, f, err);
    else if (in->local)
        r = s_bind(fd, f, false, err);
    if (r == 0 && in->state == CAIRN__GHOST__INET_STATE__INET_LISTEN &&
        listen(fd, (int)in->backlog) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: listen: %s", f->fd,
                            strerror(errno));
    if (r == 0 && !tcp && in->peer) {
        struct sockaddr_storage ss;
        socklen_t l = s_sockaddr(in->family, in->peer, &ss);
        if (connect(fd, (struct sockaddr *)&ss, l) < 0)
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: connect: %s", f->fd,
                                strerror(errno));
    }
    if (r == 0 && !tcp && in->shutdown && shutdown(fd, (int)in->shutdown - 1) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: shutdown: %s", f->fd,
                            strerror(errno));
    /* SO_REUSEADDR as it was: bind and repair mode changed it. */
    if (r == 0 && (r = s_set_opts(fd, in, S_AGAIN_AFTER_BIND, err)) < 0)
        cairn_error_append(err, r, " (fd %d)", f->fd);
    if (r == 0 && fcntl(fd, F_SETFL, f->flags & O_NONBLOCK) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "fd %d: F_SETFL: %s", f->fd,
                            strerror(errno));
    return r < 0 ? r : TAKE_FD(fd);
}

const files_kind_t inetsk_kind = {
    .name = "inet socket",
    .first = CAIRN__GHOST__FD_KIND__FD_INET,
    .last = CAIRN__GHOST__FD_KIND__FD_INET,
    .mode = S_IFSOCK,
    .by_description = true,
    .describe = s_describe,
    .record = s_record,
    .release = s_release,
    .check = s_check,
    .open = s_open,
};

/* ---- restore: the network lock ---------------------------------------- */

int inetsk_lock_image(const rst_image_t *im, bool lock, cairn_error_t *err)
{
    netlock_conn_t *v = calloc(rst_n_fds(im) + 1, sizeof *v);
    size_t n = 0;
    if (!v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            const Cairn__Ghost__InetSocket *in = f->inet;
            if (f->kind != CAIRN__GHOST__FD_KIND__FD_INET || f->shares || !in->tcp)
                continue;
            netlock_conn_t *c = &v[n++];
            *c = (netlock_conn_t){ .family = in->family,
                             .id = { .idiag_sport = htons((uint16_t)in->local->port),
                                     .idiag_dport = htons((uint16_t)in->peer->port) } };
            memcpy(c->id.idiag_src, in->local->addr.data, in->local->addr.len);
            memcpy(c->id.idiag_dst, in->peer->addr.data, in->peer->addr.len);
        }
    int r = netlock_batch(-1, v, n, lock, err);
    free(v);
    return r;
}

/* ---- the verifier (verify.c's table) ------------------------------------ */

/* One difference of fd f, "what" naming the piece. */
static void s_differ(ghost_verify_t *v, const rst_proc_t *pr, const Cairn__Ghost__Fd *f,
                     const char *piece, const char *want, const char *got)
{
    char what[128];
    snprintf(what, sizeof what, "fd %d (inet socket) %s", f->fd, piece);
    ghost_verify_differ(v, pr, false, what, want, got);
}

static void s_differ_u(ghost_verify_t *v, const rst_proc_t *pr, const Cairn__Ghost__Fd *f,
                       const char *piece, unsigned long long want, unsigned long long got)
{
    char w[32], g[32];
    if (want == got)
        return;
    snprintf(w, sizeof w, "%llu", want);
    snprintf(g, sizeof g, "%llu", got);
    s_differ(v, pr, f, piece, w, g);
}

/* The address record a (NULL: none) against the socket's now, ss. */
static void s_verify_addr(ghost_verify_t *v, const rst_proc_t *pr, const Cairn__Ghost__Fd *f,
                          const char *piece, const Cairn__Ghost__InetAddr *a, bool have,
                          const struct sockaddr_storage *ss)
{
    Cairn__Ghost__InetAddr *now = have ? s_addr_new(ss) : NULL;
    bool same = !a == !now && (!a || (a->port == now->port && a->addr.len == now->addr.len &&
                                      memcmp(a->addr.data, now->addr.data, a->addr.len) == 0));
    if (!same)
        s_differ(v, pr, f, piece, a ? "bound" : "none", now ? "bound elsewhere" : "none");
    if (now)
        free(now->addr.data);
    free(now);
}

/* One socket of the image against the restored one (ours: a copy). */
static void s_verify_one(ghost_verify_t *v, const rst_proc_t *pr, const Cairn__Ghost__Fd *f,
                         const s_sock_t *s)
{
    const Cairn__Ghost__InetSocket *in = f->inet;
    s_differ_u(v, pr, f, "family", (unsigned)in->family, (unsigned)s->family);
    s_differ_u(v, pr, f, "protocol", (unsigned)in->protocol, (unsigned)s->proto);
    uint8_t want = in->state == CAIRN__GHOST__INET_STATE__INET_LISTEN        ? S_LISTEN
                   : in->state == CAIRN__GHOST__INET_STATE__INET_ESTABLISHED ? S_ESTABLISHED
                                                                             : S_CLOSE;
    if (want != s->d.state)
        s_differ(v, pr, f, "state", s_state_name(want), s_state_name(s->d.state));
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    bool bound = getsockname(s->fd, (struct sockaddr *)&ss, &l) == 0 &&
                 (s->d.id.idiag_sport != 0 || s->d.state == S_LISTEN);
    s_verify_addr(v, pr, f, "address", in->local, bound, &ss);
    l = sizeof ss;
    bool conn = getpeername(s->fd, (struct sockaddr *)&ss, &l) == 0;
    s_verify_addr(v, pr, f, "peer", in->peer, conn, &ss);
    for (size_t i = 0; i < in->n_opts; i++) {
        const Cairn__Ghost__SockOpt *o = in->opts[i];
        uint8_t now[64];
        socklen_t n = sizeof now;
        if (o->level == IPPROTO_IPV6 && o->name == IPV6_V6ONLY)
            continue;   /* a bind to an IPv6 address sets it (s_set_opts) */
        if (getsockopt(s->fd, o->level, o->name, now, &n) < 0 || n != o->value.len ||
            (n && memcmp(now, o->value.data, n) != 0)) {
            int had, has;
            if (o->level == SOL_SOCKET && (o->name == SO_RCVBUF || o->name == SO_SNDBUF) &&
                n == sizeof has && o->value.len == sizeof had) {
                memcpy(&had, o->value.data, sizeof had);
                memcpy(&has, now, sizeof has);
                if (has >= had)
                    continue;   /* a buffer left to the kernel, grown by TCP's
                                   autotuning as the unlocked connection took
                                   data since the restore set it */
            }
            char piece[48];
            snprintf(piece, sizeof piece, "option %d/%d", o->level, o->name);
            s_differ(v, pr, f, piece, "as dumped", "differs");
        }
    }
    int inq = 0, outq = 0;
    /* The tree is held but its connections unlocked: a peer's segment
     * may have added to the receive queue, an acknowledgement taken from
     * the send queue; a loss is less received, or more to send. */
    if (in->tcp && ioctl(s->fd, SIOCINQ, &inq) == 0 && ioctl(s->fd, SIOCOUTQ, &outq) == 0) {
        if ((unsigned)inq < in->tcp->recv_queue.len)
            s_differ_u(v, pr, f, "receive queue bytes", in->tcp->recv_queue.len, (unsigned)inq);
        if ((unsigned)outq > in->tcp->send_queue.len)
            s_differ_u(v, pr, f, "send queue bytes", in->tcp->send_queue.len, (unsigned)outq);
    }
}

int inetsk_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                  cairn_error_t *err)
{
    (void)im;
    for (size_t i = 0; i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        /* An fd sharing a socket is compared through its owner: its own
         * record was read with the socket in repair mode already. */
        if (f->kind != CAIRN__GHOST__FD_KIND__FD_INET || f->shares)
            continue;
        char path[48];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, f->fd);
        if (stat(path, &st) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot stat %s: %s", path,
                                   strerror(errno));
        files_probe_t p = { .pid = pid, .fd = f->fd, .path = path, .st = &st };
        s_sock_t s = { .fd = -1 };
        cairn_error_t e;
        int r = S_ISSOCK(st.st_mode) ? s_sock_open(&p, &s, &e) : FILES_NOT_MINE;
        if (r == FILES_NOT_MINE)
            s_differ(v, pr, f, "kind", "an inet socket", "another file");
        else if (r < 0 && s.fd >= 0)
            s_differ(v, pr, f, "lookup", "found by sock_diag", e.message);
        else if (r < 0)
            return cairn_error_set(err, r, CAIRN_SYSTEM, "%s", e.message);
        else
            s_verify_one(v, pr, f, &s);
        if (s.fd >= 0)
            close(s.fd);
    }
    return 0;
}
