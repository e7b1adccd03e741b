/* netns.c - the network of a local cluster: subnet, namespaces, links.
 *
 * A cluster in namespace mode is one bridge cb-<name> holding
 * 10.77.<c>.254/24 and, per node k, a namespace cairn-<name>-<k> joined to
 * the bridge by a veth pair (cv-<name>-<k> on the host, eth0 inside, made
 * with its peer already in the namespace) with 10.77.<c>.k on eth0. c is
 * the first /24 of 10.77.0.0/16 that no interface of the host uses, so
 * two clusters, or a host network in that range, never collide.
 *
 * Creating is one ip batch for the host side, then one per namespace for
 * the inside, all run in parallel (ipbatch.c). Finding is by name alone
 * (/run/netns and the host's interfaces), so down needs no state.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-private.h"
#include "util/cleanup.h"

/* ---- the subnet -------------------------------------------------------- */

int hx_subnet_pick(const bool used[256], int *ret, cairn_error_t *err)
{
    for (int c = 0; c < 255; c++)
        if (!used[c]) {
            *ret = c;
            return 0;
        }
    return cairn_error_set(
        err, -EADDRINUSE, CAIRN_UNAVAILABLE,
        "every subnet 10.77.0-254.0/24 is in use by another interface");
}

int hx_subnet_find(int *ret, cairn_error_t *err)
{
    struct ifaddrs *ifa = NULL;
    bool used[256] = { false };
    if (getifaddrs(&ifa) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getifaddrs: %m");
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a =
            ntohl(((struct sockaddr_in *)p->ifa_addr)->sin_addr.s_addr);
        if ((a >> 16) == ((10u << 8) | 77u))
            used[(a >> 8) & 0xff] = true;
    }
    freeifaddrs(ifa);
    return hx_subnet_pick(used, ret, err);
}

int hx_subnet_c(const json_t *st)
{
    const char *subnet = hx_jstr(st, "subnet");
    return subnet && strncmp(subnet, "10.77.", 6) == 0 ? atoi(subnet + 6) : -1;
}

/* ---- creating ---------------------------------------------------------- */

int hx_batch_cluster(const json_t *st, hx_buf_t *b)
{
    const char *bridge = hx_jstr(st, "bridge");
    int r = hx_batch_bridge(b, bridge, hx_subnet_c(st));
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        if (r == 0)
            r = hx_batch_node_host(b, hx_jstr(node, "netns"),
                                   hx_jstr(node, "veth"), bridge);
    }
    return r;
}

/* The host side; a failure suggests loopback mode. */
static int s_net_host(const json_t *st, cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    hx_buf_t host = { 0 };
    int r = hx_batch_cluster(st, &host);
    text = host.s;
    if (r < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = hx_ip_run(NULL, "host", text, err);
    if (r < 0 && err) {
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof(err->message) - len,
                 " (cairn cluster up --loopback runs without namespaces)");
    }
    return r;
}

/* Every namespace's inside, one ip per namespace, all in parallel; the
 * first failure is reported, every ip is waited for. */
static int s_net_inside(const json_t *st, cairn_error_t *err)
{
    json_t *nodes = json_object_get(st, "nodes"), *node;
    size_t n = json_array_size(nodes), i;
    hx_buf_t *in = calloc(n, sizeof(*in));
    hx_ip_job_t *jobs = calloc(n, sizeof(*jobs));
    int r = in && jobs ? 0
                       : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL,
                                         "out of memory");
    json_array_foreach(nodes, i, node) {
        if (r < 0)
            break;
        if (hx_batch_node_inside(&in[i], hx_jstr(node, "address")) < 0) {
            r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
            break;
        }
        jobs[i] = (hx_ip_job_t){ .err_fd = -1,
                                 .where = hx_jstr(node, "netns"),
                                 .batch = in[i].s };
        r = hx_ip_start(jobs[i].where, &jobs[i], err);
    }
    for (i = 0; jobs && i < n; i++) {
        cairn_error_t later;
        if (jobs[i].pid > 0 &&
            hx_ip_finish(&jobs[i], r == 0 ? err : &later) < 0 && r == 0)
            r = -EIO;
        free(in[i].s);
    }
    free(in);
    free(jobs);
    return r;
}

int hx_net_create(const json_t *st, cairn_error_t *err)
{
    int r = s_net_host(st, err);
    return r < 0 ? r : s_net_inside(st, err);
}

int hx_net_add_node(const json_t *st, const json_t *node, cairn_error_t *err)
{
    const char *ns = hx_jstr(node, "netns");
    hx_buf_t host = { 0 }, in = { 0 };
    int r = hx_batch_node_host(&host, ns, hx_jstr(node, "veth"),
                               hx_jstr(st, "bridge"));
    r = r ? r : hx_batch_node_inside(&in, hx_jstr(node, "address"));
    if (r < 0)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = r ? r : hx_ip_run(NULL, "host", host.s, err);
    r = r ? r : hx_ip_run(ns, ns, in.s, err);
    free(host.s);
    free(in.s);
    return r;
}

/* ---- finding ----------------------------------------------------------- */

void hx_find_netns(const char *name, json_t *out)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "cairn-%s-", name);
    DIR *d = opendir(HX_NETNS_DIR);
    for (struct dirent *e; d && (e = readdir(d));)
        if (hx_match_k(e->d_name, prefix))
            json_array_append_new(out, json_string(e->d_name));
    if (d)
        closedir(d);
    hx_sort_names(out);
}

void hx_find_links(const char *name, json_t *out)
{
    char prefix[32], bridge[32];
    snprintf(prefix, sizeof(prefix), "cv-%s-", name);
    snprintf(bridge, sizeof(bridge), "cb-%s", name);
    struct if_nameindex *ifs = if_nameindex();
    bool has_bridge = false;
    for (struct if_nameindex *p = ifs; p && p->if_index; p++) {
        if (hx_match_k(p->if_name, prefix))
            json_array_append_new(out, json_string(p->if_name));
        has_bridge |= strcmp(p->if_name, bridge) == 0;
    }
    hx_sort_names(out);
    if (has_bridge)
        json_array_append_new(out, json_string(bridge));
    if (ifs)
        if_freenameindex(ifs);
}
