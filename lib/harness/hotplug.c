/* hotplug.c - one more node in a running local cluster, or one less.
 *
 * Behind `cairn node add|remove` once clusterd has admitted (or let go)
 * the node. Adding records the node in state.json ("hotplug": true)
 * before creating anything -- so a crash mid-add is swept by down like
 * any node -- then, in security mode curve, makes its keypair, writes the
 * node (and its <key>) into cluster.xml and has every running daemon of
 * the other nodes reload it (reload.c) before anything of the node runs:
 * their CURVE servers must admit its key before it connects. Then it
 * makes its namespace, veth, cgroup (the limits of node 1) and run dir,
 * and starts its daemons with --node-id, --address, --name and
 * --appliance (the daemons accept a description that names the node at
 * that address). Leftovers of an earlier node with the same id whose
 * daemons are gone (it left) are removed first, so an id can be reused.
 * Removing stops the node's daemons together (SIGTERM to all, one
 * deadline, SIGKILL to the rest: waiting for them one by one, or for a
 * ghostd that never exits by itself, cost seconds), removes what the node
 * had, its key file too, drops it from cluster.xml and has the others
 * reload it, so its key is admitted no more.
 */
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-private.h"

/* ---- checks ------------------------------------------------------------ */

int hx_check_running(const json_t *st, cairn_error_t *err)
{
    const char *phase = hx_jstr(st, "phase");
    if (phase && strcmp(phase, "running") == 0)
        return 0;
    return cairn_error_set(err, -EBUSY, CAIRN_FAILED_PRECONDITION,
                           "local cluster %s is not running (phase '%s'); run "
                           "`cairn cluster up` first",
                           hx_jstr(st, "cluster"), phase ? phase : "?");
}

/* Refuses (already-exists) node id of the cluster of st while one of its
 * daemons runs, naming those that do not and how to start them again: a
 * half-crashed node is restarted, not added. 1 when none of them runs. */
static int s_check_id(const json_t *st, const json_t *node, cairn_error_t *err)
{
    json_t *running = json_array(), *gone = json_array(), *svc;
    unsigned id = (unsigned)json_integer_value(json_object_get(node, "id"));
    size_t j;
    int r = 1;
    if (!running || !gone)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    else
        hx_node_split(node, running, gone);
    if (r == 1 && (svc = json_array_get(running, 0)))
        r = cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                            "node %u of local cluster %s already runs (%s, "
                            "pid %d)",
                            id, hx_jstr(st, "cluster"), hx_jstr(svc, "name"),
                            (int)hx_svc_running(svc));
    json_array_foreach(r < 0 ? gone : NULL, j, svc) {
        cairn_error_append(err, 0, "%s%s",
                           j ? ", " : "; not running: ", hx_jstr(svc, "name"));
    }
    if (r < 0 && json_array_size(gone) > 0)
        cairn_error_append(err, 0, " (`cairn node restart %u` starts %s again)",
                           id, json_array_size(gone) > 1 ? "them" : "it");
    json_decref(running);
    json_decref(gone);
    return r;
}

int hx_hotplug_check(const json_t *st, unsigned id, const char *given,
                     char *out, size_t size, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    int r = hx_check_running(st, err), idle = 0;
    r = r ? r : hx_node_address(st, id, given, out, size, err);
    json_array_foreach(r < 0 ? NULL : json_object_get(st, "nodes"), i, node) {
        unsigned k = (unsigned)json_integer_value(json_object_get(node, "id"));
        if (k == id && (idle = s_check_id(st, node, err)) < 0)
            return idle;
        if (k != id && strcmp(hx_jstr(node, "address"), out) == 0)
            return cairn_error_set(
                err, -EEXIST, CAIRN_ALREADY_EXISTS,
                "address %s is already used by node %u of local cluster %s",
                out, k, hx_jstr(st, "cluster"));
    }
    return r < 0 ? r : idle;
}

/* ---- tearing one node down --------------------------------------------- */

/* How many of node's daemons were started (have a pid recorded). */
static size_t s_started(const json_t *node)
{
    size_t n = 0, j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc)
        n += json_integer_value(json_object_get(svc, "pid")) > 0;
    return n;
}

/* Stops node's daemons and whatever else runs in its namespace, all at
 * once (a clusterd on SIGTERM leaves gracefully, the others drain), with
 * one deadline of wait_ms for all; report gets how many exited by
 * themselves and how many had to be killed. A daemon gone before the
 * signal exited by itself too: a clusterd told it was removed stops on
 * its own, often before the signal comes. */
