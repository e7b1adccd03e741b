/* dsm.c - libcairn's distributed shared memory segments (cairn/dsm.h).
 *
 * Design. Opening is a conversation with the node's dsmd on its
 * SOCK_SEQPACKET socket: Request{open} -> Reply with the node's memfd of
 * the segment; map it shared; make a userfaultfd, register the mapping for
 * missing, minor and (when writable) write-protect faults; Request{attach}
 * with the userfaultfd -> Reply. From then on dsmd answers every fault of
 * the mapping. The handle keeps the socket (its closing ends the
 * attachment) and its own copy of the userfaultfd: should dsmd die, the
 * registration stays and a fault waits rather than reading the memfd's
 * bytes unserved.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cairn/description.h"
#include "cairn/dsm.h"
#include "dsmd.pb-c.h"
#include "hooks-private.h"
#include "util/fdpass.h"
#include "util/uffd-compat.h"

#define S_FEATURES (UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
                    UFFD_FEATURE_POISON)
#define S_PACKET_MAX 4096

struct cairn_dsm {
    void *addr;
    size_t size;
    int sock;
    int uffd;
    int created;
};

/* $CAIRN_DSMD_SOCKET, $CAIRN_NODE_RUNDIR/dsmd.fd.sock, or the one
 * dsmd.fd.sock of a local cluster under /run/cairn. */
static char *s_socket_path(cairn_error_t *err)
{
    const char *env = getenv("CAIRN_DSMD_SOCKET");
    glob_t g = { 0 };
    char *p = NULL;
    if (env && *env)
        return strdup(env);
    env = getenv("CAIRN_NODE_RUNDIR");
    if (env && *env)
        return asprintf(&p, "%s/dsmd.fd.sock", env) < 0 ? NULL : p;
    if (glob(CAIRN_DEFAULT_RUN_BASE "/*/*/dsmd.fd.sock", 0, NULL, &g) == 0 && g.gl_pathc == 1)
        p = strdup(g.gl_pathv[0]);
    if (!p)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "no dsmd socket: %s dsmd.fd.sock under " CAIRN_DEFAULT_RUN_BASE
                        "/<cluster>/<node>/; set CAIRN_DSMD_SOCKET or CAIRN_NODE_RUNDIR",
                        g.gl_pathc > 1 ? "more than one" : "no");
    globfree(&g);
    return p;
}

static int s_errno_of(int code)
{
    switch (code) {
    case CAIRN_NOT_FOUND: return -ENOENT;
    case CAIRN_ALREADY_EXISTS: return -EEXIST;
    case CAIRN_INVALID_ARGUMENT: return -EINVAL;
    case CAIRN_PERMISSION_DENIED: return -EACCES;
    case CAIRN_UNAVAILABLE: return -EHOSTUNREACH;
    default: return -EREMOTEIO;
    }
}

/* One request out (with fd_out when >= 0), one reply back (its fd in
 * *fd_in when fd_in). *ret is the caller's. */
static int s_call(int sock, const Cairn__Dsmd__Request *req, int fd_out, Cairn__Dsmd__Reply **ret,
                  int *fd_in, cairn_error_t *err)
{
    uint8_t buf[S_PACKET_MAX];
    size_t n = cairn__dsmd__request__get_packed_size(req);
    if (n > sizeof buf)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "request too large");
    cairn__dsmd__request__pack(req, buf);
    int fd = -1, e = cairn_fd_send(sock, buf, n, fd_out, 0);
    if (e < 0)
        return cairn_error_set(err, e, CAIRN_UNAVAILABLE, "dsmd: %s", strerror(-e));
    ssize_t got = cairn_fd_recv(sock, buf, sizeof buf, &fd, 0);
    if (got <= 0)
        return cairn_error_set(err, got < 0 ? (int)got : -ECONNRESET, CAIRN_UNAVAILABLE,
                               "dsmd closed the connection%s%s", got < 0 ? ": " : "",
                               got < 0 ? strerror((int)-got) : "");
    Cairn__Dsmd__Reply *rep = cairn__dsmd__reply__unpack(NULL, (size_t)got, buf);
    if (!rep) {
        if (fd >= 0)
            close(fd);
        return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "dsmd's reply does not decode");
    }
    if (rep->status && rep->status->code != CAIRN__STATUS_CODE__STATUS_OK) {
        int code = (int)rep->status->code;
        cairn_error_set(err, s_errno_of(code), code, "%s", rep->status->message);
        cairn__dsmd__reply__free_unpacked(rep, NULL);
        if (fd >= 0)
            close(fd);
        return s_errno_of(code);
    }
    if (fd_in)
        *fd_in = fd;
    else if (fd >= 0)
        close(fd);
    *ret = rep;
    return 0;
}

static int s_connect(cairn_dsm_t *s, const char *at, cairn_error_t *err)
{
    char *path = at ? strdup(at) : s_socket_path(err);
    if (!path)
        return err && err->code ? -EHOSTUNREACH : -ENOMEM;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        free(path);
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT, "socket path too long");
    }
    strcpy(sa.sun_path, path);
    s->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s->sock < 0 || connect(s->sock, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE, "dsmd at %s: %s", path, strerror(e));
        free(path);
        return -EHOSTUNREACH;
    }
    free(path);
    return 0;
}

int cairn_dsm_open(const char *name, size_t size, unsigned flags, unsigned mode,
                   cairn_dsm_t **ret, cairn_error_t *err)
{
    return cairn_dsm_open_at(NULL, name, size, flags, mode, ret, err);
}

