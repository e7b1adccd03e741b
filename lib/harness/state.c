/* state.c - state.json: the plan of a local cluster and what became of it.
 *
 * The state file IS the plan: up writes the complete document it will
 * report (every node with its netns, cgroup paths, rundir, services and
 * binaries) to <run-base>/<name>/state.json before creating anything, and
 * again after each step (pids right after the fork, phase creating ->
 * starting -> running). It is replaced atomically (temp file + rename), so
 * a reader sees one version or the next, never half of one. status is
 * that file with each daemon's "running" refreshed from /proc.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "harness-private.h"

/* ---- the file ---------------------------------------------------------- */

int hx_state_save(json_t *st, const char *dir, cairn_error_t *err)
{
    char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s/.state.json.tmp", dir);
    snprintf(path, sizeof(path), "%s/state.json", dir);
    if (json_dump_file(st, tmp, JSON_INDENT(2)) < 0)
        return cairn_error_set(err, -EIO, CAIRN_SYSTEM, "cannot write %s", tmp);
    if (rename(tmp, path) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "rename %s: %m", tmp);
    return 0;
}

json_t *hx_state_load(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

const char *hx_jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ---- nodes and their daemons ------------------------------------------- */

/* pid and start time of one service entry. */
static pid_t s_svc_pid(const json_t *svc, unsigned long long *ret_start)
{
    *ret_start = (unsigned long long)json_integer_value(
        json_object_get(svc, "start_time"));
    return (pid_t)json_integer_value(json_object_get(svc, "pid"));
}

size_t hx_state_refresh(json_t *st, size_t *ret_total)
{
    size_t running = 0, total = 0, i, j;
    json_t *node, *svc;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        json_array_foreach(json_object_get(node, "services"), j, svc) {
            unsigned long long start;
            pid_t pid = s_svc_pid(svc, &start);
            bool alive = pid > 0 && hx_pid_alive(pid, start);
            json_object_set_new(svc, "running", json_boolean(alive));
            running += alive;
            total++;
        }
    }
    if (ret_total)
        *ret_total = total;
    return running;
}

json_t *hx_state_node(const json_t *st, unsigned id, size_t *ret_index)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        if (json_integer_value(json_object_get(node, "id")) == (json_int_t)id) {
            if (ret_index)
                *ret_index = i;
            return node;
        }
    }
    return NULL;
}

int hx_state_drop(json_t *st, unsigned id, cairn_error_t *err)
{
    size_t index;
    if (hx_state_node(st, id, &index))
        json_array_remove(json_object_get(st, "nodes"), index);
    return hx_state_save(st, hx_jstr(st, "run_dir"), err);
}

pid_t hx_svc_running(const json_t *svc)
{
    unsigned long long start;
    pid_t pid = s_svc_pid(svc, &start);

    return pid > 0 && start > 0 && hx_pid_alive(pid, start) ? pid : 0;
}

void hx_node_pids(const json_t *node, hx_pids_t *pids)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        pid_t pid = hx_svc_running(svc);
        if (pid > 0)
            hx_pids_add(pids, pid);
    }
}

void hx_state_pids(const json_t *st, hx_pids_t *pids)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node)
        hx_node_pids(node, pids);
}

void hx_node_split(const json_t *node, json_t *running, json_t *gone)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        json_array_append(hx_svc_running(svc) ? running : gone, svc);
    }
}

json_t *hx_svc_names(const json_t *svcs)
{
    json_t *names = json_array(), *svc;
    size_t j;
    json_array_foreach(svcs, j, svc) {
        if (names && json_array_append(names, json_object_get(svc, "name")))
            names = (json_decref(names), NULL);
    }
    return names;
}

pid_t hx_node_running(const json_t *node)
{
    size_t j;
    json_t *svc;
    json_array_foreach(json_object_get(node, "services"), j, svc) {
        pid_t pid = hx_svc_running(svc);
        if (pid > 0)
            return pid;
    }
    return 0;
}
