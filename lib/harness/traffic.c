/* traffic.c - does traffic really cross the bridge between namespaces?
 *
 * After the daemons serve, a child in node 1's namespace opens a TCP
 * connection to the first service's port of every other node and writes
 * the ids that failed to a pipe. A failure is only a warning in the
 * result (with the bridge-netfilter hint when bridge-nf-call-iptables is
 * 1: the host's iptables rules then see bridged traffic); the harness
 * never changes the host's firewall.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness-private.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

/* ---- in the child ------------------------------------------------------ */

/* One TCP connect to addr:port within the time left until deadline: 0,
 * or the errno that ended it. A refused connection (the node's daemon not
 * listening yet: it was just started) or an unreachable host (its link
 * still coming up) is tried again until the deadline. */
static int s_probe_one(const char *addr, int port, uint64_t deadline)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int e = ETIMEDOUT;
    inet_pton(AF_INET, addr, &sa.sin_addr);
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0)
            return errno;
        e = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            struct pollfd p = { .fd = s, .events = POLLOUT };
            socklen_t len = sizeof(e);
            e = poll(&p, 1, (int)cairn_ms_left(deadline)) != 1      ? ETIMEDOUT
                : getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) < 0 ? errno
                                                                    : e;
        }
        close(s);
        bool again = e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH;
        if (!again || cairn_ms_left(deadline) <= 20)
            return e;
        usleep(20 * 1000);
    }
}

/* Enters node 1's namespace, probes the others, writes the failed ids as
 * "2,5" to fd. Never returns. */
static void s_child_probe(const json_t *st, int port, int fd)
{
    json_t *nodes = json_object_get(st, "nodes");
    char ns[PATH_MAX];
    snprintf(ns, sizeof(ns), HX_NETNS_DIR "/%s",
             hx_jstr(json_array_get(nodes, 0), "netns"));
    int nfd = open(ns, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0)
        _exit(2);
    uint64_t deadline = cairn_now_ms() + HX_CHECK_MS;
    for (size_t i = 1; i < json_array_size(nodes); i++) {
        const json_t *node = json_array_get(nodes, i);
        if (s_probe_one(hx_jstr(node, "address"), port, deadline) != 0)
            dprintf(fd, "%s%lld", i > 1 ? "," : "",
                    json_integer_value(json_object_get(node, "id")));
    }
    _exit(0);
}

/* ---- in the harness ---------------------------------------------------- */

/* Reads the child's answer until it closes the pipe. */
static void s_read_answer(int fd, char *out, size_t size)
{
    size_t n = 0;
    for (ssize_t r;
         n < size - 1 && ((r = read(fd, out + n, size - 1 - n)) > 0 ||
                          (r < 0 && errno == EINTR));)
        n += r > 0 ? (size_t)r : 0;
    out[n] = '\0';
}

/* The warning for nodes `failed`, with the bridge-netfilter hint. */
static void s_warn(json_t *st, const char *failed)
{
    _cleanup_free_ char *nf = NULL;
    char msg[1400];
    bool nf_on = cairn_read_file("/proc/sys/net/bridge/bridge-nf-call-iptables",
                                 0, &nf, NULL) == 0 &&
                 nf[0] == '1';
    snprintf(msg, sizeof(msg),
             "TCP from node 1 to node(s) %s failed across bridge %s%s", failed,
             hx_jstr(st, "bridge"),
             nf_on
                 ? "; bridge-nf-call-iptables is 1, so host iptables rules see "
                   "bridged traffic and may drop it"
                 : "");
    json_object_set_new(st, "warning", json_string(msg));
}

void hx_check_traffic(json_t *st)
{
    json_t *nodes = json_object_get(st, "nodes");
    const json_t *svc = json_array_get(
        json_object_get(json_array_get(nodes, 0), "services"), 0);
    int port = (int)json_integer_value(json_object_get(svc, "port"));
    char failed[1024] = "";
    int fds[2], status = 0;
    if (json_array_size(nodes) < 2 || port <= 0 || pipe2(fds, O_CLOEXEC) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0)
        s_child_probe(st, port, fds[1]);
    close(fds[1]);
    if (pid > 0)
        s_read_answer(fds[0], failed, sizeof(failed));
    close(fds[0]);
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ran = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    json_object_set_new(st, "traffic_ok",
                        ran ? json_boolean(!*failed) : json_null());
    if (ran && *failed)
        s_warn(st, failed);
}
