/* fdsock.c - the local socket through which a process opens a segment
 * and hands dsmd the userfaultfd of its mapping.
 *
 * Design. <rundir>/dsmd.fd.sock is a unix SOCK_SEQPACKET socket, mode
 * 0666: any local user may connect, the kernel says who (SO_PEERCRED) and
 * each segment's owner and mode say what they may do. One packet is one
 * packed Request, answered by one packed Reply; descriptors ride along
 * with SCM_RIGHTS. A connection carries one segment: open (dsmd answers
 * with the node's memfd of it, read-only when the process may only read),
 * then attach (the process has mapped the memfd and registered the
 * mapping with a userfaultfd of its own, which it sends). The attachment
 * lives as long as the connection: when the process unmaps
 * (cairn_dsm_close) or dies, the socket closes and dsmd forgets its
 * mapping. ZeroMQ cannot pass descriptors, hence a socket of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "dsmd.h"
#include "log.h"
#include "util/fdpass.h"

#define S_PACKET_MAX 4096   /* a Request: a name of 255 bytes and numbers */

typedef struct dsm_conn {
    struct dsm_conn *next;
    dsmd_t *d;
    uint64_t id;
    int fd;
    int64_t watch;
    uint32_t uid, gid;
    pid_t pid;
    bool opening;             /* the home's answer is awaited */
    bool rdonly;
    dsm_seg_t *seg;           /* opened */
    dsm_attach_t *at;         /* attached */
} dsm_conn_t;

static void s_send(dsm_conn_t *c, int code, const char *message, Cairn__Dsmd__Reply *rep, int fd)
{
    Cairn__Dsmd__Reply empty = CAIRN__DSMD__REPLY__INIT;
    Cairn__Status st = CAIRN__STATUS__INIT;
    if (!rep)
        rep = &empty;
    st.code = (Cairn__StatusCode)code;
    st.message = (char *)(message ? message : "");
    rep->status = &st;
    uint8_t buf[S_PACKET_MAX];
    size_t n = cairn__dsmd__reply__get_packed_size(rep);
    if (n > sizeof buf) {
        cairn_log_err(-EMSGSIZE, "fdsock-reply", "pid=%d: a reply of %zu bytes", (int)c->pid, n);
        return;
    }
    cairn__dsmd__reply__pack(rep, buf);
    int e = cairn_fd_send(c->fd, buf, n, fd, MSG_DONTWAIT);
    if (e < 0)
        cairn_log_warn(e, "fdsock-reply", "pid=%d: %s", (int)c->pid, strerror(-e));
}

static void s_conn_free(dsmd_t *d, dsm_conn_t *c)
{
    for (dsm_conn_t **pp = &d->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (c->at)
        dsm_attach_remove(d, c->at);
    cairn_loop_remove(cairn_service_loop(d->svc), c->watch);
    close(c->fd);
    free(c);
}

static dsm_conn_t *s_conn_find(dsmd_t *d, uint64_t id)
{
    for (dsm_conn_t *c = d->conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static void s_open(dsmd_t *d, dsm_conn_t *c, const Cairn__Dsmd__OpenRequest *o)
{
    if (c->seg || c->opening) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION,
               "this connection has opened a segment already: one per connection", NULL, -1);
        return;
    }
    if (!dsm_name_ok(o->name)) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
               "a segment name is 1..255 bytes without '/' or control characters", NULL, -1);
        return;
    }
    char msg[200];
    if (o->size % DSM_PAGE != 0 || o->size > d->mem_limit ||
        (o->size == 0 && (o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_CREATE))) {
        snprintf(msg, sizeof msg, "size %" PRIu64 ": a multiple of %u bytes, 1 page to the "
                 "node's memory (%" PRIu64 " bytes)", o->size, DSM_PAGE, d->mem_limit);
        s_send(c, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT, msg, NULL, -1);
        return;
    }
    if (o->mode & ~0666u) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
               "mode: read and write bits of user, group and other only (0666 at most)", NULL, -1);
        return;
    }
    c->opening = true;
    c->rdonly = o->flags & CAIRN__DSMD__OPEN_FLAG__OPEN_RDONLY;
    dsm_dir_open(d, c->id, o->name, o->size, o->flags, o->mode, c->uid, c->gid);
}

