/* plan.c - the plan of a local cluster: every name, address and path.
 *
 * Everything up creates has a name derived from the cluster name and the
 * node id (cairn-<name>-<k>, cv-<name>-<k>, cb-<name>, .../cairn/<name>/<k>,
 * <run-base>/<name>/<k>) and an address derived from the subnet (10.77.c.k,
 * or 127.0.0.k in loopback mode, where every node uses the same ports on
 * its own loopback address). They are computed here, once, into the state
 * document; the rest of the harness reads them from it. hx_plan_state is
 * pure (what the host offers comes in a hx_site_t), so it is tested
 * without root.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness-private.h"

/* ---- nodes ------------------------------------------------------------- */

/* The services of a node: [{name, binary}] with no process yet. */
static json_t *s_plan_services(const json_t *services)
{
    json_t *svcs = json_deep_copy(services), *s;
    size_t i;
    json_array_foreach(svcs, i, s)
        json_object_update_new(s, json_pack("{s:i, s:i, s:b}", "pid", 0,
                                            "start_time", 0, "running", 0));
    return svcs;
}

json_t *hx_plan_node(const json_t *st, const harness_opts_t *o, unsigned k,
                     hx_cg_t cg, int subnet, const json_t *services)
{
    const char *name = hx_jstr(st, "cluster");
    char addr[32], ns[32], veth[IFNAMSIZ + 8], nm[16], rundir[PATH_MAX];
    char dirs[2][PATH_MAX];
    bool netns = subnet >= 0;
    if (netns)
        snprintf(addr, sizeof(addr), "10.77.%d.%u", subnet, k);
    else
        snprintf(addr, sizeof(addr), "127.0.0.%u", k);
    snprintf(ns, sizeof(ns), "cairn-%s-%u", name, k);
    snprintf(veth, sizeof(veth), "cv-%s-%u", name, k);
    snprintf(nm, sizeof(nm), "n%u", k);
    snprintf(rundir, sizeof(rundir), "%s/%u", hx_jstr(st, "run_dir"), k);
    size_t ncg = hx_cg_dirs(cg, name, k, dirs);
    json_t *paths = json_array();
    for (size_t i = 0; i < ncg; i++)
        json_array_append_new(paths, json_string(dirs[i]));
    json_t *none = json_null(); /* loopback: no netns, veth, limits */
    /* one key and its value a line */
    /* clang-format off */
    return json_pack("{s:i, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o, "
                     "s:n}",
                     "id", (int)k,
                     "name", nm,
                     "address", addr,
                     "netns", netns ? json_string(ns) : none,
                     "veth", netns ? json_string(veth) : none,
                     "cgroup", ncg ? json_string(dirs[0]) : none,
                     "cgroup_paths", paths,
                     "cpus", netns ? json_real(o->cpus) : none,
                     "mem_bytes", netns ? json_integer((json_int_t)o->mem_bytes)
                                        : none,
                     "rundir", rundir,
                     "services", s_plan_services(services),
                     "key"); /* keys.c: made once planned */
    /* clang-format on */
}

/* ---- the cluster ------------------------------------------------------- */

/* {"mode", "keys_dir"}: the keys beside cluster.xml, in mode curve. */
static json_t *s_plan_security(const harness_opts_t *o, const char *dir)
{
    const char *mode = o->security ? o->security : HARNESS_DEFAULT_SECURITY;
    bool curve = strcmp(mode, "curve") == 0;
    char keys[PATH_MAX + 8];
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    return json_pack("{s:s, s:o}", "mode", mode, "keys_dir",
                     curve ? json_string(keys) : json_null());
}

static json_t *s_plan_head(const harness_opts_t *o, const char *name,
                           const char *run_base, const hx_site_t *site)
{
    char dir[PATH_MAX], cfg[PATH_MAX + 16], bridge[IFNAMSIZ + 8], net[32];
    snprintf(dir, sizeof(dir), "%s/%s", run_base, name);
    snprintf(cfg, sizeof(cfg), "%s/cluster.xml", dir);
    snprintf(bridge, sizeof(bridge), "cb-%s", name);
    snprintf(net, sizeof(net), "10.77.%d.0/24", site->subnet);
    json_t *cg = site->cg == HX_CG_V1   ? json_string("v1")
                 : site->cg == HX_CG_V2 ? json_string("v2")
                                        : json_null();
    /* one key and its value a line */
    /* clang-format off */
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:s, s:[]}",
                     "cluster", name,
                     "mode", site->netns ? "netns" : "loopback",
                     "cgroup", cg,
                     "security", s_plan_security(o, dir),
                     "config", cfg,
                     "run_dir", dir,
                     "bridge", site->netns ? json_string(bridge) : json_null(),
                     "subnet", site->netns ? json_string(net) : json_null(),
                     "phase", "creating",
                     "nodes");
    /* clang-format on */
}

