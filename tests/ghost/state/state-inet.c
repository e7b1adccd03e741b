/* state-inet.c - the inet cases of ghost-state (state.h): inet sockets:
 * TCP listening and established (TCP_REPAIR), UDP.
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason. Everything runs on loopback, so the
 * cases run in whatever network namespace the test gives them.
 *
 * A connection is checked by what crosses it: the bytes queued in both
 * directions at the checkpoint come out first, whole and in order, then
 * new bytes go both ways. A peer "outside the tree" is a grandchild that
 * the case's child leaves behind (reparented away from the tree), which
 * echoes what it reads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

#define S_QUEUED 100000   /* bytes left in a queue at the checkpoint */

/* The fds and ports a case keeps for its check. */
typedef struct s_net {
    int lfd, a, b;             /* listener, the two ends (-1: none) */
    int port;
    pid_t peer;                /* a peer process, or 0 */
} s_net_t;

static s_net_t *s_net_new(void)
{
    s_net_t *n = calloc(1, sizeof *n);
    if (n)
        *n = (s_net_t){ -1, -1, -1, 0, 0 };
    return n;
}

/* The byte at offset i of the stream tagged tag. */
static uint8_t s_byte(size_t i, int tag)
{
    return (uint8_t)(i * 31 + i / 251 + (size_t)tag);
}

static int s_port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
        return -1;
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A loopback address of family, port port. */
static socklen_t s_loop(int family, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *i = (struct sockaddr_in *)ss;
        i->sin_family = AF_INET;
        i->sin_port = htons((uint16_t)port);
        i->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof *i;
    }
    struct sockaddr_in6 *i = (struct sockaddr_in6 *)ss;
    i->sin6_family = AF_INET6;
    i->sin6_port = htons((uint16_t)port);
    i->sin6_addr = in6addr_loopback;
    return sizeof *i;
}

static int s_setint(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v);
}

static int s_getint(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    return getsockopt(fd, level, name, &v, &l) < 0 ? -1 : v;
}

/* A listener on loopback (an ephemeral port), SO_REUSEADDR on. */
static int s_listen(int family, int backlog)
{
    struct sockaddr_storage ss;
    int fd = socket(family, SOCK_STREAM, 0);
    socklen_t l = s_loop(family, 0, &ss);
    if (fd < 0 || s_setint(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0 ||
        (family == AF_INET6 && s_setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0) ||
        bind(fd, (struct sockaddr *)&ss, l) < 0 || listen(fd, backlog) < 0)
        return state_fail("listener: %s", strerror(errno));
    return fd;
}

static int s_connect(int family, int port)
{
    struct sockaddr_storage ss;
    int fd = socket(family, SOCK_STREAM, 0);
    socklen_t l = s_loop(family, port, &ss);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, l) < 0)
        return state_fail("connect to port %d: %s", port, strerror(errno));
    return fd;
}

/* Writes n bytes of stream tag from offset off (blocking). */
static int s_send(int fd, size_t off, size_t n, int tag)
{
    uint8_t buf[4096];
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = s_byte(off + i, tag);
        ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
        if (w <= 0)
            return state_fail("send: %s", w < 0 ? strerror(errno) : "nothing sent");
        off += (size_t)w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads n bytes and checks they are stream tag from offset off (5 s). */
static int s_expect(int fd, size_t off, size_t n, int tag, const char *what)
{
    uint8_t buf[4096];
    size_t got = 0;
    while (got < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5000) != 1)
            return state_fail("%s: %zu of %zu bytes came (then nothing for 5 s)", what,
                              got, n);
        size_t k = n - got < sizeof buf ? n - got : sizeof buf;
        ssize_t r = recv(fd, buf, k, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            continue;
        if (r <= 0)
            return state_fail("%s: after %zu of %zu bytes: %s", what, got, n,
                              r < 0 ? strerror(errno) : "end of stream");
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != s_byte(off + got + (size_t)i, tag))
                return state_fail("%s: byte %zu differs", what, got + (size_t)i);
        got += (size_t)r;
    }
    return 0;
}

/* ---- listeners --------------------------------------------------------- */

static int s_listen_setup(void **ctx, int family)
{
    s_net_t *n = s_net_new();
    if (!n || (n->lfd = s_listen(family, 7)) < 0)
        return -1;
    n->port = s_port_of(n->lfd);
    *ctx = n;
    return 0;
}