/* The memfd the process gets: read-only when it may only read. */
static int s_memfd_for(dsm_conn_t *c, dsm_seg_t *seg)
{
    if (!c->rdonly)
        return dup(seg->memfd);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", seg->memfd);
    return open(path, O_RDONLY | O_CLOEXEC);
}

void dsm_fdsock_opened(dsmd_t *d, uint64_t conn_id, const Cairn__Dsmd__Segment *rec,
                       bool created, int code, const char *message)
{
    dsm_conn_t *c = s_conn_find(d, conn_id);
    if (!c)
        return;   /* the process went away meanwhile */
    c->opening = false;
    if (!rec) {
        s_send(c, code, message, NULL, -1);
        return;
    }
    if (!dsm_may(c->uid, c->gid, rec->uid, rec->gid, rec->mode, c->rdonly ? 4 : 6)) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_PERMISSION_DENIED,
               c->rdonly ? "no read permission on the segment" :
                           "no read and write permission on the segment (open it read-only?)",
               NULL, -1);
        return;
    }
    dsm_seg_t *seg = dsm_seg_find(d, rec->name);
    if (seg && seg->generation != rec->generation) {
        if (seg->attached) {
            s_send(c, CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION,
                   "an older segment of that name is still mapped on this node", NULL, -1);
            return;
        }
        dsm_seg_free(d, seg);
        seg = NULL;
    }
    cairn_error_t err = { 0 };
    if (!seg && dsm_seg_new(d, rec, &seg, &err) < 0) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_INTERNAL, err.message, NULL, -1);
        return;
    }
    int fd = s_memfd_for(c, seg);
    if (fd < 0) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_INTERNAL, strerror(errno), NULL, -1);
        return;
    }
    c->seg = seg;
    Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
    Cairn__Dsmd__OpenReply orep = CAIRN__DSMD__OPEN_REPLY__INIT;
    orep.segment = (Cairn__Dsmd__Segment *)rec;
    orep.created = created;
    rep.msg_case = CAIRN__DSMD__REPLY__MSG_OPEN_REPLY;
    rep.open_reply = &orep;
    s_send(c, CAIRN__STATUS_CODE__STATUS_OK, "", &rep, fd);
    close(fd);
}

static void s_attach(dsmd_t *d, dsm_conn_t *c, const Cairn__Dsmd__AttachRequest *a, int uffd)
{
    cairn_error_t err = { 0 };
    const char *bad = NULL;
    int code = CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION;
    if (!c->seg)
        bad = "open a segment before attaching";
    else if (c->at)
        bad = "attached already";
    else if (uffd < 0)
        bad = "attach carries the mapping's userfaultfd (SCM_RIGHTS)";
    else if (strcmp(a->name, c->seg->name) != 0 || a->generation != c->seg->generation ||
             a->size != c->seg->size || a->addr % DSM_PAGE != 0 || a->addr == 0)
        bad = "attach names another segment or a bad address";
    if (bad) {
        if (uffd >= 0 || !c->seg || c->at)
            code = CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT;
        if (!c->seg || c->at)
            code = CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION;
        if (uffd >= 0)
            close(uffd);
        s_send(c, code, bad, NULL, -1);
        return;
    }
    if (dsm_attach_add(d, c->seg, uffd, a->addr, c->pid, c->rdonly, c, &c->at, &err) < 0) {
        s_send(c, CAIRN__STATUS_CODE__STATUS_INTERNAL, err.message, NULL, -1);
        return;
    }
    Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
    Cairn__Dsmd__Empty done = CAIRN__DSMD__EMPTY__INIT;
    rep.msg_case = CAIRN__DSMD__REPLY__MSG_DONE;
    rep.done = &done;
    s_send(c, CAIRN__STATUS_CODE__STATUS_OK, "", &rep, -1);
}