json_t *hx_plan_state(const harness_opts_t *o, const char *name,
                      const char *run_base, const hx_site_t *site,
                      const json_t *services)
{
    json_t *st = s_plan_head(o, name, run_base, site);
    json_t *nodes = json_object_get(st, "nodes");
    for (unsigned k = 1; st && k <= o->nodes; k++)
        json_array_append_new(
            nodes, hx_plan_node(st, o, k, site->cg, site->subnet, services));
    if (!st || json_array_size(nodes) != o->nodes) {
        json_decref(st);
        return NULL;
    }
    if (!site->netns)
        json_object_set_new(
            st, "warning",
            json_string(
                !site->root
                    ? "not root: loopback mode; nodes share the host network "
                      "(127.0.0.<k>, same ports) and have no capacity limits"
                    : "loopback mode (--loopback): nodes share the host "
                      "network (127.0.0.<k>, same ports) and have no capacity "
                      "limits"));
    return st;
}

int hx_plan(const harness_opts_t *o, const char *name, const char *run_base,
            json_t **ret, cairn_error_t *err)
{
    hx_site_t site = { .root = geteuid() == 0, .cg = HX_CG_NONE, .subnet = -1 };
    json_t *services = NULL;
    int r;
    site.netns = !o->loopback && site.root;
    if (site.netns && ((r = hx_cg_detect(&site.cg, err)) < 0 ||
                       (r = hx_subnet_find(&site.subnet, err)) < 0))
        return r;
    if ((r = hx_find_services(&services, err)) < 0)
        return r;
    json_t *st = hx_plan_state(o, name, run_base, &site, services);
    json_decref(services);
    if (!st)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    *ret = st;
    return 0;
}

int hx_check_rundir(const char *rundir, const char *advice, cairn_error_t *err)
{
    size_t len = strlen(rundir) + strlen("/kernetd.pub.sock");
    if (len >= HX_SUN_PATH_MAX)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "run dir %s is too long for a unix socket path "
                               "(%zu >= %d bytes)%s",
                               rundir, len, HX_SUN_PATH_MAX, advice);
    return 0;
}

int hx_check_rundirs(const json_t *st, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        int r = hx_check_rundir(hx_jstr(node, "rundir"),
                                "; use a shorter run base", err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- a hotplugged node's address --------------------------------------- */

/* The default: the subnet's .<id>, or 127.0.0.<id>. */
static int s_default_address(const json_t *st, unsigned id, int c, char *out,
                             size_t size, cairn_error_t *err)
{
    unsigned max = c >= 0 ? 253u : 254u;
    if (id < 1 || id > max)
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "--address is required for node id %u: the default address "
            "%s.<id> of local cluster %s exists only for ids 1..%u",
            id, c >= 0 ? "10.77.<c>" : "127.0.0", hx_jstr(st, "cluster"), max);
    if (c >= 0)
        snprintf(out, size, "10.77.%d.%u", c, id);
    else
        snprintf(out, size, "127.0.0.%u", id);
    return 0;
}

int hx_node_address(const json_t *st, unsigned id, const char *given, char *out,
                    size_t size, cairn_error_t *err)
{
    const char *name = hx_jstr(st, "cluster");
    int c = hx_subnet_c(st);
    struct in_addr in;
    if (!given)
        return s_default_address(st, id, c, out, size, err);
    if (inet_pton(AF_INET, given, &in) != 1)
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "--address '%s' is not an IPv4 address; local cluster %s uses %s",
            given, name, c >= 0 ? hx_jstr(st, "subnet") : "127.0.0.0/8");
    uint32_t a = ntohl(in.s_addr), host = a & 0xff;
    if (c >= 0 && (a >> 8) != ((10u << 16) | (77u << 8) | (unsigned)c))
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "--address %s is outside local cluster %s's subnet %s", given, name,
            hx_jstr(st, "subnet"));
    if (c < 0 && (a >> 24) != 127)
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "--address %s is not a loopback address: local cluster %s runs in "
            "loopback mode (127.0.0.0/8)",
            given, name);
    if (host == 0 || host == 255 || (c >= 0 && host == 254))
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "--address %s is the %s address of local cluster %s's subnet",
            given,
            host == 0     ? "network"
            : host == 255 ? "broadcast"
                          : "bridge",
            name);
    snprintf(out, size, "%s", given);
    return 0;
}
