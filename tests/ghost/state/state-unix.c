/* state-unix.c - the unix cases of ghost-state (state.h): unix sockets:
 * socketpairs, named (path, abstract), stream/dgram/seqpacket, listening,
 * accepted pairs, queued data both ways with message boundaries, passed
 * credentials, shutdowns, options, a peer outside the tree (a dgram one
 * is connected again by name, a stream one refused), fds in flight
 * (refused), a listener with a connection not accepted yet (refused).
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

/* What a case keeps for its check. */
typedef struct s_ctx {
    int a, b, c;           /* its sockets */
    pid_t child;           /* a forked child of the tree, 0 if none */
    char path[108];        /* a name it bound, or a file it reads */
} s_ctx_t;

static s_ctx_t *s_new(void **ctx)
{
    s_ctx_t *c = calloc(1, sizeof *c);
    if (c)
        c->a = c->b = c->c = -1;
    *ctx = c;
    return c;
}

static socklen_t s_sun(struct sockaddr_un *sa, const char *name, bool abstract)
{
    *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
    size_t n = strlen(name);
    memcpy(sa->sun_path + abstract, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + abstract + n);
}

static int s_send(int fd, const char *msg)
{
    size_t n = strlen(msg);
    return send(fd, msg, n, MSG_DONTWAIT) == (ssize_t)n ? 0 : state_fail("send: %s", strerror(errno));
}

/* The next message (or bytes, stream) must be `want` exactly. */
static int s_expect(int fd, const char *want, const char *what)
{
    char buf[256];
    size_t n = strlen(want);
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0)
        return state_fail("%s: expected '%s': %s", what, want, strerror(errno));
    if ((size_t)got != n || memcmp(buf, want, n) != 0)
        return state_fail("%s: got '%.*s' (%zd bytes), expected '%s'", what, (int)got, buf,
                          got, want);
    return 0;
}

static int s_expect_empty(int fd, const char *what)
{
    char buf[8];
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0 && errno == EAGAIN)
        return 0;
    return state_fail("%s: more than expected is queued (%zd)", what, got);
}

static int s_name_is(int fd, bool peer, const char *name, bool abstract, const char *what)
{
    struct sockaddr_un sa, want;
    /* a path's length counts its NUL, as the kernel gives it */
    socklen_t len = sizeof sa, wl = s_sun(&want, name, abstract) + !abstract;
    int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
                 : getsockname(fd, (struct sockaddr *)&sa, &len);
    if (r < 0)
        return state_fail("%s: %s", what, strerror(errno));
    if (len != wl || memcmp(&sa, &want, wl) != 0)
        return state_fail("%s: the name is '%.*s' (%u bytes), not '%s'", what,
                          (int)(len - offsetof(struct sockaddr_un, sun_path)), sa.sun_path,
                          len, name);
    return 0;
}

/* ---- socketpairs ------------------------------------------------------- */

/* Queued both ways, several messages each, the one end non-blocking. */
static int s_pair_setup(void **ctx, int type)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2];
    if (!c || socketpair(AF_UNIX, type, 0, sv) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->a = sv[0], c->b = sv[1];
    fcntl(c->a, F_SETFL, O_NONBLOCK);
    if (s_send(c->a, "one") || s_send(c->a, "two-two") || s_send(c->a, "3") ||
        s_send(c->b, "back") || s_send(c->b, "again!"))
        return -1;
    return 0;
}

static int s_pair_stream_setup(void **ctx) { return s_pair_setup(ctx, SOCK_STREAM); }
static int s_pair_dgram_setup(void **ctx) { return s_pair_setup(ctx, SOCK_DGRAM); }
static int s_pair_seqpacket_setup(void **ctx) { return s_pair_setup(ctx, SOCK_SEQPACKET); }

static int s_pair_check_flags(const s_ctx_t *c)
{
    if (!(fcntl(c->a, F_GETFL) & O_NONBLOCK) || (fcntl(c->b, F_GETFL) & O_NONBLOCK))
        return state_fail("O_NONBLOCK: %#x and %#x", fcntl(c->a, F_GETFL),
                          fcntl(c->b, F_GETFL));
    return 0;
}

