/* harness/harness.h - a whole Cairn cluster on one machine
 * (docs/architecture.md §2).
 *
 * The local cluster harness behind `cairn cluster up|down|status`, the
 * provisioning half of `cairn node add|remove|leave` and `cairn node
 * restart`, and `cairn sched swap` on a local cluster. harness_up() builds N
 * nodes: as root, a network namespace per node (cairn-<name>-<k>) on a
 * veth pair (cv-<name>-<k> on the host, eth0 inside) to a bridge
 * (cb-<name>, 10.77.<c>.254/24, node k is 10.77.<c>.k), a cgroup per node
 * with a CPU quota and a memory limit (v1 or v2), a run directory per
 * node, a cluster description written through libcairn's builder, a
 * CURVE keypair per node (security mode curve, the default: the secret in
 * <cluster dir>/keys/node-<k>.key, the public key in the description), and
 * every daemon of every node as its own process. Without root it falls
 * back to loopback (node k is 127.0.0.<k>, same ports, no limits) and
 * says so. docs/local-cluster.md documents the behaviour and the JSON.
 *
 * Crash safety: state.json in the cluster directory is written (temp +
 * rename) before each step that creates something, so down() can undo a
 * partial up(); down() also sweeps by name pattern (namespaces, links,
 * cgroups, processes whose netns, cgroup or command line belong to the
 * cluster), so it works with a missing or truncated state file.
 *
 * Ownership and errors: strings passed in are borrowed for the duration
 * of the call. Every call that can fail returns 0 with *ret_result a new
 * JSON object the caller owns (json_decref), or a negative errno with err
 * filled and *ret_result untouched. Nothing is printed: the caller prints.
 * The library keeps no state between calls; it reads $CAIRN_RUN_BASE (the
 * run base rule, cairn_run_base()), $CAIRN_SBIN (where daemons are) and
 * $CAIRN_CLUSTER_TEST_PAUSE (a test hook), and may fork and wait for its
 * own children (ip, the daemons, a traffic probe).
 */
#ifndef CAIRN_HARNESS_H
#define CAIRN_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"

#define HARNESS_DEFAULT_NAME     "cairn"
#define HARNESS_DEFAULT_CPUS     0.5
#define HARNESS_DEFAULT_MEM      (512ull << 20)
#define HARNESS_MAX_NODES        253   /* .254 is the bridge */
#define HARNESS_DEFAULT_START_MS 30000 /* deadline for every socket: a loaded
                                        * machine or a sanitizer build starts
                                        * daemons in seconds; waiting ends as
                                        * soon as the last socket exists */
#define HARNESS_DEFAULT_SECURITY "curve" /* secure by default */

/* What up() builds. Strings are borrowed for the duration of the call. */
typedef struct harness_opts {
    const char *name;     /* [a-z0-9]{1,8}; NULL = "cairn" */
    const char *run_base; /* NULL = the run base rule (cairn_run_base) */
    unsigned nodes;       /* 1..HARNESS_MAX_NODES */
    double cpus;          /* CPU quota per node, 0.01..1024 */
    uint64_t mem_bytes;   /* memory limit per node, >= 16 MiB */
    bool loopback;        /* loopback mode even as root */
    const char *security; /* "curve" or "none"; NULL = "curve" */
    int start_timeout_ms; /* <= 0: HARNESS_DEFAULT_START_MS */
    bool nodes_given;     /* nodes was asked for: a running cluster of
                           * another size is an error, not reported */
    bool cpus_given;      /* the same for cpus */
    bool mem_given;       /* the same for mem_bytes */
    bool security_given;  /* the same for security */
} harness_opts_t;

/* Fills opts with the defaults (name NULL, 1 node, 0.5 CPU, 512 MiB,
 * security NULL: curve, nothing "given"). */
void harness_opts_init(harness_opts_t *opts);

/* Builds the cluster and waits until every daemon serves its ipc socket.
 * A running cluster of that name is reported ("already_running": true)
 * and left alone -- unless it differs from what was given (nodes_given,
 * cpus_given, mem_given; loopback asked of a netns cluster): then -EEXIST
 * (already-exists), the message naming the running shape and the asked
 * one; a stale one (daemons gone, interrupted up) is removed
 * first ("recovered_stale": true). On any failure everything made is
 * undone. */
int harness_up(const harness_opts_t *opts, json_t **ret_result,
               cairn_error_t *err);

/* Removes every namespace, link, cgroup, process and file of cluster
 * `name` (NULL = "cairn") under run_base (NULL = default). A cluster with
 * nothing left is not an error: the result says "removed": false. */
int harness_down(const char *name, const char *run_base, json_t **ret_result,
                 cairn_error_t *err);

/* The state of cluster `name`: the up() object with each daemon's
 * "running" refreshed. -ENOENT (code not-found) if it has no state file. */
int harness_status(const char *name, const char *run_base, json_t **ret_result,
                   cairn_error_t *err);

/* Hotplug, behind `cairn node add|remove|leave|restart` on a cluster made
 * by up(): one more node, or one less, in a running cluster; a node's
 * daemons stopped, or those gone started again. */
typedef struct harness_node {
    unsigned id; /* 1..255 */
    const char
        *address;     /* NULL = the subnet's .<id> (127.0.0.<id> in loopback) */
    const char *name; /* as clusterd admitted it */
    const char *appliance; /* as clusterd admitted it */
    int start_timeout_ms;  /* <= 0: HARNESS_DEFAULT_START_MS */
} harness_node_t;

/* True if cluster `name` under run_base (NULL = default) was made by
 * up(): its state.json exists. */