static int s_on_conn(cairn_loop_t *loop, int fd, void *zsock, short revents, void *userdata)
{
    (void)loop; (void)zsock; (void)revents;
    dsm_conn_t *c = userdata;
    dsmd_t *d = c->d;
    uint8_t buf[S_PACKET_MAX];
    int got_fd = -1;
    ssize_t n = cairn_fd_recv(fd, buf, sizeof buf, &got_fd, MSG_DONTWAIT);
    if (n == -EAGAIN)
        return 0;
    if (n == 0 || (n < 0 && n != -EMSGSIZE)) {
        s_conn_free(d, c);   /* the process closed or died: its mapping is gone */
        return 0;
    }
    Cairn__Dsmd__Request *req = n < 0 ? NULL : cairn__dsmd__request__unpack(NULL, (size_t)n, buf);
    if (!req) {
        if (got_fd >= 0)
            close(got_fd);
        s_send(c, CAIRN__STATUS_CODE__STATUS_DECODE_ERROR,
               "not a dsmd Request (or over 4096 bytes)", NULL, -1);
        return 0;
    }
    switch (req->msg_case) {
    case CAIRN__DSMD__REQUEST__MSG_OPEN:
        if (got_fd >= 0)
            close(got_fd);
        s_open(d, c, req->open);
        break;
    case CAIRN__DSMD__REQUEST__MSG_ATTACH:
        s_attach(d, c, req->attach, got_fd);
        break;
    default:
        if (got_fd >= 0)
            close(got_fd);
        s_send(c, CAIRN__STATUS_CODE__STATUS_UNKNOWN_TYPE,
               "this socket takes open and attach only (the rest: ipc://.../dsmd.sock)", NULL, -1);
    }
    cairn__dsmd__request__free_unpacked(req, NULL);
    return 0;
}

static int s_on_accept(cairn_loop_t *loop, int fd, void *zsock, short revents, void *userdata)
{
    (void)zsock; (void)revents;
    dsmd_t *d = userdata;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0)
        return 0;
    struct ucred cr;
    socklen_t len = sizeof cr;
    dsm_conn_t *c = calloc(1, sizeof *c);
    if (!c || getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        free(c);
        close(cfd);
        return 0;
    }
    c->d = d;
    c->id = ++d->next_conn;
    c->fd = cfd;
    c->uid = cr.uid;
    c->gid = cr.gid;
    c->pid = cr.pid;
    c->watch = cairn_loop_add_fd(loop, cfd, ZMQ_POLLIN, s_on_conn, c);
    if (c->watch < 0) {
        close(cfd);
        free(c);
        return 0;
    }
    c->next = d->conns;
    d->conns = c;
    return 0;
}

int dsm_fdsock_start(dsmd_t *d, cairn_error_t *err)
{
    const cairn_node_desc_t *node = cairn_service_node(d->svc);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!node || !node->rundir ||
        (size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "%s/dsmd.fd.sock", node->rundir) >=
            sizeof sa.sun_path)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "run directory too long for a socket path");
    d->sock_path = strdup(sa.sun_path);
    if (!d->sock_path)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    unlink(sa.sun_path);
    d->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->listen_fd < 0 || bind(d->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        chmod(sa.sun_path, 0666) < 0 || listen(d->listen_fd, 64) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "%s: %s", sa.sun_path, strerror(errno));
    d->listen_watch = cairn_loop_add_fd(cairn_service_loop(d->svc), d->listen_fd, ZMQ_POLLIN,
                                        s_on_accept, d);
    if (d->listen_watch < 0)
        return cairn_error_set(err, (int)d->listen_watch, CAIRN_SYSTEM, "watch");
    return 0;
}

void dsm_fdsock_stop(dsmd_t *d)
{
    while (d->conns)
        s_conn_free(d, d->conns);
    if (d->listen_fd >= 0) {
        cairn_loop_remove(cairn_service_loop(d->svc), d->listen_watch);
        close(d->listen_fd);
        d->listen_fd = -1;
    }
    if (d->sock_path)
        unlink(d->sock_path);
    free(d->sock_path);
    d->sock_path = NULL;
}
