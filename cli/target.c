/* target.c - which node, and which endpoint, a `cairn` command talks to.
 *
 * Design. The order of target.h is implemented as three small steps, each a
 * function: find the description file, pick the node, pick the endpoint.
 * Explicitly named files (--config, $CAIRN_CONFIG) must exist; the implicit
 * ones are tried in turn and every path tried is named in the error, with
 * the ways to point at a description, so a user is never left guessing.
 *
 * Liveness. ZeroMQ would patiently reconnect to a dead endpoint until the
 * deadline, so every endpoint is probed before it is handed to the client,
 * by libcairn's one probe (cairn_endpoint_probe): a connect() to an ipc
 * socket file is answered at once (no listener: its daemon died and left
 * the file); a tcp port gets a short non-blocking connect, and only a
 * refused or unreachable one counts as down -- one still pending leaves the
 * verdict to the request itself.
 *
 * Endpoint. A socket file in the node's run directory means the node runs
 * on this host: ipc if something listens there, else the node is down.
 * Without the file, tcp. A node named by --node is asked or reported down
 * at once; with no node named, the first node that is not down is asked
 * (fall-over), live ones on this host first, and the result says which one
 * answered (cli_target_node_json).
 *
 * Security. In a description with <security mode="curve">, every tcp
 * server is a CURVE server that admits only the nodes' keys, and a client
 * it does not admit gets no answer at all. So the keys are settled here,
 * before anything is sent: the node's public key is pinned, and the
 * client's keypair must be readable now (--key, $CAIRN_KEY, or a node key
 * file, which only root on a member reads); if it is not, the command
 * fails at once with permission-denied instead of timing out. The event
 * socket of a node asked over ipc is its ipc one too, so a subscriber
 * needs keys exactly when the request does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/wire.h"
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
    /* A user who is not root has a run base of their own, but the
     * clusters on this host are usually root's: look there too, unless a
     * run base was named. */
    if (!ctx->run_base && !s_env("CAIRN_RUN_BASE") &&
        strcmp(run_base, CAIRN_DEFAULT_RUN_BASE) != 0) {
        _cleanup_free_ char *roots = NULL;
        if (asprintf(&roots, "%s/%s/cluster.xml", CAIRN_DEFAULT_RUN_BASE,
                     cluster ? cluster : "cairn") < 0)
            return -ENOMEM;
        if (s_exists(roots)) {
            *ret_path = TAKE_PTR(roots);
            return 0;
        }
    }
    if (s_exists(S_SYSTEM_DESCRIPTION)) {
        *ret_path = strdup(S_SYSTEM_DESCRIPTION);
        return *ret_path ? 0 : -ENOMEM;
    }
    return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                           "no cluster description found (tried %s, %s); %s",
                           local, S_SYSTEM_DESCRIPTION, s_how);
}

/* How strongly an option was given: 2 on the command line, 1 from the
 * environment, 0 not at all. */
static int s_rank(const char *flag, const char *env)
{
    return flag ? 2 : s_env(env) ? 1 : 0;
}

/* A cluster named as strongly as the description was found (or more) must
 * be the one it describes: `--cluster eight` with CAIRN_CONFIG=prod.xml, or
 * with no local `eight` and /etc/cairn/cluster.xml describing `prod`, would
 * otherwise talk to prod without a word. A --config given on the command
 * line beats a CAIRN_CLUSTER from the environment. */
static int s_check_cluster(const cli_ctx *ctx, const cairn_description_t *d,
                           cairn_error_t *err)
{
    int cluster_rank = s_rank(ctx->cluster, "CAIRN_CLUSTER");
    int config_rank = s_rank(ctx->config, "CAIRN_CONFIG");
    const char *named = ctx->cluster ? ctx->cluster : s_env("CAIRN_CLUSTER");
    const char *found = cairn_description_cluster(d);

    if (cluster_rank == 0 || cluster_rank < config_rank ||
        strcmp(named, found) == 0)
        return 0;
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "%s '%s': the description %s%s describes cluster "
                           "'%s'; give that cluster's description with "
                           "--config, or leave out %s",
                           ctx->cluster ? "--cluster" : "CAIRN_CLUSTER", named,
                           cairn_description_path(d),
                           config_rank == 2   ? " (from --config)"
                           : config_rank == 1 ? " (from CAIRN_CONFIG)"
                                              : "",
                           found,
                           ctx->cluster ? "--cluster" : "CAIRN_CLUSTER");
}