bool harness_exists(const char *name, const char *run_base);

/* Whether cluster `name` under run_base (NULL = default) was made by up()
 * (its state.json exists): 0 no (nothing checked), 1 yes with the address
 * node `id` will get in out (`address` checked: IPv4 inside the cluster's
 * subnet, not its network, bridge or broadcast address -- else code
 * usage; the default is the subnet's .<id>). Also refuses
 * (already-exists) an id whose daemons run and an address another node of
 * the cluster holds, and (failed-precondition) a cluster that is not
 * running. 2 instead of 1 when node `id` is provisioned but none of its
 * daemons runs: a node that left (clusterd admits it again, and add
 * reuses the slot) or that crashed (clusterd refuses it: `node restart`
 * is the way back). The already-exists message of an id whose daemons
 * partly run names those that do not and says `cairn node restart`. */
int harness_node_prepare(const char *name, const char *run_base, unsigned id,
                         const char *address, char *out, size_t size,
                         cairn_error_t *err);

/* Provisions node spec in the running cluster: records it in state.json
 * ("hotplug": true) before creating anything; in security mode curve
 * makes its keypair; writes it (and its <key>) into cluster.xml and has
 * every running daemon of the other nodes reload it (SIGHUP, then each
 * one's `reloaded` log line awaited), so their CURVE servers admit the new
 * key before it connects; then creates its netns, veth on the bridge,
 * cgroup (the first node's limits) and run dir, and starts each daemon
 * with `--config <cluster.xml> --node-id N --address A --name NAME
 * --appliance APP`; returns when every daemon serves its ipc socket, with
 * *ret_result the node's state entry plus "reloaded" (how many daemons
 * reloaded the description). Leftovers of an earlier node with that id
 * whose daemons are gone are removed first. On failure what was made for
 * the node is undone, cluster.xml included. down() removes a hotplugged
 * node like any other, with or without state. */
int harness_node_add(const char *name, const char *run_base,
                     const harness_node_t *spec, json_t **ret_result,
                     cairn_error_t *err);

/* Stops node id's daemons -- SIGTERM to all at once, up to wait_ms for
 * all together, SIGKILL to the rest -- removes its veth, netns, cgroups,
 * run dir and key file, drops it from state.json and cluster.xml (node
 * and <key>) and has the other nodes' daemons reload the description, so
 * its key is admitted no more. *ret_result: {"id", "netns", "veth",
 * "rundir", "processes_exited", "processes_killed", "key_removed",
 * "reloaded"}. -ENOENT (not-found) if the cluster has no such node. */
int harness_node_remove(const char *name, const char *run_base, unsigned id,
                        int wait_ms, json_t **ret_result, cairn_error_t *err);

/* Stops node id's daemons like harness_node_remove (SIGTERM to all, one
 * deadline wait_ms, SIGKILL to the rest) but keeps the node: namespace,
 * veth, cgroups, run dir and state entry stay, for `node add --id`,
 * `node restart`, `node remove` or down. Behind `cairn node leave` on a
 * local cluster. *ret_result: {"id", "processes_exited",
 * "processes_killed"}. -ENOENT (not-found) if the cluster has no such
 * node. */
int harness_node_stop(const char *name, const char *run_base, unsigned id,
                      int wait_ms, json_t **ret_result, cairn_error_t *err);

/* Starts again, in node id's existing namespace and cgroups, with the
 * same command line and run dir, exactly those of its daemons that are
 * not running, and waits up to start_timeout_ms (<= 0: the default) until
 * they serve their ipc socket; their new pids go to state.json.
 * *ret_result: {"id", "restarted": [service names], "already_running":
 * [service names], "node": its state entry}; all running is a no-op
 * ("restarted": []). -ENOENT (not-found) for no such cluster or node,
 * failed-precondition when the cluster is not running or the node's
 * namespace or cgroup is gone, unavailable/timeout as up() when a daemon
 * dies or does not serve in time (those that started keep running). */
int harness_node_restart(const char *name, const char *run_base, unsigned id,
                         int start_timeout_ms, json_t **ret_result,
                         cairn_error_t *err);

/* Swaps the scheduler policy of node id (0: every node) for `policy`
 * (docs/scheduler.md, "Swapping a policy"): its service "sched" is
 * stopped and the program sched-<policy> started in its place, in the
 * node's namespace and cgroups, recorded in state.json (the entry's
 * "policy" and "binary": a node restart starts that one), and awaited
 * until it serves (start_timeout_ms, <= 0: the default). Nothing is
 * touched unless the policy is installed (else not-found, naming the
 * installed ones), the cluster runs and every node asked has a "sched"
 * (else failed-precondition); a node whose new policy does not come up
 * gets its previous one back, and the error says both. *ret_result:
 * {"policy", "nodes": [{"id", "policy", "previous", "pid",
 * "stopped_pid", "swap_ms"}]}. */
int harness_sched_swap(const char *name, const char *run_base, unsigned id,
                       const char *policy, int start_timeout_ms,
                       json_t **ret_result, cairn_error_t *err);

/* Parses "512M", "1G", "65536", "64K" (binary multiples) into bytes.
 * 0 or -EINVAL (code usage, message naming `option`). */
int harness_parse_size(const char *option, const char *value, uint64_t *ret,
                       cairn_error_t *err);

/* Parses a CPU count such as "0.5" or "2" in [0.01, 1024]. 0 or -EINVAL
 * (code usage). */
int harness_parse_cpus(const char *option, const char *value, double *ret,
                       cairn_error_t *err);

#endif