static int s_pair_stream_check(void *ctx)
{
    s_ctx_t *c = ctx;
    if (s_pair_check_flags(c) || s_expect(c->b, "onetwo-two3", "a to b") ||
        s_expect(c->a, "backagain!", "b to a") || s_expect_empty(c->a, "a"))
        return -1;
    return s_send(c->a, "after") || s_expect(c->b, "after", "a to b after");
}

static int s_pair_msgs_check(void *ctx)
{
    s_ctx_t *c = ctx;
    if (s_pair_check_flags(c) || s_expect(c->b, "one", "message 1") ||
        s_expect(c->b, "two-two", "message 2") || s_expect(c->b, "3", "message 3") ||
        s_expect_empty(c->b, "b") || s_expect(c->a, "back", "message 1 back") ||
        s_expect(c->a, "again!", "message 2 back") || s_expect_empty(c->a, "a"))
        return -1;
    return s_send(c->b, "after") || s_expect(c->a, "after", "b to a after");
}

/* Parent and child hold the two ends; the child checks what it was sent
 * when the parent's check signals it, and answers. */
static int s_tree_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2];
    if (!c || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->child = fork();
    if (c->child < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c->child == 0) {
        sigset_t none;
        sigemptyset(&none);
        close(sv[0]);
        if (send(sv[1], "from child", 10, 0) != 10)
            _exit(2);
        sigsuspend(&none);   /* SIGUSR2 from the parent's check */
        char buf[64];
        ssize_t n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
        _exit(n == 11 && memcmp(buf, "from parent", 11) == 0 &&
                      send(sv[1], "ok", 2, 0) == 2 ? 0 : 3);
    }
    close(sv[1]);
    c->a = sv[0];
    return s_send(c->a, "from parent");
}

static int s_tree_check(void *ctx)
{
    s_ctx_t *c = ctx;
    int st = 0;
    if (s_expect(c->a, "from child", "child to parent"))
        return -1;
    kill(c->child, SIGUSR2);
    if (waitpid(c->child, &st, 0) != c->child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return state_fail("the child's end: status %#x (3: it did not find its message)", st);
    return s_expect(c->a, "ok", "the child's answer");
}

/* ---- named sockets ----------------------------------------------------- */

static int s_listen_at(s_ctx_t *c, const char *name, bool abstract, int backlog)
{
    struct sockaddr_un sa;
    socklen_t len = s_sun(&sa, name, abstract);
    c->a = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(c->path, sizeof c->path, "%s", name);
    if (c->a < 0 || bind(c->a, (struct sockaddr *)&sa, len) < 0 || listen(c->a, backlog) < 0)
        return state_fail("bind/listen %s: %s", name, strerror(errno));
    return 0;
}

static int s_connect_to(const char *name, bool abstract, int type)
{
    struct sockaddr_un sa;
    socklen_t len = s_sun(&sa, name, abstract);
    int fd = socket(AF_UNIX, type, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
        state_fail("connect %s: %s", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int s_listen_path_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    char name[108];
    snprintf(name, sizeof name, "%s/listen.sock", state_workdir());
    return c ? s_listen_at(c, name, false, 7) : -1;
}

static int s_listen_abstract_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    char name[64];
    snprintf(name, sizeof name, "ghost-state-%d", (int)getpid());
    return c ? s_listen_at(c, name, true, 3) : -1;
}

static int s_listen_check(s_ctx_t *c, bool abstract)
{
    struct stat st;
    if (s_name_is(c->a, false, c->path, abstract, "the listener's name"))
        return -1;
    if (!abstract && (stat(c->path, &st) < 0 || !S_ISSOCK(st.st_mode)))
        return state_fail("%s is not a socket file", c->path);
    int cl = s_connect_to(c->path, abstract, SOCK_STREAM);
    int ac = cl < 0 ? -1 : accept(c->a, NULL, NULL);
    if (cl < 0 || ac < 0)
        return cl < 0 ? -1 : state_fail("accept: %s", strerror(errno));
    return s_send(cl, "hello") || s_expect(ac, "hello", "a new connection");
}

static int s_listen_path_check(void *ctx) { return s_listen_check(ctx, false); }
static int s_listen_abstract_check(void *ctx) { return s_listen_check(ctx, true); }

static int s_pending_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    char name[108];
    snprintf(name, sizeof name, "%s/pending.sock", state_workdir());
    if (!c || s_listen_at(c, name, false, 4) < 0)
        return -1;
    c->b = s_connect_to(name, false, SOCK_STREAM);
    return c->b < 0 ? -1 : 0;
}

/* A connection accepted from a path listener: both ends in the process,
 * the accepted one named after the listener, bytes queued both ways. */
static int s_accepted_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    char name[108];
    snprintf(name, sizeof name, "%s/srv.sock", state_workdir());
    if (!c || s_listen_at(c, name, false, 5) < 0 ||
        (c->b = s_connect_to(name, false, SOCK_STREAM)) < 0)
        return -1;
    if ((c->c = accept(c->a, NULL, NULL)) < 0)
        return state_fail("accept: %s", strerror(errno));
    return s_send(c->b, "request") || s_send(c->c, "reply");
}