int cli_target_load_description(const cli_ctx *ctx,
                                cairn_description_t **ret,
                                cairn_error_t *err)
{
    _cleanup_free_ char *path = NULL;
    cairn_description_t *d = NULL;
    int r;

    r = s_find_description(ctx, &path, err);
    if (r == -ENOMEM)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "out of memory");
    if (r < 0)
        return r;
    r = cairn_description_load(path, &d, err);
    if (r == 0)
        r = s_check_cluster(ctx, d, err);
    if (r < 0) {
        cairn_description_free(d);
        return r;
    }
    *ret = d;
    return 0;
}

/* The socket file behind an ipc:// endpoint exists. */
static bool s_socket_exists(const char *ipc)
{
    struct stat st;

    return strncmp(ipc, "ipc://", 6) == 0 && stat(ipc + 6, &st) == 0 &&
           S_ISSOCK(st.st_mode);
}

/* The tcp probe's wait: short, and a part of the request's deadline. */
static int s_probe_wait_ms(const cli_ctx *ctx)
{
    int wait_ms = ctx->timeout_ms / 4;

    return wait_ms < S_PROBE_MAX_MS ? wait_ms : S_PROBE_MAX_MS;
}

/* The endpoint of service on node: ipc when something listens on its
 * socket file, else tcp unless that port is known to be closed. A socket
 * file with no listener (its daemon died) is an error at once: the node is
 * on this host, so its tcp port is dead too. *ret is malloc'ed. */
static int s_node_endpoint(const cli_ctx *ctx, const cairn_description_t *d,
                           const cairn_node_desc_t *node, const char *service,
                           char **ret, cairn_error_t *err)
{
    _cleanup_free_ char *ipc = cairn_description_ipc_endpoint(d, node, service);
    const cairn_service_desc_t *svc = cairn_description_service(d, service);
    _cleanup_free_ char *tcp = NULL;
    int r;

    if (!ipc || !svc)
        return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                               "%s is not declared in %s", service,
                               cairn_description_path(d));
    if (!cairn_description_node_runs(d, node, service))
        return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                               "node %u (%s) does not run %s: its appliance "
                               "'%s' does not use it", node->id, node->name,
                               service, node->appliance);
    r = cairn_endpoint_probe(ipc, service, 0, NULL);
    if (r == 0) {
        *ret = TAKE_PTR(ipc);
        return 0;
    }
    if (r != -ENOENT)
        return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                               "%s is not running on node %u (%s): no "
                               "listener (connection refused) at %s",
                               service, node->id, node->name, ipc + 6);
    tcp = cairn_description_tcp_endpoint(d, node, service, false);
    if (!tcp)
        return cli_oom(err);
    r = cairn_endpoint_probe(tcp, service, s_probe_wait_ms(ctx), NULL);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_UNAVAILABLE,
                               "%s is not running on node %u (%s): no socket "
                               "at %s and %s port %u: %s", service, node->id,
                               node->name, ipc + 6, node->address, svc->port,
                               strerror(-r));
    *ret = TAKE_PTR(tcp);
    return 0;
}

/* How the node is picked when none is named. */
typedef struct s_pick {
    uint32_t avoid; /* a node never picked (0: none); naming it is usage */
    bool host_only; /* only nodes on this host, if this host has any */
} s_pick_t;

/* The node named by --node or $CAIRN_NODE, and its endpoint: no stand-in,
 * so a node that is down is an error at once. */
static int s_pick_named(const cli_ctx *ctx, const cairn_description_t *d,
                        const char *service, const char *named,
                        const s_pick_t *pick, const cairn_node_desc_t **ret,
                        char **ret_endpoint, cairn_error_t *err)
{
    const char *opt = ctx->node ? "--node" : "CAIRN_NODE";
    const cairn_node_desc_t *node = cairn_description_lookup_node(d, named);

    if (!node)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s '%s': no node with that id or name in %s",
                               opt, named, cairn_description_path(d));
    if (pick->avoid && node->id == pick->avoid)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s '%s' is node %u itself: ask another node",
                               opt, named, pick->avoid);
    *ret = node;
    return s_node_endpoint(ctx, d, node, service, ret_endpoint, err);
}

