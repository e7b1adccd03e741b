/* sweep.c - down: find everything of a cluster by name, then remove it.
 *
 * down does not depend on state.json: the inventory finds every namespace
 * cairn-<name>-<k>, link cv-<name>-<k> and cb-<name>, cgroup under
 * .../cairn/<name>, and every process in those namespaces or cgroups or
 * started with the cluster's cluster.xml (plus the pids of the state file
 * when it exists, checked against their start time). Removal goes in the
 * order that cannot fail on a dependency: processes (SIGTERM, then
 * SIGKILL), links and namespaces in one forced ip batch, cgroups leaves
 * first, and the cluster directory last (mounts inside detached first).
 * So an interrupted up, or a kill -9 of the CLI at any point, is undone by
 * the same code path.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness-private.h"

/* ---- the inventory ----------------------------------------------------- */

void hx_inventory_free(hx_inventory_t *inv)
{
    json_decref(inv->netns);
    json_decref(inv->links);
    json_decref(inv->cgroups);
    hx_pids_free(&inv->pids);
}

bool hx_inventory_empty(const hx_inventory_t *inv)
{
    return json_array_size(inv->netns) == 0 &&
           json_array_size(inv->links) == 0 &&
           json_array_size(inv->cgroups) == 0 && inv->pids.n == 0 && !inv->dir;
}

int hx_inventory(const char *name, const char *dir, const json_t *st,
                 hx_inventory_t *inv, cairn_error_t *err)
{
    char config[PATH_MAX + 16];
    *inv = (hx_inventory_t){ .netns = json_array(),
                             .links = json_array(),
                             .cgroups = json_array() };
    if (!inv->netns || !inv->links || !inv->cgroups) {
        hx_inventory_free(inv);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    snprintf(config, sizeof(config), "%s/cluster.xml", dir);
    hx_find_netns(name, inv->netns);
    hx_find_links(name, inv->links);
    hx_find_cgroups(name, inv->cgroups, &inv->pids);
    hx_find_procs(inv->netns, config, &inv->pids);
    hx_state_pids(st, &inv->pids);
    inv->dir = hx_exists(dir);
    return 0;
}

/* ---- removing ---------------------------------------------------------- */

/* Deletes links and namespaces in one batch (-force: all are tried). */
static int s_sweep_net(const hx_inventory_t *inv, cairn_error_t *err)
{
    hx_buf_t b = { 0 };
    size_t i;
    json_t *v;
    int r = 0;
    json_array_foreach(inv->links, i, v) {
        if (r == 0)
            r = hx_batch_del_link(&b, json_string_value(v));
    }
    json_array_foreach(inv->netns, i, v) {
        if (r == 0)
            r = hx_batch_del_netns(&b, json_string_value(v));
    }
    return hx_batch_run_host(&b, r, err);
}

static json_t *s_report(const char *name, const char *dir, bool removed,
                        size_t killed, const hx_inventory_t *inv)
{
    /* clang-format off */
    return json_pack("{s:s, s:b, s:O, s:O, s:O, s:i, s:s, s:b}",
                     "cluster", name,
                     "removed", removed,
                     "netns", inv->netns,
                     "links", inv->links,
                     "cgroups", inv->cgroups,
                     "processes_killed", (int)killed,
                     "run_dir", dir,
                     "run_dir_removed", inv->dir);
    /* clang-format on */
}

int hx_down_locked(const char *name, const char *dir, json_t **ret_result,
                   cairn_error_t *err)
{
    json_t *st = hx_state_load(dir);
    hx_inventory_t inv;
    int r = hx_inventory(name, dir, st, &inv, err);
    json_decref(st);
    if (r < 0)
        return r;
    bool removed = !hx_inventory_empty(&inv);
    size_t killed = hx_kill_all(&inv.pids);
    r = s_sweep_net(&inv, err);
    r = r ? r : hx_cg_sweep(inv.cgroups, err);
    if (r == 0 && hx_rm_rf(dir) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot remove %s: %m",
                            dir);
    if (r == 0 && ret_result)
        *ret_result = s_report(name, dir, removed, killed, &inv);
    hx_inventory_free(&inv);
    return r;
}
