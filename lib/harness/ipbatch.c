/* ipbatch.c - ip(8): the batches the harness writes, and running them.
 *
 * Every change to links and namespaces is a batch of ip commands fed to
 * `ip [-n NETNS] -force -batch -` on its stdin: one process for the whole
 * host side of an up, one per namespace for the inside (started together,
 * waited for together), one for a down. -force makes ip try every line;
 * its exit status is checked and a failure quotes the failing line of the
 * batch (ip names it by number, "Command failed -:N") with ip's own
 * message on one line. The batch text is built here and nowhere else, so
 * a test can read exactly what would run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness-private.h"
#include "util/cleanup.h"
#include "util/fileio.h"

/* ---- the batches ------------------------------------------------------- */

int hx_batch_bridge(hx_buf_t *b, const char *bridge, int subnet)
{
    return hx_buf_add(
        b,
        "link add %s type bridge\naddr add 10.77.%d.254/24 dev %s\n"
        "link set %s up\n",
        bridge, subnet, bridge, bridge);
}

int hx_batch_node_host(hx_buf_t *b, const char *netns, const char *veth,
                       const char *bridge)
{
    return hx_buf_add(
        b,
        "netns add %s\nlink add %s type veth peer name eth0 netns %s\n"
        "link set %s master %s up\n",
        netns, veth, netns, veth, bridge);
}

int hx_batch_node_inside(hx_buf_t *b, const char *address)
{
    return hx_buf_add(
        b, "link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n",
        address);
}

int hx_batch_del_link(hx_buf_t *b, const char *link)
{
    return hx_buf_add(b, "link del %s\n", link);
}

int hx_batch_del_netns(hx_buf_t *b, const char *netns)
{
    return hx_buf_add(b, "netns del %s\n", netns);
}

/* ---- running ip -------------------------------------------------------- */

static const char *s_ip_path(void)
{
    static const char *const cands[] = {
        "/usr/sbin/ip",
        "/sbin/ip",
        "/usr/bin/ip",
        "/bin/ip",
    };
    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

/* In the forked child: stdin from in_fd, stdout and stderr to err_fd. */
static void s_child_ip(const char *ip, const char *netns, int in_fd, int err_fd)
{
    dup2(in_fd, 0);
    dup2(err_fd, 1);
    dup2(err_fd, 2);
    if (netns)
        execl(ip, "ip", "-force", "-n", netns, "-batch", "-", (char *)NULL);
    else
        execl(ip, "ip", "-force", "-batch", "-", (char *)NULL);
    dprintf(2, "exec %s: %m\n", ip);
    _exit(127);
}

/* Two pipes: in[] for ip's stdin, out[] for its output. */
static int s_pipes(int in[2], int out[2], cairn_error_t *err)
{
    if (pipe2(in, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %m");
    if (pipe2(out, O_CLOEXEC) < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "pipe: %s", strerror(e));
    }
    return 0;
}

int hx_ip_start(const char *netns, hx_ip_job_t *job, cairn_error_t *err)
{
    const char *ip = s_ip_path();
    int in[2], out[2];
    if (!ip)
        return cairn_error_set(err, -ENOENT, CAIRN_SYSTEM,
                               "ip(8) not found in /usr/sbin, /sbin, /usr/bin, "
                               "/bin (install iproute2)");
    int r = s_pipes(in, out, err);
    if (r < 0)
        return r;
    pid_t pid = fork();
    if (pid == 0)
        s_child_ip(ip, netns, in[0], out[1]);
    int e = errno;
    close(in[0]);
    close(out[1]);
    _cleanup_close_ int to_ip = in[1];
    if (pid < 0) {
        close(out[0]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "fork: %s", strerror(e));
    }
    job->pid = pid;
    job->err_fd = out[0];
    /* ip dying early is not a failure here: its exit status says why */
    (void)cairn_write_all(to_ip, job->batch, strlen(job->batch));
    return 0;
}

/* Line `lineno` (1-based) of batch, copied to out. */
static void s_batch_line(const char *batch, long lineno, char *out, size_t size)
{
    const char *p = batch;
    for (long i = 1; i < lineno && p; i++) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    if (!p) {
        snprintf(out, size, "?");
        return;
    }
    size_t n = strcspn(p, "\n");
    snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), p);
}

/* Reads what ip printed, up to size-1 bytes. */
static void s_read_output(int fd, char *msg, size_t size)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, msg + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (n += (size_t)r) >= size - 1)
            break;
    }
    msg[n] = '\0';
}

int hx_ip_finish(hx_ip_job_t *job, cairn_error_t *err)
{
    char msg[2048], line[256] = "?", flat[1024];
    int status = 0;
    s_read_output(job->err_fd, msg, sizeof(msg));
    close(job->err_fd);
    job->err_fd = -1;
    while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
        ;
    job->pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    const char *at = strstr(msg, "Command failed -:");
    if (at)
        s_batch_line(job->batch,
                     strtol(at + strlen("Command failed -:"), NULL, 10), line,
                     sizeof(line));
    hx_one_line(msg, flat, sizeof(flat));
    return cairn_error_set(err, -EIO, CAIRN_SYSTEM,
                           "ip (%s) failed at '%s': %s", job->where, line,
                           flat);
}

int hx_ip_run(const char *netns, const char *where, const char *batch,
              cairn_error_t *err)
{
    hx_ip_job_t job = { .err_fd = -1, .where = where, .batch = batch };
    int r = hx_ip_start(netns, &job, err);
    return r < 0 ? r : hx_ip_finish(&job, err);
}

int hx_batch_run_host(hx_buf_t *b, int built, cairn_error_t *err)
{
    int r = built;

    if (r < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    else if (b->len > 0)
        r = hx_ip_run(NULL, "host", b->s, err);
    free(b->s);
    *b = (hx_buf_t){ 0 };
    return r;
}