static bool s_candidate(const cairn_description_t *d,
                        const cairn_node_desc_t *n, const char *service,
                        const s_pick_t *pick)
{
    return cairn_description_node_runs(d, n, service) && n->id != pick->avoid;
}

/* The first candidate with a listener on its socket file on this host;
 * *ret_local says whether any candidate has a socket file here at all. */
static const cairn_node_desc_t *
s_first_live_here(const cairn_description_t *d, const char *service,
                  const s_pick_t *pick, char **ret_endpoint, bool *ret_local)
{
    *ret_local = false;
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);
        char *ipc;
        int r;

        if (!s_candidate(d, n, service, pick))
            continue;
        ipc = cairn_description_ipc_endpoint(d, n, service);
        r = ipc ? cairn_endpoint_probe(ipc, service, 0, NULL) : -ENOMEM;
        if (r == 0) {
            *ret_endpoint = ipc;
            return n;
        }
        *ret_local = *ret_local || r == -ECONNREFUSED;
        free(ipc);
    }
    return NULL;
}

/* No node named: the first candidate, in document order, that is not down
 * -- one live on this host first, then (unless host_only and this host has
 * nodes) any whose endpoint is not known to be dead. A node that is down is
 * skipped, never waited for. When every candidate is down, the first one's
 * error says why, and that the others were tried. */
static int s_pick_default(const cli_ctx *ctx, const cairn_description_t *d,
                          const char *service, const s_pick_t *pick,
                          const cairn_node_desc_t **ret, char **ret_endpoint,
                          cairn_error_t *err)
{
    const cairn_node_desc_t *n;
    size_t tried = 0;
    bool local;
    int first_r = 0;

    n = s_first_live_here(d, service, pick, ret_endpoint, &local);
    if (n) {
        *ret = n;
        return 0;
    }
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        _cleanup_free_ char *ipc = NULL;
        cairn_error_t e;
        int r;

        n = cairn_description_node(d, i);
        if (!s_candidate(d, n, service, pick))
            continue;
        ipc = cairn_description_ipc_endpoint(d, n, service);
        if (pick->host_only && local && !(ipc && s_socket_exists(ipc)))
            continue;
        r = s_node_endpoint(ctx, d, n, service, ret_endpoint, tried ? &e : err);
        if (r == 0) {
            *ret = n;
            return 0;
        }
        first_r = tried++ ? first_r : r;
    }
    if (tried == 0) /* no node runs it: let the first node say so */
        return s_node_endpoint(ctx, d, cairn_description_node(d, 0), service,
                               ret_endpoint, err);
    if (tried > 1)
        cairn_error_append(err, first_r,
                           "; the %zu other node(s) running "
                           "%s%s are down too",
                           tried - 1, service,
                           pick->host_only && local ? " on this host" : "");
    return first_r;
}

static bool s_is_tcp(const char *endpoint)
{
    return endpoint && strncmp(endpoint, "tcp://", 6) == 0;
}

/* The PUB endpoint of service on node, the way its request endpoint goes:
 * ipc beside the ipc socket (a node on this host), else tcp on the pub
 * port; NULL (not an error) if it publishes nothing. */
static int s_pick_pub_endpoint(const cairn_description_t *d,
                               const cairn_node_desc_t *node,
                               const char *service, const char *endpoint,
                               char **ret, cairn_error_t *err)
{
    const cairn_service_desc_t *svc = cairn_description_service(d, service);

    *ret = NULL;
    if (!svc || !svc->pub_port)
        return 0;
    if (!s_is_tcp(endpoint)) {
        if (asprintf(ret, "ipc://%s/%s.pub.sock", node->rundir, service) < 0)
            *ret = NULL;
    } else {
        *ret = cairn_description_tcp_endpoint(d, node, service, true);
    }
    return *ret ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM,
                                      "out of memory");
}

/* ---- security ---------------------------------------------------------- */