static int s_listen_check(void *ctx, int family)
{
    s_net_t *n = ctx;
    if (s_port_of(n->lfd) != n->port)
        return state_fail("listener port %d, was %d", s_port_of(n->lfd), n->port);
    if (s_getint(n->lfd, SOL_SOCKET, SO_ACCEPTCONN) != 1)
        return state_fail("not listening");
    if (s_getint(n->lfd, SOL_SOCKET, SO_REUSEADDR) != 1)
        return state_fail("SO_REUSEADDR lost");
    if (family == AF_INET6 && s_getint(n->lfd, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
        return state_fail("IPV6_V6ONLY lost");
    int c = s_connect(family, n->port);
    if (c < 0)
        return -1;
    int a = accept(n->lfd, NULL, NULL);
    if (a < 0)
        return state_fail("accept: %s", strerror(errno));
    return s_send(c, 0, 1000, 1) < 0 ? -1 : s_expect(a, 0, 1000, 1, "new connection");
}

static int s_listen4_setup(void **ctx) { return s_listen_setup(ctx, AF_INET); }
static int s_listen4_check(void *ctx) { return s_listen_check(ctx, AF_INET); }
static int s_listen6_setup(void **ctx) { return s_listen_setup(ctx, AF_INET6); }
static int s_listen6_check(void *ctx) { return s_listen_check(ctx, AF_INET6); }

/* ---- an established connection, both ends in the process -------------- */

/* A connection a <-> b through a listener, S_QUEUED bytes left unread in
 * each direction, and options on a. */
/* A dual-stack listener: [::] with IPV6_V6ONLY off (what python's
 * http.server makes without --bind), so an IPv4 client's connection is an
 * IPv6 socket with IPv4-mapped addresses on its side. */
static int s_listen_dual(void)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0 || s_setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0)
        return state_fail("dual-stack listener: %s", strerror(errno));
    return fd;
}

/* family: the client's; the listener's too, unless mapped (dual-stack). */
static int s_pair_setup(void **ctx, int family, bool mapped)
{
    s_net_t *n = s_net_new();
    if (!n || (n->lfd = mapped ? s_listen_dual() : s_listen(family, 4)) < 0)
        return -1;
    n->port = s_port_of(n->lfd);
    if ((n->a = s_connect(family, n->port)) < 0)
        return -1;
    if ((n->b = accept(n->lfd, NULL, NULL)) < 0)
        return state_fail("accept: %s", strerror(errno));
    if (s_setint(n->a, IPPROTO_TCP, TCP_NODELAY, 1) < 0 ||
        s_setint(n->a, SOL_SOCKET, SO_KEEPALIVE, 1) < 0 ||
        s_setint(n->a, IPPROTO_TCP, TCP_KEEPIDLE, 77) < 0 ||
        (family == AF_INET && s_setint(n->a, IPPROTO_IP, IP_TOS, IPTOS_LOWDELAY) < 0) ||
        s_setint(n->a, SOL_SOCKET, SO_SNDBUF, 1 << 20) < 0 ||
        fcntl(n->a, F_SETFL, O_NONBLOCK) < 0)
        return state_fail("options: %s", strerror(errno));
    /* b's send buffer takes all: nothing blocks, some stays unsent. */
    if (s_setint(n->b, SOL_SOCKET, SO_SNDBUF, 1 << 20) < 0 ||
        s_send(n->b, 0, S_QUEUED, 2) < 0)
        return -1;
    /* a is non-blocking: written in pieces as its buffer empties. */
    for (size_t off = 0; off < S_QUEUED;) {
        uint8_t buf[4096];
        size_t k = S_QUEUED - off < sizeof buf ? S_QUEUED - off : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = s_byte(off + i, 3);
        ssize_t w = send(n->a, buf, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = n->a, .events = POLLOUT };
            if (poll(&p, 1, 5000) != 1)
                return state_fail("a's buffer stays full");
            continue;
        }
        if (w <= 0)
            return state_fail("send: %s", strerror(errno));
        off += (size_t)w;
    }
    *ctx = n;
    return 0;
}