static int s_accepted_check(void *ctx)
{
    s_ctx_t *c = ctx;
    if (s_name_is(c->c, false, c->path, false, "the accepted end's name") ||
        s_name_is(c->b, true, c->path, false, "the client's peer name") ||
        s_expect(c->c, "request", "client to server") ||
        s_expect(c->b, "reply", "server to client"))
        return -1;
    return s_listen_check(c, false);
}

/* A bound dgram socket with datagrams queued from an unnamed sender. */
static int s_dgram_named_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    struct sockaddr_un sa;
    snprintf(c->path, sizeof c->path, "%s/dgram.sock", state_workdir());
    socklen_t len = s_sun(&sa, c->path, false);
    c->a = socket(AF_UNIX, SOCK_DGRAM, 0);
    c->b = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (c->a < 0 || c->b < 0 || bind(c->a, (struct sockaddr *)&sa, len) < 0)
        return state_fail("bind %s: %s", c->path, strerror(errno));
    if (sendto(c->b, "first", 5, 0, (struct sockaddr *)&sa, len) != 5 ||
        sendto(c->b, "second", 6, 0, (struct sockaddr *)&sa, len) != 6)
        return state_fail("sendto: %s", strerror(errno));
    return 0;
}

static int s_dgram_named_check(void *ctx)
{
    s_ctx_t *c = ctx;
    struct sockaddr_un sa;
    socklen_t len = s_sun(&sa, c->path, false);
    if (s_name_is(c->a, false, c->path, false, "its name") ||
        s_expect(c->a, "first", "datagram 1") || s_expect(c->a, "second", "datagram 2") ||
        s_expect_empty(c->a, "the queue"))
        return -1;
    if (sendto(c->b, "third", 5, 0, (struct sockaddr *)&sa, len) != 5)
        return state_fail("sendto after: %s", strerror(errno));
    return s_expect(c->a, "third", "datagram after");
}

/* ---- peers outside the tree -------------------------------------------- */

/* A receiver outside the tree (a grandchild, reparented away) bound at
 * path, type `type`: a dgram one appends what it gets to path.log; a
 * stream one accepts and holds the connection. It ends after 60 s. */