int cairn_dsm_open_at(const char *socket_path, const char *name, size_t size, unsigned flags,
                      unsigned mode, cairn_dsm_t **ret, cairn_error_t *err)
{
    if (!name || !ret || (flags & ~(CAIRN_DSM_CREATE | CAIRN_DSM_EXCL | CAIRN_DSM_RDONLY)))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad arguments");
    cairn_dsm_t *s = calloc(1, sizeof *s);
    if (!s)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    s->sock = s->uffd = -1;
    int memfd = -1, e = s_connect(s, socket_path, err);
    Cairn__Dsmd__Reply *rep = NULL;
    if (e < 0)
        goto fail;
    Cairn__Dsmd__OpenRequest o = CAIRN__DSMD__OPEN_REQUEST__INIT;
    o.name = (char *)name;
    o.size = size;
    o.flags = flags;
    o.mode = mode;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_OPEN;
    req.open = &o;
    if ((e = s_call(s->sock, &req, -1, &rep, &memfd, err)) < 0)
        goto fail;
    if (rep->msg_case != CAIRN__DSMD__REPLY__MSG_OPEN_REPLY || !rep->open_reply->segment ||
        memfd < 0) {
        e = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "dsmd answered open without a segment");
        goto fail;
    }
    const Cairn__Dsmd__Segment *seg = rep->open_reply->segment;
    s->size = seg->size;
    s->created = rep->open_reply->created;
    bool rdonly = flags & CAIRN_DSM_RDONLY;
    /* Read-only: a private mapping of the read-only memfd dsmd gave. A
     * userfaultfd needs a mapping that may become writable, which a
     * shared one of a read-only file cannot: a private one can, and a
     * write the process might make after mprotect stays its own (copy on
     * write), never the node's copy. */
    void *a = mmap(NULL, s->size, PROT_READ | (rdonly ? 0 : PROT_WRITE),
                   rdonly ? MAP_PRIVATE : MAP_SHARED, memfd, 0);
    if (a == MAP_FAILED) {
        e = cairn_error_set(err, -errno, CAIRN_SYSTEM, "mmap of %zu bytes: %s", s->size,
                            strerror(errno));
        goto fail;
    }
    s->addr = a;
    if ((e = hooks_uffd_open(S_FEATURES, "shmem minor faults, shmem write-protect or poison", &s->uffd, err)) < 0)
        goto fail;
    struct uffdio_register reg = {
        .range = { (uint64_t)(uintptr_t)a, s->size },
        .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR |
                (rdonly ? 0 : UFFDIO_REGISTER_MODE_WP),
    };
    if (madvise(a, s->size, MADV_DONTFORK) < 0 || ioctl(s->uffd, UFFDIO_REGISTER, &reg) < 0) {
        e = cairn_error_set(err, -errno, CAIRN_SYSTEM, "userfaultfd register: %s", strerror(errno));
        goto fail;
    }
    Cairn__Dsmd__AttachRequest at = CAIRN__DSMD__ATTACH_REQUEST__INIT;
    at.addr = (uint64_t)(uintptr_t)a;
    at.size = s->size;
    at.generation = seg->generation;
    at.name = (char *)name;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_ATTACH;
    req.attach = &at;
    cairn__dsmd__reply__free_unpacked(rep, NULL);
    rep = NULL;
    if ((e = s_call(s->sock, &req, s->uffd, &rep, NULL, err)) < 0)
        goto fail;
    cairn__dsmd__reply__free_unpacked(rep, NULL);
    close(memfd);
    *ret = s;
    return 0;
fail:
    if (rep)
        cairn__dsmd__reply__free_unpacked(rep, NULL);
    if (memfd >= 0)
        close(memfd);
    cairn_dsm_close(s);
    return e;
}

void *cairn_dsm_addr(const cairn_dsm_t *s) { return s->addr; }
size_t cairn_dsm_size(const cairn_dsm_t *s) { return s->size; }
int cairn_dsm_created(const cairn_dsm_t *s) { return s->created; }

cairn_dsm_t *cairn_dsm_close(cairn_dsm_t *s)
{
    if (!s)
        return NULL;
    if (s->addr)
        munmap(s->addr, s->size);
    if (s->uffd >= 0)
        close(s->uffd);
    if (s->sock >= 0)
        close(s->sock);
    free(s);
    return NULL;
}

int cairn_dsm_unlink(const char *name, cairn_error_t *err)
{
    return cairn_dsm_unlink_at(NULL, name, err);
}

int cairn_dsm_unlink_at(const char *socket_path, const char *name, cairn_error_t *err)
{
    char *path = socket_path ? strdup(socket_path) : s_socket_path(err), *ep = NULL;
    if (!path)
        return -EHOSTUNREACH;
    int e = asprintf(&ep, "ipc://%s/dsmd.sock", dirname(path)) < 0 ? -ENOMEM : 0;
    free(path);
    cairn_client_t *c = e == 0 ? cairn_client_new(ep, "dsmd") : NULL;
    free(ep);
    if (!c)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    Cairn__Dsmd__RmRequest rm = CAIRN__DSMD__RM_REQUEST__INIT;
    rm.name = (char *)name;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_RM;
    req.rm = &rm;
    ProtobufCMessage *rep = NULL;
    e = cairn_client_call(c, &req.base, &cairn__dsmd__reply__descriptor, &rep, err);
    cairn_client_free(c);
    if (rep)
        protobuf_c_message_free_unpacked(rep, NULL);
    if (e == -EREMOTEIO && err)
        e = err->code == CAIRN_FAILED_PRECONDITION ? -EBUSY : s_errno_of(err->code);
    return e;
}
