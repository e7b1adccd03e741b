/* service-socket.c - the daemon skeleton's sockets (service.h,
 * service-private.h): the ROUTER for requests and the XPUB for events,
 * bound on ipc://<rundir>/<name>[.pub].sock and on the node's tcp
 * address, and publishing on the XPUB.
 *
 * Design. ipc is bound first: a path a live daemon still serves is
 * refused with that daemon's pid and description (two clusters sharing
 * a run dir), a stale one is removed. The ipc sockets are mode 0666:
 * who may ask what is the handlers' access and the caller's SO_PEERCRED
 * (service-trust.c), not the file mode. tcp is a CURVE server in mode
 * curve, the NULL mechanism under ZAP domain "cairn-tcp" in mode none.
 *
 * Oversized frames: libzmq's ZMQ_MAXMSGSIZE drops the connection instead
 * of delivering, which a client cannot tell from a crash, so the hard cap
 * is set well above CAIRN_WIRE_MAX_FRAME (HARD_CAP) and frames between
 * the two are received and answered TOO_LARGE by the wire decoder.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "log.h"
#include "service-private.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define HARD_CAP (64 * 1024 * 1024)

/* ---- publishing -------------------------------------------------------- */

int cairn_service_publish(cairn_service_t *svc, const char *topic,
                          uint32_t type, const ProtobufCMessage *msg)
{
    Cairn__Header hdr = CAIRN__HEADER__INIT;

    if (!svc || !topic || !msg)
        return -EINVAL;
    if (!svc->pub)
        return -ENOTCONN;
    hdr.version = CAIRN_WIRE_VERSION;
    hdr.request_id = cairn_wire_new_request_id();
    hdr.source_node = svc->node->id;
    hdr.service = (char *)svc->ops->name;
    hdr.type = type;
    if (protobuf_c_message_get_packed_size(msg) > CAIRN_WIRE_MAX_FRAME)
        return -EMSGSIZE;
    if (zmq_send(svc->pub, topic, strlen(topic), ZMQ_SNDMORE) < 0)
        return -errno;
    return cairn_wire_send(svc->pub, &hdr, msg, 0);
}

/* The XPUB hands up every new subscription (a frame: 1, then the topic)
 * and the end of each last one (0, topic); they are read so none piles
 * up. A subscription to a CAIRN_SYNC_TOPIC_PREFIX topic is answered with
 * one marker on it: read in order from the subscriber's pipe, everything
 * it subscribed before is in effect by now. */