static int s_outsider(s_ctx_t *c, int type)
{
    snprintf(c->path, sizeof c->path, "%s/outside.sock", state_workdir());
    int ready[2];
    if (pipe(ready) < 0)
        return state_fail("pipe: %s", strerror(errno));
    pid_t p = fork();
    if (p == 0) {
        if (fork() != 0)
            _exit(0);
        setsid();   /* holding the case's session id would keep its pid */
        struct sockaddr_un sa;
        socklen_t len = s_sun(&sa, c->path, false);
        struct timeval tv = { 60, 0 };
        int s = socket(AF_UNIX, type, 0), n;
        if (s < 0 || bind(s, (struct sockaddr *)&sa, len) < 0 ||
            (type == SOCK_STREAM && listen(s, 4) < 0))
            _exit(1);
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        char buf[256], logp[128];
        snprintf(logp, sizeof logp, "%s.log", c->path);
        if (type == SOCK_STREAM) {
            int a = accept(s, NULL, NULL);
            (void)!read(a, buf, sizeof buf);
            _exit(0);
        }
        while ((n = (int)recv(s, buf, sizeof buf, 0)) >= 0) {
            int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600);
            (void)!write(lf, buf, (size_t)n);
            (void)!write(lf, "\n", 1);
            close(lf);
        }
        _exit(0);
    }
    char r;
    close(ready[1]);
    bool ok = p > 0 && read(ready[0], &r, 1) == 1;
    close(ready[0]);
    if (p > 0)
        waitpid(p, NULL, 0);
    return ok ? 0 : state_fail("the outside receiver did not start");
}

static int s_dgram_outside_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    if (!c || s_outsider(c, SOCK_DGRAM) < 0 ||
        (c->a = s_connect_to(c->path, false, SOCK_DGRAM)) < 0)
        return -1;
    return s_send(c->a, "before");
}

static int s_dgram_outside_check(void *ctx)
{
    s_ctx_t *c = ctx;
    char logp[128], buf[64] = "";
    if (s_name_is(c->a, true, c->path, false, "its peer") || s_send(c->a, "after"))
        return -1;
    snprintf(logp, sizeof logp, "%s.log", c->path);
    for (int i = 0; i < 100 && !strstr(buf, "after"); i++, usleep(20000)) {
        int fd = open(logp, O_RDONLY);
        ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = '\0';
        if (fd >= 0)
            close(fd);
    }
    return strcmp(buf, "before\nafter\n") == 0 ||
           state_fail("the outside receiver got '%s', not 'before\\nafter\\n'", buf);
}

static int s_stream_outside_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    if (!c || s_outsider(c, SOCK_STREAM) < 0 ||
        (c->a = s_connect_to(c->path, false, SOCK_STREAM)) < 0)
        return -1;
    return 0;
}

/* ---- in flight, shutdown, options, credentials ------------------------- */

static int s_rights_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2], fd = 0;
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm = { 0 };
    struct iovec iov = { "x", 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                        .msg_controllen = sizeof cm.b };
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET, h->cmsg_type = SCM_RIGHTS, h->cmsg_len = CMSG_LEN(sizeof fd);
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    if (!c || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || sendmsg(sv[0], &m, 0) != 1)
        return state_fail("SCM_RIGHTS: %s", strerror(errno));
    return 0;
}

static int s_oob_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2];
    if (!c || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || s_send(sv[0], "in band") ||
        send(sv[0], "!", 1, MSG_OOB) != 1)
        return state_fail("MSG_OOB: %s", strerror(errno));
    c->a = sv[0], c->b = sv[1];
    return 0;
}

static int s_oob_check(void *ctx)
{
    s_ctx_t *c = ctx;
    char b = 0;
    if (recv(c->b, &b, 1, MSG_OOB) != 1 || b != '!')
        return state_fail("the out-of-band byte is gone");
    return 0;
}

/* a shut down for writing after its data, and a pair whose other end
 * closed with bytes still queued. */
static int s_shutdown_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2], sw[2];
    if (!c || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, sw) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->a = sv[0], c->b = sv[1], c->c = sw[1];
    if (s_send(c->a, "last words") || shutdown(c->a, SHUT_WR) < 0 || s_send(sw[0], "orphan"))
        return -1;
    close(sw[0]);
    return 0;
}

