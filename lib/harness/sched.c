/* sched.c - swapping a local cluster's scheduler policy (`cairn sched swap`
 * through the harness; docs/scheduler.md, "Swapping a policy").
 *
 * A node's service "sched" is whichever policy daemon runs: its state
 * entry says which ("policy") and with what program ("binary"). A swap
 * checks everything it can before touching anything -- the policy's
 * program is installed (else not-found naming the installed ones), the
 * cluster runs, every node asked has a "sched" entry -- then, node by
 * node: the running policy is stopped (SIGTERM, SIGKILL after the grace),
 * the new one started in the node's namespace and cgroups exactly as up
 * starts a daemon, the entry updated and state.json saved, and the new
 * one awaited until it serves its socket. One that dies or does not serve
 * in time is stopped and the previous policy started again, so a failed
 * swap leaves the node as it was; the error says both. While no policy
 * runs the node's ghostd holds placements (services/ghostd/place-hold.h):
 * nothing is lost in the gap.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "harness-private.h"
#include "util/clock.h"

/* Refuses a policy name that is not a service-name-like word. */
static int s_check_policy(const char *policy, cairn_error_t *err)
{
    size_t n = policy ? strlen(policy) : 0;
    if (n >= 1 && n <= 32 && policy[0] >= 'a' && policy[0] <= 'z' &&
        strspn(policy, "abcdefghijklmnopqrstuvwxyz0123456789-") == n)
        return 0;
    return cairn_error_set(err, -EINVAL, CAIRN_USAGE,
                           "policy '%s' is not a policy name "
                           "([a-z][a-z0-9-]{0,31})", policy ? policy : "");
}

/* not-found for a policy with no program, naming those there are. */
static int s_no_policy(const char *policy, cairn_error_t *err)
{
    json_t *names = hx_policies();
    char list[512] = "";
    size_t i, len = 0;
    json_t *v;
    json_array_foreach(names, i, v) {
        int w = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
                         json_string_value(v));
        if (w < 0 || (size_t)w >= sizeof(list) - len)
            break;
        len += (size_t)w;
    }
    json_decref(names);
    return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                           "no scheduler policy '%s' is installed (no program "
                           "sched-%s in $CAIRN_SBIN, the build tree's "
                           "services/sched, <prefix>/sbin or /usr/local/sbin); "
                           "installed: %s", policy, policy,
                           len ? list : "none");
}

/* node's "sched" entry, or failed-precondition. */
static json_t *s_sched_entry(const json_t *node, cairn_error_t *err)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        if (strcmp(hx_jstr(svc, "name"), "sched") == 0)
            return svc;
    }
    cairn_error_set(err, -ENOENT, CAIRN_FAILED_PRECONDITION,
                    "node %lld runs no scheduler: no sched-%s was installed "
                    "when the cluster came up, so its appliance has no "
                    "\"sched\"", json_integer_value(json_object_get(node, "id")),
                    CAIRN_SCHED_DEFAULT_POLICY);
    return NULL;
}

/* Stops the daemon of entry svc if it runs; its pid (0: none ran). */
static pid_t s_stop(json_t *svc)
{
    hx_pids_t pids = { 0 };
    pid_t pid = hx_svc_running(svc);
    if (pid > 0 && hx_pids_add(&pids, pid) == 0)
        hx_stop_all(&pids, HX_TERM_GRACE_MS, NULL);
    hx_pids_free(&pids);
    json_object_set_new(svc, "pid", json_integer(0));
    json_object_set_new(svc, "start_time", json_integer(0));
    return pid;
}

/* Starts the program of entry svc on node, records it and waits until it
 * serves. On failure the daemon started is stopped again. */
static int s_start(json_t *st, json_t *node, json_t *svc, int timeout_ms,
                   cairn_error_t *err)
{
    json_t *part = json_copy(node);
    json_t *one = json_pack("[O]", svc);
    int r = part && one && json_object_set(part, "services", one) == 0
                ? 0
                : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    r = r ? r : hx_spawn_service(node, svc, hx_jstr(st, "config"), err);
    int r2 = hx_state_save(st, hx_jstr(st, "run_dir"), r ? NULL : err);
    r = r ? r : r2;
    r = r ? r : hx_wait_node(part, timeout_ms, err);
    if (r < 0 && hx_svc_running(svc) > 0)
        s_stop(svc);
    json_decref(one);
    json_decref(part);
    return r;
}