static void s_node_stop(const json_t *node, int wait_ms, json_t *report)
{
    hx_pids_t pids = { 0 };
    const char *ns = hx_jstr(node, "netns");
    hx_node_pids(node, &pids);
    size_t gone = s_started(node) - pids.n;
    json_t *nss = ns ? json_pack("[s]", ns) : NULL;
    if (nss)
        hx_find_procs(nss, NULL, &pids);
    json_decref(nss);
    size_t killed = hx_stop_all(&pids, wait_ms, NULL);
    /* Every process found either exited or was killed: one that exited on
     * its own between being found and being signalled (a removed clusterd
     * stops by itself) was signalled by nobody, and still exited. */
    json_object_set_new(report, "processes_exited",
                        json_integer((json_int_t)(gone + pids.n - killed)));
    hx_pids_free(&pids);
    json_object_set_new(report, "processes_killed",
                        json_integer((json_int_t)killed));
}

/* Deletes node's veth and namespace, those that exist. */
static int s_node_unlink(const json_t *node, cairn_error_t *err)
{
    const char *ns = hx_jstr(node, "netns"), *veth = hx_jstr(node, "veth");
    char path[PATH_MAX];
    hx_buf_t b = { 0 };
    int r = 0;
    if (veth && if_nametoindex(veth) > 0)
        r = hx_batch_del_link(&b, veth);
    snprintf(path, sizeof(path), HX_NETNS_DIR "/%s", ns ? ns : "");
    if (r == 0 && ns && hx_exists(path))
        r = hx_batch_del_netns(&b, ns);
    return hx_batch_run_host(&b, r, err);
}

/* Stops node's daemons and removes its link, namespace, cgroups and run
 * dir; report gets what was done. */
static int s_node_teardown(const json_t *node, int wait_ms, json_t *report,
                           cairn_error_t *err)
{
    size_t j;
    json_t *v;
    s_node_stop(node, wait_ms, report);
    int r = s_node_unlink(node, err);
    json_array_foreach(json_object_get(node, "cgroup_paths"), j, v) {
        if (r == 0)
            r = hx_cg_remove(json_string_value(v), err);
    }
    if (r == 0 && hx_rm_rf(hx_jstr(node, "rundir")) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot remove %s: %m",
                            hx_jstr(node, "rundir"));
    return r;
}

/* ---- adding ------------------------------------------------------------ */

/* The per-node limits a new node gets: those of the cluster's first node. */
static void s_limits(const json_t *st, harness_opts_t *o)
{
    const json_t *first = json_array_get(json_object_get(st, "nodes"), 0);
    harness_opts_init(o);
    if (json_is_number(json_object_get(first, "cpus")))
        o->cpus = json_number_value(json_object_get(first, "cpus"));
    if (json_is_integer(json_object_get(first, "mem_bytes")))
        o->mem_bytes =
            (uint64_t)json_integer_value(json_object_get(first, "mem_bytes"));
}

/* The plan of node spec, appended to st's nodes (st owns it). */
static int s_plan(json_t *st, const harness_node_t *spec, const char *address,
                  const harness_opts_t *o, json_t **ret_node,
                  cairn_error_t *err)
{
    bool netns = strcmp(hx_jstr(st, "mode"), "netns") == 0;
    json_t *services = NULL;
    int r = hx_find_services(&services, err);
    if (r < 0)
        return r;
    json_t *node = hx_plan_node(st, o, spec->id, hx_cg_of(st),
                                netns ? hx_subnet_c(st) : -1, services);
    json_decref(services);
    if (!node)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_object_set_new(node, "address", json_string(address));
    json_object_set_new(node, "name", json_string(spec->name));
    json_object_set_new(node, "appliance", json_string(spec->appliance));
    json_object_set_new(node, "hotplug", json_true());
    json_array_append_new(json_object_get(st, "nodes"), node);
    *ret_node = node;
    return 0;
}

int hx_wait_node(json_t *node, int timeout_ms, cairn_error_t *err)
{
    json_t *one = json_pack("[O]", node);
    int r =
        one ? hx_wait_ready(
                  one, timeout_ms > 0 ? timeout_ms : HARNESS_DEFAULT_START_MS,
                  err)
            : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_decref(one);
    return r;
}

/* cluster.xml written again from st, and reloaded by every running
 * daemon but node skip's; *ret_count (may be NULL): how many did. */
static int s_describe(json_t *st, unsigned skip, size_t *ret_count,
                      cairn_error_t *err)
{
    int r = hx_desc_rewrite(st, err);
    return r ? r : hx_reload(st, skip, HX_RELOAD_MS, ret_count, err);
}

/* Plans, records, creates and starts node spec in the cluster of st;
 * *ret_node is set once the node is in st, even when a later step fails.
 * *ret_reloaded: how many daemons reloaded cluster.xml with it. */