static int s_pair_check(void *ctx, int family)
{
    s_net_t *n = ctx;
    if (s_getint(n->a, IPPROTO_TCP, TCP_NODELAY) != 1 ||
        s_getint(n->a, SOL_SOCKET, SO_KEEPALIVE) != 1 ||
        s_getint(n->a, IPPROTO_TCP, TCP_KEEPIDLE) != 77)
        return state_fail("a's TCP_NODELAY %d SO_KEEPALIVE %d TCP_KEEPIDLE %d",
                          s_getint(n->a, IPPROTO_TCP, TCP_NODELAY),
                          s_getint(n->a, SOL_SOCKET, SO_KEEPALIVE),
                          s_getint(n->a, IPPROTO_TCP, TCP_KEEPIDLE));
    if (family == AF_INET && s_getint(n->a, IPPROTO_IP, IP_TOS) != IPTOS_LOWDELAY)
        return state_fail("IP_TOS is %d", s_getint(n->a, IPPROTO_IP, IP_TOS));
    if (!(fcntl(n->a, F_GETFL) & O_NONBLOCK))
        return state_fail("a lost O_NONBLOCK");
    if (s_expect(n->a, 0, S_QUEUED, 2, "b to a, queued") < 0 ||
        s_expect(n->b, 0, S_QUEUED, 3, "a to b, queued") < 0)
        return -1;
    if (s_send(n->b, S_QUEUED, 5000, 2) < 0 || s_expect(n->a, S_QUEUED, 5000, 2, "b to a") < 0)
        return -1;
    return s_send(n->a, S_QUEUED, 5000, 3) < 0 ? -1
                                                : s_expect(n->b, S_QUEUED, 5000, 3, "a to b");
}

static int s_pair4_setup(void **ctx) { return s_pair_setup(ctx, AF_INET, false); }
static int s_pair4_check(void *ctx) { return s_pair_check(ctx, AF_INET); }
static int s_pair6_setup(void **ctx) { return s_pair_setup(ctx, AF_INET6, false); }
static int s_pair6_check(void *ctx) { return s_pair_check(ctx, AF_INET6); }
static int s_mapped_setup(void **ctx) { return s_pair_setup(ctx, AF_INET, true); }

/* The connection and the listener shared with a child (fork): one socket
 * each in two processes, the restore opens it once for both. */
static int s_shared_setup(void **ctx)
{
    if (s_pair_setup(ctx, AF_INET, false) < 0)
        return -1;
    s_net_t *n = *ctx;
    n->peer = fork();
    if (n->peer < 0)
        return state_fail("fork: %s", strerror(errno));
    if (n->peer == 0)
        for (;;)
            pause();
    return 0;
}

static int s_shared_check(void *ctx)
{
    s_net_t *n = ctx;
    int r = s_pair_check(ctx, AF_INET);
    kill(n->peer, SIGKILL);
    return r;
}

/* ---- a peer in another process: of the tree, or outside it ------------- */

/* Echoes what fd reads until it closes (the peer process's body), a
 * piece each 10 ms: it is still sending across the checkpoint, where a
 * packet reaching the dead socket's port would be answered by a RST. */
static void s_echo(int fd)
{
    char buf[2048];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf, 0)) > 0) {
        if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) != r)
            break;
        usleep(10000);
    }
    _exit(0);
}

/* A peer connected to our listener: a child (in the tree), or, outside,
 * a grandchild whose parent exits at once (its pid comes back on a pipe
 * so the check can end it). */
static int s_peer_setup(void **ctx, bool outside)
{
    s_net_t *n = s_net_new();
    int pp[2];
    if (!n || (n->lfd = s_listen(AF_INET, 4)) < 0 || pipe(pp) < 0)
        return -1;
    n->port = s_port_of(n->lfd);
    pid_t c = fork();
    if (c < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c == 0) {
        /* Outside: its own session too, or it would hold the case's pid
         * as its session and group id, which the restore takes again. */
        if (outside && (fork() != 0 || setsid() < 0))
            _exit(0);
        /* Outside, no kill of the case's session reaches it: it ends
         * by itself if the case never comes back (a failed restore
         * leaves its connection silent, not closed). */
        if (outside)
            alarm(120);
        pid_t me = getpid();
        if (write(pp[1], &me, sizeof me) != sizeof me)
            _exit(1);
        close(n->lfd);
        int fd = s_connect(AF_INET, n->port);
        if (fd < 0)
            _exit(1);
        s_echo(fd);
    }
    if (outside)
        waitpid(c, NULL, 0);
    close(pp[1]);
    if (read(pp[0], &n->peer, sizeof n->peer) != sizeof n->peer)
        return state_fail("the peer did not start");
    close(pp[0]);
    if ((n->a = accept(n->lfd, NULL, NULL)) < 0 ||
        s_setint(n->a, SOL_SOCKET, SO_SNDBUF, 1 << 20) < 0)
        return state_fail("accept: %s", strerror(errno));
    /* In flight at the checkpoint: sent, echoed partly, read by nobody. */
    if (s_send(n->a, 0, S_QUEUED, 4) < 0)
        return -1;
    *ctx = n;
    return 0;
}