/* Swaps node's policy for `policy` (program bin). *ret_line: what became
 * of the node. */
static int s_swap_node(json_t *st, json_t *node, json_t *svc,
                       const char *policy, const char *bin, int timeout_ms,
                       json_t **ret_line, cairn_error_t *err)
{
    char old_bin[PATH_MAX], old_policy[40];
    uint64_t t0 = cairn_now_ms();
    snprintf(old_bin, sizeof(old_bin), "%s", hx_jstr(svc, "binary"));
    snprintf(old_policy, sizeof(old_policy), "%s",
             hx_jstr(svc, "policy") ? hx_jstr(svc, "policy") : "");
    pid_t stopped = s_stop(svc);
    json_object_set_new(svc, "binary", json_string(bin));
    json_object_set_new(svc, "policy", json_string(policy));
    int r = s_start(st, node, svc, timeout_ms, err);
    if (r < 0) {
        /* put the node back as it was; the swap's error is the one said */
        cairn_error_t e2 = { 0 };
        json_object_set_new(svc, "binary", json_string(old_bin));
        json_object_set_new(svc, "policy", json_string(old_policy));
        int r2 = s_start(st, node, svc, timeout_ms, &e2);
        return cairn_error_append(err, r, "; %s", r2 == 0
                                  ? "the previous policy was started again"
                                  : e2.message);
    }
    *ret_line = json_pack("{s:I, s:s, s:s, s:I, s:I, s:I}",
                          "id", json_integer_value(json_object_get(node, "id")),
                          "policy", policy, "previous", old_policy,
                          "pid", (json_int_t)hx_svc_running(svc),
                          "stopped_pid", (json_int_t)stopped,
                          "swap_ms", (json_int_t)(cairn_now_ms() - t0));
    return *ret_line ? 0 : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL,
                                           "out of memory");
}

int hx_sched_swap_locked(const char *dir, unsigned id, const char *policy,
                         int timeout_ms, json_t **ret_result,
                         cairn_error_t *err)
{
    char bin[PATH_MAX];
    json_t *st = NULL, *nodes = json_array(), *node;
    size_t i;
    int r = s_check_policy(policy, err);
    if (r == 0 && !hx_find_policy(policy, bin, sizeof(bin)))
        r = s_no_policy(policy, err);
    if (r == 0 && !(st = hx_state_load(dir)))
        r = cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                            "no local cluster at %s (no state.json)", dir);
    r = r ? r : hx_check_running(st, err);
    if (r == 0 && id && !hx_state_node(st, id, NULL))
        r = cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND,
                            "node %u is not a node of local cluster %s", id,
                            hx_jstr(st, "cluster"));
    /* every node asked has a scheduler before any is touched */
    json_array_foreach(r < 0 ? NULL : json_object_get(st, "nodes"), i, node) {
        unsigned k = (unsigned)json_integer_value(json_object_get(node, "id"));
        if ((!id || k == id) && !s_sched_entry(node, err)) {
            r = -ENOENT;
            break;
        }
    }
    json_array_foreach(r < 0 ? NULL : json_object_get(st, "nodes"), i, node) {
        unsigned k = (unsigned)json_integer_value(json_object_get(node, "id"));
        json_t *line = NULL;
        if (id && k != id)
            continue;
        r = s_swap_node(st, node, s_sched_entry(node, NULL), policy, bin,
                        timeout_ms, &line, err);
        if (r < 0) {
            cairn_error_append(err, r, " (node %u)", k);
            break;
        }
        json_array_append_new(nodes, line);
    }
    if (r == 0 && !(*ret_result = json_pack("{s:s, s:O}", "policy", policy,
                                            "nodes", nodes)))
        r = cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    json_decref(nodes);
    json_decref(st);
    return r;
}
