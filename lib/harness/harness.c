/* harness.c - the entry points of the local cluster harness (harness.h).
 *
 * Every call resolves the cluster (name checked, run base by
 * cairn_run_base, the rule the CLI's target resolution uses too) and the
 * operations that change the machine -- up, down, node add, remove, stop,
 * restart and the scheduler's swap -- run under one exclusive flock (files.c): a host-wide one as root,
 * because subnets and namespace names are host-wide, so two invocations
 * never pick the same subnet or sweep each other's half-built cluster.
 * status and the hotplug checks only read state.json and take no lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness-private.h"

void harness_opts_init(harness_opts_t *opts)
{
    *opts = (harness_opts_t){ .nodes = 1,
                              .cpus = HARNESS_DEFAULT_CPUS,
                              .mem_bytes = HARNESS_DEFAULT_MEM };
}

/* ---- the cluster a call is about --------------------------------------- */

/* Name and run base of a call, checked. */
static int s_target(const char *name, const char *run_base,
                    const char **ret_name, char *base, size_t size,
                    cairn_error_t *err)
{
    if (!name)
        name = HARNESS_DEFAULT_NAME;
    if (!hx_valid_name(name))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cluster name '%s' must match [a-z0-9]{1,8}",
                               name);
    *ret_name = name;
    return cairn_run_base(run_base, base, size, err);
}

/* The operations that run under the harness lock, and their arguments. */
typedef enum {
    S_OP_UP,
    S_OP_DOWN,
    S_OP_NODE_ADD,
    S_OP_NODE_REMOVE,
    S_OP_NODE_STOP,
    S_OP_NODE_RESTART,
    S_OP_SCHED_SWAP
} s_op_kind_t;
typedef struct s_op {
    s_op_kind_t kind;           /* which */
    const harness_opts_t *opts; /* S_OP_UP */
    const harness_node_t *node; /* S_OP_NODE_ADD */
    unsigned id;                /* S_OP_NODE_REMOVE, _STOP, _RESTART */
    int wait_ms;                /* the same; _RESTART, _SWAP: the start
                                   deadline */
    const char *policy;         /* S_OP_SCHED_SWAP (id 0: every node) */
} s_op_t;

/* After up and down: a run base up created goes once it is empty again
 * (down's result says so; a failed up leaves nothing behind either). */
static void s_tidy_base(const s_op_t *op, const char *base, bool fresh, int r,
                        json_t *res)
{
    if (op->kind == S_OP_UP && fresh && hx_exists(base))
        hx_base_mark(base, NULL); /* without it, the base just stays */
    bool removed = (op->kind == S_OP_DOWN || (op->kind == S_OP_UP && r < 0)) &&
                   hx_base_tidy(base);
    if (op->kind == S_OP_DOWN && res)
        json_object_set_new(res, "run_base_removed", json_boolean(removed));
}

/* Resolves the cluster, takes the lock, runs op, hands over its result. */
static int s_run_locked(const char *name, const char *run_base,
                        const s_op_t *op, json_t **ret_result,
                        cairn_error_t *err)
{
    char base[HX_BASE_MAX], dir[PATH_MAX + 16];
    json_t *res = NULL;
    int r = s_target(name, run_base, &name, base, sizeof(base), err);
    if (r < 0)
        return r;
    int lock = hx_lock(base, err);
    if (lock < 0)
        return lock;
    /* as root the lock is host-wide, so no other up makes the base
     * meanwhile; without root the lock file is in the base, which then
     * exists already and is never removed (it is never empty) */
    bool fresh = !hx_exists(base);
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    switch (op->kind) {
    case S_OP_UP: r = hx_up_locked(op->opts, name, base, &res, err); break;
    case S_OP_DOWN: r = hx_down_locked(name, dir, &res, err); break;
    case S_OP_NODE_ADD: r = hx_node_add_locked(dir, op->node, &res, err); break;
    case S_OP_NODE_REMOVE:
        r = hx_node_remove_locked(dir, op->id, op->wait_ms, &res, err);
        break;
    case S_OP_NODE_STOP:
        r = hx_node_stop_locked(dir, op->id, op->wait_ms, &res, err);
        break;
    case S_OP_NODE_RESTART:
        r = hx_node_restart_locked(dir, op->id, op->wait_ms, &res, err);
        break;
    case S_OP_SCHED_SWAP:
        r = hx_sched_swap_locked(dir, op->id, op->policy, op->wait_ms, &res,
                                 err);
        break;
    }
    s_tidy_base(op, base, fresh, r, res);
    close(lock);
    if (r == 0)
        *ret_result = res;
    return r;
}

/* <run-base>/<name> of a cluster the harness may have made, or -errno. */
static int s_cluster_dir(const char *name, const char *run_base, char *dir,
                         size_t size, cairn_error_t *err)
{
    char base[HX_BASE_MAX];
    int r = cairn_run_base(run_base, base, sizeof(base), err);
    if (r < 0)
        return r;
    snprintf(dir, size, "%s/%s", base, name);
    return 0;
}

/* ---- up, down, status -------------------------------------------------- */

int harness_up(const harness_opts_t *opts, json_t **ret_result,
               cairn_error_t *err)
{
    if (!opts || !ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "opts and ret_result are required");
    int r = hx_check_opts(opts, err);
    if (r < 0)
        return r;
    s_op_t op = { .kind = S_OP_UP, .opts = opts };
    return s_run_locked(opts->name, opts->run_base, &op, ret_result, err);
}