static int s_peer_check(void *ctx)
{
    s_net_t *n = ctx;
    int r = s_expect(n->a, 0, S_QUEUED, 4, "echoed, queued");
    if (r == 0 && s_send(n->a, S_QUEUED, 20000, 4) == 0)
        r = s_expect(n->a, S_QUEUED, 20000, 4, "echoed after the restore");
    kill(n->peer, SIGKILL);
    return r;
}

static int s_tree_setup(void **ctx) { return s_peer_setup(ctx, false); }
static int s_outside_setup(void **ctx) { return s_peer_setup(ctx, true); }

/* ---- UDP --------------------------------------------------------------- */

/* The options a UDP case sets on b: the family's TOS and TTL. */
static int s_tos_level(int family) { return family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6; }
static int s_tos_name(int family) { return family == AF_INET ? IP_TOS : IPV6_TCLASS; }
static int s_ttl_name(int family) { return family == AF_INET ? IP_TTL : IPV6_UNICAST_HOPS; }

/* Two UDP sockets on loopback: a bound, b bound and connected to a;
 * options on both. */
static int s_udp_setup(void **ctx, int family)
{
    s_net_t *n = s_net_new();
    struct sockaddr_storage ss;
    if (!n)
        return -1;
    n->a = socket(family, SOCK_DGRAM, 0);
    n->b = socket(family, SOCK_DGRAM, 0);
    socklen_t l = s_loop(family, 0, &ss);
    if (n->a < 0 || n->b < 0 || bind(n->a, (struct sockaddr *)&ss, l) < 0 ||
        bind(n->b, (struct sockaddr *)&ss, l) < 0)
        return state_fail("udp: %s", strerror(errno));
    n->port = s_port_of(n->a);
    l = s_loop(family, n->port, &ss);
    if (connect(n->b, (struct sockaddr *)&ss, l) < 0 ||
        s_setint(n->a, SOL_SOCKET, SO_RCVBUF, 300000) < 0 ||
        s_setint(n->b, s_tos_level(family), s_tos_name(family), IPTOS_THROUGHPUT) < 0 ||
        s_setint(n->b, s_tos_level(family), s_ttl_name(family), 9) < 0 ||
        s_setint(n->a, SOL_SOCKET, SO_BROADCAST, 1) < 0)
        return state_fail("udp: %s", strerror(errno));
    *ctx = n;
    return 0;
}

static int s_udp_check(void *ctx, int family)
{
    s_net_t *n = ctx;
    struct sockaddr_storage from;
    socklen_t l = sizeof from;
    char buf[64];
    int bport = s_port_of(n->b);
    int lv = s_tos_level(family);
    if (s_port_of(n->a) != n->port)
        return state_fail("a's port %d, was %d", s_port_of(n->a), n->port);
    if (s_getint(n->a, SOL_SOCKET, SO_RCVBUF) != 600000 ||
        s_getint(n->b, lv, s_tos_name(family)) != IPTOS_THROUGHPUT ||
        s_getint(n->b, lv, s_ttl_name(family)) != 9 ||
        s_getint(n->a, SOL_SOCKET, SO_BROADCAST) != 1)
        return state_fail("options: SO_RCVBUF %d TOS %d TTL %d SO_BROADCAST %d",
                          s_getint(n->a, SOL_SOCKET, SO_RCVBUF),
                          s_getint(n->b, lv, s_tos_name(family)),
                          s_getint(n->b, lv, s_ttl_name(family)),
                          s_getint(n->a, SOL_SOCKET, SO_BROADCAST));
    if (send(n->b, "hello", 5, 0) != 5)   /* connected: no address given */
        return state_fail("send on the connected socket: %s", strerror(errno));
    struct pollfd p = { .fd = n->a, .events = POLLIN };
    if (poll(&p, 1, 5000) != 1)
        return state_fail("the datagram did not come");
    ssize_t r = recvfrom(n->a, buf, sizeof buf, 0, (struct sockaddr *)&from, &l);
    int fport = family == AF_INET ? ntohs(((struct sockaddr_in *)&from)->sin_port)
                                  : ntohs(((struct sockaddr_in6 *)&from)->sin6_port);
    if (r != 5 || memcmp(buf, "hello", 5) != 0 || fport != bport)
        return state_fail("got %zd bytes from port %d (b is %d)", r, fport, bport);
    return 0;
}