static int s_build(json_t *st, const harness_node_t *spec, const char *address,
                   json_t **ret_node, size_t *ret_reloaded, cairn_error_t *err)
{
    hx_cg_t cg = hx_cg_of(st);
    bool netns = strcmp(hx_jstr(st, "mode"), "netns") == 0;
    harness_opts_t o;
    json_t *node = NULL;
    s_limits(st, &o);
    int r = s_plan(st, spec, address, &o, &node, err);
    if (r < 0)
        return r;
    *ret_node = node;
    r = hx_check_rundir(hx_jstr(node, "rundir"), "", err);
    r = r ? r : hx_mkdir_p(hx_jstr(node, "rundir"), err);
    r = r ? r
          : hx_state_save(st, hx_jstr(st, "run_dir"), err); /* intent first */
    r = r ? r : hx_key_make(st, node, err);
    r = r ? r : hx_state_save(st, hx_jstr(st, "run_dir"), err);
    /* the others admit its key before any of its daemons connects */
    r = r ? r : s_describe(st, spec->id, ret_reloaded, err);
    r = r || !netns ? r : hx_net_add_node(st, node, err);
    r = r || cg == HX_CG_NONE
            ? r
            : hx_cg_create(cg, hx_jstr(st, "cluster"), spec->id, o.cpus,
                           o.mem_bytes, err);
    r = r ? r : hx_spawn_node(node, hx_jstr(st, "config"), err);
    int r2 = hx_state_save(st, hx_jstr(st, "run_dir"), r ? NULL : err);
    r = r ? r : r2;
    return r ? r : hx_wait_node(node, spec->start_timeout_ms, err);
}

/* The node's entry with "running" refreshed, a copy for the caller. */
static json_t *s_node_result(json_t *node)
{
    json_t *one = json_pack("{s:[O]}", "nodes", node);
    hx_state_refresh(one, NULL);
    json_decref(one);
    return json_deep_copy(node);
}

/* Undoes a node add that failed once node was in st: its namespace and
 * the rest, its state entry, its key, its place in cluster.xml. Best
 * effort: the first error is the one reported. */
static void s_unbuild(json_t *st, json_t *node, unsigned id, json_t *report)
{
    cairn_error_t later;
    s_node_teardown(node, 0, report, &later);
    hx_key_remove(node);
    hx_state_drop(st, id, &later);
    s_describe(st, id, NULL, &later);
}

int hx_node_add_locked(const char *dir, const harness_node_t *spec,
                       json_t **ret_result, cairn_error_t *err)
{
    char address[64];
    json_t *st = hx_state_load(dir), *node = NULL, *old;
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster at %s (no state.json)", dir);
    int r = hx_hotplug_check(st, spec->id, spec->address, address,
                             sizeof(address), err);
    r = r > 0 ? 0 : r; /* an idle node of that id: its leftovers go below */
    json_t *report = json_object();
    if (r == 0 && !report)
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    /* leftovers of an earlier life of this id (it left, its daemons are
     * gone) */
    if (r == 0 && (old = hx_state_node(st, spec->id, NULL)) &&
        (r = s_node_teardown(old, 0, report, err)) == 0)
        r = hx_state_drop(st, spec->id, err);
    size_t reloaded = 0;
    if (r == 0 && (r = s_build(st, spec, address, &node, &reloaded, err)) < 0 &&
        node)
        s_unbuild(st, node, spec->id, report);
    if (r == 0 && (!(*ret_result = s_node_result(node)) ||
                   json_object_set_new(*ret_result, "reloaded",
                                       json_integer((json_int_t)reloaded))))
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_decref(report);
    json_decref(st);
    return r;
}

/* ---- removing ---------------------------------------------------------- */

/* st of the cluster in dir and its node id (st owns it), or -ENOENT
 * (not-found) naming what is missing; *ret_st is the caller's. */
static int s_load_node(const char *dir, unsigned id, json_t **ret_st,
                       json_t **ret_node, cairn_error_t *err)
{
    json_t *st = hx_state_load(dir), *node;
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster at %s (no state.json)", dir);
    if (!(node = hx_state_node(st, id, NULL))) {
        int r = cairn_error_set(
            err, -ENOENT, CAIRN_NOT_FOUND,
            "node %u is not a node of local cluster %s (%s/state.json)", id,
            hx_jstr(st, "cluster"), dir);
        json_decref(st);
        return r;
    }
    *ret_st = st;
    *ret_node = node;
    return 0;
}

