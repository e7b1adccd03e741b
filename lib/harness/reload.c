/* reload.c - the running daemons of a local cluster reload cluster.xml.
 *
 * When a node comes or goes, cluster.xml changes, and in security mode
 * curve that is what admits a key or casts one out: each daemon's ZAP
 * handler admits exactly the keys of the description it holds. So after
 * writing the file, hotplug sends SIGHUP to every running daemon of the
 * other nodes -- as `systemctl reload` would on real hosts -- and waits
 * until each has reloaded, before the new node's daemons start (they
 * connect at once and must not be refused).
 *
 * The observable: a daemon logs one `reloaded` line (services/common,
 * event "reloaded") after a reload that took, or a "keeping the previous
 * description" line after one it refused, on stderr, which the harness
 * made <rundir>/<svc>.log. The log's size is taken before the signal, and
 * only what was written after it counts, so an older reload never passes
 * for this one. A daemon that is gone (crashed, left) is skipped: it reads
 * the file when `node restart` starts it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness-private.h"
#include "util/clock.h"

#define S_RELOADED "] info reloaded "   /* "<svc>[<id>] info reloaded ..." */
#define S_REFUSED "keeping the previous description"
#define S_MAX_READ 65536                  /* of a log, after the signal */

/* One daemon signalled: where its log was when it was. */
typedef struct s_hup {
    const json_t *node; /* its node's state entry */
    const json_t *svc;  /* its service entry */
    pid_t pid;          /* the daemon */
    off_t from;         /* its log's size before the signal */
    int done;           /* 1 reloaded, 0 not yet, -1 gone */
} s_hup_t;

static void s_log_path(const s_hup_t *h, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.log", hx_jstr(h->node, "rundir"),
             hx_jstr(h->svc, "name"));
}

static off_t s_log_size(const s_hup_t *h)
{
    char path[PATH_MAX + 64];
    struct stat st;
    s_log_path(h, path, sizeof(path));
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* What h's daemon logged since the signal, NUL-terminated, in buf. */
static void s_log_since(const s_hup_t *h, char *buf, size_t size)
{
    char path[PATH_MAX + 64];
    ssize_t n = 0;
    s_log_path(h, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = pread(fd, buf, size - 1, h->from);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
}

/* Signals every running daemon of st's nodes but skip; h gets room for
 * every service entry. How many were signalled. */
static size_t s_signal(const json_t *st, unsigned skip, s_hup_t *h)
{
    size_t n = 0, i, j;
    json_t *node, *svc;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        if (json_integer_value(json_object_get(node, "id")) == (json_int_t)skip)
            continue;
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            pid_t pid = hx_svc_running(svc);
            if (pid <= 0)
                continue;
            h[n] = (s_hup_t){ .node = node, .svc = svc, .pid = pid };
            h[n].from = s_log_size(&h[n]);
            if (kill(pid, SIGHUP) == 0)
                n++;
        }
    }
    return n;
}

/* One look at h: 1 reloaded (or gone), 0 not yet, -1 refused (err). */
static int s_check(s_hup_t *h, char *buf, size_t size, cairn_error_t *err)
{
    char line[600];
    if (h->done)
        return 1;
    s_log_since(h, buf, size);
    if (strstr(buf, S_RELOADED)) {
        h->done = 1;
        return 1;
    }
    if (strstr(buf, S_REFUSED)) {
        hx_one_line(buf, line, sizeof(line));
        return cairn_error_set(
            err, -EINVAL, CAIRN_FAILED_PRECONDITION,
            "%s of node %lld (pid %d) refused the new cluster description: "
            "%s", hx_jstr(h->svc, "name"),
            json_integer_value(json_object_get(h->node, "id")), (int)h->pid,
            line);
    }
    if (!hx_pid_alive(h->pid, 0)) {
        h->done = -1; /* it will read the file when it starts again */
        return 1;
    }
    return 0;
}

/* Polls every signalled daemon until all reloaded (0), one refused, or
 * the deadline passed (timeout naming the first that did not answer). */
static int s_wait_all(s_hup_t *h, size_t n, uint64_t deadline, int timeout_ms,
                      char *buf, cairn_error_t *err)
{
    for (;;) {
        size_t pending = 0, i;
        for (i = 0; i < n; i++) {
            int c = s_check(&h[i], buf, S_MAX_READ, err);
            if (c < 0)
                return c;
            pending += c == 0;
        }
        if (pending == 0)
            return 0;
        if (cairn_ms_left(deadline) == 0) {
            for (i = 0; h[i].done; i++)
                ;
            return cairn_error_set(
                err, -ETIMEDOUT, CAIRN_TIMEOUT,
                "%zu daemon(s) did not reload the cluster description within "
                "%d ms of SIGHUP (first: %s of node %lld, pid %d)",
                pending, timeout_ms, hx_jstr(h[i].svc, "name"),
                json_integer_value(json_object_get(h[i].node, "id")),
                (int)h[i].pid);
        }
        hx_sleep_ms(5);
    }
}

int hx_reload(const json_t *st, unsigned skip, int timeout_ms,
              size_t *ret_count, cairn_error_t *err)
{
    size_t total = 0, i, n, reloaded = 0;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node)
        total += json_array_size(json_object_get(node, "services"));
    s_hup_t *h = calloc(total ? total : 1, sizeof(*h));
    char *buf = malloc(S_MAX_READ);
    int r = h && buf ? 0
                     : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL,
                                       "out of memory");
    uint64_t deadline = cairn_now_ms() + (uint64_t)timeout_ms;
    n = r ? 0 : s_signal(st, skip, h);
    r = r ? r : s_wait_all(h, n, deadline, timeout_ms, buf, err);
    for (i = 0; i < n; i++)
        reloaded += h[i].done == 1;
    free(h);
    free(buf);
    if (r == 0 && ret_count)
        *ret_count = reloaded;
    return r;
}
