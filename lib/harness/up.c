/* up.c - up: plan, record, create, start, wait, check.
 *
 * The order is what makes an interrupted up harmless: the plan is written
 * to state.json (and cluster.xml written) before anything is created, so
 * whatever exists afterwards is named in it or findable by name (sweep.c);
 * then the network, the cgroups, the daemons (pids recorded right after
 * the fork), the wait for every socket, the traffic check. On any failure
 * down's own code path undoes what was made, and the first error is the
 * one reported. A cluster that already runs is reported and left alone
 * -- or refused, when what was given (size, limits, mode) differs from
 * what runs; leftovers of one that does not are removed first.
 *
 * Test hook: CAIRN_CLUSTER_TEST_PAUSE=<phase>:<ms> sleeps after a phase
 * (plan, net, cgroups, spawn) so a test can kill -9 the CLI there.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness-private.h"
#include "util/clock.h"

/* ---- building ---------------------------------------------------------- */

static void s_test_pause(const char *phase)
{
    const char *v = getenv("CAIRN_CLUSTER_TEST_PAUSE");
    size_t n = strlen(phase);
    if (v && strncmp(v, phase, n) == 0 && v[n] == ':')
        hx_sleep_ms(atoi(v + n + 1));
}

/* The directories, the nodes' keys (mode curve) and the intent:
 * state.json, then cluster.xml. */
static int s_record(json_t *st, const char *run_base, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    int r = hx_mkdir_p(hx_jstr(st, "run_dir"), err);
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        if (r == 0)
            r = hx_mkdir_p(hx_jstr(node, "rundir"), err);
    }
    r = r ? r : hx_keys_make_all(st, err);
    r = r ? r : hx_state_save(st, hx_jstr(st, "run_dir"), err);
    return r ? r : hx_desc_write(st, run_base, err);
}

/* Sets the phase and saves; a save failing after an earlier failure does
 * not replace its error. */
static int s_phase(json_t *st, const char *phase, int r, cairn_error_t *err)
{
    json_object_set_new(st, "phase", json_string(phase));
    int r2 = hx_state_save(st, hx_jstr(st, "run_dir"), r ? NULL : err);
    return r ? r : r2;
}

/* Creates everything of the planned st and starts the daemons. */
static int s_build(json_t *st, const harness_opts_t *o, const char *run_base,
                   cairn_error_t *err)
{
    bool netns = strcmp(hx_jstr(st, "mode"), "netns") == 0;
    int timeout = o->start_timeout_ms > 0 ? o->start_timeout_ms
                                          : HARNESS_DEFAULT_START_MS;
    int r = s_record(st, run_base, err);
    s_test_pause("plan");
    r = r || !netns ? r : hx_net_create(st, err);
    s_test_pause("net");
    r = r || !netns ? r : hx_cg_create_all(st, o, err);
    s_test_pause("cgroups");
    r = r ? r : hx_spawn_all(st, err);
    r = s_phase(st, "starting", r, err);
    s_test_pause("spawn");
    r = r ? r : hx_wait_ready(json_object_get(st, "nodes"), timeout, err);
    if (r == 0 && netns)
        hx_check_traffic(st);
    json_object_set_new(st, "phase", json_string("running"));
    return r ? r : hx_state_save(st, hx_jstr(st, "run_dir"), err);
}

int hx_check_opts(const harness_opts_t *o, cairn_error_t *err)
{
    if (o->nodes < 1 || o->nodes > HARNESS_MAX_NODES)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--nodes must be 1..%d, got %u",
                               HARNESS_MAX_NODES, o->nodes);
    if (!(o->cpus >= 0.01 && o->cpus <= 1024))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--cpus must be 0.01..1024, got %g", o->cpus);
    if (o->mem_bytes < HX_MIN_MEM)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--mem must be at least 16M, got %llu bytes",
                               (unsigned long long)o->mem_bytes);
    if (o->security && strcmp(o->security, "curve") != 0 &&
        strcmp(o->security, "none") != 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "--security must be curve or none, got '%s'",
                               o->security);
    return 0;
}

/* ---- an existing cluster of that name ---------------------------------- */

/* st when it is the state of a cluster that runs (phase running, a
 * daemon alive), with "already_running" set; NULL otherwise. */
static json_t *s_running(json_t *st)
{
    const char *phase = hx_jstr(st, "phase");
    size_t total = 0;
    if (st && strcmp(phase ? phase : "", "running") == 0 &&
        hx_state_refresh(st, &total) > 0) {
        json_object_set_new(st, "already_running", json_true());
        return st;
    }
    return NULL;
}

/* What to do about an existing cluster of that name: 1 = it runs (result
 * set), 0 = nothing there or stale leftovers removed (*ret_stale). */