const char *cli_target_key_path(const cli_ctx *ctx)
{
    return ctx->key ? ctx->key : s_env("CAIRN_KEY");
}

/* Mode curve, node asked over tcp: pins its public key and takes the
 * client's keypair now. No key readable is permission-denied at once,
 * naming the files tried: a request without one would only time out. */
static int s_curve_keys(const cli_ctx *ctx, const cairn_description_t *d,
                        const cairn_node_desc_t *node, cli_target_t *t,
                        cairn_error_t *err)
{
    const cairn_key_desc_t *k = cairn_description_find_key(d, node->id);
    int r;

    if (!k)   /* the loader gives every node of a curve description one */
        return cairn_error_set(err, -ENOKEY, CAIRN_INVALID_CONFIG,
                               "%s: security mode curve, but node %u has "
                               "no <key>", cairn_description_path(d),
                               node->id);
    r = cairn_description_client_keys(d, cli_target_key_path(ctx), &t->own,
                                      &t->own_node, err);
    if (r < 0)
        return cairn_error_append(err, r, " (node %u, %s, is asked over "
                                  "tcp, where security mode curve needs a "
                                  "key)", node->id, node->name);
    snprintf(t->server_key, sizeof t->server_key, "%s", k->public_key);
    t->curve = true;
    return 0;
}

/* Host and port of tcp://HOST:PORT (HOST "[v6]" unbracketed); false for
 * another endpoint. */
static bool s_tcp_host_port(const char *endpoint, char *host, size_t size,
                            unsigned *ret_port)
{
    const char *h = endpoint + 6, *colon;
    size_t len;
    char *end = NULL;
    unsigned long port;

    if (!s_is_tcp(endpoint) || !(colon = strrchr(h, ':')))
        return false;
    len = (size_t)(colon - h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (len == 0 || len >= size || errno || *end || port == 0 || port > 65535)
        return false;
    memcpy(host, h, len);
    host[len] = '\0';
    *ret_port = (unsigned)port;
    return true;
}

/* Whether the IP literal `address` is `host` (a literal, or a name that
 * resolves to it). */
static bool s_same_host(const char *address, const char *host)
{
    unsigned char a[sizeof(struct in6_addr)], h[sizeof(struct in6_addr)];
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    int family = strchr(address, ':') ? AF_INET6 : AF_INET;
    size_t len = family == AF_INET6 ? 16 : 4;
    bool same = false;

    if (inet_pton(family, address, a) != 1)
        return false;
    if (inet_pton(family, host, h) == 1)
        return memcmp(a, h, len) == 0;
    if (inet_pton(family == AF_INET ? AF_INET6 : AF_INET, host, h) == 1)
        return false;   /* a literal of the other family: no lookup */
    hints.ai_family = family;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    for (struct addrinfo *ai = res; ai && !same; ai = ai->ai_next)
        same = family == AF_INET
                   ? memcmp(&((struct sockaddr_in *)ai->ai_addr)->sin_addr,
                            a, len) == 0
                   : memcmp(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
                            a, len) == 0;
    freeaddrinfo(res);
    return same;
}

/* The node of d at --endpoint tcp://HOST:PORT, which must run service on
 * PORT: its key is the one to pin. Anything else is a usage error saying
 * what did not match. */
static int s_node_at(const cairn_description_t *d, const char *endpoint,
                     const char *service, const cairn_node_desc_t **ret,
                     cairn_error_t *err)
{
    const cairn_service_desc_t *svc = cairn_description_service(d, service);
    char host[256];
    unsigned port;

    if (!s_tcp_host_port(endpoint, host, sizeof host, &port))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--endpoint '%s': "
                               "not tcp://HOST:PORT", endpoint);
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);

        if (!s_same_host(n->address, host))
            continue;
        if (!svc || !cairn_description_node_runs(d, n, service))
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "--endpoint %s: node %u (%s) of %s is at "
                                   "%s but does not run %s", endpoint, n->id,
                                   n->name, cairn_description_path(d), host,
                                   service);
        if (svc->port != port)
            return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                   "--endpoint %s: node %u (%s) of %s is at "
                                   "%s, but its %s listens on port %u, not %u",
                                   endpoint, n->id, n->name,
                                   cairn_description_path(d), host, service,
                                   svc->port, port);
        *ret = n;
        return 0;
    }
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "--endpoint %s: %s runs security mode curve and "
                           "names no node at %s, so the server's key is "
                           "unknown; give the description of the cluster "
                           "there with --config (or CAIRN_CONFIG)", endpoint,
                           cairn_description_path(d), host);
}

