/* target.c - which node, and which endpoint, a `cairn` command talks to.
 *
 * Design. The order of target.h is implemented as three small steps, each a
 * function: find the description file, pick the node, pick the endpoint.
 * Explicitly named files (--config, $CAIRN_CONFIG) must exist; the implicit
 * ones are tried in turn and every path tried is named in the error, with
 * the ways to point at a description, so a user is never left guessing.
 *
 * Endpoint. A socket file in the node's run directory means the service runs
 * on this host: use ipc. Otherwise tcp, and before handing it to the client
 * (which, being ZeroMQ, would patiently reconnect until the deadline) one
 * non-blocking connect() is tried for a short while: a refused or
 * unreachable port is reported at once as "unavailable"; a connect that
 * succeeds or is still pending leaves the verdict to the request itself.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target.h"

#define S_PROBE_MAX_MS 250   /* longest the tcp probe may wait */
#define S_SYSTEM_DESCRIPTION "/etc/cairn/cluster.xml"

/* Non-empty environment variable, or NULL. */
static const char *s_env(const char *name)
{
    const char *v = getenv(name);

    return v && *v ? v : NULL;
}

static bool s_exists(const char *path)
{
    struct stat st;

    /* A file we may not stat (EACCES) exists: let the loader say why. */
    return stat(path, &st) == 0 || errno != ENOENT;
}

static const char s_how[] =
    "point at one with --config FILE or CAIRN_CONFIG, name the cluster with "
    "--cluster/CAIRN_CLUSTER and --run-base/CAIRN_RUN_BASE, or give "
    "--endpoint URI";

/* The description path by the order of target.h; *ret_path is malloc'ed. */
static int s_find_description(const cli_ctx *ctx, char **ret_path,
                              cairn_error_t *err)
{
    const char *given = ctx->config ? ctx->config : s_env("CAIRN_CONFIG");
    const char *cluster;
    _cleanup_free_ char *local = NULL;
    char run_base[PATH_MAX];
    int r;

    if (given) {
        if (!s_exists(given))
            return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                                   "no cluster description at %s (from %s); %s",
                                   given, ctx->config ? "--config" : "CAIRN_CONFIG",
                                   s_how);
        *ret_path = strdup(given);
        return *ret_path ? 0 : -ENOMEM;
    }
    r = cairn_run_base(ctx->run_base, run_base, sizeof run_base, err);
    if (r < 0)
        return r;
    cluster = ctx->cluster ? ctx->cluster : s_env("CAIRN_CLUSTER");
    if (asprintf(&local, "%s/%s/cluster.xml", run_base,
                 cluster ? cluster : "cairn") < 0)
        return -ENOMEM;
    if (s_exists(local)) {
        *ret_path = TAKE_PTR(local);
        return 0;
    }
    if (s_exists(S_SYSTEM_DESCRIPTION)) {
        *ret_path = strdup(S_SYSTEM_DESCRIPTION);
        return *ret_path ? 0 : -ENOMEM;
    }
    return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                           "no cluster description found (tried %s, %s); %s",
                           local, S_SYSTEM_DESCRIPTION, s_how);
}

int cli_target_load_description(const cli_ctx *ctx,
                                cairn_description_t **ret,
                                cairn_error_t *err)
{
    _cleanup_free_ char *path = NULL;
    int r;

    r = s_find_description(ctx, &path, err);
    if (r == -ENOMEM)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "out of memory");
    if (r < 0)
        return r;
    return cairn_description_load(path, ret, err);
}

/* The socket file behind an ipc:// endpoint exists. */
static bool s_socket_exists(const char *ipc)
{
    struct stat st;

    return strncmp(ipc, "ipc://", 6) == 0 && stat(ipc + 6, &st) == 0 &&
           S_ISSOCK(st.st_mode);
}

static bool s_node_has_socket(const cairn_description_t *d,
                              const cairn_node_desc_t *node,
                              const char *service)
{
    _cleanup_free_ char *ipc = cairn_description_ipc_endpoint(d, node, service);

    return ipc && s_socket_exists(ipc);
}

/* The node to ask: named, else first with a live socket, else first running
 * the service, else the first. */
static int s_pick_node(const cli_ctx *ctx, const cairn_description_t *d,
                       const char *service, uint32_t avoid,
                       const cairn_node_desc_t **ret, cairn_error_t *err)
{
    const char *named = ctx->node ? ctx->node : s_env("CAIRN_NODE");
    const cairn_node_desc_t *first = NULL;

    if (named) {
        *ret = cairn_description_lookup_node(d, named);
        if (!*ret)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "%s '%s': no node with that id or name in %s",
                                   ctx->node ? "--node" : "CAIRN_NODE", named,
                                   cairn_description_path(d));
        if (avoid && (*ret)->id == avoid)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "%s '%s' is node %u itself: ask another "
                                   "node", ctx->node ? "--node" : "CAIRN_NODE",
                                   named, avoid);
        return 0;
    }
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);

        if (!cairn_description_node_runs(d, n, service) || n->id == avoid)
            continue;
        if (s_node_has_socket(d, n, service)) {
            *ret = n;
            return 0;
        }
        if (!first)
            first = n;
    }
    *ret = first ? first : cairn_description_node(d, 0);
    return 0;
}

/* -ECONNREFUSED (or another definite connect error) when nobody listens at
 * address:port, 0 when connected or still trying after wait_ms, or when the
 * address is not a numeric one we can probe. */