static int s_existing(const char *name, const char *dir, json_t **ret_result,
                      bool *ret_stale, cairn_error_t *err)
{
    json_t *st = hx_state_load(dir);
    if ((*ret_result = s_running(st)))
        return 1;
    hx_inventory_t inv;
    int r = hx_inventory(name, dir, st, &inv, err);
    bool foreign =
        !st && r == 0 && inv.pids.n > 0 && json_array_size(inv.netns) > 0;
    bool stale = r == 0 && !hx_inventory_empty(&inv);
    json_decref(st);
    if (r < 0)
        return r;
    hx_inventory_free(&inv);
    if (foreign)
        return cairn_error_set(
            err, -EEXIST, CAIRN_ALREADY_EXISTS,
            "namespaces cairn-%s-* exist with running processes but "
            "%s/state.json "
            "does not: a cluster '%s' under another run base? bring it down "
            "there, or run `cairn cluster down --name %s` with this one",
            name, dir, name, name);
    *ret_stale = stale;
    return stale ? hx_down_locked(name, dir, NULL, err) : 0;
}

/* The "cannot change a running cluster" error: what runs, what was asked. */
static int s_shape_error(const json_t *st, const char *what, cairn_error_t *err)
{
    const char *name = hx_jstr(st, "cluster");
    return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                           "local cluster %s already runs %s; a running "
                           "cluster is not changed: `cairn cluster down "
                           "--name %s` first, or leave the option out",
                           name, what, name);
}

int hx_check_shape(const json_t *st, const harness_opts_t *o,
                   cairn_error_t *err)
{
    const json_t *first = json_array_get(json_object_get(st, "nodes"), 0);
    const json_t *cpus = json_object_get(first, "cpus");
    const json_t *mem = json_object_get(first, "mem_bytes");
    size_t n = json_array_size(json_object_get(st, "nodes"));
    const char *mode = hx_jstr(st, "mode");
    const char *security = hx_curve(st) ? "curve" : "none";
    char what[160];
    if (o->nodes_given && n != o->nodes)
        snprintf(what, sizeof(what), "with %zu node(s), --nodes %u asked", n,
                 o->nodes);
    else if (o->cpus_given && json_is_number(cpus) &&
             fabs(json_number_value(cpus) - o->cpus) > 1e-9)
        snprintf(what, sizeof(what), "with --cpus %g per node, --cpus %g asked",
                 json_number_value(cpus), o->cpus);
    else if (o->mem_given && json_is_integer(mem) &&
             (uint64_t)json_integer_value(mem) != o->mem_bytes)
        snprintf(what, sizeof(what),
                 "with --mem %llu bytes per node, --mem %llu asked",
                 (unsigned long long)json_integer_value(mem),
                 (unsigned long long)o->mem_bytes);
    else if (o->loopback && strcmp(mode ? mode : "", "loopback") != 0)
        snprintf(what, sizeof(what), "in %s mode, --loopback asked",
                 mode ? mode : "?");
    else if (o->security_given && o->security &&
             strcmp(o->security, security) != 0)
        snprintf(what, sizeof(what), "in security mode %s, --security %s "
                 "asked", security, o->security);
    else
        return 0;
    return s_shape_error(st, what, err);
}

/* ---- up ---------------------------------------------------------------- */

static void s_finish(json_t *st, bool already, bool stale, uint64_t t0)
{
    if (!already)
        json_object_set_new(st, "already_running", json_false());
    json_object_set_new(st, "recovered_stale", json_boolean(stale));
    json_object_set_new(st, "elapsed_ms",
                        json_integer((json_int_t)(cairn_now_ms() - t0)));
}

/* The running cluster of st as the result, if it is what o asks for. */
static int s_already(json_t *st, const harness_opts_t *o, uint64_t t0,
                     json_t **ret_result, cairn_error_t *err)
{
    int r = hx_check_shape(st, o, err);
    if (r < 0) {
        json_decref(st);
        return r;
    }
    s_finish(st, true, false, t0);
    *ret_result = st;
    return 0;
}

int hx_up_locked(const harness_opts_t *o, const char *name,
                 const char *run_base, json_t **ret_result, cairn_error_t *err)
{
    uint64_t t0 = cairn_now_ms();
    char dir[PATH_MAX];
    bool stale = false;
    json_t *st = NULL;
    snprintf(dir, sizeof(dir), "%s/%s", run_base, name);
    int r = s_existing(name, dir, &st, &stale, err);
    if (r == 1)
        return s_already(st, o, t0, ret_result, err);
    r = r ? r : hx_plan(o, name, run_base, &st, err);
    r = r ? r : hx_check_rundirs(st, err);
    if (r == 0 && (r = s_build(st, o, run_base, err)) < 0)
        hx_down_locked(name, dir, NULL,
                       NULL); /* undo; the first error is reported */
    if (r < 0) {
        json_decref(st);
        return r;
    }
    hx_state_refresh(st, NULL);
    s_finish(st, false, stale, t0);
    *ret_result = st;
    return 0;
}