int service_on_subscription(cairn_loop_t *loop, int fd, void *zsock, short revents,
                             void *userdata)
{
    cairn_service_t *svc = userdata;
    size_t plen = strlen(CAIRN_SYNC_TOPIC_PREFIX);
    char topic[256];

    (void)loop, (void)fd, (void)revents;
    for (int i = 0; i < SERVICE_RECV_BATCH; i++) {
        int n = zmq_recv(zsock, topic, sizeof topic - 1, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        if (n < 1 || (size_t)n > sizeof topic - 1 || topic[0] != 1 ||
            (size_t)n - 1 < plen || memcmp(topic + 1, CAIRN_SYNC_TOPIC_PREFIX, plen) != 0)
            continue;
        topic[n] = '\0';
        Cairn__Status empty = CAIRN__STATUS__INIT;
        int r = cairn_service_publish(svc, topic + 1, 0, &empty.base);
        if (r < 0)
            cairn_log_warn(r, "sync-marker", "topic=%s", topic + 1);
    }
    return 0;
}

/* ---- binding ----------------------------------------------------------- */

/* 0 if path is free (absent, or a stale socket now removed); -EADDRINUSE
 * if a live process accepts connections on it, with that process's pid in
 * *ret_pid (0 if the kernel does not say). */
static int s_claim_ipc_path(const char *path, pid_t *ret_pid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ucred cred = { 0 };
    socklen_t len = sizeof(cred);
    int fd, r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    if (access(path, F_OK) < 0)
        return 0;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    /* The listener's credentials, taken when it called listen(). */
    if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        cred.pid = 0;
    close(fd);
    if (r == 0) {
        *ret_pid = cred.pid;
        return -EADDRINUSE;
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* The --config (or -c) argument pid was started with, in out; "" if none
 * or unreadable. Only for the message of a refused bind. */
static void s_pid_config(pid_t pid, char *out, size_t size)
{
    _cleanup_free_ char *cmd = NULL;
    char path[64];
    size_t len = 0;

    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (pid <= 0 || cairn_read_file(path, 1 << 16, &cmd, &len) < 0)
        return;
    /* cmdline is NUL-separated: a, then the argument after it, if any. */
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1) {
        const char *a = cmd + i, *after = a + strlen(a) + 1;

        if (strncmp(a, "--config=", 9) == 0)
            after = a + 9;
        else if (strcmp(a, "--config") != 0 && strcmp(a, "-c") != 0)
            continue;
        else if (after >= cmd + len)
            return;
        snprintf(out, size, "%s", after);
        return;
    }
}

/* Logs why path is taken: which process serves it and how to part the
 * two clusters. A second cluster generated with the default name and run
 * base shares the first one's run dirs, and this is where it shows. */
static void s_log_in_use(const cairn_service_t *svc, const char *path,
                         pid_t pid)
{
    char config[PATH_MAX], by[PATH_MAX + 16] = "";

    s_pid_config(pid, config, sizeof(config));
    if (config[0])
        snprintf(by, sizeof(by), " (--config %s)", config);
    cairn_log_err(-EADDRINUSE, "bind",
                  "endpoint=ipc://%s pid=%d msg=\"another %s is running: "
                  "pid %d%s serves the run dir %s, which this description "
                  "(%s) gives to cluster '%s' node %u too; name this cluster "
                  "apart (cairn config generate --name NAME, or --run-base "
                  "DIR) or stop pid %d\"",
                  path, (int)pid, svc->ops->name, (int)pid, by,
                  svc->node->rundir, svc->config_path,
                  cairn_description_cluster(svc->desc), svc->node->id,
                  (int)pid);
}

/* Binds sock on ipc://<rundir>/<name><suffix>; *ret_path set on success. */
static int s_bind_ipc(cairn_service_t *svc, void *sock, const char *suffix,
                      char **ret_path)
{
    _cleanup_free_ char *path = NULL;
    char ep[PATH_MAX + 8];
    pid_t owner = 0;
    int r;

    if (asprintf(&path, "%s/%s%s", svc->node->rundir, svc->ops->name, suffix) < 0)
        return -ENOMEM;
    r = s_claim_ipc_path(path, &owner);
    if (r == -EADDRINUSE)
        s_log_in_use(svc, path, owner);
    else if (r < 0)
        cairn_log_err(r, "bind", "endpoint=ipc://%s", path);
    snprintf(ep, sizeof(ep), "ipc://%s", path);
    if (r == 0 && zmq_bind(sock, ep) < 0)
        r = cairn_log_err(-errno, "bind", "endpoint=%s msg=\"%s\"", ep,
                          zmq_strerror(errno));
    if (r < 0)
        return r;
    cairn_log_info("bind", "endpoint=%s", ep);
    *ret_path = TAKE_PTR(path);
    return 0;
}

static int s_bind_tcp(cairn_service_t *svc, void *sock, bool pub)
{
    _cleanup_free_ char *ep = cairn_description_tcp_endpoint(
        svc->desc, svc->node, svc->ops->name, pub);

    if (!ep)
        return cairn_log_err(-errno, "bind", "msg=\"no tcp endpoint for %s\"",
                             svc->ops->name);
    if (zmq_bind(sock, ep) < 0) {
        int e = errno;

        /* The usual cause: --node names another host's node. */
        if (e == EADDRNOTAVAIL)
            return cairn_log_err(-e, "bind",
                                 "endpoint=%s msg=\"%s is not an address of "
                                 "this host: is this host node %s (--node)?\"",
                                 ep, svc->node->address, svc->node->name);
        return cairn_log_err(-e, "bind", "endpoint=%s msg=\"%s\"", ep,
                             zmq_strerror(e));
    }
    cairn_log_info("bind", "endpoint=%s", ep);
    return 0;
}

static void *s_socket(cairn_service_t *svc, int type)
{
    void *s = zmq_socket(svc->zctx, type);
    int one = 1, zero = 0;
    int64_t cap = HARD_CAP;

    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cap, sizeof(cap));
    if (type == ZMQ_ROUTER) {
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
    }
    return s;
}

/* Sets sock up for the tcp binds that follow: a CURVE server in mode
 * curve; in mode none the NULL mechanism under ZAP domain "cairn-tcp",
 * so the handler tells these peers from ipc ones by domain, never by
 * parsing an address. */
static int s_tcp_security(cairn_service_t *svc, void *sock, bool zap)
{
    cairn_error_t err;

    if (svc->curve) {
        int r = cairn_curve_server(sock, &svc->keys, &err);
        return r < 0 ? cairn_log_err(r, "bind", "msg=\"%s\"", err.message) : 0;
    }
    if (zap && zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, SERVICE_ZAP_TCP_DOMAIN,
                              strlen(SERVICE_ZAP_TCP_DOMAIN)) < 0)
        return cairn_log_err(-errno, "bind", "msg=\"ZAP_DOMAIN: %s\"",
                             zmq_strerror(errno));
    return 0;
}

