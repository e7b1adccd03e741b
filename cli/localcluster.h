/* localcluster.h - a whole Cairn cluster on one machine (DESIGN §2).
 *
 * Behind `cairn cluster up|down|status`. up() builds N nodes: as root, a
 * network namespace per node (cairn-<name>-<k>) on a veth pair (cv-<name>-<k>
 * on the host, eth0 inside) to a bridge (cb-<name>, 10.77.<c>.254/24, node k
 * is 10.77.<c>.k), a cgroup per node with a CPU quota and a memory limit
 * (v1 or v2), a run directory per node, a generated cluster description, and
 * every daemon of every node as its own process. Without root it falls back
 * to loopback (node k is 127.0.0.<k>, same ports, no limits) and says so.
 *
 * Crash safety: state.json in the cluster directory is written (temp +
 * rename) before each step that creates something, so down() can undo a
 * partial up(); down() also sweeps by name pattern (namespaces, links,
 * cgroups, processes whose netns, cgroup or command line belong to the
 * cluster), so it works with a missing or truncated state file.
 *
 * Every call returns 0 with *ret_result a new JSON object the caller owns,
 * or a negative errno with err filled and *ret_result untouched. The JSON is
 * documented in docs/local-cluster.md. Nothing is printed.
 */
#ifndef CAIRN_CLI_LOCALCLUSTER_H
#define CAIRN_CLI_LOCALCLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "cairn/error.h"

#define LOCALCLUSTER_DEFAULT_NAME "cairn"
#define LOCALCLUSTER_DEFAULT_CPUS 0.5
#define LOCALCLUSTER_DEFAULT_MEM (512ull << 20)
#define LOCALCLUSTER_MAX_NODES 253          /* .254 is the bridge */
#define LOCALCLUSTER_DEFAULT_START_MS 10000 /* deadline for every socket */

/* What up() builds. Strings are borrowed for the duration of the call. */
typedef struct localcluster_opts {
    const char *name;       /* [a-z0-9]{1,8}; NULL = "cairn" */
    const char *run_base;   /* NULL = $CAIRN_RUN_BASE, /run/cairn or $XDG_RUNTIME_DIR/cairn */
    unsigned nodes;         /* 1..LOCALCLUSTER_MAX_NODES */
    double cpus;            /* CPU quota per node, 0.01..1024 */
    uint64_t mem_bytes;     /* memory limit per node, >= 16 MiB */
    bool loopback;          /* force loopback mode even as root */
    int start_timeout_ms;   /* <= 0: LOCALCLUSTER_DEFAULT_START_MS */
} localcluster_opts_t;

/* Fills opts with the defaults (name NULL, 1 node, 0.5 CPU, 512 MiB). */
void localcluster_opts_init(localcluster_opts_t *opts);

/* Builds the cluster and waits until every daemon serves its ipc socket.
 * A running cluster of that name is reported ("already_running": true) and
 * left alone; a stale one (daemons gone, interrupted up) is removed first
 * ("recovered_stale": true). On any failure everything made is undone. */
int localcluster_up(const localcluster_opts_t *opts, json_t **ret_result,
                    cairn_error_t *err);

/* Removes every namespace, link, cgroup, process and file of cluster `name`
 * (NULL = "cairn") under run_base (NULL = default). A cluster with nothing
 * left is not an error: the result says "removed": false. */
int localcluster_down(const char *name, const char *run_base,
                      json_t **ret_result, cairn_error_t *err);

/* The state of cluster `name`: the up() object with each daemon's
 * "running" refreshed. -ENOENT (code not-found) if it has no state file. */
int localcluster_status(const char *name, const char *run_base,
                        json_t **ret_result, cairn_error_t *err);

/* Hotplug, behind `cairn node add|remove` (cmd-node.c) on a cluster made by
 * up(): one more node, or one less, in a running cluster. */
typedef struct localcluster_node {
    unsigned id;            /* 1..255 */
    const char *address;    /* NULL = the subnet's .<id> (127.0.0.<id> in loopback) */
    const char *name;       /* as clusterd admitted it */
    const char *appliance;  /* as clusterd admitted it */
    int start_timeout_ms;   /* <= 0: LOCALCLUSTER_DEFAULT_START_MS */
} localcluster_node_t;

/* True if cluster `name` under run_base (NULL = default) was made by up():
 * its state.json exists. */
bool localcluster_exists(const char *name, const char *run_base);

/* Whether cluster `name` under run_base (NULL = default) was made by up()
 * (its state.json exists): 0 no (nothing checked), 1 yes with the address
 * node `id` will get in out (`address` checked: IPv4 inside the cluster's
 * subnet, not its network, bridge or broadcast address -- else code usage;
 * the default is the subnet's .<id>). Also refuses (already-exists) an id
 * whose daemons run and an address another node of the cluster holds, and
 * (failed-precondition) a cluster that is not running. */
int localcluster_node_prepare(const char *name, const char *run_base, unsigned id,
                              const char *address, char *out, size_t size,
                              cairn_error_t *err);

/* Provisions node spec in the running cluster: records it in state.json
 * ("hotplug": true) before creating anything, then its netns, veth on the
 * bridge, cgroup (the first node's limits) and run dir, and starts each
 * daemon with `--config <cluster.xml> --node-id N --address A --name NAME
 * --appliance APP`; returns when every daemon serves its ipc socket, with
 * *ret_result the node's state entry. Leftovers of an earlier node with
 * that id whose daemons are gone are removed first. On failure what was
 * made for the node is undone. `cluster down` removes a hotplugged node like
 * any other, with or without state. */
int localcluster_node_add(const char *name, const char *run_base,
                          const localcluster_node_t *spec, json_t **ret_result,
                          cairn_error_t *err);

/* Waits up to wait_ms for node id's daemons to exit by themselves, stops
 * the rest (SIGTERM, then SIGKILL), removes its veth, netns, cgroups and run
 * dir and drops it from state.json. *ret_result: {"id","netns","veth",
 * "rundir","processes_exited","processes_killed"}. -ENOENT (not-found) if
 * the cluster has no such node. */
int localcluster_node_remove(const char *name, const char *run_base, unsigned id,
                             int wait_ms, json_t **ret_result, cairn_error_t *err);

/* Parses "512M", "1G", "65536", "64K" (binary multiples) into bytes.
 * 0 or -EINVAL (code usage, message naming `option`). */
int localcluster_parse_size(const char *option, const char *value,
                            uint64_t *ret, cairn_error_t *err);

/* Parses a CPU count such as "0.5" or "2" in [0.01, 1024]. 0 or -EINVAL. */
int localcluster_parse_cpus(const char *option, const char *value,
                            double *ret, cairn_error_t *err);

/* The `cairn cluster up|down|status` handlers (cmd-cluster.c), shaped as
 * cli_cmd_fn (cli.h), with their option tables for the command table. */
struct cli_ctx;
struct cairn_option;
extern const struct cairn_option cli_cluster_up_options[];
extern const struct cairn_option cli_cluster_name_options[];
int cli_cmd_cluster_up(struct cli_ctx *ctx, int argc, char **argv,
                       json_t **ret_result, cairn_error_t *err);
int cli_cmd_cluster_down(struct cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err);
int cli_cmd_cluster_status(struct cli_ctx *ctx, int argc, char **argv,
                           json_t **ret_result, cairn_error_t *err);

#endif