static int s_shutdown_check(void *ctx)
{
    s_ctx_t *c = ctx;
    char b;
    if (s_expect(c->b, "last words", "before the shutdown"))
        return -1;
    if (recv(c->b, &b, 1, MSG_DONTWAIT) != 0)
        return state_fail("no end of file after the shutdown (%s)", strerror(errno));
    if (send(c->a, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
        return state_fail("a write after SHUT_WR did not fail with EPIPE");
    if (s_send(c->b, "still") || s_expect(c->a, "still", "the other way"))
        return -1;
    if (s_expect(c->c, "orphan", "the closed peer's bytes"))
        return -1;
    return recv(c->c, &b, 1, MSG_DONTWAIT) == 0 ||
           state_fail("no end of file after the closed peer's bytes");
}

/* A dgram pair whose one end closed with datagrams queued on the other:
 * they are still read, then sends fail (the peer is gone). */
static int s_dgram_orphan_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2];
    if (!c || socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->a = sv[1];
    if (s_send(sv[0], "left") || s_send(sv[0], "behind"))
        return -1;
    close(sv[0]);
    return 0;
}

static int s_dgram_orphan_check(void *ctx)
{
    s_ctx_t *c = ctx;
    if (s_expect(c->a, "left", "datagram 1") || s_expect(c->a, "behind", "datagram 2") ||
        s_expect_empty(c->a, "the queue"))
        return -1;
    if (send(c->a, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != -1)
        return state_fail("a send to the closed peer worked");
    return 0;
}

static int s_getint(int fd, int opt)
{
    int v = -2;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, opt, &v, &l);
    return v;
}

static int s_options_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2], on = 1, rcv = 40000, snd = 50000, off = 0;
    if (!c || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->a = sv[0], c->b = sv[1];
    if (setsockopt(c->a, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0 ||
        setsockopt(c->a, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) < 0 ||
        setsockopt(c->a, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd) < 0 ||
        setsockopt(c->b, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0)
        return state_fail("setsockopt: %s", strerror(errno));
    char buf[4];
    if (s_send(c->a, "abcdef") || recv(c->b, buf, 2, MSG_PEEK) != 2)   /* peek offset 2 */
        return state_fail("peek: %s", strerror(errno));
    snprintf(c->path, sizeof c->path, "%d %d", s_getint(c->a, SO_RCVBUF),
             s_getint(c->a, SO_SNDBUF));
    return 0;
}

static int s_options_check(void *ctx)
{
    s_ctx_t *c = ctx;
    char now[108], buf[8];
    snprintf(now, sizeof now, "%d %d", s_getint(c->a, SO_RCVBUF), s_getint(c->a, SO_SNDBUF));
    if (strcmp(now, c->path) != 0)
        return state_fail("SO_RCVBUF SO_SNDBUF are %s, not %s", now, c->path);
    if (s_getint(c->a, SO_PASSCRED) != 1 || s_getint(c->b, SO_PASSCRED) != 0)
        return state_fail("SO_PASSCRED %d and %d", s_getint(c->a, SO_PASSCRED),
                          s_getint(c->b, SO_PASSCRED));
    if (s_getint(c->b, SO_PEEK_OFF) != 2 || s_getint(c->a, SO_PEEK_OFF) != -1)
        return state_fail("SO_PEEK_OFF %d (expected 2) and %d (expected -1)",
                          s_getint(c->b, SO_PEEK_OFF), s_getint(c->a, SO_PEEK_OFF));
    ssize_t n = recv(c->b, buf, sizeof buf, MSG_PEEK);
    if (n != 4 || memcmp(buf, "cdef", 4) != 0)
        return state_fail("peeking from offset 2 gave %zd bytes", n);
    return 0;
}

/* Messages queued on a socket with SO_PASSCRED, from this process and
 * from a child of the tree: each comes back with its sender's pid. */
static int s_creds_setup(void **ctx)
{
    s_ctx_t *c = s_new(ctx);
    int sv[2], on = 1;
    if (!c || socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0 ||
        setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0)
        return state_fail("socketpair: %s", strerror(errno));
    c->a = sv[0], c->b = sv[1];
    if (s_send(c->a, "mine"))
        return -1;
    c->child = fork();
    if (c->child == 0) {
        sigset_t none;
        sigemptyset(&none);
        if (send(sv[0], "child's", 7, 0) != 7)
            _exit(2);
        sigsuspend(&none);
        _exit(0);
    }
    for (int i = 0; i < 200; i++, usleep(5000)) {
        char b[8];
        if (recv(c->b, b, sizeof b, MSG_PEEK | MSG_DONTWAIT) >= 0) {
            int off = 0;
            setsockopt(c->b, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
            (void)recv(c->b, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
            if (recv(c->b, b, sizeof b, MSG_PEEK | MSG_DONTWAIT) == 7)
                break;
        }
    }
    int off = -1;
    setsockopt(c->b, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
    return 0;
}

static int s_expect_cred(int fd, const char *want, pid_t pid)
{
    char buf[64];
    union {
        char b[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } cm;
    struct iovec iov = { buf, sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                        .msg_controllen = sizeof cm.b };
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
    struct cmsghdr *h = n < 0 ? NULL : CMSG_FIRSTHDR(&m);
    struct ucred cr = { 0 };
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        return state_fail("expected '%s', got %zd bytes", want, n);
    if (!h || h->cmsg_type != SCM_CREDENTIALS)
        return state_fail("'%s' came without credentials", want);
    memcpy(&cr, CMSG_DATA(h), sizeof cr);
    if (cr.pid != pid || cr.uid != getuid() || cr.gid != getgid())
        return state_fail("'%s' came from pid %d uid %u gid %u, not pid %d", want,
                          (int)cr.pid, cr.uid, cr.gid, (int)pid);
    return 0;
}

static int s_creds_check(void *ctx)
{
    s_ctx_t *c = ctx;
    int r = s_expect_cred(c->b, "mine", getpid());
    if (r == 0)
        r = s_expect_cred(c->b, "child's", c->child);
    kill(c->child, SIGUSR2);
    waitpid(c->child, NULL, 0);
    return r;
}

const state_case_t state_cases_unix[] = {
    { .name = "unix-pair-stream", .setup = s_pair_stream_setup, .check = s_pair_stream_check },
    { .name = "unix-pair-dgram", .setup = s_pair_dgram_setup, .check = s_pair_msgs_check },
    { .name = "unix-pair-seqpacket", .setup = s_pair_seqpacket_setup,
      .check = s_pair_msgs_check },
    { .name = "unix-pair-tree", .setup = s_tree_setup, .check = s_tree_check, .flags = "tree" },
    { .name = "unix-listen-path", .setup = s_listen_path_setup, .check = s_listen_path_check },
    { .name = "unix-listen-abstract", .setup = s_listen_abstract_setup,
      .check = s_listen_abstract_check },
    { .name = "unix-accepted", .setup = s_accepted_setup, .check = s_accepted_check },
    { .name = "unix-dgram-named", .setup = s_dgram_named_setup, .check = s_dgram_named_check },
    { .name = "unix-dgram-outside", .setup = s_dgram_outside_setup,
      .check = s_dgram_outside_check },
    { .name = "unix-dgram-orphan", .setup = s_dgram_orphan_setup,
      .check = s_dgram_orphan_check },
    { .name = "unix-shutdown", .setup = s_shutdown_setup, .check = s_shutdown_check },
    { .name = "unix-options", .setup = s_options_setup, .check = s_options_check },
    { .name = "unix-creds", .setup = s_creds_setup, .check = s_creds_check, .flags = "tree" },
    { .name = "unix-listen-pending", .expect = STATE_REFUSE, .reason = "not accepted yet",
      .setup = s_pending_setup },
    { .name = "unix-stream-outside", .expect = STATE_REFUSE,
      .reason = "outside the process tree", .setup = s_stream_outside_setup },
    { .name = "unix-oob", .expect = STATE_REFUSE, .reason = "MSG_OOB", .setup = s_oob_setup,
      .check = s_oob_check },
    { .name = "unix-scm-rights", .expect = STATE_REFUSE, .reason = "SCM_RIGHTS",
      .setup = s_rights_setup },
    { .name = NULL },
};