/* Any local user may connect (connect(2) on a unix socket needs write
 * access to its file); what they may ask is the handlers' access and
 * the caller's SO_PEERCRED, not the file mode. */
static int s_open_ipc(cairn_service_t *svc, const char *path)
{
    if (chmod(path, 0666) < 0)
        return cairn_log_err(-errno, "bind", "endpoint=ipc://%s msg=\"chmod 0666: %s\"",
                             path, strerror(errno));
    return 0;
}

int service_bind(cairn_service_t *svc)
{
    int r;

    svc->router = s_socket(svc, ZMQ_ROUTER);
    if (!svc->router)
        return cairn_log_err(-errno, "socket", "type=router");
    /* ipc first, with ZAP on: the handler records each peer's creds. */
    if (zmq_setsockopt(svc->router, ZMQ_ZAP_DOMAIN, SERVICE_ZAP_LOCAL_DOMAIN,
                       strlen(SERVICE_ZAP_LOCAL_DOMAIN)) < 0)
        return cairn_log_err(-errno, "bind", "msg=\"ZAP_DOMAIN: %s\"",
                             zmq_strerror(errno));
    if ((r = s_bind_ipc(svc, svc->router, ".sock", &svc->ipc_path)) < 0 ||
        (r = s_open_ipc(svc, svc->ipc_path)) < 0 ||
        (r = s_tcp_security(svc, svc->router, true)) < 0 ||
        (r = s_bind_tcp(svc, svc->router, false)) < 0)
        return r;
    cairn_log_info("security", "mode=%s", svc->curve ? "curve" : "none");
    if (svc->sdesc->pub_port == 0)
        return 0;
    /* XPUB: a PUB that also hands us new subscriptions, so a subscriber
     * can learn when its own is in effect (service_on_subscription). */
    svc->pub = s_socket(svc, ZMQ_XPUB);
    if (!svc->pub)
        return cairn_log_err(-errno, "socket", "type=xpub");
    if ((r = s_bind_ipc(svc, svc->pub, ".pub.sock", &svc->pub_ipc_path)) < 0 ||
        (r = s_open_ipc(svc, svc->pub_ipc_path)) < 0 ||
        (r = s_tcp_security(svc, svc->pub, false)) < 0 ||
        (r = s_bind_tcp(svc, svc->pub, true)) < 0)
        return r;
    return 0;
}