int harness_down(const char *name, const char *run_base, json_t **ret_result,
                 cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ret_result is required");
    s_op_t op = { .kind = S_OP_DOWN };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int harness_status(const char *name, const char *run_base, json_t **ret_result,
                   cairn_error_t *err)
{
    char base[HX_BASE_MAX], dir[PATH_MAX + 16];
    int r = s_target(name, run_base, &name, base, sizeof(base), err);
    if (r < 0)
        return r;
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    json_t *st = hx_state_load(dir);
    if (!st)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                               "no local cluster '%s' (no %s/state.json)", name,
                               dir);
    size_t total = 0, running = hx_state_refresh(st, &total);
    json_object_set_new(st, "services_running",
                        json_integer((json_int_t)running));
    json_object_set_new(st, "services_total", json_integer((json_int_t)total));
    *ret_result = st;
    return 0;
}

/* ---- hotplug ----------------------------------------------------------- */

bool harness_exists(const char *name, const char *run_base)
{
    char dir[PATH_MAX + 16], path[PATH_MAX + 48];
    if (!name || !hx_valid_name(name) ||
        s_cluster_dir(name, run_base, dir, sizeof(dir), NULL) < 0)
        return false;
    snprintf(path, sizeof(path), "%s/state.json", dir);
    return hx_exists(path);
}

int harness_node_prepare(const char *name, const char *run_base, unsigned id,
                         const char *address, char *out, size_t size,
                         cairn_error_t *err)
{
    char dir[PATH_MAX + 16];
    if (!name || !hx_valid_name(name))
        return 0; /* the harness never made a cluster of that name */
    int r = s_cluster_dir(name, run_base, dir, sizeof(dir), err);
    if (r < 0)
        return r;
    json_t *st = hx_state_load(dir);
    if (!st)
        return 0;
    r = hx_hotplug_check(st, id, address, out, size, err);
    json_decref(st);
    return r < 0 ? r : 1 + r;
}

int harness_node_add(const char *name, const char *run_base,
                     const harness_node_t *node, json_t **ret_result,
                     cairn_error_t *err)
{
    if (!node || !node->name || !node->appliance || !ret_result)
        return cairn_error_set(
            err, -EINVAL, CAIRN_INVALID_ARGUMENT,
            "node (with name and appliance) and ret_result are required");
    s_op_t op = { .kind = S_OP_NODE_ADD, .node = node };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int harness_node_remove(const char *name, const char *run_base, unsigned id,
                        int wait_ms, json_t **ret_result, cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ret_result is required");
    s_op_t op = { .kind = S_OP_NODE_REMOVE, .id = id, .wait_ms = wait_ms };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int harness_node_stop(const char *name, const char *run_base, unsigned id,
                      int wait_ms, json_t **ret_result, cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ret_result is required");
    s_op_t op = { .kind = S_OP_NODE_STOP, .id = id, .wait_ms = wait_ms };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int harness_node_restart(const char *name, const char *run_base, unsigned id,
                         int start_timeout_ms, json_t **ret_result,
                         cairn_error_t *err)
{
    if (!ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "ret_result is required");
    s_op_t op = { .kind = S_OP_NODE_RESTART,
                  .id = id,
                  .wait_ms = start_timeout_ms > 0 ? start_timeout_ms
                                                  : HARNESS_DEFAULT_START_MS };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

int harness_sched_swap(const char *name, const char *run_base, unsigned id,
                       const char *policy, int start_timeout_ms,
                       json_t **ret_result, cairn_error_t *err)
{
    if (!policy || !ret_result)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "policy and ret_result are required");
    s_op_t op = { .kind = S_OP_SCHED_SWAP,
                  .id = id,
                  .policy = policy,
                  .wait_ms = start_timeout_ms > 0 ? start_timeout_ms
                                                  : HARNESS_DEFAULT_START_MS };
    return s_run_locked(name, run_base, &op, ret_result, err);
}

/* ---- option values ----------------------------------------------------- */

/* The shift of a size suffix ("", K, M, G), -1 if it is not one. */
static int s_size_shift(const char *suffix)
{
    if (!*suffix)
        return 0;
    if (suffix[1])
        return -1;
    return strchr("kK", *suffix)   ? 10
           : strchr("mM", *suffix) ? 20
           : strchr("gG", *suffix) ? 30
                                   : -1;
}

int harness_parse_size(const char *option, const char *value, uint64_t *ret,
                       cairn_error_t *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v =
        value && *value != '-' ? strtoull(value, &end, 10) : 0;
    int shift = end ? s_size_shift(end) : -1;
    if (!value || !end || end == value || errno || shift < 0 ||
        v > (UINT64_MAX >> shift))
        return cairn_error_set(
            err, -EINVAL, CAIRN_USAGE,
            "%s: '%s' is not a size (bytes, or a number with K, M or G)",
            option, value ? value : "");
    *ret = (uint64_t)v << shift;
    return 0;
}

int harness_parse_cpus(const char *option, const char *value, double *ret,
                       cairn_error_t *err)
{
    char *end = NULL;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || !end || end == value || *end || errno ||
        !(v >= 0.01 && v <= 1024))
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                               "%s: '%s' is not a CPU count in 0.01..1024",
                               option, value ? value : "");
    *ret = v;
    return 0;
}