static int s_udp4_setup(void **ctx) { return s_udp_setup(ctx, AF_INET); }
static int s_udp4_check(void *ctx) { return s_udp_check(ctx, AF_INET); }
static int s_udp6_setup(void **ctx) { return s_udp_setup(ctx, AF_INET6); }
static int s_udp6_check(void *ctx) { return s_udp_check(ctx, AF_INET6); }

/* Sockets made and never bound: TCP (with an option) and UDP. */
static int s_unbound_setup(void **ctx)
{
    s_net_t *n = s_net_new();
    if (!n || (n->a = socket(AF_INET6, SOCK_STREAM, 0)) < 0 ||
        (n->b = socket(AF_INET, SOCK_DGRAM, 0)) < 0 ||
        s_setint(n->a, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0 ||
        s_setint(n->a, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
        return state_fail("socket: %s", strerror(errno));
    *ctx = n;
    return 0;
}

static int s_unbound_check(void *ctx)
{
    s_net_t *n = ctx;
    if (s_getint(n->a, SOL_SOCKET, SO_DOMAIN) != AF_INET6 ||
        s_getint(n->a, SOL_SOCKET, SO_TYPE) != SOCK_STREAM ||
        s_getint(n->b, SOL_SOCKET, SO_DOMAIN) != AF_INET ||
        s_getint(n->b, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM)
        return state_fail("not the sockets made");
    if (s_port_of(n->a) != 0 || s_port_of(n->b) != 0)
        return state_fail("bound after the restore (ports %d, %d)", s_port_of(n->a),
                          s_port_of(n->b));
    if (s_getint(n->a, IPPROTO_IPV6, IPV6_V6ONLY) != 1 ||
        s_getint(n->a, SOL_SOCKET, SO_REUSEPORT) != 1)
        return state_fail("IPV6_V6ONLY %d SO_REUSEPORT %d",
                          s_getint(n->a, IPPROTO_IPV6, IPV6_V6ONLY),
                          s_getint(n->a, SOL_SOCKET, SO_REUSEPORT));
    return 0;
}

/* ---- refusals ---------------------------------------------------------- */

/* A UDP socket signalling SIGIO to this process. */
static int s_async_setup(void **ctx)
{
    (void)ctx;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || fcntl(fd, F_SETOWN, getpid()) < 0 || fcntl(fd, F_SETFL, O_ASYNC) < 0)
        return state_fail("O_ASYNC socket: %s", strerror(errno));
    return 0;
}

/* A raw socket: neither TCP nor UDP. */
static int s_raw_setup(void **ctx)
{
    (void)ctx;
    return socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) < 0
               ? state_fail("raw socket: %s", strerror(errno)) : 0;
}

/* A listener and a client connected to it (not accepted yet). */
static s_net_t *s_client_new(void)
{
    s_net_t *n = s_net_new();
    if (!n || (n->lfd = s_listen(AF_INET, 4)) < 0 ||
        (n->a = s_connect(AF_INET, s_port_of(n->lfd))) < 0)
        return NULL;
    return n;
}

/* A client connected, never accepted: in the listener's accept queue. */
static int s_backlog_setup(void **ctx)
{
    return (*ctx = s_client_new()) ? 0 : -1;
}

/* A connection whose write side is shut: FIN_WAIT1 or FIN_WAIT2 (its
 * fd before the accepted end's, which is CLOSE_WAIT). */
static int s_finwait_setup(void **ctx)
{
    s_net_t *n = s_client_new();
    if (!n)
        return -1;
    if ((n->b = accept(n->lfd, NULL, NULL)) < 0 || shutdown(n->a, SHUT_WR) < 0)
        return state_fail("accept/shutdown: %s", strerror(errno));
    close(n->lfd);
    usleep(100000);   /* the FIN acknowledged */
    *ctx = n;
    return 0;
}

/* A connection its peer reset (closed with SO_LINGER 0), not read yet:
 * the pending error is the program's to see. */
static int s_reset_setup(void **ctx)
{
    s_net_t *n = s_client_new();
    struct linger lg = { 1, 0 };
    if (!n)
        return -1;
    if ((n->b = accept(n->lfd, NULL, NULL)) < 0 ||
        setsockopt(n->b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0 || close(n->b) < 0)
        return state_fail("accept/reset: %s", strerror(errno));
    close(n->lfd);
    usleep(100000);   /* the RST in */
    *ctx = n;
    return 0;
}

static int s_reset_check(void *ctx)
{
    s_net_t *n = ctx;
    char c;
    return recv(n->a, &c, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET
               ? 0 : state_fail("the reset is not seen after the refusal");
}

/* A datagram not read yet. */
static int s_udpq_setup(void **ctx)
{
    s_net_t *n = s_net_new();
    struct sockaddr_storage ss;
    socklen_t l = s_loop(AF_INET, 0, &ss);
    if (!n || (n->a = socket(AF_INET, SOCK_DGRAM, 0)) < 0 ||
        bind(n->a, (struct sockaddr *)&ss, l) < 0)
        return state_fail("udp: %s", strerror(errno));
    l = s_loop(AF_INET, s_port_of(n->a), &ss);
    if (sendto(n->a, "x", 1, 0, (struct sockaddr *)&ss, l) != 1)
        return state_fail("sendto: %s", strerror(errno));
    usleep(20000);
    *ctx = n;
    return 0;
}

/* Still there after the refusal: the datagram. */
static int s_udpq_check(void *ctx)
{
    s_net_t *n = ctx;
    char c;
    return recv(n->a, &c, 1, MSG_DONTWAIT) == 1 && c == 'x'
               ? 0 : state_fail("the datagram is gone after the refusal");
}

const state_case_t state_cases_inet[] = {
    { .name = "inet-tcp-listen-v4", .setup = s_listen4_setup, .check = s_listen4_check },
    { .name = "inet-tcp-listen-v6", .setup = s_listen6_setup, .check = s_listen6_check },
    { .name = "inet-tcp-established-v4", .setup = s_pair4_setup, .check = s_pair4_check },
    { .name = "inet-tcp-established-v6", .setup = s_pair6_setup, .check = s_pair6_check },
    { .name = "inet-tcp-v4-mapped", .setup = s_mapped_setup, .check = s_pair4_check },
    { .name = "inet-tcp-shared-fork", .setup = s_shared_setup, .check = s_shared_check,
      .flags = "tree" },
    { .name = "inet-tcp-peer-in-tree", .setup = s_tree_setup, .check = s_peer_check,
      .flags = "tree" },
    { .name = "inet-tcp-peer-outside", .setup = s_outside_setup, .check = s_peer_check },
    { .name = "inet-udp-v4", .setup = s_udp4_setup, .check = s_udp4_check },
    { .name = "inet-udp-v6", .setup = s_udp6_setup, .check = s_udp6_check },
    { .name = "inet-unbound", .setup = s_unbound_setup, .check = s_unbound_check },
    { .name = "inet-async", .expect = STATE_REFUSE, .reason = "O_ASYNC",
      .setup = s_async_setup },
    { .name = "inet-raw", .expect = STATE_REFUSE, .reason = "only TCP and UDP sockets",
      .setup = s_raw_setup },
    { .name = "inet-tcp-accept-queue", .expect = STATE_REFUSE, .reason = "accept queue",
      .setup = s_backlog_setup },
    { .name = "inet-tcp-fin-wait", .expect = STATE_REFUSE, .reason = "in state FIN_WAIT",
      .setup = s_finwait_setup },
    { .name = "inet-tcp-reset", .expect = STATE_REFUSE, .reason = "closed or reset",
      .setup = s_reset_setup, .check = s_reset_check },
    { .name = "inet-udp-unread", .expect = STATE_REFUSE, .reason = "datagrams not read",
      .setup = s_udpq_setup, .check = s_udpq_check },
    { .name = NULL },
};