int hx_node_remove_locked(const char *dir, unsigned id, int wait_ms,
                          json_t **ret_result, cairn_error_t *err)
{
    json_t *st = NULL, *node = NULL;
    int r = s_load_node(dir, id, &st, &node, err);
    if (r < 0)
        return r;
    /* clang-format off */
    json_t *report = json_pack("{s:I, s:O, s:O, s:s}",
                               "id", (json_int_t)id,
                               "netns", json_object_get(node, "netns"),
                               "veth", json_object_get(node, "veth"),
                               "rundir", hx_jstr(node, "rundir"));
    /* clang-format on */
    r = report ? s_node_teardown(node, wait_ms, report, err)
               : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    if (r == 0)
        json_object_set_new(report, "key_removed",
                            json_boolean(hx_key_remove(node)));
    r = r ? r : hx_state_drop(st, id, err);
    /* its key, if any, is admitted no more */
    size_t reloaded = 0;
    r = r ? r : s_describe(st, id, &reloaded, err);
    if (r == 0)
        json_object_set_new(report, "reloaded",
                            json_integer((json_int_t)reloaded));
    json_decref(st);
    if (r < 0) {
        json_decref(report);
        return r;
    }
    *ret_result = report;
    return 0;
}

/* ---- stopping and restarting ------------------------------------------- */

int hx_node_stop_locked(const char *dir, unsigned id, int wait_ms,
                        json_t **ret_result, cairn_error_t *err)
{
    json_t *st = NULL, *node = NULL;
    int r = s_load_node(dir, id, &st, &node, err);
    if (r < 0)
        return r;
    json_t *report = json_pack("{s:I}", "id", (json_int_t)id);
    if (report)
        s_node_stop(node, wait_ms, report);
    json_decref(st);
    if (!report)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    *ret_result = report;
    return 0;
}

/* Refuses (failed-precondition) a node whose namespace or cgroups are
 * gone: a restart puts daemons back into them, it does not make them. */
static int s_node_intact(const json_t *node, cairn_error_t *err)
{
    char path[PATH_MAX];
    const char *ns = hx_jstr(node, "netns"), *missing = NULL;
    size_t j;
    json_t *cg;
    snprintf(path, sizeof(path), HX_NETNS_DIR "/%s", ns ? ns : "");
    if (ns && !hx_exists(path))
        missing = path;
    json_array_foreach(json_object_get(node, "cgroup_paths"), j, cg) {
        if (!missing && !hx_exists(json_string_value(cg)))
            missing = json_string_value(cg);
    }
    if (!missing)
        return 0;
    return cairn_error_set(
        err, -ENOENT, CAIRN_FAILED_PRECONDITION,
        "node %lld cannot be restarted: %s is gone; `cairn node remove %lld` "
        "and `cairn node add --id %lld` make it anew",
        json_integer_value(json_object_get(node, "id")), missing,
        json_integer_value(json_object_get(node, "id")),
        json_integer_value(json_object_get(node, "id")));
}

/* Starts the services `gone` of node again (their entries get the new
 * pids, st is saved) and waits until they serve. */
static int s_restart(json_t *st, json_t *node, json_t *gone, int timeout_ms,
                     cairn_error_t *err)
{
    /* a node entry holding only the services to start: the spawn and the
     * wait act on them alone, and the pids land in node's own entries */
    json_t *part = json_copy(node);
    if (!part || json_object_set(part, "services", gone) < 0) {
        json_decref(part);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    int r = hx_spawn_node(part, hx_jstr(st, "config"), err);
    int r2 = hx_state_save(st, hx_jstr(st, "run_dir"), r ? NULL : err);
    r = r ? r : r2;
    r = r ? r : hx_wait_node(part, timeout_ms, err);
    json_decref(part);
    return r;
}

/* {"id", "restarted", "already_running", "node"}, node refreshed. */
static json_t *s_restart_report(unsigned id, json_t *node,
                                const json_t *running, const json_t *gone)
{
    json_t *copy = s_node_result(node);
    /* clang-format off */
    return json_pack("{s:I, s:o*, s:o*, s:o*}",
                     "id", (json_int_t)id,
                     "restarted", hx_svc_names(gone),
                     "already_running", hx_svc_names(running),
                     "node", copy);
    /* clang-format on */
}

int hx_node_restart_locked(const char *dir, unsigned id, int timeout_ms,
                           json_t **ret_result, cairn_error_t *err)
{
    json_t *st = NULL, *node = NULL, *running = json_array(),
           *gone = json_array();
    int r = s_load_node(dir, id, &st, &node, err);
    if (r == 0 && (!running || !gone))
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = r ? r : hx_check_running(st, err);
    if (r == 0)
        hx_node_split(node, running, gone);
    if (r == 0 && json_array_size(gone) > 0)
        r = s_node_intact(node, err);
    if (r == 0 && json_array_size(gone) > 0)
        r = s_restart(st, node, gone, timeout_ms, err);
    if (r == 0 && !(*ret_result = s_restart_report(id, node, running, gone)))
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_decref(running);
    json_decref(gone);
    json_decref(st);
    return r;
}