/* --config or $CAIRN_CONFIG names a description. */
static bool s_config_named(const cli_ctx *ctx)
{
    return ctx->config || s_env("CAIRN_CONFIG");
}

/* --endpoint tcp://: in mode curve, the keys for the description's node
 * there. No description found (none named) is plain tcp, as mode none. */
static int s_endpoint_curve(const cli_ctx *ctx, const char *service,
                            cli_target_t *t, cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    const cairn_node_desc_t *node = NULL;
    int r = cli_target_load_description(ctx, &d, err);

    if (r == -ENOENT && err && err->code == CAIRN_UNAVAILABLE &&
        !s_config_named(ctx)) {
        cairn_error_clear(err);
        return 0;
    }
    if (r == 0 && cairn_description_curve(d)) {
        r = s_node_at(d, ctx->endpoint, service, &node, err);
        if (r == 0)
            r = s_curve_keys(ctx, d, node, t, err);
    }
    cairn_description_free(d);
    return r;
}

/* Fills t from the description: node, endpoints, names. */
static int s_resolve_described(const cli_ctx *ctx, const char *service,
                               const s_pick_t *pick, cli_target_t *t,
                               cairn_error_t *err)
{
    const char *named = ctx->node ? ctx->node : s_env("CAIRN_NODE");
    cairn_description_t *d = NULL;
    const cairn_node_desc_t *node = NULL;
    int r;

    r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    if (named)
        r = s_pick_named(ctx, d, service, named, pick, &node, &t->endpoint,
                         err);
    else
        r = s_pick_default(ctx, d, service, pick, &node, &t->endpoint, err);
    if (r == 0)
        r = s_pick_pub_endpoint(d, node, service, t->endpoint,
                                &t->pub_endpoint, err);
    if (r == 0 && cairn_description_curve(d) && s_is_tcp(t->endpoint))
        r = s_curve_keys(ctx, d, node, t, err);
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

/* --endpoint: that endpoint, and the PUB socket beside an ipc one. An ipc
 * socket nobody listens on is an error at once; a tcp one is left to the
 * request: a given tcp endpoint keeps the client's timeout behaviour (a
 * server still starting, a port forwarded later), as documented. A tcp
 * one gets the CURVE keys of the description's node there, in mode
 * curve. */
static int s_resolve_endpoint(const cli_ctx *ctx, const char *service,
                              cli_target_t *t, cairn_error_t *err)
{
    int r = 0;

    if (strncmp(ctx->endpoint, "ipc://", 6) == 0)
        r = cairn_endpoint_probe(ctx->endpoint, service, 0, err);
    else if (s_is_tcp(ctx->endpoint))
        r = s_endpoint_curve(ctx, service, t, err);
    if (r < 0)
        return r;
    t->endpoint = strdup(ctx->endpoint);
    if (!t->endpoint ||
        s_endpoint_pub(ctx->endpoint, service, &t->pub_endpoint) < 0)
        return cli_oom(err);
    return 0;
}

static int s_resolve(const cli_ctx *ctx, const char *service,
                     const s_pick_t *pick, cli_target_t *ret,
                     cairn_error_t *err)
{
    cli_target_t t = { 0 };
    int r;

    if (ctx->endpoint)
        r = s_resolve_endpoint(ctx, service, &t, err);
    else
        r = s_resolve_described(ctx, service, pick, &t, err);
    if (r < 0) {
        cli_target_clear(&t);
        return r;
    }
    *ret = t;
    return 0;
}

int cli_target_resolve(const cli_ctx *ctx, const char *service,
                       cli_target_t *ret, cairn_error_t *err)
{
    return s_resolve(ctx, service, &(s_pick_t){ 0 }, ret, err);
}

int cli_target_resolve_other(const cli_ctx *ctx, const char *service,
                             uint32_t avoid, cli_target_t *ret,
                             cairn_error_t *err)
{
    return s_resolve(ctx, service, &(s_pick_t){ .avoid = avoid }, ret, err);
}

int cli_target_resolve_here(const cli_ctx *ctx, const char *service,
                            cli_target_t *ret, cairn_error_t *err)
{
    return s_resolve(ctx, service, &(s_pick_t){ .host_only = true }, ret, err);
}

int cli_target_client(const cli_ctx *ctx, const cli_target_t *t,
                      const char *service, int timeout_ms,
                      cairn_client_t **ret, cairn_error_t *err)
{
    cairn_client_t *c = cairn_client_new(t->endpoint, service);
    int r;

    if (!c)
        return errno == EINVAL
                   ? cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                                     "--endpoint '%s': not an ipc://, tcp:// "
                                     "or inproc:// endpoint", t->endpoint)
                   : cli_oom(err);
    cairn_client_set_timeout(c, timeout_ms);
    if (ctx->retries >= 0)
        cairn_client_set_retries(c, ctx->retries);
    if (t->curve &&
        (r = cairn_client_set_curve(c, t->server_key, &t->own, err)) < 0) {
        cairn_client_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

int cli_target_secure_socket(const cli_target_t *t, void *zsock,
                             cairn_error_t *err)
{
    if (!t->curve || !s_is_tcp(t->pub_endpoint))
        return 0;
    return cairn_curve_client(zsock, t->server_key, &t->own, err);
}

json_t *cli_target_node_json(const cli_target_t *t)
{
    if (!t->node_id)
        return json_null();
    return json_pack("{s:I, s:s?}", "id", (json_int_t)t->node_id, "name",
                     t->node_name);
}

void cli_target_clear(cli_target_t *t)
{
    free(t->endpoint);
    free(t->node_name);
    free(t->cluster);
    free(t->description);
    free(t->run_base);
    free(t->pub_endpoint);
    explicit_bzero(&t->own, sizeof t->own);   /* a secret key */
    memset(t, 0, sizeof *t);
}

int cli_target_call(const cli_ctx *ctx, const cli_target_t *t,
                    const char *service, int timeout_ms,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *reply_desc,
                    uint32_t expect, const char *what, ProtobufCMessage **ret,
                    json_t **ret_by, cairn_error_t *err)
{
    ProtobufCMessage *reply = NULL;
    cairn_client_t *c = NULL;
    int r;

    r = cli_target_client(ctx, t, service, timeout_ms, &c, err);
    if (r == 0)
        r = cairn_client_call(c, req, reply_desc, &reply, err);
    if (r == 0 && cairn_wire_oneof_case(reply) != expect) {
        protobuf_c_message_free_unpacked(reply, NULL);
        r = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "%s at %s "
                            "answered %s with another message", service,
                            t->endpoint, what);
    }
    if (r == 0 && !(*ret_by = cli_target_node_json(t))) {
        protobuf_c_message_free_unpacked(reply, NULL);
        r = cli_oom(err);
    }
    cairn_client_free(c);
    if (r < 0)
        return r;
    *ret = reply;
    return 0;
}

/* ---- events ------------------------------------------------------------- */

int cli_target_recv_event(void *sub, zmq_msg_t frames[3], cairn_error_t *err)
{
    size_t n = 0;
    int more = 1;

    while (more) {
        size_t len = sizeof more;
        zmq_msg_t *f = &frames[n < 3 ? n : 2];

        if (n >= 3)
            zmq_msg_close(f);
        zmq_msg_init(f);
        if (zmq_msg_recv(f, sub, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = errno;

            zmq_msg_close(f);
            for (size_t i = 0; i < n && i < 3; i++)
                zmq_msg_close(&frames[i]);
            return e == EAGAIN && n == 0 ? 0 : -e;
        }
        n++;
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &len);
    }
    if (n == 3)
        return 1;
    for (size_t i = 0; i < n && i < 3; i++)
        zmq_msg_close(&frames[i]);
    return cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR,
                           "event of %zu frame(s), expected 3 "
                           "([topic][Header][event])", n);
}

void cli_target_close_event(zmq_msg_t frames[3])
{
    for (int i = 0; i < 3; i++)
        zmq_msg_close(&frames[i]);
}