static int s_tcp_probe(const char *address, uint16_t port, int wait_ms)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char service[8];
    int fd, r = 0, e = 0;
    socklen_t len = sizeof e;

    snprintf(service, sizeof service, "%u", port);
    if (getaddrinfo(address, service, &hints, &ai) != 0)
        return 0;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };

        if (errno != EINPROGRESS)
            r = -errno;
        else if (poll(&p, 1, wait_ms) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e)
            r = -e;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ENETUNREACH ? r : 0;
}

/* The endpoint of service on node: ipc if its socket exists, else tcp if
 * something may listen there. *ret is malloc'ed. */
static int s_pick_endpoint(const cli_ctx *ctx, const cairn_description_t *d,
                           const cairn_node_desc_t *node, const char *service,
                           char **ret, cairn_error_t *err)
{
    _cleanup_free_ char *ipc = cairn_description_ipc_endpoint(d, node, service);
    const cairn_service_desc_t *svc = cairn_description_service(d, service);
    int wait_ms = ctx->timeout_ms / 4, r;

    if (!ipc || !svc)
        return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                               "%s is not declared in %s", service,
                               cairn_description_path(d));
    if (!cairn_description_node_runs(d, node, service))
        return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                               "node %u (%s) does not run %s: its appliance "
                               "'%s' does not use it", node->id, node->name,
                               service, node->appliance);
    if (s_socket_exists(ipc)) {
        *ret = TAKE_PTR(ipc);
        return 0;
    }
    r = s_tcp_probe(node->address, svc->port,
                    wait_ms < S_PROBE_MAX_MS ? wait_ms : S_PROBE_MAX_MS);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                               "%s is not running on node %u (%s): no socket "
                               "at %s and %s port %u: %s", service, node->id,
                               node->name, ipc + 6, node->address, svc->port,
                               strerror(-r));
    *ret = cairn_description_tcp_endpoint(d, node, service, false);
    return *ret ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                      "out of memory");
}

/* The PUB endpoint of service on node: ipc when its socket file exists,
 * else tcp on the pub port; NULL (not an error) if it publishes nothing. */
static int s_pick_pub_endpoint(const cairn_description_t *d,
                               const cairn_node_desc_t *node,
                               const char *service, char **ret,
                               cairn_error_t *err)
{
    const cairn_service_desc_t *svc = cairn_description_service(d, service);
    _cleanup_free_ char *ipc = NULL;
    struct stat st;

    *ret = NULL;
    if (!svc || !svc->pub_port)
        return 0;
    if (asprintf(&ipc, "ipc://%s/%s.pub.sock", node->rundir, service) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (stat(ipc + 6, &st) == 0 && S_ISSOCK(st.st_mode)) {
        *ret = TAKE_PTR(ipc);
        return 0;
    }
    *ret = cairn_description_tcp_endpoint(d, node, service, true);
    return *ret ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                      "out of memory");
}

/* Fills t from the description: node, endpoints, names. */
static int s_resolve_described(const cli_ctx *ctx, const char *service,
                               uint32_t avoid, cli_target_t *t,
                               cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    const cairn_node_desc_t *node;
    int r;

    r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    r = s_pick_node(ctx, d, service, avoid, &node, err);
    if (r == 0)
        r = s_pick_endpoint(ctx, d, node, service, &t->endpoint, err);
    if (r == 0)
        r = s_pick_pub_endpoint(d, node, service, &t->pub_endpoint, err);
    if (r == 0) {
        t->node_id = node->id;
        t->node_name = strdup(node->name);
        t->cluster = strdup(cairn_description_cluster(d));
        t->description = strdup(cairn_description_path(d));
        t->run_base = strdup(cairn_description_run_base(d));
        if (!t->node_name || !t->cluster || !t->description || !t->run_base)
            r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    cairn_description_free(d);
    return r;
}

/* With --endpoint ipc://DIR/<service>.sock, the PUB socket beside it,
 * DIR/<service>.pub.sock; otherwise unknown (NULL). */
static int s_endpoint_pub(const char *endpoint, const char *service,
                          char **ret)
{
    size_t len = strlen(endpoint), slen = strlen(service);
    const char *base;

    *ret = NULL;
    if (strncmp(endpoint, "ipc://", 6) != 0 || len < slen + 6 + 5 ||
        strcmp(endpoint + len - 5, ".sock") != 0)
        return 0;
    base = endpoint + len - 5 - slen;
    if (strncmp(base, service, slen) != 0 || (base[-1] != '/' && base != endpoint + 6))
        return 0;
    return asprintf(ret, "%.*s.pub.sock", (int)(len - 5), endpoint) < 0
               ? -ENOMEM : 0;
}

int cli_target_resolve(const cli_ctx *ctx, const char *service,
                       cli_target_t *ret, cairn_error_t *err)
{
    return cli_target_resolve_other(ctx, service, 0, ret, err);
}

int cli_target_resolve_other(const cli_ctx *ctx, const char *service,
                             uint32_t avoid, cli_target_t *ret,
                             cairn_error_t *err)
{
    cli_target_t t = { 0 };
    int r;

    if (ctx->endpoint) {
        t.endpoint = strdup(ctx->endpoint);
        r = t.endpoint && s_endpoint_pub(ctx->endpoint, service,
                                         &t.pub_endpoint) == 0
                ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                      "out of memory");
    } else {
        r = s_resolve_described(ctx, service, avoid, &t, err);
    }
    if (r < 0) {
        cli_target_clear(&t);
        return r;
    }
    *ret = t;
    return 0;
}

void cli_target_clear(cli_target_t *t)
{
    free(t->endpoint);
    free(t->node_name);
    free(t->cluster);
    free(t->description);
    free(t->run_base);
    free(t->pub_endpoint);
    memset(t, 0, sizeof *t);
}
